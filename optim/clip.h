/* Global gradient-norm clipping with torch.nn.utils.clip_grad_norm_'s semantics (norm_type 2).
 *
 *   norm  = sqrt(sum over tensors, in table order, of sumsq(tensor))        (double)
 *   scale = min(1, max_norm / (norm + 1e-6))                                 (torch's clip_coef,
 *                                                                             clamped to 1.0)
 * and the scale reaches the update as sw_adamw_args.grad_scale (g * scale in fp32, as torch's
 * in-place multiply of each gradient), so no gradient is rewritten.
 *
 * sumsq is deterministic: fixed chunks of SW_SUMSQ_CHUNK elements; inside a chunk 8 lanes in
 * double (element i into lane i % 8, in order; products of two floats are exact in double), the
 * lanes combined as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); the chunks summed in
 * order. The same bits on every path (scalar, AVX2, AVX-512) and for any number of threads.
 *
 * A non-finite norm (a NaN/Inf gradient, or an overflow) means the step must be skipped (or
 * rolled back): sw_clip_scale returns NAN then, which no caller can mistake for a scale.
 * See docs/optim.md. */
#ifndef SW_OPTIM_CLIP_H
#define SW_OPTIM_CLIP_H
#include <stdint.h>
#include "core/pool.h"

#define SW_SUMSQ_CHUNK ((int64_t)65536)

/* Sum of squares of g (n values) in double; pool may be NULL (the calling thread). */
double sw_grad_sumsq(sw_pool *pool, const float *g, int64_t n);

/* sqrt of the sum of per-tensor sums of squares, added in index order. */
double sw_grad_norm(const double *sumsq, int64_t ntensors);

/* The gradient multiplier for clipping to max_norm: 1 when max_norm <= 0 (clipping off) or the
 * norm is small enough, NAN when norm is not finite. */
double sw_clip_scale(double norm, double max_norm);
#endif
