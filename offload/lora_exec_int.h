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

#define LEXEC_NST 2                        /* P16 stages (the plan's SW_PLAN_P16_STAGES) */
#define LEXEC_NCK_MAX 16                   /* checkpoint stages (the plan's SW_PLAN_CKPT_SLOTS) */

/* a pinned stage between NVMe and the device: free, its NVMe read in flight, its copy to or
 * from the device queued (done when ev is), its NVMe write waiting for that copy, or in flight */
enum { ST_FREE, ST_READ, ST_H2D, ST_D2H, ST_WRITE };
typedef struct lstage {
	void *buf;
	sw_event *ev;
	sw_io_req req;
	int state, use, chunk;             /* P16: the use and chunk it holds */
	int64_t ck;                        /* checkpoints: l * M + m */
} lstage;

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
	/* the window (offload/lora_window.c): the step's uses of streamed groups, in order */
	sw_stream *hs;                     /* copies of the base to the device */
	sw_event *ready[2], *freed[2];
	sw_lora_use *use;                  /* (2 G + 1) */
	int nuse, taken, released, copied; /* uses taken, released, whose copy is queued */
	int cp_chunk;                      /* the next chunk of use `copied` to copy */
	int rd_use, rd_chunk;              /* the next NVMe chunk to read */
	lstage pst[LEXEC_NST];             /* P16 stages, a ring: reads and copies in order */
	int pst_rd, pst_cp;
	uint64_t chunk;                    /* bytes of one P16 chunk (a multiple of the stripe) */
	lad *ad;                           /* (L) */
	void *ad_p16_dev;                  /* host adapters' compute copy and gradient on the */
	float *ad_g_dev;                   /* device, one layer at a time */
	void *ckpt;                        /* pinned host block of the layer inputs kept there */
	void **ck_dev, **ck_host;          /* (L, M): a layer input on the device or the host */
	sw_io_extent *ck_ext;              /* (L, M): else on NVMe (the plan's spill) */
	lstage cst[LEXEC_NCK_MAX];         /* checkpoint stages, a ring */
	int nck, ck_next, ck_cons;         /* stages; the next to claim; the next read to use */
	int64_t ra;                        /* backward read-ahead: the next (L-1-l) * M + m to
					    * read, -1 when off */
	int io_rc;                         /* the first NVMe failure (its line is printed) */
	void *carry;                       /* (M) of (N, C): device or host (carry_dev) */
	int carry_dev;
	void *xa, *xb;                     /* device (N, C) act */
	int32_t *tok, *tgt;
	int32_t *h_tok, *h_tgt;            /* pinned: the batch's inputs and targets (M, N) */
	float *losses, *inv_freq, *head_sink;
	float *host_losses;                /* pinned (M, N) */
	double *dsum;                      /* (L) device: sums of squares of the gradients */
	sw_layer_scratch s;
	sw_lora_scratch ls;
};

uint64_t lexec_xbytes(const sw_lexec *ex);
/* One line for a failed NVMe request (the first of the executor's life only: later ones are
 * mostly the same fault met by requests in flight); returns rc. */
int lexec_io_fail(sw_lexec *ex, int rc, const sw_io_req *r, const char *what);
/* Where a saved activation lives: layer l's input for micro-batch m (l == L: the last layer's
 * output, kept in the carry's slot m, which the head reads before it writes it), or the carry. */
typedef struct lslot { void *p; sw_tier tier; sw_io_extent ext; } lslot;
lslot lexec_ck(const sw_lexec *ex, int l, int m);
lslot lexec_carry(const sw_lexec *ex, int m);
/* lora_window.c: the step's uses begin; group g's P16 on the device for the next use (its
 * resident copy, or the window slot it was fetched into); the use released (after its compute
 * was issued). lexec_pump moves every transfer on that can move (NVMe reads of the base into
 * free stages, their copies to the device once the slot is free, checkpoint writes once their
 * copy to the host is done, the backward's checkpoint reads ahead) and never blocks;
 * lexec_wait pumps until done(ex, arg) holds. 0 or -errno (an NVMe failure, its line printed). */
void lexec_win_begin(sw_lexec *ex, int backward);
int lexec_base_get(sw_lexec *ex, int g, void **p16);
int lexec_base_release(sw_lexec *ex, int g);
int lexec_pump(sw_lexec *ex);
int lexec_wait(sw_lexec *ex, int (*done)(sw_lexec *ex, int64_t arg), int64_t arg);
/* Waits for every NVMe request in flight (whatever its outcome) and every stage's copy. */
void lexec_drain(sw_lexec *ex);
/* lora_step.c: the checkpoint stages' part of the pump. */
int lexec_ck_pump(sw_lexec *ex);
/* Layer l's adapters for compute (bwd: with a zeroed gradient for host adapters). */
void lexec_ad_use(sw_lexec *ex, int l, int bwd, sw_lora_ptrs *lp);
#endif
