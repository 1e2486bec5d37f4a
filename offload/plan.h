/* The planner: where every state of every group lives, what the GPU and the host must hold
 * besides, how much disk the run needs, and how long a step should take.
 *
 * This header is the seam between the planner and the executor. The plan is the executor's
 * program: its buffer table (sw_plan.buf) lists every allocation the executor makes (purpose,
 * tier, bytes each as the allocator counts them, count, owner), the executor allocates by one
 * loop over it and checks what it took against it cell by cell, and the printed per-tier
 * totals are sums over it. The P16 window's schedule is offload/window.h, followed by both.
 * docs/planner.md explains the policy and every formula; the short version:
 *
 *   GPU   working set (mandatory): P16 prefetch window of K groups, fp32 gradient buffer(s),
 *         one micro-batch through one layer (forward intermediates and their gradients),
 *         micro-batch staging for x / dx, the head's loss workspace (chunked over vocab),
 *         cuBLAS workspace, a reserve. Then, with what is left: the activation carry, whole
 *         groups resident (P16+P32+m+v, updated by GPU AdamW), activation checkpoints.
 *   host  pinned gradient buffers and the activation carry when the GPU lacks room for it;
 *         when anything spills to NVMe, pinned I/O staging; then the P16 cache, activation
 *         checkpoints, and optimizer state (P32, m, v), each as long as it fits.
 *   NVMe  everything else; optimizer state in 1 or 2 slots (with 2, a step reads one and
 *         writes the other, so the previous state stays intact through the step), P16 in one
 *         (it is bf16(P32), so it can be re-derived), activation spill as scratch.
 *
 * Groups are those of core/tensors.h: 0 the embedding, 1..L the decoder layers, L+1 the head.
 * A state of a group is placed whole on one tier. P32, m and v of a group always share a tier,
 * and that tier is the GPU only when the group's P16 is resident there too ("resident group").
 * The gradient's tier says where the optimizer reads it: GPU (resident groups) or host. */
#ifndef SW_OFFLOAD_PLAN_H
#define SW_OFFLOAD_PLAN_H
#include <stdint.h>
#include <stdio.h>
#include "core/tensors.h"

#define SW_PLAN_MAX_NVME 16
#define SW_PLAN_ALIGN 4096          /* NVMe extents: every placed range starts 4 KiB aligned */

typedef struct sw_plan_nvme {
	char path[256];
	uint64_t capacity;          /* bytes this path may use */
} sw_plan_nvme;

/* Measured (bench-io, bench-adam, the backend's GEMM probe) or flag-given rates. Defaults and
 * their origin are in docs/planner.md. GB are 1e9 bytes. */
typedef struct sw_plan_rates {
	double gemm_tflops;         /* achieved GPU GEMM rate in the compute dtype, TFLOP/s */
	double h2d_gbs, d2h_gbs;    /* PCIe from pinned host memory, each direction, GB/s */
	double nvme_read_gbs;       /* all --nvme paths together, O_DIRECT, GB/s */
	double nvme_write_gbs;
	double nvme_mix_gbs;        /* reads and writes together in the optimizer's pattern (read
				     * ahead, write behind: bench-io's "mix", bytes read + written
				     * per second); 0: not measured. Moves the expected step only */
	double adam_params_per_s;   /* CPU AdamW, all optimizer workers, parameters/s */
	double gpu_bw_gbs;          /* the GPU's memory-bound work between the layers (the
				     * gradients' sums of squares, resident groups' AdamW, the
				     * embedding's and head's gradient zeroing), bytes moved per
				     * second (bench/cuda_layer's "membound" line); 0: not measured.
				     * Moves the expected step only */
} sw_plan_rates;

typedef struct sw_plan_input {
	const sw_table *tt;         /* the model; must outlive the plan */
	uint64_t gpu_mem;           /* --gpu-mem */
	uint64_t cpu_mem;           /* --cpu-mem */
	int n_nvme;                 /* --nvme PATH:CAP,... (0: no NVMe tier) */
	sw_plan_nvme nvme[SW_PLAN_MAX_NVME];
	int64_t batch_tokens;       /* tokens per optimizer step */
	int64_t seq_len;            /* tokens per row */
	int64_t micro_rows;         /* rows per micro-batch (default 1) */
	int fp32;                   /* 1: --dtype fp32 (P16 and activations 4 B), 0: bf16 */
	int cpu_device;             /* 1: the compute device is the CPU backend, whose "GPU" tier
				     * is host memory too (printed as "device") */
	int slots;                  /* optimizer state slots on NVMe: 2 (a step writes the other
				     * slot), 1 (--checkpoint-only: updated in place) */
	int prefetch;               /* K: group-sized P16 buffers on the GPU (computing + in flight) */
	int grad_bufs;              /* group-sized fp32 gradient buffers on the GPU (1: D2H stalls;
				     * 0: sw_plan_build chooses 1 or 2) */
	int passes;                 /* backward passes per step: 2 with clipping (--clip > 0: the
				     * first pass only sums the gradient norm, the second updates;
				     * offload/exec.h), 1 without (--clip 0); default 2, as train's
				     * default --clip 1.0 */
	int speculate;              /* with passes 2: 1 asks for exact clipping in one speculative
				     * pass (every group updated as its gradient completes, the
				     * norm checked at the end, the step rolled back and redone
				     * only when clipping fires; docs/planner.md "Clipping"), which
				     * needs a rollback source for every group (sw_plan.speculative);
				     * 0 the two-pass scheme. sw_plan_input_init: 0; train and plan
				     * ask for 1 (SW_CLIP_PASSES=2 in the environment: 0) */
	int64_t chunk_params;       /* I/O chunk for streamed state, parameters */
	uint64_t nvme_stripe;       /* the NVMe engine's stripe unit (--io-stripe); 0: one I/O
				     * chunk of P16 rounded up to 4 KiB (sw_plan_nvme_stripe) */
	int io_depth;               /* checkpoints on their way to / from NVMe: 2 x io_depth
				     * pinned staging buffers (at most SW_PLAN_CKPT_SLOTS) */
	int opt_sets;               /* optimizer staging sets, 2 (default) to SW_PLAN_OPT_STAGES_MAX:
				     * with 2, a chunk's read waits for the write of the chunk two
				     * before it (the same set); SW_OPT_SETS=3|4 for comparison */
	int64_t vocab_chunk;        /* head: logits computed this many vocab entries at a time */
	uint64_t cublas_workspace;  /* GPU bytes */
	uint64_t gpu_reserve;       /* GPU bytes held back (e.g. the CUDA context) */
	uint64_t host_reserve;      /* host bytes of --cpu-mem held back beyond the process's own
				     * machinery, which the plan holds anyway (plan_host_held): e.g.
				     * the GPU runtime's modules loaded on first use; 0 by default */
	sw_plan_rates rates;
	int lora_rank;              /* > 0: LoRA mode, planned by sw_plan_lora_build
				     * (offload/plan_lora.h); sw_plan_build takes 0 only */
	unsigned lora_targets;      /* SW_LORA_* mask of the targeted linears (0: all seven) */
	int keep;                   /* SW_PLAN_KEEP_*: keep layers' forward intermediates on the
				     * GPU instead of recomputing them in backward (plan_keep.c) */
} sw_plan_input;

/* sw_plan_input.keep (train and plan --keep): AUTO (the default) keeps, with the GPU memory
 * left after everything else is placed, the parts that save the most recompute time per byte,
 * while the predicted step falls; NONE recomputes every layer; ALL keeps every layer's
 * intermediates or fails naming the GPU budget. */
enum { SW_PLAN_KEEP_AUTO, SW_PLAN_KEEP_NONE, SW_PLAN_KEEP_ALL };
/* "auto", "none", "all" into *keep; -EINVAL for anything else. */
int sw_plan_keep_parse(const char *s, int *keep);

/* Where bytes go. The first four equal sw_state (P16, P32, m, v) and count state; the rest are
 * buffers. A cell is bytes[tier][purpose]; on NVMe, P32/m/v count all their slots. */
typedef enum {
	SW_PURPOSE_P16,             /* GPU: resident groups; host: P16 cache; NVMe: P16 (1 slot) */
	SW_PURPOSE_P32,
	SW_PURPOSE_M,
	SW_PURPOSE_V,
	SW_PURPOSE_CKPT,            /* activation checkpoints (layer inputs, per micro-batch) */
	SW_PURPOSE_CARRY,           /* hidden state / its gradient between layers, whole batch */
	SW_PURPOSE_WINDOW,          /* GPU: P16 prefetch window, K group-sized buffers */
	SW_PURPOSE_GRAD,            /* GPU: fp32 gradient buffer(s); host: pinned gradient buffers */
	SW_PURPOSE_TIED_GRAD,       /* GPU: tied embedding's gradient, held through backward */
	SW_PURPOSE_ACT,             /* GPU: one micro-batch through one layer, with its gradients */
	SW_PURPOSE_MB_IO,           /* GPU: micro-batch staging for x, dx and checkpoints */
	SW_PURPOSE_HEAD,            /* GPU: final norm, vocab-chunked logits and loss, tokens */
	SW_PURPOSE_WORKSPACE,       /* GPU: cuBLAS workspace */
	SW_PURPOSE_RESERVE,         /* GPU: --gpu-reserve; host: host_reserve; NVMe: stripe rounding */
	SW_PURPOSE_STAGE_P16,       /* host, pinned: P16 read from / written to NVMe */
	SW_PURPOSE_STAGE_OPT,       /* host, pinned: P32/m/v read-ahead and write-behind */
	SW_PURPOSE_STAGE_CKPT,      /* host, pinned: checkpoints to / from NVMe */
	SW_PURPOSE_XFER,            /* host, pinned: one I/O chunk of fp32 for loading the model
	                               and saving / resuming the run's state */
	SW_PURPOSE_HELD_GRAD,       /* GPU: one-pass clipping: resident groups' gradients, kept
	                               until the norm is known (their AdamW runs after it) */
	SW_PURPOSE_STATE_B,         /* host: one-pass clipping: a second set of P32/m/v of
	                               host-resident groups (speculative updates write it; the step
	                               commits by swapping sets; the current set is the rollback) */
	SW_PURPOSE_KEEP,            /* GPU: layers' forward intermediates kept from the forward for
	                               the backward (not recomputed; plan_keep.c) */
	SW_PURPOSE_COUNT
} sw_plan_purpose;

#define SW_PLAN_CKPT_SLOTS 16      /* most checkpoint staging buffers */
#define SW_PLAN_OPT_STAGES 2       /* optimizer staging sets by default (read-ahead / write-behind) */
#define SW_PLAN_OPT_STAGES_MAX 4   /* most optimizer staging sets (SW_OPT_SETS) */
#define SW_PLAN_XC 3               /* checkpoint-in buffers on the GPU (offload/exec_ckpt.c) */
#define SW_PLAN_P16_STAGES 2       /* P16 staging buffers between NVMe and the window */
#define SW_PLAN_HOST_GRADS 2       /* pinned gradient buffers every plan with CPU updates has */
#define SW_PLAN_HOST_GRADS_MAX 16  /* most pinned gradient buffers (host memory left over) */

/* One family of buffers of the buffer table. */
typedef enum {
	SW_BUF_P16,                 /* owner group's P16 home */
	SW_BUF_OPT,                 /* owner group's P32 / m / v (state), NVMe slot `slot` */
	SW_BUF_CKPT,                /* the checkpoints placed on `tier`, (layer, micro-batch) order */
	SW_BUF_CARRY,               /* the activation carry */
	SW_BUF_WINDOW,              /* the P16 window's buffers */
	SW_BUF_GRAD,                /* GPU fp32 gradient buffers */
	SW_BUF_HOST_GRAD,           /* pinned gradient buffers for the CPU optimizer */
	SW_BUF_TIED_GRAD,           /* tied embedding's gradient, held through backward */
	SW_BUF_SCRATCH,             /* one layer's forward intermediates and their gradients */
	SW_BUF_XIO,                 /* micro-batch x in / x out / checkpoint in */
	SW_BUF_TOKENS,              /* token ids, targets, per-token losses of a micro-batch */
	SW_BUF_INV_FREQ,            /* RoPE inverse frequencies */
	SW_BUF_NORM_SUMS,           /* per-group gradient sums of squares (fp64) */
	SW_BUF_HEAD_NORM,           /* tied: the final norm's P16 while the embedding streams */
	SW_BUF_STAGE_P16,           /* pinned: P16 between NVMe and the window */
	SW_BUF_STAGE_OPT,           /* pinned: P32|m|v|P16 of one chunk (read-ahead, write-behind) */
	SW_BUF_STAGE_CKPT,          /* pinned: checkpoints between the GPU and NVMe */
	SW_BUF_XFER,                /* pinned: one chunk of fp32 for load / save */
	SW_BUF_HELD_GRAD,           /* owner group's gradient, held to the end of the backward
				     * (one-pass clipping, resident groups) */
	SW_BUF_STATE_B,             /* owner group's second P32 / m / v (state) (one-pass
				     * clipping, host-resident optimizer state) */
	SW_BUF_KEEP,                /* kept forward intermediates: one block per (kept layer,
				     * micro-batch) of part `state` (0 attention, 1 MLP: core/model.h
				     * SW_KEEP_ATTN, SW_KEEP_MLP), layers in order */
	SW_BUF_HELD,                /* not allocated by the executor: budget held back (the
				     * working-set estimate beyond its buffers, for the backend's
				     * op scratch; --gpu-reserve; the NVMe files' stripe rounding) */
	SW_BUF_KIND_COUNT
} sw_plan_buf_kind;

typedef struct sw_plan_buf {
	sw_plan_buf_kind kind;
	sw_plan_purpose purpose;
	sw_tier tier;
	int owner;                  /* group (SW_BUF_P16, SW_BUF_OPT), else -1 */
	int state;                  /* SW_BUF_OPT: 0 P32, 1 m, 2 v; else -1 */
	int slot;                   /* SW_BUF_OPT on NVMe: optimizer slot; else 0 */
	uint64_t bytes;             /* each, as its allocator counts it (GPU arena: 256 B blocks;
				     * host: 4 KiB pages; NVMe: the extent's 4 KiB blocks) */
	int64_t count;
	uint64_t total;             /* what the row takes: bytes * count; on NVMe with the
				     * engine's alignment skips (sw_io_extent_place) */
} sw_plan_buf;

typedef enum { SW_RES_COMPUTE, SW_RES_PCIE, SW_RES_NVME, SW_RES_CPU_ADAM, SW_RES_COUNT } sw_plan_resource;

/* The cost model (docs/planner.md "Step time"). Traffic is per optimizer step. */
typedef struct sw_plan_cost {
	double flops_model;         /* 6 * N_gemm * tokens */
	double flops_recompute;     /* 2 * N_layers_gemm * tokens */
	double flops_attn;          /* 8 * L * tokens * seq_len * q_dim (causal, fwd+recompute+bwd) */
	double flops_kept;          /* recompute not run (all passes): the kept parts' forward
				     * FLOPs (plan_keep.c), subtracted from the sum above */
	double flops_pass2;         /* the second backward pass with clipping (passes 2): every GEMM
				     * again (6 * N_gemm * tokens: recompute + backward of the layers,
				     * forward + backward of the head), the recompute of x_L, and
				     * attention (recompute + backward); 0 with one pass */
	uint64_t h2d, d2h;          /* PCIe bytes each way */
	uint64_t nvme_read, nvme_write;
	int64_t adam_params;        /* parameters updated by CPU AdamW */
	double t_h2d, t_d2h, t_nvme_read, t_nvme_write;   /* seconds */
	double t[SW_RES_COUNT];     /* compute; PCIe = max(h2d, d2h); NVMe = read + write; CPU */
	uint64_t grad_d2h;          /* of d2h: the gradients of the groups updated off the GPU */
	double t_grad_stall;        /* with one GPU gradient buffer (in.grad_bufs 1) the next
				     * group's backward waits for each such copy: grad_d2h at the
				     * D2H rate, in t[compute] (the GPU's critical path) */
	double t_after;             /* one-pass clipping with one slot: the deferred groups'
				     * updates, after the backward (max of their NVMe and CPU
				     * AdamW time; their bytes are in the totals above, not in t[]) */
	double step_s;              /* max of t[], + t_after: the bound (every resource overlapped) */
	/* the step boundary (docs/planner.md "The step boundary"): the bottleneck's idle time
	 * between a step's last update and the next step's first, which the schedule does not
	 * hide: with the next forward overlapping the last updates and the first NVMe state read
	 * ahead (the executor's default) and with the drained schedule (SW_STEP_OVERLAP=0) */
	double t_boundary, t_boundary_drained;
	double t_tail_adam;         /* CPU AdamW after the last NVMe update (host-state groups) */
	double t_tail_bwd;          /* the backward of the layers below the lowest NVMe group */
	double t_tail_write;        /* the write-behind of the last NVMe group's last chunks */
	double t_fwd;               /* the forward's compute */
	double t_read_ahead;        /* the next step's first NVMe state read ahead (2 chunks) */
	double predict_s;           /* step_s + t_boundary: the predicted step */
	double t_nvme_mix;          /* rates.nvme_mix_gbs given: the step's NVMe bytes (read +
				     * written, the deferred ones included) at that rate */
	uint64_t gpu_mem_bytes;     /* the GPU's memory-bound work of a step: 4 B a parameter
				     * per pass (sums of squares), 28 B + P16 per resident
				     * parameter per update (AdamW), 4 B a parameter of the
				     * embedding and head per pass (zeroing) */
	double t_gpu_mem;           /* rates.gpu_bw_gbs given: gpu_mem_bytes at that rate, added
				     * to the compute's time in the expected step */
	double expect_s;            /* predict_s, or with the disk at the mixed rate where that
				     * takes longer: the backward's NVMe bytes against the
				     * bottleneck, the deferred ones against t_after (the executor
				     * overlaps reads and writes, and some drives move fewer bytes
				     * a second so), and with the compute plus t_gpu_mem against
				     * the bottleneck (measured on the H100: that work does not hide
				     * beside the layers, docs/perf.md); step_s stays the bound */
	sw_plan_resource bottleneck;
	double tokens_per_s;
	double tflops;              /* (model + attention FLOPs) / step, recompute and the second
				     * pass not counted (sw_plan_model_flops) */
} sw_plan_cost;

/* k->expect_s from k's other fields (predict_s, t[], bottleneck, t_after, nvme bytes,
 * t_gpu_mem), the deferred updates' NVMe bytes and CPU AdamW time, and the disk's mixed rate
 * (0: not given); sets k->t_nvme_mix. Exposed for its test. */
double sw_plan_expect_step(sw_plan_cost *k, uint64_t after_bytes, double after_adam_s, double mix_gbs);

typedef struct sw_plan {
	sw_plan_input in;           /* a copy of the inputs */
	/* shapes */
	int n_layers, ngroups;
	int64_t micro_tokens;       /* T = micro_rows * seq_len */
	int64_t n_micro;            /* M = batch_tokens / T */
	int p16_bytes, act_bytes;   /* 2 and 2 in bf16, 4 and 4 in fp32 */
	uint64_t ckpt_item;         /* bytes of one checkpoint: T * dim * act_bytes */
	int64_t chunk_params;       /* min(in.chunk_params rounded up to 2048, largest group) */
	/* decisions */
	int streaming;              /* 1: some group is not resident (the window exists) */
	int carry_on_gpu;           /* 1: the activation carry lives on the GPU, else on the host */
	int resident_groups;        /* groups fully on the GPU */
	int host_grads;             /* pinned host gradient buffers (the optimizer queue's depth):
				     * SW_PLAN_HOST_GRADS, more where the host budget has room left
				     * after everything else (plan_host_grads) */
	sw_tier (*tier)[SW_STATE_COUNT];   /* [ngroups][state] */
	uint8_t *ckpt_tier;         /* [n_layers * n_micro] sw_tier; see sw_plan_ckpt_tier */
	int64_t ckpt_count[SW_TIER_COUNT];
	/* keep instead of recompute (plan_keep.c): per decoder layer, the SW_KEEP_* parts
	 * (core/model.h) whose intermediates stay on the GPU from the forward to the backward */
	uint8_t *keep;              /* [n_layers] */
	uint64_t keep_item[2];      /* GPU bytes of one micro-batch's attention / MLP part */
	int keep_layers[2];         /* layers keeping each part */
	char keep_why[160];         /* why the choice stopped where it did */
	/* the buffer table: every allocation of the executor, in its allocation order */
	sw_plan_buf *buf;
	int nbuf;
	/* accounting: sums of the buffer table's rows by tier and purpose, and by tier */
	uint64_t bytes[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	uint64_t total[SW_TIER_COUNT];
	uint64_t budget[SW_TIER_COUNT];    /* gpu_mem, cpu_mem, sum of NVMe capacities */
	uint64_t nvme_path_bytes[SW_PLAN_MAX_NVME];   /* NVMe total per path (equal shares:
						       * the engine stripes evenly) */
	/* disk: NVMe tier need under each consistency mode, index slots-1 */
	uint64_t disk_bytes[2];
	/* optimizer state of resident (GPU/host) groups, saved to the run directory at
	 * --save-every: one copy per slot; outside the NVMe budget */
	uint64_t save_bytes[2];
	/* clipping (passes 2): 1 when the step runs one speculative pass (in.speculate asked for
	 * it and every group has a rollback source: resident groups hold their gradient, host
	 * state has a second set, NVMe state has two slots); else two passes, and why when one
	 * was asked for */
	int speculative;
	int defer_nvme;             /* speculative with one NVMe slot: the NVMe groups' gradients
				     * are held in pinned host memory (rows "held gradients" on the
				     * host) and their updates run after the norm is known */
	uint64_t defer_short;       /* else: the host bytes that holding them lacked */
	char two_pass_why[320];
	sw_plan_cost cost;          /* a step (one pass when speculative) */
	sw_plan_cost redo;          /* speculative: a step whose norm needed clipping (the pass,
				     * the rollback, a second backward pass with its updates) */
	sw_plan_cost two;           /* speculative: a step of two passes on this placement (what
				     * the executor runs while clipping fires often) */
	/* a failed build: which tier is short and by how much, and the one-line message
	 * ("--gpu-mem 2.00 GiB is 1.37 GiB short of ...; raise ...") without "spillway: " */
	sw_tier short_tier;
	uint64_t short_bytes;
	char why[1024];
} sw_plan;

/* Defaults for everything but the table and the budgets (docs/planner.md lists them). */
void sw_plan_input_init(sw_plan_input *in, const sw_table *tt);

/* Places every state under the budgets and runs the cost model. Returns 0; -EINVAL for
 * inputs that make no sense, -ENOSPC when a tier is short (p->short_tier, p->short_bytes), in
 * both cases with p->why set; -ENOMEM. Never returns a plan over a budget (asserted). Call
 * sw_plan_free afterwards whatever it returned. */
int sw_plan_build(sw_plan *p, const sw_plan_input *in);
void sw_plan_free(sw_plan *p);

/* The smallest budget of one tier with which sw_plan_build succeeds, the other tiers' budgets
 * taken from in (for the host: given in->gpu_mem; for NVMe: given both memories; the NVMe
 * answer is the total capacity needed). Planning with it succeeds; with one byte less, the
 * build fails naming that tier. Returns 0 and sets *bytes, or the error sw_plan_build gives
 * (an earlier tier short, bad input) with that plan's why copied into why (may be NULL). */
int sw_plan_min_budget(const sw_plan_input *in, sw_tier tier, uint64_t *bytes, char *why, int why_len);

/* The longest sequence length (tokens per row, one row per micro-batch, the step's tokens
 * rounded down to whole rows) up to `limit` with which sw_plan_build succeeds under in's
 * budgets, found by bisection; 0 when not even one token fits. Assumes a longer row never needs
 * less memory. */
int64_t sw_plan_max_seq(const sw_plan_input *in, int64_t limit);

/* GPU bytes that must be there whatever else is placed: the working set without the prefetch
 * window (which is prefetch * largest group * P16 bytes, needed unless every group is
 * resident), in total and by purpose; the planner's own accounting, for tests and the executor. */
uint64_t sw_plan_gpu_working_set(const sw_plan_input *in, uint64_t by_purpose[SW_PURPOSE_COUNT]);

/* Copies the placement into the table's per-group tiers (sw_group.tier). */
void sw_plan_apply(const sw_plan *p, sw_table *tt);

/* The SW_KEEP_* parts (core/model.h) decoder layer `layer` keeps from its forward (0: the
 * backward recomputes the layer from its checkpoint). */
static inline unsigned sw_plan_keep(const sw_plan *p, int layer)
{
	return p->keep ? p->keep[layer] : 0;
}

/* Tier of the checkpoint of decoder layer `layer`'s input for micro-batch mb. */
static inline sw_tier sw_plan_ckpt_tier(const sw_plan *p, int layer, int64_t mb)
{
	return (sw_tier)p->ckpt_tier[(int64_t)layer * p->n_micro + mb];
}

/* The disk a run needs besides memory (offload/plan_disk.c; bytes): the NVMe tier's files, the
 * run directory's commits (two state files and commit.json), one full save in the run directory
 * (weights-N, optim-N/m, optim-N/v, fp32), one export (bf16). Payloads exact; safetensors
 * headers and config.json bounded from above. */
typedef struct sw_plan_disk_need {
	uint64_t nvme, commit_file, commits, save, export_bf16;
} sw_plan_disk_need;
void sw_plan_disk(const sw_plan *p, sw_plan_disk_need *d);
void sw_plan_disk_print(const sw_plan *p, FILE *f);

/* Prints the placement table, tier accounting, disk cost per mode and the step-time
 * prediction (spillway plan; spillway train at start). */
void sw_plan_print(const sw_plan *p, FILE *f);
/* The NVMe engine's stripe unit the plan's NVMe footprint assumes (sw_io_config.stripe). */
uint64_t sw_plan_nvme_stripe(const sw_plan *p);
/* The P16 window's buffers (K) and the pinned gradient buffers the plan gives the executor. */
int sw_plan_window_buffers(const sw_plan *p);
/* Sums of the buffer table's rows that the executor allocates (kind != SW_BUF_HELD), by cell:
 * what sw_exec_create must take, exactly. */
void sw_plan_allocated(const sw_plan *p, uint64_t out[SW_TIER_COUNT][SW_PURPOSE_COUNT]);
/* The model FLOPs of one step (the MFU numerator): 6 * N_gemm * tokens + attention forward and
 * backward (6 * L * tokens * seq_len * q_dim); recompute and the second pass are not counted. */
double sw_plan_model_flops(const sw_plan *p);

/* Speculative clipping: the fraction of steps that clip above which two passes every step cost
 * less than one pass with those steps redone, (two - one) / (redone - one) of the predicted
 * steps, in [0, 1]; the executor compares it with the fraction of the last SW_CLIP_WINDOW
 * steps that clipped. 0 when the plan does not speculate. */
#define SW_CLIP_WINDOW 16
double sw_plan_clip_break_even(const sw_plan *p);

const char *sw_plan_tier_name(sw_tier t);
/* The tier's name as printed for this plan: "device" for the GPU tier on the CPU backend. */
const char *sw_plan_tier_label(const sw_plan *p, sw_tier t);
const char *sw_plan_purpose_name(sw_plan_purpose u);
const char *sw_plan_resource_name(sw_plan_resource r);
#endif
