/* LR schedules against values worked out by hand from HF's formulas; gradient sum of squares,
 * norm and clipping scale against the math (fp64 / long double) and torch's clip_grad_norm_
 * rule; the sum of squares gives the same bits on every path and for any number of threads. */
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "core/pool.h"
#include "tests/check.h"

#include <errno.h>
#include <string.h>

static void near(double got, double want, const char *what)
{
	CHECKF(fabs(got - want) <= 1e-12 * fabs(want) + 1e-15, "%s: %.17g, expected %.17g", what, got,
	       want);
}

static void test_schedules(void)
{
	sw_lr_schedule c = { SW_LR_CONSTANT, 3e-4, 0, 0, 0 };
	near(sw_lr_at(&c, 1), 3e-4, "constant t=1");
	near(sw_lr_at(&c, 1000), 3e-4, "constant t=1000");
	c.warmup_steps = 4;                     /* get_constant_schedule_with_warmup(4) */
	near(sw_lr_at(&c, 1), 0, "constant warm-up t=1");
	near(sw_lr_at(&c, 3), 1.5e-4, "constant warm-up t=3");
	near(sw_lr_at(&c, 5), 3e-4, "constant warm-up t=5");

	/* get_cosine_schedule_with_warmup(warmup 10, total 110), lr 1 */
	sw_lr_schedule s = { SW_LR_COSINE, 1.0, 10, 110, 0 };
	near(sw_lr_at(&s, 1), 0.0, "cosine t=1 (step 0)");
	near(sw_lr_at(&s, 6), 0.5, "cosine t=6 (warm-up half way)");
	near(sw_lr_at(&s, 11), 1.0, "cosine t=11 (peak)");
	near(sw_lr_at(&s, 36), 0.5 * (1 + cos(M_PI * 0.25)), "cosine progress 1/4");
	near(sw_lr_at(&s, 61), 0.5, "cosine progress 1/2");
	near(sw_lr_at(&s, 111), 0.0, "cosine end");
	near(sw_lr_at(&s, 161), 0.5, "cosine past the end rises again as HF's does");
	/* min_lr_rate 0.1 (get_cosine_with_min_lr_schedule_with_warmup) */
	s.min_lr_rate = 0.1;
	near(sw_lr_at(&s, 61), 0.5 * 0.9 + 0.1, "cosine min 0.1 half way");
	near(sw_lr_at(&s, 111), 0.1, "cosine min 0.1 end");
	near(sw_lr_at(&s, 5), 0.4, "warm-up ignores the floor");
	/* no warm-up; total 1: max(1, total - warmup) */
	sw_lr_schedule z = { SW_LR_COSINE, 2.0, 0, 1, 0 };
	near(sw_lr_at(&z, 1), 2.0, "cosine without warm-up, first step at the peak");
	near(sw_lr_at(&z, 2), 0.0, "cosine total 1 ends at 0");

	char why[160];
	CHECK(sw_lr_schedule_check(&s, why, sizeof(why)) == 0);
	sw_lr_schedule bad = s;
	bad.lr = -1;
	CHECK(sw_lr_schedule_check(&bad, why, sizeof(why)) == -EINVAL && strstr(why, "learning rate"));
	bad = s;
	bad.lr = NAN;
	CHECK(sw_lr_schedule_check(&bad, why, sizeof(why)) == -EINVAL);
	bad = s;
	bad.warmup_steps = -2;
	CHECK(sw_lr_schedule_check(&bad, why, sizeof(why)) == -EINVAL && strstr(why, "warm-up"));
	bad = s;
	bad.total_steps = 0;
	CHECK(sw_lr_schedule_check(&bad, why, sizeof(why)) == -EINVAL && strstr(why, "total"));
	bad = s;
	bad.min_lr_rate = 1.5;
	CHECK(sw_lr_schedule_check(&bad, why, sizeof(why)) == -EINVAL && strstr(why, "minimum"));
	sw_lr_kind k;
	CHECK(sw_lr_kind_parse("cosine", &k) == 0 && k == SW_LR_COSINE);
	CHECK(sw_lr_kind_parse("constant", &k) == 0 && k == SW_LR_CONSTANT);
	CHECK(sw_lr_kind_parse("linear", &k) == -EINVAL);
}

/* The documented order, written out: chunks of SW_SUMSQ_CHUNK, 8 lanes, pairwise lane sum. */
static double sumsq_spec(const float *g, int64_t n)
{
	double s = 0;
	for (int64_t off = 0; off < n; off += SW_SUMSQ_CHUNK) {
		double l[8] = { 0 };
		for (int64_t i = off; i < n && i < off + SW_SUMSQ_CHUNK; i++)
			l[(i - off) % 8] += (double)g[i] * (double)g[i];
		s += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
	}
	return s;
}

static void test_sumsq(void)
{
	static const int64_t lens[] = { 0, 1, 7, 9, 65535, 65536, 65537, 300001 };
	sw_pool *pools[3] = { NULL, sw_pool_create(2, NULL), sw_pool_create(5, NULL) };
	CHECK(pools[1] && pools[2]);
	uint64_t r = 12345;
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int64_t n = lens[li];
		float *g = malloc((size_t)(n + 1) * 4);
		CHECK(g);
		long double exact = 0;
		for (int64_t i = 0; i < n; i++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			double u = (double)(r >> 11) / 9007199254740992.0;
			g[i] = (float)((u - 0.5) * pow(10.0, (double)((r >> 3) % 7) - 4));
			if (i % 97 == 0)
				g[i] = 1e-41f;  /* denormal */
			exact += (long double)g[i] * g[i];
		}
		double spec = sumsq_spec(g, n);
		for (int path = SW_ADAMW_PATH_SCALAR; path < SW_ADAMW_PATH_COUNT; path++) {
			if (!sw_adamw_path_supported((sw_adamw_path)path))
				continue;
			CHECK(sw_adamw_path_set((sw_adamw_path)path) == 0);
			for (int pi = 0; pi < 3; pi++) {
				double s = sw_grad_sumsq(pools[pi], g, n);
				CHECKF(memcmp(&s, &spec, sizeof(s)) == 0,
				       "%s, pool %d, n=%lld: %.17g vs the documented order %.17g",
				       sw_adamw_path_name((sw_adamw_path)path), pi, (long long)n, s, spec);
			}
		}
		CHECKF(fabsl((long double)spec - exact) <= 1e-13L * exact, "n=%lld: %.17g vs %.17Lg",
		       (long long)n, spec, exact);
		free(g);
	}
	sw_pool_destroy(pools[1]);
	sw_pool_destroy(pools[2]);
}

static void test_clip(void)
{
	double ss[3] = { 9.0, 16.0, 0.0 };
	near(sw_grad_norm(ss, 3), 5.0, "norm of (3, 4, 0)");
	near(sw_grad_norm(ss, 0), 0.0, "norm of nothing");
	/* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.0 */
	near(sw_clip_scale(5.0, 1.0), 1.0 / (5.0 + 1e-6), "clip 5 -> 1");
	near(sw_clip_scale(0.5, 1.0), 1.0, "no clip below max");
	near(sw_clip_scale(1.0, 1.0), 1.0 / (1.0 + 1e-6), "at max_norm torch still scales by 1/(1+1e-6)");
	near(sw_clip_scale(0.0, 1.0), 1.0, "zero gradient");
	near(sw_clip_scale(5.0, 0.0), 1.0, "clipping off");
	CHECK(isnan(sw_clip_scale(NAN, 1.0)));
	CHECK(isnan(sw_clip_scale(INFINITY, 1.0)));
	CHECK(isnan(sw_clip_scale(INFINITY, 0.0)));   /* the step is skipped even without clipping */
	/* a non-finite gradient makes the norm non-finite */
	float g[20] = { 1, 2, 3 };
	g[11] = INFINITY;
	double s = sw_grad_sumsq(NULL, g, 20);
	CHECK(isinf(s) && isnan(sw_clip_scale(sw_grad_norm(&s, 1), 1.0)));
	g[11] = NAN;
	s = sw_grad_sumsq(NULL, g, 20);
	CHECK(isnan(s));
	/* huge finite values: float squares do not overflow in double */
	g[11] = 3e38f;
	s = sw_grad_sumsq(NULL, g, 20);
	CHECK(isfinite(s) && fabs(sqrt(s) - 3e38) < 1e-6 * 3e38);
}

int main(void)
{
	test_schedules();
	test_sumsq();
	test_clip();
	printf("schedules, sum of squares and clipping agree with the math\n");
	return 0;
}
