/* The CPU backend: the reference implementation of core/backend.h.
 *
 * Memory. The "device" is one anonymous mapping of the budget (MAP_NORESERVE: pages are not
 * touched until used), sub-allocated with core/suballoc.h. Scratch that an op needs while it
 * runs (fp32 copies of bf16 blocks, a GEMM tile, the scores of attn_rows query rows) lives
 * outside the arena, in per-worker host buffers bounded by the block sizes, O(T*hd) and
 * O(attn_rows*T), never O(T*T) or O(N*V); it plays the role of a GPU kernel's registers and
 * shared memory. head_loss's backward also keeps an fp32 (N, C) dinp accumulator and the
 * (N, chunk) dlogits of one vocabulary chunk (the chunk shrinks so that this stays within
 * tune.head_dlog floats, 32 MiB by default).
 *
 * Ops and their arithmetic:
 *  - GEMMs (matmul, head, attention blocks): cblas_sgemm, fp32 accumulate.
 *  - rmsnorm: rstd = 1/sqrtf(sum(x*x)/C + eps), out = w * (x * rstd) (HF's order).
 *  - rope: HF rotate_half; cos/sin of the fp32 angle pos*inv_freq evaluated in double and
 *    rounded to float (see rope_table).
 *  - attention: per block of query rows S = QK^T * scale, masked softmax, O = PV / sum;
 *    backward recomputes P from lse.
 *  - head_loss: pass 1 online logsumexp over vocabulary chunks; pass 2 per chunk dlogits,
 *    dinp += dlogits @ w[chunk], dw[chunk] += dlogits^T @ inp. Four (N, V, C) products.
 *  - swiglu: silu(g) = g / (1 + expf(-g)).
 *  - sumsq: double, in element order per chunk, chunks summed in order.
 *  - adamw: sw_adamw_update (optim/adamw.h) on fixed chunks.
 *
 * Streams and events. Every op and copy runs to completion on the calling thread (with the
 * pool) when it is enqueued, so a stream is always idle, an event is complete once recorded,
 * and event_ms is the difference of the host timestamps taken at record time. Callers written
 * for asynchronous backends work unchanged.
 *
 * Data types. In BF16 mode every 'act' buffer holds bf16; ops read it into fp32, compute in
 * fp32 and round each output to bf16 (nearest even) once, where it is stored. Nothing else is
 * rounded: intermediate values (attention probabilities, the fp32 GEMM accumulators, the
 * logits of the head) stay fp32. Weight gradients, rstd, lse, losses are fp32.
 *
 * Determinism. Work is cut into tasks whose boundaries depend only on the shapes and the block
 * sizes (cpu/backend_cpu.h), never on the thread count; each output element is written by
 * exactly one task with a fixed summation order, and reductions across tasks are combined in
 * task order. GEMMs call OpenBLAS's cblas_sgemm on one thread per call (set once with
 * openblas_set_num_threads(1); process-wide) from inside our own tasks, so OpenBLAS never
 * splits a product between threads and its result depends only on the tile. The same inputs
 * give the same bits with any --threads.
 *
 * Contraction: the Makefile builds with -ffp-contract=off, so a*b+c is two roundings. */
/* The hot loops (bf16 <-> fp32 conversion, row updates) must vectorize; -O3 allows it without
 * changing any result (no -ffast-math: no reassociation, contraction stays off). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "cpu/backend_cpu.h"
#include "core/backend.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/suballoc.h"
#include "optim/adamw.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Under AddressSanitizer the arena is poisoned except for live allocations, so an op that
 * writes past a device buffer is caught like a heap overflow. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (size_t)(n))
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (size_t)(n))
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct cpu_backend {
	sw_backend be;
	sw_pool *pool;
	int nthreads;
	int bf;                      /* act is bf16 */
	uint8_t *arena;              /* budget bytes, or NULL when the budget is 0 */
	sw_suballoc sa;
	sw_cpu_tune tune;
	float **wscr;                /* per-worker scratch, wscr_n floats each */
	int64_t wscr_n;
	void *shared;                /* scratch shared by the tasks of one op */
	uint64_t shared_n;
	float *rope_cs;              /* (T, hd/2, 2) cos, sin for the cached inv_freq */
	float *rope_freq;            /* (hd/2) the inv_freq the table was made for */
	int rope_T, rope_hd;
	/* after sw_cpu_backend_reserve_scratch: the scratch above lives in one block of the
	 * arena, sized for the run's shapes; an op asking for more is an internal error */
	void *fixed;
	int own_fixed;               /* fixed is malloc'ed (no arena), not in the arena */
	int64_t rope_cap;            /* floats of rope_cs (hd/2 more follow for rope_freq) */
} cpu_backend;

struct sw_stream { int unused; };
struct sw_event { int recorded; double t; };

static cpu_backend *cpu_of(sw_backend *be) { return be->impl; }

/* ---------------------------------------------------------------- scratch ---- */

static float *wscr(cpu_backend *cb, int worker) { return cb->wscr[worker]; }

/* What each op asks of a worker's scratch, in floats (sw_cpu_scratch_bytes takes the maximum
 * over a model's ops; the ops below reserve the same). */
static int64_t rms_fwd_floats(int64_t C) { return 3 * C; }
static int64_t rms_bwd_floats(const sw_cpu_tune *t, int64_t C) { return 6 * C + 3 * (int64_t)t->col_block; }

static int64_t attn_fwd_floats(const sw_cpu_tune *t, int64_t T, int64_t hd)
{
	int64_t R = t->attn_rows;
	return 2 * T * hd + R * (2 * hd + T + 2);
}

static int64_t attn_bwd_floats(const sw_cpu_tune *t, int64_t T, int64_t hd)
{
	int64_t R = t->attn_rows;
	return 2 * T * hd + R * (4 * hd + 2 * T) + 7 * R * hd + 2 * R * R;
}

/* Makes every worker's scratch at least n floats (contents not kept). Out of host memory here
 * is not recoverable inside an op: abort with the size. */
static void wscr_reserve(cpu_backend *cb, int64_t n)
{
	if (n <= cb->wscr_n)
		return;
	if (cb->fixed)
		sw_die("cpu backend: internal error: an op needs %lld floats of scratch per worker, "
		       "the reserve has %lld (sw_cpu_scratch_bytes)", (long long)n, (long long)cb->wscr_n);
	n = n + n / 4;
	for (int i = 0; i < cb->nthreads; i++) {
		free(cb->wscr[i]);
		if (posix_memalign((void **)&cb->wscr[i], 64, (size_t)n * sizeof(float)))
			sw_die("cpu backend: cannot allocate %lld bytes of op scratch",
			       (long long)n * 4);
	}
	cb->wscr_n = n;
}

static void *shared_reserve(cpu_backend *cb, uint64_t bytes)
{
	if (bytes > cb->shared_n) {
		if (cb->fixed)
			sw_die("cpu backend: internal error: an op needs %llu bytes of shared scratch, "
			       "the reserve has %llu (sw_cpu_scratch_bytes)", (unsigned long long)bytes,
			       (unsigned long long)cb->shared_n);
		free(cb->shared);
		if (posix_memalign(&cb->shared, 64, (size_t)bytes))
			sw_die("cpu backend: cannot allocate %llu bytes of op scratch",
			       (unsigned long long)bytes);
		cb->shared_n = bytes;
	}
	return cb->shared;
}

/* ---------------------------------------------------------------- act rows ---- */

static void load_row(float *dst, const void *src, int64_t off, int64_t n, int bf)
{
	if (bf) {
		const sw_bf16 *s = (const sw_bf16 *)src + off;
		for (int64_t i = 0; i < n; i++)
			dst[i] = sw_bf16_to_f32(s[i]);
	} else {
		memcpy(dst, (const float *)src + off, (size_t)n * sizeof(float));
	}
}

static void store_row(void *dst, int64_t off, const float *src, int64_t n, int bf)
{
	if (bf) {
		sw_bf16 *d = (sw_bf16 *)dst + off;
		for (int64_t i = 0; i < n; i++)
			d[i] = sw_f32_to_bf16(src[i]);
	} else {
		memmove((float *)dst + off, src, (size_t)n * sizeof(float));
	}
}

/* fp32 view of n act elements: the buffer itself in F32 mode, else converted into tmp. */
static const float *view_row(const void *src, int64_t off, int64_t n, int bf, float *tmp)
{
	if (!bf)
		return (const float *)src + off;
	load_row(tmp, src, off, n, 1);
	return tmp;
}

/* Dot product with eight partial sums combined in a fixed tree: the same bits every time. */
static float dotf(const float *a, const float *b, int64_t n)
{
	float s[8] = { 0 };
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			s[l] += a[i + l] * b[i + l];
	float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
	for (; i < n; i++)
		r += a[i] * b[i];
	return r;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---------------------------------------------------------------- GEMM ---- */

/* A logical matrix view: element (r, c) is at p[c*ld + r] when trans, else p[r*ld + c]. */
typedef struct mat {
	const void *p;
	int bf, trans;
	int64_t ld;
} mat;

static int64_t mat_off(const mat *a, int64_t r, int64_t c)
{
	return a->trans ? c * a->ld + r : r * a->ld + c;
}

/* Converts the logical block [r0, r0+nr) x [c0, c0+nc) of a into dst (fp32) in a's storage
 * orientation; returns dst's leading dimension. */
static int conv_block(float *dst, const mat *a, int64_t r0, int nr, int64_t c0, int nc)
{
	if (!a->trans) {
		for (int r = 0; r < nr; r++)
			load_row(dst + (int64_t)r * nc, a->p, mat_off(a, r0 + r, c0), nc, a->bf);
		return nc;
	}
	for (int c = 0; c < nc; c++)
		load_row(dst + (int64_t)c * nr, a->p, mat_off(a, r0, c0 + c), nr, a->bf);
	return nr;
}

/* The largest tile and conversion block (rows m, columns n, depth k) of the GEMMs of one op:
 * the tune's sizes, cut to the op's dimensions. Scratch is laid out for these, so that small
 * shapes take small scratch (sw_cpu_scratch_bytes); the partition itself, and so the result,
 * does not depend on them. */
typedef struct blk { int64_t m, n, k; } blk;

static blk blk_of(const sw_cpu_tune *t, int64_t M, int64_t N, int64_t K)
{
	return (blk){ min64(t->gemm_m, M), min64(t->gemm_n, N), min64(t->gemm_k, K) };
}

/* tile_mm's conversion blocks: A's (m x k), then B's (k x n) */
static int64_t conv_floats(blk b) { return b.m * b.k + b.k * b.n; }

/* A worker's scratch for gemm_run: conversion blocks, an output tile, a bias row and a row of
 * the old C (gemm_task). */
static int64_t gemm_floats(blk b) { return conv_floats(b) + b.m * b.n + 2 * b.n; }

/* C (m,n) fp32, ldc = beta*C + A[i0:i0+m, 0:K] @ B[0:K, j0:j0+n], on the calling thread.
 * fp32 operands go to cblas_sgemm as they are; a bf16 operand is converted block by block
 * (gemm_m x gemm_k, gemm_k x gemm_n) into conv, and K is accumulated block by block in C. */
static void tile_mm(const sw_cpu_tune *t, blk bk, float *conv, const mat *A, const mat *B,
		    int64_t i0, int m, int64_t j0, int n, int K, float *C, int64_t ldc, float beta)
{
	if (m <= 0 || n <= 0)
		return;
	if (K <= 0) {
		for (int r = 0; r < m; r++)
			for (int c = 0; c < n; c++)
				C[r * ldc + c] = beta == 0.0f ? 0.0f : beta * C[r * ldc + c];
		return;
	}
	enum CBLAS_TRANSPOSE ta = A->trans ? CblasTrans : CblasNoTrans;
	enum CBLAS_TRANSPOSE tb = B->trans ? CblasTrans : CblasNoTrans;
	if (!A->bf && !B->bf) {
		cblas_sgemm(CblasRowMajor, ta, tb, m, n, K, 1.0f,
			    (const float *)A->p + mat_off(A, i0, 0), (int)A->ld,
			    (const float *)B->p + mat_off(B, 0, j0), (int)B->ld, beta, C, (int)ldc);
		return;
	}
	float *ca = conv, *cbuf = conv + bk.m * bk.k;
	for (int k0 = 0; k0 < K; k0 += t->gemm_k) {
		int kb = (int)min64(t->gemm_k, K - k0);
		float bk = k0 ? 1.0f : beta;
		for (int ii = 0; ii < m; ii += t->gemm_m) {
			int mb = (int)min64(t->gemm_m, m - ii);
			const float *ap;
			int lda;
			if (A->bf) {
				lda = conv_block(ca, A, i0 + ii, mb, k0, kb);
				ap = ca;
			} else {
				ap = (const float *)A->p + mat_off(A, i0 + ii, k0);
				lda = (int)A->ld;
			}
			for (int jj = 0; jj < n; jj += t->gemm_n) {
				int nb = (int)min64(t->gemm_n, n - jj);
				const float *bp;
				int ldb;
				if (B->bf) {
					ldb = conv_block(cbuf, B, k0, kb, j0 + jj, nb);
					bp = cbuf;
				} else {
					bp = (const float *)B->p + mat_off(B, k0, j0 + jj);
					ldb = (int)B->ld;
				}
				cblas_sgemm(CblasRowMajor, ta, tb, mb, nb, kb, 1.0f, ap, lda, bp, ldb,
					    bk, C + ii * ldc + jj, (int)ldc);
			}
		}
	}
}

typedef struct gemm_ctx {
	cpu_backend *cb;
	mat A, B;
	int M, N, K;
	void *C;
	int c_act;           /* C holds act (rounded once) rather than fp32 */
	int64_t ldc;
	int accum;           /* C = C + A@B rather than A@B */
	const void *bias;    /* act (N), added to A@B; or NULL */
	int64_t tiles_n;
	blk bk;              /* the scratch layout */
} gemm_ctx;

static void gemm_task(void *vctx, int64_t task, int worker)
{
	gemm_ctx *g = vctx;
	const sw_cpu_tune *t = &g->cb->tune;
	int64_t i0 = task / g->tiles_n * t->gemm_m, j0 = task % g->tiles_n * t->gemm_n;
	int m = (int)min64(t->gemm_m, g->M - i0), n = (int)min64(t->gemm_n, g->N - j0);
	float *conv = wscr(g->cb, worker);
	if (!g->c_act) {
			tile_mm(t, g->bk, conv, &g->A, &g->B, i0, m, j0, n, g->K,
			(float *)g->C + i0 * g->ldc + j0, g->ldc, g->accum ? 1.0f : 0.0f);
		return;
	}
	float *tile = conv + conv_floats(g->bk), *tmp = tile + g->bk.m * g->bk.n;
	tile_mm(t, g->bk, conv, &g->A, &g->B, i0, m, j0, n, g->K, tile, n, 0.0f);
	int bf = g->cb->bf;
	const float *bias = g->bias ? view_row(g->bias, j0, n, bf, tmp) : NULL;
	float *old = tmp + t->gemm_n;
	for (int r = 0; r < m; r++) {
		float *row = tile + (int64_t)r * n;
		if (bias)
			for (int c = 0; c < n; c++)
				row[c] = row[c] + bias[c];
		if (g->accum) {
			load_row(old, g->C, (i0 + r) * g->ldc + j0, n, bf);
			for (int c = 0; c < n; c++)
				row[c] = old[c] + row[c];
		}
		store_row(g->C, (i0 + r) * g->ldc + j0, row, n, bf);
	}
}

/* C (M,N) = (accum ? C : 0) + A @ B (+ bias), tiles in parallel. */
static void gemm_run(cpu_backend *cb, mat A, mat B, int M, int N, int K, void *C, int c_act,
		     int64_t ldc, int accum, const void *bias)
{
	if (M <= 0 || N <= 0)
		return;
	const sw_cpu_tune *t = &cb->tune;
	blk bk = blk_of(t, M, N, K);
	wscr_reserve(cb, gemm_floats(bk));
	gemm_ctx g = { cb, A, B, M, N, K, C, c_act, ldc, accum, bias, ceil_div(N, t->gemm_n), bk };
	sw_pool_run(cb->pool, gemm_task, &g, ceil_div(M, t->gemm_m) * g.tiles_n);
}

/* ---------------------------------------------------------------- lifetime, memory ---- */

static void cpu_destroy(sw_backend *be)
{
	cpu_backend *cb = cpu_of(be);
	sw_pool_destroy(cb->pool);
	if (cb->arena) {
		ARENA_UNPOISON(cb->arena, be->budget);
		munmap(cb->arena, (size_t)be->budget);
	}
	sw_suballoc_free_all(&cb->sa);
	if (!cb->fixed) {
		for (int i = 0; i < cb->nthreads; i++)
			free(cb->wscr[i]);
		free(cb->shared);
		free(cb->rope_cs);
		free(cb->rope_freq);
	}
	if (cb->own_fixed)
		free(cb->fixed);
	free(cb->wscr);
	free(cb);
}

static int cpu_dev_alloc(sw_backend *be, uint64_t bytes, void **out)
{
	cpu_backend *cb = cpu_of(be);
	uint64_t off;
	*out = NULL;
	if (!cb->arena || sw_suballoc_alloc(&cb->sa, bytes, &off))
		return -ENOMEM;
	be->used = cb->sa.used;
	be->peak = cb->sa.peak;
	*out = cb->arena + off;
	ARENA_UNPOISON(*out, bytes);
	return 0;
}

static void cpu_dev_free(sw_backend *be, void *p)
{
	cpu_backend *cb = cpu_of(be);
	if (!p)
		return;
	SW_ASSERT(cb->arena && (uint8_t *)p >= cb->arena && (uint8_t *)p < cb->arena + be->budget);
	uint64_t off = (uint64_t)((uint8_t *)p - cb->arena);
#if defined(__SANITIZE_ADDRESS__)
	for (int i = 0; i < cb->sa.n; i++)
		if (cb->sa.b[i].off == off && cb->sa.b[i].used)
			ARENA_POISON(p, cb->sa.b[i].size);
#endif
	int rc = sw_suballoc_release(&cb->sa, off);
	SW_ASSERT(rc == 0);
	be->used = cb->sa.used;
}

static int cpu_host_alloc(sw_backend *be, uint64_t bytes, void **out)
{
	(void)be;
	*out = NULL;
	if (posix_memalign(out, 4096, (size_t)(bytes ? bytes : 1)))
		return -ENOMEM;
	return 0;
}

static void cpu_host_free(sw_backend *be, void *p)
{
	(void)be;
	free(p);
}

/* Host memory is already what the "device" copies from. */
static int cpu_host_register(sw_backend *be, void *p, uint64_t bytes)
{
	(void)be; (void)p; (void)bytes;
	return 0;
}

static void cpu_host_unregister(sw_backend *be, void *p) { (void)be; (void)p; }

/* ---------------------------------------------------------------- streams, events ---- */

static int cpu_stream_create(sw_backend *be, sw_stream **out)
{
	(void)be;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

static void cpu_stream_destroy(sw_backend *be, sw_stream *s) { (void)be; free(s); }
/* Work ran when it was enqueued: nothing is ever pending. */
static void cpu_stream_sync(sw_backend *be, sw_stream *s) { (void)be; (void)s; }

static int cpu_event_create(sw_backend *be, sw_event **out)
{
	(void)be;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

static void cpu_event_destroy(sw_backend *be, sw_event *e) { (void)be; free(e); }

static void cpu_event_record(sw_backend *be, sw_event *e, sw_stream *s)
{
	(void)be; (void)s;
	e->recorded = 1;
	e->t = sw_now();
}

static void cpu_stream_wait(sw_backend *be, sw_stream *s, sw_event *e)
{
	(void)be; (void)s; (void)e;
}
static void cpu_event_sync(sw_backend *be, sw_event *e) { (void)be; (void)e; }
/* Like cudaEventQuery, an event never recorded counts as done. */
static int cpu_event_done(sw_backend *be, sw_event *e) { (void)be; (void)e; return 1; }

static float cpu_event_ms(sw_backend *be, sw_event *start, sw_event *end)
{
	(void)be;
	SW_ASSERT(start->recorded && end->recorded);
	return (float)((end->t - start->t) * 1e3);
}

static void cpu_copy(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t bytes)
{
	(void)be; (void)s;
	if (bytes)
		memmove(dst, src, (size_t)bytes);
}

static void cpu_memset0(sw_backend *be, sw_stream *s, void *dst, uint64_t bytes)
{
	(void)be; (void)s;
	if (bytes)
		memset(dst, 0, (size_t)bytes);
}

/* ---------------------------------------------------------------- row-parallel helpers ---- */

/* Rows per task for row-wise ops on rows of C elements. */
static int64_t rows_per_task(const cpu_backend *cb, int64_t C)
{
	int64_t r = cb->tune.elem_chunk / (C > 0 ? C : 1);
	return r > 0 ? r : 1;
}

/* ---------------------------------------------------------------- embedding ---- */

typedef struct emb_ctx {
	cpu_backend *cb;
	void *out;
	float *dwte;
	const void *src;
	const int32_t *tokens;
	int N, C, V;
	int64_t rows;
} emb_ctx;

static void emb_fwd_task(void *vctx, int64_t task, int worker)
{
	emb_ctx *e = vctx;
	(void)worker;
	size_t es = e->cb->bf ? 2 : 4;
	int64_t n1 = min64((task + 1) * e->rows, e->N);
	for (int64_t n = task * e->rows; n < n1; n++) {
		int32_t tok = e->tokens[n];
		SW_ASSERT(tok >= 0);
		memcpy((uint8_t *)e->out + n * e->C * es, (const uint8_t *)e->src + (int64_t)tok * e->C * es,
		       (size_t)e->C * es);
	}
}

static void cpu_embedding_fwd(sw_backend *be, sw_stream *s, void *out, const int32_t *tokens,
			      const void *wte, int N, int C)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	emb_ctx e = { .cb = cb, .out = out, .src = wte, .tokens = tokens, .N = N, .C = C,
		      .rows = rows_per_task(cb, C) };
	sw_pool_run(cb->pool, emb_fwd_task, &e, ceil_div(N, e.rows));
}

/* One task per column block; rows are added in token order. */
static void emb_bwd_task(void *vctx, int64_t task, int worker)
{
	emb_ctx *e = vctx;
	int cbk = e->cb->tune.col_block;
	int64_t c0 = task * cbk;
	int nc = (int)min64(cbk, e->C - c0);
	float *tmp = wscr(e->cb, worker);
	for (int64_t n = 0; n < e->N; n++) {
		int32_t tok = e->tokens[n];
		SW_ASSERT(tok >= 0 && tok < e->V);
		const float *d = view_row(e->src, n * e->C + c0, nc, e->cb->bf, tmp);
		float *w = e->dwte + (int64_t)tok * e->C + c0;
		for (int c = 0; c < nc; c++)
			w[c] += d[c];
	}
}

static void cpu_embedding_bwd(sw_backend *be, sw_stream *s, float *dwte, const void *dout,
			      const int32_t *tokens, int N, int C, int V)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	wscr_reserve(cb, cb->tune.col_block);
	emb_ctx e = { .cb = cb, .dwte = dwte, .src = dout, .tokens = tokens, .N = N, .C = C, .V = V };
	sw_pool_run(cb->pool, emb_bwd_task, &e, ceil_div(C, cb->tune.col_block));
}

/* ---------------------------------------------------------------- rmsnorm ---- */

typedef struct rms_ctx {
	cpu_backend *cb;
	void *out;            /* fwd: out; bwd: dinp */
	float *rstd;          /* fwd: written; bwd: read */
	float *dw;
	const void *inp, *w, *dout;
	int N, C;
	float eps;
	int64_t rows;
	int set;              /* bwd: dw = instead of += (SW_BWD_DW_SET) */
} rms_ctx;

static void rms_fwd_task(void *vctx, int64_t task, int worker)
{
	rms_ctx *r = vctx;
	int bf = r->cb->bf, C = r->C;
	float *tx = wscr(r->cb, worker), *tw = tx + C, *ty = tw + C;
	const float *w = view_row(r->w, 0, C, bf, tw);
	int64_t n1 = min64((task + 1) * r->rows, r->N);
	for (int64_t n = task * r->rows; n < n1; n++) {
		const float *x = view_row(r->inp, n * C, C, bf, tx);
		float ms = dotf(x, x, C) / (float)C;
		float rs = 1.0f / sqrtf(ms + r->eps);
		for (int c = 0; c < C; c++)
			ty[c] = w[c] * (x[c] * rs);
		store_row(r->out, n * C, ty, C, bf);
		r->rstd[n] = rs;
	}
}

static void cpu_rmsnorm_fwd(sw_backend *be, sw_stream *s, void *out, float *rstd, const void *inp,
			    const void *w, int N, int C, float eps)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	wscr_reserve(cb, rms_fwd_floats(C));
	rms_ctx r = { .cb = cb, .out = out, .rstd = rstd, .inp = inp, .w = w, .N = N, .C = C,
		      .eps = eps, .rows = rows_per_task(cb, C) };
	sw_pool_run(cb->pool, rms_fwd_task, &r, ceil_div(N, r.rows));
}

/* dinp += rstd * (g - xhat * mean(g . xhat)), g = dout * w, xhat = inp * rstd. */
static void rms_bwd_dinp_task(void *vctx, int64_t task, int worker)
{
	rms_ctx *r = vctx;
	int bf = r->cb->bf, C = r->C;
	float *tx = wscr(r->cb, worker), *tw = tx + C, *td = tw + C, *tg = td + C, *th = tg + C;
	float *to = th + C;
	const float *w = view_row(r->w, 0, C, bf, tw);
	int64_t n1 = min64((task + 1) * r->rows, r->N);
	for (int64_t n = task * r->rows; n < n1; n++) {
		const float *x = view_row(r->inp, n * C, C, bf, tx);
		const float *dy = view_row(r->dout, n * C, C, bf, td);
		float rs = r->rstd[n];
		for (int c = 0; c < C; c++) {
			tg[c] = dy[c] * w[c];
			th[c] = x[c] * rs;
		}
		float m = dotf(tg, th, C) / (float)C;
		load_row(to, r->out, n * C, C, bf);
		for (int c = 0; c < C; c++)
			to[c] = to[c] + rs * (tg[c] - th[c] * m);
		store_row(r->out, n * C, to, C, bf);
	}
}

/* dw[c] += (or = with set) sum over rows, in row order, of dout * inp * rstd; one task per
 * column block. */
static void rms_bwd_dw_task(void *vctx, int64_t task, int worker)
{
	rms_ctx *r = vctx;
	int bf = r->cb->bf, C = r->C, cbk = r->cb->tune.col_block;
	int64_t c0 = task * cbk;
	int nc = (int)min64(cbk, C - c0);
	float *tx = wscr(r->cb, worker), *td = tx + cbk, *acc = td + cbk;
	for (int c = 0; c < nc; c++)
		acc[c] = 0.0f;
	for (int64_t n = 0; n < r->N; n++) {
		const float *x = view_row(r->inp, n * C + c0, nc, bf, tx);
		const float *dy = view_row(r->dout, n * C + c0, nc, bf, td);
		float rs = r->rstd[n];
		for (int c = 0; c < nc; c++)
			acc[c] += dy[c] * (x[c] * rs);
	}
	for (int c = 0; c < nc; c++)
		r->dw[c0 + c] = r->set ? acc[c] : r->dw[c0 + c] + acc[c];
}

static void cpu_rmsnorm_bwd(sw_backend *be, sw_stream *s, void *dinp, float *dw, const void *dout,
			    const void *inp, const void *w, const float *rstd, int N, int C,
			    int flags)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	wscr_reserve(cb, rms_bwd_floats(&cb->tune, C));
	rms_ctx r = { .cb = cb, .out = dinp, .rstd = (float *)rstd, .dw = dw, .inp = inp, .w = w,
		      .dout = dout, .N = N, .C = C, .rows = rows_per_task(cb, C),
		      .set = !!(flags & SW_BWD_DW_SET) };
	/* dw first: it reads dout, which a caller may pass as dinp too */
	sw_pool_run(cb->pool, rms_bwd_dw_task, &r, ceil_div(C, cb->tune.col_block));
	sw_pool_run(cb->pool, rms_bwd_dinp_task, &r, ceil_div(N, r.rows));
}

/* ---------------------------------------------------------------- matmul ---- */

static void cpu_matmul_fwd(sw_backend *be, sw_stream *s, void *out, const void *inp, const void *w,
			   const void *bias, int N, int C, int OC)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	mat A = { inp, cb->bf, 0, C }, B = { w, cb->bf, 1, C };
	gemm_run(cb, A, B, N, OC, C, out, 1, OC, 0, bias);
}

typedef struct colsum_ctx {
	cpu_backend *cb;
	float *dst;
	const void *src;
	int N, C, set;
} colsum_ctx;

/* dst[c] += (or = with set) sum over rows in order of src[n][c]; one task per column block. */
static void colsum_task(void *vctx, int64_t task, int worker)
{
	colsum_ctx *k = vctx;
	int cbk = k->cb->tune.col_block;
	int64_t c0 = task * cbk;
	int nc = (int)min64(cbk, k->C - c0);
	float *tmp = wscr(k->cb, worker), *acc = tmp + cbk;
	for (int c = 0; c < nc; c++)
		acc[c] = 0.0f;
	for (int64_t n = 0; n < k->N; n++) {
		const float *d = view_row(k->src, n * k->C + c0, nc, k->cb->bf, tmp);
		for (int c = 0; c < nc; c++)
			acc[c] += d[c];
	}
	for (int c = 0; c < nc; c++)
		k->dst[c0 + c] = k->set ? acc[c] : k->dst[c0 + c] + acc[c];
}

static void cpu_matmul_bwd(sw_backend *be, sw_stream *s, void *dinp, float *dw, float *dbias,
			   const void *dout, const void *inp, const void *w, int N, int C, int OC,
			   int flags)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	int bf = cb->bf, set = !!(flags & SW_BWD_DW_SET);
	/* dinp last: the weight gradients read inp, which a caller may overwrite with dinp */
	if (dbias) {
		wscr_reserve(cb, 2 * (int64_t)cb->tune.col_block);
		colsum_ctx k = { cb, dbias, dout, N, OC, set };
		sw_pool_run(cb->pool, colsum_task, &k, ceil_div(OC, cb->tune.col_block));
	}
	if (dw) {
		mat A = { dout, bf, 1, OC }, B = { inp, bf, 0, C };
		gemm_run(cb, A, B, OC, C, N, dw, 0, C, !set, NULL);
	}
	if (dinp) {
		mat A = { dout, bf, 0, OC }, B = { w, bf, 0, C };
		gemm_run(cb, A, B, N, C, OC, dinp, 1, C, !!(flags & SW_BWD_ACCUM), NULL);
	}
}

/* ---------------------------------------------------------------- rope ---- */

/* The cos/sin table for positions [0, T): angle = (float)pos * inv_freq[i] as one fp32
 * multiply (what HF's fp32 inv_freq @ position_ids computes), then cos and sin of that fp32
 * angle evaluated in double and rounded to float (correctly rounded in practice, where torch's
 * fp32 cos/sin are within an ulp). Kept until T, hd or inv_freq change. */
static const float *rope_table(cpu_backend *cb, const float *inv_freq, int T, int hd)
{
	int half = hd / 2;
	if (cb->rope_cs && cb->rope_T == T && cb->rope_hd == hd &&
	    !memcmp(cb->rope_freq, inv_freq, (size_t)half * sizeof(float)))
		return cb->rope_cs;
	if (cb->fixed) {
		if ((int64_t)T * hd > cb->rope_cap)
			sw_die("cpu backend: internal error: a rope table of %lld floats, the reserve "
			       "has %lld (sw_cpu_scratch_bytes)", (long long)T * hd,
			       (long long)cb->rope_cap);
		cb->rope_freq = cb->rope_cs + cb->rope_cap;
	} else {
		free(cb->rope_cs);
		free(cb->rope_freq);
		cb->rope_cs = malloc((size_t)T * (size_t)half * 2 * sizeof(float));
		cb->rope_freq = malloc((size_t)half * sizeof(float) + 1);
		SW_ASSERT(cb->rope_cs && cb->rope_freq);
	}
	memcpy(cb->rope_freq, inv_freq, (size_t)half * sizeof(float));
	for (int p = 0; p < T; p++)
		for (int i = 0; i < half; i++) {
			float ang = (float)p * inv_freq[i];
			cb->rope_cs[((int64_t)p * half + i) * 2] = (float)cos((double)ang);
			cb->rope_cs[((int64_t)p * half + i) * 2 + 1] = (float)sin((double)ang);
		}
	cb->rope_T = T;
	cb->rope_hd = hd;
	return cb->rope_cs;
}

typedef struct rope_ctx {
	cpu_backend *cb;
	void *x;
	const float *cs;
	int N, T, nh, hd, inverse;
	int64_t rows;
} rope_ctx;

/* x1 = first half, x2 = second half of each head:
 * forward  (HF: x*cos + rotate_half(x)*sin): y1 = x1*c - x2*s, y2 = x2*c + x1*s;
 * inverse  (the transpose, for gradients):    y1 = x1*c + x2*s, y2 = x2*c - x1*s. */
static void rope_task(void *vctx, int64_t task, int worker)
{
	rope_ctx *r = vctx;
	int bf = r->cb->bf, half = r->hd / 2;
	int64_t rowlen = (int64_t)r->nh * r->hd;
	float *t = wscr(r->cb, worker);
	int64_t n1 = min64((task + 1) * r->rows, r->N);
	for (int64_t n = task * r->rows; n < n1; n++) {
		const float *cs = r->cs + (n % r->T) * half * 2;
		load_row(t, r->x, n * rowlen, rowlen, bf);
		for (int h = 0; h < r->nh; h++) {
			float *x = t + (int64_t)h * r->hd;
			for (int i = 0; i < half; i++) {
				float c = cs[2 * i], sn = cs[2 * i + 1];
				float x1 = x[i], x2 = x[i + half];
				if (!r->inverse) {
					x[i] = x1 * c - x2 * sn;
					x[i + half] = x2 * c + x1 * sn;
				} else {
					x[i] = x1 * c + x2 * sn;
					x[i + half] = x2 * c - x1 * sn;
				}
			}
		}
		store_row(r->x, n * rowlen, t, rowlen, bf);
	}
}

static void rope_run(sw_backend *be, void *x, const float *inv_freq, int N, int T, int nh,
		     int hd, int inverse)
{
	cpu_backend *cb = cpu_of(be);
	SW_ASSERT(hd % 2 == 0 && T > 0);
	wscr_reserve(cb, (int64_t)nh * hd);
	rope_ctx r = { cb, x, rope_table(cb, inv_freq, T, hd), N, T, nh, hd, inverse,
		       rows_per_task(cb, (int64_t)nh * hd) };
	sw_pool_run(cb->pool, rope_task, &r, ceil_div(N, r.rows));
}

static void cpu_rope_fwd(sw_backend *be, sw_stream *s, void *x, const float *inv_freq, int N,
			 int T, int nh, int hd)
{
	(void)s;
	rope_run(be, x, inv_freq, N, T, nh, hd, 0);
}

static void cpu_rope_bwd(sw_backend *be, sw_stream *s, void *dx, const float *inv_freq, int N,
			 int T, int nh, int hd)
{
	(void)s;
	rope_run(be, dx, inv_freq, N, T, nh, hd, 1);
}

/* ---------------------------------------------------------------- attention ---- */

/* Both passes work on blocks of R = attn_rows query rows of one (b, h) with the keys 0..t1-1
 * they can see: the scores of a block are an (R, t1) fp32 scratch (R rows of T floats, never
 * T x T), computed with sgemm; the causal mask zeroes the probabilities past each row's
 * position. */
typedef struct attn_ctx {
	cpu_backend *cb;
	void *out, *dq, *dk, *dv;
	float *lse;
	const void *q, *k, *v, *dout, *o;
	const float *lse_in;
	int B, T, nh, nkv, hd;
	float scale;
	int64_t row_blocks;
} attn_ctx;

/* fp32 view of rows [t0, t1) of head h of batch b in x (B,T,heads,hd): the buffer itself with
 * leading dimension heads*hd in F32 mode, else converted into dst with leading dimension hd. */
static const float *attn_rows(const attn_ctx *a, const void *x, int heads, int64_t b, int h,
			      int t0, int t1, float *dst, int *ld)
{
	int64_t base = ((b * a->T + t0) * heads + h) * a->hd, st = (int64_t)heads * a->hd;
	if (!a->cb->bf) {
		*ld = heads * a->hd;
		return (const float *)x + base;
	}
	for (int j = 0; j < t1 - t0; j++)
		load_row(dst + (int64_t)j * a->hd, x, base + j * st, a->hd, 1);
	*ld = a->hd;
	return dst;
}

static void attn_store_rows(const attn_ctx *a, void *x, int heads, int64_t b, int h, int t0,
			    int t1, const float *src)
{
	int64_t base = ((b * a->T + t0) * heads + h) * a->hd, st = (int64_t)heads * a->hd;
	for (int j = 0; j < t1 - t0; j++)
		store_row(x, base + j * st, src + (int64_t)j * a->hd, a->hd, a->cb->bf);
}

/* Scores of query rows [t0, t1) against keys [j0, j1) (K points at key j0): S (R, nk) =
 * scale * Q K^T, then per row t: p_j = exp(S_j - m_t) for keys j <= t, 0 for the others, where
 * m_t is the row max (forward; row max and sum go to mx, sum) or the saved lse (backward). */
static void attn_probs(const attn_ctx *a, float *S, const float *Q, int ldq, const float *K,
		       int ldk, int t0, int t1, int j0, int j1, const float *lse, float *mx,
		       float *sum)
{
	int R = t1 - t0, nk = j1 - j0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, nk, a->hd, 1.0f, Q, ldq, K, ldk,
		    0.0f, S, nk);
	for (int r = 0; r < R; r++) {
		float *s = S + (int64_t)r * nk;
		int lim = (int)min64(t0 + r - j0 + 1, nk);   /* keys this row sees */
		float m = -INFINITY, sm = 0.0f;
		for (int j = 0; j < lim; j++) {
			s[j] = s[j] * a->scale;
			if (s[j] > m)
				m = s[j];
		}
		if (lse)
			m = lse[r];
		for (int j = 0; j < lim; j++) {
			s[j] = expf(s[j] - m);
			sm += s[j];
		}
		for (int j = lim > 0 ? lim : 0; j < nk; j++)
			s[j] = 0.0f;
		if (mx) {
			mx[r] = m;
			sum[r] = sm;
		}
	}
}

/* dS (R, nk) into dP: dP = dO V^T (V at key j0), D_t = dO_t . O_t,
 * dS = scale * P * (dP - D) on the keys each row sees, 0 elsewhere. */
static void attn_dscores(const attn_ctx *a, float *dP, const float *P, const float *dO, int ldd,
			 const float *O, int ldo, const float *V, int ldv, int t0, int t1, int j0,
			 int j1)
{
	int R = t1 - t0, nk = j1 - j0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, nk, a->hd, 1.0f, dO, ldd, V, ldv,
		    0.0f, dP, nk);
	for (int r = 0; r < R; r++) {
		float D = dotf(dO + (int64_t)r * ldd, O + (int64_t)r * ldo, a->hd);
		const float *p = P + (int64_t)r * nk;
		float *dp = dP + (int64_t)r * nk;
		int lim = (int)min64(t0 + r - j0 + 1, nk);
		for (int j = 0; j < lim; j++)
			dp[j] = p[j] * (dp[j] - D) * a->scale;
		for (int j = lim > 0 ? lim : 0; j < nk; j++)
			dp[j] = 0.0f;
	}
}

/* Task = (b, h, block of query rows): O = P V / sum, lse = max + log(sum). */
static void attn_fwd_task(void *vctx, int64_t task, int worker)
{
	attn_ctx *a = vctx;
	int hd = a->hd, T = a->T, R0 = a->cb->tune.attn_rows;
	int64_t blk = task % a->row_blocks, bh = task / a->row_blocks;
	int64_t b = bh / a->nh;
	int h = (int)(bh % a->nh), kvh = h / (a->nh / a->nkv);
	int t0 = (int)(blk * R0), t1 = (int)min64(t0 + R0, T), R = t1 - t0;
	float *kf = wscr(a->cb, worker), *vf = kf + (int64_t)T * hd, *qf = vf + (int64_t)T * hd;
	float *S = qf + (int64_t)R0 * hd, *O = S + (int64_t)R0 * T, *mx = O + (int64_t)R0 * hd;
	float *sum = mx + R0;
	int ldq, ldk, ldv;
	const float *Q = attn_rows(a, a->q, a->nh, b, h, t0, t1, qf, &ldq);
	const float *K = attn_rows(a, a->k, a->nkv, b, kvh, 0, t1, kf, &ldk);
	const float *V = attn_rows(a, a->v, a->nkv, b, kvh, 0, t1, vf, &ldv);
	attn_probs(a, S, Q, ldq, K, ldk, t0, t1, 0, t1, NULL, mx, sum);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, hd, t1, 1.0f, S, t1, V, ldv, 0.0f,
		    O, hd);
	for (int r = 0; r < R; r++) {
		for (int d = 0; d < hd; d++)
			O[(int64_t)r * hd + d] = O[(int64_t)r * hd + d] / sum[r];
		a->lse[(b * a->nh + h) * T + t0 + r] = mx[r] + logf(sum[r]);
	}
	attn_store_rows(a, a->out, a->nh, b, h, t0, t1, O);
}

static void cpu_attention_fwd(sw_backend *be, sw_stream *s, void *out, float *lse, const void *q,
			      const void *k, const void *v, int B, int T, int nh, int nkv, int hd)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	SW_ASSERT(nkv > 0 && nh % nkv == 0);
	int64_t R = cb->tune.attn_rows;
	wscr_reserve(cb, attn_fwd_floats(&cb->tune, T, hd));
	attn_ctx a = { .cb = cb, .out = out, .lse = lse, .q = q, .k = k, .v = v, .B = B, .T = T,
		       .nh = nh, .nkv = nkv, .hd = hd, .scale = (float)(1.0 / sqrt((double)hd)),
		       .row_blocks = ceil_div(T, R) };
	sw_pool_run(cb->pool, attn_fwd_task, &a, (int64_t)B * nh * a.row_blocks);
}

/* Backward in two passes, each output element written by one task; P is recomputed from lse
 * (flash-attention style), dS = scale * P * (dO V^T - rowsum(dO * O)).
 * Pass 1, task = (b, h, query block): dQ = dS K over keys 0..t1-1 (overwritten).
 * Pass 2, task = (b, kv head, key block): dK += dS^T Q, dV += P^T dO in fp32 over the group's
 * heads, then the query blocks that see the keys, in that order; stored once (overwritten). */
static void attn_bwd_dq_task(void *vctx, int64_t task, int worker)
{
	attn_ctx *a = vctx;
	int hd = a->hd, T = a->T, R0 = a->cb->tune.attn_rows;
	int64_t blk = task % a->row_blocks, bh = task / a->row_blocks;
	int64_t b = bh / a->nh;
	int h = (int)(bh % a->nh), kvh = h / (a->nh / a->nkv);
	int t0 = (int)(blk * R0), t1 = (int)min64(t0 + R0, T), R = t1 - t0;
	int64_t th = (int64_t)T * hd, rh = (int64_t)R0 * hd, rt = (int64_t)R0 * T;
	float *kf = wscr(a->cb, worker), *vf = kf + th, *qf = vf + th, *df = qf + rh, *of = df + rh;
	float *dQ = of + rh, *S = dQ + rh, *dP = S + rt;
	int ldq, ldk, ldv, ldd, ldo;
	const float *K = attn_rows(a, a->k, a->nkv, b, kvh, 0, t1, kf, &ldk);
	const float *V = attn_rows(a, a->v, a->nkv, b, kvh, 0, t1, vf, &ldv);
	const float *Q = attn_rows(a, a->q, a->nh, b, h, t0, t1, qf, &ldq);
	const float *dO = attn_rows(a, a->dout, a->nh, b, h, t0, t1, df, &ldd);
	const float *O = attn_rows(a, a->o, a->nh, b, h, t0, t1, of, &ldo);
	const float *lse = a->lse_in + (b * a->nh + h) * T + t0;
	attn_probs(a, S, Q, ldq, K, ldk, t0, t1, 0, t1, lse, NULL, NULL);
	attn_dscores(a, dP, S, dO, ldd, O, ldo, V, ldv, t0, t1, 0, t1);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, hd, t1, 1.0f, dP, t1, K, ldk, 0.0f,
		    dQ, hd);
	attn_store_rows(a, a->dq, a->nh, b, h, t0, t1, dQ);
}

static void attn_bwd_dkv_task(void *vctx, int64_t task, int worker)
{
	attn_ctx *a = vctx;
	int hd = a->hd, T = a->T, R0 = a->cb->tune.attn_rows, group = a->nh / a->nkv;
	int64_t blk = task % a->row_blocks, bk = task / a->row_blocks;
	int64_t b = bk / a->nkv;
	int kvh = (int)(bk % a->nkv);
	int j0 = (int)(blk * R0), j1 = (int)min64(j0 + R0, T), nk = j1 - j0;
	int64_t rh = (int64_t)R0 * hd, rr = (int64_t)R0 * R0;
	float *kf = wscr(a->cb, worker), *vf = kf + rh, *qf = vf + rh, *df = qf + rh, *of = df + rh;
	float *dK = of + rh, *dV = dK + rh, *S = dV + rh, *dP = S + rr;
	int ldq, ldk, ldv, ldd, ldo;
	const float *K = attn_rows(a, a->k, a->nkv, b, kvh, j0, j1, kf, &ldk);
	const float *V = attn_rows(a, a->v, a->nkv, b, kvh, j0, j1, vf, &ldv);
	memset(dK, 0, (size_t)(2 * rh) * sizeof(float));
	for (int hg = 0; hg < group; hg++) {
		int h = kvh * group + hg;
		for (int t0 = j0; t0 < T; t0 += R0) {
			int t1 = (int)min64(t0 + R0, T), R = t1 - t0;
			const float *Q = attn_rows(a, a->q, a->nh, b, h, t0, t1, qf, &ldq);
			const float *dO = attn_rows(a, a->dout, a->nh, b, h, t0, t1, df, &ldd);
			const float *O = attn_rows(a, a->o, a->nh, b, h, t0, t1, of, &ldo);
			const float *lse = a->lse_in + (b * a->nh + h) * T + t0;
			attn_probs(a, S, Q, ldq, K, ldk, t0, t1, j0, j1, lse, NULL, NULL);
			attn_dscores(a, dP, S, dO, ldd, O, ldo, V, ldv, t0, t1, j0, j1);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, R, 1.0f, dP, nk,
				    Q, ldq, 1.0f, dK, hd);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, R, 1.0f, S, nk,
				    dO, ldd, 1.0f, dV, hd);
		}
	}
	attn_store_rows(a, a->dk, a->nkv, b, kvh, j0, j1, dK);
	attn_store_rows(a, a->dv, a->nkv, b, kvh, j0, j1, dV);
}

static void cpu_attention_bwd(sw_backend *be, sw_stream *s, void *dq, void *dk, void *dv,
			      const void *dout, const void *q, const void *k, const void *v,
			      const void *out, const float *lse, int B, int T, int nh, int nkv, int hd)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	SW_ASSERT(nkv > 0 && nh % nkv == 0);
	int64_t R = cb->tune.attn_rows;
	wscr_reserve(cb, attn_bwd_floats(&cb->tune, T, hd));
	attn_ctx a = { .cb = cb, .dq = dq, .dk = dk, .dv = dv, .dout = dout, .o = out, .q = q, .k = k,
		       .v = v, .lse_in = lse, .B = B, .T = T, .nh = nh, .nkv = nkv, .hd = hd,
		       .scale = (float)(1.0 / sqrt((double)hd)), .row_blocks = ceil_div(T, R) };
	sw_pool_run(cb->pool, attn_bwd_dq_task, &a, (int64_t)B * nh * a.row_blocks);
	sw_pool_run(cb->pool, attn_bwd_dkv_task, &a, (int64_t)B * nkv * a.row_blocks);
}

/* ---------------------------------------------------------------- elementwise ---- */

#define EW_BLOCK 1024   /* elements converted at a time inside a task */

typedef struct ew_ctx {
	cpu_backend *cb;
	void *o1, *o2;
	const void *a, *b, *c;
	int64_t n;
	int op;
	/* sumsq, adamw, cast */
	double *partial;
	float *p32, *m, *v;
	const float *g;
	const sw_adamw_args *args;
	float alpha;    /* EW_SCALE */
} ew_ctx;

enum { EW_ADD, EW_SWIGLU_FWD, EW_SWIGLU_BWD, EW_SCALE };

static void ew_task(void *vctx, int64_t task, int worker)
{
	ew_ctx *e = vctx;
	(void)worker;
	int bf = e->cb->bf;
	float ta[EW_BLOCK], tb[EW_BLOCK], tc[EW_BLOCK], r1[EW_BLOCK], r2[EW_BLOCK];
	int64_t i1 = min64((task + 1) * e->cb->tune.elem_chunk, e->n);
	for (int64_t i0 = task * e->cb->tune.elem_chunk; i0 < i1; i0 += EW_BLOCK) {
		int nb = (int)min64(EW_BLOCK, i1 - i0);
		const float *a = view_row(e->a, i0, nb, bf, ta);
		const float *b = view_row(e->b, i0, nb, bf, tb);
		switch (e->op) {
		case EW_ADD:
			for (int i = 0; i < nb; i++)
				r1[i] = a[i] + b[i];
			store_row(e->o1, i0, r1, nb, bf);
			break;
		case EW_SCALE:   /* b aliases a */
			for (int i = 0; i < nb; i++)
				r1[i] = a[i] * e->alpha;
			store_row(e->o1, i0, r1, nb, bf);
			break;
		case EW_SWIGLU_FWD:   /* a = gate, b = up: silu(g) = g / (1 + exp(-g)) */
			for (int i = 0; i < nb; i++)
				r1[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
			store_row(e->o1, i0, r1, nb, bf);
			break;
		case EW_SWIGLU_BWD: { /* a = gate, b = up, c = dout */
			const float *d = view_row(e->c, i0, nb, bf, tc);
			for (int i = 0; i < nb; i++) {
				float e1 = 1.0f + expf(-a[i]);
				float sg = 1.0f / e1, silu = a[i] / e1;
				float dsilu = sg * (1.0f + a[i] * (1.0f - sg));
				r1[i] = d[i] * b[i] * dsilu;
				r2[i] = d[i] * silu;
			}
			store_row(e->o1, i0, r1, nb, bf);
			store_row(e->o2, i0, r2, nb, bf);
			break;
		}
		}
	}
}

static void ew_run(sw_backend *be, ew_ctx *e)
{
	cpu_backend *cb = cpu_of(be);
	e->cb = cb;
	sw_pool_run(cb->pool, ew_task, e, ceil_div(e->n, cb->tune.elem_chunk));
}

static void cpu_swiglu_fwd(sw_backend *be, sw_stream *s, void *out, const void *gate,
			   const void *up, int64_t n)
{
	(void)s;
	ew_ctx e = { .o1 = out, .a = gate, .b = up, .n = n, .op = EW_SWIGLU_FWD };
	ew_run(be, &e);
}

static void cpu_swiglu_bwd(sw_backend *be, sw_stream *s, void *dgate, void *dup, const void *dout,
			   const void *gate, const void *up, int64_t n)
{
	(void)s;
	ew_ctx e = { .o1 = dgate, .o2 = dup, .a = gate, .b = up, .c = dout, .n = n,
		     .op = EW_SWIGLU_BWD };
	ew_run(be, &e);
}

static void cpu_add(sw_backend *be, sw_stream *s, void *out, const void *a, const void *b,
		    int64_t n)
{
	(void)s;
	ew_ctx e = { .o1 = out, .a = a, .b = b, .n = n, .op = EW_ADD };
	ew_run(be, &e);
}

static void cpu_scale(sw_backend *be, sw_stream *s, void *x, float alpha, int64_t n)
{
	(void)s;
	ew_ctx e = { .o1 = x, .a = x, .b = x, .n = n, .op = EW_SCALE, .alpha = alpha };
	ew_run(be, &e);
}

/* Per chunk: the double sum of squares in element order; chunks are combined in order. */
static void sumsq_task(void *vctx, int64_t task, int worker)
{
	ew_ctx *e = vctx;
	(void)worker;
	const float *x = e->g;
	int64_t i1 = min64((task + 1) * e->cb->tune.elem_chunk, e->n);
	double acc = 0.0;
	for (int64_t i = task * e->cb->tune.elem_chunk; i < i1; i++)
		acc += (double)x[i] * (double)x[i];
	e->partial[task] = acc;
}

static void cpu_sumsq(sw_backend *be, sw_stream *s, double *out, const float *x, int64_t n)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	int64_t tasks = ceil_div(n, cb->tune.elem_chunk);
	ew_ctx e = { .cb = cb, .g = x, .n = n,
		     .partial = shared_reserve(cb, (uint64_t)(tasks + 1) * sizeof(double)) };
	sw_pool_run(cb->pool, sumsq_task, &e, tasks);
	double sum = 0.0;
	for (int64_t t = 0; t < tasks; t++)
		sum += e.partial[t];
	*out = sum;
}

static void adamw_task(void *vctx, int64_t task, int worker)
{
	ew_ctx *e = vctx;
	(void)worker;
	int64_t i0 = task * e->cb->tune.elem_chunk, nb = min64(e->cb->tune.elem_chunk, e->n - i0);
	void *p16 = e->o1 ? (uint8_t *)e->o1 + i0 * sw_dtype_size(e->cb->be.act) : NULL;
	sw_adamw_update(e->p32 + i0, e->m + i0, e->v + i0, e->g + i0, p16, e->cb->be.act, nb,
			e->args);
}

static void cpu_adamw(sw_backend *be, sw_stream *s, float *p32, float *m, float *v, const float *g,
		      void *p16, int64_t n, const sw_adamw_args *a)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	ew_ctx e = { .cb = cb, .o1 = p16, .p32 = p32, .m = m, .v = v, .g = g, .n = n, .args = a };
	sw_pool_run(cb->pool, adamw_task, &e, ceil_div(n, cb->tune.elem_chunk));
}

static void cast_task(void *vctx, int64_t task, int worker)
{
	ew_ctx *e = vctx;
	(void)worker;
	int64_t i0 = task * e->cb->tune.elem_chunk, nb = min64(e->cb->tune.elem_chunk, e->n - i0);
	store_row(e->o1, i0, e->g + i0, nb, e->cb->bf);
}

static void cpu_cast_f32_to_act(sw_backend *be, sw_stream *s, void *dst, const float *src,
				int64_t n)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	ew_ctx e = { .cb = cb, .o1 = dst, .g = src, .n = n };
	sw_pool_run(cb->pool, cast_task, &e, ceil_div(n, cb->tune.elem_chunk));
}

/* ---------------------------------------------------------------- LM head ---- */

typedef struct head_ctx {
	cpu_backend *cb;
	float *losses;
	mat X;               /* inp (N,C) */
	mat Wt;              /* w (V,C) seen as (C,V) */
	const void *w;
	float *dw;
	const int32_t *tg;
	float scale;
	int N, C, V;
	int rows, chunk;     /* row block, vocabulary chunk */
	float *lse;          /* (N) */
	float *dlog;         /* (N, vn) of the current chunk */
	float *dacc;         /* (N, C) fp32 dinp accumulator */
	void *dinp;          /* (N, C) act */
	int v0, vn;          /* current chunk */
	int64_t tiles_c;
	blk bk_logits, bk_dinp, bk_dw;   /* the scratch layouts of its GEMMs */
} head_ctx;

static int head_row_valid(const head_ctx *h, int64_t n)
{
	int32_t t = h->tg[n];
	SW_ASSERT(t == -100 || (t >= 0 && t < h->V));
	return t >= 0;
}

/* Pass 1, task = row block: logits chunk by chunk, online max / sum of exp per row. */
static void head_lse_task(void *vctx, int64_t task, int worker)
{
	head_ctx *h = vctx;
	const sw_cpu_tune *t = &h->cb->tune;
	int64_t r0 = task * h->rows;
	int nr = (int)min64(h->rows, h->N - r0);
	float *conv = wscr(h->cb, worker), *tile = conv + conv_floats(h->bk_logits);
	float *mx = tile + (int64_t)h->rows * h->chunk, *sum = mx + h->rows, *tl = sum + h->rows;
	for (int r = 0; r < nr; r++) {
		mx[r] = -INFINITY;
		sum[r] = 0.0f;
		tl[r] = 0.0f;
	}
	for (int v0 = 0; v0 < h->V; v0 += h->chunk) {
		int vn = (int)min64(h->chunk, h->V - v0);
		tile_mm(t, h->bk_logits, conv, &h->X, &h->Wt, r0, nr, v0, vn, h->C, tile, vn, 0.0f);
		for (int r = 0; r < nr; r++) {
			const float *l = tile + (int64_t)r * vn;
			float m = mx[r];
			for (int j = 0; j < vn; j++)
				if (l[j] > m)
					m = l[j];
			float sm = sum[r] * expf(mx[r] - m);
			for (int j = 0; j < vn; j++)
				sm += expf(l[j] - m);
			mx[r] = m;
			sum[r] = sm;
			int32_t tg = h->tg[r0 + r];
			if (tg >= v0 && tg < v0 + vn)
				tl[r] = l[tg - v0];
		}
	}
	for (int r = 0; r < nr; r++) {
		float lse = mx[r] + logf(sum[r]);
		h->lse[r0 + r] = lse;
		h->losses[r0 + r] = head_row_valid(h, r0 + r) ? lse - tl[r] : 0.0f;
	}
}

/* Pass 2a, task = row block, one chunk: dlogits = scale * (softmax - onehot) (0 on ignored
 * rows) into dlog, then dacc += dlogits @ w[chunk]. */
static void head_dlog_task(void *vctx, int64_t task, int worker)
{
	head_ctx *h = vctx;
	const sw_cpu_tune *t = &h->cb->tune;
	int64_t r0 = task * h->rows;
	int nr = (int)min64(h->rows, h->N - r0), vn = h->vn;
	float *conv = wscr(h->cb, worker);
	float *tile = h->dlog + r0 * vn;
	tile_mm(t, h->bk_logits, conv, &h->X, &h->Wt, r0, nr, h->v0, vn, h->C, tile, vn, 0.0f);
	for (int r = 0; r < nr; r++) {
		float *l = tile + (int64_t)r * vn;
		int32_t tg = h->tg[r0 + r];
		if (!head_row_valid(h, r0 + r)) {
			memset(l, 0, (size_t)vn * sizeof(float));
			continue;
		}
		float lse = h->lse[r0 + r];
		for (int j = 0; j < vn; j++)
			l[j] = h->scale * (expf(l[j] - lse) - (h->v0 + j == tg ? 1.0f : 0.0f));
	}
	mat DL = { h->dlog, 0, 0, vn };
	mat Wc = { (const uint8_t *)h->w + (int64_t)h->v0 * h->C * (h->cb->bf ? 2 : 4), h->cb->bf, 0,
		   h->C };
	tile_mm(t, h->bk_dinp, conv, &DL, &Wc, r0, nr, 0, h->C, vn, h->dacc + r0 * h->C, h->C,
		h->v0 ? 1.0f : 0.0f);
}

/* Pass 2b, task = tile of dw[chunk] (vn, C): dw += dlogits^T @ inp over all rows. */
static void head_dw_task(void *vctx, int64_t task, int worker)
{
	head_ctx *h = vctx;
	const sw_cpu_tune *t = &h->cb->tune;
	int64_t i0 = task / h->tiles_c * t->gemm_m, j0 = task % h->tiles_c * t->gemm_n;
	int m = (int)min64(t->gemm_m, h->vn - i0), n = (int)min64(t->gemm_n, h->C - j0);
	mat DLt = { h->dlog, 0, 1, h->vn };
	tile_mm(t, h->bk_dw, wscr(h->cb, worker), &DLt, &h->X, i0, m, j0, n, h->N,
		h->dw + (h->v0 + i0) * h->C + j0, h->C, 1.0f);
}

static void head_store_task(void *vctx, int64_t task, int worker)
{
	head_ctx *h = vctx;
	(void)worker;
	int64_t rows = rows_per_task(h->cb, h->C);
	int64_t n0 = task * rows, n1 = min64(n0 + rows, h->N);
	for (int64_t n = n0; n < n1; n++)
		store_row(h->dinp, n * h->C, h->dacc + n * h->C, h->C, h->cb->bf);
}

/* The head's GEMMs, each with its own layout: logits X (rows, C) @ W^T (C, chunk), dinp
 * dlogits (rows, chunk) @ W (chunk, C), dW dlogits^T (chunk, N) @ X (N, C). */
static blk head_blk_logits(const sw_cpu_tune *t, int64_t N, int64_t C, int64_t chunk)
{
	return blk_of(t, min64(t->head_rows, N), chunk, C);
}
static blk head_blk_dinp(const sw_cpu_tune *t, int64_t N, int64_t C, int64_t chunk)
{
	return blk_of(t, min64(t->head_rows, N), C, chunk);
}
static blk head_blk_dw(const sw_cpu_tune *t, int64_t N, int64_t C, int64_t chunk)
{
	return blk_of(t, chunk, C, N);
}

/* A worker's head scratch: the logits' conversion blocks, then a (rows, chunk) logits tile and
 * 3 row statistics (head_lse_task); or the other GEMMs' conversion blocks alone. */
static int64_t head_floats(const sw_cpu_tune *t, int64_t N, int64_t C, int64_t V)
{
	int64_t rows = min64(t->head_rows, N), chunk = min64(t->head_chunk, V);
	int64_t f = conv_floats(head_blk_logits(t, N, C, chunk)) + rows * chunk + 3 * rows;
	f = max64(f, conv_floats(head_blk_dinp(t, N, C, chunk)));
	return max64(f, conv_floats(head_blk_dw(t, N, C, chunk)));
}

/* The shared head scratch: lse (N), one chunk of dlogits (N, bchunk), the fp32 dinp (N, C). */
static uint64_t head_shared_bytes(const sw_cpu_tune *t, int64_t N, int64_t C, int64_t V,
				  int bwd, int64_t *bchunk)
{
	int64_t bc = min64(t->head_chunk, V);
	if (bwd && N * bc > t->head_dlog)
		bc = t->head_dlog / N > 1 ? t->head_dlog / N : 1;
	if (bchunk)
		*bchunk = bc;
	uint64_t lse_b = ((uint64_t)N * sizeof(float) + 63) / 64 * 64;
	if (!bwd)
		return lse_b;
	return lse_b + ((uint64_t)N * (uint64_t)bc * sizeof(float) + 63) / 64 * 64 +
	       (uint64_t)N * (uint64_t)C * sizeof(float);
}

static void cpu_head_loss(sw_backend *be, sw_stream *s, float *losses, void *dinp, float *dw,
			  const void *inp, const void *w, const int32_t *targets, float scale,
			  int N, int C, int V)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	const sw_cpu_tune *t = &cb->tune;
	if (N <= 0)
		return;
	int chunk = (int)min64(t->head_chunk, V);
	int rows = (int)min64(t->head_rows, N);
	head_ctx h = { .cb = cb, .losses = losses, .X = { inp, cb->bf, 0, C },
		       .Wt = { w, cb->bf, 1, C }, .w = w, .dw = dw, .tg = targets, .scale = scale,
		       .N = N, .C = C, .V = V, .rows = rows, .chunk = chunk,
		       .bk_logits = head_blk_logits(t, N, C, chunk),
		       .bk_dinp = head_blk_dinp(t, N, C, chunk), .bk_dw = head_blk_dw(t, N, C, chunk) };
	wscr_reserve(cb, head_floats(t, N, C, V));
	int64_t bchunk;
	uint8_t *sh = shared_reserve(cb, head_shared_bytes(t, N, C, V, dinp != NULL, &bchunk));
	uint64_t lse_b = head_shared_bytes(t, N, C, V, 0, NULL);
	uint64_t dlog_b = ((uint64_t)N * (uint64_t)bchunk * sizeof(float) + 63) / 64 * 64;
	h.lse = (float *)sh;
	sw_pool_run(cb->pool, head_lse_task, &h, ceil_div(N, rows));
	if (!dinp)
		return;
	h.dlog = (float *)(sh + lse_b);
	h.dacc = (float *)(sh + lse_b + dlog_b);
	h.tiles_c = ceil_div(C, t->gemm_n);
	for (int v0 = 0; v0 < V; v0 += (int)bchunk) {
		h.v0 = v0;
		h.vn = (int)min64(bchunk, V - v0);
		sw_pool_run(cb->pool, head_dlog_task, &h, ceil_div(N, rows));
		if (dw)
			sw_pool_run(cb->pool, head_dw_task, &h,
				    ceil_div(h.vn, t->gemm_m) * h.tiles_c);
	}
	h.dinp = dinp;
	sw_pool_run(cb->pool, head_store_task, &h, ceil_div(N, rows_per_task(cb, C)));
}

static void cpu_head_logits(sw_backend *be, sw_stream *s, float *logits, const void *inp,
			    const void *w, int N, int C, int V)
{
	(void)s;
	cpu_backend *cb = cpu_of(be);
	mat A = { inp, cb->bf, 0, C }, B = { w, cb->bf, 1, C };
	gemm_run(cb, A, B, N, V, C, logits, 0, V, 0, NULL);
}

/* ---------------------------------------------------------------- creation ---- */

static const sw_backend_ops cpu_ops = {
	.destroy = cpu_destroy,
	.dev_alloc = cpu_dev_alloc,
	.dev_free = cpu_dev_free,
	.host_alloc = cpu_host_alloc,
	.host_free = cpu_host_free,
	.host_register = cpu_host_register,
	.host_unregister = cpu_host_unregister,
	.stream_create = cpu_stream_create,
	.stream_destroy = cpu_stream_destroy,
	.stream_sync = cpu_stream_sync,
	.event_create = cpu_event_create,
	.event_destroy = cpu_event_destroy,
	.event_record = cpu_event_record,
	.stream_wait = cpu_stream_wait,
	.event_sync = cpu_event_sync,
	.event_done = cpu_event_done,
	.event_ms = cpu_event_ms,
	.copy_h2d = cpu_copy,
	.copy_d2h = cpu_copy,
	.copy_d2d = cpu_copy,
	.memset0 = cpu_memset0,
	.embedding_fwd = cpu_embedding_fwd,
	.embedding_bwd = cpu_embedding_bwd,
	.rmsnorm_fwd = cpu_rmsnorm_fwd,
	.rmsnorm_bwd = cpu_rmsnorm_bwd,
	.matmul_fwd = cpu_matmul_fwd,
	.matmul_bwd = cpu_matmul_bwd,
	.rope_fwd = cpu_rope_fwd,
	.rope_bwd = cpu_rope_bwd,
	.attention_fwd = cpu_attention_fwd,
	.attention_bwd = cpu_attention_bwd,
	.swiglu_fwd = cpu_swiglu_fwd,
	.swiglu_bwd = cpu_swiglu_bwd,
	.add = cpu_add,
	.scale = cpu_scale,
	.head_loss = cpu_head_loss,
	.head_logits = cpu_head_logits,
	.sumsq = cpu_sumsq,
	.adamw = cpu_adamw,
	.cast_f32_to_act = cpu_cast_f32_to_act,
};

static const sw_cpu_tune cpu_tune_default = {
	.gemm_m = 128, .gemm_n = 256, .gemm_k = 256,
	.head_rows = 64, .head_chunk = 4096, .head_dlog = 8ll << 20,
	.attn_rows = 64, .col_block = 256, .elem_chunk = 1 << 16,
};

void sw_cpu_backend_get_tune(sw_backend *be, sw_cpu_tune *t) { *t = cpu_of(be)->tune; }

void sw_cpu_backend_set_tune(sw_backend *be, const sw_cpu_tune *t)
{
	SW_ASSERT(t->gemm_m >= 1 && t->gemm_n >= 1 && t->gemm_k >= 1 && t->head_rows >= 1 &&
		  t->head_chunk >= 1 && t->head_dlog >= 1 && t->attn_rows >= 1 && t->col_block >= 1 &&
		  t->elem_chunk >= 1);
	cpu_of(be)->tune = *t;
}

int sw_cpu_backend_create(const sw_backend_opts *o, sw_backend **out)
{
	*out = NULL;
	if (o->act != SW_DTYPE_F32 && o->act != SW_DTYPE_BF16) {
		sw_error("backend cpu: activation type %s is not supported; use bf16 or fp32",
			 sw_dtype_name(o->act));
		return -EINVAL;
	}
	cpu_backend *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	int rc = -ENOMEM;
	if (o->mem_budget) {
		void *p = mmap(NULL, (size_t)o->mem_budget, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			sw_error("backend cpu: cannot map a %llu-byte device arena; lower --gpu-mem",
				 (unsigned long long)o->mem_budget);
			goto err_free;
		}
		cb->arena = p;
		ARENA_POISON(p, o->mem_budget);
	}
	if (sw_suballoc_init(&cb->sa, o->mem_budget))
		goto err_unmap;
	cb->pool = sw_pool_create(o->threads, NULL);
	if (!cb->pool) {
		sw_error("backend cpu: cannot start %d worker threads; lower --threads", o->threads);
		goto err_suballoc;
	}
	cb->nthreads = sw_pool_threads(cb->pool);
	cb->wscr = calloc((size_t)cb->nthreads, sizeof(float *));
	if (!cb->wscr)
		goto err_pool;
	/* Each GEMM tile runs single-threaded inside one of our tasks (see the top of the file). */
	openblas_set_num_threads(1);
	cb->bf = o->act == SW_DTYPE_BF16;
	cb->tune = cpu_tune_default;
	cb->be.ops = &cpu_ops;
	cb->be.name = "cpu";
	cb->be.act = o->act;
	cb->be.budget = o->mem_budget;
	cb->be.impl = cb;
	snprintf(cb->be.device_name, sizeof(cb->be.device_name), "CPU (%d thread%s)", cb->nthreads,
		 cb->nthreads == 1 ? "" : "s");
	*out = &cb->be;
	return 0;

err_pool:
	sw_pool_destroy(cb->pool);
err_suballoc:
	sw_suballoc_free_all(&cb->sa);
err_unmap:
	if (cb->arena)
		munmap(cb->arena, (size_t)o->mem_budget);
err_free:
	free(cb);
	return rc;
}

/* ---------------------------------------------------------------- the scratch reserve ---- */

static uint64_t page_up(uint64_t b) { return (b + 4095) / 4096 * 4096; }

/* The pieces of the reserve: one worker's scratch (floats), the shared scratch and the rope
 * table with its inv_freq (bytes each). The maximum over every op a model runs with these
 * shapes: its layers (matmuls, norms, rope, attention), the head's loss and its logits (an
 * evaluation), the embedding's backward and the gradient norms (sumsq over a group). */
static void scratch_pieces(const sw_cpu_tune *t, const sw_dims *d, int64_t max_numel,
			   int64_t *worker, uint64_t *shared, uint64_t *rope)
{
	int64_t N = d->N, C = d->C, qd = (int64_t)d->nh * d->hd, kvd = (int64_t)d->nkv * d->hd;
	/* a layer's matmuls (in, out): q, k, v, o, gate/up, down; each runs forward (N, out, in),
	 * dinp (N, in, out) and dW (out, in, N) */
	const int64_t mm[][2] = { { C, qd }, { C, kvd }, { qd, C }, { C, d->F }, { d->F, C } };
	int64_t w = gemm_floats(blk_of(t, N, d->V, C));                 /* head_logits */
	for (size_t i = 0; i < sizeof(mm) / sizeof(mm[0]); i++) {
		int64_t in = mm[i][0], out = mm[i][1];
		w = max64(w, gemm_floats(blk_of(t, N, out, in)));
		w = max64(w, gemm_floats(blk_of(t, N, in, out)));
		w = max64(w, gemm_floats(blk_of(t, out, in, N)));
	}
	w = max64(w, head_floats(t, N, C, d->V));
	w = max64(w, rms_bwd_floats(t, C));
	w = max64(w, rms_fwd_floats(C));
	w = max64(w, 3 * (int64_t)t->col_block);     /* embedding_bwd, dbias: within rms_bwd's */
	w = max64(w, max64((int64_t)d->nh, (int64_t)d->nkv) * d->hd);   /* rope */
	w = max64(w, attn_fwd_floats(t, d->T, d->hd));
	w = max64(w, attn_bwd_floats(t, d->T, d->hd));
	*worker = w;
	uint64_t sq = (uint64_t)(ceil_div(max_numel, t->elem_chunk) + 1) * sizeof(double);
	uint64_t hd_b = head_shared_bytes(t, N, C, d->V, 1, NULL);
	*shared = sq > hd_b ? sq : hd_b;
	*rope = ((uint64_t)d->T * (uint64_t)d->hd + (uint64_t)d->hd / 2 + 1) * sizeof(float);
}

uint64_t sw_cpu_scratch_bytes(int threads, const sw_dims *d, int64_t max_numel)
{
	int64_t w;
	uint64_t sh, rope;
	scratch_pieces(&cpu_tune_default, d, max_numel, &w, &sh, &rope);
	int n = sw_pool_threads_for(threads);
	return (uint64_t)n * page_up((uint64_t)w * sizeof(float)) + page_up(sh) + page_up(rope);
}

int sw_cpu_backend_reserve_scratch(sw_backend *be, const sw_dims *d, int64_t max_numel)
{
	cpu_backend *cb = cpu_of(be);
	SW_ASSERT(!cb->fixed);
	int64_t w;
	uint64_t sh, rope;
	scratch_pieces(&cb->tune, d, max_numel, &w, &sh, &rope);
	uint64_t wb = page_up((uint64_t)w * sizeof(float));
	uint64_t total = (uint64_t)cb->nthreads * wb + page_up(sh) + page_up(rope);
	void *blk = NULL;
	if (!cb->arena) {
		/* no device budget: the reserve is plain host memory */
		if (posix_memalign(&blk, 4096, (size_t)total))
			return -ENOMEM;
		cb->own_fixed = 1;
	} else if (cpu_dev_alloc(be, total, &blk)) {
		sw_error("backend cpu: the op scratch (%llu bytes for these shapes and %d threads) "
			 "does not fit the device arena of %llu bytes; raise --gpu-mem",
			 (unsigned long long)total, cb->nthreads, (unsigned long long)be->budget);
		return -ENOSPC;
	}
	for (int i = 0; i < cb->nthreads; i++) {
		free(cb->wscr[i]);
		cb->wscr[i] = (float *)((uint8_t *)blk + (uint64_t)i * wb);
	}
	free(cb->shared);
	free(cb->rope_cs);
	free(cb->rope_freq);
	cb->wscr_n = (int64_t)(wb / sizeof(float));
	cb->shared = (uint8_t *)blk + (uint64_t)cb->nthreads * wb;
	cb->shared_n = page_up(sh);
	cb->rope_cs = (float *)((uint8_t *)cb->shared + page_up(sh));
	cb->rope_cap = (int64_t)((page_up(rope) / sizeof(float)) - (uint64_t)d->hd / 2 - 1);
	cb->rope_freq = NULL;
	cb->rope_T = cb->rope_hd = 0;
	cb->fixed = blk;
	return 0;
}
