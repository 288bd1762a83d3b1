/* fluxkit generate: text-to-image and image-to-image with a FLUX model
 * (src/pipeline/pipeline.h), written as a PNG with its parameters in text
 * chunks. The output appears only when the run succeeded (temporary file,
 * fsync, rename), and an existing file is kept unless --force. */
#include "cli/cli_util.h"
#include "backend/cpu/cpu.h"
#include "io/image.h"
#include "pipeline/pipeline.h"

#include <cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FK_PROMPT_FILE_MAX (1u << 20)

static void fk_gen_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit generate -p PROMPT -o OUT.png (--models DIR | --model F --ae F --clip F --t5 F)\n"
            "                        [options]\n"
            "\n"
            "Text-to-image (and image-to-image with --init-image) with a FLUX.1 model: T5 and CLIP\n"
            "encode the prompt and are released, the transformer denoises the seeded noise with\n"
            "Euler steps on the reference schedule, the autoencoder decodes. The PNG holds the\n"
            "prompt, seed and settings as text chunks.\n"
            "\n"
            "model files:\n"
            "  --models DIR          folder with BFL / ComfyUI files (flux-mini.safetensors,\n"
            "                        flux1-dev.safetensors, flux1-schnell.safetensors, ae.safetensors,\n"
            "                        clip_l.safetensors, t5xxl_fp16.safetensors or\n"
            "                        t5xxl_fp8_e4m3fn.safetensors; also in diffusion_models/, unet/,\n"
            "                        vae/, text_encoders/, clip/) or a diffusers FLUX folder\n"
            "  --model F, --ae F, --clip F, --t5 F   each file explicitly (overrides --models)\n"
            "\n"
            "prompt:\n"
            "  -p, --prompt TEXT     the prompt (UTF-8)\n"
            "  --prompt-file FILE    read the prompt from FILE (UTF-8; trailing newlines dropped)\n"
            "  -n, --negative-prompt TEXT   for true classifier-free guidance (with --cfg-scale)\n"
            "  --cfg-scale S         true CFG scale (> 1: two transformer passes a step; default 1 = off)\n"
            "\n"
            "sampling (defaults follow the model: dev / mini 50 steps, shifted schedule, T5 512;\n"
            "schnell 4 steps, no shift, T5 256):\n"
            "  -W, --width N, -H, --height N   image size, multiples of 16 (default 1024;\n"
            "                        with --init-image: the init image's size)\n"
            "  -s, --steps N         Euler steps\n"
            "  -g, --guidance G      guidance embedding value (default 3.5; ignored by schnell)\n"
            "  -S, --seed N          noise seed, 0 to 2^64-1 (default: random, printed)\n"
            "  --t5-len N            T5 token positions\n"
            "  --shift on|off        resolution-dependent schedule shift\n"
            "  -i, --init-image FILE PNG or JPEG to start from (img2img)\n"
            "  --strength S          img2img: how much to change, (0, 1] (default 0.75)\n"
            "\n"
            "output:\n"
            "  -o, --out FILE        output image\n"
            "  --format png|ppm      file format (default: from the name, else png; ppm has no metadata)\n"
            "  -f, --force           overwrite an existing output file\n"
            "  --json                print a JSON summary on stdout\n"
            "  --vae-tile N          decode in latent tiles of N (0 = never; default: above 1024x1024)\n"
            "  --device D            cpu (default), cuda, cuda:N (an NVIDIA GPU, when built with\n"
            "                        the CUDA toolkit) or devsim (the CPU behind a simulated device:\n"
            "                        checks device hygiene, slow)\n"
            "  -t, --threads N       CPU threads (default: all)\n"
            "  --precision P         bf16 (default: AMX tiles where the CPU has them, f32\n"
            "                        accumulation) or f32 (the reference kernels, slower)\n"
            "  --weight-cache W      auto (default: on from 10 steps), on or off: keep the\n"
            "                        transformer's large weights pre-packed for the bf16\n"
            "                        products (same image, no extra memory; one packing pass\n"
            "                        of 1 to 11 s, then 6 to 10 percent less per step)\n"
            "  -v, --verbose         memory plan, per-phase timings and peak RSS on stderr\n"
            "  -h, --help            this message\n");
}

/* ---- prompt file --------------------------------------------------------------------- */

/* Offset of the first invalid UTF-8 byte, or -1 when s[0..n) is valid. */
static long fk_gen_utf8_error(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return (long)i;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
            return (long)i;
        i += len;
    }
    return -1;
}

/* Read a prompt file: UTF-8 without NUL bytes, trailing newlines removed.
 * Returns a malloc'ed string or NULL after printing the error. */
static char *fk_gen_read_prompt_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fk_cli_error("--prompt-file %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FK_PROMPT_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FK_PROMPT_FILE_MAX + 1, f) : 0;
    bool err = buf ? ferror(f) != 0 : true;
    fclose(f);
    if (err) {
        fk_cli_error("--prompt-file %s: read failed", path);
        free(buf);
        return NULL;
    }
    if (n > FK_PROMPT_FILE_MAX) {
        fk_cli_error("--prompt-file %s: larger than %u bytes", path, FK_PROMPT_FILE_MAX);
        free(buf);
        return NULL;
    }
    size_t skip = (n >= 3 && (unsigned char)buf[0] == 0xef && (unsigned char)buf[1] == 0xbb &&
                   (unsigned char)buf[2] == 0xbf) ? 3 : 0; /* UTF-8 byte order mark */
    long bad = fk_gen_utf8_error((const unsigned char *)buf + skip, n - skip);
    if (bad >= 0) {
        fk_cli_error("--prompt-file %s: not valid UTF-8 text (byte offset %ld)", path, bad + (long)skip);
        free(buf);
        return NULL;
    }
    while (n > skip && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    memmove(buf, buf + skip, n - skip);
    buf[n - skip] = '\0';
    return buf;
}

/* ---- progress and logging ---------------------------------------------------------------- */

typedef struct fk_gen_progress {
    bool enabled;   /* stderr is a terminal */
    bool drawn;     /* a progress line is on screen */
    const char *phase;
    double t_phase; /* start of the phase */
    double t_last;
} fk_gen_progress;

static void fk_gen_clear_line(fk_gen_progress *pr) {
    if (pr->enabled && pr->drawn) {
        fputs("\r\033[K", stderr);
        pr->drawn = false;
    }
}

static void fk_gen_on_progress(void *user, const char *phase, int done, int total) {
    fk_gen_progress *pr = user;
    double now = fk_time();
    if (!pr->phase || strcmp(pr->phase, phase) != 0) {
        pr->phase = phase;
        pr->t_phase = now;
        pr->t_last = 0;
    }
    if (!pr->enabled) return;
    if (done > 0 && done < total && now - pr->t_last < 0.1) return;
    pr->t_last = now;
    const double el = now - pr->t_phase;
    const int width = 24;
    int fill = total > 0 ? (int)((double)width * done / total) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    if (!strcmp(phase, "denoise") && done > 0) {
        double per = el / done, eta = per * (total - done);
        fprintf(stderr, "\r\033[K%-8s [%s] step %d/%d  %.2f s/step  ETA %.0f s", phase, bar, done, total, per, eta);
    } else {
        fprintf(stderr, "\r\033[K%-8s [%s] %d/%d  %.1f s", phase, bar, done, total, el);
    }
    fflush(stderr);
    pr->drawn = true;
}

static void fk_gen_on_log(fk_log_level level, const char *msg, void *user) {
    fk_gen_progress *pr = user;
    static const char *names[] = {"error", "warning", "info", "debug"};
    fk_gen_clear_line(pr);
    fprintf(stderr, "fluxkit: %s: %s\n", names[level], msg);
}

/* ---- seeds, paths ---------------------------------------------------------------------- */

static bool fk_gen_parse_seed(const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (!s || !*s || *s < '0' || *s > '9') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end) return false;
    *out = (uint64_t)v;
    return true;
}

static uint64_t fk_gen_random_seed(void) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &s, sizeof(s));
        close(fd);
        if (r == (ssize_t)sizeof(s)) return s;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s = (uint64_t)ts.tv_sec * UINT64_C(1000000007) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return s;
}

static bool fk_gen_parse_double(const char *opt, const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = (s && *s) ? strtod(s, &end) : 0;
    if (!s || !*s || errno || !end || *end || !isfinite(v)) {
        fprintf(stderr, "fluxkit: option %s: '%s' is not a number\n", opt, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

static bool fk_gen_parse_float(const char *opt, const char *s, float *out) {
    double v;
    if (!fk_gen_parse_double(opt, s, &v)) return false;
    *out = (float)v;
    return true;
}

static const char *fk_gen_basename(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--; /* folder paths "x/transformer/" */
    const char *b = p;
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '/') b = p + i + 1;
    return b;
}

/* The folder of path must exist and be writable. */
static bool fk_gen_out_dir_ok(const char *path) {
    char *d = strdup(path);
    if (!d) return false;
    char *slash = strrchr(d, '/');
    const char *dir = ".";
    if (slash == d)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = d;
    }
    struct stat sb;
    bool ok = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && access(dir, W_OK) == 0;
    if (!ok) fk_cli_error("--out %s: folder '%s' does not exist or is not writable", path, dir);
    free(d);
    return ok;
}

static bool fk_gen_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

/* ---- entry --------------------------------------------------------------------------------- */

typedef struct fk_gen_opts {
    const char *prompt, *prompt_file, *negative, *out, *models, *model, *ae, *clip, *t5, *init, *format;
    long width, height, steps, t5_len, threads, vae_tile;
    float guidance, cfg_scale;
    double strength;
    bool have_seed, force, json, verbose;
    int shift;
    int precision;
    int weight_cache;
    const char *device;
    uint64_t seed;
} fk_gen_opts;

static int fk_gen_parse(int argc, char **argv, fk_gen_opts *o) {
    enum { O_PROMPT_FILE = 256, O_MODELS, O_MODEL, O_AE, O_CLIP, O_T5, O_T5LEN, O_SHIFT, O_STRENGTH, O_FORMAT,
           O_JSON, O_CFG, O_TILE, O_PREC, O_WCACHE, O_DEVICE };
    static const struct option longopts[] = {
        {"prompt", required_argument, NULL, 'p'},      {"prompt-file", required_argument, NULL, O_PROMPT_FILE},
        {"negative-prompt", required_argument, NULL, 'n'}, {"cfg-scale", required_argument, NULL, O_CFG},
        {"out", required_argument, NULL, 'o'},         {"models", required_argument, NULL, O_MODELS},
        {"model", required_argument, NULL, O_MODEL},   {"ae", required_argument, NULL, O_AE},
        {"clip", required_argument, NULL, O_CLIP},     {"t5", required_argument, NULL, O_T5},
        {"width", required_argument, NULL, 'W'},       {"height", required_argument, NULL, 'H'},
        {"steps", required_argument, NULL, 's'},       {"guidance", required_argument, NULL, 'g'},
        {"seed", required_argument, NULL, 'S'},        {"t5-len", required_argument, NULL, O_T5LEN},
        {"shift", required_argument, NULL, O_SHIFT},   {"init-image", required_argument, NULL, 'i'},
        {"strength", required_argument, NULL, O_STRENGTH}, {"format", required_argument, NULL, O_FORMAT},
        {"force", no_argument, NULL, 'f'},             {"json", no_argument, NULL, O_JSON},
        {"vae-tile", required_argument, NULL, O_TILE}, {"threads", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},           {"help", no_argument, NULL, 'h'},
        {"precision", required_argument, NULL, O_PREC},
        {"weight-cache", required_argument, NULL, O_WCACHE},
        {"device", required_argument, NULL, O_DEVICE},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->guidance = NAN;
    o->cfg_scale = 1.0f;
    o->strength = 0.75f;
    o->shift = -1;
    o->vae_tile = -1;
    o->precision = FK_PREC_BF16;
    o->weight_cache = -1;
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":p:n:o:W:H:s:g:S:i:t:fvh", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': o->prompt = optarg; break;
        case O_PROMPT_FILE: o->prompt_file = optarg; break;
        case 'n': o->negative = optarg; break;
        case O_CFG:
            if (!fk_gen_parse_float("--cfg-scale", optarg, &o->cfg_scale)) return FK_EXIT_USAGE;
            if (o->cfg_scale < 1 || o->cfg_scale > 100)
                return fk_cli_usage("generate", "--cfg-scale %s: must be from 1 (off) to 100", optarg);
            break;
        case 'o': o->out = optarg; break;
        case O_MODELS: o->models = optarg; break;
        case O_MODEL: o->model = optarg; break;
        case O_AE: o->ae = optarg; break;
        case O_CLIP: o->clip = optarg; break;
        case O_T5: o->t5 = optarg; break;
        case 'W':
            if (!fk_cli_parse_int("--width", optarg, 16, 16384, &o->width)) return FK_EXIT_USAGE;
            if (o->width % 16) return fk_cli_usage("generate", "--width %ld is not a multiple of 16", o->width);
            break;
        case 'H':
            if (!fk_cli_parse_int("--height", optarg, 16, 16384, &o->height)) return FK_EXIT_USAGE;
            if (o->height % 16) return fk_cli_usage("generate", "--height %ld is not a multiple of 16", o->height);
            break;
        case 's':
            if (!fk_cli_parse_int("--steps", optarg, 1, FK_PIPELINE_MAX_STEPS, &o->steps)) return FK_EXIT_USAGE;
            break;
        case 'g':
            if (!fk_gen_parse_float("--guidance", optarg, &o->guidance)) return FK_EXIT_USAGE;
            if (o->guidance < 0 || o->guidance > 100)
                return fk_cli_usage("generate", "--guidance %s: must be from 0 to 100", optarg);
            break;
        case 'S':
            if (!fk_gen_parse_seed(optarg, &o->seed))
                return fk_cli_usage("generate", "--seed '%s': expected a decimal integer from 0 to 2^64-1", optarg);
            o->have_seed = true;
            break;
        case O_T5LEN:
            if (!fk_cli_parse_int("--t5-len", optarg, 1, 4096, &o->t5_len)) return FK_EXIT_USAGE;
            break;
        case O_SHIFT:
            if (!strcmp(optarg, "on") || !strcmp(optarg, "1") || !strcmp(optarg, "true"))
                o->shift = 1;
            else if (!strcmp(optarg, "off") || !strcmp(optarg, "0") || !strcmp(optarg, "false"))
                o->shift = 0;
            else
                return fk_cli_usage("generate", "--shift '%s': expected on or off", optarg);
            break;
        case 'i': o->init = optarg; break;
        case O_STRENGTH:
            if (!fk_gen_parse_double("--strength", optarg, &o->strength)) return FK_EXIT_USAGE;
            if (!(o->strength > 0 && o->strength <= 1))
                return fk_cli_usage("generate", "--strength %s: must be in (0, 1]", optarg);
            break;
        case O_FORMAT:
            if (strcmp(optarg, "png") && strcmp(optarg, "ppm"))
                return fk_cli_usage("generate", "--format '%s': expected png or ppm", optarg);
            o->format = optarg;
            break;
        case 'f': o->force = true; break;
        case O_JSON: o->json = true; break;
        case O_TILE:
            if (!fk_cli_parse_int("--vae-tile", optarg, 0, 4096, &o->vae_tile)) return FK_EXIT_USAGE;
            break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &o->threads)) return FK_EXIT_USAGE;
            break;
        case 'v': o->verbose = true; break;
        case O_PREC:
            if (!fk_cli_parse_precision("--precision", optarg, &o->precision)) return FK_EXIT_USAGE;
            break;
        case O_WCACHE:
            if (!strcmp(optarg, "auto")) o->weight_cache = -1;
            else if (!strcmp(optarg, "on")) o->weight_cache = 1;
            else if (!strcmp(optarg, "off")) o->weight_cache = 0;
            else
                return fk_cli_usage("generate", "--weight-cache: expected auto, on or off, got '%s'",
                                    optarg);
            break;
        case O_DEVICE:
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            o->device = optarg;
            break;
        case 'h': fk_gen_usage(stdout); return -1;
        default: return fk_cli_getopt_failure("generate", argv, c);
        }
    }
    if (optind < argc) return fk_cli_usage("generate", "unexpected argument '%s'", argv[optind]);
    if (!o->prompt && !o->prompt_file) return fk_cli_usage("generate", "missing the prompt (-p TEXT or --prompt-file FILE)");
    if (o->prompt && o->prompt_file) return fk_cli_usage("generate", "give either -p or --prompt-file, not both");
    if (!o->out || !o->out[0]) return fk_cli_usage("generate", "missing the output file (-o OUT.png)");
    if (o->negative && o->cfg_scale <= 1.0f)
        return fk_cli_usage("generate", "--negative-prompt needs --cfg-scale > 1 (true classifier-free guidance)");
    if (o->prompt && fk_gen_utf8_error((const unsigned char *)o->prompt, strlen(o->prompt)) >= 0)
        return fk_cli_usage("generate", "the prompt is not valid UTF-8");
    if (o->negative && fk_gen_utf8_error((const unsigned char *)o->negative, strlen(o->negative)) >= 0)
        return fk_cli_usage("generate", "the negative prompt is not valid UTF-8");
    if (!o->format) o->format = fk_gen_ends_with(o->out, ".ppm") ? "ppm" : "png";
    return FK_EXIT_OK;
}

static void fk_gen_print_verbose(const fk_pipeline_report *r) {
    char a[32], b[32], c[32], d[32];
    fprintf(stderr, "memory plan (weights are memory-mapped; each model is released after its phase):\n");
    fprintf(stderr, "  T5            weights %-10s buffers %s\n", fk_cli_fmt_bytes(r->t5_weight_bytes, a, sizeof(a)),
            fk_cli_fmt_bytes(r->t5_buffer_bytes, b, sizeof(b)));
    fprintf(stderr, "  CLIP          weights %s\n", fk_cli_fmt_bytes(r->clip_weight_bytes, a, sizeof(a)));
    fprintf(stderr, "  transformer   weights %-10s activations %-10s scratch %s\n",
            fk_cli_fmt_bytes(r->flux_weight_bytes, a, sizeof(a)), fk_cli_fmt_bytes(r->flux_act_bytes, b, sizeof(b)),
            fk_cli_fmt_bytes(r->flux_scratch_bytes, c, sizeof(c)));
    fprintf(stderr, "  autoencoder   weights %-10s activations peak %s (%s)\n",
            fk_cli_fmt_bytes(r->vae_weight_bytes, a, sizeof(a)), fk_cli_fmt_bytes(r->vae_peak_act_bytes, b, sizeof(b)),
            r->vae_tile ? "tiled" : "untiled");
    uint64_t sum = r->t5_weight_bytes + r->clip_weight_bytes + r->flux_weight_bytes + r->vae_weight_bytes;
    fprintf(stderr, "  all weights   %s\n", fk_cli_fmt_bytes(sum, a, sizeof(a)));
    fprintf(stderr, "timings: text %.2f s, denoise %.2f s (%d steps, %.2f s/step), decode %.2f s, total %.2f s\n",
            r->t_text, r->t_denoise, r->steps_run, r->steps_run ? r->t_denoise / r->steps_run : 0.0, r->t_decode,
            r->t_total);
    if (r->t_encode > 0) fprintf(stderr, "         init image encode %.2f s\n", r->t_encode);
    if (r->wcache_bytes)
        fprintf(stderr, "         of the denoise: %s of weights pre-packed in %.2f s\n",
                fk_cli_fmt_bytes(r->wcache_bytes, a, sizeof(a)), r->t_wcache);
    fprintf(stderr, "RSS after text %s, after denoise %s, after decode %s; peak RSS %s\n",
            fk_cli_fmt_bytes(r->rss_after_text, a, sizeof(a)), fk_cli_fmt_bytes(r->rss_after_denoise, b, sizeof(b)),
            fk_cli_fmt_bytes(r->rss_after_decode, c, sizeof(c)), fk_cli_fmt_bytes(r->peak_rss, d, sizeof(d)));
    fprintf(stderr, "backend: %s\n", r->backend_desc);
    if (r->device_peak_bytes)
        fprintf(stderr, "device memory after text %s, after denoise %s, after decode %s; peak %s\n",
                fk_cli_fmt_bytes(r->device_after_text, a, sizeof(a)),
                fk_cli_fmt_bytes(r->device_after_denoise, b, sizeof(b)),
                fk_cli_fmt_bytes(r->device_after_decode, c, sizeof(c)),
                fk_cli_fmt_bytes(r->device_peak_bytes, d, sizeof(d)));
}

/* PNG text metadata: the settings that reproduce the image (no timings, so the
 * same settings give the same bytes). */
static fk_status fk_gen_metadata(fk_context *ctx, const fk_gen_opts *o, const char *prompt,
                                 const fk_pipeline_files *files, const fk_pipeline_report *r, const char *hash,
                                 fk_image_meta *m) {
    char buf[64], sw[64];
    fk_status st = fk_image_meta_add(ctx, m, "prompt", prompt);
#define FK_META(k, fmtv, ...)                                                                                       \
    do {                                                                                                            \
        snprintf(buf, sizeof(buf), fmtv, __VA_ARGS__);                                                              \
        if (st == FK_OK) st = fk_image_meta_add(ctx, m, k, buf);                                                    \
    } while (0)
    if (st == FK_OK && r->true_cfg) st = fk_image_meta_add(ctx, m, "negative_prompt", o->negative ? o->negative : "");
    FK_META("seed", "%llu", (unsigned long long)o->seed);
    FK_META("steps", "%d", r->steps);
    if (r->model.cfg.guidance_embed) FK_META("guidance", "%g", (double)r->guidance); /* schnell has none */
    if (r->true_cfg) FK_META("cfg_scale", "%g", (double)r->cfg_scale);
    FK_META("width", "%d", r->width);
    FK_META("height", "%d", r->height);
    FK_META("sampler", "%s", "euler");
    FK_META("shift", "%s", r->shift ? "on" : "off");
    FK_META("t5_length", "%d", r->t5_len);
    FK_META("precision", "%s", fk_cli_precision_name(o->precision));
    if (st == FK_OK) st = fk_image_meta_add(ctx, m, "model", r->model.name);
    if (st == FK_OK) st = fk_image_meta_add(ctx, m, "model_file", fk_gen_basename(files->model));
    if (st == FK_OK) st = fk_image_meta_add(ctx, m, "model_hash", hash);
    if (o->init) {
        if (st == FK_OK) st = fk_image_meta_add(ctx, m, "init_image", fk_gen_basename(o->init));
        FK_META("strength", "%g", (double)o->strength);
    }
    snprintf(sw, sizeof(sw), "fluxkit %s", fk_version());
    if (st == FK_OK) st = fk_image_meta_add(ctx, m, "Software", sw);
#undef FK_META
    return st;
}

static void fk_gen_print_json(const fk_gen_opts *o, const char *prompt, const fk_pipeline_report *r,
                              const char *hash, const fk_image *img) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return;
    char seed[32];
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "output", o->out);
    cJSON_AddStringToObject(j, "format", o->format);
    cJSON_AddNumberToObject(j, "width", img->width);
    cJSON_AddNumberToObject(j, "height", img->height);
    cJSON_AddStringToObject(j, "prompt", prompt);
    if (r->true_cfg) cJSON_AddStringToObject(j, "negative_prompt", o->negative ? o->negative : "");
    cJSON_AddStringToObject(j, "seed", seed); /* string: exact beyond 2^53 */
    cJSON_AddNumberToObject(j, "steps", r->steps);
    cJSON_AddNumberToObject(j, "steps_run", r->steps_run);
    if (r->model.cfg.guidance_embed)
        cJSON_AddNumberToObject(j, "guidance", r->guidance);
    else
        cJSON_AddNullToObject(j, "guidance");
    cJSON_AddNumberToObject(j, "cfg_scale", r->cfg_scale);
    cJSON_AddBoolToObject(j, "shift", r->shift);
    cJSON_AddNumberToObject(j, "t5_length", r->t5_len);
    if (o->init) {
        cJSON_AddStringToObject(j, "init_image", o->init);
        cJSON_AddNumberToObject(j, "strength", o->strength);
        cJSON_AddNumberToObject(j, "t_start", r->t_start);
    }
    cJSON_AddStringToObject(j, "model", r->model.name);
    cJSON_AddStringToObject(j, "precision", fk_cli_precision_name(o->precision));
    cJSON_AddStringToObject(j, "model_hash", hash);
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    if (t) {
        cJSON_AddNumberToObject(t, "text", r->t_text);
        cJSON_AddNumberToObject(t, "init_encode", r->t_encode);
        cJSON_AddNumberToObject(t, "denoise", r->t_denoise);
        cJSON_AddNumberToObject(t, "weight_cache", r->t_wcache);
        cJSON_AddNumberToObject(t, "decode", r->t_decode);
        cJSON_AddNumberToObject(t, "total", r->t_total);
    }
    cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)r->peak_rss);
    cJSON_AddStringToObject(j, "device", o->device ? o->device : "cpu");
    cJSON_AddStringToObject(j, "backend", r->backend_desc);
    cJSON_AddNumberToObject(j, "device_peak_bytes", (double)r->device_peak_bytes);
    cJSON_AddStringToObject(j, "fluxkit", fk_version());
    char *s = cJSON_PrintUnformatted(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

int fk_cmd_generate(int argc, char **argv) {
    fk_gen_opts o;
    int rc = fk_gen_parse(argc, argv, &o);
    if (rc < 0) return FK_EXIT_OK; /* --help */
    if (rc != FK_EXIT_OK) return rc;

    /* everything cheap first: output location, prompt file, model files, init image */
    if (!o.force && fk_cli_path_exists(o.out)) {
        fk_cli_error("--out %s: exists (use --force to overwrite)", o.out);
        return FK_EXIT_ERROR;
    }
    if (!fk_gen_out_dir_ok(o.out)) return FK_EXIT_ERROR;
    char *prompt_owned = NULL;
    if (o.prompt_file) {
        prompt_owned = fk_gen_read_prompt_file(o.prompt_file);
        if (!prompt_owned) return FK_EXIT_ERROR;
    }
    const char *prompt = prompt_owned ? prompt_owned : o.prompt;
    if (!o.have_seed) o.seed = fk_gen_random_seed();

    fk_context *ctx = fk_context_create((int)o.threads);
    if (!ctx) {
        free(prompt_owned);
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    fk_gen_progress pr = {.enabled = isatty(STDERR_FILENO) != 0};
    fk_context_set_log(ctx, o.verbose ? FK_LOG_INFO : FK_LOG_WARN, fk_gen_on_log, &pr);
    fk_pipeline_files files = {0};
    fk_image init = {0}, img = {0};
    fk_image_meta meta = {0};
    fk_pipeline_report rep;
    memset(&rep, 0, sizeof(rep));
    char hash[13] = "";
    rc = FK_EXIT_OK;
    if (fk_pipeline_files_resolve(ctx, o.models, o.model, o.ae, o.clip, o.t5, &files) != FK_OK ||
        fk_pipeline_model_hash(ctx, files.model, hash) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    if (o.init && fk_image_read(ctx, o.init, &init, NULL) != FK_OK) {
        char msg[FK_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", fk_context_error(ctx));
        fk_cli_error("--init-image: %s", msg);
        rc = FK_EXIT_ERROR;
        goto done;
    }

    if (!o.have_seed && !o.json) fprintf(stderr, "fluxkit: seed %llu (random)\n", (unsigned long long)o.seed);
    fk_pipeline_params p;
    fk_pipeline_params_init(&p);
    p.prompt = prompt;
    p.negative_prompt = o.negative;
    p.width = (int)o.width;
    p.height = (int)o.height;
    p.steps = (int)o.steps;
    p.guidance = o.guidance;
    p.cfg_scale = o.cfg_scale;
    p.seed = o.seed;
    p.t5_len = (int)o.t5_len;
    p.shift = o.shift;
    p.init_image = o.init ? &init : NULL;
    p.strength = o.strength;
    p.vae_tile = (int)o.vae_tile;
    p.precision = o.precision;
    p.weight_cache = o.weight_cache;
    p.device = o.device;
    p.progress = fk_gen_on_progress;
    p.progress_user = &pr;
    fk_status st = fk_pipeline_generate(ctx, &files, &p, &img, &rep);
    fk_gen_clear_line(&pr);
    if (st != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    if (!strcmp(o.format, "ppm"))
        st = fk_image_write_ppm(ctx, o.out, &img, o.force);
    else if ((st = fk_gen_metadata(ctx, &o, prompt, &files, &rep, hash, &meta)) == FK_OK)
        st = fk_image_write_png(ctx, o.out, &img, &meta, o.force);
    if (st != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    if (o.verbose) fk_gen_print_verbose(&rep);
    if (o.json)
        fk_gen_print_json(&o, prompt, &rep, hash, &img);
    else
        printf("%s: %dx%d, %s, seed %llu, %d steps, guidance %g%s%s, %.1f s\n", o.out, img.width, img.height,
               rep.model.name, (unsigned long long)o.seed, rep.steps_run, (double)rep.guidance,
               rep.model.cfg.guidance_embed ? "" : " (not used: no guidance embedding)",
               rep.true_cfg ? " + true CFG" : "", rep.t_total);
done:
    fk_image_meta_free(&meta);
    fk_image_free(&img);
    fk_image_free(&init);
    fk_pipeline_files_free(&files);
    fk_context_free(ctx);
    free(prompt_owned);
    return rc;
}
