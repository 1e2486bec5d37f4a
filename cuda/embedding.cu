// Embedding backward, deterministic: the (token, row) pairs are sorted by token with a stable
// radix sort (so rows of one token stay in increasing order), then one block per run of equal
// tokens adds that token's gradient rows in row order: dwte[v] = ((dwte[v] + d[n0]) + d[n1]) ...
// the same order as a sequential loop over n on the CPU. No atomics.
#include "cuda/common.cuh"

#include <cub/device/device_radix_sort.cuh>

__global__ void iota_kernel(int32_t *v, int n)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		v[i] = i;
}

template <typename T>
__global__ void embedding_bwd_kernel(float *dwte, const T *dout, const int32_t *keys,
				     const int32_t *rows, int N, int C)
{
	for (int i = blockIdx.x; i < N; i += gridDim.x) {
		if (i > 0 && keys[i - 1] == keys[i])
			continue;  // not the start of a run
		const int64_t v = keys[i];
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float acc = dwte[v * C + c];
			for (int j = i; j < N && keys[j] == v; j++)
				acc = __fadd_rn(acc, ld_act(dout, (int64_t)rows[j] * C + c));
			dwte[v * C + c] = acc;
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
	unsigned g = cuda_blocks(N, 1, 65535);
	int th = C >= 256 ? 256 : 128;
	if (bf16)
		embedding_bwd_kernel<<<g, th, 0, s>>>(dwte, (const __nv_bfloat16 *)dout, keys, rows, N, C);
	else
		embedding_bwd_kernel<<<g, th, 0, s>>>(dwte, (const float *)dout, keys, rows, N, C);
	CU_CHECK_LAUNCH();
}
