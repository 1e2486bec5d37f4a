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
			    (rc = exec_io_write_wait(ex, g->p16_ext, (uint64_t)off * (uint64_t)ex->ab,
						exec_chunk_len(off, c, n, ex->ab), p16)))
				break;
		}
		exec_span_add(ex, SW_TRACK_OPTIM, "adam", t0, sw_now());
		return rc;
	}
	/* NVMe state: chunk c read into staging set c%2 before chunk c-1 is written back
	 * (read-ahead before write-behind); writes of set s complete before set s is read again */
	int rs = ex->slot, ws = ex->p->in.slots == 2 ? 1 - ex->slot : ex->slot;
	int64_t nch = (n + ex->chunk - 1) / ex->chunk;
	sw_io_req rd[NSTAGE][3], wr[NSTAGE][4];
	int wr_n[NSTAGE] = { 0 };
	uint64_t cb = exec_up4k((uint64_t)ex->chunk * 4), pb = exec_up4k((uint64_t)ex->chunk * (uint64_t)ex->ab);
	(void)pb;
	double tr0 = 0;
	for (int64_t ci = 0; ci <= nch && !rc; ci++) {
		int s = (int)(ci % NSTAGE);
		if (ci < nch) {
			/* free set s: wait for its write-behind */
			for (int w = 0; w < wr_n[s]; w++) {
				double tw = sw_now();
				int r = sw_io_wait(ex->io, &wr[s][w]);
				exec_span_add(ex, SW_TRACK_NVME_WRITE, "write", tw, sw_now());
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
				rc = sw_io_submit_read(ex->io, &rd[s][k], g->opt_ext[rs][k], exec_opt_off(off),
						       exec_chunk_len(off, c, n, 4), base + (uint64_t)k * cb);
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
		exec_span_add(ex, SW_TRACK_NVME_READ, "read", tr0, sw_now());
		if (rc)
			break;
		float *p32 = (float *)base, *m = (float *)(base + cb), *v = (float *)(base + 2 * cb);
		void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab
							: (void *)(base + 3 * cb);
		double ta = sw_now();
		adam_range(ex, gi, off, c, p32, m, v, hg + off, p16, scale);
		exec_span_add(ex, SW_TRACK_OPTIM, "adam", ta, sw_now());
		for (int k = 0; k < 3 && !rc; k++)
			if (!(rc = sw_io_submit_write(ex->io, &wr[ps][wr_n[ps]], g->opt_ext[ws][k],
						      exec_opt_off(off), exec_chunk_len(off, c, n, 4),
						      base + (uint64_t)k * cb)))
				wr_n[ps]++;
		if (!rc && g->p16_tier == SW_TIER_NVME &&
		    !(rc = sw_io_submit_write(ex->io, &wr[ps][wr_n[ps]], g->p16_ext,
					      (uint64_t)off * (uint64_t)ex->ab,
					      exec_chunk_len(off, c, n, ex->ab), p16)))
			wr_n[ps]++;
	}
	for (int s = 0; s < NSTAGE; s++)
		for (int w = 0; w < wr_n[s]; w++) {
			double tw = sw_now();
			int r = sw_io_wait(ex->io, &wr[s][w]);
			exec_span_add(ex, SW_TRACK_NVME_WRITE, "write", tw, sw_now());
			if (r && !rc) {
				sw_error("executor: NVMe write failed: %s", sw_io_req_error(&wr[s][w]));
				rc = r;
			}
		}
	(void)t0;
	return rc;
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

void exec_opt_send(sw_exec *ex, int gi, int hb, double scale)
{
	pthread_mutex_lock(&ex->mu);
	SW_ASSERT(ex->qn < OPT_Q);
	ex->q[(ex->qhead + ex->qn) % OPT_Q] = (opt_msg){ gi, hb, scale };
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

