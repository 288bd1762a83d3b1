/* Several safetensors files as one namespace: a single file, a sharded
 * checkpoint described by *.safetensors.index.json, or a folder.
 *
 * Index files (written by transformers / diffusers / huggingface_hub):
 *   {"metadata": {...}, "weight_map": {"tensor.name": "model-00001-of-00002.safetensors", ...}}
 * Shards are resolved relative to the folder of the index file. Every tensor the
 * weight_map lists must really be in the shard it names. The namespace is every
 * tensor of every listed shard (like the Python loaders, which load whole shards);
 * a name present in two files is an error. "metadata" of the index is ignored
 * (it holds numbers such as total_size; __metadata__ comes from the shards). */
#include "io/st_private.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fk_st_model {
    char *path;                   /* as given to fk_st_model_open */
    int nfiles;
    fk_st_file **files;           /* (nfiles) */
    int n;
    const fk_st_tensor **sorted;  /* (n) every tensor of every file, by name */
};

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "<dir>/<name>" in a new string (NULL when out of memory). */
static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a > 0 && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

/* Folder part of a path ("." when it has none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static fk_status model_nomem(fk_context *ctx, const char *path) {
    char pb[FK_ST_NAMEBUF];
    return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", fk_st_printable(path, pb, sizeof(pb)));
}

static fk_status model_add_file(fk_context *ctx, fk_st_model *m, const char *path) {
    fk_st_file **nf = realloc(m->files, sizeof(*nf) * (size_t)(m->nfiles + 1));
    if (!nf) return model_nomem(ctx, path);
    m->files = nf;
    fk_st_file *f = NULL;
    fk_status st = fk_st_open(ctx, path, &f);
    if (st != FK_OK) return st;
    fk_st_set_file_index(f, m->nfiles);
    m->files[m->nfiles++] = f;
    return FK_OK;
}

static int cmp_tensor_ptr(const void *a, const void *b) {
    const fk_st_tensor *x = *(const fk_st_tensor *const *)a, *y = *(const fk_st_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->file_index > y->file_index) - (x->file_index < y->file_index);
}

/* The name index over all files; a name in two files is an error. */
static fk_status model_build_index(fk_context *ctx, fk_st_model *m) {
    int total = 0;
    for (int i = 0; i < m->nfiles; i++) total += fk_st_count(m->files[i]);
    m->sorted = malloc(sizeof(*m->sorted) * (size_t)(total > 0 ? total : 1));
    if (!m->sorted) return model_nomem(ctx, m->path);
    for (int i = 0; i < m->nfiles; i++)
        for (int j = 0; j < fk_st_count(m->files[i]); j++)
            m->sorted[m->n++] = fk_st_get(m->files[i], j);
    qsort(m->sorted, (size_t)m->n, sizeof(*m->sorted), cmp_tensor_ptr);
    for (int i = 1; i < m->n; i++) {
        if (strcmp(m->sorted[i - 1]->name, m->sorted[i]->name) == 0) {
            char nb[FK_ST_NAMEBUF], p1[FK_ST_NAMEBUF], p2[FK_ST_NAMEBUF];
            return fk_error(ctx, FK_ERR_FORMAT, "tensor %s is in both %s and %s",
                            fk_st_printable(m->sorted[i]->name, nb, sizeof(nb)),
                            fk_st_printable(fk_st_path(m->files[m->sorted[i - 1]->file_index]),
                                            p1, sizeof(p1)),
                            fk_st_printable(fk_st_path(m->files[m->sorted[i]->file_index]), p2,
                                            sizeof(p2)));
        }
    }
    return FK_OK;
}

/* Whole small text file into a NUL-terminated buffer. */
static fk_status read_text(fk_context *ctx, const char *path, char **out, size_t *len) {
    char pb[FK_ST_NAMEBUF];
    fk_st_printable(path, pb, sizeof(pb));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* never block on a FIFO */
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        int e = errno;
        if (fd >= 0) close(fd);
        return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s", pb, strerror(e));
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return fk_error(ctx, FK_ERR_IO, "%s: not a regular file", pb);
    }
    if ((uint64_t)sb.st_size > FK_ST_MAX_HEADER) {
        fclose(fp);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: index file of %lld bytes is larger than the "
                        "%u-byte limit", pb, (long long)sb.st_size, FK_ST_MAX_HEADER);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return model_nomem(ctx, path);
    }
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    if (got != n) {
        free(buf);
        return fk_error(ctx, FK_ERR_IO, "%s: read %zu of %zu bytes", pb, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return FK_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static fk_status model_open_index(fk_context *ctx, fk_st_model *m, const char *index_path) {
    char pb[FK_ST_NAMEBUF], nb[FK_ST_NAMEBUF], sb[FK_ST_NAMEBUF];
    fk_st_printable(index_path, pb, sizeof(pb));
    char *text = NULL, *dir = NULL;
    const char **shards = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    fk_status st = read_text(ctx, index_path, &text, &len);
    if (st != FK_OK) return st;

    size_t bad;
    if (!fk_st_utf8_valid((const uint8_t *)text, len, &bad)) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: not valid UTF-8 (byte offset %zu)", pb, bad);
        goto done;
    }
    if (memchr(text, '\0', len)) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: not valid JSON (contains a NUL byte)", pb);
        goto done;
    }
    /* len + 1: cJSON checks that the NUL terminator follows the value */
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!root) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: not valid JSON (error at byte %zu)", pb,
                      end ? (size_t)(end - text) : (size_t)0);
        goto done;
    }
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                           : NULL;
    if (!cJSON_IsObject(wm)) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: expected a JSON object with a \"weight_map\" "
                      "object (tensor name -> shard file)", pb);
        goto done;
    }
    int nw = cJSON_GetArraySize(wm);
    shards = malloc(sizeof(char *) * (size_t)(nw > 0 ? nw : 1));
    if (!shards) {
        st = model_nomem(ctx, index_path);
        goto done;
    }
    int ns = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        fk_st_printable(e->string, nb, sizeof(nb));
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0') {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: weight_map entry for tensor %s is not a "
                          "shard file name", pb, nb);
            goto done;
        }
        const char *s = e->valuestring;
        if (s[0] == '/' || strcmp(s, "..") == 0 || strncmp(s, "../", 3) == 0 ||
            strstr(s, "/../") || ends_with(s, "/..")) {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: shard %s must be a path inside the "
                          "index's folder", pb, nb, fk_st_printable(s, sb, sizeof(sb)));
            goto done;
        }
        shards[ns++] = s;
    }
    /* Duplicate tensor names in the weight_map. */
    {
        const char **keys = malloc(sizeof(char *) * (size_t)(nw > 0 ? nw : 1));
        if (!keys) {
            st = model_nomem(ctx, index_path);
            goto done;
        }
        int k = 0;
        for (const cJSON *e = wm->child; e; e = e->next) keys[k++] = e->string;
        qsort(keys, (size_t)k, sizeof(*keys), cmp_str_ptr);
        for (int i = 1; i < k; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s is listed twice in weight_map",
                              pb, fk_st_printable(keys[i], nb, sizeof(nb)));
                break;
            }
        }
        free(keys);
        if (st != FK_OK) goto done;
    }
    if (ns == 0) {
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: weight_map is empty", pb);
        goto done;
    }
    /* Unique shard names, opened in sorted order. */
    qsort(shards, (size_t)ns, sizeof(*shards), cmp_str_ptr);
    int nu = 0;
    for (int i = 0; i < ns; i++)
        if (nu == 0 || strcmp(shards[nu - 1], shards[i]) != 0) shards[nu++] = shards[i];
    dir = dir_of(index_path);
    if (!dir) {
        st = model_nomem(ctx, index_path);
        goto done;
    }
    for (int i = 0; i < nu; i++) {
        char *p = join_path(dir, shards[i]);
        if (!p) {
            st = model_nomem(ctx, index_path);
            goto done;
        }
        st = model_add_file(ctx, m, p);
        free(p);
        if (st != FK_OK) goto done;
    }
    /* Every listed tensor is in the shard that the weight_map names. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        int lo = 0, hi = nu, fi = -1; /* shards[] is sorted and files[] follows it */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            int c = strcmp(shards[mid], e->valuestring);
            if (c == 0) {
                fi = mid;
                break;
            }
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        FK_ASSERT(fi >= 0);
        if (!fk_st_find(m->files[fi], e->string)) {
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: tensor %s: weight_map says shard %s, which "
                          "has no such tensor", pb, fk_st_printable(e->string, nb, sizeof(nb)),
                          fk_st_printable(fk_st_path(m->files[fi]), sb, sizeof(sb)));
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    free(shards);
    free(dir);
    free(text);
    return st;
}

static fk_status model_open_folder(fk_context *ctx, fk_st_model *m, const char *dir) {
    char pb[FK_ST_NAMEBUF];
    fk_st_printable(dir, pb, sizeof(pb));
    DIR *d = opendir(dir);
    if (!d) return fk_error(ctx, FK_ERR_IO, "%s: cannot open folder: %s", pb, strerror(errno));
    char **files = NULL, **indexes = NULL;
    int nf = 0, ni = 0, capf = 0, capi = 0;
    fk_status st = FK_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        bool is_index = ends_with(name, ".safetensors.index.json");
        bool is_file = ends_with(name, ".safetensors");
        if (!is_index && !is_file) continue;
        char ***list = is_index ? &indexes : &files;
        int *cnt = is_index ? &ni : &nf, *cap = is_index ? &capi : &capf;
        if (*cnt == *cap) {
            int nc = *cap ? *cap * 2 : 16;
            char **nl = realloc(*list, sizeof(char *) * (size_t)nc);
            if (!nl) {
                st = model_nomem(ctx, dir);
                goto done;
            }
            *list = nl;
            *cap = nc;
        }
        if (!((*list)[*cnt] = join_path(dir, name))) {
            st = model_nomem(ctx, dir);
            goto done;
        }
        (*cnt)++;
    }
    if (ni > 1) {
        qsort(indexes, (size_t)ni, sizeof(char *), cmp_str_ptr);
        char a[FK_ST_NAMEBUF], b[FK_ST_NAMEBUF];
        st = fk_error(ctx, FK_ERR_ARG, "%s: folder has %d *.safetensors.index.json files (%s, "
                      "%s, ...): give the one to load", pb, ni,
                      fk_st_printable(indexes[0], a, sizeof(a)),
                      fk_st_printable(indexes[1], b, sizeof(b)));
        goto done;
    }
    if (ni == 1) {
        st = model_open_index(ctx, m, indexes[0]);
        goto done;
    }
    if (nf == 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: folder has no .safetensors file", pb);
        goto done;
    }
    qsort(files, (size_t)nf, sizeof(char *), cmp_str_ptr);
    for (int i = 0; i < nf && st == FK_OK; i++) st = model_add_file(ctx, m, files[i]);
done:
    closedir(d);
    for (int i = 0; i < nf; i++) free(files[i]);
    for (int i = 0; i < ni; i++) free(indexes[i]);
    free(files);
    free(indexes);
    return st;
}

fk_status fk_st_model_open(fk_context *ctx, const char *path, fk_st_model **out) {
    if (!out) return fk_error(ctx, FK_ERR_ARG, "fk_st_model_open: out is NULL");
    *out = NULL;
    if (!path) return fk_error(ctx, FK_ERR_ARG, "fk_st_model_open: path is NULL");
    char pb[FK_ST_NAMEBUF];
    struct stat sb;
    if (stat(path, &sb) != 0)
        return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s",
                        fk_st_printable(path, pb, sizeof(pb)), strerror(errno));
    fk_st_model *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return model_nomem(ctx, path);
    }
    fk_status st;
    if (S_ISDIR(sb.st_mode)) st = model_open_folder(ctx, m, path);
    else if (ends_with(path, ".json")) st = model_open_index(ctx, m, path);
    else st = model_add_file(ctx, m, path);
    if (st == FK_OK) st = model_build_index(ctx, m);
    if (st != FK_OK) {
        fk_st_model_close(m);
        return st;
    }
    *out = m;
    return FK_OK;
}

void fk_st_model_close(fk_st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nfiles; i++) fk_st_close(m->files[i]);
    free(m->files);
    free(m->sorted);
    free(m->path);
    free(m);
}

int fk_st_model_count(const fk_st_model *m) { return m->n; }

const fk_st_tensor *fk_st_model_get(const fk_st_model *m, int i) {
    if (i < 0 || i >= m->n) return NULL;
    return m->sorted[i];
}

const fk_st_tensor *fk_st_model_find(const fk_st_model *m, const char *name) {
    if (!name) return NULL;
    int lo = 0, hi = m->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(m->sorted[mid]->name, name);
        if (c == 0) return m->sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int fk_st_model_nfiles(const fk_st_model *m) { return m->nfiles; }

const fk_st_file *fk_st_model_file(const fk_st_model *m, int i) {
    if (i < 0 || i >= m->nfiles) return NULL;
    return m->files[i];
}

const char *fk_st_model_meta(const fk_st_model *m, const char *key) {
    for (int i = 0; i < m->nfiles; i++) {
        const char *v = fk_st_meta(m->files[i], key);
        if (v) return v;
    }
    return NULL;
}

const char *fk_st_model_path(const fk_st_model *m) { return m->path; }

size_t fk_st_model_release(const fk_st_model *m, const void *p, size_t n) {
    if (!m) return 0;
    for (int i = 0; i < fk_st_model_nfiles(m); i++) {
        size_t r = fk_st_release(fk_st_model_file(m, i), p, n);
        if (r) return r;
    }
    return 0;
}
