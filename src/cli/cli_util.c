/* cli_util: shared helpers of the fluxkit subcommands. */
#include "cli/cli_util.h"
#include "backend/backend_open.h"
#include "backend/cpu/cpu.h"
#include "model/flux.h"

#include <cJSON.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fk_cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fluxkit: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int fk_cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fluxkit %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'fluxkit %s --help')\n", cmd);
    va_end(ap);
    return FK_EXIT_USAGE;
}

int fk_cli_getopt_failure(const char *cmd, char **argv, int c) {
    /* optind has moved past the offending argument (for a missing value it
     * points past the option itself). */
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':') {
        if (optopt && !(arg[0] == '-' && arg[1] == '-'))
            return fk_cli_usage(cmd, "option '-%c' needs a value", optopt);
        return fk_cli_usage(cmd, "option '%s' needs a value", arg);
    }
    if (optopt && !(arg[0] == '-' && arg[1] == '-'))
        return fk_cli_usage(cmd, "unknown option '-%c'", optopt);
    return fk_cli_usage(cmd, "unknown or ambiguous option '%s'", arg);
}

void fk_cli_getopt_reset(void) {
    optind = 0; /* glibc: 0 re-initializes the scanner (GNU permutation) */
    opterr = 0;
    optopt = 0;
}

int fk_cli_fail(const fk_context *ctx) {
    const char *msg = fk_context_error(ctx);
    fk_cli_error("%s", msg && msg[0] ? msg : "unknown error");
    return FK_EXIT_ERROR;
}

bool fk_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = (s && *s) ? strtol(s, &end, 10) : 0;
    if (!s || !*s || errno || !end || *end != '\0') {
        fprintf(stderr, "fluxkit: option %s: '%s' is not an integer\n", opt, s ? s : "");
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "fluxkit: option %s: %ld is out of range [%ld, %ld]\n", opt, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool fk_cli_parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') {
        fprintf(stderr, "fluxkit: option %s: '%s' is not a non-negative integer\n", opt, s ? s : "");
        return false;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !end || *end != '\0') {
        fprintf(stderr, "fluxkit: option %s: '%s' is not a non-negative integer below 2^64\n", opt, s);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* value / unit with 3 significant digits: "6.37", "12.6", "512" */
static void fk_cli_fmt_scaled(double v, const char *unit, char *buf, size_t n) {
    if (v < 9.995)
        snprintf(buf, n, "%.2f %s", v, unit);
    else if (v < 99.95)
        snprintf(buf, n, "%.1f %s", v, unit);
    else
        snprintf(buf, n, "%.0f %s", v, unit);
}

const char *fk_cli_fmt_bytes(uint64_t bytes, char *buf, size_t n) {
    static const char *units[] = {"kB", "MB", "GB", "TB", "PB"};
    if (bytes < 1000) {
        snprintf(buf, n, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes;
    int u = -1;
    while (v >= 999.5 && u < 4) {
        v /= 1000.0;
        u++;
    }
    fk_cli_fmt_scaled(v, units[u], buf, n);
    return buf;
}

const char *fk_cli_fmt_count(int64_t count, char *buf, size_t n) {
    static const char *units[] = {"K", "M", "B", "T"};
    if (count < 1000 && count > -1000) {
        snprintf(buf, n, "%" PRId64, count);
        return buf;
    }
    double v = (double)count;
    const char *sign = "";
    if (v < 0) {
        sign = "-";
        v = -v;
    }
    int u = -1;
    while (v >= 999.5 && u < 3) {
        v /= 1000.0;
        u++;
    }
    char tmp[48];
    fk_cli_fmt_scaled(v, units[u], tmp, sizeof(tmp));
    snprintf(buf, n, "%s%s", sign, tmp);
    return buf;
}

const char *fk_cli_fmt_grouped(int64_t v, char *buf, size_t n) {
    char digits[32];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    snprintf(digits, sizeof(digits), "%" PRIu64, mag);
    char out[48];
    size_t len = strlen(digits), o = 0;
    if (v < 0) out[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    snprintf(buf, n, "%s", out);
    return buf;
}

bool fk_cli_path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

bool fk_cli_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- progress line ------------------------------------------------------- */

void fk_cli_progress_begin(fk_cli_progress *p, const char *label, uint64_t total) {
    memset(p, 0, sizeof(*p));
    p->enabled = isatty(STDERR_FILENO) != 0;
    p->label = label;
    p->total = total;
    p->t_start = fk_time();
    p->t_last = 0;
}

void fk_cli_progress_update(fk_cli_progress *p, uint64_t done, const char *what) {
    if (!p->enabled) return;
    double now = fk_time();
    if (done < p->total && now - p->t_last < 0.1) return;
    p->t_last = now;
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    double el = now - p->t_start;
    double eta = (done > 0 && done < p->total) ? el * (double)(p->total - done) / (double)done : 0;
    char a[32], b[32];
    fprintf(stderr, "\r\033[K%s %5.1f%%  %s / %s  %.0fs elapsed, ~%.0fs left  %.40s", p->label, pct,
            fk_cli_fmt_bytes(done, a, sizeof(a)), fk_cli_fmt_bytes(p->total, b, sizeof(b)), el, eta,
            what ? what : "");
    fflush(stderr);
}

void fk_cli_progress_end(fk_cli_progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

/* ---- JSON of a FLUX config ---------------------------------------------- */

struct cJSON *fk_cli_flux_config_json(const fk_flux_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "axes_dim", cJSON_CreateIntArray(c->axes_dim, 3));
    cJSON_AddNumberToObject(o, "context_in_dim", c->context_dim);
    cJSON_AddNumberToObject(o, "depth", c->depth_double);
    cJSON_AddNumberToObject(o, "depth_single_blocks", c->depth_single);
    cJSON_AddBoolToObject(o, "guidance_embed", c->guidance_embed);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "mlp_ratio", c->hidden > 0 ? (double)c->mlp_hidden / c->hidden : 0.0);
    cJSON_AddNumberToObject(o, "num_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddNumberToObject(o, "theta", c->theta);
    cJSON_AddNumberToObject(o, "vec_in_dim", c->vec_dim);
    return o;
}

bool fk_cli_parse_precision(const char *opt, const char *s, int *out) {
    if (!strcmp(s, "f32") || !strcmp(s, "fp32")) {
        *out = FK_PREC_F32;
        return true;
    }
    if (!strcmp(s, "bf16")) {
        *out = FK_PREC_BF16;
        return true;
    }
    fk_cli_error("option %s: expected f32 or bf16, got '%s'", opt, s);
    return false;
}

const char *fk_cli_precision_name(int precision) { return precision == FK_PREC_BF16 ? "bf16" : "f32"; }

bool fk_cli_parse_device(const char *opt, const char *s) {
    if (fk_backend_device_name_ok(s)) return true;
    fk_cli_error("option %s: expected cpu, cuda, cuda:N (N = 0, 1, ...) or devsim, got '%s'", opt, s);
    return false;
}

fk_backend *fk_cli_backend_open(const char *device, int n_threads, int precision) {
    fk_context *ctx = fk_context_create(n_threads);
    if (!ctx) {
        fk_cli_error("out of memory");
        return NULL;
    }
    fk_backend *be = NULL;
    if (fk_backend_open(ctx, device, n_threads, precision == FK_PREC_BF16 ? FK_PREC_BF16 : FK_PREC_F32,
                        &be) != FK_OK)
        fk_cli_error("%s", fk_context_error(ctx));
    fk_context_free(ctx);
    return be;
}

