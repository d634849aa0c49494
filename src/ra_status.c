/*
 * room_affinity_status: a JSON view of every room_affinity upstream (its
 * backends and its zone), and of one room with ?room=NAME.
 */

#include "ra_module.h"


#define RA_STATUS_UPSTREAM_LEN  512
#define RA_STATUS_BACKEND_LEN   768


static ngx_int_t ra_status_handler(ngx_http_request_t *r);
static ngx_int_t ra_status_room(ngx_http_request_t *r, ngx_str_t *name);
static size_t ra_status_upstream_len(ra_srv_conf_t *rcf);
static u_char *ra_status_upstream(u_char *p, ra_srv_conf_t *rcf,
    ngx_msec_t now);
static const char *ra_status_state(ra_srv_conf_t *rcf, ra_peer_map_t *pm,
    ra_backend_t *be, ngx_msec_t now);
static ngx_int_t ra_status_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_buf_t *b);


char *
ra_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ra_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ra_status_handler(ngx_http_request_t *r)
{
    size_t            len;
    u_char           *p;
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
        if (ra_peer_map(rcfp[i], r->connection->log) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_arg(r, (u_char *) "room", 4, &arg) == NGX_OK) {
        name.data = ngx_pnalloc(r->pool, arg.len);
        if (name.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = name.data;
        ngx_unescape_uri(&p, &arg.data, arg.len, 0);
        name.len = p - name.data;

        return ra_status_room(r, &name);
    }

    len = sizeof("{\"upstreams\":{}}" CRLF);

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

    b->last = ngx_cpymem(b->last, "}}" CRLF, 4);

    return ra_status_send(r, NGX_HTTP_OK, b);
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
            age = now - snap.reported_at;

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
                    "\"moved\":%ui,\"unrecorded\":%ui}}",
                    sh->rooms, used, total, sh->evicted, sh->expired,
                    sh->moved, sh->unrecorded);

    ngx_shmtx_unlock(&shpool->mutex);

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

    if (be->has_report && now - be->reported_at > rcf->stale) {
        return "stale";
    }

    return "up";
}


static ngx_int_t
ra_status_room(ngx_http_request_t *r, ngx_str_t *name)
{
    size_t            len;
    uint32_t          crc;
    ngx_buf_t        *b;
    ngx_uint_t        i;
    ra_room_t        *room;
    ra_backend_t     *be;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp;
    ra_main_conf_t   *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;

    len = sizeof("{\"room\":\"\",\"upstream\":\"\",\"backend\":\"\",\"url\":\"\","
                 "\"live\":,\"age_ms\":,\"idle_ms\":}" CRLF)
          + 6 * (name->len + RA_BACKEND_NAME_LEN + RA_MSG_URL_MAX)
          + 3 * NGX_INT64_LEN + 512;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += 6 * rcfp[i]->upstream->host.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    crc = ngx_crc32_long(name->data, name->len);

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        ctx = rcfp[i]->shm_zone->data;

        ngx_shmtx_lock(&ctx->shpool->mutex);

        room = ra_room_lookup(ctx->sh, crc, name->data, name->len);

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
                              room->live, ngx_current_msec - room->created,
                              room->live ? 0 : ngx_current_msec - room->last);

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        return ra_status_send(r, NGX_HTTP_OK, b);
    }

    b->last = ngx_cpymem(b->last, "{\"error\":\"unknown room\",\"room\":\"",
                         32);
    b->last = (u_char *) ngx_escape_json(b->last, name->data, name->len);
    b->last = ngx_cpymem(b->last, "\"}" CRLF, 4);

    return ra_status_send(r, NGX_HTTP_NOT_FOUND, b);
}


static ngx_int_t
ra_status_send(ngx_http_request_t *r, ngx_uint_t status, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
