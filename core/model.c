#include "core/model.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

void sw_group_ptrs_make(sw_group_ptrs *p, const sw_table *tt, int group, void *base, int elem)
{
	memset(p, 0, sizeof(*p));
	const sw_group *g = &tt->g[group];
	for (int i = g->first; i < g->first + g->count; i++)
		p->t[tt->t[i].kind] = (char *)base + (uint64_t)tt->t[i].offset * (uint64_t)elem;
}

sw_dims sw_dims_make(const sw_config *c, int B, int T)
{
	sw_dims d = { 0 };
	d.B = B;
	d.T = T;
	d.N = B * T;
	d.C = (int)c->dim;
	d.nh = (int)c->n_heads;
	d.nkv = (int)c->n_kv_heads;
	d.hd = (int)c->head_dim;
	d.F = (int)c->ffn_dim;
	d.V = (int)c->vocab;
	d.eps = (float)c->rms_eps;
	return d;
}

/* Sizes in elements of each scratch buffer, in the order of sw_layer_scratch. */
struct scratch_sizes { uint64_t act[18]; int nact; uint64_t f32[3]; };

static void scratch_sizes(const sw_dims *d, struct scratch_sizes *z)
{
	uint64_t N = (uint64_t)d->N, C = (uint64_t)d->C, qd = (uint64_t)d->nh * (uint64_t)d->hd;
	uint64_t kvd = (uint64_t)d->nkv * (uint64_t)d->hd, F = (uint64_t)d->F;
	uint64_t a[] = { N * C, N * qd, N * kvd, N * kvd, N * qd, N * C, N * C, N * F, N * F, N * F,
			 N * C, N * qd, N * kvd, N * kvd, N * qd, N * F, N * F, N * F };
	z->nact = (int)(sizeof(a) / sizeof(a[0]));
	memcpy(z->act, a, sizeof(a));
	z->f32[0] = N;
	z->f32[1] = N;
	z->f32[2] = (uint64_t)d->B * (uint64_t)d->nh * (uint64_t)d->T;
}

static uint64_t round256(uint64_t b) { return (b + 255) / 256 * 256; }

uint64_t sw_layer_scratch_bytes(const sw_dims *d, sw_dtype act)
{
	struct scratch_sizes z;
	scratch_sizes(d, &z);
	uint64_t total = 0;
	for (int i = 0; i < z.nact; i++)
		total += round256(z.act[i] * (uint64_t)sw_dtype_size(act));
	for (int i = 0; i < 3; i++)
		total += round256(z.f32[i] * 4);
	return total;
}

int sw_layer_scratch_alloc(sw_backend *be, const sw_dims *d, sw_layer_scratch *s)
{
	struct scratch_sizes z;
	scratch_sizes(d, &z);
	memset(s, 0, sizeof(*s));
	void **act[] = { &s->h1, &s->q, &s->k, &s->v, &s->att, &s->x2, &s->h2, &s->g, &s->u, &s->s,
			 &s->dh, &s->dq, &s->dk, &s->dv, &s->datt, &s->dg, &s->du, &s->ds };
	float **f32[] = { &s->rstd1, &s->rstd2, &s->lse };
	for (int i = 0; i < z.nact; i++) {
		int rc = be->ops->dev_alloc(be, z.act[i] * (uint64_t)sw_dtype_size(be->act), act[i]);
		if (rc)
			goto err_free;
	}
	for (int i = 0; i < 3; i++) {
		int rc = be->ops->dev_alloc(be, z.f32[i] * 4, (void **)f32[i]);
		if (rc)
			goto err_free;
	}
	return 0;
err_free:
	sw_layer_scratch_free(be, s);
	return -ENOMEM;
}

void sw_layer_scratch_free(sw_backend *be, sw_layer_scratch *s)
{
	void *all[] = { s->h1, s->q, s->k, s->v, s->att, s->x2, s->h2, s->g, s->u, s->s, s->dh,
			s->dq, s->dk, s->dv, s->datt, s->dg, s->du, s->ds, s->rstd1, s->rstd2, s->lse };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i])
			be->ops->dev_free(be, all[i]);
	memset(s, 0, sizeof(*s));
}

#define W(k) (w->t[SW_T_##k])
#define G(k) ((float *)g->t[SW_T_##k])

/* The attention part of the forward: h1, rstd1, q, k (after RoPE), v, att, lse from x. */
static void fwd_attn(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		     const float *inv_freq, const void *x, sw_layer_scratch *s)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C, qd = d->nh * d->hd, kvd = d->nkv * d->hd;
	o->rmsnorm_fwd(be, st, s->h1, s->rstd1, x, W(ATTN_NORM), N, C, d->eps);
	o->matmul_fwd(be, st, s->q, s->h1, W(WQ), W(BQ), N, C, qd);
	o->matmul_fwd(be, st, s->k, s->h1, W(WK), W(BK), N, C, kvd);
	o->matmul_fwd(be, st, s->v, s->h1, W(WV), W(BV), N, C, kvd);
	o->rope_fwd(be, st, s->q, inv_freq, N, d->T, d->nh, d->hd);
	o->rope_fwd(be, st, s->k, inv_freq, N, d->T, d->nkv, d->hd);
	o->attention_fwd(be, st, s->att, s->lse, s->q, s->k, s->v, d->B, d->T, d->nh, d->nkv, d->hd);
}

/* The MLP part: x2 = x + o_proj(att), then h2, rstd2, g, u, s (everything but down_proj). */
static void fwd_mlp(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		    const void *x, sw_layer_scratch *s)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C, qd = d->nh * d->hd;
	o->matmul_fwd(be, st, s->x2, s->att, W(WO), NULL, N, qd, C);
	o->add(be, st, s->x2, s->x2, x, (int64_t)N * C);
	o->rmsnorm_fwd(be, st, s->h2, s->rstd2, s->x2, W(MLP_NORM), N, C, d->eps);
	o->matmul_fwd(be, st, s->g, s->h2, W(WGATE), NULL, N, C, d->F);
	o->matmul_fwd(be, st, s->u, s->h2, W(WUP), NULL, N, C, d->F);
	o->swiglu_fwd(be, st, s->s, s->g, s->u, (int64_t)N * d->F);
}

void sw_layer_fwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		  const float *inv_freq, const void *x, void *y, sw_layer_scratch *s)
{
	const sw_backend_ops *o = be->ops;
	/* attention block: x2 = x + o_proj(attn(rope(q), rope(k), v)); MLP block: y = x2 +
	 * down(silu(gate(h2)) * up(h2)) */
	fwd_attn(be, st, d, w, inv_freq, x, s);
	fwd_mlp(be, st, d, w, x, s);
	o->matmul_fwd(be, st, y, s->s, W(WDOWN), NULL, d->N, d->F, d->C);
	o->add(be, st, y, y, s->x2, (int64_t)d->N * d->C);
}

/* The part's buffers in scratch order: act pointers with their element counts, f32 pointers
 * with theirs. */
typedef struct keep_part { void **act[5]; uint64_t nact[5]; float **f32[2]; uint64_t nf32[2]; } keep_part;

static void keep_part_of(const sw_dims *d, unsigned part, sw_layer_scratch *s, keep_part *k)
{
	uint64_t N = (uint64_t)d->N, C = (uint64_t)d->C, qd = (uint64_t)d->nh * (uint64_t)d->hd;
	uint64_t kvd = (uint64_t)d->nkv * (uint64_t)d->hd, F = (uint64_t)d->F;
	memset(k, 0, sizeof(*k));
	if (part == SW_KEEP_ATTN) {
		keep_part a = { { &s->h1, &s->q, &s->k, &s->v, &s->att }, { N * C, N * qd, N * kvd, N * kvd, N * qd },
				{ &s->rstd1, &s->lse }, { N, (uint64_t)d->B * (uint64_t)d->nh * (uint64_t)d->T } };
		*k = a;
	} else {
		SW_ASSERT(part == SW_KEEP_MLP);
		keep_part m = { { &s->x2, &s->h2, &s->g, &s->u, &s->s }, { N * C, N * C, N * F, N * F, N * F },
				{ &s->rstd2, NULL }, { N, 0 } };
		*k = m;
	}
}

uint64_t sw_layer_keep_bytes(const sw_dims *d, sw_dtype act, unsigned part)
{
	sw_layer_scratch s;
	keep_part k;
	keep_part_of(d, part, &s, &k);
	uint64_t total = 0;
	for (int i = 0; i < 5; i++)
		total += round256(k.nact[i] * (uint64_t)sw_dtype_size(act));
	for (int i = 0; i < 2; i++)
		total += k.f32[i] ? round256(k.nf32[i] * 4) : 0;
	return total;
}

void sw_layer_keep_point(const sw_dims *d, sw_dtype act, unsigned part, void *block,
			 sw_layer_scratch *s)
{
	keep_part k;
	keep_part_of(d, part, s, &k);
	char *at = block;
	for (int i = 0; i < 5; i++) {
		*k.act[i] = at;
		at += round256(k.nact[i] * (uint64_t)sw_dtype_size(act));
	}
	for (int i = 0; i < 2 && k.f32[i]; i++) {
		*k.f32[i] = (float *)at;
		at += round256(k.nf32[i] * 4);
	}
}

void sw_grad_take(sw_backend *be, sw_stream *st, const sw_table *tt, int g, float *buf, int fill_nan)
{
	const uint64_t bytes = (uint64_t)tt->g[g].numel * 4;
	if (!sw_group_grad_written(tt, g))
		be->ops->memset0(be, st, buf, bytes);
	else if (fill_nan)
		sw_fill_nan(be, st, buf, bytes);
}

void sw_layer_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		  const sw_group_ptrs *g, const float *inv_freq, const void *x, void *dres,
		  sw_layer_scratch *s, int flags)
{
	sw_layer_bwd_kept(be, st, d, w, g, inv_freq, x, dres, s, 0, flags);
}

void sw_layer_bwd_kept(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_group_ptrs *g, const float *inv_freq, const void *x, void *dres,
		       sw_layer_scratch *s, unsigned kept, int flags)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C, F = d->F, qd = d->nh * d->hd, kvd = d->nkv * d->hd;
	/* every weight and bias gradient of the layer is written once per call: with
	 * SW_BWD_DW_SET each is written, not added to (the group's first micro-batch) */
	const int set = flags & SW_BWD_DW_SET, acc = SW_BWD_ACCUM;
	/* recompute what was not kept (the layer's output itself is never needed) */
	if (!(kept & SW_KEEP_ATTN))
		fwd_attn(be, st, d, w, inv_freq, x, s);
	if (!(kept & SW_KEEP_MLP))
		fwd_mlp(be, st, d, w, x, s);
	/* MLP block: dres = dy flows straight to x2 and into down_proj */
	o->matmul_bwd(be, st, s->ds, G(WDOWN), NULL, dres, s->s, W(WDOWN), N, F, C, set);
	o->swiglu_bwd(be, st, s->dg, s->du, s->ds, s->g, s->u, (int64_t)N * F);
	o->matmul_bwd(be, st, s->dh, G(WGATE), NULL, s->dg, s->h2, W(WGATE), N, C, F, set);
	o->matmul_bwd(be, st, s->dh, G(WUP), NULL, s->du, s->h2, W(WUP), N, C, F, set | acc);
	o->rmsnorm_bwd(be, st, dres, G(MLP_NORM), s->dh, s->x2, W(MLP_NORM), s->rstd2, N, C, set);
	/* attention block: dres now holds d/dx2 */
	o->matmul_bwd(be, st, s->datt, G(WO), NULL, dres, s->att, W(WO), N, qd, C, set);
	o->attention_bwd(be, st, s->dq, s->dk, s->dv, s->datt, s->q, s->k, s->v, s->att, s->lse,
			 d->B, d->T, d->nh, d->nkv, d->hd);
	o->rope_bwd(be, st, s->dq, inv_freq, N, d->T, d->nh, d->hd);
	o->rope_bwd(be, st, s->dk, inv_freq, N, d->T, d->nkv, d->hd);
	o->matmul_bwd(be, st, s->dh, G(WQ), G(BQ), s->dq, s->h1, W(WQ), N, C, qd, set);
	o->matmul_bwd(be, st, s->dh, G(WK), G(BK), s->dk, s->h1, W(WK), N, C, kvd, set | acc);
	o->matmul_bwd(be, st, s->dh, G(WV), G(BV), s->dv, s->h1, W(WV), N, C, kvd, set | acc);
	o->rmsnorm_bwd(be, st, dres, G(ATTN_NORM), s->dh, x, W(ATTN_NORM), s->rstd1, N, C, set);
}

static const void *head_matrix(const sw_table *tt, const sw_group_ptrs *head,
			       const sw_group_ptrs *embed)
{
	return tt->cfg.tie_embeddings ? embed->t[SW_T_EMBED] : head->t[SW_T_LM_HEAD];
}

void sw_head_fwd_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_table *tt,
		     const sw_group_ptrs *head_w, const sw_group_ptrs *embed_w,
		     const sw_group_ptrs *head_g, const sw_group_ptrs *embed_g, const void *xL,
		     const int32_t *targets, float scale, float *losses, void *dres,
		     sw_layer_scratch *s)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C;
	const void *wh = head_matrix(tt, head_w, embed_w);
	float *dwh = NULL;
	if (dres)
		dwh = (float *)(tt->cfg.tie_embeddings ? embed_g->t[SW_T_EMBED] : head_g->t[SW_T_LM_HEAD]);
	o->rmsnorm_fwd(be, st, s->h1, s->rstd1, xL, head_w->t[SW_T_FINAL_NORM], N, C, d->eps);
	o->head_loss(be, st, losses, dres ? s->dh : NULL, dwh, s->h1, wh, targets, scale, N, C, d->V);
	if (!dres)
		return;
	o->memset0(be, st, dres, (uint64_t)N * C * (uint64_t)sw_dtype_size(be->act));
	o->rmsnorm_bwd(be, st, dres, (float *)head_g->t[SW_T_FINAL_NORM], s->dh, xL,
		       head_w->t[SW_T_FINAL_NORM], s->rstd1, N, C, 0);
}

void sw_head_logits(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_table *tt,
		    const sw_group_ptrs *head_w, const sw_group_ptrs *embed_w, const void *xL,
		    float *logits, sw_layer_scratch *s)
{
	const sw_backend_ops *o = be->ops;
	o->rmsnorm_fwd(be, st, s->h1, s->rstd1, xL, head_w->t[SW_T_FINAL_NORM], d->N, d->C, d->eps);
	o->head_logits(be, st, logits, s->h1, head_matrix(tt, head_w, embed_w), d->N, d->C, d->V);
}

double sw_model_step_flops(const sw_config *c, int64_t tokens, int T)
{
	double C = (double)c->dim, hd = (double)c->head_dim;
	double qd = (double)c->n_heads * hd, kvd = (double)c->n_kv_heads * hd, F = (double)c->ffn_dim;
	double layer_mm = C * qd * 2 + C * kvd * 2 + 3 * C * F;      /* matmul params per layer */
	double mm = layer_mm * (double)c->n_layers;
	double head = C * (double)c->vocab;
	/* causal attention: QK^T and PV, each 2*T*T/2*hd per head per sequence -> per token T*hd*2 */
	double attn = 2.0 * (double)T * qd * (double)c->n_layers;     /* fwd FLOPs per token */
	double t = (double)tokens;
	/* layers: fwd 2, recompute 2, bwd 4 FLOPs per param per token; head: fwd 2 + bwd 4 */
	return t * (8 * mm + 6 * head) + t * attn * 4;   /* attn: fwd + recompute + bwd (2x) */
}
