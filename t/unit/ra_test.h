/*
 * Minimal TAP harness for the C unit tests of the pure (nginx-free) files.
 * Each test program prints "ok N - name" / "not ok N - name" lines and a
 * plan, so prove(1) can run the binaries directly.
 */

#ifndef RA_TEST_H
#define RA_TEST_H

#include <stdio.h>
#include <string.h>


static int  ra_test_n;
static int  ra_test_failed;


#define RA_OK(cond, name)                                                     \
    do {                                                                      \
        ra_test_n++;                                                          \
        if (cond) {                                                           \
            printf("ok %d - %s\n", ra_test_n, name);                          \
        } else {                                                              \
            ra_test_failed++;                                                 \
            printf("not ok %d - %s\n#   at %s line %d: %s\n",                 \
                   ra_test_n, name, __FILE__, __LINE__, #cond);               \
        }                                                                     \
    } while (0)

#define RA_IS_INT(got, want, name)                                            \
    do {                                                                      \
        long long  g_ = (long long) (got), w_ = (long long) (want);           \
        RA_OK(g_ == w_, name);                                                \
        if (g_ != w_) {                                                       \
            printf("#   got %lld, want %lld\n", g_, w_);                      \
        }                                                                     \
    } while (0)

#define RA_DONE()                                                             \
    (printf("1..%d\n", ra_test_n), ra_test_failed ? 1 : 0)

#endif /* RA_TEST_H */
