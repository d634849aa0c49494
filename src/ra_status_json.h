/*
 * The status as JSON.
 */

#ifndef RA_STATUS_JSON_H
#define RA_STATUS_JSON_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_status_json(ngx_http_request_t *r, ra_main_conf_t *rmcf);
ngx_int_t ra_status_json_room(ngx_http_request_t *r, ra_main_conf_t *rmcf,
    ngx_str_t *name);


#pragma GCC visibility pop

#endif /* RA_STATUS_JSON_H */
