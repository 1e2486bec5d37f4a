/* The executor's private parts, shared by its files: the executor's state (buffers from the
 * plan's buffer table, streams and events, the window, the checkpoint ring, the optimizer
 * queue, the trace) and the functions one file offers another.
 *
 * Threads and ownership. The executor thread (the caller) issues all device work: ops on the
 * compute stream `cs`, P16 prefetches on the copy stream `hs`, gradient copies to the host on
 * `ds`; NVMe I/O is submitted from the executor thread (P16, checkpoints) or the optimizer
 * thread (optimizer state). Ownership of a buffer passes only through
 *   - events: a window buffer is filled on hs after hs waited for the buffer's 'free' event
 *     (recorded on cs after its last use), and cs waits for its 'ready' event; a device
 *     gradient buffer is reused after cs waited for its 'free' event (recorded after the D2H or
 *     the device update);
 *   - queue messages: a pinned host gradient buffer goes to the optimizer thread with a message
 *     carrying the D2H event (which the thread waits for) and comes back when the thread marks
 *     it free (condition variable);
 *   - per-group counts: the executor counts the updates it queues for a group, the optimizer
 *     thread those whose P16 home is final; a use of the group's P16 waits until they agree
 *     (exec_group_wait). The step does not drain the queue (the step boundary overlaps: the
 *     next step's forward runs under the last updates); whatever reads state from outside
 *     drains it first (exec_opt_drain).
 * Nothing relies on timing, so the CPU backend (synchronous) and CUDA (asynchronous) agree. */
#ifndef SW_OFFLOAD_EXEC_INT_H
#define SW_OFFLOAD_EXEC_INT_H
#include "offload/exec.h"
#include "offload/window.h"
#include "core/model.h"
#include "core/pool.h"

#include <pthread.h>
#include <stdio.h>

#define OPT_SETS_MAX SW_PLAN_OPT_STAGES_MAX   /* most optimizer staging sets (the plan: nset) */
#define OPT_HG SW_PLAN_HOST_GRADS_MAX   /* most pinned host gradient buffers */
#define OPT_Q (OPT_HG + 4)            /* optimizer queue: an update per buffer, and room for
				       * the swap, read-ahead and flush messages */

typedef struct grp {
	sw_tier p16_tier, opt_tier;
	void *p16_dev;                     /* resident P16 */
	float *opt_dev[3];                 /* P32, m, v on the GPU */
	void *p16_host;                    /* P16 home on the host */
	float *opt_host[3];
	sw_io_extent p16_ext;              /* P16 home on NVMe (one slot) */
	sw_io_extent opt_ext[2][3];        /* P32, m, v on NVMe, per slot */
	float *ghold;                      /* one-pass clipping, resident: the gradient held
					    * until the norm is known */
	float *hheld;                      /* one-pass clipping with one NVMe slot: the group's
					    * gradient, pinned, its update deferred to the norm */
	float *alt[3];                     /* one-pass clipping, host state: the second set of
					    * P32, m, v that a speculative update writes (the
					    * step commits by swapping it with opt_host) */
	/* commits (exec_commit.c): the last update of this group's NVMe P32/m/v that was
	 * checked finite as it was written (exec_opt.c, while ex->fin_scan): 1 + the slot it
	 * wrote (0: the slot's content was not checked), and its first non-finite value */
	int fin_slot;
	int fin_k;                         /* -1: all finite; else the state (0 P32, 1 m, 2 v) */
	int64_t fin_el;                    /* ... the element in the group, and its value */
	float fin_val;
} grp;

/* A checkpoint staging slot: free, holding a read of checkpoint (l, m) in flight or done but
 * not yet consumed, or holding a write in flight. Its event marks the end of the last GPU copy
 * to or from it. */
#define CK_MAX_SLOTS SW_PLAN_CKPT_SLOTS
enum { CK_FREE, CK_READING, CK_WRITING };
typedef struct ck_slot {
	int state, l, m;
	sw_io_req req;
	double t0;                         /* submitted at (for the trace) */
} ck_slot;

typedef struct ckpt {
	sw_tier tier;
	void *dev, *host;
	sw_io_extent ext;
} ckpt;

typedef struct span { int track; double t0, t1; char name[24]; } span;

/* A message to the optimizer thread. OPT_UPDATE: group's CPU update; spec: a speculative update
 * (host state is written to the group's second set); hb < 0: the gradient is grad (a held one),
 * not a pinned queue buffer; lr, step, the NVMe slots read (rs) and written (ws) and fin_scan are
 * the sending step's (the thread may still run them while the next step has begun). OPT_SWAP:
 * host state's second sets become the current ones (a speculative pass stood). OPT_READ_AHEAD:
 * read the first chunks of group's NVMe state from slot rs into the staging sets (the next
 * step's first NVMe update). OPT_FLUSH: wait for every NVMe request the thread left in flight. */
enum { OPT_UPDATE, OPT_SWAP, OPT_READ_AHEAD, OPT_FLUSH };
/* sw_exec.read_ahead: none, the step boundary's, and also within a pass */
enum { RA_OFF, RA_BOUNDARY, RA_PASS };
typedef struct opt_msg {
	int kind, group, hb, spec;
	double scale;
	const float *grad;
	double lr;
	int64_t step, call;                /* call: the executor's step (sw_exec_step calls), which
					    * names the message's spans in the trace */
	int rs, ws, fin_scan;
} opt_msg;

/* The optimizer thread's NVMe requests that outlive one update: the write-behind of a group's
 * last chunks (waited for when its staging set is read into again, before the same group's
 * next reads, or at a flush) and the read-ahead of the next step's first NVMe group. Only the
 * optimizer thread touches it. */
typedef struct opt_io {
	sw_io_req rd[OPT_SETS_MAX][3], wr[OPT_SETS_MAX][4];
	int rd_n[OPT_SETS_MAX], wr_n[OPT_SETS_MAX];
	/* per set: whose writes are pending in it; the steps they serve (trace names); when its
	 * reads / writes were submitted, and seen complete (0: not yet; the trace's span ends
	 * there, not where they are waited for) */
	int wr_group[OPT_SETS_MAX], wr_slot[OPT_SETS_MAX];
	int64_t wr_call[OPT_SETS_MAX], rd_call[OPT_SETS_MAX];
	double tr0[OPT_SETS_MAX], tw0[OPT_SETS_MAX];
	double tr1[OPT_SETS_MAX], tw1[OPT_SETS_MAX];
	int next;                                /* the set the next group's first chunk uses */
	int ra_group, ra_rs, ra_n, ra_want;      /* read ahead: chunks [0, ra_want) of ra_group
						  * from slot ra_rs, in sets next, next + 1, ...;
						  * [0, ra_n) submitted (the rest as sets free) */
	int64_t ra_call;                         /* the step they serve (trace names) */
} opt_io;

struct sw_exec {
	sw_backend *be;
	const sw_table *tt;
	const sw_plan *p;
	sw_io *io;
	sw_exec_opts o;
	sw_dims d;
	int L, M, G, H, ab, tied;
	sw_stream *cs, *hs, *ds;
	/* as: a group's gradient work around its backward (the sum of squares, the GPU AdamW of a
	 * resident group), beside the next group's compute; cs waits for it at each backward pass's
	 * end (exec_step.c) */
	sw_stream *as;
	sw_event *as_ev, *as_tail;         /* cs -> as (the gradient is complete) and back */
	sw_event *tgrad_free;              /* tied: tgrad's last reader (its copy, its update) done */
	grp *g;
	/* P16 window: K buffers filled as the schedule (offload/window.h) says */
	int K;
	void **win;
	sw_window sched;
	uint8_t *streamed;                 /* (G) 1: the group's P16 is not resident */
	sw_event **win_ready, **win_free;
	void *head_small;                  /* tied + streamed head: the final norm's P16 */
	/* gradients */
	int ngb, gb_next;
	float **gbuf;
	sw_event **gb_free;                /* gbuf[k]'s last reader (its copy, its update) done */
	sw_event **gb_sums;                /* gbuf[k]'s sum of squares done (on as), recorded at
					    * its release ... */
	uint8_t *gb_released;              /* ... and 1 while that release is untaken */
	float *tgrad;                      /* tied: the embedding's gradient through backward */
	double *dsum;                      /* (G) device */
	/* activations */
	void *carry_dev, *carry_host;      /* (M, N, C) act */
	void *xa, *xo, *xc[SW_PLAN_XC];    /* (N, C) act device; xc: checkpoints in, used in
					    * turn (exec_ckpt_get) */
	int32_t *tok, *tgt;
	float *losses;
	float *inv_freq;
	sw_layer_scratch s;
	ckpt *ck;                          /* (L, M) */
	void **keep_blk[2];                /* (L, M) per part (attention, MLP): kept forward
					    * intermediates (exec_keep.c), NULL where recomputed */
	/* checkpoints on NVMe: ck_nslot pinned staging slots shared by the forward's write-behind
	 * (ring position ck_next) and the backward's read-ahead (ring position ck_ra_slot, next
	 * checkpoint to read (ck_ra_l, ck_ra_m) in backward order) */
	void *ck_stage[CK_MAX_SLOTS];
	sw_event *ck_ev[CK_MAX_SLOTS];
	ck_slot cks[CK_MAX_SLOTS];
	int ck_nslot, ck_next, ck_ra_slot, ck_ra_l, ck_ra_m;
	/* host checkpoints cross PCIe on the copy streams, not the compute stream: a save's D2H on
	 * ds (ck_out_ready: its input is computed; ck_out_done: copied, the carry may be
	 * overwritten), a read's H2D on hs into xc[xc_next] (xc_free[b]: xc[b]'s last reader is
	 * done; xc_ready[b]: the copy landed) */
	sw_event *ck_out_ready, *ck_out_done, *xc_free[SW_PLAN_XC], *xc_ready[SW_PLAN_XC];
	int ck_out_pending, xc_next;
	int ck_streams;                    /* 0 (SW_CKPT_STREAMS=0): those copies on the compute
					    * stream, as before (for comparison; same bits) */
	/* P16 staging from NVMe */
	void *p16_stage[SW_PLAN_P16_STAGES];
	sw_event *p16_ev[SW_PLAN_P16_STAGES];
	int p16_next;
	int64_t chunk;                     /* parameters per I/O chunk */
	/* optimizer thread */
	sw_pool *pool;
	int nhg;                           /* pinned gradient buffers (the optimizer queue) */
	float *hgrad[OPT_HG];
	sw_event *hgrad_ev[OPT_HG];
	int hgrad_busy[OPT_HG];
	void *opt_stage[OPT_SETS_MAX];     /* P32|m|v|P16 of one chunk */
	int nset;                          /* optimizer staging sets: opt_stage[0, nset) */
	float *xfer;                       /* one chunk of fp32 for load / save (sw_exec_xfer) */
	pthread_t thr;
	int thr_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	opt_msg q[OPT_Q];
	int qn, qhead, busy, quit, err;
	int io_left;                       /* the thread left NVMe requests in flight (under mu):
					    * a drain flushes them */
	/* the step boundary (docs/architecture.md "The step boundary"): with overlap on, a step
	 * returns once its GPU work is done and its updates are queued; the optimizer thread
	 * finishes the last ones while the next step begins, and every use of a group's P16
	 * waits for that group's update only (exec_group_wait) */
	int overlap;                       /* SW_STEP_OVERLAP=0 turns it off: drained at step end */
	int read_ahead;                    /* RA_BOUNDARY: read the next step's first NVMe state
					    * during the forward; RA_PASS: and within a pass, the
					    * next NVMe group's first chunks under this one's
					    * write-behind (SW_OPT_READ_AHEAD=0: RA_OFF, =boundary:
					    * RA_BOUNDARY) */
	int first_needed;                  /* of the host-state updates waiting at the queue's
					    * head, run the one the next forward needs first
					    * (SW_OPT_ORDER=fifo: in arrival order) */
	int ck_urgent;                     /* NVMe checkpoint writes go ahead of queued requests
					    * (SW_CKPT_URGENT=0: behind the optimizer's writes) */
	int write_behind;                  /* a group's last NVMe writes stay in flight while the
					    * optimizer goes on (SW_OPT_WRITE_BEHIND=0: waited for
					    * at the group's end, as drained) */
	int ra_first;                      /* the NVMe group a pass updates first (-1: none) */
	int ra_last;                       /* ... and last: after its update is queued, the next
					    * step's read-ahead is (exec_opt_send) */
	int64_t *upd_sent;                 /* (G) updates queued per group (executor thread) */
	int64_t *upd_p16;                  /* (G) of which the P16 home is final (under mu) */
	int delay_group, delay_ms;         /* test hook SW_TEST_DELAY_ADAM=MS:GROUP: the optimizer
					    * sleeps MS before each update of GROUP (-1: none) */
	int no_wait;                       /* test hook SW_TEST_NO_WAIT=1: exec_group_wait does not
					    * wait (shows that the tests catch a missing wait) */
	opt_io oio;
	int64_t ra_used;                   /* chunks updates found read ahead (atomic) */
	int64_t reordered;                 /* updates taken out of arrival order (atomic) */
	int io_failed;                     /* an NVMe failure was said (exec_io_fail) */
	int64_t step;
	uint64_t host_bytes;                /* pinned host memory allocated */
	uint64_t took[SW_TIER_COUNT][SW_PURPOSE_COUNT];   /* what the allocation took, by cell */
	int tabled;                        /* the arrays for the table's buffers exist */
	double lr;
	int slot;                          /* NVMe optimizer slot holding the current state */
	/* clipping: 0 off (one pass), 1 speculative (one pass, checked against the norm at the
	 * end, rolled back and redone or skipped; docs/architecture.md), 2 two passes */
	int clip_mode;
	int spec_pass;                     /* the speculative pass is running */
	/* speculative clipping's choice per step (exec_clip_observe): two passes while more than
	 * the plan's break-even fraction of the last SW_CLIP_WINDOW steps clipped */
	int clip_adapt;                    /* 0: one pass every step (SW_CLIP_PASSES=1) */
	double clip_break_even;            /* sw_plan_clip_break_even */
	uint32_t clip_hist;                /* bit i: the step i steps ago clipped */
	int clip_seen;                     /* steps observed, up to SW_CLIP_WINDOW */
	int clip_two;                      /* the next step runs two passes */
	sw_event *held_ev;                 /* a held gradient's D2H waits for it on cs */
	int commit_alt;                    /* at the step's end, host state's second sets become
					    * the current ones (the speculative pass was kept) */
	int first_pass;                    /* the step's first backward pass is running */
	int64_t poison_step;               /* test hook SW_TEST_POISON_GRAD=STEP:GROUP: a NaN into */
	int poison_group;                  /* that group's gradient in the first pass of this
					    * executor's STEP-th call of sw_exec_step (1-based) */
	int grad_fill_nan;                 /* test hook SW_TEST_GRAD_FILL_NAN (core/backend.h): 1
					    * a layer's gradient buffer NaN when taken; 2 that, and
					    * the first micro-batch adds to it (the control) */
	int64_t calls;                     /* sw_exec_step calls so far */
	int fin_scan;                      /* check the NVMe optimizer writes finite (exec_commit.h) */
	int commit_gate;                   /* 1: a commit is being made durable: no NVMe optimizer
					    * write until it is (under mu; exec_commit.h) */
	int commit_gate_err;               /* its failure: the writes waiting fail with it */
	double commit_wait_s;              /* time the optimizer waited at the gate */
	int commit_slot;                   /* 1 + the NVMe slot holding the last commit, which no
					    * step writes (exec_commit.c); 0: none */
	/* measurement */
	double t_step0;
	sw_event *ev0;
	sw_event **sev;                    /* event spans of the step: begin/end pairs */
	int *strack;
	int nsev, maxsev;
	int64_t sev_dropped;    /* device spans not recorded (the event pool was full) */
	int sev_warned;
	span *spans;
	int nspans, maxspans;
	double t_origin;
	pthread_mutex_t smu;
	FILE *trace;
	int trace_first;
	/* the NVMe counters sampled for the trace (exec_trace.c), every SAMPLE_MS while tracing */
	sw_io_counters *samp;
	int nsamp, maxsamp, samp_quit, samp_started;
	pthread_t samp_thr;
	sw_io_counters samp_last;          /* the last sample written, at first the counters as
					    * the sampler started (rates are differences) */
};


/* the step's uses of P16, walked by the window (exec_window.c) */
typedef struct useq { int *g; int n, pos; } useq;

/* exec_trace.c: spans of the step (host spans, and device spans from event pairs) */
extern const char *const exec_track_name[SW_TRACK_COUNT];
void exec_span_add(sw_exec *ex, int track, const char *name, double t0, double t1);
int exec_gspan_begin(sw_exec *ex, sw_stream *st, int track);
void exec_gspan_end(sw_exec *ex, sw_stream *st, int i);
void exec_trace_flush(sw_exec *ex);
void exec_finish_spans(sw_exec *ex, sw_exec_stats *st);
int exec_sampler_start(sw_exec *ex);
void exec_sampler_stop(sw_exec *ex);

/* exec_home.c: a buffer's home, one of a device buffer, pinned host memory or an NVMe extent;
 * reads and writes through it have no tier switch at the caller */
typedef struct exec_home {
	sw_tier tier;
	void *dev, *host;
	sw_io_extent ext;
} exec_home;
exec_home exec_home_p16(const sw_exec *ex, int gi);
exec_home exec_home_opt(const sw_exec *ex, int gi, int k, int slot);
int exec_home_write(sw_exec *ex, const exec_home *h, uint64_t off, uint64_t len, const void *src,
		    void *stage);
int exec_home_read(sw_exec *ex, const exec_home *h, uint64_t off, uint64_t len, void *dst, void *stage);
int exec_home_p16_fetch(sw_exec *ex, int gi, void *dev, sw_stream *st);
/* exec_home.c: NVMe transfers of whole 4 KiB pages */
uint64_t exec_up4k(uint64_t b);
uint64_t exec_io_len(uint64_t bytes);
uint64_t exec_opt_off(int64_t off);
int exec_io_read(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, void *buf);
/* Says "executor: NVMe WHAT failed: <the request's error>" for the first failure only. */
void exec_io_fail(sw_exec *ex, const char *what, const sw_io_req *r);
/* The same for a request the engine refused at submission (nothing queued), with what to do. */
void exec_io_refused(sw_exec *ex, const char *what, const sw_io_req *r);
int exec_io_write_wait(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, const void *buf);

/* exec_commit.c: the NVMe slot a step writes: the other one (two slots), never the slot of
 * the last commit; the same one (one slot, --checkpoint-only) */
int exec_write_slot(const sw_exec *ex);
/* 1 when this step writes NVMe optimizer state in place (two slots, the other one holding the
 * last commit): no pre-step copy on NVMe to roll back to */
int exec_nvme_in_place(const sw_exec *ex);
/* exec_commit.c: checks elements [off, off + n) of group g's freshly updated P32, m, v (x[k])
 * finite, keeping the group's first non-finite value (the optimizer thread, while fin_scan). */
void exec_commit_scan(sw_exec *ex, int g, int64_t off, int64_t n, const float *const x[3]);
/* exec_commit.c: waits (the optimizer thread, before a group's NVMe update) until no commit is
 * being made durable; 0, or the failed commit's -errno. */
int exec_commit_gate_wait(sw_exec *ex);
/* exec_home.c: P16 of elements [off, off + n) of group gi rounded from fp32 src into its home
 * (n at most one I/O chunk when the home is on NVMe) */
int exec_home_put_p16(sw_exec *ex, int gi, int64_t off, int64_t n, const float *src);

/* exec_opt.c: the optimizer thread and its queue */
void *exec_opt_thread(void *arg);
/* Takes the optimizer thread's next message off the queue (under mu, qn > 0): in arrival order,
 * except that of the host-state updates waiting at the head (up to the first message of another
 * kind) whose gradient copies have landed, the lowest group's goes first (first_needed; the
 * earliest of equal groups; none landed: the head). */
opt_msg exec_opt_take(sw_exec *ex);
int exec_hgrad_acquire(sw_exec *ex);
/* Queues group gi's CPU update from pinned buffer hb, or (hb < 0) from grad; waits for room. */
void exec_opt_send(sw_exec *ex, int gi, int hb, double scale, int spec, const float *grad);
/* Queues a message of another kind (OPT_SWAP, OPT_READ_AHEAD of group gi from slot rs). */
void exec_opt_post(sw_exec *ex, int kind, int gi, int rs);
/* Waits until the optimizer thread is idle with nothing in flight (its NVMe requests
 * included); returns and clears its first error since the last drain. */
int exec_opt_drain(sw_exec *ex);
/* Waits until every update of group gi queued so far has made its P16 home final. */
void exec_group_wait(sw_exec *ex, int gi);
/* The optimizer thread's first error so far (cleared), without waiting. */
int exec_opt_error(sw_exec *ex);

/* exec_step.c: the pieces of the step that clipping drives */
void exec_gpu_update(sw_exec *ex, sw_stream *st, int gi, const float *gb, double scale);
/* A group's gradient buffer around its backward (exec_step.c): taken (after its last readers;
 * zeroed for the embedding and the head, written by a layer's first micro-batch), complete (its
 * sum of squares and update), and the compute stream's join with as at a pass's end. */
float *exec_grad_begin(sw_exec *ex, int gi);
void exec_grad_end(sw_exec *ex, int gi, float *gb, int update, double scale);
void exec_grad_join(sw_exec *ex);
int exec_backward_pass(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
		       float scale_tokens, int update, double gscale, int recompute_top,
		       double *loss_out);
double exec_step_norm(sw_exec *ex);

/* exec_clip.c: backward passes this step runs: 1 without clipping or when it speculates, 2
 * with two passes, or speculating but with the NVMe state written in place (exec_nvme_in_place) */
int exec_clip_passes(const sw_exec *ex);
/* exec_clip.c: the choice's inputs at creation, and each step's outcome at its end */
void exec_clip_init(sw_exec *ex);
void exec_clip_observe(sw_exec *ex, sw_exec_stats *st);
/* exec_clip.c: the backward with clipping (one speculative pass or two), the rollback, and the
 * commit of host state's second sets at the step's end */
int exec_clip_backward(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
		       float scale, sw_exec_stats *st, double *loss);
void exec_clip_commit(sw_exec *ex);
/* exec_clip.c: host state's second sets become the current ones (the optimizer thread's
 * OPT_SWAP, or the executor's with the queue drained). */
void exec_clip_swap(sw_exec *ex);

/* exec_window.c: the P16 window, as the schedule (offload/window.h) says */
int exec_win_use(sw_exec *ex, useq *u, int expect, void **p16);
int exec_win_ahead(sw_exec *ex, const useq *u);
void exec_win_release(sw_exec *ex, void *p16);

/* exec_ckpt.c: the activation carry and the checkpoint ring */
uint64_t exec_xbytes(const sw_exec *ex);
void *exec_carry_get(sw_exec *ex, int m);
void exec_carry_put(sw_exec *ex, int m, const void *x);
int exec_ckpt_save(sw_exec *ex, int l, int m, const void *x);
int exec_ckpt_get(sw_exec *ex, int l, int m, void **x);
int exec_ck_read_from(sw_exec *ex, int l, int m);
void exec_ckpt_saved(sw_exec *ex);
void exec_ckpt_bwd_begin(sw_exec *ex);
int exec_ck_drain(sw_exec *ex);

/* exec_keep.c: keep instead of recompute. The blocks of a SW_BUF_KEEP row (0 or -ENOMEM) and
 * their release; layer l's forward for micro-batch m writing its kept parts into their blocks,
 * and its backward recomputing only the parts not kept (both on cs). */
int exec_keep_alloc(sw_exec *ex, const sw_plan_buf *b);
void exec_keep_free(sw_exec *ex, const sw_plan_buf *b);
void exec_keep_fwd(sw_exec *ex, int l, int m, const sw_group_ptrs *w, const void *x, void *y);
void exec_keep_bwd(sw_exec *ex, int l, int m, const sw_group_ptrs *w, const sw_group_ptrs *g,
		   const void *x, void *dres, int flags);
#endif
