/* fused_jit.c — the CPU's generated kernels for fused programs (mx.compile's Compiled nodes):
 * a program becomes C source that runs a tile of the output in blocks, the elementwise ops
 * of a run fused into one loop (each value a local, only what a later loop needs stored),
 * the vector-math ops and casts between them over the block through the same array
 * functions the unfused kernels call. The system C compiler builds it (src/core/jit.c: disk
 * cache, private load) once per distinct program; fused.c runs it in place of its tile
 * interpreter. Every element is computed by the element functions of ew_exprs.h, compiled
 * without floating-point contraction, so results are the unfused graph's bits. */
#include "backend/cpu/elementwise.h"
#include "backend/cpu/ew_exprs.h"
#include "backend/cpu/fused.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PONTE_JIT_CC
#define PONTE_JIT_CC "cc"
#endif
#ifndef PONTE_JIT_TARGET
#define PONTE_JIT_TARGET ""
#endif

#define BLOCK 512 /* elements of a block: every stored value of the block stays in L1 */

/* ───────────────────────────── dtypes and ops by name ───────────────────────────── */

typedef struct {
    const char *ctype, *sn, *load; /* storage type, element functions' suffix, load to compute type */
} dtype_names;

#define JIT_DTYPE(DT, SN, T, CT, LD, ST, CLS, ...) [DT] = {#T, #SN, #LD},
static const dtype_names DTYPES[PN_NUM_DTYPES] = {PNK_TYPES(JIT_DTYPE, )};
#undef JIT_DTYPE

#define JIT_OPNAME(E, name, prim, rule, cpx) #E,
static const char *const UNARY_NAMES[] = {PNK_UNARY_OPS(JIT_OPNAME) PNK_UNARY_EXTRA(JIT_OPNAME)};
static const char *const BINARY_NAMES[] = {PNK_BINARY_OPS(JIT_OPNAME) PNK_BINARY_EXTRA(JIT_OPNAME)};
#undef JIT_OPNAME

/* ───────────────────────────── the plan ───────────────────────────── */

/* How an op runs in the generated kernel. */
enum {
    LOOP,  /* an element expression inside a fused loop */
    VEC,   /* a float vector-math op over the block (pnK_ew_vector_fn) */
    CVT,   /* astype over the block (pnC_convert) */
    HOIST, /* astype of a broadcast value: converted once per call */
};

typedef struct {
    int nin, nops;
    pn_dtype dt[PNF_MAX_IN + PNF_MAX_OPS]; /* every value's dtype */
    bool bcast[PNF_MAX_IN];                /* a broadcast (one-element) input */
    int how[PNF_MAX_OPS], seg[PNF_MAX_OPS];
    bool stored[PNF_MAX_OPS]; /* the result is kept in a block array a<k> */
} plan;

/* The op of p that runs the operand dtype t (where: the values' dtype). */
static pn_dtype operand_dtype(const plan *P, const pnF_op *op)
{
    return P->dt[op->in[op->kind == PNF_WHERE ? 1 : 0]];
}

/* Plans pg for inputs of dtypes dt (bit i of bcast: input i is one broadcast element). Every
 * op and dtype is taken: the element functions hold no multiply-add a compiler could contract
 * (complex products and erfinv are written with fma), so the library's flags and generated C's
 * give the same bits. */
static void make_plan(const pnF_program *pg, const pn_dtype *dt, uint32_t bcast, plan *P)
{
    memset(P, 0, sizeof *P);
    P->nin = pg->nin, P->nops = pg->nops;
    for (int i = 0; i < pg->nin; i++) {
        P->dt[i] = dt[i];
        P->bcast[i] = (bcast >> i) & 1;
    }
    int seg = 0;
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        P->dt[pg->nin + k] = op->dtype;
        pn_dtype t = operand_dtype(P, op);
        int a = op->in[0];
        bool scalar_src = a < pg->nin ? P->bcast[a] : P->how[a - pg->nin] == HOIST;
        int how = LOOP;
        if (op->kind == PNF_ASTYPE)
            how = scalar_src ? HOIST : CVT;
        else if (op->kind == PNF_UNARY && pnK_ew_vector_fn(op->p.op) &&
                 (t == PN_FLOAT32 || t == PN_FLOAT16 || t == PN_BFLOAT16))
            how = VEC;
        P->how[k] = how;
        if (how == LOOP) {
            if (k > 0 && P->how[k - 1] != LOOP) seg++;
            P->seg[k] = seg;
        } else {
            P->seg[k] = ++seg; /* a segment of its own */
        }
        /* a result read outside its own loop is stored */
        for (int i = 0; i < op->nin; i++) {
            int v = op->in[i] - pg->nin;
            if (v >= 0 && P->how[v] == LOOP && P->seg[v] != P->seg[k]) P->stored[v] = true;
        }
        if (how == VEC || how == CVT) P->stored[k] = true;
    }
}

/* ───────────────────────────── source ───────────────────────────── */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} text;

static void put(text *t, const char *fmt, ...)
{
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->oom = true;
            return;
        }
        if (t->s && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->n + (size_t)w) cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->oom = true;
            return;
        }
        t->s = s, t->cap = cap;
    }
}

/* Value v (an input or an op's result) at element j of the block, in its storage type, read
 * from a loop of segment seg (-1: outside any loop). */
static void value(text *t, const plan *P, int v, int seg)
{
    if (v < P->nin) {
        put(t, P->bcast[v] ? "in%d" : "in%d[b + j]", v);
        return;
    }
    int k = v - P->nin;
    if (P->how[k] == HOIST)
        put(t, "h%d", k);
    else if (P->how[k] == LOOP && P->seg[k] == seg)
        put(t, "v%d", k);
    else
        put(t, "a%d[j]", k);
}

/* Writes to buf a pointer to the block of value v in its storage type; false when it has
 * none (a value of a loop that is not stored, a broadcast one). */
static bool block_of(const plan *P, int v, char *buf, size_t cap)
{
    if (v < P->nin) {
        snprintf(buf, cap, "in%d + b", v);
        return !P->bcast[v];
    }
    int k = v - P->nin;
    snprintf(buf, cap, "a%d", k);
    return P->stored[k];
}

/* The statements of loop op k (inside its loop). */
static void loop_op(text *t, const pnF_program *pg, const plan *P, int k)
{
    const pnF_op *op = &pg->ops[k];
    const dtype_names *r = &DTYPES[op->dtype], *o = &DTYPES[operand_dtype(P, op)];
    put(t, "            const %s v%d = ", r->ctype, k);
    if (op->kind == PNF_WHERE) {
        put(t, "(");
        value(t, P, op->in[0], P->seg[k]);
        put(t, ") != 0 ? ");
        value(t, P, op->in[1], P->seg[k]);
        put(t, " : ");
        value(t, P, op->in[2], P->seg[k]);
    } else {
        bool unary = op->kind == PNF_UNARY;
        put(t, "pnK_%se_%s_%s(", unary ? "u" : "b", unary ? UNARY_NAMES[op->p.op] : BINARY_NAMES[op->p.op], o->sn);
        for (int i = 0; i < op->nin; i++) {
            put(t, "%s%s(", i ? ", " : "", o->load);
            value(t, P, op->in[i], P->seg[k]);
            put(t, ")");
        }
        put(t, ", &prm[%d])", k);
    }
    put(t, ";\n");
    if (P->stored[k]) put(t, "            a%d[j] = v%d;\n", k, k);
    if (k == P->nops - 1) put(t, "            out[b + j] = v%d;\n", k);
}

/* A block op (VEC, CVT) k: over the block's m elements, into a<k> (the output when last). */
static void block_op(text *t, const pnF_program *pg, const plan *P, int k)
{
    const pnF_op *op = &pg->ops[k];
    const int v = op->in[0];
    const pn_dtype st = P->dt[v];
    char src[32], dst[32];
    bool have = block_of(P, v, src, sizeof src);
    if (k == P->nops - 1)
        snprintf(dst, sizeof dst, "(out + b)");
    else
        snprintf(dst, sizeof dst, "a%d", k);
    if (P->how[k] == CVT) { /* its source always has a block (a broadcast one is HOIST) */
        put(t, "        cvt(%s, %d, %s, %d, m);\n", src, (int)st, dst, (int)op->dtype);
        return;
    }
    if (st != PN_FLOAT32 || !have) { /* the operand's floats into f<k> first */
        put(t, "        PNK_SIMD for (int64_t j = 0; j < m; j++) f%d[j] = %s(", k, DTYPES[st].load);
        value(t, P, v, -1);
        put(t, ");\n");
        snprintf(src, sizeof src, "f%d", k);
    }
    if (op->dtype == PN_FLOAT32) {
        put(t, "        vfn[%d](%s, %s, m);\n", k, src, dst);
    } else { /* computed in float, stored rounded as the unfused row stores it */
        put(t, "        vfn[%d](%s, f%d, m);\n", k, src, k);
        put(t, "        PNK_SIMD for (int64_t j = 0; j < m; j++) %s[j] = %s(f%d[j]);\n", dst,
            op->dtype == PN_FLOAT16 ? "pnC_f32_to_f16" : "pnC_f32_to_bf16", k);
    }
}

/* The C source of plan P for program pg (free()), or NULL when out of memory. Its function
 * pnK_fused_kernel(lo, n, in, out, prm, vfn, cvt) computes elements [lo, lo + n) of the
 * output: in[i] the inputs' data (broadcast ones: their element), prm[k] op k's params,
 * vfn[k] op k's vector function (VEC ops), cvt pnC_convert. */
static char *generate(const pnF_program *pg, const plan *P, const char *prelude)
{
    text t = {0};
    put(&t, "%s\n/* generated by Ponte (backend/cpu/fused_jit.c) */\n", prelude);
    put(&t, "typedef void (*pnJ_vfn)(const float *, float *, int64_t);\n");
    put(&t, "typedef void (*pnJ_cvt)(const void *, int, void *, int, int64_t);\n\n");
    put(&t, "void pnK_fused_kernel(int64_t lo, int64_t n, char *const *in, char *out_, const pnK_ew_params *prm,\n"
            "                      const pnJ_vfn *vfn, pnJ_cvt cvt)\n{\n");
    for (int i = 0; i < P->nin; i++) {
        const char *c = DTYPES[P->dt[i]].ctype;
        if (P->bcast[i])
            put(&t, "    const %s in%d = *(const %s *)in[%d];\n", c, i, c, i);
        else
            put(&t, "    const %s *in%d = (const %s *)in[%d] + lo;\n", c, i, c, i);
    }
    const char *oc = DTYPES[P->dt[P->nin + P->nops - 1]].ctype;
    put(&t, "    %s *out = (%s *)out_ + lo;\n", oc, oc);
    for (int k = 0; k < P->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        const char *c = DTYPES[op->dtype].ctype;
        if (P->how[k] == HOIST) {
            int v = op->in[0];
            put(&t, "    %s h%d;\n    cvt(&", c, k);
            value(&t, P, v, -1);
            put(&t, ", %d, &h%d, %d, 1);\n", (int)P->dt[v], k, (int)op->dtype);
        }
        if (P->stored[k] && k != P->nops - 1) put(&t, "    %s a%d[%d];\n", c, k, BLOCK);
        if (P->how[k] == VEC) put(&t, "    float f%d[%d];\n", k, BLOCK);
    }
    put(&t, "    for (int64_t b = 0; b < n; b += %d) {\n", BLOCK);
    put(&t, "        const int64_t m = n - b < %d ? n - b : %d;\n", BLOCK, BLOCK);
    for (int k = 0; k < P->nops; k++) {
        int how = P->how[k];
        if (how == LOOP) {
            if (k == 0 || P->seg[k - 1] != P->seg[k]) put(&t, "        PNK_SIMD for (int64_t j = 0; j < m; j++) {\n");
            loop_op(&t, pg, P, k);
            if (k == P->nops - 1 || P->seg[k + 1] != P->seg[k]) put(&t, "        }\n");
        } else if (how == VEC || how == CVT) {
            block_op(&t, pg, P, k);
        } else if (k == P->nops - 1) { /* the output is a converted broadcast value */
            put(&t, "        for (int64_t j = 0; j < m; j++) out[b + j] = h%d;\n", k);
        }
    }
    put(&t, "    }\n}\n");
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

/* ───────────────────────────── the headers ───────────────────────────── */

/* The embedded headers as one text, in their order (each after what it includes), with the
 * #include lines between them dropped: a generated source is one self-contained file. */
static char *prelude;
static pthread_once_t prelude_once = PTHREAD_ONCE_INIT;
static void make_prelude(void)
{
    text t = {0};
    for (int i = 0; i < pnK_jit_header_count; i++) {
        put(&t, "/* ---- %s ---- */\n", pnK_jit_header_names[i]);
        for (const char *line = pnK_jit_header_texts[i]; *line;) {
            const char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
            bool ours = false;
            if (!strncmp(line, "#include \"", 10))
                for (int j = 0; j < pnK_jit_header_count && !ours; j++) {
                    size_t n = strlen(pnK_jit_header_names[j]);
                    ours = !strncmp(line + 10, pnK_jit_header_names[j], n) && line[10 + n] == '"';
                }
            if (!ours) put(&t, "%.*s", (int)len, line);
            line += len;
        }
    }
    if (t.oom) free(t.s);
    else prelude = t.s;
}

/* ───────────────────────────── generated kernels by program ───────────────────────────── */

/* A program's signature: what its source depends on (not the params' values). */
typedef struct {
    int32_t nin, nops;
    uint32_t bcast;
    int32_t dt[PNF_MAX_IN];
    struct {
        int8_t kind, nin;
        int16_t in[3];
        int32_t op, dtype;
    } ops[PNF_MAX_OPS];
} signature;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pnC_kernel_table table;  /* signature -> pnK_fused_kernel_fn, under table_lock */
static pnC_jit_status jit;      /* generated kernels could not be built, and why */
static int64_t min_size = -1;   /* pnK_fused_jit_set_min_size; -1: the environment's */

const char *pnK_fused_jit_error(void) { return pnC_jit_reason(&jit); }

void pnK_fused_jit_set_min_size(int64_t n) { __atomic_store_n(&min_size, n, __ATOMIC_RELAXED); }

/* The smallest output generated kernels are used for: pnK_fused_jit_set_min_size's, else
 * PONTE_FUSED_JIT_MIN_SIZE, else 16384 elements (below that a compiled function's time is its
 * graph's, and a build would cost more than it saves). */
static int64_t jit_min_size(void)
{
    int64_t m = __atomic_load_n(&min_size, __ATOMIC_RELAXED);
    if (m >= 0) return m;
    const char *e = getenv("PONTE_FUSED_JIT_MIN_SIZE");
    return e && *e ? strtoll(e, NULL, 10) : 16384;
}

/* The compiler: PONTE_CC, else the one that built the library. */
static const char *jit_compiler(void)
{
    const char *cc = getenv("PONTE_CC");
    return cc && *cc ? cc : PONTE_JIT_CC;
}

/* The C source generated for pg (free()), or NULL with an error. */
static char *jit_source(const pnF_program *pg, const pn_dtype *dt, uint32_t bcast)
{
    plan P;
    make_plan(pg, dt, bcast, &P);
    pthread_once(&prelude_once, make_prelude);
    char *src = prelude ? generate(pg, &P, prelude) : NULL;
    if (!src) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[compile] Out of memory generating a fused kernel.");
    return src;
}

pnK_fused_kernel_fn pnK_fused_generated(const pnF_program *pg, const pn_dtype *dt, uint32_t bcast, int64_t n)
{
    if (n < jit_min_size() || pnC_jit_failed(&jit)) return NULL;
    const char *env = getenv("PONTE_FUSED_JIT");
    if (env && env[0] == '0' && env[1] == 0) return NULL;
    signature s;
    memset(&s, 0, sizeof s);
    s.nin = pg->nin, s.nops = pg->nops, s.bcast = bcast;
    for (int i = 0; i < pg->nin; i++) s.dt[i] = (int32_t)dt[i];
    for (int k = 0; k < pg->nops; k++) {
        const pnF_op *op = &pg->ops[k];
        s.ops[k].kind = op->kind, s.ops[k].nin = op->nin, s.ops[k].dtype = (int32_t)op->dtype;
        s.ops[k].op = op->kind == PNF_UNARY || op->kind == PNF_BINARY ? op->p.op : 0;
        memcpy(s.ops[k].in, op->in, sizeof op->in);
    }
    /* one build at a time, under the table's lock: the first call of a program waits for it */
    pthread_mutex_lock(&table_lock);
    pnK_fused_kernel_fn fn;
    *(void **)&fn = pnC_kernel_table_get(&table, &s, sizeof s);
    if (!fn && !pnC_jit_failed(&jit)) {
        char *src = jit_source(pg, dt, bcast);
        const char *flags[8] = {"-std=gnu11", "-O3", "-w", "-ffp-contract=off", "-fno-trapping-math", NULL};
        if (PONTE_JIT_TARGET[0]) flags[5] = PONTE_JIT_TARGET;
        if (src) *(void **)&fn = pnC_host_build("compile", jit_compiler(), flags, (const char *const[]){"-lm", NULL}, "c", src,
                                                "pnK_fused_kernel");
        free(src);
        if (!fn)
            pnC_jit_fail(&jit);
        else if (pnC_kernel_table_put(&table, &s, sizeof s, *(void **)&fn, "compile"))
            pn_clear_error(); /* not kept: built again next time */
    }
    pthread_mutex_unlock(&table_lock);
    return fn;
}
