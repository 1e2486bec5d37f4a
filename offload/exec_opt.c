/* The optimizer thread: CPU AdamW of one group at a time from a pinned gradient buffer, its
 * state in host memory or streamed from NVMe (read-ahead before write-behind), and the step
 * boundary's side of it: the write-behind of a group's last chunks left in flight, the next
 * step's first NVMe state read ahead, each group's P16 marked final as soon as it is. */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the optimizer -------- */

/* AdamW of elements [off, off+n) of group gi, tensor by tensor (each its own decay), at the
 * message's learning rate, step and scale; out: NULL (in place), or the group's second state
 * set (elements [off, off + n) receive the updated P32/m/v, p32/m/v stay as they were:
 * sw_adamw_update_parallel_to). */
static void adam_range(sw_exec *ex, const opt_msg *q, int64_t off, int64_t n, float *p32, float *m,
		       float *v, const float *gr, void *p16, float *const *out)
{
	const sw_table *tt = ex->tt;
	const sw_group *grp_ = &tt->g[q->group];
	for (int i = grp_->first; i < grp_->first + grp_->count; i++) {
		const sw_tensor *t = &tt->t[i];
		int64_t a = t->offset > off ? t->offset : off;
		int64_t b = t->offset + t->numel < off + n ? t->offset + t->numel : off + n;
		if (a >= b)
			continue;
		sw_adamw_args args = sw_adamw_args_make(&ex->o.adam, q->lr, q->step, t->decay, q->scale);
		int64_t r = a - off;
		if (out) {
			float *const o3[3] = { out[0] + a, out[1] + a, out[2] + a };
			sw_adamw_update_parallel_to(ex->pool, o3, p32 + r, m + r, v + r, gr + r,
						    (char *)p16 + r * ex->ab, ex->be->act, b - a, &args);
			continue;
		}
		sw_adamw_update_parallel(ex->pool, p32 + r, m + r, v + r, gr + r,
					 (char *)p16 + r * ex->ab, ex->be->act, b - a, &args);
	}
}

/* Group gi's P16 home is final for the update in progress: one waiting use may go on. */
static void mark_p16(sw_exec *ex, int gi)
{
	pthread_mutex_lock(&ex->mu);
	ex->upd_p16[gi]++;
	pthread_cond_broadcast(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
}

/* ---- NVMe requests left in flight (opt_io) ----------------------------------------------- */

static const char *const state_name[3] = { "P32", "Adam m", "Adam v" };

/* Waits for the write-behind of set s; rc: the first error so far, kept. Its trace span runs
 * from the writes' submission to their completion as the thread saw it (io_reap), or to the end
 * of this wait: when the disk was busy with them, not when the thread came to wait. */
static int io_wait_writes(sw_exec *ex, int s, int rc)
{
	opt_io *o = &ex->oio;
	if (!o->wr_n[s])
		return rc;
	for (int w = 0; w < o->wr_n[s]; w++) {
		int r = sw_io_wait(ex->io, &o->wr[s][w]);
		if (r && !rc) {
			char what[80];
			snprintf(what, sizeof(what), "write of %s of group %d (slot %d)",
				 w < 3 ? state_name[w] : "P16", o->wr_group[s], w < 3 ? o->wr_slot[s] : 0);
			exec_io_fail(ex, what, &o->wr[s][w]);
			rc = r;
		}
	}
	char nm[24];
	snprintf(nm, sizeof(nm), "write %lld", (long long)o->wr_call[s]);
	exec_span_add(ex, SW_TRACK_NVME_WRITE, nm, o->tw0[s], o->tw1[s] > 0 ? o->tw1[s] : sw_now());
	o->wr_n[s] = 0;
	return rc;
}

/* 1 when every request of reqs[0, n) is done (sw_io_poll: never blocks). */
static int io_all_done(sw_io_req *reqs, int n)
{
	for (int k = 0; k < n; k++)
		if (sw_io_poll(&reqs[k]) == 1)
			return 0;
	return 1;
}

/* Notes when the requests in flight completed (for the trace: a read ahead is consumed, and a
 * write-behind waited for, later than it lands), without waiting or taking their outcome.
 * Returns 1 while some are in flight unseen. */
static int io_reap(sw_exec *ex)
{
	opt_io *o = &ex->oio;
	int left = 0;
	double now = sw_now();
	for (int s = 0; s < ex->nset; s++) {
		if (o->rd_n[s] && o->tr1[s] <= 0) {
			if (io_all_done(o->rd[s], o->rd_n[s]))
				o->tr1[s] = now;
			else
				left = 1;
		}
		if (o->wr_n[s] && o->tw1[s] <= 0) {
			if (io_all_done(o->wr[s], o->wr_n[s]))
				o->tw1[s] = now;
			else
				left = 1;
		}
	}
	return left || o->ra_n < o->ra_want;
}

/* 1 while the thread has NVMe requests in flight, or reads ahead still to submit (a drain
 * flushes them: the staging sets are the caller's after it). */
static int io_in_flight(const sw_exec *ex)
{
	for (int s = 0; s < ex->nset; s++)
		if (ex->oio.rd_n[s] || ex->oio.wr_n[s])
			return 1;
	return ex->oio.ra_want > 0;
}

/* A request the engine refused at submission (nothing was queued): its own line, as a failed
 * transfer has. rc returned. */
static int io_refused(sw_exec *ex, const char *op, int k, int gi, int slot, const sw_io_req *r,
		      int rc)
{
	char what[80];
	snprintf(what, sizeof(what), "%s of %s of group %d (slot %d)", op, k < 3 ? state_name[k] : "P16",
		 gi, k < 3 ? slot : 0);
	exec_io_refused(ex, what, r);
	return rc;
}

/* Drops the reads in flight (waited for: their buffers are ours again). A failed one still
 * fails the run, as every NVMe error does: rc, the first error so far, kept. */
static int io_drop_reads(sw_exec *ex, int rc)
{
	opt_io *o = &ex->oio;
	for (int s = 0; s < ex->nset; s++) {
		for (int k = 0; k < o->rd_n[s]; k++) {
			int r = sw_io_wait(ex->io, &o->rd[s][k]);
			if (r && !rc) {
				exec_io_fail(ex, "read of optimizer state", &o->rd[s][k]);
				rc = r;
			}
		}
		o->rd_n[s] = 0;
	}
	o->ra_n = o->ra_want = 0;
	return rc;
}

/* The writes of group gi's last update still in flight land before its state is read again. */
static int io_wait_group(sw_exec *ex, int gi, int rc)
{
	for (int s = 0; s < ex->nset; s++)
		if (ex->oio.wr_n[s] && ex->oio.wr_group[s] == gi)
			rc = io_wait_writes(ex, s, rc);
	return rc;
}

/* Everything in flight: writes waited for (their first error returned), reads dropped. */
static int io_flush(sw_exec *ex, int rc)
{
	if (!ex->io)
		return rc;
	rc = io_drop_reads(ex, rc);
	for (int s = 0; s < ex->nset; s++)
		rc = io_wait_writes(ex, s, rc);
	return rc;
}

/* Submits the reads of P32, m, v of chunk ci of group gi (slot rs) into set s, after the
 * set's writes landed (P16 is not read: it is rounded from P32). */
static int io_read_chunk(sw_exec *ex, int gi, int rs, int64_t ci, int s, int64_t call, int rc)
{
	opt_io *o = &ex->oio;
	if ((rc = io_wait_writes(ex, s, rc)))
		return rc;
	int64_t n = ex->tt->g[gi].numel;
	int64_t off = ci * ex->chunk, c = n - off < ex->chunk ? n - off : ex->chunk;
	uint64_t cb = exec_up4k((uint64_t)ex->chunk * 4);
	char *base = ex->opt_stage[s];
	o->tr0[s] = sw_now();
	o->tr1[s] = 0;
	o->rd_call[s] = call;
	for (int k = 0; k < 3 && !rc; k++) {
		rc = sw_io_submit_read(ex->io, &o->rd[s][k], ex->g[gi].opt_ext[rs][k], exec_opt_off(off),
				       exec_io_len((uint64_t)c * 4), base + (uint64_t)k * cb);
		if (rc)
			return io_refused(ex, "read", k, gi, rs, &o->rd[s][k], rc);
		o->rd_n[s]++;
	}
	return rc;
}

/* Submits the read-ahead's next chunks (chunk c into set next + c) whose set is free and whose
 * state is final: the set's writes and the group's own writes landed. block: waits for them;
 * else stops at the first chunk that would wait (io_reap and the host updates call it again). */
static int io_ra_pump(sw_exec *ex, int block, int rc)
{
	opt_io *o = &ex->oio;
	while (!rc && o->ra_n < o->ra_want) {
		int s = (o->next + o->ra_n) % ex->nset;
		for (int t = 0; !block && t < ex->nset; t++)
			if (o->wr_n[t] && (t == s || o->wr_group[t] == o->ra_group) &&
			    !io_all_done(o->wr[t], o->wr_n[t]))
				return rc;
		rc = io_wait_group(ex, o->ra_group, rc);
		rc = io_read_chunk(ex, o->ra_group, o->ra_rs, o->ra_n, s, o->ra_call, rc);
		if (!rc)
			o->ra_n++;
	}
	return rc;
}

/* OPT_READ_AHEAD: the first chunks of group gi's state (slot rs), one per staging set, from
 * the set the group's update will start at; the update adopts them (opt_group_nvme). The
 * message is queued right after a step's last NVMe update (exec_opt_send), so the state it
 * reads is final, and again at the next step's start (kept if still there: one slot's state,
 * and the sets, after the write-behind lands). Each chunk is submitted once its set is free
 * (io_ra_pump): the host updates queued behind it do not wait for the write-behind. */
static int io_read_ahead(sw_exec *ex, int gi, int rs, int64_t call)
{
	opt_io *o = &ex->oio;
	if (!(o->ra_want && o->ra_group == gi && o->ra_rs == rs)) {
		int rc = io_drop_reads(ex, 0);
		if (rc)
			return rc;
		int64_t nch = (ex->tt->g[gi].numel + ex->chunk - 1) / ex->chunk;
		o->ra_group = gi;
		o->ra_rs = rs;
		o->ra_call = call;
		o->ra_n = 0;
		o->ra_want = nch < ex->nset ? (int)nch : ex->nset;
	}
	int rc = io_ra_pump(ex, 0, 0);
	return rc ? io_drop_reads(ex, rc) : 0;
}

/* After group gi's NVMe update within a pass: the first chunks of the pass's next NVMe update
 * (every pass sends them from the top group down: the next NVMe group below gi) are read ahead
 * from the same slot as the sets come free, under gi's write-behind and the wait for that
 * group's gradient, so the disk does not run one direction alone at each group's edges. Its
 * state is final: written one step ago (with one slot, its own write-behind lands first). A pass
 * that goes on otherwise (a rollback, a drain) drops it. */
static int io_read_ahead_next(sw_exec *ex, int gi, const opt_msg *q)
{
	for (int gj = gi - 1; gj >= 0; gj--)
		if (ex->g[gj].opt_tier == SW_TIER_NVME)
			return io_read_ahead(ex, gj, q->rs, q->call);
	return 0;
}

/* ---- the updates ------------------------------------------------------------------------- */

/* The CPU update of a group whose P32/m/v live in host memory (P16 in the host cache, or
 * written to NVMe chunk by chunk from the optimizer's staging: nothing else may be in flight
 * from it then). spec: a speculative update, written to the group's second state set. */
static int opt_group_host(sw_exec *ex, const opt_msg *q, const float *hg)
{
	grp *g = &ex->g[q->group];
	int64_t n = ex->tt->g[q->group].numel;
	int rc = g->p16_tier == SW_TIER_NVME ? io_flush(ex, 0) : 0;
	double t0 = sw_now();
	for (int64_t off = 0; off < n && !rc; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab
							: ex->opt_stage[0];
		adam_range(ex, q, off, c, g->opt_host[0] + off, g->opt_host[1] + off,
			   g->opt_host[2] + off, hg + off, p16, q->spec ? g->alt : NULL);
		if (g->p16_tier == SW_TIER_NVME)
			rc = exec_io_write_wait(ex, g->p16_ext, (uint64_t)off * (uint64_t)ex->ab,
						exec_io_len((uint64_t)c * (uint64_t)ex->ab), p16);
		else if (!rc && ex->oio.ra_n < ex->oio.ra_want && (rc = io_ra_pump(ex, 0, rc)))
			rc = io_drop_reads(ex, rc);   /* the next step's reads ahead, as sets free up */
	}
	char nm[24];
	snprintf(nm, sizeof(nm), "adam %lld", (long long)q->call);
	exec_span_add(ex, SW_TRACK_OPTIM, nm, t0, sw_now());
	return rc;
}

/* The NVMe pipeline of one group: chunk c is read into staging set (base + c) % nset before
 * chunk c-1 is written back (read-ahead before write-behind); the writes of a set complete
 * before the set is read into again: with two sets the read of chunk c waits for the write of
 * chunk c-2, submitted just before (the disk then runs one read and one write, and both drain
 * at each chunk); with three, for that of c-3, submitted a chunk earlier. */
typedef struct opt_pipe {
	sw_exec *ex;
	const opt_msg *q;
	const float *hg;
	int base;                          /* the set of chunk 0 */
	int64_t n;
	uint64_t cb;                       /* bytes of one fp32 chunk in a staging set */
	int marked;                        /* the P16 home was marked final */
} opt_pipe;

/* Chunk ci, read one step ago: AdamW, then P32, m, v (and P16 when it lives on NVMe) written
 * behind into slot ws. */
static int pipe_update(opt_pipe *p, int64_t ci, int rc)
{
	sw_exec *ex = p->ex;
	opt_io *o = &ex->oio;
	const opt_msg *q = p->q;
	grp *g = &ex->g[q->group];
	int ps = (int)((p->base + ci) % ex->nset);
	int64_t off = ci * ex->chunk, c = p->n - off < ex->chunk ? p->n - off : ex->chunk;
	char *base = ex->opt_stage[ps];
	for (int k = 0; k < o->rd_n[ps]; k++) {
		int r = sw_io_wait(ex->io, &o->rd[ps][k]);
		if (r && !rc) {
			char what[80];
			snprintf(what, sizeof(what), "read of %s of group %d (slot %d)", state_name[k],
				 q->group, q->rs);
			exec_io_fail(ex, what, &o->rd[ps][k]);
			rc = r;
		}
	}
	o->rd_n[ps] = 0;
	char nm[24];
	snprintf(nm, sizeof(nm), "read %lld", (long long)o->rd_call[ps]);
	exec_span_add(ex, SW_TRACK_NVME_READ, nm, o->tr0[ps], o->tr1[ps] > 0 ? o->tr1[ps] : sw_now());
	if (rc)
		return rc;
	uint64_t cb = p->cb;
	float *p32 = (float *)base, *m = (float *)(base + cb), *v = (float *)(base + 2 * cb);
	void *p16 = g->p16_tier == SW_TIER_HOST ? (char *)g->p16_host + off * ex->ab : (void *)(base + 3 * cb);
	double ta = sw_now();
	adam_range(ex, q, off, c, p32, m, v, p->hg + off, p16, NULL);
	if (q->fin_scan)   /* a commit follows this step: what it writes is checked finite */
		exec_commit_scan(ex, q->group, off, c, (const float *const[3]){ p32, m, v });
	snprintf(nm, sizeof(nm), "adam %lld", (long long)q->call);
	exec_span_add(ex, SW_TRACK_OPTIM, nm, ta, sw_now());
	io_reap(ex);   /* the next chunk's reads and the other set's writes: landed meanwhile? */
	if (off + c == p->n && g->p16_tier == SW_TIER_HOST) {
		/* the P16 home is final: the next forward may use it while P32/m/v are written */
		mark_p16(ex, q->group);
		p->marked = 1;
	}
	o->wr_group[ps] = q->group;
	o->wr_slot[ps] = q->ws;
	o->wr_call[ps] = q->call;
	o->tw0[ps] = sw_now();
	o->tw1[ps] = 0;
	for (int k = 0; k < 3 && !rc; k++) {
		rc = sw_io_submit_write(ex->io, &o->wr[ps][o->wr_n[ps]], g->opt_ext[q->ws][k],
					exec_opt_off(off), exec_io_len((uint64_t)c * 4), base + (uint64_t)k * cb);
		if (rc)
			return io_refused(ex, "write", k, q->group, q->ws, &o->wr[ps][o->wr_n[ps]], rc);
		o->wr_n[ps]++;
	}
	if (!rc && g->p16_tier == SW_TIER_NVME) {
		rc = sw_io_submit_write(ex->io, &o->wr[ps][o->wr_n[ps]], g->p16_ext,
					(uint64_t)off * (uint64_t)ex->ab,
					exec_io_len((uint64_t)c * (uint64_t)ex->ab), p16);
		if (rc)
			return io_refused(ex, "write", 3, q->group, 0, &o->wr[ps][o->wr_n[ps]], rc);
		o->wr_n[ps]++;
	}
	return rc;
}

/* The group's state read from slot rs (its first chunks maybe read ahead already), updated and
 * written behind into slot ws. The writes of its last chunks stay in flight when the step
 * boundary overlaps (their sets wait for them), unless P16 lives on NVMe (its home must be
 * final before the group is marked). *marked: the P16 home was marked final. */
static int opt_group_nvme(sw_exec *ex, const opt_msg *q, const float *hg, int *marked)
{
	opt_io *o = &ex->oio;
	int gi = q->group;
	opt_pipe p = { .ex = ex, .q = q, .hg = hg, .n = ex->tt->g[gi].numel,
		       .cb = exec_up4k((uint64_t)ex->chunk * 4) };
	int64_t nch = (p.n + ex->chunk - 1) / ex->chunk;
	int rc = exec_commit_gate_wait(ex);   /* slot ws may hold the last durable commit */
	if (rc)
		return rc;
	grp *g = &ex->g[gi];
	g->fin_slot = q->fin_scan ? 1 + q->ws : 0;   /* slot ws changes: checked or unknown */
	g->fin_k = -1;
	int have = 0;
	if (o->ra_want && o->ra_group == gi && o->ra_rs == q->rs) {
		rc = io_ra_pump(ex, 1, rc);   /* read ahead: the chunks not yet submitted now */
		have = o->ra_n;
	} else if (o->ra_want) {
		rc = io_drop_reads(ex, rc);
	}
	o->ra_n = o->ra_want = 0;
	__atomic_fetch_add(&ex->ra_used, (int64_t)have, __ATOMIC_RELAXED);
	rc = io_wait_group(ex, gi, rc);
	p.base = o->next;
	for (int64_t ci = 0; ci <= nch && !rc; ci++) {
		if (ci < nch && ci >= have)
			rc = io_read_chunk(ex, gi, q->rs, ci, (int)((p.base + ci) % ex->nset), q->call, rc);
		if (ci > 0 && !rc)
			rc = pipe_update(&p, ci - 1, rc);
	}
	o->next = (int)((p.base + nch) % ex->nset);
	if (rc)
		rc = io_drop_reads(ex, rc);   /* reads ahead of a failed update */
	if (rc || !ex->overlap || g->p16_tier == SW_TIER_NVME)
		rc = io_flush(ex, rc);
	else if (!ex->write_behind)   /* SW_OPT_WRITE_BEHIND=0: the writes land before the next
				       * message (no read of the next group beside them) */
		for (int s = 0; s < ex->nset; s++)
			rc = io_wait_writes(ex, s, rc);
	if (!rc && ex->read_ahead == RA_PASS)
		rc = io_read_ahead_next(ex, gi, q);
	*marked = p.marked;
	return rc;
}

/* The CPU update of one group (an OPT_UPDATE message). 0 or -errno (I/O). */
static int opt_group(sw_exec *ex, const opt_msg *q, const float *hg, int *marked)
{
	*marked = 0;
	if (q->group == ex->delay_group && ex->delay_ms > 0)
		usleep((useconds_t)ex->delay_ms * 1000);   /* test hook: a late update */
	if (ex->g[q->group].opt_tier == SW_TIER_HOST)
		return opt_group_host(ex, q, hg);
	/* NVMe state needs no second set: every update writes the other slot (two slots) */
	SW_ASSERT(!q->spec || ex->p->in.slots == 2);
	return opt_group_nvme(ex, q, hg, marked);
}

/* One message on the optimizer thread. */
static int opt_run(sw_exec *ex, const opt_msg *q)
{
	if (q->kind == OPT_SWAP) {
		exec_clip_swap(ex);
		return 0;
	}
	if (q->kind == OPT_READ_AHEAD)
		return io_read_ahead(ex, q->group, q->rs, q->call);
	if (q->kind == OPT_FLUSH)
		return io_flush(ex, 0);
	if (q->hb >= 0)   /* the gradient has arrived (a held one is there already) */
		ex->be->ops->event_sync(ex->be, ex->hgrad_ev[q->hb]);
	int marked;
	int rc = opt_group(ex, q, q->hb >= 0 ? ex->hgrad[q->hb] : q->grad, &marked);
	if (!marked)
		mark_p16(ex, q->group);
	return rc;
}

/* An update of a group whose state lives in host memory (it reads and writes nothing but its
 * own state and gradient, so it may run before updates queued ahead of it). */
static int host_update(const sw_exec *ex, const opt_msg *m)
{
	return m->kind == OPT_UPDATE && ex->g[m->group].opt_tier == SW_TIER_HOST;
}

/* Whether the update's gradient is in host memory: its copy (on the D2H stream, in the order
 * the messages were sent) has landed. A held gradient was waited for when it was sent. */
static int grad_landed(const sw_exec *ex, const opt_msg *m)
{
	return m->hb < 0 || ex->be->ops->event_done(ex->be, ex->hgrad_ev[m->hb]);
}

/* The next message (under mu, qn > 0). In arrival order, except that of the host-state updates
 * waiting at the head of the queue (up to the first message of another kind) whose gradients
 * have landed, the one of the lowest group runs first: the next forward uses the groups from
 * the embedding up, so when AdamW lags behind the backward the updates left at the step's end
 * are those of the groups the forward reaches last, which then run under it. Only landed ones:
 * the thread that issues the GPU work sends each message when it queues the gradient's copy,
 * often several layers ahead of the GPU, and the lowest group waiting is then the one whose
 * gradient comes last; taking it would leave AdamW waiting while the others' gradients sit
 * ready (the likely cause of the 0.2 s of updates past each step's end in regime 1 of
 * docs/perf.md). When none has landed, the head, whose copy lands first. Any order gives the
 * same bits: each update touches its own group only. */
opt_msg exec_opt_take(sw_exec *ex)
{
	int pick = 0;
	if (ex->first_needed) {
		int best = -1;
		for (int i = 0; i < ex->qn && host_update(ex, &ex->q[(ex->qhead + i) % OPT_Q]); i++) {
			const opt_msg *c = &ex->q[(ex->qhead + i) % OPT_Q];
			if (!grad_landed(ex, c))
				continue;
			if (best < 0 || c->group < ex->q[(ex->qhead + best) % OPT_Q].group)
				best = i;
		}
		pick = best < 0 ? 0 : best;
	}
	opt_msg m = ex->q[(ex->qhead + pick) % OPT_Q];
	if (pick)
		__atomic_fetch_add(&ex->reordered, 1, __ATOMIC_RELAXED);
	for (int i = pick; i > 0; i--)   /* close the gap: those ahead of it move back by one */
		ex->q[(ex->qhead + i) % OPT_Q] = ex->q[(ex->qhead + i - 1) % OPT_Q];
	ex->qhead = (ex->qhead + 1) % OPT_Q;
	ex->qn--;
	return m;
}

/* The idle optimizer thread waits for the next message; while NVMe requests it left in flight
 * have not been seen complete, it looks every millisecond (io_reap: for the trace). Under mu. */
static void opt_idle(sw_exec *ex)
{
	while (!ex->qn && !ex->quit) {
		if (!ex->io || !ex->io_left) {
			pthread_cond_wait(&ex->cv, &ex->mu);
			continue;
		}
		pthread_mutex_unlock(&ex->mu);
		int rc = io_ra_pump(ex, 0, 0);   /* reads ahead whose sets have come free */
		if (rc)
			rc = io_drop_reads(ex, rc);
		int left = io_reap(ex), in_flight = io_in_flight(ex);
		pthread_mutex_lock(&ex->mu);
		if (rc && !ex->err)
			ex->err = rc;
		ex->io_left = in_flight;
		if (!left) {   /* all seen: sleep until a message comes */
			while (!ex->qn && !ex->quit)
				pthread_cond_wait(&ex->cv, &ex->mu);
			return;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&ex->cv, &ex->mu, &ts);
	}
}

void *exec_opt_thread(void *arg)
{
	sw_exec *ex = arg;
	pthread_mutex_lock(&ex->mu);
	for (;;) {
		opt_idle(ex);
		if (!ex->qn && ex->quit)
			break;
		opt_msg msg = exec_opt_take(ex);
		ex->busy = 1;
		pthread_mutex_unlock(&ex->mu);
		int rc = opt_run(ex, &msg);
		int left = ex->io && io_in_flight(ex);
		pthread_mutex_lock(&ex->mu);
		if (rc && !ex->err)
			ex->err = rc;
		if (msg.kind == OPT_UPDATE && msg.hb >= 0)
			ex->hgrad_busy[msg.hb] = 0;
		ex->io_left = left;
		ex->busy = 0;
		pthread_cond_broadcast(&ex->cv);
	}
	pthread_mutex_unlock(&ex->mu);
	io_flush(ex, 0);   /* nothing of ours stays in flight past the thread */
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

/* Queues m (under mu), waiting for room. */
static void opt_push(sw_exec *ex, const opt_msg *m)
{
	while (ex->qn == OPT_Q)
		pthread_cond_wait(&ex->cv, &ex->mu);
	ex->q[(ex->qhead + ex->qn) % OPT_Q] = *m;
	ex->qn++;
	pthread_cond_broadcast(&ex->cv);
}

void exec_opt_send(sw_exec *ex, int gi, int hb, double scale, int spec, const float *grad)
{
	opt_msg m = { .kind = OPT_UPDATE, .group = gi, .hb = hb, .spec = spec, .scale = scale,
		      .grad = grad, .lr = ex->lr, .step = ex->step, .call = ex->calls, .rs = ex->slot,
		      .ws = exec_write_slot(ex), .fin_scan = ex->fin_scan };
	pthread_mutex_lock(&ex->mu);
	ex->upd_sent[gi]++;
	opt_push(ex, &m);
	if (ex->read_ahead && gi == ex->ra_last) {
		/* the step's last NVMe update is queued (every path sends them from the top group
		 * down): the next step's first NVMe state is final once it lands, so read it ahead
		 * now, under this step's remaining backward and host updates, from the slot the next
		 * step reads if this one stands (a rollback or a drain drops it; the next step asks
		 * again at its start) */
		opt_msg ra = { .kind = OPT_READ_AHEAD, .group = ex->ra_first, .hb = -1,
			       .rs = exec_write_slot(ex), .call = ex->calls + 1 };
		opt_push(ex, &ra);
	}
	pthread_mutex_unlock(&ex->mu);
}

void exec_opt_post(sw_exec *ex, int kind, int gi, int rs)
{
	opt_msg m = { .kind = kind, .group = gi, .hb = -1, .rs = rs, .call = ex->calls };
	pthread_mutex_lock(&ex->mu);
	opt_push(ex, &m);
	pthread_mutex_unlock(&ex->mu);
}

/* Waits (under mu) until the queue is empty and the thread idle. */
static void opt_wait_idle(sw_exec *ex)
{
	while (ex->qn || ex->busy)
		pthread_cond_wait(&ex->cv, &ex->mu);
}

int exec_opt_drain(sw_exec *ex)
{
	if (!ex->thr_started)
		return 0;
	pthread_mutex_lock(&ex->mu);
	opt_wait_idle(ex);
	int flush = ex->io_left;   /* write-behind or read-ahead left in flight (the overlap) */
	pthread_mutex_unlock(&ex->mu);
	if (flush)   /* one round trip, only when something is in flight (put/take drain per chunk) */
		exec_opt_post(ex, OPT_FLUSH, -1, 0);
	pthread_mutex_lock(&ex->mu);
	opt_wait_idle(ex);
	int rc = ex->err;
	ex->err = 0;
	pthread_mutex_unlock(&ex->mu);
	return rc;
}

int sw_exec_sync(sw_exec *ex) { return exec_opt_drain(ex); }

int exec_opt_error(sw_exec *ex)
{
	if (!ex->thr_started)
		return 0;
	pthread_mutex_lock(&ex->mu);
	int rc = ex->err;
	ex->err = 0;
	pthread_mutex_unlock(&ex->mu);
	return rc;
}

void exec_group_wait(sw_exec *ex, int gi)
{
	if (!ex->thr_started || ex->no_wait)
		return;
	pthread_mutex_lock(&ex->mu);
	while (ex->upd_p16[gi] < ex->upd_sent[gi])
		pthread_cond_wait(&ex->cv, &ex->mu);
	pthread_mutex_unlock(&ex->mu);
}
