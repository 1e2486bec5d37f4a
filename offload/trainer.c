/* The in-memory trainer (offload/trainer.h): every state on the device, the layer-major step
 * with recompute; the oracle the executor is compared with, and the subject of bench/cuda_step. */
#include "offload/trainer.h"
#include "optim/clip.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sw_trainer {
	sw_backend *be;
	sw_stream *st;
	const sw_table *tt;
	sw_trainer_opts o;
	sw_dims d;
	int L, M;
	void **p16;                   /* per group, act */
	float **p32, **m, **v, **grad;
	sw_group_ptrs *w, *g;         /* per group views of p16 and grad */
	float *inv_freq;              /* (hd/2) */
	int32_t **tok, **tgt;         /* per micro-batch (N) */
	void **x;                     /* checkpoints: x[l * M + m], l = 0..L, (N,C) act */
	void **dres;                  /* per micro-batch (N,C) act */
	float **losses;               /* per micro-batch (N) */
	double *sumsq;                /* per group, device */
	float *host_losses;
	sw_layer_scratch s;
};

static int dalloc(sw_trainer *tr, uint64_t bytes, void *out)
{
	int rc = tr->be->ops->dev_alloc(tr->be, bytes, (void **)out);
	if (rc)
		return rc;
	return 0;
}

int sw_trainer_create(sw_backend *be, const sw_table *tt, const sw_trainer_opts *o,
		      sw_trainer **out)
{
	sw_trainer *tr = calloc(1, sizeof(*tr));
	if (!tr)
		return -ENOMEM;
	tr->be = be;
	tr->tt = tt;
	tr->o = *o;
	tr->L = (int)tt->cfg.n_layers;
	tr->M = o->micro_batches;
	tr->d = sw_dims_make(&tt->cfg, o->rows, o->seq_len);
	int G = tt->ngroups, L = tr->L, M = tr->M, act = sw_dtype_size(be->act);
	uint64_t N = (uint64_t)tr->d.N, C = (uint64_t)tr->d.C;
	int rc = -ENOMEM;
	tr->p16 = calloc((size_t)G, sizeof(void *));
	tr->p32 = calloc((size_t)G, sizeof(float *));
	tr->m = calloc((size_t)G, sizeof(float *));
	tr->v = calloc((size_t)G, sizeof(float *));
	tr->grad = calloc((size_t)G, sizeof(float *));
	tr->w = calloc((size_t)G, sizeof(sw_group_ptrs));
	tr->g = calloc((size_t)G, sizeof(sw_group_ptrs));
	tr->tok = calloc((size_t)M, sizeof(int32_t *));
	tr->tgt = calloc((size_t)M, sizeof(int32_t *));
	tr->x = calloc((size_t)(L + 1) * (size_t)M, sizeof(void *));
	tr->dres = calloc((size_t)M, sizeof(void *));
	tr->losses = calloc((size_t)M, sizeof(float *));
	tr->host_losses = malloc(N * sizeof(float));
	if (!tr->p16 || !tr->p32 || !tr->m || !tr->v || !tr->grad || !tr->w || !tr->g || !tr->tok ||
	    !tr->tgt || !tr->x || !tr->dres || !tr->losses || !tr->host_losses)
		goto err;
	rc = be->ops->stream_create(be, &tr->st);
	if (rc)
		goto err;
	for (int gi = 0; gi < G; gi++) {
		uint64_t n = (uint64_t)tt->g[gi].numel;
		if ((rc = dalloc(tr, n * (uint64_t)act, &tr->p16[gi])) ||
		    (rc = dalloc(tr, n * 4, &tr->p32[gi])) || (rc = dalloc(tr, n * 4, &tr->m[gi])) ||
		    (rc = dalloc(tr, n * 4, &tr->v[gi])) || (rc = dalloc(tr, n * 4, &tr->grad[gi])))
			goto err;
		sw_group_ptrs_make(&tr->w[gi], tt, gi, tr->p16[gi], act);
		sw_group_ptrs_make(&tr->g[gi], tt, gi, tr->grad[gi], 4);
		be->ops->memset0(be, tr->st, tr->m[gi], n * 4);
		be->ops->memset0(be, tr->st, tr->v[gi], n * 4);
	}
	if ((rc = dalloc(tr, (uint64_t)tt->cfg.head_dim / 2 * 4, &tr->inv_freq)) ||
	    (rc = dalloc(tr, (uint64_t)G * sizeof(double), &tr->sumsq)))
		goto err;
	for (int mi = 0; mi < M; mi++) {
		if ((rc = dalloc(tr, N * 4, &tr->tok[mi])) || (rc = dalloc(tr, N * 4, &tr->tgt[mi])) ||
		    (rc = dalloc(tr, N * C * (uint64_t)act, &tr->dres[mi])) ||
		    (rc = dalloc(tr, N * 4, &tr->losses[mi])))
			goto err;
	}
	for (int i = 0; i < (L + 1) * M; i++)
		if ((rc = dalloc(tr, N * C * (uint64_t)act, &tr->x[i])))
			goto err;
	if ((rc = sw_layer_scratch_alloc(be, &tr->d, &tr->s)))
		goto err;
	float *inv = malloc((size_t)tt->cfg.head_dim / 2 * sizeof(float));
	rc = -ENOMEM;
	if (!inv)
		goto err;
	sw_config_rope_inv_freq(&tt->cfg, inv);
	be->ops->copy_h2d(be, tr->st, tr->inv_freq, inv, (uint64_t)tt->cfg.head_dim / 2 * 4);
	be->ops->stream_sync(be, tr->st);
	free(inv);
	*out = tr;
	return 0;
err:
	if (rc == -ENOMEM) {
		char b1[32], b2[32];
		sw_error("backend %s: --gpu-mem %s is too small to hold the whole training state in "
			 "memory (%s in use when it ran out); raise --gpu-mem or use a smaller batch",
			 be->name, sw_fmt_size(be->budget, b1, 32), sw_fmt_size(be->used, b2, 32));
	}
	sw_trainer_destroy(tr);
	return rc;
}

void sw_trainer_destroy(sw_trainer *tr)
{
	if (!tr)
		return;
	sw_backend *be = tr->be;
	if (tr->st)
		be->ops->stream_sync(be, tr->st);
	sw_layer_scratch_free(be, &tr->s);
#define FREE_ARR(a, n) do { if (a) for (int i_ = 0; i_ < (n); i_++) if ((a)[i_]) be->ops->dev_free(be, (a)[i_]); free(a); } while (0)
	int G = tr->tt->ngroups;
	FREE_ARR(tr->p16, G);
	FREE_ARR(tr->p32, G);
	FREE_ARR(tr->m, G);
	FREE_ARR(tr->v, G);
	FREE_ARR(tr->grad, G);
	FREE_ARR(tr->tok, tr->M);
	FREE_ARR(tr->tgt, tr->M);
	FREE_ARR(tr->dres, tr->M);
	FREE_ARR(tr->losses, tr->M);
	FREE_ARR(tr->x, (tr->L + 1) * tr->M);
#undef FREE_ARR
	if (tr->inv_freq)
		be->ops->dev_free(be, tr->inv_freq);
	if (tr->sumsq)
		be->ops->dev_free(be, tr->sumsq);
	if (tr->st)
		be->ops->stream_destroy(be, tr->st);
	free(tr->w);
	free(tr->g);
	free(tr->host_losses);
	free(tr);
}

void sw_trainer_set_group(sw_trainer *tr, int group, const float *host)
{
	sw_backend *be = tr->be;
	int64_t n = tr->tt->g[group].numel;
	be->ops->copy_h2d(be, tr->st, tr->p32[group], host, (uint64_t)n * 4);
	be->ops->cast_f32_to_act(be, tr->st, tr->p16[group], tr->p32[group], n);
	be->ops->memset0(be, tr->st, tr->m[group], (uint64_t)n * 4);
	be->ops->memset0(be, tr->st, tr->v[group], (uint64_t)n * 4);
	be->ops->stream_sync(be, tr->st);
}

void sw_trainer_get_group(sw_trainer *tr, int group, sw_state state, float *host)
{
	sw_backend *be = tr->be;
	float *src = state == SW_STATE_P32 ? tr->p32[group] : state == SW_STATE_M ? tr->m[group]
		   : state == SW_STATE_V ? tr->v[group] : tr->grad[group];
	SW_ASSERT(state != SW_STATE_P16);
	be->ops->copy_d2h(be, tr->st, host, src, (uint64_t)tr->tt->g[group].numel * 4);
	be->ops->stream_sync(be, tr->st);
}

/* Forward through the embedding and every layer, layer-major: x[l][m] for l = 0..L. */
static void forward(sw_trainer *tr, const int32_t *inputs)
{
	sw_backend *be = tr->be;
	const sw_backend_ops *o = be->ops;
	int N = tr->d.N, M = tr->M;
	for (int mi = 0; mi < M; mi++) {
		o->copy_h2d(be, tr->st, tr->tok[mi], inputs + (int64_t)mi * N, (uint64_t)N * 4);
		o->embedding_fwd(be, tr->st, tr->x[mi], tr->tok[mi], tr->w[0].t[SW_T_EMBED], N, tr->d.C);
	}
	for (int l = 0; l < tr->L; l++)
		for (int mi = 0; mi < M; mi++)
			sw_layer_fwd(be, tr->st, &tr->d, &tr->w[l + 1], tr->inv_freq,
				     tr->x[l * M + mi], tr->x[(l + 1) * M + mi], &tr->s);
}

int sw_trainer_step(sw_trainer *tr, const int32_t *inputs, const int32_t *targets, int64_t step,
		    double lr, sw_step_stats *st)
{
	sw_backend *be = tr->be;
	const sw_backend_ops *o = be->ops;
	const sw_table *tt = tr->tt;
	int N = tr->d.N, M = tr->M, L = tr->L, G = tt->ngroups, H = G - 1;
	memset(st, 0, sizeof(*st));
	for (int64_t i = 0; i < (int64_t)N * M; i++)
		st->tokens += targets[i] >= 0;
	float scale = st->tokens ? 1.0f / (float)st->tokens : 0.0f;

	/* the layers' gradients need no zeroing: their first micro-batch writes them */
	const int fill_nan = sw_test_grad_fill_nan();
	for (int gi = 0; gi < G; gi++)
		sw_grad_take(be, tr->st, tt, gi, tr->grad[gi], fill_nan);
	forward(tr, inputs);
	/* head: loss and its gradient per micro-batch */
	double loss = 0;
	for (int mi = 0; mi < M; mi++) {
		o->copy_h2d(be, tr->st, tr->tgt[mi], targets + (int64_t)mi * N, (uint64_t)N * 4);
		sw_head_fwd_bwd(be, tr->st, &tr->d, tt, &tr->w[H], &tr->w[0], &tr->g[H], &tr->g[0],
				tr->x[L * M + mi], tr->tgt[mi], scale, tr->losses[mi], tr->dres[mi],
				&tr->s);
		o->copy_d2h(be, tr->st, tr->host_losses, tr->losses[mi], (uint64_t)N * 4);
		o->stream_sync(be, tr->st);
		for (int i = 0; i < N; i++)
			loss += tr->host_losses[i];
	}
	/* backward, layer-major, recomputing each layer from its checkpoint */
	for (int l = L - 1; l >= 0; l--)
		for (int mi = 0; mi < M; mi++)
			sw_layer_bwd(be, tr->st, &tr->d, &tr->w[l + 1], &tr->g[l + 1], tr->inv_freq,
				     tr->x[l * M + mi], tr->dres[mi], &tr->s,
				     sw_layer_bwd_dw_flags(mi, fill_nan));
	for (int mi = 0; mi < M; mi++)
		o->embedding_bwd(be, tr->st, (float *)tr->g[0].t[SW_T_EMBED], tr->dres[mi],
				 tr->tok[mi], N, tr->d.C, tr->d.V);
	/* global gradient norm: per-group sums of squares, added in group order */
	for (int gi = 0; gi < G; gi++)
		o->sumsq(be, tr->st, tr->sumsq + gi, tr->grad[gi], tt->g[gi].numel);
	double ss[G];
	o->copy_d2h(be, tr->st, ss, tr->sumsq, sizeof(ss));
	o->stream_sync(be, tr->st);
	st->loss = st->tokens ? loss / (double)st->tokens : 0.0;
	st->grad_norm = sw_grad_norm(ss, G);
	/* torch.nn.utils.clip_grad_norm_ (optim/clip.h): NAN when the norm is not finite */
	st->grad_scale = sw_clip_scale(st->grad_norm, tr->o.clip);
	if (isnan(st->grad_scale)) {
		st->grad_scale = 1.0;
		st->skipped = 1;
		return 0;
	}
	for (int i = 0; i < tt->n; i++) {
		const sw_tensor *t = &tt->t[i];
		sw_adamw_args a = sw_adamw_args_make(&tr->o.adam, lr, step, t->decay, st->grad_scale);
		int gi = t->group;
		int act = sw_dtype_size(be->act);
		o->adamw(be, tr->st, tr->p32[gi] + t->offset, tr->m[gi] + t->offset,
			 tr->v[gi] + t->offset, tr->grad[gi] + t->offset,
			 (char *)tr->p16[gi] + (uint64_t)t->offset * (uint64_t)act, t->numel, &a);
	}
	o->stream_sync(be, tr->st);
	return 0;
}

void sw_trainer_logits(sw_trainer *tr, const int32_t *inputs, float *logits)
{
	sw_backend *be = tr->be;
	int N = tr->d.N, M = tr->M, L = tr->L, H = tr->tt->ngroups - 1, V = tr->d.V;
	float *dl;
	SW_ASSERT(be->ops->dev_alloc(be, (uint64_t)N * (uint64_t)V * 4, (void **)&dl) == 0);
	forward(tr, inputs);
	for (int mi = 0; mi < M; mi++) {
		sw_head_logits(be, tr->st, &tr->d, tr->tt, &tr->w[H], &tr->w[0], tr->x[L * M + mi], dl,
			       &tr->s);
		be->ops->copy_d2h(be, tr->st, logits + (int64_t)mi * N * V, dl, (uint64_t)N * V * 4);
	}
	be->ops->stream_sync(be, tr->st);
	be->ops->dev_free(be, dl);
}
