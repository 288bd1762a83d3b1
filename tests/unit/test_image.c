/* test_image: PNG / JPEG decoding, PNG writing with text chunks, atomic
 * writes, Lanczos resizing.
 * Reference: Pillow (tools/gen_image_fixtures.py → tests/data/pipeline/images/
 * ref.safetensors): decoded pixels must be identical (PNG is lossless; JPEG:
 * libjpeg-turbo's default integer IDCT and fancy upsampling are exact integer
 * arithmetic, the same in Pillow's bundled copy and the system library), and
 * resizing must equal Pillow's LANCZOS exactly (same double-precision
 * coefficients, same 22-bit fixed point, same order of passes). Writing is
 * checked by reading back (lossless) and by the file system state. */
#include "io/image.h"
#include "io/safetensors.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR "tests/data/pipeline/images/"

static void check_same(fk_context *ctx, const fk_st_file *ref, const char *file, const char *refname) {
    fk_image img;
    char path[256];
    snprintf(path, sizeof(path), DIR "%s", file);
    fk_status st = fk_image_read(ctx, path, &img, NULL);
    CHECKF(st == FK_OK, "%s: %s", file, fk_context_error(ctx));
    const fk_st_tensor *t = fk_st_find(ref, refname);
    CHECKF(t != NULL, "missing %s", refname);
    if (st != FK_OK || !t) return;
    CHECKF(t->shape[0] == img.height && t->shape[1] == img.width && img.channels == 3, "%s: size %dx%d", file,
           img.width, img.height);
    if (t->nbytes == (uint64_t)img.width * img.height * 3) {
        size_t bad = 0;
        for (size_t i = 0; i < t->nbytes; i++) bad += ((const uint8_t *)t->data)[i] != img.data[i];
        CHECKF(bad == 0, "%s: %zu of %llu values differ from Pillow", file, bad, (unsigned long long)t->nbytes);
    }
    fk_image_free(&img);
}

static void test_decode(fk_context *ctx, const fk_st_file *ref) {
    const char *files[] = {"rgb.png", "rgba.png", "palette.png", "gray.png", "gray16.png",
                           "photo.jpg", "progressive.jpg", "gray.jpg"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "ref.%s", files[i]);
        check_same(ctx, ref, files[i], name);
    }
    /* unreadable inputs: clear errors naming the file, no image */
    const struct {
        const char *file;
        fk_status st;
        const char *msg;
    } bad[] = {
        {"truncated.jpg", FK_ERR_FORMAT, "truncated"}, {"truncated.png", FK_ERR_FORMAT, "truncated"},
        {"garbage.png", FK_ERR_FORMAT, "PNG"},         {"cmyk.jpg", FK_ERR_FORMAT, "JPEG"},
        {"ref.safetensors", FK_ERR_FORMAT, "not a PNG or JPEG"}, {"missing.png", FK_ERR_IO, "cannot open"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fk_image img;
        char path[256];
        snprintf(path, sizeof(path), DIR "%s", bad[i].file);
        fk_status st = fk_image_read(ctx, path, &img, NULL);
        CHECKF(st != FK_OK && img.data == NULL, "%s: read succeeded", bad[i].file);
        CHECKF(strstr(fk_context_error(ctx), bad[i].file) && strstr(fk_context_error(ctx), bad[i].msg),
               "%s: message '%s'", bad[i].file, fk_context_error(ctx));
        if (bad[i].st != FK_ERR_FORMAT) CHECK(st == bad[i].st);
    }
    /* a folder is not an image */
    fk_image img;
    CHECK(fk_image_read(ctx, "tests/data", &img, NULL) == FK_ERR_IO);
    /* in-memory: every prefix of a valid PNG and JPEG fails cleanly or decodes */
    const char *valid[] = {DIR "rgb.png", DIR "photo.jpg"};
    for (int v = 0; v < 2; v++) {
        FILE *f = fopen(valid[v], "rb");
        uint8_t buf[4096];
        size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
        if (f) fclose(f);
        CHECK(n > 100);
        int ok = 0;
        for (size_t len = 0; len < n; len += 7) {
            fk_status st = fk_image_read_memory(ctx, "prefix", buf, len, &img, NULL);
            ok += st == FK_OK;
            fk_image_free(&img);
        }
        CHECK(ok == 0);
    }
}

/* Corrupted files (1–4 random bytes changed, deterministic) decode or fail
 * cleanly; under the sanitizer build this also checks for memory errors. */
static void test_corrupt(fk_context *ctx) {
    const char *files[] = {DIR "rgb.png", DIR "palette.png", DIR "photo.jpg", DIR "progressive.jpg"};
    uint32_t rng = 12345u;
    for (int fi = 0; fi < 4; fi++) {
        FILE *f = fopen(files[fi], "rb");
        uint8_t orig[4096], buf[4096];
        size_t n = f ? fread(orig, 1, sizeof(orig), f) : 0;
        if (f) fclose(f);
        CHECK(n > 100);
        int ok = 0, failed = 0;
        for (int iter = 0; iter < 200; iter++) {
            memcpy(buf, orig, n);
            int k = 1 + (int)((rng = rng * 1664525u + 1013904223u) >> 30);
            for (int j = 0; j < k; j++) {
                rng = rng * 1664525u + 1013904223u;
                size_t at = 8 + (rng >> 8) % (n - 8); /* keep the signature */
                rng = rng * 1664525u + 1013904223u;
                buf[at] ^= (uint8_t)(1u << ((rng >> 29) & 7));
            }
            fk_image img;
            fk_status st = fk_image_read_memory(ctx, "corrupt", buf, n, &img, NULL);
            if (st == FK_OK) {
                ok++;
                CHECK(img.data && img.width > 0 && img.height > 0);
            } else {
                failed++;
                CHECK(img.data == NULL && strstr(fk_context_error(ctx), "corrupt") != NULL);
            }
            fk_image_free(&img);
        }
        CHECK(ok + failed == 200);
    }
}

static void test_resize(fk_context *ctx, const fk_st_file *ref) {
    fk_image src;
    CHECK(fk_image_read(ctx, DIR "rgb.png", &src, NULL) == FK_OK);
    for (int i = 0; i < fk_st_count(ref); i++) {
        const fk_st_tensor *t = fk_st_get(ref, i);
        int w, h;
        if (sscanf(t->name, "resize.%dx%d", &w, &h) != 2) continue;
        fk_image out;
        CHECK(fk_image_resize(ctx, &src, w, h, &out) == FK_OK);
        size_t bad = 0;
        for (size_t k = 0; k < t->nbytes && out.data; k++) bad += ((const uint8_t *)t->data)[k] != out.data[k];
        CHECKF(out.width == w && out.height == h && bad == 0, "resize %dx%d: %zu values differ from Pillow", w, h, bad);
        fk_image_free(&out);
    }
    fk_image_free(&src);
}

static void test_write(fk_context *ctx) {
    char dir[] = "/tmp/fk_test_image_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[256], path2[256];
    snprintf(path, sizeof(path), "%s/out.png", dir);
    fk_image img;
    CHECK(fk_image_alloc(ctx, &img, 19, 7) == FK_OK);
    for (int i = 0; i < 19 * 7 * 3; i++) img.data[i] = (uint8_t)(i * 37 + 11);
    fk_image_meta meta = {0};
    CHECK(fk_image_meta_add(ctx, &meta, "prompt", "a café at night, 東京, \"quoted\"\nsecond line") == FK_OK);
    CHECK(fk_image_meta_add(ctx, &meta, "seed", "18446744073709551615") == FK_OK);
    CHECK(fk_image_meta_add(ctx, &meta, "Software", "fluxkit test") == FK_OK);
    CHECK(fk_image_write_png(ctx, path, &img, &meta, false) == FK_OK);
    fk_image back;
    fk_image_meta mb;
    CHECKF(fk_image_read(ctx, path, &back, &mb) == FK_OK, "%s", fk_context_error(ctx));
    CHECK(back.width == 19 && back.height == 7 && !memcmp(back.data, img.data, 19 * 7 * 3));
    CHECK(mb.n == 3 && fk_image_meta_get(&mb, "prompt") &&
          !strcmp(fk_image_meta_get(&mb, "prompt"), meta.values[0]));
    CHECK(fk_image_meta_get(&mb, "seed") && !strcmp(fk_image_meta_get(&mb, "seed"), "18446744073709551615"));
    fk_image_free(&back);
    fk_image_meta_free(&mb);
    /* same input → same bytes */
    snprintf(path2, sizeof(path2), "%s/out2.png", dir);
    CHECK(fk_image_write_png(ctx, path2, &img, &meta, false) == FK_OK);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", path, path2);
    CHECK(system(cmd) == 0);
    /* no overwrite without the flag; the old file is kept */
    struct stat s1, s2;
    CHECK(stat(path, &s1) == 0);
    img.data[0] ^= 0xff;
    CHECK(fk_image_write_png(ctx, path, &img, &meta, false) == FK_ERR_IO);
    CHECK(strstr(fk_context_error(ctx), "exists") != NULL);
    CHECK(fk_image_read(ctx, path, &back, NULL) == FK_OK && back.data[0] != img.data[0]);
    fk_image_free(&back);
    CHECK(fk_image_write_png(ctx, path, &img, &meta, true) == FK_OK);
    CHECK(fk_image_read(ctx, path, &back, NULL) == FK_OK && back.data[0] == img.data[0]);
    fk_image_free(&back);
    CHECK(stat(path, &s2) == 0 && s2.st_ino != s1.st_ino); /* replaced by rename, not rewritten */
    /* bad metadata is refused before anything is written */
    fk_image_meta badm = {0};
    CHECK(fk_image_meta_add(ctx, &badm, "bad\tkey", "v") == FK_OK);
    snprintf(path2, sizeof(path2), "%s/bad.png", dir);
    CHECK(fk_image_write_png(ctx, path2, &img, &badm, false) == FK_ERR_ARG);
    fk_image_meta_free(&badm);
    CHECK(fk_image_meta_add(ctx, &badm, "k", "\xff\xfe") == FK_OK);
    CHECK(fk_image_write_png(ctx, path2, &img, &badm, false) == FK_ERR_ARG);
    fk_image_meta_free(&badm);
    CHECK(access(path2, F_OK) != 0);
    /* a folder that does not exist: error, nothing created */
    snprintf(path2, sizeof(path2), "%s/nope/x.png", dir);
    CHECK(fk_image_write_png(ctx, path2, &img, NULL, false) == FK_ERR_IO);
    /* ppm */
    snprintf(path2, sizeof(path2), "%s/out.ppm", dir);
    CHECK(fk_image_write_ppm(ctx, path2, &img, false) == FK_OK);
    FILE *f = fopen(path2, "rb");
    char head[16] = {0};
    CHECK(f && fread(head, 1, 12, f) == 12 && !memcmp(head, "P6\n19 7\n255\n", 12));
    if (f) fclose(f);
    /* only the outputs remain: no temporary files */
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 3", dir);
    CHECK(system(cmd) == 0);
    fk_image_free(&img);
    fk_image_meta_free(&meta);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    fk_st_file *ref = NULL;
    if (fk_st_open(ctx, DIR "ref.safetensors", &ref) != FK_OK) {
        CHECKF(0, "%s", fk_context_error(ctx));
    } else {
        test_decode(ctx, ref);
        test_resize(ctx, ref);
        test_corrupt(ctx);
        fk_st_close(ref);
    }
    test_write(ctx);
    fk_context_free(ctx);
    return fk_test_finish("test_image");
}
