/*
 * The status in Prometheus's text exposition format (?format=prometheus):
 * one "# HELP" and "# TYPE" per metric, then a sample per upstream,
 * server, zone and rejection reason.
 */

#include "ra_status_prom.h"
#include "ra_report.h"
#include "ra_fleet.h"
#include "ra_redis.h"
#include "ra_reply.h"
#include "ra_directory.h"


#define RA_PROM_UPSTREAM_LEN    4096
#define RA_PROM_BACKEND_LEN     (16 * (160 + RA_BACKEND_NAME_LEN))
#define RA_PROM_FLEET_LEN       (1024 + 128 * RA_FLEET_ERR_COUNT)
#define RA_PROM_HELP_LEN        10240
#define RA_PROM_DIRECTORY_LEN   (24 * 128)
#define RA_PROM_REDIS_LEN       (1536 + 96 * RA_MSG_ERR_COUNT)
#define RA_PROM_SENTINEL_LEN    (512 + 2 * NGX_SOCKADDR_STRLEN          \
                                 + 3 * NGX_INT64_LEN)


static u_char *ra_prom_directory(u_char *p, ra_srv_conf_t *rcf,
    ngx_str_t *up);
static ngx_int_t ra_prom_escape(ngx_pool_t *pool, u_char *data, size_t len,
    ngx_str_t *out);
static u_char *ra_prom_sentinel(ngx_pool_t *pool, u_char *p,
    ra_redis_conf_t *rc, ra_redis_sentinel_sh_t *ss);


ngx_int_t
ra_status_prom(ngx_http_request_t *r, ra_main_conf_t *rmcf)
{
    size_t            len;
    u_char           *p;
    ngx_buf_t        *b;
    ngx_uint_t        i, k, j;
    ngx_msec_t        now;
    ra_shctx_t       *sh;
    ra_backend_t      be;
    ra_peer_map_t    *pm;
    ra_zone_ctx_t    *ctx;
    ra_srv_conf_t   **rcfp, *rcf;
    ngx_str_t         up, zone, server;
    ra_redis_sh_t     rsh;
    ngx_slab_pool_t  *shpool;
    ra_decay_pick_t   pick;

    static const char  *help[] = {
        "room_affinity_backend_up gauge "
        "1 when the backend can take new rooms",
        "room_affinity_backend_state gauge "
        "the backend's state (up, down, draining, stale) as a label",
        "room_affinity_backend_live_connections gauge "
        "upstream connections through this nginx, all workers",
        "room_affinity_backend_rooms gauge rooms pinned to the backend",
        "room_affinity_backend_pending_rooms gauge "
        "rooms placed since the last report",
        "room_affinity_backend_placed_rooms_total counter "
        "rooms ever placed on the backend",
        "room_affinity_backend_reported_connections gauge "
        "connections in the last report",
        "room_affinity_backend_reported_cpu_percent gauge "
        "cpu in the last report",
        "room_affinity_backend_reported_capacity gauge "
        "capacity in the last report",
        "room_affinity_backend_report_age_seconds gauge "
        "age of the last report",
        "room_affinity_backend_registered gauge "
        "1 for a backend that registered through Redis (register=), "
        "0 for a server line",
        "room_affinity_fleet_registered gauge "
        "backends registered through Redis now",
        "room_affinity_fleet_joined_total counter "
        "registrations admitted",
        "room_affinity_fleet_left_total counter "
        "registered backends removed (stale, deregistered, made way)",
        "room_affinity_fleet_refused_total counter "
        "registrations refused, by reason",
        "room_affinity_zone_rooms gauge rooms in the zone",
        "room_affinity_zone_bytes_used gauge bytes used in the zone",
        "room_affinity_zone_bytes_total gauge size of the zone",
        "room_affinity_zone_evicted_total counter "
        "idle rooms evicted because the zone was full",
        "room_affinity_zone_expired_total counter "
        "idle rooms forgotten after the ttl",
        "room_affinity_zone_moved_total counter "
        "rooms moved because their backend was unavailable",
        "room_affinity_zone_unrecorded_total counter "
        "rooms placed without recording because the zone was full",
        "room_affinity_zone_placements_total counter "
        "rooms placed, by how: from a worker's kept view or a full pass",
        "room_affinity_zone_lifetime_seconds gauge "
        "how long connections nginx does not see are taken to last "
        "(0: until the next report)",
        "room_affinity_directory_calls_total counter "
        "calls of the room directory's script",
        "room_affinity_directory_hits_total counter "
        "new rooms here whose record existed",
        "room_affinity_directory_misses_total counter "
        "new rooms recorded with this instance's placement",
        "room_affinity_directory_adopted_total counter "
        "records of other instances adopted",
        "room_affinity_directory_lost_races_total counter "
        "records another instance made less than 1 s before",
        "room_affinity_directory_moves_total counter "
        "moves committed (compare-and-set on the epoch)",
        "room_affinity_directory_move_races_total counter "
        "moves refused because the record had moved",
        "room_affinity_directory_unconfirmed_total counter "
        "rooms placed here without the directory's answer",
        "room_affinity_directory_reconciled_total counter "
        "unconfirmed rooms later checked against the directory",
        "room_affinity_directory_splits_total counter "
        "unconfirmed rooms the directory had on another backend",
        "room_affinity_directory_renewed_total counter "
        "record expiries renewed for rooms with live connections",
        "room_affinity_directory_restored_total counter "
        "records found missing by the renewal and written again",
        "room_affinity_directory_errors_total counter "
        "directory calls without a usable answer",
        "room_affinity_directory_rtt_seconds histogram "
        "round-trip time of the directory's calls",
        "room_affinity_redis_connected gauge 1 when subscribed",
        "room_affinity_redis_state gauge "
        "1 for the subscriber link's state "
        "(connecting, subscribed, stalled, failed)",
        "room_affinity_redis_last_reply_age_seconds gauge "
        "since the subscriber link last received anything",
        "room_affinity_redis_connects_total counter subscriptions made",
        "room_affinity_redis_failures_total counter "
        "connection failures and losses",
        "room_affinity_redis_messages_applied_total counter "
        "messages applied to a backend",
        "room_affinity_redis_messages_unknown_total counter "
        "messages for a url that matches no server",
        "room_affinity_redis_messages_rejected_total counter "
        "messages rejected, by reason",
        "room_affinity_redis_sentinel_master gauge "
        "1 for the master the Sentinels named and the Sentinel that did",
        "room_affinity_redis_sentinel_lookups_total counter "
        "answers of Sentinels",
        "room_affinity_redis_sentinel_switches_total counter "
        "failovers followed to a new master",
        "room_affinity_redis_sentinel_failures_total counter "
        "Sentinels that did not answer",
        NULL
    };

    len = RA_PROM_HELP_LEN + RA_PROM_REDIS_LEN;

    if (rmcf->redis && rmcf->redis->sentinels) {
        len += RA_PROM_SENTINEL_LEN + 2 * rmcf->redis->master_name.len;
    }
    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        len += RA_PROM_UPSTREAM_LEN + RA_PROM_FLEET_LEN
               + RA_PROM_DIRECTORY_LEN
               + 24 * rcfp[i]->upstream->host.len
               + rcfp[i]->peers.nmap * (RA_PROM_BACKEND_LEN
                                  + 16 * rcfp[i]->upstream->host.len)
               + 24 * (rcfp[i]->upstream->host.len
                       + rcfp[i]->zone_name.len);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    now = ngx_current_msec;

    /* "# HELP name text" and "# TYPE name kind" from "name kind text" */

    for (j = 0; help[j]; j++) {
        k = ngx_strchr(help[j], ' ') - help[j];
        i = ngx_strchr(help[j] + k + 1, ' ') - help[j];

        p = ngx_sprintf(p, "# HELP %*s %s\n# TYPE %*s %*s\n",
                        k, help[j], help[j] + i + 1, k, help[j],
                        i - k - 1, help[j] + k + 1);
    }

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcf = rcfp[i];
        ctx = rcf->shm_zone->data;
        sh = ctx->sh;
        shpool = ctx->shpool;

        if (ra_prom_escape(r->pool, rcf->upstream->host.data,
                           rcf->upstream->host.len, &up) != NGX_OK
            || ra_prom_escape(r->pool, rcf->zone_name.data,
                              rcf->zone_name.len, &zone) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (k = 0; k < rcf->peers.nmap; k++) {
            pm = &rcf->peers.map[k];

            ngx_shmtx_lock(&shpool->mutex);
            be = sh->backends[pm->slot];
            ngx_shmtx_unlock(&shpool->mutex);

            if (ra_prom_escape(r->pool, be.name, be.name_len, &server)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

#define RA_LABELS  "{upstream=\"%V\",server=\"%V\"}"
#define RA_LABEL_ARGS  &up, &server

            p = ngx_sprintf(p, "room_affinity_backend_up" RA_LABELS " %d\n",
                            RA_LABEL_ARGS,
                            ngx_strcmp(ra_report_state(rcf, pm, &be, now),
                                       "up") == 0);
            p = ngx_sprintf(p, "room_affinity_backend_state"
                            "{upstream=\"%V\",server=\"%V\",state=\"%s\"} 1\n",
                            RA_LABEL_ARGS, ra_report_state(rcf, pm, &be, now));
            p = ngx_sprintf(p, "room_affinity_backend_registered"
                            RA_LABELS " %d\n", RA_LABEL_ARGS,
                            be.dynamic ? 1 : 0);
            p = ngx_sprintf(p, "room_affinity_backend_live_connections"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.live);
            p = ngx_sprintf(p, "room_affinity_backend_rooms" RA_LABELS
                            " %ui\n", RA_LABEL_ARGS, be.rooms);
            p = ngx_sprintf(p, "room_affinity_backend_pending_rooms"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.pending);
            p = ngx_sprintf(p, "room_affinity_backend_placed_rooms_total"
                            RA_LABELS " %ui\n", RA_LABEL_ARGS, be.placed);

            if (be.has_report) {
                if (be.has_connections) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_connections"
                                RA_LABELS " %uD\n", RA_LABEL_ARGS,
                                be.connections);
                }

                if (be.has_cpu) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_cpu_percent"
                                RA_LABELS " %uD.%02uD\n", RA_LABEL_ARGS,
                                be.cpu / 100, be.cpu % 100);
                }

                if (be.capacity) {
                    p = ngx_sprintf(p,
                                "room_affinity_backend_reported_capacity"
                                RA_LABELS " %uD\n", RA_LABEL_ARGS,
                                be.capacity);
                }

                p = ngx_sprintf(p, "room_affinity_backend_report_age_seconds"
                                RA_LABELS " %M.%03M\n", RA_LABEL_ARGS,
                                ra_report_age(now, be.reported_at) / 1000,
                                ra_report_age(now, be.reported_at) % 1000);
            }

#undef RA_LABELS
#undef RA_LABEL_ARGS
        }

        ngx_shmtx_lock(&shpool->mutex);

#define RA_ZONE(name, value)                                                  \
        p = ngx_sprintf(p, "room_affinity_zone_" name                         \
                        "{upstream=\"%V\",zone=\"%V\"} %uz\n",                 \
                        &up, &zone,                                           \
                        (size_t) (value))

        RA_ZONE("rooms", sh->rooms);
        RA_ZONE("bytes_used", (shpool->end - (u_char *) shpool)
                              - shpool->pfree * ngx_pagesize);
        RA_ZONE("bytes_total", shpool->end - (u_char *) shpool);
        RA_ZONE("evicted_total", sh->evicted);
        RA_ZONE("expired_total", sh->expired);
        RA_ZONE("moved_total", sh->moved);
        RA_ZONE("unrecorded_total", sh->unrecorded);

#undef RA_ZONE

        /* 0: connections nginx does not see are counted until a report */
        ra_decay_pick(&sh->fit, &pick);
        p = ngx_sprintf(p, "room_affinity_zone_lifetime_seconds"
                        "{upstream=\"%V\",zone=\"%V\"} %uL.%03uL\n",
                        &up, &zone, ra_decay_lifetime(&pick) / 1000,
                        ra_decay_lifetime(&pick) % 1000);

        p = ngx_sprintf(p, "room_affinity_zone_placements_total"
                        "{upstream=\"%V\",zone=\"%V\",pass=\"reused_view\"}"
                        " %ui\n", &up, &zone, sh->placed_viewed);
        p = ngx_sprintf(p, "room_affinity_zone_placements_total"
                        "{upstream=\"%V\",zone=\"%V\",pass=\"full_pass\"}"
                        " %ui\n",
                        &up, &zone, sh->placed_full);

        if (rcf->fleet) {
            p = ngx_sprintf(p, "room_affinity_fleet_registered"
                            "{upstream=\"%V\"} %ui\n"
                            "room_affinity_fleet_joined_total"
                            "{upstream=\"%V\"} %ui\n"
                            "room_affinity_fleet_left_total"
                            "{upstream=\"%V\"} %ui\n",
                            &up, sh->fleet.active, &up, sh->fleet.joined,
                            &up, sh->fleet.left);

            for (j = 0; j < RA_FLEET_ERR_COUNT; j++) {
                p = ngx_sprintf(p, "room_affinity_fleet_refused_total"
                                "{upstream=\"%V\",reason=\"%s\"} %ui\n",
                                &up, ra_fleet_err_name(j),
                                sh->fleet.rejected[j]);
            }
        }

        ngx_shmtx_unlock(&shpool->mutex);

        if (rcfp[i]->directory) {
            p = ra_prom_directory(p, rcfp[i], &up);
        }
    }

    if (rmcf->redis) {
        ra_redis_stats(rmcf->redis, &rsh);

        p = ngx_sprintf(p, "room_affinity_redis_connected %d\n"
                        "room_affinity_redis_connects_total %ui\n"
                        "room_affinity_redis_failures_total %ui\n"
                        "room_affinity_redis_messages_applied_total %ui\n"
                        "room_affinity_redis_messages_unknown_total %ui\n",
                        rsh.connected ? 1 : 0, rsh.connects, rsh.failures,
                        rsh.applied, rsh.unknown);

        for (j = RA_REDIS_CONNECTING; j <= RA_REDIS_FAILED; j++) {
            p = ngx_sprintf(p, "room_affinity_redis_state{state=\"%s\"} %d\n",
                            ra_redis_state_name(j), rsh.state == j ? 1 : 0);
        }

        if (rsh.owner && rsh.last_reply) {
            p = ngx_sprintf(p, "room_affinity_redis_last_reply_age_seconds "
                            "%M.%03M\n", (now - rsh.last_reply) / 1000,
                            (now - rsh.last_reply) % 1000);
        }

        for (j = 1; j < RA_MSG_ERR_COUNT; j++) {
            p = ngx_sprintf(p, "room_affinity_redis_messages_rejected_total"
                            "{reason=\"%s\"} %ui\n",
                            ra_msg_err_name((ra_msg_err_e) j),
                            rsh.rejected[j]);
        }

        if (rmcf->redis->sentinels) {
            p = ra_prom_sentinel(r->pool, p, rmcf->redis, &rsh.sentinel);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    b->last = p;

    return ra_send(r, NGX_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                   b);
}


/* the master as labels (1, or nothing while none is known), and counters */

static u_char *
ra_prom_sentinel(ngx_pool_t *pool, u_char *p, ra_redis_conf_t *rc,
    ra_redis_sentinel_sh_t *ss)
{
    ngx_str_t  name;

    ss->host[NGX_INET6_ADDRSTRLEN] = '\0';
    ss->answered[NGX_SOCKADDR_STRLEN] = '\0';

    if (ss->port) {
        if (ra_prom_escape(pool, rc->master_name.data, rc->master_name.len,
                           &name)
            != NGX_OK)
        {
            return NULL;
        }

        p = ngx_sprintf(p, ngx_strchr(ss->host, ':')
                           ? "room_affinity_redis_sentinel_master"
                             "{master_name=\"%V\",address=\"[%s]:%ui\","
                             "sentinel=\"%s\"} 1\n"
                           : "room_affinity_redis_sentinel_master"
                             "{master_name=\"%V\",address=\"%s:%ui\","
                             "sentinel=\"%s\"} 1\n",
                        &name, ss->host, ss->port, ss->answered);
    }

    return ngx_sprintf(p, "room_affinity_redis_sentinel_lookups_total %ui\n"
                       "room_affinity_redis_sentinel_switches_total %ui\n"
                       "room_affinity_redis_sentinel_failures_total %ui\n",
                       ss->lookups, ss->switches, ss->failures);
}


/* the room directory's figures (ra_directory.c) */

static u_char *
ra_prom_directory(u_char *p, ra_srv_conf_t *rcf, ngx_str_t *up)
{
    ngx_uint_t       i, n;
    ra_dir_sh_t      d;
    static uint64_t  bounds[RA_DIR_RTT_BUCKETS] = RA_DIR_RTT_BOUNDS;

    ra_directory_stats(rcf, &d);

#define RA_DIR(name, value)                                                   \
    p = ngx_sprintf(p, "room_affinity_directory_" name "{upstream=\"%V\"}"   \
                    " %ui\n", up, (ngx_uint_t) (value))

    RA_DIR("calls_total", d.calls);
    RA_DIR("hits_total", d.hits);
    RA_DIR("misses_total", d.misses);
    RA_DIR("adopted_total", d.adopted);
    RA_DIR("lost_races_total", d.lost_races);
    RA_DIR("moves_total", d.moves);
    RA_DIR("move_races_total", d.move_races);
    RA_DIR("unconfirmed_total", d.unconfirmed);
    RA_DIR("reconciled_total", d.reconciled);
    RA_DIR("splits_total", d.splits);
    RA_DIR("renewed_total", d.renewed);
    RA_DIR("restored_total", d.restored);
    RA_DIR("errors_total", d.errors);
    RA_DIR("rtt_seconds_count", d.rtt_n);

#undef RA_DIR

    n = 0;

    for (i = 0; i < RA_DIR_RTT_BUCKETS; i++) {
        n += d.rtt_le[i];

        if (bounds[i]) {
            p = ngx_sprintf(p, "room_affinity_directory_rtt_seconds_bucket"
                            "{upstream=\"%V\",le=\"%uL.%06uL\"} %ui\n", up,
                            bounds[i] / 1000000, bounds[i] % 1000000, n);

        } else {
            p = ngx_sprintf(p, "room_affinity_directory_rtt_seconds_bucket"
                            "{upstream=\"%V\",le=\"+Inf\"} %ui\n", up, n);
        }
    }

    return ngx_sprintf(p, "room_affinity_directory_rtt_seconds_sum"
                       "{upstream=\"%V\"} %uL.%06uL\n", up,
                       d.rtt_sum / 1000000, d.rtt_sum % 1000000);
}


static ngx_int_t
ra_prom_escape(ngx_pool_t *pool, u_char *data, size_t len, ngx_str_t *out)
{
    u_char  *p, *last;

    /* a label value: backslash, double quote and newline are escaped */

    out->data = ngx_pnalloc(pool, 2 * len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    for (last = data + len; data < last; data++) {
        if (*data == '\\' || *data == '"') {
            *p++ = '\\';
            *p++ = *data;

        } else if (*data == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = *data;
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}

