/* Resuming from a commit (docs/runs.md "Commits"): RUN/commit.json read and checked, then the
 * state file and the committed NVMe slot read where they lie, every piece against its checksum;
 * or, when the placement changed, the commit turned into a full save first. */
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
						  s->path, COMMIT_OPT_STATE(k), fix);
		if (!rc && nv && k == 0)
			rc = sw_exec_commit_p16(c->ex, g, off, n, x);
		else if (!rc && !nv)
			rc = sw_exec_put(c->ex, g, COMMIT_OPT_STATE(k), off, n, x);
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
	sw_st_writer *w;
	int rc = train_state_file_begin(&w, dir, tt);
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
			rc = rc ? rc : train_check_finite(tt, x, g, off, n, "the commit", COMMIT_OPT_STATE(k),
							  "remove RUN/commit.json to resume from the last full save");
			rc = rc ? rc : sw_st_writer_write(w, x, SW_DTYPE_F32, n);
		}
	}
	free(x);
	return train_state_file_end(w, tt, rc);
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
	int rc = train_commit_layout_hash(&c->plan, layout);
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

/* ---------------------------------------------------------------- export --------------- */

/* A commit read for export (offload/export_commit.c): the state file and an I/O engine opened
 * on the committed layout (its checksums restored), the P32 of each group read from where it
 * lies, every piece checked. */
struct train_commit_src {
	sw_train_ctx *c;
	cm_file s;
	sw_io *io;
	sw_io_extent *ext;
};

int train_commit_src_open(sw_train_ctx *c, train_commit_src **out)
{
	train_commit_src *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->c = c;
	int rc = cm_open(c, &e->s);
	if (rc) {
		free(e);
		return rc;
	}
	e->ext = calloc((size_t)c->tt->ngroups * 3, sizeof(*e->ext));
	rc = !e->ext ? -ENOMEM : c->cm.nvme_groups ? convert_open(c, &e->s, &e->io, e->ext) : 0;
	if (rc) {
		train_commit_src_close(e);
		return rc;
	}
	*out = e;
	return 0;
}

int train_commit_src_p32(train_commit_src *e, int g, float *x)
{
	sw_train_ctx *c = e->c;
	cm_file *s = &e->s;
	int64_t numel = c->tt->g[g].numel;
	int rc = 0;
	if (s->tier[g] != SW_TIER_NVME) {
		if ((rc = cm_floats(c, s, g, 0, 0, numel, x)))
			sw_error("export: cannot read %s (%s); the commit is damaged", s->path, strerror(-rc));
		return rc;
	}
	/* piece by piece (a piece: one stripe unit), through an aligned bounce buffer */
	uint64_t stripe = s->h.stripe;
	sw_io_extent ext = e->ext[g * 3];
	char *b = aligned_alloc(4096, stripe);
	if (!b)
		return -ENOMEM;
	for (uint64_t at = 0; at < (uint64_t)numel * 4 && !rc; at += stripe) {
		uint64_t len = ext.len - at < stripe ? ext.len - at : stripe;
		uint64_t use = (uint64_t)numel * 4 - at < len ? (uint64_t)numel * 4 - at : len;
		sw_io_req r;
		rc = sw_io_submit_read(e->io, &r, ext, at, len, b);
		rc = rc ? rc : sw_io_wait(e->io, &r);
		if (rc)
			sw_error("export: P32 of group %d (from %s), slot %d: %s; the commit is damaged",
				 g, c->tt->t[c->tt->g[g].first].name, s->h.slot, sw_io_req_error(&r));
		else
			memcpy((char *)x + at, b, use);
	}
	free(b);
	return rc;
}

void train_commit_src_close(train_commit_src *e)
{
	if (!e)
		return;
	sw_io_close(e->io);
	free(e->ext);
	cm_close(&e->s);
	free(e);
}
