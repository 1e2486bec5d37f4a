// The CUDA backend: core/backend.h on one GPU.
//
// Memory: one cudaMalloc of the whole budget at create; everything else (tensors the executor
// asks for, the cuBLASLt workspace, the ops' scratch) is sub-allocated from it, so the budget
// is never exceeded and nothing is allocated on the device inside the step loop.
// GEMMs: cuBLASLt, bf16 operands with fp32 accumulation (bf16 or fp32 outputs, fused bias),
// or plain fp32 with TF32 off in --dtype fp32 mode. The algorithm for each shape is chosen
// once and cached, so the same shape always runs the same kernel (same bits).
#include "cuda/common.cuh"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "optim/adamw_gpu.h"
}

#define MIB (1024ull * 1024ull)

static char *region_take(cuda_scratch *r, const char *what, cudaStream_t s, uint64_t need)
{
	if (need > r->bytes)
		sw_die("CUDA backend %s: %llu bytes needed, %llu reserved", what,
		       (unsigned long long)need, (unsigned long long)r->bytes);
	if (r->last != s) {
		// The previous user was another stream: order this use after its work.
		CU_CHECK(cudaEventRecord(r->ev, r->last));
		CU_CHECK(cudaStreamWaitEvent(s, r->ev, 0));
		r->last = s;
	}
	return r->base;
}

char *cuda_scratch_take(cuda_impl *ci, cudaStream_t s, uint64_t need)
{
	return region_take(&ci->scr, "scratch", s, need);
}

char *cuda_red_take(cuda_impl *ci, cudaStream_t s, uint64_t need)
{
	return region_take(&ci->red, "reduction partials", s, need);
}

// ---------------------------------------------------------------- cuBLASLt GEMMs
struct gemm_key {
	int ta, tb, m, n, k, lda, ldb, ldd;
	int abt, dt, bias, beta_nz, f32;
	int align_a, align_b, align_d, align_bias;
};

struct gemm_cache {
	gemm_key key;
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t la, lb, ld;
	cublasLtMatmulAlgo_t algo;
	gemm_cache *next;
};

static int ptr_align(const void *p)
{
	uintptr_t u = (uintptr_t)p;
	int a = 256;
	while (a > 1 && (u & (uintptr_t)(a - 1)))
		a /= 2;
	return a;
}

static gemm_cache *gemm_plan(cuda_impl *ci, const gemm_key *key)
{
	for (gemm_cache *g = ci->gemms; g; g = g->next)
		if (!memcmp(&g->key, key, sizeof(*key)))
			return g;
	gemm_cache *g = (gemm_cache *)calloc(1, sizeof(*g));
	SW_ASSERT(g);
	g->key = *key;
	const cudaDataType_t abt = (cudaDataType_t)key->abt, dt = (cudaDataType_t)key->dt;
	cublasOperation_t opa = key->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasOperation_t opb = key->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	// fp32 mode: pedantic fp32 (no TF32, no reduced-precision reductions).
	cublasComputeType_t ct = key->f32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
	LT_CHECK(cublasLtMatmulDescCreate(&g->desc, ct, CUDA_R_32F));
	LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
	LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
	if (key->bias) {
		cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
		LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
	}
	LT_CHECK(cublasLtMatrixLayoutCreate(&g->la, abt, key->ta ? key->k : key->m,
					    key->ta ? key->m : key->k, key->lda));
	LT_CHECK(cublasLtMatrixLayoutCreate(&g->lb, abt, key->tb ? key->n : key->k,
					    key->tb ? key->k : key->n, key->ldb));
	LT_CHECK(cublasLtMatrixLayoutCreate(&g->ld, dt, key->m, key->n, key->ldd));

	cublasLtMatmulPreference_t pref;
	LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
	uint64_t ws = ci->lt_ws_bytes;
	uint32_t aa = key->align_a, ab = key->align_b, ad = key->align_d;
	LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
	LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)));
	LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)));
	LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof(ad)));
	LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof(ad)));
	cublasLtMatmulHeuristicResult_t res;
	int nres = 0;
	cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ci->lt, g->desc, g->la, g->lb, g->ld, g->ld,
							   pref, 1, &res, &nres);
	if ((st != CUBLAS_STATUS_SUCCESS || nres == 0) && key->f32) {
		// No pedantic kernel for this shape: plain fp32 compute (still no TF32).
		cublasLtMatmulDescDestroy(g->desc);
		LT_CHECK(cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
		LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
		LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
		if (key->bias) {
			cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
			LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
		}
		st = cublasLtMatmulAlgoGetHeuristic(ci->lt, g->desc, g->la, g->lb, g->ld, g->ld, pref, 1,
						    &res, &nres);
	}
	cublasLtMatmulPreferenceDestroy(pref);
	if (st != CUBLAS_STATUS_SUCCESS || nres == 0)
		sw_die("cuBLASLt has no algorithm for GEMM m=%d n=%d k=%d (ta=%d tb=%d types %d/%d)",
		       key->m, key->n, key->k, key->ta, key->tb, key->abt, key->dt);
	g->algo = res.algo;
	g->next = ci->gemms;
	ci->gemms = g;
	return g;
}

void cuda_gemm(cuda_impl *ci, cudaStream_t s, int ta, int tb, int m, int n, int k,
	       const void *A, int lda, const void *B, int ldb, void *D, int ldd,
	       cudaDataType_t abt, cudaDataType_t dt, float beta, const void *bias, int f32_mode)
{
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0) {
		SW_ASSERT(beta == 0.f || beta == 1.f);
		if (beta == 0.f)  // an empty sum: D = 0 (bias-free callers only)
			CU_CHECK(cudaMemset2DAsync(D, (size_t)ldd * (dt == CUDA_R_32F ? 4 : 2), 0,
						   (size_t)m * (dt == CUDA_R_32F ? 4 : 2), n, s));
		return;
	}
	gemm_key key;
	memset(&key, 0, sizeof(key));
	key.ta = ta; key.tb = tb; key.m = m; key.n = n; key.k = k;
	key.lda = lda; key.ldb = ldb; key.ldd = ldd;
	key.abt = abt; key.dt = dt; key.bias = bias != NULL; key.beta_nz = beta != 0.f; key.f32 = f32_mode;
	key.align_a = ptr_align(A); key.align_b = ptr_align(B); key.align_d = ptr_align(D);
	key.align_bias = bias ? ptr_align(bias) : 0;
	gemm_cache *g = gemm_plan(ci, &key);
	if (bias)
		LT_CHECK(cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
							sizeof(bias)));
	const float alpha = 1.0f;
	cuda_scratch_take(ci, s, 0);  // the workspace is shared like the scratch: order by stream
	void *ws = ci->lt_ws;
	LT_CHECK(cublasLtMatmul(ci->lt, g->desc, &alpha, A, g->la, B, g->lb, &beta, D, g->ld, D, g->ld,
				&g->algo, ws, ci->lt_ws_bytes, s));
}

// ---------------------------------------------------------------- lifetime, memory, copies
static void cuda_destroy(sw_backend *be)
{
	cuda_impl *ci = cuda_of(be);
	cudaDeviceSynchronize();
	for (gemm_cache *g = ci->gemms, *nx; g; g = nx) {
		nx = g->next;
		cublasLtMatrixLayoutDestroy(g->la);
		cublasLtMatrixLayoutDestroy(g->lb);
		cublasLtMatrixLayoutDestroy(g->ld);
		cublasLtMatmulDescDestroy(g->desc);
		free(g);
	}
	if (ci->lt)
		cublasLtDestroy(ci->lt);
	if (ci->scr.ev)
		cudaEventDestroy(ci->scr.ev);
	if (ci->red.ev)
		cudaEventDestroy(ci->red.ev);
	sw_suballoc_free_all(&ci->sa);
	cudaFree(ci->arena);
	free(ci);
	free(be);
}

static void sync_used(sw_backend *be)
{
	cuda_impl *ci = cuda_of(be);
	be->used = ci->sa.used;
	be->peak = ci->sa.peak;
}

static int cuda_dev_alloc(sw_backend *be, uint64_t bytes, void **out)
{
	cuda_impl *ci = cuda_of(be);
	uint64_t off;
	int r = sw_suballoc_alloc(&ci->sa, bytes, &off);
	if (r)
		return r;
	*out = ci->arena + off;
	sync_used(be);
	return 0;
}

static void cuda_dev_free(sw_backend *be, void *p)
{
	cuda_impl *ci = cuda_of(be);
	if (!p)
		return;
	SW_ASSERT((char *)p >= ci->arena && (char *)p < ci->arena + be->budget);
	int r = sw_suballoc_release(&ci->sa, (uint64_t)((char *)p - ci->arena));
	SW_ASSERT(r == 0);
	sync_used(be);
}

/* The runtime's pinned blocks are not always 4 KiB aligned (small ones come from its own pool:
 * seen on the H100 with CUDA 13), while NVMe I/O (O_DIRECT) needs 4 KiB. A misaligned block is
 * given back and one 4 KiB larger taken, the buffer starting at its first 4 KiB boundary; the
 * pairs (buffer, block) of those are kept here for cuda_host_free. An aligned block (the usual
 * case) is used as it is. */
typedef struct { void *buf, *block; } host_shift;
static pthread_mutex_t shift_mu = PTHREAD_MUTEX_INITIALIZER;
static host_shift *shifts;
static int nshift, capshift;

static int shift_add(void *buf, void *block)
{
	pthread_mutex_lock(&shift_mu);
	int rc = 0;
	if (nshift == capshift) {
		int cap = capshift ? 2 * capshift : 16;
		host_shift *n = (host_shift *)realloc(shifts, (size_t)cap * sizeof(*n));
		if (n) {
			shifts = n;
			capshift = cap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (!rc)
		shifts[nshift++] = (host_shift){ buf, block };
	pthread_mutex_unlock(&shift_mu);
	return rc;
}

/* The block behind buf: its own when it was aligned as allocated. */
static void *shift_take(void *buf)
{
	void *block = buf;
	pthread_mutex_lock(&shift_mu);
	for (int i = 0; i < nshift; i++)
		if (shifts[i].buf == buf) {
			block = shifts[i].block;
			shifts[i] = shifts[--nshift];
			break;
		}
	pthread_mutex_unlock(&shift_mu);
	return block;
}

static int cuda_host_alloc(sw_backend *be, uint64_t bytes, void **out)
{
	(void)be;
	uint64_t n = bytes ? bytes : 1;
	void *p = NULL;
	cudaError_t e = cudaHostAlloc(&p, n, cudaHostAllocPortable);
	if (e == cudaSuccess && ((uintptr_t)p & 4095)) {
		CU_CHECK(cudaFreeHost(p));
		void *block = NULL;
		e = cudaHostAlloc(&block, n + 4096, cudaHostAllocPortable);
		if (e == cudaSuccess) {
			p = (void *)(((uintptr_t)block + 4095) & ~(uintptr_t)4095);
			if (shift_add(p, block)) {
				CU_CHECK(cudaFreeHost(block));
				e = cudaErrorMemoryAllocation;
			}
		}
	}
	if (e != cudaSuccess) {
		cudaGetLastError();
		*out = NULL;
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

static void cuda_host_free(sw_backend *be, void *p)
{
	(void)be;
	if (p)
		CU_CHECK(cudaFreeHost(shift_take(p)));
}

static int cuda_host_register(sw_backend *be, void *p, uint64_t bytes)
{
	(void)be;
	cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterPortable);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return e == cudaErrorMemoryAllocation ? -ENOMEM : -EINVAL;
	}
	return 0;
}

static void cuda_host_unregister(sw_backend *be, void *p)
{
	(void)be;
	CU_CHECK(cudaHostUnregister(p));
}

static int cuda_stream_create(sw_backend *be, sw_stream **out)
{
	(void)be;
	sw_stream *s = (sw_stream *)calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking) != cudaSuccess) {
		cudaGetLastError();
		free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

static void cuda_stream_destroy(sw_backend *be, sw_stream *s)
{
	cuda_impl *ci = cuda_of(be);
	if (!s)
		return;
	CU_CHECK(cudaStreamSynchronize(s->s));
	if (ci->scr.last == s->s)
		ci->scr.last = 0;
	if (ci->red.last == s->s)
		ci->red.last = 0;
	CU_CHECK(cudaStreamDestroy(s->s));
	free(s);
}

static void cuda_stream_sync(sw_backend *be, sw_stream *s)
{
	(void)be;
	CU_CHECK(cudaStreamSynchronize(cuda_stream(s)));
}

static int cuda_event_create(sw_backend *be, sw_event **out)
{
	(void)be;
	sw_event *e = (sw_event *)calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (cudaEventCreate(&e->e) != cudaSuccess) {  // timing enabled (event_ms)
		cudaGetLastError();
		free(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

static void cuda_event_destroy(sw_backend *be, sw_event *e)
{
	(void)be;
	if (!e)
		return;
	CU_CHECK(cudaEventDestroy(e->e));
	free(e);
}

static void cuda_event_record(sw_backend *be, sw_event *e, sw_stream *s)
{
	(void)be;
	CU_CHECK(cudaEventRecord(e->e, cuda_stream(s)));
}

static void cuda_stream_wait(sw_backend *be, sw_stream *s, sw_event *e)
{
	(void)be;
	CU_CHECK(cudaStreamWaitEvent(cuda_stream(s), e->e, 0));
}

static void cuda_event_sync(sw_backend *be, sw_event *e)
{
	(void)be;
	CU_CHECK(cudaEventSynchronize(e->e));
}

static int cuda_event_done(sw_backend *be, sw_event *e)
{
	(void)be;
	cudaError_t r = cudaEventQuery(e->e);
	if (r == cudaErrorNotReady)
		return 0;
	CU_CHECK(r);
	return 1;
}

static float cuda_event_ms(sw_backend *be, sw_event *a, sw_event *b)
{
	(void)be;
	float ms = 0.f;
	CU_CHECK(cudaEventElapsedTime(&ms, a->e, b->e));
	return ms;
}

static void cuda_copy_h2d(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t bytes)
{
	(void)be;
	if (bytes)
		CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream(s)));
}

static void cuda_copy_d2h(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t bytes)
{
	(void)be;
	if (bytes)
		CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream(s)));
}

static void cuda_copy_d2d(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t bytes)
{
	(void)be;
	if (bytes)
		CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream(s)));
}

static void cuda_memset0(sw_backend *be, sw_stream *s, void *dst, uint64_t bytes)
{
	(void)be;
	if (bytes)
		CU_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda_stream(s)));
}

// ---------------------------------------------------------------- ops
static int is_bf16(sw_backend *be) { return be->act == SW_DTYPE_BF16; }
static cudaDataType_t act_type(sw_backend *be) { return is_bf16(be) ? CUDA_R_16BF : CUDA_R_32F; }
static int f32_mode(sw_backend *be) { return !is_bf16(be); }

static void op_embedding_fwd(sw_backend *be, sw_stream *s, void *out, const int32_t *tokens,
			     const void *wte, int N, int C)
{
	cuda_embedding_fwd(cuda_stream(s), is_bf16(be), out, tokens, wte, N, C);
}

static void op_embedding_bwd(sw_backend *be, sw_stream *s, float *dwte, const void *dout,
			     const int32_t *tokens, int N, int C, int V)
{
	cuda_embedding_bwd(cuda_of(be), cuda_stream(s), is_bf16(be), dwte, dout, tokens, N, C, V);
}

static void op_rmsnorm_fwd(sw_backend *be, sw_stream *s, void *out, float *rstd, const void *inp,
			   const void *w, int N, int C, float eps)
{
	cuda_rmsnorm_fwd(cuda_stream(s), is_bf16(be), out, rstd, inp, w, N, C, eps);
}

static void op_rmsnorm_bwd(sw_backend *be, sw_stream *s, void *dinp, float *dw, const void *dout,
			   const void *inp, const void *w, const float *rstd, int N, int C, int flags)
{
	cuda_rmsnorm_bwd(cuda_of(be), cuda_stream(s), is_bf16(be), dinp, dw, dout, inp, w, rstd, N, C,
			 (flags & SW_BWD_DW_SET) != 0);
}

// Row-major Y (N,OC) = X (N,C) W(OC,C)^T is, in cuBLAS's column-major view, Y^T = W^T X^T:
// m = OC, n = N, k = C, A = W (transposed), B = X.
static void op_matmul_fwd(sw_backend *be, sw_stream *s, void *out, const void *inp, const void *w,
			  const void *bias, int N, int C, int OC)
{
	cuda_gemm(cuda_of(be), cuda_stream(s), 1, 0, OC, N, C, w, C, inp, C, out, OC, act_type(be),
		  act_type(be), 0.f, bias, f32_mode(be));
}

static void op_matmul_bwd(sw_backend *be, sw_stream *s, void *dinp, float *dw, float *dbias,
			  const void *dout, const void *inp, const void *w, int N, int C, int OC,
			  int flags)
{
	cuda_impl *ci = cuda_of(be);
	cudaStream_t st = cuda_stream(s);
	const int set = (flags & SW_BWD_DW_SET) != 0;
	// dX (N,C) = dY (N,OC) W (OC,C): column-major dX^T = W^T' dY^T with m = C, n = N, k = OC.
	if (dinp)
		cuda_gemm(ci, st, 0, 0, C, N, OC, w, C, dout, OC, dinp, C, act_type(be), act_type(be),
			  (flags & SW_BWD_ACCUM) ? 1.f : 0.f, NULL, f32_mode(be));
	// dW (OC,C) += dY^T X: column-major dW^T (C,OC) = X^T (C,N) dY (N,OC); fp32 accumulator.
	// With SW_BWD_DW_SET beta is 0: the GEMM writes dW without reading it.
	if (dw)
		cuda_gemm(ci, st, 0, 1, C, OC, N, inp, C, dout, OC, dw, C, act_type(be), CUDA_R_32F,
			  set ? 0.f : 1.f, NULL, f32_mode(be));
	if (dbias)
		cuda_colsum_add(st, is_bf16(be), dbias, dout, N, OC, set);
}

static void op_rope_fwd(sw_backend *be, sw_stream *s, void *x, const float *inv_freq, int N, int T,
			int nh, int hd)
{
	cuda_rope(cuda_stream(s), is_bf16(be), x, inv_freq, N, T, nh, hd, 0);
}

static void op_rope_bwd(sw_backend *be, sw_stream *s, void *dx, const float *inv_freq, int N, int T,
			int nh, int hd)
{
	cuda_rope(cuda_stream(s), is_bf16(be), dx, inv_freq, N, T, nh, hd, 1);
}

static void op_attention_fwd(sw_backend *be, sw_stream *s, void *out, float *lse, const void *q,
			     const void *k, const void *v, int B, int T, int nh, int nkv, int hd)
{
	SW_ASSERT(nkv > 0 && nh % nkv == 0);
	cuda_attention_fwd(cuda_of(be), cuda_stream(s), is_bf16(be), out, lse, q, k, v, B, T, nh, nkv, hd);
}

static void op_attention_bwd(sw_backend *be, sw_stream *s, void *dq, void *dk, void *dv,
			     const void *dout, const void *q, const void *k, const void *v,
			     const void *out, const float *lse, int B, int T, int nh, int nkv, int hd)
{
	SW_ASSERT(nkv > 0 && nh % nkv == 0);
	cuda_attention_bwd(cuda_of(be), cuda_stream(s), is_bf16(be), dq, dk, dv, dout, q, k, v, out,
			   lse, B, T, nh, nkv, hd);
}

static void op_swiglu_fwd(sw_backend *be, sw_stream *s, void *out, const void *gate, const void *up,
			  int64_t n)
{
	cuda_swiglu_fwd(cuda_stream(s), is_bf16(be), out, gate, up, n);
}

static void op_swiglu_bwd(sw_backend *be, sw_stream *s, void *dgate, void *dup, const void *dout,
			  const void *gate, const void *up, int64_t n)
{
	cuda_swiglu_bwd(cuda_stream(s), is_bf16(be), dgate, dup, dout, gate, up, n);
}

static void op_add(sw_backend *be, sw_stream *s, void *out, const void *a, const void *b, int64_t n)
{
	cuda_add(cuda_stream(s), is_bf16(be), out, a, b, n);
}

static void op_scale(sw_backend *be, sw_stream *s, void *x, float alpha, int64_t n)
{
	cuda_scale(cuda_stream(s), is_bf16(be), x, alpha, n);
}

// Chunk sizes for head_loss inside the scratch region: rows in chunks of nc, the vocabulary in
// chunks of vc; per chunk pair the scratch holds logits (nc,vc) fp32, dlogits (nc,vc) act,
// the fp32 dinp accumulator (nc,C) and per-row statistics (nc,4).
static void head_chunks(uint64_t scratch, int N, int C, int V, int es, int *nc_out, int *vc_out)
{
	int64_t nc = N < 4096 ? N : 4096;
	for (;;) {
		const uint64_t fixed = (uint64_t)nc * C * 4 + (uint64_t)nc * 16 + 4 * 256;
		int64_t vc = fixed < scratch ? (int64_t)((scratch - fixed) / ((uint64_t)nc * (4 + es))) : 0;
		if (vc > V)
			vc = V;
		else if (vc > 256)
			vc = vc / 256 * 256;  // whole GEMM tiles
		if (vc >= (V < 256 ? V : 256) || nc == 1) {
			SW_ASSERT(vc >= 1);
			*nc_out = (int)nc;
			*vc_out = (int)vc;
			return;
		}
		nc = (nc + 1) / 2;
	}
}

static uint64_t up256(uint64_t x) { return (x + 255) / 256 * 256; }

static void op_head_loss(sw_backend *be, sw_stream *s, float *losses, void *dinp, float *dw,
			 const void *inp, const void *w, const int32_t *targets, float scale,
			 int N, int C, int V)
{
	cuda_impl *ci = cuda_of(be);
	cudaStream_t st = cuda_stream(s);
	const int bf16 = is_bf16(be), es = bf16 ? 2 : 4;
	const cudaDataType_t at = act_type(be);
	int nc, vc;
	if (N <= 0)
		return;
	head_chunks(ci->scr.bytes, N, C, V, es, &nc, &vc);
	char *scr = cuda_scratch_take(ci, st, 0);
	float *logits = (float *)scr;
	char *p = scr + up256((uint64_t)nc * vc * 4);
	void *dlog = p;
	p += up256((uint64_t)nc * vc * es);
	float *dacc = (float *)p;
	p += up256((uint64_t)nc * C * 4);
	float *stats = (float *)p;
	SW_ASSERT((uint64_t)(p + up256((uint64_t)nc * 16) - scr) <= ci->scr.bytes);

	for (int r0 = 0; r0 < N; r0 += nc) {
		const int rows = N - r0 < nc ? N - r0 : nc;
		const char *x = (const char *)inp + (uint64_t)r0 * C * es;
		const int32_t *tg = targets + r0;
		// Pass 1: online log-sum-exp over the vocabulary chunks.
		for (int v0 = 0; v0 < V; v0 += vc) {
			const int cols = V - v0 < vc ? V - v0 : vc;
			const char *wc = (const char *)w + (uint64_t)v0 * C * es;
			cuda_gemm(ci, st, 1, 0, cols, rows, C, wc, C, x, C, logits, cols, at, CUDA_R_32F,
				  0.f, NULL, f32_mode(be));
			cuda_xent_chunk_stats(st, stats, logits, tg, rows, cols, v0, v0 == 0);
		}
		cuda_xent_finish(st, losses + r0, stats, tg, rows);
		if (!dinp)
			continue;
		// Pass 2: dlogits per chunk, then dinp (fp32 accumulator) and dw. The chunks in
		// reverse: the last one's logits are still in the buffer from pass 1 (one logits GEMM
		// of the V / vc saved: 0.1 ms of a 2048-token micro-batch's 3.6 ms at the 2.8B shape).
		const int vlast = (V - 1) / vc * vc;
		for (int v0 = vlast; v0 >= 0; v0 -= vc) {
			const int cols = V - v0 < vc ? V - v0 : vc;
			const char *wc = (const char *)w + (uint64_t)v0 * C * es;
			if (v0 != vlast)
				cuda_gemm(ci, st, 1, 0, cols, rows, C, wc, C, x, C, logits, cols, at,
					  CUDA_R_32F, 0.f, NULL, f32_mode(be));
			cuda_xent_dlogits(st, bf16, dlog, logits, stats, tg, rows, cols, v0, scale);
			// dinp (rows,C) += dlogits (rows,cols) @ w chunk (cols,C)
			cuda_gemm(ci, st, 0, 0, C, rows, cols, wc, C, dlog, cols, dacc, C, at, CUDA_R_32F,
				  v0 == vlast ? 0.f : 1.f, NULL, f32_mode(be));
			// dw chunk (cols,C) += dlogits^T @ x
			if (dw)
				cuda_gemm(ci, st, 0, 1, C, cols, rows, x, C, dlog, cols, dw + (uint64_t)v0 * C,
					  C, at, CUDA_R_32F, 1.f, NULL, f32_mode(be));
		}
		cuda_cast_f32_to_act(st, bf16, (char *)dinp + (uint64_t)r0 * C * es, dacc, (int64_t)rows * C);
	}
}

static void op_head_logits(sw_backend *be, sw_stream *s, float *logits, const void *inp,
			   const void *w, int N, int C, int V)
{
	cuda_gemm(cuda_of(be), cuda_stream(s), 1, 0, V, N, C, w, C, inp, C, logits, V, act_type(be),
		  CUDA_R_32F, 0.f, NULL, f32_mode(be));
}

static void op_sumsq(sw_backend *be, sw_stream *s, double *out, const float *x, int64_t n)
{
	cuda_sumsq(cuda_of(be), cuda_stream(s), out, x, n);
}

static void op_adamw(sw_backend *be, sw_stream *s, float *p32, float *m, float *v, const float *g,
		     void *p16, int64_t n, const sw_adamw_args *a)
{
	sw_adamw_gpu_launch(p32, m, v, g, p16, be->act, n, a, (void *)cuda_stream(s));
	CU_CHECK_LAUNCH();
}

static void op_cast_f32_to_act(sw_backend *be, sw_stream *s, void *dst, const float *src, int64_t n)
{
	cuda_cast_f32_to_act(cuda_stream(s), is_bf16(be), dst, src, n);
}

static const sw_backend_ops cuda_ops = {
	cuda_destroy,
	cuda_dev_alloc,
	cuda_dev_free,
	cuda_host_alloc,
	cuda_host_free,
	cuda_host_register,
	cuda_host_unregister,
	cuda_stream_create,
	cuda_stream_destroy,
	cuda_stream_sync,
	cuda_event_create,
	cuda_event_destroy,
	cuda_event_record,
	cuda_stream_wait,
	cuda_event_sync,
	cuda_event_done,
	cuda_event_ms,
	cuda_copy_h2d,
	cuda_copy_d2h,
	cuda_copy_d2d,
	cuda_memset0,
	op_embedding_fwd,
	op_embedding_bwd,
	op_rmsnorm_fwd,
	op_rmsnorm_bwd,
	op_matmul_fwd,
	op_matmul_bwd,
	op_rope_fwd,
	op_rope_bwd,
	op_attention_fwd,
	op_attention_bwd,
	op_swiglu_fwd,
	op_swiglu_bwd,
	op_add,
	op_scale,
	op_head_loss,
	op_head_logits,
	op_sumsq,
	op_adamw,
	op_cast_f32_to_act,
};

extern "C" int sw_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	return n;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

// ---- Device memory as this process uses it ------------------------------------------------
// cudaMemGetInfo reports the whole device: what other processes hold (a desktop, another job)
// counts too. So the free memory before this process made its CUDA context is taken as the
// baseline, read through NVML (the driver's management library, opened with dlopen because it
// ships with the driver rather than the toolkit and a build must not need it); what this process
// uses at any moment is then baseline - cudaMemGetInfo's free. Without NVML the baseline is the
// device's total, so other processes' memory is counted as ours: the safe side for a budget.
static struct {
	int ready, nvml;
	uint64_t base_free;   // free device bytes before this process's context existed
	uint64_t context;     // bytes the context took (measured right after creating it)
} g_mem;

// NVML's free bytes of the device with this PCI bus id; 0 and *ok = 0 when NVML is unusable.
static uint64_t nvml_free(const char *bus, int *ok)
{
	typedef struct { unsigned long long total, free, used; } nvml_memory;
	*ok = 0;
	void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return 0;
	int (*init)(void) = (int (*)(void))dlsym(h, "nvmlInit_v2");
	int (*shut)(void) = (int (*)(void))dlsym(h, "nvmlShutdown");
	int (*by_bus)(const char *, void **) = (int (*)(const char *, void **))dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
	int (*meminfo)(void *, nvml_memory *) = (int (*)(void *, nvml_memory *))dlsym(h, "nvmlDeviceGetMemoryInfo");
	uint64_t f = 0;
	void *dev = NULL;
	nvml_memory m;
	if (init && shut && by_bus && meminfo && init() == 0) {
		if (by_bus(bus, &dev) == 0 && meminfo(dev, &m) == 0) {
			f = m.free;
			*ok = 1;
		}
		shut();
	}
	dlclose(h);
	return f;
}

extern "C" int sw_cuda_context_bytes(int device, uint64_t *context, int *exact)
{
	if (!g_mem.ready) {
		if (device < 0 || device >= sw_cuda_device_count())
			return -ENODEV;
		char bus[32] = { 0 };
		int ok = 0;
		uint64_t before = 0;
		if (cudaDeviceGetPCIBusId(bus, (int)sizeof(bus), device) == cudaSuccess)
			before = nvml_free(bus, &ok);
		else
			cudaGetLastError();
		if (cudaSetDevice(device) != cudaSuccess || cudaFree(0) != cudaSuccess) {
			cudaGetLastError();
			return -ENODEV;
		}
		size_t free_b = 0, total_b = 0;
		if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
			cudaGetLastError();
			return -ENODEV;
		}
		// NVML and the runtime may round differently; never let the baseline sit below the
		// free memory the runtime sees, nor above the device's size
		g_mem.nvml = ok && before >= free_b && before <= total_b;
		g_mem.base_free = g_mem.nvml ? before : total_b;
		g_mem.context = g_mem.base_free - free_b;
		g_mem.ready = 1;
	}
	*context = g_mem.context;
	*exact = g_mem.nvml;
	return 0;
}

extern "C" int sw_cuda_mem_used(uint64_t *used)
{
	size_t free_b = 0, total_b = 0;
	if (!g_mem.ready || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
		cudaGetLastError();
		return -ENODEV;
	}
	*used = g_mem.base_free > free_b ? g_mem.base_free - free_b : 0;
	return 0;
}


// Workspace and scratch reserved out of the budget at create: small budgets (tests, tiny
// models) keep small reserves; large ones cap them at 32 MiB + 512 MiB (the scratch holds the
// attention backward's fixed-point dQ accumulator, B*T*heads*head_dim*4 bytes, when it fits).
static void reserve_sizes(uint64_t budget, uint64_t *ws, uint64_t *scr)
{
	*ws = budget >= 1024 * MIB ? 32 * MIB : 4 * MIB;
	uint64_t s = budget / 16;
	if (s > 512 * MIB)
		s = 512 * MIB;
	if (s < 4 * MIB)
		s = 4 * MIB;
	*scr = s;
}

extern "C" int sw_cuda_backend_create(const sw_backend_opts *o, sw_backend **out)
{
	int count = sw_cuda_device_count();
	if (count <= 0) {
		sw_error("backend cuda: no CUDA device is usable; use --backend cpu");
		return -ENODEV;
	}
	if (o->device < 0 || o->device >= count) {
		sw_error("backend cuda: device %d does not exist (%d found); pick 0..%d", o->device, count,
			 count - 1);
		return -ENODEV;
	}
	if (o->act != SW_DTYPE_BF16 && o->act != SW_DTYPE_F32) {
		sw_error("backend cuda: activation type %s is not supported; use bf16 or fp32",
			 sw_dtype_name(o->act));
		return -EINVAL;
	}
	CU_CHECK(cudaSetDevice(o->device));
	cudaDeviceProp prop;
	CU_CHECK(cudaGetDeviceProperties(&prop, o->device));
	uint64_t ws_bytes, scr_bytes;
	reserve_sizes(o->mem_budget, &ws_bytes, &scr_bytes);
	if (o->mem_budget < ws_bytes + scr_bytes + MIB) {
		sw_error("backend cuda: --gpu-mem %.0f MiB is too small (the backend's own workspace needs "
			 "%.0f MiB); give at least %.0f MiB", (double)o->mem_budget / MIB,
			 (double)(ws_bytes + scr_bytes) / MIB, (double)(ws_bytes + scr_bytes + MIB) / MIB);
		return -ENOMEM;
	}
	size_t free_b = 0, total_b = 0;
	CU_CHECK(cudaMemGetInfo(&free_b, &total_b));
	if (o->mem_budget > free_b) {
		sw_error("backend cuda: --gpu-mem %.2f GiB exceeds the %.2f GiB free on %s (device %d, "
			 "%.2f GiB total); lower --gpu-mem", gib(o->mem_budget), gib(free_b), prop.name,
			 o->device, gib(total_b));
		return -ENOMEM;
	}
	sw_backend *be = (sw_backend *)calloc(1, sizeof(*be));
	cuda_impl *ci = (cuda_impl *)calloc(1, sizeof(*ci));
	if (!be || !ci) {
		free(be);
		free(ci);
		return -ENOMEM;
	}
	ci->device = o->device;
	ci->num_sms = prop.multiProcessorCount;
	if (cudaMalloc((void **)&ci->arena, o->mem_budget) != cudaSuccess) {
		cudaGetLastError();
		sw_error("backend cuda: could not allocate the %.2f GiB arena on %s; lower --gpu-mem",
			 gib(o->mem_budget), prop.name);
		free(be);
		free(ci);
		return -ENOMEM;
	}
	be->ops = &cuda_ops;
	be->name = "cuda";
	be->act = o->act;
	be->budget = o->mem_budget;
	be->impl = ci;
	memcpy(be->device_name, prop.name, sizeof(be->device_name) - 1);
	be->device_name[sizeof(be->device_name) - 1] = 0;
	if (sw_suballoc_init(&ci->sa, o->mem_budget)) {
		cudaFree(ci->arena);
		free(be);
		free(ci);
		return -ENOMEM;
	}
	uint64_t off;
	SW_ASSERT(sw_suballoc_alloc(&ci->sa, ws_bytes, &off) == 0);
	ci->lt_ws = ci->arena + off;
	ci->lt_ws_bytes = ws_bytes;
	SW_ASSERT(sw_suballoc_alloc(&ci->sa, scr_bytes, &off) == 0);
	ci->red.bytes = 64 * 1024;
	SW_ASSERT(scr_bytes > 2 * ci->red.bytes);
	ci->scr.base = ci->arena + off;
	ci->scr.bytes = (scr_bytes - ci->red.bytes) & ~255ull;   // red 256-aligned: doubles there
	ci->scr.last = 0;
	ci->red.base = ci->scr.base + ci->scr.bytes;
	ci->red.last = 0;
	CU_CHECK(cudaEventCreateWithFlags(&ci->scr.ev, cudaEventDisableTiming));
	CU_CHECK(cudaEventCreateWithFlags(&ci->red.ev, cudaEventDisableTiming));
	LT_CHECK(cublasLtCreate(&ci->lt));
	sync_used(be);
	*out = be;
	return 0;
}
