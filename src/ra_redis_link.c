/*
 * The two Redis links of the worker that holds the role (ra_redis.c): a
 * subscriber and a command link (the snapshot, the published
 * placements).  Both links go down and come back together, from the
 * role's tick, with a capped, jittered exponential backoff; after every
 * subscription the snapshot hash is read again, since pub/sub loses what
 * is published while no one listens.  With "resolve", the name is looked
 * up (ra_redis_resolve.c) before every (re)connection after a failure;
 * with "sentinel=", the Sentinels are asked for the master
 * (ra_redis_sentinel.c), and a failover they announce moves the links.
 *
 * hiredis may free a context inside a callback (connect failure,
 * disconnect): the links forget the context in those callbacks, and
 * reconnect only from the tick.
 *
 * A link whose peer stops answering (ra_redis_watch.c) is closed with
 * its pair.
 */

#include "ra_redis_link.h"
#include "ra_redis_watch.h"
#include "ra_redis_resolve.h"
#include "ra_redis_sentinel.h"
#include "ra_redis_in.h"
#include "ra_hiredis.h"


/* this worker's links; conf is NULL once the worker exits */
typedef struct {
    ra_redis_conf_t    *conf;
    ngx_log_t          *log;
    ngx_event_t         drain;        /* the outbox of placements */
    ngx_uint_t          closing;      /* inside ra_redis_close() */
    ngx_msec_t          backoff;
    ngx_msec_t          next;         /* no connect before */
    ra_redis_link_t     sub;
    ra_redis_link_t     cmd;
} ra_link_worker_t;


static ngx_int_t ra_redis_alive(ra_redis_link_t *link, ngx_msec_t now);
static void ra_redis_resolve_done(const char *err);
static void ra_redis_sentinel_done(ra_redis_sentinel_e event,
    const char *err);
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
static void ra_redis_ready(void);
static void ra_redis_set_error(const char *what, const char *err);
static void ra_redis_drain(ngx_event_t *ev);


static ra_link_worker_t  ra_link_w;


void
ra_redis_link_init(ra_redis_conf_t *rc, ngx_log_t *log)
{
    ngx_memzero(&ra_link_w, sizeof(ra_link_worker_t));

    ra_link_w.conf = rc;
    ra_link_w.log = log;
    ra_link_w.sub.name = "subscriber";
    ra_link_w.sub.subscriber = 1;
    ra_link_w.cmd.name = "command";

    ra_link_w.drain.handler = ra_redis_drain;
    ra_link_w.drain.log = log;
    ra_link_w.drain.data = rc;
    ra_link_w.drain.cancelable = 1;

    ra_redis_resolve_init(log, ra_redis_resolve_done);

    if (rc->sentinels) {
        ra_redis_sentinel_init(rc, log, ra_redis_sentinel_done);
    }
}


/* the role is lost or handed over: both links and any lookup end */

void
ra_redis_link_stop(void)
{
    ra_redis_resolve_stop();
    ra_redis_sentinel_stop();
    ra_redis_close(&ra_link_w.sub);
    ra_redis_close(&ra_link_w.cmd);
}


/* after ra_redis_link_stop(): nothing runs on this worker's links again */

void
ra_redis_link_exit(void)
{
    if (ra_link_w.drain.timer_set) {
        ngx_del_timer(&ra_link_w.drain);
    }

    ra_link_w.conf = NULL;
}


/*
 * The role's tick: both links start afresh once the backoff allows, or
 * are watched; returns the delay to the next tick, shortened so that a
 * reconnection is not late
 */

ngx_msec_t
ra_redis_link_tick(ngx_msec_t now, ngx_log_t *log, ngx_msec_t delay)
{
    ngx_uint_t        ready;
    ra_redis_conf_t  *rc;

    rc = ra_link_w.conf;

    if (rc->sentinels) {
        /* the command link is asked for its role once both are up */
        ready = (ra_link_w.sub.subscribed == RA_REDIS_CHANNELS(rc)
                 && ra_link_w.cmd.connected);
        ra_redis_sentinel_tick(now, ready ? ra_link_w.cmd.ac : NULL);
    }

    if ((ra_link_w.sub.ac == NULL || ra_link_w.cmd.ac == NULL)
        && (ngx_msec_int_t) (now - ra_link_w.next) >= 0)
    {
        /* both links start afresh; a failure schedules the backoff */

        ra_redis_close(&ra_link_w.sub);
        ra_redis_close(&ra_link_w.cmd);

        if (rc->resolve && ra_redis_resolve_needed()) {
            /* the links open at the tick after the answer */
            ra_redis_resolve(rc);

        } else if (rc->sentinels && ra_redis_sentinel_needed()) {
            /* the links open at the tick after the answer */
            ra_redis_sentinel_ask();

        } else if (ra_redis_open(&ra_link_w.sub, log) == NGX_OK) {
            (void) ra_redis_open(&ra_link_w.cmd, log);
        }

    } else if (ra_redis_alive(&ra_link_w.sub, now) == NGX_OK
               && ra_redis_alive(&ra_link_w.cmd, now) == NGX_OK)
    {
        ra_redis_watch_state(rc, &ra_link_w.sub, &ra_link_w.cmd);
    }

    if ((ra_link_w.sub.ac == NULL || ra_link_w.cmd.ac == NULL)
        && (ngx_msec_int_t) (ra_link_w.next - now) > 0
        && ra_link_w.next - now < delay)
    {
        delay = ra_link_w.next - now;
    }

    return delay;
}


/* a link open or a name being resolved */

ngx_uint_t
ra_redis_link_busy(void)
{
    return ra_link_w.sub.ac || ra_link_w.cmd.ac || ra_redis_resolve_busy()
           || ra_redis_sentinel_busy();
}


/* the role is taken: the links open at the next tick, without a backoff */

void
ra_redis_link_start(ngx_msec_t now)
{
    ra_link_w.backoff = 0;
    ra_link_w.next = now;
}


/* a peer that does not answer: both links go down, with the backoff */

static ngx_int_t
ra_redis_alive(ra_redis_link_t *link, ngx_msec_t now)
{
    u_char       err[64], *p;
    const char  *what;

    if (ra_redis_watch(ra_link_w.conf, link, now, ra_link_w.log) == NGX_OK) {
        return NGX_OK;
    }

    p = ngx_snprintf(err, sizeof(err) - 1, "no answer in %M ms",
                     link->waited);
    *p = '\0';

    /* named before the close, which forgets the subscription */
    what = (link->subscriber && ra_link_w.sub.subscribed) ? "liveness check"
                                                          : "command";

    /* both links down first: the status must not say connected */

    ra_redis_close(&ra_link_w.sub);
    ra_redis_close(&ra_link_w.cmd);

    ra_redis_failed(link, what, (char *) err);

    return NGX_ERROR;
}


/* the resolver's answer: the links open at the next tick, or back off */

static void
ra_redis_resolve_done(const char *err)
{
    if (err) {
        ra_redis_failed(&ra_link_w.sub, "resolve", err);
        return;
    }

    ra_link_w.next = ngx_current_msec;
}


/*
 * What the Sentinels say: the master is found (the links open at the
 * next tick), no Sentinel answered or the server is not the master (the
 * links back off), or a failover (the links leave the old master now)
 */

static void
ra_redis_sentinel_done(ra_redis_sentinel_e event, const char *err)
{
    ra_redis_conf_t  *rc;

    rc = ra_link_w.conf;

    switch (event) {

    case RA_SENTINEL_FOUND:
        ra_link_w.next = ngx_current_msec;
        return;

    case RA_SENTINEL_REPLICA:
        /* from the command link's callback: it is closed at the tick */
        ra_redis_failed(&ra_link_w.cmd, "role check", err);
        return;

    case RA_SENTINEL_SWITCHED:
        ra_redis_close(&ra_link_w.sub);
        ra_redis_close(&ra_link_w.cmd);

        ngx_shmtx_lock(&rc->shpool->mutex);

        if (rc->sh->owner == ngx_pid) {
            rc->sh->state = RA_REDIS_CONNECTING;
            rc->sh->connected = 0;
        }

        ngx_shmtx_unlock(&rc->shpool->mutex);

        ra_share_open(&rc->share, 0);

        ra_link_w.backoff = 0;
        ra_link_w.next = ngx_current_msec;
        return;

    default: /* RA_SENTINEL_FAILED */
        ra_redis_failed(&ra_link_w.sub, "sentinel", err);
    }
}


static ngx_int_t
ra_redis_open(ra_redis_link_t *link, ngx_log_t *log)
{
    const char         *argv[4], *err;
    ngx_uint_t          argc;
    redisAsyncContext  *ac;
    ra_redis_conf_t    *rc;
    ra_redis_target_t   t;

    rc = ra_link_w.conf;

    if (ra_redis_target(rc, &t) != NGX_OK) {
        ra_redis_failed(link, "connect", "no master known");
        return NGX_ERROR;
    }

    /* the address: the one choice of where to connect (ra_redis_target) */

    ac = ra_redis_dial(rc, t.host, t.port, !link->subscriber, ra_redis_reply,
                       log, &err);

    if (ac == NULL) {
        ra_redis_failed(link, "connect", err);
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

    if (rc->sentinels && !link->subscriber) {
        /* a demoted master is left; both links dial the same server */
        ra_redis_sentinel_role(ac);
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


/*
 * A new context to "host" and "port" (ignored with a unix socket), attached
 * to nginx's loop, with AUTH (and SELECT, with "select") queued: written
 * once connected, answered to "reply" with the command's name as
 * privdata.  The caller sets the callbacks and the connect timer.  NULL
 * with *err set on failure.  Shared by the role's links and the
 * workers' directory links (ra_dir_link.c).
 */

redisAsyncContext *
ra_redis_dial(ra_redis_conf_t *rc, const char *host, ngx_int_t port,
    ngx_uint_t select, redisCallbackFn *reply, ngx_log_t *log,
    const char **err)
{
    redisAsyncContext  *ac;

    ac = ra_hiredis_connect(rc->unix_path.len ? (char *) rc->unix_path.data
                                              : NULL,
                            host, port, log, err);
    if (ac == NULL) {
        return NULL;
    }

    /* the commands are queued and written once connected */

    ra_hiredis_auth(ac, &rc->user, &rc->password, reply, (void *) "AUTH");

    if (rc->db && select) {
        redisAsyncCommand(ac, reply, (void *) "SELECT", "SELECT %d",
                          (int) rc->db);
    }

    return ac;
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

    ngx_log_error(NGX_LOG_NOTICE, ra_link_w.log, 0,
                  "room_affinity: redis %s link connected to \"%V\"",
                  link->name, &ra_link_w.conf->address);

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

    if (ra_link_w.closing || ra_link_w.conf == NULL) {
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

    if (ra_link_w.backoff == 0) {
        ra_link_w.backoff = RA_REDIS_BACKOFF_MIN;

    } else {
        ra_link_w.backoff = ngx_min(ra_link_w.backoff * 2,
                                    ra_link_w.conf->backoff);
    }

    jitter = ngx_random() % (ra_link_w.backoff / 2 + 1);

    /* the next attempt asks the resolver, or the Sentinels, again */
    ra_redis_resolve_forget();

    if (ra_link_w.conf->sentinels) {
        ra_redis_sentinel_forget();
    }

    ra_link_w.next = ngx_current_msec + ra_link_w.backoff / 2 + jitter;

    ngx_log_error(NGX_LOG_ERR, ra_link_w.log, 0,
                  "room_affinity: redis \"%V\" %s link %s: %s, "
                  "retrying in %M ms", &ra_link_w.conf->address, link->name,
                  what, err ? err : "unknown error",
                  ra_link_w.backoff / 2 + jitter);

    ra_redis_set_error(what, err);

    ngx_shmtx_lock(&ra_link_w.conf->shpool->mutex);

    if (ra_link_w.conf->sh->owner == ngx_pid) {
        ra_link_w.conf->sh->state = RA_REDIS_FAILED;
        ra_link_w.conf->sh->connected = 0;
    }

    ngx_shmtx_unlock(&ra_link_w.conf->shpool->mutex);

    ra_share_open(&ra_link_w.conf->share, 0);

    /* both links go down together, so the snapshot follows a resubscribe */

    if (link == &ra_link_w.sub) {
        ra_redis_close(&ra_link_w.cmd);

    } else {
        ra_redis_close(&ra_link_w.sub);
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

    ra_link_w.closing = 1;
    redisAsyncFree(ac);
    ra_link_w.closing = 0;
}


static void
ra_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ra_link_w.log, 0,
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

    rc = ra_link_w.conf;

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

        if (++ra_link_w.sub.subscribed == RA_REDIS_CHANNELS(rc)) {
            ngx_log_error(NGX_LOG_NOTICE, ra_link_w.log, 0,
                          "room_affinity: subscribed to \"%V\" and \"%V\"",
                          &rc->channel_register, &rc->channel_signaling);

            ra_link_w.backoff = 0;

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
                        ra_link_w.log);
}


/*
 * Both links up and subscribed, whichever came last: the snapshot, and the
 * outbox of shared placements
 */

static void
ra_redis_ready(void)
{
    ra_redis_conf_t  *rc;

    rc = ra_link_w.conf;

    if (ra_link_w.sub.subscribed < RA_REDIS_CHANNELS(rc)
        || ra_link_w.cmd.ac == NULL || !ra_link_w.cmd.connected)
    {
        return;
    }

    if (rc->snapshot) {
        /* after subscribing, so nothing published in between is lost */
        ra_redis_in_snapshot_request(rc, ra_link_w.cmd.ac);
    }

    if (rc->share_on && !ra_link_w.drain.timer_set) {
        ngx_add_timer(&ra_link_w.drain, RA_SHARE_TICK);
    }
}


static void
ra_redis_set_error(const char *what, const char *err)
{
    ra_redis_conf_t  *rc;

    rc = ra_link_w.conf;

    if (rc == NULL) {
        return;
    }

    ra_redis_in_error(rc, what, err);

    if (!ra_link_w.sub.connected) {
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

    if (ngx_exiting || ra_link_w.conf == NULL
        || ra_link_w.cmd.ac == NULL || !ra_link_w.cmd.connected)
    {
        /*
         * the next subscription restarts it; the links are open only
         * while this worker holds the role (ra_redis.c closes them when
         * it loses it)
         */
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
        redisAsyncCommandArgv(ra_link_w.cmd.ac, NULL, NULL, 3, argv, len);

        ngx_free(msg);
    }

    ngx_add_timer(ev, RA_SHARE_TICK);
}
