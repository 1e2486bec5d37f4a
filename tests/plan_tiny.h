/* The tiny config and plan input the planner's hand-worked tests share (test_offload_plan_cost,
 * test_offload_plan_lora): llama, dim 64, 2 layers, 4 heads (kv 2, head_dim 16), ffn 160,
 * vocab 256, untied; 256 tokens per step in micro-batches of 2 rows of 32; rates so slow that
 * every figure is a round number of seconds. */
#ifndef SW_TESTS_PLAN_TINY_H
#define SW_TESTS_PLAN_TINY_H
#include "core/tensors.h"
#include "offload/plan.h"

#include <math.h>
#include <string.h>

/* pinned host buffers are whole 4 KiB pages; the GPU arena hands out 256-byte blocks */
#define AL(x) (((uint64_t)(x) + 4095) / 4096 * 4096)
#define D256(x) (((uint64_t)(x) + 255) / 256 * 256)

enum { C = 64, L = 2, H = 4, KVH = 2, HD = 16, F = 160, V = 256 };
enum { QD = H * HD, KVD = KVH * HD };
enum { S = 32, ROWS = 2, T = ROWS * S, BATCH = 256, M = BATCH / T };

/* Parameters by hand: a layer (two norms, q, k, v, o, gate, up, down), the embedding, the head
 * (final norm + lm_head) */
#define TINY_LAYER ((uint64_t)C + QD * C + KVD * C + KVD * C + C * QD + C + 3 * (uint64_t)F * C)
#define TINY_EMBED ((uint64_t)V * C)
#define TINY_HEAD ((uint64_t)C + (uint64_t)V * C)

static inline int close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b) + 1e-12; }

static inline void tiny_config(sw_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->model_type, "llama");
	c->dim = C;
	c->n_layers = L;
	c->n_heads = H;
	c->n_kv_heads = KVH;
	c->head_dim = HD;
	c->ffn_dim = F;
	c->vocab = V;
	c->max_pos = 128;
	c->rope_theta = 10000;
	c->rms_eps = 1e-5;
	c->bos_id = c->eos_id = -1;
}

static inline void tiny_input(sw_plan_input *in, const sw_table *tt)
{
	sw_plan_input_init(in, tt);
	in->batch_tokens = BATCH;
	in->seq_len = S;
	in->micro_rows = ROWS;
	in->prefetch = 2;
	in->grad_bufs = 1;
	in->passes = 1;                  /* --clip 0 */
	in->io_depth = 2;
	in->cublas_workspace = 1 << 20;
	in->gpu_reserve = 0;
	in->vocab_chunk = 100;           /* < V: the head works in chunks */
	in->rates.gemm_tflops = 1e-3;    /* 1 GFLOP/s */
	in->rates.h2d_gbs = 1e-3;        /* 1 MB/s */
	in->rates.d2h_gbs = 2e-3;
	in->rates.nvme_read_gbs = 1e-3;
	in->rates.nvme_write_gbs = 0.5e-3;
	in->rates.adam_params_per_s = 1e5;
}
#endif
