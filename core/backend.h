/* The backend interface: the only thing the executor knows about compute.
 *
 * A backend owns a device memory arena (its budget), streams, events, copies between host and
 * device, and the ops of a LLaMA-family decoder with their backward passes. Two backends
 * implement it: cpu/ (reference; the "device" is a budgeted host region) and cuda/.
 *
 * Execution model. Every op and copy is enqueued on a stream and may run asynchronously:
 * when a call returns, its inputs must stay valid and its outputs must not be read until an
 * event recorded after it has completed (or the stream is synchronized). Work on one stream runs
 * in order; work on different streams is ordered only by events. Callers must never rely on a
 * backend being synchronous (the CPU backend is, today; CUDA is not).
 *
 * Data types. 'act' (be->act) is the element type of weights in the compute copy (P16),
 * activations and activation gradients on the device: BF16 (default), or F32 for exact parity
 * runs (--dtype fp32). The arithmetic is fp32 in every op; values are rounded to 'act' exactly
 * where they are stored. Weight gradients, norms' saved statistics, losses and the optimizer
 * state are always fp32.
 *
 * Shapes are written on each pointer, row-major: N = B*T rows (tokens), C = model dim,
 * OC = output features, nh/nkv = query/key-value heads, hd = head dim, V = vocab.
 * All pointers are device pointers unless marked 'host'. Integer token ids are int32.
 *
 * Errors: ops cannot fail on valid arguments; an invalid argument is a programmer error and
 * aborts. Functions returning int return 0 or -errno (e.g. -ENOMEM when the arena budget is
 * exhausted, -ENODEV when there is no GPU). */
#ifndef SW_CORE_BACKEND_H
#define SW_CORE_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "core/dtype.h"

typedef struct sw_backend sw_backend;
typedef struct sw_stream sw_stream;
typedef struct sw_event sw_event;

/* AdamW for one tensor (or chunk). The host computes the per-step scalars once, in double,
 * and rounds them to float; every CPU path and the GPU kernel use exactly these floats and the
 * same sequence of fp32 operations (see optim/adamw.h), so all give identical bits. */
typedef struct sw_adamw_args {
	float lr;            /* learning rate of this step */
	float beta1, beta2;
	float eps;
	float weight_decay;  /* 0 for tensors without decay */
	float step_size;     /* lr / (1 - beta1^t) */
	float bc2_sqrt;      /* sqrt(1 - beta2^t) */
	float grad_scale;    /* gradient multiplier: 1, or max_norm / norm when clipping */
	/* 1 - beta1, 1 - beta2: computed in double and rounded once, as torch passes them (in fp32
	 * 1.0f - 0.999f is 1.3e-5 away from 0.001f) */
	float one_minus_beta1, one_minus_beta2;
} sw_adamw_args;

/* Flags of the backward ops (matmul_bwd, rmsnorm_bwd). SW_BWD_ACCUM: matmul_bwd adds dinp to
 * what is there. SW_BWD_DW_SET: the weight (and bias) gradients are written, not added to: a
 * group's first micro-batch writes its fp32 gradient this way, so the buffer needs no zeroing
 * and the GEMM no read of zeros (docs/architecture.md "Gradient buffers"). On the CPU backend
 * the bits are the same either way (0 + x is x); on the GPU the beta = 0 GEMM may be another
 * cuBLASLt algorithm, whose sums run in another (still fixed) order. */
enum { SW_BWD_ACCUM = 1, SW_BWD_DW_SET = 2 };

typedef struct sw_backend_ops {
	/* ---- lifetime, memory, streams, events, copies ---- */
	void (*destroy)(sw_backend *be);
	/* Sub-allocates from the device arena (256-byte aligned). -ENOMEM past the budget. */
	int (*dev_alloc)(sw_backend *be, uint64_t bytes, void **out);
	void (*dev_free)(sw_backend *be, void *p);
	/* Page-locked host memory, usable for async copies, 4 KiB aligned (NVMe I/O reads and
	 * writes it with O_DIRECT). */
	int (*host_alloc)(sw_backend *be, uint64_t bytes, void **out);
	void (*host_free)(sw_backend *be, void *p);
	/* Makes existing host memory (e.g. the I/O arena) usable for async copies. */
	int (*host_register)(sw_backend *be, void *p, uint64_t bytes);
	void (*host_unregister)(sw_backend *be, void *p);

	int (*stream_create)(sw_backend *be, sw_stream **out);
	void (*stream_destroy)(sw_backend *be, sw_stream *s);
	void (*stream_sync)(sw_backend *be, sw_stream *s);
	int (*event_create)(sw_backend *be, sw_event **out);
	void (*event_destroy)(sw_backend *be, sw_event *e);
	void (*event_record)(sw_backend *be, sw_event *e, sw_stream *s);
	void (*stream_wait)(sw_backend *be, sw_stream *s, sw_event *e);  /* s waits for e */
	void (*event_sync)(sw_backend *be, sw_event *e);                 /* host waits for e */
	int (*event_done)(sw_backend *be, sw_event *e);                  /* 1 done, 0 pending */
	float (*event_ms)(sw_backend *be, sw_event *start, sw_event *end); /* elapsed, both done */

	void (*copy_h2d)(sw_backend *be, sw_stream *s, void *dst, const void *host_src, uint64_t bytes);
	void (*copy_d2h)(sw_backend *be, sw_stream *s, void *host_dst, const void *src, uint64_t bytes);
	void (*copy_d2d)(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t bytes);
	void (*memset0)(sw_backend *be, sw_stream *s, void *dst, uint64_t bytes);

	/* ---- ops; 'act' pointers hold be->act elements, float* pointers fp32 ---- */
	/* out (N,C) act = wte[tokens[n]]; tokens (N) int32, wte (V,C) act */
	void (*embedding_fwd)(sw_backend *be, sw_stream *s, void *out, const int32_t *tokens,
			      const void *wte, int N, int C);
	/* dwte (V,C) fp32 += scatter of dout (N,C) act by tokens. Deterministic order. */
	void (*embedding_bwd)(sw_backend *be, sw_stream *s, float *dwte, const void *dout,
			      const int32_t *tokens, int N, int C, int V);

	/* out (N,C) act = inp * rstd * w; rstd (N) fp32 = 1/sqrt(mean(inp^2) + eps); w (C) act */
	void (*rmsnorm_fwd)(sw_backend *be, sw_stream *s, void *out, float *rstd, const void *inp,
			    const void *w, int N, int C, float eps);
	/* dinp (N,C) act += d/dinp; dw (C) fp32 += d/dw, or = with SW_BWD_DW_SET in flags. */
	void (*rmsnorm_bwd)(sw_backend *be, sw_stream *s, void *dinp, float *dw, const void *dout,
			    const void *inp, const void *w, const float *rstd, int N, int C,
			    int flags);

	/* out (N,OC) act = inp (N,C) @ w (OC,C)^T + bias (OC) act, bias may be NULL. */
	void (*matmul_fwd)(sw_backend *be, sw_stream *s, void *out, const void *inp, const void *w,
			   const void *bias, int N, int C, int OC);
	/* dinp (N,C) act = (flags & SW_BWD_ACCUM ? dinp : 0) + dout @ w; dw (OC,C) fp32 +=
	 * dout^T @ inp; dbias (OC) fp32 += column sums of dout (skipped when NULL); dw and dbias
	 * = instead of += with SW_BWD_DW_SET. dinp may be NULL. */
	void (*matmul_bwd)(sw_backend *be, sw_stream *s, void *dinp, float *dw, float *dbias,
			   const void *dout, const void *inp, const void *w, int N, int C, int OC,
			   int flags);

	/* In place on x (N, nh, hd) act, row n at position n % T: HF's rotate_half convention,
	 * cos/sin of pos * inv_freq[i] (inv_freq (hd/2) fp32, device) in fp32.
	 * rope_bwd applies the inverse rotation (the transpose) to a gradient in place. */
	void (*rope_fwd)(sw_backend *be, sw_stream *s, void *x, const float *inv_freq, int N, int T,
			 int nh, int hd);
	void (*rope_bwd)(sw_backend *be, sw_stream *s, void *dx, const float *inv_freq, int N, int T,
			 int nh, int hd);

	/* Causal attention with grouped KV heads (head h reads kv head h / (nh/nkv)), softmax scale
	 * 1/sqrt(hd). q, out (B,T,nh,hd) act; k, v (B,T,nkv,hd) act; lse (B,nh,T) fp32 holds the
	 * row log-sum-exp (natural log, of scaled scores) for the backward. Never materialises T×T
	 * in device memory. */
	void (*attention_fwd)(sw_backend *be, sw_stream *s, void *out, float *lse, const void *q,
			      const void *k, const void *v, int B, int T, int nh, int nkv, int hd);
	/* dq (B,T,nh,hd), dk, dv (B,T,nkv,hd) act: overwritten. */
	void (*attention_bwd)(sw_backend *be, sw_stream *s, void *dq, void *dk, void *dv,
			      const void *dout, const void *q, const void *k, const void *v,
			      const void *out, const float *lse, int B, int T, int nh, int nkv, int hd);

	/* out (N,F) act = silu(gate) * up; gate, up (N,F) act */
	void (*swiglu_fwd)(sw_backend *be, sw_stream *s, void *out, const void *gate, const void *up,
			   int64_t n);
	/* dgate, dup (N,F) act: overwritten. */
	void (*swiglu_bwd)(sw_backend *be, sw_stream *s, void *dgate, void *dup, const void *dout,
			   const void *gate, const void *up, int64_t n);

	/* out = a + b, n elements of act; out may alias a or b. */
	void (*add)(sw_backend *be, sw_stream *s, void *out, const void *a, const void *b, int64_t n);
	/* x *= alpha in place, n elements of act (the product in fp32, rounded to act): LoRA's
	 * alpha / r on the adapters' (N, r) intermediates. */
	void (*scale)(sw_backend *be, sw_stream *s, void *x, float alpha, int64_t n);

	/* LM head with cross-entropy, chunked over the vocabulary (never N×V in memory).
	 * logits = inp (N,C) act @ w (V,C) act ^T in fp32. For each row with targets[n] >= 0:
	 * losses[n] = logsumexp(logits[n]) - logits[n][targets[n]]; rows with target -100 (PyTorch's
	 * ignore_index) get losses[n] = 0 and no gradient. losses (N) fp32.
	 * When dinp != NULL also the backward of (scale * sum of losses): dlogits = scale *
	 * (softmax - onehot); dinp (N,C) act = dlogits @ w (overwritten); dw (V,C) fp32 += dlogits^T
	 * @ inp. scale is 1 / (unmasked tokens of the whole optimizer step). */
	void (*head_loss)(sw_backend *be, sw_stream *s, float *losses, void *dinp, float *dw,
			  const void *inp, const void *w, const int32_t *targets, float scale,
			  int N, int C, int V);
	/* logits (N,V) fp32 = inp @ w^T (for tests and evaluation on small vocabularies). */
	void (*head_logits)(sw_backend *be, sw_stream *s, float *logits, const void *inp,
			    const void *w, int N, int C, int V);

	/* out[0] (fp64, device) = sum of x[i]^2 over n fp32 elements, in a fixed order (the same
	 * bits every run). Used for the global gradient norm. */
	void (*sumsq)(sw_backend *be, sw_stream *s, double *out, const float *x, int64_t n);
	/* AdamW on n elements: p32, m, v updated in place from g (fp32); p16 (act) = p32 rounded to
	 * nearest even. Identical arithmetic to optim/adamw.h's CPU paths. */
	void (*adamw)(sw_backend *be, sw_stream *s, float *p32, float *m, float *v, const float *g,
		      void *p16, int64_t n, const sw_adamw_args *a);
	/* dst (n) act = src (n) fp32 rounded to nearest even (or copied, when act is F32). */
	void (*cast_f32_to_act)(sw_backend *be, sw_stream *s, void *dst, const float *src, int64_t n);
} sw_backend_ops;

struct sw_backend {
	const sw_backend_ops *ops;
	const char *name;        /* "cpu" or "cuda" */
	sw_dtype act;            /* SW_DTYPE_BF16 or SW_DTYPE_F32 */
	uint64_t budget;         /* device arena size in bytes */
	uint64_t used, peak;     /* arena bytes in use now and at most */
	char device_name[128];   /* "NVIDIA H100 80GB HBM3", "CPU (16 threads)" */
	void *impl;
};

typedef struct sw_backend_opts {
	uint64_t mem_budget;     /* device arena bytes (the --gpu-mem budget) */
	sw_dtype act;
	int threads;             /* CPU backend: worker threads for ops (0: all cores) */
	int device;              /* CUDA device ordinal */
} sw_backend_opts;

/* Creates the named backend: "cpu", "cuda", or "auto" (cuda when a GPU is usable, else cpu).
 * Returns 0, or -errno after printing one line naming the cause (no GPU, budget larger than
 * free device memory, ...). */
int sw_backend_create(const char *name, const sw_backend_opts *o, sw_backend **out);
void sw_backend_destroy(sw_backend *be);

/* Test hook: SW_TEST_GRAD_FILL_NAN=1 makes the executor and the in-memory trainer fill every
 * layer gradient buffer with NaN when it is taken, so a gradient element the first micro-batch
 * does not write (SW_BWD_DW_SET) poisons the norm and the update instead of passing unseen
 * (tests/test_offload_grad_fill_nan.sh). Returns 1 for it, 2 for SW_TEST_GRAD_FILL_NAN=control
 * (the same, and the first micro-batch adds to the buffer instead of writing it: the test's
 * control, which must see the NaN), 0 otherwise. */
int sw_test_grad_fill_nan(void);
/* Fills bytes of device memory at dst with all-ones bytes (a NaN in every float type), on s. */
void sw_fill_nan(sw_backend *be, sw_stream *s, void *dst, uint64_t bytes);

int sw_cpu_backend_create(const sw_backend_opts *o, sw_backend **out);
#ifdef SW_HAVE_CUDA
int sw_cuda_backend_create(const sw_backend_opts *o, sw_backend **out);
int sw_cuda_device_count(void);
/* Creates this process's CUDA context on device (once) and returns the device memory it took,
 * measured: free memory before (NVML, when the driver's library loads) less free memory after
 * (cudaMemGetInfo). *exact is 0 when NVML was unusable: the figure then also holds what other
 * processes use on the device. 0 or -ENODEV. */
int sw_cuda_context_bytes(int device, uint64_t *context, int *exact);
/* Device memory this process uses now (cudaMemGetInfo against the baseline taken by
 * sw_cuda_context_bytes, which must have run). 0 or -ENODEV. */
int sw_cuda_mem_used(uint64_t *used);
#else
static inline int sw_cuda_backend_create(const sw_backend_opts *o, sw_backend **out)
{
	(void)o; (void)out;
	return -19; /* -ENODEV: this build has no CUDA */
}
static inline int sw_cuda_device_count(void) { return 0; }
static inline int sw_cuda_context_bytes(int device, uint64_t *context, int *exact)
{
	(void)device; *context = 0; *exact = 0;
	return -19;
}
static inline int sw_cuda_mem_used(uint64_t *used) { *used = 0; return -19; }
#endif
#endif
