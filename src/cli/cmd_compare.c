/* fluxkit compare: relative L2 error of the tensors two safetensors files
 * share, e.g. fluxkit's eval output against a reference io file. */
#include "cli/cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fk_compare_usage(FILE *f) {
    fprintf(f,
            "usage: fluxkit compare [OPTIONS] OUTPUT.safetensors REFERENCE.safetensors\n\n"
            "For every tensor name present in both files (any dtypes, same shape), print\n"
            "the relative L2 error ||out - ref|| / ||ref|| and the largest absolute difference.\n\n"
            "  --tol X        exit 1 when any compared tensor's relative L2 error exceeds X\n"
            "  --only PREFIX  compare only names starting with PREFIX (repeatable)\n"
            "  --json         one JSON object per tensor instead of the table\n"
            "  -h, --help     this message\n");
}

typedef struct fk_compare_row {
    double rel_l2, max_abs;
    int64_t n;
} fk_compare_row;

static fk_status fk_compare_tensor(fk_context *ctx, const fk_st_tensor *a, const fk_st_tensor *b,
                                   fk_compare_row *row) {
    fk_tensor va = fk_st_view(a), vb = fk_st_view(b);
    if (!fk_dtype_is_float(a->dtype) && a->dtype != FK_I64 && a->dtype != FK_I32 && a->dtype != FK_U8)
        return fk_error(ctx, FK_ERR_UNSUPPORTED, "tensor %s: dtype %s not comparable", a->name,
                        fk_dtype_name(a->dtype));
    if (fk_tensor_numel(&va) != fk_tensor_numel(&vb)) {
        char s1[96], s2[96];
        return fk_error(ctx, FK_ERR_SHAPE, "tensor %s: shape %s vs reference %s", a->name,
                        fk_shape_str(&va, s1, sizeof(s1)), fk_shape_str(&vb, s2, sizeof(s2)));
    }
    int64_t n = fk_tensor_numel(&va);
    float *fa = malloc(sizeof(float) * (size_t)(n ? n : 1));
    float *fb = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!fa || !fb) {
        free(fa);
        free(fb);
        return fk_error(ctx, FK_ERR_NOMEM, "out of memory comparing %s", a->name);
    }
    fk_convert_to_f32(fa, a->data, a->dtype, (size_t)n);
    fk_convert_to_f32(fb, b->data, b->dtype, (size_t)n);
    double num = 0, den = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)fa[i] - (double)fb[i];
        num += d * d;
        den += (double)fb[i] * (double)fb[i];
        if (fabs(d) > mx || isnan(d)) mx = isnan(d) ? NAN : fabs(d);
    }
    free(fa);
    free(fb);
    row->rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    row->max_abs = mx;
    row->n = n;
    return FK_OK;
}

int fk_cmd_compare(int argc, char **argv) {
    static const struct option opts[] = {{"tol", required_argument, 0, 't'},
                                         {"only", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    double tol = -1;
    const char *only[32];
    int n_only = 0;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': {
            char *end;
            tol = strtod(optarg, &end);
            if (*end || !(tol >= 0)) {
                fk_cli_error("--tol: expected a non-negative number, got '%s'", optarg);
                return FK_EXIT_USAGE;
            }
            break;
        }
        case 'o':
            if (n_only == 32) {
                fk_cli_error("--only: at most 32 prefixes");
                return FK_EXIT_USAGE;
            }
            only[n_only++] = optarg;
            break;
        case 'j': json = true; break;
        case 'h': fk_compare_usage(stdout); return FK_EXIT_OK;
        default: fk_compare_usage(stderr); return FK_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fk_cli_error("compare: expected two files (OUTPUT REFERENCE)");
        return FK_EXIT_USAGE;
    }
    fk_context *ctx = fk_context_create(1);
    if (!ctx) return FK_EXIT_ERROR;
    fk_st_file *fa = NULL, *fb = NULL;
    int rc = FK_EXIT_OK;
    if (fk_st_open(ctx, argv[optind], &fa) != FK_OK || fk_st_open(ctx, argv[optind + 1], &fb) != FK_OK) {
        fk_cli_error("%s", fk_context_error(ctx));
        rc = FK_EXIT_ERROR;
        goto done;
    }
    int compared = 0, over = 0;
    double worst = 0;
    if (!json) printf("%-40s %12s %12s %10s\n", "tensor", "rel_l2", "max_abs", "elements");
    for (int i = 0; i < fk_st_count(fa); i++) {
        const fk_st_tensor *ta = fk_st_get(fa, i);
        const fk_st_tensor *tb = fk_st_find(fb, ta->name);
        if (!tb) continue;
        if (n_only) {
            bool keep = false;
            for (int k = 0; k < n_only; k++)
                if (!strncmp(ta->name, only[k], strlen(only[k]))) keep = true;
            if (!keep) continue;
        }
        fk_compare_row row = {0, 0, 0};
        if (fk_compare_tensor(ctx, ta, tb, &row) != FK_OK) {
            fk_cli_error("%s", fk_context_error(ctx));
            rc = FK_EXIT_ERROR;
            goto done;
        }
        compared++;
        bool bad = tol >= 0 && !(row.rel_l2 <= tol);
        over += bad;
        if (!(row.rel_l2 <= worst)) worst = row.rel_l2;
        if (json)
            printf("{\"tensor\": \"%s\", \"rel_l2\": %.6e, \"max_abs\": %.6e, \"n\": %lld}\n", ta->name,
                   row.rel_l2, row.max_abs, (long long)row.n);
        else
            printf("%-40s %12.3e %12.3e %10lld%s\n", ta->name, row.rel_l2, row.max_abs, (long long)row.n,
                   bad ? "  EXCEEDS" : "");
    }
    if (compared == 0) {
        fk_cli_error("%s and %s share no tensor names", argv[optind], argv[optind + 1]);
        rc = FK_EXIT_ERROR;
        goto done;
    }
    if (!json)
        printf("compared %d tensors, worst relative L2 %.3e%s\n", compared, worst,
               tol >= 0 ? (over ? " — over tolerance" : " — within tolerance") : "");
    if (over) rc = FK_EXIT_ERROR;
done:
    fk_st_close(fa);
    fk_st_close(fb);
    fk_context_free(ctx);
    return rc;
}
