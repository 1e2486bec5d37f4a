/* The GPU AdamW kernel: the arithmetic of optim/adamw.h, operation for operation, with
 * explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn) so the
 * compiler cannot contract them into FMAs (and built without fast-math, so denormals are kept):
 * bit-identical to sw_adamw_update. Elements whose scaled gradient is NaN/Inf are skipped as on
 * the CPU; the bf16 copy is rounded on the integer bits exactly as sw_f32_to_bf16.
 *
 * One difference, only for results that are NaN (which valid state never produces: it takes an
 * overflow of m, e.g. |g - m| > FLT_MAX): the GPU's NaN is 0x7fffffff, x86's is 0xffc00000. */
#ifndef SW_OPTIM_ADAMW_GPU_H
#define SW_OPTIM_ADAMW_GPU_H
#include <stdint.h>
#include "core/backend.h"

#ifdef SW_HAVE_CUDA
/* Enqueues the update on 'stream' (a cudaStream_t). All pointers are device pointers; p16 may
 * be NULL. */
void sw_adamw_gpu_launch(float *p32, float *m, float *v, const float *g, void *p16, sw_dtype act,
			 int64_t n, const sw_adamw_args *a, void *stream);

/* The same; when nonfinite (a device pointer) is not NULL, the number of skipped elements is
 * added to *nonfinite (atomically; the caller zeroes it). */
void sw_adamw_gpu_launch_checked(float *p32, float *m, float *v, const float *g, void *p16,
				 sw_dtype act, int64_t n, const sw_adamw_args *a,
				 unsigned long long *nonfinite, void *stream);
#endif
#endif
