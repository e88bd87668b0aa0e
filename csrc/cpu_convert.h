/* cpu_convert.h: 16-bit float conversions for the CPU kernels.
 *
 * bfloat16 is the top half of a float32: widening is a shift, narrowing rounds to nearest even
 * and keeps NaN a (quiet) NaN, exactly as mpitrain/kernels/reference.py does. float16 uses the
 * compiler's _Float16, which F16C turns into vector conversions.
 */
#ifndef MT_CPU_CONVERT_H
#define MT_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if (f != f) return (uint16_t)((bits >> 16) | 0x0040);          /* quiet NaN, sign kept */
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);  /* nearest, ties to even */
}

static inline float f16_to_f32(_Float16 h) { return (float)h; }
static inline _Float16 f32_to_f16(float f) { return (_Float16)f; }

#endif
