/* `spillway train --lora-rank R`: the run of a LoRA job (offload/lora_train.c; its budgets
 * offload/lora_budget.c, its directory offload/lora_rundir.c, metrics offload/lora_metrics.c)
 * and its saves (offload/lora_state.c): RUN/lora.json names the adapters' last save
 * RUN/adapters-NNNNNNNN/model.safetensors (P32 under PEFT's tensor names, Adam m and v beside
 * them), its checksums and the settings a --resume must repeat (docs/lora.md). */
#ifndef SW_OFFLOAD_LORA_TRAIN_H
#define SW_OFFLOAD_LORA_TRAIN_H
#include <jansson.h>
#include <stdio.h>
#include "core/data.h"
#include "offload/lora_exec.h"
#include "offload/train.h"

typedef struct sw_lora_args {
	int rank;
	double alpha, dropout;
	unsigned targets;            /* SW_LORA_* mask */
} sw_lora_args;

/* Runs the job as sw_train does, with the base frozen. 0, 2 (usage) or -errno after one line. */
int sw_train_lora(const sw_train_args *a, const sw_lora_args *la);

/* ---- the run directory (offload/lora_state.c) ---- */
#define SW_LORA_MANIFEST "lora.json"
typedef struct sw_lora_run {
	int64_t step, skipped;
	sw_data_pos pos;
	char adapters[64];           /* "adapters-NNNNNNNN" */
	json_t *man;                 /* the manifest as read */
} sw_lora_run;

/* PEFT's name of layer l's target k, A (ab 0) or B (ab 1): base_model.model.model.layers.L.
 * self_attn.q_proj.lora_A.weight. */
void sw_lora_peft_name(char *buf, int len, int l, int k, int ab);
/* Reads RUN/lora.json and checks the adapters' checksums. 0, or -errno after one line. */
int sw_lora_run_read(const char *run, sw_lora_run *r);
void sw_lora_run_free(sw_lora_run *r);
/* Saves the adapters (P32, m, v) and then the manifest naming them (settings: the JSON object
 * recorded with it); the previous save is removed after. 0 or -errno after one line. */
int sw_lora_run_save(const char *run, sw_lexec *ex, const sw_lora_layout *lo, int L,
		     int64_t step, int64_t skipped, sw_data_pos pos, json_t *settings,
		     char *prev, int prev_len);
/* Loads the adapters of the save r names into ex. */
int sw_lora_run_load(const char *run, const sw_lora_run *r, sw_lexec *ex,
		     const sw_lora_layout *lo, int L);
/* The adapters' P32 of layer l from an open save file into dst (lo->numel floats); 0 or -EINVAL
 * after one line naming the missing tensor. */
int sw_lora_read_layer(const sw_st_file *f, const sw_lora_layout *lo, int l, const char *suffix,
		       float *dst);
/* RUN/metrics.jsonl (offload/lora_metrics.c): opened (on --resume, resumed > 0, the records
 * after that step dropped; NULL after one line), one record per step (report.html updated). */
FILE *sw_lora_metrics_open(const char *run, int64_t resumed);
void sw_lora_metrics_step(FILE *f, const char *run, int64_t step, double lr,
			  const sw_step_stats *st, double step_s, double tokens, double bound_s,
			  double eval);

/* `spillway export` of a LoRA run: OUT in PEFT's format (offload/lora_export.c). Returns the
 * exit status after the lines it printed. */
int sw_lora_export(const char *run, const char *out);
/* --merge: the run's manifest read (model_dir: its base model), then bound to the base's config
 * (the adapters' file opened, every tensor checked); sw_lora_merge_group adds (alpha / r) B A to
 * the targeted weights of group g's fp32 block. open/bind: 0 or -errno after one line; close
 * whatever they returned. */
typedef struct sw_lora_merge sw_lora_merge;
int sw_lora_merge_open(const char *run, sw_lora_merge **m, char *model_dir, int len);
int sw_lora_merge_bind(sw_lora_merge *m, const sw_config *cfg);
void sw_lora_merge_group(sw_lora_merge *m, const sw_table *tt, int g, float *buf);
void sw_lora_merge_close(sw_lora_merge *m);
#endif
