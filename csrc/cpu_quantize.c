/* cpu_quantize.c: block quantization of DiLoCo's outer gradients on the CPU.
 *
 * quantize:   for each block of MT_QBLOCK floats, scale = max|x| / L (L = 127 for 8 bits, 7 for
 *             4 bits), code = round-half-even(x / scale) clamped to [-L, L]; a block of zeros has
 *             scale 0 and codes 0. 8 bits: one int8 per element; 4 bits: two codes per byte,
 *             (code + 8) in the low nibble for the even element, in the high for the odd one.
 * dequantize: out = code * scale (accumulate: out += code * scale), for the first n elements.
 * The same arithmetic as mpitrain/parallel/compress.py's torch version, element for element
 * (float32 division, nearbyintf in the default rounding mode), so both give the same bytes.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "mt_common.h"
#include "quantize_format.h"

static int levels_of(int bits) { return bits == 8 ? 127 : bits == 4 ? 7 : 0; }

MT_API int mt_cpu_quantize(const float *x, int64_t n, int bits, void *codes, float *scales)
{
    int levels = levels_of(bits);
    if (!levels) MT_FAIL("quantize: bits %d, expected 8 or 4", bits);
    if (n < 0) MT_FAIL("quantize: n %lld < 0", (long long)n);
    int64_t blocks = (n + MT_QBLOCK - 1) / MT_QBLOCK;
#pragma omp parallel for schedule(static) if (blocks > 64)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t lo = b * MT_QBLOCK, hi = lo + MT_QBLOCK < n ? lo + MT_QBLOCK : n;
        float amax = 0.0f;
        for (int64_t i = lo; i < hi; i++) amax = fmaxf(amax, fabsf(x[i]));
        float scale = amax / (float)levels;
        scales[b] = scale;
        float safe = scale > 0.0f ? scale : 1.0f;
        for (int64_t i = lo; i < lo + MT_QBLOCK; i++) {      /* the padding codes to 0 */
            float q = i < hi ? nearbyintf(x[i] / safe) : 0.0f;
            q = fminf(fmaxf(q, (float)-levels), (float)levels);
            if (bits == 8) {
                ((int8_t *)codes)[i] = (int8_t)q;
            } else {
                uint8_t nibble = (uint8_t)((int)q + 8);
                uint8_t *byte = (uint8_t *)codes + i / 2;
                if (i % 2 == 0) *byte = nibble; else *byte |= (uint8_t)(nibble << 4);
            }
        }
    }
    return 0;
}

MT_API int mt_cpu_dequantize(const void *codes, const float *scales, int64_t n, int bits,
                             float *out, int accumulate)
{
    if (!levels_of(bits)) MT_FAIL("dequantize: bits %d, expected 8 or 4", bits);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = mt_dequantized(codes, scales, i, bits);
        out[i] = accumulate ? out[i] + v : v;
    }
    return 0;
}
