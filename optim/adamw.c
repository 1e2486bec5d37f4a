/* The scalar AdamW path (the reference every faster path must match bit for bit), the run-time
 * choice of path, and the threaded driver.
 * This file must be compiled without floating-point contraction (-ffp-contract=off, global in
 * the Makefile): every operation below is a separately rounded IEEE fp32 operation. */
#include "optim/adamw.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#ifndef SW_ADAMW_PREFETCH_DEFAULT
#define SW_ADAMW_PREFETCH_DEFAULT 2048   /* measured best on the H100 host: docs/perf/adam.md */
#endif

sw_adamw_args sw_adamw_args_make(const sw_adamw_hparams *h, double lr, int64_t t, int decay,
				 double grad_scale)
{
	sw_adamw_args a;
	a.lr = (float)lr;
	a.beta1 = (float)h->beta1;
	a.beta2 = (float)h->beta2;
	a.eps = (float)h->eps;
	a.weight_decay = decay ? (float)h->weight_decay : 0.0f;
	a.step_size = (float)(lr / (1.0 - pow(h->beta1, (double)t)));
	a.bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2, (double)t));
	a.grad_scale = (float)grad_scale;
	a.one_minus_beta1 = (float)(1.0 - h->beta1);
	a.one_minus_beta2 = (float)(1.0 - h->beta2);
	return a;
}

int sw_adamw_decays(sw_decay_rule rule, int ndim)
{
	return rule == SW_DECAY_ALL || ndim >= 2;
}

int sw_decay_rule_parse(const char *name, sw_decay_rule *out)
{
	if (name && strcmp(name, "matrices") == 0)
		*out = SW_DECAY_MATRICES;
	else if (name && strcmp(name, "all") == 0)
		*out = SW_DECAY_ALL;
	else
		return -EINVAL;
	return 0;
}

int64_t sw_adamw_kernel_scalar(float *p32, float *m, float *v, const float *g, void *p16,
			       int bf16, int64_t n, const sw_adamw_args *a)
{
	const float lrwd = a->lr * a->weight_decay;
	const float omb1 = a->one_minus_beta1, omb2 = a->one_minus_beta2;
	int64_t bad = 0;
	for (int64_t i = 0; i < n; i++) {
		float gi = g[i] * a->grad_scale;
		float p = p32[i];
		if (isfinite(gi)) {
			p = p - lrwd * p;
			float mi = m[i] + omb1 * (gi - m[i]);
			float vi = a->beta2 * v[i] + omb2 * (gi * gi);
			float d = sqrtf(vi) / a->bc2_sqrt + a->eps;
			p = p - a->step_size * (mi / d);
			p32[i] = p;
			m[i] = mi;
			v[i] = vi;
		} else {
			bad++;
		}
		if (p16 && bf16)
			((sw_bf16 *)p16)[i] = sw_f32_to_bf16(p);
		else if (p16)
			((float *)p16)[i] = p;
	}
	return bad;
}

int64_t sw_adamw_kernel_scalar_to(float *const out[3], const float *p32, const float *m,
				  const float *v, const float *g, void *p16, int bf16, int64_t n,
				  const sw_adamw_args *a)
{
	const float lrwd = a->lr * a->weight_decay;
	const float omb1 = a->one_minus_beta1, omb2 = a->one_minus_beta2;
	int64_t bad = 0;
	for (int64_t i = 0; i < n; i++) {
		float gi = g[i] * a->grad_scale;
		float p = p32[i], mi = m[i], vi = v[i];
		if (isfinite(gi)) {
			p = p - lrwd * p;
			mi = m[i] + omb1 * (gi - m[i]);
			vi = a->beta2 * v[i] + omb2 * (gi * gi);
			float d = sqrtf(vi) / a->bc2_sqrt + a->eps;
			p = p - a->step_size * (mi / d);
		} else {
			bad++;
		}
		out[0][i] = p;
		out[1][i] = mi;
		out[2][i] = vi;
		if (p16 && bf16)
			((sw_bf16 *)p16)[i] = sw_f32_to_bf16(p);
		else if (p16)
			((float *)p16)[i] = p;
	}
	return bad;
}

/* Sum of squares in double, lane i % 8 into acc[i % 8]: the order every path follows. The
 * products of two floats are exact in double, so only the additions round. */
void sw_sumsq_kernel_scalar(const float *g, int64_t n, double acc[8])
{
	for (int64_t i = 0; i < n; i++)
		acc[i & 7] += (double)g[i] * (double)g[i];
}

/* ---- path selection ---- */

static const char *const path_names[SW_ADAMW_PATH_COUNT] = { "auto", "scalar", "avx2", "avx512" };
static _Atomic int path_in_use = -1;   /* -1: not chosen yet */

const char *sw_adamw_path_name(sw_adamw_path path)
{
	return (unsigned)path < SW_ADAMW_PATH_COUNT ? path_names[path] : "?";
}

int sw_adamw_path_parse(const char *name, sw_adamw_path *out)
{
	for (int i = 0; i < SW_ADAMW_PATH_COUNT; i++)
		if (name && strcmp(name, path_names[i]) == 0) {
			*out = (sw_adamw_path)i;
			return 0;
		}
	return -EINVAL;
}

int sw_adamw_path_supported(sw_adamw_path path)
{
	switch (path) {
	case SW_ADAMW_PATH_AUTO:
	case SW_ADAMW_PATH_SCALAR:
		return 1;
#if defined(__x86_64__)
	case SW_ADAMW_PATH_AVX2:
		__builtin_cpu_init();
		return __builtin_cpu_supports("avx2");
	case SW_ADAMW_PATH_AVX512:
		__builtin_cpu_init();
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
	default:
		return 0;
	}
}

static sw_adamw_path path_best(void)
{
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX512))
		return SW_ADAMW_PATH_AVX512;
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX2))
		return SW_ADAMW_PATH_AVX2;
	return SW_ADAMW_PATH_SCALAR;
}

/* The automatic choice: SW_ADAMW_PATH when set and usable (a warning otherwise), else the best. */
static sw_adamw_path path_auto(void)
{
	const char *env = getenv("SW_ADAMW_PATH");
	sw_adamw_path p;
	if (!env || !*env)
		return path_best();
	if (sw_adamw_path_parse(env, &p) != 0) {
		sw_warn("SW_ADAMW_PATH=%s is not one of auto, scalar, avx2, avx512; using %s", env,
			path_names[path_best()]);
		return path_best();
	}
	if (p == SW_ADAMW_PATH_AUTO)
		return path_best();
	if (!sw_adamw_path_supported(p)) {
		sw_warn("SW_ADAMW_PATH=%s: this CPU cannot run it; using %s", env,
			path_names[path_best()]);
		return path_best();
	}
	return p;
}

int sw_adamw_path_set(sw_adamw_path path)
{
	if ((unsigned)path >= SW_ADAMW_PATH_COUNT || !sw_adamw_path_supported(path))
		return -ENOTSUP;
	atomic_store(&path_in_use, (int)(path == SW_ADAMW_PATH_AUTO ? path_auto() : path));
	return 0;
}

sw_adamw_path sw_adamw_path_get(void)
{
	int p = atomic_load(&path_in_use);
	if (p < 0) {
		p = (int)path_auto();
		atomic_store(&path_in_use, p);
	}
	return (sw_adamw_path)p;
}

static sw_adamw_kernel_to_fn adamw_kernel_to(void)
{
	switch (sw_adamw_path_get()) {
#if defined(__x86_64__)
	case SW_ADAMW_PATH_AVX512:
		return sw_adamw_kernel_avx512_to;
	case SW_ADAMW_PATH_AVX2:
		return sw_adamw_kernel_avx2_to;
#endif
	default:
		return sw_adamw_kernel_scalar_to;
	}
}

static sw_adamw_kernel_fn adamw_kernel(void)
{
	switch (sw_adamw_path_get()) {
#if defined(__x86_64__)
	case SW_ADAMW_PATH_AVX512:
		return sw_adamw_kernel_avx512;
	case SW_ADAMW_PATH_AVX2:
		return sw_adamw_kernel_avx2;
#endif
	default:
		return sw_adamw_kernel_scalar;
	}
}

sw_sumsq_kernel_fn sw_sumsq_kernel(void)
{
	switch (sw_adamw_path_get()) {
#if defined(__x86_64__)
	case SW_ADAMW_PATH_AVX512:
		return sw_sumsq_kernel_avx512;
	case SW_ADAMW_PATH_AVX2:
		return sw_sumsq_kernel_avx2;
#endif
	default:
		return sw_sumsq_kernel_scalar;
	}
}

/* ---- measurement switches (optim/adamw.h: sw_adamw_tuning) ---- */

#if defined(__x86_64__)
/* CPUID leaf 7 EBX: bit 23 clflushopt, bit 24 clwb. Asked directly because
 * __builtin_cpu_supports does not know clwb in every gcc. */
static int cpuid7_ebx(int bit)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (int)((b >> bit) & 1);
}

/* CPUID 0x80000001 ECX bit 8: PREFETCHW. */
static int has_prefetchw(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(0x80000001u, &a, &b, &c, &d))
		return 0;
	return (int)((c >> 8) & 1);
}
#else
static int has_prefetchw(void) { return 0; }
#endif

int sw_adamw_flush_supported(int f)
{
	switch (f) {
	case SW_ADAMW_FLUSH_OFF:
		return 1;
#if defined(__x86_64__)
	case SW_ADAMW_FLUSH_CLWB:
		return cpuid7_ebx(24);
	case SW_ADAMW_FLUSH_CLFLUSHOPT:
		return cpuid7_ebx(23);
#endif
	default:
		return 0;
	}
}

static const char *const flush_names[] = { "off", "clwb", "clflushopt" };

static const sw_adamw_tuning tuning_default = {
	.prefetch = SW_ADAMW_PREFETCH_DEFAULT, .nt = 1, .chunk = SW_ADAMW_CHUNK,
	.block = SW_ADAMW_FLUSH_BLOCK_DEFAULT,
};

/* A whole number in [lo, hi] that is a multiple of 'mult', or -1. */
static int64_t env_count(const char *e, int64_t lo, int64_t hi, int64_t mult)
{
	char *end;
	errno = 0;
	long long x = strtoll(e, &end, 10);
	if (end == e || *end || errno || x < lo || x > hi || x % mult)
		return -1;
	return (int64_t)x;
}

int sw_adamw_tuning_env(sw_adamw_tuning *t)
{
	*t = tuning_default;
	const char *e;
	/* the four switches that predate this struct keep their old, lenient parsing */
	if ((e = getenv("SW_ADAMW_PREFETCH"))) {
		long long x = atoll(e);
		t->prefetch = x < 0 ? 0 : x > (1 << 20) ? (1 << 20) : x;
	}
	e = getenv("SW_ADAMW_PREFETCH_L2");
	t->prefetch_l2 = e && e[0] == '1';
	e = getenv("SW_ADAMW_NT");
	t->nt = !(e && e[0] == '0');
	e = getenv("SW_ADAMW_NT_STATE");
	t->nt_state = e && e[0] == '1';
	e = getenv("SW_ADAMW_STATIC");
	t->static_slices = e && e[0] == '1';

	if ((e = getenv("SW_ADAMW_CHUNK")) && *e) {
		/* a multiple of 64 elements keeps every task's pointers as aligned as the first's
		 * (the non-temporal stores need 32 or 64 bytes) */
		int64_t x = env_count(e, 64, (int64_t)1 << 30, 64);
		if (x < 0)
			sw_warn("SW_ADAMW_CHUNK=%s is not a multiple of 64 in [64, 2^30] elements; "
				"using %" PRId64, e, t->chunk);
		else
			t->chunk = x;
	}
	if ((e = getenv("SW_ADAMW_FLUSH_BLOCK")) && *e) {
		int64_t x = env_count(e, 64, (int64_t)1 << 20, 64);
		if (x < 0)
			sw_warn("SW_ADAMW_FLUSH_BLOCK=%s is not a multiple of 64 in [64, 1048576] "
				"bytes; using %" PRId64, e, t->block);
		else
			t->block = x;
	}
	if ((e = getenv("SW_ADAMW_FLUSH")) && *e) {
		int64_t x = env_count(e, 0, 2, 1);
		if (x < 0)
			sw_warn("SW_ADAMW_FLUSH=%s is not 0 (off), 1 (clwb) or 2 (clflushopt); "
				"not flushing", e);
		else if (!sw_adamw_flush_supported((int)x))
			sw_warn("SW_ADAMW_FLUSH=%s: this CPU has no %s; not flushing", e,
				flush_names[x]);
		else
			t->flush = (int)x;
	}
	if ((e = getenv("SW_ADAMW_BURST")) && *e) {
		int64_t x = env_count(e, 0, 2, 1);
		if (x < 0) {
			sw_warn("SW_ADAMW_BURST=%s is not 0 (off), 1 (prefetchw) or 2 (prefetcht0); "
				"off", e);
		} else if (x == 1 && !has_prefetchw()) {
			sw_warn("SW_ADAMW_BURST=1: this CPU has no prefetchw; using prefetcht0 "
				"(SW_ADAMW_BURST=2)");
			t->burst = 2;
		} else {
			t->burst = (int)x;
		}
	}
	return 0;
}

/* The settings in use: written by the first sw_adamw_tuning_get (once) or by
 * sw_adamw_tuning_set (tests, between updates), read by every kernel call. */
static sw_adamw_tuning tuning;
static pthread_once_t tuning_once = PTHREAD_ONCE_INIT;

static void tuning_init(void)
{
	sw_adamw_tuning_env(&tuning);
}

const sw_adamw_tuning *sw_adamw_tuning_get(void)
{
	pthread_once(&tuning_once, tuning_init);
	return &tuning;
}

int sw_adamw_tuning_set(const sw_adamw_tuning *t)
{
	pthread_once(&tuning_once, tuning_init);
	if (!t) {
		sw_adamw_tuning_env(&tuning);
		return 0;
	}
	if (t->prefetch < 0 || t->prefetch > (1 << 20) || t->chunk < 64 ||
	    t->chunk > ((int64_t)1 << 30) || t->chunk % 64 || t->block < 64 ||
	    t->block > (1 << 20) || t->block % 64 || t->flush < 0 || t->flush > 2 ||
	    t->burst < 0 || t->burst > 2)
		return -EINVAL;
	if (!sw_adamw_flush_supported(t->flush) || (t->burst == 1 && !has_prefetchw()))
		return -ENOTSUP;
	tuning = *t;
	tuning.prefetch_l2 = !!t->prefetch_l2;
	tuning.nt = !!t->nt;
	tuning.nt_state = !!t->nt_state;
	tuning.static_slices = !!t->static_slices;
	return 0;
}

void sw_adamw_tuning_describe(const sw_adamw_tuning *t, char *buf, int len)
{
	snprintf(buf, (size_t)len,
		 "SW_ADAMW_PREFETCH=%" PRId64 " SW_ADAMW_PREFETCH_L2=%d SW_ADAMW_NT=%d "
		 "SW_ADAMW_NT_STATE=%d SW_ADAMW_STATIC=%d SW_ADAMW_CHUNK=%" PRId64
		 " SW_ADAMW_FLUSH=%d SW_ADAMW_FLUSH_BLOCK=%" PRId64 " SW_ADAMW_BURST=%d",
		 t->prefetch, t->prefetch_l2, t->nt, t->nt_state, t->static_slices, t->chunk,
		 t->flush, t->block, t->burst);
}

int64_t sw_adamw_prefetch(void)
{
	const sw_adamw_tuning *t = sw_adamw_tuning_get();
	return t->prefetch_l2 ? -t->prefetch : t->prefetch;
}

/* ---- entry points ---- */

int64_t sw_adamw_update_checked(float *p32, float *m, float *v, const float *g, void *p16,
				sw_dtype act, int64_t n, const sw_adamw_args *a)
{
	if (n <= 0)
		return 0;
	return adamw_kernel()(p32, m, v, g, p16, act == SW_DTYPE_BF16, n, a);
}

void sw_adamw_update(float *p32, float *m, float *v, const float *g, void *p16, sw_dtype act,
		     int64_t n, const sw_adamw_args *a)
{
	(void)sw_adamw_update_checked(p32, m, v, g, p16, act, n, a);
}

struct update_job {
	sw_adamw_kernel_fn fn;
	sw_adamw_kernel_to_fn fn_to;       /* out of place when out[0] is set */
	float *out[3];
	float *p32, *m, *v;
	const float *g;
	char *p16;
	int bf16, p16_size;
	int threads;
	int64_t n, chunk;
	const sw_adamw_args *a;
	atomic_int_fast64_t bad;
};

/* Elements [off, off + len) of a job, in place or out of place. */
static int64_t job_span(const struct update_job *j, int64_t off, int64_t len)
{
	char *p16 = j->p16 ? j->p16 + off * j->p16_size : NULL;
	if (j->out[0]) {
		float *const out[3] = { j->out[0] + off, j->out[1] + off, j->out[2] + off };
		return j->fn_to(out, j->p32 + off, j->m + off, j->v + off, j->g + off, p16, j->bf16, len, j->a);
	}
	return j->fn(j->p32 + off, j->m + off, j->v + off, j->g + off, p16, j->bf16, len, j->a);
}

static void update_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	struct update_job *j = ctx;
	int64_t off = task * j->chunk;
	int64_t len = j->n - off < j->chunk ? j->n - off : j->chunk;
	int64_t bad = job_span(j, off, len);
	if (bad)
		atomic_fetch_add(&j->bad, bad);
}

/* SW_ADAMW_STATIC=1: one contiguous slice per worker instead of chunk-sized tasks (for
 * measuring; the bits are the same either way, the update being element-wise). */
static void slice_task(void *ctx, int64_t task, int worker)
{
	(void)task;
	struct update_job *j = ctx;
	int t = j->threads;
	int64_t blocks = (j->n + 15) / 16;
	int64_t lo = blocks * worker / t * 16, hi = blocks * (worker + 1) / t * 16;
	hi = hi < j->n ? hi : j->n;
	if (lo >= hi)
		return;
	int64_t bad = job_span(j, lo, hi - lo);
	if (bad)
		atomic_fetch_add(&j->bad, bad);
}

static int64_t job_run(sw_pool *pool, struct update_job *j)
{
	const sw_adamw_tuning *tu = sw_adamw_tuning_get();
	j->chunk = tu->chunk;
	atomic_init(&j->bad, 0);
	int64_t tasks = (j->n + j->chunk - 1) / j->chunk;
	if (!pool || tasks == 1) {
		for (int64_t t = 0; t < tasks; t++)
			update_task(j, t, 0);
	} else if (tu->static_slices) {
		j->threads = sw_pool_threads(pool);
		sw_pool_run_each(pool, slice_task, j);
	} else {
		sw_pool_run(pool, update_task, j, tasks);
	}
	return atomic_load(&j->bad);
}

int64_t sw_adamw_update_parallel(sw_pool *pool, float *p32, float *m, float *v, const float *g,
				 void *p16, sw_dtype act, int64_t n, const sw_adamw_args *a)
{
	if (n <= 0)
		return 0;
	struct update_job j = {
		.fn = adamw_kernel(), .p32 = p32, .m = m, .v = v, .g = g, .p16 = p16,
		.bf16 = act == SW_DTYPE_BF16, .p16_size = act == SW_DTYPE_BF16 ? 2 : 4, .n = n, .a = a,
	};
	return job_run(pool, &j);
}

int64_t sw_adamw_update_parallel_to(sw_pool *pool, float *const out[3], const float *p32,
				    const float *m, const float *v, const float *g, void *p16,
				    sw_dtype act, int64_t n, const sw_adamw_args *a)
{
	if (n <= 0)
		return 0;
	struct update_job j = {
		.fn_to = adamw_kernel_to(), .out = { out[0], out[1], out[2] }, .p32 = (float *)p32,
		.m = (float *)m, .v = (float *)v, .g = g, .p16 = p16, .bf16 = act == SW_DTYPE_BF16,
		.p16_size = act == SW_DTYPE_BF16 ? 2 : 4, .n = n, .a = a,
	};
	return job_run(pool, &j);
}

int64_t sw_adamw_update_to(float *const out[3], const float *p32, const float *m, const float *v,
			   const float *g, void *p16, sw_dtype act, int64_t n, const sw_adamw_args *a)
{
	if (n <= 0)
		return 0;
	return adamw_kernel_to()(out, p32, m, v, g, p16, act == SW_DTYPE_BF16, n, a);
}
