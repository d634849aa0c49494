/*
 * room_affinity_status: a JSON view of every room_affinity upstream (its
 * backends and its zone), and of one room with ?room=NAME.
 */

#include "ra_module.h"
#include "ra_balancer.h"
#include "ra_redis.h"
#include "ra_body.h"


#define RA_STATUS_UPSTREAM_LEN  512
#define RA_STATUS_BACKEND_LEN   768
#define RA_STATUS_REDIS_LEN     (1024 + 6 * RA_REDIS_ERR_LEN)
#define RA_PROM_BACKEND_LEN     (16 * (160 + RA_BACKEND_NAME_LEN))
#define RA_PROM_HELP_LEN        4096


static ngx_int_t ra_status_handler(ngx_http_request_t *r);
static ngx_int_t ra_status_room(ngx_http_request_t *r, ngx_str_t *name);
static size_t ra_status_upstream_len(ra_srv_conf_t *rcf);
static u_char *ra_status_upstream(u_char *p, ra_srv_conf_t *rcf,
    ngx_msec_t now);
static const char *ra_status_state(ra_srv_conf_t *rcf, ra_peer_map_t *pm,
    ra_backend_t *be, ngx_msec_t now);
static ngx_msec_t ra_status_age(ngx_msec_t now, ngx_msec_t at);
static u_char *ra_status_redis(u_char *p, ra_redis_conf_t *rc,
    ngx_msec_t now);
static ngx_int_t ra_status_prometheus(ngx_http_request_t *r,
    ra_main_conf_t *rmcf);
static ngx_int_t ra_prom_escape(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_str_t *out);


char *
ra_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "conflicts with another content handler in the location "
               "(proxy_pass, room_affinity_join, ...)";
    }

    clcf->handler = ra_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ra_status_handler(ngx_http_request_t *r)
{
    size_t            len;
    ngx_int_t         rc;
    ngx_str_t         arg, name;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ngx_msec_t        now;
    ra_srv_conf_t   **rcfp;
    ra_main_conf_t   *rmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        /* without a map (zone full), the upstream lists no server */
        if (ra_peer_map(rcfp[i], r->connection->log) == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* decoded as the join API decodes its argument ("+" is a space) */

    ngx_str_set(&arg, "room");

    rc = ra_arg_room(r, &arg, &name);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_ABORT) {
        /* a bad %-escape: no room has that name */
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc == NGX_OK) {
        /* the name the room table keeps: "md5:..." past 512 bytes */
        if (ra_room_name(r->pool, &name) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ra_status_room(r, &name);
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &arg) == NGX_OK
        && arg.len == 10 && ngx_strncmp(arg.data, "prometheus", 10) == 0)
    {
        return ra_status_prometheus(r, rmcf);
    }

    len = sizeof("{\"upstreams\":{},\"redis\":null}" CRLF)
          + RA_STATUS_REDIS_LEN
          + (rmcf->redis ? 6 * rmcf->redis->address.len : 0);

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += ra_status_upstream_len(rcfp[i]);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_current_msec;

    b->last = ngx_cpymem(b->last, "{\"upstreams\":{", 14);

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        if (i) {
            *b->last++ = ',';
        }

        b->last = ra_status_upstream(b->last, rcfp[i], now);
    }

    b->last = ngx_cpymem(b->last, "},\"redis\":", 10);

    if (rmcf->redis) {
        b->last = ra_status_redis(b->last, rmcf->redis, now);

    } else {
        b->last = ngx_cpymem(b->last, "null", 4);
    }

    b->last = ngx_cpymem(b->last, "}" CRLF, 3);

    return ra_send(r, NGX_HTTP_OK, NULL, b);
}


static size_t
ra_status_upstream_len(ra_srv_conf_t *rcf)
{
    return RA_STATUS_UPSTREAM_LEN
           + 6 * (rcf->upstream->host.len + rcf->zone_name.len)
           + rcf->nmap * (RA_STATUS_BACKEND_LEN
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

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, rcf->upstream->host.data,
                                   rcf->upstream->host.len);
    p = ngx_cpymem(p, "\":{\"backends\":[", 15);

    ngx_shmtx_lock(&shpool->mutex);

    for (k = 0; k < rcf->nmap; k++) {
        pm = &rcf->map[k];
        be = &sh->backends[pm->slot];
        snap = *be;

        if (k) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, "{\"server\":\"", 11);
        p = (u_char *) ngx_escape_json(p, snap.name, snap.name_len);
        p = ngx_cpymem(p, "\",\"url\":\"", 9);
        p = (u_char *) ngx_escape_json(p, snap.url, snap.url_len);

        p = ngx_sprintf(p, "\",\"weight\":%i,\"backup\":%s,\"state\":\"%s\","
                        "\"live\":%ui,\"rooms\":%ui,\"pending\":%ui,"
                        "\"placed\":%ui,\"registered\":%s",
                        pm->peer->weight, pm->backup ? "true" : "false",
                        ra_status_state(rcf, pm, &snap, now),
                        snap.live, snap.rooms, snap.pending, snap.placed,
                        snap.registered ? "true" : "false");

        if (snap.has_report) {
            age = ra_status_age(now, snap.reported_at);

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

        *p++ = '}';
    }

    total = shpool->end - (u_char *) shpool;
    used = total - shpool->pfree * ngx_pagesize;

    p = ngx_cpymem(p, "],\"zone\":{\"name\":\"", 18);
    p = (u_char *) ngx_escape_json(p, rcf->zone_name.data,
                                   rcf->zone_name.len);
    p = ngx_sprintf(p, "\",\"rooms\":%ui,\"bytes_used\":%uz,"
                    "\"bytes_total\":%uz,\"evicted\":%ui,\"expired\":%ui,"
                    "\"moved\":%ui,\"unrecorded\":%ui,"
                    "\"placements\":{\"reused_view\":%ui,"
                    "\"full_pass\":%ui}}}",
                    sh->rooms, used, total, sh->evicted, sh->expired,
                    sh->moved, sh->unrecorded, sh->placed_viewed,
                    sh->placed_full);

    ngx_shmtx_unlock(&shpool->mutex);

    return p;
}


static u_char *
ra_status_redis(u_char *p, ra_redis_conf_t *rc, ngx_msec_t now)
{
    ngx_uint_t     i, rejected;
    ra_redis_sh_t  sh;

    ngx_shmtx_lock(&rc->shpool->mutex);
    sh = *rc->sh;
    ngx_shmtx_unlock(&rc->shpool->mutex);

    p = ngx_cpymem(p, "{\"address\":\"", 12);
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
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, "},\"rooms_shared\":{\"enabled\":%s,"
                    "\"published\":%ui,\"received\":%ui,\"adopted\":%ui,"
                    "\"dropped\":%ui}}",
                    rc->share ? "true" : "false", sh.shared_out,
                    sh.shared_in, sh.shared_adopted, sh.shared_dropped);

    return p;
}


static const char *
ra_status_state(ra_srv_conf_t *rcf, ra_peer_map_t *pm, ra_backend_t *be,
    ngx_msec_t now)
{
    time_t                        t;
    ngx_http_upstream_rr_peer_t  *peer;

    peer = pm->peer;
    t = ngx_time();

    if (peer->down
        || (peer->max_fails
            && peer->fails >= peer->max_fails
            && t - peer->checked <= peer->fail_timeout))
    {
        return "down";
    }

    if (be->draining) {
        return "draining";
    }

    if (be->has_report && ra_status_age(now, be->reported_at) > rcf->stale) {
        return "stale";
    }

    return "up";
}


/* ms since "at"; 0 when the subscriber's clock was ahead of this worker's */

static ngx_msec_t
ra_status_age(ngx_msec_t now, ngx_msec_t at)
{
    return ((ngx_msec_int_t) (now - at) < 0) ? 0 : now - at;
}


static ngx_int_t
ra_status_room(ngx_http_request_t *r, ngx_str_t *name)
{
    size_t            len;
    uint32_t          hash;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ra_room_t        *room;
    ra_backend_t     *be;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp;
    ra_main_conf_t   *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_room_affinity_module);
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

        b->last = ngx_cpymem(b->last, "{\"room\":\"", 9);
        b->last = (u_char *) ngx_escape_json(b->last, name->data, name->len);
        b->last = ngx_cpymem(b->last, "\",\"upstream\":\"", 14);
        b->last = (u_char *) ngx_escape_json(b->last,
                                             rcfp[i]->upstream->host.data,
                                             rcfp[i]->upstream->host.len);
        b->last = ngx_cpymem(b->last, "\",\"backend\":\"", 13);
        b->last = (u_char *) ngx_escape_json(b->last, be->name, be->name_len);
        b->last = ngx_cpymem(b->last, "\",\"url\":\"", 9);
        b->last = (u_char *) ngx_escape_json(b->last, be->url, be->url_len);
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

    b->last = ngx_cpymem(b->last, "{\"error\":\"unknown room\",\"room\":\"",
                         32);
    b->last = (u_char *) ngx_escape_json(b->last, name->data, name->len);
    b->last = ngx_cpymem(b->last, "\"}" CRLF, 4);

    return ra_send(r, NGX_HTTP_NOT_FOUND, NULL, b);
}


static ngx_int_t
ra_status_prometheus(ngx_http_request_t *r, ra_main_conf_t *rmcf)
{
    size_t            len;
    u_char           *p;
    ngx_buf_t        *b;
    ngx_uint_t        i, k, j;
    ngx_msec_t        now;
    ra_shctx_t       *sh;
    ra_backend_t      be;
    ra_peer_map_t    *pm;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp, *rcf;
    ngx_str_t         up, zone, server;
    ra_redis_sh_t     rsh;
    ngx_slab_pool_t  *shpool;

    static const char  *help[] = {
        "room_affinity_backend_up gauge "
        "1 when the backend can take new rooms",
        "room_affinity_backend_state gauge "
        "the backend's state (up, down, draining, stale) as a label",
        "room_affinity_backend_live_connections gauge "
        "upstream connections through this nginx, all workers",
        "room_affinity_backend_rooms gauge rooms pinned to the backend",
        "room_affinity_backend_pending_rooms gauge "
        "rooms placed since the last report",
        "room_affinity_backend_placed_rooms_total counter "
        "rooms ever placed on the backend",
        "room_affinity_backend_reported_connections gauge "
        "connections in the last report",
        "room_affinity_backend_reported_cpu_percent gauge "
        "cpu in the last report",
        "room_affinity_backend_reported_capacity gauge "
        "capacity in the last report",
        "room_affinity_backend_report_age_seconds gauge "
        "age of the last report",
        "room_affinity_zone_rooms gauge rooms in the zone",
        "room_affinity_zone_bytes_used gauge bytes used in the zone",
        "room_affinity_zone_bytes_total gauge size of the zone",
        "room_affinity_zone_evicted_total counter "
        "idle rooms evicted because the zone was full",
        "room_affinity_zone_expired_total counter "
        "idle rooms forgotten after the ttl",
        "room_affinity_zone_moved_total counter "
        "rooms moved because their backend was unavailable",
        "room_affinity_zone_unrecorded_total counter "
        "rooms placed without recording because the zone was full",
        "room_affinity_zone_placements_total counter "
        "rooms placed, by how: from a worker's kept view or a full pass",
        "room_affinity_redis_connected gauge 1 when subscribed",
        "room_affinity_redis_connects_total counter subscriptions made",
        "room_affinity_redis_failures_total counter "
        "connection failures and losses",
        "room_affinity_redis_messages_applied_total counter "
        "messages applied to a backend",
        "room_affinity_redis_messages_unknown_total counter "
        "messages for a url that matches no server",
        "room_affinity_redis_messages_rejected_total counter "
        "messages rejected, by reason",
        NULL
    };

    len = RA_PROM_HELP_LEN + RA_STATUS_REDIS_LEN;
    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += RA_STATUS_UPSTREAM_LEN * 8
               + rcfp[i]->nmap * (RA_PROM_BACKEND_LEN
                                  + 16 * rcfp[i]->upstream->host.len)
               + 24 * (rcfp[i]->upstream->host.len
                       + rcfp[i]->zone_name.len);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    now = ngx_current_msec;

    /* "# HELP name text" and "# TYPE name kind" from "name kind text" */

    for (j = 0; help[j]; j++) {
        k = ngx_strchr(help[j], ' ') - help[j];
        i = ngx_strchr(help[j] + k + 1, ' ') - help[j];

        p = ngx_sprintf(p, "# HELP %*s %s\n# TYPE %*s %*s\n",
                        k, help[j], help[j] + i + 1, k, help[j],
                        i - k - 1, help[j] + k + 1);
    }

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];
        ctx = rcf->shm_zone->data;
        sh = ctx->sh;
        shpool = ctx->shpool;

        if (ra_prom_escape(r->pool, rcf->upstream->host.data,
                           rcf->upstream->host.len, &up) != NGX_OK
            || ra_prom_escape(r->pool, rcf->zone_name.data,
                              rcf->zone_name.len, &zone) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (k = 0; k < rcf->nmap; k++) {
            pm = &rcf->map[k];

            ngx_shmtx_lock(&shpool->mutex);
            be = sh->backends[pm->slot];
            ngx_shmtx_unlock(&shpool->mutex);

            if (ra_prom_escape(r->pool, be.name, be.name_len, &server)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

#define RA_LABELS  "{upstream=\"%V\",server=\"%V\"}"
#define RA_LABEL_ARGS  &up, &server

            p = ngx_sprintf(p, "room_affinity_backend_up" RA_LABELS " %d\n",
                            RA_LABEL_ARGS,
                            ngx_strcmp(ra_status_state(rcf, pm, &be, now),
                                       "up") == 0);
            p = ngx_sprintf(p, "room_affinity_backend_state"
                            "{upstream=\"%V\",server=\"%V\",state=\"%s\"} 1\n",
                            RA_LABEL_ARGS, ra_status_state(rcf, pm, &be, now));
            p = ngx_sprintf(p, "room_affinity_backend_live_connections"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.live);
            p = ngx_sprintf(p, "room_affinity_backend_rooms" RA_LABELS
                            " %ui\n", RA_LABEL_ARGS, be.rooms);
            p = ngx_sprintf(p, "room_affinity_backend_pending_rooms"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.pending);
            p = ngx_sprintf(p, "room_affinity_backend_placed_rooms_total"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.placed);

            if (be.has_report) {
                if (be.has_connections) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_connections"
                                RA_LABELS " %uD\n", RA_LABEL_ARGS,
                                be.connections);
                }

                if (be.has_cpu) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_cpu_percent"
                                RA_LABELS " %uD.%02uD\n", RA_LABEL_ARGS,
                                be.cpu / 100, be.cpu % 100);
                }

                if (be.capacity) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_capacity"
                                RA_LABELS " %uD\n", RA_LABEL_ARGS,
                                be.capacity);
                }

                p = ngx_sprintf(p, "room_affinity_backend_report_age_seconds"
                                RA_LABELS " %M.%03M\n", RA_LABEL_ARGS,
                                ra_status_age(now, be.reported_at) / 1000,
                                ra_status_age(now, be.reported_at) % 1000);
            }

#undef RA_LABELS
#undef RA_LABEL_ARGS
        }

        ngx_shmtx_lock(&shpool->mutex);

#define RA_ZONE(name, value)                                                  \
        p = ngx_sprintf(p, "room_affinity_zone_" name                         \
                        "{upstream=\"%V\",zone=\"%V\"} %uz\n",                 \
                        &up, &zone,                                           \
                        (size_t) (value))

        RA_ZONE("rooms", sh->rooms);
        RA_ZONE("bytes_used", (shpool->end - (u_char *) shpool)
                              - shpool->pfree * ngx_pagesize);
        RA_ZONE("bytes_total", shpool->end - (u_char *) shpool);
        RA_ZONE("evicted_total", sh->evicted);
        RA_ZONE("expired_total", sh->expired);
        RA_ZONE("moved_total", sh->moved);
        RA_ZONE("unrecorded_total", sh->unrecorded);

#undef RA_ZONE

        p = ngx_sprintf(p, "room_affinity_zone_placements_total"
                        "{upstream=\"%V\",zone=\"%V\",pass=\"reused_view\"}"
                        " %ui\n", &up, &zone, sh->placed_viewed);
        p = ngx_sprintf(p, "room_affinity_zone_placements_total"
                        "{upstream=\"%V\",zone=\"%V\",pass=\"full_pass\"}"
                        " %ui\n",
                        &up, &zone, sh->placed_full);

        ngx_shmtx_unlock(&shpool->mutex);
    }

    if (rmcf->redis) {
        ngx_shmtx_lock(&rmcf->redis->shpool->mutex);
        rsh = *rmcf->redis->sh;
        ngx_shmtx_unlock(&rmcf->redis->shpool->mutex);

        p = ngx_sprintf(p, "room_affinity_redis_connected %d\n"
                        "room_affinity_redis_connects_total %ui\n"
                        "room_affinity_redis_failures_total %ui\n"
                        "room_affinity_redis_messages_applied_total %ui\n"
                        "room_affinity_redis_messages_unknown_total %ui\n",
                        rsh.connected ? 1 : 0, rsh.connects, rsh.failures,
                        rsh.applied, rsh.unknown);

        for (j = 1; j < RA_MSG_ERR_COUNT; j++) {
            p = ngx_sprintf(p, "room_affinity_redis_messages_rejected_total"
                            "{reason=\"%s\"} %ui\n",
                            ra_msg_err_name((ra_msg_err_e) j),
                            rsh.rejected[j]);
        }
    }

    b->last = p;

    return ra_send(r, NGX_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                   b);
}


static ngx_int_t
ra_prom_escape(ngx_pool_t *pool, u_char *data, size_t len, ngx_str_t *out)
{
    u_char  *p, *last;

    /* a label value: backslash, double quote and newline are escaped */

    out->data = ngx_pnalloc(pool, 2 * len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    for (last = data + len; data < last; data++) {
        if (*data == '\\' || *data == '"') {
            *p++ = '\\';
            *p++ = *data;

        } else if (*data == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = *data;
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}
