/* Keep instead of recompute, the executor's side: the kept blocks of the plan's SW_BUF_KEEP
 * rows (one per kept layer, micro-batch and part), the forward writing a kept layer's
 * intermediates into them and the backward reading them back instead of recomputing
 * (core/model.h SW_KEEP_*; bit-identical to recomputing). */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>

static const unsigned parts[2] = { SW_KEEP_ATTN, SW_KEEP_MLP };

int exec_keep_alloc(sw_exec *ex, const sw_plan_buf *b)
{
	int part = b->state, n = ex->L * ex->M;
	SW_ASSERT(part == 0 || part == 1);
	if (!ex->keep_blk[part] && !(ex->keep_blk[part] = calloc((size_t)n, sizeof(void *))))
		return -ENOMEM;
	int64_t count = 0;
	for (int l = 0; l < ex->L; l++) {
		if (!(sw_plan_keep(ex->p, l) & parts[part]))
			continue;
		for (int m = 0; m < ex->M; m++) {
			int rc = ex->be->ops->dev_alloc(ex->be, b->bytes, &ex->keep_blk[part][l * ex->M + m]);
			if (rc)
				return rc;
			count++;
		}
	}
	SW_ASSERT(count == b->count);
	return 0;
}

void exec_keep_free(sw_exec *ex, const sw_plan_buf *b)
{
	void **blk = ex->keep_blk[b->state];
	if (!blk)
		return;
	for (int i = 0; i < ex->L * ex->M; i++)
		if (blk[i])
			ex->be->ops->dev_free(ex->be, blk[i]);
	free(blk);
	ex->keep_blk[b->state] = NULL;
}

/* The scratch for layer l, micro-batch m: the executor's, with the kept parts' buffers
 * pointing into their blocks; *kept the parts that are. */
static sw_layer_scratch keep_scratch(sw_exec *ex, int l, int m, unsigned *kept)
{
	sw_layer_scratch s = ex->s;
	*kept = 0;
	for (int i = 0; i < 2; i++) {
		void *blk = ex->keep_blk[i] ? ex->keep_blk[i][l * ex->M + m] : NULL;
		if (!blk)
			continue;
		sw_layer_keep_point(&ex->d, ex->be->act, parts[i], blk, &s);
		*kept |= parts[i];
	}
	return s;
}

void exec_keep_fwd(sw_exec *ex, int l, int m, const sw_group_ptrs *w, const void *x, void *y)
{
	unsigned kept;
	sw_layer_scratch s = keep_scratch(ex, l, m, &kept);
	sw_layer_fwd(ex->be, ex->cs, &ex->d, w, ex->inv_freq, x, y, &s);
}

void exec_keep_bwd(sw_exec *ex, int l, int m, const sw_group_ptrs *w, const sw_group_ptrs *g,
		   const void *x, void *dres, int flags)
{
	unsigned kept;
	sw_layer_scratch s = keep_scratch(ex, l, m, &kept);
	sw_layer_bwd_kept(ex->be, ex->cs, &ex->d, w, g, ex->inv_freq, x, dres, &s, kept, flags);
}
