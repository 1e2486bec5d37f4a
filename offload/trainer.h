/* The in-memory trainer: every state of every group resident in the backend's arena (the
 * "all on GPU" placement). It runs the executor's schedule (docs/architecture.md) —
 * layer-major traversal of M micro-batches, layer inputs kept as checkpoints, recomputation in backward, exact global
 * gradient-norm clipping after backward, AdamW — with the same calls, in the same order, as the
 * offload executor, which adds streaming around them. */
#ifndef SW_OFFLOAD_TRAINER_H
#define SW_OFFLOAD_TRAINER_H
#include <stdint.h>
#include "core/backend.h"
#include "core/model.h"
#include "core/tensors.h"
#include "optim/adamw.h"

typedef struct sw_trainer_opts {
	int rows;                 /* rows (sequences) per micro-batch */
	int micro_batches;        /* M: micro-batches per optimizer step */
	int seq_len;              /* T */
	sw_adamw_hparams adam;    /* lr here is ignored; the step's lr is passed to sw_trainer_step */
	double clip;              /* max global gradient norm; 0 disables clipping */
} sw_trainer_opts;

typedef struct sw_step_stats {
	double loss;              /* mean over unmasked targets of the step */
	double grad_norm;         /* before clipping */
	double grad_scale;        /* applied to the gradient (1 when not clipped) */
	int skipped;              /* 1: non-finite gradient, no update was applied */
	int64_t tokens;           /* unmasked targets */
} sw_step_stats;

typedef struct sw_trainer sw_trainer;

/* Allocates every buffer from the backend's arena; -ENOMEM (message printed, naming the bytes
 * needed) when the budget is too small. */
int sw_trainer_create(sw_backend *be, const sw_table *tt, const sw_trainer_opts *o,
		      sw_trainer **out);
void sw_trainer_destroy(sw_trainer *tr);

/* Sets a group's fp32 master weights (and its compute copy) from host memory; m and v are
 * zeroed. host: the group's numel floats at table offsets. */
void sw_trainer_set_group(sw_trainer *tr, int group, const float *host);
/* Copies a group's state (SW_STATE_P32, _M, _V, _GRAD as fp32) to host. */
void sw_trainer_get_group(sw_trainer *tr, int group, sw_state state, float *host);

/* One optimizer step (step is 1-based: AdamW's t). inputs, targets: (M, rows, T) int32 on the
 * host; targets hold -100 where the loss is masked. */
int sw_trainer_step(sw_trainer *tr, const int32_t *inputs, const int32_t *targets, int64_t step,
		    double lr, sw_step_stats *st);
/* Forward only: logits (M*rows*T, V) fp32 to host (tests; small vocabularies). */
void sw_trainer_logits(sw_trainer *tr, const int32_t *inputs, float *logits);
#endif
