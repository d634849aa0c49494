/*
 * Is a Redis link's peer alive?  A peer that takes the connection and
 * never answers, or stops answering (a stopped process, a lost route),
 * sends no FIN: the role's tick watches both links.  A link that waits
 * for an answer (the subscription, a command, a PING) and receives
 * nothing for command_timeout is reported dead; a link silent for
 * ping_interval is sent a PING (allowed on a subscribed link), so a dead
 * peer is noticed within ping_interval + command_timeout.  What to do
 * with a dead link is ra_redis_link.c's.
 */

#include "ra_redis_watch.h"
#include "ra_hiredis.h"


/*
 * Is the link's peer alive?  Waiting: the subscriber for its subscription
 * or a PING, the command link for any reply (hiredis keeps the callbacks
 * of the commands sent and not answered in ac->replies).  Any bytes read
 * count as progress, so a long reply that keeps arriving is not cut.
 * NGX_ERROR: no answer for command_timeout, link->waited says how long.
 */

ngx_int_t
ra_redis_watch(ra_redis_conf_t *rc, ra_redis_link_t *link, ngx_msec_t now,
    ngx_log_t *log)
{
    ngx_msec_t          last, progress;
    ngx_uint_t          waiting;
    redisAsyncContext  *ac;

    static const char   ping[] = "*1\r\n$4\r\nPING\r\n";

    ac = link->ac;

    if (ac == NULL || !link->connected) {
        /* not connected yet: the connect timeout watches it */
        return NGX_OK;
    }

    last = ra_hiredis_last_read(ac);

    if (link->subscriber) {
        if (link->ping && (ngx_msec_int_t) (last - link->ping) >= 0) {
            link->ping = 0;
        }

        waiting = link->subscribed < RA_REDIS_CHANNELS(rc) || link->ping;

    } else {
        waiting = (ac->replies.head != NULL);
    }

    if (!waiting) {
        link->since = 0;
        link->waited = 0;

        if (now - last < rc->ping_interval) {
            return NGX_OK;
        }

        if (link->subscriber) {
            if (ra_hiredis_raw(ac, ping, sizeof(ping) - 1) != NGX_OK) {
                return NGX_OK;
            }

            link->ping = now;

        } else {
            redisAsyncCommand(ac, NULL, NULL, "PING");
        }

        link->since = now;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "room_affinity: redis %s link ping", link->name);

        return NGX_OK;
    }

    if (link->since == 0) {
        link->since = now;
    }

    progress = link->since;

    if ((ngx_msec_int_t) (last - progress) > 0) {
        progress = last;
    }

    link->waited = now - progress;

    if ((ngx_msec_int_t) link->waited < 0 || link->waited < rc->command_timeout)
    {
        return NGX_OK;
    }

    return NGX_ERROR;
}


/*
 * What the status shows of a subscribed link: stalled once an answer is
 * overdue by half the command timeout, and how old the last bytes are
 */

void
ra_redis_watch_state(ra_redis_conf_t *rc, ra_redis_link_t *sub,
    ra_redis_link_t *cmd)
{
    ngx_msec_t      waited;
    ra_redis_sh_t  *sh;

    sh = rc->sh;

    waited = ngx_max(sub->waited, cmd->waited);

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (sh->owner == ngx_pid && sub->ac) {
        sh->last_reply = ra_hiredis_last_read(sub->ac);

        if (sh->state == RA_REDIS_SUBSCRIBED
            && waited >= rc->command_timeout / 2)
        {
            sh->state = RA_REDIS_STALLED;

        } else if (sh->state == RA_REDIS_STALLED
                   && waited < rc->command_timeout / 2)
        {
            sh->state = RA_REDIS_SUBSCRIBED;
        }
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);
}
