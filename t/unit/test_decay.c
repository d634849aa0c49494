/*
 * Unit tests of src/ra_decay.c: joins decay with each tau and not without
 * one; a report's direct part decays from the report; the fit comes out
 * at the tau whose predictions summed match what the reports said,
 * interpolated; no fit (or no report) counts every join; a fixed
 * lifetime is used as given; a clock behind by a few ms changes nothing.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "ra_decay.h"
#include "ra_test.h"


/* a report that learnt nothing of a backend, then n joins at t */
static void
joined(ra_decay_t *d, ra_decay_fit_t *fit, uint32_t n, uint64_t t)
{
    ra_decay_report(d, fit, 0, t);
    ra_decay_add(d, n, t);
}


int
main(void)
{
    unsigned         k;
    uint32_t         v;
    ra_decay_t       d, e;
    ra_decay_fit_t   fit;
    ra_decay_pick_t  pick;

    /* no decay without a tau, exponential with one */

    memset(&d, 0, sizeof(d));
    ra_decay_add(&d, 100, 1000);
    RA_IS_INT(ra_decay_value(&d, RA_DECAY_NONE, 1000 + 3600000), 100,
              "without a tau, joins count until the next report");
    RA_IS_INT(ra_decay_value(&d, 0, 1000), 100, "a join counts at once");
    RA_IS_INT(ra_decay_value(&d, 0, 1000 + 5000), 37,
              "tau 5 s: 100 joins are 37 after 5 s (e^-1)");
    RA_IS_INT(ra_decay_value(&d, 1, 1000 + 10000), 37,
              "tau 10 s: 37 after 10 s");
    RA_IS_INT(ra_decay_value(&d, 0, 1000 + 60000), 0,
              "tau 5 s: none after 60 s");

    /* adding later brings the older ones to date first */
    ra_decay_add(&d, 100, 1000 + 5000);
    RA_IS_INT(ra_decay_value(&d, 0, 1000 + 5000), 137,
              "100 more joins 5 s later: 137");
    RA_IS_INT(ra_decay_value(&d, RA_DECAY_NONE, 1000 + 5000), 200,
              "and 200 without a tau");

    /* a worker whose clock is a few ms behind the one that added */
    RA_IS_INT(ra_decay_value(&d, 0, 1000 + 4990), 137,
              "a clock behind does not grow the figure");
    ra_decay_add(&d, 1, 1000 + 4990);
    RA_IS_INT(ra_decay_value(&d, 0, 1000 + 5000), 138,
              "a join from a clock behind is added, nothing lost");

    /* the direct part of a report decays from the report */

    memset(&d, 0, sizeof(d));
    memset(&fit, 0, sizeof(fit));
    ra_decay_report(&d, &fit, 50, 10000);
    RA_IS_INT(fit.reports, 0, "a first report is nothing to learn from");
    RA_IS_INT(ra_decay_value(&d, RA_DECAY_NONE, 20000), 50,
              "a report's direct part stays without a tau");
    RA_IS_INT(ra_decay_value(&d, 1, 20000), 18,
              "and decays from the report with one: 50 e^-1");

    /* no fit yet: every join counts, as before the fit existed */

    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, RA_DECAY_NONE, "no report learnt: no decay");
    RA_OK(!ra_decay_decays(&fit), "and estimates do not move by themselves");
    RA_IS_INT(ra_decay_lifetime(&pick), 0, "shown as forever");

    /*
     * Learning: 100 joins at 0, the report 20 s later says 37 of them are
     * there: tau 20 s (k = 2) predicted exactly that
     */

    memset(&d, 0, sizeof(d));
    memset(&fit, 0, sizeof(fit));
    joined(&d, &fit, 100, 0);
    ra_decay_report(&d, &fit, 37, 20000);
    RA_IS_INT(fit.reports, 1, "a second report is learnt from");
    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, 2, "the report picks tau 20 s");
    RA_OK(pick.alpha < 0.05, "nearly exactly");
    RA_OK(ra_decay_decays(&fit), "estimates now move by themselves");
    RA_OK(llabs((long long) ra_decay_lifetime(&pick) - 20000) < 1000,
          "shown as 20 s");

    /* the same backend then says half of 100 joins remain after 20 s */

    memset(&e, 0, sizeof(e));
    memset(&fit, 0, sizeof(fit));
    joined(&e, &fit, 100, 0);
    ra_decay_report(&e, &fit, 50, 20000);
    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, 2, "half remaining after 20 s: between 20 s");
    RA_OK(pick.alpha > 0.2 && pick.alpha < 0.8, "and 40 s, interpolated");
    v = ra_decay_estimate(&e, &pick, 20000);
    RA_IS_INT(v, 50, "the estimate right after: the report itself");

    /* joins that all stayed: no decay is the best fit */

    memset(&d, 0, sizeof(d));
    memset(&fit, 0, sizeof(fit));
    joined(&d, &fit, 100, 0);
    ra_decay_report(&d, &fit, 100, 600000);
    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, RA_DECAY_NONE, "every join still there: no decay");

    /* joins all gone: the shortest tau */

    memset(&d, 0, sizeof(d));
    memset(&fit, 0, sizeof(fit));
    joined(&d, &fit, 100, 0);
    ra_decay_report(&d, &fit, 0, 20000);
    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, 0, "every join gone: the shortest tau");
    RA_IS_INT(pick.alpha * 1000, 0, "at its end");

    /* the fit forgets: later reports outweigh the first */

    for (k = 0; k < 12; k++) {
        /* 100 joins between two reports, all of them still there */
        ra_decay_add(&d, 100, 20000 * (k + 1));
        ra_decay_report(&d, &fit, 100 * (k + 1), 20000 * (k + 2));
    }

    ra_decay_pick(&fit, &pick);
    RA_OK(pick.k >= RA_DECAY_NONE - 2,
          "12 reports of joins that stayed win: 160 s or longer");

    /* a fixed lifetime */

    fit.fixed = 1 + ra_decay_index(20000);
    ra_decay_pick(&fit, &pick);
    RA_IS_INT(pick.k, 2, "lifetime=20s: tau 20 s");
    RA_IS_INT(ra_decay_index(1), 0, "a lifetime below 5 s: 5 s");
    RA_IS_INT(ra_decay_index(7000), 0, "7 s: 5 s");
    RA_IS_INT(ra_decay_index(7500), 1, "7.5 s: 10 s");
    RA_IS_INT(ra_decay_index(3600000), RA_DECAY_NONE - 1,
              "an hour: the longest, 320 s");
    RA_IS_INT(ra_decay_tau(RA_DECAY_NONE - 1), 320000, "which is 320 s");
    fit.fixed = 1 + RA_DECAY_NONE;
    RA_OK(!ra_decay_decays(&fit), "lifetime=off: no decay");

    return RA_DONE();
}
