/* CPU backend extras beyond core/backend.h: block sizes, settable so that tests can cross every
 * block boundary on tiny shapes. The defaults suit real shapes; nothing else needs to call this.
 *
 * Results depend on these sizes (they fix the partition and the summation order) but never on
 * the number of threads. */
#ifndef SW_CPU_BACKEND_CPU_H
#define SW_CPU_BACKEND_CPU_H
#include <stdint.h>
#include "core/backend.h"
#include "core/model.h"

typedef struct sw_cpu_tune {
	int gemm_m, gemm_n;   /* GEMM output tile per task (rows, cols); also the bf16 conversion block */
	int gemm_k;           /* K block when a bf16 operand is converted to fp32 */
	int head_rows;        /* head_loss: token rows per task */
	int head_chunk;       /* head_loss: vocabulary rows per chunk */
	int64_t head_dlog;    /* head_loss backward: at most this many dlogits floats (N x chunk);
	                         the backward's chunk shrinks to fit */
	int attn_rows;        /* attention forward: query rows per task */
	int col_block;        /* column reductions (rmsnorm dw, dbias, embedding_bwd): columns/task */
	int64_t elem_chunk;   /* elementwise ops, sumsq, adamw: elements per task */
} sw_cpu_tune;

void sw_cpu_backend_get_tune(sw_backend *be, sw_cpu_tune *t);
/* Every field must be >= 1. */
void sw_cpu_backend_set_tune(sw_backend *be, const sw_cpu_tune *t);

/* The op scratch the backend takes, with its default block sizes and `threads` workers (0: one
 * per core, as sw_backend_opts.threads), for ops on micro-batches of shape d whose gradient
 * norms sum groups of at most max_numel parameters: the workers' scratch, the scratch shared by
 * one op's tasks, and the rope table, each rounded up to pages. The CPU backend's counterpart
 * of the CUDA backend's reserve; a run takes it out of --gpu-mem. */
uint64_t sw_cpu_scratch_bytes(int threads, const sw_dims *d, int64_t max_numel);
/* Allocates that scratch now, from the device arena (it then counts in be->used and be->peak),
 * sized with the backend's current block sizes; from then on an op needing more is an internal
 * error (it aborts, naming the op's need) instead of growing outside the budget. -ENOSPC with a
 * message when the arena cannot hold it. */
int sw_cpu_backend_reserve_scratch(sw_backend *be, const sw_dims *d, int64_t max_numel);
#endif
