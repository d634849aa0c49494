/*
 * The connections each nginx instance holds to each backend, shared on
 * the rooms channel: every RA_COUNTS_TICK ms the subscriber sends those of
 * this instance that changed (all of them every RA_COUNTS_ALL ms), with
 * its join answers, and records the others' in the zone (remote_live,
 * remote_joins), so that every instance's load estimate (ra_report.c)
 * sees every connection.  An instance not heard of for RA_COUNTS_TTL ms
 * no longer counts.  The tick also samples the loads for report_lag.
 */

#include "ra_counts.h"
#include "ra_report.h"


static void ra_counts_tick(ra_main_conf_t *rmcf, ngx_msec_t now);
static void ra_counts_expire(ra_shctx_t *sh, ngx_msec_t now);


/*
 * The next count to send: a backend whose connections changed since sent
 * (any, when all are due), one upstream and slot after the other
 */

ngx_int_t
ra_counts_next(ra_counts_sh_t *sh, ngx_slab_pool_t *shpool,
    uint64_t instance, ra_counts_msg_t *out, ngx_log_t *log)
{
    ngx_msec_t       now;
    ra_backend_t    *be;
    ra_shctx_t      *zsh;
    ra_zone_ctx_t   *ctx;
    ra_srv_conf_t  **rcfp, *rcf;
    ra_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);
    now = ngx_current_msec;

    if (!sh->counting) {
        if (sh->at
            && (ngx_msec_int_t) (now - sh->at) < RA_COUNTS_TICK)
        {
            return NGX_DONE;
        }

        ra_counts_tick(rmcf, now);

        sh->at = now ? now : 1;
        sh->all = (ngx_msec_int_t) (now - sh->all_at)
                        >= RA_COUNTS_ALL;

        if (sh->all) {
            sh->all_at = now;
        }

        sh->upstream = 0;
        sh->slot = 0;
        sh->counting = 1;
    }

    rcfp = rmcf->upstreams.elts;

    for ( /* void */ ; sh->upstream < rmcf->upstreams.nelts;
         sh->upstream++, sh->slot = 0)
    {
        rcf = rcfp[sh->upstream];
        ctx = rcf->shm_zone->data;
        zsh = ctx->sh;

        ngx_shmtx_lock(&ctx->shpool->mutex);

        while (sh->slot < zsh->nbackends) {
            be = &zsh->backends[sh->slot++];

            if (be->live == be->published
                && be->joins == be->published_joins
                && !sh->all)
            {
                continue;
            }

            be->published = (uint32_t) be->live;
            be->published_joins = (uint32_t) be->joins;

            out->msg.backend_len = be->name_len;
            ngx_memcpy(out->name, be->name, be->name_len);
            out->msg.room_len = ngx_sprintf(out->count, "%uD %uD",
                                            be->published,
                                            be->published_joins)
                                - out->count;

            ngx_shmtx_unlock(&ctx->shpool->mutex);

            out->msg.instance = instance;
            out->msg.kind = RA_MSG_ROOM_COUNT;
            out->msg.upstream = (const char *) rcf->upstream->host.data;
            out->msg.upstream_len = rcf->upstream->host.len;
            out->msg.backend = (const char *) out->name;
            out->msg.room = (const char *) out->count;

            ngx_shmtx_lock(&shpool->mutex);
            sh->sent++;
            ngx_shmtx_unlock(&shpool->mutex);

            return NGX_OK;
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);
    }

    sh->counting = 0;

    return NGX_DONE;
}



/* every count tick: the samples of the loads, and silent instances out */

static void
ra_counts_tick(ra_main_conf_t *rmcf, ngx_msec_t now)
{
    ngx_uint_t       i;
    ra_zone_ctx_t   *ctx;
    ra_srv_conf_t  **rcfp;

    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        ctx = rcfp[i]->shm_zone->data;

        /* the servers have their slots before any request comes */
        (void) ra_peers_map(rcfp[i], ngx_cycle->log);

        ngx_shmtx_lock(&ctx->shpool->mutex);
        ra_counts_expire(ctx->sh, now);
        ra_report_sample(ctx->sh, now);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
    }
}



/* the caller holds the zone's mutex */

static void
ra_counts_expire(ra_shctx_t *sh, ngx_msec_t now)
{
    ngx_uint_t     i, k;
    ra_backend_t  *be;

    for (i = 0; i < RA_REMOTE_MAX; i++) {
        if (sh->remote_id[i] == 0
            || (ngx_msec_int_t) (now - sh->remote_seen[i])
               <= RA_COUNTS_TTL)
        {
            continue;
        }

        for (k = 0; k < sh->nbackends; k++) {
            be = &sh->backends[k];
            be->remote_live -= be->remote[i];
            sh->remote_total -= be->remote[i];
            be->remote[i] = 0;
            be->remote_joins -= be->remote_j[i];
            sh->remote_joins_total -= be->remote_j[i];
            be->remote_j[i] = 0;
        }

        sh->remote_id[i] = 0;
    }
}



/* the connections another instance holds to a backend */

ra_msg_err_e
ra_counts_receive(ra_counts_sh_t *cs, ngx_slab_pool_t *shpool,
    ra_msg_room_t *m, ngx_log_t *log, const char **detail)
{
    size_t           i;
    uint32_t         count, joins;
    ngx_int_t        slot;
    ngx_uint_t       k;
    ngx_msec_t       now;
    ra_shctx_t      *sh;
    ra_backend_t    *be;
    ra_zone_ctx_t   *ctx;
    ra_srv_conf_t   *rcf;
    ra_main_conf_t  *rmcf;

    /* "<connections>[ <joins>]", checked by ra_msg_room_parse() */

    count = 0;
    joins = 0;

    for (i = 0; i < m->room_len && m->room[i] != ' '; i++) {
        count = count * 10 + (uint32_t) (m->room[i] - '0');
    }

    for (i++; i < m->room_len; i++) {
        joins = joins * 10 + (uint32_t) (m->room[i] - '0');
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);

    rcf = ra_upstream_find(rmcf, (u_char *) m->upstream, m->upstream_len);

    if (rcf == NULL || ra_peers_map(rcf, log) != NGX_OK) {
        return RA_MSG_OK;
    }

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    now = ngx_current_msec;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    slot = ra_backend_find(sh, (u_char *) m->backend, m->backend_len);

    if (slot == NGX_DECLINED) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return RA_MSG_OK;
    }

    /* the instance's index: known, or a free one, or a silent one's */

    for (k = 0; k < RA_REMOTE_MAX; k++) {
        if (sh->remote_id[k] == m->instance) {
            break;
        }
    }

    if (k == RA_REMOTE_MAX) {
        ra_counts_expire(sh, now);

        for (k = 0; k < RA_REMOTE_MAX && sh->remote_id[k]; k++) {
            /* void */
        }

        if (k == RA_REMOTE_MAX) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            *detail = "more instances than counted";
            return RA_MSG_OK;
        }

        sh->remote_id[k] = m->instance;
    }

    sh->remote_seen[k] = now;

    be = &sh->backends[slot];
    be->remote_live = be->remote_live - be->remote[k] + count;
    sh->remote_total = sh->remote_total - be->remote[k] + count;
    be->remote[k] = count;
    if (joins > be->remote_j[k]) {
        /* their joins since the last count, decayed from now on */
        ra_report_joined(ctx, be, joins - be->remote_j[k], now);
    }

    be->remote_joins = be->remote_joins - be->remote_j[k] + joins;
    sh->remote_joins_total = sh->remote_joins_total - be->remote_j[k] + joins;
    be->remote_j[k] = joins;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_shmtx_lock(&shpool->mutex);
    cs->received++;
    ngx_shmtx_unlock(&shpool->mutex);

    return RA_MSG_OK;
}

