/*
 * The workers that count connections in a zone, and what each holds: a
 * connection the balancer counts is a lease in its worker's list, so that
 * a worker that dies without freeing its connections (kill -9, a crash)
 * has its counts given back by another (ra_workers_reap()).  A worker
 * keeps a few freed leases for its next connections, so a request costs
 * no slab allocation.
 */

#include "ra_workers.h"


typedef void (*ra_workers_pt)(ra_zone_ctx_t *ctx, ngx_log_t *log);


static ra_lease_t *ra_lease_take(ra_zone_ctx_t *ctx, ra_room_t *room,
    ngx_uint_t slot);
static void ra_lease_counts_give(ra_zone_ctx_t *ctx, ngx_uint_t slot,
    ra_room_t *room, ngx_msec_t now);
static void ra_lease_drop(ra_zone_ctx_t *ctx, ra_lease_t *lease,
    ngx_msec_t now, ra_worker_t *keep);
static void ra_workers_each(ngx_cycle_t *cycle, ra_workers_pt handler);
static void ra_workers_start(ra_zone_ctx_t *ctx, ngx_log_t *log);
static void ra_workers_check(ngx_event_t *ev);
static void ra_workers_check_zone(ra_zone_ctx_t *ctx, ngx_log_t *log);
static void ra_workers_leave(ra_zone_ctx_t *ctx, ngx_log_t *log);
static void ra_workers_end(ra_zone_ctx_t *ctx, ra_worker_t *w);


static ngx_event_t       ra_workers_timer;

/* the timer's data: nginx's debug log reads a connection's fd there */
static ngx_connection_t  ra_workers_dummy;


/*
 * Counted connections (the balancer's): each is a lease in the list of
 * the worker that holds it, so that a worker that dies without freeing
 * its connections (kill -9, a crash) has its counts given back by another
 * (ra_workers_reap()).  One small slab allocation, in the critical section
 * the routing already holds; in a full zone an idle room makes way, and
 * when none can, the connection is counted without a lease (untracked).
 */

/*
 * One connection counted on a backend (and its room), as the balancer
 * routes one or the directory's proposal holds one: the counts, then the
 * lease that gives them back (NULL: counted untracked).  The room is
 * acquired first, so that making way for the lease never evicts it.
 */

ra_lease_t *
ra_lease_count(ra_zone_ctx_t *ctx, ra_room_t *room, ngx_uint_t slot)
{
    if (room) {
        ra_room_acquire(ctx->sh, room);
    }

    ctx->sh->backends[slot].live++;
    ctx->sh->live_total++;

    return ra_lease_take(ctx, room, slot);
}


static ra_lease_t *
ra_lease_take(ra_zone_ctx_t *ctx, ra_room_t *room, ngx_uint_t slot)
{
    ngx_uint_t    n;
    ra_lease_t   *lease;
    ngx_queue_t  *q;

    if (ctx->worker == NULL) {
        ctx->sh->untracked++;
        return NULL;
    }

    if (ctx->worker->nspare) {
        /* a lease this worker freed: no slab allocation */
        q = ngx_queue_head(&ctx->worker->spare);
        ngx_queue_remove(q);
        ctx->worker->nspare--;

        lease = ngx_queue_data(q, ra_lease_t, queue);
        goto found;
    }

    for (n = 0; /* void */; n++) {
        lease = ngx_slab_alloc_locked(ctx->shpool, sizeof(ra_lease_t));
        if (lease != NULL) {
            break;
        }

        if (n == RA_EVICT_MAX || ra_room_evict(ctx, 0, ngx_cycle->log) == 0) {
            ctx->sh->untracked++;
            return NULL;
        }
    }

found:

    lease->room = room;
    lease->slot = slot;
    ngx_queue_insert_head(&ctx->worker->leases, &lease->queue);

    return lease;
}


/*
 * the counts of ra_lease_count() given back: the connection ended; its
 * lease is kept for this worker's next connection (a few: the rest is the
 * zone's), or, counted without one (a full zone), the counts alone
 */

void
ra_lease_end(ra_zone_ctx_t *ctx, ra_lease_t *lease, ngx_uint_t slot,
    ra_room_t *room, ngx_msec_t now)
{
    if (lease) {
        ra_lease_drop(ctx, lease, now, ctx->worker);
        return;
    }

    ra_lease_counts_give(ctx, slot, room, now);
}


/*
 * The counts of one connection given back: its backend's and its room's
 * (with a lease or, in a zone too full for one, without)
 */

static void
ra_lease_counts_give(ra_zone_ctx_t *ctx, ngx_uint_t slot, ra_room_t *room,
    ngx_msec_t now)
{
    ra_backend_t  *be;

    be = &ctx->sh->backends[slot];

    if (be->live) {
        ctx->sh->live_total--;

        if (--be->live == 0) {
            ctx->sh->slot_events++;
        }
    }

    if (room) {
        ra_room_release(ctx->sh, room, now);
    }
}


static void
ra_lease_drop(ra_zone_ctx_t *ctx, ra_lease_t *lease, ngx_msec_t now,
    ra_worker_t *keep)
{
    ra_lease_counts_give(ctx, lease->slot, lease->room, now);

    ngx_queue_remove(&lease->queue);

    if (keep && keep->nspare < RA_LEASE_SPARE) {
        ngx_queue_insert_head(&keep->spare, &lease->queue);
        keep->nspare++;
        return;
    }

    ngx_slab_free_locked(ctx->shpool, lease);
}


/* a worker's entry freed: what it still holds given back, and its spares */

static void
ra_workers_end(ra_zone_ctx_t *ctx, ra_worker_t *w)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&w->leases)) {
        q = ngx_queue_head(&w->leases);
        ra_lease_drop(ctx, ngx_queue_data(q, ra_lease_t, queue),
                      ngx_current_msec, NULL);
    }

    while (!ngx_queue_empty(&w->spare)) {
        q = ngx_queue_head(&w->spare);
        ngx_queue_remove(q);
        ngx_slab_free_locked(ctx->shpool, ngx_queue_data(q, ra_lease_t, queue));
    }

    w->nspare = 0;
    w->pid = 0;
    ctx->sh->slot_events++;
}


/*
 * Every worker process takes an entry in the worker table of each zone;
 * first it gives back the counts of workers that died (the master
 * respawns a worker that crashed, so the new one finds the old one gone).
 * A timer does the same every RA_WORKER_CHECK ms, for workers of an older
 * configuration that the master does not respawn.
 */

ngx_int_t
ra_workers_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ra_workers_dummy.fd = (ngx_socket_t) -1;

    ra_workers_timer.handler = ra_workers_check;
    ra_workers_timer.data = &ra_workers_dummy;
    ra_workers_timer.log = cycle->log;
    ra_workers_timer.cancelable = 1;

    ra_workers_each(cycle, ra_workers_start);

    return NGX_OK;
}


/* the handler for every room_affinity zone of the cycle */

static void
ra_workers_each(ngx_cycle_t *cycle, ra_workers_pt handler)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *shm_zone;

    part = &cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].init != ra_zone_init) {
            continue;
        }

        handler(shm_zone[i].data, cycle->log);

        if (!ra_workers_timer.timer_set && !ngx_exiting) {
            ngx_add_timer(&ra_workers_timer, RA_WORKER_CHECK);
        }
    }
}


static void
ra_workers_start(ra_zone_ctx_t *ctx, ngx_log_t *log)
{
    ngx_uint_t     i, warned;
    ra_shctx_t    *sh;
    ra_worker_t   *w;

    ra_workers_reap(ctx, log);

    sh = ctx->sh;
    w = NULL;
    warned = ctx->warned;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /*
     * this process's own entry, when it has one: nginx without a master
     * process reloads in the same process (its old cycle's connections
     * stay in the list); the entry then says the newer configuration
     */

    for (i = 0; i < RA_WORKERS_MAX; i++) {
        if (sh->workers[i].pid == ngx_pid) {
            w = &sh->workers[i];
            w->gen = ctx->gen;
            break;
        }
    }

    for (i = 0; w == NULL && i < RA_WORKERS_MAX; i++) {
        if (sh->workers[i].pid == 0) {
            w = &sh->workers[i];
            w->pid = ngx_pid;
            w->gen = ctx->gen;
            w->nspare = 0;
            ngx_queue_init(&w->leases);
            ngx_queue_init(&w->spare);
        }
    }

    if (w == NULL && !warned) {
        sh->workers_full++;
    }

    if (w && warned && sh->workers_full) {
        /* it found one later: it is accounted again */
        sh->workers_full--;
    }

    ctx->worker = w;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (w == NULL && !warned) {
        ctx->warned = 1;

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "room_affinity: more than %d workers use the zone of "
                      "upstream \"%V\": this one's connections are not "
                      "given back should it die, and no server slot is "
                      "reused until it has an entry",
                      RA_WORKERS_MAX, &ctx->upstream->host);
    }
}


static void
ra_workers_check(ngx_event_t *ev)
{
    ngx_cycle_t  *cycle;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* the current cycle: without a master, a reload replaces it */
    cycle = (ngx_cycle_t *) ngx_cycle;

    ev->log = cycle->log;

    ra_workers_each(cycle, ra_workers_check_zone);
}


static void
ra_workers_check_zone(ra_zone_ctx_t *ctx, ngx_log_t *log)
{
    if (ctx->worker == NULL) {
        /* a reload without a master, or no entry was free before */
        ra_workers_start(ctx, log);

    } else {
        ra_workers_reap(ctx, log);
    }
}


/*
 * Workers whose process is gone: each lease they held is given back
 * (backend and room live counts; rooms left idle expire after ttl) and
 * their entry is freed.  The pids are checked without the lock (kill(),
 * signal 0, is a system call); an entry is reaped only if it still names
 * that pid.
 */

void
ra_workers_reap(ra_zone_ctx_t *ctx, ngx_log_t *log)
{
    ngx_uint_t    i, n, any;
    ngx_pid_t     pid, dead[RA_WORKERS_MAX];
    ra_shctx_t   *sh;
    ra_worker_t  *w;
    ngx_queue_t  *q;

    sh = ctx->sh;
    any = 0;

    for (i = 0; i < RA_WORKERS_MAX; i++) {
        pid = sh->workers[i].pid;
        dead[i] = 0;

        if (pid && pid != ngx_pid && kill(pid, 0) == -1
            && ngx_errno == NGX_ESRCH)
        {
            dead[i] = pid;
            any = 1;
        }
    }

    if (!any) {
        return;
    }

    for (i = 0; i < RA_WORKERS_MAX; i++) {

        if (dead[i] == 0) {
            continue;
        }

        ngx_shmtx_lock(&ctx->shpool->mutex);

        w = &sh->workers[i];

        if (w->pid != dead[i]) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            continue;
        }

        n = 0;

        for (q = ngx_queue_head(&w->leases);
             q != ngx_queue_sentinel(&w->leases);
             q = ngx_queue_next(q))
        {
            n++;
        }

        ra_workers_end(ctx, w);

        sh->reaped++;
        sh->reaped_live += n;
        sh->pl_gen++;

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "room_affinity: worker %P of upstream \"%V\" is "
                      "gone; the %ui connections it counted are given back",
                      dead[i], &ctx->upstream->host, n);
    }
}


/* a worker that exits gives back what it still holds, and its entry */

void
ra_workers_exit_process(ngx_cycle_t *cycle)
{
    if (ra_workers_timer.timer_set) {
        ngx_del_timer(&ra_workers_timer);
    }

    ra_workers_each(cycle, ra_workers_leave);
}


static void
ra_workers_leave(ra_zone_ctx_t *ctx, ngx_log_t *log)
{
    if (ctx->worker == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->worker->pid == ngx_pid) {
        ra_workers_end(ctx, ctx->worker);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ctx->worker = NULL;
}
