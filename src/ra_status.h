/*
 * The status endpoint (room_affinity_status).
 */

#ifndef RA_STATUS_H
#define RA_STATUS_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_status_handler(ngx_http_request_t *r);


#pragma GCC visibility pop

#endif /* RA_STATUS_H */
