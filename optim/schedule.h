/* Learning-rate schedules with Hugging Face transformers' semantics (optimization.py).
 *
 * lambda(s), s = the number of optimizer steps already taken (0 for the first update):
 *   constant:  warmup_steps > 0 and s < warmup_steps: s / warmup_steps; else 1
 *              (get_constant_schedule / get_constant_schedule_with_warmup)
 *   cosine:    s < warmup_steps: s / max(1, warmup_steps); else, with
 *              progress = (s - warmup_steps) / max(1, total_steps - warmup_steps),
 *              f = 0.5 * (1 + cos(pi * progress)), lambda = max(0, f * (1 - min_lr_rate) + min_lr_rate)
 *              (get_cosine_with_min_lr_schedule_with_warmup with num_cycles 0.5, min_lr_rate;
 *              min_lr_rate 0 is get_cosine_schedule_with_warmup)
 * The lr of update t (1-based, as sw_adamw_args_make's t) is lr * lambda(t - 1): the first update
 * of a warm-up runs at lr 0, as with LambdaLR stepped after optimizer.step(). Past total_steps
 * the cosine rises again, as HF's does; the training loop never goes there. Computed in double. */
#ifndef SW_OPTIM_SCHEDULE_H
#define SW_OPTIM_SCHEDULE_H
#include <stdint.h>

typedef enum { SW_LR_CONSTANT, SW_LR_COSINE } sw_lr_kind;

typedef struct sw_lr_schedule {
	sw_lr_kind kind;
	double lr;              /* the peak (base) learning rate */
	int64_t warmup_steps;   /* linear warm-up from 0 over this many updates */
	int64_t total_steps;    /* cosine: updates in the whole run */
	double min_lr_rate;     /* cosine: the floor, as a fraction of lr, in [0, 1] */
} sw_lr_schedule;

/* lr * lambda(t - 1) for update t >= 1. */
double sw_lr_at(const sw_lr_schedule *s, int64_t t);

/* "constant" or "cosine"; -EINVAL otherwise. */
int sw_lr_kind_parse(const char *name, sw_lr_kind *out);

/* 0, or -EINVAL after writing into why (len bytes) what is wrong: lr negative or not finite,
 * warmup_steps < 0, cosine with total_steps < 1, min_lr_rate outside [0, 1]. */
int sw_lr_schedule_check(const sw_lr_schedule *s, char *why, int len);
#endif
