/* AdamW with torch.optim.AdamW's semantics, on fp32 master weights and moments.
 *
 * Per element, in this order, every operation a separately rounded fp32 operation (no
 * contraction into FMA: the files that implement it are compiled with -ffp-contract=off, the
 * SIMD paths use separate mul/add/sub/div/sqrt intrinsics and are built without the "fma"
 * target, and the GPU kernel uses __fmul_rn/__fadd_rn/__fsub_rn/__fdiv_rn/__fsqrt_rn), so that
 * every CPU path and the GPU kernel give identical bits:
 *     g  = g * grad_scale
 *     if g is NaN or +-Inf: p, m, v stay as they are (the element is skipped and counted)
 *     p  = p - (lr * wd) * p                      (decoupled weight decay; lr*wd rounded once)
 *     m  = m + (1 - beta1) * (g - m)              (torch: exp_avg.lerp_(g, 1 - beta1))
 *     v  = beta2 * v + (1 - beta2) * (g * g)
 *     d  = sqrt(v) / bc2_sqrt + eps               (eps outside the sqrt)
 *     p  = p - step_size * (m / d)
 *     p16 = round_to_nearest_even(p)              (bf16 as sw_f32_to_bf16, NaN included; or a
 *                                                  copy in fp32 mode)
 * with step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), (1 - beta1) and (1 - beta2)
 * computed once per step in double and rounded to float (sw_adamw_args_make), as torch computes
 * them in Python floats; lr * wd is the one product of two floats rounded in fp32.
 * torch's lerp switches to g - (g - m) * beta1 when 1 - beta1 >= 0.5 (beta1 <= 0.5); we always
 * use the first form (AdamW with beta1 <= 0.5 is not a setting anyone trains with).
 *
 * Non-finite gradients (docs/optim.md): the step is decided by the caller, which sees the
 * global gradient norm (optim/clip.h) before any update is committed; a non-finite norm means
 * the step is skipped (or, when updates ran speculatively, rolled back). The update itself
 * never lets a NaN/Inf gradient into the state: such elements are left untouched and counted,
 * and sw_adamw_update_checked / sw_adamw_update_parallel return the count.
 *
 * Paths: scalar (the reference), AVX2 and AVX-512, chosen at run time from what the CPU
 * supports; SW_ADAMW_PATH=scalar|avx2|avx512 in the environment, or sw_adamw_path_set(),
 * overrides the choice (tests force each path). All give identical bits. */
#ifndef SW_OPTIM_ADAMW_H
#define SW_OPTIM_ADAMW_H
#include <stdint.h>
#include "core/backend.h"
#include "core/pool.h"

typedef struct sw_adamw_hparams {
	double lr, beta1, beta2, eps, weight_decay;
} sw_adamw_hparams;

/* Which tensors get weight decay (the 'decay' argument below), a training setting:
 *   SW_DECAY_MATRICES (default): not the 1-D tensors (RMSNorm weights, biases), as HF Trainer's
 *                                default (no decay for "bias" and norm weights); embeddings and
 *                                the LM head, being matrices, decay;
 *   SW_DECAY_ALL:                every tensor, as torch.optim.AdamW(model.parameters()). */
typedef enum { SW_DECAY_MATRICES, SW_DECAY_ALL } sw_decay_rule;
int sw_adamw_decays(sw_decay_rule rule, int ndim);
/* "matrices" or "all"; -EINVAL otherwise. */
int sw_decay_rule_parse(const char *name, sw_decay_rule *out);

/* The per-step scalars for step t (1-based) of a tensor (decay: whether weight decay applies). */
sw_adamw_args sw_adamw_args_make(const sw_adamw_hparams *h, double lr, int64_t t, int decay,
				 double grad_scale);

/* One AdamW update of n elements on the calling thread, with the path in use. p16 may be NULL;
 * otherwise it receives p rounded to 'act' (SW_DTYPE_BF16 or SW_DTYPE_F32). */
void sw_adamw_update(float *p32, float *m, float *v, const float *g, void *p16, sw_dtype act,
		     int64_t n, const sw_adamw_args *a);

/* The same, returning how many elements had a non-finite (scaled) gradient and were skipped. */
int64_t sw_adamw_update_checked(float *p32, float *m, float *v, const float *g, void *p16,
				sw_dtype act, int64_t n, const sw_adamw_args *a);

/* The update of n elements split into fixed chunks of SW_ADAMW_CHUNK elements (the default of
 * the SW_ADAMW_CHUNK switch below) run on the pool (pool NULL: the calling thread). The executor
 * calls it once per chunk of a layer with the pointers offset to [off, off + n): while one chunk
 * is updated here, its I/O threads read the next chunk and write back the previous one.
 * Element-wise, so the bits do not depend on the number of threads. Returns the number of
 * skipped non-finite gradient elements. */
#define SW_ADAMW_CHUNK ((int64_t)32768)
int64_t sw_adamw_update_parallel(sw_pool *pool, float *p32, float *m, float *v, const float *g,
				 void *p16, sw_dtype act, int64_t n, const sw_adamw_args *a);

/* Out of place, the same bits: reads p32, m, v and writes the updated state to out[0], out[1],
 * out[2] (every element; one with a non-finite gradient gets its old values), p16 as above;
 * p32, m, v are left as they were. The same memory traffic as the update in place (the state
 * is read once and written once), so a second state set costs no time: the executor's
 * speculative updates write it and the step commits by swapping sets (offload/exec_opt.c).
 * The SW_ADAMW_FLUSH / BURST sub-blocks and non-temporal state stores are not applied here. */
int64_t sw_adamw_update_to(float *const out[3], const float *p32, const float *m, const float *v,
			   const float *g, void *p16, sw_dtype act, int64_t n, const sw_adamw_args *a);
int64_t sw_adamw_update_parallel_to(sw_pool *pool, float *const out[3], const float *p32,
				    const float *m, const float *v, const float *g, void *p16,
				    sw_dtype act, int64_t n, const sw_adamw_args *a);

/* ---- path selection ---- */
typedef enum {
	SW_ADAMW_PATH_AUTO,    /* the best the CPU supports (or SW_ADAMW_PATH from the environment) */
	SW_ADAMW_PATH_SCALAR,
	SW_ADAMW_PATH_AVX2,
	SW_ADAMW_PATH_AVX512,
	SW_ADAMW_PATH_COUNT
} sw_adamw_path;

/* Forces a path for this process (AUTO: back to the automatic choice). Returns 0, or -ENOTSUP
 * when this CPU (or build) cannot run it; the path in use is then unchanged. */
int sw_adamw_path_set(sw_adamw_path path);
sw_adamw_path sw_adamw_path_get(void);          /* the path in use (never AUTO) */
int sw_adamw_path_supported(sw_adamw_path path);
const char *sw_adamw_path_name(sw_adamw_path path);
/* "scalar", "avx2", "avx512" or "auto" to a path; -EINVAL for anything else. */
int sw_adamw_path_parse(const char *name, sw_adamw_path *out);

/* ---- internals shared by the paths (optim/adamw_*.c) ---- */
typedef int64_t (*sw_adamw_kernel_fn)(float *p32, float *m, float *v, const float *g, void *p16,
				      int bf16, int64_t n, const sw_adamw_args *a);
typedef void (*sw_sumsq_kernel_fn)(const float *g, int64_t n, double acc[8]);
/* out of place (sw_adamw_update_to) */
typedef int64_t (*sw_adamw_kernel_to_fn)(float *const out[3], const float *p32, const float *m,
					 const float *v, const float *g, void *p16, int bf16, int64_t n,
					 const sw_adamw_args *a);
int64_t sw_adamw_kernel_scalar(float *p32, float *m, float *v, const float *g, void *p16,
			       int bf16, int64_t n, const sw_adamw_args *a);
int64_t sw_adamw_kernel_scalar_to(float *const out[3], const float *p32, const float *m,
				  const float *v, const float *g, void *p16, int bf16, int64_t n,
				  const sw_adamw_args *a);
void sw_sumsq_kernel_scalar(const float *g, int64_t n, double acc[8]);
#if defined(__x86_64__)
int64_t sw_adamw_kernel_avx2(float *p32, float *m, float *v, const float *g, void *p16,
			     int bf16, int64_t n, const sw_adamw_args *a);
int64_t sw_adamw_kernel_avx512(float *p32, float *m, float *v, const float *g, void *p16,
			       int bf16, int64_t n, const sw_adamw_args *a);
void sw_sumsq_kernel_avx2(const float *g, int64_t n, double acc[8]);
void sw_sumsq_kernel_avx512(const float *g, int64_t n, double acc[8]);
int64_t sw_adamw_kernel_avx2_to(float *const out[3], const float *p32, const float *m,
				const float *v, const float *g, void *p16, int bf16, int64_t n,
				const sw_adamw_args *a);
int64_t sw_adamw_kernel_avx512_to(float *const out[3], const float *p32, const float *m,
				  const float *v, const float *g, void *p16, int bf16, int64_t n,
				  const sw_adamw_args *a);
#endif
sw_sumsq_kernel_fn sw_sumsq_kernel(void);        /* the sum-of-squares kernel of the path in use */
/* The SIMD paths' software prefetch distance in bytes (SW_ADAMW_PREFETCH, default 2048; negative:
 * into L2 only, SW_ADAMW_PREFETCH_L2=1; 0: off). */
int64_t sw_adamw_prefetch(void);

/* ---- measurement switches ----
 * How the update moves memory, never what it computes: every setting gives the same bits
 * (tests/test_optim_adamw.c runs each against the scalar path). They exist to measure
 * (docs/perf/adam.md); each is read from the environment once, at the first update. */
typedef struct sw_adamw_tuning {
	int64_t prefetch;       /* SW_ADAMW_PREFETCH: bytes ahead of each input stream, 0 off,
				 * [0, 1 MiB]; default 2048: +4 to +31 % over the hardware
				 * prefetchers alone on the H100 host (docs/perf/adam.md) */
	int prefetch_l2;        /* SW_ADAMW_PREFETCH_L2=1: prefetch into L2 (T1) instead of L1 */
	int nt;                 /* SW_ADAMW_NT (default 1): non-temporal stores for the p16 copy */
	int nt_state;           /* SW_ADAMW_NT_STATE=1: non-temporal stores for p32, m, v too */
	int static_slices;      /* SW_ADAMW_STATIC=1: one slice per thread instead of chunks */
	int64_t chunk;          /* SW_ADAMW_CHUNK: elements per pool task, a multiple of 64 */
	int flush;              /* SW_ADAMW_FLUSH: 0 off, 1 clwb, 2 clflushopt (SW_ADAMW_FLUSH_*) */
	int64_t block;          /* SW_ADAMW_FLUSH_BLOCK: bytes of each fp32 stream per sub-block,
				 * a multiple of 64 in [64, 1 MiB]; default 4096 */
	int burst;              /* SW_ADAMW_BURST: 0 off, 1 prefetchw for p32/m/v (where the CPU
				 * has it) + prefetcht0 for g, 2 prefetcht0 for all four */
} sw_adamw_tuning;
enum { SW_ADAMW_FLUSH_OFF, SW_ADAMW_FLUSH_CLWB, SW_ADAMW_FLUSH_CLFLUSHOPT };
#define SW_ADAMW_FLUSH_BLOCK_DEFAULT ((int64_t)4096)

/* Parses the environment into *t (no caching; each bad or unusable value: a warning and its
 * default, so a sweep never stops on a typo). Always returns 0. */
int sw_adamw_tuning_env(sw_adamw_tuning *t);
/* The settings in use: the environment's, read once, unless sw_adamw_tuning_set replaced them. */
const sw_adamw_tuning *sw_adamw_tuning_get(void);
/* Replaces the settings in use (tests; NULL: the environment's again). Not while an update runs.
 * -EINVAL for a value out of range, -ENOTSUP for a flush the CPU lacks; nothing changes then. */
int sw_adamw_tuning_set(const sw_adamw_tuning *t);
/* "SW_ADAMW_PREFETCH=2048 SW_ADAMW_PREFETCH_L2=0 ...": every switch as in use, one line. */
void sw_adamw_tuning_describe(const sw_adamw_tuning *t, char *buf, int len);
/* Whether this CPU can run flush kind f (SW_ADAMW_FLUSH_*; OFF: always 1). */
int sw_adamw_flush_supported(int f);

/* The SIMD paths' inner loop over n elements, cut into sub-blocks by sw_adamw_run_blocked when
 * SW_ADAMW_FLUSH or SW_ADAMW_BURST is on (bench-adam's pattern kernel uses it too). pf: the
 * per-vector prefetch distance (0 off, negative into L2); nt: non-temporal p16 stores (aligned);
 * nts: non-temporal p32/m/v stores (aligned). No fence: the caller fences. */
typedef struct sw_adamw_span_opts {
	int64_t pf;
	int nt, nts;
	float *out[3];          /* NULL: in place; else where the updated p32, m, v go */
} sw_adamw_span_opts;
typedef int64_t (*sw_adamw_span_fn)(float *p32, float *m, float *v, const float *g, void *p16,
				    int bf16, int64_t n, const sw_adamw_args *a,
				    const sw_adamw_span_opts *o);
/* Runs fn over [0, n): in one call when t->flush and t->burst are off, else in sub-blocks of
 * t->block bytes of each fp32 stream (a multiple of 16 elements, so the non-temporal p16 stores
 * stay aligned): with t->burst, the block t->burst's distance ahead is prefetched first, stream
 * by stream; with t->flush, the lines of p32, m and v the block wrote are written back after it
 * (each line once, in address order; the last, partial line at the end). Returns the sum of
 * fn's results. */
int64_t sw_adamw_run_blocked(sw_adamw_span_fn fn, float *p32, float *m, float *v, const float *g,
			     void *p16, int bf16, int64_t n, const sw_adamw_args *a,
			     const sw_adamw_span_opts *o, const sw_adamw_tuning *t);
#endif
