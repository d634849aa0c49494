/*
 * The two Redis links of the worker that holds the role (ra_redis.c): a
 * subscriber and a command link, opened, watched and reopened together
 * with a backoff; a "resolve" name looked up before a reconnection; the
 * outbox of shared placements published on the command link.
 */

#ifndef RA_REDIS_LINK_H
#define RA_REDIS_LINK_H

#include "ra_redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#pragma GCC visibility push(hidden)


/* the channels of a complete subscription */
#define RA_REDIS_CHANNELS(rc)  ((rc)->share_on ? 3 : 2)


typedef struct {
    redisAsyncContext  *ac;
    const char         *name;
    unsigned            subscriber:1;
    unsigned            connected:1;
    ngx_uint_t          subscribed;   /* channels confirmed */
    ngx_msec_t          since;        /* an answer awaited since, or 0 */
    ngx_msec_t          ping;         /* a PING unanswered since, or 0 */
    ngx_msec_t          waited;       /* without an answer, last tick */
} ra_redis_link_t;



void ra_redis_link_init(ra_redis_conf_t *rc, ngx_log_t *log);
void ra_redis_link_stop(void);
void ra_redis_link_exit(void);
ngx_msec_t ra_redis_link_tick(ngx_msec_t now, ngx_log_t *log,
    ngx_msec_t delay);
ngx_uint_t ra_redis_link_busy(void);
void ra_redis_link_start(ngx_msec_t now);
redisAsyncContext *ra_redis_dial(ra_redis_conf_t *rc, const char *host,
    ngx_int_t port, ngx_uint_t select, redisCallbackFn *reply,
    ngx_log_t *log, const char **err);


#pragma GCC visibility pop

#endif /* RA_REDIS_LINK_H */
