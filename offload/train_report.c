/* What a train run prints and writes: the start line, the step lines (a bar on a terminal, a
 * few full lines in a log: core/progress.h), one RUN/metrics.jsonl record per step, RUN/run.json
 * and RUN/report.html (core/report.h), the summary. On the CPU backend the words say "device",
 * and the planner's bound is shown only when the machine's rates were given (its defaults are a
 * GPU's). */
#include "offload/train_int.h"
#include "core/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *res_json[SW_TRACK_COUNT] = {
	"compute_s", "h2d_s", "d2h_s", "nvme_read_s", "nvme_write_s", "optim_s",
};

/* The plan's bound means something only with rates of this machine: on CUDA the defaults are
 * an H100's; on the CPU backend only when the user gave measured rates (any of them: the bound
 * then uses those, and the defaults for the rest). */
static int bound_known(const sw_train_ctx *c)
{
	const sw_plan_rates *r = &c->a->rates;
	return !c->cpu || r->gemm_tflops > 0 || r->adam_params_per_s > 0 || r->h2d_gbs > 0 ||
	       r->d2h_gbs > 0 || r->nvme_read_gbs > 0 || r->nvme_write_gbs > 0;
}

/* /proc/self/status "Vm...:" line in bytes (0 when unreadable). */
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

uint64_t train_rss_now(void)
{
	return proc_status_bytes("VmRSS:");
}

void train_run_json_begin(sw_report_run *rr, const sw_train_args *a, const sw_backend *be,
			  uint64_t pinned, double load_s, const char *placement)
{
	sw_report_run r = { .backend = be->name, .device = be->device_name, .steps = a->steps,
			    .gpu_mem = a->gpu_mem, .cpu_mem = a->cpu_mem, .nvme = a->nvme,
			    .arena_budget = be->budget, .pinned = pinned, .load_s = load_s,
			    .placement = placement };
	*rr = r;
	sw_report_write_run(a->run, rr);
}

void train_run_json_end(sw_report_run *rr, const char *run, uint64_t arena_peak,
			uint64_t device_peak, double train_s, int finished)
{
	rr->arena_peak = arena_peak;
	rr->host_peak_rss = proc_status_bytes("VmHWM:");
	rr->device_peak = device_peak;
	rr->train_s = train_s;
	rr->finished = finished;
	sw_report_write_run(run, rr);
}

/* RUN/run.json at the start: command line, budgets, placement table (core/report.h). */
static void report_run_begin(sw_train_ctx *c)
{
	size_t len = 0;
	FILE *pf = open_memstream(&c->placement, &len);
	if (pf) {
		sw_plan_print(&c->plan, pf);
		fclose(pf);
	}
	train_run_json_begin(&c->rr, c->a, c->be, sw_exec_host_bytes(c->ex), sw_now() - c->t_load,
			     c->placement);
}

void train_report_started(sw_train_ctx *c, int64_t first)
{
	const sw_plan *p = &c->plan;
	printf("train: %s, %lld parameters, backend %s (%s), %lld micro-batches of %lld tokens per "
	       "step, loaded in %.1f s; %s arena %.1f MiB, pinned host %.1f MiB\n",
	       c->tt->cfg.model_type, (long long)c->tt->total, c->be->name, c->be->device_name,
	       (long long)p->n_micro, (long long)p->micro_tokens, sw_now() - c->t_load,
	       c->cpu ? "device" : "GPU", (double)c->be->budget / 1048576.0,
	       (double)sw_exec_host_bytes(c->ex) / 1048576.0);
	if (!bound_known(c) && c->a->print_steps)
		printf("train: no bound/measured figure on the CPU backend: the planner's default rates "
		       "are not this machine's; give --gemm-tflops and --adam-gparams measured here to "
		       "get one\n");
	fflush(stdout);
	if (c->a->run)
		report_run_begin(c);
	if (c->a->print_steps) {
		sw_steps_begin(&c->steps, first, c->a->steps, 0);
		c->steps_open = 1;
	}
}

/* The plan's prediction for this kind of step: one pass, redone (rollback + a second), or
 * two passes where the plan speculates (clipping fired often, or NVMe state written in place) */
static const sw_plan_cost *step_cost(const sw_plan *p, const sw_exec_stats *st)
{
	if (st->redone)
		return &p->redo;
	return p->speculative && st->passes == 2 ? &p->two : &p->cost;
}

static void metrics_record(sw_train_ctx *c, int64_t step, double lr, const sw_exec_stats *st,
			   double tps, double tflops)
{
	FILE *m = c->metrics;
	/* JSON has no NaN or infinity: a non-finite loss or norm (a skipped step) is null */
	char loss[32] = "null", norm[32] = "null";
	if (isfinite(st->s.loss))
		snprintf(loss, sizeof(loss), "%.9g", st->s.loss);
	if (isfinite(st->s.grad_norm))
		snprintf(norm, sizeof(norm), "%.9g", st->s.grad_norm);
	fprintf(m, "{\"step\": %lld, \"loss\": %s, \"lr\": %.9g, \"grad_norm\": %s, "
		"\"skipped\": %d, \"redone\": %d, \"passes\": %d, \"tokens_per_s\": %.6g, \"tflops\": %.6g, "
		"\"step_s\": %.6g", (long long)step, loss, lr, norm, st->s.skipped, st->redone, st->passes,
		tps, tflops, st->step_s);
	if (st->s.skipped)
		fprintf(m, ", \"why\": \"skipped: non-finite gradient\"");
	else if (st->clip_two)
		fprintf(m, ", \"why\": \"two passes: clipping fired on %d of the last %d steps\"",
			st->clip_recent, st->clip_seen);
	for (int r = 0; r < SW_TRACK_COUNT; r++)
		fprintf(m, ", \"%s\": %.6g", res_json[r], st->busy[r]);
	if (isfinite(c->eval_loss))
		fprintf(m, ", \"eval_loss\": %.9g", c->eval_loss);
	const sw_plan_cost *k = step_cost(&c->plan, st);
	if (bound_known(c))
		fprintf(m, ", \"bound_s\": %.6g, \"bound_over_measured\": %.6g", k->step_s,
			k->step_s / st->step_s);
	fprintf(m, ", \"nvme_read_bytes\": %llu, \"nvme_write_bytes\": %llu, "
		"\"plan_nvme_read_bytes\": %llu, \"plan_nvme_write_bytes\": %llu}\n",
		(unsigned long long)st->nvme_read, (unsigned long long)st->nvme_write,
		(unsigned long long)k->nvme_read, (unsigned long long)k->nvme_write);
	fflush(m);
	sw_report_update(c->a->run, 0);   /* report.html every SW_REPORT_EVERY_S at most */
}

void train_report_step(sw_train_ctx *c, int64_t step, double lr, const sw_exec_stats *st)
{
	const sw_train_args *a = c->a;
	double tps = (double)a->batch_tokens / st->step_s;
	/* model FLOPs (the planner's: recompute and the second clipping pass not counted) */
	double tflops = sw_plan_model_flops(&c->plan) / st->step_s / 1e12;
	c->n_steps++;
	c->n_redone += st->redone;
	c->n_two += st->clip_two;
	c->n_skipped += st->s.skipped;
	if (a->print_steps) {
		char bound[48] = "";
		const sw_plan_cost *k = step_cost(&c->plan, st);
		if (bound_known(c))
			snprintf(bound, sizeof(bound), " | bound/measured %.2f", k->step_s / st->step_s);
		char line[512], ev[40] = "";
		if (isfinite(c->eval_loss))
			snprintf(ev, sizeof(ev), " | eval loss %.4f", c->eval_loss);
		snprintf(line, sizeof(line), "step %lld/%lld | loss %.4f%s | lr %.3e | grad norm %.4f%s | "
			 "%.0f tok/s | %.3f TFLOPS | %.2f s | busy: compute %.2f h2d %.2f d2h %.2f nvme "
			 "r %.2f w %.2f adam %.2f s%s", (long long)step, (long long)a->steps, st->s.loss,
			 ev, lr, st->s.grad_norm, st->s.skipped ? " (skipped: non-finite gradient)" :
			 st->redone ? " (clipped: rolled back and redone)" : "", tps,
			 tflops, st->step_s, st->busy[0], st->busy[1], st->busy[2], st->busy[3],
			 st->busy[4], st->busy[5], bound);
		/* the bar on a terminal; this line for the first, the last and every few steps */
		sw_steps_update(&c->steps, step, st->s.loss, tps, line);
	}
	if (c->metrics)
		metrics_record(c, step, lr, st, tps, tflops);
}

/* Leaves the terminal on a fresh line after the step bar (before any line after the loop). */
void train_report_steps_end(sw_train_ctx *c)
{
	if (c->steps_open)
		sw_steps_end(&c->steps);
	c->steps_open = 0;
}

/* After the loop (finished, stopped or failed at a step): the final peaks in run.json, then
 * report.html. rc: the loop's result; finished means it reached --steps (not a stop). */
void train_report_finished(sw_train_ctx *c, int rc)
{
	train_report_steps_end(c);
	if (c->a->run) {
		train_run_json_end(&c->rr, c->a->run, c->be->peak, c->dev_peak, sw_now() - c->t_train,
				   !rc && c->last_step >= c->a->steps);
		if (c->metrics)
			sw_report_update(c->a->run, 1);
	}
	free(c->placement);
	c->placement = NULL;
	c->rr.placement = NULL;
}

void train_report_summary(const sw_train_ctx *c, int64_t first)
{
	const sw_train_args *a = c->a;
	/* host memory as the kernel counts it: the peak resident set (pinned buffers and, on the
	 * CPU backend, the device arena are inside it) and what the process held before spillway
	 * allocated anything (code, libraries, the CUDA runtime's own) */
	uint64_t hwm = proc_status_bytes("VmHWM:");
	printf("train: %lld steps in %.1f s; %s arena peak %.1f MiB of %.1f MiB; host peak RSS "
	       "%.1f MiB (%.1f MiB of it before loading: program, libraries%s), pinned %.1f MiB\n",
	       (long long)(c->last_step - first + 1), sw_now() - c->t_train, c->cpu ? "device" : "GPU",
	       (double)c->be->peak / 1048576.0, (double)c->be->budget / 1048576.0,
	       (double)hwm / 1048576.0, (double)c->rss_start / 1048576.0, c->cpu ? "" : ", CUDA context",
	       (double)sw_exec_host_bytes(c->ex) / 1048576.0);
	if (!c->cpu) {
		/* measured, not planned: the device's free memory against the baseline taken
		 * before the context existed, sampled after every step */
		/* without --gpu-mem: against all the run was planned for (arena, context, kernels) */
		uint64_t lim = a->gpu_mem ? a->gpu_mem :
			       c->be->budget + c->ctx_bytes + SW_CUDA_LAZY_ALLOWANCE;
		printf("train: GPU memory measured (cudaMemGetInfo): peak %.1f MiB, %s %s %.1f MiB\n",
		       (double)c->dev_peak / 1048576.0, c->dev_peak > lim ? "OVER" : "within",
		       a->gpu_mem ? "--gpu-mem" : "the planned arena + context + kernels",
		       (double)lim / 1048576.0);
	}
	if (a->clip > 0 && c->n_steps)
		printf("train: clipping: %lld of %lld steps redone (%.2f %%: the norm needed clipping, "
		       "%s), %lld skipped (non-finite gradient)\n", (long long)c->n_redone,
		       (long long)c->n_steps, 100.0 * (double)c->n_redone / (double)c->n_steps,
		       c->plan.speculative ? "rolled back and run again with the scale" :
		       "two passes every step: none is redone", (long long)c->n_skipped);
	if (c->n_two)
		printf("train: clipping: %lld of %lld steps ran two passes instead (clipping fired on "
		       "more than %.1f %% of the steps before them)\n", (long long)c->n_two,
		       (long long)c->n_steps, 100.0 * sw_plan_clip_break_even(&c->plan));
	if (c->n_commits)
		printf("train: %lld commit%s (every %lld steps: %s) took %.3f s, %.2f %% of the steps' %.1f s\n",
		       (long long)c->n_commits, c->n_commits == 1 ? "" : "s", (long long)c->commit_every,
		       c->commit_why, c->commit_s, c->steps_s > 0 ? 100.0 * c->commit_s / c->steps_s : 0.0,
		       c->steps_s);
	train_commit_summary(c);
	if (a->run && c->last_saved)
		printf("train: saved step %lld in %s; export it with: spillway export --run %s --out DIR\n",
		       (long long)c->last_saved, a->run, a->run);
	if (c->n_nvme && a->keep_nvme)
		printf("train: --keep-nvme: the NVMe scratch file stays in %s/%s%s\n", c->nvme_dir[0],
		       SW_TRAIN_NVME_FILE, c->n_nvme > 1 ? " (and in each other --nvme directory)" : "");
	else if (a->no_save)
		printf("train: --no-save: nothing was kept\n");
	fflush(stdout);
}
