/* Causal attention alone, forward and backward, on the CUDA backend (bf16): head dims 64 and 128,
 * GQA 8:1 and 1:1, sequence 1K-32K with the batch chosen so that every row has the same number of
 * tokens (32768), model width 2048 (32 heads of 64, 16 of 128). Prints one JSON line per shape;
 * bench/attn_compare.sh joins them with bench/attn_torch.py's (PyTorch SDPA) into a table.
 *
 * FLOPs are counted as FlashAttention's benchmarks do: forward 4*B*T^2*nh*hd/2 (causal),
 * backward 2.5x the forward (our deterministic backward does 3.5x: it recomputes S and P in its
 * separate dQ pass; the count is the same for every implementation so the ratios compare times).
 * Usage: attn_bench [iters]   (SW_BENCH_HD=64|128 and SW_BENCH_T=<T>[,<T>...] narrow the sweep;
 * SW_BENCH_SHAPES=hd:nh:nkv:T:B[,...] runs those shapes instead, e.g. 128:64:8:4096:1 for the
 * 70B layer's attention) */
#include "core/backend.h"
#include "core/dtype.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKENS 32768
#define WIDTH 2048

static sw_backend *be;
static sw_stream *st;

static void *dalloc(uint64_t bytes)
{
	void *p;
	if (be->ops->dev_alloc(be, bytes, &p)) {
		fprintf(stderr, "attn_bench: arena exhausted (%llu bytes)\n", (unsigned long long)bytes);
		exit(1);
	}
	return p;
}

/* Random bf16 values in [-amp, amp] (never zeros: zeros run faster than real data). */
static void *rand_bf16(int64_t n, float amp, uint64_t seed)
{
	sw_bf16 *h = malloc((size_t)n * 2);
	if (!h)
		exit(1);
	uint64_t x = seed * 2654435761u + 1;
	for (int64_t i = 0; i < n; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		h[i] = sw_f32_to_bf16(((float)(x >> 40) / (float)(1 << 24) * 2.f - 1.f) * amp);
	}
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

/* Whether the comma-separated list l (NULL: everything) holds n. */
static int in_list(const char *l, int n)
{
	if (!l)
		return 1;
	for (char *e; *l; l = *e ? e + 1 : e)
		if (strtol(l, &e, 10) == n)
			return 1;
	return 0;
}

static void bench_shape(int hd, int nh, int nkv, int T, int B, int iters)
{
	const int64_t nq = (int64_t)B * T * nh * hd, nk = (int64_t)B * T * nkv * hd;
	void *q = rand_bf16(nq, 1, 1), *k = rand_bf16(nk, 1, 2), *v = rand_bf16(nk, 1, 3);
	void *dout = rand_bf16(nq, 1, 4);
	void *out = dalloc((uint64_t)nq * 2), *dq = dalloc((uint64_t)nq * 2);
	void *dk = dalloc((uint64_t)nk * 2), *dv = dalloc((uint64_t)nk * 2);
	float *lse = dalloc((uint64_t)B * nh * T * 4);
	sw_event *e0, *e1, *e2;
	be->ops->event_create(be, &e0);
	be->ops->event_create(be, &e1);
	be->ops->event_create(be, &e2);
	float tf[64], tb[64];
	for (int it = 0; it < iters + 2; it++) {
		be->ops->event_record(be, e0, st);
		be->ops->attention_fwd(be, st, out, lse, q, k, v, B, T, nh, nkv, hd);
		be->ops->event_record(be, e1, st);
		be->ops->attention_bwd(be, st, dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hd);
		be->ops->event_record(be, e2, st);
		be->ops->event_sync(be, e2);
		if (it >= 2) {
			tf[it - 2] = be->ops->event_ms(be, e0, e1);
			tb[it - 2] = be->ops->event_ms(be, e1, e2);
		}
	}
	const double fl = 2.0 * B * nh * hd * (double)T * T;
	const double fm = median(tf, iters), bm = median(tb, iters);
	const char *var = getenv("SW_BENCH_IMPL");
	printf("{\"impl\":\"%s\",\"hd\":%d,\"nh\":%d,\"nkv\":%d,\"T\":%d,\"B\":%d,\"fwd_ms\":%.4f,"
	       "\"bwd_ms\":%.4f,\"fwd_tflops\":%.1f,\"bwd_tflops\":%.1f}\n",
	       var ? var : "ours", hd, nh, nkv, T, B, fm, bm, fl / (fm * 1e-3) / 1e12,
	       2.5 * fl / (bm * 1e-3) / 1e12);
	fflush(stdout);
	be->ops->event_destroy(be, e0);
	be->ops->event_destroy(be, e1);
	be->ops->event_destroy(be, e2);
	void *all[] = { q, k, v, dout, out, dq, dk, dv, lse };
	for (int i = 8; i >= 0; i--)
		be->ops->dev_free(be, all[i]);
}

int main(int argc, char **argv)
{
	const int iters = argc > 1 ? atoi(argv[1]) : 10;
	if (iters < 1 || iters > 64) {
		fprintf(stderr, "attn_bench: iters must be 1..64\n");
		return 2;
	}
	if (sw_cuda_device_count() <= 0) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	/* 16 GiB: the backend's scratch (budget/16, at most 512 MiB) then holds the backward's 256 MiB
	 * fixed-point dQ accumulator in one launch, as in a training run with 8 GiB or more */
	sw_backend_opts o = { .mem_budget = 16ull << 30, .act = SW_DTYPE_BF16 };
	if (sw_backend_create("cuda", &o, &be) || be->ops->stream_create(be, &st)) {
		fprintf(stderr, "attn_bench: CUDA backend could not start\n");
		return 1;
	}
	const char *ehd = getenv("SW_BENCH_HD"), *eT = getenv("SW_BENCH_T");
	const char *esh = getenv("SW_BENCH_SHAPES");  /* "hd:nh:nkv:T:B,..." instead of the sweep */
	static const int hds[] = { 64, 128 }, groups[] = { 8, 1 };
	for (const char *p = esh; p && *p;) {
		int hd, nh, nkv, T, B, n = 0;
		if (sscanf(p, "%d:%d:%d:%d:%d%n", &hd, &nh, &nkv, &T, &B, &n) != 5 || hd <= 0 || hd > 256 ||
		    nh <= 0 || nkv <= 0 || nh % nkv || T <= 0 || B <= 0) {
			fprintf(stderr, "attn_bench: SW_BENCH_SHAPES: bad shape at \"%s\" (want hd:nh:nkv:T:B)\n", p);
			return 2;
		}
		bench_shape(hd, nh, nkv, T, B, iters);
		p += n;
		p += *p == ',';
	}
	for (int a = 0; a < 2 && !esh; a++)
		for (int g = 0; g < 2; g++)
			for (int T = 1024; T <= TOKENS; T *= 2) {
				if (!in_list(ehd, hds[a]) || !in_list(eT, T))
					continue;
				bench_shape(hds[a], WIDTH / hds[a], WIDTH / hds[a] / groups[g], T, TOKENS / T, iters);
			}
	be->ops->stream_destroy(be, st);
	sw_backend_destroy(be);
	return 0;
}
