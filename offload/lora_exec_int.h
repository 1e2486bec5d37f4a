/* The LoRA executor's state, shared by offload/lora_exec.c (buffers, the base's homes, the
 * adapters) and offload/lora_step.c (the step). */
#ifndef SW_OFFLOAD_LORA_EXEC_INT_H
#define SW_OFFLOAD_LORA_EXEC_INT_H
#include "offload/lora_exec.h"

/* a base group's P16: resident on the device, in pinned host memory, or an NVMe extent */
typedef struct lhome {
	sw_tier tier;
	void *dev, *host;
	sw_io_extent ext;
	uint64_t bytes;
} lhome;

/* one layer's adapters: device pointers (tier GPU) or pinned host ones (tier HOST) */
typedef struct lad {
	sw_tier tier;
	float *p32, *m, *v, *g;
	void *p16;
} lad;

struct sw_lexec {
	sw_backend *be;
	sw_stream *cs;
	const sw_table *tt;
	const sw_plan_lora *p;
	sw_io *io;
	sw_lexec_opts o;
	sw_dims d;
	int L, M, G, ab;
	lhome *base;                       /* (G) */
	void *win[2];                      /* device: streamed groups' P16 (the head and, tied,
					    * the embedding at once) */
	void *stage;                       /* pinned, 4 KiB aligned: one group (load, NVMe) */
	uint64_t stage_bytes;
	lad *ad;                           /* (L) */
	void *ad_p16_dev;                  /* host adapters' compute copy and gradient on the */
	float *ad_g_dev;                   /* device, one layer at a time */
	void *ckpt, *carry;                /* pinned host: (L+1, M) and (M) of (N, C) act */
	void *xa, *xb;                     /* device (N, C) act */
	int32_t *tok, *tgt;
	float *losses, *host_losses, *inv_freq, *head_sink;
	double *dsum;                      /* (L) device: sums of squares of the gradients */
	sw_layer_scratch s;
	sw_lora_scratch ls;
};

uint64_t lexec_xbytes(const sw_lexec *ex);
/* Group g's P16 on the device: its resident copy, or fetched into window buffer `slot`. */
int lexec_base_get(sw_lexec *ex, int g, int slot, void **p16);
/* Layer l's adapters for compute (bwd: with a zeroed gradient for host adapters). */
void lexec_ad_use(sw_lexec *ex, int l, int bwd, sw_lora_ptrs *lp);
#endif
