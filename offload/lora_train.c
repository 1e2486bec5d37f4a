/* sw_train_lora: a LoRA run from start to end (offload/lora_train.h): the model and the data
 * opened and checked, the LoRA plan under the budgets, the backend, the NVMe engine when the
 * plan puts base groups there, the executor, the adapters initialised (PEFT's way, --seed) or
 * resumed, the steps, the saves. */
#include "offload/lora_train_int.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/report.h"
#include "core/tokenizer.h"
#include "cpu/backend_cpu.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int lexec_eval(void *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum)
{
	return sw_lexec_eval(ex, inputs, targets, loss_sum);
}

/* The mean loss over every window of --eval-data (forward only), as full fine-tuning's
 * evaluation (sw_data_eval_mean). */
static int eval_loss(lctx *c, int32_t *in, int32_t *tg, int64_t rows, double *out)
{
	return sw_data_eval_mean(&c->eval, rows, in, tg, lexec_eval, c->ex, out);
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

static int build(lctx *c)
{
	const sw_train_args *a = c->a;
	int rc = lora_plan(c);
	if (rc || (rc = lora_disk_check(c)))
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
	if ((rc = lora_nvme_claim(c)) || (rc = lora_nvme_open(c)))
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

/* RUN/run.json at the start (core/report.h): the command, budgets and the LoRA placement as
 * `plan` prints it, so that report.html shows them as for full fine-tuning. */
static void run_json_begin(lctx *c)
{
	const sw_train_args *a = c->a;
	if (!a->run)
		return;
	size_t len = 0;
	FILE *pf = open_memstream(&c->placement, &len);
	if (pf) {
		sw_plan_lora_print(&c->plan, pf);
		fclose(pf);
	}
	train_run_json_begin(&c->rr, a, c->be, 0, sw_now() - c->t_start, c->placement);
	c->t_train = sw_now();
}

/* After the loop: the measured peaks in run.json; finished when it reached --steps. */
static void run_json_end(lctx *c, int rc)
{
	if (!c->a->run || !c->rr.backend)
		return;
	train_run_json_end(&c->rr, c->a->run, c->be->peak, c->dev_peak, sw_now() - c->t_train,
			   !rc && c->last_step >= c->a->steps);
}

/* The step line and the metrics.jsonl record. */
static void report_step(lctx *c, int64_t step, double lr, const sw_step_stats *st, double dt,
			double ev)
{
	const sw_train_args *a = c->a;
	char evs[48] = "";
	if (!isnan(ev))
		snprintf(evs, sizeof(evs), "  eval loss %.9g", ev);
	if (a->print_steps)
		printf("step %lld/%lld  loss %.6f  grad_norm %.6g  lr %.4g  %.2f s  bound/measured "
		       "%.2f%s%s\n", (long long)step, (long long)a->steps, st->loss, st->grad_norm, lr,
		       dt, c->plan.cost.step_s / dt, evs,
		       st->skipped ? "  (skipped: gradient not finite)" : "");
	fflush(stdout);
	if (c->metrics)
		sw_lora_metrics_step(c->metrics, a->run, step, lr, st, dt, (double)a->batch_tokens,
				     c->plan.cost.step_s, ev);
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
		report_step(c, step, lr, &st, dt, ev);
		c->last_step = step;
		uint64_t used;
		if (!c->cpu && !sw_cuda_mem_used(&used) && used > c->dev_peak)
			c->dev_peak = used;
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
	lora_nvme_close(c);
	if (c->nv)
		train_nvme_release(c->nv, 1);
	free(c->nv);
	free(c->placement);
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
	c.t_start = sw_now();
	c.cpu = !strcmp(a->backend, "cpu") || (!strcmp(a->backend, "auto") && sw_cuda_device_count() <= 0);
	rc = open_inputs(&c);
	if (!rc && !(c.settings = lora_settings_make(&c)))
		rc = -ENOMEM;
	rc = rc ? rc : lora_rundir_open(&c);
	rc = rc ? rc : build(&c);
	if (!rc)
		run_json_begin(&c);
	struct sigaction old[2];
	signals(1, old);
	rc = rc ? rc : step_loop(&c);
	signals(0, old);
	run_json_end(&c, rc);
	if (c.metrics)
		sw_report_update(a->run, 1);
	if (!rc && a->run)
		printf("train: LoRA adapters in %s (export them: spillway export --run %s --out DIR)\n",
		       a->run, a->run);
	teardown(&c);
	return rc;
}
