/*
 * The backend of a room: found in the room table, or placed and recorded.
 * Shared by the upstream balancer, the join API and the microbenchmark.
 */

#ifndef RA_ROUTE_H
#define RA_ROUTE_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


typedef struct {
    ra_srv_conf_t      *conf;
    ngx_str_t           key;
    uint64_t            hash;       /* ra_hash() of the key */
    uintptr_t          *tried;      /* map indexes already tried, or NULL */

    /* the decision */
    ra_room_t          *room;       /* NULL: placed without recording */
    ra_lease_t         *lease;      /* the counts taken, or NULL */
    ngx_int_t           slot;       /* backend slot */
    ngx_uint_t          index;      /* index in conf->peers.map */
    unsigned            is_new:1;
    unsigned            moved:1;
} ra_route_t;


ngx_int_t ra_route_key(ngx_http_request_t *r, ra_srv_conf_t *rcf,
    ra_route_t *rt);
ngx_int_t ra_route_init(ra_route_t *rt, ra_srv_conf_t *rcf, ngx_str_t *key,
    ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ra_room_name(ngx_pool_t *pool, ngx_str_t *key);

/* the caller holds the peers' locks (ra_peers_lock()) */
ngx_int_t ra_route(ra_route_t *rt, ngx_uint_t acquire, ngx_log_t *log);

/* the caller holds the zone's mutex too */
ngx_int_t ra_route_place(ra_route_t *rt, ngx_msec_t now);


#pragma GCC visibility pop

#endif /* RA_ROUTE_H */
