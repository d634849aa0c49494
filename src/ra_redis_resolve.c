/*
 * The address of a room_affinity_redis "resolve" host: the name is
 * resolved by nginx's resolver before every (re)connection after a
 * failure, so a Redis that moved is found; the resolver caches answers
 * for their TTL (or its valid=).  The links (ra_redis_link.c) are told
 * the answer through the handler they set.
 */

#include "ra_redis_resolve.h"


typedef struct {
    ngx_log_t            *log;
    ra_redis_resolve_pt   handler;
    ngx_resolver_ctx_t   *resolving;  /* a name being resolved */
    ngx_uint_t            resolved;   /* host holds its address */
    u_char                host[NGX_SOCKADDR_STRLEN + 1];
} ra_resolve_worker_t;


static void ra_redis_resolved(ngx_resolver_ctx_t *ctx);


static ra_resolve_worker_t  ra_resolve_w;


void
ra_redis_resolve_init(ngx_log_t *log, ra_redis_resolve_pt handler)
{
    ngx_memzero(&ra_resolve_w, sizeof(ra_resolve_worker_t));

    ra_resolve_w.log = log;
    ra_resolve_w.handler = handler;
}


ngx_uint_t
ra_redis_resolve_needed(void)
{
    return !ra_resolve_w.resolved;
}


void
ra_redis_resolve(ra_redis_conf_t *rc)
{
    ngx_resolver_ctx_t  *ctx;

    if (ra_resolve_w.resolving) {
        return;
    }

    ctx = ngx_resolve_start(rc->clcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ra_resolve_w.handler(ctx ? "no resolver defined" : "out of memory");
        return;
    }

    ctx->name = rc->host;
    ctx->handler = ra_redis_resolved;
    ctx->data = rc;
    /* http{}'s own conf is never merged: unset without the directive */
    ctx->timeout = rc->clcf->resolver_timeout == NGX_CONF_UNSET_MSEC
                   ? 30000 : rc->clcf->resolver_timeout;

    /* the handler may run before ngx_resolve_name() returns */
    ra_resolve_w.resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* ngx_resolve_name() freed it */
        ra_resolve_w.resolving = NULL;
        ra_resolve_w.handler("cannot start");
    }
}


static void
ra_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    ra_redis_conf_t  *rc = ctx->data;

    u_char      text[NGX_SOCKADDR_STRLEN];
    size_t      len;
    ngx_int_t   state;

    ra_resolve_w.resolving = NULL;

    state = ctx->state;

    if (state || ctx->naddrs == 0) {
        ngx_resolve_name_done(ctx);
        ra_resolve_w.handler(state ? ngx_resolver_strerror(state)
                                   : "no address");
        return;
    }

    /* without brackets: hiredis takes an IPv6 address bare */
    len = ngx_sock_ntop(ctx->addrs[0].sockaddr, ctx->addrs[0].socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);

    ngx_resolve_name_done(ctx);

    ngx_memcpy(ra_resolve_w.host, text, len);
    ra_resolve_w.host[len] = '\0';
    ra_resolve_w.resolved = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ra_resolve_w.log, 0,
                   "room_affinity: redis \"%V\" resolved to %s",
                   &rc->host, ra_resolve_w.host);

    ra_resolve_w.handler(NULL);
}


/* the last address found, NUL-terminated */

const char *
ra_redis_resolve_host(void)
{
    return (const char *) ra_resolve_w.host;
}


/* the next connection asks the resolver again, after a failure */

void
ra_redis_resolve_forget(void)
{
    ra_resolve_w.resolved = 0;
}


ngx_uint_t
ra_redis_resolve_busy(void)
{
    return ra_resolve_w.resolving != NULL;
}


void
ra_redis_resolve_stop(void)
{
    if (ra_resolve_w.resolving) {
        ngx_resolve_name_done(ra_resolve_w.resolving);
        ra_resolve_w.resolving = NULL;
    }
}
