/* LoRA's layout, initialisation and the decoder layer with adapters, as backend ops
 * (offload/lora.h): the base's linears run as in core/model.c, each targeted one followed by
 * its adapter's two small GEMMs; the backward gives the base no weight gradient. */
#include "offload/lora.h"
#include "core/log.h"
#include "core/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const names[SW_LORA_NTARGETS] = { "q", "k", "v", "o", "gate", "up", "down" };
static const char *const modules[SW_LORA_NTARGETS] = {
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};
static const sw_tensor_kind kinds[SW_LORA_NTARGETS] = {
	SW_T_WQ, SW_T_WK, SW_T_WV, SW_T_WO, SW_T_WGATE, SW_T_WUP, SW_T_WDOWN,
};

const char *sw_lora_target_name(int k) { return names[k]; }
const char *sw_lora_module_name(int k) { return modules[k]; }
sw_tensor_kind sw_lora_target_kind(int k) { return kinds[k]; }

const char *sw_lora_targets_str(unsigned targets, char *buf, int len)
{
	int n = 0;
	buf[0] = 0;
	for (int k = 0; k < SW_LORA_NTARGETS; k++)
		if (targets >> k & 1)
			n += snprintf(buf + n, (size_t)(len > n ? len - n : 0), "%s%s", n ? "," : "", names[k]);
	return buf;
}

void sw_lora_layout_make(sw_lora_layout *lo, const sw_config *c, int rank, unsigned targets,
			 double alpha)
{
	int64_t C = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
	int64_t F = c->ffn_dim;
	const int64_t io[SW_LORA_NTARGETS][2] = { { C, qd }, { C, kvd }, { C, kvd }, { qd, C },
						  { C, F }, { C, F }, { F, C } };
	memset(lo, 0, sizeof(*lo));
	lo->rank = rank;
	lo->targets = targets;
	lo->alpha = alpha;
	lo->scale = (float)(alpha / rank);
	for (int k = 0; k < SW_LORA_NTARGETS; k++) {
		lo->in[k] = io[k][0];
		lo->out[k] = io[k][1];
		lo->off_a[k] = lo->off_b[k] = -1;
		if (!(targets >> k & 1))
			continue;
		lo->off_a[k] = lo->numel;
		lo->numel += rank * io[k][0];
		lo->off_b[k] = lo->numel;
		lo->numel += io[k][1] * rank;
		if (io[k][1] > lo->max_out)
			lo->max_out = io[k][1];
	}
}

void sw_lora_init_layer(const sw_lora_layout *lo, uint64_t seed, int layer, float *p32)
{
	memset(p32, 0, (size_t)lo->numel * sizeof(float));
	for (int k = 0; k < SW_LORA_NTARGETS; k++) {
		if (!sw_lora_has(lo, k))
			continue;
		sw_rng r;
		sw_rng_seed(&r, seed, SW_LORA_RNG_STREAM + 8 * (uint64_t)layer + (uint64_t)k);
		double bound = 1.0 / sqrt((double)lo->in[k]);
		float *a = p32 + lo->off_a[k];
		for (int64_t i = 0; i < lo->rank * lo->in[k]; i++)
			a[i] = (float)((2.0 * sw_rng_uniform(&r) - 1.0) * bound);
	}
}

void sw_lora_ptrs_make(sw_lora_ptrs *p, const sw_lora_layout *lo, void *p16, int act_bytes,
		       float *grad)
{
	memset(p, 0, sizeof(*p));
	for (int k = 0; k < SW_LORA_NTARGETS; k++) {
		if (!sw_lora_has(lo, k))
			continue;
		p->a[k] = (char *)p16 + (uint64_t)lo->off_a[k] * (uint64_t)act_bytes;
		p->b[k] = (char *)p16 + (uint64_t)lo->off_b[k] * (uint64_t)act_bytes;
		p->ga[k] = grad ? grad + lo->off_a[k] : NULL;
		p->gb[k] = grad ? grad + lo->off_b[k] : NULL;
	}
}

static uint64_t up256(uint64_t b) { return (b + 255) / 256 * 256; }

uint64_t sw_lora_scratch_bytes(const sw_dims *d, const sw_lora_layout *lo, sw_dtype act)
{
	uint64_t e = (uint64_t)sw_dtype_size(act), nr = (uint64_t)d->N * (uint64_t)lo->rank * e;
	uint64_t b = up256(nr) * (uint64_t)(__builtin_popcount(lo->targets) + 1);
	return b + up256((uint64_t)d->N * (uint64_t)lo->max_out * e) + up256((uint64_t)d->C * 4);
}

int sw_lora_scratch_alloc(sw_backend *be, const sw_dims *d, const sw_lora_layout *lo,
			  sw_lora_scratch *s)
{
	memset(s, 0, sizeof(*s));
	uint64_t e = (uint64_t)sw_dtype_size(be->act), nr = (uint64_t)d->N * (uint64_t)lo->rank * e;
	int rc = 0;
	for (int k = 0; k < SW_LORA_NTARGETS && !rc; k++)
		if (sw_lora_has(lo, k))
			rc = be->ops->dev_alloc(be, nr, &s->ax[k]);
	if (!rc)
		rc = be->ops->dev_alloc(be, nr, &s->dax);
	if (!rc)
		rc = be->ops->dev_alloc(be, (uint64_t)d->N * (uint64_t)lo->max_out * e, &s->bx);
	if (!rc)
		rc = be->ops->dev_alloc(be, (uint64_t)d->C * 4, (void **)&s->sink);
	if (rc)
		sw_lora_scratch_free(be, s);
	return rc ? -ENOMEM : 0;
}

void sw_lora_scratch_free(sw_backend *be, sw_lora_scratch *s)
{
	for (int k = 0; k < SW_LORA_NTARGETS; k++)
		if (s->ax[k])
			be->ops->dev_free(be, s->ax[k]);
	void *rest[] = { s->bx, s->dax, s->sink };
	for (int i = 0; i < 3; i++)
		if (rest[i])
			be->ops->dev_free(be, rest[i]);
	memset(s, 0, sizeof(*s));
}

/* the arguments every linear of one layer shares */
typedef struct lin_ctx {
	sw_backend *be;
	sw_stream *st;
	int N;
	const sw_lora_layout *lo;
	const sw_lora_ptrs *lp;
	sw_lora_scratch *ls;
} lin_ctx;

/* out (N, nout) = inp (N, nin) W^T + bias, + s * B (A inp) when target k is adapted */
static void lin_fwd(const lin_ctx *c, int k, void *out, const void *inp, const void *W,
		    const void *bias, int nin, int nout)
{
	const sw_backend_ops *o = c->be->ops;
	int N = c->N, R = c->lo->rank;
	o->matmul_fwd(c->be, c->st, out, inp, W, bias, N, nin, nout);
	if (!sw_lora_has(c->lo, k))
		return;
	o->matmul_fwd(c->be, c->st, c->ls->ax[k], inp, c->lp->a[k], NULL, N, nin, R);
	o->scale(c->be, c->st, c->ls->ax[k], c->lo->scale, (int64_t)N * R);
	o->matmul_fwd(c->be, c->st, c->ls->bx, c->ls->ax[k], c->lp->b[k], NULL, N, R, nout);
	o->add(c->be, c->st, out, out, c->ls->bx, (int64_t)N * nout);
}

/* dinp (N, nin) (= or +=, accum) dout W, no gradient for W; with an adapter also
 * dB += dout^T (s A inp), d(A inp) = s dout B, dA += d(A inp)^T inp, dinp += d(A inp) A */
static void lin_bwd(const lin_ctx *c, int k, void *dinp, const void *dout, const void *inp,
		    const void *W, int nin, int nout, int accum)
{
	const sw_backend_ops *o = c->be->ops;
	int N = c->N, R = c->lo->rank;
	o->matmul_bwd(c->be, c->st, dinp, NULL, NULL, dout, inp, W, N, nin, nout, accum);
	if (!sw_lora_has(c->lo, k))
		return;
	o->matmul_bwd(c->be, c->st, c->ls->dax, c->lp->gb[k], NULL, dout, c->ls->ax[k], c->lp->b[k],
		      N, R, nout, 0);
	o->scale(c->be, c->st, c->ls->dax, c->lo->scale, (int64_t)N * R);
	o->matmul_bwd(c->be, c->st, dinp, c->lp->ga[k], NULL, c->ls->dax, inp, c->lp->a[k], N, nin,
		      R, 1);
}

#define W(k) (w->t[SW_T_##k])

void sw_lora_layer_fwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_lora_layout *lo, const sw_lora_ptrs *lp, const float *inv_freq,
		       const void *x, void *y, sw_layer_scratch *s, sw_lora_scratch *ls)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C, qd = d->nh * d->hd, kvd = d->nkv * d->hd;
	lin_ctx c = { be, st, N, lo, lp, ls };
	o->rmsnorm_fwd(be, st, s->h1, s->rstd1, x, W(ATTN_NORM), N, C, d->eps);
	lin_fwd(&c, 0, s->q, s->h1, W(WQ), W(BQ), C, qd);
	lin_fwd(&c, 1, s->k, s->h1, W(WK), W(BK), C, kvd);
	lin_fwd(&c, 2, s->v, s->h1, W(WV), W(BV), C, kvd);
	o->rope_fwd(be, st, s->q, inv_freq, N, d->T, d->nh, d->hd);
	o->rope_fwd(be, st, s->k, inv_freq, N, d->T, d->nkv, d->hd);
	o->attention_fwd(be, st, s->att, s->lse, s->q, s->k, s->v, d->B, d->T, d->nh, d->nkv, d->hd);
	lin_fwd(&c, 3, s->x2, s->att, W(WO), NULL, qd, C);
	o->add(be, st, s->x2, s->x2, x, (int64_t)N * C);
	o->rmsnorm_fwd(be, st, s->h2, s->rstd2, s->x2, W(MLP_NORM), N, C, d->eps);
	lin_fwd(&c, 4, s->g, s->h2, W(WGATE), NULL, C, d->F);
	lin_fwd(&c, 5, s->u, s->h2, W(WUP), NULL, C, d->F);
	o->swiglu_fwd(be, st, s->s, s->g, s->u, (int64_t)N * d->F);
	lin_fwd(&c, 6, y, s->s, W(WDOWN), NULL, d->F, C);
	o->add(be, st, y, y, s->x2, (int64_t)N * C);
}

void sw_lora_layer_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_lora_layout *lo, const sw_lora_ptrs *lp, const float *inv_freq,
		       const void *x, void *dres, sw_layer_scratch *s, sw_lora_scratch *ls)
{
	const sw_backend_ops *o = be->ops;
	int N = d->N, C = d->C, F = d->F, qd = d->nh * d->hd, kvd = d->nkv * d->hd;
	lin_ctx c = { be, st, N, lo, lp, ls };
	/* recompute (the adapters' s * A x too); 'dh' is the throw-away output */
	sw_lora_layer_fwd(be, st, d, w, lo, lp, inv_freq, x, s->dh, s, ls);
	lin_bwd(&c, 6, s->ds, dres, s->s, W(WDOWN), F, C, 0);
	o->swiglu_bwd(be, st, s->dg, s->du, s->ds, s->g, s->u, (int64_t)N * F);
	lin_bwd(&c, 4, s->dh, s->dg, s->h2, W(WGATE), C, F, 0);
	lin_bwd(&c, 5, s->dh, s->du, s->h2, W(WUP), C, F, 1);
	o->rmsnorm_bwd(be, st, dres, ls->sink, s->dh, s->x2, W(MLP_NORM), s->rstd2, N, C, SW_BWD_DW_SET);
	lin_bwd(&c, 3, s->datt, dres, s->att, W(WO), qd, C, 0);
	o->attention_bwd(be, st, s->dq, s->dk, s->dv, s->datt, s->q, s->k, s->v, s->att, s->lse,
			 d->B, d->T, d->nh, d->nkv, d->hd);
	o->rope_bwd(be, st, s->dq, inv_freq, N, d->T, d->nh, d->hd);
	o->rope_bwd(be, st, s->dk, inv_freq, N, d->T, d->nkv, d->hd);
	lin_bwd(&c, 0, s->dh, s->dq, s->h1, W(WQ), C, qd, 0);
	lin_bwd(&c, 1, s->dh, s->dk, s->h1, W(WK), C, kvd, 1);
	lin_bwd(&c, 2, s->dh, s->dv, s->h1, W(WV), C, kvd, 1);
	o->rmsnorm_bwd(be, st, dres, ls->sink, s->dh, x, W(ATTN_NORM), s->rstd1, N, C, SW_BWD_DW_SET);
}
