/* spillway's AdamW + LR schedule + global-norm clipping against torch.optim.AdamW,
 * transformers' schedules and torch.nn.utils.clip_grad_norm_, from the golden file written by
 * tests/ref/adamw_golden.py. Our state evolves on its own from the same initial parameters and
 * gradients (it is not reset to torch's each step), and must stay within rel. 1e-6
 * (||ours - torch|| / ||torch|| per tensor) for p, m and v after every step; the lr must match
 * torch's to 1e-12 and the total gradient norm to 1e-6. Every path (scalar, AVX2, AVX-512) runs. */
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "core/pool.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

static const char *golden_path(void)
{
	const char *e = getenv("SW_ADAMW_GOLDEN");
	return e ? e : "tests/ref/adamw_golden.bin";
}

typedef struct { const unsigned char *p, *end; } reader;

static void rd(reader *r, void *dst, size_t n)
{
	CHECKF((size_t)(r->end - r->p) >= n, "%s: truncated", golden_path());
	memcpy(dst, r->p, n);
	r->p += n;
}
static uint32_t rd_u32(reader *r) { uint32_t v; rd(r, &v, 4); return v; }
static double rd_f64(reader *r) { double v; rd(r, &v, 8); return v; }
static int64_t rd_i64(reader *r) { int64_t v; rd(r, &v, 8); return v; }

static double worst_p, worst_m, worst_v, worst_norm, worst_lr;

static void run_one(reader *r, int run, sw_pool *pool)
{
	uint32_t nt = rd_u32(r), steps = rd_u32(r), kind = rd_u32(r);
	(void)rd_u32(r);
	CHECK(nt >= 1 && nt <= 64 && steps >= 1 && steps <= 1000 && kind <= 1);
	sw_adamw_hparams h;
	double max_norm, min_lr_rate;
	h.lr = rd_f64(r);
	h.beta1 = rd_f64(r);
	h.beta2 = rd_f64(r);
	h.eps = rd_f64(r);
	h.weight_decay = rd_f64(r);
	max_norm = rd_f64(r);
	min_lr_rate = rd_f64(r);
	sw_lr_schedule sched = { kind ? SW_LR_COSINE : SW_LR_CONSTANT, h.lr, 0, 0, min_lr_rate };
	sched.warmup_steps = rd_i64(r);
	sched.total_steps = rd_i64(r);
	char why[128];
	CHECKF(sw_lr_schedule_check(&sched, why, sizeof(why)) == 0, "%s", why);

	uint32_t n[64], decay[64];
	float *p[64], *m[64], *v[64], *g[64], *tp[64], *tm[64], *tv[64];
	sw_bf16 *p16[64];
	for (uint32_t i = 0; i < nt; i++) {
		n[i] = rd_u32(r);
		decay[i] = rd_u32(r);
		CHECK(n[i] >= 1 && n[i] <= (1u << 24));
	}
	for (uint32_t i = 0; i < nt; i++) {
		p[i] = malloc(n[i] * 4);
		m[i] = calloc(n[i], 4);
		v[i] = calloc(n[i], 4);
		g[i] = malloc(n[i] * 4);
		tp[i] = malloc(n[i] * 4);
		tm[i] = malloc(n[i] * 4);
		tv[i] = malloc(n[i] * 4);
		p16[i] = malloc(n[i] * 2);
		CHECK(p[i] && m[i] && v[i] && g[i] && tp[i] && tm[i] && tv[i] && p16[i]);
		rd(r, p[i], n[i] * 4);
	}
	for (uint32_t s = 1; s <= steps; s++) {
		double lr_torch = rd_f64(r), norm_torch = rd_f64(r);
		double sumsq[64];
		/* read this step's gradients first: the norm comes before any update */
		for (uint32_t i = 0; i < nt; i++) {
			rd(r, g[i], n[i] * 4);
			rd(r, tp[i], n[i] * 4);
			rd(r, tm[i], n[i] * 4);
			rd(r, tv[i], n[i] * 4);
			sumsq[i] = sw_grad_sumsq(pool, g[i], n[i]);
		}
		double lr = sw_lr_at(&sched, s);
		double elr = fabs(lr - lr_torch) / (lr_torch > 0 ? lr_torch : 1);
		CHECKF(elr <= 1e-12, "run %d step %u: lr %.17g, torch %.17g", run, s, lr, lr_torch);
		double norm = sw_grad_norm(sumsq, nt);
		double en = fabs(norm - norm_torch) / norm_torch;
		CHECKF(en <= 1e-6, "run %d step %u: grad norm %.9g, torch %.9g", run, s, norm, norm_torch);
		double scale = sw_clip_scale(norm, max_norm);
		CHECK(isfinite(scale) && scale > 0 && scale <= 1);
		worst_lr = fmax(worst_lr, elr);
		worst_norm = fmax(worst_norm, en);
		for (uint32_t i = 0; i < nt; i++) {
			sw_adamw_args a = sw_adamw_args_make(&h, lr, s, (int)decay[i], scale);
			CHECK(sw_adamw_update_parallel(pool, p[i], m[i], v[i], g[i], p16[i], SW_DTYPE_BF16,
						       n[i], &a) == 0);
			double ep = check_rel_err_f32(p[i], tp[i], n[i]);
			double em = check_rel_err_f32(m[i], tm[i], n[i]);
			double ev = check_rel_err_f32(v[i], tv[i], n[i]);
			CHECKF(ep <= 1e-6 && em <= 1e-6 && ev <= 1e-6,
			       "run %d step %u tensor %u (n %u, decay %u, scale %.6g): rel err p %.3g m %.3g "
			       "v %.3g", run, s, i, n[i], decay[i], scale, ep, em, ev);
			for (uint32_t k = 0; k < n[i]; k++)
				CHECK(p16[i][k] == sw_f32_to_bf16(p[i][k]));
			worst_p = fmax(worst_p, ep);
			worst_m = fmax(worst_m, em);
			worst_v = fmax(worst_v, ev);
		}
	}
	for (uint32_t i = 0; i < nt; i++) {
		free(p[i]); free(m[i]); free(v[i]); free(g[i]);
		free(tp[i]); free(tm[i]); free(tv[i]); free(p16[i]);
	}
}

int main(void)
{
	FILE *f = fopen(golden_path(), "rb");
	CHECKF(f, "%s is missing; generate it with python3 tests/ref/adamw_golden.py (torch, transformers)",
	       golden_path());
	CHECK(fseek(f, 0, SEEK_END) == 0);
	long size = ftell(f);
	CHECK(size > 16 && size < (64l << 20));
	rewind(f);
	unsigned char *buf = malloc((size_t)size);
	CHECK(buf && fread(buf, 1, (size_t)size, f) == (size_t)size);
	fclose(f);
	sw_pool *pool = sw_pool_create(2, NULL);
	CHECK(pool);
	for (int path = SW_ADAMW_PATH_SCALAR; path < SW_ADAMW_PATH_COUNT; path++) {
		if (!sw_adamw_path_supported((sw_adamw_path)path))
			continue;
		CHECK(sw_adamw_path_set((sw_adamw_path)path) == 0);
		reader r = { buf, buf + size };
		char magic[8];
		rd(&r, magic, 8);
		CHECKF(memcmp(magic, "SWADAMG1", 8) == 0, "%s: not an AdamW golden file", golden_path());
		CHECKF(rd_u32(&r) == 1, "%s: unknown version", golden_path());
		uint32_t runs = rd_u32(&r);
		CHECK(runs >= 1 && runs <= 16);
		for (uint32_t i = 0; i < runs; i++)
			run_one(&r, (int)i, pool);
		CHECKF(r.p == r.end, "%s: %ld bytes left over", golden_path(), (long)(r.end - r.p));
		printf("%s: worst rel err vs torch: p %.2e m %.2e v %.2e, grad norm %.2e, lr %.2e\n",
		       sw_adamw_path_name((sw_adamw_path)path), worst_p, worst_m, worst_v, worst_norm,
		       worst_lr);
	}
	sw_pool_destroy(pool);
	free(buf);
	return 0;
}
