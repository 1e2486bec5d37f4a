/* spillway plan: place a model's training state under budgets and predict the step time,
 * without training and without files (the shape can come from flags). docs/planner.md. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/config.h"
#include "core/log.h"
#include "core/tensors.h"
#include "offload/plan.h"
#include "offload/plan_lora.h"
#include "offload/train.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* config.json reading lives in core/ and may not be in this build yet: referenced weakly so
 * `plan --model` says so instead of the link failing. Drop this once core/config.c lands. */
#pragma weak sw_config_load

static const char summary[] =
	"place a model's training state under budgets and predict the step time";

typedef struct shape_flags {
	const char *arch;
	int64_t dim, layers, heads, kv_heads, head_dim, ffn, vocab;
	int tie;
} shape_flags;

/* A config from --arch/--dim/... (what `spillway init` takes). Returns 0 or 2 after one line. */
static int config_from_flags(sw_config *c, const shape_flags *s)
{
	static const char *archs[] = { "llama", "mistral", "qwen2" };
	int known = 0;
	for (int i = 0; i < 3; i++)
		known |= !strcmp(s->arch, archs[i]);
	if (!known) {
		sw_error("plan: --arch '%s' is not supported; use llama, mistral or qwen2", s->arch);
		return 2;
	}
	const struct { const char *name; int64_t v; } req[] = {
		{ "dim", s->dim }, { "layers", s->layers }, { "heads", s->heads }, { "ffn", s->ffn },
		{ "vocab", s->vocab },
	};
	for (int i = 0; i < 5; i++) {
		if (req[i].v <= 0) {
			sw_error("plan: --%s is required with --arch and must be positive (got %lld)",
				 req[i].name, (long long)req[i].v);
			return 2;
		}
	}
	int64_t kv = s->kv_heads ? s->kv_heads : s->heads;
	if (kv <= 0 || s->heads % kv) {
		sw_error("plan: --kv-heads %lld must be positive and divide --heads %lld", (long long)kv,
			 (long long)s->heads);
		return 2;
	}
	if (s->head_dim < 0 || (!s->head_dim && s->dim % s->heads)) {
		sw_error("plan: --dim %lld is not a multiple of --heads %lld; give --head-dim",
			 (long long)s->dim, (long long)s->heads);
		return 2;
	}
	memset(c, 0, sizeof(*c));
	snprintf(c->model_type, sizeof(c->model_type), "%s", s->arch);
	c->dim = s->dim;
	c->n_layers = s->layers;
	c->n_heads = s->heads;
	c->n_kv_heads = kv;
	c->head_dim = s->head_dim ? s->head_dim : s->dim / s->heads;
	c->ffn_dim = s->ffn;
	c->vocab = s->vocab;
	c->max_pos = 4096;
	c->rope_theta = 10000;
	c->rms_eps = 1e-5;
	c->tie_embeddings = s->tie;
	c->attention_bias = !strcmp(s->arch, "qwen2");
	c->dtype = SW_DTYPE_BF16;
	c->bos_id = c->eos_id = -1;
	return 0;
}

/* What only `plan` sets (train uses the defaults): the planner's knobs for the GPU kernels. */
typedef struct plan_knobs {
	int64_t grad_bufs, io_depth, vocab_chunk;
	uint64_t gpu_reserve, cublas_workspace;
	int64_t lora_rank;               /* INT64_MIN: not given (full fine-tuning) */
	unsigned lora_targets;           /* SW_LORA_* mask */
} plan_knobs;

/* The model's tensor table from --model DIR or the shape flags. 0, or an exit status. */
static int table_of(const char *model, const shape_flags *s, sw_table *tt)
{
	sw_config cfg;
	int rc;
	if (model) {
		if (!sw_config_load) {
			sw_error("plan: --model needs config.json reading, which this build lacks; give the "
				 "shape with --arch, --dim, --layers, --heads, --ffn, --vocab instead");
			return 1;
		}
		if (sw_config_load(&cfg, model))
			return 1;
	} else if ((rc = config_from_flags(&cfg, s))) {
		return rc;
	}
	if (sw_table_build(tt, &cfg)) {
		sw_error("plan: out of memory building the tensor table");
		return 1;
	}
	return 0;
}

/* LoRA mode (--lora-rank): the frozen base and its adapters planned and printed, then the
 * most layers of this width that fit the same budgets. */
static int plan_lora_run(sw_plan_input *in)
{
	sw_plan_lora p;
	int rc = sw_plan_lora_build(&p, in);
	if (rc) {
		sw_error("plan: %s", p.why);
		sw_plan_lora_free(&p);
		return rc == -EINVAL ? 2 : 1;
	}
	sw_plan_lora_print(&p, stdout);
	sw_plan_lora_free(&p);
	int64_t params;
	int64_t layers = sw_plan_lora_max_layers(in, &params);
	printf("largest base of this width that fits these budgets: %lld layers (%.3f B parameters)%s\n",
	       (long long)layers, (double)params / 1e9, layers >= (1 << 16) ? " or more" : "");
	return 0;
}

/* Plans and prints: the plan input from the options as `train` builds it (offload/train.h),
 * then plan's own knobs. */
static int plan_run(sw_table *tt, const sw_train_plan_opts *o, const plan_knobs *k)
{
	sw_plan_input in;
	int rc = sw_train_plan_input(&in, tt, o, "plan");
	if (rc)
		return rc;
	in.grad_bufs = k->grad_bufs == INT64_MIN ? 0 : (int)k->grad_bufs;   /* 0: the planner chooses */
	in.io_depth = (int)k->io_depth;
	in.vocab_chunk = k->vocab_chunk;
	in.gpu_reserve = k->gpu_reserve;
	in.cublas_workspace = k->cublas_workspace;
	if (k->lora_rank != INT64_MIN) {
		if (k->lora_rank <= 0 || k->lora_rank > (1 << 16)) {
			sw_error("plan: --lora-rank %lld must be a positive rank (e.g. 16)", (long long)k->lora_rank);
			return 2;
		}
		in.lora_rank = (int)k->lora_rank;
		in.lora_targets = k->lora_targets;
		return plan_lora_run(&in);
	}
	sw_plan p;
	rc = sw_plan_build(&p, &in);
	if (rc) {
		sw_error("%s", p.why);
		rc = rc == -EINVAL ? 2 : 1;
	} else {
		sw_plan_print(&p, stdout);
		/* long contexts: how far these budgets go, one row per micro-batch */
		int64_t ms = sw_plan_max_seq(&in, 1 << 20);
		printf("\nlongest --seq-len these budgets allow (one row per micro-batch): %lld tokens%s "
		       "(the model's max_position_embeddings: %lld)\n", (long long)ms,
		       ms == 1 << 20 ? " or more" : "", (long long)tt->cfg.max_pos);
	}
	sw_plan_free(&p);
	return rc;
}

/* Checks what the parser cannot. 0 or 2 after one line. */
static int check_args(const char *model, const shape_flags *s, const char *dtype, int64_t prefetch,
		      const plan_knobs *k, double clip)
{
	if (!!model == !!s->arch) {
		sw_error("plan: give either --model DIR or the shape (--arch, --dim, --layers, --heads, --ffn, "
			 "--vocab), %s", model ? "not both" : "none was given");
		return 2;
	}
	if (strcmp(dtype, "bf16") && strcmp(dtype, "fp32")) {
		sw_error("plan: --dtype '%s' is not bf16 or fp32", dtype);
		return 2;
	}
	if (prefetch < 1 || prefetch > 64 || (k->grad_bufs != INT64_MIN && (k->grad_bufs < 1 || k->grad_bufs > 8)) || k->io_depth < 1 ||
	    k->io_depth > 64) {
		sw_error("plan: --prefetch (1-64), --grad-buffers (1-8) or --io-depth (1-64) is out of range");
		return 2;
	}
	if (!(clip >= 0)) {
		sw_error("plan: --clip %g must be >= 0 (0: off)", clip);
		return 2;
	}
	return 0;
}

int cmd_plan(int argc, char **argv)
{
	const char *model = NULL, *dtype = "bf16";
	shape_flags s = { .arch = NULL };
	sw_plan_input def;
	sw_plan_input_init(&def, NULL);
	sw_train_plan_opts o = { .clip = 1.0 };
	plan_knobs k = { INT64_MIN, def.io_depth, def.vocab_chunk, def.gpu_reserve, def.cublas_workspace,
			 INT64_MIN, SW_LORA_ALL };
	const char *lora_targets = NULL, *keep = NULL;
	int checkpoint_only = 0;
	int64_t prefetch = def.prefetch;
	double adam_g = 0;
	const sw_opt opts[] = {
		{ "model", SW_OPT_STR, &model, "DIR", "Hugging Face model directory (its config.json)", 0 },
		{ "arch", SW_OPT_STR, &s.arch, "NAME", "or the shape: llama, mistral or qwen2", 0 },
		{ "dim", SW_OPT_INT, &s.dim, "N", "hidden size", 0 },
		{ "layers", SW_OPT_INT, &s.layers, "N", "decoder layers", 0 },
		{ "heads", SW_OPT_INT, &s.heads, "N", "attention heads", 0 },
		{ "kv-heads", SW_OPT_INT, &s.kv_heads, "N", "key/value heads (default: --heads)", 0 },
		{ "head-dim", SW_OPT_INT, &s.head_dim, "N", "head size (default: dim / heads)", 0 },
		{ "ffn", SW_OPT_INT, &s.ffn, "N", "MLP intermediate size", 0 },
		{ "vocab", SW_OPT_INT, &s.vocab, "N", "vocabulary size", 0 },
		{ "tie-embeddings", SW_OPT_FLAG, &s.tie, NULL, "lm_head shares the embedding", 0 },
		{ "gpu-mem", SW_OPT_SIZE, &o.gpu_mem, "SIZE", "GPU memory budget, e.g. 24GiB", 1 },
		{ "cpu-mem", SW_OPT_SIZE, &o.cpu_mem, "SIZE", "host memory budget, e.g. 128GiB", 1 },
		{ "nvme", SW_OPT_STR, &o.nvme, "PATH[:SIZE],...", "NVMe paths (SIZE: capacity to use; default its free space)", 0 },
		{ "batch-tokens", SW_OPT_INT, &o.batch_tokens, "N", "tokens per optimizer step (default 65536)", 0 },
		{ "seq-len", SW_OPT_INT, &o.seq_len, "N", "tokens per row (default 2048)", 0 },
		{ "micro-batch", SW_OPT_INT, &o.micro_rows, "ROWS", "rows per micro-batch (default 1)", 0 },
		{ "dtype", SW_OPT_STR, &dtype, "bf16|fp32", "compute dtype (default bf16)", 0 },
		{ "clip", SW_OPT_FLOAT, &o.clip, "X", "max gradient norm as given to train (default 1.0; 0: off); exact clipping in one speculative pass where every group can be rolled back, else two passes", 0 },
		{ "checkpoint-only", SW_OPT_FLAG, &checkpoint_only, NULL, "one slot of optimizer state on disk, consistent at checkpoints only", 0 },
		{ "prefetch", SW_OPT_INT, &prefetch, "K", "group-sized P16 buffers on the GPU (default 2)", 0 },
		{ "grad-buffers", SW_OPT_INT, &k.grad_bufs, "N", "group-sized fp32 gradient buffers on the GPU (default: the planner's choice of 1 or 2)", 0 },
		{ "chunk", SW_OPT_INT, &o.chunk, "PARAMS", "I/O chunk of streamed state (default 67108864)", 0 },
		{ "io-stripe", SW_OPT_SIZE, &o.io_stripe, "SIZE", "the NVMe engine's stripe unit, as given to train (default: one I/O chunk of P16)", 0 },
		{ "io-depth", SW_OPT_INT, &k.io_depth, "N", "checkpoints in flight to / from NVMe each way (default 2)", 0 },
		{ "vocab-chunk", SW_OPT_INT, &k.vocab_chunk, "N", "logits computed this many vocab entries at a time (default 8192)", 0 },
		{ "gpu-reserve", SW_OPT_SIZE, &k.gpu_reserve, "SIZE", "GPU memory held back, e.g. for the CUDA context (default 0)", 0 },
		{ "cublas-workspace", SW_OPT_SIZE, &k.cublas_workspace, "SIZE", "GEMM workspace (default 32MiB)", 0 },
		{ "gemm-tflops", SW_OPT_FLOAT, &o.rates.gemm_tflops, "X", "achieved GEMM rate, TFLOP/s (default 400)", 0 },
		{ "h2d-gbs", SW_OPT_FLOAT, &o.rates.h2d_gbs, "X", "PCIe host-to-device GB/s (default 40)", 0 },
		{ "d2h-gbs", SW_OPT_FLOAT, &o.rates.d2h_gbs, "X", "PCIe device-to-host GB/s (default 40)", 0 },
		{ "nvme-read-gbs", SW_OPT_FLOAT, &o.rates.nvme_read_gbs, "X", "NVMe read GB/s, all paths (default 6 per path)", 0 },
		{ "nvme-write-gbs", SW_OPT_FLOAT, &o.rates.nvme_write_gbs, "X", "NVMe write GB/s, all paths (default 4 per path)", 0 },
		{ "nvme-mix-gbs", SW_OPT_FLOAT, &o.rates.nvme_mix_gbs, "X", "NVMe reads and writes together, GB/s (bench-io's best mix): the expected step (default: not given)", 0 },
		{ "adam-gparams", SW_OPT_FLOAT, &adam_g, "X", "CPU AdamW, G parameters/s (default 2)", 0 },
		{ "gpu-bw-gbs", SW_OPT_FLOAT, &o.rates.gpu_bw_gbs, "X", "the GPU's memory-bound work between the layers, GB/s (bench/cuda_layer's membound line): the expected step (default: not given)", 0 },
		{ "keep", SW_OPT_STR, &keep, "auto|none|all", "keep layers' forward intermediates on the GPU instead of recomputing them in backward: auto (default), none, all", 0 },
		{ "lora-rank", SW_OPT_INT, &k.lora_rank, "R", "plan LoRA adapters of rank R on a frozen base (train --lora-rank R runs this plan)", 0 },
		{ "lora-targets", SW_OPT_STR, &lora_targets, "LIST", "linears with adapters, a subset of q,k,v,o,gate,up,down (default: all)", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("plan", summary, opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if ((rc = check_args(model, &s, dtype, prefetch, &k, o.clip)))
		return rc;
	const double rates[8] = { o.rates.gemm_tflops, o.rates.h2d_gbs, o.rates.d2h_gbs, o.rates.nvme_read_gbs,
				  o.rates.nvme_write_gbs, o.rates.nvme_mix_gbs, adam_g, o.rates.gpu_bw_gbs };
	if ((rc = sw_train_rates_check("plan", rates)))
		return rc;
	if (lora_targets) {
		char why[256];
		if (k.lora_rank == INT64_MIN) {
			sw_error("plan: --lora-targets needs --lora-rank R");
			return 2;
		}
		if (sw_lora_targets_parse(lora_targets, &k.lora_targets, why, sizeof(why))) {
			sw_error("plan: %s", why);
			return 2;
		}
	}
	if (keep && sw_plan_keep_parse(keep, &o.keep)) {
		sw_error("plan: --keep '%s' is not auto, none or all", keep);
		return 2;
	}
	o.fp32 = !strcmp(dtype, "fp32");
	o.prefetch = (int)prefetch;
	o.slots = checkpoint_only ? 1 : 2;
	o.rates.adam_params_per_s = adam_g * 1e9;
	sw_table tt;
	if ((rc = table_of(model, &s, &tt)))
		return rc;
	rc = plan_run(&tt, &o, &k);
	sw_table_free(&tt);
	return rc;
}
