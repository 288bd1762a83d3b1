/* fluxkit eval: run one component on inputs read from a safetensors file
 * (shared fixture naming convention) and write its outputs under the same
 * names, so tests and users can compare them with expected outputs.
 * The output file is written atomically and only when the component
 * succeeded: a failed run never leaves a partial or stale-looking output. */
#include "cli/cli_util.h"
#include "backend/backend_open.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* ---- component table ---------------------------------------------------------
 * One line per component: name, description, runner, whether it needs
 * --weights and --inputs. */
typedef struct fk_eval_component {
    const char *name;
    const char *description;
    fk_status (*run)(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
    bool needs_weights;
    bool needs_inputs;
} fk_eval_component;

static const fk_eval_component fk_eval_components[] = {
    {"flux", "FLUX transformer forward: output, block outputs, dbg.* (--denoise: Euler loop)",
     fk_eval_flux, true, true},
    {"ae", "autoencoder: encode.z, decode.output, decode_random.output (+ dbg.*)", fk_eval_ae, true, true},
    {"clip", "CLIP text encoder: last_hidden_state, pooler_output from input_ids", fk_eval_clip, true, true},
    {"t5", "T5 encoder: last_hidden_state from input_ids", fk_eval_t5, true, true},
    {"noise", "reference start noise (--seed --height --width): noise (bf16)", fk_eval_noise, false, false},
};
#define FK_EVAL_N_COMPONENTS ((int)(sizeof(fk_eval_components) / sizeof(fk_eval_components[0])))

static void fk_eval_component_names(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < FK_EVAL_N_COMPONENTS && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", fk_eval_components[i].name);
}

/* ---- output collector ------------------------------------------------------- */

struct fk_eval_out {
    int n, cap;
    char **names;      /* owned */
    fk_tensor *tensors; /* owning CPU tensors */
};

fk_status fk_eval_out_add(fk_context *ctx, fk_eval_out *out, const char *name, const fk_tensor *t) {
    if (!out || !name || !name[0] || !t)
        return fk_error(ctx, FK_ERR_ARG, "eval: output tensor with an empty name");
    if (t->device != FK_DEVICE_CPU)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "eval: output %s is not on the CPU (download it first)", name);
    if (!t->data && fk_tensor_numel(t) > 0)
        return fk_error(ctx, FK_ERR_ARG, "eval: output %s has no data", name);
    for (int i = 0; i < out->n; i++)
        if (!strcmp(out->names[i], name))
            return fk_error(ctx, FK_ERR_ARG, "eval: output %s added twice", name);
    if (out->n == out->cap) {
        int cap = out->cap ? 2 * out->cap : 32;
        char **nn = realloc(out->names, sizeof(*nn) * (size_t)cap);
        if (!nn) return fk_error(ctx, FK_ERR_NOMEM, "eval: out of memory collecting output %s", name);
        out->names = nn;
        fk_tensor *nt = realloc(out->tensors, sizeof(*nt) * (size_t)cap);
        if (!nt) return fk_error(ctx, FK_ERR_NOMEM, "eval: out of memory collecting output %s", name);
        out->tensors = nt;
        out->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return fk_error(ctx, FK_ERR_NOMEM, "eval: out of memory collecting output %s", name);
    fk_tensor dst;
    fk_status st = fk_tensor_new(ctx, &dst, t->dtype, t->ndim, t->shape, name);
    if (st != FK_OK) {
        free(copy);
        return st;
    }
    size_t nbytes = fk_tensor_nbytes(t);
    if (nbytes) memcpy(dst.data, t->data, nbytes);
    out->names[out->n] = copy;
    out->tensors[out->n] = dst;
    out->n++;
    return FK_OK;
}

static void fk_eval_out_free(fk_eval_out *out) {
    for (int i = 0; i < out->n; i++) {
        free(out->names[i]);
        fk_tensor_free(&out->tensors[i]);
    }
    free(out->names);
    free(out->tensors);
    memset(out, 0, sizeof(*out));
}

/* ---- input helper -------------------------------------------------------------- */

fk_status fk_eval_input_f32(fk_context *ctx, const fk_st_file *in, const char *name, int expect_ndim,
                            fk_tensor *t) {
    memset(t, 0, sizeof(*t));
    if (!in) return fk_error(ctx, FK_ERR_ARG, "eval: input %s needed but no --inputs file", name);
    const fk_st_tensor *st = fk_st_find(in, name);
    if (!st) return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor %s not found", fk_st_path(in), name);
    if (!fk_dtype_is_float(st->dtype))
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor %s has dtype %s, expected a float dtype",
                        fk_st_path(in), name, fk_dtype_name(st->dtype));
    if (expect_ndim > 0 && st->ndim != expect_ndim)
        return fk_error(ctx, FK_ERR_SHAPE, "%s: input tensor %s has %d dims, expected %d", fk_st_path(in),
                        name, st->ndim, expect_ndim);
    fk_status s = fk_tensor_new(ctx, t, FK_F32, st->ndim, st->shape, name);
    if (s != FK_OK) return s;
    fk_convert_to_f32(t->data, st->data, st->dtype, (size_t)fk_tensor_numel(t));
    return FK_OK;
}

/* ---- usage ------------------------------------------------------------------------ */

static void fk_eval_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit eval COMPONENT --weights W --inputs IN.safetensors --out OUT.safetensors\n"
            "                    [--denoise] [--threads N] [--precision f32|bf16] [--verbose]\n"
            "\n"
            "Run a component on the inputs stored in IN (shared fixture naming: e.g. img, txt,\n"
            "y, timesteps for flux) and write its outputs, in f32, under the names of the\n"
            "expected outputs (output, double.N.img, dbg.*, ...). OUT is written atomically,\n"
            "only when the run succeeded.\n"
            "\n"
            "components:\n");
    for (int i = 0; i < FK_EVAL_N_COMPONENTS; i++)
        fprintf(f, "  %-8s %s\n", fk_eval_components[i].name, fk_eval_components[i].description);
    fprintf(f,
            "\n"
            "options:\n"
            "  --weights W      checkpoint (file, index or folder)\n"
            "  --inputs IN      safetensors file with the inputs\n"
            "  --out OUT        safetensors file to write\n"
            "  --denoise        flux: also run the denoising loop (denoise.* tensors)\n"
            "  --threads N      CPU threads (default: all)\n"
            "  --device D       cpu (default), cuda, cuda:N or devsim (see generate --help)\n"
            "  --precision P    f32 (default: the fp32 reference) or bf16 (AMX tiles:\n"
            "                   bf16-rounded operands, f32 accumulation)\n"
            "  --seed N, --height H, --width W   noise: seed and image size\n"
            "  -v, --verbose    timings and the list of outputs on stderr\n"
            "  -h, --help       this message\n");
}

fk_status fk_eval_backend(fk_context *ctx, const fk_eval_opts *o, fk_backend **out) {
    return fk_backend_open(ctx, o->device, o->threads > 0 ? o->threads : fk_context_threads(ctx),
                           o->precision == FK_PREC_BF16 ? FK_PREC_BF16 : FK_PREC_F32, out);
}

/* ---- entry ----------------------------------------------------------------------- */

int fk_cmd_eval(int argc, char **argv) {
    static const struct option longopts[] = {
        {"weights", required_argument, NULL, 'w'}, {"inputs", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},     {"denoise", no_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"seed", required_argument, NULL, 'S'},    {"height", required_argument, NULL, 'H'},
        {"width", required_argument, NULL, 'W'},   {"help", no_argument, NULL, 'h'},
        {"precision", required_argument, NULL, 'P'},
        {"device", required_argument, NULL, 'E'},
        {NULL, 0, NULL, 0},
    };
    fk_eval_opts o;
    memset(&o, 0, sizeof(o));
    long threads = 0;
    fk_cli_getopt_reset();
    int c;
    while ((c = getopt_long(argc, argv, ":hvo:", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': o.weights = optarg; break;
        case 'i': o.inputs = optarg; break;
        case 'o': o.out = optarg; break;
        case 'D': o.denoise = true; break;
        case 'v': o.verbose = true; break;
        case 't':
            if (!fk_cli_parse_int("--threads", optarg, 0, 4096, &threads)) return FK_EXIT_USAGE;
            break;
        case 'S':
            if (!fk_cli_parse_int("--seed", optarg, 0, 0x7fffffffffffffffL, &o.seed)) return FK_EXIT_USAGE;
            break;
        case 'H':
            if (!fk_cli_parse_int("--height", optarg, 1, 1 << 16, &o.height)) return FK_EXIT_USAGE;
            break;
        case 'W':
            if (!fk_cli_parse_int("--width", optarg, 1, 1 << 16, &o.width)) return FK_EXIT_USAGE;
            break;
        case 'P':
            if (!fk_cli_parse_precision("--precision", optarg, &o.precision)) return FK_EXIT_USAGE;
            break;
        case 'E':
            if (!fk_cli_parse_device("--device", optarg)) return FK_EXIT_USAGE;
            o.device = optarg;
            break;
        case 'h': fk_eval_usage(stdout); return FK_EXIT_OK;
        default: return fk_cli_getopt_failure("eval", argv, c);
        }
    }
    o.threads = (int)threads;
    char names[256];
    fk_eval_component_names(names, sizeof(names));
    if (optind >= argc) return fk_cli_usage("eval", "missing COMPONENT (one of: %s)", names);
    if (argc - optind > 1) return fk_cli_usage("eval", "unexpected argument '%s'", argv[optind + 1]);
    o.component = argv[optind];
    const fk_eval_component *comp = NULL;
    for (int i = 0; i < FK_EVAL_N_COMPONENTS; i++)
        if (!strcmp(fk_eval_components[i].name, o.component)) comp = &fk_eval_components[i];
    if (!comp) return fk_cli_usage("eval", "unknown component '%s' (one of: %s)", o.component, names);
    if (comp->needs_weights && (!o.weights || !o.weights[0]))
        return fk_cli_usage("eval", "%s needs --weights", comp->name);
    if (comp->needs_inputs && (!o.inputs || !o.inputs[0]))
        return fk_cli_usage("eval", "%s needs --inputs", comp->name);
    if (!o.out || !o.out[0]) return fk_cli_usage("eval", "missing --out");

    fk_context *ctx = fk_context_create(o.threads);
    if (!ctx) {
        fk_cli_error("out of memory");
        return FK_EXIT_ERROR;
    }
    if (o.verbose) fk_context_set_log(ctx, FK_LOG_INFO, NULL, NULL);
    fk_st_file *in = NULL;
    fk_eval_out out;
    memset(&out, 0, sizeof(out));
    int rc = FK_EXIT_OK;
    double t0 = fk_time();
    if (o.inputs && o.inputs[0] && fk_st_open(ctx, o.inputs, &in) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    if (comp->run(ctx, &o, in, &out) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    double t_run = fk_time() - t0;
    if (out.n == 0) {
        fk_cli_error("eval %s produced no outputs", comp->name);
        rc = FK_EXIT_ERROR;
        goto done;
    }
    char threads_s[16];
    snprintf(threads_s, sizeof(threads_s), "%d", fk_context_threads(ctx));
    char gen_s[64];
    snprintf(gen_s, sizeof(gen_s), "fluxkit eval %s", fk_version());
    const char *meta[] = {
        "component", comp->name,
        "weights", o.weights ? o.weights : "",
        "inputs", o.inputs ? o.inputs : "",
        "threads", threads_s, "precision", fk_cli_precision_name(o.precision),
        "device", o.device ? o.device : "cpu", "generator", gen_s,
    };
    if (fk_st_write_tensors(ctx, o.out, (const char *const *)out.names, out.tensors, out.n, meta,
                            (int)(sizeof(meta) / sizeof(meta[0]) / 2)) != FK_OK) {
        rc = fk_cli_fail(ctx);
        goto done;
    }
    if (o.verbose) {
        fprintf(stderr, "fluxkit eval %s: %.3f s on %d threads, peak RSS %.1f MB, %d outputs -> %s\n",
                comp->name, t_run, fk_context_threads(ctx), (double)fk_peak_rss() / 1e6, out.n, o.out);
        for (int i = 0; i < out.n; i++) {
            char shp[128];
            fprintf(stderr, "  %-28s %-4s %s\n", out.names[i], fk_dtype_name(out.tensors[i].dtype),
                    fk_shape_str(&out.tensors[i], shp, sizeof(shp)));
        }
    }
done:
    fk_eval_out_free(&out);
    if (in) fk_st_close(in);
    fk_context_free(ctx);
    return rc;
}
