/* Issue 7, Done when 2: with everything offloaded (P16, P32/m/v and checkpoints on NVMe at the
 * minimum GPU and host budgets, fp32 compute), the executor's losses, gradient norms and fp32
 * parameters after 3 AdamW steps with clipping match the PyTorch golden files of
 * tests/ref/make_golden.py within the CPU backend issue's tolerances (loss 1e-5, norm 1e-4,
 * parameters within 1e-5 of the float64 run, or within twice PyTorch fp32's own distance to it,
 * as tests/test_model_golden.c judges the in-memory trainer). Run with the two-pass clipping
 * scheme and with one speculative pass (every golden step clips: each is rolled back and
 * redone). */
#include "tests/offload_exec_harness.h"
#include "core/config.h"
#include "tests/golden.h"

static double worst_after3, worst_bk;

static int check_file(const char *path, int speculate)
{
	golden gd;
	CHECKF(golden_open(&gd, path) == 0, "%s", path);
	char *cfg_json = json_dumps(json_object_get(gd.hdr, "config"), 0);
	sw_config cfg;
	CHECK(sw_config_parse(&cfg, cfg_json, strlen(cfg_json), path) == 0);
	free(cfg_json);
	sw_table tt;
	CHECK(sw_table_build(&tt, &cfg) == 0);
	int B = (int)json_integer_value(json_object_get(gd.hdr, "B"));
	int T = (int)json_integer_value(json_object_get(gd.hdr, "T"));
	json_t *tr_j = json_object_get(gd.hdr, "train");
#define TRAINF(k) json_real_value(json_object_get(tr_j, k))
	sw_adamw_hparams h = { .beta1 = TRAINF("beta1"), .beta2 = TRAINF("beta2"), .eps = TRAINF("eps"),
			       .weight_decay = TRAINF("weight_decay") };
	sw_plan_input in;
	hx_input(&in, &tt, 2, T, 1, 2048);
	in.micro_rows = B / 2;
	in.batch_tokens = (int64_t)B * T;
	uint64_t gmin, hmin;
	char why[512];
	CHECKF(sw_plan_min_budget(&in, SW_TIER_GPU, &gmin, why, sizeof(why)) == 0, "%s", why);
	in.gpu_mem = gmin;
	CHECKF(sw_plan_min_budget(&in, SW_TIER_HOST, &hmin, why, sizeof(why)) == 0, "%s", why);
	in.speculate = speculate;
	hx_run r;
	CHECKF(hx_open(&r, &tt, &in, gmin, hmin, TRAINF("clip"), &h) == 0, "%s", r.plan.why);
	CHECKF(r.plan.speculative == speculate, "%s", r.plan.two_pass_why);
	int G = tt.ngroups;
	CHECK(hx_count(&r.plan, G, SW_STATE_P16, SW_TIER_GPU) == 0);
	CHECK(hx_count(&r.plan, G, SW_STATE_P32, SW_TIER_NVME) == G);
	CHECK(r.plan.ckpt_count[SW_TIER_NVME] > 0);
	printf("%s (%s): %s, %lld params; GPU %llu B, host %llu B: P16 on NVMe for %d of %d groups, "
	       "P32/m/v on NVMe for all, %lld of %lld checkpoints on NVMe\n", path,
	       speculate ? "one pass, rolled back and redone" : "two passes",
	       json_string_value(json_object_get(gd.hdr, "name")), (long long)tt.total,
	       (unsigned long long)gmin, (unsigned long long)hmin,
	       hx_count(&r.plan, G, SW_STATE_P16, SW_TIER_NVME), G,
	       (long long)r.plan.ckpt_count[SW_TIER_NVME], (long long)cfg.n_layers * 2);
	float *buf = malloc((size_t)tt.max_group_numel * 4);
	int64_t n = 0;
	for (int g = 0; g < G; g++) {
		for (int i = tt.g[g].first; i < tt.g[g].first + tt.g[g].count; i++) {
			char name[128];
			snprintf(name, sizeof(name), "param:%s", tt.t[i].name);
			float *p = golden_array(&gd, name, &n);
			CHECKF(p && n == tt.t[i].numel, "%s", name);
			memcpy(buf + tt.t[i].offset, p, (size_t)n * 4);
		}
		CHECK(sw_exec_set_group(r.ex, g, buf) == 0);
	}
	float *losses = golden_array(&gd, "losses", NULL), *norms = golden_array(&gd, "grad_norms", NULL);
	for (int step = 1; step <= 3; step++) {
		char ni[32], nt[32];
		snprintf(ni, sizeof(ni), "step%d:inputs", step);
		snprintf(nt, sizeof(nt), "step%d:targets", step);
		sw_exec_stats st;
		CHECK(sw_exec_step(r.ex, golden_array(&gd, ni, NULL), golden_array(&gd, nt, NULL), step,
				   TRAINF("lr"), &st) == 0);
		double el = fabs(st.s.loss - losses[step - 1]) / fabs(losses[step - 1]);
		double en = fabs(st.s.grad_norm - norms[step - 1]) / norms[step - 1];
		printf("  step %d: loss %.7f (torch %.7f, rel %.1e) grad norm %.6f (torch %.6f, rel %.1e)\n",
		       step, st.s.loss, losses[step - 1], el, st.s.grad_norm, norms[step - 1], en);
		CHECK(el < 1e-5);
		CHECK(en < 1e-4);
		CHECK(!st.s.skipped && st.s.grad_scale < 1.0);
		CHECK(st.redone == speculate && st.passes == 2);
	}
	for (int g = 0; g < G; g++) {
		CHECK(sw_exec_get_group(r.ex, g, SW_STATE_P32, buf) == 0);
		for (int i = tt.g[g].first; i < tt.g[g].first + tt.g[g].count; i++) {
			char name[128];
			/* the lead's criterion (tests/test_model_golden.c): within 1e-5 of the float64
			 * run of the same steps, or no further from it than twice PyTorch's fp32 result
			 * (AdamW amplifies rounding where a gradient is tiny, e.g. k_proj.bias) */
			char name64[128];
			snprintf(name, sizeof(name), "after3:%s", tt.t[i].name);
			snprintf(name64, sizeof(name64), "after3_f64:%s", tt.t[i].name);
			float *ref32 = golden_array(&gd, name, &n), *ref64 = golden_array(&gd, name64, NULL);
			CHECKF(ref32 && ref64, "%s", name);
			double err = check_rel_err_f32(buf + tt.t[i].offset, ref64, n);
			double err_torch = check_rel_err_f32(ref32, ref64, n);
			CHECKF(err < 1e-5 || err <= 2 * err_torch,
			       "%s: parameter rel err %.2e vs float64 (torch fp32: %.2e)", name, err, err_torch);
			if (err >= 1e-5 && err > worst_bk)
				worst_bk = err;
			if (err >= 1e-5)
				continue;
			if (err > worst_after3)
				worst_after3 = err;
		}
	}
	free(buf);
	hx_close(&r);
	sw_table_free(&tt);
	golden_close(&gd);
	return 0;
}

int main(void)
{
	if (strcmp(hx_backend(), "cpu"))
		SKIP("the golden tolerances are the CPU backend's (fp32 reference)");
	/* every golden step clips: one pass redoes each (no switch to two passes) */
	setenv("SW_CLIP_PASSES", "1", 1);
	const char *files[] = { "tests/ref/golden_llama_gqa.bin", "tests/ref/golden_qwen2_tied.bin",
				"tests/ref/golden_llama3_odd.bin" };
	for (int i = 0; i < 3; i++)
		for (int spec = 0; spec < 2; spec++)
			check_file(files[i], spec);
	printf("worst parameter error after 3 steps vs float64, everything offloaded: %.2e (limit "
	       "1e-5); tensors above 1e-5 but within 2x PyTorch fp32's own error: worst %.2e\n",
	       worst_after3, worst_bk);
	return 0;
}
