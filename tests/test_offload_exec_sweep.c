/* The plan is the executor's program (issue 13, Done when 1 and 2): over random combinations of
 * model shape (tied or not, qwen2's q/k/v biases), budgets (at the planner's minimum, just above
 * it, far above), --prefetch 1-4, micro-batch rows, clipping on or off (one or two backward
 * passes) and one or two optimizer slots, the executor on the CPU backend allocates exactly the
 * plan's buffer table, cell by cell (sw_exec_create checks it too; here it is compared from the
 * outside), inside the budgets, with an NVMe file of exactly the plan's NVMe total. A sampled
 * subset trains one step in a child process and measures its peaks: the device arena's
 * high-water mark against --gpu-mem, the peak resident set grown since before the backend
 * existed (the kernel's VmHWM) against --gpu-mem + --cpu-mem (on the CPU backend the "device"
 * arena is host memory too), the NVMe file's size on disk against the plan's NVMe total.
 * Then the named regressions of issue 13. */
#include "tests/offload_exec_harness.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? rng % n : 0;
}

typedef struct combo {
	sw_config c;
	int seq, rows, micro, prefetch, slots, fp32;
	double clip;
	int speculate;           /* clipping asks for one speculative pass (rollback rows) */
	int gpu_kind, cpu_kind;       /* 0 at the minimum, 1 just above, 2 far above */
	uint64_t host_reserve;        /* held back from --cpu-mem (0 for two thirds) */
} combo;

static void combo_make(combo *k)
{
	memset(k, 0, sizeof(*k));
	sw_config *c = &k->c;
	int qwen = (int)rnd(3) == 0;
	snprintf(c->model_type, sizeof(c->model_type), "%s", qwen ? "qwen2" : "llama");
	c->attention_bias = qwen;
	c->n_heads = 1 << rnd(3);                          /* 1, 2, 4 */
	c->n_kv_heads = c->n_heads >> rnd(2);
	c->n_kv_heads = c->n_kv_heads ? c->n_kv_heads : 1;
	c->head_dim = 8 << rnd(2);                         /* 8, 16 */
	c->dim = c->n_heads * c->head_dim * (1 + (int)rnd(2));
	c->n_layers = 1 + (int)rnd(4);
	c->ffn_dim = 16 + 8 * (int)rnd(12);
	c->vocab = 17 + (int)rnd(300);
	c->max_pos = 256;
	c->rope_theta = 10000;
	c->rms_eps = 1e-5;
	c->tie_embeddings = (int)rnd(2);
	c->dtype = SW_DTYPE_F32;
	c->bos_id = c->eos_id = -1;
	k->seq = 4 << rnd(3);                              /* 4, 8, 16 */
	k->rows = 1 + (int)rnd(2);
	k->micro = 1 + (int)rnd(4);
	k->prefetch = 1 + (int)rnd(4);
	k->slots = 1 + (int)rnd(2);
	k->fp32 = (int)rnd(4) == 0;
	k->clip = rnd(2) ? 1.0 : 0.0;
	k->gpu_kind = (int)rnd(3);
	k->cpu_kind = (int)rnd(3);
	k->host_reserve = rnd(3) ? 0 : rnd(1 << 20);
	k->speculate = k->clip > 0 && rnd(3) != 0;
}

static void input_of(const combo *k, const sw_table *tt, sw_plan_input *in)
{
	hx_input(in, tt, k->micro * k->rows, k->seq, k->fp32, 2048 << rnd(3));
	in->micro_rows = k->rows;
	in->prefetch = k->prefetch;
	in->slots = k->slots;
	in->passes = k->clip > 0 ? 2 : 1;
	in->speculate = k->speculate;
	in->cpu_device = 1;
	in->host_reserve = k->host_reserve;
	in->gpu_reserve = hx_cpu_scratch(tt, in);   /* as train holds it back on the CPU backend */
}

static uint64_t budget_of(int kind, uint64_t min, uint64_t far)
{
	return kind == 0 ? min : kind == 1 ? min + 1 + rnd(64 << 10) : (far > min ? far : min) + (1 << 20);
}

/* Budgets for the combination: the GPU's first (its minimum does not depend on the others), then
 * the host's minimum given it. Far above: everything the model needs on that tier. */
static void budgets(const combo *k, sw_plan_input *in)
{
	uint64_t gmin, cmin;
	CHECK(sw_plan_min_budget(in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
	sw_plan all;
	in->gpu_mem = 1ull << 40;
	in->cpu_mem = 1ull << 40;
	CHECK(sw_plan_build(&all, in) == 0);
	in->gpu_mem = budget_of(k->gpu_kind, gmin, all.total[SW_TIER_GPU]);
	sw_plan_free(&all);
	CHECK(sw_plan_min_budget(in, SW_TIER_HOST, &cmin, NULL, 0) == 0);
	uint64_t far = in->gpu_mem >= (1ull << 30) ? cmin : cmin + 14 * (uint64_t)in->tt->total * 2;
	in->cpu_mem = budget_of(k->cpu_kind, cmin, far);
}

static uint64_t proc_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) && sscanf(line + strlen(key), "%llu", &v) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)v * 1024;
}

/* The test's own buffers (weights of the largest group, tokens), touched before the baseline. */
typedef struct bufs { float *w; int32_t *x, *y; int64_t n; } bufs;

static void bufs_make(bufs *b, const combo *k, const sw_table *tt)
{
	b->n = (int64_t)k->micro * k->rows * k->seq;
	b->w = malloc((size_t)tt->max_group_numel * 4);
	b->x = malloc((size_t)b->n * 4);
	b->y = malloc((size_t)b->n * 4);
	CHECK(b->w && b->x && b->y);
	memset(b->w, 0, (size_t)tt->max_group_numel * 4);
	for (int64_t i = 0; i < b->n; i++) {
		b->x[i] = (int32_t)rnd((uint64_t)tt->cfg.vocab);
		b->y[i] = (int32_t)rnd((uint64_t)tt->cfg.vocab);
	}
}

static void bufs_free(bufs *b)
{
	free(b->w);
	free(b->x);
	free(b->y);
}

/* Sets random weights, trains one step, checks the peaks against the budgets (rss0: the
 * resident set before the backend existed; 0 for the warm-up, which checks no peak). */
static int train_one(hx_run *r, const sw_table *tt, const bufs *b, uint64_t rss0, int strict)
{
	for (int g = 0; g < tt->ngroups; g++) {
		for (int64_t i = 0; i < tt->g[g].numel; i++)
			b->w[i] = (float)((double)rnd(2000) / 1000.0 - 1.0) * 0.05f;
		CHECK(sw_exec_set_group(r->ex, g, b->w) == 0);
	}
	int32_t *x = b->x, *y = b->y;
	sw_exec_stats st;
	CHECK(sw_exec_step(r->ex, x, y, 1, 1e-3, &st) == 0);
	CHECK(isfinite(st.s.loss) && st.s.loss > 0);
	CHECKF(r->be->peak <= r->gpu_mem, "device arena high-water %llu > --gpu-mem %llu",
	       (unsigned long long)r->be->peak, (unsigned long long)r->gpu_mem);
	CHECKF(sw_exec_host_bytes(r->ex) <= r->cpu_mem, "pinned %llu > --cpu-mem %llu",
	       (unsigned long long)sw_exec_host_bytes(r->ex), (unsigned long long)r->cpu_mem);
	if (!rss0)
		return 0;                    /* the warm-up */
	/* the resident set grown since before the backend existed: the arena's touched pages (the
	 * CPU backend's op scratch inside, a held device row), the pinned buffers, and the
	 * process's own machinery (threads, I/O rings, the executor's bookkeeping: the held host
	 * row). Within the budgets everywhere, at the minimum too. */
	uint64_t grown = proc_kib("VmHWM:") - rss0, sum = r->gpu_mem + r->cpu_mem;
	if (getenv("SWEEP_DEBUG"))
		fprintf(stderr, "rss0 %llu hwm %llu gpu %llu cpu %llu arena peak %llu pinned %llu\n",
			(unsigned long long)rss0, (unsigned long long)proc_kib("VmHWM:"),
			(unsigned long long)r->gpu_mem, (unsigned long long)r->cpu_mem,
			(unsigned long long)r->be->peak, (unsigned long long)sw_exec_host_bytes(r->ex));
	if (getenv("SWEEP_RATIO"))
		fprintf(stderr, "ratio %.3f grown %llu sum %llu strict %d\n", (double)grown / (double)sum,
			(unsigned long long)grown, (unsigned long long)sum, strict);
	CHECKF(grown <= sum, "peak RSS grew %llu > --gpu-mem + --cpu-mem %llu%s",
	       (unsigned long long)grown, (unsigned long long)sum, strict ? "" : " (near the minimum)");
	if (r->plan.total[SW_TIER_NVME]) {
		char f[512];
		struct stat sb;
		snprintf(f, sizeof(f), "%s/exec-test.data", hx_nvme_dir());
		CHECK(stat(f, &sb) == 0);
		CHECKF((uint64_t)sb.st_size == r->plan.total[SW_TIER_NVME], "NVMe file %lld B, plan %llu B",
		       (long long)sb.st_size, (unsigned long long)r->plan.total[SW_TIER_NVME]);
	}
	return 0;
}

/* The process's fixed machinery, which does not grow with the budgets: BLAS's buffers, malloc's
 * per-thread arenas, thread stacks, one step of a tiny all-resident model with clipping and
 * one with everything streamed. The baseline of the peak-RSS check is taken after it. */
static void warm_up(void)
{
	combo k;
	combo_make(&k);
	k.c.dim = 64;
	k.c.n_heads = 4;
	k.c.n_kv_heads = 2;
	k.c.head_dim = 16;
	k.c.ffn_dim = 128;
	k.c.vocab = 320;
	k.seq = 16;
	k.micro = 2;
	k.rows = 2;
	for (int kind = 0; kind < 2; kind++) {
		k.gpu_kind = k.cpu_kind = kind ? 2 : 0;
		sw_table tt;
		CHECK(sw_table_build(&tt, &k.c) == 0);
		sw_plan_input in;
		input_of(&k, &tt, &in);
		budgets(&k, &in);
		sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8 };
		hx_run r;
		bufs b;
		bufs_make(&b, &k, &tt);
		CHECK(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, 1.0, &h) == 0);
		train_one(&r, &tt, &b, 0, 0);
		hx_close(&r);
		bufs_free(&b);
		sw_table_free(&tt);
	}
}

/* One combination: plan, executor (hx_open compares its allocations with the table cell by
 * cell and with the budgets), and for a sample one trained step in a child process. */
static int spec_rows[3];      /* combinations with held-gradient rows (device, host), with second-state-set rows */

static void run_combo(int i, const combo *k, int train, int *trained, int *near_min_over)
{
	sw_table tt;
	CHECK(sw_table_build(&tt, &k->c) == 0);
	sw_plan_input in;
	input_of(k, &tt, &in);
	budgets(k, &in);
	{
		sw_plan p;
		if (!sw_plan_build(&p, &in)) {
			spec_rows[0] += p.bytes[SW_TIER_GPU][SW_PURPOSE_HELD_GRAD] > 0;
			spec_rows[1] += p.bytes[SW_TIER_HOST][SW_PURPOSE_STATE_B] > 0;
			spec_rows[2] += p.bytes[SW_TIER_HOST][SW_PURPOSE_HELD_GRAD] > 0;
		}
		sw_plan_free(&p);
	}
	sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 };
	if (!train) {
		hx_run r;
		CHECKF(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, k->clip, &h) == 0, "combo %d", i);
		hx_close(&r);
	} else {
		fflush(stdout);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			warm_up();
			bufs b;
			bufs_make(&b, k, &tt);
			uint64_t rss0 = proc_kib("VmRSS:");
			FILE *f = fopen("/proc/self/clear_refs", "w");   /* VmHWM := VmRSS now */
			if (f) {
				fputs("5", f);
				fclose(f);
			}
			hx_run r;
			CHECKF(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, k->clip, &h) == 0, "combo %d", i);
			int over = train_one(&r, &tt, &b, rss0, k->gpu_kind == 2 || k->cpu_kind == 2);
			hx_close(&r);
			fflush(stdout);
			_exit(over ? 10 : 0);
		}
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECKF(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 10),
		       "combo %d: trained step failed", i);
		*near_min_over += WEXITSTATUS(status) == 10;
		(*trained)++;
	}
	sw_table_free(&tt);
}

/* --prefetch 1 at the planner's minimum device budget: the plan counts one window buffer and
 * the executor takes one (it used to take two and fail "the plan's accounting is short"). */
/* A fixed combination for the named cases: bf16, 2 micro-batches of one 8-token row. */
static void combo_fixed(combo *k)
{
	combo_make(k);
	k->seq = 8;
	k->rows = 1;
	k->micro = 2;
	k->fp32 = 0;
}

static void regression_prefetch1(void)
{
	combo k;
	combo_fixed(&k);
	k.c.n_layers = 3;
	k.prefetch = 1;
	k.gpu_kind = k.cpu_kind = 0;
	sw_table tt;
	CHECK(sw_table_build(&tt, &k.c) == 0);
	sw_plan_input in;
	input_of(&k, &tt, &in);
	budgets(&k, &in);
	sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8 };
	hx_run r;
	CHECK(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, 1.0, &h) == 0);
	CHECK(r.plan.streaming && sw_plan_window_buffers(&r.plan) == 1);
	uint64_t took[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	sw_exec_taken(r.ex, took);
	CHECK(took[SW_TIER_GPU][SW_PURPOSE_WINDOW] == r.plan.bytes[SW_TIER_GPU][SW_PURPOSE_WINDOW]);
	printf("ok regression prefetch 1 at the minimum --gpu-mem %llu: one window buffer, %llu B\n",
	       (unsigned long long)in.gpu_mem, (unsigned long long)took[SW_TIER_GPU][SW_PURPOSE_WINDOW]);
	hx_close(&r);
	sw_table_free(&tt);
}

/* A tied model whose embedding stays on the device while the layers stream: the pinned
 * gradient buffers are sized by the largest streamed group (not the embedding), inside
 * --cpu-mem at its minimum. */
/* One-pass clipping's rows in every tier: held gradients on the device (resident groups) and on
 * the host (one NVMe slot, deferred updates), a second state set (host state, two slots); the
 * executor takes exactly the table and trains a step inside the budgets. */
static void regression_clip_rows(void)
{
	int seen[3] = { 0 };
	for (int v = 0; v < 2; v++) {
		combo k;
		combo_fixed(&k);
		k.c.n_layers = 3;
		k.clip = 1.0;
		k.speculate = 1;
		k.slots = v ? 1 : 2;
		k.gpu_kind = 1;
		k.cpu_kind = v ? 0 : 2;
		sw_table tt;
		CHECK(sw_table_build(&tt, &k.c) == 0);
		sw_plan_input in;
		input_of(&k, &tt, &in);
		in.rates.gemm_tflops = 1e-4;   /* compute-bound: the planner keeps one pass (and its rows) */
		budgets(&k, &in);
		if (v)   /* room for every streamed group's gradient beside the minimum */
			in.cpu_mem += (uint64_t)tt.total * 4 + (uint64_t)tt.ngroups * 4096;
		sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8 };
		hx_run r;
		bufs b;
		bufs_make(&b, &k, &tt);
		CHECK(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, 1.0, &h) == 0);
		CHECKF(r.plan.speculative, "%s", r.plan.two_pass_why);
		seen[0] += r.plan.bytes[SW_TIER_GPU][SW_PURPOSE_HELD_GRAD] > 0;
		seen[1] += r.plan.bytes[SW_TIER_HOST][SW_PURPOSE_HELD_GRAD] > 0;
		seen[2] += r.plan.bytes[SW_TIER_HOST][SW_PURPOSE_STATE_B] > 0;
		train_one(&r, &tt, &b, 0, 0);
		hx_close(&r);
		bufs_free(&b);
		sw_table_free(&tt);
	}
	CHECKF(seen[0] && seen[1] && seen[2], "held on the device %d, on the host %d, second sets %d",
	       seen[0], seen[1], seen[2]);
	printf("ok regression one-pass clipping's rows: held gradients on the device and on the host, "
	       "second state sets: allocations = the table, a step inside the budgets\n");
}

static void regression_tied(void)
{
	combo k;
	combo_fixed(&k);
	sw_config *c = &k.c;
	c->tie_embeddings = 1;
	c->vocab = 512;
	c->dim = 32;
	c->n_heads = c->n_kv_heads = 2;
	c->head_dim = 16;
	c->ffn_dim = 32;
	c->n_layers = 3;
	k.prefetch = 2;
	k.cpu_kind = 0;
	sw_table tt;
	CHECK(sw_table_build(&tt, c) == 0);
	CHECK(tt.g[0].numel > tt.g[1].numel);          /* the embedding is the largest group */
	sw_plan_input in;
	input_of(&k, &tt, &in);
	uint64_t gmin, cmin;
	CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
	/* room for the embedding's state and one more P16 window buffer's worth, not all */
	in.gpu_mem = gmin + (uint64_t)tt.g[0].numel * 14 + 4096;
	CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &cmin, NULL, 0) == 0);
	in.cpu_mem = cmin;
	sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8 };
	hx_run r;
	CHECK(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, 0.0, &h) == 0);
	CHECK(r.plan.tier[0][SW_STATE_P32] == SW_TIER_GPU && r.plan.streaming);
	uint64_t took[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	sw_exec_taken(r.ex, took);
	uint64_t want = 2 * (((uint64_t)tt.g[1].numel * 4 + 4095) / 4096 * 4096);
	int64_t head = tt.g[tt.ngroups - 1].numel;
	if ((uint64_t)head > (uint64_t)tt.g[1].numel && r.plan.tier[tt.ngroups - 1][SW_STATE_P32] != SW_TIER_GPU)
		want = 2 * (((uint64_t)head * 4 + 4095) / 4096 * 4096);
	CHECKF(took[SW_TIER_HOST][SW_PURPOSE_GRAD] == want, "%llu vs %llu",
	       (unsigned long long)took[SW_TIER_HOST][SW_PURPOSE_GRAD], (unsigned long long)want);
	CHECK(sw_exec_host_bytes(r.ex) <= in.cpu_mem);
	printf("ok regression tied, embedding resident: pinned gradient buffers %llu B (largest streamed "
	       "group), pinned total %llu B of --cpu-mem %llu B\n", (unsigned long long)want,
	       (unsigned long long)sw_exec_host_bytes(r.ex), (unsigned long long)in.cpu_mem);
	hx_close(&r);
	sw_table_free(&tt);
}

/* Everything on NVMe: the file the engine creates is the plan's NVMe total (it used to be a
 * guess with slack, larger than what `plan` printed), and every extent fits in it. */
static void regression_nvme_total(void)
{
	combo k;
	combo_fixed(&k);
	k.c.n_layers = 4;
	k.gpu_kind = k.cpu_kind = 0;
	k.slots = 2;
	sw_table tt;
	CHECK(sw_table_build(&tt, &k.c) == 0);
	sw_plan_input in;
	input_of(&k, &tt, &in);
	in.chunk_params = 2048;
	budgets(&k, &in);
	sw_adamw_hparams h = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8 };
	hx_run r;
	CHECK(hx_open(&r, &tt, &in, in.gpu_mem, in.cpu_mem, 1.0, &h) == 0);
	CHECK(r.plan.total[SW_TIER_NVME] > 0);
	char f[512];
	struct stat sb;
	snprintf(f, sizeof(f), "%s/exec-test.data", hx_nvme_dir());
	CHECK(stat(f, &sb) == 0 && (uint64_t)sb.st_size == r.plan.total[SW_TIER_NVME]);
	CHECK(sw_io_allocated(r.io) <= sw_io_capacity(r.io));
	printf("ok regression NVMe total: file %lld B = plan %llu B (extents %llu B)\n", (long long)sb.st_size,
	       (unsigned long long)r.plan.total[SW_TIER_NVME], (unsigned long long)sw_io_allocated(r.io));
	hx_close(&r);
	sw_table_free(&tt);
}

/* The check itself: a table whose cell says one thing while its rows allocate another (a row's
 * total off by one arena block) makes sw_exec_create fail with an internal error, freeing
 * everything, instead of running over a budget silently. */
static void regression_check_catches(void)
{
	combo k;
	combo_fixed(&k);
	k.gpu_kind = k.cpu_kind = 2;
	sw_table tt;
	CHECK(sw_table_build(&tt, &k.c) == 0);
	sw_plan_input in;
	input_of(&k, &tt, &in);
	budgets(&k, &in);
	sw_plan p;
	CHECK(sw_plan_build(&p, &in) == 0);
	int lied = 0;
	for (int r = 0; r < p.nbuf && !lied; r++)
		if (p.buf[r].kind == SW_BUF_GRAD) {
			p.buf[r].total += 256;
			lied = 1;
		}
	CHECK(lied);
	sw_backend *be;
	sw_backend_opts bo = { .mem_budget = in.gpu_mem, .act = in.fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16, .threads = 1 };
	CHECK(sw_backend_create("cpu", &bo, &be) == 0);
	sw_exec_opts eo = { .clip = 1.0, .cpu_threads = 1 };
	sw_exec *ex = NULL;
	fflush(stdout);
	CHECK(sw_exec_create(be, &tt, &p, NULL, &eo, &ex) == -EPROTO && !ex);
	CHECK(be->used == 0);
	printf("ok a table that disagrees with its allocations: sw_exec_create fails (internal error), "
	       "nothing left allocated\n");
	sw_backend_destroy(be);
	sw_plan_free(&p);
	sw_table_free(&tt);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 240, every = 8, trained = 0, over = 0;
	if (argc > 2)
		rng ^= (uint64_t)strtoull(argv[2], NULL, 0) * 0x2545f4914f6cdd1dull;
	int seen[3][3] = { { 0 } }, streamed = 0;
	for (int i = 0; i < n; i++) {
		combo k;
		combo_make(&k);
		seen[k.gpu_kind][k.cpu_kind]++;
		streamed += k.gpu_kind < 2;
		run_combo(i, &k, i % every == 0, &trained, &over);
	}
	printf("ok %d combinations: allocations = the plan's buffer table in every cell, inside the "
	       "budgets; %d trained a step: device arena high-water <= --gpu-mem, pinned <= --cpu-mem, "
	       "NVMe file = the plan's total, peak RSS growth <= --gpu-mem + --cpu-mem in all\n", n,
	       trained);
	CHECK(over == 0);
	/* the rows of one-pass clipping are among the cells compared */
	printf("   one-pass clipping's rollback rows: held gradients on the device in %d combinations, "
	       "on the host (one slot, deferred) in %d, second state sets in %d\n", spec_rows[0],
	       spec_rows[2], spec_rows[1]);
	CHECK(spec_rows[0] > 0 && spec_rows[1] > 0);
	for (int g = 0; g < 3; g++)
		CHECK(seen[g][0] && seen[g][1] && seen[g][2]);
	CHECK(streamed > 0 && trained >= n / every);
	regression_prefetch1();
	regression_clip_rows();
	regression_tied();
	regression_nvme_total();
	regression_check_catches();
	return 0;
}
