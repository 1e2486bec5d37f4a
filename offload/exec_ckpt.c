/* The activation carry between layers and the checkpoint ring: layer inputs saved in forward
 * to their tier (device, host, or pinned staging -> NVMe, written behind) and read back ahead
 * of the backward pass. */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- activations ---------- */

uint64_t exec_xbytes(const sw_exec *ex) { return (uint64_t)ex->d.N * (uint64_t)ex->d.C * (uint64_t)ex->ab; }

/* Device view of carry[m] (staged into xa when the carry is on the host). */
void *exec_carry_get(sw_exec *ex, int m)
{
	if (ex->carry_dev)
		return (char *)ex->carry_dev + (uint64_t)m * exec_xbytes(ex);
	ex->be->ops->copy_h2d(ex->be, ex->cs, ex->xa, (char *)ex->carry_host + (uint64_t)m * exec_xbytes(ex),
			      exec_xbytes(ex));
	return ex->xa;
}

void exec_carry_put(sw_exec *ex, int m, const void *x)
{
	if (ex->carry_dev) {
		void *dst = (char *)ex->carry_dev + (uint64_t)m * exec_xbytes(ex);
		if (dst != x)
			ex->be->ops->copy_d2d(ex->be, ex->cs, dst, x, exec_xbytes(ex));
		return;
	}
	ex->be->ops->copy_d2h(ex->be, ex->cs, (char *)ex->carry_host + (uint64_t)m * exec_xbytes(ex), x,
			      exec_xbytes(ex));
}

/* Makes slot i reusable: waits for its I/O (a read nobody consumed is dropped) and for the last
 * GPU copy to or from it. 0 or -errno of a failed write. */
static int ck_slot_take(sw_exec *ex, int i)
{
	ck_slot *c = &ex->cks[i];
	int rc = 0;
	if (c->state != CK_FREE) {
		rc = sw_io_wait(ex->io, &c->req);
		exec_span_add(ex, c->state == CK_WRITING ? SW_TRACK_NVME_WRITE : SW_TRACK_NVME_READ,
			 c->state == CK_WRITING ? "write" : "read", c->t0, sw_now());
		if (rc && c->state == CK_WRITING)
			exec_io_fail(ex, "write of a checkpoint", &c->req);
		if (c->state == CK_READING)
			rc = 0;   /* a dropped read: whatever happened to it, nobody uses its data */
		c->state = CK_FREE;
	}
	if (ex->ck_ev[i])
		ex->be->ops->event_sync(ex->be, ex->ck_ev[i]);
	return rc;
}

/* Waits for every checkpoint slot (writes and unconsumed reads). 0 or the first error. */
int exec_ck_drain(sw_exec *ex)
{
	int rc = 0;
	for (int i = 0; i < ex->ck_nslot; i++) {
		int r = ck_slot_take(ex, i);
		if (r && !rc)
			rc = r;
	}
	return rc;
}

/* The caller's next write of the carry (or of xa) waits for the checkpoint copy still reading
 * it: call before exec_carry_put. */
void exec_ckpt_saved(sw_exec *ex)
{
	if (!ex->ck_out_pending)
		return;
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->ck_out_done);
	ex->ck_out_pending = 0;
}

/* Host: the D2H runs on the D2H stream beside the layer's compute, which reads x too; the
 * carry_put that overwrites x waits for it (exec_ckpt_saved). On the compute stream each copy
 * stalled the GPU: 0.23 ms for the 2.8B shape's 12 MiB at 55 GB/s, 182 a step each way in
 * regime 1 of docs/perf.md.
 * NVMe: writes behind: the copy to pinned memory is waited for, the NVMe write is not (the
 * slot's next user waits for it, and every read waits for all writes first: ck_read_ahead).
 * The write goes ahead of the optimizer's queued writes (sw_io_submit_urgent). */
int exec_ckpt_save(sw_exec *ex, int l, int m, const void *x)
{
	sw_backend *be = ex->be;
	ckpt *k = &ex->ck[l * ex->M + m];
	if (k->tier == SW_TIER_GPU) {
		be->ops->copy_d2d(be, ex->cs, k->dev, x, exec_xbytes(ex));
		return 0;
	}
	if (k->tier == SW_TIER_HOST) {
		SW_ASSERT(!ex->ck_out_pending);   /* one save at a time: exec_ckpt_saved in between */
		sw_stream *st = ex->ck_streams ? ex->ds : ex->cs;
		if (ex->ck_streams) {
			be->ops->event_record(be, ex->ck_out_ready, ex->cs);
			be->ops->stream_wait(be, ex->ds, ex->ck_out_ready);
		}
		int sp = exec_gspan_begin(ex, st, SW_TRACK_D2H);
		be->ops->copy_d2h(be, st, k->host, x, exec_xbytes(ex));
		exec_gspan_end(ex, st, sp);
		if (ex->ck_streams) {
			be->ops->event_record(be, ex->ck_out_done, ex->ds);
			ex->ck_out_pending = 1;
		}
		return 0;
	}
	int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_D2H);
	int i = ex->ck_next, rc;
	ex->ck_next = (i + 1) % ex->ck_nslot;
	if ((rc = ck_slot_take(ex, i)))
		return rc;
	be->ops->copy_d2h(be, ex->cs, ex->ck_stage[i], x, exec_xbytes(ex));
	exec_gspan_end(ex, ex->cs, sp);
	be->ops->event_record(be, ex->ck_ev[i], ex->cs);
	be->ops->event_sync(be, ex->ck_ev[i]);
	ck_slot *c = &ex->cks[i];
	c->t0 = sw_now();
	/* urgent: the forward waits for this write when its slot comes round again, and at the step
	 * boundary the last updates' write-behind (hundreds of MB) is queued ahead of it */
	uint64_t len = exec_io_len(exec_xbytes(ex));
	rc = ex->ck_urgent ? sw_io_submit_urgent(ex->io, &c->req, SW_IO_WRITE, k->ext, 0, len, ex->ck_stage[i])
			   : sw_io_submit_write(ex->io, &c->req, k->ext, 0, len, ex->ck_stage[i]);
	if (rc) {
		exec_io_fail(ex, "write of a checkpoint", &c->req);
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
			if ((rc = sw_io_submit_read(ex->io, &c->req, k->ext, 0, exec_io_len(exec_xbytes(ex)),
						    ex->ck_stage[i]))) {
				exec_io_fail(ex, "read of a checkpoint", &c->req);
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
int exec_ck_read_from(sw_exec *ex, int l, int m)
{
	for (int j = 0; j < ex->ck_nslot; j++)
		if (ex->cks[j].state == CK_READING)
			ck_slot_take(ex, j);
	ex->ck_ra_l = l;
	ex->ck_ra_m = m;
	return ck_read_ahead(ex);
}

/* At the start of a backward pass: every checkpoint-in buffer free as of now. */
void exec_ckpt_bwd_begin(sw_exec *ex)
{
	for (int b = 0; b < SW_PLAN_XC; b++)
		ex->be->ops->event_record(ex->be, ex->xc_free[b], ex->cs);
	ex->xc_next = 0;
}

/* Device view of checkpoint (l, m): its GPU block, or xc[b] (the SW_PLAN_XC buffers in turn)
 * with the checkpoint copied in. A host checkpoint's H2D runs on the H2D stream once xc[b]'s
 * last reader (SW_PLAN_XC uses ago) is done, so it lands while the uses before it compute; an
 * NVMe one is copied on the compute stream after its read. The reads share the stream of the
 * P16 fills on purpose: on a stream of their own (tried, docs/perf.md) the next layer's fill
 * started earlier, and a read issued after it waited for the whole fill in the copy engine
 * (4 ms idle a layer on the H100, the step 6 % longer); in one stream the reads go first.
 * The next layer's fill is queued behind this layer's last read, which waits for the compute
 * SW_PLAN_XC uses back; the next layer's first read waits behind the fill. With two buffers
 * that left one micro-batch's compute (2.6 ms at the 2.8B shape) for a 201 MB fill and a read
 * beside the gradient copies (0.9 ms idle at each backward layer's start on the H100); three
 * leave two. */
int exec_ckpt_get(sw_exec *ex, int l, int m, void **x)
{
	sw_backend *be = ex->be;
	ckpt *k = &ex->ck[l * ex->M + m];
	if (k->tier == SW_TIER_GPU) {
		*x = k->dev;
		return 0;
	}
	int b = ex->xc_next;
	ex->xc_next = (b + 1) % SW_PLAN_XC;
	/* the compute queued so far ends the use of the previous get's buffer */
	be->ops->event_record(be, ex->xc_free[(b + SW_PLAN_XC - 1) % SW_PLAN_XC], ex->cs);
	void *xc = ex->xc[b];
	const void *src = k->host;
	if (k->tier == SW_TIER_NVME) {
		int i = -1, rc;
		for (int j = 0; j < ex->ck_nslot && i < 0; j++)
			if (ex->cks[j].state == CK_READING && ex->cks[j].l == l && ex->cks[j].m == m)
				i = j;
		if (i < 0) {
			/* not read ahead (backward asked out of order): start again from here */
			i = ex->ck_ra_slot;
			if ((rc = exec_ck_read_from(ex, l, m)))
				return rc;
			SW_ASSERT(ex->cks[i].state == CK_READING && ex->cks[i].l == l && ex->cks[i].m == m);
		}
		ck_slot *c = &ex->cks[i];
		rc = sw_io_wait(ex->io, &c->req);
		exec_span_add(ex, SW_TRACK_NVME_READ, "read", c->t0, sw_now());
		c->state = CK_FREE;
		if (rc) {
			exec_io_fail(ex, "read of a checkpoint", &c->req);
			return rc;
		}
		src = ex->ck_stage[i];
		int sp = exec_gspan_begin(ex, ex->cs, SW_TRACK_H2D);
		be->ops->copy_h2d(be, ex->cs, xc, src, exec_xbytes(ex));
		exec_gspan_end(ex, ex->cs, sp);
		be->ops->event_record(be, ex->ck_ev[i], ex->cs);
		/* the slot is free once the copy is done: read further ahead into it */
		if ((rc = ck_read_ahead(ex)))
			return rc;
	} else {
		sw_stream *st = ex->ck_streams ? ex->hs : ex->cs;
		if (ex->ck_streams)
			be->ops->stream_wait(be, ex->hs, ex->xc_free[b]);
		int sp = exec_gspan_begin(ex, st, SW_TRACK_H2D);
		be->ops->copy_h2d(be, st, xc, src, exec_xbytes(ex));
		exec_gspan_end(ex, st, sp);
		if (ex->ck_streams) {
			be->ops->event_record(be, ex->xc_ready[b], ex->hs);
			be->ops->stream_wait(be, ex->cs, ex->xc_ready[b]);
		}
	}
	*x = xc;
	return 0;
}

