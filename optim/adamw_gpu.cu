// GPU AdamW: see optim/adamw_gpu.h for the contract and optim/adamw.h for the formula.
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "optim/adamw_gpu.h"
}

// fp32 -> bf16 round to nearest even on the bits, NaN -> (bits >> 16) | 0x40: sw_f32_to_bf16.
__device__ __forceinline__ unsigned short bf16_rne(float f)
{
	unsigned int u = __float_as_uint(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (unsigned short)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (unsigned short)(u >> 16);
}

__global__ void adamw_kernel(float *p32, float *m, float *v, const float *g, void *p16, int bf16,
			     int64_t n, sw_adamw_args a, unsigned long long *nonfinite)
{
	const float lrwd = __fmul_rn(a.lr, a.weight_decay);
	const float omb1 = a.one_minus_beta1, omb2 = a.one_minus_beta2;
	unsigned int bad = 0;
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float gi = __fmul_rn(g[i], a.grad_scale);
		float p = p32[i];
		if (isfinite(gi)) {
			const float m0 = m[i], v0 = v[i];
			p = __fsub_rn(p, __fmul_rn(lrwd, p));
			float mi = __fadd_rn(m0, __fmul_rn(omb1, __fsub_rn(gi, m0)));
			float vi = __fadd_rn(__fmul_rn(a.beta2, v0), __fmul_rn(omb2, __fmul_rn(gi, gi)));
			float d = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
			p = __fsub_rn(p, __fmul_rn(a.step_size, __fdiv_rn(mi, d)));
			p32[i] = p;
			m[i] = mi;
			v[i] = vi;
		} else {
			bad++;
		}
		if (p16 && bf16)
			((unsigned short *)p16)[i] = bf16_rne(p);
		else if (p16)
			((float *)p16)[i] = p;
	}
	if (bad && nonfinite)
		atomicAdd(nonfinite, (unsigned long long)bad);
}

extern "C" void sw_adamw_gpu_launch_checked(float *p32, float *m, float *v, const float *g,
					    void *p16, sw_dtype act, int64_t n,
					    const sw_adamw_args *a, unsigned long long *nonfinite,
					    void *stream)
{
	if (n <= 0)
		return;
	int threads = 256;
	int64_t blocks = (n + threads - 1) / threads;
	if (blocks > 132 * 16)
		blocks = 132 * 16;
	adamw_kernel<<<(unsigned)blocks, threads, 0, (cudaStream_t)stream>>>(
		p32, m, v, g, p16, act == SW_DTYPE_BF16, n, *a, nonfinite);
}

extern "C" void sw_adamw_gpu_launch(float *p32, float *m, float *v, const float *g, void *p16,
				    sw_dtype act, int64_t n, const sw_adamw_args *a, void *stream)
{
	sw_adamw_gpu_launch_checked(p32, m, v, g, p16, act, n, a, NULL, stream);
}
