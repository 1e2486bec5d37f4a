/* Per-layer forward+backward of a LLaMA decoder layer built from the CUDA backend's ops (bf16),
 * on 1B-, 8B- and 70B-sized layers at sequence 2048 and 4096 (and 8192 for the 70B), batch 1
 * (SW_BENCH_SEQ=T[,T...] sets the lengths for every layer); and the cuBLAS bf16 GEMM
 * rate (8192^3) for MFU. Prints one JSON line per measurement (bench/cuda_compare.sh joins them
 * with bench/torch_layer.py's into the ratio table).
 *
 * The layer is HF's LlamaDecoderLayer: x2 = x + o_proj(attn(rope(q), rope(k), v)) over
 * rmsnorm(x); y = x2 + down(silu(gate(h2)) * up(h2)) over h2 = rmsnorm(x2). Activations are
 * kept from the forward (as PyTorch autograd does), weight gradients accumulate in fp32.
 * SW_BENCH_SHAPE=C,F,nh,nkv,hd runs one layer of that shape instead (named "custom"; bench/anchor.sh
 * measures the layer rate of the model it trains this way). SW_BENCH_WARM_S=s runs the layer for s
 * seconds before the timed iterations (bench/anchor.sh: 3), so that they run at the clocks the
 * GPU holds under sustained load rather than from idle.
 * Usage: cuda_layer [iters] */
#include "core/backend.h"
#include "core/dtype.h"
#include "optim/adamw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int C, F, nh, nkv, hd; } layer_cfg;

static const layer_cfg cfgs[] = {
	{ "1B", 2048, 8192, 32, 8, 64 },     /* Llama 3.2 1B */
	{ "8B", 4096, 14336, 32, 8, 128 },   /* Llama 3.1 8B */
	{ "70B", 8192, 28672, 64, 8, 128 },  /* Llama 3.1 70B */
};

static sw_backend *be;
static sw_stream *st;
static int nalloc;
static void *allocs[64];

static void *dalloc(uint64_t bytes)
{
	void *p;
	if (be->ops->dev_alloc(be, bytes, &p)) {
		fprintf(stderr, "cuda_layer: arena exhausted (%llu bytes)\n", (unsigned long long)bytes);
		exit(1);
	}
	allocs[nalloc++] = p;
	return p;
}

static void free_all(void)
{
	while (nalloc)
		be->ops->dev_free(be, allocs[--nalloc]);
}

/* The next of a xorshift sequence, scaled to [-amp, amp]. */
static float rand_amp(uint64_t *x, float amp)
{
	*x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
	return ((float)(*x >> 40) / (float)(1 << 24) * 2.f - 1.f) * amp;
}

/* Random bf16 values in [-amp, amp] (never zeros: zeros run faster than real data). */
static void *rand_bf16(int64_t n, float amp, uint64_t seed)
{
	sw_bf16 *h = malloc((size_t)n * 2);
	if (!h)
		exit(1);
	uint64_t x = seed * 2654435761u + 1;
	for (int64_t i = 0; i < n; i++)
		h[i] = sw_f32_to_bf16(rand_amp(&x, amp));
	void *d = dalloc((uint64_t)n * 2);
	be->ops->copy_h2d(be, st, d, h, (uint64_t)n * 2);
	be->ops->stream_sync(be, st);
	free(h);
	return d;
}

static int cmp_f(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static float median(float *v, int n)
{
	qsort(v, (size_t)n, sizeof(float), cmp_f);
	return v[n / 2];
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double gemm_rate(int iters)
{
	const int M = 8192;
	void *a = rand_bf16((int64_t)M * M, 1, 1), *b = rand_bf16((int64_t)M * M, 1, 2);
	void *c = dalloc((uint64_t)M * M * 2);
	sw_event *e0, *e1;
	be->ops->event_create(be, &e0);
	be->ops->event_create(be, &e1);
	float t[64];
	for (int i = 0; i < iters + 3; i++) {
		be->ops->event_record(be, e0, st);
		be->ops->matmul_fwd(be, st, c, a, b, NULL, M, M, M);
		be->ops->event_record(be, e1, st);
		be->ops->event_sync(be, e1);
		if (i >= 3)
			t[i - 3] = be->ops->event_ms(be, e0, e1);
	}
	double ms = median(t, iters);
	double tf = 2.0 * M * M * (double)M / (ms * 1e-3) / 1e12;
	printf("{\"what\":\"gemm\",\"impl\":\"cuda\",\"M\":%d,\"ms\":%.4f,\"tflops\":%.1f}\n", M, ms, tf);
	be->ops->event_destroy(be, e0);
	be->ops->event_destroy(be, e1);
	free_all();
	return tf;
}

/* The GPU's memory-bound work between the layers, as a step runs it (offload/exec_step.c): a
 * gradient's sum of squares (reads 4 B a parameter) and a resident group's AdamW (reads P32, m,
 * v and the gradient, writes P32, m, v and the bf16 P16: 30 B), each over 64 M parameters;
 * prints their rates and their bytes over their time together, the rate the planner's expected
 * step takes (`--gpu-bw-gbs`, docs/planner.md). */
static void membound_rate(int iters)
{
	const int64_t n = 64ll << 20;
	float *p32 = dalloc((uint64_t)n * 4), *m = dalloc((uint64_t)n * 4), *v = dalloc((uint64_t)n * 4);
	float *g = dalloc((uint64_t)n * 4);
	void *p16 = dalloc((uint64_t)n * 2);
	double *ss = dalloc(8);
	/* nonzero values (zeros would let the kernels run on values no step sees) */
	float *hv = malloc((size_t)n * 4);
	if (!hv)
		exit(1);
	uint64_t x = 88172645463325252ull;
	for (int64_t i = 0; i < n; i++)
		hv[i] = rand_amp(&x, 0.01f);
	be->ops->copy_h2d(be, st, g, hv, (uint64_t)n * 4);
	be->ops->copy_h2d(be, st, p32, hv, (uint64_t)n * 4);
	be->ops->stream_sync(be, st);
	free(hv);
	be->ops->memset0(be, st, m, (uint64_t)n * 4);
	be->ops->memset0(be, st, v, (uint64_t)n * 4);
	sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.01 };
	sw_adamw_args a = sw_adamw_args_make(&h, 1e-4, 1, 1, 1.0);
	sw_event *e0, *e1, *e2;
	be->ops->event_create(be, &e0);
	be->ops->event_create(be, &e1);
	be->ops->event_create(be, &e2);
	float ts[64], ta[64];
	for (int i = 0; i < iters + 3; i++) {
		be->ops->event_record(be, e0, st);
		be->ops->sumsq(be, st, ss, g, n);
		be->ops->event_record(be, e1, st);
		be->ops->adamw(be, st, p32, m, v, g, p16, n, &a);
		be->ops->event_record(be, e2, st);
		be->ops->event_sync(be, e2);
		if (i >= 3) {
			ts[i - 3] = be->ops->event_ms(be, e0, e1);
			ta[i - 3] = be->ops->event_ms(be, e1, e2);
		}
	}
	const double ms_s = median(ts, iters), ms_a = median(ta, iters);
	const double bs = 4.0 * (double)n, ba = 30.0 * (double)n;
	printf("{\"what\":\"membound\",\"impl\":\"cuda\",\"params\":%lld,\"sumsq_ms\":%.4f,"
	       "\"sumsq_gbs\":%.1f,\"adamw_ms\":%.4f,\"adamw_gbs\":%.1f,\"gbs\":%.1f}\n",
	       (long long)n, ms_s, bs / (ms_s * 1e-3) / 1e9, ms_a, ba / (ms_a * 1e-3) / 1e9,
	       (bs + ba) / ((ms_s + ms_a) * 1e-3) / 1e9);
	be->ops->event_destroy(be, e0);
	be->ops->event_destroy(be, e1);
	be->ops->event_destroy(be, e2);
	free_all();
}

static void bench_layer(const layer_cfg *L, int T, int iters, double gemm_tf)
{
	const int N = T, C = L->C, F = L->F, nh = L->nh, nkv = L->nkv, hd = L->hd;
	const int QD = nh * hd, KD = nkv * hd;
	const float amp = 1.0f / sqrtf((float)C);
	/* weights */
	void *ln1 = rand_bf16(C, 1, 3), *ln2 = rand_bf16(C, 1, 4);
	void *Wq = rand_bf16((int64_t)QD * C, amp, 5), *Wk = rand_bf16((int64_t)KD * C, amp, 6);
	void *Wv = rand_bf16((int64_t)KD * C, amp, 7), *Wo = rand_bf16((int64_t)C * QD, amp, 8);
	void *Wg = rand_bf16((int64_t)F * C, amp, 9), *Wu = rand_bf16((int64_t)F * C, amp, 10);
	void *Wd = rand_bf16((int64_t)C * F, 1.0f / sqrtf((float)F), 11);
	/* fp32 weight gradients */
	float *dln1 = dalloc((uint64_t)C * 4), *dln2 = dalloc((uint64_t)C * 4);
	float *dWq = dalloc((uint64_t)QD * C * 4), *dWk = dalloc((uint64_t)KD * C * 4);
	float *dWv = dalloc((uint64_t)KD * C * 4), *dWo = dalloc((uint64_t)C * QD * 4);
	float *dWg = dalloc((uint64_t)F * C * 4), *dWu = dalloc((uint64_t)F * C * 4);
	float *dWd = dalloc((uint64_t)C * F * 4);
	/* activations */
	void *x = rand_bf16((int64_t)N * C, 1, 12), *dy0 = rand_bf16((int64_t)N * C, 0.01f, 13);
	const uint64_t nc = (uint64_t)N * C * 2, nf = (uint64_t)N * F * 2;
	void *h1 = dalloc(nc), *q = dalloc((uint64_t)N * QD * 2), *k = dalloc((uint64_t)N * KD * 2);
	void *v = dalloc((uint64_t)N * KD * 2), *att = dalloc((uint64_t)N * QD * 2), *o = dalloc(nc);
	void *x2 = dalloc(nc), *h2 = dalloc(nc), *g = dalloc(nf), *u = dalloc(nf), *a = dalloc(nf);
	void *m = dalloc(nc), *y = dalloc(nc);
	float *rstd1 = dalloc((uint64_t)N * 4), *rstd2 = dalloc((uint64_t)N * 4);
	float *lse = dalloc((uint64_t)nh * N * 4);
	void *dx = dalloc(nc), *da = dalloc(nf), *dg = dalloc(nf), *du = dalloc(nf), *dh = dalloc(nc);
	void *datt = dalloc((uint64_t)N * QD * 2), *dq = dalloc((uint64_t)N * QD * 2);
	void *dk = dalloc((uint64_t)N * KD * 2), *dv = dalloc((uint64_t)N * KD * 2);
	float *invf = dalloc((uint64_t)hd / 2 * 4);
	float hinv[256];
	for (int i = 0; i < hd / 2; i++)
		hinv[i] = (float)pow(500000.0, -2.0 * i / hd);
	be->ops->copy_h2d(be, st, invf, hinv, (uint64_t)hd / 2 * 4);
	const float eps = 1e-5f;

	sw_event *e0, *e1, *e2;
	be->ops->event_create(be, &e0);
	be->ops->event_create(be, &e1);
	be->ops->event_create(be, &e2);
	float tf[64], tb[64], tt[64];
	/* SW_BENCH_WARM_S: the layer runs that many seconds before the timed iterations, so that
	 * they see the clocks the GPU sustains under a training step's load (a few milliseconds
	 * of work from idle may run at the boost clock, above what it holds at its power limit) */
	const char *ew = getenv("SW_BENCH_WARM_S");
	const double warm_s = ew ? atof(ew) : 0;
	const double t0 = now_s();
	int timed = 0;
	for (int it = 0; timed < iters; it++) {
		be->ops->event_record(be, e0, st);
		/* forward */
		be->ops->rmsnorm_fwd(be, st, h1, rstd1, x, ln1, N, C, eps);
		be->ops->matmul_fwd(be, st, q, h1, Wq, NULL, N, C, QD);
		be->ops->matmul_fwd(be, st, k, h1, Wk, NULL, N, C, KD);
		be->ops->matmul_fwd(be, st, v, h1, Wv, NULL, N, C, KD);
		be->ops->rope_fwd(be, st, q, invf, N, T, nh, hd);
		be->ops->rope_fwd(be, st, k, invf, N, T, nkv, hd);
		be->ops->attention_fwd(be, st, att, lse, q, k, v, 1, T, nh, nkv, hd);
		be->ops->matmul_fwd(be, st, o, att, Wo, NULL, N, QD, C);
		be->ops->add(be, st, x2, x, o, (int64_t)N * C);
		be->ops->rmsnorm_fwd(be, st, h2, rstd2, x2, ln2, N, C, eps);
		be->ops->matmul_fwd(be, st, g, h2, Wg, NULL, N, C, F);
		be->ops->matmul_fwd(be, st, u, h2, Wu, NULL, N, C, F);
		be->ops->swiglu_fwd(be, st, a, g, u, (int64_t)N * F);
		be->ops->matmul_fwd(be, st, m, a, Wd, NULL, N, F, C);
		be->ops->add(be, st, y, x2, m, (int64_t)N * C);
		be->ops->event_record(be, e1, st);
		/* backward of sum(y * dy0): dx accumulates the residual stream in place */
		be->ops->copy_d2d(be, st, dx, dy0, nc);
		be->ops->matmul_bwd(be, st, da, dWd, NULL, dx, a, Wd, N, F, C, 0);
		be->ops->swiglu_bwd(be, st, dg, du, da, g, u, (int64_t)N * F);
		be->ops->matmul_bwd(be, st, dh, dWg, NULL, dg, h2, Wg, N, C, F, 0);
		be->ops->matmul_bwd(be, st, dh, dWu, NULL, du, h2, Wu, N, C, F, 1);
		be->ops->rmsnorm_bwd(be, st, dx, dln2, dh, x2, ln2, rstd2, N, C, 0);
		be->ops->matmul_bwd(be, st, datt, dWo, NULL, dx, att, Wo, N, QD, C, 0);
		be->ops->attention_bwd(be, st, dq, dk, dv, datt, q, k, v, att, lse, 1, T, nh, nkv, hd);
		be->ops->rope_bwd(be, st, dq, invf, N, T, nh, hd);
		be->ops->rope_bwd(be, st, dk, invf, N, T, nkv, hd);
		be->ops->matmul_bwd(be, st, dh, dWq, NULL, dq, h1, Wq, N, C, QD, 0);
		be->ops->matmul_bwd(be, st, dh, dWk, NULL, dk, h1, Wk, N, C, KD, 1);
		be->ops->matmul_bwd(be, st, dh, dWv, NULL, dv, h1, Wv, N, C, KD, 1);
		be->ops->rmsnorm_bwd(be, st, dx, dln1, dh, x, ln1, rstd1, N, C, 0);
		be->ops->event_record(be, e2, st);
		be->ops->event_sync(be, e2);
		if (it >= 3 && now_s() - t0 >= warm_s) {
			tf[timed] = be->ops->event_ms(be, e0, e1);
			tb[timed] = be->ops->event_ms(be, e1, e2);
			tt[timed] = be->ops->event_ms(be, e0, e2);
			timed++;
		}
	}
	/* The forward GEMMs alone, as the layer runs them (Y = X W^T; bench/anchor_rates.py times
	 * PyTorch's F.linear at the same shapes): key T x in x out, TFLOP/s. */
	{
		struct { void *y; const void *x, *w; int din, dout; } lin[] = {
			{ q, h1, Wq, C, QD }, { k, h1, Wk, C, KD }, { x2, att, Wo, QD, C },
			{ g, h2, Wg, C, F }, { m, a, Wd, F, C } };
		printf("{\"what\":\"linear_fwd\",\"impl\":\"cuda\",\"T\":%d,\"shapes\":{", T);
		for (size_t i = 0; i < sizeof(lin) / sizeof(lin[0]); i++) {
			float tl[64];
			for (int it = 0; it < iters + 1; it++) {
				be->ops->event_record(be, e0, st);
				be->ops->matmul_fwd(be, st, lin[i].y, lin[i].x, lin[i].w, NULL, N, lin[i].din, lin[i].dout);
				be->ops->event_record(be, e1, st);
				be->ops->event_sync(be, e1);
				if (it >= 1)
					tl[it - 1] = be->ops->event_ms(be, e0, e1);
			}
			const double lms = median(tl, iters);
			printf("%s\"%dx%dx%d\":%.1f", i ? "," : "", N, lin[i].din, lin[i].dout,
			       2.0 * N * lin[i].din * (double)lin[i].dout / (lms * 1e-3) / 1e12);
		}
		printf("}}\n");
	}
	/* Attention alone, to split the time. */
	float ta[64], tab[64];
	for (int it = 0; it < iters + 1; it++) {
		be->ops->event_record(be, e0, st);
		be->ops->attention_fwd(be, st, att, lse, q, k, v, 1, T, nh, nkv, hd);
		be->ops->event_record(be, e1, st);
		be->ops->attention_bwd(be, st, dq, dk, dv, datt, q, k, v, att, lse, 1, T, nh, nkv, hd);
		be->ops->event_record(be, e2, st);
		be->ops->event_sync(be, e2);
		if (it >= 1) {
			ta[it - 1] = be->ops->event_ms(be, e0, e1);
			tab[it - 1] = be->ops->event_ms(be, e1, e2);
		}
	}
	const double P = (double)C * (2.0 * QD + 2.0 * KD) + 3.0 * C * F;
	const double flops = 6.0 * P * N + 6.0 * nh * hd * (double)T * T;  /* causal attention */
	const double ms = median(tt, iters);
	const double tfl = flops / (ms * 1e-3) / 1e12;
	const double afl = 2.0 * nh * hd * (double)T * T;  /* causal attention forward */
	const double am = median(ta, iters), abm = median(tab, iters);
	/* The rate at the planner's accounting (offload/plan_cost.c) of a layer the engine recomputes:
	 * forward, the backward's recompute of the forward, backward (8 FLOPs per GEMM parameter and
	 * token) and attention at 8 T^2 q_dim, over the time of two forwards and one backward. */
	const double fms = median(tf, iters), bms = median(tb, iters);
	const double ptf = (8.0 * P * N + 8.0 * QD * (double)T * T) / ((2.0 * fms + bms) * 1e-3) / 1e12;
	printf("{\"what\":\"layer\",\"impl\":\"cuda\",\"size\":\"%s\",\"T\":%d,\"ms\":%.3f,\"fwd_ms\":%.3f,"
	       "\"bwd_ms\":%.3f,\"tflops\":%.1f,\"mfu\":%.3f,\"attn_fwd_ms\":%.3f,\"attn_fwd_tflops\":%.1f,"
	       "\"attn_bwd_ms\":%.3f,\"attn_bwd_tflops\":%.1f,\"planner_tflops\":%.1f}\n",
	       L->name, T, ms, fms, bms, tfl, tfl / gemm_tf, am,
	       afl / (am * 1e-3) / 1e12, abm, 2.5 * afl / (abm * 1e-3) / 1e12, ptf);
	fflush(stdout);
	be->ops->event_destroy(be, e0);
	be->ops->event_destroy(be, e1);
	be->ops->event_destroy(be, e2);
	free_all();
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 10;
	if (iters < 1 || iters > 64) {
		fprintf(stderr, "cuda_layer: iters must be 1..64\n");
		return 2;
	}
	const char *only = getenv("SW_BENCH_ONLY");  /* e.g. "8B" */
	const char *shape = getenv("SW_BENCH_SHAPE");
	layer_cfg custom = { "custom", 0, 0, 0, 0, 0 };
	const layer_cfg *list = cfgs;
	size_t nlist = sizeof(cfgs) / sizeof(cfgs[0]);
	if (shape) {
		if (sscanf(shape, "%d,%d,%d,%d,%d", &custom.C, &custom.F, &custom.nh, &custom.nkv, &custom.hd) != 5 ||
		    custom.C < 1 || custom.F < 1 || custom.nh < 1 || custom.nkv < 1 || custom.nh % custom.nkv ||
		    custom.hd < 1 || custom.hd > 256 || custom.hd % 2) {
			fprintf(stderr, "cuda_layer: SW_BENCH_SHAPE must be dim,ffn,heads,kv_heads,head_dim "
					"(heads a multiple of kv_heads, head_dim even, at most 256)\n");
			return 2;
		}
		list = &custom;
		nlist = 1;
		only = NULL;
	}
	if (sw_cuda_device_count() <= 0) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	sw_backend_opts o = { .mem_budget = 24ull << 30, .act = SW_DTYPE_BF16 };
	if (sw_backend_create("cuda", &o, &be))
		return 1;
	if (be->ops->stream_create(be, &st))
		return 1;
	double gtf = gemm_rate(iters);
	for (size_t i = 0; i < nlist; i++) {
		if (only && strcmp(only, list[i].name))
			continue;
		const char *seq = getenv("SW_BENCH_SEQ");
		if (!seq)
			seq = strcmp(list[i].name, "70B") ? "2048,4096" : "2048,4096,8192";
		for (const char *p = seq; *p;) {
			char *end;
			long T = strtol(p, &end, 10);
			if (end == p || T < 1 || T > 65536) {
				fprintf(stderr, "cuda_layer: SW_BENCH_SEQ must be lengths 1..65536 separated by commas\n");
				return 2;
			}
			bench_layer(&list[i], (int)T, iters, gtf);
			p = *end == ',' ? end + 1 : end;
		}
	}
	membound_rate(iters);   /* after the layers: at the clocks their sustained work left */
	be->ops->stream_destroy(be, st);
	sw_backend_destroy(be);
	return 0;
}
