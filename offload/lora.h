/* LoRA training on a frozen base: the adapters' layout in a layer, PEFT's initialisation from
 * our RNG, and the decoder layer's forward and backward with the adapters added (docs/lora.md).
 *
 * Every targeted linear W (out x in) of a decoder layer gets A (r x in) and B (out x r), and
 * computes y = W x (+ bias) + s * B (A x) with s = alpha / r, as PEFT's LoraLayer (dropout 0).
 * A layer's adapters are one fp32 block: for each targeted linear in the order q, k, v, o, gate,
 * up, down, A (row-major r x in) then B (row-major out x r). The base gets no gradient at all:
 * backward computes input gradients through W and weight gradients only for A and B. */
#ifndef SW_OFFLOAD_LORA_H
#define SW_OFFLOAD_LORA_H
#include <stdint.h>
#include "core/model.h"
#include "offload/plan_lora.h"

typedef struct sw_lora_layout {
	int rank;
	unsigned targets;                 /* SW_LORA_* mask */
	double alpha;
	float scale;                      /* alpha / rank, as PEFT's scaling (rounded to fp32) */
	int64_t in[SW_LORA_NTARGETS], out[SW_LORA_NTARGETS];   /* features of each linear */
	int64_t off_a[SW_LORA_NTARGETS], off_b[SW_LORA_NTARGETS];   /* in the layer's block */
	int64_t numel;                    /* adapter parameters of one layer */
	int64_t max_out;
} sw_lora_layout;

void sw_lora_layout_make(sw_lora_layout *lo, const sw_config *c, int rank, unsigned targets,
			 double alpha);
/* 1 when target k (0..6) is adapted. */
static inline int sw_lora_has(const sw_lora_layout *lo, int k) { return lo->targets >> k & 1; }
/* "q", ..., "down"; "self_attn.q_proj", ..., "mlp.down_proj" (PEFT's module paths); the
 * tensor kind of the base weight. */
const char *sw_lora_target_name(int k);
const char *sw_lora_module_name(int k);
sw_tensor_kind sw_lora_target_kind(int k);
/* "q,k,v" for a mask (buf of at least 32 bytes). */
const char *sw_lora_targets_str(unsigned targets, char *buf, int len);

/* PEFT's initialisation of decoder layer `layer` (0-based) into p32 (lo->numel floats): A as
 * torch.nn.init.kaiming_uniform_(a=sqrt(5)), i.e. uniform on [-1/sqrt(in), 1/sqrt(in)), drawn
 * from our RNG (core/rng.h) stream SW_LORA_RNG_STREAM + 8 * layer + k of --seed:
 * (2u - 1) / sqrt(in) in double, rounded to fp32, row-major; B zero. */
#define SW_LORA_RNG_STREAM 0x4c6f5241ull
void sw_lora_init_layer(const sw_lora_layout *lo, uint64_t seed, int layer, float *p32);

/* One layer's adapters on the device: compute copies (act) and fp32 gradients, NULL where the
 * target is not adapted. */
typedef struct sw_lora_ptrs {
	const void *a[SW_LORA_NTARGETS], *b[SW_LORA_NTARGETS];
	float *ga[SW_LORA_NTARGETS], *gb[SW_LORA_NTARGETS];
} sw_lora_ptrs;
/* p16 (act) and grad (fp32) blocks of one layer laid out as lo says; grad may be NULL. */
void sw_lora_ptrs_make(sw_lora_ptrs *p, const sw_lora_layout *lo, void *p16, int act_bytes,
		       float *grad);

/* Scratch of the adapters for one micro-batch through one layer: each target's s * A x (N, r),
 * kept from the forward (recomputed) for the backward; B's output (N, max_out); the gradient of
 * A x (N, r); and a sink for the frozen norms' weight gradient (C fp32; written with
 * SW_BWD_DW_SET, never read, so it needs no zeroing). */
typedef struct sw_lora_scratch {
	void *ax[SW_LORA_NTARGETS];
	void *bx, *dax;
	float *sink;
} sw_lora_scratch;
uint64_t sw_lora_scratch_bytes(const sw_dims *d, const sw_lora_layout *lo, sw_dtype act);
int sw_lora_scratch_alloc(sw_backend *be, const sw_dims *d, const sw_lora_layout *lo,
			  sw_lora_scratch *s);
void sw_lora_scratch_free(sw_backend *be, sw_lora_scratch *s);

/* sw_layer_fwd / sw_layer_bwd (core/model.h) with the adapters: w the frozen base layer (P16),
 * lp its adapters. The backward accumulates the adapters' gradients into lp's ga/gb only. */
void sw_lora_layer_fwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_lora_layout *lo, const sw_lora_ptrs *lp, const float *inv_freq,
		       const void *x, void *y, sw_layer_scratch *s, sw_lora_scratch *ls);
void sw_lora_layer_bwd(sw_backend *be, sw_stream *st, const sw_dims *d, const sw_group_ptrs *w,
		       const sw_lora_layout *lo, const sw_lora_ptrs *lp, const float *inv_freq,
		       const void *x, void *dres, sw_layer_scratch *s, sw_lora_scratch *ls);
#endif
