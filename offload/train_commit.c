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

#define COMMIT_MAGIC "SWCOMMIT"
#define COMMIT_VERSION 1

/* The state file: a header, the NVMe allocations in the executor's order (so a changed
 * placement can find the committed extents again), then per group its optimizer tier and
 * either the engine's checksums of the committed P32/m/v extents (on NVMe) or P32, m, v. */
typedef struct cm_head {
	char magic[8];
	uint32_t version;
	int32_t ngroups;
	int64_t step;
	int32_t slot, slots;
	uint64_t io_size, stripe, nalloc;
} cm_head;

typedef struct cm_alloc {
	uint64_t len;
	int32_t g, k, slot, pad;       /* g -1: not optimizer state */
} cm_alloc;

static const sw_state opt_state[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };

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
static int layout_hash(const sw_plan *p, char hex[20])
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
			rc = sw_exec_take(ex, g, opt_state[k], off, n, x);
			rc = rc ? rc : train_check_finite(c->tt, x, g, off, n, where, opt_state[k],
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
	if (rc || (rc = layout_hash(&c->plan, layout)))
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

/* ---------------------------------------------------------------- reading -------------- */

int train_commit_read(sw_train_ctx *c)
{
	const char *run = c->a->run;
	char p[SW_TRAIN_PATH + 32];
	snprintf(p, sizeof(p), "%s/commit.json", run);
	if (access(p, F_OK))
		return 0;
	json_error_t je;
	json_t *root = json_load_file(p, 0, &je);
	if (!root) {
		sw_error("train: --resume: %s: %s (line %d); the run directory is damaged: restore it, "
			 "or remove it to resume from the last full save", p, je.text, je.line);
		return -EINVAL;
	}
	char now[20];
	snprintf(now, sizeof(now), "%016" PRIx64, train_json_sum(root, "commit_xxh3"));
	json_t *rec = json_object_get(root, "commit_xxh3");
	int rc = 0;
	if (!json_is_string(rec) || strcmp(json_string_value(rec), now)) {
		sw_error("train: --resume: %s: checksum mismatch (recorded %s, content %s): the commit "
			 "changed after it was written; restore it, or remove it to resume from the last "
			 "full save", p, json_is_string(rec) ? json_string_value(rec) : "none", now);
		rc = -EIO;
	}
	json_t *st = json_object_get(root, "step"), *sl = json_object_get(root, "slot"),
	       *de = json_object_get(root, "data_epoch"), *di = json_object_get(root, "data_index"),
	       *ng = json_object_get(root, "nvme_groups"), *lay = json_object_get(root, "layout"),
	       *name = json_object_get(root, "state");
	if (!rc && !(json_is_integer(st) && json_integer_value(st) > 0 && json_is_integer(sl) &&
		     json_integer_value(sl) >= 0 && json_integer_value(sl) <= 1 &&
		     json_is_integer(de) && json_is_integer(di) && json_is_integer(ng) &&
		     json_is_string(lay) && json_is_string(name) &&
		     (!strcmp(json_string_value(name), "commit-0.state") ||
		      !strcmp(json_string_value(name), "commit-1.state")))) {
		sw_error("train: --resume: %s lacks step, slot, the data position or its state file; "
			 "the run directory is damaged", p);
		rc = -EINVAL;
	}
	if (!rc) {
		sw_train_commit *m = &c->cm;
		m->step = json_integer_value(st);
		m->slot = (int)json_integer_value(sl);
		m->pos.epoch = (uint64_t)json_integer_value(de);
		m->pos.index = (uint64_t)json_integer_value(di);
		m->nvme_groups = (int)json_integer_value(ng);
		json_t *sk = json_object_get(root, "skipped_steps");
		m->skipped = json_is_integer(sk) && json_integer_value(sk) > 0 ? json_integer_value(sk) : 0;
		m->file = json_string_value(name)[7] - '0';
		snprintf(m->layout, sizeof(m->layout), "%s", json_string_value(lay));
		m->settings = json_incref(json_object_get(root, "settings"));
		m->nvme = json_incref(json_object_get(root, "nvme"));
		c->have_cm = 1;
		/* the state file's checksums stay in the object for train_commit_verify */
		json_t *files = json_object();
		json_object_set_new(files, json_string_value(name),
				    json_pack("{s:O,s:O}", "size", json_object_get(root, "state_size"),
					      "xxh3", json_object_get(root, "state_xxh3")));
		c->cm_files = files;
	}
	json_decref(root);
	return rc;
}

/* ---------------------------------------------------------------- the state file ------- */

typedef struct cm_file {
	FILE *f;
	char path[SW_TRAIN_PATH + 32];
	cm_head h;
	cm_alloc *al;
	int32_t *tier;                 /* per group: SW_TIER_NVME (checksums) or not (P32, m, v) */
	int64_t *at;                   /* per group: file offset of its record after the tier */
} cm_file;

static void cm_close(cm_file *s)
{
	if (s->f)
		fclose(s->f);
	free(s->al);
	free(s->tier);
	free(s->at);
	memset(s, 0, sizeof(*s));
}

static int get(FILE *f, void *x, size_t n) { return fread(x, 1, n, f) == n ? 0 : -EIO; }

/* Opens the commit's state file and indexes its groups. Its bytes were checked against
 * commit.json (train_rundir_verify), so a parse error means another model or version. */
static int cm_open(sw_train_ctx *c, cm_file *s)
{
	const sw_table *tt = c->tt;
	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s/commit-%d.state", c->a->run, c->cm.file);
	s->f = fopen(s->path, "rb");
	int rc = s->f ? get(s->f, &s->h, sizeof(s->h)) : -errno;
	if (!rc && (memcmp(s->h.magic, COMMIT_MAGIC, 8) || s->h.version != COMMIT_VERSION ||
		    s->h.ngroups != tt->ngroups || s->h.nalloc > (1u << 28) ||
		    s->h.step != c->cm.step || s->h.slot != c->cm.slot || !s->h.stripe))
		rc = -EPROTO;
	s->al = rc ? NULL : malloc(s->h.nalloc * sizeof(*s->al) + 1);
	s->tier = calloc((size_t)tt->ngroups, sizeof(*s->tier));
	s->at = calloc((size_t)tt->ngroups, sizeof(*s->at));
	if (!rc && (!s->al || !s->tier || !s->at))
		rc = -ENOMEM;
	rc = rc ? rc : get(s->f, s->al, s->h.nalloc * sizeof(*s->al));
	for (int g = 0; g < tt->ngroups && !rc; g++) {
		if ((rc = get(s->f, &s->tier[g], sizeof(s->tier[g]))))
			break;
		s->at[g] = ftello(s->f);
		int64_t skip = 12 * tt->g[g].numel;
		if (s->tier[g] == SW_TIER_NVME) {
			skip = 0;
			for (int k = 0; k < 3 && !rc; k++) {
				uint32_t n;
				rc = get(s->f, &n, sizeof(n));
				rc = rc ? rc : fseeko(s->f, (off_t)n * 8 + ((off_t)n + 7) / 8 * 8, SEEK_CUR) ? -EIO : 0;
			}
		}
		if (!rc && skip && fseeko(s->f, skip, SEEK_CUR))
			rc = -EIO;
	}
	if (rc) {
		sw_error("train: --resume: %s is not a commit of this model by this spillway (%s); "
			 "remove RUN/commit.json to resume from the last full save, or start a new run",
			 s->path, rc == -EPROTO ? "wrong header" : strerror(-rc));
		cm_close(s);
	}
	return rc;
}

/* The checksums of state k of NVMe group g: malloc'd arrays of *n. */
static int cm_sums(cm_file *s, int g, int k, uint64_t **sums, uint8_t **wr, uint32_t *n)
{
	if (fseeko(s->f, s->at[g], SEEK_SET))
		return -EIO;
	int rc = 0;
	*sums = NULL;
	*wr = NULL;
	for (int i = 0; i <= k && !rc; i++) {
		free(*sums);
		free(*wr);
		rc = get(s->f, n, sizeof(*n));
		*sums = rc ? NULL : malloc((size_t)*n * 8 + 8);
		*wr = rc ? NULL : malloc(((size_t)*n + 7) / 8 * 8 + 8);
		rc = rc ? rc : !*sums || !*wr ? -ENOMEM : 0;
		rc = rc ? rc : get(s->f, *sums, (size_t)*n * 8);
		rc = rc ? rc : get(s->f, *wr, ((size_t)*n + 7) / 8 * 8);
	}
	return rc;
}

/* Elements [off, off + n) of state k of memory-resident group g. */
static int cm_floats(sw_train_ctx *c, cm_file *s, int g, int k, int64_t off, int64_t n, float *x)
{
	off_t at = s->at[g] + ((off_t)k * c->tt->g[g].numel + off) * 4;
	return fseeko(s->f, at, SEEK_SET) ? -EIO : get(s->f, x, (size_t)n * 4);
}

/* ---------------------------------------------------------------- resuming ------------- */

/* Restores the committed checksums of NVMe group g into the executor. 0 or -errno after a line. */
static int load_sums(sw_train_ctx *c, cm_file *s, int g)
{
	int rc = sw_exec_opt_on_nvme(c->ex, g) ? 0 : -EPROTO;   /* the layouts were compared */
	for (int k = 0; k < 3 && !rc; k++) {
		uint64_t *sums = NULL;
		uint8_t *wr = NULL;
		uint32_t n = 0;
		rc = cm_sums(s, g, k, &sums, &wr, &n);
		rc = rc ? rc : sw_exec_commit_restore(c->ex, s->h.slot, g, k, sums, wr, n);
		free(sums);
		free(wr);
	}
	if (rc)
		sw_error("train: --resume: %s: the checksums of group %d cannot be read or do not fit "
			 "this placement's extents (%s); remove RUN/commit.json to resume from the last "
			 "full save, or start a new run", s->path, g, strerror(-rc));
	return rc;
}

/* One chunk of group g's P32, m, v: from the committed NVMe slot (checked; P16 rebuilt from
 * P32) or from the state file into the executor. 0 or -errno after a line. */
static int load_chunk(sw_train_ctx *c, cm_file *s, int g, int64_t off, int64_t n, float *x)
{
	const char *fix = "the commit is damaged: remove RUN/commit.json to resume from the last full "
			  "save, or start a new run";
	int nv = s->tier[g] == SW_TIER_NVME, rc = 0;
	for (int k = 0; k < 3 && !rc; k++) {
		if (nv) {
			rc = sw_exec_commit_read(c->ex, g, k, off, n, x);
		} else if ((rc = cm_floats(c, s, g, k, off, n, x))) {
			sw_error("train: --resume: cannot read %s (%s); %s", s->path, strerror(-rc), fix);
			break;
		}
		rc = rc ? rc : train_check_finite(c->tt, x, g, off, n, nv ? "the committed NVMe slot" :
						  s->path, opt_state[k], fix);
		if (!rc && nv && k == 0)
			rc = sw_exec_commit_p16(c->ex, g, off, n, x);
		else if (!rc && !nv)
			rc = sw_exec_put(c->ex, g, opt_state[k], off, n, x);
	}
	return rc;
}

/* Resuming in place: the committed NVMe slots where they lie (every chunk read back against its
 * checksum, P16 rebuilt from P32), the memory-resident groups from the state file. */
int train_commit_load(sw_train_ctx *c)
{
	const sw_table *tt = c->tt;
	cm_file s;
	int rc = cm_open(c, &s);
	if (rc)
		return rc;
	sw_progress pr;
	sw_progress_begin(&pr, "train: resuming from the commit", (uint64_t)tt->total);
	float *x = sw_exec_xfer(c->ex);
	int64_t chunk = sw_exec_xfer_len(c->ex), done = 0;
	for (int g = 0; g < tt->ngroups && !rc; g++) {
		if (s.tier[g] == SW_TIER_NVME)
			rc = load_sums(c, &s, g);
		for (int64_t off = 0; off < tt->g[g].numel && !rc; off += chunk) {
			int64_t n = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
			rc = load_chunk(c, &s, g, off, n, x);
			done += n;
			sw_progress_update(&pr, (uint64_t)done);
		}
	}
	sw_progress_end(&pr);
	cm_close(&s);
	if (!rc)
		c->commit_live = c->cm.nvme_groups > 0;
	return rc;
}

/* The commit turned into a full save in the run directory (weights-N, optim-N/m, optim-N/v and
 * the manifest, as train_state_save writes them): NVMe groups are read through an I/O engine
 * opened on the committed layout (its allocations replayed, checksums restored). */
static int convert_one(sw_train_ctx *c, cm_file *s, sw_io *io, const sw_io_extent *ext,
		       int k, const char *dir)
{
	const sw_table *tt = c->tt;
	uint64_t stripe = s->h.stripe;
	train_rm_rf(dir);
	sw_st_writer *w;
	int rc = sw_hf_write_begin(&w, dir, tt, SW_DTYPE_F32, 0);
	if (rc)
		return rc;
	int64_t piece = (int64_t)(stripe / 4);
	float *x = aligned_alloc(4096, stripe);
	rc = x ? 0 : -ENOMEM;
	for (int g = 0; g < tt->ngroups && !rc; g++) {
		int64_t numel = tt->g[g].numel;
		for (int64_t off = 0; off < numel && !rc; off += piece) {
			int64_t n = numel - off < piece ? numel - off : piece;
			if (s->tier[g] == SW_TIER_NVME) {
				sw_io_extent e = ext[g * 3 + k];
				uint64_t b = (uint64_t)off * 4, len = e.len - b < stripe ? e.len - b : stripe;
				sw_io_req r;
				rc = sw_io_submit_read(io, &r, e, b, len, x);
				rc = rc ? rc : sw_io_wait(io, &r);
				if (rc)
					sw_error("train: --resume: %s of group %d, slot %d: %s; the commit is "
						 "damaged: remove RUN/commit.json to resume from the last full save",
						 k == 0 ? "P32" : k == 1 ? "Adam m" : "Adam v", g, s->h.slot,
						 sw_io_req_error(&r));
			} else if ((rc = cm_floats(c, s, g, k, off, n, x))) {
				sw_error("train: --resume: cannot read %s (%s); remove RUN/commit.json to "
					 "resume from the last full save", s->path, strerror(-rc));
			}
			rc = rc ? rc : train_check_finite(tt, x, g, off, n, "the commit", opt_state[k],
							  "remove RUN/commit.json to resume from the last full save");
			rc = rc ? rc : sw_st_writer_write(w, x, SW_DTYPE_F32, n);
		}
	}
	free(x);
	if (rc) {
		sw_st_writer_abort(w);
		return rc;
	}
	sw_config cfg = tt->cfg;
	cfg.dtype = SW_DTYPE_F32;
	return sw_st_writer_finish(w, &cfg);
}

/* The committed layout's engine: the same files, size and stripe; the allocations replayed. */
static int convert_open(sw_train_ctx *c, cm_file *s, sw_io **io, sw_io_extent *ext)
{
	const sw_train_args *a = c->a;
	char paths[SW_TRAIN_MAX_NVME * (SW_TRAIN_PATH + 1)] = "";
	for (size_t i = 0; i < json_array_size(c->cm.nvme); i++) {
		if (i)
			strcat(paths, ",");
		strncat(paths, json_string_value(json_array_get(c->cm.nvme, i)) ?: "", SW_TRAIN_PATH);
	}
	sw_io_config ic = { .paths = paths, .quiet = 1, .bs = a->io_bs, .qd = a->io_qd,
			    .threads = a->io_threads, .file_name = SW_TRAIN_NVME_FILE,
			    .size = s->h.io_size, .stripe = s->h.stripe };
	int rc = sw_io_open(&ic, io);
	for (uint64_t i = 0; i < s->h.nalloc && !rc; i++) {
		sw_io_extent e;
		if ((rc = sw_io_extent_alloc(*io, s->al[i].len, &e)))
			break;
		const cm_alloc *al = &s->al[i];
		if (al->g >= 0 && al->g < c->tt->ngroups && al->k >= 0 && al->k < 3 && al->slot == s->h.slot)
			ext[al->g * 3 + al->k] = e;
	}
	for (int g = 0; g < c->tt->ngroups && !rc; g++)
		for (int k = 0; s->tier[g] == SW_TIER_NVME && k < 3 && !rc; k++) {
			uint64_t *sums = NULL;
			uint8_t *wr = NULL;
			uint32_t n = 0;
			rc = cm_sums(s, g, k, &sums, &wr, &n);
			if (!rc && sw_io_extent_npieces(*io, ext[g * 3 + k]) != n)
				rc = -EPROTO;
			rc = rc ? rc : sw_io_extent_sums_set(*io, ext[g * 3 + k], sums, wr);
			free(sums);
			free(wr);
			if (rc)
				sw_error("train: --resume: %s: the checksums of group %d cannot be read or do "
					 "not fit the committed layout (%s); remove RUN/commit.json to resume "
					 "from the last full save", s->path, g, strerror(-rc));
		}
	return rc;
}

static int convert(sw_train_ctx *c)
{
	const char *run = c->a->run;
	cm_file s;
	int rc = cm_open(c, &s);
	if (rc)
		return rc;
	sw_info("train: --resume: the placement differs from the committed one: the commit of step "
		"%lld becomes a full save in %s first", (long long)c->cm.step, run);
	sw_io *io = NULL;
	sw_io_extent *ext = calloc((size_t)c->tt->ngroups * 3, sizeof(*ext));
	rc = ext ? convert_open(c, &s, &io, ext) : -ENOMEM;
	char tag[64], dir[SW_TRAIN_PATH + 80];
	snprintf(tag, sizeof(tag), "%08lld", (long long)c->cm.step);
	snprintf(dir, sizeof(dir), "%s/weights-%s", run, tag);
	rc = rc ? rc : convert_one(c, &s, io, ext, 0, dir);
	snprintf(dir, sizeof(dir), "%s/optim-%s", run, tag);
	if (!rc && mkdir(dir, 0755) && errno != EEXIST)
		rc = -errno;
	snprintf(dir, sizeof(dir), "%s/optim-%s/m", run, tag);
	rc = rc ? rc : convert_one(c, &s, io, ext, 1, dir);
	snprintf(dir, sizeof(dir), "%s/optim-%s/v", run, tag);
	rc = rc ? rc : convert_one(c, &s, io, ext, 2, dir);
	sw_io_close(io);
	free(ext);
	cm_close(&s);
	if (!rc) {
		sw_data_set_pos(&c->data, c->cm.pos);
		rc = train_rundir_commit(c, c->cm.step, tag);
	}
	if (rc) {
		if (strcmp(tag, c->rp.tag)) {
			snprintf(dir, sizeof(dir), "%s/weights-%s", run, tag);
			train_rm_rf(dir);
			snprintf(dir, sizeof(dir), "%s/optim-%s", run, tag);
			train_rm_rf(dir);
		}
		return rc;
	}
	/* the manifest names the new save: the previous save and the commit go */
	if (c->rp.tag[0] && strcmp(c->rp.tag, tag)) {
		snprintf(dir, sizeof(dir), "%s/weights-%s", run, c->rp.tag);
		train_rm_rf(dir);
		snprintf(dir, sizeof(dir), "%s/optim-%s", run, c->rp.tag);
		train_rm_rf(dir);
	}
	train_commit_drop(c);
	json_decref(c->rp.files);
	json_decref(c->rp.settings);
	c->rp.files = c->rp.settings = NULL;
	c->from_commit = 0;
	return train_rundir_read_manifest(c);
}

/* After planning and claiming the --nvme directories: resume in place when the committed NVMe
 * state lies where this plan puts it, else turn the commit into a full save first. */
int train_commit_prepare(sw_train_ctx *c)
{
	if (!c->from_commit)
		return 0;
	char layout[20];
	int rc = layout_hash(&c->plan, layout);
	if (rc || !c->cm.nvme_groups) {
		c->in_place = !rc;
		return rc;
	}
	/* the committed slots must be in the directories this run claimed, in their files */
	size_t n = json_array_size(c->cm.nvme);
	int same = (int)n == c->n_nvme;
	for (size_t i = 0; same && i < n; i++) {
		char abs[SW_TRAIN_PATH];
		same = realpath(c->nvme_dir[i], abs) && !strcmp(abs, json_string_value(json_array_get(c->cm.nvme, i)) ?: "");
	}
	if (!same) {
		sw_error("train: --resume: the commit of step %lld lies in %s in --nvme %s; resume "
			 "with that --nvme, or remove %s/commit.json to resume from the last full save",
			 (long long)c->cm.step, SW_TRAIN_NVME_FILE,
			 json_string_value(json_array_get(c->cm.nvme, 0)) ?: "?", c->a->run);
		return -EINVAL;
	}
	for (int i = 0; i < c->n_nvme; i++) {
		char f[SW_TRAIN_PATH + 32];
		snprintf(f, sizeof(f), "%s/%s", c->nvme_dir[i], SW_TRAIN_NVME_FILE);
		if (access(f, R_OK | W_OK)) {
			sw_error("train: --resume: the commit of step %lld lies in %s, which is gone (%s); "
				 "restore it, or remove %s/commit.json to resume from the last full save",
				 (long long)c->cm.step, f, strerror(errno), c->a->run);
			return -ENOENT;
		}
	}
	if (!strcmp(layout, c->cm.layout)) {
		c->in_place = 1;
		return 0;
	}
	return convert(c);
}
