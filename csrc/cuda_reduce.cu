/* cuda_reduce.cu: dst = src_0 op src_1 op ... op src_{k-1} on the GPU, k from 1 to 8.
 * mt_cuda_multi_reduce_scaled multiplies the sum by a scale before rounding (avg's division,
 * folded into the pass that reduces: no second pass over dst).
 *
 * With k = 2 and src_0 = dst it is the reduce step of the collectives (dst = dst op src); with k
 * up to 8 it is the building block of one-shot and two-shot all-reduce over peer memory. The
 * sources are combined in the accumulator type (float for 16-bit floats) and rounded once.
 * Pointers travel by value in the kernel's parameters. When dst and every source are 16-byte
 * aligned, each thread moves 16 bytes per load; otherwise (and for the tail) one element.
 */
#include "cuda_common.cuh"

#define MT_MAX_SOURCES 8

struct Sources {
    const void *ptr[MT_MAX_SOURCES];
    int k;
};

template <typename T, int OP, bool SCALED>
__global__ void multi_reduce_kernel(T *dst, Sources src, int64_t n, bool vectorized,
                                    typename Acc<T>::type scale)
{
    using A = typename Acc<T>::type;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t scalar_from = 0;
    if (vectorized) {
        constexpr int V = Vec16<T>::N;
        const int64_t nvec = n / V;
        for (int64_t i = tid; i < nvec; i += stride) {
            Vec16<T> in = reinterpret_cast<const Vec16<T> *>(src.ptr[0])[i];
            A acc[V];
#pragma unroll
            for (int e = 0; e < V; e++) acc[e] = to_acc<T>(in.v[e]);
            for (int s = 1; s < src.k; s++) {
                in = reinterpret_cast<const Vec16<T> *>(src.ptr[s])[i];
#pragma unroll
                for (int e = 0; e < V; e++) acc[e] = combine<OP, A>(acc[e], to_acc<T>(in.v[e]));
            }
            Vec16<T> out;
#pragma unroll
            for (int e = 0; e < V; e++) out.v[e] = from_acc<T>(SCALED ? acc[e] * scale : acc[e]);
            reinterpret_cast<Vec16<T> *>(dst)[i] = out;
        }
        scalar_from = nvec * V;
    }
    for (int64_t i = scalar_from + tid; i < n; i += stride) {
        A acc = to_acc<T>(static_cast<const T *>(src.ptr[0])[i]);
        for (int s = 1; s < src.k; s++)
            acc = combine<OP, A>(acc, to_acc<T>(static_cast<const T *>(src.ptr[s])[i]));
        dst[i] = from_acc<T>(SCALED ? acc * scale : acc);
    }
}

/* scale != 1 (floats, sum only): the scaled kernel; the others never read it */
template <typename T, bool FLOAT>
static int launch_typed(void *dst, const Sources &src, int64_t n, int op, double scale,
                        int max_blocks, cudaStream_t stream)
{
    using A = typename Acc<T>::type;
    bool vectorized = aligned16(dst);
    for (int s = 0; s < src.k; s++) vectorized = vectorized && aligned16(src.ptr[s]);
    const int64_t items = vectorized ? n / Vec16<T>::N + n % Vec16<T>::N : n;
    unsigned blocks = grid_for(items);
    if (max_blocks > 0 && blocks > (unsigned)max_blocks) blocks = (unsigned)max_blocks;  /* grid-stride */
    T *d = static_cast<T *>(dst);
    const A a = (A)scale;
    if (scale != 1.0) {
        if constexpr (FLOAT) {
            if (op != MT_SUM) MT_FAIL("a scaled reduction is a sum, got op %d", op);
            multi_reduce_kernel<T, MT_SUM, true><<<blocks, 256, 0, stream>>>(d, src, n, vectorized, a);
            MT_CUDA_CHECK(cudaGetLastError());
            return 0;
        } else {
            MT_FAIL("a scaled reduction needs a floating dtype (scale %g)", scale);
        }
    }
    switch (op) {
    case MT_SUM: multi_reduce_kernel<T, MT_SUM, false><<<blocks, 256, 0, stream>>>(d, src, n, vectorized, a); break;
    case MT_MAX: multi_reduce_kernel<T, MT_MAX, false><<<blocks, 256, 0, stream>>>(d, src, n, vectorized, a); break;
    case MT_MIN: multi_reduce_kernel<T, MT_MIN, false><<<blocks, 256, 0, stream>>>(d, src, n, vectorized, a); break;
    case MT_PROD: multi_reduce_kernel<T, MT_PROD, false><<<blocks, 256, 0, stream>>>(d, src, n, vectorized, a); break;
    default: MT_FAIL("unknown reduction op code %d", op);
    }
    MT_CUDA_CHECK(cudaGetLastError());
    return 0;
}

MT_API int mt_cuda_multi_reduce_scaled(void *dst, const void *const *srcs, int k, int64_t n,
                                       int dtype, int op, double scale, int max_blocks,
                                       int device, void *stream);

MT_API int mt_cuda_multi_reduce(void *dst, const void *const *srcs, int k, int64_t n, int dtype,
                                int op, int device, void *stream)
{
    return mt_cuda_multi_reduce_scaled(dst, srcs, k, n, dtype, op, 1.0, 0, device, stream);
}

/* max_blocks > 0 caps the grid (the loop strides over the rest): a reduction beside compute
 * then holds at most that many SMs' worth of blocks at once; 0 sizes the grid by n. */
MT_API int mt_cuda_multi_reduce_scaled(void *dst, const void *const *srcs, int k, int64_t n,
                                       int dtype, int op, double scale, int max_blocks,
                                       int device, void *stream)
{
    if (k < 1 || k > MT_MAX_SOURCES) MT_FAIL("source count must be 1..%d, got %d", MT_MAX_SOURCES, k);
    if (n < 0) MT_FAIL("element count must be >= 0, got %lld", (long long)n);
    if (op < 0 || op >= MT_NUM_OPS) MT_FAIL("unknown reduction op code %d", op);
    if (n == 0) return 0;
    Sources src;
    src.k = k;
    for (int s = 0; s < k; s++) {
        if (!srcs[s]) MT_FAIL("source %d is a null pointer", s);
        src.ptr[s] = srcs[s];
    }
    if (!dst) MT_FAIL("destination is a null pointer");
    if (mt_use_device(device)) return -1;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
    case MT_F64: return launch_typed<double, true>(dst, src, n, op, scale, max_blocks, s);
    case MT_F32: return launch_typed<float, true>(dst, src, n, op, scale, max_blocks, s);
    case MT_F16: return launch_typed<__half, true>(dst, src, n, op, scale, max_blocks, s);
    case MT_BF16: return launch_typed<__nv_bfloat16, true>(dst, src, n, op, scale, max_blocks, s);
    case MT_I64: return launch_typed<int64_t, false>(dst, src, n, op, scale, max_blocks, s);
    case MT_I32: return launch_typed<int32_t, false>(dst, src, n, op, scale, max_blocks, s);
    case MT_U8: return launch_typed<uint8_t, false>(dst, src, n, op, scale, max_blocks, s);
    default: MT_FAIL("unknown dtype code %d", dtype);
    }
}

MT_API int mt_cuda_reduce(void *dst, const void *src, int64_t n, int dtype, int op, int device,
                          void *stream)
{
    const void *srcs[2] = {dst, src};
    return mt_cuda_multi_reduce(dst, srcs, 2, n, dtype, op, device, stream);
}

MT_API int mt_cuda_device_count(int *count)
{
    MT_CUDA_CHECK(cudaGetDeviceCount(count));
    return 0;
}

MT_API int mt_cuda_synchronize(int device)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaDeviceSynchronize());
    return 0;
}
