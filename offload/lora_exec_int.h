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
	void *stage;                       /* pinned, 4 KiB aligned: one group (the load) */
	uint64_t stage_bytes;
	/* the window (offload/lora_window.c): the step's uses of streamed groups, in order */
	sw_stream *hs;                     /* copies of the base to the device */
	sw_event *ready[2], *freed[2];
	void *wstage[2];                   /* pinned NVMe stages of the two slots */
	int *use_g;
	int nuse, use_pos, fetched, released;
	lad *ad;                           /* (L) */
	void *ad_p16_dev;                  /* host adapters' compute copy and gradient on the */
	float *ad_g_dev;                   /* device, one layer at a time */
	void *ckpt;                        /* pinned host block of the layer inputs kept there */
	void **ck_dev, **ck_host;          /* (L, M): a layer input on the device or the host */
	sw_io_extent *ck_ext;              /* (L, M): else on NVMe (the plan's spill) */
	void *ck_stage;                    /* pinned: one layer input on its way to/from NVMe */
	void *carry;                       /* (M) of (N, C): device or host (carry_dev) */
	int carry_dev;
	void *xa, *xb;                     /* device (N, C) act */
	int32_t *tok, *tgt;
	float *losses, *host_losses, *inv_freq, *head_sink;
	double *dsum;                      /* (L) device: sums of squares of the gradients */
	sw_layer_scratch s;
	sw_lora_scratch ls;
};

uint64_t lexec_xbytes(const sw_lexec *ex);
/* A whole extent read into / written from buf (pinned, 4 KiB aligned); one line on failure. */
int lexec_io(sw_lexec *ex, int write, sw_io_extent e, void *buf, const char *what);
/* Where a saved activation lives: layer l's input for micro-batch m (l == L: the last layer's
 * output, kept in the carry's slot m, which the head reads before it writes it), or the carry. */
typedef struct lslot { void *p; sw_tier tier; sw_io_extent ext; } lslot;
lslot lexec_ck(const sw_lexec *ex, int l, int m);
lslot lexec_carry(const sw_lexec *ex, int m);
/* lora_window.c: the step's uses begin; group g's P16 on the device for the next use (its
 * resident copy, or the window slot it was fetched into); the use released (after its compute
 * was issued), which starts the next use's fetch. */
void lexec_win_begin(sw_lexec *ex, int backward);
int lexec_base_get(sw_lexec *ex, int g, void **p16);
int lexec_base_release(sw_lexec *ex, int g);
/* Layer l's adapters for compute (bwd: with a zeroed gradient for host adapters). */
void lexec_ad_use(sw_lexec *ex, int l, int bwd, sw_lora_ptrs *lp);
#endif
