/* The planner: placement under budgets and the four-resource cost model (docs/planner.md). */
#include "offload/plan.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define OPT_BYTES 12            /* P32 + m + v, fp32 each */
#define GRAD_BYTES 4            /* parameter gradients are fp32 */

static const char *tier_names[SW_TIER_COUNT] = { "GPU", "host", "NVMe" };
static const char *purpose_names[SW_PURPOSE_COUNT] = {
	[SW_PURPOSE_P16] = "P16", [SW_PURPOSE_P32] = "P32", [SW_PURPOSE_M] = "Adam m",
	[SW_PURPOSE_V] = "Adam v", [SW_PURPOSE_CKPT] = "activation checkpoints",
	[SW_PURPOSE_CARRY] = "activation carry", [SW_PURPOSE_WINDOW] = "P16 prefetch window",
	[SW_PURPOSE_GRAD] = "gradient buffers", [SW_PURPOSE_TIED_GRAD] = "tied embedding gradient",
	[SW_PURPOSE_ACT] = "layer activations", [SW_PURPOSE_MB_IO] = "micro-batch staging",
	[SW_PURPOSE_HEAD] = "head and loss workspace", [SW_PURPOSE_WORKSPACE] = "cuBLAS workspace",
	[SW_PURPOSE_RESERVE] = "reserve", [SW_PURPOSE_STAGE_P16] = "I/O staging P16",
	[SW_PURPOSE_STAGE_OPT] = "I/O staging optimizer", [SW_PURPOSE_STAGE_CKPT] = "I/O staging checkpoints",
	[SW_PURPOSE_XFER] = "load/save staging",
};
static const char *resource_names[SW_RES_COUNT] = { "GPU compute", "PCIe", "NVMe", "CPU AdamW" };

const char *sw_plan_tier_name(sw_tier t) { return t < SW_TIER_COUNT ? tier_names[t] : "?"; }
const char *sw_plan_purpose_name(sw_plan_purpose u) { return u < SW_PURPOSE_COUNT ? purpose_names[u] : "?"; }
const char *sw_plan_resource_name(sw_plan_resource r) { return r < SW_RES_COUNT ? resource_names[r] : "?"; }

static uint64_t align_up(uint64_t x)
{
	return (x + SW_PLAN_ALIGN - 1) / SW_PLAN_ALIGN * SW_PLAN_ALIGN;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

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
	in->chunk_params = 64ll << 20;
	in->io_depth = 2;
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

/* ---- the working set ---------------------------------------------------------------------- */

static int act_bytes_of(const sw_plan_input *in) { return in->fp32 ? 4 : 2; }

uint64_t sw_plan_gpu_working_set(const sw_plan_input *in, uint64_t by[SW_PURPOSE_COUNT])
{
	const sw_config *c = &in->tt->cfg;
	uint64_t ab = (uint64_t)act_bytes_of(in);
	uint64_t T = (uint64_t)(in->micro_rows * in->seq_len), S = (uint64_t)in->seq_len;
	uint64_t C = (uint64_t)c->dim, H = (uint64_t)c->n_heads, F = (uint64_t)c->ffn_dim;
	uint64_t qd = H * (uint64_t)c->head_dim, kvd = (uint64_t)(c->n_kv_heads * c->head_dim);
	uint64_t vchunk = min_u64((uint64_t)in->vocab_chunk, (uint64_t)c->vocab);
	memset(by, 0, sizeof(uint64_t) * SW_PURPOSE_COUNT);
	by[SW_PURPOSE_GRAD] = (uint64_t)in->grad_bufs * (uint64_t)in->tt->max_group_numel * GRAD_BYTES;
	by[SW_PURPOSE_TIED_GRAD] = c->tie_embeddings ? (uint64_t)c->vocab * C * GRAD_BYTES : 0;
	/* forward intermediates kept for backward (xn1, h, xn2; q, attn out; k, v; gate, up,
	 * silu(gate)*up), twice for their gradients; softmax log-sum-exp per head; two RMS
	 * reciprocals; one head's (S,S) fp32 score block for a materialising attention kernel */
	by[SW_PURPOSE_ACT] = 2 * ab * T * (3 * C + 2 * qd + 2 * kvd + 3 * F) + 4 * T * H + 8 * T + 4 * S * S;
	/* double-buffered x in / x out / checkpoint in (forward), dx in / dx out (backward) */
	by[SW_PURPOSE_MB_IO] = 6 * T * C * ab;
	/* logits and their gradient for one vocab chunk (fp32), running max / sum / target logit /
	 * loss per token, the final norm's output and its gradient, token ids and targets */
	by[SW_PURPOSE_HEAD] = 2 * 4 * T * vchunk + 16 * T + 2 * T * C * ab + 8 * T;
	by[SW_PURPOSE_WORKSPACE] = in->cublas_workspace;
	by[SW_PURPOSE_RESERVE] = in->gpu_reserve;
	uint64_t sum = 0;
	for (int u = 0; u < SW_PURPOSE_COUNT; u++)
		sum += by[u];
	return sum;
}

static uint64_t window_bytes(const sw_plan_input *in)
{
	return (uint64_t)in->prefetch * (uint64_t)in->tt->max_group_numel * (uint64_t)act_bytes_of(in);
}

/* bytes of the full state of the whole model (P16 + P32 + m + v) */
static uint64_t all_state_bytes(const sw_plan_input *in)
{
	return (uint64_t)in->tt->total * (uint64_t)(act_bytes_of(in) + OPT_BYTES);
}

/* ---- messages ------------------------------------------------------------------------------ */

static void why_set(sw_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_set(sw_plan *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
}

/* "P16 prefetch window 1.20 GiB, gradient buffers 800.00 MiB, ..." for the nonzero cells */
static void list_purposes(char *out, size_t len, const uint64_t by[SW_PURPOSE_COUNT])
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
static void list_add(char *out, size_t len, const char *name, uint64_t bytes)
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
		why_set(p, "model shape (dim %lld, layers %lld, heads %lld/%lld, head_dim %lld, ffn %lld, "
			"vocab %lld) is out of range; check the config", (long long)c->dim,
			(long long)c->n_layers, (long long)c->n_heads, (long long)c->n_kv_heads,
			(long long)c->head_dim, (long long)c->ffn_dim, (long long)c->vocab);
		return -EINVAL;
	}
	if (in->seq_len <= 0 || in->seq_len > (1 << 22)) {
		why_set(p, "--seq-len %lld is out of range (1 to %d)", (long long)in->seq_len, 1 << 22);
		return -EINVAL;
	}
	if (in->micro_rows <= 0 || in->micro_rows * in->seq_len > (1 << 24)) {
		why_set(p, "--micro-batch %lld rows of %lld tokens is out of range (at most %d tokens)",
			(long long)in->micro_rows, (long long)in->seq_len, 1 << 24);
		return -EINVAL;
	}
	int64_t T = in->micro_rows * in->seq_len;
	if (in->batch_tokens <= 0 || in->batch_tokens % T || in->batch_tokens / T > (1 << 20)) {
		why_set(p, "--batch-tokens %lld is not a positive multiple of the micro-batch (%lld x %lld "
			"= %lld tokens, at most 2^20 micro-batches); use a multiple of %lld",
			(long long)in->batch_tokens, (long long)in->micro_rows, (long long)in->seq_len,
			(long long)T, (long long)T);
		return -EINVAL;
	}
	if (in->prefetch < 1 || in->prefetch > 64 || in->grad_bufs < 1 || in->grad_bufs > 8 ||
	    in->io_depth < 1 || in->io_depth > 64 || in->chunk_params <= 0 || in->vocab_chunk <= 0) {
		why_set(p, "--prefetch %d (1-64), grad buffers %d (1-8), --io-depth %d (1-64), --chunk %lld "
			"and --vocab-chunk %lld (> 0): one is out of range", in->prefetch, in->grad_bufs,
			in->io_depth, (long long)in->chunk_params, (long long)in->vocab_chunk);
		return -EINVAL;
	}
	if (in->slots != 1 && in->slots != 2) {
		why_set(p, "optimizer state slots must be 1 (--checkpoint-only) or 2, not %d", in->slots);
		return -EINVAL;
	}
	if (in->passes != 1 && in->passes != 2) {
		why_set(p, "backward passes must be 1 (--clip 0) or 2 (clipping), not %d", in->passes);
		return -EINVAL;
	}
	const sw_plan_rates *r = &in->rates;
	if (!(r->gemm_tflops > 0 && r->h2d_gbs > 0 && r->d2h_gbs > 0 && r->nvme_read_gbs > 0 &&
	      r->nvme_write_gbs > 0 && r->adam_params_per_s > 0)) {
		why_set(p, "every rate (--gemm-tflops, --h2d-gbs, --d2h-gbs, --nvme-read-gbs, "
			"--nvme-write-gbs, --adam-gparams) must be positive");
		return -EINVAL;
	}
	if (in->n_nvme < 0 || in->n_nvme > SW_PLAN_MAX_NVME) {
		why_set(p, "%d --nvme paths; at most %d", in->n_nvme, SW_PLAN_MAX_NVME);
		return -EINVAL;
	}
	return 0;
}

/* ---- placement ---------------------------------------------------------------------------- */

static uint64_t group_numel(const sw_plan *p, int g) { return (uint64_t)p->in.tt->g[g].numel; }
static int resident(const sw_plan *p, int g) { return p->tier[g][SW_STATE_P32] == SW_TIER_GPU; }

static void set_group(sw_plan *p, int g, sw_tier p16, sw_tier opt)
{
	p->tier[g][SW_STATE_P16] = p16;
	p->tier[g][SW_STATE_P32] = p->tier[g][SW_STATE_M] = p->tier[g][SW_STATE_V] = opt;
	p->tier[g][SW_STATE_GRAD] = opt == SW_TIER_GPU ? SW_TIER_GPU : SW_TIER_HOST;
}

/* Checkpoint items in order of preference for the faster tiers: top layer first (its
 * checkpoints are read back first in backward, right after being written), micro-batch order
 * within a layer. Item k of this order: */
static int64_t ckpt_index(const sw_plan *p, int64_t k)
{
	int64_t layer = p->n_layers - 1 - k / p->n_micro, mb = k % p->n_micro;
	return layer * p->n_micro + mb;
}

static int place_gpu(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	uint64_t ws[SW_PURPOSE_COUNT];
	uint64_t w0 = sw_plan_gpu_working_set(in, ws);
	uint64_t window = window_bytes(in), all_state = all_state_bytes(in);
	uint64_t need = w0 + min_u64(window, all_state);
	if (in->gpu_mem < need) {
		char b[4][32], list[512];
		if (all_state < window)
			ws[SW_PURPOSE_P16] = all_state;   /* the cheaper way: everything resident */
		else
			ws[SW_PURPOSE_WINDOW] = window;
		list_purposes(list, sizeof(list), ws);
		p->short_tier = SW_TIER_GPU;
		p->short_bytes = need - in->gpu_mem;
		why_set(p, "--gpu-mem %s is %s short of the GPU working set (%s: %s); raise --gpu-mem, or "
			"lower --seq-len, --micro-batch or --prefetch", sw_fmt_size(in->gpu_mem, b[0], 32),
			sw_fmt_size(p->short_bytes, b[1], 32), sw_fmt_size(need, b[2], 32), list);
		return -ENOSPC;
	}
	memcpy(p->bytes[SW_TIER_GPU], ws, sizeof(ws));
	uint64_t avail = in->gpu_mem - w0;
	int pb = p->p16_bytes;
	if (all_state <= avail) {
		p->streaming = 0;
		avail -= all_state;
		for (int g = 0; g < p->ngroups; g++)
			set_group(p, g, SW_TIER_GPU, SW_TIER_GPU);
	} else {
		/* stream: the window first, then whole groups from the bottom (the embedding and the
		 * first layers are updated last in backward, with nothing left to hide a CPU update
		 * behind, and are read first by the next forward) */
		p->streaming = 1;
		p->bytes[SW_TIER_GPU][SW_PURPOSE_WINDOW] = window;
		avail -= window;
		uint64_t carry = (uint64_t)in->batch_tokens * (uint64_t)in->tt->cfg.dim * (uint64_t)p->act_bytes;
		if (carry <= avail) {
			p->carry_on_gpu = 1;
			avail -= carry;
		}
		for (int g = 0; g < p->ngroups; g++) {
			uint64_t sb = group_numel(p, g) * (uint64_t)(pb + OPT_BYTES);
			if (sb <= avail) {
				set_group(p, g, SW_TIER_GPU, SW_TIER_GPU);
				avail -= sb;
			} else {
				set_group(p, g, SW_TIER_HOST, SW_TIER_HOST);   /* decided by place_host */
			}
		}
	}
	if (!p->streaming) {
		uint64_t carry = (uint64_t)in->batch_tokens * (uint64_t)in->tt->cfg.dim * (uint64_t)p->act_bytes;
		if (carry <= avail) {
			p->carry_on_gpu = 1;
			avail -= carry;
		}
	}
	if (p->carry_on_gpu)
		p->bytes[SW_TIER_GPU][SW_PURPOSE_CARRY] =
			(uint64_t)in->batch_tokens * (uint64_t)in->tt->cfg.dim * (uint64_t)p->act_bytes;
	/* activation checkpoints with what is left */
	int64_t n = p->n_layers * p->n_micro;
	int64_t on_gpu = (int64_t)min_u64(avail / p->ckpt_item, (uint64_t)n);
	for (int64_t k = 0; k < n; k++)
		p->ckpt_tier[ckpt_index(p, k)] = k < on_gpu ? SW_TIER_GPU : SW_TIER_NVME;
	p->ckpt_count[SW_TIER_GPU] = on_gpu;
	p->bytes[SW_TIER_GPU][SW_PURPOSE_CKPT] = (uint64_t)on_gpu * p->ckpt_item;
	for (int g = 0; g < p->ngroups; g++) {
		if (!resident(p, g))
			continue;
		p->resident_groups++;
		uint64_t n_g = group_numel(p, g);
		p->bytes[SW_TIER_GPU][SW_PURPOSE_P16] += n_g * (uint64_t)pb;
		for (int s = SW_STATE_P32; s <= SW_STATE_V; s++)
			p->bytes[SW_TIER_GPU][s] += n_g * 4;
	}
	return 0;
}

/* What the host must hold whatever else it holds, and what each NVMe stream needs in pinned
 * staging when that stream exists. */
typedef struct host_need {
	uint64_t grad, carry;            /* pinned gradient buffers, the carry when not on the GPU */
	uint64_t xfer;                   /* load/save staging (offload/exec.c sw_exec_xfer) */
	uint64_t stage[3];               /* P16, optimizer, checkpoints (their staging) */
	uint64_t items;                  /* every off-GPU P16, optimizer state and checkpoint */
} host_need;

enum { KIND_P16, KIND_OPT, KIND_CKPT };

static void host_needs(const sw_plan *p, host_need *h)
{
	const sw_plan_input *in = &p->in;
	memset(h, 0, sizeof(*h));
	uint64_t max_off = 0;
	int n_off = 0;
	for (int g = 0; g < p->ngroups; g++) {
		if (resident(p, g))
			continue;
		n_off++;
		uint64_t n = group_numel(p, g);
		max_off = n > max_off ? n : max_off;
		h->items += n * (uint64_t)(p->p16_bytes + OPT_BYTES);
	}
	int64_t ck_off = p->n_layers * p->n_micro - p->ckpt_count[SW_TIER_GPU];
	h->items += (uint64_t)ck_off * p->ckpt_item;
	/* two pinned gradient buffers: the CPU updates one group while the next one's arrives */
	h->grad = (uint64_t)(n_off < 2 ? n_off : 2) * max_off * GRAD_BYTES;
	h->xfer = (uint64_t)p->chunk_params * 4;          /* one chunk of fp32 */
	if (!p->carry_on_gpu)
		h->carry = (uint64_t)in->batch_tokens * (uint64_t)in->tt->cfg.dim * (uint64_t)p->act_bytes;
	uint64_t chunk = min_u64((uint64_t)p->chunk_params, max_off);
	uint64_t depth = (uint64_t)in->io_depth;
	/* reads ahead and writes behind, io_depth chunks each way */
	h->stage[KIND_P16] = 2 * depth * chunk * (uint64_t)p->p16_bytes;
	h->stage[KIND_OPT] = 2 * depth * chunk * OPT_BYTES;
	h->stage[KIND_CKPT] = ck_off ? 2 * depth * p->ckpt_item : 0;
}

static uint64_t staging_of(const host_need *h, unsigned kinds)
{
	uint64_t s = 0;
	for (int k = 0; k < 3; k++)
		if (kinds & (1u << k))
			s += h->stage[k];
	return s;
}

/* Greedy first-fit of the off-GPU items into `budget` host bytes, in order of NVMe traffic saved
 * per host byte: P16 cache (bottom groups first), checkpoints (top layers first), optimizer
 * state (bottom groups first). Returns the kinds that did not all fit (they go to NVMe). */
static unsigned fill_host(sw_plan *p, uint64_t budget, uint64_t *used)
{
	unsigned spilled = 0;
	uint64_t u = 0;
	int pb = p->p16_bytes;
	for (int g = 0; g < p->ngroups; g++) {
		if (resident(p, g))
			continue;
		uint64_t b = group_numel(p, g) * (uint64_t)pb;
		if (u + b <= budget) {
			p->tier[g][SW_STATE_P16] = SW_TIER_HOST;
			u += b;
		} else {
			p->tier[g][SW_STATE_P16] = SW_TIER_NVME;
			spilled |= 1u << KIND_P16;
		}
	}
	int64_t n = p->n_layers * p->n_micro, fit = (int64_t)((budget - u) / p->ckpt_item), placed = 0;
	for (int64_t k = 0; k < n; k++) {
		uint8_t *t = &p->ckpt_tier[ckpt_index(p, k)];
		if (*t == SW_TIER_GPU)
			continue;
		*t = placed < fit ? SW_TIER_HOST : SW_TIER_NVME;
		if (*t == SW_TIER_HOST)
			placed++;
		else
			spilled |= 1u << KIND_CKPT;
	}
	u += (uint64_t)placed * p->ckpt_item;
	for (int g = 0; g < p->ngroups; g++) {
		if (resident(p, g))
			continue;
		uint64_t b = group_numel(p, g) * OPT_BYTES;
		sw_tier t = u + b <= budget ? SW_TIER_HOST : SW_TIER_NVME;
		if (t == SW_TIER_HOST)
			u += b;
		else
			spilled |= 1u << KIND_OPT;
		p->tier[g][SW_STATE_P32] = p->tier[g][SW_STATE_M] = p->tier[g][SW_STATE_V] = t;
	}
	*used = u;
	return spilled;
}

static void host_min(const host_need *h, uint64_t *need, int *all_on_host)
{
	uint64_t base = h->grad + h->carry + h->xfer, stage = staging_of(h, 7);
	*all_on_host = h->items <= stage;
	*need = base + min_u64(h->items, stage);
}

static int place_host(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	host_need h;
	host_needs(p, &h);
	uint64_t need;
	int cheaper_all;
	host_min(&h, &need, &cheaper_all);
	if (in->cpu_mem < need) {
		char b[4][32], list[512] = "";
		list_add(list, sizeof(list), "pinned gradient buffers", h.grad);
		list_add(list, sizeof(list), "activation carry", h.carry);
		list_add(list, sizeof(list), "load/save staging", h.xfer);
		if (cheaper_all) {
			list_add(list, sizeof(list), "state and checkpoints off the GPU", h.items);
		} else {
			list_add(list, sizeof(list), "I/O staging P16", h.stage[KIND_P16]);
			list_add(list, sizeof(list), "I/O staging optimizer", h.stage[KIND_OPT]);
			list_add(list, sizeof(list), "I/O staging checkpoints", h.stage[KIND_CKPT]);
		}
		p->short_tier = SW_TIER_HOST;
		p->short_bytes = need - in->cpu_mem;
		why_set(p, "--cpu-mem %s is %s short of what the host must hold (%s: %s); raise --cpu-mem%s",
			sw_fmt_size(in->cpu_mem, b[0], 32), sw_fmt_size(p->short_bytes, b[1], 32),
			sw_fmt_size(need, b[2], 32), list,
			h.carry ? ", or raise --gpu-mem so the activation carry fits there" :
			h.grad ? " or --gpu-mem" : "");
		return -ENOSPC;
	}
	uint64_t *hb = p->bytes[SW_TIER_HOST];
	hb[SW_PURPOSE_GRAD] = h.grad;
	hb[SW_PURPOSE_CARRY] = h.carry;
	hb[SW_PURPOSE_XFER] = h.xfer;
	uint64_t base = h.grad + h.carry + h.xfer, used = 0;
	unsigned stage_kinds = 0;
	if (in->cpu_mem - base >= h.items) {
		SW_ASSERT(fill_host(p, in->cpu_mem - base, &used) == 0);
	} else {
		/* everything cannot stay on the host: reserve staging for every stream, fill, then
		 * give back the staging of streams that did not spill and fill again with the room;
		 * the second fill is kept only when it spills no stream the first one did not */
		unsigned s1 = fill_host(p, in->cpu_mem - base - staging_of(&h, 7), &used);
		SW_ASSERT(s1 != 0);
		stage_kinds = s1;
		if (s1 != 7) {
			unsigned s2 = fill_host(p, in->cpu_mem - base - staging_of(&h, s1), &used);
			if ((s2 & ~s1) == 0) {
				stage_kinds = s2;
			} else {
				unsigned again = fill_host(p, in->cpu_mem - base - staging_of(&h, 7), &used);
				SW_ASSERT(again == s1);
			}
		}
	}
	hb[SW_PURPOSE_STAGE_P16] = (stage_kinds & (1u << KIND_P16)) ? h.stage[KIND_P16] : 0;
	hb[SW_PURPOSE_STAGE_OPT] = (stage_kinds & (1u << KIND_OPT)) ? h.stage[KIND_OPT] : 0;
	hb[SW_PURPOSE_STAGE_CKPT] = (stage_kinds & (1u << KIND_CKPT)) ? h.stage[KIND_CKPT] : 0;
	for (int g = 0; g < p->ngroups; g++) {
		if (resident(p, g))
			continue;
		uint64_t n = group_numel(p, g);
		if (p->tier[g][SW_STATE_P16] == SW_TIER_HOST)
			hb[SW_PURPOSE_P16] += n * (uint64_t)p->p16_bytes;
		if (p->tier[g][SW_STATE_P32] == SW_TIER_HOST)
			for (int s = SW_STATE_P32; s <= SW_STATE_V; s++)
				hb[s] += n * 4;
	}
	int64_t n = p->n_layers * p->n_micro;
	for (int64_t i = 0; i < n; i++)
		p->ckpt_count[p->ckpt_tier[i]] += p->ckpt_tier[i] != SW_TIER_GPU;
	hb[SW_PURPOSE_CKPT] = (uint64_t)p->ckpt_count[SW_TIER_HOST] * p->ckpt_item;
	return 0;
}

/* NVMe bytes of the placement with `slots` optimizer-state slots: P16 once, P32/m/v per slot,
 * spilled checkpoints once (scratch); every range 4 KiB aligned. */
static uint64_t nvme_need(const sw_plan *p, int slots, uint64_t by[SW_PURPOSE_COUNT])
{
	uint64_t tmp[SW_PURPOSE_COUNT];
	if (!by)
		by = tmp;
	memset(by, 0, sizeof(uint64_t) * SW_PURPOSE_COUNT);
	for (int g = 0; g < p->ngroups; g++) {
		uint64_t n = group_numel(p, g);
		if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME)
			by[SW_PURPOSE_P16] += align_up(n * (uint64_t)p->p16_bytes);
		for (int s = SW_STATE_P32; s <= SW_STATE_V; s++)
			if (p->tier[g][s] == SW_TIER_NVME)
				by[s] += (uint64_t)slots * align_up(n * 4);
	}
	by[SW_PURPOSE_CKPT] = (uint64_t)p->ckpt_count[SW_TIER_NVME] * align_up(p->ckpt_item);
	uint64_t sum = 0;
	for (int u = 0; u < SW_PURPOSE_COUNT; u++)
		sum += by[u];
	return sum;
}

static int place_nvme(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	uint64_t cap = 0;
	for (int i = 0; i < in->n_nvme; i++)
		cap = cap + in->nvme[i].capacity < cap ? UINT64_MAX : cap + in->nvme[i].capacity;
	p->budget[SW_TIER_NVME] = cap;
	uint64_t by[SW_PURPOSE_COUNT];
	uint64_t need = nvme_need(p, in->slots, by);
	p->disk_bytes[0] = nvme_need(p, 1, NULL);
	p->disk_bytes[1] = nvme_need(p, 2, NULL);
	for (int g = 0; g < p->ngroups; g++)
		if (p->tier[g][SW_STATE_P32] != SW_TIER_NVME)
			for (int s = 0; s < 2; s++)
				p->save_bytes[s] += (uint64_t)(s + 1) * OPT_BYTES * group_numel(p, g);
	if (need > cap) {
		char b[5][32], list[512] = "", name[64];
		snprintf(name, sizeof(name), "optimizer state (%d slot%s)", in->slots, in->slots > 1 ? "s" : "");
		list_add(list, sizeof(list), name, by[SW_PURPOSE_P32] + by[SW_PURPOSE_M] + by[SW_PURPOSE_V]);
		list_add(list, sizeof(list), "P16", by[SW_PURPOSE_P16]);
		list_add(list, sizeof(list), "activation spill", by[SW_PURPOSE_CKPT]);
		p->short_tier = SW_TIER_NVME;
		p->short_bytes = need - cap;
		char alt[128] = "";
		if (in->slots == 2 && p->disk_bytes[0] < need)
			snprintf(alt, sizeof(alt), ", or use --checkpoint-only (one slot: %s)",
				 sw_fmt_size(p->disk_bytes[0], b[4], 32));
		if (in->n_nvme == 0)
			why_set(p, "the plan needs %s on NVMe (%s) and no --nvme path was given; add "
				"--nvme PATH:SIZE, or raise --cpu-mem or --gpu-mem%s",
				sw_fmt_size(need, b[0], 32), list, alt);
		else
			why_set(p, "--nvme paths hold %s, %s short of the %s the plan needs on disk (%s); add "
				"--nvme paths or capacity, or raise --cpu-mem%s", sw_fmt_size(cap, b[0], 32),
				sw_fmt_size(p->short_bytes, b[1], 32), sw_fmt_size(need, b[2], 32), list, alt);
		return -ENOSPC;
	}
	memcpy(p->bytes[SW_TIER_NVME], by, sizeof(by));
	/* split over the paths in proportion to their capacity (no share above its capacity) */
	uint64_t given = 0;
	for (int i = 0; i < in->n_nvme; i++) {
		p->nvme_path_bytes[i] = (uint64_t)((unsigned __int128)need * in->nvme[i].capacity / cap);
		given += p->nvme_path_bytes[i];
	}
	for (int i = 0; i < in->n_nvme && given < need; i++) {
		uint64_t room = in->nvme[i].capacity - p->nvme_path_bytes[i];
		uint64_t add = min_u64(room, need - given);
		p->nvme_path_bytes[i] += add;
		given += add;
	}
	return 0;
}

/* ---- the cost model ----------------------------------------------------------------------- */

/* P16 fetches per step of every group (fetches[g]; resident groups 0): the executor's window
 * (offload/exec.c win_use / win_ahead / win_prefetch) replayed over the step's uses of P16
 * (sw_plan_p16_uses), so a group still in one of the K window buffers from a recent use is not
 * fetched again. Each use: the group is loaded if absent (victim: a slot not holding one of the groups wanted,
 * least recently used), then the next K distinct streamed groups from it are loaded. */
static void p16_fetch_counts(const sw_plan *p, int *fetches)
{
	int L = p->n_layers, G = p->ngroups, K = p->in.prefetch, P = p->in.passes;
	int hd = p->in.tt->cfg.tie_embeddings ? 0 : G - 1;
	int nu, *u = malloc(sizeof(int) * (size_t)(1 + L + P * (L + 2)));
	int *slot = malloc(sizeof(int) * (size_t)K);
	int64_t *last = malloc(sizeof(int64_t) * (size_t)K), clock = 0;
	SW_ASSERT(u && slot && last);
	nu = sw_plan_p16_uses(L, hd, P, u);
	for (int g = 0; g < G; g++)
		fetches[g] = 0;
	for (int i = 0; i < K; i++) {
		slot[i] = -1;
		last[i] = 0;
	}
	for (int pos = 0; pos < nu; pos++) {
		for (int pass = 0; pass < 2; pass++) {      /* win_use, then win_ahead */
			int want[16], nw = 0, want_n = pass ? K : 1;
			for (int j = pos; j < nu && nw < want_n && nw < 16; j++) {
				if (resident(p, u[j]))
					continue;
				int dup = 0;
				for (int k = 0; k < nw; k++)
					dup |= want[k] == u[j];
				if (!dup)
					want[nw++] = u[j];
			}
			for (int k = 0; k < nw; k++) {
				int hit = 0;
				for (int i = 0; i < K; i++)
					hit |= slot[i] == want[k];
				if (hit)
					continue;
				int vi = -1;
				for (int i = 0; i < K; i++) {
					int wanted = 0;
					for (int q = 0; q < nw; q++)
						wanted |= slot[i] == want[q];
					if (!wanted && (vi < 0 || last[i] < last[vi]))
						vi = i;
				}
				SW_ASSERT(vi >= 0);
				slot[vi] = want[k];    /* its last use stays the evicted group's, as in exec.c */
				fetches[want[k]]++;
			}
			if (!pass && !resident(p, u[pos]))
				for (int i = 0; i < K; i++)
					if (slot[i] == u[pos])
						last[i] = ++clock;
		}
	}
	free(u);
	free(slot);
	free(last);
}

int sw_plan_p16_uses(int L, int head, int passes, int *u)
{
	int n = 0;
	u[n++] = 0;
	for (int l = 1; l <= L; l++)
		u[n++] = l;
	for (int q = 0; q < passes; q++) {
		if (q)
			u[n++] = L;
		u[n++] = head;
		for (int l = L; l >= 1; l--)
			u[n++] = l;
	}
	return n;
}

double sw_plan_model_flops(const sw_plan *p)
{
	return p->cost.flops_model + 0.75 * p->cost.flops_attn;
}

static void cost_compute(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	sw_plan_cost *k = &p->cost;
	memset(k, 0, sizeof(*k));
	double tokens = (double)in->batch_tokens;
	int64_t n_gemm = 0, n_layer_gemm = 0;
	for (int i = 0; i < tt->n; i++) {
		const sw_tensor *t = &tt->t[i];
		if (t->ndim != 2)
			continue;
		if (t->kind != SW_T_EMBED || c->tie_embeddings)
			n_gemm += t->numel;
		if (t->group >= 1 && t->group <= p->n_layers)
			n_layer_gemm += t->numel;
	}
	double qd = (double)(c->n_heads * c->head_dim), L = (double)p->n_layers, S = (double)in->seq_len;
	k->flops_model = 6.0 * (double)n_gemm * tokens;
	k->flops_recompute = 2.0 * (double)n_layer_gemm * tokens;
	k->flops_attn = 8.0 * L * tokens * S * qd;
	/* pass 2: layers recompute (2) + backward (4), the head forward (2) + backward (4): 6 per
	 * GEMM parameter and token; x_L's recompute (2 per parameter of one layer); attention
	 * recompute (2) + backward (4) per layer, and x_L's (2) */
	k->flops_pass2 = (double)(in->passes - 1) *
			 (6.0 * (double)n_gemm * tokens + 2.0 * (double)n_layer_gemm / L * tokens +
			  (6.0 * L + 2.0) * tokens * S * qd);

	uint64_t pb = (uint64_t)p->p16_bytes, item = p->ckpt_item;
	uint64_t carry_pass = (uint64_t)(p->n_layers + 1) * (uint64_t)in->batch_tokens *
			      (uint64_t)c->dim * (uint64_t)p->act_bytes;
	uint64_t ck_off = (uint64_t)(p->ckpt_count[SW_TIER_HOST] + p->ckpt_count[SW_TIER_NVME]);
	int fetches[p->ngroups];
	p16_fetch_counts(p, fetches);
	for (int g = 0; g < p->ngroups; g++) {
		if (resident(p, g))
			continue;
		uint64_t n = group_numel(p, g), f = (uint64_t)fetches[g];
		k->h2d += f * n * pb;
		k->d2h += n * GRAD_BYTES;
		k->adam_params += (int64_t)n;
		if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME) {
			k->nvme_read += f * n * pb;
			k->nvme_write += n * pb;
		}
		if (p->tier[g][SW_STATE_P32] == SW_TIER_NVME) {
			k->nvme_read += n * OPT_BYTES;
			k->nvme_write += n * OPT_BYTES;
		}
	}
	uint64_t P = (uint64_t)in->passes;
	k->h2d += P * ck_off * item;             /* checkpoints back in every backward pass */
	k->d2h += ck_off * item;                 /* checkpoints out in forward (copied from the
						  * GPU even when the carry is on the host) */
	if (!p->carry_on_gpu) {
		/* x in forward, dx in every backward pass, through every layer and the head */
		k->h2d += (1 + P) * carry_pass;
		k->d2h += (1 + P) * carry_pass;
	}
	k->nvme_read += P * (uint64_t)p->ckpt_count[SW_TIER_NVME] * item;
	k->nvme_write += (uint64_t)p->ckpt_count[SW_TIER_NVME] * item;

	const sw_plan_rates *r = &in->rates;
	k->t[SW_RES_COMPUTE] = (k->flops_model + k->flops_recompute + k->flops_attn + k->flops_pass2) /
			       (r->gemm_tflops * 1e12);
	k->t_h2d = (double)k->h2d / (r->h2d_gbs * 1e9);
	k->t_d2h = (double)k->d2h / (r->d2h_gbs * 1e9);
	k->t[SW_RES_PCIE] = k->t_h2d > k->t_d2h ? k->t_h2d : k->t_d2h;
	k->t_nvme_read = (double)k->nvme_read / (r->nvme_read_gbs * 1e9);
	k->t_nvme_write = (double)k->nvme_write / (r->nvme_write_gbs * 1e9);
	k->t[SW_RES_NVME] = k->t_nvme_read + k->t_nvme_write;
	k->t[SW_RES_CPU_ADAM] = (double)k->adam_params / r->adam_params_per_s;
	k->bottleneck = SW_RES_COMPUTE;
	for (int i = 1; i < SW_RES_COUNT; i++)
		if (k->t[i] > k->t[k->bottleneck])
			k->bottleneck = (sw_plan_resource)i;
	k->step_s = k->t[k->bottleneck];
	k->tokens_per_s = tokens / k->step_s;
	k->tflops = sw_plan_model_flops(p) / k->step_s / 1e12;
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

int sw_plan_build(sw_plan *p, const sw_plan_input *in)
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
	p->p16_bytes = p->act_bytes = act_bytes_of(in);
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
		why_set(p, "out of memory for the plan");
		return -ENOMEM;
	}
	if ((rc = place_gpu(p)) || (rc = place_host(p)) || (rc = place_nvme(p)))
		return rc;
	for (int t = 0; t < SW_TIER_COUNT; t++)
		for (int u = 0; u < SW_PURPOSE_COUNT; u++)
			p->total[t] += p->bytes[t][u];
	check_invariants(p);
	cost_compute(p);
	return 0;
}

void sw_plan_free(sw_plan *p)
{
	free(p->tier);
	free(p->ckpt_tier);
	p->tier = NULL;
	p->ckpt_tier = NULL;
}

int sw_plan_min_budget(const sw_plan_input *in, sw_tier tier, uint64_t *bytes, char *why, int why_len)
{
	sw_plan_input x = *in;
	/* plan the earlier tiers with the given budgets and the later ones unbounded */
	if (tier == SW_TIER_GPU)
		x.gpu_mem = UINT64_MAX / 4;
	if (tier <= SW_TIER_HOST)
		x.cpu_mem = UINT64_MAX / 4;
	x.n_nvme = 1;
	snprintf(x.nvme[0].path, sizeof(x.nvme[0].path), "(any)");
	x.nvme[0].capacity = UINT64_MAX / 4;
	sw_plan p;
	int rc = sw_plan_build(&p, &x);
	if (rc == 0) {
		if (tier == SW_TIER_GPU) {
			uint64_t ws[SW_PURPOSE_COUNT];
			*bytes = sw_plan_gpu_working_set(in, ws) + min_u64(window_bytes(in), all_state_bytes(in));
		} else if (tier == SW_TIER_HOST) {
			/* the GPU placement depends on gpu_mem only: redo the host accounting */
			host_need h;
			int all;
			host_needs(&p, &h);
			host_min(&h, bytes, &all);
		} else {
			*bytes = nvme_need(&p, in->slots, NULL);
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

/* ---- printing ----------------------------------------------------------------------------- */

/* 1.234 M, 233.166 B: parameter counts */
static const char *fmt_count(double n, char *buf, int len)
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
	sw_tier p16 = p->tier[g][SW_STATE_P16], opt = p->tier[g][SW_STATE_P32];
	if (opt == SW_TIER_GPU)
		return p->streaming ? "fits on the GPU after the working set: GPU AdamW, no transfers"
				    : "the whole model fits on the GPU: GPU AdamW, no transfers";
	if (p16 == SW_TIER_HOST && opt == SW_TIER_HOST)
		return "GPU full: P16 streamed from the host cache, CPU AdamW in host memory";
	if (p16 == SW_TIER_HOST)
		return "host holds its P16 cache; P32/m/v read ahead and written behind on NVMe";
	if (opt == SW_TIER_HOST)
		return "P16 streamed from NVMe (host cache full); CPU AdamW in host memory";
	return "host full: P16 and P32/m/v streamed from NVMe";
}

static void print_groups(const sw_plan *p, FILE *f)
{
	fprintf(f, "\nplacement (P16 compute copy, P32 master, Adam m/v, where the optimizer reads the gradient):\n");
	fprintf(f, "  %-16s %12s  %-5s %-5s %-5s %-5s %-5s  %s\n", "groups", "parameters", "P16", "P32",
		"m", "v", "grad", "why");
	for (int g = 0; g < p->ngroups;) {
		int e = g + 1;
		int is_layer = g >= 1 && g <= p->n_layers;
		while (is_layer && e <= p->n_layers && !memcmp(p->tier[e], p->tier[g], sizeof(p->tier[g])))
			e++;
		uint64_t n = 0;
		for (int i = g; i < e; i++)
			n += group_numel(p, i);
		char name[48];
		if (e - g > 1)
			snprintf(name, sizeof(name), "layers %d-%d", g - 1, e - 2);
		else
			group_name(p, g, name, sizeof(name));
		char params[32];
		fmt_count((double)n, params, sizeof(params));
		fprintf(f, "  %-16s %12s ", name, params);
		for (int s = 0; s < SW_STATE_COUNT; s++)
			fprintf(f, " %-5s", tier_names[p->tier[g][s]]);
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
			"GPU room left: no transfer at all",
			"copied out in forward, back in backward",
			"host full: spilled, bottom layers first (longest until backward needs them)",
		};
		fprintf(f, "  %-5s %8lld (%s, layers %d-%d): %s\n", tier_names[t], (long long)p->ckpt_count[t],
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
			 p->in.prefetch, fmt_count((double)p->in.tt->max_group_numel, n, 32));
		return buf;
	case SW_PURPOSE_GRAD:
		return t == SW_TIER_GPU ? "fp32, accumulated over the micro-batches of one group"
					: "pinned: one group updated by the CPU while the next arrives";
	case SW_PURPOSE_TIED_GRAD: return "head's share of the embedding gradient, kept until its end";
	case SW_PURPOSE_ACT:
		snprintf(buf, sizeof(buf), "one micro-batch (%lld tokens) through one layer, recompute + backward",
			 (long long)p->micro_tokens);
		return buf;
	case SW_PURPOSE_MB_IO: return "x / dx / checkpoint of one micro-batch, double-buffered";
	case SW_PURPOSE_HEAD:
		snprintf(buf, sizeof(buf), "logits in vocab chunks of %lld",
			 (long long)min_u64((uint64_t)p->in.vocab_chunk, (uint64_t)p->in.tt->cfg.vocab));
		return buf;
	case SW_PURPOSE_WORKSPACE: return "GEMM workspace";
	case SW_PURPOSE_RESERVE: return "--gpu-reserve";
	case SW_PURPOSE_CARRY:
		snprintf(buf, sizeof(buf), "hidden state between layers, all %lld micro-batches%s",
			 (long long)p->n_micro, t == SW_TIER_HOST ? " (no room on the GPU)" : "");
		return buf;
	case SW_PURPOSE_CKPT: return "layer inputs, see below";
	case SW_PURPOSE_STAGE_P16:
	case SW_PURPOSE_STAGE_OPT:
		snprintf(buf, sizeof(buf), "pinned, %d chunks of %s params each way", p->in.io_depth,
			 fmt_count((double)p->chunk_params, n, 32));
		return buf;
	case SW_PURPOSE_STAGE_CKPT: return "pinned, checkpoints on their way to / from NVMe";
	case SW_PURPOSE_XFER: return "pinned, one chunk of fp32: model in, weights and optimizer state out";
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

void sw_plan_print(const sw_plan *p, FILE *f)
{
	const sw_plan_input *in = &p->in;
	const sw_config *c = &in->tt->cfg;
	char b[8][32];
	fprintf(f, "model: %s, %s parameters: %d layers, dim %lld, heads %lld (kv %lld, head_dim %lld), "
		"ffn %lld, vocab %lld%s\n", c->model_type, fmt_count((double)in->tt->total, b[7], 32), p->n_layers,
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

	fprintf(f, "\nmemory by tier and purpose:\n  %-5s %-26s %12s  %s\n", "tier", "purpose", "MiB", "why");
	for (int t = 0; t < SW_TIER_COUNT; t++) {
		for (int u = 0; u < SW_PURPOSE_COUNT; u++) {
			if (!p->bytes[t][u])
				continue;
			fprintf(f, "  %-5s %-26s %12.1f  %s\n", tier_names[t], purpose_names[u],
				(double)p->bytes[t][u] / 1048576.0, purpose_why(p, (sw_tier)t, u));
		}
		fprintf(f, "  %-5s %-26s %12.1f  of %s budget (%.1f%%)\n", tier_names[t], "total",
			(double)p->total[t] / 1048576.0, sw_fmt_size(p->budget[t], b[0], 32),
			p->budget[t] ? 100.0 * (double)p->total[t] / (double)p->budget[t] : 0.0);
	}
	for (int i = 0; i < in->n_nvme; i++)
		fprintf(f, "  NVMe  %-26s %12.1f  of %s\n", in->nvme[i].path,
			(double)p->nvme_path_bytes[i] / 1048576.0, sw_fmt_size(in->nvme[i].capacity, b[0], 32));

	fprintf(f, "\ndisk (NVMe tier) per consistency mode:\n");
	fprintf(f, "  two slots, every step crash-safe       %12s%s\n", sw_fmt_size(p->disk_bytes[1], b[0], 32),
		in->slots == 2 ? "   <- this plan" : "");
	fprintf(f, "  one slot, checkpoint-only consistency  %12s%s\n", sw_fmt_size(p->disk_bytes[0], b[0], 32),
		in->slots == 1 ? "   <- this plan" : "");
	fprintf(f, "  plus GPU/host-resident optimizer state saved in the run directory at --save-every: "
		"%s (two slots) or %s (one)\n", sw_fmt_size(p->save_bytes[1], b[0], 32),
		sw_fmt_size(p->save_bytes[0], b[1], 32));

	const sw_plan_cost *k = &p->cost;
	const sw_plan_rates *r = &in->rates;
	fprintf(f, "\nstep time per resource:\n");
	fprintf(f, "  %-12s %10.4g s  (6NT %.1f + recompute %.1f + attention %.1f + second pass %.1f "
		"TFLOP at %.0f TFLOP/s; %d backward pass%s)\n",
		resource_names[SW_RES_COMPUTE], k->t[SW_RES_COMPUTE], k->flops_model / 1e12,
		k->flops_recompute / 1e12, k->flops_attn / 1e12, k->flops_pass2 / 1e12, r->gemm_tflops,
		in->passes, in->passes == 2 ? "es: exact clipping" : "");
	fprintf(f, "  %-12s %10.4g s  (H2D %s at %.1f GB/s: %.4g s; D2H %s at %.1f GB/s: %.4g s)\n",
		resource_names[SW_RES_PCIE], k->t[SW_RES_PCIE], sw_fmt_size(k->h2d, b[0], 32), r->h2d_gbs,
		k->t_h2d, sw_fmt_size(k->d2h, b[1], 32), r->d2h_gbs, k->t_d2h);
	fprintf(f, "  %-12s %10.4g s  (read %s at %.1f GB/s: %.4g s + write %s at %.1f GB/s: %.4g s)\n",
		resource_names[SW_RES_NVME], k->t[SW_RES_NVME], sw_fmt_size(k->nvme_read, b[0], 32),
		r->nvme_read_gbs, k->t_nvme_read, sw_fmt_size(k->nvme_write, b[1], 32), r->nvme_write_gbs,
		k->t_nvme_write);
	fprintf(f, "  %-12s %10.4g s  (%s params at %.2f G params/s)\n", resource_names[SW_RES_CPU_ADAM],
		k->t[SW_RES_CPU_ADAM], fmt_count((double)k->adam_params, b[0], 32), r->adam_params_per_s / 1e9);
	fprintf(f, "predicted step: %.4g s, bound by %s; %.0f tokens/s, %.1f TFLOPS\n", k->step_s,
		resource_names[k->bottleneck], k->tokens_per_s, k->tflops);
}
