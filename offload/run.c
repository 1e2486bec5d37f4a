/* The training driver behind `spillway train`: load, plan, train, report, save, resume.
 *
 * Run directory (--run DIR), docs/formats.md has the details:
 *   metrics.jsonl          one JSON object per step (appended; a resumed run appends too)
 *   weights-NNNNNNNN/      fp32 master weights after step N (an HF directory)
 *   optim-NNNNNNNN/m, /v   AdamW's m and v after step N (HF directories, fp32, same names)
 *   manifest.json          {"step": N, "weights": ..., "optim": ..., data position}: written to
 *                          a temporary file, fsynced, renamed, directory fsynced; the previous
 *                          step's directories are removed only after the rename (two slots).
 * Everything moves one I/O chunk at a time through the executor's transfer buffer, and the
 * checkpoint's mapped pages are dropped as they are read, so loading and saving a model larger
 * than host memory stays inside --cpu-mem. */
#include "offload/exec.h"
#include "core/data.h"
#include "core/hfmodel.h"
#include "core/log.h"
#include "core/cli.h"
#include "core/model.h"
#include "core/report.h"

#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Device memory allowed for the kernels the CUDA runtime loads on first use (lazy loading,
 * the default since CUDA 12.2): our modules and the cuBLASLt kernels the GEMM shapes pick. The
 * context is measured before planning, these arrive during the first step; the run reports the
 * measured peak against --gpu-mem. */
#define SW_CUDA_LAZY_ALLOWANCE (128ull << 20)

uint64_t sw_exec_backend_reserve(uint64_t budget)
{
	/* cuda/backend_cuda.cu reserve_sizes(): cuBLASLt workspace + op scratch */
	uint64_t mib = 1ull << 20, ws = budget >= 1024 * mib ? 32 * mib : 4 * mib, s = budget / 16;
	s = s > 256 * mib ? 256 * mib : s < 4 * mib ? 4 * mib : s;
	return ws + s;
}

uint64_t sw_exec_dir_free(const char *dir)
{
	struct statvfs st;
	if (statvfs(dir, &st))
		return 0;
	return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

static int rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return unlink(path) ? -errno : 0;
	struct dirent *e;
	char buf[4096];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(buf, sizeof(buf), "%s/%s", path, e->d_name);
		rm_rf(buf);
	}
	closedir(d);
	return rmdir(path) ? -errno : 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* Writes one state (P32, m or v) of every group to HF directory DIR, chunk by chunk. */
static int save_one(sw_exec *ex, const sw_table *tt, const char *dir, sw_state state)
{
	rm_rf(dir);
	sw_st_writer *w;
	int rc = sw_hf_write_begin(&w, dir, tt, SW_DTYPE_F32, 0);
	if (rc)
		return rc;
	float *x = sw_exec_xfer(ex);
	int64_t chunk = sw_exec_xfer_len(ex);
	for (int g = 0; g < tt->ngroups && !rc; g++)
		for (int64_t off = 0; off < tt->g[g].numel && !rc; off += chunk) {
			int64_t c = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
			if (!(rc = sw_exec_take(ex, g, state, off, c, x)))
				rc = sw_st_writer_write(w, x, SW_DTYPE_F32, c);
		}
	if (rc) {
		sw_st_writer_abort(w);
		return rc;
	}
	sw_config cfg = tt->cfg;
	cfg.dtype = SW_DTYPE_F32;
	return sw_st_writer_finish(w, &cfg);
}

/* Writes RUN/weights-STEP (fp32 masters) and RUN/optim-STEP/{m,v}, then commits the manifest;
 * the previous step's directories go only after the commit. cur gets "NNNNNNNN". */
static int save_state(sw_exec *ex, const sw_table *tt, const char *run, int64_t step,
		      const sw_data *data, const char *prev, char *cur, int curlen)
{
	char dir[4200], tmp[4200], man[4200];
	snprintf(cur, (size_t)curlen, "%08lld", (long long)step);
	snprintf(dir, sizeof(dir), "%s/weights-%s", run, cur);
	int rc = save_one(ex, tt, dir, SW_STATE_P32);
	snprintf(dir, sizeof(dir), "%s/optim-%s", run, cur);
	rm_rf(dir);
	if (!rc && mkdir(dir, 0755)) {
		rc = -errno;
		sw_error("run %s: cannot create %s: %s", run, dir, strerror(errno));
	}
	snprintf(dir, sizeof(dir), "%s/optim-%s/m", run, cur);
	if (!rc)
		rc = save_one(ex, tt, dir, SW_STATE_M);
	snprintf(dir, sizeof(dir), "%s/optim-%s/v", run, cur);
	if (!rc)
		rc = save_one(ex, tt, dir, SW_STATE_V);
	if (rc)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s/manifest.json.tmp", run);
	snprintf(man, sizeof(man), "%s/manifest.json", run);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		rc = -errno;
		sw_error("run %s: cannot write %s: %s", run, tmp, strerror(errno));
		return rc;
	}
	fprintf(f, "{\"version\": 2, \"step\": %lld, \"weights\": \"weights-%s\", \"optim\": "
		"\"optim-%s\", \"data_epoch\": %llu, \"data_index\": %llu}\n", (long long)step, cur, cur,
		(unsigned long long)data->pos.epoch, (unsigned long long)data->pos.index);
	if (fflush(f) || fsync(fileno(f))) {
		rc = -errno;
		fclose(f);
		sw_error("run %s: cannot write %s: %s", run, tmp, strerror(-rc));
		return rc;
	}
	fclose(f);
	if (rename(tmp, man)) {
		rc = -errno;
		sw_error("run %s: cannot rename %s: %s", run, tmp, strerror(-rc));
		return rc;
	}
	fsync_dir(run);
	if (prev && prev[0] && strcmp(prev, cur)) {
		snprintf(dir, sizeof(dir), "%s/weights-%s", run, prev);
		rm_rf(dir);
		snprintf(dir, sizeof(dir), "%s/optim-%s", run, prev);
		rm_rf(dir);
	}
	return 0;
}

/* What --resume continues from: RUN/manifest.json. */
typedef struct resume_point {
	int64_t step;
	sw_data_pos pos;
	char weights[4200], m[4200], v[4200];
	char tag[64];
} resume_point;

static int read_manifest(const char *run, resume_point *r)
{
	char man[4200];
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
		json_decref(root);
		return -EINVAL;
	}
	if (!o) {
		sw_error("train: --resume: %s is from a version of spillway that saved no optimizer "
			 "state; start a new run from %s/%s", man, run, json_string_value(w));
		json_decref(root);
		return -EINVAL;
	}
	r->step = json_integer_value(st);
	r->pos.epoch = (uint64_t)json_integer_value(de);
	r->pos.index = (uint64_t)json_integer_value(di);
	snprintf(r->weights, sizeof(r->weights), "%s/%s", run, json_string_value(w));
	snprintf(r->m, sizeof(r->m), "%s/%s/m", run, json_string_value(o));
	snprintf(r->v, sizeof(r->v), "%s/%s/v", run, json_string_value(o));
	snprintf(r->tag, sizeof(r->tag), "%08lld", (long long)r->step);
	json_decref(root);
	return 0;
}

/* The saved state must be this model's: same tensors, same shapes, same groups. */
static int same_table(const sw_table *a, const sw_table *b, const char *what)
{
	int ok = a->n == b->n && a->ngroups == b->ngroups && a->total == b->total;
	for (int i = 0; ok && i < a->n; i++)
		ok = !strcmp(a->t[i].name, b->t[i].name) && a->t[i].numel == b->t[i].numel &&
		     a->t[i].group == b->t[i].group && a->t[i].offset == b->t[i].offset;
	if (!ok)
		sw_error("train: --resume: %s does not hold the tensors of --model (another model's "
			 "run?); resume with the model the run started from", what);
	return ok ? 0 : -EINVAL;
}

static const char *res_json[SW_TRACK_COUNT] = {
	"compute_s", "h2d_s", "d2h_s", "nvme_read_s", "nvme_write_s", "optim_s",
};

/* A "Vm...:" line of /proc/self/status in bytes (0 when unreadable). */
static uint64_t proc_status_bytes(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long kib = 0;
	size_t kl = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && sscanf(line + kl, "%llu", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kib * 1024;
}

int sw_exec_train(const sw_exec_args *a)
{
	double t_load = sw_now();
	/* the CUDA context first: it takes device memory out of --gpu-mem (measured here) and host
	 * memory that, like the program's code, is not spillway's to budget */
	int cpu = !strcmp(a->backend, "cpu") || (!strcmp(a->backend, "auto") && sw_cuda_device_count() <= 0);
	uint64_t ctx_bytes = 0;
	int ctx_exact = 0;
	if (!cpu && sw_cuda_context_bytes(0, &ctx_bytes, &ctx_exact)) {
		sw_error("train: no CUDA device is usable; use --backend cpu");
		return -ENODEV;
	}
	uint64_t rss_start = proc_status_bytes("VmRSS:");
	sw_hf_model hm;
	int rc = sw_hf_open(&hm, a->model);
	if (rc)
		return rc;
	const sw_table *tt = &hm.tt;
	sw_data data;
	memset(&data, 0, sizeof(data));
	sw_plan plan;
	memset(&plan, 0, sizeof(plan));
	sw_backend *be = NULL;
	sw_io *io = NULL;
	sw_exec *ex = NULL;
	FILE *metrics = NULL;
	int32_t *inputs = NULL, *targets = NULL;
	char prev[64] = "", cur[64] = "";
	resume_point rp;
	sw_hf_model rs[3];
	int nrs = 0;
	int data_open = 0;
	if ((rc = sw_data_open(&data, a->data, a->seq_len, a->seed)))
		goto out;
	data_open = 1;
	if (data.h.vocab > (uint32_t)tt->cfg.vocab) {
		sw_error("train: %s has token ids up to vocab %u but the model's vocab_size is %lld; "
			 "tokenize for this model", a->data, data.h.vocab, (long long)tt->cfg.vocab);
		rc = -EINVAL;
		goto out;
	}
	/* plan */
	sw_plan_input in;
	sw_plan_input_init(&in, tt);
	in.cpu_mem = a->cpu_mem;
	in.batch_tokens = a->batch_tokens;
	in.seq_len = a->seq_len;
	in.micro_rows = a->micro_rows;
	in.fp32 = a->fp32;
	in.prefetch = a->prefetch;
	in.passes = a->clip > 0 ? 2 : 1;     /* exact clipping runs the backward twice (exec.h) */
	in.slots = a->slots ? a->slots : 2;
	in.gpu_mem = a->gpu_mem ? a->gpu_mem : (1ull << 50);
	/* the CPU backend has no GEMM workspace */
	in.cublas_workspace = 0;   /* the CUDA backend takes its workspace from its reserve */
	if (a->chunk > 0)
		in.chunk_params = a->chunk;
	if (a->nvme) {
		char *dirs[SW_PLAN_MAX_NVME];
		uint64_t caps[SW_PLAN_MAX_NVME];
		int n = sw_io_paths_parse(a->nvme, dirs, caps, SW_PLAN_MAX_NVME);
		if (n < 0) {
			rc = -EINVAL;
			goto out;
		}
		for (int i = 0; i < n; i++) {
			snprintf(in.nvme[i].path, sizeof(in.nvme[i].path), "%s", dirs[i]);
			in.nvme[i].capacity = caps[i] ? caps[i] : sw_exec_dir_free(dirs[i]);
			free(dirs[i]);
		}
		in.n_nvme = n;
	}
	/* the rates only move the predicted bound (and so the placement's tie-breaks), never what
	 * fits; the NVMe defaults are per path, as in `spillway plan` */
	const sw_plan_rates *ra = &a->rates;
	int npaths = in.n_nvme ? in.n_nvme : 1;
	in.rates.gemm_tflops = ra->gemm_tflops > 0 ? ra->gemm_tflops : in.rates.gemm_tflops;
	in.rates.h2d_gbs = ra->h2d_gbs > 0 ? ra->h2d_gbs : in.rates.h2d_gbs;
	in.rates.d2h_gbs = ra->d2h_gbs > 0 ? ra->d2h_gbs : in.rates.d2h_gbs;
	in.rates.nvme_read_gbs = ra->nvme_read_gbs > 0 ? ra->nvme_read_gbs : in.rates.nvme_read_gbs * npaths;
	in.rates.nvme_write_gbs = ra->nvme_write_gbs > 0 ? ra->nvme_write_gbs : in.rates.nvme_write_gbs * npaths;
	in.rates.adam_params_per_s = ra->adam_params_per_s > 0 ? ra->adam_params_per_s : in.rates.adam_params_per_s;
	uint64_t arena = a->gpu_mem;
	if (a->gpu_mem && !cpu) {
		/* --gpu-mem bounds all the device memory this process takes: the CUDA context
		 * (measured), the kernels that load on first use (an allowance), then the backend's
		 * arena, which keeps its GEMM workspace and op scratch inside */
		uint64_t held = ctx_bytes + SW_CUDA_LAZY_ALLOWANCE, r = 0;
		if (held < a->gpu_mem) {
			arena = a->gpu_mem - held;
			r = sw_exec_backend_reserve(arena);
		}
		if (held + r >= a->gpu_mem) {
			sw_error("train: --gpu-mem %.0f MiB does not cover the CUDA context (%.0f MiB, "
				 "measured) + %.0f MiB for kernels + the backend's %.0f MiB reserve; raise it",
				 (double)a->gpu_mem / 1048576.0, (double)ctx_bytes / 1048576.0,
				 (double)SW_CUDA_LAZY_ALLOWANCE / 1048576.0, (double)r / 1048576.0);
			rc = -ENOSPC;
			goto out;
		}
		in.gpu_mem = arena - r;
		if (!a->quiet)
			printf("GPU budget: --gpu-mem %.0f MiB = CUDA context %.0f MiB (measured%s) + %.0f MiB "
			       "for kernels loaded on first use + backend arena %.0f MiB (%.0f MiB workspace "
			       "and scratch, %.0f MiB for the plan)\n", (double)a->gpu_mem / 1048576.0,
			       (double)ctx_bytes / 1048576.0, ctx_exact ? "" : "; NVML unusable, so it includes "
			       "other processes' use", (double)SW_CUDA_LAZY_ALLOWANCE / 1048576.0,
			       (double)arena / 1048576.0, (double)r / 1048576.0, (double)in.gpu_mem / 1048576.0);
	}
	if ((rc = sw_plan_build(&plan, &in))) {
		sw_error("train: %s", plan.why);
		goto out;
	}
	if (!a->gpu_mem) {
		/* no budget given: exactly what the all-resident plan needs */
		in.gpu_mem = plan.total[SW_TIER_GPU];
		arena = in.gpu_mem + (cpu ? 0 : sw_exec_backend_reserve(in.gpu_mem + (288ull << 20)));
		sw_plan_free(&plan);
		memset(&plan, 0, sizeof(plan));
		if ((rc = sw_plan_build(&plan, &in))) {
			sw_error("train: %s", plan.why);
			goto out;
		}
	}
	if (!a->quiet)
		sw_plan_print(&plan, stdout);
	/* backend: its arena is the GPU budget */
	sw_backend_opts bo = { .mem_budget = arena, .act = a->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16,
			       .threads = a->threads };
	if ((rc = sw_backend_create(a->backend, &bo, &be)))
		goto out;
	if (plan.total[SW_TIER_NVME]) {
		sw_io_config ic = { .paths = a->nvme, .quiet = 1, .bs = a->io_bs, .qd = a->io_qd,
				    .threads = a->io_threads };
		/* a chunk of P16 (and so of P32/m/v) must be whole checksum pieces: the stripe unit
		 * divides it */
		uint64_t chunk16 = ((uint64_t)sw_exec_chunk(&plan, tt) * (a->fp32 ? 4 : 2) + 4095) / 4096 * 4096;
		ic.stripe = a->io_stripe ? a->io_stripe : chunk16;
		if (chunk16 % ic.stripe) {
			char b1[32], b2[32];
			sw_error("train: --io-stripe %s does not divide one I/O chunk of P16 (%s); give a "
				 "divisor of it (a power of two from 4KiB up does) or change --chunk",
				 sw_fmt_size(ic.stripe, b1, 32), sw_fmt_size(chunk16, b2, 32));
			rc = -EINVAL;
			goto out;
		}
		/* room for the engine's stripe alignment (io_engine.c sw_io_extent_alloc): an extent of
		 * a stripe or more starts on a stripe boundary (less than a stripe skipped); a smaller
		 * one only skips to the next boundary when it would cross it (less than itself) */
		uint64_t ck = (plan.ckpt_item + 4095) / 4096 * 4096;
		ck = ck < ic.stripe ? ck : ic.stripe;
		/* + 4 KiB each: the engine rounds every extent up to whole 4 KiB blocks */
		ic.size = plan.total[SW_TIER_NVME] + (uint64_t)tt->ngroups * 7 * (ic.stripe + 4096) +
			  (uint64_t)tt->cfg.n_layers * (uint64_t)plan.n_micro * (ck + 4096);
		if ((rc = sw_io_open(&ic, &io)))
			goto out;
	}
	if (a->run && mkdir(a->run, 0755) && errno != EEXIST) {
		rc = -errno;
		sw_error("train: --run %s: %s", a->run, strerror(errno));
		goto out;
	}
	sw_exec_opts eo = { .adam = a->adam, .clip = a->clip, .cpu_threads = a->threads,
			    .trace = a->trace };
	if ((rc = sw_exec_create(be, tt, &plan, io, &eo, &ex)))
		goto out;
	/* the state: fp32 masters (P16 rounded from them) and zero m, v from the model; or P32, m
	 * and v from the run's last save with --resume. Chunk by chunk through the transfer buffer. */
	if (a->resume) {
		if ((rc = read_manifest(a->run, &rp)))
			goto out;
		if (rp.step >= a->steps) {
			sw_error("train: --resume: %s is already at step %lld; give --steps above it",
				 a->run, (long long)rp.step);
			rc = -EINVAL;
			goto out;
		}
		const char *dirs[3] = { rp.weights, rp.m, rp.v };
		for (int k = 0; k < 3; k++) {
			if ((rc = sw_hf_open(&rs[k], dirs[k])))
				goto out;
			nrs++;
			if ((rc = same_table(tt, &rs[k].tt, dirs[k])))
				goto out;
		}
		sw_data_set_pos(&data, rp.pos);
		snprintf(prev, sizeof(prev), "%s", rp.tag);
	}
	{
		sw_progress pr;
		sw_progress_begin(&pr, a->resume ? "train: loading the saved state" : "train: loading weights",
				  (uint64_t)tt->total);
		float *x = sw_exec_xfer(ex);
		int64_t chunk = sw_exec_xfer_len(ex), done = 0;
		static const sw_state states[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };
		for (int g = 0; g < tt->ngroups && !rc; g++)
			for (int64_t off = 0; off < tt->g[g].numel && !rc; off += chunk) {
				int64_t c = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
				for (int k = 0; k < 3 && !rc; k++) {
					const float *src = NULL;
					if (k == 0 || a->resume) {
						sw_hf_read_range(a->resume ? &rs[k] : &hm, g, off, c, x, SW_DTYPE_F32);
						src = x;
					}
					rc = sw_exec_put(ex, g, states[k], off, c, src);
				}
				done += c;
				sw_progress_update(&pr, (uint64_t)done);
			}
		sw_progress_end(&pr);
		if (rc)
			goto out;
	}
	if (a->run) {
		char mp[4200];
		snprintf(mp, sizeof(mp), "%s/metrics.jsonl", a->run);
		metrics = fopen(mp, "a");
		if (!metrics) {
			rc = -errno;
			sw_error("train: cannot open %s: %s", mp, strerror(errno));
			goto out;
		}
	}
	int64_t rows = a->batch_tokens / a->seq_len;
	inputs = malloc((size_t)rows * (size_t)a->seq_len * 4);
	targets = malloc((size_t)rows * (size_t)a->seq_len * 4);
	rc = -ENOMEM;
	if (!inputs || !targets)
		goto out;
	printf("train: %s, %lld parameters, backend %s (%s), %lld micro-batches of %lld tokens per "
	       "step, loaded in %.1f s; GPU arena %.1f MiB, pinned host %.1f MiB\n", tt->cfg.model_type,
	       (long long)tt->total, be->name, be->device_name, (long long)plan.n_micro,
	       (long long)plan.micro_tokens, sw_now() - t_load, (double)be->budget / 1048576.0,
	       (double)sw_exec_host_bytes(ex) / 1048576.0);
	fflush(stdout);
	/* HOOK report: RUN/run.json (command line, budgets, placement) and a first report.html */
	char *placement = NULL;
	size_t placement_len = 0;
	sw_report_run rr = { .backend = be->name, .device = be->device_name, .steps = a->steps,
			     .gpu_mem = a->gpu_mem, .cpu_mem = a->cpu_mem, .nvme = a->nvme,
			     .arena_budget = be->budget, .pinned = sw_exec_host_bytes(ex),
			     .load_s = sw_now() - t_load };
	if (a->run) {
		FILE *pf = open_memstream(&placement, &placement_len);
		if (pf) {
			sw_plan_print(&plan, pf);
			fclose(pf);
		}
		rr.placement = placement;
		sw_report_write_run(a->run, &rr);
	}
	double t_train = sw_now();
	uint64_t dev_peak = 0;
	if (!cpu)
		sw_cuda_mem_used(&dev_peak);
	int64_t first = a->resume ? rp.step + 1 : 1;
	sw_steps sp;
	sw_steps_begin(&sp, first, a->steps, 0);   /* HOOK progress */
	rc = 0;
	for (int64_t step = first; step <= a->steps; step++) {
		if ((rc = sw_data_next(&data, rows, inputs, targets)))
			break;
		double lr = sw_lr_at(&a->sched, step);
		sw_exec_stats st;
		if ((rc = sw_exec_step(ex, inputs, targets, step, lr, &st)))
			break;
		uint64_t dev_used;
		if (!cpu && !sw_cuda_mem_used(&dev_used) && dev_used > dev_peak)
			dev_peak = dev_used;
		double tps = (double)a->batch_tokens / st.step_s;
		/* model FLOPs (the planner's: recompute and the second clipping pass not counted) */
		double tflops = sw_plan_model_flops(&plan) / st.step_s / 1e12;
		double bound = plan.cost.step_s / st.step_s;
		if (a->losses_out)
			a->losses_out[step - 1] = st.s.loss;
		if (a->print_steps) {
			char line[512];
			snprintf(line, sizeof(line), "step %lld/%lld | loss %.4f | lr %.3e | grad norm %.4f%s | %.0f tok/s | "
			       "%.3f TFLOPS | %.2f s | busy: compute %.2f h2d %.2f d2h %.2f nvme r %.2f "
			       "w %.2f adam %.2f s | bound/measured %.2f", (long long)step,
			       (long long)a->steps, st.s.loss, lr, st.s.grad_norm,
			       st.s.skipped ? " (non-finite: step skipped)" : "", tps, tflops, st.step_s,
			       st.busy[0], st.busy[1], st.busy[2], st.busy[3], st.busy[4], st.busy[5], bound);
			sw_steps_update(&sp, step, st.s.loss, tps, line);   /* HOOK progress */
		}
		if (metrics) {
			fprintf(metrics, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
				"\"skipped\": %d, \"tokens_per_s\": %.6g, \"tflops\": %.6g, \"step_s\": %.6g",
				(long long)step, st.s.loss, lr, st.s.grad_norm, st.s.skipped, tps, tflops,
				st.step_s);
			for (int r = 0; r < SW_TRACK_COUNT; r++)
				fprintf(metrics, ", \"%s\": %.6g", res_json[r], st.busy[r]);
			fprintf(metrics, ", \"bound_s\": %.6g, \"bound_over_measured\": %.6g, "
				"\"nvme_read_bytes\": %llu, \"nvme_write_bytes\": %llu, "
				"\"plan_nvme_read_bytes\": %llu, \"plan_nvme_write_bytes\": %llu}\n",
				plan.cost.step_s, bound, (unsigned long long)st.nvme_read,
				(unsigned long long)st.nvme_write, (unsigned long long)plan.cost.nvme_read,
				(unsigned long long)plan.cost.nvme_write);
			fflush(metrics);
			sw_report_update(a->run, 0);   /* HOOK report: every SW_REPORT_EVERY_S */
		}
		if (a->run && ((a->save_every && step % a->save_every == 0) || step == a->steps)) {
			if ((rc = save_state(ex, tt, a->run, step, &data, prev, cur, sizeof(cur))))
				break;
			snprintf(prev, sizeof(prev), "%s", cur);
		}
	}
	if (a->print_steps)
		sw_steps_end(&sp);   /* HOOK progress */
	if (!rc) {
		/* host memory as the kernel counts it: the peak resident set (pinned buffers and, on
		 * the CPU backend, the "GPU" arena are inside it) and what the process held before
		 * spillway allocated anything (code, libraries, the CUDA runtime's own) */
		uint64_t hwm = proc_status_bytes("VmHWM:");
		printf("train: %lld steps in %.1f s; GPU arena peak %.1f MiB of %.1f MiB; host peak RSS "
		       "%.1f MiB (%.1f MiB of it before loading: program, libraries%s), pinned %.1f MiB\n",
		       (long long)(a->steps - first + 1), sw_now() - t_train, (double)be->peak / 1048576.0,
		       (double)be->budget / 1048576.0, (double)hwm / 1048576.0,
		       (double)rss_start / 1048576.0, cpu ? "" : ", CUDA context",
		       (double)sw_exec_host_bytes(ex) / 1048576.0);
		if (!cpu) {
			/* measured, not planned: the device's free memory against the baseline taken
			 * before the context existed, sampled after every step */
			printf("train: GPU memory measured (cudaMemGetInfo): peak %.1f MiB, %s --gpu-mem "
			       "%.1f MiB\n", (double)dev_peak / 1048576.0,
			       a->gpu_mem && dev_peak > a->gpu_mem ? "OVER" : "within",
			       (double)(a->gpu_mem ? a->gpu_mem : be->budget) / 1048576.0);
		}
	}
	if (a->run) {
		/* HOOK report: final peaks in run.json, then report.html */
		rr.arena_peak = be->peak;
		rr.host_peak_rss = proc_status_bytes("VmHWM:");
		rr.device_peak = dev_peak;
		rr.train_s = sw_now() - t_train;
		rr.finished = !rc;
		sw_report_write_run(a->run, &rr);
		if (metrics)
			sw_report_update(a->run, 1);
	}
	free(placement);
out:
	if (metrics)
		fclose(metrics);
	free(inputs);
	free(targets);
	for (int k = 0; k < nrs; k++)
		sw_hf_close(&rs[k]);
	sw_exec_destroy(ex);
	sw_io_close(io);
	sw_backend_destroy(be);
	sw_plan_free(&plan);
	if (data_open)
		sw_data_close(&data);
	sw_hf_close(&hm);
	return rc;
}
