/* Clipping in the step: one speculative backward pass (updates with the scale assumed 1,
 * checked against the norm at the end; rolled back and redone, or skipped) or two passes (the
 * first only sums the norm); the rollback of every tier and the commit of host state's second
 * sets. docs/architecture.md "Clipping". */
#include "offload/exec_int.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "optim/clip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* P16 of a host-resident group rounded from its P32, both in host memory, on the optimizer's
 * pool (idle during a rollback: the queue has drained) in pieces of ROUND_PIECE elements. */
enum { ROUND_PIECE = 1 << 20 };
typedef struct round_job { sw_exec *ex; const grp *g; int64_t n; } round_job;

static void round_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	const round_job *j = ctx;
	int64_t o = task * ROUND_PIECE, c = j->n - o < ROUND_PIECE ? j->n - o : ROUND_PIECE;
	sw_convert((char *)j->g->p16_host + o * j->ex->ab, j->ex->be->act, j->g->opt_host[0] + o,
		   SW_DTYPE_F32, c);
}

/* Group gi's P16 rounded again from its P32 (host memory, or NVMe slot ex->slot read chunk by
 * chunk into the optimizer's staging): P16 is bf16(P32) wherever it lives. */
static int p16_rebuild(sw_exec *ex, int gi)
{
	grp *g = &ex->g[gi];
	int64_t n = ex->tt->g[gi].numel;
	if (g->opt_tier == SW_TIER_HOST && g->p16_tier == SW_TIER_HOST && ex->pool) {
		round_job j = { ex, g, n };
		sw_pool_run(ex->pool, round_task, &j, (n + ROUND_PIECE - 1) / ROUND_PIECE);
		return 0;
	}
	exec_home h = exec_home_opt(ex, gi, 0, ex->slot);
	int rc = 0;
	for (int64_t off = 0; off < n && !rc; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		const float *src = g->opt_host[0] + off;
		if (g->opt_tier == SW_TIER_NVME) {
			src = ex->opt_stage[0];
			rc = exec_home_read(ex, &h, exec_opt_off(off), (uint64_t)c * 4, ex->opt_stage[0],
					    ex->opt_stage[0]);
		}
		if (!rc)
			rc = exec_home_put_p16(ex, gi, off, c, src);
	}
	return rc;
}

/* Every tier back to the state before the step, after a speculative pass (docs/architecture.md
 * "Clipping"): resident groups were not updated (their gradients were held); host state still
 * is in its current set (the pass wrote the second set); NVMe state still is in slot ex->slot
 * (the pass wrote the other one); P16 homes off the device, which the pass did overwrite, are
 * rounded again from that P32. */
static int step_rollback(sw_exec *ex)
{
	sw_backend *be = ex->be;
	int rc = exec_opt_drain(ex);
	be->ops->stream_sync(be, ex->cs);
	be->ops->stream_sync(be, ex->hs);
	be->ops->stream_sync(be, ex->ds);
	be->ops->stream_sync(be, ex->as);
	for (int gi = 0; gi < ex->G && !rc; gi++) {
		grp *g = &ex->g[gi];
		if (g->opt_tier != SW_TIER_GPU && !g->hheld)   /* a deferred group was not touched */
			rc = p16_rebuild(ex, gi);
	}
	return rc;
}

/* Exact clipping in one pass: every group updated as its gradient completes with the scale
 * assumed 1 (resident groups' updates wait for the norm, their gradients held); then the scale
 * optim/clip.h gives for the norm decides: exactly 1, the step is done (the held updates run);
 * below 1, every tier is rolled back and the backward redone with the scale (as the two-pass
 * scheme's second pass); not finite, rolled back and skipped. */
static int step_speculative(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
			    float scale, sw_exec_stats *st, double *loss)
{
	ex->spec_pass = 1;
	int rc = exec_backward_pass(ex, u, inputs, targets, scale, 1, 1.0, 0, loss);
	ex->spec_pass = 0;
	if (rc)
		return rc;
	st->s.grad_norm = exec_step_norm(ex);
	double gs = sw_clip_scale(st->s.grad_norm, ex->o.clip);
	if (gs == 1.0) {
		st->s.grad_scale = 1.0;
		ex->commit_alt = 1;   /* host state: the second sets, after the queue drained */
		for (int gi = 0; gi < ex->G; gi++)
			if (ex->g[gi].opt_tier == SW_TIER_GPU)
				exec_gpu_update(ex, ex->cs, gi,
						ex->tied && gi == 0 ? ex->tgrad : ex->g[gi].ghold, 1.0);
		/* one NVMe slot: the deferred groups' updates, from their held gradients */
		ex->be->ops->stream_sync(ex->be, ex->ds);
		for (int gi = ex->G - 1; gi >= 0; gi--)
			if (ex->g[gi].hheld)
				exec_opt_send(ex, gi, -1, 1.0, 0, ex->g[gi].hheld);
		return 0;
	}
	if ((rc = step_rollback(ex)))
		return rc;
	if (isnan(gs)) {
		st->s.skipped = 1;
		return 0;
	}
	st->s.grad_scale = gs;
	st->redone = 1;
	st->passes = 2;
	ex->first_pass = 0;
	/* the redo: the two-pass scheme's second pass, its P16 uses, the window empty again */
	u->n = sw_window_uses(ex->L, ex->tied ? 0 : ex->H, 2, u->g);
	u->pos = 2 * (ex->L + 1);
	sw_window_init(&ex->sched, ex->K);
	return exec_backward_pass(ex, u, inputs, targets, scale, 1, gs, 1, NULL);
}

int exec_clip_passes(const sw_exec *ex)
{
	/* a speculative step rolls NVMe state back from its other slot; when that slot holds the
	 * last commit (exec_write_slot: this step writes in place), it runs two passes instead;
	 * so it does while clipping fires often (exec_clip_observe) */
	if (ex->clip_mode == 1)
		return exec_nvme_in_place(ex) || ex->clip_two ? 2 : 1;
	return ex->clip_mode == 2 ? 2 : 1;
}

void exec_clip_init(sw_exec *ex)
{
	const char *cp = getenv("SW_CLIP_PASSES");
	ex->clip_adapt = !(cp && !strcmp(cp, "1"));
	ex->clip_break_even = sw_plan_clip_break_even(ex->p);
}

/* After a step: whether it clipped (its norm gave a scale below 1; a skipped step does not
 * count), and the next step's choice. A speculative step that clips costs the plan's redone
 * step, a step of two passes the plan's two-pass step, whether it clips or not: with a
 * fraction f of steps clipping, one pass costs one + f (redone - one) against two, so the next
 * step runs two passes while the last SW_CLIP_WINDOW steps' fraction is above the break-even.
 * Both schemes give the same bits (docs/architecture.md), so the choice changes time only. */
void exec_clip_observe(sw_exec *ex, sw_exec_stats *st)
{
	if (ex->clip_mode != 1)
		return;
	st->clip_two = st->passes == 2 && !st->redone && ex->clip_two;
	st->clip_recent = __builtin_popcount(ex->clip_hist);
	st->clip_seen = ex->clip_seen;
	int clipped = !st->s.skipped && st->s.grad_scale < 1.0;
	ex->clip_hist = (ex->clip_hist << 1 | (uint32_t)clipped) & ((1u << SW_CLIP_WINDOW) - 1);
	if (ex->clip_seen < SW_CLIP_WINDOW)
		ex->clip_seen++;
	int k = __builtin_popcount(ex->clip_hist);
	ex->clip_two = ex->clip_adapt && (double)k > ex->clip_break_even * (double)ex->clip_seen;
}

/* The backward: without clipping one pass, updating as it goes; with exact clipping one
 * speculative pass (step_speculative) or two: pass 1 sums the norm only and pass 2 applies the
 * clipped update (none when the norm is not finite: the step is skipped, nothing touched). */
int exec_clip_backward(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
		       float scale, sw_exec_stats *st, double *loss)
{
	ex->first_pass = 1;
	if (ex->clip_mode == 0) {
		st->s.grad_scale = 1.0;
		return exec_backward_pass(ex, u, inputs, targets, scale, 1, 1.0, 0, loss);
	}
	if (exec_clip_passes(ex) == 1)
		return step_speculative(ex, u, inputs, targets, scale, st, loss);
	int rc = exec_backward_pass(ex, u, inputs, targets, scale, 0, 1.0, 0, loss);
	if (rc)
		return rc;
	ex->first_pass = 0;
	st->s.grad_norm = exec_step_norm(ex);
	double gs = sw_clip_scale(st->s.grad_norm, ex->o.clip);
	if (isnan(gs)) {
		st->s.skipped = 1;
		return 0;
	}
	st->s.grad_scale = gs;
	return exec_backward_pass(ex, u, inputs, targets, scale, 1, gs, 1, NULL);
}

void exec_clip_swap(sw_exec *ex)
{
	for (int gi = 0; gi < ex->G; gi++)
		for (int k = 0; k < 3 && ex->g[gi].opt_tier == SW_TIER_HOST; k++) {
			float *t = ex->g[gi].opt_host[k];
			ex->g[gi].opt_host[k] = ex->g[gi].alt[k];
			ex->g[gi].alt[k] = t;
		}
}

/* At the step's end: when the speculative pass stood, host state's second sets become the
 * current ones: now (the optimizer queue drained), or, when the step boundary overlaps, on the
 * optimizer thread after the step's last update (the queue is in order; nothing else reads
 * host state before a drain). */
void exec_clip_commit(sw_exec *ex)
{
	if (!ex->commit_alt)
		return;
	if (ex->overlap && ex->thr_started)
		exec_opt_post(ex, OPT_SWAP, -1, 0);
	else
		exec_clip_swap(ex);
	ex->commit_alt = 0;
}
