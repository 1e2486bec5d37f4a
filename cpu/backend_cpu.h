/* CPU backend extras beyond core/backend.h: block sizes, settable so that tests can cross every
 * block boundary on tiny shapes. The defaults suit real shapes; nothing else needs to call this.
 *
 * Results depend on these sizes (they fix the partition and the summation order) but never on
 * the number of threads. */
#ifndef SW_CPU_BACKEND_CPU_H
#define SW_CPU_BACKEND_CPU_H
#include <stdint.h>
#include "core/backend.h"

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
#endif
