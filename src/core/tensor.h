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

/* How a tensor's elements lie in its data. FK_LAYOUT_ROWS: contiguous
 * row-major, every tensor but one kind. FK_LAYOUT_TILES: a bf16 activation
 * handed from one product to another in the tile layout of the CPU's AMX
 * products (backend.h, "tiled bf16 activations"): rows padded to 32 and
 * columns to 32, in blocks of FK_TILE_KC columns (block at column pc starts
 * at element pc·round32(rows)), each block in strips of 16 rows (strip s at
 * s·16·kc, kc = the block's padded width), each strip in tiles of 16 rows ×
 * 32 columns (tile t at t·512, row-major inside). fk_tensor_tile_offset
 * gives an element's place. */
typedef enum fk_layout { FK_LAYOUT_ROWS = 0, FK_LAYOUT_TILES } fk_layout;
#define FK_TILE_KC 256

typedef struct fk_tensor {
    fk_dtype dtype;
    int ndim;
    int64_t shape[FK_MAX_DIMS]; /* shape[0] outermost */
    void *data;                 /* contiguous, row-major (see layout) */
    fk_device device;
    bool owns;                  /* data freed by fk_tensor_free */
    fk_layout layout;           /* FK_LAYOUT_ROWS unless a backend took tiles */
} fk_tensor;

/* Rows or columns of a tiled tensor with their padding: round32(n). */
static inline int64_t fk_tile_pad(int64_t n) { return (n + 31) / 32 * 32; }

/* Element (m, k) of a tiled (rows Mp = fk_tile_pad(rows), columns Kp =
 * fk_tile_pad(cols)) tensor: its index in the data. */
static inline int64_t fk_tensor_tile_offset(int64_t m, int64_t k, int64_t Mp, int64_t Kp) {
    const int64_t pc = k / FK_TILE_KC * FK_TILE_KC;
    const int64_t kc = Kp - pc < FK_TILE_KC ? Kp - pc : FK_TILE_KC;
    return pc * Mp + (m / 16) * 16 * kc + (k - pc) / 32 * 512 + (m % 16) * 32 + k % 32;
}

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
/* Bytes of the data: numel · element size, or for FK_LAYOUT_TILES the padded
 * round32(rows) · round32(cols) · 2. */
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
