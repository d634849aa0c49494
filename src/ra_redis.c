/*
 * The Redis role of an nginx instance: one worker, elected through the
 * room_affinity_redis zone, holds the two Redis links (ra_redis_link.c);
 * a worker that misses its heartbeats, dies or shuts down hands the role
 * over.  The zone also holds what the status shows of the links and the
 * outbox of shared placements.
 */

#include "ra_redis.h"
#include "ra_redis_link.h"
#include "ra_fleet.h"


/* this worker's side of the role */
typedef struct {
    ra_redis_conf_t    *conf;
    ngx_log_t          *log;
    ngx_event_t         tick;         /* election, reconnection */
    ngx_uint_t          owner;        /* this worker holds the role */
    ngx_uint_t          exiting;
} ra_redis_worker_t;


static void ra_redis_release(ra_redis_conf_t *rc);
static void ra_redis_tick(ngx_event_t *ev);
static ngx_uint_t ra_redis_elect(ra_redis_conf_t *rc, ngx_msec_t now);


static ra_redis_worker_t  ra_redis_w;


ngx_int_t
ra_redis_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ra_redis_conf_t  *orc = data;

    ra_redis_conf_t  *rc;

    rc = shm_zone->data;

    if (rc->resolve
        && (rc->clcf->resolver == NULL
            || rc->clcf->resolver->connections.nelts == 0))
    {
        /* the http{} configuration is complete only now */
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "room_affinity_redis \"%V\" with \"resolve\" needs "
                      "a \"resolver\" in http{}", &rc->address);
        return NGX_ERROR;
    }

    if (orc) {
        /* nginx -s reload: keep the instance id and the outbox */

        if (ra_zone_version_ok(shm_zone, orc->sh->version,
                               RA_REDIS_ZONE_VERSION)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc->shpool = orc->shpool;
        rc->sh = orc->sh;

        return ra_share_init_zone(&rc->share, rc->shpool, rc->sh->share);
    }

    rc->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        rc->sh = rc->shpool->data;
        return ra_share_init_zone(&rc->share, rc->shpool, rc->sh->share);
    }

    rc->sh = ngx_slab_calloc(rc->shpool, sizeof(ra_redis_sh_t));
    if (rc->sh == NULL) {
        return NGX_ERROR;
    }

    if (ra_share_init_zone(&rc->share, rc->shpool, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    rc->sh->version = RA_REDIS_ZONE_VERSION;
    rc->sh->share = rc->share.sh;
    rc->shpool->data = rc->sh;

    return NGX_OK;
}


ngx_int_t
ra_redis_init_process(ngx_cycle_t *cycle)
{
    ra_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_room_affinity_module);
    if (rmcf == NULL || rmcf->redis == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&ra_redis_w, sizeof(ra_redis_worker_t));

    ra_redis_w.conf = rmcf->redis;
    ra_redis_w.log = cycle->log;

    ra_redis_w.tick.handler = ra_redis_tick;
    ra_redis_w.tick.log = cycle->log;
    ra_redis_w.tick.data = ra_redis_w.conf;
    ra_redis_w.tick.cancelable = 1;

    ra_redis_link_init(ra_redis_w.conf, cycle->log);

    ngx_add_timer(&ra_redis_w.tick, 1);

    return NGX_OK;
}


void
ra_redis_exit_process(ngx_cycle_t *cycle)
{
    ra_redis_conf_t  *rc = ra_redis_w.conf;

    if (rc == NULL) {
        return;
    }

    ra_redis_w.exiting = 1;

    if (ra_redis_w.tick.timer_set) {
        ngx_del_timer(&ra_redis_w.tick);
    }

    ra_redis_release(rc);
    ra_redis_link_exit();

    ra_redis_w.conf = NULL;
}


static void
ra_redis_release(ra_redis_conf_t *rc)
{
    ra_redis_link_stop();

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (rc->sh->owner == ngx_pid) {
        rc->sh->owner = 0;
        rc->sh->connected = 0;
        rc->sh->state = RA_REDIS_CONNECTING;
        ra_redis_w.owner = 0;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (!ra_redis_w.owner) {
        ra_share_open(&rc->share, 0);
    }

    ra_redis_w.owner = 0;
}


static void
ra_redis_tick(ngx_event_t *ev)
{
    ra_redis_conf_t  *rc = ev->data;

    ngx_msec_t  now, delay;

    if (ngx_exiting || ngx_quit || ngx_terminate || ra_redis_w.exiting) {
        /*
         * a worker shutting down gracefully may live on for its
         * WebSockets: hand the role over to the new workers now
         */
        ra_redis_release(rc);
        return;
    }

    now = ngx_current_msec;

    delay = RA_REDIS_TICK;

    if (ra_redis_elect(rc, now)) {
        delay = ra_redis_link_tick(now, ev->log, delay);

        /* registered backends that went stale, or left (ra_fleet.c) */
        ra_fleet_tick(ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_room_affinity_module),
                      rc->sh->state == RA_REDIS_SUBSCRIBED, now, ev->log);

    } else if (ra_redis_link_busy()) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "room_affinity: another worker subscribes to redis");
        ra_redis_link_stop();
    }

    ngx_add_timer(ev, delay);
}


static ngx_uint_t
ra_redis_elect(ra_redis_conf_t *rc, ngx_msec_t now)
{
    ngx_pid_t       owner;
    ngx_uint_t      take;
    ra_redis_sh_t  *sh;

    sh = rc->sh;

    ngx_shmtx_lock(&rc->shpool->mutex);

    owner = sh->owner;
    take = 0;

    if (owner == ngx_pid) {
        sh->heartbeat = now;

    } else if (owner == 0
               || (ngx_msec_int_t) (now - sh->heartbeat) > RA_REDIS_TAKEOVER
               || (kill(owner, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        sh->owner = ngx_pid;
        sh->heartbeat = now;
        sh->connected = 0;
        sh->state = RA_REDIS_CONNECTING;
        take = 1;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (take) {
        ra_share_open(&rc->share, 0);

        ngx_log_error(NGX_LOG_NOTICE, ra_redis_w.log, 0,
                      "room_affinity: this worker subscribes to redis \"%V\"%s",
                      &rc->address, owner ? " (taken over)" : "");
        ra_redis_link_start(now);
    }

    ra_redis_w.owner = (owner == ngx_pid || take);

    return ra_redis_w.owner;
}


void
ra_redis_stats(ra_redis_conf_t *rc, ra_redis_sh_t *copy)
{
    ngx_shmtx_lock(&rc->shpool->mutex);
    *copy = *rc->sh;
    ngx_shmtx_unlock(&rc->shpool->mutex);
}


const char *
ra_redis_state_name(ngx_uint_t state)
{
    static const char  *names[] = {
        "connecting", "subscribed", "stalled", "failed"
    };

    return state < sizeof(names) / sizeof(names[0]) ? names[state]
                                                    : "unknown";
}

