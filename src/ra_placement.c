/*
 * Placement of new rooms: power of d choices drawn by capacity from the
 * room hash, bounded load (balance factor), slow start.
 *
 * Plain C, no nginx headers: the module, the simulator (bench/sim) and the
 * unit tests (t/unit/test_placement.c) run this very code.
 *
 * Arithmetic is integer only, so that two nginx instances built for
 * different CPUs (FMA contraction, x87) still make the same choice.
 *
 *
 * Units and normalization
 *
 * Every available backend gets a metric "num" and an effective capacity
 * "cap"; its load is num / cap.
 *
 * fresh (a report younger than "stale"):
 *     num = reported + pending (pending counts one metric unit per room)
 *     cap = capacity, when the backend reported one;
 *           otherwise weight * (sum of reported capacities / sum of their
 *           weights) over the fresh available backends that reported one,
 *           i.e. a backend without a capacity is assumed to be as large per
 *           unit of weight as the average backend that has one; when no
 *           backend reported a capacity, cap = weight.
 *     A capacity is in metric units, a weight is relative: the scale above
 *     turns weights into metric units, so a mix of both compares sanely.
 *
 * local mode (no available backend is fresh):
 *     num = live (this nginx's connections), cap = weight.
 *
 * mixed (some available backends fresh, some not): the fresh ones as
 *     above; for the others, cap = weight * scale, and num is estimated
 *     from this nginx's live connections using the ratio seen on the fresh
 *     ones: live * (sum of fresh num) / (sum of fresh live); when this nginx
 *     has no live connection on the fresh ones, the backend is assumed
 *     average: (sum of fresh num) * weight / (sum of fresh weights).
 *
 * slow start: up_ms < slow_start_ms scales cap (both the load denominator
 *     and the draw weight) by max(up_ms / slow_start_ms, 10 %).
 *
 * Ties on load are broken by rooms / cap, then by the lower index.
 *
 * Clamps: weight and capacity <= 2^22 - 1, num, rooms and the sum of
 * all num <= 2^31 - 1: then num * cap fits in 64 bits and loads are
 * compared by cross multiplication, without division.
 */


#include <limits.h>

#include "ra_placement.h"


#define RA_PL_WEIGHT_MAX   RA_PL_CAP_MAX
#define RA_PL_CAP_MAX      ((1U << 22) - 1)
#define RA_PL_NUM_MAX      RA_PL_LOAD_MAX
#define RA_PL_ONE          1024        /* slow start factor 1.0 */
#define RA_PL_FLOOR        (RA_PL_ONE * RA_PL_SLOW_START_FLOOR / 100)
#define RA_PL_BF_MAX       10000
#define RA_PL_DRAW_TRIES   4           /* rejections per choice */

#define RA_PL_F_CAP        1           /* a fresh one with a capacity */
#define RA_PL_F_NOCAP      2           /* a fresh one without */
#define RA_PL_F_STALE      4           /* not fresh */


typedef struct {
    const ra_pl_conf_t     *conf;
    const ra_pl_backend_t  *b;
    const ra_pl_view_t     *v;
    uint64_t                bf;        /* balance factor, 0: none */
} ra_pl_ctx_t;


/* one backend's load, as compared */
typedef struct {
    int                     index;
    uint32_t                num;
    uint32_t                cap;
    uint32_t                rooms;
} ra_pl_load_t;


static void ra_pl_init(ra_pl_ctx_t *ctx, const ra_pl_conf_t *conf,
    const ra_pl_view_t *v, const ra_pl_backend_t *b);
static void ra_pl_scan(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    ra_pl_view_t *v);
static void ra_pl_totals(const ra_pl_ctx_t *ctx, ra_pl_view_t *v);
static void ra_pl_eval(const ra_pl_ctx_t *ctx, unsigned i, uint32_t *num,
    uint32_t *cap);
static uint32_t ra_pl_slow_start(const ra_pl_conf_t *conf, uint32_t up_ms,
    uint64_t c);
static int ra_pl_draw(const ra_pl_ctx_t *ctx, uint64_t r, const int *chosen,
    unsigned nchosen, uint64_t skip_weight);
static void ra_pl_load(const ra_pl_ctx_t *ctx, unsigned i, ra_pl_load_t *l);
static int ra_pl_less(const ra_pl_load_t *a, const ra_pl_load_t *z);
static int ra_pl_over(const ra_pl_ctx_t *ctx, const ra_pl_load_t *l);
static uint64_t ra_pl_mix(uint64_t x);
static uint64_t ra_pl_mul(uint64_t a, uint64_t b, uint64_t *lo);


uint64_t
ra_hash(const void *data, size_t len)
{
    size_t          i;
    uint64_t        h;
    const uint8_t  *p;

    /* FNV-1a 64 */

    p = data;
    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }

    /* the length, then MurmurHash3's fmix64 finalizer for avalanche */

    h ^= (uint64_t) len;

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;

    return h;
}


int
ra_placement_pick(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t room_hash)
{
    int           cand[RA_PL_MAX_CHOICES], best;
    unsigned      i, ncand;
    uint64_t      acc[RA_PL_MAX_BACKENDS];
    ra_pl_ctx_t   ctx;
    ra_pl_view_t  v;
    ra_pl_load_t  min, cur;

    ra_placement_view(conf, b, n, (n <= RA_PL_MAX_BACKENDS) ? acc : NULL, &v);

    if (v.navail == 0) {
        return -1;
    }

    ncand = ra_placement_draw(conf, &v, b, room_hash, cand);

    best = ra_placement_decide(conf, &v, b, ncand ? cand : NULL, ncand);

    if (best != -1) {
        return best;
    }

    /* every candidate is over the cap: the least loaded overall */

    ra_pl_init(&ctx, conf, &v, b);
    min.index = -1;

    for (i = 0; i < n; i++) {
        if (!b[i].available) {
            continue;
        }

        ra_pl_load(&ctx, i, &cur);

        if (min.index == -1 || ra_pl_less(&cur, &min)) {
            min = cur;
        }
    }

    return min.index;
}


void
ra_placement_view(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    unsigned n, uint64_t *acc, ra_pl_view_t *v)
{
    ra_pl_ctx_t  ctx;

    v->n = n;
    v->acc = acc;

    ra_pl_scan(conf, b, v);

    if (!v->quick) {
        ra_pl_init(&ctx, conf, v, b);
        ra_pl_totals(&ctx, v);
    }
}


unsigned
ra_placement_draw(const ra_pl_conf_t *conf, const ra_pl_view_t *v,
    const ra_pl_backend_t *b, uint64_t room_hash, int *cand)
{
    int           k;
    unsigned      d, n, tries;
    uint64_t      seq, skip;
    ra_pl_ctx_t   ctx;
    ra_pl_load_t  cur;

    d = conf->choices;

    if (d == 0 || d > RA_PL_MAX_CHOICES || d >= v->navail) {
        return 0;
    }

    ra_pl_init(&ctx, conf, v, b);

    n = 0;
    seq = room_hash;
    skip = 0;

    while (n < d) {

        for (tries = 0; tries < RA_PL_DRAW_TRIES; tries++) {
            seq += 0x9e3779b97f4a7c15ULL;
            k = ra_pl_draw(&ctx, ra_pl_mul(ra_pl_mix(seq), v->sum_cap, NULL),
                           cand, n, 0);
            if (k >= 0) {
                break;
            }
        }

        if (k < 0) {
            /* unlucky: draw among the remaining ones only */

            seq += 0x9e3779b97f4a7c15ULL;
            k = ra_pl_draw(&ctx,
                           ra_pl_mul(ra_pl_mix(seq), v->sum_cap - skip, NULL),
                           cand, n, skip);
        }

        cand[n++] = k;

        ra_pl_load(&ctx, k, &cur);
        skip += cur.cap;
    }

    return n;
}


int
ra_placement_decide(const ra_pl_conf_t *conf, const ra_pl_view_t *v,
    const ra_pl_backend_t *b, const int *cand, unsigned ncand)
{
    unsigned      i, k;
    ra_pl_ctx_t   ctx;
    ra_pl_load_t  best, cur;

    ra_pl_init(&ctx, conf, v, b);
    best.index = -1;

    if (cand == NULL) {
        ncand = v->n;
    }

    for (i = 0; i < ncand; i++) {
        k = cand ? (unsigned) cand[i] : i;

        if (!b[k].available) {
            continue;
        }

        ra_pl_load(&ctx, k, &cur);

        if ((best.index == -1 || ra_pl_less(&cur, &best))
            && !ra_pl_over(&ctx, &cur))
        {
            best = cur;
        }
    }

    return best.index;
}


static void
ra_pl_init(ra_pl_ctx_t *ctx, const ra_pl_conf_t *conf, const ra_pl_view_t *v,
    const ra_pl_backend_t *b)
{
    ctx->conf = conf;
    ctx->v = v;
    ctx->b = b;
    ctx->bf = (conf->balance_factor > RA_PL_BF_MAX) ? RA_PL_BF_MAX
                                                    : conf->balance_factor;
}


/*
 * One pass: the mode and, assuming it is local, or fresh with capacities
 * known for all backends or for none, the totals and running sums of
 * capacity.  Clears v->quick when they must be recomputed by
 * ra_pl_totals().
 */

static void
ra_pl_scan(const ra_pl_conf_t *conf, const ra_pl_backend_t *b,
    ra_pl_view_t *v)
{
    unsigned   i, n, navail, flags, mask, slow;
    uint32_t   slow_ms;
    uint64_t   c, x, s, sc, dummy, *acc;

    /* locals: the stores to acc[] could alias the view */

    n = v->n;
    slow_ms = conf->slow_start_ms;

    if (v->acc) {
        acc = v->acc;
        mask = UINT_MAX;

    } else {
        /* too many to store: the running sums are recomputed */
        acc = &dummy;
        mask = 0;
    }

    navail = 0;
    flags = 0;
    slow = 0;
    s = 0;
    sc = 0;

    for (i = 0; i < n; i++, b++) {

        if (b->available) {
            navail++;

            if (b->fresh) {
                x = (uint64_t) b->reported + b->pending;

                if (b->capacity) {
                    c = b->capacity;
                    flags |= RA_PL_F_CAP;

                } else {
                    c = b->weight;
                    flags |= RA_PL_F_NOCAP;
                }

            } else {
                x = b->live;
                c = b->weight;
                flags |= RA_PL_F_STALE;
            }

            if (c - 1 >= RA_PL_CAP_MAX) {
                c = (c == 0) ? 1 : RA_PL_CAP_MAX;
            }

            s += x;

            if (b->up_ms < slow_ms) {
                slow = 1;
                sc += ra_pl_slow_start(conf, b->up_ms, c);

            } else {
                sc += c * RA_PL_ONE;
            }
        }

        acc[i & mask] = sc;
    }

    v->navail = navail;
    v->slow = slow;
    v->sum_num = (s > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : s;
    v->sum_cap = sc;

    /* valid when this pass is: no capacity to infer, no estimate */

    v->known_cap = 0;
    v->known_weight = 0;
    v->fresh_num = 0;
    v->fresh_live = 0;
    v->fresh_weight = 0;
    v->quick = 1;

    if (!(flags & (RA_PL_F_CAP|RA_PL_F_NOCAP))) {
        v->mode = RA_PL_LOCAL;
        return;
    }

    if (!(flags & RA_PL_F_STALE)) {
        v->mode = RA_PL_FRESH;

        if ((flags & (RA_PL_F_CAP|RA_PL_F_NOCAP))
            != (RA_PL_F_CAP|RA_PL_F_NOCAP))
        {
            return;
        }

    } else {
        v->mode = RA_PL_MIXED;
    }

    v->quick = 0;
}


/* the statistics of the fresh backends, then the totals and running sums */

static void
ra_pl_totals(const ra_pl_ctx_t *ctx, ra_pl_view_t *v)
{
    unsigned                i;
    uint32_t                num, cap;
    uint64_t                w, x, s, c;
    const ra_pl_backend_t  *b;

    for (i = 0; i < v->n; i++) {
        b = &ctx->b[i];

        if (!b->available || !b->fresh) {
            continue;
        }

        w = b->weight ? b->weight : 1;
        if (w > RA_PL_WEIGHT_MAX) {
            w = RA_PL_WEIGHT_MAX;
        }

        x = (uint64_t) b->reported + b->pending;

        v->fresh_weight += w;
        v->fresh_live += b->live;
        v->fresh_num += (x > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : x;

        if (b->capacity) {
            v->known_cap += (b->capacity > RA_PL_CAP_MAX) ? RA_PL_CAP_MAX
                                                          : b->capacity;
            v->known_weight += w;
        }
    }

    if (v->fresh_num > RA_PL_NUM_MAX) {
        v->fresh_num = RA_PL_NUM_MAX;
    }

    s = 0;
    c = 0;

    for (i = 0; i < v->n; i++) {

        if (ctx->b[i].available) {
            ra_pl_eval(ctx, i, &num, &cap);
            s += num;
            c += cap;
        }

        if (v->acc) {
            v->acc[i] = c;
        }
    }

    v->sum_num = (s > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : s;
    v->sum_cap = c;
}


/* the metric and the effective capacity of an available backend */

static void
ra_pl_eval(const ra_pl_ctx_t *ctx, unsigned i, uint32_t *num, uint32_t *cap)
{
    uint64_t                w, c, x;
    const ra_pl_view_t     *v;
    const ra_pl_backend_t  *b;

    v = ctx->v;
    b = &ctx->b[i];

    w = b->weight ? b->weight : 1;
    if (w > RA_PL_WEIGHT_MAX) {
        w = RA_PL_WEIGHT_MAX;
    }

    if (v->mode == RA_PL_LOCAL) {
        x = b->live;
        c = w;

    } else {
        if (b->fresh && b->capacity) {
            c = b->capacity;

        } else if (v->known_weight) {
            c = v->known_cap / v->known_weight * w
                + v->known_cap % v->known_weight * w / v->known_weight;

        } else {
            c = w;
        }

        if (b->fresh) {
            x = (uint64_t) b->reported + b->pending;

        } else if (v->fresh_live) {
            x = (uint64_t) b->live;
            x = (x * v->fresh_num) / v->fresh_live;

        } else {
            x = v->fresh_num * w / v->fresh_weight;
        }
    }

    if (c == 0) {
        c = 1;

    } else if (c > RA_PL_CAP_MAX) {
        c = RA_PL_CAP_MAX;
    }

    *num = (x > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : (uint32_t) x;
    *cap = (b->up_ms < ctx->conf->slow_start_ms)
           ? ra_pl_slow_start(ctx->conf, b->up_ms, c)
           : (uint32_t) (c * RA_PL_ONE);
}


/* c scaled by max(up_ms / slow_start_ms, floor), in 1/1024 */

static uint32_t
ra_pl_slow_start(const ra_pl_conf_t *conf, uint32_t up_ms, uint64_t c)
{
    uint64_t  f;

    f = (uint64_t) up_ms * RA_PL_ONE / conf->slow_start_ms;

    if (f < RA_PL_FLOOR) {
        f = RA_PL_FLOOR;
    }

    return (uint32_t) (c * f);
}


/*
 * Returns the backend whose slice of the running sum of capacities holds r,
 * or -1 when it is already chosen.  With skip_weight, the chosen ones are
 * left out of the running sum, so the draw always succeeds.
 */

static int
ra_pl_draw(const ra_pl_ctx_t *ctx, uint64_t r, const int *chosen,
    unsigned nchosen, uint64_t skip_weight)
{
    int                  found;
    unsigned             i, k, len, half;
    uint32_t             num, cap;
    uint64_t             acc;
    const uint64_t      *base;
    const ra_pl_view_t  *v;

    v = ctx->v;
    found = -1;

    if (v->acc && skip_weight == 0) {

        /*
         * the first i with acc[i] > r (r < acc[n - 1]): a binary search
         * without branches on the data, which the CPU cannot predict
         */

        base = v->acc;

        for (len = v->n; len > 1; len -= half) {
            half = len / 2;
            base += (size_t) (base[half - 1] <= r) * half;
        }

        found = base - v->acc;

    } else {
        acc = 0;

        for (i = 0; i < v->n; i++) {
            if (!ctx->b[i].available) {
                continue;
            }

            if (skip_weight) {
                for (k = 0; k < nchosen; k++) {
                    if (chosen[k] == (int) i) {
                        break;
                    }
                }

                if (k < nchosen) {
                    continue;
                }
            }

            ra_pl_eval(ctx, i, &num, &cap);
            acc += cap;

            if (acc > r) {
                found = i;
                break;
            }
        }

        if (skip_weight) {
            return found;
        }
    }

    for (k = 0; k < nchosen; k++) {
        if (chosen[k] == found) {
            return -1;
        }
    }

    return found;
}


static void
ra_pl_load(const ra_pl_ctx_t *ctx, unsigned i, ra_pl_load_t *l)
{
    uint64_t                x;
    const ra_pl_view_t     *v;
    const ra_pl_backend_t  *b;

    v = ctx->v;
    b = &ctx->b[i];

    l->index = i;
    l->rooms = (b->rooms > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : b->rooms;

    if (!(v->quick && v->acc)) {
        ra_pl_eval(ctx, i, &l->num, &l->cap);
        return;
    }

    /* what ra_pl_eval() computes, read from the scan */

    l->cap = (uint32_t) (v->acc[i] - (i ? v->acc[i - 1] : 0));

    x = (v->mode == RA_PL_LOCAL) ? b->live
                                 : (uint64_t) b->reported + b->pending;

    l->num = (x > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : (uint32_t) x;
}


/* is a less loaded than z: num / cap, then rooms / cap, then the index */

static int
ra_pl_less(const ra_pl_load_t *a, const ra_pl_load_t *z)
{
    uint64_t  x, y;

    x = (uint64_t) a->num * z->cap;
    y = (uint64_t) z->num * a->cap;

    if (x != y) {
        return x < y;
    }

    x = (uint64_t) a->rooms * z->cap;
    y = (uint64_t) z->rooms * a->cap;

    if (x != y) {
        return x < y;
    }

    return a->index < z->index;
}


/*
 * Is the backend at its cap: num >= bf / 100 * (sum_num + 1) / sum_cap * cap,
 * in 128 bits; the average counts the new room.  As HAProxy's bounded
 * loads do, the cap is rounded up to a whole unit (load + 1 <= ceil(cap)
 * is load >= cap for whole loads), so that while loads are near zero
 * every backend may take a room instead of every one being over.
 */

static int
ra_pl_over(const ra_pl_ctx_t *ctx, const ra_pl_load_t *l)
{
    uint64_t  xh, xl, yh, yl;

    if (ctx->bf == 0) {
        return 0;
    }

    xh = ra_pl_mul((uint64_t) l->num * 100, ctx->v->sum_cap, &xl);
    yh = ra_pl_mul(ctx->bf * (ctx->v->sum_num + 1), l->cap, &yl);

    return xh > yh || (xh == yh && xl >= yl);
}


/* splitmix64's output function */

static uint64_t
ra_pl_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;

    return x;
}


/*
 * The 128-bit product of a and b: returns the high 64 bits, stores the low
 * ones in *lo.  The high half of a random x times m is uniform in [0, m).
 */

static uint64_t
ra_pl_mul(uint64_t a, uint64_t b, uint64_t *lo)
{
#if defined(__SIZEOF_INT128__)

    unsigned __int128  p;

    p = (unsigned __int128) a * b;

    if (lo) {
        *lo = (uint64_t) p;
    }

    return (uint64_t) (p >> 64);

#else

    uint64_t  al, ah, bl, bh, ll, hl, lh, hh, mid;

    al = a & 0xffffffff;
    ah = a >> 32;
    bl = b & 0xffffffff;
    bh = b >> 32;

    ll = al * bl;
    hl = ah * bl;
    lh = al * bh;
    hh = ah * bh;

    mid = (ll >> 32) + (hl & 0xffffffff) + lh;

    if (lo) {
        *lo = (mid << 32) | (ll & 0xffffffff);
    }

    return hh + (hl >> 32) + (mid >> 32);

#endif
}
