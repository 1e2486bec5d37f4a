/* The optimizer thread: CPU AdamW of one group at a time from a pinned gradient buffer, its
 * state in host memory or streamed from NVMe (read-ahead before write-behind). */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the optimizer -------- */

/* AdamW of elements [off, off+n) of group gi, tensor by tensor (each its own decay); out: NULL
 * (in place), or the group's second state set (elements [off, off + n) receive the updated
 * P32/m/v, p32/m/v stay as they were: sw_adamw_update_parallel_to). */
static void adam_range(sw_exec *ex, int gi, int64_t off, int64_t n, float *p32, float *m, float *v,
		       const float *gr, void *p16, double scale, float *const *out)
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
		if (out) {
			float *const o3[3] = { out[0] + a, out[1] + a, out[2] + a };
			sw_adamw_update_parallel_to(ex->pool, o3, p32 + r, m + r, v + r, gr + r,
						    (char *)p16 + r * ex->ab, ex->be->act, b - a, &args);
			continue;
		}
		sw_adamw_update_parallel(ex->pool, p32 + r, m + r, v + r, gr + r,
							      (char *)p16 + r * ex->ab, ex->be->act,
							      b - a, &args);
	}
}

/* The CPU update of a group whose P32/m/v live in host memory (P16 in the host cache, or
 * written to NVMe chunk by chunk from the optimizer's staging). */
/* (spec: a speculative update, written to the group's second state set) */
static int opt_group_host(sw_exec *ex, int gi, const float *hg, double scale, int spec)
{
	grp *g = &ex->g[gi];
	int64_t n = ex->tt->g[gi].numel;
	double t0 = sw_now();
	int rc = 0;
	for (int64_t off = 0; off < n; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab
							: ex->opt_stage[0];
		adam_range(ex, gi, off, c, g->opt_host[0] + off, g->opt_host[1] + off,
			   g->opt_host[2] + off, hg + off, p16, scale, spec ? g->alt : NULL);
		if (g->p16_tier == SW_TIER_NVME &&
		    (rc = exec_io_write_wait(ex, g->p16_ext, (uint64_t)off * (uint64_t)ex->ab,
					     exec_io_len((uint64_t)c * (uint64_t)ex->ab), p16)))
			break;
	}
	exec_span_add(ex, SW_TRACK_OPTIM, "adam", t0, sw_now());
	return rc;
}

/* The NVMe pipeline of one group: chunk c is read into staging set c % 2 before chunk c-1 is
 * written back (read-ahead before write-behind); the writes of a set complete before the set
 * is read into again. */
typedef struct opt_pipe {
	sw_exec *ex;
	int gi, rs, ws;                    /* group, slot read, slot written */
	const float *hg;
	double scale, tr0;
	int64_t n;
	uint64_t cb;                       /* bytes of one fp32 chunk in a staging set */
	sw_io_req rd[NSTAGE][3], wr[NSTAGE][4];
	int rd_n[NSTAGE], wr_n[NSTAGE];    /* requests submitted (each waited for before return) */
} opt_pipe;

static const char *const state_name[3] = { "P32", "Adam m", "Adam v" };

/* Waits for the write-behind of set s; rc: the first error so far, kept. */
static int pipe_wait_writes(opt_pipe *q, int s, int rc)
{
	for (int w = 0; w < q->wr_n[s]; w++) {
		double tw = sw_now();
		int r = sw_io_wait(q->ex->io, &q->wr[s][w]);
		exec_span_add(q->ex, SW_TRACK_NVME_WRITE, "write", tw, sw_now());
		if (r && !rc) {
			char what[80];
			snprintf(what, sizeof(what), "write of %s of group %d (slot %d)", w < 3 ? state_name[w] : "P16",
				 q->gi, w < 3 ? q->ws : 0);
			exec_io_fail(q->ex, what, &q->wr[s][w]);
			rc = r;
		}
	}
	q->wr_n[s] = 0;
	return rc;
}

/* Reads P32, m, v of chunk ci ahead into its set (P16 is not read: it is rounded from P32). */
static int pipe_read(opt_pipe *q, int64_t ci, int rc)
{
	sw_exec *ex = q->ex;
	int s = (int)(ci % NSTAGE);
	if ((rc = pipe_wait_writes(q, s, rc)))
		return rc;
	int64_t off = ci * ex->chunk, c = q->n - off < ex->chunk ? q->n - off : ex->chunk;
	char *base = ex->opt_stage[s];
	q->tr0 = sw_now();
	for (int k = 0; k < 3 && !rc; k++)
		if (!(rc = sw_io_submit_read(ex->io, &q->rd[s][k], ex->g[q->gi].opt_ext[q->rs][k], exec_opt_off(off),
					     exec_io_len((uint64_t)c * 4), base + (uint64_t)k * q->cb)))
			q->rd_n[s]++;
	return rc;
}

/* Chunk ci, read one step ago: AdamW, then P32, m, v (and P16 when it lives on NVMe) written
 * behind into the other slot. */
static int pipe_update(opt_pipe *q, int64_t ci, int rc)
{
	sw_exec *ex = q->ex;
	grp *g = &ex->g[q->gi];
	int ps = (int)(ci % NSTAGE);
	int64_t off = ci * ex->chunk, c = q->n - off < ex->chunk ? q->n - off : ex->chunk;
	char *base = ex->opt_stage[ps];
	for (int k = 0; k < q->rd_n[ps]; k++) {
		int r = sw_io_wait(ex->io, &q->rd[ps][k]);
		if (r && !rc) {
			char what[80];
			snprintf(what, sizeof(what), "read of %s of group %d (slot %d)", state_name[k], q->gi, q->rs);
			exec_io_fail(ex, what, &q->rd[ps][k]);
			rc = r;
		}
	}
	q->rd_n[ps] = 0;
	exec_span_add(ex, SW_TRACK_NVME_READ, "read", q->tr0, sw_now());
	if (rc)
		return rc;
	uint64_t cb = q->cb;
	float *p32 = (float *)base, *m = (float *)(base + cb), *v = (float *)(base + 2 * cb);
	void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab : (void *)(base + 3 * cb);
	double ta = sw_now();
	adam_range(ex, q->gi, off, c, p32, m, v, q->hg + off, p16, q->scale, NULL);
	if (ex->fin_scan)   /* a commit follows this step: what it writes is checked finite */
		exec_commit_scan(ex, q->gi, off, c, (const float *const[3]){ p32, m, v });
	exec_span_add(ex, SW_TRACK_OPTIM, "adam", ta, sw_now());
	for (int k = 0; k < 3 && !rc; k++)
		if (!(rc = sw_io_submit_write(ex->io, &q->wr[ps][q->wr_n[ps]], g->opt_ext[q->ws][k],
					      exec_opt_off(off), exec_io_len((uint64_t)c * 4),
					      base + (uint64_t)k * cb)))
			q->wr_n[ps]++;
	if (!rc && g->p16_tier == SW_TIER_NVME &&
	    !(rc = sw_io_submit_write(ex->io, &q->wr[ps][q->wr_n[ps]], g->p16_ext,
				      (uint64_t)off * (uint64_t)ex->ab, exec_io_len((uint64_t)c * (uint64_t)ex->ab), p16)))
		q->wr_n[ps]++;
	return rc;
}

static int opt_group_nvme(sw_exec *ex, int gi, const float *hg, double scale)
{
	opt_pipe q = { .ex = ex, .gi = gi, .hg = hg, .scale = scale, .rs = ex->slot,
		       .ws = exec_write_slot(ex), .n = ex->tt->g[gi].numel,
		       .cb = exec_up4k((uint64_t)ex->chunk * 4) };
	int64_t nch = (q.n + ex->chunk - 1) / ex->chunk;
	int rc = exec_commit_gate_wait(ex);   /* slot ws may hold the last durable commit */
	if (rc)
		return rc;
	grp *g = &ex->g[gi];
	g->fin_slot = ex->fin_scan ? 1 + q.ws : 0;   /* slot ws changes: checked or unknown */
	g->fin_k = -1;
	for (int64_t ci = 0; ci <= nch && !rc; ci++) {
		if (ci < nch)
			rc = pipe_read(&q, ci, rc);
		if (ci > 0 && !rc)
			rc = pipe_update(&q, ci - 1, rc);
	}
	for (int s = 0; s < NSTAGE; s++) {
		rc = pipe_wait_writes(&q, s, rc);
		for (int k = 0; k < q.rd_n[s]; k++)   /* reads ahead of a failed update: q is on our stack */
			sw_io_wait(ex->io, &q.rd[s][k]);
	}
	return rc;
}

/* The CPU update of one group from pinned gradient hg. 0 or -errno (I/O). */
static int opt_group(sw_exec *ex, int gi, const float *hg, double scale, int spec)
{
	if (ex->g[gi].opt_tier == SW_TIER_HOST)
		return opt_group_host(ex, gi, hg, scale, spec);
	/* NVMe state needs no second set: every update writes the other slot (two slots) */
	SW_ASSERT(!spec || ex->p->in.slots == 2);
	return opt_group_nvme(ex, gi, hg, scale);
}

void *exec_opt_thread(void *arg)
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
		if (msg.hb >= 0)   /* the gradient has arrived (a held one is there already) */
			ex->be->ops->event_sync(ex->be, ex->hgrad_ev[msg.hb]);
		int rc = opt_group(ex, msg.group, msg.hb >= 0 ? ex->hgrad[msg.hb] : msg.grad, msg.scale,
				   msg.spec);
		pthread_mutex_lock(&ex->mu);
		if (rc && !ex->err)
			ex->err = rc;
		if (msg.hb >= 0)
			ex->hgrad_busy[msg.hb] = 0;
		ex->busy = 0;
		pthread_cond_broadcast(&ex->cv);
	}
	pthread_mutex_unlock(&ex->mu);
	return NULL;
}

/* Waits for a free pinned gradient buffer; returns its index. */
int exec_hgrad_acquire(sw_exec *ex)
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

void exec_opt_send(sw_exec *ex, int gi, int hb, double scale, int spec, const float *grad)
{
	pthread_mutex_lock(&ex->mu);
	while (ex->qn == OPT_Q)
		pthread_cond_wait(&ex->cv, &ex->mu);
	ex->q[(ex->qhead + ex->qn) % OPT_Q] = (opt_msg){ gi, hb, spec, scale, grad };
	ex->qn++;
	pthread_cond_broadcast(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
}

int exec_opt_drain(sw_exec *ex)
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

