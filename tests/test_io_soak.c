/* Soak: random mixed reads and writes (whole extents and piece-aligned sub-ranges) over three
 * striped paths, up to 12 requests in flight, every read checked against the data last written
 * (and by the engine's checksums), with writes checksummed while in flight (the default) and
 * then, for a second, after their transfer (sw_io_config.sums_after). SW_IO_SOAK_SECONDS (default 2) sets the duration;
 * bench/io_soak.sh runs it for minutes under ASan (leaks are ASan's verdict at exit). Prints the
 * throughput of every second; with >= 30 s it also requires steady throughput: no 10-second
 * window (after the first second) below a third of the median window. */
#include "io/io.h"
#include "core/log.h"
#include "tests/check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NEXT 48
#define SLOTS 12
#define MAXLEN (4u << 20)
#define STRIPE (256u << 10)

static char root[] = "/tmp/sw-io-soak.XXXXXX";

static void cleanup(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd)) {}
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* The soak's phase: salts the data, so that a write lost in the second phase does not
 * find the first phase's bytes of the same extent and version on the disk. */
static uint64_t salt;

/* The content of extent e at version v, bytes [off, off+len) of the extent. */
static void pattern(char *p, int e, uint32_t v, uint64_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t x = mix64(((uint64_t)e << 48) ^ ((uint64_t)v << 32) ^ ((off + i) >> 3) ^ salt);
		memcpy(p + i, &x, 8);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

typedef struct slot {
	sw_io_req req;
	int busy, ext, op;
	uint32_t ver;
	uint64_t off, len;
	char *buf;
} slot;

/* The soak over the three paths, for `seconds`; sums_after: writes' checksums after their
 * transfer (sw_io_config.sums_after) rather than while they are in flight. */
static void soak(const char *paths, double seconds, int sums_after)
{
	sw_io_config c = { 0 };
	c.sums_after = sums_after;
	c.paths = paths;
	c.size = 160u << 20;
	c.stripe = STRIPE;
	c.bs = 128u << 10;
	c.qd = 16;
	c.threads = 2;
	c.arena_bytes = (uint64_t)SLOTS * MAXLEN;
	sw_io *io;
	CHECK(sw_io_open(&c, &io) == 0);
	salt = mix64(0x5eed0000u + (uint64_t)sums_after);   /* the phase's */
	CHECK(!sums_after || sw_io_settings(io)->sums_after);
	sums_after = sw_io_settings(io)->sums_after;   /* SW_IO_SUMS_AHEAD=0 sets it in both */
	char *arena = sw_io_arena(io, NULL), *want = malloc(MAXLEN);
	CHECK(want);

	uint64_t rng = 12345;
	sw_io_extent ext[NEXT];
	uint32_t ver[NEXT];
	int busy[NEXT];
	for (int e = 0; e < NEXT; e++) {
		rng = mix64(rng);
		uint64_t len = 4096 + rng % (MAXLEN - 4096);
		CHECK(sw_io_extent_alloc(io, len, &ext[e]) == 0);
		ver[e] = 0;
		busy[e] = 0;
	}
	slot s[SLOTS];
	memset(s, 0, sizeof(s));
	for (int k = 0; k < SLOTS; k++)
		s[k].buf = arena + (uint64_t)k * MAXLEN;
	/* Version 0 of everything, written from the slots in turn. */
	for (int e = 0; e < NEXT; e++) {
		pattern(s[0].buf, e, 0, 0, ext[e].len);
		CHECK(sw_io_submit_write(io, &s[0].req, ext[e], 0, ext[e].len, s[0].buf) == 0);
		CHECKF(sw_io_wait(io, &s[0].req) == 0, "%s", sw_io_req_error(&s[0].req));
	}

	double t0 = sw_now(), tick = t0;
	double per_sec[4096];
	int nsec = 0;
	uint64_t bytes_sec = 0, total = 0, nread = 0, nwrite = 0;
	for (;;) {
		double now = sw_now();
		int stop = now - t0 >= seconds;
		int idle = 1;
		for (int k = 0; k < SLOTS; k++) {
			slot *q = &s[k];
			if (q->busy) {
				idle = 0;
				int st = sw_io_poll(&q->req);
				if (st == 1)
					continue;
				CHECKF(st == 0, "%s", sw_io_req_error(&q->req));
				if (q->op == SW_IO_READ) {
					pattern(want, q->ext, q->ver, q->off, q->len);
					CHECKF(!memcmp(want, q->buf, q->len),
					       "extent %d v%u [%llu,+%llu): data differs (corruption)", q->ext,
					       q->ver, (unsigned long long)q->off, (unsigned long long)q->len);
					nread++;
				} else {
					ver[q->ext] = q->ver;
					nwrite++;
				}
				busy[q->ext] = 0;
				q->busy = 0;
				bytes_sec += q->len;
				total += q->len;
			}
			if (stop)
				continue;
			/* New op on a random idle extent. */
			int e;
			do {
				rng = mix64(rng);
				e = (int)(rng % NEXT);
			} while (busy[e]);
			q->ext = e;
			q->op = (rng >> 20) & 1 ? SW_IO_READ : SW_IO_WRITE;
			q->off = 0;
			q->len = ext[e].len;
			/* A third of the reads take a piece-aligned sub-range. */
			uint32_t np = sw_io_extent_npieces(io, ext[e]);
			if (q->op == SW_IO_READ && np > 2 && (rng >> 30) % 3 == 0) {
				uint64_t first = ext[e].off / STRIPE;
				uint64_t lo = (first + 1) * STRIPE - ext[e].off;
				q->off = lo;
				q->len = STRIPE * ((rng >> 40) % (np - 2) + 1);
			}
			int rc;
			if (q->op == SW_IO_READ) {
				q->ver = ver[e];
				rc = sw_io_submit_read(io, &q->req, ext[e], q->off, q->len, q->buf);
			} else {
				q->ver = ver[e] + 1;
				pattern(q->buf, e, q->ver, 0, q->len);
				rc = sw_io_submit_write(io, &q->req, ext[e], 0, q->len, q->buf);
			}
			CHECKF(rc == 0, "%s", sw_io_req_error(&q->req));
			busy[e] = 1;
			q->busy = 1;
			idle = 0;
		}
		if (now - tick >= 1.0) {
			per_sec[nsec] = (double)bytes_sec / (now - tick) / 1e9;
			printf("second %3d: %.3f GB/s\n", nsec + 1, per_sec[nsec]);
			fflush(stdout);
			nsec += nsec < 4095;
			bytes_sec = 0;
			tick = now;
		}
		if (stop && idle)
			break;
		/* Block on one busy slot so the loop does not spin. */
		for (int k = 0; k < SLOTS; k++) {
			if (s[k].busy) {
				sw_io_wait(io, &s[k].req);
				break;
			}
		}
	}
	double dt = sw_now() - t0;
	printf("soak (writes' checksums %s): %.1f s, %llu reads verified, %llu writes, %.3f GB/s mean, no corruption\n",
	       sums_after ? "after the transfer" : "while in flight", dt, (unsigned long long)nread, (unsigned long long)nwrite, (double)total / dt / 1e9);
	CHECK(nread > 0 && nwrite > 0);
	if (nsec >= 30) {
		/* 10-second windows after the first second: the disk is shared, single seconds
		 * are noisy; a leak, a stall or a slow-down trend shows in the windows. */
		int nw = (nsec - 1) / 10;
		double w[512], sorted[512];
		for (int i = 0; i < nw; i++) {
			w[i] = 0;
			for (int j = 0; j < 10; j++)
				w[i] += per_sec[1 + i * 10 + j] / 10;
			sorted[i] = w[i];
		}
		qsort(sorted, (size_t)nw, sizeof(double), cmp_double);
		double med = sorted[nw / 2];
		printf("10-second windows GB/s:");
		for (int i = 0; i < nw; i++)
			printf(" %.2f", w[i]);
		printf("\nmin %.3f, median %.3f, max %.3f, last/first %.2f\n", sorted[0], med,
		       sorted[nw - 1], w[nw - 1] / w[0]);
		CHECKF(sorted[0] >= 0.33 * med, "throughput not steady: a window at %.3f GB/s vs median %.3f",
		       sorted[0], med);
	}
	sw_io_close(io);
	free(want);
}

int main(void)
{
	double seconds = getenv("SW_IO_SOAK_SECONDS") ? atof(getenv("SW_IO_SOAK_SECONDS")) : 2;
	CHECK(mkdtemp(root));
	atexit(cleanup);
	char paths[600];
	int o = 0;
	for (int i = 0; i < 3; i++) {
		char d[400];
		snprintf(d, sizeof(d), "%s/p%d", root, i);
		CHECK(mkdir(d, 0755) == 0);
		o += snprintf(paths + o, sizeof(paths) - (size_t)o, "%s%s", i ? "," : "", d);
	}
	soak(paths, seconds, 0);
	if (getenv("SW_IO_SUMS_AHEAD") && !strcmp(getenv("SW_IO_SUMS_AHEAD"), "0"))
		printf("SW_IO_SUMS_AHEAD=0: both phases checksummed writes after the transfer\n");
	/* the other way of checksumming writes, for a second (the engine's files are scratch:
	 * its extents start never written) */
	soak(paths, seconds < 1 ? seconds : 1, 1);
	return 0;
}
