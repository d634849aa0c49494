/*
 * A worker's own link to Redis for the room directory (ra_directory.c):
 * opened on first use, with the links' address, AUTH and SELECT
 * (ra_redis_dial()), reopened with a short capped backoff; the directory
 * script loaded once and called with EVALSHA (EVAL when Redis answers
 * NOSCRIPT); a command unanswered for command_timeout closes it.
 */

#ifndef RA_DIR_LINK_H
#define RA_DIR_LINK_H

#include "ra_redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#pragma GCC visibility push(hidden)


#define RA_DIR_BACKOFF_MAX     250       /* ms: a returning Redis is seen
                                            within this, for the repair */
#define RA_DIR_ARGS_MAX        400       /* keys and arguments of a call */


/*
 * the answer to a call, or reply NULL when it has none (the link failed
 * or closed); rtt in microseconds.  Never called inside ra_dir_call().
 */
typedef void (*ra_dir_reply_pt)(void *data, redisReply *reply,
    uint64_t rtt);


void ra_dir_link_init(ra_redis_conf_t *rc, const char *script,
    ngx_log_t *log);
void ra_dir_link_exit(void);
ngx_int_t ra_dir_link_usable(ngx_msec_t now, ngx_msec_t stall);
void ra_dir_link_tick(ngx_msec_t now);
ngx_int_t ra_dir_call(ngx_uint_t nkeys, ngx_str_t *keys, ngx_uint_t nargs,
    ngx_str_t *args, ra_dir_reply_pt handler, void *data);
void ra_dir_link_poll(void);
ngx_uint_t ra_dir_link_connects(void);
uint64_t ra_dir_now_us(void);


#pragma GCC visibility pop

#endif /* RA_DIR_LINK_H */
