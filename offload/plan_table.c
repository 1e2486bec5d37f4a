/* The buffer table: every allocation the executor makes, sized as its allocator counts it, in
 * the executor's allocation order; the plan's per-tier, per-purpose bytes are sums over it. */
#include "offload/plan_internal.h"
#include "core/log.h"
#include "core/model.h"
#include "io/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t plan_dev(uint64_t b) { return b ? (b + 255) / 256 * 256 : 256; }
uint64_t plan_host(uint64_t b) { return (b + 4095) / 4096 * 4096; }
uint64_t plan_min(uint64_t a, uint64_t b) { return a < b ? a : b; }

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* The planner's estimate of what one micro-batch through one layer, the head and the GEMMs
 * need on a GPU (docs/planner.md "GPU working set"); the executor's own buffers are inside it
 * and the rest is held for the backend's op scratch. */
static void ws_estimate(const sw_plan_input *in, uint64_t est[SW_PURPOSE_COUNT])
{
	const sw_config *c = &in->tt->cfg;
	uint64_t ab = in->fp32 ? 4 : 2, T = (uint64_t)(in->micro_rows * in->seq_len);
	uint64_t S = (uint64_t)in->seq_len, C = (uint64_t)c->dim, H = (uint64_t)c->n_heads;
	uint64_t F = (uint64_t)c->ffn_dim, qd = H * (uint64_t)c->head_dim;
	uint64_t kvd = (uint64_t)(c->n_kv_heads * c->head_dim);
	uint64_t vchunk = plan_min((uint64_t)in->vocab_chunk, (uint64_t)c->vocab);
	memset(est, 0, sizeof(uint64_t) * SW_PURPOSE_COUNT);
	/* forward intermediates kept for backward (xn1, h, xn2; q, attn out; k, v; gate, up,
	 * silu(gate)*up), twice for their gradients; softmax log-sum-exp per head; two RMS
	 * reciprocals; one head's (S,S) fp32 score block for a materialising attention kernel */
	est[SW_PURPOSE_ACT] = 2 * ab * T * (3 * C + 2 * qd + 2 * kvd + 3 * F) + 4 * T * H + 8 * T + 4 * S * S;
	/* double-buffered x in / x out / checkpoint in (forward), dx in / dx out (backward) */
	est[SW_PURPOSE_MB_IO] = 6 * T * C * ab;
	/* logits and their gradient for one vocab chunk (fp32), running max / sum / target logit /
	 * loss per token, the final norm's output and its gradient, token ids and targets */
	est[SW_PURPOSE_HEAD] = 2 * 4 * T * vchunk + 16 * T + 2 * T * C * ab + 8 * T;
	est[SW_PURPOSE_WORKSPACE] = in->cublas_workspace;
	est[SW_PURPOSE_RESERVE] = in->gpu_reserve;
}

void plan_sizes_get(const sw_plan_input *in, int64_t chunk, plan_sizes *z)
{
	const sw_table *tt = in->tt;
	const sw_config *c = &tt->cfg;
	uint64_t ab = in->fp32 ? 4 : 2, maxg = (uint64_t)tt->max_group_numel;
	sw_dims d = sw_dims_make(c, (int)in->micro_rows, (int)in->seq_len);
	uint64_t N = (uint64_t)d.N, C = (uint64_t)c->dim, ck = N * C * ab;
	memset(z, 0, sizeof(*z));
	z->window = plan_dev(maxg * ab);
	z->grad = plan_dev(maxg * GRAD_BYTES);
	z->tied_grad = c->tie_embeddings ? plan_dev((uint64_t)tt->g[0].numel * GRAD_BYTES) : 0;
	z->scratch = sw_layer_scratch_bytes(&d, in->fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16);
	z->xio = plan_dev(ck);
	z->n_xio = 2 + SW_PLAN_XC;   /* x in, x out, the checkpoint-in buffers (exec_ckpt_get) */
	z->tokens = plan_dev(N * 4);
	z->n_tokens = 3;
	z->inv_freq = plan_dev((uint64_t)c->head_dim / 2 * 4);
	z->norm_sums = plan_dev((uint64_t)tt->ngroups * 8);
	z->head_norm = c->tie_embeddings ? plan_dev((uint64_t)tt->g[tt->ngroups - 1].numel * ab) : 0;
	uint64_t est[SW_PURPOSE_COUNT], buf[SW_PURPOSE_COUNT] = { 0 };
	ws_estimate(in, est);
	buf[SW_PURPOSE_GRAD] = (uint64_t)in->grad_bufs * z->grad;
	buf[SW_PURPOSE_TIED_GRAD] = z->tied_grad;
	buf[SW_PURPOSE_ACT] = z->scratch;
	buf[SW_PURPOSE_MB_IO] = (uint64_t)z->n_xio * z->xio;
	buf[SW_PURPOSE_HEAD] = (uint64_t)z->n_tokens * z->tokens + z->inv_freq + z->norm_sums + z->head_norm;
	for (int u = 0; u < SW_PURPOSE_COUNT; u++) {
		z->ws[u] = max_u64(est[u], buf[u]);
		z->held[u] = z->ws[u] - buf[u];
	}
	z->carry = (uint64_t)in->batch_tokens * C * ab;
	z->stage_p16 = plan_host((uint64_t)chunk * ab);
	z->stage_opt = plan_host(3 * plan_host((uint64_t)chunk * 4) + plan_host((uint64_t)chunk * ab));
	z->stage_ckpt = plan_host(ck);
	z->ckpt_slots = (int)plan_min(2 * (uint64_t)in->io_depth, SW_PLAN_CKPT_SLOTS);
	z->xfer = plan_host((uint64_t)chunk * 4);
}

uint64_t sw_plan_gpu_working_set(const sw_plan_input *in, uint64_t by[SW_PURPOSE_COUNT])
{
	plan_sizes z;
	int64_t c = (in->chunk_params + 2047) / 2048 * 2048;
	plan_sizes_get(in, c < in->tt->max_group_numel ? c : in->tt->max_group_numel, &z);
	memcpy(by, z.ws, sizeof(z.ws));
	uint64_t sum = 0;
	for (int u = 0; u < SW_PURPOSE_COUNT; u++)
		sum += by[u];
	return sum;
}

uint64_t sw_plan_nvme_stripe(const sw_plan *p)
{
	if (p->in.nvme_stripe)
		return p->in.nvme_stripe;
	return plan_host((uint64_t)p->chunk_params * (uint64_t)p->p16_bytes);
}

int sw_plan_window_buffers(const sw_plan *p) { return p->streaming ? p->in.prefetch : 0; }

/* ---- rows ---------------------------------------------------------------------------------- */

typedef struct table {
	sw_plan_buf *b;
	int n, cap;
	uint64_t at, stripe;       /* NVMe: end of the extents handed out so far */
	int failed;
} table;

static void row(table *t, sw_plan_buf_kind kind, sw_plan_purpose u, sw_tier tier, int owner,
		int state, int slot, uint64_t bytes, int64_t count)
{
	if (!count || !bytes || t->failed)
		return;
	if (t->n == t->cap) {
		int cap = t->cap ? 2 * t->cap : 64;
		sw_plan_buf *nb = realloc(t->b, (size_t)cap * sizeof(*nb));
		if (!nb) {
			t->failed = 1;
			return;
		}
		t->b = nb;
		t->cap = cap;
	}
	sw_plan_buf *r = &t->b[t->n++];
	*r = (sw_plan_buf){ kind, u, tier, owner, state, slot, bytes, count, bytes * (uint64_t)count };
	if (tier == SW_TIER_NVME && kind != SW_BUF_HELD) {
		uint64_t start = t->at;
		r->bytes = plan_host(bytes);
		for (int64_t i = 0; i < count; i++)
			sw_io_extent_place(t->at, bytes, t->stripe, &t->at);
		r->total = t->at - start;
	}
}

static void rows_state(const sw_plan *p, table *t, int slots)
{
	uint64_t pb = (uint64_t)p->p16_bytes;
	for (int g = 0; g < p->ngroups; g++) {
		uint64_t n = (uint64_t)p->in.tt->g[g].numel;
		sw_tier t16 = p->tier[g][SW_STATE_P16], to = p->tier[g][SW_STATE_P32];
		row(t, SW_BUF_P16, SW_PURPOSE_P16, t16, g, -1, 0,
		    t16 == SW_TIER_GPU ? plan_dev(n * pb) : t16 == SW_TIER_HOST ? plan_host(n * pb) : n * pb, 1);
		uint64_t ob = to == SW_TIER_GPU ? plan_dev(n * 4) : to == SW_TIER_HOST ? plan_host(n * 4) : n * 4;
		for (int s = 0; s < (to == SW_TIER_NVME ? slots : 1); s++)
			for (int k = 0; k < 3; k++)
				row(t, SW_BUF_OPT, (sw_plan_purpose)(SW_PURPOSE_P32 + k), to, g, k, s, ob, 1);
		/* one-pass clipping's rollback sources (docs/planner.md "Clipping"): a resident
		 * group's gradient held to the end of the backward (the tied embedding's is the
		 * tied gradient buffer), host state's second set; NVMe state has its other slot */
		if (plan_spec(p) && to == SW_TIER_GPU && !(g == 0 && p->in.tt->cfg.tie_embeddings))
			row(t, SW_BUF_HELD_GRAD, SW_PURPOSE_HELD_GRAD, to, g, -1, 0, ob, 1);
		if (p->defer_nvme && to == SW_TIER_NVME)
			row(t, SW_BUF_HELD_GRAD, SW_PURPOSE_HELD_GRAD, SW_TIER_HOST, g, -1, 0,
			    plan_host(n * 4), 1);
		if (plan_spec(p) && to == SW_TIER_HOST)
			for (int k = 0; k < 3; k++)
				row(t, SW_BUF_STATE_B, SW_PURPOSE_STATE_B, to, g, k, 0, ob, 1);
	}
	uint64_t item = p->ckpt_item;
	uint64_t ck[SW_TIER_COUNT] = { plan_dev(item), plan_host(item), item };
	for (int tier = 0; tier < SW_TIER_COUNT; tier++)
		row(t, SW_BUF_CKPT, SW_PURPOSE_CKPT, (sw_tier)tier, -1, -1, 0, ck[tier], p->ckpt_count[tier]);
}

/* What the host's optimizer and NVMe streams need, from the placement */
static void rows_host(const sw_plan *p, const plan_sizes *z, table *t)
{
	int nvme_p16 = 0, nvme_opt = 0;
	for (int g = 0; g < p->ngroups; g++) {
		nvme_p16 |= p->tier[g][SW_STATE_P16] == SW_TIER_NVME;
		nvme_opt |= p->tier[g][SW_STATE_P32] == SW_TIER_NVME;
	}
	uint64_t max_off;
	int n_off = plan_cpu_groups(p, &max_off);
	int nhg = plan_host_grads_base(n_off);
	if (n_off && p->host_grads)   /* the count plan_host_grads chose (plan.c) */
		nhg = p->host_grads;
	row(t, SW_BUF_HOST_GRAD, SW_PURPOSE_GRAD, SW_TIER_HOST, -1, -1, 0, plan_host(max_off * GRAD_BYTES), nhg);
	row(t, SW_BUF_STAGE_CKPT, SW_PURPOSE_STAGE_CKPT, SW_TIER_HOST, -1, -1, 0, z->stage_ckpt,
	    p->ckpt_count[SW_TIER_NVME] ? z->ckpt_slots : 0);
	row(t, SW_BUF_STAGE_P16, SW_PURPOSE_STAGE_P16, SW_TIER_HOST, -1, -1, 0, z->stage_p16,
	    nvme_p16 ? SW_PLAN_P16_STAGES : 0);
	row(t, SW_BUF_STAGE_OPT, SW_PURPOSE_STAGE_OPT, SW_TIER_HOST, -1, -1, 0, z->stage_opt,
	    nvme_p16 || nvme_opt ? p->in.opt_sets : 0);
	row(t, SW_BUF_XFER, SW_PURPOSE_XFER, SW_TIER_HOST, -1, -1, 0, z->xfer, 1);
}

static void rows_gpu(const sw_plan *p, const plan_sizes *z, table *t)
{
	const sw_plan_input *in = &p->in;
	row(t, SW_BUF_GRAD, SW_PURPOSE_GRAD, SW_TIER_GPU, -1, -1, 0, z->grad, in->grad_bufs);
	row(t, SW_BUF_TIED_GRAD, SW_PURPOSE_TIED_GRAD, SW_TIER_GPU, -1, -1, 0, z->tied_grad, 1);
	row(t, SW_BUF_SCRATCH, SW_PURPOSE_ACT, SW_TIER_GPU, -1, -1, 0, z->scratch, 1);
	row(t, SW_BUF_XIO, SW_PURPOSE_MB_IO, SW_TIER_GPU, -1, -1, 0, z->xio, z->n_xio);
	row(t, SW_BUF_TOKENS, SW_PURPOSE_HEAD, SW_TIER_GPU, -1, -1, 0, z->tokens, z->n_tokens);
	row(t, SW_BUF_INV_FREQ, SW_PURPOSE_HEAD, SW_TIER_GPU, -1, -1, 0, z->inv_freq, 1);
	row(t, SW_BUF_NORM_SUMS, SW_PURPOSE_HEAD, SW_TIER_GPU, -1, -1, 0, z->norm_sums, 1);
	row(t, SW_BUF_HEAD_NORM, SW_PURPOSE_HEAD, SW_TIER_GPU, -1, -1, 0, z->head_norm, 1);
	row(t, SW_BUF_WINDOW, SW_PURPOSE_WINDOW, SW_TIER_GPU, -1, -1, 0, z->window, sw_plan_window_buffers(p));
	sw_tier ct = p->carry_on_gpu ? SW_TIER_GPU : SW_TIER_HOST;
	row(t, SW_BUF_CARRY, SW_PURPOSE_CARRY, ct, -1, -1, 0,
	    ct == SW_TIER_GPU ? plan_dev(z->carry) : plan_host(z->carry), 1);
	/* kept forward intermediates (plan_keep.c): a block per kept layer and micro-batch */
	for (int part = 0; part < 2; part++)
		row(t, SW_BUF_KEEP, SW_PURPOSE_KEEP, SW_TIER_GPU, -1, part, 0, p->keep_item[part],
		    (int64_t)p->keep_layers[part] * p->n_micro);
}

/* Rows for `slots` optimizer slots into t (t->b NULL at first); 0 or -ENOMEM. */
static int rows_all(const sw_plan *p, const plan_sizes *z, int slots, table *t)
{
	memset(t, 0, sizeof(*t));
	t->stripe = sw_plan_nvme_stripe(p);
	rows_gpu(p, z, t);
	rows_state(p, t, slots);
	rows_host(p, z, t);
	static const sw_plan_purpose held[] = { SW_PURPOSE_ACT, SW_PURPOSE_MB_IO, SW_PURPOSE_HEAD,
						SW_PURPOSE_WORKSPACE, SW_PURPOSE_RESERVE };
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		row(t, SW_BUF_HELD, held[i], SW_TIER_GPU, -1, -1, 0, z->held[held[i]], 1);
	row(t, SW_BUF_HELD, SW_PURPOSE_RESERVE, SW_TIER_HOST, -1, -1, 0, plan_host_held(&p->in), 1);
	if (t->at) {
		int np = p->in.n_nvme > 0 ? p->in.n_nvme : 1;
		uint64_t files = sw_io_files_bytes(t->at, np, t->stripe);
		row(t, SW_BUF_HELD, SW_PURPOSE_RESERVE, SW_TIER_NVME, -1, -1, 0, files - t->at, 1);
	}
	return t->failed ? -ENOMEM : 0;
}

uint64_t plan_nvme_footprint(const sw_plan *p, int slots, uint64_t by[SW_PURPOSE_COUNT])
{
	plan_sizes z;
	table t;
	plan_sizes_get(&p->in, p->chunk_params, &z);
	int rc = rows_all(p, &z, slots, &t);
	SW_ASSERT(rc == 0);
	uint64_t sum = 0;
	if (by)
		memset(by, 0, sizeof(uint64_t) * SW_PURPOSE_COUNT);
	for (int i = 0; i < t.n; i++)
		if (t.b[i].tier == SW_TIER_NVME) {
			sum += t.b[i].total;
			if (by)
				by[t.b[i].purpose] += t.b[i].total;
		}
	free(t.b);
	return sum;
}

int plan_table_build(sw_plan *p, const plan_sizes *z)
{
	table t;
	if (rows_all(p, z, p->in.slots, &t)) {
		free(t.b);
		plan_why(p, "out of memory for the plan's buffer table");
		return -ENOMEM;
	}
	p->buf = t.b;
	p->nbuf = t.n;
	memset(p->bytes, 0, sizeof(p->bytes));
	memset(p->total, 0, sizeof(p->total));
	for (int i = 0; i < t.n; i++) {
		p->bytes[t.b[i].tier][t.b[i].purpose] += t.b[i].total;
		p->total[t.b[i].tier] += t.b[i].total;
	}
	return 0;
}

void sw_plan_allocated(const sw_plan *p, uint64_t out[SW_TIER_COUNT][SW_PURPOSE_COUNT])
{
	memset(out, 0, sizeof(uint64_t) * SW_TIER_COUNT * SW_PURPOSE_COUNT);
	for (int i = 0; i < p->nbuf; i++)
		if (p->buf[i].kind != SW_BUF_HELD)
			out[p->buf[i].tier][p->buf[i].purpose] += p->buf[i].total;
}

/* What the process takes on the host after start-up besides the table's buffers and the
 * backend's op scratch: the threads the executor and the I/O engine start (stacks, each
 * thread's malloc arena), the I/O engine's submission and completion rings, the executor's
 * events and one step's per-token losses and targets. An allowance rather than a sum: these
 * are small, their exact size is libc's and the kernel's (the sweep in
 * tests/test_offload_exec_sweep.c measured at most 80 KiB of it on the CPU backend, against the
 * 256 KiB fixed part here). */
#define PLAN_HOST_MACHINERY (256ull << 10)

uint64_t plan_host_held(const sw_plan_input *in)
{
	return in->host_reserve + PLAN_HOST_MACHINERY + 8 * (uint64_t)in->batch_tokens;
}
