/* Speed of the CPU backend on a small LLaMA-shaped training step (forward, per-layer
 * recomputation, backward, AdamW), with the time per op kind. It checks only that the loss is
 * finite and near ln(V) at init, and that one step of plain descent lowers it on the same batch.
 * The numbers are for reading (and for tuning the block sizes), not a pass/fail threshold.
 *
 * Usage: test_cpu_step [dim layers T vocab threads bf16 steps]
 * (default 256 4 256 4096 2 1 2: about a second on 2 cores). */
#include "core/backend.h"
#include "core/log.h"
#include "optim/adamw.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

enum { OP_EMB, OP_NORM, OP_MATMUL, OP_ROPE, OP_ATTN, OP_SWIGLU, OP_ADD, OP_HEAD, OP_ADAM, OP_N };
static const char *op_names[OP_N] = { "embedding", "rmsnorm", "matmul", "rope", "attention",
				      "swiglu", "add", "head_loss", "adamw+sumsq" };
static double op_time[OP_N];
static double t_mark;
static void tick(int op)
{
	double t = sw_now();
	op_time[op] += t - t_mark;
	t_mark = t;
}

typedef struct layer {
	void *wn1, *wq, *wk, *wv, *wo, *wn2, *wg, *wu, *wd;          /* act */
	float *gn1, *gq, *gk, *gv, *go, *gn2, *gg, *gu, *gd;         /* fp32 grads */
} layer;

static sw_backend *be;
static void *dalloc(uint64_t bytes)
{
	void *p;
	CHECKF(be->ops->dev_alloc(be, bytes, &p) == 0, "arena too small");
	return p;
}

static uint64_t rs = 88172645463325252ull;
static float rndf(void)
{
	rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
	return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
/* A weight (n act) with uniform values of the given scale, plus its fp32 master and grad. */
static void *weight(int64_t n, float scale, float **grad, float **master)
{
	float *h = malloc((size_t)n * 4);
	CHECK(h);
	for (int64_t i = 0; i < n; i++)
		h[i] = scale == 1.0f ? 1.0f : rndf() * scale;
	float *p32 = dalloc((uint64_t)n * 4);
	be->ops->copy_h2d(be, NULL, p32, h, (uint64_t)n * 4);
	void *w = dalloc((uint64_t)n * (uint64_t)sw_dtype_size(be->act));
	be->ops->cast_f32_to_act(be, NULL, w, p32, n);
	*master = p32;
	*grad = dalloc((uint64_t)n * 4);
	be->ops->memset0(be, NULL, *grad, (uint64_t)n * 4);
	free(h);
	return w;
}

int main(int argc, char **argv)
{
	int dim = 256, L = 4, T = 256, V = 4096, threads = 2, bf = 1, steps = 2;
	if (argc > 1) dim = atoi(argv[1]);
	if (argc > 2) L = atoi(argv[2]);
	if (argc > 3) T = atoi(argv[3]);
	if (argc > 4) V = atoi(argv[4]);
	if (argc > 5) threads = atoi(argv[5]);
	if (argc > 6) bf = atoi(argv[6]);
	if (argc > 7) steps = atoi(argv[7]);
	int hd = 64, nh = dim / hd, nkv = nh > 1 ? nh / 2 : 1, F = dim * 8 / 3 / 64 * 64, N = T;
	int kvd = nkv * hd;
	sw_backend_opts o = { .mem_budget = 2ull << 30, .act = bf ? SW_DTYPE_BF16 : SW_DTYPE_F32,
			      .threads = threads };
	CHECK(sw_backend_create("cpu", &o, &be) == 0);
	int es = sw_dtype_size(be->act);
	printf("model: dim %d, layers %d, heads %d/%d x %d, ffn %d, vocab %d, T %d; %s, %s\n", dim, L,
	       nh, nkv, hd, F, V, T, be->device_name, sw_dtype_name(be->act));

	/* parameters: fp32 master, act copy, fp32 grad, m, v */
	int64_t nparam = 0;
	layer *ly = calloc((size_t)L, sizeof(*ly));
	float *masters[16 * 64], *grads[16 * 64];
	void *acts[16 * 64];
	int64_t sizes[16 * 64];
	int np = 0;
#define PARAM(field, gfield, n, scale) do { float *m_; \
	field = weight(n, scale, &gfield, &m_); masters[np] = m_; grads[np] = gfield; \
	acts[np] = field; sizes[np++] = n; nparam += n; } while (0)
	float *gwte;
	void *wte;
	float ws = 1.0f / sqrtf((float)dim);
	PARAM(wte, gwte, (int64_t)V * dim, 0.02f);
	for (int l = 0; l < L; l++) {
		layer *y = &ly[l];
		PARAM(y->wn1, y->gn1, dim, 1.0f);
		PARAM(y->wq, y->gq, (int64_t)dim * dim, ws);
		PARAM(y->wk, y->gk, (int64_t)kvd * dim, ws);
		PARAM(y->wv, y->gv, (int64_t)kvd * dim, ws);
		PARAM(y->wo, y->go, (int64_t)dim * dim, ws);
		PARAM(y->wn2, y->gn2, dim, 1.0f);
		PARAM(y->wg, y->gg, (int64_t)F * dim, ws);
		PARAM(y->wu, y->gu, (int64_t)F * dim, ws);
		PARAM(y->wd, y->gd, (int64_t)dim * F, 1.0f / sqrtf((float)F));
	}
	float *gnf;
	void *wnf;
	PARAM(wnf, gnf, dim, 1.0f);
	float *mom[16 * 64], *var[16 * 64];
	for (int i = 0; i < np; i++) {
		mom[i] = dalloc((uint64_t)sizes[i] * 4);
		var[i] = dalloc((uint64_t)sizes[i] * 4);
		be->ops->memset0(be, NULL, mom[i], (uint64_t)sizes[i] * 4);
		be->ops->memset0(be, NULL, var[i], (uint64_t)sizes[i] * 4);
	}

	/* activations: checkpoints x[l] (N,dim) and one layer's worth of scratch */
	void **xs = calloc((size_t)L + 1, sizeof(void *));
	for (int l = 0; l <= L; l++)
		xs[l] = dalloc((uint64_t)N * dim * es);
	void *h1 = dalloc((uint64_t)N * dim * es), *q = dalloc((uint64_t)N * dim * es);
	void *k = dalloc((uint64_t)N * kvd * es), *v = dalloc((uint64_t)N * kvd * es);
	void *att = dalloc((uint64_t)N * dim * es), *x2 = dalloc((uint64_t)N * dim * es);
	void *h2 = dalloc((uint64_t)N * dim * es), *g = dalloc((uint64_t)N * F * es);
	void *u = dalloc((uint64_t)N * F * es), *sg = dalloc((uint64_t)N * F * es);
	void *dx = dalloc((uint64_t)N * dim * es), *dh = dalloc((uint64_t)N * dim * es);
	void *dq = dalloc((uint64_t)N * dim * es), *dk = dalloc((uint64_t)N * kvd * es);
	void *dv = dalloc((uint64_t)N * kvd * es), *datt = dalloc((uint64_t)N * dim * es);
	void *dg = dalloc((uint64_t)N * F * es), *du = dalloc((uint64_t)N * F * es);
	void *dsg = dalloc((uint64_t)N * F * es), *hf = dalloc((uint64_t)N * dim * es);
	float *rstd1 = dalloc((uint64_t)N * 4), *rstd2 = dalloc((uint64_t)N * 4);
	float *rstdf = dalloc((uint64_t)N * 4), *lse = dalloc((uint64_t)nh * T * 4);
	float *losses = dalloc((uint64_t)N * 4), *freq = dalloc((uint64_t)hd / 2 * 4);
	double *ss = dalloc(8);
	int32_t *tok = dalloc((uint64_t)N * 4), *tgt = dalloc((uint64_t)N * 4);
	for (int i = 0; i < hd / 2; i++)
		freq[i] = (float)(1.0 / pow(500000.0, 2.0 * i / hd));
	for (int n = 0; n < N; n++) {
		tok[n] = (int32_t)((n * 7 + 3) % V);
		tgt[n] = n % 17 == 0 ? -100 : (int32_t)((n * 7 + 10) % V);
	}
	int valid = 0;
	for (int n = 0; n < N; n++)
		valid += tgt[n] >= 0;
	printf("parameters: %.2f M; arena used %.1f MiB\n", (double)nparam / 1e6,
	       (double)be->used / 1048576.0);

	const sw_backend_ops *op = be->ops;
	double first_loss = 0, last_loss = 0, t_total = 0;
	for (int step = 0; step < steps + 1; step++) {
		double t0 = sw_now();
		t_mark = t0;
		/* forward; x[l] is layer l's input (the checkpoint) */
		op->embedding_fwd(be, NULL, xs[0], tok, wte, N, dim); tick(OP_EMB);
		for (int l = 0; l < L; l++) {
			layer *y = &ly[l];
			op->rmsnorm_fwd(be, NULL, h1, rstd1, xs[l], y->wn1, N, dim, 1e-5f); tick(OP_NORM);
			op->matmul_fwd(be, NULL, q, h1, y->wq, NULL, N, dim, dim);
			op->matmul_fwd(be, NULL, k, h1, y->wk, NULL, N, dim, kvd);
			op->matmul_fwd(be, NULL, v, h1, y->wv, NULL, N, dim, kvd); tick(OP_MATMUL);
			op->rope_fwd(be, NULL, q, freq, N, T, nh, hd);
			op->rope_fwd(be, NULL, k, freq, N, T, nkv, hd); tick(OP_ROPE);
			op->attention_fwd(be, NULL, att, lse, q, k, v, 1, T, nh, nkv, hd); tick(OP_ATTN);
			op->matmul_fwd(be, NULL, x2, att, y->wo, NULL, N, dim, dim); tick(OP_MATMUL);
			op->add(be, NULL, x2, x2, xs[l], (int64_t)N * dim); tick(OP_ADD);
			op->rmsnorm_fwd(be, NULL, h2, rstd2, x2, y->wn2, N, dim, 1e-5f); tick(OP_NORM);
			op->matmul_fwd(be, NULL, g, h2, y->wg, NULL, N, dim, F);
			op->matmul_fwd(be, NULL, u, h2, y->wu, NULL, N, dim, F); tick(OP_MATMUL);
			op->swiglu_fwd(be, NULL, sg, g, u, (int64_t)N * F); tick(OP_SWIGLU);
			op->matmul_fwd(be, NULL, xs[l + 1], sg, y->wd, NULL, N, F, dim); tick(OP_MATMUL);
			op->add(be, NULL, xs[l + 1], xs[l + 1], x2, (int64_t)N * dim); tick(OP_ADD);
		}
		op->rmsnorm_fwd(be, NULL, hf, rstdf, xs[L], wnf, N, dim, 1e-5f); tick(OP_NORM);
		int last = step == steps;
		op->head_loss(be, NULL, losses, last ? NULL : dh, last ? NULL : gwte, hf, wte, tgt,
			      1.0f / (float)valid, N, dim, V); tick(OP_HEAD);
		double loss = 0;
		for (int n = 0; n < N; n++)
			loss += losses[n];
		loss /= valid;
		CHECKF(isfinite(loss), "loss is %g", loss);
		if (step == 0)
			first_loss = loss;
		last_loss = loss;
		if (last)
			break;
		/* backward with per-layer recomputation from the checkpoint */
		op->memset0(be, NULL, dx, (uint64_t)N * dim * es);
		op->rmsnorm_bwd(be, NULL, dx, gnf, dh, xs[L], wnf, rstdf, N, dim, 0); tick(OP_NORM);
		for (int l = L - 1; l >= 0; l--) {
			layer *y = &ly[l];
			op->rmsnorm_fwd(be, NULL, h1, rstd1, xs[l], y->wn1, N, dim, 1e-5f); tick(OP_NORM);
			op->matmul_fwd(be, NULL, q, h1, y->wq, NULL, N, dim, dim);
			op->matmul_fwd(be, NULL, k, h1, y->wk, NULL, N, dim, kvd);
			op->matmul_fwd(be, NULL, v, h1, y->wv, NULL, N, dim, kvd); tick(OP_MATMUL);
			op->rope_fwd(be, NULL, q, freq, N, T, nh, hd);
			op->rope_fwd(be, NULL, k, freq, N, T, nkv, hd); tick(OP_ROPE);
			op->attention_fwd(be, NULL, att, lse, q, k, v, 1, T, nh, nkv, hd); tick(OP_ATTN);
			op->matmul_fwd(be, NULL, x2, att, y->wo, NULL, N, dim, dim); tick(OP_MATMUL);
			op->add(be, NULL, x2, x2, xs[l], (int64_t)N * dim); tick(OP_ADD);
			op->rmsnorm_fwd(be, NULL, h2, rstd2, x2, y->wn2, N, dim, 1e-5f); tick(OP_NORM);
			op->matmul_fwd(be, NULL, g, h2, y->wg, NULL, N, dim, F);
			op->matmul_fwd(be, NULL, u, h2, y->wu, NULL, N, dim, F); tick(OP_MATMUL);
			op->swiglu_fwd(be, NULL, sg, g, u, (int64_t)N * F); tick(OP_SWIGLU);
			/* dx holds d(x[l+1]); the residual passes it to x2 unchanged */
			op->matmul_bwd(be, NULL, dsg, y->gd, NULL, dx, sg, y->wd, N, F, dim, 0); tick(OP_MATMUL);
			op->swiglu_bwd(be, NULL, dg, du, dsg, g, u, (int64_t)N * F); tick(OP_SWIGLU);
			op->matmul_bwd(be, NULL, dh, y->gg, NULL, dg, h2, y->wg, N, dim, F, 0);
			op->matmul_bwd(be, NULL, dh, y->gu, NULL, du, h2, y->wu, N, dim, F, 1); tick(OP_MATMUL);
			op->rmsnorm_bwd(be, NULL, dx, y->gn2, dh, x2, y->wn2, rstd2, N, dim, 0); tick(OP_NORM);
			op->matmul_bwd(be, NULL, datt, y->go, NULL, dx, att, y->wo, N, dim, dim, 0); tick(OP_MATMUL);
			op->attention_bwd(be, NULL, dq, dk, dv, datt, q, k, v, att, lse, 1, T, nh, nkv, hd);
			tick(OP_ATTN);
			op->rope_bwd(be, NULL, dq, freq, N, T, nh, hd);
			op->rope_bwd(be, NULL, dk, freq, N, T, nkv, hd); tick(OP_ROPE);
			op->matmul_bwd(be, NULL, dh, y->gq, NULL, dq, h1, y->wq, N, dim, dim, 0);
			op->matmul_bwd(be, NULL, dh, y->gk, NULL, dk, h1, y->wk, N, dim, kvd, 1);
			op->matmul_bwd(be, NULL, dh, y->gv, NULL, dv, h1, y->wv, N, dim, kvd, 1); tick(OP_MATMUL);
			op->rmsnorm_bwd(be, NULL, dx, y->gn1, dh, xs[l], y->wn1, rstd1, N, dim, 0); tick(OP_NORM);
		}
		op->embedding_bwd(be, NULL, gwte, dx, tok, N, dim, V); tick(OP_EMB);
		/* optimizer: global norm, then plain descent (lr large, no moments) so that the
		 * loss on the same batch must fall; the AdamW op is timed alongside */
		double norm2 = 0;
		for (int i = 0; i < np; i++) {
			op->sumsq(be, NULL, ss, grads[i], sizes[i]);
			norm2 += *ss;
		}
		sw_adamw_hparams hp = { 1e-3, 0.9, 0.95, 1e-8, 0.0 };
		sw_adamw_args a = sw_adamw_args_make(&hp, 1e-3, step + 1, 0, 1.0);
		for (int i = 0; i < np; i++) {
			op->adamw(be, NULL, masters[i], mom[i], var[i], grads[i], acts[i], sizes[i], &a);
			op->memset0(be, NULL, grads[i], (uint64_t)sizes[i] * 4);
		}
		tick(OP_ADAM);
		double dt = sw_now() - t0;
		t_total += dt;
		printf("step %d: loss %.4f, grad norm %.3f, %.3f s, %.0f tokens/s\n", step, loss,
		       sqrt(norm2), dt, N / dt);
	}
	printf("after %d steps on the same batch: loss %.4f -> %.4f (ln V = %.4f)\n", steps,
	       first_loss, last_loss, log((double)V));
	CHECKF(fabs(first_loss - log((double)V)) < 1.0, "initial loss %.3f far from ln V", first_loss);
	CHECKF(last_loss < first_loss, "loss did not fall: %.4f -> %.4f", first_loss, last_loss);
	double tsum = 0;
	for (int i = 0; i < OP_N; i++)
		tsum += op_time[i];
	printf("time per op kind (all steps, forward + recompute + backward):\n");
	for (int i = 0; i < OP_N; i++)
		printf("  %-12s %8.3f s %5.1f%%\n", op_names[i], op_time[i], 100 * op_time[i] / tsum);
	printf("training: %.0f tokens/s over %d steps\n", steps * N / t_total, steps);
	sw_backend_destroy(be);
	free(ly);
	free(xs);
	return 0;
}
