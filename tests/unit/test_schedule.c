/* get_schedule against the reference (tests/data/flux/schedules.*): 14 cases
 * of flux.sampling.get_schedule run with PyTorch on the CPU. The reference
 * computes in float32 tensors (linspace, then the shift), so the comparison
 * is exact: every value must have the same bits. μ is Python float math and
 * must match the JSON's double exactly. The Euler step is checked against a
 * float32 computation written out here. */
#include "test.h"

#include "io/safetensors.h"
#include "pipeline/sampling.h"

#include <cjson/cJSON.h>

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_fixture_schedules(void) {
    fk_context *ctx = fk_context_create(1);
    fk_st_file *st = NULL;
    fk_status s = fk_st_open(ctx, "tests/data/flux/schedules.safetensors", &st);
    CHECKF(s == FK_OK, "%s", fk_context_error(ctx));
    char *text = read_text("tests/data/flux/schedules.json");
    CHECK(text != NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    CHECK(root && cJSON_IsArray(root));
    int ncases = root ? cJSON_GetArraySize(root) : 0;
    CHECK(ncases == 14);
    for (int c = 0; c < ncases && st; c++) {
        const cJSON *o = cJSON_GetArrayItem(root, c);
        int n = cJSON_GetObjectItem(o, "num_steps")->valueint;
        int L = cJSON_GetObjectItem(o, "image_seq_len")->valueint;
        bool shift = cJSON_IsTrue(cJSON_GetObjectItem(o, "shift"));
        const cJSON *mu = cJSON_GetObjectItem(o, "mu");
        const cJSON *ts = cJSON_GetObjectItem(o, "timesteps");
        CHECK(cJSON_GetArraySize(ts) == n + 1);
        if (shift) {
            double m = fk_sampling_mu(L, 0.5, 1.15);
            CHECKF(m == mu->valuedouble, "case %d: mu %.17g vs %.17g", c, m, mu->valuedouble);
        }
        char name[128];
        snprintf(name, sizeof(name), "schedule.n%d.seq%d.%s.f32", n, L, shift ? "shift" : "noshift");
        const fk_st_tensor *t = fk_st_find(st, name);
        CHECKF(t && t->dtype == FK_F32 && t->shape[0] == n + 1, "%s", name);
        if (!t) continue;
        float *got = malloc(sizeof(float) * (size_t)(n + 1));
        fk_sampling_schedule(got, n, L, shift);
        int bad = 0;
        for (int i = 0; i <= n; i++) {
            float want = ((const float *)t->data)[i];
            /* the JSON's doubles are the same float32 values widened */
            if (memcmp(&got[i], &want, 4) || (double)got[i] != cJSON_GetArrayItem(ts, i)->valuedouble) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s[%d]: %.9g vs %.9g\n", name, i, got[i], want);
            }
        }
        CHECKF(bad == 0, "%s: %d values differ", name, bad);
        free(got);
    }
    cJSON_Delete(root);
    free(text);
    fk_st_close(st);
    fk_context_free(ctx);
}

static void test_properties(void) {
    /* endpoints and monotonicity for many sizes; t = 0 stays exactly 0 */
    for (int n = 1; n <= 80; n++) {
        float ts[81];
        for (int sh = 0; sh < 2; sh++) {
            fk_sampling_schedule(ts, n, 4096, sh);
            CHECK(ts[0] == 1.0f && ts[n] == 0.0f);
            bool mono = true;
            for (int i = 0; i < n; i++) mono &= ts[i + 1] < ts[i];
            CHECKF(mono, "n=%d shift=%d not decreasing", n, sh);
        }
    }
    CHECK(fk_sampling_mu(256, 0.5, 1.15) == 0.5);
    CHECK(fabs(fk_sampling_mu(4096, 0.5, 1.15) - 1.15) < 1e-15);
    CHECK(fk_sampling_default_steps("flux-schnell") == 4 && !fk_sampling_default_shift("flux-schnell"));
    CHECK(fk_sampling_default_steps("flux-dev") == 50 && fk_sampling_default_shift("flux-mini"));
}

static void test_euler(void) {
    /* img + f32(t_next − t_cur)·v, product and sum each rounded to f32 */
    float img[5] = {1.0f, -2.5f, 0.3f, 1e-3f, 7.0f};
    const float v[5] = {0.25f, 1.0f, -3.0f, 2.0f, 0.1f};
    float t0 = 0.8268412351608276f, t1 = 0.6141502857208252f;
    float ref[5];
    volatile float dt = (float)((double)t1 - (double)t0);
    for (int i = 0; i < 5; i++) {
        volatile float p = dt * v[i];
        volatile float s = img[i] + p;
        ref[i] = s;
    }
    fk_sampling_euler_step(img, v, 5, t0, t1);
    CHECK(memcmp(img, ref, sizeof(ref)) == 0);
}

int main(void) {
    test_fixture_schedules();
    test_properties();
    test_euler();
    return fk_test_finish("test_schedule");
}
