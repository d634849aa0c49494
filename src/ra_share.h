/*
 * Placements shared between the nginx instances of one Redis: an outbox
 * that the routing fills (ra_share_put()) and the Redis link drains
 * (ra_share_take()), and the rule for placements other instances publish
 * (ra_share_receive()).  The outbox lives in the room_affinity_redis
 * zone, so that every worker's placements leave through the subscriber.
 */

#ifndef RA_SHARE_H
#define RA_SHARE_H

#include "ra_module.h"
#include "ra_counts.h"
#include "ra_sign.h"


#pragma GCC visibility push(hidden)


#define RA_SHARE_SLOTS         512       /* placements waiting to go out */
#define RA_SHARE_TICK          5         /* ms between outbox drains */
#define RA_SHARE_DRAIN         64        /* placements sent per drain */
#define RA_SHARE_RACE          2000      /* ms a new room's placement may be
                                            replaced by a smaller instance's */
#define RA_SHARE_RATE          1000      /* placements/s other instances may
                                            make in an upstream, default */
#define RA_SHARE_LOG_INTERVAL  5000      /* ms between logs of refusals */


typedef struct {
    uint32_t            upstream_hash;   /* of its name: the index may be
                                            another upstream's after a
                                            reload */
    uint16_t            upstream;     /* index of the upstream */
    uint16_t            room_len;
    uint16_t            backend_len;
    uint16_t            moved;
    u_char              backend[RA_BACKEND_NAME_LEN];
    u_char              room[RA_ROOM_MAX_LEN];
} ra_share_entry_t;


typedef struct {
    uint64_t            instance;     /* random, kept across reloads */
    ngx_uint_t          open;         /* a subscriber publishes them */
    ngx_uint_t          head;         /* next to publish */
    ngx_uint_t          tail;         /* next free */
    ra_share_entry_t   *entries;      /* RA_SHARE_SLOTS */

    ngx_uint_t          published;
    ngx_uint_t          received;
    ngx_uint_t          adopted;
    ngx_uint_t          dropped;

    ra_counts_sh_t      counts;       /* the connection counts (ra_counts.c) */
    ngx_uint_t          refused;      /* over the rate, or no free memory */
} ra_share_sh_t;


/* per upstream, in the subscriber: the placements others may still make */
typedef struct {
    ngx_msec_t          last;
    ngx_uint_t          tokens;       /* in thousandths of a placement */
} ra_share_bucket_t;


struct ra_share_s {
    ngx_slab_pool_t    *shpool;       /* the room_affinity_redis zone's */
    ra_share_sh_t      *sh;
    ra_sign_conf_t     *sign;         /* signs what is published, or NULL */
    ngx_uint_t          rate;         /* share_rate=, placements/s */
    ra_share_bucket_t  *buckets;      /* per upstream, allocated on use */
    ngx_uint_t          nbuckets;
    ngx_flag_t          directory;    /* rooms go by the directory, not
                                         by these messages */
};


ngx_int_t ra_share_init_zone(ra_share_t *share, ngx_slab_pool_t *shpool,
    ra_share_sh_t *old);
void ra_share_put(ra_srv_conf_t *rcf, ngx_str_t *room, ngx_str_t *backend,
    ngx_uint_t moved);
void ra_share_open(ra_share_t *share, ngx_uint_t open);
u_char *ra_share_take(ra_share_t *share, size_t *len, ngx_log_t *log);
ra_msg_err_e ra_share_receive(ra_share_t *share, const char *data,
    size_t len, ngx_log_t *log, const char **detail);
void ra_share_stats(ra_share_t *share, ra_share_sh_t *copy);


#pragma GCC visibility pop

#endif /* RA_SHARE_H */
