/* RUN/manifest.json: what a save commits (step, data position, the settings that decide the
 * result, XXH3 checksums of every saved file), how --resume reads and checks it. */
#include "offload/train_int.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* The token file's identity: its size and XXH3 of its first and last MiB (the header included). */
static void data_identity(const sw_data *d, char *out, size_t len)
{
	uint64_t span = d->size < (1u << 20) ? d->size : (1u << 20);
	uint64_t h = XXH3_64bits(d->map, span) ^ (XXH3_64bits(d->map + d->size - span, span) * 31);
	snprintf(out, len, "%llu bytes, xxh3 %016" PRIx64, (unsigned long long)d->size, h);
}

static void set_num(json_t *o, const char *key, double v)
{
	char b[40];
	snprintf(b, sizeof(b), "%.15g", v);     /* the shortest of these that reads back exactly */
	if (strtod(b, NULL) != v)
		snprintf(b, sizeof(b), "%.17g", v);
	json_object_set_new(o, key, json_string(b));
}

/* Every setting that decides the result, keyed by its option's name. Budgets, threads, the
 * placement and the I/O settings are not here: they may change on --resume. */
static json_t *settings_build(const sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	json_t *o = json_object();
	json_object_set_new(o, "data", json_string(c->data_id));
	set_num(o, "seq-len", (double)a->seq_len);
	set_num(o, "batch-tokens", (double)a->batch_tokens);
	set_num(o, "micro-batch-tokens", (double)(a->micro_rows * a->seq_len));
	set_num(o, "lr", a->sched.lr);
	set_num(o, "min-lr", a->sched.min_lr_rate * a->sched.lr);
	set_num(o, "warmup", (double)a->sched.warmup_steps);
	json_object_set_new(o, "schedule", json_string(a->schedule_name ? a->schedule_name : "cosine"));
	if (a->sched.kind == SW_LR_COSINE)   /* the cosine's length decides every step's lr */
		set_num(o, "steps", (double)a->sched.total_steps);
	set_num(o, "weight-decay", a->adam.weight_decay);
	set_num(o, "beta1", a->adam.beta1);
	set_num(o, "beta2", a->adam.beta2);
	set_num(o, "eps", a->adam.eps);
	set_num(o, "clip", a->clip);
	set_num(o, "seed", (double)a->seed);
	json_object_set_new(o, "dtype", json_string(a->fp32 ? "fp32" : "bf16"));
	return o;
}

int train_rundir_settings(sw_train_ctx *c)
{
	data_identity(&c->data, c->data_id, sizeof(c->data_id));
	c->settings = settings_build(c);
	if (!c->a->resume)
		return 0;
	if (!c->rp.settings) {
		sw_warn("train: --resume: %s/manifest.json records no settings (an older spillway); "
			"they are not checked", c->a->run);
		return 0;
	}
	const char *key;
	json_t *now;
	json_object_foreach(c->settings, key, now) {
		json_t *then = json_object_get(c->rp.settings, key);
		const char *t = json_is_string(then) ? json_string_value(then) : "(not recorded)";
		if (!strcmp(t, json_string_value(now)))
			continue;
		if (!strcmp(key, "data"))
			sw_error("train: --resume: --data %s is not the token file the run started with "
				 "(now %s, then %s); resume with the run's data or start a new run",
				 c->a->data, json_string_value(now), t);
		else
			sw_error("train: --resume: --%s %s differs from the run's %s (%s/%s); resume "
				 "with the run's setting, or start a new run in another directory", key,
				 json_string_value(now), t, c->a->run,
				 c->from_commit ? "commit.json" : "manifest.json");
		return -EINVAL;
	}
	return 0;
}

static int manifest_fields(sw_train_ctx *c, json_t *root, const char *man)
{
	const char *run = c->a->run;
	json_t *st = json_object_get(root, "step"), *w = json_object_get(root, "weights"),
	       *o = json_object_get(root, "optim"), *de = json_object_get(root, "data_epoch"),
	       *di = json_object_get(root, "data_index");
	int ok = json_is_integer(st) && json_integer_value(st) > 0 && json_is_string(w) &&
		 json_is_integer(de) && json_integer_value(de) >= 0 && json_is_integer(di) &&
		 json_integer_value(di) >= 0 && (!o || json_is_string(o));
	if (ok && (strchr(json_string_value(w), '/') || (o && strchr(json_string_value(o), '/'))))
		ok = 0;
	if (!ok) {
		sw_error("train: --resume: %s lacks step, weights, optim or the data position, or has "
			 "the wrong types; the run directory is damaged", man);
		return -EINVAL;
	}
	if (!o) {
		sw_error("train: --resume: %s is from a version of spillway that saved no optimizer "
			 "state; start a new run from %s/%s", man, run, json_string_value(w));
		return -EINVAL;
	}
	sw_train_resume *r = &c->rp;
	r->step = json_integer_value(st);
	json_t *sk = json_object_get(root, "skipped_steps");
	r->skipped = json_is_integer(sk) && json_integer_value(sk) >= 0 &&
		     json_integer_value(sk) < r->step ? json_integer_value(sk) : 0;
	r->pos.epoch = (uint64_t)json_integer_value(de);
	r->pos.index = (uint64_t)json_integer_value(di);
	snprintf(r->weights, sizeof(r->weights), "%s/%s", run, json_string_value(w));
	snprintf(r->m, sizeof(r->m), "%s/%s/m", run, json_string_value(o));
	snprintf(r->v, sizeof(r->v), "%s/%s/v", run, json_string_value(o));
	snprintf(r->tag, sizeof(r->tag), "%08lld", (long long)r->step);
	r->files = json_incref(json_object_get(root, "files"));
	r->settings = json_incref(json_object_get(root, "settings"));
	c->have_rp = 1;
	return 0;
}

/* XXH3-64 of the manifest's content less its own checksum: its compact dump with sorted keys,
 * the same bytes for the object written and the one read back. 0 on out of memory. */
uint64_t train_json_sum(json_t *root, const char *skip)
{
	json_t *copy = json_copy(root);
	if (!copy)
		return 0;
	json_object_del(copy, skip);
	char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(copy);
	uint64_t h = s ? XXH3_64bits(s, strlen(s)) : 0;
	free(s);
	return h;
}

/* A manifest of version 4 or later carries the XXH3 of its own content: a changed byte anywhere
 * in it (a step, a data position, a setting, a file's checksum) is named as the manifest's. */
static int manifest_check_sum(json_t *root, const char *man)
{
	json_t *ver = json_object_get(root, "version"), *rec = json_object_get(root, "manifest_xxh3");
	if (!rec && json_is_integer(ver) && json_integer_value(ver) <= 3)
		return 0;   /* written before manifests checked themselves */
	char now[20];
	snprintf(now, sizeof(now), "%016" PRIx64, train_json_sum(root, "manifest_xxh3"));
	if (json_is_string(rec) && !strcmp(json_string_value(rec), now))
		return 0;
	if (json_is_string(rec))
		sw_error("train: --resume: %s: checksum mismatch (recorded %s, content %s): the manifest "
			 "changed after it was saved; restore it or start a new run", man,
			 json_string_value(rec), now);
	else
		sw_error("train: --resume: %s lacks its checksum (manifest_xxh3) or its version; the run "
			 "directory is damaged: restore it or start a new run", man);
	return -EIO;
}

int train_rundir_read_manifest(sw_train_ctx *c)
{
	const char *run = c->a->run;
	char man[SW_TRAIN_PATH + 32];
	snprintf(man, sizeof(man), "%s/manifest.json", run);
	json_error_t je;
	json_t *root = json_load_file(man, 0, &je);
	if (!root) {
		if (access(man, F_OK))
			sw_error("train: --resume: %s does not exist: nothing was saved in %s yet; "
				 "start it without --resume", man, run);
		else
			sw_error("train: --resume: %s: %s (line %d); the run directory is damaged", man,
				 je.text, je.line);
		return -EINVAL;
	}
	int rc = manifest_check_sum(root, man);
	rc = rc ? rc : manifest_fields(c, root, man);
	json_decref(root);
	return rc;
}

/* Checks one saved file against its recorded size and checksums. */
static int verify_file(const char *run, const char *name, json_t *rec, const char *who)
{
	char p[SW_TRAIN_PATH + 300];
	snprintf(p, sizeof(p), "%s/%s", run, name);
	json_t *sums = NULL, *want = json_object_get(rec, "xxh3");
	uint64_t size = 0;
	int rc = train_xxh3_file(p, &sums, &size);
	if (rc) {
		sw_error("%s: cannot read %s (%s); the run directory is damaged", who, p, strerror(-rc));
		json_decref(sums);
		return rc;
	}
	json_int_t wsize = json_integer_value(json_object_get(rec, "size"));
	if ((json_int_t)size != wsize) {
		sw_error("%s: %s is %llu bytes, the save wrote %lld; the file is damaged", who, p, (unsigned long long)size, (long long)wsize);
		json_decref(sums);
		return -EIO;
	}
	size_t i, n = json_array_size(sums);
	for (i = 0; i < n; i++)
		if (strcmp(json_string_value(json_array_get(sums, i)) ?: "",
			   json_string_value(json_array_get(want, i)) ?: "-"))
			break;
	json_decref(sums);
	if (i < n) {
		uint64_t lo = i * SW_TRAIN_SUM_PIECE, hi = lo + SW_TRAIN_SUM_PIECE;
		sw_error("%s: %s: checksum mismatch at offset %llu (bytes %llu..%llu); the file changed "
			 "after it was saved: restore it or start a new run", who, p,
			 (unsigned long long)lo, (unsigned long long)lo,
			 (unsigned long long)(hi < size ? hi : size));
		return -EIO;
	}
	return 0;
}

int train_rundir_verify(sw_train_ctx *c)
{
	json_t *files = c->from_commit ? c->cm_files : c->rp.files;
	if (!files) {
		sw_warn("train: --resume: %s/manifest.json records no checksums (an older spillway); "
			"the saved state is not verified", c->a->run);
		return 0;
	}
	const char *name;
	json_t *rec;
	json_object_foreach(files, name, rec) {
		int rc = verify_file(c->a->run, name, rec, "train: --resume");
		if (rc)
			return rc;
	}
	return 0;
}

int sw_train_manifest_check(const char *run, const char *weights)
{
	char man[SW_TRAIN_PATH + 32], pre[SW_TRAIN_PATH];
	snprintf(man, sizeof(man), "%s/manifest.json", run);
	json_t *root = json_load_file(man, 0, NULL);
	if (!root)
		return -EINVAL;   /* the caller read it a moment ago: said there */
	json_t *ver = json_object_get(root, "version"), *rec = json_object_get(root, "manifest_xxh3");
	int rc = 0;
	char now[20];
	snprintf(now, sizeof(now), "%016" PRIx64, train_json_sum(root, "manifest_xxh3"));
	if ((rec || !json_is_integer(ver) || json_integer_value(ver) > 3) &&
	    !(json_is_string(rec) && !strcmp(json_string_value(rec), now))) {
		sw_error("export: %s: checksum mismatch (recorded %s, content %s): the manifest changed "
			 "after it was saved; restore it", man, json_is_string(rec) ? json_string_value(rec) :
			 "none", now);
		rc = -EIO;
	}
	snprintf(pre, sizeof(pre), "%s/", weights);
	const char *name;
	json_t *f;
	json_object_foreach(json_object_get(root, "files"), name, f) {
		if (rc || strncmp(name, pre, strlen(pre)))
			continue;
		rc = verify_file(run, name, f, "export");
	}
	json_decref(root);
	return rc;
}

/* Adds "SUB/file": {size, xxh3} for every file of RUN/SUB to files. */
static int sum_dir(const char *run, const char *sub, json_t *files)
{
	char d[SW_TRAIN_PATH + 64], p[SW_TRAIN_PATH + 400], name[400];
	snprintf(d, sizeof(d), "%s/%s", run, sub);
	DIR *dir = opendir(d);
	if (!dir)
		return -errno;
	struct dirent *e;
	int rc = 0;
	while (!rc && (e = readdir(dir))) {
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
		if (stat(p, &st) || !S_ISREG(st.st_mode))
			continue;
		json_t *sums;
		uint64_t size;
		if ((rc = train_xxh3_file(p, &sums, &size)))
			break;
		snprintf(name, sizeof(name), "%s/%s", sub, e->d_name);
		json_object_set_new(files, name, json_pack("{s:I,s:o}", "size", (json_int_t)size,
							   "xxh3", sums));
	}
	closedir(dir);
	return rc;
}

int train_json_write(const char *run, const char *name, json_t *root)
{
	char tmp[SW_TRAIN_PATH + 80], man[SW_TRAIN_PATH + 64];
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", run, name);
	snprintf(man, sizeof(man), "%s/%s", run, name);
	FILE *f = fopen(tmp, "w");
	int rc = f ? 0 : -errno;
	if (f && (json_dumpf(root, f, JSON_INDENT(1)) || fputc('\n', f) == EOF || fflush(f) ||
		  fsync(fileno(f))))
		rc = -(errno ? errno : EIO);
	if (f)
		fclose(f);
	if (!rc && rename(tmp, man))
		rc = -errno;
	if (rc)
		sw_error("train: cannot write %s (%s); check free space in %s", man, strerror(-rc), run);
	else
		train_fsync_dir(run);
	return rc;
}

int train_rundir_commit(sw_train_ctx *c, int64_t step, const char *tag)
{
	const char *run = c->a->run;
	char w[80], o[80], om[96], ov[96];
	snprintf(w, sizeof(w), "weights-%s", tag);
	snprintf(o, sizeof(o), "optim-%s", tag);
	snprintf(om, sizeof(om), "%s/m", o);
	snprintf(ov, sizeof(ov), "%s/v", o);
	json_t *files = json_object();
	int rc = sum_dir(run, w, files);
	rc = rc ? rc : sum_dir(run, om, files);
	rc = rc ? rc : sum_dir(run, ov, files);
	if (rc) {
		sw_error("train: cannot read back the save in %s (%s)", run, strerror(-rc));
		json_decref(files);
		return rc;
	}
	sw_data_pos pos = sw_data_get_pos(&c->data);
	json_t *root = json_pack("{s:i,s:I,s:s,s:s,s:I,s:I,s:O,s:I,s:o}", "version", 4, "step",
				 (json_int_t)step, "weights", w, "optim", o, "data_epoch",
				 (json_int_t)pos.epoch, "data_index", (json_int_t)pos.index,
				 "settings", c->settings, "checksum_piece",
				 (json_int_t)SW_TRAIN_SUM_PIECE, "files", files);
	char sum[20];
	if (root && c->skipped_total)
		json_object_set_new(root, "skipped_steps", json_integer((json_int_t)c->skipped_total));
	if (root) {
		snprintf(sum, sizeof(sum), "%016" PRIx64, train_json_sum(root, "manifest_xxh3"));
		json_object_set_new(root, "manifest_xxh3", json_string(sum));
	}
	rc = root ? train_json_write(run, "manifest.json", root) : -ENOMEM;
	json_decref(root);
	return rc;
}
