/*
 * The directives' handlers, for the command table of
 * ngx_http_room_affinity_module.c.
 */

#ifndef RA_CONF_H
#define RA_CONF_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


extern ngx_conf_enum_t  ra_conf_body_modes[];
extern ngx_conf_post_t  ra_conf_field_post;


char *ra_conf_room_affinity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ra_conf_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ra_conf_join(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ra_conf_join_merge(ngx_conf_t *cf, ra_loc_conf_t *prev,
    ra_loc_conf_t *conf);
char *ra_conf_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#pragma GCC visibility pop

#endif /* RA_CONF_H */
