/* cuda_peer.cuh: what the peer kernels (cuda_peer.cu) and the copy-engine all-reduce
 * (cuda_peer_ce.cu) share: the workspace layout, the call's arguments, the flag barrier.
 *
 * A workspace: a flag area of (MT_PEER_MAX_BLOCKS + 2) rows of MT_PEER_MAX_RANKS 32-bit counters,
 * then two data regions. Row b < MT_PEER_MAX_BLOCKS belongs to the kernels' block b, row
 * MT_PEER_ARRIVAL_ROW to the arrival kernel, row MT_PEER_CE_ROW to the copy-engine path. In
 * row r of rank R's flags, counter q is written by rank q.
 */
#pragma once

#include <stdio.h>
#include <string.h>

#include "cuda_common.cuh"

#define MT_PEER_MAX_RANKS 8
#define MT_PEER_MAX_BLOCKS 128
#define MT_PEER_ARRIVAL_ROW MT_PEER_MAX_BLOCKS          /* the flag row of the arrival kernel */
#define MT_PEER_CE_ROW (MT_PEER_MAX_BLOCKS + 1)         /* the flag row of the copy-engine path */
#define MT_PEER_FLAG_BYTES ((MT_PEER_MAX_BLOCKS + 2) * MT_PEER_MAX_RANKS * 4)
#define MT_PEER_THREADS 512

enum { MT_PEER_ONE_SHOT = 0, MT_PEER_TWO_SHOT = 1, MT_PEER_REDUCE_SCATTER = 2,
       MT_PEER_ALL_GATHER = 3, MT_PEER_TWO_SHOT_PUSH = 4, MT_PEER_COPY_ENGINE = 5 };

struct PeerArgs {
    char *base[MT_PEER_MAX_RANKS];           /* every rank's workspace, mapped into this process */
    int64_t bound[MT_PEER_MAX_RANKS + 1];    /* items: rank q's chunk or block is [bound[q], bound[q+1]) */
    const void *in;
    void *out;
    int64_t n;                               /* items this rank copies into its region */
    int64_t slot;                            /* push: items per incoming slot (the largest chunk) */
    int64_t data_offset;                     /* bytes from a workspace's base to this call's region */
    int64_t timeout_ns;
    uint32_t epoch;                          /* the value of this call's first barrier */
    int rank, p, mode;
};

static __device__ __forceinline__ uint64_t now_ns()
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* Block-level barrier across the ranks, on flag row `row` (a block's own number, or a row of
 * its own): thread q (< p) signals rank q and waits for rank q; traps after the timeout. */
static __device__ void peer_barrier(const PeerArgs &a, uint32_t value, int row)
{
    __threadfence_system();                  /* this thread's writes are visible to every GPU */
    __syncthreads();
    const int q = threadIdx.x;
    if (q < a.p) {
        volatile uint32_t *theirs =
            reinterpret_cast<volatile uint32_t *>(a.base[q]) + row * MT_PEER_MAX_RANKS + a.rank;
        *theirs = value;
        volatile uint32_t *mine =
            reinterpret_cast<volatile uint32_t *>(a.base[a.rank]) + row * MT_PEER_MAX_RANKS + q;
        uint64_t start = 0;
        for (unsigned spins = 1; (int32_t)(*mine - value) < 0; spins++) {
            if ((spins & 1023u) == 0) {
                uint64_t t = now_ns();
                if (start == 0) {
                    start = t;
                } else if (a.timeout_ns > 0 && (int64_t)(t - start) > a.timeout_ns) {
                    printf("mpitrain: rank %d: peer kernel flag row %d waited %.1f s for rank %d at "
                           "barrier %u; a rank died or made a different call: aborting\n",
                           a.rank, row, (t - start) * 1e-9, q, value);
                    __trap();
                }
            }
        }
        __threadfence_system();              /* what the peer wrote before its flag is seen after */
    }
    __syncthreads();
}

static inline int peer_element_size(int dtype)
{
    switch (dtype) {
    case MT_F64: case MT_I64: return 8;
    case MT_F32: case MT_I32: return 4;
    case MT_F16: case MT_BF16: return 2;
    case MT_U8: return 1;
    default: return 0;
    }
}

