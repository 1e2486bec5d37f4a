/* spillway export --run DIR --out DIR [--fp32] [--tokenizer DIR]: the trained weights of a run as
 * a Hugging Face directory (bf16 by default, the fp32 masters with --fp32), with the model's
 * tokenizer files copied beside them.  Reads the weights the manifest names (RUN/manifest.json,
 * written atomically by `spillway train`), so a run interrupted mid-save still exports its last
 * committed step.  Checks the free space first; writes everything into a staging directory next
 * to --out and renames it into place, so --out appears complete or not at all. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/hfmodel.h"
#include "core/log.h"
#include "offload/lora_train.h"
#include "offload/train.h"
#include "offload/export_commit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char summary[] = "write a run's trained weights (and the tokenizer files) as a Hugging Face directory";

/* The files transformers' AutoTokenizer (and generation) read from a model directory. */
static const char *const tok_files[] = {
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
	"vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
	"generation_config.json",
};
#define N_TOK_FILES (sizeof(tok_files) / sizeof(tok_files[0]))

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copies SRC to DST (new file), fsynced.  0 or -errno after one error line. */
static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
	if (in < 0) {
		rc = -errno;
		sw_error("export: %s: cannot open (%s)", src, strerror(-rc));
		return rc;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0)
		rc = -errno;
	char buf[1 << 16];
	ssize_t n;
	while (!rc && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		for (ssize_t off = 0; off < n && !rc;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno != EINTR)
				rc = -errno;
			else if (w > 0)
				off += w;
		}
	}
	if (!rc && fsync(out))
		rc = -errno;
	if (out >= 0 && close(out) && !rc)
		rc = -errno;
	close(in);
	if (rc)
		sw_error("export: cannot copy %s to %s (%s); check free space", src, dst, strerror(-rc));
	return rc;
}

/* The tokenizer files present in DIR (bitmask over tok_files) and their total size; -EINVAL after
 * one line when DIR has neither tokenizer.json nor tokenizer.model. */
static int find_tok_files(const char *dir, unsigned *mask, uint64_t *bytes)
{
	*mask = 0;
	*bytes = 0;
	for (size_t i = 0; i < N_TOK_FILES; i++) {
		char p[4096];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, tok_files[i]);
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			*mask |= 1u << i;
			*bytes += (uint64_t)st.st_size;
		}
	}
	if (!(*mask & ((1u << 0) | (1u << 3)))) {
		sw_error("export: --tokenizer %s: no tokenizer.json or tokenizer.model there; give the model "
			 "directory the run started from", dir);
		return -EINVAL;
	}
	return 0;
}

/* Free bytes for unprivileged writers on the filesystem that will hold PATH (its parent). */
static int free_bytes(const char *path, uint64_t *avail)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	struct statvfs vf;
	if (statvfs(dirname(tmp), &vf)) {
		int e = errno;
		sw_error("export: %s: cannot check free space (%s); does the parent directory exist?", path,
			 strerror(e));
		return -e;
	}
	*avail = (uint64_t)vf.f_bavail * vf.f_frsize;
	return 0;
}

/* ec: the weights come from a commit (offload/export_commit.c), else from hm's files; mg: a
 * LoRA run's --merge (the adapters added to the base's weights) */
static int write_weights(sw_hf_model *hm, const char *dir, sw_dtype dt, sw_export_commit *ec,
			 sw_lora_merge *mg)
{
	sw_table *tt = &hm->tt;
	sw_st_writer *w;
	int rc = sw_hf_write_begin(&w, dir, tt, dt, 0);
	if (rc)
		return rc;
	float *buf = malloc((size_t)tt->max_group_numel * 4);
	if (!buf) {
		sw_st_writer_abort(w);
		return -ENOMEM;
	}
	for (int g = 0; g < tt->ngroups && !rc; g++) {
		if (ec)
			rc = sw_export_commit_group(ec, g, buf);
		else
			sw_hf_read_group(hm, g, buf, SW_DTYPE_F32);
		if (!rc && mg)   /* --merge of a LoRA run: W + (alpha / r) B A */
			sw_lora_merge_group(mg, tt, g, buf);
		rc = rc ? rc : sw_st_writer_write(w, buf, SW_DTYPE_F32, tt->g[g].numel);
	}
	free(buf);
	if (rc) {
		sw_st_writer_abort(w);
		return rc;
	}
	sw_config cfg = tt->cfg;
	cfg.dtype = dt;
	return sw_st_writer_finish(w, &cfg);
}

static void fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The run's last full save: its weights directory into path (RUN/weights-N) and the manifest's
 * model directory into model_dir, after the manifest's and the save's checksums. Says one line
 * and returns 1 when there is none or it is damaged. */
static int export_source(const char *run, char *path, size_t plen, char *model_dir, size_t mlen)
{
	json_error_t jerr;
	snprintf(path, plen, "%s/manifest.json", run);
	json_t *man = json_load_file(path, 0, &jerr);
	if (!man) {
		char cm[4200];
		snprintf(cm, sizeof(cm), "%s/commit.json", run);
		if (!access(path, F_OK) || access(cm, F_OK))
			sw_error("export: %s: %s; give the --run directory of a 'spillway train' run that "
				 "finished at least one save", path, jerr.text);
		else
			sw_error("export: %s holds commits but no full save yet (no manifest.json); finish the "
				 "run with 'spillway train ... --resume', or take a snapshot with --save-every", run);
		return 1;
	}
	const char *wd = json_string_value(json_object_get(man, "weights"));
	const char *md = json_string_value(json_object_get(man, "model"));
	if (!wd || strchr(wd, '/')) {
		sw_error("export: %s: no valid \"weights\" entry; the run directory is damaged", path);
		json_decref(man);
		return 1;
	}
	if (md)
		snprintf(model_dir, mlen, "%s", md);
	int rc = sw_train_manifest_check(run, wd);
	json_t *cmt = NULL;
	char cpath[4200];
	snprintf(cpath, sizeof(cpath), "%s/commit.json", run);
	if (!rc && (cmt = json_load_file(cpath, 0, NULL)))
		sw_warn("export: %s holds a commit at step %lld, newer than the save of step %lld that "
			"is exported; finish the run with 'spillway train ... --resume' to export the newer "
			"state", run, (long long)json_integer_value(json_object_get(cmt, "step")),
			(long long)json_integer_value(json_object_get(man, "step")));
	snprintf(path, plen, "%s/%s", run, wd);
	json_decref(cmt);
	json_decref(man);
	return rc ? 1 : 0;
}

/* Free space for the export in out's file system: the tensors in dt, the tokenizer files,
 * and a generous allowance for headers, config.json, index and block rounding. */
static int export_space(const char *out, const sw_hf_model *hm, sw_dtype dt, uint64_t tbytes)
{
	uint64_t need = (uint64_t)hm->tt.total * (uint64_t)sw_dtype_size(dt) + tbytes + (1u << 20) +
			(uint64_t)hm->tt.ngroups * 64 * 4096, avail = 0;
	int rc = free_bytes(out, &avail);
	if (!rc && need > avail) {
		char a[32], b[32], c[32];
		sw_error("export: %s needs %s but only %s is free there (short by %s); free space or choose "
			 "another --out", out, sw_fmt_size(need, a, sizeof(a)), sw_fmt_size(avail, b, sizeof(b)),
			 sw_fmt_size(need - avail, c, sizeof(c)));
		rc = -ENOSPC;
	}
	return rc;
}

/* Writes the weights and the tokenizer files into a staging directory beside out, then renames
 * it to out: out appears whole or not at all. *copied: tokenizer files copied. */
static int export_write(sw_hf_model *hm, const char *out, sw_dtype dt, const char *tok,
			unsigned tmask, int *copied, sw_export_commit *ec, sw_lora_merge *mg)
{
	char stage[4200], inner[4300];
	snprintf(stage, sizeof(stage), "%s.export-XXXXXX", out);
	if (!mkdtemp(stage)) {
		int rc = -errno;
		sw_error("export: cannot create %s (%s); check that the parent directory exists and is "
			 "writable", stage, strerror(-rc));
		return rc;
	}
	snprintf(inner, sizeof(inner), "%s/out", stage);
	int rc = write_weights(hm, inner, dt, ec, mg);
	*copied = 0;
	for (size_t i = 0; !rc && i < N_TOK_FILES; i++) {
		if (!(tmask & (1u << i)))
			continue;
		char src[4300], dst[4400];
		snprintf(src, sizeof(src), "%s/%s", tok, tok_files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", inner, tok_files[i]);
		rc = copy_file(src, dst);
		(*copied)++;
	}
	if (!rc) {
		fsync_dir(inner);
		if (rename(inner, out)) {
			rc = -errno;
			sw_error("export: cannot move %s to %s (%s); remove %s and retry", inner, out, strerror(-rc),
				 out);
		}
	}
	rm_tree(stage);   /* empty after the rename; everything on error */
	if (!rc) {
		char parent[4096];
		snprintf(parent, sizeof(parent), "%s", out);
		fsync_dir(dirname(parent));
	}
	return rc;
}

int cmd_export(int argc, char **argv)
{
	const char *run = NULL, *out = NULL, *tok = NULL;
	int fp32 = 0, merge = 0;
	const sw_opt opts[] = {
		{ "run", SW_OPT_STR, &run, "DIR", "run directory of 'spillway train --run'", 1 },
		{ "out", SW_OPT_STR, &out, "DIR", "output directory (must not exist)", 1 },
		{ "fp32", SW_OPT_FLAG, &fp32, NULL, "write the fp32 master weights (default bf16)", 0 },
		{ "merge", SW_OPT_FLAG, &merge, NULL, "LoRA run: the base with the adapters merged (W + alpha/r B A), in the base's dtype, as a Hugging Face directory", 0 },
		{ "tokenizer", SW_OPT_STR, &tok, "DIR",
		  "copy the tokenizer files from this model directory (default: the manifest's \"model\")", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("export", summary, opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	char path[4096], model_dir[4096] = "", what[4200];
	snprintf(path, sizeof(path), "%s/%s", run, SW_LORA_MANIFEST);
	sw_lora_merge *mg = NULL;
	int from_commit = 0;
	if (!access(path, F_OK)) {
		struct stat ls;
		if (!lstat(out, &ls)) {
			sw_error("export: %s already exists; choose a new --out directory", out);
			return 1;
		}
		if (!merge)
			return sw_lora_export(run, out);
		if (sw_lora_merge_open(run, &mg, model_dir, sizeof(model_dir))) {
			sw_lora_merge_close(mg);
			return 1;
		}
		snprintf(path, sizeof(path), "%s", model_dir);   /* the frozen base's weights */
		snprintf(what, sizeof(what), "%s + the LoRA adapters of %s", path, run);
	} else if (merge) {
		sw_error("export: --merge is for LoRA runs; %s is a full fine-tuning run (export writes "
			 "its weights without it)", run);
		return 2;
	} else {
		/* the newest state of the run: a commit (read where it lies) or the last full save */
		from_commit = sw_export_commit_newer(run);
		if (from_commit ? sw_export_commit_source(run, path, sizeof(path), model_dir,
							  sizeof(model_dir), what, sizeof(what))
				: export_source(run, path, sizeof(path), model_dir, sizeof(model_dir)))
			return 1;
		if (!from_commit)
			snprintf(what, sizeof(what), "%s", path);
	}
	if (!tok && model_dir[0])
		tok = model_dir;
	struct stat st;
	if (lstat(out, &st) == 0) {
		sw_error("export: %s already exists; choose a new --out directory", out);
		return 1;
	}
	unsigned tmask = 0;
	uint64_t tbytes = 0;
	if (tok && find_tok_files(tok, &tmask, &tbytes))
		return 1;
	sw_hf_model hm;
	if (sw_hf_open(&hm, path)) {
		sw_lora_merge_close(mg);
		return 1;
	}
	if (mg && sw_lora_merge_bind(mg, &hm.tt.cfg)) {
		sw_lora_merge_close(mg);
		sw_hf_close(&hm);
		return 1;
	}
	/* a merged LoRA run keeps the base's dtype */
	sw_dtype dt = fp32 ? SW_DTYPE_F32 : mg ? hm.cfg.dtype : SW_DTYPE_BF16;
	int copied = 0;
	sw_export_commit *ec = NULL;
	rc = export_space(out, &hm, dt, tbytes);
	if (!rc && from_commit)
		rc = sw_export_commit_open(&ec, run, &hm.tt);
	if (!rc)
		rc = export_write(&hm, out, dt, tok, tmask, &copied, ec, mg);
	sw_export_commit_close(ec);
	if (!rc) {
		printf("export: %s (%lld parameters, %s) -> %s", what, (long long)hm.tt.total,
		       sw_dtype_name(dt), out);
		if (tok)
			printf(", %d tokenizer file%s from %s\n", copied, copied == 1 ? "" : "s", tok);
		else
			printf("; no tokenizer files copied (give --tokenizer MODEL_DIR)\n");
	}
	sw_hf_close(&hm);
	sw_lora_merge_close(mg);
	return rc ? 1 : 0;
}
