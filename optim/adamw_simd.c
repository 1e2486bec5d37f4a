/* The AVX2 and AVX-512 AdamW paths and sum-of-squares kernels, chosen at run time
 * (optim/adamw.c). Each function carries its own target attribute, so the file builds with the
 * project's generic flags and the instructions only run where the CPU has them.
 *
 * Bit-identity with the scalar path (sw_adamw_kernel_scalar) rests on three rules:
 *  - the same operations in the same order, each a separately rounded IEEE op (mul, add, sub,
 *    div, sqrt are correctly rounded in SSE/AVX as in scalar code); the "fma" target is never
 *    enabled here and -ffp-contract=off is global, so nothing is fused;
 *  - the bf16 rounding is done on the integer bits exactly as sw_f32_to_bf16 (round to nearest
 *    even; NaN -> (bits >> 16) | 0x40), never with VCVTNEPS2BF16, which flushes denormals;
 *  - the MXCSR is left at its default (no FTZ/DAZ), as for the scalar code. */
#include "optim/adamw.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#define T_AVX2 __attribute__((target("avx2")))
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/* The measurement switches (sw_adamw_tuning, read once in optim/adamw.c) as one kernel call
 * uses them. nt: non-temporal stores for the p16 stream (written once, read next by a DMA to
 * the GPU) when aligned to the vector. nts (AVX-512 only): non-temporal stores for p32, m, v
 * when all three are 64-byte aligned. pf: the per-vector prefetch distance, negative into L2. */
static sw_adamw_span_opts span_opts(const sw_adamw_tuning *t, const float *p32, const float *m,
				    const float *v, const void *p16, int bf16, unsigned vec_bytes,
				    int nts_ok)
{
	sw_adamw_span_opts o = {
		.pf = t->prefetch_l2 ? -t->prefetch : t->prefetch,
		.nt = p16 && t->nt && ((uintptr_t)p16 & ((bf16 ? vec_bytes / 2 : vec_bytes) - 1)) == 0,
		.nts = nts_ok && t->nt_state &&
		       (((uintptr_t)p32 | (uintptr_t)m | (uintptr_t)v) & 63) == 0,
	};
	return o;
}

/* ---------------- sub-blocks: bursts of prefetches, write-back of dirty lines ----------------
 *
 * Why (docs/perf/adam.md): AdamW's access pattern, not its arithmetic, is what keeps it at ~64 %
 * of a triad. With ordinary stores, the dirty lines of p32, m and v leave the cache whenever L3
 * evicts them, in no particular order, interleaved with reads: the DRAM sees scattered writes
 * and many read/write turnarounds. SW_ADAMW_FLUSH writes a sub-block's lines back right after it
 * is updated, stream by stream in address order (bursts that fill DRAM rows); SW_ADAMW_BURST
 * asks for the input in the same shape, one contiguous run of prefetches per stream, instead of
 * one prefetch per stream per vector. Neither changes a value. */

#define LINE 64u

static inline uintptr_t line_down(const void *p) { return (uintptr_t)p & ~(uintptr_t)(LINE - 1); }

/* clwb: written back, the line may stay cached (clean); clflushopt: written back and dropped. Both
 * are weakly ordered hints as far as this thread's values go (the line stays coherent), so no
 * fence is needed for correctness. */
static __attribute__((target("clwb"))) void lines_clwb(uintptr_t lo, uintptr_t hi)
{
	for (; lo < hi; lo += LINE)
		_mm_clwb((void *)lo);
}

static __attribute__((target("clflushopt"))) void lines_clflushopt(uintptr_t lo, uintptr_t hi)
{
	for (; lo < hi; lo += LINE)
		_mm_clflushopt((void *)lo);
}

/* prefetchw: the line comes in owned (ready to be written), for the read-modify-write streams */
static __attribute__((target("prfchw"))) void lines_prefetchw(uintptr_t lo, uintptr_t hi)
{
	for (; lo < hi; lo += LINE)
		__builtin_prefetch((const void *)lo, 1, 3);   /* prefetchw under target("prfchw"), gcc and clang */
}

static void lines_prefetch(uintptr_t lo, uintptr_t hi, int l2)
{
	if (l2)
		for (; lo < hi; lo += LINE)
			_mm_prefetch((const char *)lo, _MM_HINT_T1);
	else
		for (; lo < hi; lo += LINE)
			_mm_prefetch((const char *)lo, _MM_HINT_T0);
}

/* Prefetches elements [e0, min(e0 + blk, n)) of p32, then m, then v, then g, each stream as
 * one run of line prefetches. */
static void burst(const sw_adamw_tuning *t, const float *p32, const float *m, const float *v,
		  const float *g, int64_t e0, int64_t n, int64_t blk)
{
	if (e0 >= n)
		return;
	const int64_t e1 = n - e0 < blk ? n : e0 + blk;
	const float *const rmw[3] = { p32, m, v };
	for (int k = 0; k < 3; k++) {
		uintptr_t lo = line_down(rmw[k] + e0), hi = (uintptr_t)(rmw[k] + e1);
		if (t->burst == 1 && !t->prefetch_l2)
			lines_prefetchw(lo, hi);
		else
			lines_prefetch(lo, hi, t->prefetch_l2);
	}
	lines_prefetch(line_down(g + e0), (uintptr_t)(g + e1), t->prefetch_l2);
}

int64_t sw_adamw_run_blocked(sw_adamw_span_fn fn, float *p32, float *m, float *v, const float *g,
			     void *p16, int bf16, int64_t n, const sw_adamw_args *a,
			     const sw_adamw_span_opts *o, const sw_adamw_tuning *t)
{
	if (!t->flush && !t->burst)
		return fn(p32, m, v, g, p16, bf16, n, a, o);   /* no sub-blocks: one span */
	const int64_t blk = t->block / 4;   /* elements; a multiple of 16 (block: of 64 bytes) */
	const int64_t psz = bf16 ? 2 : 4;
	/* non-temporal state stores leave no dirty lines behind to write back */
	const int flush = o->nts ? SW_ADAMW_FLUSH_OFF : t->flush;
	sw_adamw_span_opts in = *o;
	int64_t ahead = 0;
	if (t->burst) {
		/* the distance in whole blocks, rounded to the nearest, at least one */
		ahead = (t->prefetch + t->block / 2) / t->block;
		ahead = ahead < 1 ? 1 : ahead;
		in.pf = 0;     /* the bursts replace the per-vector prefetches */
		for (int64_t b = 0; b < ahead; b++)
			burst(t, p32, m, v, g, b * blk, n, blk);
	}
	float *const st[3] = { p32, m, v };
	/* per stream, the first line not yet written back: each line goes once, and a line shared
	 * with the next block (misaligned streams) only once that block has written it too */
	uintptr_t done[3] = { line_down(p32), line_down(m), line_down(v) };
	int64_t bad = 0;
	for (int64_t lo = 0; lo < n; lo += blk) {
		const int64_t hi = n - lo < blk ? n : lo + blk;
		if (t->burst)
			burst(t, p32, m, v, g, lo + ahead * blk, n, blk);
		bad += fn(p32 + lo, m + lo, v + lo, g + lo, p16 ? (char *)p16 + lo * psz : NULL, bf16,
			  hi - lo, a, &in);
		if (!flush)
			continue;
		for (int k = 0; k < 3; k++) {
			/* whole lines only, except at the end: there the last, partial line too */
			uintptr_t end = hi == n ? (uintptr_t)(st[k] + hi) : line_down(st[k] + hi);
			if (flush == SW_ADAMW_FLUSH_CLWB)
				lines_clwb(done[k], end);
			else
				lines_clflushopt(done[k], end);
			if (end > done[k])
				done[k] = end;
		}
	}
	return bad;
}

/* A SIMD path's kernel: its span over [0, n) with the switches in use (vec_bytes: the vector
 * size, for the p16 stores' alignment; nts_ok: whether the path has non-temporal state stores). */
static int64_t run_kernel(sw_adamw_span_fn fn, unsigned vec_bytes, int nts_ok, float *p32,
			  float *m, float *v, const float *g, void *p16, int bf16, int64_t n,
			  const sw_adamw_args *a, float *const *out)
{
	const sw_adamw_tuning *t = sw_adamw_tuning_get();
	sw_adamw_span_opts o = span_opts(t, p32, m, v, p16, bf16, vec_bytes, nts_ok && !out);
	int64_t bad = 0;
	if (out) {
		/* out of place: one span (no sub-blocks). The state goes out with non-temporal
		 * stores (the lines are not read first, so the traffic is the in-place update's)
		 * once the scalar kernel has brought the three outputs to a 64-byte boundary, when
		 * they share their offset within it (they do in the executor: page-aligned sets) */
		uintptr_t mis = (uintptr_t)out[0] & 63;
		int64_t head = 0;
		if (mis == ((uintptr_t)out[1] & 63) && mis == ((uintptr_t)out[2] & 63) && !(mis & 3)) {
			head = (int64_t)((64 - mis) & 63) / 4;
			head = head < n ? head : n;
			o.nts = 1;
		}
		if (head)
			bad += sw_adamw_kernel_scalar_to(out, p32, m, v, g, p16, bf16, head, a);
		float *const o3[3] = { out[0] + head, out[1] + head, out[2] + head };
		for (int k = 0; k < 3; k++)
			o.out[k] = o3[k];
		void *h16 = p16 ? (char *)p16 + head * (bf16 ? 2 : 4) : NULL;
		o.nt = o.nt && h16 && ((uintptr_t)h16 & ((bf16 ? vec_bytes / 2 : vec_bytes) - 1)) == 0;
		bad += fn(p32 + head, m + head, v + head, g + head, h16, bf16, n - head, a, &o);
	} else {
		bad = sw_adamw_run_blocked(fn, p32, m, v, g, p16, bf16, n, a, &o, t);
	}
	if (o.nt || o.nts)
		_mm_sfence();   /* non-temporal stores are weakly ordered: publish before returning */
	return bad;
}

#define PREFETCH4(i, pf)                                                                       \
	do {                                                                                   \
		if ((pf) > 0) {                                                                \
			_mm_prefetch((const char *)(g + (i)) + (pf), _MM_HINT_T0);             \
			_mm_prefetch((const char *)(p32 + (i)) + (pf), _MM_HINT_T0);           \
			_mm_prefetch((const char *)(m + (i)) + (pf), _MM_HINT_T0);             \
			_mm_prefetch((const char *)(v + (i)) + (pf), _MM_HINT_T0);             \
		} else {                                                                       \
			_mm_prefetch((const char *)(g + (i)) - (pf), _MM_HINT_T1);             \
			_mm_prefetch((const char *)(p32 + (i)) - (pf), _MM_HINT_T1);           \
			_mm_prefetch((const char *)(m + (i)) - (pf), _MM_HINT_T1);             \
			_mm_prefetch((const char *)(v + (i)) - (pf), _MM_HINT_T1);             \
		}                                                                              \
	} while (0)

/* ---------------- AVX-512 ---------------- */

static inline T_AVX512 __m256i bf16_round16(__m512 p)
{
	const __m512i u = _mm512_castps_si512(p);
	const __m512i hi = _mm512_srli_epi32(u, 16);
	const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
	const __mmask16 nan = _mm512_cmpgt_epi32_mask(absu, _mm512_set1_epi32(0x7f800000));
	const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
	__m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
	r = _mm512_srli_epi32(r, 16);
	r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
	return _mm512_cvtepi32_epi16(r);
}

/* The update of n elements, vector by vector; the kernel below runs it once, or per sub-block. */
static int64_t T_AVX512 span_avx512(float *p32, float *m, float *v, const float *g, void *p16,
				    int bf16, int64_t n, const sw_adamw_args *a,
				    const sw_adamw_span_opts *o)
{
	const __m512 gs = _mm512_set1_ps(a->grad_scale);
	const __m512 lrwd = _mm512_set1_ps(a->lr * a->weight_decay);
	const __m512 omb1 = _mm512_set1_ps(a->one_minus_beta1);
	const __m512 omb2 = _mm512_set1_ps(a->one_minus_beta2);
	const __m512 beta2 = _mm512_set1_ps(a->beta2), bc2 = _mm512_set1_ps(a->bc2_sqrt);
	const __m512 eps = _mm512_set1_ps(a->eps), ss = _mm512_set1_ps(a->step_size);
	const __m512 zero = _mm512_setzero_ps();
	const int nt = o->nt, nts = o->nts;
	const int64_t pf = o->pf;
	/* where the state goes: in place, or out of place (o->out) */
	float *const dp = o->out[0] ? o->out[0] : p32, *const dm = o->out[1] ? o->out[1] : m;
	float *const dv = o->out[2] ? o->out[2] : v;
	int64_t bad = 0;
	for (int64_t i = 0; i < n; i += 16) {
		if (pf)
			PREFETCH4(i, pf);
		/* full vectors use plain loads (masked loads of every vector are slower out of
		 * cache); the last n % 16 elements use masked loads and stores */
		const int full = n - i >= 16;
		const __mmask16 k = full ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
		const __m512 g0 = full ? _mm512_loadu_ps(g + i) : _mm512_maskz_loadu_ps(k, g + i);
		const __m512 p0 = full ? _mm512_loadu_ps(p32 + i) : _mm512_maskz_loadu_ps(k, p32 + i);
		const __m512 m0 = full ? _mm512_loadu_ps(m + i) : _mm512_maskz_loadu_ps(k, m + i);
		const __m512 v0 = full ? _mm512_loadu_ps(v + i) : _mm512_maskz_loadu_ps(k, v + i);
		const __m512 gi = _mm512_mul_ps(g0, gs);
		/* finite: gi - gi is +0 exactly; NaN for NaN and +-Inf */
		const __mmask16 ok = _mm512_cmp_ps_mask(_mm512_sub_ps(gi, gi), zero, _CMP_EQ_OQ) & k;
		__m512 p = _mm512_sub_ps(p0, _mm512_mul_ps(lrwd, p0));
		__m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(omb1, _mm512_sub_ps(gi, m0)));
		__m512 vi = _mm512_add_ps(_mm512_mul_ps(beta2, v0),
					  _mm512_mul_ps(omb2, _mm512_mul_ps(gi, gi)));
		__m512 d = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
		p = _mm512_sub_ps(p, _mm512_mul_ps(ss, _mm512_div_ps(mi, d)));
		if (__builtin_expect(ok != k, 0)) {
			/* a non-finite gradient: keep those elements' state as it was */
			p = _mm512_mask_blend_ps(ok, p0, p);
			mi = _mm512_mask_blend_ps(ok, m0, mi);
			vi = _mm512_mask_blend_ps(ok, v0, vi);
			bad += __builtin_popcount((unsigned)(k & ~ok));
		}
		if (full && nts) {
			_mm512_stream_ps(dp + i, p);
			_mm512_stream_ps(dm + i, mi);
			_mm512_stream_ps(dv + i, vi);
		} else if (full) {
			_mm512_storeu_ps(dp + i, p);
			_mm512_storeu_ps(dm + i, mi);
			_mm512_storeu_ps(dv + i, vi);
		}
		if (full) {
			if (p16 && bf16 && nt)
				_mm256_stream_si256((__m256i *)((sw_bf16 *)p16 + i), bf16_round16(p));
			else if (p16 && bf16)
				_mm256_storeu_si256((__m256i *)((sw_bf16 *)p16 + i), bf16_round16(p));
			else if (p16 && nt)
				_mm512_stream_ps((float *)p16 + i, p);
			else if (p16)
				_mm512_storeu_ps((float *)p16 + i, p);
		} else {
			_mm512_mask_storeu_ps(dp + i, k, p);
			_mm512_mask_storeu_ps(dm + i, k, mi);
			_mm512_mask_storeu_ps(dv + i, k, vi);
			if (p16 && bf16)
				_mm256_mask_storeu_epi16((sw_bf16 *)p16 + i, k, bf16_round16(p));
			else if (p16)
				_mm512_mask_storeu_ps((float *)p16 + i, k, p);
		}
	}
	return bad;
}

int64_t T_AVX512 sw_adamw_kernel_avx512(float *p32, float *m, float *v, const float *g,
					 void *p16, int bf16, int64_t n, const sw_adamw_args *a)
{
	return run_kernel(span_avx512, 64, 1, p32, m, v, g, p16, bf16, n, a, NULL);
}

int64_t T_AVX512 sw_adamw_kernel_avx512_to(float *const out[3], const float *p32, const float *m,
					    const float *v, const float *g, void *p16, int bf16,
					    int64_t n, const sw_adamw_args *a)
{
	return run_kernel(span_avx512, 64, 1, (float *)p32, (float *)m, (float *)v, g, p16, bf16, n, a, out);
}

/* acc[l] += g[i]^2 for i % 8 == l, in order of i: one 8-lane double accumulator. */
void T_AVX512 sw_sumsq_kernel_avx512(const float *g, int64_t n, double acc[8])
{
	__m512d s = _mm512_loadu_pd(acc);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m512d x = _mm512_cvtps_pd(_mm256_loadu_ps(g + i));
		s = _mm512_add_pd(s, _mm512_mul_pd(x, x));
	}
	_mm512_storeu_pd(acc, s);
	for (; i < n; i++)
		acc[i & 7] += (double)g[i] * (double)g[i];
}

/* ---------------- AVX2 ---------------- */

static inline T_AVX2 __m128i bf16_round8(__m256 p)
{
	const __m256i u = _mm256_castps_si256(p);
	const __m256i hi = _mm256_srli_epi32(u, 16);
	const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
	const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
	__m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
	r = _mm256_srli_epi32(r, 16);
	r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
	/* 8 x u32 (each <= 0xffff) -> 8 x u16: pack within 128-bit lanes, then gather qwords 0, 2 */
	r = _mm256_packus_epi32(r, r);
	r = _mm256_permute4x64_epi64(r, 0x08);
	return _mm256_castsi256_si128(r);
}

static int64_t T_AVX2 span_avx2(float *p32, float *m, float *v, const float *g, void *p16,
				int bf16, int64_t n, const sw_adamw_args *a,
				const sw_adamw_span_opts *o)
{
	const __m256 gs = _mm256_set1_ps(a->grad_scale);
	const __m256 lrwd = _mm256_set1_ps(a->lr * a->weight_decay);
	const __m256 omb1 = _mm256_set1_ps(a->one_minus_beta1);
	const __m256 omb2 = _mm256_set1_ps(a->one_minus_beta2);
	const __m256 beta2 = _mm256_set1_ps(a->beta2), bc2 = _mm256_set1_ps(a->bc2_sqrt);
	const __m256 eps = _mm256_set1_ps(a->eps), ss = _mm256_set1_ps(a->step_size);
	const __m256 zero = _mm256_setzero_ps();
	const int nt = o->nt, nts = o->nts;   /* nts: only out of place (aligned outputs) */
	const int64_t pf = o->pf;
	float *const dp = o->out[0] ? o->out[0] : p32, *const dm = o->out[1] ? o->out[1] : m;
	float *const dv = o->out[2] ? o->out[2] : v;
	int64_t bad = 0, i = 0;
	for (; i + 8 <= n; i += 8) {
		if (pf && (i & 15) == 0)
			PREFETCH4(i, pf);
		const __m256 p0 = _mm256_loadu_ps(p32 + i);
		const __m256 m0 = _mm256_loadu_ps(m + i);
		const __m256 v0 = _mm256_loadu_ps(v + i);
		const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
		const __m256 ok = _mm256_cmp_ps(_mm256_sub_ps(gi, gi), zero, _CMP_EQ_OQ);
		__m256 p = _mm256_sub_ps(p0, _mm256_mul_ps(lrwd, p0));
		__m256 mi = _mm256_add_ps(m0, _mm256_mul_ps(omb1, _mm256_sub_ps(gi, m0)));
		__m256 vi = _mm256_add_ps(_mm256_mul_ps(beta2, v0),
					  _mm256_mul_ps(omb2, _mm256_mul_ps(gi, gi)));
		__m256 d = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
		p = _mm256_sub_ps(p, _mm256_mul_ps(ss, _mm256_div_ps(mi, d)));
		const int okbits = _mm256_movemask_ps(ok);
		if (__builtin_expect(okbits != 0xff, 0)) {
			p = _mm256_blendv_ps(p0, p, ok);
			mi = _mm256_blendv_ps(m0, mi, ok);
			vi = _mm256_blendv_ps(v0, vi, ok);
			bad += 8 - __builtin_popcount((unsigned)okbits);
		}
		if (nts) {
			_mm256_stream_ps(dp + i, p);
			_mm256_stream_ps(dm + i, mi);
			_mm256_stream_ps(dv + i, vi);
		} else {
			_mm256_storeu_ps(dp + i, p);
			_mm256_storeu_ps(dm + i, mi);
			_mm256_storeu_ps(dv + i, vi);
		}
		if (p16 && bf16 && nt)
			_mm_stream_si128((__m128i *)((sw_bf16 *)p16 + i), bf16_round8(p));
		else if (p16 && bf16)
			_mm_storeu_si128((__m128i *)((sw_bf16 *)p16 + i), bf16_round8(p));
		else if (p16 && nt)
			_mm256_stream_ps((float *)p16 + i, p);
		else if (p16)
			_mm256_storeu_ps((float *)p16 + i, p);
	}
	if (i < n) {
		/* the last n % 8 elements: the scalar reference, which is the same arithmetic */
		void *t16 = p16 ? (char *)p16 + i * (bf16 ? 2 : 4) : NULL;
		float *const out[3] = { dp + i, dm + i, dv + i };
		bad += sw_adamw_kernel_scalar_to(out, p32 + i, m + i, v + i, g + i, t16, bf16, n - i, a);
	}
	return bad;
}

/* Sub-blocks are multiples of 16 elements, so only the last one reaches the scalar tail. */
int64_t T_AVX2 sw_adamw_kernel_avx2(float *p32, float *m, float *v, const float *g, void *p16,
				     int bf16, int64_t n, const sw_adamw_args *a)
{
	return run_kernel(span_avx2, 32, 0, p32, m, v, g, p16, bf16, n, a, NULL);
}

int64_t T_AVX2 sw_adamw_kernel_avx2_to(float *const out[3], const float *p32, const float *m,
					const float *v, const float *g, void *p16, int bf16, int64_t n,
					const sw_adamw_args *a)
{
	return run_kernel(span_avx2, 32, 0, (float *)p32, (float *)m, (float *)v, g, p16, bf16, n, a, out);
}

/* Lanes 0-3 in lo, 4-7 in hi: the same order as the scalar kernel. */
void T_AVX2 sw_sumsq_kernel_avx2(const float *g, int64_t n, double acc[8])
{
	__m256d lo = _mm256_loadu_pd(acc), hi = _mm256_loadu_pd(acc + 4);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i);
		__m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
		__m256d xh = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
		lo = _mm256_add_pd(lo, _mm256_mul_pd(xl, xl));
		hi = _mm256_add_pd(hi, _mm256_mul_pd(xh, xh));
	}
	_mm256_storeu_pd(acc, lo);
	_mm256_storeu_pd(acc + 4, hi);
	for (; i < n; i++)
		acc[i & 7] += (double)g[i] * (double)g[i];
}
#else
/* No sub-block machinery off x86: the span in one piece. */
int64_t sw_adamw_run_blocked(sw_adamw_span_fn fn, float *p32, float *m, float *v, const float *g,
			     void *p16, int bf16, int64_t n, const sw_adamw_args *a,
			     const sw_adamw_span_opts *o, const sw_adamw_tuning *t)
{
	(void)t;
	return fn(p32, m, v, g, p16, bf16, n, a, o);
}
#endif
