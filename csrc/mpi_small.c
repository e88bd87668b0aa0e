/* mpi_small.c: the recursive-doubling all-reduce for small messages, in C.
 *
 * The same algorithm, step for step, as mpitrain/comm/algorithms/recursive_doubling.py (read
 * that one first): fold a world that is not a power of two, log2(p) exchanges of the whole
 * buffer with rank XOR 2^k, each followed by buf = buf op incoming, unfold. Only MPI
 * point-to-point calls (MPI_Send, MPI_Recv, MPI_Sendrecv) on the communicator mpi4py hands over,
 * with the tag the Python host transport uses, so it interleaves correctly with the Python
 * algorithms on the same communicator.
 *
 * Why it exists: at 4 KB a step is ~10 us of MPI and ~10 us of Python (argument parsing, the
 * numpy reduce, the bookkeeping); in C the Python part is gone.
 *
 * This library is linked against the MPI that mpi4py uses (built with that MPI's mpicc);
 * mpitrain/kernels/compiled.py checks the library version strings agree before using it.
 */
#include <limits.h>
#include <mpi.h>
#include <string.h>

#include "mt_common.h"

MT_EXTERN int mt_cpu_reduce(void *dst, const void *src, int64_t n, int dtype, int op);

#define DATA_TAG 0x6D70   /* mpitrain/comm/transport/host.py's DATA_TAG */

#define MPI_CHECK(call) do {                                                   \
        int rc_ = (call);                                                      \
        if (rc_ != MPI_SUCCESS) {                                              \
            char text_[MPI_MAX_ERROR_STRING]; int len_ = 0;                    \
            MPI_Error_string(rc_, text_, &len_);                               \
            MT_FAIL("%s failed: %s", #call, text_);                            \
        }                                                                      \
    } while (0)

/* The MPI library this was built against, for the loader's check. */
MT_API int mt_mpi_library_version(char *out, int capacity)
{
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_CHECK(MPI_Get_library_version(text, &len));
    if (capacity < 1)
        MT_FAIL("capacity %d", capacity);
    strncpy(out, text, (size_t)capacity - 1);
    out[capacity - 1] = '\0';
    return 0;
}

/* Survivor n of the folded world is this real rank (see to_real in recursive_doubling.py). */
static int to_real(int n, int rem) { return n < rem ? 2 * n + 1 : n + rem; }

/* buf (count elements of itemsize bytes) becomes the reduction over every rank of `*comm`.
 * scratch: count elements of space this call may overwrite. waiting_on: before each blocking
 * call, the rank it waits for is stored there, for the watchdog thread to name in a stall. */
MT_API int mt_mpi_all_reduce_doubling(const void *comm_address, void *buf, void *scratch,
                                      int64_t count, int itemsize, int dtype, int op,
                                      volatile int *waiting_on)
{
    MPI_Comm comm = *(const MPI_Comm *)comm_address;
    int64_t nbytes64 = count * (int64_t)itemsize;
    if (count < 0 || itemsize < 1 || nbytes64 > INT_MAX)
        MT_FAIL("count %lld x itemsize %d: the C path takes 0 .. %d bytes", (long long)count,
                itemsize, INT_MAX);
    int nbytes = (int)nbytes64, rank, size;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));
    int p2 = 1;
    while (p2 * 2 <= size)
        p2 *= 2;
    int rem = size - p2, new_rank;

    if (rank < 2 * rem) {                 /* fold: even ranks hand their data up and sit out */
        if (rank % 2 == 0) {
            *waiting_on = rank + 1;
            MPI_CHECK(MPI_Send(buf, nbytes, MPI_BYTE, rank + 1, DATA_TAG, comm));
            new_rank = -1;
        } else {
            *waiting_on = rank - 1;
            MPI_CHECK(MPI_Recv(scratch, nbytes, MPI_BYTE, rank - 1, DATA_TAG, comm,
                               MPI_STATUS_IGNORE));
            if (mt_cpu_reduce(buf, scratch, count, dtype, op))
                return -1;
            new_rank = rank / 2;
        }
    } else {
        new_rank = rank - rem;
    }

    if (new_rank >= 0) {
        for (int mask = 1; mask < p2; mask <<= 1) {
            int peer = to_real(new_rank ^ mask, rem);
            *waiting_on = peer;
            MPI_CHECK(MPI_Sendrecv(buf, nbytes, MPI_BYTE, peer, DATA_TAG, scratch, nbytes,
                                   MPI_BYTE, peer, DATA_TAG, comm, MPI_STATUS_IGNORE));
            if (mt_cpu_reduce(buf, scratch, count, dtype, op))
                return -1;
        }
    }

    if (rank < 2 * rem) {                 /* unfold: hand the result back */
        *waiting_on = new_rank == -1 ? rank + 1 : rank - 1;
        if (new_rank == -1)
            MPI_CHECK(MPI_Recv(buf, nbytes, MPI_BYTE, rank + 1, DATA_TAG, comm, MPI_STATUS_IGNORE));
        else
            MPI_CHECK(MPI_Send(buf, nbytes, MPI_BYTE, rank - 1, DATA_TAG, comm));
    }
    return 0;
}
