/* The executor's life: sw_exec_create allocates the plan's buffer table by one loop over its
 * rows and checks what each allocator took against it cell by cell; sw_exec_destroy frees it. */
#include "offload/exec_int.h"
#include "core/log.h"
#include "core/cli.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t sw_exec_chunk(const sw_plan *p, const sw_table *tt)
{
	(void)tt;
	return p->chunk_params;
}

/* ---------------------------------------------------------------- measurement ---------- */

/* ---------------------------------------------------------------- allocation ----------- */

static int dalloc(sw_exec *ex, uint64_t bytes, void *out)
{
	return ex->be->ops->dev_alloc(ex->be, bytes ? bytes : 1, (void **)out);
}

static int halloc(sw_exec *ex, uint64_t bytes, void *out)
{
	bytes = (bytes + 4095) / 4096 * 4096;
	int rc = ex->be->ops->host_alloc(ex->be, bytes, (void **)out);
	if (!rc)
		ex->host_bytes += bytes;
	return rc;
}

uint64_t sw_exec_host_bytes(const sw_exec *ex) { return ex->host_bytes; }

void sw_exec_taken(const sw_exec *ex, uint64_t out[SW_TIER_COUNT][SW_PURPOSE_COUNT])
{
	memcpy(out, ex->took, sizeof(ex->took));
}

uint64_t exec_up4k(uint64_t b) { return (b + 4095) / 4096 * 4096; }

static int ealloc(sw_exec *ex, uint64_t bytes, sw_io_extent *e)
{
	if (!ex->io) {
		sw_error("executor: the plan puts state on NVMe but no --nvme path is open");
		return -EINVAL;
	}
	return sw_io_extent_alloc(ex->io, exec_up4k(bytes), e);
}

/* ---------------------------------------------------------------- the buffer table ----- */

/* Where buffer i of row b goes (memory tiers). */
static void **buf_mem(sw_exec *ex, const sw_plan_buf *b, int64_t i)
{
	grp *g = b->owner >= 0 ? &ex->g[b->owner] : NULL;
	int gpu = b->tier == SW_TIER_GPU;
	switch (b->kind) {
	case SW_BUF_P16: return gpu ? &g->p16_dev : &g->p16_host;
	case SW_BUF_OPT: return (void **)(gpu ? &g->opt_dev[b->state] : &g->opt_host[b->state]);
	case SW_BUF_CARRY: return gpu ? &ex->carry_dev : &ex->carry_host;
	case SW_BUF_WINDOW: return &ex->win[i];
	case SW_BUF_GRAD: return (void **)&ex->gbuf[i];
	case SW_BUF_HOST_GRAD: return (void **)&ex->hgrad[i];
	case SW_BUF_TIED_GRAD: return (void **)&ex->tgrad;
	case SW_BUF_XIO: return i == 0 ? &ex->xa : i == 1 ? &ex->xo : &ex->xc[i - 2];
	case SW_BUF_TOKENS: return i == 0 ? (void **)&ex->tok : i == 1 ? (void **)&ex->tgt : (void **)&ex->losses;
	case SW_BUF_INV_FREQ: return (void **)&ex->inv_freq;
	case SW_BUF_NORM_SUMS: return (void **)&ex->dsum;
	case SW_BUF_HEAD_NORM: return &ex->head_small;
	case SW_BUF_STAGE_P16: return &ex->p16_stage[i];
	case SW_BUF_STAGE_OPT: return &ex->opt_stage[i];
	case SW_BUF_STAGE_CKPT: return &ex->ck_stage[i];
	case SW_BUF_XFER: return (void **)&ex->xfer;
	case SW_BUF_HELD_GRAD: return (void **)(gpu ? &g->ghold : &g->hheld);
	case SW_BUF_STATE_B: return (void **)&g->alt[b->state];
	default: return NULL;
	}
}

static int alloc_one(sw_exec *ex, const sw_plan_buf *b, int64_t i)
{
	if (b->tier == SW_TIER_NVME) {
		grp *g = &ex->g[b->owner];
		SW_ASSERT(b->kind == SW_BUF_P16 || b->kind == SW_BUF_OPT);
		return ealloc(ex, b->bytes, b->kind == SW_BUF_P16 ? &g->p16_ext : &g->opt_ext[b->slot][b->state]);
	}
	void **dst = buf_mem(ex, b, i);
	SW_ASSERT(dst && !*dst);
	return b->tier == SW_TIER_GPU ? dalloc(ex, b->bytes, dst) : halloc(ex, b->bytes, dst);
}

/* The checkpoints the plan puts on the row's tier, in (layer, micro-batch) order. */
static int alloc_ckpts(sw_exec *ex, const sw_plan_buf *b)
{
	int64_t n = 0;
	for (int i = 0; i < ex->L * ex->M; i++) {
		ckpt *k = &ex->ck[i];
		if (k->tier != b->tier)
			continue;
		int rc = b->tier == SW_TIER_GPU ? dalloc(ex, b->bytes, &k->dev) :
			 b->tier == SW_TIER_HOST ? halloc(ex, b->bytes, &k->host) : ealloc(ex, b->bytes, &k->ext);
		if (rc)
			return rc;
		n++;
	}
	SW_ASSERT(n == b->count);
	return 0;
}

/* Bytes the tier's allocator has handed out so far (the GPU arena's own count, pinned host
 * pages, the NVMe engine's extents with their alignment skips). */
static uint64_t tier_taken(const sw_exec *ex, sw_tier t)
{
	if (t == SW_TIER_GPU)
		return ex->be->used;
	if (t == SW_TIER_HOST)
		return ex->host_bytes;
	return ex->io ? sw_io_allocated(ex->io) : 0;
}

static int alloc_row(sw_exec *ex, const sw_plan_buf *b)
{
	uint64_t before = tier_taken(ex, b->tier);
	int rc = 0;
	if (b->kind == SW_BUF_SCRATCH)
		rc = sw_layer_scratch_alloc(ex->be, &ex->d, &ex->s);
	else if (b->kind == SW_BUF_CKPT)
		rc = alloc_ckpts(ex, b);
	else if (b->kind == SW_BUF_KEEP)
		rc = exec_keep_alloc(ex, b);
	else
		for (int64_t i = 0; i < b->count && !rc; i++)
			rc = alloc_one(ex, b, i);
	ex->took[b->tier][b->purpose] += tier_taken(ex, b->tier) - before;
	return rc;
}

/* What the allocation took against the plan's table, cell by cell: any difference is a bug. */
static int alloc_check(sw_exec *ex)
{
	uint64_t want[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	sw_plan_allocated(ex->p, want);
	int rc = 0;
	for (int t = 0; t < SW_TIER_COUNT; t++)
		for (int u = 0; u < SW_PURPOSE_COUNT; u++)
			if (ex->took[t][u] != want[t][u]) {
				sw_error("executor: internal error: %s %s took %llu bytes, the plan's buffer "
					 "table says %llu; please report this", sw_plan_tier_name((sw_tier)t),
					 sw_plan_purpose_name((sw_plan_purpose)u),
					 (unsigned long long)ex->took[t][u], (unsigned long long)want[t][u]);
				rc = -EPROTO;
			}
	return rc;
}

/* The step boundary's switches (exec_int.h): SW_STEP_OVERLAP=0 and SW_OPT_READ_AHEAD=0 turn
 * the overlap and the read-ahead off (SW_OPT_READ_AHEAD=boundary: only the step boundary's,
 * none from one NVMe group to the next within a pass), SW_OPT_WRITE_BEHIND=0 makes each NVMe
 * group's writes land before the optimizer goes on, SW_OPT_ORDER=fifo runs the waiting
 * host-state updates in arrival order, SW_CKPT_STREAMS=0 copies host checkpoints on the compute
 * stream, SW_CKPT_URGENT=0 queues NVMe checkpoint writes behind the optimizer's writes (for
 * comparison: all give the same bits); the test hooks SW_TEST_DELAY_ADAM=MS:GROUP
 * and SW_TEST_NO_WAIT=1. */
static void exec_boundary_init(sw_exec *ex)
{
	const char *ov = getenv("SW_STEP_OVERLAP"), *ra = getenv("SW_OPT_READ_AHEAD");
	const char *dl = getenv("SW_TEST_DELAY_ADAM"), *nw = getenv("SW_TEST_NO_WAIT");
	const char *od = getenv("SW_OPT_ORDER");
	ex->overlap = !(ov && !strcmp(ov, "0"));
	ex->first_needed = !(od && !strcmp(od, "fifo"));
	ex->read_ahead = !ex->overlap || (ra && !strcmp(ra, "0")) ? RA_OFF
			 : ra && !strcmp(ra, "boundary") ? RA_BOUNDARY : RA_PASS;
	const char *wb = getenv("SW_OPT_WRITE_BEHIND");
	ex->write_behind = !(wb && !strcmp(wb, "0"));
	const char *cks = getenv("SW_CKPT_STREAMS");
	ex->ck_streams = !(cks && !strcmp(cks, "0"));
	const char *cku = getenv("SW_CKPT_URGENT");
	ex->ck_urgent = !(cku && !strcmp(cku, "0"));
	ex->delay_group = -1;
	if (dl && sscanf(dl, "%d:%d", &ex->delay_ms, &ex->delay_group) != 2)
		ex->delay_group = -1;
	ex->no_wait = nw && !strcmp(nw, "1");
}

/* The read-ahead's group: a step's first NVMe update (the highest group: the backward runs
 * from the head down). Off when a group with host state has its P16 on NVMe: its update
 * bounces P16 through the staging sets. */
static void exec_boundary_plan(sw_exec *ex)
{
	ex->ra_first = ex->ra_last = -1;
	for (int gi = 0; gi < ex->G; gi++) {
		if (ex->g[gi].opt_tier == SW_TIER_NVME) {
			ex->ra_first = gi;
			if (ex->ra_last < 0)
				ex->ra_last = gi;
		}
		if (ex->g[gi].opt_tier == SW_TIER_HOST && ex->g[gi].p16_tier == SW_TIER_NVME)
			ex->read_ahead = RA_OFF;
	}
	if (ex->ra_first < 0)
		ex->read_ahead = RA_OFF;
}

/* Buffer counts from the table, and the arrays that hold them. */
static int table_counts(sw_exec *ex)
{
	const sw_plan *p = ex->p;
	for (int r = 0; r < p->nbuf; r++) {
		const sw_plan_buf *b = &p->buf[r];
		int c = (int)b->count;
		switch (b->kind) {
		case SW_BUF_WINDOW: ex->K = c; break;
		case SW_BUF_GRAD: ex->ngb = c; break;
		case SW_BUF_HOST_GRAD: ex->nhg = c; break;
		case SW_BUF_STAGE_CKPT: ex->ck_nslot = c; break;
		case SW_BUF_STAGE_OPT: ex->nset = c; break;
		default: break;
		}
	}
	SW_ASSERT(ex->nhg <= OPT_HG && ex->ck_nslot <= CK_MAX_SLOTS && ex->K <= SW_WINDOW_MAX &&
		  ex->nset <= OPT_SETS_MAX);
	ex->g = calloc((size_t)ex->G, sizeof(grp));
	ex->ck = calloc((size_t)ex->L * (size_t)ex->M, sizeof(ckpt));
	ex->streamed = calloc((size_t)ex->G, 1);
	ex->upd_sent = calloc((size_t)ex->G, sizeof(int64_t));
	ex->upd_p16 = calloc((size_t)ex->G, sizeof(int64_t));
	ex->gbuf = calloc((size_t)ex->ngb + 1, sizeof(float *));
	ex->gb_free = calloc((size_t)ex->ngb + 1, sizeof(sw_event *));
	ex->gb_sums = calloc((size_t)ex->ngb + 1, sizeof(sw_event *));
	ex->gb_released = calloc((size_t)ex->ngb + 1, 1);
	ex->win = calloc((size_t)ex->K + 1, sizeof(void *));
	ex->win_ready = calloc((size_t)ex->K + 1, sizeof(sw_event *));
	ex->win_free = calloc((size_t)ex->K + 1, sizeof(sw_event *));
	if (!ex->g || !ex->ck || !ex->streamed || !ex->upd_sent || !ex->upd_p16 || !ex->gbuf ||
	    !ex->gb_free || !ex->gb_sums || !ex->gb_released || !ex->win || !ex->win_ready || !ex->win_free)
		return -ENOMEM;
	for (int gi = 0; gi < ex->G; gi++) {
		ex->g[gi].p16_tier = p->tier[gi][SW_STATE_P16];
		ex->g[gi].opt_tier = p->tier[gi][SW_STATE_P32];
		ex->streamed[gi] = ex->g[gi].p16_tier != SW_TIER_GPU;
	}
	for (int l = 0; l < ex->L; l++)
		for (int m = 0; m < ex->M; m++)
			ex->ck[l * ex->M + m].tier = sw_plan_ckpt_tier(p, l, m);
	sw_window_init(&ex->sched, ex->K);
	exec_boundary_plan(ex);
	ex->tabled = 1;
	return 0;
}

/* The events that hand the buffers over (offload/exec.c's header). */
static int events_create(sw_exec *ex)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int rc = 0;
	for (int i = 0; i < ex->ngb && !rc; i++)
		if (!(rc = op->event_create(be, &ex->gb_free[i])))
			rc = op->event_create(be, &ex->gb_sums[i]);
	for (int i = 0; i < ex->K && !rc; i++)
		if (!(rc = op->event_create(be, &ex->win_ready[i])))
			rc = op->event_create(be, &ex->win_free[i]);
	for (int i = 0; i < ex->nhg && !rc; i++)
		rc = op->event_create(be, &ex->hgrad_ev[i]);
	for (int i = 0; i < ex->ck_nslot && !rc; i++)
		rc = op->event_create(be, &ex->ck_ev[i]);
	for (int i = 0; i < SW_PLAN_P16_STAGES && !rc && ex->p16_stage[0]; i++)
		rc = op->event_create(be, &ex->p16_ev[i]);
	if (!rc)
		rc = op->event_create(be, &ex->held_ev);
	if (!rc)
		rc = op->event_create(be, &ex->as_ev);
	if (!rc)
		rc = op->event_create(be, &ex->as_tail);
	if (!rc)
		rc = op->event_create(be, &ex->tgrad_free);
	sw_event **ck[] = { &ex->ck_out_ready, &ex->ck_out_done };
	for (size_t i = 0; i < sizeof(ck) / sizeof(ck[0]) && !rc; i++)
		rc = op->event_create(be, ck[i]);
	for (int b = 0; b < SW_PLAN_XC && !rc; b++)
		if (!(rc = op->event_create(be, &ex->xc_free[b])))
			rc = op->event_create(be, &ex->xc_ready[b]);
	/* device spans per step: forward ~2 per layer and micro-batch (checkpoint out, compute),
	 * each backward pass ~4 (checkpoint in, compute, carry), two passes with clipping, plus a
	 * fetch and a gradient copy per group; two events each. Overflow drops spans (counted,
	 * warned about once: the busy times would undercount) */
	ex->maxsev = 2 * (2 + 4 * 2 + 2) * (ex->G + 2) * (ex->M + 2) + 64;
	ex->sev = calloc((size_t)ex->maxsev, sizeof(sw_event *));
	ex->strack = calloc((size_t)ex->maxsev, sizeof(int));
	if (!rc && (!ex->sev || !ex->strack))
		rc = -ENOMEM;
	for (int i = 0; i < ex->maxsev && !rc; i++)
		rc = op->event_create(be, &ex->sev[i]);
	return rc;
}

void *exec_opt_thread(void *arg);

/* The optimizer thread (when any group is updated by the CPU) and the trace file. */
static int start_side(sw_exec *ex)
{
	if (ex->nhg) {
		ex->pool = sw_pool_create(ex->o.cpu_threads, NULL);
		if (!ex->pool)
			return -ENOMEM;
		int rc = -pthread_create(&ex->thr, NULL, exec_opt_thread, ex);
		if (rc)
			return rc;
		ex->thr_started = 1;
	}
	if (!ex->o.trace)
		return 0;
	ex->trace = fopen(ex->o.trace, "w");
	if (!ex->trace) {
		int rc = -errno;
		sw_error("trace %s: %s; give a writable --trace path", ex->o.trace, strerror(errno));
		return rc;
	}
	fprintf(ex->trace, "{\"traceEvents\":[\n");
	for (int t = 0; t < SW_TRACK_COUNT; t++)
		fprintf(ex->trace, "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
			"\"args\":{\"name\":\"%s\"}}", t ? ",\n" : "", t + 1, exec_track_name[t]);
	fprintf(ex->trace, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
		"\"args\":{\"name\":\"step\"}}", SW_TRACK_COUNT + 1);
	ex->trace_first = 0;
	return exec_sampler_start(ex);
}

int sw_exec_create(sw_backend *be, const sw_table *tt, const sw_plan *plan, sw_io *io,
		   const sw_exec_opts *o, sw_exec **out)
{
	sw_exec *ex = calloc(1, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	ex->be = be;
	ex->tt = tt;
	ex->p = plan;
	ex->io = io;
	ex->o = *o;
	ex->L = (int)tt->cfg.n_layers;
	ex->M = (int)plan->n_micro;
	ex->G = tt->ngroups;
	ex->H = ex->G - 1;
	ex->ab = sw_dtype_size(be->act);
	ex->tied = tt->cfg.tie_embeddings;
	ex->d = sw_dims_make(&tt->cfg, (int)plan->in.micro_rows, (int)plan->in.seq_len);
	ex->chunk = plan->chunk_params;
	ex->t_origin = sw_now();
	ex->ck_ra_l = -1;
	ex->clip_mode = o->clip <= 0 ? 0 : plan->speculative ? 1 : 2;
	exec_clip_init(ex);
	ex->poison_step = -1;
	ex->grad_fill_nan = sw_test_grad_fill_nan();
	const char *poison = getenv("SW_TEST_POISON_GRAD");
	long long pstep;
	int pgroup;
	if (poison && sscanf(poison, "%lld:%d", &pstep, &pgroup) == 2) {
		ex->poison_step = pstep;
		ex->poison_group = pgroup;
	}
	exec_boundary_init(ex);
	pthread_mutex_init(&ex->mu, NULL);
	pthread_cond_init(&ex->cv, NULL);
	pthread_mutex_init(&ex->smu, NULL);
	ex->trace_first = 1;
	const sw_backend_ops *op = be->ops;
	int rc = table_counts(ex);
	if (!rc && ((rc = op->stream_create(be, &ex->cs)) || (rc = op->stream_create(be, &ex->hs)) ||
		    (rc = op->stream_create(be, &ex->ds)) || (rc = op->stream_create(be, &ex->as)) ||
		    (rc = op->event_create(be, &ex->ev0))))
		goto err;
	/* every allocation: one loop over the plan's buffer table, in its order */
	for (int r = 0; r < plan->nbuf && !rc; r++)
		if (plan->buf[r].kind != SW_BUF_HELD)
			rc = alloc_row(ex, &plan->buf[r]);
	if (rc || (rc = alloc_check(ex)) || (rc = events_create(ex)))
		goto err;
	float inv[1024];
	SW_ASSERT(tt->cfg.head_dim / 2 <= 1024);
	sw_config_rope_inv_freq(&tt->cfg, inv);
	op->copy_h2d(be, ex->cs, ex->inv_freq, inv, (uint64_t)tt->cfg.head_dim / 2 * 4);
	op->stream_sync(be, ex->cs);
	if ((rc = start_side(ex)))
		goto err;
	*out = ex;
	return 0;
err:
	if (rc == -ENOMEM) {
		char b1[32], b2[32];
		sw_error("executor: out of memory allocating the placement (backend %s arena %s, %s in "
			 "use); raise --gpu-mem / --cpu-mem", be->name, sw_fmt_size(be->budget, b1, 32),
			 sw_fmt_size(be->used, b2, 32));
	}
	sw_exec_destroy(ex);
	return rc;
}

/* Frees the buffers of one row of the table (NVMe extents live until the engine closes). */
static void free_row(sw_exec *ex, const sw_plan_buf *b)
{
	sw_backend *be = ex->be;
	if (b->tier == SW_TIER_NVME || b->kind == SW_BUF_HELD)
		return;
	if (b->kind == SW_BUF_SCRATCH) {
		sw_layer_scratch_free(be, &ex->s);
		return;
	}
	if (b->kind == SW_BUF_KEEP) {
		exec_keep_free(ex, b);
		return;
	}
	int64_t n = b->kind == SW_BUF_CKPT ? (int64_t)ex->L * ex->M : b->count;
	for (int64_t i = 0; i < n; i++) {
		void **p = b->kind != SW_BUF_CKPT ? buf_mem(ex, b, i) :
			   b->tier == SW_TIER_GPU ? &ex->ck[i].dev : &ex->ck[i].host;
		if (!*p)
			continue;
		if (b->tier == SW_TIER_GPU)
			be->ops->dev_free(be, *p);
		else
			be->ops->host_free(be, *p);
		*p = NULL;
	}
}

static void events_destroy(sw_exec *ex)
{
	sw_backend *be = ex->be;
	sw_event **all[] = { ex->gb_free, ex->gb_sums, ex->win_ready, ex->win_free, ex->hgrad_ev,
			     ex->ck_ev, ex->p16_ev, ex->sev };
	int n[] = { ex->ngb, ex->ngb, ex->K, ex->K, OPT_HG, CK_MAX_SLOTS, SW_PLAN_P16_STAGES, ex->maxsev };
	for (size_t a = 0; a < sizeof(n) / sizeof(n[0]); a++)
		for (int i = 0; i < n[a] && all[a]; i++)
			if (all[a][i])
				be->ops->event_destroy(be, all[a][i]);
	if (ex->ev0)
		be->ops->event_destroy(be, ex->ev0);
	sw_event *one[] = { ex->held_ev, ex->as_ev, ex->as_tail, ex->tgrad_free };
	for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++)
		if (one[i])
			be->ops->event_destroy(be, one[i]);
	sw_event *ck[2 + 2 * SW_PLAN_XC] = { ex->ck_out_ready, ex->ck_out_done };
	for (int b = 0; b < SW_PLAN_XC; b++) {
		ck[2 + 2 * b] = ex->xc_free[b];
		ck[3 + 2 * b] = ex->xc_ready[b];
	}
	for (size_t i = 0; i < sizeof(ck) / sizeof(ck[0]); i++)
		if (ck[i])
			be->ops->event_destroy(be, ck[i]);
}

/* Stops the optimizer thread and waits for every stream and checkpoint transfer. */
static void quiesce(sw_exec *ex)
{
	sw_backend *be = ex->be;
	if (ex->thr_started) {
		pthread_mutex_lock(&ex->mu);
		ex->quit = 1;
		pthread_cond_broadcast(&ex->cv);
		pthread_mutex_unlock(&ex->mu);
		pthread_join(ex->thr, NULL);
	}
	sw_stream *st[] = { ex->cs, ex->hs, ex->ds, ex->as };
	for (int i = 0; i < 4; i++)
		if (st[i])
			be->ops->stream_sync(be, st[i]);
	exec_ck_drain(ex);
}

void sw_exec_destroy(sw_exec *ex)
{
	if (!ex)
		return;
	sw_backend *be = ex->be;
	quiesce(ex);
	exec_sampler_stop(ex);
	if (ex->trace) {
		exec_trace_flush(ex);
		fprintf(ex->trace, "\n]}\n");
		fclose(ex->trace);
	}
	/* every buffer: one loop over the table, as it was allocated */
	for (int r = 0; ex->tabled && r < ex->p->nbuf; r++)
		free_row(ex, &ex->p->buf[r]);
	events_destroy(ex);
	sw_stream *st[] = { ex->cs, ex->hs, ex->ds, ex->as };
	for (int i = 0; i < 4; i++)
		if (st[i])
			be->ops->stream_destroy(be, st[i]);
	if (ex->pool)
		sw_pool_destroy(ex->pool);
	void *arrays[] = { ex->g, ex->ck, ex->gbuf, ex->gb_free, ex->gb_sums, ex->gb_released, ex->win,
			   ex->streamed, ex->win_ready, ex->win_free, ex->sev, ex->strack, ex->spans, ex->upd_sent,
			   ex->upd_p16, ex->samp };
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		free(arrays[i]);
	pthread_mutex_destroy(&ex->mu);
	pthread_cond_destroy(&ex->cv);
	pthread_mutex_destroy(&ex->smu);
	free(ex);
}

