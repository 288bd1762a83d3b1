/* bench_image: `fluxkit bench image` — whole images, every stage (T5 + CLIP,
 * the denoising steps, the autoencoder decode), in one pipeline session that
 * keeps the models loaded (and a device backend's copies of their weights),
 * as an inference service would: the columns of the seed's table, seconds
 * per image and peak memory (device memory on a GPU, RSS on the CPU) at each
 * resolution. The first image of the run also loads the models (and uploads
 * the weights to a device): it is timed apart and not counted. */
#include "backend/backend.h"
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"
#include "cli/cli.h"
#include "cli/cli_util.h"
#include "io/image.h"
#include "pipeline/pipeline.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FK_BENCH_IMAGE_MAX_RES 16

static void fk_bench_image_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit bench image (--models DIR | --model F --ae F --clip F --t5 F) [OPTIONS]\n"
            "\n"
            "Time whole images, every stage included (T5 + CLIP, the denoising steps, the\n"
            "autoencoder decode), with the models loaded once and kept (weights kept on the\n"
            "device too): seconds per image and peak memory at each resolution. A first image\n"
            "at the first resolution loads the models (and uploads the weights) and is reported\n"
            "apart. Ends with one JSON line per resolution.\n"
            "\n"
            "  --models DIR     folder with the four files (as generate --models)\n"
            "  --model F, --ae F, --clip F, --t5 F   each file explicitly\n"
            "  --res LIST       square sizes in pixels, multiples of 16 (default 512,1024)\n"
            "  --steps N        denoising steps (default 50)\n"
            "  --images N       timed images per resolution (default 2; seeds 1..N)\n"
            "  --device D       cpu (default), cuda, cuda:N or devsim (see generate --help)\n"
            "  --precision P    bf16 (default) or f32\n"
            "  --threads N      CPU threads (default: all)\n"
            "  --offload        stage the models as generate does (each loaded for its phase and\n"
            "                   released after it, a device's weight copies with it): less memory,\n"
            "                   every image pays the loads / uploads\n"
            "  --out DIR        also write each image as DIR/bench-RES-SEED.ppm\n"
            "  -h, --help       this message\n");
}

static bool fk_bench_image_parse_res(const char *s, int *res, int *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 16 || v > 8192 || v % 16 || *n == FK_BENCH_IMAGE_MAX_RES ||
            (*end && *end != ','))
            return false;
        res[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return *n > 0;
}

int fk_bench_image(int argc, char **argv) {
    static const struct option longopts[] = {
        {"models", required_argument, NULL, 'M'}, {"model", required_argument, NULL, 'm'},
        {"ae", required_argument, NULL, 'a'},     {"clip", required_argument, NULL, 'c'},
        {"t5", required_argument, NULL, 'T'},     {"res", required_argument, NULL, 'r'},
        {"steps", required_argument, NULL, 's'},  {"images", required_argument, NULL, 'n'},
        {"device", required_argument, NULL, 'D'}, {"precision", required_argument, NULL, 'P'},
        {"threads", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},         {"offload", no_argument, NULL, 'O'},
        {NULL, 0, NULL, 0},
    };
    const char *models = NULL, *model = NULL, *ae = NULL, *clip = NULL, *t5 = NULL, *device = NULL;
    const char *outdir = NULL;
    int res[FK_BENCH_IMAGE_MAX_RES], n_res = 0;
    long steps = 50, images = 2, threads = 0;
    int precision = FK_PREC_BF16;
    bool offload = false;
    fk_bench_image_parse_res("512,1024", res, &n_res);
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'M': models = optarg; break;
        case 'm': model = optarg; break;
        case 'a': ae = optarg; break;
        case 'c': clip = optarg; break;
        case 'T': t5 = optarg; break;
        case 'r':
            if (!fk_bench_image_parse_res(optarg, res, &n_res))
                return fk_cli_usage("bench image", "--res '%s': expected up to %d comma-separated sizes, "
                                    "multiples of 16 from 16 to 8192", optarg, FK_BENCH_IMAGE_MAX_RES);
            break;
        case 's':
            if (!fk_cli_parse_int("--steps", optarg, 1, FK_PIPELINE_MAX_STEPS, &steps)) return FK_EXIT_USAGE;
            break;
        case 'n':
            if (!fk_cli_parse_int("--images", optarg, 1, 1000, &images)) return FK_EXIT_USAGE;
            break;
        case 'D':
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            device = optarg;
            break;
        case 'P':
            if (!fk_cli_parse_precision("--precision", optarg, &precision)) return FK_EXIT_USAGE;
            break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &threads)) return FK_EXIT_USAGE;
            break;
        case 'o': outdir = optarg; break;
        case 'O': offload = true; break;
        case 'h': fk_bench_image_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("bench image", argv, c);
        }
    }
    if (optind < argc) return fk_cli_usage("bench image", "unexpected argument '%s'", argv[optind]);
    if (!models && !(model && ae && clip && t5))
        return fk_cli_usage("bench image", "give --models DIR, or all of --model, --ae, --clip and --t5");

    fk_context *ctx = fk_context_create((int)threads);
    if (!ctx) {
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    int rc = FK_EXIT_OK;
    fk_pipeline_files files = {0};
    fk_pipeline_session *sess = NULL;
    fk_image img = {0};
    char *json[FK_BENCH_IMAGE_MAX_RES] = {0}; /* the JSON line of each resolution, printed last */
    if (fk_pipeline_files_resolve(ctx, models, model, ae, clip, t5, &files) != FK_OK ||
        fk_pipeline_session_open(ctx, &files, device, precision, !offload, &sess) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    const fk_backend *be = fk_pipeline_session_backend(sess);
    const bool on_device = be->device != FK_DEVICE_CPU;
    char desc[256];
    fk_backend_describe(be, desc, sizeof(desc));
    printf("bench image: %s; %ld steps, %ld timed image%s per resolution, %s\n", desc, steps, images,
           images == 1 ? "" : "s",
           offload ? "models staged (loaded for each phase, released after it)" : "models kept loaded");
    fflush(stdout);
    fk_pipeline_params p;
    fk_pipeline_params_init(&p);
    p.prompt = "a photograph of a lighthouse on a rocky coast at dawn, waves, seagulls, "
               "soft golden light, highly detailed";
    p.steps = (int)steps;
    p.precision = precision;
    p.device = device;
    p.vae_tile = 0; /* the reference decode; bench ae compares tilings */
    double t_first = 0;
    {
        /* the first image: models loaded, weights uploaded (not counted) */
        fk_pipeline_report rep;
        p.width = p.height = res[0];
        p.seed = 1;
        double t0 = fk_time();
        if (fk_pipeline_session_generate(ctx, sess, &p, &img, &rep) != FK_OK) {
            rc = fk_cli_fail(ctx);
            goto done;
        }
        t_first = fk_time() - t0;
        fk_image_free(&img);
        printf("first image (%d px, %s): %.2f s\n", res[0],
               offload ? "as the others"
                       : on_device ? "loads the models and uploads the weights" : "loads the models",
               t_first);
    }
    printf("%6s %10s %9s %9s %9s %9s %12s%s\n", "res", "s/img", "text", "denoise", "s/step", "decode",
           "peak RSS", on_device ? "  peak device  (GiB)" : "");
    fflush(stdout);
    for (int i = 0; i < n_res; i++) {
        double best = 1e30, sum = 0, text = 0, den = 0, dec = 0;
        fk_pipeline_report rep = {0};
        for (long k = 0; k < images; k++) {
            p.width = p.height = res[i];
            p.seed = (uint64_t)(k + 1);
            double t0 = fk_time();
            if (fk_pipeline_session_generate(ctx, sess, &p, &img, &rep) != FK_OK) {
                rc = fk_cli_fail(ctx);
                goto done;
            }
            double dt = fk_time() - t0;
            sum += dt;
            if (dt < best) {
                best = dt;
                text = rep.t_text;
                den = rep.t_denoise;
                dec = rep.t_decode;
            }
            if (outdir) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/bench-%d-%ld.ppm", outdir, res[i], k + 1);
                if (fk_image_write_ppm(ctx, path, &img, true) != FK_OK) {
                    rc = fk_cli_fail(ctx);
                    goto done;
                }
            }
            fk_image_free(&img);
        }
        char b1[32], b2[32];
        uint64_t peak_dev = fk_backend_device_peak_bytes(be);
        printf("%6d %10.3f %9.3f %9.3f %9.4f %9.3f %12s", res[i], best, text, den,
               rep.steps_run ? den / rep.steps_run : 0.0, dec, fk_cli_fmt_bytes(rep.peak_rss, b1, sizeof(b1)));
        if (on_device) /* GB = 1e9 bytes; GiB too, the unit PyTorch's memory stats are often quoted in */
            printf("  %11s  (%.2f)", fk_cli_fmt_bytes(peak_dev, b2, sizeof(b2)),
                   (double)peak_dev / 1073741824.0);
        printf("\n");
        char *js = json[i] = malloc(1024);
        if (js)
            snprintf(js, 1024,
                     "{\"component\": \"image\", \"model\": \"%s\", \"res\": %d, \"steps\": %ld, "
                     "\"images\": %ld, \"device\": \"%s\", \"precision\": \"%s\", \"offload\": %s, "
                     "\"s_per_image_best\": %.4f, \"s_per_image_mean\": %.4f, \"s_text\": %.4f, "
                     "\"s_denoise\": %.4f, \"s_decode\": %.4f, \"s_first_image\": %.4f, "
                     "\"peak_rss_bytes\": %llu, \"peak_device_bytes\": %llu}",
                     rep.model.name, res[i], steps, images, device ? device : "cpu",
                     fk_cli_precision_name(precision), offload ? "true" : "false", best, sum / (double)images, text, den, dec, t_first,
                     (unsigned long long)rep.peak_rss, (unsigned long long)peak_dev);
        fflush(stdout);
    }
    for (int i = 0; i < n_res; i++)
        if (json[i]) printf("%s\n", json[i]);
done:
    for (int i = 0; i < FK_BENCH_IMAGE_MAX_RES; i++) free(json[i]);
    fk_image_free(&img);
    fk_pipeline_session_free(sess);
    fk_pipeline_files_free(&files);
    fk_context_free(ctx);
    return rc;
}
