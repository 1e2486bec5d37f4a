/* The planner's entry points: inputs and their checks, sw_plan_build's steps in order
 * (placement per tier, plan_place.c; the buffer table, plan_table.c; the cost model,
 * plan_cost.c), the smallest budgets, names and messages (docs/planner.md). */
#include "offload/plan_internal.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *tier_names[SW_TIER_COUNT] = { "GPU", "host", "NVMe" };
static const char *tier_names_cpu[SW_TIER_COUNT] = { "device", "host", "NVMe" };
static const char *purpose_names[SW_PURPOSE_COUNT] = {
	[SW_PURPOSE_P16] = "P16", [SW_PURPOSE_P32] = "P32", [SW_PURPOSE_M] = "Adam m",
	[SW_PURPOSE_V] = "Adam v", [SW_PURPOSE_CKPT] = "activation checkpoints",
	[SW_PURPOSE_CARRY] = "activation carry", [SW_PURPOSE_WINDOW] = "P16 prefetch window",
	[SW_PURPOSE_GRAD] = "gradient buffers", [SW_PURPOSE_TIED_GRAD] = "tied embedding gradient",
	[SW_PURPOSE_ACT] = "layer activations", [SW_PURPOSE_MB_IO] = "micro-batch staging",
	[SW_PURPOSE_HEAD] = "head and loss workspace", [SW_PURPOSE_WORKSPACE] = "cuBLAS workspace",
	[SW_PURPOSE_RESERVE] = "reserve", [SW_PURPOSE_STAGE_P16] = "I/O staging P16",
	[SW_PURPOSE_STAGE_OPT] = "I/O staging optimizer", [SW_PURPOSE_STAGE_CKPT] = "I/O staging checkpoints",
	[SW_PURPOSE_XFER] = "load/save staging", [SW_PURPOSE_HELD_GRAD] = "held gradients (clip)",
	[SW_PURPOSE_STATE_B] = "second state set (clip)", [SW_PURPOSE_KEEP] = "kept activations",
};
static const char *resource_names[SW_RES_COUNT] = { "GPU compute", "PCIe", "NVMe", "CPU AdamW" };

const char *sw_plan_tier_name(sw_tier t) { return t < SW_TIER_COUNT ? tier_names[t] : "?"; }
const char *sw_plan_tier_label(const sw_plan *p, sw_tier t)
{
	return t < SW_TIER_COUNT ? (p->in.cpu_device ? tier_names_cpu : tier_names)[t] : "?";
}
const char *sw_plan_purpose_name(sw_plan_purpose u) { return u < SW_PURPOSE_COUNT ? purpose_names[u] : "?"; }
const char *sw_plan_resource_name(sw_plan_resource r) { return r < SW_RES_COUNT ? resource_names[r] : "?"; }

void sw_plan_input_init(sw_plan_input *in, const sw_table *tt)
{
	memset(in, 0, sizeof(*in));
	in->tt = tt;
	in->batch_tokens = 65536;
	in->seq_len = 2048;
	in->micro_rows = 1;
	in->slots = 2;
	in->prefetch = 2;
	in->grad_bufs = 1;
	in->passes = 2;
	in->speculate = 0;
	in->chunk_params = 64ll << 20;
	in->io_depth = 2;
	in->opt_sets = SW_PLAN_OPT_STAGES;
	in->vocab_chunk = 8192;
	in->cublas_workspace = 32ull << 20;
	in->gpu_reserve = 0;
	in->rates.gemm_tflops = 400;
	in->rates.h2d_gbs = 40;
	in->rates.d2h_gbs = 40;
	in->rates.nvme_read_gbs = 6;
	in->rates.nvme_write_gbs = 4;
	in->rates.adam_params_per_s = 2e9;
}

/* ---- messages ------------------------------------------------------------------------------ */

void plan_why(sw_plan *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
}

/* "P16 prefetch window 1.20 GiB, gradient buffers 800.00 MiB, ..." for the nonzero cells */
void plan_list_purposes(char *out, size_t len, const uint64_t by[SW_PURPOSE_COUNT])
{
	size_t n = 0;
	out[0] = 0;
	for (int u = 0; u < SW_PURPOSE_COUNT && n < len; u++) {
		if (!by[u])
			continue;
		char b[32];
		n += (size_t)snprintf(out + n, len - n, "%s%s %s", n ? ", " : "", purpose_names[u],
				      sw_fmt_size(by[u], b, sizeof(b)));
	}
}

/* appends ", name size" (no comma first) to out */
void plan_list_add(char *out, size_t len, const char *name, uint64_t bytes)
{
	if (!bytes)
		return;
	size_t n = strlen(out);
	char b[32];
	if (n < len)
		snprintf(out + n, len - n, "%s%s %s", n ? ", " : "", name, sw_fmt_size(bytes, b, sizeof(b)));
}

static int check_input(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	const sw_config *c = &in->tt->cfg;
	if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
	    c->head_dim <= 0 || c->ffn_dim <= 0 || c->vocab <= 0 || c->dim > (1 << 24) ||
	    c->n_layers > (1 << 16) || c->ffn_dim > (1 << 26) || c->vocab > (1 << 26) ||
	    c->n_heads * c->head_dim > (1 << 24)) {
		plan_why(p, "model shape (dim %lld, layers %lld, heads %lld/%lld, head_dim %lld, ffn %lld, "
			"vocab %lld) is out of range; check the config", (long long)c->dim,
			(long long)c->n_layers, (long long)c->n_heads, (long long)c->n_kv_heads,
			(long long)c->head_dim, (long long)c->ffn_dim, (long long)c->vocab);
		return -EINVAL;
	}
	if (in->seq_len <= 0 || in->seq_len > (1 << 22)) {
		plan_why(p, "--seq-len %lld is out of range (1 to %d)", (long long)in->seq_len, 1 << 22);
		return -EINVAL;
	}
	if (in->micro_rows <= 0 || in->micro_rows * in->seq_len > (1 << 24)) {
		plan_why(p, "--micro-batch %lld rows of %lld tokens is out of range (at most %d tokens)",
			(long long)in->micro_rows, (long long)in->seq_len, 1 << 24);
		return -EINVAL;
	}
	int64_t T = in->micro_rows * in->seq_len;
	if (in->batch_tokens <= 0 || in->batch_tokens % T || in->batch_tokens / T > (1 << 20)) {
		plan_why(p, "--batch-tokens %lld is not a positive multiple of the micro-batch (%lld x %lld "
			"= %lld tokens, at most 2^20 micro-batches); use a multiple of %lld",
			(long long)in->batch_tokens, (long long)in->micro_rows, (long long)in->seq_len,
			(long long)T, (long long)T);
		return -EINVAL;
	}
	if (in->prefetch < 1 || in->prefetch > 64 || in->grad_bufs < 1 || in->grad_bufs > 8 ||
	    in->io_depth < 1 || in->io_depth > 64 || in->chunk_params <= 0 || in->vocab_chunk <= 0 ||
	    in->opt_sets < 2 || in->opt_sets > SW_PLAN_OPT_STAGES_MAX) {
		plan_why(p, "--prefetch %d (1-64), grad buffers %d (1-8), --io-depth %d (1-64), --chunk %lld "
			"and --vocab-chunk %lld (> 0), SW_OPT_SETS %d (2-%d): one is out of range",
			in->prefetch, in->grad_bufs, in->io_depth, (long long)in->chunk_params,
			(long long)in->vocab_chunk, in->opt_sets, SW_PLAN_OPT_STAGES_MAX);
		return -EINVAL;
	}
	if (in->slots != 1 && in->slots != 2) {
		plan_why(p, "optimizer state slots must be 1 (--checkpoint-only) or 2, not %d", in->slots);
		return -EINVAL;
	}
	if (in->passes != 1 && in->passes != 2) {
		plan_why(p, "backward passes must be 1 (--clip 0) or 2 (clipping), not %d", in->passes);
		return -EINVAL;
	}
	const sw_plan_rates *r = &in->rates;
	if (!(r->gemm_tflops > 0 && r->h2d_gbs > 0 && r->d2h_gbs > 0 && r->nvme_read_gbs > 0 &&
	      r->nvme_write_gbs > 0 && r->adam_params_per_s > 0 && r->nvme_mix_gbs >= 0 &&
	      isfinite(r->nvme_mix_gbs) && r->gpu_bw_gbs >= 0 && isfinite(r->gpu_bw_gbs))) {
		plan_why(p, "every rate (--gemm-tflops, --h2d-gbs, --d2h-gbs, --nvme-read-gbs, "
			"--nvme-write-gbs, --adam-gparams) must be positive, and --nvme-mix-gbs and "
			"--gpu-bw-gbs too when given");
		return -EINVAL;
	}
	if (in->lora_rank) {
		plan_why(p, "the full fine-tuning planner was given a LoRA rank (%d); plan LoRA with "
			 "sw_plan_lora_build", in->lora_rank);
		return -EINVAL;
	}
	if (in->n_nvme < 0 || in->n_nvme > SW_PLAN_MAX_NVME) {
		plan_why(p, "%d --nvme paths; at most %d", in->n_nvme, SW_PLAN_MAX_NVME);
		return -EINVAL;
	}
	return 0;
}

/* ---- build -------------------------------------------------------------------------------- */

static void check_invariants(const sw_plan *p)
{
	for (int t = 0; t < SW_TIER_COUNT; t++)
		SW_ASSERT(p->total[t] <= p->budget[t]);
	for (int g = 0; g < p->ngroups; g++) {
		const sw_tier *s = p->tier[g];
		SW_ASSERT(s[SW_STATE_P32] == s[SW_STATE_M] && s[SW_STATE_M] == s[SW_STATE_V]);
		SW_ASSERT((s[SW_STATE_P32] == SW_TIER_GPU) == (s[SW_STATE_P16] == SW_TIER_GPU));
		SW_ASSERT((s[SW_STATE_GRAD] == SW_TIER_GPU) == (s[SW_STATE_P32] == SW_TIER_GPU));
		SW_ASSERT(s[SW_STATE_GRAD] != SW_TIER_NVME);
	}
	SW_ASSERT(p->ckpt_count[0] + p->ckpt_count[1] + p->ckpt_count[2] == p->n_layers * p->n_micro);
}

/* The pinned host gradient buffers: SW_PLAN_HOST_GRADS (placed with the rest), and one more per
 * CPU-updated group, up to SW_PLAN_HOST_GRADS_MAX, where the host budget has room left after
 * every other buffer. With them the GPU's backward does not wait for CPU AdamW to free a
 * buffer when AdamW is slower than the backward, and the optimizer thread can take the pending
 * update the next forward needs first (exec_opt.c): the last updates of a step then run under
 * the next step's forward instead of before it. SW_HOST_GRADS=N asks for N (at least 1, at most
 * what fits: an A/B switch for benchmarks; with two CPU-updated groups or fewer it changes
 * nothing). The buffers are sized for the largest CPU-updated group, as the first two. */
static int plan_host_grads(sw_plan *p, const plan_sizes *z)
{
	uint64_t max_off;
	int n_off = plan_cpu_groups(p, &max_off), base = plan_host_grads_base(n_off);
	p->host_grads = base;
	if (n_off <= base)
		return 0;
	uint64_t per = plan_host(max_off * GRAD_BYTES), total = p->total[SW_TIER_HOST];
	uint64_t left = p->budget[SW_TIER_HOST] > total ? p->budget[SW_TIER_HOST] - total : 0;
	int64_t fit = base + (int64_t)(left / per), want = n_off < SW_PLAN_HOST_GRADS_MAX ? n_off : SW_PLAN_HOST_GRADS_MAX;
	const char *e = getenv("SW_HOST_GRADS");
	if (e && atoi(e) >= 1)
		want = atoi(e) < want ? atoi(e) : want;
	int n = (int)(want < fit ? want : fit);
	if (n == base)
		return 0;
	p->host_grads = n;
	free(p->buf);
	p->buf = NULL;
	return plan_table_build(p, z);
}

static int nvme_opt_groups(const sw_plan *p)
{
	int n = 0;
	for (int g = 0; g < p->ngroups; g++)
		n += p->tier[g][SW_STATE_P32] == SW_TIER_NVME;
	return n;
}

static int plan_build_once(sw_plan *p, const sw_plan_input *in)
{
	memset(p, 0, sizeof(*p));
	p->in = *in;
	p->short_tier = SW_TIER_COUNT;
	int rc = check_input(p);
	if (rc)
		return rc;
	const sw_table *tt = in->tt;
	p->n_layers = (int)tt->cfg.n_layers;
	p->ngroups = tt->ngroups;
	p->micro_tokens = in->micro_rows * in->seq_len;
	p->n_micro = in->batch_tokens / p->micro_tokens;
	p->p16_bytes = p->act_bytes = (in->fp32 ? 4 : 2);
	p->ckpt_item = (uint64_t)p->micro_tokens * (uint64_t)tt->cfg.dim * (uint64_t)p->act_bytes;
	/* rounded up to 2048 parameters (4 KiB of bf16: chunk offsets stay aligned), at most the
	 * largest group; the executor moves exactly this (sw_exec_chunk) */
	int64_t c = (in->chunk_params + 2047) / 2048 * 2048;
	p->chunk_params = c < tt->max_group_numel ? c : tt->max_group_numel;
	p->budget[SW_TIER_GPU] = in->gpu_mem;
	p->budget[SW_TIER_HOST] = in->cpu_mem;
	p->tier = calloc((size_t)p->ngroups, sizeof(*p->tier));
	p->ckpt_tier = calloc((size_t)(p->n_layers * p->n_micro), 1);
	if (!p->tier || !p->ckpt_tier) {
		plan_why(p, "out of memory for the plan");
		return -ENOMEM;
	}
	plan_sizes z;
	plan_sizes_get(in, p->chunk_params, &z);
	if ((rc = plan_place_gpu(p, &z)) || (rc = plan_place_host(p, &z)) || (rc = plan_place_nvme(p)) ||
	    (rc = plan_table_build(p, &z)))
		return rc;
	p->speculative = plan_spec(p);
	if ((rc = plan_keep_choose(p, &z)) || (rc = plan_host_grads(p, &z)))
		return rc;
	check_invariants(p);
	plan_cost(p);
	return 0;
}

/* Why a speculative plan cannot roll back or defer every group, or NULL: one optimizer slot on
 * NVMe (--checkpoint-only) keeps no pre-step copy of what it updates in place, and the host
 * has no room to hold those groups' gradients until the norm is known. */
static const char *spec_missing(const sw_plan *p, char *buf, size_t len)
{
	if (p->in.slots == 2 || p->defer_nvme || !nvme_opt_groups(p))
		return NULL;
	char b[32];
	snprintf(buf, len, "--checkpoint-only keeps one optimizer slot on NVMe, updated in place, and "
		 "holding those groups' gradients in host memory until the norm is known needs %s "
		 "more --cpu-mem", sw_fmt_size(p->defer_short, b, sizeof(b)));
	return buf;
}

/* Clipping asked for one speculative pass: the speculative plan, unless it does not fit, has
 * a group without a rollback source, or the two-pass plan (which needs no rollback buffers, so
 * may keep more on the faster tiers) is predicted faster; then the two-pass plan, saying why. */
static int plan_build_clip(sw_plan *p, const sw_plan_input *in)
{
	int rc = plan_build_once(p, in);
	if (in->passes != 2 || !in->speculate || rc == -EINVAL)
		return rc;
	char why[sizeof(p->two_pass_why)], mbuf[sizeof(p->two_pass_why)];
	const char *miss = rc ? NULL : spec_missing(p, mbuf, sizeof(mbuf));
	double spec_s = rc || miss ? 0 : p->cost.step_s;
	char sb[32];
	if (rc && rc != -ENOSPC)
		snprintf(why, sizeof(why), "planning one-pass clipping failed (%s)", strerror(-rc));
	else if (rc)
		snprintf(why, sizeof(why), "the rollback buffers of one-pass clipping do not fit (the %s "
			 "tier would be %s short)", sw_plan_tier_label(p, p->short_tier),
			 sw_fmt_size(p->short_bytes, sb, sizeof(sb)));
	else if (miss)
		snprintf(why, sizeof(why), "%s", miss);
	sw_plan_input x = *in;
	x.speculate = 0;
	sw_plan two;
	int rc2 = plan_build_once(&two, &x);
	if (!rc && !miss && (rc2 || spec_s <= two.cost.step_s)) {
		sw_plan_free(&two);
		return 0;
	}
	if (!rc && !miss)
		snprintf(why, sizeof(why), "predicted faster than one pass (%.4g s against %.4g s a step: "
			 "one pass needs rollback buffers that push state to slower tiers)",
			 two.cost.step_s, spec_s);
	sw_plan_free(p);
	*p = two;
	snprintf(p->two_pass_why, sizeof(p->two_pass_why), "%s", why);
	return rc2;
}

/* grad_bufs 0 (train's and plan's default on a GPU): one GPU gradient buffer or two, whichever
 * is predicted faster by more than 1 % (two overlap each gradient's copy to the host with the
 * next group's backward, and take a group's gradient of room from residency); the CPU
 * backend's device keeps one. */
int sw_plan_build(sw_plan *p, const sw_plan_input *in)
{
	if (in->grad_bufs != 0)
		return plan_build_clip(p, in);
	sw_plan_input x = *in;
	x.grad_bufs = 1;
	int rc = plan_build_clip(p, &x);
	if (in->cpu_device || rc == -EINVAL)
		return rc;
	x.grad_bufs = 2;
	sw_plan two;
	int rc2 = plan_build_clip(&two, &x);
	if (rc2 || (!rc && two.cost.step_s >= 0.99 * p->cost.step_s)) {
		sw_plan_free(&two);
		return rc;
	}
	sw_plan_free(p);
	*p = two;
	return 0;
}

void sw_plan_free(sw_plan *p)
{
	free(p->tier);
	free(p->ckpt_tier);
	free(p->buf);
	free(p->keep);
	p->keep = NULL;
	p->tier = NULL;
	p->ckpt_tier = NULL;
	p->buf = NULL;
	p->nbuf = 0;
}

int sw_plan_min_budget(const sw_plan_input *in, sw_tier tier, uint64_t *bytes, char *why, int why_len)
{
	sw_plan_input x = *in;
	/* the smallest budgets are the two-pass scheme's (one-pass clipping's rollback buffers
	 * are used when they fit, sw_plan_build) */
	x.speculate = 0;
	if (x.grad_bufs == 0)
		x.grad_bufs = 1;       /* the smallest budgets are one buffer's */
	/* plan the earlier tiers with the given budgets and the later ones unbounded */
	if (tier == SW_TIER_GPU)
		x.gpu_mem = UINT64_MAX / 4;
	if (tier <= SW_TIER_HOST)
		x.cpu_mem = UINT64_MAX / 4;
	x.n_nvme = in->n_nvme > 0 ? in->n_nvme : 1;
	for (int i = 0; i < x.n_nvme; i++) {
		snprintf(x.nvme[i].path, sizeof(x.nvme[i].path), "(any)");
		x.nvme[i].capacity = UINT64_MAX / 64;
	}
	sw_plan p;
	int rc = sw_plan_build(&p, &x);
	if (rc == 0) {
		plan_sizes z;
		plan_sizes_get(in, p.chunk_params, &z);
		if (tier == SW_TIER_GPU) {
			uint64_t ws[SW_PURPOSE_COUNT];
			*bytes = sw_plan_gpu_working_set(in, ws) +
				 plan_min(plan_window_bytes(in, &z), plan_all_state_dev(&p));
		} else if (tier == SW_TIER_HOST) {
			/* the GPU placement depends on gpu_mem only: redo the host accounting */
			*bytes = plan_host_min(&p, &z);
		} else {
			*bytes = p.total[SW_TIER_NVME];
		}
	} else if (why) {
		snprintf(why, (size_t)why_len, "%s", p.why);
	}
	sw_plan_free(&p);
	return rc;
}

void sw_plan_apply(const sw_plan *p, sw_table *tt)
{
	SW_ASSERT(tt->ngroups == p->ngroups);
	for (int g = 0; g < p->ngroups; g++)
		memcpy(tt->g[g].tier, p->tier[g], sizeof(tt->g[g].tier));
}

