/* The planner's LoRA mode: a frozen base (P16 only, read-only, streamed like today's P16) with
 * low-rank adapters on the targeted linears (fp32 masters, AdamW m and v, fp32 gradients and a
 * P16 compute copy), placed under the budgets, with the step's traffic and time.
 *
 * `spillway plan --lora-rank R` prints it and `train --lora-rank R` runs it (the executor,
 * offload/lora_exec.h; docs/planner.md "LoRA mode", docs/lora.md). The full fine-tuning planner
 * (offload/plan.h) is untouched by it.
 *
 * Per targeted linear of in -> out features, rank r: A is r x in, B is out x r, r * (in + out)
 * adapter parameters. Adapters of one decoder layer are placed together: on the GPU from the
 * bottom layer up while they fit after the working set, else in host memory (CPU AdamW). The
 * base's groups (core/tensors.h) hold P16 only: GPU-resident from the bottom as they fit, else
 * streamed from the host cache or from NVMe (one copy, never written). */
#ifndef SW_OFFLOAD_PLAN_LORA_H
#define SW_OFFLOAD_PLAN_LORA_H
#include <stdint.h>
#include <stdio.h>
#include "offload/plan.h"

/* --lora-targets: one bit per linear of a decoder layer */
enum {
	SW_LORA_Q = 1u << 0, SW_LORA_K = 1u << 1, SW_LORA_V = 1u << 2, SW_LORA_O = 1u << 3,
	SW_LORA_GATE = 1u << 4, SW_LORA_UP = 1u << 5, SW_LORA_DOWN = 1u << 6,
	SW_LORA_ALL = 0x7f, SW_LORA_NTARGETS = 7
};

#define SW_LORA_WINDOW_BUFFERS 2    /* the P16 window's device buffers (--prefetch must be 2) */

/* Rows of the LoRA plan's accounting (bytes[tier][row]). */
typedef enum {
	SW_LORA_BASE_P16,           /* the frozen base: GPU-resident groups, host cache, NVMe */
	SW_LORA_AD_P32,             /* adapters' fp32 masters */
	SW_LORA_AD_M,               /* adapters' AdamW m */
	SW_LORA_AD_V,               /* adapters' AdamW v */
	SW_LORA_AD_GRAD,            /* adapters' fp32 gradients */
	SW_LORA_AD_P16,             /* adapters' compute copy */
	SW_LORA_WINDOW,             /* GPU: P16 prefetch window, K base-group-sized buffers */
	SW_LORA_WORKSET,            /* GPU: one micro-batch through one layer, staging, head, cuBLAS,
				     * reserve (the full planner's working set less its gradient
				     * buffers: the base has no gradient) */
	SW_LORA_CKPT,               /* activation checkpoints */
	SW_LORA_CARRY,              /* the activation carry, whole batch */
	SW_LORA_STAGE,              /* host, pinned: NVMe staging of base P16 and checkpoints */
	SW_LORA_XFER,               /* host, pinned: one I/O chunk for loading the base */
	SW_LORA_HELD,               /* host: held for the process */
	SW_LORA_ROW_COUNT
} sw_lora_row;

typedef struct sw_plan_lora_cost {
	double flops_fwd;           /* base forward: 2 * N_gemm * tokens */
	double flops_bwd;           /* base input gradients only: 2 * N_gemm * tokens */
	double flops_recompute;     /* 2 * N_layers_gemm * tokens */
	double flops_attn;          /* 8 * L * tokens * seq_len * q_dim, as full fine-tuning */
	double flops_adapter;       /* 8 * N_adapter * tokens (forward, recompute, backward) */
	uint64_t h2d_base;          /* streamed base P16 fetched (sw_plan_lora_uses): the embedding
				     * and the head once (tied: the embedding twice), a layer in
				     * forward and again in backward unless its window slot still
				     * holds it (the top streamed layer, unless a streamed tied
				     * embedding took that slot for the head) */
	uint64_t h2d_adapter;       /* host adapters' P16: 2 reads (forward, backward) */
	uint64_t d2h_adapter;       /* host adapters' gradients, fp32 */
	uint64_t h2d_act, d2h_act;  /* checkpoints and the carry off the GPU */
	uint64_t h2d, d2h, nvme_read, nvme_write;
	int64_t adam_params;        /* adapters updated by CPU AdamW */
	double t[SW_RES_COUNT];
	double t_after;             /* with clipping: host adapters' AdamW after the norm */
	double step_s, tokens_per_s, tflops;
	sw_plan_resource bottleneck;
} sw_plan_lora_cost;

typedef struct sw_plan_lora {
	sw_plan_input in;
	int n_layers, ngroups;
	int p16_bytes;
	int64_t base_params;        /* every parameter of the base */
	int64_t adapter_params;     /* every adapter parameter (A and B of every targeted linear) */
	int64_t adapter_layer;      /* of one decoder layer */
	sw_tier *base_tier;         /* [ngroups]: where the group's P16 lives */
	sw_tier *adapter_tier;      /* [ngroups]: layers' adapters (GPU or host); others unused */
	int streaming;              /* 1: some base group is not GPU-resident (the window exists) */
	int carry_on_gpu;
	int resident_groups, gpu_adapter_layers;
	int64_t n_micro, ckpt_count[SW_TIER_COUNT];
	uint64_t ckpt_item;
	uint64_t payload[SW_LORA_ROW_COUNT];   /* exact bytes of each state row, whatever the tier */
	uint64_t bytes[SW_TIER_COUNT][SW_LORA_ROW_COUNT];   /* as allocated (GPU 256 B, host and
							     * NVMe 4 KiB blocks) */
	uint64_t total[SW_TIER_COUNT], budget[SW_TIER_COUNT];
	int64_t chunk_params;       /* NVMe I/O chunk of the streamed base (min(in.chunk_params
				     * rounded up to 2048, largest group)) */
	int ckpt_slots;             /* pinned staging buffers of spilled checkpoints */
	sw_plan_lora_cost cost;
	sw_tier short_tier;
	uint64_t short_bytes;
	char why[1024];
} sw_plan_lora;

/* One use of a streamed base group in a step, in the order the executor runs them
 * (offload/lora_window.c): its device window slot (0 or 1) and whether it is fetched into it
 * (0: the slot still holds the group from its previous use in the step: the top streamed layer
 * from the end of the forward to the start of the backward, unless a streamed tied embedding
 * took that slot for the head). */
typedef struct sw_lora_use { int g, slot, fetch, prev; } sw_lora_use;   /* prev: the slot's
									 * previous use, or -1 */

/* "q,k,v,o,gate,up,down" (any subset, any order) -> mask. 0, or -EINVAL with a line in why. */
int sw_lora_targets_parse(const char *s, unsigned *mask, char *why, int why_len);
/* Adapter parameters of decoder layer tensors of config c at rank r for the targets. */
int64_t sw_lora_layer_params(const sw_config *c, int64_t rank, unsigned targets);

/* Plans in->lora_rank adapters on in->lora_targets over the frozen base in->tt. Returns 0;
 * -EINVAL (bad rank, targets or input), -ENOSPC (p->short_tier short by p->short_bytes), -ENOMEM,
 * with p->why set. Call sw_plan_lora_free whatever it returned. */
int sw_plan_lora_build(sw_plan_lora *p, const sw_plan_input *in);
void sw_plan_lora_free(sw_plan_lora *p);
/* The step's uses of the base groups that tier[] does not keep on the GPU: forward (the
 * embedding, the layers bottom-up), the head (and, tied, the embedding with it), and with
 * backward the layers top-down. u holds at least 2 * ngroups + 1 entries; returns the count.
 * The executor runs exactly these and the cost model counts their fetches. */
int sw_plan_lora_uses(const sw_table *tt, const sw_tier *tier, int backward, sw_lora_use *u);
/* The base's NVMe stripe for P16 chunks of chunk_bytes: 1 MiB, or the chunk (4 KiB-rounded) when
 * that is smaller; and the pinned stage one chunk is read into: the chunk in whole stripes (a
 * read starts on a stripe boundary). The executor's engine and the plan's staging both use it. */
uint64_t sw_plan_lora_stripe(uint64_t chunk_bytes);
uint64_t sw_plan_lora_stage(uint64_t chunk_bytes);
/* The most decoder layers (same width, same budgets) with which the LoRA plan still fits:
 * 0 when even one does not; *params gets that base's parameter count. */
int64_t sw_plan_lora_max_layers(const sw_plan_input *in, int64_t *params);
void sw_plan_lora_print(const sw_plan_lora *p, FILE *f);
const char *sw_lora_row_name(sw_lora_row r);
#endif
