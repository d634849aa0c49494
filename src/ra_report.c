/*
 * What a backend's report means.  A report replaces the backend's figures
 * and starts its pending count afresh (the rooms placed since are in the
 * figures from now on); a registration starts its slow start; "draining"
 * stops new rooms.  A snapshot entry (the hash read after each
 * subscription) is older than any report received, so it only fills in a
 * backend nothing is known of.
 *
 * Between two reports, a backend's connections are estimated (the
 * "connections" metric): the report is a sample of the backend taken a
 * moment before it landed; since then every instance opened and closed
 * connections to it (this instance's workers in "live", the others' in
 * "remote_live", shared by ra_share.c), and the join API sent clients to
 * it that connect directly:
 *
 *     estimate = max(0, live + remote_live + min(0, reported - seen))
 *                + decayed(max(0, reported - seen) + joins)
 *
 * where joins counts the join answers of every instance (theirs come with
 * their counts), and "decayed" weighs what nginx does not see (the
 * report's direct part, the joins) by how long connections last, learnt
 * from the reports (ra_decay.h, lifetime=); with "lifetime=off" it is the
 * sum itself: max(0, reported + live + remote_live - seen) + joins.
 *
 * "seen" is what the instances held when the report was taken: their count
 * report_lag ms before it landed (from the samples in hist[]), or now if
 * fewer connections are held now, so that a connection opened just before
 * the report landed, which the backend may not have counted yet, is not
 * erased by it.  A room's members count as they arrive, through any worker
 * of any instance, not one unit per room: measured on the live benchmark
 * (docs/benchmarks.md), counting rooms left the members that follow a
 * room's placement unseen until the next report.  The "cpu" metric keeps
 * reported + one unit per room placed since.
 */

#include "ra_report.h"


#define RA_REPORT_LOG_INTERVAL  5000   /* ms between logs of refused urls */


static void ra_report_apply(ra_srv_conf_t *rcf, ra_shctx_t *sh,
    ra_backend_t *be, ra_msg_t *msg, ra_msg_type_e type, ngx_uint_t snapshot,
    ngx_uint_t url_ok, ngx_msec_t now);
static ngx_uint_t ra_report_seen(ra_srv_conf_t *rcf, ra_shctx_t *sh,
    ra_backend_t *be, ngx_msec_t now);
static ngx_uint_t ra_report_url_plain(ra_msg_t *msg);
static void ra_report_url_refused(ra_msg_t *msg, ngx_str_t *server,
    ngx_log_t *log);


/*
 * Applies a parsed message to every server, in every room_affinity
 * upstream, that its url names.  Returns whether any did.
 */

ngx_uint_t
ra_report_receive(ra_main_conf_t *rmcf, ra_msg_t *msg, ra_msg_type_e type,
    ngx_uint_t snapshot, ngx_log_t *log)
{
    u_char            hostport[RA_MSG_HOSTPORT_LEN];
    size_t            hlen;
    ngx_int_t         n;
    ngx_uint_t        i, k, matched, url_ok, same;
    ngx_msec_t        now;
    ra_peers_t       *pt;
    ra_backend_t     *be;
    ra_peer_map_t    *pm;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp, *rcf;

    n = ra_msg_url_hostport(msg->url, msg->url_len, (char *) hostport,
                            sizeof(hostport));
    hlen = (n < 0) ? 0 : (size_t) n;

    rcfp = rmcf->upstreams.elts;
    now = ngx_current_msec;
    matched = 0;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];
        pt = &rcf->peers;

        if (ra_peers_map(rcf, log) != NGX_OK) {
            continue;
        }

        ctx = rcf->shm_zone->data;

        for (k = 0; k < pt->nmap; k++) {
            pm = &pt->map[k];

            /*
             * a registered backend (ra_fleet.c) also by its url (only this
             * worker, the subscriber, writes it)
             */

            be = &ctx->sh->backends[pm->slot];
            same = be->dynamic && be->url_len == msg->url_len
                   && ngx_strncmp(be->url, msg->url, msg->url_len) == 0;

            if (!same
                && !ra_peers_match_url(rcf, pm->peer, (u_char *) msg->url,
                                       msg->url_len, hostport, hlen))
            {
                continue;
            }

            matched = 1;

            /*
             * the join API answers with what the configuration allows:
             * the server's room_affinity_url (a message matched it
             * exactly), else ws://host:port and nothing after it, or the
             * url a registered backend was admitted with
             */

            url_ok = ra_peers_conf_url(rcf, pm->peer) != NULL
                     || ra_report_url_plain(msg) || same;

            if (!url_ok) {
                ra_report_url_refused(msg, &pm->peer->name, log);
            }

            ngx_shmtx_lock(&ctx->shpool->mutex);

            /* the table may have grown, and moved, since */
            be = &ctx->sh->backends[pm->slot];

            ra_report_apply(rcf, ctx->sh, be, msg, type, snapshot, url_ok,
                            now);
            ngx_shmtx_unlock(&ctx->shpool->mutex);

            ngx_log_debug7(NGX_LOG_DEBUG_HTTP, log, 0,
                           "room_affinity: applied %s%s for \"%V\" "
                           "connections:%uD cpu:%uD capacity:%uD "
                           "draining:%ui",
                           type == RA_MSG_REGISTER ? "register" : "signaling",
                           snapshot ? " (snapshot)" : "", &pm->peer->name,
                           msg->connections, msg->cpu, msg->capacity,
                           (ngx_uint_t) msg->draining);
        }
    }

    return matched;
}


/*
 * A url with a scheme, a path, a query or a fragment of its own (say
 * "wss://host:port/phish?next=..."): whoever may publish could send the
 * clients of the join API anywhere on that host and port
 */

static ngx_uint_t
ra_report_url_plain(ra_msg_t *msg)
{
    size_t   i;

    if (msg->url_len <= sizeof("ws://") - 1
        || ngx_strncmp(msg->url, "ws://", sizeof("ws://") - 1) != 0)
    {
        return 0;
    }

    for (i = sizeof("ws://") - 1; i < msg->url_len; i++) {
        if (msg->url[i] == '/' || msg->url[i] == '?' || msg->url[i] == '#'
            || msg->url[i] == '@' || msg->url[i] == '\\')
        {
            return 0;
        }
    }

    return 1;
}


/* logged at most once an interval by this worker: the report applies */

static void
ra_report_url_refused(ra_msg_t *msg, ngx_str_t *server, ngx_log_t *log)
{
    static ngx_msec_t  logged;

    if (logged && ngx_current_msec - logged < RA_REPORT_LOG_INTERVAL) {
        return;
    }

    logged = ngx_current_msec ? ngx_current_msec : 1;

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "room_affinity: url \"%*s\" of a report for \"%V\" not "
                  "used by the join API: only ws://host:port, or the "
                  "server's room_affinity_url, is", ngx_min(msg->url_len, 96),
                  msg->url, server);
}


/* the caller holds the zone's mutex */

static void
ra_report_apply(ra_srv_conf_t *rcf, ra_shctx_t *sh, ra_backend_t *be,
    ra_msg_t *msg, ra_msg_type_e type, ngx_uint_t snapshot, ngx_uint_t url_ok,
    ngx_msec_t now)
{
    if (snapshot && be->has_report) {
        /*
         * a snapshot entry is older than any report received, and is read
         * again at every resubscription (each reload): it changes nothing
         * of a backend that reported, not even draining or its url
         */
        return;
    }

    if (url_ok && (!be->url_len || type == RA_MSG_REGISTER || snapshot)) {
        ngx_memcpy(be->url, msg->url, msg->url_len);
        be->url_len = msg->url_len;
    }

    be->registered = 1;

    if (type == RA_MSG_REGISTER) {
        be->up_since = now ? now : 1;

    } else if (msg->has_connections || msg->has_cpu) {
        /* a report without figures (draining only) keeps the last */

        be->has_report = 1;
        be->reported_at = now;
        sh->pending_total -= be->pending;
        be->pending = 0;
        sh->joins_total -= be->joins;
        be->joins = 0;

        /* every instance takes the report in: their joins are in it too */
        sh->remote_joins_total -= be->remote_joins;
        be->remote_joins = 0;
        ngx_memzero(be->remote_j, sizeof(be->remote_j));
        be->seen = ra_report_seen(rcf, sh, be, now);

        if (msg->has_connections && be->decay) {
            /* what the joins, decayed, should have predicted */
            ra_decay_report(be->decay, &sh->fit,
                            msg->connections > be->seen
                            ? (uint32_t) ngx_min(msg->connections - be->seen,
                                                 RA_PL_LOAD_MAX)
                            : 0,
                            now);
        }

        be->has_connections = msg->has_connections;
        be->connections = msg->connections;
        be->has_cpu = msg->has_cpu;
        be->cpu = msg->cpu;
    }

    if (msg->has_capacity) {
        be->capacity = msg->capacity;
    }

    be->draining = msg->has_draining ? msg->draining : 0;

    /* the workers' placement views are out of date */
    sh->pl_gen++;
}


/*
 * What the instances held when the report was taken: their connections
 * report_lag ms ago when the samples go back that far, or now when fewer
 * (a connection closed since was in the report or not: it is not counted
 * twice either way)
 */

static ngx_uint_t
ra_report_seen(ra_srv_conf_t *rcf, ra_shctx_t *sh, ra_backend_t *be,
    ngx_msec_t now)
{
    ngx_uint_t  k, held, then;

    held = be->live + be->remote_live;
    k = (rcf->report_lag + RA_HIST_TICK - 1) / RA_HIST_TICK;

    if (k == 0) {
        return held;
    }

    if (sh->hist_n == 0
        || (ngx_msec_int_t) (now - sh->hist_at) > 2 * RA_HIST_TICK)
    {
        /* no recent samples (no subscriber sharing): as held now */
        return held;
    }

    /* the samples began less than report_lag ago: the oldest */
    k = ngx_min(k, sh->hist_n - 1);

    then = be->hist[(sh->hist_pos + RA_HIST_LEN - k) % RA_HIST_LEN];

    return ngx_min(held, then);
}


/*
 * A sample of every backend's connections, every RA_HIST_TICK ms, taken
 * by the instance's subscriber (ra_share.c); the caller holds the zone's
 * mutex
 */

void
ra_report_sample(ra_shctx_t *sh, ngx_msec_t now)
{
    ngx_uint_t     i, pos;
    ra_backend_t  *be;

    if (sh->hist_n && (ngx_msec_int_t) (now - sh->hist_at) < RA_HIST_TICK) {
        return;
    }

    pos = (sh->hist_pos + 1) % RA_HIST_LEN;

    for (i = 0; i < sh->nbackends; i++) {
        be = &sh->backends[i];
        be->hist[pos] = (uint32_t) ngx_min(be->live + be->remote_live,
                                           RA_PL_LOAD_MAX);
    }

    sh->hist_pos = pos;
    sh->hist_at = now;

    if (sh->hist_n < RA_HIST_LEN) {
        sh->hist_n++;
    }
}


/* signed: the subscriber may have a later clock than this worker */

ngx_uint_t
ra_report_fresh(ra_srv_conf_t *rcf, ra_backend_t *be, ngx_msec_t now)
{
    return be->has_report
           && (ngx_msec_int_t) (now - be->reported_at)
              <= (ngx_msec_int_t) rcf->stale;
}


/*
 * The report's part of a placement input: whether the upstream's metric is
 * fresh, and the capacity.  Returns when it goes stale (0: it is not
 * fresh).  The loads follow from ra_report_load().
 */

ngx_msec_t
ra_report_input(ra_srv_conf_t *rcf, ra_backend_t *be, ra_pl_backend_t *pb,
    ngx_msec_t now)
{
    ra_zone_ctx_t  *ctx;

    pb->fresh = 0;

    if (!ra_report_fresh(rcf, be, now)) {
        return 0;
    }

    pb->fresh = (rcf->metric == RA_METRIC_CPU) ? be->has_cpu
                                               : be->has_connections;
    pb->capacity = be->capacity;

    ctx = rcf->shm_zone->data;

    if (rcf->metric == RA_METRIC_CONNECTIONS
        && be->decay && !ra_decay_empty(be->decay)
        && ra_decay_decays(&ctx->sh->fit))
    {
        /* the estimate moves by itself: a kept view holds that long */
        return now + RA_DECAY_VIEW_MS;
    }

    return be->reported_at + rcf->stale + 1;
}


/*
 * The loads of a placement input, as they are now: what a kept view reads
 * again for each candidate.  Connections through any instance count in
 * "live", in local mode too.
 */

void
ra_report_load(ra_srv_conf_t *rcf, ra_backend_t *be, ra_pl_backend_t *pb,
    ngx_msec_t now)
{
    ngx_uint_t        held;
    ra_zone_ctx_t    *ctx;
    ra_decay_pick_t   pick;

    held = be->live + be->remote_live;

    pb->live = (uint32_t) ngx_min(held, RA_PL_LOAD_MAX);
    pb->rooms = (uint32_t) ngx_min(be->rooms, RA_PL_LOAD_MAX);

    if (rcf->metric == RA_METRIC_CPU) {
        pb->reported = be->cpu;
        pb->pending = (uint32_t) ngx_min(be->pending, RA_PL_LOAD_MAX);
        return;
    }

    /* the proxy flow has nothing to decay: no pick to make */

    pick.k = RA_DECAY_NONE;
    pick.alpha = 0;

    if (be->decay && !ra_decay_empty(be->decay)) {
        ctx = rcf->shm_zone->data;
        ra_decay_pick(&ctx->sh->fit, &pick);
    }

    pb->reported = ra_report_estimate(be, &pick, now);
    pb->pending = 0;
}


/*
 * Joins answered for a backend, by this instance or another: they decay
 * from now on.  The caller holds the zone's mutex.  The sums are made at
 * the first join, from the backend's report; if the zone has no room for
 * them, the joins count until the next report, as with lifetime=off.
 */

void
ra_report_joined(ra_zone_ctx_t *ctx, ra_backend_t *be, uint32_t n,
    ngx_msec_t now)
{
    ra_decay_t  *d;

    if (be->decay == NULL) {
        d = ngx_slab_calloc_locked(ctx->shpool, sizeof(ra_decay_t));
        if (d == NULL) {
            return;
        }

        if (be->has_report && be->has_connections) {
            d->has_report = 1;
            d->reported_at = be->reported_at;
            d->direct = (be->connections > be->seen)
                        ? be->connections - be->seen : 0;
        }

        d->at = now;
        be->decay = d;
    }

    ra_decay_add(be->decay, n, now);
}


/* the connections of a backend with a connections report */

uint32_t
ra_report_estimate(ra_backend_t *be, ra_decay_pick_t *pick, ngx_msec_t now)
{
    int64_t  est, direct;

    /* the report's direct part counts in the decayed sum, below */

    direct = (int64_t) be->connections - (int64_t) be->seen;
    est = (int64_t) (be->live + be->remote_live) + ngx_min(direct, 0);

    if (est < 0) {
        est = 0;
    }

    if (be->decay == NULL) {
        /* no join yet: nothing to decay but the report's direct part */
        return (uint32_t) ngx_min(est + ngx_max(direct, 0), RA_PL_LOAD_MAX);
    }

    est += ra_decay_estimate(be->decay, pick, now);

    return (est > RA_PL_LOAD_MAX) ? RA_PL_LOAD_MAX : (uint32_t) est;
}


/*
 * What moves the total load of a kept view between two passes: the sum of
 * the loads less its constant part (the reports), over the zone (be NULL)
 * or for one backend
 */

uint64_t
ra_report_total(ra_srv_conf_t *rcf, ra_shctx_t *sh, ra_backend_t *be,
    ngx_uint_t mode)
{
    if (mode == RA_PL_LOCAL) {
        return be ? be->live + be->remote_live
                  : sh->live_total + sh->remote_total;
    }

    if (rcf->metric == RA_METRIC_CPU) {
        return be ? be->pending : sh->pending_total;
    }

    return be ? be->live + be->remote_live + be->joins + be->remote_joins
              : sh->live_total + sh->remote_total + sh->joins_total
                + sh->remote_joins_total;
}


/* ms since "at"; 0 when the subscriber's clock was ahead of this worker's */

ngx_msec_t
ra_report_age(ngx_msec_t now, ngx_msec_t at)
{
    return ((ngx_msec_int_t) (now - at) < 0) ? 0 : now - at;
}


/* the backend's state, as the status shows it */

const char *
ra_report_state(ra_srv_conf_t *rcf, ra_peer_map_t *pm, ra_backend_t *be,
    ngx_msec_t now)
{
    if (ra_peer_gone(pm->peer, ngx_time())) {
        return "down";
    }

    if (be->draining) {
        return "draining";
    }

    /* a registered backend: stale since it joined (ra_fleet.c) */

    if (be->out || (be->has_report && !ra_report_fresh(rcf, be, now))) {
        return "stale";
    }

    return "up";
}
