/* cpu_backend: the CPU op table (fp32 reference), supports(), memory
 * functions, run-time ISA detection and fk_backend_cpu_create. */
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

/* ---- instruction-set detection ---- */

bool fk_cpu_isa_available(fk_cpu_isa isa) {
    switch (isa) {
    case FK_CPU_ISA_PORTABLE: return true;
#if defined(__x86_64__)
    case FK_CPU_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FK_CPU_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f");
#else
    case FK_CPU_ISA_AVX2:
    case FK_CPU_ISA_AVX512: return false;
#endif
    case FK_CPU_ISA_COUNT: break;
    }
    return false;
}

fk_cpu_isa fk_cpu_isa_detect(void) {
    if (fk_cpu_isa_available(FK_CPU_ISA_AVX512)) return FK_CPU_ISA_AVX512;
    if (fk_cpu_isa_available(FK_CPU_ISA_AVX2)) return FK_CPU_ISA_AVX2;
    return FK_CPU_ISA_PORTABLE;
}

const char *fk_cpu_isa_name(fk_cpu_isa isa) {
    switch (isa) {
    case FK_CPU_ISA_PORTABLE: return "portable";
    case FK_CPU_ISA_AVX2: return "avx2";
    case FK_CPU_ISA_AVX512: return "avx512";
    case FK_CPU_ISA_COUNT: break;
    }
    return "?";
}

/* ---- helpers ---- */

bool fk_cpu_weight_dtype_ok(fk_dtype t) { return fk_dtype_is_float(t); }

void fk_cpu_load_f32(float *dst, const fk_tensor *t, int64_t offset, int64_t n) {
    size_t esz = fk_dtype_size(t->dtype);
    fk_convert_to_f32(dst, (const char *)t->data + (size_t)offset * esz, t->dtype, (size_t)n);
}

/* ---- supports ---- */

/* Operand i of srcs: FK_DTYPE_COUNT when absent. */
static fk_dtype fk_cpu_src_dtype(const fk_tensor *const *srcs, int n, int i) {
    return (srcs && i < n && srcs[i]) ? srcs[i]->dtype : FK_DTYPE_COUNT;
}

static bool fk_cpu_f32_or_absent(const fk_tensor *const *srcs, int n, int i) {
    fk_dtype t = fk_cpu_src_dtype(srcs, n, i);
    return t == FK_F32 || t == FK_DTYPE_COUNT;
}

static bool fk_cpu_weight_or_absent(const fk_tensor *const *srcs, int n, int i) {
    fk_dtype t = fk_cpu_src_dtype(srcs, n, i);
    return t == FK_DTYPE_COUNT || fk_cpu_weight_dtype_ok(t);
}

/* All present operands among the first `count` share one dtype. */
static bool fk_cpu_same_dtype(const fk_tensor *const *srcs, int n, int count) {
    fk_dtype first = FK_DTYPE_COUNT;
    for (int i = 0; i < count; i++) {
        fk_dtype t = fk_cpu_src_dtype(srcs, n, i);
        if (t == FK_DTYPE_COUNT) continue;
        if (first == FK_DTYPE_COUNT) first = t;
        else if (t != first) return false;
    }
    return true;
}

/* Operands [i0, i1) f32 or absent. */
static bool fk_cpu_f32_range(const fk_tensor *const *srcs, int n, int i0, int i1) {
    for (int i = i0; i < i1; i++)
        if (!fk_cpu_f32_or_absent(srcs, n, i)) return false;
    return true;
}

static bool fk_cpu_all_f32(const fk_tensor *const *srcs, int n, int count) {
    return fk_cpu_f32_range(srcs, n, 0, count);
}

/* The activation operands among the first `count` of a product (x at
 * index xi gives the rows): f32 or absent, or bf16 where the bf16 product
 * takes them (fk_cpu_bf16_io_ok). */
static bool fk_cpu_product_acts_ok(const fk_backend *be, const fk_tensor *const *srcs, int n,
                                   int count, int xi) {
    for (int i = 0; i < count; i++) {
        fk_dtype t = fk_cpu_src_dtype(srcs, n, i);
        if (t == FK_F32 || t == FK_DTYPE_COUNT) continue;
        const fk_tensor *x = xi < n ? srcs[xi] : NULL;
        if (t != FK_BF16 || !x || !fk_cpu_bf16_io_ok(be, fk_tensor_rows(x))) return false;
    }
    return true;
}

/* Operands [i0, i1) of attention, or rmsnorm_rope's y: f32 or absent, or
 * bf16 where fk_cpu_bf16_attention_io_ok holds for them. */
static bool fk_cpu_attention_acts_ok(const fk_backend *be, const fk_tensor *const *srcs, int n,
                                     int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        fk_dtype t = fk_cpu_src_dtype(srcs, n, i);
        if (t == FK_F32 || t == FK_DTYPE_COUNT) continue;
        if (t != FK_BF16 || !fk_cpu_bf16_attention_io_ok(be, srcs[i])) return false;
    }
    return true;
}

/* The y (M, N) of linear_rmsnorm_rope (srcs: y, x, w, b, scale, pe): f32 or
 * absent, or bf16 where rmsnorm_rope takes it as (M, N / D, D). */
static bool fk_cpu_rope_y_ok(const fk_backend *be, const fk_tensor *const *srcs, int n) {
    const fk_dtype t = fk_cpu_src_dtype(srcs, n, 0);
    if (t == FK_F32 || t == FK_DTYPE_COUNT) return true;
    const fk_tensor *y = srcs[0], *sc = n > 4 ? srcs[4] : NULL;
    if (t != FK_BF16 || !sc || y->ndim != 2) return false;
    const int64_t D = fk_tensor_numel(sc);
    if (D <= 0 || y->shape[1] % D) return false;
    const fk_tensor y3 = fk_view3(FK_BF16, NULL, y->shape[0], y->shape[1] / D, D);
    return fk_cpu_bf16_attention_io_ok(be, &y3);
}

static bool fk_cpu_supports(const fk_backend *be, fk_op op, const fk_tensor *const *srcs,
                            int n_srcs) {
    for (int i = 0; srcs && i < n_srcs; i++) {
        if (srcs[i] && srcs[i]->device != FK_DEVICE_CPU) return false;
        if (srcs[i] && srcs[i]->layout != FK_LAYOUT_ROWS &&
            !fk_cpu_tiles_ok(be, op, srcs, n_srcs, i)) /* tiled bf16 activations */
            return false;
    }
    switch (op) {
    case FK_OP_LINEAR: /* y, x, w, b */
    case FK_OP_LINEAR_ACT: /* y, x, w, b */
        return fk_cpu_product_acts_ok(be, srcs, n_srcs, 2, 1) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 2) && fk_cpu_weight_or_absent(srcs, n_srcs, 3);
    case FK_OP_LINEAR_CAT: /* y, x1, x2, w, b */
        return fk_cpu_product_acts_ok(be, srcs, n_srcs, 3, 1) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 3) && fk_cpu_weight_or_absent(srcs, n_srcs, 4);
    case FK_OP_LAYERNORM: /* y, x, w, b */
    case FK_OP_CONV2D: /* y, x, w, b */
    case FK_OP_GROUP_NORM: /* y, x, w, b */
        return fk_cpu_all_f32(srcs, n_srcs, 2) && fk_cpu_weight_or_absent(srcs, n_srcs, 2) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 3);
    case FK_OP_RMSNORM: /* y, x, scale */
        return fk_cpu_all_f32(srcs, n_srcs, 2) && fk_cpu_weight_or_absent(srcs, n_srcs, 2);
    case FK_OP_RMSNORM_ROPE: /* y (bf16 as attention's q or k), x, scale, pe */
        return fk_cpu_attention_acts_ok(be, srcs, n_srcs, 0, 1) &&
               fk_cpu_f32_or_absent(srcs, n_srcs, 1) && fk_cpu_weight_or_absent(srcs, n_srcs, 2) &&
               fk_cpu_f32_or_absent(srcs, n_srcs, 3);
    case FK_OP_LINEAR_RMSNORM_ROPE: /* y (rmsnorm_rope's, as (M, N/D, D)), x, w, b, scale, pe */
        return fk_cpu_rope_y_ok(be, srcs, n_srcs) &&
               fk_cpu_product_acts_ok(be, srcs, n_srcs, 2, 1) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 2) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 3) &&
               fk_cpu_weight_or_absent(srcs, n_srcs, 4) && fk_cpu_f32_or_absent(srcs, n_srcs, 5);
    case FK_OP_LAYERNORM_MODULATE: /* y, x, shift, scale; y bf16 as a product's input */
        return fk_cpu_product_acts_ok(be, srcs, n_srcs, 1, 1) &&
               fk_cpu_f32_range(srcs, n_srcs, 1, 4);
    case FK_OP_SILU:
    case FK_OP_GELU_TANH:
    case FK_OP_GELU_QUICK:
    case FK_OP_SOFTMAX: return fk_cpu_all_f32(srcs, n_srcs, 2);    /* y, x */
    case FK_OP_ATTENTION: /* out, q, k, v (bf16 where the AMX attention runs), bias */
        return fk_cpu_attention_acts_ok(be, srcs, n_srcs, 0, 4) &&
               fk_cpu_f32_or_absent(srcs, n_srcs, 4);
    case FK_OP_ROPE: return fk_cpu_all_f32(srcs, n_srcs, 2);       /* x, pe */
    case FK_OP_ADD:
    case FK_OP_MUL: return fk_cpu_all_f32(srcs, n_srcs, 3);        /* y, a, b */
    case FK_OP_MODULATE: return fk_cpu_all_f32(srcs, n_srcs, 4);   /* y, x, shift, scale */
    case FK_OP_GATED_ADD: return fk_cpu_all_f32(srcs, n_srcs, 3);  /* x, y, gate */
    case FK_OP_CONCAT_ROWS:                                        /* out, a, b */
    case FK_OP_SPLIT_ROWS: return fk_cpu_same_dtype(srcs, n_srcs, 3); /* a, b, in */
    case FK_OP_COPY_COLS: return fk_cpu_same_dtype(srcs, n_srcs, 2);  /* dst, src */
    case FK_OP_UPSAMPLE_NEAREST2X: return fk_cpu_all_f32(srcs, n_srcs, 2); /* y, x */
    case FK_OP_TRANSPOSE: return fk_cpu_all_f32(srcs, n_srcs, 2);  /* y, x */
    case FK_OP_SCALE_COLS: /* y, x, s */
        return fk_cpu_all_f32(srcs, n_srcs, 2) && fk_cpu_weight_or_absent(srcs, n_srcs, 2);
    case FK_OP_COUNT: break;
    }
    return false;
}

/* ---- memory ---- */

static void *fk_cpu_alloc(fk_backend *be, size_t bytes) {
    (void)be;
    return fk_alloc(bytes);
}

static void fk_cpu_free(fk_backend *be, void *p) {
    (void)be;
    fk_free(p);
}

static void fk_cpu_copy(fk_backend *be, void *dst, const void *src, size_t nbytes) {
    (void)be;
    if (nbytes && dst != src) memmove(dst, src, nbytes);
}

static void fk_cpu_synchronize(fk_backend *be) { (void)be; }

/* ---- create / destroy ---- */

static void fk_cpu_destroy(fk_backend *be) {
    if (!be) return;
    fk_cpu_impl *impl = be->impl;
    if (impl) {
        fk_free(impl->scratch);
        fk_free(impl->ranges);
        fk_cpu_bf16_release(impl); /* bf16 workspace (cpu_amx.c) */
        fk_cpu_wcache_free(impl);
    }
    free(impl);
    free(be);
}

fk_backend *fk_backend_cpu_create_isa(int n_threads, fk_cpu_isa isa) {
    if (!fk_cpu_isa_available(isa)) return NULL;
    if (n_threads <= 0) n_threads = fk_cpu_count();
#ifndef FK_HAVE_OPENMP
    n_threads = 1; /* no threading without OpenMP */
#endif
    fk_backend *be = calloc(1, sizeof(*be));
    fk_cpu_impl *impl = calloc(1, sizeof(*impl));
    uint64_t bytes = 0;
    float *scratch = NULL;
    uint64_t *ranges = NULL;
    if (fk_mul_ok((uint64_t)n_threads, FK_CPU_SCRATCH_FLOATS * sizeof(float), &bytes)) {
        scratch = fk_alloc((size_t)bytes);
        ranges = fk_alloc((size_t)n_threads * 8 * sizeof(uint64_t));
    }
    if (!be || !impl || !scratch || !ranges) {
        free(be);
        free(impl);
        fk_free(scratch);
        fk_free(ranges);
        return NULL;
    }
    impl->isa = isa;
    impl->n_threads = n_threads;
    impl->scratch = scratch;
    impl->ranges = ranges;

    be->name = "cpu";
    be->device = FK_DEVICE_CPU;
    be->n_threads = n_threads;
    be->impl = impl;
    be->supports = fk_cpu_supports;
    be->destroy = fk_cpu_destroy;
    be->alloc = fk_cpu_alloc;
    be->free = fk_cpu_free;
    be->upload = fk_cpu_copy;
    be->download = fk_cpu_copy;
    be->synchronize = fk_cpu_synchronize;
    be->cache_weight = fk_cpu_cache_weight; /* cpu_amx.c */
    be->uncache_weights = fk_cpu_uncache_weights;

    be->linear = fk_cpu_linear;
    be->linear_act = fk_cpu_linear_act; /* cpu_fused.c */
    be->linear_multi = fk_cpu_linear_multi;
    be->linear_cat = fk_cpu_linear_cat;
    be->layernorm_modulate = fk_cpu_layernorm_modulate;
    be->rmsnorm_rope = fk_cpu_rmsnorm_rope;
    be->linear_rmsnorm_rope = fk_cpu_linear_rmsnorm_rope; /* cpu_fused.c */
    be->layernorm = fk_cpu_layernorm;
    be->rmsnorm = fk_cpu_rmsnorm;
    be->silu = fk_cpu_silu;
    be->gelu_tanh = fk_cpu_gelu_tanh;
    be->gelu_quick = fk_cpu_gelu_quick;
    be->softmax = fk_cpu_softmax;
    be->attention = fk_cpu_attention;
    be->rope = fk_cpu_rope;
    be->add = fk_cpu_add;
    be->mul = fk_cpu_mul;
    be->modulate = fk_cpu_modulate;
    be->gated_add = fk_cpu_gated_add;
    be->concat_rows = fk_cpu_concat_rows;
    be->split_rows = fk_cpu_split_rows;
    be->copy_cols = fk_cpu_copy_cols;
    be->conv2d = fk_cpu_conv2d; /* cpu_conv.c */
    be->group_norm = fk_cpu_group_norm;
    be->upsample_nearest2x = fk_cpu_upsample_nearest2x;
    be->transpose = fk_cpu_transpose; /* cpu_layout.c */
    be->scale_cols = fk_cpu_scale_cols;
    return be;
}

fk_backend *fk_backend_cpu_create(int n_threads) {
    return fk_backend_cpu_create_isa(n_threads, fk_cpu_isa_detect());
}
