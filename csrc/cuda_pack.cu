/* cuda_pack.cu: fused gradient bucketing on the GPU, one launch for a whole tensor list.
 *
 * pack:   bucket[slot_i] = wire(scale * tensor_i)
 * unpack: tensor_i = tensor(scale * bucket[slot_i])   (or += with accumulate)
 * The slot list (pointers, counts, offsets) travels by value in the kernel parameters, sized to
 * the list (up to 1000 slots per launch; longer lists take more launches). Every tensor is cut
 * into chunks of CHUNK elements and each block takes one chunk, finding its tensor by a binary
 * search over the chunk prefix sums, so a 16 MB weight and a 4 KB bias both spread over the GPU.
 * Aligned tensors move in 16-byte vectors of the wider type; misaligned tensors and the last
 * elements of each tensor go one element at a time.
 */
#include "cuda_common.cuh"

#define THREADS 256
#define CHUNK 8192     /* elements per block: one pass of its unrolled loop */

template <int CAP> struct SlotList {
    void *tensor[CAP];
    int64_t count[CAP];
    int64_t offset[CAP];      /* in wire elements */
    int32_t first_chunk[CAP + 1];
    int n;
};

/* N elements of T moved as one vector (16 or 8 bytes), converted to and from float. */
template <typename T, int N> struct alignas(sizeof(T) * N) VecN { T v[N]; };

template <int N, typename T> __device__ __forceinline__ void load_vec(const T *p, float out[N])
{
    VecN<T, N> raw = *reinterpret_cast<const VecN<T, N> *>(p);
#pragma unroll
    for (int e = 0; e < N; e++) out[e] = (float)to_acc<T>(raw.v[e]);
}

template <int N, typename T> __device__ __forceinline__ void store_vec(T *p, const float in[N])
{
    VecN<T, N> raw;
#pragma unroll
    for (int e = 0; e < N; e++) raw.v[e] = from_acc<T>(in[e]);
    *reinterpret_cast<VecN<T, N> *>(p) = raw;
}

template <typename TIn, typename TOut, bool ACC, int CAP>
__global__ void __launch_bounds__(THREADS) convert_slots_kernel(const SlotList<CAP> list, char *__restrict__ bucket, bool pack, float scale)
{
    const int c = blockIdx.x;
    int lo = 0, hi = list.n - 1;                 /* the slot whose chunks contain c */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (list.first_chunk[mid] <= c) lo = mid; else hi = mid - 1;
    }
    const int64_t count = list.count[lo];
    const int64_t begin = (int64_t)(c - list.first_chunk[lo]) * CHUNK;
    const int64_t end = begin + CHUNK < count ? begin + CHUNK : count;
    void *slot = bucket + list.offset[lo] * (int64_t)(pack ? sizeof(TOut) : sizeof(TIn));
    const TIn *in = static_cast<const TIn *>(pack ? list.tensor[lo] : slot);
    TOut *out = static_cast<TOut *>(pack ? slot : list.tensor[lo]);

    /* Vectors of 16 bytes of the wider type (4 elements if float32 is involved, else 8), laid
     * out so that a warp's vector loads cover consecutive memory. All UNROLL loads of a thread
     * are issued before its first store, keeping enough bytes in flight to saturate HBM. */
    constexpr int VEC = 16 / (sizeof(TIn) > sizeof(TOut) ? sizeof(TIn) : sizeof(TOut));
    constexpr int UNROLL = CHUNK / (THREADS * VEC);
    int64_t scalar_from = begin;
    if (aligned16(in) && aligned16(out)) {
        const int64_t vec_end = begin + (end - begin) / VEC * VEC;
        float v[UNROLL][VEC];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int64_t i = begin + ((int64_t)u * THREADS + threadIdx.x) * VEC;
            if (i < vec_end) {
                load_vec<VEC>(in + i, v[u]);
                if (ACC) {
                    float o[VEC];
                    load_vec<VEC>(out + i, o);
#pragma unroll
                    for (int e = 0; e < VEC; e++) v[u][e] = __fadd_rn(o[e], __fmul_rn(v[u][e], scale));
                }
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int64_t i = begin + ((int64_t)u * THREADS + threadIdx.x) * VEC;
            if (i < vec_end) {
                if (!ACC) {      /* _rn: no fused multiply-add, so results match the CPU's */
#pragma unroll
                    for (int e = 0; e < VEC; e++) v[u][e] = __fmul_rn(v[u][e], scale);
                }
                store_vec<VEC>(out + i, v[u]);
            }
        }
        scalar_from = vec_end;
    }
    for (int64_t i = scalar_from + threadIdx.x; i < end; i += THREADS) {
        float v = __fmul_rn(to_acc<TIn>(in[i]), scale);
        if (ACC) v = __fadd_rn(to_acc<TOut>(out[i]), v);
        out[i] = from_acc<TOut>(v);
    }
}

template <typename TIn, typename TOut, int CAP>
static int launch_list(const mt_slot *slots, int n, char *bucket, bool pack, float scale,
                       bool accumulate, cudaStream_t stream)
{
    SlotList<CAP> list;
    int64_t chunks = 0;
    list.n = n;
    for (int s = 0; s < n; s++) {
        list.tensor[s] = slots[s].ptr;
        list.count[s] = slots[s].count;
        list.offset[s] = slots[s].offset;
        list.first_chunk[s] = (int32_t)chunks;
        chunks += (slots[s].count + CHUNK - 1) / CHUNK;
    }
    list.first_chunk[n] = (int32_t)chunks;
    if (chunks == 0) return 0;
    if (chunks > INT32_MAX) MT_FAIL("%lld chunks is more than one launch can address", (long long)chunks);
    if (accumulate)
        convert_slots_kernel<TIn, TOut, true, CAP><<<(unsigned)chunks, THREADS, 0, stream>>>(list, bucket, pack, scale);
    else
        convert_slots_kernel<TIn, TOut, false, CAP><<<(unsigned)chunks, THREADS, 0, stream>>>(list, bucket, pack, scale);
    MT_CUDA_CHECK(cudaGetLastError());
    return 0;
}

/* The smallest parameter block that holds the list: short lists launch with small parameters. */
template <typename TIn, typename TOut>
static int launch_sized(const mt_slot *slots, int n, char *bucket, bool pack, float scale,
                        bool accumulate, cudaStream_t stream)
{
    if (n <= 16) return launch_list<TIn, TOut, 16>(slots, n, bucket, pack, scale, accumulate, stream);
    if (n <= 128) return launch_list<TIn, TOut, 128>(slots, n, bucket, pack, scale, accumulate, stream);
    return launch_list<TIn, TOut, 1000>(slots, n, bucket, pack, scale, accumulate, stream);
}

template <typename TIn>
static int by_out(int out_dtype, const mt_slot *slots, int n, char *bucket, bool pack, float scale,
                  bool accumulate, cudaStream_t stream)
{
    switch (out_dtype) {
    case MT_F32: return launch_sized<TIn, float>(slots, n, bucket, pack, scale, accumulate, stream);
    case MT_BF16: return launch_sized<TIn, __nv_bfloat16>(slots, n, bucket, pack, scale, accumulate, stream);
    case MT_F16: return launch_sized<TIn, __half>(slots, n, bucket, pack, scale, accumulate, stream);
    default: MT_FAIL("dtype code %d is not float32/bfloat16/float16", out_dtype);
    }
}

static int run(const mt_slot *slots, int nslots, int tensor_dtype, void *bucket, int wire_dtype,
               double scale, int accumulate, bool pack, int device, void *stream)
{
    if (nslots < 0) MT_FAIL("tensor count must be >= 0, got %d", nslots);
    for (int s = 0; s < nslots; s++) {
        if (slots[s].count < 0) MT_FAIL("slot %d has count %lld", s, (long long)slots[s].count);
        if (slots[s].count && !slots[s].ptr) MT_FAIL("slot %d has a null pointer", s);
        if (slots[s].count && !bucket) MT_FAIL("null bucket");
    }
    if (mt_use_device(device)) return -1;
    const int in_dtype = pack ? tensor_dtype : wire_dtype, out_dtype = pack ? wire_dtype : tensor_dtype;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    for (int first = 0; first < nslots; first += 1000) {
        const int n = nslots - first < 1000 ? nslots - first : 1000;
        int rc;
        switch (in_dtype) {
        case MT_F32: rc = by_out<float>(out_dtype, slots + first, n, (char *)bucket, pack, (float)scale, accumulate, st); break;
        case MT_BF16: rc = by_out<__nv_bfloat16>(out_dtype, slots + first, n, (char *)bucket, pack, (float)scale, accumulate, st); break;
        case MT_F16: rc = by_out<__half>(out_dtype, slots + first, n, (char *)bucket, pack, (float)scale, accumulate, st); break;
        default: MT_FAIL("dtype code %d is not float32/bfloat16/float16", in_dtype);
        }
        if (rc) return rc;
    }
    return 0;
}

MT_API int mt_cuda_pack(const mt_slot *slots, int nslots, int tensor_dtype, void *bucket,
                        int wire_dtype, double scale, int device, void *stream)
{
    return run(slots, nslots, tensor_dtype, bucket, wire_dtype, scale, 0, true, device, stream);
}

MT_API int mt_cuda_unpack(const mt_slot *slots, int nslots, int tensor_dtype, const void *bucket,
                          int wire_dtype, double scale, int accumulate, int device, void *stream)
{
    return run(slots, nslots, tensor_dtype, (void *)bucket, wire_dtype, scale, accumulate, false, device, stream);
}
