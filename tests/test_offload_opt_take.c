/* The optimizer queue's order (exec_opt_take), on the ring itself: of the host-state updates
 * waiting at the queue's head the lowest group's is taken first (the group the next forward needs
 * first), the earliest of equal groups first; a message of another kind (a swap, a read-ahead, a
 * flush, an update of NVMe state) is never passed; the rest keep their arrival order; the ring
 * stays whole across its wrap-around; only updates whose gradient copy has landed are taken out
 * of order (none landed: the head); SW_OPT_ORDER=fifo (first_needed 0) takes arrival order.
 * The expected orders are worked out by hand from that rule. */
#include "offload/exec_int.h"
#include "tests/check.h"

#include <string.h>

enum { G = 10, NVME_GROUP = 6 };

/* A backend whose only op is event_done, answering from a flag per event: hgrad_ev[b] is
 * &landed[b], whether host gradient buffer b's copy has landed. */
static int landed[OPT_HG];
static int fake_event_done(sw_backend *be, sw_event *e)
{
	(void)be;
	return *(int *)e;
}
static sw_backend_ops fake_ops = { .event_done = fake_event_done };
static sw_backend fake_be = { .ops = &fake_ops };

static sw_exec *fake_exec(int first_needed, int head)
{
	sw_exec *ex = calloc(1, sizeof(*ex));
	CHECK(ex);
	ex->G = G;
	ex->g = calloc(G, sizeof(grp));
	CHECK(ex->g);
	for (int g = 0; g < G; g++)
		ex->g[g].opt_tier = g == NVME_GROUP ? SW_TIER_NVME : SW_TIER_HOST;
	ex->first_needed = first_needed;
	ex->qhead = head;   /* near the ring's end: the queue wraps around */
	ex->be = &fake_be;
	for (int b = 0; b < OPT_HG; b++)
		ex->hgrad_ev[b] = (sw_event *)&landed[b];
	return ex;
}

/* Queues a message (as opt_push does) with gradient buffer hb (-1: a held gradient, landed);
 * call tells equal groups' updates apart. */
static void push_hb(sw_exec *ex, int kind, int group, int call, int hb)
{
	CHECK(ex->qn < OPT_Q);
	opt_msg m = { .kind = kind, .group = group, .hb = hb, .call = call };
	ex->q[(ex->qhead + ex->qn) % OPT_Q] = m;
	ex->qn++;
}

static void push(sw_exec *ex, int kind, int group, int call) { push_hb(ex, kind, group, call, -1); }

/* Takes every message and checks (kind, group, call) in order against want[0, n). */
static void take_all(sw_exec *ex, const int (*want)[3], int n, const char *what)
{
	for (int i = 0; i < n; i++) {
		CHECKF(ex->qn == n - i, "%s: %d messages left, want %d", what, ex->qn, n - i);
		opt_msg m = exec_opt_take(ex);
		CHECKF(m.kind == want[i][0] && m.group == want[i][1] && m.call == want[i][2],
		       "%s: take %d gave kind %d group %d call %lld, want kind %d group %d call %d", what,
		       i, m.kind, m.group, (long long)m.call, want[i][0], want[i][1], want[i][2]);
	}
	CHECKF(ex->qn == 0, "%s: %d messages left over", what, ex->qn);
	printf("ok %s\n", what);
}

static void free_exec(sw_exec *ex)
{
	free(ex->g);
	free(ex);
}

int main(void)
{
	const int U = OPT_UPDATE;
	/* a backward's arrivals from the top group down, the head's update held up: lowest first */
	for (int head = 0; head < OPT_Q; head += OPT_Q - 3) {
		sw_exec *ex = fake_exec(1, head);
		int arrive[] = { 9, 8, 7, 5, 3, 4, 2 };
		for (int i = 0; i < 7; i++)
			push(ex, U, arrive[i], 1);
		const int want[][3] = { { U, 2, 1 }, { U, 3, 1 }, { U, 4, 1 }, { U, 5, 1 }, { U, 7, 1 },
					{ U, 8, 1 }, { U, 9, 1 } };
		take_all(ex, want, 7, head ? "lowest group first, across the ring's wrap" :
			 "lowest group first");
		free_exec(ex);
	}
	/* equal groups: the earlier first; the others ahead of the pick keep their order */
	{
		sw_exec *ex = fake_exec(1, OPT_Q - 2);
		push(ex, U, 5, 1);
		push(ex, U, 3, 1);
		push(ex, U, 4, 1);
		push(ex, U, 3, 2);
		push(ex, U, 8, 1);
		const int want[][3] = { { U, 3, 1 }, { U, 3, 2 }, { U, 4, 1 }, { U, 5, 1 }, { U, 8, 1 } };
		take_all(ex, want, 5, "equal groups in arrival order");
		free_exec(ex);
	}
	/* a message of another kind is never passed, nor an update of NVMe state */
	{
		sw_exec *ex = fake_exec(1, OPT_Q - 1);
		push(ex, U, 5, 1);
		push(ex, U, 4, 1);
		push(ex, OPT_SWAP, -1, 1);
		push(ex, U, 1, 2);
		push(ex, U, 8, 2);
		push(ex, U, NVME_GROUP, 2);
		push(ex, U, 0, 2);
		push(ex, OPT_READ_AHEAD, NVME_GROUP, 3);
		push(ex, U, 2, 2);
		push(ex, OPT_FLUSH, -1, 2);
		const int want[][3] = { { U, 4, 1 }, { U, 5, 1 }, { OPT_SWAP, -1, 1 }, { U, 1, 2 },
					{ U, 8, 2 }, { U, NVME_GROUP, 2 }, { U, 0, 2 },
					{ OPT_READ_AHEAD, NVME_GROUP, 3 }, { U, 2, 2 }, { OPT_FLUSH, -1, 2 } };
		take_all(ex, want, 10, "no message of another kind passed");
		free_exec(ex);
	}
	/* takes and arrivals interleaved (the queue refilled as it drains, a full ring) */
	{
		sw_exec *ex = fake_exec(1, OPT_Q - 4);
		for (int i = 0; i < OPT_Q; i++)
			push(ex, U, 9 - i % 10 == NVME_GROUP ? 7 : 9 - i % 10, i);
		/* arrivals 9 8 7 7 5 4 3 2 1 0 | 9 8 7 7 5 4 3 2 1 0 (calls 0..19): the lowest of
		 * all is group 0 (call 9), then 0 (call 19), 1 (8), 1 (18), ... */
		opt_msg m = exec_opt_take(ex);
		CHECK(m.group == 0 && m.call == 9 && ex->qn == OPT_Q - 1);
		push(ex, U, 0, 100);   /* arrives behind the others: still taken before group 1 */
		const int want[][3] = { { U, 0, 19 }, { U, 0, 100 }, { U, 1, 8 }, { U, 1, 18 },
					{ U, 2, 7 }, { U, 2, 17 }, { U, 3, 6 }, { U, 3, 16 },
					{ U, 4, 5 }, { U, 4, 15 }, { U, 5, 4 }, { U, 5, 14 },
					{ U, 7, 2 }, { U, 7, 3 }, { U, 7, 12 }, { U, 7, 13 },
					{ U, 8, 1 }, { U, 8, 11 }, { U, 9, 0 }, { U, 9, 10 } };
		take_all(ex, want, OPT_Q, "a full ring refilled while it drains");
		free_exec(ex);
	}
	/* only landed gradients are taken out of order: the issuing thread sends each update when it
	 * queues the copy, layers ahead of the GPU; the lowest waiting group's copy comes last */
	{
		sw_exec *ex = fake_exec(1, OPT_Q - 2);
		int grp[] = { 9, 8, 7, 5 }, done[] = { 1, 1, 0, 0 };
		for (int b = 0; b < 4; b++) {
			landed[b] = done[b];
			push_hb(ex, U, grp[b], 1, b);
		}
		const int want[][3] = { { U, 8, 1 }, { U, 9, 1 }, { U, 7, 1 }, { U, 5, 1 } };
		take_all(ex, want, 4, "the lowest landed first, then arrival order while none has landed");
		/* one landed behind two that have not: it goes first, then the head */
		int grp2[] = { 9, 8, 4 }, done2[] = { 0, 0, 1 };
		for (int b = 0; b < 3; b++) {
			landed[b] = done2[b];
			push_hb(ex, U, grp2[b], 2, b);
		}
		const int want2[][3] = { { U, 4, 2 }, { U, 9, 2 }, { U, 8, 2 } };
		take_all(ex, want2, 3, "a landed update passes those whose copies are still running");
		free_exec(ex);
	}
	/* SW_OPT_ORDER=fifo: arrival order */
	{
		sw_exec *ex = fake_exec(0, OPT_Q - 2);
		push(ex, U, 5, 1);
		push(ex, U, 3, 1);
		push(ex, U, 4, 1);
		const int want[][3] = { { U, 5, 1 }, { U, 3, 1 }, { U, 4, 1 } };
		take_all(ex, want, 3, "arrival order (SW_OPT_ORDER=fifo)");
		free_exec(ex);
	}
	return 0;
}
