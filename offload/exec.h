/* The offload executor: the iteration schedule over a placement from the planner; the plan is
 * its program (the buffer table it allocates by, the window schedule it follows).
 *
 * Every group's P16 and optimizer state (P32, m, v) lives where sw_plan says: on the device (the
 * backend's arena; updated there by be->ops->adamw), on the host (pinned, be->ops->host_alloc)
 * or on NVMe (io/io.h extents; P32/m/v in two slots when plan->in.slots is 2). A step:
 *   forward   layer-major over the M micro-batches; a streamed group's P16 is fetched into one
 *             of K GPU window buffers on the copy stream (NVMe -> pinned staging -> GPU) up to
 *             K-1 groups ahead, ordered by events; each layer input is the checkpoint, copied
 *             to its tier (GPU, host, or host staging -> NVMe);
 *   head      final norm + LM head + loss, its gradient turns the carry into dx;
 *   backward  layers top-down: checkpoints fetched back, sw_layer_bwd (recompute + backward)
 *             accumulating the layer's fp32 gradient on the GPU; then either GPU AdamW
 *             (resident groups) or the gradient goes D2H to a pinned host buffer and a message
 *             to the optimizer thread, which runs the threaded CPU AdamW chunk by chunk (NVMe
 *             state read ahead, written behind) while the GPU goes on with the layer below.
 *   The step boundary (docs/architecture.md): sw_exec_step returns when the step's GPU work is
 *   done and its updates are queued; the optimizer thread finishes the last ones (CPU AdamW,
 *   P16 refresh, NVMe write-back) while the next step's forward runs, each use of a group's
 *   P16 waiting for that group's update only, and reads the next step's first NVMe state
 *   ahead. Every function that reads or writes group state from outside (put, take, eval, the
 *   commit functions) drains first; sw_exec_sync drains explicitly. SW_STEP_OVERLAP=0 drains
 *   at the end of every step instead (the same bits).
 * Clipping (exact, docs/architecture.md "Clipping"): with clip > 0 and a speculative plan
 * (plan->speculative) one pass: every group updated as its gradient completes with the scale
 * assumed 1 (resident groups' updates, and with one NVMe slot the NVMe groups', wait for the
 * norm, their gradients held), then the scale
 * optim/clip.h gives decides: exactly 1, done; below 1, every tier rolled back to the pre-step
 * state (host state: its second set was written; NVMe state: the other slot; P16 rounded again
 * from P32) and the backward redone with the scale; not finite, rolled back and skipped.
 * Without a speculative plan the backward runs twice, the first pass only accumulating the norm.
 * Both give the same bits. clip == 0 runs one pass; a non-finite norm then marks the step
 * skipped after AdamW left every element whose gradient is not finite as it was (optim/adamw.h)
 * and updated the finite ones.
 * Results do not depend on the placement: the same ops run in the same order on the same
 * values wherever the bytes live. */
#ifndef SW_OFFLOAD_EXEC_H
#define SW_OFFLOAD_EXEC_H
#include <stdint.h>
#include "core/backend.h"
#include "core/tensors.h"
#include "io/io.h"
#include "offload/plan.h"
#include "offload/trainer.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

typedef struct sw_exec sw_exec;

/* What one step measured, besides sw_step_stats. Seconds. */
enum { SW_TRACK_COMPUTE, SW_TRACK_H2D, SW_TRACK_D2H, SW_TRACK_NVME_READ, SW_TRACK_NVME_WRITE,
       SW_TRACK_OPTIM, SW_TRACK_COUNT };

typedef struct sw_exec_stats {
	sw_step_stats s;
	double step_s;
	double busy[SW_TRACK_COUNT];
	int passes;               /* backward passes run (1; 2 with two-pass clipping or a redone
				   * step) */
	int redone;               /* one-pass clipping: the norm needed clipping, the step was
				   * rolled back and redone with the scale */
	int clip_two;             /* speculative clipping ran two passes because clipping fired
				   * often (clip_recent of the clip_seen steps before it) */
	int clip_recent, clip_seen;   /* steps that clipped among the last ones seen before it */
	uint64_t nvme_read, nvme_write;   /* bytes of NVMe requests submitted in the step */
	sw_io_counters nvme;      /* what the drives did in the step's wall time (no NVMe: 0) */
	int64_t read_ahead;       /* NVMe optimizer chunks the updates found read ahead (since
				   * the last step returned: the step boundary overlaps) */
	int64_t reordered;        /* CPU updates run ahead of one queued before them (the
				   * group the next forward needs first; since the last stats) */
} sw_exec_stats;

typedef struct sw_exec_opts {
	sw_adamw_hparams adam;
	double clip;
	int cpu_threads;          /* optimizer pool threads (0: all cores) */
	const char *trace;        /* Chrome trace file, or NULL */
} sw_exec_opts;

/* Allocates the plan's buffer table, row by row in its order (GPU arena, pinned host, NVMe
 * extents through io, which may be NULL when nothing is on NVMe), and checks that what each
 * allocator took equals the table cell by cell (-EPROTO, "internal error", otherwise).
 * -errno after one error line. */
int sw_exec_create(sw_backend *be, const sw_table *tt, const sw_plan *plan, sw_io *io,
		   const sw_exec_opts *o, sw_exec **out);
/* Writes the trace (when asked) and frees everything. */
void sw_exec_destroy(sw_exec *ex);

/* Parameters per NVMe I/O chunk: plan->chunk_params (2048-aligned, at most the largest group).
 * The NVMe engine's stripe unit must divide chunk * act bytes (rounded to 4 KiB) so that chunk
 * boundaries are piece boundaries. */
int64_t sw_exec_chunk(const sw_plan *p, const sw_table *tt);
/* What the allocation took, by tier and purpose (equal to sw_plan_allocated: checked). */
void sw_exec_taken(const sw_exec *ex, uint64_t out[SW_TIER_COUNT][SW_PURPOSE_COUNT]);

/* Pinned host bytes the executor allocated (its share of --cpu-mem). */
uint64_t sw_exec_host_bytes(const sw_exec *ex);

/* Group state between steps, one chunk at a time: elements [off, off + n) of group g's
 * layer-major block, off a multiple of sw_exec_xfer_len() and n that length (or the rest of the
 * group). put: state P32 (also writes the P16 rounded from it), M or V; src NULL writes zeros
 * (not for P32). take: P32, M or V into dst. Both 0 or -errno after one error line (NVMe). */
int sw_exec_put(sw_exec *ex, int g, sw_state state, int64_t off, int64_t n, const float *src);
int sw_exec_take(sw_exec *ex, int g, sw_state state, int64_t off, int64_t n, float *dst);
/* The executor's transfer buffer (pinned, sw_exec_xfer_len() floats, counted by the planner
 * as "load/save staging"): the caller's room for one chunk between steps. */
float *sw_exec_xfer(sw_exec *ex);
int64_t sw_exec_xfer_len(const sw_exec *ex);
/* Whole groups (numel floats at table offsets) through put/take; set also zeroes m and v.
 * For tests: a group-sized buffer is the caller's. */
int sw_exec_set_group(sw_exec *ex, int group, const float *host);
int sw_exec_get_group(sw_exec *ex, int group, sw_state state, float *host);

/* The summed loss of one batch (M micro-batches of inputs/targets, as sw_exec_step takes) under the
 * current weights: the forward and the head only, through the same homes and P16 window; no
 * gradient, optimizer state or checkpoint is touched. Call between steps. 0 or -errno. */
int sw_exec_eval(sw_exec *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum);

/* Waits until the last step's updates (and their NVMe writes) are done: call before anything
 * outside the executor reads the state files it writes, and at the end of a run. 0, or the
 * -errno an update met since the last step or sync returned (after its one error line). */
int sw_exec_sync(sw_exec *ex);

/* One optimizer step; inputs, targets (M, rows, T) int32 on the host; step: AdamW's step
 * counter t (train leaves skipped steps out). 0 or -errno (I/O; an update of the step before
 * may report its error here: the step boundary).
 * Test hook: SW_TEST_POISON_GRAD=K:G in the environment at sw_exec_create writes a NaN into
 * group G's gradient in the first backward pass of this executor's K-th call. */
int sw_exec_step(sw_exec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		 double lr, sw_exec_stats *st);

#endif
