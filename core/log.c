#include "core/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int sw_log_level = SW_LOG_INFO;

double sw_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sw_log(int level, const char *fmt, ...)
{
	static const char *tag[] = { "error", "warning", "info", "debug" };
	if (level > sw_log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	FILE *f = level <= SW_LOG_WARN ? stderr : stdout;
	if (level != SW_LOG_INFO)
		fprintf(f, "%s: ", tag[level]);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	fflush(f);
	va_end(ap);
}

void sw_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fflush(stdout);
	fputs("spillway: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void sw_die_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fflush(stdout);
	fprintf(stderr, "spillway: internal error at %s:%d: ", file, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void sw_progress_begin(sw_progress *p, const char *what, uint64_t total)
{
	p->what = what;
	p->total = total ? total : 1;
	p->done = 0;
	p->tty = isatty(STDERR_FILENO) && !getenv("CI");
	p->last_decile = -1;
	p->t0 = p->last_draw = sw_now();
	sw_progress_update(p, 0);
}

void sw_progress_update(sw_progress *p, uint64_t done)
{
	p->done = done;
	double frac = (double)done / (double)p->total, t = sw_now();
	if (p->tty) {
		if (done != p->total && done != 0 && t - p->last_draw < 0.1)
			return;
		int w = 30, fill = (int)(frac * w);
		fprintf(stderr, "\r%-24s [%.*s%*s] %5.1f%% %6.1fs", p->what, fill,
			"##############################", w - fill, "", 100 * frac, t - p->t0);
		fflush(stderr);
		p->last_draw = t;
		return;
	}
	int decile = (int)(frac * 10);
	if (decile != p->last_decile) {
		fprintf(stderr, "%s: %3d%% (%.1fs)\n", p->what, decile * 10, t - p->t0);
		p->last_decile = decile;
	}
}

void sw_progress_end(sw_progress *p)
{
	if (p->done != p->total)
		sw_progress_update(p, p->total);
	if (p->tty)
		fputc('\n', stderr);
}
