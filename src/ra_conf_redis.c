/*
 * room_affinity_redis: where Redis is, how to log in, the channel and key
 * names, and whether placements are shared.  Its shared zone holds the
 * state of the instance's links and the outbox of shared placements.
 */

#include "ra_conf_redis.h"
#include "ra_redis.h"


static char *ra_conf_redis_address(ngx_conf_t *cf, ra_redis_conf_t *rc,
    ngx_str_t *value);
static char *ra_conf_redis_sentinels(ngx_conf_t *cf, ra_redis_conf_t *rc,
    ngx_str_t *value);
static char *ra_conf_redis_sentinel_check(ra_redis_conf_t *rc);
static char *ra_conf_redis_key(ngx_conf_t *cf, ra_redis_conf_t *rc,
    ngx_str_t *value, size_t skip, ngx_uint_t n);
static ngx_int_t ra_conf_redis_time(ngx_conf_t *cf, ngx_str_t *value,
    const char *name, ngx_msec_t *ms);


char *
ra_conf_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_main_conf_t  *rmcf = conf;

    char              *err;
    ngx_str_t         *value, s, prefix, name;
    ngx_int_t          n;
    ngx_uint_t         i, has_next, first;
    ngx_msec_t         window;
    ra_redis_conf_t   *rc;

    if (rmcf->redis) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ra_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    rc->snapshot = 1;
    rc->share_on = 1;
    rc->backoff = RA_REDIS_BACKOFF_MAX;
    rc->connect_timeout = RA_REDIS_CONNECT_TIMEOUT;
    rc->share.rate = RA_SHARE_RATE;
    window = 300000;
    has_next = 0;
    rc->command_timeout = RA_REDIS_COMMAND_TIMEOUT;
    rc->ping_interval = RA_REDIS_PING_INTERVAL;
    rc->snapshot_max = RA_REDIS_SNAPSHOT_MAX;
    rc->directory_wait = RA_DIR_WAIT_DEFAULT;
    ngx_str_null(&prefix);

    /* with sentinel= there is no address: the Sentinels name the master */

    first = 2;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ra_has_prefix(&value[i], "sentinel=")) {
            first = 1;
        }
    }

    for (i = first; i < cf->args->nelts; i++) {

        if (ra_has_prefix(&value[i], "sentinel=")) {
            if (ra_conf_redis_sentinels(cf, rc, &value[i]) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "master=")) {
            /* NUL-terminated: a word of the configuration is */
            rc->master_name.data = value[i].data + sizeof("master=") - 1;
            rc->master_name.len = value[i].len - (sizeof("master=") - 1);

            if (rc->master_name.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "sentinel_user=")) {
            rc->sentinel_user.data = value[i].data
                                     + sizeof("sentinel_user=") - 1;
            rc->sentinel_user.len = value[i].len
                                    - (sizeof("sentinel_user=") - 1);

            if (rc->sentinel_user.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "sentinel_password=")) {
            rc->sentinel_password.data = value[i].data
                                         + sizeof("sentinel_password=") - 1;
            rc->sentinel_password.len = value[i].len
                                        - (sizeof("sentinel_password=") - 1);

            if (rc->sentinel_password.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "password=")) {
            rc->password.data = value[i].data + sizeof("password=") - 1;
            rc->password.len = value[i].len - (sizeof("password=") - 1);

            if (rc->password.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "user=")) {
            rc->user.data = value[i].data + sizeof("user=") - 1;
            rc->user.len = value[i].len - (sizeof("user=") - 1);

            if (rc->user.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "key=")) {
            if (ra_conf_redis_key(cf, rc, &value[i], sizeof("key=") - 1, 0)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "key_next=")) {
            if (ra_conf_redis_key(cf, rc, &value[i], sizeof("key_next=") - 1,
                                  1)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            has_next = 1;
            continue;
        }

        if (ra_has_prefix(&value[i], "key_window=")) {
            s.data = value[i].data + sizeof("key_window=") - 1;
            s.len = value[i].len - (sizeof("key_window=") - 1);

            window = ngx_parse_time(&s, 0);
            if (window == (ngx_msec_t) NGX_ERROR || window >= RA_TIME_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "share_rate=")) {
            n = ngx_atoi(value[i].data + sizeof("share_rate=") - 1,
                         value[i].len - (sizeof("share_rate=") - 1));
            if (n == NGX_ERROR || n == 0 || n > 1000000) {
                goto invalid;
            }

            rc->share.rate = n;
            continue;
        }

        if (ra_has_prefix(&value[i], "db=")) {
            n = ngx_atoi(value[i].data + sizeof("db=") - 1,
                         value[i].len - (sizeof("db=") - 1));
            if (n == NGX_ERROR) {
                goto invalid;
            }

            rc->db = n;
            continue;
        }

        if (ra_has_prefix(&value[i], "prefix=")) {
            prefix.data = value[i].data + sizeof("prefix=") - 1;
            prefix.len = value[i].len - (sizeof("prefix=") - 1);
            continue;
        }

        if (ra_has_prefix(&value[i], "backoff=")) {
            s.data = value[i].data + sizeof("backoff=") - 1;
            s.len = value[i].len - (sizeof("backoff=") - 1);

            rc->backoff = ngx_parse_time(&s, 0);
            if (rc->backoff == (ngx_msec_t) NGX_ERROR
                || rc->backoff < RA_REDIS_BACKOFF_MIN)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\", "
                                   "it must be at least %dms", &value[i],
                                   RA_REDIS_BACKOFF_MIN);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "connect_timeout=")) {
            s.data = value[i].data + sizeof("connect_timeout=") - 1;
            s.len = value[i].len - (sizeof("connect_timeout=") - 1);

            rc->connect_timeout = ngx_parse_time(&s, 0);
            if (rc->connect_timeout == (ngx_msec_t) NGX_ERROR
                || rc->connect_timeout == 0
                || rc->connect_timeout >= RA_TIME_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        switch (ra_conf_redis_time(cf, &value[i], "command_timeout=",
                                   &rc->command_timeout))
        {
        case NGX_OK:
            continue;
        case NGX_ERROR:
            return NGX_CONF_ERROR;
        }

        switch (ra_conf_redis_time(cf, &value[i], "ping_interval=",
                                   &rc->ping_interval))
        {
        case NGX_OK:
            continue;
        case NGX_ERROR:
            return NGX_CONF_ERROR;
        }

        if (ra_has_prefix(&value[i], "snapshot_max=")) {
            n = ngx_atoi(value[i].data + sizeof("snapshot_max=") - 1,
                         value[i].len - (sizeof("snapshot_max=") - 1));
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            rc->snapshot_max = n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "resolve") == 0) {
            rc->resolve = 1;
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

        if (ngx_strcmp(value[i].data, "directory=on") == 0) {
            rc->directory = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "directory=off") == 0) {
            rc->directory = 0;
            continue;
        }

        if (ra_has_prefix(&value[i], "directory_wait=")) {
            s.data = value[i].data + sizeof("directory_wait=") - 1;
            s.len = value[i].len - (sizeof("directory_wait=") - 1);

            rc->directory_wait = ngx_parse_time(&s, 0);
            if (rc->directory_wait == (ngx_msec_t) NGX_ERROR
                || rc->directory_wait == 0
                || rc->directory_wait > 10000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\", it must be "
                                   "between 1ms and 10s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "share=off") == 0) {
            rc->share_on = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "share=on") == 0) {
            rc->share_on = 1;
            continue;
        }

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rc->user.len && rc->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"user=\" needs \"password=\"");
        return NGX_CONF_ERROR;
    }

    if (rc->sign) {
        if (has_next && rc->sign->keys[0].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"key_next=\" needs \"key=\"");
            return NGX_CONF_ERROR;
        }

        /* whole seconds: the signed timestamps are */
        rc->sign->window = (window + 999) / 1000;
        rc->share.sign = rc->sign;
    }

    err = ra_conf_redis_sentinel_check(rc);

    if (err) {
        /* nginx names the directive: "room_affinity_redis" directive ... */
        return err;
    }

    /* after the parameters: "resolve" changes how it is read */

    if (rc->sentinels) {
        /* what the log and the status call the links */
        rc->address = rc->master_name;

    } else if (ra_conf_redis_address(cf, rc, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (rc->directory && rc->resolve) {
        /* every worker dials it, and hiredis would resolve it blocking */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"directory=on\" needs an IP address or a "
                           "unix socket, not \"resolve\"");
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

    /* the directory's keys: "<prefix>room_affinity:dir:<upstream>:<room>" */
    rc->directory_prefix.len = prefix.len + sizeof("room_affinity:dir:") - 1;
    rc->directory_prefix.data = ngx_pnalloc(cf->pool,
                                            rc->directory_prefix.len);
    if (rc->directory_prefix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(rc->directory_prefix.data, "%Vroom_affinity:dir:", &prefix);

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
    rmcf->share = rc->share_on ? &rc->share : NULL;

    return NGX_CONF_OK;
}


/* key= (n 0) or key_next= (n 1): the file of a signing key */

static char *
ra_conf_redis_key(ngx_conf_t *cf, ra_redis_conf_t *rc, ngx_str_t *value,
    size_t skip, ngx_uint_t n)
{
    ngx_str_t        path;
    const char      *err;
    ngx_file_info_t  fi;

    path.data = value->data + skip;
    path.len = value->len - skip;

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    /* NUL-terminated either way: a word of the configuration is */
    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (rc->sign == NULL) {
        rc->sign = ngx_pcalloc(cf->pool, sizeof(ra_sign_conf_t));
        if (rc->sign == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (rc->sign->keys[n].len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate parameter \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    if (ra_sign_key_read((const char *) path.data, &rc->sign->keys[n], &err)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, errno, "%s \"%V\"", err,
                           &path);
        return NGX_CONF_ERROR;
    }

    rc->sign->nkeys = rc->sign->keys[1].len ? 2 : 1;

    /* whoever can read the key can forge any message */

    if (ngx_file_info(path.data, &fi) != NGX_FILE_ERROR
        && (ngx_file_access(&fi) & 0077))
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "the key file \"%V\" is readable by other "
                           "users than its owner", &path);
    }

    return NGX_CONF_OK;
}


/* name=TIME: NGX_OK, NGX_DECLINED (another parameter) or NGX_ERROR */

static ngx_int_t
ra_conf_redis_time(ngx_conf_t *cf, ngx_str_t *value, const char *name,
    ngx_msec_t *ms)
{
    size_t     len;
    ngx_str_t  s;

    len = ngx_strlen(name);

    if (value->len < len || ngx_strncmp(value->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    s.data = value->data + len;
    s.len = value->len - len;

    *ms = ngx_parse_time(&s, 0);

    if (*ms == (ngx_msec_t) NGX_ERROR || *ms < RA_REDIS_TICK
        || *ms >= RA_TIME_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time in \"%V\", it must be at least "
                           "%dms", value, RA_REDIS_TICK);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ra_conf_redis_address(ngx_conf_t *cf, ra_redis_conf_t *rc, ngx_str_t *value)
{
    u_char     *p, text[NGX_SOCKADDR_STRLEN];
    size_t      len;
    ngx_url_t   u;

    rc->address = *value;

    if (value->len > sizeof("unix:") - 1 && ra_has_prefix(value, "unix:")) {
        rc->unix_path.len = value->len - (sizeof("unix:") - 1);
        rc->unix_path.data = ngx_pnalloc(cf->pool, rc->unix_path.len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(rc->unix_path.data, value->data + sizeof("unix:") - 1,
                       rc->unix_path.len);
        *p = '\0';

        rc->resolve = 0;
        return NGX_CONF_OK;
    }

    /*
     * hiredis resolves with a blocking call: resolve here, once, or with
     * "resolve" by nginx's resolver at run time (an address needs none)
     */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = RA_REDIS_PORT;

    if (rc->resolve) {
        u.no_resolve = 1;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            if (u.err) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s in redis address \"%V\"", u.err,
                                   value);
            }

            return NGX_CONF_ERROR;
        }

        if (u.host.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid redis address \"%V\"", value);
            return NGX_CONF_ERROR;
        }

        if (u.naddrs == 0) {
            /* a name: resolved by each subscriber before it connects */

            rc->host.data = ngx_pnalloc(cf->pool, u.host.len + 1);
            if (rc->host.data == NULL) {
                return NGX_CONF_ERROR;
            }

            p = ngx_cpymem(rc->host.data, u.host.data, u.host.len);
            *p = '\0';
            rc->host.len = u.host.len;
            rc->port = u.port ? u.port : RA_REDIS_PORT;
            rc->clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                         ngx_http_core_module);
            return NGX_CONF_OK;
        }

        rc->resolve = 0;
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = *value;
        u.default_port = RA_REDIS_PORT;
    }

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


/* sentinel=ADDRESS[,ADDRESS...]: resolved here, once, as the address is */

static char *
ra_conf_redis_sentinels(ngx_conf_t *cf, ra_redis_conf_t *rc, ngx_str_t *value)
{
    u_char               *p, *last, *comma, text[NGX_SOCKADDR_STRLEN];
    size_t                len;
    ngx_url_t             u;
    ra_redis_sentinel_t  *sn;

    if (rc->sentinels == NULL) {
        rc->sentinels = ngx_array_create(cf->pool, 3,
                                         sizeof(ra_redis_sentinel_t));
        if (rc->sentinels == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    p = value->data + sizeof("sentinel=") - 1;
    last = value->data + value->len;

    do {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = RA_REDIS_SENTINEL_PORT;

        if (u.url.len == 0
            || (u.url.len > sizeof("unix:") - 1
                && ngx_strncmp(p, "unix:", sizeof("unix:") - 1) == 0)
            || ngx_parse_url(cf->pool, &u) != NGX_OK
            || u.naddrs == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid sentinel address \"%V\"%s%s in "
                               "\"%V\"", &u.url, u.err ? ": " : "",
                               u.err ? u.err : "", value);
            return NGX_CONF_ERROR;
        }

        if (rc->sentinels->nelts == RA_REDIS_SENTINELS_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "more than %d sentinels in \"%V\"",
                               RA_REDIS_SENTINELS_MAX, value);
            return NGX_CONF_ERROR;
        }

        sn = ngx_array_push(rc->sentinels);
        if (sn == NULL) {
            return NGX_CONF_ERROR;
        }

        /* without brackets: hiredis takes an IPv6 address bare */
        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                            NGX_SOCKADDR_STRLEN, 0);

        sn->host = ngx_pnalloc(cf->pool, len + 1);
        if (sn->host == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(sn->host, text, len);
        sn->host[len] = '\0';
        sn->port = ngx_inet_get_port(u.addrs[0].sockaddr);

        sn->name.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
        if (sn->name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        sn->name.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                     sn->name.data, NGX_SOCKADDR_STRLEN, 1);

        p = comma + 1;

    } while (comma < last);

    return NGX_CONF_OK;
}


/* the parameters of Sentinel go together: NULL, or what is wrong */

static char *
ra_conf_redis_sentinel_check(ra_redis_conf_t *rc)
{
    if (rc->sentinels == NULL) {
        if (rc->master_name.len) {
            return "\"master=\" needs \"sentinel=\"";
        }

        if (rc->sentinel_user.len || rc->sentinel_password.len) {
            return "\"sentinel_password=\" needs \"sentinel=\"";
        }

        return NULL;
    }

    if (rc->master_name.len == 0) {
        return "\"sentinel=\" needs \"master=\"";
    }

    if (rc->sentinel_user.len && rc->sentinel_password.len == 0) {
        return "\"sentinel_user=\" needs \"sentinel_password=\"";
    }

    if (rc->resolve) {
        /* the sentinels are resolved at load, the master is an address */
        return "\"resolve\" cannot be used with \"sentinel=\"";
    }

    return NULL;
}
