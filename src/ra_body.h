/*
 * The room a request names in its JSON body or in a query argument.
 *
 * The request context of ngx_http_room_affinity_module
 * (ngx_http_set_ctx()) belongs to ra_body.c: it is an ra_body_ctx_t.
 */

#ifndef RA_BODY_H
#define RA_BODY_H

#include "ra_module.h"
#include "ra_reply.h"


#pragma GCC visibility push(hidden)


typedef struct {
    ngx_int_t                     status;      /* for the phase handler */
    ngx_str_t                     room;
    ra_room_err_t                 err;
} ra_body_ctx_t;


ngx_int_t ra_body_add_variables(ngx_conf_t *cf);
ngx_int_t ra_body_init(ngx_conf_t *cf);
ngx_int_t ra_body_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room, ra_room_err_t *err);
ngx_int_t ra_arg_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room);


#pragma GCC visibility pop

#endif /* RA_BODY_H */
