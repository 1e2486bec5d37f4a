/* The step boundary (issue 17): the next step's forward overlapping the last step's CPU
 * updates and NVMe write-backs, and the next step's first NVMe optimizer state read ahead during
 * the forward, give the bits of the drained schedule (SW_STEP_OVERLAP=0): losses, norms and
 * final P32, m, v, for optimizer state on the host, on NVMe with two slots and with one,
 * everything on NVMe, without clipping and with exact clipping (one speculative pass, two
 * passes), with the state read out in the middle (a drain, as a commit makes) and with the run
 * resumed from it in a new executor. A delayed update of the group the forward needs first
 * (SW_TEST_DELAY_ADAM) changes nothing; with the wait for it removed (SW_TEST_NO_WAIT) the
 * result differs, so these comparisons would catch a missing wait. SW_TEST_QUICK=1 (the GPU
 * run of it, SW_TEST_BACKEND=cuda) keeps the untied model and two of the clipping modes. */
#include "tests/offload_exec_harness.h"

#include <math.h>
#include <stdlib.h>

#define STEPS 6
#define MID 3
#define M 4
#define T 16

typedef struct result {
	double loss[STEPS], norm[STEPS];
	int skipped[STEPS], redone[STEPS];
	int64_t read_ahead, reordered;
	int opt_nvme;             /* groups whose optimizer state is on NVMe */
	float *state[3];          /* P32, m, v of all groups, table order */
} result;

static float *init_group(const sw_table *tt, int g) { return hx_init_group(tt, g, 24681357ull); }

/* easy and hard batches in turn: one threshold clips some steps and not others */
static void make_data(const sw_config *c, int32_t *in, int32_t *tg, int step)
{
	hx_make_tokens(in, tg, M * T, step, step % 2 ? (int)c->vocab : 4);
}

static const sw_adamw_hparams H = { .lr = 0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
				    .weight_decay = 0.1 };

static double lr_of(int step) { return 3e-3 * (1.0 - 0.1 * step); }

enum { HOST_OPT, NVME_OPT, NVME_OPT_1SLOT, NVME_ALL, NVME_ALL_1SLOT, NPLACE };
static const char *place_name[NPLACE] = {
	"P16 and optimizer on host", "optimizer state on NVMe", "optimizer on NVMe, 1 slot",
	"everything on NVMe", "everything on NVMe, 1 slot",
};

typedef struct budgets { uint64_t gpu, cpu[NPLACE]; } budgets;

typedef struct mode {
	const char *name;
	double clip;
	int speculate;
} mode;

static const char *const state_name[3] = { "P32", "m", "v" };
static const sw_state states[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };

static void get_state(const sw_table *tt, sw_exec *ex, float *out[3])
{
	for (int k = 0; k < 3; k++) {
		out[k] = malloc((size_t)tt->total * 4);
		int64_t goff = 0;
		for (int g = 0; g < tt->ngroups; goff += tt->g[g++].numel)
			CHECK(sw_exec_get_group(ex, g, states[k], out[k] + goff) == 0);
	}
}

/* P32, m, v of every group into a fresh executor, chunk by chunk (as a resume loads them). */
static void put_state(const sw_table *tt, sw_exec *ex, float *const in[3])
{
	int64_t chunk = sw_exec_xfer_len(ex), goff = 0;
	for (int g = 0; g < tt->ngroups; goff += tt->g[g++].numel)
		for (int k = 0; k < 3; k++)
			for (int64_t off = 0; off < tt->g[g].numel; off += chunk) {
				int64_t n = tt->g[g].numel - off < chunk ? tt->g[g].numel - off : chunk;
				CHECK(sw_exec_put(ex, g, states[k], off, n, in[k] + goff + off) == 0);
			}
}

static void open_run(hx_run *h, const sw_table *tt, const sw_plan_input *in0, const budgets *b,
		     int place, const mode *md)
{
	sw_plan_input in = *in0;
	in.passes = md->clip > 0 ? 2 : 1;
	in.speculate = md->speculate;
	in.slots = place == NVME_OPT_1SLOT || place == NVME_ALL_1SLOT ? 1 : 2;
	CHECKF(hx_open(h, tt, &in, b->gpu, b->cpu[place], md->clip, &H) == 0, "%s: plan failed: %s",
	       place_name[place], h->plan.why);
	int G = tt->ngroups;
	int opt_nvme = hx_count(&h->plan, G, SW_STATE_P32, SW_TIER_NVME);
	int p16_nvme = hx_count(&h->plan, G, SW_STATE_P16, SW_TIER_NVME);
	int opt_gpu = hx_count(&h->plan, G, SW_STATE_P32, SW_TIER_GPU);
	CHECKF(opt_gpu < G, "%s: some group must be updated by the CPU", place_name[place]);
	if (place == HOST_OPT)
		CHECKF(!opt_nvme && !p16_nvme, "%s", place_name[place]);
	if (place == NVME_OPT || place == NVME_OPT_1SLOT)
		CHECKF(opt_nvme > 0 && !p16_nvme, "%s", place_name[place]);
	if (place == NVME_ALL || place == NVME_ALL_1SLOT)
		CHECKF(opt_nvme > 0 && p16_nvme > 0, "%s", place_name[place]);
}

static void set_env(const char *k, const char *v)
{
	if (v)
		setenv(k, v, 1);
	else
		unsetenv(k);
}

/* The optimizer queue's order and depth for the next runs: SW_OPT_ORDER and SW_HOST_GRADS
 * (NULL: the defaults, the update the next forward needs first and as many pinned gradient
 * buffers as the host budget has room for). */
static const char *order_env, *hgrads_env;

/* SW_OPT_READ_AHEAD for the next runs (NULL: the default, at the step boundary and from one NVMe
 * group to the next within a pass; "boundary": the step boundary's only). */
static const char *ra_env;

/* overlap: SW_STEP_OVERLAP's value (NULL: the default, on); resume: the state is read out after
 * step MID and the run goes on in a new executor from it; delay: SW_TEST_DELAY_ADAM. */
static void run(const sw_table *tt, const sw_plan_input *in, const budgets *b, int place,
		const mode *md, const char *overlap, int resume, const char *delay, int no_wait,
		result *r)
{
	set_env("SW_STEP_OVERLAP", overlap);
	set_env("SW_TEST_DELAY_ADAM", delay);
	set_env("SW_TEST_NO_WAIT", no_wait ? "1" : NULL);
	set_env("SW_OPT_ORDER", order_env);
	set_env("SW_HOST_GRADS", hgrads_env);
	set_env("SW_OPT_READ_AHEAD", ra_env);
	memset(r, 0, sizeof(*r));
	hx_run h;
	open_run(&h, tt, in, b, place, md);
	r->opt_nvme = hx_count(&h.plan, tt->ngroups, SW_STATE_P32, SW_TIER_NVME);
	for (int g = 0; g < tt->ngroups; g++) {
		float *w = init_group(tt, g);
		CHECK(sw_exec_set_group(h.ex, g, w) == 0);
		free(w);
	}
	int32_t in_[M * T], tg[M * T];
	int skipped = 0;
	for (int s = 1; s <= STEPS; s++) {
		if (resume && s == MID + 1) {
			/* read out as a commit does (a drain), and again into a new executor */
			float *mid[3];
			get_state(tt, h.ex, mid);
			hx_close(&h);
			open_run(&h, tt, in, b, place, md);
			put_state(tt, h.ex, mid);
			for (int k = 0; k < 3; k++)
				free(mid[k]);
		}
		make_data(&tt->cfg, in_, tg, s);
		sw_exec_stats st;
		CHECK(sw_exec_step(h.ex, in_, tg, s - skipped, lr_of(s - skipped), &st) == 0);
		r->loss[s - 1] = st.s.loss;
		r->norm[s - 1] = st.s.grad_norm;
		r->skipped[s - 1] = st.s.skipped;
		r->redone[s - 1] = st.redone;
		r->read_ahead += st.read_ahead;
		r->reordered += st.reordered;
		skipped += st.s.skipped;
	}
	CHECK(sw_exec_sync(h.ex) == 0);
	get_state(tt, h.ex, r->state);
	hx_close(&h);
	set_env("SW_STEP_OVERLAP", NULL);
	set_env("SW_TEST_DELAY_ADAM", NULL);
	set_env("SW_TEST_NO_WAIT", NULL);
	set_env("SW_OPT_ORDER", NULL);
	set_env("SW_HOST_GRADS", NULL);
	set_env("SW_OPT_READ_AHEAD", NULL);
}

/* 0 when a and b agree bit for bit; else says where first (when loud) and returns 1. */
static int differ(const sw_table *tt, const result *a, const result *b, const char *what, int loud)
{
	for (int s = 0; s < STEPS; s++)
		if (memcmp(&a->loss[s], &b->loss[s], 8) || memcmp(&a->norm[s], &b->norm[s], 8) ||
		    a->skipped[s] != b->skipped[s]) {
			if (loud)
				printf("FAIL %s: step %d loss %.17g vs %.17g, norm %.17g vs %.17g\n", what,
				       s + 1, a->loss[s], b->loss[s], a->norm[s], b->norm[s]);
			return 1;
		}
	for (int k = 0; k < 3; k++)
		for (int64_t i = 0; i < tt->total; i++)
			if (memcmp(&a->state[k][i], &b->state[k][i], 4)) {
				if (loud)
					printf("FAIL %s: %s[%lld] %.9g vs %.9g\n", what, state_name[k],
					       (long long)i, a->state[k][i], b->state[k][i]);
				return 1;
			}
	return 0;
}

static void free_result(result *r)
{
	for (int k = 0; k < 3; k++)
		free(r->state[k]);
}

static void budgets_get(const sw_table *tt, sw_plan_input *in, budgets *b)
{
	uint64_t gmin, hmin, hmin1;
	hx_min_budgets(in, &gmin, &hmin, &hmin1);
	b->gpu = gmin;
	b->cpu[HOST_OPT] = 1ull << 30;
	/* P16 and checkpoints on the host, some optimizer state (with its second set) too: the
	 * first layers' (updated last) on the host, the last layers' on NVMe (regime 3) */
	b->cpu[NVME_OPT] = b->cpu[NVME_OPT_1SLOT] = hx_host_some_opt(tt, hmin, M, T);
	b->cpu[NVME_ALL] = hmin;
	b->cpu[NVME_ALL_1SLOT] = hmin1;
}

static void run_config(int tie)
{
	sw_config c = hx_tiny_config(tie, 0);
	sw_table tt;
	CHECK(sw_table_build(&tt, &c) == 0);
	printf("%s model: %lld parameters, %d groups, %d micro-batches of %d tokens\n",
	       tie ? "tied" : "untied GQA", (long long)tt.total, tt.ngroups, M, T);
	sw_plan_input in;
	hx_input(&in, &tt, M, T, 0, 4096);
	budgets b;
	budgets_get(&tt, &in, &b);
	/* a threshold between the easy and the hard steps' norms (of a run without clipping) */
	mode m0 = { "no clipping", 0.0, 0 };
	result base;
	run(&tt, &in, &b, HOST_OPT, &m0, "0", 0, NULL, 0, &base);
	double lo = INFINITY, hi = 0;
	for (int s = 0; s < STEPS; s++) {
		lo = fmin(lo, base.norm[s]);
		hi = fmax(hi, base.norm[s]);
	}
	free_result(&base);
	double thr = sqrt(lo * hi);
	const mode modes[] = {
		m0, { "clip, two passes", thr, 0 }, { "clip, one speculative pass", thr, 1 },
		{ "clip never firing, speculative", 1e30, 1 },
	};
	const char *qk = getenv("SW_TEST_QUICK");
	int quick = qk && !strcmp(qk, "1");
	for (int place = 0; place < NPLACE; place++)
		for (size_t mi = 0; mi < sizeof(modes) / sizeof(modes[0]); mi += quick ? 2 : 1) {
			const mode *md = &modes[mi];
			result off, on, res;
			run(&tt, &in, &b, place, md, "0", 0, NULL, 0, &off);
			run(&tt, &in, &b, place, md, NULL, 0, NULL, 0, &on);
			run(&tt, &in, &b, place, md, NULL, 1, NULL, 0, &res);
			char what[160];
			snprintf(what, sizeof(what), "%s, %s: overlapped vs drained", place_name[place], md->name);
			CHECK(!differ(&tt, &on, &off, what, 1));
			snprintf(what, sizeof(what), "%s, %s: read out after step %d and resumed vs drained",
				 place_name[place], md->name, MID);
			CHECK(!differ(&tt, &res, &off, what, 1));
			int nclip = 0, nredo = 0;
			for (int s = 0; s < STEPS; s++) {
				nclip += md->clip > 0 && off.norm[s] > md->clip;
				nredo += on.redone[s];
			}
			if (mi % 2 == 0) {   /* the optimizer queue as before: in arrival order, two buffers */
				result old;
				order_env = "fifo";
				hgrads_env = "2";
				run(&tt, &in, &b, place, md, NULL, 0, NULL, 0, &old);
				order_env = hgrads_env = NULL;
				snprintf(what, sizeof(what), "%s, %s: updates in arrival order, two pinned "
					 "gradient buffers, vs drained", place_name[place], md->name);
				CHECK(!differ(&tt, &old, &off, what, 1));
				CHECK(old.reordered == 0);
				free_result(&old);
				/* the read-ahead at the step boundary only: fewer chunks found read
				 * ahead where a pass has NVMe groups after its first */
				result bnd;
				ra_env = "boundary";
				run(&tt, &in, &b, place, md, NULL, 0, NULL, 0, &bnd);
				ra_env = NULL;
				snprintf(what, sizeof(what), "%s, %s: read ahead at the step boundary "
					 "only, vs drained", place_name[place], md->name);
				CHECK(!differ(&tt, &bnd, &off, what, 1));
				if (on.opt_nvme > 1 && md->clip == 0)
					CHECKF(on.read_ahead > bnd.read_ahead, "%s: %lld chunks read "
					       "ahead, %lld at the step boundary only", what,
					       (long long)on.read_ahead, (long long)bnd.read_ahead);
				free_result(&bnd);
			}
			CHECK(off.read_ahead == 0);
			if (place != HOST_OPT && md->clip == 0)
				CHECKF(on.read_ahead > 0, "%s: no update found its state read ahead", what);
			printf("  ok %-28s %-32s bit-identical overlapped / resumed / drained (%d of %d "
			       "steps clipped, %d redone; %lld chunks read ahead)\n", place_name[place],
			       md->name, nclip, STEPS, nredo, (long long)on.read_ahead);
			free_result(&off);
			free_result(&on);
			free_result(&res);
		}
	/* the wait: group 0 (the embedding, which the forward needs first and the backward updates
	 * last) updated 100 ms late */
	char delay[32];
	snprintf(delay, sizeof(delay), "100:%d", 0);
	static const int late_places[] = { HOST_OPT, NVME_OPT_1SLOT, NVME_ALL };
	for (int i = 0; i < 3; i++) {
		int place = late_places[i];
		result off, late, nowait;
		run(&tt, &in, &b, place, &m0, "0", 0, NULL, 0, &off);
		run(&tt, &in, &b, place, &m0, NULL, 0, delay, 0, &late);
		char what[160];
		snprintf(what, sizeof(what), "%s: group 0's update delayed", place_name[place]);
		CHECK(!differ(&tt, &late, &off, what, 1));
		/* without the wait (P16 in host memory: an NVMe home would be read mid-write) */
		int p16_host = place != NVME_ALL;
		if (p16_host) {
			run(&tt, &in, &b, place, &m0, NULL, 0, delay, 1, &nowait);
			CHECKF(differ(&tt, &nowait, &off, what, 0), "%s: without the wait the next forward "
			       "should read group 0's stale P16", place_name[place]);
			free_result(&nowait);
		}
		printf("  ok %-28s group 0's update 100 ms late: the same bits%s\n", place_name[place],
		       p16_host ? "; without the wait for it (SW_TEST_NO_WAIT) they differ" : "");
		free_result(&off);
		free_result(&late);
	}
	/* the order: the head's update (the backward's first) 100 ms late, so that the updates of
	 * the groups below it wait in the queue; the lowest of them (the one the next forward
	 * needs first) runs ahead of those queued before it, with the same bits */
	snprintf(delay, sizeof(delay), "100:%d", tt.ngroups - 1);
	{
		result off, edf, fifo;
		run(&tt, &in, &b, HOST_OPT, &m0, "0", 0, NULL, 0, &off);
		run(&tt, &in, &b, HOST_OPT, &m0, NULL, 0, delay, 0, &edf);
		order_env = "fifo";
		run(&tt, &in, &b, HOST_OPT, &m0, NULL, 0, delay, 0, &fifo);
		order_env = NULL;
		CHECK(!differ(&tt, &edf, &off, "head's update late, next-needed first", 1));
		CHECK(!differ(&tt, &fifo, &off, "head's update late, arrival order", 1));
		CHECKF(edf.reordered > 0, "no update ran ahead of the queue (%lld)", (long long)edf.reordered);
		CHECK(fifo.reordered == 0);
		printf("  ok %-28s head's update 100 ms late: %lld updates ran ahead of their queue "
		       "order (0 in arrival order), the same bits\n", place_name[HOST_OPT],
		       (long long)edf.reordered);
		free_result(&off);
		free_result(&edf);
		free_result(&fifo);
	}
	sw_table_free(&tt);
}

int main(void)
{
	setenv("SW_CLIP_PASSES", "1", 1);   /* speculation every step, not adapted */
	const char *qk = getenv("SW_TEST_QUICK");
	run_config(0);
	if (!(qk && !strcmp(qk, "1")))
		run_config(1);
	return 0;
}
