/* elementwise_unary.cu — pnG_ew_unary: the GPU kernels of every unary elementwise op, per dtype
 * (the shared machinery is elementwise_ops.cuh). */
#include "backend/cuda/elementwise_ops.cuh"

extern "C" int pnG_ew_unary(int op, const pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        typedef typename decltype(tag)::type T;
        switch (op) {
#define PNG_UNARY_CASE(OP, ...)                                                                \
    case PNK_U_##OP: rc = png_unary_run<png_unary_fn<PNK_U_##OP, T>>(prm, a); break;
            PNG_UNARY_EXPRS(PNG_UNARY_CASE)
#undef PNG_UNARY_CASE
        default: break;
        }
    });
    return rc;
}
