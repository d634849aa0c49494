/*
 * Registered backends (the origin design's fleet): a backend that
 * publishes register or signaling with a url the upstream's allow list
 * admits becomes one of its servers without a reload.
 *
 * The peers of an upstream are built at configuration time, so
 * "register=" reserves register_max spare round robin peers (one
 * "server" of the upstream, down until filled), each with room for any
 * address and name.  The subscribing worker admits a backend into a slot
 * of the zone's backend table (its address, "dynamic"); every worker
 * fills its spare peers from the table when the fleet's generation
 * changes (ra_peers.c).
 */

#ifndef RA_FLEET_H
#define RA_FLEET_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_FLEET_MAX_DEFAULT     32
#define RA_FLEET_MAX_LIMIT       1024
#define RA_FLEET_EXPIRE_DEFAULT  60000    /* ms without a report */
#define RA_FLEET_RESOLVING_MAX   16       /* names resolved at once */
#define RA_FLEET_NAME_LEN        NGX_SOCKADDR_STRLEN
#define RA_FLEET_LOG_INTERVAL    5000     /* ms between logs of a reason */


/* register=10.0.0.0/8:3000-3999: a network and a range of ports */
typedef struct {
    ngx_cidr_t                    cidr;
    ngx_uint_t                    port_lo;
    ngx_uint_t                    port_hi;
} ra_fleet_allow_t;


struct ra_fleet_conf_s {
    ngx_array_t                   allow;       /* ra_fleet_allow_t */
    ngx_uint_t                    max;         /* register_max */
    ngx_msec_t                    expire;      /* register_expire */

    /* the spare peers' addresses and names, made at configuration */
    ngx_addr_t                   *spares;
    u_char                       *names;       /* max * RA_FLEET_NAME_LEN */

    /* per worker: the spare peers, and the slot each holds (-1: none) */
    ngx_http_upstream_rr_peer_t **peer;
    ngx_int_t                    *held;
    ngx_uint_t                    found;       /* peer[] is filled */
    ngx_msec_t                    full_logged;

    ngx_http_core_loc_conf_t     *clcf;        /* of http{}: its resolver */
};


/* the index of a spare peer, or -1 for a server line's peer */

static ngx_inline ngx_int_t
ra_fleet_spare(ra_fleet_conf_t *fc, ngx_http_upstream_rr_peer_t *peer)
{
    if (fc == NULL
        || peer->name.data < fc->names
        || peer->name.data >= fc->names + fc->max * RA_FLEET_NAME_LEN)
    {
        return -1;
    }

    return (peer->name.data - fc->names) / RA_FLEET_NAME_LEN;
}


char *ra_fleet_conf_param(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_str_t *value);
char *ra_fleet_conf_done(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *uscf);
ngx_int_t ra_fleet_init_upstream(ngx_conf_t *cf, ra_srv_conf_t *rcf,
    ngx_http_upstream_srv_conf_t *us);

ngx_uint_t ra_fleet_receive(ra_main_conf_t *rmcf, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, ngx_log_t *log);
void ra_fleet_tick(ra_main_conf_t *rmcf, ngx_uint_t subscribed,
    ngx_msec_t now, ngx_log_t *log);
const char *ra_fleet_err_name(ngx_uint_t err);


#pragma GCC visibility pop

#endif /* RA_FLEET_H */
