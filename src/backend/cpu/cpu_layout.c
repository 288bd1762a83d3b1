/* cpu_layout: transpose (channel-major ↔ token-major) and scale_cols (the
 * per-output-channel scale of scaled fp8 checkpoints), fp32 reference.
 *
 * transpose is pure data movement: every path (AVX-512 16×16 and AVX2 8×8
 * register transposes, the portable loop) copies the bits of x, so the
 * result is the same on every ISA and thread count. The work is cut into
 * panels of FK_LAYOUT_PANEL output rows of one batch (disjoint outputs, one
 * thread each); a panel walks the input in FK_LAYOUT_BLOCK × FK_LAYOUT_PANEL
 * blocks (16 KB in, 16 KB out: both stay in L1 while the block's micro
 * tiles are moved), so each input row is read and each output row written
 * in runs of 64 floats (whole cache lines).
 *
 * scale_cols is one f32 multiply per element (x[i, j] · s[j], round to
 * nearest; the SIMD rows of cpu_ew.h give the same bits as the scalar
 * product); s is decoded to f32 once per call with fk_convert_to_f32, into
 * the first thread's scratch, and read by every row. Parallel over rows. */
#include "backend/cpu/cpu_ew.h"

#include <string.h>

/* Output rows per work unit and input rows per block: 64 × 64 measured best
 * of 16..64 × 16..256 on the VAE shapes (512 × 4096 and back: 30-34 GB/s
 * with 2 threads, ~11× the former host loop). */
#define FK_LAYOUT_PANEL 64
#define FK_LAYOUT_BLOCK 64
#define FK_LAYOUT_SERIAL (1 << 15)  /* elements below which one thread does it all */

/* ---- transpose micro tiles: dst (n, ldd) ← src (n, lds)ᵀ for an n × n tile ---- */

/* dst[c·ldd + r] = src[r·lds + c] for r < nr, c < nc (the portable path and
 * the edges of the SIMD paths). */
static void fk_layout_tile_scalar(float *dst, int64_t ldd, const float *src, int64_t lds,
                                  int64_t nr, int64_t nc) {
    for (int64_t c = 0; c < nc; c++) {
        float *d = dst + c * ldd;
        for (int64_t r = 0; r < nr; r++) d[r] = src[r * lds + c];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define FK_LAYOUT_T512 __attribute__((target("avx512f")))
#define FK_LAYOUT_T256 __attribute__((target("avx2")))

/* One 16 × 16 tile through registers: rows interleaved in pairs, then
 * quadruples (shuffle_ps), then 128-bit lanes (shuffle_f32x4) twice. */
FK_LAYOUT_T512 static inline void fk_layout_tile16(float *dst, int64_t ldd, const float *src,
                                                   int64_t lds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* per 128-bit lane k of r[4q + j]: column 4k + j of rows 4q .. 4q+3 */
    for (int q = 0; q < 16; q += 4) {
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    /* t[j] (j < 4): columns j, 8+j of rows 0..7 (lanes: c j r0-3, c 8+j r0-3, c j r4-7,
     * c 8+j r4-7); t[4+j]: columns 4+j, 12+j; t[8..15]: the same for rows 8..15 */
    for (int h = 0; h < 16; h += 8)
        for (int j = 0; j < 4; j++) {
            t[h + j] = _mm512_shuffle_f32x4(r[h + j], r[h + 4 + j], 0x88);
            t[h + 4 + j] = _mm512_shuffle_f32x4(r[h + j], r[h + 4 + j], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        /* column j: lanes 0, 2 of t[j] and of t[8 + j]; column 8 + j: lanes 1, 3 */
        _mm512_storeu_ps(dst + j * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD));
    }
}

/* A block of nr × nc (<= FK_LAYOUT_BLOCK × FK_LAYOUT_PANEL) in 16 × 16 tiles, edges scalar. */
FK_LAYOUT_T512 static void fk_layout_block512(float *dst, int64_t ldd, const float *src,
                                              int64_t lds, int64_t nr, int64_t nc) {
    const int64_t nr16 = nr & ~(int64_t)15, nc16 = nc & ~(int64_t)15;
    for (int64_t c = 0; c < nc16; c += 16)
        for (int64_t r = 0; r < nr16; r += 16)
            fk_layout_tile16(dst + c * ldd + r, ldd, src + r * lds + c, lds);
    if (nr16 < nr) fk_layout_tile_scalar(dst + nr16, ldd, src + nr16 * lds, lds, nr - nr16, nc16);
    if (nc16 < nc) fk_layout_tile_scalar(dst + nc16 * ldd, ldd, src + nc16, lds, nr, nc - nc16);
}

/* One 8 × 8 tile: pairs, quadruples, then the two 128-bit halves. */
FK_LAYOUT_T256 static inline void fk_layout_tile8(float *dst, int64_t ldd, const float *src,
                                                  int64_t lds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int q = 0; q < 8; q += 4) {
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (4 + j) * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}

FK_LAYOUT_T256 static void fk_layout_block256(float *dst, int64_t ldd, const float *src,
                                              int64_t lds, int64_t nr, int64_t nc) {
    const int64_t nr8 = nr & ~(int64_t)7, nc8 = nc & ~(int64_t)7;
    for (int64_t c = 0; c < nc8; c += 8)
        for (int64_t r = 0; r < nr8; r += 8)
            fk_layout_tile8(dst + c * ldd + r, ldd, src + r * lds + c, lds);
    if (nr8 < nr) fk_layout_tile_scalar(dst + nr8, ldd, src + nr8 * lds, lds, nr - nr8, nc8);
    if (nc8 < nc) fk_layout_tile_scalar(dst + nc8 * ldd, ldd, src + nc8, lds, nr, nc - nc8);
}
#endif /* __x86_64__ */

/* dst (nc, ldd) ← src (nr, lds)ᵀ for one block, on the ISA's path. */
static void fk_layout_block(fk_cpu_isa isa, float *dst, int64_t ldd, const float *src,
                            int64_t lds, int64_t nr, int64_t nc) {
#if defined(__x86_64__)
    if (isa == FK_CPU_ISA_AVX512) {
        fk_layout_block512(dst, ldd, src, lds, nr, nc);
        return;
    }
    if (isa == FK_CPU_ISA_AVX2) {
        fk_layout_block256(dst, ldd, src, lds, nr, nc);
        return;
    }
#endif
    (void)isa;
    fk_layout_tile_scalar(dst, ldd, src, lds, nr, nc);
}

void fk_cpu_transpose(fk_backend *be, fk_tensor *y, const fk_tensor *x) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32);
    FK_ASSERT(x->ndim >= 2 && y->ndim == x->ndim);
    const int nd = x->ndim;
    int64_t B = 1; /* x (B, R, C) → y (B, C, R), B the product of the leading dims */
    for (int i = 0; i < nd - 2; i++) {
        FK_ASSERT(y->shape[i] == x->shape[i]);
        B *= x->shape[i];
    }
    const int64_t R = x->shape[nd - 2], C = x->shape[nd - 1];
    FK_ASSERT(y->shape[nd - 2] == C && y->shape[nd - 1] == R);
    const size_t bytes = fk_tensor_nbytes(x);
    if (!bytes) return;
    const char *xb = x->data, *yb = y->data;
    FK_ASSERT(yb + bytes <= xb || xb + bytes <= yb); /* y never aliases x */
    const float *xd = x->data;
    float *yd = y->data;
    const fk_cpu_isa isa = fk_cpu_impl_of(be)->isa;
    const int64_t panels = (C + FK_LAYOUT_PANEL - 1) / FK_LAYOUT_PANEL, units = B * panels;
    int nt = B * R * C < FK_LAYOUT_SERIAL ? 1 : be->n_threads;
    if (nt > units) nt = (int)units;
    (void)nt;
    fk_cpu_not_nested();
    FK_CPU_PARALLEL_FOR(nt)
    for (int64_t u = 0; u < units; u++) {
        const int64_t b = u / panels, c0 = (u % panels) * FK_LAYOUT_PANEL;
        const int64_t nc = C - c0 < FK_LAYOUT_PANEL ? C - c0 : FK_LAYOUT_PANEL;
        const float *xs = xd + b * R * C + c0; /* x[b, :, c0 : c0+nc] */
        float *yp = yd + (b * C + c0) * R;     /* y[b, c0 : c0+nc, :] */
        for (int64_t r0 = 0; r0 < R; r0 += FK_LAYOUT_BLOCK) {
            const int64_t nr = R - r0 < FK_LAYOUT_BLOCK ? R - r0 : FK_LAYOUT_BLOCK;
            fk_layout_block(isa, yp + r0, R, xs + r0 * C, C, nr, nc);
        }
    }
}

/* ---- scale_cols ---- */

void fk_cpu_scale_cols(fk_backend *be, fk_tensor *y, const fk_tensor *x, const fk_tensor *s) {
    FK_ASSERT(x->dtype == FK_F32 && y->dtype == FK_F32 && fk_cpu_weight_dtype_ok(s->dtype));
    const int64_t M = fk_tensor_rows(x), N = fk_tensor_cols(x); /* x, y (M, N) */
    FK_ASSERT(fk_tensor_rows(y) == M && fk_tensor_cols(y) == N);
    FK_ASSERT(fk_tensor_numel(s) == N); /* s (N) */
    if (!M || !N) return;
    const float *xd = x->data;
    float *yd = y->data;
    const char *xb = x->data, *yb = y->data;
    const size_t bytes = fk_tensor_nbytes(x);
    FK_ASSERT(xb == yb || yb + bytes <= xb || xb + bytes <= yb); /* in place or apart */
    fk_cpu_not_nested();
    const fk_ew_kernels *k = fk_ew_kernels_of(fk_cpu_impl_of(be)->isa);
    float *sf = fk_cpu_scratch(be, 0); /* s in f32, chunk by chunk of columns */
    const int64_t chunk = (int64_t)FK_CPU_SCRATCH_FLOATS;
    for (int64_t j0 = 0; j0 < N; j0 += chunk) {
        const int64_t nj = N - j0 < chunk ? N - j0 : chunk;
        const float *sj = sf;
        if (s->dtype == FK_F32) sj = (const float *)s->data + j0;
        else fk_cpu_load_f32(sf, s, j0, nj);
        int nt = M * nj < FK_LAYOUT_SERIAL ? 1 : be->n_threads;
        (void)nt;
        FK_CPU_PARALLEL_FOR(nt)
        for (int64_t i = 0; i < M; i++) {
            const float *xr = xd + i * N + j0;
            float *yr = yd + i * N + j0;
            if (k)
                k->mul(yr, xr, sj, nj);
            else
                for (int64_t j = 0; j < nj; j++) yr[j] = xr[j] * sj[j];
        }
    }
}
