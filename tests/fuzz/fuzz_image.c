/* libFuzzer target: the PNG and JPEG decoders behind --init-image (an
 * untrusted file). Each input either fails with a one-line message naming the
 * label, or decodes to an RGB image within the limits whose every byte is
 * readable (ASan checks the buffer). */
#include "io/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fk_context *ctx;
    if (!ctx) ctx = fk_context_create(1);
    fk_image img;
    memset(&img, 0, sizeof(img));
    fk_image_meta meta;
    memset(&meta, 0, sizeof(meta));
    if (fk_image_read_memory(ctx, "fuzz.img", data, size, &img, &meta) != FK_OK) {
        const char *msg = fk_context_error(ctx);
        if (strchr(msg, '\n') || !strstr(msg, "fuzz.img")) abort();
        fk_image_meta_free(&meta);
        return 0;
    }
    if (img.width < 1 || img.height < 1 || img.width > FK_IMAGE_MAX_SIDE ||
        img.height > FK_IMAGE_MAX_SIDE || img.channels != 3 || !img.data)
        abort();
    volatile uint8_t sink = 0;
    size_t n = (size_t)img.width * (size_t)img.height * 3;
    sink ^= img.data[0];
    sink ^= img.data[n - 1];
    (void)sink;
    for (int i = 0; i < meta.n; i++)
        if (!meta.keys[i] || !meta.values[i]) abort();
    fk_image_free(&img);
    fk_image_meta_free(&meta);
    return 0;
}
