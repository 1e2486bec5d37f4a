/* The planner's accounting and cost model against numbers worked out by hand from the formulas
 * of docs/planner.md for a tiny config (nothing here is copied from the planner's output). */
#include "core/tensors.h"
#include "offload/plan.h"
#include "tests/check.h"
#include "tests/plan_tiny.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	sw_config cfg;
	tiny_config(&cfg);
	sw_table tt;
	CHECK(sw_table_build(&tt, &cfg) == 0);

	/* parameters, by hand */
	const uint64_t layer = TINY_LAYER, embed = TINY_EMBED, head = TINY_HEAD;
	const uint64_t total = embed + L * layer + head;
	CHECK((uint64_t)tt.g[1].numel == layer && (uint64_t)tt.g[0].numel == embed);
	CHECK((uint64_t)tt.g[L + 1].numel == head && (uint64_t)tt.total == total);
	const uint64_t maxg = layer;     /* 43136 > 16448 */
	CHECK(layer == 43136);

	sw_plan_input in;
	tiny_input(&in, &tt);

	/* the GPU working set, by hand */
	uint64_t ws[SW_PURPOSE_COUNT];
	uint64_t w0 = sw_plan_gpu_working_set(&in, ws);
	const uint64_t grad = maxg * 4;
	const uint64_t act = 2 * 2 * (uint64_t)T * (3 * C + 2 * QD + 2 * KVD + 3 * F) + 4 * T * H + 8 * T + 4 * S * S;
	const uint64_t mbio = 6 * (uint64_t)T * C * 2;
	const uint64_t headws = 2 * 4 * (uint64_t)T * 100 + 16 * T + 2 * (uint64_t)T * C * 2 + 8 * T;
	CHECKF(ws[SW_PURPOSE_GRAD] == grad, "%llu", (unsigned long long)ws[SW_PURPOSE_GRAD]);
	CHECKF(ws[SW_PURPOSE_ACT] == act, "%llu vs %llu", (unsigned long long)ws[SW_PURPOSE_ACT], (unsigned long long)act);
	CHECK(ws[SW_PURPOSE_MB_IO] == mbio);
	CHECKF(ws[SW_PURPOSE_HEAD] == headws, "%llu vs %llu", (unsigned long long)ws[SW_PURPOSE_HEAD], (unsigned long long)headws);
	CHECK(ws[SW_PURPOSE_TIED_GRAD] == 0 && ws[SW_PURPOSE_WORKSPACE] == 1 << 20);
	CHECK(w0 == grad + act + mbio + headws + (1 << 20));
	const uint64_t window = 2 * maxg * 2;
	const uint64_t all_state = total * 14;
	uint64_t gmin = 0;
	CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
	CHECK(gmin == w0 + window);

	/* FLOPs, by hand: GEMM parameters are the layer matrices plus lm_head */
	const double n_layer_gemm = (double)L * (QD * C + 2 * KVD * C + C * QD + 3.0 * F * C);
	const double n_gemm = n_layer_gemm + (double)V * C;
	/* the backward's recompute: every layer GEMM but the down projection (F x C), whose output
	 * the backward does not need */
	const double n_down = (double)L * F * C;
	const double flops = 6 * n_gemm * BATCH + 2 * (n_layer_gemm - n_down) * BATCH + 8.0 * L * BATCH * S * QD;
	const uint64_t item = (uint64_t)T * C * 2;                  /* one checkpoint */
	const uint64_t carry_pass = (uint64_t)(L + 1) * BATCH * C * 2;
	/* P16 fetches with a window of K = 2 (in.prefetch), uses 0, 1, 2, head, 2, 1 (forward, then
	 * the head and the backward): each use loads its group and the next distinct one. Layer 2
	 * is loaded for the forward and is still in the window when the backward starts (only the
	 * head came between), so: the embedding once, layer 1 twice, layer 2 once, the head once */
	const uint64_t p16_fetch = (embed + 3 * layer + head) * 2;

	/* A: weights streamed from the host. GPU = exactly the working set and window: no carry,
	 * no resident group, no checkpoint on the GPU; the host holds everything. */
	{
		in.gpu_mem = w0 + window;
		in.cpu_mem = 1ull << 30;
		in.n_nvme = 0;
		sw_plan p;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.streaming && !p.carry_on_gpu && p.resident_groups == 0);
		CHECK(p.ckpt_count[SW_TIER_GPU] == 0 && p.ckpt_count[SW_TIER_HOST] == L * M);
		for (int g = 0; g < L + 2; g++) {
			CHECK(p.tier[g][SW_STATE_P16] == SW_TIER_HOST && p.tier[g][SW_STATE_V] == SW_TIER_HOST);
			CHECK(p.tier[g][SW_STATE_GRAD] == SW_TIER_HOST);
		}
		const uint64_t h2d = p16_fetch + L * M * item + 2 * carry_pass;
		/* gradients, every checkpoint out in forward (copied from the GPU's view of the carry),
		 * x and dx through every layer and the head */
		const uint64_t d2h = total * 4 + L * M * item + 2 * carry_pass;
		CHECKF(p.cost.h2d == h2d, "h2d %llu vs %llu", (unsigned long long)p.cost.h2d, (unsigned long long)h2d);
		CHECKF(p.cost.d2h == d2h, "d2h %llu vs %llu", (unsigned long long)p.cost.d2h, (unsigned long long)d2h);
		CHECK(p.cost.nvme_read == 0 && p.cost.nvme_write == 0);
		CHECK(p.cost.adam_params == (int64_t)total);
		/* the GPU's memory-bound bytes: every gradient's sum of squares and the embedding's
		 * and head's zeroing (one pass), no resident group (no GPU AdamW); no rate given, no
		 * time */
		CHECK(p.cost.gpu_mem_bytes == (total + embed + head) * 4 && p.cost.t_gpu_mem == 0);
		/* one GPU gradient buffer: every gradient's copy to the host (all groups are updated
		 * there) is on the GPU's critical path */
		const double stall = (double)(total * 4) / 2e6;
		CHECK(p.cost.grad_d2h == total * 4 && close_to(p.cost.t_grad_stall, stall));
		double tc = flops / 1e9 + stall, th = (double)h2d / 1e6, td = (double)d2h / 2e6, ta = (double)total / 1e5;
		CHECK(close_to(p.cost.t[SW_RES_COMPUTE], tc));
		CHECK(close_to(p.cost.t[SW_RES_PCIE], th > td ? th : td));
		CHECK(p.cost.t[SW_RES_NVME] == 0);
		CHECK(close_to(p.cost.t[SW_RES_CPU_ADAM], ta));
		double mx = tc > th ? tc : th;
		mx = mx > td ? mx : td;
		mx = mx > ta ? mx : ta;
		CHECK(close_to(p.cost.step_s, mx));
		CHECK(close_to(p.cost.t[p.cost.bottleneck], mx));
		CHECK(close_to(p.cost.tokens_per_s, BATCH / mx));
		/* host: P16 cache, P32/m/v, checkpoints, pinned gradient buffers (one per group: the
		 * 1 GiB budget has room for them after everything else), carry, load/save staging;
		 * every pinned buffer whole 4 KiB pages */
		const uint64_t nhg = L + 2;
		CHECK(nhg > 2 && nhg <= SW_PLAN_HOST_GRADS_MAX && p.host_grads == (int)nhg);
		const uint64_t p16h = AL(embed * 2) + L * AL(layer * 2) + AL(head * 2);
		const uint64_t opth = AL(embed * 4) + L * AL(layer * 4) + AL(head * 4);
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_P16] == p16h);
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_M] == opth);
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_GRAD] == nhg * AL(maxg * 4));
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_CARRY] == AL((uint64_t)BATCH * C * 2));
		/* load/save staging: one I/O chunk of fp32; the default chunk is larger than any group */
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_XFER] == AL(maxg * 4));
		/* and the process's machinery: 256 KiB + 8 B per token of the batch, held */
		CHECK(p.bytes[SW_TIER_HOST][SW_PURPOSE_RESERVE] == (256u << 10) + 8 * (uint64_t)BATCH);
		const uint64_t host2 = p16h + 3 * opth + L * M * AL(item) + 2 * AL(maxg * 4) +
				       AL((uint64_t)BATCH * C * 2) + AL(maxg * 4) + (256u << 10) + 8 * (uint64_t)BATCH;
		CHECK(p.total[SW_TIER_HOST] == host2 + (nhg - 2) * AL(maxg * 4));
		CHECK(p.total[SW_TIER_GPU] == w0 + window);
		sw_plan_apply(&p, &tt);
		for (int g = 0; g < L + 2; g++)
			for (int s = 0; s < SW_STATE_COUNT; s++)
				CHECK(tt.g[g].tier[s] == p.tier[g][s]);
		sw_plan_free(&p);
		/* A budget with room for one and a half buffers beyond the two: one more, the
		 * placement unchanged; SW_HOST_GRADS=2 asks for the two alone */
		in.cpu_mem = host2 + AL(maxg * 4) * 3 / 2;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.host_grads == 3 && p.ckpt_count[SW_TIER_HOST] == L * M);
		CHECK(p.total[SW_TIER_HOST] == host2 + AL(maxg * 4) && p.total[SW_TIER_HOST] <= in.cpu_mem);
		sw_plan_free(&p);
		setenv("SW_HOST_GRADS", "2", 1);
		in.cpu_mem = 1ull << 30;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		unsetenv("SW_HOST_GRADS");
		CHECK(p.host_grads == 2 && p.total[SW_TIER_HOST] == host2);
		sw_plan_free(&p);
	}

	/* B: everything possible on NVMe. Small chunks so staging is cheaper than holding it all;
	 * the host gets exactly its minimum, which by hand is the pinned gradient buffers, the
	 * carry, staging for the three streams and the load/save staging (one chunk of fp32).
	 * Staging: 2 buffers of a P16 chunk, 2 optimizer sets (P32, m, v and P16 of a chunk, each
	 * whole pages), 2 x io_depth checkpoints. A 4 KiB stripe unit: no extent is moved to a
	 * stripe boundary, so the NVMe footprint is the extents' 4 KiB blocks. */
	{
		in.chunk_params = 4096;
		in.nvme_stripe = 4096;
		in.gpu_mem = w0 + window;
		in.n_nvme = 1;
		strcpy(in.nvme[0].path, "/x");
		in.nvme[0].capacity = 1ull << 40;
		const uint64_t stage = 2 * 4096 * 2 + 2 * (3 * 4096 * 4 + 4096 * 2) + 2 * 2 * AL(item);
		const uint64_t hmin_hand = 2 * AL(maxg * 4) + AL((uint64_t)BATCH * C * 2) + stage + 4096 * 4 +
					   (256u << 10) + 8 * (uint64_t)BATCH;   /* + the machinery */
		CHECK(hmin_hand < total * 14 + L * M * item);
		uint64_t hmin = 0;
		CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, NULL, 0) == 0);
		CHECKF(hmin == hmin_hand, "%llu vs %llu", (unsigned long long)hmin, (unsigned long long)hmin_hand);
		in.cpu_mem = hmin;
		sw_plan p;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.ckpt_count[SW_TIER_NVME] == L * M);
		for (int g = 0; g < L + 2; g++)
			CHECK(p.tier[g][SW_STATE_P16] == SW_TIER_NVME && p.tier[g][SW_STATE_P32] == SW_TIER_NVME);
		const uint64_t nr = p16_fetch + total * 12 + L * M * item;
		const uint64_t nw = total * 2 + total * 12 + L * M * item;
		CHECK(p.cost.nvme_read == nr && p.cost.nvme_write == nw);
		CHECK(close_to(p.cost.t[SW_RES_NVME], (double)nr / 1e6 + (double)nw / 0.5e6));
		CHECK(p.cost.bottleneck == SW_RES_NVME && p.cost.t_after == 0);
		CHECK(p.cost.expect_s == p.cost.predict_s);   /* no mixed rate given */
		const double bound = p.cost.step_s, predict = p.cost.predict_s;
		sw_plan_free(&p);
		/* the disk's reads and writes together at a mixed rate below both: the expected step
		 * is every byte at that rate (plus the boundary's idle time); the bound stays */
		in.rates.nvme_mix_gbs = 0.4e-3;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.cost.step_s == bound && p.cost.predict_s == predict);
		CHECK(close_to(p.cost.t_nvme_mix, (double)(nr + nw) / 0.4e6));
		CHECKF(close_to(p.cost.expect_s, predict - bound + (double)(nr + nw) / 0.4e6), "%g vs %g",
		       p.cost.expect_s, predict - bound + (double)(nr + nw) / 0.4e6);
		sw_plan_free(&p);
		/* a mixed rate at which the bytes take less than the bound moves nothing */
		in.rates.nvme_mix_gbs = 1.0;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.cost.expect_s == predict && p.cost.t_nvme_mix < bound);
		sw_plan_free(&p);
		in.rates.nvme_mix_gbs = -1;
		CHECK(sw_plan_build(&p, &in) == -EINVAL);
		CHECKF(strstr(p.why, "--nvme-mix-gbs") && !strchr(p.why, '\n'), "%s", p.why);
		sw_plan_free(&p);
		in.rates.nvme_mix_gbs = 0;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.cost.h2d == p16_fetch + L * M * item + 2 * carry_pass);
		/* disk, by hand: every range 4 KiB aligned; P16 once, P32/m/v per slot, spill once */
		const uint64_t p16d = AL(embed * 2) + L * AL(layer * 2) + AL(head * 2);
		const uint64_t opt1 = 3 * (AL(embed * 4) + L * AL(layer * 4) + AL(head * 4));
		const uint64_t spill = L * M * AL(item);
		CHECK(p.disk_bytes[1] == p16d + 2 * opt1 + spill);
		CHECK(p.disk_bytes[0] == p16d + opt1 + spill);
		CHECK(p.total[SW_TIER_NVME] == p.disk_bytes[1]);
		CHECK(p.total[SW_TIER_HOST] == hmin);
		sw_plan_free(&p);

		/* the NVMe minimum is that total; one byte less fails naming --nvme */
		uint64_t nmin = 0;
		CHECK(sw_plan_min_budget(&in, SW_TIER_NVME, &nmin, NULL, 0) == 0);
		CHECK(nmin == p16d + 2 * opt1 + spill);
		in.nvme[0].capacity = nmin - 1;
		CHECK(sw_plan_build(&p, &in) == -ENOSPC);
		CHECK(p.short_tier == SW_TIER_NVME && p.short_bytes == 1);
		CHECKF(strstr(p.why, "--nvme") && strstr(p.why, "--checkpoint-only"), "%s", p.why);
		sw_plan_free(&p);
		in.slots = 1;                /* one slot fits where two do not */
		CHECK(sw_plan_build(&p, &in) == 0);
		CHECK(p.total[SW_TIER_NVME] == p16d + opt1 + spill);
		sw_plan_free(&p);
		in.slots = 2;
		in.chunk_params = 64 << 20;
		in.n_nvme = 0;
	}

	/* D: as B with clipping (two backward passes): pass 2 fetches P16 again (layers, layer L
	 * once more for x_L's recompute, the head), reads every checkpoint again, moves dx through
	 * the host carry again, and runs every GEMM and attention again */
	{
		in.chunk_params = 4096;
		in.nvme_stripe = 4096;
		in.gpu_mem = w0 + window;
		in.n_nvme = 1;
		strcpy(in.nvme[0].path, "/x");
		in.nvme[0].capacity = 1ull << 40;
		in.passes = 2;
		uint64_t hmin = 0;
		CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, NULL, 0) == 0);
		in.cpu_mem = hmin;
		sw_plan p;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.ckpt_count[SW_TIER_NVME] == L * M && !p.carry_on_gpu);
		/* uses 0, 1, 2, head, 2, 1, then pass 2: 2 (x_L), head, 2, 1. After layer 1's use at the
		 * end of pass 1 the window loads the next group, 2, which pass 2 then finds; the head
		 * is loaded again (evicted by layer 1), layer 2 stays for its backward, layer 1 is
		 * loaded again: the embedding once, layer 1 three times, layer 2 once, the head twice */
		const uint64_t fetch2 = (embed + 4 * layer + 2 * head) * 2;
		const uint64_t nr = fetch2 + total * 12 + 2 * L * M * item;
		const uint64_t nw = total * 2 + total * 12 + L * M * item;
		CHECKF(p.cost.nvme_read == nr, "%llu vs %llu", (unsigned long long)p.cost.nvme_read,
		       (unsigned long long)nr);
		CHECK(p.cost.nvme_write == nw);
		CHECK(p.cost.h2d == fetch2 + 2 * L * M * item + 3 * carry_pass);
		CHECK(p.cost.d2h == total * 4 + L * M * item + 3 * carry_pass);
		const double pass2 = (6 * n_gemm - 2 * n_down) * BATCH + 2 * (n_layer_gemm / L) * BATCH +
				     (6.0 * L + 2) * BATCH * S * QD;
		/* + the wait for each gradient's copy (one buffer; the update pass copies them) */
		CHECK(close_to(p.cost.t[SW_RES_COMPUTE], (flops + pass2) / 1e9 + (double)(total * 4) / 2e6));
		/* the MFU numerator stays the model's: 6NT + attention forward and backward */
		CHECK(close_to(sw_plan_model_flops(&p), 6 * n_gemm * BATCH + 6.0 * L * BATCH * S * QD));
		sw_plan_free(&p);
		in.passes = 3;
		CHECK(sw_plan_build(&p, &in) == -EINVAL && strstr(p.why, "--clip"));
		sw_plan_free(&p);
		in.passes = 1;
		in.chunk_params = 64 << 20;
		in.n_nvme = 0;
	}

	/* C: all on the GPU, carry and checkpoints too: no traffic, the step is the compute */
	{
		/* the state in the arena's 256-byte blocks: the head's P16 is 32896 B, 128 B short
		 * of a whole block */
		const uint64_t state_dev = D256(embed * 2) + 3 * D256(embed * 4) +
					   L * (D256(layer * 2) + 3 * D256(layer * 4)) + D256(head * 2) + 3 * D256(head * 4);
		CHECK(state_dev == all_state + 128);
		in.gpu_mem = w0 + state_dev + D256((uint64_t)BATCH * C * 2) + L * M * D256(item);
		/* the host holds only the load/save staging (one chunk) and the machinery */
		const uint64_t mach = (256u << 10) + 8 * (uint64_t)BATCH;
		in.cpu_mem = AL(maxg * 4) + mach - 1;
		sw_plan p;
		CHECK(sw_plan_build(&p, &in) == -ENOSPC && p.short_tier == SW_TIER_HOST && p.short_bytes == 1);
		sw_plan_free(&p);
		in.cpu_mem = AL(maxg * 4) + mach;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(!p.streaming && p.carry_on_gpu && p.resident_groups == L + 2);
		CHECK(p.ckpt_count[SW_TIER_GPU] == L * M && p.bytes[SW_TIER_GPU][SW_PURPOSE_WINDOW] == 0);
		CHECK(p.total[SW_TIER_GPU] == in.gpu_mem && p.total[SW_TIER_HOST] == AL(maxg * 4) + mach);
		CHECK(p.cost.h2d == 0 && p.cost.d2h == 0 && p.cost.adam_params == 0);
		CHECK(close_to(p.cost.step_s, flops / 1e9) && p.cost.bottleneck == SW_RES_COMPUTE);
		/* every group resident: its sums of squares and zeroing as above, and GPU AdamW of
		 * every parameter (read P32, m, v and the gradient, write P32, m, v and P16: 30 B) */
		const uint64_t gmem = (total + embed + head) * 4 + total * 30;
		CHECK(p.cost.gpu_mem_bytes == gmem && p.cost.expect_s == p.cost.predict_s);
		sw_plan_free(&p);
		/* at a given rate that work lengthens the compute-bound step (the expected step; the
		 * bound stays) */
		in.rates.gpu_bw_gbs = 0.5e-3;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(close_to(p.cost.step_s, flops / 1e9) && close_to(p.cost.t_gpu_mem, (double)gmem / 0.5e6));
		CHECKF(close_to(p.cost.expect_s, p.cost.predict_s + (double)gmem / 0.5e6), "%g vs %g",
		       p.cost.expect_s, p.cost.predict_s + (double)gmem / 0.5e6);
		sw_plan_free(&p);
		in.rates.gpu_bw_gbs = -1;
		CHECK(sw_plan_build(&p, &in) == -EINVAL);
		CHECKF(strstr(p.why, "--gpu-bw-gbs") && !strchr(p.why, '\n'), "%s", p.why);
		sw_plan_free(&p);
		in.rates.gpu_bw_gbs = 0;
		/* one-pass clipping (room for the held gradients): a step is one pass, a redone step
		 * and the two-pass scheme two, and a resident group is updated once in each (the
		 * speculative pass holds its gradient; a rollback discards it) */
		in.passes = 2;
		in.speculate = 1;
		in.gpu_mem += total * 4;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.speculative && p.resident_groups == L + 2);
		CHECK(p.cost.gpu_mem_bytes == gmem);
		CHECK(p.redo.gpu_mem_bytes == gmem + (total + embed + head) * 4);
		CHECK(p.two.gpu_mem_bytes == gmem + (total + embed + head) * 4);
		sw_plan_free(&p);
		in.passes = 1;
		in.speculate = 0;
		in.gpu_mem -= total * 4;
	}

	/* fp32 compute: P16 and activations 4 B */
	{
		in.fp32 = 1;
		uint64_t ws32[SW_PURPOSE_COUNT];
		sw_plan_gpu_working_set(&in, ws32);
		CHECK(ws32[SW_PURPOSE_MB_IO] == 6 * (uint64_t)T * C * 4);
		CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
		uint64_t w32 = 0;
		for (int u = 0; u < SW_PURPOSE_COUNT; u++)
			w32 += ws32[u];
		CHECK(gmin == w32 + 2 * maxg * 4);
		in.fp32 = 0;
	}

	/* gradient buffers: two take the copies off the critical path; without a count the plan
	 * keeps two where they fit and are predicted faster, one where they do not fit */
	{
		in.gpu_mem = w0 + window + grad;      /* room for a second gradient buffer */
		in.cpu_mem = 1ull << 30;
		in.rates.adam_params_per_s = 1e9;   /* compute-bound: AdamW fast, the GEMMs slow */
		in.rates.gemm_tflops = 1e-4;
		in.n_nvme = 0;
		sw_plan p;
		in.grad_bufs = 2;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.resident_groups == 0 && p.cost.grad_d2h == total * 4 && p.cost.t_grad_stall == 0);
		CHECK(close_to(p.cost.t[SW_RES_COMPUTE], flops / 1e8));
		double two_s = p.cost.step_s;
		sw_plan_free(&p);
		in.grad_bufs = 1;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		double one_s = p.cost.step_s;
		CHECK(close_to(p.cost.t[SW_RES_COMPUTE], flops / 1e8 + (double)(total * 4) / 2e6));
		sw_plan_free(&p);
		in.grad_bufs = 0;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECKF(p.in.grad_bufs == (two_s < 0.99 * one_s ? 2 : 1), "chose %d: %g s with two, %g s with one",
		       p.in.grad_bufs, two_s, one_s);
		CHECKF(p.in.grad_bufs == 2, "one %g two %g", one_s, two_s);   /* the stall is on the step's bound */
		sw_plan_free(&p);
		in.gpu_mem = w0 + window;             /* one buffer's room only */
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.in.grad_bufs == 1);
		sw_plan_free(&p);
		in.cpu_device = 1;                    /* the CPU backend keeps one */
		in.gpu_mem = w0 + window + grad;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.in.grad_bufs == 1);
		sw_plan_free(&p);
		in.cpu_device = 0;
		in.grad_bufs = 1;
		in.rates.adam_params_per_s = 1e5;
		in.rates.gemm_tflops = 1e-3;
	}

	/* the expected step by hand: a compute-bound step of 10 s whose deferred NVMe updates run
	 * 3 s after the backward (their separate-rate time; their CPU AdamW 1 s), 80 GB read and
	 * written in all, 20 GB of it deferred */
	{
		sw_plan_cost k;
		memset(&k, 0, sizeof(k));
		k.bottleneck = SW_RES_COMPUTE;
		k.t[SW_RES_COMPUTE] = 10;
		k.t_after = 3;
		k.predict_s = 13;
		k.nvme_read = 50000000000ull;
		k.nvme_write = 30000000000ull;
		/* at 5 GB/s the backward's 60 GB take 12 s (2 s over the compute) and the deferred
		 * 20 GB 4 s (1 s over their 3): 16 s, not 19 (the deferred bytes counted twice) */
		CHECKF(close_to(sw_plan_expect_step(&k, 20000000000ull, 1.0, 5.0), 16.0), "%g",
		       sw_plan_expect_step(&k, 20000000000ull, 1.0, 5.0));
		CHECK(close_to(k.t_nvme_mix, 16.0));
		/* CPU AdamW of the deferred groups longer than their disk time: only the first term */
		k.t_after = 5;
		k.predict_s = 15;
		CHECK(close_to(sw_plan_expect_step(&k, 20000000000ull, 5.0, 5.0), 17.0));
		/* a fast mixed rate moves nothing; none given, the predicted step */
		CHECK(sw_plan_expect_step(&k, 20000000000ull, 5.0, 100.0) == 15.0);
		CHECK(sw_plan_expect_step(&k, 20000000000ull, 5.0, 0.0) == 15.0 && k.t_nvme_mix == 0);
		/* the GPU's memory-bound work: added to the compute, which bounds the step */
		k.t_gpu_mem = 2;
		CHECK(close_to(sw_plan_expect_step(&k, 20000000000ull, 5.0, 0.0), 17.0));
		/* against another bottleneck only what the compute then exceeds it by: 10 + 2 against
		 * a disk of 11 s */
		k.bottleneck = SW_RES_NVME;
		k.t[SW_RES_NVME] = 11;
		CHECK(close_to(sw_plan_expect_step(&k, 20000000000ull, 5.0, 0.0), 16.0));
		k.t[SW_RES_NVME] = 13;
		CHECK(sw_plan_expect_step(&k, 20000000000ull, 5.0, 0.0) == 15.0);
	}
	/* both: the longer of the compute with the GPU's memory-bound work and the disk at its
	 * mixed rate lengthens the step, not their sum (an NVMe-bound step of 10 s; compute 8 s
	 * + 6 s; 75 GB at 5 GB/s, 15 s) */
	{
		sw_plan_cost k;
		memset(&k, 0, sizeof(k));
		k.bottleneck = SW_RES_NVME;
		k.t[SW_RES_NVME] = 10;
		k.t[SW_RES_COMPUTE] = 8;
		k.t_gpu_mem = 6;
		k.predict_s = 10;
		k.nvme_read = 40000000000ull;
		k.nvme_write = 35000000000ull;
		CHECKF(close_to(sw_plan_expect_step(&k, 0, 0.0, 5.0), 15.0), "%g", sw_plan_expect_step(&k, 0, 0.0, 5.0));
		k.t_gpu_mem = 9;   /* now the compute is the longer: 17 s */
		CHECK(close_to(sw_plan_expect_step(&k, 0, 0.0, 5.0), 17.0));
	}

	/* bad input: one line naming the option */
	{
		sw_plan p;
		in.batch_tokens = BATCH + 1;
		CHECK(sw_plan_build(&p, &in) == -EINVAL);
		CHECKF(strstr(p.why, "--batch-tokens") && !strchr(p.why, '\n'), "%s", p.why);
		sw_plan_free(&p);
		in.batch_tokens = BATCH;
		in.slots = 3;
		CHECK(sw_plan_build(&p, &in) == -EINVAL);
		sw_plan_free(&p);
		in.slots = 2;
		in.rates.h2d_gbs = 0;
		CHECK(sw_plan_build(&p, &in) == -EINVAL);
		sw_plan_free(&p);
	}
	sw_table_free(&tt);
	printf("ok\n");
	return 0;
}
