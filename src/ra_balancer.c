/*
 * The upstream balancer: every request of a room goes to the room's
 * backend; a new room, or a room whose backend is unavailable, is placed
 * by ra_placement_pick() and recorded in the shared room table.
 * Modelled on nginx's hash balancer: the round robin data comes first so
 * its helpers keep working, and it is the fallback for an empty key.
 */

#include "ra_balancer.h"
#include "ra_redis.h"
#include <ngx_md5.h>


typedef struct {
    /* the round robin data must be first */
    ngx_http_upstream_rr_peer_data_t   rrp;
    ra_route_t                         route;
    ngx_int_t                          counted;   /* slot, or -1 */
    ra_room_t                         *room;      /* acquired room */
} ra_peer_data_t;


static ngx_int_t ra_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static void ra_peer_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer,
    ra_backend_t *be);
static ngx_int_t ra_get_peer(ngx_peer_connection_t *pc, void *data);
static ngx_uint_t ra_tried(ra_route_t *rt, ngx_uint_t k);
static ngx_uint_t ra_usable(ngx_http_upstream_rr_peer_t *peer, time_t now);
static ngx_uint_t ra_gone(ngx_http_upstream_rr_peer_t *peer, time_t now);
static ngx_uint_t ra_can_take(ra_route_t *rt, ngx_uint_t k, time_t now);
static ngx_int_t ra_pick(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to,
    ngx_msec_t now);
static ngx_int_t ra_pick_viewed(ra_route_t *rt, time_t t);
static ngx_int_t ra_pick_full(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to,
    ngx_msec_t now, time_t t);
static ngx_uint_t ra_fill_placement(ra_route_t *rt, ngx_uint_t k,
    ngx_msec_t now, time_t t, ngx_msec_t *until);
static void ra_keep_view(ra_srv_conf_t *rcf, ra_pl_view_t *v,
    ngx_msec_t until);
static uint64_t ra_view_total(ra_srv_conf_t *rcf, ngx_uint_t mode);
static ngx_int_t ra_pick_stateless(ra_route_t *rt, ngx_uint_t from,
    ngx_uint_t to);
static void ra_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);


ngx_int_t
ra_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ra_init_peer;

    return NGX_OK;
}


static ngx_int_t
ra_init_peer(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t        rc;
    ra_srv_conf_t   *rcf;
    ra_peer_data_t  *pd;

    pd = ngx_pcalloc(r->pool, sizeof(ra_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = &pd->rrp;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    rcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_room_affinity_module);

    rc = ra_route_key(r, rcf, &pd->route);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* the zone has no room for the servers' records (logged) */
        return NGX_OK;
    }

    if (pd->route.key.len == 0) {
        /* like nginx's hash: no key, plain round robin, nothing recorded */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "room_affinity: empty key, round robin");
        return NGX_OK;
    }

    pd->route.tried = ngx_pcalloc(r->pool, sizeof(uintptr_t)
                          * (rcf->nmap + 8 * sizeof(uintptr_t) - 1)
                          / (8 * sizeof(uintptr_t)));
    if (pd->route.tried == NULL) {
        return NGX_ERROR;
    }

    pd->counted = -1;

    r->upstream->peer.get = ra_get_peer;
    r->upstream->peer.free = ra_free_peer;

    return NGX_OK;
}


ngx_int_t
ra_route_key(ngx_http_request_t *r, ra_srv_conf_t *rcf, ra_route_t *rt)
{
    ngx_str_t  key;

    if (ngx_http_complex_value(r, &rcf->key, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    return ra_route_init(rt, rcf, &key, r->pool, r->connection->log);
}


ngx_int_t
ra_route_init(ra_route_t *rt, ra_srv_conf_t *rcf, ngx_str_t *key,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_memzero(rt, sizeof(ra_route_t));

    rt->conf = rcf;
    rt->slot = -1;
    rt->key = *key;

    if (ra_room_name(pool, &rt->key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rt->key.len) {
        rt->hash = ra_hash(rt->key.data, rt->key.len);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "room_affinity: key \"%V\"", &rt->key);

    /* NGX_DECLINED: no server map, the zone has no room for it */
    return ra_peer_map(rcf, log);
}


ngx_int_t
ra_room_name(ngx_pool_t *pool, ngx_str_t *key)
{
    u_char     *p;
    ngx_md5_t   md5;
    u_char      digest[16];

    if (key->len <= RA_ROOM_MAX_LEN) {
        return NGX_OK;
    }

    /* a room name this long is kept as "md5:" and its digest */

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, key->data, key->len);
    ngx_md5_final(digest, &md5);

    p = ngx_pnalloc(pool, sizeof("md5:") - 1 + 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    p = ngx_cpymem(p, "md5:", sizeof("md5:") - 1);
    p = ngx_hex_dump(p, digest, 16);
    key->len = p - key->data;

    return NGX_OK;
}


ngx_int_t
ra_peer_map(ra_srv_conf_t *rcf, ngx_log_t *log)
{
    ngx_int_t                      slot;
    ngx_uint_t                     n, i, k, backup;
    ra_zone_ctx_t                 *ctx;
    ra_peer_map_t                 *map;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers, *list;

    if (rcf->map) {
        return NGX_OK;
    }

    if (rcf->map_failed
        && (ngx_msec_int_t) (ngx_current_msec - rcf->map_failed)
           < RA_MAP_RETRY)
    {
        return NGX_DECLINED;
    }

    peers = rcf->upstream->peer.data;

    n = peers->number + (peers->next ? peers->next->number : 0);

    /* allocated once: a failed map is tried again with the same memory */

    if (rcf->map_mem == NULL) {
        rcf->map_mem = ngx_pcalloc(ngx_cycle->pool,
                                   n * sizeof(ra_peer_map_t));
        rcf->pl = ngx_pcalloc(ngx_cycle->pool, n * sizeof(ra_pl_backend_t));
        rcf->pl_acc = ngx_pcalloc(ngx_cycle->pool, n * sizeof(uint64_t));

        if (rcf->map_mem == NULL || rcf->pl == NULL || rcf->pl_acc == NULL) {
            rcf->map_mem = NULL;
            return NGX_ERROR;
        }
    }

    map = rcf->map_mem;
    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    i = 0;

    for (backup = 0, list = peers; list && backup < 2; list = list->next) {

        for (peer = list->peer; peer && i < n; peer = peer->next) {
            slot = ra_backend_slot(ctx, &peer->name);

            if (slot < 0) {
                ngx_shmtx_unlock(&ctx->shpool->mutex);

                /* round robin until then; once a second at most */
                rcf->map_failed = ngx_current_msec ? ngx_current_msec : 1;

                ngx_log_error(NGX_LOG_ALERT, log, 0,
                              "room_affinity: no room for backend \"%V\" "
                              "in zone \"%V\", balancing by round robin",
                              &peer->name, &rcf->zone_name);
                return NGX_DECLINED;
            }

            map[i].peer = peer;
            map[i].slot = slot;
            map[i].backup = backup;
            i++;

            ra_peer_url(rcf, peer, &ctx->sh->backends[slot]);
        }

        backup++;

        if (backup == 1) {
            rcf->nprimary = i;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* a room's backend slot to its server here; nmap: none */

    rcf->nslots = 0;

    for (k = 0; k < i; k++) {
        rcf->nslots = ngx_max(rcf->nslots, map[k].slot + 1);
    }

    rcf->slot_map = ngx_palloc(ngx_cycle->pool,
                               ngx_max(rcf->nslots, 1) * sizeof(ngx_uint_t));
    if (rcf->slot_map == NULL) {
        return NGX_ERROR;
    }

    for (k = 0; k < rcf->nslots; k++) {
        rcf->slot_map[k] = i;
    }

    for (k = i; k > 0; k--) {
        /* the first server of a slot, as a search in map order finds */
        rcf->slot_map[map[k - 1].slot] = k - 1;
    }

    rcf->nmap = i;
    rcf->map = map;

    return NGX_OK;
}


static void
ra_peer_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer,
    ra_backend_t *be)
{
    ngx_str_t  *url;

    /* a configured public url, until the backend registers its own */

    if (be->registered) {
        return;
    }

    url = ra_peer_conf_url(rcf, peer);

    if (url) {
        ngx_memcpy(be->url, url->data, url->len);
        be->url_len = url->len;
    }
}


/* the room_affinity_url of a server, or NULL */

ngx_str_t *
ra_peer_conf_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer)
{
    ngx_uint_t   j;
    ra_url_t    *url;

    if (rcf->urls == NULL) {
        return NULL;
    }

    url = rcf->urls->elts;

    for (j = 0; j < rcf->urls->nelts; j++) {
        if (ra_peer_is(peer, url[j].server.data, url[j].server.len)) {
            return &url[j].url;
        }
    }

    return NULL;
}


/* is the server "host:port": its resolved address or as written */

ngx_uint_t
ra_peer_is(ngx_http_upstream_rr_peer_t *peer, u_char *name, size_t len)
{
    return (peer->name.len == len
            && ngx_strncasecmp(peer->name.data, name, len) == 0)
           || (peer->server.len == len
               && ngx_strncasecmp(peer->server.data, name, len) == 0);
}


void
ra_route_lock_peers(ra_srv_conf_t *rcf)
{
    ngx_http_upstream_rr_peers_t  *peers;

    peers = rcf->upstream->peer.data;

    ngx_http_upstream_rr_peers_wlock(peers);

    if (peers->next) {
        ngx_http_upstream_rr_peers_wlock(peers->next);
    }
}


void
ra_route_unlock_peers(ra_srv_conf_t *rcf)
{
    ngx_http_upstream_rr_peers_t  *peers;

    peers = rcf->upstream->peer.data;

    if (peers->next) {
        ngx_http_upstream_rr_peers_unlock(peers->next);
    }

    ngx_http_upstream_rr_peers_unlock(peers);
}


static ngx_int_t
ra_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ra_peer_data_t  *pd = data;

    time_t                         now;
    ngx_int_t                      rc;
    ngx_uint_t                     n, m;
    ra_route_t                    *rt;
    ra_peer_map_t                 *pm;
    ngx_http_upstream_rr_peers_t  *peers;
    ngx_http_upstream_rr_peer_t   *peer;

    rt = &pd->route;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "room_affinity: get peer, try: %ui, room: \"%V\"",
                   pc->tries, &rt->key);

    pc->cached = 0;
    pc->connection = NULL;

    ra_route_lock_peers(rt->conf);

    rc = ra_route(rt, 1, pc->log);

    if (rc != NGX_OK) {
        ra_route_unlock_peers(rt->conf);
        pc->name = ((ngx_http_upstream_rr_peers_t *)
                    rt->conf->upstream->peer.data)->name;
        return NGX_BUSY;
    }

    pd->counted = rt->slot;
    pd->room = rt->room;

    pm = &rt->conf->map[rt->index];
    peer = pm->peer;
    peers = rt->conf->upstream->peer.data;

    if (pm->backup) {
        peers = peers->next;
    }

    pd->rrp.peers = peers;
    pd->rrp.current = peer;

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    peer->conns++;

    now = ngx_time();

    if (now - peer->checked > peer->fail_timeout) {
        peer->checked = now;
    }

    ra_route_unlock_peers(rt->conf);

    n = rt->index / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << rt->index % (8 * sizeof(uintptr_t));
    rt->tried[n] |= m;

    return NGX_OK;
}


/*
 * Decides the backend of rt->key.  The caller holds the peers' locks.
 * With "acquire" the room's live count is taken (the caller's free
 * releases it); without, the room is only reserved (the join API).
 */

ngx_int_t
ra_route(ra_route_t *rt, ngx_uint_t acquire, ngx_log_t *log)
{
    u_char              from[RA_BACKEND_NAME_LEN];
    size_t              from_len;
    time_t              now;
    ngx_int_t           i, old;
    ngx_uint_t          k, stay;
    ngx_msec_t          msec;
    ra_room_t          *room;
    ra_shctx_t         *sh;
    ra_srv_conf_t      *rcf;
    ra_zone_ctx_t      *ctx;
    ra_backend_t       *be;

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    now = ngx_time();
    msec = ngx_current_msec;

    rt->is_new = 0;
    rt->moved = 0;
    from_len = 0;
    stay = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ra_room_expire(ctx, msec, RA_EXPIRE_BATCH, log);

    room = ra_room_lookup(sh, (uint32_t) rt->hash, rt->key.data, rt->key.len);
    old = -1;

    if (room) {
        k = (room->backend < rcf->nslots) ? rcf->slot_map[room->backend]
                                           : rcf->nmap;

        if (k < rcf->nmap
            && !ra_tried(rt, k)
            && ra_usable(rcf->map[k].peer, now))
        {
            rt->index = k;
            rt->slot = room->backend;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                           "room_affinity: hit room \"%V\" backend \"%V\"",
                           &rt->key, &rcf->map[k].peer->name);
            goto found;
        }

        old = room->backend;

        /*
         * A room with members whose backend still serves others (this
         * request tried it, or it is at max_conns) stays: only this
         * request goes elsewhere, unrecorded, so that one request does not
         * split the room for good.  It moves when its backend is gone for
         * everyone (not configured here, down, failed) or when it is empty.
         */

        stay = (k < rcf->nmap && room->live > 0
                && !ra_gone(rcf->map[k].peer, now));
    }

    /* a new room, or its backend cannot take it: place it */

    i = ra_route_place(rt, msec);

    if (i < 0) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: no backend for room \"%V\"", &rt->key);
        return NGX_BUSY;
    }

    rt->index = i;
    rt->slot = rcf->map[i].slot;

    if (stay) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: room \"%V\" stays, this request "
                       "goes to \"%V\"", &rt->key, &rcf->map[i].peer->name);
        goto found;
    }

    if (room) {
        /* its name, for the log line written after the unlock */
        be = &sh->backends[old];
        from_len = be->name_len;
        ngx_memcpy(from, be->name, from_len);

        ra_room_move(sh, room, rt->slot);
        sh->moved++;
        rt->moved = 1;
        goto found;
    }

    room = ra_room_create(ctx, (uint32_t) rt->hash, rt->key.data, rt->key.len,
                          msec, log);

    if (room == NULL) {
        /* nothing can be evicted: place by hash, do not record */

        i = ra_pick_stateless(rt, 0, rcf->nprimary);
        if (i < 0) {
            i = ra_pick_stateless(rt, rcf->nprimary, rcf->nmap);
        }

        if (i < 0) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_BUSY;
        }

        rt->index = i;
        rt->slot = rcf->map[i].slot;
        sh->unrecorded++;

        if ((ngx_msec_int_t) (msec - sh->full_logged)
            >= RA_FULL_LOG_INTERVAL
            || sh->full_logged == 0)
        {
            sh->full_logged = msec ? msec : 1;
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "room_affinity: zone \"%V\" is full, room \"%V\" "
                          "placed on \"%V\" without recording "
                          "(%ui such placements so far)",
                          &rcf->zone_name, &rt->key,
                          &rcf->map[i].peer->name, sh->unrecorded);
        }

        goto found;
    }

    ra_room_set_backend(sh, room, rt->slot);
    rt->is_new = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "room_affinity: new room \"%V\" placed on \"%V\"",
                   &rt->key, &rcf->map[i].peer->name);

found:

    rt->room = room;

    if (acquire) {
        if (room) {
            ra_room_acquire(sh, room);
        }

        sh->backends[rt->slot].live++;
        sh->live_total++;

    } else if (room) {
        /* a join: its clients connect to the backend, not through us */
        ra_room_touch(sh, room, msec);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rt->moved) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "room_affinity: moved room \"%V\" from \"%*s\" "
                      "to \"%V\"", &rt->key, from_len, from,
                      &rcf->map[rt->index].peer->name);
    }

    if (room && (rt->is_new || rt->moved)) {
        /* tell the other nginx instances, through Redis */
        ra_redis_share(rcf, &rt->key, &rcf->map[rt->index].peer->name,
                       rt->moved);
    }

    return NGX_OK;
}


/*
 * The server for a room to place: among the primary servers, else the
 * backup ones; -1 when none can take it.  The caller holds the zone's
 * mutex.
 */

ngx_int_t
ra_route_place(ra_route_t *rt, ngx_msec_t now)
{
    ngx_int_t  i;

    i = ra_pick(rt, 0, rt->conf->nprimary, now);

    if (i < 0) {
        /* backup servers only when no primary server can take the room */
        i = ra_pick(rt, rt->conf->nprimary, rt->conf->nmap, now);
    }

    return i;
}


static ngx_uint_t
ra_tried(ra_route_t *rt, ngx_uint_t k)
{
    return rt->tried != NULL
           && (rt->tried[k / (8 * sizeof(uintptr_t))]
               & ((uintptr_t) 1 << k % (8 * sizeof(uintptr_t))));
}


static ngx_uint_t
ra_usable(ngx_http_upstream_rr_peer_t *peer, time_t now)
{
    return !ra_gone(peer, now)
           && !(peer->max_conns && peer->conns >= peer->max_conns);
}


/* unavailable to every request: down, or failed (max_fails) */

static ngx_uint_t
ra_gone(ngx_http_upstream_rr_peer_t *peer, time_t now)
{
    return peer->down
           || (peer->max_fails
               && peer->fails >= peer->max_fails
               && now - peer->checked <= peer->fail_timeout);
}


/* may the server take a new room: not tried, usable, not draining */

static ngx_uint_t
ra_can_take(ra_route_t *rt, ngx_uint_t k, time_t now)
{
    ra_zone_ctx_t  *ctx;

    ctx = rt->conf->shm_zone->data;

    return !ra_tried(rt, k)
           && !ctx->sh->backends[rt->conf->map[k].slot].draining
           && ra_usable(rt->conf->map[k].peer, now);
}


/*
 * Places a room on one of the servers map[from..to-1].  For the primary
 * servers, the worker keeps the placement view (ra_placement_view()) of
 * its last full pass and reuses it while nothing it depends on changed:
 * a new room then costs a draw and a look at its candidates, not a pass
 * over every server.
 */

static ngx_int_t
ra_pick(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to, ngx_msec_t now)
{
    time_t          t;
    ngx_int_t       i;
    ra_srv_conf_t  *rcf;
    ra_zone_ctx_t  *ctx;

    if (from >= to) {
        return -1;
    }

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    t = ngx_time();

    if (from == 0
        && rcf->pl_valid
        && rcf->pl_gen == ctx->sh->pl_gen
        && (ngx_msec_int_t) (now - rcf->pl_until) < 0)
    {
        i = ra_pick_viewed(rt, t);

        if (i != NGX_DECLINED) {
            ctx->sh->placed_viewed++;
            return i;
        }
    }

    i = ra_pick_full(rt, from, to, now, t);

    if (i >= 0) {
        ctx->sh->placed_full++;
    }

    return i;
}


/*
 * With the kept view: NGX_DECLINED when this room needs a full pass (a
 * candidate this request cannot use, or every candidate over the cap).
 */

static ngx_int_t
ra_pick_viewed(ra_route_t *rt, time_t t)
{
    int               cand[RA_PL_MAX_CHOICES];
    int64_t           num;
    ngx_int_t         i;
    ngx_uint_t        c, n;
    ra_shctx_t       *sh;
    ra_pl_view_t     *v;
    ra_backend_t     *be;
    ra_srv_conf_t    *rcf;
    ra_zone_ctx_t    *ctx;
    ra_pl_backend_t  *pb;

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    v = &rcf->pl_view;

    /* the total load now: the view's, moved as its servers' total moved */

    num = (int64_t) rcf->pl_num + (int64_t) ra_view_total(rcf, v->mode)
          - (int64_t) rcf->pl_total;

    v->sum_num = (num < 0) ? 0
                 : (num > RA_PL_LOAD_MAX) ? RA_PL_LOAD_MAX : (uint64_t) num;

    n = ra_placement_draw(&rcf->placement, v, rcf->pl, rt->hash, cand);

    if (n == 0) {
        return NGX_DECLINED;
    }

    /* the candidates' loads as they are now */

    for (c = 0; c < n; c++) {
        if (!ra_can_take(rt, cand[c], t)) {
            return NGX_DECLINED;
        }

        pb = &rcf->pl[cand[c]];
        be = &sh->backends[rcf->map[cand[c]].slot];

        pb->live = (uint32_t) be->live;
        pb->rooms = (uint32_t) be->rooms;
        pb->pending = (uint32_t) be->pending;
    }

    i = ra_placement_decide(&rcf->placement, v, rcf->pl, cand, n);

    return (i < 0) ? NGX_DECLINED : i;
}


static ngx_int_t
ra_pick_full(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to, ngx_msec_t now,
    time_t t)
{
    int               cand[RA_PL_MAX_CHOICES];
    ngx_int_t         i;
    ngx_uint_t        k, any, own, n;
    ngx_msec_t        until;
    ra_pl_view_t      v;
    ra_srv_conf_t    *rcf;

    rcf = rt->conf;
    any = 0;
    own = 0;
    until = now + 3600000;      /* at the latest: a pass an hour */

    for (k = from; k < to; k++) {
        /* "own": a server left out only for this request */
        own |= ra_fill_placement(rt, k, now, t, &until);
        any |= rcf->pl[k].available;
    }

    if (!any) {
        return -1;
    }

    ra_placement_view(&rcf->placement, rcf->pl + from, to - from,
                      rcf->pl_acc + from, &v);

    n = ra_placement_draw(&rcf->placement, &v, rcf->pl + from, rt->hash,
                          cand);

    i = ra_placement_decide(&rcf->placement, &v, rcf->pl + from,
                            n ? cand : NULL, n);

    if (i < 0) {
        /* every candidate over the cap: the least loaded of all */
        i = ra_placement_pick(&rcf->placement, rcf->pl + from, to - from,
                              rt->hash);
    }

    /*
     * the view serves the next rooms when it holds for any request (no
     * server left out for this one only) and in a mode whose total load
     * the zone keeps (not mixed, no slow start)
     */

    if (from == 0 && !own && n && v.mode != RA_PL_MIXED && !v.slow) {
        ra_keep_view(rcf, &v, until);
    }

    return (i < 0) ? -1 : (ngx_int_t) (from + i);
}


/*
 * Keeps the view of the primary servers, with the slots it leaves out:
 * the zone's totals count every slot, the view's total only its own.
 */

static void
ra_keep_view(ra_srv_conf_t *rcf, ra_pl_view_t *v, ngx_msec_t until)
{
    ngx_uint_t      s, k, *out;
    ra_shctx_t     *sh;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;

    if (rcf->pl_out_cap < sh->nbackends) {
        out = ngx_palloc(ngx_cycle->pool, sh->nbackends * sizeof(ngx_uint_t));
        if (out == NULL) {
            rcf->pl_valid = 0;
            return;
        }

        rcf->pl_out = out;
        rcf->pl_out_cap = sh->nbackends;
    }

    rcf->pl_nout = 0;

    for (s = 0; s < sh->nbackends; s++) {
        k = (s < rcf->nslots) ? rcf->slot_map[s] : rcf->nmap;

        if (k < rcf->nprimary && rcf->pl[k].available) {
            continue;
        }

        rcf->pl_out[rcf->pl_nout++] = s;
    }

    rcf->pl_view = *v;
    rcf->pl_gen = sh->pl_gen;
    rcf->pl_until = until;
    rcf->pl_num = v->sum_num;
    rcf->pl_total = ra_view_total(rcf, v->mode);
    rcf->pl_valid = 1;
}


/* the zone's total load (live, or pending) over the view's slots */

static uint64_t
ra_view_total(ra_srv_conf_t *rcf, ngx_uint_t mode)
{
    uint64_t        total;
    ngx_uint_t      i;
    ra_shctx_t     *sh;
    ra_backend_t   *be;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;

    total = (mode == RA_PL_LOCAL) ? sh->live_total : sh->pending_total;

    for (i = 0; i < rcf->pl_nout; i++) {
        be = &sh->backends[rcf->pl_out[i]];
        total -= (mode == RA_PL_LOCAL) ? be->live : be->pending;
    }

    return total;
}


/*
 * The placement input of server k, now.  Returns 1 when the server is
 * left out for this request only (tried by it, or at max_conns); lowers
 * *until to when the input changes by itself (a report goes stale, a
 * failed server may be retried).
 */

static ngx_uint_t
ra_fill_placement(ra_route_t *rt, ngx_uint_t k, ngx_msec_t now, time_t t,
    ngx_msec_t *until)
{
    ngx_msec_t                    up, at;
    ngx_time_t                   *tp;
    ra_srv_conf_t                *rcf;
    ra_zone_ctx_t                *ctx;
    ra_backend_t                 *be;
    ra_pl_backend_t              *pb;
    ngx_http_upstream_rr_peer_t  *peer;

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    be = &ctx->sh->backends[rcf->map[k].slot];
    peer = rcf->map[k].peer;
    pb = &rcf->pl[k];

    ngx_memzero(pb, sizeof(ra_pl_backend_t));

    pb->weight = (uint32_t) peer->weight;
    pb->live = (uint32_t) be->live;
    pb->rooms = (uint32_t) be->rooms;
    pb->pending = (uint32_t) be->pending;

    /* signed: the subscriber may have a later clock than this worker */

    if (be->has_report
        && (ngx_msec_int_t) (now - be->reported_at)
           <= (ngx_msec_int_t) rcf->stale)
    {
        if (rcf->metric == RA_METRIC_CPU) {
            pb->fresh = be->has_cpu;
            pb->reported = be->cpu;

        } else {
            pb->fresh = be->has_connections;
            pb->reported = be->connections;
        }

        pb->capacity = be->capacity;

        at = be->reported_at + rcf->stale + 1;

        if ((ngx_msec_int_t) (at - *until) < 0) {
            *until = at;
        }
    }

    if (be->up_since == 0) {
        pb->up_ms = UINT32_MAX;

    } else {
        up = now - be->up_since;
        pb->up_ms = (up >= UINT32_MAX) ? UINT32_MAX : (uint32_t) up;
    }

    pb->available = ra_can_take(rt, k, t);

    if (pb->available) {
        return 0;
    }

    if (peer->max_fails && peer->fails >= peer->max_fails
        && t - peer->checked <= peer->fail_timeout)
    {
        /*
         * failed: nginx tries it again once (now - checked) exceeds
         * fail_timeout, counted in whole seconds
         */

        tp = ngx_timeofday();

        at = now + (ngx_msec_t) ((peer->checked + peer->fail_timeout + 1
                                  - tp->sec) * 1000 - tp->msec);

        if ((ngx_msec_int_t) (at - *until) < 0) {
            *until = at;
        }
    }

    return ra_tried(rt, k)
           || (peer->max_conns && peer->conns >= peer->max_conns);
}


static ngx_int_t
ra_pick_stateless(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to)
{
    time_t          t;
    uint64_t        w, total;
    ngx_uint_t      k;
    ra_srv_conf_t  *rcf;

    rcf = rt->conf;
    t = ngx_time();
    total = 0;

    for (k = from; k < to; k++) {
        if (ra_can_take(rt, k, t)) {
            total += rcf->map[k].peer->weight;
        }
    }

    if (total == 0) {
        return -1;
    }

    w = rt->hash % total;

    for (k = from; k < to; k++) {
        if (!ra_can_take(rt, k, t)) {
            continue;
        }

        if (w < (uint64_t) rcf->map[k].peer->weight) {
            return k;
        }

        w -= rcf->map[k].peer->weight;
    }

    return -1;
}


static void
ra_free_peer(ngx_peer_connection_t *pc, void *data, ngx_uint_t state)
{
    ra_peer_data_t  *pd = data;

    ngx_uint_t                    failed;
    ra_zone_ctx_t                *ctx;
    ra_backend_t                 *be;
    ngx_http_upstream_rr_peer_t  *peer;

    /* round robin first: it counts the failure */

    peer = pd->rrp.current;

    ngx_http_upstream_free_round_robin_peer(pc, &pd->rrp, state);

    /* the server now counts as failed: new placement views, all workers */

    failed = (state & NGX_PEER_FAILED) && peer && peer->max_fails
             && peer->fails >= peer->max_fails;

    if (pd->counted < 0 && !failed) {
        return;
    }

    ctx = pd->route.conf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (pd->counted >= 0) {
        be = &ctx->sh->backends[pd->counted];

        if (be->live) {
            be->live--;
            ctx->sh->live_total--;
        }

        if (pd->room) {
            ra_room_release(ctx->sh, pd->room, ngx_current_msec);
        }
    }

    if (failed) {
        ctx->sh->pl_gen++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "room_affinity: free peer, room \"%V\", state %ui",
                   &pd->route.key, state);

    pd->counted = -1;
    pd->room = NULL;
}
