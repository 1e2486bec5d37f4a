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
