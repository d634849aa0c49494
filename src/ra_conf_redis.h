/*
 * The room_affinity_redis directive.
 */

#ifndef RA_CONF_REDIS_H
#define RA_CONF_REDIS_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


char *ra_conf_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#pragma GCC visibility pop

#endif /* RA_CONF_REDIS_H */
