/* An NVMe request of the optimizer thread that the I/O engine refuses at submission (nothing
 * queued; here a read of state whose pieces the engine holds as never written, -ENODATA, as
 * after a failed write) gives one line of its own naming the request, the data file, the cause
 * and what to do, and the step (or the drain after it) fails with the engine's -errno: through
 * the read-ahead of the step's first NVMe update and, with the read-ahead off
 * (SW_OPT_READ_AHEAD=0), through the update's own read. The pieces are marked never written
 * with the engine's checksums as a resume sets them (sw_exec_commit_restore, all unwritten). */
#include "tests/offload_exec_harness.h"
#include "offload/exec_commit.h"

#include <errno.h>
#include <fcntl.h>

#define M 2
#define T 16

static const sw_adamw_hparams H = { .lr = 0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
				    .weight_decay = 0.1 };

/* Runs step 2 of a run whose group g's P32 pieces were marked never written after step 1, with
 * stderr into a file; returns what stderr got (malloc'ed) and the step's and drain's codes. */
static char *failed_step(const sw_table *tt, sw_plan_input *in, uint64_t cpu, int *rc_step, int *rc_sync,
			 int *group)
{
	hx_run h;
	CHECKF(hx_open(&h, tt, in, in->gpu_mem, cpu, 0.0, &H) == 0, "plan failed: %s", h.plan.why);
	for (int g = 0; g < tt->ngroups; g++) {
		float *w = hx_init_group(tt, g, 97531ull);
		CHECK(sw_exec_set_group(h.ex, g, w) == 0);
		free(w);
	}
	int32_t x[M * T], y[M * T];
	sw_exec_stats st;
	hx_make_tokens(x, y, M * T, 1, (int)tt->cfg.vocab);
	CHECK(sw_exec_step(h.ex, x, y, 1, 1e-3, &st) == 0);
	/* the highest group with NVMe state: the step's first NVMe update (the read-ahead's) */
	int g = -1;
	for (int i = 0; i < tt->ngroups; i++)
		if (sw_exec_opt_on_nvme(h.ex, i))
			g = i;
	CHECKF(g >= 0, "the plan put no optimizer state on NVMe");
	uint32_t n = 0;
	CHECK(sw_exec_commit_sums(h.ex, g, 0, NULL, NULL, &n) == 0 && n > 0);
	uint64_t *sums = calloc(n, 8);
	uint8_t *written = calloc(n, 1);   /* every piece: never written */
	CHECK(sums && written);
	CHECK(sw_exec_commit_restore(h.ex, sw_exec_slot(h.ex), g, 0, sums, written, n) == 0);
	free(sums);
	free(written);

	char path[300];
	snprintf(path, sizeof(path), "%s/stderr.txt", hx_nvme_dir());
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(saved >= 0 && fd >= 0 && dup2(fd, 2) == 2);
	close(fd);
	hx_make_tokens(x, y, M * T, 2, (int)tt->cfg.vocab);
	*rc_step = sw_exec_step(h.ex, x, y, 2, 1e-3, &st);
	*rc_sync = sw_exec_sync(h.ex);
	fflush(stderr);
	CHECK(dup2(saved, 2) == 2);
	close(saved);
	hx_close(&h);
	FILE *f = fopen(path, "r");
	CHECK(f);
	char *text = calloc(1, 8192);
	CHECK(text);
	size_t got = fread(text, 1, 8191, f);
	text[got] = 0;
	fclose(f);
	*group = g;
	return text;
}

int main(void)
{
	sw_config c = hx_tiny_config(0, 0);
	sw_table tt;
	CHECK(sw_table_build(&tt, &c) == 0);
	sw_plan_input in;
	hx_input(&in, &tt, M, T, 0, 4096);
	uint64_t gmin, hmin, hmin1;
	hx_min_budgets(&in, &gmin, &hmin, &hmin1);
	in.gpu_mem = gmin;
	in.slots = 1;   /* --checkpoint-only: the restore keeps no slot */
	/* P16 on the host, the first layers' optimizer state too, the last layers' on NVMe */
	uint64_t cpu = hx_host_some_opt(&tt, hmin, M, T);
	char file[300];
	snprintf(file, sizeof(file), "%s/exec-test.data", hx_nvme_dir());
	for (int ra = 1; ra >= 0; ra--) {
		if (ra)
			unsetenv("SW_OPT_READ_AHEAD");
		else
			setenv("SW_OPT_READ_AHEAD", "0", 1);
		int rs, rsync, g;
		char *err = failed_step(&tt, &in, cpu, &rs, &rsync, &g);
		const char *how = ra ? "read ahead" : "read by the update";
		CHECKF(rs == -ENODATA || (rs == 0 && rsync == -ENODATA),
		       "%s: step %d, drain %d, expected -ENODATA (%d) from one of them", how, rs, rsync, -ENODATA);
		int lines = 0;
		for (const char *p = err; *p; p++)
			lines += *p == '\n';
		CHECKF(lines == 1, "%s: expected one line on stderr, got %d:\n%s", how, lines, err);
		char want[80];
		snprintf(want, sizeof(want), "read of P32 of group %d (slot 0) could not be queued", g);
		CHECKF(strstr(err, want), "%s: the line does not say '%s': %s", how, want, err);
		CHECKF(strstr(err, file), "%s: the line does not name %s: %s", how, file, err);
		CHECKF(strstr(err, "never written"), "%s: the line does not give the cause: %s", how, err);
		CHECKF(strstr(err, "--resume from the last save or commit"), "%s: the line does not say what to do: %s",
		       how, err);
		printf("ok P32 of group %d %s, refused: step %d, drain %d, one line: %s", g, how, rs, rsync, err);
		free(err);
	}
	unsetenv("SW_OPT_READ_AHEAD");
	sw_table_free(&tt);
	return 0;
}
