// Hopper (sm_90a) attention kernels, included by cuda/attention.cu after its helpers: warpgroup
// MMA (wgmma) with operands read straight from shared memory through matrix descriptors
// (128-byte swizzled tiles) or, for P and dS, from registers; a 64 x N x 16 product per
// instruction instead of mma.sync's 16 x 8 x 16, issued asynchronously. No ldmatrix.
//
// The code exists only in nvcc's sm_90a pass (wgmma is an sm_90a feature: the Makefile builds
// sm_90 as sm_90a); every other architecture compiles empty kernels that are never launched
// (attn_sm90_probe tells the host which code the device loaded).
//
// Layout of every tile: HD/64 column blocks of [rows][64] bf16 (128 bytes a row), the 16-byte
// chunk c of row r stored at chunk c ^ (r & 7) -- the 128-byte swizzle -- each block starting
// on a 1024-byte boundary. As an operand whose reduction dimension is the head dimension
// (K-major: Q, K in S = Q K^T, K and V in the backward's S^T and dP^T) a k-step of 16 columns is
// the block's start + 32 bytes per step; as one whose reduction dimension is the rows (N-major:
// V in O += P V, dO and Q in dV += P^T dO and dK += dS^T Q, K in dQ += dS K) a k-step of 16
// rows is + 2048 bytes, the leading byte offset the next column block and the stride byte
// offset the next 8 rows (1024).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SW_WGMMA 1
#endif
#include <cuda.h>  // CUtensorMap (the TMA descriptor type; no driver library linked)

__device__ int attn_sm90_flag;  // the probe's answer (a module variable: no allocation)

__global__ void attn_sm90_probe(void)
{
#ifdef SW_WGMMA
	attn_sm90_flag = 1;
#else
	attn_sm90_flag = 0;
#endif
}

#ifdef SW_WGMMA
// 128-byte-swizzle matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address,
// leading and stride byte offsets, each >> 4; mode 1 (bits 62-63) = 128-byte swizzle. Tiles
// start on 1024-byte boundaries (the swizzle's period), so the base offset is 0.
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
	return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
	       ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
// Keeps the compiler from moving reads or writes of a register across an asynchronous MMA.
__device__ __forceinline__ void reg_fence(float &x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void reg_fence(uint32_t &x) { asm volatile("" : "+r"(x)::"memory"); }
// ... of every element of an accumulator array, or of A fragments (N of 4 registers)
template <int N>
__device__ __forceinline__ void reg_fence(float (&a)[N])
{
#pragma unroll
	for (int i = 0; i < N; i++)
		reg_fence(a[i]);
}
template <int N>
__device__ __forceinline__ void reg_fence(uint32_t (&a)[N][4])
{
#pragma unroll
	for (int i = 0; i < N; i++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			reg_fence(a[i][e]);
}
// Shared-memory writes of the generic proxy (cp.async, st.shared) made visible to wgmma's
// reads (the async proxy).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void cp_async16a(uint32_t dst, const void *src, bool valid)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

// Rows [row0, row0 + ROWS) of a (T, stride) bf16 matrix into the swizzled tile at dst; rows >= T
// are zero-filled. NTH threads share the copy.
template <int HD, int ROWS, int NTH>
__device__ __forceinline__ void load_sw(uint32_t dst, const bf16 *src, int64_t stride, int row0, int T_)
{
	constexpr int CPR = HD / 8;
#pragma unroll 4
	for (int c = threadIdx.x; c < ROWS * CPR; c += NTH) {
		const int r = c / CPR, cc = c % CPR, row = row0 + r;
		const bool ok = row < T_;
		const uint32_t d = dst + (cc >> 3) * (ROWS * 128) + r * 128 + (((cc & 7) ^ (r & 7)) << 4);
		cp_async16a(d, src + (int64_t)(ok ? row : 0) * stride + cc * 8, ok);
	}
}

// wgmma wrappers, bf16 x bf16 -> fp32, 64 x N x 16. wg_ss*: A and B from shared memory (TA,
// TB: 1 = M-/N-major, 0 = K-major), acc = 0 overwrites d; wg_rs*: A (four bf16x2 registers per
// thread, the m16n8k16 A layout within each warp's 16 rows) from registers, B N-major,
// accumulating.
template <int TA, int TB>
__device__ __forceinline__ void wg_ss32(float d[16], uint64_t da, uint64_t db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {"
		     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
		     "}, %16, %17, p, 1, 1, %19, %20;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
		     : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wg_ss64(float d[32], uint64_t da, uint64_t db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
		     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
		     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		     "}, %32, %33, p, 1, 1, %35, %36;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
		       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
		       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
		     : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

template <int TA, int TB>
__device__ __forceinline__ void wg_ss128(float d[64], uint64_t da, uint64_t db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
		     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
		     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
		     "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
		     "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		     "}, %64, %65, p, 1, 1, %67, %68;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
		       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
		       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
		       "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
		       "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
		       "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
		       "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		     : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

__device__ __forceinline__ void wg_rs64(float d[32], const uint32_t a[4], uint64_t db)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
		     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
		     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		     "}, {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
		       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
		       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

__device__ __forceinline__ void wg_rs128(float d[64], const uint32_t a[4], uint64_t db)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
		     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
		     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
		     "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
		     "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		     "}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
		       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
		       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
		       "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
		       "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
		       "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
		       "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}


template <int N, int TA, int TB>
__device__ __forceinline__ void wg_ss(float *d, uint64_t da, uint64_t db, int acc)
{
	if constexpr (N == 32)
		wg_ss32<TA, TB>(d, da, db, acc);
	else if constexpr (N == 64)
		wg_ss64<TA, TB>(d, da, db, acc);
	else
		wg_ss128<TA, TB>(d, da, db, acc);
}
template <int N>
__device__ __forceinline__ void wg_rs(float *d, const uint32_t a[4], uint64_t db)
{
	if constexpr (N == 64)
		wg_rs64(d, a, db);
	else
		wg_rs128(d, a, db);
}
#endif  // SW_WGMMA

// ---------------------------------------------------------------- forward
// Block: NWG warpgroups own 64 query rows apiece (BM = 64 * NWG); KV tiles of BN keys
// double-buffered with cp.async (every thread loads: no producer warp, no TMA). Online softmax
// in the log2 domain as attn_fwd_fa: the accumulator of a wgmma m64nN is, per warp, N/8 mma.sync
// m16n8 accumulators, so the masking, softmax and output code is the same, and P's accumulator
// is the A operand of O += P V after conversion to bf16.
// STG stages of K and V: with 3, the stage tile j + 1 loads into was last read in iteration j - 2,
// which every thread has left once past iteration j - 1's barrier: one barrier per tile, not two.
template <int HD, int BN, int NWG, int STG>
static constexpr int attn_smem_wg() { return (64 * NWG + 2 * STG * BN) * HD * 2 + 1024; }

template <int HD, int BN, int NWG, int STG>
__global__ void __launch_bounds__(NWG * 128, 1) attn_fwd_wg(bf16 *out, float *lse, const bf16 *q,
		const bf16 *k, const bf16 *v, int T_, int nh, int nkv, float scale_log2)
{
#ifdef SW_WGMMA
	constexpr int BM = 64 * NWG, NTH = NWG * 128, NT = BN / 8, KD = HD / 16;
	constexpr uint32_t QB = BM * HD * 2, KVB = BN * HD * 2;  // bytes of the Q tile, of a K or V stage
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t Qs = (smem_u32(smem_raw) + 1023) & ~1023u, Ks = Qs + QB, Vs = Ks + STG * KVB;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const bf16 *qb = q + (int64_t)b * T_ * qs + h * HD;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	const int q0 = qt * BM, w0 = q0 + wg * 64, r0 = w0 + warp * 16 + g;
	int nkt = (q0 + BM - 1) / BN + 1;
	if (nkt > (T_ + BN - 1) / BN)
		nkt = (T_ + BN - 1) / BN;

	load_sw<HD, BM, NTH>(Qs, qb, qs, q0, T_);
	load_sw<HD, BN, NTH>(Ks, kb, ks, 0, T_);
	load_sw<HD, BN, NTH>(Vs, vb, ks, 0, T_);
	cp_async_commit();

	float o[HD / 2];
#pragma unroll
	for (int i = 0; i < HD / 2; i++)
		o[i] = 0.f;
	float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.f, 0.f };
	const uint32_t qw = Qs + wg * 64 * 128;  // this warpgroup's 64 rows in each column block
	for (int j = 0; j < nkt; j++) {
		const int buf = j % STG, nbuf = (j + 1) % STG;
		if (j + 1 < nkt) {
			load_sw<HD, BN, NTH>(Ks + nbuf * KVB, kb, ks, (j + 1) * BN, T_);
			load_sw<HD, BN, NTH>(Vs + nbuf * KVB, vb, ks, (j + 1) * BN, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		fence_proxy_async();
		__syncthreads();
		if (j * BN <= w0 + 63) {  // else every key of the tile is after this warpgroup's rows
			const uint32_t kt = Ks + buf * KVB, vt = Vs + buf * KVB;
			float s[BN / 2];
			wg_fence();
#pragma unroll
			for (int kk = 0; kk < KD; kk++)
				wg_ss<BN, 0, 0>(s, wg_desc(qw + (kk >> 2) * (BM * 128) + (kk & 3) * 32, 16, 1024),
					  wg_desc(kt + (kk >> 2) * (BN * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
			wg_commit();
			wg_wait0();
			reg_fence(s);
			const bool mask = j * BN + BN - 1 > w0 + warp * 16;
			float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
			for (int nt = 0; nt < NT; nt++)
#pragma unroll
				for (int e = 0; e < 4; e++) {
					if (mask && j * BN + nt * 8 + t4 * 2 + (e & 1) > r0 + (e >> 1) * 8)
						s[nt * 4 + e] = -INFINITY;
					mx[e >> 1] = fmaxf(mx[e >> 1], s[nt * 4 + e]);
				}
			float mref[2], ls[2] = { 0.f, 0.f };
#pragma unroll
			for (int r = 0; r < 2; r++) {
				mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
				mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
				const float mn = fmaxf(mrow[r], mx[r] * scale_log2);
				mref[r] = mn == -INFINITY ? 0.f : mn;  // a row with nothing seen yet
				const float corr = ex2f(mrow[r] - mref[r]);
				mrow[r] = mn;
				lrow[r] *= corr;
#pragma unroll
				for (int d = 0; d < HD / 8; d++) {
					o[d * 4 + 2 * r] *= corr;
					o[d * 4 + 2 * r + 1] *= corr;
				}
			}
			uint32_t pa[BN / 16][4];
#pragma unroll
			for (int kk = 0; kk < BN / 16; kk++) {
				float p[8];
#pragma unroll
				for (int e = 0; e < 8; e++) {
					p[e] = ex2f(fmaf(s[kk * 8 + e], scale_log2, -mref[(e >> 1) & 1]));
					ls[(e >> 1) & 1] += p[e];
				}
				pa[kk][0] = pack_bf16(p[0], p[1]);
				pa[kk][1] = pack_bf16(p[2], p[3]);
				pa[kk][2] = pack_bf16(p[4], p[5]);
				pa[kk][3] = pack_bf16(p[6], p[7]);
			}
			lrow[0] += ls[0];
			lrow[1] += ls[1];
			// O += P V: V's tile is [keys][64] per column block, i.e. N-major for this product;
			// leading byte offset = the next 64 columns (another column block), stride byte
			// offset = the next 8 keys.
			reg_fence(o);
			wg_fence();
#pragma unroll
			for (int kk = 0; kk < BN / 16; kk++)
				wg_rs<HD>(o, pa[kk], wg_desc(vt + kk * 16 * 128, BN * 128, 1024));
			wg_commit();
			wg_wait0();
			reg_fence(o);
			reg_fence(pa);
		}
		if (STG == 2)
			__syncthreads();  // this stage is free for the loads of tile j + 2
	}
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float l = lrow[r];
		l += __shfl_xor_sync(0xffffffffu, l, 1);
		l += __shfl_xor_sync(0xffffffffu, l, 2);
		const int row = r0 + r * 8;
		if (row >= T_)
			continue;
		const float inv = 1.0f / l;
		bf16 *op = out + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			*(uint32_t *)(op + d * 8) = pack_bf16(o[d * 4 + 2 * r] * inv, o[d * 4 + 2 * r + 1] * inv);
		if (t4 == 0)
			lse[((int64_t)b * nh + h) * T_ + row] = (mrow[r] + log2f(l)) * LN2_F;
	}
#else
	__trap();   // no wgmma in this build: the dispatch must never launch it here
	(void)out, (void)lse, (void)q, (void)k, (void)v, (void)T_, (void)nh, (void)nkv, (void)scale_log2;
#endif
}


// Pipelined forward (head dim 128 where attn_fwd_ws cannot run): a warpgroup's softmax of tile
// j runs while its O += P V of tile j - 1 is still in the tensor cores (FlashAttention-3's
// intra-warpgroup overlap). Per
// tile j: issue S = Q K_j^T, issue O += P_{j-1} V_{j-1}, wait for S only, softmax (row max,
// exponentials, sums), wait for the P V product, rescale O, convert P_j. V has three stages
// (tile j - 1 is read while tile j + 1 loads), K two.
template <int HD, int BN, int NWG>
static constexpr int attn_smem_wgp() { return (64 * NWG + 5 * BN) * HD * 2 + 1024; }

template <int HD, int BN, int NWG>
__global__ void __launch_bounds__(NWG * 128, 1) attn_fwd_wgp(bf16 *out, float *lse, const bf16 *q,
		const bf16 *k, const bf16 *v, int T_, int nh, int nkv, float scale_log2)
{
#ifdef SW_WGMMA
	constexpr int BM = 64 * NWG, NTH = NWG * 128, NT = BN / 8, KD = HD / 16;
	constexpr uint32_t QB = BM * HD * 2, KVB = BN * HD * 2;  // bytes of the Q tile, of a K or V stage
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t Qs = (smem_u32(smem_raw) + 1023) & ~1023u, Ks = Qs + QB, Vs = Ks + 2 * KVB;
	const int nqt = (T_ + BM - 1) / BM, qt = nqt - 1 - blockIdx.y;
	const int b = blockIdx.x / nh, h = blockIdx.x % nh, kvh = h / (nh / nkv);
	const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const bf16 *qb = q + (int64_t)b * T_ * qs + h * HD;
	const bf16 *kb = k + (int64_t)b * T_ * ks + kvh * HD, *vb = v + (int64_t)b * T_ * ks + kvh * HD;
	const int q0 = qt * BM, w0 = q0 + wg * 64, r0 = w0 + warp * 16 + g;
	int nkt = (q0 + BM - 1) / BN + 1;
	if (nkt > (T_ + BN - 1) / BN)
		nkt = (T_ + BN - 1) / BN;

	load_sw<HD, BM, NTH>(Qs, qb, qs, q0, T_);
	load_sw<HD, BN, NTH>(Ks, kb, ks, 0, T_);
	load_sw<HD, BN, NTH>(Vs, vb, ks, 0, T_);
	cp_async_commit();

	float o[HD / 2], s[BN / 2], corr[2];
	uint32_t pa[BN / 16][4];
#pragma unroll
	for (int i = 0; i < HD / 2; i++)
		o[i] = 0.f;
	float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.f, 0.f };
	const uint32_t qw = Qs + wg * 64 * 128;  // this warpgroup's 64 rows in each column block
	// Every warpgroup computes every tile (a tile wholly after its rows gives P = 0 and leaves
	// O, m and l as they were): no wgmma under a branch on the warpgroup, which would make ptxas
	// serialize them. The first tile is peeled so the loop body issues both products always.
	auto stage_in = [&](int j) {  // loads of tile j + 1, tile j resident, all threads past it
		if (j + 1 < nkt) {
			load_sw<HD, BN, NTH>(Ks + ((j + 1) & 1) * KVB, kb, ks, (j + 1) * BN, T_);
			load_sw<HD, BN, NTH>(Vs + ((j + 1) % 3) * KVB, vb, ks, (j + 1) * BN, T_);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		fence_proxy_async();
		__syncthreads();
	};
	auto issue_s = [&](int j) {
		const uint32_t kt = Ks + (j & 1) * KVB;
#pragma unroll
		for (int kk = 0; kk < KD; kk++)
			wg_ss<BN, 0, 0>(s, wg_desc(qw + (kk >> 2) * (BM * 128) + (kk & 3) * 32, 16, 1024),
					wg_desc(kt + (kk >> 2) * (BN * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
		wg_commit();
	};
	auto issue_pv = [&](int j) {
		const uint32_t vt = Vs + (j % 3) * KVB;
#pragma unroll
		for (int kk = 0; kk < BN / 16; kk++)
			wg_rs<HD>(o, pa[kk], wg_desc(vt + kk * 16 * 128, BN * 128, 1024));
		wg_commit();
	};
	auto softmax = [&](int j) {  // s -> exponentials, row statistics, O's correction factors
		reg_fence(s);
		const bool mask = j * BN + BN - 1 > w0 + warp * 16;
		float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
		for (int nt = 0; nt < NT; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				if (mask && j * BN + nt * 8 + t4 * 2 + (e & 1) > r0 + (e >> 1) * 8)
					s[nt * 4 + e] = -INFINITY;
				mx[e >> 1] = fmaxf(mx[e >> 1], s[nt * 4 + e]);
			}
		float mref[2], ls[2] = { 0.f, 0.f };
#pragma unroll
		for (int r = 0; r < 2; r++) {
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			const float mn = fmaxf(mrow[r], mx[r] * scale_log2);
			mref[r] = mn == -INFINITY ? 0.f : mn;  // a row with nothing seen yet
			corr[r] = ex2f(mrow[r] - mref[r]);
			mrow[r] = mn;
		}
#pragma unroll
		for (int i = 0; i < BN / 2; i++) {
			s[i] = ex2f(fmaf(s[i], scale_log2, -mref[(i >> 1) & 1]));
			ls[(i >> 1) & 1] += s[i];
		}
		lrow[0] = lrow[0] * corr[0] + ls[0];
		lrow[1] = lrow[1] * corr[1] + ls[1];
	};
	auto rescale_pack = [&]() {  // after the previous P V: O *= corr, P to bf16 A fragments
		reg_fence(o);
		reg_fence(pa);
#pragma unroll
		for (int d = 0; d < HD / 8; d++) {
			o[d * 4] *= corr[0];
			o[d * 4 + 1] *= corr[0];
			o[d * 4 + 2] *= corr[1];
			o[d * 4 + 3] *= corr[1];
		}
#pragma unroll
		for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				pa[kk][e] = pack_bf16(s[kk * 8 + e * 2], s[kk * 8 + e * 2 + 1]);
	};
	stage_in(0);
	wg_fence();
	issue_s(0);
	wg_wait0();
	softmax(0);
	rescale_pack();
	__syncthreads();
	for (int j = 1; j < nkt; j++) {
		stage_in(j);
		wg_fence();
		issue_s(j);
		issue_pv(j - 1);
		wg_wait1();  // S of tile j; O += P V of tile j - 1 still running
		softmax(j);
		wg_wait0();
		rescale_pack();
		__syncthreads();  // stages free for the loads of the next tiles
	}
	wg_fence();
	issue_pv(nkt - 1);
	wg_wait0();
	reg_fence(o);
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float l = lrow[r];
		l += __shfl_xor_sync(0xffffffffu, l, 1);
		l += __shfl_xor_sync(0xffffffffu, l, 2);
		const int row = r0 + r * 8;
		if (row >= T_)
			continue;
		const float inv = 1.0f / l;
		bf16 *op = out + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++)
			*(uint32_t *)(op + d * 8) = pack_bf16(o[d * 4 + 2 * r] * inv, o[d * 4 + 2 * r + 1] * inv);
		if (t4 == 0)
			lse[((int64_t)b * nh + h) * T_ + row] = (mrow[r] + log2f(l)) * LN2_F;
	}
#else
	__trap();   // no wgmma in this build: the dispatch must never launch it here
	(void)out, (void)lse, (void)q, (void)k, (void)v, (void)T_, (void)nh, (void)nkv, (void)scale_log2;
#endif
}

// ---------------------------------------------------------------- warp-specialised forward
// attn_fwd_ws (the default; SW_CUDA_ATTN_FWD=ws|ws3|wsn|wsp): FlashAttention-3's structure.
// One producer warpgroup, of which one thread issues TMA tile loads (cp.async.bulk.tensor, 128-byte swizzle:
// the same tile layout as above) into a ring of STG K and STG V stages, each with a "full"
// mbarrier (transaction bytes) and an "empty" one (one arrival per consumer warpgroup); NWG
// consumer warpgroups of 64 query rows run the pipelined loop of attn_fwd_wgp (issue S_j and
// O += P_{j-1} V_{j-1}, softmax of j under the P V product) with no block barrier, so they
// drift apart; with SCHED they take turns issuing their products (named barriers 1..NWG, the
// next warpgroup's released after a warpgroup issued), so one's softmax runs while another's
// products occupy the tensor cores. setmaxnreg moves registers from the producer (24 a thread)
// to the consumers (160 with three, 240 with two). V tile j - 1 loads after K tile j (it is
// needed later). Deterministic: every sum has the order of attn_fwd_wgp.
#ifdef SW_WGMMA
__device__ __forceinline__ void mb_init(uint32_t bar, uint32_t count)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mb_arrive(uint32_t bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrive and add `bytes` to the transaction count the phase waits for (the TMA's completion).
__device__ __forceinline__ void mb_expect_tx(uint32_t bar, uint32_t bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// Wait until the phase of parity `parity` has completed (parity 1 before any: at once).
__device__ __forceinline__ void mb_wait(uint32_t bar, uint32_t parity)
{
	uint32_t done;
	do {
		asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
			     "selp.u32 %0, 1, 0, p;\n}\n"
			     : "=r"(done)
			     : "r"(bar), "r"(parity)
			     : "memory");
	} while (!done);
}
// One box (64 columns x the map's rows) of a 4-d (hd, heads, T, B) tensor map into dst.
__device__ __forceinline__ void tma_load4(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2,
					  int c3, uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
		     " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
		     "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
		     : "memory");
}
// One box of a 2-d tensor map (attn_bwd_ws's lse / D / multiplier rows) into dst.
__device__ __forceinline__ void tma_load2(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
		     " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
		     "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
		     : "memory");
}
__device__ __forceinline__ void named_sync(int id, int n) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void named_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
template <int N>
__device__ __forceinline__ void regs_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N>
__device__ __forceinline__ void regs_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }
#endif  // SW_WGMMA

// Q tile (two with PERSIST), STG K and STG V stages of 128 keys, the mbarriers (per Q buffer
// full/empty; per stage K full/empty, V full/empty), the 1024-byte alignment.
template <int HD, int NWG, int STG, bool PERSIST>
static constexpr int attn_smem_ws() { return ((PERSIST ? 2 : 1) * 64 * NWG + 2 * STG * 128) * HD * 2 + 128 + 1024; }

// PERSIST: a grid of one block per SM, each block taking the (query tile, head, batch row) tiles
// n * G + i (i = blockIdx.x, G = gridDim.x; i mirrored in odd rounds, so that the longest tiles,
// which come first, spread evenly), the loads of the next tile (its Q in the second buffer)
// overlapping the end of the current one; else one tile per block, as the other kernels.
template <int HD, int NWG, int STG, bool SCHED, bool PERSIST>
__global__ void __launch_bounds__((NWG + 1) * 128, 1) attn_fwd_ws(bf16 *out, float *lse,
		const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
		const __grid_constant__ CUtensorMap tv, int B, int T_, int nh, int nkv, float scale_log2)
{
#ifdef SW_WGMMA
	constexpr int BN = 128, BM = 64 * NWG, NT = BN / 8, KD = HD / 16, NC = NWG * 128;
	constexpr int RC = NWG == 3 ? 160 : 240, RP = 24;  // registers: consumer, producer threads
	static_assert(NWG == 2 || NWG == 3, "two or three consumer warpgroups");
	static_assert(STG >= 2 && STG <= 3, "two or three stages");
	constexpr uint32_t QB = BM * HD * 2, KVB = BN * HD * 2;  // bytes of the Q tile, of a K or V stage
	constexpr int NQB = PERSIST ? 2 : 1;                      // Q buffers
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t Qs = (smem_u32(smem_raw) + 1023) & ~1023u, Ks = Qs + NQB * QB, Vs = Ks + STG * KVB;
	const uint32_t bb = Vs + STG * KVB;  // Q buffer x: full, empty; stage st: K full/empty, V full/empty
	auto bqf = [&](int x) { return bb + x * 16; };
	auto bqe = [&](int x) { return bb + 8 + x * 16; };
	auto bkf = [&](int st) { return bb + 32 + st * 32; };
	auto bke = [&](int st) { return bb + 40 + st * 32; };
	auto bvf = [&](int st) { return bb + 48 + st * 32; };
	auto bve = [&](int st) { return bb + 56 + st * 32; };
	const int nqt = (T_ + BM - 1) / BM, nbh = B * nh;
	auto tile_at = [&](int n) {  // the block's n-th tile (index into longest-first order), or -1
		if (!PERSIST)
			return n == 0 ? (int)(blockIdx.y * gridDim.x + blockIdx.x) : -1;
		const int G = gridDim.x, t = n * G + ((n & 1) ? G - 1 - (int)blockIdx.x : (int)blockIdx.x);
		return t < nbh * nqt ? t : -1;
	};
	auto tile_q0 = [&](int t) { return (nqt - 1 - t / nbh) * BM; };
	auto tile_nkt = [&](int q0) {
		const int n = (q0 + BM - 1) / BN + 1, m = (T_ + BN - 1) / BN;
		return n < m ? n : m;
	};
	// Warp-uniform to the compiler (a shuffle): wgmma under a branch it cannot prove uniform
	// is serialised.
	const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 7), 0);
	if (threadIdx.x == 0) {
		for (int x = 0; x < NQB; x++) {
			mb_init(bqf(x), 1);
			mb_init(bqe(x), NWG);
		}
		for (int st = 0; st < STG; st++) {
			mb_init(bkf(st), 1);
			mb_init(bke(st), NWG);
			mb_init(bvf(st), 1);
			mb_init(bve(st), NWG);
		}
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	__syncthreads();

	if (wg == NWG) {  // producer
		regs_dec<RP>();
		if (threadIdx.x == NC) {
			auto load_q = [&](int n) {  // Q of the block's n-th tile into buffer n % 2
				const int t = tile_at(n);
				if (t < 0)
					return;
				const int bh = t % nbh, x = n % NQB;
				if (n >= NQB)  // the consumers' release of tile n - 2
					mb_wait(bqe(x), ((n / NQB) & 1) ^ 1);
				mb_expect_tx(bqf(x), QB);
#pragma unroll
				for (int c = 0; c < HD / 64; c++)
					tma_load4(Qs + x * QB + c * (BM * 128), &tq, c * 64, bh % nh, tile_q0(t), bh / nh, bqf(x));
			};
			int kc = 0;  // K/V tiles loaded so far (the ring position)
			load_q(0);
			for (int n = 0, t; (t = tile_at(n)) >= 0; n++) {
				const int bh = t % nbh, b = bh / nh, kvh = (bh % nh) / (nh / nkv), nkt = tile_nkt(tile_q0(t));
				auto load = [&](bool isv, int j) {  // K or V tile j of this tile, ring slot kc + j
					const int i = kc + j, st = i % STG;
					const uint32_t full = isv ? bvf(st) : bkf(st), dst = (isv ? Vs : Ks) + st * KVB;
					if (i >= STG)  // the consumers' release of slot i - STG
						mb_wait(isv ? bve(st) : bke(st), ((i / STG) & 1) ^ 1);
					mb_expect_tx(full, KVB);
#pragma unroll
					for (int c = 0; c < HD / 64; c++)
						tma_load4(dst + c * (BN * 128), isv ? &tv : &tk, c * 64, kvh, j * BN, b, full);
				};
				load(false, 0);
				for (int j = 1; j < nkt; j++) {
					load(false, j);
					load(true, j - 1);
					if (PERSIST && j == 1)
						load_q(n + 1);  // a tile ahead, once this one's first tiles are on their way
				}
				load(true, nkt - 1);
				if (PERSIST && nkt == 1)
					load_q(n + 1);
				kc += nkt;
			}
		}
		return;
	}

	regs_inc<RC>();
	const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD;
	const bool leader = (threadIdx.x & 127) == 0;  // releases buffers for its warpgroup
	float o[HD / 2], s[BN / 2], corr[2] = { 1.f, 1.f };
	float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.f, 0.f };  // reset per tile too
	uint32_t pa[BN / 16][4];
	int w0 = 0, r0 = 0;   // the current tile's first row of this warpgroup, of this thread
	uint32_t qw = Qs;     // the current Q buffer's 64 rows of this warpgroup
	// Every warpgroup computes every tile of the block (one past its rows gives P = 0).
	auto issue_s = [&](int st) {
		const uint32_t kt = Ks + st * KVB;
#pragma unroll
		for (int kk = 0; kk < KD; kk++)
			wg_ss<BN, 0, 0>(s, wg_desc(qw + (kk >> 2) * (BM * 128) + (kk & 3) * 32, 16, 1024),
					wg_desc(kt + (kk >> 2) * (BN * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
		wg_commit();
	};
	auto issue_pv = [&](int st) {
		const uint32_t vt = Vs + st * KVB;
#pragma unroll
		for (int kk = 0; kk < BN / 16; kk++)
			wg_rs<HD>(o, pa[kk], wg_desc(vt + kk * 16 * 128, BN * 128, 1024));
		wg_commit();
	};
	auto softmax = [&](int j) {  // s -> exponentials, row statistics, O's correction factors
		reg_fence(s);
		const bool mask = j * BN + BN - 1 > w0 + warp * 16;
		float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
		for (int nt = 0; nt < NT; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				if (mask && j * BN + nt * 8 + t4 * 2 + (e & 1) > r0 + (e >> 1) * 8)
					s[nt * 4 + e] = -INFINITY;
				mx[e >> 1] = fmaxf(mx[e >> 1], s[nt * 4 + e]);
			}
		float mref[2], ls[2] = { 0.f, 0.f };
#pragma unroll
		for (int r = 0; r < 2; r++) {
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
			mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
			const float mn = fmaxf(mrow[r], mx[r] * scale_log2);
			mref[r] = mn == -INFINITY ? 0.f : mn;  // a row with nothing seen yet
			corr[r] = ex2f(mrow[r] - mref[r]);
			mrow[r] = mn;
		}
#pragma unroll
		for (int i = 0; i < BN / 2; i++) {
			s[i] = ex2f(fmaf(s[i], scale_log2, -mref[(i >> 1) & 1]));
			ls[(i >> 1) & 1] += s[i];
		}
		lrow[0] = lrow[0] * corr[0] + ls[0];
		lrow[1] = lrow[1] * corr[1] + ls[1];
	};
	auto rescale_pack = [&]() {  // after the previous P V: O *= corr, P to bf16 A fragments
		reg_fence(o);
		reg_fence(pa);
#pragma unroll
		for (int d = 0; d < HD / 8; d++) {
			o[d * 4] *= corr[0];
			o[d * 4 + 1] *= corr[0];
			o[d * 4 + 2] *= corr[1];
			o[d * 4 + 3] *= corr[1];
		}
#pragma unroll
		for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				pa[kk][e] = pack_bf16(s[kk * 8 + e * 2], s[kk * 8 + e * 2 + 1]);
	};
	// Turn-taking over the whole sequence of the block's steps (tile j >= 1 of every work tile):
	// warpgroup 0 starts; the last warpgroup's last step hands over to nobody.
	int steps = 0;
	if (SCHED) {
		for (int n = 0, t; (t = tile_at(n)) >= 0; n++)
			steps += tile_nkt(tile_q0(t)) - 1;
		if (wg == 0 && steps > 0)
			named_arrive(1, 256);
	}
	int kc = 0;  // K/V tiles consumed so far (the ring position)
	for (int n = 0, t; (t = tile_at(n)) >= 0; n++) {
		const int bh = t % nbh, b = bh / nh, h = bh % nh, q0 = tile_q0(t), nkt = tile_nkt(q0);
		w0 = q0 + wg * 64;
		r0 = w0 + warp * 16 + g;
		qw = Qs + (n % NQB) * QB + wg * 64 * 128;
#pragma unroll
		for (int i = 0; i < HD / 2; i++)
			o[i] = 0.f;
		mrow[0] = mrow[1] = -INFINITY;
		lrow[0] = lrow[1] = 0.f;
		mb_wait(bqf(n % NQB), (n / NQB) & 1);
		mb_wait(bkf(kc % STG), (kc / STG) & 1);
		wg_fence();
		issue_s(kc % STG);
		wg_wait0();
		if (leader)
			mb_arrive(bke(kc % STG));
		softmax(0);
		rescale_pack();
		for (int j = 1; j < nkt; j++) {
			const int i = kc + j, st = i % STG, sp = (i - 1) % STG;
			// Both tiles resident before the products (V j - 1 was requested right after K j;
			// a wait loop between the two products makes ptxas insert a register fence there).
			mb_wait(bkf(st), (i / STG) & 1);
			mb_wait(bvf(sp), ((i - 1) / STG) & 1);
			if (SCHED)
				named_sync(1 + wg, 256);  // this warpgroup's turn to issue
			wg_fence();
			issue_s(st);
			issue_pv(sp);
			if (SCHED && !(wg == NWG - 1 && --steps == 0))
				named_arrive(1 + (wg + 1) % NWG, 256);  // the next warpgroup's turn
			wg_wait1();  // S of tile j; O += P V of tile j - 1 still running
			if (leader)
				mb_arrive(bke(st));
			softmax(j);
			wg_wait0();
			if (leader)
				mb_arrive(bve(sp));
			rescale_pack();
		}
		const int il = kc + nkt - 1;
		mb_wait(bvf(il % STG), (il / STG) & 1);
		wg_fence();
		issue_pv(il % STG);
		wg_wait0();
		if (leader) {
			mb_arrive(bve(il % STG));
			mb_arrive(bqe(n % NQB));
		}
		kc += nkt;
		reg_fence(o);
#pragma unroll
		for (int r = 0; r < 2; r++) {
			float l = lrow[r];
			l += __shfl_xor_sync(0xffffffffu, l, 1);
			l += __shfl_xor_sync(0xffffffffu, l, 2);
			const int row = r0 + r * 8;
			if (row >= T_)
				continue;
			const float inv = 1.0f / l;
			bf16 *op = out + ((int64_t)b * T_ + row) * qs + h * HD + t4 * 2;
#pragma unroll
			for (int d = 0; d < HD / 8; d++)
				*(uint32_t *)(op + d * 8) = pack_bf16(o[d * 4 + 2 * r] * inv, o[d * 4 + 2 * r + 1] * inv);
			if (t4 == 0)
				lse[((int64_t)b * nh + h) * T_ + row] = (mrow[r] + log2f(l)) * LN2_F;
		}
	}
#else
	__trap();   // no wgmma in this build: the dispatch must never launch it here
	(void)out, (void)lse, (void)tq, (void)tk, (void)tv, (void)B, (void)T_, (void)nh, (void)nkv;
	(void)scale_log2;
#endif
}

// ---------------------------------------------------------------- backward
// dK, dV and the fused dQ of one block of 128 keys of a (batch row, KV head) unit, as
// attn_bwd_dkdv_fa (same loop over the group's query heads and the 64-query tiles that see the
// keys, same fixed-point dQ accumulator): two warpgroups, each owning 64 keys, compute
// S^T = K Q^T and dP^T = V dO^T (64 keys x 64 queries), P^T and dS^T in registers, then
// dV += P^T dO and dK += dS^T Q with P^T and dS^T as register A operands; dS^T also goes to
// shared memory (bf16, [key][query], swizzled), from which dQ_tile = dS K (64 queries x HD:
// warpgroup w the columns w * HD/2 ...) is computed and added to acc with red_fixed.
// Head split (hs > 1, GQA on small grids): the group's G query heads are dealt to hs blocks per
// KV tile, G / hs consecutive heads each; a block writes its dK (unscaled) and dV in fp32 to
// slice sl of pk / pv ([hs][nu][T][HD]), and attn_dkdv_sum adds the slices in order. The causal
// work of a KV tile falls with its index, so on a grid of few blocks the first tiles' blocks
// (G heads times every query tile) set the time; split, they do G / hs of it.
template <int HD>
static constexpr int attn_smem_bwd_wg() { return (2 * 128 + 4 * 64) * HD * 2 + 128 * 64 * 2 + 6 * 64 * 4 + 1024; }

// A Hopper backward block (attn_bwd_wg, attn_bwd_ws: the same grid) and its steps. Grid:
// korder: x = KV tile, y = unit (batch row, KV head) relative to u0 (the blocks of a unit run
// together, so its Q, dO and dQ accumulator rows stay in L2); else units first, as the sm_80
// kernels (the launcher picks). The unit index is unit * hs + head slice; the block owns keys
// k0 .. k0 + 127 and the slice's hp query heads from h0, and runs `total` steps, one per
// (query tile i >= i0, head): head by head, each head's tiles first to last. (The tiles last to
// first with each tile's heads together, so that the blocks of a unit that run at once share Q,
// dO and dQ rows in L2, read 14 % fewer DRAM bytes at 8192 tokens and ran no faster: docs/cuda.md,
// "Tried and removed".)
struct bwd_blk {
	int ux, sl, nu, b, kvh, G, h0, k0, i0, ni, total;
	__device__ __forceinline__ bwd_blk(int T_, int nh, int nkv, int u0, int korder, int hs)
	{
		const int uy = korder ? blockIdx.y : blockIdx.x, kt = korder ? blockIdx.x : blockIdx.y;
		ux = uy / hs, sl = uy % hs, nu = (korder ? gridDim.y : gridDim.x) / hs;
		const int nqt = (T_ + 63) / 64, u = u0 + ux;
		b = u / nkv, kvh = u % nkv, G = nh / nkv;
		const int hp = G / hs;  // the slice's query heads
		h0 = sl * hp;
		k0 = kt * 128, i0 = k0 / 64, ni = nqt - i0, total = hp * ni;
	}
	// step it's query tile i and head hh (of the group: the query head is kvh * G + hh)
	__device__ __forceinline__ void step(int it, int &i, int &hh) const
	{
		i = i0 + it % ni;
		hh = h0 + it / ni;
	}
};

#ifdef SW_WGMMA
// One step of the Hopper backward for this warpgroup's 64 keys (kr: this thread's key rows kr,
// kr + 8; k0 the block's first key): query tile i (Q at qt, dO at dot, lse / D / multipliers at
// Lt / Dt / Mt, 64 rows each), S^T and dP^T, P^T and dS^T (dS^T also to shared memory at dSs),
// dV += P^T dO and dK += dS^T Q, then, once sync_ds has made both warpgroups' dS^T visible, this
// warpgroup's half of the tile's dQ = dS K added to the fixed-point accumulator at block row rb.
// attn_bwd_wg (block barriers) and attn_bwd_ws (a named barrier) share it.
template <int HD, typename SyncDs>
__device__ __forceinline__ void bwd_wg_tile(float (&dka)[HD / 2], float (&dva)[HD / 2], unsigned char *smem_raw,
		uint32_t Ks, uint32_t Vs, uint32_t qt, uint32_t dot, uint32_t dSs, const float *Lt, const float *Dt,
		const float *Mt, int i, int k0, int kr, int wg, int w4, int lane, float scale_log2, void *acc,
		int64_t rb, SyncDs sync_ds)
{
	constexpr int BN = 128, BM = 64, KD = HD / 16, HN = HD / 2;
	constexpr uint32_t KB = BN * HD * 2;  // bytes of a K tile
	const int g = lane >> 2, t4 = lane & 3;
	float sc[BM / 2], dp[BM / 2];
	wg_fence();
#pragma unroll
	for (int kk = 0; kk < KD; kk++)
		wg_ss<BM, 0, 0>(sc, wg_desc(Ks + wg * 64 * 128 + (kk >> 2) * (BN * 128) + (kk & 3) * 32, 16, 1024),
				wg_desc(qt + (kk >> 2) * (BM * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
	wg_commit();
#pragma unroll
	for (int kk = 0; kk < KD; kk++)
		wg_ss<BM, 0, 0>(dp, wg_desc(Vs + wg * 64 * 128 + (kk >> 2) * (BN * 128) + (kk & 3) * 32, 16, 1024),
				wg_desc(dot + (kk >> 2) * (BM * 128) + (kk & 3) * 32, 16, 1024), kk > 0);
	wg_commit();
	wg_wait1();  // S^T; dP^T still running while P^T is formed
	reg_fence(sc);
	const bool mask = i * BM < kr - g + 15;  // some query of the tile before some key of the warp
#pragma unroll
	for (int x = 0; x < BM / 2; x++) {
		const int qi = (x >> 2) * 8 + t4 * 2 + (x & 1);
		float p = ex2f(fmaf(sc[x], scale_log2, -Lt[qi] * LOG2E_F));
		if (mask && i * BM + qi < kr + ((x >> 1) & 1) * 8)
			p = 0.f;
		sc[x] = p;
	}
	wg_wait0();
	reg_fence(dp);
	uint32_t pa[BM / 16][4], da[BM / 16][4];
	unsigned char *dsw = smem_raw + (dSs - smem_u32(smem_raw));
#pragma unroll
	for (int nt = 0; nt < BM / 8; nt++) {
		const int qc = nt * 8 + t4 * 2;  // query column in the tile (+1 for odd e)
		float pr[4], dv4[4];
#pragma unroll
		for (int e = 0; e < 4; e++) {
			pr[e] = sc[nt * 4 + e];
			dv4[e] = pr[e] * (dp[nt * 4 + e] - Dt[qc + (e & 1)]);
		}
		// A fragments: 16 queries (k) per kk = nt / 2; regs 0,1 from the even nt, 2,3 odd
		pa[nt >> 1][(nt & 1) * 2] = pack_bf16(pr[0], pr[1]);
		pa[nt >> 1][(nt & 1) * 2 + 1] = pack_bf16(pr[2], pr[3]);
		da[nt >> 1][(nt & 1) * 2] = pack_bf16(dv4[0], dv4[1]);
		da[nt >> 1][(nt & 1) * 2 + 1] = pack_bf16(dv4[2], dv4[3]);
		// dS^T to shared memory: key row (kr - k0), query chunk nt, swizzled
#pragma unroll
		for (int r = 0; r < 2; r++) {
			const int row = kr - k0 + r * 8;
			*(uint32_t *)(dsw + row * 128 + ((nt ^ (row & 7)) << 4) + t4 * 4) = da[nt >> 1][(nt & 1) * 2 + r];
		}
	}
	// dV += P^T dO, dK += dS^T Q (64 keys x HD per warpgroup): dO, Q N-major.
	wg_fence();
#pragma unroll
	for (int kk = 0; kk < BM / 16; kk++)
		wg_rs<HD>(dva, pa[kk], wg_desc(dot + kk * 16 * 128, BM * 128, 1024));
#pragma unroll
	for (int kk = 0; kk < BM / 16; kk++)
		wg_rs<HD>(dka, da[kk], wg_desc(qt + kk * 16 * 128, BM * 128, 1024));
	wg_commit();
	sync_ds();  // dS^T of both warpgroups in shared memory (and visible to wgmma)
	// dQ (64 queries x HD/2 columns of this warpgroup) = dS K over the block's 128 keys:
	// dS^T stored [key][query] is dS M-major; K N-major.
	float dq[HN / 2];
	const uint32_t kn = Ks + (HD == 128 ? wg * KB / 2 : wg * 64);
	wg_fence();
#pragma unroll
	for (int kk = 0; kk < BN / 16; kk++)
		wg_ss<HN, 1, 1>(dq, wg_desc(dSs + kk * 16 * 128, BM * 128, 1024),
				wg_desc(kn + kk * 16 * 128, BN * 128, 1024), kk > 0);
	wg_commit();
	wg_wait0();
	reg_fence(dka);
	reg_fence(dva);
	reg_fence(dq);
	reg_fence(pa);
	reg_fence(da);
	const int rt = w4 * 16 + g;  // query row in the tile (+8)
#pragma unroll
	for (int c = 0; c < HN / 16; c++)
		flush16<4>(acc, rb * (HD / 16) + wg * (HN / 16) + c, &dq[c * 8], &dq[c * 8 + 4], Mt[rt],
			   Mt[rt + 8], lane);
}

// The end of a Hopper backward block: this thread's dK (times scale) and dV rows kr, kr + 8 in
// bf16, or with the head split (hs > 1) its slice's fp32 partials [sl][ux][row][HD].
template <int HD>
__device__ __forceinline__ void bwd_wg_store(const float (&dka)[HD / 2], const float (&dva)[HD / 2], bf16 *dk,
		bf16 *dv, float *pk, float *pv, int kr, int T_, int hs, int sl, int nu, int ux, int b, int kvh,
		int nkv, int t4, float scale)
{
	const int64_t ks = (int64_t)nkv * HD;
#pragma unroll
	for (int r = 0; r < 2; r++) {
		const int row = kr + r * 8;
		if (row >= T_)
			continue;
		if (hs > 1) {  // this slice's fp32 partials, [sl][ux][row][HD]
			const int64_t po = (((int64_t)sl * nu + ux) * T_ + row) * HD + t4 * 2;
#pragma unroll
			for (int d = 0; d < HD / 8; d++) {
				*(float2 *)(pk + po + d * 8) = make_float2(dka[d * 4 + 2 * r], dka[d * 4 + 2 * r + 1]);
				*(float2 *)(pv + po + d * 8) = make_float2(dva[d * 4 + 2 * r], dva[d * 4 + 2 * r + 1]);
			}
			continue;
		}
		const int64_t off = ((int64_t)b * T_ + row) * ks + kvh * HD + t4 * 2;
#pragma unroll
		for (int d = 0; d < HD / 8; d++) {
			*(uint32_t *)(dk + off + d * 8) = pack_bf16(dka[d * 4 + 2 * r] * scale, dka[d * 4 + 2 * r + 1] * scale);
			*(uint32_t *)(dv + off + d * 8) = pack_bf16(dva[d * 4 + 2 * r], dva[d * 4 + 2 * r + 1]);
		}
	}
}
#endif

template <int HD>
__global__ void __launch_bounds__(256, 1) attn_bwd_wg(bf16 *dk, bf16 *dv, const bf16 *q,
		const bf16 *k, const bf16 *v, const bf16 *dout, const float *lse, const float *Dd, int T_,
		int nh, int nkv, float scale, float scale_log2, void *acc, const float *mq, int u0, int korder,
		int hs, float *pk, float *pv)
{
#ifdef SW_WGMMA
	constexpr int BN = 128, BM = 64;
	constexpr uint32_t KB = BN * HD * 2, QB = BM * HD * 2;  // bytes of a K (V) tile, a Q (dO) stage
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t Ks = (smem_u32(smem_raw) + 1023) & ~1023u, Vs = Ks + KB, Qs = Vs + KB;
	const uint32_t dOs = Qs + 2 * QB, dSs = dOs + 2 * QB;
	float *lse_s = (float *)(smem_raw + (dSs + BN * BM * 2 - smem_u32(smem_raw)));
	float *D_s = lse_s + 2 * BM, *M_s = D_s + 2 * BM;
	const bwd_blk B_(T_, nh, nkv, u0, korder, hs);
	const int ux = B_.ux, sl = B_.sl, nu = B_.nu, b = B_.b, kvh = B_.kvh, G = B_.G;
	const int h0 = B_.h0, k0 = B_.k0, i0 = B_.i0, ni = B_.ni, total = B_.total;
	const int wg = threadIdx.x >> 7, w4 = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const int64_t qs = (int64_t)nh * HD, ks = (int64_t)nkv * HD;
	const int kr = k0 + wg * 64 + w4 * 16 + g;  // this thread's key rows: kr, kr + 8
	load_sw<HD, BN, 256>(Ks, k + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);
	load_sw<HD, BN, 256>(Vs, v + (int64_t)b * T_ * ks + kvh * HD, ks, k0, T_);

	// Step it's query tile and head as bwd_blk::step, written out here: through the method ptxas
	// gave this kernel 254 registers at head dim 128 instead of 238.
	auto issue = [&](int it, int st) {
		const int h = kvh * G + h0 + it / ni, i = i0 + it % ni;
		const int64_t qoff = (int64_t)b * T_ * qs + h * HD;
		load_sw<HD, BM, 256>(Qs + st * QB, q + qoff, qs, i * BM, T_);
		load_sw<HD, BM, 256>(dOs + st * QB, dout + qoff, qs, i * BM, T_);
		const int tid = threadIdx.x, row = i * BM + (tid & (BM - 1));
		const int64_t loff = ((int64_t)b * nh + h) * T_ + (row < T_ ? row : 0);
		if (tid < BM)
			cp_async4(lse_s + st * BM + tid, lse + loff, row < T_);
		else if (tid < 2 * BM)
			cp_async4(D_s + st * BM + (tid - BM), Dd + loff, row < T_);
		else if (tid < 3 * BM)
			cp_async4(M_s + st * BM + (tid - 2 * BM), mq + loff, row < T_);
	};
	issue(0, 0);
	cp_async_commit();

	float dka[HD / 2], dva[HD / 2];
#pragma unroll
	for (int x = 0; x < HD / 2; x++)
		dka[x] = dva[x] = 0.f;
	for (int it = 0; it < total; it++) {
		const int st = it & 1, i = i0 + it % ni, hh = h0 + it / ni;
		if (it + 1 < total) {
			issue(it + 1, st ^ 1);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		fence_proxy_async();
		__syncthreads();
		const int64_t rb = ((int64_t)ux * (fx_rows(T_) / 16) + i * 4 + w4) * G + hh;
		bwd_wg_tile<HD>(dka, dva, smem_raw, Ks, Vs, Qs + st * QB, dOs + st * QB, dSs, lse_s + st * BM,
				D_s + st * BM, M_s + st * BM, i, k0, kr, wg, w4, lane, scale_log2, acc, rb, [] {
					fence_proxy_async();
					__syncthreads();
				});
		__syncthreads();  // this stage and dS^T are free again
	}
	bwd_wg_store<HD>(dka, dva, dk, dv, pk, pv, kr, T_, hs, sl, nu, ux, b, kvh, nkv, t4, scale);
#else
	__trap();   // no wgmma in this build: the dispatch must never launch it here
	(void)dk, (void)dv, (void)q, (void)k, (void)v, (void)dout, (void)lse, (void)Dd, (void)T_, (void)nh;
	(void)nkv, (void)scale, (void)scale_log2, (void)acc, (void)mq, (void)u0, (void)korder;
	(void)hs, (void)pk, (void)pv;
#endif
}

// ---------------------------------------------------------------- warp-specialised backward
// attn_bwd_ws (the default; SW_CUDA_ATTN_BWD=wg runs attn_bwd_wg): attn_bwd_wg's block (two consumer warpgroups of 64 keys
// each, the same steps in the same order through bwd_wg_tile, so the same bits) with a producer
// warpgroup in front, as FlashAttention-3's backward: one thread loads K and V once, then each
// step's Q and dO tiles and its lse, D and multiplier rows, all with TMA, into a ring of two
// stages, each with a "full" mbarrier (the TMA's bytes) and an "empty" one (each consumer warp
// arrives once its reads of the stage are done). The consumers' only barrier in a step is the
// named one between their dS^T writes and the dQ product (dS^T in two buffers, by step parity:
// a warpgroup writes buffer p again only two steps later, after both passed the barrier of the
// step between), in place of attn_bwd_wg's three block barriers and its loads issued by every
// thread (ncu at the 70B layer's shape: barrier the largest stall, two warps a scheduler).
// setmaxnreg gives the consumers 240 registers a thread and the producer 24.
// The lse / D / multiplier rows come from their copy in the map tl: a [B nh 3][T] array of
// row stride Tp (attn_bwd_dot_v8 writes it), one box of 64 rows x 3 a step, rows past T filled
// with zeros by the TMA unit, as attn_bwd_wg's loads fill them. (The producer warp first wrote
// them to shared memory with plain stores, released by its arrivals on the full barrier: correct
// in the PTX memory model, but compute-sanitizer's racecheck does not take an mbarrier's
// arrive / wait for an ordering and reported each consumer read against those stores; written
// by the TMA unit, no thread's store is there to pair, as for Q and dO.)
template <int HD>
static constexpr int attn_smem_bwd_ws()
{
	return (2 * 128 + 2 * 2 * 64) * HD * 2 + 2 * 128 * 64 * 2 + 2 * 3 * 64 * 4 + 64 + 1024;
}

template <int HD>
__global__ void __launch_bounds__(384, 1) attn_bwd_ws(bf16 *dk, bf16 *dv,
		const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
		const __grid_constant__ CUtensorMap tv, const __grid_constant__ CUtensorMap tdo,
		const __grid_constant__ CUtensorMap tl, int T_, int nh, int nkv, float scale, float scale_log2,
		void *acc, int u0, int korder, int hs, float *pk, float *pv)
{
#ifdef SW_WGMMA
	constexpr int BN = 128, BM = 64, STG = 2;
	constexpr uint32_t VB = 3 * BM * 4;  // a stage's lse, D and multipliers
	constexpr uint32_t KB = BN * HD * 2, QB = BM * HD * 2, SB = BN * BM * 2;  // K (V) tile, Q (dO) stage, dS^T
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t Ks = (smem_u32(smem_raw) + 1023) & ~1023u, Vs = Ks + KB, Qs = Vs + KB;
	const uint32_t dOs = Qs + STG * QB, dSs = dOs + STG * QB;
	const uint32_t vecs = dSs + 2 * SB;         // [STG][lse, D, M][BM] floats
	const float *vec = (const float *)(smem_raw + (vecs - smem_u32(smem_raw)));
	const uint32_t bkv = vecs + STG * VB;       // mbarriers
	auto bfull = [&](int st) { return bkv + 8 + st * 8; };
	auto bempty = [&](int st) { return bkv + 8 + STG * 8 + st * 8; };
	const bwd_blk B_(T_, nh, nkv, u0, korder, hs);
	const int b = B_.b, kvh = B_.kvh, G = B_.G, k0 = B_.k0, total = B_.total;
	// Warp-uniform to the compiler (a shuffle): wgmma under a branch it cannot prove uniform
	// is serialised.
	const int wg = __shfl_sync(0xffffffffu, (int)(threadIdx.x >> 7), 0);
	if (threadIdx.x == 0) {
		mb_init(bkv, 1);
		for (int st = 0; st < STG; st++) {
			mb_init(bfull(st), 1);     // the producer's arrival with the TMA's bytes
			mb_init(bempty(st), 8);    // every consumer warp
		}
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	__syncthreads();

	if (wg == 2) {  // producer: its first thread
		regs_dec<24>();
		if (threadIdx.x == 256) {
			mb_expect_tx(bkv, 2 * KB);
#pragma unroll
			for (int c = 0; c < HD / 64; c++) {
				tma_load4(Ks + c * (BN * 128), &tk, c * 64, kvh, k0, b, bkv);
				tma_load4(Vs + c * (BN * 128), &tv, c * 64, kvh, k0, b, bkv);
			}
			for (int it = 0; it < total; it++) {
				const int st = it % STG;
				int i, hh;
				B_.step(it, i, hh);
				const int h = kvh * G + hh;
				if (it >= STG)  // the consumers' release of step it - STG
					mb_wait(bempty(st), ((it / STG) & 1) ^ 1);
				mb_expect_tx(bfull(st), 2 * QB + VB);
#pragma unroll
				for (int c = 0; c < HD / 64; c++) {
					tma_load4(Qs + st * QB + c * (BM * 128), &tq, c * 64, h, i * BM, b, bfull(st));
					tma_load4(dOs + st * QB + c * (BM * 128), &tdo, c * 64, h, i * BM, b, bfull(st));
				}
				tma_load2(vecs + st * VB, &tl, i * BM, (b * nh + h) * 3, bfull(st));
			}
		}
		return;
	}

	regs_inc<240>();
	const int w4 = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, t4 = lane & 3;
	const int kr = k0 + wg * 64 + w4 * 16 + (lane >> 2);  // this thread's key rows: kr, kr + 8
	float dka[HD / 2], dva[HD / 2];
#pragma unroll
	for (int x = 0; x < HD / 2; x++)
		dka[x] = dva[x] = 0.f;
	mb_wait(bkv, 0);
	for (int it = 0; it < total; it++) {
		const int st = it % STG;
		int i, hh;
		B_.step(it, i, hh);
		mb_wait(bfull(st), (it / STG) & 1);
		const float *vs = vec + st * 3 * BM;
		const int64_t rb = ((int64_t)B_.ux * (fx_rows(T_) / 16) + i * 4 + w4) * G + hh;
		bwd_wg_tile<HD>(dka, dva, smem_raw, Ks, Vs, Qs + st * QB, dOs + st * QB, dSs + (it & 1) * SB, vs,
				vs + BM, vs + 2 * BM, i, k0, kr, wg, w4, lane, scale_log2, acc, rb, [] {
					fence_proxy_async();
					named_sync(1, 256);
				});
		__syncwarp();  // the warp's reads of the stage are done (its products waited)
		if (lane == 0)
			mb_arrive(bempty(st));
	}
	bwd_wg_store<HD>(dka, dva, dk, dv, pk, pv, kr, T_, hs, B_.sl, B_.nu, B_.ux, b, kvh, nkv, t4, scale);
#else
	__trap();   // no wgmma in this build: the dispatch must never launch it here
	(void)dk, (void)dv, (void)tq, (void)tk, (void)tv, (void)tdo, (void)tl, (void)T_, (void)nh;
	(void)nkv, (void)scale, (void)scale_log2, (void)acc, (void)u0, (void)korder;
	(void)hs, (void)pk, (void)pv;
#endif
}

// dK (times scale) and dV in bf16 for units [u0, u0 + nu) from attn_bwd_wg's head-slice partials:
// each element the sum of its hs slices in slice order (the same bits run to run). Any
// architecture (no wgmma); two elements a thread.
__global__ void attn_dkdv_sum(bf16 *dk, bf16 *dv, const float *pk, const float *pv, int hs, int u0,
			      int nu, int T_, int nkv, int hd, float scale)
{
	const int64_t per = (int64_t)T_ * hd, n = (int64_t)nu * per, slice = n;
	for (int64_t e = 2 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x); e < n;
	     e += 2 * (int64_t)gridDim.x * blockDim.x) {
		float2 sk = *(const float2 *)(pk + e), sv = *(const float2 *)(pv + e);
		for (int s = 1; s < hs; s++) {
			const float2 a = *(const float2 *)(pk + s * slice + e), c = *(const float2 *)(pv + s * slice + e);
			sk.x += a.x;
			sk.y += a.y;
			sv.x += c.x;
			sv.y += c.y;
		}
		const int ux = (int)(e / per), row = (int)(e % per / hd), d = (int)(e % hd), u = u0 + ux;
		const int64_t off = (((int64_t)(u / nkv) * T_ + row) * nkv + u % nkv) * hd + d;
		*(uint32_t *)(dk + off) = pack_bf16(sk.x * scale, sk.y * scale);
		*(uint32_t *)(dv + off) = pack_bf16(sv.x, sv.y);
	}
}
