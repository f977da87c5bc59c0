/* test_io.c — .safetensors, .npz and .npy: bit-exact round trips in every dtype, files written
 * by numpy, and hostile files (every truncation, random corruption, lying headers) that must
 * give PN_ERR_IO and never crash or leak. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

#include "core/core.h"

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
    CHECK(pn_save_params(test_tmp_path("a.safetensors"), p) == 0);
    pn_params *q = pn_load_params(test_tmp_path("a.safetensors"));
    CHECK_OK(q);
    if (q) check_same_tree(p, q, false);
    pn_params_free(q);
    pn_params_free(p);
}

TEST(npz_roundtrip)
{
    pn_params *p = random_tree();
    CHECK(pn_save_params(test_tmp_path("a.npz"), p) == 0);
    pn_params *q = pn_load_params(test_tmp_path("a.npz"));
    CHECK_OK(q);
    if (q) check_same_tree(p, q, true);
    pn_params_free(q);
    pn_params_free(p);
}

/* random_tree plus arrays that deflate well (small repeating integers, a float ramp), so that
 * savez_compressed really deflates members rather than storing them. */
static pn_params *compressible_tree(void)
{
    pn_params *p = random_tree();
    pn_scope_push();
    pn_params_set(p, "repeat", pn_remainder(pn_arange(0, 5000, 1, PN_INT32), pn_scalar(7, PN_INT32)));
    pn_params_set(p, "ramp", pn_divide(pn_arange(0, 3000, 1, PN_FLOAT32), pn_scalar(64, PN_FLOAT32)));
    pn_scope_pop();
    return p;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

TEST(npz_compressed_roundtrip)
{
    pn_params *p = compressible_tree();
    char stored[512];
    snprintf(stored, sizeof stored, "%s", test_tmp_path("s.npz"));
    CHECK(pn_save_params(stored, p) == 0);
    CHECK(pn_savez_compressed(test_tmp_path("c.npz"), p) == 0);
    long ns = file_size(stored), nc = file_size(test_tmp_path("c.npz"));
    CHECK_MSG(nc > 0 && nc < ns / 2, "compressed %ld bytes, stored %ld", nc, ns);
    pn_params *q = pn_load_params(test_tmp_path("c.npz"));
    CHECK_OK(q);
    if (q) check_same_tree(p, q, true);
    pn_params_free(q);
    pn_clear_error();
    CHECK(pn_savez_compressed(test_tmp_path("c.safetensors"), p) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_params_free(p);
}

/* A deflated member bigger than the memory limit allows: an out-of-memory error naming the
 * member, nothing leaked; the same file loads once the limit is lifted. */
TEST(npz_compressed_member_over_memory_limit)
{
    pn_params *p = pn_params_new();
    pn_scope_push();
    pn_array *big = pn_remainder(pn_arange(0, 1 << 22, 1, PN_INT32), pn_scalar(7, PN_INT32)); /* 16 MiB */
    pn_params_set(p, "big", big);
    pn_scope_pop();
    CHECK(pn_savez_compressed(test_tmp_path("big.npz"), p) == 0);
    CHECK(file_size(test_tmp_path("big.npz")) < (1 << 20));
    pn_params_free(p); /* nothing of the tree left in memory while the limit holds */
    pn_clear_cache();
    size_t old = pn_set_memory_limit(pn_get_active_memory() + (8 << 20));
    pn_clear_error();
    pn_params *q = pn_load_params(test_tmp_path("big.npz"));
    CHECK(q == NULL && pn_last_error() == PN_ERR_OUT_OF_MEMORY);
    CHECK_MSG(strstr(pn_last_error_message(), "inflating member 'big'"), "%s", pn_last_error_message());
    pn_clear_error();
    pn_set_memory_limit(old);
    q = pn_load_params(test_tmp_path("big.npz"));
    CHECK_OK(q);
    pn_array *got = q ? pn_params_get(q, "big") : NULL;
    CHECK_OK(got);
    pn_scope_push();
    pn_array *want = pn_remainder(pn_arange(0, 1 << 22, 1, PN_INT32), pn_scalar(7, PN_INT32));
    if (got) CHECK(pn_item_int(pn_array_equal(got, want, false)) == 1);
    pn_scope_pop();
    pn_params_free(q);
}

TEST(npy_roundtrip_and_strided)
{
    pn_scope_push();
    pn_array *a = test_random_array((int64_t[]){3, 4}, 2, PN_FLOAT64, -1, 1);
    CHECK(pn_save_npy(test_tmp_path("a.npy"), a) == 0);
    pn_array *b = pn_load_npy(test_tmp_path("a.npy"));
    CHECK_OK(b);
    if (b) CHECK(memcmp(pn_data(a), pn_data(b), pn_nbytes(a)) == 0);
    /* a transposed view is written in its logical order */
    pn_array *t = pn_transpose(a, NULL, 0);
    CHECK(pn_save_npy(test_tmp_path("t.npy"), t) == 0);
    pn_array *c = pn_load_npy(test_tmp_path("t.npy"));
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
    char cmd[2048], dir[512];
    snprintf(dir, sizeof dir, "%s", test_tmp_path("")); /* the folder, with its slash */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; "
             "a=np.arange(24,dtype=np.float32).reshape(2,3,4)/7; "
             "np.save('%snp_c.npy', a); np.save('%snp_f.npy', np.asfortranarray(a)); "
             "np.savez('%snp.npz', x=a, y=np.arange(5,dtype=np.int64), b=np.array([True,False]))\"",
             dir, dir, dir);
    CHECK(system(cmd) == 0);
    pn_scope_push();
    pn_array *c = pn_load_npy(test_tmp_path("np_c.npy")), *f = pn_load_npy(test_tmp_path("np_f.npy"));
    CHECK_OK(c);
    CHECK_OK(f);
    double *vc = test_to_f64(c), *vf = test_to_f64(f);
    for (int i = 0; vc && vf && i < 24; i++) {
        CHECK(fabs(vc[i] - (float)(i / 7.0)) < 1e-6);
        CHECK(vc[i] == vf[i]);
    }
    free(vc);
    free(vf);
    pn_params *z = pn_load_params(test_tmp_path("np.npz"));
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
    CHECK(pn_save_params(test_tmp_path("ours.npz"), p) == 0);
    pn_params_free(p);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; d=np.load('%sours.npz'); "
             "assert d['w'].shape==(3,2) and d['w'].dtype==np.float32\"", dir);
    CHECK(system(cmd) == 0);
    /* numpy.savez_compressed's files, and numpy reading Ponte's deflated members */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; "
             "np.savez_compressed('%snpc.npz', x=np.arange(3000,dtype=np.float64)%%11, "
             "y=np.linspace(-1,1,77,dtype=np.float32))\"", dir);
    CHECK(system(cmd) == 0);
    pn_params *zc = pn_load_params(test_tmp_path("npc.npz"));
    CHECK_OK(zc);
    if (zc) {
        double *vx = test_to_f64(pn_params_get(zc, "x")), *vy = test_to_f64(pn_params_get(zc, "y"));
        for (int i = 0; vx && i < 3000; i++) CHECK(vx[i] == (double)(i % 11));
        for (int i = 0; vy && i < 77; i++) CHECK(fabs(vy[i] - (-1 + 2.0 * i / 76)) < 1e-6);
        free(vx);
        free(vy);
    }
    pn_params_free(zc);
    pn_params *pc = compressible_tree();
    CHECK(pn_savez_compressed(test_tmp_path("oursc.npz"), pc) == 0);
    pn_params_free(pc);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np, zipfile; d=np.load('%soursc.npz'); "
             "assert (d['repeat'] == np.arange(5000) %% 7).all() and (d['ramp'] == np.arange(3000,dtype=np.float32)/64).all(); "
             "assert zipfile.ZipFile('%soursc.npz').getinfo('repeat.npy').compress_type == zipfile.ZIP_DEFLATED\"",
             dir, dir);
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

static void hostile(const char *ext, bool compressed)
{
    pn_params *p = compressed ? compressible_tree() : random_tree();
    char name[64];
    snprintf(name, sizeof name, "h%s%s", compressed ? "c" : "", ext);
    const char *good = test_tmp_path(name);
    char goodpath[512];
    snprintf(goodpath, sizeof goodpath, "%s", good);
    CHECK((compressed ? pn_savez_compressed(goodpath, p) : pn_save_params(goodpath, p)) == 0);
    pn_params_free(p);
    size_t n;
    unsigned char *img = read_all(goodpath, &n);
    CHECK(img != NULL);
    if (!img) return;
    snprintf(name, sizeof name, "bad%s", ext);
    char badpath[512];
    snprintf(badpath, sizeof badpath, "%s", test_tmp_path(name));
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

TEST(hostile_safetensors) { hostile(".safetensors", false); }
TEST(hostile_npz) { hostile(".npz", false); }
TEST(hostile_npz_compressed) { hostile(".npz", true); }

TEST(lying_headers)
{
    /* a safetensors header size far beyond the file */
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    write_all(test_tmp_path("big.safetensors"), big, sizeof big);
    int f = 0;
    load_damaged(test_tmp_path("big.safetensors"), &f);
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
        write_all(test_tmp_path("lie.safetensors"), buf, 8 + hl + 8);
        int fails = 0;
        load_damaged(test_tmp_path("lie.safetensors"), &fails);
        CHECK_MSG(fails == 1, "header %zu was accepted", i);
    }
    CHECK_ERR((pn_array *)pn_load_params(test_tmp_path("does-not-exist.safetensors")), PN_ERR_IO);
    CHECK_ERR((pn_array *)pn_load_params(test_tmp_path("x.txt")), PN_ERR_INVALID_ARGUMENT);
}

/* ───────────────────────────── GGUF ───────────────────────────── */

/* The loader's verdict on a damaged .gguf: PN_ERR_IO or a valid tree. */
static void load_damaged_gguf(const char *path, int *failures)
{
    pn_clear_error();
    pn_gguf_meta *m = NULL;
    pn_params *q = pn_load_gguf(path, &m);
    if (!q) {
        if (pn_last_error() != PN_ERR_IO)
            test_fail(__FILE__, __LINE__, "damaged gguf: error kind %d (%s)", (int)pn_last_error(),
                      pn_last_error_message());
        CHECK(m == NULL);
        (*failures)++;
    }
    pn_params_free(q);
    pn_gguf_meta_free(m);
    pn_clear_error();
}

/* Tensors in every GGUF dtype (the last one 32 bytes, so the file has no trailing padding). */
static pn_params *gguf_tree(void)
{
    static const pn_dtype dts[] = {PN_FLOAT16, PN_BFLOAT16, PN_INT8, PN_INT16,
                                   PN_INT32,   PN_INT64,    PN_FLOAT64};
    pn_params *p = pn_params_new();
    pn_scope_push();
    for (int i = 0; i < 7; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s", i, pn_dtype_name(dts[i]));
        pn_params_set(p, name, test_random_array((int64_t[]){2, 1 + i % 3, 3}, 1 + i % 3, dts[i], -100, 100));
    }
    pn_params_set(p, "scalar", pn_scalar(3.25, PN_FLOAT32));
    pn_params_set(p, "empty", pn_zeros((int64_t[]){0, 4}, 2, PN_FLOAT32));
    pn_params_set(p, "last", test_random_array((int64_t[]){2, 4}, 2, PN_FLOAT32, -1, 1));
    pn_scope_pop();
    return p;
}

TEST(gguf_roundtrip_and_metadata)
{
    pn_scope_push();
    pn_params *p = gguf_tree();
    pn_gguf_meta *m = pn_gguf_meta_new();
    static const pn_dtype mdts[] = {PN_UINT8, PN_INT8, PN_UINT16, PN_INT16, PN_UINT32, PN_INT32,
                                    PN_FLOAT32, PN_BOOL, PN_UINT64, PN_INT64, PN_FLOAT64};
    for (int i = 0; i < 11; i++) {
        char key[32];
        snprintf(key, sizeof key, "s.%s", pn_dtype_name(mdts[i]));
        CHECK(pn_gguf_meta_set_array(m, key, test_random_array(NULL, 0, mdts[i], 0, 100)) == 0);
        snprintf(key, sizeof key, "v.%s", pn_dtype_name(mdts[i]));
        CHECK(pn_gguf_meta_set_array(m, key, test_random_array((int64_t[]){3 + i}, 1, mdts[i], 0, 100)) == 0);
    }
    const char *words[3] = {"llama", "", "ünïcode"};
    CHECK(pn_gguf_meta_set_strings(m, "general.name", words, 1, false) == 0);
    CHECK(pn_gguf_meta_set_strings(m, "tokens", words, 3, true) == 0);
    CHECK(pn_gguf_meta_set_strings(m, "none", words, 0, true) == 0);
    const char *path = test_tmp_path("t.gguf");
    CHECK(pn_save_gguf(path, p, m) == 0);
    pn_gguf_meta *m2 = NULL;
    pn_params *q = pn_load_gguf(path, &m2);
    CHECK_OK((pn_array *)q);
    if (q) check_same_tree(p, q, false);
    CHECK(q && !strcmp(pn_params_name(q, 0), pn_params_name(p, 0))); /* file order */
    CHECK(pn_gguf_meta_count(m2) == pn_gguf_meta_count(m));
    for (int i = 0; m2 && i < pn_gguf_meta_count(m); i++) {
        CHECK(!strcmp(pn_gguf_meta_key(m, i), pn_gguf_meta_key(m2, i)));
        pn_array *a = pn_gguf_meta_array(m, i), *b = pn_gguf_meta_array(m2, i);
        if (a) {
            CHECK(b && pn_array_dtype(b) == pn_array_dtype(a) && pn_ndim(b) == pn_ndim(a));
            CHECK(b && pn_size(b) == pn_size(a) && !memcmp(pn_data(a), pn_data(b), pn_nbytes(a)));
            continue;
        }
        const char *const *s1, *const *s2;
        bool l1, l2;
        int64_t n1 = pn_gguf_meta_strings(m, i, &s1, &l1), n2 = pn_gguf_meta_strings(m2, i, &s2, &l2);
        CHECK(n1 == n2 && l1 == l2);
        for (int64_t j = 0; n1 == n2 && j < n1; j++) CHECK(!strcmp(s1[j], s2[j]));
    }
    CHECK(pn_gguf_meta_strings(m2, 0, NULL, NULL) == -1); /* an array entry */
    /* without metadata; replacing a key keeps one entry */
    pn_params_free(q);
    q = pn_load_gguf(path, NULL);
    CHECK(q && pn_params_count(q) == pn_params_count(p));
    int before = pn_gguf_meta_count(m);
    CHECK(pn_gguf_meta_set_strings(m, "general.name", words + 2, 1, false) == 0);
    CHECK(pn_gguf_meta_count(m) == before);
    /* what cannot be saved */
    pn_params *bad = pn_params_new();
    pn_params_set(bad, "u", pn_zeros((int64_t[]){2}, 1, PN_UINT8));
    CHECK(pn_save_gguf(test_tmp_path("u.gguf"), bad, NULL) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_gguf_meta *bm = pn_gguf_meta_new();
    pn_gguf_meta_set_array(bm, "m", pn_zeros((int64_t[]){2, 2}, 2, PN_INT32));
    CHECK(pn_save_gguf(test_tmp_path("m.gguf"), p, bm) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_gguf_meta_set_array(bm, "m", pn_zeros((int64_t[]){2}, 1, PN_FLOAT16));
    CHECK(pn_save_gguf(test_tmp_path("m.gguf"), p, bm) == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(pn_gguf_meta_set_strings(bm, "x", words, 2, false) == -1);
    pn_clear_error();
    CHECK_ERR((pn_array *)pn_load_gguf(test_tmp_path("missing.gguf"), NULL), PN_ERR_IO);
    pn_gguf_meta_free(bm);
    pn_params_free(bad);
    pn_params_free(q);
    pn_params_free(p);
    pn_gguf_meta_free(m);
    pn_gguf_meta_free(m2);
    pn_scope_pop();
}

TEST(hostile_gguf)
{
    pn_scope_push();
    pn_params *p = gguf_tree();
    pn_gguf_meta *m = pn_gguf_meta_new();
    const char *words[2] = {"a", "bc"};
    pn_gguf_meta_set_strings(m, "tokens", words, 2, true);
    pn_gguf_meta_set_array(m, "n", pn_scalar_int(7, PN_UINT32));
    pn_gguf_meta_set_array(m, "v", test_random_array((int64_t[]){5}, 1, PN_FLOAT32, 0, 1));
    char goodpath[512], badpath[512];
    snprintf(goodpath, sizeof goodpath, "%s", test_tmp_path("h.gguf"));
    snprintf(badpath, sizeof badpath, "%s", test_tmp_path("bad.gguf"));
    CHECK(pn_save_gguf(goodpath, p, m) == 0);
    size_t n;
    unsigned char *img = read_all(goodpath, &n);
    CHECK(img != NULL);
    int failures = 0, tries = 0;
    for (size_t k = 0; img && k < n; k += test_quick() ? 5 : 1, tries++) { /* every truncation */
        write_all(badpath, img, k);
        load_damaged_gguf(badpath, &failures);
    }
    CHECK_MSG(failures == tries, "%d of %d truncated gguf files loaded", tries - failures, tries);
    unsigned char *mut = img ? malloc(n) : NULL;
    for (int r = 0; mut && r < (test_quick() ? 100 : 300); r++) { /* random corruption */
        memcpy(mut, img, n);
        int flips = 1 + (int)(test_rand_u64() % 8);
        for (int f = 0; f < flips; f++) mut[test_rand_u64() % n] = (unsigned char)test_rand_u64();
        write_all(badpath, mut, n);
        load_damaged_gguf(badpath, &failures);
    }
    free(mut);
    free(img);
    /* one tensor "t" (8,) f32, no metadata: counts at 8 and 16, the name's length at 24, the
     * rank at 33, the extent at 37, the type at 45, the offset at 49, data at 64 */
    pn_params *one = pn_params_new();
    pn_params_set(one, "t", test_random_array((int64_t[]){8}, 1, PN_FLOAT32, -1, 1));
    CHECK(pn_save_gguf(goodpath, one, NULL) == 0);
    img = read_all(goodpath, &n);
    CHECK(img && n == 96);
    const struct {
        size_t at;
        int width;
        uint64_t value;
        const char *why;
    } lies[] = {
        {0, 1, 'X', "bad magic"},
        {4, 4, 1, "version 1"},
        {8, 8, UINT64_MAX, "tensor count"},
        {16, 8, 1ull << 60, "metadata count"},
        {24, 8, UINT64_MAX - 3, "name length"},
        {33, 4, 1000, "rank"},
        {37, 8, 1ull << 62, "extent"},
        {37, 8, 9, "extent past the data"},
        {45, 4, 2, "Q4_0"},
        {45, 4, 99, "unknown type"},
        {49, 8, 8, "offset past the data"},
        {49, 8, UINT64_MAX - 7, "offset wrapping"},
    };
    for (size_t i = 0; img && n == 96 && i < sizeof lies / sizeof lies[0]; i++) {
        unsigned char buf[96];
        memcpy(buf, img, n);
        memcpy(buf + lies[i].at, &lies[i].value, (size_t)lies[i].width);
        write_all(badpath, buf, n);
        int fails = 0;
        load_damaged_gguf(badpath, &fails);
        CHECK_MSG(fails == 1, "gguf lie %zu (%s) was accepted", i, lies[i].why);
        if (lies[i].at == 45 && lies[i].value == 2) {
            pn_clear_error();
            pn_params *q = pn_load_gguf(badpath, NULL);
            CHECK(!q && strstr(pn_last_error_message(), "Q4_0") != NULL);
            pn_params_free(q);
            pn_clear_error();
        }
    }
    free(img);
    pn_params_free(one);
    pn_params_free(p);
    pn_gguf_meta_free(m);
    pn_scope_pop();
}

/* ───────────────────────────── writers and images in memory ───────────────────────────── */

typedef struct {
    unsigned char *b;
    size_t n, cap, limit; /* limit: the writer fails past it */
} membuf;

static int mem_write(void *ctx, const void *data, size_t n)
{
    membuf *m = ctx;
    if (m->n + n > m->limit) return pn_set_error(PN_ERR_IO, "[test] the sink is full");
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->b = realloc(m->b, m->cap);
    }
    memcpy(m->b + m->n, data, n);
    m->n += n;
    return 0;
}

/* Every format through a writer: the bytes of the path saver; pn_load_from reads them back,
 * refuses each truncation with PN_ERR_IO; a failing writer fails the save with its error. */
TEST(writer_and_memory_images)
{
    pn_params *p = random_tree(), *g = gguf_tree(), *one = pn_params_new();
    pn_params_set(one, "", pn_params_at(p, 3));
    const struct {
        pn_file_format f;
        const char *file;
        pn_params *tree;
        bool bf16_as_f32;
    } cases[] = {
        {PN_FORMAT_NPY, "w.npy", one, false},
        {PN_FORMAT_NPZ, "w.npz", p, true},
        {PN_FORMAT_NPZ_COMPRESSED, "wc.npz", p, true},
        {PN_FORMAT_SAFETENSORS, "w.safetensors", p, false},
        {PN_FORMAT_GGUF, "w.gguf", g, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *path = test_tmp_path(cases[c].file);
        pn_params *t = cases[c].tree;
        int rc = cases[c].f == PN_FORMAT_NPY ? pn_save_npy(path, pn_params_at(t, 0))
                 : cases[c].f == PN_FORMAT_NPZ_COMPRESSED ? pn_savez_compressed(path, t)
                 : cases[c].f == PN_FORMAT_GGUF ? pn_save_gguf(path, t, NULL)
                                                : pn_save_params(path, t);
        CHECK_MSG(rc == 0, "%s: %s", cases[c].file, pn_last_error_message());
        membuf m = {.limit = (size_t)-1};
        CHECK(pn_save_to(&(pn_writer){mem_write, &m}, cases[c].f, t, NULL) == 0);
        size_t fn = 0;
        unsigned char *fb = read_all(path, &fn);
        CHECK_MSG(fb && fn == m.n && memcmp(fb, m.b, fn) == 0, "%s: writer bytes differ from the file", cases[c].file);
        free(fb);
        pn_params *q = pn_load_from(m.b, m.n, cases[c].f, "mem", NULL);
        CHECK_OK(q);
        if (q) check_same_tree(t, q, cases[c].bf16_as_f32);
        pn_params_free(q);
        for (size_t cut = 0; cut < m.n; cut += 1 + m.n / 7) {
            pn_params *d = pn_load_from(m.b, cut, cases[c].f, "mem", NULL);
            CHECK_MSG(d == NULL && pn_last_error() == PN_ERR_IO, "%s cut at %zu", cases[c].file, cut);
            pn_params_free(d);
            pn_clear_error();
        }
        membuf full = {.limit = m.n / 2};
        CHECK(pn_save_to(&(pn_writer){mem_write, &full}, cases[c].f, t, NULL) == -1);
        CHECK(pn_last_error() == PN_ERR_IO && strstr(pn_last_error_message(), "sink is full"));
        pn_clear_error();
        free(full.b);
        free(m.b);
    }
    CHECK(pn_save_to(&(pn_writer){mem_write, NULL}, PN_FORMAT_NPY, p, NULL) == -1); /* npy: one array */
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_params_free(one);
    pn_params_free(g);
    pn_params_free(p);
}
