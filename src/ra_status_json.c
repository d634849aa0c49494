/*
 * The status as JSON: every upstream (its servers, their reports, its
 * zone) and the Redis link, or one room.  Buffers are sized up front from
 * the longest each part can be (names escaped: 6 bytes a byte at most).
 */

#include "ra_status_json.h"
#include "ra_report.h"
#include "ra_fleet.h"
#include "ra_redis.h"
#include "ra_reply.h"
#include "ra_directory.h"


#define RA_STATUS_UPSTREAM_LEN  640
#define RA_STATUS_DIRECTORY_LEN (512 + 32 * NGX_INT64_LEN)
#define RA_STATUS_BACKEND_LEN   768
#define RA_STATUS_FLEET_LEN     (256 + 48 * RA_FLEET_ERR_COUNT)
#define RA_STATUS_REDIS_LEN     (1280 + 6 * RA_REDIS_ERR_LEN)
#define RA_STATUS_SENTINEL_LEN  (256 + 2 * NGX_SOCKADDR_STRLEN          \
                                 + 4 * NGX_INT64_LEN)


static size_t ra_status_upstream_len(ra_srv_conf_t *rcf);
static u_char *ra_status_upstream(u_char *p, ra_srv_conf_t *rcf,
    ngx_msec_t now);
static u_char *ra_status_directory(u_char *p, ra_srv_conf_t *rcf);
static u_char *ra_status_redis(u_char *p, ra_redis_conf_t *rc,
    ngx_msec_t now);
static u_char *ra_status_sentinel(u_char *p, ra_redis_conf_t *rc,
    ra_redis_sentinel_sh_t *ss);


/* every upstream and the Redis link */

ngx_int_t
ra_status_json(ngx_http_request_t *r, ra_main_conf_t *rmcf)
{
    size_t            len;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ngx_msec_t        now;
    ra_srv_conf_t   **rcfp;

    rcfp = rmcf->upstreams.elts;

    len = sizeof("{\"upstreams\":{},\"redis\":null}" CRLF)
          + RA_STATUS_REDIS_LEN
          + (rmcf->redis ? 6 * rmcf->redis->address.len
                           + RA_STATUS_SENTINEL_LEN
                           + 6 * rmcf->redis->master_name.len : 0);

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += ra_status_upstream_len(rcfp[i]);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_current_msec;

    b->last = ra_cpystr(b->last, "{\"upstreams\":{");

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        if (i) {
            *b->last++ = ',';
        }

        b->last = ra_status_upstream(b->last, rcfp[i], now);
    }

    b->last = ra_cpystr(b->last, "},\"redis\":");

    if (rmcf->redis) {
        b->last = ra_status_redis(b->last, rmcf->redis, now);

    } else {
        b->last = ra_cpystr(b->last, "null");
    }

    b->last = ra_cpystr(b->last, "}" CRLF);

    return ra_send(r, NGX_HTTP_OK, NULL, b);
}


static size_t
ra_status_upstream_len(ra_srv_conf_t *rcf)
{
    return RA_STATUS_UPSTREAM_LEN + RA_STATUS_FLEET_LEN
           + RA_STATUS_DIRECTORY_LEN
           + 6 * (rcf->upstream->host.len + rcf->zone_name.len)
           + rcf->peers.nmap * (RA_STATUS_BACKEND_LEN
                          + 6 * (RA_BACKEND_NAME_LEN + RA_MSG_URL_MAX));
}


static u_char *
ra_status_upstream(u_char *p, ra_srv_conf_t *rcf, ngx_msec_t now)
{
    size_t            used, total;
    ngx_uint_t        k;
    ngx_msec_t        age;
    ra_shctx_t       *sh;
    ra_backend_t     *be, snap;
    ra_zone_ctx_t    *ctx;
    ra_peer_map_t    *pm;
    ngx_slab_pool_t  *shpool;
    ra_decay_pick_t   pick;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    *p++ = '"';
    p = (u_char *) ra_escape_json(p, rcf->upstream->host.data,
                                   rcf->upstream->host.len);
    p = ra_cpystr(p, "\":{\"backends\":[");

    ngx_shmtx_lock(&shpool->mutex);

    ra_decay_pick(&sh->fit, &pick);

    for (k = 0; k < rcf->peers.nmap; k++) {
        pm = &rcf->peers.map[k];
        be = &sh->backends[pm->slot];
        snap = *be;

        if (k) {
            *p++ = ',';
        }

        p = ra_cpystr(p, "{\"server\":\"");
        p = (u_char *) ra_escape_json(p, snap.name, snap.name_len);
        p = ra_cpystr(p, "\",\"url\":\"");
        p = (u_char *) ra_escape_json(p, snap.url, snap.url_len);

        p = ngx_sprintf(p, "\",\"weight\":%i,\"backup\":%s,\"state\":\"%s\","
                        "\"live\":%ui,\"rooms\":%ui,\"pending\":%ui,"
                        "\"placed\":%ui,\"registered\":%s%s",
                        pm->peer->weight, pm->backup ? "true" : "false",
                        ra_report_state(rcf, pm, &snap, now),
                        snap.live, snap.rooms, snap.pending, snap.placed,
                        snap.registered ? "true" : "false",
                        snap.dynamic ? ",\"origin\":\"register\"" : "");

        if (snap.has_report) {
            age = ra_report_age(now, snap.reported_at);

            p = ngx_sprintf(p, ",\"report\":{\"age_ms\":%M", age);

            if (snap.has_connections) {
                p = ngx_sprintf(p, ",\"connections\":%uD", snap.connections);
            }

            if (snap.has_cpu) {
                p = ngx_sprintf(p, ",\"cpu\":%uD.%02uD",
                                snap.cpu / 100, snap.cpu % 100);
            }

            if (snap.capacity) {
                p = ngx_sprintf(p, ",\"capacity\":%uD", snap.capacity);
            }

            p = ngx_sprintf(p, ",\"draining\":%s}",
                            snap.draining ? "true" : "false");
        }

        /* the load placement reads: every instance's connections */

        p = ngx_sprintf(p, ",\"remote_live\":%ui,\"joins\":%ui",
                        snap.remote_live, snap.joins + snap.remote_joins);

        if (snap.has_report && snap.has_connections) {
            p = ngx_sprintf(p, ",\"estimate\":%uD",
                            ra_report_estimate(&snap, &pick, now));
        }

        *p++ = '}';
    }

    total = shpool->end - (u_char *) shpool;
    used = total - shpool->pfree * ngx_pagesize;

    p = ra_cpystr(p, "],\"zone\":{\"name\":\"");
    p = (u_char *) ra_escape_json(p, rcf->zone_name.data,
                                   rcf->zone_name.len);
    p = ngx_sprintf(p, "\",\"rooms\":%ui,\"bytes_used\":%uz,"
                    "\"bytes_total\":%uz,\"evicted\":%ui,\"expired\":%ui,"
                    "\"moved\":%ui,\"unrecorded\":%ui,"
                    "\"placements\":{\"reused_view\":%ui,"
                    "\"full_pass\":%ui},\"slots_reclaimed\":%ui,"
                    "\"workers_reaped\":%ui,\"live_given_back\":%ui,"
                    "\"untracked\":%ui}",
                    sh->rooms, used, total, sh->evicted, sh->expired,
                    sh->moved, sh->unrecorded, sh->placed_viewed,
                    sh->placed_full, sh->reclaimed, sh->reaped,
                    sh->reaped_live, sh->untracked);

    /* how long connections nginx does not see are taken to last */

    p = ngx_sprintf(p, ",\"lifetime\":{\"mode\":\"%s\",\"ms\":",
                    sh->fit.fixed ? "fixed" : "auto");

    if (pick.k == RA_DECAY_NONE) {
        p = ra_cpystr(p, "null");

    } else {
        p = ngx_sprintf(p, "%uL", ra_decay_lifetime(&pick));
    }

    p = ngx_sprintf(p, ",\"reports_fitted\":%uD}", sh->fit.reports);

    if (rcf->fleet) {
        /* registered backends (ra_fleet.c) */

        p = ngx_sprintf(p, ",\"fleet\":{\"registered\":%ui,\"max\":%ui,"
                        "\"joined\":%ui,\"left\":%ui,\"refused\":{",
                        sh->fleet.active, rcf->fleet->max, sh->fleet.joined,
                        sh->fleet.left);

        for (k = 0; k < RA_FLEET_ERR_COUNT; k++) {
            p = ngx_sprintf(p, "%s\"%s\":%ui", k ? "," : "",
                            ra_fleet_err_name(k), sh->fleet.rejected[k]);
        }

        p = ra_cpystr(p, "}}");
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (rcf->directory) {
        p = ra_status_directory(p, rcf);
    }

    *p++ = '}';

    return p;
}


/* the room directory's figures (ra_directory.c) */

static u_char *
ra_status_directory(u_char *p, ra_srv_conf_t *rcf)
{
    ngx_uint_t       i, n;
    ra_dir_sh_t      d;
    static uint64_t  bounds[RA_DIR_RTT_BUCKETS] = RA_DIR_RTT_BOUNDS;

    ra_directory_stats(rcf, &d);

    p = ngx_sprintf(p, ",\"directory\":{\"calls\":%ui,\"hits\":%ui,"
                       "\"misses\":%ui,\"adopted\":%ui,"
                       "\"lost_races\":%ui,\"moves\":%ui,"
                       "\"move_races\":%ui,\"unconfirmed\":%ui,"
                       "\"reconciled\":%ui,\"splits\":%ui,"
                       "\"renewed\":%ui,\"restored\":%ui,"
                       "\"errors\":%ui,"
                       "\"rtt_us\":{\"count\":%ui,\"avg\":%uL,"
                       "\"max\":%uL,\"le\":{",
                       d.calls, d.hits, d.misses, d.adopted, d.lost_races,
                       d.moves, d.move_races, d.unconfirmed, d.reconciled,
                       d.splits, d.renewed, d.restored, d.errors, d.rtt_n,
                       d.rtt_n ? d.rtt_sum / d.rtt_n : (uint64_t) 0,
                       d.rtt_max);

    /* the histogram, cumulative as Prometheus has it */

    n = 0;

    for (i = 0; i < RA_DIR_RTT_BUCKETS; i++) {
        n += d.rtt_le[i];

        if (bounds[i]) {
            p = ngx_sprintf(p, "%s\"%uL\":%ui", i ? "," : "", bounds[i], n);

        } else {
            p = ngx_sprintf(p, ",\"inf\":%ui", n);
        }
    }

    return ra_cpystr(p, "}}}");
}


static u_char *
ra_status_redis(u_char *p, ra_redis_conf_t *rc, ngx_msec_t now)
{
    ngx_uint_t     i, rejected;
    ra_share_sh_t  share;
    ra_redis_sh_t  sh;

    ra_redis_stats(rc, &sh);
    ra_share_stats(&rc->share, &share);

    p = ra_cpystr(p, "{\"address\":\"");
    p = (u_char *) ngx_escape_json(p, rc->address.data, rc->address.len);
    p = ngx_sprintf(p, "\",\"connected\":%s,\"subscriber_pid\":%P,"
                    "\"connects\":%ui,\"failures\":%ui,\"last_error\":\"",
                    sh.connected ? "true" : "false", sh.owner, sh.connects,
                    sh.failures);
    p = (u_char *) ngx_escape_json(p, sh.last_error, sh.last_error_len);

    rejected = 0;

    for (i = 1; i < RA_MSG_ERR_COUNT; i++) {
        rejected += sh.rejected[i];
    }

    p = ngx_sprintf(p, "\",\"snapshots\":%ui,\"messages\":{\"applied\":%ui,"
                    "\"unknown_backend\":%ui,\"rejected\":%ui,"
                    "\"rejected_by_reason\":{",
                    sh.snapshots, sh.applied, sh.unknown, rejected);

    for (i = 1; i < RA_MSG_ERR_COUNT; i++) {
        p = ngx_sprintf(p, "%s\"%s\":%ui", i > 1 ? "," : "",
                        ra_msg_err_name((ra_msg_err_e) i), sh.rejected[i]);
    }

    p = ngx_sprintf(p, "},\"last_message_age_ms\":");

    if (sh.last_message) {
        p = ngx_sprintf(p, "%M", now - sh.last_message);

    } else {
        p = ra_cpystr(p, "null");
    }

    p = ngx_sprintf(p, "},\"rooms_shared\":{\"enabled\":%s,"
                    "\"published\":%ui,\"received\":%ui,\"adopted\":%ui,"
                    "\"dropped\":%ui,\"counts_sent\":%ui,"
                    "\"counts_received\":%ui,\"refused\":%ui},"
                    "\"signed\":%s",
                    rc->share_on ? "true" : "false", share.published,
                    share.received, share.adopted, share.dropped,
                    share.counts.sent, share.counts.received,
                    share.refused, rc->sign ? "true" : "false");

    /* the link as the subscriber sees it, and the last snapshot */

    p = ngx_sprintf(p, ",\"state\":\"%s\",\"last_reply_age_ms\":",
                    ra_redis_state_name(sh.state));

    if (sh.owner && sh.last_reply) {
        p = ngx_sprintf(p, "%M", now - sh.last_reply);

    } else {
        p = ra_cpystr(p, "null");
    }

    p = ngx_sprintf(p, ",\"snapshot\":{\"entries\":%ui,\"truncated\":%s}",
                    sh.snapshot_entries,
                    sh.snapshot_truncated ? "true" : "false");

    p = ra_status_sentinel(p, rc, &sh.sentinel);
    *p++ = '}';

    return p;
}


/* the master the Sentinels named, and which of them did */

static u_char *
ra_status_sentinel(u_char *p, ra_redis_conf_t *rc, ra_redis_sentinel_sh_t *ss)
{
    p = ra_cpystr(p, ",\"sentinel\":");

    if (rc->sentinels == NULL) {
        return ra_cpystr(p, "null");
    }

    p = ra_cpystr(p, "{\"master_name\":\"");
    p = (u_char *) ngx_escape_json(p, rc->master_name.data,
                                   rc->master_name.len);
    p = ra_cpystr(p, "\",\"master\":");

    ss->host[NGX_INET6_ADDRSTRLEN] = '\0';
    ss->answered[NGX_SOCKADDR_STRLEN] = '\0';

    if (ss->port) {
        /* an IPv6 address in brackets, as nginx writes one with a port */
        p = ngx_sprintf(p, ngx_strchr(ss->host, ':') ? "\"[%s]:%ui\""
                                                     : "\"%s:%ui\"",
                        ss->host, ss->port);

    } else {
        p = ra_cpystr(p, "null");
    }

    p = ra_cpystr(p, ",\"answered_by\":");

    if (ss->answered[0]) {
        p = ngx_sprintf(p, "\"%s\"", ss->answered);

    } else {
        p = ra_cpystr(p, "null");
    }

    return ngx_sprintf(p, ",\"lookups\":%ui,\"switches\":%ui,"
                       "\"failures\":%ui,\"generation\":%ui}",
                       ss->lookups, ss->switches, ss->failures,
                       ss->generation);
}


/* one room: its upstream, backend and live count */

ngx_int_t
ra_status_json_room(ngx_http_request_t *r, ra_main_conf_t *rmcf,
    ngx_str_t *name)
{
    size_t            len;
    uint32_t          hash;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ra_room_t        *room;
    ra_backend_t     *be;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp;

    rcfp = rmcf->upstreams.elts;

    len = sizeof("{\"room\":\"\",\"upstream\":\"\",\"backend\":\"\","
                 "\"url\":\"\",\"live\":,\"age_ms\":,\"idle_ms\":}" CRLF)
          + 6 * (name->len + RA_BACKEND_NAME_LEN + RA_MSG_URL_MAX)
          + 3 * NGX_INT64_LEN + 512;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += 6 * rcfp[i]->upstream->host.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hash = (uint32_t) ra_hash(name->data, name->len);

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        ctx = rcfp[i]->shm_zone->data;

        ngx_shmtx_lock(&ctx->shpool->mutex);

        room = ra_room_lookup(ctx->sh, hash, name->data, name->len);

        if (room == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            continue;
        }

        be = &ctx->sh->backends[room->backend];

        b->last = ra_cpystr(b->last, "{\"room\":\"");
        b->last = (u_char *) ra_escape_json(b->last, name->data, name->len);
        b->last = ra_cpystr(b->last, "\",\"upstream\":\"");
        b->last = (u_char *) ra_escape_json(b->last,
                                             rcfp[i]->upstream->host.data,
                                             rcfp[i]->upstream->host.len);
        b->last = ra_cpystr(b->last, "\",\"backend\":\"");
        b->last = (u_char *) ra_escape_json(b->last, be->name, be->name_len);
        b->last = ra_cpystr(b->last, "\",\"url\":\"");
        b->last = (u_char *) ra_escape_json(b->last, be->url, be->url_len);
        b->last = ngx_sprintf(b->last, "\",\"live\":%uD,\"age_ms\":%M,"
                              "\"idle_ms\":%M}" CRLF,
                              room->live,
                              (ngx_msec_t) (uint32_t) ((uint32_t)
                                  ngx_current_msec - room->created),
                              room->live ? 0 : (ngx_msec_t) ngx_max(
                                  (int32_t) ((uint32_t) ngx_current_msec
                                             - room->last), 0));

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        return ra_send(r, NGX_HTTP_OK, NULL, b);
    }

    b->last = ra_cpystr(b->last, "{\"error\":\"unknown room\",\"room\":\"");
    b->last = (u_char *) ra_escape_json(b->last, name->data, name->len);
    b->last = ra_cpystr(b->last, "\"}" CRLF);

    return ra_send(r, NGX_HTTP_NOT_FOUND, NULL, b);
}

