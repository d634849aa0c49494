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
          + err->len + ra_escape_json(NULL, err->reason, err->len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last, "{\"error\":\"%s\",\"reason\":\"",
                          err->code);
    b->last = (u_char *) ra_escape_json(b->last, err->reason, err->len);
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



/*
 * The length of the well-formed UTF-8 sequence at p (RFC 3629: no
 * overlong form, no surrogate, nothing above U+10FFFF), or 0.
 * nginx's ngx_utf8_decode() is laxer: it takes any byte >= 0x80 as a
 * continuation, and surrogates.
 */

size_t
ra_utf8_len(u_char *p, u_char *last)
{
    size_t  n, i;

    if (p[0] < 0x80) {
        return 1;
    }

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    if ((p[0] == 0xe0 && p[1] < 0xa0)        /* overlong */
        || (p[0] == 0xed && p[1] > 0x9f)     /* a surrogate */
        || (p[0] == 0xf0 && p[1] < 0x90)     /* overlong */
        || (p[0] == 0xf4 && p[1] > 0x8f))    /* above U+10FFFF */
    {
        return 0;
    }

    return n;
}


/*
 * ngx_escape_json(), and valid UTF-8 whatever the bytes: each byte that
 * is not part of a well-formed sequence is written as \ufffd (U+FFFD, the
 * replacement character), as a browser decodes it.  Room names are bytes
 * (a query argument's %FF, a header's raw bytes).  Without dst, the
 * number of bytes added, as ngx_escape_json(); 6 bytes a byte at most.
 */

uintptr_t
ra_escape_json(u_char *dst, u_char *src, size_t size)
{
    u_char      ch, *last;
    size_t      n;
    uintptr_t   len;

    static u_char  hex[] = "0123456789abcdef";

    last = src + size;
    len = 0;

    while (src < last) {
        n = ra_utf8_len(src, last);

        if (n == 0) {
            if (dst) {
                dst = ra_cpystr(dst, "\\ufffd");
            }

            len += sizeof("\\ufffd") - 2;
            src++;
            continue;
        }

        if (n > 1) {
            if (dst) {
                dst = ngx_cpymem(dst, src, n);
            }

            src += n;
            continue;
        }

        ch = *src++;

        if (ch > 0x1f && ch != '"' && ch != '\\') {
            if (dst) {
                *dst++ = ch;
            }

            continue;
        }

        if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r'
            || ch == '\t' || ch == '\b' || ch == '\f')
        {
            len++;

            if (dst) {
                *dst++ = '\\';

                switch (ch) {
                case '\n': ch = 'n'; break;
                case '\r': ch = 'r'; break;
                case '\t': ch = 't'; break;
                case '\b': ch = 'b'; break;
                case '\f': ch = 'f'; break;
                default: break;
                }

                *dst++ = ch;
            }

            continue;
        }

        len += sizeof("\\u001f") - 2;

        if (dst) {
            dst = ra_cpystr(dst, "\\u00");
            *dst++ = hex[ch >> 4];
            *dst++ = hex[ch & 0xf];
        }
    }

    return dst ? (uintptr_t) dst : len;
}
