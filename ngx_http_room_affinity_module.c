/*
 * ngx_http_room_affinity_module: every request and WebSocket of a room
 * reaches the room's backend; new rooms go to the least loaded backend.
 *
 * This file holds the module's definition: its directives (parsed in
 * src/ra_conf.c), its configuration and its hooks; src/ra_module.h maps
 * the files that do the work.
 */

#include "src/ra_module.h"
#include "src/ra_conf.h"
#include "src/ra_conf_redis.h"
#include "src/ra_redis.h"
#include "src/ra_body.h"
#include "src/ra_directory.h"
#include "src/ra_dir_tick.h"
#include "src/ra_bench.h"
#include "src/ra_workers.h"


static ngx_int_t ra_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ra_postconfiguration(ngx_conf_t *cf);
static void *ra_create_main_conf(ngx_conf_t *cf);
static void *ra_create_srv_conf(ngx_conf_t *cf);
static void *ra_create_loc_conf(ngx_conf_t *cf);
static char *ra_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ra_init_process(ngx_cycle_t *cycle);
static void ra_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ra_commands[] = {

    { ngx_string("room_affinity"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ra_conf_room_affinity,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_url"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE2,
      ra_conf_url,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ra_conf_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("room_affinity_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ra_conf_status,
      0,
      0,
      NULL },

    { ngx_string("room_affinity_join"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ra_conf_join,
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
      &ra_conf_field_post },

    { ngx_string("room_affinity_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ra_loc_conf_t, body),
      &ra_conf_body_modes },

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
    ra_init_process,                       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ra_exit_process,                       /* exit process */
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
    /* first: a phase's handlers run in the reverse order (ra_directory.c) */
    if (ra_directory_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

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
     *     rcf->peers.map = NULL;
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

    return ra_conf_join_merge(cf, prev, conf);
}



/*
 * the zones' worker tables (ra_zone.c), then the Redis links, then the
 * directory's link and its tick (which reads the directory's state)
 */

static ngx_int_t
ra_init_process(ngx_cycle_t *cycle)
{
    if (ra_workers_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ra_redis_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ra_directory_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ra_dir_tick_init_process(cycle);
}


static void
ra_exit_process(ngx_cycle_t *cycle)
{
    ra_dir_tick_exit_process(cycle);
    ra_directory_exit_process(cycle);
    ra_redis_exit_process(cycle);
    ra_workers_exit_process(cycle);
}
