/* cuda_peer_ce.cu: two-shot all-reduce whose bytes cross NVLink on the copy engines, not the SMs.
 *
 * The peer kernels (cuda_peer.cu) move data with loads and stores from thread blocks. Beside
 * compute (data parallel's buckets during backward) those blocks take SMs from the GEMMs: with
 * 32 of 132 SMs held, a 128-tile weight-gradient GEMM needs a second wave (bench/RESULTS.md).
 * Here the GPU's DMA engines move the bytes and the only kernel is a local reduction:
 *
 *   A  for every peer q: copy this rank's input chunk q into q's region, slot [this rank]
 *      (cudaMemcpyAsync into IPC-mapped memory: a copy engine, no SM);
 *   barrier (epoch)
 *   B  out[own chunk] = in_0 op ... op in_{p-1} in rank order, the peers' parts read from the
 *      local slots (mt_cuda_multi_reduce_scaled: local HBM only, over in microseconds; a sum
 *      times `scale`, avg's 1/p, in the same pass); then copy the result into every peer's
 *      result area;
 *   barrier (epoch + 1)
 *   C  copy the peers' results from the local result area into out (copy engine, local).
 *
 * Registered outputs (peer_out, data parallel's buckets): every rank's `out` is mapped into
 * every peer once, so step B copies the reduced chunk straight into each peer's out and step C
 * disappears (its local read and write of the peers' chunks). Each peer's out is written only after the
 * first barrier, when that peer's stream has finished reading its input (also when in == out),
 * and the second barrier is passed only once every peer's copy into this rank's out has landed.
 * Every rank must make the call the same way (all with peer_out, or none).
 *
 * A region is laid out as the push kernel's: p slots of `slot` elements, then n results. The
 * barrier is on the flag row MT_PEER_CE_ROW, queued in the stream, in one of two ways:
 *   memop:  cuStreamWriteValue32 of the epoch into every peer's counter for this rank (a
 *           system-wide fence first, so the copies before it have landed), then
 *           cuStreamWaitValue32 on this rank's counters: the stream's front end waits, no SM
 *           spins (a peer that never comes is caught by the host watchdog, comm/peer_workspace.py);
 *   kernel: one block of 32 threads runs peer_barrier (a spinning SM, with the timeout trap).
 * No barrier at the end, for the reason the push kernel needs none: the next call uses the
 * other region, and the call after it writes this one only after every peer has passed the next
 * call's first barrier, which each peer's stream reaches only after this call's step C.
 */
#include <cuda.h>

#include "cuda_peer.cuh"

MT_API int mt_cuda_multi_reduce_scaled(void *dst, const void *const *srcs, int k, int64_t n,
                                       int dtype, int op, double scale, int max_blocks,
                                       int device, void *stream);

enum { MT_CE_WAIT_MEMOP = 0, MT_CE_WAIT_KERNEL = 1 };

typedef CUresult (*StreamValueFn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

/* cuStreamWaitValue32 and cuStreamWriteValue32 from the driver, looked up once (no -lcuda). */
static int stream_memops(StreamValueFn *wait, StreamValueFn *write)
{
    static StreamValueFn wait_fn = nullptr, write_fn = nullptr;
    if (!wait_fn || !write_fn) {
        cudaDriverEntryPointQueryResult found;
        void *fn = nullptr;
        MT_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &fn, 12000,
                                                       cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || !fn)
            MT_FAIL("the driver has no cuStreamWaitValue32 (set MPITRAIN_PEER_CE_WAIT=kernel)");
        wait_fn = reinterpret_cast<StreamValueFn>(fn);
        MT_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuStreamWriteValue32", &fn, 12000,
                                                       cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || !fn)
            MT_FAIL("the driver has no cuStreamWriteValue32 (set MPITRAIN_PEER_CE_WAIT=kernel)");
        write_fn = reinterpret_cast<StreamValueFn>(fn);
    }
    *wait = wait_fn;
    *write = write_fn;
    return 0;
}

__global__ void ce_barrier_kernel(PeerArgs a, uint32_t value)
{
    peer_barrier(a, value, MT_PEER_CE_ROW);
}

static uint32_t *flag(const PeerArgs &a, int owner, int writer)
{
    return reinterpret_cast<uint32_t *>(a.base[owner]) + MT_PEER_CE_ROW * MT_PEER_MAX_RANKS + writer;
}

/* Every rank's stream passes this point only after every peer's stream has reached it. */
static int ce_barrier(const PeerArgs &a, uint32_t value, int wait_kind, cudaStream_t s)
{
    if (wait_kind == MT_CE_WAIT_KERNEL) {
        ce_barrier_kernel<<<1, 32, 0, s>>>(a, value);
        MT_CUDA_CHECK(cudaGetLastError());
        return 0;
    }
    StreamValueFn wait, write;
    if (stream_memops(&wait, &write)) return -1;
    CUstream cs = reinterpret_cast<CUstream>(s);
    for (int q = 0; q < a.p; q++) {
        if (q == a.rank) continue;
        CUresult rc = write(cs, (CUdeviceptr)flag(a, q, a.rank), value, CU_STREAM_WRITE_VALUE_DEFAULT);
        if (rc != CUDA_SUCCESS) MT_FAIL("cuStreamWriteValue32 into rank %d's flags failed: CUresult %d", q, (int)rc);
    }
    for (int q = 0; q < a.p; q++) {
        if (q == a.rank) continue;
        CUresult rc = wait(cs, (CUdeviceptr)flag(a, a.rank, q), value, CU_STREAM_WAIT_VALUE_GEQ);
        if (rc != CUDA_SUCCESS) MT_FAIL("cuStreamWaitValue32 on rank %d's flag failed: CUresult %d", q, (int)rc);
    }
    return 0;
}

static int copy(void *dst, const void *src, int64_t bytes, cudaStream_t s)
{
    if (bytes > 0) MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDefault, s));
    return 0;
}

/* One piece (it fits a region): out[:n] = the reduction of every rank's in[:n]. bases: the p
 * workspaces as mapped here; bound: p + 1 element offsets of the chunks; region 0 or 1;
 * reduce_blocks caps step B's grid (0: sized by the chunk); peer_out: NULL, or every rank's out
 * (this piece's start) as mapped here (entry `rank` unused). Queued on `stream`; returns
 * without waiting. in may be out. */
MT_API int mt_peer_ce_all_reduce(void *const *bases, void *const *peer_out, int rank, int p,
                                 const void *in, void *out,
                                 const int64_t *bound, int64_t n, int region, int64_t region_bytes,
                                 uint32_t epoch, int dtype, int op, double scale, int reduce_blocks,
                                 int wait_kind, double timeout_s, int device, void *stream)
{
    if (p < 1 || p > MT_PEER_MAX_RANKS) MT_FAIL("%d ranks: the copy-engine path takes 1..%d", p, MT_PEER_MAX_RANKS);
    if (rank < 0 || rank >= p) MT_FAIL("rank %d out of range for %d ranks", rank, p);
    if (op < 0 || op >= MT_NUM_OPS) MT_FAIL("unknown reduction op code %d", op);
    if (wait_kind != MT_CE_WAIT_MEMOP && wait_kind != MT_CE_WAIT_KERNEL) MT_FAIL("unknown wait kind %d", wait_kind);
    if (region != 0 && region != 1) MT_FAIL("region must be 0 or 1, got %d", region);
    const int size = peer_element_size(dtype);
    if (!size) MT_FAIL("unknown dtype code %d", dtype);
    if (n < 0 || bound[0] != 0 || bound[p] != n) MT_FAIL("chunks must cover 0..%lld", (long long)n);
    int64_t slot = 0;
    for (int q = 0; q < p; q++) {
        if (!bases[q]) MT_FAIL("workspace of rank %d is a null pointer", q);
        if (peer_out && q != rank && !peer_out[q]) MT_FAIL("registered output of rank %d is a null pointer", q);
        if (bound[q + 1] < bound[q]) MT_FAIL("chunk bounds of rank %d are not increasing", q);
        if (bound[q + 1] - bound[q] > slot) slot = bound[q + 1] - bound[q];
    }
    if (((int64_t)p * slot + n) * size > region_bytes)
        MT_FAIL("%lld elements do not fit the %lld-byte region", (long long)n, (long long)region_bytes);
    if (mt_use_device(device)) return -1;
    cudaStream_t s = static_cast<cudaStream_t>(stream);

    PeerArgs a;
    memset(&a, 0, sizeof a);
    for (int q = 0; q < p; q++) a.base[q] = static_cast<char *>(bases[q]);
    a.rank = rank;
    a.p = p;
    a.timeout_ns = (int64_t)(timeout_s * 1e9);
    const int64_t data = MT_PEER_FLAG_BYTES + (int64_t)region * region_bytes;
    auto slot_of = [&](int owner, int writer) { return a.base[owner] + data + (int64_t)writer * slot * size; };
    auto result_of = [&](int owner, int64_t i) { return a.base[owner] + data + ((int64_t)p * slot + i) * size; };
    const char *src = static_cast<const char *>(in);
    char *dst = static_cast<char *>(out);
    const int64_t lo = bound[rank], mine = bound[rank + 1] - lo;

    for (int s_ = 1; s_ < p; s_++) {                                            /* A */
        const int q = (rank + s_) % p;
        if (copy(slot_of(q, rank), src + bound[q] * size, (bound[q + 1] - bound[q]) * size, s)) return -1;
    }
    if (p > 1 && ce_barrier(a, epoch, wait_kind, s)) return -1;

    const void *parts[MT_PEER_MAX_RANKS];                                       /* B */
    for (int q = 0; q < p; q++) parts[q] = q == rank ? src + lo * size : slot_of(rank, q);
    if (mine > 0 && mt_cuda_multi_reduce_scaled(dst + lo * size, parts, p, mine, dtype, op, scale,
                                                reduce_blocks, device, stream))
        return -1;
    for (int s_ = 1; s_ < p; s_++) {
        const int q = (rank + s_) % p;
        char *to = peer_out ? static_cast<char *>(peer_out[q]) + lo * size : result_of(q, lo);
        if (copy(to, dst + lo * size, mine * size, s)) return -1;
    }
    if (p > 1 && ce_barrier(a, epoch + 1, wait_kind, s)) return -1;
    if (peer_out) return 0;                        /* the peers wrote their chunks into out */

    for (int s_ = 1; s_ < p; s_++) {                                            /* C */
        const int q = (rank + s_) % p;
        if (copy(dst + bound[q] * size, result_of(rank, bound[q]), (bound[q + 1] - bound[q]) * size, s))
            return -1;
    }
    return 0;
}
