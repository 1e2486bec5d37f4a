/* The decoder's math as sequences of backend ops: one layer forward, one layer backward with
 * recomputation from its input (the activation checkpoint), the embedding and the head.
 * Backend-agnostic and placement-agnostic: the caller says where a layer's weights, gradients,
 * input and scratch live; whoever schedules (the in-memory trainer, the offload executor) calls
 * these in the same order on any backend, so results do not depend on placement. */
#ifndef SW_CORE_MODEL_H
#define SW_CORE_MODEL_H
#include <stdint.h>
#include "core/backend.h"
#include "core/tensors.h"

/* Pointers to one group's tensors inside a contiguous buffer (table offsets). For weights the
 * buffer holds 'act' elements; for gradients fp32. Absent tensors (biases) are NULL. */
typedef struct sw_group_ptrs {
	void *t[SW_T_KIND_COUNT];
} sw_group_ptrs;

/* base: start of the group's buffer; elem: bytes per element (2 or 4). */
void sw_group_ptrs_make(sw_group_ptrs *p, const sw_table *tt, int group, void *base, int elem);

/* Shapes of one micro-batch. */
typedef struct sw_dims {
	int B, T, N;            /* rows, sequence length, N = B*T tokens */
	int C, nh, nkv, hd, F, V;
	float eps;
} sw_dims;
sw_dims sw_dims_make(const sw_config *c, int B, int T);

/* Scratch for one micro-batch through one layer (forward intermediates kept for the backward,
 * and gradient temporaries). Allocated from the backend arena. */
typedef struct sw_layer_scratch {
	void *h1, *q, *k, *v, *att, *x2, *h2, *g, *u, *s;   /* act */
	float *rstd1, *rstd2, *lse;                          /* (N), (N), (B,nh,T) */
	void *dh, *dq, *dk, *dv, *datt, *dg, *du, *ds;       /* act */
} sw_layer_scratch;

/* Bytes the scratch needs (for the planner) and its allocation from the backend's arena. */
uint64_t sw_layer_scratch_bytes(const sw_dims *d, sw_dtype act);
int sw_layer_scratch_alloc(sw_backend *be, const sw_dims *d, sw_layer_scratch *s);
void sw_layer_scratch_free(sw_backend *be, sw_layer_scratch *s);

/* y (N,C) = layer(x (N,C)); y must not alias x. */
void sw_layer_fwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		  const float *inv_freq, const void *x, void *y, sw_layer_scratch *s);
/* Recomputes the layer forward from x, then back-propagates: dres (N,C) holds dy on entry and
 * dx on return (in place); weight gradients are accumulated into g (fp32), or written there
 * (whatever g held) with flags SW_BWD_DW_SET (core/backend.h): a group's first micro-batch. */
void sw_layer_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		  const sw_group_ptrs *g, const float *inv_freq, const void *x, void *dres,
		  sw_layer_scratch *s, int flags);
/* 1 when group g's gradient is written whole by its first micro-batch (a decoder layer:
 * sw_layer_bwd with SW_BWD_DW_SET writes every tensor of it), so its buffer needs no zeroing;
 * 0 when it is added to from zero (the embedding's scatter, the head's vocabulary chunks). */
static inline int sw_group_grad_written(const sw_table *tt, int g)
{
	return g >= 1 && g < tt->ngroups - 1;
}
/* Group g's gradient buffer (its numel fp32 at buf) made ready for its first micro-batch, on
 * st: zeroed where the gradient is added to from zero; left as it is where the first
 * micro-batch writes it whole, or, under the test hook SW_TEST_GRAD_FILL_NAN (fill_nan, from
 * sw_test_grad_fill_nan), filled with NaN so that an element left unwritten shows. */
void sw_grad_take(sw_backend *be, sw_stream *st, const sw_table *tt, int g, float *buf, int fill_nan);
/* A layer's backward flags for micro-batch m: the first writes the weight gradients
 * (SW_BWD_DW_SET), the rest add; the test hook's control (fill_nan 2) adds from the first. */
static inline int sw_layer_bwd_dw_flags(int m, int fill_nan)
{
	return m || fill_nan == 2 ? 0 : SW_BWD_DW_SET;
}

/* Keeping a layer's forward intermediates instead of recomputing them in backward. The
 * intermediates come in two parts, each kept whole or recomputed whole:
 *   SW_KEEP_ATTN  h1, rstd1, q, k (after RoPE), v, att, lse (the attention block up to o_proj)
 *   SW_KEEP_MLP   x2, h2, rstd2, g, u, s (o_proj's residual sum and the MLP up to down_proj)
 * A kept part lives in one caller-given block per micro-batch (sw_layer_keep_bytes), which
 * sw_layer_keep_point makes the scratch's pointers for that part point into; sw_layer_fwd then
 * writes the part there, and sw_layer_bwd_kept, given the same scratch, recomputes only the
 * parts not in `kept`. Every op is deterministic, so the backward sees the same bytes whether a
 * part was kept or recomputed: the results are bit-identical. The down projection is never
 * recomputed (its output is not needed by the backward). */
#define SW_KEEP_ATTN 1u
#define SW_KEEP_MLP 2u
#define SW_KEEP_BOTH 3u
/* Bytes of one micro-batch's block for part (SW_KEEP_ATTN or SW_KEEP_MLP): the part's buffers,
 * each rounded up to 256 bytes. */
uint64_t sw_layer_keep_bytes(const sw_dims *d, sw_dtype act, unsigned part);
/* Points s's buffers of part into block (sw_layer_keep_bytes of them, 256-byte aligned). */
void sw_layer_keep_point(const sw_dims *d, sw_dtype act, unsigned part, void *block,
			 sw_layer_scratch *s);
/* sw_layer_bwd that recomputes only the parts not in kept (s holds the kept ones, as the
 * forward wrote them); sw_layer_bwd is this with kept 0. */
void sw_layer_bwd_kept(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_group_ptrs *g, const float *inv_freq, const void *x, void *dres,
		       sw_layer_scratch *s, unsigned kept, int flags);

/* Head: final norm + LM head + cross-entropy (+ backward). xL (N,C) the last layer's output;
 * head_w: the head group's weights (final norm, lm_head) and embed_w the embedding group's (for
 * tied models the LM head is embed_tokens). losses (N) fp32. When dres != NULL: dres (N,C) is
 * overwritten with d(scale * sum losses)/dxL and gradients are accumulated into head_g (and
 * embed_g for tied models). scratch: s->h1 (normed), s->rstd1, s->dh are used. */
void sw_head_fwd_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_table *tt,
		     const sw_group_ptrs *head_w, const sw_group_ptrs *embed_w,
		     const sw_group_ptrs *head_g, const sw_group_ptrs *embed_g, const void *xL,
		     const int32_t *targets, float scale, float *losses, void *dres,
		     sw_layer_scratch *s);

/* Logits (N,V) fp32 of xL through the head (tests, small vocabularies). */
void sw_head_logits(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_table *tt,
		    const sw_group_ptrs *head_w, const sw_group_ptrs *embed_w, const void *xL,
		    float *logits, sw_layer_scratch *s);

/* FLOPs of one optimizer step's forward+backward with one recomputation (for TFLOPS/MFU):
 * 8 * params_in_matmuls * tokens (2 fwd + 2 recompute + 4 bwd) plus attention. */
double sw_model_step_flops(const sw_config *c, int64_t tokens, int T);
#endif
