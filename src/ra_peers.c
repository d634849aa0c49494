/*
 * A worker's map of the upstream's servers to backend slots.  With an
 * upstream "zone" the peers live in shared memory and are copied anew on
 * every reload, so slots are found by the server's name (its address),
 * never kept as peer pointers across cycles.
 */

#include "ra_module.h"
#include "ra_workers.h"
#include "ra_fleet.h"


static void ra_peers_url(ra_srv_conf_t *rcf,
    ngx_http_upstream_rr_peer_t *peer, ra_backend_t *be);
static ngx_uint_t ra_peer_is(ngx_http_upstream_rr_peer_t *peer, u_char *name,
    size_t len);
static ngx_uint_t ra_peers_empty(ra_srv_conf_t *rcf,
    ngx_http_upstream_rr_peer_t *peer);
static void ra_peers_static(ra_shctx_t *sh, ngx_uint_t slot);
static void ra_peers_fill(ra_srv_conf_t *rcf, ra_shctx_t *sh, ngx_log_t *log);


/*
 * Builds the map on first use.  NGX_DECLINED: the zone has no room for a
 * server's slot (logged); the upstream balances by round robin, and the
 * map is tried again at the next request while idle rooms make way (a
 * bounded number each try) or once a slot may have become free, else
 * RA_MAP_RETRY ms later.
 */

ngx_int_t
ra_peers_map(ra_srv_conf_t *rcf, ngx_log_t *log)
{
    ngx_int_t                      slot;
    ngx_uint_t                     n, i, k, backup, progress;
    ra_peers_t                    *pt;
    ra_zone_ctx_t                 *ctx;
    ra_peer_map_t                 *map;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers, *list;

    pt = &rcf->peers;
    ctx = rcf->shm_zone->data;

    /*
     * built; with registered backends, again when the fleet changed (an
     * unlocked read of one word: at worst a request later)
     */

    if (pt->map
        && (rcf->fleet == NULL || pt->fleet_gen == ctx->sh->fleet.gen))
    {
        return NGX_OK;
    }

    /*
     * a failed map is tried again a second later, or at once when a slot
     * may have become free (an unlocked read of one word: at worst a try
     * more or a request later)
     */

    if (pt->failed
        && (ngx_msec_int_t) (ngx_current_msec - pt->failed) < RA_MAP_RETRY
        && pt->events == ctx->sh->slot_events)
    {
        return NGX_DECLINED;
    }

    peers = rcf->upstream->peer.data;

    n = peers->number + (peers->next ? peers->next->number : 0);

    /* allocated once: a failed map is tried again with the same memory */

    if (pt->mem == NULL) {
        pt->mem = ngx_pcalloc(ngx_cycle->pool, n * sizeof(ra_peer_map_t));
        if (pt->mem == NULL) {
            return NGX_ERROR;
        }

        pt->size = n;
    }

    map = pt->mem;
    progress = 0;

    /* workers that died hold no slot's connections any more */
    ra_workers_reap(ctx, log);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /*
     * idle rooms past their ttl go first, whatever the traffic; then this
     * configuration's servers that have a slot are marked as its own
     * before any slot is made (which may evict the rooms of servers that
     * are not)
     */

    ra_room_expire(ctx, ngx_current_msec, RA_SLOT_SCAN, log);

    if (rcf->fleet) {
        /* the spare peers take the registered backends (ra_fleet.c) */
        ra_peers_fill(rcf, ctx->sh, log);
        pt->fleet_gen = ctx->sh->fleet.gen;
    }

    for (backup = 0, list = peers; list && backup < 2; list = list->next) {
        for (peer = list->peer; peer; peer = peer->next) {
            if (!ra_peers_empty(rcf, peer)) {
                ra_backend_mapped(ctx, &peer->name);
            }
        }

        backup++;
    }

    i = 0;

    for (backup = 0, list = peers; list && backup < 2; list = list->next) {

        for (peer = list->peer; peer && i < n; peer = peer->next) {

            if (ra_peers_empty(rcf, peer)) {
                continue;
            }

            slot = ra_backend_slot(ctx, &peer->name, &progress, log);

            if (slot < 0) {
                pt->events = ctx->sh->slot_events;
                pt->fleet_gen--;          /* the fleet is mapped again */

                ngx_shmtx_unlock(&ctx->shpool->mutex);

                /*
                 * round robin until then: tried again at the next request
                 * while idle rooms make way, else a second later
                 */
                pt->failed = progress ? 0 : (ngx_current_msec
                                             ? ngx_current_msec : 1);
                pt->failures++;

                if (pt->alerted == 0
                    || (ngx_msec_int_t) (ngx_current_msec - pt->alerted)
                       >= RA_MAP_LOG_INTERVAL)
                {
                    pt->alerted = ngx_current_msec ? ngx_current_msec : 1;

                    ngx_log_error(NGX_LOG_ALERT, log, 0,
                                  "room_affinity: no room for backend "
                                  "\"%V\" in zone \"%V\", balancing by "
                                  "round robin until idle rooms make way "
                                  "(%ui tries)",
                                  &peer->name, &rcf->zone_name,
                                  pt->failures);
                }

                /*
                 * a map built before is half overwritten: none until the
                 * next try (a request being retried finds no server); a
                 * server line's slot, the only one that can be missing,
                 * cannot go while this configuration runs, so this is
                 * not expected with a fleet
                 */
                pt->map = NULL;
                pt->nmap = 0;
                pt->nprimary = 0;
                pt->nslots = 0;

                return NGX_DECLINED;
            }

            if (ra_fleet_spare(rcf->fleet, peer) < 0) {
                ra_peers_static(ctx->sh, slot);
            }

            map[i].peer = peer;
            map[i].slot = slot;
            map[i].backup = backup;
            i++;

            ra_peers_url(rcf, peer, &ctx->sh->backends[slot]);
        }

        backup++;

        if (backup == 1) {
            pt->nprimary = i;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (pt->failures) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "room_affinity: every backend of zone \"%V\" has its "
                      "slot again, rooms are pinned (after %ui tries)",
                      &rcf->zone_name, pt->failures);
        pt->failures = 0;
    }

    /* a room's backend slot to its server here; nmap: none */

    pt->nslots = 0;

    for (k = 0; k < i; k++) {
        pt->nslots = ngx_max(pt->nslots, map[k].slot + 1);
    }

    if (pt->slot_cap < ngx_max(pt->nslots, 1)) {
        /* made again only when it grows: a fleet maps it often */

        pt->slot_cap = ngx_max(pt->nslots, 16);

        pt->slot_map = ngx_palloc(ngx_cycle->pool,
                                  pt->slot_cap * sizeof(ngx_uint_t));
        if (pt->slot_map == NULL) {
            pt->slot_cap = 0;
            return NGX_ERROR;
        }
    }

    for (k = 0; k < pt->nslots; k++) {
        pt->slot_map[k] = i;
    }

    for (k = i; k > 0; k--) {
        /* the first server of a slot, as a search in map order finds */
        pt->slot_map[map[k - 1].slot] = k - 1;
    }

    pt->nmap = i;
    pt->map = map;
    pt->built++;

    return NGX_OK;
}


/* a spare peer that holds no registered backend: not mapped */

static ngx_uint_t
ra_peers_empty(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer)
{
    ngx_int_t  j;

    j = ra_fleet_spare(rcf->fleet, peer);

    return j >= 0 && rcf->fleet->held[j] < 0;
}


/*
 * A server line's slot: a registered backend of that address (the
 * configuration now lists it) is registered no more.  The caller holds
 * the zone's mutex.
 */

static void
ra_peers_static(ra_shctx_t *sh, ngx_uint_t slot)
{
    ra_backend_t  *be;

    be = &sh->backends[slot];

    if (!be->dynamic) {
        return;
    }

    if (!be->left) {
        sh->fleet.active--;
    }

    be->dynamic = 0;
    be->left = 0;
    be->out = 0;
    sh->fleet.gen++;
}


/*
 * This worker's spare peers follow the zone's registered backends: a
 * spare whose backend left is down again, and each registered backend
 * without a spare takes a free one (its address, its name).  The caller
 * holds the zone's mutex.
 */

static void
ra_peers_fill(ra_srv_conf_t *rcf, ra_shctx_t *sh, ngx_log_t *log)
{
    ngx_int_t                      j, k, held;
    ngx_uint_t                     s;
    ra_backend_t                  *be;
    ra_fleet_conf_t               *fc;
    ngx_http_upstream_rr_peer_t   *peer;
    ngx_http_upstream_rr_peers_t  *peers;

    fc = rcf->fleet;
    peers = rcf->upstream->peer.data;

    if (!fc->found) {
        for (peer = peers->peer; peer; peer = peer->next) {
            j = ra_fleet_spare(fc, peer);

            if (j >= 0) {
                fc->peer[j] = peer;
            }
        }

        fc->found = 1;
    }

    /* the spares whose backend left, or whose slot went to another */

    for (j = 0; j < (ngx_int_t) fc->max; j++) {
        s = fc->held[j];
        peer = fc->peer[j];

        if (fc->held[j] < 0 || peer == NULL) {
            continue;
        }

        be = (s < sh->nbackends) ? &sh->backends[s] : NULL;

        if (be && be->dynamic && !be->left
            && be->name_len == peer->name.len
            && ngx_memcmp(be->name, peer->name.data, be->name_len) == 0)
        {
            continue;
        }

        fc->held[j] = -1;
        peer->down = 1;
        peers->tries--;
    }

    /* each registered backend on a spare: one without a connection first */

    for (s = 0; s < sh->nbackends; s++) {
        be = &sh->backends[s];

        if (!be->dynamic || be->left) {
            continue;
        }

        held = -1;
        k = -1;

        for (j = 0; j < (ngx_int_t) fc->max; j++) {
            if (fc->held[j] == (ngx_int_t) s) {
                held = j;
                break;
            }

            if (fc->held[j] < 0 && fc->peer[j]
                && (k < 0 || (fc->peer[k]->conns && !fc->peer[j]->conns)))
            {
                k = j;
            }
        }

        if (held >= 0) {
            continue;
        }

        if (k < 0 || be->name_len >= RA_FLEET_NAME_LEN) {
            if ((ngx_msec_int_t) (ngx_current_msec - fc->full_logged)
                >= RA_FLEET_LOG_INTERVAL || fc->full_logged == 0)
            {
                fc->full_logged = ngx_current_msec ? ngx_current_msec : 1;

                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "room_affinity: no spare peer for registered "
                              "backend \"%*s\" in upstream \"%V\", "
                              "register_max=%ui", be->name_len, be->name,
                              &rcf->upstream->host, fc->max);
            }

            continue;
        }

        peer = fc->peer[k];

        ngx_memcpy(peer->sockaddr, &be->addr, be->socklen);
        peer->socklen = be->socklen;
        ngx_memcpy(peer->name.data, be->name, be->name_len);
        peer->name.len = be->name_len;

        peer->down = 0;
        peer->fails = 0;
        peer->accessed = 0;
        peer->checked = ngx_time();
        peer->current_weight = 0;
        peer->effective_weight = peer->weight;

        peers->tries++;
        fc->held[k] = s;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: spare peer %i is \"%V\"", k,
                       &peer->name);
    }
}


/* the map index of a backend slot; nmap when no server here has it */

ngx_uint_t
ra_peers_index(ra_peers_t *peers, ngx_uint_t slot)
{
    return (slot < peers->nslots) ? peers->slot_map[slot] : peers->nmap;
}


static void
ra_peers_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer,
    ra_backend_t *be)
{
    ngx_str_t  *url;

    /* a configured public url, until the backend registers its own */

    if (be->registered) {
        return;
    }

    url = ra_peers_conf_url(rcf, peer);

    if (url) {
        ngx_memcpy(be->url, url->data, url->len);
        be->url_len = url->len;
    }
}


/* the room_affinity_url of a server, or NULL */

ngx_str_t *
ra_peers_conf_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer)
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


/*
 * Is a backend's url this server: its room_affinity_url exactly, else
 * the url's "host:port" (hostport, hlen) as the server's address or as
 * written in the configuration
 */

ngx_uint_t
ra_peers_match_url(ra_srv_conf_t *rcf, ngx_http_upstream_rr_peer_t *peer,
    u_char *url, size_t len, u_char *hostport, size_t hlen)
{
    ngx_str_t  *conf;

    conf = ra_peers_conf_url(rcf, peer);

    if (conf) {
        return conf->len == len && ngx_strncmp(conf->data, url, len) == 0;
    }

    return hlen && ra_peer_is(peer, hostport, hlen);
}


/* is the server "host:port": its resolved address or as written */

static ngx_uint_t
ra_peer_is(ngx_http_upstream_rr_peer_t *peer, u_char *name, size_t len)
{
    return (peer->name.len == len
            && ngx_strncasecmp(peer->name.data, name, len) == 0)
           || (peer->server.len == len
               && ngx_strncasecmp(peer->server.data, name, len) == 0);
}


void
ra_peers_lock(ra_srv_conf_t *rcf)
{
    ngx_http_upstream_rr_peers_t  *peers;

    peers = rcf->upstream->peer.data;

    ngx_http_upstream_rr_peers_wlock(peers);

    if (peers->next) {
        ngx_http_upstream_rr_peers_wlock(peers->next);
    }
}


void
ra_peers_unlock(ra_srv_conf_t *rcf)
{
    ngx_http_upstream_rr_peers_t  *peers;

    peers = rcf->upstream->peer.data;

    if (peers->next) {
        ngx_http_upstream_rr_peers_unlock(peers->next);
    }

    ngx_http_upstream_rr_peers_unlock(peers);
}


/* failed by max_fails, and fail_timeout not over: nginx skips it */

ngx_uint_t
ra_peer_failed(ngx_http_upstream_rr_peer_t *peer, time_t now)
{
    return peer->max_fails
           && peer->fails >= peer->max_fails
           && now - peer->checked <= peer->fail_timeout;
}


/* unavailable to every request: down, or failed */

ngx_uint_t
ra_peer_gone(ngx_http_upstream_rr_peer_t *peer, time_t now)
{
    return peer->down || ra_peer_failed(peer, now);
}


/* at max_conns: unavailable to this request only */

ngx_uint_t
ra_peer_full(ngx_http_upstream_rr_peer_t *peer)
{
    return peer->max_conns && peer->conns >= peer->max_conns;
}
