/* Learning-rate schedules: see optim/schedule.h. */
#include "optim/schedule.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static double lambda(const sw_lr_schedule *s, int64_t step)
{
	if (s->kind == SW_LR_CONSTANT) {
		if (s->warmup_steps > 0 && step < s->warmup_steps)
			return (double)step / (double)s->warmup_steps;
		return 1.0;
	}
	if (step < s->warmup_steps)
		return (double)step / (double)(s->warmup_steps > 1 ? s->warmup_steps : 1);
	int64_t span = s->total_steps - s->warmup_steps;
	double progress = (double)(step - s->warmup_steps) / (double)(span > 1 ? span : 1);
	double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
	f = f * (1.0 - s->min_lr_rate) + s->min_lr_rate;
	return f > 0.0 ? f : 0.0;
}

double sw_lr_at(const sw_lr_schedule *s, int64_t t)
{
	return s->lr * lambda(s, t - 1);
}

int sw_lr_kind_parse(const char *name, sw_lr_kind *out)
{
	if (name && strcmp(name, "constant") == 0)
		*out = SW_LR_CONSTANT;
	else if (name && strcmp(name, "cosine") == 0)
		*out = SW_LR_COSINE;
	else
		return -EINVAL;
	return 0;
}

int sw_lr_schedule_check(const sw_lr_schedule *s, char *why, int len)
{
	if (!isfinite(s->lr) || s->lr < 0)
		snprintf(why, (size_t)len, "learning rate %g is not a finite number >= 0", s->lr);
	else if (s->warmup_steps < 0)
		snprintf(why, (size_t)len, "warm-up steps %lld is negative", (long long)s->warmup_steps);
	else if (s->kind == SW_LR_COSINE && s->total_steps < 1)
		snprintf(why, (size_t)len, "cosine schedule needs total steps >= 1 (got %lld)",
			 (long long)s->total_steps);
	else if (s->kind == SW_LR_COSINE && !(s->min_lr_rate >= 0 && s->min_lr_rate <= 1))
		snprintf(why, (size_t)len, "minimum lr rate %g is outside [0, 1]", s->min_lr_rate);
	else
		return 0;
	return -EINVAL;
}
