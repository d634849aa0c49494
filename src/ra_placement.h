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


typedef struct {
    unsigned    choices;         /* d of "power of d choices"; 0: all */
    unsigned    balance_factor;  /* percent, e.g. 125; 0: no cap */
    uint32_t    slow_start_ms;   /* 0: none */
} ra_pl_conf_t;


/* 64-bit hash of a room name; stable across processes and machines */
uint64_t ra_hash(const void *data, size_t len);

/*
 * Picks the backend for a new room among b[0..n-1].  Deterministic for the
 * same inputs (two nginx instances with the same view agree).
 * Returns the index, or -1 when no backend is available.
 */
int ra_placement_pick(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t room_hash);

#endif /* RA_PLACEMENT_H */
