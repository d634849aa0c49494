/*
 * The workers of a zone and the connections each counts (leases), given
 * back when a worker dies.
 */

#ifndef RA_WORKERS_H
#define RA_WORKERS_H

#include "ra_zone.h"


#pragma GCC visibility push(hidden)


/* the caller holds the zone's mutex */
ra_lease_t *ra_lease_count(ra_zone_ctx_t *ctx, ra_room_t *room,
    ngx_uint_t slot);
void ra_lease_end(ra_zone_ctx_t *ctx, ra_lease_t *lease, ngx_uint_t slot,
    ra_room_t *room, ngx_msec_t now);

/* these take the zone's mutex themselves */
ngx_int_t ra_workers_init_process(ngx_cycle_t *cycle);
void ra_workers_exit_process(ngx_cycle_t *cycle);
void ra_workers_reap(ra_zone_ctx_t *ctx, ngx_log_t *log);


#pragma GCC visibility pop

#endif /* RA_WORKERS_H */
