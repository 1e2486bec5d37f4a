/* spillway train's options: parsed, checked (one line each), handed to the driver (train.h).
 *
 * The driver loads config + weights (fp32 masters), plans the placement of every state under
 * the budgets, runs the offload executor for --steps optimizer steps and keeps the run in --run
 * DIR (docs/runs.md): metrics.jsonl, the saved state, the manifest that --resume continues
 * from. */
#include "core/backend.h"
#include "core/cli.h"
#include "core/commands.h"
#include "core/data.h"
#include "core/hfmodel.h"
#include "core/log.h"
#include "core/model.h"
#include "offload/lora_train.h"
#include "offload/train.h"
#include "optim/schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char summary[] = "fine-tune a model on a token file (offloading what does not fit)";

typedef struct train_args {
	const char *eval_data;
	int64_t eval_every;
	const char *model, *data, *run, *backend, *dtype, *nvme, *trace, *schedule, *keep;
	int64_t steps, seq_len, batch_tokens, micro_tokens, warmup, seed, threads, save_every;
	int64_t prefetch, chunk, io_qd, io_threads, grad_bufs, io_depth;
	uint64_t io_bs, io_stripe;
	double lr, min_lr, wd, beta1, beta2, eps, clip;
	uint64_t gpu_mem, cpu_mem;
	int resume, quiet, checkpoint_only, no_save, keep_nvme, force, end_commit;
	int64_t stop_after, commit_every;
	double gemm_tflops, h2d_gbs, d2h_gbs, nvme_read_gbs, nvme_write_gbs, nvme_mix_gbs, adam_gparams;
	double gpu_bw_gbs;
	int64_t lora_rank;           /* -1: not given (full fine-tuning) */
	double lora_alpha, lora_dropout;   /* NAN: not given */
	const char *lora_targets;
} train_args;

/* Checks the numeric arguments; returns 0 or 2 after one line. */
static int check_args(const train_args *a)
{
	if (a->steps < 1 || a->seq_len < 1 || a->batch_tokens < 1) {
		sw_error("train: --steps, --seq-len and --batch-tokens must be positive");
		return 2;
	}
	if (a->micro_tokens < 1 || a->micro_tokens % a->seq_len || a->batch_tokens % a->micro_tokens) {
		sw_error("train: --micro-batch-tokens %lld must be a multiple of --seq-len %lld and "
			 "divide --batch-tokens %lld", (long long)a->micro_tokens, (long long)a->seq_len,
			 (long long)a->batch_tokens);
		return 2;
	}
	if (!(a->lr >= 0) || !isfinite(a->lr) || a->min_lr < 0 || a->min_lr > a->lr || a->wd < 0 ||
	    !(a->beta1 >= 0 && a->beta1 < 1) || !(a->beta2 >= 0 && a->beta2 < 1) || !(a->eps > 0) ||
	    a->clip < 0 || a->warmup < 0) {
		sw_error("train: optimizer settings out of range (need lr >= 0, 0 <= min-lr <= lr, "
			 "weight-decay >= 0, betas in [0,1), eps > 0, clip >= 0, warmup >= 0)");
		return 2;
	}
	if (a->save_every < 0 || a->stop_after < 0 || a->eval_every < 0) {
		sw_error("train: --save-every, --stop-after and --eval-every must be >= 0");
		return 2;
	}
	if (a->grad_bufs != INT64_MIN && (a->grad_bufs < 1 || a->grad_bufs > 8)) {
		sw_error("train: --grad-buffers %lld: give 1 to 8 group-sized gradient buffers on the GPU",
			 (long long)a->grad_bufs);
		return 2;
	}
	if (a->io_depth != INT64_MIN && (a->io_depth < 1 || a->io_depth > 64)) {
		sw_error("train: --io-depth %lld: give 1 to 64 checkpoints in flight to / from NVMe "
			 "each way", (long long)a->io_depth);
		return 2;
	}
	if (a->commit_every < -1) {
		sw_error("train: --commit-every %lld: give N >= 1 (commit every N steps) or 0 (no "
			 "commits: state is kept at --save-every and at the end only)",
			 (long long)a->commit_every);
		return 2;
	}
	if (a->micro_tokens / a->seq_len * a->seq_len > (1 << 24)) {
		sw_error("train: --micro-batch-tokens %lld is above the largest micro-batch (%d tokens); "
			 "lower it", (long long)a->micro_tokens, 1 << 24);
		return 2;
	}
	if (a->batch_tokens / a->micro_tokens > (1 << 20)) {
		sw_error("train: --batch-tokens %lld is more than 2^20 micro-batches of %lld tokens; "
			 "raise --micro-batch-tokens", (long long)a->batch_tokens, (long long)a->micro_tokens);
		return 2;
	}
	const double rates[8] = { a->gemm_tflops, a->h2d_gbs, a->d2h_gbs, a->nvme_read_gbs,
				  a->nvme_write_gbs, a->nvme_mix_gbs, a->adam_gparams, a->gpu_bw_gbs };
	if (sw_train_rates_check("train", rates))
		return 2;
	/* the NVMe engine's settings (io/io.h), as `spillway bench-io` recommends them */
	if (a->io_bs % 4096 || a->io_stripe % 4096 || a->io_stripe > (1ull << 30) || a->io_qd < 0 ||
	    a->io_qd > 4096 || a->io_threads < 0 || a->io_threads > 64) {
		sw_error("train: --io-bs and --io-stripe must be multiples of 4KiB (stripe up to 1GiB), "
			 "--io-qd in 1..4096, --io-threads in 1..64; `spillway bench-io` recommends values");
		return 2;
	}
	if (strcmp(a->dtype, "bf16") && strcmp(a->dtype, "fp32")) {
		sw_error("train: --dtype '%s' is not bf16 or fp32", a->dtype);
		return 2;
	}
	return 0;
}

/* --run is required unless --no-save; --resume and --save-every need it. 0 or 2. */
static int check_run(const train_args *a)
{
	if (a->no_save && (a->run || a->resume || a->save_every || a->commit_every > 0 || a->end_commit)) {
		sw_error("train: --no-save keeps nothing: drop --run, --resume, --save-every and "
			 "--commit-every (and --end-commit) with it");
		return 2;
	}
	if (!a->no_save && !a->run) {
		sw_error("train: --run DIR is required (the run directory keeps the trained state); "
			 "give --no-save to train without keeping anything");
		return 2;
	}
	return 0;
}

/* "spillway train ARGS --resume" from this command line (--resume added when missing, shell
 * quoting for words with special characters); malloc'ed, NULL on ENOMEM. */
static char *resume_command(int argc, char **argv)
{
	size_t len = 32;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) * 4 + 3;
	char *s = malloc(len), *p = s;
	if (!s)
		return NULL;
	p += sprintf(p, "spillway");
	int has = 0;
	for (int i = 0; i < argc; i++) {
		const char *w = argv[i];
		has |= !strcmp(w, "--resume");
		if (w[strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")]) {
			*p++ = ' ';
			*p++ = '\'';
			for (; *w; w++)
				p += *w == '\'' ? sprintf(p, "'\\''") : sprintf(p, "%c", *w);
			*p++ = '\'';
			*p = 0;
		} else {
			p += sprintf(p, " %s", w);
		}
	}
	if (!has)
		sprintf(p, " --resume");
	return s;
}

/* The option table (parsing and --help): 0, 2 after one usage line, -1 after --help. */
static int parse_opts(train_args *p, int argc, char **argv)
{
	train_args a = {
		.backend = "auto", .dtype = "bf16", .schedule = "cosine", .seq_len = 0,
		.micro_tokens = 0, .lr = 1e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1.0,
		.wd = 0.0, .prefetch = 2, .cpu_mem = 16ull << 30, .commit_every = -1,
		.grad_bufs = INT64_MIN, .io_depth = INT64_MIN,   /* not given */
		.lora_rank = -1, .lora_alpha = NAN, .lora_dropout = NAN,
	};
	const sw_opt opts[] = {
		{ "model", SW_OPT_STR, &a.model, "DIR", "Hugging Face model directory", 1 },
		{ "data", SW_OPT_STR, &a.data, "FILE", "token file from 'spillway data'", 1 },
		{ "steps", SW_OPT_INT, &a.steps, "N", "optimizer steps", 1 },
		{ "lr", SW_OPT_FLOAT, &a.lr, "X", "peak learning rate (default 1e-5)", 0 },
		{ "seq-len", SW_OPT_INT, &a.seq_len, "T", "tokens per row", 1 },
		{ "batch-tokens", SW_OPT_INT, &a.batch_tokens, "N", "tokens per optimizer step", 1 },
		{ "micro-batch-tokens", SW_OPT_INT, &a.micro_tokens, "N", "tokens per micro-batch (default --seq-len)", 0 },
		{ "run", SW_OPT_STR, &a.run, "DIR", "run directory: metrics.jsonl, saved state, manifest (required unless --no-save)", 0 },
		{ "no-save", SW_OPT_FLAG, &a.no_save, NULL, "run without a run directory: nothing is kept", 0 },
		{ "backend", SW_OPT_STR, &a.backend, "NAME", "auto, cpu or cuda (default auto)", 0 },
		{ "dtype", SW_OPT_STR, &a.dtype, "bf16|fp32", "compute dtype (default bf16)", 0 },
		{ "gpu-mem", SW_OPT_SIZE, &a.gpu_mem, "SIZE", "GPU memory budget (default: what the run needs, all resident)", 0 },
		{ "cpu-mem", SW_OPT_SIZE, &a.cpu_mem, "SIZE", "host memory budget (default 16GiB)", 0 },
		{ "nvme", SW_OPT_STR, &a.nvme, "PATHS", "NVMe directories, PATH[:SIZE],... for the state that does not fit", 0 },
		{ "schedule", SW_OPT_STR, &a.schedule, "NAME", "constant or cosine (default cosine)", 0 },
		{ "warmup", SW_OPT_INT, &a.warmup, "N", "linear warm-up steps (default 0)", 0 },
		{ "min-lr", SW_OPT_FLOAT, &a.min_lr, "X", "cosine floor (default 0)", 0 },
		{ "weight-decay", SW_OPT_FLOAT, &a.wd, "X", "decoupled weight decay of matrices (default 0)", 0 },
		{ "beta1", SW_OPT_FLOAT, &a.beta1, "X", "AdamW beta1 (default 0.9)", 0 },
		{ "beta2", SW_OPT_FLOAT, &a.beta2, "X", "AdamW beta2 (default 0.999)", 0 },
		{ "eps", SW_OPT_FLOAT, &a.eps, "X", "AdamW eps (default 1e-8)", 0 },
		{ "clip", SW_OPT_FLOAT, &a.clip, "X", "max global gradient norm, 0: off (default 1.0)", 0 },
		{ "seed", SW_OPT_INT, &a.seed, "N", "data order seed (default 0)", 0 },
		{ "threads", SW_OPT_INT, &a.threads, "N", "CPU threads for ops and AdamW (default: all cores)", 0 },
		{ "prefetch", SW_OPT_INT, &a.prefetch, "K", "streamed groups' P16 buffers on the GPU (default 2)", 0 },
		{ "grad-buffers", SW_OPT_INT, &a.grad_bufs, "N", "group-sized fp32 gradient buffers on the GPU, 1-8 (default: the planner's choice of 1 or 2; with 1 a layer's backward waits for the previous gradient's copy to the host)", 0 },
		{ "keep", SW_OPT_STR, &a.keep, "auto|none|all", "keep layers' forward intermediates on the GPU instead of recomputing them in backward: auto (default: as the GPU budget allows, while the predicted step falls), none, all", 0 },
		{ "chunk", SW_OPT_INT, &a.chunk, "PARAMS", "NVMe I/O chunk of streamed state (default 67108864)", 0 },
		{ "io-bs", SW_OPT_SIZE, &a.io_bs, "SIZE", "largest single NVMe transfer (default 1MiB)", 0 },
		{ "io-qd", SW_OPT_INT, &a.io_qd, "N", "NVMe transfers in flight per I/O thread (default 32)", 0 },
		{ "io-depth", SW_OPT_INT, &a.io_depth, "N", "activation checkpoints in flight to / from NVMe each way, 1-64: 2N pinned staging buffers of one checkpoint, at most 16 (default 2)", 0 },
		{ "io-threads", SW_OPT_INT, &a.io_threads, "N", "I/O threads, one io_uring each (default 2)", 0 },
		{ "io-stripe", SW_OPT_SIZE, &a.io_stripe, "SIZE", "stripe unit over the --nvme paths; must divide one chunk of P16 (default: that chunk)", 0 },
		{ "save-every", SW_OPT_INT, &a.save_every, "N", "write the state to the run directory every N steps (default: at the end)", 0 },
		{ "commit-every", SW_OPT_INT, &a.commit_every, "N", "commit the state every N steps, NVMe state in place (0: off; default: the fewest steps keeping a commit at or below 5 % of their time, predicted, then measured)", 0 },
		{ "checkpoint-only", SW_OPT_FLAG, &a.checkpoint_only, NULL, "one slot of NVMe optimizer state (updated in place; consistent only at saves)", 0 },
		{ "trace", SW_OPT_STR, &a.trace, "FILE", "write a Chrome/Perfetto trace", 0 },
		{ "gemm-tflops", SW_OPT_FLOAT, &a.gemm_tflops, "X", "measured GEMM rate for the step's bound, TFLOP/s (default 400)", 0 },
		{ "h2d-gbs", SW_OPT_FLOAT, &a.h2d_gbs, "X", "measured PCIe host-to-device GB/s (default 40)", 0 },
		{ "d2h-gbs", SW_OPT_FLOAT, &a.d2h_gbs, "X", "measured PCIe device-to-host GB/s (default 40)", 0 },
		{ "nvme-read-gbs", SW_OPT_FLOAT, &a.nvme_read_gbs, "X", "measured NVMe read GB/s, all paths (default 6 per path)", 0 },
		{ "nvme-write-gbs", SW_OPT_FLOAT, &a.nvme_write_gbs, "X", "measured NVMe write GB/s, all paths (default 4 per path)", 0 },
		{ "nvme-mix-gbs", SW_OPT_FLOAT, &a.nvme_mix_gbs, "X", "measured NVMe reads and writes together, GB/s (bench-io's best mix): the expected step (default: not given)", 0 },
		{ "adam-gparams", SW_OPT_FLOAT, &a.adam_gparams, "X", "measured CPU AdamW, G parameters/s (default 2)", 0 },
		{ "gpu-bw-gbs", SW_OPT_FLOAT, &a.gpu_bw_gbs, "X", "measured rate of the GPU's memory-bound work between the layers, GB/s (bench/cuda_layer's membound line): the expected step (default: not given)", 0 },
		{ "resume", SW_OPT_FLAG, &a.resume, NULL, "continue the run in --run from its last saved step", 0 },
		{ "eval-data", SW_OPT_STR, &a.eval_data, "FILE", "held-out token file: its mean loss (forward only) in the step line and metrics.jsonl", 0 },
		{ "eval-every", SW_OPT_INT, &a.eval_every, "N", "evaluate --eval-data after every N steps (default 0: after the last step only)", 0 },
		{ "stop-after", SW_OPT_INT, &a.stop_after, "N", "stop after step N, saving, as SIGINT does (resume later with --resume)", 0 },
		{ "force", SW_OPT_FLAG, &a.force, NULL, "train on data whose tokenizer differs from the model directory's tokenizer.json", 0 },
		{ "keep-nvme", SW_OPT_FLAG, &a.keep_nvme, NULL, "leave the NVMe scratch file at the end (default: removed)", 0 },
		{ "end-commit", SW_OPT_FLAG, &a.end_commit, NULL, "end the run with a commit instead of a full save: the NVMe state stays in place, export reads it there", 0 },
		{ "quiet", SW_OPT_FLAG, &a.quiet, NULL, "no placement table", 0 },
		{ "lora-rank", SW_OPT_INT, &a.lora_rank, "R", "train LoRA adapters of rank R on a frozen base (docs/lora.md)", 0 },
		{ "lora-alpha", SW_OPT_FLOAT, &a.lora_alpha, "A", "LoRA scaling alpha: the update is (A/R) B A x (default 8, as PEFT)", 0 },
		{ "lora-dropout", SW_OPT_FLOAT, &a.lora_dropout, "P", "LoRA dropout (only 0 is implemented)", 0 },
		{ "lora-targets", SW_OPT_STR, &a.lora_targets, "LIST", "linears that get adapters, a subset of q,k,v,o,gate,up,down (default all)", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("train", summary, opts, argc, argv);
	*p = a;
	return rc;
}

/* The --lora-* options into *la (rank 0: full fine-tuning). 0 or 2 after one line. */
static int lora_args(const train_args *a, sw_lora_args *la)
{
	memset(la, 0, sizeof(*la));
	if (a->lora_rank == -1) {
		if (!isnan(a->lora_alpha) || !isnan(a->lora_dropout) || a->lora_targets) {
			sw_error("train: --lora-alpha, --lora-dropout and --lora-targets need --lora-rank R");
			return 2;
		}
		return 0;
	}
	if (a->lora_rank < 1 || a->lora_rank > (1 << 20)) {
		sw_error("train: --lora-rank %lld: give a rank of at least 1", (long long)a->lora_rank);
		return 2;
	}
	la->rank = (int)a->lora_rank;
	la->alpha = isnan(a->lora_alpha) ? 8.0 : a->lora_alpha;
	la->dropout = isnan(a->lora_dropout) ? 0.0 : a->lora_dropout;
	if (!(la->alpha > 0) || !isfinite(la->alpha) || !(la->dropout >= 0 && la->dropout < 1)) {
		sw_error("train: --lora-alpha must be positive and --lora-dropout in [0, 1)");
		return 2;
	}
	char why[256];
	la->targets = SW_LORA_ALL;
	if (a->lora_targets && sw_lora_targets_parse(a->lora_targets, &la->targets, why, sizeof(why))) {
		sw_error("train: %s", why);
		return 2;
	}
	return 0;
}

int cmd_train(int argc, char **argv)
{
	train_args a;
	int rc = parse_opts(&a, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!a.micro_tokens)
		a.micro_tokens = a.seq_len;
	if ((rc = check_args(&a)) || (rc = sw_cli_threads("train", "threads", &a.threads)))
		return rc;
	if ((rc = check_run(&a)))
		return rc;
	sw_lr_schedule sched = { .lr = a.lr, .warmup_steps = a.warmup, .total_steps = a.steps,
				 .min_lr_rate = a.lr > 0 ? a.min_lr / a.lr : 0 };
	if (sw_lr_kind_parse(a.schedule, &sched.kind)) {
		sw_error("train: --schedule '%s' is not constant or cosine", a.schedule);
		return 2;
	}
	char why[256];
	if (sw_lr_schedule_check(&sched, why, sizeof(why))) {
		sw_error("train: %s", why);
		return 2;
	}
	int keep = SW_PLAN_KEEP_AUTO;
	if (a.keep && sw_plan_keep_parse(a.keep, &keep)) {
		sw_error("train: --keep '%s' is not auto, none or all", a.keep);
		return 2;
	}
	sw_lora_args la;
	if ((rc = lora_args(&a, &la)))
		return rc;
	char *resume_cmd = resume_command(argc, argv);
	sw_train_args ta = {
		.model = a.model, .data = a.data, .run = a.no_save ? NULL : a.run, .backend = a.backend,
		.nvme = a.nvme, .trace = a.trace, .schedule_name = a.schedule,
		.steps = a.steps, .seq_len = a.seq_len, .batch_tokens = a.batch_tokens,
		.micro_rows = a.micro_tokens / a.seq_len, .seed = (uint64_t)a.seed,
		.threads = (int)a.threads, .save_every = a.save_every, .commit_every = a.commit_every, .stop_after = a.stop_after, .eval_data = a.eval_data, .eval_every = a.eval_every,
		.prefetch = (int)a.prefetch, .grad_bufs = a.grad_bufs == INT64_MIN ? 0 : (int)a.grad_bufs,
		.io_depth = a.io_depth == INT64_MIN ? 0 : (int)a.io_depth, .keep = keep, .chunk = a.chunk, .slots = a.checkpoint_only ? 1 : 2,
		.io_bs = a.io_bs, .io_stripe = a.io_stripe, .io_qd = (int)a.io_qd,
		.io_threads = (int)a.io_threads, .no_save = a.no_save, .keep_nvme = a.keep_nvme, .end_commit = a.end_commit, .force = a.force,
		.fp32 = !strcmp(a.dtype, "fp32"), .gpu_mem = a.gpu_mem, .cpu_mem = a.cpu_mem,
		.clip = a.clip, .resume = a.resume, .quiet = a.quiet, .sched = sched,
		.adam = { .lr = a.lr, .beta1 = a.beta1, .beta2 = a.beta2, .eps = a.eps,
			  .weight_decay = a.wd },
		.print_steps = 1, .resume_cmd = resume_cmd,
		.rates = { .gemm_tflops = a.gemm_tflops, .h2d_gbs = a.h2d_gbs, .d2h_gbs = a.d2h_gbs,
			   .nvme_read_gbs = a.nvme_read_gbs, .nvme_write_gbs = a.nvme_write_gbs,
			   .nvme_mix_gbs = a.nvme_mix_gbs, .adam_params_per_s = a.adam_gparams * 1e9,
			   .gpu_bw_gbs = a.gpu_bw_gbs },
	};
	rc = la.rank ? sw_train_lora(&ta, &la) : sw_train(&ta);
	free(resume_cmd);
	return rc < 0 ? 1 : rc;
}
