// The CUDA backend's memory-bound kernels: embedding forward, RMSNorm, RoPE, SwiGLU, add,
// casts, the deterministic reductions (sumsq, bias gradient) and the per-chunk pieces of the
// fused LM head + cross-entropy. Each op is templated on the activation type T (float or
// __nv_bfloat16); arithmetic is fp32 with explicitly rounded intrinsics where the CPU backend's
// operation order matters, so the compiler cannot contract a*b+c into an FMA.
#include "cuda/common.cuh"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FULL_MASK 0xffffffffu

// Sum over the block in a fixed tree (the same order every run). All threads get the result.
// blockDim.x must be a multiple of 32, at most 1024.
template <typename A>
__device__ A block_sum(A v, A *sh)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL_MASK, v, o);
	__syncthreads();  // sh may still be read by a previous call
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : (A)0;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(FULL_MASK, v, o);
	return v;
}

__device__ float block_max(float v, float *sh)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
	__syncthreads();
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
	return v;
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// The vector forms of RMSNorm (forward and backward), RoPE and SwiGLU's backward (docs/cuda.md
// "Vector forms"): on unless SW_CUDA_VEC=0, which runs the scalar kernels. Read at every call
// (the op tests switch it to compare the two forms' bits).
static int vec_kernels(void) { return !cuda_env_is("SW_CUDA_VEC", "0"); }

// Says once per op that its vector form was launched (the guards also need bf16 and aligned
// pointers, so the switch alone does not mean it ran): tests/gpu/test_cuda_vec.sh looks for
// each op's line.
enum { VEC_RMS_FWD, VEC_RMS_BWD, VEC_ROPE, VEC_ROPE_HEADS, VEC_SWIGLU_BWD, VEC_OPS };
static void vec_ran(int op)
{
	static const char *const name[VEC_OPS] = { "rmsnorm_fwd", "rmsnorm_bwd", "rope", "rope_heads",
						   "swiglu_bwd" };
	static int said[VEC_OPS];
	if (!said[op]) {
		said[op] = 1;
		fprintf(stderr, "cuda: vector kernel ran: %s (SW_CUDA_VEC=0 turns it off)\n", name[op]);
	}
}

static int row_threads(int C)
{
	int t = 32;
	while (t < C && t < 1024)
		t *= 2;
	return t;
}

// ---------------------------------------------------------------- embedding forward
template <typename T>
__global__ void embedding_fwd_kernel(T *out, const int32_t *tokens, const T *wte, int N, int C)
{
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		const int64_t t = tokens[n];
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			out[(int64_t)n * C + c] = wte[t * C + c];
	}
}

void cuda_embedding_fwd(cudaStream_t s, int bf16, void *out, const int32_t *tokens, const void *wte,
			int N, int C)
{
	if (N <= 0)
		return;
	unsigned g = cuda_blocks(N, 1, 65535);
	int th = row_threads(C) > 256 ? 256 : row_threads(C);
	if (bf16)
		embedding_fwd_kernel<<<g, th, 0, s>>>((__nv_bfloat16 *)out, tokens, (const __nv_bfloat16 *)wte, N, C);
	else
		embedding_fwd_kernel<<<g, th, 0, s>>>((float *)out, tokens, (const float *)wte, N, C);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- RMSNorm
// The per-row and per-element arithmetic, one definition for the scalar and vector kernels.
__device__ __forceinline__ float rms_rstd(float ss, int C, float eps)
{
	return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)C), eps)));
}

__device__ __forceinline__ float rms_out(float x, float r, float w) { return __fmul_rn(__fmul_rn(x, r), w); }

// Backward, with xh = x * r and g = dy * w: the row's dot += g * xh and the dw partial
// += dy * xh; then dx += r * (g - xh * k), k = dot / C.
__device__ __forceinline__ void rms_bwd_sums(float x, float dy, float w, float r, float *dot, float *pd)
{
	const float xh = __fmul_rn(x, r), g = __fmul_rn(dy, w);
	*dot = __fadd_rn(*dot, __fmul_rn(g, xh));
	*pd = __fadd_rn(*pd, __fmul_rn(dy, xh));
}

__device__ __forceinline__ float rms_bwd_dx(float dx, float x, float dy, float w, float r, float k)
{
	const float xh = __fmul_rn(x, r), g = __fmul_rn(dy, w);
	return __fadd_rn(dx, __fmul_rn(r, __fsub_rn(g, __fmul_rn(xh, k))));
}

// One block per row: rstd = 1 / sqrt(mean(x^2) + eps); out = (x * rstd) * w.
template <typename T>
__global__ void rmsnorm_fwd_kernel(T *out, float *rstd, const T *inp, const T *w, int N, int C, float eps)
{
	__shared__ float sh[32];
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		const T *x = inp + (int64_t)n * C;
		float ss = 0.f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float v = ld_act(x, c);
			ss = __fadd_rn(ss, __fmul_rn(v, v));
		}
		ss = block_sum(ss, sh);
		float r = rms_rstd(ss, C, eps);
		if (threadIdx.x == 0)
			rstd[n] = r;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			st_act(out + (int64_t)n * C, c, rms_out(ld_act(x, c), r, ld_act(w, c)));
	}
}

// The bf16 rows of 8k elements (16-byte aligned; most models' widths): each thread loads its
// VPT vectors of 8 once and keeps them in registers for the output (the scalar kernel above
// reads x twice, 2 bytes at a time: 30 us for 2048 x 3072 on the H100, about a third of the
// memory's rate). The same per-element arithmetic; the squares are summed in another order
// (each thread's runs of 8, then the block's tree), fixed by the shape.
template <int VPT>
__global__ void __launch_bounds__(512) rmsnorm_fwd_vec(__nv_bfloat16 *out, float *rstd, const __nv_bfloat16 *inp,
				const __nv_bfloat16 *w, int N, int C, float eps)
{
	__shared__ float sh[32];
	const int nv = C / 8;
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		const uint4 *x = (const uint4 *)(inp + (int64_t)n * C);
		uint4 xv[VPT];
		float ss = 0.f;
#pragma unroll
		for (int j = 0; j < VPT; j++) {
			const int v = threadIdx.x + j * blockDim.x;
			if (v < nv) {
				float f[8];
				xv[j] = x[v];
				unpack8(xv[j], f);
#pragma unroll
				for (int e = 0; e < 8; e++)
					ss = __fadd_rn(ss, __fmul_rn(f[e], f[e]));
			}
		}
		ss = block_sum(ss, sh);
		const float r = rms_rstd(ss, C, eps);
		if (threadIdx.x == 0)
			rstd[n] = r;
		uint4 *o = (uint4 *)(out + (int64_t)n * C);
#pragma unroll
		for (int j = 0; j < VPT; j++) {
			const int v = threadIdx.x + j * blockDim.x;
			if (v < nv) {
				float f[8], g[8];
				unpack8(xv[j], f);
				unpack8(((const uint4 *)w)[v], g);
#pragma unroll
				for (int e = 0; e < 8; e++)
					f[e] = rms_out(f[e], r, g[e]);
				o[v] = pack8(f);
			}
		}
	}
}

// Threads and vectors a thread for the vector RMSNorm kernels over rows of C (a multiple of 8):
// at most 512 threads, VPT a power of two up to 4 (C up to 16384); 0 when C is larger.
static int rms_vec(int C, int *threads)
{
	const int nv = C / 8;
	int th = (nv + 31) / 32 * 32, vpt = 1;
	if (th > 512)
		th = 512;
	while (vpt * th < nv)
		vpt *= 2;
	*threads = th;
	return vpt <= 4 ? vpt : 0;
}

void cuda_rmsnorm_fwd(cudaStream_t s, int bf16, void *out, float *rstd, const void *inp,
		      const void *w, int N, int C, float eps)
{
	if (N <= 0)
		return;
	int vth = 0, vpt = vec_kernels() && bf16 && C % 8 == 0 && C >= 8 && aligned16(out) && aligned16(inp) && aligned16(w) ? rms_vec(C, &vth) : 0;
	if (vpt) {
		const unsigned gv = cuda_blocks(N, 1, 65535);
		__nv_bfloat16 *o = (__nv_bfloat16 *)out;
		const __nv_bfloat16 *x = (const __nv_bfloat16 *)inp, *wb = (const __nv_bfloat16 *)w;
		if (vpt == 1)
			rmsnorm_fwd_vec<1><<<gv, vth, 0, s>>>(o, rstd, x, wb, N, C, eps);
		else if (vpt == 2)
			rmsnorm_fwd_vec<2><<<gv, vth, 0, s>>>(o, rstd, x, wb, N, C, eps);
		else
			rmsnorm_fwd_vec<4><<<gv, vth, 0, s>>>(o, rstd, x, wb, N, C, eps);
		CU_CHECK_LAUNCH();
		vec_ran(VEC_RMS_FWD);
		return;
	}
	unsigned g = cuda_blocks(N, 1, 65535);
	int th = row_threads(C) > 512 ? 512 : row_threads(C);
	if (bf16)
		rmsnorm_fwd_kernel<<<g, th, 0, s>>>((__nv_bfloat16 *)out, rstd, (const __nv_bfloat16 *)inp,
						    (const __nv_bfloat16 *)w, N, C, eps);
	else
		rmsnorm_fwd_kernel<<<g, th, 0, s>>>((float *)out, rstd, (const float *)inp, (const float *)w,
						    N, C, eps);
	CU_CHECK_LAUNCH();
}

// Backward. With xh = x * r and g = dout * w:
//   dx = r * (g - xh * (sum(g * xh) / C)),   dw += sum over rows of dout * xh.
// Block b owns rows b, b+G, ...; its dw contribution goes to its own partial row part[b][C]
// (no atomics), and rmsnorm_dw_reduce adds the G partials in order b = 0..G-1.
template <typename T>
__global__ void rmsnorm_bwd_kernel(T *dinp, float *part, const T *dout, const T *inp, const T *w,
				   const float *rstd, int N, int C)
{
	__shared__ float sh[32];
	float *pd = part + (int64_t)blockIdx.x * C;
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		pd[c] = 0.f;
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		const T *x = inp + (int64_t)n * C, *dy = dout + (int64_t)n * C;
		const float r = rstd[n];
		float dot = 0.f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			rms_bwd_sums(ld_act(x, c), ld_act(dy, c), ld_act(w, c), r, &dot, &pd[c]);
		dot = block_sum(dot, sh);
		const float k = __fdiv_rn(dot, (float)C);
		T *dx = dinp + (int64_t)n * C;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			st_act(dx, c, rms_bwd_dx(ld_act(dx, c), ld_act(x, c), ld_act(dy, c), ld_act(w, c), r, k));
	}
}

// The bf16 vector form (rows of 8k elements, 16-byte aligned): w and the block's dw partial stay
// in registers across its rows, each row's x and dout are loaded once (16 bytes at a time) and
// kept for dx. dw's partials are the same sums in the same order as above (so the same bits);
// the row's dot is summed in another order, fixed by the shape.
template <int VPT>
__global__ void __launch_bounds__(512) rmsnorm_bwd_vec(__nv_bfloat16 *dinp, float *part, const __nv_bfloat16 *dout,
				const __nv_bfloat16 *inp, const __nv_bfloat16 *w, const float *rstd, int N,
				int C)
{
	__shared__ float sh[32];
	const int nv = C / 8;
	uint4 wv[VPT];
	float pd[VPT][8];
#pragma unroll
	for (int j = 0; j < VPT; j++) {
		const int v = threadIdx.x + j * blockDim.x;
		wv[j] = v < nv ? ((const uint4 *)w)[v] : make_uint4(0, 0, 0, 0);
#pragma unroll
		for (int e = 0; e < 8; e++)
			pd[j][e] = 0.f;
	}
	for (int n = blockIdx.x; n < N; n += gridDim.x) {
		const uint4 *x = (const uint4 *)(inp + (int64_t)n * C), *dy = (const uint4 *)(dout + (int64_t)n * C);
		const float r = rstd[n];
		uint4 xv[VPT], dv[VPT];
		float dot = 0.f;
#pragma unroll
		for (int j = 0; j < VPT; j++) {
			const int v = threadIdx.x + j * blockDim.x;
			if (v < nv) {
				float xf[8], df[8], wf[8];
				xv[j] = x[v];
				dv[j] = dy[v];
				unpack8(xv[j], xf);
				unpack8(dv[j], df);
				unpack8(wv[j], wf);
#pragma unroll
				for (int e = 0; e < 8; e++)
					rms_bwd_sums(xf[e], df[e], wf[e], r, &dot, &pd[j][e]);
			}
		}
		dot = block_sum(dot, sh);
		const float k = __fdiv_rn(dot, (float)C);
		uint4 *dx = (uint4 *)(dinp + (int64_t)n * C);
#pragma unroll
		for (int j = 0; j < VPT; j++) {
			const int v = threadIdx.x + j * blockDim.x;
			if (v < nv) {
				float xf[8], df[8], wf[8], of[8];
				unpack8(xv[j], xf);
				unpack8(dv[j], df);
				unpack8(wv[j], wf);
				unpack8(dx[v], of);
#pragma unroll
				for (int e = 0; e < 8; e++)
					of[e] = rms_bwd_dx(of[e], xf[e], df[e], wf[e], r, k);
				dx[v] = pack8(of);
			}
		}
	}
	float *pb = part + (int64_t)blockIdx.x * C;
#pragma unroll
	for (int j = 0; j < VPT; j++) {
		const int v = threadIdx.x + j * blockDim.x;
		if (v < nv) {
			((float4 *)pb)[2 * v] = make_float4(pd[j][0], pd[j][1], pd[j][2], pd[j][3]);
			((float4 *)pb)[2 * v + 1] = make_float4(pd[j][4], pd[j][5], pd[j][6], pd[j][7]);
		}
	}
}

__global__ void rmsnorm_dw_reduce(float *dw, const float *part, int G, int C, int set)
{
	int c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= C)
		return;
	float acc = 0.f;
	for (int b = 0; b < G; b++)
		acc = __fadd_rn(acc, part[(int64_t)b * C + c]);
	dw[c] = set ? acc : __fadd_rn(dw[c], acc);
}

void cuda_rmsnorm_bwd(cuda_impl *ci, cudaStream_t s, int bf16, void *dinp, float *dw,
		      const void *dout, const void *inp, const void *w, const float *rstd, int N, int C,
		      int set_dw)
{
	if (N <= 0) {
		if (set_dw)   // an empty sum
			CU_CHECK(cudaMemsetAsync(dw, 0, (size_t)C * 4, s));
		return;
	}
	// G depends on the shape only (never on the device), so the sum order is fixed.
	int64_t G = N < 256 ? N : 256;
	while (G > 1 && (uint64_t)G * C * 4 > ci->scr.bytes)
		G /= 2;
	SW_ASSERT((uint64_t)G * C * 4 <= ci->scr.bytes);
	float *part = (float *)cuda_scratch_take(ci, s, (uint64_t)G * C * 4);
	int th = row_threads(C) > 512 ? 512 : row_threads(C), vth = 0;
	const int vpt = vec_kernels() && bf16 && C % 8 == 0 && C >= 8 && aligned16(dinp) && aligned16(dout) && aligned16(inp) &&
			aligned16(w) && aligned16(part) ? rms_vec(C, &vth) : 0;
	__nv_bfloat16 *dxb = (__nv_bfloat16 *)dinp;
	const __nv_bfloat16 *dyb = (const __nv_bfloat16 *)dout, *xb = (const __nv_bfloat16 *)inp,
			    *wb = (const __nv_bfloat16 *)w;
	if (vpt)
		vec_ran(VEC_RMS_BWD);
	if (vpt == 1)
		rmsnorm_bwd_vec<1><<<(unsigned)G, vth, 0, s>>>(dxb, part, dyb, xb, wb, rstd, N, C);
	else if (vpt == 2)
		rmsnorm_bwd_vec<2><<<(unsigned)G, vth, 0, s>>>(dxb, part, dyb, xb, wb, rstd, N, C);
	else if (vpt == 4)
		rmsnorm_bwd_vec<4><<<(unsigned)G, vth, 0, s>>>(dxb, part, dyb, xb, wb, rstd, N, C);
	else if (bf16)
		rmsnorm_bwd_kernel<<<(unsigned)G, th, 0, s>>>((__nv_bfloat16 *)dinp, part,
			(const __nv_bfloat16 *)dout, (const __nv_bfloat16 *)inp, (const __nv_bfloat16 *)w, rstd, N, C);
	else
		rmsnorm_bwd_kernel<<<(unsigned)G, th, 0, s>>>((float *)dinp, part, (const float *)dout,
			(const float *)inp, (const float *)w, rstd, N, C);
	CU_CHECK_LAUNCH();
	rmsnorm_dw_reduce<<<cuda_blocks(C, 256, 1 << 20), 256, 0, s>>>(dw, part, (int)G, C, set_dw);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- RoPE
// x (N, nh, hd); row n sits at position n % T: angle = fp32(pos * inv_freq[i]); HF
// rotate_half pairs element i with i + hd/2.

// cos and sin of RoPE's angle at position pos and frequency inv: the fp32 angle evaluated in
// double and rounded once (correctly rounded in practice), as the CPU backend does.
__device__ __forceinline__ void rope_cs(int pos, float inv, float *c, float *sn)
{
	const float ang = __fmul_rn((float)pos, inv);
	*c = (float)cos((double)ang);
	*sn = (float)sin((double)ang);
}

// RoPE's rotation of one pair (x1 at i, x2 at i + hd/2) by the angle whose cos and sin are c
// and sn, or its inverse (the transpose, for the backward): every operation explicitly
// rounded, so the scalar and vector kernels give the same bits.
__device__ __forceinline__ void rope_rot(float x1, float x2, float c, float sn, int inverse,
					 float *y1, float *y2)
{
	if (!inverse) {
		*y1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn));
		*y2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn));
	} else {
		*y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn));
		*y2 = __fsub_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn));
	}
}

// One thread per (row, pair i), looping over the heads.
template <typename T, int RH>
__global__ void rope_kernel(T *x, const float *inv_freq, int N, int T_, int nh, int hd, int inverse)
{
	const int half = hd / 2;
	const int64_t total = (int64_t)N * half;
	for (int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; id < total;
	     id += (int64_t)gridDim.x * blockDim.x) {
		const int n = (int)(id / half), i = (int)(id % half);
		// once per (row, pair), shared by all heads
		float c, sn;
		rope_cs(n % T_, inv_freq[i], &c, &sn);
		T *row = x + (int64_t)n * nh * hd;
		// RH heads' loads issued before their stores (RH = 8 in the vector form): a load after
		// a store to the same array waits for it, and one head at a time (RH = 1) leaves each
		// thread a chain of nh dependent round trips (24 us for a 2048 x 24 x 128 q on the
		// H100, a third of the memory's rate). The same arithmetic either way.
		for (int h0 = 0; h0 < nh; h0 += RH) {
			float x1[RH], x2[RH];
#pragma unroll
			for (int j = 0; j < RH; j++)
				if (h0 + j < nh) {
					const T *p = row + (int64_t)(h0 + j) * hd;
					x1[j] = ld_act(p, i);
					x2[j] = ld_act(p, i + half);
				}
#pragma unroll
			for (int j = 0; j < RH; j++) {
				if (h0 + j >= nh)
					break;
				T *p = row + (int64_t)(h0 + j) * hd;
				float y1, y2;
				rope_rot(x1[j], x2[j], c, sn, inverse, &y1, &y2);
				st_act(p, i, y1);
				st_act(p, i + half, y2);
			}
		}
	}
}

// The 16-byte form (the vector form: bf16, hd / 2 a multiple of 8, x 16-byte aligned): one thread
// per (row, 8 consecutive pairs), each head's 8 + 8 elements in two 16-byte loads and two
// stores, RH heads' loads before their stores. rope_kernel with RH = 8 still moves 2 bytes an
// access (a warp's load is 64 bytes of a 128-byte line). Per element the same operations as
// rope_kernel, so the same bits (the op tests compare them).
template <int RH>
__global__ void rope_bf16x8_kernel(__nv_bfloat16 *x, const float *inv_freq, int N, int T_, int nh,
				   int hd, int inverse)
{
	const int half = hd / 2, g8 = half / 8;
	const int64_t total = (int64_t)N * g8;
	for (int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; id < total;
	     id += (int64_t)gridDim.x * blockDim.x) {
		const int n = (int)(id / g8), i0 = (int)(id % g8) * 8;
		float c[8], sn[8];
#pragma unroll
		for (int k = 0; k < 8; k++)
			rope_cs(n % T_, inv_freq[i0 + k], &c[k], &sn[k]);
		__nv_bfloat16 *row = x + (int64_t)n * nh * hd;
		for (int h0 = 0; h0 < nh; h0 += RH) {
			uint4 a[RH], b[RH];
#pragma unroll
			for (int j = 0; j < RH; j++)
				if (h0 + j < nh) {
					const __nv_bfloat16 *p = row + (int64_t)(h0 + j) * hd;
					a[j] = *(const uint4 *)(p + i0);
					b[j] = *(const uint4 *)(p + i0 + half);
				}
#pragma unroll
			for (int j = 0; j < RH; j++) {
				if (h0 + j >= nh)
					break;
				__nv_bfloat16 *p = row + (int64_t)(h0 + j) * hd;
				float x1[8], x2[8], y1[8], y2[8];
				unpack8(a[j], x1);
				unpack8(b[j], x2);
#pragma unroll
				for (int k = 0; k < 8; k++)
					rope_rot(x1[k], x2[k], c[k], sn[k], inverse, &y1[k], &y2[k]);
				*(uint4 *)(p + i0) = pack8(y1);
				*(uint4 *)(p + i0 + half) = pack8(y2);
			}
		}
	}
}

void cuda_rope(cudaStream_t s, int bf16, void *x, const float *inv_freq, int N, int T, int nh,
	       int hd, int inverse)
{
	if (N <= 0)
		return;
	SW_ASSERT(hd % 2 == 0 && T > 0);
	unsigned g = cuda_blocks((int64_t)N * (hd / 2), 256, 1 << 16);
	if (bf16 && vec_kernels() && (hd / 2) % 8 == 0 && aligned16(x)) {
		const int64_t t8 = (int64_t)N * (hd / 16);
		rope_bf16x8_kernel<4><<<cuda_blocks(t8, 256, 1 << 16), 256, 0, s>>>((__nv_bfloat16 *)x,
			inv_freq, N, T, nh, hd, inverse);
		vec_ran(VEC_ROPE);
	} else if (bf16 && vec_kernels()) {
		rope_kernel<__nv_bfloat16, 8><<<g, 256, 0, s>>>((__nv_bfloat16 *)x, inv_freq, N, T, nh, hd, inverse);
		vec_ran(VEC_ROPE_HEADS);
	} else if (bf16)
		rope_kernel<__nv_bfloat16, 1><<<g, 256, 0, s>>>((__nv_bfloat16 *)x, inv_freq, N, T, nh, hd, inverse);
	else
		rope_kernel<float, 1><<<g, 256, 0, s>>>((float *)x, inv_freq, N, T, nh, hd, inverse);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- SwiGLU, add, casts
// Element-wise kernels process 8 elements per thread step when the pointers allow 16-byte
// (bf16) access; the scalar tail handles the rest. Arithmetic per element is the same.
__device__ __forceinline__ float silu_f(float g) { return __fdiv_rn(g, __fadd_rn(1.0f, expf(-g))); }

// SwiGLU's backward for one element (the scalar and vector kernels' one definition).
__device__ __forceinline__ void swiglu_grad(float g, float u, float dy, float *dg, float *du)
{
	const float sg = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
	const float silu = __fmul_rn(g, sg);
	const float dsilu = __fmul_rn(sg, __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sg))));
	*du = __fmul_rn(dy, silu);
	*dg = __fmul_rn(__fmul_rn(dy, u), dsilu);
}

template <typename T>
__global__ void swiglu_fwd_kernel(T *out, const T *gate, const T *up, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		st_act(out, i, __fmul_rn(silu_f(ld_act(gate, i)), ld_act(up, i)));
}

// s = sigmoid(g); d silu/dg = s * (1 + g * (1 - s)).
template <typename T>
__global__ void swiglu_bwd_kernel(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float dg, du;
		swiglu_grad(ld_act(gate, i), ld_act(up, i), ld_act(dout, i), &dg, &du);
		st_act(dup, i, du);
		st_act(dgate, i, dg);
	}
}

template <typename T>
__global__ void add_kernel(T *out, const T *a, const T *b, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		st_act(out, i, __fadd_rn(ld_act(a, i), ld_act(b, i)));
}

template <typename T>
__global__ void scale_kernel(T *x, float alpha, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		st_act(x, i, __fmul_rn(ld_act(x, i), alpha));
}

void cuda_scale(cudaStream_t s, int bf16, void *x, float alpha, int64_t n)
{
	if (n <= 0)
		return;
	if (bf16)
		scale_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((__nv_bfloat16 *)x, alpha, n);
	else
		scale_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((float *)x, alpha, n);
	CU_CHECK_LAUNCH();
}

// bf16 fast path for add: 8 elements (16 bytes) per access.
__global__ void add_bf16x8_kernel(uint4 *out, const uint4 *a, const uint4 *b, int64_t n8)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8;
	     i += (int64_t)gridDim.x * blockDim.x) {
		uint4 va = a[i], vb = b[i], vo;
		const __nv_bfloat162 *pa = (const __nv_bfloat162 *)&va, *pb = (const __nv_bfloat162 *)&vb;
		__nv_bfloat162 *po = (__nv_bfloat162 *)&vo;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			float2 fa = __bfloat1622float2(pa[j]), fb = __bfloat1622float2(pb[j]);
			po[j] = __floats2bfloat162_rn(__fadd_rn(fa.x, fb.x), __fadd_rn(fa.y, fb.y));
		}
		out[i] = vo;
	}
}

__global__ void swiglu_fwd_bf16x8_kernel(uint4 *out, const uint4 *gate, const uint4 *up, int64_t n8)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8;
	     i += (int64_t)gridDim.x * blockDim.x) {
		uint4 vg = gate[i], vu = up[i], vo;
		const __nv_bfloat162 *pg = (const __nv_bfloat162 *)&vg, *pu = (const __nv_bfloat162 *)&vu;
		__nv_bfloat162 *po = (__nv_bfloat162 *)&vo;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			float2 g = __bfloat1622float2(pg[j]), u = __bfloat1622float2(pu[j]);
			po[j] = __floats2bfloat162_rn(__fmul_rn(silu_f(g.x), u.x), __fmul_rn(silu_f(g.y), u.y));
		}
		out[i] = vo;
	}
}

// swiglu_bwd_kernel's, 8 elements (16 bytes) a tensor per access.
__global__ void swiglu_bwd_bf16x8_kernel(uint4 *dgate, uint4 *dup, const uint4 *dout, const uint4 *gate,
					 const uint4 *up, int64_t n8)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float g[8], u[8], dy[8], dg[8], du[8];
		unpack8(gate[i], g);
		unpack8(up[i], u);
		unpack8(dout[i], dy);
#pragma unroll
		for (int e = 0; e < 8; e++)
			swiglu_grad(g[e], u[e], dy[e], &dg[e], &du[e]);
		dup[i] = pack8(du);
		dgate[i] = pack8(dg);
	}
}

void cuda_swiglu_fwd(cudaStream_t s, int bf16, void *out, const void *gate, const void *up, int64_t n)
{
	if (n <= 0)
		return;
	if (bf16 && aligned16(out) && aligned16(gate) && aligned16(up)) {
		int64_t n8 = n / 8;
		if (n8)
			swiglu_fwd_bf16x8_kernel<<<cuda_blocks(n8, 256, 1 << 16), 256, 0, s>>>(
				(uint4 *)out, (const uint4 *)gate, (const uint4 *)up, n8);
		int64_t done = n8 * 8;
		if (done < n)
			swiglu_fwd_kernel<<<1, 32, 0, s>>>((__nv_bfloat16 *)out + done,
				(const __nv_bfloat16 *)gate + done, (const __nv_bfloat16 *)up + done, n - done);
	} else if (bf16) {
		swiglu_fwd_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((__nv_bfloat16 *)out,
			(const __nv_bfloat16 *)gate, (const __nv_bfloat16 *)up, n);
	} else {
		swiglu_fwd_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((float *)out,
			(const float *)gate, (const float *)up, n);
	}
	CU_CHECK_LAUNCH();
}

void cuda_swiglu_bwd(cudaStream_t s, int bf16, void *dgate, void *dup, const void *dout,
		     const void *gate, const void *up, int64_t n)
{
	if (n <= 0)
		return;
	unsigned g = cuda_blocks(n, 256, 1 << 16);
	if (vec_kernels() && bf16 && aligned16(dgate) && aligned16(dup) && aligned16(dout) &&
	    aligned16(gate) && aligned16(up)) {
		const int64_t n8 = n / 8, done = n8 * 8;
		if (n8) {
			vec_ran(VEC_SWIGLU_BWD);
			swiglu_bwd_bf16x8_kernel<<<cuda_blocks(n8, 256, 1 << 16), 256, 0, s>>>((uint4 *)dgate,
				(uint4 *)dup, (const uint4 *)dout, (const uint4 *)gate, (const uint4 *)up, n8);
		}
		if (done < n)
			swiglu_bwd_kernel<<<1, 32, 0, s>>>((__nv_bfloat16 *)dgate + done, (__nv_bfloat16 *)dup + done,
				(const __nv_bfloat16 *)dout + done, (const __nv_bfloat16 *)gate + done,
				(const __nv_bfloat16 *)up + done, n - done);
	} else if (bf16)
		swiglu_bwd_kernel<<<g, 256, 0, s>>>((__nv_bfloat16 *)dgate, (__nv_bfloat16 *)dup,
			(const __nv_bfloat16 *)dout, (const __nv_bfloat16 *)gate, (const __nv_bfloat16 *)up, n);
	else
		swiglu_bwd_kernel<<<g, 256, 0, s>>>((float *)dgate, (float *)dup, (const float *)dout,
			(const float *)gate, (const float *)up, n);
	CU_CHECK_LAUNCH();
}

void cuda_add(cudaStream_t s, int bf16, void *out, const void *a, const void *b, int64_t n)
{
	if (n <= 0)
		return;
	if (bf16 && aligned16(out) && aligned16(a) && aligned16(b)) {
		int64_t n8 = n / 8;
		if (n8)
			add_bf16x8_kernel<<<cuda_blocks(n8, 256, 1 << 16), 256, 0, s>>>(
				(uint4 *)out, (const uint4 *)a, (const uint4 *)b, n8);
		int64_t done = n8 * 8;
		if (done < n)
			add_kernel<<<1, 32, 0, s>>>((__nv_bfloat16 *)out + done,
				(const __nv_bfloat16 *)a + done, (const __nv_bfloat16 *)b + done, n - done);
	} else if (bf16) {
		add_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((__nv_bfloat16 *)out,
			(const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, n);
	} else {
		add_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((float *)out, (const float *)a,
			(const float *)b, n);
	}
	CU_CHECK_LAUNCH();
}

template <typename T>
__global__ void cast_from_f32_kernel(T *dst, const float *src, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		st_act(dst, i, src[i]);
}

template <typename T>
__global__ void cast_to_f32_kernel(float *dst, const T *src, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x)
		dst[i] = ld_act(src, i);
}

void cuda_cast_f32_to_act(cudaStream_t s, int bf16, void *dst, const float *src, int64_t n)
{
	if (n <= 0)
		return;
	if (!bf16) {
		if (dst != (const void *)src)
			CU_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, s));
		return;
	}
	cast_from_f32_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>((__nv_bfloat16 *)dst, src, n);
	CU_CHECK_LAUNCH();
}

void cuda_cast_act_to_f32(cudaStream_t s, int bf16, float *dst, const void *src, int64_t n)
{
	if (n <= 0)
		return;
	if (!bf16) {
		if ((const void *)dst != src)
			CU_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, s));
		return;
	}
	cast_to_f32_kernel<<<cuda_blocks(n, 256, 1 << 16), 256, 0, s>>>(dst, (const __nv_bfloat16 *)src, n);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- sumsq
// Fixed split: SUMSQ_BLOCKS blocks, block b sums the contiguous range [b*chunk, (b+1)*chunk)
// in double with a fixed thread assignment and a fixed tree, then one block adds the partials
// in a fixed tree. Same bits every run, on every device.
#define SUMSQ_BLOCKS 1024
#define SUMSQ_THREADS 256

__global__ void sumsq_partial_kernel(double *part, const float *x, int64_t n, int64_t chunk)
{
	__shared__ double sh[32];
	const int64_t lo = blockIdx.x * chunk;
	int64_t hi = lo + chunk;
	if (hi > n)
		hi = n;
	double acc = 0.0;
	for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
		double v = (double)x[i];
		acc += v * v;
	}
	acc = block_sum(acc, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = acc;
}

__global__ void sumsq_final_kernel(double *out, const double *part, int nparts)
{
	__shared__ double sh[32];
	double acc = 0.0;
	for (int i = threadIdx.x; i < nparts; i += blockDim.x)
		acc += part[i];
	acc = block_sum(acc, sh);
	if (threadIdx.x == 0)
		out[0] = acc;
}

void cuda_sumsq(cuda_impl *ci, cudaStream_t s, double *out, const float *x, int64_t n)
{
	double *part = (double *)cuda_red_take(ci, s, SUMSQ_BLOCKS * sizeof(double));
	int64_t chunk = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
	if (chunk < 1)
		chunk = 1;
	sumsq_partial_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, s>>>(part, x, n, chunk);
	CU_CHECK_LAUNCH();
	sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, s>>>(out, part, SUMSQ_BLOCKS);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- bias gradient
template <typename T>
__global__ void colsum_add_kernel(float *dbias, const T *dout, int N, int OC, int set)
{
	int c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= OC)
		return;
	float acc = 0.f;
	for (int n = 0; n < N; n++)
		acc = __fadd_rn(acc, ld_act(dout, (int64_t)n * OC + c));
	dbias[c] = set ? acc : __fadd_rn(dbias[c], acc);
}

// dbias += (or = with set) the column sums of dout.
void cuda_colsum_add(cudaStream_t s, int bf16, float *dbias, const void *dout, int N, int OC,
		     int set)
{
	unsigned g = cuda_blocks(OC, 256, 1 << 20);
	if (bf16)
		colsum_add_kernel<<<g, 256, 0, s>>>(dbias, (const __nv_bfloat16 *)dout, N, OC, set);
	else
		colsum_add_kernel<<<g, 256, 0, s>>>(dbias, (const float *)dout, N, OC, set);
	CU_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- cross-entropy pieces
// stats (rows, 4): running max m, running sum s of exp(l - m), the target's logit, and (after
// finish) the log-sum-exp. One block per row reads the chunk's logits (rows, vc) fp32.
__global__ void xent_chunk_stats_kernel(float *stats, const float *logits, const int32_t *targets,
					int vc, int v0, int first)
{
	__shared__ float sh[32];
	const int r = blockIdx.x;
	const float *l = logits + (int64_t)r * vc;
	float mx = -INFINITY;
	for (int j = threadIdx.x; j < vc; j += blockDim.x)
		mx = fmaxf(mx, l[j]);
	mx = block_max(mx, sh);
	float sum = 0.f;
	for (int j = threadIdx.x; j < vc; j += blockDim.x)
		sum += expf(l[j] - mx);
	sum = block_sum(sum, sh);
	if (threadIdx.x == 0) {
		float *st = stats + (int64_t)r * 4;
		const int t = targets[r];
		if (first) {
			st[0] = mx;
			st[1] = sum;
			st[2] = 0.f;
		} else {
			const float m = fmaxf(st[0], mx);
			st[1] = st[1] * expf(st[0] - m) + sum * expf(mx - m);
			st[0] = m;
		}
		if (t >= v0 && t < v0 + vc)
			st[2] = l[t - v0];
	}
}

void cuda_xent_chunk_stats(cudaStream_t s, float *stats, const float *logits, const int32_t *targets,
			   int rows, int vc, int v0, int first)
{
	xent_chunk_stats_kernel<<<rows, 256, 0, s>>>(stats, logits, targets, vc, v0, first);
	CU_CHECK_LAUNCH();
}

__global__ void xent_finish_kernel(float *losses, float *stats, const int32_t *targets, int rows)
{
	int r = blockIdx.x * blockDim.x + threadIdx.x;
	if (r >= rows)
		return;
	float *st = stats + (int64_t)r * 4;
	const float lse = st[0] + logf(st[1]);
	st[3] = lse;
	losses[r] = targets[r] < 0 ? 0.f : lse - st[2];
}

void cuda_xent_finish(cudaStream_t s, float *losses, float *stats, const int32_t *targets, int rows)
{
	xent_finish_kernel<<<cuda_blocks(rows, 256, 1 << 20), 256, 0, s>>>(losses, stats, targets, rows);
	CU_CHECK_LAUNCH();
}

// dlogits (rows, vc) act = scale * (softmax - onehot); 0 for ignored rows.
template <typename T>
__global__ void xent_dlogits_kernel(T *dl, const float *logits, const float *stats,
				    const int32_t *targets, int vc, int v0, float scale)
{
	const int r = blockIdx.x;
	const int t = targets[r];
	const float lse = stats[(int64_t)r * 4 + 3];
	const float *l = logits + (int64_t)r * vc;
	T *d = dl + (int64_t)r * vc;
	for (int j = threadIdx.x; j < vc; j += blockDim.x) {
		float g = 0.f;
		if (t >= 0) {
			float p = expf(l[j] - lse);
			g = __fmul_rn(scale, __fsub_rn(p, (v0 + j == t) ? 1.0f : 0.0f));
		}
		st_act(d, j, g);
	}
}

void cuda_xent_dlogits(cudaStream_t s, int bf16, void *dlogits, const float *logits,
		       const float *stats, const int32_t *targets, int rows, int vc, int v0, float scale)
{
	if (bf16)
		xent_dlogits_kernel<<<rows, 256, 0, s>>>((__nv_bfloat16 *)dlogits, logits, stats, targets,
							 vc, v0, scale);
	else
		xent_dlogits_kernel<<<rows, 256, 0, s>>>((float *)dlogits, logits, stats, targets, vc, v0,
							 scale);
	CU_CHECK_LAUNCH();
}
