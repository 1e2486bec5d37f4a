/* Shared by the executor tests: plan a placement from budgets, run the executor on the CPU
 * backend (its "GPU" arena is exactly --gpu-mem), with an NVMe tier in a temporary directory. */
#ifndef SW_TESTS_OFFLOAD_EXEC_HARNESS_H
#define SW_TESTS_OFFLOAD_EXEC_HARNESS_H
#include "core/backend.h"
#include "core/tensors.h"
#include "cpu/backend_cpu.h"
#include "io/io.h"
#include "offload/exec.h"
#include "offload/plan.h"
#include "offload/train.h"
#include "tests/check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hx_run {
	sw_plan plan;
	sw_backend *be;
	sw_io *io;
	sw_exec *ex;
	uint64_t gpu_mem, cpu_mem;
} hx_run;

static char hx_dir[256];

/* SW_TEST_BACKEND=cuda runs the same test on the GPU (tests/gpu/test_offload_exec_gpu.sh). */
static const char *hx_backend(void)
{
	const char *b = getenv("SW_TEST_BACKEND");
	return b && *b ? b : "cpu";
}

static void hx_cleanup(void)
{
	if (hx_dir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", hx_dir);
		if (system(cmd)) {
		}
	}
}

static const char *hx_nvme_dir(void)
{
	if (!hx_dir[0]) {
		snprintf(hx_dir, sizeof(hx_dir), "/tmp/sw-exec-test.XXXXXX");
		CHECK(mkdtemp(hx_dir));
		atexit(hx_cleanup);
	}
	return hx_dir;
}

static void hx_input(sw_plan_input *in, const sw_table *tt, int M, int T, int fp32, int64_t chunk)
{
	sw_plan_input_init(in, tt);
	in->batch_tokens = (int64_t)M * T;
	in->seq_len = T;
	in->micro_rows = 1;
	in->fp32 = fp32;
	in->cublas_workspace = 0;
	in->chunk_params = chunk;
	in->n_nvme = 1;
	snprintf(in->nvme[0].path, sizeof(in->nvme[0].path), "%s", hx_nvme_dir());
	in->nvme[0].capacity = 1ull << 30;
}

/* The tests' xorshift stream: uniform in [0, 1) from *state. */
static inline double hx_urand(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return (double)(*state >> 11) / 9007199254740992.0;
}

/* The executor tests' tiny model: llama, dim 64, 3 layers, 4 heads of 16, ffn 96, fp32; `tied`:
 * 4 kv heads, vocab 300, tied embeddings (else 2 kv heads, vocab 97); `qwen2`: qwen2 with
 * attention biases. */
static inline sw_config hx_tiny_config(int tied, int qwen2)
{
	sw_config c;
	memset(&c, 0, sizeof(c));
	snprintf(c.model_type, sizeof(c.model_type), "%s", qwen2 ? "qwen2" : "llama");
	c.attention_bias = qwen2;
	c.dim = 64;
	c.n_layers = 3;
	c.n_heads = 4;
	c.n_kv_heads = tied ? 4 : 2;
	c.head_dim = 16;
	c.ffn_dim = 96;
	c.vocab = tied ? 300 : 97;
	c.max_pos = 64;
	c.rope_theta = 10000;
	c.rms_eps = 1e-5;
	c.tie_embeddings = tied;
	c.dtype = SW_DTYPE_F32;
	c.bos_id = c.eos_id = -1;
	return c;
}

/* Step `step`'s n input and target ids, uniform in [0, span), 15 % of the targets ignored
 * (-100); the stream is seeded from the step, so any step can be made alone. */
static inline void hx_make_tokens(int32_t *in, int32_t *tg, int n, int step, int span)
{
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(step + 1);
	for (int i = 0; i < n; i++) {
		in[i] = (int32_t)(hx_urand(&rng) * span);
		tg[i] = hx_urand(&rng) < 0.15 ? -100 : (int32_t)(hx_urand(&rng) * span);
	}
}

/* Group g's fp32 weights drawn from seed0: norms 1 +- 0.05, the rest +-0.04 (malloc'ed). */
static inline float *hx_init_group(const sw_table *tt, int g, uint64_t seed0)
{
	float *w = malloc((size_t)tt->g[g].numel * 4);
	uint64_t seed = seed0 + (uint64_t)g * 7919;
	for (int i = tt->g[g].first; w && i < tt->g[g].first + tt->g[g].count; i++) {
		const sw_tensor *t = &tt->t[i];
		int norm = t->kind == SW_T_ATTN_NORM || t->kind == SW_T_MLP_NORM || t->kind == SW_T_FINAL_NORM;
		for (int64_t j = 0; j < t->numel; j++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			double u = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
			w[t->offset + j] = norm ? (float)(1.0 + 0.1 * u) : (float)(0.08 * u);
		}
	}
	return w;
}

/* The smallest budgets the planner accepts for in: the GPU's, then the host's at that GPU budget
 * with two optimizer slots and with one. Leaves in->gpu_mem at the GPU minimum, in->slots at 2
 * and in->speculate at 0 (the minimum of the two-pass plan). */
static inline void hx_min_budgets(sw_plan_input *in, uint64_t *gmin, uint64_t *hmin, uint64_t *hmin1)
{
	char why[512];
	in->speculate = 0;
	CHECKF(sw_plan_min_budget(in, SW_TIER_GPU, gmin, why, sizeof(why)) == 0, "%s", why);
	in->gpu_mem = *gmin;
	CHECKF(sw_plan_min_budget(in, SW_TIER_HOST, hmin, why, sizeof(why)) == 0, "%s", why);
	in->slots = 1;
	CHECKF(sw_plan_min_budget(in, SW_TIER_HOST, hmin1, why, sizeof(why)) == 0, "%s", why);
	in->slots = 2;
}

/* A host budget above the minimum hmin by every group's P16, the M x T checkpoints of every
 * layer and one group's optimizer state with its second set: the first layers' state fits on
 * the host, the last layers' goes to NVMe (regime 3). */
static inline uint64_t hx_host_some_opt(const sw_table *tt, uint64_t hmin, int M, int T)
{
	uint64_t p16b = (uint64_t)tt->total * 2;
	uint64_t ckb = (uint64_t)tt->cfg.n_layers * (uint64_t)M * (uint64_t)T * (uint64_t)tt->cfg.dim * 2;
	return hmin + p16b + ckb + (uint64_t)tt->max_group_numel * 24 + 64 * 4096;
}

/* The CPU backend's op scratch for the input's shapes with the harness's 2 threads: what train
 * holds back from --gpu-mem (in->gpu_reserve) on that backend. */
static inline uint64_t hx_cpu_scratch(const sw_table *tt, const sw_plan_input *in)
{
	sw_dims d = sw_dims_make(&tt->cfg, (int)in->micro_rows, (int)in->seq_len);
	return sw_cpu_scratch_bytes(2, &d, tt->max_group_numel);
}

/* Plans with the budgets and opens backend, NVMe and executor. Returns 0, or the plan's error. */
static int hx_open(hx_run *r, const sw_table *tt, sw_plan_input *in, uint64_t gpu, uint64_t cpu,
		   double clip, const sw_adamw_hparams *h)
{
	memset(r, 0, sizeof(*r));
	in->gpu_mem = gpu;
	in->cpu_mem = cpu;
	r->gpu_mem = gpu;
	r->cpu_mem = cpu;
	int rc = sw_plan_build(&r->plan, in);
	if (rc)
		return rc;
	const char *bk = hx_backend();
	uint64_t arena = gpu + (strcmp(bk, "cpu") ? sw_exec_backend_reserve(gpu + (288ull << 20)) : 0);
	sw_backend_opts bo = { .mem_budget = arena, .act = in->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16,
			       .threads = 2 };
	CHECK(sw_backend_create(bk, &bo, &r->be) == 0);
	if (!strcmp(bk, "cpu") && in->gpu_reserve) {
		/* the plan held the CPU backend's op scratch back (hx_cpu_scratch): allocate it */
		sw_dims d = sw_dims_make(&tt->cfg, (int)in->micro_rows, (int)in->seq_len);
		CHECK(sw_cpu_backend_reserve_scratch(r->be, &d, tt->max_group_numel) == 0);
	}

	if (r->plan.total[SW_TIER_NVME]) {
		char paths[300];
		snprintf(paths, sizeof(paths), "%s", hx_nvme_dir());
		sw_io_config ic = { .paths = paths, .quiet = 1, .file_name = "exec-test.data" };
		/* the NVMe file is sized from the plan's table, exactly (a fresh file: the engine
		 * keeps a larger one as it is) */
		char file[600];
		snprintf(file, sizeof(file), "%s/exec-test.data", paths);
		unlink(file);
		ic.stripe = sw_plan_nvme_stripe(&r->plan);
		ic.size = r->plan.total[SW_TIER_NVME];
		CHECK(sw_io_open(&ic, &r->io) == 0);
		CHECK(sw_io_capacity(r->io) == r->plan.total[SW_TIER_NVME]);

	}
	sw_exec_opts eo = { .adam = *h, .clip = clip, .cpu_threads = 2 };
	CHECKF(sw_exec_create(r->be, tt, &r->plan, r->io, &eo, &r->ex) == 0,
	       "executor does not fit the plan's accounting (gpu %llu cpu %llu)",
	       (unsigned long long)gpu, (unsigned long long)cpu);
	/* what the executor took is the plan's buffer table, cell by cell */
	uint64_t took[SW_TIER_COUNT][SW_PURPOSE_COUNT], want[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	sw_exec_taken(r->ex, took);
	sw_plan_allocated(&r->plan, want);
	CHECK(!memcmp(took, want, sizeof(took)));
	/* the executor stays inside the budgets it was planned for */
	CHECKF(r->be->used <= arena, "GPU arena %llu > budget %llu", (unsigned long long)r->be->used,
	       (unsigned long long)arena);
	CHECKF(sw_exec_host_bytes(r->ex) <= cpu, "pinned host %llu > --cpu-mem %llu",
	       (unsigned long long)sw_exec_host_bytes(r->ex), (unsigned long long)cpu);
	return 0;
}

static void hx_close(hx_run *r)
{
	sw_exec_destroy(r->ex);
	sw_io_close(r->io);
	sw_backend_destroy(r->be);
	sw_plan_free(&r->plan);
}

/* How many groups / checkpoints the plan put on a tier for a state. */
static inline int hx_count(const sw_plan *p, int ngroups, sw_state s, sw_tier t)
{
	int n = 0;
	for (int g = 0; g < ngroups; g++)
		n += p->tier[g][s] == t;
	return n;
}
#endif
