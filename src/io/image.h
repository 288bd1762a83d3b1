/* image: 8-bit RGB images in memory, PNG read/write (libpng) with text
 * metadata (tEXt for ASCII values, iTXt for UTF-8), JPEG read (libjpeg-turbo),
 * binary PPM write. Writes are atomic: a temporary file next to the target,
 * fsync'ed, then renamed (or hard-linked when overwriting is not allowed, so
 * an existing file is never replaced). Decoders never print: libpng / libjpeg
 * errors and warnings become fk_status messages naming the file. */
#ifndef FK_IMAGE_H
#define FK_IMAGE_H

#include "core/core.h"

/* Largest accepted side and pixel count (decoders refuse bigger images
 * before allocating). */
#define FK_IMAGE_MAX_SIDE 32768
#define FK_IMAGE_MAX_PIXELS (INT64_C(1) << 28)
/* Largest file fk_image_read loads. */
#define FK_IMAGE_MAX_FILE_BYTES (UINT64_C(1) << 30)

typedef struct fk_image {
    int width, height;
    int channels;  /* 3: RGB */
    uint8_t *data; /* (height, width, channels), row-major; malloc'ed */
} fk_image;

/* Text metadata: n key/value pairs, UTF-8, owned (fk_image_meta_free). */
typedef struct fk_image_meta {
    int n;
    char **keys;
    char **values;
} fk_image_meta;

/* A new zeroed RGB image (height, width, 3). FK_ERR_ARG beyond the limits,
 * FK_ERR_NOMEM. Free with fk_image_free. */
fk_status fk_image_alloc(fk_context *ctx, fk_image *img, int width, int height);
void fk_image_free(fk_image *img);

/* Decode a PNG or JPEG file (recognized by its signature, not its name) to
 * 8-bit RGB: palettes and gray expanded, 16-bit reduced to 8, alpha dropped
 * (as PIL's convert("RGB")), interlacing handled. meta (may be NULL) gets the
 * PNG text chunks (tEXt, zTXt, iTXt; none for JPEG). Errors name the file:
 * unreadable, not an image, truncated or corrupt, too large. */
fk_status fk_image_read(fk_context *ctx, const char *path, fk_image *img, fk_image_meta *meta);
/* The same from a buffer; label names it in errors. */
fk_status fk_image_read_memory(fk_context *ctx, const char *label, const void *buf, size_t len,
                               fk_image *img, fk_image_meta *meta);

/* Write an 8-bit RGB PNG with text chunks (keys: 1–79 Latin-1 printable
 * characters, values: UTF-8; ASCII values go in tEXt, others in iTXt), in
 * the given order, no timestamps: the same image and text give the same bytes.
 * overwrite false: fail with FK_ERR_IO ("... exists") when path exists. */
fk_status fk_image_write_png(fk_context *ctx, const char *path, const fk_image *img,
                             const fk_image_meta *meta, bool overwrite);
/* Binary PPM (P6, maxval 255), no metadata; same atomic rules. */
fk_status fk_image_write_ppm(fk_context *ctx, const char *path, const fk_image *img, bool overwrite);

/* Resize an RGB image to width × height with a Lanczos-3 filter, exactly as
 * Pillow's Image.resize((width, height), Image.LANCZOS) does for RGB images
 * (antialiased when shrinking; separable, horizontal pass first; 22-bit
 * fixed-point coefficients; rounding and clipping to 8 bits after each pass).
 * out: a new image (fk_image_free). */
fk_status fk_image_resize(fk_context *ctx, const fk_image *src, int width, int height, fk_image *out);

/* Append a key/value pair (copied). FK_ERR_NOMEM. */
fk_status fk_image_meta_add(fk_context *ctx, fk_image_meta *meta, const char *key, const char *value);
/* Value of the first pair with this key, or NULL. */
const char *fk_image_meta_get(const fk_image_meta *meta, const char *key);
void fk_image_meta_free(fk_image_meta *meta);

#endif /* FK_IMAGE_H */
