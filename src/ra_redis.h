/*
 * The Redis link: one subscriber per nginx instance, elected through a
 * small shared zone, fed into the backend tables of every room_affinity
 * upstream.
 */

#ifndef RA_REDIS_H
#define RA_REDIS_H

#include "ra_module.h"


#define RA_REDIS_ZONE_SIZE     (512 * 1024)
#define RA_SHARE_SLOTS         512       /* placements waiting to go out */
#define RA_SHARE_TICK          5         /* ms between outbox drains */
#define RA_SHARE_RACE          2000      /* ms a new room's placement may be
                                            replaced by a smaller instance's */
#define RA_REDIS_TICK          200       /* ms between election checks */
#define RA_REDIS_TAKEOVER      800       /* ms without a heartbeat */
#define RA_REDIS_BACKOFF_MIN   100       /* ms */
#define RA_REDIS_LOG_INTERVAL  5000      /* ms between logs of one reason */
#define RA_REDIS_ERR_LEN       128


/* a placement of this instance, to be published to the others */
typedef struct {
    uint16_t            upstream;     /* index of the upstream */
    uint16_t            room_len;
    uint16_t            backend_len;
    uint16_t            moved;
    u_char              backend[RA_BACKEND_NAME_LEN];
    u_char              room[RA_ROOM_MAX_LEN];
} ra_share_t;


/* what the instance's subscriber shares with every worker */
#define RA_REDIS_ZONE_VERSION  2        /* layout of ra_redis_sh_t */


typedef struct {
    ngx_uint_t          version;
    uint64_t            instance;     /* random, kept across reloads */
    ngx_uint_t          share_head;   /* next to publish */
    ngx_uint_t          share_tail;   /* next free */
    ra_share_t         *share;        /* RA_SHARE_SLOTS entries */
    ngx_uint_t          shared_out;
    ngx_uint_t          shared_in;
    ngx_uint_t          shared_adopted;
    ngx_uint_t          shared_dropped;

    ngx_pid_t           owner;
    ngx_msec_t          heartbeat;
    ngx_uint_t          connected;
    ngx_uint_t          connects;
    ngx_uint_t          failures;
    ngx_uint_t          applied;
    ngx_uint_t          unknown;
    ngx_uint_t          snapshots;
    ngx_uint_t          rejected[RA_MSG_ERR_COUNT];
    ngx_msec_t          last_message;
    size_t              last_error_len;
    u_char              last_error[RA_REDIS_ERR_LEN];
} ra_redis_sh_t;


struct ra_redis_conf_s {
    ngx_str_t           address;      /* as configured, for the status */
    ngx_str_t           host;         /* numeric, NUL-terminated */
    ngx_str_t           unix_path;    /* NUL-terminated, or empty */
    ngx_int_t           port;
    ngx_str_t           password;
    ngx_int_t           db;
    ngx_str_t           channel_register;
    ngx_str_t           channel_signaling;
    ngx_str_t           snapshot_key;
    ngx_str_t           channel_rooms;
    ngx_flag_t          snapshot;
    ngx_flag_t          share;
    ngx_msec_t          backoff;      /* cap */
    ngx_shm_zone_t     *shm_zone;
    ngx_slab_pool_t    *shpool;
    ra_redis_sh_t      *sh;
};


char *ra_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ra_redis_init_process(ngx_cycle_t *cycle);
void ra_redis_exit_process(ngx_cycle_t *cycle);
void ra_redis_share(ra_srv_conf_t *rcf, ngx_str_t *room, ngx_str_t *backend,
    ngx_uint_t moved);

#endif /* RA_REDIS_H */
