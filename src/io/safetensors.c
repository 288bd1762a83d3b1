/* safetensors reader: mmap the file read-only, validate the header completely
 * before anything is used, and hand out zero-copy views of the tensors.
 *
 * Validation follows the reference implementation (huggingface/safetensors,
 * safetensors/src/tensor.rs, SafeTensors::read_metadata + Metadata::validate):
 *   - u64 LE header length N; N <= 100,000,000 (FK_ST_MAX_HEADER) and 8 + N <= file size;
 *   - the header is valid UTF-8 and one JSON object (whitespace around it allowed: the
 *     writer pads with spaces); N need not be a multiple of 8 when reading;
 *   - each entry other than "__metadata__" is {"dtype", "shape", "data_offsets"} (other
 *     fields are ignored, like serde does); "__metadata__" is null or a string->string map;
 *   - end >= begin and end - begin == numel * dtype size (overflow checked);
 *   - sorted by offsets, the tensors are contiguous from 0 and cover the data section
 *     exactly: no gap, no overlap, no unused bytes at the end (the reference's
 *     InvalidOffset and MetadataIncompleteBuffer).
 * fluxkit is stricter than the reference in a few places, each a clear error:
 *   duplicate names (cJSON keeps both entries; the reference rejects them too),
 *   ndim > FK_MAX_DIMS, dtypes the reference knows but fluxkit does not (U16, U32,
 *   U64, C64, F4, F6_*, F8_E8M0, F8_*FNUZ: FK_ERR_UNSUPPORTED), raw control
 *   characters (also tab and newline inside strings, which serde_json rejects too but
 *   cJSON would accept) and a UTF-8 byte-order mark in the header (invalid JSON), and
 *   integers above 2^53 (not exact in cJSON's double; no real file has them).
 *   cJSON accepts the spellings 4.0 and 4e0 for an integer where serde_json does not.
 *
 * Tensors whose data is not aligned to their element size (files whose writer did
 * not pad the header to a multiple of 8) are copied once to aligned memory so a
 * kernel can read them as float/uint16_t arrays without undefined behaviour. */
#include "io/st_private.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct fk_st_file {
    char *path;               /* label used in messages, owned */
    const uint8_t *base;      /* (size) the whole file image */
    size_t size;
    void *map;                /* mmap'ed region to unmap, or NULL */
    size_t map_len;
    uint64_t header_len;      /* N */
    int n;
    fk_st_tensor *tensors;    /* (n) in data-offset order; names owned */
    int *by_name;             /* (n) indices into tensors, sorted by name */
    int n_meta;
    char **meta_key;          /* (n_meta) header order, owned */
    char **meta_val;          /* (n_meta) */
    int *meta_by_key;         /* (n_meta) sorted by key */
    void **copies;            /* aligned copies of misaligned tensors */
    int n_copies;
};

/* ---- small helpers shared with st_model.c and st_write.c ------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogates U+D800..DFFF */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

bool fk_st_utf8_valid(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq_len(s + i, n - i);
        if (k == 0) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += k;
    }
    return true;
}

const char *fk_st_printable_n(const char *s, size_t len, char *buf, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0, i = 0;
    if (n < 8) { /* too small to be useful: keep it empty */
        if (n) buf[0] = '\0';
        return buf;
    }
    if (!s) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    while (i < len) {
        size_t k = utf8_seq_len(u + i, len - i);
        bool plain = k > 1 || (k == 1 && u[i] >= 0x20 && u[i] != 0x7f);
        size_t need = plain ? k : 4;
        if (o + need + 4 > n) { /* keep room for "..." and the NUL */
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (plain) {
            memcpy(buf + o, u + i, k);
            o += k;
            i += k;
        } else { /* control character or invalid byte */
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[u[i] >> 4];
            buf[o++] = hex[u[i] & 15];
            i++;
        }
    }
    buf[o] = '\0';
    return buf;
}

const char *fk_st_printable(const char *s, char *buf, size_t n) {
    return fk_st_printable_n(s, s ? strlen(s) : 0, buf, n);
}

void fk_st_set_file_index(fk_st_file *f, int index) {
    for (int i = 0; i < f->n; i++) f->tensors[i].file_index = index;
}

/* Reference dtype names that fluxkit cannot represent (error: unsupported, not unknown). */
static bool reference_only_dtype(const char *s) {
    static const char *names[] = {"U16", "U32", "U64", "C64", "F4", "F6_E2M3", "F6_E3M2",
                                  "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) return true;
    return false;
}

static const char *json_kind(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
#define ST_EXACT_LIMIT 9007199254740992.0 /* 2^53 */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || !(d < ST_EXACT_LIMIT)) return false;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return false;
    *out = u;
    return true;
}

/* Why a value is not a non-negative integer, for messages. */
static const char *json_uint_why(const cJSON *v, char *buf, size_t n) {
    if (!cJSON_IsNumber(v)) {
        snprintf(buf, n, "%s", json_kind(v));
    } else {
        double d = v->valuedouble;
        snprintf(buf, n, "%.17g%s", d,
                 d < 0 ? " (negative)"
                       : d >= ST_EXACT_LIMIT ? " (too large)" : " (not an integer)");
    }
    return buf;
}

/* ---- parsing ---------------------------------------------------------------- */

static void st_free_contents(fk_st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->meta_by_key);
    for (int i = 0; i < f->n_copies; i++) fk_free(f->copies[i]);
    free(f->copies);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
}

static int cmp_offsets(const void *a, const void *b) {
    const fk_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: the arrays being sorted hold the strings. */
typedef struct { const char *key; int index; } st_keyed;
static int cmp_keyed(const void *a, const void *b) {
    const st_keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return (x->index > y->index) - (x->index < y->index);
}

/* Builds a name index (sorted) in out; reports the first duplicate. Returns the
 * index of one duplicate pair member in *dup (-1 if none). */
static bool sorted_index(const char *const *keys, int n, int *out, int *dup_a, int *dup_b) {
    st_keyed *tmp = malloc(sizeof(*tmp) * (size_t)(n > 0 ? n : 1));
    if (!tmp) return false;
    for (int i = 0; i < n; i++) tmp[i] = (st_keyed){keys[i], i};
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_keyed);
    *dup_a = *dup_b = -1;
    for (int i = 0; i < n; i++) {
        out[i] = tmp[i].index;
        if (i > 0 && *dup_a < 0 && strcmp(tmp[i - 1].key, tmp[i].key) == 0) {
            *dup_a = tmp[i - 1].index;
            *dup_b = tmp[i].index;
        }
    }
    free(tmp);
    return true;
}

static fk_status st_nomem(fk_context *ctx, const char *label) {
    char lb[FK_ST_NAMEBUF];
    return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory while reading the safetensors header",
                    fk_st_printable(label, lb, sizeof(lb)));
}

/* Parse __metadata__ (null or a string -> string object). */
static fk_status st_parse_meta(fk_context *ctx, fk_st_file *f, const char *lb, const cJSON *m) {
    if (cJSON_IsNull(m)) return FK_OK;
    if (!cJSON_IsObject(m))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings",
                        lb, json_kind(m));
    int n = cJSON_GetArraySize(m);
    f->meta_key = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    f->meta_val = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    f->meta_by_key = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    if (!f->meta_key || !f->meta_val || !f->meta_by_key) return st_nomem(ctx, f->path);
    char kb[FK_ST_NAMEBUF];
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return fk_error(ctx, FK_ERR_FORMAT,
                            "%s: __metadata__ value of key %s is %s, expected a string", lb,
                            fk_st_printable(e->string, kb, sizeof(kb)), json_kind(e));
        f->meta_key[f->n_meta] = strdup(e->string);
        f->meta_val[f->n_meta] = strdup(e->valuestring);
        f->n_meta++;
        if (!f->meta_key[f->n_meta - 1] || !f->meta_val[f->n_meta - 1]) return st_nomem(ctx, f->path);
    }
    int da, db;
    if (!sorted_index((const char *const *)f->meta_key, f->n_meta, f->meta_by_key, &da, &db))
        return st_nomem(ctx, f->path);
    if (da >= 0)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: __metadata__ has the key %s twice", lb,
                        fk_st_printable(f->meta_key[da], kb, sizeof(kb)));
    return FK_OK;
}

/* Parse one tensor entry into t (name already set). data_len: bytes after the header. */
static fk_status st_parse_entry(fk_context *ctx, const char *lb, const char *nb, const cJSON *e,
                                uint64_t data_len, fk_st_tensor *t) {
    if (!cJSON_IsObject(e))
        return fk_error(ctx, FK_ERR_FORMAT,
                        "%s: tensor %s: entry is %s, expected an object with dtype, shape and "
                        "data_offsets", lb, nb, json_kind(e));
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dt
                             : strcmp(c->string, "shape") == 0        ? &sh
                             : strcmp(c->string, "data_offsets") == 0 ? &off
                                                                       : NULL;
        if (!slot) continue; /* unknown fields are ignored, like the reference */
        if (*slot)
            return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: field %s appears twice", lb, nb,
                            c->string);
        *slot = c;
    }
    if (!dt || !sh || !off)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: missing field %s", lb, nb,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");

    char vb[FK_ST_NAMEBUF];
    if (!cJSON_IsString(dt))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: dtype is %s, expected a string", lb,
                        nb, json_kind(dt));
    if (!fk_dtype_parse(dt->valuestring, &t->dtype)) {
        if (reference_only_dtype(dt->valuestring))
            return fk_error(ctx, FK_ERR_UNSUPPORTED,
                            "%s: tensor %s: dtype %s is not supported by fluxkit", lb, nb,
                            dt->valuestring);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%s\"", lb, nb,
                        fk_st_printable(dt->valuestring, vb, sizeof(vb)));
    }

    if (!cJSON_IsArray(sh))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: shape is %s, expected an array", lb,
                        nb, json_kind(sh));
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > FK_MAX_DIMS)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: shape has %d dimensions, at most %d "
                        "supported", lb, nb, ndim, FK_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *c = sh->child; c; c = c->next, d++) {
        uint64_t v;
        if (!json_uint(c, &v))
            return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: shape[%d] is %s, expected a "
                            "non-negative integer", lb, nb, d, json_uint_why(c, vb, sizeof(vb)));
        t->shape[d] = (int64_t)v;
        if (!fk_mul_ok(numel, v, &numel)) overflow = true;
    }
    uint64_t nbytes = 0;
    if (overflow || !fk_mul_ok(numel, fk_dtype_size(t->dtype), &nbytes))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: number of bytes of the shape "
                        "overflows 64 bits", lb, nb);

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets is %s, expected "
                        "[begin, end]", lb, nb,
                        cJSON_IsArray(off) ? "an array of the wrong length" : json_kind(off));
    uint64_t begin, end;
    const cJSON *cb = off->child, *ce = off->child->next;
    if (!json_uint(cb, &begin))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets begin is %s, expected "
                        "a non-negative integer", lb, nb, json_uint_why(cb, vb, sizeof(vb)));
    if (!json_uint(ce, &end))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets end is %s, expected "
                        "a non-negative integer", lb, nb, json_uint_why(ce, vb, sizeof(vb)));
    if (end < begin)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] end before "
                        "begin", lb, nb, (unsigned long long)begin, (unsigned long long)end);
    if (end - begin != nbytes)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] span %llu "
                        "bytes, but dtype %s and shape need %llu", lb, nb,
                        (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), fk_dtype_name(t->dtype),
                        (unsigned long long)nbytes);
    if (end > data_len)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] go past "
                        "the end of the data section (%llu bytes; file truncated?)", lb, nb,
                        (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)data_len);
    t->offset = begin;
    t->nbytes = nbytes;
    return FK_OK;
}

/* Copy tensors whose data is not aligned to the element size (see top comment). */
static fk_status st_align(fk_context *ctx, fk_st_file *f) {
    int need = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < f->n; i++) {
        const fk_st_tensor *t = &f->tensors[i];
        size_t a = fk_dtype_size(t->dtype);
        if (t->nbytes > 0 && a > 1 && ((uintptr_t)t->data & (a - 1)) != 0) need++;
    }
    if (need == 0) return FK_OK;
    f->copies = calloc((size_t)need, sizeof(void *));
    if (!f->copies) return st_nomem(ctx, f->path);
    for (int i = 0; i < f->n; i++) {
        fk_st_tensor *t = &f->tensors[i];
        size_t a = fk_dtype_size(t->dtype);
        if (!(t->nbytes > 0 && a > 1 && ((uintptr_t)t->data & (a - 1)) != 0)) continue;
        void *p = fk_alloc((size_t)t->nbytes);
        char lb[FK_ST_NAMEBUF], nb[FK_ST_NAMEBUF];
        if (!p)
            return fk_error(ctx, FK_ERR_NOMEM, "%s: tensor %s: out of memory copying %llu "
                            "misaligned bytes", fk_st_printable(f->path, lb, sizeof(lb)),
                            fk_st_printable(t->name, nb, sizeof(nb)),
                            (unsigned long long)t->nbytes);
        memcpy(p, t->data, (size_t)t->nbytes);
        f->copies[f->n_copies++] = p;
        t->data = p;
        bytes += t->nbytes;
    }
    char lb[FK_ST_NAMEBUF];
    fk_log(ctx, FK_LOG_INFO, "%s: %d tensors not aligned to their element size in the file; "
           "copied %llu bytes", fk_st_printable(f->path, lb, sizeof(lb)), need,
           (unsigned long long)bytes);
    return FK_OK;
}

/* Validate f->base/f->size and fill the tables. */
static fk_status st_parse(fk_context *ctx, fk_st_file *f) {
    char lb[FK_ST_NAMEBUF], nb[FK_ST_NAMEBUF], nb2[FK_ST_NAMEBUF];
    fk_st_printable(f->path, lb, sizeof(lb));

    if (f->size < 8)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: file is %zu bytes, shorter than the 8-byte "
                        "header length (not a safetensors file)", lb, f->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->base[i];
    if (n > FK_ST_MAX_HEADER)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes "
                        "(not a safetensors file?)", lb, (unsigned long long)n, FK_ST_MAX_HEADER);
    if (n > f->size - 8)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: header length %llu goes past the end of the "
                        "file (%zu bytes; truncated?)", lb, (unsigned long long)n, f->size);
    f->header_len = n;
    const uint8_t *h = f->base + 8;
    uint64_t data_len = (uint64_t)f->size - 8 - n;

    size_t bad;
    if (!fk_st_utf8_valid(h, (size_t)n, &bad))
        return fk_error(ctx, FK_ERR_FORMAT, "%s: header is not valid UTF-8 (byte 0x%02x at "
                        "header offset %zu)", lb, h[bad], bad);
    /* JSON allows no control characters except whitespace between tokens: none inside
     * strings (cJSON would accept them; serde_json, like the standard, does not). */
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = h[i];
        bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        if (c < 0x20 && (in_str || !ws))
            return fk_error(ctx, FK_ERR_FORMAT, "%s: header is not valid JSON (control character "
                            "0x%02x at header offset %zu)", lb, c, i);
        if (esc) esc = false;
        else if (in_str && c == '\\') esc = true;
        else if (c == '"') in_str = !in_str;
    }
    if (n >= 3 && h[0] == 0xEF && h[1] == 0xBB && h[2] == 0xBF)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: header is not valid JSON (starts with a UTF-8 "
                        "byte-order mark)", lb);

    /* cJSON parses a NUL-terminated private copy (never reads past it). */
    char *text = malloc((size_t)n + 1);
    if (!text) return st_nomem(ctx, f->path);
    memcpy(text, h, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    fk_status st = FK_OK;
    if (!root) {
        size_t pos = end ? (size_t)(end - text) : 0;
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: header is not valid JSON (error at header offset "
                      "%zu of %llu)", lb, pos, (unsigned long long)n);
        goto done;
    }
    size_t pos = (size_t)(end - text);
    while (pos < n && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' ||
                       text[pos] == '\r'))
        pos++;
    if (pos < n) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: header is not valid JSON (unexpected text after "
                      "the object at header offset %zu)", lb, pos);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: header is %s, expected a JSON object", lb,
                      json_kind(root));
        goto done;
    }

    int count = 0;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) {
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: header has __metadata__ twice", lb);
                goto done;
            }
            meta = e;
        } else {
            count++;
        }
    }
    f->tensors = calloc((size_t)(count > 0 ? count : 1), sizeof(fk_st_tensor));
    f->by_name = calloc((size_t)(count > 0 ? count : 1), sizeof(int));
    if (!f->tensors || !f->by_name) {
        st = st_nomem(ctx, f->path);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        fk_st_tensor *t = &f->tensors[f->n];
        t->name = strdup(e->string);
        if (!t->name) {
            st = st_nomem(ctx, f->path);
            goto done;
        }
        f->n++;
        fk_st_printable(e->string, nb, sizeof(nb));
        st = st_parse_entry(ctx, lb, nb, e, data_len, t);
        if (st != FK_OK) goto done;
    }
    if (meta && (st = st_parse_meta(ctx, f, lb, meta)) != FK_OK) goto done;

    /* Data-offset order (the order fk_st_get promises), then the name index. */
    qsort(f->tensors, (size_t)f->n, sizeof(fk_st_tensor), cmp_offsets);

    /* Duplicate names (cJSON keeps every key). */
    const char **names = malloc(sizeof(char *) * (size_t)(f->n > 0 ? f->n : 1));
    if (!names) {
        st = st_nomem(ctx, f->path);
        goto done;
    }
    for (int i = 0; i < f->n; i++) names[i] = f->tensors[i].name;
    int da, db;
    bool ok = sorted_index(names, f->n, f->by_name, &da, &db);
    free(names);
    if (!ok) {
        st = st_nomem(ctx, f->path);
        goto done;
    }
    if (da >= 0) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: name appears twice in the header", lb,
                      fk_st_printable(f->tensors[da].name, nb, sizeof(nb)));
        goto done;
    }

    /* Contiguity and exact coverage, in data-offset order. */
    uint64_t expect = 0;
    for (int i = 0; i < f->n; i++) {
        const fk_st_tensor *t = &f->tensors[i];
        if (t->offset < expect) {
            /* the previous non-empty tensor is the one overlapped */
            int j = i - 1;
            while (j > 0 && f->tensors[j].nbytes == 0) j--;
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] "
                          "overlap tensor %s, which ends at %llu", lb,
                          fk_st_printable(t->name, nb, sizeof(nb)), (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes),
                          fk_st_printable(f->tensors[j].name, nb2, sizeof(nb2)),
                          (unsigned long long)expect);
            goto done;
        } else if (t->offset > expect) {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] leave "
                          "%llu unused bytes before it (data must be contiguous)", lb,
                          fk_st_printable(t->name, nb, sizeof(nb)), (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes),
                          (unsigned long long)(t->offset - expect));
            goto done;
        }
        if (t->offset + t->nbytes > expect) expect = t->offset + t->nbytes;
    }
    if (expect != data_len) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensors cover %llu bytes but the data section has "
                      "%llu (%llu unused bytes at the end of the file)", lb,
                      (unsigned long long)expect, (unsigned long long)data_len,
                      (unsigned long long)(data_len - expect));
        goto done;
    }

    const uint8_t *data = f->base + 8 + n;
    for (int i = 0; i < f->n; i++) f->tensors[i].data = data + f->tensors[i].offset;
    st = st_align(ctx, f);

done:
    cJSON_Delete(root);
    free(text);
    return st;
}

static fk_status st_finish(fk_context *ctx, fk_st_file *f, fk_st_file **out) {
    fk_status st = st_parse(ctx, f);
    if (st != FK_OK) {
        st_free_contents(f);
        free(f);
        return st;
    }
    *out = f;
    return FK_OK;
}

fk_status fk_st_open_memory(fk_context *ctx, const char *label, const void *buf, size_t len,
                            fk_st_file **out) {
    if (!out) return fk_error(ctx, FK_ERR_ARG, "fk_st_open_memory: out is NULL");
    *out = NULL;
    if (!label) label = "(memory)";
    if (!buf && len > 0) return fk_error(ctx, FK_ERR_ARG, "%s: buffer is NULL", label);
    fk_st_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(label))) {
        free(f);
        return st_nomem(ctx, label);
    }
    f->base = buf ? buf : (const uint8_t *)"";
    f->size = len;
    return st_finish(ctx, f, out);
}

fk_status fk_st_open(fk_context *ctx, const char *path, fk_st_file **out) {
    if (!out) return fk_error(ctx, FK_ERR_ARG, "fk_st_open: out is NULL");
    *out = NULL;
    if (!path) return fk_error(ctx, FK_ERR_ARG, "fk_st_open: path is NULL");
    char lb[FK_ST_NAMEBUF];
    fk_st_printable(path, lb, sizeof(lb));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never block on a FIFO */
    if (fd < 0) return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s", lb, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fk_error(ctx, FK_ERR_IO, "%s: cannot stat: %s", lb, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fk_error(ctx, FK_ERR_IO, "%s: not a regular file", lb);
    }
    fk_st_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return st_nomem(ctx, path);
    }
    f->size = (size_t)sb.st_size;
    f->base = (const uint8_t *)"";
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f->path);
            free(f);
            return fk_error(ctx, FK_ERR_IO, "%s: cannot map %zu bytes: %s", lb, (size_t)sb.st_size,
                            strerror(e));
        }
        f->map = p;
        f->map_len = f->size;
        f->base = p;
    }
    close(fd);
    return st_finish(ctx, f, out);
}

size_t fk_st_release(const fk_st_file *f, const void *p, size_t n) {
    if (!f || !f->map || !p || !n) return 0;
    uintptr_t lo = (uintptr_t)f->map, hi = lo + f->map_len, a = (uintptr_t)p;
    if (a < lo || a >= hi || n > hi - a) return 0;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return 0;
    uintptr_t s0 = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t s1 = (a + n) & ~((uintptr_t)pg - 1);
    if (s1 <= s0) return 0;
    if (madvise((void *)s0, s1 - s0, MADV_DONTNEED) != 0) return 0;
    return (size_t)(s1 - s0);
}

void fk_st_close(fk_st_file *f) {
    if (!f) return;
    st_free_contents(f);
    free(f);
}

/* ---- queries ------------------------------------------------------------------ */

const char *fk_st_path(const fk_st_file *f) { return f->path; }
int fk_st_count(const fk_st_file *f) { return f->n; }
uint64_t fk_st_file_size(const fk_st_file *f) { return (uint64_t)f->size; }

const fk_st_tensor *fk_st_get(const fk_st_file *f, int i) {
    if (i < 0 || i >= f->n) return NULL;
    return &f->tensors[i];
}

const fk_st_tensor *fk_st_find(const fk_st_file *f, const char *name) {
    if (!name) return NULL;
    int lo = 0, hi = f->n; /* binary search over the name index */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return &f->tensors[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *fk_st_meta(const fk_st_file *f, const char *key) {
    if (!key) return NULL;
    int lo = 0, hi = f->n_meta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta_key[f->meta_by_key[mid]], key);
        if (c == 0) return f->meta_val[f->meta_by_key[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int fk_st_meta_count(const fk_st_file *f) { return f->n_meta; }

void fk_st_meta_get(const fk_st_file *f, int i, const char **key, const char **value) {
    bool ok = i >= 0 && i < f->n_meta;
    if (key) *key = ok ? f->meta_key[i] : NULL;
    if (value) *value = ok ? f->meta_val[i] : NULL;
}

fk_tensor fk_st_view(const fk_st_tensor *t) {
    return fk_tensor_view(t->dtype, (void *)t->data, t->ndim, t->shape);
}
