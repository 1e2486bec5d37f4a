/* The LoRA executor's P16 window: the step's uses of streamed base groups in order (forward,
 * head, backward), two device buffers used alternately, and each use's fetch (NVMe read into a
 * pinned stage, then the copy to the device on the copy stream) issued as soon as the use
 * before it is released, so it overlaps that use's compute.
 *
 * Ownership passes by events only: slot s's buffer is filled on the copy stream after it waited
 * for free[s] (recorded on the compute stream at the release of the slot's previous use), and
 * the compute stream waits for ready[s] before the use; an NVMe stage is read into again only
 * after the host waited for ready[s] (its last copy out of it is done). Uses are released in the
 * order they were taken. */
#include "offload/lora_exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int streamed(const sw_lexec *ex, int g) { return ex->base[g].tier != SW_TIER_GPU; }

static void add_use(sw_lexec *ex, int g)
{
	if (streamed(ex, g))
		ex->use_g[ex->nuse++] = g;
}

void lexec_win_begin(sw_lexec *ex, int backward)
{
	int H = ex->G - 1;
	ex->nuse = ex->use_pos = ex->fetched = ex->released = 0;
	for (int g = 0; g <= ex->L; g++)          /* forward: the embedding, layers */
		add_use(ex, g);
	add_use(ex, H);                           /* head (and, tied, the embedding) */
	if (ex->tt->cfg.tie_embeddings)
		add_use(ex, 0);
	for (int l = ex->L; l >= 1 && backward; l--)   /* backward */
		add_use(ex, l);
}

/* Use i's group into slot i % 2. */
static int fetch(sw_lexec *ex, int i)
{
	sw_backend *be = ex->be;
	int s = i % 2;
	const lhome *h = &ex->base[ex->use_g[i]];
	const void *src = h->host;
	if (h->tier == SW_TIER_NVME) {
		be->ops->event_sync(be, ex->ready[s]);   /* the stage's last copy is done */
		int rc = lexec_io(ex, 0, h->ext, ex->wstage[s], "the base");
		if (rc)
			return rc;
		src = ex->wstage[s];
	}
	be->ops->stream_wait(be, ex->hs, ex->freed[s]);
	be->ops->copy_h2d(be, ex->hs, ex->win[s], src, h->bytes);
	be->ops->event_record(be, ex->ready[s], ex->hs);
	ex->fetched = i + 1;
	return 0;
}

int lexec_base_get(sw_lexec *ex, int g, void **p16)
{
	if (!streamed(ex, g)) {
		*p16 = ex->base[g].dev;
		return 0;
	}
	int i = ex->use_pos++;
	SW_ASSERT(i < ex->nuse && ex->use_g[i] == g && ex->fetched >= i);
	int rc = ex->fetched == i ? fetch(ex, i) : 0;
	if (rc)
		return rc;
	ex->be->ops->stream_wait(ex->be, ex->cs, ex->ready[i % 2]);
	*p16 = ex->win[i % 2];
	return 0;
}

int lexec_base_release(sw_lexec *ex, int g)
{
	if (!streamed(ex, g))
		return 0;
	int i = ex->released++;
	SW_ASSERT(i < ex->use_pos && ex->use_g[i] == g);
	ex->be->ops->event_record(ex->be, ex->freed[i % 2], ex->cs);
	/* the next use's slot was freed by the use before this one: fetch it now */
	if (ex->fetched == i + 1 && ex->fetched < ex->nuse)
		return fetch(ex, i + 1);
	return 0;
}
