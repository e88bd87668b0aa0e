/* cpu_pack.c: fused gradient bucketing on the CPU.
 *
 * pack:   bucket[slot_i] = wire(scale * tensor_i)          for every tensor of the list
 * unpack: tensor_i = tensor(scale * bucket[slot_i])  (or += with accumulate)
 * One pass over memory: the scale and the cast to the wire dtype (float32 -> bfloat16/float16)
 * happen while copying, where torch needs a copy and then a second pass. The tensor list is cut
 * into chunks of CHUNK elements and OpenMP hands chunks to threads, so one huge tensor and many
 * small ones both keep every thread busy. Arithmetic is in float32.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_convert.h"
#include "mt_common.h"

#define CHUNK 32768
#define MT_PARALLEL_MIN 65536

MT_API int mt_cpu_get_threads(void);

static inline float load_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
static inline float load_bf16(const void *p, int64_t i) { return bf16_to_f32(((const uint16_t *)p)[i]); }
static inline float load_f16(const void *p, int64_t i) { return f16_to_f32(((const _Float16 *)p)[i]); }
static inline void store_f32(void *p, int64_t i, float v) { ((float *)p)[i] = v; }
static inline void store_bf16(void *p, int64_t i, float v) { ((uint16_t *)p)[i] = f32_to_bf16(v); }
static inline void store_f16(void *p, int64_t i, float v) { ((_Float16 *)p)[i] = f32_to_f16(v); }

static int itemsize(int dtype)
{
    switch (dtype) {
    case MT_F32: return 4;
    case MT_F16: case MT_BF16: return 2;
    default: return 0;
    }
}

/* out[i] = STORE(scale * LOAD(in[i])) over [begin, end). */
#define CONVERT(LOAD, STORE)                                                     \
    do {                                                                         \
        _Pragma("omp simd")                                                      \
        for (int64_t i = begin; i < end; i++) STORE(out, i, LOAD(in, i) * scale); \
    } while (0)

#define CONVERT_ACC(LOAD, LOAD_OUT, STORE)                                       \
    do {                                                                         \
        _Pragma("omp simd")                                                      \
        for (int64_t i = begin; i < end; i++)                                    \
            STORE(out, i, LOAD_OUT(out, i) + LOAD(in, i) * scale); \
    } while (0)

#define BY_STORE(LOAD)                                                      \
    switch (out_dtype) {                                                         \
    case MT_F32: CONVERT(LOAD, store_f32); break;                                \
    case MT_BF16: CONVERT(LOAD, store_bf16); break;                              \
    case MT_F16: CONVERT(LOAD, store_f16); break;                                \
    }

#define BY_STORE_ACC(LOAD)                                                       \
    switch (out_dtype) {                                                         \
    case MT_F32: CONVERT_ACC(LOAD, load_f32, store_f32); break;                  \
    case MT_BF16: CONVERT_ACC(LOAD, load_bf16, store_bf16); break;               \
    case MT_F16: CONVERT_ACC(LOAD, load_f16, store_f16); break;                  \
    }

/* out[i] = scale * in[i] (or out[i] += ...) for i in [begin, end), converting on the way. */
static void convert_range(const void *in, int in_dtype, void *out, int out_dtype, int64_t begin,
                          int64_t end, float scale, int accumulate)
{
    if (!accumulate && in_dtype == out_dtype && scale == 1.0f) {
        int size = itemsize(in_dtype);
        memcpy((char *)out + begin * size, (const char *)in + begin * size,
               (size_t)(end - begin) * size);
        return;
    }
    if (accumulate) {
        switch (in_dtype) {
        case MT_F32: BY_STORE_ACC(load_f32); break;
        case MT_BF16: BY_STORE_ACC(load_bf16); break;
        case MT_F16: BY_STORE_ACC(load_f16); break;
        }
    } else {
        switch (in_dtype) {
        case MT_F32: BY_STORE(load_f32); break;
        case MT_BF16: BY_STORE(load_bf16); break;
        case MT_F16: BY_STORE(load_f16); break;
        }
    }
}

/* Walk every chunk of every slot; `direction` 0 packs (tensor -> bucket), 1 unpacks. */
static int run_slots(const mt_slot *slots, int nslots, int tensor_dtype, void *bucket,
                     int wire_dtype, double scale, int accumulate, int direction)
{
    if (nslots < 0) MT_FAIL("tensor count must be >= 0, got %d", nslots);
    if (!itemsize(tensor_dtype)) MT_FAIL("tensor dtype code %d is not float32/bfloat16/float16", tensor_dtype);
    if (!itemsize(wire_dtype)) MT_FAIL("wire dtype code %d is not float32/bfloat16/float16", wire_dtype);
    int64_t *first_chunk = malloc(sizeof(int64_t) * (nslots + 1));
    if (!first_chunk) MT_FAIL("out of memory for %d slots", nslots);
    int64_t total = 0, chunks = 0;
    for (int s = 0; s < nslots; s++) {
        if (slots[s].count < 0) { free(first_chunk); MT_FAIL("slot %d has count %lld", s, (long long)slots[s].count); }
        if (slots[s].count && !slots[s].ptr) { free(first_chunk); MT_FAIL("slot %d has a null pointer", s); }
        first_chunk[s] = chunks;
        chunks += (slots[s].count + CHUNK - 1) / CHUNK;
        total += slots[s].count;
    }
    first_chunk[nslots] = chunks;
    if (total && !bucket) { free(first_chunk); MT_FAIL("null bucket for %lld elements", (long long)total); }
    const int wire_size = itemsize(wire_dtype);
    const float fscale = (float)scale;
    int threads = total >= MT_PARALLEL_MIN ? mt_cpu_get_threads() : 1;

#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; c++) {
        int lo = 0, hi = nslots - 1;              /* the slot whose chunks contain c */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (first_chunk[mid] <= c) lo = mid; else hi = mid - 1;
        }
        const mt_slot *slot = &slots[lo];
        int64_t begin = (c - first_chunk[lo]) * CHUNK;
        int64_t end = begin + CHUNK < slot->count ? begin + CHUNK : slot->count;
        char *wire = (char *)bucket + slot->offset * wire_size;
        if (direction == 0)
            convert_range(slot->ptr, tensor_dtype, wire, wire_dtype, begin, end, fscale, 0);
        else   /* unpack: read wire[begin, end), write tensor[begin, end) */
            convert_range(wire, wire_dtype, slot->ptr, tensor_dtype, begin, end, fscale, accumulate);
    }
    free(first_chunk);
    return 0;
}

MT_API int mt_cpu_pack(const mt_slot *slots, int nslots, int tensor_dtype, void *bucket,
                       int wire_dtype, double scale)
{
    return run_slots(slots, nslots, tensor_dtype, bucket, wire_dtype, scale, 0, 0);
}

MT_API int mt_cpu_unpack(const mt_slot *slots, int nslots, int tensor_dtype, const void *bucket,
                         int wire_dtype, double scale, int accumulate)
{
    return run_slots(slots, nslots, tensor_dtype, (void *)bucket, wire_dtype, scale, accumulate, 1);
}
