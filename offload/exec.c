/* The offload executor (offload/exec.h has the schedule; docs/architecture.md the choices).
 *
 * Threads and ownership. The executor thread (the caller) issues all GPU work: ops on the
 * compute stream `cs`, P16 prefetches on the copy stream `hs`, gradient copies to the host on
 * `ds`; NVMe I/O is submitted from the executor thread (P16, checkpoints) or the optimizer
 * thread (optimizer state). Ownership of a buffer passes only through
 *   - events: a window slot is filled on hs after hs waited for the slot's 'free' event (recorded
 *     on cs after its last use), and cs waits for its 'ready' event; a GPU gradient buffer is
 *     reused after cs waited for its 'free' event (recorded after the D2H or the GPU update);
 *   - queue messages: a pinned host gradient buffer goes to the optimizer thread with a message
 *     carrying the D2H event (which the thread waits for) and comes back when the thread marks
 *     it free (condition variable); the executor waits for the queue to drain at the step end.
 * Nothing relies on timing, so the CPU backend (synchronous) and CUDA (asynchronous) agree. */
#include "offload/exec.h"
#include "offload/window.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/model.h"
#include "core/pool.h"
#include "core/safetensors.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSTAGE SW_PLAN_OPT_STAGES  /* staging sets per stream (read-ahead / write-behind) */
#define OPT_Q SW_PLAN_HOST_GRADS   /* most pinned host gradient buffers = optimizer queue depth */

typedef struct grp {
	sw_tier p16_tier, opt_tier;
	void *p16_dev;                     /* resident P16 */
	float *opt_dev[3];                 /* P32, m, v on the GPU */
	void *p16_host;                    /* P16 home on the host */
	float *opt_host[3];
	sw_io_extent p16_ext;              /* P16 home on NVMe (one slot) */
	sw_io_extent opt_ext[2][3];        /* P32, m, v on NVMe, per slot */
} grp;

/* A checkpoint staging slot: free, holding a read of checkpoint (l, m) in flight or done but
 * not yet consumed, or holding a write in flight. Its event marks the end of the last GPU copy
 * to or from it. */
#define CK_MAX_SLOTS SW_PLAN_CKPT_SLOTS
enum { CK_FREE, CK_READING, CK_WRITING };
typedef struct ck_slot {
	int state, l, m;
	sw_io_req req;
	double t0;                         /* submitted at (for the trace) */
} ck_slot;

typedef struct ckpt {
	sw_tier tier;
	void *dev, *host;
	sw_io_extent ext;
} ckpt;

typedef struct span { int track; double t0, t1; char name[24]; } span;

typedef struct opt_msg { int group, hb; double scale; } opt_msg;

struct sw_exec {
	sw_backend *be;
	const sw_table *tt;
	const sw_plan *p;
	sw_io *io;
	sw_exec_opts o;
	sw_dims d;
	int L, M, G, H, ab, tied;
	sw_stream *cs, *hs, *ds;
	grp *g;
	/* P16 window: K buffers filled as the schedule (offload/window.h) says */
	int K;
	void **win;
	sw_window sched;
	uint8_t *streamed;                 /* (G) 1: the group's P16 is not resident */
	sw_event **win_ready, **win_free;
	void *head_small;                  /* tied + streamed head: the final norm's P16 */
	/* gradients */
	int ngb, gb_next;
	float **gbuf;
	sw_event **gb_free;
	float *tgrad;                      /* tied: the embedding's gradient through backward */
	double *dsum;                      /* (G) device */
	/* activations */
	void *carry_dev, *carry_host;      /* (M, N, C) act */
	void *xa, *xo, *xc;                /* (N, C) act device */
	int32_t *tok, *tgt;
	float *losses;
	float *inv_freq;
	sw_layer_scratch s;
	ckpt *ck;                          /* (L, M) */
	/* checkpoints on NVMe: ck_nslot pinned staging slots shared by the forward's write-behind
	 * (ring position ck_next) and the backward's read-ahead (ring position ck_ra_slot, next
	 * checkpoint to read (ck_ra_l, ck_ra_m) in backward order) */
	void *ck_stage[CK_MAX_SLOTS];
	sw_event *ck_ev[CK_MAX_SLOTS];
	ck_slot cks[CK_MAX_SLOTS];
	int ck_nslot, ck_next, ck_ra_slot, ck_ra_l, ck_ra_m;
	/* P16 staging from NVMe */
	void *p16_stage[NSTAGE];
	sw_event *p16_ev[NSTAGE];
	int p16_next;
	int64_t chunk;                     /* parameters per I/O chunk */
	/* optimizer thread */
	sw_pool *pool;
	int nhg;                           /* pinned gradient buffers (the optimizer queue) */
	float *hgrad[OPT_Q];
	sw_event *hgrad_ev[OPT_Q];
	int hgrad_busy[OPT_Q];
	void *opt_stage[NSTAGE];           /* P32|m|v|P16 of one chunk */
	float *xfer;                       /* one chunk of fp32 for load / save (sw_exec_xfer) */
	pthread_t thr;
	int thr_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	opt_msg q[OPT_Q];
	int qn, qhead, busy, quit, err;
	int64_t step;
	uint64_t host_bytes;                /* pinned host memory allocated */
	uint64_t took[SW_TIER_COUNT][SW_PURPOSE_COUNT];   /* what the allocation took, by cell */
	double lr;
	int slot;                          /* NVMe optimizer slot holding the current state */
	int64_t skipped_elems;
	/* measurement */
	double t_step0;
	sw_event *ev0;
	sw_event **sev;                    /* event spans of the step: begin/end pairs */
	int *strack;
	int nsev, maxsev;
	int64_t sev_dropped;    /* device spans not recorded (the event pool was full) */
	int sev_warned;
	span *spans;
	int nspans, maxspans;
	double t_origin;
	pthread_mutex_t smu;
	FILE *trace;
	int trace_first;
};

int64_t sw_exec_chunk(const sw_plan *p, const sw_table *tt)
{
	(void)tt;
	return p->chunk_params;
}

/* ---------------------------------------------------------------- measurement ---------- */

static int ck_drain(sw_exec *ex);

static void span_add(sw_exec *ex, int track, const char *name, double t0, double t1)
{
	pthread_mutex_lock(&ex->smu);
	if (ex->nspans == ex->maxspans) {
		int n = ex->maxspans ? ex->maxspans * 2 : 1024;
		span *s = realloc(ex->spans, (size_t)n * sizeof(span));
		if (!s) {
			pthread_mutex_unlock(&ex->smu);
			return;
		}
		ex->spans = s;
		ex->maxspans = n;
	}
	span *s = &ex->spans[ex->nspans++];
	s->track = track;
	s->t0 = t0;
	s->t1 = t1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	pthread_mutex_unlock(&ex->smu);
}

/* Device spans: an event pair recorded on a stream, converted after the step's sync. */
static int gspan_begin(sw_exec *ex, sw_stream *st, int track)
{
	if (ex->nsev + 2 > ex->maxsev) {
		ex->sev_dropped++;
		return -1;
	}
	int i = ex->nsev;
	ex->nsev += 2;
	ex->strack[i] = track;
	ex->be->ops->event_record(ex->be, ex->sev[i], st);
	return i;
}

static void gspan_end(sw_exec *ex, sw_stream *st, int i)
{
	if (i >= 0)
		ex->be->ops->event_record(ex->be, ex->sev[i + 1], st);
}

static const char *track_name[SW_TRACK_COUNT] = {
	"compute", "H2D", "D2H", "NVMe read", "NVMe write", "optimizer",
};

/* ---------------------------------------------------------------- allocation ----------- */

static int dalloc(sw_exec *ex, uint64_t bytes, void *out)
{
	return ex->be->ops->dev_alloc(ex->be, bytes ? bytes : 1, (void **)out);
}

static int halloc(sw_exec *ex, uint64_t bytes, void *out)
{
	bytes = (bytes + 4095) / 4096 * 4096;
	int rc = ex->be->ops->host_alloc(ex->be, bytes, (void **)out);
	if (!rc)
		ex->host_bytes += bytes;
	return rc;
}

uint64_t sw_exec_host_bytes(const sw_exec *ex) { return ex->host_bytes; }

void sw_exec_taken(const sw_exec *ex, uint64_t out[SW_TIER_COUNT][SW_PURPOSE_COUNT])
{
	memcpy(out, ex->took, sizeof(ex->took));
}

static uint64_t up4k(uint64_t b) { return (b + 4095) / 4096 * 4096; }

static int ealloc(sw_exec *ex, uint64_t bytes, sw_io_extent *e)
{
	if (!ex->io) {
		sw_error("executor: the plan puts state on NVMe but no --nvme path is open");
		return -EINVAL;
	}
	return sw_io_extent_alloc(ex->io, up4k(bytes), e);
}

static int io_read(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, void *buf)
{
	sw_io_req r;
	double t0 = sw_now();
	int rc = sw_io_submit_read(ex->io, &r, e, off, len, buf);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc)
		sw_error("executor: NVMe read failed: %s", sw_io_req_error(&r));
	span_add(ex, SW_TRACK_NVME_READ, "read", t0, sw_now());
	return rc;
}

/* Read length: whole 4 KiB pages (the extent is rounded up; the tail is ours). */
static uint64_t io_len(uint64_t bytes) { return up4k(bytes); }

/* ---------------------------------------------------------------- the buffer table ----- */

/* Where buffer i of row b goes (memory tiers). */
static void **buf_mem(sw_exec *ex, const sw_plan_buf *b, int64_t i)
{
	grp *g = b->owner >= 0 ? &ex->g[b->owner] : NULL;
	int gpu = b->tier == SW_TIER_GPU;
	switch (b->kind) {
	case SW_BUF_P16: return gpu ? &g->p16_dev : &g->p16_host;
	case SW_BUF_OPT: return (void **)(gpu ? &g->opt_dev[b->state] : &g->opt_host[b->state]);
	case SW_BUF_CARRY: return gpu ? &ex->carry_dev : &ex->carry_host;
	case SW_BUF_WINDOW: return &ex->win[i];
	case SW_BUF_GRAD: return (void **)&ex->gbuf[i];
	case SW_BUF_HOST_GRAD: return (void **)&ex->hgrad[i];
	case SW_BUF_TIED_GRAD: return (void **)&ex->tgrad;
	case SW_BUF_XIO: return i == 0 ? &ex->xa : i == 1 ? &ex->xo : &ex->xc;
	case SW_BUF_TOKENS: return i == 0 ? (void **)&ex->tok : i == 1 ? (void **)&ex->tgt : (void **)&ex->losses;
	case SW_BUF_INV_FREQ: return (void **)&ex->inv_freq;
	case SW_BUF_NORM_SUMS: return (void **)&ex->dsum;
	case SW_BUF_HEAD_NORM: return &ex->head_small;
	case SW_BUF_STAGE_P16: return &ex->p16_stage[i];
	case SW_BUF_STAGE_OPT: return &ex->opt_stage[i];
	case SW_BUF_STAGE_CKPT: return &ex->ck_stage[i];
	case SW_BUF_XFER: return (void **)&ex->xfer;
	default: return NULL;
	}
}

static int alloc_one(sw_exec *ex, const sw_plan_buf *b, int64_t i)
{
	if (b->tier == SW_TIER_NVME) {
		grp *g = &ex->g[b->owner];
		SW_ASSERT(b->kind == SW_BUF_P16 || b->kind == SW_BUF_OPT);
		return ealloc(ex, b->bytes, b->kind == SW_BUF_P16 ? &g->p16_ext : &g->opt_ext[b->slot][b->state]);
	}
	void **dst = buf_mem(ex, b, i);
	SW_ASSERT(dst && !*dst);
	return b->tier == SW_TIER_GPU ? dalloc(ex, b->bytes, dst) : halloc(ex, b->bytes, dst);
}

/* The checkpoints the plan puts on the row's tier, in (layer, micro-batch) order. */
static int alloc_ckpts(sw_exec *ex, const sw_plan_buf *b)
{
	int64_t n = 0;
	for (int i = 0; i < ex->L * ex->M; i++) {
		ckpt *k = &ex->ck[i];
		if (k->tier != b->tier)
			continue;
		int rc = b->tier == SW_TIER_GPU ? dalloc(ex, b->bytes, &k->dev) :
			 b->tier == SW_TIER_HOST ? halloc(ex, b->bytes, &k->host) : ealloc(ex, b->bytes, &k->ext);
		if (rc)
			return rc;
		n++;
	}
	SW_ASSERT(n == b->count);
	return 0;
}

/* Bytes the tier's allocator has handed out so far (the GPU arena's own count, pinned host
 * pages, the NVMe engine's extents with their alignment skips). */
static uint64_t tier_taken(const sw_exec *ex, sw_tier t)
{
	if (t == SW_TIER_GPU)
		return ex->be->used;
	if (t == SW_TIER_HOST)
		return ex->host_bytes;
	return ex->io ? sw_io_allocated(ex->io) : 0;
}

static int alloc_row(sw_exec *ex, const sw_plan_buf *b)
{
	uint64_t before = tier_taken(ex, b->tier);
	int rc = 0;
	if (b->kind == SW_BUF_SCRATCH)
		rc = sw_layer_scratch_alloc(ex->be, &ex->d, &ex->s);
	else if (b->kind == SW_BUF_CKPT)
		rc = alloc_ckpts(ex, b);
	else
		for (int64_t i = 0; i < b->count && !rc; i++)
			rc = alloc_one(ex, b, i);
	ex->took[b->tier][b->purpose] += tier_taken(ex, b->tier) - before;
	return rc;
}

/* What the allocation took against the plan's table, cell by cell: any difference is a bug. */
static int alloc_check(sw_exec *ex)
{
	uint64_t want[SW_TIER_COUNT][SW_PURPOSE_COUNT];
	sw_plan_allocated(ex->p, want);
	int rc = 0;
	for (int t = 0; t < SW_TIER_COUNT; t++)
		for (int u = 0; u < SW_PURPOSE_COUNT; u++)
			if (ex->took[t][u] != want[t][u]) {
				sw_error("executor: internal error: %s %s took %llu bytes, the plan's buffer "
					 "table says %llu; please report this", sw_plan_tier_name((sw_tier)t),
					 sw_plan_purpose_name((sw_plan_purpose)u),
					 (unsigned long long)ex->took[t][u], (unsigned long long)want[t][u]);
				rc = -EPROTO;
			}
	return rc;
}

/* Buffer counts from the table, and the arrays that hold them. */
static int table_counts(sw_exec *ex)
{
	const sw_plan *p = ex->p;
	for (int r = 0; r < p->nbuf; r++) {
		const sw_plan_buf *b = &p->buf[r];
		int c = (int)b->count;
		switch (b->kind) {
		case SW_BUF_WINDOW: ex->K = c; break;
		case SW_BUF_GRAD: ex->ngb = c; break;
		case SW_BUF_HOST_GRAD: ex->nhg = c; break;
		case SW_BUF_STAGE_CKPT: ex->ck_nslot = c; break;
		default: break;
		}
	}
	SW_ASSERT(ex->nhg <= OPT_Q && ex->ck_nslot <= CK_MAX_SLOTS && ex->K <= SW_WINDOW_MAX);
	ex->g = calloc((size_t)ex->G, sizeof(grp));
	ex->ck = calloc((size_t)ex->L * (size_t)ex->M, sizeof(ckpt));
	ex->streamed = calloc((size_t)ex->G, 1);
	ex->gbuf = calloc((size_t)ex->ngb + 1, sizeof(float *));
	ex->gb_free = calloc((size_t)ex->ngb + 1, sizeof(sw_event *));
	ex->win = calloc((size_t)ex->K + 1, sizeof(void *));
	ex->win_ready = calloc((size_t)ex->K + 1, sizeof(sw_event *));
	ex->win_free = calloc((size_t)ex->K + 1, sizeof(sw_event *));
	if (!ex->g || !ex->ck || !ex->streamed || !ex->gbuf || !ex->gb_free || !ex->win ||
	    !ex->win_ready || !ex->win_free)
		return -ENOMEM;
	for (int gi = 0; gi < ex->G; gi++) {
		ex->g[gi].p16_tier = p->tier[gi][SW_STATE_P16];
		ex->g[gi].opt_tier = p->tier[gi][SW_STATE_P32];
		ex->streamed[gi] = ex->g[gi].p16_tier != SW_TIER_GPU;
	}
	for (int l = 0; l < ex->L; l++)
		for (int m = 0; m < ex->M; m++)
			ex->ck[l * ex->M + m].tier = sw_plan_ckpt_tier(p, l, m);
	sw_window_init(&ex->sched, ex->K);
	return 0;
}

/* The events that hand the buffers over (offload/exec.c's header). */
static int events_create(sw_exec *ex)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int rc = 0;
	for (int i = 0; i < ex->ngb && !rc; i++)
		rc = op->event_create(be, &ex->gb_free[i]);
	for (int i = 0; i < ex->K && !rc; i++)
		if (!(rc = op->event_create(be, &ex->win_ready[i])))
			rc = op->event_create(be, &ex->win_free[i]);
	for (int i = 0; i < ex->nhg && !rc; i++)
		rc = op->event_create(be, &ex->hgrad_ev[i]);
	for (int i = 0; i < ex->ck_nslot && !rc; i++)
		rc = op->event_create(be, &ex->ck_ev[i]);
	for (int i = 0; i < NSTAGE && !rc && ex->p16_stage[0]; i++)
		rc = op->event_create(be, &ex->p16_ev[i]);
	/* device spans per step: forward ~2 per layer and micro-batch (checkpoint out, compute),
	 * each backward pass ~4 (checkpoint in, compute, carry), two passes with clipping, plus a
	 * fetch and a gradient copy per group; two events each. Overflow drops spans (counted,
	 * warned about once: the busy times would undercount) */
	ex->maxsev = 2 * (2 + 4 * 2 + 2) * (ex->G + 2) * (ex->M + 2) + 64;
	ex->sev = calloc((size_t)ex->maxsev, sizeof(sw_event *));
	ex->strack = calloc((size_t)ex->maxsev, sizeof(int));
	if (!rc && (!ex->sev || !ex->strack))
		rc = -ENOMEM;
	for (int i = 0; i < ex->maxsev && !rc; i++)
		rc = op->event_create(be, &ex->sev[i]);
	return rc;
}

static void *opt_thread(void *arg);

/* The optimizer thread (when any group is updated by the CPU) and the trace file. */
static int start_side(sw_exec *ex)
{
	if (ex->nhg) {
		ex->pool = sw_pool_create(ex->o.cpu_threads, NULL);
		if (!ex->pool)
			return -ENOMEM;
		int rc = -pthread_create(&ex->thr, NULL, opt_thread, ex);
		if (rc)
			return rc;
		ex->thr_started = 1;
	}
	if (!ex->o.trace)
		return 0;
	ex->trace = fopen(ex->o.trace, "w");
	if (!ex->trace) {
		int rc = -errno;
		sw_error("trace %s: %s; give a writable --trace path", ex->o.trace, strerror(errno));
		return rc;
	}
	fprintf(ex->trace, "{\"traceEvents\":[\n");
	for (int t = 0; t < SW_TRACK_COUNT; t++)
		fprintf(ex->trace, "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
			"\"args\":{\"name\":\"%s\"}}", t ? ",\n" : "", t + 1, track_name[t]);
	ex->trace_first = 0;
	return 0;
}

int sw_exec_create(sw_backend *be, const sw_table *tt, const sw_plan *plan, sw_io *io,
		   const sw_exec_opts *o, sw_exec **out)
{
	sw_exec *ex = calloc(1, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	ex->be = be;
	ex->tt = tt;
	ex->p = plan;
	ex->io = io;
	ex->o = *o;
	ex->L = (int)tt->cfg.n_layers;
	ex->M = (int)plan->n_micro;
	ex->G = tt->ngroups;
	ex->H = ex->G - 1;
	ex->ab = sw_dtype_size(be->act);
	ex->tied = tt->cfg.tie_embeddings;
	ex->d = sw_dims_make(&tt->cfg, (int)plan->in.micro_rows, (int)plan->in.seq_len);
	ex->chunk = plan->chunk_params;
	ex->t_origin = sw_now();
	ex->ck_ra_l = -1;
	pthread_mutex_init(&ex->mu, NULL);
	pthread_cond_init(&ex->cv, NULL);
	pthread_mutex_init(&ex->smu, NULL);
	ex->trace_first = 1;
	const sw_backend_ops *op = be->ops;
	int rc = table_counts(ex);
	if (!rc && ((rc = op->stream_create(be, &ex->cs)) || (rc = op->stream_create(be, &ex->hs)) ||
		    (rc = op->stream_create(be, &ex->ds)) || (rc = op->event_create(be, &ex->ev0))))
		goto err;
	/* every allocation: one loop over the plan's buffer table, in its order */
	for (int r = 0; r < plan->nbuf && !rc; r++)
		if (plan->buf[r].kind != SW_BUF_HELD)
			rc = alloc_row(ex, &plan->buf[r]);
	if (rc || (rc = alloc_check(ex)) || (rc = events_create(ex)))
		goto err;
	float inv[1024];
	SW_ASSERT(tt->cfg.head_dim / 2 <= 1024);
	sw_config_rope_inv_freq(&tt->cfg, inv);
	op->copy_h2d(be, ex->cs, ex->inv_freq, inv, (uint64_t)tt->cfg.head_dim / 2 * 4);
	op->stream_sync(be, ex->cs);
	if ((rc = start_side(ex)))
		goto err;
	*out = ex;
	return 0;
err:
	if (rc == -ENOMEM) {
		char b1[32], b2[32];
		sw_error("executor: out of memory allocating the placement (backend %s arena %s, %s in "
			 "use); raise --gpu-mem / --cpu-mem", be->name, sw_fmt_size(be->budget, b1, 32),
			 sw_fmt_size(be->used, b2, 32));
	}
	sw_exec_destroy(ex);
	return rc;
}

static void trace_flush(sw_exec *ex)
{
	if (!ex->trace)
		return;
	for (int i = 0; i < ex->nspans; i++) {
		span *s = &ex->spans[i];
		fprintf(ex->trace, "%s{\"name\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.1f,"
			"\"dur\":%.1f}", ex->trace_first ? "" : ",\n", s->name, s->track + 1,
			(s->t0 - ex->t_origin) * 1e6, (s->t1 - s->t0) * 1e6);
		ex->trace_first = 0;
	}
	ex->nspans = 0;
}

void sw_exec_destroy(sw_exec *ex)
{
	if (!ex)
		return;
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	if (ex->thr_started) {
		pthread_mutex_lock(&ex->mu);
		ex->quit = 1;
		pthread_cond_broadcast(&ex->cv);
		pthread_mutex_unlock(&ex->mu);
		pthread_join(ex->thr, NULL);
	}
	if (ex->cs)
		op->stream_sync(be, ex->cs);
	if (ex->hs)
		op->stream_sync(be, ex->hs);
	if (ex->ds)
		op->stream_sync(be, ex->ds);
	if (ex->trace) {
		trace_flush(ex);
		fprintf(ex->trace, "\n]}\n");
		fclose(ex->trace);
	}
#define DF(x) do { if (x) op->dev_free(be, (x)); } while (0)
#define HF(x) do { if (x) op->host_free(be, (x)); } while (0)
#define EF(x) do { if (x) op->event_destroy(be, (x)); } while (0)
	if (ex->ck)
		for (int i = 0; i < ex->L * ex->M; i++) {
			DF(ex->ck[i].dev);
			HF(ex->ck[i].host);
		}
	if (ex->g)
		for (int gi = 0; gi < ex->G; gi++) {
			DF(ex->g[gi].p16_dev);
			HF(ex->g[gi].p16_host);
			for (int k = 0; k < 3; k++) {
				DF(ex->g[gi].opt_dev[k]);
				HF(ex->g[gi].opt_host[k]);
			}
		}
	for (int i = 0; i < ex->ngb && ex->gbuf; i++) {
		DF(ex->gbuf[i]);
		EF(ex->gb_free[i]);
	}
	for (int i = 0; i < ex->K && ex->win; i++) {
		DF(ex->win[i]);
		EF(ex->win_ready[i]);
		EF(ex->win_free[i]);
	}
	for (int i = 0; i < OPT_Q; i++) {
		HF(ex->hgrad[i]);
		EF(ex->hgrad_ev[i]);
	}
	ck_drain(ex);
	for (int i = 0; i < ex->ck_nslot; i++) {
		HF(ex->ck_stage[i]);
		EF(ex->ck_ev[i]);
	}
	for (int i = 0; i < NSTAGE; i++) {
		HF(ex->p16_stage[i]);
		EF(ex->p16_ev[i]);
		HF(ex->opt_stage[i]);
	}
	HF(ex->xfer);
	for (int i = 0; i < ex->maxsev && ex->sev; i++)
		EF(ex->sev[i]);
	DF(ex->tgrad);
	DF(ex->head_small);
	DF(ex->dsum);
	DF(ex->xa);
	DF(ex->xo);
	DF(ex->xc);
	DF(ex->tok);
	DF(ex->tgt);
	DF(ex->losses);
	DF(ex->inv_freq);
	DF(ex->carry_dev);
	HF(ex->carry_host);
	sw_layer_scratch_free(be, &ex->s);
	EF(ex->ev0);
#undef DF
#undef HF
#undef EF
	if (ex->cs)
		op->stream_destroy(be, ex->cs);
	if (ex->hs)
		op->stream_destroy(be, ex->hs);
	if (ex->ds)
		op->stream_destroy(be, ex->ds);
	if (ex->pool)
		sw_pool_destroy(ex->pool);
	free(ex->g);
	free(ex->ck);
	free(ex->gbuf);
	free(ex->gb_free);
	free(ex->win);
	free(ex->streamed);
	free(ex->win_ready);
	free(ex->win_free);
	free(ex->sev);
	free(ex->strack);
	free(ex->spans);
	pthread_mutex_destroy(&ex->mu);
	pthread_cond_destroy(&ex->cv);
	pthread_mutex_destroy(&ex->smu);
	free(ex);
}

/* ---------------------------------------------------------------- group state ---------- */

/* Byte offset of element off in an optimizer-state extent. */
static uint64_t opt_off(int64_t off) { return (uint64_t)off * 4; }

static int io_write_wait(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, const void *buf)
{
	sw_io_req r;
	double t0 = sw_now();
	int rc = sw_io_submit_write(ex->io, &r, e, off, len, buf);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc)
		sw_error("executor: NVMe write failed: %s", sw_io_req_error(&r));
	span_add(ex, SW_TRACK_NVME_WRITE, "write", t0, sw_now());
	return rc;
}

/* Writes n elements starting at element 'off' of a state whose extent holds 'total' elements;
 * lengths rounded to 4 KiB (the last chunk runs into the extent's padding). */
static uint64_t chunk_len(int64_t off, int64_t n, int64_t total, int esz)
{
	(void)off; (void)total;
	return io_len((uint64_t)n * (uint64_t)esz);
}

float *sw_exec_xfer(sw_exec *ex) { return ex->xfer; }
int64_t sw_exec_xfer_len(const sw_exec *ex) { return ex->chunk; }

/* P16 of a range from its fp32 masters: round to nearest even on the host (the same rounding
 * as the backends' cast and the AdamW p16 output), so every placement starts from the same bits.
 * The GPU tier goes through a small bounce buffer in pieces; host and NVMe tiers convert in
 * place (into the cache, or into the NVMe staging buffer). */
static int put_p16(sw_exec *ex, int gi, int64_t off, int64_t n, const float *src)
{
	sw_backend *be = ex->be;
	grp *g = &ex->g[gi];
	uint64_t ab = (uint64_t)ex->ab;
	if (g->p16_tier == SW_TIER_HOST) {
		sw_convert((char *)g->p16_host + (uint64_t)off * ab, be->act, src, SW_DTYPE_F32, n);
		return 0;
	}
	if (g->p16_tier == SW_TIER_NVME) {
		sw_convert(ex->p16_stage[0], be->act, src, SW_DTYPE_F32, n);
		return io_write_wait(ex, g->p16_ext, (uint64_t)off * ab, chunk_len(off, n, 0, ex->ab),
				     ex->p16_stage[0]);
	}
	enum { PIECE = 1 << 12 };   /* a small bounce buffer: host memory outside the table */
	uint8_t *bounce = malloc((size_t)PIECE * ab);
	if (!bounce)
		return -ENOMEM;
	for (int64_t o = 0; o < n; o += PIECE) {
		int64_t c = n - o < PIECE ? n - o : PIECE;
		sw_convert(bounce, be->act, src + o, SW_DTYPE_F32, c);
		be->ops->copy_h2d(be, ex->cs, (char *)g->p16_dev + (uint64_t)(off + o) * ab, bounce,
				  (uint64_t)c * ab);
		be->ops->stream_sync(be, ex->cs);
	}
	free(bounce);
	return 0;
}

/* Index of P32/m/v in a group's optimizer arrays, after checking that [off, off + n) is one
 * whole chunk (or the group's last). */
static int state_slot(const sw_exec *ex, int gi, sw_state state, int64_t off, int64_t n)
{
	int64_t numel = ex->tt->g[gi].numel;
	SW_ASSERT(state == SW_STATE_P32 || state == SW_STATE_M || state == SW_STATE_V);
	SW_ASSERT(off >= 0 && off % ex->chunk == 0 && n > 0 && n <= ex->chunk &&
		  (off + n == numel || n == ex->chunk));
	return state == SW_STATE_P32 ? 0 : state == SW_STATE_M ? 1 : 2;
}

int sw_exec_put(sw_exec *ex, int gi, sw_state state, int64_t off, int64_t n, const float *src)
{
	sw_backend *be = ex->be;
	grp *g = &ex->g[gi];
	SW_ASSERT(src || state != SW_STATE_P32);
	int k = state_slot(ex, gi, state, off, n), rc = 0;
	uint64_t bytes = (uint64_t)n * 4;
	if (g->opt_tier == SW_TIER_GPU) {
		if (src)
			be->ops->copy_h2d(be, ex->cs, g->opt_dev[k] + off, src, bytes);
		else
			be->ops->memset0(be, ex->cs, g->opt_dev[k] + off, bytes);
		be->ops->stream_sync(be, ex->cs);
	} else if (g->opt_tier == SW_TIER_HOST) {
		if (src)
			memcpy(g->opt_host[k] + off, src, bytes);
		else
			memset(g->opt_host[k] + off, 0, bytes);
	} else {
		if (src)
			memcpy(ex->opt_stage[0], src, bytes);
		else
			memset(ex->opt_stage[0], 0, bytes);
		rc = io_write_wait(ex, g->opt_ext[ex->slot][k], opt_off(off), chunk_len(off, n, 0, 4),
				   ex->opt_stage[0]);
	}
	if (!rc && state == SW_STATE_P32)
		rc = put_p16(ex, gi, off, n, src);
	return rc;
}

int sw_exec_take(sw_exec *ex, int gi, sw_state state, int64_t off, int64_t n, float *dst)
{
	sw_backend *be = ex->be;
	grp *g = &ex->g[gi];
	int k = state_slot(ex, gi, state, off, n);
	uint64_t bytes = (uint64_t)n * 4;
	if (g->opt_tier == SW_TIER_GPU) {
		be->ops->copy_d2h(be, ex->cs, dst, g->opt_dev[k] + off, bytes);
		be->ops->stream_sync(be, ex->cs);
		return 0;
	}
	if (g->opt_tier == SW_TIER_HOST) {
		memcpy(dst, g->opt_host[k] + off, bytes);
		return 0;
	}
	int rc = io_read(ex, g->opt_ext[ex->slot][k], opt_off(off), chunk_len(off, n, 0, 4),
			 ex->opt_stage[0]);
	if (!rc)
		memcpy(dst, ex->opt_stage[0], bytes);
	return rc;
}

int sw_exec_set_group(sw_exec *ex, int gi, const float *host)
{
	int64_t n = ex->tt->g[gi].numel;
	int rc = 0;
	for (int64_t off = 0; off < n && !rc; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		if (!(rc = sw_exec_put(ex, gi, SW_STATE_P32, off, c, host + off)) &&
		    !(rc = sw_exec_put(ex, gi, SW_STATE_M, off, c, NULL)))
			rc = sw_exec_put(ex, gi, SW_STATE_V, off, c, NULL);
	}
	return rc;
}

int sw_exec_get_group(sw_exec *ex, int gi, sw_state state, float *host)
{
	int64_t n = ex->tt->g[gi].numel;
	int rc = 0;
	for (int64_t off = 0; off < n && !rc; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		rc = sw_exec_take(ex, gi, state, off, c, host + off);
	}
	return rc;
}

/* ---------------------------------------------------------------- the optimizer -------- */

/* AdamW of elements [off, off+n) of group gi, tensor by tensor (each its own decay). */
static void adam_range(sw_exec *ex, int gi, int64_t off, int64_t n, float *p32, float *m, float *v,
		       const float *gr, void *p16, double scale)
{
	const sw_table *tt = ex->tt;
	const sw_group *grp_ = &tt->g[gi];
	for (int i = grp_->first; i < grp_->first + grp_->count; i++) {
		const sw_tensor *t = &tt->t[i];
		int64_t a = t->offset > off ? t->offset : off;
		int64_t b = t->offset + t->numel < off + n ? t->offset + t->numel : off + n;
		if (a >= b)
			continue;
		sw_adamw_args args = sw_adamw_args_make(&ex->o.adam, ex->lr, ex->step, t->decay, scale);
		int64_t r = a - off;
		ex->skipped_elems += sw_adamw_update_parallel(ex->pool, p32 + r, m + r, v + r, gr + r,
							      (char *)p16 + r * ex->ab, ex->be->act,
							      b - a, &args);
	}
}

/* The CPU update of one group from pinned gradient hg. 0 or -errno (I/O). */
static int opt_group(sw_exec *ex, int gi, const float *hg, double scale)
{
	grp *g = &ex->g[gi];
	int64_t n = ex->tt->g[gi].numel;
	double t0 = sw_now();
	int rc = 0;
	if (g->opt_tier == SW_TIER_HOST) {
		for (int64_t off = 0; off < n; off += ex->chunk) {
			int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
			void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab
								: ex->opt_stage[0];
			adam_range(ex, gi, off, c, g->opt_host[0] + off, g->opt_host[1] + off,
				   g->opt_host[2] + off, hg + off, p16, scale);
			if (g->p16_tier == SW_TIER_NVME &&
			    (rc = io_write_wait(ex, g->p16_ext, (uint64_t)off * (uint64_t)ex->ab,
						chunk_len(off, c, n, ex->ab), p16)))
				break;
		}
		span_add(ex, SW_TRACK_OPTIM, "adam", t0, sw_now());
		return rc;
	}
	/* NVMe state: chunk c read into staging set c%2 before chunk c-1 is written back
	 * (read-ahead before write-behind); writes of set s complete before set s is read again */
	int rs = ex->slot, ws = ex->p->in.slots == 2 ? 1 - ex->slot : ex->slot;
	int64_t nch = (n + ex->chunk - 1) / ex->chunk;
	sw_io_req rd[NSTAGE][3], wr[NSTAGE][4];
	int wr_n[NSTAGE] = { 0 };
	uint64_t cb = up4k((uint64_t)ex->chunk * 4), pb = up4k((uint64_t)ex->chunk * (uint64_t)ex->ab);
	(void)pb;
	double tr0 = 0;
	for (int64_t ci = 0; ci <= nch && !rc; ci++) {
		int s = (int)(ci % NSTAGE);
		if (ci < nch) {
			/* free set s: wait for its write-behind */
			for (int w = 0; w < wr_n[s]; w++) {
				double tw = sw_now();
				int r = sw_io_wait(ex->io, &wr[s][w]);
				span_add(ex, SW_TRACK_NVME_WRITE, "write", tw, sw_now());
				if (r && !rc) {
					sw_error("executor: NVMe write failed: %s", sw_io_req_error(&wr[s][w]));
					rc = r;
				}
			}
			wr_n[s] = 0;
			int64_t off = ci * ex->chunk, c = n - off < ex->chunk ? n - off : ex->chunk;
			char *base = ex->opt_stage[s];
			tr0 = sw_now();
			for (int k = 0; k < 3 && !rc; k++)
				rc = sw_io_submit_read(ex->io, &rd[s][k], g->opt_ext[rs][k], opt_off(off),
						       chunk_len(off, c, n, 4), base + (uint64_t)k * cb);
			if (g->p16_tier == SW_TIER_NVME && !rc && ci == 0) {
				/* nothing to read for P16: it is recomputed from P32 */
			}
		}
		if (ci == 0)
			continue;
		/* update chunk ci-1 (its reads were issued one iteration ago) */
		int ps = (int)((ci - 1) % NSTAGE);
		int64_t off = (ci - 1) * ex->chunk, c = n - off < ex->chunk ? n - off : ex->chunk;
		char *base = ex->opt_stage[ps];
		for (int k = 0; k < 3; k++) {
			int r = sw_io_wait(ex->io, &rd[ps][k]);
			if (r && !rc) {
				sw_error("executor: NVMe read failed: %s", sw_io_req_error(&rd[ps][k]));
				rc = r;
			}
		}
		span_add(ex, SW_TRACK_NVME_READ, "read", tr0, sw_now());
		if (rc)
			break;
		float *p32 = (float *)base, *m = (float *)(base + cb), *v = (float *)(base + 2 * cb);
		void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab
							: (void *)(base + 3 * cb);
		double ta = sw_now();
		adam_range(ex, gi, off, c, p32, m, v, hg + off, p16, scale);
		span_add(ex, SW_TRACK_OPTIM, "adam", ta, sw_now());
		for (int k = 0; k < 3 && !rc; k++)
			if (!(rc = sw_io_submit_write(ex->io, &wr[ps][wr_n[ps]], g->opt_ext[ws][k],
						      opt_off(off), chunk_len(off, c, n, 4),
						      base + (uint64_t)k * cb)))
				wr_n[ps]++;
		if (!rc && g->p16_tier == SW_TIER_NVME &&
		    !(rc = sw_io_submit_write(ex->io, &wr[ps][wr_n[ps]], g->p16_ext,
					      (uint64_t)off * (uint64_t)ex->ab,
					      chunk_len(off, c, n, ex->ab), p16)))
			wr_n[ps]++;
	}
	for (int s = 0; s < NSTAGE; s++)
		for (int w = 0; w < wr_n[s]; w++) {
			double tw = sw_now();
			int r = sw_io_wait(ex->io, &wr[s][w]);
			span_add(ex, SW_TRACK_NVME_WRITE, "write", tw, sw_now());
			if (r && !rc) {
				sw_error("executor: NVMe write failed: %s", sw_io_req_error(&wr[s][w]));
				rc = r;
			}
		}
	(void)t0;
	return rc;
}

static void *opt_thread(void *arg)
{
	sw_exec *ex = arg;
	pthread_mutex_lock(&ex->mu);
	for (;;) {
		while (!ex->qn && !ex->quit)
			pthread_cond_wait(&ex->cv, &ex->mu);
		if (!ex->qn && ex->quit)
			break;
		opt_msg msg = ex->q[ex->qhead];
		ex->qhead = (ex->qhead + 1) % OPT_Q;
		ex->qn--;
		ex->busy = 1;
		pthread_mutex_unlock(&ex->mu);
		ex->be->ops->event_sync(ex->be, ex->hgrad_ev[msg.hb]);   /* the gradient has arrived */
		int rc = opt_group(ex, msg.group, ex->hgrad[msg.hb], msg.scale);
		pthread_mutex_lock(&ex->mu);
		if (rc && !ex->err)
			ex->err = rc;
		ex->hgrad_busy[msg.hb] = 0;
		ex->busy = 0;
		pthread_cond_broadcast(&ex->cv);
	}
	pthread_mutex_unlock(&ex->mu);
	return NULL;
}

/* Waits for a free pinned gradient buffer; returns its index. */
static int hgrad_acquire(sw_exec *ex)
{
	pthread_mutex_lock(&ex->mu);
	for (;;) {
		for (int i = 0; i < ex->nhg; i++)
			if (!ex->hgrad_busy[i]) {
				ex->hgrad_busy[i] = 1;
				pthread_mutex_unlock(&ex->mu);
				return i;
			}
		pthread_cond_wait(&ex->cv, &ex->mu);
	}
}

static void opt_send(sw_exec *ex, int gi, int hb, double scale)
{
	pthread_mutex_lock(&ex->mu);
	SW_ASSERT(ex->qn < OPT_Q);
	ex->q[(ex->qhead + ex->qn) % OPT_Q] = (opt_msg){ gi, hb, scale };
	ex->qn++;
	pthread_cond_broadcast(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
}

static int opt_drain(sw_exec *ex)
{
	if (!ex->thr_started)
		return 0;
	pthread_mutex_lock(&ex->mu);
	while (ex->qn || ex->busy)
		pthread_cond_wait(&ex->cv, &ex->mu);
	int rc = ex->err;
	ex->err = 0;
	pthread_mutex_unlock(&ex->mu);
	return rc;
}

/* ---------------------------------------------------------------- P16 window ----------- */

typedef struct useq { int *g; int n, pos; } useq;

/* Copies group gi's P16 home into window slot i on the copy stream. */
static int win_fill(sw_exec *ex, int i, int gi)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	grp *g = &ex->g[gi];
	int64_t n = ex->tt->g[gi].numel;
	uint64_t ab = (uint64_t)ex->ab;
	op->stream_wait(be, ex->hs, ex->win_free[i]);
	int sp = gspan_begin(ex, ex->hs, SW_TRACK_H2D);
	if (g->p16_tier == SW_TIER_HOST) {
		op->copy_h2d(be, ex->hs, ex->win[i], g->p16_host, (uint64_t)n * ab);
	} else {
		for (int64_t off = 0; off < n; off += ex->chunk) {
			int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
			int s = ex->p16_next;
			ex->p16_next = (s + 1) % NSTAGE;
			op->event_sync(be, ex->p16_ev[s]);       /* the previous H2D from it is done */
			int rc = io_read(ex, g->p16_ext, (uint64_t)off * ab, chunk_len(off, c, n, ex->ab),
					 ex->p16_stage[s]);
			if (rc)
				return rc;
			op->copy_h2d(be, ex->hs, (char *)ex->win[i] + (uint64_t)off * ab, ex->p16_stage[s],
				     (uint64_t)c * ab);
			op->event_record(be, ex->p16_ev[s], ex->hs);
		}
	}
	gspan_end(ex, ex->hs, sp);
	op->event_record(be, ex->win_ready[i], ex->hs);
	return 0;
}

/* Performs the schedule's fills that make the first want_n streamed groups of uses
 * [start, ...) resident (offload/window.h decides which buffer gets which group). */
static int win_prefetch(sw_exec *ex, const useq *u, int start, int want_n)
{
	sw_window_fill f[SW_WINDOW_WANT];
	int nf = sw_window_want(&ex->sched, u->g, u->n, start, want_n, ex->streamed, f);
	for (int i = 0; i < nf; i++) {
		int rc = win_fill(ex, f[i].slot, f[i].group);
		if (rc)
			return rc;
	}
	return 0;
}

/* The P16 of the group used next (u->pos), ready on cs; `expect` is the group the caller is
 * about to compute, which must be the one the schedule says. Only that group is loaded here
 * (when a prefetch did not bring it already); the caller issues the group's compute and then
 * calls win_ahead, so NVMe reads for later groups overlap the compute just queued. */
static int win_use(sw_exec *ex, useq *u, int expect, void **p16)
{
	SW_ASSERT(u->pos < u->n && u->g[u->pos] == expect);
	int gi = u->g[u->pos];
	if (!ex->streamed[gi]) {
		*p16 = ex->g[gi].p16_dev;
		u->pos++;
		return 0;
	}
	int rc = win_prefetch(ex, u, u->pos, 1);
	if (rc)
		return rc;
	int i = sw_window_use(&ex->sched, gi);
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->win_ready[i]);
	*p16 = ex->win[i];
	u->pos++;
	return 0;
}

/* After the current group's compute is queued: load the next K-1 groups (the current one,
 * u->pos - 1, stays). */
static int win_ahead(sw_exec *ex, const useq *u)
{
	if (!ex->K || u->pos == 0)
		return 0;
	return win_prefetch(ex, u, u->pos - 1, ex->K);
}

static void win_release(sw_exec *ex, void *p16)
{
	for (int i = 0; i < ex->K; i++)
		if (ex->win[i] == p16)
			ex->be->ops->event_record(ex->be, ex->win_free[i], ex->cs);
}

/* ---------------------------------------------------------------- activations ---------- */

static uint64_t xbytes(const sw_exec *ex) { return (uint64_t)ex->d.N * (uint64_t)ex->d.C * (uint64_t)ex->ab; }

/* Device view of carry[m] (staged into xa when the carry is on the host). */
static void *carry_get(sw_exec *ex, int m)
{
	if (ex->carry_dev)
		return (char *)ex->carry_dev + (uint64_t)m * xbytes(ex);
	ex->be->ops->copy_h2d(ex->be, ex->cs, ex->xa, (char *)ex->carry_host + (uint64_t)m * xbytes(ex),
			      xbytes(ex));
	return ex->xa;
}

static void carry_put(sw_exec *ex, int m, const void *x)
{
	if (ex->carry_dev) {
		void *dst = (char *)ex->carry_dev + (uint64_t)m * xbytes(ex);
		if (dst != x)
			ex->be->ops->copy_d2d(ex->be, ex->cs, dst, x, xbytes(ex));
		return;
	}
	ex->be->ops->copy_d2h(ex->be, ex->cs, (char *)ex->carry_host + (uint64_t)m * xbytes(ex), x,
			      xbytes(ex));
}

/* Makes slot i reusable: waits for its I/O (a read nobody consumed is dropped) and for the last
 * GPU copy to or from it. 0 or -errno of a failed write. */
static int ck_slot_take(sw_exec *ex, int i)
{
	ck_slot *c = &ex->cks[i];
	int rc = 0;
	if (c->state != CK_FREE) {
		rc = sw_io_wait(ex->io, &c->req);
		span_add(ex, c->state == CK_WRITING ? SW_TRACK_NVME_WRITE : SW_TRACK_NVME_READ,
			 c->state == CK_WRITING ? "write" : "read", c->t0, sw_now());
		if (rc && c->state == CK_WRITING)
			sw_error("executor: NVMe write of a checkpoint failed: %s", sw_io_req_error(&c->req));
		if (c->state == CK_READING)
			rc = 0;   /* a dropped read: whatever happened to it, nobody uses its data */
		c->state = CK_FREE;
	}
	if (ex->ck_ev[i])
		ex->be->ops->event_sync(ex->be, ex->ck_ev[i]);
	return rc;
}

/* Waits for every checkpoint slot (writes and unconsumed reads). 0 or the first error. */
static int ck_drain(sw_exec *ex)
{
	int rc = 0;
	for (int i = 0; i < ex->ck_nslot; i++) {
		int r = ck_slot_take(ex, i);
		if (r && !rc)
			rc = r;
	}
	return rc;
}

/* Writes behind: the copy to pinned memory is waited for, the NVMe write is not (the slot's
 * next user waits for it, and every read waits for all writes first: ck_read_ahead). */
static int ckpt_save(sw_exec *ex, int l, int m, const void *x)
{
	sw_backend *be = ex->be;
	ckpt *k = &ex->ck[l * ex->M + m];
	if (k->tier == SW_TIER_GPU) {
		be->ops->copy_d2d(be, ex->cs, k->dev, x, xbytes(ex));
		return 0;
	}
	int sp = gspan_begin(ex, ex->cs, SW_TRACK_D2H);
	if (k->tier == SW_TIER_HOST) {
		be->ops->copy_d2h(be, ex->cs, k->host, x, xbytes(ex));
		gspan_end(ex, ex->cs, sp);
		return 0;
	}
	int i = ex->ck_next, rc;
	ex->ck_next = (i + 1) % ex->ck_nslot;
	if ((rc = ck_slot_take(ex, i)))
		return rc;
	be->ops->copy_d2h(be, ex->cs, ex->ck_stage[i], x, xbytes(ex));
	gspan_end(ex, ex->cs, sp);
	be->ops->event_record(be, ex->ck_ev[i], ex->cs);
	be->ops->event_sync(be, ex->ck_ev[i]);
	ck_slot *c = &ex->cks[i];
	c->t0 = sw_now();
	if ((rc = sw_io_submit_write(ex->io, &c->req, k->ext, 0, io_len(xbytes(ex)), ex->ck_stage[i]))) {
		sw_error("executor: NVMe write of a checkpoint failed: %s", sw_io_req_error(&c->req));
		return rc;
	}
	c->state = CK_WRITING;
	return 0;
}

/* Submits reads of the NVMe checkpoints the backward pass will ask for next, in its order
 * ((l, 0..M-1) for l = L-1 down to 0), into the slots after the last one read into, while
 * those slots hold no unconsumed read. Every pending write completes first, so a read never
 * overtakes the write of the same checkpoint. */
static int ck_read_ahead(sw_exec *ex)
{
	int rc;
	for (int i = 0; i < ex->ck_nslot; i++)
		if (ex->cks[i].state == CK_WRITING && (rc = ck_slot_take(ex, i)))
			return rc;
	while (ex->ck_ra_l >= 0) {
		int l = ex->ck_ra_l, m = ex->ck_ra_m;
		ckpt *k = &ex->ck[l * ex->M + m];
		if (k->tier == SW_TIER_NVME) {
			int i = ex->ck_ra_slot;
			if (ex->cks[i].state == CK_READING)
				break;   /* every slot holds a read still to be consumed */
			if ((rc = ck_slot_take(ex, i)))
				return rc;
			ck_slot *c = &ex->cks[i];
			c->t0 = sw_now();
			if ((rc = sw_io_submit_read(ex->io, &c->req, k->ext, 0, io_len(xbytes(ex)),
						    ex->ck_stage[i]))) {
				sw_error("executor: NVMe read of a checkpoint failed: %s", sw_io_req_error(&c->req));
				return rc;
			}
			c->state = CK_READING;
			c->l = l;
			c->m = m;
			ex->ck_ra_slot = (i + 1) % ex->ck_nslot;
		}
		if (++ex->ck_ra_m == ex->M) {
			ex->ck_ra_m = 0;
			ex->ck_ra_l--;
		}
	}
	return 0;
}

/* Drops what was read ahead and reads ahead from checkpoint (l, m) on. */
static int ck_read_from(sw_exec *ex, int l, int m)
{
	for (int j = 0; j < ex->ck_nslot; j++)
		if (ex->cks[j].state == CK_READING)
			ck_slot_take(ex, j);
	ex->ck_ra_l = l;
	ex->ck_ra_m = m;
	return ck_read_ahead(ex);
}

/* Device view of checkpoint (l, m) (fetched into xc unless it lives on the GPU). */
static int ckpt_get(sw_exec *ex, int l, int m, void **x)
{
	sw_backend *be = ex->be;
	ckpt *k = &ex->ck[l * ex->M + m];
	if (k->tier == SW_TIER_GPU) {
		*x = k->dev;
		return 0;
	}
	const void *src = k->host;
	if (k->tier == SW_TIER_NVME) {
		int i = -1, rc;
		for (int j = 0; j < ex->ck_nslot && i < 0; j++)
			if (ex->cks[j].state == CK_READING && ex->cks[j].l == l && ex->cks[j].m == m)
				i = j;
		if (i < 0) {
			/* not read ahead (backward asked out of order): start again from here */
			i = ex->ck_ra_slot;
			if ((rc = ck_read_from(ex, l, m)))
				return rc;
			SW_ASSERT(ex->cks[i].state == CK_READING && ex->cks[i].l == l && ex->cks[i].m == m);
		}
		ck_slot *c = &ex->cks[i];
		rc = sw_io_wait(ex->io, &c->req);
		span_add(ex, SW_TRACK_NVME_READ, "read", c->t0, sw_now());
		c->state = CK_FREE;
		if (rc) {
			sw_error("executor: NVMe read of a checkpoint failed: %s", sw_io_req_error(&c->req));
			return rc;
		}
		src = ex->ck_stage[i];
		int sp = gspan_begin(ex, ex->cs, SW_TRACK_H2D);
		be->ops->copy_h2d(be, ex->cs, ex->xc, src, xbytes(ex));
		gspan_end(ex, ex->cs, sp);
		be->ops->event_record(be, ex->ck_ev[i], ex->cs);
		/* the slot is free once the copy is done: read further ahead into it */
		if ((rc = ck_read_ahead(ex)))
			return rc;
	} else {
		int sp = gspan_begin(ex, ex->cs, SW_TRACK_H2D);
		be->ops->copy_h2d(be, ex->cs, ex->xc, src, xbytes(ex));
		gspan_end(ex, ex->cs, sp);
	}
	*x = ex->xc;
	return 0;
}

/* ---------------------------------------------------------------- the step ------------- */

static float *grad_begin(sw_exec *ex, int gi)
{
	if (ex->tied && gi == 0) {
		ex->be->ops->memset0(ex->be, ex->cs, ex->tgrad, (uint64_t)ex->tt->g[0].numel * 4);
		return ex->tgrad;
	}
	int k = ex->gb_next;
	ex->gb_next = (k + 1) % ex->ngb;
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->gb_free[k]);
	ex->be->ops->memset0(ex->be, ex->cs, ex->gbuf[k], (uint64_t)ex->tt->g[gi].numel * 4);
	return ex->gbuf[k];
}

static sw_event *gbuf_event(sw_exec *ex, const float *gb)
{
	for (int k = 0; k < ex->ngb; k++)
		if (ex->gbuf[k] == gb)
			return ex->gb_free[k];
	return NULL;
}

/* The gradient of group gi is complete in gb: its sum of squares, and (update) its AdamW. */
static void grad_end(sw_exec *ex, int gi, float *gb, int update, double scale)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int64_t n = ex->tt->g[gi].numel;
	op->sumsq(be, ex->cs, ex->dsum + gi, gb, n);
	sw_event *fe = gbuf_event(ex, gb);
	if (update && ex->g[gi].opt_tier == SW_TIER_GPU) {
		grp *g = &ex->g[gi];
		const sw_group *tg = &ex->tt->g[gi];
		for (int i = tg->first; i < tg->first + tg->count; i++) {
			const sw_tensor *t = &ex->tt->t[i];
			sw_adamw_args a = sw_adamw_args_make(&ex->o.adam, ex->lr, ex->step, t->decay, scale);
			op->adamw(be, ex->cs, g->opt_dev[0] + t->offset, g->opt_dev[1] + t->offset,
				  g->opt_dev[2] + t->offset, gb + t->offset,
				  (char *)g->p16_dev + (uint64_t)t->offset * (uint64_t)ex->ab, t->numel, &a);
		}
	} else if (update) {
		int hb = hgrad_acquire(ex);
		sw_event *done = ex->sev[0];
		(void)done;
		/* the D2H stream waits for the gradient on cs, then copies it to pinned host memory */
		sw_event *e = ex->hgrad_ev[hb];
		op->event_record(be, e, ex->cs);
		op->stream_wait(be, ex->ds, e);
		int sp = gspan_begin(ex, ex->ds, SW_TRACK_D2H);
		op->copy_d2h(be, ex->ds, ex->hgrad[hb], gb, (uint64_t)n * 4);
		gspan_end(ex, ex->ds, sp);
		op->event_record(be, e, ex->ds);
		if (fe)
			op->event_record(be, fe, ex->ds);
		opt_send(ex, gi, hb, scale);
		return;
	}
	if (fe)
		op->event_record(be, fe, ex->cs);
}

/* One backward pass: head, layers top-down, embedding. recompute_top: rebuild x_L from the
 * last checkpoint first (the carry holds dx_0 after an earlier pass). loss_out: NULL, or the
 * summed loss (first pass). */
static int backward_pass(sw_exec *ex, useq *u, const int32_t *inputs, const int32_t *targets,
			 float scale_tokens, int update, double gscale, int recompute_top,
			 double *loss_out)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int L = ex->L, M = ex->M, H = ex->H, N = ex->d.N;
	int rc;
	void *w;
	sw_group_ptrs wp, gp, ep, egp;
	/* start reading the top layer's checkpoints now: they arrive while the head computes */
	if (ex->ck_nslot && (rc = ck_read_from(ex, L - 1, 0)))
		return rc;
	if (recompute_top) {
		if ((rc = win_use(ex, u, L, &w)))
			return rc;
		sw_group_ptrs_make(&wp, ex->tt, L, w, ex->ab);
		for (int m = 0; m < M; m++) {
			void *x;
			if ((rc = ckpt_get(ex, L - 1, m, &x)))
				return rc;
			int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
			sw_layer_fwd(be, ex->cs, &ex->d, &wp, ex->inv_freq, x, ex->xo, &ex->s);
			gspan_end(ex, ex->cs, sp);
			carry_put(ex, m, ex->xo);
		}
		if ((rc = win_ahead(ex, u)))
			return rc;
		win_release(ex, w);
	}
	/* head */
	void *hw;
	if ((rc = win_use(ex, u, ex->tied ? 0 : H, &hw)))
		return rc;
	float *hg = grad_begin(ex, H), *eg = NULL;
	if (ex->tied) {
		/* hw is the embedding's P16; the final norm comes from the head group */
		sw_group_ptrs_make(&ep, ex->tt, 0, hw, ex->ab);
		void *hp = ex->g[H].p16_dev;
		if (!hp) {
			hp = ex->head_small;
			const grp *g = &ex->g[H];
			uint64_t nb = (uint64_t)ex->tt->g[H].numel * (uint64_t)ex->ab;
			if (g->p16_tier == SW_TIER_HOST)
				op->copy_h2d(be, ex->cs, hp, g->p16_host, nb);
			else {
				int s = ex->p16_next;
				ex->p16_next = (s + 1) % NSTAGE;
				op->event_sync(be, ex->p16_ev[s]);
				if ((rc = io_read(ex, g->p16_ext, 0, io_len(nb), ex->p16_stage[s])))
					return rc;
				op->copy_h2d(be, ex->cs, hp, ex->p16_stage[s], nb);
				op->event_record(be, ex->p16_ev[s], ex->cs);
			}
		}
		sw_group_ptrs_make(&wp, ex->tt, H, hp, ex->ab);
		eg = grad_begin(ex, 0);
		sw_group_ptrs_make(&egp, ex->tt, 0, eg, 4);
	} else {
		sw_group_ptrs_make(&wp, ex->tt, H, hw, ex->ab);
		memset(&ep, 0, sizeof(ep));
		memset(&egp, 0, sizeof(egp));
	}
	sw_group_ptrs_make(&gp, ex->tt, H, hg, 4);
	float *hl = NULL;
	if (loss_out && !(hl = malloc((size_t)N * (size_t)M * 4)))
		return -ENOMEM;
	for (int m = 0; m < M; m++) {
		void *x = carry_get(ex, m);
		op->copy_h2d(be, ex->cs, ex->tgt, targets + (int64_t)m * N, (uint64_t)N * 4);
		int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		sw_head_fwd_bwd(be, ex->cs, &ex->d, ex->tt, &wp, &ep, &gp, &egp, x, ex->tgt,
				scale_tokens, ex->losses, ex->xo, &ex->s);
		gspan_end(ex, ex->cs, sp);
		if (hl)
			op->copy_d2h(be, ex->cs, hl + (int64_t)m * N, ex->losses, (uint64_t)N * 4);
		carry_put(ex, m, ex->xo);
		/* the targets buffer is reused by the next micro-batch: same stream, in order */
	}
	if ((rc = win_ahead(ex, u))) {
		free(hl);
		return rc;
	}
	win_release(ex, hw);
	grad_end(ex, H, hg, update, gscale);
	if (hl) {
		op->stream_sync(be, ex->cs);
		double s = 0;
		for (int64_t i = 0; i < (int64_t)N * M; i++)
			s += hl[i];
		*loss_out = s;
		free(hl);
	}
	/* layers, top-down */
	for (int l = L - 1; l >= 0; l--) {
		if ((rc = win_use(ex, u, l + 1, &w)))
			return rc;
		sw_group_ptrs_make(&wp, ex->tt, l + 1, w, ex->ab);
		float *g = grad_begin(ex, l + 1);
		sw_group_ptrs_make(&gp, ex->tt, l + 1, g, 4);
		for (int m = 0; m < M; m++) {
			void *x;
			if ((rc = ckpt_get(ex, l, m, &x)))
				return rc;
			void *dres = carry_get(ex, m);
			int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
			sw_layer_bwd(be, ex->cs, &ex->d, &wp, &gp, ex->inv_freq, x, dres, &ex->s);
			gspan_end(ex, ex->cs, sp);
			carry_put(ex, m, dres);
		}
		if ((rc = win_ahead(ex, u)))
			return rc;
		win_release(ex, w);
		grad_end(ex, l + 1, g, update, gscale);
	}
	/* embedding */
	float *g0 = ex->tied ? eg : grad_begin(ex, 0);
	for (int m = 0; m < M; m++) {
		void *dres = carry_get(ex, m);
		op->copy_h2d(be, ex->cs, ex->tok, inputs + (int64_t)m * N, (uint64_t)N * 4);
		int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		op->embedding_bwd(be, ex->cs, g0, dres, ex->tok, N, ex->d.C, ex->d.V);
		gspan_end(ex, ex->cs, sp);
	}
	grad_end(ex, 0, g0, update, gscale);
	return 0;
}

static int forward_pass(sw_exec *ex, useq *u, const int32_t *inputs)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int L = ex->L, M = ex->M, N = ex->d.N;
	void *w;
	int rc = win_use(ex, u, 0, &w);
	if (rc)
		return rc;
	for (int m = 0; m < M; m++) {
		op->copy_h2d(be, ex->cs, ex->tok, inputs + (int64_t)m * N, (uint64_t)N * 4);
		int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
		op->embedding_fwd(be, ex->cs, ex->xo, ex->tok, w, N, ex->d.C);
		gspan_end(ex, ex->cs, sp);
		carry_put(ex, m, ex->xo);
	}
	if ((rc = win_ahead(ex, u)))
		return rc;
	win_release(ex, w);
	for (int l = 0; l < L; l++) {
		if ((rc = win_use(ex, u, l + 1, &w)))
			return rc;
		sw_group_ptrs wp;
		sw_group_ptrs_make(&wp, ex->tt, l + 1, w, ex->ab);
		for (int m = 0; m < M; m++) {
			void *x = carry_get(ex, m);
			if ((rc = ckpt_save(ex, l, m, x)))
				return rc;
			int sp = gspan_begin(ex, ex->cs, SW_TRACK_COMPUTE);
			sw_layer_fwd(be, ex->cs, &ex->d, &wp, ex->inv_freq, x, ex->xo, &ex->s);
			gspan_end(ex, ex->cs, sp);
			carry_put(ex, m, ex->xo);
		}
		if ((rc = win_ahead(ex, u)))
			return rc;
		win_release(ex, w);
	}
	return 0;
}

/* The uses of P16 in a step, in order (the planner's sequence, which it replays to count
 * fetches). */
static void build_uses(sw_exec *ex, useq *u, int passes)
{
	u->n = sw_window_uses(ex->L, ex->tied ? 0 : ex->H, passes, u->g);
	u->pos = 0;
}

/* By track, then start. */
static int span_cmp(const void *x, const void *y)
{
	const span *a = x, *b = y;
	if (a->track != b->track)
		return a->track < b->track ? -1 : 1;
	return (a->t0 > b->t0) - (a->t0 < b->t0);
}

static void finish_spans(sw_exec *ex, sw_exec_stats *st)
{
	sw_backend *be = ex->be;
	for (int i = 0; i + 1 < ex->nsev; i += 2) {
		double a = be->ops->event_ms(be, ex->ev0, ex->sev[i]) / 1e3;
		double b = be->ops->event_ms(be, ex->ev0, ex->sev[i + 1]) / 1e3;
		span_add(ex, ex->strack[i], track_name[ex->strack[i]], ex->t_step0 + a, ex->t_step0 + b);
	}
	ex->nsev = 0;
	if (ex->sev_dropped && !ex->sev_warned) {
		sw_warn("executor: %lld device spans of this step were not recorded (event pool of %d "
			"full): compute/H2D/D2H busy times and the trace undercount", (long long)ex->sev_dropped,
			ex->maxsev / 2);
		ex->sev_warned = 1;
	}
	ex->sev_dropped = 0;
	/* busy = the union of a track's spans in this step: reads in flight together (checkpoints
	 * read ahead beside optimizer state) count once */
	span *v = malloc((size_t)(ex->nspans ? ex->nspans : 1) * sizeof(span));
	int n = 0;
	for (int i = 0; i < ex->nspans && v; i++)
		if (ex->spans[i].t1 >= ex->t_step0) {
			v[n] = ex->spans[i];
			if (v[n].t0 < ex->t_step0)
				v[n].t0 = ex->t_step0;
			n++;
		}
	if (v)
		qsort(v, (size_t)n, sizeof(span), span_cmp);
	for (int i = 0; i < n;) {
		int tr = v[i].track;
		double a = v[i].t0, b = v[i].t1;
		for (i++; i < n && v[i].track == tr; i++) {
			if (v[i].t0 > b) {
				st->busy[tr] += b - a;
				a = v[i].t0;
			}
			if (v[i].t1 > b)
				b = v[i].t1;
		}
		st->busy[tr] += b - a;
	}
	free(v);
	if (ex->trace)
		trace_flush(ex);
	else
		ex->nspans = 0;
}

int sw_exec_step(sw_exec *ex, const int32_t *inputs, const int32_t *targets, int64_t step,
		 double lr, sw_exec_stats *st)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	int N = ex->d.N, M = ex->M, G = ex->G;
	memset(st, 0, sizeof(*st));
	for (int64_t i = 0; i < (int64_t)N * M; i++)
		st->s.tokens += targets[i] >= 0;
	float scale = st->s.tokens ? 1.0f / (float)st->s.tokens : 0.0f;
	ex->step = step;
	ex->lr = lr;
	ex->skipped_elems = 0;
	/* weights change every step: the window starts empty */
	sw_window_init(&ex->sched, ex->K);
	int passes = ex->o.clip > 0 ? 2 : 1;
	st->passes = passes;
	int *ug = malloc(sizeof(int) * (size_t)(4 * (ex->L + 3)));
	if (!ug)
		return -ENOMEM;
	useq u = { .g = ug };
	build_uses(ex, &u, passes);
	op->stream_sync(be, ex->cs);
	uint64_t r0 = 0, w0 = 0;
	if (ex->io)
		sw_io_bytes(ex->io, &r0, &w0);
	ex->t_step0 = sw_now();
	op->event_record(be, ex->ev0, ex->cs);
	double loss = 0;
	int rc = forward_pass(ex, &u, inputs);
	double ss[G];
	if (!rc && passes == 2) {
		/* pass 1: the norm only */
		rc = backward_pass(ex, &u, inputs, targets, scale, 0, 1.0, 0, &loss);
		if (!rc) {
			op->copy_d2h(be, ex->cs, ss, ex->dsum, sizeof(ss));
			op->stream_sync(be, ex->cs);
			double total = 0;
			for (int gi = 0; gi < G; gi++)
				total += ss[gi];
			st->s.grad_norm = sqrt(total);
			if (!isfinite(st->s.grad_norm)) {
				st->s.skipped = 1;
			} else {
				double coef = ex->o.clip / (st->s.grad_norm + 1e-6);
				st->s.grad_scale = coef < 1.0 ? coef : 1.0;
				rc = backward_pass(ex, &u, inputs, targets, scale, 1, st->s.grad_scale, 1,
						   NULL);
			}
		}
	} else if (!rc) {
		st->s.grad_scale = 1.0;
		rc = backward_pass(ex, &u, inputs, targets, scale, 1, 1.0, 0, &loss);
	}
	int orc = opt_drain(ex);
	op->stream_sync(be, ex->cs);
	op->stream_sync(be, ex->hs);
	op->stream_sync(be, ex->ds);
	if (!rc)
		rc = orc;
	if (!rc && passes == 1) {
		op->copy_d2h(be, ex->cs, ss, ex->dsum, sizeof(ss));
		op->stream_sync(be, ex->cs);
		double total = 0;
		for (int gi = 0; gi < G; gi++)
			total += ss[gi];
		st->s.grad_norm = sqrt(total);
		st->s.skipped = !isfinite(st->s.grad_norm);
	}
	if (!rc && (passes == 1 || !st->s.skipped) && ex->p->in.slots == 2)
		ex->slot = 1 - ex->slot;            /* NVMe state now lives in the other slot */
	st->s.loss = st->s.tokens ? loss / (double)st->s.tokens : 0.0;
	st->step_s = sw_now() - ex->t_step0;
	if (ex->io) {
		sw_io_bytes(ex->io, &st->nvme_read, &st->nvme_write);
		st->nvme_read -= r0;
		st->nvme_write -= w0;
	}
	finish_spans(ex, st);
	free(ug);
	return rc;
}
