/*
 * Placement of new rooms: plain C, no nginx headers.  The module, the
 * simulator (bench/sim) and the microbenchmark all call this very code.
 */

#ifndef RA_PLACEMENT_H
#define RA_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>


/* what placement knows of one backend at the moment of a placement */
typedef struct {
    uint32_t    weight;       /* configured server weight, >= 1 */
    uint32_t    capacity;     /* reported capacity (metric units), 0: none */
    uint32_t    reported;     /* reported metric (connections or cpu) */
    uint32_t    pending;      /* rooms placed here since that report */
    uint32_t    live;         /* live upstream connections, this nginx */
    uint32_t    rooms;        /* rooms currently pinned here */
    uint32_t    up_ms;        /* ms since it became able to take rooms;
                                 UINT32_MAX when long ago (slow start) */
    unsigned    fresh:1;      /* reported/pending/capacity are valid
                                 (a report younger than "stale") */
    unsigned    available:1;  /* may take a new room: up, not draining,
                                 not failed, not max_conns-full */
} ra_pl_backend_t;


/*
 * Up to RA_PL_MAX_BACKENDS backends are handled with a stack array (8 bytes
 * each); more are handled correctly, recomputing instead of storing.
 */
#define RA_PL_MAX_BACKENDS            1024

/* choices above RA_PL_MAX_CHOICES consider every backend, as 0 does */
#define RA_PL_MAX_CHOICES             16

/* slow start never scales a capacity below this percentage */
#define RA_PL_SLOW_START_FLOOR        10

/* defaults, tuned with the simulator (bench/sim) */
#define RA_PL_CHOICES_DEFAULT         2
#define RA_PL_BALANCE_FACTOR_DEFAULT  125
#define RA_PL_SLOW_START_MS_DEFAULT   30000


typedef struct {
    unsigned    choices;         /* d of "power of d choices"; 0: all */
    unsigned    balance_factor;  /* percent, e.g. 125; 0: no cap */
    uint32_t    slow_start_ms;   /* 0: none */
} ra_pl_conf_t;


/* 64-bit hash of a room name; stable across processes and machines */
uint64_t ra_hash(const void *data, size_t len);

/*
 * Picks the backend for a new room among b[0..n-1].  Deterministic for the
 * same inputs (two nginx instances with the same view agree; the order of
 * b[] is an input: list the backends in the same order everywhere, e.g.
 * the configuration's).  Returns the index, or -1 when no backend is
 * available.
 *
 * Policy (details and units at the top of ra_placement.c): draw "choices"
 * distinct candidates among the available backends, weighted by effective
 * capacity, from room_hash; skip a candidate that the room would take over
 * balance_factor / 100 of the average load; pick the least loaded, ties by
 * rooms / capacity, then the lower index.  When every candidate is skipped,
 * the least loaded available backend.  Load: (reported + pending) / capacity
 * when fresh, live / weight in local mode (no backend fresh).  Slow start
 * scales a backend's capacity by up_ms / slow_start_ms (10 % at least).
 * No allocation; about one pass over b[].
 */
int ra_placement_pick(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t room_hash);

#endif /* RA_PLACEMENT_H */
