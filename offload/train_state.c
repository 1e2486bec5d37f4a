/* The run's state in and out of the executor, one transfer chunk at a time: the model's weights
 * (or a save, with --resume) loaded, a save written; a non-finite value stops either one.
 * The checkpoint's mapped pages are dropped as they are read, so loading and saving a model
 * larger than host memory stays inside --cpu-mem. */
#include "offload/train_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

static const char *const state_name[SW_STATE_COUNT] = { "P16", "weights", "m", "v" };

/* The first non-finite element of x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return i;
	return -1;
}

/* The tensor holding element `at` of group g, and at's index inside it. */
static const sw_tensor *tensor_at(const sw_table *tt, int g, int64_t at, int64_t *in)
{
	const sw_group *gr = &tt->g[g];
	for (int i = gr->first; i < gr->first + gr->count; i++)
		if (at >= tt->t[i].offset && at < tt->t[i].offset + tt->t[i].numel) {
			*in = at - tt->t[i].offset;
			return &tt->t[i];
		}
	*in = at;
	return &tt->t[gr->first];
}

/* Checks one chunk; after one line naming the tensor, returns -EINVAL. */
int train_check_finite(const sw_table *tt, const float *x, int g, int64_t off, int64_t n,
			const char *where, sw_state state, const char *fix)
{
	int64_t i = first_nonfinite(x, n), el;
	if (i < 0)
		return 0;
	const sw_tensor *t = tensor_at(tt, g, off + i, &el);
	sw_error("train: %s: %s of %s holds a non-finite value (%g) at element %lld; %s", where,
		 state_name[state], t->name, (double)x[i], (long long)el, fix);
	return -EINVAL;
}

/* The saved state must be this model's: same tensors, same shapes, same groups. */
static int same_table(const sw_table *a, const sw_table *b)
{
	int ok = a->n == b->n && a->ngroups == b->ngroups && a->total == b->total;
	for (int i = 0; ok && i < a->n; i++)
		ok = !strcmp(a->t[i].name, b->t[i].name) && a->t[i].numel == b->t[i].numel &&
		     a->t[i].group == b->t[i].group && a->t[i].offset == b->t[i].offset;
	return ok;
}

int train_state_load(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	const sw_table *tt = c->tt;
	sw_hf_model rs[3];
	int nrs = 0, rc = 0;
	const char *dirs[3] = { c->rp.weights, c->rp.m, c->rp.v };
	for (int k = 0; a->resume && k < 3 && !rc; k++) {
		if ((rc = sw_hf_open(&rs[k], dirs[k])))
			break;
		nrs++;
		if (!same_table(tt, &rs[k].tt)) {
			sw_error("train: --resume: %s does not hold the tensors of --model (another "
				 "model's run?); resume with the model the run started from", dirs[k]);
			rc = -EINVAL;
		}
	}
	static const sw_state states[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };
	sw_progress pr;
	int began = !rc;
	if (began)
		sw_progress_begin(&pr, a->resume ? "train: loading the saved state" :
				  "train: loading weights", (uint64_t)tt->total);
	float *x = sw_exec_xfer(c->ex);
	int64_t chunk = sw_exec_xfer_len(c->ex), done = 0;
	for (int g = 0; g < tt->ngroups && !rc; g++) {
		for (int64_t off = 0; off < tt->g[g].numel && !rc; off += chunk) {
			int64_t n = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
			for (int k = 0; k < 3 && !rc; k++) {
				const float *src = NULL;
				if (k == 0 || a->resume) {
					sw_hf_read_range(a->resume ? &rs[k] : &c->hm, g, off, n, x, SW_DTYPE_F32);
					src = x;
					rc = train_check_finite(tt, x, g, off, n, a->resume ? dirs[k] : a->model,
							  states[k], a->resume ? "the save is damaged: start a new run" :
							  "the model's weights are damaged");
				}
				rc = rc ? rc : sw_exec_put(c->ex, g, states[k], off, n, src);
			}
			done += n;
			sw_progress_update(&pr, (uint64_t)done);
		}
	}
	if (began)
		sw_progress_end(&pr);
	for (int k = 0; k < nrs; k++)
		sw_hf_close(&rs[k]);
	return rc;
}

int train_state_file_begin(sw_st_writer **w, const char *dir, const sw_table *tt)
{
	train_rm_rf(dir);
	return sw_hf_write_begin(w, dir, tt, SW_DTYPE_F32, 0);
}

int train_state_file_end(sw_st_writer *w, const sw_table *tt, int rc)
{
	if (rc) {
		sw_st_writer_abort(w);
		return rc;
	}
	sw_config cfg = tt->cfg;
	cfg.dtype = SW_DTYPE_F32;
	return sw_st_writer_finish(w, &cfg);
}

/* Writes one state (P32, m or v) of every group to HF directory dir, chunk by chunk; pr counts
 * the parameters written, from *done on. */
static int save_one(sw_train_ctx *c, const char *dir, sw_state state, int64_t step,
		    sw_progress *pr, int64_t *done)
{
	const sw_table *tt = c->tt;
	sw_st_writer *w;
	int rc = train_state_file_begin(&w, dir, tt);
	if (rc)
		return rc;
	float *x = sw_exec_xfer(c->ex);
	int64_t chunk = sw_exec_xfer_len(c->ex);
	char where[64], fix[96] = "nothing saved; lower --lr";
	snprintf(where, sizeof(where), "after step %lld", (long long)step);
	if (c->last_saved)
		snprintf(fix, sizeof(fix), "nothing saved, the save of step %lld stays; lower --lr",
			 (long long)c->last_saved);
	for (int g = 0; g < tt->ngroups && !rc; g++)
		for (int64_t off = 0; off < tt->g[g].numel && !rc; off += chunk) {
			int64_t n = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
			rc = sw_exec_take(c->ex, g, state, off, n, x);
			rc = rc ? rc : train_check_finite(tt, x, g, off, n, where, state, fix);
			rc = rc ? rc : sw_st_writer_write(w, x, SW_DTYPE_F32, n);
			*done += n;
			sw_progress_update(pr, (uint64_t)*done);
		}
	return train_state_file_end(w, tt, rc);
}

int train_state_save(sw_train_ctx *c, int64_t step)
{
	const char *run = c->a->run;
	int jrc = train_commit_join(c);   /* a commit in flight is durable (or failed) first */
	if (jrc)
		return jrc;
	char dir[SW_TRAIN_PATH + 64], tag[64];
	snprintf(tag, sizeof(tag), "%08lld", (long long)step);
	snprintf(dir, sizeof(dir), "%s/weights-%s", run, tag);
	/* a bar on a terminal after half a second, a line per 10 % in a log after 2 s */
	sw_progress pr;
	int64_t done = 0;
	sw_progress_begin(&pr, "train: saving", 3 * (uint64_t)c->tt->total);
	int rc = save_one(c, dir, SW_STATE_P32, step, &pr, &done);
	snprintf(dir, sizeof(dir), "%s/optim-%s", run, tag);
	if (!rc) {
		train_rm_rf(dir);
		if (mkdir(dir, 0755)) {
			rc = -errno;
			sw_error("train: cannot create %s: %s", dir, strerror(errno));
		}
	}
	snprintf(dir, sizeof(dir), "%s/optim-%s/m", run, tag);
	rc = rc ? rc : save_one(c, dir, SW_STATE_M, step, &pr, &done);
	snprintf(dir, sizeof(dir), "%s/optim-%s/v", run, tag);
	rc = rc ? rc : save_one(c, dir, SW_STATE_V, step, &pr, &done);
	rc = rc ? rc : train_rundir_commit(c, step, tag);
	if (!rc)
		sw_progress_end(&pr);
	if (rc) {
		/* the last commit stays; this save's directories go */
		snprintf(dir, sizeof(dir), "%s/weights-%s", run, tag);
		if (strcmp(tag, c->prev))
			train_rm_rf(dir);
		snprintf(dir, sizeof(dir), "%s/optim-%s", run, tag);
		if (strcmp(tag, c->prev))
			train_rm_rf(dir);
		return rc;
	}
	/* the previous step's directories go only after the commit */
	if (c->prev[0] && strcmp(c->prev, tag)) {
		snprintf(dir, sizeof(dir), "%s/weights-%s", run, c->prev);
		train_rm_rf(dir);
		snprintf(dir, sizeof(dir), "%s/optim-%s", run, c->prev);
		train_rm_rf(dir);
	}
	snprintf(c->prev, sizeof(c->prev), "%s", tag);
	c->last_saved = step;
	train_commit_drop(c);   /* the save holds this state: no commit is needed */
	c->since_kept = 0;
	return 0;
}
