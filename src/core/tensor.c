#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

fk_tensor fk_tensor_view(fk_dtype dt, void *data, int ndim, const int64_t *shape) {
    fk_tensor t;
    memset(&t, 0, sizeof(t));
    FK_ASSERT(ndim >= 0 && ndim <= FK_MAX_DIMS);
    t.dtype = dt;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.data = data;
    t.device = FK_DEVICE_CPU;
    return t;
}

fk_tensor fk_view1(fk_dtype dt, void *data, int64_t d0) {
    int64_t s[1] = {d0};
    return fk_tensor_view(dt, data, 1, s);
}
fk_tensor fk_view2(fk_dtype dt, void *data, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return fk_tensor_view(dt, data, 2, s);
}
fk_tensor fk_view3(fk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return fk_tensor_view(dt, data, 3, s);
}
fk_tensor fk_view4(fk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    return fk_tensor_view(dt, data, 4, s);
}

int64_t fk_tensor_numel(const fk_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t fk_tensor_nbytes(const fk_tensor *t) {
    if (t->layout == FK_LAYOUT_TILES)
        return (size_t)fk_tile_pad(fk_tensor_rows(t)) * (size_t)fk_tile_pad(fk_tensor_cols(t)) * 2u;
    return (size_t)fk_tensor_numel(t) * fk_dtype_size(t->dtype);
}

int64_t fk_tensor_rows(const fk_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t fk_tensor_cols(const fk_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

bool fk_tensor_same_shape(const fk_tensor *a, const fk_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *fk_shape_str(const fk_tensor *t, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

fk_status fk_tensor_new(fk_context *ctx, fk_tensor *t, fk_dtype dt, int ndim, const int64_t *shape,
                        const char *what) {
    *t = fk_tensor_view(dt, NULL, ndim, shape);
    uint64_t bytes = fk_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !fk_mul_ok(bytes, (uint64_t)shape[i], &bytes))
            return fk_error(ctx, FK_ERR_ARG, "%s: invalid tensor shape", what ? what : "tensor");
    }
    t->data = fk_calloc((size_t)bytes);
    if (!t->data)
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory allocating %llu bytes for %s",
                        (unsigned long long)bytes, what ? what : "tensor");
    t->owns = true;
    return FK_OK;
}

void fk_tensor_free(fk_tensor *t) {
    if (t && t->owns) fk_free(t->data);
    if (t) {
        t->data = NULL;
        t->owns = false;
    }
}

fk_tensor fk_tensor_rows_view(const fk_tensor *t, int64_t r0, int64_t nr) {
    FK_ASSERT(t->layout == FK_LAYOUT_ROWS);
    int64_t cols = fk_tensor_cols(t);
    fk_tensor v = fk_view2(t->dtype, (char *)t->data + (size_t)(r0 * cols) * fk_dtype_size(t->dtype),
                           nr, cols);
    v.device = t->device;
    return v;
}
