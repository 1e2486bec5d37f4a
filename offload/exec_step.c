/* One optimizer step: forward, the head, backward passes (as clipping drives them:
 * exec_clip.c), the updates on the device or through the optimizer queue. */
#include "offload/exec_int.h"
#include "core/log.h"
#include "optim/clip.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the step ------------- */

float *exec_grad_begin(sw_exec *ex, int gi)
{
	sw_backend *be = ex->be;
	if (ex->tied && gi == 0) {
		/* after its last reader: the step's end syncs ds, but say so here (the stream model,
		 * tests/test_offload_ckpt_streams.c, syncs less) */
		be->ops->stream_wait(be, ex->cs, ex->tgrad_free);
		be->ops->memset0(be, ex->cs, ex->tgrad, (uint64_t)ex->tt->g[0].numel * 4);
		return ex->tgrad;
	}
	if (ex->spec_pass && ex->g[gi].opt_tier == SW_TIER_GPU) {
		/* a speculative pass holds a resident group's gradient until the norm is known */
		SW_ASSERT(ex->g[gi].ghold);
		sw_grad_take(be, ex->cs, ex->tt, gi, ex->g[gi].ghold, ex->grad_fill_nan);
		return ex->g[gi].ghold;
	}
	/* a rotating buffer, after its last readers: the copy or update that released it
	 * (gb_free) and its sum of squares on as (gb_sums, recorded at the release; on as, so the
	 * compute stream waits for that group's sum, not for what as does after it). A buffer not
	 * released that way (its first use, or after a group that ended in an error) waits for
	 * everything on as. Layers then overwrite it; the embedding and the head zero their part
	 * here, on the compute stream (about 0.15 ms each at the 2.8B shape; a layer's zeroing,
	 * 0.25 ms of memory bandwidth beside the compute at every layer, is gone). */
	int k = ex->gb_next;
	ex->gb_next = (k + 1) % ex->ngb;
	if (ex->gb_released[k]) {
		be->ops->stream_wait(be, ex->cs, ex->gb_sums[k]);
		ex->gb_released[k] = 0;
	} else {
		be->ops->event_record(be, ex->as_ev, ex->as);
		be->ops->stream_wait(be, ex->cs, ex->as_ev);
	}
	be->ops->stream_wait(be, ex->cs, ex->gb_free[k]);
	sw_grad_take(be, ex->cs, ex->tt, gi, ex->gbuf[k], ex->grad_fill_nan);
	return ex->gbuf[k];
}

/* Group gi's gradient gb has its last reader queued on stream st: its free event recorded
 * there (gb_free[k] for a rotating buffer, tgrad_free for the tied embedding's; a held
 * resident gradient has none), and for a rotating buffer its sum of squares' end on as
 * (gb_sums[k]), which the buffer's next use waits for too (exec_grad_begin). */
static void grad_release(sw_exec *ex, const float *gb, sw_stream *st)
{
	sw_backend *be = ex->be;
	if (gb == ex->tgrad)
		be->ops->event_record(be, ex->tgrad_free, st);
	for (int k = 0; k < ex->ngb; k++)
		if (ex->gbuf[k] == gb) {
			be->ops->event_record(be, ex->gb_free[k], st);
			be->ops->event_record(be, ex->gb_sums[k], ex->as);
			ex->gb_released[k] = 1;
		}
}

/* GPU AdamW of resident group gi from gradient gb, on stream st. */
void exec_gpu_update(sw_exec *ex, sw_stream *st, int gi, const float *gb, double scale)
{
	sw_backend *be = ex->be;
	grp *g = &ex->g[gi];
	const sw_group *tg = &ex->tt->g[gi];
	for (int i = tg->first; i < tg->first + tg->count; i++) {
		const sw_tensor *t = &ex->tt->t[i];
		sw_adamw_args a = sw_adamw_args_make(&ex->o.adam, ex->lr, ex->step, t->decay, scale);
		be->ops->adamw(be, st, g->opt_dev[0] + t->offset, g->opt_dev[1] + t->offset,
			       g->opt_dev[2] + t->offset, gb + t->offset,
			       (char *)g->p16_dev + (uint64_t)t->offset * (uint64_t)ex->ab, t->numel, &a);
	}
}

/* At a backward pass's end: what it left on as (the last groups' sums and updates, as_tail
 * recorded by exec_grad_end) before anything after it on cs: the norm's read, a second pass,
 * the next step, a sync of cs. */
void exec_grad_join(sw_exec *ex)
{
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->as_tail);
}

/* The gradient of group gi is complete in gb: its sum of squares, and (update) its AdamW: on
 * the device (deferred to the end of a speculative pass: the gradient is held), or through the
 * optimizer queue (a speculative update writes host state to its second set). The sum of
 * squares and a resident group's AdamW run on as, beside the next group's backward (at the
 * 2.8B shape 0.16 ms and 1.2 ms a group on the H100, which the compute stream waited out:
 * the compute stream never waits for them before the pass's end, exec_grad_join); then the
 * buffer's release for its next use (grad_release). */
void exec_grad_end(sw_exec *ex, int gi, float *gb, int update, double scale)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int64_t n = ex->tt->g[gi].numel;
	if (ex->first_pass && ex->calls == ex->poison_step && gi == ex->poison_group) {
		static const float poison = NAN;   /* test hook: a non-finite gradient */
		op->copy_h2d(be, ex->cs, gb, &poison, 4);
	}
	op->event_record(be, ex->as_ev, ex->cs);
	op->stream_wait(be, ex->as, ex->as_ev);
	op->sumsq(be, ex->as, ex->dsum + gi, gb, n);
	const int gpu = update && ex->g[gi].opt_tier == SW_TIER_GPU;
	if (gpu && !ex->spec_pass)
		exec_gpu_update(ex, ex->as, gi, gb, scale);
	/* what exec_grad_join waits for: the sums and updates (the next use of a buffer waits for
	 * its copy itself) */
	op->event_record(be, ex->as_tail, ex->as);
	if (gpu) {
		if (!ex->spec_pass)   /* a speculative pass holds it until the norm (exec_clip.c) */
			grad_release(ex, gb, ex->as);
		return;
	}
	if (update && ex->spec_pass && ex->g[gi].hheld) {
		/* one NVMe slot: the gradient is held in pinned memory, the update waits for the norm;
		 * the last step's held update of this group has read it (the step boundary) */
		exec_group_wait(ex, gi);
		sw_event *e = ex->held_ev;
		op->event_record(be, e, ex->cs);
		op->stream_wait(be, ex->ds, e);
		int sp = exec_gspan_begin(ex, ex->ds, SW_TRACK_D2H);
		op->copy_d2h(be, ex->ds, ex->g[gi].hheld, gb, (uint64_t)n * 4);
		exec_gspan_end(ex, ex->ds, sp);
		grad_release(ex, gb, ex->ds);
		return;
	}
	if (update) {
		int hb = exec_hgrad_acquire(ex);
		/* the D2H stream waits for the gradient on cs, then copies it to pinned host memory */
		sw_event *e = ex->hgrad_ev[hb];
		op->event_record(be, e, ex->cs);
		op->stream_wait(be, ex->ds, e);
		int sp = exec_gspan_begin(ex, ex->ds, SW_TRACK_D2H);
		op->copy_d2h(be, ex->ds, ex->hgrad[hb], gb, (uint64_t)n * 4);
		exec_gspan_end(ex, ex->ds, sp);
		op->event_record(be, e, ex->ds);
		grad_release(ex, gb, ex->ds);
		exec_opt_send(ex, gi, hb, scale, ex->spec_pass, NULL);
		return;
	}
	grad_release(ex, gb, ex->as);   /* no update: read by its sum only */
}

/* Pass 2 of exact clipping: x_L rebuilt from the last checkpoints into the carry (the carry
 * holds dx_0 after pass 1), for the head. */
static int bwd_recompute_top(sw_exec *ex, useq *u)
{
	int L = ex->L, rc;
	void *w;
	sw_group_ptrs wp;
	if ((rc = exec_win_use(ex, u, L, &w)))
		return rc;
	sw_group_ptrs_make(&wp, ex->tt, L, w, ex->ab);
	for (int m = 0; m < ex->M; m++) {
		void *x;
		if ((rc = exec_ckpt_get(ex, L - 1, m, &x)))
			return rc;
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		sw_layer_fwd(ex->be, ex->cs, &ex->d, &wp, ex->inv_freq, x, ex->xo, &ex->s);
		exec_gspan_end(ex, ex->cs, sp);
		exec_carry_put(ex, m, ex->xo);
	}
	if ((rc = exec_win_ahead(ex, u)))
		return rc;
	exec_win_release(ex, w);
	return 0;
}

/* The summed per-token losses of a step's micro-batches, in token order. */
static double losses_sum(const float *hl, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += hl[i];
	return s;
}

/* The head's weights: untied, the head group's P16 (hw); tied, the embedding's (hw) and the final
 * norm from the head group (resident, or fetched into its own small buffer). Starts the
 * embedding's gradient when tied and eg is given (an evaluation passes none). */
static int head_weights(sw_exec *ex, void *hw, sw_group_ptrs *wp, sw_group_ptrs *ep,
			sw_group_ptrs *egp, float **eg)
{
	int H = ex->H;
	memset(ep, 0, sizeof(*ep));
	if (eg) {
		memset(egp, 0, sizeof(*egp));
		*eg = NULL;
	}
	if (!ex->tied) {
		sw_group_ptrs_make(wp, ex->tt, H, hw, ex->ab);
		return 0;
	}
	sw_group_ptrs_make(ep, ex->tt, 0, hw, ex->ab);
	void *hp = ex->g[H].p16_dev;
	if (!hp) {
		hp = ex->head_small;
		int rc = exec_home_p16_fetch(ex, H, hp, ex->cs);
		if (rc)
			return rc;
	}
	sw_group_ptrs_make(wp, ex->tt, H, hp, ex->ab);
	if (eg) {
		*eg = exec_grad_begin(ex, 0);
		sw_group_ptrs_make(egp, ex->tt, 0, *eg, 4);
	}
	return 0;
}

/* Final norm + LM head + loss over the micro-batches: the carry turns into dx; the summed loss
 * into *loss_out (pass 1). */
static int bwd_head(sw_exec *ex, useq *u, const int32_t *targets, float scale_tokens, int update,
		    double gscale, double *loss_out, float **eg)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int M = ex->M, H = ex->H, N = ex->d.N, rc;
	void *hw;
	sw_group_ptrs wp, gp, ep, egp;
	if ((rc = exec_win_use(ex, u, ex->tied ? 0 : H, &hw)))
		return rc;
	float *hg = exec_grad_begin(ex, H);
	if ((rc = head_weights(ex, hw, &wp, &ep, &egp, eg)))
		return rc;
	sw_group_ptrs_make(&gp, ex->tt, H, hg, 4);
	float *hl = NULL;
	if (loss_out && !(hl = malloc((size_t)N * (size_t)M * 4)))
		return -ENOMEM;
	for (int m = 0; m < M; m++) {
		void *x = exec_carry_get(ex, m);
		op->copy_h2d(be, ex->cs, ex->tgt, targets + (int64_t)m * N, (uint64_t)N * 4);
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		sw_head_fwd_bwd(be, ex->cs, &ex->d, ex->tt, &wp, &ep, &gp, &egp, x, ex->tgt,
				scale_tokens, ex->losses, ex->xo, &ex->s);
		exec_gspan_end(ex, ex->cs, sp);
		if (hl)
			op->copy_d2h(be, ex->cs, hl + (int64_t)m * N, ex->losses, (uint64_t)N * 4);
		exec_carry_put(ex, m, ex->xo);
		/* the targets buffer is reused by the next micro-batch: same stream, in order */
	}
	if ((rc = exec_win_ahead(ex, u))) {
		free(hl);
		return rc;
	}
	exec_win_release(ex, hw);
	exec_grad_end(ex, H, hg, update, gscale);
	if (hl) {
		op->stream_sync(be, ex->cs);
		*loss_out = losses_sum(hl, (int64_t)N * M);
		free(hl);
	}
	return 0;
}

/* Decoder layer l's backward over the micro-batches: recompute from its checkpoints what the
 * forward did not keep (exec_keep.c), backward,
 * its gradient accumulated, then updated (on the device or through the optimizer queue). */
static int bwd_layer(sw_exec *ex, useq *u, int l, int update, double gscale)
{
	void *w;
	sw_group_ptrs wp, gp;
	int rc = exec_win_use(ex, u, l + 1, &w);
	if (rc)
		return rc;
	sw_group_ptrs_make(&wp, ex->tt, l + 1, w, ex->ab);
	float *g = exec_grad_begin(ex, l + 1);
	sw_group_ptrs_make(&gp, ex->tt, l + 1, g, 4);
	for (int m = 0; m < ex->M; m++) {
		void *x;
		if ((rc = exec_ckpt_get(ex, l, m, &x)))
			return rc;
		void *dres = exec_carry_get(ex, m);
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		exec_keep_bwd(ex, l, m, &wp, &gp, x, dres, sw_layer_bwd_dw_flags(m, ex->grad_fill_nan));
		exec_gspan_end(ex, ex->cs, sp);
		exec_carry_put(ex, m, dres);
	}
	if ((rc = exec_win_ahead(ex, u)))
		return rc;
	exec_win_release(ex, w);
	exec_grad_end(ex, l + 1, g, update, gscale);
	return 0;
}

/* One backward pass: head, layers top-down, embedding. recompute_top: rebuild x_L from the
 * last checkpoint first (the carry holds dx_0 after an earlier pass). loss_out: NULL, or the
 * summed loss (first pass). */
int exec_backward_pass(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
		       float scale_tokens, int update, double gscale, int recompute_top,
		       double *loss_out)
{
	sw_backend *be = ex->be;
	int M = ex->M, N = ex->d.N, rc;
	float *eg = NULL;
	exec_ckpt_bwd_begin(ex);
	/* start reading the top layer's checkpoints now: they arrive while the head computes */
	if (ex->ck_nslot && (rc = exec_ck_read_from(ex, ex->L - 1, 0)))
		return rc;
	if (recompute_top && (rc = bwd_recompute_top(ex, u)))
		return rc;
	if ((rc = bwd_head(ex, u, targets, scale_tokens, update, gscale, loss_out, &eg)))
		return rc;
	for (int l = ex->L - 1; l >= 0; l--)
		if ((rc = bwd_layer(ex, u, l, update, gscale)))
			return rc;
	/* embedding */
	float *g0 = ex->tied ? eg : exec_grad_begin(ex, 0);
	for (int m = 0; m < M; m++) {
		void *dres = exec_carry_get(ex, m);
		be->ops->copy_h2d(be, ex->cs, ex->tok, inputs + (int64_t)m * N, (uint64_t)N * 4);
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		be->ops->embedding_bwd(be, ex->cs, g0, dres, ex->tok, N, ex->d.C, ex->d.V);
		exec_gspan_end(ex, ex->cs, sp);
	}
	exec_grad_end(ex, 0, g0, update, gscale);
	exec_grad_join(ex);
	return 0;
}

/* The forward over the micro-batches; keep: save each layer's input as its checkpoint and the
 * kept layers' intermediates (a training step; an evaluation keeps none). */
static int forward_pass(sw_exec *ex, useq *u, const int32_t *inputs, int keep)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int L = ex->L, M = ex->M, N = ex->d.N;
	void *w;
	int rc = exec_win_use(ex, u, 0, &w);
	if (rc)
		return rc;
	for (int m = 0; m < M; m++) {
		op->copy_h2d(be, ex->cs, ex->tok, inputs + (int64_t)m * N, (uint64_t)N * 4);
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		op->embedding_fwd(be, ex->cs, ex->xo, ex->tok, w, N, ex->d.C);
		exec_gspan_end(ex, ex->cs, sp);
		exec_carry_put(ex, m, ex->xo);
	}
	if ((rc = exec_win_ahead(ex, u)))
		return rc;
	exec_win_release(ex, w);
	for (int l = 0; l < L; l++) {
		if ((rc = exec_win_use(ex, u, l + 1, &w)))
			return rc;
		sw_group_ptrs wp;
		sw_group_ptrs_make(&wp, ex->tt, l + 1, w, ex->ab);
		for (int m = 0; m < M; m++) {
			void *x = exec_carry_get(ex, m);
			if (keep && (rc = exec_ckpt_save(ex, l, m, x)))
				return rc;
			int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
			if (keep)
				exec_keep_fwd(ex, l, m, &wp, x, ex->xo);
			else
				sw_layer_fwd(be, ex->cs, &ex->d, &wp, ex->inv_freq, x, ex->xo, &ex->s);
			exec_gspan_end(ex, ex->cs, sp);
			exec_ckpt_saved(ex);
			exec_carry_put(ex, m, ex->xo);
		}
		if ((rc = exec_win_ahead(ex, u)))
			return rc;
		exec_win_release(ex, w);
	}
	return 0;
}

/* The uses of P16 in a step, in order (the planner's sequence, which it replays to count
 * fetches). */
static void build_uses(sw_exec *ex, useq *u, int passes)
{
	u->n = sw_window_uses(ex->L, ex->tied ? 0 : ex->H, passes, u->g);
	u->pos = 0;
}

/* Now; with an NVMe tier, the I/O counters read at that moment, whose clock it is (so that the
 * step's seconds by drive state add up to its wall time). */
static double step_clock(sw_exec *ex, sw_io_counters *c)
{
	if (!ex->io)
		return sw_now();
	sw_io_counters_read(ex->io, c);
	return c->t;
}

/* The global norm of this step's gradients: per-group sums of squares, added in group order
 * (optim/clip.h). */
double exec_step_norm(sw_exec *ex)
{
	double ss[ex->G];
	ex->be->ops->copy_d2h(ex->be, ex->cs, ss, ex->dsum, sizeof(ss));
	ex->be->ops->stream_sync(ex->be, ex->cs);
	return sw_grad_norm(ss, ex->G);
}

int sw_exec_step(sw_exec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		 double lr, sw_exec_stats *st)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int N = ex->d.N, M = ex->M;
	memset(st, 0, sizeof(*st));
	for (int64_t i = 0; i < (int64_t)N * M; i++)
		st->s.tokens += targets[i] >= 0;
	float scale = st->s.tokens ? 1.0f / (float)st->s.tokens : 0.0f;
	ex->step = step;
	ex->lr = lr;
	ex->calls++;
	/* weights change every step: the window starts empty */
	sw_window_init(&ex->sched, ex->K);
	int passes = exec_clip_passes(ex);
	st->passes = passes;
	int *ug = malloc(sizeof(int) * (size_t)(4 * (ex->L + 3)));
	if (!ug)
		return -ENOMEM;
	useq u = { .g = ug };
	build_uses(ex, &u, passes);
	op->stream_sync(be, ex->cs);
	uint64_t r0 = 0, w0 = 0;
	sw_io_counters c0 = { 0 };
	if (ex->io)
		sw_io_bytes(ex->io, &r0, &w0);
	ex->t_step0 = step_clock(ex, &c0);
	op->event_record(be, ex->ev0, ex->cs);
	/* the step's first NVMe update reads its state during the forward (queued behind the last
	 * step's updates, whose write-behind lands first) */
	if (ex->read_ahead)
		exec_opt_post(ex, OPT_READ_AHEAD, ex->ra_first, ex->slot);
	double loss = 0;
	int rc = forward_pass(ex, &u, inputs, 1);
	if (!rc)
		rc = exec_clip_backward(ex, &u, inputs, targets, scale, st, &loss);
	/* the step boundary: drained (SW_STEP_OVERLAP=0), or the step ends with its last updates
	 * still running; the next step's uses of their groups wait for them (exec_group_wait), and
	 * an error they meet is returned by a later step or sw_exec_sync */
	int orc = ex->overlap ? exec_opt_error(ex) : exec_opt_drain(ex);
	exec_clip_commit(ex);
	op->stream_sync(be, ex->cs);
	op->stream_sync(be, ex->hs);
	op->stream_sync(be, ex->ds);
	op->stream_sync(be, ex->as);   /* a failed pass's sums and updates */
	if (!rc)
		rc = orc;
	if (!rc && ex->clip_mode == 0) {
		st->s.grad_norm = exec_step_norm(ex);
		st->s.skipped = !isfinite(st->s.grad_norm);
	}
	/* NVMe state now lives in the slot written, unless clipping skipped the step (nothing was
	 * committed; without clipping, the finite elements were updated) */
	if (!rc && !(ex->clip_mode && st->s.skipped))
		ex->slot = exec_write_slot(ex);
	st->s.loss = st->s.tokens ? loss / (double)st->s.tokens : 0.0;
	sw_io_counters c1 = { 0 };
	st->step_s = step_clock(ex, &c1) - ex->t_step0;
	if (!rc)
		exec_clip_observe(ex, st);
	if (ex->io) {
		sw_io_bytes(ex->io, &st->nvme_read, &st->nvme_write);
		st->nvme_read -= r0;
		st->nvme_write -= w0;
		sw_io_counters_diff(&c1, &c0, &st->nvme);
	}
	st->read_ahead = __atomic_exchange_n(&ex->ra_used, 0, __ATOMIC_RELAXED);
	st->reordered = __atomic_exchange_n(&ex->reordered, 0, __ATOMIC_RELAXED);
	exec_finish_spans(ex, st);
	free(ug);
	return rc;
}

/* The held-out loss of the head over the micro-batches (forward only: no gradient is touched).
 * Sums each row's losses, in row order, into *loss_sum. */
static int eval_head(sw_exec *ex, useq *u, const int32_t *targets, double *loss_sum)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int M = ex->M, H = ex->H, N = ex->d.N, rc;
	void *hw;
	sw_group_ptrs wp, ep;
	if ((rc = exec_win_use(ex, u, ex->tied ? 0 : H, &hw)) ||
	    (rc = head_weights(ex, hw, &wp, &ep, NULL, NULL)))
		return rc;
	float *hl = malloc((size_t)N * (size_t)M * 4);
	if (!hl)
		return -ENOMEM;
	for (int m = 0; m < M; m++) {
		op->copy_h2d(be, ex->cs, ex->tgt, targets + (int64_t)m * N, (uint64_t)N * 4);
		sw_head_fwd_bwd(be, ex->cs, &ex->d, ex->tt, &wp, &ep, NULL, NULL, exec_carry_get(ex, m),
				ex->tgt, 1.0f, ex->losses, NULL, &ex->s);
		op->copy_d2h(be, ex->cs, hl + (int64_t)m * N, ex->losses, (uint64_t)N * 4);
	}
	exec_win_release(ex, hw);
	op->stream_sync(be, ex->cs);
	*loss_sum = losses_sum(hl, (int64_t)N * M);
	free(hl);
	return 0;
}

int sw_exec_eval(sw_exec *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum)
{
	sw_backend *be = ex->be;
	int *ug = malloc(sizeof(int) * (size_t)(ex->L + 3));
	if (!ug)
		return -ENOMEM;
	/* the P16 uses of an evaluation: the forward's (a training step's first L + 1), then the head */
	useq u = { .g = ug };
	u.n = sw_window_uses(ex->L, ex->tied ? 0 : ex->H, 0, ug);
	ug[u.n++] = ex->tied ? 0 : ex->H;
	sw_window_init(&ex->sched, ex->K);
	be->ops->stream_sync(be, ex->cs);
	int rc = sw_exec_sync(ex);   /* an evaluation reads final weights: the last step's updates */
	if (rc) {
		free(ug);
		return rc;
	}
	rc = forward_pass(ex, &u, inputs, 0);
	if (!rc)
		rc = eval_head(ex, &u, targets, loss_sum);
	be->ops->stream_sync(be, ex->cs);
	be->ops->stream_sync(be, ex->hs);
	/* an evaluation's device spans belong to no step */
	ex->nsev = 0;
	ex->sev_dropped = 0;
	free(ug);
	return rc;
}
