/*
 * The Redis links of an nginx instance.  Two links, a subscriber and a
 * command link (the snapshot, the published placements), owned by one
 * worker elected through the room_affinity_redis zone: a worker that
 * misses its heartbeats, dies or shuts down hands the role over.  Both
 * links go down and come back together, from a timer, with a capped,
 * jittered exponential backoff; after every subscription the snapshot
 * hash is read again, since pub/sub loses what is published while no one
 * listens.
 *
 * hiredis may free a context inside a callback (connect failure,
 * disconnect): the links forget the context in those callbacks, and
 * reconnect only from the tick.
 *
 * A peer that takes the connection and never answers, or stops answering
 * (a stopped process, a lost route), sends no FIN: the tick watches both
 * links.  A link that waits for an answer (the subscription, a command,
 * a PING) and receives nothing for command_timeout is closed with its
 * pair; a link silent for ping_interval is sent a PING (allowed on a
 * subscribed link), so a dead peer is noticed within ping_interval +
 * command_timeout.
 */

#include "ra_redis.h"
#include "ra_redis_in.h"
#include "ra_hiredis.h"


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


/* this worker's side of the links */
typedef struct {
    ra_redis_conf_t    *conf;
    ngx_log_t          *log;
    ngx_event_t         tick;         /* election, reconnection */
    ngx_event_t         drain;        /* the outbox of placements */
    ngx_uint_t          owner;        /* this worker holds the role */
    ngx_uint_t          exiting;
    ngx_uint_t          closing;      /* inside ra_redis_close() */
    ngx_msec_t          backoff;
    ngx_msec_t          next;         /* no connect before */
    ra_redis_link_t     sub;
    ra_redis_link_t     cmd;
    ngx_resolver_ctx_t *resolving;    /* a name being resolved */
    ngx_uint_t          resolved;     /* host holds its address */
    u_char              host[NGX_SOCKADDR_STRLEN + 1];
} ra_redis_worker_t;


static void ra_redis_release(ra_redis_conf_t *rc);
static void ra_redis_tick(ngx_event_t *ev);
static ngx_uint_t ra_redis_elect(ra_redis_conf_t *rc, ngx_msec_t now);
static ngx_int_t ra_redis_watch(ra_redis_link_t *link, ngx_msec_t now);
static void ra_redis_watch_state(ra_redis_conf_t *rc);
static void ra_redis_resolve(ra_redis_conf_t *rc);
static void ra_redis_resolved(ngx_resolver_ctx_t *ctx);
static void ra_redis_resolve_stop(void);
static ngx_int_t ra_redis_open(ra_redis_link_t *link, ngx_log_t *log);
static void ra_redis_connected(const redisAsyncContext *ac, int status);
static void ra_redis_disconnected(const redisAsyncContext *ac, int status);
static void ra_redis_timed_out(redisAsyncContext *ac);
static void ra_redis_failed(ra_redis_link_t *link, const char *what,
    const char *err);
static void ra_redis_close(ra_redis_link_t *link);
static void ra_redis_reply(redisAsyncContext *ac, void *r, void *privdata);
static void ra_redis_on_message(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_uint_t ra_redis_channels(ra_redis_conf_t *rc);
static void ra_redis_ready(void);
static void ra_redis_set_error(const char *what, const char *err);
static void ra_redis_drain(ngx_event_t *ev);


static ra_redis_worker_t  ra_redis_w;


ngx_int_t
ra_redis_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ra_redis_conf_t  *orc = data;

    ra_redis_conf_t  *rc;

    rc = shm_zone->data;

    if (rc->resolve
        && (rc->clcf->resolver == NULL
            || rc->clcf->resolver->connections.nelts == 0))
    {
        /* the http{} configuration is complete only now */
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "room_affinity_redis \"%V\" with \"resolve\" needs "
                      "a \"resolver\" in http{}", &rc->address);
        return NGX_ERROR;
    }

    if (orc) {
        /* nginx -s reload: keep the instance id and the outbox */

        if (ra_zone_version_ok(shm_zone, orc->sh->version,
                               RA_REDIS_ZONE_VERSION)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc->shpool = orc->shpool;
        rc->sh = orc->sh;

        return ra_share_init_zone(&rc->share, rc->shpool, rc->sh->share);
    }

    rc->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        rc->sh = rc->shpool->data;
        return ra_share_init_zone(&rc->share, rc->shpool, rc->sh->share);
    }

    rc->sh = ngx_slab_calloc(rc->shpool, sizeof(ra_redis_sh_t));
    if (rc->sh == NULL) {
        return NGX_ERROR;
    }

    if (ra_share_init_zone(&rc->share, rc->shpool, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    rc->sh->version = RA_REDIS_ZONE_VERSION;
    rc->sh->share = rc->share.sh;
    rc->shpool->data = rc->sh;

    return NGX_OK;
}


ngx_int_t
ra_redis_init_process(ngx_cycle_t *cycle)
{
    ra_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_room_affinity_module);
    if (rmcf == NULL || rmcf->redis == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&ra_redis_w, sizeof(ra_redis_worker_t));

    ra_redis_w.conf = rmcf->redis;
    ra_redis_w.log = cycle->log;
    ra_redis_w.sub.name = "subscriber";
    ra_redis_w.sub.subscriber = 1;
    ra_redis_w.cmd.name = "command";

    ra_redis_w.tick.handler = ra_redis_tick;
    ra_redis_w.tick.log = cycle->log;
    ra_redis_w.tick.data = ra_redis_w.conf;
    ra_redis_w.tick.cancelable = 1;

    ra_redis_w.drain.handler = ra_redis_drain;
    ra_redis_w.drain.log = cycle->log;
    ra_redis_w.drain.data = ra_redis_w.conf;
    ra_redis_w.drain.cancelable = 1;

    ngx_add_timer(&ra_redis_w.tick, 1);

    return NGX_OK;
}


void
ra_redis_exit_process(ngx_cycle_t *cycle)
{
    ra_redis_conf_t  *rc = ra_redis_w.conf;

    if (rc == NULL) {
        return;
    }

    ra_redis_w.exiting = 1;

    if (ra_redis_w.tick.timer_set) {
        ngx_del_timer(&ra_redis_w.tick);
    }

    if (ra_redis_w.drain.timer_set) {
        ngx_del_timer(&ra_redis_w.drain);
    }

    ra_redis_release(rc);

    ra_redis_w.conf = NULL;
}


static void
ra_redis_release(ra_redis_conf_t *rc)
{
    ra_redis_resolve_stop();
    ra_redis_close(&ra_redis_w.sub);
    ra_redis_close(&ra_redis_w.cmd);

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (rc->sh->owner == ngx_pid) {
        rc->sh->owner = 0;
        rc->sh->connected = 0;
        rc->sh->state = RA_REDIS_CONNECTING;
        ra_redis_w.owner = 0;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (!ra_redis_w.owner) {
        ra_share_open(&rc->share, 0);
    }

    ra_redis_w.owner = 0;
}


static void
ra_redis_tick(ngx_event_t *ev)
{
    ra_redis_conf_t  *rc = ev->data;

    ngx_msec_t  now, delay;

    if (ngx_exiting || ngx_quit || ngx_terminate || ra_redis_w.exiting) {
        /*
         * a worker shutting down gracefully may live on for its
         * WebSockets: hand the role over to the new workers now
         */
        ra_redis_release(rc);
        return;
    }

    now = ngx_current_msec;

    if (ra_redis_elect(rc, now)) {

        if ((ra_redis_w.sub.ac == NULL || ra_redis_w.cmd.ac == NULL)
            && (ngx_msec_int_t) (now - ra_redis_w.next) >= 0)
        {
            /* both links start afresh; a failure schedules the backoff */

            ra_redis_close(&ra_redis_w.sub);
            ra_redis_close(&ra_redis_w.cmd);

            if (rc->resolve && !ra_redis_w.resolved) {
                /* the links open at the tick after the answer */
                ra_redis_resolve(rc);

            } else if (ra_redis_open(&ra_redis_w.sub, ev->log) == NGX_OK) {
                (void) ra_redis_open(&ra_redis_w.cmd, ev->log);
            }

        } else if (ra_redis_watch(&ra_redis_w.sub, now) == NGX_OK
                   && ra_redis_watch(&ra_redis_w.cmd, now) == NGX_OK)
        {
            ra_redis_watch_state(rc);
        }

    } else if (ra_redis_w.sub.ac || ra_redis_w.cmd.ac
               || ra_redis_w.resolving)
    {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "room_affinity: another worker subscribes to redis");
        ra_redis_resolve_stop();
        ra_redis_close(&ra_redis_w.sub);
        ra_redis_close(&ra_redis_w.cmd);
    }

    delay = RA_REDIS_TICK;

    if (ra_redis_w.owner && (ra_redis_w.sub.ac == NULL || ra_redis_w.cmd.ac == NULL)
        && (ngx_msec_int_t) (ra_redis_w.next - now) > 0
        && ra_redis_w.next - now < delay)
    {
        delay = ra_redis_w.next - now;
    }

    ngx_add_timer(ev, delay);
}


static ngx_uint_t
ra_redis_elect(ra_redis_conf_t *rc, ngx_msec_t now)
{
    ngx_pid_t       owner;
    ngx_uint_t      take;
    ra_redis_sh_t  *sh;

    sh = rc->sh;

    ngx_shmtx_lock(&rc->shpool->mutex);

    owner = sh->owner;
    take = 0;

    if (owner == ngx_pid) {
        sh->heartbeat = now;

    } else if (owner == 0
               || (ngx_msec_int_t) (now - sh->heartbeat) > RA_REDIS_TAKEOVER
               || (kill(owner, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        sh->owner = ngx_pid;
        sh->heartbeat = now;
        sh->connected = 0;
        sh->state = RA_REDIS_CONNECTING;
        take = 1;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (take) {
        ra_share_open(&rc->share, 0);

        ngx_log_error(NGX_LOG_NOTICE, ra_redis_w.log, 0,
                      "room_affinity: this worker subscribes to redis \"%V\"%s",
                      &rc->address, owner ? " (taken over)" : "");
        ra_redis_w.backoff = 0;
        ra_redis_w.next = now;
    }

    ra_redis_w.owner = (owner == ngx_pid || take);

    return ra_redis_w.owner;
}


/*
 * Is the link's peer alive?  Waiting: the subscriber for its subscription
 * or a PING, the command link for any reply (hiredis keeps the callbacks
 * of the commands sent and not answered in ac->replies).  Any bytes read
 * count as progress, so a long reply that keeps arriving is not cut.
 */

static ngx_int_t
ra_redis_watch(ra_redis_link_t *link, ngx_msec_t now)
{
    u_char              err[64], *p;
    ngx_msec_t          last, progress;
    ngx_uint_t          waiting;
    ra_redis_conf_t    *rc;
    redisAsyncContext  *ac;

    static const char   ping[] = "*1\r\n$4\r\nPING\r\n";

    ac = link->ac;
    rc = ra_redis_w.conf;

    if (ac == NULL || !link->connected) {
        /* not connected yet: the connect timeout watches it */
        return NGX_OK;
    }

    last = ra_hiredis_last_read(ac);

    if (link->subscriber) {
        if (link->ping && (ngx_msec_int_t) (last - link->ping) >= 0) {
            link->ping = 0;
        }

        waiting = link->subscribed < ra_redis_channels(rc) || link->ping;

    } else {
        waiting = (ac->replies.head != NULL);
    }

    if (!waiting) {
        link->since = 0;
        link->waited = 0;

        if (now - last < rc->ping_interval) {
            return NGX_OK;
        }

        if (link->subscriber) {
            if (ra_hiredis_raw(ac, ping, sizeof(ping) - 1) != NGX_OK) {
                return NGX_OK;
            }

            link->ping = now;

        } else {
            redisAsyncCommand(ac, NULL, NULL, "PING");
        }

        link->since = now;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ra_redis_w.log, 0,
                       "room_affinity: redis %s link ping", link->name);

        return NGX_OK;
    }

    if (link->since == 0) {
        link->since = now;
    }

    progress = link->since;

    if ((ngx_msec_int_t) (last - progress) > 0) {
        progress = last;
    }

    link->waited = now - progress;

    if ((ngx_msec_int_t) link->waited < 0 || link->waited < rc->command_timeout)
    {
        return NGX_OK;
    }

    p = ngx_snprintf(err, sizeof(err) - 1, "no answer in %M ms",
                     link->waited);
    *p = '\0';

    /* both links down first: the status must not say connected */

    ra_redis_close(&ra_redis_w.sub);
    ra_redis_close(&ra_redis_w.cmd);

    ra_redis_failed(link, link->subscriber && ra_redis_w.sub.subscribed
                          ? "liveness check" : "command", (char *) err);

    return NGX_ERROR;
}


/*
 * What the status shows of a subscribed link: stalled once an answer is
 * overdue by half the command timeout, and how old the last bytes are
 */

static void
ra_redis_watch_state(ra_redis_conf_t *rc)
{
    ngx_msec_t      waited;
    ra_redis_sh_t  *sh;

    sh = rc->sh;

    waited = ngx_max(ra_redis_w.sub.waited, ra_redis_w.cmd.waited);

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (sh->owner == ngx_pid && ra_redis_w.sub.ac) {
        sh->last_reply = ra_hiredis_last_read(ra_redis_w.sub.ac);

        if (sh->state == RA_REDIS_SUBSCRIBED
            && waited >= rc->command_timeout / 2)
        {
            sh->state = RA_REDIS_STALLED;

        } else if (sh->state == RA_REDIS_STALLED
                   && waited < rc->command_timeout / 2)
        {
            sh->state = RA_REDIS_SUBSCRIBED;
        }
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);
}


/*
 * "resolve": the name is resolved by nginx's resolver before every
 * (re)connection after a failure, so a Redis that moved is found; the
 * resolver caches answers for their TTL (or its valid=)
 */

static void
ra_redis_resolve(ra_redis_conf_t *rc)
{
    ngx_resolver_ctx_t  *ctx;

    if (ra_redis_w.resolving) {
        return;
    }

    ctx = ngx_resolve_start(rc->clcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ra_redis_failed(&ra_redis_w.sub, "resolve",
                        ctx ? "no resolver defined" : "out of memory");
        return;
    }

    ctx->name = rc->host;
    ctx->handler = ra_redis_resolved;
    ctx->data = rc;
    /* http{}'s own conf is never merged: unset without the directive */
    ctx->timeout = rc->clcf->resolver_timeout == NGX_CONF_UNSET_MSEC
                   ? 30000 : rc->clcf->resolver_timeout;

    /* the handler may run before ngx_resolve_name() returns */
    ra_redis_w.resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* ngx_resolve_name() freed it */
        ra_redis_w.resolving = NULL;
        ra_redis_failed(&ra_redis_w.sub, "resolve", "cannot start");
    }
}


static void
ra_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    ra_redis_conf_t  *rc = ctx->data;

    u_char      text[NGX_SOCKADDR_STRLEN];
    size_t      len;
    ngx_int_t   state;

    ra_redis_w.resolving = NULL;

    state = ctx->state;

    if (state || ctx->naddrs == 0) {
        ngx_resolve_name_done(ctx);
        ra_redis_failed(&ra_redis_w.sub, "resolve",
                        state ? ngx_resolver_strerror(state)
                              : "no address");
        return;
    }

    /* without brackets: hiredis takes an IPv6 address bare */
    len = ngx_sock_ntop(ctx->addrs[0].sockaddr, ctx->addrs[0].socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);

    ngx_resolve_name_done(ctx);

    ngx_memcpy(ra_redis_w.host, text, len);
    ra_redis_w.host[len] = '\0';
    ra_redis_w.resolved = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ra_redis_w.log, 0,
                   "room_affinity: redis \"%V\" resolved to %s",
                   &rc->host, ra_redis_w.host);

    ra_redis_w.next = ngx_current_msec;
}


static void
ra_redis_resolve_stop(void)
{
    if (ra_redis_w.resolving) {
        ngx_resolve_name_done(ra_redis_w.resolving);
        ra_redis_w.resolving = NULL;
    }
}


static ngx_int_t
ra_redis_open(ra_redis_link_t *link, ngx_log_t *log)
{
    const char         *argv[5];
    size_t              argvlen[5];
    ngx_uint_t          argc;
    redisAsyncContext  *ac;
    ra_redis_conf_t    *rc;

    rc = ra_redis_w.conf;

    if (rc->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rc->unix_path.data);

    } else {
        ac = redisAsyncConnect(rc->resolve ? (char *) ra_redis_w.host
                                           : (char *) rc->host.data,
                               (int) rc->port);
    }

    if (ac == NULL) {
        ra_redis_failed(link, "connect", "out of memory");
        return NGX_ERROR;
    }

    if (ac->err) {
        ra_redis_failed(link, "connect", ac->errstr);
        redisAsyncFree(ac);
        return NGX_ERROR;
    }

    if (rc->unix_path.len == 0) {
        /* a Redis host gone without a FIN is noticed, not waited on */
        (void) redisEnableKeepAlive(&ac->c);
    }

    if (ra_hiredis_attach(ac, log) != NGX_OK) {
        redisAsyncFree(ac);
        ra_redis_failed(link, "connect", "no free nginx connection");
        return NGX_ERROR;
    }

    link->ac = ac;
    link->connected = 0;
    link->subscribed = 0;
    link->since = 0;
    link->ping = 0;
    link->waited = 0;
    ac->data = link;

    /* a peer that takes the SYN and never answers is not waited on */
    ra_hiredis_timer(ac, rc->connect_timeout, ra_redis_timed_out);

    redisAsyncSetConnectCallback(ac, ra_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ra_redis_disconnected);

    /* the commands are queued and written once connected */

    if (rc->password.len) {
        /* "AUTH user password": a Redis 6 ACL user (user=) */
        argc = 0;
        argv[argc] = "AUTH";
        argvlen[argc++] = sizeof("AUTH") - 1;

        if (rc->user.len) {
            argv[argc] = (const char *) rc->user.data;
            argvlen[argc++] = rc->user.len;
        }

        argv[argc] = (const char *) rc->password.data;
        argvlen[argc++] = rc->password.len;
        redisAsyncCommandArgv(ac, ra_redis_reply, (void *) "AUTH", (int) argc,
                              argv, argvlen);
    }

    if (rc->db && !link->subscriber) {
        redisAsyncCommand(ac, ra_redis_reply, (void *) "SELECT", "SELECT %d",
                          (int) rc->db);
    }

    if (link->subscriber) {
        argc = 0;
        argv[argc++] = "SUBSCRIBE";
        argv[argc++] = (const char *) rc->channel_register.data;
        argv[argc++] = (const char *) rc->channel_signaling.data;

        if (rc->share_on) {
            argv[argc++] = (const char *) rc->channel_rooms.data;
        }

        redisAsyncCommandArgv(ac, ra_redis_on_message, NULL, (int) argc,
                              argv, NULL);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "room_affinity: redis %s link connecting, fd:%d",
                   link->name, ac->c.fd);

    return NGX_OK;
}


static void
ra_redis_connected(const redisAsyncContext *ac, int status)
{
    ra_redis_link_t  *link = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context when this callback returns */
        link->ac = NULL;
        ra_redis_failed(link, "connect", ac->errstr);
        return;
    }

    link->connected = 1;
    ra_hiredis_timer((redisAsyncContext *) ac, 0, NULL);

    /* the subscription (or AUTH, SELECT) is answered in time, or not */
    link->since = ngx_current_msec;

    ngx_log_error(NGX_LOG_NOTICE, ra_redis_w.log, 0,
                  "room_affinity: redis %s link connected to \"%V\"",
                  link->name, &ra_redis_w.conf->address);

    if (!link->subscriber) {
        ra_redis_ready();
    }
}


static void
ra_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ra_redis_link_t  *link = ac->data;

    /* hiredis frees the context when this callback returns */

    link->ac = NULL;
    link->connected = 0;
    link->subscribed = 0;

    if (ra_redis_w.exiting || ra_redis_w.closing || ra_redis_w.conf == NULL) {
        return;
    }

    ra_redis_failed(link, "connection lost",
                    ac->err ? ac->errstr : "closed by the server");
}


/* connected in time, or not at all: the link and its pair start again */

static void
ra_redis_timed_out(redisAsyncContext *ac)
{
    ra_redis_link_t  *link = ac->data;

    ra_redis_failed(link, "connect", "timed out");
    ra_redis_close(link);
}


static void
ra_redis_failed(ra_redis_link_t *link, const char *what, const char *err)
{
    ngx_msec_t  jitter;

    /* capped exponential backoff with jitter; the tick reconnects */

    if (ra_redis_w.backoff == 0) {
        ra_redis_w.backoff = RA_REDIS_BACKOFF_MIN;

    } else {
        ra_redis_w.backoff = ngx_min(ra_redis_w.backoff * 2,
                                   ra_redis_w.conf->backoff);
    }

    jitter = ngx_random() % (ra_redis_w.backoff / 2 + 1);

    /* the next attempt asks the resolver again */
    ra_redis_w.resolved = 0;
    ra_redis_w.next = ngx_current_msec + ra_redis_w.backoff / 2 + jitter;

    ngx_log_error(NGX_LOG_ERR, ra_redis_w.log, 0,
                  "room_affinity: redis \"%V\" %s link %s: %s, "
                  "retrying in %M ms", &ra_redis_w.conf->address, link->name,
                  what, err ? err : "unknown error",
                  ra_redis_w.backoff / 2 + jitter);

    ra_redis_set_error(what, err);

    ngx_shmtx_lock(&ra_redis_w.conf->shpool->mutex);

    if (ra_redis_w.conf->sh->owner == ngx_pid) {
        ra_redis_w.conf->sh->state = RA_REDIS_FAILED;
        ra_redis_w.conf->sh->connected = 0;
    }

    ngx_shmtx_unlock(&ra_redis_w.conf->shpool->mutex);

    ra_share_open(&ra_redis_w.conf->share, 0);

    /* both links go down together, so the snapshot follows a resubscribe */

    if (link == &ra_redis_w.sub) {
        ra_redis_close(&ra_redis_w.cmd);

    } else {
        ra_redis_close(&ra_redis_w.sub);
    }
}


static void
ra_redis_close(ra_redis_link_t *link)
{
    redisAsyncContext  *ac;

    ac = link->ac;

    if (ac == NULL) {
        return;
    }

    link->ac = NULL;
    link->connected = 0;
    link->subscribed = 0;

    /*
     * never called from a hiredis callback of this context; its own
     * disconnect callback must not close the other link in turn
     */

    ra_redis_w.closing = 1;
    redisAsyncFree(ac);
    ra_redis_w.closing = 0;
}


static void
ra_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ra_redis_w.log, 0,
                      "room_affinity: redis %s failed: %*s",
                      (char *) privdata, (size_t) reply->len, reply->str);
        ra_redis_set_error((char *) privdata, reply->str);
    }
}


static void
ra_redis_on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    ngx_str_t          kind, channel;
    redisReply        *payload;
    ra_redis_conf_t   *rc;

    rc = ra_redis_w.conf;

    if (reply == NULL || rc == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ra_redis_reply(ac, r, (void *) "SUBSCRIBE");
        return;
    }

    /* a pong (["pong", ""]) may come here too: it has two elements */

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind.data = (u_char *) reply->element[0]->str;
    kind.len = reply->element[0]->len;
    channel.data = (u_char *) reply->element[1]->str;
    channel.len = reply->element[1]->len;

    if (kind.len == 9 && ngx_strncmp(kind.data, "subscribe", 9) == 0) {

        if (++ra_redis_w.sub.subscribed == ra_redis_channels(rc)) {
            ngx_log_error(NGX_LOG_NOTICE, ra_redis_w.log, 0,
                          "room_affinity: subscribed to \"%V\" and \"%V\"",
                          &rc->channel_register, &rc->channel_signaling);

            ra_redis_w.backoff = 0;

            ngx_shmtx_lock(&rc->shpool->mutex);
            rc->sh->connects++;
            rc->sh->connected = 1;
            rc->sh->state = RA_REDIS_SUBSCRIBED;
            rc->sh->last_reply = ngx_current_msec;
            ngx_shmtx_unlock(&rc->shpool->mutex);

            ra_share_open(&rc->share, rc->share_on);

            ra_redis_ready();
        }

        return;
    }

    if (kind.len != 7 || ngx_strncmp(kind.data, "message", 7) != 0) {
        return;
    }

    payload = reply->element[2];

    if (payload->type != REDIS_REPLY_STRING) {
        return;
    }

    ra_redis_in_message(rc, &channel, payload->str, payload->len,
                        ra_redis_w.log);
}


/* the channels of a complete subscription */

static ngx_uint_t
ra_redis_channels(ra_redis_conf_t *rc)
{
    return rc->share_on ? 3 : 2;
}


/*
 * Both links up and subscribed, whichever came last: the snapshot, and the
 * outbox of shared placements
 */

static void
ra_redis_ready(void)
{
    ra_redis_conf_t  *rc;

    rc = ra_redis_w.conf;

    if (ra_redis_w.sub.subscribed < ra_redis_channels(rc)
        || ra_redis_w.cmd.ac == NULL || !ra_redis_w.cmd.connected)
    {
        return;
    }

    if (rc->snapshot) {
        /* after subscribing, so nothing published in between is lost */
        ra_redis_in_snapshot_request(rc, ra_redis_w.cmd.ac);
    }

    if (rc->share_on && !ra_redis_w.drain.timer_set) {
        ngx_add_timer(&ra_redis_w.drain, RA_SHARE_TICK);
    }
}


static void
ra_redis_set_error(const char *what, const char *err)
{
    ra_redis_conf_t  *rc;

    rc = ra_redis_w.conf;

    if (rc == NULL) {
        return;
    }

    ra_redis_in_error(rc, what, err);

    if (!ra_redis_w.sub.connected) {
        ngx_shmtx_lock(&rc->shpool->mutex);
        rc->sh->connected = 0;
        ngx_shmtx_unlock(&rc->shpool->mutex);

        ra_share_open(&rc->share, 0);
    }
}


/* publishes the outbox of this instance's placements */

static void
ra_redis_drain(ngx_event_t *ev)
{
    ra_redis_conf_t  *rc = ev->data;

    u_char      *msg;
    size_t       len[3];
    ngx_uint_t   n;
    const char  *argv[3];

    if (ngx_exiting || ra_redis_w.exiting || !ra_redis_w.owner
        || ra_redis_w.cmd.ac == NULL || !ra_redis_w.cmd.connected)
    {
        /* the next subscription restarts it */
        return;
    }

    for (n = 0; n < RA_SHARE_DRAIN; n++) {
        msg = ra_share_take(&rc->share, &len[2], ev->log);
        if (msg == NULL) {
            break;
        }

        argv[0] = "PUBLISH";
        len[0] = sizeof("PUBLISH") - 1;
        argv[1] = (const char *) rc->channel_rooms.data;
        len[1] = rc->channel_rooms.len;
        argv[2] = (const char *) msg;

        /* hiredis copies the command into its output buffer */
        redisAsyncCommandArgv(ra_redis_w.cmd.ac, NULL, NULL, 3, argv, len);

        ngx_free(msg);
    }

    ngx_add_timer(ev, RA_SHARE_TICK);
}


void
ra_redis_stats(ra_redis_conf_t *rc, ra_redis_sh_t *copy)
{
    ngx_shmtx_lock(&rc->shpool->mutex);
    *copy = *rc->sh;
    ngx_shmtx_unlock(&rc->shpool->mutex);
}


const char *
ra_redis_state_name(ngx_uint_t state)
{
    static const char  *names[] = {
        "connecting", "subscribed", "stalled", "failed"
    };

    return state < sizeof(names) / sizeof(names[0]) ? names[state]
                                                    : "unknown";
}

