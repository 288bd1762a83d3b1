/* image: PNG (libpng) and JPEG (libjpeg-turbo) decoding to RGB8, PNG / PPM
 * encoding with atomic writes. See image.h.
 *
 * Both libraries report fatal errors by longjmp. Each decoder runs its
 * setjmp in a small function that writes only through a pointer to a state
 * object owned by its caller, so nothing the caller frees afterwards is an
 * indeterminate local after the jump. */
#include "io/image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FK_HAVE_PNG
#include <png.h>
#endif
#ifdef FK_HAVE_JPEG
#include <jpeglib.h>
#endif

/* ---- images and metadata ------------------------------------------------------ */

static fk_status fk_image_check_size(fk_context *ctx, const char *label, int64_t w, int64_t h) {
    if (w < 1 || h < 1 || w > FK_IMAGE_MAX_SIDE || h > FK_IMAGE_MAX_SIDE || w * h > FK_IMAGE_MAX_PIXELS)
        return fk_error(ctx, FK_ERR_FORMAT, "%s: image size %lldx%lld is not supported (1 to %d pixels a side, %lld in all)",
                        label, (long long)w, (long long)h, FK_IMAGE_MAX_SIDE, (long long)FK_IMAGE_MAX_PIXELS);
    return FK_OK;
}

/* The same check as an argument error (FK_ERR_ARG). */
static fk_status fk_image_check_size_arg(fk_context *ctx, const char *label, int64_t w, int64_t h) {
    if (fk_image_check_size(ctx, label, w, h) == FK_OK) return FK_OK;
    char msg[FK_ERRMSG_MAX];
    snprintf(msg, sizeof(msg), "%s", fk_context_error(ctx));
    return fk_error(ctx, FK_ERR_ARG, "%s", msg);
}

fk_status fk_image_alloc(fk_context *ctx, fk_image *img, int width, int height) {
    memset(img, 0, sizeof(*img));
    fk_status st = fk_image_check_size_arg(ctx, "image", width, height);
    if (st != FK_OK) return st;
    img->data = calloc((size_t)width * (size_t)height, 3);
    if (!img->data)
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory for a %dx%d image", width, height);
    img->width = width;
    img->height = height;
    img->channels = 3;
    return FK_OK;
}

void fk_image_free(fk_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof(*img));
}

fk_status fk_image_meta_add(fk_context *ctx, fk_image_meta *meta, const char *key, const char *value) {
    char **nk = realloc(meta->keys, sizeof(*nk) * (size_t)(meta->n + 1));
    if (!nk) return fk_error(ctx, FK_ERR_NOMEM, "out of memory for image metadata");
    meta->keys = nk;
    char **nv = realloc(meta->values, sizeof(*nv) * (size_t)(meta->n + 1));
    if (!nv) return fk_error(ctx, FK_ERR_NOMEM, "out of memory for image metadata");
    meta->values = nv;
    char *k = strdup(key ? key : ""), *v = strdup(value ? value : "");
    if (!k || !v) {
        free(k);
        free(v);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory for image metadata");
    }
    meta->keys[meta->n] = k;
    meta->values[meta->n] = v;
    meta->n++;
    return FK_OK;
}

const char *fk_image_meta_get(const fk_image_meta *meta, const char *key) {
    for (int i = 0; meta && i < meta->n; i++)
        if (!strcmp(meta->keys[i], key)) return meta->values[i];
    return NULL;
}

void fk_image_meta_free(fk_image_meta *meta) {
    if (!meta) return;
    for (int i = 0; i < meta->n; i++) {
        free(meta->keys[i]);
        free(meta->values[i]);
    }
    free(meta->keys);
    free(meta->values);
    memset(meta, 0, sizeof(*meta));
}

/* Latin-1 → UTF-8 (tEXt / zTXt hold Latin-1). malloc'ed, NULL when out of memory. */
static char *fk_latin1_to_utf8(const char *s, size_t n) {
    char *out = malloc(2 * n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xc0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[o] = '\0';
    return out;
}

/* True when s is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
static bool fk_utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += len;
    }
    return true;
}

/* ---- PNG decoding ---------------------------------------------------------------- */

static const uint8_t fk_png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

#ifdef FK_HAVE_PNG
typedef struct fk_png_state {
    char msg[256]; /* first member: the error function writes here (also fk_png_wstate) */
    const uint8_t *buf;
    size_t len, pos;
    png_structp png;
    png_infop info;
    uint8_t *data;    /* decoded pixels */
    png_bytep *rows;
    int width, height;
} fk_png_state;

static void fk_png_error_fn(png_structp png, png_const_charp msg) {
    char *dst = png_get_error_ptr(png); /* the msg[256] first member of the state */
    snprintf(dst, 256, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void fk_png_warning_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* the library never prints */
}

static void fk_png_read_fn(png_structp png, png_bytep out, size_t n) {
    fk_png_state *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "the file is truncated");
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}

/* Returns 0 on success, 1 after a libpng error (message in s->msg), 2 when
 * the size is out of range, 3 when out of memory. */
static int fk_png_decode(fk_png_state *s) {
    if (setjmp(png_jmpbuf(s->png))) return 1;
    png_set_read_fn(s->png, s, fk_png_read_fn);
    png_set_user_limits(s->png, FK_IMAGE_MAX_SIDE, FK_IMAGE_MAX_SIDE);
    png_read_info(s->png, s->info);
    png_uint_32 w = png_get_image_width(s->png, s->info), h = png_get_image_height(s->png, s->info);
    if ((int64_t)w * (int64_t)h > FK_IMAGE_MAX_PIXELS || w < 1 || h < 1) return 2;
    int bit_depth = png_get_bit_depth(s->png, s->info);
    int color = png_get_color_type(s->png, s->info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(s->png);
    if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(s->png);
    if (bit_depth == 16) png_set_strip_16(s->png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(s->png);
    png_set_strip_alpha(s->png); /* also drops tRNS (never expanded to alpha) */
    png_set_interlace_handling(s->png);
    png_read_update_info(s->png, s->info);
    if (png_get_rowbytes(s->png, s->info) != (size_t)w * 3)
        png_error(s->png, "unexpected pixel layout after conversion to RGB");
    s->data = malloc((size_t)w * (size_t)h * 3);
    s->rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!s->data || !s->rows) return 3;
    for (png_uint_32 y = 0; y < h; y++) s->rows[y] = s->data + (size_t)y * w * 3;
    png_read_image(s->png, s->rows);
    png_read_end(s->png, s->info);
    s->width = (int)w;
    s->height = (int)h;
    return 0;
}

static fk_status fk_png_collect_text(fk_context *ctx, png_structp png, png_infop info, fk_image_meta *meta) {
    png_textp text = NULL;
    int n = 0;
    png_get_text(png, info, &text, &n);
    for (int i = 0; i < n; i++) {
        const bool itxt = text[i].compression == PNG_ITXT_COMPRESSION_NONE ||
                          text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        size_t len = itxt ? text[i].itxt_length : text[i].text_length;
        char *v = itxt ? strndup(text[i].text ? text[i].text : "", len)
                       : fk_latin1_to_utf8(text[i].text ? text[i].text : "", len);
        char *k = fk_latin1_to_utf8(text[i].key, strlen(text[i].key));
        fk_status st = (v && k) ? fk_image_meta_add(ctx, meta, k, v)
                                : fk_error(ctx, FK_ERR_NOMEM, "out of memory for image metadata");
        free(v);
        free(k);
        if (st != FK_OK) return st;
    }
    return FK_OK;
}

static fk_status fk_png_read(fk_context *ctx, const char *label, const void *buf, size_t len, fk_image *img,
                             fk_image_meta *meta) {
    fk_png_state s;
    memset(&s, 0, sizeof(s));
    s.buf = buf;
    s.len = len;
    s.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, fk_png_error_fn, fk_png_warning_fn);
    if (!s.png) return fk_error(ctx, FK_ERR_NOMEM, "%s: cannot create a PNG decoder", label);
    s.info = png_create_info_struct(s.png);
    fk_status st = FK_OK;
    if (!s.info) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: cannot create a PNG decoder", label);
    } else {
        int rc = fk_png_decode(&s);
        if (rc == 1)
            st = fk_error(ctx, FK_ERR_FORMAT, "%s: not a readable PNG image: %s", label, s.msg);
        else if (rc == 2)
            st = fk_image_check_size(ctx, label, png_get_image_width(s.png, s.info),
                                     png_get_image_height(s.png, s.info));
        else if (rc == 3)
            st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory decoding the image", label);
        if (st == FK_OK && meta) st = fk_png_collect_text(ctx, s.png, s.info, meta);
    }
    if (st == FK_OK) {
        img->width = s.width;
        img->height = s.height;
        img->channels = 3;
        img->data = s.data;
        s.data = NULL;
    }
    png_destroy_read_struct(&s.png, s.info ? &s.info : NULL, NULL);
    free(s.rows);
    free(s.data);
    return st;
}
#endif /* FK_HAVE_PNG */

/* ---- JPEG decoding ----------------------------------------------------------------- */

#ifdef FK_HAVE_JPEG
typedef struct fk_jpeg_state {
    struct jpeg_error_mgr err; /* first member: cinfo->err points here */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    char warning[JMSG_LENGTH_MAX];
    struct jpeg_decompress_struct cinfo;
    const uint8_t *buf;
    size_t len;
    uint8_t *data;
    int width, height;
} fk_jpeg_state;

static void fk_jpeg_error_exit(j_common_ptr cinfo) {
    fk_jpeg_state *s = (fk_jpeg_state *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, s->msg);
    longjmp(s->jb, 1);
}

/* Warnings (msg_level −1: corrupt or truncated data) are kept and turned into
 * an error after decoding; trace messages are dropped. Nothing is printed. */
static void fk_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    fk_jpeg_state *s = (fk_jpeg_state *)cinfo->err;
    if (msg_level < 0) {
        if (!s->warning[0]) (*cinfo->err->format_message)(cinfo, s->warning);
        cinfo->err->num_warnings++;
    }
}

static void fk_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* 0 ok, 1 libjpeg error (s->msg), 2 bad size, 3 out of memory, 4 not RGB-convertible. */
static int fk_jpeg_decode(fk_jpeg_state *s) {
    if (setjmp(s->jb)) return 1;
    jpeg_mem_src(&s->cinfo, s->buf, (unsigned long)s->len);
    jpeg_read_header(&s->cinfo, TRUE);
    if (s->cinfo.image_width < 1 || s->cinfo.image_height < 1 || s->cinfo.image_width > FK_IMAGE_MAX_SIDE ||
        s->cinfo.image_height > FK_IMAGE_MAX_SIDE ||
        (int64_t)s->cinfo.image_width * s->cinfo.image_height > FK_IMAGE_MAX_PIXELS) {
        s->width = (int)s->cinfo.image_width;
        s->height = (int)s->cinfo.image_height;
        return 2;
    }
    s->cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&s->cinfo);
    if (s->cinfo.output_components != 3) return 4;
    const size_t w = s->cinfo.output_width, h = s->cinfo.output_height;
    s->data = malloc(w * h * 3);
    if (!s->data) return 3;
    while (s->cinfo.output_scanline < s->cinfo.output_height) {
        JSAMPROW row = s->data + (size_t)s->cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&s->cinfo, &row, 1);
    }
    jpeg_finish_decompress(&s->cinfo);
    s->width = (int)w;
    s->height = (int)h;
    return 0;
}

static fk_status fk_jpeg_read(fk_context *ctx, const char *label, const void *buf, size_t len, fk_image *img) {
    fk_jpeg_state *s = calloc(1, sizeof(*s));
    if (!s) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", label);
    s->buf = buf;
    s->len = len;
    s->cinfo.err = jpeg_std_error(&s->err);
    s->err.error_exit = fk_jpeg_error_exit;
    s->err.emit_message = fk_jpeg_emit_message;
    s->err.output_message = fk_jpeg_output_message;
    jpeg_create_decompress(&s->cinfo);
    fk_status st = FK_OK;
    int rc = fk_jpeg_decode(s);
    if (rc == 1)
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: not a readable JPEG image: %s", label, s->msg);
    else if (rc == 2)
        st = fk_image_check_size(ctx, label, s->width, s->height);
    else if (rc == 3)
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory decoding the image", label);
    else if (rc == 4)
        st = fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: JPEG color space cannot be converted to RGB", label);
    else if (s->err.num_warnings > 0)
        st = fk_error(ctx, FK_ERR_FORMAT, "%s: corrupt or truncated JPEG data: %s", label, s->warning);
    if (st == FK_OK) {
        img->width = s->width;
        img->height = s->height;
        img->channels = 3;
        img->data = s->data;
        s->data = NULL;
    }
    jpeg_destroy_decompress(&s->cinfo);
    free(s->data);
    free(s);
    return st;
}
#endif /* FK_HAVE_JPEG */

fk_status fk_image_read_memory(fk_context *ctx, const char *label, const void *buf, size_t len, fk_image *img,
                               fk_image_meta *meta) {
    memset(img, 0, sizeof(*img));
    if (meta) memset(meta, 0, sizeof(*meta));
    const uint8_t *b = buf;
    if (len >= 8 && !memcmp(b, fk_png_sig, 8)) {
#ifdef FK_HAVE_PNG
        fk_status st = fk_png_read(ctx, label, buf, len, img, meta);
        if (st != FK_OK && meta) fk_image_meta_free(meta);
        return st;
#else
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: PNG support was not built in (libpng missing)", label);
#endif
    }
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
#ifdef FK_HAVE_JPEG
        return fk_jpeg_read(ctx, label, buf, len, img);
#else
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: JPEG support was not built in (libjpeg missing)", label);
#endif
    }
    return fk_error(ctx, FK_ERR_FORMAT, "%s: not a PNG or JPEG image (unrecognized signature)", label);
}

fk_status fk_image_read(fk_context *ctx, const char *path, fk_image *img, fk_image_meta *meta) {
    memset(img, 0, sizeof(*img));
    if (meta) memset(meta, 0, sizeof(*meta));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fk_error(ctx, FK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fk_error(ctx, FK_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > FK_IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return fk_error(ctx, FK_ERR_FORMAT, "%s: file too large for an image (%lld bytes)", path,
                        (long long)sb.st_size);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory reading the file", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    int err = errno;
    close(fd);
    fk_status st;
    if (got != len)
        st = fk_error(ctx, FK_ERR_IO, "%s: read failed: %s", path, strerror(err));
    else
        st = fk_image_read_memory(ctx, path, buf, len, img, meta);
    free(buf);
    return st;
}

/* ---- atomic writing --------------------------------------------------------------- */

/* Open "<path>.tmp.<pid>" for writing; *tmp_out malloc'ed. */
static fk_status fk_image_open_tmp(fk_context *ctx, const char *path, char **tmp_out, FILE **f_out) {
    *tmp_out = NULL;
    *f_out = NULL;
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fk_status st = fk_error(ctx, FK_ERR_IO, "%s: cannot create the output file: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return fk_error(ctx, FK_ERR_NOMEM, "%s: cannot open a stream", path);
    }
    *tmp_out = tmp;
    *f_out = f;
    return FK_OK;
}

static void fk_image_fsync_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Flush, fsync and close f, then move tmp to path (never replacing an existing
 * file unless overwrite). On failure tmp is removed. Frees tmp. */
static fk_status fk_image_commit(fk_context *ctx, const char *path, char *tmp, FILE *f, bool overwrite) {
    fk_status st = FK_OK;
    if (fflush(f) != 0 || ferror(f))
        st = fk_error(ctx, FK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    else if (fsync(fileno(f)) != 0)
        st = fk_error(ctx, FK_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == FK_OK) st = fk_error(ctx, FK_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == FK_OK) {
        if (overwrite) {
            if (rename(tmp, path) != 0)
                st = fk_error(ctx, FK_ERR_IO, "%s: cannot move the temporary file over it: %s", path, strerror(errno));
        } else if (link(tmp, path) != 0) {
            if (errno == EEXIST) {
                st = fk_error(ctx, FK_ERR_IO, "%s: exists (not overwritten)", path);
            } else if (access(path, F_OK) == 0) {
                st = fk_error(ctx, FK_ERR_IO, "%s: exists (not overwritten)", path);
            } else if (rename(tmp, path) != 0) { /* no hard links on this file system */
                st = fk_error(ctx, FK_ERR_IO, "%s: cannot move the temporary file to it: %s", path, strerror(errno));
            }
        }
    }
    unlink(tmp); /* after link (or a failure); a no-op after rename */
    free(tmp);
    if (st == FK_OK) fk_image_fsync_dir(path);
    return st;
}

static fk_status fk_image_check_write(fk_context *ctx, const char *path, const fk_image *img) {
    if (!path || !path[0]) return fk_error(ctx, FK_ERR_ARG, "image: empty output path");
    if (!img || !img->data || img->channels != 3)
        return fk_error(ctx, FK_ERR_ARG, "%s: image to write is not an RGB image", path);
    return fk_image_check_size_arg(ctx, path, img->width, img->height);
}

fk_status fk_image_write_ppm(fk_context *ctx, const char *path, const fk_image *img, bool overwrite) {
    fk_status st = fk_image_check_write(ctx, path, img);
    if (st != FK_OK) return st;
    if (!overwrite && access(path, F_OK) == 0) return fk_error(ctx, FK_ERR_IO, "%s: exists (not overwritten)", path);
    char *tmp;
    FILE *f;
    st = fk_image_open_tmp(ctx, path, &tmp, &f);
    if (st != FK_OK) return st;
    fprintf(f, "P6\n%d %d\n255\n", img->width, img->height);
    fwrite(img->data, 3, (size_t)img->width * (size_t)img->height, f);
    return fk_image_commit(ctx, path, tmp, f, overwrite);
}

#ifdef FK_HAVE_PNG
typedef struct fk_png_wstate {
    char msg[256]; /* first member, see fk_png_state */
    png_structp png;
    png_infop info;
    png_textp text;
    const fk_image *img;
} fk_png_wstate;

static int fk_png_encode(fk_png_wstate *s, FILE *f, int n_text) {
    if (setjmp(png_jmpbuf(s->png))) return 1;
    png_init_io(s->png, f);
    png_set_IHDR(s->png, s->info, (png_uint_32)s->img->width, (png_uint_32)s->img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (n_text > 0) png_set_text(s->png, s->info, s->text, n_text);
    png_write_info(s->png, s->info);
    for (int y = 0; y < s->img->height; y++)
        png_write_row(s->png, s->img->data + (size_t)y * (size_t)s->img->width * 3);
    png_write_end(s->png, NULL);
    return 0;
}
#endif

fk_status fk_image_write_png(fk_context *ctx, const char *path, const fk_image *img, const fk_image_meta *meta,
                             bool overwrite) {
    fk_status st = fk_image_check_write(ctx, path, img);
    if (st != FK_OK) return st;
#ifndef FK_HAVE_PNG
    (void)meta;
    (void)overwrite;
    return fk_error(ctx, FK_ERR_UNSUPPORTED, "%s: PNG support was not built in (libpng missing)", path);
#else
    const int n_text = meta ? meta->n : 0;
    for (int i = 0; i < n_text; i++) {
        const char *k = meta->keys[i];
        size_t kl = strlen(k);
        bool ok = kl >= 1 && kl <= 79 && k[0] != ' ' && k[kl - 1] != ' ';
        for (size_t j = 0; j < kl; j++) ok &= k[j] >= 32 && k[j] <= 126 && !(k[j] == ' ' && k[j + 1] == ' ');
        if (!ok) return fk_error(ctx, FK_ERR_ARG, "%s: PNG text key '%s' is not 1-79 printable characters", path, k);
        if (!fk_utf8_valid(meta->values[i]))
            return fk_error(ctx, FK_ERR_ARG, "%s: PNG text value for '%s' is not valid UTF-8", path, k);
    }
    if (!overwrite && access(path, F_OK) == 0) return fk_error(ctx, FK_ERR_IO, "%s: exists (not overwritten)", path);
    fk_png_wstate s;
    memset(&s, 0, sizeof(s));
    s.img = img;
    if (n_text > 0) {
        s.text = calloc((size_t)n_text, sizeof(png_text));
        if (!s.text) return fk_error(ctx, FK_ERR_NOMEM, "%s: out of memory", path);
        for (int i = 0; i < n_text; i++) {
            bool ascii = true;
            for (const unsigned char *p = (const unsigned char *)meta->values[i]; *p; p++) ascii &= *p < 0x80;
            s.text[i].compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
            s.text[i].key = meta->keys[i];
            s.text[i].text = meta->values[i];
            s.text[i].text_length = ascii ? strlen(meta->values[i]) : 0;
            s.text[i].itxt_length = ascii ? 0 : strlen(meta->values[i]);
            s.text[i].lang = NULL;
            s.text[i].lang_key = NULL;
        }
    }
    char *tmp = NULL;
    FILE *f = NULL;
    st = fk_image_open_tmp(ctx, path, &tmp, &f);
    if (st != FK_OK) {
        free(s.text);
        return st;
    }
    s.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &s, fk_png_error_fn, fk_png_warning_fn);
    s.info = s.png ? png_create_info_struct(s.png) : NULL;
    if (!s.png || !s.info) {
        st = fk_error(ctx, FK_ERR_NOMEM, "%s: cannot create a PNG encoder", path);
    } else if (fk_png_encode(&s, f, n_text) != 0) {
        st = fk_error(ctx, FK_ERR_IO, "%s: PNG encoding failed: %s", path, s.msg);
    }
    if (s.png) png_destroy_write_struct(&s.png, s.info ? &s.info : NULL);
    free(s.text);
    if (st != FK_OK) {
        fclose(f);
        unlink(tmp);
        free(tmp);
        return st;
    }
    return fk_image_commit(ctx, path, tmp, f, overwrite);
#endif
}

/* ---- resizing (Pillow's Lanczos resampling) -------------------------------------------- */

#define FK_RESAMPLE_PRECISION_BITS (32 - 8 - 2)
#define FK_LANCZOS_SUPPORT 3.0

static double fk_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * 3.14159265358979323846;
    return sin(x) / x;
}

static double fk_lanczos3(double x) {
    if (-3.0 <= x && x < 3.0) return fk_sinc(x) * fk_sinc(x / 3.0);
    return 0.0;
}

/* Coefficients for resampling in_size → out_size along one axis: for each
 * output position, the first source index bounds[2i], the tap count
 * bounds[2i+1] and ksize fixed-point weights. Returns ksize, 0 on OOM. */
static int fk_resample_coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out) {
    double scale = (double)in_size / (double)out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = FK_LANCZOS_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = malloc(sizeof(double) * (size_t)out_size * (size_t)ksize);
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)ksize);
    if (!pre || !bounds || !kk) {
        free(pre);
        free(bounds);
        free(kk);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * (size_t)ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = fk_lanczos3((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << FK_RESAMPLE_PRECISION_BITS))
                           : (int32_t)(0.5 + pre[i] * (1 << FK_RESAMPLE_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t fk_clip8(int64_t v) {
    if (v >= ((int64_t)1 << FK_RESAMPLE_PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> FK_RESAMPLE_PRECISION_BITS);
}

fk_status fk_image_resize(fk_context *ctx, const fk_image *src, int width, int height, fk_image *out) {
    memset(out, 0, sizeof(*out));
    if (!src || !src->data || src->channels != 3) return fk_error(ctx, FK_ERR_ARG, "resize: not an RGB image");
    fk_status st = fk_image_alloc(ctx, out, width, height);
    if (st != FK_OK) return st;
    const int W0 = src->width, H0 = src->height;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    int ksh = fk_resample_coeffs(W0, width, &bh, &kh);
    int ksv = fk_resample_coeffs(H0, height, &bv, &kv);
    const bool need_h = width != W0, need_v = height != H0;
    /* source rows the vertical pass uses */
    int y_first = bv ? bv[0] : 0, y_last = bv ? bv[2 * height - 2] + bv[2 * height - 1] : 0;
    const uint8_t *in = src->data;
    int in_w = W0, row0 = 0;
    uint8_t *tmp = NULL;
    if (!ksh || !ksv) {
        st = fk_error(ctx, FK_ERR_NOMEM, "resize: out of memory");
        goto done;
    }
    if (need_h) {
        const int rows = need_v ? y_last - y_first : H0;
        const int off = need_v ? y_first : 0;
        tmp = malloc((size_t)rows * (size_t)width * 3);
        if (!tmp) {
            st = fk_error(ctx, FK_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
        for (int y = 0; y < rows; y++)
            for (int xx = 0; xx < width; xx++) {
                const int xmin = bh[2 * xx], xmax = bh[2 * xx + 1];
                const int32_t *k = kh + (size_t)xx * (size_t)ksh;
                for (int c = 0; c < 3; c++) {
                    int64_t ss = (int64_t)1 << (FK_RESAMPLE_PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++)
                        ss += (int64_t)in[((size_t)(y + off) * (size_t)W0 + (size_t)(x + xmin)) * 3 + c] * k[x];
                    tmp[((size_t)y * (size_t)width + (size_t)xx) * 3 + c] = fk_clip8(ss);
                }
            }
        in = tmp;
        in_w = width;
        row0 = need_v ? y_first : 0;
    }
    if (need_v) {
        for (int yy = 0; yy < height; yy++) {
            const int ymin = bv[2 * yy] - row0, ymax = bv[2 * yy + 1];
            const int32_t *k = kv + (size_t)yy * (size_t)ksv;
            for (int xx = 0; xx < width; xx++)
                for (int c = 0; c < 3; c++) {
                    int64_t ss = (int64_t)1 << (FK_RESAMPLE_PRECISION_BITS - 1);
                    for (int y = 0; y < ymax; y++)
                        ss += (int64_t)in[((size_t)(y + ymin) * (size_t)in_w + (size_t)xx) * 3 + c] * k[y];
                    out->data[((size_t)yy * (size_t)width + (size_t)xx) * 3 + c] = fk_clip8(ss);
                }
        }
    } else {
        memcpy(out->data, in, (size_t)width * (size_t)height * 3);
    }
done:
    free(tmp);
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    if (st != FK_OK) fk_image_free(out);
    return st;
}
