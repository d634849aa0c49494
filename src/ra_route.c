/*
 * The backend of a room: the one the room table records while it can
 * serve the room; otherwise a placement (ra_pick.c), recorded in the
 * table, and shared with the other nginx instances (ra_share.c).
 */

#include "ra_route.h"
#include "ra_workers.h"
#include "ra_pick.h"
#include "ra_share.h"
#include "ra_report.h"
#include <ngx_md5.h>


static ngx_int_t ra_pick_stateless(ra_route_t *rt, ngx_uint_t from,
    ngx_uint_t to);


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
    return ra_peers_map(rcf, log);
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
        k = ra_peers_index(&rcf->peers, room->backend);

        if (k < rcf->peers.nmap
            && !ra_pick_tried(rt, k)
            && !ra_peer_gone(rcf->peers.map[k].peer, now)
            && !ra_peer_full(rcf->peers.map[k].peer))
        {
            rt->index = k;
            rt->slot = room->backend;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                           "room_affinity: hit room \"%V\" backend \"%V\"",
                           &rt->key, &rcf->peers.map[k].peer->name);
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

        stay = (k < rcf->peers.nmap && room->live > 0
                && !ra_peer_gone(rcf->peers.map[k].peer, now));
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
    rt->slot = rcf->peers.map[i].slot;

    if (stay) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: room \"%V\" stays, this request "
                       "goes to \"%V\"", &rt->key,
                       &rcf->peers.map[i].peer->name);
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

        if (rcf->directory) {
            /* not committed in the directory: repaired from it later */
            room->dir = RA_DIR_UNCONFIRMED;
            sh->dir->unconfirmed++;
            sh->dir->dirty = 1;
            sh->dir->pass_found = 1;
        }

        goto found;
    }

    room = ra_room_create(ctx, (uint32_t) rt->hash, rt->key.data, rt->key.len,
                          msec, log);

    if (room == NULL) {
        /* nothing can be evicted: place by hash, do not record */

        i = ra_pick_stateless(rt, 0, rcf->peers.nprimary);
        if (i < 0) {
            i = ra_pick_stateless(rt, rcf->peers.nprimary, rcf->peers.nmap);
        }

        if (i < 0) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_BUSY;
        }

        rt->index = i;
        rt->slot = rcf->peers.map[i].slot;
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
                          &rcf->peers.map[i].peer->name, sh->unrecorded);
        }

        goto found;
    }

    ra_room_set_backend(sh, room, rt->slot);
    rt->is_new = 1;

    if (rcf->directory) {
        /*
         * the directory was not asked (Redis away) or its answer was
         * unusable (ra_directory.c): placed here, and repaired from its
         * record when it answers
         */
        room->dir = RA_DIR_UNCONFIRMED;
        sh->dir->unconfirmed++;
        sh->dir->dirty = 1;
        sh->dir->pass_found = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "room_affinity: new room \"%V\" placed on \"%V\"",
                   &rt->key, &rcf->peers.map[i].peer->name);

found:

    rt->room = room;

    if (acquire) {
        /* given back by the balancer's free, or if this worker dies */
        rt->lease = ra_lease_count(ctx, room, rt->slot);

    } else {
        /*
         * a join: its client connects to the backend, not through us, so
         * it counts until the backend's next report (ra_report.c)
         */

        if (room) {
            ra_room_touch(sh, room, msec);
        }

        sh->backends[rt->slot].joins++;
        sh->joins_total++;
        ra_report_joined(ctx, &sh->backends[rt->slot], 1, msec);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rt->moved) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "room_affinity: moved room \"%V\" from \"%*s\" "
                      "to \"%V\"", &rt->key, from_len, from,
                      &rcf->peers.map[rt->index].peer->name);
    }

    if (room && (rt->is_new || rt->moved)) {
        /* tell the other nginx instances, through Redis */
        ra_share_put(rcf, &rt->key, &rcf->peers.map[rt->index].peer->name,
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

    i = ra_pick(rt, 0, rt->conf->peers.nprimary, now);

    if (i < 0) {
        /* backup servers only when no primary server can take the room */
        i = ra_pick(rt, rt->conf->peers.nprimary, rt->conf->peers.nmap, now);
    }

    return i;
}


/* the zone is full: a weighted hash of the room, recorded nowhere */

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
        if (ra_pick_can_take(rt, k, t)) {
            total += rcf->peers.map[k].peer->weight;
        }
    }

    if (total == 0) {
        return -1;
    }

    w = rt->hash % total;

    for (k = from; k < to; k++) {
        if (!ra_pick_can_take(rt, k, t)) {
            continue;
        }

        if (w < (uint64_t) rcf->peers.map[k].peer->weight) {
            return k;
        }

        w -= rcf->peers.map[k].peer->weight;
    }

    return -1;
}

