/*
 * The room directory: one record a room in Redis ({backend, epoch,
 * instance, expiry}), written once by the first instance that places the
 * room and adopted by every other; moves are compare-and-set on the
 * epoch.  A request for a room that the zone does not hold waits for the
 * answer (directory_wait at most) in a precontent phase handler; without
 * an answer the room is placed here and repaired later, from the tick of
 * ra_dir_tick.c, which also renews the records.
 */

#ifndef RA_DIRECTORY_H
#define RA_DIRECTORY_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


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


/* the script's operations, and what ra_directory_count() counts */
#define RA_DIR_OP_PLACE        'p'
#define RA_DIR_OP_MOVE         'm'
#define RA_DIR_OP_RENEW        'r'

#define RA_DIR_COUNT_CALL      0
#define RA_DIR_COUNT_RTT       1
#define RA_DIR_COUNT_ERROR     2


typedef void (*ra_dir_resume_pt)(ngx_http_request_t *r);


/* one call about one room, alive until its answer */
typedef struct {
    ngx_event_t              ev;      /* the wait, then the resumption */
    ngx_http_request_t      *r;       /* waiting for it, or NULL */
    ngx_pool_cleanup_t      *cln;     /* in r's pool */
    ra_dir_resume_pt         resume;
    ra_srv_conf_t           *rcf;
    ngx_uint_t               op;
    ngx_uint_t               answered;
    ngx_uint_t               applied;  /* its record is in the zone */
    ngx_uint_t               repair;  /* for an unconfirmed room */
    size_t                   len;
    u_char                   room[RA_ROOM_MAX_LEN];
    size_t                   blen;
    u_char                   backend[RA_BACKEND_NAME_LEN];  /* proposed */
    ngx_int_t                held;    /* the proposal's slot, or -1 */
    ra_lease_t              *lease;   /* ... its count's lease */
} ra_dir_call_t;


/* a record as the script returns it */
typedef struct {
    ngx_int_t                status;  /* 1: written by this call */
    ngx_str_t                backend;
    uint32_t                 epoch;
    ngx_str_t                instance;
    ngx_int_t                age;     /* ms */
} ra_dir_record_t;


typedef struct {
    ra_redis_conf_t         *conf;
    ra_main_conf_t          *rmcf;
    ngx_log_t               *log;
    u_char                   instance[16];
} ra_dir_worker_t;


/*
 * this worker's directory (conf NULL: none), set by
 * ra_directory_init_process(); ra_dir_tick.c reads it
 */
extern ra_dir_worker_t  ra_dir_w;


ngx_int_t ra_directory_init(ngx_conf_t *cf);
ngx_int_t ra_directory_init_process(ngx_cycle_t *cycle);
void ra_directory_exit_process(ngx_cycle_t *cycle);
ngx_int_t ra_directory_ask(ngx_http_request_t *r, ra_srv_conf_t *rcf,
    ngx_str_t *key, ra_dir_resume_pt resume);
void ra_directory_stats(ra_srv_conf_t *rcf, ra_dir_sh_t *copy);

/* for the repair and the renewal (ra_dir_tick.c) */
ngx_int_t ra_directory_send(ra_dir_call_t *call, ngx_str_t *backend,
    uint32_t epoch);
ngx_int_t ra_directory_key(ra_srv_conf_t *rcf, u_char *room, size_t len,
    ngx_str_t *key, u_char *buf, size_t size);
void ra_directory_event(ngx_event_t *ev);
void ra_directory_apply(ra_dir_call_t *call, ra_dir_record_t *rec);
ngx_msec_t ra_directory_expiry(ra_srv_conf_t *rcf);
void ra_directory_count(ra_srv_conf_t *rcf, ngx_uint_t what, uint64_t rtt);


#pragma GCC visibility pop

#endif /* RA_DIRECTORY_H */
