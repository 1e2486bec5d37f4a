/* The planner's LoRA mode: adapters and the frozen base's P16 placed under the budgets, the
 * step's traffic and time (offload/plan_lora.h, docs/planner.md "LoRA mode"). */
#include "offload/plan_lora.h"
#include "offload/plan_internal.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *target_names[SW_LORA_NTARGETS] = { "q", "k", "v", "o", "gate", "up", "down" };
static const sw_tensor_kind target_kinds[SW_LORA_NTARGETS] = {
	SW_T_WQ, SW_T_WK, SW_T_WV, SW_T_WO, SW_T_WGATE, SW_T_WUP, SW_T_WDOWN,
};
static const char *row_names[SW_LORA_ROW_COUNT] = {
	[SW_LORA_BASE_P16] = "base P16 (frozen)", [SW_LORA_AD_P32] = "adapter P32",
	[SW_LORA_AD_M] = "adapter Adam m", [SW_LORA_AD_V] = "adapter Adam v",
	[SW_LORA_AD_GRAD] = "adapter gradients", [SW_LORA_AD_P16] = "adapter P16",
	[SW_LORA_WINDOW] = "P16 prefetch window", [SW_LORA_WORKSET] = "working set",
	[SW_LORA_CKPT] = "activation checkpoints", [SW_LORA_CARRY] = "activation carry",
	[SW_LORA_STAGE] = "I/O staging", [SW_LORA_XFER] = "load staging",
	[SW_LORA_HELD] = "held for the process",
};

const char *sw_lora_row_name(sw_lora_row r) { return r < SW_LORA_ROW_COUNT ? row_names[r] : "?"; }

int sw_lora_targets_parse(const char *s, unsigned *mask, char *why, int why_len)
{
	*mask = 0;
	const char *q = s;
	while (1) {
		size_t n = strcspn(q, ",");
		int hit = -1;
		for (int i = 0; i < SW_LORA_NTARGETS; i++)
			if (strlen(target_names[i]) == n && !strncmp(q, target_names[i], n))
				hit = i;
		if (hit < 0) {
			snprintf(why, (size_t)why_len, "--lora-targets '%s': '%.*s' is not a target; use a "
				 "comma-separated subset of q,k,v,o,gate,up,down", s, (int)n, q);
			return -EINVAL;
		}
		*mask |= 1u << hit;
		if (!q[n])
			return 0;
		q += n + 1;
	}
}

static int64_t target_params(int64_t in, int64_t out, int64_t r) { return r * (in + out); }

int64_t sw_lora_layer_params(const sw_config *c, int64_t r, unsigned t)
{
	int64_t C = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
	int64_t F = c->ffn_dim;
	int64_t io[SW_LORA_NTARGETS][2] = { { C, qd }, { C, kvd }, { C, kvd }, { qd, C }, { C, F }, { C, F },
					    { F, C } };
	int64_t n = 0;
	for (int i = 0; i < SW_LORA_NTARGETS; i++)
		n += (t >> i & 1) ? target_params(io[i][0], io[i][1], r) : 0;
	return n;
}

static void lora_why(sw_plan_lora *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lora_why(sw_plan_lora *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
}

/* The rank against every targeted linear's smaller side, and the inputs the cost model divides
 * by. */
static int lora_check(sw_plan_lora *p)
{
	const sw_plan_input *in = &p->in;
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	if (in->lora_rank <= 0 || in->lora_rank > (1 << 16)) {
		lora_why(p, "--lora-rank %d is out of range; use a rank from 1 to the smallest targeted "
			 "dimension (e.g. 16)", in->lora_rank);
		return -EINVAL;
	}
	if (!in->lora_targets || in->lora_targets & ~(unsigned)SW_LORA_ALL) {
		lora_why(p, "--lora-targets mask 0x%x is empty or unknown; use q,k,v,o,gate,up,down",
			 in->lora_targets);
		return -EINVAL;
	}
	for (int i = 0; i < tt->n; i++) {
		const sw_tensor *t = &tt->t[i];
		for (int k = 0; k < SW_LORA_NTARGETS; k++) {
			if (t->kind != target_kinds[k] || !(in->lora_targets >> k & 1))
				continue;
			int64_t small = t->shape[0] < t->shape[1] ? t->shape[0] : t->shape[1];
			if (in->lora_rank > small) {
				lora_why(p, "--lora-rank %d is larger than %s_proj's smaller dimension (%lld x "
					 "%lld); use a rank of at most %lld", in->lora_rank, target_names[k],
					 (long long)t->shape[0], (long long)t->shape[1], (long long)small);
				return -EINVAL;
			}
		}
	}
	if (in->prefetch != SW_LORA_WINDOW_BUFFERS) {
		lora_why(p, "--prefetch %d: the LoRA executor's P16 window has %d buffers (its reads run "
			 "ahead in pinned stages instead); leave --prefetch out", in->prefetch,
			 SW_LORA_WINDOW_BUFFERS);
		return -EINVAL;
	}
	int64_t T = in->micro_rows * in->seq_len;
	const sw_plan_rates *r = &in->rates;
	if (c->dim <= 0 || c->n_layers <= 0 || in->seq_len <= 0 || in->micro_rows <= 0 ||
	    in->batch_tokens <= 0 || in->batch_tokens % T || in->chunk_params <= 0 ||
	    !(r->gemm_tflops > 0 && r->h2d_gbs > 0 && r->d2h_gbs > 0 && r->nvme_read_gbs > 0 &&
	      r->nvme_write_gbs > 0 && r->adam_params_per_s > 0) || in->n_nvme < 0 ||
	    in->n_nvme > SW_PLAN_MAX_NVME) {
		lora_why(p, "the shape, --batch-tokens (a multiple of --micro-batch x --seq-len), "
			 "--chunk, a rate or the --nvme paths is out of range");
		return -EINVAL;
	}
	return 0;
}

/* ---- placement ------------------------------------------------------------------------------ */

static uint64_t numel(const sw_plan_lora *p, int g) { return (uint64_t)p->in.tt->g[g].numel; }
static int is_layer(const sw_plan_lora *p, int g) { return g >= 1 && g <= p->n_layers; }
static uint64_t base_dev(const sw_plan_lora *p, int g) { return plan_dev(numel(p, g) * (uint64_t)p->p16_bytes); }
static uint64_t base_host(const sw_plan_lora *p, int g) { return plan_host(numel(p, g) * (uint64_t)p->p16_bytes); }
/* one layer's adapters: P32, m, v, gradient (4 B each) and P16, one buffer per state */
static uint64_t ad_dev(const sw_plan_lora *p)
{
	uint64_t n = (uint64_t)p->adapter_layer;
	return 4 * plan_dev(n * 4) + plan_dev(n * (uint64_t)p->p16_bytes);
}
static uint64_t ad_host(const sw_plan_lora *p)
{
	uint64_t n = (uint64_t)p->adapter_layer;
	return 4 * plan_host(n * 4) + plan_host(n * (uint64_t)p->p16_bytes);
}

static uint64_t workset(const plan_sizes *z)
{
	return z->ws[SW_PURPOSE_ACT] + z->ws[SW_PURPOSE_MB_IO] + z->ws[SW_PURPOSE_HEAD] +
	       z->ws[SW_PURPOSE_WORKSPACE] + z->ws[SW_PURPOSE_RESERVE];
}

static int short_of(sw_plan_lora *p, sw_tier t, uint64_t need, uint64_t have, const char *what,
		    const char *advice)
{
	char b[3][32];
	p->short_tier = t;
	p->short_bytes = need - have;
	lora_why(p, "%s %s is %s short of the %s LoRA needs there (%s); %s",
		 t == SW_TIER_GPU ? "--gpu-mem" : t == SW_TIER_HOST ? "--cpu-mem" : "--nvme capacity",
		 sw_fmt_size(have, b[0], 32), sw_fmt_size(p->short_bytes, b[1], 32),
		 sw_fmt_size(need, b[2], 32), what, advice);
	return -ENOSPC;
}

/* Working set and window first; then the carry (off the GPU it crosses PCIe through every
 * layer), the adapters layer by layer from the bottom, base groups from the bottom, checkpoints (top layers first) with what is left. */
static int place_gpu(sw_plan_lora *p, const plan_sizes *z)
{
	uint64_t ws = workset(z), window = plan_window_bytes(&p->in, z), all = 0;
	for (int g = 0; g < p->ngroups; g++)
		all += base_dev(p, g) + (is_layer(p, g) ? ad_dev(p) : 0);
	uint64_t need = ws + plan_min(window, all);
	if (p->in.gpu_mem < need)
		return short_of(p, SW_TIER_GPU, need, p->in.gpu_mem, "working set and P16 prefetch window",
				"raise --gpu-mem, or lower --seq-len or --micro-batch");
	uint64_t avail = p->in.gpu_mem - ws;
	p->streaming = all > avail;
	avail -= p->streaming ? window : all;
	p->bytes[SW_TIER_GPU][SW_LORA_WORKSET] = ws;
	p->bytes[SW_TIER_GPU][SW_LORA_WINDOW] = p->streaming ? window : 0;
	for (int g = 0; g < p->ngroups; g++) {
		p->base_tier[g] = p->streaming ? SW_TIER_HOST : SW_TIER_GPU;
		p->adapter_tier[g] = p->base_tier[g];
	}
	uint64_t carry = plan_dev(z->carry);
	if (carry <= avail) {
		p->carry_on_gpu = 1;
		avail -= carry;
	}
	for (int g = 1; p->streaming && g <= p->n_layers; g++)
		if (ad_dev(p) <= avail) {
			p->adapter_tier[g] = SW_TIER_GPU;
			avail -= ad_dev(p);
		}
	for (int g = 0; p->streaming && g < p->ngroups; g++)
		if (base_dev(p, g) <= avail) {
			p->base_tier[g] = SW_TIER_GPU;
			avail -= base_dev(p, g);
		}
	int64_t n = p->n_layers * p->n_micro;
	p->ckpt_count[SW_TIER_GPU] = (int64_t)plan_min(avail / plan_dev(p->ckpt_item), (uint64_t)n);
	return 0;
}

/* What the host must hold (host adapters, the carry off the GPU, load staging, the process's
 * share); the rest of it caches base P16 (bottom groups first), then checkpoints; NVMe takes
 * what does not fit, with pinned staging for each stream that spills. */
static int place_host(sw_plan_lora *p, const plan_sizes *z)
{
	uint64_t must = plan_host_held(&p->in) + z->xfer + (p->carry_on_gpu ? 0 : plan_host(z->carry));
	for (int g = 1; g <= p->n_layers; g++)
		must += p->adapter_tier[g] == SW_TIER_HOST ? ad_host(p) : 0;
	uint64_t items = 0, item = plan_host(p->ckpt_item);
	int64_t ck_off = p->n_layers * p->n_micro - p->ckpt_count[SW_TIER_GPU];
	for (int g = 0; g < p->ngroups; g++)
		items += p->base_tier[g] != SW_TIER_GPU ? base_host(p, g) : 0;
	items += (uint64_t)ck_off * item;
	uint64_t st_p16 = SW_PLAN_P16_STAGES * z->stage_p16, st_ck = (uint64_t)z->ckpt_slots * z->stage_ckpt;
	uint64_t stage = items + must <= p->in.cpu_mem ? 0 : st_p16 + st_ck;
	uint64_t need = must + (stage ? plan_min(items, stage) : items);
	if (p->in.cpu_mem < need)
		return short_of(p, SW_TIER_HOST, need, p->in.cpu_mem,
				"adapters off the GPU, carry, staging and the process",
				"raise --cpu-mem or --gpu-mem");
	uint64_t room = p->in.cpu_mem - must - stage, used = 0;
	int spill_p16 = 0;
	for (int g = 0; g < p->ngroups; g++) {
		if (p->base_tier[g] == SW_TIER_GPU)
			continue;
		int fits = used + base_host(p, g) <= room;
		p->base_tier[g] = fits ? SW_TIER_HOST : SW_TIER_NVME;
		used += fits ? base_host(p, g) : 0;
		spill_p16 |= !fits;
	}
	int64_t on_host = (int64_t)plan_min((room - used) / item, (uint64_t)ck_off);
	p->ckpt_count[SW_TIER_HOST] = on_host;
	p->ckpt_count[SW_TIER_NVME] = ck_off - on_host;
	p->bytes[SW_TIER_HOST][SW_LORA_STAGE] = (spill_p16 ? st_p16 : 0) +
						(p->ckpt_count[SW_TIER_NVME] ? st_ck : 0);
	p->bytes[SW_TIER_HOST][SW_LORA_XFER] = z->xfer;
	p->bytes[SW_TIER_HOST][SW_LORA_HELD] = plan_host_held(&p->in);
	p->bytes[SW_TIER_HOST][SW_LORA_CARRY] = p->carry_on_gpu ? 0 : plan_host(z->carry);
	p->bytes[SW_TIER_GPU][SW_LORA_CARRY] = p->carry_on_gpu ? plan_dev(z->carry) : 0;
	return 0;
}

/* The state rows and checkpoints by tier, and NVMe against its capacity (4 KiB extents). */
static int account(sw_plan_lora *p)
{
	uint64_t na = (uint64_t)p->adapter_layer, pb = (uint64_t)p->p16_bytes;
	for (int g = 0; g < p->ngroups; g++) {
		sw_tier t = p->base_tier[g];
		p->bytes[t][SW_LORA_BASE_P16] += t == SW_TIER_GPU ? base_dev(p, g) : base_host(p, g);
		p->payload[SW_LORA_BASE_P16] += numel(p, g) * pb;
		if (!is_layer(p, g))
			continue;
		sw_tier a = p->adapter_tier[g];
		for (int r = SW_LORA_AD_P32; r <= SW_LORA_AD_GRAD; r++) {
			p->bytes[a][r] += a == SW_TIER_GPU ? plan_dev(na * 4) : plan_host(na * 4);
			p->payload[r] += na * 4;
		}
		p->bytes[a][SW_LORA_AD_P16] += a == SW_TIER_GPU ? plan_dev(na * pb) : plan_host(na * pb);
		p->payload[SW_LORA_AD_P16] += na * pb;
		p->gpu_adapter_layers += a == SW_TIER_GPU;
	}
	p->bytes[SW_TIER_GPU][SW_LORA_CKPT] = (uint64_t)p->ckpt_count[SW_TIER_GPU] * plan_dev(p->ckpt_item);
	for (int t = SW_TIER_HOST; t <= SW_TIER_NVME; t++)
		p->bytes[t][SW_LORA_CKPT] = (uint64_t)p->ckpt_count[t] * plan_host(p->ckpt_item);
	for (int t = 0; t < SW_TIER_COUNT; t++)
		for (int r = 0; r < SW_LORA_ROW_COUNT; r++)
			p->total[t] += p->bytes[t][r];
	for (int g = 0; g < p->ngroups; g++)
		p->resident_groups += p->base_tier[g] == SW_TIER_GPU;
	uint64_t small = UINT64_MAX;
	for (int i = 0; i < p->in.n_nvme; i++)
		small = p->in.nvme[i].capacity < small ? p->in.nvme[i].capacity : small;
	p->budget[SW_TIER_NVME] = p->in.n_nvme ? (small > UINT64_MAX / (uint64_t)p->in.n_nvme ? UINT64_MAX :
						  small * (uint64_t)p->in.n_nvme) : 0;
	if (p->total[SW_TIER_NVME] > p->budget[SW_TIER_NVME])
		return short_of(p, SW_TIER_NVME, p->total[SW_TIER_NVME], p->budget[SW_TIER_NVME],
				"base P16 and activation spill",
				p->in.n_nvme ? "add --nvme paths or capacity, or raise --cpu-mem" :
				"add --nvme PATH:SIZE, or raise --cpu-mem");
	for (int t = 0; t < SW_TIER_NVME; t++)
		SW_ASSERT(p->total[t] <= p->budget[t]);
	return 0;
}

/* ---- the cost model ------------------------------------------------------------------------- */

int sw_plan_lora_uses(const sw_table *tt, const sw_tier *tier, int backward, sw_lora_use *u)
{
	int n = 0, L = (int)tt->cfg.n_layers, H = tt->ngroups - 1;
	int order[2 * tt->ngroups + 1], no = 0;
	for (int g = 0; g <= L; g++)                  /* forward: the embedding, the layers */
		order[no++] = g;
	order[no++] = H;                              /* the head (and, tied, the embedding) */
	if (tt->cfg.tie_embeddings)
		order[no++] = 0;
	for (int l = L; l >= 1 && backward; l--)      /* backward, top-down */
		order[no++] = l;
	int last[2] = { -1, -1 };                     /* each slot's latest use */
	for (int i = 0; i < no; i++) {
		int g = order[i];
		if (tier[g] == SW_TIER_GPU)
			continue;
		sw_lora_use *x = &u[n];
		if (n && u[n - 1].g == g) {           /* the same group again: the same slot */
			*x = (sw_lora_use){ g, u[n - 1].slot, 0, n - 1 };
		} else {
			int s = n ? 1 - u[n - 1].slot : 0;
			*x = (sw_lora_use){ g, s, 1, last[s] };
			x->fetch = last[s] < 0 || u[last[s]].g != g;
		}
		last[x->slot] = n++;
	}
	return n;
}

static void lora_cost(sw_plan_lora *p)
{
	const sw_plan_input *in = &p->in;
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	sw_plan_lora_cost *k = &p->cost;
	memset(k, 0, sizeof(*k));
	double tokens = (double)in->batch_tokens;
	int64_t n_gemm, n_layer;
	plan_gemm_params(tt, p->n_layers, &n_gemm, &n_layer);
	double qd = (double)(c->n_heads * c->head_dim), L = (double)p->n_layers, S = (double)in->seq_len;
	k->flops_fwd = 2.0 * (double)n_gemm * tokens;
	k->flops_bwd = 2.0 * (double)n_gemm * tokens;
	k->flops_recompute = 2.0 * (double)n_layer * tokens;
	k->flops_attn = 8.0 * L * tokens * S * qd;
	k->flops_adapter = 8.0 * (double)p->adapter_params * tokens;
	uint64_t pb = (uint64_t)p->p16_bytes, na = (uint64_t)p->adapter_layer;
	sw_lora_use use[2 * p->ngroups + 1];
	int nuse = sw_plan_lora_uses(tt, p->base_tier, 1, use);
	for (int i = 0; i < nuse; i++) {   /* the base's fetches, as the executor makes them */
		uint64_t b = use[i].fetch ? numel(p, use[i].g) * pb : 0;
		k->h2d_base += b;
		k->nvme_read += p->base_tier[use[i].g] == SW_TIER_NVME ? b : 0;
	}
	for (int g = 0; g < p->ngroups; g++) {
		if (is_layer(p, g) && p->adapter_tier[g] == SW_TIER_HOST) {
			k->h2d_adapter += 2 * na * pb;
			k->d2h_adapter += na * 4;
			k->adam_params += (int64_t)na;
		}
	}
	uint64_t item = p->ckpt_item;
	uint64_t ck_off = (uint64_t)(p->ckpt_count[SW_TIER_HOST] + p->ckpt_count[SW_TIER_NVME]);
	/* a host carry moves 2L + 1 times each way per step (lora_step.c): H2D L times in the
	 * forward, once for the head, L times in the backward; D2H L + 1 times in the forward (the
	 * embedding's output too), once from the head, L - 1 times in the backward (no gradient
	 * flows into the frozen embedding) */
	uint64_t carry = (uint64_t)(2 * p->n_layers + 1) * (uint64_t)in->batch_tokens * (uint64_t)c->dim * pb;
	k->h2d_act = ck_off * item + (p->carry_on_gpu ? 0 : carry);
	k->d2h_act = ck_off * item + (p->carry_on_gpu ? 0 : carry);
	k->nvme_read += (uint64_t)p->ckpt_count[SW_TIER_NVME] * item;
	k->nvme_write = (uint64_t)p->ckpt_count[SW_TIER_NVME] * item;
	k->h2d = k->h2d_base + k->h2d_adapter + k->h2d_act;
	k->d2h = k->d2h_adapter + k->d2h_act;
	const sw_plan_rates *r = &in->rates;
	double th = (double)k->h2d / (r->h2d_gbs * 1e9), td = (double)k->d2h / (r->d2h_gbs * 1e9);
	k->t[SW_RES_COMPUTE] = (k->flops_fwd + k->flops_bwd + k->flops_recompute + k->flops_attn +
				k->flops_adapter) / (r->gemm_tflops * 1e12);
	k->t[SW_RES_PCIE] = th > td ? th : td;
	k->t[SW_RES_NVME] = (double)k->nvme_read / (r->nvme_read_gbs * 1e9) +
			    (double)k->nvme_write / (r->nvme_write_gbs * 1e9);
	double adam = (double)k->adam_params / r->adam_params_per_s;
	/* with clipping the host adapters' updates wait for the norm, after the backward */
	k->t[SW_RES_CPU_ADAM] = in->passes == 2 ? 0 : adam;
	k->t_after = in->passes == 2 ? adam : 0;
	k->bottleneck = SW_RES_COMPUTE;
	for (int i = 1; i < SW_RES_COUNT; i++)
		if (k->t[i] > k->t[k->bottleneck])
			k->bottleneck = (sw_plan_resource)i;
	k->step_s = k->t[k->bottleneck] + k->t_after;
	k->tokens_per_s = tokens / k->step_s;
	k->tflops = (k->flops_fwd + k->flops_bwd + 0.75 * k->flops_attn + 0.75 * k->flops_adapter) /
		    k->step_s / 1e12;
}

int sw_plan_lora_build(sw_plan_lora *p, const sw_plan_input *in)
{
	memset(p, 0, sizeof(*p));
	p->in = *in;
	p->short_tier = SW_TIER_COUNT;
	if (!p->in.lora_targets)
		p->in.lora_targets = SW_LORA_ALL;
	int rc = lora_check(p);
	if (rc)
		return rc;
	const sw_table *tt = in->tt;
	p->n_layers = (int)tt->cfg.n_layers;
	p->ngroups = tt->ngroups;
	p->p16_bytes = in->fp32 ? 4 : 2;
	int64_t T = in->micro_rows * in->seq_len;
	p->n_micro = in->batch_tokens / T;
	p->ckpt_item = (uint64_t)T * (uint64_t)tt->cfg.dim * (uint64_t)p->p16_bytes;
	for (int g = 0; g < p->ngroups; g++)
		p->base_params += tt->g[g].numel;
	for (int i = 0; i < tt->n; i++)
		for (int k = 0; k < SW_LORA_NTARGETS; k++)
			if (tt->t[i].kind == target_kinds[k] && (p->in.lora_targets >> k & 1) && tt->t[i].group == 1)
				p->adapter_layer += target_params(tt->t[i].shape[1], tt->t[i].shape[0],
								  in->lora_rank);
	p->adapter_params = p->adapter_layer * p->n_layers;
	p->budget[SW_TIER_GPU] = in->gpu_mem;
	p->budget[SW_TIER_HOST] = in->cpu_mem;
	p->base_tier = calloc((size_t)p->ngroups, sizeof(sw_tier));
	p->adapter_tier = calloc((size_t)p->ngroups, sizeof(sw_tier));
	if (!p->base_tier || !p->adapter_tier) {
		lora_why(p, "out of memory for the plan");
		return -ENOMEM;
	}
	int64_t c = (in->chunk_params + 2047) / 2048 * 2048;
	plan_sizes z;
	p->chunk_params = c < tt->max_group_numel ? c : tt->max_group_numel;
	plan_sizes_get(in, p->chunk_params, &z);
	z.stage_p16 = plan_host(sw_plan_lora_stage((uint64_t)p->chunk_params * (uint64_t)p->p16_bytes));
	p->ckpt_slots = z.ckpt_slots;
	if ((rc = place_gpu(p, &z)) || (rc = place_host(p, &z)) || (rc = account(p)))
		return rc;
	lora_cost(p);
	return 0;
}

uint64_t sw_plan_lora_stripe(uint64_t chunk_bytes)
{
	uint64_t c = (chunk_bytes + 4095) / 4096 * 4096;
	return c < (1ull << 20) ? c : 1ull << 20;
}

uint64_t sw_plan_lora_stage(uint64_t chunk_bytes)
{
	uint64_t S = sw_plan_lora_stripe(chunk_bytes);
	return (chunk_bytes + S - 1) / S * S;
}

void sw_plan_lora_free(sw_plan_lora *p)
{
	free(p->base_tier);
	free(p->adapter_tier);
	p->base_tier = p->adapter_tier = NULL;
}

int64_t sw_plan_lora_max_layers(const sw_plan_input *in, int64_t *params)
{
	int64_t lo = 0, hi = 1 << 16;
	*params = 0;
	while (lo < hi) {
		int64_t mid = (lo + hi + 1) / 2;
		sw_config cfg = in->tt->cfg;
		cfg.n_layers = mid;
		sw_table tt;
		if (sw_table_build(&tt, &cfg))
			return lo;
		sw_plan_input x = *in;
		x.tt = &tt;
		sw_plan_lora p;
		int ok = sw_plan_lora_build(&p, &x) == 0;
		if (ok && mid > lo)
			*params = p.base_params;
		sw_plan_lora_free(&p);
		sw_table_free(&tt);
		if (ok)
			lo = mid;
		else
			hi = mid - 1;
	}
	if (lo) {
		sw_config cfg = in->tt->cfg;
		cfg.n_layers = lo;
		sw_table tt;
		if (!sw_table_build(&tt, &cfg)) {
			*params = 0;
			for (int g = 0; g < tt.ngroups; g++)
				*params += tt.g[g].numel;
			sw_table_free(&tt);
		}
	}
	return lo;
}
