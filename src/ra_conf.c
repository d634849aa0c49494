/*
 * The directives of ngx_http_room_affinity_module: their parameters,
 * defaults (ra_module.h, ra_placement.h, ra_redis.h) and checks.  A bad
 * directive fails "nginx -t" with a message naming the parameter.
 */

#include "ra_conf.h"
#include "ra_report.h"
#include "ra_fleet.h"
#include "ra_balancer.h"
#include "ra_join.h"
#include "ra_status.h"


static char *ra_conf_zone(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *value);
static ngx_int_t ra_conf_lifetime(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_str_t *value);
static ngx_int_t ra_conf_parse_ms(ngx_conf_t *cf, ngx_str_t *value,
    size_t skip, ngx_msec_t min, ngx_msec_t *ms);
static char *ra_conf_field(ngx_conf_t *cf, void *post, void *data);


ngx_conf_enum_t  ra_conf_body_modes[] = {
    { ngx_string("off"), RA_BODY_OFF },
    { ngx_string("on"), RA_BODY_ON },
    { ngx_string("strict"), RA_BODY_STRICT },
    { ngx_null_string, 0 }
};


ngx_conf_post_t  ra_conf_field_post = { ra_conf_field };


char *
ra_conf_room_affinity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_srv_conf_t  *rcf = conf;

    ngx_int_t                          n;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_msec_t                         ms;
    ra_zone_ctx_t                     *ctx;
    ra_srv_conf_t                    **prcf;
    ra_main_conf_t                    *rmcf;
    ngx_http_upstream_srv_conf_t      *uscf;
    ngx_http_compile_complex_value_t   ccv;

    if (rcf->upstream) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &rcf->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    rcf->ttl = RA_TTL_DEFAULT;
    rcf->stale = RA_STALE_DEFAULT;
    rcf->report_lag = RA_REPORT_LAG_DEFAULT;
    rcf->placement.choices = RA_PL_CHOICES_DEFAULT;
    rcf->placement.balance_factor = RA_PL_BALANCE_FACTOR_DEFAULT;
    rcf->placement.slow_start_ms = RA_PL_SLOW_START_MS_DEFAULT;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ra_has_prefix(&value[i], "zone=")) {
            if (ra_conf_zone(cf, rcf, uscf, &value[i]) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "ttl=")) {
            if (ra_conf_parse_ms(cf, &value[i], sizeof("ttl=") - 1, 1,
                                 &rcf->ttl)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "stale=")) {
            if (ra_conf_parse_ms(cf, &value[i], sizeof("stale=") - 1, 1,
                                 &rcf->stale)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "report_lag=")) {
            if (ra_conf_parse_ms(cf, &value[i], sizeof("report_lag=") - 1, 0,
                                 &rcf->report_lag)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* the samples of the loads go back that far (ra_report.c) */

            if (rcf->report_lag > RA_REPORT_LAG_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" is too long, the most is %dms",
                                   &value[i], RA_REPORT_LAG_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "lifetime=")) {
            if (ra_conf_lifetime(cf, rcf, &value[i]) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "slow_start=")) {
            if (ra_conf_parse_ms(cf, &value[i], sizeof("slow_start=") - 1, 0,
                                 &ms)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            rcf->placement.slow_start_ms = (uint32_t) ms;
            continue;
        }

        if (ra_has_prefix(&value[i], "metric=")) {
            if (ngx_strcmp(value[i].data + sizeof("metric=") - 1,
                           "connections") == 0)
            {
                rcf->metric = RA_METRIC_CONNECTIONS;

            } else if (ngx_strcmp(value[i].data + sizeof("metric=") - 1,
                                  "cpu") == 0)
            {
                rcf->metric = RA_METRIC_CPU;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid metric in \"%V\", "
                                   "use \"connections\" or \"cpu\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ra_has_prefix(&value[i], "choices=")) {
            n = ngx_atoi(value[i].data + sizeof("choices=") - 1,
                         value[i].len - (sizeof("choices=") - 1));

            /* more choices than placement draws would silently be "all" */

            if (n == NGX_ERROR || n > RA_PL_MAX_CHOICES) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid number in \"%V\", "
                                   "use 0 (all) to %d", &value[i],
                                   RA_PL_MAX_CHOICES);
                return NGX_CONF_ERROR;
            }

            rcf->placement.choices = (unsigned) n;
            continue;
        }

        if (ra_has_prefix(&value[i], "balance_factor=")) {
            n = ngx_atoi(value[i].data + sizeof("balance_factor=") - 1,
                         value[i].len - (sizeof("balance_factor=") - 1));
            if (n == NGX_ERROR || (n != 0 && (n < 101 || n > 10000))) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid number in \"%V\", "
                                   "use 0 (off) or 101 to 10000", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->placement.balance_factor = (unsigned) n;
            continue;
        }

        if (ra_has_prefix(&value[i], "register")) {
            /* register=, register_max=, register_expire= (ra_fleet.c) */
            if (ra_fleet_conf_param(cf, rcf, &value[i]) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rcf->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    ctx = rcf->shm_zone->data;
    ctx->ttl = rcf->ttl;
    ctx->lifetime = rcf->lifetime;

    /* the spare peers of registered backends */

    if (ra_fleet_conf_done(cf, rcf, uscf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    /*
     * not NGX_HTTP_UPSTREAM_MODIFY: the workers' peer maps (ra_peers.c)
     * keep pointers to the peers, which "server ... resolve" would change
     * under them; nginx then refuses "resolve" in this upstream
     */

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    uscf->peer.init_upstream = ra_init_upstream;

    rcf->upstream = uscf;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_room_affinity_module);

    rcf->index = rmcf->upstreams.nelts;

    prcf = ngx_array_push(&rmcf->upstreams);
    if (prcf == NULL) {
        return NGX_CONF_ERROR;
    }

    *prcf = rcf;

    return NGX_CONF_OK;
}


static char *
ra_conf_zone(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *uscf, ngx_str_t *value)
{
    u_char         *p;
    ssize_t         size;
    ngx_str_t       name, s;
    ra_zone_ctx_t  *ctx;

    if (rcf->shm_zone) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    name.data = value->data + sizeof("zone=") - 1;

    p = (u_char *) ngx_strchr(name.data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size in \"%V\", "
                           "use zone=name:size", value);
        return NGX_CONF_ERROR;
    }

    name.len = p - name.data;

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone name in \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size in \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (RA_ZONE_MIN_PAGES * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, it needs at least %uz",
                           &name, RA_ZONE_MIN_PAGES * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    rcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                          &ngx_http_room_affinity_module);
    if (rcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rcf->shm_zone->data) {
        ctx = rcf->shm_zone->data;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used by upstream \"%V\"",
                           &name, &ctx->upstream->host);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ra_zone_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->upstream = uscf;
    rcf->zone_name = name;

    rcf->shm_zone->init = ra_zone_init;
    rcf->shm_zone->data = ctx;

    return NGX_CONF_OK;
}


/*
 * "lifetime=auto|off|time": how long a connection nginx does not see
 * lasts (ra_decay.h); a time is taken to the nearest of the values the
 * zone keeps sums for, 5s to 320s in powers of two
 */

static ngx_int_t
ra_conf_lifetime(ngx_conf_t *cf, ra_srv_conf_t *rcf, ngx_str_t *value)
{
    u_char      *v;
    ngx_msec_t   ms;

    v = value->data + sizeof("lifetime=") - 1;

    if (ngx_strcmp(v, "auto") == 0) {
        rcf->lifetime = 0;
        return NGX_OK;
    }

    if (ngx_strcmp(v, "off") == 0) {
        rcf->lifetime = 1 + RA_DECAY_NONE;
        return NGX_OK;
    }

    if (ra_conf_parse_ms(cf, value, sizeof("lifetime=") - 1, 1, &ms)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rcf->lifetime = 1 + ra_decay_index(ms);

    return NGX_OK;
}


/*
 * "name=time" from "skip" on: at least "min" ms, and below 2^31 ms (24d),
 * since rooms and reports are timed with 32-bit differences
 */

static ngx_int_t
ra_conf_parse_ms(ngx_conf_t *cf, ngx_str_t *value, size_t skip, ngx_msec_t min,
    ngx_msec_t *ms)
{
    ngx_str_t   s;
    ngx_msec_t  t;

    s.data = value->data + skip;
    s.len = value->len - skip;

    t = ngx_parse_time(&s, 0);

    if (t == (ngx_msec_t) NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time in \"%V\"", value);
        return NGX_ERROR;
    }

    if (t < min) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time in \"%V\", it must be more than 0",
                           value);
        return NGX_ERROR;
    }

    if (t >= RA_TIME_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is too long, the most is 24d", value);
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
}


char *
ra_conf_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_srv_conf_t  *rcf = conf;

    char        buf[RA_MSG_HOSTPORT_LEN];
    ra_url_t   *url;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (value[2].len > RA_MSG_URL_MAX
        || ra_msg_url_hostport((char *) value[2].data, value[2].len, buf,
                               sizeof(buf)) < 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid url \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (rcf->urls == NULL) {
        rcf->urls = ngx_array_create(cf->pool, 4, sizeof(ra_url_t));
        if (rcf->urls == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    url = ngx_array_push(rcf->urls);
    if (url == NULL) {
        return NGX_CONF_ERROR;
    }

    url->server = value[1];
    url->url = value[2];

    return NGX_CONF_OK;
}



char *
ra_conf_join(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_loc_conf_t  *rlcf = conf;

    time_t                     t;
    ngx_str_t                 *value, s;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->join_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* the upstream may be defined further on: ra_join_merge() finds it */

    rlcf->join_name = value[1];
    rlcf->retry_after = RA_JOIN_RETRY_AFTER;
    rlcf->join_file = cf->conf_file->file.name.data;
    rlcf->join_line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ra_has_prefix(&value[i], "retry_after=")) {
            s.data = value[i].data + sizeof("retry_after=") - 1;
            s.len = value[i].len - (sizeof("retry_after=") - 1);

            t = ngx_parse_time(&s, 1);
            if (t == (time_t) NGX_ERROR) {
                goto invalid;
            }

            rlcf->retry_after = t;
            continue;
        }

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "conflicts with another content handler in the location "
               "(proxy_pass, room_affinity_status, ...)";
    }

    clcf->handler = ra_join_handler;

    return NGX_CONF_OK;
}


/*
 * Called when the locations are merged, after the whole http block is
 * parsed: every upstream is known by then.
 */

char *
ra_conf_join_merge(ngx_conf_t *cf, ra_loc_conf_t *prev, ra_loc_conf_t *conf)
{
    ngx_uint_t                      i;
    ra_main_conf_t                 *rmcf;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    if (conf->join_name.data == NULL) {
        /* what limit_except blocks, whose handler is the parent's, see */
        conf->join_name = prev->join_name;
        conf->join = prev->join;
        conf->retry_after = prev->retry_after;
        conf->join_file = prev->join_file;
        conf->join_line = prev->join_line;
        return NGX_CONF_OK;
    }

    if (conf->join) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != ra_join_handler) {
        /* a content handler set after the directive took its place */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"room_affinity_join\" conflicts with another "
                      "content handler in the location (proxy_pass, ...) "
                      "in %s:%ui", conf->join_file, conf->join_line);
        return NGX_CONF_ERROR;
    }

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_room_affinity_module);

    conf->join = ra_upstream_find(rmcf, conf->join_name.data,
                                  conf->join_name.len);
    if (conf->join) {
        return NGX_CONF_OK;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if ((uscfp[i]->flags & NGX_HTTP_UPSTREAM_CREATE)
            && uscfp[i]->host.len == conf->join_name.len
            && ngx_strncasecmp(uscfp[i]->host.data, conf->join_name.data,
                               conf->join_name.len) == 0)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\" in \"room_affinity_join\" has no "
                          "\"room_affinity\" directive in %s:%ui",
                          &conf->join_name, conf->join_file,
                          conf->join_line);
            return NGX_CONF_ERROR;
        }
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "no upstream \"%V\" for \"room_affinity_join\" in %s:%ui",
                  &conf->join_name, conf->join_file, conf->join_line);

    return NGX_CONF_ERROR;
}



char *
ra_conf_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "conflicts with another content handler in the location "
               "(proxy_pass, room_affinity_join, ...)";
    }

    clcf->handler = ra_status_handler;

    return NGX_CONF_OK;
}



static char *
ra_conf_field(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *field = data;

    if (field->len == 0) {
        return "must not be empty";
    }

    return NGX_CONF_OK;
}

