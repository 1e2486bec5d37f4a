/* NVMe tier: the order in which queued requests reach the drive. Urgent requests go before
 * reads, reads before writes, urgent ones in submission order, and a thread hands its ring the
 * blocks in the order it took them. The engine is held while the requests queue up, then let
 * go with one I/O thread; a fault injected into the first (or second) block prepared says which
 * request's block that was. */
#include "io/io.h"
#include "tests/check.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIECE (64u << 10)
#define LEN (4 * PIECE)

static char root[] = "/tmp/sw-io-order.XXXXXX";
static sw_io *io;
static char *buf;

static void cleanup(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd)) {}
}

/* Writes the whole extent and waits: every piece written (readable) again. */
static void put(sw_io_extent e)
{
	sw_io_req r;
	CHECK(sw_io_submit_write(io, &r, e, 0, e.len, buf) == 0);
	CHECKF(sw_io_wait(io, &r) == 0, "%s", sw_io_req_error(&r));
}

/* The nth block prepared (of kind op) fails with EIO. */
static void fault(int op, int nth)
{
	sw_io_fault f = { .kind = SW_IO_FAULT_ERRNO, .op = op, .err = EIO, .path = -1, .nth = (uint64_t)nth };
	CHECK(sw_io_fault_set(io, &f) == 0);
}

static void no_fault(void)
{
	sw_io_fault f = { 0 };
	CHECK(sw_io_fault_set(io, &f) == 0);
}

/* Submits a, then b (each urgent or not), while the engine is held; lets it go; returns which
 * failed: 'a', 'b', or 0 when neither (both are checked done). */
static char first_of(sw_io_extent ea, int opa, int ua, sw_io_extent eb, int opb, int ub)
{
	sw_io_req a, b;
	sw_io_hold(io, 1);
	CHECK((ua ? sw_io_submit_urgent(io, &a, opa, ea, 0, ea.len, buf)
		  : opa == SW_IO_READ ? sw_io_submit_read(io, &a, ea, 0, ea.len, buf + LEN)
				      : sw_io_submit_write(io, &a, ea, 0, ea.len, buf)) == 0);
	CHECK((ub ? sw_io_submit_urgent(io, &b, opb, eb, 0, eb.len, opb == SW_IO_READ ? buf + LEN : buf)
		  : opb == SW_IO_READ ? sw_io_submit_read(io, &b, eb, 0, eb.len, buf + LEN)
				      : sw_io_submit_write(io, &b, eb, 0, eb.len, buf)) == 0);
	usleep(20000);
	CHECKF(sw_io_poll(&a) == 1 && sw_io_poll(&b) == 1, "a held engine dispatched a block");
	sw_io_hold(io, 0);
	int ra = sw_io_wait(io, &a), rb = sw_io_wait(io, &b);
	CHECKF((ra == -EIO) + (rb == -EIO) == 1 && (ra == 0 || rb == 0),
	       "one of the two fails with the injected EIO: %d, %d", ra, rb);
	no_fault();
	return ra ? 'a' : 'b';
}

int main(void)
{
	CHECK(mkdtemp(root));
	atexit(cleanup);
	sw_io_config c = { 0 };
	c.paths = root;
	c.size = 4 * LEN;
	c.stripe = PIECE;
	c.bs = PIECE;       /* one block per piece: a failed block leaves exactly its piece unwritten */
	c.qd = 4;           /* a whole extent is one batch of the one thread */
	c.threads = 1;      /* blocks are prepared in the order taken: the fault's count is that order */
	c.file_name = "order.data";
	c.quiet = 1;
	int rc = sw_io_open(&c, &io);
	CHECKF(rc == 0, "sw_io_open: %d", rc);
	CHECK(posix_memalign((void **)&buf, 4096, 2 * LEN) == 0);
	memset(buf, 0x5a, 2 * LEN);
	sw_io_extent A, B;
	CHECK(sw_io_extent_alloc(io, LEN, &A) == 0 && sw_io_extent_alloc(io, LEN, &B) == 0);
	put(A);
	put(B);

	/* reads before writes: a write queued first still goes after a read queued behind it */
	fault(SW_IO_READ | SW_IO_WRITE, 1);
	CHECK(first_of(A, SW_IO_WRITE, 0, B, SW_IO_READ, 0) == 'b');
	put(A);
	/* an urgent write before a queued write, and before a queued read */
	fault(SW_IO_WRITE, 1);
	CHECK(first_of(A, SW_IO_WRITE, 0, B, SW_IO_WRITE, 1) == 'b');
	put(B);
	fault(SW_IO_READ | SW_IO_WRITE, 1);
	CHECK(first_of(A, SW_IO_READ, 0, B, SW_IO_WRITE, 1) == 'b');
	put(B);
	/* urgent requests in submission order, whatever their direction */
	fault(SW_IO_READ | SW_IO_WRITE, 1);
	CHECK(first_of(A, SW_IO_WRITE, 1, B, SW_IO_READ, 1) == 'a');
	put(A);
	/* without the urgent queue the first-queued write is the first: the control */
	fault(SW_IO_WRITE, 1);
	CHECK(first_of(A, SW_IO_WRITE, 0, B, SW_IO_WRITE, 0) == 'a');
	put(A);

	/* in one batch the ring gets the blocks in the order taken: the second block prepared is
	 * the extent's second piece (the request's message names the file offset of the block that
	 * failed; one path, so the file offset is the logical one) */
	fault(SW_IO_WRITE, 2);
	sw_io_req r;
	sw_io_hold(io, 1);
	CHECK(sw_io_submit_write(io, &r, A, 0, LEN, buf) == 0);
	sw_io_hold(io, 0);
	CHECK(sw_io_wait(io, &r) == -EIO);
	no_fault();
	char at[64];
	snprintf(at, sizeof(at), "at offset %llu (", (unsigned long long)(A.off + PIECE));
	CHECKF(strstr(sw_io_req_error(&r), at), "the second block prepared: %s (want %s)",
	       sw_io_req_error(&r), at);
	put(A);

	/* a kind that is neither read nor write is refused, nothing queued */
	CHECK(sw_io_submit_urgent(io, &r, 3, A, 0, LEN, buf) == -EINVAL);
	CHECK(sw_io_poll(&r) == -EINVAL && strstr(sw_io_req_error(&r), "kind"));
	/* a hold left on is released by close (which waits for what is queued) */
	put(A);
	sw_io_hold(io, 1);
	CHECK(sw_io_submit_read(io, &r, A, 0, LEN, buf + LEN) == 0);
	sw_io_close(io);
	CHECK(sw_io_poll(&r) == 0);
	free(buf);
	printf("test_io_order: ok\n");
	return 0;
}
