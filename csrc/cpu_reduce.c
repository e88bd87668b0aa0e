/* cpu_reduce.c: dst = dst op src over host memory, the reduction step of every collective.
 *
 * One plain loop per (dtype, op), written so the compiler vectorizes it; OpenMP splits long
 * arrays across threads (short ones stay on the calling thread: a 4 KB all-reduce must not pay
 * for waking a thread team). 16-bit floats are widened to float32, combined, and rounded once.
 * Integers wrap on overflow, like numpy. max and min propagate NaN, like numpy.
 */
#include <omp.h>
#include <stdint.h>

#include "cpu_convert.h"
#include "mt_common.h"

/* Below this many elements a single thread is faster than waking the team. */
#define MT_PARALLEL_MIN 65536

static int mt_threads = 1;

MT_API int mt_cpu_set_threads(int n)
{
    if (n < 1) MT_FAIL("thread count must be at least 1, got %d", n);
    mt_threads = n;
    return 0;
}

MT_API int mt_cpu_get_threads(void) { return mt_threads; }

/* NaN-propagating max and min (a != a only for NaN). */
#define MAX_OF(a, b) (((a) >= (b) || (a) != (a)) ? (a) : (b))
#define MIN_OF(a, b) (((a) <= (b) || (a) != (a)) ? (a) : (b))
#define SUM_OF(a, b) ((a) + (b))
#define PROD_OF(a, b) ((a) * (b))

/* dst[i] = OP(dst[i], src[i]) for a type that computes in itself. */
#define NATIVE_LOOP(T, OP)                                                                   \
    do {                                                                                     \
        T *restrict d = (T *)dst;                                                            \
        const T *restrict s = (const T *)src;                                                \
        if (n < MT_PARALLEL_MIN) {                                                           \
            _Pragma("omp simd")                                                              \
            for (int64_t i = 0; i < n; i++) d[i] = OP(d[i], s[i]);                           \
        } else {                                                                             \
            _Pragma("omp parallel for simd num_threads(mt_threads) schedule(static)")        \
            for (int64_t i = 0; i < n; i++) d[i] = OP(d[i], s[i]);                           \
        }                                                                                    \
    } while (0)

/* Unsigned wrap-around for signed integer sum and product (signed overflow is undefined in C). */
#define WRAP_LOOP(T, U, OP)                                                                  \
    do {                                                                                     \
        T *restrict d = (T *)dst;                                                            \
        const T *restrict s = (const T *)src;                                                \
        if (n < MT_PARALLEL_MIN) {                                                           \
            _Pragma("omp simd")                                                              \
            for (int64_t i = 0; i < n; i++) d[i] = (T)OP((U)d[i], (U)s[i]);                 \
        } else {                                                                             \
            _Pragma("omp parallel for simd num_threads(mt_threads) schedule(static)")        \
            for (int64_t i = 0; i < n; i++) d[i] = (T)OP((U)d[i], (U)s[i]);                 \
        }                                                                                    \
    } while (0)

/* 16-bit floats: widen, combine in float32, round once. */
#define WIDE_LOOP(T, TO_F32, FROM_F32, OP)                                                   \
    do {                                                                                     \
        T *restrict d = (T *)dst;                                                            \
        const T *restrict s = (const T *)src;                                                \
        if (n < MT_PARALLEL_MIN) {                                                           \
            _Pragma("omp simd")                                                              \
            for (int64_t i = 0; i < n; i++) d[i] = FROM_F32(OP(TO_F32(d[i]), TO_F32(s[i]))); \
        } else {                                                                             \
            _Pragma("omp parallel for simd num_threads(mt_threads) schedule(static)")        \
            for (int64_t i = 0; i < n; i++) d[i] = FROM_F32(OP(TO_F32(d[i]), TO_F32(s[i]))); \
        }                                                                                    \
    } while (0)

#define BY_OP(LOOP, ...)                                                                     \
    switch (op) {                                                                            \
    case MT_SUM: LOOP(__VA_ARGS__, SUM_OF); break;                                           \
    case MT_MAX: LOOP(__VA_ARGS__, MAX_OF); break;                                           \
    case MT_MIN: LOOP(__VA_ARGS__, MIN_OF); break;                                           \
    case MT_PROD: LOOP(__VA_ARGS__, PROD_OF); break;                                         \
    }

#define INT_BY_OP(T, U)                                                                      \
    switch (op) {                                                                            \
    case MT_SUM: WRAP_LOOP(T, U, SUM_OF); break;                                             \
    case MT_MAX: NATIVE_LOOP(T, MAX_OF); break;                                              \
    case MT_MIN: NATIVE_LOOP(T, MIN_OF); break;                                              \
    case MT_PROD: WRAP_LOOP(T, U, PROD_OF); break;                                           \
    }

MT_API int mt_cpu_reduce(void *dst, const void *src, int64_t n, int dtype, int op)
{
    if (n < 0) MT_FAIL("element count must be >= 0, got %lld", (long long)n);
    if (op < 0 || op >= MT_NUM_OPS) MT_FAIL("unknown reduction op code %d", op);
    if (n == 0) return 0;
    if (!dst || !src) MT_FAIL("null pointer for %lld elements", (long long)n);
    switch (dtype) {
    case MT_F64: BY_OP(NATIVE_LOOP, double); break;
    case MT_F32: BY_OP(NATIVE_LOOP, float); break;
    case MT_F16: BY_OP(WIDE_LOOP, _Float16, f16_to_f32, f32_to_f16); break;
    case MT_BF16: BY_OP(WIDE_LOOP, uint16_t, bf16_to_f32, f32_to_bf16); break;
    case MT_I64: INT_BY_OP(int64_t, uint64_t); break;
    case MT_I32: INT_BY_OP(int32_t, uint32_t); break;
    case MT_U8: INT_BY_OP(uint8_t, uint32_t); break;
    default: MT_FAIL("unknown dtype code %d", dtype);
    }
    return 0;
}

/* dst = dst / divisor for floating dtypes: the second half of op="avg". The divisor is taken in
 * the element's compute type (float64 or float32), as numpy does. */
#define DIVIDE_LOOP(T, Q, TO, FROM)                                                          \
    do {                                                                                     \
        T *restrict d = (T *)dst;                                                            \
        const Q q = (Q)divisor;                                                              \
        _Pragma("omp parallel for simd num_threads(mt_threads) if(n >= MT_PARALLEL_MIN) schedule(static)") \
        for (int64_t i = 0; i < n; i++) d[i] = FROM(TO(d[i]) / q);                           \
    } while (0)
#define SAME(x) (x)

MT_API int mt_cpu_divide(void *dst, int64_t n, int dtype, double divisor)
{
    if (n < 0) MT_FAIL("element count must be >= 0, got %lld", (long long)n);
    if (n == 0) return 0;
    if (!dst) MT_FAIL("null pointer for %lld elements", (long long)n);
    switch (dtype) {
    case MT_F64: DIVIDE_LOOP(double, double, SAME, SAME); break;
    case MT_F32: DIVIDE_LOOP(float, float, SAME, SAME); break;
    case MT_F16: DIVIDE_LOOP(_Float16, float, f16_to_f32, f32_to_f16); break;
    case MT_BF16: DIVIDE_LOOP(uint16_t, float, bf16_to_f32, f32_to_bf16); break;
    default: MT_FAIL("divide needs a floating dtype, got dtype code %d", dtype);
    }
    return 0;
}
