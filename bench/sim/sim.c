/*
 * Placement simulator: replays the same room trace through several
 * placement policies, ours being the very src/ra_placement.c.
 * See README.md for the model.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "ra_placement.h"
#include "live.h"


#define SIM_SEED          20261126ULL

#define SIM_UNIT          500         /* connections per capacity unit */
#define SIM_UTIL          0.60        /* target utilisation, steady */
#define SIM_LIFE_MEAN     60.0        /* s, exponential, capped at 3x */
#define SIM_LIFE_CAP      3.0
#define SIM_ZIPF_S        2.0
#define SIM_ZIPF_MAX      50          /* room sizes 1..50 */
#define SIM_WORKERS       8
#define SIM_MAX_INST      3
#define SIM_LOSS          0.05        /* lost reports */
#define SIM_JITTER        0.20        /* report interval +- 20 % */
#define SIM_RECONNECT     3.0         /* s, spread of reconnects */
#define SIM_POINTS        160         /* ketama points per weight unit */
#define SIM_BOUND         125         /* HAProxy hash-balance-factor */
#define SIM_WINDOW        30.0        /* s, moved rooms counted after */
#define SIM_TICK          0.25        /* s, counts shared, loads sampled */
#define SIM_HIST          3           /* samples kept: report_lag 500 ms */

#define SIM_T_MEASURE     180.0       /* lifetimes are capped at 180 s */
#define SIM_T_FLASH       250.0
#define SIM_FLASH_LEN     2.0
#define SIM_FLASH_X       10.0
#define SIM_T_CRASH       400.0
#define SIM_T_ADD         500.0
#define SIM_T_DRAIN       600.0
#define SIM_T_END         720.0

#define SIM_CRASH_B       1           /* a medium (2 units) backend */
#define SIM_DRAIN_B       4           /* a medium one */
#define SIM_ADD_UNITS     2

#define SIM_MAX_B         (128 + 1)
#define SIM_BUCKETS       ((int) SIM_T_END + 1)


enum {
    P_OURS = 0,
    P_OURS_INST,        /* ours, each instance with its own room table */
    P_LL_STALE,
    P_RR,
    P_CHASH,
    P_BOUNDED,
    P_RANDOM,
    P_N
};

static const char *policy_name[P_N] = {
    "ours", "ours/inst", "least-loaded", "round-robin", "chash",
    "chash-bounded", "random"
};

static const int policy_stateless[P_N] = { 0, 0, 0, 0, 1, 1, 0 };

/* those that ignore the reports run once per backends x instances */
static const int policy_blind[P_N] = { 0, 0, 0, 1, 1, 1, 1 };

/* windows after the addition for the herd ratio: one report interval */
static const double herd_window[] = { 1, 5, 10 };
#define SIM_HERD_W        3


enum {
    E_ARRIVAL = 0,
    E_JOIN,
    E_RECONNECT,
    E_END,
    E_REPORT,
    E_SAMPLE,
    E_CRASH,
    E_DRAIN,
    E_ADD,
    E_TICK
};


typedef struct {
    double      t;
    uint64_t    seq;
    int         type;
    int         id;
    int         k;
} ev_t;


typedef struct {
    ev_t       *ev;
    int         n;
    int         max;
} bucket_t;


typedef struct {
    int16_t     b;            /* connected to, -1: not connected */
    uint8_t     inst;
    uint8_t     worker;
} member_t;


typedef struct {
    double      t0;
    double      life;
    uint64_t    hash;
    int         size;
    int         moff;         /* first member in the pool */
    int         be;           /* pinned backend, shared table */
    int         ibe[SIM_MAX_INST];  /* per-instance tables */
    int         home;         /* where its members are */
    unsigned    alive:1;
    unsigned    crashed:1;    /* was on the crashed backend */
} room_t;


typedef struct {
    int         units;
    int         cap;          /* connections */
    int         conn;         /* actual connections */
    int         up;           /* not crashed */
    int         accepting;    /* up and not draining */
    int         rooms;        /* pinned here, shared table */
    int         reported;
    double      last_report;
    int         has_report;
    double      t_up;         /* when it became able to take rooms */
    uint64_t    rng;          /* report jitter and loss */
} backend_t;


/* one configuration's result for one policy */
typedef struct {
    double      mean;
    double      p99;
    int         over_s;
    double      affinity;
    int         moved_crash;
    int         crashed_rooms;
    int         moved_add;
    double      herd[SIM_HERD_W];
    double      agree;        /* < 0: not measured */
    double      peak_util;
    double      secs;
    int         done;
} result_t;


typedef struct {
    int         nb;
    double      report;
    int         ninst;
} config_t;


/* the state of one run */

static config_t     cf;
static int          policy;
static ra_pl_conf_t pl_conf;

static backend_t    be[SIM_MAX_B];
static int          nb;                 /* including the added one */
static int          remote[SIM_MAX_INST][SIM_MAX_B];
static int          seen[SIM_MAX_INST][SIM_MAX_B];
static int          hist[SIM_MAX_INST][SIM_HIST][SIM_MAX_B];
static int          hist_pos, hist_n;
static int          live[SIM_MAX_INST][SIM_MAX_B];
static long         live_sum[SIM_MAX_INST];
static int          irooms[SIM_MAX_INST][SIM_MAX_B];
static int          rr_cw[SIM_MAX_INST][SIM_WORKERS][SIM_MAX_B];

static room_t      *rooms;
static int          nrooms, maxrooms;
static member_t    *members;
static int          nmembers, maxmembers;

static ev_t        *heap;
static int          nheap, maxheap;
static uint64_t     evseq;
static bucket_t     buckets[SIM_BUCKETS];
static int          cur_bucket;

static uint64_t     trace_rng, policy_rng;
static double       lambda0;
static double       zipf_cdf[SIM_ZIPF_MAX + 1];

static uint32_t    *ring_point;
static int         *ring_b;
static int          nring;

/* measurements */
static double      *samples;
static int          nsamples;
static int          over_s;
static double       peak_util;
static long         joins_counted, joins_hit;
static int          moved_crash, crashed_rooms, moved_add;
static int          add_total[SIM_HERD_W], add_new[SIM_HERD_W];
static long         agree_n, agree_yes;
static int          debug;


static uint64_t
rng_next(uint64_t *s)
{
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static double
rng_unit(uint64_t *s)
{
    return (rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}


static double
rng_exp(uint64_t *s, double mean)
{
    return -mean * log(1.0 - rng_unit(s));
}


/* the event heap */

static int
ev_before(const ev_t *a, const ev_t *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}


/*
 * Events of later seconds wait unsorted in a bucket per second; the
 * current second's events are in a small binary heap.
 */

static void
heap_push(ev_t e)
{
    int    i, p;
    ev_t   tmp;

    if (nheap == maxheap) {
        maxheap = maxheap ? maxheap * 2 : 4096;
        heap = realloc(heap, maxheap * sizeof(ev_t));
        if (heap == NULL) {
            abort();
        }
    }

    i = nheap++;
    heap[i] = e;

    while (i > 0) {
        p = (i - 1) / 2;
        if (!ev_before(&heap[i], &heap[p])) {
            break;
        }
        tmp = heap[i];
        heap[i] = heap[p];
        heap[p] = tmp;
        i = p;
    }
}


static void
ev_push(double t, int type, int id, int k)
{
    int        bi;
    ev_t       e;
    bucket_t  *bk;

    e.t = t;
    e.seq = evseq++;
    e.type = type;
    e.id = id;
    e.k = k;

    bi = (int) t;

    if (bi <= cur_bucket) {
        heap_push(e);
        return;
    }

    if (bi >= SIM_BUCKETS) {
        return;
    }

    bk = &buckets[bi];

    if (bk->n == bk->max) {
        bk->max = bk->max ? bk->max * 2 : 256;
        bk->ev = realloc(bk->ev, bk->max * sizeof(ev_t));
        if (bk->ev == NULL) {
            abort();
        }
    }

    bk->ev[bk->n++] = e;
}


static int
ev_pop(ev_t *out)
{
    int        i, l, r, m;
    ev_t       tmp;
    bucket_t  *bk;

    while (nheap == 0) {
        if (++cur_bucket >= SIM_BUCKETS) {
            return 0;
        }

        bk = &buckets[cur_bucket];

        for (i = 0; i < bk->n; i++) {
            heap_push(bk->ev[i]);
        }

        bk->n = 0;
    }

    *out = heap[0];
    heap[0] = heap[--nheap];
    i = 0;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;

        if (l < nheap && ev_before(&heap[l], &heap[m])) {
            m = l;
        }

        if (r < nheap && ev_before(&heap[r], &heap[m])) {
            m = r;
        }

        if (m == i) {
            break;
        }

        tmp = heap[i];
        heap[i] = heap[m];
        heap[m] = tmp;
        i = m;
    }

    return 1;
}


/* the ketama-like ring of the backends able to take rooms */

static void
ring_build(void)
{
    int       b, k, i, j, n;
    char      name[64];
    uint32_t  tp;
    int       tb;

    n = 0;

    for (b = 0; b < nb; b++) {
        if (!be[b].accepting) {
            continue;
        }

        for (k = 0; k < SIM_POINTS * be[b].units; k++) {
            snprintf(name, sizeof(name), "10.0.%d.%d:3000-%d", b / 256,
                     b % 256, k);
            ring_point[n] = (uint32_t) ra_hash(name, strlen(name));
            ring_b[n] = b;
            n++;
        }
    }

    /* insertion sort is too slow for 40k points: shell sort */

    for (k = n / 2; k > 0; k /= 2) {
        for (i = k; i < n; i++) {
            tp = ring_point[i];
            tb = ring_b[i];
            for (j = i; j >= k && ring_point[j - k] > tp; j -= k) {
                ring_point[j] = ring_point[j - k];
                ring_b[j] = ring_b[j - k];
            }
            ring_point[j] = tp;
            ring_b[j] = tb;
        }
    }

    nring = n;
}


static int
ring_find(uint32_t h)
{
    int  lo, hi, mid;

    lo = 0;
    hi = nring;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (ring_point[mid] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return (lo == nring) ? 0 : lo;
}


static int
pick_chash(uint64_t hash)
{
    if (nring == 0) {
        return -1;
    }

    return ring_b[ring_find((uint32_t) (hash >> 32))];
}


/* HAProxy: walk the ring to the first server under its bounded load */

static int
pick_bounded(uint64_t hash, int inst)
{
    int       i, k, b, first;
    long      tw;
    uint64_t  lhs, rhs;

    if (nring == 0) {
        return -1;
    }

    tw = 0;
    for (b = 0; b < nb; b++) {
        if (be[b].accepting) {
            tw += be[b].units;
        }
    }

    i = ring_find((uint32_t) (hash >> 32));
    first = ring_b[i];

    for (k = 0; k < nring; k++) {
        b = ring_b[(i + k) % nring];

        lhs = (uint64_t) (live[inst][b] + 1) * tw * 100;
        rhs = (uint64_t) SIM_BOUND * (live_sum[inst] + 1) * be[b].units;

        if (lhs <= rhs) {
            return b;
        }
    }

    return first;
}


static int
pick_ll_stale(void)
{
    int     b, best;
    double  l, bl;

    best = -1;
    bl = 0;

    for (b = 0; b < nb; b++) {
        if (!be[b].accepting) {
            continue;
        }

        l = (double) (cf.report == 0 ? be[b].conn : be[b].reported)
            / be[b].cap;

        if (best == -1 || l < bl) {
            best = b;
            bl = l;
        }
    }

    return best;
}


/* nginx's smooth weighted round robin, state per worker */

static int
pick_rr(int inst, int worker)
{
    int   b, best, total;
    int  *cw;

    cw = rr_cw[inst][worker];
    best = -1;
    total = 0;

    for (b = 0; b < nb; b++) {
        if (!be[b].accepting) {
            continue;
        }

        cw[b] += be[b].units;
        total += be[b].units;

        if (best == -1 || cw[b] > cw[best]) {
            best = b;
        }
    }

    if (best >= 0) {
        cw[best] -= total;
    }

    return best;
}


static int
pick_random(void)
{
    int     b, total;
    double  r;

    total = 0;
    for (b = 0; b < nb; b++) {
        if (be[b].accepting) {
            total += be[b].units;
        }
    }

    r = rng_unit(&policy_rng) * total;

    for (b = 0; b < nb; b++) {
        if (!be[b].accepting) {
            continue;
        }

        r -= be[b].units;
        if (r < 0) {
            return b;
        }
    }

    return -1;
}


static int
report_fresh(int b, double now)
{
    if (cf.report == 0) {
        return 1;
    }

    return be[b].has_report && now - be[b].last_report <= 3 * cf.report;
}


static int
pick_ours(uint64_t hash, int inst, double now)
{
    int              b, per_inst, held;
    long             est;
    double           up;
    ra_pl_backend_t  v[SIM_MAX_B];

    per_inst = (policy == P_OURS_INST);

    for (b = 0; b < nb; b++) {
        v[b].weight = be[b].units;
        v[b].fresh = report_fresh(b, now);
        v[b].capacity = v[b].fresh ? be[b].cap : 0;

        /*
         * as ra_report_load(): the connections every instance holds
         * (this one's, the others' as shared at the last tick), and the
         * estimate max(0, reported + held - seen)
         */

        held = live[inst][b] + remote[inst][b];
        v[b].pending = 0;

        if (cf.report == 0) {
            v[b].reported = be[b].conn;

        } else {
            est = (long) be[b].reported + held - seen[inst][b];
            v[b].reported = (est < 0) ? 0 : (uint32_t) est;
        }

        v[b].live = held;
        v[b].rooms = per_inst ? irooms[inst][b] : be[b].rooms;

        up = (now - be[b].t_up) * 1000.0;
        v[b].up_ms = (be[b].t_up <= 0 || up >= 4e9) ? UINT32_MAX
                                                     : (uint32_t) up;
        v[b].available = be[b].accepting;
    }

    return ra_placement_pick(&pl_conf, v, nb, hash);
}


static int
place(room_t *r, int inst, int worker, double now)
{
    switch (policy) {

    case P_OURS:
    case P_OURS_INST:
        return pick_ours(r->hash, inst, now);

    case P_LL_STALE:
        return pick_ll_stale();

    case P_RR:
        return pick_rr(inst, worker);

    case P_CHASH:
        return pick_chash(r->hash);

    case P_BOUNDED:
        return pick_bounded(r->hash, inst);

    default:
        return pick_random();
    }
}


static void
count_placement(int b, double now)
{
    int  w;

    for (w = 0; w < SIM_HERD_W; w++) {
        if (now >= SIM_T_ADD && now < SIM_T_ADD + herd_window[w]) {
            add_total[w]++;
            add_new[w] += (b == nb - 1);
        }
    }
}


static void
count_move(room_t *r, int to, double now)
{
    if (r->home == to || r->home < 0) {
        return;
    }

    if (now >= SIM_T_CRASH && now < SIM_T_CRASH + SIM_WINDOW) {
        moved_crash++;
    }

    if (now >= SIM_T_ADD && now < SIM_T_ADD + SIM_WINDOW) {
        moved_add++;
    }
}


static void
agreement(room_t *r, int inst, int b, double now)
{
    int  i, ok;

    if (cf.ninst < 2 || now < SIM_T_MEASURE) {
        return;
    }

    ok = 1;

    for (i = 0; i < cf.ninst; i++) {
        if (i != inst && pick_ours(r->hash, i, now) != b) {
            ok = 0;
        }
    }

    agree_n++;
    agree_yes += ok;
}


static void
join(int rid, int k, double now)
{
    int        b, new_room, inst, *slot;
    room_t    *r;
    member_t  *m;

    r = &rooms[rid];
    m = &members[r->moff + k];

    if (!r->alive) {
        return;
    }

    if (r->crashed) {
        /* a room of the crashed backend that comes back */
        r->crashed = 0;
        crashed_rooms += (now < SIM_T_CRASH + SIM_WINDOW);
    }

    inst = m->inst;

    if (policy_stateless[policy]) {
        b = place(r, inst, m->worker, now);
        if (b < 0) {
            return;
        }

        if (k == 0) {
            count_placement(b, now);
        }

        if (r->home >= 0 && be[r->home].up && now >= SIM_T_MEASURE) {
            joins_counted++;
            joins_hit += (b == r->home);
        }

        r->home = b;

    } else {
        slot = (policy == P_OURS_INST) ? &r->ibe[inst] : &r->be;
        b = *slot;
        new_room = 0;

        if (b < 0 || !be[b].up) {

            /* a new room, or its backend is gone: (re)place it */

            new_room = (b < 0);

            if (b >= 0) {
                if (policy == P_OURS_INST) {
                    irooms[inst][b]--;
                } else {
                    be[b].rooms--;
                }
            }

            b = place(r, inst, m->worker, now);
            if (b < 0) {
                return;
            }

            *slot = b;

            if (policy == P_OURS_INST) {
                irooms[inst][b]++;
            } else {
                be[b].rooms++;
            }

            if (k == 0 && new_room) {
                count_placement(b, now);

                if (policy == P_OURS) {
                    agreement(r, inst, b, now);
                }
            }
        }

        if (r->home >= 0 && be[r->home].up && now >= SIM_T_MEASURE) {
            joins_counted++;
            joins_hit += (b == r->home);
        }

        if (r->home < 0 || !be[r->home].up) {
            count_move(r, b, now);
            r->home = b;
        }
    }

    m->b = b;
    be[b].conn++;
    live[inst][b]++;
    live_sum[inst]++;
}


static void
disconnect(member_t *m)
{
    if (m->b < 0) {
        return;
    }

    be[m->b].conn--;
    live[m->inst][m->b]--;
    live_sum[m->inst]--;
    m->b = -1;
}


static void
room_end(int rid)
{
    int      k, i;
    room_t  *r;

    r = &rooms[rid];

    for (k = 0; k < r->size; k++) {
        disconnect(&members[r->moff + k]);
    }

    if (r->be >= 0) {
        be[r->be].rooms--;
    }

    for (i = 0; i < SIM_MAX_INST; i++) {
        if (r->ibe[i] >= 0) {
            irooms[i][r->ibe[i]]--;
        }
    }

    r->alive = 0;
}


static int
zipf_draw(void)
{
    int     s;
    double  u;

    u = rng_unit(&trace_rng);

    for (s = 1; s < SIM_ZIPF_MAX; s++) {
        if (u <= zipf_cdf[s]) {
            break;
        }
    }

    return s;
}


static void
arrival(double now)
{
    int      k, rid;
    double   rate, life;
    room_t  *r;
    char     name[32];

    if (nrooms == maxrooms) {
        maxrooms *= 2;
        rooms = realloc(rooms, maxrooms * sizeof(room_t));
        if (rooms == NULL) {
            abort();
        }
    }

    rid = nrooms++;
    r = &rooms[rid];

    memset(r, 0, sizeof(room_t));
    snprintf(name, sizeof(name), "room-%d", rid);
    r->hash = ra_hash(name, strlen(name));
    r->t0 = now;
    r->size = zipf_draw();
    life = rng_exp(&trace_rng, SIM_LIFE_MEAN);
    r->life = (life > SIM_LIFE_CAP * SIM_LIFE_MEAN) ? SIM_LIFE_CAP * SIM_LIFE_MEAN
                                                      : life;
    r->be = -1;
    r->home = -1;
    r->alive = 1;

    for (k = 0; k < SIM_MAX_INST; k++) {
        r->ibe[k] = -1;
    }

    if (nmembers + r->size > maxmembers) {
        maxmembers *= 2;
        members = realloc(members, maxmembers * sizeof(member_t));
        if (members == NULL) {
            abort();
        }
    }

    r->moff = nmembers;
    nmembers += r->size;

    for (k = 0; k < r->size; k++) {
        members[r->moff + k].b = -1;
        members[r->moff + k].inst = rng_next(&trace_rng) % cf.ninst;
        members[r->moff + k].worker = rng_next(&trace_rng) % SIM_WORKERS;

        ev_push(k == 0 ? now : now + rng_unit(&trace_rng) * r->life,
                E_JOIN, rid, k);
    }

    ev_push(now + r->life, E_END, rid, 0);

    /* the next arrival: Poisson, 10x during the flash crowd */

    rate = lambda0;
    if (now >= SIM_T_FLASH && now < SIM_T_FLASH + SIM_FLASH_LEN) {
        rate *= SIM_FLASH_X;
    }

    ev_push(now + rng_exp(&trace_rng, 1.0 / rate), E_ARRIVAL, 0, 0);
}


/*
 * Every 250 ms each instance samples the loads it sees, then sends the
 * connections it holds to the others (ra_share.c), which count them in
 * remote_live
 */

static void
tick(double now)
{
    int  i, j, b;

    hist_pos = (hist_pos + 1) % SIM_HIST;
    hist_n += (hist_n < SIM_HIST);

    for (i = 0; i < cf.ninst; i++) {
        for (b = 0; b < nb; b++) {
            hist[i][hist_pos][b] = live[i][b] + remote[i][b];
        }
    }

    for (i = 0; i < cf.ninst; i++) {
        for (b = 0; b < nb; b++) {
            remote[i][b] = 0;
            for (j = 0; j < cf.ninst; j++) {
                remote[i][b] += (j != i) ? live[j][b] : 0;
            }
        }
    }

    ev_push(now + SIM_TICK, E_TICK, 0, 0);
}


static void
report(int b, double now)
{
    int  i, k, held, then;

    if (!be[b].up) {
        return;
    }

    if (rng_unit(&be[b].rng) >= SIM_LOSS || !be[b].has_report) {
        be[b].reported = be[b].conn;
        be[b].last_report = now;
        be[b].has_report = 1;

        /*
         * ra_report_seen(): what each instance held report_lag (2 ticks)
         * ago, or now if fewer
         */

        for (i = 0; i < cf.ninst; i++) {
            held = live[i][b] + remote[i][b];
            k = (hist_n > 2) ? 2 : hist_n - 1;
            then = (k < 0) ? held
                   : hist[i][(hist_pos + SIM_HIST - k) % SIM_HIST][b];
            seen[i][b] = (held < then) ? held : then;
        }
    }

    ev_push(now + cf.report * (1.0 - SIM_JITTER
                               + 2 * SIM_JITTER * rng_unit(&be[b].rng)),
            E_REPORT, b, 0);
}


static void
sample(double now)
{
    int     b, over;
    double  sc, sl, peak, l, util;

    sc = 0;
    sl = 0;
    peak = 0;
    over = 0;

    for (b = 0; b < nb; b++) {
        if (!be[b].up) {
            continue;
        }

        if (be[b].conn > be[b].cap) {
            over = 1;
        }

        if (!be[b].accepting) {
            continue;
        }

        l = (double) be[b].conn / be[b].cap;
        peak = (l > peak) ? l : peak;
        sl += be[b].conn;
        sc += be[b].cap;
    }

    util = sl / sc;
    peak_util = (util > peak_util) ? util : peak_util;

    if (debug && policy == P_OURS) {
        fprintf(stderr, "t=%.0f util %.2f peak %.2f ratio %.2f%s\n", now,
                util, peak, peak / util, over ? " OVER" : "");
    }

    samples[nsamples++] = (sl > 0) ? peak / util : 1.0;
    over_s += over;
}


/* stateless policies: the target of every room, to compare */

static int *
stateless_targets(void)
{
    int     i, *t;

    t = malloc((nrooms + 1) * sizeof(int));
    if (t == NULL) {
        abort();
    }

    for (i = 0; i < nrooms; i++) {
        if (!rooms[i].alive) {
            t[i] = -1;

        } else if (policy == P_CHASH) {
            t[i] = pick_chash(rooms[i].hash);

        } else {
            t[i] = pick_bounded(rooms[i].hash, 0);
        }
    }

    return t;
}


static int
stateless_moves(int *pre)
{
    int   i, moved, *post;

    post = stateless_targets();
    moved = 0;

    for (i = 0; i < nrooms; i++) {
        moved += (pre[i] != post[i]);
    }

    free(pre);
    free(post);

    return moved;
}


static void
crash(double now)
{
    int        i, k, *pre;
    double     t;
    room_t    *r;
    member_t  *m;
    uint64_t   h;

    pre = policy_stateless[policy] ? stateless_targets() : NULL;

    be[SIM_CRASH_B].up = 0;
    be[SIM_CRASH_B].accepting = 0;

    crashed_rooms = 0;

    for (i = 0; i < nrooms; i++) {
        r = &rooms[i];

        if (!r->alive) {
            continue;
        }

        r->crashed = (r->home == SIM_CRASH_B);

        for (k = 0; k < r->size; k++) {
            m = &members[r->moff + k];

            if (m->b != SIM_CRASH_B) {
                continue;
            }

            disconnect(m);

            h = ((uint64_t) i << 8) ^ k;
            t = now + SIM_RECONNECT * rng_unit(&h);

            ev_push(t, E_RECONNECT, i, k);
        }
    }

    if (pre) {
        ring_build();
        moved_crash = stateless_moves(pre);
    }
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static void
run_one(const config_t *c, int pol, result_t *res)
{
    int      b, i, n, *pre;
    double   total, now, units;
    ev_t     e;

    cf = *c;
    policy = pol;

    memset(be, 0, sizeof(be));
    memset(remote, 0, sizeof(remote));
    memset(seen, 0, sizeof(seen));
    memset(hist, 0, sizeof(hist));
    hist_pos = 0;
    hist_n = 0;
    memset(live, 0, sizeof(live));
    memset(live_sum, 0, sizeof(live_sum));
    memset(irooms, 0, sizeof(irooms));
    memset(rr_cw, 0, sizeof(rr_cw));

    nb = cf.nb;
    units = 0;

    for (b = 0; b < nb + 1; b++) {
        be[b].units = (b == nb) ? SIM_ADD_UNITS : (1 << (b % 3));
        be[b].cap = be[b].units * SIM_UNIT;
        be[b].up = (b < nb);
        be[b].accepting = be[b].up;
        be[b].t_up = 0;
        be[b].rng = SIM_SEED ^ ((uint64_t) (b + 1) << 32) ^ cf.nb;

        if (b < nb) {
            units += be[b].units;
        }
    }

    /* lambda0 * E[connection-seconds per room] = util * capacity */

    {
        double  num = 0, den = 0, mean_size, life;
        int     s;

        for (s = 1; s <= SIM_ZIPF_MAX; s++) {
            num += pow(s, 1 - SIM_ZIPF_S);
            den += pow(s, -SIM_ZIPF_S);
        }

        total = 0;
        for (s = 1; s <= SIM_ZIPF_MAX; s++) {
            total += pow(s, -SIM_ZIPF_S) / den;
            zipf_cdf[s] = total;
        }

        mean_size = num / den;

        /* E[min(L, c m)] for an exponential of mean m */
        life = SIM_LIFE_MEAN * (1 - exp(-SIM_LIFE_CAP));

        lambda0 = SIM_UTIL * units * SIM_UNIT
                  / (life * (1 + mean_size) / 2);
    }

    trace_rng = SIM_SEED ^ ((uint64_t) cf.nb << 16) ^ (uint64_t) cf.ninst;
    policy_rng = SIM_SEED * 7 + pol;

    nrooms = 0;
    maxrooms = 1 << 16;
    rooms = malloc(maxrooms * sizeof(room_t));
    nmembers = 0;
    maxmembers = 1 << 18;
    members = malloc(maxmembers * sizeof(member_t));
    nheap = 0;
    evseq = 0;
    cur_bucket = 0;

    n = 0;
    for (b = 0; b < nb + 1; b++) {
        n += SIM_POINTS * be[b].units;
    }

    ring_point = malloc(n * sizeof(uint32_t));
    ring_b = malloc(n * sizeof(int));
    samples = malloc(((int) SIM_T_END + 1) * sizeof(double));

    if (rooms == NULL || members == NULL || ring_point == NULL
        || ring_b == NULL || samples == NULL)
    {
        abort();
    }

    nsamples = 0;
    over_s = 0;
    peak_util = 0;
    joins_counted = 0;
    joins_hit = 0;
    moved_crash = 0;
    crashed_rooms = 0;
    moved_add = 0;
    memset(add_total, 0, sizeof(add_total));
    memset(add_new, 0, sizeof(add_new));
    agree_n = 0;
    agree_yes = 0;

    ring_build();

    ev_push(0, E_ARRIVAL, 0, 0);

    if (cf.report > 0) {
        for (b = 0; b < nb; b++) {
            ev_push(rng_unit(&be[b].rng) * cf.report, E_REPORT, b, 0);
        }
    }

    for (i = (int) SIM_T_MEASURE; i < (int) SIM_T_END; i++) {
        ev_push(i, E_SAMPLE, 0, 0);
    }

    ev_push(SIM_T_CRASH, E_CRASH, 0, 0);
    ev_push(SIM_T_DRAIN, E_DRAIN, 0, 0);
    ev_push(SIM_T_ADD, E_ADD, 0, 0);
    ev_push(SIM_TICK, E_TICK, 0, 0);

    while (ev_pop(&e)) {
        now = e.t;

        if (now >= SIM_T_END) {
            break;
        }

        switch (e.type) {

        case E_ARRIVAL:
            arrival(now);
            break;

        case E_JOIN:
        case E_RECONNECT:
            join(e.id, e.k, now);
            break;

        case E_END:
            room_end(e.id);
            break;

        case E_REPORT:
            report(e.id, now);
            break;

        case E_TICK:
            tick(now);
            break;

        case E_SAMPLE:
            sample(now);
            break;

        case E_CRASH:
            crash(now);
            break;

        case E_DRAIN:
            be[SIM_DRAIN_B].accepting = 0;
            if (policy_stateless[policy]) {
                ring_build();
            }
            break;

        case E_ADD:
            pre = policy_stateless[policy] ? stateless_targets() : NULL;

            b = nb++;
            be[b].up = 1;
            be[b].accepting = 1;
            be[b].t_up = now;

            if (pre) {
                ring_build();
                moved_add = stateless_moves(pre);
            }

            if (cf.report > 0) {
                report(b, now);
            }

            break;
        }
    }

    /* results */

    {
        int     a;
        double  sum;

        qsort(samples, nsamples, sizeof(double), cmp_double);

        sum = 0;
        for (a = 0; a < nsamples; a++) {
            sum += samples[a];
        }

        res->mean = sum / nsamples;
        res->p99 = samples[(int) ceil(0.99 * nsamples) - 1];
    }

    res->over_s = over_s;
    res->affinity = joins_counted ? 100.0 * joins_hit / joins_counted : 100;
    res->moved_crash = moved_crash;
    res->crashed_rooms = crashed_rooms;
    res->moved_add = moved_add;

    {
        double  acc_units = 0;

        for (b = 0; b < nb; b++) {
            if (be[b].accepting) {
                acc_units += be[b].units;
            }
        }

        for (i = 0; i < SIM_HERD_W; i++) {
            res->herd[i] = add_total[i]
                           ? add_new[i]
                             / (add_total[i] * SIM_ADD_UNITS / acc_units)
                           : 0;
        }
    }

    res->agree = agree_n ? 100.0 * agree_yes / agree_n : -1;
    res->peak_util = peak_util;
    res->done = 1;

    free(rooms);
    free(members);
    free(ring_point);
    free(ring_b);
    free(samples);
    free(heap);
    heap = NULL;
    maxheap = 0;

    for (i = 0; i < SIM_BUCKETS; i++) {
        free(buckets[i].ev);
        buckets[i].ev = NULL;
        buckets[i].n = 0;
        buckets[i].max = 0;
    }
}


static void
usage(void)
{
    fprintf(stderr,
        "usage: sim [-j jobs] [-c choices] [-b balance_factor] "
        "[-s slow_start_ms]\n"
        "           [-n backends] [-r report_s] [-i instances]\n"
        "       sim -w live [options]   (the live benchmark's workload; "
        "see README.md)\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int        opt, jobs, nconf, i, j, p, k, w, hw, only_n, only_i;
    int        src[32];
    double     only_r;
    pid_t      pid;
    config_t   confs[32];
    result_t  *res, *x;
    static const int     sizes[] = { 8, 32, 128 };
    static const double  reports[] = { 0, 1, 5, 10 };
    static const int     insts[] = { 1, 3 };

    for (i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-w") == 0 && strcmp(argv[i + 1], "live") == 0) {
            return sim_live_main(argc, argv);
        }
    }

    jobs = 2;
    debug = (getenv("SIM_DEBUG") != NULL);
    only_n = 0;
    only_r = -1;
    only_i = 0;

    pl_conf.choices = RA_PL_CHOICES_DEFAULT;
    pl_conf.balance_factor = RA_PL_BALANCE_FACTOR_DEFAULT;
    pl_conf.slow_start_ms = RA_PL_SLOW_START_MS_DEFAULT;

    while ((opt = getopt(argc, argv, "j:c:b:s:n:r:i:w:")) != -1) {
        switch (opt) {
        case 'j': jobs = atoi(optarg); break;
        case 'c': pl_conf.choices = atoi(optarg); break;
        case 'b': pl_conf.balance_factor = atoi(optarg); break;
        case 's': pl_conf.slow_start_ms = atoi(optarg); break;
        case 'n': only_n = atoi(optarg); break;
        case 'r': only_r = atof(optarg); break;
        case 'i': only_i = atoi(optarg); break;
        case 'w': break;
        default: usage();
        }
    }

    if (jobs < 1) {
        jobs = 1;
    }

    nconf = 0;

    for (i = 0; i < 3; i++) {
        for (k = 0; k < 4; k++) {
            for (w = 0; w < 2; w++) {
                if ((only_n && sizes[i] != only_n)
                    || (only_r >= 0 && reports[k] != only_r)
                    || (only_i && insts[w] != only_i))
                {
                    continue;
                }

                confs[nconf].nb = sizes[i];
                confs[nconf].report = reports[k];
                confs[nconf].ninst = insts[w];
                nconf++;
            }
        }
    }

    for (i = 0; i < nconf; i++) {
        for (j = 0; j <= i; j++) {
            if (confs[j].nb == confs[i].nb
                && confs[j].ninst == confs[i].ninst)
            {
                src[i] = j;
                break;
            }
        }
    }

    res = mmap(NULL, sizeof(result_t) * nconf * P_N,
               PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) {
        perror("mmap");
        return 1;
    }

    memset(res, 0, sizeof(result_t) * nconf * P_N);

    /* the biggest configurations first, spread over the jobs */

    for (w = 0; w < jobs; w++) {
        pid = fork();

        if (pid < 0) {
            perror("fork");
            return 1;
        }

        if (pid > 0) {
            continue;
        }

        k = 0;

        for (i = nconf - 1; i >= 0; i--) {
            for (p = 0; p < P_N; p++) {
                if ((p == P_OURS_INST && confs[i].ninst == 1)
                    || (policy_blind[p] && src[i] != i))
                {
                    continue;
                }

                if (k++ % jobs == w) {
                    run_one(&confs[i], p, &res[i * P_N + p]);
                }
            }
        }

        _exit(0);
    }

    while (wait(NULL) > 0) {
        /* void */
    }

    printf("policy defaults: choices %u, balance factor %u, "
           "slow start %u ms\n",
           pl_conf.choices, pl_conf.balance_factor, pl_conf.slow_start_ms);

    for (i = 0; i < nconf; i++) {
        x = &res[i * P_N];

        for (p = 0; p < P_N; p++) {
            if (policy_blind[p]) {
                x[p] = res[src[i] * P_N + p];
            }
        }

        hw = (confs[i].report >= 10) ? 2 : (confs[i].report >= 5) ? 1 : 0;

        printf("\n== %d backends (capacities 1:2:4), reports every %g s, "
               "%d instance%s x %d workers; peak utilisation %.0f %% ==\n",
               confs[i].nb, confs[i].report, confs[i].ninst,
               confs[i].ninst > 1 ? "s" : "", SIM_WORKERS,
               100 * x[P_LL_STALE].peak_util);

        printf("%-14s %10s %6s %6s %9s %12s %7s %6s %7s\n",
               "policy", "peak/ideal", "p99", "s>cap", "affinity",
               "moved:crash", ":add", "herd", "agree");

        for (p = 0; p < P_N; p++) {
            if (!x[p].done) {
                continue;
            }

            printf("%-14s %10.2f %6.2f %6d %8.2f%% %5d of %4d %7d %6.2f",
                   policy_name[p], x[p].mean, x[p].p99, x[p].over_s,
                   x[p].affinity, x[p].moved_crash, x[p].crashed_rooms,
                   x[p].moved_add, x[p].herd[hw]);

            if (x[p].agree >= 0) {
                printf(" %6.2f%%", x[p].agree);
            }

            printf("\n");
        }
    }

    return 0;
}
