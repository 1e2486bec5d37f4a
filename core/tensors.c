#include "core/tensors.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_suffix[SW_T_KIND_COUNT] = {
	[SW_T_EMBED] = "model.embed_tokens.weight",
	[SW_T_ATTN_NORM] = "input_layernorm.weight",
	[SW_T_WQ] = "self_attn.q_proj.weight", [SW_T_BQ] = "self_attn.q_proj.bias",
	[SW_T_WK] = "self_attn.k_proj.weight", [SW_T_BK] = "self_attn.k_proj.bias",
	[SW_T_WV] = "self_attn.v_proj.weight", [SW_T_BV] = "self_attn.v_proj.bias",
	[SW_T_WO] = "self_attn.o_proj.weight",
	[SW_T_MLP_NORM] = "post_attention_layernorm.weight",
	[SW_T_WGATE] = "mlp.gate_proj.weight", [SW_T_WUP] = "mlp.up_proj.weight",
	[SW_T_WDOWN] = "mlp.down_proj.weight",
	[SW_T_FINAL_NORM] = "model.norm.weight",
	[SW_T_LM_HEAD] = "lm_head.weight",
};

static void add(sw_table *tt, sw_tensor_kind kind, int group, int layer, int64_t d0, int64_t d1)
{
	sw_tensor *t = &tt->t[tt->n++];
	memset(t, 0, sizeof(*t));
	if (layer >= 0)
		snprintf(t->name, sizeof(t->name), "model.layers.%d.%s", layer, kind_suffix[kind]);
	else
		snprintf(t->name, sizeof(t->name), "%s", kind_suffix[kind]);
	t->kind = kind;
	t->group = group;
	t->ndim = d1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->numel = d1 ? d0 * d1 : d0;
	t->decay = t->ndim == 2;   /* matrices decay; norms and biases do not (docs/architecture.md) */
	sw_group *g = &tt->g[group];
	if (g->count == 0)
		g->first = tt->n - 1;
	g->count++;
	t->offset = g->numel;
	g->numel += t->numel;
}

int sw_table_build(sw_table *tt, const sw_config *c)
{
	memset(tt, 0, sizeof(*tt));
	tt->cfg = *c;
	int L = (int)c->n_layers;
	tt->ngroups = L + 2;
	tt->t = calloc((size_t)L * 12 + 4, sizeof(sw_tensor));
	tt->g = calloc((size_t)tt->ngroups, sizeof(sw_group));
	if (!tt->t || !tt->g) {
		sw_table_free(tt);
		return -ENOMEM;
	}
	int64_t C = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
	add(tt, SW_T_EMBED, 0, -1, c->vocab, C);
	for (int l = 0; l < L; l++) {
		int g = l + 1;
		add(tt, SW_T_ATTN_NORM, g, l, C, 0);
		add(tt, SW_T_WQ, g, l, qd, C);
		if (c->attention_bias)
			add(tt, SW_T_BQ, g, l, qd, 0);
		add(tt, SW_T_WK, g, l, kvd, C);
		if (c->attention_bias)
			add(tt, SW_T_BK, g, l, kvd, 0);
		add(tt, SW_T_WV, g, l, kvd, C);
		if (c->attention_bias)
			add(tt, SW_T_BV, g, l, kvd, 0);
		add(tt, SW_T_WO, g, l, C, qd);
		add(tt, SW_T_MLP_NORM, g, l, C, 0);
		add(tt, SW_T_WGATE, g, l, c->ffn_dim, C);
		add(tt, SW_T_WUP, g, l, c->ffn_dim, C);
		add(tt, SW_T_WDOWN, g, l, C, c->ffn_dim);
	}
	add(tt, SW_T_FINAL_NORM, L + 1, -1, C, 0);
	if (!c->tie_embeddings)
		add(tt, SW_T_LM_HEAD, L + 1, -1, c->vocab, C);
	for (int g = 0; g < tt->ngroups; g++) {
		tt->total += tt->g[g].numel;
		if (tt->g[g].numel > tt->max_group_numel)
			tt->max_group_numel = tt->g[g].numel;
	}
	return 0;
}

void sw_table_free(sw_table *tt)
{
	free(tt->t);
	free(tt->g);
	memset(tt, 0, sizeof(*tt));
}

int sw_table_find(const sw_table *tt, const char *name)
{
	for (int i = 0; i < tt->n; i++)
		if (!strcmp(tt->t[i].name, name))
			return i;
	return -1;
}

int sw_table_find_kind(const sw_table *tt, sw_tensor_kind kind, int layer)
{
	int group = (kind == SW_T_EMBED) ? 0
		  : (kind == SW_T_FINAL_NORM || kind == SW_T_LM_HEAD) ? tt->ngroups - 1 : layer + 1;
	if (group < 0 || group >= tt->ngroups)
		return -1;
	const sw_group *g = &tt->g[group];
	for (int i = g->first; i < g->first + g->count; i++)
		if (tt->t[i].kind == kind)
			return i;
	return -1;
}

void sw_table_print(const sw_table *tt)
{
	char b[5][32];
	static const int bytes[4] = { 2, 4, 4, 4 };
	printf("%-12s %14s %12s %12s %12s %12s\n", "group", "parameters", "P16", "P32", "m", "v");
	for (int g = 0; g < tt->ngroups; g++) {
		char name[32];
		if (g == 0)
			snprintf(name, sizeof(name), "embed");
		else if (g == tt->ngroups - 1)
			snprintf(name, sizeof(name), "head");
		else
			snprintf(name, sizeof(name), "layer %d", g - 1);
		uint64_t n = (uint64_t)tt->g[g].numel;
		if (g > 2 && g < tt->ngroups - 2) {
			if (g == 3)
				printf("%-12s\n", "...");
			continue;
		}
		printf("%-12s %14llu", name, (unsigned long long)n);
		for (int s = 0; s < 4; s++)
			printf(" %12s", sw_fmt_size(n * (uint64_t)bytes[s], b[s], 32));
		printf("\n");
	}
	uint64_t n = (uint64_t)tt->total;
	printf("%-12s %14llu", "total", (unsigned long long)n);
	for (int s = 0; s < 4; s++)
		printf(" %12s", sw_fmt_size(n * (uint64_t)bytes[s], b[s], 32));
	printf("\n%-12s %s (16 bytes per parameter with the gradient's transient 2 excluded)\n",
	       "state", sw_fmt_size(n * 14, b[4], 32));
}
