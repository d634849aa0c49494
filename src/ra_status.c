/*
 * room_affinity_status: the state of every room_affinity upstream (its
 * servers and its zone) and of the Redis link, as JSON
 * (ra_status_json.c) or in Prometheus's text format (ra_status_prom.c,
 * ?format=prometheus), or one room (?room=NAME).
 */

#include "ra_status.h"
#include "ra_status_json.h"
#include "ra_status_prom.h"
#include "ra_route.h"
#include "ra_body.h"


ngx_int_t
ra_status_handler(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_str_t         arg, name;
    ngx_uint_t        i;
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
        if (ra_peers_map(rcfp[i], r->connection->log) == NGX_ERROR) {
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

        return ra_status_json_room(r, rmcf, &name);
    }

    if (ra_arg(r, "format", &arg)
        == NGX_OK
        && ra_has_prefix(&arg, "prometheus")
        && arg.len == sizeof("prometheus") - 1)
    {
        return ra_status_prom(r, rmcf);
    }

    return ra_status_json(r, rmcf);
}
