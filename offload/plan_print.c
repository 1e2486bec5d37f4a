/* Printing a plan: the placement table, checkpoints, memory by tier and purpose (sums of the
 * buffer table), disk per consistency mode and the step-time prediction. */
#include "offload/plan_internal.h"
#include "core/cli.h"

#include <stdio.h>
#include <string.h>

/* ---- printing ----------------------------------------------------------------------------- */

const char *plan_fmt_count(double n, char *buf, int len)
{
	if (n >= 1e9)
		snprintf(buf, (size_t)len, "%.3f B", n / 1e9);
	else if (n >= 1e6)
		snprintf(buf, (size_t)len, "%.3f M", n / 1e6);
	else
		snprintf(buf, (size_t)len, "%.0f", n);
	return buf;
}

static const char *group_name(const sw_plan *p, int g, char *buf, int len)
{
	if (g == 0)
		snprintf(buf, (size_t)len, "embed");
	else if (g == p->ngroups - 1)
		snprintf(buf, (size_t)len, "head");
	else
		snprintf(buf, (size_t)len, "layer %d", g - 1);
	return buf;
}

static const char *group_why(const sw_plan *p, int g)
{
	static char buf[160];
	const char *d = sw_plan_tier_label(p, SW_TIER_GPU);
	sw_tier p16 = p->tier[g][SW_STATE_P16], opt = p->tier[g][SW_STATE_P32];
	if (opt == SW_TIER_GPU)
		snprintf(buf, sizeof(buf), p->streaming ? "fits on the %s after the working set: %s AdamW, "
			 "no transfers" : "the whole model fits on the %s: %s AdamW, no transfers", d, d);
	else if (p16 == SW_TIER_HOST && opt == SW_TIER_HOST)
		snprintf(buf, sizeof(buf), "%s full: P16 streamed from the host cache, CPU AdamW in host "
			 "memory", d);
	else if (p16 == SW_TIER_HOST)
		return "host holds its P16 cache; P32/m/v read ahead and written behind on NVMe";
	else if (opt == SW_TIER_HOST)
		return "P16 streamed from NVMe (host cache full); CPU AdamW in host memory";
	else
		return "host full: P16 and P32/m/v streamed from NVMe";
	return buf;
}

static void print_groups(const sw_plan *p, FILE *f)
{
	fprintf(f, "\nplacement (P16 compute copy, P32 master, Adam m/v, where the optimizer reads the gradient):\n");
	fprintf(f, "  %-16s %12s  %-6s %-6s %-6s %-6s %-6s  %s\n", "groups", "parameters", "P16", "P32",
		"m", "v", "grad", "why");
	for (int g = 0; g < p->ngroups;) {
		int e = g + 1;
		int is_layer = g >= 1 && g <= p->n_layers;
		while (is_layer && e <= p->n_layers && !memcmp(p->tier[e], p->tier[g], sizeof(p->tier[g])))
			e++;
		uint64_t n = 0;
		for (int i = g; i < e; i++)
			n += (uint64_t)p->in.tt->g[i].numel;
		char name[48];
		if (e - g > 1)
			snprintf(name, sizeof(name), "layers %d-%d", g - 1, e - 2);
		else
			group_name(p, g, name, sizeof(name));
		char params[32];
		plan_fmt_count((double)n, params, sizeof(params));
		fprintf(f, "  %-16s %12s ", name, params);
		for (int s = 0; s < SW_STATE_COUNT; s++)
			fprintf(f, " %-6s", sw_plan_tier_label(p, p->tier[g][s]));
		fprintf(f, "  %s\n", group_why(p, g));
		g = e;
	}
}

static void print_ckpts(const sw_plan *p, FILE *f)
{
	char b[32];
	fprintf(f, "\nactivation checkpoints: every layer input, %d layers x %lld micro-batches, %s each:\n",
		p->n_layers, (long long)p->n_micro, sw_fmt_size(p->ckpt_item, b, 32));
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		if (!p->ckpt_count[t])
			continue;
		int lo = -1, hi = -1;
		for (int l = 0; l < p->n_layers; l++)
			for (int64_t m = 0; m < p->n_micro; m++)
				if (sw_plan_ckpt_tier(p, l, m) == (sw_tier)t) {
					if (lo < 0)
						lo = l;
					hi = l;
				}
		static const char *why[SW_TIER_COUNT] = {
			"room left on the compute device: no transfer at all",
			"copied out in forward, back in backward",
			"host full: spilled, bottom layers first (longest until backward needs them)",
		};
		fprintf(f, "  %-6s %8lld (%s, layers %d-%d): %s\n", sw_plan_tier_label(p, (sw_tier)t), (long long)p->ckpt_count[t],
			sw_fmt_size((uint64_t)p->ckpt_count[t] * p->ckpt_item, b, 32), lo, hi, why[t]);
	}
}

static const char *purpose_why(const sw_plan *p, sw_tier t, int u)
{
	static char buf[160];
	char n[32];
	switch (u) {
	case SW_PURPOSE_WINDOW:
		snprintf(buf, sizeof(buf), "%d buffers of the largest group (%s params)",
			 p->in.prefetch, plan_fmt_count((double)p->in.tt->max_group_numel, n, 32));
		return buf;
	case SW_PURPOSE_GRAD:
		if (t == SW_TIER_GPU)
			return "fp32, accumulated over the micro-batches of one group";
		snprintf(buf, sizeof(buf), "pinned, %d: %s", p->host_grads,
			 p->host_grads > SW_PLAN_HOST_GRADS ? "updates wait here while CPU AdamW lags the "
			 "backward (host memory left over)" : "one group updated by the CPU while the next arrives");
		return buf;
	case SW_PURPOSE_TIED_GRAD: return "head's share of the embedding gradient, kept until its end";
	case SW_PURPOSE_ACT:
		snprintf(buf, sizeof(buf), "one micro-batch (%lld tokens) through one layer, recompute + backward",
			 (long long)p->micro_tokens);
		return buf;
	case SW_PURPOSE_MB_IO: return "x / dx / checkpoint of one micro-batch, double-buffered";
	case SW_PURPOSE_HEAD:
		snprintf(buf, sizeof(buf), "logits in vocab chunks of %lld",
			 (long long)plan_min((uint64_t)p->in.vocab_chunk, (uint64_t)p->in.tt->cfg.vocab));
		return buf;
	case SW_PURPOSE_WORKSPACE: return "GEMM workspace";
	case SW_PURPOSE_RESERVE:
		return t == SW_TIER_NVME ? "the data files' rounding to whole stripe units per path" :
		       t == SW_TIER_HOST ? "held for the process's own host memory after start-up" :
		       p->in.cpu_device ? "the CPU backend's op scratch for these shapes" : "--gpu-reserve";
	case SW_PURPOSE_CARRY:
		snprintf(buf, sizeof(buf), "hidden state between layers, all %lld micro-batches%s",
			 (long long)p->n_micro, t != SW_TIER_HOST ? "" : p->in.cpu_device ?
			 " (no room on the device)" : " (no room on the GPU)");
		return buf;
	case SW_PURPOSE_CKPT: return "layer inputs, see below";
	case SW_PURPOSE_STAGE_P16:
	case SW_PURPOSE_STAGE_OPT:
		snprintf(buf, sizeof(buf), "pinned, %d buffers of one chunk (%s params): read-ahead, write-behind",
			 u == SW_PURPOSE_STAGE_P16 ? SW_PLAN_P16_STAGES : p->in.opt_sets,
			 plan_fmt_count((double)p->chunk_params, n, 32));
		return buf;
	case SW_PURPOSE_STAGE_CKPT:
		snprintf(buf, sizeof(buf), "pinned, %d checkpoints on their way to / from NVMe",
			 (int)plan_min(2 * (uint64_t)p->in.io_depth, SW_PLAN_CKPT_SLOTS));
		return buf;
	case SW_PURPOSE_XFER: return "pinned, one chunk of fp32: model in, weights and optimizer state out";
	case SW_PURPOSE_HELD_GRAD:
		return t == SW_TIER_GPU ? "one-pass clipping: resident groups' fp32 gradients, their AdamW after the norm"
					: "one-pass clipping, one slot: NVMe groups' gradients, their AdamW after the norm";
	case SW_PURPOSE_KEEP: return "layers' forward intermediates kept for the backward, see below";
	case SW_PURPOSE_STATE_B:
		return "one-pass clipping: P32/m/v written by the update, swapped in at the step's end";
	default:
		break;
	}
	if (u <= SW_PURPOSE_V) {
		if (t == SW_TIER_GPU)
			return "resident groups";
		if (t == SW_TIER_HOST)
			return u == SW_PURPOSE_P16 ? "P16 cache of streamed groups" : "CPU AdamW state in memory";
		if (u == SW_PURPOSE_P16)
			return "one copy: rounded from P32 whenever state is loaded";
		snprintf(buf, sizeof(buf), "%d slot%s", p->in.slots, p->in.slots > 1 ? "s" : "");
		return buf;
	}
	return "";
}

/* How clipping runs (docs/planner.md "Clipping"): one speculative pass with each tier's
 * rollback source, or two passes and why. */
static void print_clipping(const sw_plan *p, FILE *f)
{
	const sw_plan_input *in = &p->in;
	if (in->passes != 2)
		return;
	char b[2][32];
	if (!p->speculative) {
		fprintf(f, "\nclipping: two backward passes every step (the first sums the norm)%s%s%s\n",
			p->two_pass_why[0] ? ": " : "", p->two_pass_why,
			p->two_pass_why[0] ? "" : in->speculate ? "" : " (asked for: SW_CLIP_PASSES=2)");
		return;
	}
	fprintf(f, "\nclipping: one speculative backward pass (updates as gradients complete, the norm "
		"checked at the end; a step that needs clipping is rolled back and redone). Rollback:\n");
	int n[SW_TIER_COUNT] = { 0 };
	for (int g = 0; g < p->ngroups; g++)
		n[p->tier[g][SW_STATE_P32]]++;
	if (n[SW_TIER_GPU])
		fprintf(f, "  %-6s %3d group%s: gradients held to the end of the backward (%s), %s AdamW "
			"after the norm\n", sw_plan_tier_label(p, SW_TIER_GPU), n[SW_TIER_GPU],
			n[SW_TIER_GPU] > 1 ? "s" : "",
			sw_fmt_size(p->bytes[SW_TIER_GPU][SW_PURPOSE_HELD_GRAD], b[0], 32),
			sw_plan_tier_label(p, SW_TIER_GPU));
	if (n[SW_TIER_HOST])
		fprintf(f, "  %-6s %3d group%s: the update writes a second P32/m/v set (%s), swapped in "
			"when the step stands\n", "host", n[SW_TIER_HOST], n[SW_TIER_HOST] > 1 ? "s" : "",
			sw_fmt_size(p->bytes[SW_TIER_HOST][SW_PURPOSE_STATE_B], b[1], 32));
	if (n[SW_TIER_NVME] && !p->defer_nvme)
		fprintf(f, "  %-6s %3d group%s: the other slot keeps the pre-step P32/m/v (no extra "
			"bytes)\n", "NVMe", n[SW_TIER_NVME], n[SW_TIER_NVME] > 1 ? "s" : "");
	if (n[SW_TIER_NVME] && p->defer_nvme)
		fprintf(f, "  %-6s %3d group%s (one slot): gradients held in pinned host memory (%s), "
			"CPU AdamW after the norm, %.4g s after the backward\n", "NVMe", n[SW_TIER_NVME],
			n[SW_TIER_NVME] > 1 ? "s" : "",
			sw_fmt_size(p->bytes[SW_TIER_HOST][SW_PURPOSE_HELD_GRAD], b[0], 32), p->cost.t_after);
	fprintf(f, "  P16 off the %s is rounded again from the kept P32 on a rollback\n",
		sw_plan_tier_label(p, SW_TIER_GPU));
}

/* A resource's name as printed: "device compute" on the CPU backend. */
static const char *res_label(const sw_plan *p, sw_plan_resource r)
{
	return r == SW_RES_COMPUTE && p->in.cpu_device ? "device compute" : sw_plan_resource_name(r);
}

/* A speculative plan's redone step, beside the step that is not redone. */
static void print_redo(const sw_plan *p, FILE *f)
{
	if (!p->speculative)
		return;
	const sw_plan_cost *d = &p->redo;
	fprintf(f, "redone step (the norm needs clipping: rollback, then a second backward pass "
		"with its updates): %.4g s, bound by %s (%s %.4g s, %s %.4g s, %s %.4g s, %s "
		"%.4g s)\n", d->step_s, res_label(p, d->bottleneck), res_label(p, SW_RES_COMPUTE),
		d->t[SW_RES_COMPUTE], sw_plan_resource_name(SW_RES_PCIE), d->t[SW_RES_PCIE],
		sw_plan_resource_name(SW_RES_NVME), d->t[SW_RES_NVME],
		sw_plan_resource_name(SW_RES_CPU_ADAM), d->t[SW_RES_CPU_ADAM]);
	fprintf(f, "two passes every step: %.4g s; one pass pays while clipping fires on fewer "
		"than %.1f %% of steps (train switches to two passes above that, by the last %d "
		"steps)\n", p->two.step_s, 100.0 * sw_plan_clip_break_even(p), SW_CLIP_WINDOW);
}

void sw_plan_print(const sw_plan *p, FILE *f)
{
	const sw_plan_input *in = &p->in;
	const sw_config *c = &in->tt->cfg;
	char b[8][32];
	fprintf(f, "model: %s, %s parameters: %d layers, dim %lld, heads %lld (kv %lld, head_dim %lld), "
		"ffn %lld, vocab %lld%s\n", c->model_type, plan_fmt_count((double)in->tt->total, b[7], 32), p->n_layers,
		(long long)c->dim, (long long)c->n_heads, (long long)c->n_kv_heads, (long long)c->head_dim,
		(long long)c->ffn_dim, (long long)c->vocab, c->tie_embeddings ? ", tied embeddings" : "");
	fprintf(f, "step: %lld tokens = %lld micro-batches of %lld x %lld tokens; %s compute (P16 %d B/param)\n",
		(long long)in->batch_tokens, (long long)p->n_micro, (long long)in->micro_rows,
		(long long)in->seq_len, in->fp32 ? "fp32" : "bf16", p->p16_bytes);
	fprintf(f, "state: %s (P16 %s, P32 %s, m %s, v %s)\n",
		sw_fmt_size((uint64_t)in->tt->total * (uint64_t)(p->p16_bytes + OPT_BYTES), b[0], 32),
		sw_fmt_size((uint64_t)in->tt->total * (uint64_t)p->p16_bytes, b[1], 32),
		sw_fmt_size((uint64_t)in->tt->total * 4, b[2], 32), b[2], b[2]);
	print_groups(p, f);
	print_ckpts(p, f);
	plan_keep_print(p, f);

	fprintf(f, "\nmemory by tier and purpose (sums of the buffer table: what the executor allocates, "
		"and what is held back):\n  %-5s %-26s %12s  %s\n", "tier", "purpose", "MiB", "why");
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		for (int u = 0; u < SW_PURPOSE_COUNT; u++) {
			if (!p->bytes[t][u])
				continue;
			fprintf(f, "  %-5s %-26s %12.1f  %s\n", sw_plan_tier_label(p, (sw_tier)t),
				t == SW_TIER_NVME && u == SW_PURPOSE_RESERVE ? "stripe rounding" :
				sw_plan_purpose_name((sw_plan_purpose)u),
				(double)p->bytes[t][u] / 1048576.0, purpose_why(p, (sw_tier)t, u));
		}
		fprintf(f, "  %-5s %-26s %12.1f  of %s budget (%.1f%%)\n", sw_plan_tier_label(p, (sw_tier)t), "total",
			(double)p->total[t] / 1048576.0, sw_fmt_size(p->budget[t], b[0], 32),
			p->budget[t] ? 100.0 * (double)p->total[t] / (double)p->budget[t] : 0.0);
	}
	for (int i = 0; i < in->n_nvme; i++)
		fprintf(f, "  NVMe  %-26s %12.1f  of %s\n", in->nvme[i].path,
			(double)p->nvme_path_bytes[i] / 1048576.0, sw_fmt_size(in->nvme[i].capacity, b[0], 32));

	fprintf(f, "\ndisk (NVMe tier) per consistency mode:\n");
	fprintf(f, "  two slots (a step writes the other slot; the previous state stays) %12s%s\n", sw_fmt_size(p->disk_bytes[1], b[0], 32),
		in->slots == 2 ? "   <- this plan" : "");
	fprintf(f, "  one slot, checkpoint-only consistency                             %12s%s\n", sw_fmt_size(p->disk_bytes[0], b[0], 32),
		in->slots == 1 ? "   <- this plan" : "");
	sw_plan_disk_print(p, f);

	print_clipping(p, f);
	const sw_plan_cost *k = &p->cost;
	const sw_plan_rates *r = &in->rates;
	int passes = p->speculative ? 1 : in->passes;
	fprintf(f, "\nstep time per resource:\n");
	char stall[96] = "";
	if (k->t_grad_stall > 0)
		snprintf(stall, sizeof(stall), "; + %.4g s waiting for gradient copies: one "
			 "gradient buffer on the %s", k->t_grad_stall, sw_plan_tier_label(p, SW_TIER_GPU));
	fprintf(f, "  %-12s %10.4g s  (6NT %.1f + recompute %.1f + attention %.1f + second pass %.1f "
		"- kept %.1f TFLOP at %.0f TFLOP/s; %d backward pass%s%s)\n",
		res_label(p, SW_RES_COMPUTE), k->t[SW_RES_COMPUTE], k->flops_model / 1e12,
		k->flops_recompute / 1e12, k->flops_attn / 1e12, k->flops_pass2 / 1e12,
		k->flops_kept / 1e12, r->gemm_tflops,
		passes, p->speculative ? ": exact clipping, speculative" :
		passes == 2 ? "es: exact clipping" : "", stall);
	fprintf(f, "  %-12s %10.4g s  (H2D %s at %.1f GB/s: %.4g s; D2H %s at %.1f GB/s: %.4g s)\n",
		sw_plan_resource_name(SW_RES_PCIE), k->t[SW_RES_PCIE], sw_fmt_size(k->h2d, b[0], 32), r->h2d_gbs,
		k->t_h2d, sw_fmt_size(k->d2h, b[1], 32), r->d2h_gbs, k->t_d2h);
	fprintf(f, "  %-12s %10.4g s  (read %s at %.1f GB/s: %.4g s + write %s at %.1f GB/s: %.4g s)\n",
		sw_plan_resource_name(SW_RES_NVME), k->t[SW_RES_NVME], sw_fmt_size(k->nvme_read, b[0], 32),
		r->nvme_read_gbs, k->t_nvme_read, sw_fmt_size(k->nvme_write, b[1], 32), r->nvme_write_gbs,
		k->t_nvme_write);
	fprintf(f, "  %-12s %10.4g s  (%s params at %.2f G params/s)\n", sw_plan_resource_name(SW_RES_CPU_ADAM),
		k->t[SW_RES_CPU_ADAM], plan_fmt_count((double)k->adam_params, b[0], 32), r->adam_params_per_s / 1e9);
	if (k->t_after > 0)
		fprintf(f, "  %-12s %10.4g s  (one slot: the deferred groups' updates, once the norm is "
			"known)\n", "after", k->t_after);
	fprintf(f, "predicted step: %.4g s, bound by %s%s; %.0f tokens/s, %.1f TFLOPS\n", k->step_s,
		res_label(p, k->bottleneck), k->t_after > 0 ? ", then the deferred updates" : "",
		k->tokens_per_s, k->tflops);
	if (k->bottleneck == SW_RES_NVME)
		fprintf(f, "step boundary: + %.4g s of idle NVMe (drained: + %.4g s; CPU AdamW after the "
			"last NVMe update %.4g s, the backward below it %.4g s, its write-behind %.4g s, "
			"forward %.4g s, read ahead %.4g s): %.4g s per step\n", k->t_boundary,
			k->t_boundary_drained, k->t_tail_adam, k->t_tail_bwd, k->t_tail_write, k->t_fwd,
			k->t_read_ahead, k->predict_s);
	else if (k->bottleneck == SW_RES_COMPUTE)
		fprintf(f, "step boundary: + %.4g s of idle %s (drained: + %.4g s; the last CPU update "
			"against the GPU-updated layers below it): %.4g s per step\n", k->t_boundary,
			res_label(p, k->bottleneck), k->t_boundary_drained, k->predict_s);
	else
		fprintf(f, "step boundary: not modelled when %s bounds the step\n",
			res_label(p, k->bottleneck));
	const int mix = p->in.rates.nvme_mix_gbs > 0 && k->nvme_read + k->nvme_write > 0;
	const int gmem = p->in.rates.gpu_bw_gbs > 0;
	if (mix || gmem) {
		char why[512] = "";
		int n = 0;
		if (mix)
			n += snprintf(why + n, sizeof(why) - (size_t)n, "the disk's %s read and written "
				      "together at the measured mixed rate, %.2f GB/s: %.4g s",
				      sw_fmt_size(k->nvme_read + k->nvme_write, b[0], 32),
				      p->in.rates.nvme_mix_gbs, k->t_nvme_mix);
		if (gmem && n < (int)sizeof(why))
			snprintf(why + n, sizeof(why) - (size_t)n, "%sthe %s's memory-bound work beside "
				 "the layers (sums of squares, resident AdamW, gradient zeroing), %s at "
				 "%.4g GB/s: %.4g s more compute", n ? "; " : "",
				 p->in.cpu_device ? "device" : "GPU", sw_fmt_size(k->gpu_mem_bytes, b[1], 32),
				 p->in.rates.gpu_bw_gbs, k->t_gpu_mem);
		fprintf(f, "expected step: %.4g s (%s%s)\n", k->expect_s, why,
			k->expect_s > k->predict_s ? "" : ", within the step above");
	}
	print_redo(p, f);
}
