/*
 * The microbenchmark handler (room_affinity_bench), built with
 * -DRA_BENCH=1 only ("make bench-micro"); never in production.
 */

#ifndef RA_BENCH_H
#define RA_BENCH_H

#include "ra_module.h"


#pragma GCC visibility push(hidden)


#if (RA_BENCH)
char *ra_bench(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
#endif


#pragma GCC visibility pop

#endif /* RA_BENCH_H */
