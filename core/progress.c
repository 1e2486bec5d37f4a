/* Progress bars with ETA on a terminal and sparse plain lines in logs (core/progress.h). */
#include "core/progress.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* A terminal that can take "\r" redraws: a tty that is not dumb, outside CI logs. */
static int progress_is_tty(int fd)
{
	const char *term = getenv("TERM");
	return isatty(fd) && !getenv("CI") && !(term && !strcmp(term, "dumb"));
}

static int progress_columns(int fd)
{
	struct winsize ws;
	if (!ioctl(fd, TIOCGWINSZ, &ws) && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

const char *sw_fmt_duration(double s, char *buf, int len)
{
	if (s < 0)
		s = 0;
	long t = (long)(s + 0.5);
	if (s < 60)
		snprintf(buf, (size_t)len, "%lds", t);
	else if (t < 3600)
		snprintf(buf, (size_t)len, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, (size_t)len, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
	return buf;
}

/* "[#####.....]" of width w for fraction f into buf (w + 3 bytes). */
static void progress_bar(char *buf, int w, double f)
{
	int fill = (int)(f * w + 1e-9);
	fill = fill < 0 ? 0 : fill > w ? w : fill;
	buf[0] = '[';
	memset(buf + 1, '#', (size_t)fill);
	memset(buf + 1 + fill, '.', (size_t)(w - fill));
	buf[w + 1] = ']';
	buf[w + 2] = 0;
}

void sw_progress_begin(sw_progress *p, const char *what, uint64_t total)
{
	p->what = what;
	p->total = total ? total : 1;
	p->done = 0;
	p->tty = progress_is_tty(STDERR_FILENO);
	p->last_decile = -1;
	p->drawn = 0;
	p->t0 = p->last_draw = sw_now();
}

void sw_progress_update(sw_progress *p, uint64_t done)
{
	p->done = done;
	double frac = (double)done / (double)p->total, t = sw_now(), el = t - p->t0;
	char e1[32], e2[32];
	if (p->tty) {
		/* a bar only for what lasts: nothing in the first half second, then 10 redraws/s */
		if (el < 0.5 || (done != p->total && t - p->last_draw < 0.1))
			return;
		char bar[40];
		progress_bar(bar, 30, frac);
		if (frac > 0 && done < p->total)
			fprintf(stderr, "\r\033[K%s %s %5.1f%% %s, ETA %s", p->what, bar, 100 * frac,
				sw_fmt_duration(el, e1, 32), sw_fmt_duration(el / frac * (1 - frac), e2, 32));
		else
			fprintf(stderr, "\r\033[K%s %s %5.1f%% %s", p->what, bar, 100 * frac,
				sw_fmt_duration(el, e1, 32));
		fflush(stderr);
		p->last_draw = t;
		p->drawn = 1;
		return;
	}
	int decile = (int)(frac * 10);
	if (el < SW_PROGRESS_QUIET_S || decile == p->last_decile)
		return;
	if (frac > 0 && done < p->total)
		fprintf(stderr, "%s: %3d%% after %s, ETA %s\n", p->what, decile * 10,
			sw_fmt_duration(el, e1, 32), sw_fmt_duration(el / frac * (1 - frac), e2, 32));
	else
		fprintf(stderr, "%s: %3d%% after %s\n", p->what, decile * 10, sw_fmt_duration(el, e1, 32));
	p->last_decile = decile;
}

void sw_progress_end(sw_progress *p)
{
	if (p->done != p->total)
		sw_progress_update(p, p->total);
	if (p->tty && p->drawn)
		fputc('\n', stderr);
}

void sw_steps_begin(sw_steps *s, int64_t first, int64_t last, int64_t every)
{
	s->first = first;
	s->last = last;
	const char *env = getenv("SW_LOG_EVERY");
	s->tty = progress_is_tty(STDOUT_FILENO);
	if (every <= 0 && env && atoll(env) > 0)
		every = atoll(env);
	/* a terminal has the bar: full lines only for the first and the last step, unless asked */
	if (every <= 0)
		every = s->tty ? last - first + 2 : (last - first + 1 + 19) / 20;
	s->every = every > 0 ? every : 1;
	s->bar_shown = 0;
	s->t0 = sw_now();
	s->t_first_done = 0;
}

double sw_steps_eta(const sw_steps *s, int64_t step)
{
	int64_t n = step - s->first + 1, left = s->last - step;
	double t = sw_now();
	if (n < 1)
		return -1;
	if (n == 1)
		return (t - s->t0) * (double)left;
	return (t - s->t_first_done) / (double)(n - 1) * (double)left;
}

void sw_steps_update(sw_steps *s, int64_t step, double loss, double tokens_per_s, const char *line)
{
	if (step == s->first)
		s->t_first_done = sw_now();
	int logged = step == s->first || step == s->last || (step - s->first + 1) % s->every == 0;
	char el[32], eta[32];
	double left = sw_steps_eta(s, step);
	sw_fmt_duration(sw_now() - s->t0, el, 32);
	sw_fmt_duration(left, eta, 32);
	if (!s->tty) {
		if (logged && line) {
			if (step < s->last)
				printf("%s | ETA %s\n", line, eta);
			else
				printf("%s\n", line);
			fflush(stdout);
		}
		return;
	}
	if (logged && line)
		printf("\r\033[K%s\n", line);
	int cols = progress_columns(STDOUT_FILENO);
	char bar[40], buf[512];
	double frac = (double)(step - s->first + 1) / (double)(s->last - s->first + 1);
	progress_bar(bar, 24, frac);
	int n = snprintf(buf, sizeof(buf), "step %lld/%lld %s %3.0f%% | loss %.4f | %.0f tok/s | %s",
			 (long long)step, (long long)s->last, bar, 100 * frac, loss, tokens_per_s, el);
	if (step < s->last && n > 0 && n < (int)sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ", ETA %s", eta);
	buf[cols - 1 < (int)sizeof(buf) - 1 ? cols - 1 : (int)sizeof(buf) - 1] = 0;
	printf("\r\033[K%s", buf);
	fflush(stdout);
	s->bar_shown = 1;
}

void sw_steps_end(sw_steps *s)
{
	if (s->tty && s->bar_shown) {
		putchar('\n');
		fflush(stdout);
	}
	s->bar_shown = 0;
}
