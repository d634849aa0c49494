/*
 * The room directory's background work, from every worker's tick: the
 * repair of the rooms placed here without an answer, and the renewal of
 * the records of the rooms held here (ra_directory.c asks and applies the
 * answers).  Started after ra_directory_init_process(), stopped before
 * ra_directory_exit_process().
 */

#ifndef RA_DIR_TICK_H
#define RA_DIR_TICK_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#define RA_DIR_TICK            100       /* ms between a worker's ticks */
#define RA_DIR_TICK_BUSY       20        /* ... while repairing */
#define RA_DIR_SCAN            16384     /* buckets looked at a tick */
#define RA_DIR_BATCH           256       /* rooms repaired a tick */
#define RA_DIR_RENEW_BATCH     128       /* records renewed a call */


ngx_int_t ra_dir_tick_init_process(ngx_cycle_t *cycle);
void ra_dir_tick_exit_process(ngx_cycle_t *cycle);


#pragma GCC visibility pop

#endif /* RA_DIR_TICK_H */
