/*
 * Redis Sentinel.  With sentinel= and master=, the worker that holds the
 * Redis role asks the Sentinels for the master of the service name
 * (SENTINEL get-master-addr-by-name), one at a time, each within the
 * connect and command timeouts, starting from the one that answered
 * last; the links (ra_redis_link.c) open once one has answered, and ask
 * again after any failure.  The connection to the Sentinel that answered
 * stays open, subscribed to "+switch-master", so that a failover moves
 * the links at once rather than when they fail; it is watched like the
 * links (ra_redis_watch.c), and replaced after the backoff if it is lost.
 * The command link checks with ROLE, when it connects and then every
 * ping_interval, that the server it reached is the master, so that a
 * master demoted without an announcement reaching nginx is left.
 *
 * A Sentinel is as untrusted as Redis: only a numeric address and a port
 * are taken from an answer (hiredis would resolve a host name with a
 * blocking call).  What was found goes to the Redis zone, where the
 * status reads it and where ra_redis_target() finds it for a link of any
 * worker.
 *
 * hiredis may free a context inside a callback: the next Sentinel is
 * asked from a timer (step), never from a callback.
 */

#include "ra_redis_sentinel.h"
#include "ra_redis_resolve.h"
#include "ra_redis_watch.h"
#include "ra_hiredis.h"


typedef struct {
    ra_redis_conf_t        *conf;
    ngx_log_t              *log;
    ra_redis_sentinel_pt    handler;
    ra_redis_link_t         link;       /* to the Sentinel asked, watched */
    ngx_event_t             step;       /* the next Sentinel */
    ngx_uint_t              current;    /* the Sentinel asked */
    ngx_uint_t              tried;      /* Sentinels tried in this round */
    ngx_msec_t              backoff;    /* of the watch */
    ngx_msec_t              role_sent;  /* the last ROLE */
    ngx_msec_t              logged;     /* an invalid announcement */
    unsigned                asking:1;   /* the links wait for an answer */
    unsigned                known:1;    /* the master, for the links */
    unsigned                closing:1;
    unsigned                unchecked:1;  /* ROLE refused: not asked */
    u_char                  host[NGX_INET6_ADDRSTRLEN + 1];
    ngx_int_t               port;       /* 0: no master known */
} ra_sentinel_worker_t;


static void ra_redis_sentinel_open(void);
static void ra_redis_sentinel_connected(const redisAsyncContext *ac,
    int status);
static void ra_redis_sentinel_disconnected(const redisAsyncContext *ac,
    int status);
static void ra_redis_sentinel_timed_out(redisAsyncContext *ac);
static void ra_redis_sentinel_auth(redisAsyncContext *ac, void *r,
    void *privdata);
static void ra_redis_sentinel_answer(redisAsyncContext *ac, void *r,
    void *privdata);
static void ra_redis_sentinel_message(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ra_redis_sentinel_master(u_char *host, size_t hlen,
    u_char *port, size_t plen, const char *how);
static void ra_redis_sentinel_failed(const char *what, const char *err);
static void ra_redis_sentinel_step(ngx_event_t *ev);
static void ra_redis_sentinel_close(void);
static void ra_redis_sentinel_role_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static u_char *ra_redis_sentinel_text(u_char *dst, size_t size,
    const char *src, size_t len);


static ra_sentinel_worker_t  ra_sentinel_w;


/*
 * Where a link dials: the unix socket, the address (or what the resolver
 * found for it), or the master the Sentinels named; NGX_DECLINED while
 * none is known.  Any worker may ask: the master is read from the zone.
 */

ngx_int_t
ra_redis_target(ra_redis_conf_t *rc, ra_redis_target_t *t)
{
    ra_redis_sentinel_sh_t  *ss;

    ngx_memzero(t, sizeof(ra_redis_target_t));

    if (rc->unix_path.len) {
        t->unix_path = (const char *) rc->unix_path.data;
        return NGX_OK;
    }

    if (rc->sentinels == NULL) {
        t->host = rc->resolve ? ra_redis_resolve_host()
                              : (const char *) rc->host.data;
        t->port = (int) rc->port;
        return NGX_OK;
    }

    ss = &rc->sh->sentinel;

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (ss->port) {
        ngx_memcpy(t->buf, ss->host, sizeof(ss->host));
        t->port = (int) ss->port;
        t->generation = ss->generation;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (t->port == 0) {
        return NGX_DECLINED;
    }

    t->buf[NGX_INET6_ADDRSTRLEN] = '\0';
    t->host = (const char *) t->buf;

    return NGX_OK;
}


void
ra_redis_sentinel_init(ra_redis_conf_t *rc, ngx_log_t *log,
    ra_redis_sentinel_pt handler)
{
    ngx_memzero(&ra_sentinel_w, sizeof(ra_sentinel_worker_t));

    ra_sentinel_w.conf = rc;
    ra_sentinel_w.log = log;
    ra_sentinel_w.handler = handler;
    ra_sentinel_w.link.name = "sentinel";

    ra_sentinel_w.step.handler = ra_redis_sentinel_step;
    ra_sentinel_w.step.log = log;
    ra_sentinel_w.step.cancelable = 1;
}


/* the links may open only after a Sentinel has answered */

ngx_uint_t
ra_redis_sentinel_needed(void)
{
    return !ra_sentinel_w.known;
}


/*
 * The links want the master: the Sentinels are asked in turn, and the
 * handler told (FOUND or FAILED).  A watching connection is closed: a
 * subscribed one cannot ask.
 */

void
ra_redis_sentinel_ask(void)
{
    if (ra_sentinel_w.asking) {
        return;
    }

    ra_sentinel_w.asking = 1;
    ra_sentinel_w.tried = 0;

    if (ra_sentinel_w.step.timer_set) {
        ngx_del_timer(&ra_sentinel_w.step);
    }

    ra_redis_sentinel_close();
    ra_redis_sentinel_open();
}


static void
ra_redis_sentinel_open(void)
{
    const char           *argv[3], *err;
    size_t                argvlen[3];
    redisAsyncContext    *ac;
    ra_redis_conf_t      *rc;
    ra_redis_link_t      *link;
    ra_redis_sentinel_t  *sn;

    rc = ra_sentinel_w.conf;
    link = &ra_sentinel_w.link;
    sn = rc->sentinels->elts;
    sn = &sn[ra_sentinel_w.current % rc->sentinels->nelts];

    ac = ra_hiredis_connect(NULL, (const char *) sn->host, sn->port,
                            ra_sentinel_w.log, &err);

    if (ac == NULL) {
        ra_redis_sentinel_failed("connect", err);
        return;
    }

    link->ac = ac;
    link->subscriber = 0;
    link->connected = 0;
    link->subscribed = 0;
    link->since = 0;
    link->ping = 0;
    link->waited = 0;
    ac->data = link;

    ra_hiredis_timer(ac, rc->connect_timeout, ra_redis_sentinel_timed_out);

    redisAsyncSetConnectCallback(ac, ra_redis_sentinel_connected);
    redisAsyncSetDisconnectCallback(ac, ra_redis_sentinel_disconnected);

    ra_hiredis_auth(ac, &rc->sentinel_user, &rc->sentinel_password,
                    ra_redis_sentinel_auth, NULL);

    argv[0] = "SENTINEL";
    argvlen[0] = sizeof("SENTINEL") - 1;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) rc->master_name.data;
    argvlen[2] = rc->master_name.len;

    redisAsyncCommandArgv(ac, ra_redis_sentinel_answer, NULL, 3, argv,
                          argvlen);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ra_sentinel_w.log, 0,
                   "room_affinity: asking sentinel \"%V\"", &sn->name);
}


static void
ra_redis_sentinel_connected(const redisAsyncContext *ac, int status)
{
    ra_redis_link_t  *link = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context when this callback returns */
        link->ac = NULL;
        ra_redis_sentinel_failed("connect", ac->errstr);
        return;
    }

    link->connected = 1;
    link->since = ngx_current_msec;

    /* from now on the command timeout watches it (the role's tick) */
    ra_hiredis_timer((redisAsyncContext *) ac, 0, NULL);
}


static void
ra_redis_sentinel_disconnected(const redisAsyncContext *ac, int status)
{
    ra_redis_link_t  *link = ac->data;

    /* hiredis frees the context when this callback returns */

    link->ac = NULL;
    link->connected = 0;
    link->subscribed = 0;

    if (ra_sentinel_w.closing || ra_sentinel_w.conf == NULL) {
        return;
    }

    ra_redis_sentinel_failed("connection lost",
                             ac->err ? ac->errstr : "closed by the sentinel");
}


static void
ra_redis_sentinel_timed_out(redisAsyncContext *ac)
{
    ra_redis_sentinel_failed("connect", "timed out");
    ra_redis_sentinel_close();
}


static void
ra_redis_sentinel_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    u_char  text[RA_REDIS_ERR_LEN], *p;

    /* the answer that follows is refused too, and says so */

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        p = ra_redis_sentinel_text(text, sizeof(text), reply->str,
                                   reply->len);

        ngx_log_error(NGX_LOG_ERR, ra_sentinel_w.log, 0,
                      "room_affinity: sentinel AUTH failed: %*s",
                      (size_t) (p - text), text);
    }
}


/* SENTINEL get-master-addr-by-name: [host, port], or nil */

static void
ra_redis_sentinel_answer(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    u_char                err[RA_REDIS_ERR_LEN], *p;
    redisReply          **e;
    ra_redis_link_t      *link;
    ra_redis_conf_t      *rc;

    rc = ra_sentinel_w.conf;
    link = &ra_sentinel_w.link;

    if (reply == NULL || rc == NULL || link->ac != ac) {
        /* the context is being freed */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        p = ra_redis_sentinel_text(err, sizeof(err) - 1, reply->str,
                                   reply->len);
        *p = '\0';
        ra_redis_sentinel_failed("lookup", (char *) err);
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        ra_redis_sentinel_failed("lookup", "the master name is unknown to "
                                 "this sentinel");
        return;
    }

    e = reply->element;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || e[0]->type != REDIS_REPLY_STRING
        || e[1]->type != REDIS_REPLY_STRING
        || ra_redis_sentinel_master((u_char *) e[0]->str, e[0]->len,
                                    (u_char *) e[1]->str, e[1]->len,
                                    "names")
           != NGX_OK)
    {
        ra_redis_sentinel_failed("lookup", "not an address and a port");
        return;
    }

    ra_sentinel_w.tried = 0;
    ra_sentinel_w.backoff = 0;

    /* this Sentinel now tells of a failover as it happens */

    link->subscriber = 1;
    link->since = ngx_current_msec;
    redisAsyncCommand(ac, ra_redis_sentinel_message, NULL,
                      "SUBSCRIBE +switch-master");

    if (ra_sentinel_w.asking) {
        ra_sentinel_w.asking = 0;
        ra_sentinel_w.known = 1;
        ra_sentinel_w.handler(RA_SENTINEL_FOUND, NULL);
    }
}


/* "+switch-master": "<name> <old ip> <old port> <new ip> <new port>" */

static void
ra_redis_sentinel_message(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    u_char           *p, *last, *field[5], text[RA_REDIS_ERR_LEN];
    size_t            len[5];
    ngx_uint_t        n;
    redisReply       *payload;
    ra_redis_link_t  *link;
    ra_redis_conf_t  *rc;

    rc = ra_sentinel_w.conf;
    link = &ra_sentinel_w.link;

    /* a pong (["pong", ""]) may come here too: it has two elements */

    if (reply == NULL || rc == NULL || link->ac != ac
        || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    p = (u_char *) reply->element[0]->str;

    if (reply->element[0]->len == 9 && ngx_strncmp(p, "subscribe", 9) == 0) {
        /* the watch counts a subscription complete by the links' channels */
        link->subscribed = RA_REDIS_CHANNELS(rc);
        return;
    }

    payload = reply->element[2];

    if (reply->element[0]->len != 7 || ngx_strncmp(p, "message", 7) != 0
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    p = (u_char *) payload->str;
    last = p + payload->len;

    for (n = 0; n < 5; n++) {
        field[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        len[n] = p - field[n];

        if (len[n] == 0 || (n < 4 && p == last) || (n == 4 && p != last)) {
            goto invalid;
        }

        if (n < 4) {
            p++;
        }
    }

    if (len[0] != rc->master_name.len
        || ngx_strncmp(field[0], rc->master_name.data, len[0]) != 0)
    {
        /* another master of this Sentinel */
        return;
    }

    /* a new master: the links are told (ra_redis_sentinel_master()) */

    if (ra_redis_sentinel_master(field[3], len[3], field[4], len[4],
                                 "switched to")
        == NGX_OK)
    {
        return;
    }

invalid:

    /* a Sentinel may send any number: one line per interval */

    if (ra_sentinel_w.logged
        && ngx_current_msec - ra_sentinel_w.logged < RA_REDIS_LOG_INTERVAL)
    {
        return;
    }

    ra_sentinel_w.logged = ngx_current_msec ? ngx_current_msec : 1;

    last = ra_redis_sentinel_text(text, sizeof(text), payload->str,
                                  payload->len);

    ngx_log_error(NGX_LOG_WARN, ra_sentinel_w.log, 0,
                  "room_affinity: sentinel sent an invalid +switch-master "
                  "\"%*s\"", (size_t) (last - text), text);
}


/*
 * An answer or an announcement: the master is the address and port given,
 * if they are valid; the zone and, if it changed, the links are told
 */

static ngx_int_t
ra_redis_sentinel_master(u_char *host, size_t hlen, u_char *port, size_t plen,
    const char *how)
{
    ngx_int_t                n;
    ngx_uint_t               changed, followed;
    ra_redis_conf_t         *rc;
    ra_redis_sentinel_t     *sn;
    ra_redis_sentinel_sh_t  *ss;
#if (NGX_HAVE_INET6)
    u_char                   inaddr6[16];
#endif

    rc = ra_sentinel_w.conf;

    n = ngx_atoi(port, plen);

    if (n < 1 || n > 65535 || hlen == 0 || hlen > NGX_INET6_ADDRSTRLEN) {
        return NGX_ERROR;
    }

    /* an address, never a name: hiredis would block resolving it */

    if (ngx_inet_addr(host, hlen) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(host, hlen, inaddr6) != NGX_OK
#endif
       )
    {
        return NGX_ERROR;
    }

    /* new to this worker's term of the role: logged */
    changed = (ra_sentinel_w.port != n
               || ngx_strlen(ra_sentinel_w.host) != hlen
               || ngx_strncmp(ra_sentinel_w.host, host, hlen) != 0);

    /* a master known before in this term: the links leave it */
    followed = (changed && ra_sentinel_w.port);

    ngx_memcpy(ra_sentinel_w.host, host, hlen);
    ra_sentinel_w.host[hlen] = '\0';
    ra_sentinel_w.port = n;

    sn = rc->sentinels->elts;
    sn = &sn[ra_sentinel_w.current % rc->sentinels->nelts];

    ss = &rc->sh->sentinel;

    ngx_shmtx_lock(&rc->shpool->mutex);

    /* the zone's master outlives a term (a reload, a worker taken over) */

    if (ss->port != (ngx_uint_t) n
        || ngx_strcmp(ss->host, ra_sentinel_w.host) != 0)
    {
        if (ss->port) {
            ss->switches++;
        }

        ngx_memcpy(ss->host, ra_sentinel_w.host, hlen + 1);
        ss->port = n;
        ss->generation++;
    }

    ss->lookups++;
    ngx_memcpy(ss->answered, sn->name.data, sn->name.len);
    ss->answered[sn->name.len] = '\0';

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (changed) {
        ngx_log_error(NGX_LOG_NOTICE, ra_sentinel_w.log, 0,
                      "room_affinity: sentinel \"%V\" %s %s:%i, the master "
                      "\"%V\"", &sn->name, how, ra_sentinel_w.host,
                      ra_sentinel_w.port, &rc->master_name);
    }

    if (followed && !ra_sentinel_w.asking) {
        /* the links leave the old master now */
        ra_sentinel_w.known = 1;
        ra_sentinel_w.handler(RA_SENTINEL_SWITCHED, NULL);
    }

    return NGX_OK;
}


/*
 * A Sentinel did not answer: the next one is asked from the step timer;
 * after a whole round the links are told, and back off.  A watching
 * connection that is lost is replaced after a backoff of its own.
 */

static void
ra_redis_sentinel_failed(const char *what, const char *err)
{
    u_char                text[RA_REDIS_ERR_LEN], *p;
    ngx_msec_t            delay;
    ra_redis_conf_t      *rc;
    ra_redis_sentinel_t  *sn;

    rc = ra_sentinel_w.conf;

    if (rc == NULL) {
        return;
    }

    sn = rc->sentinels->elts;
    sn = &sn[ra_sentinel_w.current % rc->sentinels->nelts];

    ngx_log_error(NGX_LOG_ERR, ra_sentinel_w.log, 0,
                  "room_affinity: sentinel \"%V\" %s: %s", &sn->name, what,
                  err ? err : "unknown error");

    ngx_shmtx_lock(&rc->shpool->mutex);
    rc->sh->sentinel.failures++;
    ngx_shmtx_unlock(&rc->shpool->mutex);

    ra_sentinel_w.current = (ra_sentinel_w.current + 1)
                            % rc->sentinels->nelts;

    if (ra_sentinel_w.step.timer_set) {
        ngx_del_timer(&ra_sentinel_w.step);
    }

    if (!ra_sentinel_w.asking) {
        /* the watch is lost: another Sentinel after the backoff */

        ra_sentinel_w.backoff = ra_sentinel_w.backoff
                                ? ngx_min(ra_sentinel_w.backoff * 2,
                                          rc->backoff)
                                : RA_REDIS_BACKOFF_MIN;

        delay = ra_sentinel_w.backoff / 2
                + ngx_random() % (ra_sentinel_w.backoff / 2 + 1);

        ngx_add_timer(&ra_sentinel_w.step, delay);
        return;
    }

    if (++ra_sentinel_w.tried < rc->sentinels->nelts) {
        /* the next Sentinel, from a timer: never inside hiredis */
        ngx_add_timer(&ra_sentinel_w.step, 1);
        return;
    }

    /* a whole round without an answer: the links back off, ask again */

    ra_sentinel_w.asking = 0;
    ra_sentinel_w.tried = 0;
    ra_sentinel_w.known = 0;

    /* the step closes what is left of the last connection */
    ngx_add_timer(&ra_sentinel_w.step, 1);

    p = ngx_snprintf(text, sizeof(text) - 1, "no sentinel of %ui answered, "
                     "the last: %s: %s", rc->sentinels->nelts, what,
                     err ? err : "unknown error");
    *p = '\0';

    ra_sentinel_w.handler(RA_SENTINEL_FAILED, (char *) text);
}


/* the next Sentinel of a round, or a watch again */

static void
ra_redis_sentinel_step(ngx_event_t *ev)
{
    if (ra_sentinel_w.conf == NULL || ngx_exiting) {
        return;
    }

    ra_redis_sentinel_close();

    if (ra_sentinel_w.asking || ra_sentinel_w.known) {
        ra_redis_sentinel_open();
    }
}


/*
 * The role's tick: the connection to a Sentinel is watched (an answer or
 * a pong within the command timeout); the command link, once ready, is
 * asked for its role every ping_interval
 */

void
ra_redis_sentinel_tick(ngx_msec_t now, redisAsyncContext *cmd)
{
    u_char            err[64], *p;
    ra_redis_conf_t  *rc;
    ra_redis_link_t  *link;

    rc = ra_sentinel_w.conf;
    link = &ra_sentinel_w.link;

    if (rc == NULL) {
        return;
    }

    if (link->ac
        && ra_redis_watch(rc, link, now, ra_sentinel_w.log) != NGX_OK)
    {
        p = ngx_snprintf(err, sizeof(err) - 1, "no answer in %M ms",
                         link->waited);
        *p = '\0';

        ra_redis_sentinel_close();
        ra_redis_sentinel_failed(link->subscriber ? "watch" : "lookup",
                                 (char *) err);
    }

    if (cmd && !ra_sentinel_w.unchecked
        && now - ra_sentinel_w.role_sent >= rc->ping_interval)
    {
        ra_redis_sentinel_role(cmd);
    }
}


/* the command link asks the server it reached for its role */

void
ra_redis_sentinel_role(redisAsyncContext *ac)
{
    ra_sentinel_w.role_sent = ngx_current_msec;

    if (ra_sentinel_w.unchecked) {
        return;
    }

    redisAsyncCommand(ac, ra_redis_sentinel_role_reply, NULL, "ROLE");
}


static void
ra_redis_sentinel_role_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    u_char       err[RA_REDIS_ERR_LEN], *p;
    redisReply  *role;

    if (reply == NULL || ra_sentinel_w.conf == NULL) {
        /* the link is being freed */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (reply->len >= 6
            && (ngx_strncmp(reply->str, "NOPERM", 6) == 0
                || ngx_strstrn((u_char *) reply->str, "unknown command",
                               sizeof("unknown command") - 2)))
        {
            /* an ACL without +role: the link works, unchecked */

            p = ra_redis_sentinel_text(err, sizeof(err), reply->str,
                                       reply->len);

            ngx_log_error(NGX_LOG_WARN, ra_sentinel_w.log, 0,
                          "room_affinity: redis ROLE failed: %*s; the role "
                          "of the server is not checked",
                          (size_t) (p - err), err);

            ra_sentinel_w.unchecked = 1;
        }

        /* another error (BUSY, LOADING): asked again later */
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0
        && reply->element[0]->type == REDIS_REPLY_STRING)
    {
        role = reply->element[0];

        if (role->len == 6 && ngx_strncmp(role->str, "master", 6) == 0) {
            return;
        }

        p = ngx_cpymem(err, "the server is not the master but a \"",
                       sizeof("the server is not the master but a \"") - 1);
        p = ra_redis_sentinel_text(p, 32, role->str, role->len);
        *p++ = '"';

    } else {
        p = ngx_snprintf(err, sizeof(err) - 1, "an invalid ROLE reply");
    }

    *p = '\0';

    /* the Sentinels are asked again after the links' backoff */

    ra_sentinel_w.known = 0;
    ra_sentinel_w.handler(RA_SENTINEL_REPLICA, (char *) err);
}


/* the links failed: the next time they open, the Sentinels are asked */

void
ra_redis_sentinel_forget(void)
{
    ra_sentinel_w.known = 0;
}


ngx_uint_t
ra_redis_sentinel_busy(void)
{
    return ra_sentinel_w.link.ac != NULL || ra_sentinel_w.asking;
}


/* the role is lost or handed over: the next term asks afresh */

void
ra_redis_sentinel_stop(void)
{
    if (ra_sentinel_w.conf == NULL) {
        return;
    }

    if (ra_sentinel_w.step.timer_set) {
        ngx_del_timer(&ra_sentinel_w.step);
    }

    ra_redis_sentinel_close();

    ra_sentinel_w.asking = 0;
    ra_sentinel_w.known = 0;
    ra_sentinel_w.tried = 0;
    ra_sentinel_w.backoff = 0;
    ra_sentinel_w.port = 0;
    ra_sentinel_w.host[0] = '\0';
}


/*
 * At most size bytes of what a Sentinel or Redis sent, for the log:
 * printable ASCII, anything else as '?'
 */

static u_char *
ra_redis_sentinel_text(u_char *dst, size_t size, const char *src, size_t len)
{
    size_t  i;

    for (i = 0; i < len && i < size; i++) {
        dst[i] = ((u_char) src[i] >= 0x20 && (u_char) src[i] < 0x7f)
                 ? (u_char) src[i] : '?';
    }

    return dst + i;
}


static void
ra_redis_sentinel_close(void)
{
    redisAsyncContext  *ac;

    ac = ra_sentinel_w.link.ac;

    if (ac == NULL) {
        return;
    }

    ra_sentinel_w.link.ac = NULL;
    ra_sentinel_w.link.connected = 0;
    ra_sentinel_w.link.subscribed = 0;

    /* never from a callback of this context */

    ra_sentinel_w.closing = 1;
    redisAsyncFree(ac);
    ra_sentinel_w.closing = 0;
}
