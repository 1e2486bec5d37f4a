/* The LoRA executor's step (offload/lora_exec.h): forward, head, backward through the frozen
 * base with the adapters' gradients held, the global norm, AdamW on the adapters. */
#include "offload/lora_exec_int.h"
#include "optim/clip.h"
#include "core/log.h"

#include <math.h>
#include <string.h>

/* ---- checkpoints on NVMe: a ring of pinned stages ----------------------------------------- */

static int ck_on_nvme(const sw_lexec *ex, int64_t i) { return !ex->ck_dev[i] && !ex->ck_host[i]; }

/* A stage's transfers moved on: a copy to the host done starts its NVMe write; a write done or
 * a copy to the device done frees it. */
static int ck_settle(sw_lexec *ex, lstage *s)
{
	sw_backend *be = ex->be;
	int rc;
	if (s->state == ST_H2D && be->ops->event_done(be, s->ev))
		s->state = ST_FREE;
	if (s->state == ST_D2H && be->ops->event_done(be, s->ev)) {
		if ((rc = sw_io_submit_write(ex->io, &s->req, ex->ck_ext[s->ck], 0, ex->ck_ext[s->ck].len,
					     s->buf)))
			return lexec_io_fail(ex, rc, &s->req, "write of a checkpoint");
		s->state = ST_WRITE;
	}
	if (s->state == ST_WRITE && (rc = sw_io_poll(&s->req)) != 1) {
		if (rc)
			return lexec_io_fail(ex, rc, &s->req, "write of a checkpoint");
		s->state = ST_FREE;
	}
	return 0;
}

/* Reads of the checkpoints the backward asks for next, in its order ((l, 0..M-1) for l = L-1
 * down to 0), into free stages; only once every write is done, so that no read overtakes the
 * write of the same checkpoint. */
static int ck_read_ahead(sw_lexec *ex)
{
	for (int j = 0; j < ex->nck; j++)
		if (ex->cst[j].state == ST_D2H || ex->cst[j].state == ST_WRITE)
			return 0;
	for (int64_t n = (int64_t)ex->L * ex->M; ex->ra < n; ex->ra++) {
		int64_t i = (int64_t)(ex->L - 1 - ex->ra / ex->M) * ex->M + ex->ra % ex->M;
		if (!ck_on_nvme(ex, i))
			continue;
		lstage *s = &ex->cst[ex->ck_next];
		if (s->state != ST_FREE)
			return 0;
		int rc = sw_io_submit_read(ex->io, &s->req, ex->ck_ext[i], 0, ex->ck_ext[i].len, s->buf);
		if (rc)
			return lexec_io_fail(ex, rc, &s->req, "read of a checkpoint");
		s->state = ST_READ;
		s->ck = i;
		ex->ck_next = (ex->ck_next + 1) % ex->nck;
	}
	return 0;
}

int lexec_ck_pump(sw_lexec *ex)
{
	int rc = 0;
	for (int j = 0; j < ex->nck && !rc; j++)
		rc = ck_settle(ex, &ex->cst[j]);
	if (!rc && ex->ra >= 0)
		rc = ck_read_ahead(ex);
	return rc;
}

static int ck_free(sw_lexec *ex, int64_t k) { return ex->cst[k].state == ST_FREE; }

static int ck_read_done(sw_lexec *ex, int64_t i)
{
	const lstage *s = &ex->cst[ex->ck_cons];
	SW_ASSERT(s->state != ST_READ || s->ck == i);   /* read ahead in the order used */
	return s->state == ST_READ && sw_io_poll((sw_io_req *)&s->req) != 1;
}

/* A saved activation (N, C): on the device, in pinned host memory, or on NVMe through the next
 * free stage (its write starts once the copy to the stage is done, without the executor). */
static int x_store(sw_lexec *ex, lslot d, int64_t ck, const void *x)
{
	sw_backend *be = ex->be;
	uint64_t b = lexec_xbytes(ex);
	if (d.tier == SW_TIER_GPU) {
		be->ops->copy_d2d(be, ex->cs, d.p, x, b);
		return 0;
	}
	if (d.tier == SW_TIER_HOST) {
		be->ops->copy_d2h(be, ex->cs, d.p, x, b);
		return 0;
	}
	int k = ex->ck_next, rc = lexec_wait(ex, ck_free, k);
	if (rc)
		return rc;
	lstage *s = &ex->cst[k];
	be->ops->copy_d2h(be, ex->cs, s->buf, x, b);
	be->ops->event_record(be, s->ev, ex->cs);
	s->state = ST_D2H;
	s->ck = ck;
	ex->ck_next = (k + 1) % ex->nck;
	return lexec_pump(ex);
}

/* Into x: NVMe checkpoints from the stage they were read ahead into (the backward's order). */
static int x_load(sw_lexec *ex, lslot s, int64_t ck, void *x)
{
	sw_backend *be = ex->be;
	uint64_t b = lexec_xbytes(ex);
	if (s.tier == SW_TIER_GPU) {
		be->ops->copy_d2d(be, ex->cs, x, s.p, b);
		return 0;
	}
	if (s.tier == SW_TIER_HOST) {
		be->ops->copy_h2d(be, ex->cs, x, s.p, b);
		return 0;
	}
	SW_ASSERT(ex->ra >= 0);
	int rc = lexec_wait(ex, ck_read_done, ck);
	lstage *st = &ex->cst[ex->ck_cons];
	if (!rc && (rc = sw_io_poll(&st->req)))
		return lexec_io_fail(ex, rc, &st->req, "read of a checkpoint");
	if (rc)
		return rc;
	be->ops->copy_h2d(be, ex->cs, x, st->buf, b);
	be->ops->event_record(be, st->ev, ex->cs);
	st->state = ST_H2D;
	ex->ck_cons = (ex->ck_cons + 1) % ex->nck;
	return lexec_pump(ex);
}

static int64_t ck_index(const sw_lexec *ex, int l, int m) { return (int64_t)l * ex->M + m; }

/* Layer-major over the micro-batches: each layer's input from the carry, kept as its checkpoint
 * (bwd: a step; an eval keeps none), its output back into the carry. */
static int forward(sw_lexec *ex, int bwd)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *o = be->ops;
	int N = ex->d.N;
	void *p16;
	sw_group_ptrs w;
	int rc = lexec_base_get(ex, 0, &p16);
	if (rc)
		return rc;
	sw_group_ptrs_make(&w, ex->tt, 0, p16, ex->ab);
	for (int m = 0; m < ex->M; m++) {
		o->copy_h2d(be, ex->cs, ex->tok, ex->h_tok + (int64_t)m * N, (uint64_t)N * 4);
		o->embedding_fwd(be, ex->cs, ex->xa, ex->tok, w.t[SW_T_EMBED], N, ex->d.C);
		x_store(ex, lexec_carry(ex, m), -1, ex->xa);
	}
	if ((rc = lexec_base_release(ex, 0)))
		return rc;
	for (int l = 0; l < ex->L; l++) {
		if ((rc = lexec_base_get(ex, l + 1, &p16)))
			return rc;
		sw_group_ptrs_make(&w, ex->tt, l + 1, p16, ex->ab);
		sw_lora_ptrs lp;
		lexec_ad_use(ex, l, 0, &lp);
		for (int m = 0; m < ex->M; m++) {
			x_load(ex, lexec_carry(ex, m), -1, ex->xa);
			if (bwd && (rc = x_store(ex, lexec_ck(ex, l, m), ck_index(ex, l, m), ex->xa)))
				return rc;
			sw_lora_layer_fwd(be, ex->cs, &ex->d, &w, &ex->o.lo, &lp, ex->inv_freq, ex->xa,
					  ex->xb, &ex->s, &ex->ls);
			x_store(ex, lexec_carry(ex, m), -1, ex->xb);
		}
		if ((rc = lexec_base_release(ex, l + 1)))
			return rc;
	}
	return 0;
}

/* The loss and (bwd) its gradient per micro-batch into the carry; the losses of micro-batch m
 * into host_losses + m N (pinned: nothing here waits for the device). */
static int head(sw_lexec *ex, float scale, int bwd)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *o = be->ops;
	int N = ex->d.N, H = ex->G - 1;
	void *ph, *pe = NULL;
	int rc = lexec_base_get(ex, H, &ph);
	if (!rc && ex->tt->cfg.tie_embeddings)
		rc = lexec_base_get(ex, 0, &pe);
	if (rc)
		return rc;
	sw_group_ptrs hw, ew, hg, eg;
	sw_group_ptrs_make(&hw, ex->tt, H, ph, ex->ab);
	memset(&ew, 0, sizeof(ew));
	if (pe)
		sw_group_ptrs_make(&ew, ex->tt, 0, pe, ex->ab);
	memset(&hg, 0, sizeof(hg));
	memset(&eg, 0, sizeof(eg));
	hg.t[SW_T_FINAL_NORM] = ex->head_sink;   /* frozen: its gradient goes nowhere */
	for (int m = 0; m < ex->M; m++) {
		x_load(ex, lexec_carry(ex, m), -1, ex->xa);
		o->copy_h2d(be, ex->cs, ex->tgt, ex->h_tgt + (int64_t)m * N, (uint64_t)N * 4);
		sw_head_fwd_bwd(be, ex->cs, &ex->d, ex->tt, &hw, &ew, &hg, &eg, ex->xa, ex->tgt, scale,
				ex->losses, bwd ? ex->xb : NULL, &ex->s);
		o->copy_d2h(be, ex->cs, ex->host_losses + (int64_t)m * N, ex->losses, (uint64_t)N * 4);
		if (bwd)
			x_store(ex, lexec_carry(ex, m), -1, ex->xb);
		if ((rc = lexec_pump(ex)))
			return rc;
	}
	rc = lexec_base_release(ex, H);
	if (!rc && pe)
		rc = lexec_base_release(ex, 0);
	return rc;
}

/* The summed losses of the batch (after the device is done), in micro-batch and token order. */
static double losses_add(const sw_lexec *ex)
{
	double loss = 0;
	for (int64_t i = 0; i < (int64_t)ex->M * ex->d.N; i++)
		loss += ex->host_losses[i];
	return loss;
}

/* Layers top-down, their NVMe checkpoints read ahead; each layer's gradient's sum of squares
 * into dsum[l]; host adapters' gradients back to the host (read after the step's sync). */
static int backward(sw_lexec *ex)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *o = be->ops;
	uint64_t n = (uint64_t)ex->o.lo.numel;
	for (int l = ex->L - 1; l >= 0; l--) {
		void *p16;
		int rc = lexec_base_get(ex, l + 1, &p16);
		if (rc)
			return rc;
		sw_group_ptrs w;
		sw_group_ptrs_make(&w, ex->tt, l + 1, p16, ex->ab);
		sw_lora_ptrs lp;
		lexec_ad_use(ex, l, 1, &lp);
		for (int m = 0; m < ex->M; m++) {
			if ((rc = x_load(ex, lexec_ck(ex, l, m), ck_index(ex, l, m), ex->xa)))
				return rc;
			x_load(ex, lexec_carry(ex, m), -1, ex->xb);
			sw_lora_layer_bwd(be, ex->cs, &ex->d, &w, &ex->o.lo, &lp, ex->inv_freq, ex->xa,
					  ex->xb, &ex->s, &ex->ls);
			/* nothing flows into the frozen embedding */
			if (l > 0)
				x_store(ex, lexec_carry(ex, m), -1, ex->xb);
		}
		if ((rc = lexec_base_release(ex, l + 1)))
			return rc;
		const float *g = ex->ad[l].tier == SW_TIER_GPU ? ex->ad[l].g : ex->ad_g_dev;
		o->sumsq(be, ex->cs, ex->dsum + l, g, (int64_t)n);
		if (ex->ad[l].tier == SW_TIER_HOST)
			o->copy_d2h(be, ex->cs, ex->ad[l].g, ex->ad_g_dev, n * 4);
	}
	ex->ra = -1;
	return 0;
}

/* AdamW on every layer's adapters (all matrices: weight decay applies), elementwise, so one
 * call per layer gives the bits of one call per tensor. */
static void update(sw_lexec *ex, int64_t step, double lr, double gscale)
{
	sw_backend *be = ex->be;
	sw_adamw_args a = sw_adamw_args_make(&ex->o.adam, lr, step, 1, gscale);
	int64_t n = ex->o.lo.numel;
	for (int l = 0; l < ex->L; l++) {
		lad *d = &ex->ad[l];
		if (d->tier == SW_TIER_GPU)
			be->ops->adamw(be, ex->cs, d->p32, d->m, d->v, d->g, d->p16, n, &a);
		else
			sw_adamw_update(d->p32, d->m, d->v, d->g, d->p16, be->act, n, &a);
	}
	be->ops->stream_sync(be, ex->cs);
}

/* The batch's tokens into pinned buffers (so that no copy to the device waits for it). */
static void tokens_in(sw_lexec *ex, const int32_t *inputs, const int32_t *targets)
{
	size_t b = (size_t)ex->M * (size_t)ex->d.N * 4;
	memcpy(ex->h_tok, inputs, b);
	memcpy(ex->h_tgt, targets, b);
}

/* An NVMe failure leaves transfers in flight: they end before the step returns. */
static int step_fail(sw_lexec *ex, int rc)
{
	lexec_drain(ex);
	ex->ra = -1;
	ex->pst_rd = ex->pst_cp = 0;
	return rc;
}

int sw_lexec_step(sw_lexec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		  double lr, sw_step_stats *st)
{
	sw_backend *be = ex->be;
	memset(st, 0, sizeof(*st));
	for (int64_t i = 0; i < (int64_t)ex->d.N * ex->M; i++)
		st->tokens += targets[i] >= 0;
	float scale = st->tokens ? 1.0f / (float)st->tokens : 0.0f;
	tokens_in(ex, inputs, targets);
	for (int l = 0; l < ex->L; l++)
		if (ex->ad[l].tier == SW_TIER_GPU)
			be->ops->memset0(be, ex->cs, ex->ad[l].g, (uint64_t)ex->o.lo.numel * 4);
	lexec_win_begin(ex, 1);
	int rc = forward(ex, 1);
	if (!rc) {   /* the backward's checkpoint reads may start once the forward's writes end */
		ex->ra = 0;
		ex->ck_cons = ex->ck_next;
		rc = head(ex, scale, 1);
	}
	rc = rc ? rc : backward(ex);
	if (rc)
		return step_fail(ex, rc);
	double ss[ex->L];
	be->ops->copy_d2h(be, ex->cs, ss, ex->dsum, sizeof(ss));
	be->ops->stream_sync(be, ex->cs);
	st->loss = st->tokens ? losses_add(ex) / (double)st->tokens : 0.0;
	st->grad_norm = sw_grad_norm(ss, ex->L);
	st->grad_scale = sw_clip_scale(st->grad_norm, ex->o.clip);
	if (isnan(st->grad_scale)) {   /* a non-finite gradient: the step is skipped */
		st->grad_scale = 1.0;
		st->skipped = 1;
		return 0;
	}
	update(ex, step, lr, st->grad_scale);
	return 0;
}

int sw_lexec_eval(sw_lexec *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum)
{
	tokens_in(ex, inputs, targets);
	lexec_win_begin(ex, 0);
	int rc = forward(ex, 0);
	rc = rc ? rc : head(ex, 1.0f, 0);
	if (rc)
		return step_fail(ex, rc);
	ex->be->ops->stream_sync(ex->be, ex->cs);
	*loss_sum = losses_add(ex);
	return 0;
}
