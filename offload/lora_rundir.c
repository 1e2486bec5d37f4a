/* A LoRA run's directory (offload/lora_train_int.h): the settings that decide the result, the
 * directory created or (--resume) its manifest read and compared, RUN/lock held. */
#include "offload/lora_train_int.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The settings that decide the result: recorded with every save, repeated by --resume. */
json_t *lora_settings_make(const lctx *c)
{
	const sw_train_args *a = c->a;
	char model[PATH_MAX], tg[64];
	if (!realpath(a->model, model))
		snprintf(model, sizeof(model), "%s", a->model);
	return json_pack("{s:s,s:i,s:f,s:s,s:f,s:I,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,"
			 "s:s,s:I,s:f}",
			 "model", model, "lora_rank", c->la->rank, "lora_alpha", c->la->alpha,
			 "lora_targets", sw_lora_targets_str(c->la->targets, tg, sizeof(tg)),
			 "lora_dropout", c->la->dropout, "seed", (json_int_t)a->seed,
			 "dtype", a->fp32 ? "fp32" : "bf16", "seq_len", (json_int_t)a->seq_len,
			 "batch_tokens", (json_int_t)a->batch_tokens, "micro_rows",
			 (json_int_t)a->micro_rows, "steps", (json_int_t)a->steps, "lr", a->adam.lr,
			 "beta1", a->adam.beta1, "beta2", a->adam.beta2, "eps", a->adam.eps,
			 "weight_decay", a->adam.weight_decay, "clip", a->clip, "schedule",
			 a->schedule_name ? a->schedule_name : "cosine", "warmup",
			 (json_int_t)a->sched.warmup_steps, "min_lr_rate", a->sched.min_lr_rate);
}

/* RUN/lock, held (flock) while the run goes: one process per run directory. */
static int rundir_lock(lctx *c)
{
	char p[SW_TRAIN_PATH + 16];
	snprintf(p, sizeof(p), "%s/lock", c->a->run);
	c->lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->lock < 0) {
		int e = errno;
		sw_error("train: cannot create %s (%s)", p, strerror(e));
		return -e;
	}
	if (flock(c->lock, LOCK_EX | LOCK_NB)) {
		sw_error("train: %s is in use by another spillway process; wait for it to finish",
			 c->a->run);
		return -EBUSY;
	}
	return 0;
}

/* --resume: the manifest, the same settings; a fresh run: no earlier run in the directory. */
int lora_rundir_open(lctx *c)
{
	const char *run = c->a->run;
	char p[SW_TRAIN_PATH + 64];
	if (!run)
		return 0;
	if (!c->a->resume) {
		snprintf(p, sizeof(p), "%s/%s", run, SW_LORA_MANIFEST);
		char q[SW_TRAIN_PATH + 64];
		snprintf(q, sizeof(q), "%s/manifest.json", run);
		if (!access(p, F_OK) || !access(q, F_OK)) {
			sw_error("train: %s already holds a run; give --resume to continue it, or a new "
				 "--run directory", run);
			return -EEXIST;
		}
		if (mkdir(run, 0755) && errno != EEXIST) {
			int e = errno;
			sw_error("train: cannot create --run %s (%s)", run, strerror(e));
			return -e;
		}
		return rundir_lock(c);
	}
	int rc = sw_lora_run_read(run, &c->rp);
	rc = rc ? rc : rundir_lock(c);
	if (rc)
		return rc;
	json_t *old = json_object_get(c->rp.man, "settings");
	const char *key;
	json_t *v;
	json_object_foreach(c->settings, key, v) {
		if (json_equal(v, json_object_get(old, key)))
			continue;
		char *was = json_dumps(json_object_get(old, key), JSON_ENCODE_ANY);
		sw_error("train: --resume: %s was trained with %s %s; give the same setting", run, key,
			 was ? was : "(none)");
		free(was);
		return -EINVAL;
	}
	if (c->rp.step >= c->a->steps) {
		sw_error("train: --resume: %s is already at step %lld of --steps %lld: nothing to do",
			 run, (long long)c->rp.step, (long long)c->a->steps);
		return -EINVAL;
	}
	snprintf(c->prev, sizeof(c->prev), "%s", c->rp.adapters);
	return 0;
}
