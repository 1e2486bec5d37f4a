/* Logging and user-facing errors (progress: core/progress.h).
 *
 * Two error regimes: SW_ASSERT/sw_die for programmer errors (file and line, abort),
 * and sw_error() for everything a user or the machine can cause: one line on stderr,
 * "spillway: <what>: <why>; <what to do>", and the caller returns a non-zero status. */
#ifndef SW_CORE_LOG_H
#define SW_CORE_LOG_H
#include <stdint.h>
#include <stdio.h>

enum sw_log_level { SW_LOG_ERROR, SW_LOG_WARN, SW_LOG_INFO, SW_LOG_DEBUG };

extern int sw_log_level;                 /* messages above this level are dropped */
void sw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define sw_warn(...)  sw_log(SW_LOG_WARN, __VA_ARGS__)
#define sw_info(...)  sw_log(SW_LOG_INFO, __VA_ARGS__)
#define sw_debug(...) sw_log(SW_LOG_DEBUG, __VA_ARGS__)

/* One-line user-facing error ("spillway: " + message + newline) on stderr. */
void sw_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programmer error: print file, line, message; abort. */
void sw_die_at(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
#define sw_die(...) sw_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define SW_ASSERT(c) do { if (!(c)) sw_die_at(__FILE__, __LINE__, "assertion failed: %s", #c); } while (0)

/* Progress bars and ETA: core/progress.h */
#include "core/progress.h"

double sw_now(void);                     /* monotonic seconds */
#endif
