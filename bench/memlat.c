/*
 * The machine's own cost of reaching memory, the baseline that the room
 * table's lookups are read against (bench/micro.sh): a chain of dependent
 * loads, one per 64-byte line, in random order over a block of each size.
 * A lookup in a table much larger than the CPU caches cannot be cheaper
 * than the lines it must read, each costing about what this prints.
 *
 *   bench/memlat [KB ...]
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>


#define LINE  64


static uint64_t
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static double
chase(size_t bytes)
{
    size_t     n, i, j, t, *perm, p;
    uint64_t   t0, steps;
    uint64_t  *a;
    uint64_t   x;

    n = bytes / LINE;

    a = aligned_alloc(LINE, n * LINE);
    perm = malloc(n * sizeof(size_t));

    if (a == NULL || perm == NULL) {
        fprintf(stderr, "memlat: no memory for %zu bytes\n", bytes);
        exit(1);
    }

    for (i = 0; i < n; i++) {
        perm[i] = i;
    }

    /* one cycle through every line, in an order the prefetcher misses */

    x = 88172645463325252ULL;

    for (i = n - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        j = x % (i + 1);
        t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    for (i = 0; i < n; i++) {
        a[perm[i] * (LINE / sizeof(uint64_t))] =
            perm[(i + 1) % n] * (LINE / sizeof(uint64_t));
    }

    steps = 4000000;
    p = 0;

    for (i = 0; i < n; i++) {
        p = a[p];
    }

    t0 = now_ns();

    for (i = 0; i < steps; i++) {
        p = a[p];
    }

    t0 = now_ns() - t0;

    free(perm);
    free(a);

    /* p keeps the loop from being optimized away */
    return (double) t0 / steps + (p == (size_t) -1);
}


int
main(int argc, char **argv)
{
    int     i;
    size_t  kb[] = { 16, 256, 1024, 4096, 16384, 65536 };

    printf("# dependent loads in random order, ns per load\n");

    if (argc > 1) {
        for (i = 1; i < argc; i++) {
            printf("%8s KB %8.1f\n", argv[i],
                   chase((size_t) atol(argv[i]) * 1024));
        }

        return 0;
    }

    for (i = 0; i < (int) (sizeof(kb) / sizeof(kb[0])); i++) {
        printf("%8zu KB %8.1f\n", kb[i], chase(kb[i] * 1024));
    }

    return 0;
}
