/* The longest --seq-len a plan input's budgets allow: the planner built at each length, one row
 * per micro-batch, searched by bisection (what limits long rows is the per-micro-batch
 * activation memory on the GPU, which grows with the length). */
#include "offload/plan.h"

/* The input at sequence length s: one row per micro-batch, the step's tokens rounded down to
 * whole rows of s (at least one). */
static int fits(const sw_plan_input *in0, int64_t s)
{
	sw_plan_input in = *in0;
	in.seq_len = s;
	in.micro_rows = 1;
	in.batch_tokens = in0->batch_tokens / s > 0 ? in0->batch_tokens / s * s : s;
	sw_plan p;
	int rc = sw_plan_build(&p, &in);
	sw_plan_free(&p);
	return rc == 0;
}

int64_t sw_plan_max_seq(const sw_plan_input *in, int64_t limit)
{
	if (limit < 1 || !fits(in, 1))
		return 0;
	int64_t lo = 1, hi = limit;      /* fits(lo); the answer is in [lo, hi] */
	if (fits(in, hi))
		return hi;
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if (fits(in, mid))
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}
