/*
 * room_affinity_join: the join API of the origin design, answered from the
 * room table the proxy uses.
 *
 *     POST {"roomName": "lobby"}   or   GET ?roomName=lobby
 *     200  {"url":"ws://10.0.0.11:3000","roomName":"lobby","new":true}
 *
 * The answer reserves the room on its backend in the shared table (a new
 * room counts as a pending placement), so a request of the same room that
 * later comes through the proxy, on any worker, reaches the same backend.
 */

#include "ra_join.h"
#include "ra_body.h"
#include "ra_route.h"
#include "ra_directory.h"


static ngx_int_t ra_join_arg(ngx_http_request_t *r, ra_loc_conf_t *rlcf);
static void ra_join_body_handler(ngx_http_request_t *r);
static ngx_int_t ra_join_body(ngx_http_request_t *r);
static void ra_join_resume(ngx_http_request_t *r);
static ngx_int_t ra_join_room(ngx_http_request_t *r, ra_loc_conf_t *rlcf,
    ngx_str_t *room);
static ngx_int_t ra_join_stateless(ngx_http_request_t *r, ra_loc_conf_t *rlcf,
    ngx_str_t *room);
static ngx_int_t ra_join_answer(ngx_http_request_t *r, ra_loc_conf_t *rlcf,
    ngx_str_t *room, u_char *url, size_t url_len, ngx_uint_t is_new);
static ngx_int_t ra_join_too_large(ngx_http_request_t *r, off_t max);
static ngx_int_t ra_join_not_allowed(ngx_http_request_t *r);
static ngx_int_t ra_join_no_backend(ngx_http_request_t *r,
    ra_loc_conf_t *rlcf);


ngx_int_t
ra_join_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ra_loc_conf_t             *rlcf;
    ngx_http_core_loc_conf_t  *clcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);

    if (rlcf->join == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ra_join_arg(r, rlcf);
    }

    if (!(r->method & NGX_HTTP_POST)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ra_join_not_allowed(r);
    }

    if (r->headers_in.content_length_n > (off_t) rlcf->join_max_body) {
        /* refused before it is sent, if the client waits for 100 */
        r->expect_tested = 1;

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ra_join_too_large(r, (off_t) rlcf->join_max_body);
    }

    rc = ngx_http_read_client_request_body(r, ra_join_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /* a chunked body above client_max_body_size, seen at once */
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        return ra_join_too_large(r, clcf->client_max_body_size);
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ra_join_arg(ngx_http_request_t *r, ra_loc_conf_t *rlcf)
{
    u_char         *p, *last;
    size_t          n;
    ngx_int_t       rc;
    ngx_str_t       room;
    ra_room_err_t   err;

    rc = ra_arg_room(r, &rlcf->field, &room);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ra_room_error(&err, "missing_room",
                      "the query argument \"%V\" is missing", &rlcf->field);
        return ra_json_error(r, NGX_HTTP_BAD_REQUEST, &err);
    }

    if (rc == NGX_ABORT) {
        ra_room_error(&err, "invalid_room",
                      "the query argument \"%V\" has a bad %%-escape",
                      &rlcf->field);
        return ra_json_error(r, NGX_HTTP_BAD_REQUEST, &err);
    }

    if (room.len == 0) {
        ra_room_error(&err, "empty_room",
                      "the query argument \"%V\" is empty", &rlcf->field);
        return ra_json_error(r, NGX_HTTP_BAD_REQUEST, &err);
    }

    /* the same names as in JSON: well-formed UTF-8, no NUL */

    p = room.data;
    last = room.data + room.len;

    while (p < last) {
        n = ra_utf8_len(p, last);

        if (n == 0 || *p == '\0') {
            ra_room_error(&err, "invalid_room",
                          "the query argument \"%V\" is not UTF-8 text",
                          &rlcf->field);
            return ra_json_error(r, NGX_HTTP_BAD_REQUEST, &err);
        }

        p += n;
    }

    return ra_join_room(r, rlcf, &room);
}


static void
ra_join_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ra_join_body(r));
}


static ngx_int_t
ra_join_body(ngx_http_request_t *r)
{
    ngx_int_t       rc;
    ngx_str_t       room;
    ra_room_err_t   err;
    ra_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);

    /* a chunked body has no length to check before it is read */

    /* the body's length once read, chunked included */

    if (r->headers_in.content_length_n > (off_t) rlcf->join_max_body) {
        return ra_join_too_large(r, (off_t) rlcf->join_max_body);
    }

    rc = ra_body_room(r, &rlcf->field, &room, &err);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ra_json_error(r, NGX_HTTP_BAD_REQUEST, &err);
    }

    return ra_join_room(r, rlcf, &room);
}


static ngx_int_t
ra_join_room(ngx_http_request_t *r, ra_loc_conf_t *rlcf, ngx_str_t *room)
{
    size_t          url_len;
    ngx_int_t       rc;
    ra_route_t      rt;
    ra_backend_t   *be;
    ra_srv_conf_t  *rcf;
    ra_zone_ctx_t  *ctx;
    ra_body_ctx_t  *bctx;
    u_char          url[RA_MSG_URL_MAX + RA_BACKEND_NAME_LEN + 8];

    rcf = rlcf->join;

    if (rcf->directory) {
        /* the room's record first, as for a proxied request */

        bctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);

        if (bctx == NULL) {
            bctx = ngx_pcalloc(r->pool, sizeof(ra_body_ctx_t));
            if (bctx == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_http_set_ctx(r, bctx, ngx_http_room_affinity_module);
        }

        if (bctx->directory == RA_DIR_ASK_NONE) {
            bctx->directory = RA_DIR_ASK_DONE;
            bctx->room = *room;

            if (ra_directory_ask(r, rcf, room, ra_join_resume) == NGX_AGAIN) {
                bctx->directory |= RA_DIR_ASK_WAITING;
                r->main->count++;
                return NGX_DONE;
            }
        }
    }

    rc = ra_route_init(&rt, rcf, room, r->pool, r->connection->log);

    if (rc == NGX_DECLINED) {
        /* the zone has no room for the servers' records yet */
        return ra_join_stateless(r, rlcf, room);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ra_peers_lock(rcf);
    rc = ra_route(&rt, 0, r->connection->log);
    ra_peers_unlock(rcf);

    if (rc != NGX_OK) {
        return ra_join_no_backend(r, rlcf);
    }

    /* the public url: registered, or room_affinity_url, or the address */

    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    be = &ctx->sh->backends[rt.slot];

    if (be->url_len) {
        url_len = ngx_cpymem(url, be->url, be->url_len) - url;

    } else {
        url_len = ngx_sprintf(url, "ws://%*s", be->name_len, be->name) - url;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "room_affinity: join room \"%V\" %s, url \"%*s\"",
                   room, rt.is_new ? "placed" : "found", url_len, url);

    /*
     * a room placed without recording (full zone) is new as well; with
     * the directory, one whose record this join wrote
     */

    bctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);

    return ra_join_answer(r, rlcf, room, url, url_len,
                          rt.is_new || rt.room == NULL
                          || (bctx && (bctx->directory & RA_DIR_ASK_PLACED)));
}


/* the directory answered, or the wait is over: the answer */

static void
ra_join_resume(ngx_http_request_t *r)
{
    ra_body_ctx_t  *bctx;
    ra_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);
    bctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);

    bctx->directory = (bctx->directory & RA_DIR_ASK_PLACED) | RA_DIR_ASK_DONE;

    ngx_http_finalize_request(r, ra_join_room(r, rlcf, &bctx->room));
}


/*
 * While the zone has no slot for every server (a reload onto a full zone,
 * until idle rooms make way): a server up, chosen by a weighted hash of
 * the room's name and recorded nowhere, as the proxy's round robin is.
 * Never a 503 while a server can take the room.
 */

static ngx_int_t
ra_join_stateless(ngx_http_request_t *r, ra_loc_conf_t *rlcf, ngx_str_t *room)
{
    time_t                         now;
    size_t                         url_len;
    uint64_t                       w, total;
    ngx_str_t                     *conf;
    ngx_uint_t                     pass;
    ra_srv_conf_t                 *rcf;
    ngx_http_upstream_rr_peer_t   *peer, *chosen;
    ngx_http_upstream_rr_peers_t  *peers, *list;
    u_char                         url[RA_MSG_URL_MAX + RA_BACKEND_NAME_LEN
                                       + 8];

    rcf = rlcf->join;
    peers = rcf->upstream->peer.data;
    now = ngx_time();
    chosen = NULL;
    url_len = 0;

    ra_peers_lock(rcf);

    /* the primary servers; the backup ones only when none is up */

    for (list = peers, pass = 0; list && pass < 2 && chosen == NULL;
         list = list->next, pass++)
    {
        total = 0;

        for (peer = list->peer; peer; peer = peer->next) {
            if (!ra_peer_gone(peer, now)) {
                total += peer->weight;
            }
        }

        if (total == 0) {
            continue;
        }

        w = ra_hash(room->data, room->len) % total;

        for (peer = list->peer; peer; peer = peer->next) {
            if (ra_peer_gone(peer, now)) {
                continue;
            }

            if (w < (uint64_t) peer->weight) {
                chosen = peer;
                break;
            }

            w -= peer->weight;
        }
    }

    if (chosen) {
        conf = ra_peers_conf_url(rcf, chosen);

        if (conf) {
            url_len = ngx_cpymem(url, conf->data,
                                 ngx_min(conf->len, RA_MSG_URL_MAX)) - url;

        } else {
            url_len = ngx_sprintf(url, "ws://%*s",
                                  ngx_min(chosen->name.len,
                                          RA_BACKEND_NAME_LEN),
                                  chosen->name.data) - url;
        }
    }

    ra_peers_unlock(rcf);

    if (chosen == NULL) {
        return ra_join_no_backend(r, rlcf);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "room_affinity: join room \"%V\" unrecorded, url \"%*s\"",
                   room, url_len, url);

    return ra_join_answer(r, rlcf, room, url, url_len, 1);
}


static ngx_int_t
ra_join_answer(ngx_http_request_t *r, ra_loc_conf_t *rlcf, ngx_str_t *room,
    u_char *url, size_t url_len, ngx_uint_t is_new)
{
    size_t      len;
    ngx_buf_t  *b;

    len = sizeof("{\"url\":\"\",\"\":\"\",\"new\":false}" CRLF) - 1
          + url_len + ra_escape_json(NULL, url, url_len)
          + rlcf->field.len
          + ra_escape_json(NULL, rlcf->field.data, rlcf->field.len)
          + room->len + ra_escape_json(NULL, room->data, room->len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ra_cpystr(b->last, "{\"url\":\"");
    b->last = (u_char *) ra_escape_json(b->last, url, url_len);
    b->last = ra_cpystr(b->last, "\",\"");
    b->last = (u_char *) ra_escape_json(b->last, rlcf->field.data,
                                         rlcf->field.len);
    b->last = ra_cpystr(b->last, "\":\"");
    b->last = (u_char *) ra_escape_json(b->last, room->data, room->len);

    b->last = ngx_sprintf(b->last, "\",\"new\":%s}" CRLF,
                          is_new ? "true" : "false");

    return ra_send(r, NGX_HTTP_OK, NULL, b);
}


static ngx_int_t
ra_join_too_large(ngx_http_request_t *r, off_t max)
{
    ra_room_err_t  err;

    ra_room_error(&err, "body_too_large",
                  "the body is larger than %O bytes", max);

    return ra_json_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, &err);
}


static ngx_int_t
ra_join_not_allowed(ngx_http_request_t *r)
{
    ngx_str_t      key, value;
    ra_room_err_t  err;

    ngx_str_set(&key, "Allow");
    ngx_str_set(&value, "GET, HEAD, POST");

    if (ra_add_header(r, &key, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ra_room_error(&err, "method_not_allowed",
                  "use POST with a JSON body, or GET");

    return ra_json_error(r, NGX_HTTP_NOT_ALLOWED, &err);
}


static ngx_int_t
ra_join_no_backend(ngx_http_request_t *r, ra_loc_conf_t *rlcf)
{
    u_char         *p;
    ngx_str_t       key, value;
    ra_room_err_t   err;

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&key, "Retry-After");
    value.data = p;
    value.len = ngx_sprintf(p, "%T", rlcf->retry_after) - p;

    if (ra_add_header(r, &key, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ra_room_error(&err, "no_backend",
                  "no server of upstream \"%V\" can take the room",
                  &rlcf->join->upstream->host);

    return ra_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, &err);
}
