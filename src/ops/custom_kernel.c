/* custom_kernel.c — mlx.core.fast.cuda_kernel and precompiled_cuda_kernel: user CUDA kernels as
 * one primitive, CustomKernel. cuda_kernel generates the kernel's full source from the body the
 * user writes (MLX's conventions: one `const T* name` per input, followed by `name_shape`,
 * `name_strides` and `name_ndim` when the body mentions them, one `T* name` per output, and
 * the template arguments as constexpr values and type aliases); the GPU backend compiles it
 * with NVRTC once and launches it (backend/cuda/custom_kernel.cu). The grid is given in
 * threads, as MLX's (for compatibility with metal_kernel): blocks = ceil(grid / threadgroup).
 * Kernels run on the GPU only; they have no derivatives and no batching rule. Sources and
 * binaries live in a process-wide table (a JIT cache, as MLX's), so nodes refer to them by
 * pointer without owning them. */
#include "backend/cuda/custom_kernel.h"
#include "backend/cuda/eval.h"
#include "core/core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ───────────────────────────── the code table ───────────────────────────── */

static pnK_kernel_code **codes;
static size_t ncodes, cap_codes;
static pthread_mutex_t codes_lock = PTHREAD_MUTEX_INITIALIZER;

/* The table's entry for this code (added on first use), or NULL on out of memory. */
static const pnK_kernel_code *intern_code(const char *name, const char *entry, const void *code,
                                          size_t len, bool precompiled)
{
    uint64_t h = pnC_fnv1a(code, len, pnC_fnv1a(entry, strlen(entry), PNC_FNV_OFFSET));
    char key[512];
    snprintf(key, sizeof key, "%s_%016llx", name, (unsigned long long)h);
    pthread_mutex_lock(&codes_lock);
    const pnK_kernel_code *found = NULL;
    for (size_t i = 0; i < ncodes && !found; i++)
        if (!strcmp(codes[i]->key, key) && codes[i]->precompiled == precompiled) found = codes[i];
    if (!found) {
        pnK_kernel_code *c = calloc(1, sizeof *c);
        if (c) c->key = strdup(key), c->entry = strdup(entry), c->code = malloc(len + 1);
        if (ncodes == cap_codes) {
            size_t cap = cap_codes ? 2 * cap_codes : 16;
            pnK_kernel_code **grown = realloc(codes, cap * sizeof *grown);
            if (grown) codes = grown, cap_codes = cap;
        }
        if (c && c->key && c->entry && c->code && ncodes < cap_codes) {
            memcpy(c->code, code, len);
            c->code[len] = 0;
            c->len = len;
            c->precompiled = precompiled;
            codes[ncodes++] = c;
            found = c;
        } else if (c) {
            free(c->key), free(c->entry), free(c->code), free(c);
        }
    }
    pthread_mutex_unlock(&codes_lock);
    if (!found) pnC_fail(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
    return found;
}

/* ───────────────────────────── the primitive ───────────────────────────── */

const pnC_primitive custom_kernel_prim = {
    .name = "CustomKernel",
    .eval = {[PN_GPU] = PNG_EVAL(pnG_custom_kernel_eval)},
};

/* Checks the launch description and makes the node: inputs, then one full array per output
 * when an init value is given (the eval copies it into the output before the launch). */
static int make_node(const char *op, const pnK_custom_kernel_params *p, int nin, pn_array *const *inputs,
                     const pn_kernel_launch *l, pn_array **outs)
{
    if (!pnC_inputs_ok(op, nin, inputs)) return -1;
    if (pn_current_stream().device.type != PN_GPU) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Only supports the GPU.", op);
        return -1;
    }
    if (l->nout < 1 || l->nout > PNK_KERNEL_MAX_IO || nin + l->nout * (l->has_init_value ? 2 : 1) > 2 * PNK_KERNEL_MAX_IO) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Between 1 and %d outputs (and inputs) are supported, got %d.",
                     op, PNK_KERNEL_MAX_IO, l->nout);
        return -1;
    }
    for (int d = 0; d < 3; d++)
        if (l->grid[d] < 1 || l->threadgroup[d] < 1) {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] grid and threadgroup must be positive, got grid "
                         "(%d, %d, %d) and threadgroup (%d, %d, %d).", op, l->grid[0], l->grid[1], l->grid[2],
                         l->threadgroup[0], l->threadgroup[1], l->threadgroup[2]);
            return -1;
        }
    for (int j = 0; j < l->nout; j++)
        if (!pnC_dtype_valid(l->out_dtypes[j])) {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[%s] Output %d has an invalid dtype.", op, j);
            return -1;
        }
    pn_scope_push();
    pn_array *all[3 * PNK_KERNEL_MAX_IO];
    int n = 0, rc = 0;
    for (int i = 0; i < nin; i++) all[n++] = inputs[i];
    for (int j = 0; j < l->nout && l->has_init_value; j++)
        if (!(all[n++] = pn_full(l->out_shapes[j], l->out_ndims[j], pn_scalar(l->init_value, l->out_dtypes[j]),
                                 l->out_dtypes[j])))
            rc = -1;
    pn_array *made[PNK_KERNEL_MAX_IO];
    if (rc == 0)
        rc = pnC_make_multi(&custom_kernel_prim, p, sizeof *p, n, all, l->nout, l->out_dtypes, l->out_shapes,
                            l->out_ndims, made);
    pn_scope_pop_keep(made, rc == 0 ? l->nout : 0);
    for (int j = 0; j < l->nout; j++) outs[j] = rc == 0 ? made[j] : NULL;
    return rc;
}

/* Fills the launch part of the params. */
static void launch_params(pnK_custom_kernel_params *p, int nin, const pn_kernel_launch *l, int smem, bool contiguous)
{
    for (int d = 0; d < 3; d++) p->grid[d] = l->grid[d], p->block[d] = l->threadgroup[d];
    p->nin = nin;
    p->smem = smem;
    p->contiguous = contiguous;
    p->has_init = l->has_init_value;
}

/* ───────────────────────────── cuda_kernel ───────────────────────────── */

struct pn_cuda_kernel {
    char *name, *source, *header;
    int nin, nout;
    char **input_names, **output_names;
    bool contiguous;
    int smem;
};

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* See ponte.h. */
pn_cuda_kernel *pn_fast_cuda_kernel(const char *name, int nin, const char *const *input_names, int nout,
                                    const char *const *output_names, const char *source, const char *header,
                                    bool ensure_row_contiguous, int shared_memory)
{
    if (!name || !source || nin < 0 || nout < 0 || (nin && !input_names) || (nout && !output_names))
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] name, source and the argument names are required.");
    if (nout < 1) return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Must specify at least one output.");
    if (nin > PNK_KERNEL_MAX_IO || nout > PNK_KERNEL_MAX_IO)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] At most %d inputs and %d outputs.",
                        PNK_KERNEL_MAX_IO, PNK_KERNEL_MAX_IO);
    if (shared_memory < 0)
        return pnC_fail(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] shared_memory must be >= 0, got %d.", shared_memory);
    pn_cuda_kernel *k = calloc(1, sizeof *k);
    bool ok = k && (k->name = strdup(name)) && (k->source = strdup(source)) && (k->header = dup_or_empty(header)) &&
              (k->input_names = calloc((size_t)nin + 1, sizeof(char *))) &&
              (k->output_names = calloc((size_t)nout, sizeof(char *)));
    for (int i = 0; ok && i < nin; i++) ok = (k->input_names[i] = dup_or_empty(input_names[i])) != NULL;
    for (int j = 0; ok && j < nout; j++) ok = (k->output_names[j] = dup_or_empty(output_names[j])) != NULL;
    if (k) k->nin = nin, k->nout = nout, k->contiguous = ensure_row_contiguous, k->smem = shared_memory;
    if (!ok) {
        pn_cuda_kernel_free(k);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
    }
    return k;
}

/* See ponte.h. */
void pn_cuda_kernel_free(pn_cuda_kernel *k)
{
    if (!k) return;
    for (int i = 0; k->input_names && i < k->nin; i++) free(k->input_names[i]);
    for (int j = 0; k->output_names && j < k->nout; j++) free(k->output_names[j]);
    free(k->input_names), free(k->output_names);
    free(k->name), free(k->source), free(k->header), free(k);
}

/* The CUDA spelling of a dtype in generated source. */
static const char *cuda_type(pn_dtype t)
{
    static const char *const names[PN_NUM_DTYPES] = {
        [PN_BOOL] = "bool",        [PN_UINT8] = "uint8_t",   [PN_UINT16] = "uint16_t",
        [PN_UINT32] = "uint32_t",  [PN_UINT64] = "uint64_t", [PN_INT8] = "int8_t",
        [PN_INT16] = "int16_t",    [PN_INT32] = "int32_t",   [PN_INT64] = "int64_t",
        [PN_FLOAT16] = "__half",   [PN_BFLOAT16] = "__nv_bfloat16", [PN_FLOAT32] = "float",
        [PN_FLOAT64] = "double",   [PN_COMPLEX64] = "float2",
    };
    return pnC_dtype_valid(t) && names[t] ? names[t] : "void";
}

/* A growing string; on out of memory it stays NULL and every append is a no-op. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) break;
        if (b->s && b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)w;
        char *grown = realloc(b->s, cap);
        if (!grown) break;
        b->s = grown, b->cap = cap;
    }
    free(b->s);
    *b = (sbuf){.failed = true};
}

/* Definitions every generated kernel sees (MLX's kernels see its device utilities). */
static const char DEFAULT_HEADER[] =
    "#include <cuda_fp16.h>\n"
    "#include <cuda_bf16.h>\n"
    "#include <cooperative_groups.h>\n"
    "#include <cuda/std/cstdint>\n"
    "namespace cg = cooperative_groups;\n"
    "using cuda::std::int8_t; using cuda::std::int16_t; using cuda::std::int32_t; using cuda::std::int64_t;\n"
    "using cuda::std::uint8_t; using cuda::std::uint16_t; using cuda::std::uint32_t; using cuda::std::uint64_t;\n"
    "#define inf __int_as_float(0x7f800000)\n"
    "#define MAX_NDIM " PNK_KERNEL_MAX_NDIM_STR "\n"
    "struct Shape { int32_t v[MAX_NDIM]; __device__ int32_t operator[](int i) const { return v[i]; } };\n"
    "struct Strides { int64_t v[MAX_NDIM]; __device__ int64_t operator[](int i) const { return v[i]; } };\n"
    "/* the memory offset of row-major element elem of an array with this shape and strides */\n"
    "template <typename S, typename T>\n"
    "__device__ int64_t elem_to_loc(int64_t elem, const S &shape, const T &strides, int ndim) {\n"
    "  int64_t loc = 0;\n"
    "  for (int i = ndim - 1; i >= 0 && elem > 0; --i) { loc += (elem % shape[i]) * strides[i]; elem /= shape[i]; }\n"
    "  return loc;\n"
    "}\n\n";

/* Whether the body mentions name followed by suffix. */
static bool mentions(const char *source, const char *name, const char *suffix)
{
    char word[320];
    snprintf(word, sizeof word, "%s%s", name, suffix);
    return strstr(source, word) != NULL;
}

/* The generated source and kernel symbol of k for these inputs and template arguments, and
 * which shape arguments each input gets (bits PNK_KERNEL_SHAPE/STRIDES/NDIM). NULL on error. */
static char *generate(const pn_cuda_kernel *k, int nin, pn_array *const *inputs, const pn_kernel_launch *l,
                      char *symbol, size_t symbol_size, uint8_t *shape_info)
{
    sbuf hash = {0}, b = {0};
    for (int t = 0; t < l->ntemplate; t++) {
        const pn_kernel_arg *a = &l->template_args[t];
        if (!a->name || !a->name[0]) {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Template argument %d has no name.", t);
            free(hash.s);
            return NULL;
        }
        if (a->kind == PN_KERNEL_ARG_INT) sb_printf(&hash, "_%lld", (long long)a->i);
        else if (a->kind == PN_KERNEL_ARG_BOOL) sb_printf(&hash, "_%s", a->i ? "t" : "f");
        else if (a->kind == PN_KERNEL_ARG_DTYPE && pnC_dtype_valid(a->dtype)) sb_printf(&hash, "_%s", pn_dtype_name(a->dtype));
        else {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Template argument %s must be an int, a bool "
                         "or a dtype.", a->name);
            free(hash.s);
            return NULL;
        }
    }
    snprintf(symbol, symbol_size, "custom_kernel_%s%s", k->name, hash.s ? hash.s : "");
    free(hash.s);
    sb_printf(&b, "%s%s\n\nextern \"C\" __global__ void %s(\n", DEFAULT_HEADER, k->header, symbol);
    for (int i = 0; i < nin; i++) {
        const char *nm = k->input_names[i];
        sb_printf(&b, "    const %s* %s,\n", cuda_type(pn_array_dtype(inputs[i])), nm);
        shape_info[i] = 0;
        if (pn_ndim(inputs[i]) > 0) {
            if (mentions(k->source, nm, "_shape")) shape_info[i] |= PNK_KERNEL_SHAPE;
            if (mentions(k->source, nm, "_strides")) shape_info[i] |= PNK_KERNEL_STRIDES;
            if (mentions(k->source, nm, "_ndim")) shape_info[i] |= PNK_KERNEL_NDIM;
        }
        if (shape_info[i] & PNK_KERNEL_SHAPE) sb_printf(&b, "    const __grid_constant__ Shape %s_shape,\n", nm);
        if (shape_info[i] & PNK_KERNEL_STRIDES) sb_printf(&b, "    const __grid_constant__ Strides %s_strides,\n", nm);
        if (shape_info[i] & PNK_KERNEL_NDIM) sb_printf(&b, "    const __grid_constant__ int %s_ndim,\n", nm);
    }
    for (int j = 0; j < k->nout; j++)
        sb_printf(&b, "    %s* %s%s", cuda_type(l->out_dtypes[j]), k->output_names[j], j + 1 < k->nout ? ",\n" : ") {\n");
    for (int t = 0; t < l->ntemplate; t++) {
        const pn_kernel_arg *a = &l->template_args[t];
        if (a->kind == PN_KERNEL_ARG_INT) sb_printf(&b, "  constexpr int %s = %lld;\n", a->name, (long long)a->i);
        else if (a->kind == PN_KERNEL_ARG_BOOL) sb_printf(&b, "  constexpr bool %s = %s;\n", a->name, a->i ? "true" : "false");
        else sb_printf(&b, "  using %s = %s;\n", a->name, cuda_type(a->dtype));
    }
    sb_printf(&b, "%s%s\n}\n", l->ntemplate ? "\n" : "", k->source);
    if (b.failed) pn_set_error(PN_ERR_OUT_OF_MEMORY, "[cuda_kernel] Out of memory.");
    return b.s;
}

/* Checks the call's counts against the kernel's. 0 or -1. */
static int check_call(const pn_cuda_kernel *k, int nin, const pn_kernel_launch *l)
{
    if (nin != k->nin) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Expected `inputs` to have size %d but got size %d.",
                     k->nin, nin);
        return -1;
    }
    if (l->nout != k->nout) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] Expected `output_shapes` and `output_dtypes` to "
                     "have size %d but got size %d.", k->nout, l->nout);
        return -1;
    }
    return 0;
}

/* See ponte.h. */
char *pn_cuda_kernel_source(pn_cuda_kernel *k, int nin, pn_array *const *inputs, const pn_kernel_launch *launch)
{
    if (!k || !launch || check_call(k, nin, launch) || !pnC_inputs_ok("cuda_kernel", nin, inputs)) return NULL;
    char symbol[400];
    uint8_t info[PNK_KERNEL_MAX_IO];
    return generate(k, nin, inputs, launch, symbol, sizeof symbol, info);
}

/* See ponte.h. */
int pn_cuda_kernel_call(pn_cuda_kernel *k, int nin, pn_array *const *inputs, const pn_kernel_launch *launch,
                        pn_array **outs)
{
    for (int j = 0; launch && j < launch->nout && j < PNK_KERNEL_MAX_IO; j++) outs[j] = NULL;
    if (!k || !launch) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[cuda_kernel] No kernel or launch description.");
        return -1;
    }
    if (check_call(k, nin, launch) || !pnC_inputs_ok("cuda_kernel", nin, inputs)) return -1;
    pnK_custom_kernel_params p = {0};
    char symbol[400];
    char *source = generate(k, nin, inputs, launch, symbol, sizeof symbol, p.shape_info);
    if (!source) return -1;
    if (launch->verbose) {
        printf("Generated source code for `%s`:\n```\n%s\n```\n", symbol, source);
        fflush(stdout);
    }
    p.code = intern_code(k->name, symbol, source, strlen(source), false);
    free(source);
    if (!p.code) return -1;
    launch_params(&p, nin, launch, k->smem, k->contiguous);
    return make_node("cuda_kernel", &p, nin, inputs, launch, outs);
}

/* See ponte.h. */
int pn_fast_precompiled_cuda_kernel(const char *name, const void *code, size_t code_len, int nin,
                                    pn_array *const *inputs, int nscalars, const pn_kernel_arg *scalars,
                                    const pn_kernel_launch *launch, int shared_memory, bool ensure_row_contiguous,
                                    pn_array **outs)
{
    for (int j = 0; launch && j < launch->nout && j < PNK_KERNEL_MAX_IO; j++) outs[j] = NULL;
    if (!name || !code || !code_len || !launch) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[precompiled_cuda_kernel] name, compiled_source and the launch "
                     "description are required.");
        return -1;
    }
    if (nscalars < 0 || nscalars > PNK_KERNEL_MAX_SCALARS || nin > PNK_KERNEL_MAX_IO || shared_memory < 0) {
        pn_set_error(PN_ERR_INVALID_ARGUMENT, "[precompiled_cuda_kernel] At most %d inputs and %d scalars, and "
                     "shared_memory >= 0.", PNK_KERNEL_MAX_IO, PNK_KERNEL_MAX_SCALARS);
        return -1;
    }
    pnK_custom_kernel_params p = {0};
    for (int s = 0; s < nscalars; s++) {
        if (scalars[s].kind == PN_KERNEL_ARG_DTYPE) {
            pn_set_error(PN_ERR_INVALID_ARGUMENT, "[precompiled_cuda_kernel] Scalars are bools, ints or floats.");
            return -1;
        }
        p.scalars[s] = scalars[s];
        p.scalars[s].name = NULL;
    }
    p.nscalars = nscalars;
    if (!(p.code = intern_code(name, name, code, code_len, true))) return -1;
    launch_params(&p, nin, launch, shared_memory, ensure_row_contiguous);
    return make_node("precompiled_cuda_kernel", &p, nin, inputs, launch, outs);
}
