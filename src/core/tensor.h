/* tensor: a typed, shaped, contiguous (row-major) view of memory on a device.
 * A tensor does not own its data unless created with fk_tensor_new. */
#ifndef FK_TENSOR_H
#define FK_TENSOR_H

#include "core/core.h"
#include "core/dtype.h"

#define FK_MAX_DIMS 8

typedef enum fk_device {
    FK_DEVICE_CPU = 0,
    FK_DEVICE_CUDA,
} fk_device;

typedef struct fk_tensor {
    fk_dtype dtype;
    int ndim;
    int64_t shape[FK_MAX_DIMS]; /* shape[0] outermost */
    void *data;                 /* contiguous, row-major */
    fk_device device;
    bool owns;                  /* data freed by fk_tensor_free */
} fk_tensor;

/* A non-owning view. ndim <= FK_MAX_DIMS. */
fk_tensor fk_tensor_view(fk_dtype dt, void *data, int ndim, const int64_t *shape);
/* Shorthands for 1-, 2-, 3- and 4-D views. */
fk_tensor fk_view1(fk_dtype dt, void *data, int64_t d0);
fk_tensor fk_view2(fk_dtype dt, void *data, int64_t d0, int64_t d1);
fk_tensor fk_view3(fk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2);
fk_tensor fk_view4(fk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Allocate an owning CPU tensor (64-byte aligned, zeroed). Returns FK_ERR_NOMEM
 * with a message naming `what` on failure. Free with fk_tensor_free. */
fk_status fk_tensor_new(fk_context *ctx, fk_tensor *t, fk_dtype dt, int ndim, const int64_t *shape,
                        const char *what);
void fk_tensor_free(fk_tensor *t);

int64_t fk_tensor_numel(const fk_tensor *t);
size_t fk_tensor_nbytes(const fk_tensor *t);
/* Product of all dims but the last (1 for 1-D). */
int64_t fk_tensor_rows(const fk_tensor *t);
/* Last dim. */
int64_t fk_tensor_cols(const fk_tensor *t);
bool fk_tensor_same_shape(const fk_tensor *a, const fk_tensor *b);
/* "[1, 48, 64]" into buf; returns buf. */
const char *fk_shape_str(const fk_tensor *t, char *buf, size_t n);
/* View of rows [r0, r0+nr) of a tensor seen as (rows, cols). */
fk_tensor fk_tensor_rows_view(const fk_tensor *t, int64_t r0, int64_t nr);

#endif /* FK_TENSOR_H */
