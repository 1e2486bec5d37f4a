/* The planner's LoRA mode against numbers worked out by hand for a tiny config: the frozen base
 * holds 2 B/param of P16 and nothing else, the adapters r * (in + out) parameters per targeted
 * linear at 16 B/param + P16, and the per-step traffic (base read once per pass, never written). */
#include "core/tensors.h"
#include "offload/plan.h"
#include "offload/plan_lora.h"
#include "tests/check.h"
#include "tests/plan_tiny.h"

#include <errno.h>
#include <string.h>

enum { R = 8 };                   /* the LoRA rank */

/* the tiny input in LoRA mode, rank R on every target */
static void tiny_lora_input(sw_plan_input *in, const sw_table *tt)
{
	tiny_input(in, tt);
	in->lora_rank = R;
	in->lora_targets = 0;            /* the default: all seven */
}

int main(void)
{
	sw_config cfg;
	tiny_config(&cfg);
	sw_table tt;
	CHECK(sw_table_build(&tt, &cfg) == 0);
	const uint64_t layer = TINY_LAYER, embed = TINY_EMBED, head = TINY_HEAD;
	const uint64_t total = embed + L * layer + head;
	/* adapters per layer: q 8 (64+64), k and v 8 (64+32), o 8 (64+64), gate/up/down 8 (64+160) */
	const uint64_t ad = 1024 + 768 + 768 + 1024 + 3 * 1792, ads = L * ad;
	CHECK(ad == 8960);
	CHECK(sw_lora_layer_params(&cfg, R, SW_LORA_ALL) == (int64_t)ad);
	CHECK(sw_lora_layer_params(&cfg, R, SW_LORA_Q | SW_LORA_V) == 1024 + 768);

	sw_plan_input in;
	tiny_lora_input(&in, &tt);
	uint64_t ws[SW_PURPOSE_COUNT];
	/* the working set less the gradient buffer (the base has no gradient; untied: no tied one) */
	const uint64_t wsl = sw_plan_gpu_working_set(&in, ws) - ws[SW_PURPOSE_GRAD];
	const uint64_t window = 2 * D256(layer * 2);
	const uint64_t item = (uint64_t)T * C * 2, carry = (uint64_t)BATCH * C * 2;
	/* a host carry, each way per step: L layer inputs + the head's input in (forward, head), L
	 * in again in the backward; L + 1 out in the forward, the head's gradient, L - 1 gradients
	 * in the backward (none into the frozen embedding) */
	const uint64_t carry_moves = (uint64_t)(2 * L + 1) * BATCH * C * 2;
	const uint64_t held = (256u << 10) + 8 * BATCH, xfer = AL(layer * 4);   /* chunk: the largest group */
	const uint64_t ad_host = 4 * AL(ad * 4) + AL(ad * 2);
	const double n_layer_gemm = (double)L * (QD * C + 2 * KVD * C + C * QD + 3.0 * F * C);
	const double n_gemm = n_layer_gemm + (double)V * C;

	/* A: GPU = working set + window: the base streams from the host, adapters on the host */
	{
		in.gpu_mem = wsl + window;
		in.cpu_mem = 1ull << 30;
		sw_plan_lora p;
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.adapter_layer == (int64_t)ad && p.adapter_params == (int64_t)ads);
		CHECK(p.base_params == (int64_t)total);
		CHECK(p.streaming && !p.carry_on_gpu && p.gpu_adapter_layers == 0 && p.resident_groups == 0);
		for (int g = 0; g < L + 2; g++)
			CHECK(p.base_tier[g] == SW_TIER_HOST);
		CHECK(p.ckpt_count[SW_TIER_HOST] == L * M);
		/* bytes: 2 B/param of base P16, 4 B each of P32, m, v, gradient and 2 of P16 per adapter */
		CHECK(p.payload[SW_LORA_BASE_P16] == 2 * total);
		for (int r = SW_LORA_AD_P32; r <= SW_LORA_AD_GRAD; r++)
			CHECK(p.payload[r] == 4 * ads);
		CHECK(p.payload[SW_LORA_AD_P16] == 2 * ads);
		CHECK(p.bytes[SW_TIER_HOST][SW_LORA_BASE_P16] == AL(embed * 2) + L * AL(layer * 2) + AL(head * 2));
		CHECK(p.bytes[SW_TIER_HOST][SW_LORA_AD_M] == L * AL(ad * 4));
		CHECK(p.total[SW_TIER_GPU] == wsl + window);
		/* the host holds exactly these: nothing else (no base P32, m, v, gradient) */
		uint64_t host = AL(embed * 2) + L * AL(layer * 2) + AL(head * 2) + L * ad_host +
				L * M * AL(item) + AL(carry) + xfer + held;
		CHECKF(p.total[SW_TIER_HOST] == host, "%llu vs %llu", (unsigned long long)p.total[SW_TIER_HOST],
		       (unsigned long long)host);
		/* traffic: embedding and head once, layers twice but the top one once (its window
		 * slot still holds it from the forward when the backward starts); adapters' P16
		 * twice, gradients once */
		const sw_plan_lora_cost *k = &p.cost;
		CHECK(k->h2d_base == 2 * (embed + (2 * L - 1) * layer + head));
		CHECK(k->h2d_adapter == 2 * 2 * ads && k->d2h_adapter == 4 * ads && k->adam_params == (int64_t)ads);
		CHECK(k->h2d_act == L * M * item + carry_moves && k->d2h_act == k->h2d_act);
		CHECK(k->nvme_read == 0 && k->nvme_write == 0);
		/* FLOPs: forward and input gradients of the base, no weight gradients */
		CHECK(close_to(k->flops_fwd, 2 * n_gemm * BATCH) && close_to(k->flops_bwd, 2 * n_gemm * BATCH));
		CHECK(close_to(k->flops_recompute, 2 * n_layer_gemm * BATCH));
		CHECK(close_to(k->flops_adapter, 8.0 * (double)ads * BATCH));
		double fl = 4 * n_gemm * BATCH + 2 * n_layer_gemm * BATCH + 8.0 * L * BATCH * S * QD + 8.0 * ads * BATCH;
		CHECK(close_to(k->t[SW_RES_COMPUTE], fl / 1e9));
		double h2d = (double)(k->h2d_base + k->h2d_adapter + k->h2d_act) / 1e6;
		double d2h = (double)(4 * ads + L * M * item + carry_moves) / 2e6;
		CHECK(close_to(k->t[SW_RES_PCIE], h2d > d2h ? h2d : d2h));
		CHECK(close_to(k->t[SW_RES_CPU_ADAM], (double)ads / 1e5));
		sw_plan_lora_free(&p);
	}
	/* B: a GPU with room for everything: nothing moves but the adapters' updates on the GPU */
	{
		in.gpu_mem = 1ull << 30;
		sw_plan_lora p;
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		CHECK(!p.streaming && p.gpu_adapter_layers == L && p.resident_groups == L + 2);
		CHECK(p.bytes[SW_TIER_GPU][SW_LORA_AD_V] == L * D256(ad * 4));
		CHECK(p.bytes[SW_TIER_GPU][SW_LORA_BASE_P16] == D256(embed * 2) + L * D256(layer * 2) + D256(head * 2));
		CHECK(p.cost.h2d_base == 0 && p.cost.adam_params == 0 && p.cost.nvme_write == 0);
		sw_plan_lora_free(&p);
	}
	/* D: room for the carry and exactly one layer's adapters (4 B x 4 states + P16 each, in
	 * 256-byte blocks) after the working set and the window; one byte less: none */
	{
		in.cpu_mem = 1ull << 30;
		in.gpu_mem = wsl + window + D256(carry) + 4 * D256(ad * 4) + D256(ad * 2);
		sw_plan_lora p;
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.carry_on_gpu && p.gpu_adapter_layers == 1 && p.adapter_tier[1] == SW_TIER_GPU);
		CHECK(p.cost.adam_params == (int64_t)ad && p.cost.d2h_adapter == 4 * ad);
		sw_plan_lora_free(&p);
		in.gpu_mem--;
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.carry_on_gpu && p.gpu_adapter_layers == 0 && p.cost.adam_params == (int64_t)ads);
		sw_plan_lora_free(&p);
	}
	/* the base's NVMe stripe and stage: a 1,001,472-parameter bf16 chunk (2,002,944 bytes, 489
	 * pages) reads through 1 MiB stripes into a 2 MiB stage; a chunk under 1 MiB is its own
	 * stripe, 4 KiB-rounded */
	CHECK(sw_plan_lora_stripe(2002944) == 1u << 20 && sw_plan_lora_stage(2002944) == 2u << 20);
	CHECK(sw_plan_lora_stripe(5000) == 8192 && sw_plan_lora_stage(5000) == 8192);
	CHECK(sw_plan_lora_stage(128u << 20) == 128u << 20);
	/* C: the host holds only what it must plus NVMe staging: the base and checkpoints on NVMe */
	{
		in.gpu_mem = wsl + window;
		const uint64_t must = held + xfer + AL(carry) + L * ad_host;
		const uint64_t stage = 2 * AL(layer * 2) + 4 * AL(item);
		in.cpu_mem = must + stage;
		in.n_nvme = 1;
		strcpy(in.nvme[0].path, "/nonexistent");
		in.nvme[0].capacity = 1ull << 30;
		sw_plan_lora p;
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		for (int g = 0; g < L + 2; g++)
			CHECK(p.base_tier[g] == SW_TIER_NVME);
		CHECK(p.ckpt_count[SW_TIER_NVME] == L * M);
		CHECK(p.total[SW_TIER_NVME] == AL(embed * 2) + L * AL(layer * 2) + AL(head * 2) + L * M * AL(item));
		CHECK(p.cost.nvme_read == 2 * (embed + (2 * L - 1) * layer + head) + L * M * item);
		CHECK(p.cost.nvme_write == L * M * item);     /* checkpoints only: no base write-back */
		sw_plan_lora_free(&p);
		in.cpu_mem--;
		CHECK(sw_plan_lora_build(&p, &in) == -ENOSPC && p.short_tier == SW_TIER_HOST && p.short_bytes == 1);
		sw_plan_lora_free(&p);
		in.cpu_mem++;
		in.nvme[0].capacity = AL(embed * 2) + L * AL(layer * 2) + AL(head * 2) + L * M * AL(item) - 1;
		CHECK(sw_plan_lora_build(&p, &in) == -ENOSPC && p.short_tier == SW_TIER_NVME);
		CHECK(strstr(p.why, "--nvme capacity"));
		sw_plan_lora_free(&p);
		in.n_nvme = 0;
	}
	/* the step's uses of streamed groups (groups 0 embedding, 1..3 layers, 4 head), by hand:
	 * slots alternate; a use whose slot still holds its group is not fetched */
	{
		sw_config c3 = tt.cfg;
		c3.n_layers = 3;
		sw_table t3;
		CHECK(sw_table_build(&t3, &c3) == 0);
		sw_lora_use u[11];
		const sw_tier all[5] = { SW_TIER_HOST, SW_TIER_HOST, SW_TIER_NVME, SW_TIER_NVME, SW_TIER_HOST };
		/* E 1 2 3 H | 3 2 1: layer 3 again in slot 1, after the head in slot 0 */
		const int g1[8] = { 0, 1, 2, 3, 4, 3, 2, 1 }, s1[8] = { 0, 1, 0, 1, 0, 1, 0, 1 };
		const int f1[8] = { 1, 1, 1, 1, 1, 0, 1, 1 }, p1[8] = { -1, -1, 0, 1, 2, 3, 4, 5 };
		CHECK(sw_plan_lora_uses(&t3, all, 1, u) == 8);
		for (int i = 0; i < 8; i++)
			CHECKF(u[i].g == g1[i] && u[i].slot == s1[i] && u[i].fetch == f1[i] && u[i].prev == p1[i],
			       "use %d", i);
		CHECK(sw_plan_lora_uses(&t3, all, 0, u) == 5);   /* an eval: forward and head */
		/* the head resident: layer 3 twice in a row, one slot, one fetch; then layer 2 in the
		 * other slot, which still holds it */
		const sw_tier hr[5] = { SW_TIER_GPU, SW_TIER_HOST, SW_TIER_HOST, SW_TIER_HOST, SW_TIER_GPU };
		const int g2[6] = { 1, 2, 3, 3, 2, 1 }, f2[6] = { 1, 1, 1, 0, 0, 1 }, s2[6] = { 0, 1, 0, 0, 1, 0 };
		CHECK(sw_plan_lora_uses(&t3, hr, 1, u) == 6);
		for (int i = 0; i < 6; i++)
			CHECKF(u[i].g == g2[i] && u[i].fetch == f2[i] && u[i].slot == s2[i], "use %d", i);
		CHECK(u[3].prev == 2 && u[4].prev == 1);
		/* tied, embedding streamed: E 1 2 3 H E | 3 2 1: layer 3's slot took the embedding */
		c3.tie_embeddings = 1;
		sw_table_free(&t3);
		CHECK(sw_table_build(&t3, &c3) == 0);
		CHECK(sw_plan_lora_uses(&t3, all, 1, u) == 9);
		CHECK(u[5].g == 0 && u[5].slot == 1 && u[5].fetch && u[6].g == 3 && u[6].fetch);
		sw_table_free(&t3);
	}
	/* bad input: rank out of range or above a targeted linear's smaller side; targets */
	{
		sw_plan_lora p;
		in.gpu_mem = 1ull << 30;
		in.lora_rank = 0;
		CHECK(sw_plan_lora_build(&p, &in) == -EINVAL && strstr(p.why, "--lora-rank 0"));
		sw_plan_lora_free(&p);
		in.lora_rank = KVD + 1;          /* k_proj / v_proj: 32 x 64 */
		CHECK(sw_plan_lora_build(&p, &in) == -EINVAL && strstr(p.why, "k_proj"));
		sw_plan_lora_free(&p);
		in.lora_targets = SW_LORA_Q | SW_LORA_O;   /* 64 x 64 only: 33 is fine */
		CHECKF(sw_plan_lora_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.adapter_layer == (KVD + 1) * (2 * 128));
		sw_plan_lora_free(&p);
		unsigned m;
		char why[256];
		CHECK(sw_lora_targets_parse("q,k,v,o,gate,up,down", &m, why, sizeof(why)) == 0 && m == SW_LORA_ALL);
		CHECK(sw_lora_targets_parse("down,q", &m, why, sizeof(why)) == 0 && m == (SW_LORA_Q | SW_LORA_DOWN));
		CHECK(sw_lora_targets_parse("q,lm_head", &m, why, sizeof(why)) == -EINVAL && strstr(why, "'lm_head'"));
		CHECK(sw_lora_targets_parse("", &m, why, sizeof(why)) == -EINVAL);
		/* the full fine-tuning planner refuses a LoRA input */
		sw_plan fp;
		CHECK(sw_plan_build(&fp, &in) == -EINVAL);
		sw_plan_free(&fp);
	}
	sw_table_free(&tt);
	printf("ok\n");
	return 0;
}
