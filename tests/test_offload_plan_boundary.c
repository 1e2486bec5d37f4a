/* The planner's step-boundary term (docs/planner.md "The step boundary") against the formulas
 * of that section worked out here from the placement, the chunk and the rates: for the tiny
 * config with the lower groups' optimizer state in host memory and the upper groups' on NVMe
 * (NVMe-bound), the idle time drained and overlapped; overlapped never above drained; a plan
 * whose backward below the lowest NVMe group outlasts those groups' AdamW (a slow GPU) takes
 * that backward as the tail; a plan with nothing off the device has none. */
#include "core/tensors.h"
#include "offload/plan.h"
#include "tests/check.h"
#include "tests/plan_tiny.h"

#include <errno.h>
#include <string.h>

static double pos(double x) { return x > 0 ? x : 0; }

/* The NVMe-bound case by hand. */
static void check_nvme(const sw_plan *p, const sw_table *tt)
{
	const sw_plan_rates *r = &p->in.rates;
	const sw_plan_cost *k = &p->cost;
	int G = tt->ngroups, lo = -1, hi = -1, p16 = -1, lead = 0;
	for (int g = 0; g < G; g++) {
		if (p->tier[g][SW_STATE_P32] == SW_TIER_NVME) {
			lo = lo < 0 ? g : lo;
			hi = g;
		}
		if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME && p16 < 0)
			p16 = g;
	}
	while (lead < G && p->tier[lead][SW_STATE_P32] == SW_TIER_GPU)
		lead++;
	CHECK(lo > 0 && k->bottleneck == SW_RES_NVME);
	/* the forward: 2 of the 6 FLOPs per GEMM parameter and token, 2 of attention's 8 */
	double fwd = (k->flops_model / 3 + k->flops_attn / 4) / (r->gemm_tflops * 1e12);
	CHECK(close_to(k->t_fwd, fwd));
	int quiet = p16 < 0 ? L : p16 - 1 < 0 ? 0 : p16 - 1 > L ? L : p16 - 1;
	double fq = fwd * quiet / L;
	double tail = 0;
	for (int g = 0; g < lo; g++)
		if (p->tier[g][SW_STATE_P32] != SW_TIER_GPU)
			tail += (double)tt->g[g].numel / r->adam_params_per_s;
	CHECK(close_to(k->t_tail_adam, tail));
	int64_t c = p->chunk_params, n = tt->g[lo].numel, nch = (n + c - 1) / c;
	int64_t last = nch > 2 ? n - (nch - 2) * c : n;   /* the last two chunks */
	double wb = (double)last * (12 + (p->tier[lo][SW_STATE_P16] == SW_TIER_NVME ? 2 : 0)) /
		    (r->nvme_write_gbs * 1e9);
	double ra = (double)(tt->g[hi].numel < 2 * c ? tt->g[hi].numel : 2 * c) * 12 / (r->nvme_read_gbs * 1e9);
	CHECK(close_to(k->t_tail_write, wb) && close_to(k->t_read_ahead, ra));
	double lead_t = fwd * (lead > 1 ? lead - 1 : 0) / L;
	/* the backward of the layers below the lowest NVMe group (one pass: compute less the
	 * forward, per layer) */
	double cmp = (k->flops_model + k->flops_recompute + k->flops_attn - k->flops_kept) /
		     (r->gemm_tflops * 1e12);
	double bwd = (cmp - fwd) * (lo - 1 < L ? lo - 1 : L) / L;
	CHECKF(close_to(k->t_tail_bwd, bwd) || (bwd == 0 && k->t_tail_bwd == 0), "%g vs %g", k->t_tail_bwd, bwd);
	if (bwd > tail)
		tail = bwd;
	CHECKF(close_to(k->t_boundary_drained, tail + fq), "%g vs %g", k->t_boundary_drained, tail + fq);
	/* overlapped: the write-behind and the read-ahead (queued after the last NVMe update)
	 * fill the tail and the forward, the leading GPU-updated layers' forward runs under the tail */
	double ov = pos(tail + fq - (lead_t < tail ? lead_t : tail) - wb - ra);
	CHECKF(close_to(k->t_boundary, ov) || (ov == 0 && k->t_boundary == 0), "%g vs %g", k->t_boundary, ov);
	CHECK(k->t_boundary <= k->t_boundary_drained && close_to(k->predict_s, k->step_s + k->t_boundary));
	printf("ok NVMe-bound, host state below group %d, NVMe from it to %d, chunk %lld: drained +%.4g s "
	       "(host AdamW or the backward below %.4g + forward %.4g), overlapped +%.4g s (write-behind %.4g, read-ahead %.4g)\n",
	       lo, hi, (long long)c, k->t_boundary_drained, tail, fq, k->t_boundary, wb, ra);
}

int main(void)
{
	sw_config cfg;
	tiny_config(&cfg);
	sw_table tt;
	CHECK(sw_table_build(&tt, &cfg) == 0);
	sw_plan_input in;
	tiny_input(&in, &tt);
	in.n_nvme = 1;
	strcpy(in.nvme[0].path, "/x");
	in.nvme[0].capacity = 1ull << 40;
	in.slots = 1;
	/* the host budget grows until the lower groups' state is in host memory and the upper
	 * groups' still on NVMe; chunks small enough that the groups have several */
	int seen = 0;
	for (int64_t chunk = 2048; chunk <= 8192; chunk *= 2) {
		uint64_t gmin, hmin;
		in.chunk_params = chunk;
		CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
		in.gpu_mem = gmin;
		CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, NULL, 0) == 0);
		for (uint64_t cpu = hmin; cpu < hmin + (8u << 20) && seen < (chunk == 2048 ? 1 : 2); cpu += 16384) {
			in.cpu_mem = cpu;
			sw_plan p;
			if (sw_plan_build(&p, &in)) {
				sw_plan_free(&p);
				continue;
			}
			int host0 = p.tier[0][SW_STATE_P32] == SW_TIER_HOST;
			int nv_top = p.tier[tt.ngroups - 1][SW_STATE_P32] == SW_TIER_NVME;
			if (host0 && nv_top && p.cost.bottleneck == SW_RES_NVME) {
				check_nvme(&p, &tt);
				seen++;
			}
			sw_plan_free(&p);
		}
	}
	CHECKF(seen == 2, "found %d mixed host/NVMe plans", seen);
	/* more groups' state in host memory, AdamW faster and a GPU slow enough that the backward below the
	 * lowest NVMe group outlasts those groups' AdamW (still NVMe-bound) */
	int slow = 0;
	in.chunk_params = 2048;
	in.rates.adam_params_per_s = 4e5;
	for (double tf = 1e-3; tf >= 1e-5 && !slow; tf /= 1.25) {
		uint64_t gmin, hmin;
		in.rates.gemm_tflops = tf;
		CHECK(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, NULL, 0) == 0);
		in.gpu_mem = gmin;
		CHECK(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, NULL, 0) == 0);
		for (uint64_t cpu = hmin; cpu < hmin + (8u << 20) && !slow; cpu += 16384) {
			in.cpu_mem = cpu;
			sw_plan p;
			if (sw_plan_build(&p, &in)) {
				sw_plan_free(&p);
				continue;
			}
			int lo = -1;
			for (int g = 0; g < tt.ngroups && lo < 0; g++)
				if (p.tier[g][SW_STATE_P32] == SW_TIER_NVME)
					lo = g;
			if (lo >= 2 && p.cost.bottleneck == SW_RES_NVME && p.cost.t_tail_bwd > p.cost.t_tail_adam) {
				check_nvme(&p, &tt);
				slow = 1;
			}
			sw_plan_free(&p);
		}
	}
	CHECKF(slow, "found no NVMe-bound plan whose backward below the lowest NVMe group outlasts its AdamW");
	in.rates.gemm_tflops = 1e-3;   /* plan_tiny.h's */
	in.rates.adam_params_per_s = 1e5;
	/* everything on the device: no CPU update, no boundary */
	{
		in.gpu_mem = 256ull << 20;
		in.cpu_mem = 1ull << 30;
		in.n_nvme = 0;
		sw_plan p;
		CHECKF(sw_plan_build(&p, &in) == 0, "%s", p.why);
		CHECK(p.resident_groups == tt.ngroups && p.cost.t_boundary == 0 && p.cost.t_boundary_drained == 0);
		sw_plan_free(&p);
		printf("ok all on the device: no step-boundary idle time\n");
	}
	sw_table_free(&tt);
	return 0;
}
