/* The step's measurement: host spans, device spans from event pairs, busy time per track
 * (the union of its spans), and the Chrome trace file. */
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void exec_span_add(sw_exec *ex, int track, const char *name, double t0, double t1)
{
	pthread_mutex_lock(&ex->smu);
	if (ex->nspans == ex->maxspans) {
		int n = ex->maxspans ? ex->maxspans * 2 : 1024;
		span *s = realloc(ex->spans, (size_t)n * sizeof(span));
		if (!s) {
			pthread_mutex_unlock(&ex->smu);
			return;
		}
		ex->spans = s;
		ex->maxspans = n;
	}
	span *s = &ex->spans[ex->nspans++];
	s->track = track;
	s->t0 = t0;
	s->t1 = t1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	pthread_mutex_unlock(&ex->smu);
}

/* Device spans: an event pair recorded on a stream, converted after the step's sync. */
int exec_gspan_begin(sw_exec *ex, sw_stream *st, int track)
{
	if (ex->nsev + 2 > ex->maxsev) {
		ex->sev_dropped++;
		return -1;
	}
	int i = ex->nsev;
	ex->nsev += 2;
	ex->strack[i] = track;
	ex->be->ops->event_record(ex->be, ex->sev[i], st);
	return i;
}

void exec_gspan_end(sw_exec *ex, sw_stream *st, int i)
{
	if (i >= 0)
		ex->be->ops->event_record(ex->be, ex->sev[i + 1], st);
}

const char *const exec_track_name[SW_TRACK_COUNT] = {
	"compute", "H2D", "D2H", "NVMe read", "NVMe write", "optimizer",
};

/* The NVMe counters as two Chrome counter tracks: GB/s by direction over each sampling
 * interval (stamped at its start: a counter holds its value until the next), and the blocks
 * in flight at each sample. */
static void samples_flush_locked(sw_exec *ex)
{
	for (int i = 0; i < ex->nsamp; i++) {
		const sw_io_counters *c = &ex->samp[i], *l = &ex->samp_last;
		if (c->t > l->t) {
			double dt = c->t - l->t;
			fprintf(ex->trace, "%s{\"name\":\"NVMe GB/s\",\"ph\":\"C\",\"pid\":1,\"ts\":%.1f,"
				"\"args\":{\"read\":%.4f,\"write\":%.4f}}", ex->trace_first ? "" : ",\n",
				(l->t - ex->t_origin) * 1e6, (double)(c->bytes[0] - l->bytes[0]) / dt / 1e9,
				(double)(c->bytes[1] - l->bytes[1]) / dt / 1e9);
			ex->trace_first = 0;
		}
		fprintf(ex->trace, "%s{\"name\":\"NVMe blocks in flight\",\"ph\":\"C\",\"pid\":1,"
			"\"ts\":%.1f,\"args\":{\"read\":%d,\"write\":%d}}", ex->trace_first ? "" : ",\n",
			(c->t - ex->t_origin) * 1e6, c->inflight[0], c->inflight[1]);
		ex->trace_first = 0;
		ex->samp_last = *c;
	}
	ex->nsamp = 0;
}

static void trace_flush_locked(sw_exec *ex)
{
	if (!ex->trace)
		return;
	samples_flush_locked(ex);
	for (int i = 0; i < ex->nspans; i++) {
		span *s = &ex->spans[i];
		fprintf(ex->trace, "%s{\"name\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.1f,"
			"\"dur\":%.1f}", ex->trace_first ? "" : ",\n", s->name, s->track + 1,
			(s->t0 - ex->t_origin) * 1e6, (s->t1 - s->t0) * 1e6);
		ex->trace_first = 0;
	}
	ex->nspans = 0;
}

void exec_trace_flush(sw_exec *ex)
{
	pthread_mutex_lock(&ex->smu);
	trace_flush_locked(ex);
	pthread_mutex_unlock(&ex->smu);
}

/* By track, then start. */
static int span_cmp(const void *x, const void *y)
{
	const span *a = x, *b = y;
	if (a->track != b->track)
		return a->track < b->track ? -1 : 1;
	return (a->t0 > b->t0) - (a->t0 < b->t0);
}

void exec_finish_spans(sw_exec *ex, sw_exec_stats *st)
{
	sw_backend *be = ex->be;
	for (int i = 0; i + 1 < ex->nsev; i += 2) {
		double a = be->ops->event_ms(be, ex->ev0, ex->sev[i]) / 1e3;
		double b = be->ops->event_ms(be, ex->ev0, ex->sev[i + 1]) / 1e3;
		exec_span_add(ex, ex->strack[i], exec_track_name[ex->strack[i]], ex->t_step0 + a, ex->t_step0 + b);
	}
	ex->nsev = 0;
	if (ex->sev_dropped && !ex->sev_warned) {
		sw_warn("executor: %lld device spans of this step were not recorded (event pool of %d "
			"full): compute/H2D/D2H busy times and the trace undercount", (long long)ex->sev_dropped,
			ex->maxsev / 2);
		ex->sev_warned = 1;
	}
	ex->sev_dropped = 0;
	/* the optimizer thread may still add spans (the step boundary overlaps) */
	pthread_mutex_lock(&ex->smu);
	/* busy = the union of a track's spans in this step: reads in flight together (checkpoints
	 * read ahead beside optimizer state) count once */
	span *v = malloc((size_t)(ex->nspans ? ex->nspans : 1) * sizeof(span));
	int n = 0;
	for (int i = 0; i < ex->nspans && v; i++)
		if (ex->spans[i].t1 >= ex->t_step0) {
			v[n] = ex->spans[i];
			if (v[n].t0 < ex->t_step0)
				v[n].t0 = ex->t_step0;
			n++;
		}
	if (v)
		qsort(v, (size_t)n, sizeof(span), span_cmp);
	for (int i = 0; i < n;) {
		int tr = v[i].track;
		double a = v[i].t0, b = v[i].t1;
		for (i++; i < n && v[i].track == tr; i++) {
			if (v[i].t0 > b) {
				st->busy[tr] += b - a;
				a = v[i].t0;
			}
			if (v[i].t1 > b)
				b = v[i].t1;
		}
		st->busy[tr] += b - a;
	}
	free(v);
	if (ex->trace) {
		/* the step itself, from its start to its return (the step boundary: the optimizer's
		 * spans named with this step's number may run past it) */
		fprintf(ex->trace, "%s{\"name\":\"step %lld\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,"
			"\"ts\":%.1f,\"dur\":%.1f", ex->trace_first ? "" : ",\n", (long long)ex->calls,
			SW_TRACK_COUNT + 1, (ex->t_step0 - ex->t_origin) * 1e6, st->step_s * 1e6);
		if (ex->io) {
			/* what the drives did in the step: seconds with nothing, reads alone, writes
			 * alone and both in flight, and the bytes each direction moved in each */
			const sw_io_counters *c = &st->nvme;
			fprintf(ex->trace, ",\"args\":{\"nvme_s\":[%.6f,%.6f,%.6f,%.6f]", c->state_s[0],
				c->state_s[1], c->state_s[2], c->state_s[3]);
			for (int d = 0; d < 2; d++)
				fprintf(ex->trace, ",\"nvme_%s\":[%llu,%llu,%llu,%llu]", d ? "write" : "read",
					(unsigned long long)c->state_bytes[0][d],
					(unsigned long long)c->state_bytes[1][d],
					(unsigned long long)c->state_bytes[2][d],
					(unsigned long long)c->state_bytes[3][d]);
			fprintf(ex->trace, "}");
		}
		fprintf(ex->trace, "}");
		ex->trace_first = 0;
		trace_flush_locked(ex);
	}
	else
		ex->nspans = 0;
	pthread_mutex_unlock(&ex->smu);
}


/* ---- the NVMe counters' sampler ------------------------------------------------------------ */

#define SAMPLE_MS 10

/* Appends one sample (under smu; a full array that cannot grow drops it). */
static void sample_push_locked(sw_exec *ex, const sw_io_counters *c)
{
	if (ex->nsamp == ex->maxsamp) {
		int n = ex->maxsamp ? ex->maxsamp * 2 : 256;
		sw_io_counters *v = realloc(ex->samp, (size_t)n * sizeof(*v));
		if (v) {
			ex->samp = v;
			ex->maxsamp = n;
		}
	}
	if (ex->nsamp < ex->maxsamp)
		ex->samp[ex->nsamp++] = *c;
}

/* 1 when nothing moved between a and b: the same bytes completed and blocks in flight. */
static int sample_same(const sw_io_counters *a, const sw_io_counters *b)
{
	return a->bytes[0] == b->bytes[0] && a->bytes[1] == b->bytes[1] &&
	       a->inflight[0] == b->inflight[0] && a->inflight[1] == b->inflight[1];
}

/* While nothing moves (an eval, a save, a stall) the samples are held back, and only the last
 * one is kept, pushed just before the next that differs. The rate is then 0 over the quiet
 * stretch and right after it. */
static void *sampler_main(void *arg)
{
	sw_exec *ex = arg;
	const struct timespec period = { 0, SAMPLE_MS * 1000000L };
	sw_io_counters last;
	int held = 0;   /* held: `last` was not pushed (nothing moved up to it) */
	pthread_mutex_lock(&ex->smu);
	last = ex->samp_last;
	sample_push_locked(ex, &last);
	pthread_mutex_unlock(&ex->smu);
	for (;;) {
		nanosleep(&period, NULL);
		if (__atomic_load_n(&ex->samp_quit, __ATOMIC_ACQUIRE))
			break;
		sw_io_counters c;
		sw_io_counters_read(ex->io, &c);
		int same = sample_same(&c, &last);
		if (!same) {
			pthread_mutex_lock(&ex->smu);
			if (held)
				sample_push_locked(ex, &last);
			sample_push_locked(ex, &c);
			pthread_mutex_unlock(&ex->smu);
		}
		held = same;
		last = c;
	}
	if (held) {
		pthread_mutex_lock(&ex->smu);
		sample_push_locked(ex, &last);
		pthread_mutex_unlock(&ex->smu);
	}
	return NULL;
}

/* While tracing with an NVMe tier: samples its counters every SAMPLE_MS for the trace's
 * counter tracks (the step's own totals come from the step, exec_step.c). */
int exec_sampler_start(sw_exec *ex)
{
	if (!ex->trace || !ex->io)
		return 0;
	sw_io_counters_read(ex->io, &ex->samp_last);   /* the first sample (the thread pushes it) */
	int rc = -pthread_create(&ex->samp_thr, NULL, sampler_main, ex);
	ex->samp_started = rc == 0;
	return rc;
}

void exec_sampler_stop(sw_exec *ex)
{
	if (!ex->samp_started)
		return;
	__atomic_store_n(&ex->samp_quit, 1, __ATOMIC_RELEASE);
	pthread_join(ex->samp_thr, NULL);
	ex->samp_started = 0;
}
