/* cli: the `fluxkit` subcommands. Only this layer prints and exits.
 * Exit codes: 0 ok, 1 runtime error, 2 usage error. */
#ifndef FK_CLI_H
#define FK_CLI_H

#include "core/core.h"
#include "core/tensor.h"
#include "io/safetensors.h"

#define FK_EXIT_OK 0
#define FK_EXIT_ERROR 1
#define FK_EXIT_USAGE 2

/* One subcommand: argv[0] is the subcommand name. */
int fk_cmd_info(int argc, char **argv);
int fk_cmd_init_random(int argc, char **argv);
int fk_cmd_eval(int argc, char **argv);
int fk_cmd_bench(int argc, char **argv);
int fk_cmd_tokenize(int argc, char **argv);
int fk_cmd_compare(int argc, char **argv);
int fk_cmd_generate(int argc, char **argv);

/* Print "fluxkit: error: <msg>" to stderr. */
void fk_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a positive/non-negative integer option value; on failure prints a
 * usage error naming the option and returns false. */
bool fk_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

/* ---- eval: components run on inputs from a safetensors file ----------- */

/* Options shared by all components (parsed by cmd_eval.c). */
typedef struct fk_eval_opts {
    const char *component;  /* "flux", "ae", "clip", "t5", "noise" */
    const char *weights;    /* --weights */
    const char *inputs;     /* --inputs */
    const char *out;        /* --out */
    int threads;            /* --threads (0 = all) */
    bool denoise;           /* --denoise (flux) */
    bool verbose;           /* --verbose */
    long seed, height, width; /* --seed/--height/--width (noise) */
    int precision;          /* --precision: FK_PREC_F32 (default for eval) or FK_PREC_BF16 */
    const char *device;     /* --device: NULL (the CPU), "cuda", "cuda:N", "devsim" */
} fk_eval_opts;

/* The backend an eval component runs on (o->device, o->threads, o->precision);
 * errors in ctx (naming --device). Free with fk_backend_close. */
struct fk_backend;
fk_status fk_eval_backend(fk_context *ctx, const fk_eval_opts *o, struct fk_backend **out);

/* --precision f32|bf16 → FK_PREC_F32 / FK_PREC_BF16 (backend/cpu/cpu.h); on
 * failure prints a usage error naming the option and returns false. */
bool fk_cli_parse_precision(const char *opt, const char *s, int *out);
/* "f32" / "bf16". */
const char *fk_cli_precision_name(int precision);
/* Check a --device value: cpu, cuda, cuda:N or devsim (backend/backend_open.h);
 * a bad one prints a usage error naming the option and returns false. */
bool fk_cli_parse_device(const char *opt, const char *s);
/* The backend of --device `device` (NULL: the CPU) with n_threads CPU
 * threads (<= 0: all) in the given precision mode (CPU bf16 falls back to
 * the f32 kernels on machines without AMX). NULL after printing the error
 * (device missing, not built, out of memory). Free with fk_backend_close. */
struct fk_backend;
struct fk_backend *fk_cli_backend_open(const char *device, int n_threads, int precision);


/* Named output tensors collected by a component, written by cmd_eval.c.
 * fk_eval_out_add copies the data (f32 unless dtype says otherwise). */
typedef struct fk_eval_out fk_eval_out;
fk_status fk_eval_out_add(fk_context *ctx, fk_eval_out *out, const char *name, const fk_tensor *t);

/* Input lookup helper: the named tensor converted to a new owning f32
 * tensor (any float dtype accepted); error names the inputs file and tensor
 * and, if expect_ndim > 0, checks the rank. */
fk_status fk_eval_input_f32(fk_context *ctx, const fk_st_file *in, const char *name, int expect_ndim,
                            fk_tensor *t);

/* Component runners. `in` may be NULL for components without inputs (noise). */
fk_status fk_eval_flux(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
/* Text encoders (eval_text.c): input_ids (L) or (B, L), I64 or I32. */
fk_status fk_eval_clip(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
fk_status fk_eval_t5(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
/* Autoencoder (eval_ae.c): encode.input / decode.input / decode_random.input. */
fk_status fk_eval_ae(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
/* Reference start noise (eval_noise.c): --seed --height --width → noise (bf16). */
fk_status fk_eval_noise(fk_context *ctx, const fk_eval_opts *o, const fk_st_file *in, fk_eval_out *out);
/* bench ae (bench_ae.c): argv[0] is "ae". */
int fk_bench_ae(int argc, char **argv);
/* bench clip | t5 (bench_text.c): argv[0] is the component name. */
int fk_bench_clip(int argc, char **argv);
int fk_bench_t5(int argc, char **argv);
int fk_bench_image(int argc, char **argv);

#endif /* FK_CLI_H */
