/*
 * A worker's map of a room_affinity upstream's servers (nginx's round
 * robin peers, primary then backup) to their slots in the zone's backend
 * table, and what a server's state means for rooms.
 *
 * Why NGX_HTTP_UPSTREAM_MODIFY is not set (ra_conf.c): the map keeps
 * pointers to the peers, built once per worker; "server ... resolve"
 * (nginx 1.27.3+) would add and remove peers under it.
 */

#ifndef RA_PEERS_H
#define RA_PEERS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#pragma GCC visibility push(hidden)


#define RA_MAP_RETRY           1000     /* ms between tries of a map */
#define RA_MAP_LOG_INTERVAL    10000    /* ms between its alerts */


/* a worker's view of one peer: which backend slot it is */
typedef struct {
    ngx_http_upstream_rr_peer_t  *peer;
    ngx_uint_t                    slot;
    unsigned                      backup:1;
} ra_peer_map_t;


typedef struct {
    ra_peer_map_t                *map;         /* NULL: not built yet */
    ngx_uint_t                    nmap;        /* servers, primary first */
    ngx_uint_t                    nprimary;
    ngx_uint_t                    size;        /* servers configured */
    ra_peer_map_t                *mem;         /* map's memory, kept */
    ngx_msec_t                    failed;      /* 0, or when it last failed */
    ngx_msec_t                    alerted;     /* when it last said so */
    ngx_uint_t                    failures;    /* tries since it last worked */
    ngx_uint_t                    events;      /* the zone's slot_events then */
    ngx_uint_t                   *slot_map;    /* slot: map index, or nmap */
    ngx_uint_t                    nslots;
    ngx_uint_t                    slot_cap;
    ngx_uint_t                    built;       /* maps built, ever: a kept
                                                  placement view's indexes
                                                  are of one of them */
    ngx_uint_t                    fleet_gen;   /* the zone's fleet then */
} ra_peers_t;


ngx_int_t ra_peers_map(struct ra_srv_conf_s *rcf, ngx_log_t *log);
ngx_uint_t ra_peers_index(ra_peers_t *peers, ngx_uint_t slot);
ngx_str_t *ra_peers_conf_url(struct ra_srv_conf_s *rcf,
    ngx_http_upstream_rr_peer_t *peer);
ngx_uint_t ra_peers_match_url(struct ra_srv_conf_s *rcf,
    ngx_http_upstream_rr_peer_t *peer, u_char *url, size_t len,
    u_char *hostport, size_t hlen);
void ra_peers_lock(struct ra_srv_conf_s *rcf);
void ra_peers_unlock(struct ra_srv_conf_s *rcf);

ngx_uint_t ra_peer_failed(ngx_http_upstream_rr_peer_t *peer, time_t now);
ngx_uint_t ra_peer_gone(ngx_http_upstream_rr_peer_t *peer, time_t now);
ngx_uint_t ra_peer_full(ngx_http_upstream_rr_peer_t *peer);


#pragma GCC visibility pop

#endif /* RA_PEERS_H */
