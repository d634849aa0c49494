/*
 * The shared zone of one room_affinity upstream: the room table (a hash
 * table keyed by ra_hash() of the room name, chained, plus an LRU queue of
 * idle rooms) and the backend table (one slot per upstream address).
 * Every function here but ra_zone_init() expects the caller to hold the
 * zone's mutex.
 */

#include "ra_zone.h"


static ngx_int_t ra_zone_init_directory(ra_zone_ctx_t *ctx);
static void ra_room_delete(ra_zone_ctx_t *ctx, ra_room_t *room);
static ngx_int_t ra_backend_free(ra_zone_ctx_t *ctx);
static ngx_int_t ra_backend_new(ra_zone_ctx_t *ctx, ngx_str_t *name,
    size_t len);


ngx_int_t
ra_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ra_zone_ctx_t  *octx = data;

    size_t                         len;
    ngx_uint_t                     n;
    ra_zone_ctx_t                 *ctx;
    ngx_http_upstream_rr_peers_t  *peers;

    ctx = shm_zone->data;

    if (octx) {
        /* nginx -s reload: keep every room where it is */

        if (ra_zone_version_ok(shm_zone, octx->sh->version, RA_ZONE_VERSION)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        /* lifetime= may have changed; what was learnt is kept */
        ctx->sh->fit.fixed = (uint32_t) ctx->lifetime;

        /* written by the master only, read by the workers */
        ctx->gen = ++ctx->sh->gen;

        return ra_zone_init_directory(ctx);
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool, sizeof(ra_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;
    ctx->sh->version = RA_ZONE_VERSION;
    ctx->sh->gen = 1;
    ctx->sh->fit.fixed = (uint32_t) ctx->lifetime;
    ctx->gen = 1;

    ngx_queue_init(&ctx->sh->idle);

    /*
     * a power of two of buckets, one for every 128 to 256 bytes of zone
     * (3 to 6 % of it): a room takes 64 bytes or more, so chains hold 2
     * to 4 rooms at most on average
     */

    for (n = 64; n * 2 * 128 <= shm_zone->shm.size; n *= 2) {
        /* void */
    }

    ctx->sh->buckets = ngx_slab_calloc(ctx->shpool, n * sizeof(ra_room_t *));
    if (ctx->sh->buckets == NULL) {
        return NGX_ERROR;
    }

    ctx->sh->mask = n - 1;

    /*
     * twice the servers configured now (16 at least): a reload that adds
     * servers should not have to grow the table in a full zone
     */

    peers = ctx->upstream->peer.data;
    n = peers->number + (peers->next ? peers->next->number : 0);

    for (ctx->sh->backends_cap = 16;
         ctx->sh->backends_cap < 2 * n;
         ctx->sh->backends_cap *= 2)
    {
        /* void */
    }

    ctx->sh->backends = ngx_slab_calloc(ctx->shpool, sizeof(ra_backend_t)
                                                     * ctx->sh->backends_cap);
    if (ctx->sh->backends == NULL) {
        return NGX_ERROR;
    }

    len = sizeof(" in room_affinity zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in room_affinity zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is expected: we evict or place without recording */
    ctx->shpool->log_nomem = 0;

    return ra_zone_init_directory(ctx);
}


/*
 * The room directory's figures (ra_directory.c), only with it: they would
 * take the second page of the smallest zones
 */

static ngx_int_t
ra_zone_init_directory(ra_zone_ctx_t *ctx)
{
    if (!ctx->directory || ctx->sh->dir) {
        return NGX_OK;
    }

    ctx->sh->dir = ngx_slab_calloc(ctx->shpool, sizeof(ra_dir_sh_t));
    if (ctx->sh->dir == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}



/*
 * A zone found on reload was laid out by the module that made it: another
 * version of the module cannot read it
 */

ngx_int_t
ra_zone_version_ok(ngx_shm_zone_t *shm_zone, ngx_uint_t found,
    ngx_uint_t expected)
{
    if (found == expected) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "zone \"%V\" was made by another version of the "
                  "room_affinity module (layout %ui, this one reads %ui): "
                  "rename the zone or restart nginx",
                  &shm_zone->shm.name, found, expected);

    return NGX_ERROR;
}

ra_room_t *
ra_room_lookup(ra_shctx_t *sh, uint32_t hash, u_char *name, size_t len)
{
    ra_room_t  *room, **link;

    for (link = &sh->buckets[hash & sh->mask]; *link; link = &room->next) {
        room = *link;

        if (room->hash == hash
            && room->len == len
            && ngx_memcmp(room->data, name, len) == 0)
        {
            if (link != &sh->buckets[hash & sh->mask]) {
                /* to the front: a room in use is found at the first step */
                *link = room->next;
                room->next = sh->buckets[hash & sh->mask];
                sh->buckets[hash & sh->mask] = room;
            }

            return room;
        }
    }

    return NULL;
}


ra_room_t *
ra_room_create(ra_zone_ctx_t *ctx, uint32_t hash, u_char *name, size_t len,
    ngx_msec_t now, ngx_log_t *log)
{
    size_t        size;
    ngx_uint_t    n;
    ra_room_t    *room;

    size = offsetof(ra_room_t, data) + len;

    for (n = 0; /* void */; n++) {
        room = ngx_slab_alloc_locked(ctx->shpool, size);
        if (room != NULL) {
            break;
        }

        /*
         * the zone is full: the least recently used idle room goes, a few
         * at most: rooms of another slab size may free no memory for this
         * one, and one new room must not empty the table
         */

        if (n == RA_EVICT_MAX || ra_room_evict(ctx, 0, log) == 0) {
            return NULL;
        }
    }

    room->hash = hash;
    room->len = (uint16_t) len;
    room->live = 0;
    room->peak = 0;
    room->backend = 0;
    room->dir = 0;
    room->epoch = 0;
    room->confirmed = 0;
    room->last = (uint32_t) now;
    room->created = (uint32_t) now;
    ngx_memcpy(room->data, name, len);

    room->next = ctx->sh->buckets[hash & ctx->sh->mask];
    ctx->sh->buckets[hash & ctx->sh->mask] = room;
    ngx_queue_insert_head(&ctx->sh->idle, &room->queue);

    ctx->sh->rooms++;

    return room;
}


void
ra_room_expire(ra_zone_ctx_t *ctx, ngx_msec_t now, ngx_uint_t n,
    ngx_log_t *log)
{
    ngx_msec_int_t   age;
    ra_room_t       *room;
    ngx_queue_t     *q;

    while (n--) {

        if (ngx_queue_empty(&ctx->sh->idle)) {
            return;
        }

        q = ngx_queue_last(&ctx->sh->idle);
        room = ngx_queue_data(q, ra_room_t, queue);

        /* signed: another worker's clock may be a few ms ahead */
        age = (int32_t) ((uint32_t) now - room->last);

        if (age < (ngx_msec_int_t) ctx->ttl) {
            return;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: expired room \"%*s\" idle %M ms",
                       (size_t) room->len, room->data, age);

        ctx->sh->expired++;
        ra_room_delete(ctx, room);
    }
}


/*
 * Evicts the least recently used idle room; with "stale", up to
 * RA_SLOT_EVICT idle rooms among the RA_SLOT_SCAN least recently used
 * whose backend this configuration does not map (their slots can then be
 * given to its servers).  Returns how many went.
 */

ngx_uint_t
ra_room_evict(ra_zone_ctx_t *ctx, ngx_uint_t stale, ngx_log_t *log)
{
    ngx_uint_t    scanned, evicted;
    ra_room_t    *room;
    ngx_queue_t  *q, *prev;

    evicted = 0;

    for (q = ngx_queue_last(&ctx->sh->idle), scanned = 0;
         q != ngx_queue_sentinel(&ctx->sh->idle)
         && scanned < (stale ? RA_SLOT_SCAN : 1)
         && evicted < (stale ? RA_SLOT_EVICT : 1);
         q = prev, scanned++)
    {
        prev = ngx_queue_prev(q);
        room = ngx_queue_data(q, ra_room_t, queue);

        if (stale && ctx->sh->backends[room->backend].gen >= ctx->gen) {
            continue;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: evicted room \"%*s\"",
                       (size_t) room->len, room->data);

        ctx->sh->evicted++;
        ra_room_delete(ctx, room);
        evicted++;
    }

    return evicted;
}


static void
ra_room_delete(ra_zone_ctx_t *ctx, ra_room_t *room)
{
    ra_room_t     **link;
    ra_backend_t   *be;

    be = &ctx->sh->backends[room->backend];

    if (be->rooms && --be->rooms == 0) {
        ctx->sh->slot_events++;
    }

    for (link = &ctx->sh->buckets[room->hash & ctx->sh->mask];
         *link != room;
         link = &(*link)->next)
    {
        /* void */
    }

    *link = room->next;

    ngx_queue_remove(&room->queue);
    ctx->sh->rooms--;

    ngx_slab_free_locked(ctx->shpool, room);
}


void
ra_room_acquire(ra_shctx_t *sh, ra_room_t *room)
{
    if (room->live++ == 0) {
        /* a room with live connections is never evicted nor expired */
        ngx_queue_remove(&room->queue);
        ngx_queue_init(&room->queue);
    }

    if (room->live > room->peak && room->peak < 0xffff) {
        room->peak = (uint16_t) room->live;
    }
}


/* a room in use without a connection through nginx (the join API) */

void
ra_room_touch(ra_shctx_t *sh, ra_room_t *room, ngx_msec_t now)
{
    if (room->live == 0) {
        room->last = (uint32_t) now;
        ngx_queue_remove(&room->queue);
        ngx_queue_insert_head(&sh->idle, &room->queue);
    }
}


void
ra_room_release(ra_shctx_t *sh, ra_room_t *room, ngx_msec_t now)
{
    if (room->live == 0) {
        return;
    }

    if (--room->live == 0) {
        room->last = (uint32_t) now;
        ngx_queue_insert_head(&sh->idle, &room->queue);
    }
}


void
ra_room_set_backend(ra_shctx_t *sh, ra_room_t *room, ngx_uint_t slot)
{
    ra_backend_t  *be;

    be = &sh->backends[slot];

    /*
     * until the backend's next report, the room counts as the connections
     * it is known to bring: a room moving with its members counts as many
     * as it had, a new room as one
     */

    be->rooms++;
    be->pending += room->peak ? room->peak : 1;
    be->placed++;

    sh->pending_total += room->peak ? room->peak : 1;

    room->backend = (uint16_t) slot;
}


/* a placed room to another backend */

void
ra_room_move(ra_shctx_t *sh, ra_room_t *room, ngx_uint_t slot)
{
    ra_backend_t  *be;

    be = &sh->backends[room->backend];

    if (be->rooms && --be->rooms == 0) {
        sh->slot_events++;
    }

    ra_room_set_backend(sh, room, slot);
}


ngx_int_t
ra_backend_find(ra_shctx_t *sh, u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < sh->nbackends; i++) {
        if (sh->backends[i].name_len == len
            && ngx_memcmp(sh->backends[i].name, name, len) == 0)
        {
            return i;
        }
    }

    return NGX_DECLINED;
}


/*
 * This configuration maps the server "name": its slot, if it has one,
 * is marked as in use by this configuration.  Done for every server
 * before any slot is made, so that no eviction takes this configuration's
 * rooms for stale ones.
 */

void
ra_backend_mapped(ra_zone_ctx_t *ctx, ngx_str_t *name)
{
    ngx_int_t      slot;
    ra_backend_t  *be;

    slot = ra_backend_find(ctx->sh, name->data,
                           ngx_min(name->len, RA_BACKEND_NAME_LEN));

    if (slot != NGX_DECLINED) {
        be = &ctx->sh->backends[slot];
        be->gen = ngx_max(be->gen, ctx->gen);
    }
}


/*
 * The slot of the server "name", made if needed: a new one while the
 * table has room, else one no running configuration maps any more (no
 * room, no connection), else a table twice as large.  In a full zone
 * idle rooms make way, bounded work per call: first those of servers this
 * configuration does not have (their slots become free), then the least
 * recently used (their memory lets the table grow).  *progress counts the
 * rooms that went, so that a caller which failed knows to try again soon.
 */

ngx_int_t
ra_backend_slot(ra_zone_ctx_t *ctx, ngx_str_t *name, ngx_uint_t *progress,
    ngx_log_t *log)
{
    size_t         len;
    ngx_int_t      slot;
    ngx_uint_t     n;
    ra_shctx_t    *sh;
    ra_backend_t  *be;

    sh = ctx->sh;
    len = ngx_min(name->len, RA_BACKEND_NAME_LEN);

    slot = ra_backend_find(sh, name->data, len);

    if (slot != NGX_DECLINED) {
        be = &sh->backends[slot];
        be->gen = ngx_max(be->gen, ctx->gen);
        return slot;
    }

    slot = ra_backend_new(ctx, name, len);

    if (slot != NGX_DECLINED) {
        return slot;
    }

    /* the zone is full: the idle rooms of servers gone from the config */

    n = ra_room_evict(ctx, 1, log);

    if (n) {
        *progress += n;

        slot = ra_backend_new(ctx, name, len);

        if (slot != NGX_DECLINED) {
            return slot;
        }
    }

    /* then the least recently used, so that the table can grow */

    for (n = 0; n < RA_SLOT_EVICT; n++) {

        if (ra_room_evict(ctx, 0, log) == 0) {
            break;
        }

        (*progress)++;

        if (n % 32 == 31) {
            slot = ra_backend_new(ctx, name, len);

            if (slot != NGX_DECLINED) {
                return slot;
            }
        }
    }

    slot = ra_backend_new(ctx, name, len);

    if (slot != NGX_DECLINED) {
        return slot;
    }

    return NGX_ERROR;
}


static ngx_int_t
ra_backend_new(ra_zone_ctx_t *ctx, ngx_str_t *name, size_t len)
{
    ngx_int_t      slot;
    ngx_uint_t     cap;
    ra_shctx_t    *sh;
    ra_backend_t  *backends, *be;

    sh = ctx->sh;

    if (sh->nbackends < sh->backends_cap) {
        slot = sh->nbackends++;

    } else {
        slot = ra_backend_free(ctx);

        if (slot == NGX_DECLINED) {
            if (sh->backends_cap >= 0x8000) {
                return NGX_DECLINED;
            }

            cap = sh->backends_cap * 2;

            backends = ngx_slab_calloc_locked(ctx->shpool,
                                              sizeof(ra_backend_t) * cap);
            if (backends == NULL) {
                return NGX_DECLINED;
            }

            ngx_memcpy(backends, sh->backends,
                       sizeof(ra_backend_t) * sh->nbackends);
            ngx_slab_free_locked(ctx->shpool, sh->backends);

            sh->backends = backends;
            sh->backends_cap = cap;

            slot = sh->nbackends++;

        } else {
            sh->reclaimed++;
        }
    }

    sh->pl_gen++;

    be = &sh->backends[slot];

    /*
     * a reclaimed slot leaves the zone's totals what it still held: the
     * other instances' counts and join answers for its old server
     */

    sh->remote_total -= be->remote_live;
    sh->joins_total -= be->joins;
    sh->remote_joins_total -= be->remote_joins;
    sh->pending_total -= be->pending;

    if (be->decay) {
        ngx_slab_free_locked(ctx->shpool, be->decay);
    }

    ngx_memzero(be, sizeof(ra_backend_t));
    ngx_memcpy(be->name, name->data, len);
    be->name_len = len;
    be->gen = ctx->gen;

    return slot;
}


/*
 * A slot to give to another server: mapped by no configuration a running
 * worker has (every worker of an older one is gone), and with no room
 * and no connection.  Without the worker table's word (a worker found no
 * entry), none.
 */

static ngx_int_t
ra_backend_free(ra_zone_ctx_t *ctx)
{
    ngx_uint_t     i, gen;
    ra_shctx_t    *sh;
    ra_backend_t  *be;

    sh = ctx->sh;

    /*
     * a registered backend that left (ra_fleet.c) is mapped by no
     * worker's spare peer, whatever the configuration
     */

    for (i = 0; i < sh->nbackends; i++) {
        be = &sh->backends[i];

        if (be->dynamic && be->left && be->rooms == 0 && be->live == 0
            && be->remote_live == 0)
        {
            return i;
        }
    }

    if (sh->workers_full) {
        return NGX_DECLINED;
    }

    gen = ctx->gen;

    for (i = 0; i < RA_WORKERS_MAX; i++) {
        if (sh->workers[i].pid) {
            gen = ngx_min(gen, sh->workers[i].gen);
        }
    }

    for (i = 0; i < sh->nbackends; i++) {
        be = &sh->backends[i];

        /* a registered backend is mapped by no configuration's lines */

        if (be->gen < gen && be->rooms == 0 && be->live == 0
            && !(be->dynamic && !be->left))
        {
            return i;
        }
    }

    return NGX_DECLINED;
}
