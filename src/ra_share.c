/*
 * Sharing placements between nginx instances.  A worker that places or
 * moves a room queues it here; the subscriber publishes the queue every
 * few milliseconds on <prefix>room_affinity:rooms (ra_redis_link.c), and gives
 * what the other instances publish to ra_share_receive().  When two
 * instances placed the same new room at the same moment, the placement of
 * the instance with the smaller id wins everywhere, but only while the
 * room is new and empty; a move always wins.
 *
 * When the outbox is empty, the drain sends this instance's connection
 * counts (ra_counts.c), and the counts of the others are given to it.
 *
 * Lock order (ra_module.h): a room_affinity zone's mutex is never held
 * while this outbox's is taken, and the reverse.
 */

#include "ra_share.h"


static u_char *ra_share_encode(ra_share_t *share, ra_msg_room_t *m,
    size_t *len, ngx_log_t *log);


static void ra_share_hint(ra_share_t *share, ra_srv_conf_t *rcf,
    ra_msg_room_t *m);
static ngx_uint_t ra_share_allow(ra_share_t *share, ra_srv_conf_t *rcf);
static void ra_share_refused(ra_share_t *share, const char *why,
    ngx_log_t *log);


ngx_int_t
ra_share_init_zone(ra_share_t *share, ngx_slab_pool_t *shpool,
    ra_share_sh_t *old)
{
    ngx_fd_t        fd;
    ra_share_sh_t  *sh;

    share->shpool = shpool;

    if (old) {
        /* nginx -s reload: the instance id and the outbox stay */
        share->sh = old;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ra_share_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->entries = ngx_slab_alloc(shpool,
                                 RA_SHARE_SLOTS * sizeof(ra_share_entry_t));
    if (sh->entries == NULL) {
        return NGX_ERROR;
    }

    /*
     * tells this instance's placements from the others': from the kernel,
     * as containers start their nginx as pid 1 in the same second
     */

    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE
        || ngx_read_fd(fd, &sh->instance, sizeof(uint64_t))
           != (ssize_t) sizeof(uint64_t))
    {
        sh->instance = ((uint64_t) ngx_random() << 33)
                       ^ ((uint64_t) ngx_random() << 2)
                       ^ (uint64_t) ngx_time();
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    share->sh = sh;

    return NGX_OK;
}


/* queues a placement; any worker, after the zone's mutex is released */

void
ra_share_put(ra_srv_conf_t *rcf, ngx_str_t *room, ngx_str_t *backend,
    ngx_uint_t moved)
{
    ra_share_t        *share;
    ra_share_sh_t     *sh;
    ra_main_conf_t    *rmcf;
    ra_share_entry_t  *e;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    share = rmcf->share;

    if (share == NULL || (share->directory && !moved)) {
        /*
         * with the directory, every instance asks it for a new room
         * (ra_directory.c); a move is still told, as a hint to ask again
         */
        return;
    }

    sh = share->sh;

    if (!sh->open) {
        /*
         * no subscriber to publish it: by the time one is, the placement
         * is old news that could override a newer one elsewhere
         */
        return;
    }

    ngx_shmtx_lock(&share->shpool->mutex);

    if (sh->tail - sh->head >= RA_SHARE_SLOTS) {
        sh->dropped++;
        ngx_shmtx_unlock(&share->shpool->mutex);
        return;
    }

    e = &sh->entries[sh->tail % RA_SHARE_SLOTS];

    e->upstream = (uint16_t) rcf->index;
    e->upstream_hash = (uint32_t) ra_hash(rcf->upstream->host.data,
                                          rcf->upstream->host.len);
    e->moved = (uint16_t) moved;
    e->room_len = (uint16_t) room->len;
    e->backend_len = (uint16_t) ngx_min(backend->len, RA_BACKEND_NAME_LEN);
    ngx_memcpy(e->room, room->data, room->len);
    ngx_memcpy(e->backend, backend->data, e->backend_len);

    sh->tail++;

    ngx_shmtx_unlock(&share->shpool->mutex);
}


/* the subscriber is (1) or is no longer (0) there to publish */

void
ra_share_open(ra_share_t *share, ngx_uint_t open)
{
    ngx_shmtx_lock(&share->shpool->mutex);
    share->sh->open = open;
    ngx_shmtx_unlock(&share->shpool->mutex);
}


/*
 * The next message to publish, encoded, in memory the caller frees with
 * ngx_free(): a placement of the outbox, else a count when they are due;
 * NULL when there is nothing to send
 */

u_char *
ra_share_take(ra_share_t *share, size_t *len, ngx_log_t *log)
{
    u_char            *msg;
    ra_share_sh_t     *sh;
    ra_msg_room_t      m;
    ra_srv_conf_t    **rcfp;
    ra_counts_msg_t    c;
    ra_main_conf_t    *rmcf;
    ra_share_entry_t   e;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;
    sh = share->sh;

    for ( ;; ) {
        ngx_shmtx_lock(&share->shpool->mutex);

        if (sh->head == sh->tail) {
            ngx_shmtx_unlock(&share->shpool->mutex);
            goto counts;
        }

        e = sh->entries[sh->head % RA_SHARE_SLOTS];
        sh->head++;

        ngx_shmtx_unlock(&share->shpool->mutex);

        /* queued before a reload that removed or reordered the upstreams */

        if (e.upstream < rmcf->upstreams.nelts
            && (uint32_t) ra_hash(rcfp[e.upstream]->upstream->host.data,
                                  rcfp[e.upstream]->upstream->host.len)
               == e.upstream_hash)
        {
            break;
        }
    }

    m.instance = sh->instance;
    m.kind = e.moved ? RA_MSG_ROOM_MOVED : RA_MSG_ROOM_NEW;
    m.upstream = (const char *) rcfp[e.upstream]->upstream->host.data;
    m.upstream_len = rcfp[e.upstream]->upstream->host.len;
    m.backend = (const char *) e.backend;
    m.backend_len = e.backend_len;
    m.room = (const char *) e.room;
    m.room_len = e.room_len;

    msg = ra_share_encode(share, &m, len, log);
    if (msg == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&share->shpool->mutex);
    sh->published++;
    ngx_shmtx_unlock(&share->shpool->mutex);

    return msg;

counts:

    /* the outbox is empty: this instance's connection counts, when due */

    if (ra_counts_next(&sh->counts, share->shpool, sh->instance, &c, log)
        != NGX_OK)
    {
        return NULL;
    }

    return ra_share_encode(share, &c.msg, len, log);
}


/* a message, signed when a key is configured, in ngx_alloc()'s memory */

static u_char *
ra_share_encode(ra_share_t *share, ra_msg_room_t *m, size_t *len,
    ngx_log_t *log)
{
    size_t   plen;
    u_char  *msg, line[RA_SIGN_PREFIX_MAX];

    /* room for the signature line, written once the message is */

    plen = share->sign ? RA_SIGN_PREFIX_MAX : 0;

    msg = ngx_alloc(plen + ra_msg_room_size(m), log);
    if (msg == NULL) {
        return NULL;
    }

    *len = ra_msg_room_encode(m, (char *) msg + plen);

    if (share->sign == NULL) {
        return msg;
    }

    plen = ra_sign_prefix(&share->sign->keys[0], "rooms", (int64_t) ngx_time(),
                          (char *) msg + RA_SIGN_PREFIX_MAX, *len,
                          (char *) line);
    if (plen == 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "room_affinity: cannot sign a message to the rooms "
                      "channel");
        ngx_free(msg);
        return NULL;
    }

    /* the line just before the message, at the start of the buffer */
    ngx_memmove(msg + plen, msg + RA_SIGN_PREFIX_MAX, *len);
    ngx_memcpy(msg, line, plen);
    *len += plen;

    return msg;
}


/*
 * A placement another instance published: recorded when the room is not
 * known here (in free memory only, and at most share_rate= a second),
 * adopted when it moves the room or wins the race for a new one; our own
 * come back and are ignored.  RA_MSG_OK, or why the message
 * is not a placement (the caller logs it).
 */

ra_msg_err_e
ra_share_receive(ra_share_t *share, const char *data, size_t len,
    ngx_log_t *log, const char **detail)
{
    void            *p;
    uint32_t         hash;
    ngx_int_t        slot;
    ngx_uint_t       adopt;
    ra_room_t       *r;
    ra_shctx_t      *sh;
    ra_msg_err_e     err;
    ra_msg_room_t    m;
    ra_zone_ctx_t   *ctx;
    ra_srv_conf_t   *rcf;
    ra_main_conf_t  *rmcf;

    err = ra_msg_room_parse(data, len, &m, detail);

    if (err != RA_MSG_OK) {
        return err;
    }

    if (m.room_len > RA_ROOM_MAX_LEN) {
        *detail = "room name too long";
        return RA_MSG_ERR_JSON;
    }

    if (m.instance == share->sh->instance) {
        return RA_MSG_OK;
    }

    if (m.kind == RA_MSG_ROOM_COUNT) {
        return ra_counts_receive(&share->sh->counts, share->shpool, &m, log,
                                 detail);
    }

    if (share->directory && m.kind != RA_MSG_ROOM_MOVED) {
        /*
         * the directory's record decides, and a placement made here
         * without it is repaired from it: one placed elsewhere without it
         * would only disagree
         */
        return RA_MSG_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);

    rcf = ra_upstream_find(rmcf, (u_char *) m.upstream, m.upstream_len);

    if (rcf == NULL || ra_peers_map(rcf, log) != NGX_OK) {
        return RA_MSG_OK;
    }

    if (share->directory) {
        ra_share_hint(share, rcf, &m);
        return RA_MSG_OK;
    }

    if (!ra_share_allow(share, rcf)) {
        ra_share_refused(share, "more than share_rate= placements per second",
                         log);
        return RA_MSG_OK;
    }

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    hash = (uint32_t) ra_hash(m.room, m.room_len);
    adopt = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    slot = ra_backend_find(sh, (u_char *) m.backend, m.backend_len);

    if (slot == NGX_DECLINED) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return RA_MSG_OK;
    }

    r = ra_room_lookup(sh, hash, (u_char *) m.room, m.room_len);

    if (r == NULL) {
        /*
         * another instance's room never evicts one of ours: it is
         * recorded only in free memory (freed and taken again under the
         * same lock, ra_room_create() then finds it)
         */

        p = ngx_slab_alloc_locked(ctx->shpool,
                                  offsetof(ra_room_t, data) + m.room_len);

        if (p == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ra_share_refused(share, "the zone is full", log);
            return RA_MSG_OK;
        }

        ngx_slab_free_locked(ctx->shpool, p);

        r = ra_room_create(ctx, hash, (u_char *) m.room, m.room_len,
                           ngx_current_msec, log);
        if (r != NULL) {
            ra_room_set_backend(sh, r, slot);
            adopt = 1;
        }

    } else if (r->backend != (ngx_uint_t) slot
               && (m.kind == RA_MSG_ROOM_MOVED
                   || (m.instance < share->sh->instance
                       && r->live == 0
                       && (int32_t) ((uint32_t) ngx_current_msec - r->created)
                          < RA_SHARE_RACE)))
    {
        /*
         * a move always wins; two placements of a new room made at once
         * converge on the smaller instance's, but only while the room is
         * that new and empty: a late one never splits a room in use
         */
        ra_room_move(sh, r, slot);
        adopt = 1;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, log, 0,
                   "room_affinity: %s room \"%*s\" on \"%*s\" from "
                   "another instance", adopt ? "recorded" : "kept",
                   m.room_len, m.room, m.backend_len, m.backend);

    ngx_shmtx_lock(&share->shpool->mutex);
    share->sh->received++;
    share->sh->adopted += adopt;
    ngx_shmtx_unlock(&share->shpool->mutex);

    return RA_MSG_OK;
}


/*
 * With the directory, another instance moved a room: unless the copy here
 * has that backend already, the record changed since it was read, and
 * the room's next request asks the directory again (ra_directory.c),
 * whose record decides
 */

static void
ra_share_hint(ra_share_t *share, ra_srv_conf_t *rcf, ra_msg_room_t *m)
{
    ra_room_t      *r;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    r = ra_room_lookup(ctx->sh, (uint32_t) ra_hash(m->room, m->room_len),
                       (u_char *) m->room, m->room_len);

    if (r && r->dir == RA_DIR_CONFIRMED
        && ra_backend_find(ctx->sh, (u_char *) m->backend, m->backend_len)
           != (ngx_int_t) r->backend)
    {
        /* not the backend here: this copy is older than the move */
        r->confirmed = (uint32_t) (ngx_current_msec - rcf->ttl);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_shmtx_lock(&share->shpool->mutex);
    share->sh->received++;
    ngx_shmtx_unlock(&share->shpool->mutex);
}


/*
 * A token bucket per upstream, in the subscriber's memory: at most rate
 * placements a second from the other instances, rate at once
 */

static ngx_uint_t
ra_share_allow(ra_share_t *share, ra_srv_conf_t *rcf)
{
    ngx_msec_t          now, elapsed;
    ngx_uint_t          full;
    ra_main_conf_t     *rmcf;
    ra_share_bucket_t  *b;

    if (share->buckets == NULL) {
        rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_room_affinity_module);

        /* the cycle's pool: a reload brings a new configuration */
        share->buckets = ngx_pcalloc(ngx_cycle->pool,
                                     rmcf->upstreams.nelts
                                     * sizeof(ra_share_bucket_t));
        if (share->buckets == NULL) {
            return 0;
        }

        share->nbuckets = rmcf->upstreams.nelts;
    }

    if (rcf->index >= share->nbuckets) {
        return 0;
    }

    b = &share->buckets[rcf->index];
    now = ngx_current_msec;
    full = share->rate * 1000;

    if (b->last == 0) {
        b->tokens = full;

    } else {
        elapsed = now - b->last;

        /* rate per second is rate thousandths per ms */
        if (elapsed >= 1000) {
            b->tokens = full;

        } else {
            b->tokens = ngx_min(full, b->tokens + elapsed * share->rate);
        }
    }

    b->last = now ? now : 1;

    if (b->tokens < 1000) {
        return 0;
    }

    b->tokens -= 1000;

    return 1;
}


/* counted, and logged at most once an interval by this worker */

static void
ra_share_refused(ra_share_t *share, const char *why, ngx_log_t *log)
{
    static ngx_msec_t  logged;
    static ngx_uint_t  suppressed;

    ngx_shmtx_lock(&share->shpool->mutex);
    share->sh->refused++;
    ngx_shmtx_unlock(&share->shpool->mutex);

    if (logged && ngx_current_msec - logged < RA_SHARE_LOG_INTERVAL) {
        suppressed++;
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "room_affinity: refused a placement of another instance: "
                  "%s, %ui similar since last log", why, suppressed);

    logged = ngx_current_msec ? ngx_current_msec : 1;
    suppressed = 0;
}


void
ra_share_stats(ra_share_t *share, ra_share_sh_t *copy)
{
    ngx_shmtx_lock(&share->shpool->mutex);
    *copy = *share->sh;
    ngx_shmtx_unlock(&share->shpool->mutex);
}
