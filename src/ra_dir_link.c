/*
 * A worker's link for the room directory.  Every worker that sees a new
 * room asks Redis itself, so each holds its own link rather than passing
 * the question to the worker of the Redis role: one hop less, and no
 * shared queue between workers.  The link is opened on first use; while
 * it is down, or its calls go unanswered, ra_dir_link_usable() says so
 * and the directory places rooms locally (ra_directory.c).
 *
 * hiredis may free the context inside a callback: the disconnect
 * callbacks only forget it, and reconnection happens on a later call or
 * tick, never inside a callback.
 */

#include "ra_dir_link.h"
#include "ra_redis_link.h"
#include "ra_hiredis.h"
#include "ra_redis_sentinel.h"
#include <ngx_sha1.h>


typedef struct {
    ra_dir_reply_pt     handler;
    void               *data;
    uint64_t            sent;         /* us */
    ngx_uint_t          eval;         /* sent again as EVAL */
    int                 argc;
    const char        **argv;
    size_t             *argvlen;
} ra_dir_cmd_t;


typedef struct {
    ra_redis_conf_t    *conf;
    ngx_log_t          *log;
    redisAsyncContext  *ac;
    ngx_uint_t          connected;
    ngx_uint_t          closing;
    ngx_msec_t          backoff;
    ngx_msec_t          next;         /* no connect before */
    ngx_uint_t          pending;      /* calls unanswered */
    ngx_msec_t          progress;     /* the last answer, or the first
                                         call since the link was idle */
    ngx_msec_t          logged;
    ngx_uint_t          connects;
    ngx_uint_t          generation;   /* of the Sentinels' master dialled */
    const char         *script;
    size_t              script_len;
    u_char              sha[40];
} ra_dir_link_t;


static void ra_dir_link_open(ngx_msec_t now);
static void ra_dir_link_connected(const redisAsyncContext *ac, int status);
static void ra_dir_link_disconnected(const redisAsyncContext *ac,
    int status);
static void ra_dir_link_timed_out(redisAsyncContext *ac);
static void ra_dir_link_failed(const char *what, const char *err);
static void ra_dir_link_close(void);
static void ra_dir_link_reply(redisAsyncContext *ac, void *r, void *privdata);
static void ra_dir_link_auth(redisAsyncContext *ac, void *r, void *privdata);
static ngx_int_t ra_dir_send(ra_dir_cmd_t *cmd);


static ra_dir_link_t  ra_dir_l;


void
ra_dir_link_init(ra_redis_conf_t *rc, const char *script, ngx_log_t *log)
{
    ngx_sha1_t  sha1;
    u_char      digest[20];

    ngx_memzero(&ra_dir_l, sizeof(ra_dir_link_t));

    ra_dir_l.conf = rc;
    ra_dir_l.log = log;
    ra_dir_l.script = script;
    ra_dir_l.script_len = ngx_strlen(script);

    /* EVALSHA names the script by the SHA-1 of its text, in hex */

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, script, ra_dir_l.script_len);
    ngx_sha1_final(digest, &sha1);

    (void) ngx_hex_dump(ra_dir_l.sha, digest, 20);
}


void
ra_dir_link_exit(void)
{
    ra_dir_link_close();
    ra_dir_l.conf = NULL;
}


/*
 * NGX_OK: a call may be sent now (the link is up, or opening, and it
 * answers); NGX_DECLINED: it is down, backing off, or its oldest call has
 * waited "stall" ms: a question sent now would wait for nothing
 */

ngx_int_t
ra_dir_link_usable(ngx_msec_t now, ngx_msec_t stall)
{
    if (ra_dir_l.conf == NULL || ngx_exiting) {
        return NGX_DECLINED;
    }

    if (ra_dir_l.ac == NULL) {
        if ((ngx_msec_int_t) (now - ra_dir_l.next) < 0) {
            return NGX_DECLINED;
        }

        ra_dir_link_open(now);

        if (ra_dir_l.ac == NULL) {
            return NGX_DECLINED;
        }
    }

    if (ra_dir_l.pending && (ngx_msec_int_t) (now - ra_dir_l.progress)
                            >= (ngx_msec_int_t) stall)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a call unanswered for command_timeout: the link closes, and backs off */

void
ra_dir_link_tick(ngx_msec_t now)
{
    ra_redis_target_t  t;

    if (ra_dir_l.ac && ra_dir_l.conf->sentinels
        && ra_redis_target(ra_dir_l.conf, &t) == NGX_OK
        && t.generation != ra_dir_l.generation)
    {
        /* the Sentinels named another master: this one may be a replica */
        ra_dir_link_close();
        ra_dir_link_failed("connect", "the master changed");
        return;
    }

    if (ra_dir_l.ac && ra_dir_l.pending
        && (ngx_msec_int_t) (now - ra_dir_l.progress)
           >= (ngx_msec_int_t) ra_dir_l.conf->command_timeout)
    {
        ra_dir_link_close();
        ra_dir_link_failed("command", "timed out");
    }
}


/*
 * EVALSHA of the directory script with these keys and arguments; the
 * handler gets the answer later, from the event loop
 */

ngx_int_t
ra_dir_call(ngx_uint_t nkeys, ngx_str_t *keys, ngx_uint_t nargs,
    ngx_str_t *args, ra_dir_reply_pt handler, void *data)
{
    u_char        *p;
    size_t         size;
    ngx_uint_t     i, argc;
    ra_dir_cmd_t  *cmd;
    u_char         num[NGX_INT_T_LEN];

    if (ra_dir_l.ac == NULL || nkeys + nargs > RA_DIR_ARGS_MAX) {
        return NGX_DECLINED;
    }

    argc = 3 + nkeys + nargs;

    size = sizeof(ra_dir_cmd_t) + argc * (sizeof(char *) + sizeof(size_t))
           + NGX_INT_T_LEN;

    for (i = 0; i < nkeys; i++) {
        size += keys[i].len;
    }

    for (i = 0; i < nargs; i++) {
        size += args[i].len;
    }

    /* one block: freed after the answer, which may come after the request */

    cmd = ngx_alloc(size, ra_dir_l.log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->eval = 0;
    cmd->argc = (int) argc;
    cmd->argv = (const char **) (cmd + 1);
    cmd->argvlen = (size_t *) (cmd->argv + argc);
    p = (u_char *) (cmd->argvlen + argc);

    cmd->argv[0] = "EVALSHA";
    cmd->argvlen[0] = sizeof("EVALSHA") - 1;
    cmd->argv[1] = (const char *) ra_dir_l.sha;
    cmd->argvlen[1] = 40;

    cmd->argvlen[2] = ngx_sprintf(num, "%ui", nkeys) - num;
    cmd->argv[2] = (const char *) p;
    p = ngx_cpymem(p, num, cmd->argvlen[2]);

    for (i = 0; i < nkeys; i++) {
        cmd->argv[3 + i] = (const char *) p;
        cmd->argvlen[3 + i] = keys[i].len;
        p = ngx_cpymem(p, keys[i].data, keys[i].len);
    }

    for (i = 0; i < nargs; i++) {
        cmd->argv[3 + nkeys + i] = (const char *) p;
        cmd->argvlen[3 + nkeys + i] = args[i].len;
        p = ngx_cpymem(p, args[i].data, args[i].len);
    }

    if (ra_dir_send(cmd) != NGX_OK) {
        ngx_free(cmd);
        return NGX_ERROR;
    }

    if (ra_dir_l.connected) {
        ra_hiredis_flush_soon(ra_dir_l.ac);
    }

    return NGX_OK;
}


/* the answers already in the socket, read now (may close the link) */

void
ra_dir_link_poll(void)
{
    if (ra_dir_l.ac && ra_dir_l.connected) {
        ra_hiredis_read_now(ra_dir_l.ac);
    }
}


/* connections made: one more may be a Redis that lost its records */

ngx_uint_t
ra_dir_link_connects(void)
{
    return ra_dir_l.connects;
}


uint64_t
ra_dir_now_us(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static ngx_int_t
ra_dir_send(ra_dir_cmd_t *cmd)
{
    cmd->sent = ra_dir_now_us();

    if (redisAsyncCommandArgv(ra_dir_l.ac, ra_dir_link_reply, cmd, cmd->argc,
                              cmd->argv, cmd->argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    if (ra_dir_l.pending++ == 0) {
        ra_dir_l.progress = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ra_dir_link_open(ngx_msec_t now)
{
    const char         *err;
    redisAsyncContext  *ac;
    ra_redis_conf_t    *rc;
    ra_redis_target_t   t;

    rc = ra_dir_l.conf;

    /*
     * the links' address: the configured one ("resolve" is refused with
     * the directory), or the master the Sentinels named last
     */

    if (ra_redis_target(rc, &t) != NGX_OK) {
        ra_dir_link_failed("connect", "no master known");
        return;
    }

    ra_dir_l.generation = t.generation;

    ac = ra_redis_dial(rc, t.host, t.port, 1, ra_dir_link_auth, ra_dir_l.log,
                       &err);

    if (ac == NULL) {
        ra_dir_link_failed("connect", err);
        return;
    }

    ra_dir_l.ac = ac;
    ra_dir_l.connected = 0;
    ra_dir_l.pending = 0;

    ra_hiredis_timer(ac, rc->connect_timeout, ra_dir_link_timed_out);

    redisAsyncSetConnectCallback(ac, ra_dir_link_connected);
    redisAsyncSetDisconnectCallback(ac, ra_dir_link_disconnected);

    /* once, before any EVALSHA; NOSCRIPT later (a flush) sends EVAL */

    redisAsyncCommand(ac, ra_dir_link_auth, (void *) "SCRIPT LOAD",
                      "SCRIPT LOAD %b", ra_dir_l.script,
                      ra_dir_l.script_len);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ra_dir_l.log, 0,
                   "room_affinity: directory link connecting, fd:%d",
                   ac->c.fd);
}


static void
ra_dir_link_connected(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) {
        /* hiredis frees the context when this callback returns */
        ra_dir_l.ac = NULL;
        ra_dir_l.connected = 0;
        ra_dir_link_failed("connect", ac->errstr);
        return;
    }

    ra_dir_l.connected = 1;
    ra_dir_l.connects++;
    ra_dir_l.backoff = 0;
    ra_hiredis_timer((redisAsyncContext *) ac, 0, NULL);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ra_dir_l.log, 0,
                   "room_affinity: directory link connected");
}


static void
ra_dir_link_disconnected(const redisAsyncContext *ac, int status)
{
    /* hiredis frees the context when this callback returns */

    ra_dir_l.ac = NULL;
    ra_dir_l.connected = 0;

    if (ra_dir_l.closing || ra_dir_l.conf == NULL) {
        return;
    }

    ra_dir_link_failed("connection lost",
                       ac->err ? ac->errstr : "closed by the server");
}


static void
ra_dir_link_timed_out(redisAsyncContext *ac)
{
    ra_dir_link_close();
    ra_dir_link_failed("connect", "timed out");
}


static void
ra_dir_link_failed(const char *what, const char *err)
{
    ngx_msec_t  jitter, delay;

    if (ra_dir_l.conf == NULL) {
        return;
    }

    /*
     * capped exponential backoff with jitter, capped lower than the role's
     * links: the rooms placed while Redis was away are repaired when it
     * is back, and that should not wait for seconds
     */

    if (ra_dir_l.backoff == 0) {
        ra_dir_l.backoff = RA_REDIS_BACKOFF_MIN;

    } else {
        ra_dir_l.backoff = ngx_min(ra_dir_l.backoff * 2,
                                   ngx_min(ra_dir_l.conf->backoff,
                                           RA_DIR_BACKOFF_MAX));
    }

    jitter = ngx_random() % (ra_dir_l.backoff / 2 + 1);
    delay = ra_dir_l.backoff / 2 + jitter;
    ra_dir_l.next = ngx_current_msec + delay;

    /* every worker has one: a log line an interval, not one a retry */

    if ((ngx_msec_int_t) (ngx_current_msec - ra_dir_l.logged)
        >= RA_REDIS_LOG_INTERVAL
        || ra_dir_l.logged == 0)
    {
        ra_dir_l.logged = ngx_current_msec ? ngx_current_msec : 1;

        ngx_log_error(NGX_LOG_ERR, ra_dir_l.log, 0,
                      "room_affinity: redis \"%V\" directory link %s: %s, "
                      "retrying in %M ms", &ra_dir_l.conf->address, what,
                      err ? err : "unknown error", delay);
    }
}


static void
ra_dir_link_close(void)
{
    redisAsyncContext  *ac;

    ac = ra_dir_l.ac;

    if (ac == NULL) {
        return;
    }

    ra_dir_l.ac = NULL;
    ra_dir_l.connected = 0;

    /* the calls waiting are answered NULL, inside the free */

    ra_dir_l.closing = 1;
    redisAsyncFree(ac);
    ra_dir_l.closing = 0;

    ra_dir_l.pending = 0;
}


static void
ra_dir_link_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply    *reply = r;
    ra_dir_cmd_t  *cmd = privdata;

    uint64_t  rtt;

    if (ra_dir_l.pending) {
        ra_dir_l.pending--;
    }

    ra_dir_l.progress = ngx_current_msec;

    if (reply && reply->type == REDIS_REPLY_ERROR && !cmd->eval
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0
        && ra_dir_l.ac == ac && !ra_dir_l.closing)
    {
        /* the script is gone (SCRIPT FLUSH, a new master): its text then */

        cmd->eval = 1;
        cmd->argv[0] = "EVAL";
        cmd->argvlen[0] = sizeof("EVAL") - 1;
        cmd->argv[1] = ra_dir_l.script;
        cmd->argvlen[1] = ra_dir_l.script_len;

        if (ra_dir_send(cmd) == NGX_OK) {
            return;
        }

        reply = NULL;
    }

    rtt = ra_dir_now_us() - cmd->sent;

    cmd->handler(cmd->data, reply, rtt);

    ngx_free(cmd);
}


static void
ra_dir_link_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ra_dir_l.log, 0,
                      "room_affinity: redis directory link %s failed: %*s",
                      (char *) privdata, (size_t) reply->len, reply->str);
    }
}
