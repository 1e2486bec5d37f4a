/* A LoRA run's budgets and plan (offload/lora_train_int.h): the device bytes beyond the plan's
 * rows taken out of --gpu-mem, CUDA's context and reserve as full fine-tuning takes them, the
 * plan built and printed; the --nvme directories locked and the NVMe engine for the base. */
#include "offload/lora_train_int.h"
#include "core/cli.h"
#include "core/log.h"
#include "cpu/backend_cpu.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Device bytes the executor takes beyond the LoRA plan's rows: the adapters' scratch and the
 * device side of host-resident adapters (one layer), with 64 KiB for alignment. */
static uint64_t extra_dev(const lctx *c, const sw_plan_input *in)
{
	sw_dims d = sw_dims_make(&c->hm.tt.cfg, (int)in->micro_rows, (int)in->seq_len);
	sw_dtype act = in->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
	return sw_lora_scratch_bytes(&d, &c->lo, act) +
	       (uint64_t)c->lo.numel * (uint64_t)(4 + sw_dtype_size(act)) + (64ull << 10);
}

/* CUDA: the context, the kernels' allowance, pinned mappings and the backend's reserve come
 * out of --gpu-mem first (as offload/train_budget.c does for full fine-tuning). */
static int cuda_arena(lctx *c, sw_plan_input *in)
{
	uint64_t ctx = 0;
	int exact = 0;
	if (sw_cuda_context_bytes(0, &ctx, &exact)) {
		sw_error("train: no CUDA device is usable; use --backend cpu");
		return -ENODEV;
	}
	uint64_t held = ctx + SW_CUDA_LAZY_ALLOWANCE + c->a->cpu_mem / 4096 * 9;
	if (!c->a->gpu_mem)
		return 0;
	uint64_t r = held < c->a->gpu_mem ? sw_exec_backend_reserve(c->a->gpu_mem - held) : 0;
	if (held + r + extra_dev(c, in) >= c->a->gpu_mem) {
		sw_error("train: --gpu-mem %.0f MiB does not cover the CUDA context, kernels and the "
			 "backend's reserve (%.0f MiB); raise it", (double)c->a->gpu_mem / 1048576.0,
			 (double)(held + r) / 1048576.0);
		return -ENOSPC;
	}
	c->arena = c->a->gpu_mem - held;
	in->gpu_mem = c->arena - r - extra_dev(c, in);
	return 0;
}

static int plan_build(lctx *c, sw_plan_input *in)
{
	int rc = sw_plan_lora_build(&c->plan, in);
	if (rc)
		sw_error("train: %s", c->plan.why);
	return rc;
}

/* The LoRA plan under the budgets; c->arena the backend's device arena. */
int lora_plan(lctx *c)
{
	const sw_train_args *a = c->a;
	sw_train_plan_opts po = {
		.gpu_mem = a->gpu_mem, .cpu_mem = a->cpu_mem, .nvme = a->nvme,
		.batch_tokens = a->batch_tokens, .seq_len = a->seq_len, .micro_rows = a->micro_rows,
		.chunk = a->chunk, .fp32 = a->fp32, .prefetch = a->prefetch, .slots = a->slots,
		.grad_bufs = a->grad_bufs, .io_depth = a->io_depth, .clip = a->clip, .rates = a->rates,
		.io_stripe = a->io_stripe,
	};
	sw_plan_input in;
	if (sw_train_plan_input(&in, &c->hm.tt, &po, "train"))
		return 2;
	in.lora_rank = c->la->rank;
	in.lora_targets = c->la->targets;
	in.cublas_workspace = 0;
	in.cpu_device = c->cpu;
	sw_lora_layout_make(&c->lo, &c->hm.tt.cfg, c->la->rank, c->la->targets, c->la->alpha);
	c->arena = a->gpu_mem;
	int rc = 0;
	if (c->cpu) {
		sw_dims d = sw_dims_make(&c->hm.tt.cfg, (int)in.micro_rows, (int)in.seq_len);
		in.gpu_reserve = sw_cpu_scratch_bytes(a->threads, &d, c->hm.tt.max_group_numel);
		if (a->gpu_mem && a->gpu_mem <= extra_dev(c, &in)) {
			sw_error("train: --gpu-mem %.1f KiB does not hold the adapters' scratch (%.1f "
				 "KiB); raise it", (double)a->gpu_mem / 1024.0,
				 (double)extra_dev(c, &in) / 1024.0);
			return -ENOSPC;
		}
		if (a->gpu_mem)
			in.gpu_mem = a->gpu_mem - extra_dev(c, &in);
	} else if ((rc = cuda_arena(c, &in))) {
		return rc;
	}
	if ((rc = plan_build(c, &in)))
		return rc;
	if (!a->gpu_mem) {   /* no budget: what the all-resident plan needs */
		in.gpu_mem = c->plan.total[SW_TIER_GPU];
		c->arena = in.gpu_mem + extra_dev(c, &in) +
			   (c->cpu ? 0 : sw_exec_backend_reserve(in.gpu_mem + (288ull << 20)));
		sw_plan_lora_free(&c->plan);
		if ((rc = plan_build(c, &in)))
			return rc;
	}
	if (!a->quiet)
		sw_plan_lora_print(&c->plan, stdout);
	return 0;
}

/* The --nvme directories locked as full fine-tuning does (spillway.lock: one run each). */
int lora_nvme_claim(lctx *c)
{
	if (!c->a->nvme)
		return 0;
	if (!(c->nv = calloc(1, sizeof(*c->nv))))
		return -ENOMEM;
	c->nv->a = c->a;
	if (c->a->run && !realpath(c->a->run, c->nv->run_abs))
		snprintf(c->nv->run_abs, sizeof(c->nv->run_abs), "%s", c->a->run);
	return train_nvme_claim(c->nv);
}

/* The NVMe engine for the base groups and the checkpoints the plan put there (one extent each;
 * stripes of 1 MiB, or of one P16 chunk when that is smaller, so that the executor reads the
 * base in chunks of about the plan's size). */
int lora_nvme_open(lctx *c)
{
	uint64_t need = 0, S = sw_plan_lora_stripe((uint64_t)c->plan.chunk_params * (uint64_t)c->plan.p16_bytes);
	uint64_t x = (c->plan.ckpt_item + 4095) / 4096 * 4096;
	uint64_t nck = (uint64_t)c->plan.ckpt_count[SW_TIER_NVME];
	for (int g = 0; g < c->plan.ngroups; g++)
		if (c->plan.base_tier[g] == SW_TIER_NVME)
			need += ((uint64_t)c->hm.tt.g[g].numel * (uint64_t)c->plan.p16_bytes + S - 1) / S * S;
	/* spilled checkpoints: an extent of a stripe or more starts on a stripe boundary, a smaller
	 * one never straddles one */
	need += x >= S ? nck * ((x + S - 1) / S * S) : (nck + S / x - 1) / (S / x) * S;
	if (!need)
		return 0;
	sw_io_config ic = { .paths = c->a->nvme, .quiet = 1, .bs = c->a->io_bs, .qd = c->a->io_qd,
			    .threads = c->a->io_threads, .file_name = "spillway-lora.data",
			    .size = need + S, .stripe = S };
	return sw_io_open(&ic, &c->io);
}

void lora_nvme_close(lctx *c)
{
	if (!c->io)
		return;
	char files[SW_IO_MAX_PATHS][SW_TRAIN_PATH];
	int n = sw_io_npaths(c->io);
	for (int i = 0; i < n && i < SW_IO_MAX_PATHS; i++)
		snprintf(files[i], SW_TRAIN_PATH, "%s", sw_io_path_file(c->io, i));
	sw_io_close(c->io);
	c->io = NULL;
	for (int i = 0; i < n && i < SW_IO_MAX_PATHS && !c->a->keep_nvme; i++)
		unlink(files[i]);
}

/* The run directory holds two saves at a time (the new one is complete before the old goes):
 * P32, m and v of every adapter, 12 bytes per parameter, each, with 1 MiB for the rest. */
int lora_disk_check(lctx *c)
{
	if (!c->a->run)
		return 0;
	uint64_t need = 2 * ((uint64_t)c->plan.adapter_params * 12 + (1ull << 20));
	uint64_t avail = sw_exec_dir_free(c->a->run);
	if (avail >= need)
		return 0;
	char b1[32], b2[32];
	sw_error("train: %s has %s free but the adapters' saves need %s; free space or choose "
		 "another --run", c->a->run, sw_fmt_size(avail, b1, 32), sw_fmt_size(need, b2, 32));
	return -ENOSPC;
}
