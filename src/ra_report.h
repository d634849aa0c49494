/*
 * A backend's report (the origin design's register and signaling
 * messages, read from Redis or from its snapshot hash): what it means for
 * the backend's record, for placement and for the status.  The report
 * fields of ra_backend_t are written here and nowhere else.
 */

#ifndef RA_REPORT_H
#define RA_REPORT_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_HIST_TICK           250       /* ms between samples of loads */
#define RA_REPORT_LAG_MAX      ((RA_HIST_LEN - 2) * RA_HIST_TICK)


ngx_uint_t ra_report_receive(ra_main_conf_t *rmcf, ra_msg_t *msg,
    ra_msg_type_e type, ngx_uint_t snapshot, ngx_log_t *log);

/* the caller holds the zone's mutex, or reads a copy of the backend */
ngx_uint_t ra_report_fresh(ra_srv_conf_t *rcf, ra_backend_t *be,
    ngx_msec_t now);
ngx_msec_t ra_report_input(ra_srv_conf_t *rcf, ra_backend_t *be,
    ra_pl_backend_t *pb, ngx_msec_t now);
void ra_report_load(ra_srv_conf_t *rcf, ra_backend_t *be,
    ra_pl_backend_t *pb, ngx_msec_t now);
uint64_t ra_report_total(ra_srv_conf_t *rcf, ra_shctx_t *sh,
    ra_backend_t *be, ngx_uint_t mode);
void ra_report_joined(ra_zone_ctx_t *ctx, ra_backend_t *be, uint32_t n,
    ngx_msec_t now);
uint32_t ra_report_estimate(ra_backend_t *be, ra_decay_pick_t *pick,
    ngx_msec_t now);
void ra_report_sample(ra_shctx_t *sh, ngx_msec_t now);
ngx_msec_t ra_report_age(ngx_msec_t now, ngx_msec_t at);
const char *ra_report_state(ra_srv_conf_t *rcf, ra_peer_map_t *pm,
    ra_backend_t *be, ngx_msec_t now);


#pragma GCC visibility pop

#endif /* RA_REPORT_H */
