/*
 * The room directory in Redis ("room_affinity_redis ... directory=on").
 *
 * A room's record is a hash, "<prefix>room_affinity:dir:<upstream>:<room>",
 * of b (the backend's name), e (the epoch, 1 for the first placement, one
 * more for every move), i (the placing instance) and t (when, Redis's
 * clock), with an expiry.  One script does every change atomically:
 *
 *   p  place: the record if there is one, else this instance's choice,
 *      recorded with epoch 1;
 *   m  move: the new backend if the record still has the epoch read,
 *      else the record as it is (compare-and-set);
 *   d  delete, if the record still has the epoch read (compare-and-delete);
 *   r  renew the expiry of the rooms named, each with the backend and
 *      epoch held here: a missing record is written again from it (a
 *      Redis restarted empty, a failover that lost it), one naming
 *      another backend is returned, and adopted.
 *
 * Who asks: the worker that sees the request, before the balancer, in a
 * precontent phase handler (a room the zone holds, confirmed, costs no
 * call); the join API through the same ra_directory_ask().  The answer
 * goes into the zone, where the balancer finds it.  Without an answer in
 * directory_wait, the request goes on: the room is placed here on the
 * backend the call proposed, unconfirmed (with Redis away, not asked, the
 * balancer places it and ra_route.c marks it so), and the late answer, or
 * the repair pass when Redis is back, brings the zone to the record: the
 * directory's record wins, a room found on another backend is counted as
 * a split.
 *
 * Every worker keeps figures in the zone (ra_dir_sh_t) and helps with the
 * repair and the renewal from its tick; the zone's cursors share the work.
 * The tick is ra_dir_tick.c's: it calls this file (the record's key and
 * expiry, the call, the answer applied, the figures), and this file never
 * calls it.
 */

#include "ra_directory.h"
#include "ra_dir_link.h"
#include "ra_redis.h"
#include "ra_route.h"
#include "ra_body.h"
#include "ra_share.h"
#include "ra_workers.h"


static ngx_int_t ra_directory_handler(ngx_http_request_t *r);
static ra_srv_conf_t *ra_directory_upstream(ngx_http_request_t *r);
static void ra_directory_resume_phases(ngx_http_request_t *r);
static void ra_directory_cleanup(void *data);
static void ra_directory_fallback(ra_dir_call_t *call);
static void ra_directory_unhold(ra_dir_call_t *call);
static void ra_directory_hold_give(ra_zone_ctx_t *ctx, ngx_int_t held,
    ra_lease_t *lease);
static void ra_directory_reply(void *data, redisReply *reply, uint64_t rtt);
static ngx_int_t ra_directory_parse(redisReply *reply, ra_dir_record_t *rec);


/*
 * KEYS[1] the record (or, for r, every record to renew); ARGV: op,
 * backend, instance, expiry (ms), the epoch read (for r, then a backend
 * and an epoch a key).  Redis's clock gives
 * the record's age, so instances' clocks need not agree.
 */

static const char  ra_dir_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local op = ARGV[1]\n"
    "local t = redis.call('time')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if op == 'r' then\n"
    "  local out = {0, 0}\n"
    "  for i, k in ipairs(KEYS) do\n"
    "    local b, e = ARGV[4 + 2 * i], ARGV[5 + 2 * i]\n"
    "    local cur = redis.call('hmget', k, 'b', 'e')\n"
    "    if not cur[1] then\n"
    "      redis.call('hset', k, 'b', b, 'e', e, 'i', ARGV[3], 't', now)\n"
    "      redis.call('pexpire', k, ARGV[4])\n"
    "      out[2] = out[2] + 1\n"
    "    elseif cur[1] == b then\n"
    "      redis.call('pexpire', k, ARGV[4])\n"
    "      out[1] = out[1] + 1\n"
    "    else\n"
    "      out[#out + 1] = i\n"
    "      out[#out + 1] = cur[1]\n"
    "      out[#out + 1] = tonumber(cur[2]) or 1\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local k = KEYS[1]\n"
    "local rec = redis.call('hmget', k, 'b', 'e', 'i', 't')\n"
    "local e = tonumber(rec[2] or '0') or 0\n"
    "local function cur()\n"
    "  return {0, rec[1], e, rec[3] or '', now - (tonumber(rec[4]) or now)}\n"
    "end\n"
    "if op == 'p' then\n"
    "  if rec[1] then return cur() end\n"
    "  e = 1\n"
    "elseif op == 'm' then\n"
    "  if rec[1] and e ~= tonumber(ARGV[5]) then return cur() end\n"
    "  e = e + 1\n"
    "elseif op == 'd' then\n"
    "  if rec[1] and e == tonumber(ARGV[5]) then\n"
    "    redis.call('del', k)\n"
    "    return 1\n"
    "  end\n"
    "  return 0\n"
    "else\n"
    "  return redis.error_reply('room_affinity: unknown op')\n"
    "end\n"
    "redis.call('hset', k, 'b', ARGV[2], 'e', e, 'i', ARGV[3], 't', now)\n"
    "redis.call('pexpire', k, ARGV[4])\n"
    "return {1, ARGV[2], e, ARGV[3], 0}\n";


ra_dir_worker_t  ra_dir_w;


/* not declared in nginx's headers: the proxy module is part of nginx */
extern ngx_module_t  ngx_http_proxy_module;


/*
 * Postconfiguration: the phase handler, and each upstream told whether
 * the directory holds its rooms (ra_route.c marks the rooms it places
 * without an answer).  Before ra_body_init(): nginx runs a phase's
 * handlers in the reverse order of their registration, so the body is
 * read, and its room known, before this handler runs.
 */

ngx_int_t
ra_directory_init(ngx_conf_t *cf)
{
    ngx_uint_t                  i;
    ra_zone_ctx_t              *zctx;
    ra_srv_conf_t             **rcfp;
    ra_main_conf_t             *rmcf;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_room_affinity_module);

    if (rmcf->redis == NULL || !rmcf->redis->directory) {
        return NGX_OK;
    }

    rmcf->redis->share.directory = 1;

    rcfp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rcfp[i]->directory = 1;

        /* its figures in the zone (ra_zone.c) */
        zctx = rcfp[i]->shm_zone->data;
        zctx->directory = 1;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ra_directory_handler;

    return NGX_OK;
}


ngx_int_t
ra_directory_init_process(ngx_cycle_t *cycle)
{
    uint64_t         id;
    ngx_uint_t       i;
    ra_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_room_affinity_module);

    if (rmcf == NULL || rmcf->redis == NULL || !rmcf->redis->directory) {
        return NGX_OK;
    }

    ngx_memzero(&ra_dir_w, sizeof(ra_dir_worker_t));

    ra_dir_w.conf = rmcf->redis;
    ra_dir_w.rmcf = rmcf;
    ra_dir_w.log = cycle->log;

    /* the instance, as the shared placements name it (ra_share.c) */

    id = rmcf->redis->share.sh->instance;

    for (i = 0; i < 16; i++) {
        ra_dir_w.instance[15 - i] = "0123456789abcdef"[id & 0xf];
        id >>= 4;
    }

    ra_dir_link_init(rmcf->redis, ra_dir_script, cycle->log);

    /* the tick is started next, by ra_dir_tick_init_process() */

    return NGX_OK;
}


void
ra_directory_exit_process(ngx_cycle_t *cycle)
{
    if (ra_dir_w.conf == NULL) {
        return;
    }

    /* the tick is stopped already, by ra_dir_tick_exit_process() */

    /* the calls waiting are answered NULL and freed */
    ra_dir_link_exit();

    ra_dir_w.conf = NULL;
}


/*
 * A proxied request for a room_affinity upstream: the room's record
 * asked for before the balancer runs, when the zone does not hold it
 */

static ngx_int_t
ra_directory_handler(ngx_http_request_t *r)
{
    ngx_int_t        rc;
    ngx_str_t        key;
    ra_body_ctx_t   *ctx;
    ra_srv_conf_t   *rcf;

    if (r != r->main || ra_dir_w.conf == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);

    if (ctx && (ctx->directory & RA_DIR_ASK_WAITING)) {
        return NGX_AGAIN;
    }

    if (ctx && (ctx->directory & RA_DIR_ASK_COUNT) >= RA_DIR_ASK_MAX) {
        /* answered, or not in time; the balancer goes on */
        return NGX_DECLINED;
    }

    rcf = ra_directory_upstream(r);

    if (rcf == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_complex_value(r, &rcf->key, &key) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ra_body_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        /* ra_body.c's handler has run already, or is off here */
        ctx->status = NGX_DECLINED;
        ngx_http_set_ctx(r, ctx, ngx_http_room_affinity_module);
    }

    /*
     * asked again after an answer: the record's backend may be gone here,
     * and the move is asked for (no call when the room is fine)
     */

    ctx->directory++;

    rc = ra_directory_ask(r, rcf, &key, ra_directory_resume_phases);

    if (rc == NGX_AGAIN) {
        ctx->directory |= RA_DIR_ASK_WAITING;

        r->write_event_handler = ngx_http_request_empty_handler;
        return NGX_AGAIN;
    }

    ctx->directory = (ctx->directory & ~RA_DIR_ASK_COUNT) | RA_DIR_ASK_DONE;

    return NGX_DECLINED;
}


/*
 * The room_affinity upstream of the location's proxy_pass, or NULL.  The
 * proxy module's location configuration begins with its
 * ngx_http_upstream_conf_t (so in every nginx from 0.8 to 1.31); its
 * upstream is NULL without proxy_pass or with variables in it.
 */

static ra_srv_conf_t *
ra_directory_upstream(ngx_http_request_t *r)
{
    ra_srv_conf_t                 *rcf;
    ngx_http_upstream_conf_t      *ucf;
    ngx_http_upstream_srv_conf_t  *uscf;

    ucf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_module);

    if (ucf == NULL || ucf->upstream == NULL) {
        return NULL;
    }

    uscf = ucf->upstream;

    if (uscf->srv_conf == NULL) {
        /* proxy_pass to an address: no upstream block */
        return NULL;
    }

    rcf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_room_affinity_module);

    if (rcf == NULL || rcf->upstream != uscf || rcf->shm_zone == NULL) {
        return NULL;
    }

    return rcf;
}


static void
ra_directory_resume_phases(ngx_http_request_t *r)
{
    ra_body_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);
    ctx->directory &= ~RA_DIR_ASK_WAITING;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * NGX_DECLINED: go on now (the zone holds the room, confirmed; no
 * directory; Redis is away: the balancer places the room, unconfirmed);
 * NGX_AGAIN: "resume" is called with the answer, or after directory_wait.
 */

ngx_int_t
ra_directory_ask(ngx_http_request_t *r, ra_srv_conf_t *rcf, ngx_str_t *key,
    ra_dir_resume_pt resume)
{
    uint32_t             epoch;
    ngx_int_t            i;
    ngx_str_t            backend;
    ngx_int_t            held;
    ngx_uint_t           k, op, repair;
    ngx_msec_t           now, stall;
    ra_lease_t          *lease;
    ra_room_t           *room;
    ra_route_t           rt;
    ra_shctx_t          *sh;
    ra_dir_call_t       *call;
    ra_zone_ctx_t       *ctx;
    ngx_pool_cleanup_t  *cln;
    u_char               name[RA_BACKEND_NAME_LEN];

    if (ra_dir_w.conf == NULL || !rcf->directory || key->len == 0) {
        return NGX_DECLINED;
    }

    if (ra_route_init(&rt, rcf, key, r->pool, r->connection->log) != NGX_OK
        || rt.key.len == 0)
    {
        return NGX_DECLINED;
    }

    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    now = ngx_current_msec;
    epoch = 0;
    repair = 0;
    held = -1;
    lease = NULL;

    ra_peers_lock(rcf);
    ngx_shmtx_lock(&ctx->shpool->mutex);

    room = ra_room_lookup(sh, (uint32_t) rt.hash, rt.key.data, rt.key.len);

    if (room) {
        k = ra_peers_index(&rcf->peers, room->backend);

        if (k < rcf->peers.nmap
            && !ra_peer_gone(rcf->peers.map[k].peer, ngx_time()))
        {
            /*
             * 32-bit differences: a worker's clock may be a little behind
             * the one that confirmed it
             */

            if (room->dir != RA_DIR_CONFIRMED
                || (int32_t) ((uint32_t) now - room->confirmed)
                   < (int32_t) (rcf->ttl / 2))
            {
                /*
                 * known, and the record lives: no call; or placed here
                 * without an answer: the repair asks for it (every
                 * request of it waiting for Redis again would cost a
                 * wait each while Redis is slow)
                 */
                ngx_shmtx_unlock(&ctx->shpool->mutex);
                ra_peers_unlock(rcf);
                return NGX_DECLINED;
            }

            /*
             * confirmed long ago: its record may have expired, or
             * another instance's won
             */

            op = RA_DIR_OP_PLACE;
            epoch = room->epoch;
            i = k;

        } else {
            /* its backend is gone: a move, if the record is as read */
            op = RA_DIR_OP_MOVE;
            epoch = room->epoch;
            i = ra_route_place(&rt, now);
        }

    } else {
        op = RA_DIR_OP_PLACE;
        i = ra_route_place(&rt, now);

        if (i >= 0) {
            /*
             * until the answer, the proposal holds a connection's count on
             * its backend, as a request the balancer routes does: the new
             * rooms asked for while Redis answers slowly are then
             * proposed across the backends, not all to the one that was
             * least loaded at the first (a lease, given back if this
             * worker dies meanwhile)
             */
            held = (ngx_int_t) rcf->peers.map[i].slot;
            lease = ra_lease_count(ctx, NULL, held);
        }
    }

    if (i < 0) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ra_peers_unlock(rcf);
        return NGX_DECLINED;
    }

    backend.len = ngx_min(rcf->peers.map[i].peer->name.len,
                          RA_BACKEND_NAME_LEN);
    backend.data = name;
    ngx_memcpy(name, rcf->peers.map[i].peer->name.data, backend.len);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
    ra_peers_unlock(rcf);

    stall = ngx_max(4 * ra_dir_w.conf->directory_wait, 50);

    if (ra_dir_link_usable(now, stall) != NGX_OK) {
        /* Redis is away: the balancer places it, unconfirmed */
        ra_directory_hold_give(ctx, held, lease);
        return NGX_DECLINED;
    }

    call = ngx_alloc(sizeof(ra_dir_call_t), r->connection->log);
    if (call == NULL) {
        ra_directory_hold_give(ctx, held, lease);
        return NGX_DECLINED;
    }

    ngx_memzero(call, sizeof(ra_dir_call_t));

    call->rcf = rcf;
    call->held = held;
    call->lease = lease;
    call->op = op;
    call->repair = repair;
    call->len = rt.key.len;
    ngx_memcpy(call->room, rt.key.data, rt.key.len);
    call->blen = backend.len;
    ngx_memcpy(call->backend, backend.data, backend.len);

    call->ev.handler = ra_directory_event;
    call->ev.data = call;
    call->ev.log = ra_dir_w.log;

    if (ra_directory_send(call, &backend, epoch) != NGX_OK) {
        ra_directory_unhold(call);
        ngx_free(call);
        return NGX_DECLINED;
    }

    /* from here, the answer (or the link's failure) frees the call */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    cln->handler = ra_directory_cleanup;
    cln->data = call;

    call->r = r;
    call->cln = cln;
    call->resume = resume;

    /*
     * the wait counts from now, not from the loop's cached time: a busy
     * turn of the loop would otherwise eat part of it
     */
    ngx_time_update();

    ngx_add_timer(&call->ev, ra_dir_w.conf->directory_wait);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "room_affinity: directory asked for room \"%V\" (%c)",
                   &rt.key, (int) op);

    return NGX_AGAIN;
}


ngx_int_t
ra_directory_send(ra_dir_call_t *call, ngx_str_t *backend, uint32_t epoch)
{
    ngx_str_t  key, args[5];
    u_char     kbuf[RA_ROOM_MAX_LEN + 256], op, expiry[NGX_INT_T_LEN],
               ep[NGX_INT_T_LEN];

    if (ra_directory_key(call->rcf, call->room, call->len, &key, kbuf,
                         sizeof(kbuf))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    op = (u_char) call->op;

    args[0].data = &op;
    args[0].len = 1;
    args[1] = *backend;
    args[2].data = ra_dir_w.instance;
    args[2].len = 16;
    args[3].data = expiry;
    args[3].len = ngx_sprintf(expiry, "%M", ra_directory_expiry(call->rcf))
                  - expiry;
    args[4].data = ep;
    args[4].len = ngx_sprintf(ep, "%uD", epoch) - ep;

    if (ra_dir_call(1, &key, 5, args, ra_directory_reply, call) != NGX_OK) {
        return NGX_ERROR;
    }

    ra_directory_count(call->rcf, RA_DIR_COUNT_CALL, 0);

    return NGX_OK;
}


/* "<prefix>room_affinity:dir:<upstream>:<room>" */

ngx_int_t
ra_directory_key(ra_srv_conf_t *rcf, u_char *room, size_t len,
    ngx_str_t *key, u_char *buf, size_t size)
{
    u_char           *p;
    ngx_str_t        *prefix, *name;

    prefix = &ra_dir_w.conf->directory_prefix;
    name = &rcf->upstream->host;

    if (prefix->len + name->len + 1 + len > size) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, prefix->data, prefix->len);
    p = ngx_cpymem(p, name->data, name->len);
    *p++ = ':';
    p = ngx_cpymem(p, room, len);

    key->data = buf;
    key->len = p - buf;

    return NGX_OK;
}


/* the request is gone before the call's end: the call forgets it */

static void
ra_directory_cleanup(void *data)
{
    ra_dir_call_t  *call = data;

    call->r = NULL;
    call->cln = NULL;

    if (call->ev.timer_set) {
        ngx_del_timer(&call->ev);
    }
}


/*
 * The wait is over, or the answer has come (posted by the reply): the
 * request goes on; an answered call is done with
 */

void
ra_directory_event(ngx_event_t *ev)
{
    ra_dir_call_t  *call = ev->data;

    ngx_uint_t           timedout;
    ngx_connection_t    *c;
    ra_body_ctx_t       *ctx;
    ngx_http_request_t  *r;
    ra_dir_resume_pt     resume;

    if (ev->timedout && !call->answered && call->r) {
        /*
         * the answer may be in the socket already, come while this turn
         * of the loop ran other events: read before giving up.  Its reply
         * posts this event again, which is handled now instead.
         */
        ra_dir_link_poll();

        if (call->answered && ev->posted) {
            ngx_delete_posted_event(ev);
        }
    }

    r = call->r;
    resume = call->resume;
    timedout = ev->timedout && !call->answered;

    if (r) {
        call->r = NULL;
        call->cln->handler = NULL;
        call->cln = NULL;

        if (!call->applied) {
            /* no record: not in time, or the link failed */
            ra_directory_fallback(call);
        }
    }

    /* not answered: the wait is over, and the answer frees it when it comes */

    if (call->answered) {
        ngx_free(call);
    }

    if (r == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "room_affinity: directory %s, the request goes on",
                   timedout ? "wait over" : "answered");

    if (timedout) {
        /* no answer in time: not asked again for this request */
        ctx = ngx_http_get_module_ctx(r, ngx_http_room_affinity_module);
        ctx->directory = (ctx->directory & ~RA_DIR_ASK_COUNT)
                         | RA_DIR_ASK_DONE | RA_DIR_ASK_WAITING;
    }

    c = r->connection;

    resume(r);

    ngx_http_run_posted_requests(c);
}


/*
 * No record for a new room (no answer in time, or the link failed): it is
 * placed here on the backend the call proposed, unconfirmed.  The call
 * is still in Redis's queue, and when it is the first for the room its
 * record names that backend: the late answer then confirms the placement
 * instead of moving a room whose members are already there.  (A second
 * choice by the balancer, after the loads changed during the wait, would
 * differ often enough to split rooms that no other instance raced for.)
 */

static void
ra_directory_fallback(ra_dir_call_t *call)
{
    uint32_t         hash;
    ngx_int_t        slot;
    ra_room_t       *room;
    ra_shctx_t      *sh;
    ra_srv_conf_t   *rcf;
    ra_zone_ctx_t   *ctx;

    if (call->op != RA_DIR_OP_PLACE || call->repair || call->blen == 0) {
        /* a move: the balancer places it, unconfirmed */
        return;
    }

    rcf = call->rcf;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    hash = (uint32_t) ra_hash(call->room, call->len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    slot = ra_backend_find(sh, call->backend, call->blen);

    if (slot == NGX_DECLINED
        || ra_room_lookup(sh, hash, call->room, call->len) != NULL)
    {
        /* its backend left meanwhile, or the room is held already */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    room = ra_room_create(ctx, hash, call->room, call->len, ngx_current_msec,
                          ra_dir_w.log);

    if (room == NULL) {
        /* the zone is full: the balancer places it by hash */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    ra_room_set_backend(sh, room, slot);

    room->dir = RA_DIR_UNCONFIRMED;
    sh->dir->unconfirmed++;
    sh->dir->dirty = 1;
    sh->dir->pass_found = 1;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ra_dir_w.log, 0,
                   "room_affinity: no directory answer in time, room "
                   "\"%*s\" placed on its proposed backend, unconfirmed",
                   call->len, call->room);
}


/* the count a call's proposal held, given back */

static void
ra_directory_unhold(ra_dir_call_t *call)
{
    ra_zone_ctx_t  *ctx;

    if (call->held < 0) {
        return;
    }

    ctx = call->rcf->shm_zone->data;

    ra_directory_hold_give(ctx, call->held, call->lease);

    call->held = -1;
    call->lease = NULL;
}


static void
ra_directory_hold_give(ra_zone_ctx_t *ctx, ngx_int_t held, ra_lease_t *lease)
{
    if (held < 0) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ra_lease_end(ctx, lease, (ngx_uint_t) held, NULL, ngx_current_msec);
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* the script's answer, or NULL: the link failed or closed */

static void
ra_directory_reply(void *data, redisReply *reply, uint64_t rtt)
{
    ra_dir_call_t  *call = data;

    ra_body_ctx_t    *ctx;
    ra_dir_record_t   rec;

    if (ra_dir_w.conf) {
        /* the record, or the fallback, counts the room from now */
        ra_directory_unhold(call);
    }

    if (ra_dir_w.conf && reply) {
        if (ra_directory_parse(reply, &rec) == NGX_OK) {
            ra_directory_count(call->rcf, RA_DIR_COUNT_RTT, rtt);
            ra_directory_apply(call, &rec);
            call->applied = 1;

            if (call->r && rec.status == 1) {
                /* the join says "new": the first placement anywhere */
                ctx = ngx_http_get_module_ctx(call->r,
                                              ngx_http_room_affinity_module);
                ctx->directory |= RA_DIR_ASK_PLACED;
            }

        } else {
            ngx_log_error(NGX_LOG_ERR, ra_dir_w.log, 0,
                          "room_affinity: directory answer for room "
                          "\"%*s\" unusable%s%*s", call->len, call->room,
                          reply->type == REDIS_REPLY_ERROR ? ": " : "",
                          reply->type == REDIS_REPLY_ERROR
                          ? (size_t) reply->len : (size_t) 0,
                          reply->type == REDIS_REPLY_ERROR ? reply->str : "");
            ra_directory_count(call->rcf, RA_DIR_COUNT_ERROR, 0);
        }
    }

    call->answered = 1;

    if (call->r && ra_dir_w.conf) {
        /* the request goes on from the event loop, not inside hiredis */

        if (call->ev.timer_set) {
            ngx_del_timer(&call->ev);
        }

        ngx_post_event(&call->ev, &ngx_posted_events);
        return;
    }

    if (call->cln) {
        call->cln->handler = NULL;
    }

    if (call->ev.timer_set) {
        ngx_del_timer(&call->ev);
    }

    ngx_free(call);
}


/* [status, backend, epoch, instance, age]: checked, Redis is untrusted */

static ngx_int_t
ra_directory_parse(redisReply *reply, ra_dir_record_t *rec)
{
    redisReply  **e;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        return NGX_ERROR;
    }

    e = reply->element;

    if (e[0]->type != REDIS_REPLY_INTEGER
        || e[1]->type != REDIS_REPLY_STRING
        || e[2]->type != REDIS_REPLY_INTEGER
        || e[3]->type != REDIS_REPLY_STRING
        || e[4]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    if (e[1]->len == 0 || e[1]->len > RA_BACKEND_NAME_LEN
        || e[2]->integer < 1 || e[2]->integer > 0x7fffffff
        || e[3]->len > 64)
    {
        return NGX_ERROR;
    }

    rec->status = (ngx_int_t) e[0]->integer;
    rec->backend.data = (u_char *) e[1]->str;
    rec->backend.len = e[1]->len;
    rec->epoch = (uint32_t) e[2]->integer;
    rec->instance.data = (u_char *) e[3]->str;
    rec->instance.len = e[3]->len;
    rec->age = (ngx_int_t) e[4]->integer;

    return NGX_OK;
}


/*
 * The record into the zone: the room created, or moved to the record's
 * backend; the directory wins over a placement made here without it
 */

void
ra_directory_apply(ra_dir_call_t *call, ra_dir_record_t *rec)
{
    uint32_t         hash;
    ngx_int_t        slot;
    ngx_str_t        name;
    ngx_uint_t       mine, split, moved_from, from_len, level;
    ra_room_t       *room;
    ra_shctx_t      *sh;
    ra_dir_sh_t     *d;
    ra_srv_conf_t   *rcf;
    ra_zone_ctx_t   *ctx;
    u_char           from[RA_BACKEND_NAME_LEN];

    rcf = call->rcf;
    ctx = rcf->shm_zone->data;
    sh = ctx->sh;
    d = sh->dir;
    hash = (uint32_t) ra_hash(call->room, call->len);
    name.data = call->room;
    name.len = call->len;
    mine = (rec->instance.len == 16
            && ngx_memcmp(rec->instance.data, ra_dir_w.instance, 16) == 0);
    split = 0;
    moved_from = 0;
    from_len = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (call->op == RA_DIR_OP_RENEW) {
        /* a renewal found the record elsewhere: counted below */

    } else if (rec->status == 1) {
        if (call->op == RA_DIR_OP_MOVE) {
            d->moves++;

        } else {
            d->misses++;
        }

    } else {
        d->hits++;

        if (!mine) {
            d->adopted++;

            if (call->op == RA_DIR_OP_MOVE) {
                d->move_races++;

            } else if (rec->age >= 0 && rec->age < RA_DIR_RACE) {
                d->lost_races++;
            }
        }
    }

    slot = ra_backend_find(sh, rec->backend.data, rec->backend.len);

    if (slot == NGX_DECLINED) {
        /*
         * a server this configuration does not have (the instances must
         * name their servers alike): the room stays where it is here,
         * taken as confirmed, so that it is neither repaired nor asked
         * for again before ttl/2
         */
        d->errors++;

        room = ra_room_lookup(sh, hash, call->room, call->len);

        if (room) {
            room->dir = RA_DIR_CONFIRMED;
            room->epoch = rec->epoch;
            room->confirmed = (uint32_t) ngx_current_msec;
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, ra_dir_w.log, 0,
                      "room_affinity: the directory places room \"%*s\" "
                      "on \"%V\", not a server of upstream \"%V\"",
                      call->len, call->room, &rec->backend,
                      &rcf->upstream->host);
        return;
    }

    room = ra_room_lookup(sh, hash, call->room, call->len);

    if (room && room->dir == RA_DIR_CONFIRMED && room->epoch > rec->epoch) {
        /* a late answer, older than what the zone has learnt since */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    if (room == NULL) {
        room = ra_room_create(ctx, hash, call->room, call->len,
                              ngx_current_msec, ra_dir_w.log);

        if (room == NULL) {
            /* the zone is full: the balancer places it by hash */
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return;
        }

        ra_room_set_backend(sh, room, slot);

    } else if (room->backend != (ngx_uint_t) slot) {

        if (room->dir == RA_DIR_UNCONFIRMED
            || (call->op == RA_DIR_OP_RENEW && rec->epoch <= room->epoch))
        {
            /*
             * placed here while Redis did not answer, elsewhere there; or
             * a record of no later epoch on another backend (written
             * after a failover lost the one this copy was read from)
             */
            split = 1;
            d->splits++;
        }

        from_len = sh->backends[room->backend].name_len;
        ngx_memcpy(from, sh->backends[room->backend].name, from_len);
        moved_from = 1;

        ra_room_move(sh, room, slot);
    }

    if (room->dir == RA_DIR_UNCONFIRMED) {
        d->reconciled++;
    }

    room->dir = RA_DIR_CONFIRMED;
    room->epoch = rec->epoch;
    room->confirmed = (uint32_t) ngx_current_msec;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rec->status == 1 && call->op == RA_DIR_OP_MOVE) {
        /* the others hold the old record: a hint to ask again */
        ra_share_put(rcf, &name, &rec->backend, 1);
    }

    if (moved_from) {
        level = split ? NGX_LOG_WARN : NGX_LOG_INFO;

        ngx_log_error(level, ra_dir_w.log, 0,
                      "room_affinity: room \"%*s\" %s from \"%*s\" to "
                      "\"%V\" (epoch %uD), as the directory records",
                      call->len, call->room,
                      split ? "was split: moved" : "moved",
                      from_len, from, &rec->backend, rec->epoch);
    }
}


/*
 * A record lives the room's ttl past its last confirmation, and a
 * renewal interval more: a room idle everywhere loses its record about
 * when the zones drop it, and an instance re-asks after ttl/2 without a
 * confirmation (ra_directory_ask()), so it never trusts a copy whose
 * record may be gone
 */

ngx_msec_t
ra_directory_expiry(ra_srv_conf_t *rcf)
{
    return rcf->ttl + ngx_max(ngx_min(rcf->ttl / 4, RA_DIR_RENEW_MAX),
                              RA_DIR_RENEW_MIN);
}


/* a call sent, answered in rtt us, or failed */

void
ra_directory_count(ra_srv_conf_t *rcf, ngx_uint_t what, uint64_t rtt)
{
    ngx_uint_t      i;
    ra_dir_sh_t    *d;
    ra_zone_ctx_t  *ctx;
    static uint64_t bounds[RA_DIR_RTT_BUCKETS] = RA_DIR_RTT_BOUNDS;

    ctx = rcf->shm_zone->data;
    d = ctx->sh->dir;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    switch (what) {

    case RA_DIR_COUNT_RTT:
        d->rtt_sum += rtt;
        d->rtt_n++;

        for (i = 0; i < RA_DIR_RTT_BUCKETS - 1; i++) {
            if (rtt <= bounds[i]) {
                break;
            }
        }

        d->rtt_le[i]++;

        if (rtt > d->rtt_max) {
            d->rtt_max = rtt;
        }

        break;

    case RA_DIR_COUNT_ERROR:
        d->errors++;
        break;

    default:
        d->calls++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ra_directory_stats(ra_srv_conf_t *rcf, ra_dir_sh_t *copy)
{
    ra_zone_ctx_t  *ctx;

    ctx = rcf->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    *copy = *ctx->sh->dir;
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}
