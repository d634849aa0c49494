/*
 * The connections nginx does not see (the join flow's clients connect to
 * the backend directly): how many of them are still there, between two
 * reports.  Plain C, no nginx headers; the module and the simulator
 * (bench/sim) call this very code.
 *
 * Clients leave without nginx seeing them, so counting every join until
 * the backend's next report counts members long gone: with 300 s reports
 * and rooms of 20 s the live benchmark's join flow ran at 1.16 (mean) and
 * 1.41 (p99) of the oracle.  If a connection lasts an exponentially
 * distributed time of mean tau, the ones still there are the joins, each
 * weighted by exp(-age / tau), plus the direct part of the last report
 * weighted by exp(-its age / tau).  tau is not known: a bank of
 * accumulators keeps the sum for several values at once, and each report
 * of any backend tells which of them predicted it best (docs/design.md).
 */

#ifndef RA_DECAY_H
#define RA_DECAY_H

#include <stdint.h>


#pragma GCC visibility push(hidden)


/* tau of accumulator k: RA_DECAY_TAU0_MS << k; the last one: forever */
#define RA_DECAY_N          8
#define RA_DECAY_TAU0_MS    5000
#define RA_DECAY_NONE       (RA_DECAY_N - 1)

/* while estimates decay, a worker's kept placement view holds this long */
#define RA_DECAY_VIEW_MS    1000

/* how fast the fit forgets, out of 16: the newest report weighs 4/16 */
#define RA_DECAY_FORGET     4


/* one backend: what was sent to it directly since its report */
typedef struct {
    double      v[RA_DECAY_N];      /* joins, decayed with each tau */
    double      direct;             /* the report's direct part */
    uint64_t    at;                 /* ms: when v[] was brought to date */
    uint64_t    reported_at;        /* ms: when direct was reported */
    unsigned    has_report:1;
} ra_decay_t;


/*
 * one upstream: what each tau predicted of the reports so far, and what
 * they said, both smoothed (the newest report weighs RA_DECAY_FORGET/16)
 */
typedef struct {
    float       pred[RA_DECAY_N];   /* float: the zone's context must fit */
    float       actual;             /* in one page (ra_zone.c) */
    uint32_t    reports;            /* reports learnt from */
    uint32_t    fixed;              /* 0: learn; else 1 + k */
} ra_decay_fit_t;


/* the tau to use: between accumulators k and k + 1, alpha of the way */
typedef struct {
    unsigned    k;
    double      alpha;
} ra_decay_pick_t;


void ra_decay_add(ra_decay_t *d, uint32_t joins, uint64_t now);
uint32_t ra_decay_value(const ra_decay_t *d, unsigned k, uint64_t now);
void ra_decay_report(ra_decay_t *d, ra_decay_fit_t *fit, uint32_t direct,
    uint64_t now);
#define ra_decay_empty(d)                                                     \
    ((d)->v[RA_DECAY_NONE] == 0 && ((d)->direct == 0 || !(d)->has_report))

void ra_decay_pick(const ra_decay_fit_t *fit, ra_decay_pick_t *pick);
uint32_t ra_decay_estimate(const ra_decay_t *d, const ra_decay_pick_t *pick,
    uint64_t now);
unsigned ra_decay_decays(const ra_decay_fit_t *fit);
uint64_t ra_decay_lifetime(const ra_decay_pick_t *pick);
unsigned ra_decay_index(uint64_t tau_ms);
uint64_t ra_decay_tau(unsigned k);


#pragma GCC visibility pop

#endif /* RA_DECAY_H */
