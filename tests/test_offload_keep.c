/* Keep instead of recompute (issue 16): a layer whose forward intermediates were kept runs its
 * backward from them, and the training result is bit-identical to recomputing every layer.
 * For an untied GQA model (bf16) and a tied qwen2-shaped one with q/k/v biases (fp32), without
 * clipping, with two-pass clipping and with one speculative pass whose step is rolled back and
 * redone, 5 steps under keep patterns none (the reference), all, auto with ample memory (which
 * must keep everything), auto with budgets that fit only some layers' parts (mixed), and auto
 * beside offload placements (weights streamed from the host, optimizer state on NVMe; keeping
 * takes the GPU room left once every checkpoint is there, so it never meets checkpoints off the
 * GPU) give the same losses, gradient norms and final P32/m/v, byte for byte. Each run's
 * allocations equal the plan's buffer table (hx_open) and stay inside --gpu-mem. Then the
 * planner's side: --keep all that does not fit names the budget; the kept bytes are rows of the
 * table; nothing is kept when the predicted step would not fall. */
#include "tests/offload_exec_harness.h"

#include <errno.h>

#define STEPS 5
#define M 4
#define T 16

typedef struct result {
	double loss[STEPS], norm[STEPS];
	int redone;
	float *state[3];
} result;

static sw_config cfg_make(int variant) { return hx_tiny_config(variant, variant); }


static void make_data(const sw_config *c, int32_t *in, int32_t *tg, int step)
{
	hx_make_tokens(in, tg, M * T, step, (int)c->vocab);
}

static const sw_adamw_hparams H = { .lr = 0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
				    .weight_decay = 0.1 };

static double lr_of(int step) { return 2e-3 * (1.0 - 0.1 * step); }

/* Parts kept over all layers (attention + MLP), 0..2L. */
static int kept_units(const sw_plan *p) { return p->keep_layers[0] + p->keep_layers[1]; }

static void run(const sw_table *tt, sw_plan_input *in, uint64_t gpu, uint64_t cpu, double clip,
		result *r, const char *name, int want_min, int want_max)
{
	hx_run h;
	CHECKF(hx_open(&h, tt, in, gpu, cpu, clip, &H) == 0, "%s: plan failed: %s", name, h.plan.why);
	const sw_plan *p = &h.plan;
	int L = (int)tt->cfg.n_layers, G = tt->ngroups;
	char pat[64] = "";
	for (int l = 0; l < L; l++)
		snprintf(pat + strlen(pat), sizeof(pat) - strlen(pat), "%s%s", l ? "," : "",
			 (const char *[]){ "-", "A", "M", "AM" }[sw_plan_keep(p, l)]);
	printf("    %-34s gpu %9llu: kept %s (%llu B), P16 on GPU %d/%d, P32 on NVMe %d, ckpts NVMe %lld\n",
	       name, (unsigned long long)gpu, pat,
	       (unsigned long long)p->bytes[SW_TIER_GPU][SW_PURPOSE_KEEP], hx_count(p, G, SW_STATE_P16, SW_TIER_GPU), G,
	       hx_count(p, G, SW_STATE_P32, SW_TIER_NVME), (long long)p->ckpt_count[SW_TIER_NVME]);
	CHECKF(kept_units(p) >= want_min && kept_units(p) <= want_max, "%s: %d parts kept, want %d-%d", name,
	       kept_units(p), want_min, want_max);
	/* the kept bytes are the table's rows, inside the budget */
	uint64_t kb = (uint64_t)M * ((uint64_t)p->keep_layers[0] * p->keep_item[0] +
				     (uint64_t)p->keep_layers[1] * p->keep_item[1]);
	CHECK(p->bytes[SW_TIER_GPU][SW_PURPOSE_KEEP] == kb && p->total[SW_TIER_GPU] <= gpu);
	for (int g = 0; g < G; g++) {
		float *w = hx_init_group(tt, g, 1234567ull);
		CHECK(sw_exec_set_group(h.ex, g, w) == 0);
		free(w);
	}
	int32_t in_[M * T], tg[M * T];
	r->redone = 0;
	for (int s = 1; s <= STEPS; s++) {
		make_data(&tt->cfg, in_, tg, s);
		sw_exec_stats st;
		CHECK(sw_exec_step(h.ex, in_, tg, s, lr_of(s), &st) == 0);
		r->loss[s - 1] = st.s.loss;
		r->norm[s - 1] = st.s.grad_norm;
		r->redone += st.redone;
	}
	for (int k = 0; k < 3; k++) {
		r->state[k] = malloc((size_t)tt->total * 4);
		int64_t off = 0;
		for (int g = 0; g < G; g++) {
			sw_state s = k == 0 ? SW_STATE_P32 : k == 1 ? SW_STATE_M : SW_STATE_V;
			CHECK(sw_exec_get_group(h.ex, g, s, r->state[k] + off) == 0);
			off += tt->g[g].numel;
		}
	}
	hx_close(&h);
}

static void same(const sw_table *tt, const result *a, result *b, const char *what)
{
	for (int s = 0; s < STEPS; s++) {
		CHECKF(!memcmp(&a->loss[s], &b->loss[s], 8), "%s: step %d loss %.17g vs %.17g", what, s + 1,
		       a->loss[s], b->loss[s]);
		CHECKF(!memcmp(&a->norm[s], &b->norm[s], 8), "%s: step %d grad norm %.17g vs %.17g", what,
		       s + 1, a->norm[s], b->norm[s]);
	}
	static const char *nm[3] = { "P32", "m", "v" };
	for (int k = 0; k < 3; k++)
		CHECKF(!memcmp(a->state[k], b->state[k], (size_t)tt->total * 4), "%s: final %s differs", what, nm[k]);
	for (int k = 0; k < 3; k++)
		free(b->state[k]);
}

/* GPU bytes of the plan for in at gpu, with keep none (the placement before keeping). */
static uint64_t gpu_total_none(sw_plan_input *in, uint64_t gpu, uint64_t cpu, sw_plan *out)
{
	sw_plan_input x = *in;
	x.keep = SW_PLAN_KEEP_NONE;
	x.gpu_mem = gpu;
	x.cpu_mem = cpu;
	CHECKF(sw_plan_build(out, &x) == 0, "%s", out->why);
	return out->total[SW_TIER_GPU];
}

static void run_clip(const sw_table *tt, sw_plan_input *in, double clip, int speculate)
{
	int L = (int)tt->cfg.n_layers;
	const uint64_t big = 256ull << 20, cpu = 1ull << 30;
	in->passes = clip > 0 ? 2 : 1;
	in->speculate = speculate;
	printf("  clip %g%s\n", clip, clip == 0 ? " (one pass)" : speculate ? " (one speculative pass)" : " (two passes)");
	result ref, r;
	in->keep = SW_PLAN_KEEP_NONE;
	run(tt, in, big, cpu, clip, &ref, "none, all resident", 0, 0);
	if (speculate)
		CHECKF(ref.redone > 0, "clip %g must redo steps (the rollback path)", clip);
	in->keep = SW_PLAN_KEEP_ALL;
	run(tt, in, big, cpu, clip, &r, "all, all resident", 2 * L, 2 * L);
	same(tt, &ref, &r, "keep all");
	in->keep = SW_PLAN_KEEP_AUTO;
	run(tt, in, big, cpu, clip, &r, "auto, ample memory", 2 * L, 2 * L);
	same(tt, &ref, &r, "keep auto (ample)");

	/* mixed: room for some of the 2L units only (units: one part of one layer, M blocks) */
	sw_plan p0;
	uint64_t t0 = gpu_total_none(in, big, cpu, &p0);
	uint64_t ua = (uint64_t)M * p0.keep_item[0], um = (uint64_t)M * p0.keep_item[1];
	sw_plan_free(&p0);
	uint64_t rooms[3] = { ua < um ? ua : um, ua + um, (uint64_t)L * (ua + um) - 1 };
	for (int i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "auto, room for part of it (%d)", i + 1);
		run(tt, in, t0 + rooms[i], cpu, clip, &r, name, 1, 2 * L - 1);
		same(tt, &ref, &r, name);
	}

	/* beside offload: the planner's smallest GPU budget plus room, the GEMM rate so low that the
	 * step is compute-bound (so keeping shortens it), weights streamed */
	sw_plan_input x = *in;
	x.rates.gemm_tflops = 1e-6;
	uint64_t gmin, hmin;
	char why[512];
	CHECKF(sw_plan_min_budget(&x, SW_TIER_GPU, &gmin, why, sizeof(why)) == 0, "%s", why);
	uint64_t g = 0;
	for (uint64_t add = ua; add < big && !g; add += ua / 2) {
		sw_plan p;
		x.gpu_mem = gmin + add;
		x.cpu_mem = cpu;
		CHECKF(sw_plan_build(&p, &x) == 0, "%s", p.why);
		if (p.streaming && kept_units(&p) > 0)
			g = gmin + add;
		sw_plan_free(&p);
	}
	CHECKF(g, "no GPU budget streams weights and keeps a layer");
	x.gpu_mem = g;
	CHECKF(sw_plan_min_budget(&x, SW_TIER_HOST, &hmin, why, sizeof(why)) == 0, "%s", why);
	run(tt, &x, g, cpu, clip, &r, "auto, weights streamed", 1, 2 * L - 1);
	same(tt, &ref, &r, "keep auto, weights streamed from the host");
	run(tt, &x, g, hmin, clip, &r, "auto, state on NVMe", 1, 2 * L - 1);
	same(tt, &ref, &r, "keep auto, optimizer state on NVMe");
	x.keep = SW_PLAN_KEEP_NONE;
	run(tt, &x, g, hmin, clip, &r, "none, state on NVMe", 0, 0);
	same(tt, &ref, &r, "keep none, optimizer state on NVMe");
	for (int k = 0; k < 3; k++)
		free(ref.state[k]);
}

/* The planner's side: --keep all short of room names the budget; keeping stops where the
 * predicted step stops falling. */
static void plan_checks(const sw_table *tt, sw_plan_input *in)
{
	sw_plan_input x = *in;
	x.passes = 1;
	x.speculate = 0;
	uint64_t gmin;
	char why[512];
	CHECKF(sw_plan_min_budget(&x, SW_TIER_GPU, &gmin, why, sizeof(why)) == 0, "%s", why);
	x.gpu_mem = gmin;
	x.cpu_mem = 1ull << 30;
	x.keep = SW_PLAN_KEEP_ALL;
	sw_plan p;
	CHECK(sw_plan_build(&p, &x) == -ENOSPC);
	CHECKF(strstr(p.why, "--keep all") && strstr(p.why, "--gpu-mem") && p.short_tier == SW_TIER_GPU,
	       "%s", p.why);
	printf("  --keep all at the smallest budget: %s\n", p.why);
	sw_plan_free(&p);
	/* a PCIe-bound plan (a group streamed, PCIe far slower than compute) with room on the GPU
	 * for a kept part: keeping would not shorten the predicted step, so nothing is kept */
	x.keep = SW_PLAN_KEEP_AUTO;
	x.rates.h2d_gbs = x.rates.d2h_gbs = 1e-6;
	x.grad_bufs = 2;   /* one buffer would put the gradients' copies on the compute path */
	CHECKF(sw_plan_min_budget(&x, SW_TIER_GPU, &gmin, why, sizeof(why)) == 0, "%s", why);
	int found = 0;
	for (uint64_t add = 0; add < (64ull << 20) && !found; add += 4096) {
		x.gpu_mem = gmin + add;
		CHECKF(sw_plan_build(&p, &x) == 0, "%s", p.why);
		uint64_t room = x.gpu_mem - p.total[SW_TIER_GPU] + p.bytes[SW_TIER_GPU][SW_PURPOSE_KEEP];
		if (p.streaming && room >= (uint64_t)M * (p.keep_item[0] + p.keep_item[1])) {
			found = 1;
			CHECKF(kept_units(&p) == 0 && p.cost.bottleneck == SW_RES_PCIE &&
			       strstr(p.keep_why, "does not shorten"), "PCIe-bound plan kept %d parts (%s)",
			       kept_units(&p), p.keep_why);
			printf("  PCIe-bound, %llu B of room: nothing kept (%s)\n",
			       (unsigned long long)(x.gpu_mem - p.total[SW_TIER_GPU]), p.keep_why);
		}
		sw_plan_free(&p);
	}
	CHECKF(found, "no budget streams a group and leaves room for a kept part");

	/* the first unit taken is the part that saves the most recompute per byte, in the top
	 * layer: forward GEMM and attention FLOPs per token, by hand from the shape (attention part:
	 * q/k/v projections and causal attention, 2*T*q_dim; MLP part: o_proj, gate and up) */
	const sw_config *c = &tt->cfg;
	double C = (double)c->dim, qd = (double)(c->n_heads * c->head_dim);
	double kvd = (double)(c->n_kv_heads * c->head_dim), F = (double)c->ffn_dim;
	double fa = 2 * C * (qd + 2 * kvd) + 2.0 * T * qd, fm = 2 * qd * C + 4 * C * F;
	x = *in;
	x.passes = 1;
	x.speculate = 0;
	sw_plan p0;
	uint64_t t0 = gpu_total_none(&x, 256ull << 20, 1ull << 30, &p0);
	double ra = fa * T / (double)p0.keep_item[0], rm = fm * T / (double)p0.keep_item[1];
	int best = ra > rm ? 0 : 1;
	uint64_t unit = (uint64_t)M * p0.keep_item[best];
	sw_plan_free(&p0);
	x.keep = SW_PLAN_KEEP_AUTO;
	x.gpu_mem = t0 + unit;
	CHECKF(sw_plan_build(&p, &x) == 0, "%s", p.why);
	int L = (int)c->n_layers;
	for (int l = 0; l < L; l++)
		CHECKF(sw_plan_keep(&p, l) == (l == L - 1 ? (best ? SW_KEEP_MLP : SW_KEEP_ATTN) : 0u),
		       "room for one unit: layer %d keeps %u (the %s part saves more per byte)", l,
		       sw_plan_keep(&p, l), best ? "MLP" : "attention");
	printf("  room for one unit: layer %d keeps its %s part (FLOP per byte: attention %.3f, MLP %.3f)\n",
	       L - 1, best ? "MLP" : "attention", ra, rm);
	sw_plan_free(&p);
	(void)tt;
}

int main(void)
{
	for (int v = 0; v < 2; v++) {
		sw_config c = cfg_make(v);
		sw_table tt;
		CHECK(sw_table_build(&tt, &c) == 0);
		printf("%s model (%s): %lld parameters, %d micro-batches of %d tokens\n",
		       v ? "tied qwen2 with q/k/v biases" : "untied GQA", v ? "fp32" : "bf16",
		       (long long)tt.total, M, T);
		sw_plan_input in;
		hx_input(&in, &tt, M, T, v, 4096);
		run_clip(&tt, &in, 0.0, 0);
		run_clip(&tt, &in, 0.5, 0);
		run_clip(&tt, &in, 1e-3, 1);
		plan_checks(&tt, &in);
		sw_table_free(&tt);
	}
	return 0;
}
