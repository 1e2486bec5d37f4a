/* The run report: RUN/report.html, one self-contained page (inline SVG and CSS, no script, no
 * network) drawn from the run directory's plain files, so a driver only writes simple things.
 *
 * Inputs (docs/formats.md has the fields):
 *   RUN/metrics.jsonl  one JSON object per line with an integer "step": a training step's
 *                      "loss", "tokens_per_s", "bound_over_measured" (absent or null: not
 *                      computed), "step_s" and the busy seconds "compute_s", "h2d_s", "d2h_s",
 *                      "nvme_read_s", "nvme_write_s", "optim_s"; a line with "eval_loss" is an
 *                      evaluation at that step. A step logged twice (a resumed run redoes the
 *                      steps after its last save) is drawn from its last line.
 *   RUN/run.json       what the run is: command line, backend, budgets, placement table and
 *                      measured peaks, written by sw_report_write_run().
 * Both files written by report code go through a temporary file and a rename, so a reader (a
 * browser reloading the page) never sees half a file, and a failure leaves the old one. */
#ifndef SW_CORE_REPORT_H
#define SW_CORE_REPORT_H
#include <stdint.h>

/* What run.json holds besides the command line. Strings may be NULL; sizes are bytes, 0 where
 * not given or not measured (yet). */
typedef struct sw_report_run {
	const char *backend;        /* "cpu" or "cuda": chooses the words ("compute arena" or "GPU") */
	const char *device;         /* the backend's device name */
	int64_t steps;              /* --steps: the step the run goes to */
	uint64_t gpu_mem, cpu_mem;  /* --gpu-mem, --cpu-mem as given (0: default) */
	const char *nvme;           /* --nvme as given */
	const char *placement;      /* the placement table as printed */
	uint64_t arena_budget;      /* the backend arena the plan runs in */
	uint64_t arena_peak;        /* measured: its peak use */
	uint64_t host_peak_rss;     /* measured: the process's peak resident set (VmHWM) */
	uint64_t pinned;            /* pinned host buffers */
	uint64_t device_peak;       /* measured on the device (cudaMemGetInfo); 0 on the CPU backend */
	double load_s, train_s;     /* measured: loading the state, the training loop (0: not yet) */
	int finished;               /* 1: the run has ended and the peaks are final */
} sw_report_run;

/* Remembers the process's command line for run.json (core/main.c calls it first thing). */
void sw_report_set_cmdline(int argc, char **argv);

/* Writes RUN/run.json atomically. Returns 0 or -errno after one error line. */
int sw_report_write_run(const char *run, const sw_report_run *r);

/* Writes RUN/report.html atomically from RUN/metrics.jsonl and RUN/run.json (absent: left out).
 * Returns 0, or -errno / -EINVAL after one error line naming the file (and line) at fault;
 * report.html is then as it was. */
int sw_report_write(const char *run);

/* For a training loop: sw_report_write() when `force` or when SW_REPORT_EVERY_S seconds (or 50
 * times what the last write took, if more) have passed since this process last wrote it. */
#define SW_REPORT_EVERY_S 5.0
int sw_report_update(const char *run, int force);
#endif
