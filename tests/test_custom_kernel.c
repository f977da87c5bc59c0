/* test_custom_kernel.c — fast.cuda_kernel / precompiled_cuda_kernel (src/ops/custom_kernel.c):
 * the generated source (signature per input dtype, shape arguments only when the body uses
 * them, template arguments, MLX's kernel naming), argument errors, the CPU's refusal, and,
 * on a real GPU, kernels compiled by NVRTC against float64 references on random data
 * (elementwise, strided through elem_to_loc, templates, an initial value with atomics, two
 * outputs, a precompiled PTX kernel); on the simulated GPU the evaluation's clear error. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static pn_kernel_launch launch1(pn_dtype t, const int64_t *shape, int ndim, int64_t threads)
{
    static pn_dtype dt;
    static const int64_t *sh;
    static int nd;
    dt = t, sh = shape, nd = ndim;
    pn_kernel_launch l = {.grid = {(int)threads, 1, 1}, .threadgroup = {256, 1, 1}, .nout = 1,
                          .out_dtypes = &dt, .out_shapes = &sh, .out_ndims = &nd};
    return l;
}

static bool has(const char *src, const char *text)
{
    bool ok = src && strstr(src, text);
    if (!ok) fprintf(stderr, "  generated source lacks: %s\n", text);
    return ok;
}

TEST(generated_source)
{
    pn_scope_push();
    const char *in_names[2] = {"a", "b"}, *out_names[1] = {"out"};
    const char *body = "  auto i = cg::this_grid().thread_rank();\n"
                       "  if (i < b_ndim) out[i] = (T)(a[i] * N + b_shape[0] + b_strides[0]);\n";
    pn_cuda_kernel *k = pn_fast_cuda_kernel("myk", 2, in_names, 1, out_names, body, "// user header\n", true, 0);
    CHECK_OK(k);
    pn_array *a = test_random_array((int64_t[]){2, 3}, 2, PN_FLOAT32, -1, 1);
    pn_array *b = test_random_array((int64_t[]){4}, 1, PN_INT32, 0, 9);
    pn_array *ins[2] = {a, b};
    int64_t oshape[1] = {6};
    pn_kernel_launch l = launch1(PN_FLOAT16, oshape, 1, 6);
    pn_kernel_arg targs[3] = {{.name = "T", .kind = PN_KERNEL_ARG_DTYPE, .dtype = PN_FLOAT16},
                              {.name = "N", .kind = PN_KERNEL_ARG_INT, .i = 4},
                              {.name = "flag", .kind = PN_KERNEL_ARG_BOOL, .i = 1}};
    l.ntemplate = 3, l.template_args = targs;
    char *src = pn_cuda_kernel_source(k, 2, ins, &l);
    CHECK_OK(src);
    CHECK(has(src, "// user header"));
    CHECK(has(src, "extern \"C\" __global__ void custom_kernel_myk_float16_4_t(\n"));
    CHECK(has(src, "    const float* a,\n    const int32_t* b,\n"
                   "    const __grid_constant__ Shape b_shape,\n"
                   "    const __grid_constant__ Strides b_strides,\n"
                   "    const __grid_constant__ int b_ndim,\n    __half* out) {\n"));
    CHECK(has(src, "  using T = __half;\n  constexpr int N = 4;\n  constexpr bool flag = true;\n"));
    CHECK(has(src, body));
    CHECK_MSG(src && !strstr(src, "a_shape"), "a's shape is not used: no a_shape argument");
    free(src);
    /* errors: counts, no outputs, bad template values, bad launch */
    pn_clear_error();
    CHECK(pn_cuda_kernel_source(k, 1, ins, &l) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_kernel_arg bad = {.name = "", .kind = PN_KERNEL_ARG_INT};
    l.ntemplate = 1, l.template_args = &bad;
    CHECK(pn_cuda_kernel_source(k, 2, ins, &l) == NULL && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    l.ntemplate = 0;
    l.grid[1] = 0;
    pn_array *outs[1];
    if (pn_gpu_available()) {
        CHECK(pn_stream_push(pn_default_stream((pn_device){.type = PN_GPU})) == 0);
        CHECK(pn_cuda_kernel_call(k, 2, ins, &l, outs) != 0 && pn_last_error() == PN_ERR_INVALID_ARGUMENT);
        pn_stream_pop();
    }
    pn_clear_error();
    CHECK(pn_fast_cuda_kernel("x", 1, in_names, 0, out_names, body, NULL, true, 0) == NULL &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_cuda_kernel_free(k);
    pn_scope_pop();
}

TEST(cpu_stream_is_refused)
{
    pn_scope_push();
    const char *in_names[1] = {"inp"}, *out_names[1] = {"out"};
    pn_cuda_kernel *k = pn_fast_cuda_kernel("e", 1, in_names, 1, out_names, "out[0] = inp[0];", NULL, true, 0);
    pn_array *x = test_random_array((int64_t[]){3}, 1, PN_FLOAT32, -1, 1);
    int64_t shape[1] = {3};
    pn_kernel_launch l = launch1(PN_FLOAT32, shape, 1, 3);
    pn_array *outs[1];
    CHECK(pn_stream_push(pn_default_stream((pn_device){.type = PN_CPU})) == 0);
    pn_clear_error();
    CHECK(pn_cuda_kernel_call(k, 1, &x, &l, outs) != 0 && pn_last_error() == PN_ERR_INVALID_ARGUMENT &&
          strstr(pn_last_error_message(), "Only supports the GPU"));
    pn_clear_error();
    const char ptx[] = "// not used";
    CHECK(pn_fast_precompiled_cuda_kernel("k", ptx, sizeof ptx, 1, &x, 0, NULL, &l, 0, false, outs) != 0 &&
          pn_last_error() == PN_ERR_INVALID_ARGUMENT);
    pn_clear_error();
    pn_stream_pop();
    pn_cuda_kernel_free(k);
    pn_scope_pop();
}

/* Runs the kernels on the GPU: on hardware they must agree with float64 references; on the
 * simulated GPU the evaluation must fail with the clear error. */
TEST(kernels_on_the_gpu)
{
    if (!pn_gpu_available()) return;
    pn_scope_push();
    CHECK(pn_stream_push(pn_default_stream((pn_device){.type = PN_GPU})) == 0);
    const int64_t n = 1000;
    pn_array *x = test_random_array(&n, 1, PN_FLOAT32, -2, 2);
    const char *in1[1] = {"inp"}, *out1[1] = {"out"};
    pn_cuda_kernel *ek = pn_fast_cuda_kernel(
        "myexp", 1, in1, 1, out1,
        "  auto elem = cooperative_groups::this_grid().thread_rank();\n"
        "  if (elem < inp_size) out[elem] = exp(inp[elem]);\n",
        "#define inp_size 1000\n", true, 0);
    pn_kernel_launch l = launch1(PN_FLOAT32, &n, 1, n);
    pn_array *outs[2] = {NULL, NULL};
    int rc = pn_cuda_kernel_call(ek, 1, &x, &l, outs);
    CHECK_MSG(rc == 0, "cuda_kernel call: %s", pn_last_error_message());
#ifdef PONTE_GPU_SIM
    pn_clear_error();
    CHECK(rc == 0 && pn_eval(outs, 1) != 0 && pn_last_error() == PN_ERR_BACKEND &&
          strstr(pn_last_error_message(), "simulated GPU"));
    pn_clear_error();
#else
    double *xv = test_to_f64(x), *want = malloc(sizeof(double) * (size_t)(2 * n));
    for (int64_t i = 0; i < n; i++) want[i] = exp(xv[i]);
    if (rc == 0) test_check_values("exp kernel", outs[0], &n, 1, PN_FLOAT32, want, 1e-6, 1e-5);
    /* a strided input read through elem_to_loc (no contiguous copy), a dtype template, two
     * outputs, and an initial value accumulated into with atomics */
    pn_array *m = test_random_array((int64_t[]){8, 5}, 2, PN_FLOAT32, -1, 1);
    pn_array *mt = pn_swapaxes(m, 0, 1); /* (5, 8), not row-contiguous */
    const char *in2[1] = {"a"}, *out2[2] = {"twice", "total"};
    pn_cuda_kernel *sk = pn_fast_cuda_kernel(
        "strided", 1, in2, 2, out2,
        "  int64_t i = blockIdx.x * blockDim.x + threadIdx.x;\n"
        "  if (i >= 40) return;\n"
        "  T v = a[elem_to_loc(i, a_shape, a_strides, a_ndim)];\n"
        "  twice[i] = v * (T)2;\n"
        "  atomicAdd(total, v);\n",
        NULL, false, 0);
    int64_t s2[2] = {5, 8}, s0[1] = {1};
    const int64_t *shp[2] = {s2, s0};
    int nds[2] = {2, 1};
    pn_dtype dts[2] = {PN_FLOAT32, PN_FLOAT32};
    pn_kernel_arg targ = {.name = "T", .kind = PN_KERNEL_ARG_DTYPE, .dtype = PN_FLOAT32};
    pn_kernel_launch l2 = {.grid = {40, 1, 1}, .threadgroup = {32, 1, 1}, .nout = 2, .out_dtypes = dts,
                           .out_shapes = shp, .out_ndims = nds, .ntemplate = 1, .template_args = &targ,
                           .has_init_value = true, .init_value = 10.0};
    rc = pn_cuda_kernel_call(sk, 1, &mt, &l2, outs);
    CHECK_MSG(rc == 0, "strided kernel: %s", pn_last_error_message());
    double *mv = test_to_f64(mt), total = 10;
    for (int i = 0; i < 40; i++) want[i] = 2 * mv[i], total += mv[i];
    if (rc == 0) {
        test_check_values("strided kernel", outs[0], s2, 2, PN_FLOAT32, want, 1e-6, 1e-6);
        test_check_values("atomic total", outs[1], s0, 1, PN_FLOAT32, &total, 1e-4, 1e-5);
    }
    /* a source that does not compile: NVRTC's log in the error */
    pn_cuda_kernel *bk = pn_fast_cuda_kernel("broken", 1, in1, 1, out1, "  out[0] = undefined_name;\n", NULL, true, 0);
    rc = pn_cuda_kernel_call(bk, 1, &x, &l, outs);
    pn_clear_error();
    CHECK(rc == 0 && pn_eval(outs, 1) != 0 && pn_last_error() == PN_ERR_BACKEND &&
          strstr(pn_last_error_message(), "undefined_name"));
    pn_clear_error();
    /* precompiled: hand-written PTX adding a scalar to each element */
    static const char ptx[] =
        ".version 7.0\n.target sm_52\n.address_size 64\n"
        ".visible .entry add_scalar(.param .u64 pin, .param .u64 pout, .param .f32 ps, .param .u32 pn)\n{\n"
        "  .reg .pred %p<2>; .reg .f32 %f<4>; .reg .b32 %r<6>; .reg .b64 %rd<8>;\n"
        "  ld.param.u64 %rd1, [pin]; ld.param.u64 %rd2, [pout]; ld.param.f32 %f1, [ps]; ld.param.u32 %r1, [pn];\n"
        "  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x; mad.lo.s32 %r5, %r2, %r3, %r4;\n"
        "  setp.ge.u32 %p1, %r5, %r1; @%p1 bra DONE;\n"
        "  cvta.to.global.u64 %rd3, %rd1; cvta.to.global.u64 %rd4, %rd2; mul.wide.u32 %rd5, %r5, 4;\n"
        "  add.s64 %rd6, %rd3, %rd5; add.s64 %rd7, %rd4, %rd5;\n"
        "  ld.global.f32 %f2, [%rd6]; add.f32 %f3, %f2, %f1; st.global.f32 [%rd7], %f3;\n"
        "DONE:\n  ret;\n}\n";
    pn_kernel_arg sc[2] = {{.kind = PN_KERNEL_ARG_FLOAT, .f = 1.5}, {.kind = PN_KERNEL_ARG_INT, .i = n}};
    rc = pn_fast_precompiled_cuda_kernel("add_scalar", ptx, sizeof ptx - 1, 1, &x, 2, sc, &l, 0, true, outs);
    CHECK_MSG(rc == 0, "precompiled kernel: %s", pn_last_error_message());
    for (int64_t i = 0; i < n; i++) want[i] = xv[i] + 1.5;
    if (rc == 0) test_check_values("precompiled PTX", outs[0], &n, 1, PN_FLOAT32, want, 1e-6, 1e-6);
    free(xv), free(mv), free(want);
    pn_cuda_kernel_free(sk);
    pn_cuda_kernel_free(bk);
#endif
    pn_stream_pop();
    pn_cuda_kernel_free(ek);
    pn_scope_pop();
}

