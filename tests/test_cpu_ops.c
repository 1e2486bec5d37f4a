/* Every op of the CPU backend against the math.
 *
 * (a) forward: each op's fp32 forward against an fp64 reference written here from the formula.
 * (b) backward: against central finite differences (h = 1e-5, in fp64) of the fp64 forward of
 *     L = sum(out * R), R random; for head_loss L = scale * sum(losses). The FD gradient is
 *     accurate to ~1e-10, so what is measured is the backend's fp32 rounding (1e-8..5e-7 of
 *     the gradient's norm); the tolerance 5e-6 leaves 10x margin over the worst observed
 *     value and stays well under the 1e-4 the issue allows. Forward tolerance: 2e-6 (worst
 *     observed ~1e-7; fp32 rounding of sums of up to 300 terms).
 * (c) BF16 mode against F32 mode on the same bf16-representable inputs: every stored output
 *     is rounded once to bf16 (relative error <= 2^-9 = 2e-3 per element); gradients that
 *     consume rounded forward outputs (attention's D = dout.out) compound a few such errors.
 *     Tolerance: norm-relative error <= 1e-2 (about five half-ulps of bf16). Ops without a
 *     GEMM must give exactly F32 mode's result rounded once to bf16.
 * (d) determinism: 1 thread and 3 threads give identical bits, in both modes.
 * Errors are norm-relative, ||got - want|| / ||want||, computed in double.
 * Shapes are tiny and block sizes are set small (cpu/backend_cpu.h) so that every tile, K
 * block, vocabulary chunk and row block boundary is crossed; a "medium" section repeats the
 * forward checks with the default block sizes on shapes larger than one block. */
#include "core/backend.h"
#include "cpu/backend_cpu.h"
#include "optim/adamw.h"
#include "tests/check.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define FWD_TOL 2e-6
#define BWD_TOL 5e-6
#define BF16_TOL 1e-2
#define FD_H 1e-5

/* ---------------------------------------------------------------- helpers ---- */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
/* Uniform in [-1, 1), rounded to bf16 so that F32 and BF16 runs see the same inputs. */
static float rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	float u = (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
	return sw_round_bf16(u);
}
static void fill(float *x, int64_t n, float s)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = rnd() * s;
}
static float *fnew(int64_t n)
{
	float *p = calloc((size_t)n + 1, sizeof(float));
	CHECK(p);
	return p;
}
static double *dnew(int64_t n)
{
	double *p = calloc((size_t)n + 1, sizeof(double));
	CHECK(p);
	return p;
}
static double *to_d(const float *x, int64_t n)
{
	double *d = dnew(n);
	for (int64_t i = 0; i < n; i++)
		d[i] = x[i];
	return d;
}

static int esz(sw_backend *be) { return sw_dtype_size(be->act); }

/* Device buffer of n act elements holding src (NaN everywhere when src is NULL, so that an
 * op that should overwrite it and does not is caught). */
static void *dact(sw_backend *be, const float *src, int64_t n)
{
	void *d;
	CHECK(be->ops->dev_alloc(be, (uint64_t)(n ? n : 1) * (uint64_t)esz(be), &d) == 0);
	for (int64_t i = 0; i < n; i++) {
		float v = src ? src[i] : NAN;
		if (be->act == SW_DTYPE_BF16) {
			sw_bf16 h = sw_f32_to_bf16(v);
			be->ops->copy_h2d(be, NULL, (uint8_t *)d + i * 2, &h, 2);
		} else {
			be->ops->copy_h2d(be, NULL, (uint8_t *)d + i * 4, &v, 4);
		}
	}
	return d;
}
static float *df32(sw_backend *be, const float *src, int64_t n)
{
	void *d;
	CHECK(be->ops->dev_alloc(be, (uint64_t)(n ? n : 1) * 4, &d) == 0);
	if (src)
		be->ops->copy_h2d(be, NULL, d, src, (uint64_t)n * 4);
	else
		memset(d, 0xff, (size_t)n * 4);
	return d;
}
static void get_act(sw_backend *be, float *dst, const void *d, int64_t n)
{
	if (be->act == SW_DTYPE_BF16) {
		sw_bf16 *h = calloc((size_t)n + 1, 2);
		be->ops->copy_d2h(be, NULL, h, d, (uint64_t)n * 2);
		for (int64_t i = 0; i < n; i++)
			dst[i] = sw_bf16_to_f32(h[i]);
		free(h);
	} else {
		be->ops->copy_d2h(be, NULL, dst, d, (uint64_t)n * 4);
	}
}

/* ||got - want|| / ||want|| (double); got, want may be float or double arrays via these. */
static double rel_fd(const float *got, const double *want, int64_t n)
{
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)got[i] - want[i];
		num += d * d;
		den += want[i] * want[i];
	}
	if (num != num)
		return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}
/* Error of an accumulated result: got should be base + want. */
static double rel_acc(const float *got, const float *base, const double *want, int64_t n)
{
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)got[i] - ((double)base[i] + want[i]);
		num += d * d;
		den += want[i] * want[i];
	}
	if (num != num)
		return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Central differences of f with respect to every element of x (perturbed in place). */
static void fd(double (*f)(void), double *x, int64_t n, double *g)
{
	for (int64_t i = 0; i < n; i++) {
		double xi = x[i];
		x[i] = xi + FD_H;
		double lp = f();
		x[i] = xi - FD_H;
		double lm = f();
		x[i] = xi;
		g[i] = (lp - lm) / (2 * FD_H);
	}
}

/* Results of one run, compared across modes and thread counts. */
typedef struct result { char name[48]; float *v; int64_t n; int act; } result;
typedef struct results { result r[96]; int n; } results;
static void res_add(results *rs, const char *name, const float *v, int64_t n, int act)
{
	CHECK(rs->n < 96);
	result *r = &rs->r[rs->n++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->v = fnew(n);
	memcpy(r->v, v, (size_t)n * sizeof(float));
	r->n = n;
	r->act = act;
}

/* Worst errors per op, printed at the end. */
typedef struct worst {
	char op[32];
	double fwd, bwd, bf16;
	int has_fwd, has_bwd, has_bf16;
} worst;
static worst worsts[32];
static int nworst;
static worst *worst_of(const char *op)
{
	for (int i = 0; i < nworst; i++)
		if (!strcmp(worsts[i].op, op))
			return &worsts[i];
	CHECK(nworst < 32);
	snprintf(worsts[nworst].op, sizeof(worsts[nworst].op), "%s", op);
	return &worsts[nworst++];
}
static void check_fwd(const char *op, const char *what, double err)
{
	worst *w = worst_of(op);
	w->has_fwd = 1;
	if (err > w->fwd)
		w->fwd = err;
	CHECKF(err <= FWD_TOL, "%s %s forward: rel err %.3g > %.1g", op, what, err, FWD_TOL);
}
static void check_bwd(const char *op, const char *what, double err)
{
	worst *w = worst_of(op);
	w->has_bwd = 1;
	if (err > w->bwd)
		w->bwd = err;
	CHECKF(err <= BWD_TOL, "%s %s backward vs finite differences: rel err %.3g > %.1g", op,
	       what, err, BWD_TOL);
}

/* ---------------------------------------------------------------- embedding ---- */

enum { EN = 9, EC = 6, EV = 11 };
static const int32_t e_tok[EN] = { 3, 7, 3, 0, 10, 7, 3, 5, 0 };
static double *e_wte, *e_R;
static void ref_embedding(const double *wte, double *out)
{
	for (int n = 0; n < EN; n++)
		for (int c = 0; c < EC; c++)
			out[n * EC + c] = wte[e_tok[n] * EC + c];
}
static double L_embedding(void)
{
	double out[EN * EC], L = 0;
	ref_embedding(e_wte, out);
	for (int i = 0; i < EN * EC; i++)
		L += out[i] * e_R[i];
	return L;
}

static void op_embedding(sw_backend *be, results *rs, int check)
{
	rng_seed(1);
	float wte[EV * EC], R[EN * EC], G[EV * EC], out[EN * EC], dw[EV * EC];
	fill(wte, EV * EC, 1);
	fill(R, EN * EC, 1);
	fill(G, EV * EC, 1);
	void *dwte = dact(be, wte, EV * EC), *dout = dact(be, NULL, EN * EC), *dR = dact(be, R, EN * EC);
	float *ddw = df32(be, G, EV * EC);
	int32_t *dtok;
	CHECK(be->ops->dev_alloc(be, sizeof(e_tok), (void **)&dtok) == 0);
	memcpy(dtok, e_tok, sizeof(e_tok));
	be->ops->embedding_fwd(be, NULL, dout, dtok, dwte, EN, EC);
	be->ops->embedding_bwd(be, NULL, ddw, dR, dtok, EN, EC, EV);
	get_act(be, out, dout, EN * EC);
	memcpy(dw, ddw, sizeof(dw));
	res_add(rs, "embedding.out", out, EN * EC, 1);
	res_add(rs, "embedding.dwte", dw, EV * EC, 0);
	if (check) {
		e_wte = to_d(wte, EV * EC);
		e_R = to_d(R, EN * EC);
		double ref[EN * EC], g[EV * EC];
		ref_embedding(e_wte, ref);
		check_fwd("embedding", "out", rel_fd(out, ref, EN * EC));
		fd(L_embedding, e_wte, EV * EC, g);
		check_bwd("embedding", "dwte (+=)", rel_acc(dw, G, g, EV * EC));
		free(e_wte);
		free(e_R);
	}
	be->ops->dev_free(be, dwte); be->ops->dev_free(be, dout); be->ops->dev_free(be, dR);
	be->ops->dev_free(be, ddw); be->ops->dev_free(be, dtok);
}

/* ---------------------------------------------------------------- rmsnorm ---- */

enum { RN = 5, RC = 19 };
#define R_EPS 1e-5f
static double *r_x, *r_w, *r_R;
static void ref_rmsnorm(const double *x, const double *w, double *out, double *rstd)
{
	for (int n = 0; n < RN; n++) {
		double ss = 0;
		for (int c = 0; c < RC; c++)
			ss += x[n * RC + c] * x[n * RC + c];
		double r = 1.0 / sqrt(ss / RC + (double)R_EPS);
		if (rstd)
			rstd[n] = r;
		for (int c = 0; c < RC; c++)
			out[n * RC + c] = w[c] * x[n * RC + c] * r;
	}
}
static double L_rmsnorm(void)
{
	double out[RN * RC], L = 0;
	ref_rmsnorm(r_x, r_w, out, NULL);
	for (int i = 0; i < RN * RC; i++)
		L += out[i] * r_R[i];
	return L;
}

static void op_rmsnorm(sw_backend *be, results *rs, int check)
{
	rng_seed(2);
	float x[RN * RC], w[RC], R[RN * RC], G[RN * RC], Gw[RC], out[RN * RC], rstd[RN];
	float dx[RN * RC], dw[RC];
	fill(x, RN * RC, 2);
	fill(w, RC, 1);
	fill(R, RN * RC, 1);
	fill(G, RN * RC, 1);
	fill(Gw, RC, 1);
	void *dxin = dact(be, x, RN * RC), *dwt = dact(be, w, RC), *dout = dact(be, NULL, RN * RC);
	void *dR = dact(be, R, RN * RC), *ddx = dact(be, G, RN * RC);
	float *drstd = df32(be, NULL, RN), *ddw = df32(be, Gw, RC);
	be->ops->rmsnorm_fwd(be, NULL, dout, drstd, dxin, dwt, RN, RC, R_EPS);
	be->ops->rmsnorm_bwd(be, NULL, ddx, ddw, dR, dxin, dwt, drstd, RN, RC, 0);
	get_act(be, out, dout, RN * RC);
	get_act(be, dx, ddx, RN * RC);
	memcpy(rstd, drstd, sizeof(rstd));
	memcpy(dw, ddw, sizeof(dw));
	res_add(rs, "rmsnorm.out", out, RN * RC, 1);
	res_add(rs, "rmsnorm.rstd", rstd, RN, 0);
	res_add(rs, "rmsnorm.dinp", dx, RN * RC, 1);
	res_add(rs, "rmsnorm.dw", dw, RC, 0);
	if (check) {
		r_x = to_d(x, RN * RC);
		r_w = to_d(w, RC);
		r_R = to_d(R, RN * RC);
		double ref[RN * RC], rref[RN], gx[RN * RC], gw[RC];
		ref_rmsnorm(r_x, r_w, ref, rref);
		check_fwd("rmsnorm", "out", rel_fd(out, ref, RN * RC));
		check_fwd("rmsnorm", "rstd", rel_fd(rstd, rref, RN));
		fd(L_rmsnorm, r_x, RN * RC, gx);
		fd(L_rmsnorm, r_w, RC, gw);
		check_bwd("rmsnorm", "dinp (+=)", rel_acc(dx, G, gx, RN * RC));
		check_bwd("rmsnorm", "dw (+=)", rel_acc(dw, Gw, gw, RC));
		/* dinp may be the dout buffer itself: dinp = R + d/dinp */
		void *dal = dact(be, R, RN * RC);
		float dal_h[RN * RC];
		be->ops->rmsnorm_bwd(be, NULL, dal, ddw, dal, dxin, dwt, drstd, RN, RC, 0);
		get_act(be, dal_h, dal, RN * RC);
		check_bwd("rmsnorm", "dinp aliasing dout", rel_acc(dal_h, R, gx, RN * RC));
		be->ops->dev_free(be, dal);
		/* SW_BWD_DW_SET: dw written, never read (it holds NaN before), the same bits as added
		 * to zeros */
		float zero[RC], dws[RC], dwz[RC], nan[RC];
		memset(zero, 0, sizeof(zero));
		for (int i = 0; i < RC; i++)
			nan[i] = NAN;
		float *ddws = df32(be, nan, RC), *ddwz = df32(be, zero, RC);
		void *dx3 = dact(be, G, RN * RC);
		be->ops->rmsnorm_bwd(be, NULL, dx3, ddws, dR, dxin, dwt, drstd, RN, RC, SW_BWD_DW_SET);
		be->ops->rmsnorm_bwd(be, NULL, dx3, ddwz, dR, dxin, dwt, drstd, RN, RC, 0);
		memcpy(dws, ddws, sizeof(dws));
		memcpy(dwz, ddwz, sizeof(dwz));
		check_bwd("rmsnorm", "dw (=, SW_BWD_DW_SET)", rel_fd(dws, gw, RC));
		CHECKF(!memcmp(dws, dwz, sizeof(dws)), "rmsnorm dw: SW_BWD_DW_SET differs from += on zeros");
		be->ops->dev_free(be, ddws); be->ops->dev_free(be, ddwz); be->ops->dev_free(be, dx3);
		free(r_x); free(r_w); free(r_R);
	}
	be->ops->dev_free(be, dxin); be->ops->dev_free(be, dwt); be->ops->dev_free(be, dout);
	be->ops->dev_free(be, dR); be->ops->dev_free(be, ddx); be->ops->dev_free(be, drstd);
	be->ops->dev_free(be, ddw);
}

/* ---------------------------------------------------------------- matmul ---- */

enum { MN = 7, MC = 13, MO = 11 };
static double *m_x, *m_w, *m_b, *m_R;
static void ref_matmul(const double *x, const double *w, const double *b, double *out)
{
	for (int n = 0; n < MN; n++)
		for (int o = 0; o < MO; o++) {
			double s = 0;
			for (int c = 0; c < MC; c++)
				s += x[n * MC + c] * w[o * MC + c];
			out[n * MO + o] = s + (b ? b[o] : 0.0);
		}
}
static double L_matmul(void)
{
	double out[MN * MO], L = 0;
	ref_matmul(m_x, m_w, m_b, out);
	for (int i = 0; i < MN * MO; i++)
		L += out[i] * m_R[i];
	return L;
}

static void op_matmul(sw_backend *be, results *rs, int check)
{
	rng_seed(3);
	float x[MN * MC], w[MO * MC], b[MO], R[MN * MO], G[MN * MC], Gw[MO * MC], Gb[MO];
	float out[MN * MO], out2[MN * MO], dx[MN * MC], dx2[MN * MC], dw[MO * MC], db[MO];
	fill(x, MN * MC, 1); fill(w, MO * MC, 1); fill(b, MO, 1); fill(R, MN * MO, 1);
	fill(G, MN * MC, 1); fill(Gw, MO * MC, 1); fill(Gb, MO, 1);
	void *dxin = dact(be, x, MN * MC), *dwt = dact(be, w, MO * MC), *dbias = dact(be, b, MO);
	void *dout = dact(be, NULL, MN * MO), *dout2 = dact(be, NULL, MN * MO);
	void *dR = dact(be, R, MN * MO), *ddx = dact(be, G, MN * MC), *ddx2 = dact(be, NULL, MN * MC);
	float *ddw = df32(be, Gw, MO * MC), *ddb = df32(be, Gb, MO);
	be->ops->matmul_fwd(be, NULL, dout, dxin, dwt, dbias, MN, MC, MO);
	be->ops->matmul_fwd(be, NULL, dout2, dxin, dwt, NULL, MN, MC, MO);
	be->ops->matmul_bwd(be, NULL, ddx, ddw, ddb, dR, dxin, dwt, MN, MC, MO, 1);
	be->ops->matmul_bwd(be, NULL, ddx2, NULL, NULL, dR, dxin, dwt, MN, MC, MO, 0);
	be->ops->matmul_bwd(be, NULL, NULL, NULL, NULL, dR, dxin, dwt, MN, MC, MO, 0);
	get_act(be, out, dout, MN * MO);
	get_act(be, out2, dout2, MN * MO);
	get_act(be, dx, ddx, MN * MC);
	get_act(be, dx2, ddx2, MN * MC);
	memcpy(dw, ddw, sizeof(dw));
	memcpy(db, ddb, sizeof(db));
	res_add(rs, "matmul.out", out, MN * MO, 1);
	res_add(rs, "matmul.out_nobias", out2, MN * MO, 1);
	res_add(rs, "matmul.dinp_accum", dx, MN * MC, 1);
	res_add(rs, "matmul.dinp", dx2, MN * MC, 1);
	res_add(rs, "matmul.dw", dw, MO * MC, 0);
	res_add(rs, "matmul.dbias", db, MO, 0);
	if (check) {
		m_x = to_d(x, MN * MC); m_w = to_d(w, MO * MC); m_b = to_d(b, MO);
		m_R = to_d(R, MN * MO);
		double ref[MN * MO], gx[MN * MC], gw[MO * MC], gb[MO];
		ref_matmul(m_x, m_w, m_b, ref);
		check_fwd("matmul", "out (bias)", rel_fd(out, ref, MN * MO));
		ref_matmul(m_x, m_w, NULL, ref);
		check_fwd("matmul", "out (no bias)", rel_fd(out2, ref, MN * MO));
		fd(L_matmul, m_x, MN * MC, gx);
		fd(L_matmul, m_w, MO * MC, gw);
		fd(L_matmul, m_b, MO, gb);
		check_bwd("matmul", "dinp (accum=1)", rel_acc(dx, G, gx, MN * MC));
		check_bwd("matmul", "dinp (accum=0)", rel_fd(dx2, gx, MN * MC));
		check_bwd("matmul", "dw (+=)", rel_acc(dw, Gw, gw, MO * MC));
		check_bwd("matmul", "dbias (+=)", rel_acc(db, Gb, gb, MO));
		/* SW_BWD_DW_SET: dw and dbias written, never read (they hold NaN before; dinp as its
		 * own flag says), the same bits as added to zeros */
		float zw[MO * MC], zb[MO], dws[MO * MC], dbs[MO], dwz[MO * MC], dbz[MO], dx3[MN * MC];
		float nw[MO * MC], nb[MO];
		memset(zw, 0, sizeof(zw));
		memset(zb, 0, sizeof(zb));
		for (int i = 0; i < MO * MC; i++)
			nw[i] = NAN;
		for (int i = 0; i < MO; i++)
			nb[i] = NAN;
		float *ddws = df32(be, nw, MO * MC), *ddbs = df32(be, nb, MO);
		float *ddwz = df32(be, zw, MO * MC), *ddbz = df32(be, zb, MO);
		void *ddx3 = dact(be, G, MN * MC);
		be->ops->matmul_bwd(be, NULL, ddx3, ddws, ddbs, dR, dxin, dwt, MN, MC, MO,
				    SW_BWD_DW_SET | SW_BWD_ACCUM);
		be->ops->matmul_bwd(be, NULL, NULL, ddwz, ddbz, dR, dxin, dwt, MN, MC, MO, 0);
		memcpy(dws, ddws, sizeof(dws));
		memcpy(dbs, ddbs, sizeof(dbs));
		memcpy(dwz, ddwz, sizeof(dwz));
		memcpy(dbz, ddbz, sizeof(dbz));
		get_act(be, dx3, ddx3, MN * MC);
		check_bwd("matmul", "dw (=, SW_BWD_DW_SET)", rel_fd(dws, gw, MO * MC));
		check_bwd("matmul", "dbias (=, SW_BWD_DW_SET)", rel_fd(dbs, gb, MO));
		check_bwd("matmul", "dinp (accum with SW_BWD_DW_SET)", rel_acc(dx3, G, gx, MN * MC));
		CHECKF(!memcmp(dws, dwz, sizeof(dws)) && !memcmp(dbs, dbz, sizeof(dbs)),
		       "matmul dw/dbias: SW_BWD_DW_SET differs from += on zeros");
		be->ops->dev_free(be, ddws); be->ops->dev_free(be, ddbs); be->ops->dev_free(be, ddwz);
		be->ops->dev_free(be, ddbz); be->ops->dev_free(be, ddx3);
		free(m_x); free(m_w); free(m_b); free(m_R);
	}
	void *bufs[] = { dxin, dwt, dbias, dout, dout2, dR, ddx, ddx2, ddw, ddb };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
}

/* ---------------------------------------------------------------- rope ---- */

enum { PB = 2, PT = 7, PH = 3, PD = 8, PN = PB * PT, PX = PN * PH * PD };
/* Not 1/base^(2i/hd): arbitrary frequencies, some large enough that angles wrap. */
static const float p_freq[PD / 2] = { 1.37f, 0.4142f, 0.0977f, 0.01234f };
static double *p_x, *p_R;
static void ref_rope(const double *x, double *out)
{
	for (int n = 0; n < PN; n++)
		for (int h = 0; h < PH; h++)
			for (int i = 0; i < PD / 2; i++) {
				/* HF: freqs = inv_freq * pos as an fp32 product; cos/sin in fp64 here */
				double ang = (double)((float)(n % PT) * p_freq[i]);
				double c = cos(ang), s = sin(ang);
				const double *xr = x + (n * PH + h) * PD;
				double *o = out + (n * PH + h) * PD;
				/* x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1) */
				o[i] = xr[i] * c + (-xr[i + PD / 2]) * s;
				o[i + PD / 2] = xr[i + PD / 2] * c + xr[i] * s;
			}
}
static double L_rope(void)
{
	double out[PX], L = 0;
	ref_rope(p_x, out);
	for (int i = 0; i < PX; i++)
		L += out[i] * p_R[i];
	return L;
}

static void op_rope(sw_backend *be, results *rs, int check)
{
	rng_seed(4);
	float x[PX], R[PX], out[PX], dx[PX];
	fill(x, PX, 1);
	fill(R, PX, 1);
	void *dx_ = dact(be, x, PX), *dR = dact(be, R, PX);
	float *dfreq = df32(be, p_freq, PD / 2);
	be->ops->rope_fwd(be, NULL, dx_, dfreq, PN, PT, PH, PD);
	be->ops->rope_bwd(be, NULL, dR, dfreq, PN, PT, PH, PD);
	get_act(be, out, dx_, PX);
	get_act(be, dx, dR, PX);
	res_add(rs, "rope.out", out, PX, 1);
	res_add(rs, "rope.dx", dx, PX, 1);
	if (check) {
		p_x = to_d(x, PX);
		p_R = to_d(R, PX);
		double ref[PX], g[PX];
		ref_rope(p_x, ref);
		check_fwd("rope", "out", rel_fd(out, ref, PX));
		fd(L_rope, p_x, PX, g);
		check_bwd("rope", "dx", rel_fd(dx, g, PX));
		free(p_x); free(p_R);
	}
	be->ops->dev_free(be, dx_); be->ops->dev_free(be, dR); be->ops->dev_free(be, dfreq);
}

/* ---------------------------------------------------------------- attention ---- */

enum { AB = 2, AT = 7, AH = 4, AKV = 2, AD = 5 };
enum { AQ = AB * AT * AH * AD, AK = AB * AT * AKV * AD };
static double *a_q, *a_k, *a_v, *a_R;
static void ref_attention(const double *q, const double *k, const double *v, double *out,
			  double *lse)
{
	double s[AT];
	for (int b = 0; b < AB; b++)
		for (int h = 0; h < AH; h++) {
			int kh = h / (AH / AKV);
			for (int t = 0; t < AT; t++) {
				const double *qr = q + ((b * AT + t) * AH + h) * AD;
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= t; j++) {
					const double *kr = k + ((b * AT + j) * AKV + kh) * AD;
					double d = 0;
					for (int e = 0; e < AD; e++)
						d += qr[e] * kr[e];
					s[j] = d / sqrt((double)AD);
					mx = s[j] > mx ? s[j] : mx;
				}
				for (int j = 0; j <= t; j++)
					sum += exp(s[j] - mx);
				double *o = out + ((b * AT + t) * AH + h) * AD;
				for (int e = 0; e < AD; e++) {
					double acc = 0;
					for (int j = 0; j <= t; j++)
						acc += exp(s[j] - mx) / sum *
						       v[((b * AT + j) * AKV + kh) * AD + e];
					o[e] = acc;
				}
				if (lse)
					lse[(b * AH + h) * AT + t] = mx + log(sum);
			}
		}
}
static double L_attention(void)
{
	double out[AQ], L = 0;
	ref_attention(a_q, a_k, a_v, out, NULL);
	for (int i = 0; i < AQ; i++)
		L += out[i] * a_R[i];
	return L;
}

static void op_attention(sw_backend *be, results *rs, int check)
{
	rng_seed(5);
	float q[AQ], k[AK], v[AK], R[AQ], out[AQ], lse[AB * AH * AT], dq[AQ], dk[AK], dv[AK];
	fill(q, AQ, 2); fill(k, AK, 2); fill(v, AK, 1); fill(R, AQ, 1);
	void *dq_ = dact(be, q, AQ), *dk_ = dact(be, k, AK), *dv_ = dact(be, v, AK);
	void *dout = dact(be, NULL, AQ), *dR = dact(be, R, AQ);
	void *gq = dact(be, NULL, AQ), *gk = dact(be, NULL, AK), *gv = dact(be, NULL, AK);
	float *dlse = df32(be, NULL, AB * AH * AT);
	be->ops->attention_fwd(be, NULL, dout, dlse, dq_, dk_, dv_, AB, AT, AH, AKV, AD);
	be->ops->attention_bwd(be, NULL, gq, gk, gv, dR, dq_, dk_, dv_, dout, dlse, AB, AT, AH, AKV,
			       AD);
	get_act(be, out, dout, AQ);
	get_act(be, dq, gq, AQ);
	get_act(be, dk, gk, AK);
	get_act(be, dv, gv, AK);
	memcpy(lse, dlse, sizeof(lse));
	res_add(rs, "attention.out", out, AQ, 1);
	res_add(rs, "attention.lse", lse, AB * AH * AT, 0);
	res_add(rs, "attention.dq", dq, AQ, 1);
	res_add(rs, "attention.dk", dk, AK, 1);
	res_add(rs, "attention.dv", dv, AK, 1);
	if (check) {
		a_q = to_d(q, AQ); a_k = to_d(k, AK); a_v = to_d(v, AK); a_R = to_d(R, AQ);
		double ref[AQ], lref[AB * AH * AT], g[AQ];
		ref_attention(a_q, a_k, a_v, ref, lref);
		check_fwd("attention", "out", rel_fd(out, ref, AQ));
		check_fwd("attention", "lse", rel_fd(lse, lref, AB * AH * AT));
		fd(L_attention, a_q, AQ, g);
		check_bwd("attention", "dq", rel_fd(dq, g, AQ));
		fd(L_attention, a_k, AK, g);
		check_bwd("attention", "dk", rel_fd(dk, g, AK));
		fd(L_attention, a_v, AK, g);
		check_bwd("attention", "dv", rel_fd(dv, g, AK));
		free(a_q); free(a_k); free(a_v); free(a_R);
	}
	void *bufs[] = { dq_, dk_, dv_, dout, dR, gq, gk, gv, dlse };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
}

/* ---------------------------------------------------------------- swiglu, add ---- */

enum { SN = 37 };
static double *s_g, *s_u, *s_R;
static double L_swiglu(void)
{
	double L = 0;
	for (int i = 0; i < SN; i++)
		L += s_g[i] / (1.0 + exp(-s_g[i])) * s_u[i] * s_R[i];
	return L;
}

static void op_swiglu_add(sw_backend *be, results *rs, int check)
{
	rng_seed(6);
	float g[SN], u[SN], R[SN], out[SN], dg[SN], du[SN], sum[SN], sum2[SN];
	fill(g, SN, 4); fill(u, SN, 1); fill(R, SN, 1);
	void *dg_ = dact(be, g, SN), *du_ = dact(be, u, SN), *dR = dact(be, R, SN);
	void *dout = dact(be, NULL, SN), *gg = dact(be, NULL, SN), *gu = dact(be, NULL, SN);
	void *dsum = dact(be, NULL, SN), *da = dact(be, g, SN);
	be->ops->swiglu_fwd(be, NULL, dout, dg_, du_, SN);
	be->ops->swiglu_bwd(be, NULL, gg, gu, dR, dg_, du_, SN);
	be->ops->add(be, NULL, dsum, dg_, du_, SN);
	be->ops->add(be, NULL, da, da, du_, SN);  /* out aliases a */
	get_act(be, out, dout, SN);
	get_act(be, dg, gg, SN);
	get_act(be, du, gu, SN);
	get_act(be, sum, dsum, SN);
	get_act(be, sum2, da, SN);
	CHECK(!memcmp(sum, sum2, sizeof(sum)));
	res_add(rs, "swiglu.out", out, SN, 1);
	res_add(rs, "swiglu.dgate", dg, SN, 1);
	res_add(rs, "swiglu.dup", du, SN, 1);
	res_add(rs, "add.out", sum, SN, 1);
	if (check) {
		s_g = to_d(g, SN); s_u = to_d(u, SN); s_R = to_d(R, SN);
		double ref[SN], gref[SN];
		for (int i = 0; i < SN; i++)
			ref[i] = s_g[i] / (1.0 + exp(-s_g[i])) * s_u[i];
		check_fwd("swiglu", "out", rel_fd(out, ref, SN));
		fd(L_swiglu, s_g, SN, gref);
		check_bwd("swiglu", "dgate", rel_fd(dg, gref, SN));
		fd(L_swiglu, s_u, SN, gref);
		check_bwd("swiglu", "dup", rel_fd(du, gref, SN));
		for (int i = 0; i < SN; i++)
			ref[i] = s_g[i] + s_u[i];
		check_fwd("add", "out", rel_fd(sum, ref, SN));
		free(s_g); free(s_u); free(s_R);
	}
	void *bufs[] = { dg_, du_, dR, dout, gg, gu, dsum, da };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
}

/* ---------------------------------------------------------------- head ---- */

enum { HN = 9, HC = 10, HV = 37 };   /* chunk 16 in the small tuning: V is not a multiple */
static const int32_t h_tg[HN] = { 3, -100, 36, 16, 0, 15, -100, 31, 3 };
static double *h_x, *h_w, h_scale;
static void ref_head(const double *x, const double *w, double *losses, double *logits)
{
	double l[HV];
	for (int n = 0; n < HN; n++) {
		double mx = -INFINITY, sum = 0;
		for (int v = 0; v < HV; v++) {
			double s = 0;
			for (int c = 0; c < HC; c++)
				s += x[n * HC + c] * w[v * HC + c];
			l[v] = s;
			if (logits)
				logits[n * HV + v] = s;
			mx = s > mx ? s : mx;
		}
		for (int v = 0; v < HV; v++)
			sum += exp(l[v] - mx);
		losses[n] = h_tg[n] < 0 ? 0.0 : mx + log(sum) - l[h_tg[n]];
	}
}
static double L_head(void)
{
	double losses[HN], L = 0;
	ref_head(h_x, h_w, losses, NULL);
	for (int n = 0; n < HN; n++)
		L += losses[n];
	return h_scale * L;
}

static void op_head(sw_backend *be, results *rs, int check)
{
	rng_seed(7);
	float x[HN * HC], w[HV * HC], Gw[HV * HC], losses[HN], losses2[HN], dx[HN * HC];
	float dw[HV * HC], logits[HN * HV];
	fill(x, HN * HC, 2); fill(w, HV * HC, 2); fill(Gw, HV * HC, 0.1f);
	int valid = 0;
	for (int n = 0; n < HN; n++)
		valid += h_tg[n] >= 0;
	float scale = 1.0f / (float)valid;
	void *dxin = dact(be, x, HN * HC), *dwt = dact(be, w, HV * HC), *ddx = dact(be, NULL, HN * HC);
	float *dloss = df32(be, NULL, HN), *dloss2 = df32(be, NULL, HN), *ddw = df32(be, Gw, HV * HC);
	float *dlogits = df32(be, NULL, HN * HV);
	int32_t *dtg;
	CHECK(be->ops->dev_alloc(be, sizeof(h_tg), (void **)&dtg) == 0);
	memcpy(dtg, h_tg, sizeof(h_tg));
	be->ops->head_loss(be, NULL, dloss, ddx, ddw, dxin, dwt, dtg, scale, HN, HC, HV);
	be->ops->head_loss(be, NULL, dloss2, NULL, NULL, dxin, dwt, dtg, scale, HN, HC, HV);
	be->ops->head_logits(be, NULL, dlogits, dxin, dwt, HN, HC, HV);
	memcpy(losses, dloss, sizeof(losses));
	memcpy(losses2, dloss2, sizeof(losses2));
	memcpy(dw, ddw, sizeof(dw));
	memcpy(logits, dlogits, sizeof(logits));
	get_act(be, dx, ddx, HN * HC);
	CHECK(!memcmp(losses, losses2, sizeof(losses)));   /* forward-only call: same bits */
	for (int n = 0; n < HN; n++)
		if (h_tg[n] < 0) {
			CHECK(losses[n] == 0.0f);
			for (int c = 0; c < HC; c++)
				CHECK(dx[n * HC + c] == 0.0f);
		}
	res_add(rs, "head_loss.losses", losses, HN, 0);
	res_add(rs, "head_loss.dinp", dx, HN * HC, 1);
	res_add(rs, "head_loss.dw", dw, HV * HC, 0);
	res_add(rs, "head_logits.logits", logits, HN * HV, 0);
	if (check) {
		h_x = to_d(x, HN * HC);
		h_w = to_d(w, HV * HC);
		h_scale = scale;
		double ref[HN], lref[HN * HV], gx[HN * HC], gw[HV * HC];
		ref_head(h_x, h_w, ref, lref);
		check_fwd("head_loss", "losses", rel_fd(losses, ref, HN));
		check_fwd("head_logits", "logits", rel_fd(logits, lref, HN * HV));
		fd(L_head, h_x, HN * HC, gx);
		fd(L_head, h_w, HV * HC, gw);
		check_bwd("head_loss", "dinp", rel_fd(dx, gx, HN * HC));
		check_bwd("head_loss", "dw (+=)", rel_acc(dw, Gw, gw, HV * HC));
		free(h_x); free(h_w);
	}
	void *bufs[] = { dxin, dwt, ddx, dloss, dloss2, ddw, dlogits, dtg };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
}

/* ---------------------------------------------------------------- sumsq, adamw, cast ---- */

enum { ON = 1000 };
static void op_reduce_optim(sw_backend *be, results *rs, int check)
{
	rng_seed(8);
	float x[ON], p[ON], m[ON], v[ON], g[ON];
	fill(x, ON, 3); fill(p, ON, 1); fill(m, ON, 0.1f); fill(g, ON, 1);
	for (int i = 0; i < ON; i++)
		v[i] = rnd() * rnd() * 0.01f + 0.01f;
	float *dx = df32(be, x, ON), *dp = df32(be, p, ON), *dm = df32(be, m, ON);
	float *dv = df32(be, v, ON), *dg = df32(be, g, ON);
	void *dp16 = dact(be, NULL, ON), *dc = dact(be, NULL, ON);
	double *dsum;
	CHECK(be->ops->dev_alloc(be, sizeof(double), (void **)&dsum) == 0);
	be->ops->sumsq(be, NULL, dsum, dx, ON);
	sw_adamw_hparams hp = { 1e-3, 0.9, 0.95, 1e-8, 0.1 };
	sw_adamw_args a = sw_adamw_args_make(&hp, 1e-3, 3, 1, 0.5);
	be->ops->adamw(be, NULL, dp, dm, dv, dg, dp16, ON, &a);
	be->ops->cast_f32_to_act(be, NULL, dc, dx, ON);
	float p16[ON], cst[ON], sq = (float)*dsum;
	get_act(be, p16, dp16, ON);
	get_act(be, cst, dc, ON);
	res_add(rs, "sumsq", &sq, 1, 0);
	res_add(rs, "adamw.p32", dp, ON, 0);
	res_add(rs, "adamw.p16", p16, ON, 1);
	/* adamw: bit-identical to optim/adamw.h's scalar path, in either mode */
	float p2[ON], m2[ON], v2[ON];
	memcpy(p2, p, sizeof(p)); memcpy(m2, m, sizeof(m)); memcpy(v2, v, sizeof(v));
	sw_adamw_update(p2, m2, v2, g, NULL, SW_DTYPE_F32, ON, &a);
	CHECK(!memcmp(p2, dp, sizeof(p2)) && !memcmp(m2, dm, sizeof(m2)) && !memcmp(v2, dv, sizeof(v2)));
	for (int i = 0; i < ON; i++) {
		float want = be->act == SW_DTYPE_BF16 ? sw_round_bf16(p2[i]) : p2[i];
		CHECK(p16[i] == want);
		want = be->act == SW_DTYPE_BF16 ? sw_round_bf16(x[i]) : x[i];
		CHECK(cst[i] == want);
	}
	if (check) {
		double ref = 0;
		for (int i = 0; i < ON; i++)
			ref += (double)x[i] * x[i];
		double err = fabs(*dsum - ref) / ref;
		worst_of("sumsq")->fwd = err;
		worst_of("sumsq")->has_fwd = 1;
		CHECKF(err < 1e-14, "sumsq: rel err %.3g", err);
	}
	void *bufs[] = { dx, dp, dm, dv, dg, dp16, dc, dsum };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
}

/* ---------------------------------------------------------------- medium shapes ---- */

/* Default block sizes, shapes above one block: forward vs fp64, and the analytic gradients of
 * matmul and head_loss (dinp = R @ w, dw = R^T @ x; dlogits = scale * (softmax - onehot)). */
static void op_medium(sw_backend *be, results *rs, int check)
{
	enum { N = 200, C = 300, OC = 520 };
	rng_seed(9);
	float *x = fnew(N * C), *w = fnew(OC * C), *R = fnew(N * OC), *out = fnew(N * OC);
	float *dx = fnew(N * C), *dw = fnew(OC * C);
	fill(x, N * C, 1); fill(w, OC * C, 1); fill(R, N * OC, 1);
	void *dxin = dact(be, x, N * C), *dwt = dact(be, w, OC * C), *dout = dact(be, NULL, N * OC);
	void *dR = dact(be, R, N * OC), *ddx = dact(be, NULL, N * C);
	float *ddw = df32(be, NULL, OC * C);
	be->ops->memset0(be, NULL, ddw, OC * C * 4);
	be->ops->matmul_fwd(be, NULL, dout, dxin, dwt, NULL, N, C, OC);
	be->ops->matmul_bwd(be, NULL, ddx, ddw, NULL, dR, dxin, dwt, N, C, OC, 0);
	get_act(be, out, dout, N * OC);
	get_act(be, dx, ddx, N * C);
	memcpy(dw, ddw, (size_t)OC * C * 4);
	res_add(rs, "matmul (medium).out", out, N * OC, 1);
	res_add(rs, "matmul (medium).dinp", dx, N * C, 1);
	res_add(rs, "matmul (medium).dw", dw, OC * C, 0);
	if (check) {
		double *ref = dnew((int64_t)OC * C);
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++) {
				double s = 0;
				for (int c = 0; c < C; c++)
					s += (double)x[n * C + c] * w[o * C + c];
				ref[n * OC + o] = s;
			}
		check_fwd("matmul (medium)", "out", rel_fd(out, ref, N * OC));
		for (int n = 0; n < N; n++)
			for (int c = 0; c < C; c++) {
				double s = 0;
				for (int o = 0; o < OC; o++)
					s += (double)R[n * OC + o] * w[o * C + c];
				ref[n * C + c] = s;
			}
		check_bwd("matmul (medium)", "dinp", rel_fd(dx, ref, N * C));
		for (int o = 0; o < OC; o++)
			for (int c = 0; c < C; c++) {
				double s = 0;
				for (int n = 0; n < N; n++)
					s += (double)R[n * OC + o] * x[n * C + c];
				ref[o * C + c] = s;
			}
		check_bwd("matmul (medium)", "dw", rel_fd(dw, ref, OC * C));
		free(ref);
	}
	void *bufs[] = { dxin, dwt, dout, dR, ddx, ddw };
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		be->ops->dev_free(be, bufs[i]);
	free(x); free(w); free(R); free(out); free(dx); free(dw);

	/* head_loss over two vocabulary chunks (4096 + 904) and several row blocks */
	enum { HN2 = 150, HC2 = 48, HV2 = 5000 };
	rng_seed(10);
	x = fnew(HN2 * HC2); w = fnew((int64_t)HV2 * HC2);
	fill(x, HN2 * HC2, 1); fill(w, (int64_t)HV2 * HC2, 1);
	int32_t tg[HN2];
	for (int n = 0; n < HN2; n++)
		tg[n] = n % 7 == 3 ? -100 : (int32_t)((n * 2654435761u) % HV2);
	float scale = 1.0f / 128, losses[HN2];
	float *hdx = fnew(HN2 * HC2), *hdw = fnew((int64_t)HV2 * HC2);
	dxin = dact(be, x, HN2 * HC2);
	dwt = dact(be, w, (int64_t)HV2 * HC2);
	ddx = dact(be, NULL, HN2 * HC2);
	ddw = df32(be, NULL, (int64_t)HV2 * HC2);
	be->ops->memset0(be, NULL, ddw, (uint64_t)HV2 * HC2 * 4);
	float *dloss = df32(be, NULL, HN2);
	int32_t *dtg;
	CHECK(be->ops->dev_alloc(be, sizeof(tg), (void **)&dtg) == 0);
	memcpy(dtg, tg, sizeof(tg));
	be->ops->head_loss(be, NULL, dloss, ddx, ddw, dxin, dwt, dtg, scale, HN2, HC2, HV2);
	memcpy(losses, dloss, sizeof(losses));
	get_act(be, hdx, ddx, HN2 * HC2);
	memcpy(hdw, ddw, (size_t)HV2 * HC2 * 4);
	res_add(rs, "head_loss (medium).losses", losses, HN2, 0);
	res_add(rs, "head_loss (medium).dinp", hdx, HN2 * HC2, 1);
	res_add(rs, "head_loss (medium).dw", hdw, (int64_t)HV2 * HC2, 0);
	if (check) {
		double *lg = dnew(HV2), lref[HN2], *gx = dnew(HN2 * HC2), *gw = dnew((int64_t)HV2 * HC2);
		for (int n = 0; n < HN2; n++) {
			double mx = -INFINITY, sum = 0;
			for (int v = 0; v < HV2; v++) {
				double s = 0;
				for (int c = 0; c < HC2; c++)
					s += (double)x[n * HC2 + c] * w[v * HC2 + c];
				lg[v] = s;
				mx = s > mx ? s : mx;
			}
			for (int v = 0; v < HV2; v++)
				sum += exp(lg[v] - mx);
			double lse = mx + log(sum);
			lref[n] = tg[n] < 0 ? 0 : lse - lg[tg[n]];
			if (tg[n] < 0)
				continue;
			for (int v = 0; v < HV2; v++) {
				double d = scale * (exp(lg[v] - lse) - (v == tg[n]));
				for (int c = 0; c < HC2; c++) {
					gx[n * HC2 + c] += d * w[v * HC2 + c];
					gw[v * HC2 + c] += d * x[n * HC2 + c];
				}
			}
		}
		check_fwd("head_loss (medium)", "losses", rel_fd(losses, lref, HN2));
		check_bwd("head_loss (medium)", "dinp", rel_fd(hdx, gx, HN2 * HC2));
		check_bwd("head_loss (medium)", "dw", rel_fd(hdw, gw, (int64_t)HV2 * HC2));
		free(lg); free(gx); free(gw);
	}
	void *hb[] = { dxin, dwt, ddx, ddw, dloss, dtg };
	for (size_t i = 0; i < sizeof(hb) / sizeof(hb[0]); i++)
		be->ops->dev_free(be, hb[i]);
	free(x); free(w); free(hdx); free(hdw);

	/* attention, T = 100 over two row blocks of 64 */
	enum { B3 = 1, T3 = 100, H3 = 4, KV3 = 2, D3 = 32 };
	rng_seed(11);
	int64_t nq = B3 * T3 * H3 * D3, nk = B3 * T3 * KV3 * D3;
	float *q = fnew(nq), *k = fnew(nk), *v = fnew(nk), *ao = fnew(nq);
	fill(q, nq, 1); fill(k, nk, 1); fill(v, nk, 1);
	void *dq = dact(be, q, nq), *dk = dact(be, k, nk), *dv = dact(be, v, nk);
	void *dao = dact(be, NULL, nq);
	float *dlse = df32(be, NULL, B3 * H3 * T3);
	float *R3 = fnew(nq), *gq = fnew(nq), *gk = fnew(nk), *gv = fnew(nk);
	fill(R3, nq, 1);
	void *dR3 = dact(be, R3, nq), *dgq = dact(be, NULL, nq), *dgk = dact(be, NULL, nk);
	void *dgv = dact(be, NULL, nk);
	be->ops->attention_fwd(be, NULL, dao, dlse, dq, dk, dv, B3, T3, H3, KV3, D3);
	be->ops->attention_bwd(be, NULL, dgq, dgk, dgv, dR3, dq, dk, dv, dao, dlse, B3, T3, H3, KV3,
			       D3);
	get_act(be, ao, dao, nq);
	get_act(be, gq, dgq, nq);
	get_act(be, gk, dgk, nk);
	get_act(be, gv, dgv, nk);
	res_add(rs, "attention (medium).out", ao, nq, 1);
	res_add(rs, "attention (medium).dq", gq, nq, 1);
	res_add(rs, "attention (medium).dk", gk, nk, 1);
	res_add(rs, "attention (medium).dv", gv, nk, 1);
	if (check) {
		double *ref = dnew(nq), s[T3];
		for (int t = 0; t < T3; t++)
			for (int h = 0; h < H3; h++) {
				int kh = h / (H3 / KV3);
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= t; j++) {
					double d = 0;
					for (int e = 0; e < D3; e++)
						d += (double)q[(t * H3 + h) * D3 + e] * k[(j * KV3 + kh) * D3 + e];
					s[j] = d / sqrt((double)D3);
					mx = s[j] > mx ? s[j] : mx;
				}
				for (int j = 0; j <= t; j++)
					sum += exp(s[j] - mx);
				for (int j = 0; j <= t; j++)
					for (int e = 0; e < D3; e++)
						ref[(t * H3 + h) * D3 + e] +=
							exp(s[j] - mx) / sum * v[(j * KV3 + kh) * D3 + e];
			}
		check_fwd("attention (medium)", "out", rel_fd(ao, ref, nq));
		/* backward from the math, fp64: P = softmax(S), dV = P^T dO, dP = dO V^T,
		 * dS = P * (dP - rowsum(P * dP)), dQ = dS K / sqrt(hd), dK = dS^T Q / sqrt(hd) */
		double *rq = dnew(nq), *rk = dnew(nk), *rv = dnew(nk), p[T3], dp[T3];
		double sc = 1.0 / sqrt((double)D3);
		for (int t = 0; t < T3; t++)
			for (int h = 0; h < H3; h++) {
				int kh = h / (H3 / KV3);
				const float *qr = q + (t * H3 + h) * D3, *dr = R3 + (t * H3 + h) * D3;
				double mx = -INFINITY, sum = 0, rowdot = 0;
				for (int j = 0; j <= t; j++) {
					double d = 0, e = 0;
					for (int c = 0; c < D3; c++) {
						d += (double)qr[c] * k[(j * KV3 + kh) * D3 + c];
						e += (double)dr[c] * v[(j * KV3 + kh) * D3 + c];
					}
					p[j] = d * sc;
					dp[j] = e;
					mx = p[j] > mx ? p[j] : mx;
				}
				for (int j = 0; j <= t; j++)
					sum += exp(p[j] - mx);
				for (int j = 0; j <= t; j++) {
					p[j] = exp(p[j] - mx) / sum;
					rowdot += p[j] * dp[j];
				}
				for (int j = 0; j <= t; j++) {
					double ds = p[j] * (dp[j] - rowdot) * sc;
					for (int c = 0; c < D3; c++) {
						rq[(t * H3 + h) * D3 + c] += ds * k[(j * KV3 + kh) * D3 + c];
						rk[(j * KV3 + kh) * D3 + c] += ds * qr[c];
						rv[(j * KV3 + kh) * D3 + c] += p[j] * dr[c];
					}
				}
			}
		check_bwd("attention (medium)", "dq", rel_fd(gq, rq, nq));
		check_bwd("attention (medium)", "dk", rel_fd(gk, rk, nk));
		check_bwd("attention (medium)", "dv", rel_fd(gv, rv, nk));
		free(ref); free(rq); free(rk); free(rv);
	}
	free(R3); free(gq); free(gk); free(gv);
	void *ab[] = { dq, dk, dv, dao, dlse, dR3, dgq, dgk, dgv };
	for (size_t i = 0; i < sizeof(ab) / sizeof(ab[0]); i++)
		be->ops->dev_free(be, ab[i]);
	free(q); free(k); free(v); free(ao);
}

/* ---------------------------------------------------------------- memory, events ---- */

static void test_memory_events(void)
{
	sw_backend *be;
	sw_backend_opts o = { .mem_budget = 1 << 20, .act = SW_DTYPE_BF16, .threads = 2 };
	CHECK(sw_backend_create("cpu", &o, &be) == 0);
	CHECK(!strcmp(be->name, "cpu") && be->act == SW_DTYPE_BF16 && be->budget == 1 << 20);
	void *a, *b, *c;
	CHECK(be->ops->dev_alloc(be, 600 << 10, &a) == 0);
	CHECK(((uintptr_t)a & 255) == 0);
	CHECK(be->used == 600 << 10 && be->peak == 600 << 10);
	CHECK(be->ops->dev_alloc(be, 500 << 10, &b) == -ENOMEM);   /* past the budget */
	CHECK(be->ops->dev_alloc(be, 400 << 10, &b) == 0);
	CHECK(be->used == 1000 << 10);
	CHECK(be->ops->dev_alloc(be, 100 << 10, &c) == -ENOMEM);
	be->ops->dev_free(be, a);
	CHECK(be->used == 400 << 10 && be->peak == 1000 << 10);
	CHECK(be->ops->dev_alloc(be, 300 << 10, &c) == 0);
	memset(c, 1, 300 << 10);   /* the arena is real memory */
	be->ops->dev_free(be, b);
	be->ops->dev_free(be, c);
	CHECK(be->used == 0);

	/* streams, events, copies */
	sw_stream *s1, *s2;
	sw_event *e1, *e2;
	CHECK(be->ops->stream_create(be, &s1) == 0 && be->ops->stream_create(be, &s2) == 0);
	CHECK(be->ops->event_create(be, &e1) == 0 && be->ops->event_create(be, &e2) == 0);
	char *h;
	CHECK(be->ops->host_alloc(be, 4096, (void **)&h) == 0);
	CHECK(be->ops->host_register(be, h, 4096) == 0);
	CHECK(be->ops->dev_alloc(be, 4096, &a) == 0 && be->ops->dev_alloc(be, 4096, &b) == 0);
	for (int i = 0; i < 4096; i++)
		h[i] = (char)i;
	be->ops->event_record(be, e1, s1);
	be->ops->copy_h2d(be, s1, a, h, 4096);
	be->ops->event_record(be, e2, s1);
	be->ops->stream_wait(be, s2, e2);
	be->ops->copy_d2d(be, s2, b, a, 4096);
	be->ops->memset0(be, s2, a, 100);
	be->ops->stream_sync(be, s2);
	memset(h, 0, 4096);
	be->ops->copy_d2h(be, s1, h, b, 4096);
	be->ops->event_sync(be, e2);
	CHECK(be->ops->event_done(be, e1) == 1 && be->ops->event_done(be, e2) == 1);
	CHECK(be->ops->event_ms(be, e1, e2) >= 0.0f);
	for (int i = 0; i < 4096; i++)
		CHECK(h[i] == (char)i);
	CHECK(((char *)a)[99] == 0 && ((char *)a)[100] == 100);
	be->ops->host_unregister(be, h);
	be->ops->host_free(be, h);
	be->ops->dev_free(be, a);
	be->ops->dev_free(be, b);
	be->ops->event_destroy(be, e1);
	be->ops->event_destroy(be, e2);
	be->ops->stream_destroy(be, s1);
	be->ops->stream_destroy(be, s2);
	sw_backend_destroy(be);

	/* a zero budget: every allocation fails cleanly */
	o.mem_budget = 0;
	CHECK(sw_backend_create("cpu", &o, &be) == 0);
	CHECK(be->ops->dev_alloc(be, 1, &a) == -ENOMEM);
	sw_backend_destroy(be);
	/* unsupported activation type: an error, not a crash */
	o.act = SW_DTYPE_F16;
	CHECK(sw_backend_create("cpu", &o, &be) == -EINVAL);
	printf("memory: dev_alloc past the budget -> -ENOMEM; used/peak tracked; events, copies ok\n");
}

/* ---------------------------------------------------------------- driver ---- */

static void run_all(sw_dtype act, int threads, results *rs, int check)
{
	sw_backend *be;
	sw_backend_opts o = { .mem_budget = 256ull << 20, .act = act, .threads = threads };
	CHECK(sw_backend_create("cpu", &o, &be) == 0);
	sw_cpu_tune def, small;
	sw_cpu_backend_get_tune(be, &def);
	/* head_dlog 63: the backward's chunk is 7 rows (9 x 7 <= 63) against the forward's 16 */
	small = (sw_cpu_tune){ .gemm_m = 4, .gemm_n = 5, .gemm_k = 3, .head_rows = 4, .head_chunk = 16,
			       .head_dlog = 63,
			       .attn_rows = 3, .col_block = 4, .elem_chunk = 8 };
	sw_cpu_backend_set_tune(be, &small);
	op_embedding(be, rs, check);
	op_rmsnorm(be, rs, check);
	op_matmul(be, rs, check);
	op_rope(be, rs, check);
	op_attention(be, rs, check);
	op_swiglu_add(be, rs, check);
	op_head(be, rs, check);
	op_reduce_optim(be, rs, check);
	sw_cpu_backend_set_tune(be, &def);
	op_medium(be, rs, check);
	CHECK(be->used == 0);
	sw_backend_destroy(be);
}

static void compare_bits(const results *a, const results *b, const char *what)
{
	CHECK(a->n == b->n);
	for (int i = 0; i < a->n; i++) {
		CHECK(!strcmp(a->r[i].name, b->r[i].name) && a->r[i].n == b->r[i].n);
		CHECKF(!memcmp(a->r[i].v, b->r[i].v, (size_t)a->r[i].n * sizeof(float)),
		       "%s: %s differs between 1 and 3 threads", what, a->r[i].name);
	}
	printf("determinism (%s): %d outputs bit-identical with 1 and 3 threads\n", what, a->n);
}

int main(void)
{
	test_memory_events();
	results f1 = { 0 }, f3 = { 0 }, b1 = { 0 }, b3 = { 0 };
	run_all(SW_DTYPE_F32, 1, &f1, 1);
	run_all(SW_DTYPE_F32, 3, &f3, 0);
	run_all(SW_DTYPE_BF16, 1, &b1, 0);
	run_all(SW_DTYPE_BF16, 3, &b3, 0);
	compare_bits(&f1, &f3, "F32");
	compare_bits(&b1, &b3, "BF16");

	/* BF16 mode against F32 mode */
	for (int i = 0; i < b1.n; i++) {
		const result *rb = &b1.r[i], *rf = &f1.r[i];
		if (rb->act)   /* act outputs really are bf16 values */
			for (int64_t j = 0; j < rb->n; j++)
				CHECKF(sw_round_bf16(rb->v[j]) == rb->v[j] || rb->v[j] != rb->v[j],
				       "%s[%lld] = %g is not a bf16 value", rb->name, (long long)j, rb->v[j]);
		/* ops without a GEMM compute the same fp32 values in both modes: BF16 must be
		 * exactly those rounded once, at the store */
		static const char *exact[] = { "embedding.out", "rmsnorm.out", "rmsnorm.dinp",
					       "rope.out", "rope.dx", "swiglu.out", "swiglu.dgate",
					       "swiglu.dup", "add.out", "adamw.p16" };
		for (size_t e = 0; e < sizeof(exact) / sizeof(exact[0]); e++)
			if (!strcmp(rb->name, exact[e]))
				for (int64_t j = 0; j < rb->n; j++)
					CHECKF(rb->v[j] == sw_round_bf16(rf->v[j]),
					       "%s[%lld]: BF16 %g is not F32's %g rounded once", rb->name,
					       (long long)j, rb->v[j], rf->v[j]);
		double err = check_rel_err_f32(rb->v, rf->v, rb->n);
		char op[32];
		snprintf(op, sizeof(op), "%.*s", (int)strcspn(rb->name, "."), rb->name);
		worst *w = worst_of(op);
		w->has_bf16 = 1;
		if (err > w->bf16)
			w->bf16 = err;
		CHECKF(err <= BF16_TOL, "%s: BF16 vs F32 rel err %.3g > %.0e", rb->name, err, BF16_TOL);
	}

	results *all[] = { &f1, &f3, &b1, &b3 };
	for (int r = 0; r < 4; r++)
		for (int i = 0; i < all[r]->n; i++)
			free(all[r]->r[i].v);

	printf("%-22s %12s %12s %12s\n", "op", "fwd vs fp64", "bwd vs FD", "bf16 vs f32");
	for (int i = 0; i < nworst; i++) {
		char c[3][16];
		double v[3] = { worsts[i].fwd, worsts[i].bwd, worsts[i].bf16 };
		int has[3] = { worsts[i].has_fwd, worsts[i].has_bwd, worsts[i].has_bf16 };
		for (int j = 0; j < 3; j++)
			snprintf(c[j], sizeof(c[j]), has[j] ? "%.3g" : "-", v[j]);
		printf("%-22s %12s %12s %12s\n", worsts[i].op, c[0], c[1], c[2]);
	}
	printf("tolerances: fwd %.0e, bwd %.0e (norm-relative; bwd of the medium shapes is vs the "
	       "analytic fp64 gradient), bf16 %.0e\n", FWD_TOL, BWD_TOL,
	       BF16_TOL);
	return 0;
}
