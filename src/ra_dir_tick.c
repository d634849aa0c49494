/*
 * The room directory's background work: every worker's tick repairs the
 * rooms placed here without the directory's answer, a batch a tick, each
 * asked for as a request would ask; and every renewal interval the
 * records of the rooms held here get their expiry again, a batch a call,
 * those Redis lost written back from the zone's copy.  The zone's cursors
 * share the work between the workers.
 *
 * Calls go one way: this file calls ra_directory.c (the record's key and
 * expiry, the call, the answer applied, the figures) and reads its
 * worker's state (ra_dir_w); ra_directory.c never calls it.  The module's
 * process hooks start the tick after the directory and stop it before.
 */

#include "ra_dir_tick.h"
#include "ra_directory.h"
#include "ra_dir_link.h"
#include "ra_redis.h"


/* a renewal batch, alive until its answer */
typedef struct {
    ra_srv_conf_t           *rcf;
    ngx_uint_t               n;
    u_char                   op;
    ngx_str_t                keys[RA_DIR_RENEW_BATCH];
    ngx_str_t                args[5 + 2 * RA_DIR_RENEW_BATCH];
    struct {
        size_t               len;
        u_char               data[RA_ROOM_MAX_LEN];
    }                        rooms[RA_DIR_RENEW_BATCH];
    u_char                   buf[RA_DIR_RENEW_BATCH
                                 * (RA_ROOM_MAX_LEN + 256
                                    + RA_BACKEND_NAME_LEN + NGX_INT_T_LEN)
                                 + NGX_INT_T_LEN];
} ra_dir_renew_t;


typedef struct {
    ngx_event_t              tick;
    ngx_uint_t               busy;    /* repairing: a shorter tick */
    ngx_uint_t               connects;  /* the link's, at the last tick */
} ra_dir_tick_t;


static void ra_directory_tick(ngx_event_t *ev);
static ngx_uint_t ra_directory_repair(ra_srv_conf_t *rcf, ngx_msec_t now);
static ngx_uint_t ra_directory_renew(ra_srv_conf_t *rcf, ngx_msec_t now);
static void ra_directory_renewed(void *data, redisReply *reply,
    uint64_t rtt);


static ra_dir_tick_t  ra_dir_tk;


/* in a worker with the directory: ra_directory_init_process() set it up */

ngx_int_t
ra_dir_tick_init_process(ngx_cycle_t *cycle)
{
    if (ra_dir_w.conf == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&ra_dir_tk, sizeof(ra_dir_tick_t));

    ra_dir_tk.tick.handler = ra_directory_tick;
    ra_dir_tk.tick.log = cycle->log;
    ra_dir_tk.tick.data = ra_dir_w.conf;
    ra_dir_tk.tick.cancelable = 1;

    ngx_add_timer(&ra_dir_tk.tick, 1);

    return NGX_OK;
}


void
ra_dir_tick_exit_process(ngx_cycle_t *cycle)
{
    if (ra_dir_w.conf == NULL) {
        return;
    }

    if (ra_dir_tk.tick.timer_set) {
        ngx_del_timer(&ra_dir_tk.tick);
    }
}


static void
ra_directory_tick(ngx_event_t *ev)
{
    ngx_uint_t       i, busy, again;
    ra_zone_ctx_t   *ctx;
    ngx_msec_t       now;
    ra_srv_conf_t  **rcfp;

    if (ra_dir_w.conf == NULL || ngx_exiting) {
        return;
    }

    now = ngx_current_msec;
    busy = 0;

    ra_dir_link_tick(now);

    /*
     * the link is opened before the first new room needs it, and again
     * after a failure (with the backoff): a first request does not pay
     * for the connection and the script's loading
     */
    (void) ra_dir_link_usable(now, RA_TIME_MAX);

    /*
     * connected again: Redis may have restarted empty, or failed over to a
     * replica without the latest records; a renewal pass over every room
     * held here, idle or not, which writes back what is missing, starts
     * now rather than at its time
     */
    again = (ra_dir_link_connects() > 1
             && ra_dir_link_connects() != ra_dir_tk.connects);
    ra_dir_tk.connects = ra_dir_link_connects();

    rcfp = ra_dir_w.rmcf->upstreams.elts;

    for (i = 0; i < ra_dir_w.rmcf->upstreams.nelts; i++) {
        if (rcfp[i]->shm_zone == NULL
            || ra_peers_map(rcfp[i], ev->log) != NGX_OK)
        {
            continue;
        }

        if (again) {
            ctx = rcfp[i]->shm_zone->data;

            ngx_shmtx_lock(&ctx->shpool->mutex);

            /* every room held, idle ones too: a restarted Redis has none */
            ctx->sh->dir->renewing = 0;
            ctx->sh->dir->renew_all = 1;
            ctx->sh->dir->renew_at = now;

            ngx_shmtx_unlock(&ctx->shpool->mutex);
        }

        busy |= ra_directory_repair(rcfp[i], now);
        busy |= ra_directory_renew(rcfp[i], now);
    }

    ngx_add_timer(ev, busy ? RA_DIR_TICK_BUSY : RA_DIR_TICK);
}


/*
 * The rooms placed here without the directory's answer, a batch a tick:
 * each asked for as a request would; the answer repairs the zone.
 * Returns 1 while there may be more.
 */

static ngx_uint_t
ra_directory_repair(ra_srv_conf_t *rcf, ngx_msec_t now)
{
    size_t           len[RA_DIR_BATCH], blen[RA_DIR_BATCH];
    uint32_t         epoch[RA_DIR_BATCH];
    ngx_str_t        backend;
    ngx_uint_t       n, i, b, end;
    ra_room_t       *room;
    ra_shctx_t      *sh;
    ra_dir_sh_t     *d;
    ra_dir_call_t   *call;
    ra_zone_ctx_t   *ctx;
    static u_char    names[RA_DIR_BATCH][RA_ROOM_MAX_LEN];
    static u_char    bnames[RA_DIR_BATCH][RA_BACKEND_NAME_LEN];

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    d = sh->dir;

    if (!d->dirty) {
        return 0;
    }

    if (ra_dir_link_usable(now, ngx_max(4 * ra_dir_w.conf->directory_wait,
                                        50))
        != NGX_OK)
    {
        return 0;
    }

    n = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (!d->dirty) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return 0;
    }

    b = d->cursor;
    end = ngx_min(b + RA_DIR_SCAN, sh->mask + 1);

    for ( /* void */ ; b < end && n < RA_DIR_BATCH; b++) {
        for (room = sh->buckets[b]; room; room = room->next) {
            if (room->dir != RA_DIR_UNCONFIRMED || n == RA_DIR_BATCH) {
                continue;
            }

            d->pass_found = 1;

            len[n] = room->len;
            ngx_memcpy(names[n], room->data, room->len);
            epoch[n] = room->epoch;
            blen[n] = sh->backends[room->backend].name_len;
            ngx_memcpy(bnames[n], sh->backends[room->backend].name, blen[n]);
            n++;
        }
    }

    if (b > sh->mask) {
        /* a whole pass: done, unless it found some (more may follow) */

        if (!d->pass_found) {
            d->dirty = 0;
        }

        d->pass_found = 0;
        b = 0;
    }

    d->cursor = b;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    for (i = 0; i < n; i++) {
        call = ngx_alloc(sizeof(ra_dir_call_t), ra_dir_w.log);
        if (call == NULL) {
            break;
        }

        ngx_memzero(call, sizeof(ra_dir_call_t));

        call->rcf = rcf;
        call->op = epoch[i] ? RA_DIR_OP_MOVE : RA_DIR_OP_PLACE;
        call->repair = 1;
        call->held = -1;
        call->len = len[i];
        ngx_memcpy(call->room, names[i], len[i]);
        call->ev.handler = ra_directory_event;
        call->ev.data = call;
        call->ev.log = ra_dir_w.log;

        backend.data = bnames[i];
        backend.len = blen[i];

        if (ra_directory_send(call, &backend, epoch[i]) != NGX_OK) {
            ngx_free(call);
            break;
        }
    }

    return 1;
}


/*
 * Every renewal interval, one pass over the zone in batches: the records
 * of the rooms with live connections here get their expiry again, in one
 * call a batch, so a room in use anywhere keeps its record; a record
 * lost meanwhile is written again from the copy here
 */

static ngx_uint_t
ra_directory_renew(ra_srv_conf_t *rcf, ngx_msec_t now)
{
    u_char          *p, *q;
    ngx_str_t       *keys, *args;
    ngx_uint_t       n, b, end, interval, more;
    ra_room_t       *room;
    ra_shctx_t      *sh;
    ra_dir_sh_t     *d;
    ra_zone_ctx_t   *ctx;
    ra_dir_renew_t  *rn;
    ra_backend_t    *be;

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    d = sh->dir;

    interval = ngx_max(ngx_min(rcf->ttl / 4, RA_DIR_RENEW_MAX),
                       RA_DIR_RENEW_MIN);

    if (!d->renewing && (ngx_msec_int_t) (now - d->renew_at) < 0) {
        return 0;
    }

    if (ra_dir_link_usable(now, ngx_max(4 * ra_dir_w.conf->directory_wait,
                                        50))
        != NGX_OK)
    {
        return 0;
    }

    /* freed with the answer: its rooms are what the answer's indexes name */

    rn = ngx_alloc(sizeof(ra_dir_renew_t), ra_dir_w.log);
    if (rn == NULL) {
        return 0;
    }

    rn->rcf = rcf;
    keys = rn->keys;
    args = rn->args;
    p = rn->buf;
    n = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (!d->renewing) {
        if ((ngx_msec_int_t) (now - d->renew_at) < 0) {
            /* another worker took it */
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_free(rn);
            return 0;
        }

        d->renewing = 1;
        d->renew_cursor = 0;
        d->renew_at = now + interval;
        d->pass_all = d->renew_all;
        d->renew_all = 0;
    }

    b = d->renew_cursor;
    end = ngx_min(b + RA_DIR_SCAN, sh->mask + 1);

    for ( /* void */ ; b < end && n < RA_DIR_RENEW_BATCH; b++) {
        for (room = sh->buckets[b]; room && n < RA_DIR_RENEW_BATCH;
             room = room->next)
        {
            if (room->dir != RA_DIR_CONFIRMED
                || (room->live == 0 && !d->pass_all))
            {
                continue;
            }

            if (ra_directory_key(rcf, room->data, room->len, &keys[n], p,
                                 RA_ROOM_MAX_LEN + 256)
                != NGX_OK)
            {
                continue;
            }

            p += keys[n].len;

            be = &sh->backends[room->backend];
            args[5 + 2 * n].data = p;
            args[5 + 2 * n].len = be->name_len;
            p = ngx_cpymem(p, be->name, be->name_len);

            q = p;
            p = ngx_sprintf(p, "%uD", room->epoch);
            args[6 + 2 * n].data = q;
            args[6 + 2 * n].len = p - q;

            rn->rooms[n].len = room->len;
            ngx_memcpy(rn->rooms[n].data, room->data, room->len);

            room->confirmed = (uint32_t) now;
            n++;
        }
    }

    if (b > sh->mask) {
        d->renewing = 0;
        b = 0;
    }

    d->renew_cursor = b;
    more = d->renewing;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (n == 0) {
        ngx_free(rn);
        return more;
    }

    rn->n = n;
    rn->op = RA_DIR_OP_RENEW;
    args[0].data = &rn->op;
    args[0].len = 1;
    ngx_str_set(&args[1], "");
    args[2].data = ra_dir_w.instance;
    args[2].len = 16;
    args[3].data = p;
    args[3].len = ngx_sprintf(p, "%M", ra_directory_expiry(rcf)) - p;
    ngx_str_set(&args[4], "0");

    if (ra_dir_call(n, keys, 5 + 2 * n, args, ra_directory_renewed, rn)
        != NGX_OK)
    {
        ngx_free(rn);
        return 0;
    }

    ra_directory_count(rcf, RA_DIR_COUNT_CALL, 0);

    /* a pass under way goes on at the busy tick */
    return more;
}


/*
 * {renewed, restored, then index, backend, epoch of each record that
 * names another backend than the copy here}: the record wins
 */

static void
ra_directory_renewed(void *data, redisReply *reply, uint64_t rtt)
{
    ra_dir_renew_t  *rn = data;

    size_t            i, k;
    redisReply      **e;
    ra_dir_call_t     call;
    ra_zone_ctx_t    *ctx;
    ra_dir_record_t   rec;

    if (ra_dir_w.conf == NULL || reply == NULL) {
        ngx_free(rn);
        return;
    }

    ctx = rn->rcf->shm_zone->data;
    e = reply->element;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || (reply->elements - 2) % 3 != 0
        || e[0]->type != REDIS_REPLY_INTEGER
        || e[1]->type != REDIS_REPLY_INTEGER)
    {
        ra_directory_count(rn->rcf, RA_DIR_COUNT_ERROR, 0);
        ngx_free(rn);
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ctx->sh->dir->renewed += (ngx_uint_t) e[0]->integer;
    ctx->sh->dir->restored += (ngx_uint_t) e[1]->integer;
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    for (i = 2; i + 2 < reply->elements; i += 3) {
        if (e[i]->type != REDIS_REPLY_INTEGER
            || e[i + 1]->type != REDIS_REPLY_STRING
            || e[i + 2]->type != REDIS_REPLY_INTEGER
            || e[i]->integer < 1 || (ngx_uint_t) e[i]->integer > rn->n
            || e[i + 1]->len == 0 || e[i + 1]->len > RA_BACKEND_NAME_LEN
            || e[i + 2]->integer < 1 || e[i + 2]->integer > 0x7fffffff)
        {
            ra_directory_count(rn->rcf, RA_DIR_COUNT_ERROR, 0);
            continue;
        }

        k = (size_t) e[i]->integer - 1;

        ngx_memzero(&rec, sizeof(ra_dir_record_t));
        rec.backend.data = (u_char *) e[i + 1]->str;
        rec.backend.len = e[i + 1]->len;
        rec.epoch = (uint32_t) e[i + 2]->integer;
        rec.age = -1;

        call.rcf = rn->rcf;
        call.op = RA_DIR_OP_RENEW;
        call.len = rn->rooms[k].len;
        ngx_memcpy(call.room, rn->rooms[k].data, call.len);

        ra_directory_apply(&call, &rec);
    }

    ngx_free(rn);
}
