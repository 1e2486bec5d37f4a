/* Keep instead of recompute: which decoder layers keep their forward intermediates on the GPU
 * for the backward (core/model.h SW_KEEP_ATTN, SW_KEEP_MLP) rather than recomputing them from
 * the layer's checkpoint, chosen with the GPU memory the placement left, greedily by recompute
 * time saved per byte while the predicted step falls (docs/planner.md "Keep instead of
 * recompute"). */
#include "offload/plan_internal.h"
#include "core/cli.h"
#include "core/model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const unsigned parts[2] = { SW_KEEP_ATTN, SW_KEEP_MLP };

int sw_plan_keep_parse(const char *s, int *keep)
{
	static const char *names[] = { [SW_PLAN_KEEP_AUTO] = "auto", [SW_PLAN_KEEP_NONE] = "none",
				       [SW_PLAN_KEEP_ALL] = "all" };
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, names[i])) {
			*keep = i;
			return 0;
		}
	return -EINVAL;
}

static sw_dims keep_dims(const sw_plan_input *in)
{
	return sw_dims_make(&in->tt->cfg, (int)in->micro_rows, (int)in->seq_len);
}

/* Forward FLOPs per token of one layer's part i, as the backward would recompute it: the
 * attention part's q/k/v projections and causal attention (2 * seq_len * q_dim per token, as
 * in cost_flops), the MLP part's o_proj and gate/up projections. Norms, RoPE and SwiGLU are
 * not counted (no GEMM). */
static double part_flops(const sw_plan_input *in, int i)
{
	const sw_config *c = &in->tt->cfg;
	double C = (double)c->dim, qd = (double)(c->n_heads * c->head_dim);
	double kvd = (double)(c->n_kv_heads * c->head_dim), F = (double)c->ffn_dim;
	if (i == 0)
		return 2.0 * C * (qd + 2.0 * kvd) + 2.0 * (double)in->seq_len * qd;
	return 2.0 * qd * C + 4.0 * C * F;
}

double plan_keep_flops(const sw_plan *p)
{
	double per_token = 0;
	for (int l = 0; l < p->n_layers; l++)
		for (int i = 0; i < 2; i++)
			per_token += sw_plan_keep(p, l) & parts[i] ? part_flops(&p->in, i) : 0;
	return per_token * (double)p->in.batch_tokens;
}

static void count_layers(sw_plan *p)
{
	for (int i = 0; i < 2; i++) {
		p->keep_layers[i] = 0;
		for (int l = 0; l < p->n_layers; l++)
			p->keep_layers[i] += (p->keep[l] & parts[i]) != 0;
	}
}

/* --keep all: every layer's two parts, or the GPU budget's shortfall. */
static int keep_all(sw_plan *p, uint64_t room)
{
	uint64_t need = (uint64_t)p->n_layers * (uint64_t)p->n_micro * (p->keep_item[0] + p->keep_item[1]);
	if (need > room) {
		char b[3][32];
		p->short_tier = SW_TIER_GPU;
		p->short_bytes = need - room;
		plan_why(p, "--gpu-mem %s is %s short of keeping every layer's forward intermediates "
			 "(--keep all: %s); raise --gpu-mem, or use --keep auto", sw_fmt_size(p->in.gpu_mem, b[0], 32),
			 sw_fmt_size(p->short_bytes, b[1], 32), sw_fmt_size(need, b[2], 32));
		return -ENOSPC;
	}
	memset(p->keep, SW_KEEP_BOTH, (size_t)p->n_layers);
	snprintf(p->keep_why, sizeof(p->keep_why), "--keep all");
	return 0;
}

/* --keep auto: units (one part of one layer, all its micro-batches) in order of recompute time
 * saved per byte, top layers first within a part; each is taken when it fits and lowers the
 * predicted step, and the choice stops at the first that does not lower it. */
static void keep_auto(sw_plan *p, uint64_t room)
{
	int order[2] = { 0, 1 };
	double r0 = part_flops(&p->in, 0) / (double)p->keep_item[0];
	double r1 = part_flops(&p->in, 1) / (double)p->keep_item[1];
	if (r1 > r0)
		order[0] = 1, order[1] = 0;
	plan_cost(p);
	double best = p->cost.step_s;
	int short_room = 0;
	snprintf(p->keep_why, sizeof(p->keep_why), "every layer kept");
	for (int k = 0; k < 2; k++) {
		int i = order[k];
		uint64_t unit = (uint64_t)p->n_micro * p->keep_item[i];
		for (int l = p->n_layers - 1; l >= 0; l--) {
			if (unit > room) {
				short_room = 1;
				break;
			}
			p->keep[l] |= (uint8_t)parts[i];
			plan_cost(p);
			if (!(p->cost.step_s < best)) {
				p->keep[l] &= (uint8_t)~parts[i];
				snprintf(p->keep_why, sizeof(p->keep_why), "keeping more does not shorten the "
					 "predicted step (bound by %s)", sw_plan_resource_name(p->cost.bottleneck));
				return;
			}
			best = p->cost.step_s;
			room -= unit;
		}
	}
	if (short_room) {
		char b[32];
		snprintf(p->keep_why, sizeof(p->keep_why), "the %s budget is used: %s left", sw_plan_tier_label(p, SW_TIER_GPU),
			 sw_fmt_size(room, b, sizeof(b)));
	}
}

int plan_keep_choose(sw_plan *p, const plan_sizes *z)
{
	const sw_plan_input *in = &p->in;
	sw_dims d = keep_dims(in);
	sw_dtype act = in->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
	p->keep = calloc((size_t)p->n_layers, 1);
	if (!p->keep) {
		plan_why(p, "out of memory for the plan");
		return -ENOMEM;
	}
	for (int i = 0; i < 2; i++)
		p->keep_item[i] = plan_dev(sw_layer_keep_bytes(&d, act, parts[i]));
	uint64_t room = in->gpu_mem > p->total[SW_TIER_GPU] ? in->gpu_mem - p->total[SW_TIER_GPU] : 0;
	int rc = 0;
	if (in->keep == SW_PLAN_KEEP_NONE)
		snprintf(p->keep_why, sizeof(p->keep_why), "--keep none");
	else if (in->keep == SW_PLAN_KEEP_ALL)
		rc = keep_all(p, room);
	else
		keep_auto(p, room);
	count_layers(p);
	if (rc || (!p->keep_layers[0] && !p->keep_layers[1]))
		return rc;
	/* the table again, with the kept blocks' rows */
	free(p->buf);
	p->buf = NULL;
	p->nbuf = 0;
	return plan_table_build(p, z);
}

static const char *keep_name(unsigned k)
{
	static const char *names[4] = { "recomputed from its checkpoint",
					"attention part kept (norm, q/k/v, attention out, softmax stats), MLP recomputed",
					"MLP part kept (o_proj sum, norm, gate, up, SwiGLU), attention recomputed",
					"kept: nothing recomputed" };
	return names[k & 3];
}

void plan_keep_print(const sw_plan *p, FILE *f)
{
	char b[2][32];
	fprintf(f, "\nkeep instead of recompute (%s; %s attention + %s MLP per layer and micro-batch):\n",
		p->keep_why, sw_fmt_size(p->keep_item[0], b[0], 32), sw_fmt_size(p->keep_item[1], b[1], 32));
	for (int l = 0; l < p->n_layers;) {
		unsigned k = sw_plan_keep(p, l);
		int e = l + 1;
		while (e < p->n_layers && sw_plan_keep(p, e) == k)
			e++;
		uint64_t bytes = (uint64_t)(e - l) * (uint64_t)p->n_micro *
				 ((k & SW_KEEP_ATTN ? p->keep_item[0] : 0) + (k & SW_KEEP_MLP ? p->keep_item[1] : 0));
		char name[32];
		if (e - l > 1)
			snprintf(name, sizeof(name), "layers %d-%d", l, e - 1);
		else
			snprintf(name, sizeof(name), "layer %d", l);
		fprintf(f, "  %-14s %10s  %s\n", name, bytes ? sw_fmt_size(bytes, b[0], 32) : "-", keep_name(k));
		l = e;
	}
}
