/* Progress a person can read: a redrawn bar with ETA on a terminal, a few plain lines otherwise.
 *
 * Two kinds. sw_progress is for one long action measured in units (loading or saving a model's
 * bytes or parameters): on a terminal (stderr) a bar with percent, elapsed time and ETA; in a
 * log only when the action is slow (a line per 10 % once it has taken SW_PROGRESS_QUIET_S),
 * so fast loads print nothing. sw_steps is for the training loop: on a terminal (stdout) one
 * redrawn line "step 37/60 [####....] 61% | loss 2.8312 | 2010 tok/s | 12s, ETA 8s" and the
 * caller's full step line for the first and the last step (and every `every`-th when `every` or
 * SW_LOG_EVERY is given); in a log, the full step line of the first step, every `every`-th step
 * (default: about 20 lines per run) and the last, each followed by the ETA. */
#ifndef SW_CORE_PROGRESS_H
#define SW_CORE_PROGRESS_H
#include <stdint.h>

#define SW_PROGRESS_QUIET_S 2.0   /* a log hears of an action only once it has run this long */

typedef struct sw_progress {
	const char *what;
	uint64_t total, done;
	int tty, last_decile, drawn;
	double t0, last_draw;
} sw_progress;
void sw_progress_begin(sw_progress *p, const char *what, uint64_t total);
void sw_progress_update(sw_progress *p, uint64_t done);
void sw_progress_end(sw_progress *p);

/* The training loop's progress. every: a full line every N steps (0: the environment's
 * SW_LOG_EVERY, else about 20 lines per run in a log and none between first and last on a
 * terminal). */
typedef struct sw_steps {
	int64_t first, last, every;
	int tty, bar_shown;
	double t0, t_first_done;   /* begin, end of the first step (ETA leaves out its warm-up) */
} sw_steps;
void sw_steps_begin(sw_steps *s, int64_t first, int64_t last, int64_t every);
/* After step `step`: loss and tokens/s for the bar; line: the full step line (no newline),
 * printed when this step is one of those logged. */
void sw_steps_update(sw_steps *s, int64_t step, double loss, double tokens_per_s, const char *line);
/* Leaves the terminal on a fresh line (the bar stays as the last state). */
void sw_steps_end(sw_steps *s);
/* Seconds left after `step` of s, from the mean step time so far; -1 when not known yet. */
double sw_steps_eta(const sw_steps *s, int64_t step);
/* "12s", "3m05s", "2h04m" into buf. */
const char *sw_fmt_duration(double s, char *buf, int len);
#endif
