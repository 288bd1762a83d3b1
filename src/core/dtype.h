/* dtype: element types and exact conversions to and from f32.
 * Conversions round to nearest, ties to even; NaN stays NaN; values beyond
 * the target's range become ±Inf (f16, bf16, e5m2) or NaN (e4m3fn, which has
 * no Inf: saturating is a separate function). */
#ifndef FK_DTYPE_H
#define FK_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fk_dtype {
    FK_F64 = 0,
    FK_F32,
    FK_F16,
    FK_BF16,
    FK_F8_E4M3, /* float8_e4m3fn: no Inf, NaN = S.1111.111, max 448 */
    FK_F8_E5M2, /* float8_e5m2: IEEE-like, max 57344 */
    FK_I64,
    FK_I32,
    FK_I16,
    FK_I8,
    FK_U8,
    FK_BOOL,
    FK_DTYPE_COUNT
} fk_dtype;

/* Bytes per element. */
size_t fk_dtype_size(fk_dtype t);
/* Safetensors name ("F32", "BF16", "F8_E4M3", ...). */
const char *fk_dtype_name(fk_dtype t);
/* Parse a safetensors dtype name; returns false if unknown. */
bool fk_dtype_parse(const char *name, fk_dtype *out);
/* True for F64, F32, F16, BF16, F8_*. */
bool fk_dtype_is_float(fk_dtype t);

/* Scalar conversions (exact, RNE). */
float fk_bf16_to_f32(uint16_t h);
uint16_t fk_f32_to_bf16(float f);
float fk_f16_to_f32(uint16_t h);
uint16_t fk_f32_to_f16(float f);
float fk_e4m3_to_f32(uint8_t b);
uint8_t fk_f32_to_e4m3(float f);      /* out of range → NaN (0x7f/0xff) */
uint8_t fk_f32_to_e4m3_sat(float f);  /* out of range → ±448 */
float fk_e5m2_to_f32(uint8_t b);
uint8_t fk_f32_to_e5m2(float f);

/* Row conversions: n elements from src (dtype t) to f32 and back.
 * Any fk_dtype is accepted on the f32 side (integers convert by value,
 * BOOL to 0/1). Vectorized where it matters. */
void fk_convert_to_f32(float *dst, const void *src, fk_dtype t, size_t n);
void fk_convert_from_f32(void *dst, fk_dtype t, const float *src, size_t n);

#endif /* FK_DTYPE_H */
