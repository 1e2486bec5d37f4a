/* Logging, user-facing errors and progress.
 *
 * Two error regimes (STYLE.md): SW_ASSERT/sw_die for programmer errors (file and line, abort),
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

/* Progress for long actions: a bar on a terminal, a plain line every ~10% otherwise. */
typedef struct sw_progress {
	const char *what;
	uint64_t total, done;
	int tty, last_decile;
	double t0, last_draw;
} sw_progress;
void sw_progress_begin(sw_progress *p, const char *what, uint64_t total);
void sw_progress_update(sw_progress *p, uint64_t done);
void sw_progress_end(sw_progress *p);

double sw_now(void);                     /* monotonic seconds */
#endif
