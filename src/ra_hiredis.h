/*
 * hiredis's async API on nginx's event loop, shaped like hiredis's own
 * adapters (adapters/libevent.h and the like): attach a context, and the
 * adapter watches its socket through an nginx connection and runs its
 * timer.  It knows nothing of what the commands mean.
 */

#ifndef RA_HIREDIS_H
#define RA_HIREDIS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#pragma GCC visibility push(hidden)


/* may free the context: it runs from a timer, never inside hiredis */
typedef void (*ra_hiredis_timeout_pt)(redisAsyncContext *ac);


redisAsyncContext *ra_hiredis_connect(const char *unix_path,
    const char *host, ngx_int_t port, ngx_log_t *log, const char **err);
void ra_hiredis_auth(redisAsyncContext *ac, ngx_str_t *user,
    ngx_str_t *password, redisCallbackFn *reply, void *data);
ngx_int_t ra_hiredis_attach(redisAsyncContext *ac, ngx_log_t *log);
void ra_hiredis_timer(redisAsyncContext *ac, ngx_msec_t ms,
    ra_hiredis_timeout_pt handler);
ngx_msec_t ra_hiredis_last_read(redisAsyncContext *ac);
void ra_hiredis_flush_soon(redisAsyncContext *ac);
void ra_hiredis_read_now(redisAsyncContext *ac);
ngx_int_t ra_hiredis_raw(redisAsyncContext *ac, const char *cmd, size_t len);


#pragma GCC visibility pop

#endif /* RA_HIREDIS_H */
