/* elementwise_where.cu — pnG_ew_where: the GPU select kernel, by element size
 * (the shared machinery is elementwise_ops.cuh). */
#include "backend/cuda/elementwise_ops.cuh"

extern "C" int pnG_ew_where(int op, const pnK_ew_params *prm, pn_dtype t, const pnG_ew_args *a)
{
    int rc = PNG_UNSUPPORTED;
    png_dispatch(t, [&](auto tag) {
        typedef typename png_uint_of<(int)sizeof(typename decltype(tag)::type)>::type U;
        if (!a) {
            rc = 0;
            return;
        }
        rc = png_ew_run<U>(png_where_fn<U>(), a, "where", png_mkarg<uint8_t>(a, 0),
                           png_mkarg<U>(a, 1), png_mkarg<U>(a, 2));
    });
    return rc;
}
