/* A whole in-GPU training step of a ~1B LLaMA model (Llama 3.2 1B's shapes: dim 2048, 16
 * layers, 32/8 heads, ffn 8192, vocab 128256, tied embeddings) on the CUDA backend, bf16, with
 * the in-memory trainer (offload/trainer.h: every state on the GPU, layer-major schedule,
 * recomputation from the layer inputs in backward, exact clipping, AdamW). Prints one JSON line:
 * tokens/s and MFU (model FLOPs 6N + attention, i.e. without our recomputation, against the
 * bf16 GEMM rate given as argv[2]) for comparison with bench/torch_step.py on the same batch.
 * Usage: cuda_step [steps] [gemm_tflops] [rows] [micro_batches] [seq] */
#include "core/backend.h"
#include "core/config.h"
#include "core/tensors.h"
#include "offload/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 5;
	double gemm_tf = argc > 2 ? atof(argv[2]) : 0;
	int rows = argc > 3 ? atoi(argv[3]) : 4, M = argc > 4 ? atoi(argv[4]) : 2;
	int T = argc > 5 ? atoi(argv[5]) : 2048;
	if (steps < 1 || rows < 1 || M < 1 || T < 16) {
		fprintf(stderr, "cuda_step: bad arguments\n");
		return 2;
	}
	if (sw_cuda_device_count() <= 0) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	sw_config c;
	memset(&c, 0, sizeof(c));
	strcpy(c.model_type, "llama");
	c.dim = 2048; c.n_layers = 16; c.n_heads = 32; c.n_kv_heads = 8; c.head_dim = 64;
	c.ffn_dim = 8192; c.vocab = 128256; c.max_pos = 131072; c.rope_theta = 500000.0;
	c.rope_scaling.type = SW_ROPE_LLAMA3; c.rope_scaling.factor = 32; c.rope_scaling.low_freq_factor = 1;
	c.rope_scaling.high_freq_factor = 4; c.rope_scaling.original_max_pos = 8192;
	c.rms_eps = 1e-5; c.tie_embeddings = 1; c.dtype = SW_DTYPE_BF16; c.bos_id = c.eos_id = -1;
	sw_table tt;
	if (sw_table_build(&tt, &c))
		return 1;
	sw_backend_opts bo = { .mem_budget = 48ull << 30, .act = SW_DTYPE_BF16 };
	sw_backend *be;
	if (sw_backend_create("cuda", &bo, &be))
		return 1;
	sw_trainer_opts to = { .rows = rows, .micro_batches = M, .seq_len = T, .clip = 1.0,
			       .adam = { .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 } };
	sw_trainer *tr;
	if (sw_trainer_create(be, &tt, &to, &tr))
		return 1;
	float *buf = malloc((size_t)tt.max_group_numel * 4);
	uint64_t x = 12345;
	for (int g = 0; g < tt.ngroups; g++) {
		for (int64_t i = 0; i < tt.g[g].numel; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			buf[i] = ((float)(x >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
		}
		for (int i = tt.g[g].first; i < tt.g[g].first + tt.g[g].count; i++)
			if (tt.t[i].kind == SW_T_ATTN_NORM || tt.t[i].kind == SW_T_MLP_NORM ||
			    tt.t[i].kind == SW_T_FINAL_NORM)
				for (int64_t j = 0; j < tt.t[i].numel; j++)
					buf[tt.t[i].offset + j] = 1.0f;
		sw_trainer_set_group(tr, g, buf);
	}
	const int64_t ntok = (int64_t)M * rows * T;
	int32_t *in = malloc((size_t)ntok * 4), *tg = malloc((size_t)ntok * 4);
	for (int64_t i = 0; i < ntok; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		in[i] = (int32_t)(x % (uint64_t)c.vocab);
	}
	for (int64_t i = 0; i < ntok; i++)
		tg[i] = (i + 1) % T ? in[i + 1] : -100;
	sw_step_stats st;
	double t[64];
	for (int s = 1; s <= steps + 2; s++) {
		double t0 = now();
		if (sw_trainer_step(tr, in, tg, s, 1e-4, &st))
			return 1;
		if (s > 2)
			t[s - 3] = now() - t0;
		fprintf(stderr, "step %d loss %.4f norm %.3f %.1f ms\n", s, st.loss, st.grad_norm,
			(now() - t0) * 1e3);
	}
	for (int i = 0; i < steps; i++)
		for (int j = i + 1; j < steps; j++)
			if (t[j] < t[i]) { double q = t[i]; t[i] = t[j]; t[j] = q; }
	double sec = t[steps / 2];
	/* model FLOPs per step: 6 x matmul params (tied head counted once) + causal attention */
	double C = 2048, F = 8192, qd = 2048, kvd = 512, L = 16;
	double P = L * (2 * C * qd + 2 * C * kvd + 3 * C * F) + C * (double)c.vocab;
	double flops = 6.0 * P * (double)ntok + 6.0 * L * qd * (double)T * (double)ntok;
	double tf = flops / sec / 1e12;
	printf("{\"what\":\"step\",\"impl\":\"cuda\",\"tokens\":%lld,\"ms\":%.1f,\"tokens_per_s\":%.0f,"
	       "\"model_tflops\":%.1f,\"mfu\":%.3f,\"loss\":%.4f,\"executed_tflops\":%.1f}\n",
	       (long long)ntok, sec * 1e3, (double)ntok / sec, tf, gemm_tf > 0 ? tf / gemm_tf : 0.0,
	       st.loss, sw_model_step_flops(&c, ntok, T) / sec / 1e12);
	sw_trainer_destroy(tr);
	sw_backend_destroy(be);
	sw_table_free(&tt);
	free(buf); free(in); free(tg);
	return 0;
}
