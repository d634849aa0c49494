/*
 * What a backend's report means.  A report replaces the backend's figures
 * and starts its pending count afresh (the rooms placed since are in the
 * figures from now on); a registration starts its slow start; "draining"
 * stops new rooms.  A snapshot entry (the hash read after each
 * subscription) is older than any report received, so it only fills in a
 * backend nothing is known of.
 */

#include "ra_report.h"


#define RA_REPORT_LOG_INTERVAL  5000   /* ms between logs of refused urls */


static void ra_report_apply(ra_shctx_t *sh, ra_backend_t *be, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, ngx_uint_t url_ok,
    ngx_msec_t now);
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
    ngx_uint_t        i, k, matched, url_ok;
    ngx_msec_t        now;
    ra_peers_t       *pt;
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

            if (!ra_peers_match_url(rcf, pm->peer, (u_char *) msg->url,
                                    msg->url_len, hostport, hlen))
            {
                continue;
            }

            matched = 1;

            /*
             * the join API answers with what the configuration allows:
             * the server's room_affinity_url (a message matched it
             * exactly), else ws://host:port and nothing after it
             */

            url_ok = ra_peers_conf_url(rcf, pm->peer) != NULL
                     || ra_report_url_plain(msg);

            if (!url_ok) {
                ra_report_url_refused(msg, &pm->peer->name, log);
            }

            ngx_shmtx_lock(&ctx->shpool->mutex);
            ra_report_apply(ctx->sh, &ctx->sh->backends[pm->slot], msg, type,
                            snapshot, url_ok, now);
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
ra_report_apply(ra_shctx_t *sh, ra_backend_t *be, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, ngx_uint_t url_ok,
    ngx_msec_t now)
{
    if (url_ok && (!be->url_len || type == RA_MSG_REGISTER || snapshot)) {
        ngx_memcpy(be->url, msg->url, msg->url_len);
        be->url_len = msg->url_len;
    }

    be->registered = 1;

    if (type == RA_MSG_REGISTER) {
        be->up_since = now ? now : 1;

    } else if ((msg->has_connections || msg->has_cpu)
               && !(snapshot && be->has_report))
    {
        /* a report without figures (draining only) keeps the last */

        be->has_report = 1;
        be->reported_at = now;
        sh->pending_total -= be->pending;
        be->pending = 0;

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


/* signed: the subscriber may have a later clock than this worker */

ngx_uint_t
ra_report_fresh(ra_srv_conf_t *rcf, ra_backend_t *be, ngx_msec_t now)
{
    return be->has_report
           && (ngx_msec_int_t) (now - be->reported_at)
              <= (ngx_msec_int_t) rcf->stale;
}


/*
 * The report's part of a placement input: the reported figure of the
 * upstream's metric and the capacity, while fresh.  Returns when it goes
 * stale (0: it is not fresh).
 */

ngx_msec_t
ra_report_input(ra_srv_conf_t *rcf, ra_backend_t *be, ra_pl_backend_t *pb,
    ngx_msec_t now)
{
    if (!ra_report_fresh(rcf, be, now)) {
        return 0;
    }

    if (rcf->metric == RA_METRIC_CPU) {
        pb->fresh = be->has_cpu;
        pb->reported = be->cpu;

    } else {
        pb->fresh = be->has_connections;
        pb->reported = be->connections;
    }

    pb->capacity = be->capacity;

    return be->reported_at + rcf->stale + 1;
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

    if (be->has_report && !ra_report_fresh(rcf, be, now)) {
        return "stale";
    }

    return "up";
}
