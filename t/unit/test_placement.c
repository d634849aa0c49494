/*
 * Unit tests of src/ra_placement.c (TAP).
 */

#include <stdlib.h>
#include <stdint.h>

#include "ra_test.h"
#include "ra_placement.h"


#define T_MAXN  2000


static ra_pl_backend_t  t_b[T_MAXN];
static ra_pl_backend_t  t_c[T_MAXN];


static void
t_reset(unsigned n, uint32_t weight, uint32_t capacity, unsigned fresh)
{
    unsigned  i;

    memset(t_b, 0, sizeof(t_b));

    for (i = 0; i < n; i++) {
        t_b[i].weight = weight;
        t_b[i].capacity = capacity;
        t_b[i].up_ms = UINT32_MAX;
        t_b[i].fresh = fresh;
        t_b[i].available = 1;
    }
}


static uint64_t
t_room(unsigned k)
{
    char  name[32];
    int   len;

    len = snprintf(name, sizeof(name), "room-%u", k);

    return ra_hash(name, len);
}


/*
 * Places "rooms" new rooms one after the other as the module would:
 * pending and/or rooms grow on the chosen backend; in local mode a short
 * request ends at once, so live stays 0.  Counts the picks per backend.
 */

/* see t_determinism() */
#define T_PICKS_SUM  663250478U

#define T_PENDING  1
#define T_ROOMS    2
#define T_BOTH     (T_PENDING|T_ROOMS)


/* how many of 1000 new rooms go to backend k of t_b[0..n-1] */

static unsigned
t_picks_of(const ra_pl_conf_t *conf, unsigned n, int k)
{
    unsigned  i, picks;

    picks = 0;

    for (i = 0; i < 1000; i++) {
        picks += (ra_placement_pick(conf, t_b, n, t_room(i)) == k);
    }

    return picks;
}


static int
t_place(const ra_pl_conf_t *conf, unsigned n, unsigned rooms, unsigned count,
    unsigned *got)
{
    int       k;
    unsigned  i;

    for (i = 0; i < n; i++) {
        got[i] = 0;
    }

    for (i = 0; i < rooms; i++) {
        k = ra_placement_pick(conf, t_b, n, t_room(i));
        if (k < 0 || (unsigned) k >= n) {
            return -1;
        }

        got[k]++;

        if (count & T_ROOMS) {
            t_b[k].rooms++;
        }

        if (count & T_PENDING) {
            t_b[k].pending++;
        }
    }

    return 0;
}


static void
t_hash(void)
{
    RA_IS_INT(ra_hash("room-42", 7), 0x3457bf2871ea897aULL,
              "hash of \"room-42\" is stable");
    RA_IS_INT(ra_hash("lobby", 5), 0x340e235a41de57e4ULL,
              "hash of \"lobby\" is stable");
    RA_IS_INT(ra_hash("", 0), 0xefd01f60ba992926ULL,
              "hash of the empty string is stable");
    RA_OK(ra_hash("room-1", 6) != ra_hash("room-2", 6),
          "hash differs for different rooms");
}


static void
t_determinism(void)
{
    int           a, c, same;
    unsigned      i;
    uint32_t      sum;
    ra_pl_conf_t  conf = { 2, 125, 30000 };

    t_reset(16, 1, 100, 1);

    for (i = 0; i < 16; i++) {
        t_b[i].capacity = 100 * (1 + i % 3);
        t_b[i].reported = (i * 37) % 90;
        t_b[i].pending = i % 4;
        t_b[i].rooms = i * 3;
    }

    memcpy(t_c, t_b, sizeof(ra_pl_backend_t) * 16);

    same = 1;

    for (i = 0; i < 1000; i++) {
        a = ra_placement_pick(&conf, t_b, 16, t_room(i));
        c = ra_placement_pick(&conf, t_c, 16, t_room(i));
        if (a != c || a != ra_placement_pick(&conf, t_b, 16, t_room(i))) {
            same = 0;
        }
    }

    RA_OK(same, "same inputs give the same pick");

    /*
     * the same picks on every build (with or without 128-bit integers) and
     * in every version that keeps the policy: instances of a rolling
     * upgrade still agree.  A change of the policy changes this sum.
     */

    sum = 0;

    for (i = 0; i < 1000; i++) {
        sum = sum * 31 + (unsigned) ra_placement_pick(&conf, t_b, 16,
                                                      t_room(i));
    }

    RA_IS_INT(sum, T_PICKS_SUM, "the picks of 1000 rooms are the known ones");

    /* the hash matters: different rooms are spread over the candidates */

    a = ra_placement_pick(&conf, t_b, 16, t_room(0));
    same = 1;

    conf.balance_factor = 0;

    for (i = 0; i < 100; i++) {
        if (ra_placement_pick(&conf, t_b, 16, t_room(i)) != a) {
            same = 0;
        }
    }

    RA_OK(!same, "different rooms get different candidates");
}


static void
t_none(void)
{
    unsigned      i;
    ra_pl_conf_t  conf = { 2, 125, 0 };

    RA_IS_INT(ra_placement_pick(&conf, t_b, 0, 1), -1, "no backend: -1");

    t_reset(4, 1, 0, 1);

    for (i = 0; i < 4; i++) {
        t_b[i].available = 0;
    }

    RA_IS_INT(ra_placement_pick(&conf, t_b, 4, 1), -1,
              "none available: -1");

    conf.choices = 0;
    RA_IS_INT(ra_placement_pick(&conf, t_b, 4, 1), -1,
              "none available, all choices: -1");

    t_b[3].available = 1;
    conf.choices = 2;
    RA_IS_INT(ra_placement_pick(&conf, t_b, 4, 1), 3,
              "the only available one");
}


static void
t_unavailable(void)
{
    int           k, bad;
    unsigned      i, c, got[8];
    ra_pl_conf_t  confs[3] = { { 2, 125, 0 }, { 0, 0, 0 }, { 3, 0, 0 } };

    for (c = 0; c < 3; c++) {
        t_reset(8, 1, 100, 1);

        for (i = 0; i < 8; i++) {
            t_b[i].reported = 50;
        }

        /* draining or failed: the emptiest, never picked */

        t_b[0].available = 0;
        t_b[0].reported = 0;
        t_b[5].available = 0;
        t_b[5].reported = 0;

        bad = 0;

        for (i = 0; i < 2000; i++) {
            k = ra_placement_pick(&confs[c], t_b, 8, t_room(i));
            if (k < 0 || k == 0 || k == 5) {
                bad++;
            }
        }

        RA_IS_INT(bad, 0, "unavailable (draining) backends never picked");

        t_place(&confs[c], 8, 600, T_BOTH, got);
        RA_OK(got[0] == 0 && got[5] == 0 && got[1] > 50,
              "unavailable skipped, the others share");
    }
}


static void
t_local_spread(void)
{
    unsigned      i, ok, got[4];
    ra_pl_conf_t  conf = { 2, 125, 30000 };

    /* local mode: no reports; 40 short requests, live back to 0 */

    t_reset(4, 1, 0, 0);
    t_place(&conf, 4, 40, T_ROOMS, got);

    ok = 1;
    for (i = 0; i < 4; i++) {
        if (got[i] < 8 || got[i] > 12) {
            ok = 0;
        }
    }

    RA_OK(ok, "local mode: 40 rooms over 4 equal backends, 8..12 each");
    printf("# %u %u %u %u\n", got[0], got[1], got[2], got[3]);

    conf.balance_factor = 0;
    t_reset(4, 1, 0, 0);
    t_place(&conf, 4, 40, T_ROOMS, got);

    ok = 1;
    for (i = 0; i < 4; i++) {
        if (got[i] < 8 || got[i] > 12) {
            ok = 0;
        }
    }

    RA_OK(ok, "local mode, no balance factor: 8..12 each");

    /* live connections count: a busy backend gets nothing */

    conf.balance_factor = 125;
    t_reset(4, 1, 0, 0);
    t_b[1].live = 1000;
    t_place(&conf, 4, 40, T_ROOMS, got);

    RA_IS_INT(got[1], 0, "local mode: busy backend (live) gets no room");
}


static void
t_weights(void)
{
    unsigned      got[3];
    ra_pl_conf_t  conf = { 2, 125, 0 };

    /* local mode: weights 1, 2, 1 */

    t_reset(3, 1, 0, 0);
    t_b[1].weight = 2;
    t_place(&conf, 3, 400, T_ROOMS, got);

    RA_OK(got[1] >= 190 && got[1] <= 210 && got[0] >= 90 && got[2] >= 90,
          "local mode: weight 2 gets 2x");
    printf("# %u %u %u\n", got[0], got[1], got[2]);

    /* reports without capacities: weights */

    t_reset(3, 1, 0, 1);
    t_b[1].weight = 2;
    t_place(&conf, 3, 400, T_BOTH, got);

    RA_OK(got[1] >= 190 && got[1] <= 210 && got[0] >= 90 && got[2] >= 90,
          "reports, no capacity: weight 2 gets 2x");

    /* capacities win over weights */

    t_reset(3, 1, 1000, 1);
    t_b[0].weight = 10;
    t_b[2].capacity = 2000;
    t_place(&conf, 3, 400, T_BOTH, got);

    RA_OK(got[2] >= 190 && got[2] <= 210 && got[0] >= 90 && got[0] <= 110,
          "capacity 2x gets 2x, weight ignored");

    /* mixed: no capacity means the average capacity per weight */

    t_reset(3, 1, 1000, 1);
    t_b[1].capacity = 0;
    t_b[1].weight = 2;
    t_place(&conf, 3, 400, T_BOTH, got);

    RA_OK(got[1] >= 190 && got[1] <= 210 && got[0] >= 90 && got[2] >= 90,
          "capacity unknown, weight 2: 2x the average capacity");
    printf("# %u %u %u\n", got[0], got[1], got[2]);
}


static void
t_reports(void)
{
    unsigned      i, got[2], first;
    ra_pl_conf_t  conf = { 2, 125, 0 };
    int           k;

    t_reset(2, 1, 1000, 1);
    t_b[0].reported = 100;

    first = 0;

    for (i = 0; i < 100; i++) {
        k = ra_placement_pick(&conf, t_b, 2, t_room(i));
        if (k == 1) {
            first++;
        }

        t_b[k].pending++;
        t_b[k].rooms++;
    }

    RA_IS_INT(first, 100, "A reported 100, B 0: 100 rooms go to B");

    t_place(&conf, 2, 200, T_BOTH, got);

    RA_OK(got[0] >= 95 && got[0] <= 105, "then balanced");
    printf("# %u %u\n", got[0], got[1]);
}


static void
t_pending(void)
{
    unsigned      i, n, ok, got[4];
    uint32_t      max, min, load;
    ra_pl_conf_t  conf = { 0, 0, 0 };

    /* least loaded on stale reports: the pending counters stop the herd */

    for (n = 0; n < 2; n++) {
        t_reset(4, 1, 1000, 1);

        for (i = 0; i < 4; i++) {
            t_b[i].reported = 500;
        }

        t_b[3].reported = 400;

        t_place(&conf, 4, 200, n == 0 ? T_BOTH : T_ROOMS, got);

        max = 0;
        min = UINT32_MAX;

        for (i = 0; i < 4; i++) {
            load = t_b[i].reported + got[i];
            max = load > max ? load : max;
            min = load < min ? load : min;
        }

        if (n == 0) {
            RA_OK(max - min <= 1, "least loaded + pending: balanced");
            printf("# %u %u %u %u\n", got[0], got[1], got[2], got[3]);

        } else {
            RA_IS_INT(got[3], 200, "least loaded, no pending: a herd");
        }
    }

    /* defaults: 40 rooms, equal stale reports, rooms not counted */

    conf.choices = RA_PL_CHOICES_DEFAULT;
    conf.balance_factor = RA_PL_BALANCE_FACTOR_DEFAULT;

    for (n = 0; n < 2; n++) {
        t_reset(4, 1, 1000, 1);

        for (i = 0; i < 4; i++) {
            t_b[i].reported = 500;
        }

        t_place(&conf, 4, 40, n == 0 ? T_PENDING : 0, got);

        ok = 1;
        for (i = 0; i < 4; i++) {
            if (got[i] < 8 || got[i] > 12) {
                ok = 0;
            }
        }

        if (n == 0) {
            RA_OK(ok, "equal stale reports + pending: 40 rooms, 8..12 each");
            printf("# %u %u %u %u\n", got[0], got[1], got[2], got[3]);

        } else {
            RA_OK(!ok, "equal stale reports, no pending: uneven");
        }
    }
}


static void
t_balance(void)
{
    unsigned      i, to_a;
    ra_pl_conf_t  conf = { 1, 125, 0 };

    t_reset(4, 1, 100, 1);
    t_b[0].reported = 90;
    t_b[1].reported = 30;
    t_b[2].reported = 30;
    t_b[3].reported = 30;

    to_a = t_picks_of(&conf, 4, 0);

    RA_IS_INT(to_a, 0, "balance factor 125: the loaded one is skipped");

    conf.balance_factor = 0;
    to_a = t_picks_of(&conf, 4, 0);

    RA_OK(to_a > 150, "no balance factor: a single choice lands anywhere");

    /* at 300 %, 90 / 100 is under 3 * 0.45: allowed */

    conf.balance_factor = 300;
    to_a = t_picks_of(&conf, 4, 0);

    RA_OK(to_a > 150, "balance factor 300: under the cap, allowed");

    /* every candidate over: the least loaded overall */

    conf.balance_factor = 101;
    conf.choices = 2;
    t_reset(8, 1, 100, 1);

    for (i = 0; i < 8; i++) {
        t_b[i].reported = 80;
    }

    t_b[6].reported = 79;

    RA_IS_INT(ra_placement_pick(&conf, t_b, 8, t_room(1)), 6,
              "all candidates over: least loaded overall");

    conf.choices = 0;
    conf.balance_factor = 0;
    RA_IS_INT(ra_placement_pick(&conf, t_b, 8, t_room(7)), 6,
              "choices 0: least loaded");
}


static void
t_slow_start(void)
{
    unsigned      got[4];
    ra_pl_conf_t  conf = { 2, 125, 30000 };

    t_reset(4, 1, 100, 1);
    t_b[0].reported = 60;
    t_b[1].reported = 60;
    t_b[2].reported = 60;
    t_b[3].up_ms = 0;

    t_place(&conf, 4, 100, T_BOTH, got);
    RA_OK(got[3] <= 12, "slow start: the new backend gets a few rooms");
    printf("# new one got %u of 100\n", got[3]);

    t_reset(4, 1, 100, 1);
    t_b[0].reported = 60;
    t_b[1].reported = 60;
    t_b[2].reported = 60;
    t_b[3].up_ms = 15000;

    t_place(&conf, 4, 100, T_BOTH, got);
    RA_OK(got[3] > 12 && got[3] <= 40, "slow start half way: more");
    printf("# new one got %u of 100\n", got[3]);

    conf.slow_start_ms = 0;
    t_reset(4, 1, 100, 1);
    t_b[0].reported = 60;
    t_b[1].reported = 60;
    t_b[2].reported = 60;
    t_b[3].up_ms = 0;

    t_place(&conf, 4, 100, T_BOTH, got);
    RA_OK(got[3] >= 50, "no slow start: the new backend gets the herd");
    printf("# new one got %u of 100\n", got[3]);

    /* local mode too */

    conf.slow_start_ms = 30000;
    t_reset(4, 1, 0, 0);
    t_b[3].up_ms = 0;
    t_place(&conf, 4, 100, T_ROOMS, got);
    RA_OK(got[3] <= 5, "slow start in local mode");
}


static void
t_mixed(void)
{
    unsigned      i, got[4];
    ra_pl_conf_t  conf = { 0, 0, 0 };

    /* one backend lost its reports: judged by its live connections */

    t_reset(4, 1, 1000, 1);

    for (i = 0; i < 4; i++) {
        t_b[i].reported = 500;
        t_b[i].live = 50;
    }

    t_b[3].fresh = 0;
    t_b[3].reported = 0;
    t_b[3].live = 100;

    t_place(&conf, 4, 30, T_BOTH, got);
    RA_IS_INT(got[3], 0, "stale backend with 2x live: estimated loaded");

    t_reset(4, 1, 1000, 1);

    for (i = 0; i < 4; i++) {
        t_b[i].reported = 500;
        t_b[i].live = 50;
    }

    t_b[3].fresh = 0;
    t_b[3].reported = 0;
    t_b[3].live = 25;

    RA_IS_INT(ra_placement_pick(&conf, t_b, 4, 1), 3,
              "stale backend with half the live: estimated light");
}


static void
t_many(void)
{
    int           a, c, same, map[T_MAXN];
    unsigned      i, n, v, ok, got[T_MAXN];
    ra_pl_conf_t  conf = { 2, 125, 30000 };

    /*
     * more than RA_PL_MAX_BACKENDS: the same picks as the array path, with
     * unavailable backends interleaved (they change nothing)
     */

    same = 1;

    for (v = 0; v < 4; v++) {
        t_reset(RA_PL_MAX_BACKENDS, 1, 0, 1);

        for (i = 0; i < RA_PL_MAX_BACKENDS; i++) {
            t_b[i].weight = 1 + i % 4;
            t_b[i].capacity = (v == 1) ? 0 : 100 * (1 + i % 3);
            t_b[i].reported = (i * 37) % 90;
            t_b[i].pending = i % 4;
            t_b[i].live = (i * 13) % 7;
            t_b[i].rooms = i % 5;
            t_b[i].up_ms = (i % 50 == 0) ? i * 10 : UINT32_MAX;
            t_b[i].fresh = (v == 2) ? 0 : (v == 3) ? (i % 7 != 0) : 1;

            if (v == 3 && i % 5 == 0) {
                t_b[i].capacity = 0;
            }
        }

        n = 0;

        for (i = 0; i < RA_PL_MAX_BACKENDS; i++) {
            if (i % 2 == 0) {
                t_c[n] = t_b[i];
                t_c[n].available = 0;
                t_c[n].reported = 0;
                map[n++] = -1;
            }

            t_c[n] = t_b[i];
            map[n++] = i;
        }

        for (i = 0; i < 1000; i++) {
            conf.choices = i % 4;
            conf.balance_factor = (i % 5) ? 125 : 0;
            a = ra_placement_pick(&conf, t_b, RA_PL_MAX_BACKENDS, t_room(i));
            c = ra_placement_pick(&conf, t_c, n, t_room(i));
            if (a < 0 || c < 0 || map[c] != a) {
                same = 0;
            }
        }
    }

    RA_OK(same, "more than RA_PL_MAX_BACKENDS: same picks");

    n = RA_PL_MAX_BACKENDS + 500;

    conf.choices = 2;
    t_reset(n, 1, 0, 0);
    t_place(&conf, n, 3 * n, T_ROOMS, got);

    /* two choices by rooms (live stays 0): at most a few over the mean */

    ok = 1;
    for (i = 0; i < n; i++) {
        if (got[i] > 3 + 3) {
            ok = 0;
        }
    }

    RA_OK(ok, "more than RA_PL_MAX_BACKENDS: spread in local mode");

    t_reset(n, 1, 0, 1);

    for (i = 0; i < n - 1; i++) {
        t_b[i].available = 0;
    }

    RA_IS_INT(ra_placement_pick(&conf, t_b, n, 5), (int) n - 1,
              "more than RA_PL_MAX_BACKENDS: the only available one");
}


/*
 * A view built once and reused, as a worker does (ra_pick.c): only the
 * candidates' figures are read again, and the total load is moved as the
 * figures moved: the total over every backend, as the zone keeps it, less
 * that of the backends the view leaves out (here an unavailable one whose
 * load keeps growing).  Every pick must be the one ra_placement_pick()
 * makes on the table as it is.
 */

static void
t_view(void)
{
    int           cand[RA_PL_MAX_CHOICES], a, c, same;
    unsigned      i, j, m, n, nc, viewed, reused;
    uint64_t      acc[64], total, total0, out, out0, num0;
    ra_pl_view_t  v, w;
    ra_pl_conf_t  conf = { 2, 125, 30000 };

    n = 64;
    same = 1;
    reused = 0;

    for (m = 0; m < 2; m++) {

        /* m 0: fresh reports with capacities; 1: local mode */

        t_reset(n, 1, m ? 0 : 1000, m ? 0 : 1);

        for (i = 0; i < n; i++) {
            t_b[i].weight = 1 + i % 3;
            t_b[i].capacity = m ? 0 : 500 * (1 + i % 4);
            t_b[i].reported = m ? 0 : (i * 37) % 400;
            t_b[i].live = (m ? 150 : 0) + (i * 13) % 50;
        }

        t_b[n - 1].available = 0;

        memcpy(t_c, t_b, sizeof(ra_pl_backend_t) * n);
        ra_placement_view(&conf, t_c, n, acc, &v);

        total0 = 0;
        for (i = 0; i < n; i++) {
            total0 += m ? t_b[i].live : t_b[i].pending;
        }

        out0 = m ? t_b[n - 1].live : t_b[n - 1].pending;

        num0 = v.sum_num;

        for (j = 0; j < 3000; j++) {

            /*
             * the table moves on: placements, and connections end more
             * than they start, so that a total load left as it was would
             * pass candidates the cap now refuses
             */

            i = (j * 7919) % n;
            if (m && t_b[i].live && j % 4 != 0) {
                t_b[i].live--;

            } else if (m) {
                t_b[i].live++;
            }

            /* the unavailable one's connections and rooms grow */

            t_b[n - 1].live += 3;
            t_b[n - 1].pending += 3;

            total = 0;
            for (i = 0; i < n; i++) {
                total += m ? t_b[i].live : t_b[i].pending;
            }

            out = m ? t_b[n - 1].live : t_b[n - 1].pending;

            a = ra_placement_pick(&conf, t_b, n, t_room(j));

            w = v;
            w.sum_num = num0 + (total - out) - (total0 - out0);

            nc = ra_placement_draw(&conf, &w, t_c, t_room(j), cand);

            for (i = 0; i < nc; i++) {
                t_c[cand[i]] = t_b[cand[i]];
            }

            c = nc ? ra_placement_decide(&conf, &w, t_c, cand, nc) : -1;
            viewed = (c != -1);

            if (c == -1) {
                c = ra_placement_pick(&conf, t_b, n, t_room(j));
            }

            reused += viewed;

            if (a != c) {
                same = 0;
                printf("# mode %u room %u: %d, with the view %d\n",
                       m, j, a, c);
            }

            if (a >= 0) {
                t_b[a].rooms++;

                if (!m) {
                    t_b[a].pending++;
                }
            }
        }
    }

    RA_OK(same, "a reused view picks as a fresh pass does");
    RA_OK(reused > 5000, "the reused view decides most rooms");
}


static void
t_extremes(void)
{
    int           k;
    unsigned      i, ok;
    ra_pl_conf_t  conf = { 2, 65535, 0 };

    t_reset(5, UINT32_MAX, UINT32_MAX, 1);

    for (i = 0; i < 5; i++) {
        t_b[i].reported = UINT32_MAX;
        t_b[i].pending = UINT32_MAX;
        t_b[i].live = UINT32_MAX;
        t_b[i].rooms = UINT32_MAX;
        t_b[i].up_ms = i;
    }

    t_b[4].fresh = 0;
    t_b[3].capacity = 0;

    ok = 1;

    for (i = 0; i < 1000; i++) {
        conf.choices = i % 6;
        conf.slow_start_ms = (i % 3) ? 3 : 0;
        k = ra_placement_pick(&conf, t_b, 5, t_room(i));
        if (k < 0 || k > 4) {
            ok = 0;
        }
    }

    RA_OK(ok, "extreme values: a valid pick");

    t_reset(3, 0, 0, 1);
    k = ra_placement_pick(&conf, t_b, 3, 9);
    RA_OK(k >= 0 && k < 3, "weight 0 is taken as 1");
}


int
main(void)
{
    t_hash();
    t_determinism();
    t_none();
    t_unavailable();
    t_local_spread();
    t_weights();
    t_reports();
    t_pending();
    t_balance();
    t_slow_start();
    t_mixed();
    t_many();
    t_view();
    t_extremes();

    return RA_DONE();
}
