/*
 * The upstream balancer of a room_affinity upstream.
 */

#ifndef RA_BALANCER_H
#define RA_BALANCER_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us);


#pragma GCC visibility pop

#endif /* RA_BALANCER_H */
