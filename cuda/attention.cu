// Causal attention with grouped KV heads, flash-attention style: tiled, online softmax, the row
// log-sum-exp saved for the backward, never a T x T matrix in memory.
//
// Tensor-core paths (bf16, head dim 64, 80, 96 or 128, sm_80+): bf16 mma.sync.m16n8k16 with fp32
// accumulation, tiles staged in shared memory with cp.async and read with ldmatrix. Two layouts:
// FlashAttention-2's (attn_*_fa: 32 query rows per warp, or P^T/dS^T through shared memory in
// dK/dV) where a block gets enough shared memory (H100, A100), and 16 rows per warp (attn_*_mma)
// for the rest (consumer GPUs' 99 KB per block, the dK/dV of head dims 64-96, small grids).
// Hopper (sm_90a build on an sm_90 device, head dims 64 and 128): the wgmma kernels of
// cuda/attn_sm90.cuh, included below, forward (warp-specialised: TMA producer, mbarrier ring)
// and backward (always with the fused dQ).
// Generic path (fp32 parity mode, other head dims): one warp per row, fp32 throughout.
//
// Backward is deterministic (the same bits run to run): D = rowsum(dO * O) first; then dK/dV with
// one block per KV tile that loops over the query heads of its group and the query tiles in a
// fixed order. dQ either in a separate pass, one block per query tile looping over the KV tiles,
// which recomputes S and P (7 tile products instead of FA2's 5), or (the fused path, head dim
// 128 on large grids by default) inside the dK/dV kernel, summed with integer atomics on a
// fixed-point accumulator: integer addition is associative, so the order blocks add in does not
// change the result.
#include "cuda/common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

typedef __nv_bfloat16 bf16;

// ---------------------------------------------------------------- generic (fp32) path
#define ROW_DMAX 8  // per-lane elements: head dim <= 256

template <typename T>
__device__ __forceinline__ float warp_dot(const float *a, const T *row, int hd, int lane)
{
	float acc = 0.f;
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		if (d < hd)
			acc += a[u] * ld_act(row, d);
	}
	for (int o = 16; o > 0; o >>= 1)
		acc += __shfl_xor_sync(0xffffffffu, acc, o);
	return acc;
}

// One warp per query row (b, i, h).
template <typename T>
__global__ void attn_fwd_rows(T *out, float *lse, const T *q, const T *k, const T *v, int B, int T_,
			      int nh, int nkv, int hd, float scale)
{
	const int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
	const int lane = threadIdx.x & 31;
	if (w >= (int64_t)B * T_ * nh)
		return;
	const int h = (int)(w % nh), i = (int)((w / nh) % T_), b = (int)(w / ((int64_t)nh * T_));
	const int kvh = h / (nh / nkv);
	const T *qr = q + w * hd;
	float qv[ROW_DMAX], o[ROW_DMAX];
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		qv[u] = d < hd ? ld_act(qr, d) : 0.f;
		o[u] = 0.f;
	}
	float m = -INFINITY, l = 0.f;
	for (int j = 0; j <= i; j++) {
		const int64_t kr = (((int64_t)b * T_ + j) * nkv + kvh) * hd;
		const float s = warp_dot(qv, k + kr, hd, lane) * scale;
		const float mn = fmaxf(m, s);
		const float corr = expf(m - mn), p = expf(s - mn);
		l = l * corr + p;
#pragma unroll
		for (int u = 0; u < ROW_DMAX; u++) {
			int d = lane + 32 * u;
			o[u] = o[u] * corr + (d < hd ? p * ld_act(v + kr, d) : 0.f);
		}
		m = mn;
	}
	T *orow = out + w * hd;
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		if (d < hd)
			st_act(orow, d, o[u] / l);
	}
	if (lane == 0)
		lse[((int64_t)b * nh + h) * T_ + i] = m + logf(l);
}

// The fused dQ's fixed-point multiplier of a query row (attn_bwd_dot below): D_i = acc, |dO_i|^2 = n2.
__device__ __forceinline__ float dq_multiplier(float acc, float n2, const unsigned *mx, int bits)
{
	const float bound = 4.f * (sqrtf(n2) * __uint_as_float(mx[1]) + fabsf(acc)) * __uint_as_float(mx[0]);
	if (!isfinite(bound))
		return __int_as_float(0x7fc00000);  // NaN: the row's dQ comes out NaN
	int e;
	frexpf(bound, &e);  // bound < 2^e (e = 0 for a zero row: any scale)
	return ldexpf(1.f, max(-126, min(126, bits - e)));
}

// D (B,nh,T) = rowsum(dO * O), one warp per row. With mq (the fused dQ path): also the row's
// fixed-point multiplier, 2^k with k = bits - ceil(log2(bound)), where bound = 4 (|dO_i| maxV +
// |D_i|) maxK >= |dQ_i| / scale elementwise (|dP_ij - D_i| <= |dO_i| |V_j| + |D_i|, sum_j P_ij = 1,
// |K_jd| <= maxK; 4 covers the bf16 rounding of dS): the row's dQ times 2^k is below 2^bits
// (bits = 30 for int32, 62 for int64 accumulators). mx = { max |K_jd|, max |V_j| } as float bits.
template <typename T>
__global__ void attn_bwd_dot(float *Dd, float *mq, const unsigned *mx, int bits, const T *dout,
			     const T *out, int B, int T_, int nh, int hd)
{
	const int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
	const int lane = threadIdx.x & 31;
	if (w >= (int64_t)B * T_ * nh)
		return;
	const int h = (int)(w % nh), i = (int)((w / nh) % T_), b = (int)(w / ((int64_t)nh * T_));
	float acc = 0.f, n2 = 0.f;
	for (int d = lane; d < hd; d += 32) {
		const float g = ld_act(dout + w * hd, d);
		acc += g * ld_act(out + w * hd, d);
		n2 += g * g;
	}
	for (int o = 16; o > 0; o >>= 1) {
		acc += __shfl_xor_sync(0xffffffffu, acc, o);
		n2 += __shfl_xor_sync(0xffffffffu, n2, o);
	}
	if (lane == 0) {
		const int64_t r = ((int64_t)b * nh + h) * T_ + i;
		Dd[r] = acc;
		if (mq)
			mq[r] = dq_multiplier(acc, n2, mx, bits);
	}
}

// The vector form of attn_bwd_dot (bf16, hd = 8 L, 16-byte aligned rows; the default where it
// applies, SW_CUDA_ATTN_AUX=scalar for attn_bwd_dot):
// L lanes a row, each 8 elements in one 16-byte load of dO and of O, so a warp covers 32 / L rows
// (attn_bwd_dot: one row a warp, 2 bytes a load, one block of 4 rows each 128 threads). Grid-
// stride over groups of 32 / L rows. The row's sums in another fixed order (each lane its 8
// elements, then a tree over the L lanes): other bits than attn_bwd_dot, the same run to run.
// With v3 (the warp-specialised backward, attn_bwd_ws, loads them with TMA): also the row's lse,
// D and multiplier at v3[((b nh + h) 3 + 0, 1, 2) Tp + i] (Tp >= T, a multiple of 4).
template <int L>
__global__ void attn_bwd_dot_v8(float *Dd, float *mq, const unsigned *mx, int bits, const bf16 *dout,
				const bf16 *out, int B, int T_, int nh, const float *lse, float *v3, int Tp)
{
	constexpr int RW = 32 / L, HD = 8 * L;
	const int lane = threadIdx.x & 31, sub = lane % L;
	const int64_t rows = (int64_t)B * T_ * nh, warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
	const unsigned m2[2] = { mx[0], mx[1] };  // read once (attn_kv_max_v8 wrote them before)
	for (int64_t r0 = ((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5) * RW; r0 < rows;
	     r0 += warps * RW) {
		const int64_t w = r0 + lane / L;  // this lane's row (w < rows: the row exists)
		float acc = 0.f, n2 = 0.f;
		if (w < rows) {
			float g[8], o[8];
			unpack8(*(const uint4 *)(dout + w * HD + sub * 8), g);
			unpack8(*(const uint4 *)(out + w * HD + sub * 8), o);
#pragma unroll
			for (int e = 0; e < 8; e++) {
				acc += g[e] * o[e];
				n2 += g[e] * g[e];
			}
		}
#pragma unroll
		for (int x = L / 2; x > 0; x >>= 1) {  // over the row's L lanes (every lane takes part)
			acc += __shfl_xor_sync(0xffffffffu, acc, x);
			n2 += __shfl_xor_sync(0xffffffffu, n2, x);
		}
		if (sub == 0 && w < rows) {
			const int h = (int)(w % nh), i = (int)((w / nh) % T_), b = (int)(w / ((int64_t)nh * T_));
			const int64_t r = ((int64_t)b * nh + h) * T_ + i;
			const float m = dq_multiplier(acc, n2, m2, bits);
			Dd[r] = acc;
			mq[r] = m;
			if (v3) {
				float *c = v3 + ((int64_t)b * nh + h) * 3 * Tp + i;
				c[0] = lse[r], c[Tp] = acc, c[2 * Tp] = m;
			}
		}
	}
}

// The end of attn_kv_max and its vector form: each warp's maxima (the same on every lane) over
// the block, then one atomicMax of each into mx.
__device__ __forceinline__ void kv_max_publish(unsigned *mx, float mk, float mv)
{
	__shared__ float sk[32], sv[32];
	const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
	if (lane == 0)
		sk[wib] = mk, sv[wib] = mv;
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int i = 1; i < (int)(blockDim.x >> 5); i++)
			mk = fmaxf(mk, sk[i]), mv = fmaxf(mv, sv[i]);
		atomicMax(mx, __float_as_uint(mk));
		atomicMax(mx + 1, __float_as_uint(mv));
	}
}

// mx[0] = max |K| over every element, mx[1] = max over rows of |V_row| (float bits: non-negative
// floats order as their bits, so atomicMax is exact and the result independent of order).
template <typename T>
__global__ void attn_kv_max(unsigned *mx, const T *k, const T *v, int64_t rows, int hd)
{
	const int lane = threadIdx.x & 31;
	float mk = 0.f, mv = 0.f;
	for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; r < rows;
	     r += ((int64_t)gridDim.x * blockDim.x) >> 5) {
		float n2 = 0.f;
		for (int d = lane; d < hd; d += 32) {
			const float x = ld_act(v + r * hd, d);
			n2 += x * x;
			mk = fmaxf(mk, fabsf(ld_act(k + r * hd, d)));
		}
		for (int o = 16; o > 0; o >>= 1)
			n2 += __shfl_xor_sync(0xffffffffu, n2, o);
		mv = fmaxf(mv, sqrtf(n2));
	}
	for (int o = 16; o > 0; o >>= 1)
		mk = fmaxf(mk, __shfl_xor_sync(0xffffffffu, mk, o));
	kv_max_publish(mx, mk, mv);
}

// The vector form of attn_kv_max (bf16, hd = 8 L, 16-byte aligned rows; the default where it
// applies, SW_CUDA_ATTN_AUX=scalar for attn_kv_max):
// L lanes a row, 8 elements each in one 16-byte load of K and of V, grid-stride over groups of
// 32 / L rows (attn_kv_max: one row a warp, 2 bytes a load, 2 blocks an SM, so each warp walks
// hundreds of rows one dependent round trip after another). max |K| is the same; each row's
// |V| is summed in another fixed order (each lane its 8 squares, then a tree over the L lanes).
template <int L>
__global__ void attn_kv_max_v8(unsigned *mx, const bf16 *k, const bf16 *v, int64_t rows)
{
	constexpr int RW = 32 / L, HD = 8 * L;
	const int lane = threadIdx.x & 31, sub = lane % L;
	const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
	float mk = 0.f, mv = 0.f;
	for (int64_t r0 = ((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5) * RW; r0 < rows;
	     r0 += warps * RW) {
		const int64_t r = r0 + lane / L;
		float n2 = 0.f;
		if (r < rows) {
			float x[8], y[8];
			unpack8(*(const uint4 *)(k + r * HD + sub * 8), x);
			unpack8(*(const uint4 *)(v + r * HD + sub * 8), y);
#pragma unroll
			for (int e = 0; e < 8; e++) {
				mk = fmaxf(mk, fabsf(x[e]));
				n2 += y[e] * y[e];
			}
		}
#pragma unroll
		for (int o = L / 2; o > 0; o >>= 1)  // over the row's L lanes (every lane takes part)
			n2 += __shfl_xor_sync(0xffffffffu, n2, o);
		mv = fmaxf(mv, sqrtf(n2));
	}
	for (int o = 16; o > 0; o >>= 1) {
		mk = fmaxf(mk, __shfl_xor_sync(0xffffffffu, mk, o));
		mv = fmaxf(mv, __shfl_xor_sync(0xffffffffu, mv, o));
	}
	kv_max_publish(mx, mk, mv);
}

// dQ, one warp per query row: dq = scale * sum_j p_ij (dp_ij - D_i) k_j.
template <typename T>
__global__ void attn_bwd_dq_rows(T *dq, const T *q, const T *k, const T *v, const T *dout,
				 const float *lse, const float *Dd, int B, int T_, int nh, int nkv, int hd,
				 float scale)
{
	const int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
	const int lane = threadIdx.x & 31;
	if (w >= (int64_t)B * T_ * nh)
		return;
	const int h = (int)(w % nh), i = (int)((w / nh) % T_), b = (int)(w / ((int64_t)nh * T_));
	const int kvh = h / (nh / nkv);
	float qv[ROW_DMAX], dov[ROW_DMAX], acc[ROW_DMAX];
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		qv[u] = d < hd ? ld_act(q + w * hd, d) : 0.f;
		dov[u] = d < hd ? ld_act(dout + w * hd, d) : 0.f;
		acc[u] = 0.f;
	}
	const float L = lse[((int64_t)b * nh + h) * T_ + i], Di = Dd[((int64_t)b * nh + h) * T_ + i];
	for (int j = 0; j <= i; j++) {
		const int64_t kr = (((int64_t)b * T_ + j) * nkv + kvh) * hd;
		const float p = expf(warp_dot(qv, k + kr, hd, lane) * scale - L);
		const float ds = p * (warp_dot(dov, v + kr, hd, lane) - Di);
#pragma unroll
		for (int u = 0; u < ROW_DMAX; u++) {
			int d = lane + 32 * u;
			if (d < hd)
				acc[u] += ds * ld_act(k + kr, d);
		}
	}
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		if (d < hd)
			st_act(dq + w * hd, d, acc[u] * scale);
	}
}

// dK, dV, one warp per key row (b, j, kvh), over the group's query heads and rows i >= j.
template <typename T>
__global__ void attn_bwd_dkdv_rows(T *dk, T *dv, const T *q, const T *k, const T *v, const T *dout,
				   const float *lse, const float *Dd, int B, int T_, int nh, int nkv,
				   int hd, float scale)
{
	const int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
	const int lane = threadIdx.x & 31;
	if (w >= (int64_t)B * T_ * nkv)
		return;
	const int kvh = (int)(w % nkv), j = (int)((w / nkv) % T_), b = (int)(w / ((int64_t)nkv * T_));
	const int G = nh / nkv;
	float kv[ROW_DMAX], vv[ROW_DMAX], dka[ROW_DMAX], dva[ROW_DMAX];
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		kv[u] = d < hd ? ld_act(k + w * hd, d) : 0.f;
		vv[u] = d < hd ? ld_act(v + w * hd, d) : 0.f;
		dka[u] = dva[u] = 0.f;
	}
	for (int hh = 0; hh < G; hh++) {
		const int h = kvh * G + hh;
		for (int i = j; i < T_; i++) {
			const int64_t qr = (((int64_t)b * T_ + i) * nh + h) * hd;
			const int64_t li = ((int64_t)b * nh + h) * T_ + i;
			const float p = expf(warp_dot(kv, q + qr, hd, lane) * scale - lse[li]);
			const float ds = p * (warp_dot(vv, dout + qr, hd, lane) - Dd[li]);
#pragma unroll
			for (int u = 0; u < ROW_DMAX; u++) {
				int d = lane + 32 * u;
				if (d < hd) {
					dva[u] += p * ld_act(dout + qr, d);
					dka[u] += ds * ld_act(q + qr, d);
				}
			}
		}
	}
#pragma unroll
	for (int u = 0; u < ROW_DMAX; u++) {
		int d = lane + 32 * u;
		if (d < hd) {
			st_act(dk + w * hd, d, dka[u] * scale);
			st_act(dv + w * hd, d, dva[u]);
		}
	}
}

// The fused path's fixed-point dQ accumulator: int32 (AB = 4, the default) or int64 (AB = 8,
// SW_CUDA_ATTN_DQ_BITS=64). Layout: 16 x 16 blocks of dQ in the mma.sync accumulator order (256
// elements: e * 32 + lane with lane = 4 * (row % 8) + (col % 8) / 2, e = 4 * (col / 8 % 2) +
// 2 * (row / 8 % 2) + col % 2), so each warp-wide atomic covers 32 consecutive elements; blocks
// ordered [unit][row / 16][query head in group][col / 16], rows rounded up to 64 per unit.
template <int AB> struct fx_acc;
template <> struct fx_acc<0> { typedef int T; static constexpr int BITS = 0; };  // no fused dQ
template <> struct fx_acc<4> { typedef int T; static constexpr int BITS = 30; };
template <> struct fx_acc<8> { typedef long long T; static constexpr int BITS = 62; };

__host__ __device__ __forceinline__ int fx_rows(int T_) { return (T_ + 63) / 64 * 64; }

// dQ (bf16) = acc / 2^k * scale for the units [u0, u0 + nu); one thread per (16 x 16 block, lane).
template <int AB>
__global__ void attn_dq_convert(bf16 *dq, const void *accv, const float *mq, int u0, int nu,
				int T_, int nh, int nkv, int hd, float scale)
{
	typedef typename fx_acc<AB>::T AT;
	const int G = nh / nkv, R16 = fx_rows(T_) / 16, C16 = hd / 16;
	const int64_t n = (int64_t)nu * R16 * G * C16 * 32;
	for (int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; x < n;
	     x += (int64_t)gridDim.x * blockDim.x) {
		const int lane = (int)(x & 31), g = lane >> 2, t4 = lane & 3;
		const int64_t blk = x >> 5;
		int64_t r = blk / C16;
		const int cb = (int)(blk % C16), hh = (int)(r % G);
		r /= G;
		const int rb = (int)(r % R16), u = u0 + (int)(r / R16);
		const int b = u / nkv, h = (u % nkv) * G + hh;
		const AT *p = (const AT *)accv + blk * 256 + lane;
#pragma unroll
		for (int hr = 0; hr < 2; hr++) {
			const int row = rb * 16 + g + hr * 8;
			if (row >= T_)
				continue;
			const float m = mq[((int64_t)b * nh + h) * T_ + row];
			const double f = (double)(1.f / m) * scale;  // 1/m exact: m is a power of two
			bf16 *o = dq + (((int64_t)b * T_ + row) * nh + h) * hd + cb * 16 + t4 * 2;
#pragma unroll
			for (int nl = 0; nl < 2; nl++) {
				const int e = nl * 4 + hr * 2;
				*(__nv_bfloat162 *)(o + nl * 8) = __floats2bfloat162_rn(
					(float)((double)p[e * 32] * f), (float)((double)p[(e + 1) * 32] * f));
			}
		}
	}
}

// ---------------------------------------------------------------- tensor-core path (bf16)
__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

// 16-byte async copy global -> shared; zero-fills when !valid (rows past T).
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid)
{
	const int n = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
		     "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_u32(p)));
}

// The same on a shared-memory byte address: base + compile-time offset folds into the
// instruction's immediate, so unrolled loops need no register per fragment address.
__device__ __forceinline__ void ldsm_x4a(uint32_t r[4], uint32_t a)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(a));
}
__device__ __forceinline__ void ldsm_x4a_t(uint32_t r[4], uint32_t a)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(a));
}
// Per-lane element offsets of the fragments above (FRAG_A and FRAG_BT share one).
__device__ __forceinline__ int lane_off_a(int lane, int LD) { return ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8; }
__device__ __forceinline__ int lane_off_bn(int lane, int LD) { return ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8; }

// c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col)
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
		     "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *(uint32_t *)&v;
}

// Fragment addresses inside a [rows][LD] bf16 tile (lane = thread's lane):
//  A operand, 16 rows from r0, 16 columns from c0:
#define FRAG_A(base, LD, r0, c0) ((base) + ((r0) + ((lane >> 3) & 1) * 8 + (lane & 7)) * (LD) + (c0) + (lane >> 4) * 8)
//  B operand from a tile stored [n][k] (two n-tiles of 8 from n0, 16 k from c0), non-transposed:
#define FRAG_BN(base, LD, n0, c0) ((base) + ((n0) + (lane >> 4) * 8 + (lane & 7)) * (LD) + (c0) + ((lane >> 3) & 1) * 8)
//  B operand from a tile stored [k][n] (16 k from k0, two n-tiles of 8 from n0), .trans:
#define FRAG_BT(base, LD, k0, n0) ((base) + ((k0) + ((lane >> 3) & 1) * 8 + (lane & 7)) * (LD) + (n0) + (lane >> 4) * 8)

#define TILE 64
// Copies rows [row0, row0+ROWS) of a (T, stride) bf16 matrix into a [ROWS][LD] tile; rows >= T
// are zero-filled.
template <int HD, int ROWS>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t stride, int row0, int T_)
{
	constexpr int LD = HD + 8, CPR = HD / 8;
	for (int c = threadIdx.x; c < ROWS * CPR; c += blockDim.x) {
		const int r = c / CPR, cc = c % CPR, row = row0 + r;
		const bool ok = row < T_;
		cp_async16(dst + r * LD + cc * 8, src + (int64_t)(ok ? row : 0) * stride + cc * 8, ok);
	}
}

// 16 x 64 = A (16 x HD: fragments in registers) @ Bt^T, Bt stored [64][HD] in shared memory.
template <int HD>
__device__ __forceinline__ void tile_qk_reg(float s[8][4], const uint32_t a[HD / 16][4], const bf16 *Bs, int lane)
{
	constexpr int LD = HD + 8;
	const uint32_t bb = smem_u32(Bs) + lane_off_bn(lane, LD) * 2;
#pragma unroll
	for (int nt = 0; nt < 8; nt++)
		s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
		for (int np = 0; np < 4; np++) {
			uint32_t r[4];
			ldsm_x4a(r, bb + (np * 16 * LD + kk * 16) * 2);
			mma16816(s[2 * np], a[kk], r[0], r[1]);
			mma16816(s[2 * np + 1], a[kk], r[2], r[3]);
		}
	}
}

// 16 x 64 = A (16 x HD, smem rows from ar0) @ Bt^T, Bt stored [64][HD].
template <int HD>
__device__ __forceinline__ void tile_qk(float s[8][4], const bf16 *As, int ar0, const bf16 *Bs, int lane)
{
	constexpr int LD = HD + 8;
	const uint32_t ab = smem_u32(As) + (lane_off_a(lane, LD) + ar0 * LD) * 2;
	const uint32_t bb = smem_u32(Bs) + lane_off_bn(lane, LD) * 2;
#pragma unroll
	for (int nt = 0; nt < 8; nt++)
		s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
		uint32_t a[4];
		ldsm_x4a(a, ab + kk * 32);
#pragma unroll
		for (int np = 0; np < 4; np++) {
			uint32_t r[4];
			ldsm_x4a(r, bb + (np * 16 * LD + kk * 16) * 2);
			mma16816(s[2 * np], a, r[0], r[1]);
			mma16816(s[2 * np + 1], a, r[2], r[3]);
		}
	}
}

// acc (16 x HD) += P (16 x 64, from accumulator layout) @ Vs (stored [64][HD]).
template <int HD>
__device__ __forceinline__ void tile_pv(float acc[HD / 8][4], const float p[8][4], const bf16 *Vs, int lane)
{
	constexpr int LD = HD + 8;
	const uint32_t vb = smem_u32(Vs) + lane_off_a(lane, LD) * 2;
#pragma unroll
	for (int kk = 0; kk < 4; kk++) {
		uint32_t a[4] = { pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
				  pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
				  pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]) };
#pragma unroll
		for (int dp = 0; dp < HD / 16; dp++) {
			uint32_t r[4];
			ldsm_x4a_t(r, vb + (kk * 16 * LD + dp * 16) * 2);
			mma16816(acc[2 * dp], a, r[0], r[1]);
			mma16816(acc[2 * dp + 1], a, r[2], r[3]);
		}
	}
}

// Each block owns BM = 16 * NW rows (queries in the forward and dQ, keys in dK/dV), one warp per
// 16 of them, and streams the other side in tiles of 64. Masking uses absolute positions; a
// warp skips the tiles that are entirely masked for its 16 rows.
template <int HD, int NW>
static constexpr int attn_smem_fwd() { return (16 * NW + 4 * TILE) * (HD + 8) * 2; }
template <int HD, int NW, int ST>
static constexpr int attn_smem_bwd() { return (2 * 16 * NW + 2 * ST * TILE) * (HD + 8) * 2 + 2 * ST * TILE * 4; }

// Forward: K/V tiles double-buffered with cp.async; Q fragments held in registers.
template <int HD, int NW>
__global__ void __launch_bounds__(NW * 32) attn_fwd_mma(bf16 *out, float *lse, const bf16 *q,
		const bf16 *k, const bf16 *v, int T_, int nh, int nkv, float scale_log2)
{
	constexpr int LD = HD + 8, BM = 16 * NW;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Qs = (bf16 *)smem_raw, *Ks = Qs + BM * LD, *Vs = Ks + 2 * TILE * LD;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const bf16 *qb = q + (int64_t)b * T_ * qs + h * HD;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	const int q0 = qt * BM, wq0 = q0 + warp * 16;
	int nkt = (q0 + BM - 1) / TILE + 1;
	if (nkt > (T_ + TILE - 1) / TILE)
		nkt = (T_ + TILE - 1) / TILE;

	load_tile<HD, BM>(Qs, qb, qs, q0, T_);
	load_tile<HD, TILE>(Ks, kb, ks, 0, T_);
	load_tile<HD, TILE>(Vs, vb, ks, 0, T_);
	cp_async_commit();

	float o[HD / 8][4];
#pragma unroll
	for (int d = 0; d < HD / 8; d++)
		o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
	float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.f, 0.f };
	uint32_t qf[HD / 16][4];
	for (int j = 0; j < nkt; j++) {
		const int buf = j & 1;
		if (j + 1 < nkt) {
			load_tile<HD, TILE>(Ks + (buf ^ 1) * TILE * LD, kb, ks, (j + 1) * TILE, T_);
			load_tile<HD, TILE>(Vs + (buf ^ 1) * TILE * LD, vb, ks, (j + 1) * TILE, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		if (j == 0) {
#pragma unroll
			for (int kk = 0; kk < HD / 16; kk++)
				ldsm_x4(qf[kk], FRAG_A(Qs, LD, warp * 16, kk * 16));
		}
		if (j * TILE <= wq0 + 15) {  // else every key of this tile is after this warp's rows
			float s[8][4];
			tile_qk_reg<HD>(s, qf, Ks + buf * TILE * LD, lane);
			const bool mask = j * TILE + TILE - 1 > wq0;
			float mx[2] = { mrow[0], mrow[1] };
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					float x = s[nt][e] * scale_log2;
					if (mask && j * TILE + nt * 8 + t4 * 2 + (e & 1) > wq0 + g + (e >> 1) * 8)
						x = -INFINITY;
					s[nt][e] = x;
					mx[e >> 1] = fmaxf(mx[e >> 1], x);
				}
			float corr[2], ls[2] = { 0.f, 0.f };
#pragma unroll
			for (int r = 0; r < 2; r++) {
				mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
				mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
				corr[r] = exp2f(mrow[r] - mx[r]);
				mrow[r] = mx[r];
			}
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					float p = exp2f(s[nt][e] - mrow[e >> 1]);
					s[nt][e] = p;
					ls[e >> 1] += p;
				}
#pragma unroll
			for (int r = 0; r < 2; r++)
				lrow[r] = lrow[r] * corr[r] + ls[r];
#pragma unroll
			for (int d = 0; d < HD / 8; d++) {
				o[d][0] *= corr[0];
				o[d][1] *= corr[0];
				o[d][2] *= corr[1];
				o[d][3] *= corr[1];
			}
			tile_pv<HD>(o, s, Vs + buf * TILE * LD, lane);
		}
		__syncthreads();
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
		lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
		const int row = wq0 + g + r * 8;
		if (row >= T_)
			continue;
		const float inv = 1.0f / lrow[r];
		bf16 *op = out + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			*(uint32_t *)(op + d * 8) = pack_bf16(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
		if (t4 == 0)
			lse[((int64_t)b * nh + h) * T_ + row] = (mrow[r] + log2f(lrow[r])) * LN2_F;
	}
}

// Fast exp2 (MUFU.EX2; -inf gives +0).
__device__ __forceinline__ float ex2f(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
	return y;
}

// Forward, FlashAttention-2 layout: 4 warps x 32 query rows (two 16-row slabs per warp, so every
// K and V fragment read from shared memory feeds two tensor-core products, half the shared-memory
// traffic per FLOP of the 16-row kernel above), KV tiles of BN keys double-buffered with
// cp.async. Q fragments stay in registers for HD <= 64; larger heads re-read them (A operands,
// cheap) from shared memory. Softmax in the log2 domain: p = 2^(s * scale*log2e - m).
#define FA_NW 4
#define FA_BM 128
template <int HD, int BN>
static constexpr int attn_smem_fa() { return (FA_BM + 4 * BN) * (HD + 8) * 2; }

template <int HD, int BN>
__global__ void __launch_bounds__(FA_NW * 32, 2) attn_fwd_fa(bf16 *out, float *lse, const bf16 *q,
		const bf16 *k, const bf16 *v, int T_, int nh, int nkv, float scale_log2)
{
	constexpr int LD = HD + 8, BM = FA_BM, NT = BN / 8, KD = HD / 16;
	constexpr bool QREG = HD <= 64;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Qs = (bf16 *)smem_raw, *Ks = Qs + BM * LD, *Vs = Ks + 2 * BN * LD;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const bf16 *qb = q + (int64_t)b * T_ * qs + h * HD;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	const int q0 = qt * BM, wq0 = q0 + warp * 32;
	int nkt = (q0 + BM - 1) / BN + 1;
	if (nkt > (T_ + BN - 1) / BN)
		nkt = (T_ + BN - 1) / BN;

	load_tile<HD, BM>(Qs, qb, qs, q0, T_);
	load_tile<HD, BN>(Ks, kb, ks, 0, T_);
	load_tile<HD, BN>(Vs, vb, ks, 0, T_);
	cp_async_commit();

	float o[2][HD / 8][4];
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			o[ms][d][0] = o[ms][d][1] = o[ms][d][2] = o[ms][d][3] = 0.f;
	float mrow[2][2], lrow[2][2];
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
		mrow[ms][0] = mrow[ms][1] = -INFINITY, lrow[ms][0] = lrow[ms][1] = 0.f;
	uint32_t qf[2][QREG ? KD : 1][4];
	const uint32_t qa = smem_u32(Qs) + (lane_off_a(lane, LD) + warp * 32 * LD) * 2;
	const uint32_t ka = smem_u32(Ks) + lane_off_bn(lane, LD) * 2, va = smem_u32(Vs) + lane_off_a(lane, LD) * 2;
	for (int j = 0; j < nkt; j++) {
		const int buf = j & 1;
		if (j + 1 < nkt) {
			load_tile<HD, BN>(Ks + (buf ^ 1) * BN * LD, kb, ks, (j + 1) * BN, T_);
			load_tile<HD, BN>(Vs + (buf ^ 1) * BN * LD, vb, ks, (j + 1) * BN, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		if (QREG && j == 0) {
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int kk = 0; kk < (QREG ? KD : 1); kk++)
					ldsm_x4a(qf[ms][kk], qa + (ms * 16 * LD + kk * 16) * 2);
		}
		if (j * BN <= wq0 + 31) {  // else every key of this tile is after this warp's rows
			const uint32_t kt = ka + buf * (BN * LD * 2), vt = va + buf * (BN * LD * 2);
			float s[2][NT][4];
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int nt = 0; nt < NT; nt++)
					s[ms][nt][0] = s[ms][nt][1] = s[ms][nt][2] = s[ms][nt][3] = 0.f;
#pragma unroll
			for (int kk = 0; kk < KD; kk++) {
				uint32_t a[2][4];
#pragma unroll
				for (int ms = 0; ms < 2; ms++) {
					if (QREG) {
#pragma unroll
						for (int e = 0; e < 4; e++)
							a[ms][e] = qf[ms][QREG ? kk : 0][e];
					} else {
						ldsm_x4a(a[ms], qa + (ms * 16 * LD + kk * 16) * 2);
					}
				}
#pragma unroll
				for (int np = 0; np < BN / 16; np++) {
					uint32_t r[4];
					ldsm_x4a(r, kt + (np * 16 * LD + kk * 16) * 2);
#pragma unroll
					for (int ms = 0; ms < 2; ms++) {
						mma16816(s[ms][2 * np], a[ms], r[0], r[1]);
						mma16816(s[ms][2 * np + 1], a[ms], r[2], r[3]);
					}
				}
			}
			const bool mask = j * BN + BN - 1 > wq0;
#pragma unroll
			for (int ms = 0; ms < 2; ms++) {
				const int r0 = wq0 + ms * 16 + g;
				float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
				for (int nt = 0; nt < NT; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++) {
						if (mask && j * BN + nt * 8 + t4 * 2 + (e & 1) > r0 + (e >> 1) * 8)
							s[ms][nt][e] = -INFINITY;
						mx[e >> 1] = fmaxf(mx[e >> 1], s[ms][nt][e]);
					}
				float mref[2], ls[2] = { 0.f, 0.f };
#pragma unroll
				for (int r = 0; r < 2; r++) {
					mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
					mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
					const float mn = fmaxf(mrow[ms][r], mx[r] * scale_log2);
					mref[r] = mn == -INFINITY ? 0.f : mn;  // a row with nothing seen yet
					const float corr = ex2f(mrow[ms][r] - mref[r]);
					mrow[ms][r] = mn;
					lrow[ms][r] *= corr;
#pragma unroll
					for (int d = 0; d < HD / 8; d++) {
						o[ms][d][2 * r] *= corr;
						o[ms][d][2 * r + 1] *= corr;
					}
				}
#pragma unroll
				for (int nt = 0; nt < NT; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++) {
						const float p = ex2f(fmaf(s[ms][nt][e], scale_log2, -mref[e >> 1]));
						s[ms][nt][e] = p;
						ls[e >> 1] += p;
					}
				lrow[ms][0] += ls[0];
				lrow[ms][1] += ls[1];
			}
			// O += P V: P's accumulator layout is the A-operand layout of the next product.
#pragma unroll
			for (int kk = 0; kk < BN / 16; kk++) {
				uint32_t a[2][4];
#pragma unroll
				for (int ms = 0; ms < 2; ms++) {
					a[ms][0] = pack_bf16(s[ms][2 * kk][0], s[ms][2 * kk][1]);
					a[ms][1] = pack_bf16(s[ms][2 * kk][2], s[ms][2 * kk][3]);
					a[ms][2] = pack_bf16(s[ms][2 * kk + 1][0], s[ms][2 * kk + 1][1]);
					a[ms][3] = pack_bf16(s[ms][2 * kk + 1][2], s[ms][2 * kk + 1][3]);
				}
#pragma unroll
				for (int dp = 0; dp < HD / 16; dp++) {
					uint32_t r[4];
					ldsm_x4a_t(r, vt + (kk * 16 * LD + dp * 16) * 2);
#pragma unroll
					for (int ms = 0; ms < 2; ms++) {
						mma16816(o[ms][2 * dp], a[ms], r[0], r[1]);
						mma16816(o[ms][2 * dp + 1], a[ms], r[2], r[3]);
					}
				}
			}
		}
		__syncthreads();  // this stage is free for the loads of tile j + 2
	}
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float l = lrow[ms][r];
			l += __shfl_xor_sync(0xffffffffu, l, 1);
			l += __shfl_xor_sync(0xffffffffu, l, 2);
			const int row = wq0 + ms * 16 + g + r * 8;
			if (row >= T_)
				continue;
			const float inv = 1.0f / l;
			bf16 *op = out + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
			for (int d = 0; d < HD / 8; d++)
				*(uint32_t *)(op + d * 8) = pack_bf16(o[ms][d][2 * r] * inv, o[ms][d][2 * r + 1] * inv);
			if (t4 == 0)
				lse[((int64_t)b * nh + h) * T_ + row] = (mrow[ms][r] + log2f(l)) * LN2_F;
		}
}

// Backward kernels stream the other side's tiles through ST shared-memory stages: 2 (the next
// tile loads while this one computes) where shared memory allows (H100, A100); 1 on consumer
// GPUs (99 KB per block), which overlap loads across blocks instead.

// 4-byte async copy (lse, D rows); zero when !valid.
__device__ __forceinline__ void cp_async4(void *smem, const void *gmem, bool valid)
{
	const int n = valid ? 4 : 0;
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
		     "r"(n));
}

// Fused dQ (AB != 0): the block's contribution dS K to the dQ rows of each query tile, converted
// to fixed point with the row's multiplier (attn_bwd_dot) and added with integer atomics into acc:
// integer addition is associative, so the sum, and the bf16 dQ made from it, is the same bits
// whatever order the blocks add in. AB bytes per element of dQ, in the op scratch.
template <int AB>
__device__ __forceinline__ void red_fixed(typename fx_acc<AB>::T *p, float x)
{
	if constexpr (AB == 8) {
		long long v;
		asm("cvt.rni.s64.f32 %0, %1;\n" : "=l"(v) : "f"(x));
		asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;\n" ::"l"(p), "l"(v) : "memory");
	} else {
		int v;
		asm("cvt.rni.s32.f32 %0, %1;\n" : "=r"(v) : "f"(x));
		asm volatile("red.relaxed.gpu.global.add.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
	}
}

// Adds one 16 x 16 block of dQ (accumulators c0: columns 0-7, c1: 8-15) to block blk of the
// accumulator; m0, m1: the multipliers of rows g and g + 8.
template <int AB>
__device__ __forceinline__ void flush16(void *acc, int64_t blk, const float c0[4], const float c1[4],
					float m0, float m1, int lane)
{
	typename fx_acc<AB>::T *p = (typename fx_acc<AB>::T *)acc + blk * 256 + lane;
	red_fixed<AB>(p, c0[0] * m0);
	red_fixed<AB>(p + 32, c0[1] * m0);
	red_fixed<AB>(p + 64, c0[2] * m1);
	red_fixed<AB>(p + 96, c0[3] * m1);
	red_fixed<AB>(p + 128, c1[0] * m0);
	red_fixed<AB>(p + 160, c1[1] * m0);
	red_fixed<AB>(p + 192, c1[2] * m1);
	red_fixed<AB>(p + 224, c1[3] * m1);
}

// Backward dK, dV: block = BM keys of one (b, kv head); loops over the group's query heads and
// the query tiles that can see its keys (one flat, fixed-order sequence of (head, tile)).
// Transposed tiles: S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q. Query rows past T
// are zero-filled (Q, dO, lse, D all 0), which makes their dS and P^T dO contributions 0.
// FQ: dS^T also goes to shared memory (bf16, [key][query]) and the warps then compute
// dQ_tile += dS K (64 queries x HD; warp w: 32 queries (w & 1), 16-column groups w/2, w/2 + NW/2,
// ...) and add it to acc (red_fixed). Blocks are units u0 + blockIdx.x (unit = b * nkv + kvh).
template <int HD, int NW, int ST, int AB>
static constexpr int attn_smem_dkdv()
{
	constexpr bool FQ = AB != 0;
	return attn_smem_bwd<HD, NW, ST>() + (FQ ? 16 * NW * (TILE + 8) * 2 + ST * TILE * 4 : 0);
}

template <int HD, int NW, int ST, int AB>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dkdv_mma(bf16 *dk, bf16 *dv, const bf16 *q,
		const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse, const float *Dd, int T_,
		int nh, int nkv, float scale, float scale_log2, void *acc, const float *mq, int u0)
{
	constexpr bool FQ = AB != 0;
	constexpr int LD = HD + 8, BM = 16 * NW, PLD = TILE + 8, NCG = HD / 16;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + BM * LD, *Qs = Vs + BM * LD, *dOs = Qs + ST * TILE * LD;
	bf16 *dSs = dOs + ST * TILE * LD;  // FQ only: [BM][PLD]
	float *lse_s = (float *)(dSs + (FQ ? BM * PLD : 0)), *D_s = lse_s + ST * TILE, *M_s = D_s + ST * TILE;
	const int nqt = (T_ + TILE - 1) / TILE, kt = blockIdx.y;
	const int u = u0 + blockIdx.x, b = u / nkv, kvh = u % nkv, G = nh / nkv;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const int k0 = kt * BM, wk0 = k0 + warp * 16, i0 = k0 / TILE, ni = nqt - i0, total = G * ni;
	load_tile<HD, BM>(Ks, k + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);
	load_tile<HD, BM>(Vs, v + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);

	// Issues the loads of step it (query head kvh*G + it/ni, query tile i0 + it%ni) into stage st.
	auto issue = [&](int it, int st) {
		const int h = kvh * G + it / ni, i = i0 + it % ni;
		const int64_t qoff = (int64_t)b * T_ * qs + h * HD;
		load_tile<HD, TILE>(Qs + st * TILE * LD, q + qoff, qs, i * TILE, T_);
		load_tile<HD, TILE>(dOs + st * TILE * LD, dout + qoff, qs, i * TILE, T_);
		for (int x = threadIdx.x; x < (FQ ? 3 : 2) * TILE; x += NW * 32) {
			const int which = x / TILE, r = x % TILE, row = i * TILE + r;
			const int64_t loff = ((int64_t)b * nh + h) * T_ + (row < T_ ? row : 0);
			float *dst = which == 0 ? lse_s : which == 1 ? D_s : M_s;
			const float *src = which == 0 ? lse : which == 1 ? Dd : mq;
			cp_async4(dst + st * TILE + r, src + loff, row < T_);
		}
	};
	if (ST == 2)
		issue(0, 0);
	cp_async_commit();

	float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
	for (int d = 0; d < HD / 8; d++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			dka[d][e] = dva[d][e] = 0.f;
	for (int it = 0; it < total; it++) {
		const int st = ST == 2 ? it & 1 : 0, i = i0 + it % ni;
		if (ST == 1) {
			issue(it, 0);
			cp_async_commit();
			cp_async_wait<0>();
		} else if (it + 1 < total) {
			issue(it + 1, st ^ 1);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		// Skip when every query of this tile is before this warp's keys.
		if (i * TILE + TILE - 1 >= wk0) {
			const bf16 *Qt = Qs + st * TILE * LD, *dOt = dOs + st * TILE * LD;
			const float *Lt = lse_s + st * TILE, *Dt = D_s + st * TILE;
			const bool mask = i * TILE < wk0 + 15;
			float sc[8][4], dpt[8][4];
			tile_qk<HD>(sc, Ks, warp * 16, Qt, lane);
			tile_qk<HD>(dpt, Vs, warp * 16, dOt, lane);
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					const int qi = nt * 8 + t4 * 2 + (e & 1);
					float p = ex2f(fmaf(sc[nt][e], scale_log2, -Lt[qi] * LOG2E_F));
					if (mask && i * TILE + qi < wk0 + g + (e >> 1) * 8)
						p = 0.f;
					sc[nt][e] = p;
					dpt[nt][e] = p * (dpt[nt][e] - Dt[qi]);
				}
			if (FQ) {
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					bf16 *w = dSs + (warp * 16 + g) * PLD + nt * 8 + t4 * 2;
					*(uint32_t *)w = pack_bf16(dpt[nt][0], dpt[nt][1]);
					*(uint32_t *)(w + 8 * PLD) = pack_bf16(dpt[nt][2], dpt[nt][3]);
				}
			}
			tile_pv<HD>(dva, sc, dOt, lane);
			tile_pv<HD>(dka, dpt, Qt, lane);
		}
		if (FQ) {
			__syncthreads();  // dS^T of every warp is in shared memory
			// key slabs with a query of this tile at or after them (the others were skipped)
			const int nkc = min(NW, (i * TILE + TILE - 1 - k0) / 16 + 1), qh = warp & 1;
			const int hh = it / ni;
			const uint32_t dsT = smem_u32(dSs) + (lane_off_bn(lane, PLD) + qh * 32) * 2;
			const uint32_t kT = smem_u32(Ks) + lane_off_a(lane, LD) * 2;
			const float *Mt = M_s + st * TILE;
			// 16 x 16 block (i * 4 + qh * 2 + ms, cg) of this unit and query head
			const int64_t rb0 = ((int64_t)blockIdx.x * (fx_rows(T_) / 16) + i * 4 + qh * 2) * G + hh;
#pragma unroll 1
			for (int cg = warp >> 1; cg < NCG; cg += NW / 2) {
				float c[2][2][4];
#pragma unroll
				for (int ms = 0; ms < 2; ms++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						c[ms][0][e] = c[ms][1][e] = 0.f;
#pragma unroll
				for (int kc = 0; kc < NW; kc++) {
					if (kc < nkc) {
						uint32_t a[2][4], r[4];
#pragma unroll
						for (int ms = 0; ms < 2; ms++)
							ldsm_x4a_t(a[ms], dsT + (kc * 16 * PLD + ms * 16) * 2);
						ldsm_x4a_t(r, kT + (kc * 16 * LD + cg * 16) * 2);
#pragma unroll
						for (int ms = 0; ms < 2; ms++) {
							mma16816(c[ms][0], a[ms], r[0], r[1]);
							mma16816(c[ms][1], a[ms], r[2], r[3]);
						}
					}
				}
#pragma unroll
				for (int ms = 0; ms < 2; ms++) {
					const int rt = qh * 32 + ms * 16 + g;
					flush16<AB>(acc, (rb0 + ms * G) * NCG + cg, c[ms][0], c[ms][1], Mt[rt],
						    Mt[rt + 8], lane);
				}
			}
		}
		__syncthreads();  // this stage (and dS^T) is free for step it + 2
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int row = wk0 + g + r * 8;
		if (row >= T_)
			continue;
		const int64_t off = ((int64_t)b * T_ + row) * ks + kvh * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++) {
			*(uint32_t *)(dk + off + d * 8) = pack_bf16(dka[d][2 * r] * scale, dka[d][2 * r + 1] * scale);
			*(uint32_t *)(dv + off + d * 8) = pack_bf16(dva[d][2 * r], dva[d][2 * r + 1]);
		}
	}
}

// Backward dQ: block = BM queries of one (b, h); loops over the KV tiles its queries can see.
template <int HD, int NW, int ST>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dq_mma(bf16 *dq, const bf16 *q, const bf16 *k,
		const bf16 *v, const bf16 *dout, const float *lse, const float *Dd, int T_, int nh, int nkv,
		float scale, float scale_log2)
{
	constexpr int LD = HD + 8, BM = 16 * NW;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + BM * LD, *Ks = dOs + BM * LD, *Vs = Ks + ST * TILE * LD;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const int q0 = qt * BM, wq0 = q0 + warp * 16;
	int nkt = (q0 + BM - 1) / TILE + 1;
	if (nkt > (T_ + TILE - 1) / TILE)
		nkt = (T_ + TILE - 1) / TILE;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	load_tile<HD, BM>(Qs, q + (int64_t)b * T_ * qs + h * HD, qs, q0, T_);
	load_tile<HD, BM>(dOs, dout + (int64_t)b * T_ * qs + h * HD, qs, q0, T_);
	if (ST == 2) {
		load_tile<HD, TILE>(Ks, kb, ks, 0, T_);
		load_tile<HD, TILE>(Vs, vb, ks, 0, T_);
	}
	cp_async_commit();
	float L[2], Di[2];
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int row = wq0 + g + r * 8;
		L[r] = row < T_ ? lse[((int64_t)b * nh + h) * T_ + row] * LOG2E_F : INFINITY;
		Di[r] = row < T_ ? Dd[((int64_t)b * nh + h) * T_ + row] : 0.f;
	}
	float acc[HD / 8][4];
#pragma unroll
	for (int d = 0; d < HD / 8; d++)
		acc[d][0] = acc[d][1] = acc[d][2] = acc[d][3] = 0.f;
	for (int j = 0; j < nkt; j++) {
		const int st = ST == 2 ? j & 1 : 0;
		if (ST == 1) {
			load_tile<HD, TILE>(Ks, kb, ks, j * TILE, T_);
			load_tile<HD, TILE>(Vs, vb, ks, j * TILE, T_);
			cp_async_commit();
			cp_async_wait<0>();
		} else if (j + 1 < nkt) {
			load_tile<HD, TILE>(Ks + (st ^ 1) * TILE * LD, kb, ks, (j + 1) * TILE, T_);
			load_tile<HD, TILE>(Vs + (st ^ 1) * TILE * LD, vb, ks, (j + 1) * TILE, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		// Skip when every key of this tile is after this warp's rows.
		if (j * TILE <= wq0 + 15) {
			const bf16 *Kt = Ks + st * TILE * LD, *Vt = Vs + st * TILE * LD;
			const bool mask = j * TILE + TILE - 1 > wq0;
			float sc[8][4], dp[8][4];
			tile_qk<HD>(sc, Qs, warp * 16, Kt, lane);
			tile_qk<HD>(dp, dOs, warp * 16, Vt, lane);
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					float p = ex2f(fmaf(sc[nt][e], scale_log2, -L[e >> 1]));
					if (mask && j * TILE + nt * 8 + t4 * 2 + (e & 1) > wq0 + g + (e >> 1) * 8)
						p = 0.f;
					dp[nt][e] = p * (dp[nt][e] - Di[e >> 1]);
				}
			tile_pv<HD>(acc, dp, Kt, lane);
		}
		__syncthreads();
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int row = wq0 + g + r * 8;
		if (row >= T_)
			continue;
		bf16 *op = dq + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			*(uint32_t *)(op + d * 8) = pack_bf16(acc[d][2 * r] * scale, acc[d][2 * r + 1] * scale);
	}
}

// c[2][BN/8] (32 x BN) += A (32 x HD, two 16-row slabs at byte address a) @ B^T, B stored
// [BN][HD] at byte address b (per-lane fragment offsets included in a and b).
template <int HD, int BN>
__device__ __forceinline__ void tile2_abt(float c[2][BN / 8][4], uint32_t a, uint32_t b)
{
	constexpr int LD = HD + 8;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
		uint32_t f[2][4];
#pragma unroll
		for (int ms = 0; ms < 2; ms++)
			ldsm_x4a(f[ms], a + (ms * 16 * LD + kk * 16) * 2);
#pragma unroll
		for (int np = 0; np < BN / 16; np++) {
			uint32_t r[4];
			ldsm_x4a(r, b + (np * 16 * LD + kk * 16) * 2);
#pragma unroll
			for (int ms = 0; ms < 2; ms++) {
				mma16816(c[ms][2 * np], f[ms], r[0], r[1]);
				mma16816(c[ms][2 * np + 1], f[ms], r[2], r[3]);
			}
		}
	}
}

// Backward dQ, FlashAttention-2 layout (as attn_fwd_fa): 4 warps x 32 query rows, Q and dO in
// shared memory, K/V tiles of BN keys double-buffered. Per tile: S = Q K^T and dP = dO V^T
// (recomputed: the price of no atomics), dS = P (dP - D), dQ += dS K.
template <int HD, int BN>
static constexpr int attn_smem_dq_fa() { return (2 * FA_BM + 4 * BN) * (HD + 8) * 2; }

template <int HD, int BN>
__global__ void __launch_bounds__(FA_NW * 32, 2) attn_bwd_dq_fa(bf16 *dq, const bf16 *q,
		const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse, const float *Dd, int T_,
		int nh, int nkv, float scale, float scale_log2)
{
	constexpr int LD = HD + 8, BM = FA_BM, NT = BN / 8;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + BM * LD, *Ks = dOs + BM * LD, *Vs = Ks + 2 * BN * LD;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const int q0 = qt * BM, wq0 = q0 + warp * 32;
	int nkt = (q0 + BM - 1) / BN + 1;
	if (nkt > (T_ + BN - 1) / BN)
		nkt = (T_ + BN - 1) / BN;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	load_tile<HD, BM>(Qs, q + (int64_t)b * T_ * qs + h * HD, qs, q0, T_);
	load_tile<HD, BM>(dOs, dout + (int64_t)b * T_ * qs + h * HD, qs, q0, T_);
	load_tile<HD, BN>(Ks, kb, ks, 0, T_);
	load_tile<HD, BN>(Vs, vb, ks, 0, T_);
	cp_async_commit();
	float L[2][2], Di[2][2];
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			const int row = wq0 + ms * 16 + g + r * 8;
			L[ms][r] = row < T_ ? lse[((int64_t)b * nh + h) * T_ + row] * LOG2E_F : INFINITY;
			Di[ms][r] = row < T_ ? Dd[((int64_t)b * nh + h) * T_ + row] : 0.f;
		}
	float acc[2][HD / 8][4];
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			acc[ms][d][0] = acc[ms][d][1] = acc[ms][d][2] = acc[ms][d][3] = 0.f;
	const uint32_t qa = smem_u32(Qs) + (lane_off_a(lane, LD) + warp * 32 * LD) * 2;
	const uint32_t doa = smem_u32(dOs) + (lane_off_a(lane, LD) + warp * 32 * LD) * 2;
	const uint32_t kan = smem_u32(Ks) + lane_off_bn(lane, LD) * 2, kat = smem_u32(Ks) + lane_off_a(lane, LD) * 2;
	const uint32_t van = smem_u32(Vs) + lane_off_bn(lane, LD) * 2;
	for (int j = 0; j < nkt; j++) {
		const int buf = j & 1;
		if (j + 1 < nkt) {
			load_tile<HD, BN>(Ks + (buf ^ 1) * BN * LD, kb, ks, (j + 1) * BN, T_);
			load_tile<HD, BN>(Vs + (buf ^ 1) * BN * LD, vb, ks, (j + 1) * BN, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		if (j * BN <= wq0 + 31) {  // else every key of this tile is after this warp's rows
			const uint32_t so = buf * (BN * LD * 2);
			float s[2][NT][4], dp[2][NT][4];
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int nt = 0; nt < NT; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						s[ms][nt][e] = dp[ms][nt][e] = 0.f;
			tile2_abt<HD, BN>(s, qa, kan + so);
			tile2_abt<HD, BN>(dp, doa, van + so);
			const bool mask = j * BN + BN - 1 > wq0;
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int nt = 0; nt < NT; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++) {
						float p = ex2f(fmaf(s[ms][nt][e], scale_log2, -L[ms][e >> 1]));
						if (mask && j * BN + nt * 8 + t4 * 2 + (e & 1) > wq0 + ms * 16 + g + (e >> 1) * 8)
							p = 0.f;
						dp[ms][nt][e] = p * (dp[ms][nt][e] - Di[ms][e >> 1]);
					}
			// dQ += dS K: K stored [key][hd] is the [k][n] layout of this product's B operand.
#pragma unroll
			for (int kk = 0; kk < BN / 16; kk++) {
				uint32_t a[2][4];
#pragma unroll
				for (int ms = 0; ms < 2; ms++) {
					a[ms][0] = pack_bf16(dp[ms][2 * kk][0], dp[ms][2 * kk][1]);
					a[ms][1] = pack_bf16(dp[ms][2 * kk][2], dp[ms][2 * kk][3]);
					a[ms][2] = pack_bf16(dp[ms][2 * kk + 1][0], dp[ms][2 * kk + 1][1]);
					a[ms][3] = pack_bf16(dp[ms][2 * kk + 1][2], dp[ms][2 * kk + 1][3]);
				}
#pragma unroll
				for (int d2 = 0; d2 < HD / 16; d2++) {
					uint32_t r[4];
					ldsm_x4a_t(r, kat + so + (kk * 16 * LD + d2 * 16) * 2);
#pragma unroll
					for (int ms = 0; ms < 2; ms++) {
						mma16816(acc[ms][2 * d2], a[ms], r[0], r[1]);
						mma16816(acc[ms][2 * d2 + 1], a[ms], r[2], r[3]);
					}
				}
			}
		}
		__syncthreads();  // this stage is free for the loads of tile j + 2
	}
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			const int row = wq0 + ms * 16 + g + r * 8;
			if (row >= T_)
				continue;
			bf16 *op = dq + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
			for (int d = 0; d < HD / 8; d++)
				*(uint32_t *)(op + d * 8) = pack_bf16(acc[ms][d][2 * r] * scale, acc[ms][d][2 * r + 1] * scale);
		}
}

// Backward dK, dV, FlashAttention-2 layout: a block of 8 warps owns 128 keys of one (b, kv head)
// and loops over the group's query heads and the 64-query tiles that see its keys (fixed order).
// Step 1, warps as 4 (32 keys) x 2 (32 queries): S^T = K Q^T and dP^T = V dO^T, then P^T and
// dS^T = P^T (dP^T - D) go to shared memory as bf16. Step 2, warps as 4 (32 keys) x 2 (half the
// head dim): dV += P^T dO, dK += dS^T Q. Every fragment read from shared memory feeds two
// tensor-core products (two 16-row slabs). Instantiated for head dim 128 only: at 64 it measured
// slower than attn_bwd_dkdv_mma (H100: 182 against 200 TFLOP/s at T = 32K), at 96 it spills.
#define KV_BN 128
#define KV_BM 64
// FQ (fused dQ, as in attn_bwd_dkdv_mma): after step 2, dQ_tile += dS K from dS^T in shared
// memory, warps as 2 (32 queries) x 4 (32 columns), added to acc with red_fixed.
template <int HD, int AB>
static constexpr int attn_smem_dkdv_fa()
{
	constexpr bool FQ = AB != 0;
	return (2 * KV_BN + 4 * KV_BM) * (HD + 8) * 2 + 2 * KV_BN * (KV_BM + 8) * 2 + (FQ ? 6 : 4) * KV_BM * 4;
}

template <int HD, int AB>
__global__ void __launch_bounds__(256, 1) attn_bwd_dkdv_fa(bf16 *dk, bf16 *dv, const bf16 *q,
		const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse, const float *Dd, int T_,
		int nh, int nkv, float scale, float scale_log2, void *acc, const float *mq, int u0)
{
	constexpr bool FQ = AB != 0;
	constexpr int LD = HD + 8, PLD = KV_BM + 8, HH = HD / 2;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + KV_BN * LD, *Qs = Vs + KV_BN * LD, *dOs = Qs + 2 * KV_BM * LD;
	bf16 *Ps = dOs + 2 * KV_BM * LD, *dSs = Ps + KV_BN * PLD;
	float *lse_s = (float *)(dSs + KV_BN * PLD), *D_s = lse_s + 2 * KV_BM, *M_s = D_s + 2 * KV_BM;
	const int nqt = (T_ + KV_BM - 1) / KV_BM, kt = blockIdx.y;
	const int u = u0 + blockIdx.x, b = u / nkv, kvh = u % nkv, G = nh / nkv;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const int kw = warp >> 1, qw = warp & 1;  // step 1: key slab pair, query half; step 2: qw = head-dim half
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const int k0 = kt * KV_BN, i0 = k0 / KV_BM, ni = nqt - i0, total = G * ni;
	load_tile<HD, KV_BN>(Ks, k + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);
	load_tile<HD, KV_BN>(Vs, v + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);

	auto issue = [&](int it, int st) {
		const int h = kvh * G + it / ni, i = i0 + it % ni;
		const int64_t qoff = (int64_t)b * T_ * qs + h * HD;
		load_tile<HD, KV_BM>(Qs + st * KV_BM * LD, q + qoff, qs, i * KV_BM, T_);
		load_tile<HD, KV_BM>(dOs + st * KV_BM * LD, dout + qoff, qs, i * KV_BM, T_);
		const int tid = threadIdx.x, row = i * KV_BM + (tid & (KV_BM - 1));
		const int64_t loff = ((int64_t)b * nh + h) * T_ + (row < T_ ? row : 0);
		if (tid < KV_BM)
			cp_async4(lse_s + st * KV_BM + tid, lse + loff, row < T_);
		else if (tid < 2 * KV_BM)
			cp_async4(D_s + st * KV_BM + (tid - KV_BM), Dd + loff, row < T_);
		else if (FQ && tid < 3 * KV_BM)
			cp_async4(M_s + st * KV_BM + (tid - 2 * KV_BM), mq + loff, row < T_);
	};
	issue(0, 0);
	cp_async_commit();

	float dka[2][HH / 8][4], dva[2][HH / 8][4];
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int d = 0; d < HH / 8; d++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				dka[ms][d][e] = dva[ms][d][e] = 0.f;
	// Per-lane fragment addresses: A operands (K, V rows of this warp's keys; P^T, dS^T rows),
	// B operands non-transposed (Q, dO for S^T, dP^T) and transposed (dO, Q for dV, dK).
	const uint32_t kA = smem_u32(Ks) + (lane_off_a(lane, LD) + kw * 32 * LD) * 2;
	const uint32_t vA = smem_u32(Vs) + (lane_off_a(lane, LD) + kw * 32 * LD) * 2;
	const uint32_t qB = smem_u32(Qs) + (lane_off_bn(lane, LD) + qw * 32 * LD) * 2;
	const uint32_t doB = smem_u32(dOs) + (lane_off_bn(lane, LD) + qw * 32 * LD) * 2;
	const uint32_t pA = smem_u32(Ps) + (lane_off_a(lane, PLD) + kw * 32 * PLD) * 2;
	const uint32_t dsA = smem_u32(dSs) + (lane_off_a(lane, PLD) + kw * 32 * PLD) * 2;
	const uint32_t qT = smem_u32(Qs) + (lane_off_a(lane, LD) + qw * HH) * 2;
	const uint32_t doT = smem_u32(dOs) + (lane_off_a(lane, LD) + qw * HH) * 2;
	for (int it = 0; it < total; it++) {
		const int st = it & 1, i = i0 + it % ni;
		if (it + 1 < total) {
			issue(it + 1, st ^ 1);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		const uint32_t so = st * (KV_BM * LD * 2);
		{
			float sc[2][4][4], dpt[2][4][4];
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int nt = 0; nt < 4; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						sc[ms][nt][e] = dpt[ms][nt][e] = 0.f;
			tile2_abt<HD, 32>(sc, kA, qB + so);
			tile2_abt<HD, 32>(dpt, vA, doB + so);
			const float *Lt = lse_s + st * KV_BM, *Dt = D_s + st * KV_BM;
			const bool mask = i * KV_BM + qw * 32 < k0 + kw * 32 + 31;
#pragma unroll
			for (int ms = 0; ms < 2; ms++) {
				const int kr = kw * 32 + ms * 16 + g;  // key row in the block (+8 for e >= 2)
#pragma unroll
				for (int nt = 0; nt < 4; nt++) {
					const int qc = qw * 32 + nt * 8 + t4 * 2;  // query column in the tile (+1 for odd e)
					float pv[4], dv4[4];
#pragma unroll
					for (int e = 0; e < 4; e++) {
						const int qi = qc + (e & 1);
						float p = ex2f(fmaf(sc[ms][nt][e], scale_log2, -Lt[qi] * LOG2E_F));
						if (mask && i * KV_BM + qi < k0 + kr + (e >> 1) * 8)
							p = 0.f;
						pv[e] = p;
						dv4[e] = p * (dpt[ms][nt][e] - Dt[qi]);
					}
					*(uint32_t *)(Ps + kr * PLD + qc) = pack_bf16(pv[0], pv[1]);
					*(uint32_t *)(Ps + (kr + 8) * PLD + qc) = pack_bf16(pv[2], pv[3]);
					*(uint32_t *)(dSs + kr * PLD + qc) = pack_bf16(dv4[0], dv4[1]);
					*(uint32_t *)(dSs + (kr + 8) * PLD + qc) = pack_bf16(dv4[2], dv4[3]);
				}
			}
		}
		__syncthreads();
		// dV += P^T dO, dK += dS^T Q over this warp's 32 keys and head-dim half.
#pragma unroll
		for (int kk = 0; kk < KV_BM / 16; kk++) {
			uint32_t ap[2][4], ad[2][4];
#pragma unroll
			for (int ms = 0; ms < 2; ms++) {
				ldsm_x4a(ap[ms], pA + (ms * 16 * PLD + kk * 16) * 2);
				ldsm_x4a(ad[ms], dsA + (ms * 16 * PLD + kk * 16) * 2);
			}
#pragma unroll
			for (int d2 = 0; d2 < HH / 16; d2++) {
				uint32_t r[4], w[4];
				ldsm_x4a_t(r, doT + so + (kk * 16 * LD + d2 * 16) * 2);
				ldsm_x4a_t(w, qT + so + (kk * 16 * LD + d2 * 16) * 2);
#pragma unroll
				for (int ms = 0; ms < 2; ms++) {
					mma16816(dva[ms][2 * d2], ap[ms], r[0], r[1]);
					mma16816(dva[ms][2 * d2 + 1], ap[ms], r[2], r[3]);
					mma16816(dka[ms][2 * d2], ad[ms], w[0], w[1]);
					mma16816(dka[ms][2 * d2 + 1], ad[ms], w[2], w[3]);
				}
			}
		}
		if (FQ) {
			// dQ (64 queries x HD) += dS (64 x 128 keys) K; warp: queries qh*32.., columns dc*32..
			const int qh = warp & 1, dc = warp >> 1, hh = it / ni;
			const int nkc = min(KV_BN / 16, (i * KV_BM + KV_BM - 1 - k0) / 16 + 1);
			const uint32_t dsT = smem_u32(dSs) + (lane_off_bn(lane, PLD) + qh * 32) * 2;
			const uint32_t kT = smem_u32(Ks) + (lane_off_a(lane, LD) + dc * (HD / 4)) * 2;
			float c[2][HD / 32][4];
#pragma unroll
			for (int ms = 0; ms < 2; ms++)
#pragma unroll
				for (int nt = 0; nt < HD / 32; nt++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						c[ms][nt][e] = 0.f;
#pragma unroll
			for (int kc = 0; kc < KV_BN / 16; kc++) {
				if (kc < nkc) {
					uint32_t a[2][4];
#pragma unroll
					for (int ms = 0; ms < 2; ms++)
						ldsm_x4a_t(a[ms], dsT + (kc * 16 * PLD + ms * 16) * 2);
#pragma unroll
					for (int np = 0; np < HD / 64; np++) {
						uint32_t r[4];
						ldsm_x4a_t(r, kT + (kc * 16 * LD + np * 16) * 2);
#pragma unroll
						for (int ms = 0; ms < 2; ms++) {
							mma16816(c[ms][2 * np], a[ms], r[0], r[1]);
							mma16816(c[ms][2 * np + 1], a[ms], r[2], r[3]);
						}
					}
				}
			}
			const float *Mt = M_s + st * KV_BM;
			const int64_t rb0 = ((int64_t)blockIdx.x * (fx_rows(T_) / 16) + i * 4 + qh * 2) * G + hh;
#pragma unroll
			for (int ms = 0; ms < 2; ms++) {
				const int rt = qh * 32 + ms * 16 + g;
#pragma unroll
				for (int np = 0; np < HD / 64; np++)
					flush16<AB>(acc, (rb0 + ms * G) * (HD / 16) + dc * (HD / 64) + np, c[ms][2 * np],
						    c[ms][2 * np + 1], Mt[rt], Mt[rt + 8], lane);
			}
		}
		__syncthreads();  // P^T, dS^T and this stage are free again
	}
#pragma unroll
	for (int ms = 0; ms < 2; ms++)
#pragma unroll
		for (int r = 0; r < 2; r++) {
			const int row = k0 + kw * 32 + ms * 16 + g + r * 8;
			if (row >= T_)
				continue;
			const int64_t off = ((int64_t)b * T_ + row) * ks + kvh * HD + qw * HH + t4 * 2;
#pragma unroll
			for (int d = 0; d < HH / 8; d++) {
				*(uint32_t *)(dk + off + d * 8) = pack_bf16(dka[ms][d][2 * r] * scale, dka[ms][d][2 * r + 1] * scale);
				*(uint32_t *)(dv + off + d * 8) = pack_bf16(dva[ms][d][2 * r], dva[ms][d][2 * r + 1]);
			}
		}
}

#include "cuda/attn_sm90.cuh"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

// ---------------------------------------------------------------- launchers
static bool use_mma(int isbf, int hd, const void *const *ptrs, int nptr)
{
	if (!isbf || (hd != 64 && hd != 80 && hd != 96 && hd != 128))
		return false;
	for (int i = 0; i < nptr; i++)
		if ((uintptr_t)ptrs[i] & 15)
			return false;
	return true;
}

static int attn_smem_optin(void)
{
	static int optin = -1;
	if (optin < 0) {
		int dev = 0;
		CU_CHECK(cudaGetDevice(&dev));
		CU_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
	}
	return optin;
}

// Warps per block: 8 (128-row tiles) where the device's shared memory per block allows it
// (H100, A100), else 4 (RTX 3090/4090: 99 KB per block). SW_CUDA_ATTN_WARPS=4|8 overrides
// (tests use it to cover both variants on one GPU).
// SW_CUDA_ATTN_MMA16=1 (or SW_CUDA_ATTN_WARPS) forces the 16-row-per-warp kernels everywhere,
// the ones GPUs with 99 KB of shared memory per block run (tests cover them on any GPU).
static bool attn_mma16(void)
{
	const char *e = getenv("SW_CUDA_ATTN_MMA16");
	return (e && !strcmp(e, "1")) || getenv("SW_CUDA_ATTN_WARPS");
}

static int attn_warps(int need8)
{
	const char *e = getenv("SW_CUDA_ATTN_WARPS");
	if (e && (!strcmp(e, "4") || !strcmp(e, "8")))
		return atoi(e);
	return attn_smem_optin() >= need8 ? 8 : 4;
}

// Whether the device runs this build's sm_90a code (cuda/attn_sm90.cuh): an sm_90 device and a
// probe kernel that reports the feature macro of the code it was compiled as (once per process
// and device). SW_CUDA_ATTN_SM90=0 turns the Hopper kernels off, =fwd keeps only the forward
// (tests and benchmarks of the sm_80 path on an H100); the 16-row switches turn them off too.
static bool sm90_ready(bool bwd)
{
	static int ready[64];  // 0 unknown, 1 yes, 2 no
	const char *e = getenv("SW_CUDA_ATTN_SM90");
	if ((e && !strcmp(e, "0")) || (bwd && e && !strcmp(e, "fwd")) || attn_mma16())
		return false;
	int dev = 0;
	CU_CHECK(cudaGetDevice(&dev));
	if (dev < 0 || dev >= 64)
		return false;
	if (!ready[dev]) {
		int major = 0, minor = 0, ok = 0;
		CU_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
		CU_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
		cudaFuncAttributes fa;
		if (major == 9 && minor == 0 && cudaFuncGetAttributes(&fa, attn_sm90_probe) == cudaSuccess) {
			attn_sm90_probe<<<1, 1>>>();
			CU_CHECK_LAUNCH();
			CU_CHECK(cudaMemcpyFromSymbol(&ok, attn_sm90_flag, sizeof(int)));
		}
		(void)cudaGetLastError();
		ready[dev] = ok ? 1 : 2;
	}
	return ready[dev] == 1;
}

// Hopper forward, unpipelined (attn_fwd_wg) and pipelined (attn_fwd_wgp).
template <int HD, int BN, int NWG, int STG = 2>
static void fwd_wg(cudaStream_t s, void *out, float *lse, const void *q, const void *k, const void *v,
		   int B, int T, int nh, int nkv, float scale)
{
	constexpr int SMEM = attn_smem_wg<HD, BN, NWG, STG>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_fwd_wg<HD, BN, NWG, STG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
		attr_set = true;
	}
	dim3 grid(B * nh, (T + 64 * NWG - 1) / (64 * NWG));
	attn_fwd_wg<HD, BN, NWG, STG><<<grid, NWG * 128, SMEM, s>>>((bf16 *)out, lse, (const bf16 *)q,
		(const bf16 *)k, (const bf16 *)v, T, nh, nkv, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

template <int HD, int BN, int NWG>
static void fwd_wgp(cudaStream_t s, void *out, float *lse, const void *q, const void *k, const void *v,
		    int B, int T, int nh, int nkv, float scale)
{
	constexpr int SMEM = attn_smem_wgp<HD, BN, NWG>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_fwd_wgp<HD, BN, NWG>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
		attr_set = true;
	}
	dim3 grid(B * nh, (T + 64 * NWG - 1) / (64 * NWG));
	attn_fwd_wgp<HD, BN, NWG><<<grid, NWG * 128, SMEM, s>>>((bf16 *)out, lse, (const bf16 *)q,
		(const bf16 *)k, (const bf16 *)v, T, nh, nkv, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

// The driver's cuTensorMapEncodeTiled through the runtime's entry-point query (the build links
// the runtime only, not libcuda); NULL where the driver does not offer it.
static PFN_cuTensorMapEncodeTiled_v12000 tma_encoder(void)
{
	static PFN_cuTensorMapEncodeTiled_v12000 fn;
	static int tried;
	if (!tried) {
		tried = 1;
		void *p = NULL;
		cudaDriverEntryPointQueryResult qr = cudaDriverEntryPointSymbolNotFound;
		if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &qr) ==
			    cudaSuccess && qr == cudaDriverEntryPointSuccess)
			fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
		(void)cudaGetLastError();
	}
	return fn;
}

// TMA map of a (B, T, heads, hd) bf16 tensor as 4-d (hd, heads, T, B): boxes of 64 columns x
// `rows` rows of one head, 128-byte swizzle (the swizzled tile layout of cuda/attn_sm90.cuh);
// rows past T read as zeros. False when the driver refuses it.
static bool tma_map_rows(CUtensorMap *m, const void *base, int B, int T, int heads, int hd, int rows)
{
	PFN_cuTensorMapEncodeTiled_v12000 enc = tma_encoder();
	if (!enc)
		return false;
	const cuuint64_t dim[4] = { (cuuint64_t)hd, (cuuint64_t)heads, (cuuint64_t)T, (cuuint64_t)B };
	const cuuint64_t str[3] = { (cuuint64_t)hd * 2, (cuuint64_t)heads * hd * 2, (cuuint64_t)T * heads * hd * 2 };
	const cuuint32_t box[4] = { 64, 1, (cuuint32_t)rows, 1 }, es[4] = { 1, 1, 1, 1 };
	return enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (void *)base, dim, str, box, es,
		   CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
		   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// TMA map of attn_bwd_ws's lse / D / multiplier rows: fp32 [rows3][T] of row stride tp (a multiple
// of 4: 16-byte strides), boxes of 64 rows x 3 (a head's lse, D and multipliers), columns past
// T read as zeros.
static bool tma_map_vec3(CUtensorMap *m, const float *base, int T, int tp, int64_t rows3)
{
	PFN_cuTensorMapEncodeTiled_v12000 enc = tma_encoder();
	if (!enc)
		return false;
	const cuuint64_t dim[2] = { (cuuint64_t)T, (cuuint64_t)rows3 }, str[1] = { (cuuint64_t)tp * 4 };
	const cuuint32_t box[2] = { 64, 3 }, es[2] = { 1, 1 };
	return enc(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, (void *)base, dim, str, box, es,
		   CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
		   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Hopper forward, warp-specialised (attn_fwd_ws): false (nothing launched) when TMA maps cannot
// be made. PERSIST: one block per SM looping over the tiles.
template <int HD, int NWG, int STG, bool SCHED, bool PERSIST = false>
static bool fwd_ws(cudaStream_t s, void *out, float *lse, const void *q, const void *k, const void *v,
		   int B, int T, int nh, int nkv, float scale)
{
	constexpr int SMEM = attn_smem_ws<HD, NWG, STG, PERSIST>();
	CUtensorMap mq, mk, mv;
	if (!tma_map_rows(&mq, q, B, T, nh, HD, 64 * NWG) || !tma_map_rows(&mk, k, B, T, nkv, HD, 128) ||
	    !tma_map_rows(&mv, v, B, T, nkv, HD, 128))
		return false;
	static bool attr_set = false;
	static int nsm = 0;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_fwd_ws<HD, NWG, STG, SCHED, PERSIST>,
					      cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
		int dev = 0;
		CU_CHECK(cudaGetDevice(&dev));
		CU_CHECK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
		attr_set = true;
	}
	const int nqt = (T + 64 * NWG - 1) / (64 * NWG);
	const int64_t ntiles = (int64_t)B * nh * nqt;
	dim3 grid(B * nh, nqt);
	if (PERSIST) {
		// SW_CUDA_ATTN_WS_BLOCKS=n: at most n blocks (tests: many tiles per block on small shapes)
		const char *e = getenv("SW_CUDA_ATTN_WS_BLOCKS");
		const int64_t cap = e && atoi(e) > 0 ? atoi(e) : nsm;
		grid = dim3((unsigned)(ntiles < cap ? ntiles : cap), 1);
	}
	attn_fwd_ws<HD, NWG, STG, SCHED, PERSIST><<<grid, (NWG + 1) * 128, SMEM, s>>>((bf16 *)out, lse, mq, mk,
		mv, B, T, nh, nkv, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
	return true;
}

static bool fwd_is_ws(const char *f)
{
	return f && (!strcmp(f, "ws") || !strcmp(f, "ws3") || !strcmp(f, "wsn") || !strcmp(f, "wsp"));
}

// Hopper forward. Default: the warp-specialised kernel (attn_fwd_ws, TMA producer, mbarrier
// ring, turn-taking consumers), in the persistent grid at head dim 64 and one block per tile at
// 128 (H100, T = 2048-32768: hd 64 350-485 TFLOP/s, 1.41-1.59x SDPA-flash, against 231-303 for
// the kernels below; hd 128 325-663, where the persistent grid measured a tie;
// docs/perf/attn-notes.md v10-v11). SW_CUDA_ATTN_FWD=ws|ws3|wsn|wsp picks a variant (two
// stages, three, no turn-taking, persistent). Where the driver makes no TMA maps, and with
// SW_CUDA_ATTN_FWD=wg1|wg3|wgp or SW_CUDA_ATTN_WG=2, the earlier kernels: 3 warpgroups (192
// query rows) and the unpipelined kernel at head dim 64, 2 and the pipelined one at 128, KV
// tiles of 128 keys; wg1|wg3 the unpipelined kernel with two or three stages (three: head dim
// 64, three warpgroups only), wgp the pipelined one, SW_CUDA_ATTN_WG=2 two warpgroups at 64.
static bool fwd_sm90(cudaStream_t s, void *out, float *lse, const void *q, const void *k,
		     const void *v, int B, int T, int nh, int nkv, int hd, float scale)
{
	if ((hd != 64 && hd != 128) || !sm90_ready(false))
		return false;
	const char *w = getenv("SW_CUDA_ATTN_WG"), *f = getenv("SW_CUDA_ATTN_FWD");
	const char *ws = f ? f : w && !strcmp(w, "2") ? NULL : hd == 64 ? "wsp" : "ws";
	if (fwd_is_ws(ws)) {
		const bool st3 = !strcmp(ws, "ws3"), sched = strcmp(ws, "wsn") != 0, pers = !strcmp(ws, "wsp");
		bool ok;
		if (hd == 64)
			ok = pers ? fwd_ws<64, 3, 2, true, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
			   : st3 ? fwd_ws<64, 3, 3, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
			   : sched ? fwd_ws<64, 3, 2, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
				   : fwd_ws<64, 3, 2, false>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		else
			ok = pers ? fwd_ws<128, 2, 2, true, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
			   : st3 ? fwd_ws<128, 2, 3, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
			   : sched ? fwd_ws<128, 2, 2, true>(s, out, lse, q, k, v, B, T, nh, nkv, scale)
				   : fwd_ws<128, 2, 2, false>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		if (ok)
			return true;
		static bool told = false;  // a forced variant that cannot run says so, once
		if (f && !told)
			fprintf(stderr, "spillway: SW_CUDA_ATTN_FWD=%s: no TMA descriptor from the driver; "
					"the earlier Hopper forward runs\n", f);
		told = true;
		f = NULL;
	}
	const int nwg = hd == 64 && !(w && !strcmp(w, "2")) ? 3 : 2;
	// unpipelined at head dim 64 (measured faster there: 301 against 293 TFLOP/s, T = 32K)
	const bool v1 = f ? !strcmp(f, "wg1") || !strcmp(f, "wg3") : hd == 64;
	const bool st3 = f && !strcmp(f, "wg3");  // three K/V stages, one barrier per tile
	if (hd == 64 && nwg == 3 && v1 && st3)
		fwd_wg<64, 128, 3, 3>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	else if (hd == 64 && nwg == 3)
		(v1 ? fwd_wg<64, 128, 3> : fwd_wgp<64, 128, 3>)(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	else if (hd == 64)
		(v1 ? fwd_wg<64, 128, 2> : fwd_wgp<64, 128, 2>)(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	else  // 3 warpgroups spill registers at head dim 128
		(v1 ? fwd_wg<128, 128, 2> : fwd_wgp<128, 128, 2>)(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	return true;
}

template <int HD, int NW>
static void fwd_mma(cudaStream_t s, void *out, float *lse, const void *q, const void *k, const void *v,
		    int B, int T, int nh, int nkv, float scale)
{
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_fwd_mma<HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					      attn_smem_fwd<HD, NW>()));
		attr_set = true;
	}
	// Heads vary fastest and the longest (last) query tiles start first: better tail balance.
	dim3 grid(B * nh, (T + 16 * NW - 1) / (16 * NW));
	attn_fwd_mma<HD, NW><<<grid, NW * 32, attn_smem_fwd<HD, NW>(), s>>>((bf16 *)out, lse,
		(const bf16 *)q, (const bf16 *)k, (const bf16 *)v, T, nh, nkv, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

// KV tile of the FlashAttention-2-layout forward: 64 keys (128 would need 128 fp32 score
// registers per thread next to the 32-row output, more than 255 registers hold); 32 at head
// dim 96, where 64 spills registers to local memory (ptxas, sm_90).
template <int HD>
struct fa_cfg { static constexpr int BN = HD == 96 ? 32 : 64; };

template <int HD>
static void fwd_fa(cudaStream_t s, void *out, float *lse, const void *q, const void *k, const void *v,
		   int B, int T, int nh, int nkv, float scale)
{
	constexpr int BN = fa_cfg<HD>::BN;
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_fwd_fa<HD, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					      attn_smem_fa<HD, BN>()));
		attr_set = true;
	}
	dim3 grid(B * nh, (T + FA_BM - 1) / FA_BM);
	attn_fwd_fa<HD, BN><<<grid, FA_NW * 32, attn_smem_fa<HD, BN>(), s>>>((bf16 *)out, lse,
		(const bf16 *)q, (const bf16 *)k, (const bf16 *)v, T, nh, nkv, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

// Forward kernel choice: the FlashAttention-2-layout kernel where its shared memory fits a block
// (H100, A100: 104 KB at head dim 128); else the 16-row-per-warp kernel (8 warps where 128-row tiles fit,
// else 4: RTX 3090/4090, 99 KB per block).
template <int HD>
static void fwd_pick(cudaStream_t s, void *out, float *lse, const void *q, const void *k,
		     const void *v, int B, int T, int nh, int nkv, float scale)
{
	if (!attn_mma16() && attn_smem_optin() >= attn_smem_fa<HD, fa_cfg<HD>::BN>())
		fwd_fa<HD>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	else if (attn_warps(attn_smem_fwd<HD, 8>()) == 8)
		fwd_mma<HD, 8>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
	else
		fwd_mma<HD, 4>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
}

// The fused-dQ arguments of a dK/dV launch: the fixed-point accumulator of units [u0, u0 + nu)
// and the rows' multipliers; acc == NULL for the two-pass path (every unit, dQ separately).
// hs > 1 (Hopper only): the head split's slices and their fp32 dK / dV partials (attn_bwd_wg).
struct fq_args {
	void *acc;
	const float *mq;
	int u0, nu;
	int hs;
	float *pk, *pv;
	const float *v3;  // the rows' lse / D / multipliers for attn_bwd_ws (row stride tp), or NULL
	int tp;
};

template <int HD, int NW, int ST, int AB>
static void dkdv_mma(cudaStream_t s, void *dk, void *dv, const void *dout, const void *q,
		     const void *k, const void *v, const float *lse, const float *Dd, int B, int T, int nh,
		     int nkv, float scale, const fq_args &f)
{
	constexpr int smem = attn_smem_dkdv<HD, NW, ST, AB>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv_mma<HD, NW, ST, AB>,
					      cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
		attr_set = true;
	}
	const int nt = (T + 16 * NW - 1) / (16 * NW);
	attn_bwd_dkdv_mma<HD, NW, ST, AB><<<dim3(AB ? f.nu : B * nkv, nt), NW * 32, smem, s>>>(
		(bf16 *)dk, (bf16 *)dv, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
		(const bf16 *)dout, lse, Dd, T, nh, nkv, scale, scale * LOG2E_F, f.acc, f.mq, f.u0);
	CU_CHECK_LAUNCH();
}

template <int HD, int NW, int ST>
static void dq_mma(cudaStream_t s, void *dq, const void *dout, const void *q, const void *k,
		   const void *v, const float *lse, const float *Dd, int B, int T, int nh, int nkv,
		   float scale)
{
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_dq_mma<HD, NW, ST>,
					      cudaFuncAttributeMaxDynamicSharedMemorySize, attn_smem_bwd<HD, NW, ST>()));
		attr_set = true;
	}
	const int nt = (T + 16 * NW - 1) / (16 * NW);
	attn_bwd_dq_mma<HD, NW, ST><<<dim3(B * nh, nt), NW * 32, attn_smem_bwd<HD, NW, ST>(), s>>>(
		(bf16 *)dq, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)dout, lse, Dd,
		T, nh, nkv, scale, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

// KV tile of the FlashAttention-2-layout dQ kernel: 64 keys up to head dim 80, else 32 (its
// score and dP fragments sit beside the 32-row dQ accumulator in 255 registers).
template <int HD>
struct dq_cfg { static constexpr int BN = 32; };

template <int HD>
static void dq_fa(cudaStream_t s, void *dq, const void *dout, const void *q, const void *k,
		  const void *v, const float *lse, const float *Dd, int B, int T, int nh, int nkv,
		  float scale)
{
	constexpr int BN = dq_cfg<HD>::BN;
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_dq_fa<HD, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					      attn_smem_dq_fa<HD, BN>()));
		attr_set = true;
	}
	attn_bwd_dq_fa<HD, BN><<<dim3(B * nh, (T + FA_BM - 1) / FA_BM), FA_NW * 32, attn_smem_dq_fa<HD, BN>(), s>>>(
		(bf16 *)dq, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)dout, lse, Dd,
		T, nh, nkv, scale, scale * LOG2E_F);
	CU_CHECK_LAUNCH();
}

template <int HD, int AB>
static void dkdv_fa(cudaStream_t s, void *dk, void *dv, const void *dout, const void *q,
		    const void *k, const void *v, const float *lse, const float *Dd, int B, int T, int nh,
		    int nkv, float scale, const fq_args &f)
{
	constexpr int smem = attn_smem_dkdv_fa<HD, AB>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv_fa<HD, AB>,
					      cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
		attr_set = true;
	}
	attn_bwd_dkdv_fa<HD, AB><<<dim3(AB ? f.nu : B * nkv, (T + KV_BN - 1) / KV_BN), 256, smem, s>>>(
		(bf16 *)dk, (bf16 *)dv, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
		(const bf16 *)dout, lse, Dd, T, nh, nkv, scale, scale * LOG2E_F, f.acc, f.mq, f.u0);
	CU_CHECK_LAUNCH();
}

// Tensor-core dK/dV (and, AB != 0, the fused dQ of units [f.u0, f.u0 + f.nu)). Large shared memory
// (H100, A100): head dim 128 with attn_bwd_dkdv_fa when that gives at least two blocks per SM
// (SW_CUDA_ATTN_DKDV_FA=1: always, for the tests), else attn_bwd_dkdv_mma: 8 warps (128 keys
// per block) when that gives at least two blocks per SM, else with 4 warps (64 keys per block:
// twice the blocks, so the causal imbalance -- the first key tile does the most work -- does not
// leave SMs idle; e.g. T=2048, B=1, 8 KV heads is 128 blocks of 128 keys on 132 SMs).
// SW_CUDA_ATTN_DKDV_WARPS=8 forces the 8-warp dK/dV (tests). Consumer GPUs: 4 warps, 1 stage.
// Returns whether it ran the large-shared-memory variants (which pick the dQ pass too).
// Whether the 4 x 2 dK/dV kernel runs for a grid of blocks8 blocks of 128 keys (see below): at
// least two blocks per SM, or one with the fused dQ (fq), whose blocks do the dQ pass's work too.
template <int HD>
static bool dkdv_fa_fits(cuda_impl *ci, int64_t blocks8, bool fq)
{
	const char *e = getenv("SW_CUDA_ATTN_DKDV_WARPS");
	const char *ef = getenv("SW_CUDA_ATTN_DKDV_FA");  // tests: take it on small grids too
	const bool many = blocks8 >= (fq ? 1 : 2) * (int64_t)ci->num_sms || (ef && !strcmp(ef, "1"));
	return HD == 128 && !attn_mma16() && !e && many && attn_warps(attn_smem_dkdv<HD, 8, 2, 4>()) == 8 &&
	       attn_smem_optin() >= attn_smem_dkdv_fa<HD, 8>();
}

template <int HD, int AB>
static bool dkdv_pick(cuda_impl *ci, cudaStream_t s, void *dk, void *dv, const void *dout,
		      const void *q, const void *k, const void *v, const float *lse, const float *Dd,
		      int B, int T, int nh, int nkv, float scale, const fq_args &f)
{
	if (attn_warps(attn_smem_dkdv<HD, 8, 2, AB>()) != 8) {
		dkdv_mma<HD, 4, 1, AB>(s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
		return false;
	}
	const int64_t blocks8 = (int64_t)(AB ? f.nu : B * nkv) * ((T + 127) / 128);
	const char *e = getenv("SW_CUDA_ATTN_DKDV_WARPS");
	if (dkdv_fa_fits<HD>(ci, blocks8, AB != 0))
		dkdv_fa<128, AB>(s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	else if (blocks8 >= 2 * (int64_t)ci->num_sms || (e && !strcmp(e, "8")))
		dkdv_mma<HD, 8, 2, AB>(s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	else
		dkdv_mma<HD, 4, 2, AB>(s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	return true;
}

// Two-pass tensor-core backward: dK/dV, then dQ in its own pass (FlashAttention-2 layout where
// shared memory allows, else 16 rows per warp), which recomputes S and dP.
template <int HD>
static void bwd_mma(cuda_impl *ci, cudaStream_t s, void *dq, void *dk, void *dv, const void *dout,
		    const void *q, const void *k, const void *v, const float *lse, const float *Dd,
		    int B, int T, int nh, int nkv, float scale)
{
	const fq_args none = { NULL, NULL, 0, 0, 1, NULL, NULL, NULL, 0 };
	if (!dkdv_pick<HD, 0>(ci, s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, none))
		dq_mma<HD, 4, 1>(s, dq, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
	else if (!attn_mma16() && attn_smem_optin() >= attn_smem_dq_fa<HD, dq_cfg<HD>::BN>())
		dq_fa<HD>(s, dq, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
	else
		dq_mma<HD, 8, 2>(s, dq, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
}

// The Hopper backward's kernel: the warp-specialised one (attn_bwd_ws, the same bits, 8-16 %
// faster, docs/cuda.md) unless SW_CUDA_ATTN_BWD=wg asks for the block-barrier one (attn_bwd_wg).
static bool bwd_ws_on(void) { return !cuda_env_is("SW_CUDA_ATTN_BWD", "wg"); }

// The warp-specialised Hopper dK/dV (attn_bwd_ws) on dkdv_wg's grid: false (nothing launched)
// where the driver makes no TMA maps.
template <int HD>
static bool dkdv_ws(cudaStream_t s, dim3 grid, int korder, void *dk, void *dv, const void *dout,
		    const void *q, const void *k, const void *v, int B, int T, int nh, int nkv, float scale,
		    const fq_args &f)
{
	CUtensorMap mq, mk, mv, mdo, ml;
	if (!tma_map_rows(&mq, q, B, T, nh, HD, 64) || !tma_map_rows(&mdo, dout, B, T, nh, HD, 64) ||
	    !tma_map_rows(&mk, k, B, T, nkv, HD, 128) || !tma_map_rows(&mv, v, B, T, nkv, HD, 128) ||
	    !tma_map_vec3(&ml, f.v3, T, f.tp, (int64_t)B * nh * 3))
		return false;
	constexpr int smem = attn_smem_bwd_ws<HD>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_ws<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
		attr_set = true;
	}
	attn_bwd_ws<HD><<<grid, 384, smem, s>>>((bf16 *)dk, (bf16 *)dv, mq, mk, mv, mdo, ml, T, nh, nkv,
		scale, scale * LOG2E_F, f.acc, f.u0, korder, f.hs, f.pk, f.pv);
	CU_CHECK_LAUNCH();
	return true;
}

// Hopper dK/dV with the fused dQ (attn_bwd_wg, int32 accumulator) for units [f.u0, f.u0 + f.nu).
template <int HD>
static void dkdv_wg(cudaStream_t s, void *dk, void *dv, const void *dout, const void *q, const void *k,
		    const void *v, const float *lse, const float *Dd, int B, int T, int nh, int nkv,
		    float scale, const fq_args &f)
{
	constexpr int smem = attn_smem_bwd_wg<HD>();
	static bool attr_set = false;
	if (!attr_set) {
		CU_CHECK(cudaFuncSetAttribute(attn_bwd_wg<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
		attr_set = true;
	}
	// KV tiles first (a unit's blocks together: its Q, dO and dQ rows stay in L2) without GQA,
	// where the blocks are short and many; with GQA units first, so the longest blocks (the
	// first KV tiles, G times the work) start first (H100, T = 2048: MHA hd 128 254 against
	// 190 TFLOP/s; GQA 8:1 hd 64 200 against 215). SW_CUDA_ATTN_BWD_ORDER=unit|kv forces one.
	const char *e = getenv("SW_CUDA_ATTN_BWD_ORDER");
	const int korder = e ? !strcmp(e, "kv") : nh == nkv;
	const int nu = f.nu * f.hs;
	const dim3 grid = korder ? dim3((T + 127) / 128, nu) : dim3(nu, (T + 127) / 128);
	// The warp-specialised kernel (the same bits) unless wg was asked for (bwd_ws_on), where the
	// vector preparation wrote the rows' copy for it (f.v3) and the driver makes TMA maps; where
	// not, attn_bwd_wg runs. It says so once where the driver refused the maps, or where
	// SW_CUDA_ATTN_BWD=ws named the kernel (without the copy: the scalar preparation, unaligned
	// rows), so that a test of ws cannot pass on the other kernel.
	if (!(f.v3 && dkdv_ws<HD>(s, grid, korder, dk, dv, dout, q, k, v, B, T, nh, nkv, scale, f))) {
		static bool told = false;
		const bool say = f.v3 || cuda_env_is("SW_CUDA_ATTN_BWD", "ws");
		if (say && !told)
			fprintf(stderr, "spillway: SW_CUDA_ATTN_BWD=ws: %s; attn_bwd_wg runs\n",
				f.v3 ? "no TMA descriptor from the driver"
				     : "needs the vector preparation (not SW_CUDA_ATTN_AUX=scalar; 16-byte aligned rows)");
		told = told || say;
		attn_bwd_wg<HD><<<grid, 256, smem, s>>>((bf16 *)dk,
			(bf16 *)dv, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)dout, lse,
			Dd, T, nh, nkv, scale, scale * LOG2E_F, f.acc, f.mq, f.u0, korder, f.hs, f.pk, f.pv);
		CU_CHECK_LAUNCH();
	}
	if (f.hs > 1) {
		const int64_t pairs = (int64_t)f.nu * T * HD / 2, nb = (pairs + 255) / 256, cap = 4096;
		attn_dkdv_sum<<<(unsigned)(nb < cap ? nb : cap), 256, 0, s>>>((bf16 *)dk, (bf16 *)dv, f.pk,
			f.pv, f.hs, f.u0, f.nu, T, nkv, HD, scale);
		CU_CHECK_LAUNCH();
	}
}

// Query-head slices of the Hopper backward (attn_bwd_wg's head split): the smallest divisor hs of
// the group size G that brings the grid to BWD_HSPLIT_BLOCKS blocks of 128 keys and, at head
// dim 128 from BWD_HSPLIT_HEADS_T tokens, gives a block at most BWD_HSPLIT_HEADS query heads (G
// if none does). Shape constants, not the SM count, so the bits depend on the shapes alone. E.g.
// one 2048-token row, 24/8 heads: 128 blocks, each first-KV-tile block 32 query tiles x 3 heads,
// run as 384 of one head; a 70B layer (64/8) at 4096 and 8192 tokens: 256 and 512 blocks, run as
// 1024 and 2048 of two heads. The cap on heads is measured, not modelled (H100, 70B at 8192:
// 7.6 ms unsplit, 6.6 with two slices, 6.3 with four; at 4096: 2.19, 1.87, 1.72): the tile counts
// give every SM the same work within 1 % unsplit there, so the gain is not balance; a suspect is
// L2, as the blocks of one (unit, slice) that run at once read the same Q / dO tiles fewer steps
// apart when more slices run at once. Where it is off, it was measured to lose or not measured:
// at 2048 tokens with 8 or 16 rows (grids of 512-1024 blocks unsplit) it made the backward
// 23-45 % slower at 24/8 heads of 128 and 32/4 of 64; at head dim 64 from 8192 tokens it gained
// about 1 %, and at 4096 it was not measured (docs/perf.md). The slices' partials take
// hs*T*hd*8 bytes a unit beside the accumulator (acc bytes a unit): the units run in as many
// launches as the scratch (room bytes) needs where each launch still holds BWD_HSPLIT_BLOCKS
// blocks; where not, the next smaller divisor that fits every unit in one launch or keeps that
// many, or none (a budget's choice: more launches of a small grid would cost more than the split
// gains).
// SW_CUDA_ATTN_BWD_HSPLIT=n (n divides G) forces n slices; 1: none.
#define BWD_HSPLIT_BLOCKS 512
#define BWD_HSPLIT_HEADS 2
#define BWD_HSPLIT_HEADS_T 4096
static int bwd_hsplit(int64_t units, int T, int G, int hd, uint64_t acc, uint64_t room)
{
	const char *e = getenv("SW_CUDA_ATTN_BWD_HSPLIT");
	const int forced = e ? atoi(e) : 0;
	if (forced >= 1 && G % forced == 0)
		return forced;
	const int64_t tiles = (T + 127) / 128;
	int hs = 1;
	while (hs < G && (G % hs || units * tiles * hs < BWD_HSPLIT_BLOCKS ||
	                          (T >= BWD_HSPLIT_HEADS_T && hd >= 128 && G / hs > BWD_HSPLIT_HEADS)))
		hs++;
	for (; hs > 1; hs--) {
		const int64_t fit = (int64_t)(room / (acc + 8ull * hs * T * hd));  // units a launch holds
		if (G % hs == 0 && (fit >= units || fit * tiles * hs >= BWD_HSPLIT_BLOCKS))
			break;
	}
	return hs;
}

// Fused backward for units [f.u0, f.u0 + f.nu): acc zeroed, dK/dV with the dQ atomics, dQ
// converted to bf16.
template <int HD, int AB>
static void bwd_fused(cuda_impl *ci, cudaStream_t s, void *dq, void *dk, void *dv, const void *dout,
		      const void *q, const void *k, const void *v, const float *lse, const float *Dd,
		      int B, int T, int nh, int nkv, float scale, const fq_args &f)
{
	const int64_t n = (int64_t)f.nu * fx_rows(T) * (nh / nkv) * HD;
	CU_CHECK(cudaMemsetAsync(f.acc, 0, (size_t)n * AB, s));
	if (AB == 4 && (HD == 64 || HD == 128) && sm90_ready(true))
		dkdv_wg<HD == 64 ? 64 : 128>(s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	else
		dkdv_pick<HD, AB>(ci, s, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	const int64_t nb = (n / 8 + 255) / 256, cap = 16 * (int64_t)ci->num_sms;
	attn_dq_convert<AB><<<(unsigned)(nb < cap ? nb : cap), 256, 0, s>>>((bf16 *)dq, f.acc, f.mq,
		f.u0, f.nu, T, nh, nkv, HD, scale);
	CU_CHECK_LAUNCH();
}

template <int HD>
static void bwd_fused_ab(int ab, cuda_impl *ci, cudaStream_t s, void *dq, void *dk, void *dv,
			 const void *dout, const void *q, const void *k, const void *v, const float *lse,
			 const float *Dd, int B, int T, int nh, int nkv, float scale, const fq_args &f)
{
	if (ab == 8)
		bwd_fused<HD, 8>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
	else
		bwd_fused<HD, 4>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
}

void cuda_attention_fwd(cuda_impl *ci, cudaStream_t s, int isbf, void *out, float *lse,
			const void *q, const void *k, const void *v, int B, int T, int nh, int nkv, int hd)
{
	(void)ci;
	if (B <= 0 || T <= 0)
		return;
	SW_ASSERT(hd <= 32 * ROW_DMAX);
	const float scale = 1.0f / sqrtf((float)hd);
	const void *ptrs[] = { out, q, k, v };
	if (use_mma(isbf, hd, ptrs, 4)) {
		// Hopper: the wgmma kernel (cuda/attn_sm90.cuh) at head dims 64 and 128.
		if (fwd_sm90(s, out, lse, q, k, v, B, T, nh, nkv, hd, scale))
			return;
		if (hd == 64)
			fwd_pick<64>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		else if (hd == 80)
			fwd_pick<80>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		else if (hd == 96)
			fwd_pick<96>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		else
			fwd_pick<128>(s, out, lse, q, k, v, B, T, nh, nkv, scale);
		return;
	}
	const int64_t warps = (int64_t)B * T * nh;
	unsigned g = (unsigned)((warps * 32 + 127) / 128);
	if (isbf)
		attn_fwd_rows<<<g, 128, 0, s>>>((bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k,
						(const bf16 *)v, B, T, nh, nkv, hd, scale);
	else
		attn_fwd_rows<<<g, 128, 0, s>>>((float *)out, lse, (const float *)q, (const float *)k,
						(const float *)v, B, T, nh, nkv, hd, scale);
	CU_CHECK_LAUNCH();
}

// The fused dQ's preparation in vector form at head dim 8 L: the K/V maxima into mx, then D, the
// rows' multipliers and, with v3, the rows' copy for attn_bwd_ws; L = hd / 8 threads a row, up
// to 8 blocks of 256 an SM.
template <int L>
static void bwd_prep_v8(cuda_impl *ci, cudaStream_t s, float *Dd, float *mq, unsigned *mx, int bits,
			const void *k, const void *v, const void *dout, const void *out, const float *lse,
			float *v3, int tp, int B, int T, int nh, int nkv)
{
	const int64_t kr = (int64_t)B * T * nkv, qr = (int64_t)B * T * nh, cap = 8 * (int64_t)ci->num_sms;
	attn_kv_max_v8<L><<<cuda_blocks(kr * L, 256, cap), 256, 0, s>>>(mx, (const bf16 *)k, (const bf16 *)v, kr);
	attn_bwd_dot_v8<L><<<cuda_blocks(qr * L, 256, cap), 256, 0, s>>>(Dd, mq, mx, bits, (const bf16 *)dout,
									 (const bf16 *)out, B, T, nh, lse, v3, tp);
}

// Units (b, kv head) per fused-dQ launch that the op scratch holds after D and the multipliers
// (unit: bytes of one unit's accumulator and, with the Hopper head split in hs slices, its dK/dV
// partials), or 0 for the two-pass path: SW_CUDA_ATTN_DQ=2pass forces it, SW_CUDA_ATTN_DQ_UNITS=n
// caps the units per launch (tests: several launches). The scratch (budget/16, at most 512 MiB:
// docs/cuda.md) holds B*T*nh*hd*4 bytes (int32 accumulator) for one launch (bwd_hsplit splits
// only as far as the partials fit beside it); when it holds less, launches of fewer units must
// still fill the GPU (one block of 128 keys per SM each) or the two-pass path runs.
static int fused_units(cuda_impl *ci, uint64_t fixed, uint64_t unit, int B, int T, int nkv, int hd,
		       int hs)
{
	const char *e = getenv("SW_CUDA_ATTN_DQ"), *eu = getenv("SW_CUDA_ATTN_DQ_UNITS");
	const int64_t units = (int64_t)B * nkv;
	if (e && !strcmp(e, "2pass"))
		return 0;
	// By default only where the 4 x 2 dK/dV kernel runs (head dim 128, large grids): with the
	// 16-row dK/dV kernels (head dim 64, small grids) it measured no faster or slower than the
	// two-pass path (H100: hd 64, T = 32K 202 against 198 TFLOP/s; T = 2K 157 against 168).
	// SW_CUDA_ATTN_DQ=fused takes it wherever the scratch allows (tests).
	const bool force = e && !strcmp(e, "fused");
	const bool wg = (hd == 64 || hd == 128) && sm90_ready(true);  // Hopper: always fused
	if (!force && !wg && !(hd == 128 && dkdv_fa_fits<128>(ci, units * ((T + 127) / 128), true)))
		return 0;
	int64_t per = ci->scr.bytes > fixed ? (int64_t)((ci->scr.bytes - fixed) / unit) : 0;
	if (eu && atoi(eu) > 0 && atoi(eu) < per)
		return atoi(eu);
	if (per >= units)
		return (int)units;
	if (per * ((T + 127) / 128) * hs < (int64_t)ci->num_sms)
		return 0;
	const int64_t launches = (units + per - 1) / per;
	return (int)((units + launches - 1) / launches);  // balanced launches
}

void cuda_attention_bwd(cuda_impl *ci, cudaStream_t s, int isbf, void *dq, void *dk, void *dv,
			const void *dout, const void *q, const void *k, const void *v,
			const void *out, const float *lse, int B, int T, int nh, int nkv, int hd)
{
	if (B <= 0 || T <= 0)
		return;
	SW_ASSERT(hd <= 32 * ROW_DMAX);
	const float scale = 1.0f / sqrtf((float)hd);
	const int64_t warps = (int64_t)B * T * nh;
	const unsigned g = (unsigned)((warps * 32 + 127) / 128);
	const void *ptrs[] = { dq, dk, dv, dout, q, k, v };
	const bool mma = use_mma(isbf, hd, ptrs, 7);
	// The fused dQ's preparation in vector form (attn_kv_max_v8, attn_bwd_dot_v8) at head dims 64
	// and 128 with 16-byte aligned rows (k, v and dout: use_mma); SW_CUDA_ATTN_AUX=scalar: the
	// scalar kernels (the only ones at other head dims).
	const bool vaux = !cuda_env_is("SW_CUDA_ATTN_AUX", "scalar") && (hd == 64 || hd == 128) &&
			  ((uintptr_t)out & 15) == 0;
	const int ab = cuda_env_is("SW_CUDA_ATTN_DQ_BITS", "64") ? 8 : 4;  // int64 accumulator (default int32)
	const bool wg = ab == 4 && (hd == 64 || hd == 128) && sm90_ready(true);
	// Scratch: D, the fixed-point multipliers, the K/V maxima, on the Hopper path with the vector
	// preparation the copy of lse, D and the multipliers that attn_bwd_ws loads (kept whether it
	// runs or not, so that the units per launch and the head split, and so the bits, are the
	// same with either kernel), then the dQ accumulator (fused path).
	const int tp = (T + 3) & ~3;
	const uint64_t rows = ((uint64_t)B * nh * T * 4 + 255) & ~255ull;
	const uint64_t v3b = wg && vaux ? ((uint64_t)B * nh * 3 * tp * 4 + 255) & ~255ull : 0;
	const uint64_t fixed = 2 * rows + 256 + v3b;
	const uint64_t unit_acc = (uint64_t)fx_rows(T) * (nh / nkv) * hd * ab;
	// The Hopper kernel's head split: its dK / dV partials in the scratch beside the accumulator.
	const uint64_t room = ci->scr.bytes > fixed ? ci->scr.bytes - fixed : 0;
	const int hs = mma && wg ? bwd_hsplit((int64_t)B * nkv, T, nh / nkv, hd, unit_acc, room) : 1;
	const uint64_t unit_part = hs > 1 ? 2ull * hs * T * hd * 4 : 0, unit = unit_acc + unit_part;
	const int per = mma ? fused_units(ci, fixed, unit, B, T, nkv, hd, hs) : 0;
	char *scr = cuda_scratch_take(ci, s, per ? fixed + per * unit : (uint64_t)B * nh * T * 4);
	float *Dd = (float *)scr;
	if (per) {
		float *mq = (float *)(scr + rows);
		unsigned *mx = (unsigned *)(scr + 2 * rows);
		// The warp-specialised backward (attn_bwd_ws, bwd_ws_on) loads the rows' lse, D and
		// multipliers from their copy v3.
		float *v3 = v3b && bwd_ws_on() ? (float *)(scr + 2 * rows + 256) : NULL;
		void *acc = scr + fixed;
		const int bits = ab == 8 ? fx_acc<8>::BITS : fx_acc<4>::BITS;
		CU_CHECK(cudaMemsetAsync(mx, 0, 8, s));
		if (vaux) {
			if (hd == 64)
				bwd_prep_v8<8>(ci, s, Dd, mq, mx, bits, k, v, dout, out, lse, v3, tp, B, T, nh, nkv);
			else
				bwd_prep_v8<16>(ci, s, Dd, mq, mx, bits, k, v, dout, out, lse, v3, tp, B, T, nh, nkv);
		} else {
			attn_kv_max<<<2 * ci->num_sms, 256, 0, s>>>(mx, (const bf16 *)k, (const bf16 *)v,
								    (int64_t)B * T * nkv, hd);
			attn_bwd_dot<<<g, 128, 0, s>>>(Dd, mq, mx, bits, (const bf16 *)dout, (const bf16 *)out,
						       B, T, nh, hd);
		}
		CU_CHECK_LAUNCH();
		float *pk = (float *)((char *)acc + per * unit_acc), *pv = pk + (uint64_t)hs * per * T * hd;
		for (int u0 = 0; u0 < B * nkv; u0 += per) {
			const fq_args f = { acc, mq, u0, per < B * nkv - u0 ? per : B * nkv - u0, hs, pk, pv, v3, tp };
			if (hd == 64)
				bwd_fused_ab<64>(ab, ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
			else if (hd == 80)
				bwd_fused_ab<80>(ab, ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
			else if (hd == 96)
				bwd_fused_ab<96>(ab, ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
			else
				bwd_fused_ab<128>(ab, ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale, f);
		}
		return;
	}
	if (isbf)
		attn_bwd_dot<<<g, 128, 0, s>>>(Dd, (float *)NULL, (const unsigned *)NULL, 0,
					       (const bf16 *)dout, (const bf16 *)out, B, T, nh, hd);
	else
		attn_bwd_dot<<<g, 128, 0, s>>>(Dd, (float *)NULL, (const unsigned *)NULL, 0,
					       (const float *)dout, (const float *)out, B, T, nh, hd);
	CU_CHECK_LAUNCH();
	if (mma) {
		if (hd == 64)
			bwd_mma<64>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
		else if (hd == 80)
			bwd_mma<80>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
		else if (hd == 96)
			bwd_mma<96>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
		else
			bwd_mma<128>(ci, s, dq, dk, dv, dout, q, k, v, lse, Dd, B, T, nh, nkv, scale);
		return;
	}
	const unsigned gk = (unsigned)(((int64_t)B * T * nkv * 32 + 127) / 128);
	if (isbf) {
		attn_bwd_dq_rows<<<g, 128, 0, s>>>((bf16 *)dq, (const bf16 *)q, (const bf16 *)k,
			(const bf16 *)v, (const bf16 *)dout, lse, Dd, B, T, nh, nkv, hd, scale);
		attn_bwd_dkdv_rows<<<gk, 128, 0, s>>>((bf16 *)dk, (bf16 *)dv, (const bf16 *)q,
			(const bf16 *)k, (const bf16 *)v, (const bf16 *)dout, lse, Dd, B, T, nh, nkv, hd, scale);
	} else {
		attn_bwd_dq_rows<<<g, 128, 0, s>>>((float *)dq, (const float *)q, (const float *)k,
			(const float *)v, (const float *)dout, lse, Dd, B, T, nh, nkv, hd, scale);
		attn_bwd_dkdv_rows<<<gk, 128, 0, s>>>((float *)dk, (float *)dv, (const float *)q,
			(const float *)k, (const float *)v, (const float *)dout, lse, Dd, B, T, nh, nkv, hd,
			scale);
	}
	CU_CHECK_LAUNCH();
}
