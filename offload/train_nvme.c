/* The --nvme directories of a run: one run at a time (flock), the scratch file spillway.data
 * reused by the run that made it and refused when another run left it, sized and opened through
 * the I/O engine, and removed at the end unless --keep-nvme. */
#include "offload/train_int.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Who a lock file names: its first line ("run /abs/run" or "no run directory"). */
static void lock_owner(int fd, char *owner, size_t len)
{
	ssize_t n = pread(fd, owner, len - 1, 0);
	owner[n > 0 ? n : 0] = 0;
	char *nl = strchr(owner, '\n');
	if (nl)
		*nl = 0;
}

/* This run's owner line. */
static void my_owner(const sw_train_ctx *c, char *owner, size_t len)
{
	if (c->run_abs[0])
		snprintf(owner, len, "run %s", c->run_abs);
	else
		snprintf(owner, len, "a run without a run directory (pid %d)", (int)getpid());
}

/* Locks one directory and checks its scratch file. 0 or -errno after one line. */
static int claim_dir(sw_train_ctx *c, int i)
{
	const char *dir = c->nvme_dir[i];
	char lk[SW_TRAIN_PATH + 32], data[SW_TRAIN_PATH + 32], prev[SW_TRAIN_PATH + 64],
	     mine[SW_TRAIN_PATH + 64];
	snprintf(lk, sizeof(lk), "%s/%s", dir, SW_TRAIN_NVME_LOCK);
	snprintf(data, sizeof(data), "%s/%s", dir, SW_TRAIN_NVME_FILE);
	int fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		sw_error("train: --nvme %s: cannot create %s (%s); check the directory's permissions",
			 dir, lk, strerror(e));
		return -e;
	}
	lock_owner(fd, prev, sizeof(prev));
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		close(fd);
		sw_error("train: --nvme %s is in use by another spillway process (%s); give this run "
			 "its own --nvme directory", dir, prev[0] ? prev : "owner unknown");
		return -EBUSY;
	}
	my_owner(c, mine, sizeof(mine));
	if (!access(data, F_OK) && strcmp(prev, mine)) {
		sw_error("train: --nvme %s holds %s left by %s, not this run; remove it if that run is "
			 "over (rm %s), or give another --nvme directory", dir, data,
			 prev[0] ? prev : "an unknown run", data);
		close(fd);
		return -EEXIST;
	}
	c->nvme_lock[i] = fd;   /* ours from here: released (and removed) at the end */
	/* written over the old owner, then cut to length: a kill in between never leaves the file
	 * without this run's name while the scratch file exists (the same run writes the same) */
	strcat(mine, "\n");
	size_t len = strlen(mine);
	if (pwrite(fd, mine, len, 0) != (ssize_t)len || ftruncate(fd, (off_t)len)) {
		int e = errno;
		sw_error("train: --nvme %s: cannot write %s (%s)", dir, lk, strerror(e));
		return -e;
	}
	return 0;
}

int train_nvme_claim(sw_train_ctx *c)
{
	for (int i = 0; i < SW_TRAIN_MAX_NVME; i++)
		c->nvme_lock[i] = -1;
	if (!c->a->nvme)
		return 0;
	char *dirs[SW_TRAIN_MAX_NVME];
	uint64_t caps[SW_TRAIN_MAX_NVME];
	int n = sw_io_paths_parse(c->a->nvme, dirs, caps, SW_TRAIN_MAX_NVME);
	if (n < 0)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		snprintf(c->nvme_dir[i], SW_TRAIN_PATH, "%s", dirs[i]);
		free(dirs[i]);
	}
	c->n_nvme = n;
	struct stat st;
	for (int i = 0; i < n; i++) {
		if (stat(c->nvme_dir[i], &st) || !S_ISDIR(st.st_mode)) {
			sw_error("train: --nvme directory %s does not exist; create it (mkdir -p %s)",
				 c->nvme_dir[i], c->nvme_dir[i]);
			return -ENOENT;
		}
		int rc = claim_dir(c, i);
		if (rc)
			return rc;
	}
	return 0;
}

int train_nvme_open(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	const sw_plan *plan = &c->plan;
	const sw_table *tt = c->tt;
	if (!plan->total[SW_TIER_NVME])
		return 0;
	sw_io_config ic = { .paths = a->nvme, .quiet = 1, .bs = a->io_bs, .qd = a->io_qd,
			    .threads = a->io_threads, .file_name = SW_TRAIN_NVME_FILE };
	/* a chunk of P16 (and so of P32/m/v) must be whole checksum pieces: the stripe unit
	 * divides it */
	uint64_t chunk16 = ((uint64_t)sw_exec_chunk(plan, tt) * (a->fp32 ? 4 : 2) + 4095) / 4096 * 4096;
	ic.stripe = sw_plan_nvme_stripe(plan);
	if (chunk16 % ic.stripe) {
		char b1[32], b2[32];
		sw_error("train: --io-stripe %s does not divide one I/O chunk of P16 (%s); give a "
			 "divisor of it (a power of two from 4KiB up does) or change --chunk",
			 sw_fmt_size(ic.stripe, b1, 32), sw_fmt_size(chunk16, b2, 32));
		return -EINVAL;
	}
	/* the plan's NVMe total is the engine's footprint (sw_io_extent_place over the buffer
	 * table's extents, the files rounded to whole stripe units) */
	ic.size = plan->total[SW_TIER_NVME];
	return sw_io_open(&ic, &c->io);
}

void train_nvme_release(sw_train_ctx *c, int finished)
{
	for (int i = 0; i < c->n_nvme; i++) {
		if (c->nvme_lock[i] < 0)
			continue;
		char f[SW_TRAIN_PATH + 32];
		if (finished && !c->a->keep_nvme) {
			snprintf(f, sizeof(f), "%s/%s", c->nvme_dir[i], SW_TRAIN_NVME_FILE);
			unlink(f);
			snprintf(f, sizeof(f), "%s/%s", c->nvme_dir[i], SW_TRAIN_NVME_LOCK);
			unlink(f);
		}
		close(c->nvme_lock[i]);
		c->nvme_lock[i] = -1;
	}
}
