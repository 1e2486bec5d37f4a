/* NVMe tier faults: each is reported with the file and the cause, never retried forever, never
 * silent. EIO, ENOSPC (injected on write; real at open), short read at end of file (real
 * truncation and injected), never-written extents, a vanished or replaced path, checksum
 * mismatch (real on-disk corruption and injected), bounded EAGAIN / short-transfer re-queues. */
#include "io/io.h"
#include "tests/check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STRIPE (64u << 10)

static char root[] = "/tmp/sw-io-faults.XXXXXX";
static char paths[1024], dir0[300], dir1[300];

static void cleanup(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd)) {}
}

static sw_io *open_engine(const char *p, uint64_t size, int *rc_out)
{
	sw_io_config c = { 0 };
	c.paths = p;
	c.size = size;
	c.stripe = STRIPE;
	c.bs = STRIPE;
	c.qd = 4;
	c.threads = 1;
	c.arena_bytes = 2u << 20;
	c.file_name = "f.data";
	c.quiet = 1;
	sw_io *io = NULL;
	int rc = sw_io_open(&c, &io);
	if (rc_out)
		*rc_out = rc;
	else
		CHECKF(rc == 0, "sw_io_open: %d", rc);
	return io;
}

static void fill(char *p, uint64_t n, unsigned seed)
{
	for (uint64_t i = 0; i < n; i++)
		p[i] = (char)(i * 31 + seed * 7 + (i >> 9));
}

/* Writes the extent from buf and checks success. */
static void put(sw_io *io, sw_io_extent e, char *buf)
{
	sw_io_req r;
	CHECK(sw_io_submit_write(io, &r, e, 0, e.len, buf) == 0);
	CHECKF(sw_io_wait(io, &r) == 0, "%s", sw_io_req_error(&r));
}

/* Reads the extent; returns the status and copies the message. */
static int get(sw_io *io, sw_io_extent e, char *buf, char *msg)
{
	sw_io_req r;
	int rc = sw_io_submit_read(io, &r, e, 0, e.len, buf);
	if (rc == 0)
		rc = sw_io_wait(io, &r);
	strcpy(msg, sw_io_req_error(&r));
	if (rc)
		printf("  expected failure: %s\n", msg);
	return rc;
}

static void fault(sw_io *io, const char *spec)
{
	sw_io_fault f;
	CHECKF(sw_io_fault_parse(spec, &f) == 0, "%s", spec);
	CHECK(sw_io_fault_set(io, &f) == 0);
}

/* After every request has returned: no block is left in flight, and each direction's bytes by
 * state add up to its total (failed, retried and re-queued blocks included). */
static void settled(sw_io *io, const char *after)
{
	sw_io_counters c;
	sw_io_counters_read(io, &c);
	CHECKF(c.inflight[0] == 0 && c.inflight[1] == 0, "after %s: %d reads and %d writes left in flight",
	       after, c.inflight[0], c.inflight[1]);
	for (int d = 0; d < 2; d++) {
		uint64_t sum = 0;
		for (int k = 0; k < 4; k++)
			sum += c.state_bytes[k][d];
		CHECKF(sum == c.bytes[d], "after %s: %s bytes by state %llu, total %llu", after,
		       d ? "write" : "read", (unsigned long long)sum, (unsigned long long)c.bytes[d]);
	}
	CHECKF(c.state_bytes[0][0] == 0 && c.state_bytes[0][1] == 0 && c.state_bytes[2][0] == 0 &&
	       c.state_bytes[1][1] == 0, "after %s: bytes charged to a state without their direction", after);
}

int main(void)
{
	CHECK(mkdtemp(root));
	atexit(cleanup);
	snprintf(dir0, sizeof(dir0), "%s/a", root);
	snprintf(dir1, sizeof(dir1), "%s/b", root);
	CHECK(mkdir(dir0, 0755) == 0 && mkdir(dir1, 0755) == 0);
	snprintf(paths, sizeof(paths), "%s,%s", dir0, dir1);
	char msg[400], p[1024], f0[400], f1[400];
	snprintf(f0, sizeof(f0), "%s/f.data", dir0);
	snprintf(f1, sizeof(f1), "%s/f.data", dir1);
	int rc;

	/* --- open-time faults: missing path, not a directory, cap too small, disk too small --- */
	snprintf(p, sizeof(p), "%s,%s/missing", dir0, root);
	CHECK(open_engine(p, 1u << 20, &rc) == NULL && rc == -ENOENT);
	snprintf(p, sizeof(p), "%s/a/../../sw-nope-%d", root, (int)getpid());
	CHECK(open_engine(p, 1u << 20, &rc) == NULL && rc == -ENOENT);
	int fd = open(f0, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK(open_engine(f0, 1u << 20, &rc) == NULL && rc == -ENOTDIR);
	unlink(f0);
	snprintf(p, sizeof(p), "%s:1MiB,%s", dir0, dir1);
	CHECK(open_engine(p, 8u << 20, &rc) == NULL && rc == -ENOSPC);
	CHECK(open_engine(paths, 1ull << 60, &rc) == NULL && rc == -ENOSPC);   /* 1 EiB */
	CHECK(access(f0, F_OK) != 0);              /* nothing half-created */
	snprintf(p, sizeof(p), "%s:lots", dir0);
	CHECK(open_engine(p, 1u << 20, &rc) == NULL && rc == -EINVAL);
	snprintf(p, sizeof(p), "%s,%s", dir0, dir0);
	CHECK(open_engine(p, 1u << 20, &rc) == NULL && rc == -EINVAL);
	CHECK(open_engine("", 1u << 20, &rc) == NULL && rc == -EINVAL);

	sw_io_fault bad;
	CHECK(sw_io_fault_parse("EIO:sideways:1", &bad) == -EINVAL);
	CHECK(sw_io_fault_parse("EWHAT:read:1", &bad) == -EINVAL);
	CHECK(sw_io_fault_parse("EIO:read:0", &bad) == -EINVAL);

	sw_io *io = open_engine(paths, 4u << 20, NULL);
	char *arena = sw_io_arena(io, NULL), *src = arena, *dst = arena + (1u << 20);
	sw_io_extent e[6];
	for (int i = 0; i < 6; i++)
		CHECK(sw_io_extent_alloc(io, 4 * STRIPE, &e[i]) == 0);   /* 2 pieces on each path */
	for (int i = 0; i < 6; i++) {
		fill(src, e[i].len, (unsigned)i);
		if (i != 5)
			put(io, e[i], src);
	}

	/* --- never written --- */
	CHECK(get(io, e[5], dst, msg) == -ENODATA);
	CHECK(strstr(msg, "never written") && strstr(msg, "f.data") && strstr(msg, "offset"));

	/* --- EIO on read --- */
	fault(io, "EIO:read:2");
	CHECK(get(io, e[0], dst, msg) == -EIO);
	CHECK(strstr(msg, "Input/output error") && strstr(msg, "f.data at offset"));
	settled(io, "EIO on read");
	fill(src, e[0].len, 0);
	CHECK(get(io, e[0], dst, msg) == 0 && !memcmp(dst, src, e[0].len));   /* one-shot */

	/* --- ENOSPC on write; the failed extent then reads as never written --- */
	fault(io, "ENOSPC:write:3");
	sw_io_req r;
	fill(src, e[1].len, 9);
	CHECK(sw_io_submit_write(io, &r, e[1], 0, e[1].len, src) == 0);
	CHECK(sw_io_wait(io, &r) == -ENOSPC);
	CHECK(strstr(sw_io_req_error(&r), "No space left") && strstr(sw_io_req_error(&r), "write of"));
	CHECK(get(io, e[1], dst, msg) == -ENODATA);
	settled(io, "ENOSPC on write");
	put(io, e[1], src);
	CHECK(get(io, e[1], dst, msg) == 0 && !memcmp(dst, src, e[1].len));

	/* --- EAGAIN and partial transfers: re-queued, data intact; endless EAGAIN gives up --- */
	fault(io, "EAGAIN:read:1:3");
	CHECK(get(io, e[1], dst, msg) == 0 && !memcmp(dst, src, e[1].len));
	fault(io, "partial:any:1:6");
	fill(src, e[2].len, 22);
	put(io, e[2], src);
	memset(dst, 0, e[2].len);
	CHECK(get(io, e[2], dst, msg) == 0 && !memcmp(dst, src, e[2].len));
	fault(io, "EAGAIN:read:1:1000000");
	CHECK(get(io, e[2], dst, msg) == -EAGAIN && strstr(msg, "giving up"));
	fault(io, "short:read:1:1000000");
	CHECK(get(io, e[2], dst, msg) == -EIO && strstr(msg, "short read at end of file"));
	settled(io, "EAGAIN, partial and short transfers");
	sw_io_fault none = { 0 };
	CHECK(sw_io_fault_set(io, &none) == 0);

	/* --- checksum mismatch: injected, then real corruption on disk (file and offset named) --- */
	fault(io, "corrupt:read:1");
	CHECK(get(io, e[2], dst, msg) == -EBADMSG && strstr(msg, "checksum mismatch"));
	CHECK(get(io, e[2], dst, msg) == 0);
	/* e[3]'s second piece: logical stripe k = e[3].off/STRIPE + 1. */
	uint64_t k = e[3].off / STRIPE + 1;
	const char *victim = k % 2 ? f1 : f0;
	uint64_t foff = (k / 2) * STRIPE + 100;
	fd = open(victim, O_WRONLY);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "XYZ", 3, (off_t)foff) == 3);
	fsync(fd);
	close(fd);
	CHECK(get(io, e[3], dst, msg) == -EBADMSG);
	char want[500];
	snprintf(want, sizeof(want), "%s at offset %llu", victim, (unsigned long long)(foff - 100));
	CHECKF(strstr(msg, want), "message '%s' does not name '%s'", msg, want);
	settled(io, "checksum mismatches");

	/* --- short read at end of file: the file on path b is truncated behind our back --- */
	CHECK(truncate(f1, 0) == 0);
	CHECK(get(io, e[4], dst, msg) == -EIO);
	CHECK(strstr(msg, "short read at end of file") && strstr(msg, f1));

	/* --- a path vanishes --- */
	CHECK(sw_io_check_paths(io) == 0);
	CHECK(unlink(f1) == 0);
	CHECK(sw_io_check_paths(io) == -ENOENT);
	fault(io, "ENODEV:read:1:1:1");          /* the device behind path 1 is gone */
	CHECK(get(io, e[0], dst, msg) == -ENODEV);
	CHECK(strstr(msg, f1) && strstr(msg, "path vanished"));
	settled(io, "a short read and a vanished path");
	sw_io_close(io);
	/* The replaced-file case: reopen creates a new file, then it is swapped under us. */
	io = open_engine(paths, 4u << 20, NULL);
	CHECK(sw_io_check_paths(io) == 0);
	char tmp[500];
	snprintf(tmp, sizeof(tmp), "%s/new", dir1);
	fd = open(tmp, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK(rename(tmp, f1) == 0);              /* the old file stays open: a new inode */
	CHECK(sw_io_check_paths(io) == -ESTALE);
	sw_io_close(io);

	/* --- the environment hook (used by CLI-level tests) --- */
	setenv("SPILLWAY_IO_FAULT", "EIO:write:2", 1);
	io = open_engine(paths, 4u << 20, NULL);
	unsetenv("SPILLWAY_IO_FAULT");
	sw_io_extent x;
	CHECK(sw_io_extent_alloc(io, 4 * STRIPE, &x) == 0);
	CHECK(sw_io_submit_write(io, &r, x, 0, x.len, sw_io_arena(io, NULL)) == 0);
	CHECK(sw_io_wait(io, &r) == -EIO);
	sw_io_close(io);
	setenv("SPILLWAY_IO_FAULT", "nonsense", 1);
	CHECK(open_engine(paths, 4u << 20, &rc) == NULL && rc == -EINVAL);
	unsetenv("SPILLWAY_IO_FAULT");
	printf("faults: ok\n");
	return 0;
}
