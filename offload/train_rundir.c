/* The run directory (--run DIR, docs/runs.md) at start and end: its lock, the leftovers of an
 * interrupted save removed, metrics.jsonl trimmed to the saved steps; and the file helpers the
 * driver shares (remove a tree, fsync a directory, XXH3 of a file in pieces). */
#include "offload/train_int.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

int train_rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return unlink(path) && errno != ENOENT ? -errno : 0;
	struct dirent *e;
	char buf[SW_TRAIN_PATH + 300];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(buf, sizeof(buf), "%s/%s", path, e->d_name);
		train_rm_rf(buf);
	}
	closedir(d);
	return rmdir(path) ? -errno : 0;
}

int train_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* XXH3-64 of each SW_TRAIN_SUM_PIECE of path, as hex strings in *sums (a new JSON array). */
int train_xxh3_file(const char *path, json_t **sums, uint64_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *buf = malloc(1 << 20);
	XXH3_state_t *st = XXH3_createState();
	*sums = json_array();
	*size = 0;
	int rc = buf && st && *sums ? 0 : -ENOMEM;
	uint64_t in_piece = 0;
	size_t n = 0;
	if (!rc)
		XXH3_64bits_reset(st);
	while (!rc && (n = fread(buf, 1, 1 << 20, f)) > 0) {
		XXH3_64bits_update(st, buf, n);
		*size += n;
		in_piece += n;
		if (in_piece == SW_TRAIN_SUM_PIECE) {
			char hex[20];
			snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(st));
			json_array_append_new(*sums, json_string(hex));
			XXH3_64bits_reset(st);
			in_piece = 0;
		}
	}
	if (!rc && ferror(f))
		rc = -EIO;
	if (!rc && (in_piece || *size == 0)) {
		char hex[20];
		snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(st));
		json_array_append_new(*sums, json_string(hex));
	}
	fclose(f);
	free(buf);
	XXH3_freeState(st);
	return rc;
}

/* Leftovers of an interrupted save: NAME.tmp-XXXXXX, manifest.json.tmp, and weights-N/optim-N
 * that the manifest does not name (a save killed before its commit); also the temporary copies
 * of the report's files, run.json.tmp.PID and report.html.tmp.PID (core/report.c), of a
 * process killed while writing one. */
static int is_leftover(const char *name, const char *keep)
{
	if (strstr(name, ".tmp-") || !strcmp(name, "manifest.json.tmp") ||
	    !strcmp(name, "commit.json.tmp") ||
	    !strncmp(name, "run.json.tmp.", 13) || !strncmp(name, "report.html.tmp.", 16))
		return 1;
	const char *tag = !strncmp(name, "weights-", 8) ? name + 8 : !strncmp(name, "optim-", 6) ?
			  name + 6 : NULL;
	return tag && strlen(tag) == 8 && strspn(tag, "0123456789") == 8 && strcmp(tag, keep);
}

static void remove_leftovers(const char *run, const char *keep)
{
	DIR *d = opendir(run);
	if (!d)
		return;
	struct dirent *e;
	char p[SW_TRAIN_PATH + 300];
	int n = 0;
	while ((e = readdir(d)))
		if (is_leftover(e->d_name, keep)) {
			snprintf(p, sizeof(p), "%s/%s", run, e->d_name);
			train_rm_rf(p);
			n++;
		}
	closedir(d);
	if (n)
		sw_info("train: removed %d leftover(s) of an interrupted save from %s", n, run);
}

/* Locks RUN/lock for this process: a second run on the directory is refused. */
static int lock_run(sw_train_ctx *c, const char *run)
{
	char lk[SW_TRAIN_PATH + 16], holder[64] = "";
	snprintf(lk, sizeof(lk), "%s/lock", run);
	int fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		sw_error("train: --run %s: cannot create %s (%s)", run, lk, strerror(e));
		return -e;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = 0;
		holder[strcspn(holder, "\n")] = 0;
		close(fd);
		sw_error("train: --run %s is in use by another spillway process (%s, lock %s); wait "
			 "for it to end or pick another directory", run, holder[0] ? holder : "pid unknown", lk);
		return -EBUSY;
	}
	char me[64];
	int len = snprintf(me, sizeof(me), "pid %d\n", (int)getpid());
	if (ftruncate(fd, 0) || pwrite(fd, me, (size_t)len, 0) != len) {
		/* the lock holds without the note */
	}
	c->run_lock = fd;
	return 0;
}

/* metrics.jsonl keeps the records of steps up to `upto` (those the saved state has seen): steps
 * 1, 2, ... in order. A complete line that is not the next step's record (a changed byte) is
 * dropped and said in one warning naming the line: it is the run's log, not its state, so the
 * run goes on. A last line without its newline (a kill while it was written) is dropped quietly. */
static int trim_metrics(const char *run, int64_t upto)
{
	char p[SW_TRAIN_PATH + 32], t[SW_TRAIN_PATH + 40], line[8192];
	snprintf(p, sizeof(p), "%s/metrics.jsonl", run);
	snprintf(t, sizeof(t), "%s/metrics.jsonl.tmp", run);
	FILE *in = fopen(p, "r");
	if (!in)
		return 0;
	FILE *out = fopen(t, "w");
	if (!out) {
		fclose(in);
		return -errno;
	}
	long long s, next = 1, lineno = 0, bad = 0, after = 0, kept = 0;
	while (fgets(line, sizeof(line), in)) {
		lineno++;
		if (!strchr(line, '\n'))
			continue;
		int ok = sscanf(line, "{\"step\": %lld,", &s) == 1;
		if (ok && s >= next && s <= upto) {
			if (s != next && !bad)
				bad = lineno;
			fputs(line, out);
			next = s + 1;
			kept++;
		} else if (ok && s > upto) {
			after = after ? after : lineno;   /* a step after the save (or a changed number) */
		} else if (!bad) {
			bad = lineno;
		}
	}
	fclose(in);
	if (upto && (bad || kept != upto))
		sw_warn("train: --resume: %s: line %lld is not the record it should be (a changed byte?); "
			"%lld of the %lld records of the saved steps are kept, the damaged lines dropped (the "
			"saved state is not affected)", p, bad ? bad : after ? after : lineno + 1, kept,
			(long long)upto);
	int rc = fflush(out) || fsync(fileno(out)) ? -errno : 0;
	fclose(out);
	if (!rc && rename(t, p))
		rc = -errno;
	return rc;
}

int train_rundir_open(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	c->run_lock = -1;
	if (!a->run)
		return 0;
	if (mkdir(a->run, 0755)) {
		int e = errno;
		if (e != EEXIST) {
			sw_error("train: --run %s: cannot create it (%s)", a->run, strerror(e));
			return -e;
		}
	} else {
		c->run_made = 1;   /* removed again if the run ends before its first step */
	}
	if (!realpath(a->run, c->run_abs)) {
		int e = errno;
		sw_error("train: --run %s: %s; give a directory", a->run, strerror(e));
		return -e;
	}
	int rc = lock_run(c, a->run);
	if (rc)
		return rc;
	char man[SW_TRAIN_PATH + 32], cmt[SW_TRAIN_PATH + 32];
	snprintf(man, sizeof(man), "%s/manifest.json", a->run);
	snprintf(cmt, sizeof(cmt), "%s/commit.json", a->run);
	int have = access(man, F_OK) == 0, havec = access(cmt, F_OK) == 0;
	if ((have || havec) && !a->resume) {
		sw_error("train: --run %s already holds a run (%s); add --resume to continue it, or "
			 "pick another directory", a->run, have ? man : cmt);
		return -EEXIST;
	}
	if (a->resume && (have || !havec) && (rc = train_rundir_read_manifest(c)))
		return rc;
	if (a->resume && havec && (rc = train_commit_read(c)))
		return rc;
	if (c->have_cm && (!have || c->cm.step > c->rp.step)) {
		/* the commit is newer than the last full save: the run continues from it */
		c->from_commit = 1;
		c->last_saved = have ? c->rp.step : 0;
		c->rp.step = c->cm.step;
		c->rp.pos = c->cm.pos;
		c->rp.skipped = c->cm.skipped;
		json_decref(c->rp.settings);
		c->rp.settings = json_incref(c->cm.settings);
		c->commit_live = c->cm.nvme_groups > 0;
	} else if (c->have_cm || !havec) {
		/* older than the manifest's save, or state files of a first commit killed before its
		 * record: nothing needs them */
		train_commit_drop(c);
	}
	remove_leftovers(a->run, a->resume && have ? c->rp.tag : "");
	if ((rc = trim_metrics(a->run, a->resume ? c->rp.step : 0))) {
		sw_error("train: --run %s: cannot rewrite metrics.jsonl (%s)", a->run, strerror(-rc));
		return rc;
	}
	return 0;
}

void train_rundir_close(sw_train_ctx *c)
{
	if (c->metrics)
		fclose(c->metrics);
	c->metrics = NULL;
	if (c->run_made && !c->last_step)
		train_rm_rf(c->a->run);
	if (c->run_lock >= 0)
		close(c->run_lock);
	c->run_lock = -1;
	json_decref(c->rp.files);
	json_decref(c->rp.settings);
	json_decref(c->settings);
	json_decref(c->cm_files);
	json_decref(c->cm.settings);
	json_decref(c->cm.nvme);
	c->rp.files = c->rp.settings = c->settings = c->cm_files = c->cm.settings = c->cm.nvme = NULL;
}

int train_rundir_metrics_open(sw_train_ctx *c)
{
	if (!c->a->run)
		return 0;
	char mp[SW_TRAIN_PATH + 32];
	snprintf(mp, sizeof(mp), "%s/metrics.jsonl", c->a->run);
	c->metrics = fopen(mp, "a");
	if (!c->metrics) {
		int e = errno;
		sw_error("train: cannot open %s: %s", mp, strerror(e));
		return -e;
	}
	return 0;
}
