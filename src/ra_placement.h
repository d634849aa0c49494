/*
 * Placement of new rooms: plain C, no nginx headers.  The module, the
 * simulator (bench/sim) and the microbenchmark all call this very code.
 */

#ifndef RA_PLACEMENT_H
#define RA_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>


#pragma GCC visibility push(hidden)


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

/* loads, rooms and their totals are clamped to this */
#define RA_PL_LOAD_MAX                ((1U << 31) - 1)

/* slow start never scales a capacity below this percentage */
#define RA_PL_SLOW_START_FLOOR        10

/*
 * defaults, tuned with the simulator once it reproduced the live
 * benchmark (bench/sim, sim -w live; docs/benchmarks.md): 3 choices
 * placed the live benchmark's rooms within 5 % of the oracle in both the
 * proxy and the join flow, 2 choices 4 to 12 % above it
 */
#define RA_PL_CHOICES_DEFAULT         3
#define RA_PL_BALANCE_FACTOR_DEFAULT  125
#define RA_PL_SLOW_START_MS_DEFAULT   30000


typedef struct {
    unsigned    choices;         /* d of "power of d choices"; 0: all */
    unsigned    balance_factor;  /* percent, e.g. 125; 0: no cap */
    uint32_t    slow_start_ms;   /* 0: none */
} ra_pl_conf_t;


/* which figures loads are computed from (see ra_placement.c) */
#define RA_PL_LOCAL                   0     /* no available one fresh */
#define RA_PL_FRESH                   1     /* every available one fresh */
#define RA_PL_MIXED                   2


/*
 * What a placement derives from the whole backend table in one pass: the
 * mode, the totals and the running sums of effective capacity that the
 * candidates are drawn from.  It holds for every room placed while the
 * table's capacities, availability and freshness stay as they were; the
 * loads of the candidates are read from b[] at each placement, and sum_num
 * (the total load) may be kept current by the caller.
 */
typedef struct {
    unsigned    n;
    unsigned    navail;
    unsigned    mode;           /* RA_PL_LOCAL, RA_PL_FRESH, RA_PL_MIXED */
    unsigned    quick;          /* acc[] alone gives each capacity */
    unsigned    slow;           /* an available backend is in slow start */

    uint64_t    known_cap;      /* fresh ones with a capacity */
    uint64_t    known_weight;
    uint64_t    fresh_num;
    uint64_t    fresh_live;
    uint64_t    fresh_weight;

    uint64_t    sum_num;        /* total load of the available ones */
    uint64_t    sum_cap;        /* total draw weight */
    uint64_t   *acc;            /* n running sums of capacity, or NULL */
} ra_pl_view_t;


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
 * No allocation; one pass over b[], then O(choices * log n).
 *
 * It is the three steps below, which a caller placing many rooms on the
 * same table may take apart: ra_placement_view() once, then per room
 * ra_placement_draw() and ra_placement_decide(), falling back to
 * ra_placement_pick() when decide() finds every candidate over the cap.
 */
int ra_placement_pick(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t room_hash);

/* one pass over b[]; acc has room for n sums (NULL: recomputed when used) */
void ra_placement_view(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t *acc, ra_pl_view_t *v);

/*
 * The candidates of a room, distinct, drawn by capacity from room_hash,
 * into cand[RA_PL_MAX_CHOICES].  Of b[] it reads only what the view was
 * built from and did not keep (availability, and capacities, weights,
 * freshness and slow start when it must recompute a running sum), never
 * the loads.  Returns how many, or 0 when every available backend is a
 * candidate (choices 0, or not fewer available than choices).
 */
unsigned ra_placement_draw(const ra_pl_conf_t *conf, const ra_pl_view_t *v,
    const ra_pl_backend_t *b, uint64_t room_hash, int *cand);

/*
 * The least loaded of the candidates (cand NULL: of every available one)
 * that the room would not take over the cap; -1 when there is none.
 */
int ra_placement_decide(const ra_pl_conf_t *conf, const ra_pl_view_t *v,
    const ra_pl_backend_t *b, const int *cand, unsigned ncand);

#pragma GCC visibility pop

#endif /* RA_PLACEMENT_H */
