/* The `spillway train` driver: options in, a finished (or cleanly stopped) run directory out.
 *
 * The driver is split by job (docs/runs.md describes the run directory and its lifecycle):
 *   train_input.c   the plan input built from options (shared with `spillway plan`)
 *   train_budget.c  budgets: the backend's reserve, the CUDA context, planning under them
 *   train_nvme.c    the --nvme directories: locks, the scratch file, opening the I/O engine
 *   train_rundir.c  the run directory: its lock, leftovers of interrupted saves, metrics.jsonl
 *   train_manifest.c the manifest: settings that decide the result, checksums, --resume's checks
 *   train_state.c   state in and out of the executor: load, checks for non-finite values, save
 *   train_commit.c  commits in place (the NVMe slot kept, memory state in a state file,
 *                   commit.json), resuming from them, the run directory's disk check
 *   train_loop.c    sw_train: the sequence above, the step loop and signals
 *   train_report.c  the lines and metrics.jsonl records a run prints and writes
 *   train_int.h     the job's state shared by these files
 *   cmd_train.c     the options */
#ifndef SW_OFFLOAD_TRAIN_H
#define SW_OFFLOAD_TRAIN_H
#include <stdint.h>
#include "core/tensors.h"
#include "offload/plan.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

/* What decides the plan, as given on the command line; 0 means "the default" throughout. */
typedef struct sw_train_plan_opts {
	uint64_t gpu_mem, cpu_mem;   /* gpu_mem 0: unbounded (train then plans all resident) */
	const char *nvme;            /* "PATH[:SIZE],..." or NULL */
	int64_t batch_tokens, seq_len, micro_rows, chunk;
	int fp32, prefetch, slots;
	int grad_bufs;               /* group-sized fp32 gradient buffers on the GPU */
	int io_depth;                /* --io-depth: checkpoints in flight to / from NVMe each way */
	double clip;                 /* > 0: two backward passes */
	sw_plan_rates rates;         /* each 0: the planner's default (NVMe ones: per path) */
	uint64_t io_stripe;          /* --io-stripe (0: one I/O chunk of P16) */
	int keep;                    /* --keep: SW_PLAN_KEEP_* (0: auto) */
} sw_train_plan_opts;

/* The rate flags as given, in the order --gemm-tflops, --h2d-gbs, --d2h-gbs, --nvme-read-gbs,
 * --nvme-write-gbs, --nvme-mix-gbs, --adam-gparams, --gpu-bw-gbs: 0 (not given) takes the
 * default, a negative or non-finite one is a mistake (one line naming them, prefixed cmd;
 * returns 2). */
int sw_train_rates_check(const char *cmd, const double rates[8]);

/* Fills *in for model tt (NULL: set in->tt later) from o. A --nvme path must be a directory;
 * its capacity is SIZE when given, else its free space plus an existing spillway.data (which
 * the run replaces). Returns 0, or the exit status (2: usage, 1: the machine) after one line
 * starting with "cmd: ". */
int sw_train_plan_input(sw_plan_input *in, const sw_table *tt, const sw_train_plan_opts *o,
			const char *cmd);

typedef struct sw_train_args {
	const char *model, *data, *run, *backend, *nvme, *trace, *schedule_name;
	int64_t steps, seq_len, batch_tokens, micro_rows, save_every;
	int64_t stop_after;          /* > 0: stop (saving) after this step, as a signal would */
	int64_t commit_every;        /* commits every N steps (offload/train_commit.c); 0: none;
				      * -1: the default (at most 5 % of the predicted step time) */
	const char *eval_data;       /* --eval-data: held-out token file (NULL: none) */
	int64_t eval_every;          /* --eval-every: evaluate after every N steps (0: after the last) */
	uint64_t seed;
	int threads, prefetch, fp32, resume, quiet, print_steps;
	int grad_bufs;               /* --grad-buffers (0: the planner chooses 1 or 2) */
	int io_depth;                /* --io-depth (0: the planner's default, 2) */
	int keep;                    /* --keep: SW_PLAN_KEEP_* (0: auto) */
	int no_save;                 /* --no-save: no run directory, nothing kept */
	int keep_nvme;               /* --keep-nvme: leave the scratch file at the end */
	int end_commit;              /* --end-commit: the run ends with a commit, not a full save */
	int force;                   /* --force: accept data made with another tokenizer */
	int slots;                   /* NVMe optimizer-state slots: 2, or 1 (--checkpoint-only) */
	int64_t chunk;               /* I/O chunk, parameters (0: the planner's default) */
	uint64_t io_bs, io_stripe;   /* NVMe engine settings (io/io.h; 0: its defaults; the */
	int io_qd, io_threads;       /* stripe 0: one chunk of P16) */
	uint64_t gpu_mem, cpu_mem;   /* gpu_mem 0: as much as the whole state needs */
	double clip;
	sw_lr_schedule sched;
	sw_adamw_hparams adam;
	double *losses_out;          /* optional: per-step losses (steps entries) */
	sw_plan_rates rates;         /* the machine's measured rates; 0: not given */
	const char *resume_cmd;      /* the command line to print for resuming (may be NULL) */
} sw_train_args;

/* Runs the whole job. Returns 0, 128 + signal after a stop by SIGINT/SIGTERM (state saved),
 * or -errno after one error line. */
int sw_train(const sw_train_args *a);

/* For export: RUN/manifest.json against its own checksum, and the files of the save directory
 * `weights` (as the manifest names it) against theirs. 0 or -errno after one line "export: ". */
int sw_train_manifest_check(const char *run, const char *weights);

/* GPU bytes the CUDA backend keeps for itself inside an arena of `budget` bytes (cuBLASLt
 * workspace and op scratch): the planner gets the budget minus this. */
uint64_t sw_exec_backend_reserve(uint64_t budget);
/* Free bytes of the filesystem holding dir (0 when it cannot be read). */
uint64_t sw_exec_dir_free(const char *dir);
#endif
