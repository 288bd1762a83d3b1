/* rng: a counter-based random number generator (Philox4x32-10, Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * Every value is a pure function of (seed, stream, offset):
 *   key     = (seed low 32 bits, seed high 32 bits)
 *   counter = (block low, block high, stream low, stream high), block = offset / 4
 *   the 4 output words of block b are the 32-bit values at offsets 4b .. 4b+3.
 * So any slice of any stream can be generated independently (and in
 * parallel) and gives the same numbers as generating the whole stream.
 *
 * Value definitions, per offset i of a stream:
 *   u32(i)      = word i
 *   uniform(i)  = (u32(i) >> 8) · 2⁻²⁴                 in [0, 1), 24 bits
 *   normal(i)   Box–Muller on the word pair (2⌊i/2⌋, 2⌊i/2⌋+1):
 *               u1 = (w0 + 0.5) · 2⁻³², u2 = (w1 + 0.5) · 2⁻³²  (both in (0, 1))
 *               r = √(−2 ln u1), θ = 2π·u2
 *               normal(2k) = r·cos θ, normal(2k+1) = r·sin θ   (computed in double,
 *               rounded once to float; |value| ≤ 6.8)
 *
 * This is NOT the PyTorch-compatible generator (torch.randn with a CPU
 * Generator uses mt19937); that one lives elsewhere and is needed to
 * reproduce reference noise bit for bit.
 */
#ifndef FK_RNG_H
#define FK_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Philox4x32-10 block function: out = philox(ctr, key). */
void fk_rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* ---- stateless, parallel-friendly fills --------------------------------
 * dst[j] = value(seed, stream, offset + j) for j < n. */
void fk_rng_fill_u32(uint64_t seed, uint64_t stream, uint64_t offset, uint32_t *dst, size_t n);
/* uniform in [lo, hi): lo + (hi − lo)·uniform(i), computed in float. */
void fk_rng_fill_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *dst, size_t n,
                         float lo, float hi);
/* mean + std·normal(i), computed in double, rounded once to float. */
void fk_rng_fill_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *dst, size_t n,
                        float mean, float std);

/* A stream number derived from a name (FNV-1a 64), e.g. a tensor name, so a
 * tensor's random values do not depend on which other tensors exist. */
uint64_t fk_rng_stream_from_name(const char *name);

/* ---- sequential generator ----------------------------------------------
 * A cursor over one (seed, stream). Every draw returns the value at the
 * cursor's offset by the definitions above and advances it (fk_rng_u64 and
 * fk_rng_uniform_f64 by two), so normals drawn one by one equal
 * fk_rng_fill_normal from the same offset. For bulk use prefer the fills. */
typedef struct fk_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset; /* next offset to consume */
} fk_rng;

void fk_rng_init(fk_rng *r, uint64_t seed, uint64_t stream);
void fk_rng_seek(fk_rng *r, uint64_t offset);
uint32_t fk_rng_u32(fk_rng *r);
uint64_t fk_rng_u64(fk_rng *r);        /* two words: low = offset i, high = i+1 */
float fk_rng_uniform(fk_rng *r);       /* [0, 1) */
double fk_rng_uniform_f64(fk_rng *r);  /* [0, 1), 53 bits from two words */
float fk_rng_normal(fk_rng *r);        /* N(0, 1) = normal(offset) */

#endif /* FK_RNG_H */
