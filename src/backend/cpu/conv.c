/* conv.c — the CPU Convolution kernel (general N-d, grouped, strided, padded, dilated, flipped).
 * im2col: each output position becomes one row of a scratch matrix holding the input patch it
 * reads, laid out [group][kernel taps][channels of the group], so that group g's block is a
 * plain row-major matrix; one GEMM per group (pnK_gemm: OpenBLAS for f32/f64, Ponte's kernel for
 * f16/bf16) multiplies it by that group's weight rows. Rows go in tiles of about PNK_CONV_TILE
 * bytes shared by the threads in one parallel region, each thread building a tile in its cache
 * and multiplying it with a single-threaded GEMM (half types: PNK_CONV_SCRATCH-sized tiles, one
 * thread building them, their GEMM threading itself); with few output channels per group the
 * product runs transposed (BLAS is faster with the long dimension as its columns). 1x1
 * convolutions skip im2col; short reductions (a first layer's few input channels) run a direct
 * loop instead, and so does a first layer's weight gradient (conv_swapped_direct). */
#include "backend/cpu/conv.h"
#include "backend/cpu/gemm.h"

#include <omp.h>
#include <string.h>

/* Largest im2col scratch buffer, in bytes. */
#define PNK_CONV_SCRATCH ((int64_t)64 << 20)

typedef pnK_conv_geom conv_geom;

/* See conv.h. */
void pnK_conv_geom_init(pnK_conv_geom *g, const pnK_conv_params *p, const pn_array *x,
                        const pn_array *w, const pn_array *o)
{
    int nsp = p->nsp, lead = 3 - nsp;
    g->N = x->shape[0];
    g->C = x->shape[x->ndim - 1];
    g->O = w->shape[0];
    g->G = p->groups;
    g->Cg = w->shape[w->ndim - 1];
    g->Og = g->O / g->G;
    g->P = 1;
    g->KP = 1;
    g->flip = p->flip;
    for (int d = 0; d < 3; d++) {
        int i = d - lead; /* spatial axis of the arrays, or < 0 for a padding axis */
        g->in[d] = i < 0 ? 1 : x->shape[1 + i];
        g->k[d] = i < 0 ? 1 : w->shape[1 + i];
        g->out[d] = i < 0 ? 1 : o->shape[1 + i];
        g->s[d] = i < 0 ? 1 : p->stride[i];
        g->pl[d] = i < 0 ? 0 : p->pad_lo[i];
        g->kd[d] = i < 0 ? 1 : p->kdil[i];
        g->id[d] = i < 0 ? 1 : p->idil[i];
        g->din[d] = g->in[d] > 0 ? (g->in[d] - 1) * g->id[d] + 1 : 0;
        g->P *= g->out[d];
        g->KP *= g->k[d];
    }
}

/* Input index along axis d read by output position o through kernel tap t (already flipped
 * when the kernel is), or -1 when that tap lands on padding or between dilated elements. */
static inline int64_t tap_index(const conv_geom *g, int d, int64_t o, int64_t t)
{
    int64_t j = o * g->s[d] + t * g->kd[d] - g->pl[d];
    if (j < 0 || j >= g->din[d]) return -1;
    if (g->id[d] == 1) return j;
    return j % g->id[d] ? -1 : j / g->id[d];
}

/* Writes row r (an output position, row-major over (N, out...)) of the im2col matrix to dst:
 * G blocks of KP * Cg elements, block g holding channels [g Cg, (g+1) Cg) of each tap. x is the
 * contiguous input. */
static void im2col_row(const conv_geom *g, const char *x, char *dst, int64_t r, size_t es)
{
    int64_t o[3];
    for (int d = 2; d >= 0; d--) {
        o[d] = r % g->out[d];
        r /= g->out[d];
    }
    const char *xn = x + (size_t)(r * g->in[0] * g->in[1] * g->in[2] * g->C) * es;
    size_t run = (size_t)g->Cg * es, block = (size_t)(g->KP * g->Cg) * es;
    int64_t t = 0; /* column tap */
    for (int64_t t0 = 0; t0 < g->k[0]; t0++) {
        int64_t i0 = tap_index(g, 0, o[0], g->flip ? g->k[0] - 1 - t0 : t0);
        for (int64_t t1 = 0; t1 < g->k[1]; t1++) {
            int64_t i1 = i0 < 0 ? -1 : tap_index(g, 1, o[1], g->flip ? g->k[1] - 1 - t1 : t1);
            for (int64_t t2 = 0; t2 < g->k[2]; t2++, t++) {
                int64_t i2 = i1 < 0 ? -1 : tap_index(g, 2, o[2], g->flip ? g->k[2] - 1 - t2 : t2);
                char *d = dst + (size_t)t * run;
                if (i2 < 0) {
                    for (int64_t c = 0; c < g->G; c++) memset(d + (size_t)c * block, 0, run);
                    continue;
                }
                const char *s = xn + (size_t)(((i0 * g->in[1] + i1) * g->in[2] + i2) * g->C) * es;
                if (g->G == 1) {
                    memcpy(d, s, run);
                } else {
                    for (int64_t c = 0; c < g->G; c++) memcpy(d + (size_t)c * block, s + (size_t)c * run, run);
                }
            }
        }
    }
}

/* Direct path for short reductions (first layers: one group, kdim = KP * C <= DIRECT_KDIM) and
 * depthwise convolutions (one input and one output channel per group), float32/float64: each
 * output row accumulates, over its valid taps, input elements times rows of the transposed
 * weight wt (kdim, O). No im2col buffer, no GEMM packing (which costs more than the arithmetic
 * when kdim is a handful), no GEMM per group. With one group the output channels go in blocks
 * of DIRECT_OB(T) (a few vector registers of accumulators) over the row's valid taps, listed
 * once per row. */
#define DIRECT_KDIM 64
#define DIRECT_OB(T) ((int64_t)(128 / sizeof(T)))
/* a0..a3 (the caller's four V accumulators of L lanes) += x times the 4 L elements at w
 * (unaligned loads through memcpy). */
#define VEC4_FMA(V, L, x, w)                                                                   \
    do {                                                                                       \
        V xv_ = (V){0} + (x), w0_, w1_, w2_, w3_;                                              \
        memcpy(&w0_, (w), sizeof(V)), memcpy(&w1_, (w) + (L), sizeof(V));                      \
        memcpy(&w2_, (w) + 2 * (L), sizeof(V)), memcpy(&w3_, (w) + 3 * (L), sizeof(V));        \
        a0 += xv_ * w0_, a1 += xv_ * w1_, a2 += xv_ * w2_, a3 += xv_ * w3_;                    \
    } while (0)
/* One block of W <= DIRECT_OB(T) output channels from j0 of the row y, its accumulators in
 * four 32-byte vectors (GCC/Clang vector extension: registers, where a plain array of them
 * stays in memory) when the block is whole, a plain loop for the last, partial block. */
#define DIRECT_BLOCK(T, V, W)                                                                  \
    do {                                                                                       \
        if ((W) == DIRECT_OB(T)) {                                                             \
            const int64_t L = (int64_t)(sizeof(V) / sizeof(T));                                \
            V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                          \
            for (int v = 0; v < nv; v++) {                                                     \
                const T *xs = xn + xo[v], *wr = wt + wo[v] + j0;                               \
                for (int64_t c = 0; c < C; c++, wr += O) VEC4_FMA(V, L, xs[c], wr);            \
            }                                                                                  \
            memcpy(y + j0, &a0, sizeof(V)), memcpy(y + j0 + L, &a1, sizeof(V));                \
            memcpy(y + j0 + 2 * L, &a2, sizeof(V)), memcpy(y + j0 + 3 * L, &a3, sizeof(V));    \
            break;                                                                             \
        }                                                                                      \
        for (int64_t jj = 0; jj < (W); jj++) y[j0 + jj] = 0;                                   \
        for (int v = 0; v < nv; v++) {                                                         \
            const T *xs = xn + xo[v], *wr = wt + wo[v] + j0;                                   \
            for (int64_t c = 0; c < C; c++) {                                                  \
                T xv = xs[c];                                                                  \
                for (int64_t jj = 0; jj < (W); jj++) y[j0 + jj] += xv * wr[c * O + jj];        \
            }                                                                                  \
        }                                                                                      \
    } while (0)
typedef float direct_vf __attribute__((vector_size(32)));
typedef double direct_vd __attribute__((vector_size(32)));
#define CONV_DIRECT(T, V, NAME)                                                                 \
    static void NAME(const conv_geom *g, const T *x, const T *wt, T *out)                      \
    {                                                                                          \
        int64_t rows = g->N * g->P, C = g->C, O = g->O;                                        \
        _Pragma("omp parallel for schedule(static) if (rows * O > PNC_PAR_GRAIN)")             \
        for (int64_t r = 0; r < rows; r++) {                                                   \
            T *y = out + r * O;                                                                \
            int64_t o[3], q = r, xo[DIRECT_KDIM], wo[DIRECT_KDIM];                             \
            for (int d = 2; d >= 0; d--) o[d] = q % g->out[d], q /= g->out[d];                 \
            const T *xn = x + q * g->in[0] * g->in[1] * g->in[2] * C;                          \
            if (g->G == 1) { /* the valid taps: input offsets xo, weight offsets wo */         \
                int nv = 0;                                                                    \
                int64_t t = 0;                                                                 \
                for (int64_t t0 = 0; t0 < g->k[0]; t0++) {                                     \
                    int64_t i0 = tap_index(g, 0, o[0], g->flip ? g->k[0] - 1 - t0 : t0);       \
                    for (int64_t t1 = 0; t1 < g->k[1]; t1++) {                                 \
                        int64_t i1 = i0 < 0 ? -1                                               \
                                            : tap_index(g, 1, o[1], g->flip ? g->k[1] - 1 - t1 : t1); \
                        for (int64_t t2 = 0; t2 < g->k[2]; t2++, t++) {                        \
                            int64_t i2 = i1 < 0 ? -1                                           \
                                                : tap_index(g, 2, o[2], g->flip ? g->k[2] - 1 - t2 : t2); \
                            if (i2 < 0) continue;                                              \
                            xo[nv] = ((i0 * g->in[1] + i1) * g->in[2] + i2) * C;               \
                            wo[nv++] = t * C * O;                                              \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
                for (int64_t j0 = 0; j0 < O; j0 += DIRECT_OB(T))                               \
                    DIRECT_BLOCK(T, V, O - j0 < DIRECT_OB(T) ? O - j0 : DIRECT_OB(T));         \
                continue;                                                                      \
            }                                                                                  \
            for (int64_t j = 0; j < O; j++) y[j] = 0; /* depthwise */                          \
            int64_t t = 0;                                                                     \
            for (int64_t t0 = 0; t0 < g->k[0]; t0++) {                                         \
                int64_t i0 = tap_index(g, 0, o[0], g->flip ? g->k[0] - 1 - t0 : t0);           \
                for (int64_t t1 = 0; t1 < g->k[1]; t1++) {                                     \
                    int64_t i1 = i0 < 0 ? -1                                                   \
                                        : tap_index(g, 1, o[1], g->flip ? g->k[1] - 1 - t1 : t1); \
                    for (int64_t t2 = 0; t2 < g->k[2]; t2++, t++) {                            \
                        int64_t i2 = i1 < 0 ? -1                                               \
                                            : tap_index(g, 2, o[2], g->flip ? g->k[2] - 1 - t2 : t2); \
                        if (i2 < 0) continue;                                                  \
                        const T *xs = xn + ((i0 * g->in[1] + i1) * g->in[2] + i2) * C;         \
                        const T *wr = wt + t * O;                                              \
                        for (int64_t j = 0; j < O; j++) y[j] += xs[j] * wr[j];                 \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }
CONV_DIRECT(float, direct_vf, conv_direct_f32)
CONV_DIRECT(double, direct_vd, conv_direct_f64)

/* Whether the convolution is a plain matrix product of the input rows: a 1x1 kernel at stride
 * 1 over an undilated, unpadded input. */
static bool conv_is_pointwise(const conv_geom *g)
{
    for (int d = 0; d < 3; d++)
        if (g->k[d] != 1 || g->s[d] != 1 || g->pl[d] != 0 || g->id[d] != 1 || g->out[d] != g->in[d])
            return false;
    return true;
}

/* Whether a (n0, mid..., nl) is a row-contiguous array of shape (nl, mid..., n0) with its first
 * and last axes swapped, as the vjp hands the weight-gradient convolution its input (channels
 * as batch) and weight (the cotangent, batch as channels). Extents of 1 match any stride. */
static bool swapped_layout(const pn_array *a)
{
    int nd = a->ndim;
    if (a->shape[0] != 1 && a->strides[0] != 1) return false;
    int64_t s = a->shape[0];
    for (int d = nd - 2; d >= 1; d--) {
        if (a->shape[d] != 1 && a->strides[d] != s) return false;
        s *= a->shape[d];
    }
    return a->shape[nd - 1] == 1 || a->strides[nd - 1] == s;
}

/* Direct form of conv_swapped for a handful of output rows (cols = P * N <= SWAPPED_DIRECT_COLS,
 * e.g. the weight gradient of a first layer with 1 or 3 input channels), float32/float64:
 * R[q, n, :] += xm[c, input position of output q through tap t, n] * wm[c, t, :] over (c, t),
 * with no F matrix and no GEMM of a few rows. The channels c go in nch fixed chunks, one
 * partial R (P, N, O) each in part (nch * P * N * O elements), added in chunk order into
 * out (N, P, O), so the result does not depend on the number of threads. The taps t go in
 * blocks of SWAPPED_TB, their input offsets per output q listed once per block (off, -1 on
 * padding); each (q, n) sums a block in registers (blocks of DIRECT_OB(T) output channels,
 * as the direct forward path) before adding it to R. */
#define SWAPPED_DIRECT_COLS 32
#define SWAPPED_CHUNKS 16
#define SWAPPED_TB 64
#define SWAPPED_BLOCK(T, V, W)                                                                 \
    do {                                                                                       \
        T *Rn = R + (q * N + n) * O + j0;                                                      \
        const T *w = wb + j0;                                                                  \
        if ((W) == DIRECT_OB(T)) {                                                             \
            const int64_t L = (int64_t)(sizeof(V) / sizeof(T));                                \
            V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, r;                                       \
            for (int64_t u = 0; u < tn; u++, w += O)                                           \
                if (oq[u] >= 0) VEC4_FMA(V, L, xc[oq[u] + n], w);                              \
            memcpy(&r, Rn, sizeof(V)), r += a0, memcpy(Rn, &r, sizeof(V));                     \
            memcpy(&r, Rn + L, sizeof(V)), r += a1, memcpy(Rn + L, &r, sizeof(V));             \
            memcpy(&r, Rn + 2 * L, sizeof(V)), r += a2, memcpy(Rn + 2 * L, &r, sizeof(V));     \
            memcpy(&r, Rn + 3 * L, sizeof(V)), r += a3, memcpy(Rn + 3 * L, &r, sizeof(V));     \
            break;                                                                             \
        }                                                                                      \
        for (int64_t u = 0; u < tn; u++, w += O) {                                             \
            if (oq[u] < 0) continue;                                                           \
            T xv = xc[oq[u] + n];                                                              \
            for (int64_t jj = 0; jj < (W); jj++) Rn[jj] += xv * w[jj];                         \
        }                                                                                      \
    } while (0)
#define CONV_SWAPPED_DIRECT(T, V, NAME)                                                        \
    static void NAME(const conv_geom *g, const T *xm, const T *wm, T *part, int64_t nch, T *out) \
    {                                                                                          \
        int64_t N = g->N, O = g->O, P = g->P, len = P * N * O;                                 \
        int64_t inner = g->in[0] * g->in[1] * g->in[2] * N;                                    \
        _Pragma("omp parallel for schedule(static) if (g->C * g->KP * len > PNC_PAR_GRAIN)")   \
        for (int64_t s = 0; s < nch; s++) {                                                    \
            T *R = part + s * len;                                                             \
            int64_t off[SWAPPED_DIRECT_COLS * SWAPPED_TB];                                     \
            for (int64_t i = 0; i < len; i++) R[i] = 0;                                        \
            for (int64_t t0 = 0; t0 < g->KP; t0 += SWAPPED_TB) {                               \
                int64_t tn = g->KP - t0 < SWAPPED_TB ? g->KP - t0 : SWAPPED_TB;                \
                for (int64_t u = 0; u < tn; u++) { /* tap t0 + u: (p0, p1, p2) */              \
                    int64_t t = t0 + u, p[3];                                                  \
                    for (int d = 2; d >= 0; d--) {                                             \
                        p[d] = t % g->k[d], t /= g->k[d];                                      \
                        if (g->flip) p[d] = g->k[d] - 1 - p[d];                                \
                    }                                                                          \
                    int64_t q = 0;                                                             \
                    for (int64_t q0 = 0; q0 < g->out[0]; q0++) {                               \
                        int64_t i0 = tap_index(g, 0, q0, p[0]);                                \
                        for (int64_t q1 = 0; q1 < g->out[1]; q1++) {                           \
                            int64_t i1 = i0 < 0 ? -1 : tap_index(g, 1, q1, p[1]);              \
                            for (int64_t q2 = 0; q2 < g->out[2]; q2++, q++) {                  \
                                int64_t i2 = i1 < 0 ? -1 : tap_index(g, 2, q2, p[2]);          \
                                off[q * SWAPPED_TB + u] =                                      \
                                    i2 < 0 ? -1 : ((i0 * g->in[1] + i1) * g->in[2] + i2) * N;  \
                            }                                                                  \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
                for (int64_t c = g->C * s / nch; c < g->C * (s + 1) / nch; c++) {              \
                    const T *xc = xm + c * inner, *wb = wm + (c * g->KP + t0) * O;             \
                    for (int64_t q = 0; q < P; q++) {                                          \
                        const int64_t *oq = off + q * SWAPPED_TB;                              \
                        for (int64_t n = 0; n < N; n++)                                        \
                            for (int64_t j0 = 0; j0 < O; j0 += DIRECT_OB(T))                   \
                                SWAPPED_BLOCK(T, V, O - j0 < DIRECT_OB(T) ? O - j0 : DIRECT_OB(T)); \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int64_t n = 0; n < N; n++) /* out[n, q, :] = sum_s part[s, q, n, :] */            \
            for (int64_t q = 0; q < P; q++) {                                                  \
                T *y = out + (n * P + q) * O;                                                  \
                const T *r = part + (q * N + n) * O;                                           \
                for (int64_t j = 0; j < O; j++) y[j] = r[j];                                   \
                for (int64_t s = 1; s < nch; s++)                                              \
                    for (int64_t j = 0; j < O; j++) y[j] += r[s * len + j];                    \
            }                                                                                  \
    }
CONV_SWAPPED_DIRECT(float, direct_vf, conv_swapped_direct_f32)
CONV_SWAPPED_DIRECT(double, direct_vd, conv_swapped_direct_f64)

/* Bytes of im2col rows (or F rows, conv_swapped) one thread builds before handing them to its
 * GEMM: well inside a core's L2, so that BLAS packs them from cache rather than from memory.
 * Half types keep tiles of up to PNK_CONV_SCRATCH (their GEMM parallelizes itself and
 * accumulating over tiles would round in half precision). */
#define PNK_CONV_TILE ((int64_t)192 << 10)
#define MIN_TILE_ROWS 64

/* Rows per tile of rowbytes-byte rows for dtype dt, at most rows (> 0). */
static int64_t tile_rows(pn_dtype dt, int64_t rowbytes, int64_t rows)
{
    int64_t t = (pnC_is_half(dt) ? PNK_CONV_SCRATCH : PNK_CONV_TILE) / rowbytes;
    if (t < MIN_TILE_ROWS) t = MIN_TILE_ROWS;
    if (t * rowbytes > PNK_CONV_SCRATCH) t = PNK_CONV_SCRATCH / rowbytes;
    if (t < 1) t = 1;
    return t < rows ? t : rows;
}

/* Threads that share the tiles of a convolution (each running its own single-threaded GEMMs
 * on its tiles, one parallel region for the whole convolution): one for half types (whose GEMM
 * threads itself and may fail) or inside a parallel region, else up to one per work item. */
static int conv_threads(pn_dtype dt, int64_t items)
{
    if (pnC_is_half(dt) || omp_in_parallel()) return 1;
    int64_t nt = omp_get_max_threads();
    return (int)(items < 1 ? 1 : items < nt ? items : nt);
}

/* Row r of the F matrix of conv_swapped: F[(c,t), (q,n)] = xm[c, input position of output q
 * through tap t, n] for every q, N contiguous elements each (zeros on padding). */
static void swapped_row(const conv_geom *g, const char *xm, char *dst, int64_t r, size_t es)
{
    int64_t c = r / g->KP, t = r % g->KP, tp[3];
    for (int d = 2; d >= 0; d--) {
        tp[d] = t % g->k[d], t /= g->k[d];
        if (g->flip) tp[d] = g->k[d] - 1 - tp[d];
    }
    size_t run = (size_t)g->N * es;
    const char *xc = xm + (size_t)(c * g->in[0] * g->in[1] * g->in[2]) * run;
    for (int64_t q0 = 0; q0 < g->out[0]; q0++) {
        int64_t i0 = tap_index(g, 0, q0, tp[0]);
        for (int64_t q1 = 0; q1 < g->out[1]; q1++) {
            int64_t i1 = i0 < 0 ? -1 : tap_index(g, 1, q1, tp[1]);
            for (int64_t q2 = 0; q2 < g->out[2]; q2++, dst += run) {
                int64_t i2 = i1 < 0 ? -1 : tap_index(g, 2, q2, tp[2]);
                if (i2 < 0) memset(dst, 0, run);
                else memcpy(dst, xc + (size_t)((i0 * g->in[1] + i1) * g->in[2] + i2) * run, run);
            }
        }
    }
}

/* Most partial products of conv_swapped (a split of its reduction fixed by the sizes alone,
 * so that the result does not depend on the number of threads). */
#define SWAPPED_PARTS 8

/* The convolution of swapped-layout operands (swapped_layout), one group: with xm (C, in...,
 * N) and wm (C, K..., O) the row-contiguous memory of input and weight, it is a GEMM over
 * (channel, tap) of the im2col of xm, transposed: R[(q, n), o] = sum_(c,t) F[(c,t), (q,n)]
 * wm[(c,t), o] with F[(c,t), (q,n)] = xm[c, input position of output q through tap t, n]
 * (runs of N contiguous elements), so neither operand is copied to the usual layout. The
 * reduction over (c, t) goes in up to SWAPPED_PARTS parts, each its own partial R, shared by
 * the threads (one part each at a time, its F rows built in cache-sized tiles, each tile's
 * GEMM accumulating, beta 1, after the part's first); the partial Rs are then added in order
 * and reordered to out (N, q, O). With a single part (half types, or partial Rs too large)
 * the GEMM threads itself. A handful of columns (float32/float64) goes to the direct form
 * instead. Returns 0, -1 with an error, or 1 when the path does not apply (half types needing
 * several tiles). */
static int conv_swapped(const conv_geom *g, pn_dtype dt, const char *xm, const char *wm, char *out)
{
    size_t es = pn_dtype_size(dt);
    int64_t cols = g->P * g->N, krows = g->C * g->KP;
    if (cols <= SWAPPED_DIRECT_COLS && (dt == PN_FLOAT32 || dt == PN_FLOAT64)) {
        int64_t nch = g->C < SWAPPED_CHUNKS ? g->C : SWAPPED_CHUNKS;
        size_t cap = 0;
        char *part = pnC_alloc_bytes((size_t)(nch * cols * g->O) * es, &cap);
        if (!part) return -1;
        if (dt == PN_FLOAT32)
            conv_swapped_direct_f32(g, (const float *)xm, (const float *)wm, (float *)part, nch, (float *)out);
        else
            conv_swapped_direct_f64(g, (const double *)xm, (const double *)wm, (double *)part, nch, (double *)out);
        pnC_free_bytes(part, cap);
        return 0;
    }
    int64_t tile = tile_rows(dt, cols * (int64_t)es, krows);
    if (pnC_is_half(dt) && tile < krows) return 1;
    int64_t nblk = (krows + tile - 1) / tile, rlen = cols * g->O;
    int64_t nparts = nblk < SWAPPED_PARTS ? nblk : SWAPPED_PARTS;
    while (nparts > 1 && nparts * rlen * (int64_t)es > PNK_CONV_SCRATCH) nparts--;
    int nt = conv_threads(dt, nparts);
    if (nparts == 1) nt = 1;
    size_t fcap = 0, rcap = 0;
    char *f = pnC_alloc_bytes((size_t)(nt * tile * cols) * es, &fcap);
    char *r = f ? pnC_alloc_bytes((size_t)(nparts * rlen) * es, &rcap) : NULL;
    int rc = f && r ? 0 : -1;
    if (rc == 0) {
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            char *fb = f + (size_t)(omp_get_thread_num() * tile * cols) * es;
            int trc = 0;
#pragma omp for schedule(dynamic, 1)
            for (int64_t s = 0; s < nparts; s++) {
                char *rs = r + (size_t)(s * rlen) * es;
                for (int64_t b = nblk * s / nparts; b < nblk * (s + 1) / nparts && trc == 0; b++) {
                    int64_t r0 = b * tile, m = krows - r0 < tile ? krows - r0 : tile;
#pragma omp parallel for schedule(static) if (nt == 1 && m * cols > PNC_PAR_GRAIN && !omp_in_parallel())
                    for (int64_t i = 0; i < m; i++)
                        swapped_row(g, xm, fb + (size_t)(i * cols) * es, r0 + i, es);
                    trc = pnK_gemm(dt, true, false, cols, g->O, m, 1.0, fb, cols, wm + (size_t)(r0 * g->O) * es,
                                   g->O, b == nblk * s / nparts ? 0.0 : 1.0, rs, g->O);
                }
            }
            if (trc) {
#pragma omp atomic write
                rc = -1;
            }
#pragma omp barrier
            if (rc == 0) { /* out[n, q, :] = sum_s R_s[q, n, :] */
                size_t orow = (size_t)g->O * es;
#pragma omp for schedule(static)
                for (int64_t i = 0; i < g->N * g->P; i++) {
                    int64_t n = i / g->P, q = i % g->P;
                    char *y = out + (size_t)i * orow;
                    const char *src = r + (size_t)(q * g->N + n) * orow;
                    memcpy(y, src, orow);
                    for (int64_t s = 1; s < nparts; s++) {
                        const char *p = src + (size_t)(s * rlen) * es;
                        if (dt == PN_FLOAT32) {
                            for (int64_t j = 0; j < g->O; j++) ((float *)y)[j] += ((const float *)p)[j];
                        } else if (dt == PN_FLOAT64) {
                            for (int64_t j = 0; j < g->O; j++) ((double *)y)[j] += ((const double *)p)[j];
                        }
                    }
                }
            }
        }
        if (rc != 0 && !pnC_failed()) pnC_fail(PN_ERR_BACKEND, "[conv] GEMM failed.");
    }
    pnC_free_bytes(f, fcap);
    pnC_free_bytes(r, rcap);
    return rc;
}

/* Output channels per group up to which the im2col product runs transposed (see
 * pnK_conv_eval). */
#define SKINNY_OG 32

/* dst[r * ldd + j] = src[j * m + r] for j < n, r < m (float32 or float64 elements, es bytes):
 * an (n, m) row-major block written transposed into rows of stride ldd, in runs of TB rows. */
#define TB 64
static void transpose_block(const char *src, int64_t n, int64_t m, char *dst, int64_t ldd, size_t es)
{
#pragma omp parallel for schedule(static) if (n * m > PNC_PAR_GRAIN && !omp_in_parallel())
    for (int64_t r0 = 0; r0 < m; r0 += TB) {
        int64_t r1 = m - r0 < TB ? m : r0 + TB;
        for (int64_t j = 0; j < n; j++) {
            if (es == sizeof(float)) {
                const float *s = (const float *)src + j * m;
                float *d = (float *)dst + j;
                for (int64_t r = r0; r < r1; r++) d[r * ldd] = s[r];
            } else {
                const double *s = (const double *)src + j * m;
                double *d = (double *)dst + j;
                for (int64_t r = r0; r < r1; r++) d[r * ldd] = s[r];
            }
        }
    }
}

int pnK_conv_eval(const pnC_node *node, pn_array *const *in, pn_array *const *out)
{
    const pnK_conv_params *p = PNC_PARAMS(node, pnK_conv_params);
    pn_array *o = out[0];
    if (pnC_alloc_output(o)) return -1;
    if (o->size == 0) return 0;
    size_t es = pn_dtype_size(o->dtype);
    conv_geom g;
    pnK_conv_geom_init(&g, p, in[0], in[1], o);
    int64_t kdim = g.KP * g.Cg; /* reduction length per group */
    if (kdim == 0) {            /* no input channels or no taps: the sums are empty */
        memset(pnC_data(o), 0, (size_t)o->size * es);
        return 0;
    }
    if (g.G == 1 && swapped_layout(in[0]) && swapped_layout(in[1])) {
        int rc = conv_swapped(&g, o->dtype, pnC_data(in[0]), pnC_data(in[1]), pnC_data(o));
        if (rc <= 0) return rc;
    }
    pn_array *x = pnC_contiguous(in[0]), *w = pnC_contiguous(in[1]);
    if (!x || !w) {
        if (x) pnC_decref(x);
        if (w) pnC_decref(w);
        return -1;
    }
    const char *xd = pnC_data(x), *wd = pnC_data(w);
    char *od = pnC_data(o);
    int64_t rows = g.N * g.P, rowlen = g.G * kdim;
    int rc = 0;

    bool depthwise = g.G > 1 && g.Cg == 1 && g.Og == 1;
    if (((g.G == 1 && kdim <= DIRECT_KDIM) || depthwise) &&
        (o->dtype == PN_FLOAT32 || o->dtype == PN_FLOAT64)) {
        size_t cap = 0, nbytes = (size_t)(kdim * g.O) * es;
        char *wt = pnC_alloc_bytes(nbytes, &cap);
        if (!wt) {
            rc = -1;
            goto done;
        }
        for (int64_t j = 0; j < g.O; j++) /* wt = w^T: (kdim, O) */
            for (int64_t k = 0; k < kdim; k++)
                memcpy(wt + (size_t)(k * g.O + j) * es, wd + (size_t)(j * kdim + k) * es, es);
        if (o->dtype == PN_FLOAT32) conv_direct_f32(&g, (const float *)xd, (const float *)wt, (float *)od);
        else conv_direct_f64(&g, (const double *)xd, (const double *)wt, (double *)od);
        pnC_free_bytes(wt, cap);
        goto done;
    }

    if (conv_is_pointwise(&g)) {
        for (int64_t c = 0; c < g.G && rc == 0; c++)
            rc = pnK_gemm(o->dtype, false, true, rows, g.Og, g.Cg, 1.0, xd + (size_t)(c * g.Cg) * es,
                          g.C, wd + (size_t)(c * g.Og * kdim) * es, kdim, 0.0,
                          od + (size_t)(c * g.Og) * es, g.O);
        goto done;
    }

    /* Tiles of im2col rows shared by the threads, each building its tile in cache and
     * multiplying it with its own single-threaded GEMMs (one per group). Few output channels
     * per group: BLAS runs the product faster as out^T = w im2col^T (the long dimension as its
     * columns) than as a GEMM with Og columns; tb holds that (Og, tile) block until it is
     * transposed into out. */
    int64_t tile = tile_rows(o->dtype, rowlen * (int64_t)es, rows);
    int64_t nblk = (rows + tile - 1) / tile;
    int nt = conv_threads(o->dtype, nblk);
    if (nt > 1 && nblk < 4 * nt && tile > MIN_TILE_ROWS) { /* smaller tiles to share them */
        tile = (rows + 4 * nt - 1) / (4 * nt);
        tile = tile < MIN_TILE_ROWS ? MIN_TILE_ROWS : tile;
        nblk = (rows + tile - 1) / tile;
        nt = conv_threads(o->dtype, nblk);
    }
    bool skinny = g.Og <= SKINNY_OG && tile >= 4 * g.Og && (o->dtype == PN_FLOAT32 || o->dtype == PN_FLOAT64);
    size_t per = (size_t)(tile * rowlen + (skinny ? g.Og * tile : 0)), cap = 0, nbytes = per * (size_t)nt * es;
    char *buf = pnC_alloc_bytes(nbytes, &cap);
    if (!buf) {
        rc = -1;
        if (!pnC_failed()) pnC_fail(PN_ERR_OUT_OF_MEMORY, "[conv] Out of memory for %zu bytes of scratch.", nbytes);
        goto done;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        char *ib = buf + (size_t)omp_get_thread_num() * per * es, *tb = ib + (size_t)(tile * rowlen) * es;
        int trc = 0;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t r0 = b * tile, m = rows - r0 < tile ? rows - r0 : tile;
            if (trc) continue;
#pragma omp parallel for schedule(static) if (nt == 1 && m * rowlen > PNC_PAR_GRAIN && !omp_in_parallel())
            for (int64_t r = 0; r < m; r++)
                im2col_row(&g, xd, ib + (size_t)(r * rowlen) * es, r0 + r, es);
            for (int64_t c = 0; c < g.G && trc == 0; c++) {
                char *oc = od + (size_t)(r0 * g.O + c * g.Og) * es;
                if (!skinny) {
                    trc = pnK_gemm(o->dtype, false, true, m, g.Og, kdim, 1.0, ib + (size_t)(c * kdim) * es,
                                   rowlen, wd + (size_t)(c * g.Og * kdim) * es, kdim, 0.0, oc, g.O);
                    continue;
                }
                trc = pnK_gemm(o->dtype, false, true, g.Og, m, kdim, 1.0, wd + (size_t)(c * g.Og * kdim) * es,
                               kdim, ib + (size_t)(c * kdim) * es, rowlen, 0.0, tb, m);
                if (trc == 0) transpose_block(tb, g.Og, m, oc, g.O, es);
            }
        }
        if (trc) {
#pragma omp atomic write
            rc = -1;
        }
    }
    if (rc != 0 && !pnC_failed()) pnC_fail(PN_ERR_BACKEND, "[conv] GEMM failed.");
    pnC_free_bytes(buf, cap);
done:
    pnC_decref(x);
    pnC_decref(w);
    return rc;
}
