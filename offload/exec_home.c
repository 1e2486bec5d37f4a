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

int exec_io_read(sw_exec *ex, sw_io_extent e, uint64_t off, uint64_t len, void *buf)
{
	sw_io_req r;
	double t0 = sw_now();
	int rc = sw_io_submit_read(ex->io, &r, e, off, len, buf);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc)
		sw_error("executor: NVMe read failed: %s", sw_io_req_error(&r));
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
		sw_error("executor: NVMe write failed: %s", sw_io_req_error(&r));
	exec_span_add(ex, SW_TRACK_NVME_WRITE, "write", t0, sw_now());
	return rc;
}

/* Writes n elements starting at element 'off' of a state whose extent holds 'total' elements;
 * lengths rounded to 4 KiB (the last chunk runs into the extent's padding). */
uint64_t exec_chunk_len(int64_t off, int64_t n, int64_t total, int esz)
{
	(void)off; (void)total;
	return exec_io_len((uint64_t)n * (uint64_t)esz);
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
		return exec_io_write_wait(ex, g->p16_ext, (uint64_t)off * ab, exec_chunk_len(off, n, 0, ex->ab),
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
		rc = exec_io_write_wait(ex, g->opt_ext[ex->slot][k], exec_opt_off(off), exec_chunk_len(off, n, 0, 4),
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
	int rc = exec_io_read(ex, g->opt_ext[ex->slot][k], exec_opt_off(off), exec_chunk_len(off, n, 0, 4),
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

