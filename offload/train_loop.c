/* sw_train: a run from start to end (claim the directories, load, plan, step, save, report),
 * with SIGINT/SIGTERM turned into "finish the step in flight, save, exit" (twice: abort). */
#include "offload/train_int.h"

#include "core/log.h"
#include "cpu/backend_cpu.h"
#include "core/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int stop_signal;

static void say(const char *msg)
{
	if (write(STDERR_FILENO, msg, strlen(msg)) < 0) {
		/* nothing more to do */
	}
}

/* The first SIGINT/SIGTERM asks the step loop to stop, the second ends the process at once.
 * Async-signal-safe: it runs as the handler or on the signal thread. */
static void on_signal(int sig)
{
	if (atomic_exchange(&stop_signal, sig)) {
		say("train: second signal: aborting now; --resume continues from the last save\n");
		_exit(128 + sig);
	}
	say(sig == SIGINT ? "train: SIGINT: finishing the step in flight, then saving and stopping; "
	    "send it again to abort at once\n" : "train: SIGTERM: finishing the step in flight, then "
	    "saving and stopping; send it again to abort at once\n");
}

/* SIGINT and SIGTERM are blocked in every thread the run creates (no I/O call sees EINTR) and
 * taken by a thread of their own; a thread that does not block them (a library's pool started
 * before us) runs the same code as the handler. */
static void *signal_main(void *arg)
{
	const sigset_t *set = arg;
	for (;;) {
		int sig;
		if (!sigwait(set, &sig))
			on_signal(sig);
	}
	return NULL;
}

typedef struct signal_guard {
	sigset_t set, old;
	struct sigaction old_int, old_term;
	pthread_t tid;
	int started;
} signal_guard;

static void signals_take(signal_guard *g)
{
	atomic_store(&stop_signal, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &g->old_int);
	sigaction(SIGTERM, &sa, &g->old_term);
	sigemptyset(&g->set);
	sigaddset(&g->set, SIGINT);
	sigaddset(&g->set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &g->set, &g->old);
	g->started = pthread_create(&g->tid, NULL, signal_main, &g->set) == 0;
}

static void signals_give_back(signal_guard *g)
{
	if (g->started) {
		pthread_cancel(g->tid);
		pthread_join(g->tid, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
	sigaction(SIGINT, &g->old_int, NULL);
	sigaction(SIGTERM, &g->old_term, NULL);
}

/* Opens the model and the data, checks every token id against the vocabulary and the settings
 * against the run's. */
static int open_inputs(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	int rc = sw_hf_open(&c->hm, a->model);
	if (rc)
		return rc;
	c->hm_open = 1;
	c->tt = &c->hm.tt;
	if ((rc = sw_data_open(&c->data, a->data, a->seq_len, a->seed)))
		return rc;
	c->data_open = 1;
	uint32_t vocab = (uint32_t)c->tt->cfg.vocab;
	if (c->data.max_token >= vocab || c->data.h.vocab > vocab) {
		char said[48] = "the file states no vocabulary";
		if (c->data.h.vocab)
			snprintf(said, sizeof(said), "its vocabulary is %u", c->data.h.vocab);
		sw_error("train: %s holds token id %u (%s) but the model's vocab_size is %u; "
			 "tokenize the data for this model", a->data, c->data.max_token, said, vocab);
		return -EINVAL;
	}
	uint64_t tok_fp = 0;
	if ((rc = sw_tokenizer_file_fingerprint(a->model, &tok_fp)) ||
	    (rc = sw_data_check_model(&c->data, a->data, vocab, tok_fp, a->force)))
		return rc;
	if (a->eval_data) {
		if ((rc = sw_data_open(&c->eval, a->eval_data, a->seq_len, a->seed)))
			return rc;
		c->eval_open = 1;
		if ((rc = sw_data_check_model(&c->eval, a->eval_data, vocab, tok_fp, a->force)))
			return rc;
	}
	if (a->resume && c->rp.step >= a->steps) {
		sw_error("train: --resume: %s is already at step %lld and --steps is %lld: nothing to "
			 "do; export it (spillway export --run %s --out DIR)%s", a->run,
			 (long long)c->rp.step, (long long)a->steps, a->run,
			 a->sched.kind == SW_LR_COSINE ? "; with the cosine schedule --steps cannot "
			 "change on --resume: to train further, start a new run from the export" :
			 ", or give --steps above it to train further");
		return -EINVAL;
	}
	if (a->run && (rc = train_rundir_settings(c)))
		return rc;
	return a->resume ? train_rundir_verify(c) : 0;
}

/* Plans, creates the backend, the NVMe engine and the executor, loads the state. */
static int build(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	int rc = train_budget_plan(c);
	if (rc || (rc = train_commit_interval(c)) || (rc = train_commit_disk_check(c)) ||
	    (rc = train_nvme_claim(c)) ||
	    (rc = train_commit_prepare(c)))
		return rc;
	sw_backend_opts bo = { .mem_budget = c->arena, .act = a->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16,
			       .threads = a->threads };
	if ((rc = sw_backend_create(a->backend, &bo, &c->be)))
		return rc;
	if (c->cpu) {
		/* the op scratch the budget set aside, allocated now in the arena */
		sw_dims d = sw_dims_make(&c->tt->cfg, (int)c->plan.in.micro_rows, (int)c->plan.in.seq_len);
		if ((rc = sw_cpu_backend_reserve_scratch(c->be, &d, c->tt->max_group_numel)))
			return rc;
	}
	if ((rc = train_nvme_open(c)))
		return rc;
	sw_exec_opts eo = { .adam = a->adam, .clip = a->clip, .cpu_threads = a->threads,
			    .trace = a->trace };
	if ((rc = sw_exec_create(c->be, c->tt, &c->plan, c->io, &eo, &c->ex)))
		return rc;
	if (a->resume) {
		sw_data_set_pos(&c->data, c->rp.pos);
		snprintf(c->prev, sizeof(c->prev), "%s", c->rp.tag);
		if (!c->from_commit)
			c->last_saved = c->rp.step;
		c->skipped_total = c->rp.skipped;
	}
	if ((rc = c->from_commit ? train_commit_load(c) : train_state_load(c)))
		return rc;
	return train_rundir_metrics_open(c);
}

/* After a stop: save what the last step made, say how to go on. Returns the exit status. */
static int stopped(sw_train_ctx *c, int sig)
{
	const sw_train_args *a = c->a;
	const char *why = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "--stop-after";
	train_report_steps_end(c);
	int jrc = sw_exec_sync(c->ex);   /* the last step's updates landed (the step boundary) */
	jrc = jrc ? jrc : train_commit_join(c);
	if (jrc)
		return jrc;
	if (a->run && c->last_step > c->last_saved &&
	    !(c->have_cm && c->cm.step >= c->last_step)) {
		int rc = c->commit_every > 0 ? train_commit_write(c, c->last_step) :
			 train_state_save(c, c->last_step);
		rc = rc ? rc : train_commit_join(c);
		if (rc)
			return rc;
	}
	int committed = c->have_cm && c->cm.step == c->last_step;
	if (!c->last_step)
		printf("train: stopped by %s before the first step; nothing new to save%s%s\n", why,
		       c->last_saved || c->have_cm ? "; resume with: " : "",
		       c->last_saved || c->have_cm ? (a->resume_cmd ? a->resume_cmd :
						       "the same command plus --resume") : "");
	else if (a->run)
		printf("train: stopped by %s after step %lld, %s in %s%s; resume with: %s\n", why,
		       (long long)c->last_step, committed ? "committed" : "saved", a->run,
		       c->commit_live ? " (its NVMe state stays in the --nvme directory)" : "",
		       a->resume_cmd ? a->resume_cmd : "the same command plus --resume");
	else
		printf("train: stopped by %s after step %lld; nothing was saved (--no-save)\n", why,
		       (long long)c->last_step);
	fflush(stdout);
	return sig ? 128 + sig : 0;
}

static int exec_eval(void *ex, const int32_t *inputs, const int32_t *targets, double *loss_sum)
{
	return sw_exec_eval(ex, inputs, targets, loss_sum);
}

/* The mean loss over every window of --eval-data under the current weights (forward only), in
 * batches of the training batch's rows (sw_data_eval_mean). */
static int eval_loss(sw_train_ctx *c, int32_t *inputs, int32_t *targets, int64_t rows, double *out)
{
	return sw_data_eval_mean(&c->eval, rows, inputs, targets, exec_eval, c->ex, out);
}

/* The steps. Returns 0, an exit status after a stop, or -errno. */
static int step_loop(sw_train_ctx *c, int64_t first)
{
	const sw_train_args *a = c->a;
	int64_t rows = a->batch_tokens / a->seq_len;
	int32_t *inputs = malloc((size_t)rows * (size_t)a->seq_len * 4);
	int32_t *targets = malloc((size_t)rows * (size_t)a->seq_len * 4);
	int rc = inputs && targets ? 0 : -ENOMEM;
	for (int64_t step = first; step <= a->steps && !rc; step++) {
		int sig = atomic_load(&stop_signal);
		if (sig || (a->stop_after > 0 && step > a->stop_after)) {
			rc = stopped(c, sig);
			break;
		}
		if ((rc = sw_data_next(&c->data, rows, inputs, targets)))
			break;
		/* AdamW's step counter and the schedule leave out the skipped steps: a skipped step
		 * is as if it had not been taken, apart from consuming its batch (docs/optim.md) */
		int64_t taken = step - c->skipped_total;
		double lr = sw_lr_at(&a->sched, taken);
		sw_exec_stats st;
		train_commit_before_step(c, step);
		rc = sw_exec_step(c->ex, inputs, targets, taken, lr, &st);
		int jrc = train_commit_join(c);   /* the last commit, durable during the step */
		if (rc || (rc = jrc))
			break;
		c->skipped_total += st.s.skipped;
		c->last_step = step;
		c->steps_s += st.step_s;
		uint64_t used;
		if (!c->cpu && !sw_cuda_mem_used(&used) && used > c->dev_peak)
			c->dev_peak = used;
		if (a->losses_out)
			a->losses_out[step - 1] = st.s.loss;
		c->eval_loss = NAN;
		if (c->eval_open && ((a->eval_every && step % a->eval_every == 0) || step == a->steps) &&
		    (rc = eval_loss(c, inputs, targets, rows, &c->eval_loss)))
			break;
		train_report_step(c, step, lr, &st);
		int end = step == a->steps;
		/* a save or a commit reads the state: the step's last updates land first (the next
		 * step's forward overlaps them otherwise: docs/architecture.md "The step boundary") */
		if (a->run && ((a->save_every && step % a->save_every == 0) ||
			       (end && !train_commit_ends(c)))) {
			rc = sw_exec_sync(c->ex);
			rc = rc ? rc : train_state_save(c, step);
		} else if (c->commit_every && (++c->since_kept >= c->commit_every || end)) {
			rc = sw_exec_sync(c->ex);
			rc = rc ? rc : train_commit_write(c, step);
		}
	}
	free(inputs);
	free(targets);
	return rc;
}

static void teardown(sw_train_ctx *c)
{
	train_rundir_close(c);
	sw_exec_destroy(c->ex);
	sw_io_close(c->io);
	train_nvme_release(c, !c->commit_live);   /* a live commit's NVMe state stays */
	sw_backend_destroy(c->be);
	sw_plan_free(&c->plan);
	if (c->data_open)
		sw_data_close(&c->data);
	if (c->eval_open)
		sw_data_close(&c->eval);
	if (c->hm_open)
		sw_hf_close(&c->hm);
}

int sw_train(const sw_train_args *a)
{
	sw_train_ctx c;
	memset(&c, 0, sizeof(c));
	c.a = a;
	c.run_lock = -1;
	for (int i = 0; i < SW_TRAIN_MAX_NVME; i++)
		c.nvme_lock[i] = -1;
	c.t_load = sw_now();
	/* the CUDA context first: it takes device memory out of --gpu-mem (measured here) and
	 * host memory that, like the program's code, is not spillway's to budget */
	c.cpu = !strcmp(a->backend, "cpu") || (!strcmp(a->backend, "auto") && sw_cuda_device_count() <= 0);
	if (!c.cpu && sw_cuda_context_bytes(0, &c.ctx_bytes, &c.ctx_exact)) {
		sw_error("train: no CUDA device is usable; use --backend cpu");
		return -ENODEV;
	}
	signal_guard sg;
	signals_take(&sg);
	c.rss_start = train_rss_now();
	int rc = train_rundir_open(&c);
	rc = rc ? rc : open_inputs(&c);
	rc = rc ? rc : build(&c);
	int64_t first = a->resume ? c.rp.step + 1 : 1;
	if (!rc) {
		train_report_started(&c, first);
		c.t_train = sw_now();
		if (!c.cpu)
			sw_cuda_mem_used(&c.dev_peak);
		rc = step_loop(&c, first);
		int src = c.ex ? sw_exec_sync(c.ex) : 0;   /* the last step's updates and writes */
		rc = rc ? rc : src;
		int jrc = train_commit_join(&c);   /* the end's commit durable before the summary */
		rc = rc ? rc : jrc;
		train_report_finished(&c, rc);
		if (rc >= 0 && c.last_step >= first)
			train_report_summary(&c, first);
	}
	teardown(&c);
	signals_give_back(&sg);
	return rc;
}
