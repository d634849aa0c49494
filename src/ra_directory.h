/*
 * The room directory: one record a room in Redis ({backend, epoch,
 * instance, expiry}), written once by the first instance that places the
 * room and adopted by every other; moves are compare-and-set on the
 * epoch.  A request for a room that the zone does not hold waits for the
 * answer (directory_wait at most) in a precontent phase handler; without
 * an answer the room is placed here and repaired later.
 */

#ifndef RA_DIRECTORY_H
#define RA_DIRECTORY_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_DIR_TICK            100       /* ms between a worker's ticks */
#define RA_DIR_TICK_BUSY       20        /* ... while repairing */
#define RA_DIR_SCAN            16384     /* buckets looked at a tick */
#define RA_DIR_BATCH           256       /* rooms repaired a tick */
#define RA_DIR_RENEW_BATCH     128       /* records renewed a call */
#define RA_DIR_RACE            1000      /* ms: another instance's record
                                            this new is a race lost */
#define RA_DIR_RENEW_MIN       1000      /* ms between renewals, at least */
#define RA_DIR_RENEW_MAX       60000     /* ... and at most */

/*
 * ra_body_ctx_t directory: the asks a request made (a second one when
 * the record's backend is gone here: the move), and whether it waits
 */
#define RA_DIR_ASK_NONE        0
#define RA_DIR_ASK_MAX         2
#define RA_DIR_ASK_DONE        RA_DIR_ASK_MAX
#define RA_DIR_ASK_COUNT       0x0f     /* the asks made */
#define RA_DIR_ASK_WAITING     0x10
#define RA_DIR_ASK_PLACED      0x20     /* its call wrote the record */


typedef void (*ra_dir_resume_pt)(ngx_http_request_t *r);


ngx_int_t ra_directory_init(ngx_conf_t *cf);
ngx_int_t ra_directory_init_process(ngx_cycle_t *cycle);
void ra_directory_exit_process(ngx_cycle_t *cycle);
ngx_int_t ra_directory_ask(ngx_http_request_t *r, ra_srv_conf_t *rcf,
    ngx_str_t *key, ra_dir_resume_pt resume);
void ra_directory_stats(ra_srv_conf_t *rcf, ra_dir_sh_t *copy);


#pragma GCC visibility pop

#endif /* RA_DIRECTORY_H */
