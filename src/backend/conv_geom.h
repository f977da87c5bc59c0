/* conv_geom.h — the geometry of a convolution as both backends' kernels walk it (plain C,
 * readable from CUDA): spatial axes padded to three (leading axes of extent 1, stride 1, no
 * padding) so that one code path serves 1-, 2- and 3-d. pnK_conv_geom_init
 * (src/backend/cpu/conv.h) fills it from a Convolution node. */
#ifndef PONTE_BACKEND_CONV_GEOM_H
#define PONTE_BACKEND_CONV_GEOM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pnK_conv_geom {
    int64_t N, C, O, G, Cg, Og;
    int64_t in[3];  /* input extent (undilated) */
    int64_t din[3]; /* dilated input extent: (in - 1) * idil + 1, 0 when in == 0 */
    int64_t k[3];   /* kernel extent */
    int64_t out[3]; /* output extent */
    int64_t s[3], pl[3], kd[3], id[3]; /* stride, low padding, kernel and input dilation */
    int64_t P;  /* output positions per batch element */
    int64_t KP; /* kernel taps */
    bool flip;
} pnK_conv_geom;

#endif /* PONTE_BACKEND_CONV_GEOM_H */
