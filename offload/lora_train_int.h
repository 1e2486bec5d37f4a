/* The state of one `train --lora-rank` job shared by offload/lora_train.c (the run),
 * offload/lora_budget.c (budgets, the plan, the --nvme directories) and offload/lora_rundir.c
 * (the run directory's settings, lock and manifest on --resume). */
#ifndef SW_OFFLOAD_LORA_TRAIN_INT_H
#define SW_OFFLOAD_LORA_TRAIN_INT_H
#include "offload/lora_train.h"
#include "offload/train_int.h"

typedef struct lctx {
	const sw_train_args *a;
	const sw_lora_args *la;
	sw_hf_model hm;
	int hm_open, data_open, eval_open, cpu;
	sw_data data, eval;
	sw_plan_lora plan;
	sw_lora_layout lo;
	sw_backend *be;
	sw_io *io;
	sw_lexec *ex;
	json_t *settings;
	sw_lora_run rp;
	char prev[64];
	uint64_t arena;
	int lock;                    /* fd holding flock on RUN/lock, or -1 */
	FILE *metrics;               /* RUN/metrics.jsonl */
	sw_train_ctx *nv;            /* the --nvme directories' locks (offload/train_nvme.c) */
	sw_report_run rr;            /* RUN/run.json (core/report.h) */
	char *placement;             /* the plan as printed, for run.json */
	double t_start, t_train;     /* the run's start, the loop's */
	uint64_t dev_peak;           /* GPU memory used, sampled after each step (cudaMemGetInfo) */
	int64_t last_step;           /* the last step that ran */
} lctx;

/* lora_budget.c: the LoRA plan under the budgets (c->arena: the backend's device arena); the
 * --nvme directories claimed, the engine opened for the base groups on NVMe, closed; the run
 * directory's room for two saves. 0, or an exit status / -errno after one line. */
int lora_plan(lctx *c);
int lora_nvme_claim(lctx *c);
int lora_nvme_open(lctx *c);
void lora_nvme_close(lctx *c);
int lora_disk_check(lctx *c);
/* lora_rundir.c: the settings recorded with every save; the run directory opened and locked
 * (--resume: its manifest read and the settings compared). */
json_t *lora_settings_make(const lctx *c);
int lora_rundir_open(lctx *c);
#endif
