/* Group state between steps (sw_exec_put / take, whole groups) through its home on the device,
 * pinned host memory or NVMe, and the NVMe transfer helpers the other files use. */
#include "offload/exec_int.h"
#include "core/log.h"
#include "core/safetensors.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line per failed run: a second failure is mostly the same fault met by another request in
 * flight (on the optimizer's thread or the main one), not news. */
void exec_io_fail(sw_exec *ex, const char *what, const sw_io_req *r)
{
	if (!__atomic_exchange_n(&ex->io_failed, 1, __ATOMIC_ACQ_REL))
		sw_error("executor: NVMe %s failed: %s", what, sw_io_req_error(r));
}

void exec_io_refused(sw_exec *ex, const char *what, const sw_io_req *r)
{
	if (!__atomic_exchange_n(&ex->io_failed, 1, __ATOMIC_ACQ_REL))
		sw_error("executor: NVMe %s could not be queued: %s; the step stops here: "
			 "--resume from the last save or commit", what,
			 sw_io_req_error(r));
}

int exec_io_read(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, void *buf)
{
	sw_io_req r;
	double t0 = sw_now();
	int rc = sw_io_submit_read(ex->io, &r, e, off, len, buf);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc)
		exec_io_fail(ex, "read", &r);
	exec_span_add(ex, SW_TRACK_NVME_READ, "read", t0, sw_now());
	return rc;
}

/* Read length: whole 4 KiB pages (the extent is rounded up; the tail is ours). */
uint64_t exec_io_len(uint64_t bytes) { return exec_up4k(bytes); }

/* ---------------------------------------------------------------- group state ---------- */

/* Byte offset of element off in an optimizer-state extent. */
uint64_t exec_opt_off(int64_t off) { return (uint64_t)off * 4; }

int exec_io_write_wait(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, const void *buf)
{
	sw_io_req r;
	double t0 = sw_now();
	int rc = sw_io_submit_write(ex->io, &r, e, off, len, buf);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc)
		exec_io_fail(ex, "write", &r);
	exec_span_add(ex, SW_TRACK_NVME_WRITE, "write", t0, sw_now());
	return rc;
}


float *sw_exec_xfer(sw_exec *ex) { return ex->xfer; }
int64_t sw_exec_xfer_len(const sw_exec *ex) { return ex->chunk; }

/* ---- homes: where a buffer of state lives (device buffer | pinned host | NVMe extent) -------- */

exec_home exec_home_p16(const sw_exec *ex, int gi)
{
	const grp *g = &ex->g[gi];
	return (exec_home){ g->p16_tier, g->p16_dev, g->p16_host, g->p16_ext };
}

/* State k (0 P32, 1 m, 2 v) of group gi in NVMe slot `slot` (the slot only matters on NVMe). */
exec_home exec_home_opt(const sw_exec *ex, int gi, int k, int slot)
{
	const grp *g = &ex->g[gi];
	return (exec_home){ g->opt_tier, g->opt_dev[k], g->opt_host[k], g->opt_ext[slot][k] };
}

/* Writes bytes [off, off + len) of a home from host memory src (NULL: zeros), synchronously;
 * NVMe goes through the pinned buffer stage (room for len rounded up to 4 KiB). */
int exec_home_write(sw_exec *ex, const exec_home *h, uint64_t off, uint64_t len, const void *src,
		    void *stage)
{
	sw_backend *be = ex->be;
	if (h->tier == SW_TIER_GPU) {
		if (src)
			be->ops->copy_h2d(be, ex->cs, (char *)h->dev + off, src, len);
		else
			be->ops->memset0(be, ex->cs, (char *)h->dev + off, len);
		be->ops->stream_sync(be, ex->cs);
		return 0;
	}
	void *dst = h->tier == SW_TIER_HOST ? (char *)h->host + off : stage;
	if (src && src != dst)
		memcpy(dst, src, len);
	else if (!src)
		memset(dst, 0, len);
	if (h->tier == SW_TIER_HOST)
		return 0;
	return exec_io_write_wait(ex, h->ext, off, exec_io_len(len), stage);
}

/* Reads bytes [off, off + len) of a home into host memory dst, synchronously (NVMe through the
 * pinned buffer stage). */
int exec_home_read(sw_exec *ex, const exec_home *h, uint64_t off, uint64_t len, void *dst, void *stage)
{
	sw_backend *be = ex->be;
	if (h->tier == SW_TIER_GPU) {
		be->ops->copy_d2h(be, ex->cs, dst, (const char *)h->dev + off, len);
		be->ops->stream_sync(be, ex->cs);
		return 0;
	}
	if (h->tier == SW_TIER_HOST) {
		memcpy(dst, (const char *)h->host + off, len);
		return 0;
	}
	int rc = exec_io_read(ex, h->ext, off, exec_io_len(len), stage);
	if (!rc && dst != stage)
		memcpy(dst, stage, len);
	return rc;
}

/* Group gi's P16 from its home (host cache, or NVMe chunk by chunk through the P16 staging
 * buffers) into device memory dev, queued on stream st. */
int exec_home_p16_fetch(sw_exec *ex, int gi, void *dev, sw_stream *st)
{
	sw_backend *be = ex->be;
	const sw_backend_ops *op = be->ops;
	exec_home h = exec_home_p16(ex, gi);
	int64_t n = ex->tt->g[gi].numel;
	uint64_t ab = (uint64_t)ex->ab;
	exec_group_wait(ex, gi);   /* the group's last update has written its P16 home */
	if (h.tier == SW_TIER_HOST) {
		op->copy_h2d(be, st, dev, h.host, (uint64_t)n * ab);
		return 0;
	}
	for (int64_t off = 0; off < n; off += ex->chunk) {
		int64_t c = n - off < ex->chunk ? n - off : ex->chunk;
		int s = ex->p16_next;
		ex->p16_next = (s + 1) % SW_PLAN_P16_STAGES;
		op->event_sync(be, ex->p16_ev[s]);       /* the previous H2D from it is done */
		int rc = exec_io_read(ex, h.ext, (uint64_t)off * ab, exec_io_len((uint64_t)c * (uint64_t)ex->ab),
				      ex->p16_stage[s]);
		if (rc)
			return rc;
		op->copy_h2d(be, st, (char *)dev + (uint64_t)off * ab, ex->p16_stage[s], (uint64_t)c * ab);
		op->event_record(be, ex->p16_ev[s], st);
	}
	return 0;
}

/* P16 of a range from its fp32 masters: round to nearest even on the host (the same rounding
 * as the backends' cast and the AdamW p16 output), so every placement starts from the same bits.
 * Converted into the home's own memory (host), the P16 staging buffer (NVMe) or a small bounce
 * buffer in pieces (device). */
int exec_home_put_p16(sw_exec *ex, int gi, int64_t off, int64_t n, const float *src)
{
	sw_backend *be = ex->be;
	exec_home h = exec_home_p16(ex, gi);
	uint64_t ab = (uint64_t)ex->ab;
	enum { PIECE = 1 << 12 };   /* the device's bounce buffer: host memory outside the table */
	int64_t piece = h.tier == SW_TIER_GPU ? PIECE : n;
	uint8_t *buf = h.tier == SW_TIER_HOST ? (uint8_t *)h.host + (uint64_t)off * ab :
		       h.tier == SW_TIER_NVME ? ex->p16_stage[0] : malloc((size_t)PIECE * ab);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	for (int64_t o = 0; o < n && !rc; o += piece) {
		int64_t c = n - o < piece ? n - o : piece;
		sw_convert(buf, be->act, src + o, SW_DTYPE_F32, c);
		rc = exec_home_write(ex, &h, (uint64_t)(off + o) * ab, (uint64_t)c * ab, buf, buf);
	}
	if (h.tier == SW_TIER_GPU)
		free(buf);
	return rc;
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
	SW_ASSERT(src || state != SW_STATE_P32);
	int k = state_slot(ex, gi, state, off, n);
	int rc = sw_exec_sync(ex);
	if (rc)
		return rc;
	exec_home h = exec_home_opt(ex, gi, k, ex->slot);
	rc = exec_home_write(ex, &h, exec_opt_off(off), (uint64_t)n * 4, src, ex->opt_stage[0]);
	if (!rc && state == SW_STATE_P32)
		rc = exec_home_put_p16(ex, gi, off, n, src);
	return rc;
}

int sw_exec_take(sw_exec *ex, int gi, sw_state state, int64_t off, int64_t n, float *dst)
{
	int k = state_slot(ex, gi, state, off, n);
	int rc = sw_exec_sync(ex);
	if (rc)
		return rc;
	exec_home h = exec_home_opt(ex, gi, k, ex->slot);
	return exec_home_read(ex, &h, exec_opt_off(off), (uint64_t)n * 4, dst, ex->opt_stage[0]);
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

