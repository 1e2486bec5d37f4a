/* The P16 window schedule: which streamed group goes into which of the K window buffers, and
 * when. A pure module: the planner replays it over a step's uses of P16 to count fetches, the
 * executor follows it to fill its buffers; both get the same fills by construction. */
#ifndef SW_OFFLOAD_WINDOW_H
#define SW_OFFLOAD_WINDOW_H
#include <stdint.h>

#define SW_WINDOW_MAX 64          /* most buffers (--prefetch up to 64) */
#define SW_WINDOW_WANT 16         /* most groups wanted at once */

typedef struct sw_window {
	int K;                        /* buffers */
	int group[SW_WINDOW_MAX];     /* group held by buffer i, -1 empty */
	int64_t last[SW_WINDOW_MAX];  /* use clock of buffer i's last use */
	int64_t clock;
} sw_window;

typedef struct sw_window_fill { int slot, group; } sw_window_fill;

/* K buffers, all empty (a step starts with an empty window: the weights changed). */
void sw_window_init(sw_window *w, int K);
/* Makes the first want_n distinct streamed groups of uses u[start, n) resident (at most
 * SW_WINDOW_WANT); streamed[g] says whether group g streams (resident groups are skipped).
 * A group already in a buffer stays; a missing one replaces the least recently used buffer
 * that holds none of the wanted groups. Writes the fills (buffer, group) in order and returns
 * their count; the window's state is updated as if they were done. */
int sw_window_want(sw_window *w, const int *u, int n, int start, int want_n,
		   const uint8_t *streamed, sw_window_fill *fills);
/* The buffer holding group g (it must be there: the schedule put it there), marked used now. */
int sw_window_use(sw_window *w, int g);
/* The uses of P16 in one step, in order, as group indices into u (room for 1 + L + passes *
 * (L + 2)); returns the count. Forward: the embedding, layers 1..L; then per backward pass:
 * in pass 2 first layer L (x_L recomputed from its checkpoint, for the head), the head group
 * `head` (the embedding, 0, when tied), layers L..1. */
int sw_window_uses(int L, int head, int passes, int *u);
#endif
