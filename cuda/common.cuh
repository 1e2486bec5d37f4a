// Shared pieces of the CUDA backend: the backend's private state, error checks, element
// loads/stores for the two activation types, and the launchers each .cu file exports.
#ifndef SW_CUDA_COMMON_CUH
#define SW_CUDA_COMMON_CUH
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/backend.h"
#include "core/log.h"
#include "core/suballoc.h"
}

// A CUDA error inside an op is a programmer error (bad pointer, bad shape) or a dead device:
// either way the step cannot go on. File, line and CUDA's own message, then abort.
#define CU_CHECK(x) do { cudaError_t e_ = (x); \
	if (e_ != cudaSuccess) sw_die_at(__FILE__, __LINE__, "%s: %s", #x, cudaGetErrorString(e_)); \
} while (0)
#define CU_CHECK_LAUNCH() CU_CHECK(cudaGetLastError())
#define LT_CHECK(x) do { cublasStatus_t s_ = (x); \
	if (s_ != CUBLAS_STATUS_SUCCESS) sw_die_at(__FILE__, __LINE__, "%s: cuBLAS status %d", #x, (int)s_); \
} while (0)

struct sw_stream { cudaStream_t s; };
struct sw_event { cudaEvent_t e; };

// Activation element types: fp32 (parity mode) or bf16; arithmetic is fp32 either way.
__device__ __forceinline__ float ld_act(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld_act(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st_act(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st_act(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Scratch memory inside the arena, shared by the ops that need temporary space (the GEMM
// workspace, head_loss's logits chunks, partial sums of deterministic reductions). Ops on
// different streams would race on it, so an op that takes it from another stream first waits
// for the last stream that used it (cuda_scratch_take).
struct cuda_scratch {
	char *base;
	uint64_t bytes;
	cudaStream_t last;
	cudaEvent_t ev;
};

struct cuda_impl {
	int device;
	char *arena;              // the one cudaMalloc of the budget
	sw_suballoc sa;
	cublasLtHandle_t lt;
	void *lt_ws;              // cuBLASLt workspace (inside the arena)
	uint64_t lt_ws_bytes;
	cuda_scratch scr;
	cuda_scratch red;         // sumsq's partials: the scratch's last 64 KiB, a region of its own
				  // so that a reduction on one stream does not order another
				  // stream's GEMMs (which take the scratch) after it
	int num_sms;
	struct gemm_cache *gemms;  // cuBLASLt algorithm chosen per GEMM shape
};

static inline cuda_impl *cuda_of(sw_backend *be) { return (cuda_impl *)be->impl; }
static inline cudaStream_t cuda_stream(sw_stream *s) { return s ? s->s : (cudaStream_t)0; }

// Returns the scratch region for use on stream s (ordered after its previous user).
char *cuda_scratch_take(cuda_impl *ci, cudaStream_t s, uint64_t need);
char *cuda_red_take(cuda_impl *ci, cudaStream_t s, uint64_t need);

// ---- GEMM (backend_cuda.cu) ----
// D (m,n) col-major = alpha * op(A) op(B) + beta * C, all with cuBLASLt's column-major view.
// ta/tb: 1 for transposed. at/bt/dt: the CUDA data types of A/B and of C=D.
void cuda_gemm(cuda_impl *ci, cudaStream_t s, int ta, int tb, int m, int n, int k,
	       const void *A, int lda, const void *B, int ldb, void *D, int ldd,
	       cudaDataType_t abt, cudaDataType_t dt, float beta, const void *bias, int f32_mode);

// ---- kernels.cu ----
void cuda_embedding_fwd(cudaStream_t s, int bf16, void *out, const int32_t *tokens, const void *wte,
			int N, int C);
void cuda_embedding_bwd(cuda_impl *ci, cudaStream_t s, int bf16, float *dwte, const void *dout,
			const int32_t *tokens, int N, int C, int V);
void cuda_rmsnorm_fwd(cudaStream_t s, int bf16, void *out, float *rstd, const void *inp,
		      const void *w, int N, int C, float eps);
void cuda_rmsnorm_bwd(cuda_impl *ci, cudaStream_t s, int bf16, void *dinp, float *dw,
		      const void *dout, const void *inp, const void *w, const float *rstd, int N, int C,
		      int set_dw);
void cuda_rope(cudaStream_t s, int bf16, void *x, const float *inv_freq, int N, int T, int nh,
	       int hd, int inverse);
void cuda_swiglu_fwd(cudaStream_t s, int bf16, void *out, const void *gate, const void *up, int64_t n);
void cuda_swiglu_bwd(cudaStream_t s, int bf16, void *dgate, void *dup, const void *dout,
		     const void *gate, const void *up, int64_t n);
void cuda_add(cudaStream_t s, int bf16, void *out, const void *a, const void *b, int64_t n);
void cuda_scale(cudaStream_t s, int bf16, void *x, float alpha, int64_t n);
void cuda_cast_f32_to_act(cudaStream_t s, int bf16, void *dst, const float *src, int64_t n);
void cuda_cast_act_to_f32(cudaStream_t s, int bf16, float *dst, const void *src, int64_t n);
void cuda_sumsq(cuda_impl *ci, cudaStream_t s, double *out, const float *x, int64_t n);
void cuda_colsum_add(cudaStream_t s, int bf16, float *dbias, const void *dout, int N, int OC,
		     int set);
// head_loss helpers: per-row online logsumexp over one vocabulary chunk, and dlogits.
void cuda_xent_chunk_stats(cudaStream_t s, float *stats, const float *logits, const int32_t *targets,
			   int rows, int vc, int v0, int first);
void cuda_xent_finish(cudaStream_t s, float *losses, float *stats, const int32_t *targets, int rows);
void cuda_xent_dlogits(cudaStream_t s, int bf16, void *dlogits, const float *logits,
		       const float *stats, const int32_t *targets, int rows, int vc, int v0, float scale);

// ---- attention.cu ----
void cuda_attention_fwd(cuda_impl *ci, cudaStream_t s, int bf16, void *out, float *lse,
			const void *q, const void *k, const void *v, int B, int T, int nh, int nkv, int hd);
void cuda_attention_bwd(cuda_impl *ci, cudaStream_t s, int bf16, void *dq, void *dk, void *dv,
			const void *dout, const void *q, const void *k, const void *v,
			const void *out, const float *lse, int B, int T, int nh, int nkv, int hd);

// 8 bf16 (one 16-byte access) to fp32 and back (round to nearest, as kernels.cu's st_act): the
// vector forms of kernels.cu and attention.cu.
__device__ __forceinline__ void unpack8(uint4 u, float f[8])
{
	const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		const float2 t = __bfloat1622float2(h[i]);
		f[2 * i] = t.x;
		f[2 * i + 1] = t.y;
	}
}

__device__ __forceinline__ uint4 pack8(const float f[8])
{
	uint4 u;
	__nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
	for (int i = 0; i < 4; i++)
		h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
	return u;
}

// A kernel-choice switch: environment variable `name` set to `val` (read at each call, so tests
// can flip it between calls).
static inline bool cuda_env_is(const char *name, const char *val)
{
	const char *e = getenv(name);
	return e && !strcmp(e, val);
}

static inline unsigned cuda_blocks(int64_t n, int threads, int64_t cap)
{
	int64_t b = (n + threads - 1) / threads;
	if (b > cap)
		b = cap;
	if (b < 1)
		b = 1;
	return (unsigned)b;
}
#endif
