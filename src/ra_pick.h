/*
 * Placement input read from the zone, and each worker's kept view: the
 * servers a new room may go to, as ra_placement.c sees them.
 */

#ifndef RA_PICK_H
#define RA_PICK_H

#include "ra_route.h"


#pragma GCC visibility push(hidden)


/*
 * A worker's placement input (pl, acc: one entry a server), and the view
 * of the primary servers, reused for new rooms until the zone's pl_gen
 * changes, "until" passes, or this worker sees a server fail.  "num" is
 * its total load when "total" was the zone's total (live or pending, as
 * the mode counts) less that of the nout slots the view leaves out
 * (backups, unavailable servers, servers of another configuration).
 */
struct ra_view_s {
    ra_pl_backend_t              *pl;
    uint64_t                     *acc;      /* running sums */

    ra_pl_view_t                  view;
    ngx_uint_t                    gen;
    ngx_msec_t                    until;
    uint64_t                      num;
    uint64_t                      total;
    ngx_uint_t                   *out;
    ngx_uint_t                    nout;
    ngx_uint_t                    out_cap;
    ngx_uint_t                    built;    /* the peer map's, then */
    unsigned                      valid:1;
};


/* the caller holds the zone's mutex */
ngx_int_t ra_pick(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to,
    ngx_msec_t now);
ngx_uint_t ra_pick_can_take(ra_route_t *rt, ngx_uint_t k, time_t now);
ngx_uint_t ra_pick_tried(ra_route_t *rt, ngx_uint_t k);


#pragma GCC visibility pop

#endif /* RA_PICK_H */
