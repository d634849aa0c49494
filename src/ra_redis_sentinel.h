/*
 * Redis Sentinel: the master of a service name, asked of the Sentinels
 * by the worker that holds the Redis role, followed through a failover;
 * and where a link to Redis dials (ra_redis_target()).
 */

#ifndef RA_REDIS_SENTINEL_H
#define RA_REDIS_SENTINEL_H

#include "ra_redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#pragma GCC visibility push(hidden)


/* what the links are told */
typedef enum {
    RA_SENTINEL_FOUND = 0,      /* the master asked for is known */
    RA_SENTINEL_FAILED,         /* no Sentinel answered: err says why */
    RA_SENTINEL_SWITCHED,       /* a failover: the master has changed */
    RA_SENTINEL_REPLICA         /* the server reached is not the master */
} ra_redis_sentinel_e;


typedef void (*ra_redis_sentinel_pt)(ra_redis_sentinel_e event,
    const char *err);


/*
 * Where to dial: a unix socket, or host (numeric) and port.  With
 * sentinel=, generation changes with the master: a link of any worker
 * that finds it changed since it dialled is on an old master.
 */
typedef struct {
    const char         *unix_path;
    const char         *host;
    int                 port;
    ngx_uint_t          generation;   /* of the Sentinels' master */
    u_char              buf[NGX_INET6_ADDRSTRLEN + 1];
} ra_redis_target_t;


ngx_int_t ra_redis_target(ra_redis_conf_t *rc, ra_redis_target_t *t);

/* the rest: the Redis role's worker only (ra_redis_link.c) */
void ra_redis_sentinel_init(ra_redis_conf_t *rc, ngx_log_t *log,
    ra_redis_sentinel_pt handler);
ngx_uint_t ra_redis_sentinel_needed(void);
void ra_redis_sentinel_ask(void);
void ra_redis_sentinel_tick(ngx_msec_t now, redisAsyncContext *cmd);
void ra_redis_sentinel_role(redisAsyncContext *ac);
void ra_redis_sentinel_forget(void);
ngx_uint_t ra_redis_sentinel_busy(void);
void ra_redis_sentinel_stop(void);


#pragma GCC visibility pop

#endif /* RA_REDIS_SENTINEL_H */
