/*
 * The connections each nginx instance holds to each backend, shared
 * between the instances of one Redis (ra_counts.c).
 */

#ifndef RA_COUNTS_H
#define RA_COUNTS_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_COUNTS_TICK         250       /* ms between counts sent */
#define RA_COUNTS_ALL          2000      /* ms between counts sent unchanged */
#define RA_COUNTS_TTL          6000      /* ms an instance's counts last */


/* where the subscriber is in sending the counts, in the Redis zone */
typedef struct {
    ngx_msec_t          at;           /* the tick began */
    ngx_msec_t          all_at;       /* all were sent */
    ngx_uint_t          upstream;     /* the next to look at */
    ngx_uint_t          slot;
    unsigned            counting:1;
    unsigned            all:1;
    ngx_uint_t          sent;
    ngx_uint_t          received;
} ra_counts_sh_t;


/* a count to send, and the bytes it points to */
typedef struct {
    ra_msg_room_t       msg;
    u_char              name[RA_BACKEND_NAME_LEN];
    u_char              count[2 * NGX_INT_T_LEN];
} ra_counts_msg_t;


/* NGX_OK with *out, NGX_DONE when none is due; takes the mutexes itself */
ngx_int_t ra_counts_next(ra_counts_sh_t *sh, ngx_slab_pool_t *shpool,
    uint64_t instance, ra_counts_msg_t *out, ngx_log_t *log);
ra_msg_err_e ra_counts_receive(ra_counts_sh_t *cs, ngx_slab_pool_t *shpool,
    ra_msg_room_t *m, ngx_log_t *log, const char **detail);


#pragma GCC visibility pop

#endif /* RA_COUNTS_H */
