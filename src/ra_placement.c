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
#define RA_PL_NUM_MAX      ((1U << 31) - 1)
#define RA_PL_ONE          1024        /* slow start factor 1.0 */
#define RA_PL_FLOOR        (RA_PL_ONE * RA_PL_SLOW_START_FLOOR / 100)
#define RA_PL_BF_MAX       10000
#define RA_PL_DRAW_TRIES   4           /* rejections per choice */

#define RA_PL_F_CAP        1           /* a fresh one with a capacity */
#define RA_PL_F_NOCAP      2           /* a fresh one without */
#define RA_PL_F_STALE      4           /* not fresh */

#define RA_PL_LOCAL        0
#define RA_PL_FRESH        1
#define RA_PL_MIXED        2


typedef struct {
    const ra_pl_conf_t     *conf;
    const ra_pl_backend_t  *b;
    unsigned                n;
    unsigned                navail;
    unsigned                mode;

    uint64_t                known_cap;      /* fresh with a capacity */
    uint64_t                known_weight;
    uint64_t                fresh_num;
    uint64_t                fresh_live;
    uint64_t                fresh_weight;

    uint64_t                sum_num;        /* over available, clamped */
    uint64_t                sum_cap;        /* total draw weight */
    uint64_t                bf;             /* balance factor, 0: none */

    /* running sums of cap; NULL when n > RA_PL_MAX_BACKENDS */
    uint64_t               *acc;

    /* acc[] came from ra_pl_scan(): num is reported + pending, or live */
    unsigned                quick;
} ra_pl_ctx_t;


/* one backend's load, as compared */
typedef struct {
    int                     index;
    uint32_t                num;
    uint32_t                cap;
    uint32_t                rooms;
} ra_pl_load_t;


static int ra_pl_scan(ra_pl_ctx_t *ctx);
static void ra_pl_totals(ra_pl_ctx_t *ctx);
static void ra_pl_eval(ra_pl_ctx_t *ctx, unsigned i, uint32_t *num,
    uint32_t *cap);
static uint32_t ra_pl_slow_start(const ra_pl_conf_t *conf, uint32_t up_ms,
    uint64_t c);
static int ra_pl_draw(ra_pl_ctx_t *ctx, uint64_t r, const int *chosen,
    unsigned nchosen, uint64_t skip_weight);
static void ra_pl_load(ra_pl_ctx_t *ctx, unsigned i, ra_pl_load_t *l);
static int ra_pl_less(const ra_pl_load_t *a, const ra_pl_load_t *z);
static int ra_pl_over(ra_pl_ctx_t *ctx, const ra_pl_load_t *l);
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
    int           chosen[RA_PL_MAX_CHOICES], k;
    unsigned      i, d, nchosen, tries;
    uint64_t      acc[RA_PL_MAX_BACKENDS];
    uint64_t      seq, skip;
    ra_pl_ctx_t   ctx;
    ra_pl_load_t  best, cur;

    ctx.conf = conf;
    ctx.b = b;
    ctx.n = n;
    ctx.acc = (n <= RA_PL_MAX_BACKENDS) ? acc : NULL;

    ctx.quick = ra_pl_scan(&ctx);

    if (!ctx.quick) {
        ra_pl_totals(&ctx);
    }

    if (ctx.navail == 0) {
        return -1;
    }

    ctx.bf = (conf->balance_factor > RA_PL_BF_MAX) ? RA_PL_BF_MAX
                                                   : conf->balance_factor;

    best.index = -1;

    d = conf->choices;

    if (d == 0 || d > RA_PL_MAX_CHOICES || d >= ctx.navail) {

        /* every available backend is a candidate */

        for (i = 0; i < n; i++) {
            if (!b[i].available) {
                continue;
            }

            ra_pl_load(&ctx, i, &cur);

            if ((best.index == -1 || ra_pl_less(&cur, &best))
                && !ra_pl_over(&ctx, &cur))
            {
                best = cur;
            }
        }

        goto fallback;
    }

    /* draw d distinct candidates by capacity from the room hash */

    nchosen = 0;
    seq = room_hash;
    skip = 0;

    while (nchosen < d) {

        for (tries = 0; tries < RA_PL_DRAW_TRIES; tries++) {
            seq += 0x9e3779b97f4a7c15ULL;
            k = ra_pl_draw(&ctx, ra_pl_mul(ra_pl_mix(seq), ctx.sum_cap, NULL),
                           chosen, nchosen, 0);
            if (k >= 0) {
                break;
            }
        }

        if (k < 0) {
            /* unlucky: draw among the remaining ones only */

            seq += 0x9e3779b97f4a7c15ULL;
            k = ra_pl_draw(&ctx,
                           ra_pl_mul(ra_pl_mix(seq), ctx.sum_cap - skip, NULL),
                           chosen, nchosen, skip);
        }

        chosen[nchosen++] = k;

        ra_pl_load(&ctx, k, &cur);
        skip += cur.cap;

        if ((best.index == -1 || ra_pl_less(&cur, &best))
            && !ra_pl_over(&ctx, &cur))
        {
            best = cur;
        }
    }

fallback:

    if (best.index != -1) {
        return best.index;
    }

    /* every candidate is over the cap: the least loaded overall */

    for (i = 0; i < n; i++) {
        if (!b[i].available) {
            continue;
        }

        ra_pl_load(&ctx, i, &cur);

        if (best.index == -1 || ra_pl_less(&cur, &best)) {
            best = cur;
        }
    }

    return best.index;
}


/*
 * One pass: the mode and, assuming it is local, or fresh with capacities
 * known for all backends or for none, the totals and running sums of
 * capacity.  Returns 0 when they must be recomputed by ra_pl_totals().
 */

static int
ra_pl_scan(ra_pl_ctx_t *ctx)
{
    unsigned                i, n, navail, flags, mask;
    uint32_t                slow;
    uint64_t                c, v, s, sc, dummy, *acc;
    const ra_pl_backend_t  *b;

    /* locals: the stores to acc[] could alias the context */

    b = ctx->b;
    n = ctx->n;
    slow = ctx->conf->slow_start_ms;

    if (ctx->acc) {
        acc = ctx->acc;
        mask = UINT_MAX;

    } else {
        /* too many to store: the running sums are recomputed */
        acc = &dummy;
        mask = 0;
    }

    navail = 0;
    flags = 0;
    s = 0;
    sc = 0;

    for (i = 0; i < n; i++, b++) {

        if (b->available) {
            navail++;

            if (b->fresh) {
                v = (uint64_t) b->reported + b->pending;

                if (b->capacity) {
                    c = b->capacity;
                    flags |= RA_PL_F_CAP;

                } else {
                    c = b->weight;
                    flags |= RA_PL_F_NOCAP;
                }

            } else {
                v = b->live;
                c = b->weight;
                flags |= RA_PL_F_STALE;
            }

            if (c - 1 >= RA_PL_CAP_MAX) {
                c = (c == 0) ? 1 : RA_PL_CAP_MAX;
            }

            s += v;
            sc += (b->up_ms < slow) ? ra_pl_slow_start(ctx->conf, b->up_ms, c)
                                    : c * RA_PL_ONE;
        }

        acc[i & mask] = sc;
    }

    ctx->navail = navail;
    ctx->sum_num = (s > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : s;
    ctx->sum_cap = sc;

    /* valid when this pass is: no capacity to infer, no estimate */

    ctx->known_cap = 0;
    ctx->known_weight = 0;
    ctx->fresh_num = 0;
    ctx->fresh_live = 0;
    ctx->fresh_weight = 0;

    if (!(flags & (RA_PL_F_CAP|RA_PL_F_NOCAP))) {
        ctx->mode = RA_PL_LOCAL;
        return 1;
    }

    if (!(flags & RA_PL_F_STALE)) {
        ctx->mode = RA_PL_FRESH;

        if ((flags & (RA_PL_F_CAP|RA_PL_F_NOCAP))
            != (RA_PL_F_CAP|RA_PL_F_NOCAP))
        {
            return 1;
        }

    } else {
        ctx->mode = RA_PL_MIXED;
    }

    return 0;
}


/* the statistics of the fresh backends, then the totals and running sums */

static void
ra_pl_totals(ra_pl_ctx_t *ctx)
{
    unsigned                i;
    uint32_t                num, cap;
    uint64_t                w, v, s, c;
    const ra_pl_backend_t  *b;

    ctx->known_cap = 0;
    ctx->known_weight = 0;
    ctx->fresh_num = 0;
    ctx->fresh_live = 0;
    ctx->fresh_weight = 0;

    for (i = 0; i < ctx->n; i++) {
        b = &ctx->b[i];

        if (!b->available || !b->fresh) {
            continue;
        }

        w = b->weight ? b->weight : 1;
        if (w > RA_PL_WEIGHT_MAX) {
            w = RA_PL_WEIGHT_MAX;
        }

        v = (uint64_t) b->reported + b->pending;

        ctx->fresh_weight += w;
        ctx->fresh_live += b->live;
        ctx->fresh_num += (v > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : v;

        if (b->capacity) {
            ctx->known_cap += (b->capacity > RA_PL_CAP_MAX) ? RA_PL_CAP_MAX
                                                            : b->capacity;
            ctx->known_weight += w;
        }
    }

    if (ctx->fresh_num > RA_PL_NUM_MAX) {
        ctx->fresh_num = RA_PL_NUM_MAX;
    }

    s = 0;
    c = 0;

    for (i = 0; i < ctx->n; i++) {

        if (ctx->b[i].available) {
            ra_pl_eval(ctx, i, &num, &cap);
            s += num;
            c += cap;
        }

        if (ctx->acc) {
            ctx->acc[i] = c;
        }
    }

    ctx->sum_num = (s > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : s;
    ctx->sum_cap = c;
}


/* the metric and the effective capacity of an available backend */

static void
ra_pl_eval(ra_pl_ctx_t *ctx, unsigned i, uint32_t *num, uint32_t *cap)
{
    uint64_t                w, c, v;
    const ra_pl_backend_t  *b;

    b = &ctx->b[i];

    w = b->weight ? b->weight : 1;
    if (w > RA_PL_WEIGHT_MAX) {
        w = RA_PL_WEIGHT_MAX;
    }

    if (ctx->mode == RA_PL_LOCAL) {
        v = b->live;
        c = w;

    } else {
        if (b->fresh && b->capacity) {
            c = b->capacity;

        } else if (ctx->known_weight) {
            c = ctx->known_cap / ctx->known_weight * w
                + ctx->known_cap % ctx->known_weight * w / ctx->known_weight;

        } else {
            c = w;
        }

        if (b->fresh) {
            v = (uint64_t) b->reported + b->pending;

        } else if (ctx->fresh_live) {
            v = (uint64_t) b->live;
            v = (v * ctx->fresh_num) / ctx->fresh_live;

        } else {
            v = ctx->fresh_num * w / ctx->fresh_weight;
        }
    }

    if (c == 0) {
        c = 1;

    } else if (c > RA_PL_CAP_MAX) {
        c = RA_PL_CAP_MAX;
    }

    *num = (v > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : (uint32_t) v;
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
ra_pl_draw(ra_pl_ctx_t *ctx, uint64_t r, const int *chosen, unsigned nchosen,
    uint64_t skip_weight)
{
    int       found;
    unsigned  i, k, lo, hi, mid;
    uint32_t  num, cap;
    uint64_t  acc;

    found = -1;

    if (ctx->acc && skip_weight == 0) {

        /* the first i with acc[i] > r */

        lo = 0;
        hi = ctx->n - 1;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (ctx->acc[mid] > r) {
                hi = mid;

            } else {
                lo = mid + 1;
            }
        }

        found = lo;

    } else {
        acc = 0;

        for (i = 0; i < ctx->n; i++) {
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
ra_pl_load(ra_pl_ctx_t *ctx, unsigned i, ra_pl_load_t *l)
{
    uint64_t                v;
    const ra_pl_backend_t  *b;

    b = &ctx->b[i];

    l->index = i;
    l->rooms = (b->rooms > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : b->rooms;

    if (!(ctx->quick && ctx->acc)) {
        ra_pl_eval(ctx, i, &l->num, &l->cap);
        return;
    }

    /* what ra_pl_eval() computes, read from the scan */

    l->cap = (uint32_t) (ctx->acc[i] - (i ? ctx->acc[i - 1] : 0));

    v = (ctx->mode == RA_PL_LOCAL) ? b->live
                                   : (uint64_t) b->reported + b->pending;

    l->num = (v > RA_PL_NUM_MAX) ? RA_PL_NUM_MAX : (uint32_t) v;
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
 * Would the new room take the backend over bf / 100 of the average load:
 * (num + 1) / cap > bf / 100 * (sum_num + 1) / sum_cap, in 128 bits.
 */

static int
ra_pl_over(ra_pl_ctx_t *ctx, const ra_pl_load_t *l)
{
    uint64_t  xh, xl, yh, yl;

    if (ctx->bf == 0) {
        return 0;
    }

    xh = ra_pl_mul(((uint64_t) l->num + 1) * 100, ctx->sum_cap, &xl);
    yh = ra_pl_mul(ctx->bf * (ctx->sum_num + 1), l->cap, &yl);

    return xh > yh || (xh == yh && xl > yl);
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
}
