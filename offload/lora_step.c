/* The LoRA executor's step (offload/lora_exec.h): forward, head, backward through the frozen
 * base with the adapters' gradients held, the global norm, AdamW on the adapters. */
#include "offload/lora_exec_int.h"
#include "optim/clip.h"
#include "core/log.h"

#include <math.h>
#include <string.h>

/* A saved activation (N, C): on the device, in pinned host memory, or on NVMe through the
 * pinned stage (synchronously: the stage is free again when these return). */
static int x_store(sw_lexec *ex, lslot d, const void *x)
{
	sw_backend *be = ex->be;
	uint64_t b = lexec_xbytes(ex);
	if (d.tier == SW_TIER_GPU) {
		be->ops->copy_d2d(be, ex->cs, d.p, x, b);
		return 0;
	}
	be->ops->copy_d2h(be, ex->cs, d.tier == SW_TIER_HOST ? d.p : ex->ck_stage, x, b);
	if (d.tier == SW_TIER_HOST)
		return 0;
	be->ops->stream_sync(be, ex->cs);
	return lexec_io(ex, 1, d.ext, ex->ck_stage, "a checkpoint");
}

static int x_load(sw_lexec *ex, lslot s, void *x)
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
	int rc = lexec_io(ex, 0, s.ext, ex->ck_stage, "a checkpoint");
	if (rc)
		return rc;
	be->ops->copy_h2d(be, ex->cs, x, ex->ck_stage, b);
	be->ops->stream_sync(be, ex->cs);
	return 0;
}

static int forward(sw_lexec *ex, const int32_t *inputs)
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
		o->copy_h2d(be, ex->cs, ex->tok, inputs + (int64_t)m * N, (uint64_t)N * 4);
		o->embedding_fwd(be, ex->cs, ex->xa, ex->tok, w.t[SW_T_EMBED], N, ex->d.C);
		if ((rc = x_store(ex, lexec_ck(ex, 0, m), ex->xa)))
			return rc;
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
			if ((rc = x_load(ex, lexec_ck(ex, l, m), ex->xa)))
				return rc;
			sw_lora_layer_fwd(be, ex->cs, &ex->d, &w, &ex->o.lo, &lp, ex->inv_freq, ex->xa,
					  ex->xb, &ex->s, &ex->ls);
			if ((rc = x_store(ex, lexec_ck(ex, l + 1, m), ex->xb)))
				return rc;
		}
		if ((rc = lexec_base_release(ex, l + 1)))
			return rc;
	}
	return 0;
}

/* The loss and (bwd) its gradient per micro-batch into the carry; *loss the summed losses. */
static int head(sw_lexec *ex, const int32_t *targets, float scale, int bwd, double *loss)
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
	*loss = 0;
	for (int m = 0; m < ex->M; m++) {
		if ((rc = x_load(ex, lexec_ck(ex, ex->L, m), ex->xa)))
			return rc;
		o->copy_h2d(be, ex->cs, ex->tgt, targets + (int64_t)m * N, (uint64_t)N * 4);
		sw_head_fwd_bwd(be, ex->cs, &ex->d, ex->tt, &hw, &ew, &hg, &eg, ex->xa, ex->tgt, scale,
				ex->losses, bwd ? ex->xb : NULL, &ex->s);
		o->copy_d2h(be, ex->cs, ex->host_losses, ex->losses, (uint64_t)N * 4);
		if (bwd && (rc = x_store(ex, lexec_carry(ex, m), ex->xb)))
			return rc;
		o->stream_sync(be, ex->cs);
		for (int i = 0; i < N; i++)
			*loss += ex->host_losses[i];
	}
	rc = lexec_base_release(ex, H);
	if (!rc && pe)
		rc = lexec_base_release(ex, 0);
	return rc;
}

/* Layers top-down; each layer's gradient's sum of squares into dsum[l]; host adapters'
 * gradients back to the host. */
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
			if ((rc = x_load(ex, lexec_ck(ex, l, m), ex->xa)))
				return rc;
			if ((rc = x_load(ex, lexec_carry(ex, m), ex->xb)))
				return rc;
			sw_lora_layer_bwd(be, ex->cs, &ex->d, &w, &ex->o.lo, &lp, ex->inv_freq, ex->xa,
					  ex->xb, &ex->s, &ex->ls);
			/* nothing flows into the frozen embedding */
			if (l > 0 && (rc = x_store(ex, lexec_carry(ex, m), ex->xb)))
				return rc;
		}
		if ((rc = lexec_base_release(ex, l + 1)))
			return rc;
		const float *g = ex->ad[l].tier == SW_TIER_GPU ? ex->ad[l].g : ex->ad_g_dev;
		o->sumsq(be, ex->cs, ex->dsum + l, g, (int64_t)n);
		if (ex->ad[l].tier == SW_TIER_HOST) {
			o->copy_d2h(be, ex->cs, ex->ad[l].g, ex->ad_g_dev, n * 4);
			o->stream_sync(be, ex->cs);
		}
	}
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

int sw_lexec_step(sw_lexec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		  double lr, sw_step_stats *st)
{
	sw_backend *be = ex->be;
	memset(st, 0, sizeof(*st));
	for (int64_t i = 0; i < (int64_t)ex->d.N * ex->M; i++)
		st->tokens += targets[i] >= 0;
	float scale = st->tokens ? 1.0f / (float)st->tokens : 0.0f;
	for (int l = 0; l < ex->L; l++)
		if (ex->ad[l].tier == SW_TIER_GPU)
			be->ops->memset0(be, ex->cs, ex->ad[l].g, (uint64_t)ex->o.lo.numel * 4);
	double loss = 0;
	lexec_win_begin(ex, 1);
	int rc = forward(ex, inputs);
	rc = rc ? rc : head(ex, targets, scale, 1, &loss);
	rc = rc ? rc : backward(ex);
	if (rc)
		return rc;
	double ss[ex->L];
	be->ops->copy_d2h(be, ex->cs, ss, ex->dsum, sizeof(ss));
	be->ops->stream_sync(be, ex->cs);
	st->loss = st->tokens ? loss / (double)st->tokens : 0.0;
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
	lexec_win_begin(ex, 0);
	int rc = forward(ex, inputs);
	return rc ? rc : head(ex, targets, 1.0f, 0, loss_sum);
}
