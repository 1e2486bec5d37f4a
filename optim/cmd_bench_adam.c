/* spillway bench-adam: CPU AdamW throughput against the memory bandwidth of the same machine,
 * measured in the same run with the same threads by a STREAM-like triad.
 *
 * Bytes counted per parameter: 30 = read p32, m, v, g (4 B each) + write p32, m, v (4 B each)
 * + write the bf16 copy p16 (2 B). Triad a[i] = b[i] + s * c[i] on fp32 arrays: 12 B per
 * element (read b, c, write a: STREAM's count, which is 24 B for its fp64 arrays). It is run
 * with non-temporal stores (12 B is then the real traffic) and with ordinary stores (the CPU may
 * also read a's lines before writing them, which STREAM does not count), each with and without
 * software prefetch at AdamW's distance; the ratio is taken against the fastest of the four, so
 * the reference gets every help the update gets. A read-only kernel (the sum of p32, m, v and
 * g, 16 B per element) is printed beside it, for comparison (on a host where each core is
 * limited by its loads in flight, AdamW, whose writes leave as write-backs, can beat it).
 * The AdamW runs are sw_adamw_update_parallel, the code the engine runs, on its chunks. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/log.h"
#include "core/pool.h"
#include "optim/adamw.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BENCH_BYTES_PER_PARAM 30
#define TRIAD_BYTES_PER_ELEM (3 * (int)sizeof(float))   /* 12: read b, c; write a */
#define READ_BYTES_PER_ELEM (4 * (int)sizeof(float))    /* 16: read p32, m, v, g */
#define MAX_CPUS 4096

typedef struct bench {
	int64_t n;          /* parameters (and triad elements) */
	float *p, *m, *v, *g;
	sw_bf16 *h;
	float *a, *b, *c;   /* triad */
	int nt;             /* triad: non-temporal stores */
	int64_t pf;         /* triad and read kernel: software prefetch distance in bytes, 0 off */
	double sink[MAX_CPUS]; /* read kernel: per-worker sums, so the loads are not optimized out */
	int threads;
	sw_adamw_args args;
} bench;

/* The slice of worker w of T: 64-element aligned bounds. */
static void slice(int64_t n, int w, int t, int64_t *lo, int64_t *hi)
{
	int64_t blocks = (n + 63) / 64;
	*lo = blocks * w / t * 64;
	*hi = blocks * (w + 1) / t * 64;
	if (*lo > n)
		*lo = n;
	if (*hi > n)
		*hi = n;
}

static void init_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	bench *b = ctx;
	int64_t lo, hi;
	slice(b->n, (int)task, b->threads, &lo, &hi);
	uint64_t r = 0x9e3779b97f4a7c15ull ^ (uint64_t)lo;
	for (int64_t i = lo; i < hi; i++) {
		r ^= r << 13; r ^= r >> 7; r ^= r << 17;
		float u = (float)(r >> 40) * (1.0f / 16777216.0f) - 0.5f;
		b->p[i] = 0.04f * u;
		b->m[i] = 0;
		b->v[i] = 0;
		b->g[i] = 1e-3f * u;
		b->h[i] = 0;
		b->a[i] = 0;
		b->b[i] = u;
		b->c[i] = 2 * u;
	}
}

static uint32_t f_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void triad_avx512(float *a, const float *b,
							      const float *c, int64_t lo, int64_t hi,
							      float s, int nt, int64_t pf)
{
	const __m512 vs = _mm512_set1_ps(s);
	int64_t i = lo;
	for (; i + 16 <= hi; i += 16) {
		if (pf) {
			_mm_prefetch((const char *)(b + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(c + i) + pf, _MM_HINT_T0);
		}
		__m512 x = _mm512_add_ps(_mm512_loadu_ps(b + i), _mm512_mul_ps(vs, _mm512_loadu_ps(c + i)));
		if (nt)
			_mm512_stream_ps(a + i, x);
		else
			_mm512_storeu_ps(a + i, x);
	}
	for (; i < hi; i++)
		a[i] = b[i] + s * c[i];
	_mm_sfence();
}

__attribute__((target("avx2"))) static void triad_avx2(float *a, const float *b, const float *c,
							int64_t lo, int64_t hi, float s, int nt, int64_t pf)
{
	const __m256 vs = _mm256_set1_ps(s);
	int64_t i = lo;
	for (; i + 8 <= hi; i += 8) {
		if (pf && i % 16 == 0) {   /* one prefetch per 64-byte line */
			_mm_prefetch((const char *)(b + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(c + i) + pf, _MM_HINT_T0);
		}
		__m256 x = _mm256_add_ps(_mm256_loadu_ps(b + i), _mm256_mul_ps(vs, _mm256_loadu_ps(c + i)));
		if (nt)
			_mm256_stream_ps(a + i, x);
		else
			_mm256_storeu_ps(a + i, x);
	}
	for (; i < hi; i++)
		a[i] = b[i] + s * c[i];
	_mm_sfence();
}
#endif

#if defined(__x86_64__)
/* AdamW's memory pattern without its arithmetic: read p32, m, v, g, write p32, m, v back
 * (x + 0, so the stores stay) and a bf16 (truncated p + g) with non-temporal stores: what the
 * update could reach if its arithmetic cost nothing. A span (sw_adamw_span_fn) so that
 * SW_ADAMW_FLUSH and SW_ADAMW_BURST cut it into the same sub-blocks as the update
 * (sw_adamw_run_blocked); o->nts is SW_ADAMW_NT_STATE. It never prefetches per vector (o->pf is
 * ignored): it is the pattern of the docs/perf/adam.md table, hardware prefetchers only. */
__attribute__((target("avx512f,avx512bw"))) static int64_t pattern_span(float *p32, float *m,
									  float *v, const float *g,
									  void *p16, int bf16, int64_t n,
									  const sw_adamw_args *a,
									  const sw_adamw_span_opts *o)
{
	(void)bf16;
	sw_bf16 *h = p16;
	const __m512 z = _mm512_set1_ps(a->weight_decay * 0.0f);
	const int nts = o->nts;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 p = _mm512_add_ps(_mm512_loadu_ps(p32 + i), z);
		__m512 mm = _mm512_add_ps(_mm512_loadu_ps(m + i), z);
		__m512 vv = _mm512_add_ps(_mm512_loadu_ps(v + i), z);
		__m512 x = _mm512_add_ps(p, _mm512_loadu_ps(g + i));
		if (nts) {
			_mm512_stream_ps(p32 + i, p);
			_mm512_stream_ps(m + i, mm);
			_mm512_stream_ps(v + i, vv);
		} else {
			_mm512_storeu_ps(p32 + i, p);
			_mm512_storeu_ps(m + i, mm);
			_mm512_storeu_ps(v + i, vv);
		}
		_mm256_stream_si256((__m256i *)(h + i),
				    _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(x), 16)));
	}
	for (; i < n; i++)
		h[i] = (sw_bf16)(f_bits(p32[i] + g[i]) >> 16);
	return 0;
}
#endif

static void pattern_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	bench *b = ctx;
	int64_t lo, hi;
	slice(b->n, (int)task, b->threads, &lo, &hi);
#if defined(__x86_64__)
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX512)) {
		/* slices start on 64-element boundaries of 2 MiB-aligned arrays: every stream is
		 * 64-byte aligned, as the non-temporal stores need */
		const sw_adamw_tuning *t = sw_adamw_tuning_get();
		const sw_adamw_span_opts o = { .pf = 0, .nt = 1, .nts = t->nt_state };
		sw_adamw_run_blocked(pattern_span, b->p + lo, b->m + lo, b->v + lo, b->g + lo,
				     b->h + lo, 1, hi - lo, &b->args, &o, t);
		_mm_sfence();
		return;
	}
#endif
	for (int64_t i = lo; i < hi; i++) {
		b->h[i] = (sw_bf16)(f_bits(b->p[i] + b->g[i]) >> 16);
		b->p[i] += 0.0f;
		b->m[i] += 0.0f;
		b->v[i] += 0.0f;
	}
}

static void triad_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	bench *b = ctx;
	int64_t lo, hi;
	slice(b->n, (int)task, b->threads, &lo, &hi);
	const float s = 3.0f;
#if defined(__x86_64__)
	/* slices start on 64-element (256 B) boundaries of 2 MiB-aligned arrays: aligned */
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX512)) {
		triad_avx512(b->a, b->b, b->c, lo, hi, s, b->nt, b->pf);
		return;
	}
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX2)) {
		triad_avx2(b->a, b->b, b->c, lo, hi, s, b->nt, b->pf);
		return;
	}
#endif
	for (int64_t i = lo; i < hi; i++)
		b->a[i] = b->b[i] + s * b->c[i];
}

#if defined(__x86_64__)
/* The read-only kernel: the sum of p32, m, v and g over [lo, hi) (16 B per element, nothing
 * written), with software prefetch pf bytes ahead of each stream when pf > 0. */
__attribute__((target("avx512f"))) static double read_avx512(const float *p, const float *m,
							       const float *v, const float *g,
							       int64_t lo, int64_t hi, int64_t pf)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = lo;
	for (; i + 16 <= hi; i += 16) {
		if (pf) {
			_mm_prefetch((const char *)(p + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(m + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(v + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(g + i) + pf, _MM_HINT_T0);
		}
		s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
		s1 = _mm512_add_ps(s1, _mm512_loadu_ps(m + i));
		s2 = _mm512_add_ps(s2, _mm512_loadu_ps(v + i));
		s3 = _mm512_add_ps(s3, _mm512_loadu_ps(g + i));
	}
	double t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
	for (; i < hi; i++)
		t += (double)p[i] + m[i] + v[i] + g[i];
	return t;
}

__attribute__((target("avx2"))) static double read_avx2(const float *p, const float *m,
							 const float *v, const float *g,
							 int64_t lo, int64_t hi, int64_t pf)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = lo;
	for (; i + 8 <= hi; i += 8) {
		if (pf && i % 16 == 0) {
			_mm_prefetch((const char *)(p + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(m + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(v + i) + pf, _MM_HINT_T0);
			_mm_prefetch((const char *)(g + i) + pf, _MM_HINT_T0);
		}
		s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
		s1 = _mm256_add_ps(s1, _mm256_loadu_ps(m + i));
		s2 = _mm256_add_ps(s2, _mm256_loadu_ps(v + i));
		s3 = _mm256_add_ps(s3, _mm256_loadu_ps(g + i));
	}
	float lane[8];
	_mm256_storeu_ps(lane, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	double t = 0;
	for (int k = 0; k < 8; k++)
		t += lane[k];
	for (; i < hi; i++)
		t += (double)p[i] + m[i] + v[i] + g[i];
	return t;
}
#endif

static void read_task(void *ctx, int64_t task, int worker)
{
	bench *b = ctx;
	int64_t lo, hi;
	slice(b->n, (int)task, b->threads, &lo, &hi);
	double t = 0;
#if defined(__x86_64__)
	if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX512))
		t = read_avx512(b->p, b->m, b->v, b->g, lo, hi, b->pf);
	else if (sw_adamw_path_supported(SW_ADAMW_PATH_AVX2))
		t = read_avx2(b->p, b->m, b->v, b->g, lo, hi, b->pf);
	else
#endif
		for (int64_t i = lo; i < hi; i++)
			t += (double)b->p[i] + b->m[i] + b->v[i] + b->g[i];
	b->sink[worker] = t;
}

static void *huge_alloc(uint64_t bytes)
{
	const uint64_t align = 2u << 20;
	bytes = (bytes + align - 1) / align * align;
	void *p = NULL;
	if (posix_memalign(&p, align, bytes))
		return NULL;
#ifdef MADV_HUGEPAGE
	madvise(p, bytes, MADV_HUGEPAGE);  /* fewer TLB misses; a hint, failures do not matter */
#endif
	return p;
}

/* "1,2,4,8,16" -> sorted unique values capped at 'online'; returns the count or -EINVAL. */
static int parse_threads(const char *s, int online, int *out, int max, int *capped)
{
	int n = 0;
	*capped = 0;
	const char *q = s;
	while (*q) {
		char *end;
		errno = 0;
		long t = strtol(q, &end, 10);
		if (end == q || errno || t < 1 || t > 100000 || (*end && *end != ','))
			return -EINVAL;
		if (t > online) {
			t = online;
			*capped = 1;
		}
		int dup = 0;
		for (int i = 0; i < n; i++)
			dup |= out[i] == t;
		if (!dup) {
			if (n == max)
				return -EINVAL;
			int i = n++;
			while (i > 0 && out[i - 1] > t) {
				out[i] = out[i - 1];
				i--;
			}
			out[i] = (int)t;
		}
		q = *end ? end + 1 : end;
		if (*end == ',' && !*q)
			return -EINVAL;
	}
	return n ? n : -EINVAL;
}

/* "134217728", "128M" (10^6), "2G", "500K": a positive count; -EINVAL otherwise. */
static int parse_count(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (end == s || errno || !(x > 0))
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		x *= 1e3, end++;
	else if (*end == 'M' || *end == 'm')
		x *= 1e6, end++;
	else if (*end == 'G' || *end == 'g')
		x *= 1e9, end++;
	if (*end || x < 1 || x > 1e12 || x != floor(x))
		return -EINVAL;
	*out = (int64_t)x;
	return 0;
}

static void cpu_model(char *buf, int len)
{
	snprintf(buf, (size_t)len, "unknown CPU");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && c) {
			snprintf(buf, (size_t)len, "%s", c + 2);
			buf[strcspn(buf, "\n")] = 0;
			break;
		}
	}
	fclose(f);
}

static double best_of(double a, double b) { return a < b ? a : b; }

int cmd_bench_adam(int argc, char **argv)
{
	const char *params_s = "256M", *threads_s = "1,2,4,8,16", *path_s = "auto";
	int64_t reps = 5;
	const sw_opt opts[] = {
		{ "params", SW_OPT_STR, &params_s, "N", "parameters to update (K, M, G = 10^3, 10^6, 10^9); default 256M", 0 },
		{ "threads", SW_OPT_STR, &threads_s, "LIST", "comma-separated thread counts, capped at the online CPUs; default 1,2,4,8,16", 0 },
		{ "reps", SW_OPT_INT, &reps, "R", "timed runs per measurement, the best is kept; default 5", 0 },
		{ "path", SW_OPT_STR, &path_s, "P", "AdamW path: auto, scalar, avx2, avx512; default auto", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	const char *summary = "CPU AdamW throughput vs the memory bandwidth (STREAM-like triad)";
	int rc = sw_cli_parse("bench-adam", summary, opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;

	int64_t n;
	if (parse_count(params_s, &n)) {
		sw_error("bench-adam: --params '%s' is not a positive whole number of parameters; e.g. 128M or 1000000", params_s);
		return 2;
	}
	if (reps < 1 || reps > 1000) {
		sw_error("bench-adam: --reps %lld is out of range; use 1 to 1000", (long long)reps);
		return 2;
	}
	sw_adamw_path path;
	if (sw_adamw_path_parse(path_s, &path)) {
		sw_error("bench-adam: --path '%s' is not one of auto, scalar, avx2, avx512", path_s);
		return 2;
	}
	int online = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (online < 1)
		online = 1;
	int tlist[64], capped;
	int nt = parse_threads(threads_s, online, tlist, 64, &capped);
	if (nt < 0) {
		sw_error("bench-adam: --threads '%s' is not a list of positive thread counts; e.g. 1,2,4,8,16", threads_s);
		return 2;
	}
	if (sw_adamw_path_set(path)) {
		sw_error("bench-adam: --path %s: this CPU cannot run it; use auto", path_s);
		return 1;
	}

	static int cpus[MAX_CPUS];
	char where[128];
	int ncpus = sw_pool_cpus_near_gpu(NULL, cpus, MAX_CPUS, where, sizeof(where));
	if (ncpus < 1) {
		sw_error("bench-adam: cannot list this machine's CPUs (hwloc failed)");
		return 1;
	}

	uint64_t need = (uint64_t)n * (18 + 12);  /* p, m, v, g, p16: 18 B; triad a, b, c: 12 B */
	long pages = sysconf(_SC_AVPHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	char b1[32], b2[32];
	if (pages > 0 && psize > 0 && need > (uint64_t)pages * (uint64_t)psize) {
		sw_error("bench-adam: --params %s needs %s of memory but %s is free; use a smaller --params",
			 params_s, sw_fmt_size(need, b1, sizeof(b1)),
			 sw_fmt_size((uint64_t)pages * (uint64_t)psize, b2, sizeof(b2)));
		return 1;
	}
	bench b = { .n = n };
	int *bind = malloc((size_t)tlist[nt - 1] * sizeof(int));
	b.p = huge_alloc((uint64_t)n * 4);
	b.m = huge_alloc((uint64_t)n * 4);
	b.v = huge_alloc((uint64_t)n * 4);
	b.g = huge_alloc((uint64_t)n * 4);
	b.h = huge_alloc((uint64_t)n * 2);
	b.a = huge_alloc((uint64_t)n * 4);
	b.b = huge_alloc((uint64_t)n * 4);
	b.c = huge_alloc((uint64_t)n * 4);
	rc = 0;
	if (!bind || !b.p || !b.m || !b.v || !b.g || !b.h || !b.a || !b.b || !b.c) {
		sw_error("bench-adam: cannot allocate %s for --params %s; use a smaller --params",
			 sw_fmt_size(need, b1, sizeof(b1)), params_s);
		rc = 1;
		goto out_free;
	}

	char model[256];
	cpu_model(model, sizeof(model));
	const sw_adamw_tuning *tu = sw_adamw_tuning_get();
	printf("bench-adam: %lld parameters (AdamW state %s, triad %s), %s\n", (long long)n,
	       sw_fmt_size((uint64_t)n * 18, b1, sizeof(b1)), sw_fmt_size((uint64_t)n * 12, b2, sizeof(b2)),
	       model);
	char pfs[96], chs[48], fls[64];
	if (tu->burst)
		snprintf(pfs, sizeof(pfs), "in %s bursts of %lld B per stream, %lld B ahead%s",
			 tu->burst == 1 && !tu->prefetch_l2 ? "prefetchw/t0" : "prefetch",
			 (long long)tu->block, (long long)tu->prefetch, tu->prefetch_l2 ? " (to L2)" : "");
	else if (tu->prefetch)
		snprintf(pfs, sizeof(pfs), "%lld B ahead%s", (long long)tu->prefetch,
			 tu->prefetch_l2 ? " (to L2)" : "");
	else
		snprintf(pfs, sizeof(pfs), "off");
	if (tu->chunk % 1024 == 0)
		snprintf(chs, sizeof(chs), "%lldKi-element chunks", (long long)(tu->chunk / 1024));
	else
		snprintf(chs, sizeof(chs), "%lld-element chunks", (long long)tu->chunk);
	if (tu->flush)
		snprintf(fls, sizeof(fls), ", p32/m/v lines written back (%s) every %lld B",
			 tu->flush == SW_ADAMW_FLUSH_CLWB ? "clwb" : "clflushopt", (long long)tu->block);
	else
		fls[0] = 0;
	printf("path %s, bf16 copy with %s stores%s, software prefetch %s%s, %s; %d online CPUs, "
	       "threads bound to %s: %d CPUs\n", sw_adamw_path_name(sw_adamw_path_get()),
	       tu->nt ? "non-temporal" : "ordinary", tu->nt_state ? " (p32, m, v too)" : "", pfs, fls,
	       tu->static_slices ? "one slice per thread" : chs, online, where, ncpus);
	/* every switch as in effect (after any fall-back), so that a sweep's log describes itself */
	char sws[512];
	sw_adamw_tuning_describe(tu, sws, sizeof(sws));
	printf("switches: SW_ADAMW_PATH=%s %s\n", sw_adamw_path_name(sw_adamw_path_get()), sws);
	if (capped)
		printf("(thread counts above the %d online CPUs were capped)\n", online);
	long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
	if (llc > 0 && (uint64_t)n * 12 < 4 * (uint64_t)llc)
		printf("(note: the triad's %s are not much larger than the %s last-level cache: these "
		       "numbers measure the cache more than memory; use a larger --params)\n",
		       sw_fmt_size((uint64_t)n * 12, b1, sizeof(b1)),
		       sw_fmt_size((uint64_t)llc, b2, sizeof(b2)));
	printf("%7s %9s %10s %10s %10s %7s %9s %9s %8s %9s\n", "threads", "Gparam/s",
	       "adam GB/s", "triad-nt", "triad-rfo", "ratio", "read GB/s", "adam/read", "pattern",
	       "adam/pat");

	sw_adamw_hparams hp = { 1e-4, 0.9, 0.999, 1e-8, 0.01 };
	int64_t step = 0;
	/* the reference kernels run with and without software prefetch (AdamW's distance), the
	 * best kept: a triad that the hardware prefetchers serve less well is not the bound */
	const int64_t pfs_[2] = { 0, tu->prefetch };
	const int npf = tu->prefetch ? 2 : 1;          /* prefetch off: one variant */
	for (int ti = -1; ti < nt; ti++) {
		/* ti = -1: the largest pool writes every array first (first touch puts the pages on
		 * the bound CPUs' node) */
		int t = tlist[ti < 0 ? nt - 1 : ti];
		for (int i = 0; i < t; i++)
			bind[i] = cpus[i % ncpus];
		sw_pool *pool = sw_pool_create(t, bind);
		if (!pool) {
			sw_error("bench-adam: cannot start %d threads", t);
			rc = 1;
			goto out_free;
		}
		b.threads = t;
		if (ti < 0) {
			sw_pool_run_each(pool, init_task, &b);
			sw_pool_destroy(pool);
			continue;
		}
		double ta = INFINITY, tnt = INFINITY, trfo = INFINITY, trd = INFINITY, tpat = INFINITY;
		for (int64_t r = -1; r < reps; r++) {        /* r = -1: warm-up, not timed */
			b.args = sw_adamw_args_make(&hp, hp.lr, ++step, 1, 1.0);
			double t0 = sw_now();
			int64_t bad = sw_adamw_update_parallel(pool, b.p, b.m, b.v, b.g, b.h,
							       SW_DTYPE_BF16, n, &b.args);
			double t1 = sw_now();
			SW_ASSERT(bad == 0);
			if (r >= 0)
				ta = best_of(ta, t1 - t0);
			for (int k = 0; k < npf; k++) {
				b.pf = pfs_[k];
				double u0 = sw_now();
				b.nt = 1;
				sw_pool_run_each(pool, triad_task, &b);
				double u1 = sw_now();
				b.nt = 0;
				sw_pool_run_each(pool, triad_task, &b);
				double u2 = sw_now();
				sw_pool_run_each(pool, read_task, &b);
				double u3 = sw_now();
				if (r >= 0) {
					tnt = best_of(tnt, u1 - u0);
					trfo = best_of(trfo, u2 - u1);
					trd = best_of(trd, u3 - u2);
				}
			}
			double u4 = sw_now();
			sw_pool_run_each(pool, pattern_task, &b);
			double u5 = sw_now();
			if (r >= 0)
				tpat = best_of(tpat, u5 - u4);
		}
		sw_pool_destroy(pool);
		double adam_gbs = (double)n * BENCH_BYTES_PER_PARAM / ta / 1e9;
		double nt_gbs = (double)n * TRIAD_BYTES_PER_ELEM / tnt / 1e9;
		double rfo_gbs = (double)n * TRIAD_BYTES_PER_ELEM / trfo / 1e9;
		double rd_gbs = (double)n * READ_BYTES_PER_ELEM / trd / 1e9;
		double bw = nt_gbs > rfo_gbs ? nt_gbs : rfo_gbs;
		double pat_gbs = (double)n * BENCH_BYTES_PER_PARAM / tpat / 1e9;
		printf("%7d %9.3f %10.1f %10.1f %10.1f %6.1f%% %9.1f %8.1f%% %8.1f %8.1f%%\n", t,
		       (double)n / ta / 1e9, adam_gbs, nt_gbs, rfo_gbs, 100.0 * adam_gbs / bw, rd_gbs,
		       100.0 * adam_gbs / rd_gbs, pat_gbs, 100.0 * adam_gbs / pat_gbs);
		fflush(stdout);
	}
	printf("bytes counted: AdamW %d per parameter (read p32, m, v, g; write p32, m, v, bf16 p16); "
	       "triad %d per element of fp32 (read b, c; write a; -nt: non-temporal stores; -rfo: "
	       "ordinary stores, whose reads of a's lines are not counted, as STREAM counts); each "
	       "triad and read: best with and without %lld B software prefetch; ratio = adam / the "
	       "faster triad; read: the sum of p32, m, v, g, %d per element; pattern: AdamW's loads "
	       "and stores without its arithmetic, %d counted; best of %lld runs; GB = 10^9 bytes\n",
	       BENCH_BYTES_PER_PARAM, TRIAD_BYTES_PER_ELEM, (long long)tu->prefetch,
	       READ_BYTES_PER_ELEM, BENCH_BYTES_PER_PARAM, (long long)reps);
out_free:
	free(bind);
	free(b.p); free(b.m); free(b.v); free(b.g); free(b.h); free(b.a); free(b.b); free(b.c);
	return rc;
}
