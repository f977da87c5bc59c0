/* harness.h — the C test harness: TEST() cases registered at load time, CHECK macros that
 * report and continue, random data, and comparison against float64 references.
 * Each tests/test_*.c is one ctest executable; main() is in harness.c. */
#ifndef PONTE_TEST_HARNESS_H
#define PONTE_TEST_HARNESS_H

#include "ponte.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);

#define TEST(name)                                                                             \
    static void test_##name(void);                                                             \
    __attribute__((constructor)) static void test_register_##name(void)                        \
    {                                                                                          \
        test_register(#name, test_##name);                                                     \
    }                                                                                          \
    static void test_##name(void)

extern int test_failures;
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                 \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                   \
    do {                                                                                       \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                               \
    } while (0)
/* An op result that must not be NULL; prints the library error when it is. */
#define CHECK_OK(a)                                                                            \
    do {                                                                                       \
        if (!(a)) test_fail(__FILE__, __LINE__, "%s returned NULL: %s", #a,                    \
                            pn_last_error_message());                                          \
    } while (0)
/* An op that must fail with the given error kind; clears the error afterwards. */
#define CHECK_ERR(expr, kind)                                                                  \
    do {                                                                                       \
        pn_clear_error();                                                                      \
        pn_array *_r = (expr);                                                                 \
        if (_r) test_fail(__FILE__, __LINE__, "%s should have failed", #expr);                 \
        else if (pn_last_error() != (kind))                                                    \
            test_fail(__FILE__, __LINE__, "%s: error kind %d, expected %d (%s)", #expr,        \
                      (int)pn_last_error(), (int)(kind), pn_last_error_message());             \
        pn_clear_error();                                                                      \
    } while (0)

/* Deterministic random numbers (per test, seeded by test name). */
uint64_t test_rand_u64(void);
double test_uniform(double lo, double hi);
double test_normal(void);
/* Whether PONTE_TEST_QUICK is set (sanitizer runs use smaller sizes). */
int test_quick(void);

/* A path for a scratch file called name in this process's own temporary folder (made on
 * first use, removed at exit); test_tmp_path("") is the folder itself with a trailing slash.
 * The returned buffer is reused by the next call. */
const char *test_tmp_path(const char *name);

/* A random array of shape/dtype with values in [lo, hi) (integers: rounded; bool: 0/1;
 * complex64: real and imaginary parts each in [lo, hi)). */
pn_array *test_random_array(const int64_t *shape, int ndim, pn_dtype dtype, double lo,
                            double hi);
/* The elements of a (any dtype, evaluated, row-major) as a malloc'd double array; the real
 * parts for complex. NULL (and a test failure) when a is NULL or evaluation fails. */
double *test_to_f64(pn_array *a);
/* Checks that a has this shape and dtype and its values match ref (row-major) within
 * atol + rtol*|ref| (NaNs must match NaNs). Returns 1 when they match. */
int test_check_values(const char *what, pn_array *a, const int64_t *shape, int ndim,
                      pn_dtype dtype, const double *ref, double rtol, double atol);
/* Default tolerance for a dtype's results (relative): f16/bf16 loose, f64 tight. */
double test_tol(pn_dtype dtype);

/* Checks the vjp and jvp of fn at the inputs against central finite differences in float64
 * (inputs are converted to float64). fn builds one output from the inputs. Returns 1 when
 * they agree within tol (relative to the gradient's scale). Implemented in harness.c over
 * pn_vjp / pn_jvp. */
typedef pn_array *(*test_op_fn)(void *ctx, pn_array *const *in);
int test_gradcheck(const char *name, test_op_fn fn, void *ctx, int nin, pn_array *const *in,
                   double tol);

#endif
