/*
 * Registered backends.  Registration is a trust decision: anyone who can
 * PUBLISH to the Redis could otherwise steer clients anywhere, so a url is
 * admitted only when its address and port are in the upstream's allow
 * list (register=), its scheme is one nginx proxies to (ws, http), it
 * names a port, and fewer than register_max backends are registered.  A
 * name is resolved with nginx's resolver, asynchronously.
 *
 * What is refused is counted by reason in the zone (the status shows
 * it) and logged at most once an interval per reason.  A flood of
 * distinct urls takes at most register_max slots: when they are all
 * taken, one that never reported or went stale, with no room and no
 * connection, makes way; a server line's slot or one holding rooms never
 * does.
 *
 * Leaving: a registered backend whose reports went stale takes no new
 * room ("out"); it is removed once it has been stale register_expire ms
 * with no connection through any instance, or at once when it publishes
 * {"url": ..., "deregister": true} on the register channel.  Its rooms
 * then move whole at their next request (ra_route.c: a room whose slot no
 * server of the worker's map holds is placed anew), and stay where they
 * moved.  Staleness is judged only while the subscription is up, and not
 * before a whole register_expire since it came up: a Redis that went away
 * removes nobody.
 */

#include "ra_fleet.h"
#include "ra_report.h"


/* a name being resolved, with the message that named it */
typedef struct {
    ra_srv_conf_t                *rcf;
    ra_msg_t                      msg;
    ra_msg_type_e                 type;
    ngx_uint_t                    snapshot;
    ngx_uint_t                    port;
    u_char                        host[RA_MSG_HOSTPORT_LEN];
} ra_fleet_resolve_t;


static ngx_int_t ra_fleet_conf_allow(ngx_conf_t *cf, ra_fleet_conf_t *fc,
    ngx_str_t *value, u_char *p, u_char *last);
static ngx_int_t ra_fleet_url(ra_msg_t *msg, u_char *host, size_t *hlen,
    ngx_uint_t *port);
static void ra_fleet_resolve(ra_srv_conf_t *rcf, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, u_char *host, size_t hlen,
    ngx_uint_t port, ngx_log_t *log);
static void ra_fleet_resolved(ngx_resolver_ctx_t *ctx);
static ngx_uint_t ra_fleet_join(ra_main_conf_t *rmcf, ra_srv_conf_t *rcf,
    ra_msg_t *msg, ra_msg_type_e type, ngx_uint_t snapshot,
    struct sockaddr *sa, socklen_t socklen, ngx_log_t *log);
static ngx_uint_t ra_fleet_allowed(ra_fleet_conf_t *fc, struct sockaddr *sa);
static ngx_int_t ra_fleet_admit(ra_srv_conf_t *rcf, ra_msg_t *msg,
    ngx_uint_t snapshot, struct sockaddr *sa, socklen_t socklen,
    ngx_str_t *name, ngx_log_t *log);
static ngx_int_t ra_fleet_make_way(ra_srv_conf_t *rcf, ra_shctx_t *sh,
    ngx_msec_t now);
static void ra_fleet_leave(ra_shctx_t *sh, ra_backend_t *be);
static ngx_uint_t ra_fleet_deregister(ra_srv_conf_t *rcf, ra_msg_t *msg,
    ngx_log_t *log);
static ngx_msec_t ra_fleet_last(ra_backend_t *be);
static void ra_fleet_reject(ra_srv_conf_t *rcf, ra_fleet_err_e err,
    ra_msg_t *msg, const char *detail, ngx_log_t *log);


static const char  *ra_fleet_err_names[] = {
    "bad_url", "not_allowed", "no_resolver", "unresolved", "full"
};

/* per worker: when each reason was last logged, and how many since */
static ngx_msec_t   ra_fleet_logged[RA_FLEET_ERR_COUNT];
static ngx_uint_t   ra_fleet_suppressed[RA_FLEET_ERR_COUNT];
static ngx_uint_t   ra_fleet_resolving;

/* the subscriber: since when its subscription is up (0: it is not) */
static ngx_msec_t   ra_fleet_up_since;


/*
 * room_affinity's register=, register_max= and register_expire=;
 * NGX_CONF_OK, or NGX_CONF_ERROR (logged)
 */

char *
ra_fleet_conf_param(ngx_conf_t *cf, ra_srv_conf_t *rcf, ngx_str_t *value)
{
    u_char           *p, *last, *comma;
    ngx_int_t         n;
    ngx_str_t         s;
    ngx_msec_t        t;
    ra_fleet_conf_t  *fc;

    fc = rcf->fleet;

    if (fc == NULL) {
        fc = ngx_pcalloc(cf->pool, sizeof(ra_fleet_conf_t));
        if (fc == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_array_init(&fc->allow, cf->pool, 4, sizeof(ra_fleet_allow_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        fc->max = RA_FLEET_MAX_DEFAULT;
        fc->expire = RA_FLEET_EXPIRE_DEFAULT;
        rcf->fleet = fc;
    }

    if (ra_has_prefix(value, "register=")) {
        p = value->data + sizeof("register=") - 1;
        last = value->data + value->len;

        do {
            comma = ngx_strlchr(p, last, ',');

            if (ra_fleet_conf_allow(cf, fc, value, p, comma ? comma : last)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            p = comma + 1;

        } while (comma);

        return NGX_CONF_OK;
    }

    if (ra_has_prefix(value, "register_max=")) {
        n = ngx_atoi(value->data + sizeof("register_max=") - 1,
                     value->len - (sizeof("register_max=") - 1));

        if (n == NGX_ERROR || n < 1 || n > RA_FLEET_MAX_LIMIT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number in \"%V\", use 1 to %d",
                               value, RA_FLEET_MAX_LIMIT);
            return NGX_CONF_ERROR;
        }

        fc->max = n;
        return NGX_CONF_OK;
    }

    if (ra_has_prefix(value, "register_expire=")) {
        s.data = value->data + sizeof("register_expire=") - 1;
        s.len = value->len - (sizeof("register_expire=") - 1);

        t = ngx_parse_time(&s, 0);

        if (t == (ngx_msec_t) NGX_ERROR || t == 0 || t >= RA_TIME_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid time in \"%V\"", value);
            return NGX_CONF_ERROR;
        }

        fc->expire = t;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", value);
    return NGX_CONF_ERROR;
}


/* "10.0.0.0/8:3000-3999", "[fd00::/8]:3000", "127.0.0.1:*" */

static ngx_int_t
ra_fleet_conf_allow(ngx_conf_t *cf, ra_fleet_conf_t *fc, ngx_str_t *value,
    u_char *p, u_char *last)
{
    u_char            *colon, *dash;
    ngx_int_t          lo, hi, rc;
    ngx_str_t          net;
    ra_fleet_allow_t  *a;

    if (p < last && *p == '[') {
        colon = ngx_strlchr(p, last, ']');

        if (colon == NULL || colon + 1 >= last || colon[1] != ':') {
            goto invalid;
        }

        net.data = p + 1;
        net.len = colon - net.data;
        colon++;

    } else {
        colon = ngx_strlchr(p, last, ':');

        if (colon == NULL) {
            goto invalid;
        }

        net.data = p;
        net.len = colon - p;
    }

    p = colon + 1;

    if (last - p == 1 && *p == '*') {
        lo = 1;
        hi = 65535;

    } else {
        dash = ngx_strlchr(p, last, '-');

        lo = ngx_atoi(p, (dash ? dash : last) - p);
        hi = dash ? ngx_atoi(dash + 1, last - dash - 1) : lo;
    }

    if (lo < 1 || hi < lo || hi > 65535 || net.len == 0) {
        goto invalid;
    }

    a = ngx_array_push(&fc->allow);
    if (a == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_ptocidr(&net, &a->cidr);

    if (rc == NGX_ERROR) {
        goto invalid;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "low address bits of \"%V\" are meaningless",
                           &net);
    }

    a->port_lo = lo;
    a->port_hi = hi;

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid network in \"%V\", use "
                       "register=address/bits:port[-port][,...], "
                       "e.g. register=10.0.0.0/8:3000-3999", value);
    return NGX_ERROR;
}


/*
 * After the directive's parameters: the spare peers, one "server" of
 * the upstream with register_max addresses, down until filled.  This
 * server also lets an upstream have no server line at all.
 */

char *
ra_fleet_conf_done(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_uint_t                   j;
    ngx_sockaddr_t              *sa;
    ra_fleet_conf_t             *fc;
    ngx_http_upstream_server_t  *us;

    fc = rcf->fleet;

    if (fc == NULL) {
        return NGX_CONF_OK;
    }

    if (fc->allow.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"room_affinity\" registration needs the "
                           "networks backends may register from: "
                           "register=address/bits:ports");
        return NGX_CONF_ERROR;
    }

    if (fc->expire < rcf->stale) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"room_affinity\" register_expire=%Mms is "
                           "shorter than stale=%Mms", fc->expire,
                           rcf->stale);
        return NGX_CONF_ERROR;
    }

    fc->spares = ngx_pcalloc(cf->pool, fc->max * sizeof(ngx_addr_t));
    sa = ngx_pcalloc(cf->pool, fc->max * sizeof(ngx_sockaddr_t));
    fc->names = ngx_pcalloc(cf->pool, fc->max * RA_FLEET_NAME_LEN);
    fc->peer = ngx_pcalloc(cf->pool,
                           fc->max * sizeof(ngx_http_upstream_rr_peer_t *));
    fc->held = ngx_palloc(cf->pool, fc->max * sizeof(ngx_int_t));

    if (fc->spares == NULL || sa == NULL || fc->names == NULL
        || fc->peer == NULL || fc->held == NULL)
    {
        return NGX_CONF_ERROR;
    }

    for (j = 0; j < fc->max; j++) {
        sa[j].sockaddr_in.sin_family = AF_INET;
        fc->spares[j].sockaddr = &sa[j].sockaddr;
        fc->spares[j].socklen = sizeof(struct sockaddr_in);
        fc->spares[j].name.data = fc->names + j * RA_FLEET_NAME_LEN;
        fc->spares[j].name.len = ngx_sprintf(fc->spares[j].name.data,
                                             "(spare %ui)", j)
                                 - fc->spares[j].name.data;
        fc->held[j] = -1;
    }

    us = ngx_array_push(uscf->servers);
    if (us == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(us, sizeof(ngx_http_upstream_server_t));

    ngx_str_set(&us->name, "(register)");
    us->addrs = fc->spares;
    us->naddrs = fc->max;
    us->weight = 1;
    us->max_fails = 1;
    us->fail_timeout = 10;
    us->down = 1;

    return NGX_CONF_OK;
}


/*
 * When the upstreams are set up: an upstream "zone" copies the peers into
 * shared memory with room for the address each has then, so the spare
 * peers cannot be filled there; "server ... resolve" (nginx 1.27.3+)
 * changes peers under the workers' maps (ra_peers.c)
 */

ngx_int_t
ra_fleet_init_upstream(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *us)
{
#if (nginx_version >= 1027003 && NGX_HTTP_UPSTREAM_ZONE)
    ngx_uint_t                   i;
    ngx_http_upstream_server_t  *server;

    server = us->servers->elts;

    for (i = 0; i < us->servers->nelts; i++) {
        if (server[i].host.len) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"room_affinity\" does not support \"server "
                          "%V resolve\" in upstream \"%V\" in %s:%ui: its "
                          "workers map rooms to fixed peers, which "
                          "resolving changes at run time; list the "
                          "addresses, or let the backends register "
                          "(register=)", &server[i].name, &us->host,
                          us->file_name, us->line);
            return NGX_ERROR;
        }
    }
#endif

    if (rcf->fleet == NULL) {
        return NGX_OK;
    }

    if (us->shm_zone) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"room_affinity\" with register= does not work with "
                      "the \"zone\" directive in upstream \"%V\" in %s:%ui: "
                      "registered backends fill peers in each worker's "
                      "memory; remove \"zone\" (the rooms and backends "
                      "are shared in room_affinity's own zone)",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    rcf->fleet->clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                         ngx_http_core_module);

    return NGX_OK;
}


/*
 * A message whose url no server matched: registers its backend in every
 * upstream with register= that admits it.  Returns whether any did (or
 * will, once a name is resolved).
 */

ngx_uint_t
ra_fleet_receive(ra_main_conf_t *rmcf, ra_msg_t *msg, ra_msg_type_e type,
    ngx_uint_t snapshot, ngx_log_t *log)
{
    u_char              host[RA_MSG_HOSTPORT_LEN];
    size_t              hlen;
    ngx_uint_t          i, port, matched;
    ngx_sockaddr_t      sa;
    ra_srv_conf_t     **rcfp, *rcf;
    struct sockaddr_in *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6 *sin6;
#endif

    rcfp = rmcf->upstreams.elts;
    matched = 0;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];

        if (rcf->fleet == NULL) {
            continue;
        }

        if (msg->deregister) {
            matched |= ra_fleet_deregister(rcf, msg, log);
            continue;
        }

        if (ra_fleet_url(msg, host, &hlen, &port) != NGX_OK) {
            ra_fleet_reject(rcf, RA_FLEET_ERR_URL, msg,
                            "not ws:// or http:// host:port with nothing "
                            "after the port", log);
            matched = 1;
            continue;
        }

        ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

        sin = &sa.sockaddr_in;
        sin->sin_addr.s_addr = ngx_inet_addr(host, hlen);

        if (sin->sin_addr.s_addr != INADDR_NONE) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((in_port_t) port);

            matched |= ra_fleet_join(rmcf, rcf, msg, type, snapshot,
                                     &sa.sockaddr, sizeof(struct sockaddr_in),
                                     log);
            continue;
        }

#if (NGX_HAVE_INET6)
        if (hlen > 2 && host[0] == '[') {
            sin6 = &sa.sockaddr_in6;

            if (ngx_inet6_addr(host + 1, hlen - 2, sin6->sin6_addr.s6_addr)
                == NGX_OK)
            {
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons((in_port_t) port);

                matched |= ra_fleet_join(rmcf, rcf, msg, type, snapshot,
                                         &sa.sockaddr,
                                         sizeof(struct sockaddr_in6), log);
                continue;
            }
        }
#endif

        if (host[0] == '[') {
            ra_fleet_reject(rcf, RA_FLEET_ERR_URL, msg,
                            "not an IPv6 address", log);
            matched = 1;
            continue;
        }

        /* a name: its backend joins when it is resolved */

        ra_fleet_resolve(rcf, msg, type, snapshot, host, hlen, port, log);
        matched = 1;
    }

    return matched;
}


/*
 * "ws://host:port" or "http://host:port" (any case), nothing after the
 * port: host (lowercase, an IPv6 address in brackets) and port
 */

static ngx_int_t
ra_fleet_url(ra_msg_t *msg, u_char *host, size_t *hlen, ngx_uint_t *port)
{
    u_char     *p, *last, *colon;
    size_t      skip;
    ngx_int_t   n, len;

    p = (u_char *) msg->url;
    last = p + msg->url_len;

    if (msg->url_len > 5 && ngx_strncasecmp(p, (u_char *) "ws://", 5) == 0) {
        skip = 5;

    } else if (msg->url_len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        skip = 7;

    } else {
        return NGX_ERROR;
    }

    /* an explicit port, and nothing after it */

    colon = NULL;

    for (p += skip; p < last; p++) {
        if (*p == '/' || *p == '?' || *p == '#' || *p == '@'
            || *p == '\\')
        {
            return NGX_ERROR;
        }

        if (*p == ':') {
            colon = p;

        } else if (*p == ']') {
            colon = NULL;
        }
    }

    if (colon == NULL || colon + 1 == last) {
        return NGX_ERROR;
    }

    /* the host as ra_message.c normalizes it */

    len = ra_msg_url_hostport(msg->url, msg->url_len, (char *) host,
                              RA_MSG_HOSTPORT_LEN);
    if (len <= 0) {
        return NGX_ERROR;
    }

    colon = (u_char *) ngx_strlchr(host, host + len, ']');
    colon = ngx_strlchr(colon ? colon : host, host + len, ':');

    if (colon == NULL) {
        return NGX_ERROR;
    }

    n = ngx_atoi(colon + 1, host + len - colon - 1);

    if (n < 1 || n > 65535) {
        return NGX_ERROR;
    }

    *hlen = colon - host;
    *port = n;
    host[*hlen] = '\0';

    return NGX_OK;
}


static void
ra_fleet_resolve(ra_srv_conf_t *rcf, ra_msg_t *msg, ra_msg_type_e type,
    ngx_uint_t snapshot, u_char *host, size_t hlen, ngx_uint_t port,
    ngx_log_t *log)
{
    ngx_resolver_t      *resolver;
    ra_fleet_resolve_t  *fr;
    ngx_resolver_ctx_t  *ctx;

    resolver = rcf->fleet->clcf ? rcf->fleet->clcf->resolver : NULL;

    if (resolver == NULL || resolver->connections.nelts == 0) {
        ra_fleet_reject(rcf, RA_FLEET_ERR_NO_RESOLVER, msg,
                        "a host name, and no \"resolver\" in http{}", log);
        return;
    }

    if (ra_fleet_resolving >= RA_FLEET_RESOLVING_MAX) {
        ra_fleet_reject(rcf, RA_FLEET_ERR_UNRESOLVED, msg,
                        "too many names being resolved", log);
        return;
    }

    fr = ngx_alloc(sizeof(ra_fleet_resolve_t), log);
    if (fr == NULL) {
        return;
    }

    fr->rcf = rcf;
    fr->msg = *msg;
    fr->type = type;
    fr->snapshot = snapshot;
    fr->port = port;
    ngx_memcpy(fr->host, host, hlen);

    ctx = ngx_resolve_start(resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_free(fr);
        ra_fleet_reject(rcf, RA_FLEET_ERR_NO_RESOLVER, msg,
                        "the resolver could not start", log);
        return;
    }

    ctx->name.data = fr->host;
    ctx->name.len = hlen;
    ctx->handler = ra_fleet_resolved;
    ctx->data = fr;
    /* unset without "resolver_timeout" in http{}, as nginx reads it */
    ctx->timeout = (rcf->fleet->clcf->resolver_timeout == NGX_CONF_UNSET_MSEC)
                   ? 30000 : rcf->fleet->clcf->resolver_timeout;

    ra_fleet_resolving++;

    /* the handler may run (and free fr) before this returns */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        ra_fleet_resolving--;
        ngx_free(fr);
        ra_fleet_reject(rcf, RA_FLEET_ERR_UNRESOLVED, msg,
                        "the resolver failed", log);
    }
}


static void
ra_fleet_resolved(ngx_resolver_ctx_t *ctx)
{
    ra_fleet_resolve_t  *fr = ctx->data;

    socklen_t        socklen;
    ngx_sockaddr_t   sa;
    ra_main_conf_t  *rmcf;

    ra_fleet_resolving--;

    if (ctx->state || ctx->naddrs == 0) {
        ra_fleet_reject(fr->rcf, RA_FLEET_ERR_UNRESOLVED, &fr->msg,
                        ctx->state ? ngx_resolver_strerror(ctx->state)
                                   : "no address",
                        ngx_cycle->log);
        goto done;
    }

    /* the first address: a backend is one server */

    socklen = ctx->addrs[0].socklen;

    if (socklen > sizeof(((ra_backend_t *) 0)->addr)) {
        goto done;
    }

    ngx_memcpy(&sa, ctx->addrs[0].sockaddr, socklen);
    ngx_inet_set_port(&sa.sockaddr, (in_port_t) fr->port);

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);

    (void) ra_fleet_join(rmcf, fr->rcf, &fr->msg, fr->type, fr->snapshot,
                         &sa.sockaddr, socklen, ngx_cycle->log);

done:

    ngx_resolve_name_done(ctx);
    ngx_free(fr);
}


/* an address: admitted if allowed, then the message applies to it */

static ngx_uint_t
ra_fleet_join(ra_main_conf_t *rmcf, ra_srv_conf_t *rcf, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, struct sockaddr *sa,
    socklen_t socklen, ngx_log_t *log)
{
    u_char     text[RA_FLEET_NAME_LEN];
    ngx_str_t  name;

    if (!ra_fleet_allowed(rcf->fleet, sa)) {
        ra_fleet_reject(rcf, RA_FLEET_ERR_NOT_ALLOWED, msg,
                        "address or port outside register=", log);
        return 1;
    }

    name.data = text;
    name.len = ngx_sock_ntop(sa, socklen, text, RA_FLEET_NAME_LEN, 1);

    if (ra_fleet_admit(rcf, msg, snapshot, sa, socklen, &name, log)
        != NGX_OK)
    {
        return 1;
    }

    /*
     * the report, as for a server line: every worker maps it now; a
     * snapshot entry's is not (it may be all that is left of a backend
     * that died), the backend takes rooms from its next live report
     */

    if (!snapshot) {
        (void) ra_report_receive(rmcf, msg, type, snapshot, log);
    }

    return 1;
}


static ngx_uint_t
ra_fleet_allowed(ra_fleet_conf_t *fc, struct sockaddr *sa)
{
    ngx_uint_t           i, n, port;
    ra_fleet_allow_t    *a;
    struct sockaddr_in  *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6 *sin6;
#endif

    port = ngx_inet_get_port(sa);
    a = fc->allow.elts;

    for (i = 0; i < fc->allow.nelts; i++) {

        if (port < a[i].port_lo || port > a[i].port_hi
            || sa->sa_family != a[i].cidr.family)
        {
            continue;
        }

        switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
        case AF_INET6:
            sin6 = (struct sockaddr_in6 *) sa;

            for (n = 0; n < 16; n++) {
                if ((sin6->sin6_addr.s6_addr[n]
                     & a[i].cidr.u.in6.mask.s6_addr[n])
                    != a[i].cidr.u.in6.addr.s6_addr[n])
                {
                    break;
                }
            }

            if (n == 16) {
                return 1;
            }

            break;
#endif

        case AF_INET:
            sin = (struct sockaddr_in *) sa;

            if ((sin->sin_addr.s_addr & a[i].cidr.u.in.mask)
                == a[i].cidr.u.in.addr)
            {
                return 1;
            }

            break;
        }
    }

    return 0;
}


/*
 * The backend's slot: found (it registered before, or joins again), or
 * made while fewer than register_max are registered.  Takes the zone's
 * mutex.
 */

static ngx_int_t
ra_fleet_admit(ra_srv_conf_t *rcf, ra_msg_t *msg, ngx_uint_t snapshot,
    struct sockaddr *sa, socklen_t socklen, ngx_str_t *name, ngx_log_t *log)
{
    ngx_int_t       slot;
    ngx_uint_t      progress, joined;
    ngx_msec_t      now;
    ra_shctx_t     *sh;
    ra_backend_t   *be;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    now = ngx_current_msec;
    progress = 0;
    joined = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    slot = ra_backend_find(sh, name->data, name->len);

    if (slot >= 0 && !sh->backends[slot].dynamic) {
        /* a server line's address under another name: not registered */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if (snapshot && slot >= 0 && sh->backends[slot].left) {
        /* it left: only a live message brings it back */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if (slot < 0 || sh->backends[slot].left) {

        if (sh->fleet.active >= rcf->fleet->max
            && ra_fleet_make_way(rcf, sh, now) != NGX_OK)
        {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ra_fleet_reject(rcf, RA_FLEET_ERR_FULL, msg,
                            "register_max backends are registered, none "
                            "can make way", log);
            return NGX_DECLINED;
        }

        if (slot < 0) {
            slot = ra_backend_slot(ctx, name, &progress, log);

            if (slot < 0) {
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                ra_fleet_reject(rcf, RA_FLEET_ERR_FULL, msg,
                                "the zone has no room for its record", log);
                return NGX_DECLINED;
            }
        }

        be = &sh->backends[slot];

        be->dynamic = 1;
        be->left = 0;
        be->out = 0;
        be->has_report = 0;
        be->joined_at = now ? now : 1;
        be->up_since = be->joined_at;

        if (snapshot) {
            /*
             * known from the snapshot hash only: stale from the start, no
             * new room until a live report, gone after register_expire
             */
            be->out = 1;
            be->joined_at = now - rcf->stale - 1;
            be->joined_at += (be->joined_at == 0);
        }
        be->socklen = socklen;
        ngx_memcpy(&be->addr, sa, socklen);

        sh->fleet.active++;
        sh->fleet.joined++;
        sh->fleet.gen++;
        sh->pl_gen++;
        joined = 1;

    } else {
        be = &sh->backends[slot];
    }

    /* the url the join API answers: checked by ra_fleet_url() */

    ngx_memcpy(be->url, msg->url, msg->url_len);
    be->url_len = msg->url_len;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (joined) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "room_affinity: backend \"%V\" (%*s) registered in "
                      "upstream \"%V\"", name, msg->url_len, msg->url,
                      &rcf->upstream->host);
    }

    return NGX_OK;
}


/*
 * register_max are registered: one that never reported or whose reports
 * are stale, with no room and no connection through any instance, leaves
 * to make way.  The caller holds the zone's mutex.
 */

static ngx_int_t
ra_fleet_make_way(ra_srv_conf_t *rcf, ra_shctx_t *sh, ngx_msec_t now)
{
    ngx_uint_t     i;
    ra_backend_t  *be;

    for (i = 0; i < sh->nbackends; i++) {
        be = &sh->backends[i];

        if (!be->dynamic || be->left || be->rooms || be->live
            || be->remote_live)
        {
            continue;
        }

        if ((ngx_msec_int_t) (now - ra_fleet_last(be))
            > (ngx_msec_int_t) rcf->stale)
        {
            ra_fleet_leave(sh, be);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* the caller holds the zone's mutex */

static void
ra_fleet_leave(ra_shctx_t *sh, ra_backend_t *be)
{
    be->left = 1;
    be->out = 0;
    be->draining = 0;
    sh->fleet.active--;
    sh->fleet.left++;
    sh->fleet.gen++;
    sh->pl_gen++;
}


/* {"url": ..., "deregister": true}: its backend leaves at once */

static ngx_uint_t
ra_fleet_deregister(ra_srv_conf_t *rcf, ra_msg_t *msg, ngx_log_t *log)
{
    u_char          hostport[RA_MSG_HOSTPORT_LEN];
    size_t          hlen;
    ngx_int_t       n;
    ngx_uint_t      i, found;
    ra_shctx_t     *sh;
    ra_backend_t   *be;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    found = 0;

    n = ra_msg_url_hostport(msg->url, msg->url_len, (char *) hostport,
                            sizeof(hostport));
    hlen = (n < 0) ? 0 : (size_t) n;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (i = 0; i < sh->nbackends; i++) {
        be = &sh->backends[i];

        if (!be->dynamic || be->left) {
            continue;
        }

        if ((be->url_len == msg->url_len
             && ngx_strncmp(be->url, msg->url, msg->url_len) == 0)
            || (hlen && be->name_len == hlen
                && ngx_strncmp(be->name, hostport, hlen) == 0))
        {
            ra_fleet_leave(sh, be);
            found = 1;
            break;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (found) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "room_affinity: backend \"%*s\" deregistered from "
                      "upstream \"%V\", its rooms move at their next "
                      "request", msg->url_len, msg->url,
                      &rcf->upstream->host);
    }

    return found;
}


/* its last word: the last report, or its registration */

static ngx_msec_t
ra_fleet_last(ra_backend_t *be)
{
    if (be->has_report
        && (ngx_msec_int_t) (be->reported_at - be->joined_at) > 0)
    {
        return be->reported_at;
    }

    return be->joined_at;
}


/*
 * The subscriber, every tick: registered backends whose reports went
 * stale take no new room; stale register_expire ms with no connection,
 * they leave.  Judged only while subscribed, and once subscribed for
 * long enough that every live backend had the time to report.
 */

void
ra_fleet_tick(ra_main_conf_t *rmcf, ngx_uint_t subscribed, ngx_msec_t now,
    ngx_log_t *log)
{
    u_char           name[RA_BACKEND_NAME_LEN];
    size_t           len;
    ngx_uint_t       i, s;
    ngx_msec_int_t   age, up;
    ra_shctx_t      *sh;
    ra_backend_t    *be;
    ra_zone_ctx_t   *ctx;
    ra_srv_conf_t  **rcfp, *rcf;

    if (!subscribed) {
        ra_fleet_up_since = 0;
        return;
    }

    if (ra_fleet_up_since == 0) {
        ra_fleet_up_since = now ? now : 1;
    }

    up = (ngx_msec_int_t) (now - ra_fleet_up_since);
    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];

        if (rcf->fleet == NULL) {
            continue;
        }

        ctx = rcf->shm_zone->data;
        sh = ctx->sh;
        len = 0;

        ngx_shmtx_lock(&ctx->shpool->mutex);

        for (s = 0; s < sh->nbackends; s++) {
            be = &sh->backends[s];

            if (!be->dynamic || be->left) {
                continue;
            }

            age = (ngx_msec_int_t) (now - ra_fleet_last(be));

            /* fresh again at once; stale once the link had the time */

            if (be->out && age <= (ngx_msec_int_t) rcf->stale) {
                be->out = 0;
                sh->pl_gen++;

            } else if (!be->out && age > (ngx_msec_int_t) rcf->stale
                       && up > (ngx_msec_int_t) rcf->stale)
            {
                be->out = 1;
                sh->pl_gen++;
            }

            if (age > (ngx_msec_int_t) rcf->fleet->expire
                && up > (ngx_msec_int_t) rcf->fleet->expire
                && be->live == 0 && be->remote_live == 0)
            {
                ra_fleet_leave(sh, be);

                len = be->name_len;
                ngx_memcpy(name, be->name, len);

                /* one a tick, logged after the unlock */
                break;
            }
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        if (len) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "room_affinity: registered backend \"%*s\" left "
                          "upstream \"%V\": no report for %Mms and no "
                          "connection, its rooms move at their next "
                          "request", len, name, &rcf->upstream->host,
                          rcf->fleet->expire);
        }
    }
}


const char *
ra_fleet_err_name(ngx_uint_t err)
{
    return (err < RA_FLEET_ERR_COUNT) ? ra_fleet_err_names[err] : "unknown";
}


/* counted in the zone; logged at most once an interval per reason */

static void
ra_fleet_reject(ra_srv_conf_t *rcf, ra_fleet_err_e err, ra_msg_t *msg,
    const char *detail, ngx_log_t *log)
{
    ngx_msec_t      now;
    ngx_uint_t      suppressed;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ctx->sh->fleet.rejected[err]++;
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    now = ngx_current_msec;

    if (ra_fleet_logged[err]
        && now - ra_fleet_logged[err] < RA_FLEET_LOG_INTERVAL)
    {
        ra_fleet_suppressed[err]++;
        return;
    }

    suppressed = ra_fleet_suppressed[err];
    ra_fleet_suppressed[err] = 0;
    ra_fleet_logged[err] = now ? now : 1;

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "room_affinity: registration of \"%*s\" refused in "
                  "upstream \"%V\": %s (%s), %ui similar since last log",
                  ngx_min(msg->url_len, 96), msg->url, &rcf->upstream->host,
                  ra_fleet_err_names[err], detail, suppressed);
}
