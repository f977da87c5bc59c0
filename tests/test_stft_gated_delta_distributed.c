/* test_stft_gated_delta_distributed.c — fftfreq / rfftfreq, stft / istft against a direct float64 DFT on random
 * signals, gated_delta_update against a float64 loop of the recurrence, relu2 against its
 * formula, their gradients by finite differences, and the single-process distributed API. */
#include "harness.h"

#include <complex.h>
#include <string.h>

/* ───────────────────────────── fftfreq ───────────────────────────── */

TEST(fftfreq_values_and_errors)
{
    pn_scope_push();
    int64_t ns[] = {1, 2, 5, 8, 11};
    double ds[] = {1.0, 0.25, -2.0};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            int64_t n = ns[i], m = n / 2 + 1;
            double ref[16], rref[16];
            for (int64_t k = 0; k < n; k++) ref[k] = (double)(k <= (n - 1) / 2 ? k : k - n) / (n * ds[j]);
            for (int64_t k = 0; k < m; k++) rref[k] = (double)k / (n * ds[j]);
            test_check_values("fftfreq", pn_fft_fftfreq(n, ds[j]), &n, 1, PN_FLOAT32, ref, 1e-6, 1e-7);
            test_check_values("rfftfreq", pn_fft_rfftfreq(n, ds[j]), &m, 1, PN_FLOAT32, rref, 1e-6, 1e-7);
        }
    CHECK_ERR(pn_fft_fftfreq(0, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_rfftfreq(-3, 1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_fftfreq(4, 0), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── stft / istft references ───────────────────────────── */

/* The padded sample i of x (length len) by mirroring / clamping / zeros, step by step. */
static double complex padded(const double complex *x, int64_t len, int64_t i, const char *mode)
{
    if (!strcmp(mode, "constant")) return i < 0 || i >= len ? 0 : x[i];
    if (!strcmp(mode, "edge")) return x[i < 0 ? 0 : i >= len ? len - 1 : i];
    while (len > 1 && (i < 0 || i >= len)) i = i < 0 ? -i : 2 * (len - 1) - i;
    return x[len > 1 ? i : 0];
}

typedef struct {
    int64_t batch, len, n_fft, hop, win; /* win: window length (a random window), 0: none */
    bool center;
    const char *pad, *norm;
    int onesided;
    bool complex_in;
} stft_case;

/* Float64 STFT of the batch signals x (batch, len): out (batch, nfreq, frames). */
static void ref_stft(const stft_case *c, const double complex *x, const double *w, double complex *out,
                     int64_t nfreq, int64_t frames)
{
    int64_t pad = c->center ? c->n_fft / 2 : 0, off = (c->n_fft - c->win) / 2;
    double scale = !strcmp(c->norm, "ortho") ? 1 / sqrt((double)c->n_fft)
                   : !strcmp(c->norm, "forward") ? 1.0 / c->n_fft : 1;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t f = 0; f < frames; f++)
            for (int64_t k = 0; k < nfreq; k++) {
                double complex acc = 0;
                for (int64_t j = 0; j < c->n_fft; j++) {
                    double wj = c->win ? (j >= off && j < off + c->win ? w[j - off] : 0) : 1;
                    double complex s = padded(x + b * c->len, c->len, f * c->hop + j - pad, c->pad);
                    if (c->onesided) s = creal(s);
                    acc += s * wj * cexp(-2 * M_PI * I * (double)(j * k % c->n_fft) / c->n_fft);
                }
                out[(b * nfreq + k) * frames + f] = acc * scale;
            }
}

/* Splits complex results into real and imaginary parts for comparison. */
static void check_complex(const char *what, pn_array *r, const int64_t *shape, int nd,
                          const double complex *ref, int64_t n, double tol)
{
    double *re = malloc((size_t)n * sizeof *re), *im = malloc((size_t)n * sizeof *im);
    for (int64_t i = 0; i < n; i++) re[i] = creal(ref[i]), im[i] = cimag(ref[i]);
    char buf[128];
    snprintf(buf, sizeof buf, "%s (real)", what);
    test_check_values(buf, pn_real(r), shape, nd, PN_FLOAT32, re, tol, tol);
    snprintf(buf, sizeof buf, "%s (imag)", what);
    test_check_values(buf, pn_imag(r), shape, nd, PN_FLOAT32, im, tol, tol);
    free(re);
    free(im);
}

static pn_array *random_signal(const stft_case *c, double complex *x)
{
    int64_t n = c->batch * c->len;
    float *v = malloc((size_t)(2 * n) * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        v[2 * i] = (float)test_normal();
        v[2 * i + 1] = c->complex_in ? (float)test_normal() : 0;
        x[i] = v[2 * i] + I * (double)v[2 * i + 1];
    }
    int64_t shape[2] = {c->batch, c->len};
    pn_array *a = pn_array_from_data(v, shape, 2, PN_COMPLEX64);
    free(v);
    return c->complex_in ? a : pn_real(a);
}

static const stft_case STFT_CASES[] = {
    {2, 37, 8, 3, 0, true, "reflect", "backward", 1, false},
    {1, 50, 16, 4, 11, true, "constant", "ortho", 1, false},
    {3, 20, 9, 2, 9, true, "edge", "forward", 1, false},
    {2, 41, 12, 5, 7, false, "reflect", "backward", 0, false},
    {1, 6, 32, 8, 0, true, "reflect", "backward", 1, false}, /* padding longer than the signal */
    {2, 30, 8, 3, 5, true, "reflect", "backward", 0, true},
    {1, 1, 4, 1, 0, true, "reflect", "backward", 1, false},
};

TEST(stft_matches_direct_dft)
{
    for (size_t ci = 0; ci < sizeof STFT_CASES / sizeof STFT_CASES[0]; ci++) {
        pn_scope_push();
        const stft_case *c = &STFT_CASES[ci];
        double complex *x = malloc((size_t)(c->batch * c->len) * sizeof *x);
        pn_array *xa = random_signal(c, x), *wa = NULL;
        double w[64];
        if (c->win) {
            for (int64_t i = 0; i < c->win; i++) w[i] = test_uniform(0.2, 1.0);
            float wf[64];
            for (int64_t i = 0; i < c->win; i++) wf[i] = (float)w[i];
            wa = pn_array_from_data(wf, &c->win, 1, PN_FLOAT32);
        }
        int64_t padded_len = c->len + (c->center ? c->n_fft / 2 * 2 : 0);
        int64_t frames = 1 + (padded_len - c->n_fft) / c->hop;
        int64_t nfreq = c->onesided ? c->n_fft / 2 + 1 : c->n_fft;
        int64_t n = c->batch * nfreq * frames, shape[3] = {c->batch, nfreq, frames};
        double complex *ref = malloc((size_t)n * sizeof *ref);
        ref_stft(c, x, w, ref, nfreq, frames);
        pn_array *r = pn_fft_stft(xa, c->n_fft, c->hop, PN_FFT_DEFAULT, wa, c->center, c->pad,
                                  c->norm, c->onesided);
        CHECK_OK(r);
        char what[64];
        snprintf(what, sizeof what, "stft case %zu", ci);
        if (r) check_complex(what, r, shape, 3, ref, n, 2e-5 * c->n_fft);
        /* unbatched: the same frames */
        if (c->batch == 1) {
            int ax = 0;
            pn_array *r1 = pn_fft_stft(pn_squeeze(xa, &ax, 1), c->n_fft, c->hop, PN_FFT_DEFAULT, wa,
                                       c->center, c->pad, c->norm, c->onesided);
            check_complex(what, r1, shape + 1, 2, ref, n, 2e-5 * c->n_fft);
        }
        free(ref);
        free(x);
        pn_scope_pop();
    }
}

TEST(stft_defaults_and_errors)
{
    pn_scope_push();
    int64_t shape[1] = {64};
    pn_array *x = test_random_array(shape, 1, PN_FLOAT32, -1, 1);
    /* defaults: hop n_fft / 4, window ones(win_length) centred, onesided for real input */
    pn_array *r = pn_fft_stft(x, 16, PN_FFT_DEFAULT, PN_FFT_DEFAULT, NULL, true, NULL, NULL, -1);
    CHECK_OK(r);
    if (r) CHECK(pn_ndim(r) == 2 && pn_shape(r)[0] == 9 && pn_shape(r)[1] == 17 &&
                 pn_array_dtype(r) == PN_COMPLEX64);
    pn_array *ones = pn_ones((int64_t[]){6}, 1, PN_FLOAT32);
    pn_array *a = pn_fft_stft(x, 16, 4, 6, NULL, true, "reflect", "backward", 1);
    pn_array *b = pn_fft_stft(x, 16, 4, PN_FFT_DEFAULT, ones, true, "reflect", "backward", 1);
    CHECK(a && b && pn_item(pn_allclose(a, b, 1e-6, 1e-6, false)) == 1);
    pn_array *xc = pn_astype(x, PN_COMPLEX64);
    pn_array *rc = pn_fft_stft(xc, 16, 4, PN_FFT_DEFAULT, NULL, true, NULL, NULL, -1);
    CHECK(rc && pn_shape(rc)[0] == 16);
    CHECK_ERR(pn_fft_stft(pn_scalar(1, PN_FLOAT32), 4, 1, PN_FFT_DEFAULT, NULL, true, NULL, NULL, -1),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 0, 1, PN_FFT_DEFAULT, NULL, true, NULL, NULL, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 2, PN_FFT_DEFAULT, PN_FFT_DEFAULT, NULL, true, NULL, NULL, -1),
              PN_ERR_INVALID_ARGUMENT); /* hop 2 / 4 = 0 */
    CHECK_ERR(pn_fft_stft(x, 8, 2, 9, NULL, true, NULL, NULL, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 4, 2, PN_FFT_DEFAULT, ones, true, NULL, NULL, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 8, 2, PN_FFT_DEFAULT, pn_ones((int64_t[]){2, 4}, 2, PN_FLOAT32), true,
                          NULL, NULL, -1),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 8, 2, PN_FFT_DEFAULT, NULL, true, "wrap", NULL, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 8, 2, PN_FFT_DEFAULT, NULL, true, NULL, "bad", -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(x, 65, 2, PN_FFT_DEFAULT, NULL, false, NULL, NULL, -1), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_stft(pn_zeros((int64_t[]){0}, 1, PN_FLOAT32), 4, 1, PN_FFT_DEFAULT, NULL, true,
                          NULL, NULL, -1),
              PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* Float64 istft of S (batch, nfreq, frames) as documented: inverse DFT per frame (Hermitian
 * completion when onesided), window, overlap-add, / max(envelope, 1e-8), centre trim. */
static int64_t ref_istft(const double complex *S, int64_t batch, int64_t nfreq, int64_t frames,
                         int64_t n_fft, int64_t hop, const double *w, bool center, bool onesided,
                         double *out)
{
    int64_t total = n_fft + hop * (frames - 1), start = center ? n_fft / 2 : 0;
    int64_t stop = center ? total - n_fft / 2 : total, n = stop - start;
    double *y = calloc((size_t)total, sizeof *y), *env = calloc((size_t)total, sizeof *env);
    for (int64_t b = 0; b < batch; b++) {
        memset(y, 0, (size_t)total * sizeof *y);
        memset(env, 0, (size_t)total * sizeof *env);
        for (int64_t f = 0; f < frames; f++)
            for (int64_t j = 0; j < n_fft; j++) {
                double complex acc = 0;
                for (int64_t k = 0; k < n_fft; k++) {
                    double complex s;
                    if (!onesided) s = k < nfreq ? S[(b * nfreq + k) * frames + f] : 0;
                    else if (k < nfreq) s = S[(b * nfreq + k) * frames + f];
                    else s = n_fft - k < nfreq ? conj(S[(b * nfreq + n_fft - k) * frames + f]) : 0;
                    if (onesided && (k == 0 || (n_fft % 2 == 0 && k == n_fft / 2))) s = creal(s);
                    acc += s * cexp(2 * M_PI * I * (double)(j * k % n_fft) / n_fft);
                }
                y[f * hop + j] += creal(acc) / n_fft * w[j];
                env[f * hop + j] += w[j] * w[j];
            }
        for (int64_t i = 0; i < n; i++) out[b * n + i] = y[start + i] / fmax(env[start + i], 1e-8);
    }
    free(y);
    free(env);
    return n;
}

TEST(istft_matches_reference_and_inverts_stft)
{
    struct {
        int64_t batch, nfreq, frames, n_fft, hop;
        bool center, onesided, hann;
    } cases[] = {
        {2, 9, 7, 16, 4, true, true, false},  {1, 9, 5, 16, 3, true, true, true},
        {2, 8, 6, 15, 4, false, true, true},  {1, 9, 7, 9, 2, true, false, false},
        {1, 5, 4, 8, 10, false, true, false}, /* hop > n_fft: gaps with a zero envelope */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        pn_scope_push();
        int64_t B = cases[ci].batch, F = cases[ci].nfreq, T = cases[ci].frames, n_fft = cases[ci].n_fft;
        int64_t n = B * F * T;
        double complex *S = malloc((size_t)n * sizeof *S);
        float *v = malloc((size_t)(2 * n) * sizeof *v);
        for (int64_t i = 0; i < n; i++) {
            v[2 * i] = (float)test_normal(), v[2 * i + 1] = (float)test_normal();
            S[i] = v[2 * i] + I * (double)v[2 * i + 1];
        }
        pn_array *Sa = pn_array_from_data(v, (int64_t[]){B, F, T}, 3, PN_COMPLEX64);
        double w[64];
        float wf[64];
        for (int64_t j = 0; j < n_fft; j++)
            wf[j] = (float)(w[j] = cases[ci].hann ? 0.5 - 0.5 * cos(2 * M_PI * j / n_fft) : 1);
        pn_array *wa = cases[ci].hann ? pn_array_from_data(wf, &n_fft, 1, PN_FLOAT32) : NULL;
        double *ref = malloc((size_t)(B * (n_fft + cases[ci].hop * T)) * sizeof *ref);
        int64_t len = ref_istft(S, B, F, T, n_fft, cases[ci].hop, w, cases[ci].center,
                                cases[ci].onesided, ref);
        pn_array *r = pn_fft_istft(Sa, n_fft, cases[ci].hop, PN_FFT_DEFAULT, wa, cases[ci].center,
                                   NULL, cases[ci].onesided, PN_FFT_DEFAULT);
        char what[64];
        snprintf(what, sizeof what, "istft case %zu", ci);
        test_check_values(what, r, (int64_t[]){B, len}, 2, PN_FLOAT32, ref, 1e-4, 1e-4);
        free(ref);
        free(S);
        free(v);
        pn_scope_pop();
    }
    /* round trip with a Hann window, several lengths */
    pn_scope_push();
    int64_t shape[2] = {3, test_quick() ? 80 : 400}, n_fft = 32;
    pn_array *x = test_random_array(shape, 2, PN_FLOAT32, -1, 1);
    double *xv = test_to_f64(x);
    float wf[32];
    for (int j = 0; j < 32; j++) wf[j] = (float)(0.5 - 0.5 * cos(2 * M_PI * j / 32));
    pn_array *w = pn_array_from_data(wf, &n_fft, 1, PN_FLOAT32);
    pn_array *s = pn_fft_stft(x, n_fft, 8, PN_FFT_DEFAULT, w, true, NULL, "ortho", -1);
    pn_array *y = pn_fft_istft(s, PN_FFT_DEFAULT, 8, PN_FFT_DEFAULT, w, true, "ortho", -1, shape[1]);
    test_check_values("istft(stft(x))", y, shape, 2, PN_FLOAT32, xv, 1e-4, 1e-4);
    pn_array *yl = pn_fft_istft(s, PN_FFT_DEFAULT, 8, PN_FFT_DEFAULT, w, true, "ortho", -1, shape[1] + 7);
    CHECK(yl && pn_shape(yl)[1] == shape[1] + 7);
    /* past the overlap-added samples (n_fft / 2 + shape[1] of them after the trim): zeros */
    int64_t avail = shape[1] + n_fft / 2, extra = avail + 9;
    pn_array *yz = pn_fft_istft(s, PN_FFT_DEFAULT, 8, PN_FFT_DEFAULT, w, true, "ortho", -1, extra);
    CHECK(yz && pn_shape(yz)[1] == extra);
    CHECK(yz && pn_item(pn_max(pn_abs(pn_slice(yz, (int64_t[]){0, avail}, (int64_t[]){3, extra}, NULL, 2)),
                               NULL, 0, false)) == 0);
    CHECK(yz && pn_item(pn_max(pn_abs(pn_slice(yz, (int64_t[]){0, avail - 4}, (int64_t[]){3, avail}, NULL, 2)),
                               NULL, 0, false)) > 0);
    test_check_values("istft(stft(x), length)", pn_slice(yl, (int64_t[]){0, 0}, shape, NULL, 2), shape, 2,
                      PN_FLOAT32, xv, 1e-4, 1e-4);
    free(xv);
    CHECK_ERR(pn_fft_istft(pn_zeros((int64_t[]){5}, 1, PN_COMPLEX64), PN_FFT_DEFAULT, PN_FFT_DEFAULT,
                           PN_FFT_DEFAULT, NULL, true, NULL, -1, PN_FFT_DEFAULT),
              PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_fft_istft(s, 3, PN_FFT_DEFAULT, PN_FFT_DEFAULT, NULL, true, NULL, -1, PN_FFT_DEFAULT),
              PN_ERR_INVALID_ARGUMENT); /* hop 3 / 4 = 0 */
    CHECK_ERR(pn_fft_istft(s, 16, 4, PN_FFT_DEFAULT, w, true, NULL, -1, PN_FFT_DEFAULT),
              PN_ERR_INVALID_ARGUMENT); /* window longer than n_fft */
    CHECK_ERR(pn_fft_istft(s, PN_FFT_DEFAULT, 8, PN_FFT_DEFAULT, NULL, true, "x", -1, PN_FFT_DEFAULT),
              PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* loss(x) = sum(weights * op(x)) for the linear maps below: op(x) is real. */
typedef struct {
    int which; /* 0: stft reflect, 1: stft constant, 2: istft(stft) */
    pn_array *weights;
} lin_ctx;

static pn_array *lin_op(const lin_ctx *c, pn_array *x)
{
    pn_array *w = pn_array_from_data((float[]){0.3f, 0.8f, 1.0f, 0.9f, 0.5f, 0.2f}, (int64_t[]){6}, 1, PN_FLOAT32);
    if (c->which == 2) {
        pn_array *s = pn_fft_stft(x, 8, 2, PN_FFT_DEFAULT, w, true, NULL, NULL, -1);
        return pn_fft_istft(s, PN_FFT_DEFAULT, 2, PN_FFT_DEFAULT, w, true, NULL, -1, PN_FFT_DEFAULT);
    }
    pn_array *s = pn_fft_stft(x, 8, 3, PN_FFT_DEFAULT, w, true, c->which ? "constant" : "reflect", NULL, -1);
    return pn_add(pn_real(s), pn_multiply(pn_imag(s), pn_weak_float(0.5)));
}

static int lin_loss(void *ctx, int nin, pn_array *const *in, int *nout, pn_array **out)
{
    const lin_ctx *c = ctx;
    *nout = 1;
    out[0] = pn_sum(pn_multiply(lin_op(c, in[0]), c->weights), NULL, 0, false);
    return out[0] ? 0 : -1;
}

/* The gradient of a linear loss equals its central differences at any step: step 1 in
 * float32 keeps the comparison free of rounding noise. */
TEST(stft_istft_gradients)
{
    for (int which = 0; which < 3; which++) {
        pn_scope_push();
        int64_t xs[2] = {2, 13};
        pn_array *x = test_random_array(xs, 2, PN_FLOAT32, -1, 1);
        lin_ctx c = {which, NULL};
        pn_array *y = lin_op(&c, x);
        CHECK_OK(y);
        if (!y) {
            pn_scope_pop();
            continue;
        }
        c.weights = test_random_array(pn_shape(y), pn_ndim(y), PN_FLOAT32, -1, 1);
        pn_closure *f = pn_closure_new(lin_loss, &c, NULL);
        int nout;
        pn_array *out[PN_MAX_OUTPUTS], *grad[1];
        int zero = 0;
        CHECK(pn_value_and_grad_call(f, 1, &x, &zero, 1, &nout, out, grad) == 0);
        double *g = test_to_f64(grad[0]), *xv = test_to_f64(x), num[26];
        for (int i = 0; i < 26 && g && xv; i++) {
            double v[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                float xp[26];
                for (int j = 0; j < 26; j++) xp[j] = (float)(xv[j] + (j == i ? (sgn ? -1 : 1) : 0));
                pn_array *xa = pn_array_from_data(xp, xs, 2, PN_FLOAT32), *o;
                lin_loss(&c, 1, &xa, &nout, &o);
                v[sgn] = pn_item(o);
            }
            num[i] = (v[0] - v[1]) / 2;
        }
        char what[48];
        snprintf(what, sizeof what, "gradient of linear map %d", which);
        if (g && xv) test_check_values(what, grad[0], xs, 2, PN_FLOAT32, num, 1e-4, 1e-4);
        free(g);
        free(xv);
        pn_closure_release(f);
        pn_scope_pop();
    }
}

/* ───────────────────────────── gated delta ───────────────────────────── */

typedef struct {
    int64_t B, T, Hk, Hv, Dk, Dv;
    bool gamma4, state, mask;
} gd_case;

/* Float64 recurrence; y (B, T, Hv, Dv), S (B, Hv, Dv, Dk) (S holds the initial state). */
static void ref_gd(const gd_case *c, const double *q, const double *k, const double *v,
                   const double *g, const double *beta, const double *m, double *y, double *S)
{
    int64_t r = c->Hv / c->Hk, Dk = c->Dk, Dv = c->Dv;
    double *Sn = malloc((size_t)(Dv * Dk) * sizeof *Sn);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->T; t++)
            for (int64_t h = 0; h < c->Hv; h++) {
                const double *qt = q + ((b * c->T + t) * c->Hk + h / r) * Dk;
                const double *kt = k + ((b * c->T + t) * c->Hk + h / r) * Dk;
                const double *vt = v + ((b * c->T + t) * c->Hv + h) * Dv;
                double bt = beta[(b * c->T + t) * c->Hv + h], *Sh = S + (b * c->Hv + h) * Dv * Dk;
                double *yt = y + ((b * c->T + t) * c->Hv + h) * Dv;
                for (int64_t i = 0; i < Dv; i++)
                    for (int64_t j = 0; j < Dk; j++)
                        Sn[i * Dk + j] = Sh[i * Dk + j] * (c->gamma4 ? g[((b * c->T + t) * c->Hv + h) * Dk + j]
                                                                     : g[(b * c->T + t) * c->Hv + h]);
                for (int64_t i = 0; i < Dv; i++) {
                    double kv = 0;
                    for (int64_t j = 0; j < Dk; j++) kv += Sn[i * Dk + j] * kt[j];
                    double d = (vt[i] - kv) * bt;
                    for (int64_t j = 0; j < Dk; j++) Sn[i * Dk + j] += d * kt[j];
                }
                bool on = !m || m[b * c->T + t] != 0;
                for (int64_t i = 0; i < Dv; i++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Dk; j++) acc += Sn[i * Dk + j] * qt[j];
                    yt[i] = on ? acc : 0;
                }
                if (on) memcpy(Sh, Sn, (size_t)(Dv * Dk) * sizeof *Sh);
            }
    free(Sn);
}

static const gd_case GD_CASES[] = {
    {2, 5, 2, 4, 3, 6, false, false, false}, {1, 4, 1, 1, 5, 2, false, true, false},
    {2, 6, 2, 2, 4, 3, true, true, true},    {3, 3, 1, 3, 2, 2, false, false, true},
};

/* Builds the case's random inputs: in[0..6] = q, k, v, gamma, beta, state or NULL, mask or NULL. */
static void gd_inputs(const gd_case *c, pn_dtype dt, pn_array **in)
{
    int64_t qs[4] = {c->B, c->T, c->Hk, c->Dk}, vs[4] = {c->B, c->T, c->Hv, c->Dv};
    int64_t gs[4] = {c->B, c->T, c->Hv, c->Dk}, ss[4] = {c->B, c->Hv, c->Dv, c->Dk};
    in[0] = test_random_array(qs, 4, dt, -1, 1);
    in[1] = pn_divide(test_random_array(qs, 4, dt, -1, 1), pn_weak_float(sqrt((double)c->Dk)));
    in[2] = test_random_array(vs, 4, dt, -1, 1);
    in[3] = test_random_array(gs, c->gamma4 ? 4 : 3, dt, 0.5, 1);
    in[4] = test_random_array(gs, 3, dt, 0, 1);
    in[5] = c->state ? test_random_array(ss, 4, dt, -1, 1) : NULL;
    in[6] = NULL;
    if (c->mask) {
        float mv[64];
        for (int64_t i = 0; i < c->B * c->T; i++) mv[i] = i % 3 == 1 ? 0.0f : 1.0f;
        in[6] = pn_array_from_data(mv, (int64_t[]){c->B, c->T}, 2, PN_FLOAT32);
    }
}

TEST(gated_delta_matches_recurrence)
{
    for (size_t ci = 0; ci < sizeof GD_CASES / sizeof GD_CASES[0]; ci++) {
        const gd_case *c = &GD_CASES[ci];
        pn_dtype types[2] = {PN_FLOAT32, PN_FLOAT64};
        for (int ti = 0; ti < 2; ti++) {
            pn_scope_push();
            pn_array *in[7], *out[2];
            gd_inputs(c, types[ti], in);
            double *x[7] = {0};
            for (int i = 0; i < 7; i++) x[i] = in[i] ? test_to_f64(in[i]) : NULL;
            int64_t ny = c->B * c->T * c->Hv * c->Dv, ns = c->B * c->Hv * c->Dv * c->Dk;
            double *y = malloc((size_t)ny * sizeof *y), *S = calloc((size_t)ns, sizeof *S);
            if (x[5]) memcpy(S, x[5], (size_t)ns * sizeof *S);
            ref_gd(c, x[0], x[1], x[2], x[3], x[4], x[6], y, S);
            int rc = pn_fast_gated_delta_update(in[0], in[1], in[2], in[3], in[4], in[5], in[6], out);
            CHECK_MSG(rc == 0, "gated_delta_update: %s", pn_last_error_message());
            char what[64];
            snprintf(what, sizeof what, "gated delta case %zu %s", ci, pn_dtype_name(types[ti]));
            double tol = types[ti] == PN_FLOAT64 ? 1e-12 : 2e-5;
            if (rc == 0) {
                test_check_values(what, out[0], (int64_t[]){c->B, c->T, c->Hv, c->Dv}, 4, types[ti], y, tol, tol);
                test_check_values(what, out[1], (int64_t[]){c->B, c->Hv, c->Dv, c->Dk}, 4, types[ti], S, tol, tol);
            }
            for (int i = 0; i < 7; i++) free(x[i]);
            free(y);
            free(S);
            pn_scope_pop();
        }
    }
}

static pn_array *gd_op(void *ctx, pn_array *const *in)
{
    pn_array *out[2];
    if (pn_fast_gated_delta_update(in[0], in[1], in[2], in[3], in[4], in[5], NULL, out)) return NULL;
    return pn_add(pn_sum(out[0], NULL, 0, false), pn_sum(pn_square(out[1]), NULL, 0, false));
}

TEST(gated_delta_gradients_dtypes_errors)
{
    pn_scope_push();
    gd_case c = {1, 3, 1, 2, 2, 2, false, true, false};
    pn_array *in[7];
    gd_inputs(&c, PN_FLOAT64, in);
    test_gradcheck("gated_delta_update", gd_op, NULL, 6, in, 1e-5);
    /* dtypes: half inputs give a half output and a float32 state */
    pn_array *h[5], *out[2];
    for (int i = 0; i < 5; i++) h[i] = pn_astype(in[i], PN_FLOAT16);
    CHECK(pn_fast_gated_delta_update(h[0], h[1], h[2], h[3], h[4], NULL, NULL, out) == 0 &&
          pn_array_dtype(out[0]) == PN_FLOAT16 && pn_array_dtype(out[1]) == PN_FLOAT32);
    for (int i = 0; i < 5; i++) h[i] = pn_astype(in[i], PN_INT32);
    CHECK(pn_fast_gated_delta_update(h[0], h[1], h[2], h[3], h[4], NULL, NULL, out) == 0 &&
          pn_array_dtype(out[0]) == PN_FLOAT32 && pn_array_dtype(out[1]) == PN_FLOAT32);
    /* shape errors */
    pn_array *bad3 = pn_zeros((int64_t[]){1, 3, 3}, 3, PN_FLOAT32);
    int rc;
#define GD_ERR(...)                                                                             \
    do {                                                                                        \
        pn_clear_error();                                                                       \
        rc = pn_fast_gated_delta_update(__VA_ARGS__, out);                                      \
        CHECK(rc == -1 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);                          \
        pn_clear_error();                                                                       \
    } while (0)
    GD_ERR(in[0], in[1], bad3, in[3], in[4], NULL, NULL);  /* v 3-d */
    GD_ERR(in[0], in[1], in[2], bad3, in[4], NULL, NULL);  /* gamma Hv 3 != 2 */
    GD_ERR(in[0], in[1], in[2], in[3], bad3, NULL, NULL);  /* beta */
    GD_ERR(in[0], in[1], in[2], in[3], in[4], bad3, NULL); /* state */
    GD_ERR(in[0], in[1], in[2], in[3], in[4], NULL, bad3); /* mask */
    GD_ERR(in[0], in[2], in[2], in[3], in[4], NULL, NULL); /* k != q */
    pn_array *v3 = pn_zeros((int64_t[]){1, 3, 3, 2}, 4, PN_FLOAT32);
    pn_array *q2 = pn_zeros((int64_t[]){1, 3, 2, 2}, 4, PN_FLOAT32);
    GD_ERR(q2, q2, v3, bad3, bad3, NULL, NULL);            /* Hv 3 not a multiple of Hk 2 */
#undef GD_ERR
    pn_scope_pop();
}

/* ───────────────────────────── relu2 ───────────────────────────── */

static pn_array *relu2_op(void *ctx, pn_array *const *in) { return pn_nn_relu2(in[0]); }

TEST(relu2_matches_formula)
{
    int64_t shape[2] = {7, 9};
    pn_dtype types[3] = {PN_FLOAT32, PN_FLOAT64, PN_FLOAT16};
    for (int t = 0; t < 3; t++) {
        pn_scope_push();
        pn_array *x = test_random_array(shape, 2, types[t], -6, 6);
        double *xv = test_to_f64(x), ref[63];
        for (int i = 0; xv && i < 63; i++) ref[i] = xv[i] > 0 ? xv[i] * xv[i] : 0;
        test_check_values("relu2", pn_nn_relu2(x), shape, 2, types[t], ref, test_tol(types[t]), 1e-6);
        free(xv);
        pn_scope_pop();
    }
    pn_scope_push();
    double v[6] = {-2.3, -0.7, 0.4, 1.1, 2.5, 4.2};
    pn_array *x = pn_array_from_data(v, (int64_t[]){6}, 1, PN_FLOAT64);
    test_gradcheck("relu2", relu2_op, NULL, 1, &x, 1e-6);
    CHECK_ERR(pn_nn_relu2(NULL), PN_ERR_INVALID_ARGUMENT);
    pn_scope_pop();
}

/* ───────────────────────────── distributed ───────────────────────────── */

TEST(distributed_single_process)
{
    pn_scope_push();
    CHECK(pn_dist_is_available("any") && pn_dist_is_available("ring")); /* nccl: test_distributed.c */
    pn_dist_group *g = pn_dist_init(false, NULL);
    CHECK(g && pn_dist_group_rank(g) == 0 && pn_dist_group_size(g) == 1);
    CHECK(pn_dist_init(false, "nccl") == g && pn_dist_group_size(NULL) == 1);
    pn_clear_error();
    CHECK(!pn_dist_init(true, "any") && pn_last_error() == PN_ERR_BACKEND);
    pn_clear_error();
    CHECK(!pn_dist_init(false, "foo") && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    CHECK(!pn_dist_group_split(g, 0, -1) && pn_last_error() == PN_ERR_BACKEND);
    pn_clear_error();
    int64_t shape[2] = {3, 4};
    pn_dtype types[3] = {PN_FLOAT32, PN_INT32, PN_BFLOAT16};
    pn_array *(*fns[5])(pn_array *, pn_dist_group *) = {pn_dist_all_sum, pn_dist_all_max, pn_dist_all_min,
                                                        pn_dist_all_gather, pn_dist_sum_scatter};
    for (int t = 0; t < 3; t++) {
        pn_array *x = test_random_array(shape, 2, types[t], -5, 5);
        double *xv = test_to_f64(x);
        for (int f = 0; f < 5; f++) {
            pn_array *r = fns[f](x, f % 2 ? NULL : g);
            CHECK(r != x);
            test_check_values("collective", r, shape, 2, types[t], xv, 0, 0);
        }
        free(xv);
    }
    pn_array *x = pn_ones(shape, 2, PN_FLOAT32);
    CHECK_ERR(pn_dist_send(x, 0, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv(shape, 2, PN_FLOAT32, 0, NULL), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_recv_like(x, 1, g), PN_ERR_INVALID_ARGUMENT);
    CHECK_ERR(pn_dist_all_sum(NULL, g), PN_ERR_INVALID_ARGUMENT);
    pn_dist_group_free(g);
    pn_scope_pop();
}
