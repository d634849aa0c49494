/*
 * room_affinity_bench: a microbenchmark of the room table and placement
 * with their real locking, run inside an nginx worker on a real zone.
 * Built only with -DRA_BENCH=1 ("make bench-micro"); never in production.
 *
 *   GET /bench?rooms=1000000&ops=200000[&hot=1000][&reported=1][&warm=1]
 *       [&new_only=1]
 *
 * fills the upstream's zone up to "rooms" rooms, then times, each under
 * the zone's mutex as in the balancer: the lookup of a known room (drawn
 * from the whole table, or from "hot" rooms spread over it); the
 * placement of a new room (its hash, then ra_route_place(): the choice
 * among the upstream's servers); and ra_route() of a new room (lookup,
 * placement, recording in the table).  Answers JSON with the medians of
 * 9 batches in ns, and the zone bytes used per room.  New rooms are named
 * after the request, so that every request times rooms the table has
 * never seen.  With "warm", every page of the zone is touched first, as
 * in an nginx that has run for a while: the page faults of a fresh zone
 * are then not counted.  With "new_only", no lookup is timed.
 */

#include "ra_bench.h"
#include "ra_route.h"
#include "ra_reply.h"


#if (RA_BENCH)

#include <time.h>


#define RA_BENCH_BATCHES  9


static ngx_int_t ra_bench_handler(ngx_http_request_t *r);
static ngx_int_t ra_bench_fill(ra_srv_conf_t *rcf, ngx_uint_t rooms,
    ngx_log_t *log);
static void ra_bench_warm(ra_zone_ctx_t *ctx);
static uint64_t ra_bench_now(void);
static int ngx_libc_cdecl ra_bench_cmp(const void *a, const void *b);


/* names the new rooms of each request apart */
static ngx_uint_t  ra_bench_requests;


char *
ra_bench(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ra_loc_conf_t  *rlcf = conf;

    ngx_str_t                  *value;
    ra_main_conf_t             *rmcf;
    ngx_http_core_loc_conf_t   *clcf;

    value = cf->args->elts;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_room_affinity_module);

    /* the upstream is defined before the location, as the manual says */

    rlcf->bench = ra_upstream_find(rmcf, value[1].data, value[1].len);

    if (rlcf->bench) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->handler = ra_bench_handler;

        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "no room_affinity upstream \"%V\"", &value[1]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ra_bench_handler(ngx_http_request_t *r)
{
    u_char           *p;
    size_t            before, after;
    uint64_t          t0, lookup[RA_BENCH_BATCHES], route[RA_BENCH_BATCHES],
                      place[RA_BENCH_BATCHES];
    ngx_int_t         n, ops, rc;
    ngx_str_t         arg, key, *keys;
    ngx_buf_t        *b;
    ngx_uint_t        i, k, seed, rooms, found, hot, lookups, evicted;
    ra_route_t        rt;
    ra_zone_ctx_t    *ctx;
    ra_loc_conf_t    *rlcf;
    ra_srv_conf_t    *rcf;
    ngx_slab_pool_t  *shpool;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_room_affinity_module);
    rcf = rlcf->bench;

    ctx = rcf->shm_zone->data;
    shpool = ctx->shpool;

    rooms = 1000;
    ops = 100000;

    if (ra_arg(r, "rooms", &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);
        rooms = (n > 0) ? (ngx_uint_t) n : rooms;
    }

    hot = 0;

    if (ra_arg(r, "hot", &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);
        hot = (n > 0) ? (ngx_uint_t) n : 0;
    }

    if (ra_arg(r, "reported", &arg) == NGX_OK) {
        /*
         * every backend as if it had just reported (connections: its
         * rooms, capacity 1000): placement in the mode it has with Redis
         */

        ngx_shmtx_lock(&shpool->mutex);

        for (i = 0; i < ctx->sh->nbackends; i++) {
            ctx->sh->backends[i].has_report = 1;
            ctx->sh->backends[i].has_connections = 1;
            ctx->sh->backends[i].connections = ctx->sh->backends[i].rooms;
            ctx->sh->backends[i].capacity = 1000;
            ctx->sh->backends[i].reported_at = ngx_current_msec;
        }

        ctx->sh->pl_gen++;

        ngx_shmtx_unlock(&shpool->mutex);
    }

    lookups = (ra_arg(r, "new_only", &arg) != NGX_OK);

    if (ra_arg(r, "warm", &arg) == NGX_OK) {
        ra_bench_warm(ctx);
    }

    ra_bench_requests++;

    if (ra_arg(r, "ops", &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);
        ops = (n >= 10) ? n : ops;
    }

    if (ra_peers_map(rcf, r->connection->log) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    keys = ngx_pcalloc(r->pool, ops * sizeof(ngx_str_t));
    if (keys == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    before = (shpool->end - (u_char *) shpool) - shpool->pfree * ngx_pagesize;
    evicted = ctx->sh->evicted;

    if (ra_bench_fill(rcf, rooms, r->connection->log) != NGX_OK) {
        return NGX_HTTP_INSUFFICIENT_STORAGE;
    }

    after = (shpool->end - (u_char *) shpool) - shpool->pfree * ngx_pagesize;

    seed = 12345;
    found = 0;

    for (k = 0; k < RA_BENCH_BATCHES; k++) {

        /* a known room, as the balancer looks it up */

        for (i = 0; i < (ngx_uint_t) ops; i++) {
            seed = seed * 1103515245 + 12345;
            keys[i].data = keys[i].data ? keys[i].data
                                        : ngx_pnalloc(r->pool, 48);
            if (keys[i].data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* uniform over the table, or over a hot set spread in it */
            n = (seed >> 8) % (hot ? hot : rooms);
            p = ngx_sprintf(keys[i].data, "bench-%ui",
                            hot ? (n * 7919) % rooms : (ngx_uint_t) n);
            keys[i].len = p - keys[i].data;
        }

        t0 = ra_bench_now();

        for (i = 0; i < (ngx_uint_t) ops * lookups; i++) {
            ngx_shmtx_lock(&shpool->mutex);
            found += ra_room_lookup(ctx->sh,
                                    (uint32_t) ra_hash(keys[i].data,
                                                       keys[i].len),
                                    keys[i].data, keys[i].len) != NULL;
            ngx_shmtx_unlock(&shpool->mutex);
        }

        lookup[k] = (ra_bench_now() - t0) / ops * lookups;

        /* a new room: lookup, placement, recording */

        for (i = 0; i < (ngx_uint_t) ops / 10; i++) {
            p = ngx_sprintf(keys[i].data, "new-%ui-%ui-%ui-%P",
                            ra_bench_requests, k, i, ngx_pid);
            keys[i].len = p - keys[i].data;
        }

        /* the placement alone: the choice, under the zone's mutex */

        t0 = ra_bench_now();

        for (i = 0; i < (ngx_uint_t) ops / 10; i++) {
            if (ra_route_init(&rt, rcf, &keys[i], r->pool,
                              r->connection->log)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ra_peers_lock(rcf);
            ngx_shmtx_lock(&shpool->mutex);

            rc = ra_route_place(&rt, ngx_current_msec);

            ngx_shmtx_unlock(&shpool->mutex);
            ra_peers_unlock(rcf);

            if (rc < 0) {
                return NGX_HTTP_SERVICE_UNAVAILABLE;
            }
        }

        place[k] = (ra_bench_now() - t0) / (ops / 10);

        /* and recorded */

        t0 = ra_bench_now();

        for (i = 0; i < (ngx_uint_t) ops / 10; i++) {
            key = keys[i];

            if (ra_route_init(&rt, rcf, &key, r->pool, r->connection->log)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ra_peers_lock(rcf);
            rc = ra_route(&rt, 0, r->connection->log);
            ra_peers_unlock(rcf);

            if (rc != NGX_OK) {
                return NGX_HTTP_SERVICE_UNAVAILABLE;
            }
        }

        route[k] = (ra_bench_now() - t0) / (ops / 10);
    }

    ngx_qsort(lookup, RA_BENCH_BATCHES, sizeof(uint64_t), ra_bench_cmp);
    ngx_qsort(route, RA_BENCH_BATCHES, sizeof(uint64_t), ra_bench_cmp);
    ngx_qsort(place, RA_BENCH_BATCHES, sizeof(uint64_t), ra_bench_cmp);

    b = ngx_create_temp_buf(r->pool, 512);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->sh->evicted != evicted) {
        /* the new rooms pushed known ones out: the figures would lie */
        return NGX_HTTP_INSUFFICIENT_STORAGE;
    }

    b->last = ngx_sprintf(b->last, "{\"upstream\":\"%V\",\"backends\":%ui,"
                          "\"rooms\":%ui,\"lookup_ns\":%uL,"
                          "\"placement_ns\":%uL,\"new_room_ns\":%uL,"
                          "\"lookup_hits\":%ui,\"bytes_per_room\":%uz,"
                          "\"zone_bytes_used\":%uz}\n",
                          &rcf->upstream->host, rcf->peers.nmap, rooms,
                          lookup[RA_BENCH_BATCHES / 2],
                          place[RA_BENCH_BATCHES / 2],
                          route[RA_BENCH_BATCHES / 2], found,
                          (after - before) / (rooms ? rooms : 1), after);

    return ra_send(r, NGX_HTTP_OK, NULL, b);
}


static ngx_int_t
ra_bench_fill(ra_srv_conf_t *rcf, ngx_uint_t rooms, ngx_log_t *log)
{
    u_char         *p, name[64];
    uint32_t        hash;
    ngx_uint_t      i, evicted;
    ra_room_t      *room;
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    evicted = ctx->sh->evicted;

    for (i = 0; i < rooms; i++) {
        p = ngx_sprintf(name, "bench-%ui", i);
        hash = (uint32_t) ra_hash(name, p - name);

        if (ra_room_lookup(ctx->sh, hash, name, p - name)) {
            continue;
        }

        room = ra_room_create(ctx, hash, name, p - name, ngx_current_msec,
                              log);
        if (room == NULL || ctx->sh->evicted != evicted) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "room_affinity bench: zone full at %ui rooms", i);
            return NGX_ERROR;
        }

        ra_room_set_backend(ctx->sh, room,
                            rcf->peers.map[i % rcf->peers.nmap].slot);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


static void
ra_bench_warm(ra_zone_ctx_t *ctx)
{
    u_char  *p;

    /* a read and a write of the same byte: the page is then mapped */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (p = ctx->shpool->start; p < ctx->shpool->end; p += ngx_pagesize) {
        *(volatile u_char *) p = *(volatile u_char *) p;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static uint64_t
ra_bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static int ngx_libc_cdecl
ra_bench_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}

#endif /* RA_BENCH */
