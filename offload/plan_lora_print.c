/* Printing a LoRA plan (spillway plan --lora-rank): the shapes, the placement of the frozen
 * base and the adapters, memory by tier, per-step traffic and the step-time prediction. */
#include "offload/plan_lora.h"
#include "offload/plan_internal.h"
#include "core/cli.h"

#include <stdio.h>
#include <string.h>


static void print_targets(const sw_plan_lora *p, FILE *f)
{
	static const char *names[SW_LORA_NTARGETS] = { "q", "k", "v", "o", "gate", "up", "down" };
	int first = 1;
	for (int i = 0; i < SW_LORA_NTARGETS; i++)
		if (p->in.lora_targets >> i & 1) {
			fprintf(f, "%s%s", first ? "" : ",", names[i]);
			first = 0;
		}
}

static const char *group_label(const sw_plan_lora *p, int g, int e, char *buf, int len)
{
	if (g == 0)
		snprintf(buf, (size_t)len, "embed");
	else if (g == p->ngroups - 1)
		snprintf(buf, (size_t)len, "head");
	else if (e - g > 1)
		snprintf(buf, (size_t)len, "layers %d-%d", g - 1, e - 2);
	else
		snprintf(buf, (size_t)len, "layer %d", g - 1);
	return buf;
}

static void print_placement(const sw_plan_lora *p, FILE *f)
{
	fprintf(f, "\nplacement (base: P16 only, frozen, never written; adapters: P32, m, v, gradient, P16):\n");
	fprintf(f, "  %-16s %12s  %-6s %-9s  %s\n", "groups", "base params", "base", "adapters", "how");
	for (int g = 0; g < p->ngroups;) {
		int e = g + 1, layer = g >= 1 && g <= p->n_layers;
		while (layer && e <= p->n_layers && p->base_tier[e] == p->base_tier[g] &&
		       p->adapter_tier[e] == p->adapter_tier[g])
			e++;
		uint64_t n = 0;
		for (int i = g; i < e; i++)
			n += (uint64_t)p->in.tt->g[i].numel;
		char name[48], c[32];
		sw_tier b = p->base_tier[g], a = p->adapter_tier[g];
		fprintf(f, "  %-16s %12s  %-6s %-9s  %s%s\n", group_label(p, g, e, name, sizeof(name)),
			plan_fmt_count((double)n, c, sizeof(c)), sw_plan_tier_name(b), layer ? sw_plan_tier_name(a) : "-",
			b == SW_TIER_GPU ? "base resident" : b == SW_TIER_HOST ? "base streamed from the host cache" :
			"base streamed from NVMe",
			!layer ? "" : a == SW_TIER_GPU ? "; GPU AdamW on the adapters" :
			"; adapters in host memory, CPU AdamW");
		g = e;
	}
	fprintf(f, "  activation checkpoints: GPU %lld, host %lld, NVMe %lld (of %lld, %s each); carry on the %s\n",
		(long long)p->ckpt_count[SW_TIER_GPU], (long long)p->ckpt_count[SW_TIER_HOST],
		(long long)p->ckpt_count[SW_TIER_NVME], (long long)(p->n_layers * p->n_micro),
		sw_fmt_size(p->ckpt_item, (char[32]){ 0 }, 32), p->carry_on_gpu ? "GPU" : "host");
}

static void print_memory(const sw_plan_lora *p, FILE *f)
{
	char b[32];
	fprintf(f, "\nmemory by tier and purpose (MiB):\n");
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		if (!p->total[t] && t == SW_TIER_NVME)
			continue;
		for (int r = 0; r < SW_LORA_ROW_COUNT; r++)
			if (p->bytes[t][r])
				fprintf(f, "  %-5s %-26s %12.1f\n", sw_plan_tier_name((sw_tier)t),
					sw_lora_row_name((sw_lora_row)r), (double)p->bytes[t][r] / 1048576.0);
		fprintf(f, "  %-5s %-26s %12.1f  of %s budget\n", sw_plan_tier_name((sw_tier)t), "total",
			(double)p->total[t] / 1048576.0, sw_fmt_size(p->budget[t], b, 32));
	}
	fprintf(f, "  (no P32, Adam m/v or gradient anywhere for the base: %s of base P16, %s of adapter "
		"state at 16 B/param + P16)\n", sw_fmt_size(p->payload[SW_LORA_BASE_P16], b, 32),
		sw_fmt_size(p->payload[SW_LORA_AD_P32] * 4 + p->payload[SW_LORA_AD_P16], (char[32]){ 0 }, 32));
}

static void print_cost(const sw_plan_lora *p, FILE *f)
{
	const sw_plan_lora_cost *k = &p->cost;
	const sw_plan_rates *r = &p->in.rates;
	char b[4][32];
	fprintf(f, "\ntraffic per step (one backward pass; nothing of the base is written back):\n");
	fprintf(f, "  H2D  %12s  (base P16 %s: layers fetched in forward and again in backward; adapter P16 %s; "
		"activations %s)\n", sw_fmt_size(k->h2d, b[0], 32), sw_fmt_size(k->h2d_base, b[1], 32),
		sw_fmt_size(k->h2d_adapter, b[2], 32), sw_fmt_size(k->h2d_act, b[3], 32));
	fprintf(f, "  D2H  %12s  (adapter gradients %s; activations %s)\n", sw_fmt_size(k->d2h, b[0], 32),
		sw_fmt_size(k->d2h_adapter, b[1], 32), sw_fmt_size(k->d2h_act, b[2], 32));
	fprintf(f, "  NVMe %12s read, %s written (base P16 read %s; activation spill %s each way)\n",
		sw_fmt_size(k->nvme_read, b[0], 32), sw_fmt_size(k->nvme_write, b[1], 32),
		sw_fmt_size(k->nvme_read - k->nvme_write, b[2], 32), sw_fmt_size(k->nvme_write, b[3], 32));
	fprintf(f, "\nstep time per resource:\n");
	fprintf(f, "  %-12s %10.4g s  (base forward %.1f + input-gradient backward %.1f + recompute %.1f + "
		"attention %.1f + adapters %.1f TFLOP at %.0f TFLOP/s)\n", sw_plan_resource_name(SW_RES_COMPUTE),
		k->t[SW_RES_COMPUTE], k->flops_fwd / 1e12, k->flops_bwd / 1e12, k->flops_recompute / 1e12,
		k->flops_attn / 1e12, k->flops_adapter / 1e12, r->gemm_tflops);
	fprintf(f, "  %-12s %10.4g s  (H2D at %.1f GB/s, D2H at %.1f GB/s)\n", sw_plan_resource_name(SW_RES_PCIE),
		k->t[SW_RES_PCIE], r->h2d_gbs, r->d2h_gbs);
	fprintf(f, "  %-12s %10.4g s  (read at %.1f GB/s, write at %.1f GB/s)\n", sw_plan_resource_name(SW_RES_NVME),
		k->t[SW_RES_NVME], r->nvme_read_gbs, r->nvme_write_gbs);
	fprintf(f, "  %-12s %10.4g s  (%s adapter params at %.2f G params/s%s)\n",
		sw_plan_resource_name(SW_RES_CPU_ADAM), k->t[SW_RES_CPU_ADAM] + k->t_after,
		plan_fmt_count((double)k->adam_params, b[0], 32), r->adam_params_per_s / 1e9,
		k->t_after > 0 ? "; with clipping after the backward, once the norm is known" : "");
	fprintf(f, "predicted step: %.4g s, bound by %s%s; %.0f tokens/s, %.1f TFLOPS\n", k->step_s,
		sw_plan_resource_name(k->bottleneck), k->t_after > 0 ? " (+ the host adapters' AdamW)" : "",
		k->tokens_per_s, k->tflops);
}

void sw_plan_lora_print(const sw_plan_lora *p, FILE *f)
{
	const sw_config *c = &p->in.tt->cfg;
	char b[3][32];
	fprintf(f, "LoRA plan: rank %d on ", p->in.lora_rank);
	print_targets(p, f);
	fprintf(f, "\nbase: %s parameters, frozen (%d layers, dim %lld, heads %lld (kv %lld), ffn %lld, vocab %lld)\n",
		plan_fmt_count((double)p->base_params, b[0], 32), p->n_layers, (long long)c->dim, (long long)c->n_heads,
		(long long)c->n_kv_heads, (long long)c->ffn_dim, (long long)c->vocab);
	fprintf(f, "adapters: %s parameters (%s per layer, r x (in + out) per targeted linear); %d of %d "
		"layers' adapters on the GPU\n", plan_fmt_count((double)p->adapter_params, b[1], 32),
		plan_fmt_count((double)p->adapter_layer, b[2], 32), p->gpu_adapter_layers, p->n_layers);
	fprintf(f, "step: %lld tokens = %lld micro-batches of %lld x %lld tokens; %s compute\n",
		(long long)p->in.batch_tokens, (long long)p->n_micro, (long long)p->in.micro_rows,
		(long long)p->in.seq_len, p->p16_bytes == 4 ? "fp32" : "bf16");
	print_placement(p, f);
	print_memory(p, f);
	print_cost(p, f);
	fprintf(f, "\ntrain --lora-rank runs this placement; NVMe reads of the base (in %s chunks) and "
		"of spilled checkpoints run ahead of the compute, writes behind it (docs/lora.md)\n",
		sw_fmt_size(sw_plan_lora_stage((uint64_t)p->chunk_params * (uint64_t)p->p16_bytes), b[0], 32));
}
