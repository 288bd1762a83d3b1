/* safetensors reader, writer and multi-file models.
 *
 * References, all exact (bit-for-bit: nothing here is computed in floating
 * point except by the formulas that generated the fixture, so the tolerance is 0):
 *   - tests/data/st/python_... files were written by the reference Python/Rust
 *     `safetensors` library (tools/gen_st_fixtures.py); every value is checked
 *     against the generator's formulas, decoded with naive ldexp decoders written
 *     here, and rewriting the tensors with fluxkit must give identical bytes;
 *   - tests/data/malformed/ files (one per defect) each carry one defect: opening must fail
 *     with a one-line message naming the file (and the tensor, where there is one);
 *   - round trips through fk_st_write compare the bytes read back with those given. */
#include "io/safetensors.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define PY_WRITTEN "tests/data/st/python_written.safetensors"
#define PY_EMPTY_META "tests/data/st/python_empty_meta.safetensors"
#define PY_NO_TENSORS "tests/data/st/python_no_tensors.safetensors"
#define MALFORMED_DIR "tests/data/malformed"

static fk_context *ctx;
static char tmpdir[64];

/* ---- helpers ------------------------------------------------------------------------ */

static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

/* Whole file into memory (caller frees); NULL if unreadable. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static bool same_bytes(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    uint8_t *x = slurp(a, &la), *y = slurp(b, &lb);
    bool same = x && y && la == lb && memcmp(x, y, la) == 0;
    if (!same && x && y) {
        size_t i = 0;
        while (i < la && i < lb && x[i] == y[i]) i++;
        fprintf(stderr, "  %s (%zu bytes) and %s (%zu bytes) differ at byte %zu\n", a, la, b, lb, i);
    }
    free(x);
    free(y);
    return same;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in the temporary folder (besides . and ..). */
static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static bool one_line(const char *s) { return s[0] != '\0' && strchr(s, '\n') == NULL; }

/* Naive decoders (independent of src/core/dtype.c). */
static double dec_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}
static double dec_e4m3(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double v = (e == 15 && m == 7) ? NAN : e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return s ? -v : v;
}
static double dec_e5m2(uint8_t b) {
    int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
    double v = e == 0 ? ldexp(m, -16) : e == 31 ? (m ? NAN : INFINITY) : ldexp(4 + m, e - 17);
    return s ? -v : v;
}
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const fk_st_tensor *expect_tensor(const fk_st_file *f, const char *name, fk_dtype dt,
                                         int ndim, const int64_t *shape) {
    const fk_st_tensor *t = fk_st_find(f, name);
    CHECKF(t != NULL, "tensor %s missing", name);
    if (!t) return NULL;
    CHECKF(t->dtype == dt, "%s dtype %d", name, (int)t->dtype);
    CHECKF(t->ndim == ndim, "%s ndim %d", name, t->ndim);
    for (int d = 0; d < ndim && d < t->ndim; d++) CHECKF(t->shape[d] == shape[d], "%s shape[%d]", name, d);
    CHECK(strcmp(t->name, name) == 0);
    return t;
}

/* ---- the reference-written file ------------------------------------------------------- */

static const char *const py_meta[][2] = {
    {"format", "pt"},
    {"quote\"key", "back\\slash"},
    {"newline", "line1\nline2\ttab\x01" "ctl\x1f"},
    {"unicode", "\xcf\x80 \xe2\x89\x88 3.14159 \xc3\xa9 \xf0\x9f\x98\x80"},
    {"json", "{\"a\": [1, 2], \"b\": \"c/d\"}"},
    {"empty", ""},
};

static void test_python_values(void) {
    fk_st_file *f = NULL;
    fk_status st = fk_st_open(ctx, PY_WRITTEN, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st != FK_OK) return;
    CHECK(fk_st_count(f) == 18);
    CHECK(strcmp(fk_st_path(f), PY_WRITTEN) == 0);
    CHECK(fk_st_file_size(f) == 1536);

    /* data-offset order, contiguous */
    uint64_t off = 0;
    for (int i = 0; i < fk_st_count(f); i++) {
        const fk_st_tensor *t = fk_st_get(f, i);
        CHECK(t->offset == off);
        CHECK(t->file_index == 0);
        off = t->offset + t->nbytes;
    }
    CHECK(fk_st_get(f, -1) == NULL && fk_st_get(f, 18) == NULL);
    CHECK(fk_st_find(f, "missing") == NULL && fk_st_find(f, "a") == NULL);

    const fk_st_tensor *t;
    int64_t s23[] = {2, 3}, s5[] = {5}, s4[] = {4}, s1[] = {1}, s04[] = {0, 4}, s22[] = {2, 2},
            s3[] = {3};
    if ((t = expect_tensor(f, "int64.counts", FK_I64, 2, s23))) {
        const int64_t *v = t->data;
        for (int k = 0; k < 6; k++) CHECK(v[k] == (int64_t)(k - 2) * 1000000007LL * 1000LL);
    }
    if ((t = expect_tensor(f, "f64.values", FK_F64, 1, s5))) {
        const double *v = t->data;
        for (int k = 0; k < 5; k++) CHECK(v[k] == (double)(k - 2) * 0.1);
    }
    if ((t = expect_tensor(f, "a.weight", FK_F32, 2, s23))) {
        const float *v = t->data;
        for (int k = 0; k < 6; k++) CHECK(v[k] == ((float)k - 2.5f) * 0.25f);
        fk_tensor view = fk_st_view(t);
        CHECK(view.data == t->data && view.ndim == 2 && view.shape[1] == 3 && view.dtype == FK_F32);
        CHECK(fk_tensor_numel(&view) == 6);
    }
    if ((t = expect_tensor(f, "B.bias", FK_F32, 1, s4))) {
        const float *v = t->data;
        for (int k = 0; k < 4; k++) CHECK(v[k] == (float)k * 1.5f);
    }
    if ((t = expect_tensor(f, "scalar", FK_F32, 0, NULL))) {
        CHECK(t->nbytes == 4 && *(const float *)t->data == 3.25f);
    }
    if ((t = expect_tensor(f, "empty", FK_F32, 2, s04))) CHECK(t->nbytes == 0);
    if ((t = expect_tensor(f, "a.10", FK_F32, 1, s1))) CHECK(*(const float *)t->data == 10.0f);
    if ((t = expect_tensor(f, "a.9", FK_F32, 1, s1))) CHECK(*(const float *)t->data == 9.0f);
    if ((t = expect_tensor(f, "\xc3\xa9.layer", FK_F32, 1, s1))) CHECK(*(const float *)t->data == 7.0f);
    if ((t = expect_tensor(f, "i32.idx", FK_I32, 1, s4))) {
        const int32_t *v = t->data;
        for (int k = 0; k < 4; k++) CHECK(v[k] == k * k - 5);
    }
    if ((t = expect_tensor(f, "bf16.w", FK_BF16, 2, s22))) {
        const uint16_t *v = t->data;
        for (int k = 0; k < 4; k++) {
            float want = (float)k * 0.5f - 1.0f;
            CHECK(v[k] == (uint16_t)(f32_bits(want) >> 16));
            uint32_t u = (uint32_t)v[k] << 16;
            float got;
            memcpy(&got, &u, 4);
            CHECK(got == want);
        }
    }
    if ((t = expect_tensor(f, "f16.w", FK_F16, 1, s3))) {
        const uint16_t *v = t->data;
        for (int k = 0; k < 3; k++) CHECK(dec_f16(v[k]) == k * 0.5 - 0.75);
    }
    if ((t = expect_tensor(f, "i16.v", FK_I16, 1, s3))) {
        const int16_t *v = t->data;
        for (int k = 0; k < 3; k++) CHECK(v[k] == -300 + k * 250);
    }
    if ((t = expect_tensor(f, "f8.e4m3", FK_F8_E4M3, 1, s4))) {
        const uint8_t *v = t->data;
        const double want[] = {1.0, -1.0, 448.0, ldexp(1, -9)};
        for (int k = 0; k < 4; k++) CHECK(dec_e4m3(v[k]) == want[k]);
    }
    if ((t = expect_tensor(f, "f8.e5m2", FK_F8_E5M2, 2, s22))) {
        const uint8_t *v = t->data;
        const double want[] = {1.0, -2.0, 57344.0, ldexp(1, -16)};
        for (int k = 0; k < 4; k++) CHECK(dec_e5m2(v[k]) == want[k]);
    }
    if ((t = expect_tensor(f, "i8.v", FK_I8, 1, s4))) {
        const int8_t *v = t->data;
        CHECK(v[0] == -128 && v[1] == -1 && v[2] == 0 && v[3] == 127);
    }
    if ((t = expect_tensor(f, "u8.v", FK_U8, 1, s5))) {
        const uint8_t *v = t->data;
        for (int k = 0; k < 5; k++) CHECK(v[k] == k * 50);
    }
    if ((t = expect_tensor(f, "mask", FK_BOOL, 1, s3))) {
        const uint8_t *v = t->data;
        CHECK(v[0] == 1 && v[1] == 0 && v[2] == 1);
    }

    int nm = (int)(sizeof(py_meta) / sizeof(py_meta[0]));
    CHECK(fk_st_meta_count(f) == nm);
    for (int i = 0; i < nm; i++) {
        const char *v = fk_st_meta(f, py_meta[i][0]);
        CHECKF(v && strcmp(v, py_meta[i][1]) == 0, "metadata %s", py_meta[i][0]);
    }
    CHECK(fk_st_meta(f, "absent") == NULL);
    const char *k0 = NULL, *v0 = NULL;
    fk_st_meta_get(f, nm, &k0, &v0);
    CHECK(k0 == NULL && v0 == NULL);
    fk_st_close(f);
}

/* Rewrite a reference-written file with fluxkit; the bytes must be identical.
 * Metadata keys are passed in the file's order (the reference's order is that of a
 * Rust HashMap, i.e. arbitrary). empty_meta: the file has "__metadata__":{}. */
static void rewrite_identical(const char *src, bool empty_meta, bool streamed);

typedef struct {
    const fk_st_file *f;
    int calls;
} copy_user;

static fk_status copy_fill(void *user, int index, void *buf, size_t nbytes) {
    copy_user *u = user;
    const fk_st_tensor *t = fk_st_get(u->f, index);
    if (!t || t->nbytes != nbytes) return fk_error(ctx, FK_ERR_INTERNAL, "wrong size");
    memcpy(buf, t->data, nbytes);
    u->calls++;
    return FK_OK;
}

static void rewrite_identical(const char *src, bool empty_meta, bool streamed) {
    fk_st_file *f = NULL;
    fk_status st = fk_st_open(ctx, src, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st != FK_OK) return;
    int n = fk_st_count(f), nm = fk_st_meta_count(f);
    const char **names = calloc((size_t)n + 1, sizeof(char *));
    fk_tensor *ts = calloc((size_t)n + 1, sizeof(fk_tensor));
    fk_st_spec *specs = calloc((size_t)n + 1, sizeof(fk_st_spec));
    const char **meta = calloc(2 * (size_t)nm + 2, sizeof(char *));
    /* Give the tensors in reverse data order: the writer must sort them itself. */
    for (int i = 0; i < n; i++) {
        const fk_st_tensor *t = fk_st_get(f, n - 1 - i);
        names[i] = t->name;
        ts[i] = fk_st_view(t);
        specs[i].name = t->name;
        specs[i].dtype = t->dtype;
        specs[i].ndim = t->ndim;
        memcpy(specs[i].shape, t->shape, sizeof(t->shape));
    }
    for (int i = 0; i < nm; i++) fk_st_meta_get(f, i, &meta[2 * i], &meta[2 * i + 1]);
    const char *const *mp = (nm > 0 || empty_meta) ? meta : NULL;
    const char *out = tmp_path(streamed ? "rewrite_streamed.safetensors" : "rewrite.safetensors");
    if (streamed) {
        /* fill receives specs indices; map them back to data-order indices */
        fk_st_spec *fwd = calloc((size_t)n + 1, sizeof(fk_st_spec));
        for (int i = 0; i < n; i++) fwd[i] = specs[n - 1 - i]; /* fwd[i] is fk_st_get(f, i) */
        copy_user u = {f, 0};
        st = fk_st_write(ctx, out, fwd, n, mp, nm, copy_fill, &u);
        CHECK(u.calls == n);
        free(fwd);
    } else {
        st = fk_st_write_tensors(ctx, out, names, ts, n, mp, nm);
    }
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    CHECKF(same_bytes(src, out), "rewrite of %s (%s) is not byte-identical", src,
           streamed ? "fk_st_write" : "fk_st_write_tensors");
    unlink(out);
    free(names);
    free(ts);
    free(specs);
    free(meta);
    fk_st_close(f);
}

/* ---- malformed files ------------------------------------------------------------------ */

/* The tensor (or metadata key) the message must name, by file. */
static const char *const malformed_names[][2] = {
    {"truncated_data", "tensor w"},    {"out_of_range", "tensor w"},
    {"end_before_begin", "tensor w"},  {"unknown_dtype", "tensor w"},
    {"unsupported_dtype", "tensor w"}, {"wrong_span", "tensor w"},
    {"duplicate_names", "tensor w"},   {"entry_not_object", "tensor w"},
    {"missing_dtype", "tensor w"},     {"missing_shape", "tensor w"},
    {"missing_offsets", "tensor w"},   {"offsets_arity", "tensor w"},
    {"negative_shape", "tensor w"},    {"float_shape", "tensor w"},
    {"string_shape", "tensor w"},      {"too_many_dims", "tensor w"},
    {"numel_overflow", "tensor w"},    {"overlap", "tensor b"},
    {"gap", "tensor b"},               {"meta_non_string", "key k"},
};

static void test_malformed(void) {
    DIR *d = opendir(MALFORMED_DIR);
    CHECK(d != NULL);
    if (!d) return;
    int nfiles = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (len < 12 || strcmp(name + len - 12, ".safetensors") != 0) continue;
        nfiles++;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", MALFORMED_DIR, name);
        fk_st_file *f = NULL;
        fk_status st = fk_st_open(ctx, path, &f);
        const char *msg = fk_context_error(ctx);
        CHECKF(st != FK_OK && f == NULL, "%s opened", path);
        CHECKF(st == FK_ERR_FORMAT || st == FK_ERR_UNSUPPORTED, "%s: status %s", path,
               fk_status_name(st));
        CHECKF(strstr(msg, path) != NULL, "%s: message does not name the file: %s", path, msg);
        CHECKF(one_line(msg), "%s: message is not one line: %s", path, msg);
        for (size_t i = 0; i < sizeof(malformed_names) / sizeof(malformed_names[0]); i++) {
            if (strncmp(name, malformed_names[i][0], len - 12) == 0 &&
                strlen(malformed_names[i][0]) == len - 12)
                CHECKF(strstr(msg, malformed_names[i][1]) != NULL, "%s: message does not name "
                       "%s: %s", path, malformed_names[i][1], msg);
        }
        if (st == FK_OK) fk_st_close(f);

        /* same verdict from the in-memory entry point */
        size_t n = 0;
        uint8_t *buf = slurp(path, &n);
        CHECK(buf != NULL);
        fk_st_file *g = NULL;
        fk_status st2 = fk_st_open_memory(ctx, "mem", buf, n, &g);
        CHECKF(st2 == st, "%s: open_memory status %d vs %d", path, (int)st2, (int)st);
        CHECK(strncmp(fk_context_error(ctx), "mem: ", 5) == 0);
        if (st2 == FK_OK) fk_st_close(g);
        free(buf);
    }
    closedir(d);
    CHECKF(nfiles >= 30, "only %d malformed files", nfiles);
}

/* In-memory images built here: the header text is given, padded as asked. */
static uint8_t *make_image(const char *header, size_t pad_to, const void *data, size_t ndata,
                           size_t *len) {
    size_t h = strlen(header);
    size_t hp = pad_to ? (h + pad_to - 1) / pad_to * pad_to : h;
    uint8_t *buf = malloc(8 + hp + ndata + 16);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', hp - h);
    if (ndata) memcpy(buf + 8 + hp, data, ndata);
    *len = 8 + hp + ndata;
    return buf;
}

static void test_memory_cases(void) {
    size_t len;
    fk_st_file *f = NULL;
    fk_status st;

    /* A name with a newline (JSON escape) in an error: the message stays one line. */
    uint8_t *img = make_image("{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                              8, "abcd", 4, &len);
    st = fk_st_open_memory(ctx, "nl", img, len, &f);
    CHECK(st == FK_ERR_FORMAT);
    CHECKF(one_line(fk_context_error(ctx)) && strstr(fk_context_error(ctx), "a\\x0ab"), "%s",
           fk_context_error(ctx));
    free(img);

    /* Header not a multiple of 8 (pad 1 = none): F32 data lands misaligned and is copied. */
    float vals[3] = {1.5f, -2.25f, 1e-3f};
    const char *h1 = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    CHECK(strlen(h1) % 4 != 0);
    img = make_image(h1, 1, vals, sizeof(vals), &len);
    st = fk_st_open_memory(ctx, "unaligned", img, len, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        const fk_st_tensor *t = fk_st_find(f, "x");
        CHECK(t && ((uintptr_t)t->data % 4) == 0);
        CHECK(t && memcmp(t->data, vals, sizeof(vals)) == 0);
        fk_st_close(f);
    }
    free(img);

    /* Empty tensors sharing an offset; no metadata; leading/trailing whitespace;
     * unknown extra fields ignored; "__metadata__": null allowed. */
    int32_t iv[2] = {7, -8};
    img = make_image(" {\"__metadata__\":null,\"z\":{\"dtype\":\"I32\",\"shape\":[0],"
                     "\"data_offsets\":[8,8]},\"e\":{\"dtype\":\"BOOL\",\"shape\":[3,0],"
                     "\"data_offsets\":[8,8],\"extra\":[1.5]},\"i\":{\"shape\":[2],"
                     "\"dtype\":\"I32\",\"data_offsets\":[0,8]}}\n",
                     8, iv, sizeof(iv), &len);
    st = fk_st_open_memory(ctx, "empties", img, len, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_st_count(f) == 3 && fk_st_meta_count(f) == 0);
        CHECK(strcmp(fk_st_get(f, 0)->name, "i") == 0);
        CHECK(strcmp(fk_st_get(f, 1)->name, "e") == 0); /* ties sorted by name */
        CHECK(strcmp(fk_st_get(f, 2)->name, "z") == 0);
        const fk_st_tensor *t = fk_st_find(f, "i");
        CHECK(t && ((const int32_t *)t->data)[1] == -8);
        fk_st_close(f);
    }
    free(img);

    /* Escapes that end in a quote or backslash; newlines and tabs between tokens. */
    img = make_image("{\n\t\"__metadata__\" : {\"a\\\\\" : \"\\\"x\\\\\"}\r\n}", 8, NULL, 0, &len);
    st = fk_st_open_memory(ctx, "escapes", img, len, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        const char *k, *v;
        fk_st_meta_get(f, 0, &k, &v);
        CHECK(k && v && strcmp(k, "a\\") == 0 && strcmp(v, "\"x\\") == 0);
        fk_st_close(f);
    }
    free(img);

    /* No tensors at all. */
    img = make_image("{}", 8, NULL, 0, &len);
    st = fk_st_open_memory(ctx, "none", img, len, &f);
    CHECK(st == FK_OK);
    if (st == FK_OK) {
        CHECK(fk_st_count(f) == 0 && fk_st_find(f, "x") == NULL);
        fk_st_close(f);
    }
    free(img);

    /* Empty tensor inside another tensor's bytes: overlap. */
    img = make_image("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                     8, "01234567", 8, &len);
    st = fk_st_open_memory(ctx, "inner", img, len, &f);
    CHECK(st == FK_ERR_FORMAT && strstr(fk_context_error(ctx), "tensor b"));
    free(img);

    /* Lone surrogate escape, metadata key twice, dtype field twice. */
    const char *bad[] = {
        "{\"\\ud800\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
        "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}",
        "{\"__metadata__\":{},\"__metadata__\":{}}",
        "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,0]}}",
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,0]}}",
        "\xef\xbb\xbf{}",
        "",
        "{\"__metadata__\":{\"k\":\"tab\there\"}}", /* raw tab inside a string */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        img = make_image(bad[i], 8, NULL, 0, &len);
        st = fk_st_open_memory(ctx, "bad", img, len, &f);
        CHECKF(st == FK_ERR_FORMAT && one_line(fk_context_error(ctx)), "case %zu: %s", i,
               fk_context_error(ctx));
        if (st == FK_OK) fk_st_close(f);
        free(img);
    }
    /* The header-length cap is the reference's 100,000,000 (decimal), inclusive:
     * at the cap the length is only "past the end" of this small image. */
    uint8_t capimg[16] = {0};
    for (int limit = 0; limit < 2; limit++) {
        uint64_t hl = 100000000u + (uint64_t)limit;
        for (int i = 0; i < 8; i++) capimg[i] = (uint8_t)(hl >> (8 * i));
        st = fk_st_open_memory(ctx, "cap", capimg, sizeof(capimg), &f);
        CHECK(st == FK_ERR_FORMAT);
        CHECKF(strstr(fk_context_error(ctx), limit ? "exceeds the limit" : "past the end"), "%s",
               fk_context_error(ctx));
    }
    /* NULL / zero-length buffers */
    st = fk_st_open_memory(ctx, "null", NULL, 0, &f);
    CHECK(st == FK_ERR_FORMAT && f == NULL);
    st = fk_st_open(ctx, "tests/data/st/does-not-exist.safetensors", &f);
    CHECK(st == FK_ERR_IO && strstr(fk_context_error(ctx), "does-not-exist"));
    st = fk_st_open(ctx, "tests/data/st", &f);
    CHECK(st == FK_ERR_IO && one_line(fk_context_error(ctx)));
}

/* ---- round trips through the writer ------------------------------------------------- */

typedef struct {
    const fk_st_spec *specs;
    uint8_t **data;
    int fail_at; /* index whose fill fails, -1 for none */
    int calls;
} gen_user;

static fk_status gen_fill(void *user, int index, void *buf, size_t nbytes) {
    gen_user *u = user;
    u->calls++;
    if (index == u->fail_at) return fk_error(ctx, FK_ERR_IO, "simulated read error");
    memcpy(buf, u->data[index], nbytes);
    return FK_OK;
}

static void test_roundtrip(void) {
    /* one tensor of every dtype, some shapes with 0 and 0 dims, one of 1 MiB */
    fk_st_spec specs[FK_DTYPE_COUNT + 2];
    uint8_t *data[FK_DTYPE_COUNT + 2];
    size_t sizes[FK_DTYPE_COUNT + 2];
    char names[FK_DTYPE_COUNT + 2][32];
    int n = 0;
    uint32_t seed = 12345;
    for (int d = 0; d < FK_DTYPE_COUNT; d++, n++) {
        memset(&specs[n], 0, sizeof(specs[n]));
        snprintf(names[n], sizeof(names[n]), "t%02d.%s", d, fk_dtype_name((fk_dtype)d));
        specs[n].name = names[n];
        specs[n].dtype = (fk_dtype)d;
        specs[n].ndim = d % 4;
        for (int k = 0; k < specs[n].ndim; k++) specs[n].shape[k] = 1 + (d + k) % 3;
        size_t numel = 1;
        for (int k = 0; k < specs[n].ndim; k++) numel *= (size_t)specs[n].shape[k];
        sizes[n] = numel * fk_dtype_size((fk_dtype)d);
    }
    memset(&specs[n], 0, sizeof(specs[n]));
    snprintf(names[n], sizeof(names[n]), "big");
    specs[n] = (fk_st_spec){names[n], FK_F32, 2, {512, 512}};
    sizes[n++] = 512 * 512 * 4;
    memset(&specs[n], 0, sizeof(specs[n]));
    snprintf(names[n], sizeof(names[n]), "zero");
    specs[n] = (fk_st_spec){names[n], FK_BF16, 3, {2, 0, 5}};
    sizes[n++] = 0;
    for (int i = 0; i < n; i++) {
        data[i] = malloc(sizes[i] + 1);
        for (size_t b = 0; b < sizes[i]; b++) {
            seed = seed * 1664525u + 1013904223u;
            data[i][b] = (uint8_t)(seed >> 24);
        }
    }
    const char *meta[] = {"z", "last", "a", "first", "k", "v"};
    gen_user u = {specs, data, -1, 0};
    const char *out = tmp_path("roundtrip.safetensors");
    fk_status st = fk_st_write(ctx, out, specs, n, meta, 3, gen_fill, &u);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    CHECK(u.calls == n);
    CHECK(count_dir_entries(tmpdir) == 1); /* no temporary file left */

    fk_st_file *f = NULL;
    st = fk_st_open(ctx, out, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_st_count(f) == n);
        for (int i = 0; i < n; i++) {
            const fk_st_tensor *t = fk_st_find(f, specs[i].name);
            CHECKF(t != NULL, "%s", specs[i].name);
            if (!t) continue;
            CHECK(t->dtype == specs[i].dtype && t->ndim == specs[i].ndim);
            CHECK(memcmp(t->shape, specs[i].shape, sizeof(int64_t) * (size_t)t->ndim) == 0);
            CHECK(t->nbytes == sizes[i]);
            CHECK(sizes[i] == 0 || memcmp(t->data, data[i], sizes[i]) == 0);
            /* the layout the writer promises keeps every tensor aligned in the file */
            CHECK(t->offset % fk_dtype_size(t->dtype) == 0);
        }
        /* dtype order I64, F64, F32, ... BOOL: first in the file is the I64 tensor */
        CHECK(fk_st_get(f, 0)->dtype == FK_I64);
        CHECK(fk_st_meta_count(f) == 3);
        const char *k, *v;
        fk_st_meta_get(f, 0, &k, &v);
        CHECK(strcmp(k, "z") == 0 && strcmp(v, "last") == 0); /* given order kept */
        CHECK(strcmp(fk_st_meta(f, "a"), "first") == 0);
        fk_st_close(f);
    }

    /* A failing fill leaves the existing file untouched and no temporary file. */
    size_t before_len = 0;
    uint8_t *before = slurp(out, &before_len);
    u.fail_at = 2;
    u.calls = 0;
    st = fk_st_write(ctx, out, specs, n, meta, 3, gen_fill, &u);
    CHECK(st == FK_ERR_IO);
    CHECKF(strstr(fk_context_error(ctx), "simulated read error") &&
           strstr(fk_context_error(ctx), out) && strstr(fk_context_error(ctx), specs[2].name),
           "%s", fk_context_error(ctx));
    CHECK(count_dir_entries(tmpdir) == 1);
    size_t after_len = 0;
    uint8_t *after = slurp(out, &after_len);
    CHECK(after && before && after_len == before_len && memcmp(after, before, before_len) == 0);
    free(before);
    free(after);
    unlink(out);

    /* ... and when there was no file, none appears. */
    const char *out2 = tmp_path("never.safetensors");
    st = fk_st_write(ctx, out2, specs, n, NULL, 0, gen_fill, &u);
    CHECK(st == FK_ERR_IO && !exists(out2));
    CHECK(count_dir_entries(tmpdir) == 0);

    /* Invalid specs fail before anything is created. */
    fk_st_spec dup[2] = {{"same", FK_F32, 1, {1}}, {"same", FK_I8, 1, {2}}};
    u.fail_at = -1;
    st = fk_st_write(ctx, out2, dup, 2, NULL, 0, gen_fill, &u);
    CHECK(st == FK_ERR_ARG && strstr(fk_context_error(ctx), "same"));
    fk_st_spec neg[1] = {{"neg", FK_F32, 2, {3, -1}}};
    st = fk_st_write(ctx, out2, neg, 1, NULL, 0, gen_fill, &u);
    CHECK(st == FK_ERR_ARG && strstr(fk_context_error(ctx), "neg"));
    fk_st_spec reserved[1] = {{"__metadata__", FK_F32, 0, {0}}};
    st = fk_st_write(ctx, out2, reserved, 1, NULL, 0, gen_fill, &u);
    CHECK(st == FK_ERR_ARG);
    const char *dmeta[] = {"k", "1", "k", "2"};
    st = fk_st_write(ctx, out2, NULL, 0, dmeta, 2, NULL, NULL);
    CHECK(st == FK_ERR_ARG);
    const char *badutf[] = {"k", "\xff"};
    st = fk_st_write(ctx, out2, NULL, 0, badutf, 1, NULL, NULL);
    CHECK(st == FK_ERR_ARG);
    /* an unwritable destination (missing folder) */
    st = fk_st_write(ctx, tmp_path("no/such/dir.safetensors"), specs, n, NULL, 0, gen_fill, &u);
    CHECK(st == FK_ERR_IO && one_line(fk_context_error(ctx)));
    CHECK(count_dir_entries(tmpdir) == 0);

    /* fk_st_write_tensors rejects non-CPU tensors and NULL data */
    fk_tensor tt = fk_view1(FK_F32, NULL, 4);
    const char *nm[] = {"t"};
    st = fk_st_write_tensors(ctx, out2, nm, &tt, 1, NULL, 0);
    CHECK(st == FK_ERR_ARG && !exists(out2));
    for (int i = 0; i < n; i++) free(data[i]);
}

/* Many tensors given in a scrambled order: every one is found (binary search over
 * the sorted name index) and the file lists them by offset, i.e. by name here. */
static fk_status many_fill(void *user, int index, void *buf, size_t nbytes) {
    (void)user;
    memset(buf, index & 0xff, nbytes);
    return FK_OK;
}

static void test_many(void) {
    enum { N = 5000 };
    fk_st_spec *specs = calloc(N, sizeof(*specs));
    char (*names)[16] = calloc(N, 16);
    for (int i = 0; i < N; i++) {
        int k = (int)(((uint64_t)i * 7919u) % N); /* 7919 is prime to N: a permutation */
        snprintf(names[i], 16, "t.%05d", k);
        specs[i] = (fk_st_spec){names[i], FK_U8, 1, {1 + k % 3}};
    }
    const char *out = tmp_path("many.safetensors");
    fk_status st = fk_st_write(ctx, out, specs, N, NULL, 0, many_fill, NULL);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    fk_st_file *f = NULL;
    st = fk_st_open(ctx, out, &f);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_st_count(f) == N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            const fk_st_tensor *t = fk_st_find(f, names[i]);
            if (!t || t->shape[0] != specs[i].shape[0] ||
                ((const uint8_t *)t->data)[0] != (uint8_t)(i & 0xff))
                bad++;
            char want[16];
            snprintf(want, sizeof(want), "t.%05d", i);
            if (strcmp(fk_st_get(f, i)->name, want) != 0) bad++;
        }
        CHECKF(bad == 0, "%d mismatches", bad);
        CHECK(fk_st_find(f, "t.5000") == NULL && fk_st_find(f, "") == NULL);
        fk_st_close(f);
    }
    unlink(out);
    free(specs);
    free(names);

    /* A FIFO is refused at once (the open must not block waiting for a writer). */
    const char *fifo = tmp_path("fifo.safetensors");
    if (mkfifo(fifo, 0600) == 0) {
        st = fk_st_open(ctx, fifo, &f);
        CHECK(st == FK_ERR_IO && strstr(fk_context_error(ctx), "not a regular file"));
        unlink(fifo);
    }
}

/* ---- several files as one model -------------------------------------------------------- */

static void write_small(const char *path, const char *const *names, int n, float base,
                        const char *meta_key, const char *meta_val) {
    float vals[8][4];
    fk_tensor ts[8];
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++) vals[i][k] = base + (float)(10 * i + k);
        ts[i] = fk_view2(FK_F32, vals[i], 2, 2);
    }
    const char *meta[2] = {meta_key, meta_val};
    fk_status st = fk_st_write_tensors(ctx, path, names, ts, n, meta_key ? meta : NULL,
                                       meta_key ? 1 : 0);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

static void test_model(void) {
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/sharded", tmpdir);
    CHECK(mkdir(dir, 0755) == 0);
    char s1[300], s2[300], idx[300];
    snprintf(s1, sizeof(s1), "%s/model-00001-of-00002.safetensors", dir);
    snprintf(s2, sizeof(s2), "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof(idx), "%s/model.safetensors.index.json", dir);
    const char *n1[] = {"layer.0.w", "layer.0.b"}, *n2[] = {"layer.1.w"};
    write_small(s1, n1, 2, 0.0f, "format", "pt");
    write_small(s2, n2, 1, 100.0f, "shard", "2");
    write_text(idx, "{\"metadata\": {\"total_size\": 48},\n \"weight_map\": {\n"
                    "  \"layer.0.w\": \"model-00001-of-00002.safetensors\",\n"
                    "  \"layer.1.w\": \"model-00002-of-00002.safetensors\",\n"
                    "  \"layer.0.b\": \"model-00001-of-00002.safetensors\"}}\n");

    for (int via = 0; via < 2; via++) {
        const char *p = via == 0 ? idx : dir;
        fk_st_model *m = NULL;
        fk_status st = fk_st_model_open(ctx, p, &m);
        CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
        if (st != FK_OK) continue;
        CHECK(strcmp(fk_st_model_path(m), p) == 0);
        CHECK(fk_st_model_count(m) == 3 && fk_st_model_nfiles(m) == 2);
        CHECK(strcmp(fk_st_model_get(m, 0)->name, "layer.0.b") == 0); /* by name */
        CHECK(strcmp(fk_st_model_get(m, 2)->name, "layer.1.w") == 0);
        CHECK(fk_st_model_get(m, 3) == NULL);
        const fk_st_tensor *t = fk_st_model_find(m, "layer.1.w");
        CHECK(t && t->file_index == 1 && ((const float *)t->data)[3] == 103.0f);
        CHECK(strstr(fk_st_path(fk_st_model_file(m, t->file_index)), "00002") != NULL);
        t = fk_st_model_find(m, "layer.0.b");
        CHECK(t && t->file_index == 0 && ((const float *)t->data)[2] == 12.0f);
        CHECK(fk_st_model_find(m, "nope") == NULL);
        CHECK(strcmp(fk_st_model_meta(m, "shard"), "2") == 0);
        CHECK(strcmp(fk_st_model_meta(m, "format"), "pt") == 0);
        CHECK(fk_st_model_meta(m, "total_size") == NULL);
        fk_st_model_close(m);
    }

    /* A single file as a model. */
    fk_st_model *m = NULL;
    fk_status st = fk_st_model_open(ctx, PY_WRITTEN, &m);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_st_model_count(m) == 18 && fk_st_model_nfiles(m) == 1);
        for (int i = 1; i < fk_st_model_count(m); i++)
            CHECK(strcmp(fk_st_model_get(m, i - 1)->name, fk_st_model_get(m, i)->name) < 0);
        CHECK(fk_st_model_find(m, "mask") != NULL);
        CHECK(strcmp(fk_st_model_meta(m, "format"), "pt") == 0);
        fk_st_model_close(m);
    }

    /* The index points a tensor at the wrong shard. */
    write_text(idx, "{\"weight_map\": {\"layer.0.w\": \"model-00002-of-00002.safetensors\","
                    "\"layer.1.w\": \"model-00002-of-00002.safetensors\"}}");
    st = fk_st_model_open(ctx, idx, &m);
    CHECKF(st == FK_ERR_FORMAT && strstr(fk_context_error(ctx), "layer.0.w") &&
           strstr(fk_context_error(ctx), idx) && one_line(fk_context_error(ctx)), "%s",
           fk_context_error(ctx));
    /* A shard that is missing; a shard path escaping the folder; not JSON; no weight_map. */
    const char *bad_idx[] = {
        "{\"weight_map\": {\"x\": \"model-00003-of-00002.safetensors\"}}",
        "{\"weight_map\": {\"x\": \"../model-00001-of-00002.safetensors\"}}",
        "{\"weight_map\": {\"x\": 3}}",
        "{\"weight_map\": {}}",
        "{\"weight_map\": ",
        "[]",
        "{\"weight_map\": {\"layer.0.w\": \"model-00001-of-00002.safetensors\","
        " \"layer.0.w\": \"model-00001-of-00002.safetensors\"}}",
    };
    for (size_t i = 0; i < sizeof(bad_idx) / sizeof(bad_idx[0]); i++) {
        write_text(idx, bad_idx[i]);
        st = fk_st_model_open(ctx, idx, &m);
        CHECKF(st != FK_OK && one_line(fk_context_error(ctx)), "index case %zu: %s", i,
               fk_context_error(ctx));
    }
    unlink(idx);

    /* A folder without index: every .safetensors, sorted; a duplicate name is an error. */
    st = fk_st_model_open(ctx, dir, &m);
    CHECKF(st == FK_OK, "%s", fk_context_error(ctx));
    if (st == FK_OK) {
        CHECK(fk_st_model_nfiles(m) == 2 && fk_st_model_count(m) == 3);
        CHECK(strstr(fk_st_path(fk_st_model_file(m, 0)), "00001") != NULL);
        fk_st_model_close(m);
    }
    char s3[300];
    snprintf(s3, sizeof(s3), "%s/extra.safetensors", dir);
    write_small(s3, n2, 1, 5.0f, NULL, NULL);
    st = fk_st_model_open(ctx, dir, &m);
    CHECKF(st == FK_ERR_FORMAT && strstr(fk_context_error(ctx), "layer.1.w") &&
           strstr(fk_context_error(ctx), "extra.safetensors"), "%s", fk_context_error(ctx));
    unlink(s3);

    /* Two index files in one folder: ambiguous. */
    char i1[300], i2[300];
    snprintf(i1, sizeof(i1), "%s/a.safetensors.index.json", dir);
    snprintf(i2, sizeof(i2), "%s/b.safetensors.index.json", dir);
    write_text(i1, "{\"weight_map\": {}}");
    write_text(i2, "{\"weight_map\": {}}");
    st = fk_st_model_open(ctx, dir, &m);
    CHECK(st != FK_OK && strstr(fk_context_error(ctx), "index.json"));
    unlink(i1);
    unlink(i2);

    /* Missing path, empty folder. */
    st = fk_st_model_open(ctx, tmp_path("nothing-here"), &m);
    CHECK(st == FK_ERR_IO && m == NULL);
    char empty[300];
    snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
    mkdir(empty, 0755);
    st = fk_st_model_open(ctx, empty, &m);
    CHECK(st == FK_ERR_IO && strstr(fk_context_error(ctx), "no .safetensors"));
    remove_tree(dir);
    rmdir(empty);
}

int main(void) {
    ctx = fk_context_create(1);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fk_test_st_XXXXXX");
    if (!ctx || !mkdtemp(tmpdir)) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    test_python_values();
    rewrite_identical(PY_WRITTEN, false, false);
    rewrite_identical(PY_WRITTEN, false, true);
    rewrite_identical(PY_EMPTY_META, true, false);
    rewrite_identical(PY_NO_TENSORS, false, false);
    test_malformed();
    test_memory_cases();
    test_roundtrip();
    test_many();
    test_model();
    remove_tree(tmpdir);
    fk_context_free(ctx);
    return fk_test_finish("test_safetensors");
}
