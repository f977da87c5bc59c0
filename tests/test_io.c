/* test_io.c — .safetensors, .npz and .npy: bit-exact round trips in every dtype, files written
 * by numpy, and hostile files (every truncation, random corruption, lying headers) that must
 * give PN_ERR_IO and never crash or leak. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

#include "core/core.h"

static char tmpdir[256];

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/ponte_test_io_%d", (int)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cannot make %s", tmpdir);
        atexit(remove_tmpdir);
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static pn_params *random_tree(void)
{
    pn_params *p = pn_params_new();
    pn_scope_push();
    for (int t = 0; t < PN_NUM_DTYPES; t++) {
        int64_t shape[3] = {2 + t % 3, 3, t % 2 + 1};
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s", t, pn_dtype_name((pn_dtype)t));
        pn_params_set(p, name, test_random_array(shape, 3, (pn_dtype)t, -100, 100));
    }
    pn_params_set(p, "scalar", pn_scalar(3.25, PN_FLOAT32));
    pn_params_set(p, "empty", test_random_array((int64_t[]){0, 4}, 2, PN_FLOAT32, 0, 1));
    pn_scope_pop();
    return p;
}

static void check_same_tree(const pn_params *a, const pn_params *b, bool bf16_as_f32)
{
    CHECK(pn_params_count(a) == pn_params_count(b));
    for (int i = 0; i < pn_params_count(a); i++) {
        const char *name = pn_params_name(a, i);
        pn_array *x = pn_params_at(a, i), *y = pn_params_get(b, name);
        CHECK_MSG(y != NULL, "missing %s", name);
        if (!y) continue;
        pn_dtype want = x->dtype == PN_BFLOAT16 && bf16_as_f32 ? PN_FLOAT32 : x->dtype;
        CHECK_MSG(y->dtype == want, "%s: dtype %s", name, pn_dtype_name(y->dtype));
        CHECK(y->ndim == x->ndim && memcmp(y->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) == 0);
        if (y->dtype == x->dtype) {
            const void *dx = pn_data(x), *dy = pn_data(y);
            CHECK_MSG(memcmp(dx, dy, pn_nbytes(x)) == 0, "%s: bytes differ", name);
        } else {
            double *vx = test_to_f64(x), *vy = test_to_f64(y);
            for (int64_t k = 0; vx && vy && k < x->size; k++) CHECK(vx[k] == vy[k]);
            free(vx);
            free(vy);
        }
    }
}

TEST(safetensors_roundtrip)
{
    pn_params *p = random_tree();
    CHECK(pn_save_params(tmp_path("a.safetensors"), p) == 0);
    pn_params *q = pn_load_params(tmp_path("a.safetensors"));
    CHECK_OK(q);
    if (q) check_same_tree(p, q, false);
    pn_params_free(q);
    pn_params_free(p);
}

TEST(npz_roundtrip)
{
    pn_params *p = random_tree();
    CHECK(pn_save_params(tmp_path("a.npz"), p) == 0);
    pn_params *q = pn_load_params(tmp_path("a.npz"));
    CHECK_OK(q);
    if (q) check_same_tree(p, q, true);
    pn_params_free(q);
    pn_params_free(p);
}

TEST(npy_roundtrip_and_strided)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -1, 1);
    CHECK(pn_save_npy(tmp_path("a.npy"), a) == 0);
    pn_array *b = pn_load_npy(tmp_path("a.npy"));
    CHECK_OK(b);
    if (b) CHECK(memcmp(pn_data(a), pn_data(b), pn_nbytes(a)) == 0);
    /* a transposed view is written in its logical order */
    pn_array *t = pn_transpose(a, NULL, 0);
    CHECK(pn_save_npy(tmp_path("t.npy"), t) == 0);
    pn_array *c = pn_load_npy(tmp_path("t.npy"));
    double *vt = test_to_f64(t), *vc = test_to_f64(c);
    for (int i = 0; vt && vc && i < 12; i++) CHECK(vt[i] == vc[i]);
    free(vt);
    free(vc);
    pn_scope_pop();
}

/* numpy (Debian's python3-numpy) writes files; Ponte reads them, and the other way. */
TEST(numpy_interop)
{
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
        printf("  (skipped: no python3-numpy)\n");
        return;
    }
    char cmd[2048];
    tmp_path("x");
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; "
             "a=np.arange(24,dtype=np.float32).reshape(2,3,4)/7; "
             "np.save('%s/np_c.npy', a); np.save('%s/np_f.npy', np.asfortranarray(a)); "
             "np.savez('%s/np.npz', x=a, y=np.arange(5,dtype=np.int64), b=np.array([True,False]))\"",
             tmpdir, tmpdir, tmpdir);
    CHECK(system(cmd) == 0);
    pn_scope_push();
    pn_array *c = pn_load_npy(tmp_path("np_c.npy")), *f = pn_load_npy(tmp_path("np_f.npy"));
    CHECK_OK(c);
    CHECK_OK(f);
    double *vc = test_to_f64(c), *vf = test_to_f64(f);
    for (int i = 0; vc && vf && i < 24; i++) {
        CHECK(fabs(vc[i] - (float)(i / 7.0)) < 1e-6);
        CHECK(vc[i] == vf[i]);
    }
    free(vc);
    free(vf);
    pn_params *z = pn_load_params(tmp_path("np.npz"));
    CHECK_OK(z);
    if (z) {
        CHECK(pn_params_count(z) == 3);
        pn_array *y = pn_params_get(z, "y");
        CHECK(y && y->dtype == PN_INT64 && pn_size(y) == 5);
        CHECK(pn_params_get(z, "b") && pn_params_get(z, "b")->dtype == PN_BOOL);
        CHECK(pn_params_get(z, "x") && pn_params_get(z, "x")->ndim == 3);
    }
    pn_params_free(z);
    /* and numpy reads what Ponte writes */
    pn_params *p = pn_params_new();
    pn_params_set(p, "w", test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -1, 1));
    CHECK(pn_save_params(tmp_path("ours.npz"), p) == 0);
    pn_params_free(p);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; d=np.load('%s/ours.npz'); "
             "assert d['w'].shape==(3,2) and d['w'].dtype==np.float32\"", tmpdir);
    CHECK(system(cmd) == 0);
    pn_scope_pop();
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static void write_all(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* Loads a damaged file: it either fails with PN_ERR_IO or returns a valid tree. */
static void load_damaged(const char *path, int *failures)
{
    pn_clear_error();
    pn_params *q = pn_load_params(path);
    if (!q) {
        if (pn_last_error() != PN_ERR_IO)
            test_fail(__FILE__, __LINE__, "damaged file: error kind %d (%s)", (int)pn_last_error(),
                      pn_last_error_message());
        (*failures)++;
    }
    pn_params_free(q);
    pn_clear_error();
}

static void hostile(const char *ext)
{
    pn_params *p = random_tree();
    char name[64];
    snprintf(name, sizeof name, "h%s", ext);
    const char *good = tmp_path(name);
    char goodpath[512];
    snprintf(goodpath, sizeof goodpath, "%s", good);
    CHECK(pn_save_params(goodpath, p) == 0);
    pn_params_free(p);
    size_t n;
    unsigned char *img = read_all(goodpath, &n);
    CHECK(img != NULL);
    if (!img) return;
    snprintf(name, sizeof name, "bad%s", ext);
    char badpath[512];
    snprintf(badpath, sizeof badpath, "%s", tmp_path(name));
    int failures = 0, tries = 0;
    size_t step = test_quick() ? 7 : 1;
    for (size_t k = 0; k < n; k += step, tries++) { /* every truncation */
        write_all(badpath, img, k);
        load_damaged(badpath, &failures);
    }
    CHECK_MSG(failures == tries, "%d of %d truncated files loaded", tries - failures, tries);
    unsigned char *mut = malloc(n);
    int rounds = test_quick() ? 100 : 600;
    for (int r = 0; r < rounds; r++) { /* random corruption: never a crash */
        memcpy(mut, img, n);
        int flips = 1 + (int)(test_rand_u64() % 8);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(test_rand_u64() % (n < 200 ? n : 200 + (test_rand_u64() % 2) * (n - 200)));
            mut[at] = (unsigned char)test_rand_u64();
        }
        write_all(badpath, mut, n);
        load_damaged(badpath, &failures);
    }
    free(mut);
    free(img);
}

TEST(hostile_safetensors) { hostile(".safetensors"); }
TEST(hostile_npz) { hostile(".npz"); }

TEST(lying_headers)
{
    /* a safetensors header size far beyond the file */
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    write_all(tmp_path("big.safetensors"), big, sizeof big);
    int f = 0;
    load_damaged(tmp_path("big.safetensors"), &f);
    CHECK(f == 1);
    /* offsets that overlap the end, a shape that overflows */
    const char *hdrs[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4000000000]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]",
        "[[[[[[[[[[",
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        size_t hl = strlen(hdrs[i]);
        unsigned char buf[512] = {0};
        for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)hl >> (8 * b));
        memcpy(buf + 8, hdrs[i], hl);
        write_all(tmp_path("lie.safetensors"), buf, 8 + hl + 8);
        int fails = 0;
        load_damaged(tmp_path("lie.safetensors"), &fails);
        CHECK_MSG(fails == 1, "header %zu was accepted", i);
    }
    CHECK_ERR((pn_array *)pn_load_params(tmp_path("does-not-exist.safetensors")), PN_ERR_IO);
    CHECK_ERR((pn_array *)pn_load_params(tmp_path("x.txt")), PN_ERR_INVALID_ARGUMENT);
}
