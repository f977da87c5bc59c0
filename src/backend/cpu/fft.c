/* fft.c — the CPU FFT: a mixed-radix Stockham autosort transform (radix 4, 2, 3 butterflies, a
 * generic butterfly for other primes up to 61) and Bluestein's chirp-z algorithm over a power
 * of two for lengths with a larger prime factor. Plans (factors, twiddles computed in double
 * and rounded once) are cached per length; strided lines are gathered into per-thread scratch;
 * OpenMP runs over the lines, or inside the stages of one long transform. Inverse transforms
 * are conj(forward(conj(x))), real ones go through the full complex transform. */
#include "backend/cpu/fft.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

typedef struct cpx {
    float re, im;
} cpx;

static inline cpx cmul(cpx a, cpx b)
{
    return (cpx){a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
static inline cpx cadd(cpx a, cpx b) { return (cpx){a.re + b.re, a.im + b.im}; }
static inline cpx csub(cpx a, cpx b) { return (cpx){a.re - b.re, a.im - b.im}; }
static inline cpx cconj(cpx a) { return (cpx){a.re, -a.im}; }

/* Largest prime factor a Stockham plan handles with its generic butterfly. */
#define FFT_MAX_RADIX 61
#define FFT_MAX_STAGES 64
/* Transforms at least this long run their stages on all threads when there are fewer lines
 * than threads. */
#define FFT_PAR_LEN 8192

/* ───────────────────────────── plans ───────────────────────────── */

typedef struct fft_plan {
    int64_t n;
    int nstages;
    int radix[FFT_MAX_STAGES];
    cpx *tw[FFT_MAX_STAGES];    /* stage s: L * (p - 1) twiddles W_{Lp}^{qj} at j * (p-1) + q-1 */
    cpx *roots[FFT_MAX_STAGES]; /* generic stages: W_p^k, k < p */
    /* Bluestein (nstages == 0 and m > 0): convolution length m (a power of two), its plan,
     * the chirp w_k = e^{-i pi k^2 / n} and the transform of the conjugate chirp / m. */
    int64_t m;
    const struct fft_plan *inner;
    cpx *chirp, *kernel;
} fft_plan;

static cpx expi(double angle) { return (cpx){(float)cos(angle), (float)sin(angle)}; }

static const fft_plan *plan_get(int64_t n);
static void plan_put(const fft_plan *p);
static cpx *stockham(const fft_plan *p, cpx *x, cpx *y, bool par);

static void plan_free(fft_plan *p)
{
    if (!p) return;
    for (int s = 0; s < p->nstages; s++) {
        free(p->tw[s]);
        free(p->roots[s]);
    }
    free(p->chirp);
    free(p->kernel);
    plan_put(p->inner);
    free(p);
}

/* The Stockham plan of n when every prime factor is at most FFT_MAX_RADIX; NULL (no error)
 * when one is larger, or on out of memory (*oom set). */
static fft_plan *plan_stockham(int64_t n, bool *oom)
{
    int radix[FFT_MAX_STAGES], ns = 0;
    int64_t r = n;
    while (r % 4 == 0) radix[ns++] = 4, r /= 4;
    if (r % 2 == 0) radix[ns++] = 2, r /= 2;
    for (int64_t f = 3; r > 1 && f <= FFT_MAX_RADIX; f += 2)
        while (r % f == 0) radix[ns++] = (int)f, r /= f;
    if (r > 1) return NULL;
    fft_plan *p = calloc(1, sizeof *p);
    if (!p) return *oom = true, NULL;
    p->n = n;
    p->nstages = ns;
    int64_t L = 1;
    for (int s = 0; s < ns; s++) {
        int q = radix[s];
        p->radix[s] = q;
        p->tw[s] = malloc((size_t)(L * (q - 1) + 1) * sizeof(cpx));
        if (!p->tw[s]) goto fail;
        int64_t Lq = L * q;
        for (int64_t j = 0; j < L; j++)
            for (int k = 1; k < q; k++)
                p->tw[s][j * (q - 1) + k - 1] = expi(-2 * M_PI * (double)((k * j) % Lq) / (double)Lq);
        if (q > 4) {
            p->roots[s] = malloc((size_t)q * sizeof(cpx));
            if (!p->roots[s]) goto fail;
            for (int k = 0; k < q; k++) p->roots[s][k] = expi(-2 * M_PI * k / q);
        }
        L = Lq;
    }
    return p;
fail:
    plan_free(p);
    *oom = true;
    return NULL;
}

/* Bluestein's plan of n over the power of two m >= 2n - 1. */
static fft_plan *plan_bluestein(int64_t n, bool *oom)
{
    int64_t m = 1;
    while (m < 2 * n - 1) m *= 2;
    const fft_plan *inner = plan_get(m);
    fft_plan *p = inner ? calloc(1, sizeof *p) : NULL;
    if (!p) return *oom = true, NULL;
    p->n = n;
    p->m = m;
    p->inner = inner;
    p->chirp = malloc((size_t)n * sizeof(cpx));
    p->kernel = malloc((size_t)m * sizeof(cpx));
    cpx *tmp = malloc((size_t)m * sizeof(cpx));
    if (!p->chirp || !p->kernel || !tmp) {
        free(tmp);
        plan_free(p);
        return *oom = true, NULL;
    }
    for (int64_t k = 0; k < n; k++) {
        /* k^2 mod 2n keeps the angle exact for large k */
        uint64_t k2 = (uint64_t)k * (uint64_t)k % (uint64_t)(2 * n);
        p->chirp[k] = expi(-M_PI * (double)k2 / (double)n);
    }
    for (int64_t j = 0; j < m; j++) p->kernel[j] = (cpx){0, 0};
    for (int64_t j = 0; j < n; j++) {
        cpx c = cconj(p->chirp[j]);
        p->kernel[j] = c;
        if (j) p->kernel[m - j] = c;
    }
    cpx *r = stockham(inner, p->kernel, tmp, false);
    float inv = (float)(1.0 / (double)m);
    for (int64_t j = 0; j < m; j++) p->kernel[j] = (cpx){r[j].re * inv, r[j].im * inv};
    free(tmp);
    return p;
}

/* The plan cache: open addressing by length, never evicted (plans are small: about n complex
 * values). When it is full, plans are built per call and freed after (plan_put). */
#define FFT_CACHE 256
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static fft_plan *cache[FFT_CACHE];

static const fft_plan *cache_find(int64_t n, int *slot)
{
    unsigned h = (unsigned)(((uint64_t)n * 0x9E3779B97F4A7C15ull) >> 56) % FFT_CACHE;
    for (int i = 0; i < FFT_CACHE; i++) {
        int s = (int)((h + i) % FFT_CACHE);
        if (!cache[s]) {
            *slot = s;
            return NULL;
        }
        if (cache[s]->n == n) return cache[s];
    }
    *slot = -1;
    return NULL;
}

/* The plan of length n (cached), or NULL on out of memory. A plan from a full cache is
 * marked by plan_cached() == false and must go back through plan_put. */
static const fft_plan *plan_get(int64_t n)
{
    int slot;
    pthread_mutex_lock(&cache_lock);
    const fft_plan *c = cache_find(n, &slot);
    pthread_mutex_unlock(&cache_lock);
    if (c) return c;
    bool oom = false;
    fft_plan *p = plan_stockham(n, &oom);
    if (!p && !oom) p = plan_bluestein(n, &oom);
    if (!p) return NULL;
    pthread_mutex_lock(&cache_lock);
    c = cache_find(n, &slot); /* another thread may have built it meanwhile */
    if (!c && slot >= 0) cache[slot] = p, c = p;
    pthread_mutex_unlock(&cache_lock);
    if (c != p && c) plan_free(p);
    return c ? c : p;
}

static bool plan_cached(const fft_plan *p)
{
    int slot;
    pthread_mutex_lock(&cache_lock);
    bool in = cache_find(p->n, &slot) == p;
    pthread_mutex_unlock(&cache_lock);
    return in;
}

static void plan_put(const fft_plan *p)
{
    if (p && !plan_cached(p)) plan_free((fft_plan *)p);
}

/* Complex elements of scratch one line of p needs: the line, and two work buffers. */
static int64_t plan_scratch(const fft_plan *p) { return p->n + 2 * (p->m ? p->m : p->n); }

/* ───────────────────────────── Stockham stages ───────────────────────────── */

/* One radix-P stage: L transforms of length L done, m = n / (L P) left. Input x[j][q][s]
 * (j < L, q < P, s < m), output y[j + L r][s]. The body reads a[q] (twiddled inputs) and writes
 * outputs with OUT(r, value). */
#define STAGE(P, ...)                                                                          \
    do {                                                                                       \
        const int64_t os_ = L * m;                                                             \
        _Pragma("omp parallel for collapse(2) schedule(static) if (par)")                      \
        for (int64_t j = 0; j < L; j++)                                                        \
            for (int64_t s = 0; s < m; s++) {                                                  \
                const cpx *w = tw + j * (P - 1);                                               \
                const cpx *xi = x + j * m * P + s;                                             \
                cpx *yo = y + j * m + s;                                                       \
                cpx a[P];                                                                      \
                a[0] = xi[0];                                                                  \
                for (int q = 1; q < P; q++) a[q] = j ? cmul(xi[q * m], w[q - 1]) : xi[q * m];  \
                __VA_ARGS__                                                                    \
            }                                                                                  \
    } while (0)
#define OUT(r, v) (yo[(r) * os_] = (v))

static void stage2(int64_t L, int64_t m, const cpx *tw, const cpx *x, cpx *y, bool par)
{
    STAGE(2, {
        OUT(0, cadd(a[0], a[1]));
        OUT(1, csub(a[0], a[1]));
    });
}

static void stage3(int64_t L, int64_t m, const cpx *tw, const cpx *x, cpx *y, bool par)
{
    const float h = 0.86602540378443864676f; /* sqrt(3)/2 */
    STAGE(3, {
        cpx t1 = cadd(a[1], a[2]), u = csub(a[1], a[2]);
        cpx t2 = {a[0].re - 0.5f * t1.re, a[0].im - 0.5f * t1.im};
        cpx v = {h * u.im, -h * u.re}; /* -i (sqrt(3)/2) u */
        OUT(0, cadd(a[0], t1));
        OUT(1, cadd(t2, v));
        OUT(2, csub(t2, v));
    });
}

static void stage4(int64_t L, int64_t m, const cpx *tw, const cpx *x, cpx *y, bool par)
{
    STAGE(4, {
        cpx t0 = cadd(a[0], a[2]), t1 = csub(a[0], a[2]);
        cpx t2 = cadd(a[1], a[3]), t3 = csub(a[1], a[3]);
        OUT(0, cadd(t0, t2));
        OUT(2, csub(t0, t2));
        OUT(1, ((cpx){t1.re + t3.im, t1.im - t3.re})); /* t1 - i t3 */
        OUT(3, ((cpx){t1.re - t3.im, t1.im + t3.re})); /* t1 + i t3 */
    });
}

/* A prime radix p <= FFT_MAX_RADIX: a direct DFT of the p twiddled inputs, summed in double. */
static void stage_generic(int p, int64_t L, int64_t m, const cpx *tw, const cpx *roots,
                          const cpx *x, cpx *y, bool par)
{
    const int64_t os_ = L * m;
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int64_t j = 0; j < L; j++)
        for (int64_t s = 0; s < m; s++) {
            const cpx *w = tw + j * (p - 1);
            const cpx *xi = x + j * m * p + s;
            cpx *yo = y + j * m + s;
            cpx a[FFT_MAX_RADIX];
            a[0] = xi[0];
            for (int q = 1; q < p; q++) a[q] = j ? cmul(xi[q * m], w[q - 1]) : xi[q * m];
            for (int r = 0; r < p; r++) {
                double re = 0, im = 0;
                int k = 0; /* q * r mod p */
                for (int q = 0; q < p; q++) {
                    cpx c = roots[k];
                    re += (double)a[q].re * c.re - (double)a[q].im * c.im;
                    im += (double)a[q].re * c.im + (double)a[q].im * c.re;
                    k += r;
                    if (k >= p) k -= p;
                }
                yo[r * os_] = (cpx){(float)re, (float)im};
            }
        }
}

/* The forward transform of x (n values; x is overwritten) using y as the other buffer;
 * returns whichever of the two holds the result. par: threads inside each stage. */
static cpx *stockham(const fft_plan *p, cpx *x, cpx *y, bool par)
{
    int64_t L = 1, n = p->n;
    for (int s = 0; s < p->nstages; s++) {
        int q = p->radix[s];
        int64_t m = n / (L * q);
        switch (q) {
        case 2: stage2(L, m, p->tw[s], x, y, par); break;
        case 3: stage3(L, m, p->tw[s], x, y, par); break;
        case 4: stage4(L, m, p->tw[s], x, y, par); break;
        default: stage_generic(q, L, m, p->tw[s], p->roots[s], x, y, par); break;
        }
        cpx *t = x;
        x = y;
        y = t;
        L *= q;
    }
    return x;
}

/* The forward transform of the n values at x (scratch: 2 * max(n, m) more), by Stockham or
 * Bluestein; returns where the result is (x or scratch). */
static cpx *transform(const fft_plan *p, cpx *x, cpx *work, bool par)
{
    if (!p->m) return stockham(p, x, work, par);
    int64_t n = p->n, m = p->m;
    cpx *a = work, *b = work + m;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < m; k++) a[k] = k < n ? cmul(x[k], p->chirp[k]) : (cpx){0, 0};
    cpx *r = stockham(p->inner, a, b, par);
    /* conj(A .* K): the inverse transform as conj(forward(conj(.))) */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < m; k++) r[k] = cconj(cmul(r[k], p->kernel[k]));
    cpx *o = r == a ? b : a;
    r = stockham(p->inner, r, o, par);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < n; k++) x[k] = cmul(p->chirp[k], cconj(r[k]));
    return x;
}

/* ───────────────────────────── lines ───────────────────────────── */

/* One line: gathers from src (element stride ss), transforms, scatters to dst (stride ds)
 * times scale. scratch holds plan_scratch(p) values. */
static void fft_line(const fft_plan *p, int kind, bool inv, const char *src, int64_t ss,
                     char *dst, int64_t ds, float scale, cpx *scratch, bool par)
{
    int64_t n = p->n, half = n / 2 + 1;
    cpx *x = scratch, *work = scratch + n;
    float cj = inv ? -1.0f : 1.0f; /* inverse: conj(forward(conj(x))) */
    if (kind == PNK_FFT_C2C) {
        const cpx *s = (const cpx *)src;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t k = 0; k < n; k++) x[k] = (cpx){s[k * ss].re, cj * s[k * ss].im};
    } else if (kind == PNK_FFT_R2C) {
        const float *s = (const float *)src;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t k = 0; k < n; k++) x[k] = (cpx){s[k * ss], 0};
    } else { /* the Hermitian extension of the half spectrum */
        const cpx *s = (const cpx *)src;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t k = 0; k < n; k++) {
            cpx v = k < half ? s[k * ss] : cconj(s[(n - k) * ss]);
            x[k] = (cpx){v.re, cj * v.im};
        }
    }
    cpx *r = transform(p, x, work, par);
    if (kind == PNK_FFT_C2R) {
        float *d = (float *)dst;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t k = 0; k < n; k++) d[k * ds] = r[k].re * scale;
        return;
    }
    cpx *d = (cpx *)dst;
    int64_t nout = kind == PNK_FFT_R2C ? half : n;
    float sc = cj * scale;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < nout; k++) d[k * ds] = (cpx){r[k].re * scale, r[k].im * sc};
}

/* The lines of a pass: count lines of p's length, line l starting at element offsets
 * soff(l) / doff(l) from the outer dims (extents ext, strides sstr / dstr, nd of them,
 * row-major), the transformed elements at strides ss / ds. */
typedef struct fft_lines {
    int nd;
    int64_t ext[PNK_FFT_MAX_AXES], sstr[PNK_FFT_MAX_AXES], dstr[PNK_FFT_MAX_AXES];
    int64_t count, ss, ds;
    size_t selem, delem; /* element sizes of the two sides */
} fft_lines;

static void line_offsets(const fft_lines *L, int64_t l, int64_t *so, int64_t *dO)
{
    int64_t a = 0, b = 0;
    for (int d = L->nd - 1; d >= 0; d--) {
        int64_t i = l % L->ext[d];
        l /= L->ext[d];
        a += i * L->sstr[d];
        b += i * L->dstr[d];
    }
    *so = a;
    *dO = b;
}

static int run_lines(int kind, bool inv, int64_t n, const fft_lines *L, const char *src,
                     char *dst, double scale)
{
    const fft_plan *p = plan_get(n);
    if (!p) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[fft] Out of memory building a plan.");
    size_t per = (size_t)plan_scratch(p) * sizeof(cpx);
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    bool inner = L->count < nt && n >= FFT_PAR_LEN && nt > 1;
    int failed = 0;
    if (inner || L->count == 1 || (double)L->count * n < 4096) {
        cpx *scratch = malloc(per);
        if (!scratch) failed = 1;
        for (int64_t l = 0; l < L->count && scratch; l++) {
            int64_t so, dO;
            line_offsets(L, l, &so, &dO);
            fft_line(p, kind, inv, src + so * L->selem, L->ss, dst + dO * L->delem, L->ds,
                     (float)scale, scratch, inner);
        }
        free(scratch);
    } else {
#pragma omp parallel reduction(| : failed)
        {
            cpx *scratch = malloc(per);
            failed |= !scratch;
#pragma omp for schedule(static)
            for (int64_t l = 0; l < L->count; l++) {
                if (!scratch) continue;
                int64_t so, dO;
                line_offsets(L, l, &so, &dO);
                fft_line(p, kind, inv, src + so * L->selem, L->ss, dst + dO * L->delem, L->ds,
                         (float)scale, scratch, false);
            }
            free(scratch);
        }
    }
    plan_put(p);
    if (failed) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[fft] Out of memory for scratch.");
    return 0;
}

/* See fft.h. */
int pnK_fft_lines(int kind, bool inverse, int64_t n, int64_t count, const void *in,
                  int64_t istride, int64_t idist, void *out, int64_t ostride, int64_t odist,
                  double scale)
{
    fft_lines L = {.nd = 1, .ext = {count}, .sstr = {idist}, .dstr = {odist}, .count = count,
                   .ss = istride, .ds = ostride};
    L.selem = kind == PNK_FFT_R2C ? sizeof(float) : sizeof(cpx);
    L.delem = kind == PNK_FFT_C2R ? sizeof(float) : sizeof(cpx);
    if (count <= 0) return 0;
    return run_lines(kind, inverse, n, &L, in, out, scale);
}

/* ───────────────────────────── the primitive's kernel ───────────────────────────── */

/* One pass along axis: src (shape sshape, strides sstr) to dst (dshape, dstr), which agree
 * off the axis; n is the logical length. */
static int fft_pass(int kind, bool inv, int ndim, int axis, int64_t n, const char *src,
                    const int64_t *sshape, const int64_t *sstr, char *dst,
                    const int64_t *dshape, const int64_t *dstr)
{
    fft_lines L = {.nd = 0, .count = 1, .ss = sstr[axis], .ds = dstr[axis]};
    L.selem = kind == PNK_FFT_R2C ? sizeof(float) : sizeof(cpx);
    L.delem = kind == PNK_FFT_C2R ? sizeof(float) : sizeof(cpx);
    for (int d = 0; d < ndim; d++) {
        if (d == axis) continue;
        L.ext[L.nd] = dshape[d];
        L.sstr[L.nd] = sstr[d];
        L.dstr[L.nd++] = dstr[d];
        L.count *= dshape[d];
    }
    (void)sshape;
    return run_lines(kind, inv, n, &L, src, dst, inv ? 1.0 / (double)n : 1.0);
}

/* See fft.h. */
int pnK_fft_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_fft_params *p = PNC_PARAMS(node, pnK_fft_params);
    pn_array *x = in[0], *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0 || x->size == 0) return 0;
    int nd = o->ndim, last = p->axes[p->naxes - 1];
    bool inv = p->inverse;
    int64_t ostr[PNC_MAX_NDIM];
    pnC_row_strides(o->shape, nd, ostr);
    char *xd = pnC_data(x), *od = pnC_data(o);
    if (p->kind == PNK_FFT_C2C) {
        for (int i = 0; i < p->naxes; i++) {
            int ax = p->axes[i];
            bool first = i == 0;
            if (fft_pass(PNK_FFT_C2C, inv, nd, ax, o->shape[ax], first ? xd : od,
                         first ? x->shape : o->shape, first ? x->strides : ostr, od, o->shape,
                         ostr))
                return -1;
        }
        return 0;
    }
    if (p->kind == PNK_FFT_R2C) {
        if (fft_pass(PNK_FFT_R2C, false, nd, last, x->shape[last], xd, x->shape, x->strides, od,
                     o->shape, ostr))
            return -1;
        for (int i = 0; i + 1 < p->naxes; i++) {
            int ax = p->axes[i];
            if (fft_pass(PNK_FFT_C2C, false, nd, ax, o->shape[ax], od, o->shape, ostr, od,
                         o->shape, ostr))
                return -1;
        }
        return 0;
    }
    /* C2R: the complex inverse over the other axes into a temporary, then the real axis */
    pn_array *t = NULL;
    const char *src = xd;
    const int64_t *sstr = x->strides;
    int64_t tstr[PNC_MAX_NDIM];
    if (p->naxes > 1) {
        t = pnC_new_temp(PN_COMPLEX64, x->shape, nd);
        if (!t) return -1;
        pnC_row_strides(x->shape, nd, tstr);
        char *td = pnC_data(t);
        for (int i = 0; i + 1 < p->naxes; i++) {
            int ax = p->axes[i];
            bool first = i == 0;
            if (fft_pass(PNK_FFT_C2C, true, nd, ax, x->shape[ax], first ? xd : td, x->shape,
                         first ? x->strides : tstr, td, x->shape, tstr)) {
                pnC_decref(t);
                return -1;
            }
        }
        src = td;
        sstr = tstr;
    }
    int rc = fft_pass(PNK_FFT_C2R, true, nd, last, o->shape[last], src, x->shape, sstr, od,
                      o->shape, ostr);
    if (t) pnC_decref(t);
    return rc;
}
