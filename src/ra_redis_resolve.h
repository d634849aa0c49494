/*
 * The address of a room_affinity_redis "resolve" host, looked up with
 * nginx's resolver before a (re)connection of the links.
 */

#ifndef RA_REDIS_RESOLVE_H
#define RA_REDIS_RESOLVE_H

#include "ra_redis.h"


#pragma GCC visibility push(hidden)


/* the answer: err is NULL once the address is found */
typedef void (*ra_redis_resolve_pt)(const char *err);


void ra_redis_resolve_init(ngx_log_t *log, ra_redis_resolve_pt handler);
ngx_uint_t ra_redis_resolve_needed(void);
void ra_redis_resolve(ra_redis_conf_t *rc);
const char *ra_redis_resolve_host(void);
void ra_redis_resolve_forget(void);
ngx_uint_t ra_redis_resolve_busy(void);
void ra_redis_resolve_stop(void);


#pragma GCC visibility pop

#endif /* RA_REDIS_RESOLVE_H */
