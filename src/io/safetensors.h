/* safetensors: memory-mapped, validated reader; streamed, atomic writer;
 * sharded checkpoints (*.safetensors.index.json) and folders as one namespace.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v", ...}}, then the data section; offsets are
 * relative to the data section start. */
#ifndef FK_SAFETENSORS_H
#define FK_SAFETENSORS_H

#include "core/tensor.h"

/* Largest header accepted: the reference's MAX_HEADER_SIZE, 100,000,000 bytes
 * (decimal; safetensors/src/tensor.rs), for reading and writing. */
#define FK_ST_MAX_HEADER 100000000u

typedef struct fk_st_tensor {
    const char *name;           /* owned by the file */
    fk_dtype dtype;
    int ndim;
    int64_t shape[FK_MAX_DIMS];
    uint64_t offset;            /* begin, relative to the data section */
    uint64_t nbytes;            /* end - begin = numel · dtype size */
    const void *data;           /* points into the mapping */
    int file_index;             /* which file of an fk_st_model */
} fk_st_tensor;

typedef struct fk_st_file fk_st_file;

/* Open and validate a .safetensors file (mmap, no read of the data section).
 * Caller frees with fk_st_close. Errors name the file and the tensor. */
fk_status fk_st_open(fk_context *ctx, const char *path, fk_st_file **out);
/* Parse and validate an in-memory image of a whole file (used by the fuzzer
 * and tests). buf must outlive the returned object. label names it in errors. */
fk_status fk_st_open_memory(fk_context *ctx, const char *label, const void *buf, size_t len,
                            fk_st_file **out);
void fk_st_close(fk_st_file *f);

const char *fk_st_path(const fk_st_file *f);
int fk_st_count(const fk_st_file *f);
/* Tensors in data-offset order. */
const fk_st_tensor *fk_st_get(const fk_st_file *f, int i);
/* NULL when absent. O(log n). */
const fk_st_tensor *fk_st_find(const fk_st_file *f, const char *name);
/* __metadata__ value for key, NULL when absent. */
const char *fk_st_meta(const fk_st_file *f, const char *key);
int fk_st_meta_count(const fk_st_file *f);
void fk_st_meta_get(const fk_st_file *f, int i, const char **key, const char **value);
/* Total size of the file in bytes. */
uint64_t fk_st_file_size(const fk_st_file *f);

/* A CPU tensor view of the mapped data (read-only memory: do not write). */
fk_tensor fk_st_view(const fk_st_tensor *t);

/* Drop the resident pages of [p, p + n) from the process when the range lies
 * in f's file mapping (whole pages inside the range only; madvise
 * MADV_DONTNEED on the read-only private mapping: a later read faults them
 * in again from the file, so views stay valid). For weights the caller has
 * copied elsewhere (a backend's packed copy): the copy then replaces the
 * mapped pages in memory instead of doubling them. Returns the bytes
 * released (0: not mapped from a file, or nothing whole inside). */
size_t fk_st_release(const fk_st_file *f, const void *p, size_t n);

/* ---- several files as one namespace ---------------------------------- */

typedef struct fk_st_model fk_st_model;

/* path may be: a .safetensors file; a *.safetensors.index.json (shards
 * listed in its weight_map, resolved next to it); or a folder, in which case
 * its *.safetensors.index.json if present, else every *.safetensors file in
 * it (sorted by name). Duplicate tensor names across files are an error.
 * Caller frees with fk_st_model_close. */
fk_status fk_st_model_open(fk_context *ctx, const char *path, fk_st_model **out);
void fk_st_model_close(fk_st_model *m);
int fk_st_model_count(const fk_st_model *m);
const fk_st_tensor *fk_st_model_get(const fk_st_model *m, int i); /* sorted by name */
const fk_st_tensor *fk_st_model_find(const fk_st_model *m, const char *name);
int fk_st_model_nfiles(const fk_st_model *m);
const fk_st_file *fk_st_model_file(const fk_st_model *m, int i);
/* Metadata value from the first file that has the key, or NULL. */
const char *fk_st_model_meta(const fk_st_model *m, const char *key);
/* The path given to fk_st_model_open. */
const char *fk_st_model_path(const fk_st_model *m);
/* fk_st_release on whichever of the model's files maps [p, p + n). */
size_t fk_st_model_release(const fk_st_model *m, const void *p, size_t n);

/* ---- writer ------------------------------------------------------------ */

typedef struct fk_st_spec {
    const char *name;
    fk_dtype dtype;
    int ndim;
    int64_t shape[FK_MAX_DIMS];
} fk_st_spec;

/* Fill buf (nbytes = numel · dtype size) with the data of specs[index].
 * Return FK_OK or an error (set on ctx). */
typedef fk_status (*fk_st_fill_fn)(void *user, int index, void *buf, size_t nbytes);

/* Write a safetensors file streamed one tensor at a time: header first (laid
 * out like the reference implementation: tensors ordered by dtype alignment,
 * then name; header padded with spaces to a multiple of 8), then each tensor's
 * data from fill(). Written to "<path>.tmp.<pid>", fsync'ed, then renamed
 * over path; on any error the temporary file is removed and path untouched.
 * fill is called once per tensor, in file order; index is the position in specs.
 * meta: n_meta key/value pairs (meta[2i], meta[2i+1]) for __metadata__, written
 * in that order; meta == NULL writes no __metadata__, meta != NULL with
 * n_meta == 0 an empty one (as the reference does for metadata={}). */
fk_status fk_st_write(fk_context *ctx, const char *path, const fk_st_spec *specs, int n,
                      const char *const *meta, int n_meta, fk_st_fill_fn fill, void *user);

/* Convenience for small outputs: write CPU tensors under the given names. */
fk_status fk_st_write_tensors(fk_context *ctx, const char *path, const char *const *names,
                              const fk_tensor *tensors, int n, const char *const *meta,
                              int n_meta);

#endif /* FK_SAFETENSORS_H */
