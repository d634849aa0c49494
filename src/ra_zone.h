/*
 * The shared zone of one room_affinity upstream: the room table and the
 * backend table, shared by every worker and kept across nginx -s reload.
 */

#ifndef RA_ZONE_H
#define RA_ZONE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ra_message.h"
#include "ra_decay.h"


#pragma GCC visibility push(hidden)


#define RA_ROOM_MAX_LEN        512      /* longer keys are digested */
#define RA_BACKEND_NAME_LEN    128
#define RA_FULL_LOG_INTERVAL   10000    /* ms between "zone is full" logs */
#define RA_EXPIRE_BATCH        4        /* idle rooms expired per lookup */
#define RA_EVICT_MAX           16       /* idle rooms evicted for one room */
#define RA_ZONE_MIN_PAGES      8        /* the smallest zone, in pages */
#define RA_REMOTE_MAX          8        /* other instances counted */
#define RA_HIST_LEN            32       /* samples of a backend's load */
#define RA_SLOT_SCAN           1024     /* idle rooms looked at, and */
#define RA_SLOT_EVICT          256      /* evicted at most, for one slot */
#define RA_WORKERS_MAX         64       /* workers accounted, all cycles */
#define RA_WORKER_CHECK        2000     /* ms between checks for dead ones */
#define RA_LEASE_SPARE         64       /* freed leases a worker keeps */


/* why a registration was refused (ra_fleet.c), counted in the zone */
typedef enum {
    RA_FLEET_ERR_URL = 0,     /* scheme, no port, a path */
    RA_FLEET_ERR_NOT_ALLOWED, /* address or port outside register= */
    RA_FLEET_ERR_NO_RESOLVER, /* a name, and no resolver */
    RA_FLEET_ERR_UNRESOLVED,  /* a name that did not resolve */
    RA_FLEET_ERR_FULL,        /* register_max backends registered */
    RA_FLEET_ERR_COUNT
} ra_fleet_err_e;


/*
 * one upstream server (one resolved address) in the shared zone; what a
 * placement reads comes first, together.  The report fields are written
 * by ra_report.c only; the counts by ra_zone.c and the balancer.
 */
typedef struct {
    ngx_uint_t          live;         /* upstream connections, all workers */
    ngx_uint_t          rooms;        /* rooms pinned here */
    ngx_uint_t          pending;      /* rooms placed since the report */

    /*
     * the connection estimate (ra_report.c): the report, plus the
     * connections every instance opened less those it closed since the
     * report was taken ("seen": what they held then), plus the joins
     * answered since, whose clients connect to the backend directly
     */
    ngx_uint_t          remote_live;  /* other instances' connections */
    ngx_uint_t          joins;        /* join answers since the report */
    ngx_uint_t          remote_joins; /* other instances' join answers */
    ngx_uint_t          seen;

    uint32_t            connections;  /* reported */
    uint32_t            cpu;          /* reported, percent * 100 */
    uint32_t            capacity;     /* reported, 0: none */

    unsigned            has_report:1;
    unsigned            has_cpu:1;
    unsigned            has_connections:1;
    unsigned            registered:1;
    unsigned            draining:1;
    unsigned            dynamic:1;    /* a registered backend, not a
                                         server line (ra_fleet.c) */
    unsigned            left:1;       /* it left the fleet: no worker
                                         gives it new connections */
    unsigned            out:1;        /* registered, its reports stale:
                                         no new room */

    ngx_msec_t          reported_at;  /* ngx_current_msec of the report */
    ngx_msec_t          up_since;     /* for slow start; 0: long ago */
    ngx_uint_t          placed;       /* rooms placed here, ever */
    ngx_uint_t          gen;          /* the newest configuration that
                                         mapped it (ra_shctx_t gen) */

    uint32_t            hist[RA_HIST_LEN];     /* live + remote_live */
    uint32_t            remote[RA_REMOTE_MAX]; /* by instance index */
    uint32_t            remote_j[RA_REMOTE_MAX];
    uint32_t            published;    /* live last sent to the others */
    uint32_t            published_joins;

    /*
     * the join flow's connections, as they leave unseen (ra_decay.h):
     * allocated at the backend's first join (ra_report_joined()), so that
     * a zone of the proxy flow keeps its 8-page minimum
     */
    ra_decay_t         *decay;

    size_t              name_len;
    size_t              url_len;
    u_char              name[RA_BACKEND_NAME_LEN];  /* "127.0.0.1:3001" */
    u_char              url[RA_MSG_URL_MAX + 1];     /* public url */

    /* a registered backend's address, and when it joined (ra_fleet.c) */
    ngx_msec_t          joined_at;
    socklen_t           socklen;
    union {                           /* no unix socket: 28 bytes */
        struct sockaddr       sockaddr;
        struct sockaddr_in    sockaddr_in;
#if (NGX_HAVE_INET6)
        struct sockaddr_in6   sockaddr_in6;
#endif
    } addr;
} ra_backend_t;


/* the registered backends of a zone, and why urls were refused */
typedef struct {
    ngx_uint_t          gen;          /* changes when one joins or leaves:
                                         the workers fill their spare
                                         peers again (ra_peers.c) */
    ngx_uint_t          active;       /* registered, not left */
    ngx_uint_t          joined;
    ngx_uint_t          left;
    ngx_uint_t          rejected[RA_FLEET_ERR_COUNT];
} ra_fleet_sh_t;


typedef struct ra_room_s  ra_room_t;

/* ra_room_t dir: what the room directory (ra_directory.c) knows of it */
#define RA_DIR_NONE            0      /* nothing: the directory is off */
#define RA_DIR_CONFIRMED       1      /* the record's backend and epoch */
#define RA_DIR_UNCONFIRMED     2      /* placed here, Redis did not say */

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
    uint16_t            dir;          /* RA_DIR_* (ra_directory.c) */
    uint32_t            epoch;        /* of the directory's record */
    uint32_t            confirmed;    /* ms when the directory said so */
    u_char              data[1];
};


/*
 * one upstream connection counted by a worker: what it holds, so that
 * the counts of a worker that died can be given back (ra_workers.c)
 */
typedef struct {
    ngx_queue_t         queue;        /* in its worker's list */
    ra_room_t          *room;         /* NULL: placed without recording */
    ngx_uint_t          slot;
} ra_lease_t;


/* a worker process using the zone, of this or an older configuration */
typedef struct {
    ngx_pid_t           pid;          /* 0: a free entry */
    ngx_uint_t          gen;          /* its configuration */
    ngx_queue_t         leases;       /* its live connections */
    ngx_queue_t         spare;        /* leases kept for reuse, */
    ngx_uint_t          nspare;       /* RA_LEASE_SPARE at most */
} ra_worker_t;


#define RA_ZONE_VERSION  10            /* layout of ra_shctx_t, ra_room_t,
                                         ra_backend_t, ra_lease_t */


/* the bounds of the directory's round-trip histogram, us; the last: +Inf */
#define RA_DIR_RTT_BUCKETS     9
#define RA_DIR_RTT_BOUNDS      { 100, 250, 500, 1000, 2500, 5000, 10000,     \
                                 50000, 0 }


/*
 * the room directory's figures of an upstream (ra_directory.c), and the
 * state its workers share: the reconciliation's and renewal's cursors
 * (ra_dir_tick.c)
 */
typedef struct {
    ngx_uint_t          calls;        /* script calls sent */
    ngx_uint_t          hits;         /* the record existed */
    ngx_uint_t          misses;       /* none: this instance's recorded */
    ngx_uint_t          adopted;      /* another instance's record taken */
    ngx_uint_t          lost_races;   /* ... made less than 1 s earlier */
    ngx_uint_t          moves;        /* moves committed (epoch + 1) */
    ngx_uint_t          move_races;   /* moves refused: the epoch moved */
    ngx_uint_t          unconfirmed;  /* rooms placed without an answer */
    ngx_uint_t          reconciled;   /* of those, checked later */
    ngx_uint_t          splits;       /* ... found on another backend */
    ngx_uint_t          renewed;      /* records whose expiry was renewed */
    ngx_uint_t          restored;     /* records written again, lost */
    ngx_uint_t          errors;       /* calls failed or unusable */
    uint64_t            rtt_sum;      /* us, of answered calls */
    ngx_uint_t          rtt_n;
    uint64_t            rtt_max;      /* us */
    ngx_uint_t          rtt_le[RA_DIR_RTT_BUCKETS];  /* histogram */
    ngx_uint_t          dirty;        /* unconfirmed rooms may be here */
    ngx_uint_t          pass_found;   /* ... one was, in this pass */
    ngx_uint_t          renewing;     /* a renewal pass is under way */
    ngx_uint_t          renew_all;    /* the next one: idle rooms too */
    ngx_uint_t          pass_all;     /* this one: idle rooms too */
    ngx_uint_t          cursor;       /* next bucket to reconcile */
    ngx_uint_t          renew_cursor; /* next bucket to renew */
    ngx_msec_t          renew_at;     /* the next renewal pass */
} ra_dir_sh_t;


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
     * for the workers' placement views (ra_pick.c): pl_gen changes with
     * anything a view depends on (reports, draining, backends, failures),
     * the totals let a view keep its total load current without a pass
     */
    ngx_uint_t          pl_gen;
    ngx_uint_t          live_total;   /* sum of backends[].live */
    ngx_uint_t          pending_total;
    ngx_uint_t          remote_total; /* sum of backends[].remote_live */
    ngx_uint_t          joins_total;
    ngx_uint_t          remote_joins_total;

    /* how long the connections nginx does not see last (ra_decay.h) */
    ra_decay_fit_t      fit;

    /* the history of loads (hist[]), one sample a tick, newest at hist_pos */
    ngx_uint_t          hist_pos;
    ngx_uint_t          hist_n;       /* samples taken, up to RA_HIST_LEN */
    ngx_msec_t          hist_at;

    /* the other instances whose counts remote[] holds (ra_share.c) */
    uint64_t            remote_id[RA_REMOTE_MAX];
    ngx_msec_t          remote_seen[RA_REMOTE_MAX];

    ngx_uint_t          placed_viewed;   /* placements by a kept view */
    ngx_uint_t          placed_full;     /* by a pass over the servers */

    /*
     * gen: the configuration (nginx -s reload) that last laid eyes on the
     * zone; a backend slot that no running worker's configuration maps,
     * with no room and no connection, can be given to another server
     */
    ngx_uint_t          gen;
    ngx_uint_t          reclaimed;       /* slots given to another server */
    ngx_uint_t          reaped;          /* dead workers' counts given back */
    ngx_uint_t          reaped_live;     /* connections they held */
    ngx_uint_t          untracked;       /* counted without a lease */
    ngx_uint_t          workers_full;    /* a worker found no entry */
    ngx_uint_t          slot_events;     /* a slot may have become free:
                                            its last room or connection
                                            went, or a worker left */
    ra_worker_t         workers[RA_WORKERS_MAX];

    ra_fleet_sh_t       fleet;           /* registered backends */
    ra_dir_sh_t        *dir;             /* with the room directory */
} ra_shctx_t;


typedef struct {
    ngx_slab_pool_t              *shpool;
    ra_shctx_t                   *sh;
    ngx_http_upstream_srv_conf_t *upstream;    /* whose zone it is */
    ngx_msec_t                    ttl;
    ngx_uint_t                    lifetime;    /* ra_decay_fit_t's fixed */
    ngx_uint_t                    gen;         /* this configuration's */
    ra_worker_t                  *worker;      /* this process's, or NULL */
    ngx_uint_t                    warned;      /* it found no entry */
    ngx_uint_t                    directory;   /* sh->dir is needed */
} ra_zone_ctx_t;


ngx_int_t ra_zone_init(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ra_zone_version_ok(ngx_shm_zone_t *shm_zone, ngx_uint_t found,
    ngx_uint_t expected);

/* the caller holds the zone's mutex */
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
ngx_int_t ra_backend_slot(ra_zone_ctx_t *ctx, ngx_str_t *name,
    ngx_uint_t *progress, ngx_log_t *log);
ngx_uint_t ra_room_evict(ra_zone_ctx_t *ctx, ngx_uint_t stale,
    ngx_log_t *log);
ngx_int_t ra_backend_find(ra_shctx_t *sh, u_char *name, size_t len);
void ra_backend_mapped(ra_zone_ctx_t *ctx, ngx_str_t *name);

/* these take the zone's mutex themselves */


#pragma GCC visibility pop

#endif /* RA_ZONE_H */
