/* fluxkit bench: time a component on synthetic inputs.
 *
 *   fluxkit bench flux (--weights FILE | --preset NAME) [--res 256,512] [--steps 2]
 *                      [--txt-len 512] [--threads N] [--dtype bf16] [--seed S] [--json]
 *
 * For each resolution: n_img = (res/16)² image tokens, --txt-len text tokens,
 * random inputs (fixed seed), the model's schedule (shift as the reference for
 * dev/mini, off for schnell) and --steps Euler steps. Reported: seconds per
 * step (the mean over the steps after the first when there are two or more —
 * the first also pages the mapped weights in — else the single step), the
 * first step's seconds, GFLOP/s from the analytic FLOP count of the matmuls
 * and attention (fk_flux_flops), and the process's peak resident memory
 * during that resolution (reset through /proc/self/clear_refs where
 * available; it includes the weights pages touched so far).
 * --preset builds random weights in memory (no file; --dtype, default bf16);
 * --weights maps a checkpoint. The final latent must be finite (exit 1 if not). */
#include "cli/cli.h"
#include "cli/cli_profile.h"
#include "cli/cli_util.h"
#include "core/rng.h"
#include "model/flux.h"
#include "pipeline/sampling.h"

#include <getopt.h>
#include <math.h>
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fk_bench_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit bench flux (--weights FILE | --preset NAME) [OPTIONS]\n"
            "\nTime FLUX transformer steps on random inputs at each resolution.\n\n"
            "  --weights FILE   checkpoint (BFL file, all-in-one file or diffusers folder)\n"
            "  --preset NAME    random weights in memory instead (%s)\n"
            "  --dtype T        weight dtype for --preset: f32, bf16 (default), f16, f8_e4m3\n"
            "  --res LIST       square image sizes in pixels, multiples of 16 (default 256)\n"
            "  --steps N        denoising steps per resolution (default 2)\n"
            "  --txt-len N      text tokens (default 512)\n"
            "  --threads N      CPU threads (default: all)\n"
            "  --device D       cpu (default), cuda, cuda:N or devsim (see generate --help)\n"
            "  --precision P    bf16 (default: AMX tiles, bf16-rounded operands, f32\n"
            "                   accumulation; f32 kernels where AMX is missing) or f32\n"
            "  --check          also run the first step with the f32 reference (CPU) and print\n"
            "                   the relative L2 error of the velocity (rel_l2_vs_f32)\n"
            "  --seed S         seed of the random inputs / weights (default 1)\n"
            "  --json           one JSON object per resolution instead of the table\n"
            "  --weight-cache on|off  keep the large weights pre-packed for the backend's\n"
            "                   products (default on, as generate does from 10 steps; bf16\n"
            "                   mode; the packing time is reported, not counted in s/step)\n"
            "  --profile        time every op (steps after the first): ms per step, share,\n"
            "                   TFLOP/s of the products (matmul, attention), GB/s of the rest\n"
            "  -v, --verbose    the memory plan on stderr\n"
            "  -h, --help       this message\n",
            fk_flux_preset_list());
}

static bool fk_bench_parse_dtype(const char *s, fk_dtype *out) {
    static const struct {
        const char *name;
        fk_dtype t;
    } map[] = {{"f32", FK_F32}, {"bf16", FK_BF16}, {"f16", FK_F16}, {"f8_e4m3", FK_F8_E4M3},
               {"fp8", FK_F8_E4M3}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(s, map[i].name)) {
            *out = map[i].t;
            return true;
        }
    return fk_dtype_parse(s, out) && (*out == FK_F32 || *out == FK_BF16 || *out == FK_F16 ||
                                       *out == FK_F8_E4M3);
}

typedef struct fk_bench_result {
    int res;
    int64_t n_img, n_txt;
    double s_per_step, s_first, gflops;
    uint64_t peak_rss;
    uint64_t peak_device; /* a device backend's memory peak (0 on the CPU) */
    bool finite;
    double rel_l2; /* first-step velocity vs the f32 reference (--check), else -1 */
    double timed_s; /* the steps after the first (what the profile covers) */
    double cache_s; /* packing the weight cache (--weight-cache on), else 0 */
    uint64_t cache_bytes;
} fk_bench_result;

/* Reset the kernel's peak-RSS counter to the current RSS (Linux; ignored
 * elsewhere), so each resolution reports its own peak. */
static void fk_bench_reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

/* One resolution: allocate, run `steps` Euler steps, time them. */
static fk_status fk_bench_flux_res(fk_context *ctx, const fk_flux_model *m, fk_backend *be,
                                   fk_backend *prof, fk_backend *ref_be, int res, int steps, int64_t n_txt,
                                   uint64_t seed, bool verbose, bool wcache, fk_bench_result *out) {
    const fk_flux_config *c = &m->cfg;
    const int64_t hp = res / 16, wp = res / 16, n_img = hp * wp;
    fk_tensor img = {0}, img_ids = {0}, txt = {0}, txt_ids = {0}, y = {0}, vel = {0};
    fk_tensor img0 = {0}, vel0 = {0}; /* --check: start latent and first velocity */
    fk_flux_runner *r = NULL;
    float *ts = NULL;
    fk_status st;
    fk_bench_reset_peak_rss();
    if ((st = fk_tensor_new(ctx, &img, FK_F32, 2, (const int64_t[]){n_img, c->in_channels}, "img")) ||
        (st = fk_tensor_new(ctx, &img_ids, FK_F32, 2, (const int64_t[]){n_img, 3}, "img_ids")) ||
        (st = fk_tensor_new(ctx, &txt, FK_F32, 2, (const int64_t[]){n_txt, c->context_dim}, "txt")) ||
        (st = fk_tensor_new(ctx, &txt_ids, FK_F32, 2, (const int64_t[]){n_txt, 3}, "txt_ids")) ||
        (st = fk_tensor_new(ctx, &y, FK_F32, 2, (const int64_t[]){1, c->vec_dim}, "y")) ||
        (st = fk_tensor_new(ctx, &vel, FK_F32, 2, (const int64_t[]){n_img, c->out_channels}, "velocity")))
        goto done;
    if (ref_be &&
        ((st = fk_tensor_new(ctx, &img0, FK_F32, 2, (const int64_t[]){n_img, c->in_channels}, "img0")) ||
         (st = fk_tensor_new(ctx, &vel0, FK_F32, 2, (const int64_t[]){n_img, c->out_channels}, "vel0"))))
        goto done;
    fk_rng_fill_normal(seed, 1, 0, img.data, (size_t)fk_tensor_numel(&img), 0.0f, 1.0f);
    fk_rng_fill_normal(seed, 2, 0, txt.data, (size_t)fk_tensor_numel(&txt), 0.0f, 0.5f);
    fk_rng_fill_normal(seed, 3, 0, y.data, (size_t)fk_tensor_numel(&y), 0.0f, 0.5f);
    float *ids = img_ids.data;
    for (int64_t i = 0; i < hp; i++)
        for (int64_t j = 0; j < wp; j++) {
            ids[(i * wp + j) * 3 + 0] = 0.0f;
            ids[(i * wp + j) * 3 + 1] = (float)i;
            ids[(i * wp + j) * 3 + 2] = (float)j;
        }
    if ((st = fk_flux_runner_create(ctx, m, prof ? prof : be, n_img, n_txt, &r))) goto done;
    if (wcache) {
        double tc = fk_time();
        if ((st = fk_flux_runner_cache_weights(ctx, r, true, &out->cache_bytes))) goto done;
        out->cache_s = fk_time() - tc;
    }
    if (verbose) {
        const fk_flux_plan *p = fk_flux_runner_plan(r);
        char b1[32], b2[32], b3[32];
        fprintf(stderr, "bench flux %d: memory plan: weights %s, activations %s, scratch %s\n", res,
                fk_cli_fmt_bytes(p->weight_bytes, b1, sizeof(b1)),
                fk_cli_fmt_bytes(p->act_bytes, b2, sizeof(b2)),
                fk_cli_fmt_bytes(p->scratch_bytes, b3, sizeof(b3)));
    }
    ts = malloc(sizeof(float) * (size_t)(steps + 1));
    if (!ts) {
        st = fk_error(ctx, FK_ERR_NOMEM, "out of memory");
        goto done;
    }
    fk_sampling_schedule(ts, steps, n_img, c->guidance_embed); /* schnell (no guidance): no shift */
    /* the steps' modulation vectors up front, as generate does */
    if ((st = fk_flux_runner_precompute(ctx, r, ts, steps, 3.5f, &y))) goto done;
    fk_flux_inputs in = {.img = &img, .img_ids = &img_ids, .txt = &txt, .txt_ids = &txt_ids,
                         .y = &y, .guidance = 3.5f};
    double total = 0, first = 0;
    if (ref_be) memcpy(img0.data, img.data, fk_tensor_nbytes(&img));
    for (int k = 0; k < steps; k++) {
        in.timestep = ts[k];
        double t0 = fk_time();
        if ((st = fk_flux_forward(ctx, r, &in, &vel))) goto done;
        if (ref_be && k == 0) memcpy(vel0.data, vel.data, fk_tensor_nbytes(&vel));
        fk_sampling_euler_step(img.data, vel.data, (size_t)fk_tensor_numel(&img), ts[k], ts[k + 1]);
        double dt = fk_time() - t0;
        if (k == 0) {
            first = dt;
            if (prof && steps > 1) fk_backend_profile_reset(prof); /* profile steps 2.. */
        } else {
            total += dt;
        }
    }
    bool finite = true;
    const float *x = img.data;
    for (int64_t i = 0; i < fk_tensor_numel(&img); i++) finite &= isfinite(x[i]) != 0;
    out->res = res;
    out->n_img = n_img;
    out->n_txt = n_txt;
    out->s_first = first;
    out->s_per_step = steps >= 2 ? total / (steps - 1) : first;
    out->timed_s = steps >= 2 ? total : first;
    out->gflops = fk_flux_flops(c, n_img, n_txt) / out->s_per_step * 1e-9;
    out->peak_rss = fk_peak_rss();
    out->peak_device = fk_backend_device_peak_bytes(be);
    out->finite = finite;
    out->rel_l2 = -1;
    if (ref_be) { /* the same first step through the f32 reference backend */
        fk_flux_runner_free(r);
        r = NULL;
        if ((st = fk_flux_runner_create(ctx, m, ref_be, n_img, n_txt, &r))) goto done;
        in.img = &img0;
        in.timestep = ts[0];
        if ((st = fk_flux_forward(ctx, r, &in, &vel))) goto done;
        double num = 0, den = 0;
        const float *a = vel0.data, *b = vel.data;
        for (int64_t i = 0; i < fk_tensor_numel(&vel); i++) {
            double d = (double)a[i] - (double)b[i];
            num += d * d;
            den += (double)b[i] * (double)b[i];
        }
        out->rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    }
done:
    free(ts);
    fk_flux_runner_free(r);
    fk_tensor_free(&img);
    fk_tensor_free(&img_ids);
    fk_tensor_free(&txt);
    fk_tensor_free(&txt_ids);
    fk_tensor_free(&y);
    fk_tensor_free(&vel);
    fk_tensor_free(&img0);
    fk_tensor_free(&vel0);
    return st;
}

static int fk_bench_flux(int argc, char **argv) {
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"preset", required_argument, NULL, 'p'},
        {"dtype", required_argument, NULL, 'd'},   {"res", required_argument, NULL, 'r'},
        {"steps", required_argument, NULL, 's'},   {"txt-len", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'}, {"seed", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},          {"verbose", no_argument, NULL, 'v'},
        {"precision", required_argument, NULL, 'P'}, {"check", no_argument, NULL, 'C'},
        {"profile", no_argument, NULL, 'R'},       {"help", no_argument, NULL, 'h'},
        {"weight-cache", required_argument, NULL, 'W'},
        {"device", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0}};
    const char *weights = NULL, *preset = NULL, *res_list = "256", *device = NULL;
    int precision = FK_PREC_BF16;
    bool check = false, profile = false, wcache = true;
    fk_dtype dtype = FK_BF16;
    long steps = 2, txt_len = 512, threads = 0;
    uint64_t seed = 1;
    bool json = false, verbose = false;
    int c;
    fk_cli_getopt_reset();
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'p': preset = optarg; break;
        case 'd':
            if (!fk_bench_parse_dtype(optarg, &dtype))
                return fk_cli_usage("bench", "--dtype: expected f32, bf16, f16 or f8_e4m3, got '%s'",
                                    optarg);
            break;
        case 'r': res_list = optarg; break;
        case 's':
            if (!fk_cli_parse_int("--steps", optarg, 1, 1000, &steps)) return FK_EXIT_USAGE;
            break;
        case 'l':
            if (!fk_cli_parse_int("--txt-len", optarg, 0, 1 << 16, &txt_len)) return FK_EXIT_USAGE;
            break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &threads)) return FK_EXIT_USAGE;
            break;
        case 'S':
            if (!fk_cli_parse_u64("--seed", optarg, &seed)) return FK_EXIT_USAGE;
            break;
        case 'j': json = true; break;
        case 'v': verbose = true; break;
        case 'P':
            if (!fk_cli_parse_precision("--precision", optarg, &precision)) return FK_EXIT_USAGE;
            break;
        case 'C': check = true; break;
        case 'R': profile = true; break;
        case 'W':
            if (strcmp(optarg, "on") && strcmp(optarg, "off"))
                return fk_cli_usage("bench", "--weight-cache: expected on or off, got '%s'", optarg);
            wcache = !strcmp(optarg, "on");
            break;
        case 'D':
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            device = optarg;
            break;
        case 'h': fk_bench_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("bench", argv, c);
        }
    }
    if (optind != argc) return fk_cli_usage("bench", "unexpected argument '%s'", argv[optind]);
    if (!weights == !preset) return fk_cli_usage("bench", "give exactly one of --weights and --preset");
    fk_flux_config pcfg;
    if (preset && !fk_flux_preset(preset, &pcfg))
        return fk_cli_usage("bench", "--preset: unknown '%s' (known: %s)", preset,
                            fk_flux_preset_list());
    int res[32], n_res = 0;
    {
        const char *p = res_list;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 16 || v > 8192 || v % 16 || n_res == 32 || (*end && *end != ','))
                return fk_cli_usage("bench", "--res: expected a comma-separated list of sizes, "
                                    "multiples of 16 in 16..8192, got '%s'", res_list);
            res[n_res++] = (int)v;
            p = *end ? end + 1 : end;
        }
        if (!n_res) return fk_cli_usage("bench", "--res: empty list");
    }

    fk_context *ctx = fk_context_create((int)threads);
    if (!ctx) return FK_EXIT_ERROR;
    fk_flux_model *m = NULL;
    fk_backend *be = NULL, *ref_be = NULL, *prof = NULL;
    int rc = FK_EXIT_OK;
    double t0 = fk_time();
    fk_status st = preset ? fk_flux_create_random(ctx, &pcfg, dtype, seed, &m)
                          : fk_flux_load(ctx, weights, &m);
    if (st != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    double t_load = fk_time() - t0;
    be = fk_cli_backend_open(device, fk_context_threads(ctx), precision);
    if (!be) {
        rc = FK_EXIT_ERROR;
        goto done;
    }
    if (check) ref_be = fk_cli_backend_open(NULL, fk_context_threads(ctx), FK_PREC_F32);
    if (profile) prof = fk_backend_profile_wrap(be);
    if ((check && !ref_be) || (profile && !prof)) {
        fk_cli_error("out of memory creating the backends");
        rc = FK_EXIT_ERROR;
        goto done;
    }
    const char *model_name = fk_flux_config_name(&m->cfg);
    const char *dt_name = m->mixed_dtypes ? "mixed" : fk_dtype_name(m->dtype);
    if (!json) {
        char b1[32], b2[32];
        printf("bench flux: %s (%s, %s weights, %s parameters, %s), loaded in %.2f s\n", model_name,
               m->format, dt_name, fk_cli_fmt_count(m->n_params, b1, sizeof(b1)),
               fk_cli_fmt_bytes(m->mapped_bytes + m->copied_bytes, b2, sizeof(b2)), t_load);
        char desc[256];
        printf("backend %s; %ld steps per resolution, %ld text tokens\n",
               fk_backend_describe(be, desc, sizeof(desc)), steps, txt_len);
        printf("%6s %7s %7s %10s %10s %10s %12s%s%s\n", "res", "n_img", "n_txt", "s/step", "s(first)",
               "GFLOP/s", "peak RSS", be->device != FK_DEVICE_CPU ? "  peak device" : "",
               check ? "  rel_l2_vs_f32" : "");
        fflush(stdout);
    }
    for (int i = 0; i < n_res; i++) {
        fk_bench_result br = {0};
        if (prof) fk_backend_profile_reset(prof);
        st = fk_bench_flux_res(ctx, m, be, prof, ref_be, res[i], (int)steps, txt_len, seed, verbose,
                               wcache, &br);
        if (st != FK_OK) {
            rc = fk_cli_fail(ctx);
            goto done;
        }
        if (json) {
            printf("{\"component\": \"flux\", \"model\": \"%s\", \"res\": %d, \"n_img\": %lld, "
                   "\"n_txt\": %lld, \"steps\": %ld, \"threads\": %d, \"dtype\": \"%s\", "
                   "\"precision\": \"%s\", \"kernels\": \"%s\", "
                   "\"s_per_step\": %.6f, \"s_first_step\": %.6f, \"gflops\": %.3f, "
                   "\"peak_rss_bytes\": %llu, \"peak_device_bytes\": %llu, \"device\": \"%s\", "
                   "\"finite\": %s",
                   model_name, br.res, (long long)br.n_img, (long long)br.n_txt, steps, be->n_threads,
                   dt_name, fk_cli_precision_name(precision), fk_backend_kernel_name(be), br.s_per_step,
                   br.s_first, br.gflops, (unsigned long long)br.peak_rss,
                   (unsigned long long)br.peak_device, device ? device : "cpu",
                   br.finite ? "true" : "false");
            if (check) printf(", \"rel_l2_vs_f32\": %.6e", br.rel_l2);
            printf(", \"weight_cache_bytes\": %llu, \"weight_cache_s\": %.3f",
                   (unsigned long long)br.cache_bytes, br.cache_s);
            if (prof) {
                printf(", ");
                fk_cli_profile_json(stdout, prof, steps > 1 ? (double)(steps - 1) : 1.0);
            }
            printf("}\n");
        } else {
            char b1[32];
            printf("%6d %7lld %7lld %10.3f %10.3f %10.2f %12s", br.res, (long long)br.n_img,
                   (long long)br.n_txt, br.s_per_step, br.s_first, br.gflops,
                   fk_cli_fmt_bytes(br.peak_rss, b1, sizeof(b1)));
            if (be->device != FK_DEVICE_CPU) {
                char b3[32];
                printf("  %11s", fk_cli_fmt_bytes(br.peak_device, b3, sizeof(b3)));
            }
            if (check) printf("  %13.3e", br.rel_l2);
            printf("%s\n", br.finite ? "" : "  NOT FINITE");
            if (br.cache_bytes) {
                char b2[32];
                printf("  weight cache: %s pre-packed in %.2f s (before the first step)\n",
                       fk_cli_fmt_bytes(br.cache_bytes, b2, sizeof(b2)), br.cache_s);
            }
            if (prof) {
                double per = steps > 1 ? (double)(steps - 1) : 1.0;
                printf("  profile at %d px, per step (%s), share of the step time:\n", br.res,
                       steps > 1 ? "steps after the first" : "the only step");
                fk_cli_profile_print(stdout, prof, per, br.timed_s);
            }
        }
        fflush(stdout);
        if (!br.finite) {
            fk_cli_error("bench flux: the result at %d px is not finite", br.res);
            rc = FK_EXIT_ERROR;
        }
    }
done:
    if (prof) prof->destroy(prof);
    fk_backend_close(be);
    fk_backend_close(ref_be);
    fk_flux_free(m);
    fk_context_free(ctx);
    return rc;
}

/* bench ae lives in bench_ae.c (declared here until cli.h lists it). */
int fk_bench_ae(int argc, char **argv);

/* Each component's runner gets argv[0] = the component name. */
int fk_cmd_bench(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } comps[] = {{"flux", fk_bench_flux}, {"ae", fk_bench_ae}, {"clip", fk_bench_clip},
                 {"t5", fk_bench_t5},     {"image", fk_bench_image}};
    const int n = (int)(sizeof(comps) / sizeof(comps[0]));
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: fluxkit bench COMPONENT [OPTIONS]   (fluxkit bench COMPONENT --help)\n"
                   "components: flux (transformer steps), ae (autoencoder), clip, t5 (text encoders),\n"
                   "            image (whole images, every stage, models kept loaded)\n");
        return argc < 2 ? FK_EXIT_USAGE : FK_EXIT_OK;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[1], comps[i].name)) return comps[i].run(argc - 1, argv + 1);
    return fk_cli_usage("bench", "unknown component '%s' (known: flux, ae, clip, t5, image)", argv[1]);
}
