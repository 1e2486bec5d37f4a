/* Writes a run directory's report.html (and run.json) from plain files: see core/report.h. */
#include "core/report.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int report_argc;
static char **report_argv;

void sw_report_set_cmdline(int argc, char **argv)
{
	report_argc = argc;
	report_argv = argv;
}

/* Writes buf to path through path.tmp.PID + fsync + rename; nothing is left behind on failure. */
static int report_write_atomic(const char *path, const char *buf, size_t len)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f) {
		int rc = -errno;
		sw_error("report: cannot write %s: %s; check the run directory's permissions and space",
			 tmp, strerror(errno));
		return rc;
	}
	int rc = 0;
	if (fwrite(buf, 1, len, f) != len || fflush(f) || fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc) {
		unlink(tmp);
		sw_error("report: cannot write %s: %s; %s was left as it was", path, strerror(-rc), path);
	}
	return rc;
}

static void report_utc(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

int sw_report_write_run(const char *run, const sw_report_run *r)
{
	json_t *o = json_object(), *cmd = json_array(), *b = json_object(), *pk = json_object();
	for (int i = 0; i < report_argc; i++)
		json_array_append_new(cmd, json_string(report_argv[i]));
	char now[64];
	report_utc(now, sizeof(now));
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "command", cmd);
	json_object_set_new(o, "backend", json_string(r->backend ? r->backend : ""));
	json_object_set_new(o, "device", json_string(r->device ? r->device : ""));
	json_object_set_new(o, "steps", json_integer(r->steps));
	json_object_set_new(o, "updated", json_string(now));
	json_object_set_new(o, "finished", json_boolean(r->finished));
	json_object_set_new(b, "gpu_mem", json_integer((json_int_t)r->gpu_mem));
	json_object_set_new(b, "cpu_mem", json_integer((json_int_t)r->cpu_mem));
	json_object_set_new(b, "nvme", json_string(r->nvme ? r->nvme : ""));
	json_object_set_new(o, "budgets", b);
	json_object_set_new(pk, "arena_budget", json_integer((json_int_t)r->arena_budget));
	json_object_set_new(pk, "arena_peak", json_integer((json_int_t)r->arena_peak));
	json_object_set_new(pk, "host_peak_rss", json_integer((json_int_t)r->host_peak_rss));
	json_object_set_new(pk, "pinned", json_integer((json_int_t)r->pinned));
	json_object_set_new(pk, "device_peak", json_integer((json_int_t)r->device_peak));
	json_object_set_new(pk, "load_s", json_real(r->load_s));
	json_object_set_new(pk, "train_s", json_real(r->train_s));
	json_object_set_new(o, "measured", pk);
	json_object_set_new(o, "placement", json_string(r->placement ? r->placement : ""));
	char *text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!text) {
		sw_error("report: out of memory writing %s/run.json", run);
		return -ENOMEM;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/run.json", run);
	size_t n = strlen(text);
	text[n] = '\n';   /* over the NUL: the length is passed, not the terminator */
	int rc = report_write_atomic(path, text, n + 1);
	free(text);
	return rc;
}

/* ---- metrics.jsonl ---- */

enum { RES_N = 6 };
static const char *res_key[RES_N] = { "compute_s", "h2d_s", "d2h_s", "nvme_read_s", "nvme_write_s",
				      "optim_s" };

typedef struct report_rec {
	int64_t step, line;
	int has_loss, has_eval, has_bound;
	double loss, eval_loss, tps, bound, step_s, busy[RES_N];
} report_rec;

typedef struct report_data {
	report_rec *train, *eval;   /* sorted by step, one per step */
	int ntrain, neval;
	json_t *run;                /* run.json, or NULL */
} report_data;

/* A number field: absent or null leave *x and return 0; a number sets it and returns 1; any
 * other type returns -1. */
static int report_num(json_t *o, const char *key, double *x)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return -1;
	*x = json_number_value(v);
	return 1;
}

static int rec_cmp(const void *a, const void *b)
{
	const report_rec *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Sorts by step and keeps each step's last line. */
static int report_dedup(report_rec *r, int n)
{
	if (n < 2)
		return n;
	qsort(r, (size_t)n, sizeof(*r), rec_cmp);
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (k && r[k - 1].step == r[i].step)
			k--;
		r[k++] = r[i];
	}
	return k;
}

static int report_push(report_rec **a, int *n, int *cap, const report_rec *r)
{
	if (*n == *cap) {
		int c = *cap ? *cap * 2 : 256;
		report_rec *p = realloc(*a, (size_t)c * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = *r;
	return 0;
}

static int report_read_metrics(const char *run, report_data *d)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/metrics.jsonl", run);
	FILE *f = fopen(path, "r");
	if (!f) {
		int rc = -errno;
		if (errno == ENOENT)
			sw_error("report: %s does not exist: %s is not the --run directory of a `spillway "
				 "train` that has run a step", path, run);
		else
			sw_error("report: cannot read %s: %s", path, strerror(errno));
		return rc;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int64_t ln = 0;
	int rc = 0, ctrain = 0, ceval = 0;
	while (!rc && (len = getline(&line, &cap, f)) >= 0) {
		ln++;
		int blank = 1;
		for (ssize_t i = 0; i < len && blank; i++)
			blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r';
		if (blank)
			continue;
		json_error_t je;
		json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
		const char *bad = NULL;
		json_t *st = o ? json_object_get(o, "step") : NULL;
		report_rec r;
		char why[96];
		memset(&r, 0, sizeof(r));
		r.line = ln;
		if (!o)
			bad = je.text;
		else if (!json_is_object(o))
			bad = "not a JSON object";
		else if (!json_is_integer(st) || json_integer_value(st) < 0)
			bad = "no non-negative integer \"step\"";
		else {
			r.step = json_integer_value(st);
			r.tps = r.step_s = NAN;
			const char *key[5 + RES_N] = { "loss", "eval_loss", "bound_over_measured",
						       "tokens_per_s", "step_s" };
			double *dst[5 + RES_N] = { &r.loss, &r.eval_loss, &r.bound, &r.tps, &r.step_s };
			int got[5 + RES_N];
			for (int i = 0; i < RES_N; i++) {
				key[5 + i] = res_key[i];
				dst[5 + i] = &r.busy[i];
			}
			for (int i = 0; i < 5 + RES_N && !bad; i++)
				if ((got[i] = report_num(o, key[i], dst[i])) < 0) {
					snprintf(why, sizeof(why), "\"%s\" is not a number", key[i]);
					bad = why;
				}
			r.has_loss = !bad && got[0] > 0;
			r.has_eval = !bad && got[1] > 0;
			r.has_bound = !bad && got[2] > 0;
		}
		if (bad) {
			sw_error("report: %s line %lld: %s; the file is damaged (remove or fix that line)",
				 path, (long long)ln, bad);
			rc = -EINVAL;
		} else {
			if (r.has_loss && report_push(&d->train, &d->ntrain, &ctrain, &r))
				rc = -ENOMEM;
			if (r.has_eval && report_push(&d->eval, &d->neval, &ceval, &r))
				rc = -ENOMEM;
		}
		json_decref(o);
	}
	if (!rc && ferror(f)) {
		rc = -EIO;
		sw_error("report: cannot read %s: I/O error", path);
	}
	free(line);
	fclose(f);
	if (rc)
		return rc;
	d->ntrain = report_dedup(d->train, d->ntrain);
	d->neval = report_dedup(d->eval, d->neval);
	return 0;
}

static int report_read_run(const char *run, report_data *d)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/run.json", run);
	if (access(path, F_OK))
		return 0;   /* a run from before run.json: the page leaves that part out */
	json_error_t je;
	d->run = json_load_file(path, 0, &je);
	if (!d->run || !json_is_object(d->run)) {
		sw_error("report: %s: %s (line %d); the file is damaged (remove it to report without it)",
			 path, d->run ? "not a JSON object" : je.text, d->run ? 0 : je.line);
		json_decref(d->run);
		d->run = NULL;
		return -EINVAL;
	}
	return 0;
}

/* ---- HTML and SVG ---- */

static void html_text(FILE *f, const char *s)
{
	for (; s && *s; s++)
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
}

/* One shell word, quoted when it needs it. */
static void html_shell_word(FILE *f, const char *s)
{
	int plain = *s != 0;
	for (const char *p = s; *p && plain; p++)
		plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p) != NULL;
	if (plain) {
		html_text(f, s);
		return;
	}
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else {
			char c[2] = { *s, 0 };
			html_text(f, c);
		}
	}
	fputc('\'', f);
}

/* Tick spacing giving about `want` ticks over [lo, hi]: 1, 2 or 5 times a power of ten. */
static double nice_step(double lo, double hi, int want)
{
	double raw = (hi - lo) / want;
	if (!(raw > 0))
		return 1;
	double p = pow(10, floor(log10(raw))), m = raw / p;
	return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

#define CH_W 900
#define CH_H 240
#define CH_L 64
#define CH_R 16
#define CH_T 12
#define CH_B 34

typedef struct chart {
	double x0, x1, y0, y1;
} chart;

static double cx(const chart *c, double x)
{
	return CH_L + (x - c->x0) / (c->x1 - c->x0) * (CH_W - CH_L - CH_R);
}

static double cy(const chart *c, double y)
{
	return CH_H - CH_B - (y - c->y0) / (c->y1 - c->y0) * (CH_H - CH_T - CH_B);
}

/* Opens an <svg> with axes, grid and tick labels; rounds the y range out to whole ticks. */
static void chart_open(FILE *f, chart *c, const char *id, const char *ylabel, int y_from_zero)
{
	if (!(c->x1 > c->x0)) {
		c->x0 -= 1;
		c->x1 += 1;
	}
	if (y_from_zero && c->y0 > 0)
		c->y0 = 0;
	if (!(c->y1 > c->y0)) {
		c->y0 = c->y0 - (fabs(c->y0) > 0 ? fabs(c->y0) * 0.1 : 1);
		c->y1 = c->y1 + (fabs(c->y1) > 0 ? fabs(c->y1) * 0.1 : 1);
	}
	double ys = nice_step(c->y0, c->y1, 5);
	c->y0 = floor(c->y0 / ys) * ys;
	c->y1 = ceil(c->y1 / ys) * ys;
	fprintf(f, "<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
		"role=\"img\">\n", id, CH_W, CH_H, CH_W, CH_H);
	for (double y = c->y0; y <= c->y1 + ys * 1e-6; y += ys)
		fprintf(f, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>"
			"<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", CH_L,
			CH_W - CH_R, cy(c, y), cy(c, y), CH_L - 6, cy(c, y) + 4, fabs(y) < ys * 1e-6 ? 0 : y);
	double xs = nice_step(c->x0, c->x1, 8);
	xs = xs < 1 ? 1 : xs;
	for (double x = ceil(c->x0 / xs) * xs; x <= c->x1 + 1e-9; x += xs)
		fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
			"<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
			cx(c, x), cx(c, x), CH_H - CH_B, CH_H - CH_B + 4, cx(c, x), CH_H - CH_B + 17, x);
	fprintf(f, "<line class=\"axis\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n", CH_L,
		CH_W - CH_R, CH_H - CH_B, CH_H - CH_B);
	fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n",
		(CH_L + CH_W - CH_R) / 2, CH_H - 4);
	fprintf(f, "<text class=\"label\" transform=\"translate(14 %d) rotate(-90)\" "
		"text-anchor=\"middle\">", (CH_T + CH_H - CH_B) / 2);
	html_text(f, ylabel);
	fputs("</text>\n", f);
}

/* field of a record: 0 loss, 1 eval loss, 2 tokens/s, 3 bound/measured */
static int rec_has(const report_rec *r, int field)
{
	double v = field == 0 ? r->loss : field == 1 ? r->eval_loss : field == 2 ? r->tps : r->bound;
	int has = field == 0 ? r->has_loss : field == 1 ? r->has_eval : field == 2 ? 1 : r->has_bound;
	return has && isfinite(v);
}

static double rec_val(const report_rec *r, int field)
{
	return field == 0 ? r->loss : field == 1 ? r->eval_loss : field == 2 ? r->tps : r->bound;
}

static void chart_range(chart *c, const report_rec *r, int n, int field)
{
	for (int i = 0; i < n; i++) {
		if (!rec_has(&r[i], field))
			continue;
		double v = rec_val(&r[i], field);
		c->y0 = v < c->y0 ? v : c->y0;
		c->y1 = v > c->y1 ? v : c->y1;
	}
}

/* One <polyline> of the records' field (points with no finite value are left out, counted). */
static int chart_polyline(FILE *f, const chart *c, const report_rec *r, int n, int field,
			  const char *cls, int markers)
{
	int skipped = 0;
	fprintf(f, "<polyline class=\"%s\" points=\"", cls);
	for (int i = 0; i < n; i++) {
		if (!rec_has(&r[i], field)) {
			skipped++;
			continue;
		}
		fprintf(f, "%.2f,%.2f ", cx(c, (double)r[i].step), cy(c, rec_val(&r[i], field)));
	}
	fputs("\"/>\n", f);
	for (int i = 0; markers && i < n; i++)
		if (rec_has(&r[i], field))
			fprintf(f, "<circle class=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\"/>\n", cls,
				cx(c, (double)r[i].step), cy(c, rec_val(&r[i], field)));
	return skipped;
}

static void report_loss_chart(FILE *f, const report_data *d)
{
	chart c = { .x0 = INFINITY, .x1 = -INFINITY, .y0 = INFINITY, .y1 = -INFINITY };
	for (int i = 0; i < d->ntrain; i++) {
		c.x0 = fmin(c.x0, (double)d->train[i].step);
		c.x1 = fmax(c.x1, (double)d->train[i].step);
	}
	for (int i = 0; i < d->neval; i++) {
		c.x0 = fmin(c.x0, (double)d->eval[i].step);
		c.x1 = fmax(c.x1, (double)d->eval[i].step);
	}
	chart_range(&c, d->train, d->ntrain, 0);
	chart_range(&c, d->eval, d->neval, 1);
	if (!isfinite(c.x0)) {   /* nothing logged yet */
		c.x0 = 0;
		c.x1 = 1;
	}
	if (!isfinite(c.y0)) {
		c.y0 = 0;
		c.y1 = 1;
	}
	fputs("<section><h2>Loss</h2>\n<p class=\"legend\"><span class=\"key loss-train\"></span> "
	      "training loss (each step's batch)", f);
	if (d->neval)
		fputs(" <span class=\"key loss-eval\"></span> evaluation loss", f);
	fputs("</p>\n", f);
	chart_open(f, &c, "loss-chart", "loss", 0);
	int skipped = chart_polyline(f, &c, d->train, d->ntrain, 0, "loss-train", 0);
	if (d->neval)
		chart_polyline(f, &c, d->eval, d->neval, 1, "loss-eval", 1);
	fputs("</svg>\n", f);
	if (skipped)
		fprintf(f, "<p class=\"note\">%d non-finite losses are not drawn.</p>\n", skipped);
	fputs("</section>\n", f);
}

static void report_line_chart(FILE *f, const report_data *d, int field, const char *id,
			      const char *title, const char *ylabel, const char *cls, const char *none)
{
	chart c = { .x0 = INFINITY, .x1 = -INFINITY, .y0 = INFINITY, .y1 = -INFINITY };
	int have = 0;
	for (int i = 0; i < d->ntrain; i++) {
		c.x0 = fmin(c.x0, (double)d->train[i].step);
		c.x1 = fmax(c.x1, (double)d->train[i].step);
		have += rec_has(&d->train[i], field);
	}
	fprintf(f, "<section><h2>%s</h2>\n", title);
	if (!have) {
		fprintf(f, "<p class=\"note\">%s</p></section>\n", none);
		return;
	}
	chart_range(&c, d->train, d->ntrain, field);
	chart_open(f, &c, id, ylabel, 1);
	chart_polyline(f, &c, d->train, d->ntrain, field, cls, 0);
	fputs("</svg></section>\n", f);
}

static const char *res_name[RES_N] = { "compute", "host to device", "device to host", "NVMe read",
				       "NVMe write", "optimizer (CPU AdamW)" };

/* Each resource's busy seconds per step as stacked bars, the step's wall time as a line over
 * them; above 300 steps each bar is the mean of a run of consecutive steps. */
static void report_busy_chart(FILE *f, const report_data *d, int cpu)
{
	fputs("<section><h2>Busy time per resource</h2>\n<p class=\"legend\">", f);
	for (int k = 0; k < RES_N; k++) {
		fprintf(f, "<span class=\"key res%d\"></span> ", k);
		html_text(f, k == 0 && cpu ? "compute (CPU backend)" : res_name[k]);
		fputs(" &nbsp; ", f);
	}
	fputs("<span class=\"key steptime\"></span> the step's wall time</p>\n", f);
	int n = d->ntrain, per = n > 300 ? (n + 299) / 300 : 1, nb = (n + per - 1) / per;
	if (!n) {
		fputs("<p class=\"note\">No steps yet.</p></section>\n", f);
		return;
	}
	double *sum = calloc((size_t)nb * (RES_N + 1), sizeof(double));
	if (!sum) {
		fputs("</section>\n", f);
		return;
	}
	chart c = { .x0 = 0, .x1 = nb, .y0 = 0, .y1 = 0 };
	for (int b = 0; b < nb; b++) {
		int cnt = 0;
		for (int i = b * per; i < n && i < (b + 1) * per; i++, cnt++) {
			for (int k = 0; k < RES_N; k++)
				sum[b * (RES_N + 1) + k] += d->train[i].busy[k];
			sum[b * (RES_N + 1) + RES_N] += isfinite(d->train[i].step_s) ? d->train[i].step_s : 0;
		}
		double tot = 0;
		for (int k = 0; k <= RES_N; k++) {
			sum[b * (RES_N + 1) + k] /= cnt;
			if (k < RES_N)
				tot += sum[b * (RES_N + 1) + k];
		}
		c.y1 = fmax(c.y1, fmax(tot, sum[b * (RES_N + 1) + RES_N]));
	}
	/* the x axis counts steps: bar b covers steps first + b*per .. */
	int64_t s0 = d->train[0].step, s1 = d->train[n - 1].step;
	chart ca = { .x0 = (double)s0 - 0.5, .x1 = (double)s1 + 0.5, .y0 = 0, .y1 = c.y1 };
	chart_open(f, &ca, "busy-chart", "seconds", 1);
	double bw = (CH_W - CH_L - CH_R) / (double)nb;
	for (int b = 0; b < nb; b++) {
		double y = 0, x = CH_L + b * bw;
		for (int k = 0; k < RES_N; k++) {
			double v = sum[b * (RES_N + 1) + k];
			if (v > 0)
				fprintf(f, "<rect class=\"res%d\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
					"height=\"%.2f\"/>\n", k, x + bw * 0.1, cy(&ca, y + v), bw * 0.8,
					cy(&ca, y) - cy(&ca, y + v));
			y += v;
		}
	}
	fputs("<polyline class=\"steptime\" points=\"", f);
	for (int b = 0; b < nb; b++)
		fprintf(f, "%.2f,%.2f ", CH_L + (b + 0.5) * bw, cy(&ca, sum[b * (RES_N + 1) + RES_N]));
	fputs("\"/>\n</svg>\n", f);
	fputs("<p class=\"note\">The resources work at the same time, so a stack taller than the step's "
	      "wall time is overlap; a step whose wall time is close to one resource's bar is bound by "
	      "that resource.", f);
	if (per > 1)
		fprintf(f, " Each bar is the mean of %d consecutive steps.", per);
	fputs("</p></section>\n", f);
	free(sum);
}

static const char *json_str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : "";
}

static uint64_t json_u64(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void report_size_row(FILE *f, const char *what, uint64_t v, const char *none)
{
	char b[32];
	fputs("<tr><th>", f);
	html_text(f, what);
	fputs("</th><td>", f);
	html_text(f, v ? sw_fmt_size(v, b, 32) : none);
	fputs("</td></tr>\n", f);
}

static void report_run_tables(FILE *f, const report_data *d, int cpu)
{
	json_t *r = d->run;
	fputs("<section><h2>Command</h2>\n<pre id=\"command\">", f);
	json_t *cmd = json_object_get(r, "command");
	size_t i;
	json_t *w;
	json_array_foreach(cmd, i, w) {
		if (i)
			fputc(' ', f);
		if (json_is_string(w))
			html_shell_word(f, json_string_value(w));
	}
	fputs("</pre></section>\n", f);
	json_t *b = json_object_get(r, "budgets"), *m = json_object_get(r, "measured");
	const char *arena = cpu ? "compute arena (host memory on the CPU backend)" : "GPU arena";
	fputs("<section><h2>Budgets and measured peaks</h2>\n<table id=\"budgets\">\n", f);
	fputs("<tr><th>backend</th><td>", f);
	html_text(f, json_str(r, "backend"));
	fputs(" (", f);
	html_text(f, json_str(r, "device"));
	fputs(")</td></tr>\n", f);
	report_size_row(f, cpu ? "--gpu-mem (compute arena budget)" : "--gpu-mem", json_u64(b, "gpu_mem"),
			"not given: what the run needs");
	report_size_row(f, "--cpu-mem", json_u64(b, "cpu_mem"), "default");
	fputs("<tr><th>--nvme</th><td>", f);
	html_text(f, *json_str(b, "nvme") ? json_str(b, "nvme") : "none");
	fputs("</td></tr>\n", f);
	char what[128];
	snprintf(what, sizeof(what), "%s size", arena);
	report_size_row(f, what, json_u64(m, "arena_budget"), "-");
	snprintf(what, sizeof(what), "%s peak (measured)", arena);
	report_size_row(f, what, json_u64(m, "arena_peak"), "not measured yet");
	report_size_row(f, "host peak resident set (measured)", json_u64(m, "host_peak_rss"), "not measured yet");
	report_size_row(f, "pinned host buffers", json_u64(m, "pinned"), "-");
	if (!cpu)
		report_size_row(f, "GPU memory peak (measured, cudaMemGetInfo)", json_u64(m, "device_peak"),
				"not measured yet");
	json_t *tl = json_object_get(m, "load_s"), *tt = json_object_get(m, "train_s");
	if (json_is_number(tl) && json_number_value(tl) > 0)
		fprintf(f, "<tr><th>loading the state</th><td>%.1f s</td></tr>\n", json_number_value(tl));
	if (json_is_number(tt) && json_number_value(tt) > 0)
		fprintf(f, "<tr><th>training loop</th><td>%.1f s</td></tr>\n", json_number_value(tt));
	fputs("</table></section>\n", f);
	fputs("<section><h2>Placement</h2>\n", f);
	if (cpu)
		fputs("<p class=\"note\">CPU backend: no GPU is used; where the table says GPU it means "
		      "the compute arena, host memory standing in for the device (--gpu-mem).</p>\n", f);
	fputs("<pre id=\"placement\">", f);
	html_text(f, *json_str(r, "placement") ? json_str(r, "placement") : "(not recorded)");
	fputs("</pre></section>\n", f);
}

static const char report_css[] =
	"body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:940px}"
	"h1{font-size:20px}h2{font-size:16px;margin:20px 0 4px}"
	"pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:12px}#command{white-space:pre-wrap}"
	"table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;font-weight:normal}"
	"th{color:#555}.note,.legend{color:#555;font-size:13px;margin:4px 0}"
	".chart{display:block;max-width:100%;height:auto}"
	".grid{stroke:#e4e4e4}.axis{stroke:#888}.tick,.label{font-size:11px;fill:#555}"
	"polyline{fill:none;stroke-width:1.5}"
	".loss-train{stroke:#1f77b4}polyline.loss-eval{stroke:#d62728}circle.loss-eval{fill:#d62728}"
	".tps{stroke:#2ca02c}.bound{stroke:#9467bd}"
	".steptime{stroke:#000;stroke-dasharray:4 2}"
	".res0{fill:#1f77b4}.res1{fill:#ff7f0e}.res2{fill:#ffbb78}.res3{fill:#2ca02c}"
	".res4{fill:#98df8a}.res5{fill:#9467bd}"
	".key{display:inline-block;width:14px;height:10px;margin:0 4px 0 0}"
	"span.loss-train{background:#1f77b4}span.loss-eval{background:#d62728}"
	"span.res0{background:#1f77b4}span.res1{background:#ff7f0e}span.res2{background:#ffbb78}"
	"span.res3{background:#2ca02c}span.res4{background:#98df8a}span.res5{background:#9467bd}"
	"span.steptime{border-top:2px dashed #000;height:0}";

static void report_html(FILE *f, const char *run, const report_data *d)
{
	int cpu = d->run && !strcmp(json_str(d->run, "backend"), "cpu");
	char now[64];
	report_utc(now, sizeof(now));
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>spillway run ", f);
	html_text(f, run);
	fprintf(f, "</title>\n<style>%s</style></head><body>\n<h1>spillway run <code>", report_css);
	html_text(f, run);
	fputs("</code></h1>\n<p class=\"status\" id=\"status\">", f);
	int64_t last = d->ntrain ? d->train[d->ntrain - 1].step : 0;
	json_t *steps = d->run ? json_object_get(d->run, "steps") : NULL;
	if (json_is_integer(steps))
		fprintf(f, "step %lld of %lld, %s", (long long)last, (long long)json_integer_value(steps),
			json_is_true(json_object_get(d->run, "finished")) ? "finished" : "running or stopped");
	else
		fprintf(f, "%d steps", d->ntrain);
	if (d->ntrain) {
		const report_rec *a = &d->train[0], *z = &d->train[d->ntrain - 1];
		fprintf(f, "; loss %.4f at step %lld, %.4f at step %lld", a->loss, (long long)a->step,
			z->loss, (long long)z->step);
	}
	fprintf(f, ". Written %s.</p>\n", now);
	report_loss_chart(f, d);
	report_line_chart(f, d, 2, "tps-chart", "Tokens per second", "tokens/s", "tps",
			  "No throughput recorded.");
	report_line_chart(f, d, 3, "bound-chart", "Bound / measured",
			  "predicted step time / measured", "bound",
			  "No bound/measured figure: it is computed only from measured rates of the "
			  "machine's resources, and this run recorded none.");
	fputs("<p class=\"note\">Bound / measured is the planner's predicted step time (its slowest "
	      "resource at the rates it was given) over the measured step time: 1 means the step runs "
	      "as fast as its busiest resource allows.</p>\n", f);
	report_busy_chart(f, d, cpu);
	if (d->run)
		report_run_tables(f, d, cpu);
	else
		fputs("<p class=\"note\">This run directory has no run.json (command line, budgets, "
		      "placement): written by an older spillway.</p>\n", f);
	fputs("</body></html>\n", f);
}

int sw_report_write(const char *run)
{
	struct stat sb;
	if (stat(run, &sb) || !S_ISDIR(sb.st_mode)) {
		sw_error("report: --run %s: %s; give the run directory of a `spillway train --run DIR`",
			 run, stat(run, &sb) ? strerror(errno) : "not a directory");
		return -ENOENT;
	}
	report_data d;
	memset(&d, 0, sizeof(d));
	int rc = report_read_metrics(run, &d);
	if (!rc)
		rc = report_read_run(run, &d);
	char *buf = NULL;
	size_t len = 0;
	if (!rc) {
		FILE *f = open_memstream(&buf, &len);
		if (!f) {
			rc = -ENOMEM;
			sw_error("report: out of memory");
		} else {
			report_html(f, run, &d);
			if (fclose(f)) {
				rc = -ENOMEM;
				sw_error("report: out of memory");
			}
		}
	}
	if (!rc) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/report.html", run);
		rc = report_write_atomic(path, buf, len);
	}
	free(buf);
	free(d.train);
	free(d.eval);
	json_decref(d.run);
	return rc;
}

int sw_report_update(const char *run, int force)
{
	/* the wait grows with what a write costs (a long metrics.jsonl), so that rewriting the
	 * page never takes more than 2 % of the loop's time */
	static double last, cost;
	double t = sw_now(), wait = cost * 50 > SW_REPORT_EVERY_S ? cost * 50 : SW_REPORT_EVERY_S;
	if (!run || (!force && last > 0 && t - last < wait))
		return 0;
	int rc = sw_report_write(run);
	last = sw_now();
	cost = last - t;
	return rc;
}
