/*
 * ngx_http_room_affinity_module: every request and WebSocket of a room
 * reaches the room's backend; new rooms go to the least loaded backend.
 *
 * This file holds the directives, the configuration and the module hooks;
 * the work is done in src/.
 */

#include "src/ra_module.h"
#include "src/ra_redis.h"
#include "src/ra_body.h"


static ngx_int_t ra_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ra_postconfiguration(ngx_conf_t *cf);
static void *ra_create_main_conf(ngx_conf_t *cf);
static void *ra_create_srv_conf(ngx_conf_t *cf);
static void *ra_create_loc_conf(ngx_conf_t *cf);
static char *ra_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ra_room_affinity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ra_parse_zone(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_str_t *value);
static ngx_int_t ra_parse_ms(ngx_conf_t *cf, ngx_str_t *value, size_t skip,
    ngx_msec_t min, ngx_msec_t *ms);
static char *ra_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


static ngx_command_t  ra_commands[] = {

    { ngx_string("room_affinity"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ra_room_affinity,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_url"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE2,
      ra_url,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ra_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ra_status,
      0,
      0,
      NULL },

    { ngx_string("room_affinity_join"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ra_join,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_join_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ra_loc_conf_t, join_max_body),
      NULL },

    { ngx_string("room_affinity_body_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ra_loc_conf_t, body_max),
      NULL },

    { ngx_string("room_affinity_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ra_loc_conf_t, field),
      &ra_field_post },

    { ngx_string("room_affinity_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ra_loc_conf_t, body),
      &ra_body_modes },

#if (RA_BENCH)

    { ngx_string("room_affinity_bench"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ra_bench,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

#endif

      ngx_null_command
};


static ngx_http_module_t  ra_module_ctx = {
    ra_preconfiguration,                   /* preconfiguration */
    ra_postconfiguration,                  /* postconfiguration */

    ra_create_main_conf,                   /* create main configuration */
    NULL,                                  /* init main configuration */

    ra_create_srv_conf,                    /* create server configuration */
    NULL,                                  /* merge server configuration */

    ra_create_loc_conf,                    /* create location configuration */
    ra_merge_loc_conf                      /* merge location configuration */
};


ngx_module_t  ngx_http_room_affinity_module = {
    NGX_MODULE_V1,
    &ra_module_ctx,                        /* module context */
    ra_commands,                           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ra_redis_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ra_redis_exit_process,                 /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ra_preconfiguration(ngx_conf_t *cf)
{
    return ra_body_add_variables(cf);
}


static ngx_int_t
ra_postconfiguration(ngx_conf_t *cf)
{
    return ra_body_init(cf);
}


static void *
ra_create_main_conf(ngx_conf_t *cf)
{
    ra_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ra_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->upstreams, cf->pool, 4, sizeof(ra_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ra_create_srv_conf(ngx_conf_t *cf)
{
    ra_srv_conf_t  *rcf;

    rcf = ngx_pcalloc(cf->pool, sizeof(ra_srv_conf_t));
    if (rcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rcf->shm_zone = NULL;
     *     rcf->map = NULL;
     *     rcf->metric = RA_METRIC_CONNECTIONS;
     */

    return rcf;
}


static void *
ra_create_loc_conf(ngx_conf_t *cf)
{
    ra_loc_conf_t  *rlcf;

    rlcf = ngx_pcalloc(cf->pool, sizeof(ra_loc_conf_t));
    if (rlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rlcf->join_name = { 0, NULL };
     *     rlcf->join = NULL;
     *     rlcf->field = { 0, NULL };
     */

    rlcf->join_max_body = NGX_CONF_UNSET_SIZE;
    rlcf->body = NGX_CONF_UNSET_UINT;
    rlcf->body_max = NGX_CONF_UNSET_SIZE;

    return rlcf;
}


static char *
ra_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ra_loc_conf_t  *prev = parent;
    ra_loc_conf_t  *conf = child;

    ngx_conf_merge_str_value(conf->field, prev->field, RA_FIELD_DEFAULT);
    ngx_conf_merge_size_value(conf->join_max_body, prev->join_max_body,
                              RA_JOIN_MAX_BODY);
    ngx_conf_merge_uint_value(conf->body, prev->body, RA_BODY_OFF);
    ngx_conf_merge_size_value(conf->body_max, prev->body_max, RA_BODY_MAX);

    return ra_join_merge(cf, prev, conf);
}


static char *
ra_room_affinity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_srv_conf_t  *rcf = conf;

    ngx_int_t                          n;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_msec_t                         ms;
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

    rcf->ttl = 600000;
    rcf->stale = 30000;
    rcf->placement.choices = 2;
    rcf->placement.balance_factor = 125;
    rcf->placement.slow_start_ms = 30000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (ra_parse_zone(cf, rcf, &value[i]) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            if (ra_parse_ms(cf, &value[i], 4, 1, &rcf->ttl) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "stale=", 6) == 0) {
            if (ra_parse_ms(cf, &value[i], 6, 1, &rcf->stale) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "slow_start=", 11) == 0) {
            if (ra_parse_ms(cf, &value[i], 11, 0, &ms) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            rcf->placement.slow_start_ms = (uint32_t) ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "metric=", 7) == 0) {
            if (ngx_strcmp(value[i].data + 7, "connections") == 0) {
                rcf->metric = RA_METRIC_CONNECTIONS;

            } else if (ngx_strcmp(value[i].data + 7, "cpu") == 0) {
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

        if (ngx_strncmp(value[i].data, "choices=", 8) == 0) {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);
            if (n == NGX_ERROR || n > 64) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid number in \"%V\", "
                                   "use 0 (all) to 64", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->placement.choices = (unsigned) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "balance_factor=", 15) == 0) {
            n = ngx_atoi(value[i].data + 15, value[i].len - 15);
            if (n == NGX_ERROR || (n != 0 && (n < 101 || n > 10000))) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid number in \"%V\", "
                                   "use 0 (off) or 101 to 10000", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->placement.balance_factor = (unsigned) n;
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

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

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
ra_parse_zone(ngx_conf_t *cf, ra_srv_conf_t *rcf, ngx_str_t *value)
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

    name.data = value->data + 5;

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

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, it needs at least %uz",
                           &name, 8 * ngx_pagesize);
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
                           &name, &ctx->conf->upstream->host);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ra_zone_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->conf = rcf;
    rcf->zone_name = name;

    rcf->shm_zone->init = ra_zone_init;
    rcf->shm_zone->data = ctx;

    return NGX_CONF_OK;
}


/*
 * "name=time" from "skip" on: at least "min" ms, and below 2^31 ms (24d),
 * since rooms and reports are timed with 32-bit differences
 */

static ngx_int_t
ra_parse_ms(ngx_conf_t *cf, ngx_str_t *value, size_t skip, ngx_msec_t min,
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

    if (t >= 0x7fffffff) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is too long, the most is 24d", value);
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
}


static char *
ra_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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
