/* cuda_common.cuh: what the CUDA kernels share: error checks, element traits, 16-byte vectors.
 *
 * Arithmetic happens in an accumulator type: float for the 16-bit floats, the type itself for
 * float32/float64, and the unsigned twin for integer sum/prod (wrap-around, as numpy does,
 * without signed-overflow undefined behaviour).
 */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "mt_common.h"

/* Check a CUDA runtime call; on failure record file, line, error name and text, return -1. */
#define MT_CUDA_CHECK(call)                                                                  \
    do {                                                                                     \
        cudaError_t mt_err = (call);                                                         \
        if (mt_err != cudaSuccess)                                                           \
            MT_FAIL("%s failed: %s (%s)", #call, cudaGetErrorName(mt_err),                   \
                    cudaGetErrorString(mt_err));                                             \
    } while (0)

/* Make `device` current for this thread (the caller's tensors live there). */
static inline int mt_use_device(int device)
{
    int current = -1;
    MT_CUDA_CHECK(cudaGetDevice(&current));
    if (current != device) MT_CUDA_CHECK(cudaSetDevice(device));
    return 0;
}

template <typename T> struct Acc { using type = T; };
template <> struct Acc<__half> { using type = float; };
template <> struct Acc<__nv_bfloat16> { using type = float; };
template <> struct Acc<uint8_t> { using type = uint32_t; };

template <typename T> __device__ __forceinline__ typename Acc<T>::type to_acc(T x) { return (typename Acc<T>::type)x; }
template <> __device__ __forceinline__ float to_acc<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_acc(typename Acc<T>::type x) { return (T)x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

/* a op b; max and min propagate NaN (a != a only for NaN), like numpy. */
template <int OP, typename A> __device__ __forceinline__ A combine(A a, A b)
{
    if constexpr (OP == MT_SUM || OP == MT_PROD) {
        if constexpr (std::is_integral<A>::value) {
            using U = typename std::make_unsigned<A>::type;
            return OP == MT_SUM ? (A)((U)a + (U)b) : (A)((U)a * (U)b);
        } else {
            return OP == MT_SUM ? a + b : a * b;
        }
    } else if constexpr (OP == MT_MAX) {
        return (a >= b || a != a) ? a : b;
    } else {
        return (a <= b || a != a) ? a : b;
    }
}

/* 16 bytes of T, loaded and stored as one vector instruction. */
template <typename T> struct alignas(16) Vec16 {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

__host__ __device__ static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks for a grid-stride loop over `items` work items of 256 threads each. */
static inline unsigned grid_for(int64_t items, int threads = 256)
{
    int64_t blocks = (items + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    if (blocks > 8192) blocks = 8192;
    return (unsigned)blocks;
}
