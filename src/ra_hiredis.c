/*
 * The adapter: the context's socket is wrapped in an nginx connection
 * (ngx_get_connection()) whose events are level-triggered, since hiredis
 * reads and writes only as much as it wants per call.  hiredis closes the
 * socket itself: the cleanup only lets go of the nginx connection.
 *
 * hiredis frees a context inside its own callbacks (a failed connect, a
 * disconnect): after redisAsyncHandleRead()/Write() nothing here touches
 * the context or the connection again; the cleanup hook, which hiredis
 * calls as it frees the context, removes every event that could still
 * reach them.
 */

#include "ra_hiredis.h"


typedef struct {
    redisAsyncContext      *ac;
    ngx_connection_t       *conn;
    ngx_event_t             timer;
    ra_hiredis_timeout_pt   timeout;
    ngx_msec_t              last_read;    /* the socket was readable */
} ra_hiredis_events_t;


static void ra_hiredis_add_read(void *privdata);
static void ra_hiredis_del_read(void *privdata);
static void ra_hiredis_add_write(void *privdata);
static void ra_hiredis_del_write(void *privdata);
static void ra_hiredis_cleanup(void *privdata);
static void ra_hiredis_read_handler(ngx_event_t *ev);
static void ra_hiredis_write_handler(ngx_event_t *ev);
static void ra_hiredis_timer_handler(ngx_event_t *ev);


/* hiredis's text of the last connect error, kept until the next */
static u_char  ra_hiredis_err[128];


/*
 * A hiredis context on nginx's event loop: a unix socket, or a numeric
 * host and port (hiredis would resolve a name with a blocking call)
 */

redisAsyncContext *
ra_hiredis_connect(const char *unix_path, const char *host, ngx_int_t port,
    ngx_log_t *log, const char **err)
{
    redisAsyncContext  *ac;

    if (unix_path) {
        ac = redisAsyncConnectUnix(unix_path);

    } else {
        ac = redisAsyncConnect(host, (int) port);
    }

    if (ac == NULL) {
        *err = "out of memory";
        return NULL;
    }

    if (ac->err) {
        /* hiredis's text, kept in a static buffer until the next one */
        ngx_cpystrn(ra_hiredis_err, (u_char *) ac->errstr,
                    sizeof(ra_hiredis_err));
        *err = (const char *) ra_hiredis_err;
        redisAsyncFree(ac);
        return NULL;
    }

    if (unix_path == NULL) {
        /* a Redis host gone without a FIN is noticed, not waited on */
        (void) redisEnableKeepAlive(&ac->c);
    }

    if (ra_hiredis_attach(ac, log) != NGX_OK) {
        redisAsyncFree(ac);
        *err = "no free nginx connection";
        return NULL;
    }

    return ac;
}


/*
 * "AUTH [user] password", queued, when there is a password: the one
 * command of a connection's set-up, for the links and the Sentinels alike
 */

void
ra_hiredis_auth(redisAsyncContext *ac, ngx_str_t *user, ngx_str_t *password,
    redisCallbackFn *reply, void *data)
{
    const char  *argv[3];
    size_t       argvlen[3];
    ngx_uint_t   argc;

    if (password->len == 0) {
        return;
    }

    argc = 0;
    argv[argc] = "AUTH";
    argvlen[argc++] = sizeof("AUTH") - 1;

    if (user->len) {
        /* a Redis 6 ACL user */
        argv[argc] = (const char *) user->data;
        argvlen[argc++] = user->len;
    }

    argv[argc] = (const char *) password->data;
    argvlen[argc++] = password->len;

    redisAsyncCommandArgv(ac, reply, data, (int) argc, argv, argvlen);
}


ngx_int_t
ra_hiredis_attach(redisAsyncContext *ac, ngx_log_t *log)
{
    ngx_connection_t     *c;
    ra_hiredis_events_t  *e;

    if (ac->ev.data != NULL) {
        return NGX_ERROR;
    }

    e = ngx_calloc(sizeof(ra_hiredis_events_t), log);
    if (e == NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        ngx_free(e);
        return NGX_ERROR;
    }

    c->data = e;
    c->read->handler = ra_hiredis_read_handler;
    c->write->handler = ra_hiredis_write_handler;
    c->read->log = log;
    c->write->log = log;

    e->ac = ac;
    e->conn = c;
    e->last_read = ngx_current_msec;

    /* cancelable: a graceful shutdown does not wait for it */
    e->timer.handler = ra_hiredis_timer_handler;
    e->timer.data = e;
    e->timer.log = log;
    e->timer.cancelable = 1;

    ac->ev.data = e;
    ac->ev.addRead = ra_hiredis_add_read;
    ac->ev.delRead = ra_hiredis_del_read;
    ac->ev.addWrite = ra_hiredis_add_write;
    ac->ev.delWrite = ra_hiredis_del_write;
    ac->ev.cleanup = ra_hiredis_cleanup;

    return NGX_OK;
}


/*
 * (Re)arms the context's one timer: handler runs in ms unless the timer
 * is armed again or cancelled (ms 0) before
 */

void
ra_hiredis_timer(redisAsyncContext *ac, ngx_msec_t ms,
    ra_hiredis_timeout_pt handler)
{
    ra_hiredis_events_t  *e = ac->ev.data;

    if (e == NULL) {
        return;
    }

    if (e->timer.timer_set) {
        ngx_del_timer(&e->timer);
    }

    e->timeout = handler;

    if (ms) {
        ngx_add_timer(&e->timer, ms);
    }
}


/*
 * When the peer last sent something (or closed): the links' liveness
 * does not depend on hiredis handing every reply to a callback
 */

ngx_msec_t
ra_hiredis_last_read(redisAsyncContext *ac)
{
    ra_hiredis_events_t  *e = ac->ev.data;

    return e ? e->last_read : 0;
}


/*
 * A command whose reply no callback waits for, written past hiredis's
 * callback lists.  For a PING on a subscribed context: hiredis 0.14 queues
 * a command sent there on a list that only an error reply empties, and
 * the pong (["pong", ""] in RESP2) is no error, so redisAsyncCommand()
 * would leak one entry per PING for the life of the link; the pong itself
 * is dropped, or handed to the subscription's callback (0.14 reuses the
 * previous reply's callback), which ignores it.  Not for a context that is
 * not subscribed: hiredis asserts that every reply there has a callback.
 */

ngx_int_t
ra_hiredis_raw(redisAsyncContext *ac, const char *cmd, size_t len)
{
    ra_hiredis_events_t  *e = ac->ev.data;

    if (e == NULL
        || (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))
        || !(ac->c.flags & REDIS_SUBSCRIBED))
    {
        return NGX_ERROR;
    }

    if (redisAppendFormattedCommand(&ac->c, cmd, len) != REDIS_OK) {
        return NGX_ERROR;
    }

    ra_hiredis_add_write(e);

    return NGX_OK;
}


/*
 * What the context has to write goes out in this turn of the event loop,
 * from the posted queue, not at the next turn's epoll wakeup: a worker
 * whose turns are long would otherwise let a caller's short wait run out
 * before its command had even left.  Outside hiredis: a write failure may
 * free the context.
 */

void
ra_hiredis_flush_soon(redisAsyncContext *ac)
{
    ngx_event_t          *wev;
    ra_hiredis_events_t  *e;

    e = ac->ev.data;

    if (e == NULL || !(ac->c.flags & REDIS_CONNECTED)) {
        /* connecting: the write event says when the connect is done */
        return;
    }

    wev = e->conn->write;

    if (wev->active && !wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }
}


/*
 * Reads what has come, now, as the read event would: for a caller about
 * to give up on an answer that may be waiting in the socket.  May free
 * the context (a closed link), and runs the replies' callbacks.
 */

void
ra_hiredis_read_now(redisAsyncContext *ac)
{
    ra_hiredis_events_t  *e;

    e = ac->ev.data;

    if (e == NULL || !(ac->c.flags & REDIS_CONNECTED)
        || (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
    {
        return;
    }

    redisAsyncHandleRead(ac);
}


static void
ra_hiredis_add_read(void *privdata)
{
    ra_hiredis_events_t  *e = privdata;

    ngx_event_t  *rev;

    rev = e->conn->read;

    if (!rev->active
        && ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "room_affinity: cannot watch the redis socket");
    }
}


static void
ra_hiredis_del_read(void *privdata)
{
    ra_hiredis_events_t  *e = privdata;

    if (e->conn->read->active) {
        (void) ngx_del_event(e->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ra_hiredis_add_write(void *privdata)
{
    ra_hiredis_events_t  *e = privdata;

    ngx_event_t  *wev;

    wev = e->conn->write;

    if (!wev->active
        && ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, wev->log, 0,
                      "room_affinity: cannot watch the redis socket");
    }
}


static void
ra_hiredis_del_write(void *privdata)
{
    ra_hiredis_events_t  *e = privdata;

    if (e->conn->write->active) {
        (void) ngx_del_event(e->conn->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ra_hiredis_cleanup(void *privdata)
{
    ra_hiredis_events_t  *e = privdata;

    ngx_connection_t  *c;

    c = e->conn;

    ra_hiredis_del_read(e);
    ra_hiredis_del_write(e);

    /* an event of it may wait in the posted queue (accept_mutex on) */

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (e->timer.timer_set) {
        ngx_del_timer(&e->timer);
    }

    e->ac->ev.data = NULL;

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    ngx_free(e);
}


static void
ra_hiredis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ra_hiredis_events_t  *e = c->data;

    e->last_read = ngx_current_msec;

    redisAsyncHandleRead(e->ac);
}


static void
ra_hiredis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ra_hiredis_events_t  *e = c->data;

    redisAsyncHandleWrite(e->ac);
}


static void
ra_hiredis_timer_handler(ngx_event_t *ev)
{
    ra_hiredis_events_t  *e = ev->data;

    if (e->timeout) {
        e->timeout(e->ac);
    }
}
