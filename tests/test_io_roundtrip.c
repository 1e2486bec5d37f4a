/* NVMe tier: data round-trips across stripes over several paths, lands where the striping math
 * says (checked with pread on the raw files), checksums verify, resume restores them, and bad
 * arguments are refused. */
#include "io/io.h"
#include "io/topology.h"
#include "tests/check.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NP 3
#define STRIPE (64u << 10)

static char root[] = "/tmp/sw-io-rt.XXXXXX";
static char paths[512];

static uint64_t rng = 88172645463325252ull;
static uint64_t xs(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(char *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i += 8) {
		uint64_t v = xs();
		memcpy(p + i, &v, 8);
	}
}

static void cleanup(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd)) {}
}

static sw_io *open_engine(int threads, uint64_t arena)
{
	sw_io_config c = { 0 };
	c.paths = paths;
	c.size = 24u << 20;
	c.stripe = STRIPE;
	c.bs = 16u << 10;            /* several blocks per stripe unit */
	c.qd = 8;
	c.threads = threads;
	c.arena_bytes = arena;
	c.file_name = "rt.data";
	c.numa_bind = 1;              /* node 0 exists everywhere hwloc runs */
	c.numa_node = 0;
	sw_io *io = NULL;
	int rc = sw_io_open(&c, &io);
	CHECKF(rc == 0, "sw_io_open: %d", rc);
	return io;
}

/* The expected place of logical byte lo: stripe k on path k % NP at (k / NP) * STRIPE. */
static void check_on_disk(const char *want, uint64_t lo, uint64_t len)
{
	char *got = malloc(STRIPE);
	for (uint64_t done = 0; done < len;) {
		uint64_t l = lo + done, k = l / STRIPE, in = l % STRIPE;
		uint64_t n = STRIPE - in < len - done ? STRIPE - in : len - done;
		char f[600];
		snprintf(f, sizeof(f), "%s/p%d/rt.data", root, (int)(k % NP));
		int fd = open(f, O_RDONLY);
		CHECK(fd >= 0);
		CHECK(pread(fd, got, n, (off_t)((k / NP) * STRIPE + in)) == (ssize_t)n);
		close(fd);
		CHECKF(!memcmp(got, want + done, n), "logical %llu: bytes not where the stripe map says",
		       (unsigned long long)l);
		done += n;
	}
	free(got);
}

int main(void)
{
	CHECK(mkdtemp(root));
	atexit(cleanup);
	int o = 0;
	for (int i = 0; i < NP; i++) {
		char d[600];
		snprintf(d, sizeof(d), "%s/p%d", root, i);
		CHECK(mkdir(d, 0755) == 0);
		o += snprintf(paths + o, sizeof(paths) - (size_t)o, "%s%s", i ? "," : "", d);
	}
	/* One of the paths carries a (sufficient) capacity cap. */
	o += snprintf(paths + o, sizeof(paths) - (size_t)o, ":%s", "64MiB");

	sw_io *io = open_engine(2, 8u << 20);
	CHECK(sw_io_npaths(io) == NP);
	CHECK(sw_io_capacity(io) >= (24u << 20));
	uint64_t asz = 0;
	char *arena = sw_io_arena(io, &asz);
	CHECK(arena && asz >= (8u << 20) && (uintptr_t)arena % 4096 == 0);
	CHECK(sw_io_arena_node(io) == 0);
	CHECK(sw_io_arena_registered(io) == 1);
	CHECK(sw_io_topology_print(paths) == 0);
	for (int i = 0; i < NP; i++) {
		struct stat st;
		CHECK(stat(sw_io_path_file(io, i), &st) == 0);
		CHECKF((uint64_t)st.st_size == sw_io_capacity(io) / NP, "path %d preallocated %lld", i,
		       (long long)st.st_size);
	}

	/* Extents of awkward sizes: small (one piece), unaligned length, many stripes. */
	const uint64_t sizes[] = { 4096, 100000, (1u << 20) + 12288, 3u << 20, STRIPE, 5000 };
	enum { NE = sizeof(sizes) / sizeof(sizes[0]) };
	sw_io_extent ext[NE];
	for (int i = 0; i < NE; i++) {
		CHECK(sw_io_extent_alloc(io, sizes[i], &ext[i]) == 0);
		CHECK(ext[i].off % 4096 == 0 && ext[i].len % 4096 == 0 && ext[i].len >= sizes[i]);
		if (ext[i].len >= STRIPE)
			CHECK(ext[i].off % STRIPE == 0);
		else
			CHECK(ext[i].off / STRIPE == (ext[i].off + ext[i].len - 1) / STRIPE);
		for (int j = 0; j < i; j++)
			CHECK(ext[i].off >= ext[j].off + ext[j].len);
	}
	CHECK(sw_io_extent_npieces(io, ext[3]) == (3u << 20) / STRIPE);

	/* Write every extent: half from the arena (registered), half from a plain aligned buffer. */
	char *src[NE], *dst = NULL, *plain = NULL;
	CHECK(posix_memalign((void **)&plain, 4096, 4u << 20) == 0);
	CHECK(posix_memalign((void **)&dst, 4096, 4u << 20) == 0);
	sw_io_req req[NE];
	uint64_t aoff = 0;
	for (int i = 0; i < NE; i++) {
		if (i % 2 == 0) {
			src[i] = arena + aoff;
			aoff += ext[i].len;
		} else {
			src[i] = malloc(ext[i].len);
		}
		fill(src[i], ext[i].len);
	}
	sw_io_counters c0, c1, c2, d;
	sw_io_counters_read(io, &c0);
	for (int i = 0; i < NE; i++) {
		const char *buf = src[i];
		if (i % 2) {
			memcpy(plain, src[i], ext[i].len);
			buf = plain;
		}
		CHECK(sw_io_submit_write(io, &req[i], ext[i], 0, ext[i].len, buf) == 0);
		if (i % 2)
			CHECKF(sw_io_wait(io, &req[i]) == 0, "%s", sw_io_req_error(&req[i]));
	}
	for (int i = 0; i < NE; i++) {
		CHECKF(sw_io_wait(io, &req[i]) == 0, "%s", sw_io_req_error(&req[i]));
		CHECK(sw_io_poll(&req[i]) == 0);
		CHECK(sw_io_req_error(&req[i])[0] == 0);
	}
	for (int i = 0; i < NE; i++)
		check_on_disk(src[i], ext[i].off, ext[i].len);
	/* the counters: every byte written, by writes alone, nothing left in flight, and the time
	 * split between states adds up to the time between the two reads */
	uint64_t all = 0;
	for (int i = 0; i < NE; i++)
		all += ext[i].len;
	sw_io_counters_read(io, &c1);
	sw_io_counters_diff(&c1, &c0, &d);
	CHECKF(d.bytes[1] == all && d.bytes[0] == 0, "counters: %llu written, %llu read (wrote %llu)",
	       (unsigned long long)d.bytes[1], (unsigned long long)d.bytes[0], (unsigned long long)all);
	CHECK(d.state_bytes[2][1] == all && d.inflight[0] == 0 && d.inflight[1] == 0);
	CHECK(d.state_s[2] > 0 && d.state_s[1] == 0 && d.state_s[3] == 0);
	double tsum = d.state_s[0] + d.state_s[1] + d.state_s[2] + d.state_s[3];
	CHECKF(fabs(tsum - d.t) < 1e-9, "counters: states add to %.9f s of %.9f", tsum, d.t);
	/* every written piece checksummed once, while in flight (SW_IO_SUMS_AHEAD=0: after) */
	uint64_t pieces = 0;
	for (int i = 0; i < NE; i++)
		pieces += sw_io_extent_npieces(io, ext[i]);
	int after = sw_io_settings(io)->sums_after;
	CHECKF(d.sums[!after] == pieces && d.sums[after] == 0,
	       "counters: %llu pieces checksummed in flight, %llu after, of %llu written",
	       (unsigned long long)d.sums[1], (unsigned long long)d.sums[0], (unsigned long long)pieces);

	/* Read back, into the arena's tail and into plain memory. */
	for (int i = 0; i < NE; i++) {
		char *d = i % 2 ? dst : arena + (4u << 20);
		memset(d, 0xee, ext[i].len);
		CHECK(sw_io_submit_read(io, &req[i], ext[i], 0, ext[i].len, d) == 0);
		CHECKF(sw_io_wait(io, &req[i]) == 0, "%s", sw_io_req_error(&req[i]));
		CHECKF(!memcmp(d, src[i], ext[i].len), "extent %d: data differs after round trip", i);
	}
	sw_io_counters_read(io, &c2);
	sw_io_counters_diff(&c2, &c1, &d);
	CHECK(d.bytes[0] == all && d.state_bytes[1][0] == all && d.bytes[1] == 0);
	CHECK(d.state_s[1] > 0 && d.state_s[2] == 0 && d.state_s[3] == 0);
	CHECK(d.sums[0] == pieces && d.sums[1] == 0);   /* a read's, after its bytes arrived */
	/* A piece-aligned sub-range: stripes 2..4 of the 3 MiB extent. */
	memset(dst, 0, 3 * STRIPE);
	CHECK(sw_io_submit_read(io, &req[0], ext[3], 2 * STRIPE, 3 * STRIPE, dst) == 0);
	CHECK(sw_io_wait(io, &req[0]) == 0);
	CHECK(!memcmp(dst, src[3] + 2 * STRIPE, 3 * STRIPE));

	/* Bad arguments: refused at submit with -EINVAL and a message. */
	CHECK(sw_io_submit_read(io, &req[0], ext[3], 4096, STRIPE, dst) == -EINVAL);
	CHECK(strstr(sw_io_req_error(&req[0]), "piece"));
	CHECK(sw_io_submit_read(io, &req[0], ext[3], 0, STRIPE, dst + 512) == -EINVAL);
	CHECK(sw_io_submit_read(io, &req[0], ext[3], 0, ext[3].len + STRIPE, dst) == -EINVAL);
	CHECK(sw_io_wait(io, &req[0]) == -EINVAL);
	sw_io_extent bogus = ext[2];
	bogus.len += 4096;
	CHECK(sw_io_submit_read(io, &req[0], bogus, 0, 4096, dst) == -EINVAL);

	/* Capacity runs out with -ENOSPC. */
	sw_io_extent big;
	CHECK(sw_io_extent_alloc(io, sw_io_capacity(io), &big) == -ENOSPC);
	CHECK(sw_io_extent_alloc(io, 0, &big) == -EINVAL);

	/* Save the checksums, reopen (resume), re-create the extents in the same order: same
	 * offsets; without the checksums the data is "never written", with them it verifies. */
	uint64_t sums[NE][64];
	uint8_t wr[NE][64];
	for (int i = 0; i < NE; i++) {
		CHECK(sw_io_extent_npieces(io, ext[i]) <= 64);
		CHECK(sw_io_extent_sums_get(io, ext[i], sums[i], wr[i]) == 0);
		for (uint32_t p = 0; p < sw_io_extent_npieces(io, ext[i]); p++)
			CHECK(wr[i][p] == 1);
	}
	for (int i = 0; i < NE; i += 2) {        /* the arena goes away with the engine */
		char *keep = malloc(ext[i].len);
		memcpy(keep, src[i], ext[i].len);
		src[i] = keep;
	}
	sw_io_close(io);
	io = open_engine(1, 0);
	for (int i = 0; i < NE; i++) {
		sw_io_extent e2;
		CHECK(sw_io_extent_alloc(io, sizes[i], &e2) == 0);
		CHECK(e2.off == ext[i].off && e2.len == ext[i].len);
		ext[i] = e2;
	}
	CHECK(sw_io_submit_read(io, &req[0], ext[2], 0, ext[2].len, dst) == -ENODATA);
	for (int i = 0; i < NE; i++)
		CHECK(sw_io_extent_sums_set(io, ext[i], sums[i], wr[i]) == 0);
	for (int i = 0; i < NE; i++) {
		memset(dst, 0, ext[i].len);
		CHECK(sw_io_submit_read(io, &req[i], ext[i], 0, ext[i].len, dst) == 0);
		CHECKF(sw_io_wait(io, &req[i]) == 0, "%s", sw_io_req_error(&req[i]));
		CHECK(!memcmp(dst, src[i], ext[i].len));
	}
	sw_io_close(io);
	for (int i = 0; i < NE; i++)
		free(src[i]);
	free(dst);
	free(plain);
	printf("round trip over %d paths: ok\n", NP);
	return 0;
}
