/*
 * sim -w live: the live benchmark's default workload (bench/live), modelled
 * connection by connection, to be compared with what `make bench-live`
 * measured (live-figures.txt).  See README.md, "The live workload".
 *
 * The rooms are the very schedule bench/live/run.py replays (live_trace.py
 * writes it from the same seed); ra-* policies call src/ra_placement.c with
 * inputs built the way the module builds them (src/ra_pick.c
 * ra_fill_placement(), src/ra_report.c ra_report_input() and
 * ra_report_load()); nginx hash is nginx's own ring (crc32 of
 * "HOST\0PORT" and the previous point, 160 points per weight unit) over the
 * benchmark's ports; HAProxy's is its consistent tree (16 nodes per weight
 * unit keyed by the server id, full_hash(sdbm) of the room name, bounded
 * load).
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libgen.h>

#include "ra_placement.h"
#include "ra_decay.h"
#include "live.h"


#define LV_NB            8
#define LV_NI            2            /* nginx instances */
#define LV_UNIT          100
#define LV_SAMPLE_MS     500.0
#define LV_WARMUP_MS     10000.0
#define LV_MIN_TOTAL     20
#define LV_STALE_MIN_MS  30000.0      /* run.py: max(30 s, 3 x period) */
#define LV_HIST_TICK     250.0        /* RA_HIST_TICK, RA_SHARE_COUNT_TICK */
#define LV_HIST_LEN      32           /* RA_HIST_LEN */
#define LV_COUNT_ALL     2000.0       /* RA_SHARE_COUNT_ALL */
#define LV_RACE_MS       2000.0       /* RA_SHARE_RACE */
#define LV_MAX_POL       8
#define LV_MAX_SEEDS     16
#define LV_MAX_REP       64

static const int lv_units[LV_NB] = { 1, 1, 2, 2, 4, 4, 1, 2 };


enum {
    L_ORACLE = 0,
    L_REDIS,            /* room_affinity + Redis, proxy flow */
    L_JOIN,             /* room_affinity + Redis, join flow */
    L_LOCAL,            /* room_affinity without Redis */
    L_HASH,             /* nginx hash consistent, weights */
    L_HAPROXY,          /* HAProxy url_param consistent, bf 125 */
    L_N
};

static const char *lv_pol_name[L_N] = {
    "oracle", "ra-redis", "ra-redis-join", "ra-local", "nginx-hash",
    "haproxy"
};

static const char *lv_pol_label[L_N] = {
    "oracle (exact live counts, greedy)", "room_affinity + Redis reports",
    "room_affinity + Redis reports", "room_affinity, no Redis",
    "nginx hash consistent, weights", "HAProxy url_param consistent bf125"
};

static const char *lv_pol_flow[L_N] = {
    "direct", "proxy", "join", "proxy", "proxy", "proxy"
};


enum {
    V_MEMBER = 0,       /* a member arrives at its front */
    V_BCONN,            /* the backend counts an upgraded connection */
    V_END,              /* the room ends: its members close */
    V_BCLOSE,           /* the backend counts a close */
    V_REPORT,           /* a backend publishes its report */
    V_LEAVE,            /* -D: a backend's report on departures is due */
    V_APPLY,            /* an instance applies a report */
    V_TICK,             /* an instance's count tick (ra_share_tick) */
    V_COUNT,            /* an instance receives the other's count */
    V_RJOINS,           /* an instance receives the other's new joins */
    V_SHARE,            /* an instance receives the other's placement */
    V_SAMPLE
};


typedef struct {
    double      t;
    uint64_t    seq;
    int         type;
    int         a;            /* room, backend or instance */
    int         b;            /* member, backend */
    int         c;            /* value */
} lv_ev_t;


typedef struct {
    char        name[64];
    uint64_t    hash;
    double      start;
    double      end;
    int         n;
    int         moff;
} lv_room_t;


typedef struct {
    double      t;
    int         front;
    int         b;            /* backend it connected to, -1: none */
} lv_member_t;


typedef struct {
    lv_room_t    *rooms;
    int           nrooms;
    lv_member_t  *members;
    int           nmembers;
    double        duration;
} lv_trace_t;


/* one nginx instance's zone, as far as placement reads it */
typedef struct {
    int         live[LV_NB];          /* this instance's connections */
    int         remote[LV_NB];        /* the other's, as last received */
    int         published[LV_NB];
    int         joins[LV_NB];         /* this instance's and the other's */
    int         own_joins[LV_NB];     /* this instance's, ever */
    int         published_j[LV_NB];
    ra_decay_t  dec[LV_NB];
    ra_decay_fit_t  fit;
    int         rooms[LV_NB];
    int         has_report[LV_NB];
    double      reported_at[LV_NB];
    int         connections[LV_NB];
    int         seen[LV_NB];
    uint32_t    hist[LV_HIST_LEN][LV_NB];
    int         hist_pos, hist_n;
    double      hist_at;
    double      count_all_at;
    int        *table;                /* room -> backend, -1 */
    double     *placed_at;
    int        *room_live;            /* members routed here, live */
    int         served[LV_NB];        /* HAProxy: this process's */
} lv_inst_t;


typedef struct {
    int         policy;
    int         seed;
    double      period;         /* s */
    double      startup_ms;     /* backends' start before the driver's */
    double      tick_phase[LV_NI];
    double      tick_ms;        /* the driver's lateness: its timer */
    double      lat_ms;         /* client to backend, through a front */
    double      join_ms;        /* join answer to direct connection */
    double      share_ms;       /* a placement reaches the other front */
    double      count_ms;       /* a count reaches the other front */
    double      sample_off_ms;  /* the sampler starts before the driver */
    double      report_lag_ms;
    uint64_t    rng;
} lv_run_t;


typedef struct {
    double      mean;
    double      p99;
    double      conns;
    int         splits;
    int         nsamples;
} lv_res_t;


static uint32_t lv_estimate(const lv_inst_t *in, int b, double now);
static double lv_stale_ms(void);
static ra_pl_conf_t  lv_conf;
static int           lv_port = 19400;
static int           lv_debug;
static uint32_t      lv_fixed;       /* ra_decay_fit_t's fixed: -L */
static char          lv_lifetime[32];

/* the state of one run */
static lv_trace_t   *T;
static lv_run_t      R;
static lv_inst_t     inst[LV_NI];
static int           bconn[LV_NB];     /* what each backend holds */
static double        lv_leave_ms;      /* -D: reports on departures */
static double        lv_now;           /* the event being run */
static int           closed[LV_NB];    /* closes since its last report */
static double        rep_at[LV_NB];
static int           leave_due[LV_NB];
static int           oracle_live[LV_NB];
static int          *oracle_room;
static int          *room_ever;        /* bit mask of backends ever used */
static lv_ev_t      *heap;
static int           nheap, maxheap;
static uint64_t      evseq;
static double       *ratios;
static int           nratios;
static double        conns_sum;

static uint32_t      hash_pt[LV_NB * 4 * 160];
static int           hash_b[LV_NB * 4 * 160];
static int           nhash;
static uint32_t      hap_key[LV_NB * 4 * 16];
static int           hap_b[LV_NB * 4 * 16];
static int           nhap;


static uint64_t
lv_rng(uint64_t *s)
{
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static double
lv_unit(uint64_t *s)
{
    return (lv_rng(s) >> 11) * (1.0 / 9007199254740992.0);
}


/* the event heap */

static int
lv_before(const lv_ev_t *x, const lv_ev_t *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}


static void
lv_push(double t, int type, int a, int b, int c)
{
    int      i, p;
    lv_ev_t  e, tmp;

    if (nheap == maxheap) {
        maxheap = maxheap ? 2 * maxheap : 8192;
        heap = realloc(heap, maxheap * sizeof(lv_ev_t));
        if (heap == NULL) {
            abort();
        }
    }

    e.t = t;
    e.seq = evseq++;
    e.type = type;
    e.a = a;
    e.b = b;
    e.c = c;

    i = nheap++;
    heap[i] = e;

    while (i > 0) {
        p = (i - 1) / 2;
        if (!lv_before(&heap[i], &heap[p])) {
            break;
        }
        tmp = heap[i];
        heap[i] = heap[p];
        heap[p] = tmp;
        i = p;
    }
}


static int
lv_pop(lv_ev_t *out)
{
    int      i, l, r, m;
    lv_ev_t  tmp;

    if (nheap == 0) {
        return 0;
    }

    *out = heap[0];
    heap[0] = heap[--nheap];
    i = 0;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;
        if (l < nheap && lv_before(&heap[l], &heap[m])) {
            m = l;
        }
        if (r < nheap && lv_before(&heap[r], &heap[m])) {
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


/* the schedule, from bench/live/run.py through live_trace.py */

static lv_trace_t *
lv_load(const char *dir, int seed)
{
    int          i, k, n, f;
    char         cmd[1200], name[64];
    FILE        *fp;
    lv_trace_t  *t;
    lv_room_t   *r;

    snprintf(cmd, sizeof(cmd), "python3 '%s/live_trace.py' %d", dir, seed);

    fp = popen(cmd, "r");
    if (fp == NULL) {
        perror("popen");
        exit(1);
    }

    t = calloc(1, sizeof(lv_trace_t));
    if (t == NULL || fscanf(fp, " duration %lf rooms %d", &t->duration, &n)
                     != 2)
    {
        fprintf(stderr, "sim: no schedule from \"%s\"\n", cmd);
        exit(1);
    }

    t->rooms = calloc(n, sizeof(lv_room_t));
    t->members = calloc(n * 40 + 1, sizeof(lv_member_t));
    if (t->rooms == NULL || t->members == NULL) {
        abort();
    }

    for (i = 0; i < n; i++) {
        r = &t->rooms[i];
        if (fscanf(fp, " %63s %lf %lf %d", name, &r->start, &r->end, &r->n)
            != 4 || r->n > 40)
        {
            fprintf(stderr, "sim: bad schedule line %d\n", i + 3);
            exit(1);
        }
        snprintf(r->name, sizeof(r->name), "%s", name);
        r->hash = ra_hash(r->name, strlen(r->name));
        r->start *= 1000;
        r->end *= 1000;
        r->moff = t->nmembers;

        for (k = 0; k < r->n; k++) {
            lv_member_t  *m = &t->members[t->nmembers++];

            if (fscanf(fp, " %lf %d", &m->t, &f) != 2) {
                fprintf(stderr, "sim: bad schedule line %d\n", i + 3);
                exit(1);
            }
            m->t *= 1000;
            m->front = f;
            m->b = -1;
        }
    }

    t->nrooms = n;
    t->duration *= 1000;

    if (pclose(fp) != 0) {
        fprintf(stderr, "sim: \"%s\" failed\n", cmd);
        exit(1);
    }

    return t;
}


/* nginx: hash $arg_roomName consistent (ngx_http_upstream_hash_module) */

static uint32_t  crc_table[256];

static void
lv_crc_init(void)
{
    uint32_t  c, i, k;

    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) {
            c = (c & 1) ? 0xedb88320U ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}


static uint32_t
lv_crc_update(uint32_t crc, const void *data, size_t len)
{
    const uint8_t  *p = data;

    while (len--) {
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }

    return crc;
}


static int
lv_cmp_pt(const void *x, const void *y)
{
    const uint64_t  *a = x, *b = y;

    return (*a > *b) - (*a < *b);
}


static void
lv_hash_build(void)
{
    int        i, j, np, n;
    char       port[16];
    uint8_t    prev[4];
    uint32_t   base, h, pv;
    uint64_t  *pts;

    lv_crc_init();

    n = 0;
    for (i = 0; i < LV_NB; i++) {
        n += lv_units[i] * 160;
    }

    pts = malloc(n * sizeof(uint64_t));
    if (pts == NULL) {
        abort();
    }

    n = 0;

    for (i = 0; i < LV_NB; i++) {
        snprintf(port, sizeof(port), "%d", lv_port + 1 + i);
        base = 0xffffffffU;
        base = lv_crc_update(base, "127.0.0.1", 9);
        base = lv_crc_update(base, "", 1);
        base = lv_crc_update(base, port, strlen(port));

        pv = 0;
        np = lv_units[i] * 160;

        for (j = 0; j < np; j++) {
            prev[0] = pv & 0xff;
            prev[1] = (pv >> 8) & 0xff;
            prev[2] = (pv >> 16) & 0xff;
            prev[3] = pv >> 24;
            h = lv_crc_update(base, prev, 4) ^ 0xffffffffU;
            pts[n++] = ((uint64_t) h << 32) | (uint64_t) i;
            pv = h;
        }
    }

    /* sorted by hash (stable enough: the server in the low bits) */
    qsort(pts, n, sizeof(uint64_t), lv_cmp_pt);

    nhash = 0;
    for (j = 0; j < n; j++) {
        if (nhash && hash_pt[nhash - 1] == (uint32_t) (pts[j] >> 32)) {
            continue;
        }
        hash_pt[nhash] = (uint32_t) (pts[j] >> 32);
        hash_b[nhash] = (int) (pts[j] & 0xffff);
        nhash++;
    }

    free(pts);
}


static int
lv_pick_hash(const lv_room_t *r)
{
    int       lo, hi, mid;
    uint32_t  h;

    h = lv_crc_update(0xffffffffU, r->name, strlen(r->name)) ^ 0xffffffffU;

    lo = 0;
    hi = nhash;
    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (hash_pt[mid] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return hash_b[lo % nhash];
}


/* HAProxy 2.6: hash-type consistent, hash-balance-factor 125 */

static uint32_t
lv_full_hash(uint32_t a)
{
    a = (a + 0x7ed55d16) + (a << 12);
    a = (a ^ 0xc761c23c) ^ (a >> 19);
    a = (a + 0x165667b1) + (a << 5);
    a = (a + 0xd3a2646c) ^ (a << 9);
    a = (a + 0xfd7046c5) + (a << 3);
    a = (a ^ 0xb55a4f09) ^ (a >> 16);
    return a;
}


static void
lv_hap_build(void)
{
    int        i, k, n;
    uint64_t  *pts;

    n = 0;
    for (i = 0; i < LV_NB; i++) {
        n += lv_units[i] * 16;
    }

    pts = malloc(n * sizeof(uint64_t));
    if (pts == NULL) {
        abort();
    }

    n = 0;
    for (i = 0; i < LV_NB; i++) {
        for (k = 0; k < lv_units[i] * 16; k++) {
            /* puid i + 1, SRV_EWGHT_RANGE 256 * 16 */
            pts[n++] = ((uint64_t) lv_full_hash((uint32_t) ((i + 1) * 4096
                                                            + k)) << 32)
                       | (uint64_t) i;
        }
    }

    qsort(pts, n, sizeof(uint64_t), lv_cmp_pt);

    for (k = 0; k < n; k++) {
        hap_key[k] = (uint32_t) (pts[k] >> 32);
        hap_b[k] = (int) (pts[k] & 0xffff);
    }

    nhap = n;
}


static int
lv_hap_eligible(int b, const lv_inst_t *in)
{
    int       i;
    unsigned  served, tot_slots, per, rem, slots, tw, cum, w;

    served = 0;
    tw = 0;
    cum = 0;

    for (i = 0; i < LV_NB; i++) {
        served += in->served[i];
        if (i < b) {
            cum += 16 * lv_units[i];
        }
        tw += 16 * lv_units[i];
    }

    w = 16 * lv_units[b];
    tot_slots = ((served + 1) * 125 + 99) / 100;
    per = tot_slots / tw;
    rem = tot_slots % tw;
    slots = w * per;
    slots += ((cum + w) * rem) / tw - (cum * rem) / tw;

    if (slots == 0) {
        slots = 1;
    }

    return (unsigned) in->served[b] < slots;
}


static int
lv_pick_hap(const lv_room_t *r, const lv_inst_t *in)
{
    int       lo, hi, mid, nx, pv, k;
    uint32_t  h, dp, dn;
    const unsigned char  *p;

    h = 0;
    for (p = (const unsigned char *) r->name; *p; p++) {
        h = *p + (h << 6) + (h << 16) - h;
    }

    /*
     * then its avalanche: without it 405 to 470 rooms a run split, with
     * it 154 to 164, as HAProxy 2.6 split 139 to 173 live
     */
    h = lv_full_hash(h);

    lo = 0;
    hi = nhap;
    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (hap_key[mid] < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    nx = lo % nhap;
    pv = (nx + nhap - 1) % nhap;

    /* the closer of the nodes around the hash */
    dp = h - hap_key[pv];
    dn = hap_key[nx] - h;
    if (dp <= dn) {
        nx = pv;
    }

    for (k = 0; k < nhap; k++) {
        if (lv_hap_eligible(hap_b[(nx + k) % nhap], in)) {
            return hap_b[(nx + k) % nhap];
        }
    }

    return hap_b[nx];
}


/* room_affinity: the placement input as ra_fill_placement() builds it */

static uint32_t
lv_estimate(const lv_inst_t *in, int b, double now)
{
    int64_t          est, direct;
    ra_decay_pick_t  pick;

    /* ra_report_estimate(): the direct part and the joins, decayed */
    direct = (int64_t) in->connections[b] - (int64_t) in->seen[b];
    est = (int64_t) (in->live[b] + in->remote[b]) + (direct < 0 ? direct : 0);

    if (est < 0) {
        est = 0;
    }

    ra_decay_pick(&in->fit, &pick);

    return (uint32_t) (est + ra_decay_estimate(&in->dec[b], &pick,
                                               (uint64_t) now));
}


static int
lv_pick_ra(const lv_room_t *r, int i, double now)
{
    int               b;
    double            up;
    lv_inst_t        *in;
    ra_pl_backend_t   pl[LV_NB];

    in = &inst[i];

    for (b = 0; b < LV_NB; b++) {
        memset(&pl[b], 0, sizeof(ra_pl_backend_t));
        pl[b].weight = lv_units[b];

        /* ra_report_input() */
        pl[b].fresh = in->has_report[b]
                      && now - in->reported_at[b] <= lv_stale_ms();
        if (pl[b].fresh) {
            pl[b].capacity = lv_units[b] * LV_UNIT;
        }

        /* ra_report_load() */
        pl[b].live = in->live[b] + in->remote[b];
        pl[b].rooms = in->rooms[b];
        pl[b].reported = lv_estimate(in, b, now);
        pl[b].pending = 0;

        /* every backend registered when the backends started */
        up = now + R.startup_ms;
        pl[b].up_ms = (up >= 4e9) ? UINT32_MAX : (uint32_t) up;
        pl[b].available = 1;
    }

    return ra_placement_pick(&lv_conf, pl, LV_NB, r->hash);
}


static int
lv_pick_oracle(void)
{
    int     b, i;
    double  li, lb;

    b = 0;
    for (i = 1; i < LV_NB; i++) {
        li = (double) oracle_live[i] / lv_units[i];
        lb = (double) oracle_live[b] / lv_units[b];
        if (li < lb || (li == lb && lv_units[i] > lv_units[b])) {
            b = i;
        }
    }

    return b;
}


static int
lv_redis(void)
{
    return R.policy == L_REDIS || R.policy == L_JOIN;
}


/*
 * the benchmark's stale=: with 300 s reports a report stays fresh for
 * 900 s (until December 2026 this was 30 s whatever the period, and the
 * join flow at 300 s fell back to counting live connections, which it
 * has none of, 30 s into each report: 1.45 / 2.13 simulated against 1.38
 * / 1.63 live)
 */

static double
lv_stale_ms(void)
{
    return (3 * R.period * 1000 > LV_STALE_MIN_MS) ? 3 * R.period * 1000
                                                   : LV_STALE_MIN_MS;
}


/* a placement made by instance i, recorded in its table */

static void
lv_record(int i, int rid, int b, double now)
{
    lv_inst_t  *in = &inst[i];

    if (in->table[rid] >= 0) {
        in->rooms[in->table[rid]]--;
    }

    in->table[rid] = b;
    in->placed_at[rid] = now;
    in->rooms[b]++;
}


/* where instance i sends a member of room rid, placing it if new */

static int
lv_route(int i, int rid, double now)
{
    int         b;
    lv_inst_t  *in;
    lv_room_t  *r;

    in = &inst[i];
    r = &T->rooms[rid];

    if (R.policy == L_HASH) {
        return lv_pick_hash(r);
    }

    if (R.policy == L_HAPROXY) {
        return lv_pick_hap(r, in);
    }

    if (in->table[rid] >= 0) {
        return in->table[rid];
    }

    b = lv_pick_ra(r, i, now);
    lv_record(i, rid, b, now);

    if (lv_redis()) {
        lv_push(now + R.share_ms, V_SHARE, 1 - i, rid, b);
    }

    return b;
}


static void
lv_member(int rid, int k, double now)
{
    int           b, i;
    lv_member_t  *m;

    m = &T->members[T->rooms[rid].moff + k];
    i = m->front;

    if (now >= T->rooms[rid].end) {
        return;
    }

    switch (R.policy) {

    case L_ORACLE:
        if (oracle_room[rid] < 0) {
            oracle_room[rid] = lv_pick_oracle();
        }
        b = oracle_room[rid];
        oracle_live[b]++;
        m->b = b;
        lv_push(now + R.lat_ms, V_BCONN, b, 0, 0);
        break;

    case L_JOIN:
        b = lv_route(i, rid, now);
        inst[i].joins[b]++;
        inst[i].own_joins[b]++;
        ra_decay_add(&inst[i].dec[b], 1, (uint64_t) now);
        m->b = b;
        lv_push(now + R.join_ms, V_BCONN, b, 0, 0);
        break;

    default:
        b = lv_route(i, rid, now);
        inst[i].live[b]++;
        inst[i].served[b]++;
        if (inst[i].table) {
            inst[i].room_live[rid]++;
        }
        m->b = b;
        lv_push(now + R.lat_ms, V_BCONN, b, 0, 0);
        break;
    }

    room_ever[rid] |= 1 << b;
}


static void
lv_end(int rid, double now)
{
    int           k;
    lv_room_t    *r;
    lv_member_t  *m;

    r = &T->rooms[rid];

    for (k = 0; k < r->n; k++) {
        m = &T->members[r->moff + k];

        if (m->b < 0) {
            continue;
        }

        switch (R.policy) {

        case L_ORACLE:
            lv_push(now + R.lat_ms, V_BCLOSE, m->b, -1, 0);
            break;

        case L_JOIN:
            break;

        default:
            /* nginx counts the close when the upstream side closes */
            lv_push(now + R.lat_ms, V_BCLOSE, m->b, m->front, rid);
            break;
        }

        if (R.policy == L_JOIN) {
            lv_push(now + R.lat_ms, V_BCLOSE, m->b, -2, 0);
        }

        m->b = -1;
    }
}


static void
lv_bclose(int b, int i, int rid)
{
    bconn[b]--;
    closed[b]++;

    /* backends.js --leave-ms: at most one report every lv_leave_ms */

    if (lv_leave_ms > 0 && !leave_due[b]) {
        leave_due[b] = 1;
        lv_push(rep_at[b] + lv_leave_ms > lv_now ? rep_at[b] + lv_leave_ms
                                                  : lv_now,
                V_LEAVE, b, 0, 0);
    }

    if (i == -1) {
        oracle_live[b]--;

    } else if (i >= 0) {
        inst[i].live[b]--;
        inst[i].served[b]--;
        if (inst[i].table) {
            inst[i].room_live[rid]--;
        }
    }
}


/* ra_report_apply() and ra_report_seen() */

static void
lv_apply(int i, int b, int conns, double now)
{
    int         k, held, then;
    lv_inst_t  *in;

    in = &inst[i];

    in->has_report[b] = 1;
    in->reported_at[b] = now;
    in->joins[b] = 0;
    in->connections[b] = conns;

    held = in->live[b] + in->remote[b];
    k = (int) ceil(R.report_lag_ms / LV_HIST_TICK);

    if (k == 0 || in->hist_n == 0 || now - in->hist_at > 2 * LV_HIST_TICK) {
        in->seen[b] = held;

    } else {
        if (k > in->hist_n - 1) {
            k = in->hist_n - 1;
        }

        then = in->hist[(in->hist_pos + LV_HIST_LEN - k) % LV_HIST_LEN][b];
        in->seen[b] = (held < then) ? held : then;
    }

    ra_decay_report(&in->dec[b], &in->fit,
                    conns > in->seen[b] ? (uint32_t) (conns - in->seen[b]) : 0,
                    (uint64_t) now);
}


/* ra_share_tick(): the sample of the loads, then the counts sent */

static void
lv_tick(int i, double now)
{
    int         b, all;
    lv_inst_t  *in;

    in = &inst[i];

    in->hist_pos = (in->hist_pos + 1) % LV_HIST_LEN;
    for (b = 0; b < LV_NB; b++) {
        in->hist[in->hist_pos][b] = in->live[b] + in->remote[b];
    }
    in->hist_at = now;
    if (in->hist_n < LV_HIST_LEN) {
        in->hist_n++;
    }

    all = (now - in->count_all_at >= LV_COUNT_ALL);
    if (all) {
        in->count_all_at = now;
    }

    for (b = 0; b < LV_NB; b++) {
        if (in->live[b] == in->published[b] && !all) {
            continue;
        }
        in->published[b] = in->live[b];
        lv_push(now + R.count_ms, V_COUNT, 1 - i, b, in->live[b]);
    }

    /* the joins answered since the last tick, with the counts */
    for (b = 0; b < LV_NB; b++) {
        if (in->own_joins[b] != in->published_j[b]) {
            lv_push(now + R.count_ms, V_RJOINS, 1 - i, b,
                    in->own_joins[b] - in->published_j[b]);
            in->published_j[b] = in->own_joins[b];
        }
    }

    lv_push(now + LV_HIST_TICK, V_TICK, i, 0, 0);
}


/* ra_share_receive(): instance 0 has the smaller id */

static void
lv_share(int i, int rid, int b, double now)
{
    lv_inst_t  *in = &inst[i];

    if (in->table[rid] < 0) {
        lv_record(i, rid, b, now);

    } else if (in->table[rid] != b && 1 - i < i && in->room_live[rid] == 0
               && now - in->placed_at[rid] < LV_RACE_MS)
    {
        lv_record(i, rid, b, now);
    }
}


static void
lv_sample(double now)
{
    int     b, total;
    double  peak, l;

    total = 0;
    peak = 0;

    for (b = 0; b < LV_NB; b++) {
        total += bconn[b];
        l = (double) bconn[b] / (lv_units[b] * LV_UNIT);
        peak = (l > peak) ? l : peak;
    }

    /* the sampler's clock runs sample_off_ms ahead of the schedule's */

    if (total < LV_MIN_TOTAL || now + R.sample_off_ms < LV_WARMUP_MS) {
        return;
    }

    ratios[nratios++] = peak / ((double) total / (17 * LV_UNIT));
    conns_sum += total;

    if (lv_debug) {
        fprintf(stderr, "%s t=%.1f total %d ratio %.2f [",
                lv_pol_name[R.policy],
                now / 1000, total, ratios[nratios - 1]);
        for (b = 0; b < LV_NB; b++) {
            fprintf(stderr, " %d/%u", bconn[b],
                    lv_estimate(&inst[0], b, now));
        }
        fprintf(stderr, " ] reports fitted %u\n", inst[0].fit.reports);
    }
}


static int
lv_cmp_d(const void *x, const void *y)
{
    double  a = *(const double *) x, b = *(const double *) y;

    return (a > b) - (a < b);
}


/* the report phases: backends.js's mulberry32 from the seed */

static uint32_t
lv_mulberry(uint32_t *a)
{
    uint32_t  t;

    *a += 0x6d2b79f5U;
    t = *a;
    t = (t ^ (t >> 15)) * (t | 1);
    t ^= t + (t ^ (t >> 7)) * (t | 61);

    return t ^ (t >> 14);
}


static void
lv_run(lv_trace_t *t, const lv_run_t *run, lv_res_t *res)
{
    int        i, b, k, n;
    uint32_t   mb;
    double     now, off, p;
    lv_ev_t    e;

    T = t;
    R = *run;
    n = t->nrooms;

    memset(inst, 0, sizeof(inst));
    for (i = 0; i < LV_NI; i++) {
        inst[i].fit.fixed = lv_fixed;
    }
    memset(bconn, 0, sizeof(bconn));
    memset(closed, 0, sizeof(closed));
    memset(leave_due, 0, sizeof(leave_due));
    memset(oracle_live, 0, sizeof(oracle_live));
    nheap = 0;
    evseq = 0;
    nratios = 0;
    conns_sum = 0;

    oracle_room = malloc(n * sizeof(int));
    room_ever = calloc(n, sizeof(int));
    ratios = malloc(((int) (t->duration / LV_SAMPLE_MS) + 4) * sizeof(double));
    if (oracle_room == NULL || room_ever == NULL || ratios == NULL) {
        abort();
    }

    for (k = 0; k < n; k++) {
        oracle_room[k] = -1;
    }

    for (i = 0; i < LV_NI; i++) {
        inst[i].table = malloc(n * sizeof(int));
        inst[i].placed_at = calloc(n, sizeof(double));
        inst[i].room_live = calloc(n, sizeof(int));
        if (inst[i].table == NULL || inst[i].placed_at == NULL
            || inst[i].room_live == NULL)
        {
            abort();
        }
        for (k = 0; k < n; k++) {
            inst[i].table[k] = -1;
        }
        inst[i].count_all_at = -1e9;
    }

    for (k = 0; k < n; k++) {
        for (i = 0; i < t->rooms[k].n; i++) {
            t->members[t->rooms[k].moff + i].b = -1;
            lv_push(t->members[t->rooms[k].moff + i].t
                    + R.tick_ms * lv_unit(&R.rng), V_MEMBER, k, i, 0);
        }
        lv_push((t->rooms[k].end < t->duration ? t->rooms[k].end
                                                : t->duration)
                + R.tick_ms * lv_unit(&R.rng), V_END, k, 0, 0);
    }

    /*
     * reports: one of 0 connections when the backends start (startup_ms
     * before the driver), then every period from an offset in [0, period)
     */

    p = R.period * 1000;
    mb = (uint32_t) (R.seed * 7919 + 17);

    for (b = 0; b < LV_NB; b++) {
        off = floor(lv_mulberry(&mb) / 4294967296.0 * p);

        if (lv_redis()) {
            for (i = 0; i < LV_NI; i++) {
                lv_apply(i, b, 0, -R.startup_ms);
            }
        }

        rep_at[b] = -R.startup_ms;

        for (now = -R.startup_ms + off; now < t->duration; now += p) {
            if (now >= 0) {
                lv_push(now, V_REPORT, b, 0, 0);
            }
        }
    }

    if (lv_redis()) {
        for (i = 0; i < LV_NI; i++) {
            lv_push(R.tick_phase[i], V_TICK, i, 0, 0);
        }
    }

    /* as run.py's peak_ideal(): samples while the sampler's clock < duration */

    for (now = -R.sample_off_ms; now + R.sample_off_ms < t->duration;
         now += LV_SAMPLE_MS)
    {
        if (now >= 0) {
            lv_push(now, V_SAMPLE, 0, 0, 0);
        }
    }

    while (lv_pop(&e)) {
        now = e.t;
        lv_now = now;

        if (now >= t->duration && e.type != V_END && e.type != V_BCLOSE) {
            continue;
        }

        switch (e.type) {

        case V_MEMBER:
            lv_member(e.a, e.b, now);
            break;

        case V_BCONN:
            bconn[e.a]++;
            break;

        case V_END:
            lv_end(e.a, now);
            break;

        case V_BCLOSE:
            lv_bclose(e.a, e.b, e.c);
            break;

        case V_LEAVE:
            leave_due[e.a] = 0;
            if (closed[e.a] == 0) {
                break;
            }
            /* fall through */

        case V_REPORT:
            closed[e.a] = 0;
            rep_at[e.a] = now;
            if (lv_redis()) {
                for (i = 0; i < LV_NI; i++) {
                    lv_push(now + 1, V_APPLY, i, e.a, bconn[e.a]);
                }
            }
            break;

        case V_APPLY:
            lv_apply(e.a, e.b, e.c, now);
            break;

        case V_TICK:
            lv_tick(e.a, now);
            break;

        case V_COUNT:
            inst[e.a].remote[e.b] = e.c;
            break;

        case V_RJOINS:
            inst[e.a].joins[e.b] += e.c;
            ra_decay_add(&inst[e.a].dec[e.b], (uint32_t) e.c, (uint64_t) now);
            break;

        case V_SHARE:
            lv_share(e.a, e.b, e.c, now);
            break;

        case V_SAMPLE:
            lv_sample(now);
            break;
        }
    }

    res->splits = 0;
    for (k = 0; k < n; k++) {
        res->splits += (room_ever[k] & (room_ever[k] - 1)) != 0;
    }

    res->nsamples = nratios;

    if (nratios) {
        double  sum = 0;

        qsort(ratios, nratios, sizeof(double), lv_cmp_d);
        for (k = 0; k < nratios; k++) {
            sum += ratios[k];
        }
        res->mean = sum / nratios;
        res->p99 = ratios[(int) ceil(0.99 * nratios) - 1];
        res->conns = conns_sum / nratios;
    }

    for (i = 0; i < LV_NI; i++) {
        free(inst[i].table);
        free(inst[i].placed_at);
        free(inst[i].room_live);
    }

    free(oracle_room);
    free(room_ever);
    free(ratios);
}


/* the live figures to compare with: live-figures.txt */

typedef struct {
    int         seed;
    int         policy;
    double      period;
    double      mean;         /* over the live runs listed */
    double      p99;
    int         runs;
    char        params[64];   /* RA_PARAMS of the run, "-": none */
} lv_fig_t;

static lv_fig_t  figs[256];
static int       nfigs;
static char      lv_params[64] = "-";


static int
lv_policy(const char *s)
{
    int  p;

    for (p = 0; p < L_N; p++) {
        if (strcmp(s, lv_pol_name[p]) == 0) {
            return p;
        }
    }

    return -1;
}


static void
lv_load_figures(const char *path)
{
    int       k;
    char      line[512], pol[64], per[16];
    FILE     *fp;
    lv_fig_t  f, *g;

    fp = fopen(path, "r");
    if (fp == NULL) {
        return;
    }

    /* several runs of the same seed, policy and parameters: their mean */

    while (fgets(line, sizeof(line), fp) && nfigs < 256) {
        memset(&f, 0, sizeof(f));
        if (line[0] == '#'
            || sscanf(line, "%d %63s %15s %lf %lf %63s", &f.seed, pol, per,
                      &f.mean, &f.p99, f.params) < 5)
        {
            continue;
        }
        if (f.params[0] == '\0') {
            strcpy(f.params, "-");
        }
        f.policy = lv_policy(pol);
        f.period = (per[0] == '-') ? 0 : atof(per);
        f.runs = 1;
        if (f.policy < 0) {
            continue;
        }

        for (k = 0; k < nfigs; k++) {
            g = &figs[k];
            if (g->seed == f.seed && g->policy == f.policy
                && g->period == f.period && strcmp(g->params, f.params) == 0)
            {
                g->mean = (g->mean * g->runs + f.mean) / (g->runs + 1);
                g->p99 = (g->p99 * g->runs + f.p99) / (g->runs + 1);
                g->runs++;
                break;
            }
        }

        if (k == nfigs) {
            figs[nfigs++] = f;
        }
    }

    fclose(fp);
}


static const lv_fig_t *
lv_figure(int seed, int policy, double period)
{
    int  k;

    for (k = nfigs - 1; k >= 0; k--) {
        if (figs[k].seed == seed && figs[k].policy == policy
            && (figs[k].period == 0 || figs[k].period == period)
            && strcmp(figs[k].params, lv_params) == 0)
        {
            return &figs[k];
        }
    }

    return NULL;
}


static double
lv_median(double *x, int n)
{
    qsort(x, n, sizeof(double), lv_cmp_d);

    return (n % 2) ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}


static void
lv_usage(void)
{
    fprintf(stderr,
        "usage: sim -w live [-S \"seeds\"] [-P period_s] [-p \"policies\"]\n"
        "                   [-R replicas] [-c choices] [-b balance_factor]\n"
        "                   [-s slow_start_ms] [-l report_lag_ms]\n"
        "                   [-F live-figures.txt] [-q] [-B port_base]\n"
        "                   [-T driver_lateness_ms] [-O sampler_offset_ms]\n"
        "                   [-L auto|off|lifetime_s] [-D leave_ms]\n"
        "policies: oracle ra-redis ra-redis-join ra-local nginx-hash "
        "haproxy\n");
    exit(2);
}


int
sim_live_main(int argc, char **argv)
{
    int          opt, nseeds, npol, reps, s, p, q, k, quiet, ok, within;
    int          nseed, nseed_ok, in;
    int          seeds[LV_MAX_SEEDS], pols[LV_MAX_POL], nm;
    char        *tok, *str, dir[1024], figpath[1024], per[32];
    double       period, lag, mm[LV_MAX_SEEDS], pp[LV_MAX_SEEDS];
    double       sample_off, tick;
    double       lm[LV_MAX_SEEDS], lp[LV_MAX_SEEDS], omean, op99;
    double       spread_m, spread_p, mlo, mhi, plo, phi;
    lv_run_t     run;
    lv_res_t     one, avg[LV_MAX_SEEDS][LV_MAX_POL];
    double       span[LV_MAX_SEEDS][LV_MAX_POL][4];
    lv_trace_t  *tr[LV_MAX_SEEDS];
    const lv_fig_t  *f;

    memset(&one, 0, sizeof(one));

    snprintf(figpath, sizeof(figpath), "%s", argv[0]);
    snprintf(dir, sizeof(dir), "%s", dirname(figpath));
    snprintf(figpath, sizeof(figpath), "%.1000s/live-figures.txt", dir);

    nseeds = 0;
    npol = 0;
    period = 5;
    reps = 32;
    lag = 500;
    quiet = 0;
    sample_off = -1;
    tick = 5;
    lv_debug = (getenv("SIM_DEBUG") != NULL);

    lv_conf.choices = RA_PL_CHOICES_DEFAULT;
    lv_conf.balance_factor = RA_PL_BALANCE_FACTOR_DEFAULT;
    lv_conf.slow_start_ms = 0;          /* the benchmark sets slow_start=0 */

    optind = 1;

    while ((opt = getopt(argc, argv, "w:S:P:p:R:c:b:s:l:F:qB:O:T:L:D:")) != -1) {
        switch (opt) {
        case 'w': break;
        case 'S':
            str = strdup(optarg);
            for (tok = strtok(str, " ,"); tok && nseeds < LV_MAX_SEEDS;
                 tok = strtok(NULL, " ,"))
            {
                seeds[nseeds++] = atoi(tok);
            }
            break;
        case 'P': period = atof(optarg); break;
        case 'p':
            str = strdup(optarg);
            for (tok = strtok(str, " ,"); tok && npol < LV_MAX_POL;
                 tok = strtok(NULL, " ,"))
            {
                if ((pols[npol] = lv_policy(tok)) < 0) {
                    lv_usage();
                }
                npol++;
            }
            break;
        case 'R': reps = atoi(optarg); break;
        case 'c': lv_conf.choices = atoi(optarg); break;
        case 'b': lv_conf.balance_factor = atoi(optarg); break;
        case 's': lv_conf.slow_start_ms = atoi(optarg); break;
        case 'l': lag = atof(optarg); break;
        case 'F': snprintf(figpath, sizeof(figpath), "%s", optarg); break;
        case 'q': quiet = 1; break;
        case 'B': lv_port = atoi(optarg); break;
        case 'O': sample_off = atof(optarg); break;
        case 'T': tick = atof(optarg); break;
        case 'D': lv_leave_ms = atof(optarg); break;
        case 'L':
            /* lifetime=: auto, off, or seconds */
            if (strcmp(optarg, "off") == 0) {
                lv_fixed = 1 + RA_DECAY_NONE;
            } else if (strcmp(optarg, "auto") != 0) {
                lv_fixed = 1 + ra_decay_index((uint64_t) (atof(optarg)
                                                          * 1000));
            }
            if (strcmp(optarg, "auto") != 0) {
                snprintf(lv_lifetime, sizeof(lv_lifetime), "%s%s", optarg,
                         strcmp(optarg, "off") ? "s" : "");
            }
            break;
        default: lv_usage();
        }
    }

    /* the room_affinity parameters the benchmark's RA_PARAMS would set */

    k = 0;
    if (lv_conf.choices != RA_PL_CHOICES_DEFAULT) {
        k += snprintf(lv_params + k, sizeof(lv_params) - k, "%schoices=%u",
                      k ? "," : "", lv_conf.choices);
    }
    if (lv_conf.balance_factor != RA_PL_BALANCE_FACTOR_DEFAULT) {
        k += snprintf(lv_params + k, sizeof(lv_params) - k,
                      "%sbalance_factor=%u", k ? "," : "",
                      lv_conf.balance_factor);
    }
    if (lv_conf.slow_start_ms != 0) {
        k += snprintf(lv_params + k, sizeof(lv_params) - k,
                      "%sslow_start=%ums", k ? "," : "",
                      lv_conf.slow_start_ms);
    }
    if (lag != 500) {
        k += snprintf(lv_params + k, sizeof(lv_params) - k,
                      "%sreport_lag=%.0fms", k ? "," : "", lag);
    }
    if (lv_lifetime[0]) {
        k += snprintf(lv_params + k, sizeof(lv_params) - k,
                      "%slifetime=%s", k ? "," : "", lv_lifetime);
    }
    if (lv_leave_ms > 0) {
        /* not a room_affinity parameter: the backends' LEAVE_MS */
        k += snprintf(lv_params + k, sizeof(lv_params) - k,
                      "%sleave_ms=%.0f", k ? "," : "", lv_leave_ms);
    }
    if (k == 0) {
        strcpy(lv_params, "-");
    }

    if (nseeds == 0) {
        seeds[0] = 1;
        seeds[1] = 2;
        seeds[2] = 3;
        nseeds = 3;
    }

    if (npol == 0) {
        for (p = 0; p < L_N; p++) {
            pols[npol++] = p;
        }
    }

    if (reps < 1 || reps > LV_MAX_REP) {
        lv_usage();
    }

    lv_hash_build();
    lv_hap_build();
    lv_load_figures(figpath);

    for (s = 0; s < nseeds; s++) {
        tr[s] = lv_load(dir, seeds[s]);
    }

    /*
     * What the schedule does not fix (when the backends started before
     * the driver, the instances' count ticks, small latencies) varies
     * between live runs of the same seed: each figure is the mean of
     * "replicas" runs drawn at random, and the spread is shown.
     */

    printf("sim -w live: the live benchmark's default workload, "
           "%d replica%s a figure;\nroom_affinity choices %u, "
           "balance_factor %u, slow_start %u ms, report_lag %.0f ms, "
           "reports every %g s\n\n", reps, reps > 1 ? "s" : "",
           lv_conf.choices, lv_conf.balance_factor, lv_conf.slow_start_ms,
           lag, period);

    if (!quiet) {
        printf("%-4s  %-34s  %-6s  %6s  %4s  %4s  %8s  %7s  %6s  %5s  "
               "%-9s  %-9s\n", "seed", "policy", "flow", "period", "mean",
               "p99", "mean/orc", "p99/orc", "splits", "conns", "mean span",
               "p99 span");
    }

    for (s = 0; s < nseeds; s++) {
        omean = op99 = 0;

        for (q = 0; q < npol; q++) {
            p = pols[q];
            memset(&avg[s][q], 0, sizeof(lv_res_t));
            mlo = plo = 1e9;
            mhi = phi = 0;

            for (k = 0; k < reps; k++) {
                memset(&run, 0, sizeof(run));
                run.rng = 0x5eed0000ULL + (uint64_t) seeds[s] * 1000 + k;
                run.policy = p;
                run.seed = seeds[s];
                run.period = period;
                run.startup_ms = 300 + 1500 * lv_unit(&run.rng);
                run.tick_phase[0] = LV_HIST_TICK * lv_unit(&run.rng);
                run.tick_phase[1] = LV_HIST_TICK * lv_unit(&run.rng);
                run.tick_ms = tick;
                run.lat_ms = 1 + 3 * lv_unit(&run.rng);
                run.join_ms = 2 + 4 * lv_unit(&run.rng);
                run.share_ms = 1 + 5 * lv_unit(&run.rng);
                run.count_ms = 1 + 2 * lv_unit(&run.rng);
                run.sample_off_ms = 250 + 400 * lv_unit(&run.rng);
                run.report_lag_ms = lag;
                if (sample_off >= 0) {
                    run.sample_off_ms = sample_off;
                }

                lv_run(tr[s], &run, &one);

                avg[s][q].mean += one.mean / reps;
                avg[s][q].p99 += one.p99 / reps;
                avg[s][q].conns += one.conns / reps;
                avg[s][q].splits += one.splits;
                mlo = (one.mean < mlo) ? one.mean : mlo;
                mhi = (one.mean > mhi) ? one.mean : mhi;
                plo = (one.p99 < plo) ? one.p99 : plo;
                phi = (one.p99 > phi) ? one.p99 : phi;
            }

            avg[s][q].splits = (avg[s][q].splits + reps / 2) / reps;
            span[s][q][0] = mlo;
            span[s][q][1] = mhi;
            span[s][q][2] = plo;
            span[s][q][3] = phi;

            if (p == L_ORACLE) {
                omean = avg[s][q].mean;
                op99 = avg[s][q].p99;
            }

            if (!quiet) {
                snprintf(per, sizeof(per), "%gs", period);
                printf("%-4d  %-34s  %-6s  %6s  %4.2f  %4.2f  ", seeds[s],
                       lv_pol_label[p], lv_pol_flow[p],
                       (p == L_REDIS || p == L_JOIN) ? per : "-",
                       avg[s][q].mean, avg[s][q].p99);
                if (omean > 0) {
                    printf("%8.2f  %7.2f  ", avg[s][q].mean / omean,
                           avg[s][q].p99 / op99);
                } else {
                    printf("%8s  %7s  ", "-", "-");
                }
                printf("%6d  %5.0f  %4.2f-%4.2f  %4.2f-%4.2f\n",
                       avg[s][q].splits, avg[s][q].conns, mlo, mhi, plo,
                       phi);
            }
        }
    }

    if (nseeds > 1) {
        printf("\nmedians over seeds");
        for (s = 0; s < nseeds; s++) {
            printf(" %d", seeds[s]);
        }
        printf(":\n%-34s  %-6s  %6s  %4s  %4s  %8s  %7s  %6s\n", "policy",
               "flow", "period", "mean", "p99", "mean/orc", "p99/orc",
               "splits");

        omean = op99 = 0;

        for (q = 0; q < npol; q++) {
            for (s = 0; s < nseeds; s++) {
                mm[s] = avg[s][q].mean;
                pp[s] = avg[s][q].p99;
            }
            if (pols[q] == L_ORACLE) {
                omean = lv_median(mm, nseeds);
                op99 = lv_median(pp, nseeds);
            }
        }

        for (q = 0; q < npol; q++) {
            p = pols[q];
            for (s = 0; s < nseeds; s++) {
                mm[s] = avg[s][q].mean;
                pp[s] = avg[s][q].p99;
                lm[s] = avg[s][q].splits;
            }
            spread_m = lv_median(mm, nseeds);
            spread_p = lv_median(pp, nseeds);
            snprintf(per, sizeof(per), "%gs", period);
            printf("%-34s  %-6s  %6s  %4.2f  %4.2f  ", lv_pol_label[p],
                   lv_pol_flow[p], (p == L_REDIS || p == L_JOIN) ? per : "-",
                   spread_m, spread_p);
            if (omean > 0) {
                printf("%8.2f  %7.2f  ", spread_m / omean, spread_p / op99);
            } else {
                printf("%8s  %7s  ", "-", "-");
            }
            printf("%6.0f   [%s]\n", lv_median(lm, nseeds), lv_pol_name[p]);
        }
    }

    /* sim against live: each seed, then the medians over the seeds */

    printf("\nsim vs live (live: %s, params %s; live = the mean of the "
           "runs listed; diff = sim - live; ok: within +-0.10):\n", figpath,
           lv_params);
    printf("%-14s  %-5s  %8s  %8s  %6s  %8s  %8s  %6s  %-3s  %4s  %s\n",
           "policy", "seed", "sim mean", "live", "diff", "sim p99", "live",
           "diff", "", "runs", "in span");

    within = 0;
    nm = 0;
    nseed = 0;
    nseed_ok = 0;

    for (q = 0; q < npol; q++) {
        p = pols[q];
        k = 0;

        for (s = 0; s < nseeds; s++) {
            f = lv_figure(seeds[s], p, period);
            mm[s] = avg[s][q].mean;
            pp[s] = avg[s][q].p99;

            if (f == NULL) {
                printf("%-14s  %-5d  %8.2f  %8s  %6s  %8.2f  %8s  %6s\n",
                       lv_pol_name[p], seeds[s], mm[s], "-", "", pp[s], "-",
                       "");
                continue;
            }

            lm[k] = f->mean;
            lp[k] = f->p99;
            k++;

            spread_m = mm[s] - f->mean;
            spread_p = pp[s] - f->p99;
            ok = fabs(spread_m) <= 0.10 + 1e-9
                 && fabs(spread_p) <= 0.10 + 1e-9;

            nseed_ok += ok;
            nseed++;

            /* is the live run one the replicas could have been? */
            in = f->runs == 1
                 && f->mean >= span[s][q][0] - 0.005
                 && f->mean <= span[s][q][1] + 0.005
                 && f->p99 >= span[s][q][2] - 0.005
                 && f->p99 <= span[s][q][3] + 0.005;

            printf("%-14s  %-5d  %8.2f  %8.2f  %+6.2f  %8.2f  %8.2f  %+6.2f  "
                   "%-3s  %4d  %s\n", lv_pol_name[p], seeds[s], mm[s],
                   f->mean, spread_m, pp[s], f->p99, spread_p,
                   ok ? "ok" : "OFF", f->runs,
                   f->runs > 1 ? "" : in ? "yes" : "no");
        }

        if (nseeds > 1 && k == nseeds) {
            omean = lv_median(mm, nseeds);
            op99 = lv_median(pp, nseeds);
            spread_m = omean - lv_median(lm, k);
            spread_p = op99 - lv_median(lp, k);
            ok = fabs(spread_m) <= 0.10 + 1e-9
                 && fabs(spread_p) <= 0.10 + 1e-9;
            within += ok;
            nm++;

            printf("%-14s  %-5s  %8.2f  %8.2f  %+6.2f  %8.2f  %8.2f  %+6.2f  "
                   "%s\n", lv_pol_name[p], "med", omean, lv_median(lm, k),
                   spread_m, op99, lv_median(lp, k), spread_p,
                   ok ? "ok" : "OFF");
        }
    }

    printf("\nwithin +-0.10 of live (mean and p99): %d of %d seed x "
           "policy figures", nseed_ok, nseed);

    if (nm) {
        printf("; medians over the seeds: %d of %d policies", within, nm);
    }

    printf("\n");

    return 0;
}
