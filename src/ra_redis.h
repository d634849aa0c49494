/*
 * The Redis links of an nginx instance: one worker, elected through a
 * small shared zone, subscribes to the backends' channels and to the
 * other instances' placements, and reads the backends' snapshot hash; its
 * command link publishes this instance's placements.
 */

#ifndef RA_REDIS_H
#define RA_REDIS_H

#include "ra_module.h"
#include "ra_share.h"


#pragma GCC visibility push(hidden)


#define RA_REDIS_ZONE_SIZE     (512 * 1024)
#define RA_REDIS_PORT          6379
#define RA_REDIS_SENTINEL_PORT 26379
#define RA_REDIS_SENTINELS_MAX 16
#define RA_REDIS_TICK          200       /* ms between election checks */
#define RA_REDIS_TAKEOVER      800       /* ms without a heartbeat */
#define RA_REDIS_BACKOFF_MIN   100       /* ms */
#define RA_REDIS_BACKOFF_MAX   3000      /* ms, the default cap */
#define RA_REDIS_CONNECT_TIMEOUT  3000   /* ms, the default */
#define RA_REDIS_COMMAND_TIMEOUT  3000   /* ms, the default */
#define RA_REDIS_PING_INTERVAL    1000   /* ms of silence, the default */
#define RA_REDIS_SNAPSHOT_MAX     10000  /* entries, the default */
#define RA_REDIS_SNAPSHOT_BATCH   500    /* HSCAN's COUNT */
#define RA_REDIS_LOG_INTERVAL  5000      /* ms between logs of one reason */
#define RA_REDIS_ERR_LEN       128
#define RA_DIR_WAIT_DEFAULT    50        /* ms, directory_wait= */


/* what the instance's subscriber shares with every worker */
#define RA_REDIS_ZONE_VERSION  8        /* layout of ra_redis_sh_t and of
                                           the outbox (ra_share.h) */



/* what the status calls the subscriber link */
typedef enum {
    RA_REDIS_CONNECTING = 0,    /* being opened, no failure since */
    RA_REDIS_SUBSCRIBED,        /* subscribed, answering in time */
    RA_REDIS_STALLED,           /* subscribed, an answer is overdue */
    RA_REDIS_FAILED             /* the last attempt failed, retrying */
} ra_redis_state_e;


/* what the Sentinels said (ra_redis_sentinel.c), for the status and links */
typedef struct {
    ngx_uint_t          generation;   /* changes with the master */
    ngx_uint_t          lookups;      /* answers */
    ngx_uint_t          failures;     /* Sentinels that did not answer */
    ngx_uint_t          switches;     /* failovers followed */
    ngx_uint_t          port;         /* the master's, 0 if none known */
    u_char              host[NGX_INET6_ADDRSTRLEN + 1];
    u_char              answered[NGX_SOCKADDR_STRLEN + 1];  /* by */
} ra_redis_sentinel_sh_t;


typedef struct {
    ngx_uint_t          version;
    ra_share_sh_t      *share;        /* the outbox, in this zone */

    ngx_pid_t           owner;
    ngx_msec_t          heartbeat;
    ngx_uint_t          connected;
    ngx_uint_t          state;        /* ra_redis_state_e */
    ngx_msec_t          last_reply;   /* bytes from Redis, subscriber */
    ngx_uint_t          connects;
    ngx_uint_t          failures;
    ngx_uint_t          applied;
    ngx_uint_t          unknown;
    ngx_uint_t          snapshots;
    ngx_uint_t          snapshot_entries;     /* of the last one */
    ngx_uint_t          snapshot_truncated;   /* snapshot_max reached */
    ngx_uint_t          rejected[RA_MSG_ERR_COUNT];
    ngx_msec_t          last_message;
    size_t              last_error_len;
    u_char              last_error[RA_REDIS_ERR_LEN];
    ra_redis_sentinel_sh_t  sentinel;
} ra_redis_sh_t;


/* a Sentinel of sentinel= */
typedef struct {
    ngx_str_t           name;         /* "ip:port", for the log and status */
    u_char             *host;         /* numeric, NUL-terminated */
    ngx_int_t           port;
} ra_redis_sentinel_t;


struct ra_redis_conf_s {
    ngx_str_t           address;      /* as configured, for the status */
    ngx_str_t           host;         /* numeric (a name with resolve),
                                         NUL-terminated */
    ngx_str_t           unix_path;    /* NUL-terminated, or empty */
    ngx_int_t           port;
    ngx_str_t           user;         /* Redis 6 ACL user, or empty */
    ngx_str_t           password;
    ngx_int_t           db;
    ngx_str_t           channel_register;
    ngx_str_t           channel_signaling;
    ngx_str_t           snapshot_key;
    ngx_str_t           channel_rooms;
    ngx_flag_t          snapshot;
    ngx_flag_t          share_on;
    ngx_msec_t          backoff;      /* cap */
    ngx_msec_t          connect_timeout;
    ra_sign_conf_t     *sign;         /* key=: messages must be signed */
    ngx_flag_t          resolve;      /* host is resolved at run time */
    ngx_http_core_loc_conf_t  *clcf; /* of http{}: its resolver */
    ngx_msec_t          command_timeout;
    ngx_msec_t          ping_interval;
    ngx_uint_t          snapshot_max;
    ngx_shm_zone_t     *shm_zone;
    ngx_slab_pool_t    *shpool;
    ra_redis_sh_t      *sh;
    ra_share_t          share;
    ngx_array_t        *sentinels;    /* ra_redis_sentinel_t, or NULL */
    ngx_str_t           master_name;  /* master=, NUL-terminated */
    ngx_str_t           sentinel_user;
    ngx_str_t           sentinel_password;

    /* the room directory (ra_directory.c) */
    ngx_flag_t          directory;
    ngx_msec_t          directory_wait;
    ngx_str_t           directory_prefix;  /* of its keys */
};


ngx_int_t ra_redis_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ra_redis_init_process(ngx_cycle_t *cycle);
void ra_redis_exit_process(ngx_cycle_t *cycle);
void ra_redis_stats(ra_redis_conf_t *rc, ra_redis_sh_t *copy);
const char *ra_redis_state_name(ngx_uint_t state);


#pragma GCC visibility pop

#endif /* RA_REDIS_H */
