/* test_gguf_quant.c — quantized GGUF tensors (src/io/gguf.c): hand-built files holding Q4_0,
 * Q4_1 and Q8_0 blocks load as MLX's affine format (packed uint32 values, float16 scales and
 * biases per 32, 4 or 8 bits) and their dequantized values match a float64 decoder of the
 * blocks; every truncation, rows that are not whole blocks, huge extents and undecoded types
 * (Q4_K) fail with PN_ERR_IO. */
#include "harness.h"

#include <math.h>
#include <string.h>

/* The float16 bits of x, a normal float16 value (exact). */
static uint16_t f16_bits(double x)
{
    int e;
    double m = frexp(fabs(x), &e); /* x = m 2^e, m in [.5, 1) */
    uint16_t mant = (uint16_t)((m * 2 - 1) * 1024);
    return (uint16_t)((x < 0 ? 0x8000 : 0) | (uint16_t)(e - 1 + 15) << 10 | mant);
}

typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t k)
{
    if (k == 0) return; /* memcpy from or to NULL is undefined even for 0 bytes */
    if (o->n + k > o->cap) {
        o->cap = (o->n + k) * 2;
        o->b = realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, k);
    o->n += k;
}
static void put_u32(buf *o, uint32_t v)
{
    put(o, &v, 4);
}
static void put_u64(buf *o, uint64_t v)
{
    put(o, &v, 8);
}

/* A GGUF v3 image with one tensor: name "t", extents dims (fastest first), ggml type, data. */
static buf gguf_image(const uint64_t *dims, int nd, uint32_t type, const buf *data)
{
    buf o = {0};
    put(&o, "GGUF", 4);
    put_u32(&o, 3), put_u64(&o, 1), put_u64(&o, 0);
    put_u64(&o, 1), put(&o, "t", 1), put_u32(&o, (uint32_t)nd);
    for (int i = 0; i < nd; i++)
        put_u64(&o, dims[i]);
    put_u32(&o, type), put_u64(&o, 0);
    while (o.n % 32)
        put(&o, "", 1);
    put(&o, data->b, data->n);
    return o;
}

static void write_file(const char *path, const buf *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fwrite(b->b, 1, n, f);
    fclose(f);
}

/* nblocks random blocks of a type (2: Q4_0, 3: Q4_1, 8: Q8_0) into data; their values into
 * vals (32 per block). */
static void make_blocks(uint32_t type, int64_t nblocks, buf *data, double *vals)
{
    for (int64_t b = 0; b < nblocks; b++) {
        double d = (double)(int)test_uniform(-128, 128) / 64,
               m = (double)(int)test_uniform(-64, 64) / 32;
        if (d == 0)
            d = 0.5;
        if (m == 0)
            m = -0.25;
        uint16_t db = f16_bits(d), mb = f16_bits(m);
        put(data, &db, 2);
        if (type == 8) {
            for (int i = 0; i < 32; i++) {
                int8_t q = (int8_t)(int)test_uniform(-128, 128);
                put(data, &q, 1);
                vals[b * 32 + i] = d * q;
            }
            continue;
        }
        if (type == 3)
            put(data, &mb, 2);
        int q[32];
        for (int i = 0; i < 32; i++)
            q[i] = (int)test_uniform(0, 16) & 15;
        for (int i = 0; i < 16; i++) {
            unsigned char byte = (unsigned char)(q[i] | q[i + 16] << 4);
            put(data, &byte, 1);
        }
        for (int i = 0; i < 32; i++)
            vals[b * 32 + i] = type == 3 ? d * q[i] + m : d * (q[i] - 8);
    }
}

TEST(gguf_quantized_blocks_decode)
{
    pn_scope_push();
    const uint32_t types[3] = {2, 3, 8};
    const uint64_t shapes[3][3] = {{64, 3, 0}, {32, 0, 0}, {32, 2, 2}};
    const int nds[3] = {2, 1, 3};
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 3; s++) {
            int nd = nds[s];
            int64_t count = 1, shape[3];
            for (int i = 0; i < nd; i++)
                count *= (int64_t)shapes[s][i], shape[nd - 1 - i] = (int64_t)shapes[s][i];
            buf data = {0};
            double *vals = malloc(sizeof(double) * (size_t)count);
            make_blocks(types[t], count / 32, &data, vals);
            buf img = gguf_image(shapes[s], nd, types[t], &data);
            const char *path = test_tmp_path("q.gguf");
            write_file(path, &img, img.n);
            pn_params *p = pn_load_gguf(path, NULL);
            CHECK_MSG(p != NULL, "type %u: %s", types[t], pn_last_error_message());
            pn_array *w = p ? pn_params_get(p, "t") : NULL,
                     *sc = p ? pn_params_get(p, "t.scales") : NULL,
                     *bi = p ? pn_params_get(p, "t.biases") : NULL;
            CHECK(w && sc && bi && pn_params_count(p) == 3);
            int bits = types[t] == 8 ? 8 : 4;
            if (w && sc && bi) {
                CHECK(pn_array_dtype(w) == PN_UINT32 && pn_array_dtype(sc) == PN_FLOAT16 &&
                      pn_array_dtype(bi) == PN_FLOAT16 && pn_ndim(w) == nd);
                CHECK(pn_shape(w)[nd - 1] == shape[nd - 1] * bits / 32 &&
                      pn_shape(sc)[nd - 1] == shape[nd - 1] / 32 &&
                      pn_shape(bi)[nd - 1] == shape[nd - 1] / 32);
                /* decode in float64: value i of a row is bits [i bits, (i + 1) bits) */
                double *wv = test_to_f64(w), *sv = test_to_f64(sc), *bv = test_to_f64(bi);
                int64_t wpr = shape[nd - 1] * bits / 32, rows = count / shape[nd - 1];
                int bad = 0;
                for (int64_t r = 0; wv && sv && bv && r < rows; r++)
                    for (int64_t i = 0; i < shape[nd - 1]; i++) {
                        uint32_t word = (uint32_t)wv[r * wpr + i * bits / 32];
                        int q = (int)(word >> (i * bits % 32)) & ((1 << bits) - 1);
                        int64_t g = r * (shape[nd - 1] / 32) + i / 32;
                        double v = sv[g] * q + bv[g];
                        bad += v != vals[r * shape[nd - 1] + i];
                    }
                CHECK_MSG(bad == 0, "type %u shape %d: %d values differ", types[t], s, bad);
                free(wv), free(sv), free(bv);
            }
            pn_params_free(p);
            /* every truncation fails cleanly */
            int accepted = 0;
            for (size_t cut = 0; cut < img.n; cut += test_quick() ? 13 : 1) {
                write_file(path, &img, cut);
                pn_clear_error();
                pn_params *q = pn_load_gguf(path, NULL);
                if (q || pn_last_error() != PN_ERR_IO)
                    accepted++;
                pn_params_free(q);
            }
            pn_clear_error();
            CHECK_MSG(accepted == 0, "type %u: %d truncations accepted", types[t], accepted);
            free(vals), free(data.b), free(img.b);
        }
    pn_scope_pop();
}

/* The load's error message for one tensor (NULL when it loaded). */
static const char *load_error(const uint64_t *dims, int nd, uint32_t type, size_t nbytes)
{
    buf data = {0};
    unsigned char z[64] = {0};
    while (data.n < nbytes)
        put(&data, z, nbytes - data.n < 64 ? nbytes - data.n : 64);
    if (!data.b)
        put(&data, z, 0);
    buf img = gguf_image(dims, nd, type, &data);
    const char *path = test_tmp_path("e.gguf");
    write_file(path, &img, img.n);
    free(data.b), free(img.b);
    pn_clear_error();
    pn_params *p = pn_load_gguf(path, NULL);
    if (p) {
        pn_params_free(p);
        return NULL;
    }
    CHECK(pn_last_error() == PN_ERR_IO);
    return pn_last_error_message();
}

TEST(gguf_quantized_refusals)
{
    pn_scope_push();
    const char *e = load_error((uint64_t[]){48}, 1, 2, 36);
    CHECK(e && strstr(e, "multiple of the block size"));
    e = load_error((uint64_t[]){256}, 1, 12, 144);
    CHECK(e && strstr(e, "Q4_K"));
    e = load_error((uint64_t[]){32}, 1, 6, 22);
    CHECK(e && strstr(e, "Q5_0"));
    e = load_error((uint64_t[]){1ull << 40, 1ull << 20}, 2, 8, 64);
    CHECK(e != NULL);
    e = load_error((uint64_t[]){1ull << 62, 1ull << 1}, 2, 8, 64);
    CHECK(e != NULL);
    e = load_error((uint64_t[]){64, 2}, 2, 3, 79); /* one byte short of 4 blocks */
    CHECK(e && strstr(e, "outside the file"));
    e = load_error(NULL, 0, 2, 18); /* a 0-d quantized tensor */
    CHECK(e != NULL);
    CHECK(load_error((uint64_t[]){32, 0}, 2, 2, 0) == NULL); /* empty: no blocks */
    pn_clear_error();
    pn_scope_pop();
}
