/* The tensor table: every parameter once, layer-major, with where each of its states lives.
 *
 * Groups are the unit of streaming: group 0 is the embedding, groups 1..L the decoder layers,
 * group L+1 the head (final norm, and lm_head when the embeddings are not tied). Within a
 * group the tensors are contiguous in the order below, so one state of one group is one
 * contiguous range of elements (one large transfer):
 *   layer: input_layernorm, q_proj.weight, [q_proj.bias], k_proj.weight, [k_proj.bias],
 *          v_proj.weight, [v_proj.bias], o_proj.weight, post_attention_layernorm,
 *          gate_proj, up_proj, down_proj
 * Offsets are in elements from the start of the group. */
#ifndef SW_CORE_TENSORS_H
#define SW_CORE_TENSORS_H
#include <stdint.h>
#include "core/config.h"

typedef enum {
	SW_STATE_P16,    /* compute copy (bf16; fp32 in --dtype fp32 mode) */
	SW_STATE_P32,    /* fp32 master */
	SW_STATE_M,      /* Adam first moment, fp32 */
	SW_STATE_V,      /* Adam second moment, fp32 */
	SW_STATE_GRAD,   /* fp32 gradient (transient) */
	SW_STATE_COUNT
} sw_state;

typedef enum { SW_TIER_GPU, SW_TIER_HOST, SW_TIER_NVME, SW_TIER_COUNT } sw_tier;

typedef enum {
	SW_T_EMBED, SW_T_ATTN_NORM, SW_T_WQ, SW_T_BQ, SW_T_WK, SW_T_BK, SW_T_WV, SW_T_BV, SW_T_WO,
	SW_T_MLP_NORM, SW_T_WGATE, SW_T_WUP, SW_T_WDOWN, SW_T_FINAL_NORM, SW_T_LM_HEAD, SW_T_KIND_COUNT
} sw_tensor_kind;

typedef struct sw_tensor {
	char name[96];           /* Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight */
	sw_tensor_kind kind;
	int group;               /* 0 embed, 1..L layers, L+1 head */
	int ndim;
	int64_t shape[2];
	int64_t numel;
	int64_t offset;          /* elements from the start of its group */
	int decay;               /* 1: weight decay applies (matrices); 0: norms, biases */
} sw_tensor;

typedef struct sw_group {
	int first, count;        /* tensors [first, first + count) of the table */
	int64_t numel;
	sw_tier tier[SW_STATE_COUNT];   /* filled by the planner */
} sw_group;

typedef struct sw_table {
	sw_config cfg;
	sw_tensor *t;
	int n;
	sw_group *g;
	int ngroups;             /* n_layers + 2 */
	int64_t total;           /* parameters */
	int64_t max_group_numel;
} sw_table;

/* Builds the table for a config; returns 0 or -ENOMEM. */
int sw_table_build(sw_table *tt, const sw_config *c);
void sw_table_free(sw_table *tt);
/* Index of a tensor by HF name or kind+layer; -1 when absent. layer is ignored for
 * embed/final_norm/lm_head. */
int sw_table_find(const sw_table *tt, const char *name);
int sw_table_find_kind(const sw_table *tt, sw_tensor_kind kind, int layer);
/* Prints parameters per group and bytes per state kind, with totals (spillway info). */
void sw_table_print(const sw_table *tt);
#endif
