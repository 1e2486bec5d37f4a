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
#include <fcntl.h>
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
	if (a->end_commit && (a->commit_every == 0 || (nvme_opt && p->in.slots != 2))) {
		sw_error("train: --end-commit ends the run with a commit, but %s; drop --end-commit "
			 "(the run then ends with a full save)", a->commit_every == 0 ?
			 "--commit-every 0 turns commits off" : "--checkpoint-only keeps one NVMe slot, "
			 "which cannot be committed");
		return -EINVAL;
	}
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
	if (train_commit_ends(c) && !a->save_every)
		need_save = 0;   /* the end is a commit: no full save */
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

/* The state file's writer: bytes go to the file in large write()s straight from where they lie
 * (the executor's transfer buffer for P32/m/v; a small buffer gathers the headers), hashed as
 * they pass (XXH3 of every SW_TRAIN_SUM_PIECE bytes of the file, what train_xxh3_file gives
 * for the finished file) instead of read back, and the page cache's writeback is started
 * behind them (sync_file_range) so that the final fdatasync waits for little. */
#define CW_SMALL (1u << 20)
typedef struct cm_writer {
	int fd;
	uint64_t size, in_piece, synced;    /* bytes written; of them in the current piece; */
	XXH3_state_t *st;                   /* ... handed to writeback */
	json_t *sums;                       /* the pieces' XXH3 in hex */
	char *small;
	uint32_t nsmall;
	sw_train_commit_time *t;
} cm_writer;

static void cw_piece_done(cm_writer *w)
{
	char hex[20];
	snprintf(hex, sizeof(hex), "%016" PRIx64, (uint64_t)XXH3_64bits_digest(w->st));
	json_array_append_new(w->sums, json_string(hex));
	XXH3_64bits_reset(w->st);
	w->in_piece = 0;
}

/* Hashes and writes n bytes at the end of the file. */
static int cw_raw(cm_writer *w, const void *x, uint64_t n)
{
	const char *b = x;
	double t0 = sw_now();
	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done < SW_TRAIN_SUM_PIECE - w->in_piece ? n - done
									 : SW_TRAIN_SUM_PIECE - w->in_piece;
		XXH3_64bits_update(w->st, b + done, k);
		done += k;
		w->in_piece += k;
		if (w->in_piece == SW_TRAIN_SUM_PIECE)
			cw_piece_done(w);
	}
	double t1 = sw_now();
	w->t->hash_s += t1 - t0;
	for (uint64_t done = 0; done < n;) {
		ssize_t r = write(w->fd, b + done, n - done > (1u << 30) ? (1u << 30) : n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (uint64_t)r;
	}
	w->size += n;
	/* start the writeback of what is written so far, in steps of 64 MiB */
	if (w->size - w->synced >= (64u << 20)) {
		sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->size - w->synced), SYNC_FILE_RANGE_WRITE);
		w->synced = w->size;
	}
	w->t->write_s += sw_now() - t1;
	return 0;
}

static int cw_flush_small(cm_writer *w)
{
	int rc = w->nsmall ? cw_raw(w, w->small, w->nsmall) : 0;
	w->nsmall = 0;
	return rc;
}

/* Small records are gathered; large ones are written from where they lie. */
static int cw_put(cm_writer *w, const void *x, uint64_t n)
{
	if (w->nsmall + n <= CW_SMALL) {
		memcpy(w->small + w->nsmall, x, n);
		w->nsmall += (uint32_t)n;
		return 0;
	}
	int rc = cw_flush_small(w);
	return rc ? rc : n <= CW_SMALL ? cw_put(w, x, n) : cw_raw(w, x, n);
}

static int cw_open(cm_writer *w, const char *path, sw_train_commit_time *t)
{
	memset(w, 0, sizeof(*w));
	w->t = t;
	w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0)
		return -errno;
	w->st = XXH3_createState();
	w->sums = json_array();
	w->small = malloc(CW_SMALL);
	if (!w->st || !w->sums || !w->small)
		return -ENOMEM;
	XXH3_64bits_reset(w->st);
	return 0;
}

/* The last bytes written, the last piece hashed (the fdatasync is the commit's durable part:
 * train_commit_async.c). */
static int cw_finish(cm_writer *w)
{
	int rc = cw_flush_small(w);
	if (!rc && (w->in_piece || w->size == 0))
		cw_piece_done(w);
	return rc;
}

static void cw_close(cm_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	XXH3_freeState(w->st);
	json_decref(w->sums);
	free(w->small);
}

/* One group's record in the state file: its checksums (NVMe) or its P32, m, v. */
static int write_group(sw_train_ctx *c, cm_writer *w, int g, int64_t step)
{
	sw_exec *ex = c->ex;
	int32_t tier = sw_exec_opt_on_nvme(ex, g) ? SW_TIER_NVME : SW_TIER_HOST;
	int rc = cw_put(w, &tier, sizeof(tier));
	if (tier == SW_TIER_NVME) {
		for (int k = 0; k < 3 && !rc; k++) {
			uint32_t n = 0;
			if ((rc = sw_exec_commit_sums(ex, g, k, NULL, NULL, &n)))
				break;
			uint64_t *sums = malloc((size_t)n * 8 + 8);
			uint8_t *wr = calloc((size_t)n + 8, 1);
			rc = sums && wr ? sw_exec_commit_sums(ex, g, k, sums, wr, &n) : -ENOMEM;
			rc = rc ? rc : cw_put(w, &n, sizeof(n));
			rc = rc ? rc : cw_put(w, sums, (size_t)n * 8);
			rc = rc ? rc : cw_put(w, wr, ((size_t)n + 7) / 8 * 8);
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
			double t0 = sw_now();
			rc = sw_exec_take(ex, g, COMMIT_OPT_STATE(k), off, n, x);
			rc = rc ? rc : train_check_finite(c->tt, x, g, off, n, where, COMMIT_OPT_STATE(k),
							  "nothing committed, the last commit stays; lower --lr");
			w->t->snapshot_s += sw_now() - t0;
			rc = rc ? rc : cw_put(w, x, (uint64_t)n * 4);
		}
	return rc;
}

/* Writes the state file, left open in *fd for its fdatasync; *sums (the XXH3 per piece) and
 * *size describe what was written. */
static int write_state(sw_train_ctx *c, const char *path, int64_t step, json_t **sums,
		       uint64_t *size, int *fd)
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
	cm_writer w;
	rc = cw_open(&w, path, &c->cm_time);
	rc = rc ? rc : cw_put(&w, &h, sizeof(h));
	rc = rc ? rc : cw_put(&w, al, h.nalloc * sizeof(*al));
	free(al);
	for (int g = 0; g < c->tt->ngroups && !rc; g++)
		rc = write_group(c, &w, g, step);
	rc = rc ? rc : cw_finish(&w);
	if (!rc) {
		*sums = json_incref(w.sums);
		*size = w.size;
		*fd = w.fd;
		w.fd = -1;
	}
	cw_close(&w);
	return rc;
}

/* No non-finite value reaches a commit: the NVMe-resident state of the current slot was checked
 * as the last step wrote it (exec_commit.h), or, when it was not (a stop between commits, a
 * skipped step), is read back here and checked. 0 or -EINVAL/-errno after one line. */
static int check_nvme_finite(sw_train_ctx *c, int64_t step)
{
	sw_exec *ex = c->ex;
	const char *fix = "nothing committed, the last commit stays; lower --lr";
	char where[96];
	snprintf(where, sizeof(where), "commit of step %lld, the NVMe slot %d", (long long)step,
		 sw_exec_slot(ex));
	double t0 = sw_now();
	int rc = 0;
	for (int g = 0; g < c->tt->ngroups && !rc; g++) {
		int k;
		int64_t el;
		float val;
		int r = sw_exec_commit_finite(ex, g, &k, &el, &val);
		if (r < 0 && r != -ENODATA) {   /* an update's error, said where it happened */
			rc = r;
			break;
		}
		if (r == 1)
			rc = train_check_finite(c->tt, &val, g, el, 1, where, COMMIT_OPT_STATE(k), fix);
		if (r != -ENODATA || !sw_exec_opt_on_nvme(ex, g))
			continue;
		float *x = sw_exec_xfer(ex);
		int64_t chunk = sw_exec_xfer_len(ex), numel = c->tt->g[g].numel;
		for (k = 0; k < 3 && !rc; k++)
			for (int64_t off = 0; off < numel && !rc; off += chunk) {
				int64_t n = numel - off < chunk ? numel - off : chunk;
				rc = sw_exec_commit_read(ex, g, k, off, n, x);
				rc = rc ? rc : train_check_finite(c->tt, x, g, off, n, where,
								  COMMIT_OPT_STATE(k), fix);
			}
	}
	c->cm_time.snapshot_s += sw_now() - t0;
	return rc;
}

/* Before step `step`: when a commit follows it, the optimizer checks the NVMe state it writes
 * finite as it writes it. */
void train_commit_before_step(sw_train_ctx *c, int64_t step)
{
	const char *rb = getenv("SW_TEST_COMMIT_READBACK");   /* test hook: the read-back path */
	sw_exec_commit_scan(c->ex, train_commit_after(c, step) && !(rb && !strcmp(rb, "1")));
}

/* 1 when step ends with a commit (the interval, or the end of a run whose end is a commit). */
int train_commit_after(const sw_train_ctx *c, int64_t step)
{
	const sw_train_args *a = c->a;
	if (!c->commit_every || !a->run || (a->save_every && step % a->save_every == 0))
		return 0;
	return c->since_kept + 1 >= c->commit_every || step == a->stop_after ||
	       (step == a->steps && train_commit_ends(c));
}

/* 1 when the run's end is a commit, not a full save (--end-commit: the NVMe state stays where
 * it lies, export reads it there: offload/export_commit.c). */
int train_commit_ends(const sw_train_ctx *c)
{
	return c->a->end_commit && c->commit_every > 0;
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
	/* the commit's cost for the interval: its time between steps, plus what the step after the
	 * last commit waited at the gate for that commit to become durable */
	double waited = sw_exec_commit_waited(c->ex) - c->cm_time.waited_seen;
	c->cm_time.waited_seen += waited;
	if (!rc)
		interval_measured(c, dt + waited);
	return rc;
}

static int commit_write(sw_train_ctx *c, int64_t step)
{
	const char *run = c->a->run;
	int rc = train_commit_join(c);   /* the previous commit is durable (or failed) */
	rc = rc ? rc : check_nvme_finite(c, step);
	if (rc)
		return rc;
	int file = c->have_cm ? 1 - c->cm.file : 0, fd = -1;
	char path[SW_TRAIN_PATH + 32], name[32], layout[20];
	snprintf(name, sizeof(name), "commit-%d.state", file);
	snprintf(path, sizeof(path), "%s/%s", run, name);
	if ((rc = train_commit_layout_hash(&c->plan, layout)))
		return rc;
	json_t *sums = NULL, *dirs = NULL;
	uint64_t size = 0;
	if ((rc = write_state(c, path, step, &sums, &size, &fd))) {
		if (rc != -EINVAL)   /* a non-finite value has said its line */
			sw_error("train: cannot write the commit of step %lld to %s (%s); the last commit "
				 "stays; check free space in %s", (long long)step, path, strerror(-rc), run);
		unlink(path);
		return rc;
	}
	dirs = json_array();
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
	char model[SW_TRAIN_PATH];   /* export reads its table and config (export_commit.c) */
	if (root)
		json_object_set_new(root, "model", json_string(realpath(c->a->model, model) ? model : c->a->model));
	if (root && c->skipped_total)   /* AdamW's counter and the schedule leave these out */
		json_object_set_new(root, "skipped_steps", json_integer((json_int_t)c->skipped_total));
	char hex[20], *text = NULL;
	if (root) {
		snprintf(hex, sizeof(hex), "%016" PRIx64, train_json_sum(root, "commit_xxh3"));
		json_object_set_new(root, "commit_xxh3", json_string(hex));
		text = json_dumps(root, JSON_INDENT(1));
		json_decref(root);
	}
	if (!text) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	sw_train_commit next = { .step = step, .pos = pos, .slot = sw_exec_slot(c->ex),
				 .file = file, .nvme_groups = nvme_groups };
	snprintf(next.layout, sizeof(next.layout), "%s", layout);
	/* the durable part (fdatasyncs, commit.json) overlaps the next step: train_commit_async.c */
	return train_commit_async_start(c, fd, text, &next);
}

/* Removes commit.json (first: the manifest now holds a newer state) and the state files. */
void train_commit_drop(sw_train_ctx *c)
{
	const char *run = c->a->run;
	train_commit_join(c);
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

/* The summary's line on where the commits' time went. */
void train_commit_summary(const sw_train_ctx *c)
{
	const sw_train_commit_time *t = &c->cm_time;
	const sw_train_args *a = c->a;
	if (train_commit_ends(c) && c->have_cm && c->cm.step == c->last_step && c->last_step == a->steps)
		printf("train: --end-commit: the run ends with the commit of step %lld in %s%s; export "
		       "it with: spillway export --run %s --out DIR\n", (long long)c->cm.step, a->run,
		       c->commit_live ? " (its NVMe state stays in the --nvme directory until then)" : "",
		       a->run);
	if (!c->n_commits)
		return;
	double n = (double)c->n_commits, durable = t->nvme_sync_s + t->fsync_s;
	double other = c->commit_s - t->snapshot_s - t->write_s - t->hash_s - (t->sync ? durable : 0);
	printf("train: per commit: %.3f s between steps = snapshot %.3f s (memory-resident P32/m/v "
	       "copied out, checked finite) + write %.3f s + hash %.3f s (XXH3 while writing) + "
	       "other %.3f s%s; made durable %s: %.3f s = NVMe fdatasync %.3f s + fsync %.3f s "
	       "(state file, commit.json); the next steps' optimizer waited %.3f s for it\n",
	       c->commit_s / n, t->snapshot_s / n, t->write_s / n, t->hash_s / n, other / n,
	       t->sync ? " + the durable part" : "", t->sync ? "between steps (SW_COMMIT_SYNC)" :
	       "while the next step ran", durable / n, t->nvme_sync_s / n, t->fsync_s / n,
	       sw_exec_commit_waited(c->ex) / n);
}
