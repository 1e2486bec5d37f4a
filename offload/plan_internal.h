/* The planner's private parts shared by its files: buffer sizes as the allocators count them,
 * and the steps of sw_plan_build (placement per tier, the buffer table, the cost model). */
#ifndef SW_OFFLOAD_PLAN_INTERNAL_H
#define SW_OFFLOAD_PLAN_INTERNAL_H
#include "offload/plan.h"

#define OPT_BYTES 12            /* P32 + m + v, fp32 each */
#define GRAD_BYTES 4            /* parameter gradients are fp32 */

/* Bytes of one buffer as each tier's allocator counts it: the GPU arena hands out 256-byte
 * blocks (core/suballoc.h), pinned host buffers are whole 4 KiB pages. */
uint64_t plan_dev(uint64_t bytes);
uint64_t plan_host(uint64_t bytes);
uint64_t plan_min(uint64_t a, uint64_t b);

/* The fixed buffers of the executor, each (sizes as allocated) */
typedef struct plan_sizes {
	uint64_t window, grad, tied_grad;       /* device: one window buffer, one gradient */
	uint64_t scratch, xio, tokens, inv_freq, norm_sums, head_norm;   /* device, each */
	int n_xio, n_tokens;                    /* 2 + SW_PLAN_XC and 3 */
	uint64_t ws[SW_PURPOSE_COUNT];          /* working-set cells: max(estimate, buffers) */
	uint64_t held[SW_PURPOSE_COUNT];        /* of which held back (estimate - buffers) */
	uint64_t carry;                         /* whole batch, bytes before rounding */
	uint64_t stage_p16, stage_opt, stage_ckpt, xfer;   /* host, each */
	int ckpt_slots;                         /* checkpoint staging buffers */
} plan_sizes;

void plan_sizes_get(const sw_plan_input *in, int64_t chunk_params, plan_sizes *z);
uint64_t plan_group_dev(const sw_plan *p, int g);      /* P16 + P32 + m + v on the GPU */
uint64_t plan_p16_host(const sw_plan *p, int g);
uint64_t plan_opt_host(const sw_plan *p, int g);       /* P32 + m + v on the host */
uint64_t plan_all_state_dev(const sw_plan *p);
uint64_t plan_window_bytes(const sw_plan_input *in, const plan_sizes *z);
int plan_resident(const sw_plan *p, int g);
/* The groups the CPU updates (those not resident): how many; *max_numel: the largest one's
 * parameters, what one pinned gradient buffer holds. */
int plan_cpu_groups(const sw_plan *p, uint64_t *max_numel);
/* The pinned gradient buffers every plan with n CPU-updated groups has (SW_PLAN_HOST_GRADS) */
static inline int plan_host_grads_base(int n) { return n < SW_PLAN_HOST_GRADS ? n : SW_PLAN_HOST_GRADS; }
/* 1 while placing for one speculative clipping pass (rollback buffers counted) */
int plan_spec(const sw_plan *p);

/* sw_plan_build's steps, in order; each returns 0, or -ENOSPC with p->why set */
int plan_place_gpu(sw_plan *p, const plan_sizes *z);
int plan_place_host(sw_plan *p, const plan_sizes *z);
int plan_place_nvme(sw_plan *p);
int plan_table_build(sw_plan *p, const plan_sizes *z);
void plan_cost(sw_plan *p);
/* plan_keep.c: the kept layers' parts (keep instead of recompute), chosen with the GPU room the
 * table leaves (sw_plan_input.keep); the table is rebuilt with their rows. 0, or -ENOSPC (--keep
 * all does not fit) / -ENOMEM with p->why set. Needs p->speculative (it runs plan_cost). */
int plan_keep_choose(sw_plan *p, const plan_sizes *z);
/* Recompute FLOPs of one backward pass that the kept parts save. */
double plan_keep_flops(const sw_plan *p);
void plan_keep_print(const sw_plan *p, FILE *f);

/* Host bytes held back for the process: the input's host_reserve plus the executor's and the
 * I/O engine's own machinery (plan_host_machinery in plan_table.c) */
uint64_t plan_host_held(const sw_plan_input *in);
/* the host's minimum given the GPU placement (sw_plan_min_budget) */
uint64_t plan_host_min(const sw_plan *p, const plan_sizes *z);
/* NVMe bytes the engine takes for the placement with `slots` optimizer slots (extents in the
 * executor's allocation order, alignment skips, the files' stripe rounding), by purpose */
uint64_t plan_nvme_footprint(const sw_plan *p, int slots, uint64_t by[SW_PURPOSE_COUNT]);

/* 1.234 M, 233.166 B: parameter counts, as plan prints them */
const char *plan_fmt_count(double n, char *buf, int len);
/* Parameters in GEMMs: every matrix but an untied embedding's (a lookup) into *all, those of
 * the n_layers layers into *layers (what recompute runs again) */
void plan_gemm_params(const sw_table *tt, int64_t n_layers, int64_t *all, int64_t *layers);

void plan_why(sw_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plan_list_add(char *out, size_t len, const char *name, uint64_t bytes);
void plan_list_purposes(char *out, size_t len, const uint64_t by[SW_PURPOSE_COUNT]);
#endif
