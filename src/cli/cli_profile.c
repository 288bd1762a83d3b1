/* cli_profile: op profile tables (see cli_profile.h). */
#include "cli/cli_profile.h"

#include <string.h>

const char *fk_cli_profile_class(fk_op op, int small) {
    switch (op) {
    case FK_OP_LINEAR:
    case FK_OP_LINEAR_ACT:
    case FK_OP_LINEAR_CAT:
    case FK_OP_LINEAR_RMSNORM_ROPE: return small ? "gemv" : "matmul";
    case FK_OP_ATTENTION: return "attention";
    case FK_OP_CONV2D: return "conv";
    default: return "other";
    }
}

static const char *const fk_cli_profile_classes[] = {"matmul", "attention", "conv", "gemv", "other"};
#define FK_CLI_NCLASS 5

typedef struct fk_cli_class_sum {
    double seconds, flops, bytes;
    int64_t calls;
} fk_cli_class_sum;

static void fk_cli_profile_sums(const fk_op_stats st[FK_OP_COUNT][2],
                                fk_cli_class_sum sums[FK_CLI_NCLASS], double *total) {
    memset(sums, 0, sizeof(fk_cli_class_sum) * FK_CLI_NCLASS);
    *total = 0;
    for (int op = 0; op < FK_OP_COUNT; op++)
        for (int sm = 0; sm < 2; sm++) {
            const fk_op_stats *s = &st[op][sm];
            if (!s->calls) continue;
            const char *cl = fk_cli_profile_class((fk_op)op, sm);
            for (int i = 0; i < FK_CLI_NCLASS; i++)
                if (!strcmp(cl, fk_cli_profile_classes[i])) {
                    sums[i].seconds += s->seconds;
                    sums[i].flops += s->flops;
                    sums[i].bytes += s->bytes;
                    sums[i].calls += s->calls;
                }
            *total += s->seconds;
        }
}

static void fk_cli_profile_rate(char *buf, size_t n, double flops, double bytes, double sec) {
    if (sec <= 0) snprintf(buf, n, "%9s %8s", "-", "-");
    else if (flops > 0) snprintf(buf, n, "%9.3f %8s", flops / sec * 1e-12, "-");
    else snprintf(buf, n, "%9s %8.1f", "-", bytes / sec * 1e-9);
}

void fk_cli_profile_print(FILE *f, const fk_backend *prof, double per, double wall) {
    fk_op_stats st[FK_OP_COUNT][2];
    fk_backend_profile_get(prof, st);
    fk_cli_class_sum sums[FK_CLI_NCLASS];
    double total;
    fk_cli_profile_sums(st, sums, &total);
    if (per <= 0) per = 1;
    double base = wall > 0 ? wall : total;
    char rate[64];
    fprintf(f, "  %-22s %-9s %8s %10s %7s %9s %8s\n", "op", "class", "calls", "ms/run", "share",
            "TFLOP/s", "GB/s");
    for (int op = 0; op < FK_OP_COUNT; op++)
        for (int sm = 0; sm < 2; sm++) {
            const fk_op_stats *s = &st[op][sm];
            if (!s->calls) continue;
            char name[48];
            snprintf(name, sizeof(name), "%s%s", fk_op_name((fk_op)op), sm ? " (M<=32)" : "");
            fk_cli_profile_rate(rate, sizeof(rate), s->flops, s->bytes, s->seconds);
            fprintf(f, "  %-22s %-9s %8.0f %10.2f %6.1f%% %s\n", name,
                    fk_cli_profile_class((fk_op)op, sm), (double)s->calls / per,
                    s->seconds / per * 1e3, base > 0 ? 100.0 * s->seconds / base : 0.0, rate);
        }
    for (int i = 0; i < FK_CLI_NCLASS; i++) {
        if (!sums[i].calls) continue;
        fk_cli_profile_rate(rate, sizeof(rate), sums[i].flops, sums[i].bytes, sums[i].seconds);
        fprintf(f, "  %-22s %-9s %8.0f %10.2f %6.1f%% %s\n", "= class total", fk_cli_profile_classes[i],
                (double)sums[i].calls / per, sums[i].seconds / per * 1e3,
                base > 0 ? 100.0 * sums[i].seconds / base : 0.0, rate);
    }
    if (wall > 0)
        fprintf(f, "  %-22s %-9s %8s %10.2f %6.1f%%\n", "outside the ops", "", "",
                (wall - total) / per * 1e3, 100.0 * (wall - total) / wall);
}

void fk_cli_profile_json(FILE *f, const fk_backend *prof, double per) {
    fk_op_stats st[FK_OP_COUNT][2];
    fk_backend_profile_get(prof, st);
    fk_cli_class_sum sums[FK_CLI_NCLASS];
    double total;
    fk_cli_profile_sums(st, sums, &total);
    if (per <= 0) per = 1;
    fprintf(f, "\"profile\": {\"ops\": [");
    bool first = true;
    for (int op = 0; op < FK_OP_COUNT; op++)
        for (int sm = 0; sm < 2; sm++) {
            const fk_op_stats *s = &st[op][sm];
            if (!s->calls) continue;
            fprintf(f, "%s{\"op\": \"%s\", \"class\": \"%s\", \"calls\": %.1f, \"s\": %.6f, "
                       "\"tflops\": %.4f, \"gbs\": %.3f}",
                    first ? "" : ", ", fk_op_name((fk_op)op), fk_cli_profile_class((fk_op)op, sm),
                    (double)s->calls / per, s->seconds / per,
                    s->seconds > 0 ? s->flops / s->seconds * 1e-12 : 0.0,
                    s->seconds > 0 ? s->bytes / s->seconds * 1e-9 : 0.0);
            first = false;
        }
    fprintf(f, "], \"classes\": [");
    first = true;
    for (int i = 0; i < FK_CLI_NCLASS; i++) {
        if (!sums[i].calls) continue;
        fprintf(f, "%s{\"class\": \"%s\", \"s\": %.6f, \"tflops\": %.4f, \"gbs\": %.3f}",
                first ? "" : ", ", fk_cli_profile_classes[i], sums[i].seconds / per,
                sums[i].seconds > 0 ? sums[i].flops / sums[i].seconds * 1e-12 : 0.0,
                sums[i].seconds > 0 ? sums[i].bytes / sums[i].seconds * 1e-9 : 0.0);
        first = false;
    }
    fprintf(f, "], \"ops_s\": %.6f}", total / per);
}
