/* The P16 window: fills the K device buffers as the window schedule (offload/window.h) says,
 * from the host cache or NVMe through pinned staging, ordered by events. */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- P16 window ----------- */


/* Copies group gi's P16 home into window slot i on the copy stream. */
static int win_fill(sw_exec *ex, int i, int gi)
{
	sw_backend *be = ex->be;
	be->ops->stream_wait(be, ex->hs, ex->win_free[i]);
	int sp = exec_gspan_begin(ex, ex->hs, SW_TRACK_H2D);
	int rc = exec_home_p16_fetch(ex, gi, ex->win[i], ex->hs);
	if (rc)
		return rc;
	exec_gspan_end(ex, ex->hs, sp);
	be->ops->event_record(be, ex->win_ready[i], ex->hs);
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
 * calls exec_win_ahead, so NVMe reads for later groups overlap the compute just queued. */
int exec_win_use(sw_exec *ex, useq *u, int expect, void **p16)
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
int exec_win_ahead(sw_exec *ex, const useq *u)
{
	if (!ex->K || u->pos == 0)
		return 0;
	return win_prefetch(ex, u, u->pos - 1, ex->K);
}

void exec_win_release(sw_exec *ex, void *p16)
{
	for (int i = 0; i < ex->K; i++)
		if (ex->win[i] == p16)
			ex->be->ops->event_record(ex->be, ex->win_free[i], ex->cs);
}

