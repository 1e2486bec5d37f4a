/* The LoRA executor's buffers (offload/lora_exec.h): the base's P16 loaded once into the homes
 * the plan gives it, the adapters' state on the device or the host, activations and scratch. */
#include "offload/lora_exec_int.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t up4k(uint64_t b) { return (b + 4095) / 4096 * 4096; }

uint64_t lexec_xbytes(const sw_lexec *ex)
{
	return (uint64_t)ex->d.N * (uint64_t)ex->d.C * (uint64_t)ex->ab;
}

static int dalloc(sw_lexec *ex, uint64_t bytes, void *out)
{
	sw_backend *be = ex->be;
	if (!be->ops->dev_alloc(be, bytes ? bytes : 1, (void **)out))
		return 0;
	char b1[32], b2[32], b3[32];
	sw_error("lora: the device arena (%s) is short: %s more were needed with %s in use; raise "
		 "--gpu-mem", sw_fmt_size(be->budget, b1, 32), sw_fmt_size(bytes, b2, 32),
		 sw_fmt_size(be->used, b3, 32));
	return -ENOMEM;
}

static int halloc(sw_lexec *ex, uint64_t bytes, void *out)
{
	if (!ex->be->ops->host_alloc(ex->be, bytes ? bytes : 1, (void **)out))
		return 0;
	char b[32];
	sw_error("lora: cannot allocate %s of pinned host memory; lower --cpu-mem or free memory",
		 sw_fmt_size(bytes, b, 32));
	return -ENOMEM;
}

/* Group g's P16 from the model into its home, a chunk at a time through the pinned stage. */
static int base_load(sw_lexec *ex, sw_lexec_reader read, const void *src, void *stage, int g)
{
	sw_backend *be = ex->be;
	lhome *h = &ex->base[g];
	h->tier = ex->p->base_tier[g];
	h->bytes = (uint64_t)ex->tt->g[g].numel * (uint64_t)ex->ab;
	int rc = h->tier == SW_TIER_GPU ? dalloc(ex, h->bytes, &h->dev) :
		 h->tier == SW_TIER_HOST ? halloc(ex, h->bytes, &h->host) :
		 sw_io_extent_alloc(ex->io, up4k(h->bytes), &h->ext);
	int64_t per = (int64_t)(ex->chunk / (uint64_t)ex->ab), n = ex->tt->g[g].numel;
	for (int64_t off = 0; off < n && !rc; off += per) {
		int64_t c = n - off < per ? n - off : per;
		uint64_t at = (uint64_t)off * (uint64_t)ex->ab, b = (uint64_t)c * (uint64_t)ex->ab;
		if (h->tier == SW_TIER_HOST) {
			read(src, g, off, c, (char *)h->host + at, be->act);
			continue;
		}
		read(src, g, off, c, stage, be->act);
		if (h->tier == SW_TIER_GPU) {
			be->ops->copy_h2d(be, ex->cs, (char *)h->dev + at, stage, b);
			be->ops->stream_sync(be, ex->cs);
			continue;
		}
		memset((char *)stage + b, 0, up4k(b) - b);
		sw_io_req r;
		rc = sw_io_submit_write(ex->io, &r, h->ext, at, up4k(b), stage);
		rc = rc ? rc : sw_io_wait(ex->io, &r);
		if (rc)
			sw_error("lora: NVMe write of the base failed: %s", sw_io_req_error(&r));
	}
	return rc;
}

static int ad_alloc(sw_lexec *ex, int l)
{
	lad *a = &ex->ad[l];
	uint64_t n = (uint64_t)ex->o.lo.numel;
	a->tier = ex->p->adapter_tier[l + 1] == SW_TIER_GPU ? SW_TIER_GPU : SW_TIER_HOST;
	int (*al)(sw_lexec *, uint64_t, void *) = a->tier == SW_TIER_GPU ? dalloc : halloc;
	int rc = al(ex, n * 4, &a->p32);
	rc = rc ? rc : al(ex, n * 4, &a->m);
	rc = rc ? rc : al(ex, n * 4, &a->v);
	rc = rc ? rc : al(ex, n * 4, &a->g);
	rc = rc ? rc : al(ex, n * (uint64_t)ex->ab, &a->p16);
	if (!rc && a->tier == SW_TIER_HOST && !ex->ad_p16_dev) {
		rc = dalloc(ex, n * (uint64_t)ex->ab, &ex->ad_p16_dev);
		rc = rc ? rc : dalloc(ex, n * 4, &ex->ad_g_dev);
	}
	return rc;
}

void lexec_ad_use(sw_lexec *ex, int l, int bwd, sw_lora_ptrs *lp)
{
	sw_backend *be = ex->be;
	lad *a = &ex->ad[l];
	if (a->tier == SW_TIER_GPU) {
		sw_lora_ptrs_make(lp, &ex->o.lo, a->p16, ex->ab, a->g);
		return;
	}
	uint64_t n = (uint64_t)ex->o.lo.numel;
	be->ops->copy_h2d(be, ex->cs, ex->ad_p16_dev, a->p16, n * (uint64_t)ex->ab);
	if (bwd)
		be->ops->memset0(be, ex->cs, ex->ad_g_dev, n * 4);
	sw_lora_ptrs_make(lp, &ex->o.lo, ex->ad_p16_dev, ex->ab, ex->ad_g_dev);
}

void sw_lexec_set_layer(sw_lexec *ex, int l, const float *p32, const float *m, const float *v)
{
	sw_backend *be = ex->be;
	lad *a = &ex->ad[l];
	int64_t n = ex->o.lo.numel;
	const float *src[3] = { p32, m, v };
	float *dst[3] = { a->p32, a->m, a->v };
	for (int i = 0; i < 3; i++) {
		if (a->tier == SW_TIER_HOST && src[i])
			memcpy(dst[i], src[i], (size_t)n * 4);
		else if (a->tier == SW_TIER_HOST)
			memset(dst[i], 0, (size_t)n * 4);
		else if (src[i])
			be->ops->copy_h2d(be, ex->cs, dst[i], src[i], (uint64_t)n * 4);
		else
			be->ops->memset0(be, ex->cs, dst[i], (uint64_t)n * 4);
	}
	if (a->tier == SW_TIER_HOST)
		sw_convert(a->p16, be->act, a->p32, SW_DTYPE_F32, n);
	else
		be->ops->cast_f32_to_act(be, ex->cs, a->p16, a->p32, n);
	be->ops->stream_sync(be, ex->cs);
}

void sw_lexec_get_layer(sw_lexec *ex, int l, sw_state state, float *dst)
{
	sw_backend *be = ex->be;
	lad *a = &ex->ad[l];
	SW_ASSERT(state != SW_STATE_P16);
	const float *src = state == SW_STATE_P32 ? a->p32 : state == SW_STATE_M ? a->m :
			   state == SW_STATE_V ? a->v : a->g;
	uint64_t bytes = (uint64_t)ex->o.lo.numel * 4;
	if (a->tier == SW_TIER_HOST) {
		memcpy(dst, src, bytes);
		return;
	}
	be->ops->copy_d2h(be, ex->cs, dst, src, bytes);
	be->ops->stream_sync(be, ex->cs);
}

lslot lexec_carry(const sw_lexec *ex, int m)
{
	return (lslot){ (char *)ex->carry + (uint64_t)m * lexec_xbytes(ex),
			ex->carry_dev ? SW_TIER_GPU : SW_TIER_HOST, { 0, 0, 0 } };
}

lslot lexec_ck(const sw_lexec *ex, int l, int m)
{
	int64_t i = (int64_t)l * ex->M + m;
	if (l == ex->L)
		return lexec_carry(ex, m);
	if (ex->ck_dev[i])
		return (lslot){ ex->ck_dev[i], SW_TIER_GPU, { 0, 0, 0 } };
	if (ex->ck_host[i])
		return (lslot){ ex->ck_host[i], SW_TIER_HOST, { 0, 0, 0 } };
	return (lslot){ NULL, SW_TIER_NVME, ex->ck_ext[i] };
}

/* Layer inputs in the plan's order, top layers first: its device count on the device (as far
 * as the arena has room: allocated last), its host count in one pinned block (with those the
 * arena could not hold), the rest on NVMe (one extent each, through the ring of stages). */
static int ckpt_place(sw_lexec *ex)
{
	uint64_t x = lexec_xbytes(ex);
	int64_t n = (int64_t)ex->L * ex->M, on_host = 0, t = 0, on_nvme = 0;
	int rc = 0;
	for (int l = ex->L - 1; l >= 0; l--)
		for (int m = 0; m < ex->M; m++, t++) {
			int64_t i = (int64_t)l * ex->M + m;
			if (t < ex->p->ckpt_count[SW_TIER_GPU] &&
			    !ex->be->ops->dev_alloc(ex->be, x, &ex->ck_dev[i]))
				continue;
			if (t < ex->p->ckpt_count[SW_TIER_GPU] + ex->p->ckpt_count[SW_TIER_HOST] || !ex->io)
				ex->ck_host[i] = (void *)(uintptr_t)++on_host;   /* numbered for now */
		}
	if (on_host)
		rc = halloc(ex, x * (uint64_t)on_host, &ex->ckpt);
	for (int64_t i = 0; i < n && !rc; i++) {
		if (ex->ck_host[i])
			ex->ck_host[i] = (char *)ex->ckpt + ((uintptr_t)ex->ck_host[i] - 1) * x;
		else if (!ex->ck_dev[i] && !(rc = sw_io_extent_alloc(ex->io, up4k(x), &ex->ck_ext[i])))
			on_nvme++;
	}
	/* the stages: the plan's count (2 x --io-depth, at most LEXEC_NCK_MAX) */
	int want = ex->p->ckpt_slots < 1 ? 1 : ex->p->ckpt_slots > LEXEC_NCK_MAX ? LEXEC_NCK_MAX :
		   ex->p->ckpt_slots;
	for (int k = 0; k < want && on_nvme && !rc; k++, ex->nck++) {
		rc = halloc(ex, up4k(x), &ex->cst[k].buf);
		rc = rc ? rc : ex->be->ops->event_create(ex->be, &ex->cst[k].ev);
	}
	return rc;
}

/* The carry where the plan put it; the layer inputs as ckpt_place says. */
static int ckpt_alloc(sw_lexec *ex)
{
	int64_t n = (int64_t)ex->L * ex->M;
	ex->carry_dev = ex->p->carry_on_gpu;
	int rc = (ex->carry_dev ? dalloc : halloc)(ex, lexec_xbytes(ex) * (uint64_t)ex->M, &ex->carry);
	if (!rc && (!(ex->ck_dev = calloc((size_t)n, sizeof(void *))) ||
		    !(ex->ck_host = calloc((size_t)n, sizeof(void *))) ||
		    !(ex->ck_ext = calloc((size_t)n, sizeof(sw_io_extent)))))
		rc = -ENOMEM;
	return rc ? rc : ckpt_place(ex);
}

/* Activations, token buffers, scratch: what one micro-batch through one layer needs. */
static int act_alloc(sw_lexec *ex)
{
	uint64_t N = (uint64_t)ex->d.N, x = lexec_xbytes(ex);
	int rc = dalloc(ex, x, &ex->xa);
	rc = rc ? rc : dalloc(ex, x, &ex->xb);
	rc = rc ? rc : dalloc(ex, N * 4, &ex->tok);
	rc = rc ? rc : dalloc(ex, N * 4, &ex->tgt);
	rc = rc ? rc : dalloc(ex, N * 4, &ex->losses);
	rc = rc ? rc : dalloc(ex, (uint64_t)ex->d.C * 4, &ex->head_sink);
	if (!rc)  /* the head's backward adds the frozen final norm's gradient here: from zeros */
		ex->be->ops->memset0(ex->be, ex->cs, ex->head_sink, (uint64_t)ex->d.C * 4);
	rc = rc ? rc : dalloc(ex, (uint64_t)ex->L * sizeof(double), &ex->dsum);
	rc = rc ? rc : dalloc(ex, (uint64_t)ex->tt->cfg.head_dim / 2 * 4, &ex->inv_freq);
	rc = rc ? rc : halloc(ex, N * 4 * (uint64_t)ex->M, &ex->host_losses);
	rc = rc ? rc : halloc(ex, N * 4 * (uint64_t)ex->M, &ex->h_tok);
	rc = rc ? rc : halloc(ex, N * 4 * (uint64_t)ex->M, &ex->h_tgt);
	if (!rc && (sw_layer_scratch_alloc(ex->be, &ex->d, &ex->s) ||
		    sw_lora_scratch_alloc(ex->be, &ex->d, &ex->o.lo, &ex->ls))) {
		char b1[32], b2[32];
		sw_error("lora: the device arena (%s) cannot hold one micro-batch's layer scratch (%s); "
			 "raise --gpu-mem or lower --micro-batch-tokens",
			 sw_fmt_size(ex->be->budget, b1, 32),
			 sw_fmt_size(sw_layer_scratch_bytes(&ex->d, ex->be->act) +
				     sw_lora_scratch_bytes(&ex->d, &ex->o.lo, ex->be->act), b2, 32));
		rc = -ENOMEM;
	}
	return rc;
}

/* The window (when some group streams): two device buffers, their events, the list of the
 * step's uses; with a group on NVMe, the ring of pinned stages. */
static int win_alloc(sw_lexec *ex, uint64_t streamed, int nvme)
{
	sw_backend *be = ex->be;
	int rc = be->ops->stream_create(be, &ex->hs);
	for (int i = 0; i < 2 && !rc; i++) {
		rc = dalloc(ex, streamed, &ex->win[i]);
		rc = rc ? rc : be->ops->event_create(be, &ex->ready[i]);
		rc = rc ? rc : be->ops->event_create(be, &ex->freed[i]);
	}
	for (int i = 0; i < LEXEC_NST && nvme && !rc; i++) {
		rc = halloc(ex, ex->chunk, &ex->pst[i].buf);
		rc = rc ? rc : be->ops->event_create(be, &ex->pst[i].ev);
	}
	return rc;
}

/* The NVMe chunk: the plan's, in whole stripe units (a read starts on a piece boundary), at
 * most the largest group rounded up to one. */
static uint64_t chunk_bytes(const sw_lexec *ex, uint64_t big)
{
	uint64_t S = ex->io ? sw_io_settings(ex->io)->stripe : 4096;
	uint64_t c = (uint64_t)ex->p->chunk_params * (uint64_t)ex->ab;
	c = (c + S - 1) / S * S;
	big = (big + S - 1) / S * S;
	return c < big ? c : big;
}

/* The window, the load's stage (freed after the load), the base's homes. */
static int base_alloc(sw_lexec *ex, sw_lexec_reader read, const void *src)
{
	uint64_t big = 0, streamed = 0;
	int nvme = 0;
	for (int g = 0; g < ex->G; g++) {
		uint64_t b = (uint64_t)ex->tt->g[g].numel * (uint64_t)ex->ab;
		sw_tier t = ex->p->base_tier[g];
		big = b > big ? b : big;
		streamed = t != SW_TIER_GPU && b > streamed ? b : streamed;
		nvme |= t == SW_TIER_NVME;
	}
	ex->chunk = chunk_bytes(ex, big);
	void *stage = NULL;
	int rc = halloc(ex, ex->chunk, &stage);
	if (!rc && streamed)
		rc = win_alloc(ex, streamed, nvme);
	for (int g = 0; g < ex->G && !rc; g++)
		rc = base_load(ex, read, src, stage, g);
	if (stage)
		ex->be->ops->host_free(ex->be, stage);
	return rc;
}

void sw_lexec_read_hf(const void *hf_model, int g, int64_t off, int64_t n, void *dst,
		      sw_dtype dst_dtype)
{
	sw_hf_read_range(hf_model, g, off, n, dst, dst_dtype);
}

int sw_lexec_create(sw_backend *be, sw_lexec_reader read, const void *src, const sw_plan_lora *p,
		    sw_io *io, const sw_lexec_opts *o, sw_lexec **out)
{
	*out = NULL;
	sw_lexec *ex = calloc(1, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	ex->be = be;
	ex->tt = p->in.tt;
	ex->p = p;
	ex->io = io;
	ex->o = *o;
	ex->L = p->n_layers;
	ex->G = p->ngroups;
	ex->M = (int)p->n_micro;
	ex->ab = sw_dtype_size(be->act);
	ex->d = sw_dims_make(&ex->tt->cfg, (int)p->in.micro_rows, (int)p->in.seq_len);
	ex->ra = -1;
	ex->base = calloc((size_t)ex->G, sizeof(lhome));
	ex->ad = calloc((size_t)ex->L, sizeof(lad));
	ex->use = calloc((size_t)(2 * ex->G + 1), sizeof(sw_lora_use));
	int rc = ex->base && ex->ad && ex->use ? be->ops->stream_create(be, &ex->cs) : -ENOMEM;
	rc = rc ? rc : act_alloc(ex);
	for (int l = 0; l < ex->L && !rc; l++)
		rc = ad_alloc(ex, l);
	rc = rc ? rc : base_alloc(ex, read, src);
	rc = rc ? rc : ckpt_alloc(ex);   /* last: device checkpoints take what is left */
	if (!rc) {
		float inv[ex->tt->cfg.head_dim / 2 + 1];
		sw_config_rope_inv_freq(&ex->tt->cfg, inv);
		be->ops->copy_h2d(be, ex->cs, ex->inv_freq, inv, (uint64_t)ex->tt->cfg.head_dim / 2 * 4);
		be->ops->stream_sync(be, ex->cs);
	}
	if (rc) {
		sw_lexec_destroy(ex);
		return rc;
	}
	*out = ex;
	return 0;
}

static void dfree(sw_lexec *ex, void *p)
{
	if (p)
		ex->be->ops->dev_free(ex->be, p);
}

static void hfree(sw_lexec *ex, void *p)
{
	if (p)
		ex->be->ops->host_free(ex->be, p);
}

static void stage_free(sw_lexec *ex, lstage *s)
{
	if (s->ev)
		ex->be->ops->event_destroy(ex->be, s->ev);
	hfree(ex, s->buf);
}

void sw_lexec_destroy(sw_lexec *ex)
{
	if (!ex)
		return;
	lexec_drain(ex);   /* nothing in flight reads or writes a buffer freed below */
	if (ex->cs)
		ex->be->ops->stream_sync(ex->be, ex->cs);
	if (ex->hs)
		ex->be->ops->stream_sync(ex->be, ex->hs);
	for (int i = 0; i < 2; i++) {
		if (ex->ready[i])
			ex->be->ops->event_destroy(ex->be, ex->ready[i]);
		if (ex->freed[i])
			ex->be->ops->event_destroy(ex->be, ex->freed[i]);
	}
	for (int i = 0; i < LEXEC_NST; i++)
		stage_free(ex, &ex->pst[i]);
	for (int i = 0; i < LEXEC_NCK_MAX; i++)
		stage_free(ex, &ex->cst[i]);
	if (ex->hs)
		ex->be->ops->stream_destroy(ex->be, ex->hs);
	free(ex->use);
	for (int g = 0; ex->base && g < ex->G; g++) {
		dfree(ex, ex->base[g].dev);
		hfree(ex, ex->base[g].host);
	}
	for (int l = 0; ex->ad && l < ex->L; l++) {
		void (*fr)(sw_lexec *, void *) = ex->ad[l].tier == SW_TIER_GPU ? dfree : hfree;
		void *all[] = { ex->ad[l].p32, ex->ad[l].m, ex->ad[l].v, ex->ad[l].g, ex->ad[l].p16 };
		for (int i = 0; i < 5; i++)
			fr(ex, all[i]);
	}
	void *dev[] = { ex->win[0], ex->win[1], ex->ad_p16_dev, ex->ad_g_dev, ex->xa, ex->xb,
			ex->tok, ex->tgt, ex->losses, ex->head_sink, ex->dsum, ex->inv_freq };
	for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++)
		dfree(ex, dev[i]);
	sw_layer_scratch_free(ex->be, &ex->s);
	sw_lora_scratch_free(ex->be, &ex->ls);
	hfree(ex, ex->ckpt);
	hfree(ex, ex->host_losses);
	hfree(ex, ex->h_tok);
	hfree(ex, ex->h_tgt);
	(ex->carry_dev ? dfree : hfree)(ex, ex->carry);
	for (int64_t i = 0; ex->ck_dev && i < (int64_t)ex->L * ex->M; i++)
		dfree(ex, ex->ck_dev[i]);
	free(ex->ck_dev);
	free(ex->ck_host);
	free(ex->ck_ext);
	if (ex->cs)
		ex->be->ops->stream_destroy(ex->be, ex->cs);
	free(ex->base);
	free(ex->ad);
	free(ex);
}
