/* fluxkit bench clip | t5: time a text encoder on a synthetic prompt of --len
 * tokens (default: 77 for CLIP, 512 for T5, FLUX.1-dev's padding) and print a
 * small table and one JSON line: load time, encode time of each repeat,
 * GFLOP/s, weight bytes (mapped, in their stored dtype), activation bytes, peak
 * RSS, and the RSS after fk_*_free (the encoders are released before denoising
 * in the pipeline, so that number is what stays resident).
 *
 * FLOPs counted: 2·M·N·K for every linear, 4·L²·H·D for the attention
 * (scores and weighted sum; CLIP's causal mask is not discounted); norms and
 * activations are not counted. */
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"
#include "cli/cli_profile.h"
#include "cli/cli_util.h"
#include "model/clip.h"
#include "model/t5.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct fk_bench_text_opts {
    const char *weights;
    long len;
    long repeat;
    long threads;
    int precision;
    const char *device; /* --device, NULL: the CPU */
    bool profile;
} fk_bench_text_opts;

static void fk_bench_text_usage(FILE *f, const char *comp) {
    fprintf(f,
            "usage: fluxkit bench %s --weights W [--len N] [--repeat N] [--threads N]\n"
            "                        [--precision bf16|f32] [--profile]\n"
            "\n"
            "Encode a synthetic prompt of N tokens (default %s) with the %s text encoder and print\n"
            "load and encode times, GFLOP/s, weight / activation bytes and peak memory, then a\n"
            "JSON line.\n"
            "\n"
            "options:\n"
            "  --weights W    checkpoint (file, index or folder)\n"
            "  --len N        tokens%s\n"
            "  --repeat N     encodes to time (default 2; the first includes page faults)\n"
            "  --threads N    CPU threads (default: all)\n"
            "  --device D     cpu (default), cuda, cuda:N or devsim (see generate --help)\n"
            "  --precision P  bf16 (default, as generate: AMX tiles, f32 accumulation) or f32\n"
            "  --profile      time every op of the encodes after the first (ms, share,\n"
            "                 TFLOP/s of the products, GB/s of the rest)\n"
            "  -h, --help     this message\n",
            comp, !strcmp(comp, "clip") ? "77" : "512", comp,
            !strcmp(comp, "clip") ? " (at most max_position_embeddings, 77 for CLIP-L)" : "");
}

static int fk_bench_text_parse(const char *comp, int argc, char **argv, fk_bench_text_opts *o) {
    static const struct option longopts[] = {
        {"weights", required_argument, NULL, 'w'}, {"len", required_argument, NULL, 'l'},
        {"repeat", required_argument, NULL, 'r'},  {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},          {"precision", required_argument, NULL, 'P'},
        {"profile", no_argument, NULL, 'R'},       {"device", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->precision = FK_PREC_BF16;
    o->len = !strcmp(comp, "clip") ? 77 : 512;
    o->repeat = 2;
    fk_cli_getopt_reset();
    int c;
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "bench %s", comp);
    while ((c = getopt_long(argc, argv, ":hw:", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': o->weights = optarg; break;
        case 'l':
            if (!fk_cli_parse_int("--len", optarg, 1, 65536, &o->len)) return FK_EXIT_USAGE;
            break;
        case 'r':
            if (!fk_cli_parse_int("--repeat", optarg, 1, 1000, &o->repeat)) return FK_EXIT_USAGE;
            break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &o->threads)) return FK_EXIT_USAGE;
            break;
        case 'P':
            if (!fk_cli_parse_precision("--precision", optarg, &o->precision)) return FK_EXIT_USAGE;
            break;
        case 'R': o->profile = true; break;
        case 'D':
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            o->device = optarg;
            break;
        case 'h': fk_bench_text_usage(stdout, comp); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure(cmd, argv, c);
        }
    }
    if (optind < argc) return fk_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->weights || !o->weights[0]) return fk_cli_usage(cmd, "missing --weights");
    return -1; /* continue */
}

/* Deterministic prompt-like ids: CLIP [bos, words..., eos], T5 [words..., </s>]. */
static void fk_bench_text_ids(int64_t *ids, int n, int vocab, bool clip) {
    for (int i = 0; i < n; i++) ids[i] = (int64_t)((300 + (uint64_t)i * 7919u) % (uint64_t)(vocab > 400 ? vocab - 400 : 1));
    if (clip) {
        ids[0] = vocab >= 2 ? vocab - 2 : 0; /* 49406 <|startoftext|> */
        ids[n - 1] = vocab - 1;              /* 49407 <|endoftext|> */
    } else {
        ids[n - 1] = vocab > 1 ? 1 : 0;      /* </s> */
    }
}

/* Non-finite count and RMS of an output, printed so a broken run is visible. */
static void fk_bench_text_sanity(const char *what, const float *x, size_t n) {
    size_t bad = 0;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            bad++;
        else
            ss += (double)x[i] * x[i];
    }
    printf("  %-22s %zu values, %zu non-finite, rms %.4g\n", what, n, bad, n > bad ? sqrt(ss / (double)(n - bad)) : 0.0);
}

/* The op profile of the encodes after the first (of the only one if there is one). */
static void fk_bench_text_profile(const fk_backend *prof, const double *t_enc, int repeat) {
    double per = repeat > 1 ? (double)(repeat - 1) : 1.0, wall = 0;
    for (int r = repeat > 1 ? 1 : 0; r < repeat; r++) wall += t_enc[r];
    printf("  profile per encode (%s):\n", repeat > 1 ? "encodes after the first" : "the only one");
    fk_cli_profile_print(stdout, prof, per, wall);
}

static void fk_bench_text_report(const char *comp, const char *weights, const char *model, const char *wdtype,
                                 int len, int threads, double t_load, const double *t_enc, int repeat,
                                 double gflop, uint64_t wbytes, uint64_t abytes, uint64_t peak, uint64_t after) {
    char b1[32], b2[32], b3[32], b4[32];
    double best = t_enc[0];
    for (int i = 1; i < repeat; i++)
        if (t_enc[i] < best) best = t_enc[i];
    printf("fluxkit bench %s: %s (%s, %s), %d tokens, %d threads, CPU backend, %d CPUs\n", comp, weights,
           model, wdtype, len, threads, fk_cpu_count());
    printf("  %-22s %10.3f s\n", "load (map + check)", t_load);
    for (int i = 0; i < repeat; i++)
        printf("  encode #%-13d %10.3f s   %8.1f GFLOP/s   %8.1f tokens/s\n", i + 1, t_enc[i], gflop / t_enc[i],
               len / t_enc[i]);
    printf("  %-22s %10.1f GFLOP\n", "work per encode", gflop);
    printf("  %-22s %s mapped, activations %s\n", "memory", fk_cli_fmt_bytes(wbytes, b1, sizeof(b1)),
           fk_cli_fmt_bytes(abytes, b2, sizeof(b2)));
    printf("  %-22s %s peak RSS, %s after free\n", "process", fk_cli_fmt_bytes(peak, b3, sizeof(b3)),
           fk_cli_fmt_bytes(after, b4, sizeof(b4)));
    printf("{\"bench\": \"%s\", \"model\": \"%s\", \"weights_dtype\": \"%s\", \"len\": %d, \"threads\": %d, "
           "\"load_s\": %.4f, \"encode_s\": %.4f, \"encode_first_s\": %.4f, \"gflop\": %.2f, \"gflops\": %.2f, "
           "\"weight_bytes\": %llu, \"activation_bytes\": %llu, \"peak_rss\": %llu, \"rss_after_free\": %llu}\n",
           comp, model, wdtype, len, threads, t_load, best, t_enc[0], gflop, gflop / best, (unsigned long long)wbytes,
           (unsigned long long)abytes, (unsigned long long)peak, (unsigned long long)after);
}

int fk_bench_clip(int argc, char **argv) {
    fk_bench_text_opts o;
    int rc = fk_bench_text_parse("clip", argc, argv, &o);
    if (rc >= 0) return rc;
    fk_context *ctx = fk_context_create((int)o.threads);
    fk_backend *be0 = ctx ? fk_cli_backend_open(o.device, fk_context_threads(ctx), o.precision) : NULL;
    fk_backend *prof = o.profile && be0 ? fk_backend_profile_wrap(be0) : NULL;
    fk_backend *be = prof ? prof : be0;
    if (!ctx || !be0 || (o.profile && !prof)) {
        if (!ctx || be0) fk_cli_error("out of memory");
        if (prof) prof->destroy(prof);
        fk_backend_close(be0);
        fk_context_free(ctx);
        return FK_EXIT_ERROR;
    }
    fk_clip *c = NULL;
    int64_t *ids = NULL;
    float *hid = NULL, *pool = NULL;
    double *t_enc = NULL;
    double t0 = fk_time();
    rc = FK_EXIT_OK;
    if (fk_clip_load(ctx, be, o.weights, &c) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    double t_load = fk_time() - t0;
    const fk_clip_config *g = fk_clip_get_config(c);
    if (o.len > g->max_positions) {
        fk_cli_error("--len %ld exceeds the model's %d positions (max_position_embeddings)", o.len, g->max_positions);
        rc = FK_EXIT_USAGE;
        goto done;
    }
    int n = (int)o.len;
    ids = malloc(sizeof(int64_t) * (size_t)n);
    hid = malloc(sizeof(float) * (size_t)n * (size_t)g->width);
    pool = malloc(sizeof(float) * (size_t)g->width);
    t_enc = calloc((size_t)o.repeat, sizeof(double));
    if (!ids || !hid || !pool || !t_enc) {
        fk_cli_error("out of memory");
        rc = FK_EXIT_ERROR;
        goto done;
    }
    fk_bench_text_ids(ids, n, g->vocab_size, true);
    for (int r = 0; r < o.repeat && rc == FK_EXIT_OK; r++) {
        fk_tensor th = fk_view2(FK_F32, hid, n, g->width), tp = fk_view1(FK_F32, pool, g->width);
        double t1 = fk_time();
        if (prof && r == 1) fk_backend_profile_reset(prof); /* profile the repeats after the first */
        if (fk_clip_encode(ctx, c, ids, n, &th, &tp) != FK_OK) rc = fk_cli_fail(ctx);
        t_enc[r] = fk_time() - t1;
    }
    if (rc == FK_EXIT_OK) {
        double W = g->width, I = g->mlp_hidden, L = n;
        double gflop = (g->layers * (2.0 * L * (4 * W * W + 2 * W * I) + 4.0 * L * L * W)) / 1e9;
        uint64_t wbytes = fk_clip_weight_bytes(c), abytes = fk_clip_buffer_bytes(c), peak = fk_peak_rss();
        char wdt[24];
        snprintf(wdt, sizeof(wdt), "%s weights", fk_dtype_name(fk_clip_linear_dtype(c)));
        char model[32];
        snprintf(model, sizeof(model), "%s", fk_clip_config_name(g));
        int width = g->width;
        fk_clip_free(c); /* g points into c: not used below */
        c = NULL;
        fk_bench_text_report("clip", o.weights, model, wdt, n, fk_context_threads(ctx), t_load, t_enc,
                             (int)o.repeat, gflop, wbytes, abytes, peak, fk_current_rss());
        fk_bench_text_sanity("last_hidden_state", hid, (size_t)n * (size_t)width);
        fk_bench_text_sanity("pooler_output", pool, (size_t)width);
        if (prof) fk_bench_text_profile(prof, t_enc, (int)o.repeat);
    }
done:
    free(t_enc);
    free(ids);
    free(hid);
    free(pool);
    fk_clip_free(c);
    if (prof) prof->destroy(prof);
    fk_backend_close(be0);
    fk_context_free(ctx);
    return rc;
}

int fk_bench_t5(int argc, char **argv) {
    fk_bench_text_opts o;
    int rc = fk_bench_text_parse("t5", argc, argv, &o);
    if (rc >= 0) return rc;
    fk_context *ctx = fk_context_create((int)o.threads);
    fk_backend *be0 = ctx ? fk_cli_backend_open(o.device, fk_context_threads(ctx), o.precision) : NULL;
    fk_backend *prof = o.profile && be0 ? fk_backend_profile_wrap(be0) : NULL;
    fk_backend *be = prof ? prof : be0;
    if (!ctx || !be0 || (o.profile && !prof)) {
        if (!ctx || be0) fk_cli_error("out of memory");
        if (prof) prof->destroy(prof);
        fk_backend_close(be0);
        fk_context_free(ctx);
        return FK_EXIT_ERROR;
    }
    fk_t5 *t = NULL;
    int64_t *ids = NULL;
    float *hid = NULL;
    double *t_enc = NULL;
    double t0 = fk_time();
    rc = FK_EXIT_OK;
    if (fk_t5_load(ctx, be, o.weights, &t) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    double t_load = fk_time() - t0;
    const fk_t5_config *g = fk_t5_get_config(t);
    int n = (int)o.len;
    ids = malloc(sizeof(int64_t) * (size_t)n);
    hid = malloc(sizeof(float) * (size_t)n * (size_t)g->d_model);
    t_enc = calloc((size_t)o.repeat, sizeof(double));
    if (!ids || !hid || !t_enc) {
        fk_cli_error("out of memory");
        rc = FK_EXIT_ERROR;
        goto done;
    }
    fk_bench_text_ids(ids, n, g->vocab_size, false);
    for (int r = 0; r < o.repeat && rc == FK_EXIT_OK; r++) {
        fk_tensor th = fk_view2(FK_F32, hid, n, g->d_model);
        double t1 = fk_time();
        if (prof && r == 1) fk_backend_profile_reset(prof); /* profile the repeats after the first */
        if (fk_t5_encode(ctx, t, ids, n, &th) != FK_OK) rc = fk_cli_fail(ctx);
        t_enc[r] = fk_time() - t1;
    }
    if (rc == FK_EXIT_OK) {
        double d = g->d_model, inner = (double)g->heads * g->d_kv, ff = g->d_ff, L = n;
        double gflop = (g->layers * (2.0 * L * (4 * d * inner + 3 * d * ff) + 4.0 * L * L * inner)) / 1e9;
        uint64_t wbytes = fk_t5_weight_bytes(t), abytes = fk_t5_buffer_bytes(t), peak = fk_peak_rss();
        char wdt[48];
        snprintf(wdt, sizeof(wdt), "%s%s linears, %s embedding", fk_t5_scaled_linears(t) ? "scaled " : "",
                 fk_dtype_name(fk_t5_linear_dtype(t)), fk_dtype_name(fk_t5_embedding_dtype(t)));
        char model[32];
        snprintf(model, sizeof(model), "%s", fk_t5_config_name(g));
        int d_model = g->d_model;
        fk_t5_free(t); /* g points into t: not used below */
        t = NULL;
        fk_bench_text_report("t5", o.weights, model, wdt, n, fk_context_threads(ctx), t_load, t_enc, (int)o.repeat,
                             gflop, wbytes, abytes, peak, fk_current_rss());
        fk_bench_text_sanity("last_hidden_state", hid, (size_t)n * (size_t)d_model);
        if (prof) fk_bench_text_profile(prof, t_enc, (int)o.repeat);
    }
done:
    free(t_enc);
    free(ids);
    free(hid);
    fk_t5_free(t);
    if (prof) prof->destroy(prof);
    fk_backend_close(be0);
    fk_context_free(ctx);
    return rc;
}
