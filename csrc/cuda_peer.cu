/* cuda_peer.cu: all-reduce, reduce-scatter and all-gather as one kernel each, reading the other
 * GPUs' memory directly (CUDA IPC mappings over NVLink) and synchronised by flags in that memory.
 *
 * Every rank owns a workspace: a flag area, then two data regions (calls alternate between them).
 * Every rank has mapped every peer's workspace (mpitrain/comm/peer_workspace.py), so `base[q]` below is rank
 * q's workspace as seen from this GPU. One call, on every rank at once:
 *
 *   phase 0  copy this rank's input into its own data region;
 *   barrier  every block tells every peer "my part is there" and waits for the peers to say so;
 *   one-shot:       out[i] = in_0[i] op in_1[i] op ... op in_{p-1}[i], read from every region;
 *   two-shot:       reduce only this rank's 1/p chunk, into its own region and out; barrier;
 *                   then copy every peer's reduced chunk from its region into out;
 *   reduce-scatter: reduce only this rank's block into out;
 *   all-gather:     copy every rank's region into its place in out.
 *
 * Per-block barriers are enough because the work is split the same way in every phase and on
 * every rank: item i (an element, or 16 bytes of them) always belongs to thread i mod G of the
 * grid (G = blocks x threads), so a block only ever reads, from any peer, items that the peer's
 * block of the same number wrote. Flags are counters: peer q's block b writes the call's epoch
 * into flags[b][q] of this rank; a waiter proceeds once the counter has reached the epoch (a
 * peer may already be one barrier ahead). No barrier at the end: the next call writes the other
 * region, and the call after that cannot start on any block before every peer's block of the
 * same number has passed the next call's first barrier, i.e. finished reading this one.
 *
 * Sums are taken in rank order in the accumulator type on every rank, so every rank gets the
 * same bits. Peer memory is read with ld.global.cg (L2, never a stale L1 line). A barrier that
 * waits longer than the timeout prints who it waited for and traps: the job fails, never hangs.
 */
#include "cuda_peer.cuh"

/* T x V, moved as one load or store (V = 16 / sizeof(T) when everything is 16-byte aligned). */
template <typename T, int V> struct alignas(sizeof(T) * V) Pack { T v[V]; };

template <int BYTES> struct Bits;
template <> struct Bits<1> { using type = unsigned char; };
template <> struct Bits<2> { using type = unsigned short; };
template <> struct Bits<4> { using type = unsigned int; };
template <> struct Bits<8> { using type = unsigned long long; };

/* A load from (possibly peer) memory that bypasses L1. */
template <typename P> __device__ __forceinline__ P load_cg(const P *p)
{
    P out;
    if constexpr (sizeof(P) == 16) {
        uint4 u = __ldcg(reinterpret_cast<const uint4 *>(p));
        memcpy(&out, &u, 16);
    } else {
        using B = typename Bits<sizeof(P)>::type;
        B b = __ldcg(reinterpret_cast<const B *>(p));
        memcpy(&out, &b, sizeof(P));
    }
    return out;
}

/* The first index >= lo that belongs to grid thread g (of G): the same owner in every phase. */
__device__ __forceinline__ int64_t first_owned(int64_t lo, int64_t g, int64_t G)
{
    int64_t d = g - lo % G;
    return lo + (d < 0 ? d + G : d);
}

#define MT_PEER_UNROLL 4   /* items per thread in flight: loads from NVLink take microseconds */

/* dst[i] = src[i] for the items of [lo, hi) that grid thread g owns, U loads in flight. */
template <typename P>
__device__ __forceinline__ void copy_owned(P *dst, const P *src, int64_t lo, int64_t hi,
                                           int64_t g, int64_t G)
{
    constexpr int U = MT_PEER_UNROLL;
    for (int64_t i0 = first_owned(lo, g, G); i0 < hi; i0 += U * G) {
        P x[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i0 + u * G < hi) x[u] = load_cg(src + i0 + u * G);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i0 + u * G < hi) dst[i0 + u * G] = x[u];
    }
}

/* For the items of [lo, hi) that thread g owns: r = src(0)[i] op ... op src(p-1)[i], in rank
 * order, then store(i, r). U items in flight per source. */
template <typename T, int OP, int V, typename Src, typename Store>
__device__ __forceinline__ void reduce_owned(int p, int64_t lo, int64_t hi, int64_t g, int64_t G,
                                             Src src, Store store)
{
    using A = typename Acc<T>::type;
    using P = Pack<T, V>;
    constexpr int U = MT_PEER_UNROLL;
    for (int64_t i0 = first_owned(lo, g, G); i0 < hi; i0 += U * G) {
        A acc[U][V];
        for (int q = 0; q < p; q++) {
            const P *from = src(q);
            P x[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                if (i0 + u * G < hi) x[u] = load_cg(from + i0 + u * G);
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int e = 0; e < V; e++)
                    acc[u][e] = q == 0 ? to_acc<T>(x[u].v[e]) : combine<OP, A>(acc[u][e], to_acc<T>(x[u].v[e]));
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (i0 + u * G < hi) {
                P r;
#pragma unroll
                for (int e = 0; e < V; e++) r.v[e] = from_acc<T>(acc[u][e]);
                store(i0 + u * G, r);
            }
        }
    }
}

/* Two-shot by pushing (writes cross NVLink faster than reads come back). A region holds p
 * incoming slots of `slot` items, then n items of results:
 *   A  this rank writes its input's chunk q straight into rank q's slot [this rank];
 *   B  it reduces its own chunk: its input and the p - 1 slots, in rank order; the result goes
 *      to out and into every peer's result area;
 *   C  it copies the peers' results from its own result area into out.
 * The same ownership rule holds: peer q's thread g reads what this rank's thread g wrote. */
template <typename T, int OP, int V>
__device__ __forceinline__ void two_shot_push(const PeerArgs &a, int64_t g, int64_t G)
{
    using P = Pack<T, V>;
    const P *in = static_cast<const P *>(a.in);
    P *out = static_cast<P *>(a.out);
    auto region = [&](int q) { return reinterpret_cast<P *>(a.base[q] + a.data_offset); };
    const int64_t results = (int64_t)a.p * a.slot;

    for (int s = 1; s < a.p; s++) {                                   /* A */
        const int q = (a.rank + s) % a.p;
        const int64_t lo = a.bound[q], hi = a.bound[q + 1];
        copy_owned(region(q) + (int64_t)a.rank * a.slot - lo, in, lo, hi, g, G);
    }
    peer_barrier(a, a.epoch, blockIdx.x);

    const int64_t lo = a.bound[a.rank], hi = a.bound[a.rank + 1];    /* B */
    P *mine = region(a.rank);
    reduce_owned<T, OP, V>(
        a.p, lo, hi, g, G,
        [&](int q) { return q == a.rank ? in : mine + (int64_t)q * a.slot - lo; },
        [&](int64_t i, const P &r) {
            out[i] = r;
            for (int s = 1; s < a.p; s++) region((a.rank + s) % a.p)[results + i] = r;
        });
    peer_barrier(a, a.epoch + 1, blockIdx.x);

    for (int s = 1; s < a.p; s++) {                                   /* C */
        const int q = (a.rank + s) % a.p;
        copy_owned(out, mine + results, a.bound[q], a.bound[q + 1], g, G);
    }
}

template <typename T, int OP, int V>
__global__ void __launch_bounds__(MT_PEER_THREADS) peer_kernel(PeerArgs a)
{
    using P = Pack<T, V>;
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t G = (int64_t)gridDim.x * blockDim.x;
    P *mine = reinterpret_cast<P *>(a.base[a.rank] + a.data_offset);
    P *out = static_cast<P *>(a.out);

    if (a.mode == MT_PEER_TWO_SHOT_PUSH) {
        two_shot_push<T, OP, V>(a, g, G);
        return;
    }
    copy_owned(mine, static_cast<const P *>(a.in), 0, a.n, g, G);
    peer_barrier(a, a.epoch, blockIdx.x);

    auto region = [&](int q) { return reinterpret_cast<const P *>(a.base[q] + a.data_offset); };
    if (a.mode == MT_PEER_ONE_SHOT) {
        reduce_owned<T, OP, V>(a.p, 0, a.n, g, G, region, [&](int64_t i, const P &r) { out[i] = r; });
    } else if (a.mode == MT_PEER_TWO_SHOT) {
        reduce_owned<T, OP, V>(a.p, a.bound[a.rank], a.bound[a.rank + 1], g, G, region,
                               [&](int64_t i, const P &r) { out[i] = r; mine[i] = r; });
        peer_barrier(a, a.epoch + 1, blockIdx.x);
        for (int s = 1; s < a.p; s++) {
            const int q = (a.rank + s) % a.p;
            copy_owned(out, region(q), a.bound[q], a.bound[q + 1], g, G);
        }
    } else if (a.mode == MT_PEER_REDUCE_SCATTER) {
        const int64_t lo = a.bound[a.rank];
        reduce_owned<T, OP, V>(a.p, lo, a.bound[a.rank + 1], g, G, region,
                               [&](int64_t i, const P &r) { out[i - lo] = r; });
    } else {                                 /* all-gather: rank q's items land at bound[q] */
        for (int s = 0; s < a.p; s++) {
            const int q = (a.rank + s) % a.p;
            copy_owned(out + a.bound[q], region(q), 0, a.bound[q + 1] - a.bound[q], g, G);
        }
    }
}

/* The arrival barrier: one block waits until every peer has reached this call, then the call's
 * kernel, queued behind it, starts with the peers already there. Used where collectives overlap
 * compute (data parallel, ZeRO): ranks drift apart by a bucket or so, and the early rank's
 * kernel would otherwise hold all its blocks' SMs spinning at its first barrier, taking them
 * from backward; waiting here costs one SM. The value is the call's epoch (every rank the same,
 * rising call by call), on a flag row of its own. */
__global__ void peer_arrive_kernel(PeerArgs a)
{
    peer_barrier(a, a.epoch, MT_PEER_ARRIVAL_ROW);
}

template <typename T, int OP>
static int launch_op(PeerArgs &a, bool vectorized, int blocks, cudaStream_t stream)
{
    constexpr int V = 16 / sizeof(T);
    if (vectorized)
        peer_kernel<T, OP, V><<<blocks, MT_PEER_THREADS, 0, stream>>>(a);
    else
        peer_kernel<T, OP, 1><<<blocks, MT_PEER_THREADS, 0, stream>>>(a);
    MT_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
static int launch_typed(PeerArgs &a, bool vectorized, int blocks, int op, cudaStream_t stream)
{
    switch (op) {
    case MT_SUM: return launch_op<T, MT_SUM>(a, vectorized, blocks, stream);
    case MT_MAX: return launch_op<T, MT_MAX>(a, vectorized, blocks, stream);
    case MT_MIN: return launch_op<T, MT_MIN>(a, vectorized, blocks, stream);
    case MT_PROD: return launch_op<T, MT_PROD>(a, vectorized, blocks, stream);
    default: MT_FAIL("unknown reduction op code %d", op);
    }
}

/* The bytes a workspace needs for data regions of `region_bytes` each. */
MT_API int mt_peer_workspace_bytes(int64_t region_bytes, int64_t *total)
{
    if (region_bytes <= 0 || region_bytes % 16) MT_FAIL("region of %lld bytes: must be a positive "
                                                        "multiple of 16", (long long)region_bytes);
    *total = MT_PEER_FLAG_BYTES + 2 * region_bytes;
    return 0;
}

/* A workspace of `bytes` on `device`, zeroed (the flags start at 0), owned by its own cudaMalloc
 * so that its IPC handle names exactly it. */
MT_API int mt_peer_workspace_alloc(int device, int64_t bytes, void **ptr_out)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaMalloc(ptr_out, (size_t)bytes));
    MT_CUDA_CHECK(cudaMemset(*ptr_out, 0, (size_t)bytes));
    MT_CUDA_CHECK(cudaDeviceSynchronize());
    return 0;
}

MT_API int mt_peer_workspace_free(void *ptr, int device)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaFree(ptr));
    return 0;
}

/* One collective. bases: the p workspaces as mapped here; bound: p + 1 element offsets (the
 * two-shot chunks, the reduce-scatter blocks, or where each rank's all-gather part lands in out);
 * n: elements this rank copies in (all-gather: its own count; others: the whole input);
 * region: 0 or 1; region_bytes: each region's size. Elements are dtype (all-gather: pass bytes
 * as MT_U8). arrive_first: queue the one-block arrival barrier first (peer_arrive_kernel).
 * Queued on `stream`; returns without waiting. */
MT_API int mt_peer_run(int mode, void *const *bases, int rank, int p, const void *in, void *out,
                       const int64_t *bound, int64_t n, int region, int64_t region_bytes,
                       uint32_t epoch, int blocks, int dtype, int op, int arrive_first,
                       double timeout_s, int device, void *stream)
{
    if (mode < MT_PEER_ONE_SHOT || mode > MT_PEER_TWO_SHOT_PUSH) MT_FAIL("unknown peer mode %d", mode);
    if (p < 1 || p > MT_PEER_MAX_RANKS) MT_FAIL("%d ranks: the peer kernels take 1..%d", p, MT_PEER_MAX_RANKS);
    if (rank < 0 || rank >= p) MT_FAIL("rank %d out of range for %d ranks", rank, p);
    if (blocks < 1 || blocks > MT_PEER_MAX_BLOCKS) MT_FAIL("blocks %d: must be 1..%d", blocks, MT_PEER_MAX_BLOCKS);
    if (op < 0 || op >= MT_NUM_OPS) MT_FAIL("unknown reduction op code %d", op);
    const int size = peer_element_size(dtype);
    if (!size) MT_FAIL("unknown dtype code %d", dtype);
    if (n < 0) MT_FAIL("element count must be >= 0, got %lld", (long long)n);
    if (region != 0 && region != 1) MT_FAIL("region must be 0 or 1, got %d", region);
    int64_t slot = 0;                          /* push: the largest chunk, in elements */
    for (int q = 0; q < p; q++) slot = bound[q + 1] - bound[q] > slot ? bound[q + 1] - bound[q] : slot;
    const int64_t used = mode == MT_PEER_TWO_SHOT_PUSH ? ((int64_t)p * slot + n) * size : n * size;
    if (used > region_bytes) MT_FAIL("%lld bytes do not fit the %lld-byte region",
                                     (long long)used, (long long)region_bytes);
    for (int q = 0; q < p; q++) {
        if (!bases[q]) MT_FAIL("workspace of rank %d is a null pointer", q);
        if (bound[q] < 0 || bound[q + 1] < bound[q])
            MT_FAIL("bounds %lld..%lld of rank %d are not increasing", (long long)bound[q],
                    (long long)bound[q + 1], q);
    }
    if ((mode == MT_PEER_ONE_SHOT || mode == MT_PEER_TWO_SHOT || mode == MT_PEER_TWO_SHOT_PUSH) &&
        bound[p] != n)
        MT_FAIL("all-reduce bounds end at %lld, not at the count %lld", (long long)bound[p], (long long)n);
    if (mode == MT_PEER_REDUCE_SCATTER && bound[p] != n)
        MT_FAIL("reduce-scatter blocks end at %lld, not at the count %lld", (long long)bound[p], (long long)n);
    if (mode == MT_PEER_ALL_GATHER && bound[rank + 1] - bound[rank] != n)
        MT_FAIL("all-gather: this rank's part is %lld elements, its count %lld",
                (long long)(bound[rank + 1] - bound[rank]), (long long)n);

    PeerArgs a;
    memset(&a, 0, sizeof a);
    for (int q = 0; q < p; q++) a.base[q] = static_cast<char *>(bases[q]);
    a.in = in;
    a.out = out;
    a.data_offset = MT_PEER_FLAG_BYTES + (int64_t)region * region_bytes;
    a.timeout_ns = (int64_t)(timeout_s * 1e9);
    a.epoch = epoch;
    a.rank = rank;
    a.p = p;
    a.mode = mode;

    const int V = 16 / size;
    bool vectorized = aligned16(in) && aligned16(out) && (n % V) == 0;
    for (int q = 0; q <= p; q++) vectorized = vectorized && (bound[q] % V) == 0;
    vectorized = vectorized && (slot % V) == 0;
    const int unit = vectorized ? V : 1;
    a.n = n / unit;
    a.slot = slot / unit;
    for (int q = 0; q <= p; q++) a.bound[q] = bound[q] / unit;

    if (mt_use_device(device)) return -1;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (arrive_first && p > 1) {
        peer_arrive_kernel<<<1, 32, 0, s>>>(a);
        MT_CUDA_CHECK(cudaGetLastError());
    }
    switch (dtype) {
    case MT_F64: return launch_typed<double>(a, vectorized, blocks, op, s);
    case MT_F32: return launch_typed<float>(a, vectorized, blocks, op, s);
    case MT_F16: return launch_typed<__half>(a, vectorized, blocks, op, s);
    case MT_BF16: return launch_typed<__nv_bfloat16>(a, vectorized, blocks, op, s);
    case MT_I64: return launch_typed<int64_t>(a, vectorized, blocks, op, s);
    case MT_I32: return launch_typed<int32_t>(a, vectorized, blocks, op, s);
    case MT_U8: return launch_typed<uint8_t>(a, vectorized, blocks, op, s);
    }
    MT_FAIL("unknown dtype code %d", dtype);
}
