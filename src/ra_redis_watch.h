/*
 * Is a Redis link's peer alive, and what the status shows of a subscribed
 * link: asked by ra_redis_link.c at every tick of the role.
 */

#ifndef RA_REDIS_WATCH_H
#define RA_REDIS_WATCH_H

#include "ra_redis_link.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_redis_watch(ra_redis_conf_t *rc, ra_redis_link_t *link,
    ngx_msec_t now, ngx_log_t *log);
void ra_redis_watch_state(ra_redis_conf_t *rc, ra_redis_link_t *sub,
    ra_redis_link_t *cmd);


#pragma GCC visibility pop

#endif /* RA_REDIS_WATCH_H */
