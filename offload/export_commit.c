/* Export from a commit: the newest state of a run that ended (or stopped) with a commit is read
 * where it lies, the committed NVMe slot through an I/O engine opened on the committed layout
 * and the memory-resident groups from the commit's state file, every piece checked against the
 * checksums commit.json and the state file carry (offload/export_commit.h). */
#include "offload/export_commit.h"
#include "offload/train_int.h"
#include "offload/train_commit.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct sw_export_commit {
	sw_train_args a;
	sw_train_ctx c;
	train_commit_src *src;
	int lock;
};

static int64_t json_step(const char *run, const char *name)
{
	char p[SW_TRAIN_PATH + 32];
	snprintf(p, sizeof(p), "%s/%s", run, name);
	json_t *root = json_load_file(p, 0, NULL);
	int64_t step = root ? json_integer_value(json_object_get(root, "step")) : -1;
	json_decref(root);
	return step;
}

int sw_export_commit_newer(const char *run)
{
	char p[SW_TRAIN_PATH + 32];
	snprintf(p, sizeof(p), "%s/commit.json", run);
	if (access(p, F_OK))
		return 0;
	int64_t c = json_step(run, "commit.json"), m = json_step(run, "manifest.json");
	return c <= 0 || c > m;   /* one that does not read is said by sw_export_commit_source */
}

int sw_export_commit_source(const char *run, char *model_dir, size_t mlen, char *tok_dir,
			    size_t tlen, char *what, size_t wlen)
{
	char p[SW_TRAIN_PATH + 32];
	snprintf(p, sizeof(p), "%s/commit.json", run);
	json_error_t je;
	json_t *root = json_load_file(p, 0, &je);
	const char *md = root ? json_string_value(json_object_get(root, "model")) : NULL;
	int rc = 0;
	if (!root) {
		sw_error("export: %s: %s (line %d); the run directory is damaged: restore it, or remove "
			 "it to export the last full save", p, je.text, je.line);
		rc = 1;
	} else if (!md) {
		sw_error("export: %s records no model directory (a commit by an older spillway); "
			 "finish the run with 'spillway train ... --resume --save-every N' and export that "
			 "save", p);
		rc = 1;
	} else if (access(md, R_OK)) {
		sw_error("export: %s: the model the run trained, %s, is gone (%s); its config and tensor "
			 "table are needed: restore it", p, md, strerror(errno));
		rc = 1;
	} else {
		snprintf(model_dir, mlen, "%s", md);
		char t1[SW_TRAIN_PATH + 32], t2[SW_TRAIN_PATH + 32];
		snprintf(t1, sizeof(t1), "%s/tokenizer.json", md);
		snprintf(t2, sizeof(t2), "%s/tokenizer.model", md);
		snprintf(tok_dir, tlen, "%s", access(t1, R_OK) && access(t2, R_OK) ? "" : md);
		snprintf(what, wlen, "%s, commit of step %lld", run,
			 (long long)json_integer_value(json_object_get(root, "step")));
	}
	json_decref(root);
	return rc;
}

/* RUN's lock, as train takes it: no run may resume (and move the NVMe state) during an export. */
static int take_lock(const char *run, int *fd)
{
	char lk[SW_TRAIN_PATH + 16];
	snprintf(lk, sizeof(lk), "%s/lock", run);
	*fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0) {
		int e = errno;
		sw_error("export: --run %s: cannot open %s (%s)", run, lk, strerror(e));
		return -e;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB)) {
		sw_error("export: --run %s is in use by a spillway process (lock %s held): its state may "
			 "move; wait for it to end", run, lk);
		return -EBUSY;
	}
	return 0;
}

/* The committed NVMe files must be where the commit says (a finished run keeps them). */
static int nvme_present(sw_train_ctx *c)
{
	for (size_t i = 0; i < json_array_size(c->cm.nvme); i++) {
		char f[SW_TRAIN_PATH + 32];
		snprintf(f, sizeof(f), "%s/%s", json_string_value(json_array_get(c->cm.nvme, i)) ?: "",
			 SW_TRAIN_NVME_FILE);
		if (access(f, R_OK)) {
			sw_error("export: the commit of step %lld in %s lies in %s, which is gone (%s); "
				 "restore it", (long long)c->cm.step, c->a->run, f, strerror(errno));
			return -ENOENT;
		}
	}
	return 0;
}

int sw_export_commit_open(sw_export_commit **out, const char *run, const sw_table *tt)
{
	sw_export_commit *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->a.run = run;
	e->c.a = &e->a;
	e->c.tt = tt;
	e->c.run_lock = -1;
	int rc = take_lock(run, &e->lock);
	rc = rc ? rc : train_commit_read(&e->c);
	if (!rc) {
		e->c.from_commit = 1;
		rc = train_rundir_verify(&e->c);
	}
	rc = rc ? rc : e->c.cm.nvme_groups ? nvme_present(&e->c) : 0;
	rc = rc ? rc : train_commit_src_open(&e->c, &e->src);
	if (rc) {
		sw_export_commit_close(e);
		return rc;
	}
	*out = e;
	return 0;
}

int sw_export_commit_group(sw_export_commit *e, int g, float *x)
{
	return train_commit_src_p32(e->src, g, x);
}

void sw_export_commit_close(sw_export_commit *e)
{
	if (!e)
		return;
	train_commit_src_close(e->src);
	json_decref(e->c.cm_files);
	json_decref(e->c.cm.settings);
	json_decref(e->c.cm.nvme);
	if (e->lock >= 0)
		close(e->lock);
	free(e);
}
