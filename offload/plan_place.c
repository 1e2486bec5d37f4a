/* Placement under the budgets, tier by tier: the GPU (working set, window, carry, resident
 * groups, checkpoints), the host (what it must hold, then the P16 cache, checkpoints and
 * optimizer state as they fit), NVMe (the rest, its footprint from the engine's layout). */
#include "offload/plan_internal.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

static uint64_t group_numel(const sw_plan *p, int g) { return (uint64_t)p->in.tt->g[g].numel; }
int plan_resident(const sw_plan *p, int g) { return p->tier[g][SW_STATE_P32] == SW_TIER_GPU; }
int plan_cpu_groups(const sw_plan *p, uint64_t *max_numel)
{
	int n = 0;
	*max_numel = 0;
	for (int g = 0; g < p->ngroups; g++)
		if (!plan_resident(p, g)) {
			n++;
			*max_numel = group_numel(p, g) > *max_numel ? group_numel(p, g) : *max_numel;
		}
	return n;
}

int plan_spec(const sw_plan *p) { return p->in.passes == 2 && p->in.speculate; }

/* One-pass clipping holds a resident group's gradient until the norm is known (the tied
 * embedding's is held anyway, in the tied gradient buffer). */
static int held_grad(const sw_plan *p, int g)
{
	return plan_spec(p) && !(g == 0 && p->in.tt->cfg.tie_embeddings);
}

uint64_t plan_group_dev(const sw_plan *p, int g)
{
	uint64_t n = group_numel(p, g);
	return plan_dev(n * (uint64_t)p->p16_bytes) + (uint64_t)(3 + held_grad(p, g)) * plan_dev(n * 4);
}

uint64_t plan_p16_host(const sw_plan *p, int g) { return plan_host(group_numel(p, g) * (uint64_t)p->p16_bytes); }
/* P32, m, v; with one-pass clipping a second set of them (a speculative update writes it) */
uint64_t plan_opt_host(const sw_plan *p, int g)
{
	return (uint64_t)(plan_spec(p) ? 6 : 3) * plan_host(group_numel(p, g) * 4);
}

uint64_t plan_all_state_dev(const sw_plan *p)
{
	uint64_t s = 0;
	for (int g = 0; g < p->ngroups; g++)
		s += plan_group_dev(p, g);
	return s;
}

uint64_t plan_window_bytes(const sw_plan_input *in, const plan_sizes *z)
{
	return (uint64_t)in->prefetch * z->window;
}

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

static int gpu_short(sw_plan *p, const plan_sizes *z, uint64_t need, uint64_t window, uint64_t all_state)
{
	char b[4][32], list[512];
	uint64_t ws[SW_PURPOSE_COUNT];
	memcpy(ws, z->ws, sizeof(ws));
	if (all_state < window)
		ws[SW_PURPOSE_P16] = all_state;   /* the cheaper way: everything resident */
	else
		ws[SW_PURPOSE_WINDOW] = window;
	plan_list_purposes(list, sizeof(list), ws);
	p->short_tier = SW_TIER_GPU;
	p->short_bytes = need - p->in.gpu_mem;
	plan_why(p, "--gpu-mem %s is %s short of the %s working set (%s: %s); raise --gpu-mem, or "
		 "lower --seq-len, --micro-batch%s or --prefetch", sw_fmt_size(p->in.gpu_mem, b[0], 32),
		 sw_fmt_size(p->short_bytes, b[1], 32), sw_plan_tier_label(p, SW_TIER_GPU),
		 sw_fmt_size(need, b[2], 32), list, p->in.grad_bufs > 1 ? ", --grad-buffers" : "");
	return -ENOSPC;
}

/* Whole groups from the bottom (the embedding and the first layers are updated last in
 * backward, with nothing left to hide a CPU update behind, and are read first by the next
 * forward); the rest streams (decided by the host placement). Returns what is left. */
static uint64_t gpu_groups(sw_plan *p, uint64_t avail)
{
	for (int g = 0; g < p->ngroups; g++) {
		uint64_t sb = plan_group_dev(p, g);
		if (sb <= avail) {
			set_group(p, g, SW_TIER_GPU, SW_TIER_GPU);
			avail -= sb;
		} else {
			set_group(p, g, SW_TIER_HOST, SW_TIER_HOST);
		}
	}
	return avail;
}

int plan_place_gpu(sw_plan *p, const plan_sizes *z)
{
	const sw_plan_input *in = &p->in;
	uint64_t w0 = 0;
	for (int u = 0; u < SW_PURPOSE_COUNT; u++)
		w0 += z->ws[u];
	uint64_t window = plan_window_bytes(in, z), all_state = plan_all_state_dev(p);
	uint64_t need = w0 + plan_min(window, all_state), carry = plan_dev(z->carry);
	if (in->gpu_mem < need)
		return gpu_short(p, z, need, window, all_state);
	uint64_t avail = in->gpu_mem - w0;
	p->streaming = all_state > avail;
	if (!p->streaming) {
		avail -= all_state;
		for (int g = 0; g < p->ngroups; g++)
			set_group(p, g, SW_TIER_GPU, SW_TIER_GPU);
	} else {
		avail -= window;
	}
	if (carry <= avail) {
		p->carry_on_gpu = 1;
		avail -= carry;
	}
	if (p->streaming)
		avail = gpu_groups(p, avail);
	/* activation checkpoints with what is left */
	int64_t n = p->n_layers * p->n_micro;
	int64_t on_gpu = (int64_t)plan_min(avail / plan_dev(p->ckpt_item), (uint64_t)n);
	for (int64_t k = 0; k < n; k++)
		p->ckpt_tier[ckpt_index(p, k)] = k < on_gpu ? SW_TIER_GPU : SW_TIER_NVME;
	p->ckpt_count[SW_TIER_GPU] = on_gpu;
	for (int g = 0; g < p->ngroups; g++)
		p->resident_groups += plan_resident(p, g);
	return 0;
}

/* What the host must hold whatever else it holds, and what each NVMe stream needs in pinned
 * staging when that stream exists (the executor's buffers, plan_table.c). */
typedef struct host_need {
	uint64_t grad, carry, xfer;      /* pinned gradient buffers, the carry off the GPU, load/save */
	uint64_t reserve;                /* held back for the process (host_reserve) */
	uint64_t stage[3];               /* P16, optimizer, checkpoints (their staging) */
	uint64_t items;                  /* every off-GPU P16, optimizer state and checkpoint */
} host_need;

enum { KIND_P16, KIND_OPT, KIND_CKPT };

static void host_needs(const sw_plan *p, const plan_sizes *z, host_need *h)
{
	memset(h, 0, sizeof(*h));
	uint64_t max_off;
	int n_off = plan_cpu_groups(p, &max_off);
	for (int g = 0; g < p->ngroups; g++)
		if (!plan_resident(p, g))
			h->items += plan_p16_host(p, g) + plan_opt_host(p, g);
	int64_t ck_off = p->n_layers * p->n_micro - p->ckpt_count[SW_TIER_GPU];
	h->items += (uint64_t)ck_off * plan_host(p->ckpt_item);
	/* the CPU updates one group while the next one's gradient arrives */
	h->grad = (uint64_t)plan_host_grads_base(n_off) * plan_host(max_off * GRAD_BYTES);
	h->xfer = z->xfer;
	h->reserve = plan_host_held(&p->in);
	if (!p->carry_on_gpu)
		h->carry = plan_host(z->carry);
	h->stage[KIND_P16] = SW_PLAN_P16_STAGES * z->stage_p16;
	h->stage[KIND_OPT] = (uint64_t)p->in.opt_sets * z->stage_opt;
	h->stage[KIND_CKPT] = ck_off ? (uint64_t)z->ckpt_slots * z->stage_ckpt : 0;
}

/* Staging for the streams in `kinds` (P16 on NVMe also needs the optimizer's staging: its
 * updates write P16 through it). */
static uint64_t staging_of(const host_need *h, unsigned kinds)
{
	uint64_t s = 0;
	if (kinds & (1u << KIND_P16))
		s += h->stage[KIND_P16];
	if (kinds & ((1u << KIND_P16) | (1u << KIND_OPT)))
		s += h->stage[KIND_OPT];
	if (kinds & (1u << KIND_CKPT))
		s += h->stage[KIND_CKPT];
	return s;
}

/* One-pass clipping with one NVMe slot: the gradient of a group whose optimizer state goes to
 * NVMe is held in pinned host memory until the norm is known (its update cannot be rolled
 * back). Room for every streamed group's is held back before the fill, when the budget has it
 * (p->defer_nvme; else p->defer_short says what was missing); 0 otherwise. */
static uint64_t defer_reserve(sw_plan *p, uint64_t budget)
{
	p->defer_nvme = 0;
	p->defer_short = 0;
	if (!plan_spec(p) || p->in.slots != 1)
		return 0;
	uint64_t r = 0;
	for (int g = 0; g < p->ngroups; g++)
		r += plan_resident(p, g) ? 0 : plan_host(group_numel(p, g) * 4);
	if (r > budget) {
		p->defer_short = r - budget;
		return 0;
	}
	p->defer_nvme = 1;
	return r;
}

/* Greedy first-fit of the off-GPU items into `budget` host bytes, in order of NVMe traffic saved
 * per host byte: P16 cache (bottom groups first), checkpoints (top layers first), optimizer
 * state (bottom groups first). Returns the kinds that did not all fit (they go to NVMe).
 * spill: state will go to NVMe (one-pass clipping's deferral room is held back first). */
static unsigned fill_host(sw_plan *p, uint64_t budget, uint64_t *used, int spill)
{
	unsigned spilled = 0;
	uint64_t u = 0, item = plan_host(p->ckpt_item);
	budget -= spill ? defer_reserve(p, budget) : 0;
	for (int g = 0; g < p->ngroups; g++) {
		if (plan_resident(p, g))
			continue;
		uint64_t b = plan_p16_host(p, g);
		int fits = u + b <= budget;
		p->tier[g][SW_STATE_P16] = fits ? SW_TIER_HOST : SW_TIER_NVME;
		u += fits ? b : 0;
		spilled |= fits ? 0 : 1u << KIND_P16;
	}
	int64_t n = p->n_layers * p->n_micro, fit = (int64_t)((budget - u) / item), placed = 0;
	for (int64_t k = 0; k < n; k++) {
		uint8_t *t = &p->ckpt_tier[ckpt_index(p, k)];
		if (*t == SW_TIER_GPU)
			continue;
		*t = placed < fit ? SW_TIER_HOST : SW_TIER_NVME;
		placed += *t == SW_TIER_HOST;
		spilled |= *t == SW_TIER_NVME ? 1u << KIND_CKPT : 0;
	}
	u += (uint64_t)placed * item;
	for (int g = 0; g < p->ngroups; g++) {
		if (plan_resident(p, g))
			continue;
		uint64_t b = plan_opt_host(p, g);
		sw_tier t = u + b <= budget ? SW_TIER_HOST : SW_TIER_NVME;
		u += t == SW_TIER_HOST ? b : 0;
		spilled |= t == SW_TIER_NVME ? 1u << KIND_OPT : 0;
		p->tier[g][SW_STATE_P32] = p->tier[g][SW_STATE_M] = p->tier[g][SW_STATE_V] = t;
	}
	*used = u;
	return spilled;
}

static uint64_t host_min_of(const host_need *h, int *all_on_host)
{
	uint64_t base = h->grad + h->carry + h->xfer + h->reserve, stage = staging_of(h, 7);
	*all_on_host = h->items <= stage;
	return base + plan_min(h->items, stage);
}

uint64_t plan_host_min(const sw_plan *p, const plan_sizes *z)
{
	host_need h;
	int all;
	host_needs(p, z, &h);
	return host_min_of(&h, &all);
}

static int host_short(sw_plan *p, const host_need *h, uint64_t need, int cheaper_all)
{
	char b[4][32], list[512] = "";
	plan_list_add(list, sizeof(list), "pinned gradient buffers", h->grad);
	plan_list_add(list, sizeof(list), "activation carry", h->carry);
	plan_list_add(list, sizeof(list), "load/save staging", h->xfer);
	plan_list_add(list, sizeof(list), "held for the process", h->reserve);
	if (cheaper_all) {
		plan_list_add(list, sizeof(list), p->in.cpu_device ? "state and checkpoints off the device" :
			      "state and checkpoints off the GPU", h->items);
	} else {
		plan_list_add(list, sizeof(list), "I/O staging P16", h->stage[KIND_P16]);
		plan_list_add(list, sizeof(list), "I/O staging optimizer", h->stage[KIND_OPT]);
		plan_list_add(list, sizeof(list), "I/O staging checkpoints", h->stage[KIND_CKPT]);
	}
	p->short_tier = SW_TIER_HOST;
	p->short_bytes = need - p->in.cpu_mem;
	plan_why(p, "--cpu-mem %s is %s short of what the host must hold (%s: %s); raise --cpu-mem%s",
		 sw_fmt_size(p->in.cpu_mem, b[0], 32), sw_fmt_size(p->short_bytes, b[1], 32),
		 sw_fmt_size(need, b[2], 32), list,
		 h->carry ? ", or raise --gpu-mem so the activation carry fits there" :
		 h->grad ? " or --gpu-mem" : "");
	return -ENOSPC;
}

int plan_place_host(sw_plan *p, const plan_sizes *z)
{
	const sw_plan_input *in = &p->in;
	host_need h;
	host_needs(p, z, &h);
	int cheaper_all;
	uint64_t need = host_min_of(&h, &cheaper_all), used = 0;
	if (in->cpu_mem < need)
		return host_short(p, &h, need, cheaper_all);
	uint64_t room = in->cpu_mem - (h.grad + h.carry + h.xfer + h.reserve);
	if (room >= h.items) {
		SW_ASSERT(fill_host(p, room, &used, 0) == 0);
	} else {
		/* everything cannot stay on the host: reserve staging for every stream, fill, then
		 * give back the staging of streams that did not spill and fill again with the room;
		 * the second fill is kept only when it spills no stream the first one did not */
		unsigned s1 = fill_host(p, room - staging_of(&h, 7), &used, 1);
		SW_ASSERT(s1 != 0);
		if (s1 != 7) {
			unsigned s2 = fill_host(p, room - staging_of(&h, s1), &used, 1);
			if ((s2 & ~s1) != 0)
				SW_ASSERT(fill_host(p, room - staging_of(&h, 7), &used, 1) == s1);
		}
	}
	int64_t n = p->n_layers * p->n_micro;
	for (int64_t i = 0; i < n; i++)
		p->ckpt_count[p->ckpt_tier[i]] += p->ckpt_tier[i] != SW_TIER_GPU;
	int nvme_opt = 0;
	for (int g = 0; g < p->ngroups; g++)
		nvme_opt |= p->tier[g][SW_STATE_P32] == SW_TIER_NVME;
	p->defer_nvme &= nvme_opt;   /* (the table holds gradients of the NVMe groups only) */
	return 0;
}

static int nvme_unequal(const sw_plan_input *in)
{
	for (int i = 1; i < in->n_nvme; i++)
		if (in->nvme[i].capacity != in->nvme[0].capacity)
			return 1;
	return 0;
}

static int nvme_short(sw_plan *p, const uint64_t by[SW_PURPOSE_COUNT], uint64_t need, uint64_t cap)
{
	const sw_plan_input *in = &p->in;
	char b[5][32], list[512] = "", name[64];
	snprintf(name, sizeof(name), "optimizer state (%d slot%s)", in->slots, in->slots > 1 ? "s" : "");
	plan_list_add(list, sizeof(list), name, by[SW_PURPOSE_P32] + by[SW_PURPOSE_M] + by[SW_PURPOSE_V]);
	plan_list_add(list, sizeof(list), "P16", by[SW_PURPOSE_P16]);
	plan_list_add(list, sizeof(list), "activation spill", by[SW_PURPOSE_CKPT]);
	plan_list_add(list, sizeof(list), "stripe rounding", by[SW_PURPOSE_RESERVE]);
	p->short_tier = SW_TIER_NVME;
	p->short_bytes = need - cap;
	char alt[128] = "";
	if (in->slots == 2 && p->disk_bytes[0] < need)
		snprintf(alt, sizeof(alt), ", or use --checkpoint-only (one slot: %s)",
			 sw_fmt_size(p->disk_bytes[0], b[4], 32));
	if (in->n_nvme == 0)
		plan_why(p, "the plan needs %s on NVMe (%s) and no --nvme path was given; add "
			 "--nvme PATH:SIZE, or raise --cpu-mem or --gpu-mem%s",
			 sw_fmt_size(need, b[0], 32), list, alt);
	else
		plan_why(p, "--nvme paths hold %s%s, %s short of the %s the plan needs on disk (%s); add "
			 "--nvme paths or capacity, or raise --cpu-mem%s", sw_fmt_size(cap, b[0], 32),
			 nvme_unequal(in) ? " usable (the engine stripes evenly: paths x the smallest)" : "",
			 sw_fmt_size(p->short_bytes, b[1], 32), sw_fmt_size(need, b[2], 32), list, alt);
	return -ENOSPC;
}

int plan_place_nvme(sw_plan *p)
{
	const sw_plan_input *in = &p->in;
	uint64_t small = UINT64_MAX;
	for (int i = 0; i < in->n_nvme; i++)
		small = in->nvme[i].capacity < small ? in->nvme[i].capacity : small;
	/* the engine gives every path the same share: the budget is paths x the smallest capacity */
	uint64_t usable = in->n_nvme ? (small > UINT64_MAX / (uint64_t)in->n_nvme ? UINT64_MAX :
					small * (uint64_t)in->n_nvme) : 0;
	p->budget[SW_TIER_NVME] = usable;
	uint64_t by[SW_PURPOSE_COUNT];
	uint64_t need = plan_nvme_footprint(p, in->slots, by);
	p->disk_bytes[0] = plan_nvme_footprint(p, 1, NULL);
	p->disk_bytes[1] = plan_nvme_footprint(p, 2, NULL);
	for (int g = 0; g < p->ngroups; g++)
		if (p->tier[g][SW_STATE_P32] != SW_TIER_NVME)
			for (int s = 0; s < 2; s++)
				p->save_bytes[s] += (uint64_t)(s + 1) * OPT_BYTES * group_numel(p, g);
	if (need > usable)
		return nvme_short(p, by, need, usable);
	for (int i = 0; i < in->n_nvme && need; i++)
		p->nvme_path_bytes[i] = need / (uint64_t)in->n_nvme;
	return 0;
}
