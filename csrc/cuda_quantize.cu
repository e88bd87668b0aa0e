/* cuda_quantize.cu: block quantization of DiLoCo's outer gradients on the GPU; the same format
 * and arithmetic as cpu_quantize.c (one thread block of MT_QBLOCK threads per block of
 * elements: a shared-memory max, then one code per thread). */
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda_common.cuh"
#include "quantize_format.h"

__global__ void quantize_kernel(const float *x, int64_t n, int bits, int levels, void *codes,
                                float *scales)
{
    __shared__ float amax[MT_QBLOCK];
    int64_t i = (int64_t)blockIdx.x * MT_QBLOCK + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    amax[threadIdx.x] = fabsf(v);
    __syncthreads();
    for (int s = MT_QBLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) amax[threadIdx.x] = fmaxf(amax[threadIdx.x], amax[threadIdx.x + s]);
        __syncthreads();
    }
    float scale = amax[0] / (float)levels;
    if (threadIdx.x == 0) scales[blockIdx.x] = scale;
    float safe = scale > 0.0f ? scale : 1.0f;
    float q = i < n ? nearbyintf(__fdiv_rn(v, safe)) : 0.0f;
    q = fminf(fmaxf(q, (float)-levels), (float)levels);
    if (bits == 8) {
        ((int8_t *)codes)[i] = (int8_t)q;
    } else {
        int mine = (int)q + 8;
        int odd = __shfl_down_sync(0xffffffffu, mine, 1);      /* the next element's code */
        if (threadIdx.x % 2 == 0) ((uint8_t *)codes)[i / 2] = (uint8_t)(mine | (odd << 4));
    }
}

__global__ void dequantize_kernel(const void *codes, const float *scales, int64_t n, int bits,
                                  float *out, int accumulate)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = mt_dequantized(codes, scales, i, bits);
    out[i] = accumulate ? out[i] + v : v;
}

MT_API int mt_cuda_quantize(const float *x, int64_t n, int bits, void *codes, float *scales,
                            void *stream)
{
    int levels = bits == 8 ? 127 : bits == 4 ? 7 : 0;
    if (!levels) MT_FAIL("quantize: bits %d, expected 8 or 4", bits);
    int64_t blocks = (n + MT_QBLOCK - 1) / MT_QBLOCK;
    if (blocks == 0) return 0;
    quantize_kernel<<<(unsigned)blocks, MT_QBLOCK, 0, (cudaStream_t)stream>>>(x, n, bits, levels,
                                                                               codes, scales);
    MT_CUDA_CHECK(cudaGetLastError());
    return 0;
}

MT_API int mt_cuda_dequantize(const void *codes, const float *scales, int64_t n, int bits,
                              float *out, int accumulate, void *stream)
{
    if (bits != 8 && bits != 4) MT_FAIL("dequantize: bits %d, expected 8 or 4", bits);
    if (n == 0) return 0;
    unsigned grid = (unsigned)((n + 255) / 256);
    dequantize_kernel<<<grid, 256, 0, (cudaStream_t)stream>>>(codes, scales, n, bits, out,
                                                              accumulate);
    MT_CUDA_CHECK(cudaGetLastError());
    return 0;
}
