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


/*
 * JSON values a body may hold, counted as its "{", "[" and "," outside
 * strings as the parser reads it (an array of n objects counts about 2n):
 * jansson builds every value, about 60 ns each plus the freeing, so a
 * 1 MB body of 340,000 "{}" held a worker for 20 to 270 ms; 20,000 keep a
 * parse near 1 ms
 */
#define RA_BODY_MAX_VALUES       20000


typedef struct {
    ngx_int_t                     status;      /* for the phase handler */
    ngx_str_t                     room;
    ra_room_err_t                 err;
    /* RA_DIR_ASK_*: the directory's asks (ra_directory.c) */
    ngx_uint_t                    directory;
} ra_body_ctx_t;


ngx_int_t ra_body_add_variables(ngx_conf_t *cf);
ngx_int_t ra_body_init(ngx_conf_t *cf);
ngx_int_t ra_body_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room, ra_room_err_t *err);
ngx_int_t ra_arg_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room);


#pragma GCC visibility pop

#endif /* RA_BODY_H */
