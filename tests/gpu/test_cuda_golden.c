/* Whole training steps on the CUDA backend (the in-memory trainer, offload/trainer.h):
 *  1. F32 mode against PyTorch on the golden files of tests/ref/make_golden.py (fp32 HF
 *     transformers, AdamW with clipping, 2 micro-batches): logits and losses rel 1e-5, every
 *     gradient within 1e-4, parameters after 3 steps within 1e-5 of the float64 run (or no
 *     further than twice PyTorch's own fp32 result) -- the CPU backend's bar;
 *  2. the same steps on the CPU backend: losses and gradient norms agree within 1e-5;
 *  3. BF16 mode on the same data: losses within 2e-2 of PyTorch fp32 (bf16 weights and
 *     activations), gradient norms within 5e-2;
 *  4. determinism: two runs of 20 BF16 steps give bit-identical losses, gradient norms and
 *     parameters (master weights and both moments). */
#include "core/backend.h"
#include "core/config.h"
#include "core/tensors.h"
#include "offload/trainer.h"
#include "tests/check.h"
#include "tests/golden.h"

#include <stdlib.h>
#include <string.h>

typedef struct run_out {
	double loss[32], norm[32];
	float *state[3];   /* P32, M, V of all groups, concatenated */
} run_out;

static void load_params(sw_trainer *tr, const sw_table *tt, golden *gd, float *buf)
{
	for (int g = 0; g < tt->ngroups; g++) {
		for (int i = tt->g[g].first; i < tt->g[g].first + tt->g[g].count; i++) {
			char name[128];
			int64_t n = 0;
			snprintf(name, sizeof(name), "param:%s", tt->t[i].name);
			float *p = golden_array(gd, name, &n);
			CHECKF(p && n == tt->t[i].numel, "%s", name);
			memcpy(buf + tt->t[i].offset, p, (size_t)n * 4);
		}
		sw_trainer_set_group(tr, g, buf);
	}
}

/* Runs 'steps' steps of the golden data (steps > 3 cycle through its 3 batches). */
static void run(const char *backend, sw_dtype act, golden *gd, const sw_table *tt, int B, int T,
		int steps, int check_torch, run_out *ro)
{
	json_t *tr_j = json_object_get(gd->hdr, "train");
#define TRAINF(k) json_real_value(json_object_get(tr_j, k))
	sw_backend_opts bo = { .mem_budget = 512ull << 20, .act = act, .threads = 2 };
	sw_backend *be;
	CHECK(sw_backend_create(backend, &bo, &be) == 0);
	sw_trainer_opts to = {
		.rows = B / 2, .micro_batches = 2, .seq_len = T, .clip = TRAINF("clip"),
		.adam = { .beta1 = TRAINF("beta1"), .beta2 = TRAINF("beta2"), .eps = TRAINF("eps"),
			  .weight_decay = TRAINF("weight_decay") },
	};
	sw_trainer *tr;
	CHECK(sw_trainer_create(be, tt, &to, &tr) == 0);
	float *buf = malloc((size_t)tt->max_group_numel * 4);
	CHECK(buf);
	load_params(tr, tt, gd, buf);
	int64_t n = 0;
	if (check_torch) {
		const int N = B * T, V = (int)tt->cfg.vocab;
		float *logits = malloc((size_t)N * (size_t)V * 4);
		CHECK(logits);
		sw_trainer_logits(tr, golden_array(gd, "step1:inputs", NULL), logits);
		double e = check_rel_err_f32(logits, golden_array(gd, "logits", NULL), (long)N * V);
		printf("    logits rel err vs torch %.2e\n", e);
		CHECK(e < 1e-5);
		free(logits);
	}
	for (int s = 1; s <= steps; s++) {
		char ni[32], nt[32];
		snprintf(ni, sizeof(ni), "step%d:inputs", (s - 1) % 3 + 1);
		snprintf(nt, sizeof(nt), "step%d:targets", (s - 1) % 3 + 1);
		sw_step_stats st;
		CHECK(sw_trainer_step(tr, golden_array(gd, ni, NULL), golden_array(gd, nt, NULL), s,
				      TRAINF("lr"), &st) == 0);
		CHECK(!st.skipped);
		ro->loss[s - 1] = st.loss;
		ro->norm[s - 1] = st.grad_norm;
		if (check_torch && s == 1) {
			for (int g = 0; g < tt->ngroups; g++) {
				sw_trainer_get_group(tr, g, SW_STATE_GRAD, buf);
				for (int i = tt->g[g].first; i < tt->g[g].first + tt->g[g].count; i++) {
					char name[128];
					snprintf(name, sizeof(name), "grad:%s", tt->t[i].name);
					float *ref = golden_array(gd, name, &n);
					CHECKF(ref, "%s", name);
					double err = check_rel_err_f32(buf + tt->t[i].offset, ref, n);
					CHECKF(err < 1e-4, "%s: gradient rel err %.2e", name, err);
				}
			}
		}
	}
	if (check_torch) {
		double worst = 0;
		for (int g = 0; g < tt->ngroups; g++) {
			sw_trainer_get_group(tr, g, SW_STATE_P32, buf);
			for (int i = tt->g[g].first; i < tt->g[g].first + tt->g[g].count; i++) {
				char name[128], name64[128];
				snprintf(name, sizeof(name), "after3:%s", tt->t[i].name);
				snprintf(name64, sizeof(name64), "after3_f64:%s", tt->t[i].name);
				float *ref32 = golden_array(gd, name, &n), *ref64 = golden_array(gd, name64, NULL);
				CHECKF(ref32 && ref64, "%s", name);
				double err = check_rel_err_f32(buf + tt->t[i].offset, ref64, n);
				double err_torch = check_rel_err_f32(ref32, ref64, n);
				CHECKF(err < 1e-5 || err <= 2 * err_torch,
				       "%s: parameter rel err %.2e vs float64 (torch fp32: %.2e)", name, err, err_torch);
				if (err > worst)
					worst = err;
			}
		}
		printf("    parameters after 3 steps: worst rel err vs float64 %.2e\n", worst);
	}
	if (ro->state[0]) {
		int64_t off = 0;
		for (int g = 0; g < tt->ngroups; g++) {
			for (int k = 0; k < 3; k++)
				sw_trainer_get_group(tr, g, k == 0 ? SW_STATE_P32 : k == 1 ? SW_STATE_M : SW_STATE_V,
						     ro->state[k] + off);
			off += tt->g[g].numel;
		}
	}
	free(buf);
	sw_trainer_destroy(tr);
	sw_backend_destroy(be);
}

static void check_file(const char *path)
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
	float *losses = golden_array(&gd, "losses", NULL), *norms = golden_array(&gd, "grad_norms", NULL);
	printf("%s: %d params, B=%d T=%d as 2 micro-batches\n", path, (int)tt.total, B, T);

	run_out gf = { 0 }, cf = { 0 }, gb = { 0 };
	printf("  cuda fp32 against PyTorch:\n");
	run("cuda", SW_DTYPE_F32, &gd, &tt, B, T, 3, 1, &gf);
	run("cpu", SW_DTYPE_F32, &gd, &tt, B, T, 3, 0, &cf);
	run("cuda", SW_DTYPE_BF16, &gd, &tt, B, T, 3, 0, &gb);
	for (int s = 0; s < 3; s++) {
		double et = fabs(gf.loss[s] - losses[s]) / fabs(losses[s]);
		double ec = fabs(gf.loss[s] - cf.loss[s]) / fabs(cf.loss[s]);
		double en = fabs(gf.norm[s] - cf.norm[s]) / cf.norm[s];
		double eb = fabs(gb.loss[s] - losses[s]) / fabs(losses[s]);
		double ebn = fabs(gb.norm[s] - norms[s]) / norms[s];
		printf("  step %d: loss cuda fp32 %.7f torch %.7f (rel %.1e) cpu %.7f (rel %.1e, norm rel %.1e);"
		       " cuda bf16 %.5f (rel %.1e, norm rel %.1e)\n", s + 1, gf.loss[s], losses[s], et,
		       cf.loss[s], ec, en, gb.loss[s], eb, ebn);
		CHECK(et < 1e-5 && ec < 1e-5 && en < 1e-5);
		CHECK(eb < 2e-2 && ebn < 5e-2);
	}
	sw_table_free(&tt);
	golden_close(&gd);
}

/* Done-when 2: two runs of 20 steps, identical bits. */
static void check_determinism(const char *path)
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
	run_out r[2];
	for (int i = 0; i < 2; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		for (int k = 0; k < 3; k++) {
			r[i].state[k] = malloc((size_t)tt.total * 4);
			CHECK(r[i].state[k]);
		}
		run("cuda", SW_DTYPE_BF16, &gd, &tt, B, T, 20, 0, &r[i]);
	}
	CHECK(!memcmp(r[0].loss, r[1].loss, sizeof(r[0].loss)));
	CHECK(!memcmp(r[0].norm, r[1].norm, sizeof(r[0].norm)));
	for (int k = 0; k < 3; k++)
		CHECKF(!memcmp(r[0].state[k], r[1].state[k], (size_t)tt.total * 4), "state %d differs", k);
	printf("%s: two runs of 20 bf16 steps: bit-identical losses (%.6f ... %.6f), grad norms and "
	       "parameters (P32, m, v of %lld params)\n", path, r[0].loss[0], r[0].loss[19],
	       (long long)tt.total);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 3; k++)
			free(r[i].state[k]);
	sw_table_free(&tt);
	golden_close(&gd);
}

int main(void)
{
	if (sw_cuda_device_count() <= 0)
		SKIP("no CUDA device");
	const char *files[] = { "tests/ref/golden_llama_gqa.bin", "tests/ref/golden_qwen2_tied.bin",
				"tests/ref/golden_llama3_odd.bin" };
	for (int i = 0; i < 3; i++)
		check_file(files[i]);
	check_determinism(files[0]);
	printf("CUDA whole steps match PyTorch and the CPU backend; 20 steps are deterministic\n");
	return 0;
}
