/* The checkpoint copies' stream order (offload/exec_ckpt.c) checked against a model of CUDA
 * streams and events, which the CPU backend (every op synchronous) cannot show: a fake backend
 * keeps a vector clock per stream (an op on a stream follows the stream's earlier ops; a
 * stream_wait follows the event's most recent record issued before it, a wait on a never
 * recorded event is a no-op; a host sync orders everything issued after it) and logs each
 * copy's and each modelled kernel's reads and writes; two accesses to overlapping bytes, one a
 * write, on different streams and not ordered by the clocks, are a race. The forward and the
 * backward passes are driven as offload/exec_step.c drives them (forward_pass, bwd_head,
 * bwd_recompute_top, bwd_layer, the embedding's backward), over random mixes of device and
 * host checkpoints, the carry on the device or the host, one or two backward passes a step.
 * Two controls show the model sees the races it must: the forward without exec_ckpt_saved
 * (the carry or xa overwritten while the checkpoint's copy reads it) and a reader of a
 * checkpoint's device buffer queued after the next get (the get after that refills the buffer
 * under it): exec_ckpt_get's pointer is good until the next get. */
#include "offload/exec_int.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

enum { NS = 4, HOST = 3, LOGMAX = 1 << 16, L = 4, M = 3, NTOK = 8, DIM = 16 };

typedef struct vclock { uint64_t t[NS]; } vclock;
struct sw_stream { int id; vclock now; };
struct sw_event { int recorded; vclock at; };
typedef struct access { const char *p; uint64_t n; int write, stream; vclock at; } access;

static struct sw_stream streams[3] = { { 0, { { 0 } } }, { 1, { { 0 } } }, { 2, { { 0 } } } };
static vclock host;                 /* what the issuing thread has waited for */
static access logv[LOGMAX];
static int nlog, races;
static const char *race_what;
static int verbose = 1;       /* print the first race (not in the controls) */

static void vc_join(vclock *a, const vclock *b)
{
	for (int i = 0; i < NS; i++)
		if (b->t[i] > a->t[i])
			a->t[i] = b->t[i];
}

/* A new op on s: after everything the host waited for, after s's earlier ops. */
static vclock op_begin(sw_stream *s)
{
	vc_join(&s->now, &host);
	s->now.t[s->id]++;
	return s->now;
}

static void touch(sw_stream *s, vclock at, const void *p, uint64_t n, int write)
{
	const char *c = p;
	for (int i = 0; i < nlog; i++) {
		const access *e = &logv[i];
		if (!(write || e->write) || e->stream == s->id || c >= e->p + e->n || e->p >= c + n)
			continue;
		if (e->at.t[e->stream] > at.t[e->stream]) {   /* e does not happen before this access */
			if (!races++ && verbose)
				fprintf(stderr, "  race (%s): %s on stream %d vs %s on stream %d\n", race_what,
					write ? "write" : "read", s->id, e->write ? "write" : "read", e->stream);
		}
	}
	CHECK(nlog < LOGMAX);
	logv[nlog++] = (access){ c, n, write, s->id, at };
}

static void f_copy(sw_backend *be, sw_stream *s, void *dst, const void *src, uint64_t n)
{
	(void)be;
	vclock at = op_begin(s);
	touch(s, at, src, n, 0);
	touch(s, at, dst, n, 1);
}
static void f_record(sw_backend *be, sw_event *e, sw_stream *s)
{
	(void)be;
	e->recorded = 1;
	e->at = s->now;
}
static void f_wait(sw_backend *be, sw_stream *s, sw_event *e)
{
	(void)be;
	if (e->recorded)
		vc_join(&s->now, &e->at);
}
static void f_event_sync(sw_backend *be, sw_event *e)
{
	(void)be;
	if (e->recorded)
		vc_join(&host, &e->at);
}
static void f_stream_sync(sw_backend *be, sw_stream *s)
{
	(void)be;
	vc_join(&host, &s->now);
}

static sw_backend_ops fake_ops = { .event_record = f_record, .stream_wait = f_wait,
				   .event_sync = f_event_sync, .stream_sync = f_stream_sync,
				   .copy_h2d = f_copy, .copy_d2h = f_copy, .copy_d2d = f_copy };
static sw_backend fake_be = { .ops = &fake_ops };

/* A kernel on the compute stream: reads r (if any), writes w (if any), one micro-batch each. */
static void kernel(sw_exec *ex, const void *r1, const void *r2, void *w)
{
	vclock at = op_begin(ex->cs);
	uint64_t n = exec_xbytes(ex);
	if (r1)
		touch(ex->cs, at, r1, n, 0);
	if (r2)
		touch(ex->cs, at, r2, n, 0);
	if (w)
		touch(ex->cs, at, w, n, 1);
}

static struct sw_event events[2 + 2 * SW_PLAN_XC];
static char *xbuf[2 + SW_PLAN_XC];

/* An executor of L layers and M micro-batches whose checkpoints sit on the device or the host
 * (random), the carry on the device or the host. */
static sw_exec *fake_exec(unsigned *seed, int carry_dev, int ck_streams)
{
	sw_exec *ex = calloc(1, sizeof(*ex));
	CHECK(ex);
	ex->be = &fake_be;
	ex->d.N = NTOK;
	ex->d.C = DIM;
	ex->ab = 2;
	ex->L = L;
	ex->M = M;
	ex->cs = &streams[0];
	ex->hs = &streams[1];
	ex->ds = &streams[2];
	ex->ck_streams = ck_streams;
	uint64_t xb = exec_xbytes(ex);
	for (int i = 0; i < 2 + SW_PLAN_XC; i++)
		CHECK((xbuf[i] = calloc(1, xb)));
	ex->xa = xbuf[0];
	ex->xo = xbuf[1];
	memset(events, 0, sizeof(events));
	ex->ck_out_ready = &events[0];
	ex->ck_out_done = &events[1];
	for (int b = 0; b < SW_PLAN_XC; b++) {
		ex->xc[b] = xbuf[2 + b];
		ex->xc_free[b] = &events[2 + 2 * b];
		ex->xc_ready[b] = &events[3 + 2 * b];
	}
	CHECK((ex->ck = calloc(L * M, sizeof(ckpt))));
	for (int i = 0; i < L * M; i++) {
		ckpt *k = &ex->ck[i];
		k->tier = rand_r(seed) % 3 ? SW_TIER_HOST : SW_TIER_GPU;
		CHECK((k->tier == SW_TIER_GPU ? (k->dev = calloc(1, xb)) : (k->host = calloc(1, xb))));
	}
	if (carry_dev)
		CHECK((ex->carry_dev = calloc(M, xb)));
	else
		CHECK((ex->carry_host = calloc(M, xb)));
	return ex;
}

static void free_exec(sw_exec *ex)
{
	for (int i = 0; i < L * M; i++) {
		free(ex->ck[i].dev);
		free(ex->ck[i].host);
	}
	free(ex->ck);
	free(ex->carry_dev);
	free(ex->carry_host);
	for (int i = 0; i < 2 + SW_PLAN_XC; i++)
		free(xbuf[i]);
	free(ex);
	nlog = 0;
	memset(&host, 0, sizeof(host));
	for (int i = 0; i < 3; i++)
		memset(&streams[i].now, 0, sizeof(vclock));
}

/* forward_pass (keep): the embedding, then each layer saving its input; saved: call
 * exec_ckpt_saved before the carry is written (0: the control without it). */
static void forward(sw_exec *ex, int saved)
{
	for (int m = 0; m < M; m++) {
		kernel(ex, NULL, NULL, ex->xo);
		exec_carry_put(ex, m, ex->xo);
	}
	for (int l = 0; l < L; l++)
		for (int m = 0; m < M; m++) {
			void *x = exec_carry_get(ex, m);
			CHECK(exec_ckpt_save(ex, l, m, x) == 0);
			kernel(ex, x, NULL, ex->xo);
			if (saved)
				exec_ckpt_saved(ex);
			else
				ex->ck_out_pending = 0;
			exec_carry_put(ex, m, ex->xo);
		}
}

/* exec_backward_pass: recompute_top (a second pass), the head, the layers top-down (keep_late:
 * the control whose reader of a checkpoint is queued after the next get), the embedding. */
static void backward(sw_exec *ex, int recompute_top, int keep_late)
{
	exec_ckpt_bwd_begin(ex);
	if (recompute_top)
		for (int m = 0; m < M; m++) {
			void *x;
			CHECK(exec_ckpt_get(ex, L - 1, m, &x) == 0);
			kernel(ex, x, NULL, ex->xo);
			exec_carry_put(ex, m, ex->xo);
		}
	for (int m = 0; m < M; m++) {
		void *x = exec_carry_get(ex, m);
		kernel(ex, x, NULL, ex->xo);
		exec_carry_put(ex, m, ex->xo);
	}
	void *prev = NULL;
	for (int l = L - 1; l >= 0; l--)
		for (int m = 0; m < M; m++) {
			void *x;
			CHECK(exec_ckpt_get(ex, l, m, &x) == 0);
			if (keep_late && ex->ck[l * M + m].tier != SW_TIER_GPU) {
				if (prev)   /* the checkpoint got by the get before, read only now */
					kernel(ex, prev, NULL, NULL);
				prev = x;
			}
			void *dres = exec_carry_get(ex, m);
			kernel(ex, x, dres, dres);
			exec_carry_put(ex, m, dres);
		}
	for (int m = 0; m < M; m++)
		kernel(ex, exec_carry_get(ex, m), NULL, NULL);
}

static void step_end(sw_exec *ex)
{
	f_stream_sync(ex->be, ex->cs);
	f_stream_sync(ex->be, ex->hs);
	f_stream_sync(ex->be, ex->ds);
}

static int count_host(const sw_exec *ex)
{
	int n = 0;
	for (int i = 0; i < L * M; i++)
		n += ex->ck[i].tier == SW_TIER_HOST;
	return n;
}

int main(void)
{
	int runs = 0;
	for (unsigned s = 1; s <= 200; s++) {
		unsigned seed = s;
		int carry_dev = s % 2, passes = 1 + (s / 2) % 2, ck_streams = s % 7 != 0;
		sw_exec *ex = fake_exec(&seed, carry_dev, ck_streams);
		race_what = "steps";
		for (int step = 0; step < 3; step++) {
			forward(ex, 1);
			for (int p = 0; p < passes; p++)
				backward(ex, p > 0, 0);
			step_end(ex);
		}
		CHECKF(races == 0, "seed %u (carry on the %s, %d passes, SW_CKPT_STREAMS=%d): %d races",
		       s, carry_dev ? "device" : "host", passes, ck_streams, races);
		free_exec(ex);
		runs++;
	}
	printf("  ok %d random placements, 3 steps each: no race between the copy streams and the "
	       "compute\n", runs);

	/* the controls: the model must see these */
	verbose = 0;
	int fwd_races = 0, bwd_races = 0, tried = 0;
	for (unsigned s = 1; s <= 40; s++) {
		unsigned seed = s;
		sw_exec *ex = fake_exec(&seed, s % 2, 1);
		if (count_host(ex) < 4) {
			free_exec(ex);
			continue;
		}
		tried++;
		race_what = "control: no exec_ckpt_saved";
		races = 0;
		forward(ex, 0);
		fwd_races += races > 0;
		step_end(ex);
		forward(ex, 1);
		race_what = "control: a reader after the next get";
		races = 0;
		backward(ex, 0, 1);
		bwd_races += races > 0;
		races = 0;
		free_exec(ex);
	}
	CHECK(tried > 0);
	CHECKF(fwd_races == tried, "the forward without exec_ckpt_saved raced in %d of %d", fwd_races, tried);
	CHECKF(bwd_races == tried, "a late reader raced in %d of %d", bwd_races, tried);
	printf("  ok controls: without exec_ckpt_saved and with a reader after the next get, the model "
	       "sees a race (%d of %d placements each)\n", fwd_races, tried);
	return 0;
}
