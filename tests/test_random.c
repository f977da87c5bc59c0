/* test_random.c — random numbers: threefry2x32 known answers (Random123), golden values
 * from MLX 0.32.4 (mlx.core.random on the CPU, same keys) for bits/split/uniform/normal/
 * randint/bernoulli/truncated_normal/gumbel/laplace/categorical/permutation, statistical
 * checks on large samples, determinism, dtypes and shapes, errors, and gradients. */
#include "harness.h"

#include <string.h>

#include "backend/cpu/random.h"
#include "core/core.h"

/* ───────────────────────────── golden values from MLX ───────────────────────────── */

/* mx.random.bits((n,), width, key=mx.random.key(seed)): {seed, width, n, values}. */
static const struct {
    uint64_t seed;
    int width, n;
    uint32_t v[13];
} g_bits[] = {
{0x0000000000000000ull, 4, 1, {1797259609u}},
{0x0000000000000000ull, 4, 2, {928981903u, 3453687069u}},
{0x0000000000000000ull, 4, 5, {2467461003u, 428148500u, 1688610540u, 3840466878u, 2562233961u}},
{0x0000000000000000ull, 4, 6, {2467461003u, 428148500u, 3186719485u, 3840466878u, 2562233961u, 1946702221u}},
{0x0000000000000000ull, 1, 1, {89u}},
{0x0000000000000000ull, 1, 2, {89u, 1u}},
{0x0000000000000000ull, 1, 3, {89u, 1u, 32u}},
{0x0000000000000000ull, 1, 4, {89u, 1u, 32u, 107u}},
{0x0000000000000000ull, 1, 5, {143u, 35u, 95u, 55u, 29u}},
{0x0000000000000000ull, 1, 7, {143u, 35u, 95u, 55u, 29u, 21u, 219u}},
{0x0000000000000000ull, 1, 9, {169u, 78u, 31u, 247u, 44u, 251u, 142u, 80u, 129u}},
{0x0000000000000000ull, 1, 13, {169u, 78u, 31u, 247u, 217u, 5u, 164u, 57u, 129u, 64u, 14u, 162u, 47u}},
{0x0000000000000000ull, 2, 1, {345u}},
{0x0000000000000000ull, 2, 3, {9103u, 14175u, 5405u}},
{0x0000000000000000ull, 2, 5, {20137u, 63263u, 64300u, 20622u, 16513u}},
{0x0000000000000000ull, 2, 6, {20137u, 63263u, 64300u, 20622u, 16513u, 41486u}},
{0x000000000000002aull, 4, 1, {1832780943u}},
{0x000000000000002aull, 4, 2, {64467757u, 2916123636u}},
{0x000000000000002aull, 4, 5, {3134548294u, 3733159049u, 843694964u, 894150801u, 801545058u}},
{0x000000000000002aull, 4, 6, {3134548294u, 3733159049u, 3746501087u, 894150801u, 801545058u, 2363201431u}},
{0x000000000000002aull, 1, 1, {143u}},
{0x000000000000002aull, 1, 2, {143u, 4u}},
{0x000000000000002aull, 1, 3, {143u, 4u, 62u}},
{0x000000000000002aull, 1, 4, {143u, 4u, 62u, 109u}},
{0x000000000000002aull, 1, 5, {45u, 179u, 215u, 3u, 244u}},
{0x000000000000002aull, 1, 7, {45u, 179u, 215u, 3u, 244u, 131u, 208u}},
{0x000000000000002aull, 1, 9, {234u, 32u, 251u, 146u, 111u, 248u, 163u, 25u, 19u}},
{0x000000000000002aull, 1, 13, {234u, 32u, 251u, 146u, 219u, 152u, 76u, 219u, 19u, 217u, 56u, 15u, 89u}},
{0x000000000000002aull, 2, 1, {1167u}},
{0x000000000000002aull, 2, 3, {45869u, 983u, 33780u}},
{0x000000000000002aull, 2, 5, {8426u, 37627u, 63599u, 6563u, 55571u}},
{0x000000000000002aull, 2, 6, {8426u, 37627u, 63599u, 6563u, 55571u, 3896u}},
{0xdeadbeef12345678ull, 4, 1, {3900269855u}},
{0xdeadbeef12345678ull, 4, 2, {1325154248u, 2230975748u}},
{0xdeadbeef12345678ull, 4, 5, {3559227592u, 2635550598u, 2917643186u, 2913848818u, 1758904657u}},
{0xdeadbeef12345678ull, 4, 6, {3559227592u, 2635550598u, 344448181u, 2913848818u, 1758904657u, 3529676533u}},
{0xdeadbeef12345678ull, 1, 1, {31u}},
{0xdeadbeef12345678ull, 1, 2, {31u, 101u}},
{0xdeadbeef12345678ull, 1, 3, {31u, 101u, 121u}},
{0xdeadbeef12345678ull, 1, 4, {31u, 101u, 121u, 232u}},
{0xdeadbeef12345678ull, 1, 5, {200u, 63u, 252u, 78u, 4u}},
{0xdeadbeef12345678ull, 1, 7, {200u, 63u, 252u, 78u, 4u, 253u, 249u}},
{0xdeadbeef12345678ull, 1, 9, {162u, 81u, 248u, 110u, 249u, 138u, 94u, 67u, 3u}},
{0xdeadbeef12345678ull, 1, 13, {162u, 81u, 248u, 110u, 140u, 37u, 104u, 221u, 3u, 180u, 133u, 23u, 95u}},
{0xdeadbeef12345678ull, 2, 1, {25887u}},
{0xdeadbeef12345678ull, 2, 3, {16328u, 20220u, 64772u}},
{0xdeadbeef12345678ull, 2, 5, {20898u, 28408u, 35577u, 17246u, 46083u}},
{0xdeadbeef12345678ull, 2, 6, {20898u, 28408u, 35577u, 17246u, 46083u, 6021u}}
};

/* mx.random.bits((3, 5), 1, key=mx.random.key(7)). */
static const uint32_t g_bits_2d[] = {169, 151, 152, 57, 93, 93, 247, 58, 3, 190, 31, 116, 203, 38, 24};

/* Float results are bit patterns (uint32 for float32, uint16 for float16/bfloat16) where the
 * result involves only exact ops; values (%.9g) where it passes a transcendental function. */
static const uint32_t g_key_big[] = {19088743u, 2309737967u};
static const uint32_t g_split0[] = {4146024105u, 967050713u, 2718843009u, 1272950319u};
static const uint32_t g_split42_3[] = {3134548294u, 3733159049u, 3746501087u, 894150801u, 801545058u, 2363201431u};
static const uint32_t g_split0_1[] = {928981903u, 3453687069u};
static const uint32_t g_uniform_f32[] = {1052096034u, 1058712779u, 1054534742u, 1047275160u, 1059876291u, 1054935795u, 1048609479u, 1049492229u, 1061457895u};
static const uint32_t g_uniform_f16[] = {13742u, 14549u, 14039u, 13153u, 14691u, 14088u, 13316u, 13424u, 14884u};
static const uint32_t g_uniform_bf16[] = {16054u, 16155u, 16091u, 15980u, 16172u, 16097u, 16001u, 16014u, 16197u};
static const uint32_t g_uniform_lohi[] = {1079525406u, 1082855982u, 1083424167u, 1048516560u, 1064231178u, 1080665266u};
static const uint32_t g_uniform_lohi_f16[] = {17090u, 17496u, 17566u, 13304u, 15223u, 17229u};
static const double g_normal_f32[] = {-0.372110724, 0.264231265, -0.182527527, -0.736819685, 0.449736804, -0.15214397, -0.671353161, -0.590864062, 0.731688976};
static const uint32_t g_normal_f32_bits[] = {3200157004u, 1049053522u, 3191531647u, 3208421431u, 1055278055u, 3189492641u, 3207323085u, 3205972702u, 1060851704u};
static const double g_normal_f16[] = {-0.372070312, 0.264160156, -0.182495117, -0.736816406, 0.449951172, -0.152099609, -0.670898438, -0.590820312, 0.731933594};
static const double g_normal_locscale[] = {2.7245307, 3.74517727, 3.77466464, -0.125464797, -0.280809402, 1.75246358};
static const uint32_t g_randint[] = {14u, 4294967293u, 9u, 10u, 2u, 11u, 9u, 4294967291u, 4u, 4294967294u, 0u, 8u};
static const uint32_t g_randint_u8[] = {165u, 30u, 77u, 249u, 24u, 69u, 182u, 138u, 51u, 90u, 74u, 70u};
static const uint32_t g_bernoulli[] = {0u, 1u, 0u, 0u, 0u, 0u, 0u, 1u, 0u, 1u, 1u, 0u};
static const uint32_t g_bernoulli_p[] = {0u, 0u, 1u, 0u, 1u, 1u};
static const uint32_t g_bernoulli_half[] = {1u};
static const double g_trunc[] = {-0.127736479, 0.394108295, 0.0217430759, -0.392251313, 0.553442001, 0.046282988, -0.347465843, -0.290658444, 0.796706438};
static const double g_trunc_arr[] = {0.222411841, 0.430043429, 1, -0.120081909, 0.235424072, 1.46031439};
static const double g_gumbel[] = {-0.0352750979, 0.68547374, 0.162985265, -0.383220494, 0.928380251, 0.195973381, -0.323756993, -0.248916253, 1.3310529};
static const double g_laplace[] = {0.342757344, -0.233696893, 0.156456456, 0.773854077, -0.426330864, 0.128886908, 0.689163983, 0.589487314, -0.767098665};
static const double g_laplace_ls[] = {-1.30775785, -1.67044592, -1.68246341, -0.561911225, -0.507244706, -1.05293119};
static const uint32_t g_cat[] = {3u, 0u, 3u};
static const uint32_t g_cat_ns[] = {3u, 2u, 2u, 1u, 1u, 3u, 2u, 0u, 0u, 3u, 0u, 0u, 0u, 0u, 1u, 3u, 1u, 2u, 2u, 2u, 3u};
static const uint32_t g_cat_shape[] = {3u, 0u, 1u, 3u, 2u, 3u};
static const uint32_t g_cat_axis0[] = {1u, 2u, 1u, 0u};
/* One distribution (MLX draws these by inverse cdf): logits log([.1 .2 .3 .4]). */
static const uint32_t g_cat1d_ns[] = {3, 1, 1, 2, 3, 0, 1, 2, 3, 3, 1, 3, 2, 1, 3, 3, 2, 3, 3, 1};
static const uint32_t g_cat1d_shape[] = {1, 2, 0, 3, 0, 3, 1, 3, 2, 0, 0, 3, 3, 3, 1};
static const uint32_t g_cat1d_scalar[] = {0};
static const uint32_t g_cat_col[] = {2};
static const uint32_t g_perm10[] = {3u, 6u, 7u, 4u, 0u, 2u, 5u, 1u, 9u, 8u};
static const uint32_t g_perm_x[] = {2u, 1u, 0u, 5u, 4u, 3u, 8u, 7u, 6u, 11u, 10u, 9u};
static const uint32_t g_perm_x0[] = {6u, 7u, 8u, 9u, 10u, 11u, 0u, 1u, 2u, 3u, 4u, 5u};
static const uint32_t g_seed3_a[] = {1061078628u, 1052959689u, 1064533819u, 1042582118u};
static const uint32_t g_seed3_b[] = {1049614963u, 1063323715u, 1056903426u, 1044018790u};
static const double g_mvn[] = {0.913583398, -3.75518751, 1.89771748, -0.116569519, 1.21428096, -2.1128056};
static const double g_cnormal[] = {0.339468747, 0.370681167, 0.385959834, 0.404484063, -1.07037759, 0.1536787};
static const double g_normal_bf16[] = {0.61328125, 1.125, -0.85546875, -0.8125, -0.890625};
static const uint32_t g_uniform_lohi_bf16[] = {16224u, 49088u, 48416u, 16414u, 16252u};

/* ───────────────────────────── helpers ───────────────────────────── */

static const int64_t S9[1] = {9};
static const int64_t S23[2] = {2, 3};

/* Raw elements of a (row-major) into a malloc'd buffer; NULL and a failure on error. */
static void *raw_of(pn_array *a)
{
    if (!a) {
        test_fail(__FILE__, __LINE__, "NULL array: %s", pn_last_error_message());
        return NULL;
    }
    size_t nb = pn_nbytes(a);
    void *buf = malloc(nb ? nb : 1);
    if (pn_to_host(a, buf, nb) != 0) {
        test_fail(__FILE__, __LINE__, "cannot read array: %s", pn_last_error_message());
        free(buf);
        return NULL;
    }
    return buf;
}

/* Whether a has dtype and n elements whose bit patterns (or integer values, widened to
 * uint32) equal ref. */
static int check_bits(const char *what, pn_array *a, pn_dtype dtype, const uint32_t *ref, int64_t n)
{
    if (!a) {
        test_fail(__FILE__, __LINE__, "%s: NULL: %s", what, pn_last_error_message());
        return 0;
    }
    if (pn_array_dtype(a) != dtype || pn_size(a) != n) {
        test_fail(__FILE__, __LINE__, "%s: dtype %s size %lld, expected %s size %lld", what,
                  pn_dtype_name(pn_array_dtype(a)), (long long)pn_size(a), pn_dtype_name(dtype),
                  (long long)n);
        return 0;
    }
    unsigned char *raw = raw_of(a);
    if (!raw) return 0;
    size_t es = pn_dtype_size(dtype);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        uint32_t v = 0;
        if (es == 1) v = raw[i];
        else if (es == 2) { uint16_t h; memcpy(&h, raw + 2 * i, 2); v = h; }
        else memcpy(&v, raw + 4 * i, 4);
        if (v != ref[i]) {
            test_fail(__FILE__, __LINE__, "%s: element %lld is %u (0x%x), MLX gives %u (0x%x)",
                      what, (long long)i, v, v, ref[i], ref[i]);
            ok = 0;
        }
    }
    free(raw);
    return ok;
}

/* Mean and (population) variance of a's elements as float64. */
static void moments(pn_array *a, double *mean, double *var)
{
    double *v = test_to_f64(a);
    *mean = *var = NAN;
    if (!v) return;
    int64_t n = pn_size(a);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    double m = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (v[i] - m) * (v[i] - m);
    *mean = m;
    *var = s2 / (double)n;
    free(v);
}

static int64_t big_n(void) { return test_quick() ? 20000 : 400000; }

/* ───────────────────────────── threefry and keys ───────────────────────────── */

TEST(threefry2x32_known_answers)
{
    /* Random123's kat_vectors for threefry2x32_20: counter, key -> output. */
    static const uint32_t kat[3][6] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6b200159, 0x99ba4efe},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x1cb996fc, 0xbb002be7},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xc4923a9c, 0x483df7a0},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[2];
        pnK_threefry2x32(kat[i][2], kat[i][3], kat[i][0], kat[i][1], out);
        CHECK_MSG(out[0] == kat[i][4] && out[1] == kat[i][5],
                  "KAT %d: got %08x %08x, expected %08x %08x", i, out[0], out[1], kat[i][4],
                  kat[i][5]);
    }
}

TEST(key_layout)
{
    pn_scope_push();
    const uint32_t zero[2] = {0, 0};
    pn_array *k = pn_random_key(0);
    CHECK_OK(k);
    CHECK(pn_ndim(k) == 1 && pn_shape(k)[0] == 2);
    check_bits("key(0)", k, PN_UINT32, zero, 2);
    check_bits("key(0x0123456789ABCDEF)", pn_random_key(0x0123456789ABCDEFull), PN_UINT32,
               g_key_big, 2);
    pn_scope_pop();
}

/* ───────────────────────────── bits and split ───────────────────────────── */

TEST(bits_match_mlx)
{
    pn_scope_push();
    for (size_t i = 0; i < sizeof g_bits / sizeof g_bits[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "bits(seed=%llx, width=%d, n=%d)",
                 (unsigned long long)g_bits[i].seed, g_bits[i].width, g_bits[i].n);
        int64_t n = g_bits[i].n;
        pn_array *b = pn_random_bits(&n, 1, g_bits[i].width, pn_random_key(g_bits[i].seed));
        pn_dtype dt = g_bits[i].width == 4 ? PN_UINT32 : g_bits[i].width == 2 ? PN_UINT16 : PN_UINT8;
        check_bits(what, b, dt, g_bits[i].v, n);
    }
    const int64_t s35[2] = {3, 5};
    pn_array *b = pn_random_bits(s35, 2, 1, pn_random_key(7));
    CHECK(b && pn_ndim(b) == 2 && pn_shape(b)[0] == 3 && pn_shape(b)[1] == 5);
    check_bits("bits((3,5), 1, key(7))", b, PN_UINT8, g_bits_2d, 15);
    pn_scope_pop();
}

TEST(bits_large_checksums_match_mlx)
{
    /* Weighted sums and shifted xors of bits((100001,), w, key(1)) computed with MLX: the
     * threaded fill must give the same stream as MLX's serial one. */
    static const struct { int w; uint64_t sum, x; } ref[3] = {
        {1, 636343613588ull, 395279641878ull},
        {2, 163640699460402ull, 107456692157670ull},
        {4, 10722166217302398942ull, 4866047624572376956ull},
    };
    pn_scope_push();
    for (int t = 0; t < 3; t++) {
        int64_t n = 100001;
        pn_array *b = pn_astype(pn_random_bits(&n, 1, ref[t].w, pn_random_key(1)), PN_UINT64);
        uint64_t *v = raw_of(b);
        if (!v) continue;
        uint64_t sum = 0, x = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += v[i] * (uint64_t)(i + 1);
            x ^= v[i] << (i % 32);
        }
        CHECK_MSG(sum == ref[t].sum && x == ref[t].x, "width %d: sum %llu xor %llu", ref[t].w,
                  (unsigned long long)sum, (unsigned long long)x);
        free(v);
    }
    pn_scope_pop();
}

TEST(bits_strided_key_and_shapes)
{
    pn_scope_push();
    /* a key that is a strided view (a column of split keys, transposed twice) draws the same */
    pn_array *keys = pn_random_split(pn_random_key(42), 3);
    int64_t start[2] = {0, 1}, stop[2] = {2, 2};
    pn_array *row = pn_reshape(pn_slice(pn_transpose(keys, NULL, 0), start, stop, NULL, 2),
                               (int64_t[]){2}, 1); /* key 1, read with stride 3 */
    const uint32_t *kv = pn_data(pn_random_split(pn_random_key(42), 3));
    CHECK_OK(row);
    if (kv) {
        pn_array *direct = pn_array_from_data(kv + 2, (int64_t[]){2}, 1, PN_UINT32);
        int64_t n = 7;
        uint32_t *a = raw_of(pn_random_bits(&n, 1, 4, row));
        uint32_t *b = raw_of(pn_random_bits(&n, 1, 4, direct));
        CHECK(a && b && memcmp(a, b, 7 * 4) == 0);
        free(a);
        free(b);
    }
    /* 0-d and empty shapes */
    pn_array *s = pn_random_bits(NULL, 0, 4, pn_random_key(0));
    CHECK(s && pn_ndim(s) == 0 && pn_size(s) == 1);
    const uint32_t first = 1797259609u; /* = threefry(key 0, counter 0).first */
    check_bits("bits(())", s, PN_UINT32, &first, 1);
    const int64_t e[2] = {0, 3};
    pn_array *emp = pn_random_bits(e, 2, 2, pn_random_key(0));
    CHECK(emp && pn_size(emp) == 0 && pn_array_dtype(emp) == PN_UINT16);
    CHECK(pn_eval(&emp, 1) == 0);
    pn_scope_pop();
}

TEST(split_matches_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    pn_array *s = pn_random_split(k0, 2);
    CHECK(s && pn_ndim(s) == 2 && pn_shape(s)[0] == 2 && pn_shape(s)[1] == 2);
    check_bits("split(key(0))", s, PN_UINT32, g_split0, 4);
    check_bits("split(key(42), 3)", pn_random_split(k42, 3), PN_UINT32, g_split42_3, 6);
    check_bits("split(key(0), 1)", pn_random_split(k0, 1), PN_UINT32, g_split0_1, 2);
    pn_array *none = pn_random_split(k0, 0);
    CHECK(none && pn_size(none) == 0);
    /* split keys are keys: each row draws differently */
    pn_array *rows[2];
    CHECK(pn_split_sections(s, 2, 0, rows) == 0);
    int64_t n = 16;
    uint32_t *a = raw_of(pn_random_bits(&n, 1, 4, pn_reshape(rows[0], (int64_t[]){2}, 1)));
    uint32_t *b = raw_of(pn_random_bits(&n, 1, 4, pn_reshape(rows[1], (int64_t[]){2}, 1)));
    CHECK(a && b && memcmp(a, b, 16 * 4) != 0);
    free(a);
    free(b);
    pn_scope_pop();
}

TEST(global_key_sequence_matches_mlx)
{
    pn_scope_push();
    pn_random_seed(3);
    pn_array *a = pn_random_uniform(pn_scalar(0, PN_FLOAT32), pn_scalar(1, PN_FLOAT32),
                                    (int64_t[]){4}, 1, PN_FLOAT32, NULL);
    pn_array *b = pn_random_uniform(pn_scalar(0, PN_FLOAT32), pn_scalar(1, PN_FLOAT32),
                                    (int64_t[]){4}, 1, PN_FLOAT32, NULL);
    check_bits("seed(3); uniform", a, PN_FLOAT32, g_seed3_a, 4);
    check_bits("seed(3); uniform; uniform", b, PN_FLOAT32, g_seed3_b, 4);
    /* reseeding restarts the sequence; successive draws differ */
    pn_random_seed(3);
    pn_array *c = pn_random_uniform(pn_scalar(0, PN_FLOAT32), pn_scalar(1, PN_FLOAT32),
                                    (int64_t[]){4}, 1, PN_FLOAT32, NULL);
    check_bits("reseeded", c, PN_FLOAT32, g_seed3_a, 4);
    int64_t n = 8;
    uint32_t *x = raw_of(pn_random_bits(&n, 1, 4, NULL));
    uint32_t *y = raw_of(pn_random_bits(&n, 1, 4, NULL));
    CHECK(x && y && memcmp(x, y, 32) != 0);
    free(x);
    free(y);
    pn_scope_pop();
}

/* ───────────────────────────── distributions vs MLX ───────────────────────────── */

TEST(uniform_matches_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    pn_array *zero = pn_scalar(0, PN_FLOAT32), *one = pn_scalar(1, PN_FLOAT32);
    check_bits("uniform f32", pn_random_uniform(zero, one, S9, 1, PN_FLOAT32, k0), PN_FLOAT32,
               g_uniform_f32, 9);
    check_bits("uniform f16", pn_random_uniform(zero, one, S9, 1, PN_FLOAT16, k0), PN_FLOAT16,
               g_uniform_f16, 9);
    check_bits("uniform bf16", pn_random_uniform(zero, one, S9, 1, PN_BFLOAT16, k0), PN_BFLOAT16,
               g_uniform_bf16, 9);
    const float lov[3] = {-1, 0, 2};
    pn_array *lo = pn_array_from_data(lov, (int64_t[]){3}, 1, PN_FLOAT32);
    check_bits("uniform(lo, 5, (2,3))", pn_random_uniform(lo, pn_weak_float(5), S23, 2, PN_FLOAT32, k42),
               PN_FLOAT32, g_uniform_lohi, 6);
    check_bits("uniform(lo, 5, (2,3)) f16",
               pn_random_uniform(lo, pn_weak_float(5), S23, 2, PN_FLOAT16, k42), PN_FLOAT16,
               g_uniform_lohi_f16, 6);
    check_bits("uniform(-2, 3) bf16",
               pn_random_uniform(pn_weak_float(-2), pn_weak_float(3), (int64_t[]){5}, 1,
                                 PN_BFLOAT16, k0),
               PN_BFLOAT16, g_uniform_lohi_bf16, 5);
    pn_scope_pop();
}

TEST(normal_matches_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    /* bit-identical when pn_erfinv is MLX's float32 erfinv; a few ulp otherwise */
    test_check_values("normal f32", pn_random_normal(S9, 1, PN_FLOAT32, 0, 1, k0), S9, 1,
                      PN_FLOAT32, g_normal_f32, 1e-6, 1e-7);
    test_check_values("normal f16", pn_random_normal(S9, 1, PN_FLOAT16, 0, 1, k0), S9, 1,
                      PN_FLOAT16, g_normal_f16, 1e-3, 1e-4);
    test_check_values("normal bf16", pn_random_normal((int64_t[]){5}, 1, PN_BFLOAT16, 0, 1, k42),
                      (int64_t[]){5}, 1, PN_BFLOAT16, g_normal_bf16, 8e-3, 1e-3);
    test_check_values("normal loc 1.5 scale 2", pn_random_normal(S23, 2, PN_FLOAT32, 1.5, 2, k42),
                      S23, 2, PN_FLOAT32, g_normal_locscale, 1e-6, 1e-6);
    pn_array *z = pn_random_normal((int64_t[]){3}, 1, PN_COMPLEX64, 0, 1, pn_random_key(5));
    CHECK(z && pn_array_dtype(z) == PN_COMPLEX64 && pn_size(z) == 3);
    float _Complex *zv = raw_of(z);
    for (int i = 0; zv && i < 3; i++)
        CHECK_MSG(fabs(crealf(zv[i]) - g_cnormal[2 * i]) < 1e-6 &&
                      fabs(cimagf(zv[i]) - g_cnormal[2 * i + 1]) < 1e-6,
                  "complex normal %d: %g%+gj", i, crealf(zv[i]), cimagf(zv[i]));
    free(zv);
    pn_scope_pop();
}

TEST(normal_bits_exact_when_erfinv_is_mlx)
{
    /* Informational: MLX's float32 normal bit for bit (needs pn_erfinv to be MLX's
     * polynomial); counts the elements that differ in the last place. */
    pn_scope_push();
    uint32_t *v = raw_of(pn_random_normal(S9, 1, PN_FLOAT32, 0, 1, pn_random_key(0)));
    int diff = 0;
    for (int i = 0; v && i < 9; i++) {
        int64_t d = (int64_t)v[i] - (int64_t)g_normal_f32_bits[i];
        CHECK_MSG(d >= -4 && d <= 4, "normal element %d is %lld ulp from MLX", i, (long long)d);
        diff += d != 0;
    }
    if (diff) printf("  note: %d of 9 normal values differ from MLX in the last bits\n", diff);
    free(v);
    pn_scope_pop();
}

TEST(randint_bernoulli_match_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    int64_t n12 = 12;
    check_bits("randint(-5, 17)", pn_random_randint(pn_weak_int(-5), pn_weak_int(17), &n12, 1,
                                                    PN_INT32, k0),
               PN_INT32, g_randint, 12);
    check_bits("randint(0, 256) u8",
               pn_random_randint(pn_scalar_int(0, PN_INT32), pn_scalar_int(256, PN_INT32), &n12, 1,
                                 PN_UINT8, k42),
               PN_UINT8, g_randint_u8, 12);
    check_bits("bernoulli(0.3)", pn_random_bernoulli(pn_scalar(0.3, PN_FLOAT32), &n12, 1, k0),
               PN_BOOL, g_bernoulli, 12);
    const float pv[6] = {0.1f, 0.5f, 0.9f, 0.0f, 1.0f, 0.7f};
    pn_array *p = pn_array_from_data(pv, (int64_t[]){6}, 1, PN_FLOAT32);
    check_bits("bernoulli(p)", pn_random_bernoulli(p, NULL, 0, k42), PN_BOOL, g_bernoulli_p, 6);
    pn_array *h = pn_random_bernoulli(NULL, NULL, 0, k0);
    CHECK(h && pn_ndim(h) == 0);
    check_bits("bernoulli()", h, PN_BOOL, g_bernoulli_half, 1);
    pn_scope_pop();
}

TEST(truncated_gumbel_laplace_match_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    test_check_values("truncated_normal(-1, 2)",
                      pn_random_truncated_normal(pn_weak_float(-1), pn_weak_float(2), S9, 1,
                                                 PN_FLOAT32, k0),
                      S9, 1, PN_FLOAT32, g_trunc, 1e-5, 1e-6);
    const float lv[3] = {-0.5f, 0.0f, 1.0f}, uv[2] = {0.5f, 3.0f};
    pn_array *lo = pn_array_from_data(lv, (int64_t[]){3}, 1, PN_FLOAT32);
    pn_array *hi = pn_array_from_data(uv, (int64_t[]){2, 1}, 2, PN_FLOAT32);
    test_check_values("truncated_normal(arrays)",
                      pn_random_truncated_normal(lo, hi, NULL, 0, PN_FLOAT32, k42), S23, 2,
                      PN_FLOAT32, g_trunc_arr, 1e-5, 1e-6);
    test_check_values("gumbel", pn_random_gumbel(S9, 1, PN_FLOAT32, k0), S9, 1, PN_FLOAT32,
                      g_gumbel, 1e-5, 1e-6);
    test_check_values("laplace", pn_random_laplace(S9, 1, PN_FLOAT32, 0, 1, k0), S9, 1,
                      PN_FLOAT32, g_laplace, 1e-5, 1e-6);
    test_check_values("laplace(loc -1, scale 0.5)",
                      pn_random_laplace(S23, 2, PN_FLOAT32, -1, 0.5, k42), S23, 2, PN_FLOAT32,
                      g_laplace_ls, 1e-5, 1e-6);
    pn_scope_pop();
}

/* MLX's truncated_normal bits, produced once with mlx 0.32.4 (pip, CPU, Linux x86-64):
 *   k0, k7, k42 = (mx.random.key(s) for s in (0, 7, 42))
 *   mx.random.truncated_normal(-1.0, 2.0, shape=(9,), key=k0)                  -> g_tn_9
 *   mx.random.truncated_normal(mx.array([-.5, 0., 1.]), mx.array([[.5], [3.]]), key=k42)
 *                                                                             -> g_tn_arr
 *   mx.random.truncated_normal(-2.0, 2.0, shape=(64,), key=k7)                 -> g_tn_64
 *   mx.random.truncated_normal(mx.array([-3., .1, -.01, 2.5]), mx.array([3., 4., .01, 6.]),
 *                              shape=(3, 4), key=k7)                          -> g_tn_mixed
 *   mx.random.truncated_normal(-1.0, 2.0, shape=(6,), dtype=mx.float16, key=k0) -> g_tn_f16
 * read back as np.array(a).view(np.uint32) (uint16 for float16). */
static const uint32_t g_tn_9[] = {0xbe02cd5au, 0x3ec9c890u, 0x3cb21e89u, 0xbec8d52au, 0x3f0dae60u, 0x3d3d933bu, 0xbeb1e70bu, 0xbe94d12fu, 0x3f4bf4f4u};
static const uint32_t g_tn_arr[] = {0x3e63bfeeu, 0x3edc2ea7u, 0x3f800000u, 0xbdf5ed81u, 0x3e711302u, 0x3fbaeb95u};
static const uint32_t g_tn_64[] = {
    0x3f497c21u, 0x3d03682du, 0x3ed75fe0u, 0xbf3a0ac9u, 0x3f967135u, 0xbe333f45u, 0xbfbb33bbu, 0x3f9a01f8u,
    0xbd371789u, 0xbf128dafu, 0x3f8066bfu, 0xbfc5eed6u, 0xbebf0224u, 0xbeae54e5u, 0x3f3c8498u, 0x3f552c09u,
    0xbfc9bdf1u, 0xbeeacedbu, 0xbf82fbe1u, 0x3ebb3c04u, 0x3e5e732bu, 0xbf8323f9u, 0xbf6cf893u, 0x3efeb619u,
    0xbde8fc7du, 0xbcd3a669u, 0xbfa88424u, 0x3e6074c6u, 0x3f5edc49u, 0x3fc84635u, 0x3eae98d0u, 0x3f18c1bau,
    0xbf77b73cu, 0xbf517aaeu, 0x3e22f7c1u, 0xbf433b3du, 0x3f062aa4u, 0xbf8edaedu, 0xbf97575bu, 0xbf8bf50cu,
    0x3f1c0f3cu, 0x3ffa73c0u, 0x3e8ee8fdu, 0x3f216387u, 0xbf82af59u, 0xbdaa74a3u, 0xbfe9228du, 0xbf430020u,
    0xbeb78212u, 0xbe0c9a07u, 0xbf78e359u, 0x3fcc92c3u, 0x3f8d26cdu, 0x3f3d8f3fu, 0xbf645015u, 0x3ffb810eu,
    0x3efedf8cu, 0xbdc7b024u, 0x3f2bcd90u, 0xbf11975fu, 0xbf5a35b5u, 0x3f16a565u, 0x3e73bbaeu, 0x3f8f8748u};
static const uint32_t g_tn_mixed[] = {0x3ea38bb8u, 0x3e6c33e3u, 0xbbd71f0au, 0x4026da4cu, 0xbd675157u, 0x3ff38b13u, 0x3bd47671u, 0x4020bf11u, 0xc0099705u, 0x3ed40d32u, 0xbbe94695u, 0x402608f7u};
static const uint32_t g_tn_f16[] = {0x3544, 0xb9a4, 0x39d0, 0x3ce8, 0x3608, 0x2cc9};

TEST(truncated_normal_bits_match_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k7 = pn_random_key(7), *k42 = pn_random_key(42);
    check_bits("truncated_normal(-1, 2)",
               pn_random_truncated_normal(pn_weak_float(-1), pn_weak_float(2), S9, 1, PN_FLOAT32, k0),
               PN_FLOAT32, g_tn_9, 9);
    const float lv[3] = {-0.5f, 0.0f, 1.0f}, uv[2] = {0.5f, 3.0f};
    pn_array *lo = pn_array_from_data(lv, (int64_t[]){3}, 1, PN_FLOAT32);
    pn_array *hi = pn_array_from_data(uv, (int64_t[]){2, 1}, 2, PN_FLOAT32);
    check_bits("truncated_normal(arrays)", pn_random_truncated_normal(lo, hi, NULL, 0, PN_FLOAT32, k42),
               PN_FLOAT32, g_tn_arr, 6);
    int64_t n64 = 64;
    check_bits("truncated_normal(-2, 2) x64",
               pn_random_truncated_normal(pn_weak_float(-2), pn_weak_float(2), &n64, 1, PN_FLOAT32, k7),
               PN_FLOAT32, g_tn_64, 64);
    const float ml[4] = {-3.0f, 0.1f, -0.01f, 2.5f}, mu[4] = {3.0f, 4.0f, 0.01f, 6.0f};
    check_bits("truncated_normal(mixed bounds)",
               pn_random_truncated_normal(pn_array_from_data(ml, (int64_t[]){4}, 1, PN_FLOAT32),
                                          pn_array_from_data(mu, (int64_t[]){4}, 1, PN_FLOAT32),
                                          (int64_t[]){3, 4}, 2, PN_FLOAT32, k7),
               PN_FLOAT32, g_tn_mixed, 12);
    check_bits("truncated_normal f16",
               pn_random_truncated_normal(pn_weak_float(-1), pn_weak_float(2), (int64_t[]){6}, 1,
                                          PN_FLOAT16, k0),
               PN_FLOAT16, g_tn_f16, 6);
    pn_scope_pop();
}

/* log of [[.1 .2 .3 .4] [.7 .1 .1 .1] [.25 .25 .25 .25]] */
static pn_array *cat_logits(void)
{
    const float p[12] = {0.1f, 0.2f, 0.3f, 0.4f, 0.7f, 0.1f, 0.1f, 0.1f, 0.25f, 0.25f, 0.25f, 0.25f};
    return pn_log(pn_array_from_data(p, (int64_t[]){3, 4}, 2, PN_FLOAT32));
}

TEST(categorical_permutation_match_mlx)
{
    pn_scope_push();
    pn_array *k0 = pn_random_key(0), *k42 = pn_random_key(42);
    pn_array *lg = cat_logits();
    pn_array *c = pn_random_categorical(lg, -1, NULL, 0, 0, k0);
    CHECK(c && pn_ndim(c) == 1 && pn_shape(c)[0] == 3);
    check_bits("categorical", c, PN_UINT32, g_cat, 3);
    pn_array *ns = pn_random_categorical(lg, -1, NULL, 0, 7, k42);
    CHECK(ns && pn_ndim(ns) == 2 && pn_shape(ns)[0] == 3 && pn_shape(ns)[1] == 7);
    check_bits("categorical num_samples 7", ns, PN_UINT32, g_cat_ns, 21);
    pn_array *sh = pn_random_categorical(lg, -1, S23, 2, 0, k0);
    CHECK(sh && pn_ndim(sh) == 2);
    /* MLX gives (2,3) from logits (3,4): shape (2,3) broadcasts with (3,) */
    check_bits("categorical shape (2,3)", sh, PN_UINT32, g_cat_shape, 6);
    check_bits("categorical axis 0", pn_random_categorical(lg, 0, NULL, 0, 0, k42), PN_UINT32,
               g_cat_axis0, 4);
    pn_array *lg4 = pn_log(pn_array_from_data((float[]){0.1f, 0.2f, 0.3f, 0.4f}, (int64_t[]){4}, 1,
                                              PN_FLOAT32));
    check_bits("categorical 1-d num_samples 20", pn_random_categorical(lg4, -1, NULL, 0, 20, k0),
               PN_UINT32, g_cat1d_ns, 20);
    check_bits("categorical 1-d shape (3,5)", pn_random_categorical(lg4, -1, (int64_t[]){3, 5}, 2, 0, k42),
               PN_UINT32, g_cat1d_shape, 15);
    pn_array *c0 = pn_random_categorical(lg4, -1, NULL, 0, 0, k0);
    CHECK(c0 && pn_ndim(c0) == 0);
    check_bits("categorical 1-d scalar", c0, PN_UINT32, g_cat1d_scalar, 1);
    check_bits("categorical (4,1) axis 0",
               pn_random_categorical(pn_reshape(lg4, (int64_t[]){4, 1}, 2), 0, NULL, 0, 0, k42),
               PN_UINT32, g_cat_col, 1);
    check_bits("permutation(10)", pn_random_permutation_n(10, k0), PN_UINT32, g_perm10, 10);
    pn_array *x = pn_reshape(pn_arange(0, 12, 1, PN_INT32), (int64_t[]){4, 3}, 2);
    check_bits("permutation(x, axis 1)", pn_random_permutation(x, 1, k42), PN_INT32, g_perm_x, 12);
    check_bits("permutation(x)", pn_random_permutation(x, 0, k42), PN_INT32, g_perm_x0, 12);
    pn_scope_pop();
}

/* Weighted sum and shifted xor of the raw elements (widened to uint64 as numpy's astype). */
static void checksum(pn_array *a, uint64_t *sum, uint64_t *x)
{
    unsigned char *raw = raw_of(a);
    *sum = *x = 0;
    if (!raw) return;
    pn_dtype t = pn_array_dtype(a);
    size_t es = pn_dtype_size(t);
    for (int64_t i = 0; i < pn_size(a); i++) {
        uint64_t v;
        if (es == 1) v = raw[i];
        else if (es == 2) { uint16_t h; memcpy(&h, raw + 2 * i, 2); v = h; }
        else if (t == PN_INT32) { int32_t w; memcpy(&w, raw + 4 * i, 4); v = (uint64_t)(int64_t)w; }
        else { uint32_t w; memcpy(&w, raw + 4 * i, 4); v = w; }
        *sum += v * (uint64_t)(i + 1);
        *x ^= v << (i % 32);
    }
    free(raw);
}

TEST(distributions_large_checksums_match_mlx)
{
    /* 100000 draws with key(2024) each, checksummed with MLX: exact (no transcendental
     * function decides a bit) except categorical, whose cdf uses exp and sums. */
    static const struct { const char *name; uint64_t sum, x; } ref[7] = {
        {"uniform f32", 9374867400727272446ull, 3237638531218517661ull},
        {"uniform f16", 69135827112759ull, 8835214448018ull},
        {"uniform bf16", 80322626138158ull, 24814300949382ull},
        {"randint", 18446744072460432221ull, 1833790583161ull},
        {"bernoulli", 1491882032ull, 2250920872ull},
        {"permutation", 250183035768511ull, 135082026303523ull},
        {"categorical", 10012462774ull, 2435019947ull},
    };
    pn_scope_push();
    int64_t n = 100000;
    pn_array *k = pn_random_key(2024);
    pn_array *lg4 = pn_log(pn_array_from_data((float[]){0.1f, 0.2f, 0.3f, 0.4f}, (int64_t[]){4}, 1,
                                              PN_FLOAT32));
    pn_array *a[7] = {
        pn_random_uniform(pn_weak_float(-3), pn_weak_float(5), &n, 1, PN_FLOAT32, k),
        pn_random_uniform(pn_weak_float(0), pn_weak_float(1), &n, 1, PN_FLOAT16, k),
        pn_random_uniform(pn_weak_float(0), pn_weak_float(1), &n, 1, PN_BFLOAT16, k),
        pn_random_randint(pn_weak_int(-1000), pn_weak_int(1000), &n, 1, PN_INT32, k),
        pn_random_bernoulli(pn_scalar(0.3, PN_FLOAT32), &n, 1, k),
        pn_random_permutation_n(n, k),
        pn_random_categorical(lg4, -1, NULL, 0, (int)n, k),
    };
    for (int i = 0; i < 7; i++) {
        uint64_t sum, x;
        checksum(a[i], &sum, &x);
        CHECK_MSG(sum == ref[i].sum && x == ref[i].x, "%s: checksum %llu %llu differs from MLX's",
                  ref[i].name, (unsigned long long)sum, (unsigned long long)x);
    }
    pn_scope_pop();
}

TEST(multivariate_normal_matches_mlx)
{
    pn_scope_push();
    const float mv[2] = {1, -2}, cv[4] = {1, 0.5f, 0.5f, 2};
    pn_array *mean = pn_array_from_data(mv, (int64_t[]){2}, 1, PN_FLOAT32);
    pn_array *cov = pn_array_from_data(cv, (int64_t[]){2, 2}, 2, PN_FLOAT32);
    pn_array *s = pn_random_multivariate_normal(mean, cov, (int64_t[]){3}, 1, PN_FLOAT32,
                                                pn_random_key(0));
    test_check_values("multivariate_normal", s, (int64_t[]){3, 2}, 2, PN_FLOAT32, g_mvn, 1e-5,
                      1e-5);
    pn_scope_pop();
}

/* ───────────────────────────── statistics ───────────────────────────── */

TEST(uniform_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    const pn_dtype dts[4] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (int t = 0; t < 4; t++) {
        pn_array *u = pn_random_uniform(pn_weak_float(-2), pn_weak_float(3), &n, 1, dts[t],
                                        pn_random_key(100 + t));
        CHECK(u && pn_array_dtype(u) == dts[t]);
        double m, v;
        moments(u, &m, &v);
        double tol_m = 6 * sqrt(25.0 / 12 / n) + (pnC_is_half(dts[t]) ? 0.02 : 0);
        CHECK_MSG(fabs(m - 0.5) < tol_m, "%s uniform mean %g", pn_dtype_name(dts[t]), m);
        CHECK_MSG(fabs(v - 25.0 / 12) < 0.05 * 25.0 / 12, "%s uniform var %g",
                  pn_dtype_name(dts[t]), v);
        pn_array *in = pn_all(pn_logical_and(pn_greater_equal(u, pn_weak_float(-2)),
                                             pn_less(u, pn_weak_float(3))),
                              NULL, 0, false);
        CHECK_MSG(in && pn_item(in) == 1, "%s uniform outside [-2, 3)", pn_dtype_name(dts[t]));
    }
    /* per-element bounds (broadcast arrays): low <= u < high everywhere */
    const float lv[3] = {-10, 0, 100}, hv[3] = {-9, 1e-3f, 1000};
    pn_array *lo = pn_array_from_data(lv, (int64_t[]){3}, 1, PN_FLOAT32);
    pn_array *hi = pn_array_from_data(hv, (int64_t[]){3}, 1, PN_FLOAT32);
    int64_t shape[2] = {n / 3, 3};
    pn_array *u = pn_random_uniform(lo, hi, shape, 2, PN_FLOAT32, pn_random_key(9));
    pn_array *in = pn_all(pn_logical_and(pn_greater_equal(u, lo), pn_less(u, hi)), NULL, 0, false);
    CHECK(in && pn_item(in) == 1);
    pn_scope_pop();
}

TEST(normal_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    const pn_dtype dts[4] = {PN_FLOAT32, PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (int t = 0; t < 4; t++) {
        pn_array *z = pn_random_normal(&n, 1, dts[t], 3, 0.5, pn_random_key(200 + t));
        CHECK(z && pn_array_dtype(z) == dts[t]);
        double m, v;
        moments(z, &m, &v);
        double tol_m = 6 * 0.5 / sqrt((double)n) + (dts[t] == PN_BFLOAT16 ? 0.02 : 0);
        CHECK_MSG(fabs(m - 3) < tol_m, "%s normal mean %g", pn_dtype_name(dts[t]), m);
        CHECK_MSG(fabs(v - 0.25) < 6 * 0.25 * sqrt(2.0 / n) + (pnC_is_half(dts[t]) ? 0.01 : 0),
                  "%s normal var %g", pn_dtype_name(dts[t]), v);
    }
    /* fourth moment of the standard normal: E z^4 = 3 */
    pn_array *z = pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, pn_random_key(7));
    double *zv = test_to_f64(z);
    double m4 = 0;
    for (int64_t i = 0; zv && i < n; i++) m4 += zv[i] * zv[i] * zv[i] * zv[i];
    m4 /= n;
    CHECK_MSG(fabs(m4 - 3) < 6 * sqrt(96.0 / n), "E z^4 = %g", m4);
    free(zv);
    /* complex: E|z|^2 = 1, real and imaginary parts each of variance 1/2 */
    pn_array *c = pn_random_normal(&n, 1, PN_COMPLEX64, 0, 1, pn_random_key(8));
    double mr, vr, mi, vi;
    moments(pn_real(c), &mr, &vr);
    moments(pn_imag(c), &mi, &vi);
    CHECK_MSG(fabs(mr) < 6 * sqrt(0.5 / n) && fabs(mi) < 6 * sqrt(0.5 / n), "complex mean");
    CHECK_MSG(fabs(vr - 0.5) < 0.03 && fabs(vi - 0.5) < 0.03, "complex var %g %g", vr, vi);
    pn_scope_pop();
}

TEST(randint_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    pn_array *r = pn_random_randint(pn_weak_int(-3), pn_weak_int(7), &n, 1, PN_INT32,
                                    pn_random_key(11));
    double *v = test_to_f64(r);
    int64_t count[10] = {0};
    int bad = 0;
    for (int64_t i = 0; v && i < n; i++) {
        if (v[i] < -3 || v[i] >= 7 || v[i] != floor(v[i])) bad++;
        else count[(int)v[i] + 3]++;
    }
    CHECK_MSG(bad == 0, "%d randint values outside [-3, 7)", bad);
    for (int k = 0; k < 10; k++)
        CHECK_MSG(fabs(count[k] - n / 10.0) < 6 * sqrt(n * 0.09), "value %d drawn %lld times",
                  k - 3, (long long)count[k]);
    free(v);
    const pn_dtype dts[4] = {PN_INT8, PN_UINT16, PN_INT64, PN_BOOL};
    for (int t = 0; t < 4; t++) {
        int64_t s = 1000;
        pn_array *x = pn_random_randint(pn_weak_int(0), pn_weak_int(2), &s, 1, dts[t],
                                        pn_random_key(12));
        CHECK(x && pn_array_dtype(x) == dts[t]);
        double m, var;
        moments(x, &m, &var);
        CHECK_MSG(fabs(m - 0.5) < 0.1, "%s randint mean %g", pn_dtype_name(dts[t]), m);
    }
    pn_scope_pop();
}

TEST(bernoulli_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    const double ps[5] = {0.0, 0.03, 0.3, 0.5, 1.0};
    for (int t = 0; t < 5; t++) {
        pn_array *b = pn_random_bernoulli(pn_scalar(ps[t], PN_FLOAT32), &n, 1, pn_random_key(t));
        CHECK(b && pn_array_dtype(b) == PN_BOOL);
        double m, v;
        moments(b, &m, &v);
        CHECK_MSG(fabs(m - ps[t]) <= 6 * sqrt(ps[t] * (1 - ps[t]) / n), "bernoulli(%g) frequency %g",
                  ps[t], m);
    }
    /* p broadcast against a larger shape, in float16 */
    const float pv[2] = {0.2f, 0.8f};
    pn_array *p = pn_astype(pn_array_from_data(pv, (int64_t[]){2}, 1, PN_FLOAT32), PN_FLOAT16);
    pn_array *b = pn_random_bernoulli(p, (int64_t[]){n / 2, 2}, 2, pn_random_key(77));
    pn_array *f = pn_mean(pn_astype(b, PN_FLOAT32), (int[]){0}, 1, false);
    double *fv = test_to_f64(f);
    CHECK(fv && fabs(fv[0] - 0.2) < 0.02 && fabs(fv[1] - 0.8) < 0.02);
    free(fv);
    pn_scope_pop();
}

TEST(truncated_normal_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    const double a = -0.5, b = 2.0;
    pn_array *t = pn_random_truncated_normal(pn_weak_float(a), pn_weak_float(b), &n, 1,
                                             PN_FLOAT32, pn_random_key(31));
    double *v = test_to_f64(t);
    int bad = 0;
    double s = 0;
    for (int64_t i = 0; v && i < n; i++) {
        if (v[i] < a || v[i] > b) bad++;
        s += v[i];
    }
    CHECK_MSG(bad == 0, "%d values outside [%g, %g]", bad, a, b);
    /* mean of N(0,1) truncated to [a, b]: (phi(a) - phi(b)) / (Phi(b) - Phi(a)) */
    double phi_a = exp(-a * a / 2) / sqrt(2 * M_PI), phi_b = exp(-b * b / 2) / sqrt(2 * M_PI);
    double z = 0.5 * (erf(b / sqrt(2)) - erf(a / sqrt(2)));
    double mean = (phi_a - phi_b) / z;
    CHECK_MSG(fabs(s / n - mean) < 6 / sqrt((double)n), "truncated mean %g, expected %g", s / n,
              mean);
    free(v);
    const pn_dtype dts[3] = {PN_FLOAT16, PN_BFLOAT16, PN_FLOAT64};
    for (int k = 0; k < 3; k++) {
        int64_t m = 2000;
        pn_array *x = pn_random_truncated_normal(pn_weak_float(-1), pn_weak_float(1), &m, 1,
                                                 dts[k], pn_random_key(32));
        CHECK(x && pn_array_dtype(x) == dts[k]);
        pn_array *ok = pn_all(pn_logical_and(pn_greater_equal(x, pn_weak_float(-1)),
                                             pn_less_equal(x, pn_weak_float(1))),
                              NULL, 0, false);
        CHECK(ok && pn_item(ok) == 1);
    }
    pn_scope_pop();
}

TEST(gumbel_laplace_statistics)
{
    pn_scope_push();
    int64_t n = big_n();
    double m, v;
    moments(pn_random_gumbel(&n, 1, PN_FLOAT32, pn_random_key(41)), &m, &v);
    CHECK_MSG(fabs(m - 0.5772156649) < 6 * sqrt(1.645 / n), "gumbel mean %g", m);
    CHECK_MSG(fabs(v - M_PI * M_PI / 6) < 0.05 * M_PI * M_PI / 6, "gumbel var %g", v);
    moments(pn_random_laplace(&n, 1, PN_FLOAT32, 2, 0.5, pn_random_key(42)), &m, &v);
    CHECK_MSG(fabs(m - 2) < 6 * sqrt(0.5 / n), "laplace mean %g", m);
    CHECK_MSG(fabs(v - 0.5) < 0.05 * 0.5, "laplace var %g", v);
    pn_array *h = pn_random_gumbel((int64_t[]){100}, 1, PN_BFLOAT16, pn_random_key(43));
    CHECK(h && pn_array_dtype(h) == PN_BFLOAT16);
    pn_array *l = pn_random_laplace((int64_t[]){100}, 1, PN_FLOAT16, 0, 1, pn_random_key(44));
    CHECK(l && pn_array_dtype(l) == PN_FLOAT16);
    pn_scope_pop();
}

TEST(categorical_frequencies)
{
    pn_scope_push();
    int ns = test_quick() ? 5000 : 100000;
    const float lv[5] = {1.0f, -0.5f, 0.0f, 2.0f, -3.0f};
    pn_array *lg = pn_array_from_data(lv, (int64_t[]){5}, 1, PN_FLOAT32);
    pn_array *s = pn_random_categorical(lg, 0, NULL, 0, ns, pn_random_key(51));
    CHECK(s && pn_ndim(s) == 1 && pn_shape(s)[0] == ns);
    double *v = test_to_f64(s);
    double count[5] = {0}, z = 0, p[5];
    for (int k = 0; k < 5; k++) z += exp(lv[k]);
    for (int k = 0; k < 5; k++) p[k] = exp(lv[k]) / z;
    for (int i = 0; v && i < ns; i++) count[(int)v[i] < 5 ? (int)v[i] : 0] += 1;
    double chi2 = 0;
    for (int k = 0; k < 5; k++) chi2 += (count[k] - ns * p[k]) * (count[k] - ns * p[k]) / (ns * p[k]);
    /* 4 degrees of freedom: P(chi2 > 30) is about 5e-6 */
    CHECK_MSG(chi2 < 30, "chi-square %g of categorical frequencies", chi2);
    free(v);
    /* many distributions (the Gumbel path): rows of (2,5) logits, each its own frequencies */
    const float lv3[10] = {1.0f, -0.5f, 0.0f, 2.0f, -3.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    pn_array *lg2 = pn_array_from_data(lv3, (int64_t[]){2, 5}, 2, PN_FLOAT32);
    pn_array *s3 = pn_random_categorical(lg2, 1, NULL, 0, ns, pn_random_key(53));
    CHECK(s3 && pn_ndim(s3) == 2 && pn_shape(s3)[0] == 2 && pn_shape(s3)[1] == ns);
    double *v3 = test_to_f64(s3);
    for (int r = 0; v3 && r < 2; r++) {
        double cnt[5] = {0}, zz = 0, pr[5], c2 = 0;
        for (int q = 0; q < 5; q++) zz += exp(lv3[5 * r + q]);
        for (int q = 0; q < 5; q++) pr[q] = exp(lv3[5 * r + q]) / zz;
        for (int i = 0; i < ns; i++) cnt[(int)v3[r * ns + i] < 5 ? (int)v3[r * ns + i] : 0] += 1;
        for (int q = 0; q < 5; q++) c2 += (cnt[q] - ns * pr[q]) * (cnt[q] - ns * pr[q]) / (ns * pr[q]);
        CHECK_MSG(c2 < 30, "row %d: chi-square %g of categorical frequencies", r, c2);
    }
    free(v3);
    /* a -inf logit is never drawn */
    const float lv2[3] = {0, -INFINITY, 0};
    pn_array *s2 = pn_random_categorical(pn_array_from_data(lv2, (int64_t[]){3}, 1, PN_FLOAT32), -1,
                                         NULL, 0, 1000, pn_random_key(52));
    pn_array *ones = pn_any(pn_equal(s2, pn_scalar_int(1, PN_UINT32)), NULL, 0, false);
    CHECK(ones && pn_item(ones) == 0);
    pn_scope_pop();
}

TEST(permutations_are_permutations)
{
    pn_scope_push();
    int64_t n = test_quick() ? 1000 : 100000;
    pn_array *p = pn_random_permutation_n(n, pn_random_key(61));
    CHECK(p && pn_array_dtype(p) == PN_UINT32 && pn_size(p) == n);
    double *v = test_to_f64(p);
    char *seen = calloc((size_t)n, 1);
    int bad = 0, fixed = 0;
    for (int64_t i = 0; v && i < n; i++) {
        int64_t k = (int64_t)v[i];
        if (k < 0 || k >= n || seen[k]) bad++;
        else seen[k] = 1;
        fixed += k == i;
    }
    CHECK_MSG(bad == 0, "%d repeated or out-of-range entries", bad);
    CHECK_MSG(fixed < 20, "%d fixed points", fixed); /* Poisson(1) */
    free(seen);
    free(v);
    /* permuting an array along an axis moves whole slices */
    pn_array *x = pn_reshape(pn_arange(0, 20, 1, PN_FLOAT32), (int64_t[]){5, 4}, 2);
    pn_array *px = pn_random_permutation(x, 0, pn_random_key(62));
    double *xv = test_to_f64(px);
    for (int r = 0; xv && r < 5; r++)
        for (int c = 1; c < 4; c++) CHECK(xv[r * 4 + c] == xv[r * 4] + c);
    free(xv);
    pn_array *sorted = pn_sort(pn_random_permutation(x, -1, pn_random_key(63)), -1);
    CHECK(sorted && pn_item(pn_array_equal(sorted, x, false)) == 1);
    pn_array *e = pn_random_permutation_n(0, pn_random_key(0));
    CHECK(e && pn_size(e) == 0);
    pn_scope_pop();
}

TEST(multivariate_normal_statistics)
{
    pn_scope_push();
    int64_t n = test_quick() ? 20000 : 200000;
    const float mv[3] = {1, -2, 0.5f};
    const float cv[9] = {2.0f, 0.6f, -0.4f, 0.6f, 1.0f, 0.2f, -0.4f, 0.2f, 0.5f};
    pn_array *mean = pn_array_from_data(mv, (int64_t[]){3}, 1, PN_FLOAT32);
    pn_array *cov = pn_array_from_data(cv, (int64_t[]){3, 3}, 2, PN_FLOAT32);
    pn_array *s = pn_random_multivariate_normal(mean, cov, &n, 1, PN_FLOAT32, pn_random_key(71));
    CHECK(s && pn_ndim(s) == 2 && pn_shape(s)[0] == n && pn_shape(s)[1] == 3);
    double *v = test_to_f64(s);
    double m[3] = {0}, c[9] = {0};
    for (int64_t i = 0; v && i < n; i++)
        for (int a = 0; a < 3; a++) m[a] += v[3 * i + a] / n;
    for (int64_t i = 0; v && i < n; i++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) c[3 * a + b] += (v[3 * i + a] - m[a]) * (v[3 * i + b] - m[b]) / n;
    for (int a = 0; a < 3; a++) CHECK_MSG(fabs(m[a] - mv[a]) < 6 * sqrt(2.0 / n), "mean[%d] %g", a, m[a]);
    for (int k = 0; k < 9; k++) CHECK_MSG(fabs(c[k] - cv[k]) < 0.05, "cov[%d] %g vs %g", k, c[k], cv[k]);
    free(v);
    /* batched covariances broadcast with the mean's batch */
    pn_array *covs = pn_stack((pn_array *[]){cov, pn_multiply(cov, pn_weak_float(4))}, 2, 0);
    pn_array *bs = pn_random_multivariate_normal(mean, covs, NULL, 0, PN_FLOAT32, pn_random_key(72));
    CHECK(bs && pn_ndim(bs) == 2 && pn_shape(bs)[0] == 2 && pn_shape(bs)[1] == 3);
    pn_scope_pop();
}

/* ───────────────────────────── determinism, shapes, dtypes ───────────────────────────── */

TEST(same_key_same_values_split_keys_differ)
{
    pn_scope_push();
    int64_t n = 64;
    pn_array *k = pn_random_key(1234);
    pn_array *a = pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, k);
    pn_array *b = pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, pn_random_key(1234));
    CHECK(pn_item(pn_array_equal(a, b, false)) == 1);
    pn_array *parts[2];
    CHECK(pn_split_sections(pn_random_split(k, 2), 2, 0, parts) == 0);
    pn_array *k1 = pn_reshape(parts[0], (int64_t[]){2}, 1), *k2 = pn_reshape(parts[1], (int64_t[]){2}, 1);
    pn_array *c = pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, k1);
    pn_array *d = pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, k2);
    CHECK(pn_item(pn_any(pn_not_equal(c, d), NULL, 0, false)) == 1);
    CHECK(pn_item(pn_any(pn_not_equal(a, c), NULL, 0, false)) == 1);
    /* odd sizes too (the middle counter of MLX's layout) */
    int64_t m = 65;
    pn_array *e = pn_random_bits(&m, 1, 4, k);
    pn_array *f = pn_random_bits(&m, 1, 4, k);
    CHECK(pn_item(pn_array_equal(e, f, false)) == 1);
    pn_scope_pop();
}

TEST(shapes_and_dtypes)
{
    pn_scope_push();
    pn_array *k = pn_random_key(3);
    const pn_dtype fl[4] = {PN_FLOAT16, PN_BFLOAT16, PN_FLOAT32, PN_FLOAT64};
    for (int t = 0; t < 4; t++) {
        pn_array *u = pn_random_uniform(pn_weak_float(0), pn_weak_float(1), NULL, 0, fl[t], k);
        CHECK(u && pn_ndim(u) == 0 && pn_array_dtype(u) == fl[t]);
        pn_array *z = pn_random_normal((int64_t[]){0, 4}, 2, fl[t], 0, 1, k);
        CHECK(z && pn_size(z) == 0 && pn_ndim(z) == 2 && pn_array_dtype(z) == fl[t]);
        CHECK(pn_eval(&z, 1) == 0);
        pn_array *g = pn_random_gumbel((int64_t[]){2, 1, 3}, 3, fl[t], k);
        CHECK(g && pn_ndim(g) == 3 && pn_array_dtype(g) == fl[t]);
    }
    pn_array *ri = pn_random_randint(pn_weak_int(0), pn_weak_int(5), NULL, 0, PN_INT32, k);
    CHECK(ri && pn_ndim(ri) == 0 && pn_array_dtype(ri) == PN_INT32);
    pn_array *c = pn_random_categorical(cat_logits(), 1, (int64_t[]){5, 3}, 2, 0, k);
    CHECK(c && pn_ndim(c) == 2 && pn_shape(c)[0] == 5 && pn_shape(c)[1] == 3 &&
          pn_array_dtype(c) == PN_UINT32);
    pn_array *b = pn_random_bernoulli(pn_weak_float(0.5), (int64_t[]){3, 0}, 2, k);
    CHECK(b && pn_size(b) == 0 && pn_array_dtype(b) == PN_BOOL);
    /* a uniform draw from a non-contiguous (transposed) bounds array */
    pn_array *lo = pn_transpose(test_random_array((int64_t[]){3, 2}, 2, PN_FLOAT32, -5, 0), NULL, 0);
    pn_array *u = pn_random_uniform(lo, pn_weak_float(1), (int64_t[]){4, 2, 3}, 3, PN_FLOAT32, k);
    pn_array *ok = pn_all(pn_logical_and(pn_greater_equal(u, lo), pn_less(u, pn_weak_float(1))),
                          NULL, 0, false);
    CHECK(ok && pn_item(ok) == 1);
    pn_scope_pop();
}

/* ───────────────────────────── errors ───────────────────────────── */

TEST(errors)
{
    pn_scope_push();
    pn_array *k = pn_random_key(0);
    int64_t n = 4;
    const int64_t bad_shape[1] = {-1};
    pn_array *kf = pn_astype(k, PN_FLOAT32);
    pn_array *k3 = pn_array_from_data((uint32_t[]){1, 2, 3}, (int64_t[]){3}, 1, PN_UINT32);
    pn_array *k22 = pn_random_split(k, 2);
    CHECK_ERR(pn_random_bits(&n, 1, 4, kf), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(&n, 1, 4, k3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(&n, 1, 4, k22), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(&n, 1, 3, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(&n, 1, 8, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(bad_shape, 1, 4, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bits(NULL, 2, 4, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_split(k, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_split(kf, 2), PN_ERR_INVALID_ARGUMENT);
    pn_array *zero = pn_weak_float(0), *one = pn_weak_float(1);
    CHECK_ERR(pn_random_uniform(zero, one, &n, 1, PN_INT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_uniform(zero, one, &n, 1, PN_COMPLEX64, k), PN_ERR_INVALID_ARGUMENT);
    pn_array *lo3 = pn_zeros((int64_t[]){3}, 1, PN_FLOAT32), *lo2x4 = pn_zeros((int64_t[]){2, 4}, 2, PN_FLOAT32);
    CHECK_ERR(pn_random_uniform(lo3, one, &n, 1, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_uniform(lo2x4, one, &n, 1, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_uniform(lo3, lo2x4, (int64_t[]){2, 4}, 2, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_uniform(NULL, one, &n, 1, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_uniform(zero, one, &n, 1, PN_FLOAT32, k3), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_normal(&n, 1, PN_INT32, 0, 1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_normal(bad_shape, 1, PN_FLOAT32, 0, 1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_normal(&n, 1, PN_FLOAT32, 0, 1, kf), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_randint(zero, pn_weak_int(5), &n, 1, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_randint(lo3, pn_weak_int(5), &n, 1, PN_INT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bernoulli(pn_weak_int(1), &n, 1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bernoulli(lo3, (int64_t[]){2}, 1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_bernoulli(lo3, (int64_t[]){3, 1}, 2, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_truncated_normal(zero, one, &n, 1, PN_INT8, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_truncated_normal(lo3, lo2x4, NULL, 0, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_truncated_normal(lo3, one, &n, 1, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_gumbel(&n, 1, PN_INT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_laplace(&n, 1, PN_UINT8, 0, 1, k), PN_ERR_INVALID_ARGUMENT);
    pn_array *lg = cat_logits();
    CHECK_ERR(pn_random_categorical(lg, 2, NULL, 0, 0, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_categorical(lg, -3, NULL, 0, 0, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_categorical(pn_scalar(0, PN_FLOAT32), 0, NULL, 0, 0, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_categorical(lg, -1, (int64_t[]){3}, 1, 5, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_categorical(lg, -1, (int64_t[]){4}, 1, 0, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_categorical(lg, -1, (int64_t[]){2, 1}, 2, 0, k), PN_ERR_INVALID_ARGUMENT);
    pn_array *mean = pn_zeros((int64_t[]){2}, 1, PN_FLOAT32), *cov = pn_eye(2, -1, 0, PN_FLOAT32);
    CHECK_ERR(pn_random_multivariate_normal(mean, cov, NULL, 0, PN_FLOAT64, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_multivariate_normal(pn_scalar(0, PN_FLOAT32), cov, NULL, 0, PN_FLOAT32, k),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_multivariate_normal(mean, mean, NULL, 0, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_multivariate_normal(mean, lo2x4, NULL, 0, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_multivariate_normal(lo3, cov, NULL, 0, PN_FLOAT32, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_multivariate_normal(lo2x4, pn_eye(4, -1, 0, PN_FLOAT32), (int64_t[]){3},
                                            1, PN_FLOAT32, k),
              PN_ERR_INVALID_ARGUMENT); /* batch (2,) against shape (3,) */
    CHECK_ERR(pn_random_permutation_n(-1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_permutation(lo3, 1, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_permutation(pn_scalar(1, PN_FLOAT32), 0, k), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_random_permutation(NULL, 0, k), PN_ERR_INVALID_ARGUMENT);
    /* sticky: a NULL key or p from a failed op is not mistaken for "use the default" */
    pn_clear_error();
    pn_array *failed = pn_random_split(kf, 2); /* fails */
    CHECK(failed == NULL);
    CHECK(pn_random_bits(&n, 1, 4, failed) == NULL);
    CHECK(pn_random_bernoulli(failed, &n, 1, k) == NULL);
    CHECK(pn_last_error() == PN_ERR_INVALID_ARGUMENT &&
          strstr(pn_last_error_message(), "uint32") != NULL);
    pn_clear_error();
    /* a message names the shapes, as MLX's */
    pn_random_uniform(lo2x4, one, &n, 1, PN_FLOAT32, k);
    CHECK(strstr(pn_last_error_message(), "(4)") != NULL);
    pn_clear_error();
    pn_scope_pop();
}

/* ───────────────────────────── gradients ───────────────────────────── */

static pn_array *uniform_fn(void *ctx, pn_array *const *in)
{
    return pn_random_uniform(in[0], in[1], (int64_t[]){2, 3}, 2, PN_FLOAT64, pn_random_key(5));
}

static pn_array *truncated_fn(void *ctx, pn_array *const *in)
{
    return pn_random_truncated_normal(in[0], in[1], (int64_t[]){2, 3}, 2, PN_FLOAT64,
                                      pn_random_key(6));
}

static pn_array *mvn_mean_fn(void *ctx, pn_array *const *in)
{
    pn_array *cov = pn_array_from_data((float[]){1, 0.3f, 0.3f, 2}, (int64_t[]){2, 2}, 2, PN_FLOAT32);
    return pn_random_multivariate_normal(in[0], cov, (int64_t[]){4}, 1, PN_FLOAT32,
                                         pn_random_key(7)); /* float64 mean: float64 out */
}

TEST(gradients_flow_through_bounds)
{
    pn_scope_push();
    /* uniform is affine in low and high: d/dlow = 1 - u, d/dhigh = u */
    pn_array *lo = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -2, -1);
    pn_array *hi = test_random_array((int64_t[]){2, 1}, 2, PN_FLOAT64, 1, 2);
    pn_array *in[2] = {lo, hi};
    CHECK(test_gradcheck("uniform(low, high)", uniform_fn, NULL, 2, in, 1e-6));
    /* truncated normal moves smoothly with its bounds (inside the clip) */
    pn_array *tl = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, -1.5, -0.5);
    pn_array *tu = test_random_array((int64_t[]){3}, 1, PN_FLOAT64, 0.5, 1.5);
    pn_array *tin[2] = {tl, tu};
    CHECK(test_gradcheck("truncated_normal(lower, upper)", truncated_fn, NULL, 2, tin, 1e-4));
    /* multivariate normal is a shift of its mean */
    pn_array *m = test_random_array((int64_t[]){2}, 1, PN_FLOAT64, -1, 1);
    CHECK(test_gradcheck("multivariate_normal(mean)", mvn_mean_fn, NULL, 1, &m, 1e-3));
    pn_scope_pop();
}

/* ───────────────────────────── vmap over keys ───────────────────────────── */

static int bits_of_key(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    int64_t n = 5;
    out[0] = *(int *)ctx ? pn_random_uniform(pn_weak_float(-1), pn_weak_float(1), &n, 1, PN_FLOAT32,
                                             in[0])
                         : pn_random_bits(&n, 1, 2, in[0]);
    *nout = 1;
    return out[0] ? 0 : -1;
}

TEST(vmap_over_keys)
{
    pn_scope_push();
    for (int uniform = 0; uniform < 2; uniform++) {
        pn_array *keys = pn_random_split(pn_random_key(99), 3); /* (3, 2) */
        pn_closure *f = pn_closure_new(bits_of_key, &uniform, NULL);
        for (int layout = 0; layout < 2; layout++) {
            /* keys mapped along axis 0 of (3,2), or along axis 1 of its transpose (2,3) */
            int in_axis = layout;
            pn_array *arg = layout ? pn_transpose(keys, NULL, 0) : keys;
            pn_closure *vf = pn_vmap(f, &in_axis, 1, NULL, 1);
            pn_array *out[PN_MAX_OUTPUTS];
            int nout = 0;
            CHECK(vf && pn_closure_call(vf, 1, &arg, &nout, out) == 0 && nout == 1);
            if (nout == 1 && out[0]) {
                CHECK(pn_ndim(out[0]) == 2 && pn_shape(out[0])[0] == 3 && pn_shape(out[0])[1] == 5);
                pn_array *rows[3];
                CHECK(pn_split_sections(keys, 3, 0, rows) == 0);
                for (int i = 0; i < 3; i++) {
                    pn_array *one[1] = {pn_reshape(rows[i], (int64_t[]){2}, 1)}, *ref[PN_MAX_OUTPUTS];
                    int n1 = 0;
                    CHECK(pn_closure_call(f, 1, one, &n1, ref) == 0);
                    int64_t st[2] = {i, 0}, sp[2] = {i + 1, 5};
                    pn_array *got = pn_reshape(pn_slice(out[0], st, sp, NULL, 2), (int64_t[]){5}, 1);
                    CHECK_MSG(pn_item(pn_array_equal(got, ref[0], false)) == 1,
                              "vmap row %d (uniform %d, layout %d)", i, uniform, layout);
                }
            }
            pn_closure_release(vf);
        }
        pn_closure_release(f);
    }
    pn_scope_pop();
}

/* float32 normal is bit-identical to MLX (its erfinv formula): values from mlx 0.32.4. */
TEST(normal_bits_match_mlx)
{
    pn_scope_push();
    const float want[8] = {-2.259087085723877f, -0.30747371912002563f, -0.42510950565338135f,
                           -1.3274497985839844f, 0.5800848603248596f,  3.1724865436553955f,
                           1.1208903789520264f,  1.0928667783737183f};
    pn_array *n = pn_random_normal((int64_t[]){8}, 1, PN_FLOAT32, 0, 1, pn_random_key(7));
    float got[8];
    CHECK(pn_to_host(n, got, sizeof got) == 0);
    for (int i = 0; i < 8; i++) CHECK_MSG(got[i] == want[i], "normal[%d] = %.9g, MLX %.9g", i, got[i], want[i]);
    pn_scope_pop();
}
