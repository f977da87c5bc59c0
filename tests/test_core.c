/* test_core.c — the core without any op family: leaves, reading data, dtypes and
 * promotion, scopes and reference counting, errors, evaluation of long chains, memory
 * statistics and limits, printing. */
#include "harness.h"

#include <unistd.h>

#include <string.h>

#include "core/core.h"

TEST(from_data_roundtrip_all_dtypes)
{
    pn_scope_push();
    for (int t = 0; t < PN_NUM_DTYPES; t++) {
        int64_t shape[2] = {3, 5};
        pn_array *a = test_random_array(shape, 2, (pn_dtype)t, -50, 50);
        CHECK_OK(a);
        size_t nb = pn_nbytes(a);
        CHECK(nb == 15 * pn_dtype_size((pn_dtype)t));
        char *buf = malloc(nb), *buf2 = malloc(nb);
        CHECK(pn_to_host(a, buf, nb) == 0);
        pn_array *b = pn_array_from_data(buf, shape, 2, (pn_dtype)t);
        CHECK(pn_to_host(b, buf2, nb) == 0);
        CHECK(memcmp(buf, buf2, nb) == 0);
        CHECK(pn_to_host(b, buf2, nb - 1) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        free(buf);
        free(buf2);
    }
    pn_scope_pop();
}

TEST(scalars_and_items)
{
    pn_scope_push();
    CHECK(pn_item(pn_scalar(2.5, PN_FLOAT32)) == 2.5);
    CHECK(pn_item(pn_scalar(2.5, PN_BFLOAT16)) == 2.5);
    CHECK(pn_item(pn_scalar(-3.7, PN_INT32)) == -3);
    CHECK(pn_item_int(pn_scalar_int(INT64_MAX, PN_INT64)) == INT64_MAX);
    CHECK(pn_item_int(pn_scalar_int(300, PN_UINT8)) == 44); /* wraps like C and MLX */
    CHECK(pn_item(pn_scalar(1e9, PN_INT8)) == 127);         /* float -> int saturates */
    pn_array *c = pn_scalar_complex(1, -2);
    char *s = pn_to_string(c);
    CHECK(s && strcmp(s, "array(1-2j, dtype=complex64)") == 0);
    pn_free_string(s);
    int64_t shape[1] = {2};
    double v[2] = {1, 2};
    pn_array *two = pn_array_from_data(v, shape, 1, PN_FLOAT64);
    pn_item(two);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_scope_pop();
}

TEST(promotion_table)
{
    /* spot checks of MLX's table */
    CHECK(pn_promote_types(PN_UINT8, PN_INT8) == PN_INT16);
    CHECK(pn_promote_types(PN_UINT32, PN_INT32) == PN_INT64);
    CHECK(pn_promote_types(PN_UINT64, PN_INT8) == PN_FLOAT32);
    CHECK(pn_promote_types(PN_INT64, PN_FLOAT16) == PN_FLOAT16);
    CHECK(pn_promote_types(PN_FLOAT16, PN_BFLOAT16) == PN_FLOAT32);
    CHECK(pn_promote_types(PN_FLOAT64, PN_COMPLEX64) == PN_COMPLEX64);
    CHECK(pn_promote_types(PN_BOOL, PN_UINT16) == PN_UINT16);
    CHECK(pn_promote_types(PN_INT16, PN_UINT8) == PN_INT16);
    CHECK(pn_promote_types(PN_FLOAT32, PN_FLOAT64) == PN_FLOAT64);
    /* symmetric */
    for (int a = 0; a < PN_NUM_DTYPES; a++)
        for (int b = 0; b < PN_NUM_DTYPES; b++)
            CHECK(pn_promote_types(a, b) == pn_promote_types(b, a));
    /* weak scalars adapt */
    pn_scope_push();
    int64_t shape[1] = {4};
    pn_array *i32 = test_random_array(shape, 1, PN_INT32, 0, 9);
    pn_array *f16 = test_random_array(shape, 1, PN_FLOAT16, 0, 9);
    pn_array *u8 = test_random_array(shape, 1, PN_UINT8, 0, 9);
    pn_array *bl = test_random_array(shape, 1, PN_BOOL, 0, 2);
    pn_array *pairs[][2] = {{i32, pn_weak_float(0.5)}, {f16, pn_weak_float(2)},
                            {u8, pn_weak_int(1)},      {bl, pn_weak_int(1)},
                            {bl, pn_weak_bool(true)}};
    pn_dtype want[] = {PN_FLOAT32, PN_FLOAT16, PN_UINT8, PN_INT32, PN_BOOL};
    for (int i = 0; i < 5; i++) CHECK(pnC_result_type(2, pairs[i]) == want[i]);
    pn_array *weak2[2] = {pn_weak_int(1), pn_weak_float(1)};
    CHECK(pnC_result_type(2, weak2) == PN_FLOAT32);
    pn_scope_pop();
    CHECK(pn_issubdtype(PN_UINT8, PN_CAT_INTEGER) && !pn_issubdtype(PN_UINT8, PN_CAT_SIGNEDINTEGER));
    CHECK(pn_issubdtype(PN_BFLOAT16, PN_CAT_FLOATING) && pn_issubdtype(PN_COMPLEX64, PN_CAT_INEXACT));
    CHECK(strcmp(pn_dtype_name(PN_BFLOAT16), "bfloat16") == 0);
}

TEST(scopes_release_everything)
{
    size_t base = pn_get_active_memory();
    int64_t shape[1] = {1000};
    pn_scope_push();
    pn_array *kept = NULL;
    for (int i = 0; i < 10; i++) {
        pn_array *a = test_random_array(shape, 1, PN_FLOAT32, 0, 1);
        if (i == 3) kept = pn_retain(a);
        if (i == 5) pn_release(a); /* releasing a scope-owned array is safe */
    }
    pn_scope_push();
    pn_array *inner = test_random_array(shape, 1, PN_FLOAT32, 0, 1);
    pn_scope_pop_keep(&inner, 1); /* moves to the outer scope */
    CHECK(pn_size(inner) == 1000);
    CHECK(pn_scope_depth() == 1);
    pn_scope_pop();
    CHECK(pn_get_active_memory() > base); /* kept survives */
    CHECK(pn_size(kept) == 1000);
    pn_release(kept);
    CHECK(pn_get_active_memory() == base);
    /* without a scope the caller owns */
    pn_array *b = test_random_array(shape, 1, PN_FLOAT64, 0, 1);
    CHECK(pn_get_active_memory() > base);
    pn_release(b);
    CHECK(pn_get_active_memory() == base);
}

TEST(sticky_null_errors)
{
    pn_clear_error();
    CHECK(pn_eval((pn_array *[]){NULL}, 1) == -1);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(pn_last_error_message(), "NULL") != NULL);
    /* the first error sticks */
    pn_set_error(PN_ERR_IO, "second");
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_last_error() == PN_OK && pn_last_error_message()[0] == 0);
    CHECK_ERR(pn_array_from_data(NULL, (int64_t[]){-1}, 1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_array_from_data(NULL, (int64_t[]){3}, 1, PN_FLOAT32), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_scalar(1, (pn_dtype)99), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pnC_alias(NULL), PN_ERR_INVALID_ARGUMENT);
}

/* A million lazy nodes: evaluation and destruction must not recurse. */
TEST(million_node_chain)
{
    int n = test_quick() ? 200000 : 1000000;
    pn_scope_push();
    pn_array *x = pn_scalar(3.5, PN_FLOAT32);
    pn_scope_pop_keep(&x, 1);
    pn_array *first = pn_retain(x);
    for (int i = 0; i < n; i++) {
        pn_array *y = pnC_make(&pnC_alias_prim, NULL, 0, 1, &x, x->dtype, x->shape, x->ndim);
        pn_release(x);
        x = y;
    }
    CHECK(!pn_is_evaluated(x));
    CHECK(pn_eval(&x, 1) == 0);
    CHECK(pn_item(x) == 3.5);
    pn_release(x);
    /* and a chain that is never evaluated is freed iteratively too */
    x = pn_retain(first);
    for (int i = 0; i < n; i++) {
        pn_array *y = pnC_make(&pnC_alias_prim, NULL, 0, 1, &x, x->dtype, x->shape, x->ndim);
        pn_release(x);
        x = y;
    }
    pn_release(x);
    pn_release(first);
}

TEST(memory_limit_gives_oom)
{
    pn_clear_cache();
    /* the default is MLX's: 0.8 of the physical memory */
    size_t dflt = pn_get_memory_limit();
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    CHECK(dflt > 0 && dflt < (size_t)pages * (size_t)page && dflt > (size_t)pages * (size_t)page / 2);
#ifndef __SANITIZE_ADDRESS__
    /* the default is reported, not enforced (as MLX's CPU allocator): a request beyond it is
     * the system's to grant or refuse (untouched pages: Linux's overcommit grants this one) */
    size_t cap = 0;
    pn_clear_error();
    void *big = pnC_alloc_bytes(dflt + (dflt >> 4), &cap);
    CHECK_MSG(big || !strstr(pn_last_error_message(), "memory limit"), "%s", pn_last_error_message());
    pnC_free_bytes(big, cap);
    pn_clear_cache();
    pn_clear_error();
#endif
    size_t old = pn_set_memory_limit(pn_get_active_memory() + (1 << 20));
    CHECK(old == dflt && pn_get_memory_limit() == pn_get_active_memory() + (1 << 20));
    int64_t shape[1] = {1 << 22};
    pn_clear_error();
    pn_array *a = pnC_new_leaf(PN_FLOAT32, shape, 1);
    CHECK(a == NULL && pn_last_error() == PN_ERR_OUT_OF_MEMORY);
    pn_clear_error();
    pn_set_memory_limit(old);
    a = pnC_new_leaf(PN_FLOAT32, shape, 1);
    CHECK_OK(a);
    pn_release(a);
    CHECK(pn_get_cache_memory() >= (size_t)(1 << 24));
    size_t peak = pn_get_peak_memory();
    CHECK(peak >= (size_t)(1 << 24));
    pn_reset_peak_memory(); /* as MLX: 0 until the next allocation */
    CHECK(pn_get_peak_memory() == 0);
    pn_array *b = pnC_new_leaf(PN_FLOAT32, (int64_t[]){1000}, 1);
    CHECK_OK(b);
    CHECK(pn_get_peak_memory() >= pn_get_active_memory() && pn_get_peak_memory() >= 4000 &&
          pn_get_peak_memory() < peak);
    pn_release(b);
    pn_set_cache_limit(0);
    CHECK(pn_get_cache_memory() == 0);
    pn_set_cache_limit((size_t)-1);
}

TEST(printing_like_mlx)
{
    pn_scope_push();
    int32_t v[6] = {1, 2, 3, 4, 5, 6};
    pn_array *a = pn_array_from_data(v, (int64_t[]){2, 3}, 2, PN_INT32);
    char *s = pn_to_string(a);
    CHECK(s && strcmp(s, "array([[1, 2, 3],\n       [4, 5, 6]], dtype=int32)") == 0);
    pn_free_string(s);
    float f[10];
    for (int i = 0; i < 10; i++) f[i] = (float)i + 0.5f;
    s = pn_to_string(pn_array_from_data(f, (int64_t[]){10}, 1, PN_FLOAT32));
    CHECK(s && strcmp(s, "array([0.5, 1.5, 2.5, ..., 7.5, 8.5, 9.5], dtype=float32)") == 0);
    pn_free_string(s);
    bool b[2] = {true, false};
    s = pn_to_string(pn_array_from_data(b, (int64_t[]){2}, 1, PN_BOOL));
    CHECK(s && strcmp(s, "array([True, False], dtype=bool)") == 0);
    pn_free_string(s);
    s = pn_to_string(pn_scalar(1, PN_FLOAT32));
    CHECK(s && strcmp(s, "array(1, dtype=float32)") == 0);
    pn_free_string(s);
    pn_scope_pop();
}

TEST(devices_and_streams)
{
    pn_device cpu = {PN_CPU, 0};
    CHECK(pn_is_available(cpu));
    CHECK(pn_default_device().type == PN_CPU || pn_gpu_available());
    pn_stream s = pn_new_stream(cpu);
    CHECK(s.index > 1);
    CHECK(pn_stream_push(s) == 0);
    pn_scope_push();
    pn_array *a = pn_scalar(1, PN_FLOAT32);
    CHECK(a->stream.index == s.index);
    pn_scope_pop();
    pn_stream_pop();
    CHECK(pn_current_stream().index == pn_default_stream(pn_default_device()).index);
    if (!pn_gpu_available()) {
        CHECK(pn_set_default_device((pn_device){PN_GPU, 0}) == -1);
        CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_clear_error();
        CHECK(strlen(pn_gpu_unavailable_reason()) > 0);
    }
}

/* pn_retain inside a scope, pn_release later: the retain is what goes, the scope's own
 * reference stays until the pop (no leak, no dangling handle). */
TEST(retain_release_inside_scope)
{
    size_t base = pn_get_active_memory();
    pn_array *keep;
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){100}, 1, PN_FLOAT32, 0, 1);
    keep = pn_retain(a);
    pn_release(keep);         /* gives up the retain only */
    CHECK(pn_size(a) == 100); /* still owned by the scope */
    keep = pn_retain(a);
    pn_scope_pop();
    CHECK(pn_size(keep) == 100); /* survives the scope */
    pn_release(keep);
    CHECK(pn_get_active_memory() == base);
}

/* The generated kernels' table (core/jit.h): random byte keys of varied lengths, some sharing a
 * prefix and differing in their last byte only, many enough to grow the table several times;
 * every key finds its own value, overwrites replace, absent keys find nothing. The reference is
 * a plain array searched linearly. */
TEST(kernel_table_matches_a_linear_search)
{
    enum { N = 700 };
    static uint8_t keys[N][40];
    static size_t lens[N];
    static uintptr_t vals[N];
    pnC_kernel_table t = {0};
    for (int i = 0; i < N; i++) {
        lens[i] = i % 7 == 0 ? 0 : 1 + test_rand_u64() % 40;
        for (size_t b = 0; b < lens[i]; b++) keys[i][b] = (uint8_t)test_rand_u64();
        if (i % 5 == 1) { /* the previous key with its last byte changed, or one byte longer */
            lens[i] = lens[i - 1] ? lens[i - 1] : 1;
            memcpy(keys[i], keys[i - 1], lens[i]);
            keys[i][lens[i] - 1] ^= (uint8_t)(1 + test_rand_u64() % 255);
        }
        bool seen = false; /* a duplicate key (the empty one) keeps its first index */
        for (int j = 0; j < i && !seen; j++) seen = lens[j] == lens[i] && !memcmp(keys[j], keys[i], lens[i]);
        vals[i] = seen ? 0 : (uintptr_t)(i + 1) * 16;
        if (!seen) CHECK(pnC_kernel_table_put(&t, keys[i], lens[i], (void *)vals[i], "test") == 0);
    }
    for (int i = 0; i < N; i++) {
        uintptr_t want = 0;
        for (int j = 0; j < N && !want; j++)
            if (lens[j] == lens[i] && !memcmp(keys[j], keys[i], lens[i])) want = vals[j];
        CHECK((uintptr_t)pnC_kernel_table_get(&t, keys[i], lens[i]) == want);
    }
    CHECK(pnC_kernel_table_put(&t, keys[3], lens[3], (void *)(uintptr_t)8, "test") == 0);
    CHECK((uintptr_t)pnC_kernel_table_get(&t, keys[3], lens[3]) == 8);
    uint8_t absent[41];
    memcpy(absent, keys[2], lens[2]);
    absent[lens[2]] = 0x5a; /* key 2 with one more byte */
    CHECK(pnC_kernel_table_get(&t, absent, lens[2] + 1) == NULL);
    CHECK(t.n <= t.cap / 2 && t.cap >= 1024);
    pnC_kernel_table_free(&t);
    CHECK(t.n == 0 && t.cap == 0 && pnC_kernel_table_get(&t, keys[3], lens[3]) == NULL);
}

/* The first-failure record: the first reason is kept and the error cleared; later failures
 * change nothing. */
TEST(jit_status_keeps_the_first_failure)
{
    pnC_jit_status s = {0};
    CHECK(!pnC_jit_failed(&s) && pnC_jit_reason(&s) == NULL);
    pn_set_error(PN_ERR_BACKEND, "first reason %d", 1);
    pnC_jit_fail(&s);
    CHECK(pn_last_error() == PN_OK);
    pn_set_error(PN_ERR_IO, "second");
    pnC_jit_fail(&s);
    CHECK(pnC_jit_failed(&s) && !strcmp(pnC_jit_reason(&s), "first reason 1"));
    CHECK(pn_last_error() == PN_OK);
}
