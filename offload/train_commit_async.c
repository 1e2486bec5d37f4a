/* A commit's durable part overlapped with the next step (docs/runs.md "Commits"): once the state
 * file is written (offload/train_commit.c), a thread fdatasyncs the NVMe files and the state
 * file, then writes commit.json (fsynced, renamed, the directory fsynced). Meanwhile the next
 * step runs; it reads the newly kept slot and writes the other one, which holds the previous
 * durable commit, so its optimizer's first NVMe write waits at the executor's gate until the new
 * commit.json is in place (offload/exec_commit.h). A crash before that leaves the previous
 * commit whole and named. SW_COMMIT_SYNC=1 makes the durable part synchronous (for
 * bench/commit_cost.sh's comparison); SW_COMMIT_DELAY_MS=N holds commit.json back N ms (a test
 * hook: a kill inside the overlap). */
#include "offload/train_int.h"
#include "offload/train_commit.h"
#include "offload/exec_commit.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct train_commit_async {
	pthread_t th;
	int threaded;                 /* th runs durable() (else it ran in the caller) */
	sw_exec *ex;
	const char *run;
	int fd, gated;                /* the state file, written; the executor's gate closed */
	char *text;                   /* commit.json's content */
	sw_train_commit next;         /* what c->cm becomes once durable */
	int rc;
	double nvme_s, fsync_s;
};

/* RUN/commit.json from text: written to commit.json.tmp, fsynced, renamed, directory fsynced. */
static int write_record(const char *run, const char *text)
{
	char tmp[SW_TRAIN_PATH + 80], dst[SW_TRAIN_PATH + 64];
	snprintf(tmp, sizeof(tmp), "%s/commit.json.tmp", run);
	snprintf(dst, sizeof(dst), "%s/commit.json", run);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t n = strlen(text);
	int rc = 0;
	for (size_t done = 0; done < n + 1 && !rc;) {
		const char *b = done < n ? text + done : "\n";
		ssize_t w = write(fd, b, done < n ? n - done : 1);
		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			done += (size_t)w;
	}
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (rc)
		unlink(tmp);
	else
		train_fsync_dir(run);
	return rc;
}

static void *durable(void *arg)
{
	train_commit_async *a = arg;
	double t0 = sw_now();
	int rc = sw_exec_commit_sync(a->ex);   /* says its line */
	double t1 = sw_now();
	if (!rc && fdatasync(a->fd)) {
		rc = -errno;
		sw_error("train: cannot make the commit of step %lld durable (fdatasync of %s/commit-%d.state: "
			 "%s); the last commit stays; check the disk of %s", (long long)a->next.step, a->run,
			 a->next.file, strerror(-rc), a->run);
	}
	const char *delay = getenv("SW_COMMIT_DELAY_MS");   /* test hook: a longer window */
	if (!rc && delay && atoi(delay) > 0)
		usleep((useconds_t)atoi(delay) * 1000u);
	if (!rc && (rc = write_record(a->run, a->text)))
		sw_error("train: cannot write %s/commit.json (%s); the last commit stays; check free "
			 "space in %s", a->run, strerror(-rc), a->run);
	a->nvme_s = t1 - t0;
	a->fsync_s = sw_now() - t1;
	a->rc = rc;
	if (a->gated)   /* the next step's NVMe writes go on (or fail with the commit) */
		sw_exec_commit_gate_open(a->ex, rc);
	return NULL;
}

int train_commit_async_start(sw_train_ctx *c, int fd, char *text, const sw_train_commit *next)
{
	train_commit_async *a = calloc(1, sizeof(*a));
	if (!a) {
		close(fd);
		free(text);
		return -ENOMEM;
	}
	*a = (train_commit_async){ .ex = c->ex, .run = c->a->run, .fd = fd, .text = text,
				   .next = *next, .gated = next->nvme_groups > 0 };
	/* from here the new slot is kept: the next step writes the other one, once the gate opens */
	sw_exec_commit_keep(c->ex);
	if (a->gated)
		sw_exec_commit_gate_close(c->ex);
	c->cm_async = a;
	const char *sync = getenv("SW_COMMIT_SYNC");
	c->cm_time.sync = sync && *sync && strcmp(sync, "0");
	a->threaded = !c->cm_time.sync && !pthread_create(&a->th, NULL, durable, a);
	if (a->threaded)
		return 0;
	durable(a);
	return train_commit_join(c);
}

int train_commit_join(sw_train_ctx *c)
{
	train_commit_async *a = c->cm_async;
	if (!a)
		return 0;
	if (a->threaded)
		pthread_join(a->th, NULL);
	c->cm_async = NULL;
	close(a->fd);
	free(a->text);
	c->cm_time.nvme_sync_s += a->nvme_s;
	c->cm_time.fsync_s += a->fsync_s;
	int rc = a->rc;
	if (!rc) {
		json_decref(c->cm.settings);
		json_decref(c->cm.nvme);
		c->cm = a->next;
		c->have_cm = 1;
		c->commit_live = a->next.nvme_groups > 0;
	} else {
		char p[SW_TRAIN_PATH + 32];
		snprintf(p, sizeof(p), "%s/commit-%d.state", c->a->run, a->next.file);
		unlink(p);
	}
	free(a);
	return rc;
}
