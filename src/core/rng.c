/* rng: Philox4x32-10 counter-based generator. See rng.h for the exact value
 * definitions; everything here is a pure function of (seed, stream, offset). */
#include "core/rng.h"

#include <math.h>

/* Philox constants (Random123): multipliers and Weyl key increments. */
#define FK_PHILOX_M0 0xD2511F53u
#define FK_PHILOX_M1 0xCD9E8D57u
#define FK_PHILOX_W0 0x9E3779B9u
#define FK_PHILOX_W1 0xBB67AE85u

static inline __attribute__((always_inline)) void fk_rng_philox_inline(const uint32_t ctr[4],
                                                                       const uint32_t key[2],
                                                                       uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)FK_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)FK_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += FK_PHILOX_W0; /* the bump after the last round is unused */
        k1 += FK_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void fk_rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    fk_rng_philox_inline(ctr, key, out);
}

/* The 4 words of block `block` of (seed, stream). */
static inline void fk_rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    fk_rng_philox_inline(ctr, key, out);
}

void fk_rng_fill_u32(uint64_t seed, uint64_t stream, uint64_t offset, uint32_t *dst, size_t n) {
    size_t j = 0;
    while (j < n) {
        uint64_t i = offset + j;
        uint32_t w[4];
        fk_rng_block(seed, stream, i >> 2, w);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && j < n; lane++) dst[j++] = w[lane];
    }
}

static inline float fk_rng_word_uniform(uint32_t w) {
    return (float)(w >> 8) * (1.0f / 16777216.0f); /* exact: 24-bit integer · 2⁻²⁴ */
}

void fk_rng_fill_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *dst, size_t n,
                         float lo, float hi) {
    const float span = hi - lo;
    size_t j = 0;
    while (j < n) {
        uint64_t i = offset + j;
        uint32_t w[4];
        fk_rng_block(seed, stream, i >> 2, w);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && j < n; lane++)
            dst[j++] = lo + span * fk_rng_word_uniform(w[lane]);
    }
}

/* Box–Muller on one word pair; z[0] = r·cos θ, z[1] = r·sin θ. */
static inline void fk_rng_box_muller(uint32_t w0, uint32_t w1, double z[2]) {
    const double two_m32 = 1.0 / 4294967296.0;
    double u1 = ((double)w0 + 0.5) * two_m32; /* (0, 1): log is finite */
    double u2 = ((double)w1 + 0.5) * two_m32;
    double r = sqrt(-2.0 * log(u1));
    double theta = 6.283185307179586476925 * u2;
    z[0] = r * cos(theta);
    z[1] = r * sin(theta);
}

void fk_rng_fill_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *dst, size_t n,
                        float mean, float std) {
    const double m = mean, s = std;
    size_t j = 0;
    while (j < n) {
        uint64_t i = offset + j;
        uint32_t w[4];
        fk_rng_block(seed, stream, i >> 2, w);
        double z[4];
        fk_rng_box_muller(w[0], w[1], z);
        fk_rng_box_muller(w[2], w[3], z + 2);
        for (unsigned lane = (unsigned)(i & 3); lane < 4 && j < n; lane++)
            dst[j++] = (float)(m + s * z[lane]);
    }
}

uint64_t fk_rng_stream_from_name(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull; /* FNV prime */
    }
    return h;
}

/* ---- sequential cursor ---------------------------------------------------- */

void fk_rng_init(fk_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->offset = 0;
}

void fk_rng_seek(fk_rng *r, uint64_t offset) { r->offset = offset; }

uint32_t fk_rng_u32(fk_rng *r) {
    uint32_t w;
    fk_rng_fill_u32(r->seed, r->stream, r->offset++, &w, 1);
    return w;
}

uint64_t fk_rng_u64(fk_rng *r) {
    uint32_t w[2];
    fk_rng_fill_u32(r->seed, r->stream, r->offset, w, 2);
    r->offset += 2;
    return (uint64_t)w[0] | ((uint64_t)w[1] << 32);
}

float fk_rng_uniform(fk_rng *r) { return fk_rng_word_uniform(fk_rng_u32(r)); }

double fk_rng_uniform_f64(fk_rng *r) {
    return (double)(fk_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); /* 53 bits · 2⁻⁵³ */
}

float fk_rng_normal(fk_rng *r) {
    float v;
    fk_rng_fill_normal(r->seed, r->stream, r->offset++, &v, 1, 0.0f, 1.0f);
    return v;
}
