/*
 * The module's own answers (the join API, its errors, the status): a
 * whole body in one buffer, JSON unless said otherwise, never cached.
 */

#include "ra_reply.h"


void
ra_room_error(ra_room_err_t *err, const char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    err->code = code;

    va_start(args, fmt);
    p = ngx_vslprintf(err->reason, err->reason + RA_REASON_LEN, fmt, args);
    va_end(args);

    err->len = p - err->reason;
}


ngx_int_t
ra_json_error(ngx_http_request_t *r, ngx_uint_t status, ra_room_err_t *err)
{
    size_t      len;
    ngx_buf_t  *b;

    len = sizeof("{\"error\":\"\",\"reason\":\"\"}" CRLF) - 1
          + ngx_strlen(err->code)
          + err->len + ngx_escape_json(NULL, err->reason, err->len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last, "{\"error\":\"%s\",\"reason\":\"",
                          err->code);
    b->last = (u_char *) ngx_escape_json(b->last, err->reason, err->len);
    b->last = ra_cpystr(b->last, "\"}" CRLF);

    if (status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /*
         * as nginx does: the body may not have been read, and the rest of
         * it is not a next request; the client may still be sending it:
         * let it see the answer.  A 400 comes after the body was read or
         * discarded: the connection stays usable.
         */
        r->keepalive = 0;
        r->lingering_close = 1;
    }

    return ra_send(r, status, NULL, b);
}


/*
 * The module's answers (join, errors, status): b as the whole body, of the
 * type given (NULL: JSON), never cached
 */

ngx_int_t
ra_send(ngx_http_request_t *r, ngx_uint_t status, char *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_str_t    key, value;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;

    r->headers_out.content_type.data = (u_char *) (type ? type
                                                       : "application/json");
    r->headers_out.content_type.len = ngx_strlen(
                                          r->headers_out.content_type.data);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    ngx_str_set(&key, "Cache-Control");
    ngx_str_set(&value, "no-store");

    if (ra_add_header(r, &key, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ra_add_header(ngx_http_request_t *r, ngx_str_t *key, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}

