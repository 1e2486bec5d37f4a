/* Gradient sum of squares, global norm and the clipping scale: see optim/clip.h. */
#include "optim/clip.h"
#include "optim/adamw.h"

#include <math.h>
#include <stdlib.h>

struct sumsq_job {
	sw_sumsq_kernel_fn fn;
	const float *g;
	int64_t n;
	double *partial;     /* one per chunk */
};

static double chunk_sumsq(sw_sumsq_kernel_fn fn, const float *g, int64_t n)
{
	double l[8] = { 0 };
	fn(g, n, l);
	return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

static void sumsq_task(void *ctx, int64_t task, int worker)
{
	(void)worker;
	struct sumsq_job *j = ctx;
	int64_t off = task * SW_SUMSQ_CHUNK;
	int64_t len = j->n - off < SW_SUMSQ_CHUNK ? j->n - off : SW_SUMSQ_CHUNK;
	j->partial[task] = chunk_sumsq(j->fn, j->g + off, len);
}

double sw_grad_sumsq(sw_pool *pool, const float *g, int64_t n)
{
	sw_sumsq_kernel_fn fn = sw_sumsq_kernel();
	int64_t chunks = (n + SW_SUMSQ_CHUNK - 1) / SW_SUMSQ_CHUNK;
	double s = 0;
	double *partial = NULL;
	if (pool && chunks > 1)
		partial = malloc((size_t)chunks * sizeof(double));
	if (!partial) {
		/* one thread (or no memory for the partials): the same chunks in the same order */
		for (int64_t c = 0; c < chunks; c++) {
			int64_t off = c * SW_SUMSQ_CHUNK;
			s += chunk_sumsq(fn, g + off, n - off < SW_SUMSQ_CHUNK ? n - off : SW_SUMSQ_CHUNK);
		}
		return s;
	}
	struct sumsq_job j = { fn, g, n, partial };
	sw_pool_run(pool, sumsq_task, &j, chunks);
	for (int64_t c = 0; c < chunks; c++)
		s += partial[c];
	free(partial);
	return s;
}

double sw_grad_norm(const double *sumsq, int64_t ntensors)
{
	double s = 0;
	for (int64_t i = 0; i < ntensors; i++)
		s += sumsq[i];
	return sqrt(s);
}

double sw_clip_scale(double norm, double max_norm)
{
	if (!isfinite(norm))
		return NAN;
	if (max_norm <= 0)
		return 1.0;
	double coef = max_norm / (norm + 1e-6);
	return coef < 1.0 ? coef : 1.0;
}
