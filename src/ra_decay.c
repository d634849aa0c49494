/*
 * The connections nginx does not see, decayed by how long connections
 * last (ra_decay.h).  Plain C.
 */

#include <math.h>

#include "ra_decay.h"


static double ra_decay_exact(const ra_decay_t *d, unsigned k, uint64_t now);
static double ra_decay_factor(unsigned k, uint64_t from, uint64_t now);


/* joins sent to the backend now */

void
ra_decay_add(ra_decay_t *d, uint32_t joins, uint64_t now)
{
    unsigned  k;

    if ((int64_t) (now - d->at) > 0) {
        for (k = 0; k < RA_DECAY_NONE; k++) {
            d->v[k] *= ra_decay_factor(k, d->at, now);
        }

        d->at = now;
    }

    for (k = 0; k < RA_DECAY_N; k++) {
        d->v[k] += joins;
    }
}


/* how many of them, and of the report's direct part, are still there */

uint32_t
ra_decay_value(const ra_decay_t *d, unsigned k, uint64_t now)
{
    double  n;

    n = ra_decay_exact(d, k, now) + 0.5;

    return (n >= (double) UINT32_MAX) ? UINT32_MAX : (uint32_t) n;
}


static double
ra_decay_exact(const ra_decay_t *d, unsigned k, uint64_t now)
{
    double  n;

    n = 0;

    if (d->v[k] != 0) {
        n = d->v[k] * ra_decay_factor(k, d->at, now);
    }

    if (d->has_report && d->direct != 0) {
        n += d->direct * ra_decay_factor(k, d->reported_at, now);
    }

    return n;
}


/*
 * A report landed: its direct part (the connections it counts that nginx
 * did not hold) is what every tau tried to predict.  What each predicted
 * and what the reports said are summed, smoothed, over the reports of
 * every backend; then the backend starts again from the report.
 */

void
ra_decay_report(ra_decay_t *d, ra_decay_fit_t *fit, uint32_t direct,
    uint64_t now)
{
    double    p;
    unsigned  k;

    if (d->has_report) {
        for (k = 0; k < RA_DECAY_N; k++) {
            p = ra_decay_exact(d, k, now);

            fit->pred[k] = (float) ((fit->reports == 0)
                                    ? p
                                    : (fit->pred[k] * (16 - RA_DECAY_FORGET)
                                       + p * RA_DECAY_FORGET) / 16);
        }

        fit->actual = (float) ((fit->reports == 0)
                               ? direct
                               : (fit->actual * (16 - RA_DECAY_FORGET)
                                  + (double) direct * RA_DECAY_FORGET) / 16);
        fit->reports++;
    }

    for (k = 0; k < RA_DECAY_N; k++) {
        d->v[k] = 0;
    }

    d->at = now;
    d->direct = direct;
    d->reported_at = now;
    d->has_report = 1;
}


/*
 * The tau to use: the one whose predictions, summed, come out at what the
 * reports said, interpolated between two neighbours.  Not the one with
 * the least error report by report: a room's members leave together, so
 * one report's error is mostly which rooms happened to end, and the least
 * error chose too short a tau on the live benchmark's workload (in
 * bench/sim).  Predictions grow with tau: a longer tau forgets less.
 * Until a report could be predicted, none: every join counts until the
 * next report, as before there was a fit.
 */

void
ra_decay_pick(const ra_decay_fit_t *fit, ra_decay_pick_t *pick)
{
    unsigned  k;
    double    lo, hi;

    pick->alpha = 0;

    if (fit->fixed) {
        pick->k = fit->fixed - 1;
        return;
    }

    if (fit->reports == 0 || fit->actual >= fit->pred[RA_DECAY_NONE]) {
        pick->k = RA_DECAY_NONE;
        return;
    }

    for (k = 0; k < RA_DECAY_NONE; k++) {
        lo = fit->pred[k];
        hi = fit->pred[k + 1];

        if (fit->actual < hi) {
            pick->k = k;
            pick->alpha = (fit->actual <= lo || hi <= lo)
                          ? 0 : (fit->actual - lo) / (hi - lo);
            return;
        }
    }

    pick->k = RA_DECAY_NONE;
}


/* the connections nginx does not see, with the tau picked */

uint32_t
ra_decay_estimate(const ra_decay_t *d, const ra_decay_pick_t *pick,
    uint64_t now)
{
    double  n;

    n = ra_decay_exact(d, pick->k, now);

    if (pick->alpha > 0 && pick->k < RA_DECAY_NONE) {
        n += pick->alpha * (ra_decay_exact(d, pick->k + 1, now) - n);
    }

    n += 0.5;

    return (n >= (double) UINT32_MAX) ? UINT32_MAX : (uint32_t) n;
}


/* whether estimates move by themselves, as time passes */

unsigned
ra_decay_decays(const ra_decay_fit_t *fit)
{
    ra_decay_pick_t  pick;

    ra_decay_pick(fit, &pick);

    return pick.k != RA_DECAY_NONE;
}


/* the lifetime a pick stands for, in ms (shown); 0: forever */

uint64_t
ra_decay_lifetime(const ra_decay_pick_t *pick)
{
    if (pick->k >= RA_DECAY_NONE) {
        return 0;
    }

    if (pick->k + 1 == RA_DECAY_NONE) {
        /* between the longest and forever: at least the longest */
        return ra_decay_tau(pick->k);
    }

    return (uint64_t) ((double) ra_decay_tau(pick->k) * pow(2, pick->alpha));
}


/* the accumulator nearest to a configured lifetime (on a log scale) */

unsigned
ra_decay_index(uint64_t tau_ms)
{
    unsigned  k;

    for (k = 0; k < RA_DECAY_NONE - 1; k++) {
        /* between k and k + 1 the midpoint is tau0 << k times sqrt(2) */
        if ((double) tau_ms < (double) ((uint64_t) RA_DECAY_TAU0_MS << k)
                              * M_SQRT2)
        {
            return k;
        }
    }

    return RA_DECAY_NONE - 1;
}


/* tau of accumulator k, in ms; 0: forever */

uint64_t
ra_decay_tau(unsigned k)
{
    return (k >= RA_DECAY_NONE) ? 0 : (uint64_t) RA_DECAY_TAU0_MS << k;
}


static double
ra_decay_factor(unsigned k, uint64_t from, uint64_t now)
{
    int64_t  age;

    if (k >= RA_DECAY_NONE) {
        return 1.0;
    }

    age = (int64_t) (now - from);

    if (age <= 0) {
        /* another worker's clock a few ms behind */
        return 1.0;
    }

    return exp(-(double) age / (double) ((uint64_t) RA_DECAY_TAU0_MS << k));
}
