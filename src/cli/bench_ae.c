/* fluxkit bench ae: time the autoencoder's decoder (and with --encode its
 * encoder) at one or more square resolutions, untiled and tiled, and print
 * a table and one JSON line per resolution and direction: seconds (the best
 * of --repeat runs, and the first), GFLOP/s, the peak activation memory
 * (fk_vae_opts.peak_act_bytes), the process's peak RSS during the run
 * (reset before each run through /proc/self/clear_refs where available), and
 * the relative L2 difference of the tiled result from the untiled one.
 * --precision picks the CPU backend's mode (bf16 by default, as generate);
 * --profile wraps the backend with the op profiler (backend/profile.h) and
 * prints the per-op table of the runs after the first of each case.
 *
 * Inputs are synthetic: a N(0, 1) latent (decode) and a uniform [−1, 1] image
 * (encode) from the Philox generator with --seed.
 *
 * FLOPs counted: 2·Co·Ci·kh·kw per output pixel of every convolution and
 * 2·L·C² per 1×1 projection; the mid-block attention 4·L²·C (scores and
 * weighted sum). Norms, activations, upsampling are not counted. Tiled runs
 * recompute the overlaps: their GFLOP/s use the untiled FLOP count (useful
 * work per second). */
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"
#include "cli/cli_profile.h"
#include "cli/cli_util.h"
#include "core/rng.h"
#include "model/vae.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define FK_BENCH_AE_MAX_RES 16

static void fk_bench_ae_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit bench ae (--weights FILE | --preset NAME) [--res 512,1024] [--tile N]\n"
            "                        [--overlap N] [--encode] [--json] [--threads N] [--seed N]\n"
            "                        [--precision bf16|f32] [--repeat N] [--profile]\n"
            "\n"
            "Decode a random latent (and with --encode, encode a random image) at each square\n"
            "resolution, untiled and tiled, and print time, GFLOP/s, peak activation bytes, peak\n"
            "RSS and the tiled result's relative L2 difference from the untiled one.\n"
            "\n"
            "options:\n"
            "  --weights FILE   autoencoder checkpoint (ae.safetensors, a diffusers vae/ folder)\n"
            "  --preset NAME    random weights in memory instead: %s\n"
            "  --res LIST       image sides in pixels, comma-separated (default 512,1024)\n"
            "  --tile N         latent tile side (default %d = %d px for FLUX); 0: untiled only\n"
            "  --overlap N      latent overlap between tiles (default %d)\n"
            "  --encode         also benchmark the encoder\n"
            "  --json           print only the JSON lines\n"
            "  --threads N      CPU threads (default: all)\n"
            "  --device D       cpu (default), cuda, cuda:N or devsim (see generate --help)\n"
            "  --seed N         seed of the inputs and of --preset weights (default 0)\n"
            "  --precision P    bf16 (default, as generate: AMX tiles, bf16-rounded operands, f32\n"
            "                   accumulation; f32 kernels where AMX is missing) or f32\n"
            "  --repeat N       runs of each case; the best time is reported (default 1)\n"
            "  --profile        time every op of the runs after the first of each case (ms per\n"
            "                   run, share, TFLOP/s of the products, GB/s of the rest)\n"
            "  -h, --help       this message\n",
            fk_vae_preset_list(), FK_VAE_DEFAULT_TILE, FK_VAE_DEFAULT_TILE * 8, FK_VAE_DEFAULT_OVERLAP);
}

/* ---- FLOPs ------------------------------------------------------------------ */

static double fk_bench_ae_conv(double co, double ci, double k, double h, double w) {
    return 2.0 * co * ci * k * k * h * w;
}

static double fk_bench_ae_block(double cin, double cout, double h, double w) {
    double f = fk_bench_ae_conv(cout, cin, 3, h, w) + fk_bench_ae_conv(cout, cout, 3, h, w);
    if (cin != cout) f += fk_bench_ae_conv(cout, cin, 1, h, w);
    return f;
}

static double fk_bench_ae_mid(double c, double h, double w) {
    double L = h * w;
    return 2 * fk_bench_ae_block(c, c, h, w) + 4 * 2.0 * L * c * c + 4.0 * L * L * c;
}

/* Decoder FLOPs for a latent h × w. */
static double fk_bench_ae_dec_flops(const fk_vae_config *c, double h, double w) {
    double ctop = (double)c->ch * c->ch_mult[c->n_levels - 1];
    double f = fk_bench_ae_conv(ctop, c->z_channels, 3, h, w) + fk_bench_ae_mid(ctop, h, w);
    double cin = ctop;
    for (int i = c->n_levels - 1; i >= 0; i--) {
        double cout = (double)c->ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            f += fk_bench_ae_block(cin, cout, h, w);
            cin = cout;
        }
        if (i > 0) {
            h *= 2, w *= 2;
            f += fk_bench_ae_conv(cout, cout, 3, h, w);
        }
    }
    return f + fk_bench_ae_conv(c->out_ch, cin, 3, h, w);
}

/* Encoder FLOPs for an image H × W. */
static double fk_bench_ae_enc_flops(const fk_vae_config *c, double h, double w) {
    double f = fk_bench_ae_conv(c->ch, c->in_channels, 3, h, w);
    double cin = c->ch;
    for (int i = 0; i < c->n_levels; i++) {
        double cout = (double)c->ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks; j++) {
            f += fk_bench_ae_block(cin, cout, h, w);
            cin = cout;
        }
        if (i + 1 < c->n_levels) {
            h = (double)((int64_t)h / 2), w = (double)((int64_t)w / 2);
            f += fk_bench_ae_conv(cout, cout, 3, h, w);
        }
    }
    return f + fk_bench_ae_mid(cin, h, w) + fk_bench_ae_conv(2.0 * c->z_channels, cin, 3, h, w);
}

/* ---- one measurement ----------------------------------------------------------- */

/* Reset the kernel's peak-RSS counter to the current RSS (Linux). */
static void fk_bench_ae_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

typedef struct fk_bench_ae_opts {
    const char *weights, *preset;
    int res[FK_BENCH_AE_MAX_RES], n_res;
    long tile, overlap, threads, repeat;
    uint64_t seed;
    int precision;
    const char *device; /* --device, NULL: the CPU */
    bool encode, json, profile;
} fk_bench_ae_opts;

/* One case (direction, resolution, tiling) run o->repeat times. */
typedef struct fk_bench_ae_run {
    double best, first; /* seconds */
    double timed;       /* seconds of the profiled runs (all but the first) */
    uint64_t act_peak, rss_peak;
    char *profile_json; /* the "profile" member (--profile --json), malloc'd */
} fk_bench_ae_run;

/* Run a case; *out gets the first run's result (the runs give the same bits).
 * prof (may be NULL): the profiling wrapper that be is, reset after the
 * first run so that the profile covers the rest. */
static fk_status fk_bench_ae_runs(fk_context *ctx, fk_backend *be, fk_backend *prof, const fk_vae *v,
                                  const fk_bench_ae_opts *o, bool encode, const fk_tensor *in, int tile,
                                  fk_tensor *out, fk_bench_ae_run *r) {
    fk_vae_opts vo;
    fk_vae_opts_init(&vo);
    vo.tile = tile;
    vo.overlap = (int)o->overlap;
    vo.peak_act_bytes = &r->act_peak;
    if (prof) fk_backend_profile_reset(prof);
    r->best = 1e300;
    for (long i = 0; i < o->repeat; i++) {
        if (prof && i == 1) fk_backend_profile_reset(prof);
        fk_tensor y = {0};
        fk_bench_ae_reset_peak();
        double t0 = fk_time();
        fk_status st =
            encode ? fk_vae_encode(ctx, be, v, in, &y, &vo) : fk_vae_decode(ctx, be, v, in, &y, &vo);
        double dt = fk_time() - t0;
        if (st) return st;
        uint64_t rss = fk_peak_rss();
        if (rss > r->rss_peak) r->rss_peak = rss;
        if (i == 0) r->first = dt;
        if (i > 0 || o->repeat == 1) r->timed += dt;
        if (dt < r->best) r->best = dt;
        if (i == 0) *out = y;
        else fk_tensor_free(&y);
    }
    return FK_OK;
}

/* The profile of a case's runs: kept as a JSON member (--json) or printed. */
static void fk_bench_ae_profile(fk_backend *prof, const fk_bench_ae_opts *o, fk_bench_ae_run *r) {
    if (!prof) return;
    const double per = o->repeat > 1 ? (double)(o->repeat - 1) : 1.0;
    if (o->json) {
        size_t n = 0;
        FILE *f = open_memstream(&r->profile_json, &n);
        if (f) {
            fk_cli_profile_json(f, prof, per);
            fclose(f);
        }
        return;
    }
    printf("    profile per run (%s):\n", o->repeat > 1 ? "the runs after the first" : "the only run");
    fk_cli_profile_print(stdout, prof, per, r->timed);
}

static double fk_bench_ae_rel(const fk_tensor *a, const fk_tensor *b) {
    const float *x = a->data, *y = b->data;
    double num = 0, den = 0;
    for (int64_t i = 0; i < fk_tensor_numel(a); i++) {
        double d = (double)x[i] - (double)y[i];
        num += d * d;
        den += (double)y[i] * (double)y[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool fk_bench_ae_finite(const fk_tensor *t) {
    const float *x = t->data;
    for (int64_t i = 0; i < fk_tensor_numel(t); i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static void fk_bench_ae_row(int res, const char *what, const char *tiling, const fk_bench_ae_run *r,
                            double flops) {
    char b1[32], b2[32];
    printf("  %5d  %-6s  %-9s %9.2f s %8.2f s %8.1f  %10s  %10s", res, what, tiling, r->best, r->first,
           flops / r->best * 1e-9, fk_cli_fmt_bytes(r->act_peak, b1, sizeof(b1)),
           fk_cli_fmt_bytes(r->rss_peak, b2, sizeof(b2)));
}

static void fk_bench_ae_json_run(const fk_bench_ae_run *r) {
    printf("\"s\": %.3f, \"first_s\": %.3f, \"act_peak_bytes\": %llu, \"peak_rss_bytes\": %llu", r->best,
           r->first, (unsigned long long)r->act_peak, (unsigned long long)r->rss_peak);
    if (r->profile_json) printf(", %s", r->profile_json);
}

/* Untiled and tiled runs of one direction at one resolution; prints. */
static fk_status fk_bench_ae_case(fk_context *ctx, fk_backend *be, fk_backend *prof, const fk_vae *v,
                                  const fk_bench_ae_opts *o, const char *model, int res, bool encode) {
    const fk_vae_config *c = fk_vae_get_config(v);
    const int64_t f = fk_vae_downscale(c), lat = res / f;
    fk_tensor in = {0}, ref = {0}, til = {0};
    fk_status st;
    if (encode) {
        int64_t s[4] = {1, c->in_channels, res, res};
        if ((st = fk_tensor_new(ctx, &in, FK_F32, 4, s, "bench image"))) return st;
        fk_rng_fill_uniform(o->seed, 2, 0, in.data, (size_t)fk_tensor_numel(&in), -1.0f, 1.0f);
    } else {
        int64_t s[4] = {1, c->z_channels, lat, lat};
        if ((st = fk_tensor_new(ctx, &in, FK_F32, 4, s, "bench latent"))) return st;
        fk_rng_fill_normal(o->seed, 1, 0, in.data, (size_t)fk_tensor_numel(&in), 0.0f, 1.0f);
    }
    const double flops = encode ? fk_bench_ae_enc_flops(c, res, res)
                                : fk_bench_ae_dec_flops(c, (double)lat, (double)lat);
    const char *what = encode ? "encode" : "decode";
    fk_bench_ae_run ru = {0}, rt = {0};
    if ((st = fk_bench_ae_runs(ctx, be, prof, v, o, encode, &in, 0, &ref, &ru))) goto done;
    if (!fk_bench_ae_finite(&ref)) {
        st = fk_error(ctx, FK_ERR_INTERNAL, "bench ae: the untiled %s at %d px is not finite", what, res);
        goto done;
    }
    if (!o->json) {
        fk_bench_ae_row(res, what, "untiled", &ru, flops);
        printf("\n");
    }
    fk_bench_ae_profile(prof, o, &ru);
    const bool tiled = o->tile > 0 && lat > o->tile;
    double rel = 0;
    if (tiled) {
        if ((st = fk_bench_ae_runs(ctx, be, prof, v, o, encode, &in, (int)o->tile, &til, &rt))) goto done;
        rel = fk_bench_ae_rel(&til, &ref);
        if (!o->json) {
            char tl[32];
            snprintf(tl, sizeof(tl), "%ld/%ld", o->tile, o->overlap);
            fk_bench_ae_row(res, what, tl, &rt, flops);
            printf("  %.3g\n", rel);
        }
        fk_bench_ae_profile(prof, o, &rt);
    } else if (o->tile > 0 && !o->json) {
        printf("  %5d  %-6s  %-9s (the %lld-pixel latent fits one tile of %ld: same as untiled)\n", res, what,
               "tiled", (long long)lat, o->tile);
    }
    printf("{\"component\": \"ae\", \"model\": \"%s\", \"op\": \"%s\", \"res\": %d, \"threads\": %d, "
           "\"precision\": \"%s\", \"kernels\": \"%s\", \"repeat\": %ld, \"gflop\": %.1f, \"untiled\": {",
           model, what, res, be->n_threads, fk_cli_precision_name(o->precision),
           fk_backend_kernel_name(prof ? fk_backend_profile_inner(prof) : be), o->repeat, flops * 1e-9);
    fk_bench_ae_json_run(&ru);
    printf("}");
    if (tiled) {
        printf(", \"tiled\": {\"tile\": %ld, \"overlap\": %ld, ", o->tile, o->overlap);
        fk_bench_ae_json_run(&rt);
        printf(", \"rel_l2_vs_untiled\": %.6g}", rel);
    }
    printf("}\n");
    fflush(stdout);
done:
    free(ru.profile_json);
    free(rt.profile_json);
    fk_tensor_free(&in);
    fk_tensor_free(&ref);
    fk_tensor_free(&til);
    return st;
}

static bool fk_bench_ae_parse_res(const char *s, fk_bench_ae_opts *o) {
    o->n_res = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 8 || v > 16384 || o->n_res == FK_BENCH_AE_MAX_RES) return false;
        o->res[o->n_res++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return false;
    }
    return o->n_res > 0;
}

int fk_bench_ae(int argc, char **argv) {
    static const struct option longopts[] = {
        {"weights", required_argument, NULL, 'w'}, {"preset", required_argument, NULL, 'p'},
        {"res", required_argument, NULL, 'r'},     {"tile", required_argument, NULL, 'T'},
        {"overlap", required_argument, NULL, 'O'}, {"encode", no_argument, NULL, 'E'},
        {"json", no_argument, NULL, 'J'},          {"threads", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 's'},    {"help", no_argument, NULL, 'h'},
        {"precision", required_argument, NULL, 'P'}, {"repeat", required_argument, NULL, 'n'},
        {"profile", no_argument, NULL, 'R'},       {"device", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    fk_bench_ae_opts o;
    memset(&o, 0, sizeof(o));
    o.tile = FK_VAE_DEFAULT_TILE;
    o.overlap = FK_VAE_DEFAULT_OVERLAP;
    o.repeat = 1;
    o.precision = FK_PREC_BF16;
    fk_bench_ae_parse_res("512,1024", &o);
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': o.weights = optarg; break;
        case 'p': o.preset = optarg; break;
        case 'r':
            if (!fk_bench_ae_parse_res(optarg, &o))
                return fk_cli_usage("bench ae", "--res '%s': expected comma-separated sizes from 8 to 16384",
                                    optarg);
            break;
        case 'T':
            if (!fk_cli_parse_int("--tile", optarg, 0, 4096, &o.tile)) return FK_EXIT_USAGE;
            break;
        case 'O':
            if (!fk_cli_parse_int("--overlap", optarg, 0, 2048, &o.overlap)) return FK_EXIT_USAGE;
            break;
        case 'E': o.encode = true; break;
        case 'J': o.json = true; break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &o.threads)) return FK_EXIT_USAGE;
            break;
        case 's':
            if (!fk_cli_parse_u64("--seed", optarg, &o.seed)) return FK_EXIT_USAGE;
            break;
        case 'P':
            if (!fk_cli_parse_precision("--precision", optarg, &o.precision)) return FK_EXIT_USAGE;
            break;
        case 'n':
            if (!fk_cli_parse_int("--repeat", optarg, 1, 100, &o.repeat)) return FK_EXIT_USAGE;
            break;
        case 'R': o.profile = true; break;
        case 'D':
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            o.device = optarg;
            break;
        case 'h': fk_bench_ae_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("bench ae", argv, c);
        }
    }
    if (optind < argc) return fk_cli_usage("bench ae", "unexpected argument '%s'", argv[optind]);
    if (!o.weights == !o.preset)
        return fk_cli_usage("bench ae", "give exactly one of --weights FILE or --preset NAME");
    fk_vae_config pcfg;
    if (o.preset && !fk_vae_preset(o.preset, &pcfg))
        return fk_cli_usage("bench ae", "unknown --preset '%s' (one of: %s)", o.preset, fk_vae_preset_list());
    if (o.tile > 0 && (o.tile < 4 || 2 * o.overlap > o.tile))
        return fk_cli_usage("bench ae",
                            "--tile %ld --overlap %ld: expected tile >= 4 and overlap <= tile/2", o.tile,
                            o.overlap);

    fk_context *ctx = fk_context_create((int)o.threads);
    if (!ctx) {
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    fk_vae *v = NULL;
    double t0 = fk_time();
    fk_status st = o.preset ? fk_vae_create_random(ctx, &pcfg, o.seed, &v) : fk_vae_open(ctx, o.weights, &v);
    double t_load = fk_time() - t0;
    int rc = FK_EXIT_OK;
    fk_backend *be0 = NULL, *prof = NULL, *be = NULL;
    if (st != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto out;
    }
    be0 = fk_cli_backend_open(o.device, fk_context_threads(ctx), o.precision);
    if (!be0) {
        rc = FK_EXIT_ERROR;
        goto out;
    }
    prof = o.profile ? fk_backend_profile_wrap(be0) : NULL;
    be = prof ? prof : be0;
    if (o.profile && !prof) {
        fk_cli_error("out of memory creating the profiling backend");
        rc = FK_EXIT_ERROR;
        goto out;
    }
    const fk_vae_config *cfg = fk_vae_get_config(v);
    const int64_t f = fk_vae_downscale(cfg);
    for (int i = 0; i < o.n_res; i++)
        if (o.res[i] % f) {
            rc = fk_cli_usage("bench ae", "--res %d is not a multiple of %lld", o.res[i], (long long)f);
            goto out;
        }
    if ((o.encode && !cfg->has_encoder) || !cfg->has_decoder) {
        fk_cli_error("bench ae: this checkpoint lacks the %s", !cfg->has_decoder ? "decoder" : "encoder");
        rc = FK_EXIT_ERROR;
        goto out;
    }
    const char *model = fk_vae_config_name(cfg);
    if (!o.json) {
        char pc[32], desc[256];
        printf("bench ae: %s (%s%s), %s parameters, loaded in %.2f s; %s, f32 activations, best of %ld\n",
               model, fk_vae_format(v), o.preset ? ", random weights" : "",
               fk_cli_fmt_count(fk_vae_param_count(cfg), pc, sizeof(pc)), t_load,
               fk_backend_describe(be0, desc, sizeof(desc)), o.repeat);
        printf("  %5s  %-6s  %-9s %11s %10s %8s  %10s  %10s  %s\n", "res", "op", "tiling", "time", "first",
               "GFLOP/s", "act peak", "RSS peak", "rel L2 vs untiled");
    }
    for (int i = 0; i < o.n_res && st == FK_OK; i++) {
        st = fk_bench_ae_case(ctx, be, prof, v, &o, model, o.res[i], false);
        if (st == FK_OK && o.encode) st = fk_bench_ae_case(ctx, be, prof, v, &o, model, o.res[i], true);
    }
    if (st != FK_OK) rc = fk_cli_fail(ctx);
out:
    if (prof) prof->destroy(prof);
    fk_backend_close(be0);
    fk_vae_free(v);
    fk_context_free(ctx);
    return rc;
}
