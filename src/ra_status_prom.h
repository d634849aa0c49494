/*
 * The status in Prometheus's text format.
 */

#ifndef RA_STATUS_PROM_H
#define RA_STATUS_PROM_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_status_prom(ngx_http_request_t *r, ra_main_conf_t *rmcf);


#pragma GCC visibility pop

#endif /* RA_STATUS_PROM_H */
