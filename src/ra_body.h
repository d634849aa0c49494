/*
 * Rooms named by requests: the location configuration of the join API and
 * of JSON bodies, the room read from a JSON body or from a query argument,
 * and JSON error responses.
 *
 * The request context of ngx_http_room_affinity_module (ngx_http_set_ctx())
 * belongs to ra_body.c: it is an ra_body_ctx_t.
 */

#ifndef RA_BODY_H
#define RA_BODY_H

#include "ra_module.h"


#define RA_FIELD_DEFAULT         "roomName"
#define RA_JOIN_MAX_BODY         4096
#define RA_BODY_MAX              (1024 * 1024)
#define RA_JOIN_RETRY_AFTER      5          /* seconds */
#define RA_REASON_LEN            256

#define RA_BODY_OFF              0
#define RA_BODY_ON               1
#define RA_BODY_STRICT           2


typedef struct {
    /* room_affinity_join */
    ngx_str_t                     join_name;
    ra_srv_conf_t                *join;
    time_t                        retry_after;
    u_char                       *join_file;
    ngx_uint_t                    join_line;

    ngx_str_t                     field;       /* room_affinity_field */
    size_t                        join_max_body;
    ngx_uint_t                    body;        /* room_affinity_body */
    size_t                        body_max;    /* ..._body_max_size */

#if (RA_BENCH)
    ra_srv_conf_t                *bench;       /* room_affinity_bench */
#endif
} ra_loc_conf_t;


/* why a request names no room */
typedef struct {
    const char                   *code;        /* "invalid_json", ... */
    size_t                        len;
    u_char                        reason[RA_REASON_LEN];
} ra_room_err_t;


typedef struct {
    ngx_int_t                     status;      /* for the phase handler */
    ngx_str_t                     room;
    ra_room_err_t                 err;
} ra_body_ctx_t;


extern ngx_conf_enum_t  ra_body_modes[];
extern ngx_conf_post_t  ra_field_post;


ngx_int_t ra_body_add_variables(ngx_conf_t *cf);
ngx_int_t ra_body_init(ngx_conf_t *cf);
ngx_int_t ra_body_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room, ra_room_err_t *err);
ngx_int_t ra_arg_room(ngx_http_request_t *r, ngx_str_t *field,
    ngx_str_t *room);
void ra_room_error(ra_room_err_t *err, const char *code, const char *fmt,
    ...);
ngx_int_t ra_json_error(ngx_http_request_t *r, ngx_uint_t status,
    ra_room_err_t *err);
ngx_int_t ra_send(ngx_http_request_t *r, ngx_uint_t status, char *type,
    ngx_buf_t *b);
ngx_int_t ra_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value);

/* ra_join.c */
char *ra_join(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ra_join_merge(ngx_conf_t *cf, ra_loc_conf_t *prev, ra_loc_conf_t *conf);

#endif /* RA_BODY_H */
