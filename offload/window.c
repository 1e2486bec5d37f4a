/* The P16 window schedule (offload/window.h): least-recently-used buffers, never evicting a
 * group that is wanted now. */
#include "offload/window.h"
#include "core/log.h"

void sw_window_init(sw_window *w, int K)
{
	SW_ASSERT(K >= 0 && K <= SW_WINDOW_MAX);
	w->K = K;
	w->clock = 0;
	for (int i = 0; i < SW_WINDOW_MAX; i++) {
		w->group[i] = -1;
		w->last[i] = 0;
	}
}

static int holds(const sw_window *w, int g)
{
	for (int i = 0; i < w->K; i++)
		if (w->group[i] == g)
			return i;
	return -1;
}

int sw_window_want(sw_window *w, const int *u, int n, int start, int want_n,
		   const uint8_t *streamed, sw_window_fill *fills)
{
	int want[SW_WINDOW_WANT], nw = 0, nf = 0;
	for (int j = start; j < n && nw < want_n && nw < SW_WINDOW_WANT; j++) {
		if (!streamed[u[j]])
			continue;
		int dup = 0;
		for (int k = 0; k < nw; k++)
			dup |= want[k] == u[j];
		if (!dup)
			want[nw++] = u[j];
	}
	for (int k = 0; k < nw; k++) {
		if (holds(w, want[k]) >= 0)
			continue;
		int vi = -1;
		for (int i = 0; i < w->K; i++) {
			int wanted = 0;
			for (int q = 0; q < nw; q++)
				wanted |= w->group[i] == want[q];
			if (!wanted && (vi < 0 || w->last[i] < w->last[vi]))
				vi = i;
		}
		SW_ASSERT(vi >= 0);
		w->group[vi] = want[k];     /* its last use stays the evicted group's */
		fills[nf++] = (sw_window_fill){ vi, want[k] };
	}
	return nf;
}

int sw_window_use(sw_window *w, int g)
{
	int i = holds(w, g);
	SW_ASSERT(i >= 0);
	w->last[i] = ++w->clock;
	return i;
}

int sw_window_uses(int L, int head, int passes, int *u)
{
	int n = 0;
	u[n++] = 0;
	for (int l = 1; l <= L; l++)
		u[n++] = l;
	for (int q = 0; q < passes; q++) {
		if (q)
			u[n++] = L;
		u[n++] = head;
		for (int l = L; l >= 1; l--)
			u[n++] = l;
	}
	return n;
}
