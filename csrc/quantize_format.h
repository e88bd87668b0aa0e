/* quantize_format.h: the block format of DiLoCo's quantized outer gradients, shared by
 * cpu_quantize.c and cuda_quantize.cu (and the same as mpitrain/parallel/compress.py):
 * MT_QBLOCK elements per float32 scale; 8 bits: one int8 code per element; 4 bits: two codes
 * per byte, code + 8 in the low nibble for the even element and in the high one for the odd. */
#ifndef MT_QUANTIZE_FORMAT_H
#define MT_QUANTIZE_FORMAT_H

#include <stdint.h>

#define MT_QBLOCK 256

#ifdef __CUDACC__
#define MT_HOST_DEVICE __host__ __device__
#else
#define MT_HOST_DEVICE
#endif

/* The value of element i: its code times its block's scale. */
static inline MT_HOST_DEVICE float mt_dequantized(const void *codes, const float *scales,
                                                  int64_t i, int bits)
{
    int code;
    if (bits == 8) {
        code = ((const int8_t *)codes)[i];
    } else {
        uint8_t byte = ((const uint8_t *)codes)[i / 2];
        code = (int)(i % 2 == 0 ? byte & 0x0F : byte >> 4) - 8;
    }
    return (float)code * scales[i / MT_QBLOCK];
}

#endif
