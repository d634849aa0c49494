/*
 * What arrives from Redis.  Every message is untrusted: it is parsed by
 * ra_message.c, and what cannot be used is counted by reason and logged
 * with a printable sample, at most once per reason and interval.
 */

#include "ra_redis_in.h"
#include "ra_report.h"
#include "ra_fleet.h"


#define RA_SAMPLE_LEN          64        /* bytes of a message logged */


/* this worker's read of the snapshot hash, one HSCAN batch at a time */
typedef struct {
    ngx_uint_t     entries;      /* fields read */
    ngx_uint_t     applied;      /* of them, matched a backend */
    ngx_uint_t     batches;
    ngx_msec_t     start;
} ra_redis_in_scan_t;


static void ra_redis_in_snapshot_scan(ra_redis_conf_t *rc,
    redisAsyncContext *ac, const char *cursor, size_t len);
static void ra_redis_in_snapshot_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_uint_t ra_redis_in_snapshot_batch(ra_redis_conf_t *rc,
    redisReply *fields, ngx_log_t *log);
static void ra_redis_in_snapshot_done(ra_redis_conf_t *rc,
    ngx_uint_t truncated, ngx_log_t *log);
static void ra_redis_in_report(ra_redis_conf_t *rc, ra_msg_type_e type,
    ngx_str_t *channel, const char *data, size_t len, ngx_uint_t snapshot,
    ngx_log_t *log);
static void ra_redis_in_reject(ra_redis_conf_t *rc, ra_msg_err_e err,
    ngx_str_t *channel, const char *detail, const char *data, size_t len,
    ngx_log_t *log);
static ngx_int_t ra_redis_in_verify(ra_redis_conf_t *rc, const char *kind,
    ngx_str_t *channel, const char **data, size_t *len, ngx_log_t *log);


/* per worker: when each reason was last logged, and how many since */
static ngx_msec_t  ra_redis_in_logged[RA_MSG_ERR_COUNT + 1];
static ngx_uint_t  ra_redis_in_suppressed[RA_MSG_ERR_COUNT + 1];

static ra_redis_in_scan_t  ra_redis_in_scan;


/* a message published on one of the subscribed channels */

void
ra_redis_in_message(ra_redis_conf_t *rc, ngx_str_t *channel,
    const char *data, size_t len, ngx_log_t *log)
{
    const char    *detail;
    ra_msg_err_e   err;

    if (channel->len == rc->channel_signaling.len
        && ngx_strncmp(channel->data, rc->channel_signaling.data,
                       channel->len) == 0)
    {
        ra_redis_in_report(rc, RA_MSG_SIGNALING, channel, data, len, 0, log);

    } else if (channel->len == rc->channel_register.len
               && ngx_strncmp(channel->data, rc->channel_register.data,
                              channel->len) == 0)
    {
        ra_redis_in_report(rc, RA_MSG_REGISTER, channel, data, len, 0, log);

    } else if (rc->share_on
               && channel->len == rc->channel_rooms.len
               && ngx_strncmp(channel->data, rc->channel_rooms.data,
                              channel->len) == 0)
    {
        if (ra_redis_in_verify(rc, "rooms", channel, &data, &len, log)
            != NGX_OK)
        {
            return;
        }

        err = ra_share_receive(&rc->share, data, len, log, &detail);

        if (err != RA_MSG_OK) {
            ra_redis_in_reject(rc, err, channel, detail, data, len, log);
        }
    }
}


/*
 * The backends' snapshot hash: each field a backend's last signaling
 * message, kept by the backends (or an agent) for an nginx that was not
 * listening when they published.
 *
 * Read with HSCAN, one batch of about RA_REDIS_SNAPSHOT_BATCH fields per
 * round trip, so one event-loop turn applies one batch: HGETALL of a hash
 * of 500,000 fields held the worker 1.8 s in one turn, longer than the
 * subscriber's take-over delay.  At most snapshot_max fields are read.
 * HSCAN may return a field twice (a rehash between batches): applying a
 * backend's last state twice is harmless.
 */

void
ra_redis_in_snapshot_request(ra_redis_conf_t *rc, redisAsyncContext *ac)
{
    ngx_memzero(&ra_redis_in_scan, sizeof(ra_redis_in_scan_t));
    ra_redis_in_scan.start = ngx_current_msec;

    ra_redis_in_snapshot_scan(rc, ac, "0", 1);
}


static void
ra_redis_in_snapshot_scan(ra_redis_conf_t *rc, redisAsyncContext *ac,
    const char *cursor, size_t len)
{
    u_char       count[NGX_INT_T_LEN];
    const char  *argv[5];
    size_t       argvlen[5];

    argv[0] = "HSCAN";
    argvlen[0] = sizeof("HSCAN") - 1;
    argv[1] = (const char *) rc->snapshot_key.data;
    argvlen[1] = rc->snapshot_key.len;
    argv[2] = cursor;
    argvlen[2] = len;
    argv[3] = "COUNT";
    argvlen[3] = sizeof("COUNT") - 1;
    argv[4] = (const char *) count;
    argvlen[4] = ngx_sprintf(count, "%d", RA_REDIS_SNAPSHOT_BATCH) - count;

    redisAsyncCommandArgv(ac, ra_redis_in_snapshot_reply, rc, 5, argv,
                          argvlen);
}


static void
ra_redis_in_snapshot_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ra_redis_conf_t  *rc = privdata;

    ngx_log_t   *log;
    ngx_uint_t   truncated;
    const char  *err;
    redisReply  *reply = r, *cursor, *fields;

    if (reply == NULL) {
        /* the link went away: the next subscription reads it again */
        return;
    }

    log = ngx_cycle->log;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        err = (reply->type == REDIS_REPLY_ERROR && reply->str)
              ? reply->str : "unexpected reply";

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "room_affinity: redis HSCAN of \"%V\" failed: %s",
                      &rc->snapshot_key, err);
        ra_redis_in_error(rc, "HSCAN", err);
        return;
    }

    cursor = reply->element[0];
    fields = reply->element[1];

    truncated = ra_redis_in_snapshot_batch(rc, fields, log);

    if (truncated || (cursor->len == 1 && cursor->str[0] == '0')) {
        ra_redis_in_snapshot_done(rc, truncated, log);
        return;
    }

    /* the next batch comes in another event-loop turn */
    ra_redis_in_snapshot_scan(rc, ac, cursor->str, cursor->len);
}


/* one batch; returns 1 once snapshot_max fields are read */

static ngx_uint_t
ra_redis_in_snapshot_batch(ra_redis_conf_t *rc, redisReply *fields,
    ngx_log_t *log)
{
    size_t       i;
    redisReply  *value;

    ra_redis_in_scan.batches++;

    for (i = 0; i + 1 < fields->elements; i += 2) {

        if (ra_redis_in_scan.entries >= rc->snapshot_max) {
            return 1;
        }

        ra_redis_in_scan.entries++;

        value = fields->element[i + 1];

        if (value->type != REDIS_REPLY_STRING) {
            continue;
        }

        ra_redis_in_report(rc, RA_MSG_SIGNALING, &rc->snapshot_key,
                           value->str, value->len, 1, log);
        ra_redis_in_scan.applied++;
    }

    /*
     * The worker is evidently alive: a batch must not cost it the
     * subscriber role (the tick refreshes the heartbeat too)
     */

    ngx_shmtx_lock(&rc->shpool->mutex);

    if (rc->sh->owner == ngx_pid) {
        rc->sh->heartbeat = ngx_current_msec;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    return ra_redis_in_scan.entries >= rc->snapshot_max;
}


static void
ra_redis_in_snapshot_done(ra_redis_conf_t *rc, ngx_uint_t truncated,
    ngx_log_t *log)
{
    if (truncated) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "room_affinity: snapshot \"%V\" has more than "
                      "snapshot_max=%ui fields, the rest is not read",
                      &rc->snapshot_key, rc->snapshot_max);
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "room_affinity: snapshot \"%V\" read, %ui backends "
                  "(%ui fields in %ui batches, %M ms)",
                  &rc->snapshot_key, ra_redis_in_scan.applied,
                  ra_redis_in_scan.entries, ra_redis_in_scan.batches,
                  ngx_current_msec - ra_redis_in_scan.start);

    ngx_shmtx_lock(&rc->shpool->mutex);
    rc->sh->snapshots++;
    rc->sh->snapshot_entries = ra_redis_in_scan.entries;
    rc->sh->snapshot_truncated = truncated;
    ngx_shmtx_unlock(&rc->shpool->mutex);
}


/* a failure, as the status shows it (the caller logs it) */

void
ra_redis_in_error(ra_redis_conf_t *rc, const char *what, const char *err)
{
    u_char  *p;

    ngx_shmtx_lock(&rc->shpool->mutex);

    p = ngx_snprintf(rc->sh->last_error, RA_REDIS_ERR_LEN, "%s: %s", what,
                     err ? err : "unknown error");
    rc->sh->last_error_len = p - rc->sh->last_error;
    rc->sh->failures++;

    ngx_shmtx_unlock(&rc->shpool->mutex);
}


static void
ra_redis_in_report(ra_redis_conf_t *rc, ra_msg_type_e type,
    ngx_str_t *channel, const char *data, size_t len, ngx_uint_t snapshot,
    ngx_log_t *log)
{
    ra_msg_t         msg;
    ngx_uint_t       matched;
    const char      *detail;
    ra_msg_err_e     err;
    ra_main_conf_t  *rmcf;

    /* a message or a snapshot entry: a snapshot entry is a signaling one */

    if (ra_redis_in_verify(rc, type == RA_MSG_REGISTER ? "register"
                                                        : "signaling",
                           channel, &data, &len, log)
        != NGX_OK)
    {
        return;
    }

    err = ra_msg_parse(type, data, len, &msg, &detail);

    if (err != RA_MSG_OK) {
        ra_redis_in_reject(rc, err, channel, detail, data, len, log);
        return;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_room_affinity_module);

    if (msg.deregister) {
        /* a registered backend leaves (ra_fleet.c) */
        matched = ra_fleet_receive(rmcf, &msg, type, snapshot, log);

    } else {
        matched = ra_report_receive(rmcf, &msg, type, snapshot, log);

        if (!matched) {
            /* a backend not configured: registers, if allowed */
            matched = ra_fleet_receive(rmcf, &msg, type, snapshot, log);
        }
    }

    ngx_shmtx_lock(&rc->shpool->mutex);

    rc->sh->last_message = ngx_current_msec;

    if (matched) {
        rc->sh->applied++;

    } else {
        rc->sh->unknown++;
    }

    ngx_shmtx_unlock(&rc->shpool->mutex);

    if (!matched) {
        ra_redis_in_reject(rc, RA_MSG_ERR_COUNT, channel,
                           "no upstream server matches the url",
                           msg.url, msg.url_len, log);
    }
}


/*
 * With a key (room_affinity_redis key=), only a message signed with it,
 * within the window, is read; without, a signature line is dropped
 * unchecked, so that backends may sign before nginx checks.  *data and
 * *len become the message without the line.
 */

static ngx_int_t
ra_redis_in_verify(ra_redis_conf_t *rc, const char *kind, ngx_str_t *channel,
    const char **data, size_t *len, ngx_log_t *log)
{
    size_t          plen;
    const char     *payload, *detail;
    ra_sign_msg_t   sm;

    if (rc->sign == NULL) {
        if (ra_sign_split(*data, *len, &sm) == RA_SIGN_OK) {
            *data = sm.payload;
            *len = sm.payload_len;
        }

        return NGX_OK;
    }

    if (*len > RA_MSG_MAX_LEN + RA_SIGN_PREFIX_MAX) {
        /* no HMAC over megabytes: no message is that long */
        ra_redis_in_reject(rc, RA_MSG_ERR_TOO_LARGE, channel,
                           "message is too long to be checked", *data, *len,
                           log);
        return NGX_DECLINED;
    }

    if (ra_sign_verify(rc->sign, kind, *data, *len, (int64_t) ngx_time(),
                       &payload, &plen, &detail)
        != RA_SIGN_OK)
    {
        ra_redis_in_reject(rc, RA_MSG_ERR_SIGNATURE, channel, detail, *data,
                           *len, log);
        return NGX_DECLINED;
    }

    *data = payload;
    *len = plen;

    return NGX_OK;
}


/* err RA_MSG_ERR_COUNT: a valid message for no known backend */

static void
ra_redis_in_reject(ra_redis_conf_t *rc, ra_msg_err_e err, ngx_str_t *channel,
    const char *detail, const char *data, size_t len, ngx_log_t *log)
{
    u_char       sample[RA_SAMPLE_LEN * 4], *p, *last;
    size_t       i;
    ngx_msec_t   now;
    ngx_uint_t   suppressed;
    const char  *reason;

    if (err != RA_MSG_ERR_COUNT) {
        ngx_shmtx_lock(&rc->shpool->mutex);
        rc->sh->rejected[err]++;
        ngx_shmtx_unlock(&rc->shpool->mutex);
    }

    /* at most one log line per reason and interval */

    now = ngx_current_msec;

    if (ra_redis_in_logged[err]
        && now - ra_redis_in_logged[err] < RA_REDIS_LOG_INTERVAL)
    {
        ra_redis_in_suppressed[err]++;
        return;
    }

    suppressed = ra_redis_in_suppressed[err];
    ra_redis_in_suppressed[err] = 0;
    ra_redis_in_logged[err] = now ? now : 1;

    /* a printable sample of the message */

    p = sample;
    last = sample + sizeof(sample) - 4;

    for (i = 0; i < len && i < RA_SAMPLE_LEN && p < last; i++) {
        if ((u_char) data[i] >= 0x20 && (u_char) data[i] < 0x7f
            && data[i] != '\\')
        {
            *p++ = (u_char) data[i];

        } else {
            p = ngx_sprintf(p, "\\x%02xd", (u_char) data[i]);
        }
    }

    reason = (err == RA_MSG_ERR_COUNT) ? "unknown_backend"
                                       : ra_msg_err_name(err);

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "room_affinity: ignored redis message on \"%V\": %s (%s)"
                  ", %uz bytes \"%*s%s\", %ui similar since last log",
                  channel, reason, detail, len, (size_t) (p - sample), sample,
                  len > RA_SAMPLE_LEN ? "..." : "", suppressed);
}
