/* sw_train_lora: a LoRA run from start to end (offload/lora_train.h): the model and the data
 * opened and checked, the LoRA plan under the budgets, the backend, the NVMe engine when the
 * plan puts base groups there, the executor, the adapters initialised (PEFT's way, --seed) or
 * resumed, the steps, the saves. */
#include "offload/lora_train.h"
#include "offload/train_int.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/report.h"
#include "core/tokenizer.h"
#include "cpu/backend_cpu.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct lctx {
	const sw_train_args *a;
	const sw_lora_args *la;
	sw_hf_model hm;
	int hm_open, data_open, eval_open, cpu;
	sw_data data, eval;
	sw_plan_lora plan;
	sw_lora_layout lo;
	sw_backend *be;
	sw_io *io;
	sw_lexec *ex;
	json_t *settings;
	sw_lora_run rp;
	char prev[64];
	uint64_t arena;
	int lock;                    /* fd holding flock on RUN/lock, or -1 */
	FILE *metrics;               /* RUN/metrics.jsonl */
	sw_train_ctx *nv;            /* the --nvme directories' locks (offload/train_nvme.c) */
} lctx;

/* What this mode does not do yet: one line each, exit 2. */
static int refuse_unbuilt(const sw_train_args *a, const sw_lora_args *la)
{
	const char *what = la->dropout != 0 ? "--lora-dropout other than 0" :
			   a->trace ? "--trace" : NULL;
	if (!what)
		return 0;
	sw_error("train: %s with --lora-rank is not implemented yet (docs/lora.md \"Not done yet\")",
		 what);
	return 2;
}

static int open_inputs(lctx *c)
{
	const sw_train_args *a = c->a;
	int rc = sw_hf_open(&c->hm, a->model);
	if (rc)
		return rc;
	c->hm_open = 1;
	if ((rc = sw_data_open(&c->data, a->data, a->seq_len, a->seed)))
		return rc;
	c->data_open = 1;
	uint64_t fp = 0;
	if ((rc = sw_tokenizer_file_fingerprint(a->model, &fp)))
		return rc;
	uint32_t vocab = (uint32_t)c->hm.tt.cfg.vocab;
	if ((rc = sw_data_check_model(&c->data, a->data, vocab, fp, a->force)) || !a->eval_data)
		return rc;
	if ((rc = sw_data_open(&c->eval, a->eval_data, a->seq_len, a->seed)))
		return rc;
	c->eval_open = 1;
	return sw_data_check_model(&c->eval, a->eval_data, vocab, fp, a->force);
}

/* The mean loss over every window of --eval-data (forward only), in batches of the training
 * batch's rows in the file's first-epoch order, the last padded with rows without targets (as
 * full fine-tuning's evaluation). */
static int eval_loss(lctx *c, int32_t *in, int32_t *tg, int64_t rows, double *out)
{
	int64_t T = c->a->seq_len, W = (int64_t)c->eval.n_windows, tokens = 0;
	double sum = 0;
	c->eval.pos = (sw_data_pos){ 0, 0 };
	for (int64_t b = 0; b < W; b += rows) {
		int64_t n = W - b < rows ? W - b : rows;
		int rc = sw_data_next(&c->eval, n, in, tg);
		if (rc)
			return rc;
		for (int64_t i = n * T; i < rows * T; i++) {
			in[i] = 0;
			tg[i] = SW_IGNORE_INDEX;
		}
		for (int64_t i = 0; i < n * T; i++)
			tokens += tg[i] >= 0;
		double s;
		if ((rc = sw_lexec_eval(c->ex, in, tg, &s)))
			return rc;
		sum += s;
	}
	*out = tokens ? sum / (double)tokens : NAN;
	return 0;
}

/* The settings that decide the result: recorded with every save, repeated by --resume. */
static json_t *settings_make(const lctx *c)
{
	const sw_train_args *a = c->a;
	char model[PATH_MAX], tg[64];
	if (!realpath(a->model, model))
		snprintf(model, sizeof(model), "%s", a->model);
	return json_pack("{s:s,s:i,s:f,s:s,s:f,s:I,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,"
			 "s:s,s:I,s:f}",
			 "model", model, "lora_rank", c->la->rank, "lora_alpha", c->la->alpha,
			 "lora_targets", sw_lora_targets_str(c->la->targets, tg, sizeof(tg)),
			 "lora_dropout", c->la->dropout, "seed", (json_int_t)a->seed,
			 "dtype", a->fp32 ? "fp32" : "bf16", "seq_len", (json_int_t)a->seq_len,
			 "batch_tokens", (json_int_t)a->batch_tokens, "micro_rows",
			 (json_int_t)a->micro_rows, "steps", (json_int_t)a->steps, "lr", a->adam.lr,
			 "beta1", a->adam.beta1, "beta2", a->adam.beta2, "eps", a->adam.eps,
			 "weight_decay", a->adam.weight_decay, "clip", a->clip, "schedule",
			 a->schedule_name ? a->schedule_name : "cosine", "warmup",
			 (json_int_t)a->sched.warmup_steps, "min_lr_rate", a->sched.min_lr_rate);
}

/* RUN/lock, held (flock) while the run goes: one process per run directory. */
static int rundir_lock(lctx *c)
{
	char p[SW_TRAIN_PATH + 16];
	snprintf(p, sizeof(p), "%s/lock", c->a->run);
	c->lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->lock < 0) {
		int e = errno;
		sw_error("train: cannot create %s (%s)", p, strerror(e));
		return -e;
	}
	if (flock(c->lock, LOCK_EX | LOCK_NB)) {
		sw_error("train: %s is in use by another spillway process; wait for it to finish",
			 c->a->run);
		return -EBUSY;
	}
	return 0;
}

/* --resume: the manifest, the same settings; a fresh run: no earlier run in the directory. */
static int rundir_open(lctx *c)
{
	const char *run = c->a->run;
	char p[SW_TRAIN_PATH + 64];
	if (!run)
		return 0;
	if (!c->a->resume) {
		snprintf(p, sizeof(p), "%s/%s", run, SW_LORA_MANIFEST);
		char q[SW_TRAIN_PATH + 64];
		snprintf(q, sizeof(q), "%s/manifest.json", run);
		if (!access(p, F_OK) || !access(q, F_OK)) {
			sw_error("train: %s already holds a run; give --resume to continue it, or a new "
				 "--run directory", run);
			return -EEXIST;
		}
		if (mkdir(run, 0755) && errno != EEXIST) {
			int e = errno;
			sw_error("train: cannot create --run %s (%s)", run, strerror(e));
			return -e;
		}
		return rundir_lock(c);
	}
	int rc = sw_lora_run_read(run, &c->rp);
	rc = rc ? rc : rundir_lock(c);
	if (rc)
		return rc;
	json_t *old = json_object_get(c->rp.man, "settings");
	const char *key;
	json_t *v;
	json_object_foreach(c->settings, key, v) {
		if (json_equal(v, json_object_get(old, key)))
			continue;
		char *was = json_dumps(json_object_get(old, key), JSON_ENCODE_ANY);
		sw_error("train: --resume: %s was trained with %s %s; give the same setting", run, key,
			 was ? was : "(none)");
		free(was);
		return -EINVAL;
	}
	if (c->rp.step >= c->a->steps) {
		sw_error("train: --resume: %s is already at step %lld of --steps %lld: nothing to do",
			 run, (long long)c->rp.step, (long long)c->a->steps);
		return -EINVAL;
	}
	snprintf(c->prev, sizeof(c->prev), "%s", c->rp.adapters);
	return 0;
}

/* Device bytes the executor takes beyond the LoRA plan's rows: the adapters' scratch and the
 * device side of host-resident adapters (one layer), with 64 KiB for alignment. */
static uint64_t extra_dev(const lctx *c, const sw_plan_input *in)
{
	sw_dims d = sw_dims_make(&c->hm.tt.cfg, (int)in->micro_rows, (int)in->seq_len);
	sw_dtype act = in->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
	return sw_lora_scratch_bytes(&d, &c->lo, act) +
	       (uint64_t)c->lo.numel * (uint64_t)(4 + sw_dtype_size(act)) + (64ull << 10);
}

/* CUDA: the context, the kernels' allowance, pinned mappings and the backend's reserve come
 * out of --gpu-mem first (as offload/train_budget.c does for full fine-tuning). */
static int cuda_arena(lctx *c, sw_plan_input *in)
{
	uint64_t ctx = 0;
	int exact = 0;
	if (sw_cuda_context_bytes(0, &ctx, &exact)) {
		sw_error("train: no CUDA device is usable; use --backend cpu");
		return -ENODEV;
	}
	uint64_t held = ctx + SW_CUDA_LAZY_ALLOWANCE + c->a->cpu_mem / 4096 * 9;
	if (!c->a->gpu_mem)
		return 0;
	uint64_t r = held < c->a->gpu_mem ? sw_exec_backend_reserve(c->a->gpu_mem - held) : 0;
	if (held + r + extra_dev(c, in) >= c->a->gpu_mem) {
		sw_error("train: --gpu-mem %.0f MiB does not cover the CUDA context, kernels and the "
			 "backend's reserve (%.0f MiB); raise it", (double)c->a->gpu_mem / 1048576.0,
			 (double)(held + r) / 1048576.0);
		return -ENOSPC;
	}
	c->arena = c->a->gpu_mem - held;
	in->gpu_mem = c->arena - r - extra_dev(c, in);
	return 0;
}

static int plan_build(lctx *c, sw_plan_input *in)
{
	int rc = sw_plan_lora_build(&c->plan, in);
	if (rc)
		sw_error("train: %s", c->plan.why);
	return rc;
}

/* The LoRA plan under the budgets; c->arena the backend's device arena. */
static int plan(lctx *c)
{
	const sw_train_args *a = c->a;
	sw_train_plan_opts po = {
		.gpu_mem = a->gpu_mem, .cpu_mem = a->cpu_mem, .nvme = a->nvme,
		.batch_tokens = a->batch_tokens, .seq_len = a->seq_len, .micro_rows = a->micro_rows,
		.chunk = a->chunk, .fp32 = a->fp32, .prefetch = a->prefetch, .slots = a->slots,
		.grad_bufs = a->grad_bufs, .clip = a->clip, .rates = a->rates, .io_stripe = a->io_stripe,
	};
	sw_plan_input in;
	if (sw_train_plan_input(&in, &c->hm.tt, &po, "train"))
		return 2;
	in.lora_rank = c->la->rank;
	in.lora_targets = c->la->targets;
	in.cublas_workspace = 0;
	in.cpu_device = c->cpu;
	sw_lora_layout_make(&c->lo, &c->hm.tt.cfg, c->la->rank, c->la->targets, c->la->alpha);
	c->arena = a->gpu_mem;
	int rc = 0;
	if (c->cpu) {
		sw_dims d = sw_dims_make(&c->hm.tt.cfg, (int)in.micro_rows, (int)in.seq_len);
		in.gpu_reserve = sw_cpu_scratch_bytes(a->threads, &d, c->hm.tt.max_group_numel);
		if (a->gpu_mem && a->gpu_mem <= extra_dev(c, &in)) {
			sw_error("train: --gpu-mem %.1f KiB does not hold the adapters' scratch (%.1f "
				 "KiB); raise it", (double)a->gpu_mem / 1024.0,
				 (double)extra_dev(c, &in) / 1024.0);
			return -ENOSPC;
		}
		if (a->gpu_mem)
			in.gpu_mem = a->gpu_mem - extra_dev(c, &in);
	} else if ((rc = cuda_arena(c, &in))) {
		return rc;
	}
	if ((rc = plan_build(c, &in)))
		return rc;
	if (!a->gpu_mem) {   /* no budget: what the all-resident plan needs */
		in.gpu_mem = c->plan.total[SW_TIER_GPU];
		c->arena = in.gpu_mem + extra_dev(c, &in) +
			   (c->cpu ? 0 : sw_exec_backend_reserve(in.gpu_mem + (288ull << 20)));
		sw_plan_lora_free(&c->plan);
		if ((rc = plan_build(c, &in)))
			return rc;
	}
	if (!a->quiet)
		sw_plan_lora_print(&c->plan, stdout);
	return 0;
}

/* The --nvme directories locked as full fine-tuning does (spillway.lock: one run each). */
static int nvme_claim(lctx *c)
{
	if (!c->a->nvme)
		return 0;
	if (!(c->nv = calloc(1, sizeof(*c->nv))))
		return -ENOMEM;
	c->nv->a = c->a;
	if (c->a->run && !realpath(c->a->run, c->nv->run_abs))
		snprintf(c->nv->run_abs, sizeof(c->nv->run_abs), "%s", c->a->run);
	return train_nvme_claim(c->nv);
}

/* The NVMe engine for the base groups the plan put there (one extent each, 1 MiB stripes). */
static int nvme_open(lctx *c)
{
	uint64_t need = 0, S = 1ull << 20;
	for (int g = 0; g < c->plan.ngroups; g++)
		if (c->plan.base_tier[g] == SW_TIER_NVME)
			need += ((uint64_t)c->hm.tt.g[g].numel * (uint64_t)c->plan.p16_bytes + S - 1) / S * S;
	if (!need)
		return 0;
	sw_io_config ic = { .paths = c->a->nvme, .quiet = 1, .bs = c->a->io_bs, .qd = c->a->io_qd,
			    .threads = c->a->io_threads, .file_name = "spillway-lora.data",
			    .size = need + S, .stripe = S };
	return sw_io_open(&ic, &c->io);
}

static void nvme_close(lctx *c)
{
	if (!c->io)
		return;
	char files[SW_IO_MAX_PATHS][SW_TRAIN_PATH];
	int n = sw_io_npaths(c->io);
	for (int i = 0; i < n && i < SW_IO_MAX_PATHS; i++)
		snprintf(files[i], SW_TRAIN_PATH, "%s", sw_io_path_file(c->io, i));
	sw_io_close(c->io);
	c->io = NULL;
	for (int i = 0; i < n && i < SW_IO_MAX_PATHS && !c->a->keep_nvme; i++)
		unlink(files[i]);
}

/* The adapters: from the save --resume continues, else PEFT's initialisation from --seed. */
static int adapters_init(lctx *c)
{
	int L = (int)c->hm.tt.cfg.n_layers;
	if (c->a->resume) {
		sw_data_set_pos(&c->data, c->rp.pos);
		return sw_lora_run_load(c->a->run, &c->rp, c->ex, &c->lo, L);
	}
	float *buf = malloc((size_t)c->lo.numel * 4);
	if (!buf)
		return -ENOMEM;
	for (int l = 0; l < L; l++) {
		sw_lora_init_layer(&c->lo, c->a->seed, l, buf);
		sw_lexec_set_layer(c->ex, l, buf, NULL, NULL);
	}
	free(buf);
	return 0;
}

/* The run directory holds two saves at a time (the new one is complete before the old goes):
 * P32, m and v of every adapter, 12 bytes per parameter, each, with 1 MiB for the rest. */
static int disk_check(lctx *c)
{
	if (!c->a->run)
		return 0;
	uint64_t need = 2 * ((uint64_t)c->plan.adapter_params * 12 + (1ull << 20));
	uint64_t avail = sw_exec_dir_free(c->a->run);
	if (avail >= need)
		return 0;
	char b1[32], b2[32];
	sw_error("train: %s has %s free but the adapters' saves need %s; free space or choose "
		 "another --run", c->a->run, sw_fmt_size(avail, b1, 32), sw_fmt_size(need, b2, 32));
	return -ENOSPC;
}

static int build(lctx *c)
{
	const sw_train_args *a = c->a;
	int rc = plan(c);
	if (rc || (rc = disk_check(c)))
		return rc;
	sw_backend_opts bo = { .mem_budget = c->arena, .act = a->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16,
			       .threads = a->threads };
	if ((rc = sw_backend_create(a->backend, &bo, &c->be)))
		return rc;
	if (c->cpu) {
		sw_dims d = sw_dims_make(&c->hm.tt.cfg, (int)a->micro_rows, (int)a->seq_len);
		if ((rc = sw_cpu_backend_reserve_scratch(c->be, &d, c->hm.tt.max_group_numel)))
			return rc;
	}
	if ((rc = nvme_claim(c)) || (rc = nvme_open(c)))
		return rc;
	sw_lexec_opts eo = { .adam = a->adam, .clip = a->clip, .lo = c->lo };
	if ((rc = sw_lexec_create(c->be, sw_lexec_read_hf, &c->hm, &c->plan, c->io, &eo, &c->ex)) ||
	    (rc = adapters_init(c)))
		return rc;
	if (a->run && !(c->metrics = sw_lora_metrics_open(a->run, a->resume ? c->rp.step : 0)))
		return -EIO;
	return 0;
}

static int save(lctx *c, int64_t step, int64_t skipped)
{
	return sw_lora_run_save(c->a->run, c->ex, &c->lo, (int)c->hm.tt.cfg.n_layers, step, skipped,
				c->data.pos, c->settings, c->prev, sizeof(c->prev));
}

/* SIGINT/SIGTERM: the first ends the run after the step in flight, saved; the second at once. */
static volatile sig_atomic_t stop_sig;

static void on_signal(int sig)
{
	static const char m1[] = "train: signal: finishing the step in flight, then saving and "
				 "stopping; send it again to abort at once\n";
	static const char m2[] = "train: second signal: aborting now; --resume continues from the "
				 "last save\n";
	if (stop_sig) {
		if (write(2, m2, sizeof(m2) - 1) < 0) {
			/* nothing more to do */
		}
		_exit(128 + sig);
	}
	stop_sig = sig;
	if (write(2, m1, sizeof(m1) - 1) < 0) {
		/* nothing more to do */
	}
}

static void signals(int take, struct sigaction old[2])
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	stop_sig = 0;
	sigaction(SIGINT, take ? &sa : &old[0], take ? &old[0] : NULL);
	sigaction(SIGTERM, take ? &sa : &old[1], take ? &old[1] : NULL);
}

/* After a signal: what the last step made is saved (it is, when the step saved). */
static int stopped(lctx *c, int64_t last, int64_t saved, int64_t skipped)
{
	const char *why = stop_sig == SIGINT ? "SIGINT" : "SIGTERM";
	int rc = c->a->run && last > saved ? save(c, last, skipped) : 0;
	if (rc)
		return rc;
	if (c->a->run)
		printf("train: stopped by %s after step %lld, saved in %s; resume with: %s\n", why,
		       (long long)last, c->a->run, c->a->resume_cmd ? c->a->resume_cmd :
		       "the same command plus --resume");
	else
		printf("train: stopped by %s after step %lld; nothing was saved (--no-save)\n", why,
		       (long long)last);
	return 128 + stop_sig;
}

static int step_loop(lctx *c)
{
	const sw_train_args *a = c->a;
	int64_t rows = a->batch_tokens / a->seq_len, skipped = c->rp.skipped;
	int64_t first = a->resume ? c->rp.step + 1 : 1, saved = first - 1;
	int32_t *in = malloc((size_t)rows * (size_t)a->seq_len * 4);
	int32_t *tg = malloc((size_t)rows * (size_t)a->seq_len * 4);
	int rc = in && tg ? 0 : -ENOMEM;
	for (int64_t step = first; step <= a->steps && !rc; step++) {
		if (a->stop_after > 0 && step > a->stop_after)
			break;
		if (stop_sig) {
			rc = stopped(c, step - 1, saved, skipped);
			break;
		}
		if ((rc = sw_data_next(&c->data, rows, in, tg)))
			break;
		int64_t taken = step - skipped;
		double lr = sw_lr_at(&a->sched, taken), t0 = sw_now();
		sw_step_stats st;
		if ((rc = sw_lexec_step(c->ex, in, tg, taken, lr, &st)))
			break;
		skipped += st.skipped;
		if (a->losses_out)
			a->losses_out[step - 1] = st.loss;
		double dt = sw_now() - t0, ev = NAN;
		int last = step == a->steps || step == a->stop_after;
		if (c->eval_open && ((a->eval_every && step % a->eval_every == 0) || last) &&
		    (rc = eval_loss(c, in, tg, rows, &ev)))
			break;
		char evs[48] = "";
		if (!isnan(ev))
			snprintf(evs, sizeof(evs), "  eval loss %.9g", ev);
		if (a->print_steps)
			printf("step %lld/%lld  loss %.6f  grad_norm %.6g  lr %.4g  %.2f s  "
			       "bound/measured %.2f%s%s\n", (long long)step, (long long)a->steps, st.loss,
			       st.grad_norm, lr, dt, c->plan.cost.step_s / dt, evs,
			       st.skipped ? "  (skipped: gradient not finite)" : "");
		if (c->metrics)
			sw_lora_metrics_step(c->metrics, a->run, step, lr, &st, dt,
					     (double)a->batch_tokens, c->plan.cost.step_s, ev);
		fflush(stdout);
		/* a commit is a save: the adapters' state is small (docs/lora.md) */
		int every = (a->save_every && step % a->save_every == 0) ||
			    (a->commit_every > 0 && step % a->commit_every == 0);
		if (a->run && (every || last)) {
			rc = save(c, step, skipped);
			saved = step;
		}
	}
	free(in);
	free(tg);
	return rc;
}

static void teardown(lctx *c)
{
	sw_lexec_destroy(c->ex);
	nvme_close(c);
	if (c->nv)
		train_nvme_release(c->nv, 1);
	free(c->nv);
	sw_backend_destroy(c->be);
	sw_plan_lora_free(&c->plan);
	if (c->data_open)
		sw_data_close(&c->data);
	if (c->eval_open)
		sw_data_close(&c->eval);
	if (c->hm_open)
		sw_hf_close(&c->hm);
	sw_lora_run_free(&c->rp);
	json_decref(c->settings);
	if (c->lock >= 0)
		close(c->lock);
	if (c->metrics)
		fclose(c->metrics);
}

int sw_train_lora(const sw_train_args *a, const sw_lora_args *la)
{
	int rc = refuse_unbuilt(a, la);
	if (rc)
		return rc;
	lctx c;
	memset(&c, 0, sizeof(c));
	c.a = a;
	c.la = la;
	c.lock = -1;
	c.cpu = !strcmp(a->backend, "cpu") || (!strcmp(a->backend, "auto") && sw_cuda_device_count() <= 0);
	rc = open_inputs(&c);
	if (!rc && !(c.settings = settings_make(&c)))
		rc = -ENOMEM;
	rc = rc ? rc : rundir_open(&c);
	rc = rc ? rc : build(&c);
	struct sigaction old[2];
	signals(1, old);
	rc = rc ? rc : step_loop(&c);
	signals(0, old);
	if (c.metrics)
		sw_report_update(a->run, 1);
	if (!rc && a->run)
		printf("train: LoRA adapters in %s (export them: spillway export --run %s --out DIR)\n",
		       a->run, a->run);
	teardown(&c);
	return rc;
}
