/*
 * Shared declarations of ngx_http_room_affinity_module: configuration,
 * the shared zone (room table and backend table) and the functions each
 * source file offers the others.
 */

#ifndef RA_MODULE_H
#define RA_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ra_placement.h"
#include "ra_message.h"


#define RA_ROOM_MAX_LEN        512      /* longer keys are digested */
#define RA_BACKEND_NAME_LEN    128
#define RA_FULL_LOG_INTERVAL   10000    /* ms between "zone is full" logs */
#define RA_EXPIRE_BATCH        4        /* idle rooms expired per lookup */
#define RA_EVICT_MAX           16       /* idle rooms evicted for one room */
#define RA_MAP_RETRY           1000     /* ms between tries of a server map */


/*
 * one upstream server (one resolved address) in the shared zone; what a
 * placement reads comes first, together
 */
typedef struct {
    ngx_uint_t          live;         /* upstream connections, all workers */
    ngx_uint_t          rooms;        /* rooms pinned here */
    ngx_uint_t          pending;      /* rooms placed since the report */

    uint32_t            connections;  /* reported */
    uint32_t            cpu;          /* reported, percent * 100 */
    uint32_t            capacity;     /* reported, 0: none */

    unsigned            has_report:1;
    unsigned            has_cpu:1;
    unsigned            has_connections:1;
    unsigned            registered:1;
    unsigned            draining:1;

    ngx_msec_t          reported_at;  /* ngx_current_msec of the report */
    ngx_msec_t          up_since;     /* for slow start; 0: long ago */
    ngx_uint_t          placed;       /* rooms placed here, ever */

    size_t              name_len;
    size_t              url_len;
    u_char              name[RA_BACKEND_NAME_LEN];  /* "127.0.0.1:3001" */
    u_char              url[RA_MSG_URL_MAX + 1];     /* public url */
} ra_backend_t;


typedef struct ra_room_s  ra_room_t;

struct ra_room_s {
    ra_room_t          *next;         /* hash chain */
    ngx_queue_t         queue;        /* idle LRU; empty while live */
    uint32_t            last;         /* ms when it became idle, and */
    uint32_t            created;      /* ms when created: both wrap after
                                         49 days, compared by difference */
    uint32_t            hash;         /* ra_hash() of the name, low bits */
    uint32_t            live;
    uint16_t            peak;         /* most live connections seen */
    uint16_t            backend;      /* slot in the backend table */
    uint16_t            len;
    u_char              data[1];
};


#define RA_ZONE_VERSION  5            /* layout of ra_shctx_t, ra_room_t */


typedef struct {
    ngx_uint_t          version;
    ra_room_t         **buckets;
    ngx_uint_t          mask;         /* buckets - 1, a power of two */
    ngx_queue_t         idle;         /* rooms without live connections,
                                         most recently used first */
    ngx_uint_t          rooms;
    ngx_uint_t          evicted;
    ngx_uint_t          expired;
    ngx_uint_t          moved;
    ngx_uint_t          unrecorded;
    ngx_msec_t          full_logged;

    ngx_uint_t          nbackends;
    ngx_uint_t          backends_cap;
    ra_backend_t       *backends;

    /*
     * for the workers' placement views (ra_balancer.c): pl_gen changes
     * with anything a view depends on (reports, draining, backends), the
     * totals let a view keep its total load current without a pass
     */
    ngx_uint_t          pl_gen;
    ngx_uint_t          live_total;   /* sum of backends[].live */
    ngx_uint_t          pending_total;

    ngx_uint_t          placed_viewed;   /* placements by a kept view */
    ngx_uint_t          placed_full;     /* by a pass over the servers */
} ra_shctx_t;


/* a worker's view of one peer: which backend slot it is */
typedef struct {
    ngx_http_upstream_rr_peer_t  *peer;
    ngx_uint_t                    slot;
    unsigned                      backup:1;
} ra_peer_map_t;


typedef struct ra_srv_conf_s  ra_srv_conf_t;

struct ra_srv_conf_s {
    ngx_http_complex_value_t      key;
    ngx_shm_zone_t               *shm_zone;
    ngx_msec_t                    ttl;
    ngx_msec_t                    stale;
    ra_pl_conf_t                  placement;
    ngx_uint_t                    metric;      /* RA_METRIC_* */

    ngx_http_upstream_srv_conf_t *upstream;
    ngx_uint_t                    index;       /* in ra_main_conf_t */
    ngx_str_t                     zone_name;
    ngx_array_t                  *urls;        /* ra_url_t */

    /* per worker, built on first use */
    ra_peer_map_t                *map;
    ngx_uint_t                    nmap;
    ngx_uint_t                    nprimary;
    ra_peer_map_t                *map_mem;
    ngx_msec_t                    map_failed;  /* 0, or when it last failed */
    ngx_uint_t                   *slot_map;    /* slot: map index, or nmap */
    ngx_uint_t                    nslots;
    ra_pl_backend_t              *pl;          /* placement input, by map */
    uint64_t                     *pl_acc;      /* running sums, by map */

    /*
     * the placement view of the primary servers, reused for new rooms
     * until the zone's pl_gen changes, pl_until passes, or this worker
     * sees a server fail; pl_num is its total load when pl_total was the
     * zone's total (live or pending, as the mode counts) less that of the
     * pl_nout slots the view leaves out (backups, unavailable servers,
     * servers of another configuration)
     */
    ra_pl_view_t                  pl_view;
    ngx_uint_t                    pl_gen;
    ngx_msec_t                    pl_until;
    uint64_t                      pl_num;
    uint64_t                      pl_total;
    ngx_uint_t                   *pl_out;
    ngx_uint_t                    pl_nout;
    ngx_uint_t                    pl_out_cap;
    unsigned                      pl_valid:1;
};


#define RA_METRIC_CONNECTIONS  0
#define RA_METRIC_CPU          1


typedef struct {
    ngx_slab_pool_t              *shpool;
    ra_shctx_t                   *sh;
    ra_srv_conf_t                *conf;
} ra_zone_ctx_t;


typedef struct ra_redis_conf_s  ra_redis_conf_t;


typedef struct {
    ngx_array_t                   upstreams;   /* ra_srv_conf_t * */
    ra_redis_conf_t              *redis;
} ra_main_conf_t;


/* room_affinity_url: the public url of a server that differs from it */
typedef struct {
    ngx_str_t                     server;      /* "127.0.0.1:3001" */
    ngx_str_t                     url;         /* "wss://chat1.example" */
} ra_url_t;


extern ngx_module_t  ngx_http_room_affinity_module;


/* ra_zone.c */
ngx_int_t ra_zone_init(ngx_shm_zone_t *shm_zone, void *data);
ra_room_t *ra_room_lookup(ra_shctx_t *sh, uint32_t hash, u_char *name,
    size_t len);
ra_room_t *ra_room_create(ra_zone_ctx_t *ctx, uint32_t hash, u_char *name,
    size_t len, ngx_msec_t now, ngx_log_t *log);
void ra_room_expire(ra_zone_ctx_t *ctx, ngx_msec_t now, ngx_uint_t n,
    ngx_log_t *log);
void ra_room_acquire(ra_shctx_t *sh, ra_room_t *room);
void ra_room_touch(ra_shctx_t *sh, ra_room_t *room, ngx_msec_t now);
void ra_room_release(ra_shctx_t *sh, ra_room_t *room, ngx_msec_t now);
void ra_room_set_backend(ra_shctx_t *sh, ra_room_t *room, ngx_uint_t slot);
void ra_room_move(ra_shctx_t *sh, ra_room_t *room, ngx_uint_t slot);
ngx_int_t ra_backend_slot(ra_zone_ctx_t *ctx, ngx_str_t *name);
ngx_int_t ra_backend_find(ra_shctx_t *sh, u_char *name, size_t len);

/* ra_balancer.c */
ngx_int_t ra_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us);
ngx_int_t ra_peer_map(ra_srv_conf_t *rcf, ngx_log_t *log);
ngx_str_t *ra_peer_conf_url(ra_srv_conf_t *rcf,
    ngx_http_upstream_rr_peer_t *peer);
ngx_uint_t ra_peer_is(ngx_http_upstream_rr_peer_t *peer, u_char *name,
    size_t len);

/* ra_status.c */
char *ra_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ra_bench.c, built with -DRA_BENCH=1 only */
#if (RA_BENCH)
char *ra_bench(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
#endif

#endif /* RA_MODULE_H */
