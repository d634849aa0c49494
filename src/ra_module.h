/*
 * ngx_http_room_affinity_module: the configuration every file shares (the
 * upstream's, the main and the location configuration), the module
 * itself, and the rules that hold across files.
 *
 * Files and what each owns (docs/design.md has the whole map):
 *
 *   ra_placement.c   the choice of a backend for a new room (plain C)
 *   ra_message.c     the Redis messages' formats (plain C, untrusted input)
 *   ra_zone.c        the shared zone: room table and backend table
 *   ra_workers.c     the workers of a zone and what each counts (leases)
 *   ra_peers.c       a worker's map of the upstream's servers to slots
 *   ra_report.c      what a backend's report means and does
 *   ra_fleet.c       registered backends: admitted, left, spare peers
 *   ra_pick.c        placement input from the zone, and the kept view
 *   ra_route.c       the room's backend: found, placed or moved
 *   ra_balancer.c    the nginx upstream balancer hooks
 *   ra_share.c       placements shared with other nginx instances
 *   ra_counts.c      the connections each instance holds, shared
 *   ra_sign.c        signed Redis messages: HMAC-SHA256 (plain C)
 *   ra_hiredis.c     hiredis on nginx's event loop (the adapter)
 *   ra_redis.c       the Redis role: its zone, the election, the tick
 *   ra_redis_link.c  the two Redis links: connection, backoff, outbox
 *   ra_redis_watch.c whether a link's peer is alive, stalled
 *   ra_redis_resolve.c  a "resolve" host's address, before a reconnection
 *   ra_redis_sentinel.c where a link dials; the master the Sentinels name
 *   ra_redis_in.c    what arrives from Redis, to whom it goes
 *   ra_directory.c   the room directory: a room's record in Redis
 *   ra_dir_link.c    a worker's own Redis link for the directory
 *   ra_dir_tick.c    the directory's repair and renewal, from a worker's tick
 *   ra_body.c        the room of a request's JSON body or argument
 *   ra_reply.c       the module's own answers (JSON, errors)
 *   ra_join.c        the join API
 *   ra_status.c      the status endpoint; ra_status_json.c and
 *                    ra_status_prom.c, its two output formats
 *   ra_conf.c        the directives; ra_conf_redis.c, room_affinity_redis
 *   ra_bench.c       the microbenchmark handler (-DRA_BENCH=1 only)
 *
 * Calls go one way: a file never calls into a file that calls it.
 *
 * Locks, in the only order they are taken (never the reverse, and never
 * a lock held across I/O):
 *
 *   1. the upstream's peers lock (ngx_http_upstream_rr_peers_wlock(), with
 *      an upstream "zone"), held by the balancer and the join around a
 *      routing decision;
 *   2. the room_affinity zone's mutex (the room and backend tables);
 *   3. the room_affinity_redis zone's mutex (the link's state, the outbox
 *      of shared placements).
 *
 * A function that takes a lock says so; one that expects it held says
 * "the caller holds".
 *
 * Symbols: nginx loads modules with RTLD_GLOBAL, so every function shared
 * between our files is declared between the visibility pragmas of its
 * header: hidden, it cannot collide with another module's.  Only
 * ngx_http_room_affinity_module is exported.
 */

#ifndef RA_MODULE_H
#define RA_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ra_placement.h"
#include "ra_message.h"


typedef struct ra_srv_conf_s    ra_srv_conf_t;

#include "ra_zone.h"
#include "ra_peers.h"


extern ngx_module_t  ngx_http_room_affinity_module;


#pragma GCC visibility push(hidden)


/* defaults of the room_affinity directive */
#define RA_TTL_DEFAULT         600000   /* ms an idle room is kept */
#define RA_STALE_DEFAULT       30000    /* ms a report stays fresh */
#define RA_REPORT_LAG_DEFAULT  500      /* ms a report may be old */
#define RA_TIME_MAX            0x7fffffff  /* ms: 32-bit differences */

#define RA_METRIC_CONNECTIONS  0
#define RA_METRIC_CPU          1

/* defaults of the location directives */
#define RA_FIELD_DEFAULT       "roomName"
#define RA_JOIN_MAX_BODY       4096
#define RA_BODY_MAX            (1024 * 1024)
#define RA_JOIN_RETRY_AFTER    5        /* seconds */

#define RA_BODY_OFF            0
#define RA_BODY_ON             1
#define RA_BODY_STRICT         2


/* a string literal, copied or compared without a hand-counted length */
#define ra_cpystr(p, s)        ngx_cpymem(p, s, sizeof(s) - 1)
#define ra_has_prefix(v, s)                                                   \
    ((v)->len >= sizeof(s) - 1 && ngx_strncmp((v)->data, s, sizeof(s) - 1) == 0)
#define ra_arg(r, name, value)                                                \
    ngx_http_arg(r, (u_char *) name, sizeof(name) - 1, value)


typedef struct ra_view_s        ra_view_t;         /* ra_pick.c */
typedef struct ra_redis_conf_s  ra_redis_conf_t;   /* ra_redis.c */
typedef struct ra_share_s       ra_share_t;        /* ra_share.c */
typedef struct ra_fleet_conf_s  ra_fleet_conf_t;   /* ra_fleet.c */


/* a room_affinity upstream */
struct ra_srv_conf_s {
    ngx_http_complex_value_t      key;
    ngx_shm_zone_t               *shm_zone;
    ngx_msec_t                    ttl;
    ngx_msec_t                    stale;
    ngx_msec_t                    report_lag;
    ngx_uint_t                    lifetime;    /* ra_decay_fit_t's fixed */
    ra_pl_conf_t                  placement;
    ngx_uint_t                    metric;      /* RA_METRIC_* */

    ngx_http_upstream_srv_conf_t *upstream;
    ngx_uint_t                    index;       /* in ra_main_conf_t */
    ngx_str_t                     zone_name;
    ngx_array_t                  *urls;        /* ra_url_t */
    ra_fleet_conf_t              *fleet;       /* NULL: no register= */

    ngx_flag_t                    directory;   /* its rooms in Redis */

    /* per worker, built on first use */
    ra_peers_t                    peers;
    ra_view_t                    *view;
};


typedef struct {
    ngx_array_t                   upstreams;   /* ra_srv_conf_t * */
    ra_redis_conf_t              *redis;
    ra_share_t                   *share;       /* NULL: share=off */
} ra_main_conf_t;


/* room_affinity_url: the public url of a server that differs from it */
typedef struct {
    ngx_str_t                     server;      /* "127.0.0.1:3001" */
    ngx_str_t                     url;         /* "wss://chat1.example" */
} ra_url_t;


typedef struct {
    /* room_affinity_join */
    ngx_str_t                     join_name;
    ra_srv_conf_t                *join;
    time_t                        retry_after;
    u_char                       *join_file;
    ngx_uint_t                    join_line;

    ngx_str_t                     field;       /* room_affinity_field */
    size_t                        join_max_body;
    ngx_uint_t                    body;        /* room_affinity_body */
    size_t                        body_max;    /* ..._body_max_size */

#if (RA_BENCH)
    ra_srv_conf_t                *bench;       /* room_affinity_bench */
#endif
} ra_loc_conf_t;


/*
 * The room_affinity upstream of that name, or NULL; case-insensitive, as
 * nginx compares upstream names
 */

static ngx_inline ra_srv_conf_t *
ra_upstream_find(ra_main_conf_t *rmcf, u_char *name, size_t len)
{
    ngx_uint_t       i;
    ra_srv_conf_t  **rcfp;

    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        if (rcfp[i]->upstream->host.len == len
            && ngx_strncasecmp(rcfp[i]->upstream->host.data, name, len) == 0)
        {
            return rcfp[i];
        }
    }

    return NULL;
}


#pragma GCC visibility pop

#endif /* RA_MODULE_H */
