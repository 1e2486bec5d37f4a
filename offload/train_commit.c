/* Commits (docs/runs.md "Commits"): every --commit-every steps the run's state is made durable
 * without copying what lies on NVMe. The executor keeps the committed NVMe slot unwritten
 * (offload/exec_commit.h); after an fdatasync of the NVMe files, the optimizer state living in
 * host or device memory and the NVMe engine's checksums of the committed slot go to one of two
 * state files (RUN/commit-0.state, RUN/commit-1.state, alternately), then RUN/commit.json names
 * it atomically. --resume continues from the newer of commit.json and manifest.json: from a
 * commit it reads the NVMe slots where they lie, every piece checked against its checksum, when
 * the placement is the committed one; when it changed, the commit is first turned into a full
 * save in the run directory (the generic state path) and the run resumes from that. */
#include "offload/train_int.h"
#include "offload/train_commit.h"
#include "offload/exec_commit.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* ---------------------------------------------------------------- the layout ----------- */

/* The NVMe allocations of a plan in the executor's order (sw_exec_create: one extent per
 * buffer of each NVMe row, rounded up to 4 KiB). *out is malloc'd. */
static int layout_allocs(const sw_plan *p, cm_alloc **out, uint64_t *n)
{
	uint64_t cnt = 0;
	for (int r = 0; r < p->nbuf; r++)
		if (p->buf[r].tier == SW_TIER_NVME && p->buf[r].kind != SW_BUF_HELD)
			cnt += (uint64_t)p->buf[r].count;
	cm_alloc *a = calloc(cnt ? cnt : 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	uint64_t i = 0;
	for (int r = 0; r < p->nbuf; r++) {
		const sw_plan_buf *b = &p->buf[r];
		if (b->tier != SW_TIER_NVME || b->kind == SW_BUF_HELD)
			continue;
		for (int64_t j = 0; j < b->count; j++, i++) {
			a[i].len = (b->bytes + 4095) / 4096 * 4096;
			a[i].g = b->kind == SW_BUF_OPT ? b->owner : -1;
			a[i].k = b->kind == SW_BUF_OPT ? b->state : -1;
			a[i].slot = b->kind == SW_BUF_OPT ? b->slot : -1;
		}
	}
	*out = a;
	*n = cnt;
	return 0;
}

/* XXH3 of what decides where the committed state lies: the NVMe allocations, each group's
 * optimizer tier, the slots, the stripe unit and the engine's size. */
int train_commit_layout_hash(const sw_plan *p, char hex[20])
{
	cm_alloc *a;
	uint64_t n;
	int rc = layout_allocs(p, &a, &n);
	if (rc)
		return rc;
	XXH3_state_t *st = XXH3_createState();
	if (!st) {
		free(a);
		return -ENOMEM;
	}
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, a, n * sizeof(*a));
	for (int g = 0; g < p->ngroups; g++)
		XXH3_64bits_update(st, &p->tier[g][SW_STATE_P32], sizeof(p->tier[g][SW_STATE_P32]));
	uint64_t more[3] = { (uint64_t)p->in.slots, sw_plan_nvme_stripe(p), p->total[SW_TIER_NVME] };
	XXH3_64bits_update(st, more, sizeof(more));
	snprintf(hex, 20, "%016" PRIx64, (uint64_t)XXH3_64bits_digest(st));
	XXH3_freeState(st);
	free(a);
	return 0;
}

/* ---------------------------------------------------------------- the interval --------- */

int train_commit_interval(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	const sw_plan *p = &c->plan;
	int nvme_opt = 0;
	uint64_t mem_bytes = 0;
	for (int g = 0; g < c->tt->ngroups; g++) {
		if (p->tier[g][SW_STATE_P32] == SW_TIER_NVME)
			nvme_opt = 1;
		else
			mem_bytes += 12 * (uint64_t)c->tt->g[g].numel;
	}
	c->commit_every = 0;
	if (!a->run || a->commit_every == 0)
		return 0;
	if (nvme_opt && p->in.slots != 2) {
		if (a->commit_every > 0) {
			sw_error("train: --commit-every: --checkpoint-only keeps one NVMe slot of optimizer "
				 "state, updated in place, so nothing on NVMe can be committed; drop one of "
				 "the two (--save-every N makes full saves)");
			return -EINVAL;
		}
		sw_info("train: no commits: --checkpoint-only updates the NVMe state in place; state "
			"is kept at --save-every and at the end");
		return 0;
	}
	if (a->commit_every > 0) {
		c->commit_every = a->commit_every;
		snprintf(c->commit_why, sizeof(c->commit_why), "--commit-every");
		return 0;
	}
	/* the default: a commit writes the state held in memory to the run directory (at the NVMe
	 * write rate the plan assumes) and waits for fdatasyncs (taken as 20 ms); it comes every N
	 * steps with N the smallest that keeps it at or below 5 % of the predicted step time */
	double rate = p->in.rates.nvme_write_gbs > 0 ? p->in.rates.nvme_write_gbs : 1.0;
	double commit_s = (double)mem_bytes / (rate * 1e9) + 0.02;
	double step_s = p->cost.step_s > 0 ? p->cost.step_s : 1.0;
	double n = ceil(commit_s / (0.05 * step_s));
	c->commit_every = n < 1 ? 1 : n > 1000 ? 1000 : (int64_t)n;
	snprintf(c->commit_why, sizeof(c->commit_why), "the default: a commit estimated at %.3g s, "
		 "at most 5 %% of the predicted step of %.3g s%s", commit_s, step_s,
		 n > 1000 ? " (capped at 1000 steps)" : "");
	return 0;
}

/* The run directory's disk before the first step (offload/plan_disk.c): the commits (less the
 * state files already there, which they replace) and one full save (two while a --save-every
 * save is written next to the previous one, unless a save is there already). */
int train_commit_disk_check(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	if (!a->run)
		return 0;
	sw_plan_disk_need d;
	sw_plan_disk(&c->plan, &d);
	uint64_t have_commit = 0, need_commit = 0, need_save = d.save;
	for (int i = 0; i < 2; i++) {
		char p[SW_TRAIN_PATH + 32];
		struct stat st;
		snprintf(p, sizeof(p), "%s/commit-%d.state", a->run, i);
		if (!stat(p, &st))
			have_commit += (uint64_t)st.st_size;
	}
	if (c->commit_every)
		need_commit = d.commits > have_commit ? d.commits - have_commit : 0;
	if (a->save_every && !c->prev[0] && !c->rp.tag[0])
		need_save *= 2;
	uint64_t need = need_commit + need_save, free_ = sw_exec_dir_free(a->run);
	if (free_ >= need)
		return 0;
	char b[4][32];
	sw_error("train: --run %s has %s free but the run needs %s there (commits %s, %s %s); free "
		 "space or give a run directory on a larger disk", a->run, sw_fmt_size(free_, b[0], 32),
		 sw_fmt_size(need, b[1], 32), sw_fmt_size(need_commit, b[2], 32),
		 need_save > d.save ? "two full saves" : "the full save at the end",
		 sw_fmt_size(need_save, b[3], 32));
	return -ENOSPC;
}

/* ---------------------------------------------------------------- writing -------------- */

static int put(FILE *f, const void *x, size_t n) { return fwrite(x, 1, n, f) == n ? 0 : -EIO; }

/* One group's record in the state file: its checksums (NVMe) or its P32, m, v. */
static int write_group(sw_train_ctx *c, FILE *f, int g, int64_t step)
{
	sw_exec *ex = c->ex;
	int32_t tier = sw_exec_opt_on_nvme(ex, g) ? SW_TIER_NVME : SW_TIER_HOST;
	int rc = put(f, &tier, sizeof(tier));
	if (tier == SW_TIER_NVME) {
		for (int k = 0; k < 3 && !rc; k++) {
			uint32_t n = 0;
			sw_exec_commit_sums(ex, g, k, NULL, NULL, &n);
			uint64_t *sums = malloc((size_t)n * 8 + 8);
			uint8_t *wr = calloc((size_t)n + 8, 1);
			rc = sums && wr ? sw_exec_commit_sums(ex, g, k, sums, wr, &n) : -ENOMEM;
			rc = rc ? rc : put(f, &n, sizeof(n));
			rc = rc ? rc : put(f, sums, (size_t)n * 8);
			rc = rc ? rc : put(f, wr, ((size_t)n + 7) / 8 * 8);
			free(sums);
			free(wr);
		}
		return rc;
	}
	float *x = sw_exec_xfer(ex);
	int64_t chunk = sw_exec_xfer_len(ex), numel = c->tt->g[g].numel;
	char where[64];
	snprintf(where, sizeof(where), "commit of step %lld", (long long)step);
	for (int k = 0; k < 3 && !rc; k++)
		for (int64_t off = 0; off < numel && !rc; off += chunk) {
			int64_t n = numel - off < chunk ? numel - off : chunk;
			rc = sw_exec_take(ex, g, COMMIT_OPT_STATE(k), off, n, x);
			rc = rc ? rc : train_check_finite(c->tt, x, g, off, n, where, COMMIT_OPT_STATE(k),
							  "nothing committed, the last commit stays; lower --lr");
			rc = rc ? rc : put(f, x, (size_t)n * 4);
		}
	return rc;
}

static int write_state(sw_train_ctx *c, const char *path, int64_t step)
{
	const sw_plan *p = &c->plan;
	cm_alloc *al;
	cm_head h = { .version = COMMIT_VERSION, .ngroups = c->tt->ngroups, .step = step,
		      .slot = sw_exec_slot(c->ex), .slots = p->in.slots,
		      .io_size = p->total[SW_TIER_NVME], .stripe = sw_plan_nvme_stripe(p) };
	memcpy(h.magic, COMMIT_MAGIC, 8);
	int rc = layout_allocs(p, &al, &h.nalloc);
	if (rc)
		return rc;
	FILE *f = fopen(path, "wb");
	rc = f ? 0 : -errno;
	rc = rc ? rc : put(f, &h, sizeof(h));
	rc = rc ? rc : put(f, al, h.nalloc * sizeof(*al));
	free(al);
	for (int g = 0; g < c->tt->ngroups && !rc; g++)
		rc = write_group(c, f, g, step);
	if (f && !rc && (fflush(f) || fsync(fileno(f))))
		rc = -errno;
	if (f && fclose(f) && !rc)
		rc = -errno;
	return rc;
}

static int commit_write(sw_train_ctx *c, int64_t step);

/* The default interval follows what commits and steps measure: after each commit it becomes the
 * smallest N that keeps that commit at or below 5 % of N measured steps (the planner's estimate
 * only chooses the first one). */
static void interval_measured(sw_train_ctx *c, double commit_s)
{
	if (c->a->commit_every >= 0 || !c->n_steps || c->steps_s <= 0)
		return;
	double step_s = c->steps_s / (double)c->n_steps, n = ceil(commit_s / (0.05 * step_s));
	c->commit_every = n < 1 ? 1 : n > 1000 ? 1000 : (int64_t)n;
	snprintf(c->commit_why, sizeof(c->commit_why), "the default: the last commit measured %.3g s, "
		 "at most 5 %% of the mean measured step of %.3g s%s", commit_s, step_s,
		 n > 1000 ? " (capped at 1000 steps)" : "");
}

int train_commit_write(sw_train_ctx *c, int64_t step)
{
	double t0 = sw_now();
	int rc = commit_write(c, step);
	double dt = sw_now() - t0;
	c->commit_s += dt;
	c->n_commits += !rc;
	c->since_kept = 0;
	if (!rc)
		interval_measured(c, dt);
	return rc;
}

static int commit_write(sw_train_ctx *c, int64_t step)
{
	const char *run = c->a->run;
	int file = c->have_cm ? 1 - c->cm.file : 0, rc = sw_exec_commit_sync(c->ex);
	char path[SW_TRAIN_PATH + 32], name[32], layout[20];
	snprintf(name, sizeof(name), "commit-%d.state", file);
	snprintf(path, sizeof(path), "%s/%s", run, name);
	if (rc || (rc = train_commit_layout_hash(&c->plan, layout)))
		return rc;
	if ((rc = write_state(c, path, step))) {
		if (rc != -EINVAL)   /* a non-finite value has said its line */
			sw_error("train: cannot write the commit of step %lld to %s (%s); the last commit "
				 "stays; check free space in %s", (long long)step, path, strerror(-rc), run);
		unlink(path);
		return rc;
	}
	json_t *sums = NULL, *dirs = json_array();
	uint64_t size = 0;
	if ((rc = train_xxh3_file(path, &sums, &size))) {
		sw_error("train: cannot read back %s (%s)", path, strerror(-rc));
		json_decref(dirs);
		return rc;
	}
	int nvme_groups = 0;
	for (int g = 0; g < c->tt->ngroups; g++)
		nvme_groups += sw_exec_opt_on_nvme(c->ex, g);
	for (int i = 0; i < c->n_nvme; i++) {
		char abs[SW_TRAIN_PATH];
		json_array_append_new(dirs, json_string(realpath(c->nvme_dir[i], abs) ? abs : c->nvme_dir[i]));
	}
	sw_data_pos pos = sw_data_get_pos(&c->data);
	json_t *root = json_pack("{s:i,s:I,s:i,s:i,s:I,s:I,s:O,s:s,s:o,s:s,s:I,s:I,s:o}",
				 "version", COMMIT_VERSION, "step", (json_int_t)step,
				 "slot", sw_exec_slot(c->ex), "nvme_groups", nvme_groups,
				 "data_epoch", (json_int_t)pos.epoch, "data_index", (json_int_t)pos.index,
				 "settings", c->settings, "layout", layout, "nvme", dirs,
				 "state", name, "state_size", (json_int_t)size,
				 "checksum_piece", (json_int_t)SW_TRAIN_SUM_PIECE, "state_xxh3", sums);
	if (!root)
		return -ENOMEM;
	if (c->skipped_total)   /* AdamW's counter and the schedule leave these out */
		json_object_set_new(root, "skipped_steps", json_integer((json_int_t)c->skipped_total));
	char hex[20];
	snprintf(hex, sizeof(hex), "%016" PRIx64, train_json_sum(root, "commit_xxh3"));
	json_object_set_new(root, "commit_xxh3", json_string(hex));
	rc = train_json_write(run, "commit.json", root);
	json_decref(root);
	if (rc)
		return rc;
	/* durable: from here the slot holding this commit is not written until the next one */
	sw_exec_commit_keep(c->ex);
	json_decref(c->cm.settings);
	json_decref(c->cm.nvme);
	c->cm = (sw_train_commit){ .step = step, .pos = pos, .slot = sw_exec_slot(c->ex),
				   .file = file, .nvme_groups = nvme_groups };
	snprintf(c->cm.layout, sizeof(c->cm.layout), "%s", layout);
	c->have_cm = 1;
	c->commit_live = nvme_groups > 0;
	return 0;
}

/* Removes commit.json (first: the manifest now holds a newer state) and the state files. */
void train_commit_drop(sw_train_ctx *c)
{
	const char *run = c->a->run;
	char p[SW_TRAIN_PATH + 32];
	snprintf(p, sizeof(p), "%s/commit.json", run);
	if (!unlink(p))
		train_fsync_dir(run);
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/commit-%d.state", run, i);
		unlink(p);
	}
	json_decref(c->cm.settings);
	json_decref(c->cm.nvme);
	memset(&c->cm, 0, sizeof(c->cm));
	c->have_cm = 0;
	c->commit_live = 0;
}
