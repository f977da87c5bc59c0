/* indexing.h — internal indexing ops shared with other op families (the sort family's
 * derivatives): not public API. */
#ifndef PONTE_OPS_INDEXING_H
#define PONTE_OPS_INDEXING_H

#include "core/core.h"

/* MLX's scatter_add_axis: a copy of a with values (broadcast to the indices' shape) added at
 * indices along axis, duplicates accumulating. Same checks and broadcasting as
 * pn_put_along_axis; a new array owned like an op result, or NULL with an error. */
pn_array *pnO_scatter_add_axis(pn_array *a, pn_array *indices, pn_array *values, int axis);

#endif /* PONTE_OPS_INDEXING_H */
