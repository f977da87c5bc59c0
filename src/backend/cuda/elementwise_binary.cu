/* elementwise_binary.cu — pnG_ew_binary: the GPU kernels of every binary elementwise op, per dtype
 * (the shared machinery is elementwise_ops.cuh). */
#include "backend/cuda/elementwise_ops.cuh"

extern "C" int pnG_ew_binary(int op, const pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        switch (op) {
#define PNG_BINARY_CASE(OP, ...)                                                               \
    case PNK_B_##OP: rc = png_binary_run<png_binary_fn<PNK_B_##OP, T>>(prm, a); break;
            PNG_BINARY_EXPRS(PNG_BINARY_CASE)
#undef PNG_BINARY_CASE
        default: break;
        }
    });
    return rc;
}
