/*
 * Redis inside the nginx event loop: hiredis's async API on an nginx
 * connection (level-triggered events), two links (a subscriber and a
 * command link for the snapshot), one subscriber per nginx instance
 * elected through a small shared zone, reconnection from a timer with a
 * capped, jittered exponential backoff.
 *
 * hiredis may free its context inside a callback (connect failure,
 * disconnect): the links forget the context in those callbacks and never
 * touch it after redisAsyncHandle*().
 */

#include "ra_redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef struct {
    redisAsyncContext  *ac;
    ngx_connection_t   *conn;
    const char         *name;
    ngx_uint_t          subscriber;   /* unsigned subscriber:1 */
    ngx_uint_t          connected;
    ngx_uint_t          subscribed;   /* channels confirmed */
} ra_redis_link_t;


static char *ra_redis_parse_address(ngx_conf_t *cf, ra_redis_conf_t *rc,
    ngx_str_t *value);
static ngx_int_t ra_redis_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static void ra_redis_release(ra_redis_conf_t *rc);
static void ra_redis_tick(ngx_event_t *ev);
static ngx_uint_t ra_redis_elect(ra_redis_conf_t *rc, ngx_msec_t now);
static ngx_int_t ra_redis_open(ra_redis_link_t *link, ngx_log_t *log);
static void ra_redis_add_read(void *privdata);
static void ra_redis_del_read(void *privdata);
static void ra_redis_add_write(void *privdata);
static void ra_redis_del_write(void *privdata);
static void ra_redis_cleanup(void *privdata);
static void ra_redis_read_handler(ngx_event_t *ev);
static void ra_redis_write_handler(ngx_event_t *ev);
static void ra_redis_connected(const redisAsyncContext *ac, int status);
static void ra_redis_disconnected(const redisAsyncContext *ac, int status);
static void ra_redis_failed(ra_redis_link_t *link, const char *what,
    const char *err);
static void ra_redis_close(ra_redis_link_t *link);
static void ra_redis_reply(redisAsyncContext *ac, void *r, void *privdata);
static void ra_redis_on_message(redisAsyncContext *ac, void *r,
    void *privdata);
static void ra_redis_ready(void);
static void ra_redis_request_snapshot(void);
static void ra_redis_on_snapshot(redisAsyncContext *ac, void *r,
    void *privdata);
static void ra_redis_handle(ra_msg_type_e type, ngx_str_t *channel,
    const char *data, size_t len, ngx_uint_t snapshot);
static ngx_uint_t ra_redis_apply(ra_msg_t *msg, ra_msg_type_e type,
    ngx_uint_t snapshot);
static void ra_redis_reject(ra_msg_err_e err, ngx_str_t *channel,
    const char *detail, const char *data, size_t len);
static void ra_redis_set_error(const char *what, const char *err);
static void ra_redis_share_tick(ngx_event_t *ev);
static void ra_redis_on_room(const char *data, size_t len);


static ra_redis_conf_t   *ra_redis_conf;
static ngx_log_t         *ra_redis_log;
static ngx_event_t        ra_redis_timer;
static ngx_event_t        ra_redis_share_timer;
static ngx_uint_t         ra_redis_owner;
static ngx_uint_t         ra_redis_exiting;
static ngx_uint_t         ra_redis_closing;
static ngx_msec_t         ra_redis_backoff;
static ngx_msec_t         ra_redis_next;
static ngx_msec_t         ra_redis_logged[RA_MSG_ERR_COUNT + 1];
static ngx_uint_t         ra_redis_suppressed[RA_MSG_ERR_COUNT + 1];

static ra_redis_link_t    ra_redis_sub = { NULL, NULL, "subscriber", 1, 0, 0 };
static ra_redis_link_t    ra_redis_cmd = { NULL, NULL, "command", 0, 0, 0 };


char *
ra_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_main_conf_t  *rmcf = conf;

    ngx_str_t         *value, s, prefix, name;
    ngx_int_t          n;
    ngx_uint_t         i;
    ra_redis_conf_t   *rc;

    if (rmcf->redis) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ra_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ra_redis_parse_address(cf, rc, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    rc->snapshot = 1;
    rc->share = 1;
    rc->backoff = 3000;
    ngx_str_null(&prefix);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rc->password.data = value[i].data + 9;
            rc->password.len = value[i].len - 9;

            if (rc->password.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            rc->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            prefix.data = value[i].data + 7;
            prefix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "backoff=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            rc->backoff = ngx_parse_time(&s, 0);
            if (rc->backoff == (ngx_msec_t) NGX_ERROR
                || rc->backoff < RA_REDIS_BACKOFF_MIN)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\", "
                                   "it must be at least 100ms", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "snapshot=off") == 0) {
            rc->snapshot = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "snapshot=on") == 0) {
            rc->snapshot = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "share=off") == 0) {
            rc->share = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "share=on") == 0) {
            rc->share = 1;
            continue;
        }

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* channel and key names, NUL-terminated for hiredis */

    rc->channel_register.len = prefix.len + sizeof("register") - 1;
    rc->channel_register.data = ngx_pnalloc(cf->pool,
                                            rc->channel_register.len + 1);
    rc->channel_signaling.len = prefix.len + sizeof("signaling") - 1;
    rc->channel_signaling.data = ngx_pnalloc(cf->pool,
                                             rc->channel_signaling.len + 1);
    rc->snapshot_key.len = prefix.len + sizeof("room_affinity:backends") - 1;
    rc->snapshot_key.data = ngx_pnalloc(cf->pool, rc->snapshot_key.len + 1);
    rc->channel_rooms.len = prefix.len + sizeof("room_affinity:rooms") - 1;
    rc->channel_rooms.data = ngx_pnalloc(cf->pool, rc->channel_rooms.len + 1);

    if (rc->channel_register.data == NULL
        || rc->channel_signaling.data == NULL
        || rc->snapshot_key.data == NULL
        || rc->channel_rooms.data == NULL)
    {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(rc->channel_rooms.data, "%Vroom_affinity:rooms%Z", &prefix);

    ngx_sprintf(rc->channel_register.data, "%Vregister%Z", &prefix);
    ngx_sprintf(rc->channel_signaling.data, "%Vsignaling%Z", &prefix);
    ngx_sprintf(rc->snapshot_key.data, "%Vroom_affinity:backends%Z", &prefix);

    ngx_str_set(&name, "room_affinity_redis");

    rc->shm_zone = ngx_shared_memory_add(cf, &name, RA_REDIS_ZONE_SIZE,
                                         &ngx_http_room_affinity_module);
    if (rc->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->shm_zone->init = ra_redis_init_zone;
    rc->shm_zone->data = rc;

    rmcf->redis = rc;

    return NGX_CONF_OK;
}


static char *
ra_redis_parse_address(ngx_conf_t *cf, ra_redis_conf_t *rc, ngx_str_t *value)
{
    u_char     *p, text[NGX_SOCKADDR_STRLEN];
    size_t      len;
    ngx_url_t   u;

    rc->address = *value;

    if (value->len > 5 && ngx_strncmp(value->data, "unix:", 5) == 0) {
        rc->unix_path.len = value->len - 5;
        rc->unix_path.data = ngx_pnalloc(cf->pool, rc->unix_path.len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(rc->unix_path.data, value->data + 5,
                       rc->unix_path.len);
        *p = '\0';

        return NGX_CONF_OK;
    }

    /* hiredis resolves with a blocking call: resolve here, once */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis address \"%V\"", u.err, value);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis address \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);

    rc->host.data = ngx_pnalloc(cf->pool, len + 1);
    if (rc->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    /* ngx_sock_ntop() puts IPv6 addresses without brackets when port is 0 */
    p = ngx_cpymem(rc->host.data, text, len);
    *p = '\0';
    rc->host.len = len;
    rc->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


static ngx_int_t
ra_redis_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ra_redis_conf_t  *orc = data;

    ngx_fd_t          fd;
    ra_redis_conf_t  *rc;

    rc = shm_zone->data;

    if (orc) {
        /* nginx -s reload: keep the instance id and the outbox */

        if (orc->sh->version != RA_REDIS_ZONE_VERSION) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "room_affinity_redis zone was made by another "
                          "version of the module: restart nginx");
            return NGX_ERROR;
        }

        rc->shpool = orc->shpool;
        rc->sh = orc->sh;
        return NGX_OK;
    }

    rc->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        rc->sh = rc->shpool->data;
        return NGX_OK;
    }

    rc->sh = ngx_slab_calloc(rc->shpool, sizeof(ra_redis_sh_t));
    if (rc->sh == NULL) {
        return NGX_ERROR;
    }

    rc->sh->share = ngx_slab_alloc(rc->shpool,
                                   RA_SHARE_SLOTS * sizeof(ra_share_t));
    if (rc->sh->share == NULL) {
        return NGX_ERROR;
    }

    rc->sh->version = RA_REDIS_ZONE_VERSION;

    /*
     * tells this instance's placements from the others': from the kernel,
     * as containers start their nginx as pid 1 in the same second
     */

    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE
        || ngx_read_fd(fd, &rc->sh->instance, sizeof(uint64_t))
           != (ssize_t) sizeof(uint64_t))
    {
        rc->sh->instance = ((uint64_t) ngx_random() << 33)
                           ^ ((uint64_t) ngx_random() << 2)
                           ^ (uint64_t) ngx_time();
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

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

    ra_redis_conf = rmcf->redis;
    ra_redis_log = cycle->log;
    ra_redis_owner = 0;
    ra_redis_exiting = 0;
    ra_redis_backoff = 0;
    ra_redis_next = 0;

    ra_redis_timer.handler = ra_redis_tick;
    ra_redis_timer.log = cycle->log;
    ra_redis_timer.data = ra_redis_conf;
    ra_redis_timer.cancelable = 1;

    ra_redis_share_timer.handler = ra_redis_share_tick;
    ra_redis_share_timer.log = cycle->log;
    ra_redis_share_timer.data = ra_redis_conf;
    ra_redis_share_timer.cancelable = 1;

    ngx_add_timer(&ra_redis_timer, 1);

    return NGX_OK;
}


void
ra_redis_exit_process(ngx_cycle_t *cycle)
{
    ra_redis_conf_t  *rc = ra_redis_conf;

    if (rc == NULL) {
        return;
    }

    ra_redis_exiting = 1;

    if (ra_redis_timer.timer_set) {
        ngx_del_timer(&ra_redis_timer);
    }

    if (ra_redis_share_timer.timer_set) {
        ngx_del_timer(&ra_redis_share_timer);
    }

    ra_redis_release(rc);

    ra_redis_conf = NULL;
}


static void
ra_redis_release(ra_redis_conf_t *rc)
{
    ra_redis_close(&ra_redis_sub);
    ra_redis_close(&ra_redis_cmd);

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (rc->sh->owner == ngx_pid) {
        rc->sh->owner = 0;
        rc->sh->connected = 0;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    ra_redis_owner = 0;
}


static void
ra_redis_tick(ngx_event_t *ev)
{
    ra_redis_conf_t  *rc = ev->data;

    ngx_msec_t  now, delay;

    if (ngx_exiting || ngx_quit || ngx_terminate || ra_redis_exiting) {
        /*
         * a worker shutting down gracefully may live on for its
         * WebSockets: hand the role over to the new workers now
         */
        ra_redis_release(rc);
        return;
    }

    now = ngx_current_msec;

    if (ra_redis_elect(rc, now)) {

        if ((ra_redis_sub.ac == NULL || ra_redis_cmd.ac == NULL)
            && (ngx_msec_int_t) (now - ra_redis_next) >= 0)
        {
            /* both links start afresh; a failure schedules the backoff */

            ra_redis_close(&ra_redis_sub);
            ra_redis_close(&ra_redis_cmd);

            if (ra_redis_open(&ra_redis_sub, ev->log) == NGX_OK) {
                (void) ra_redis_open(&ra_redis_cmd, ev->log);
            }
        }

    } else if (ra_redis_sub.ac || ra_redis_cmd.ac) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "room_affinity: another worker subscribes to redis");
        ra_redis_close(&ra_redis_sub);
        ra_redis_close(&ra_redis_cmd);
    }

    delay = RA_REDIS_TICK;

    if (ra_redis_owner && (ra_redis_sub.ac == NULL || ra_redis_cmd.ac == NULL)
        && (ngx_msec_int_t) (ra_redis_next - now) > 0
        && ra_redis_next - now < delay)
    {
        delay = ra_redis_next - now;
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
        take = 1;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (take) {
        ngx_log_error(NGX_LOG_NOTICE, ra_redis_log, 0,
                      "room_affinity: this worker subscribes to redis \"%V\"%s",
                      &rc->address, owner ? " (taken over)" : "");
        ra_redis_backoff = 0;
        ra_redis_next = now;
    }

    ra_redis_owner = (owner == ngx_pid || take);

    return ra_redis_owner;
}


static ngx_int_t
ra_redis_open(ra_redis_link_t *link, ngx_log_t *log)
{
    const char         *argv[5];
    ngx_uint_t          argc;
    ngx_connection_t   *c;
    redisAsyncContext  *ac;
    ra_redis_conf_t    *rc;

    rc = ra_redis_conf;

    if (rc->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rc->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) rc->host.data, (int) rc->port);
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

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ra_redis_failed(link, "connect", "no free nginx connection");
        return NGX_ERROR;
    }

    c->data = link;
    c->read->handler = ra_redis_read_handler;
    c->write->handler = ra_redis_write_handler;
    c->read->log = log;
    c->write->log = log;

    link->ac = ac;
    link->conn = c;
    link->connected = 0;
    link->subscribed = 0;

    ac->data = link;
    ac->ev.data = c;
    ac->ev.addRead = ra_redis_add_read;
    ac->ev.delRead = ra_redis_del_read;
    ac->ev.addWrite = ra_redis_add_write;
    ac->ev.delWrite = ra_redis_del_write;
    ac->ev.cleanup = ra_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ra_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ra_redis_disconnected);

    /* the commands are queued and written once connected */

    if (rc->password.len) {
        argv[0] = "AUTH";
        argv[1] = (const char *) rc->password.data;
        redisAsyncCommandArgv(ac, ra_redis_reply, (void *) "AUTH", 2, argv,
                              (size_t []) { 4, rc->password.len });
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

        if (rc->share) {
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
ra_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "room_affinity: cannot watch the redis socket");
        }
    }
}


static void
ra_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ra_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "room_affinity: cannot watch the redis socket");
        }
    }
}


static void
ra_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ra_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ra_redis_link_t  *link;

    /* hiredis closes the socket itself: only let go of the connection */

    ra_redis_del_read(c);
    ra_redis_del_write(c);

    /* an event of it may wait in the posted queue (accept_mutex on) */

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    link = c->data;
    link->conn = NULL;

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ra_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ra_redis_link_t  *link;

    link = c->data;

    if (link->ac) {
        redisAsyncHandleRead(link->ac);
    }
}


static void
ra_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ra_redis_link_t  *link;

    link = c->data;

    if (link->ac) {
        redisAsyncHandleWrite(link->ac);
    }
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

    ngx_log_error(NGX_LOG_NOTICE, ra_redis_log, 0,
                  "room_affinity: redis %s link connected to \"%V\"",
                  link->name, &ra_redis_conf->address);

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

    if (ra_redis_exiting || ra_redis_closing || ra_redis_conf == NULL) {
        return;
    }

    ra_redis_failed(link, "connection lost",
                    ac->err ? ac->errstr : "closed by the server");
}


static void
ra_redis_failed(ra_redis_link_t *link, const char *what, const char *err)
{
    ngx_msec_t  jitter;

    /* capped exponential backoff with jitter; the tick reconnects */

    if (ra_redis_backoff == 0) {
        ra_redis_backoff = RA_REDIS_BACKOFF_MIN;

    } else {
        ra_redis_backoff = ngx_min(ra_redis_backoff * 2,
                                   ra_redis_conf->backoff);
    }

    jitter = ngx_random() % (ra_redis_backoff / 2 + 1);
    ra_redis_next = ngx_current_msec + ra_redis_backoff / 2 + jitter;

    ngx_log_error(NGX_LOG_ERR, ra_redis_log, 0,
                  "room_affinity: redis \"%V\" %s link %s: %s, "
                  "retrying in %M ms", &ra_redis_conf->address, link->name,
                  what, err ? err : "unknown error",
                  ra_redis_backoff / 2 + jitter);

    ra_redis_set_error(what, err);

    /* both links go down together, so the snapshot follows a resubscribe */

    if (link == &ra_redis_sub) {
        ra_redis_close(&ra_redis_cmd);

    } else {
        ra_redis_close(&ra_redis_sub);
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

    ra_redis_closing = 1;
    redisAsyncFree(ac);
    ra_redis_closing = 0;
}


static void
ra_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ra_redis_log, 0,
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

    rc = ra_redis_conf;

    if (reply == NULL || rc == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ra_redis_reply(ac, r, (void *) "SUBSCRIBE");
        return;
    }

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

        if (++ra_redis_sub.subscribed == (rc->share ? 3 : 2)) {
            ngx_log_error(NGX_LOG_NOTICE, ra_redis_log, 0,
                          "room_affinity: subscribed to \"%V\" and \"%V\"",
                          &rc->channel_register, &rc->channel_signaling);

            ra_redis_backoff = 0;

            ngx_shmtx_lock(&rc->shpool->mutex);
            rc->sh->connects++;
            rc->sh->connected = 1;
            ngx_shmtx_unlock(&rc->shpool->mutex);

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

    if (channel.len == rc->channel_signaling.len
        && ngx_strncmp(channel.data, rc->channel_signaling.data, channel.len)
           == 0)
    {
        ra_redis_handle(RA_MSG_SIGNALING, &channel, payload->str,
                        payload->len, 0);

    } else if (channel.len == rc->channel_register.len
               && ngx_strncmp(channel.data, rc->channel_register.data,
                              channel.len) == 0)
    {
        ra_redis_handle(RA_MSG_REGISTER, &channel, payload->str,
                        payload->len, 0);

    } else if (rc->share
               && channel.len == rc->channel_rooms.len
               && ngx_strncmp(channel.data, rc->channel_rooms.data,
                              channel.len) == 0)
    {
        ra_redis_on_room(payload->str, payload->len);
    }
}


/*
 * Both links up and subscribed, whichever came last: the snapshot, and the
 * outbox of shared placements
 */

static void
ra_redis_ready(void)
{
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    if (ra_redis_sub.subscribed < (rc->share ? 3 : 2)
        || ra_redis_cmd.ac == NULL || !ra_redis_cmd.connected)
    {
        return;
    }

    ra_redis_request_snapshot();

    if (rc->share && !ra_redis_share_timer.timer_set) {
        ngx_add_timer(&ra_redis_share_timer, RA_SHARE_TICK);
    }
}


static void
ra_redis_request_snapshot(void)
{
    const char       *argv[2];
    size_t            argvlen[2];
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    /* after subscribing, so nothing published in between is lost */

    if (!rc->snapshot) {
        return;
    }

    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = (const char *) rc->snapshot_key.data;
    argvlen[1] = rc->snapshot_key.len;

    redisAsyncCommandArgv(ra_redis_cmd.ac, ra_redis_on_snapshot, NULL, 2,
                          argv, argvlen);
}


static void
ra_redis_on_snapshot(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;

    size_t             i;
    ngx_uint_t         applied;
    redisReply        *value;
    ra_redis_conf_t   *rc;

    rc = ra_redis_conf;

    if (reply == NULL || rc == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        ra_redis_reply(ac, r, (void *) "HGETALL");
        return;
    }

    applied = 0;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        value = reply->element[i + 1];

        if (value->type != REDIS_REPLY_STRING) {
            continue;
        }

        ra_redis_handle(RA_MSG_SIGNALING, &rc->snapshot_key, value->str,
                        value->len, 1);
        applied++;
    }

    ngx_log_error(NGX_LOG_NOTICE, ra_redis_log, 0,
                  "room_affinity: snapshot \"%V\" read, %ui backends",
                  &rc->snapshot_key, applied);

    ngx_shmtx_lock(&rc->shpool->mutex);
    rc->sh->snapshots++;
    ngx_shmtx_unlock(&rc->shpool->mutex);
}


static void
ra_redis_handle(ra_msg_type_e type, ngx_str_t *channel, const char *data,
    size_t len, ngx_uint_t snapshot)
{
    ra_msg_t          msg;
    ngx_uint_t        matched;
    const char       *detail;
    ra_msg_err_e      err;
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    err = ra_msg_parse(type, data, len, &msg, &detail);

    if (err != RA_MSG_OK) {
        ra_redis_reject(err, channel, detail, data, len);
        return;
    }

    matched = ra_redis_apply(&msg, type, snapshot);

    ngx_shmtx_lock(&rc->shpool->mutex);

    rc->sh->last_message = ngx_current_msec;

    if (matched) {
        rc->sh->applied++;

    } else {
        rc->sh->unknown++;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (!matched) {
        ra_redis_reject(RA_MSG_ERR_COUNT, channel,
                        "no upstream server matches the url",
                        msg.url, msg.url_len);
    }
}


static ngx_uint_t
ra_redis_apply(ra_msg_t *msg, ra_msg_type_e type, ngx_uint_t snapshot)
{
    u_char            hostport[RA_MSG_HOSTPORT_LEN];
    size_t            hlen;
    ngx_int_t         n;
    ngx_uint_t        i, k, matched, hit;
    ngx_msec_t        now;
    ngx_str_t        *url;
    ra_shctx_t       *sh;
    ra_backend_t     *be;
    ra_peer_map_t    *pm;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp, *rcf;
    ra_main_conf_t   *rmcf;

    n = ra_msg_url_hostport(msg->url, msg->url_len, (char *) hostport,
                            sizeof(hostport));
    hlen = (n < 0) ? 0 : (size_t) n;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;
    now = ngx_current_msec;
    matched = 0;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];

        if (ra_peer_map(rcf, ra_redis_log) != NGX_OK) {
            continue;
        }

        ctx = rcf->shm_zone->data;
        sh = ctx->sh;

        for (k = 0; k < rcf->nmap; k++) {
            pm = &rcf->map[k];
            hit = 0;

            /* an explicit room_affinity_url, else the address itself */

            url = ra_peer_conf_url(rcf, pm->peer);

            if (url) {
                hit = (url->len == msg->url_len
                       && ngx_strncmp(url->data, msg->url, msg->url_len) == 0);

            } else {
                hit = (hlen && ra_peer_is(pm->peer, hostport, hlen));
            }

            if (!hit) {
                continue;
            }

            matched = 1;

            ngx_shmtx_lock(&ctx->shpool->mutex);

            be = &sh->backends[pm->slot];

            if (!be->url_len || type == RA_MSG_REGISTER || snapshot) {
                ngx_memcpy(be->url, msg->url, msg->url_len);
                be->url_len = msg->url_len;
            }

            if (type == RA_MSG_REGISTER) {
                be->registered = 1;
                be->up_since = now ? now : 1;
                be->draining = msg->has_draining ? msg->draining : 0;

                if (msg->has_capacity) {
                    be->capacity = msg->capacity;
                }

            } else {
                be->registered = 1;

                /*
                 * a report without figures (draining only) keeps the last;
                 * a snapshot entry only fills in a backend nothing is known
                 * of: it is older than any report received, and is read
                 * again at every resubscription (each reload)
                 */

                if ((msg->has_connections || msg->has_cpu)
                    && !(snapshot && be->has_report))
                {
                    be->has_report = 1;
                    be->reported_at = now;
                    sh->pending_total -= be->pending;
                    be->pending = 0;

                    be->has_connections = msg->has_connections;
                    be->connections = msg->connections;
                    be->has_cpu = msg->has_cpu;
                    be->cpu = msg->cpu;
                }

                if (msg->has_capacity) {
                    be->capacity = msg->capacity;
                }

                be->draining = msg->has_draining ? msg->draining : 0;
            }

            /* the workers' placement views are out of date */
            sh->pl_gen++;

            ngx_shmtx_unlock(&ctx->shpool->mutex);

            ngx_log_debug7(NGX_LOG_DEBUG_HTTP, ra_redis_log, 0,
                           "room_affinity: applied %s%s for \"%V\" "
                           "connections:%uD cpu:%uD capacity:%uD "
                           "draining:%ui",
                           type == RA_MSG_REGISTER ? "register" : "signaling",
                           snapshot ? " (snapshot)" : "", &pm->peer->name,
                           msg->connections, msg->cpu, msg->capacity,
                           (ngx_uint_t) msg->draining);
        }
    }

    return matched;
}


static void
ra_redis_reject(ra_msg_err_e err, ngx_str_t *channel, const char *detail,
    const char *data, size_t len)
{
    u_char            sample[64 * 4], *p, *last;
    size_t            i;
    ngx_msec_t        now;
    ngx_uint_t        suppressed;
    const char       *reason;
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    if (err != RA_MSG_ERR_COUNT) {
        ngx_shmtx_lock(&rc->shpool->mutex);
        rc->sh->rejected[err]++;
        ngx_shmtx_unlock(&rc->shpool->mutex);
    }

    /* at most one log line per reason and interval */

    now = ngx_current_msec;

    if (ra_redis_logged[err]
        && now - ra_redis_logged[err] < RA_REDIS_LOG_INTERVAL)
    {
        ra_redis_suppressed[err]++;
        return;
    }

    suppressed = ra_redis_suppressed[err];
    ra_redis_suppressed[err] = 0;
    ra_redis_logged[err] = now ? now : 1;

    /* a printable sample of the message */

    p = sample;
    last = sample + sizeof(sample) - 4;

    for (i = 0; i < len && i < 64 && p < last; i++) {
        if ((u_char) data[i] >= 0x20 && (u_char) data[i] < 0x7f
            && data[i] != '\\')
        {
            *p++ = (u_char) data[i];

        } else {
            p = ngx_sprintf(p, "\\x%02xd", (u_char) data[i]);
        }
    }

    reason = (err == RA_MSG_ERR_COUNT) ? "unknown_backend"
                                       : ra_msg_err_name(err);

    ngx_log_error(NGX_LOG_WARN, ra_redis_log, 0,
                  "room_affinity: ignored redis message on \"%V\": %s (%s)"
                  ", %uz bytes \"%*s%s\"%s%ui similar since last log",
                  channel, reason, detail, len, (size_t) (p - sample), sample,
                  len > 64 ? "..." : "", ", ", suppressed);
}


static void
ra_redis_set_error(const char *what, const char *err)
{
    u_char           *p;
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    if (rc == NULL) {
        return;
    }

    ngx_shmtx_lock(&rc->shpool->mutex);

    p = ngx_snprintf(rc->sh->last_error, RA_REDIS_ERR_LEN, "%s: %s", what,
                     err ? err : "unknown error");
    rc->sh->last_error_len = p - rc->sh->last_error;
    rc->sh->failures++;

    if (!ra_redis_sub.connected) {
        rc->sh->connected = 0;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);
}


/*
 * Sharing placements between nginx instances.  A worker that places or
 * moves a room queues it in the instance's zone; the subscriber publishes
 * the queue every few milliseconds on <prefix>room_affinity:rooms, and
 * records what the other instances publish.  A message is
 *
 *     "1 <instance, 16 hex digits> <n|m> <upstream> <backend>\n<room>"
 *
 * (n: a new room, m: a moved room).  When two instances placed the same
 * new room at the same moment, the placement of the instance with the
 * smaller id wins everywhere; a move always wins.
 */

void
ra_redis_share(ra_srv_conf_t *rcf, ngx_str_t *room, ngx_str_t *backend,
    ngx_uint_t moved)
{
    ra_share_t       *e;
    ra_redis_sh_t    *sh;
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    if (rc == NULL || !rc->share) {
        return;
    }

    sh = rc->sh;

    if (!sh->connected) {
        /*
         * no subscriber to publish it: by the time one is, the placement
         * is old news that could override a newer one elsewhere
         */
        return;
    }

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (sh->share_tail - sh->share_head >= RA_SHARE_SLOTS) {
        sh->shared_dropped++;
        ngx_shmtx_unlock(&rc->shpool->mutex);
        return;
    }

    e = &sh->share[sh->share_tail % RA_SHARE_SLOTS];

    e->upstream = (uint16_t) rcf->index;
    e->moved = (uint16_t) moved;
    e->room_len = (uint16_t) room->len;
    e->backend_len = (uint16_t) ngx_min(backend->len, RA_BACKEND_NAME_LEN);
    ngx_memcpy(e->room, room->data, room->len);
    ngx_memcpy(e->backend, backend->data, e->backend_len);

    sh->share_tail++;

    ngx_shmtx_unlock(&rc->shpool->mutex);
}


static void
ra_redis_share_tick(ngx_event_t *ev)
{
    ra_redis_conf_t  *rc = ev->data;

    u_char           *p, *msg;
    size_t            len[3];
    ngx_uint_t        n;
    ra_share_t        e;
    ngx_str_t        *host;
    const char       *argv[3];
    ra_srv_conf_t   **rcfp;
    ra_main_conf_t   *rmcf;

    if (ngx_exiting || ra_redis_exiting || !ra_redis_owner
        || ra_redis_cmd.ac == NULL || !ra_redis_cmd.connected)
    {
        /* the next subscription restarts it */
        return;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;

    for (n = 0; n < 64; n++) {

        ngx_shmtx_lock(&rc->shpool->mutex);

        if (rc->sh->share_head == rc->sh->share_tail) {
            ngx_shmtx_unlock(&rc->shpool->mutex);
            break;
        }

        e = rc->sh->share[rc->sh->share_head % RA_SHARE_SLOTS];
        rc->sh->share_head++;
        rc->sh->shared_out++;

        ngx_shmtx_unlock(&rc->shpool->mutex);

        if (e.upstream >= rmcf->upstreams.nelts) {
            continue;
        }

        host = &rcfp[e.upstream]->upstream->host;

        msg = ngx_alloc(sizeof("1 0123456789abcdef n  \n") + host->len
                        + e.backend_len + e.room_len, ev->log);
        if (msg == NULL) {
            continue;
        }

        p = ngx_sprintf(msg, "1 %016uxL %c %V %*s\n",
                        rc->sh->instance, e.moved ? 'm' : 'n', host,
                        (size_t) e.backend_len, e.backend);
        p = ngx_cpymem(p, e.room, e.room_len);

        argv[0] = "PUBLISH";
        len[0] = 7;
        argv[1] = (const char *) rc->channel_rooms.data;
        len[1] = rc->channel_rooms.len;
        argv[2] = (const char *) msg;
        len[2] = p - msg;

        /* hiredis copies the command into its output buffer */
        redisAsyncCommandArgv(ra_redis_cmd.ac, NULL, NULL, 3, argv, len);

        ngx_free(msg);
    }

    ngx_add_timer(ev, RA_SHARE_TICK);
}


static void
ra_redis_on_room(const char *data, size_t len)
{
    u_char           *p, *last, *nl, *f[5];
    size_t            flen[5];
    uint32_t          hash;
    uint64_t          from;
    ngx_int_t         slot;
    ngx_uint_t        i, k, moved, adopt;
    ngx_str_t         room;
    ra_room_t        *r;
    ra_shctx_t       *sh;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp, *rcf;
    ra_main_conf_t   *rmcf;
    ra_redis_conf_t  *rc;

    rc = ra_redis_conf;

    p = (u_char *) data;
    last = p + len;

    nl = ngx_strlchr(p, last, '\n');
    if (nl == NULL) {
        goto invalid;
    }

    /* five space-separated fields before the newline */

    for (k = 0; k < 5; k++) {
        f[k] = p;

        while (p < nl && *p != ' ') {
            p++;
        }

        flen[k] = p - f[k];

        if (flen[k] == 0 || (k < 4 && p == nl)) {
            goto invalid;
        }

        p++;
    }

    if (flen[0] != 1 || f[0][0] != '1' || flen[1] != 16 || flen[2] != 1) {
        goto invalid;
    }

    from = 0;

    for (i = 0; i < 16; i++) {
        k = ngx_hextoi(&f[1][i], 1);
        if (k == (ngx_uint_t) NGX_ERROR) {
            goto invalid;
        }

        from = (from << 4) | k;
    }

    if (from == rc->sh->instance) {
        return;
    }

    moved = (f[2][0] == 'm');

    room.data = nl + 1;
    room.len = last - room.data;

    if (room.len == 0 || room.len > RA_ROOM_MAX_LEN) {
        goto invalid;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];

        if (rcf->upstream->host.len == flen[3]
            && ngx_strncmp(rcf->upstream->host.data, f[3], flen[3]) == 0)
        {
            goto found;
        }
    }

    return;

found:

    if (ra_peer_map(rcf, ra_redis_log) != NGX_OK) {
        return;
    }

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    hash = (uint32_t) ra_hash(room.data, room.len);
    adopt = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    slot = ra_backend_find(sh, f[4], flen[4]);

    if (slot == NGX_DECLINED) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    r = ra_room_lookup(sh, hash, room.data, room.len);

    if (r == NULL) {
        r = ra_room_create(ctx, hash, room.data, room.len, ngx_current_msec,
                           ra_redis_log);
        if (r != NULL) {
            ra_room_set_backend(sh, r, slot);
            adopt = 1;
        }

    } else if (r->backend != (ngx_uint_t) slot
               && (moved
                   || (from < rc->sh->instance
                       && r->live == 0
                       && (int32_t) ((uint32_t) ngx_current_msec - r->created)
                          < RA_SHARE_RACE)))
    {
        /*
         * a move always wins; two placements of a new room made at once
         * converge on the smaller instance's, but only while the room is
         * that new and empty: a late one never splits a room in use
         */
        ra_room_move(sh, r, slot);
        adopt = 1;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ra_redis_log, 0,
                   "room_affinity: %s room \"%V\" on \"%*s\" from "
                   "another instance", adopt ? "recorded" : "kept",
                   &room, flen[4], f[4]);

    ngx_shmtx_lock(&rc->shpool->mutex);
    rc->sh->shared_in++;
    rc->sh->shared_adopted += adopt;
    ngx_shmtx_unlock(&rc->shpool->mutex);

    return;

invalid:

    ra_redis_reject(RA_MSG_ERR_JSON, &rc->channel_rooms,
                    "not a room placement", data, len);
}
