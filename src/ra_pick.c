/*
 * Placement input read from the zone, and the worker's kept view.  A new
 * room costs a pass over the servers only when the view a worker kept
 * from its last pass no longer holds; otherwise a draw and a look at its
 * candidates (ra_placement.h's three steps).
 */

#include "ra_pick.h"
#include "ra_report.h"


static ra_view_t *ra_pick_view(ra_srv_conf_t *rcf);
static ngx_int_t ra_pick_viewed(ra_route_t *rt, time_t t);
static ngx_int_t ra_pick_full(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to,
    ngx_msec_t now, time_t t);
static void ra_keep_view(ra_srv_conf_t *rcf, ra_pl_view_t *v,
    ngx_msec_t until);
static uint64_t ra_view_total(ra_srv_conf_t *rcf, ngx_uint_t mode);
static ngx_uint_t ra_fill_placement(ra_route_t *rt, ngx_uint_t k,
    ngx_msec_t now, time_t t, ngx_msec_t *until);


/*
 * Places a room on one of the servers map[from..to-1].  For the primary
 * servers, the worker keeps the placement view (ra_placement_view()) of
 * its last full pass and reuses it while nothing it depends on changed:
 * a new room then costs a draw and a look at its candidates, not a pass
 * over every server.
 */

ngx_int_t
ra_pick(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to, ngx_msec_t now)
{
    time_t          t;
    ngx_int_t       i;
    ra_view_t      *vw;
    ra_srv_conf_t  *rcf;
    ra_zone_ctx_t  *ctx;

    if (from >= to) {
        return -1;
    }

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    t = ngx_time();

    vw = ra_pick_view(rcf);
    if (vw == NULL) {
        return -1;
    }

    if (from == 0
        && vw->valid
        && vw->gen == ctx->sh->pl_gen
        && vw->built == rcf->peers.built
        && (ngx_msec_int_t) (now - vw->until) < 0)
    {
        i = ra_pick_viewed(rt, t);

        if (i != NGX_DECLINED) {
            ctx->sh->placed_viewed++;
            return i;
        }
    }

    i = ra_pick_full(rt, from, to, now, t);

    if (i >= 0) {
        ctx->sh->placed_full++;
    }

    return i;
}


/* the worker's placement input, one entry a configured server */

static ra_view_t *
ra_pick_view(ra_srv_conf_t *rcf)
{
    ra_view_t  *vw;

    if (rcf->view) {
        return rcf->view;
    }

    vw = ngx_pcalloc(ngx_cycle->pool, sizeof(ra_view_t));
    if (vw == NULL) {
        return NULL;
    }

    vw->pl = ngx_pcalloc(ngx_cycle->pool,
                         rcf->peers.size * sizeof(ra_pl_backend_t));
    vw->acc = ngx_pcalloc(ngx_cycle->pool, rcf->peers.size * sizeof(uint64_t));

    if (vw->pl == NULL || vw->acc == NULL) {
        return NULL;
    }

    rcf->view = vw;

    return vw;
}


/*
 * With the kept view: NGX_DECLINED when this room needs a full pass (a
 * candidate this request cannot use, or every candidate over the cap).
 */

static ngx_int_t
ra_pick_viewed(ra_route_t *rt, time_t t)
{
    int               cand[RA_PL_MAX_CHOICES];
    int64_t           num;
    ngx_int_t         i;
    ngx_uint_t        c, n;
    ra_shctx_t       *sh;
    ra_pl_view_t     *v;
    ra_backend_t     *be;
    ra_srv_conf_t    *rcf;
    ra_view_t        *vw;
    ra_zone_ctx_t    *ctx;
    ra_pl_backend_t  *pb;

    rcf = rt->conf;
    vw = rcf->view;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    v = &vw->view;

    /* the total load now: the view's, moved as its servers' total moved */

    num = (int64_t) vw->num + (int64_t) ra_view_total(rcf, v->mode)
          - (int64_t) vw->total;

    v->sum_num = (num < 0) ? 0
                 : (num > RA_PL_LOAD_MAX) ? RA_PL_LOAD_MAX : (uint64_t) num;

    n = ra_placement_draw(&rcf->placement, v, vw->pl, rt->hash, cand);

    if (n == 0) {
        return NGX_DECLINED;
    }

    /* the candidates' loads as they are now */

    for (c = 0; c < n; c++) {
        if (!ra_pick_can_take(rt, cand[c], t)) {
            return NGX_DECLINED;
        }

        pb = &vw->pl[cand[c]];
        be = &sh->backends[rcf->peers.map[cand[c]].slot];

        ra_report_load(rcf, be, pb, ngx_current_msec);
    }

    i = ra_placement_decide(&rcf->placement, v, vw->pl, cand, n);

    return (i < 0) ? NGX_DECLINED : i;
}


static ngx_int_t
ra_pick_full(ra_route_t *rt, ngx_uint_t from, ngx_uint_t to, ngx_msec_t now,
    time_t t)
{
    int               cand[RA_PL_MAX_CHOICES];
    ngx_int_t         i;
    ngx_uint_t        k, any, own, n;
    ngx_msec_t        until;
    ra_pl_view_t      v;
    ra_view_t        *vw;
    ra_srv_conf_t    *rcf;

    rcf = rt->conf;
    vw = rcf->view;
    any = 0;
    own = 0;
    until = now + 3600000;      /* at the latest: a pass an hour */

    for (k = from; k < to; k++) {
        /* "own": a server left out only for this request */
        own |= ra_fill_placement(rt, k, now, t, &until);
        any |= vw->pl[k].available;
    }

    if (!any) {
        return -1;
    }

    ra_placement_view(&rcf->placement, vw->pl + from, to - from,
                      vw->acc + from, &v);

    n = ra_placement_draw(&rcf->placement, &v, vw->pl + from, rt->hash,
                          cand);

    i = ra_placement_decide(&rcf->placement, &v, vw->pl + from,
                            n ? cand : NULL, n);

    if (i < 0) {
        /* every candidate over the cap: the least loaded of all */
        i = ra_placement_pick(&rcf->placement, vw->pl + from, to - from,
                              rt->hash);
    }

    /*
     * the view serves the next rooms when it holds for any request (no
     * server left out for this one only) and in a mode whose total load
     * the zone keeps (not mixed, no slow start)
     */

    if (from == 0 && !own && n && v.mode != RA_PL_MIXED && !v.slow) {
        ra_keep_view(rcf, &v, until);
    }

    return (i < 0) ? -1 : (ngx_int_t) (from + i);
}


/*
 * Keeps the view of the primary servers, with the slots it leaves out:
 * the zone's totals count every slot, the view's total only its own.
 */

static void
ra_keep_view(ra_srv_conf_t *rcf, ra_pl_view_t *v, ngx_msec_t until)
{
    ngx_uint_t      s, k, *out;
    ra_view_t      *vw;
    ra_shctx_t     *sh;
    ra_zone_ctx_t  *ctx;

    vw = rcf->view;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;

    if (vw->out_cap < sh->nbackends) {
        out = ngx_palloc(ngx_cycle->pool, sh->nbackends * sizeof(ngx_uint_t));
        if (out == NULL) {
            vw->valid = 0;
            return;
        }

        vw->out = out;
        vw->out_cap = sh->nbackends;
    }

    vw->nout = 0;

    for (s = 0; s < sh->nbackends; s++) {
        k = ra_peers_index(&rcf->peers, s);

        if (k < rcf->peers.nprimary && vw->pl[k].available) {
            continue;
        }

        vw->out[vw->nout++] = s;
    }

    vw->view = *v;
    vw->gen = sh->pl_gen;
    vw->built = rcf->peers.built;
    vw->until = until;
    vw->num = v->sum_num;
    vw->total = ra_view_total(rcf, v->mode);
    vw->valid = 1;
}


static uint64_t
ra_view_total(ra_srv_conf_t *rcf, ngx_uint_t mode)
{
    uint64_t        total;
    ngx_uint_t      i;
    ra_view_t      *vw;
    ra_shctx_t     *sh;
    ra_backend_t   *be;
    ra_zone_ctx_t  *ctx;

    vw = rcf->view;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;

    total = ra_report_total(rcf, sh, NULL, mode);

    for (i = 0; i < vw->nout; i++) {
        be = &sh->backends[vw->out[i]];
        total -= ra_report_total(rcf, sh, be, mode);
    }

    return total;
}


/*
 * The placement input of server k, now.  Returns 1 when the server is
 * left out for this request only (tried by it, or at max_conns); lowers
 * *until to when the input changes by itself (a report goes stale, a
 * failed server may be retried).
 */

static ngx_uint_t
ra_fill_placement(ra_route_t *rt, ngx_uint_t k, ngx_msec_t now, time_t t,
    ngx_msec_t *until)
{
    ngx_msec_t                    up, at;
    ngx_time_t                   *tp;
    ra_srv_conf_t                *rcf;
    ra_zone_ctx_t                *ctx;
    ra_backend_t                 *be;
    ra_pl_backend_t              *pb;
    ngx_http_upstream_rr_peer_t  *peer;

    rcf = rt->conf;
    ctx = rcf->shm_zone->data;
    be = &ctx->sh->backends[rcf->peers.map[k].slot];
    peer = rcf->peers.map[k].peer;
    pb = &rcf->view->pl[k];

    ngx_memzero(pb, sizeof(ra_pl_backend_t));

    pb->weight = (uint32_t) peer->weight;

    at = ra_report_input(rcf, be, pb, now);
    ra_report_load(rcf, be, pb, now);

    if (at && (ngx_msec_int_t) (at - *until) < 0) {
        *until = at;
    }

    if (be->up_since == 0) {
        pb->up_ms = UINT32_MAX;

    } else {
        up = now - be->up_since;
        pb->up_ms = (up >= UINT32_MAX) ? UINT32_MAX : (uint32_t) up;
    }

    pb->available = ra_pick_can_take(rt, k, t);

    if (pb->available) {
        return 0;
    }

    if (ra_peer_failed(peer, t)) {
        /*
         * failed: nginx tries it again once (now - checked) exceeds
         * fail_timeout, counted in whole seconds
         */

        tp = ngx_timeofday();

        at = now + (ngx_msec_t) ((peer->checked + peer->fail_timeout + 1
                                  - tp->sec) * 1000 - tp->msec);

        if ((ngx_msec_int_t) (at - *until) < 0) {
            *until = at;
        }
    }

    return ra_pick_tried(rt, k) || ra_peer_full(peer);
}


/* may the server take a new room: not tried, usable, not draining */

ngx_uint_t
ra_pick_can_take(ra_route_t *rt, ngx_uint_t k, time_t now)
{
    ra_zone_ctx_t  *ctx;

    ctx = rt->conf->shm_zone->data;

    return !ra_pick_tried(rt, k)
           && !ctx->sh->backends[rt->conf->peers.map[k].slot].draining
           && !ctx->sh->backends[rt->conf->peers.map[k].slot].out
           && !ra_peer_gone(rt->conf->peers.map[k].peer, now)
           && !ra_peer_full(rt->conf->peers.map[k].peer);
}


ngx_uint_t
ra_pick_tried(ra_route_t *rt, ngx_uint_t k)
{
    return rt->tried != NULL
           && (rt->tried[k / (8 * sizeof(uintptr_t))]
               & ((uintptr_t) 1 << k % (8 * sizeof(uintptr_t))));
}

