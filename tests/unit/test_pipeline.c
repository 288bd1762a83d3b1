/* test_pipeline: the text-to-image / image-to-image pipeline against the
 * Python reference (BFL flux sampling + transformers text encoders, float32).
 *
 * 1. tests/data/flux/pipeline-tiny.io.{f32,f64}: `latent` decoded by ae-tiny
 *    and converted to uint8 reproduces `image_u8` exactly (all 2304 values),
 *    and the conversion alone maps the reference's f32 decode.output to
 *    image_u8 exactly (clamp, then (x + 1)·127.5 in f32, truncated).
 * 2. tests/data/pipeline/pipeline-e2e.io.f32 (tools/gen_pipeline_fixture.py):
 *    four runs of fk_pipeline_generate — dev (guidance embedding, shifted
 *    schedule, T5 512), schnell (no guidance, no shift, T5 256), true CFG
 *    with a negative prompt, img2img from a PNG — compared stage by stage:
 *    - token ids, noise (bf16 bits) and timesteps: exact;
 *    - text embeddings (bf16-rounded like the reference's HFEmbedder): the
 *      f32 encoders agree with the reference to ~1e-5 of the output's scale
 *      before rounding, so after rounding to bf16 a value may differ by one
 *      bf16 ulp (≤ 2⁻⁷·|x|) plus that f32 error (5e-5·rms, which matters for
 *      values near zero, e.g. at padded T5 positions); ≤ 2% of values may
 *      differ at all and relative L2 ≤ 1e-3 (measured ≤ 1.5e-4, ≤ 1.4%);
 *    - final latent: relative L2 ≤ 1e-3 (measured: up to ~1e-5; a bf16 flip
 *      in the text embedding moves it by ~1e-4 at most);
 *    - image: max |Δ| ≤ 1 on uint8 and ≥ 99% of values identical. An f32
 *      error ε in the decoded value changes the truncated byte only when
 *      127.5·(x + 1) lies within 127.5·ε of an integer, i.e. for a fraction
 *      ~2·127.5·ε ≈ 1e-3 of the pixels at ε ~ 4e-6, never by more than 1.
 * 3. Pieces: packing, the img2img start index (diffusers' table), model-file
 *    discovery and its error messages, the model hash, determinism. */
#include "core/torch_rng.h"
#include "io/image.h"
#include "model/vae.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampling.h"
#include "test.h"

#include <cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define E2E "tests/data/pipeline/pipeline-e2e.io.f32.safetensors"
#define CLIP_W "tests/data/pipeline/tiny-clip-l.safetensors"
#define T5_W "tests/data/pipeline/tiny-t5xxl.safetensors"
#define AE_W "tests/data/ae/ae-tiny.weights.f32.safetensors"
#define DEV_W "tests/data/flux/tiny-dev.weights.f32.safetensors"
#define SCHNELL_W "tests/data/flux/tiny-schnell.weights.f32.safetensors"

/* ---- helpers ---------------------------------------------------------------------- */

static const fk_st_tensor *need(const fk_st_file *f, const char *name) {
    const fk_st_tensor *t = fk_st_find(f, name);
    CHECKF(t != NULL, "fixture tensor %s missing", name);
    return t;
}

/* Copy of a fixture tensor as f32 (malloc'ed). */
static float *as_f32(const fk_st_tensor *t) {
    size_t n = (size_t)(t->nbytes / fk_dtype_size(t->dtype));
    float *p = malloc(n * sizeof(float) + 1);
    fk_convert_to_f32(p, t->data, t->dtype, n);
    return p;
}

static size_t numel_st(const fk_st_tensor *t) { return (size_t)(t->nbytes / fk_dtype_size(t->dtype)); }

/* Compare uint8 images: returns max |Δ|, *n_diff differing values. */
static int u8_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *n_diff) {
    int mx = 0;
    *n_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) (*n_diff)++;
        if (d > mx) mx = d;
    }
    return mx;
}

/* ---- 1. pipeline-tiny: decode + uint8 ----------------------------------------------- */

static void test_pipeline_tiny(fk_context *ctx, const char *path) {
    fk_st_file *f = NULL;
    if (fk_st_open(ctx, path, &f) != FK_OK) {
        CHECKF(0, "%s", fk_context_error(ctx));
        return;
    }
    const fk_st_tensor *lt = need(f, "latent"), *ut = need(f, "image_u8"), *dt = need(f, "decode.output");
    if (!lt || !ut || !dt) {
        fk_st_close(f);
        return;
    }
    fk_backend *be = fk_backend_cpu_create(1);
    fk_vae *v = NULL;
    CHECKF(fk_vae_open(ctx, AE_W, &v) == FK_OK, "%s", fk_context_error(ctx));
    float *lat = as_f32(lt);
    fk_tensor z = fk_view4(FK_F32, lat, lt->shape[0], lt->shape[1], lt->shape[2], lt->shape[3]);
    fk_tensor x = {0};
    fk_image img = {0};
    CHECKF(v && fk_vae_decode(ctx, be, v, &z, &x, NULL) == FK_OK, "%s", fk_context_error(ctx));
    CHECK(fk_pipeline_to_image(ctx, &x, &img) == FK_OK);
    CHECK(img.height == ut->shape[0] && img.width == ut->shape[1] && ut->shape[2] == 3);
    size_t nd = 0;
    int mx = img.data ? u8_diff(img.data, ut->data, numel_st(ut), &nd) : 99;
    CHECKF(mx == 0, "%s: decoded image differs in %zu values (max %d)", path, nd, mx);
    /* the conversion alone, on the reference's own f32 decode output */
    if (dt->dtype == FK_F32) {
        float *ref = as_f32(dt);
        fk_tensor rt = fk_view4(FK_F32, ref, 1, 3, dt->shape[2], dt->shape[3]);
        fk_image ri = {0};
        CHECK(fk_pipeline_to_image(ctx, &rt, &ri) == FK_OK);
        mx = ri.data ? u8_diff(ri.data, ut->data, numel_st(ut), &nd) : 99;
        CHECKF(mx == 0, "uint8 conversion of the reference decode.output: %zu values differ", nd);
        fk_image_free(&ri);
        free(ref);
    }
    fk_image_free(&img);
    fk_tensor_free(&x);
    free(lat);
    fk_vae_free(v);
    be->destroy(be);
    fk_st_close(f);
}

/* ---- 2. end to end ------------------------------------------------------------------ */

#define MAX_CAP 16
typedef struct capture {
    int n;
    char names[MAX_CAP][32];
    fk_tensor t[MAX_CAP];
} capture;

static void on_dbg(void *user, const char *name, const fk_tensor *t) {
    capture *c = user;
    if (c->n >= MAX_CAP) return;
    fk_tensor copy;
    if (fk_tensor_new(NULL, &copy, t->dtype, t->ndim, t->shape, name) != FK_OK) return;
    memcpy(copy.data, t->data, fk_tensor_nbytes(t));
    snprintf(c->names[c->n], sizeof(c->names[0]), "%s", name);
    c->t[c->n++] = copy;
}

static const fk_tensor *cap_get(const capture *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name)) return &c->t[i];
    CHECKF(0, "pipeline did not report %s", name);
    return NULL;
}

static void cap_free(capture *c) {
    for (int i = 0; i < c->n; i++) fk_tensor_free(&c->t[i]);
    c->n = 0;
}

/* Text embeddings: element-wise within one bf16 ulp, few flips, rel L2 ≤ 1e-3. */
static void check_text(const char *what, const fk_tensor *mine, const fk_st_tensor *ref) {
    if (!mine || !ref) return;
    size_t n = numel_st(ref);
    CHECKF((size_t)fk_tensor_numel(mine) == n, "%s: size", what);
    if ((size_t)fk_tensor_numel(mine) != n) return;
    float *r = as_f32(ref);
    const float *m = mine->data;
    size_t flips = 0;
    bool within = true;
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)r[i] * r[i];
    const float abs_tol = (float)(5e-5 * sqrt(ss / (double)n)); /* f32 encoder error, absolute */
    for (size_t i = 0; i < n; i++) {
        if (m[i] == r[i]) continue;
        flips++;
        /* one bf16 ulp (≤ 2⁻⁷·|x|) plus the f32 error before rounding */
        bool ok = fabsf(m[i] - r[i]) <= ldexpf(fabsf(r[i]), -7) + abs_tol;
        if (!ok && getenv("FK_TEST_VERBOSE")) printf("    %s[%zu]: %.9g vs %.9g\n", what, i, m[i], r[i]);
        within &= ok;
    }
    double rel = fk_test_rel_l2_f32(m, r, n);
    CHECKF(within && rel <= 1e-3 && flips <= n / 50 + 2, "%s: %zu of %zu values differ, rel L2 %.3g", what, flips,
           n, rel);
    printf("  %-22s %zu of %zu bf16 values differ, rel L2 %.3g\n", what, flips, n, rel);
    free(r);
}

static void check_exact(const char *what, const fk_tensor *mine, const fk_st_tensor *ref) {
    if (!mine || !ref) return;
    CHECKF(mine->dtype == ref->dtype && fk_tensor_nbytes(mine) == ref->nbytes &&
               !memcmp(mine->data, ref->data, ref->nbytes),
           "%s: not bit-identical to the reference", what);
}

static void check_close(const char *what, const fk_tensor *mine, const fk_st_tensor *ref, double tol) {
    if (!mine || !ref) return;
    size_t n = numel_st(ref);
    CHECKF((size_t)fk_tensor_numel(mine) == n, "%s: size", what);
    if ((size_t)fk_tensor_numel(mine) != n) return;
    float *r = as_f32(ref);
    double rel = fk_test_rel_l2_f32(mine->data, r, n);
    CHECKF(rel <= tol, "%s: rel L2 %.3g > %.3g", what, rel, tol);
    printf("  %-22s rel L2 %.3g\n", what, rel);
    free(r);
}

static void run_case(fk_context *ctx, const fk_st_file *f, const cJSON *c) {
    const char *name = c->string;
    char key[64];
#define K(s) (snprintf(key, sizeof(key), "%s.%s", name, s), key)
    const cJSON *flux = cJSON_GetObjectItem(c, "flux");
    fk_pipeline_files files = {0};
    bool dev = flux && !strcmp(flux->valuestring, "dev");
    CHECK(fk_pipeline_files_resolve(ctx, NULL, dev ? DEV_W : SCHNELL_W, AE_W, CLIP_W, T5_W, &files) == FK_OK);
    fk_pipeline_params p;
    fk_pipeline_params_init(&p);
    p.prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
    p.width = cJSON_GetObjectItem(c, "width")->valueint;
    p.height = cJSON_GetObjectItem(c, "height")->valueint;
    p.steps = cJSON_GetObjectItem(c, "steps")->valueint;
    p.guidance = (float)cJSON_GetObjectItem(c, "guidance")->valuedouble;
    p.seed = (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble;
    /* t5 length and shift: the model defaults must give the reference's */
    const cJSON *neg = cJSON_GetObjectItem(c, "negative");
    if (neg) {
        p.negative_prompt = neg->valuestring;
        p.cfg_scale = (float)cJSON_GetObjectItem(c, "cfg_scale")->valuedouble;
    }
    fk_image init = {0};
    const cJSON *strength = cJSON_GetObjectItem(c, "strength");
    if (strength) {
        CHECKF(fk_image_read(ctx, "tests/data/pipeline/init-24x32.png", &init, NULL) == FK_OK, "%s",
               fk_context_error(ctx));
        const fk_st_tensor *iu = need(f, K("init_u8"));
        CHECK(iu && init.data && iu->nbytes == (uint64_t)init.width * init.height * 3 &&
              !memcmp(iu->data, init.data, iu->nbytes));
        p.init_image = &init;
        p.strength = strength->valuedouble;
        p.width = p.height = 0; /* default: from the init image (24x32 → 96x128 with the 2x tiny AE) */
    }
    capture cap = {0};
    p.dbg = on_dbg;
    p.dbg_user = &cap;
    fk_image img = {0};
    fk_pipeline_report rep;
    fk_status st = fk_pipeline_generate(ctx, &files, &p, &img, &rep);
    CHECKF(st == FK_OK, "%s: %s", name, fk_context_error(ctx));
    if (st == FK_OK) {
        printf("case %s: %dx%d → %dx%d, %d steps (from %d), T5 %d, shift %d\n", name, rep.width, rep.height,
               img.width, img.height, rep.steps_run, rep.t_start, rep.t5_len, rep.shift);
        CHECK(rep.width == cJSON_GetObjectItem(c, "width")->valueint &&
              rep.height == cJSON_GetObjectItem(c, "height")->valueint);
        CHECK(rep.t5_len == cJSON_GetObjectItem(c, "t5_len")->valueint);
        CHECK(rep.shift == cJSON_IsTrue(cJSON_GetObjectItem(c, "shift")));
        if (strength) CHECK(rep.t_start == cJSON_GetObjectItem(c, "t_start")->valueint);
        check_exact("clip_ids", cap_get(&cap, "clip_ids"), need(f, K("clip_ids")));
        check_exact("t5_ids", cap_get(&cap, "t5_ids"), need(f, K("t5_ids")));
        check_exact("noise", cap_get(&cap, "noise"), need(f, K("noise")));
        check_exact("timesteps", cap_get(&cap, "timesteps"), need(f, K("timesteps")));
        check_text("vec", cap_get(&cap, "vec"), need(f, K("vec")));
        check_text("txt", cap_get(&cap, "txt"), need(f, K("txt")));
        if (neg) {
            check_text("neg_vec", cap_get(&cap, "neg_vec"), need(f, K("neg_vec")));
            check_text("neg_txt", cap_get(&cap, "neg_txt"), need(f, K("neg_txt")));
        }
        if (strength) check_close("init_z", cap_get(&cap, "init_z"), need(f, K("init_z")), 1e-5);
        check_close("x0", cap_get(&cap, "x0"), need(f, K("x0")), strength ? 1e-5 : 0);
        check_close("final", cap_get(&cap, "final"), need(f, K("final")), 1e-3);
        check_close("decode.output", cap_get(&cap, "decode.output"), need(f, K("decode.output")), 1e-3);
        const fk_st_tensor *ut = need(f, K("image_u8"));
        if (ut && img.data && ut->nbytes == (uint64_t)img.width * img.height * 3) {
            size_t nd = 0;
            int mx = u8_diff(img.data, ut->data, ut->nbytes, &nd);
            printf("  image: max |Δ| %d, %zu of %llu values differ\n", mx, nd, (unsigned long long)ut->nbytes);
            CHECKF(mx <= 1 && nd * 100 <= ut->nbytes, "%s: image max |Δ| %d, %zu differ", name, mx, nd);
        } else {
            CHECKF(0, "%s: image size %dx%d", name, img.width, img.height);
        }
    }
#undef K
    cap_free(&cap);
    fk_image_free(&img);
    fk_image_free(&init);
    fk_pipeline_files_free(&files);
}

static void test_e2e(fk_context *ctx) {
    fk_st_file *f = NULL;
    if (fk_st_open(ctx, E2E, &f) != FK_OK) {
        CHECKF(0, "%s", fk_context_error(ctx));
        return;
    }
    cJSON *cases = cJSON_Parse(fk_st_meta(f, "cases"));
    CHECK(cases && cJSON_GetArraySize(cases) == 4);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) run_case(ctx, f, c);
    cJSON_Delete(cases);
    fk_st_close(f);
}

/* ---- 3. pieces ----------------------------------------------------------------------- */

static void test_pack(void) {
    enum { C = 16, H = 6, W = 4 };
    float lat[C * H * W], tok[C * H * W], back[C * H * W], ids[(H / 2) * (W / 2) * 3];
    for (int i = 0; i < C * H * W; i++) lat[i] = (float)i;
    fk_pipeline_pack(lat, C, H, W, tok);
    /* naive: token (i, j), feature c·4 + ph·2 + pw = latent[c][2i + ph][2j + pw] */
    bool ok = true;
    for (int i = 0; i < H / 2; i++)
        for (int j = 0; j < W / 2; j++)
            for (int c = 0; c < C; c++)
                for (int ph = 0; ph < 2; ph++)
                    for (int pw = 0; pw < 2; pw++)
                        ok &= tok[(i * (W / 2) + j) * 64 + c * 4 + ph * 2 + pw] ==
                              lat[(c * H + 2 * i + ph) * W + 2 * j + pw];
    CHECK(ok);
    fk_pipeline_unpack(tok, C, H, W, back);
    CHECK(!memcmp(lat, back, sizeof(lat)));
    fk_pipeline_img_ids(H, W, ids);
    CHECK(ids[0] == 0 && ids[3 * 3 + 1] == 1 && ids[3 * 3 + 2] == 1 && ids[5 * 3 + 1] == 2 && ids[5 * 3 + 0] == 0);
}

static void test_img2img_start(void) {
    /* diffusers get_timesteps in Python floats: t_start = int(max(n − min(n·s, n), 0)) */
    static const struct { int n; double s; int t; } tab[] = {
        {1, 0.05, 0}, {2, 0.05, 1}, {2, 0.6, 0},  {3, 0.5, 1},   {4, 0.3, 2},   {4, 0.6, 1},  {4, 0.75, 1},
        {4, 0.8, 0},  {5, 0.6, 2},  {5, 0.8, 1},  {7, 0.75, 1},  {10, 0.1, 9},  {10, 0.3, 7}, {10, 0.33, 6},
        {10, 0.6, 4}, {10, 0.8, 2}, {10, 0.9, 1}, {10, 0.95, 0}, {20, 0.7, 6},  {20, 0.8, 4}, {28, 0.6, 11},
        {28, 0.7, 8}, {50, 0.1, 45}, {50, 0.3, 35}, {50, 0.6, 20}, {50, 0.75, 12}, {50, 0.95, 2}, {50, 1.0, 0},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        int t = fk_pipeline_img2img_start(tab[i].n, tab[i].s);
        CHECKF(t == tab[i].t, "steps %d strength %g: t_start %d, expected %d", tab[i].n, tab[i].s, t, tab[i].t);
    }
}

static void test_to_image(fk_context *ctx) {
    /* clamp, then 127.5·(x + 1) truncated; NaN → 0 */
    float v[3] = {-2.0f, 1.5f, NAN};
    float px[3 * 3];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 3; i++) px[c * 3 + i] = v[i];
    px[1 * 3 + 0] = 0.0f;        /* 127.5 → 127 (truncated, not rounded) */
    px[2 * 3 + 0] = 0.99607843f; /* 127.5·1.99607843 = 254.499... → 254 */
    fk_tensor x = fk_view4(FK_F32, px, 1, 3, 1, 3);
    fk_image img;
    CHECK(fk_pipeline_to_image(ctx, &x, &img) == FK_OK);
    CHECK(img.data[0] == 0 && img.data[1] == 127 && img.data[2] == 254); /* pixel 0: R G B */
    CHECK(img.data[3] == 255 && img.data[6] == 0);
    fk_image_free(&img);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "wb");
    if (f) fclose(f);
}

static void test_files(fk_context *ctx) {
    char dir[] = "/tmp/fk_test_pipeline_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char p[1024], q[1024];
    fk_pipeline_files fl;
    /* nothing there: the message names the role and the usual file names */
    CHECK(fk_pipeline_files_resolve(ctx, dir, NULL, NULL, NULL, NULL, &fl) == FK_ERR_IO);
    CHECKF(strstr(fk_context_error(ctx), "flux1-dev.safetensors") && strstr(fk_context_error(ctx), "--model"), "%s",
           fk_context_error(ctx));
    snprintf(p, sizeof(p), "%s/flux1-schnell.safetensors", dir);
    touch(p);
    snprintf(p, sizeof(p), "%s/vae", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/vae/ae.safetensors", dir);
    touch(p);
    snprintf(p, sizeof(p), "%s/clip_l.safetensors", dir);
    touch(p);
    CHECK(fk_pipeline_files_resolve(ctx, dir, NULL, NULL, NULL, NULL, &fl) == FK_ERR_IO);
    CHECKF(strstr(fk_context_error(ctx), "t5xxl_fp16.safetensors") && strstr(fk_context_error(ctx), "--t5"), "%s",
           fk_context_error(ctx));
    snprintf(p, sizeof(p), "%s/text_encoders", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/text_encoders/t5xxl_fp8_e4m3fn.safetensors", dir);
    touch(p);
    CHECKF(fk_pipeline_files_resolve(ctx, dir, NULL, NULL, NULL, NULL, &fl) == FK_OK, "%s", fk_context_error(ctx));
    snprintf(q, sizeof(q), "%s/vae/ae.safetensors", dir);
    CHECK(fl.model && strstr(fl.model, "flux1-schnell") && fl.ae && !strcmp(fl.ae, q) && strstr(fl.t5, "fp8"));
    CHECK(!fl.clip_tokenizer && !fl.t5_tokenizer);
    fk_pipeline_files_free(&fl);
    /* explicit paths win; a missing explicit path is named */
    CHECK(fk_pipeline_files_resolve(ctx, dir, DEV_W, NULL, NULL, NULL, &fl) == FK_OK);
    CHECK(fl.model && !strcmp(fl.model, DEV_W));
    fk_pipeline_files_free(&fl);
    CHECK(fk_pipeline_files_resolve(ctx, dir, NULL, NULL, "/nonexistent/clip.safetensors", NULL, &fl) == FK_ERR_IO);
    CHECK(strstr(fk_context_error(ctx), "--clip") && strstr(fk_context_error(ctx), "clip_l.safetensors"));
    /* two transformers: ambiguous */
    snprintf(p, sizeof(p), "%s/flux-mini.safetensors", dir);
    touch(p);
    CHECK(fk_pipeline_files_resolve(ctx, dir, NULL, NULL, NULL, NULL, &fl) == FK_ERR_ARG);
    CHECK(strstr(fk_context_error(ctx), "--model") != NULL);
    /* no folder, no files */
    CHECK(fk_pipeline_files_resolve(ctx, NULL, NULL, NULL, NULL, NULL, &fl) == FK_ERR_ARG);
    /* a diffusers folder */
    char ddir[256];
    snprintf(ddir, sizeof(ddir), "%s/diff", dir);
    mkdir(ddir, 0755);
    const char *subs[] = {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer_2"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "%s/%s", ddir, subs[i]);
        mkdir(p, 0755);
    }
    snprintf(p, sizeof(p), "%s/tokenizer_2/spiece.model", ddir);
    touch(p);
    snprintf(p, sizeof(p), "%s/model_index.json", ddir);
    touch(p);
    CHECKF(fk_pipeline_files_resolve(ctx, ddir, NULL, NULL, NULL, NULL, &fl) == FK_OK, "%s", fk_context_error(ctx));
    CHECK(fl.model && strstr(fl.model, "/transformer") && strstr(fl.t5, "text_encoder_2") && fl.t5_tokenizer &&
          !fl.clip_tokenizer);
    fk_pipeline_files_free(&fl);
    /* wrong file for a role: the loader's message plus what was expected */
    CHECK(fk_pipeline_files_resolve(ctx, NULL, DEV_W, AE_W, T5_W, T5_W, &fl) == FK_OK);
    fk_pipeline_params prm;
    fk_pipeline_params_init(&prm);
    prm.prompt = "x";
    prm.width = prm.height = 64;
    prm.steps = 1;
    fk_image img;
    CHECK(fk_pipeline_generate(ctx, &fl, &prm, &img, NULL) != FK_OK);
    CHECKF(strstr(fk_context_error(ctx), "--clip") && strstr(fk_context_error(ctx), "clip_l.safetensors"), "%s",
           fk_context_error(ctx));
    CHECK(img.data == NULL);
    fk_pipeline_files_free(&fl);
    CHECK(fk_pipeline_files_resolve(ctx, NULL, CLIP_W, AE_W, CLIP_W, T5_W, &fl) == FK_OK);
    CHECK(fk_pipeline_generate(ctx, &fl, &prm, &img, NULL) != FK_OK);
    CHECKF(strstr(fk_context_error(ctx), "--model") && strstr(fk_context_error(ctx), "FLUX transformer"), "%s",
           fk_context_error(ctx));
    fk_pipeline_files_free(&fl);
    /* bad parameters */
    CHECK(fk_pipeline_files_resolve(ctx, NULL, DEV_W, AE_W, CLIP_W, T5_W, &fl) == FK_OK);
    prm.width = 100;
    CHECK(fk_pipeline_generate(ctx, &fl, &prm, &img, NULL) == FK_ERR_ARG);
    CHECK(strstr(fk_context_error(ctx), "--width 100") != NULL);
    fk_pipeline_files_free(&fl);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_hash_and_determinism(fk_context *ctx) {
    char h1[13], h2[13], h3[13];
    CHECK(fk_pipeline_model_hash(ctx, DEV_W, h1) == FK_OK);
    CHECK(fk_pipeline_model_hash(ctx, DEV_W, h2) == FK_OK);
    CHECK(fk_pipeline_model_hash(ctx, SCHNELL_W, h3) == FK_OK);
    CHECK(strlen(h1) == 12 && !strcmp(h1, h2) && strcmp(h1, h3));
    fk_pipeline_model_info info;
    CHECK(fk_pipeline_model_info_get(ctx, DEV_W, &info) == FK_OK);
    CHECK(info.default_steps == 50 && info.default_shift && info.default_t5_len == 512);
    CHECK(fk_pipeline_model_info_get(ctx, SCHNELL_W, &info) == FK_OK);
    CHECK(info.default_steps == 4 && !info.default_shift && info.default_t5_len == 256);

    /* same seed → identical pixels, other seed → other pixels (2 steps, small) */
    fk_pipeline_files fl;
    CHECK(fk_pipeline_files_resolve(ctx, NULL, SCHNELL_W, AE_W, CLIP_W, T5_W, &fl) == FK_OK);
    fk_pipeline_params p;
    fk_pipeline_params_init(&p);
    p.prompt = "determinism";
    p.width = 64;
    p.height = 48;
    p.steps = 2;
    p.seed = 5;
    fk_image a, b, c;
    CHECK(fk_pipeline_generate(ctx, &fl, &p, &a, NULL) == FK_OK);
    CHECK(fk_pipeline_generate(ctx, &fl, &p, &b, NULL) == FK_OK);
    p.seed = 6;
    CHECK(fk_pipeline_generate(ctx, &fl, &p, &c, NULL) == FK_OK);
    size_t n = (size_t)a.width * a.height * 3;
    CHECK(a.data && b.data && c.data && !memcmp(a.data, b.data, n) && memcmp(a.data, c.data, n));
    fk_image_free(&a);
    fk_image_free(&b);
    fk_image_free(&c);
    fk_pipeline_files_free(&fl);
}

int main(void) {
    fk_context *ctx = fk_context_create(1);
    test_pack();
    test_img2img_start();
    test_to_image(ctx);
    test_pipeline_tiny(ctx, "tests/data/flux/pipeline-tiny.io.f32.safetensors");
    test_pipeline_tiny(ctx, "tests/data/flux/pipeline-tiny.io.f64.safetensors");
    test_e2e(ctx);
    test_files(ctx);
    test_hash_and_determinism(ctx);
    fk_context_free(ctx);
    return fk_test_finish("test_pipeline");
}
