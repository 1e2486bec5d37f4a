/* The GPU AdamW kernel gives the CPU paths' bits (scalar and the automatic SIMD path) on random
 * data with zeros, denormals, very large and very small values, non-finite gradients and odd
 * lengths; p32, m, v and the bf16 / fp32 copy are compared bit for bit. The only allowed
 * difference is a NaN result's payload (x86 0xffc00000 vs the GPU's 0x7fffffff), which takes an
 * overflowing state; those are counted and printed, and a data set of ordinary values must
 * have none. Uses the CUDA runtime C API; skips (77) without CUDA or a device. */
#include "optim/adamw.h"
#include "optim/adamw_gpu.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

#ifndef SW_HAVE_CUDA
int main(void)
{
	SKIP("built without CUDA");
}
#else
#include <cuda_runtime_api.h>

#define CUDA_CHECK(x) do { cudaError_t e_ = (x); CHECKF(e_ == cudaSuccess, "%s: %s", #x, \
	cudaGetErrorString(e_)); } while (0)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next_u64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}
static double unif(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }
static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static float draw(int special, int allow_negative)
{
	double r = unif();
	float x;
	if (!special)
		x = (float)((unif() * 2 - 1) * pow(10.0, -4 + 3 * unif()));
	else if (r < 0.08)
		x = 0.0f;
	else if (r < 0.10)
		x = -0.0f;
	else if (r < 0.18)
		x = bits_f((uint32_t)(next_u64() & 0x007fffff));
	else if (r < 0.24)
		x = (float)(1e30 * (1 + unif()));
	else if (r < 0.27)
		x = bits_f(0x7f000000u | (uint32_t)(next_u64() & 0x7fffff));
	else if (r < 0.33)
		x = (float)(1e-35 * (1 + unif()));
	else
		x = (float)((unif() * 2 - 1) * pow(10.0, -6 + 7 * unif()));
	if (allow_negative && (next_u64() & 1))
		x = -x;
	return allow_negative ? x : fabsf(x);
}

/* 0 when a and b are the same bits or both NaN (counted in *nan_pairs); 1 otherwise. */
static int differ32(const float *a, const float *b, int64_t n, int64_t *nan_pairs, int64_t *at)
{
	for (int64_t i = 0; i < n; i++) {
		if (f_bits(a[i]) == f_bits(b[i]))
			continue;
		if (isnan(a[i]) && isnan(b[i])) {
			(*nan_pairs)++;
			continue;
		}
		*at = i;
		return 1;
	}
	return 0;
}

static int differ16(const uint16_t *a, const uint16_t *b, int64_t n, int64_t *nan_pairs, int64_t *at)
{
	for (int64_t i = 0; i < n; i++) {
		if (a[i] == b[i])
			continue;
		int na = (a[i] & 0x7fff) > 0x7f80, nb = (b[i] & 0x7fff) > 0x7f80;
		if (na && nb) {
			(*nan_pairs)++;
			continue;
		}
		*at = i;
		return 1;
	}
	return 0;
}

int main(void)
{
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
		SKIP("no CUDA device");
	static const int64_t lens[] = { 1, 7, 17, 1000, 4099, (1 << 20) + 3 };
	sw_adamw_hparams h = { 1e-3, 0.9, 0.999, 1e-8, 0.1 };
	const struct { double lr, scale; int64_t t; int decay; } cases[] = {
		{ 1e-3, 1.0, 1, 1 }, { 3e-4, 0.37, 10, 0 }, { 1e-2, 1.0, 1000, 1 },
		{ 1.0, 2.5e-3, 3, 1 }, { 0.0, 1.0, 2, 1 },
	};
	const int64_t nmax = (1 << 20) + 3;
	float *p0 = malloc(nmax * 4), *m0 = malloc(nmax * 4), *v0 = malloc(nmax * 4),
	      *g0 = malloc(nmax * 4);
	float *cp = malloc(nmax * 4), *cm = malloc(nmax * 4), *cv = malloc(nmax * 4),
	      *cf = malloc(nmax * 4);
	float *gp = malloc(nmax * 4), *gm = malloc(nmax * 4), *gv = malloc(nmax * 4),
	      *gf = malloc(nmax * 4);
	uint16_t *ch = malloc(nmax * 2), *gh = malloc(nmax * 2);
	CHECK(p0 && m0 && v0 && g0 && cp && cm && cv && cf && gp && gm && gv && gf && ch && gh);
	float *dp, *dm, *dv, *dg, *df;
	uint16_t *dh;
	unsigned long long *dbad, hbad;
	CUDA_CHECK(cudaMalloc((void **)&dp, nmax * 4));
	CUDA_CHECK(cudaMalloc((void **)&dm, nmax * 4));
	CUDA_CHECK(cudaMalloc((void **)&dv, nmax * 4));
	CUDA_CHECK(cudaMalloc((void **)&dg, nmax * 4));
	CUDA_CHECK(cudaMalloc((void **)&df, nmax * 4));
	CUDA_CHECK(cudaMalloc((void **)&dh, nmax * 2));
	CUDA_CHECK(cudaMalloc((void **)&dbad, sizeof(*dbad)));

	int64_t total_nan = 0, compared = 0;
	sw_adamw_path paths[2] = { SW_ADAMW_PATH_SCALAR, SW_ADAMW_PATH_AUTO };
	for (int special = 0; special < 2; special++)
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		int64_t n = lens[li];
		sw_adamw_args a = sw_adamw_args_make(&h, cases[ci].lr, cases[ci].t, cases[ci].decay,
						     cases[ci].scale);
		int64_t injected = 0;
		for (int64_t i = 0; i < n; i++) {
			p0[i] = draw(special, 1);
			m0[i] = draw(special, 1);
			v0[i] = draw(special, 0);
			g0[i] = draw(special, 1);
			if (special && i % 101 == 5) {
				g0[i] = (i & 2) ? NAN : ((i & 4) ? INFINITY : -INFINITY);
				injected++;
			}
		}
		for (int out = 0; out < 3; out++) {
			sw_dtype act = out == 2 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
			/* GPU */
			CUDA_CHECK(cudaMemcpy(dp, p0, n * 4, cudaMemcpyHostToDevice));
			CUDA_CHECK(cudaMemcpy(dm, m0, n * 4, cudaMemcpyHostToDevice));
			CUDA_CHECK(cudaMemcpy(dv, v0, n * 4, cudaMemcpyHostToDevice));
			CUDA_CHECK(cudaMemcpy(dg, g0, n * 4, cudaMemcpyHostToDevice));
			CUDA_CHECK(cudaMemset(dbad, 0, sizeof(*dbad)));
			void *d16 = out == 0 ? NULL : out == 1 ? (void *)dh : (void *)df;
			sw_adamw_gpu_launch_checked(dp, dm, dv, dg, d16, act, n, &a, dbad, NULL);
			CUDA_CHECK(cudaGetLastError());
			CUDA_CHECK(cudaDeviceSynchronize());
			CUDA_CHECK(cudaMemcpy(gp, dp, n * 4, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(gm, dm, n * 4, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(gv, dv, n * 4, cudaMemcpyDeviceToHost));
			CUDA_CHECK(cudaMemcpy(&hbad, dbad, sizeof(hbad), cudaMemcpyDeviceToHost));
			if (out == 1)
				CUDA_CHECK(cudaMemcpy(gh, dh, n * 2, cudaMemcpyDeviceToHost));
			if (out == 2)
				CUDA_CHECK(cudaMemcpy(gf, df, n * 4, cudaMemcpyDeviceToHost));
			for (int pi = 0; pi < 2; pi++) {
				CHECK(sw_adamw_path_set(paths[pi]) == 0);
				memcpy(cp, p0, n * 4);
				memcpy(cm, m0, n * 4);
				memcpy(cv, v0, n * 4);
				void *c16 = out == 0 ? NULL : out == 1 ? (void *)ch : (void *)cf;
				int64_t bad = sw_adamw_update_checked(cp, cm, cv, g0, c16, act, n, &a);
				const char *pn = sw_adamw_path_name(sw_adamw_path_get());
				CHECKF(bad == injected && (int64_t)hbad == bad,
				       "n=%lld case %zu: skipped cpu %lld gpu %llu injected %lld",
				       (long long)n, ci, (long long)bad, hbad, (long long)injected);
				int64_t nanp = 0, at = -1;
				CHECKF(!differ32(gp, cp, n, &nanp, &at),
				       "p32 differs (gpu vs %s), n=%lld case %zu special %d at %lld: "
				       "%08x vs %08x", pn, (long long)n, ci, special, (long long)at,
				       f_bits(gp[at]), f_bits(cp[at]));
				CHECKF(!differ32(gm, cm, n, &nanp, &at), "m differs (gpu vs %s) at %lld",
				       pn, (long long)at);
				CHECKF(!differ32(gv, cv, n, &nanp, &at), "v differs (gpu vs %s) at %lld",
				       pn, (long long)at);
				if (out == 1)
					CHECKF(!differ16(gh, ch, n, &nanp, &at),
					       "bf16 differs (gpu vs %s) at %lld: %04x vs %04x", pn,
					       (long long)at, gh[at], ch[at]);
				if (out == 2)
					CHECKF(!differ32(gf, cf, n, &nanp, &at),
					       "fp32 copy differs (gpu vs %s) at %lld", pn, (long long)at);
				CHECKF(special || nanp == 0, "ordinary data produced %lld NaN", (long long)nanp);
				total_nan += nanp;
				compared += n;
			}
		}
	}
	printf("GPU kernel bit-identical to the CPU paths (scalar, %s) on %lld element updates; "
	       "%lld NaN results (from overflowing special state) differ only in payload\n",
	       sw_adamw_path_name(sw_adamw_path_get()), (long long)compared, (long long)total_nan);
	cudaFree(dp); cudaFree(dm); cudaFree(dv); cudaFree(dg); cudaFree(df); cudaFree(dh);
	cudaFree(dbad);
	free(p0); free(m0); free(v0); free(g0); free(cp); free(cm); free(cv); free(cf);
	free(gp); free(gm); free(gv); free(gf); free(ch); free(gh);
	return 0;
}
#endif
