/* mt_common.h: what the C and CUDA kernels of mpitrain share.
 *
 * Element types and reduction ops are small integers agreed with mpitrain/kernels/compiled.py.
 * Every entry point returns 0 on success or -1 after recording "file:line: message" with
 * MT_FAIL; Python reads the message with mt_last_error() and raises it as an exception.
 * Nothing here calls MPI_Init or touches MPI: mpi4py owns start-up.
 */
#ifndef MT_COMMON_H
#define MT_COMMON_H

#include <stdint.h>

#ifdef __cplusplus
#define MT_EXTERN extern "C"
#else
#define MT_EXTERN
#endif

#define MT_API MT_EXTERN __attribute__((visibility("default")))

enum mt_dtype { MT_F64 = 0, MT_F32 = 1, MT_F16 = 2, MT_BF16 = 3, MT_I64 = 4, MT_I32 = 5, MT_U8 = 6,
                MT_NUM_DTYPES = 7 };
enum mt_op { MT_SUM = 0, MT_MAX = 1, MT_MIN = 2, MT_PROD = 3, MT_NUM_OPS = 4 };

/* Record an error for this thread; the message names the source file and line. */
MT_EXTERN void mt_set_error(const char *file, int line, const char *fmt, ...);
MT_API const char *mt_last_error(void);

#define MT_FAIL(...) do { mt_set_error(__FILE__, __LINE__, __VA_ARGS__); return -1; } while (0)

/* One tensor of a pack or unpack: its memory, its element count, and where its slot starts in
 * the bucket (in elements of the bucket's wire dtype). */
typedef struct {
    void *ptr;
    int64_t count;
    int64_t offset;
} mt_slot;

#endif
