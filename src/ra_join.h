/*
 * The join API of the origin design (room_affinity_join).
 */

#ifndef RA_JOIN_H
#define RA_JOIN_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


ngx_int_t ra_join_handler(ngx_http_request_t *r);


#pragma GCC visibility pop

#endif /* RA_JOIN_H */
