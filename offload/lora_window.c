/* The LoRA executor's P16 window and its pump: the step's uses of streamed base groups in order
 * (sw_plan_lora_uses: forward, head, backward), two device buffers, and the transfers that fill
 * them, moved on by lexec_pump whenever the executor passes by or waits.
 *
 * A group in host memory is copied to its slot on the copy stream as soon as the slot's previous
 * use is released. A group on NVMe is read chunk by chunk into a ring of pinned stages,
 * asynchronously (io/io.h), as far ahead of the compute as the stages allow: the reads of later
 * uses start while earlier ones compute, and a read never waits for its slot, only its copy
 * does. Each chunk goes to the device on the copy stream once it is read and the slot is free;
 * its stage is read into again once that copy is done.
 *
 * Ownership passes by events only: a slot is filled on the copy stream after it waited for
 * freed[s] (recorded on the compute stream at the release of the slot's previous use), and the
 * compute stream waits for ready[s] before the use. Uses are taken and released in order. */
#include "offload/lora_exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int streamed(const sw_lexec *ex, int g) { return ex->base[g].tier != SW_TIER_GPU; }

void lexec_win_begin(sw_lexec *ex, int backward)
{
	sw_tier tier[ex->G];
	for (int g = 0; g < ex->G; g++)
		tier[g] = ex->base[g].tier;
	ex->nuse = sw_plan_lora_uses(ex->tt, tier, backward, ex->use);
	ex->taken = ex->released = ex->copied = ex->cp_chunk = ex->rd_use = ex->rd_chunk = 0;
}

int lexec_io_fail(sw_lexec *ex, int rc, const sw_io_req *r, const char *what)
{
	if (!ex->io_rc) {
		ex->io_rc = rc;
		sw_error("lora: NVMe %s failed: %s", what, sw_io_req_error(r));
	}
	return rc;
}

static int nchunks(const sw_lexec *ex, int g)
{
	return (int)((ex->base[g].ext.len + ex->chunk - 1) / ex->chunk);
}

static uint64_t chunk_len(const sw_lexec *ex, int g, int k)
{
	uint64_t off = (uint64_t)k * ex->chunk, len = ex->base[g].ext.len;
	return len - off < ex->chunk ? len - off : ex->chunk;
}

/* A stage whose copy to the device is done is free again. */
static void stage_settle(sw_lexec *ex, lstage *s)
{
	if (s->state == ST_H2D && ex->be->ops->event_done(ex->be, s->ev))
		s->state = ST_FREE;
}

/* The next NVMe chunks into free stages, in use order. */
static int pump_reads(sw_lexec *ex)
{
	while (ex->rd_use < ex->nuse) {
		const sw_lora_use *u = &ex->use[ex->rd_use];
		const lhome *h = &ex->base[u->g];
		if (!u->fetch || h->tier != SW_TIER_NVME) {
			ex->rd_use++;
			continue;
		}
		lstage *s = &ex->pst[ex->pst_rd];
		stage_settle(ex, s);
		if (s->state != ST_FREE)
			return 0;
		int rc = sw_io_submit_read(ex->io, &s->req, h->ext, (uint64_t)ex->rd_chunk * ex->chunk,
					   chunk_len(ex, u->g, ex->rd_chunk), s->buf);
		if (rc)
			return lexec_io_fail(ex, rc, &s->req, "read of the base");
		s->state = ST_READ;
		s->use = ex->rd_use;
		s->chunk = ex->rd_chunk;
		ex->pst_rd = (ex->pst_rd + 1) % LEXEC_NST;
		if (++ex->rd_chunk == nchunks(ex, u->g)) {
			ex->rd_chunk = 0;
			ex->rd_use++;
		}
	}
	return 0;
}

/* The copies to the device, in use order, each once its slot's previous use is released and
 * (NVMe) its chunk is read. */
static int pump_copies(sw_lexec *ex)
{
	sw_backend *be = ex->be;
	while (ex->copied < ex->nuse) {
		const sw_lora_use *u = &ex->use[ex->copied];
		const lhome *h = &ex->base[u->g];
		if (!u->fetch) {
			ex->copied++;
			continue;
		}
		if (u->prev >= ex->released)
			return 0;   /* the slot is still in use */
		void *dst = ex->win[u->slot];
		if (h->tier == SW_TIER_HOST) {
			be->ops->stream_wait(be, ex->hs, ex->freed[u->slot]);
			be->ops->copy_h2d(be, ex->hs, dst, h->host, h->bytes);
			be->ops->event_record(be, ex->ready[u->slot], ex->hs);
			ex->copied++;
			continue;
		}
		lstage *s = &ex->pst[ex->pst_cp];
		if (s->state != ST_READ || s->use != ex->copied)
			return 0;   /* not read into a stage yet */
		SW_ASSERT(s->chunk == ex->cp_chunk);
		int rc = sw_io_poll(&s->req);
		if (rc == 1)
			return 0;
		if (rc)
			return lexec_io_fail(ex, rc, &s->req, "read of the base");
		uint64_t off = (uint64_t)ex->cp_chunk * ex->chunk;
		uint64_t n = off + ex->chunk < h->bytes ? ex->chunk : h->bytes - off;
		if (!ex->cp_chunk)
			be->ops->stream_wait(be, ex->hs, ex->freed[u->slot]);
		be->ops->copy_h2d(be, ex->hs, (char *)dst + off, s->buf, n);
		be->ops->event_record(be, s->ev, ex->hs);
		s->state = ST_H2D;
		ex->pst_cp = (ex->pst_cp + 1) % LEXEC_NST;
		if (++ex->cp_chunk == nchunks(ex, u->g)) {
			be->ops->event_record(be, ex->ready[u->slot], ex->hs);
			ex->cp_chunk = 0;
			ex->copied++;
		}
	}
	return 0;
}

int lexec_pump(sw_lexec *ex)
{
	if (ex->io_rc)
		return ex->io_rc;
	int rc = 0;
	if (ex->hs) {
		/* copies first: they free stages the reads then fill */
		rc = pump_copies(ex);
		rc = rc ? rc : pump_reads(ex);
		rc = rc ? rc : pump_copies(ex);
	}
	return rc ? rc : lexec_ck_pump(ex);
}

int lexec_wait(sw_lexec *ex, int (*done)(sw_lexec *ex, int64_t arg), int64_t arg)
{
	while (1) {
		int rc = lexec_pump(ex);
		if (rc)
			return rc;
		if (done(ex, arg))
			return 0;
		/* the disk or the GPU is behind: look again shortly */
		nanosleep(&(struct timespec){ 0, 20000 }, NULL);
	}
}

static int use_copied(sw_lexec *ex, int64_t i) { return ex->copied > i; }

int lexec_base_get(sw_lexec *ex, int g, void **p16)
{
	if (!streamed(ex, g)) {
		*p16 = ex->base[g].dev;
		return lexec_pump(ex);
	}
	int i = ex->taken++;
	const sw_lora_use *u = &ex->use[i];
	SW_ASSERT(i < ex->nuse && u->g == g && u->prev < ex->released);
	int rc = lexec_wait(ex, use_copied, i);
	if (rc)
		return rc;
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->ready[u->slot]);
	*p16 = ex->win[u->slot];
	return 0;
}

int lexec_base_release(sw_lexec *ex, int g)
{
	if (!streamed(ex, g))
		return lexec_pump(ex);
	int i = ex->released++;
	SW_ASSERT(i < ex->taken && ex->use[i].g == g);
	ex->be->ops->event_record(ex->be, ex->freed[ex->use[i].slot], ex->cs);
	return lexec_pump(ex);   /* the next fetch into this slot may start now */
}

static void stage_drain(sw_lexec *ex, lstage *s)
{
	if (s->state == ST_READ || s->state == ST_WRITE)
		sw_io_wait(ex->io, &s->req);
	if (s->ev && s->state != ST_FREE)
		ex->be->ops->event_sync(ex->be, s->ev);
	s->state = ST_FREE;
}

void lexec_drain(sw_lexec *ex)
{
	for (int i = 0; i < LEXEC_NST; i++)
		stage_drain(ex, &ex->pst[i]);
	for (int i = 0; i < ex->nck; i++)
		stage_drain(ex, &ex->cst[i]);
}
