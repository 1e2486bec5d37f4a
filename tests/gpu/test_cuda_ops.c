/* Every op of the CUDA backend against fp64 references computed here from the math, in both
 * activation modes: F32 (exact-parity mode, TF32 off) within rel 1e-5, BF16 within stated
 * tolerances (inputs are rounded to bf16 first, so the reference sees the same inputs; the
 * error left is the rounding of bf16 outputs and, in attention, of P to bf16). Each op also runs
 * twice on the same inputs and must give identical bits (determinism). Outputs are poisoned
 * before each run so an unwritten element fails. */
#include "core/backend.h"
#include "core/dtype.h"
#include "optim/adamw.h"
#include "tests/check.h"

#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sw_backend *be;
static sw_stream *st;
static int bf;            /* current mode is bf16 */
static int es;            /* element size of act */
static uint64_t rng = 88172645463325252ull;

static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

static float *rand_f(int64_t n, double amp)
{
	float *p = malloc((size_t)n * 4);
	CHECK(p);
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)(urand() * amp);
	return p;
}

/* Rounds host values to what act can hold, so references use the device's inputs. */
static void round_act(float *p, int64_t n)
{
	if (bf)
		for (int64_t i = 0; i < n; i++)
			p[i] = sw_round_bf16(p[i]);
}

static void *dalloc(uint64_t bytes)
{
	void *p;
	CHECKF(be->ops->dev_alloc(be, bytes, &p) == 0, "dev_alloc %llu", (unsigned long long)bytes);
	return p;
}

static void sync(void) { be->ops->stream_sync(be, st); }

static void *up_act(const float *h, int64_t n)
{
	void *d = dalloc((uint64_t)n * es);
	void *tmp = malloc((size_t)n * es);
	CHECK(tmp);
	for (int64_t i = 0; i < n; i++) {
		if (bf)
			((sw_bf16 *)tmp)[i] = sw_f32_to_bf16(h[i]);
		else
			((float *)tmp)[i] = h[i];
	}
	be->ops->copy_h2d(be, st, d, tmp, (uint64_t)n * es);
	sync();
	free(tmp);
	return d;
}

static void *up_raw(const void *h, uint64_t bytes)
{
	void *d = dalloc(bytes);
	be->ops->copy_h2d(be, st, d, h, bytes);
	sync();
	return d;
}

static float *down_act(const void *d, int64_t n)
{
	float *h = malloc((size_t)n * 4);
	void *tmp = malloc((size_t)n * es);
	CHECK(h && tmp);
	be->ops->copy_d2h(be, st, tmp, d, (uint64_t)n * es);
	sync();
	for (int64_t i = 0; i < n; i++)
		h[i] = bf ? sw_bf16_to_f32(((sw_bf16 *)tmp)[i]) : ((float *)tmp)[i];
	free(tmp);
	return h;
}

static void *down_raw(const void *d, uint64_t bytes)
{
	void *h = malloc(bytes);
	CHECK(h);
	be->ops->copy_d2h(be, st, h, d, bytes);
	sync();
	return h;
}

/* Fills a device buffer with NaN bytes (0xff) so unwritten outputs are caught. */
static void poison(void *d, uint64_t bytes)
{
	void *h = malloc(bytes);
	CHECK(h);
	memset(h, 0xff, bytes);
	be->ops->copy_h2d(be, st, d, h, bytes);
	sync();
	free(h);
}

static double rel_err_d(const float *a, const double *ref, int64_t n)
{
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)a[i] - ref[i];
		if (a[i] != a[i])
			return INFINITY;
		num += d * d;
		den += ref[i] * ref[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void expect(const char *what, const float *got, const double *ref, int64_t n, double tol)
{
	double e = rel_err_d(got, ref, n);
	printf("  %-6s %-28s rel err %.3g (tol %.0e)\n", bf ? "bf16" : "fp32", what, e, tol);
	CHECKF(e <= tol, "%s: rel err %.3g > %.3g", what, e, tol);
}

/* Bit-identical check of a device buffer against a host snapshot. */
static void expect_same_bits(const char *what, const void *dev, const void *snap, uint64_t bytes)
{
	void *h = down_raw(dev, bytes);
	CHECKF(!memcmp(h, snap, bytes), "%s: second run gave different bits", what);
	free(h);
}

static double *dvec(int64_t n)
{
	double *p = calloc((size_t)n, sizeof(double));
	CHECK(p);
	return p;
}

/* ------------------------------------------------------------------------------------------ */
/* runs: a third of the rows get token 3 (a run far longer than the kernel's rows in flight),
 * the rest one of 7 tokens; C wider than one block's column slice and not a multiple of it. */
static void test_embedding(int N, int C, int V, int runs)
{
	int32_t *tok = malloc((size_t)N * sizeof(*tok));
	CHECK(tok);
	for (int n = 0; n < N; n++) {
		tok[n] = (int32_t)((urand() * 0.5 + 0.5) * 7) * 7 % V;  /* many repeats */
		if (runs && urand() < -1.0 / 3)
			tok[n] = 3;
	}
	float *wte = rand_f((int64_t)V * C, 1), *dout = rand_f((int64_t)N * C, 1), *dw0 = rand_f((int64_t)V * C, 1);
	round_act(wte, (int64_t)V * C);
	round_act(dout, (int64_t)N * C);
	int32_t *dtok = up_raw(tok, (uint64_t)N * sizeof(*tok));
	void *dwte = up_act(wte, (int64_t)V * C), *dout_d = up_act(dout, (int64_t)N * C);
	void *out = dalloc((uint64_t)N * C * es);
	poison(out, (uint64_t)N * C * es);
	be->ops->embedding_fwd(be, st, out, dtok, dwte, N, C);
	float *got = down_act(out, (int64_t)N * C);
	double *ref = dvec((int64_t)N * C);
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++)
			ref[(int64_t)n * C + c] = wte[(int64_t)tok[n] * C + c];
	expect("embedding_fwd", got, ref, (int64_t)N * C, 0);
	free(got);
	free(ref);

	float *ddw = up_raw(dw0, (uint64_t)V * C * 4);
	be->ops->embedding_bwd(be, st, ddw, dout_d, dtok, N, C, V);
	float *g1 = down_raw(ddw, (uint64_t)V * C * 4);
	ref = dvec((int64_t)V * C);
	for (int64_t i = 0; i < (int64_t)V * C; i++)
		ref[i] = dw0[i];
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++)
			ref[(int64_t)tok[n] * C + c] += dout[(int64_t)n * C + c];
	expect("embedding_bwd", g1, ref, (int64_t)V * C, 1e-6);
	/* determinism: same inputs again */
	be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)V * C * 4);
	be->ops->embedding_bwd(be, st, ddw, dout_d, dtok, N, C, V);
	expect_same_bits("embedding_bwd", ddw, g1, (uint64_t)V * C * 4);
	free(g1);
	free(ref);
	free(wte);
	free(dout);
	free(dw0);
	free(tok);
}

/* Sets kernel-form switch `name` to `a`, or to `b` where it is `a` already (the backend reads it
 * at each call), so that a test runs the other form too and compares. */
static void env_other(const char *name, const char *a, const char *b)
{
	const char *e = getenv(name);
	setenv(name, e && !strcmp(e, a) ? b : a, 1);
}

/* SW_CUDA_VEC (cuda/kernels.cu: the vector forms of RMSNorm, RoPE and SwiGLU's backward, on
 * unless it is 0): a bf16 test runs the other form too: the same bits where the two forms'
 * arithmetic is the same, the reference's tolerance where a sum's order differs. */
static void vec_flip(void) { env_other("SW_CUDA_VEC", "0", "1"); }

/* With SW_TEST_BWD_WS_FLIP=1 (tests/gpu/test_cuda_attn4.sh), switches SW_CUDA_ATTN_BWD between wg
 * (the block-barrier Hopper backward, attn_bwd_wg) and ws (attn_bwd_ws, as when it is unset), so
 * that an attention test's second run, which checks determinism, runs the other kernel: the two
 * run the same steps (bwd_wg_tile) in the same order and must give the same bits (where the Hopper
 * backward does not run, nothing changes). Called twice, it leaves the same kernel. */
static void bwd_ws_flip(void)
{
	if (getenv("SW_TEST_BWD_WS_FLIP"))
		env_other("SW_CUDA_ATTN_BWD", "wg", "ws");
}

/* The same floats (bf16 widened exactly, so the same bits) */
static void expect_same_floats(const char *what, const float *a, const float *b, int64_t n)
{
	CHECKF(!memcmp(a, b, (size_t)n * sizeof(float)), "%s: the other form gave different bits", what);
}

static void test_rmsnorm(int N, int C)
{
	const float eps = 1e-5f;
	const int64_t n = (int64_t)N * C;
	float *x = rand_f(n, 2), *w = rand_f(C, 1), *dy = rand_f(n, 1), *dx0 = rand_f(n, 1), *dw0 = rand_f(C, 1);
	round_act(x, n);
	round_act(w, C);
	round_act(dy, n);
	round_act(dx0, n);
	void *dx_d = up_act(x, n), *dw_d = up_act(w, C), *ddy = up_act(dy, n), *ddx = up_act(dx0, n);
	void *out = dalloc((uint64_t)n * es);
	float *rstd = dalloc((uint64_t)N * 4), *ddw = up_raw(dw0, (uint64_t)C * 4);
	poison(out, (uint64_t)n * es);
	poison(rstd, (uint64_t)N * 4);
	be->ops->rmsnorm_fwd(be, st, out, rstd, dx_d, dw_d, N, C, eps);
	be->ops->rmsnorm_bwd(be, st, ddx, ddw, ddy, dx_d, dw_d, rstd, N, C, 0);
	float *go = down_act(out, n), *gr = down_raw(rstd, (uint64_t)N * 4), *gdx = down_act(ddx, n);
	float *gdw = down_raw(ddw, (uint64_t)C * 4);
	double *ro = dvec(n), *rr = dvec(N), *rdx = dvec(n), *rdw = dvec(C), *rdw0 = dvec(C);
	for (int i = 0; i < N; i++) {
		const float *xr = x + (int64_t)i * C, *dyr = dy + (int64_t)i * C;
		double ss = 0, dot = 0;
		for (int c = 0; c < C; c++)
			ss += (double)xr[c] * xr[c];
		double r = 1.0 / sqrt(ss / C + eps);
		rr[i] = r;
		for (int c = 0; c < C; c++) {
			ro[(int64_t)i * C + c] = xr[c] * r * w[c];
			dot += (double)dyr[c] * w[c] * xr[c] * r;
			rdw0[c] += (double)dyr[c] * xr[c] * r;
		}
		for (int c = 0; c < C; c++)
			rdx[(int64_t)i * C + c] = dx0[(int64_t)i * C + c] +
				r * ((double)dyr[c] * w[c] - xr[c] * r * dot / C);
	}
	for (int c = 0; c < C; c++)
		rdw[c] = dw0[c] + rdw0[c];
	double tol = bf ? 1e-2 : 1e-5;
	expect("rmsnorm_fwd out", go, ro, n, tol);
	expect("rmsnorm_fwd rstd", gr, rr, N, 1e-5);
	expect("rmsnorm_bwd dinp", gdx, rdx, n, tol);
	expect("rmsnorm_bwd dw", gdw, rdw, C, bf ? 1e-4 : 1e-5);
	/* determinism of the dw reduction */
	be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)C * 4);
	be->ops->rmsnorm_bwd(be, st, ddx, ddw, ddy, dx_d, dw_d, rstd, N, C, 0);
	expect_same_bits("rmsnorm_bwd dw", ddw, gdw, (uint64_t)C * 4);
	{
		/* SW_BWD_DW_SET: dw written, never read (it holds NaN before) */
		void *ddx3 = up_act(dx0, n);
		poison(ddw, (uint64_t)C * 4);
		be->ops->rmsnorm_bwd(be, st, ddx3, ddw, ddy, dx_d, dw_d, rstd, N, C, SW_BWD_DW_SET);
		float *gdws = down_raw(ddw, (uint64_t)C * 4);
		expect("rmsnorm_bwd dw (SW_BWD_DW_SET)", gdws, rdw0, C, bf ? 1e-4 : 1e-5);
		free(gdws);
		be->ops->dev_free(be, ddx3);
	}
	if (bf) {
		/* the other form: dw from the same rstd the same bits (the same sums in the same
		 * order); dinp and the forward against the reference */
		void *ddx2 = up_act(dx0, n);
		vec_flip();
		be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)C * 4);
		be->ops->rmsnorm_bwd(be, st, ddx2, ddw, ddy, dx_d, dw_d, rstd, N, C, 0);
		poison(out, (uint64_t)n * es);
		be->ops->rmsnorm_fwd(be, st, out, rstd, dx_d, dw_d, N, C, eps);
		vec_flip();
		expect_same_bits("rmsnorm_bwd dw (the other form)", ddw, gdw, (uint64_t)C * 4);
		float *gdx2 = down_act(ddx2, n), *go2 = down_act(out, n);
		expect("rmsnorm_bwd dinp (the other form)", gdx2, rdx, n, tol);
		expect("rmsnorm_fwd out (the other form)", go2, ro, n, tol);
		free(gdx2);
		free(go2);
	}
	free(go); free(gr); free(gdx); free(gdw); free(ro); free(rr); free(rdx); free(rdw); free(rdw0);
	free(x); free(w); free(dy); free(dx0); free(dw0);
}

static void test_matmul(int N, int C, int OC, int with_bias)
{
	float *x = rand_f((int64_t)N * C, 1), *w = rand_f((int64_t)OC * C, 1), *b = rand_f(OC, 1);
	float *dy = rand_f((int64_t)N * OC, 1), *dx0 = rand_f((int64_t)N * C, 1);
	float *dw0 = rand_f((int64_t)OC * C, 1), *db0 = rand_f(OC, 1);
	round_act(x, (int64_t)N * C);
	round_act(w, (int64_t)OC * C);
	round_act(b, OC);
	round_act(dy, (int64_t)N * OC);
	round_act(dx0, (int64_t)N * C);
	void *dx = up_act(x, (int64_t)N * C), *dwt = up_act(w, (int64_t)OC * C), *dbias = up_act(b, OC);
	void *ddy = up_act(dy, (int64_t)N * OC), *out = dalloc((uint64_t)N * OC * es);
	void *ddx = up_act(dx0, (int64_t)N * C);
	float *ddw = up_raw(dw0, (uint64_t)OC * C * 4), *ddb = up_raw(db0, (uint64_t)OC * 4);
	poison(out, (uint64_t)N * OC * es);
	be->ops->matmul_fwd(be, st, out, dx, dwt, with_bias ? dbias : NULL, N, C, OC);
	float *go = down_act(out, (int64_t)N * OC);
	double *ro = dvec((int64_t)N * OC);
	for (int i = 0; i < N; i++)
		for (int o = 0; o < OC; o++) {
			double acc = with_bias ? b[o] : 0;
			for (int c = 0; c < C; c++)
				acc += (double)x[(int64_t)i * C + c] * w[(int64_t)o * C + c];
			ro[(int64_t)i * OC + o] = acc;
		}
	double tol = bf ? 1e-2 : 1e-5;
	expect(with_bias ? "matmul_fwd (bias)" : "matmul_fwd", go, ro, (int64_t)N * OC, tol);
	/* mode 0: dinp written; 1: dinp added to; 2: that, and dw and dbias written whatever they
	 * held (SW_BWD_DW_SET) */
	for (int mode = 0; mode < 3; mode++) {
		const int accum = mode >= 1, set = mode == 2;
		const int flags = (accum ? SW_BWD_ACCUM : 0) | (set ? SW_BWD_DW_SET : 0);
		if (set) {   /* written, never read: NaN before */
			poison(ddw, (uint64_t)OC * C * 4);
			poison(ddb, (uint64_t)OC * 4);
		} else {
			be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)OC * C * 4);
			be->ops->copy_h2d(be, st, ddb, db0, (uint64_t)OC * 4);
		}
		if (!accum)
			poison(ddx, (uint64_t)N * C * es);
		else {
			void *tmp = up_act(dx0, (int64_t)N * C);
			be->ops->copy_d2d(be, st, ddx, tmp, (uint64_t)N * C * es);
			be->ops->dev_free(be, tmp);
		}
		be->ops->matmul_bwd(be, st, ddx, ddw, with_bias ? ddb : NULL, ddy, dx, dwt, N, C, OC, flags);
		float *gdx = down_act(ddx, (int64_t)N * C), *gdw = down_raw(ddw, (uint64_t)OC * C * 4);
		float *gdb = down_raw(ddb, (uint64_t)OC * 4);
		double *rdx = dvec((int64_t)N * C), *rdw = dvec((int64_t)OC * C), *rdb = dvec(OC);
		for (int i = 0; i < N; i++)
			for (int c = 0; c < C; c++) {
				double acc = accum ? dx0[(int64_t)i * C + c] : 0;
				for (int o = 0; o < OC; o++)
					acc += (double)dy[(int64_t)i * OC + o] * w[(int64_t)o * C + c];
				rdx[(int64_t)i * C + c] = acc;
			}
		for (int o = 0; o < OC; o++) {
			rdb[o] = set ? 0 : db0[o];
			for (int i = 0; i < N; i++)
				rdb[o] += dy[(int64_t)i * OC + o];
			for (int c = 0; c < C; c++) {
				double acc = set ? 0 : dw0[(int64_t)o * C + c];
				for (int i = 0; i < N; i++)
					acc += (double)dy[(int64_t)i * OC + o] * x[(int64_t)i * C + c];
				rdw[(int64_t)o * C + c] = acc;
			}
		}
		expect(accum ? "matmul_bwd dinp (accum)" : "matmul_bwd dinp", gdx, rdx, (int64_t)N * C, tol);
		expect(set ? "matmul_bwd dw (SW_BWD_DW_SET)" : "matmul_bwd dw", gdw, rdw, (int64_t)OC * C,
		       bf ? 1e-5 : 1e-5);
		if (with_bias)
			expect(set ? "matmul_bwd dbias (SW_BWD_DW_SET)" : "matmul_bwd dbias", gdb, rdb, OC, 1e-5);
		/* determinism */
		be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)OC * C * 4);
		be->ops->matmul_bwd(be, st, NULL, ddw, NULL, ddy, dx, dwt, N, C, OC, flags & SW_BWD_DW_SET);
		expect_same_bits("matmul_bwd dw", ddw, gdw, (uint64_t)OC * C * 4);
		free(gdx); free(gdw); free(gdb); free(rdx); free(rdw); free(rdb);
	}
	free(go); free(ro);
	free(x); free(w); free(b); free(dy); free(dx0); free(dw0); free(db0);
}

static void test_rope(int B, int T, int nh, int hd)
{
	const int N = B * T;
	const int64_t n = (int64_t)N * nh * hd;
	float invf[128] = { 0 };
	CHECK(hd / 2 <= 128);
	printf("  rope B=%d T=%d nh=%d hd=%d\n", B, T, nh, hd);
	for (int i = 0; i < hd / 2; i++)
		invf[i] = (float)pow(10000.0, -2.0 * i / hd);
	float *x = rand_f(n, 1);
	round_act(x, n);
	float *dinv = up_raw(invf, sizeof(invf));
	void *dx = up_act(x, n);
	be->ops->rope_fwd(be, st, dx, dinv, N, T, nh, hd);
	float *g = down_act(dx, n);
	double *r = dvec(n), *rb = dvec(n);
	for (int row = 0; row < N; row++)
		for (int h = 0; h < nh; h++)
			for (int i = 0; i < hd / 2; i++) {
				const float ang = (float)(row % T) * invf[i];  /* the angle is fp32 */
				const double c = cos((double)ang), s = sin((double)ang);
				const int64_t o = ((int64_t)row * nh + h) * hd;
				const double x1 = x[o + i], x2 = x[o + i + hd / 2];
				r[o + i] = x1 * c - x2 * s;
				r[o + i + hd / 2] = x2 * c + x1 * s;
				rb[o + i] = x1 * c + x2 * s;
				rb[o + i + hd / 2] = x2 * c - x1 * s;
			}
	double tol = bf ? 1e-2 : 1e-5;
	expect("rope_fwd", g, r, n, tol);
	be->ops->copy_d2d(be, st, dx, up_act(x, n), (uint64_t)n * es);
	be->ops->rope_bwd(be, st, dx, dinv, N, T, nh, hd);
	float *gb = down_act(dx, n);
	expect("rope_bwd", gb, rb, n, tol);
	if (bf) {  /* the other form: the same arithmetic, the same bits */
		vec_flip();
		be->ops->copy_d2d(be, st, dx, up_act(x, n), (uint64_t)n * es);
		be->ops->rope_fwd(be, st, dx, dinv, N, T, nh, hd);
		float *g2 = down_act(dx, n);
		be->ops->copy_d2d(be, st, dx, up_act(x, n), (uint64_t)n * es);
		be->ops->rope_bwd(be, st, dx, dinv, N, T, nh, hd);
		float *gb2 = down_act(dx, n);
		vec_flip();
		expect_same_floats("rope_fwd", g2, g, n);
		expect_same_floats("rope_bwd", gb2, gb, n);
		free(g2);
		free(gb2);
	}
	free(g); free(gb); free(r); free(rb); free(x);
}

/* fp64 causal GQA attention with its backward, materialising T x T per head (tests only). */
static void ref_attention(int B, int T, int nh, int nkv, int hd, const float *q, const float *k,
			  const float *v, const float *dout, double *out, double *lse, double *dq,
			  double *dk, double *dv)
{
	const double scale = 1.0 / sqrt((double)hd);
	double *P = malloc(sizeof(double) * (size_t)T * T), *dP = malloc(sizeof(double) * (size_t)T * T);
	CHECK(P && dP);
	memset(dk, 0, sizeof(double) * (size_t)B * T * nkv * hd);
	memset(dv, 0, sizeof(double) * (size_t)B * T * nkv * hd);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < nh; h++) {
			const int kh = h / (nh / nkv);
#define QI(t) (((int64_t)(b) * T + (t)) * nh * hd + (int64_t)h * hd)
#define KI(t) (((int64_t)(b) * T + (t)) * nkv * hd + (int64_t)kh * hd)
			for (int i = 0; i < T; i++) {
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= i; j++) {
					double s = 0;
					for (int d = 0; d < hd; d++)
						s += (double)q[QI(i) + d] * k[KI(j) + d];
					P[(int64_t)i * T + j] = s * scale;
					if (s * scale > mx)
						mx = s * scale;
				}
				for (int j = 0; j <= i; j++)
					sum += exp(P[(int64_t)i * T + j] - mx);
				lse[((int64_t)b * nh + h) * T + i] = mx + log(sum);
				for (int j = 0; j <= i; j++)
					P[(int64_t)i * T + j] = exp(P[(int64_t)i * T + j] - mx) / sum;
				for (int d = 0; d < hd; d++) {
					double acc = 0;
					for (int j = 0; j <= i; j++)
						acc += P[(int64_t)i * T + j] * v[KI(j) + d];
					out[QI(i) + d] = acc;
				}
			}
			for (int i = 0; i < T; i++) {
				double Di = 0;
				for (int d = 0; d < hd; d++)
					Di += (double)dout[QI(i) + d] * out[QI(i) + d];
				for (int j = 0; j <= i; j++) {
					double dp = 0;
					for (int d = 0; d < hd; d++)
						dp += (double)dout[QI(i) + d] * v[KI(j) + d];
					dP[(int64_t)i * T + j] = P[(int64_t)i * T + j] * (dp - Di);  /* dS */
				}
				for (int d = 0; d < hd; d++) {
					double acc = 0;
					for (int j = 0; j <= i; j++)
						acc += dP[(int64_t)i * T + j] * k[KI(j) + d];
					dq[QI(i) + d] = acc * scale;
				}
			}
			for (int j = 0; j < T; j++)
				for (int d = 0; d < hd; d++) {
					double ak = 0, av = 0;
					for (int i = j; i < T; i++) {
						ak += dP[(int64_t)i * T + j] * q[QI(i) + d];
						av += P[(int64_t)i * T + j] * dout[QI(i) + d];
					}
					dk[KI(j) + d] += ak * scale;
					dv[KI(j) + d] += av;
				}
#undef QI
#undef KI
		}
	free(P);
	free(dP);
}

/* A caller's value of a switch, kept while a test sets it and put back after (empty: unset). */
static void env_keep(const char *name, char out[16])
{
	out[0] = 0;
	if (getenv(name))
		snprintf(out, 16, "%s", getenv(name));
}

static void env_put_back(const char *name, const char *kept)
{
	if (kept[0])
		setenv(name, kept, 1);
	else
		unsetenv(name);
}

static double attn_dy_amp = 1;  /* the output gradient's scale */

static void test_attention(int B, int T, int nh, int nkv, int hd)
{
	const int64_t nq = (int64_t)B * T * nh * hd, nk = (int64_t)B * T * nkv * hd;
	float *q = rand_f(nq, 1), *k = rand_f(nk, 1), *v = rand_f(nk, 1), *dy = rand_f(nq, attn_dy_amp);
	round_act(q, nq); round_act(k, nk); round_act(v, nk); round_act(dy, nq);
	double *ro = dvec(nq), *rl = dvec((int64_t)B * nh * T), *rdq = dvec(nq), *rdk = dvec(nk), *rdv = dvec(nk);
	ref_attention(B, T, nh, nkv, hd, q, k, v, dy, ro, rl, rdq, rdk, rdv);
	void *dq_ = up_act(q, nq), *dk_ = up_act(k, nk), *dv_ = up_act(v, nk), *ddy = up_act(dy, nq);
	void *out = dalloc((uint64_t)nq * es), *gq = dalloc((uint64_t)nq * es);
	void *gk = dalloc((uint64_t)nk * es), *gv = dalloc((uint64_t)nk * es);
	float *lse = dalloc((uint64_t)B * nh * T * 4);
	poison(out, (uint64_t)nq * es); poison(lse, (uint64_t)B * nh * T * 4);
	poison(gq, (uint64_t)nq * es); poison(gk, (uint64_t)nk * es); poison(gv, (uint64_t)nk * es);
	be->ops->attention_fwd(be, st, out, lse, dq_, dk_, dv_, B, T, nh, nkv, hd);
	be->ops->attention_bwd(be, st, gq, gk, gv, ddy, dq_, dk_, dv_, out, lse, B, T, nh, nkv, hd);
	float *go = down_act(out, nq), *gl = down_raw(lse, (uint64_t)B * nh * T * 4);
	float *gdq = down_act(gq, nq), *gdk = down_act(gk, nk), *gdv = down_act(gv, nk);
	char what[64];
	printf("  attention B=%d T=%d nh=%d nkv=%d hd=%d\n", B, T, nh, nkv, hd);
	const double tf = bf ? 1e-2 : 1e-5, tb = bf ? 2e-2 : 1e-5;
	snprintf(what, sizeof(what), "attention_fwd out");
	expect(what, go, ro, nq, tf);
	expect("attention_fwd lse", gl, rl, (int64_t)B * nh * T, bf ? 1e-3 : 1e-5);
	expect("attention_bwd dq", gdq, rdq, nq, tb);
	expect("attention_bwd dk", gdk, rdk, nk, tb);
	expect("attention_bwd dv", gdv, rdv, nk, tb);
	/* determinism, the Hopper backward in its other form (the same steps: the same bits) */
	void *sq = down_raw(gq, (uint64_t)nq * es), *sk = down_raw(gk, (uint64_t)nk * es);
	void *sv = down_raw(gv, (uint64_t)nk * es), *so = down_raw(out, (uint64_t)nq * es);
	be->ops->attention_fwd(be, st, out, lse, dq_, dk_, dv_, B, T, nh, nkv, hd);
	bwd_ws_flip();
	be->ops->attention_bwd(be, st, gq, gk, gv, ddy, dq_, dk_, dv_, out, lse, B, T, nh, nkv, hd);
	bwd_ws_flip();
	expect_same_bits("attention_fwd out", out, so, (uint64_t)nq * es);
	expect_same_bits("attention_bwd dq", gq, sq, (uint64_t)nq * es);
	expect_same_bits("attention_bwd dk", gk, sk, (uint64_t)nk * es);
	expect_same_bits("attention_bwd dv", gv, sv, (uint64_t)nk * es);
	free(sq); free(sk); free(sv); free(so);
	free(go); free(gl); free(gdq); free(gdk); free(gdv);
	free(ro); free(rl); free(rdq); free(rdk); free(rdv);
	free(q); free(k); free(v); free(dy);
	be->ops->dev_free(be, out); be->ops->dev_free(be, gq); be->ops->dev_free(be, gk);
	be->ops->dev_free(be, gv); be->ops->dev_free(be, lse); be->ops->dev_free(be, dq_);
	be->ops->dev_free(be, dk_); be->ops->dev_free(be, dv_); be->ops->dev_free(be, ddy);
}

static void test_swiglu_add(void)
{
	const int64_t n = 1003;
	float *g = rand_f(n, 4), *u = rand_f(n, 2), *dy = rand_f(n, 1);
	round_act(g, n); round_act(u, n); round_act(dy, n);
	void *dg = up_act(g, n), *du = up_act(u, n), *ddy = up_act(dy, n);
	void *out = dalloc((uint64_t)n * es), *gg = dalloc((uint64_t)n * es), *gu = dalloc((uint64_t)n * es);
	poison(out, (uint64_t)n * es); poison(gg, (uint64_t)n * es); poison(gu, (uint64_t)n * es);
	be->ops->swiglu_fwd(be, st, out, dg, du, n);
	be->ops->swiglu_bwd(be, st, gg, gu, ddy, dg, du, n);
	float *go = down_act(out, n), *ggg = down_act(gg, n), *ggu = down_act(gu, n);
	double *ro = dvec(n), *rg = dvec(n), *ru = dvec(n), *ra = dvec(n);
	for (int64_t i = 0; i < n; i++) {
		double s = 1.0 / (1.0 + exp(-(double)g[i]));
		ro[i] = g[i] * s * u[i];
		ru[i] = dy[i] * g[i] * s;
		rg[i] = dy[i] * u[i] * s * (1 + g[i] * (1 - s));
		ra[i] = (double)g[i] + u[i];
	}
	double tol = bf ? 1e-2 : 1e-5;
	expect("swiglu_fwd", go, ro, n, tol);
	expect("swiglu_bwd dgate", ggg, rg, n, tol);
	expect("swiglu_bwd dup", ggu, ru, n, tol);
	if (bf) {  /* the other form: the same arithmetic, the same bits */
		poison(gg, (uint64_t)n * es);
		poison(gu, (uint64_t)n * es);
		vec_flip();
		be->ops->swiglu_bwd(be, st, gg, gu, ddy, dg, du, n);
		vec_flip();
		float *g2 = down_act(gg, n), *u2 = down_act(gu, n);
		expect_same_floats("swiglu_bwd dgate", g2, ggg, n);
		expect_same_floats("swiglu_bwd dup", u2, ggu, n);
		free(g2);
		free(u2);
	}
	poison(out, (uint64_t)n * es);
	be->ops->add(be, st, out, dg, du, n);
	float *ga = down_act(out, n);
	expect("add", ga, ra, n, bf ? 1e-2 : 1e-7);
	be->ops->add(be, st, dg, dg, du, n);  /* out aliases a */
	float *ga2 = down_act(dg, n);
	expect("add (in place)", ga2, ra, n, bf ? 1e-2 : 1e-7);
	free(go); free(ggg); free(ggu); free(ga); free(ga2); free(ro); free(rg); free(ru); free(ra);
	free(g); free(u); free(dy);
}

static void test_head(int N, int C, int V, int with_grad)
{
	float *x = rand_f((int64_t)N * C, 1), *w = rand_f((int64_t)V * C, 0.5);
	float *dw0 = rand_f((int64_t)V * C, 0.01);
	round_act(x, (int64_t)N * C);
	round_act(w, (int64_t)V * C);
	int32_t *tg = malloc(sizeof(int32_t) * (size_t)N);
	CHECK(tg);
	int unmasked = 0;
	for (int i = 0; i < N; i++) {
		tg[i] = i % 5 == 3 ? -100 : (int32_t)((urand() * 0.5 + 0.5) * (V - 1));
		unmasked += tg[i] >= 0;
	}
	const float scale = 1.0f / (float)unmasked;
	void *dx = up_act(x, (int64_t)N * C), *dwt = up_act(w, (int64_t)V * C);
	int32_t *dtg = up_raw(tg, sizeof(int32_t) * (size_t)N);
	float *losses = dalloc((uint64_t)N * 4), *ddw = up_raw(dw0, (uint64_t)V * C * 4);
	void *ddx = dalloc((uint64_t)N * C * es);
	poison(losses, (uint64_t)N * 4);
	poison(ddx, (uint64_t)N * C * es);
	be->ops->head_loss(be, st, losses, with_grad ? ddx : NULL, with_grad ? ddw : NULL, dx, dwt, dtg,
			   scale, N, C, V);
	float *gl = down_raw(losses, (uint64_t)N * 4);
	double *rl = dvec(N), *rdx = dvec((int64_t)N * C), *rdw = dvec((int64_t)V * C), *lg = dvec(V);
	for (int64_t i = 0; i < (int64_t)V * C; i++)
		rdw[i] = dw0[i];
	for (int i = 0; i < N; i++) {
		double mx = -INFINITY, sum = 0;
		for (int v = 0; v < V; v++) {
			double acc = 0;
			for (int c = 0; c < C; c++)
				acc += (double)x[(int64_t)i * C + c] * w[(int64_t)v * C + c];
			lg[v] = acc;
			if (acc > mx)
				mx = acc;
		}
		for (int v = 0; v < V; v++)
			sum += exp(lg[v] - mx);
		const double lse = mx + log(sum);
		if (tg[i] < 0)
			continue;
		rl[i] = lse - lg[tg[i]];
		for (int v = 0; v < V; v++) {
			const double d = scale * (exp(lg[v] - lse) - (v == tg[i]));
			for (int c = 0; c < C; c++) {
				rdx[(int64_t)i * C + c] += d * w[(int64_t)v * C + c];
				rdw[(int64_t)v * C + c] += d * x[(int64_t)i * C + c];
			}
		}
	}
	printf("  head N=%d C=%d V=%d%s\n", N, C, V, with_grad ? " (with grads)" : "");
	expect("head_loss losses", gl, rl, N, bf ? 1e-4 : 1e-5);
	if (with_grad) {
		float *gdx = down_act(ddx, (int64_t)N * C), *gdw = down_raw(ddw, (uint64_t)V * C * 4);
		/* bf16: dlogits are rounded to bf16 before the GEMMs, as PyTorch's autocast does. */
		expect("head_loss dinp", gdx, rdx, (int64_t)N * C, bf ? 1e-2 : 1e-5);
		expect("head_loss dw", gdw, rdw, (int64_t)V * C, bf ? 1e-2 : 1e-5);
		be->ops->copy_h2d(be, st, ddw, dw0, (uint64_t)V * C * 4);
		be->ops->head_loss(be, st, losses, ddx, ddw, dx, dwt, dtg, scale, N, C, V);
		expect_same_bits("head_loss dw", ddw, gdw, (uint64_t)V * C * 4);
		expect_same_bits("head_loss losses", losses, gl, (uint64_t)N * 4);
		free(gdx);
		free(gdw);
	}
	/* head_logits on the same inputs (small V only) */
	if ((int64_t)N * V <= 1 << 22) {
		float *lo = dalloc((uint64_t)N * V * 4);
		be->ops->head_logits(be, st, lo, dx, dwt, N, C, V);
		float *glo = down_raw(lo, (uint64_t)N * V * 4);
		double *rlo = dvec((int64_t)N * V);
		for (int i = 0; i < N; i++)
			for (int v = 0; v < V; v++) {
				double acc = 0;
				for (int c = 0; c < C; c++)
					acc += (double)x[(int64_t)i * C + c] * w[(int64_t)v * C + c];
				rlo[(int64_t)i * V + v] = acc;
			}
		expect("head_logits", glo, rlo, (int64_t)N * V, 1e-5);
		free(glo);
		free(rlo);
		be->ops->dev_free(be, lo);
	}
	free(gl); free(rl); free(rdx); free(rdw); free(lg); free(x); free(w); free(dw0); free(tg);
	be->ops->dev_free(be, dx); be->ops->dev_free(be, dwt); be->ops->dev_free(be, dtg);
	be->ops->dev_free(be, losses); be->ops->dev_free(be, ddw); be->ops->dev_free(be, ddx);
}

static void test_sumsq_adamw_cast(void)
{
	const int64_t n = 1000003;
	float *x = rand_f(n, 3);
	float *dx = up_raw(x, (uint64_t)n * 4);
	double *dout = dalloc(8), got, got2, ref = 0;
	for (int64_t i = 0; i < n; i++)
		ref += (double)x[i] * x[i];
	be->ops->sumsq(be, st, dout, dx, n);
	be->ops->copy_d2h(be, st, &got, dout, 8);
	sync();
	be->ops->sumsq(be, st, dout, dx, n);
	be->ops->copy_d2h(be, st, &got2, dout, 8);
	sync();
	printf("  sumsq %.17g ref %.17g\n", got, ref);
	CHECKF(fabs(got - ref) <= 1e-12 * ref, "sumsq %.17g vs %.17g", got, ref);
	CHECKF(!memcmp(&got, &got2, 8), "sumsq not deterministic");

	/* AdamW: bit-identical to the CPU reference (optim/adamw.h). */
	const int64_t m = 4097;
	float *p = rand_f(m, 1), *mm = rand_f(m, 0.1), *vv = rand_f(m, 0.1), *g = rand_f(m, 1);
	for (int64_t i = 0; i < m; i++)
		vv[i] = fabsf(vv[i]);
	sw_adamw_hparams hp = { 1e-3, 0.9, 0.95, 1e-8, 0.1 };
	sw_adamw_args a = sw_adamw_args_make(&hp, 1e-3, 7, 1, 0.5);
	float *dp = up_raw(p, (uint64_t)m * 4), *dm = up_raw(mm, (uint64_t)m * 4);
	float *dv = up_raw(vv, (uint64_t)m * 4), *dg = up_raw(g, (uint64_t)m * 4);
	void *d16 = dalloc((uint64_t)m * es);
	void *h16 = malloc((size_t)m * es);
	CHECK(h16);
	be->ops->adamw(be, st, dp, dm, dv, dg, d16, m, &a);
	sw_adamw_update(p, mm, vv, g, h16, be->act, m, &a);
	expect_same_bits("adamw p32", dp, p, (uint64_t)m * 4);
	expect_same_bits("adamw m", dm, mm, (uint64_t)m * 4);
	expect_same_bits("adamw v", dv, vv, (uint64_t)m * 4);
	expect_same_bits("adamw p16", d16, h16, (uint64_t)m * es);
	printf("  %-6s adamw bit-identical to the CPU reference\n", bf ? "bf16" : "fp32");

	/* cast_f32_to_act: round to nearest even, bit for bit. */
	be->ops->cast_f32_to_act(be, st, d16, dp, m);
	for (int64_t i = 0; i < m; i++) {
		if (bf)
			((sw_bf16 *)h16)[i] = sw_f32_to_bf16(p[i]);
		else
			((float *)h16)[i] = p[i];
	}
	expect_same_bits("cast_f32_to_act", d16, h16, (uint64_t)m * es);
	free(x); free(p); free(mm); free(vv); free(g); free(h16);
}

int main(void)
{
	if (sw_cuda_device_count() <= 0)
		SKIP("no CUDA device");
	/* Under compute-sanitizer: the small cases only (same kernels, seconds instead of minutes). */
	const int quick = getenv("SW_TEST_QUICK") != NULL;
	/* SW_TEST_ATTN_ONLY=1: the attention tests alone (the sanitizer over the attention kernels). */
	const int others = getenv("SW_TEST_ATTN_ONLY") == NULL;
	for (int mode = 0; mode < 2; mode++) {
		sw_backend_opts o = { .mem_budget = 1024ull << 20, .act = mode ? SW_DTYPE_BF16 : SW_DTYPE_F32 };
		CHECK(sw_backend_create("cuda", &o, &be) == 0);
		CHECK(be->ops->stream_create(be, &st) == 0);
		bf = mode;
		es = sw_dtype_size(be->act);
		printf("mode %s on %s\n", sw_dtype_name(be->act), be->device_name);
		if (others) {
			test_embedding(97, 40, 50, 0);
			test_embedding(700, 1030, 60, 1);
			test_rmsnorm(17, 96);
			test_rmsnorm(300, 300);   /* not a multiple of 8: the scalar kernels */
			/* bf16 vector kernels: one, two and four vectors of 8 a thread (a row of 8200
			 * leaves most of the last ones empty) */
			test_rmsnorm(300, 3072);
			test_rmsnorm(300, 8192);
			test_rmsnorm(300, 8200);
			test_matmul(37, 64, 48, 0);
			test_matmul(64, 128, 96, 1);
			/* the vector form's 16-byte accesses (4 heads a batch), then hd / 2 = 36, not a
			 * multiple of 8: its 8-heads form of 2-byte accesses */
			test_rope(2, 13, 3, 16);
			test_rope(1, 37, 24, 128);
			test_rope(2, 9, 10, 64);    /* a last batch of 2 */
			test_rope(1, 11, 5, 72);
		}
		test_attention(2, 100, 4, 2, 64);   /* tensor-core path in bf16 */
		test_attention(1, 130, 4, 1, 128);  /* tensor-core path in bf16, MQA */
		test_attention(1, 37, 6, 3, 32);    /* generic path */
		test_attention(1, 300, 2, 1, 64);   /* several tiles of 64 and 128 rows */
		/* Every tensor-core head dim, GQA, lengths that are not multiples of the 32/64/128 tiles
		 * (1 row; 77; 257 = two 128-row tiles + 1). */
		static const int hds[] = { 64, 80, 96, 128 };
		for (int i = 0; i < 4; i++) {
			test_attention(1, 1, 2, 1, hds[i]);
			test_attention(2, 77, 8, 2, hds[i]);
			if (!quick)
				test_attention(1, 257, 4, 4, hds[i]);
		}
		if (mode == 1) {
			/* The 16-row-per-warp kernels, which GPUs with 99 KB of shared memory per block run. */
			setenv("SW_CUDA_ATTN_MMA16", "1", 1);
			for (int i = 0; i < 4; i++)
				test_attention(1, 150, 8, 1, hds[i]);
			unsetenv("SW_CUDA_ATTN_MMA16");
			/* The Hopper (sm_90a wgmma) kernels where the GPU runs them, head dims 64 and 128:
			 * enough KV tiles of 128 keys that the forward's three V stages wrap around. */
			test_attention(1, 600, 4, 2, 64);
			test_attention(1, 520, 2, 1, 128);
			/* The warp-specialised forward (TMA producer warpgroup, mbarrier ring of K/V
			 * stages; SW_CUDA_ATTN_FWD=ws|ws3|wsn|wsp) where the GPU runs it: one row, lengths
			 * that are not multiples of the 192/128-row tiles, GQA and MQA, and 600 / 520 rows
			 * (five KV tiles of 128: the two- and three-stage rings wrap). The persistent grid
			 * (wsp) also with 3 blocks, so that each block loops over several tiles (its ring
			 * and the two Q buffers carried from tile to tile). */
			char fwd[16];  /* the caller's SW_CUDA_ATTN_FWD, restored below */
			env_keep("SW_CUDA_ATTN_FWD", fwd);
			/* A caller that picked a warp-specialised variant gets that one only (a hang or a
			 * failure then names its variant). */
			static const char *const wsv[] = { "ws", "ws3", "wsn", "wsp", "wsp" };
			const int ws_one = !strncmp(fwd, "ws", 2);
			for (int i = 0; i < 5; i++) {
				if (ws_one && strcmp(fwd, wsv[i]))
					continue;
				setenv("SW_CUDA_ATTN_FWD", wsv[i], 1);
				if (i == 4)
					setenv("SW_CUDA_ATTN_WS_BLOCKS", "3", 1);
				test_attention(1, 1, 2, 1, 64);
				test_attention(2, 77, 8, 2, 64);
				test_attention(1, 600, 4, 2, 64);
				test_attention(1, 130, 4, 1, 128);
				test_attention(1, 520, 2, 1, 128);
			}
			unsetenv("SW_CUDA_ATTN_WS_BLOCKS");
			env_put_back("SW_CUDA_ATTN_FWD", fwd);
			/* The 4x2-warp dK/dV kernel (head dim 128), which the GPU picks only for grids of
			 * at least two blocks per SM (and not on Hopper): forced here on the small shapes. */
			char sm90[16];  /* the caller's SW_CUDA_ATTN_SM90, restored below */
			env_keep("SW_CUDA_ATTN_SM90", sm90);
			setenv("SW_CUDA_ATTN_DKDV_FA", "1", 1);
			setenv("SW_CUDA_ATTN_SM90", "0", 1);
			test_attention(2, 77, 8, 2, 128);
			test_attention(1, quick ? 150 : 257, 4, 4, 128);
			unsetenv("SW_CUDA_ATTN_DKDV_FA");
			/* The fused dQ's fixed point follows each row's gradient scale: tiny and huge dO
			 * (SW_CUDA_ATTN_DQ=fused: these small grids would otherwise run the two-pass dQ),
			 * with the sm_80 kernels and then (on Hopper) the wgmma backward. */
			setenv("SW_CUDA_ATTN_DQ", "fused", 1);
			for (int hop = 0; hop < 2; hop++) {
				if (hop)
					env_put_back("SW_CUDA_ATTN_SM90", sm90);
				for (int a = 0; a < 3; a++) {
					attn_dy_amp = a == 0 ? 1e-6 : a == 1 ? 1e6 : 1;
					test_attention(2, 77, 8, 2, 64);
					test_attention(1, 150, 4, 4, 128);
				}
			}
			unsetenv("SW_CUDA_ATTN_DQ");
			attn_dy_amp = 1;
		}
		if (others) {
			test_swiglu_add();
			test_head(37, 64, 1000, 1);
			if (!quick)
				test_head(256, 64, 70000, 1);  /* several vocabulary chunks */
			test_head(16, 32, 500, 0);
			test_sumsq_adamw_cast();
		}
		if (mode == 1 && !quick && others) {
			/* No device allocation inside the step loop: once kernels are loaded, running the
			 * ops again leaves the device's free memory unchanged (all from the arena). */
			size_t f0, f1, tot;
			CHECK(cudaMemGetInfo(&f0, &tot) == cudaSuccess);
			test_attention(2, 100, 4, 2, 64);
			test_head(37, 64, 1000, 1);
			test_matmul(64, 128, 96, 1);
			CHECK(cudaMemGetInfo(&f1, &tot) == cudaSuccess);
			CHECKF(f0 == f1, "device free memory changed: %zu -> %zu", f0, f1);
		}
		be->ops->stream_destroy(be, st);
		sw_backend_destroy(be);
	}
	if (others) {
		/* A small budget (64 MiB: 4 MiB of scratch) forces head_loss to chunk rows and vocabulary. */
		sw_backend_opts o = { .mem_budget = 64ull << 20, .act = SW_DTYPE_BF16 };
		CHECK(sw_backend_create("cuda", &o, &be) == 0);
		CHECK(be->ops->stream_create(be, &st) == 0);
		bf = 1;
		es = 2;
		test_head(quick ? 130 : 520, quick ? 4096 : 2048, quick ? 700 : 1500, 1);
		be->ops->stream_destroy(be, st);
		sw_backend_destroy(be);
	}
	printf("all CUDA op tests passed%s\n", others ? "" : " (attention only)");
	return 0;
}
