/* safetensors writer: streamed (one tensor buffer at a time), atomic
 * (temporary file, fsync, rename), header byte-identical to the reference
 * implementation (huggingface/safetensors, safetensors/src/tensor.rs `prepare`):
 *
 *   - tensors sorted by dtype, descending in the order of the reference's Dtype
 *     enum (I64, F64, F32, I32, BF16, F16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL for
 *     the dtypes fluxkit has), then by name (byte-wise, strcmp); data_offsets
 *     follow that order from 0 with no padding between tensors;
 *   - JSON as serde_json prints it: no spaces; "__metadata__" first when present,
 *     then each tensor as {"dtype":"F32","shape":[2,3],"data_offsets":[0,24]};
 *     strings escape '"', '\\', \b \f \n \r \t, other bytes below 0x20 as \u00xx
 *     (lowercase hex); everything else (including '/', DEL and UTF-8) raw;
 *   - header padded with spaces to a multiple of 8; its length at most
 *     FK_ST_MAX_HEADER.
 * The reference keeps __metadata__ in a Rust HashMap, so its key order changes
 * from run to run; fluxkit writes the keys in the order given. meta == NULL writes
 * no __metadata__; meta != NULL with n_meta == 0 writes an empty one, as the
 * reference does for metadata={}. The file is created with mode 0644 (less the
 * umask); the reference's temporary file gives 0600. */
#include "io/st_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Position in the reference's Dtype enum; the writer sorts by it, descending. */
static int dtype_rank(fk_dtype t) {
    switch (t) {
    case FK_BOOL: return 0;
    case FK_U8: return 4;
    case FK_I8: return 5;
    case FK_F8_E5M2: return 6;
    case FK_F8_E4M3: return 7;
    case FK_I16: return 11;
    case FK_F16: return 13;
    case FK_BF16: return 14;
    case FK_I32: return 15;
    case FK_F32: return 17;
    case FK_F64: return 19;
    case FK_I64: return 20;
    default: return -1;
    }
}

/* ---- growable header text ---------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(st_buf *b, uint64_t v) {
    char t[24];
    int n = snprintf(t, sizeof(t), "%llu", (unsigned long long)v);
    sb_put(b, t, (size_t)n);
}

/* A JSON string as serde_json writes it. */
static void sb_json_str(st_buf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            sb_put(b, run, (size_t)(s - run));
            sb_puts(b, esc);
            run = s + 1;
        }
    }
    sb_put(b, run, (size_t)(s - run));
    sb_put(b, "\"", 1);
}

/* ---- writing ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int rank;
    int index; /* into specs */
} st_order;

static int cmp_file_order(const void *a, const void *b) {
    const st_order *x = a, *y = b;
    if (x->rank != y->rank) return y->rank - x->rank; /* descending alignment */
    return strcmp(x->name, y->name);
}

static int cmp_name_only(const void *a, const void *b) {
    return strcmp(((const st_order *)a)->name, ((const st_order *)b)->name);
}

static bool write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* fsync the folder holding path so the rename itself is durable (best effort). */
static void sync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir)) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static bool is_utf8(const char *s) {
    return fk_st_utf8_valid((const uint8_t *)s, strlen(s), NULL);
}

/* Shared by fk_st_write (fill != NULL) and fk_st_write_tensors (direct[i] holds
 * the bytes of specs[i]). */
static fk_status st_write(fk_context *ctx, const char *path, const fk_st_spec *specs, int n,
                          const char *const *meta, int n_meta, fk_st_fill_fn fill, void *user,
                          const void *const *direct) {
    if (!path) return fk_error(ctx, FK_ERR_ARG, "fk_st_write: path is NULL");
    char pb[FK_ST_NAMEBUF], nb[FK_ST_NAMEBUF];
    fk_st_printable(path, pb, sizeof(pb));
    if (n < 0 || (n > 0 && !specs) || n_meta < 0 || (n_meta > 0 && !meta))
        return fk_error(ctx, FK_ERR_ARG, "%s: invalid tensor or metadata list", pb);
    if (n > 0 && !fill && !direct)
        return fk_error(ctx, FK_ERR_ARG, "%s: no fill callback", pb);

    fk_status st = FK_OK;
    st_order *order = malloc(sizeof(*order) * (size_t)(n > 0 ? n : 1));
    uint64_t *begin = malloc(sizeof(*begin) * (size_t)(n > 0 ? n : 1));
    uint64_t *nbytes = malloc(sizeof(*nbytes) * (size_t)(n > 0 ? n : 1));
    st_buf hb = {0};
    char *tmp = NULL;
    void *buf = NULL;
    int fd = -1;
    if (!order || !begin || !nbytes) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", pb);
        goto fail;
    }

    /* Validate every tensor spec before creating anything. */
    uint64_t max_bytes = 0;
    for (int i = 0; i < n; i++) {
        const fk_st_spec *s = &specs[i];
        if (!s->name) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %d has no name", pb, i);
            goto fail;
        }
        fk_st_printable(s->name, nb, sizeof(nb));
        if (!is_utf8(s->name) || strcmp(s->name, "__metadata__") == 0) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: name must be UTF-8 and not "
                          "__metadata__", pb, nb);
            goto fail;
        }
        if ((int)s->dtype < 0 || s->dtype >= FK_DTYPE_COUNT || dtype_rank(s->dtype) < 0) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: invalid dtype %d", pb, nb,
                          (int)s->dtype);
            goto fail;
        }
        if (s->ndim < 0 || s->ndim > FK_MAX_DIMS) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: ndim %d outside [0, %d]", pb, nb,
                          s->ndim, FK_MAX_DIMS);
            goto fail;
        }
        uint64_t numel = 1;
        bool ok = true;
        for (int d = 0; d < s->ndim; d++) {
            if (s->shape[d] < 0) {
                st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: shape[%d] = %lld is negative", pb,
                              nb, d, (long long)s->shape[d]);
                goto fail;
            }
            ok = ok && fk_mul_ok(numel, (uint64_t)s->shape[d], &numel);
        }
        if (!ok || !fk_mul_ok(numel, fk_dtype_size(s->dtype), &nbytes[i]) ||
            nbytes[i] > (uint64_t)SIZE_MAX / 2) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: size overflows", pb, nb);
            goto fail;
        }
        if (nbytes[i] > max_bytes) max_bytes = nbytes[i];
        order[i] = (st_order){s->name, dtype_rank(s->dtype), i};
    }
    qsort(order, (size_t)n, sizeof(*order), cmp_name_only);
    for (int i = 1; i < n; i++) {
        if (strcmp(order[i - 1].name, order[i].name) == 0) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: name given twice", pb,
                          fk_st_printable(order[i].name, nb, sizeof(nb)));
            goto fail;
        }
    }
    for (int i = 0; i < n_meta; i++) {
        const char *k = meta[2 * i], *v = meta[2 * i + 1];
        if (!k || !v || !is_utf8(k) || !is_utf8(v)) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: metadata entry %d (%s) must be a UTF-8 key and "
                          "value", pb, i, k ? fk_st_printable(k, nb, sizeof(nb)) : "NULL");
            goto fail;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(meta[2 * j], k) == 0) {
                st = fk_error(ctx, FK_ERR_ARG, "%s: metadata key %s given twice", pb,
                              fk_st_printable(k, nb, sizeof(nb)));
                goto fail;
            }
        }
    }

    /* File order and offsets. */
    qsort(order, (size_t)n, sizeof(*order), cmp_file_order);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        int k = order[i].index;
        begin[k] = off;
        if (!fk_add_ok(off, nbytes[k], &off)) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: total size overflows", pb);
            goto fail;
        }
    }

    /* Header. */
    sb_put(&hb, "{", 1);
    bool first = true;
    if (meta) {
        sb_puts(&hb, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_put(&hb, ",", 1);
            sb_json_str(&hb, meta[2 * i]);
            sb_put(&hb, ":", 1);
            sb_json_str(&hb, meta[2 * i + 1]);
        }
        sb_put(&hb, "}", 1);
        first = false;
    }
    for (int i = 0; i < n; i++) {
        const fk_st_spec *s = &specs[order[i].index];
        if (!first) sb_put(&hb, ",", 1);
        first = false;
        sb_json_str(&hb, s->name);
        sb_puts(&hb, ":{\"dtype\":");
        sb_json_str(&hb, fk_dtype_name(s->dtype));
        sb_puts(&hb, ",\"shape\":[");
        for (int d = 0; d < s->ndim; d++) {
            if (d) sb_put(&hb, ",", 1);
            sb_u64(&hb, (uint64_t)s->shape[d]);
        }
        sb_puts(&hb, "],\"data_offsets\":[");
        sb_u64(&hb, begin[order[i].index]);
        sb_put(&hb, ",", 1);
        sb_u64(&hb, begin[order[i].index] + nbytes[order[i].index]);
        sb_puts(&hb, "]}");
    }
    sb_put(&hb, "}", 1);
    while (!hb.oom && hb.len % 8 != 0) sb_put(&hb, " ", 1);
    if (hb.oom) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory building the header", pb);
        goto fail;
    }
    if (hb.len > FK_ST_MAX_HEADER) {
        st = fk_error(ctx, FK_ERR_ARG, "%s: header of %zu bytes exceeds the %u-byte limit", pb,
                      hb.len, FK_ST_MAX_HEADER);
        goto fail;
    }

    if (!direct && max_bytes > 0 && !(buf = fk_alloc((size_t)max_bytes))) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory for a %llu-byte tensor buffer", pb,
                      (unsigned long long)max_bytes);
        goto fail;
    }
    size_t tl = strlen(path) + 32;
    tmp = malloc(tl);
    if (!tmp) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", pb);
        goto fail;
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: cannot create %s: %s", pb,
                      fk_st_printable(tmp, nb, sizeof(nb)), strerror(errno));
        free(tmp);
        tmp = NULL; /* nothing to remove */
        goto fail;
    }

    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hb.len >> (8 * i));
    if (!write_all(fd, len8, 8) || !write_all(fd, hb.p, hb.len)) {
        st = fk_error(ctx, FK_ERR_IO, "%s: write failed: %s", pb, strerror(errno));
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        int k = order[i].index;
        const void *src;
        if (direct) {
            src = direct[k];
        } else {
            if (ctx) ctx->err[0] = '\0';
            fk_status fs = fill(user, k, buf, (size_t)nbytes[k]);
            if (fs != FK_OK) {
                char msg[FK_ERRMSG_MAX];
                snprintf(msg, sizeof(msg), "%s", ctx ? ctx->err : "");
                st = fk_error(ctx, fs, "%s: tensor %s: %s", pb,
                              fk_st_printable(specs[k].name, nb, sizeof(nb)),
                              msg[0] ? msg : fk_status_name(fs));
                goto fail;
            }
            src = buf;
        }
        if (nbytes[k] > 0 && !write_all(fd, src, (size_t)nbytes[k])) {
            st = fk_error(ctx, FK_ERR_IO, "%s: tensor %s: write failed: %s", pb,
                          fk_st_printable(specs[k].name, nb, sizeof(nb)), strerror(errno));
            goto fail;
        }
    }
    if (fsync(fd) != 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: fsync failed: %s", pb, strerror(errno));
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: close failed: %s", pb, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: cannot rename the temporary file over it: %s", pb,
                      strerror(errno));
        goto fail;
    }
    sync_parent(path);
    free(tmp);
    tmp = NULL;

fail:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    fk_free(buf);
    free(hb.p);
    free(order);
    free(begin);
    free(nbytes);
    return st;
}

fk_status fk_st_write(fk_context *ctx, const char *path, const fk_st_spec *specs, int n,
                      const char *const *meta, int n_meta, fk_st_fill_fn fill, void *user) {
    return st_write(ctx, path, specs, n, meta, n_meta, fill, user, NULL);
}

fk_status fk_st_write_tensors(fk_context *ctx, const char *path, const char *const *names,
                              const fk_tensor *tensors, int n, const char *const *meta,
                              int n_meta) {
    char pb[FK_ST_NAMEBUF], nb[FK_ST_NAMEBUF];
    if (!path) return fk_error(ctx, FK_ERR_ARG, "fk_st_write_tensors: path is NULL");
    fk_st_printable(path, pb, sizeof(pb));
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return fk_error(ctx, FK_ERR_ARG, "%s: invalid tensor list", pb);
    fk_st_spec *specs = calloc((size_t)(n > 0 ? n : 1), sizeof(*specs));
    const void **direct = calloc((size_t)(n > 0 ? n : 1), sizeof(*direct));
    if (!specs || !direct) {
        free(specs);
        free(direct);
        return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", pb);
    }
    fk_status st = FK_OK;
    for (int i = 0; i < n && st == FK_OK; i++) {
        const fk_tensor *t = &tensors[i];
        fk_st_printable(names[i], nb, sizeof(nb));
        if (t->ndim < 0 || t->ndim > FK_MAX_DIMS) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: ndim %d outside [0, %d]", pb, nb,
                          t->ndim, FK_MAX_DIMS);
            break;
        }
        if (t->device != FK_DEVICE_CPU) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: not in CPU memory", pb, nb);
            break;
        }
        specs[i].name = names[i];
        specs[i].dtype = t->dtype;
        specs[i].ndim = t->ndim;
        bool empty = false;
        for (int d = 0; d < t->ndim; d++) {
            specs[i].shape[d] = t->shape[d];
            if (t->shape[d] == 0) empty = true;
        }
        if (!t->data && !empty) {
            st = fk_error(ctx, FK_ERR_ARG, "%s: tensor %s: data is NULL", pb, nb);
            break;
        }
        direct[i] = t->data;
    }
    if (st == FK_OK) st = st_write(ctx, path, specs, n, meta, n_meta, NULL, NULL, direct);
    free(specs);
    free(direct);
    return st;
}
