/* Budgets of a train run: the CUDA context and the backend's reserve taken out of --gpu-mem,
 * then the plan built under what is left (all resident when no --gpu-mem is given). */
#include "offload/train_int.h"
#include "core/cli.h"
#include "core/log.h"
#include "cpu/backend_cpu.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

uint64_t sw_exec_backend_reserve(uint64_t budget)
{
	/* cuda/backend_cuda.cu reserve_sizes(): cuBLASLt workspace + op scratch */
	uint64_t mib = 1ull << 20, ws = budget >= 1024 * mib ? 32 * mib : 4 * mib, s = budget / 16;
	s = s > 512 * mib ? 512 * mib : s < 4 * mib ? 4 * mib : s;
	return ws + s;
}

uint64_t sw_exec_dir_free(const char *dir)
{
	struct statvfs st;
	if (statvfs(dir, &st))
		return 0;
	return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

/* Device memory the driver takes to map pinned host memory into the GPU's address space: 2.04
 * MiB per GiB pinned, measured on the H100 machine (docs/perf.md, issue 14: 28.5 GiB more pinned
 * took 58 MiB more device memory); 2.25 MiB per GiB of --cpu-mem held back. */
static uint64_t pinned_map_bytes(uint64_t cpu_mem) { return cpu_mem / 4096 * 9; }

/* --gpu-mem on CUDA bounds all the device memory this process takes: the context (measured),
 * the kernels that load on first use (an allowance), the mapping of pinned host memory, then
 * the backend's arena, which keeps its GEMM workspace and op scratch inside. Sets in->gpu_mem
 * and c->arena. */
static int cuda_budget(sw_train_ctx *c, sw_plan_input *in)
{
	const sw_train_args *a = c->a;
	uint64_t map = pinned_map_bytes(a->cpu_mem);
	uint64_t held = c->ctx_bytes + SW_CUDA_LAZY_ALLOWANCE + map, r = 0;
	if (held < a->gpu_mem) {
		c->arena = a->gpu_mem - held;
		r = sw_exec_backend_reserve(c->arena);
	}
	if (held + r >= a->gpu_mem) {
		sw_error("train: --gpu-mem %.0f MiB does not cover the CUDA context (%.0f MiB, "
			 "measured) + %.0f MiB for kernels + %.0f MiB mapping --cpu-mem's pinned memory + "
			 "the backend's %.0f MiB reserve; raise it", (double)a->gpu_mem / 1048576.0,
			 (double)c->ctx_bytes / 1048576.0, (double)SW_CUDA_LAZY_ALLOWANCE / 1048576.0,
			 (double)map / 1048576.0, (double)r / 1048576.0);
		return -ENOSPC;
	}
	in->gpu_mem = c->arena - r;
	if (!a->quiet)
		printf("GPU budget: --gpu-mem %.0f MiB = CUDA context %.0f MiB (measured%s) + %.0f MiB "
		       "for kernels loaded on first use + %.0f MiB mapping pinned host memory + backend "
		       "arena %.0f MiB (%.0f MiB workspace and scratch, %.0f MiB for the plan)\n",
		       (double)a->gpu_mem / 1048576.0,
		       (double)c->ctx_bytes / 1048576.0, c->ctx_exact ? "" : "; NVML unusable, so it "
		       "includes other processes' use", (double)SW_CUDA_LAZY_ALLOWANCE / 1048576.0,
		       (double)map / 1048576.0, (double)c->arena / 1048576.0, (double)r / 1048576.0,
		       (double)in->gpu_mem / 1048576.0);
	return 0;
}

/* The CPU backend's op scratch for the plan's micro-batch shape: taken out of its device arena
 * like the CUDA backend's reserve (cpu/backend_cpu.h). */
uint64_t train_cpu_scratch(const sw_train_ctx *c, const sw_plan_input *in)
{
	sw_dims d = sw_dims_make(&c->tt->cfg, (int)in->micro_rows, (int)in->seq_len);
	return sw_cpu_scratch_bytes(c->a->threads, &d, c->tt->max_group_numel);
}

/* --gpu-mem on the CPU backend bounds its arena, host memory standing in for the device: the
 * op scratch is a held row of the plan's device tier (its "reserve"), the rest is the plan's. */
static void cpu_budget(sw_train_ctx *c, sw_plan_input *in)
{
	in->gpu_reserve = train_cpu_scratch(c, in);
	if (!c->a->quiet)
		printf("device budget: the CPU backend's op scratch for these shapes takes %.2f MiB "
		       "of the device arena (%d threads)\n", (double)in->gpu_reserve / 1048576.0,
		       sw_pool_threads_for(c->a->threads));
}

/* The planner's reasons name `plan`'s --micro-batch (rows); train's option is
 * --micro-batch-tokens. */
static void plan_error(const sw_plan *p)
{
	char buf[sizeof(p->why) + 64], *o = buf;
	const char *s = p->why, *hit;
	while ((hit = strstr(s, "--micro-batch")) && hit[13] != '-' && o + (hit - s) + 32 < buf + sizeof(buf)) {
		memcpy(o, s, (size_t)(hit - s));
		o += hit - s;
		o += sprintf(o, "--micro-batch-tokens");
		s = hit + 13;
	}
	snprintf(o, sizeof(buf) - (size_t)(o - buf), "%s", s);
	sw_error("train: %s", buf);
}

int train_budget_plan(sw_train_ctx *c)
{
	const sw_train_args *a = c->a;
	sw_train_plan_opts po = {
		.gpu_mem = a->gpu_mem, .cpu_mem = a->cpu_mem, .nvme = a->nvme,
		.batch_tokens = a->batch_tokens, .seq_len = a->seq_len, .micro_rows = a->micro_rows,
		.chunk = a->chunk, .fp32 = a->fp32, .prefetch = a->prefetch, .slots = a->slots,
		.grad_bufs = a->grad_bufs, .io_depth = a->io_depth, .keep = a->keep,
		.clip = a->clip, .rates = a->rates, .io_stripe = a->io_stripe,
	};
	sw_plan_input in;
	int rc = sw_train_plan_input(&in, c->tt, &po, "train");
	if (rc)
		return -EINVAL;
	in.cublas_workspace = 0;   /* CUDA takes its workspace from its reserve; the CPU has none */
	in.cpu_device = c->cpu;    /* the placement table then says "device", not "GPU" */
	c->arena = a->gpu_mem;
	if (c->cpu)
		cpu_budget(c, &in);
	else if (a->gpu_mem && (rc = cuda_budget(c, &in)))
		return rc;
	if ((rc = sw_plan_build(&c->plan, &in))) {
		plan_error(&c->plan);
		return rc;
	}
	if (!a->gpu_mem) {
		/* no budget given: exactly what the all-resident plan needs; kept activations only
		 * with --keep all (auto has no budget to keep within: --gpu-mem gives it one) */
		in.gpu_mem = c->plan.total[SW_TIER_GPU] -
			     (in.keep == SW_PLAN_KEEP_ALL ? 0 : c->plan.bytes[SW_TIER_GPU][SW_PURPOSE_KEEP]);
		c->arena = in.gpu_mem + (c->cpu ? 0 : sw_exec_backend_reserve(in.gpu_mem + (288ull << 20)));
		sw_plan_free(&c->plan);
		memset(&c->plan, 0, sizeof(c->plan));
		if ((rc = sw_plan_build(&c->plan, &in))) {
			plan_error(&c->plan);
			return rc;
		}
	}
	if (!a->quiet)
		sw_plan_print(&c->plan, stdout);
	return 0;
}
