/* Exact clipping in one speculative backward pass (issue 14, Done when 1 on the CPU backend;
 * tests/gpu/test_offload_exec_clip_gpu.sh runs it on CUDA): for every placement (all on the
 * device, resident groups mixed with streamed ones, P16 and the optimizer on the host,
 * optimizer state on NVMe, everything on NVMe with two slots and with one), runs where
 * clipping fires on some steps and not on others, and runs with a non-finite gradient injected
 * at one step (SW_TEST_POISON_GRAD), give losses, norms and final P32, m, v bit-identical to the
 * two-pass scheme (the implementation before one-pass clipping, kept as the planner's
 * speculate = 0). The one-pass runs must redo exactly the steps that clipped, and skip the
 * poisoned one. */
#include "tests/offload_exec_harness.h"

#include <math.h>
#include <stdlib.h>

#define STEPS 6
#define M 4
#define T 16
#define POISON_STEP 3

typedef struct result {
	double loss[STEPS], norm[STEPS], scale[STEPS];
	int skipped[STEPS], redone[STEPS], passes[STEPS];
	float *state[3];          /* P32, m, v of all groups, table order */
} result;

static sw_config cfg_make(int tie) { return hx_tiny_config(tie, 0); }


static float *init_group(const sw_table *tt, int g) { return hx_init_group(tt, g, 7654321ull); }

/* Steps alternate between easy data (a few tokens, small gradients) and hard data (uniform
 * tokens), so one threshold between their norms clips some steps and not others. */
static void make_data(const sw_config *c, int32_t *in, int32_t *tg, int step)
{
	hx_make_tokens(in, tg, M * T, step, step % 2 ? (int)c->vocab : 4);
}

static const sw_adamw_hparams H = { .lr = 0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
				    .weight_decay = 0.1 };

static double lr_of(int step) { return 3e-3 * (1.0 - 0.1 * step); }

enum { ALL_GPU, MIXED, HOST_OPT, NVME_OPT, NVME_ALL, NVME_ALL_1SLOT, NVME_1SLOT_DEFER, NPLACE };
static const char *place_name[NPLACE] = {
	"all on the device", "resident + streamed groups", "P16 and optimizer on host",
	"optimizer state on NVMe", "everything on NVMe, 2 slots", "everything on NVMe, 1 slot",
	"NVMe, 1 slot, gradients held",
};

typedef struct budgets { uint64_t gpu[NPLACE], cpu[NPLACE]; } budgets;

/* omit: a step whose batch is consumed without calling the executor (0: none) */
static void run(const sw_table *tt, sw_plan_input *in0, const budgets *b, int place, int speculate,
		double clip, int poison, int omit, result *r)
{
	sw_plan_input in = *in0;
	in.passes = 2;
	in.speculate = speculate;
	in.slots = place == NVME_ALL_1SLOT || place == NVME_1SLOT_DEFER ? 1 : 2;
	char env[32];
	snprintf(env, sizeof(env), "%d:%d", POISON_STEP, tt->ngroups / 2);
	if (poison)
		setenv("SW_TEST_POISON_GRAD", env, 1);
	else
		unsetenv("SW_TEST_POISON_GRAD");
	hx_run h;
	CHECKF(hx_open(&h, tt, &in, b->gpu[place], b->cpu[place], clip, &H) == 0, "%s: plan failed: %s",
	       place_name[place], h.plan.why);
	const sw_plan *p = &h.plan;
	int G = tt->ngroups;
	int p16_gpu = hx_count(p, G, SW_STATE_P16, SW_TIER_GPU);
	int opt_host = hx_count(p, G, SW_STATE_P32, SW_TIER_HOST);
	int opt_nvme = hx_count(p, G, SW_STATE_P32, SW_TIER_NVME);
	int p16_nvme = hx_count(p, G, SW_STATE_P16, SW_TIER_NVME);
	if (speculate && poison == 0 && clip > 0)
		printf("  %-28s P16 device %d NVMe %d; P32/m/v host %d NVMe %d; held grads %.0f + %.0f KiB, "
		       "second state set %.0f KiB; %s\n", place_name[place], p16_gpu, p16_nvme, opt_host, opt_nvme,
		       (double)p->bytes[SW_TIER_GPU][SW_PURPOSE_HELD_GRAD] / 1024.0,
		       (double)p->bytes[SW_TIER_HOST][SW_PURPOSE_HELD_GRAD] / 1024.0,
		       (double)p->bytes[SW_TIER_HOST][SW_PURPOSE_STATE_B] / 1024.0,
		       p->speculative ? "one speculative pass" : p->two_pass_why);
	switch (place) {
	case ALL_GPU: CHECKF(p16_gpu == G, "%s", place_name[place]); break;
	case MIXED: CHECKF(p16_gpu > 0 && p16_gpu < G && opt_host > 0, "%s: %d of %d resident, %d host", place_name[place], p16_gpu, G, opt_host); break;
	case HOST_OPT: CHECKF(p16_gpu < G && opt_host > 0 && opt_nvme == 0 && p16_nvme == 0, "%s",
			      place_name[place]); break;
	case NVME_OPT: CHECKF(opt_nvme > 0, "%s", place_name[place]); break;
	case NVME_1SLOT_DEFER: CHECKF(opt_nvme > 0, "%s", place_name[place]); break;
	default: CHECKF(p16_nvme > 0 && opt_nvme > 0 && p->ckpt_count[SW_TIER_NVME] > 0, "%s",
			place_name[place]); break;
	}
	/* the one-pass scheme wherever every group has a rollback source, or (one NVMe slot) the
	 * host has room to hold the NVMe groups' gradients until the norm is known */
	int want_spec = speculate && place != NVME_ALL_1SLOT;
	CHECKF(p->defer_nvme == (speculate && place == NVME_1SLOT_DEFER), "%s: defer %d", place_name[place],
	       p->defer_nvme);
	CHECK((p->bytes[SW_TIER_HOST][SW_PURPOSE_HELD_GRAD] > 0) == p->defer_nvme);
	CHECKF(p->speculative == want_spec, "%s: speculate %d gave speculative %d (%s)", place_name[place],
	       speculate, p->speculative, p->two_pass_why);
	if (speculate && !want_spec)
		CHECKF(strstr(p->two_pass_why, "--checkpoint-only"), "%s: %s", place_name[place], p->two_pass_why);
	/* the rollback rows are in the table when, and only when, the plan speculates */
	CHECK((p->bytes[SW_TIER_HOST][SW_PURPOSE_STATE_B] > 0) == (p->speculative && opt_host > 0));
	/* (the tied embedding's gradient is held in the tied gradient buffer anyway) */
	int held = p16_gpu - (tt->cfg.tie_embeddings && p->tier[0][SW_STATE_P32] == SW_TIER_GPU);
	CHECK((p->bytes[SW_TIER_GPU][SW_PURPOSE_HELD_GRAD] > 0) == (p->speculative && held > 0));
	for (int g = 0; g < G; g++) {
		float *w = init_group(tt, g);
		CHECK(sw_exec_set_group(h.ex, g, w) == 0);
		free(w);
	}
	int32_t in_[M * T], tg[M * T];
	int skipped = 0;
	memset(r, 0, sizeof(*r));
	for (int s = 1; s <= STEPS; s++) {
		make_data(&tt->cfg, in_, tg, s);
		sw_exec_stats st;
		if (s == omit) {
			skipped++;
			continue;
		}
		/* AdamW's step counter and the schedule leave the skipped steps out, as train's loop does */
		CHECK(sw_exec_step(h.ex, in_, tg, s - skipped, lr_of(s - skipped), &st) == 0);
		skipped += st.s.skipped;
		r->loss[s - 1] = st.s.loss;
		r->norm[s - 1] = st.s.grad_norm;
		r->scale[s - 1] = st.s.grad_scale;
		r->skipped[s - 1] = st.s.skipped;
		r->redone[s - 1] = st.redone;
		r->passes[s - 1] = st.passes;
	}
	for (int k = 0; k < 3; k++) {
		r->state[k] = malloc((size_t)tt->total * 4);
		int64_t off = 0;
		for (int g = 0; g < G; g++) {
			sw_state st = k == 0 ? SW_STATE_P32 : k == 1 ? SW_STATE_M : SW_STATE_V;
			CHECK(sw_exec_get_group(h.ex, g, st, r->state[k] + off) == 0);
			off += tt->g[g].numel;
		}
	}
	hx_close(&h);
	unsetenv("SW_TEST_POISON_GRAD");
}

static void same_state(const sw_table *tt, const result *a, const result *b, const char *what);

static void same(const sw_table *tt, const result *a, const result *b, const char *what)
{
	for (int s = 0; s < STEPS; s++) {
		CHECKF(!memcmp(&a->loss[s], &b->loss[s], 8), "%s: step %d loss %.17g vs %.17g", what, s + 1,
		       a->loss[s], b->loss[s]);
		CHECKF(!memcmp(&a->norm[s], &b->norm[s], 8) || (isnan(a->norm[s]) && isnan(b->norm[s])),
		       "%s: step %d grad norm %.17g vs %.17g", what, s + 1, a->norm[s], b->norm[s]);
		CHECKF(a->skipped[s] == b->skipped[s], "%s: step %d skipped %d vs %d", what, s + 1,
		       a->skipped[s], b->skipped[s]);
	}
	same_state(tt, a, b, what);
}

static void same_state(const sw_table *tt, const result *a, const result *b, const char *what)
{
	static const char *nm[3] = { "P32", "m", "v" };
	for (int k = 0; k < 3; k++)
		for (int64_t i = 0; i < tt->total; i++)
			CHECKF(!memcmp(&a->state[k][i], &b->state[k][i], 4), "%s: %s[%lld] %.9g vs %.9g", what,
			       nm[k], (long long)i, a->state[k][i], b->state[k][i]);
}

static void free_result(result *r)
{
	for (int k = 0; k < 3; k++)
		free(r->state[k]);
}

/* What the steps of a one-pass run must have done, from the two-pass run's scales: a step
 * that clipped (scale < 1) was redone (two passes), one that did not took one pass, the
 * poisoned one was skipped without a redo. */
static void check_steps(const result *two, const result *one, int place, int poison)
{
	for (int s = 0; s < STEPS; s++) {
		int clipped = !two->skipped[s] && two->scale[s] < 1.0;
		CHECKF(two->redone[s] == 0 && two->passes[s] == 2, "%s: two-pass step %d", place_name[place], s + 1);
		CHECKF(one->skipped[s] == (poison && s + 1 == POISON_STEP), "%s: step %d skipped %d",
		       place_name[place], s + 1, one->skipped[s]);
		if (place == NVME_ALL_1SLOT)
			continue;   /* two passes there too */
		CHECKF(one->redone[s] == clipped && one->passes[s] == 1 + clipped,
		       "%s: one-pass step %d: redone %d passes %d, the two-pass scale %.17g", place_name[place],
		       s + 1, one->redone[s], one->passes[s], two->scale[s]);
		CHECKF(one->scale[s] == two->scale[s] || one->skipped[s], "%s: step %d scale", place_name[place], s + 1);
	}
}

static void budgets_get(const sw_table *tt, sw_plan_input *in, budgets *b)
{
	uint64_t gmin, hmin, hmin1;
	hx_min_budgets(in, &gmin, &hmin, &hmin1);
	uint64_t maxg = (uint64_t)tt->max_group_numel;
	b->gpu[ALL_GPU] = 256ull << 20;
	b->cpu[ALL_GPU] = 1ull << 30;
	/* room for the embedding and one layer (P16, P32, m, v, held gradient) beside the window */
	b->gpu[MIXED] = gmin + (maxg + (uint64_t)tt->g[0].numel) * 18 + 16 * 256 + (uint64_t)M * T * 64 * 2;
	b->cpu[MIXED] = 1ull << 30;
	b->gpu[HOST_OPT] = b->gpu[NVME_OPT] = b->gpu[NVME_ALL] = b->gpu[NVME_ALL_1SLOT] = gmin;
	b->cpu[HOST_OPT] = 1ull << 30;
	/* P16 and checkpoints on the host, some optimizer state (with its second set) too */
	b->cpu[NVME_OPT] = hx_host_some_opt(tt, hmin, M, T);
	b->cpu[NVME_ALL] = hmin;
	b->cpu[NVME_ALL_1SLOT] = hmin1;
	/* one slot with room for every group's gradient in pinned host memory */
	b->gpu[NVME_1SLOT_DEFER] = gmin;
	b->cpu[NVME_1SLOT_DEFER] = hmin1 + (uint64_t)tt->total * 4 + (uint64_t)tt->ngroups * 4096;
}

/* The planner's choice between one pass and two: the speculative plan unless it does not fit,
 * a group has no rollback source, or two passes are predicted faster; each says why. */
static void plan_fallbacks(const sw_table *tt, const sw_plan_input *in0, const budgets *b)
{
	sw_plan_input in = *in0;
	in.passes = 2;
	sw_plan p, q;
	/* predicted faster: the default rates are a GPU's, under which this tiny model is bound by
	 * transfers, and one pass's rollback buffers push state down a tier */
	in.rates.gemm_tflops = 400;
	in.gpu_mem = b->gpu[MIXED];
	in.cpu_mem = b->cpu[MIXED];
	in.speculate = 1;
	CHECK(sw_plan_build(&p, &in) == 0);
	in.speculate = 0;
	CHECK(sw_plan_build(&q, &in) == 0);
	if (!p.speculative) {
		CHECKF(strstr(p.two_pass_why, "predicted faster") && p.cost.step_s == q.cost.step_s,
		       "%s", p.two_pass_why);
		printf("  planner: %s\n", p.two_pass_why);
	}
	sw_plan_free(&p);
	sw_plan_free(&q);
	/* do not fit: no NVMe and a host budget that holds every group's state once but not twice */
	in.n_nvme = 0;
	in.gpu_mem = b->gpu[HOST_OPT];
	in.cpu_mem = 1ull << 30;
	CHECK(sw_plan_build(&q, &in) == 0);     /* two passes: what the host holds */
	in.cpu_mem = q.total[SW_TIER_HOST];
	sw_plan_free(&q);
	in.speculate = 1;
	CHECK(sw_plan_build(&p, &in) == 0);
	CHECKF(!p.speculative && strstr(p.two_pass_why, "do not fit"), "%s", p.two_pass_why);
	printf("  planner: %s\n", p.two_pass_why);
	sw_plan_free(&p);
	(void)tt;
}

static void run_config(int tie)
{
	sw_config c = cfg_make(tie);
	sw_table tt;
	CHECK(sw_table_build(&tt, &c) == 0);
	printf("%s model: %lld parameters, %d groups, %d micro-batches of %d tokens\n",
	       tie ? "tied" : "untied GQA", (long long)tt.total, tt.ngroups, M, T);
	sw_plan_input in;
	hx_input(&in, &tt, M, T, 0, 4096);
	/* the CPU backend's order of GEMM rate (the default is a GPU's): the planner keeps one pass
	 * only where it is predicted no slower than two, and here compute decides it */
	in.rates.gemm_tflops = 0.05;
	budgets b;
	budgets_get(&tt, &in, &b);
	plan_fallbacks(&tt, &in, &b);
	/* a threshold between the steps' norms: the median of an unclipped run's */
	result free_run;
	run(&tt, &in, &b, ALL_GPU, 0, 1e30, 0, 0, &free_run);
	double sorted[STEPS];
	memcpy(sorted, free_run.norm, sizeof(sorted));
	for (int i = 0; i < STEPS; i++)
		for (int j = i + 1; j < STEPS; j++)
			if (sorted[j] < sorted[i]) {
				double t = sorted[i];
				sorted[i] = sorted[j];
				sorted[j] = t;
			}
	double clip = 0.5 * (sorted[STEPS / 2 - 1] + sorted[STEPS / 2]);
	free_result(&free_run);
	printf(" clip %.6g: between the steps' gradient norms\n", clip);
	for (int poison = 0; poison < 2; poison++) {
		if (poison)
			printf(" a NaN in group %d's gradient at step %d\n", tt.ngroups / 2, POISON_STEP);
		result ref;
		run(&tt, &in, &b, ALL_GPU, 0, clip, poison, 0, &ref);
		int clipped = 0, unclipped = 0;
		for (int s = 0; s < STEPS; s++) {
			clipped += !ref.skipped[s] && ref.scale[s] < 1.0;
			unclipped += !ref.skipped[s] && ref.scale[s] == 1.0;
		}
		CHECKF(clipped > 0 && unclipped > 0, "clipping must fire on some steps and not others "
		       "(%d clipped, %d not)", clipped, unclipped);
		printf("  two-pass reference: %d steps clipped, %d not, %d skipped; losses", clipped,
		       unclipped, STEPS - clipped - unclipped);
		for (int s = 0; s < STEPS; s++)
			printf(" %.6f", ref.loss[s]);
		printf("\n");
		for (int place = 0; place < NPLACE; place++) {
			result two, one;
			char what[160];
			run(&tt, &in, &b, place, 0, clip, poison, 0, &two);
			snprintf(what, sizeof(what), "%s: two passes vs the reference", place_name[place]);
			same(&tt, &ref, &two, what);
			run(&tt, &in, &b, place, 1, clip, poison, 0, &one);
			snprintf(what, sizeof(what), "%s: one pass vs two passes", place_name[place]);
			same(&tt, &two, &one, what);
			check_steps(&two, &one, place, poison);
			free_result(&two);
			free_result(&one);
		}
		printf("  -> one pass bit-identical to two passes in every placement\n");
		if (poison) {
			/* a skipped step is as if it had not been taken, apart from consuming its batch:
			 * the same state as a run that never ran it */
			result omitted;
			run(&tt, &in, &b, MIXED, 1, clip, 0, POISON_STEP, &omitted);
			same_state(&tt, &ref, &omitted, "the skipped step vs a run without it");
			free_result(&omitted);
			printf("  -> the skipped step left everything as a run that never took it\n");
		}
		free_result(&ref);
	}
	sw_table_free(&tt);
}

int main(void)
{
	/* one speculative pass every step, whatever fraction of steps clips (train's default
	 * switches to two passes while clipping fires often: tests/test_offload_clip_train.sh) */
	setenv("SW_CLIP_PASSES", "1", 1);
	run_config(0);
	run_config(1);
	return 0;
}
