/* The state one `spillway train` job shares between the driver's files (offload/train.h lists
 * them); nothing outside offload/train_*.c includes this. */
#ifndef SW_OFFLOAD_TRAIN_INT_H
#define SW_OFFLOAD_TRAIN_INT_H
#include "core/data.h"
#include "core/progress.h"
#include "core/report.h"
#include "core/hfmodel.h"
#include "io/io.h"
#include "offload/exec.h"
#include "offload/train.h"

#include <jansson.h>
#include <stdio.h>

#define SW_TRAIN_PATH 4200
#define SW_TRAIN_MAX_NVME 8
/* the scratch file of the NVMe tier and the lock beside it, in every --nvme directory */
#define SW_TRAIN_NVME_FILE "spillway.data"
#define SW_TRAIN_NVME_LOCK "spillway.lock"
/* saved files are checksummed in pieces of this many bytes (XXH3-64 each) */
#define SW_TRAIN_SUM_PIECE (16ull << 20)
/* Device memory allowed for the kernels the CUDA runtime loads on first use (lazy loading,
 * the default since CUDA 12.2): our modules and the cuBLASLt kernels the GEMM shapes pick. The
 * context is measured before planning, these arrive during the first step; the run reports the
 * measured peak against --gpu-mem. */
#define SW_CUDA_LAZY_ALLOWANCE (128ull << 20)

/* What --resume continues from: RUN/manifest.json. */
typedef struct sw_train_resume {
	int64_t step;
	int64_t skipped;             /* steps skipped before it (non-finite gradient; 0: none or
				      * an older manifest) */
	sw_data_pos pos;
	char weights[SW_TRAIN_PATH], m[SW_TRAIN_PATH], v[SW_TRAIN_PATH];
	char tag[64];
	json_t *files;               /* {"weights-N/model.safetensors": {"size", "xxh3": [...]}} */
	json_t *settings;            /* {"lr": "0.003", ...} (NULL: an older manifest) */
} sw_train_resume;

/* RUN/commit.json: the last commit (offload/train_commit.c, docs/runs.md "Commits"). */
typedef struct sw_train_commit {
	int64_t step;
	sw_data_pos pos;
	int slot;                    /* the NVMe slot holding the committed P32/m/v */
	int file;                    /* the state file it names: RUN/commit-FILE.state */
	int nvme_groups;             /* groups whose committed P32/m/v lie on NVMe */
	int64_t skipped;             /* steps skipped up to it (non-finite gradient) */
	char layout[20];             /* XXH3 of the NVMe layout and the optimizer tiers */
	json_t *settings, *nvme;     /* the run's settings; the --nvme directories (absolute) */
} sw_train_commit;

/* Where the commits' time went (train_commit.c): copying the memory-resident state out (with
 * its finiteness check), write()s, XXH3 of the state file, the fdatasync of the NVMe files,
 * the fdatasyncs of the state file and commit.json. */
typedef struct sw_train_commit_time {
	double nvme_sync_s, snapshot_s, write_s, hash_s, fsync_s;
	int sync;                    /* SW_COMMIT_SYNC: the fdatasyncs were not overlapped */
	double waited_seen;          /* the executor's gate wait counted so far (interval) */
} sw_train_commit_time;

typedef struct sw_train_ctx {
	const sw_train_args *a;
	int cpu;                     /* the CPU backend: the "device" is host memory */
	double t_load, t_train;
	uint64_t ctx_bytes, rss_start, arena, dev_peak;
	int ctx_exact;
	sw_hf_model hm;
	int hm_open;
	const sw_table *tt;
	sw_data data;
	int data_open;
	sw_data eval;                /* --eval-data */
	int eval_open;
	double eval_loss;            /* this step's held-out loss, NAN when not evaluated */
	char data_id[160];           /* the token file's identity (size and XXH3 of head and tail) */
	sw_plan plan;
	sw_backend *be;
	sw_io *io;
	sw_exec *ex;
	/* the run directory */
	char run_abs[SW_TRAIN_PATH];
	int run_lock;                /* fd holding flock on RUN/lock, or -1 */
	int run_made;                /* this run created the directory */
	sw_train_resume rp;
	int have_rp;
	char prev[64];               /* the save the manifest names ("NNNNNNNN"), "" before one */
	FILE *metrics;
	json_t *settings;            /* what decides the result, recorded in every manifest */
	/* the --nvme directories */
	int n_nvme;
	char nvme_dir[SW_TRAIN_MAX_NVME][SW_TRAIN_PATH];
	int nvme_lock[SW_TRAIN_MAX_NVME];
	/* commits (train_commit.c) */
	int64_t commit_every;        /* steps between commits (0: none) */
	int64_t since_kept;          /* steps since the last commit or save (or the start) */
	sw_train_commit cm;          /* the commit --resume continues from, or the last made */
	int have_cm;                 /* cm holds RUN/commit.json */
	json_t *cm_files;            /* {"commit-N.state": {"size", "xxh3": [...]}} as read */
	int from_commit;             /* --resume continues from cm (newer than the manifest) */
	int in_place;                /* ... reading its NVMe slots where they are */
	int commit_live;             /* a commit newer than the manifest needs the NVMe file */
	int64_t n_commits;           /* commits made by this process, and their time */
	double commit_s, steps_s;    /* ... and the steps' (sw_exec_stats.step_s summed) */
	char commit_why[160];        /* how the interval was chosen */
	sw_train_commit_time cm_time;   /* the commits' time, part by part */
	struct train_commit_async *cm_async;   /* a commit being made durable (train_commit_async.c) */
	int64_t last_step;           /* the last step completed */
	int64_t n_steps, n_redone, n_skipped, n_two;   /* this run's steps, of them redone by one-pass
					      * clipping, skipped (non-finite gradient), run with two
					      * passes because clipping fired often */
	int64_t skipped_total;       /* steps skipped since the run began (resumes included):
				      * AdamW's step counter and the schedule's position are the
				      * step less these, as if a skipped step had not been taken */
	int64_t last_saved;          /* the step of the last save (0: none) */
	/* progress and the run report (core/progress.h, core/report.h) */
	sw_steps steps;              /* the step bar or the sparse step lines */
	int steps_open;              /* between sw_steps_begin and sw_steps_end */
	sw_report_run rr;            /* RUN/run.json's content */
	char *placement;             /* the placement table as printed, for run.json */
} sw_train_ctx;

/* train_budget.c */
int train_budget_plan(sw_train_ctx *c);
/* train_nvme.c: claim before planning, open after it, release at the end */
int train_nvme_claim(sw_train_ctx *c);
int train_nvme_open(sw_train_ctx *c);
void train_nvme_release(sw_train_ctx *c, int finished);
/* train_rundir.c */
int train_rundir_open(sw_train_ctx *c);
void train_rundir_close(sw_train_ctx *c);
int train_rundir_settings(sw_train_ctx *c);
int train_rundir_read_manifest(sw_train_ctx *c);
int train_rundir_verify(sw_train_ctx *c);
int train_rundir_commit(sw_train_ctx *c, int64_t step, const char *tag);
int train_rundir_metrics_open(sw_train_ctx *c);
/* train_state.c */
int train_state_load(sw_train_ctx *c);
int train_state_save(sw_train_ctx *c, int64_t step);
/* train_commit.c */
int train_commit_read(sw_train_ctx *c);
int train_commit_interval(sw_train_ctx *c);
int train_commit_disk_check(sw_train_ctx *c);
int train_commit_prepare(sw_train_ctx *c);
int train_commit_load(sw_train_ctx *c);
int train_commit_write(sw_train_ctx *c, int64_t step);
void train_commit_drop(sw_train_ctx *c);
void train_commit_summary(const sw_train_ctx *c);
/* train_commit_async.c: the commit's durable part started (the state file written, in fd;
 * commit.json's content in text, freed; next: the commit once durable); join waits for it
 * and makes it the run's commit. Both 0 or -errno after one line. */
typedef struct train_commit_async train_commit_async;
int train_commit_async_start(sw_train_ctx *c, int fd, char *text, const sw_train_commit *next);
int train_commit_join(sw_train_ctx *c);
void train_commit_before_step(sw_train_ctx *c, int64_t step);
int train_commit_after(const sw_train_ctx *c, int64_t step);
int train_commit_ends(const sw_train_ctx *c);
/* train_report.c */
void train_report_started(sw_train_ctx *c, int64_t first);
void train_report_step(sw_train_ctx *c, int64_t step, double lr, const sw_exec_stats *st);
void train_report_steps_end(sw_train_ctx *c);
void train_report_finished(sw_train_ctx *c, int rc);
void train_report_summary(const sw_train_ctx *c, int64_t first);
uint64_t train_rss_now(void);
/* RUN/run.json (core/report.h) of a run, full fine-tuning's or LoRA's: at the start the command,
 * budgets, backend arena, pinned bytes, load time and placement text into *rr, written; at the
 * end the measured peaks (host: VmHWM), the loop's time and whether it reached --steps. */
void train_run_json_begin(sw_report_run *rr, const sw_train_args *a, const sw_backend *be,
			  uint64_t pinned, double load_s, const char *placement);
void train_run_json_end(sw_report_run *rr, const char *run, uint64_t arena_peak,
			uint64_t device_peak, double train_s, int finished);
/* A state file (one of P32, m, v as an fp32 Hugging Face directory) of the run's saves: begun
 * in dir (what was there removed), and ended: aborted when rc is an error (returned), else
 * finished. */
int train_state_file_begin(sw_st_writer **w, const char *dir, const sw_table *tt);
int train_state_file_end(sw_st_writer *w, const sw_table *tt, int rc);
uint64_t train_cpu_scratch(const sw_train_ctx *c, const sw_plan_input *in);
/* helpers shared by the files */
int train_rm_rf(const char *path);
int train_fsync_dir(const char *dir);
int train_xxh3_file(const char *path, json_t **sums, uint64_t *size);
/* RUN/NAME through NAME.tmp: written, fsynced, renamed, the directory fsynced; one line on error */
int train_json_write(const char *run, const char *name, json_t *root);
/* XXH3-64 of root's compact sorted dump less the key `skip` (its own checksum) */
uint64_t train_json_sum(json_t *root, const char *skip);
/* one line naming the tensor and element of the first non-finite value of x, then -EINVAL */
int train_check_finite(const sw_table *tt, const float *x, int g, int64_t off, int64_t n,
		       const char *where, sw_state state, const char *fix);
#endif
