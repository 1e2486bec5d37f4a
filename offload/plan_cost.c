/* The cost model: per-resource time of one step from the placement and the rates
 * (docs/planner.md "Step time"), P16 fetches from the window schedule. */
#include "offload/plan_internal.h"
#include "offload/window.h"
#include "core/log.h"
#include "core/model.h"

#include <stdlib.h>
#include <string.h>

/* ---- the cost model ----------------------------------------------------------------------- */

/* The window schedule over uses u[0, n), from an empty window, counting fetches per group. */
static void p16_replay(const sw_plan *p, const int *u, int nu, const uint8_t *streamed, int *fetches)
{
	sw_window w;
	sw_window_fill f[SW_WINDOW_WANT];
	sw_window_init(&w, sw_plan_window_buffers(p));
	for (int pos = 0; pos < nu && w.K; pos++) {
		int nf = sw_window_want(&w, u, nu, pos, 1, streamed, f);
		for (int i = 0; i < nf; i++)
			fetches[f[i].group]++;
		if (streamed[u[pos]])
			sw_window_use(&w, u[pos]);
		nf = sw_window_want(&w, u, nu, pos, w.K, streamed, f);
		for (int i = 0; i < nf; i++)
			fetches[f[i].group]++;
	}
}

/* P16 fetches per step of every group (fetches[g]; resident groups 0): the window schedule
 * (offload/window.h) over the step's uses of P16, as the executor follows it: per use, the
 * group itself (want 1), then after its compute the next K distinct streamed groups. A step
 * of P passes is one sequence; a redone step (redo) is the one-pass sequence, then the second
 * pass's uses from an empty window (the rollback changed the weights). */
static void p16_fetch_counts(const sw_plan *p, int P, int redo, int *fetches)
{
	int L = p->n_layers, G = p->ngroups;
	int hd = p->in.tt->cfg.tie_embeddings ? 0 : G - 1;
	int *u = malloc(sizeof(int) * (size_t)(1 + L + P * (L + 2)));
	uint8_t *streamed = malloc((size_t)G);
	SW_ASSERT(u && streamed);
	int nu = sw_window_uses(L, hd, P, u);
	for (int g = 0; g < G; g++) {
		fetches[g] = 0;
		streamed[g] = !plan_resident(p, g);
	}
	int n1 = redo ? 2 * (L + 1) : nu;
	p16_replay(p, u, n1, streamed, fetches);
	if (redo)
		p16_replay(p, u + n1, nu - n1, streamed, fetches);
	free(u);
	free(streamed);
}

double sw_plan_model_flops(const sw_plan *p)
{
	return p->cost.flops_model + 0.75 * p->cost.flops_attn;
}

void plan_gemm_params(const sw_table *tt, int64_t n_layers, int64_t *all, int64_t *layers)
{
	*all = *layers = 0;
	for (int i = 0; i < tt->n; i++) {
		const sw_tensor *t = &tt->t[i];
		if (t->ndim != 2)
			continue;
		if (t->kind != SW_T_EMBED || tt->cfg.tie_embeddings)
			*all += t->numel;
		if (t->group >= 1 && t->group <= n_layers)
			*layers += t->numel;
	}
}

/* FLOPs of a step of P backward passes: the model's, the backward's recompute, attention, the
 * second pass. */
static void cost_flops(const sw_plan *p, int P, sw_plan_cost *k)
{
	const sw_plan_input *in = &p->in;
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	double tokens = (double)in->batch_tokens;
	int64_t n_gemm, n_layer_gemm;
	plan_gemm_params(tt, p->n_layers, &n_gemm, &n_layer_gemm);
	double qd = (double)(c->n_heads * c->head_dim), L = (double)p->n_layers, S = (double)in->seq_len;
	k->flops_model = 6.0 * (double)n_gemm * tokens;
	/* the backward recomputes every layer GEMM but the down projection, whose output it does
	 * not need (core/model.c) */
	double down = L * (double)c->dim * (double)c->ffn_dim;
	k->flops_recompute = 2.0 * ((double)n_layer_gemm - down) * tokens;
	k->flops_attn = 8.0 * L * tokens * S * qd;
	/* pass 2: layers recompute (2, the down projection not) + backward (4), the head forward
	 * (2) + backward (4): 6 per GEMM parameter and token; x_L's recompute (2 per parameter of
	 * one layer, down included); attention recompute (2) + backward (4) per layer, and x_L's (2) */
	k->flops_pass2 = (double)(P - 1) *
			 ((6.0 * (double)n_gemm - 2.0 * down) * tokens +
			  2.0 * (double)n_layer_gemm / L * tokens + (6.0 * L + 2.0) * tokens * S * qd);
}

/* The traffic of the groups' updates, `updates` times, and (redo) of the rollback: P32 read
 * back from the pre-step slot and P16 rewritten to its home for NVMe state (host state is
 * still in its current set in memory). */
static void cost_updates(const sw_plan *p, int updates, int redo, sw_plan_cost *k, sw_plan_cost *after)
{
	uint64_t pb = (uint64_t)p->p16_bytes;
	for (int g = 0; g < p->ngroups; g++) {
		if (plan_resident(p, g))
			continue;
		uint64_t n = (uint64_t)p->in.tt->g[g].numel, u = (uint64_t)updates, rd = (uint64_t)redo;
		/* a deferred group (one slot): updated once, after the norm; in a redone step only
		 * by the second pass, with nothing to roll back */
		int defer = p->defer_nvme && p->tier[g][SW_STATE_P32] == SW_TIER_NVME;
		if (defer)
			u = 1, rd = 0;
		sw_plan_cost *a[2] = { k, defer && updates == 1 ? after : NULL };
		k->d2h += u * n * GRAD_BYTES;
		k->grad_d2h += u * n * GRAD_BYTES;
		for (int i = 0; i < 2 && a[i]; i++) {
			a[i]->adam_params += (int64_t)(u * n);
			if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME)
				a[i]->nvme_write += (u + rd) * n * pb;
			if (p->tier[g][SW_STATE_P32] == SW_TIER_NVME) {
				a[i]->nvme_read += u * n * OPT_BYTES + rd * n * 4;
				a[i]->nvme_write += u * n * OPT_BYTES;
			}
		}
	}
}

/* The step boundary: what the bottleneck idles between a step's last update and the next
 * step's first that the schedule does not hide (docs/planner.md "The step boundary"). The
 * forward needs the embedding and the first layers first, which the backward updates last, so
 * a forward over CPU-updated groups waits for the last step's CPU AdamW; the overlap hides the
 * last NVMe group's write-behind under that AdamW (or the backward below it) and runs the
 * leading GPU-updated layers' forward under it; the read-ahead, queued right after the last
 * NVMe update, fills the rest of the disk's idle time with the next step's first NVMe state.
 * Only the NVMe- and compute-bound cases are modelled (0 otherwise). */
static void cost_boundary(const sw_plan *p, sw_plan_cost *k)
{
	const sw_plan_rates *r = &p->in.rates;
	const sw_table *tt = p->in.tt;
	int G = p->ngroups, L = p->n_layers, nv_lo = -1, nv_hi = -1, p16_first = -1, lead = 0;
	double rate = r->gemm_tflops * 1e12, wr = r->nvme_write_gbs * 1e9, rd = r->nvme_read_gbs * 1e9;
	for (int g = 0; g < G; g++) {
		if (p->tier[g][SW_STATE_P32] == SW_TIER_NVME) {
			nv_lo = nv_lo < 0 ? g : nv_lo;
			nv_hi = g;
		}
		if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME && p16_first < 0)
			p16_first = g;
	}
	while (lead < G && plan_resident(p, lead))
		lead++;
	/* the forward: 2 of 6NT and attention's forward (2 of its 8); layers before the first
	 * CPU-updated group (the embedding's gather costs nothing) */
	k->t_fwd = (k->flops_model / 3.0 + k->flops_attn / 4.0) / rate;
	int lead_layers = lead > 1 ? (lead - 1 < L ? lead - 1 : L) : 0;
	double t_lead = k->t_fwd * (double)lead_layers / (double)L;
	int64_t chunk = p->chunk_params;
	k->t_tail_adam = k->t_tail_write = k->t_read_ahead = k->t_tail_bwd = 0;
	for (int g = 0; g < (nv_lo < 0 ? G : nv_lo); g++)
		if (!plan_resident(p, g))
			k->t_tail_adam += (double)tt->g[g].numel / r->adam_params_per_s;
	if (nv_lo >= 0) {
		int64_t n = tt->g[nv_lo].numel, nch = (n + chunk - 1) / chunk;
		int64_t last = n - (nch > 2 ? nch - 2 : 0) * chunk;
		uint64_t per = OPT_BYTES + (p->tier[nv_lo][SW_STATE_P16] == SW_TIER_NVME ? (uint64_t)p->p16_bytes : 0);
		k->t_tail_write = (double)((uint64_t)last * per) / wr;
		int64_t m = tt->g[nv_hi].numel;
		k->t_read_ahead = (double)((uint64_t)(m < 2 * chunk ? m : 2 * chunk) * OPT_BYTES) / rd;
	}
	/* the backward of the layers below the lowest NVMe group: after its update (measured on
	 * the CPU machine, docs/perf.md: there it outlasts their AdamW) */
	int below = nv_lo > 1 ? (nv_lo - 1 < L ? nv_lo - 1 : L) : 0;
	double t_bwd = k->t[SW_RES_COMPUTE] - k->t_grad_stall - k->flops_pass2 / rate - k->t_fwd;
	k->t_tail_bwd = t_bwd > 0 ? t_bwd * (double)below / (double)L : 0;
	k->t_boundary = k->t_boundary_drained = 0;
	if (k->bottleneck == SW_RES_NVME) {
		/* the disk idles from its last update's write to the next step's first read: the
		 * host groups' AdamW or the backward of the layers below, then the forward up to the
		 * first layer whose P16 it reads from the disk. Overlapped, the last write-behind
		 * and the read-ahead (queued right after the last NVMe update) fill it, and the
		 * leading GPU-updated layers' forward runs under the tail. */
		int quiet = p16_first < 0 ? L : p16_first - 1;   /* layers 1 .. p16_first - 1 */
		quiet = quiet < 0 ? 0 : quiet > L ? L : quiet;
		double fwd = k->t_fwd * (double)quiet / (double)L;
		double tail = k->t_tail_adam > k->t_tail_bwd ? k->t_tail_adam : k->t_tail_bwd;
		k->t_boundary_drained = tail + fwd;
		double lead_hidden = t_lead < tail ? t_lead : tail;
		double f = tail + fwd - lead_hidden - k->t_tail_write - k->t_read_ahead;
		k->t_boundary = f > 0 ? f : 0;
	} else if (k->bottleneck == SW_RES_COMPUTE && lead < G) {
		/* the GPU idles while the last CPU update (the lowest CPU-updated group, whose
		 * gradient comes last) outlasts the backward of the GPU-updated layers below it; the
		 * overlap runs their forward under it too */
		int64_t n = tt->g[lead].numel;
		double t_upd = (double)n / r->adam_params_per_s;
		if (p->tier[lead][SW_STATE_P32] == SW_TIER_NVME)
			t_upd += (double)((uint64_t)n * OPT_BYTES) / rd + (double)((uint64_t)n * OPT_BYTES) / wr;
		double d = t_upd - 2.0 * t_lead;
		k->t_boundary_drained = d > 0 ? d : 0;
		d -= t_lead;
		k->t_boundary = d > 0 ? d : 0;
	}
	k->predict_s = k->step_s + k->t_boundary;
}

/* The expected step: the disk at the mixed rate, the backward's bytes against the bottleneck
 * and the deferred ones (after_bytes, beside after_adam_s of their CPU AdamW) against their own
 * time t_after, each only where longer. The boundary is kept as it was at the separate rates
 * (an estimate from above where the mixed rate makes the disk the longest resource). */
double sw_plan_expect_step(sw_plan_cost *k, uint64_t after_bytes, double after_adam_s, double mix_gbs)
{
	k->t_nvme_mix = 0;
	/* the backward's longest resource, lengthened: the compute by the GPU's memory-bound work
	 * (it runs beside the layers but does not hide there), the disk by its mixed rate */
	double longest = k->t[SW_RES_COMPUTE] + k->t_gpu_mem, o2 = 0;
	if (mix_gbs > 0) {
		double mix = mix_gbs * 1e9, am = (double)after_bytes / mix;
		k->t_nvme_mix = (double)(k->nvme_read + k->nvme_write) / mix;
		if (k->t_nvme_mix - am > longest)
			longest = k->t_nvme_mix - am;
		o2 = (am > after_adam_s ? am : after_adam_s) - k->t_after;
	}
	double o1 = longest - k->t[k->bottleneck];
	return k->predict_s + (o1 > 0 ? o1 : 0) + (o2 > 0 ? o2 : 0);
}

/* The GPU's memory-bound bytes of a step of P passes (sw_plan_cost.gpu_mem_bytes). A resident
 * group is updated once a step, also in a redone one (a speculative pass holds its gradient
 * and updates it after the norm; the rollback discards it). */
static uint64_t cost_gpu_mem(const sw_plan *p, int P)
{
	const sw_table *tt = p->in.tt;
	uint64_t all = 0, res = 0, zero = 0;
	for (int g = 0; g < p->ngroups; g++) {
		all += (uint64_t)tt->g[g].numel;
		res += plan_resident(p, g) ? (uint64_t)tt->g[g].numel : 0;
		zero += sw_group_grad_written(tt, g) ? 0 : (uint64_t)tt->g[g].numel;
	}
	return (uint64_t)P * (all + zero) * GRAD_BYTES +
	       res * (OPT_BYTES + GRAD_BYTES + OPT_BYTES + (uint64_t)p->p16_bytes);
}

/* A step of P backward passes whose groups are updated `updates` times (2 in a redone step,
 * with the rollback between). */
static void cost_run(const sw_plan *p, int P_, int updates, sw_plan_cost *k)
{
	const sw_plan_input *in = &p->in;
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	memset(k, 0, sizeof(*k));
	double tokens = (double)in->batch_tokens;
	cost_flops(p, P_, k);
	uint64_t pb = (uint64_t)p->p16_bytes, item = p->ckpt_item;
	uint64_t carry_pass = (uint64_t)(p->n_layers + 1) * (uint64_t)in->batch_tokens *
			      (uint64_t)c->dim * (uint64_t)p->act_bytes;
	uint64_t ck_off = (uint64_t)(p->ckpt_count[SW_TIER_HOST] + p->ckpt_count[SW_TIER_NVME]);
	int fetches[p->ngroups];
	p16_fetch_counts(p, P_, updates > 1, fetches);
	for (int g = 0; g < p->ngroups; g++) {
		if (plan_resident(p, g))
			continue;
		uint64_t n = (uint64_t)tt->g[g].numel, f = (uint64_t)fetches[g];
		k->h2d += f * n * pb;
		if (p->tier[g][SW_STATE_P16] == SW_TIER_NVME)
			k->nvme_read += f * n * pb;
	}
	sw_plan_cost after;
	memset(&after, 0, sizeof(after));
	cost_updates(p, updates, updates > 1, k, &after);
	uint64_t P = (uint64_t)P_;
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
	k->flops_kept = (double)P_ * plan_keep_flops(p);   /* kept parts are not recomputed */
	k->t[SW_RES_COMPUTE] = (k->flops_model + k->flops_recompute + k->flops_attn + k->flops_pass2 -
				k->flops_kept) / (r->gemm_tflops * 1e12);
	/* one GPU gradient buffer: a group's backward writes it only after the previous group's
	 * gradient left for the host (measured on the H100: 0.52 of 0.58 s of compute gaps with a
	 * gradient's D2H in flight, docs/perf.md); with two or more the copy overlaps the next
	 * group's backward */
	if (in->grad_bufs == 1)
		k->t_grad_stall = (double)k->grad_d2h / (r->d2h_gbs * 1e9);
	k->t[SW_RES_COMPUTE] += k->t_grad_stall;
	k->t_h2d = (double)k->h2d / (r->h2d_gbs * 1e9);
	k->t_d2h = (double)k->d2h / (r->d2h_gbs * 1e9);
	k->t[SW_RES_PCIE] = k->t_h2d > k->t_d2h ? k->t_h2d : k->t_d2h;
	/* the deferred updates' bytes and parameters run after the backward (t_after) */
	k->t_nvme_read = (double)(k->nvme_read - after.nvme_read) / (r->nvme_read_gbs * 1e9);
	k->t_nvme_write = (double)(k->nvme_write - after.nvme_write) / (r->nvme_write_gbs * 1e9);
	k->t[SW_RES_NVME] = k->t_nvme_read + k->t_nvme_write;
	k->t[SW_RES_CPU_ADAM] = (double)(k->adam_params - after.adam_params) / r->adam_params_per_s;
	double an = (double)after.nvme_read / (r->nvme_read_gbs * 1e9) +
		    (double)after.nvme_write / (r->nvme_write_gbs * 1e9);
	double aa = (double)after.adam_params / r->adam_params_per_s;
	k->t_after = an > aa ? an : aa;
	k->bottleneck = SW_RES_COMPUTE;
	for (int i = 1; i < SW_RES_COUNT; i++)
		if (k->t[i] > k->t[k->bottleneck])
			k->bottleneck = (sw_plan_resource)i;
	k->step_s = k->t[k->bottleneck] + k->t_after;
	k->gpu_mem_bytes = cost_gpu_mem(p, P_);
	k->t_gpu_mem = r->gpu_bw_gbs > 0 ? (double)k->gpu_mem_bytes / (r->gpu_bw_gbs * 1e9) : 0;
	cost_boundary(p, k);
	k->expect_s = sw_plan_expect_step(k, after.nvme_read + after.nvme_write, aa, r->nvme_mix_gbs);
	k->tokens_per_s = tokens / k->step_s;
	k->tflops = (k->flops_model + 0.75 * k->flops_attn) / k->step_s / 1e12;
}

double sw_plan_clip_break_even(const sw_plan *p)
{
	if (!p->speculative)
		return 0.0;
	double gain = p->two.step_s - p->cost.step_s, loss = p->redo.step_s - p->cost.step_s;
	if (gain <= 0)
		return 0.0;            /* two passes cost no more: never speculate */
	if (loss <= gain)
		return 1.0;            /* a redone step costs no more than two passes */
	return gain / loss;
}

void plan_cost(sw_plan *p)
{
	/* one pass without clipping or when speculative; a redone step: the pass, the rollback,
	 * then the two-pass scheme's second pass with its updates */
	cost_run(p, p->speculative ? 1 : p->in.passes, 1, &p->cost);
	memset(&p->redo, 0, sizeof(p->redo));
	memset(&p->two, 0, sizeof(p->two));
	if (p->speculative) {
		cost_run(p, 2, 2, &p->redo);
		cost_run(p, 2, 1, &p->two);
	}
}

