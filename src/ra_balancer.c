/*
 * The upstream balancer: every request of a room goes to the room's
 * backend (ra_route.c).  Modelled on nginx's hash balancer: the round
 * robin data comes first so its helpers keep working, and round robin is
 * the fallback for an empty key.  The room's live count and the backend's
 * are taken when a peer is got and given back when it is freed: for a
 * WebSocket, at the end of the connection.
 */

#include "ra_balancer.h"
#include "ra_route.h"
#include "ra_workers.h"
#include "ra_fleet.h"


typedef struct {
    /* the round robin data must be first */
    ngx_http_upstream_rr_peer_data_t   rrp;
    ra_route_t                         route;
    ngx_int_t                          counted;   /* slot, or -1 */
    ra_room_t                         *room;      /* acquired room */
    ra_lease_t                        *lease;     /* or its lease */
} ra_peer_data_t;


static ngx_int_t ra_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ra_get_peer(ngx_peer_connection_t *pc, void *data);
static void ra_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);


ngx_int_t
ra_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ra_srv_conf_t  *rcf;

    rcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_room_affinity_module);

    /* "zone" with register=, "resolve": refused, naming the module */

    if (ra_fleet_init_upstream(cf, rcf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ra_init_peer;

    return NGX_OK;
}


static ngx_int_t
ra_init_peer(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t                      rc;
    ra_srv_conf_t                 *rcf;
    ra_peer_data_t                *pd;
    ngx_http_upstream_rr_peers_t  *peers;

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

    if (rcf->fleet) {
        /*
         * the map may have filled spare peers just now (ra_peers.c): the
         * tries round robin counted before
         */
        peers = us->peer.data;
        r->upstream->peer.tries = peers->tries
                                  + (peers->next ? peers->next->tries : 0);
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

    /*
     * one bit for every peer, not only those mapped now: the map of a
     * fleet (ra_fleet.c) may be built again before a retry
     */

    pd->route.tried = ngx_pcalloc(r->pool, sizeof(uintptr_t)
                          * (rcf->peers.size + 8 * sizeof(uintptr_t) - 1)
                          / (8 * sizeof(uintptr_t)));
    if (pd->route.tried == NULL) {
        return NGX_ERROR;
    }

    pd->counted = -1;

    r->upstream->peer.get = ra_get_peer;
    r->upstream->peer.free = ra_free_peer;

    return NGX_OK;
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

    ra_peers_lock(rt->conf);

    rc = ra_route(rt, 1, pc->log);

    if (rc != NGX_OK) {
        ra_peers_unlock(rt->conf);
        pc->name = ((ngx_http_upstream_rr_peers_t *)
                    rt->conf->upstream->peer.data)->name;
        return NGX_BUSY;
    }

    pd->counted = rt->slot;
    pd->room = rt->room;
    pd->lease = rt->lease;

    pm = &rt->conf->peers.map[rt->index];
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

    ra_peers_unlock(rt->conf);

    n = rt->index / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << rt->index % (8 * sizeof(uintptr_t));
    rt->tried[n] |= m;

    return NGX_OK;
}


static void
ra_free_peer(ngx_peer_connection_t *pc, void *data, ngx_uint_t state)
{
    ra_peer_data_t  *pd = data;

    ngx_uint_t                    failed;
    ra_zone_ctx_t                *ctx;
    ngx_http_upstream_rr_peer_t  *peer;

    /* round robin first: it counts the failure */

    peer = pd->rrp.current;

    ngx_http_upstream_free_round_robin_peer(pc, &pd->rrp, state);

    /* the server now counts as failed: new placement views, all workers */

    failed = (state & NGX_PEER_FAILED) && peer
             && ra_peer_failed(peer, ngx_time());

    if (pd->counted < 0 && !failed) {
        return;
    }

    ctx = pd->route.conf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (pd->counted >= 0) {
        ra_lease_end(ctx, pd->lease, pd->counted, pd->room,
                     ngx_current_msec);
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
    pd->lease = NULL;
}

