/* Placement under budgets, as properties over a sweep of models and budgets:
 *   every tier's total <= its budget, and equals the sum of its purposes;
 *   every state of every group is placed exactly once, and the bytes each tier's state cells
 *   hold are exactly those of the groups placed there (recomputed here from the tiers);
 *   P32/m/v share a tier; a group is GPU-resident whole; gradients never on NVMe;
 *   every checkpoint placed once, counted in its tier;
 *   the NVMe split over paths adds up and stays within each path.
 * Then just-sufficient budgets (the planner's own minimum works, one byte less fails naming
 * the tier and the 1-byte shortfall) and the shortfall messages. */
#include "core/tensors.h"
#include "offload/plan.h"
#include "tests/check.h"

#include <errno.h>
#include <string.h>

#define AL(x) (((uint64_t)(x) + 4095) / 4096 * 4096)
/* bytes of one buffer as the tier's allocator counts them */
#define ROUND_TIER(t, b) ((t) == SW_TIER_GPU ? ((b) + 255) / 256 * 256 : AL(b))

typedef struct model {
	const char *name, *type;
	int64_t dim, layers, heads, kv, ffn, vocab;
	int tie, bias, fp32;
	int64_t seq, rows, batch, chunk;
} model;

static const model models[] = {
	{ "tiny", "llama", 64, 2, 4, 2, 160, 256, 0, 0, 0, 32, 2, 256, 4096 },
	{ "tiny-qwen2-tied", "qwen2", 96, 3, 6, 2, 256, 512, 1, 1, 0, 16, 1, 128, 2048 },
	{ "tiny-fp32", "llama", 64, 4, 4, 4, 128, 300, 0, 0, 1, 64, 1, 512, 8192 },
	{ "8B-like", "llama", 4096, 32, 32, 8, 14336, 128256, 0, 0, 0, 4096, 1, 65536, 64 << 20 },
	{ "175B-config", "llama", 12288, 96, 96, 96, 49152, 50272, 0, 0, 0, 2048, 1, 65536, 64 << 20 },
};

static void config_of(const model *m, sw_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->model_type, m->type);
	c->dim = m->dim;
	c->n_layers = m->layers;
	c->n_heads = m->heads;
	c->n_kv_heads = m->kv;
	c->head_dim = m->dim / m->heads;
	c->ffn_dim = m->ffn;
	c->vocab = m->vocab;
	c->tie_embeddings = m->tie;
	c->attention_bias = m->bias;
	c->bos_id = c->eos_id = -1;
}

static void input_of(const model *m, const sw_table *tt, sw_plan_input *in)
{
	sw_plan_input_init(in, tt);
	in->seq_len = m->seq;
	in->micro_rows = m->rows;
	in->batch_tokens = m->batch;
	in->fp32 = m->fp32;
	in->chunk_params = m->chunk;
	if (m->dim < 1024)
		in->cublas_workspace = 64 << 10;
}

static int n_checked;
/* regimes the sweep reached: partly resident, P16 on host with P32/m/v on NVMe, P16 on NVMe,
 * checkpoints on all three tiers, carry on the host, all resident */
static int seen[6];

static void check_plan(const model *m, const sw_plan *p, const sw_plan_input *in)
{
	const sw_table *tt = in->tt;
	int pb = m->fp32 ? 4 : 2;
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		uint64_t sum = 0;
		for (int u = 0; u < SW_PURPOSE_COUNT; u++)
			sum += p->bytes[t][u];
		CHECKF(sum == p->total[t], "%s: tier %d sum", m->name, t);
		CHECKF(p->total[t] <= p->budget[t], "%s: tier %s %llu over budget %llu", m->name,
		       sw_plan_tier_name((sw_tier)t), (unsigned long long)p->total[t],
		       (unsigned long long)p->budget[t]);
	}
	CHECK(p->budget[SW_TIER_GPU] == in->gpu_mem && p->budget[SW_TIER_HOST] == in->cpu_mem);
	/* state: each (group, state) on exactly one tier; recompute each tier's state cells */
	uint64_t state[SW_TIER_COUNT][4] = { { 0 } }, nvme_ext[4] = { 0 };
	uint64_t stripe = sw_plan_nvme_stripe(p);
	int resident = 0;
	for (int g = 0; g < tt->ngroups; g++) {
		const sw_tier *s = p->tier[g];
		for (int k = 0; k < SW_STATE_COUNT; k++)
			CHECK(s[k] >= 0 && s[k] < SW_TIER_COUNT);
		CHECK(s[SW_STATE_P32] == s[SW_STATE_M] && s[SW_STATE_M] == s[SW_STATE_V]);
		CHECK((s[SW_STATE_P16] == SW_TIER_GPU) == (s[SW_STATE_P32] == SW_TIER_GPU));
		CHECK(s[SW_STATE_GRAD] == (s[SW_STATE_P32] == SW_TIER_GPU ? SW_TIER_GPU : SW_TIER_HOST));
		resident += s[SW_STATE_P32] == SW_TIER_GPU;
		uint64_t n = (uint64_t)tt->g[g].numel;
		for (int k = 0; k < 4; k++) {
			/* as the allocators count: 256-byte blocks of the GPU arena, 4 KiB pages of
			 * pinned host memory, 4 KiB blocks of NVMe extents (plus alignment skips, at
			 * most a stripe unit each: checked as a range below) */
			uint64_t b = ROUND_TIER(s[k], n * (uint64_t)(k == SW_STATE_P16 ? pb : 4));
			uint64_t c = s[k] == SW_TIER_NVME && k != SW_STATE_P16 ? (uint64_t)in->slots : 1;
			state[s[k]][k] += b * c;
			nvme_ext[k] += s[k] == SW_TIER_NVME ? c : 0;
		}
	}
	CHECK(resident == p->resident_groups);
	for (int t = 0; t < SW_TIER_COUNT; t++)
		for (int k = 0; k < 4; k++)
			CHECKF(t == SW_TIER_NVME ? state[t][k] <= p->bytes[t][k] &&
				       p->bytes[t][k] <= state[t][k] + nvme_ext[k] * stripe
				 : state[t][k] == p->bytes[t][k], "%s: tier %d state %d: %llu vs %llu", m->name,
			       t, k, (unsigned long long)state[t][k], (unsigned long long)p->bytes[t][k]);
	/* checkpoints */
	int64_t cnt[SW_TIER_COUNT] = { 0 };
	for (int l = 0; l < p->n_layers; l++)
		for (int64_t mb = 0; mb < p->n_micro; mb++) {
			sw_tier t = sw_plan_ckpt_tier(p, l, mb);
			CHECK(t >= 0 && t < SW_TIER_COUNT);
			cnt[t]++;
		}
	uint64_t item = (uint64_t)(m->seq * m->rows * m->dim * pb);
	CHECK(p->ckpt_item == item);
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		CHECK(cnt[t] == p->ckpt_count[t]);
		uint64_t want = (uint64_t)cnt[t] * ROUND_TIER(t, item);
		CHECK(t == SW_TIER_NVME ? want <= p->bytes[t][SW_PURPOSE_CKPT] &&
			      p->bytes[t][SW_PURPOSE_CKPT] <= want + (uint64_t)cnt[t] * stripe
			: p->bytes[t][SW_PURPOSE_CKPT] == want);
	}
	CHECK(cnt[0] + cnt[1] + cnt[2] == m->layers * (m->batch / (m->seq * m->rows)));
	/* the carry lives in exactly one place */
	uint64_t carry = (uint64_t)(m->batch * m->dim * pb);
	CHECK(p->bytes[SW_TIER_GPU][SW_PURPOSE_CARRY] == (p->carry_on_gpu ? ROUND_TIER(SW_TIER_GPU, carry) : 0));
	CHECK(p->bytes[SW_TIER_HOST][SW_PURPOSE_CARRY] == (p->carry_on_gpu ? 0 : ROUND_TIER(SW_TIER_HOST, carry)));
	CHECK(p->bytes[SW_TIER_NVME][SW_PURPOSE_CARRY] == 0);
	/* the window exists exactly when some group streams */
	CHECK((p->bytes[SW_TIER_GPU][SW_PURPOSE_WINDOW] != 0) == (resident < tt->ngroups));
	/* NVMe split */
	uint64_t split = 0;
	for (int i = 0; i < in->n_nvme; i++) {
		CHECK(p->nvme_path_bytes[i] <= in->nvme[i].capacity);
		split += p->nvme_path_bytes[i];
	}
	CHECK(split == p->total[SW_TIER_NVME]);
	CHECK(p->disk_bytes[in->slots - 1] == p->total[SW_TIER_NVME]);
	CHECK(p->disk_bytes[0] <= p->disk_bytes[1]);
	/* the cost is the max of the four */
	double mx = 0;
	for (int r = 0; r < SW_RES_COUNT; r++)
		mx = p->cost.t[r] > mx ? p->cost.t[r] : mx;
	CHECK(mx > 0 && p->cost.step_s == mx && p->cost.t[p->cost.bottleneck] == mx);
	int p16host_optnvme = 0, p16nvme = 0;
	for (int g = 0; g < tt->ngroups; g++) {
		p16host_optnvme |= p->tier[g][SW_STATE_P16] == SW_TIER_HOST && p->tier[g][SW_STATE_P32] == SW_TIER_NVME;
		p16nvme |= p->tier[g][SW_STATE_P16] == SW_TIER_NVME;
	}
	seen[0] += resident > 0 && resident < tt->ngroups;
	seen[1] += p16host_optnvme;
	seen[2] += p16nvme;
	seen[3] += cnt[0] && cnt[1] && cnt[2];
	seen[4] += !p->carry_on_gpu;
	seen[5] += resident == tt->ngroups;
	n_checked++;
}

/* plans with the given memories and NVMe just large enough over two unequal paths (the engine
 * gives each path the same share, half the total) */
static void plan_and_check(const model *m, sw_plan_input *in)
{
	uint64_t nmin;
	char why[1024];
	in->n_nvme = 2;
	int rc = sw_plan_min_budget(in, SW_TIER_NVME, &nmin, why, sizeof(why));
	CHECKF(rc == 0, "%s: %s", m->name, why);
	strcpy(in->nvme[0].path, "/a");
	strcpy(in->nvme[1].path, "/b");
	in->nvme[0].capacity = nmin / 2 + 1;
	in->nvme[1].capacity = nmin / 2 + 4099;
	sw_plan p;
	rc = sw_plan_build(&p, in);
	CHECKF(rc == 0, "%s: gpu %llu cpu %llu: %s", m->name, (unsigned long long)in->gpu_mem,
	       (unsigned long long)in->cpu_mem, p.why);
	check_plan(m, &p, in);
	sw_plan_free(&p);
}

/* min works; min - 1 fails on that tier by exactly one byte, with a one-line message */
static void just_sufficient(const model *m, sw_plan_input *in, sw_tier tier)
{
	static const char *flag[] = { "--gpu-mem", "--cpu-mem", "--nvme" };
	uint64_t min;
	char why[1024];
	CHECKF(sw_plan_min_budget(in, tier, &min, why, sizeof(why)) == 0, "%s: %s", m->name, why);
	uint64_t *b = tier == SW_TIER_GPU ? &in->gpu_mem : tier == SW_TIER_HOST ? &in->cpu_mem : &in->nvme[0].capacity;
	if (tier == SW_TIER_NVME)
		in->n_nvme = 1;
	*b = min;
	sw_plan p;
	CHECKF(sw_plan_build(&p, in) == 0, "%s: %s at its minimum: %s", m->name, flag[tier], p.why);
	check_plan(m, &p, in);
	sw_plan_free(&p);
	if (min == 0)
		return;
	*b = min - 1;
	CHECK(sw_plan_build(&p, in) == -ENOSPC);
	CHECKF(p.short_tier == tier && p.short_bytes == 1, "%s: %s: short tier %d by %llu", m->name,
	       flag[tier], p.short_tier, (unsigned long long)p.short_bytes);
	CHECKF(strstr(p.why, flag[tier]) && strstr(p.why, "short") && !strchr(p.why, '\n'), "%s", p.why);
	sw_plan_free(&p);
	*b = min;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (rng >> 17) % n;
}

/* Random shapes and budgets: a build either succeeds and passes check_plan, or fails naming a
 * tier whose budget plus the shortfall is exactly that tier's minimum. */
static void random_sweep(int n)
{
	int ok = 0, short_by[SW_TIER_COUNT] = { 0 };
	for (int i = 0; i < n; i++) {
		model m = { "random", rnd(2) ? "llama" : "qwen2", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
		m.heads = (int64_t)(1 + rnd(16));
		m.kv = m.heads % 2 ? m.heads : m.heads / 2;
		m.dim = m.heads * (int64_t)(8 << rnd(5));
		m.layers = (int64_t)(1 + rnd(12));
		m.ffn = (int64_t)(16 + rnd(4 * (uint64_t)m.dim));
		m.vocab = (int64_t)(2 + rnd(5000));
		m.tie = (int)rnd(2);
		m.bias = !strcmp(m.type, "qwen2");
		m.fp32 = rnd(4) == 0;
		m.seq = (int64_t)(1 + rnd(512));
		m.rows = (int64_t)(1 + rnd(3));
		m.batch = m.seq * m.rows * (int64_t)(1 + rnd(8));
		m.chunk = (int64_t)(256 + rnd(100000));
		sw_config c;
		config_of(&m, &c);
		sw_table tt;
		CHECK(sw_table_build(&tt, &c) == 0);
		sw_plan_input in;
		input_of(&m, &tt, &in);
		in.prefetch = (int)(1 + rnd(3));
		in.grad_bufs = (int)(1 + rnd(2));
		in.io_depth = (int)(1 + rnd(3));
		in.slots = (int)(1 + rnd(2));
		in.vocab_chunk = (int64_t)(1 + rnd(4096));
		in.cublas_workspace = rnd(1 << 16);
		in.gpu_reserve = rnd(1 << 12);
		uint64_t state = (uint64_t)tt.total * 18;
		in.gpu_mem = rnd(3 * state + (8 << 20));
		in.cpu_mem = rnd(2 * state + (1 << 20));
		in.n_nvme = (int)rnd(3);
		for (int k = 0; k < in.n_nvme; k++) {
			snprintf(in.nvme[k].path, sizeof(in.nvme[k].path), "/p%d", k);
			in.nvme[k].capacity = 1 + rnd(2 * state);
		}
		sw_plan p;
		int rc = sw_plan_build(&p, &in);
		if (rc == 0) {
			check_plan(&m, &p, &in);
			ok++;
		} else {
			CHECKF(rc == -ENOSPC, "random %d: rc %d: %s", i, rc, p.why);
			sw_tier t = p.short_tier;
			CHECK(t < SW_TIER_COUNT && p.short_bytes > 0 && !strchr(p.why, '\n'));
			short_by[t]++;
			uint64_t min;
			CHECK(sw_plan_min_budget(&in, t, &min, NULL, 0) == 0);
			uint64_t budget = t == SW_TIER_GPU ? in.gpu_mem : t == SW_TIER_HOST ? in.cpu_mem : p.budget[t];
			CHECKF(budget + p.short_bytes == min, "random %d: tier %d: budget %llu + short %llu != min %llu",
			       i, t, (unsigned long long)budget, (unsigned long long)p.short_bytes,
			       (unsigned long long)min);
		}
		sw_plan_free(&p);
		sw_table_free(&tt);
	}
	printf("random: %d of %d fit; short of GPU %d, host %d, NVMe %d\n", ok, n, short_by[0],
	       short_by[1], short_by[2]);
	CHECK(ok > 0 && short_by[0] > 0 && short_by[1] > 0 && short_by[2] > 0);
}

/* A plan at sequence length T, one row per micro-batch, the batch rounded down to whole rows. */
static int plan_at(const sw_plan_input *in0, int64_t T)
{
	sw_plan_input in = *in0;
	in.seq_len = T;
	in.micro_rows = 1;
	in.batch_tokens = in0->batch_tokens / T > 0 ? in0->batch_tokens / T * T : T;
	sw_plan p;
	int rc = sw_plan_build(&p, &in);
	sw_plan_free(&p);
	return rc;
}

/* sw_plan_max_seq: the length it gives plans, one token more does not (the GPU runs short),
 * and a larger --gpu-mem gives a longer row. A 1B llama on a 24 GB card. */
static void max_seq_checks(void)
{
	sw_config c;
	model m = { .name = "1b", .type = "llama", .dim = 2048, .layers = 16, .heads = 32, .kv = 8, .ffn = 8192, .vocab = 128256,
		    .seq = 4096, .rows = 1, .batch = 65536, .chunk = 1 << 22 };
	config_of(&m, &c);
	sw_table tt;
	CHECK(sw_table_build(&tt, &c) == 0);
	sw_plan_input in;
	input_of(&m, &tt, &in);
	in.gpu_mem = 24ull << 30;
	in.cpu_mem = 64ull << 30;
	int64_t t24 = sw_plan_max_seq(&in, 1 << 20);
	CHECK(t24 > 4096 && t24 < (1 << 20));
	CHECK(plan_at(&in, t24) == 0);
	CHECK(plan_at(&in, t24 + 1) == -ENOSPC);
	in.gpu_mem = 40ull << 30;
	int64_t t40 = sw_plan_max_seq(&in, 1 << 20);
	CHECK(t40 > t24 && plan_at(&in, t40) == 0 && plan_at(&in, t40 + 1) == -ENOSPC);
	CHECK(sw_plan_max_seq(&in, 1000) == 1000);      /* the limit when it fits */
	in.gpu_mem = 1 << 20;
	CHECK(sw_plan_max_seq(&in, 1 << 20) == 0);      /* not even one token */
	printf("ok longest row: %lld tokens at --gpu-mem 24GiB, %lld at 40GiB (1B llama, one row per "
	       "micro-batch; one token more is short)\n", (long long)t24, (long long)t40);
	sw_table_free(&tt);
}

int main(void)
{
	random_sweep(3000);

	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		const model *m = &models[i];
		sw_config c;
		config_of(m, &c);
		sw_table tt;
		CHECK(sw_table_build(&tt, &c) == 0);
		sw_plan_input in;
		input_of(m, &tt, &in);
		uint64_t gmin;
		CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
		int pb = m->fp32 ? 4 : 2;
		uint64_t everything = (uint64_t)tt.total * (uint64_t)(pb + 12) +
				      (uint64_t)(m->batch * m->dim * pb) * (uint64_t)(m->layers + 1);
		static const double gf[] = { 0, 0.001, 0.05, 0.2, 0.5, 0.9, 1.0, 1.5 };
		static const double hf[] = { 0, 0.0005, 0.01, 0.1, 0.4, 0.8, 1.0, 2.0 };
		for (size_t a = 0; a < sizeof(gf) / sizeof(gf[0]); a++) {
			in.gpu_mem = gmin + (uint64_t)(gf[a] * (double)everything);
			in.cpu_mem = 0;
			uint64_t hmin;
			char why[1024];
			CHECKF(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, why, sizeof(why)) == 0, "%s", why);
			for (size_t b = 0; b < sizeof(hf) / sizeof(hf[0]); b++) {
				for (int slots = 1; slots <= 2; slots++) {
					in.slots = slots;
					in.cpu_mem = hmin + (uint64_t)(hf[b] * (double)everything);
					plan_and_check(m, &in);
				}
			}
		}
		/* just sufficient, per tier, in a streaming regime with everything spilling */
		in.slots = 2;
		in.cpu_mem = 1ull << 50;
		in.n_nvme = 1;
		in.nvme[0].capacity = 1ull << 55;
		just_sufficient(m, &in, SW_TIER_GPU);
		in.gpu_mem = gmin + (uint64_t)(0.01 * (double)everything);
		just_sufficient(m, &in, SW_TIER_HOST);
		just_sufficient(m, &in, SW_TIER_NVME);
		/* and with the host a little above its minimum (partly on the host) */
		in.cpu_mem += (uint64_t)(0.2 * (double)everything);
		in.nvme[0].capacity = 1ull << 55;
		just_sufficient(m, &in, SW_TIER_NVME);
		sw_table_free(&tt);
	}

	/* the messages, for the 175B config on small budgets */
	{
		const model *m = &models[4];
		sw_config c;
		config_of(m, &c);
		sw_table tt;
		CHECK(sw_table_build(&tt, &c) == 0);
		sw_plan_input in;
		input_of(m, &tt, &in);
		in.gpu_mem = 2ull << 30;
		in.cpu_mem = 128ull << 30;
		sw_plan p;
		uint64_t gmin;
		CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
		CHECK(sw_plan_build(&p, &in) == -ENOSPC);
		CHECK(p.short_tier == SW_TIER_GPU && p.short_bytes == gmin - in.gpu_mem);
		CHECKF(!strncmp(p.why, "--gpu-mem 2.00 GiB is ", 22) && strstr(p.why, "short of the GPU working set")
		       && strstr(p.why, "P16 prefetch window") && !strchr(p.why, '\n'), "%s", p.why);
		sw_plan_free(&p);

		in.gpu_mem = 24ull << 30;
		in.cpu_mem = 1ull << 30;
		uint64_t hmin;
		CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, NULL, 0) == 0);
		CHECK(sw_plan_build(&p, &in) == -ENOSPC);
		CHECK(p.short_tier == SW_TIER_HOST && p.short_bytes == hmin - in.cpu_mem);
		CHECKF(!strncmp(p.why, "--cpu-mem 1.00 GiB is ", 22) && strstr(p.why, "pinned gradient buffers")
		       && !strchr(p.why, '\n'), "%s", p.why);
		sw_plan_free(&p);

		in.cpu_mem = 128ull << 30;
		CHECK(sw_plan_build(&p, &in) == -ENOSPC);      /* no --nvme at all */
		CHECKF(p.short_tier == SW_TIER_NVME && strstr(p.why, "no --nvme path was given"), "%s", p.why);
		sw_plan_free(&p);

		in.n_nvme = 2;
		strcpy(in.nvme[0].path, "/mnt/a");
		strcpy(in.nvme[1].path, "/mnt/b");
		in.nvme[0].capacity = in.nvme[1].capacity = 2000000000000ull;
		CHECK(sw_plan_build(&p, &in) == -ENOSPC);      /* two slots do not fit 2 x 2 TB */
		CHECKF(strstr(p.why, "--nvme paths hold 3.64 TiB") && strstr(p.why, "--checkpoint-only"), "%s", p.why);
		sw_plan_free(&p);
		in.slots = 1;
		CHECK(sw_plan_build(&p, &in) == 0);            /* one slot does */
		CHECK(p.total[SW_TIER_GPU] <= 24ull << 30);
		sw_plan_free(&p);
		sw_table_free(&tt);
	}
	max_seq_checks();
	printf("ok: %d plans checked; regimes: partly resident %d, P16 host + state NVMe %d, P16 NVMe %d, "
	       "checkpoints on 3 tiers %d, carry on host %d, all resident %d\n", n_checked, seen[0],
	       seen[1], seen[2], seen[3], seen[4], seen[5]);
	for (int i = 0; i < 6; i++)
		CHECKF(seen[i] > 0, "the sweep never reached regime %d", i);
	return 0;
}
