/* SW_OP_PROFILE=1: every op and copy bracketed by an event pair on its stream; per-op totals at
 * the backend's destroy (core/op_profile.h). The device machine has no Nsight Systems, and
 * this needs nothing but the backend's own events. */
#include "core/op_profile.h"
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KEYS_MAX = 512, KEY_LEN = 64 };

typedef struct pair {
	sw_event *e0, *e1;
	int key;
	int state;                  /* 0 free, 1 begun, 2 ended */
} pair;

typedef struct key {
	char name[KEY_LEN];
	long long calls;
	double ms;
} key;

static struct {
	pthread_mutex_t mu;
	const sw_backend_ops *real;
	sw_backend_ops ops;         /* the wrapped table be->ops points to */
	sw_backend *be;
	pair *pairs;
	int *freev, nfree, cap;
	key keys[KEYS_MAX];
	int nkeys;
	long long no_pair, no_key;  /* ops not timed: every pair in flight; the key table full */
} P = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int key_of(const char *name)
{
	for (int i = 0; i < P.nkeys; i++)
		if (!strcmp(P.keys[i].name, name))
			return i;
	if (P.nkeys == KEYS_MAX)
		return -1;
	snprintf(P.keys[P.nkeys].name, KEY_LEN, "%s", name);
	return P.nkeys++;
}

/* Adds every ended pair to its key and frees it (waits for those events). */
static void resolve(void)
{
	for (int i = 0; i < P.cap; i++) {
		pair *p = &P.pairs[i];
		if (p->state != 2)
			continue;
		P.real->event_sync(P.be, p->e1);
		P.keys[p->key].ms += P.real->event_ms(P.be, p->e0, p->e1);
		P.keys[p->key].calls++;
		p->state = 0;
		P.freev[P.nfree++] = i;
	}
}

static int begin(sw_stream *s, const char *name)
{
	pthread_mutex_lock(&P.mu);
	if (!P.nfree)
		resolve();
	int k = key_of(name), i = -1;
	if (k < 0)
		P.no_key++;
	else if (!P.nfree)
		P.no_pair++;
	else {
		i = P.freev[P.nfree - 1];
		pair *p = &P.pairs[i];
		if (!p->e0 && (P.real->event_create(P.be, &p->e0) || P.real->event_create(P.be, &p->e1))) {
			if (p->e0)
				P.real->event_destroy(P.be, p->e0);
			p->e0 = p->e1 = NULL;
			i = -1;
			P.no_pair++;
		} else {
			P.nfree--;
			p->key = k;
			p->state = 1;
			P.real->event_record(P.be, p->e0, s);
		}
	}
	pthread_mutex_unlock(&P.mu);
	return i;
}

static void end(sw_stream *s, int i)
{
	if (i < 0)
		return;
	pthread_mutex_lock(&P.mu);
	P.real->event_record(P.be, P.pairs[i].e1, s);
	P.pairs[i].state = 2;
	pthread_mutex_unlock(&P.mu);
}

static int by_ms(const void *a, const void *b)
{
	double x = ((const key *)a)->ms, y = ((const key *)b)->ms;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void report(void)
{
	double all = 0;
	long long n = 0;
	for (int i = 0; i < P.nkeys; i++) {
		all += P.keys[i].ms;
		n += P.keys[i].calls;
	}
	qsort(P.keys, (size_t)P.nkeys, sizeof(key), by_ms);
	fprintf(stderr, "op profile (SW_OP_PROFILE=1): %lld ops timed on their streams, %.1f ms in all",
		n, all);
	if (P.no_pair)
		fprintf(stderr, "; %lld not timed (no free event pair)", P.no_pair);
	if (P.no_key)
		fprintf(stderr, "; %lld not timed (more than %d op shapes)", P.no_key, KEYS_MAX);
	fprintf(stderr, "\n  %-40s %9s %11s %10s %6s\n", "op", "calls", "total ms", "mean us", "share");
	for (int i = 0; i < P.nkeys; i++)
		fprintf(stderr, "  %-40s %9lld %11.2f %10.1f %5.1f%%\n", P.keys[i].name, P.keys[i].calls,
			P.keys[i].ms, P.keys[i].calls ? 1e3 * P.keys[i].ms / (double)P.keys[i].calls : 0.0,
			all > 0 ? 100.0 * P.keys[i].ms / all : 0.0);
}

static void w_destroy(sw_backend *be)
{
	pthread_mutex_lock(&P.mu);
	resolve();
	report();
	for (int i = 0; i < P.cap; i++) {
		if (P.pairs[i].e0)
			P.real->event_destroy(be, P.pairs[i].e0);
		if (P.pairs[i].e1)
			P.real->event_destroy(be, P.pairs[i].e1);
	}
	free(P.pairs);
	free(P.freev);
	P.pairs = NULL;
	P.freev = NULL;
	const sw_backend_ops *real = P.real;
	be->ops = real;
	P.be = NULL;
	pthread_mutex_unlock(&P.mu);
	real->destroy(be);
}

/* One wrapper per op that runs on a stream: NAME is the key, or a buffer with its shape. */
#define WRAP(op, params, args, ...)                                    \
	static void w_##op params                                      \
	{                                                              \
		char nm[KEY_LEN];                                      \
		snprintf(nm, sizeof(nm), __VA_ARGS__);                 \
		int i = begin(s, nm);                                  \
		P.real->op args;                                       \
		end(s, i);                                             \
	}

WRAP(copy_h2d, (sw_backend *be, sw_stream *s, void *d, const void *h, uint64_t n), (be, s, d, h, n), "copy_h2d")
WRAP(copy_d2h, (sw_backend *be, sw_stream *s, void *h, const void *d, uint64_t n), (be, s, h, d, n), "copy_d2h")
WRAP(copy_d2d, (sw_backend *be, sw_stream *s, void *d, const void *x, uint64_t n), (be, s, d, x, n), "copy_d2d")
WRAP(memset0, (sw_backend *be, sw_stream *s, void *d, uint64_t n), (be, s, d, n), "memset0")
WRAP(embedding_fwd, (sw_backend *be, sw_stream *s, void *o, const int32_t *t, const void *w, int N, int C),
     (be, s, o, t, w, N, C), "embedding_fwd")
WRAP(embedding_bwd, (sw_backend *be, sw_stream *s, float *dw, const void *d, const int32_t *t, int N, int C, int V),
     (be, s, dw, d, t, N, C, V), "embedding_bwd")
WRAP(rmsnorm_fwd, (sw_backend *be, sw_stream *s, void *o, float *r, const void *x, const void *w, int N, int C, float eps),
     (be, s, o, r, x, w, N, C, eps), "rmsnorm_fwd")
WRAP(rmsnorm_bwd, (sw_backend *be, sw_stream *s, void *dx, float *dw, const void *d, const void *x, const void *w,
		   const float *r, int N, int C, int f), (be, s, dx, dw, d, x, w, r, N, C, f), "rmsnorm_bwd")
WRAP(matmul_fwd, (sw_backend *be, sw_stream *s, void *o, const void *x, const void *w, const void *b, int N, int C, int OC),
     (be, s, o, x, w, b, N, C, OC), "matmul_fwd N%d C%d OC%d", N, C, OC)
WRAP(matmul_bwd, (sw_backend *be, sw_stream *s, void *dx, float *dw, float *db, const void *d, const void *x,
		  const void *w, int N, int C, int OC, int f),
     (be, s, dx, dw, db, d, x, w, N, C, OC, f), "matmul_bwd N%d C%d OC%d%s%s", N, C, OC, dx ? "" : " dW only",
     (f & SW_BWD_DW_SET) ? " dW set" : "")
WRAP(rope_fwd, (sw_backend *be, sw_stream *s, void *x, const float *f, int N, int T, int nh, int hd),
     (be, s, x, f, N, T, nh, hd), "rope_fwd")
WRAP(rope_bwd, (sw_backend *be, sw_stream *s, void *x, const float *f, int N, int T, int nh, int hd),
     (be, s, x, f, N, T, nh, hd), "rope_bwd")
WRAP(attention_fwd, (sw_backend *be, sw_stream *s, void *o, float *l, const void *q, const void *k, const void *v,
		     int B, int T, int nh, int nkv, int hd),
     (be, s, o, l, q, k, v, B, T, nh, nkv, hd), "attention_fwd T%d h%d/%d d%d", T, nh, nkv, hd)
WRAP(attention_bwd, (sw_backend *be, sw_stream *s, void *dq, void *dk, void *dv, const void *d, const void *q,
		     const void *k, const void *v, const void *o, const float *l, int B, int T, int nh, int nkv, int hd),
     (be, s, dq, dk, dv, d, q, k, v, o, l, B, T, nh, nkv, hd), "attention_bwd T%d h%d/%d d%d", T, nh, nkv, hd)
WRAP(swiglu_fwd, (sw_backend *be, sw_stream *s, void *o, const void *g, const void *u, int64_t n),
     (be, s, o, g, u, n), "swiglu_fwd")
WRAP(swiglu_bwd, (sw_backend *be, sw_stream *s, void *dg, void *du, const void *d, const void *g, const void *u, int64_t n),
     (be, s, dg, du, d, g, u, n), "swiglu_bwd")
WRAP(add, (sw_backend *be, sw_stream *s, void *o, const void *a, const void *b, int64_t n), (be, s, o, a, b, n), "add")
WRAP(scale, (sw_backend *be, sw_stream *s, void *x, float al, int64_t n), (be, s, x, al, n), "scale")
WRAP(head_loss, (sw_backend *be, sw_stream *s, float *l, void *dx, float *dw, const void *x, const void *w,
		 const int32_t *t, float sc, int N, int C, int V),
     (be, s, l, dx, dw, x, w, t, sc, N, C, V), "head_loss N%d C%d V%d", N, C, V)
WRAP(head_logits, (sw_backend *be, sw_stream *s, float *lg, const void *x, const void *w, int N, int C, int V),
     (be, s, lg, x, w, N, C, V), "head_logits N%d C%d V%d", N, C, V)
WRAP(sumsq, (sw_backend *be, sw_stream *s, double *o, const float *x, int64_t n), (be, s, o, x, n), "sumsq")
WRAP(adamw, (sw_backend *be, sw_stream *s, float *p, float *m, float *v, const float *g, void *p16, int64_t n,
	     const sw_adamw_args *a), (be, s, p, m, v, g, p16, n, a), "adamw")
WRAP(cast_f32_to_act, (sw_backend *be, sw_stream *s, void *d, const float *x, int64_t n), (be, s, d, x, n),
     "cast_f32_to_act")

int sw_op_profile_maybe_wrap(sw_backend *be)
{
	const char *v = getenv("SW_OP_PROFILE");
	if (!v || strcmp(v, "1"))
		return 0;
	pthread_mutex_lock(&P.mu);
	if (P.be) {
		pthread_mutex_unlock(&P.mu);
		sw_warn("SW_OP_PROFILE: a second backend in this process is not profiled");
		return 0;
	}
	const char *c = getenv("SW_OP_PROFILE_PAIRS");
	char *endp = NULL;
	long cap = c ? strtol(c, &endp, 10) : 65536;
	if (c && (endp == c || *endp || cap < 16 || cap > (1 << 22))) {
		pthread_mutex_unlock(&P.mu);
		sw_error("SW_OP_PROFILE_PAIRS '%s' is not a number of event pairs in 16..4194304", c);
		return -EINVAL;
	}
	P.pairs = calloc((size_t)cap, sizeof(pair));
	P.freev = malloc((size_t)cap * sizeof(int));
	if (!P.pairs || !P.freev) {
		free(P.pairs);
		free(P.freev);
		P.pairs = NULL;
		P.freev = NULL;
		pthread_mutex_unlock(&P.mu);
		sw_error("SW_OP_PROFILE: no host memory for %ld event pairs; lower SW_OP_PROFILE_PAIRS", cap);
		return -ENOMEM;
	}
	P.cap = (int)cap;
	for (int i = 0; i < P.cap; i++)
		P.freev[i] = P.cap - 1 - i;
	P.nfree = P.cap;
	P.nkeys = 0;
	P.no_pair = P.no_key = 0;
	P.real = be->ops;
	P.ops = *be->ops;
	P.be = be;
#define SET(op) P.ops.op = w_##op
	SET(destroy);
	SET(copy_h2d);
	SET(copy_d2h);
	SET(copy_d2d);
	SET(memset0);
	SET(embedding_fwd);
	SET(embedding_bwd);
	SET(rmsnorm_fwd);
	SET(rmsnorm_bwd);
	SET(matmul_fwd);
	SET(matmul_bwd);
	SET(rope_fwd);
	SET(rope_bwd);
	SET(attention_fwd);
	SET(attention_bwd);
	SET(swiglu_fwd);
	SET(swiglu_bwd);
	SET(add);
	SET(scale);
	SET(head_loss);
	SET(head_logits);
	SET(sumsq);
	SET(adamw);
	SET(cast_f32_to_act);
#undef SET
	be->ops = &P.ops;
	pthread_mutex_unlock(&P.mu);
	sw_info("SW_OP_PROFILE: timing every op on its stream (per-op totals at exit)");
	return 0;
}
