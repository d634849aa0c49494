/*
 * The module's own answers, and the JSON errors of requests that name no
 * usable room.
 */

#ifndef RA_REPLY_H
#define RA_REPLY_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_REASON_LEN            256


/* why a request names no room */
typedef struct {
    const char                   *code;        /* "invalid_json", ... */
    size_t                        len;
    u_char                        reason[RA_REASON_LEN];
} ra_room_err_t;


void ra_room_error(ra_room_err_t *err, const char *code, const char *fmt,
    ...);
ngx_int_t ra_json_error(ngx_http_request_t *r, ngx_uint_t status,
    ra_room_err_t *err);
ngx_int_t ra_send(ngx_http_request_t *r, ngx_uint_t status, char *type,
    ngx_buf_t *b);
ngx_int_t ra_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value);
size_t ra_utf8_len(u_char *p, u_char *last);
uintptr_t ra_escape_json(u_char *dst, u_char *src, size_t size);


#pragma GCC visibility pop

#endif /* RA_REPLY_H */
