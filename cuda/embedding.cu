// Embedding backward, deterministic: the (token, row) pairs are sorted by token with a stable
// radix sort (so rows of one token stay in increasing order), then the blocks of a run of equal
// tokens add that token's gradient rows in row order: dwte[v] = ((dwte[v] + d[n0]) + d[n1]) ...
// the same order as a sequential loop over n on the CPU. No atomics.
#include "cuda/common.cuh"

#include <cub/device/device_radix_sort.cuh>

__global__ void iota_kernel(int32_t *v, int n)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		v[i] = i;
}

// One block per (run of equal tokens, slice of EMB_K * blockDim columns). A run is as long as
// its token is frequent (a space or newline token: hundreds of rows in 2048), and its rows are
// added in order, so the work per column is serial; the slices spread one run's columns over
// many blocks, each thread keeps EMB_K columns' sums in registers and loads EMB_U rows ahead,
// so EMB_K * EMB_U loads are in flight where a dependent chain of single loads was (1.8 ms a
// micro-batch of 2048 tokens at the 2.8B shape on an H100 before; the adds per column stay in
// row order, so the bits are those of the CPU backend's loop).
#define EMB_K 2
#define EMB_U 8

// First index in keys[lo, hi) (sorted) whose key is greater than v.
__device__ __forceinline__ int run_end(const int32_t *keys, int lo, int hi, int32_t v)
{
	while (lo < hi) {
		const int mid = lo + (hi - lo) / 2;
		if (keys[mid] <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

template <typename T>
__global__ void embedding_bwd_kernel(float *dwte, const T *dout, const int32_t *keys,
				     const int32_t *rows, int N, int C)
{
	const int c0 = blockIdx.y * EMB_K * blockDim.x + threadIdx.x;
	for (int i = blockIdx.x; i < N; i += gridDim.x) {
		if (i > 0 && keys[i - 1] == keys[i])
			continue;  // not the start of a run
		const int32_t v = keys[i];
		const int end = run_end(keys, i + 1, N, v);
		float *dv = dwte + (int64_t)v * C;
		float acc[EMB_K];
#pragma unroll
		for (int k = 0; k < EMB_K; k++) {
			const int c = c0 + k * blockDim.x;
			acc[k] = c < C ? dv[c] : 0.f;
		}
		int j = i;
		for (; j + EMB_U <= end; j += EMB_U) {
			float a[EMB_U][EMB_K];
#pragma unroll
			for (int u = 0; u < EMB_U; u++) {
				const int64_t r = (int64_t)rows[j + u] * C;
#pragma unroll
				for (int k = 0; k < EMB_K; k++) {
					const int c = c0 + k * blockDim.x;
					a[u][k] = c < C ? ld_act(dout, r + c) : 0.f;
				}
			}
#pragma unroll
			for (int u = 0; u < EMB_U; u++)
#pragma unroll
				for (int k = 0; k < EMB_K; k++)
					acc[k] = __fadd_rn(acc[k], a[u][k]);
		}
		for (; j < end; j++) {
			const int64_t r = (int64_t)rows[j] * C;
#pragma unroll
			for (int k = 0; k < EMB_K; k++) {
				const int c = c0 + k * blockDim.x;
				if (c < C)
					acc[k] = __fadd_rn(acc[k], ld_act(dout, r + c));
			}
		}
#pragma unroll
		for (int k = 0; k < EMB_K; k++) {
			const int c = c0 + k * blockDim.x;
			if (c < C)
				dv[c] = acc[k];
		}
	}
}

void cuda_embedding_bwd(cuda_impl *ci, cudaStream_t s, int bf16, float *dwte, const void *dout,
			const int32_t *tokens, int N, int C, int V)
{
	if (N <= 0)
		return;
	int bits = 1;
	while (bits < 31 && (1ll << bits) < (long long)V)
		bits++;
	size_t tmp = 0;
	CU_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, tmp, (const int32_t *)nullptr, (int32_t *)nullptr,
						 (const int32_t *)nullptr, (int32_t *)nullptr, N, 0, bits, s));
	const uint64_t arr = ((uint64_t)N * 4 + 255) / 256 * 256;
	char *scr = cuda_scratch_take(ci, s, 3 * arr + tmp);
	int32_t *keys = (int32_t *)scr, *rows_in = (int32_t *)(scr + arr), *rows = (int32_t *)(scr + 2 * arr);
	iota_kernel<<<cuda_blocks(N, 256, 1 << 20), 256, 0, s>>>(rows_in, N);
	CU_CHECK_LAUNCH();
	CU_CHECK(cub::DeviceRadixSort::SortPairs(scr + 3 * arr, tmp, tokens, keys, rows_in, rows, N, 0,
						 bits, s));
	const int th = C >= 256 ? 256 : 128;
	const dim3 g(cuda_blocks(N, 1, 65535), (unsigned)((C + EMB_K * th - 1) / (EMB_K * th)));
	if (bf16)
		embedding_bwd_kernel<<<g, th, 0, s>>>(dwte, (const __nv_bfloat16 *)dout, keys, rows, N, C);
	else
		embedding_bwd_kernel<<<g, th, 0, s>>>(dwte, (const float *)dout, keys, rows, N, C);
	CU_CHECK_LAUNCH();
}
