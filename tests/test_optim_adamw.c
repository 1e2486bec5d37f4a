/* AdamW: every SIMD path and the threaded driver give the scalar path's bits (random data with
 * zeros, denormals, huge and tiny values, odd lengths, misaligned pointers), under every
 * measurement switch (sw_adamw_tuning: prefetch, non-temporal stores, slices, chunk size,
 * write-back of dirty lines, prefetch bursts); the scalar path agrees with the formula evaluated
 * in fp64; the bf16 rounding agrees with round-to-nearest-even computed from the math;
 * non-finite gradients leave the state untouched and are counted. */
#include "optim/adamw.h"
#include "core/pool.h"
#include "tests/check.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
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

/* A value drawn from a mix that stresses the arithmetic: ordinary values of varied scale,
 * zeros of both signs, denormals, very large and very small normals. */
static float draw(int allow_negative)
{
	double r = unif();
	float x;
	if (r < 0.08)
		x = 0.0f;
	else if (r < 0.10)
		x = -0.0f;
	else if (r < 0.18)
		x = bits_f((uint32_t)(next_u64() & 0x007fffff));           /* denormal */
	else if (r < 0.24)
		x = (float)(1e30 * (1 + unif()));                          /* very large */
	else if (r < 0.27)
		x = bits_f(0x7f000000u | (uint32_t)(next_u64() & 0x7fffff)); /* near FLT_MAX */
	else if (r < 0.33)
		x = (float)(1e-35 * (1 + unif()));                         /* very small normal */
	else
		x = (float)((unif() * 2 - 1) * pow(10.0, -6 + 7 * unif()));
	if (allow_negative && (next_u64() & 1))
		x = -x;
	return allow_negative ? x : fabsf(x);
}

typedef struct {
	float *p, *m, *v, *g;
	uint16_t *h;    /* bf16 out */
	float *f;       /* fp32 out */
} state;

/* aligned_alloc wants a size that is a multiple of the alignment */
static void *alloc64(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

static void state_alloc(state *s, int64_t n)
{
	/* one extra element in front so tests can shift every pointer by 4 bytes (misaligned) */
	s->p = alloc64((size_t)(n + 16) * 4);
	s->m = alloc64((size_t)(n + 16) * 4);
	s->v = alloc64((size_t)(n + 16) * 4);
	s->g = alloc64((size_t)(n + 16) * 4);
	s->h = alloc64((size_t)(n + 32) * 2);
	s->f = alloc64((size_t)(n + 16) * 4);
	CHECK(s->p && s->m && s->v && s->g && s->h && s->f);
	memset(s->h, 0xa5, (size_t)(n + 32) * 2);
	memset(s->f, 0xa5, (size_t)(n + 16) * 4);
}

static void state_free(state *s)
{
	free(s->p); free(s->m); free(s->v); free(s->g); free(s->h); free(s->f);
}

static void state_copy(state *d, const state *s, int64_t n)
{
	memcpy(d->p, s->p, (size_t)(n + 16) * 4);
	memcpy(d->m, s->m, (size_t)(n + 16) * 4);
	memcpy(d->v, s->v, (size_t)(n + 16) * 4);
	memcpy(d->g, s->g, (size_t)(n + 16) * 4);
	memcpy(d->h, s->h, (size_t)(n + 32) * 2);
	memcpy(d->f, s->f, (size_t)(n + 16) * 4);
}

static void state_fill(state *s, int64_t n, int valid_state)
{
	for (int64_t i = 0; i < n + 16; i++) {
		s->p[i] = draw(1);
		s->m[i] = draw(1);
		s->v[i] = draw(!valid_state);   /* a real second moment is >= 0 */
		s->g[i] = draw(1);
	}
}

static int64_t first_diff(const void *a, const void *b, int64_t n, int size)
{
	const unsigned char *x = a, *y = b;
	for (int64_t i = 0; i < n; i++)
		if (memcmp(x + i * size, y + i * size, (size_t)size))
			return i;
	return -1;
}

static void expect_same(const state *a, const state *b, int64_t n, const char *what)
{
	int64_t d;
	CHECKF((d = first_diff(a->p, b->p, n + 16, 4)) < 0, "%s: p32 differs at %lld: %08x vs %08x",
	       what, (long long)d, f_bits(a->p[d]), f_bits(b->p[d]));
	CHECKF((d = first_diff(a->m, b->m, n + 16, 4)) < 0, "%s: m differs at %lld", what, (long long)d);
	CHECKF((d = first_diff(a->v, b->v, n + 16, 4)) < 0, "%s: v differs at %lld", what, (long long)d);
	CHECKF((d = first_diff(a->h, b->h, n + 32, 2)) < 0, "%s: bf16 differs at %lld: %04x vs %04x",
	       what, (long long)d, a->h[d], b->h[d]);
	CHECKF((d = first_diff(a->f, b->f, n + 16, 4)) < 0, "%s: fp32 copy differs at %lld", what,
	       (long long)d);
}

/* Runs one update with the path forced, on pointers shifted by 'shift' elements; out is bf16,
 * fp32 or none. Returns the skipped count. */
static int64_t run_path(sw_adamw_path path, state *s, int64_t n, int shift, int out,
			const sw_adamw_args *a, sw_pool *pool)
{
	CHECK(sw_adamw_path_set(path) == 0);
	CHECK(sw_adamw_path_get() == path);
	void *p16 = out == 0 ? NULL : out == 1 ? (void *)(s->h + shift) : (void *)(s->f + shift);
	sw_dtype act = out == 2 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
	if (pool)
		return sw_adamw_update_parallel(pool, s->p + shift, s->m + shift, s->v + shift,
						s->g + shift, p16, act, n, a);
	return sw_adamw_update_checked(s->p + shift, s->m + shift, s->v + shift, s->g + shift, p16,
				       act, n, a);
}

/* The measurement switches: each alone, then combinations. They change where and when memory
 * moves, never a value, so every one must give the scalar path's bits. Sub-blocks of 64 and
 * 128 bytes (16 and 32 elements) put block edges, chunk edges and the vector tail close
 * together; chunks of 64 elements make many tasks out of the test's lengths. */
static const struct tuning_case {
	const char *name;
	int64_t prefetch;
	int l2, nt, nts, slices;
	int64_t chunk;
	int flush;
	int64_t block;
	int burst;
} tuning_cases[] = {
	/* name                          pf     l2 nt nts sl chunk   fl block  burst */
	{ "default",                     2048,  0, 1, 0, 0, 32768,  0, 4096,  0 },
	{ "prefetch off",                0,     0, 1, 0, 0, 32768,  0, 4096,  0 },
	{ "prefetch 8192 to L2",         8192,  1, 1, 0, 0, 32768,  0, 4096,  0 },
	{ "ordinary p16 stores",         2048,  0, 0, 0, 0, 32768,  0, 4096,  0 },
	{ "non-temporal state",          2048,  0, 1, 1, 0, 32768,  0, 4096,  0 },
	{ "static slices",               2048,  0, 1, 0, 1, 32768,  0, 4096,  0 },
	{ "chunk 64",                    2048,  0, 1, 0, 0, 64,     0, 4096,  0 },
	{ "chunk 8192",                  2048,  0, 1, 0, 0, 8192,   0, 4096,  0 },
	{ "chunk 131072",                2048,  0, 1, 0, 0, 131072, 0, 4096,  0 },
	{ "clwb 4096",                   2048,  0, 1, 0, 0, 32768,  1, 4096,  0 },
	{ "clwb 64",                     2048,  0, 1, 0, 0, 32768,  1, 64,    0 },
	{ "clflushopt 1024",             2048,  0, 1, 0, 0, 32768,  2, 1024,  0 },
	{ "clflushopt + nt state",       2048,  0, 1, 1, 0, 32768,  2, 4096,  0 },
	{ "burst prefetchw 2048/4096",   2048,  0, 1, 0, 0, 32768,  0, 4096,  1 },
	{ "burst t0 8192/1024",          8192,  0, 1, 0, 0, 32768,  0, 1024,  2 },
	{ "burst to L2 /256",            2048,  1, 1, 0, 0, 32768,  0, 256,   1 },
	{ "burst + clwb, pf 0, /64",     0,     0, 1, 0, 0, 32768,  1, 64,    1 },
	{ "clwb + burst 16384, slices",  65536, 0, 1, 0, 1, 32768,  1, 16384, 1 },
	{ "all, chunk 64, /128",         2048,  0, 0, 1, 0, 64,     2, 128,   2 },
};
#define N_TUNINGS ((int)(sizeof(tuning_cases) / sizeof(tuning_cases[0])))

static sw_adamw_tuning tuning_of(const struct tuning_case *c)
{
	sw_adamw_tuning t = {
		.prefetch = c->prefetch, .prefetch_l2 = c->l2, .nt = c->nt, .nt_state = c->nts,
		.static_slices = c->slices, .chunk = c->chunk, .flush = c->flush,
		.block = c->block, .burst = c->burst,
	};
	return t;
}

/* Selects tuning case i; 0 when this CPU cannot run it (a flush or prefetchw it lacks). */
static int tuning_use(int i)
{
	sw_adamw_tuning t = tuning_of(&tuning_cases[i]);
	int rc = sw_adamw_tuning_set(&t);
	CHECKF(rc == 0 || rc == -ENOTSUP, "%s: sw_adamw_tuning_set: %d", tuning_cases[i].name, rc);
	if (rc == 0)
		CHECK(memcmp(sw_adamw_tuning_get(), &t, sizeof(t)) == 0);
	return rc == 0;
}

/* Each SIMD path, on the calling thread and through the threaded driver, and the scalar path
 * through the driver, against ref (the scalar path on the calling thread), under the switches
 * in use (tuning case ti). Returns the number of SIMD comparisons. */
static int compare_paths(const sw_adamw_path *paths, int npaths, const state *base,
			 const state *ref, state *got, int64_t n, int shift, int out,
			 const sw_adamw_args *a, sw_pool *pool, int64_t bad_ref, size_t ci, int ti)
{
	int compared = 0;
	char what[192];
	for (int pi = 0; pi < npaths; pi++) {
		if (!sw_adamw_path_supported(paths[pi]))
			continue;
		for (int par = 0; par < 2; par++) {
			snprintf(what, sizeof(what), "%s%s n=%lld case=%zu shift=%d out=%d switches '%s'",
				 sw_adamw_path_name(paths[pi]), par ? " parallel" : "", (long long)n, ci,
				 shift, out, tuning_cases[ti].name);
			state_copy(got, base, n);
			int64_t bad = run_path(paths[pi], got, n, shift, out, a, par ? pool : NULL);
			expect_same(got, ref, n, what);
			CHECKF(bad == bad_ref, "%s: skipped %lld vs %lld", what, (long long)bad,
			       (long long)bad_ref);
			compared++;
		}
	}
	/* the scalar path through the threaded driver too (chunks, slices) */
	snprintf(what, sizeof(what), "scalar parallel n=%lld switches '%s'", (long long)n,
		 tuning_cases[ti].name);
	state_copy(got, base, n);
	CHECK(run_path(SW_ADAMW_PATH_SCALAR, got, n, shift, out, a, pool) == bad_ref);
	expect_same(got, ref, n, what);
	return compared;
}

static void test_paths_identical(sw_pool *pool)
{
	static const int64_t lens[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 100, 1003,
					 3 * 32768 + 5 };
	sw_adamw_hparams h = { 1e-3, 0.9, 0.999, 1e-8, 0.1 };
	const struct { double lr, scale; int64_t t; int decay; } cases[] = {
		{ 1e-3, 1.0, 1, 1 }, { 3e-4, 0.37, 10, 0 }, { 1e-2, 1.0, 1000, 1 },
		{ 1.0, 2.5e-3, 3, 1 }, { 0.0, 1.0, 2, 1 },
	};
	sw_adamw_path paths[] = { SW_ADAMW_PATH_AVX2, SW_ADAMW_PATH_AVX512 };
	int compared = 0, tunings_run = 0;
	for (int ti = 0; ti < N_TUNINGS; ti++) {
		int ok = tuning_use(ti);
		tunings_run += ok;
		if (!ok)
			printf("switches '%s': not run, this CPU lacks an instruction it needs\n",
			       tuning_cases[ti].name);
	}
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int64_t n = lens[li];
		state base, ref, got;
		state_alloc(&base, n);
		state_alloc(&ref, n);
		state_alloc(&got, n);
		for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
			sw_adamw_args a = sw_adamw_args_make(&h, cases[ci].lr, cases[ci].t,
							     cases[ci].decay, cases[ci].scale);
			state_fill(&base, n, (int)(ci & 1));
			for (int shift = 0; shift < 2; shift++)
				for (int out = 0; out < 3; out++) {
					state_copy(&ref, &base, n);
					int64_t bad_ref = run_path(SW_ADAMW_PATH_SCALAR, &ref, n, shift, out,
								   &a, NULL);
					for (int ti = 0; ti < N_TUNINGS; ti++) {
						if (!tuning_use(ti))
							continue;
						compared += compare_paths(paths, 2, &base, &ref, &got, n, shift,
									  out, &a, pool, bad_ref, ci, ti);
					}
				}
		}
		state_free(&base);
		state_free(&ref);
		state_free(&got);
	}
	CHECK(sw_adamw_tuning_set(NULL) == 0);
	printf("paths identical to scalar: %d comparisons (avx2 %s, avx512 %s), %d of %d settings of "
	       "the measurement switches\n", compared,
	       sw_adamw_path_supported(SW_ADAMW_PATH_AVX2) ? "run" : "not supported here",
	       sw_adamw_path_supported(SW_ADAMW_PATH_AVX512) ? "run" : "not supported here",
	       tunings_run, N_TUNINGS);
}

/* The scalar path against the formula evaluated in fp64 from the same inputs: ordinary data. */
static void test_against_fp64(void)
{
	const int64_t n = 4099;
	sw_adamw_hparams h = { 2e-3, 0.9, 0.95, 1e-8, 0.01 };
	state s;
	state_alloc(&s, n);
	double *ep = malloc(n * sizeof(double)), *em = malloc(n * sizeof(double)),
	       *ev = malloc(n * sizeof(double));
	float *fp = malloc(n * 4), *fm = malloc(n * 4), *fv = malloc(n * 4);
	CHECK(ep && em && ev && fp && fm && fv);
	for (int64_t i = 0; i < n; i++) {
		s.p[i] = (float)(unif() * 2 - 1);
		s.m[i] = (float)((unif() * 2 - 1) * 1e-2);
		s.v[i] = (float)(unif() * 1e-4);
		s.g[i] = (float)((unif() * 2 - 1) * 1e-2);
		ep[i] = s.p[i]; em[i] = s.m[i]; ev[i] = s.v[i];
	}
	for (int64_t t = 1; t <= 5; t++) {
		double lr = 1e-3 * (double)t, scale = t == 3 ? 0.5 : 1.0;
		sw_adamw_args a = sw_adamw_args_make(&h, lr, t, 1, scale);
		CHECK(fabs(a.step_size - lr / (1 - pow(0.9, (double)t))) <= 1e-7 * a.step_size);
		CHECK(fabs(a.bc2_sqrt - sqrt(1 - pow(0.95, (double)t))) <= 1e-7 * a.bc2_sqrt);
		CHECK(sw_adamw_path_set(SW_ADAMW_PATH_SCALAR) == 0);
		sw_adamw_update(s.p, s.m, s.v, s.g, NULL, SW_DTYPE_BF16, n, &a);
		for (int64_t i = 0; i < n; i++) {
			double g = (double)s.g[i] * scale;
			ep[i] *= 1 - lr * 0.01;      /* torch's form: param.mul_(1 - lr * wd) */
			em[i] = 0.9 * em[i] + 0.1 * g;
			ev[i] = 0.95 * ev[i] + 0.05 * g * g;
			double d = sqrt(ev[i]) / sqrt(1 - pow(0.95, (double)t)) + 1e-8;
			ep[i] -= lr / (1 - pow(0.9, (double)t)) * em[i] / d;
		}
		for (int64_t i = 0; i < n; i++) {
			fp[i] = (float)ep[i]; fm[i] = (float)em[i]; fv[i] = (float)ev[i];
		}
		double ep_ = check_rel_err_f32(s.p, fp, n), em_ = check_rel_err_f32(s.m, fm, n),
		       ev_ = check_rel_err_f32(s.v, fv, n);
		CHECKF(ep_ < 1e-6 && em_ < 1e-6 && ev_ < 1e-6, "step %lld: rel err p %.3g m %.3g v %.3g",
		       (long long)t, ep_, em_, ev_);
		if (t == 5)
			printf("fp64 formula after 5 steps: rel err p %.2e m %.2e v %.2e\n", ep_, em_, ev_);
	}
	state_free(&s);
	free(ep); free(em); free(ev); free(fp); free(fm); free(fv);
}

/* bf16 round to nearest even, from the math: the two bf16 neighbours of x in double. */
static uint16_t bf16_ref(float x)
{
	uint32_t u = f_bits(x);
	if (isnan(x))
		return (uint16_t)((u >> 16) | 0x40);
	uint16_t lo = (uint16_t)(u >> 16);           /* toward zero */
	if (isinf(x))
		return lo;
	uint16_t hi = (uint16_t)(lo + 1);            /* away from zero (may become Inf) */
	double dl = fabs(fabs((double)x) - fabs((double)bits_f((uint32_t)lo << 16)));
	/* past the largest bf16 the next step up is 2^128, which rounds to Inf */
	double vh = (hi & 0x7fff) == 0x7f80 ? ldexp(1.0, 128) : fabs((double)bits_f((uint32_t)hi << 16));
	double dh = fabs(vh - fabs((double)x));
	if (dl < dh)
		return lo;
	if (dh < dl)
		return hi;
	return (lo & 1) ? hi : lo;
}

/* Every path's bf16 output over special and random bit patterns. The gradient is NaN, so every
 * element is skipped and p reaches the rounding bit for bit (signalling NaNs and -0 included). */
static void test_bf16_rounding(void)
{
	const int64_t n = 1 << 16;
	state s;
	state_alloc(&s, n);
	static const uint32_t special[] = {
		0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00008000, 0x00018000, 0x00017fff,
		0x3f808000, 0x3f818000, 0x3f80ffff, 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f800000,
		0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0xff800001, 0x7fbfffff, 0x7fff8000,
		0x7f80ffff, 0xff80ffff,
	};
	const int nspec = (int)(sizeof(special) / sizeof(special[0]));
	sw_adamw_hparams h = { 1e-3, 0.9, 0.999, 1e-8, 0.1 };
	sw_adamw_args a = sw_adamw_args_make(&h, 1e-3, 1, 1, 1.0);
	for (int path = SW_ADAMW_PATH_SCALAR; path < SW_ADAMW_PATH_COUNT; path++) {
		if (!sw_adamw_path_supported((sw_adamw_path)path))
			continue;
		for (int64_t i = 0; i < n; i++) {
			s.p[i] = bits_f(i < nspec ? special[i] : (uint32_t)next_u64());
			s.m[i] = s.v[i] = 0;
			s.g[i] = (i & 1) ? NAN : -INFINITY;
		}
		CHECK(sw_adamw_path_set((sw_adamw_path)path) == 0);
		float *p0 = malloc(n * 4);
		CHECK(p0);
		memcpy(p0, s.p, n * 4);
		CHECK(sw_adamw_update_checked(s.p, s.m, s.v, s.g, s.h, SW_DTYPE_BF16, n, &a) == n);
		for (int64_t i = 0; i < n; i++) {
			CHECK(f_bits(s.p[i]) == f_bits(p0[i]));
			CHECKF(s.h[i] == bf16_ref(s.p[i]), "%s: bf16(%08x) = %04x, expected %04x",
			       sw_adamw_path_name((sw_adamw_path)path), f_bits(s.p[i]), s.h[i],
			       bf16_ref(s.p[i]));
			CHECK(s.h[i] == sw_f32_to_bf16(s.p[i]));
		}
		free(p0);
	}
	/* the NaN rule itself, straight from dtype.h */
	CHECK(sw_f32_to_bf16(bits_f(0x7f800001)) == 0x7fc0);
	CHECK(sw_f32_to_bf16(bits_f(0xffc00001)) == 0xffc0);
	CHECK(sw_f32_to_bf16(bits_f(0x3f818000)) == 0x3f82);  /* tie, odd -> up */
	CHECK(sw_f32_to_bf16(bits_f(0x3f808000)) == 0x3f80);  /* tie, even -> stays */
	CHECK(sw_f32_to_bf16(bits_f(0x7f7fffff)) == 0x7f80);  /* rounds up to Inf */
	state_free(&s);
}

/* NaN/Inf gradients: the element's p32/m/v are untouched, p16 is the old p rounded, the count
 * is returned; finite neighbours are updated as usual. Also a scale that overflows g. */
static void nonfinite_paths(sw_pool *pool)
{
	const int64_t n = 1000;
	sw_adamw_hparams h = { 1e-3, 0.9, 0.999, 1e-8, 0.1 };
	for (int path = SW_ADAMW_PATH_SCALAR; path < SW_ADAMW_PATH_COUNT; path++) {
		if (!sw_adamw_path_supported((sw_adamw_path)path))
			continue;
		CHECK(sw_adamw_path_set((sw_adamw_path)path) == 0);
		for (int par = 0; par < 2; par++) {
			state s, o;
			state_alloc(&s, n);
			state_alloc(&o, n);
			for (int64_t i = 0; i < n + 16; i++) {
				s.p[i] = (float)(unif() - 0.5);
				s.m[i] = (float)(unif() - 0.5) * 1e-2f;
				s.v[i] = (float)unif() * 1e-4f;
				s.g[i] = (float)(unif() - 0.5) * 1e-2f;
			}
			s.g[3] = NAN;
			s.g[17] = INFINITY;
			s.g[500] = -INFINITY;
			s.g[999] = bits_f(0xffc00123);
			s.g[998] = 3e38f;                 /* 3e38 * 4 overflows to Inf */
			state_copy(&o, &s, n);
			sw_adamw_args a = sw_adamw_args_make(&h, 1e-3, 7, 1, 4.0);
			int64_t bad = par ? sw_adamw_update_parallel(pool, s.p, s.m, s.v, s.g, s.h,
								  SW_DTYPE_BF16, n, &a)
					  : sw_adamw_update_checked(s.p, s.m, s.v, s.g, s.h,
								SW_DTYPE_BF16, n, &a);
			CHECKF(bad == 5, "%s: %lld non-finite reported, expected 5",
			       sw_adamw_path_name((sw_adamw_path)path), (long long)bad);
			int64_t changed = 0;
			for (int64_t i = 0; i < n; i++) {
				int skip = i == 3 || i == 17 || i == 500 || i == 999 || i == 998;
				CHECK(isfinite(s.p[i]) && isfinite(s.m[i]) && isfinite(s.v[i]));
				CHECK(s.h[i] == sw_f32_to_bf16(s.p[i]));
				if (skip) {
					CHECK(f_bits(s.p[i]) == f_bits(o.p[i]));
					CHECK(f_bits(s.m[i]) == f_bits(o.m[i]));
					CHECK(f_bits(s.v[i]) == f_bits(o.v[i]));
				} else {
					changed += s.p[i] != o.p[i];
				}
			}
			CHECK(changed > n - 20);
			/* the plain entry point: same arithmetic, the count dropped */
			state_copy(&s, &o, n);
			sw_adamw_update(s.p, s.m, s.v, s.g, NULL, SW_DTYPE_BF16, n, &a);
			CHECK(f_bits(s.p[3]) == f_bits(o.p[3]) && isfinite(s.p[4]));
			state_free(&s);
			state_free(&o);
		}
	}
}

/* ... on every path, under every setting of the measurement switches. */
static void test_nonfinite(sw_pool *pool)
{
	for (int ti = 0; ti < N_TUNINGS; ti++)
		if (tuning_use(ti))
			nonfinite_paths(pool);
	CHECK(sw_adamw_tuning_set(NULL) == 0);
}

/* The switches' API: out-of-range settings are refused and change nothing; the environment is
 * parsed as documented, bad values fall back to their defaults (with a warning). */
static void test_tuning_api(void)
{
	static const char *const vars[] = {
		"SW_ADAMW_PREFETCH", "SW_ADAMW_PREFETCH_L2", "SW_ADAMW_NT", "SW_ADAMW_NT_STATE",
		"SW_ADAMW_STATIC", "SW_ADAMW_CHUNK", "SW_ADAMW_FLUSH", "SW_ADAMW_FLUSH_BLOCK",
		"SW_ADAMW_BURST",
	};
	const int nvars = (int)(sizeof(vars) / sizeof(vars[0]));
	char *saved[sizeof(vars) / sizeof(vars[0])];
	for (int i = 0; i < nvars; i++) {
		const char *e = getenv(vars[i]);
		saved[i] = e ? strdup(e) : NULL;
		unsetenv(vars[i]);
	}
	sw_adamw_tuning t, d;
	CHECK(sw_adamw_tuning_env(&d) == 0);
	CHECK(d.prefetch == 2048 && !d.prefetch_l2 && d.nt && !d.nt_state && !d.static_slices);
	CHECK(d.chunk == SW_ADAMW_CHUNK && d.flush == 0 && d.block == 4096 && d.burst == 0);

	const int64_t bad_chunk[] = { 0, 63, 100, 32768 + 32 }, bad_block[] = { 0, 32, 100, 2 << 20 };
	for (int i = 0; i < 4; i++) {
		t = d;
		t.chunk = bad_chunk[i];
		CHECK(sw_adamw_tuning_set(&t) == -EINVAL);
		t = d;
		t.block = bad_block[i];
		CHECK(sw_adamw_tuning_set(&t) == -EINVAL);
	}
	t = d; t.flush = 3;       CHECK(sw_adamw_tuning_set(&t) == -EINVAL);
	t = d; t.burst = -1;      CHECK(sw_adamw_tuning_set(&t) == -EINVAL);
	t = d; t.prefetch = -64;  CHECK(sw_adamw_tuning_set(&t) == -EINVAL);
	for (int f = 1; f <= 2; f++) {
		t = d;
		t.flush = f;
		CHECK(sw_adamw_tuning_set(&t) == (sw_adamw_flush_supported(f) ? 0 : -ENOTSUP));
	}
	CHECK(sw_adamw_tuning_set(NULL) == 0);
	CHECK(memcmp(sw_adamw_tuning_get(), &d, sizeof(d)) == 0);

	setenv("SW_ADAMW_PREFETCH", "8192", 1);
	setenv("SW_ADAMW_PREFETCH_L2", "1", 1);
	setenv("SW_ADAMW_NT", "0", 1);
	setenv("SW_ADAMW_NT_STATE", "1", 1);
	setenv("SW_ADAMW_STATIC", "1", 1);
	setenv("SW_ADAMW_CHUNK", "8192", 1);
	setenv("SW_ADAMW_FLUSH", "1", 1);
	setenv("SW_ADAMW_FLUSH_BLOCK", "16384", 1);
	setenv("SW_ADAMW_BURST", "2", 1);
	CHECK(sw_adamw_tuning_env(&t) == 0);
	CHECK(t.prefetch == 8192 && t.prefetch_l2 && !t.nt && t.nt_state && t.static_slices);
	CHECK(t.chunk == 8192 && t.block == 16384 && t.burst == 2);
	CHECK(t.flush == (sw_adamw_flush_supported(1) ? 1 : 0));
	char line[512];
	sw_adamw_tuning_describe(&t, line, sizeof(line));
	CHECKF(strstr(line, "SW_ADAMW_CHUNK=8192 ") && strstr(line, "SW_ADAMW_FLUSH_BLOCK=16384 ") &&
	       strstr(line, "SW_ADAMW_BURST=2"), "%s", line);

	/* bad values: their defaults (each with a warning on stderr) */
	setenv("SW_ADAMW_CHUNK", "100", 1);
	setenv("SW_ADAMW_FLUSH", "clwb", 1);
	setenv("SW_ADAMW_FLUSH_BLOCK", "4000", 1);
	setenv("SW_ADAMW_BURST", "3", 1);
	CHECK(sw_adamw_tuning_env(&t) == 0);
	CHECK(t.chunk == SW_ADAMW_CHUNK && t.flush == 0 && t.block == 4096 && t.burst == 0);
	setenv("SW_ADAMW_CHUNK", "64", 1);
	setenv("SW_ADAMW_FLUSH", "0", 1);
	setenv("SW_ADAMW_FLUSH_BLOCK", "64", 1);
	setenv("SW_ADAMW_BURST", "0", 1);
	CHECK(sw_adamw_tuning_env(&t) == 0 && t.chunk == 64 && t.block == 64);

	for (int i = 0; i < nvars; i++) {
		if (saved[i])
			setenv(vars[i], saved[i], 1);
		else
			unsetenv(vars[i]);
		free(saved[i]);
	}
	CHECK(sw_adamw_tuning_set(NULL) == 0);
	printf("measurement switches: clwb %s, clflushopt %s\n",
	       sw_adamw_flush_supported(1) ? "available" : "not on this CPU",
	       sw_adamw_flush_supported(2) ? "available" : "not on this CPU");
}

static void test_path_selection(void)
{
	sw_adamw_path p;
	CHECK(sw_adamw_path_parse("avx512", &p) == 0 && p == SW_ADAMW_PATH_AVX512);
	CHECK(sw_adamw_path_parse("scalar", &p) == 0 && p == SW_ADAMW_PATH_SCALAR);
	CHECK(sw_adamw_path_parse("sse", &p) == -EINVAL);
	CHECK(sw_adamw_path_parse(NULL, &p) == -EINVAL);
	CHECK(sw_adamw_path_set((sw_adamw_path)99) == -ENOTSUP);
	CHECK(sw_adamw_path_set(SW_ADAMW_PATH_SCALAR) == 0);
	CHECK(sw_adamw_path_get() == SW_ADAMW_PATH_SCALAR);
	CHECK(sw_adamw_path_set(SW_ADAMW_PATH_AUTO) == 0);
	CHECK(sw_adamw_path_get() != SW_ADAMW_PATH_AUTO);
	if (!sw_adamw_path_supported(SW_ADAMW_PATH_AVX512)) {
		CHECK(sw_adamw_path_set(SW_ADAMW_PATH_AVX512) == -ENOTSUP);
		CHECK(sw_adamw_path_get() != SW_ADAMW_PATH_AVX512);
	}
	printf("automatic path: %s\n", sw_adamw_path_name(sw_adamw_path_get()));
	sw_decay_rule r;
	CHECK(sw_decay_rule_parse("matrices", &r) == 0 && r == SW_DECAY_MATRICES);
	CHECK(sw_decay_rule_parse("all", &r) == 0 && r == SW_DECAY_ALL);
	CHECK(sw_decay_rule_parse("none", &r) == -EINVAL);
	CHECK(!sw_adamw_decays(SW_DECAY_MATRICES, 1) && sw_adamw_decays(SW_DECAY_MATRICES, 2));
	CHECK(sw_adamw_decays(SW_DECAY_ALL, 1) && sw_adamw_decays(SW_DECAY_ALL, 2));
	/* decay off: weight_decay 0 in the args whatever the hyper-parameter */
	sw_adamw_hparams h = { 1e-3, 0.9, 0.999, 1e-8, 0.1 };
	CHECK(sw_adamw_args_make(&h, 1e-3, 1, 0, 1.0).weight_decay == 0.0f);
	CHECK(sw_adamw_args_make(&h, 1e-3, 1, 1, 1.0).weight_decay == 0.1f);
}

/* Out of place (sw_adamw_update_to, the executor's speculative updates): on every path, with
 * and without the pool, misaligned and odd lengths, non-finite gradients included, the state
 * written to out is the in-place update's bits, p16 too, and the inputs are left untouched. */
static void test_out_of_place(sw_pool *pool)
{
	const int64_t lens[] = { 1, 7, 16, 33, 1000, 70001 };
	sw_adamw_hparams h = { .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 };
	int checked = 0;
	for (int path = SW_ADAMW_PATH_SCALAR; path < SW_ADAMW_PATH_COUNT; path++) {
		if (!sw_adamw_path_supported((sw_adamw_path)path))
			continue;
		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
			for (int shift = 0; shift < 2; shift++)
				for (int par = 0; par < 2; par++) {
					int64_t n = lens[li];
					sw_adamw_args a = sw_adamw_args_make(&h, 1e-3, 3, 1, li % 2 ? 0.5 : 1.0);
					state base, in, out, ref;
					state_alloc(&base, n);
					state_alloc(&in, n);
					state_alloc(&out, n);
					state_alloc(&ref, n);
					state_fill(&base, n, 1);
					for (int64_t i = 0; i < n; i += 97)
						base.g[i + shift] = i % 2 ? NAN : INFINITY;
					state_copy(&in, &base, n);
					state_copy(&ref, &base, n);
					memset(out.p, 0x5a, (size_t)(n + 16) * 4);
					memset(out.m, 0x5a, (size_t)(n + 16) * 4);
					memset(out.v, 0x5a, (size_t)(n + 16) * 4);
					memcpy(out.p, ref.p, (size_t)shift * 4);   /* the front pad as ref's */
					memcpy(out.m, ref.m, (size_t)shift * 4);
					memcpy(out.v, ref.v, (size_t)shift * 4);
					memcpy(out.p + shift + n, ref.p + shift + n, (size_t)(16 - shift) * 4);
					memcpy(out.m + shift + n, ref.m + shift + n, (size_t)(16 - shift) * 4);
					memcpy(out.v + shift + n, ref.v + shift + n, (size_t)(16 - shift) * 4);
					CHECK(sw_adamw_path_set((sw_adamw_path)path) == 0);
					int64_t b1 = run_path((sw_adamw_path)path, &ref, n, shift, 1, &a, par ? pool : NULL);
					float *const o3[3] = { out.p + shift, out.m + shift, out.v + shift };
					int64_t b2 = par ? sw_adamw_update_parallel_to(pool, o3, in.p + shift, in.m + shift,
										     in.v + shift, in.g + shift, in.h + shift,
										     SW_DTYPE_BF16, n, &a)
							 : sw_adamw_update_to(o3, in.p + shift, in.m + shift, in.v + shift,
									      in.g + shift, in.h + shift, SW_DTYPE_BF16, n, &a);
					CHECK(b1 == b2 && b1 > 0);
					memcpy(out.g, in.g, (size_t)(n + 16) * 4);
					memcpy(out.h, in.h, (size_t)(n + 32) * 2);
					memcpy(out.f, in.f, (size_t)(n + 16) * 4);
					expect_same(&out, &ref, n, "out of place vs in place");
					/* the inputs (state and gradient) as they were */
					CHECK(!memcmp(in.p, base.p, (size_t)(n + 16) * 4) &&
					      !memcmp(in.m, base.m, (size_t)(n + 16) * 4) &&
					      !memcmp(in.v, base.v, (size_t)(n + 16) * 4) &&
					      !memcmp(in.g, base.g, (size_t)(n + 16) * 4));
					state_free(&base);
					state_free(&in);
					state_free(&out);
					state_free(&ref);
					checked++;
				}
	}
	CHECK(sw_adamw_path_set(SW_ADAMW_PATH_AUTO) == 0);
	printf("ok out-of-place update = in-place bits on every path (%d cases, non-finite gradients "
	       "included), inputs untouched\n", checked);
}

int main(void)
{
	sw_pool *pool = sw_pool_create(3, NULL);
	CHECK(pool);
	test_out_of_place(pool);
	test_path_selection();
	test_tuning_api();
	test_against_fp64();
	test_bf16_rounding();
	test_nonfinite(pool);
	test_paths_identical(pool);
	sw_pool_destroy(pool);
	return 0;
}
