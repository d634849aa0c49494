/*
 * What arrives from Redis, and to whom it goes: a backend's message to
 * ra_report.c, another instance's placement to ra_share.c; what is not
 * usable is counted and logged, at most once an interval per reason.
 */

#ifndef RA_REDIS_IN_H
#define RA_REDIS_IN_H

#include "ra_redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#pragma GCC visibility push(hidden)


void ra_redis_in_message(ra_redis_conf_t *rc, ngx_str_t *channel,
    const char *data, size_t len, ngx_log_t *log);
void ra_redis_in_snapshot_request(ra_redis_conf_t *rc, redisAsyncContext *ac);
void ra_redis_in_error(ra_redis_conf_t *rc, const char *what,
    const char *err);


#pragma GCC visibility pop

#endif /* RA_REDIS_IN_H */
