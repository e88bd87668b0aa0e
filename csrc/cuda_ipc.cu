/* cuda_ipc.cu: what the CUDA IPC transport needs from the CUDA runtime, as plain C calls.
 *
 * Memory: a process exports the *base allocation* that holds a pointer (torch's caching allocator
 * sub-allocates big cudaMalloc blocks, and an IPC handle names a whole block) plus the offset
 * of the pointer inside it; a peer on the same node opens the handle once and adds the offset.
 * Events: interprocess events order one process's stream after another's work on the GPU,
 * without the host waiting. Copies: cudaMemcpyAsync between the two processes' memory, GPU to
 * GPU (NVLink or PCIe peer-to-peer; the same GPU works too).
 *
 * The transport's protocol (mpitrain/comm/transport/ipc.py) is written in Python on top.
 */
#include <cuda.h>
#include <string.h>

#include "cuda_common.cuh"

static_assert(sizeof(cudaIpcMemHandle_t) == 64, "IPC handle size");
static_assert(sizeof(cudaIpcEventHandle_t) == 64, "IPC event handle size");

typedef CUresult (*AddressRangeFn)(CUdeviceptr *, size_t *, CUdeviceptr);

/* The driver's cuMemGetAddressRange, found through the runtime (no link to libcuda, so the
 * library still loads on machines without a GPU driver). */
static int address_range(const void *ptr, CUdeviceptr *base, size_t *size)
{
    static AddressRangeFn fn = NULL;
    if (!fn) {
        cudaDriverEntryPointQueryResult found;
        MT_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", (void **)&fn,
                                                       12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || !fn)
            MT_FAIL("cuMemGetAddressRange not found in the driver");
    }
    CUresult rc = fn(base, size, (CUdeviceptr)ptr);
    if (rc != CUDA_SUCCESS)
        MT_FAIL("cuMemGetAddressRange(%p) failed with CUresult %d", ptr, (int)rc);
    return 0;
}

/* handle (64 bytes) of the allocation holding ptr, and ptr's offset in it. */
MT_API int mt_ipc_export(const void *ptr, int device, void *handle_out, int64_t *offset_out)
{
    if (mt_use_device(device)) return -1;
    CUdeviceptr base = 0;
    size_t size = 0;
    if (address_range(ptr, &base, &size)) return -1;
    cudaIpcMemHandle_t handle;
    MT_CUDA_CHECK(cudaIpcGetMemHandle(&handle, (void *)base));
    memcpy(handle_out, &handle, sizeof handle);
    *offset_out = (int64_t)((CUdeviceptr)ptr - base);
    return 0;
}

/* Map a peer's allocation into this process (once per handle: the caller caches it). */
MT_API int mt_ipc_open(const void *handle_in, int device, void **ptr_out)
{
    if (mt_use_device(device)) return -1;
    cudaIpcMemHandle_t handle;
    memcpy(&handle, handle_in, sizeof handle);
    MT_CUDA_CHECK(cudaIpcOpenMemHandle(ptr_out, handle, cudaIpcMemLazyEnablePeerAccess));
    return 0;
}

MT_API int mt_ipc_close(void *ptr, int device)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaIpcCloseMemHandle(ptr));
    return 0;
}

/* An interprocess event (no timing) and its 64-byte handle for the peers. */
MT_API int mt_ipc_event_create(int device, void **event_out, void *handle_out)
{
    if (mt_use_device(device)) return -1;
    cudaEvent_t event;
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming | cudaEventInterprocess));
    cudaIpcEventHandle_t handle;
    MT_CUDA_CHECK(cudaIpcGetEventHandle(&handle, event));
    memcpy(handle_out, &handle, sizeof handle);
    *event_out = (void *)event;
    return 0;
}

MT_API int mt_ipc_event_open(const void *handle_in, int device, void **event_out)
{
    if (mt_use_device(device)) return -1;
    cudaIpcEventHandle_t handle;
    memcpy(&handle, handle_in, sizeof handle);
    cudaEvent_t event;
    MT_CUDA_CHECK(cudaIpcOpenEventHandle(&event, handle));
    *event_out = (void *)event;
    return 0;
}

MT_API int mt_event_record(void *event, int device, void *stream)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaEventRecord((cudaEvent_t)event, (cudaStream_t)stream));
    return 0;
}

MT_API int mt_stream_wait_event(void *stream, int device, void *event)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)event, 0));
    return 0;
}

MT_API int mt_event_synchronize(void *event, int device)
{
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)event));
    return 0;
}

/* 0 when everything the event captured has run, 1 while some of it has not. */
MT_API int mt_event_query(void *event, int device, int *pending)
{
    if (mt_use_device(device)) return -1;
    cudaError_t rc = cudaEventQuery((cudaEvent_t)event);
    if (rc == cudaErrorNotReady) {
        *pending = 1;
        return 0;
    }
    MT_CUDA_CHECK(rc);
    *pending = 0;
    return 0;
}

/* dst = src, nbytes, GPU to GPU (either side may be a peer's mapped memory), on `stream`. */
MT_API int mt_memcpy_async(void *dst, const void *src, int64_t nbytes, int device, void *stream)
{
    if (nbytes < 0) MT_FAIL("byte count must be >= 0, got %lld", (long long)nbytes);
    if (nbytes == 0) return 0;
    if (mt_use_device(device)) return -1;
    MT_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)nbytes, cudaMemcpyDefault, (cudaStream_t)stream));
    return 0;
}
