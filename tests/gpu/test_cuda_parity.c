/* Op-by-op parity of the CUDA backend with the CPU backend (the reference): the same inputs
 * (regenerated from the same seed for each backend) go through each op on both, and the outputs
 * are compared. F32 mode (TF32 off): rel 1e-5 on every output. BF16 mode: outputs that are
 * rounded to bf16 may differ by one bf16 ulp where the fp32 values straddle a rounding boundary,
 * and attention's P is rounded to bf16 before P@V on the GPU (tensor cores): rel 1e-2 for
 * bf16 outputs (2e-2 attention backward), 1e-5 for fp32 outputs of GEMM-free paths. AdamW and
 * cast_f32_to_act must match bit for bit. */
#include "core/backend.h"
#include "core/dtype.h"
#include "optim/adamw.h"
#include "tests/check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng;
static int bf, es;

static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

/* Device buffers of one backend, freed together. */
typedef struct { sw_backend *b; sw_stream *s; void *p[32]; int n; } ctx;

static void *dal(ctx *c, uint64_t bytes)
{
	CHECK(c->n < 32);
	CHECK(c->b->ops->dev_alloc(c->b, bytes, &c->p[c->n]) == 0);
	return c->p[c->n++];
}

static void done(ctx *c)
{
	c->b->ops->stream_sync(c->b, c->s);
	while (c->n)
		c->b->ops->dev_free(c->b, c->p[--c->n]);
}

/* n random act values (amp) uploaded; NULL host copy kept by the caller when needed. */
static void *in_act(ctx *c, int64_t n, double amp)
{
	void *h = malloc((size_t)n * es), *d = dal(c, (uint64_t)n * es);
	CHECK(h);
	for (int64_t i = 0; i < n; i++) {
		float v = (float)(urand() * amp);
		if (bf)
			((sw_bf16 *)h)[i] = sw_f32_to_bf16(v);
		else
			((float *)h)[i] = v;
	}
	c->b->ops->copy_h2d(c->b, c->s, d, h, (uint64_t)n * es);
	c->b->ops->stream_sync(c->b, c->s);
	free(h);
	return d;
}

static float *in_f32(ctx *c, int64_t n, double amp)
{
	float *h = malloc((size_t)n * 4), *d = dal(c, (uint64_t)n * 4);
	CHECK(h);
	for (int64_t i = 0; i < n; i++)
		h[i] = (float)(urand() * amp);
	c->b->ops->copy_h2d(c->b, c->s, d, h, (uint64_t)n * 4);
	c->b->ops->stream_sync(c->b, c->s);
	free(h);
	return d;
}

static void *in_raw(ctx *c, const void *h, uint64_t bytes)
{
	void *d = dal(c, bytes);
	c->b->ops->copy_h2d(c->b, c->s, d, h, bytes);
	c->b->ops->stream_sync(c->b, c->s);
	return d;
}

/* Output as fp32 host values (act converted). */
static float *out_act(ctx *c, const void *d, int64_t n)
{
	float *h = malloc((size_t)n * 4);
	void *t = malloc((size_t)n * es);
	CHECK(h && t);
	c->b->ops->copy_d2h(c->b, c->s, t, d, (uint64_t)n * es);
	c->b->ops->stream_sync(c->b, c->s);
	for (int64_t i = 0; i < n; i++)
		h[i] = bf ? sw_bf16_to_f32(((sw_bf16 *)t)[i]) : ((float *)t)[i];
	free(t);
	return h;
}

static float *out_f32(ctx *c, const void *d, int64_t n)
{
	float *h = malloc((size_t)n * 4);
	CHECK(h);
	c->b->ops->copy_d2h(c->b, c->s, h, d, (uint64_t)n * 4);
	c->b->ops->stream_sync(c->b, c->s);
	return h;
}

#define MAXOUT 8
typedef struct { float *v[MAXOUT]; int64_t n[MAXOUT]; const char *name[MAXOUT]; double tol[MAXOUT]; int k; } outs;

static void put(outs *o, const char *name, float *v, int64_t n, double tol_f32, double tol_bf16)
{
	o->name[o->k] = name;
	o->v[o->k] = v;
	o->n[o->k] = n;
	o->tol[o->k] = bf ? tol_bf16 : tol_f32;
	o->k++;
}

typedef void (*op_fn)(ctx *c, outs *o);

/* ------------------------------------------------------------------------------ the ops */
static void op_embedding(ctx *c, outs *o)
{
	const int N = 77, C = 48, V = 40;
	int32_t tok[77];
	for (int n = 0; n < N; n++)
		tok[n] = (int32_t)((urand() * 0.5 + 0.5) * 9) * 3 % V;
	int32_t *dt = in_raw(c, tok, sizeof(tok));
	void *wte = in_act(c, (int64_t)V * C, 1), *dy = in_act(c, (int64_t)N * C, 1);
	float *dw = in_f32(c, (int64_t)V * C, 1);
	void *out = dal(c, (uint64_t)N * C * es);
	c->b->ops->embedding_fwd(c->b, c->s, out, dt, wte, N, C);
	c->b->ops->embedding_bwd(c->b, c->s, dw, dy, dt, N, C, V);
	put(o, "embedding_fwd", out_act(c, out, (int64_t)N * C), (int64_t)N * C, 0, 0);
	put(o, "embedding_bwd dw", out_f32(c, dw, (int64_t)V * C), (int64_t)V * C, 1e-6, 1e-6);
}

static void op_rmsnorm(ctx *c, outs *o)
{
	const int N = 45, C = 200;
	void *x = in_act(c, (int64_t)N * C, 2), *w = in_act(c, C, 1), *dy = in_act(c, (int64_t)N * C, 1);
	void *dx = in_act(c, (int64_t)N * C, 1);
	float *dw = in_f32(c, C, 1), *rstd = dal(c, (uint64_t)N * 4);
	void *out = dal(c, (uint64_t)N * C * es);
	c->b->ops->rmsnorm_fwd(c->b, c->s, out, rstd, x, w, N, C, 1e-5f);
	c->b->ops->rmsnorm_bwd(c->b, c->s, dx, dw, dy, x, w, rstd, N, C, 0);
	put(o, "rmsnorm out", out_act(c, out, (int64_t)N * C), (int64_t)N * C, 1e-5, 1e-2);
	put(o, "rmsnorm rstd", out_f32(c, rstd, N), N, 1e-5, 1e-5);
	put(o, "rmsnorm dinp", out_act(c, dx, (int64_t)N * C), (int64_t)N * C, 1e-5, 1e-2);
	put(o, "rmsnorm dw", out_f32(c, dw, C), C, 1e-5, 1e-5);
}

static void op_matmul(ctx *c, outs *o)
{
	const int N = 50, C = 96, OC = 72;
	void *x = in_act(c, (int64_t)N * C, 1), *w = in_act(c, (int64_t)OC * C, 1), *bias = in_act(c, OC, 1);
	void *dy = in_act(c, (int64_t)N * OC, 1), *dx = in_act(c, (int64_t)N * C, 1);
	float *dw = in_f32(c, (int64_t)OC * C, 1), *db = in_f32(c, OC, 1);
	void *out = dal(c, (uint64_t)N * OC * es);
	c->b->ops->matmul_fwd(c->b, c->s, out, x, w, bias, N, C, OC);
	c->b->ops->matmul_bwd(c->b, c->s, dx, dw, db, dy, x, w, N, C, OC, 1);
	put(o, "matmul out", out_act(c, out, (int64_t)N * OC), (int64_t)N * OC, 1e-5, 1e-2);
	put(o, "matmul dinp (accum)", out_act(c, dx, (int64_t)N * C), (int64_t)N * C, 1e-5, 1e-2);
	put(o, "matmul dw", out_f32(c, dw, (int64_t)OC * C), (int64_t)OC * C, 1e-5, 1e-5);
	put(o, "matmul dbias", out_f32(c, db, OC), OC, 1e-5, 1e-5);
}

static void op_rope(ctx *c, outs *o)
{
	const int T = 33, N = 2 * T, nh = 4, hd = 32;
	float inv[16];
	for (int i = 0; i < hd / 2; i++)
		inv[i] = (float)pow(500000.0, -2.0 * i / hd);
	float *di = in_raw(c, inv, sizeof(inv));
	void *x = in_act(c, (int64_t)N * nh * hd, 1), *g = in_act(c, (int64_t)N * nh * hd, 1);
	c->b->ops->rope_fwd(c->b, c->s, x, di, N, T, nh, hd);
	c->b->ops->rope_bwd(c->b, c->s, g, di, N, T, nh, hd);
	put(o, "rope_fwd", out_act(c, x, (int64_t)N * nh * hd), (int64_t)N * nh * hd, 1e-5, 1e-2);
	put(o, "rope_bwd", out_act(c, g, (int64_t)N * nh * hd), (int64_t)N * nh * hd, 1e-5, 1e-2);
}

static int att_hd = 64;

static void op_attention(ctx *c, outs *o)
{
	const int B = 2, T = 150, nh = 4, nkv = 2, hd = att_hd;
	const int64_t nq = (int64_t)B * T * nh * hd, nk = (int64_t)B * T * nkv * hd;
	void *q = in_act(c, nq, 1), *k = in_act(c, nk, 1), *v = in_act(c, nk, 1), *dy = in_act(c, nq, 1);
	void *out = dal(c, (uint64_t)nq * es), *dq = dal(c, (uint64_t)nq * es);
	void *dk = dal(c, (uint64_t)nk * es), *dv = dal(c, (uint64_t)nk * es);
	float *lse = dal(c, (uint64_t)B * nh * T * 4);
	c->b->ops->attention_fwd(c->b, c->s, out, lse, q, k, v, B, T, nh, nkv, hd);
	c->b->ops->attention_bwd(c->b, c->s, dq, dk, dv, dy, q, k, v, out, lse, B, T, nh, nkv, hd);
	put(o, "attention out", out_act(c, out, nq), nq, 1e-5, 1e-2);
	put(o, "attention lse", out_f32(c, lse, (int64_t)B * nh * T), (int64_t)B * nh * T, 1e-5, 1e-4);
	put(o, "attention dq", out_act(c, dq, nq), nq, 1e-5, 2e-2);
	put(o, "attention dk", out_act(c, dk, nk), nk, 1e-5, 2e-2);
	put(o, "attention dv", out_act(c, dv, nk), nk, 1e-5, 2e-2);
}

static void op_swiglu_add(ctx *c, outs *o)
{
	const int64_t n = 2053;
	void *g = in_act(c, n, 4), *u = in_act(c, n, 2), *dy = in_act(c, n, 1);
	void *out = dal(c, (uint64_t)n * es), *dg = dal(c, (uint64_t)n * es), *du = dal(c, (uint64_t)n * es);
	void *sum = dal(c, (uint64_t)n * es);
	c->b->ops->swiglu_fwd(c->b, c->s, out, g, u, n);
	c->b->ops->swiglu_bwd(c->b, c->s, dg, du, dy, g, u, n);
	c->b->ops->add(c->b, c->s, sum, g, u, n);
	put(o, "swiglu out", out_act(c, out, n), n, 1e-5, 1e-2);
	put(o, "swiglu dgate", out_act(c, dg, n), n, 1e-5, 1e-2);
	put(o, "swiglu dup", out_act(c, du, n), n, 1e-5, 1e-2);
	put(o, "add", out_act(c, sum, n), n, 0, 0);
}

static void op_head(ctx *c, outs *o)
{
	const int N = 40, C = 64, V = 3001;
	int32_t tg[40];
	int un = 0;
	for (int i = 0; i < N; i++) {
		tg[i] = i % 7 == 2 ? -100 : (int32_t)((urand() * 0.5 + 0.5) * (V - 1));
		un += tg[i] >= 0;
	}
	int32_t *dt = in_raw(c, tg, sizeof(tg));
	void *x = in_act(c, (int64_t)N * C, 1), *w = in_act(c, (int64_t)V * C, 0.5);
	float *dw = in_f32(c, (int64_t)V * C, 0.01), *loss = dal(c, (uint64_t)N * 4);
	float *lg = dal(c, (uint64_t)N * V * 4);
	void *dx = dal(c, (uint64_t)N * C * es);
	c->b->ops->head_loss(c->b, c->s, loss, dx, dw, x, w, dt, 1.0f / (float)un, N, C, V);
	c->b->ops->head_logits(c->b, c->s, lg, x, w, N, C, V);
	put(o, "head_loss losses", out_f32(c, loss, N), N, 1e-5, 1e-5);
	put(o, "head_loss dinp", out_act(c, dx, (int64_t)N * C), (int64_t)N * C, 1e-5, 1e-2);
	put(o, "head_loss dw", out_f32(c, dw, (int64_t)V * C), (int64_t)V * C, 1e-5, 1e-2);
	put(o, "head_logits", out_f32(c, lg, (int64_t)N * V), (int64_t)N * V, 1e-5, 1e-5);
}

static void op_sumsq(ctx *c, outs *o)
{
	const int64_t n = 300007;
	float *x = in_f32(c, n, 3);
	double *d = dal(c, 8), h;
	c->b->ops->sumsq(c->b, c->s, d, x, n);
	c->b->ops->copy_d2h(c->b, c->s, &h, d, 8);
	c->b->ops->stream_sync(c->b, c->s);
	float *v = malloc(sizeof(double));
	CHECK(v);
	memcpy(v, &h, sizeof(double));  /* the double's bits; run_both compares it as a double */
	put(o, "sumsq", v, 2, 1e-12, 1e-12);
}

/* AdamW and the cast: outputs compared bit for bit (tol 0 on the raw bits as floats). */
static void op_adamw_cast(ctx *c, outs *o)
{
	const int64_t n = 5001;
	float *p = in_f32(c, n, 1), *m = in_f32(c, n, 0.1), *g = in_f32(c, n, 1);
	float *vh = malloc((size_t)n * 4);
	CHECK(vh);
	for (int64_t i = 0; i < n; i++)
		vh[i] = (float)fabs(urand() * 0.1);
	float *v = in_raw(c, vh, (uint64_t)n * 4);
	free(vh);
	void *p16 = dal(c, (uint64_t)n * es), *cst = dal(c, (uint64_t)n * es);
	sw_adamw_hparams hp = { 1e-3, 0.9, 0.95, 1e-8, 0.1 };
	sw_adamw_args a = sw_adamw_args_make(&hp, 1e-3, 3, 1, 0.7);
	c->b->ops->adamw(c->b, c->s, p, m, v, g, p16, n, &a);
	c->b->ops->cast_f32_to_act(c->b, c->s, cst, g, n);
	put(o, "adamw p32", out_f32(c, p, n), n, 0, 0);
	put(o, "adamw m", out_f32(c, m, n), n, 0, 0);
	put(o, "adamw v", out_f32(c, v, n), n, 0, 0);
	put(o, "adamw p16", out_act(c, p16, n), n, 0, 0);
	put(o, "cast_f32_to_act", out_act(c, cst, n), n, 0, 0);
}

static double rel(const float *a, const float *b, int64_t n, int64_t *diff)
{
	double num = 0, den = 0;
	*diff = 0;
	for (int64_t i = 0; i < n; i++) {
		if (a[i] != a[i] || b[i] != b[i])
			return INFINITY;
		double d = (double)a[i] - b[i];
		*diff += a[i] != b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_both(sw_backend *gpu, sw_stream *gs, sw_backend *cpu, sw_stream *cs, const char *what,
		     op_fn fn, uint64_t seed)
{
	outs og = { 0 }, oc = { 0 };
	ctx cg = { gpu, gs, { 0 }, 0 }, cc = { cpu, cs, { 0 }, 0 };
	rng = seed;
	fn(&cg, &og);
	done(&cg);
	rng = seed;
	fn(&cc, &oc);
	done(&cc);
	CHECK(og.k == oc.k);
	for (int i = 0; i < og.k; i++) {
		int64_t nd;
		double e;
		if (!strcmp(og.name[i], "sumsq")) {
			double a, b;
			memcpy(&a, og.v[i], 8);
			memcpy(&b, oc.v[i], 8);
			e = fabs(a - b) / fabs(b);
			nd = a != b;
		} else {
			e = rel(og.v[i], oc.v[i], og.n[i], &nd);
		}
		printf("  %-5s %-10s %-22s rel %.3g (tol %.0e), %lld of %lld elements differ\n", bf ? "bf16" : "fp32",
		       what, og.name[i], e, og.tol[i], (long long)nd, (long long)og.n[i]);
		if (og.tol[i] == 0)
			CHECKF(!memcmp(og.v[i], oc.v[i], (size_t)og.n[i] * 4), "%s: not bit-identical", og.name[i]);
		else
			CHECKF(e <= og.tol[i], "%s %s: rel %.3g > %.0e", what, og.name[i], e, og.tol[i]);
		free(og.v[i]);
		free(oc.v[i]);
	}
}

int main(void)
{
	if (sw_cuda_device_count() <= 0)
		SKIP("no CUDA device");
	for (int mode = 0; mode < 2; mode++) {
		sw_backend_opts o = { .mem_budget = 512ull << 20, .act = mode ? SW_DTYPE_BF16 : SW_DTYPE_F32 };
		sw_backend *gpu, *cpu;
		sw_stream *gs, *cs;
		CHECK(sw_backend_create("cuda", &o, &gpu) == 0);
		o.threads = 4;
		CHECK(sw_backend_create("cpu", &o, &cpu) == 0);
		CHECK(gpu->ops->stream_create(gpu, &gs) == 0 && cpu->ops->stream_create(cpu, &cs) == 0);
		bf = mode;
		es = sw_dtype_size(gpu->act);
		run_both(gpu, gs, cpu, cs, "embedding", op_embedding, 11);
		run_both(gpu, gs, cpu, cs, "rmsnorm", op_rmsnorm, 12);
		run_both(gpu, gs, cpu, cs, "matmul", op_matmul, 13);
		run_both(gpu, gs, cpu, cs, "rope", op_rope, 14);
		att_hd = 64;
		run_both(gpu, gs, cpu, cs, "attn hd64", op_attention, 15);
		att_hd = 128;
		run_both(gpu, gs, cpu, cs, "attn hd128", op_attention, 16);
		att_hd = 32;
		run_both(gpu, gs, cpu, cs, "attn hd32", op_attention, 17);
		run_both(gpu, gs, cpu, cs, "swiglu", op_swiglu_add, 18);
		run_both(gpu, gs, cpu, cs, "head", op_head, 19);
		run_both(gpu, gs, cpu, cs, "sumsq", op_sumsq, 20);
		run_both(gpu, gs, cpu, cs, "adamw", op_adamw_cast, 21);
		gpu->ops->stream_destroy(gpu, gs);
		cpu->ops->stream_destroy(cpu, cs);
		sw_backend_destroy(gpu);
		sw_backend_destroy(cpu);
	}
	printf("CUDA backend matches the CPU backend op by op\n");
	return 0;
}
