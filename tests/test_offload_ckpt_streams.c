/* The checkpoint copies' stream order (offload/exec_ckpt.c), and the gradient buffers' (their
 * reuse, sums of squares and resident updates on the gradient stream as: offload/exec_step.c),
 * checked against a model of CUDA streams and events, which the CPU backend (every op
 * synchronous) cannot show: a fake backend
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

#include <pthread.h>
#include <stdint.h>
#include <string.h>

enum { NS = 5, LOGMAX = 1 << 16, L = 4, M = 3, NTOK = 8, DIM = 16 };

typedef struct vclock { uint64_t t[NS]; } vclock;
struct sw_stream { int id; vclock now; };
struct sw_event { int recorded; vclock at; };
typedef struct access { const char *p; uint64_t n; int write, stream; vclock at; } access;

static struct sw_stream streams[4] = { { 0, { { 0 } } }, { 1, { { 0 } } }, { 2, { { 0 } } },
				       { 3, { { 0 } } } };
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

/* A new executor: no accesses logged, every clock back to zero. */
static void model_reset(void)
{
	nlog = 0;
	memset(&host, 0, sizeof(host));
	for (int i = 0; i < 4; i++)
		memset(&streams[i].now, 0, sizeof(vclock));
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

/* The gradient path's kernels: what each reads and writes. */
static void f_memset0(sw_backend *be, sw_stream *s, void *dst, uint64_t n)
{
	(void)be;
	touch(s, op_begin(s), dst, n, 1);
}
static void f_sumsq(sw_backend *be, sw_stream *s, double *out, const float *x, int64_t n)
{
	(void)be;
	vclock at = op_begin(s);
	touch(s, at, x, (uint64_t)n * 4, 0);
	touch(s, at, out, 8, 1);
}
static void f_adamw(sw_backend *be, sw_stream *s, float *p32, float *m, float *v, const float *g,
		    void *p16, int64_t n, const sw_adamw_args *a)
{
	(void)be, (void)a;
	vclock at = op_begin(s);
	touch(s, at, g, (uint64_t)n * 4, 0);
	touch(s, at, p32, (uint64_t)n * 4, 1);
	touch(s, at, m, (uint64_t)n * 4, 1);
	touch(s, at, v, (uint64_t)n * 4, 1);
	touch(s, at, p16, (uint64_t)n * 2, 1);
}

static sw_backend_ops fake_ops = { .event_record = f_record, .stream_wait = f_wait,
				   .event_sync = f_event_sync, .stream_sync = f_stream_sync,
				   .copy_h2d = f_copy, .copy_d2h = f_copy, .copy_d2d = f_copy,
				   .memset0 = f_memset0, .sumsq = f_sumsq, .adamw = f_adamw };
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
	model_reset();
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

/* ---- the gradient buffers -------------------------------------------------------------- */
enum { GG = 6, GN = 64, NGB = 3 };   /* groups (embedding, 4 layers, head), elements each;
					* at most NGB gradient buffers */
static int ngb = 2;                   /* the gradient buffers of the executors made now */

static struct sw_event gev[2 * NGB + 4 + OPT_HG];

/* Group gi's size: smaller than the buffers but for every third group (a buffer holds what
 * earlier groups wrote past this group's elements). */
static int64_t gsize(int gi) { return GN - 8 * (gi % 3); }
static sw_plan gplan;   /* two optimizer slots: exec_opt_send asks which one a step writes */

/* An executor of GG groups, each on the GPU (resident: GPU AdamW, its gradient held in ghold
 * by a speculative pass) or updated on the host (its gradient copied to pinned memory), at
 * random; tied: the embedding's gradient in its own buffer from the head on. */
static sw_exec *grad_exec(unsigned *seed, int tied, sw_table *tt, sw_tensor *tv, sw_group *gv)
{
	sw_exec *ex = calloc(1, sizeof(*ex));
	CHECK(ex);
	memset(tt, 0, sizeof(*tt));
	for (int gi = 0; gi < GG; gi++) {
		tv[gi] = (sw_tensor){ .group = gi, .numel = gsize(gi), .offset = 0, .decay = 1 };
		gv[gi] = (sw_group){ .first = gi, .count = 1, .numel = gsize(gi) };
	}
	tt->t = tv;
	tt->n = GG;
	tt->g = gv;
	tt->ngroups = GG;
	tt->max_group_numel = GN;
	ex->be = &fake_be;
	ex->tt = tt;
	ex->G = GG;
	ex->H = GG - 1;
	ex->L = GG - 2;
	ex->ab = 2;
	ex->tied = tied;
	ex->cs = &streams[0];
	ex->hs = &streams[1];
	ex->ds = &streams[2];
	ex->as = &streams[3];
	ex->poison_step = -1;
	gplan.in.slots = 2;
	ex->p = &gplan;
	memset(gev, 0, sizeof(gev));
	ex->as_ev = &gev[NGB];
	ex->as_tail = &gev[NGB + 1];
	ex->tgrad_free = &gev[NGB + 2 + OPT_HG];
	ex->held_ev = &gev[2 * NGB + 3 + OPT_HG];
	ex->ngb = ngb;
	CHECK((ex->gbuf = calloc(NGB, sizeof(float *))) && (ex->gb_free = calloc(NGB, sizeof(sw_event *))) &&
	      (ex->gb_sums = calloc(NGB, sizeof(sw_event *))) && (ex->gb_released = calloc(NGB, 1)));
	for (int k = 0; k < ngb; k++) {
		CHECK((ex->gbuf[k] = calloc(GN, 4)));
		ex->gb_free[k] = &gev[k];
		ex->gb_sums[k] = &gev[NGB + 3 + OPT_HG + k];
	}
	ex->nhg = OPT_HG;
	for (int i = 0; i < OPT_HG; i++) {
		CHECK((ex->hgrad[i] = calloc(GN, 4)));
		ex->hgrad_ev[i] = &gev[NGB + 2 + i];
	}
	CHECK((ex->dsum = calloc(GG, 8)) && (ex->upd_sent = calloc(GG, 8)) && (ex->g = calloc(GG, sizeof(grp))));
	CHECK(tied ? (ex->tgrad = calloc(GN, 4)) != NULL : 1);
	pthread_mutex_init(&ex->mu, NULL);
	pthread_cond_init(&ex->cv, NULL);
	for (int gi = 0; gi < GG; gi++) {
		grp *g = &ex->g[gi];
		g->opt_tier = rand_r(seed) % 2 ? SW_TIER_GPU : SW_TIER_HOST;
		if (g->opt_tier == SW_TIER_GPU) {
			CHECK((g->p16_dev = calloc(GN, 2)) && (g->ghold = calloc(GN, 4)));
			for (int k = 0; k < 3; k++)
				CHECK((g->opt_dev[k] = calloc(GN, 4)));
		} else if (rand_r(seed) % 2) {
			/* one NVMe slot: a speculative pass holds its gradient in pinned memory */
			CHECK((g->hheld = calloc(GN, 4)));
		}
	}
	return ex;
}

static void grad_free(sw_exec *ex)
{
	for (int gi = 0; gi < GG; gi++) {
		free(ex->g[gi].p16_dev);
		free(ex->g[gi].ghold);
		free(ex->g[gi].hheld);
		for (int k = 0; k < 3; k++)
			free(ex->g[gi].opt_dev[k]);
	}
	for (int k = 0; k < ngb; k++)
		free(ex->gbuf[k]);
	for (int i = 0; i < OPT_HG; i++)
		free(ex->hgrad[i]);
	free(ex->gbuf);
	free(ex->gb_free);
	free(ex->gb_sums);
	free(ex->gb_released);
	free(ex->dsum);
	free(ex->upd_sent);
	free(ex->tgrad);
	free(ex->g);
	pthread_mutex_destroy(&ex->mu);
	pthread_cond_destroy(&ex->cv);
	free(ex);
	model_reset();
}

/* M micro-batches of a group's backward on cs: read its weights, accumulate into gb (a
 * layer's first micro-batch writes it without reading: SW_BWD_DW_SET). */
static void grad_kernels(sw_exec *ex, int gi, float *gb)
{
	for (int m = 0; m < M; m++) {
		vclock at = op_begin(ex->cs);
		if (ex->g[gi].p16_dev)
			touch(ex->cs, at, ex->g[gi].p16_dev, (uint64_t)gsize(gi) * 2, 0);
		if (m || gi == 0 || gi == GG - 1)
			touch(ex->cs, at, gb, (uint64_t)gsize(gi) * 4, 0);
		touch(ex->cs, at, gb, (uint64_t)gsize(gi) * 4, 1);
	}
}

/* The optimizer thread takes the queued updates (it reads the pinned gradients on the host,
 * after their copies: not modelled) and frees their buffers. */
static void grad_opt_take(sw_exec *ex)
{
	ex->qn = 0;
	ex->qhead = 0;
	for (int i = 0; i < OPT_HG; i++)
		ex->hgrad_busy[i] = 0;
}

/* One step as exec_backward_pass and exec_clip drive the gradients (a speculative pass copies
 * the held groups' gradients to pinned memory, their updates deferred), and whether a group's
 * backward waited for the sums and updates of the group above it, which should run beside it: the forward reads every
 * resident group's P16; a pass from the head down (bwd_head takes the head's buffer, then the
 * tied embedding's; update 0: the first of two passes, no update; spec: a speculative pass,
 * whose resident groups' gradients are held and updated after the norm, on cs); join:
 * exec_grad_join at the pass's end (0: the control without it); then the norm's read of the
 * sums on cs. */
static int cs_waited;   /* times the compute stream waited for a group's sum or update */
static int reused;      /* begins that took a buffer released by the group before */

static void grad_step(sw_exec *ex, int spec, int update, int join)
{
	double ss[GG];
	uint64_t end_at = 0;   /* the gradient stream's clock before the last exec_grad_end */
	for (int gi = 0; gi < GG; gi++)
		if (ex->g[gi].p16_dev)
			touch(ex->cs, op_begin(ex->cs), ex->g[gi].p16_dev, GN * 2, 0);
	ex->spec_pass = spec;
	float *hg = exec_grad_begin(ex, GG - 1);
	float *eg = ex->tied ? exec_grad_begin(ex, 0) : NULL;
	for (int gi = GG - 1; gi >= 0; gi--) {
		/* a buffer's first use waits for everything before it (exec_grad_begin) */
		const int first_use = !ex->gb_released[ex->gb_next];
		float *gb = gi == GG - 1 ? hg : gi == 0 && eg ? eg : exec_grad_begin(ex, gi);
		if (gi == GG - 1 && eg)
			grad_kernels(ex, 0, eg);   /* the tied head adds to the embedding's gradient */
		grad_kernels(ex, gi, gb);
		/* the group above's sums and update (after end_at on as) run beside this backward */
		cs_waited += !first_use && gi < GG - 1 && ex->cs->now.t[ex->as->id] > end_at;
		reused += !first_use && gi < GG - 1 && !(gi == 0 && eg) && !(spec && ex->g[gi].ghold);
		end_at = ex->as->now.t[ex->as->id];
		exec_grad_end(ex, gi, gb, update, 1.0);
		grad_opt_take(ex);
	}
	if (join)
		exec_grad_join(ex);
	ex->spec_pass = 0;
	f_copy(ex->be, ex->cs, ss, ex->dsum, sizeof(ss));
	f_stream_sync(ex->be, ex->cs);
	if (spec && update)
		for (int gi = 0; gi < GG; gi++)
			if (ex->g[gi].opt_tier == SW_TIER_GPU)
				exec_gpu_update(ex, ex->cs, gi, ex->tied && gi == 0 ? ex->tgrad : ex->g[gi].ghold, 1.0);
}

static void grad_model(void)
{
	sw_table tt;
	sw_tensor tv[GG];
	sw_group gv[GG];
	int runs = 0;
	verbose = 1;
	race_what = "gradients";
	/* one, two and three gradient buffers; with one, the next group needs the very buffer the
	 * group above released, so its backward waits for that buffer's readers by design */
	for (ngb = 1; ngb <= NGB; ngb++)
		for (unsigned s = 1; s <= 100; s++) {
			unsigned seed = s;
			sw_exec *ex = grad_exec(&seed, s % 3 == 0, &tt, tv, gv);
			races = 0;
			cs_waited = 0;
			for (int step = 0; step < 3; step++)
				grad_step(ex, (s + step) % 2, (s / 2 + step) % 3 != 0, 1);
			CHECKF(races == 0, "seed %u (tied %d, %d gradient buffers): %d races on the gradient "
			       "path", s, s % 3 == 0, ngb, races);
			CHECKF(ngb == 1 || cs_waited == 0, "seed %u (%d gradient buffers): the compute stream "
			       "waited for the group above's sums or update %d times", s, ngb, cs_waited);
			grad_free(ex);
			runs++;
		}
	ngb = 2;
	CHECKF(reused > 0, "no group took a buffer released by an earlier group (grad_release)");
	printf("  ok %d random gradient placements with 1, 2 and 3 gradient buffers, 3 steps each (plain, "
	       "speculative and no-update passes): no race between the gradient stream, the copies and "
	       "the compute\n", runs);
	/* the control: without the pass's join, the norm's read and the next step's P16 reads race
	 * with the sums and updates on as */
	verbose = 0;
	int seen = 0;
	for (unsigned s = 1; s <= 20; s++) {
		unsigned seed = s;
		sw_exec *ex = grad_exec(&seed, 0, &tt, tv, gv);
		races = 0;
		grad_step(ex, 0, 1, 0);
		grad_step(ex, 0, 1, 0);
		seen += races > 0;
		grad_free(ex);
	}
	CHECKF(seen == 20, "without exec_grad_join the model saw a race in %d of 20 placements", seen);
	printf("  ok control: without the pass's join the model sees a race (20 of 20)\n");
	races = 0;
	verbose = 1;
}

int main(void)
{
	grad_model();
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
