/* NVMe tier: the order in which queued requests reach the drive. Urgent requests go before
 * reads, reads before writes, urgent ones in submission order, and a thread hands its ring the
 * blocks in the order it took them. The engine is held while the requests queue up, then let
 * go with one I/O thread; a fault injected into the first (or second) block prepared says which
 * request's block that was. Each request is twice the queue depth, so the failed one still has
 * blocks queued, which must be dropped for the other to run. */
#include "io/io.h"
#include "tests/check.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIECE (64u << 10)
#define LEN (8 * PIECE)   /* twice the queue depth: a failed request has blocks left to drop */

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

static sw_io_extent A, B;

/* Queues a transfer of the whole extent e: urgent or the ordinary way. */
static void queue(sw_io_req *r, sw_io_extent e, int op, int urgent)
{
	char *b = op == SW_IO_READ ? buf + LEN : buf;
	CHECK((urgent ? sw_io_submit_urgent(io, r, op, e, 0, e.len, b)
		      : op == SW_IO_READ ? sw_io_submit_read(io, r, e, 0, e.len, b)
					 : sw_io_submit_write(io, r, e, 0, e.len, b)) == 0);
}

/* Queues a transfer of A, then one of B (each urgent or not), while the engine is held; lets
 * it go with the first block prepared failing; returns whose block that was: 'a' or 'b'. */
static char first_of(int opa, int ua, int opb, int ub)
{
	sw_io_req a, b;
	fault(SW_IO_READ | SW_IO_WRITE, 1);
	sw_io_hold(io, 1);
	queue(&a, A, opa, ua);
	queue(&b, B, opb, ub);
	usleep(20000);
	CHECKF(sw_io_poll(&a) == 1 && sw_io_poll(&b) == 1, "a held engine dispatched a block");
	sw_io_hold(io, 0);
	int ra = sw_io_wait(io, &a), rb = sw_io_wait(io, &b);
	CHECKF((ra == -EIO) + (rb == -EIO) == 1 && (ra == 0 || rb == 0),
	       "one of the two fails with the injected EIO: %d, %d", ra, rb);
	no_fault();
	put(A);   /* a failed write leaves its extent unreadable: written again */
	put(B);
	return ra ? 'a' : 'b';
}

int main(void)
{
	alarm(120);   /* a failed request left in its queue would hang the engine: fail instead */
	CHECK(mkdtemp(root));
	atexit(cleanup);
	sw_io_config c = { 0 };
	c.paths = root;
	c.size = 4 * LEN;
	c.stripe = PIECE;
	c.bs = PIECE;       /* one block per piece: a failed block leaves exactly its piece unwritten */
	c.qd = 4;           /* the first batch: half an extent */
	c.threads = 1;      /* blocks are prepared in the order taken: the fault's count is that order */
	c.file_name = "order.data";
	c.quiet = 1;
	int rc = sw_io_open(&c, &io);
	CHECKF(rc == 0, "sw_io_open: %d", rc);
	CHECK(posix_memalign((void **)&buf, 4096, 2 * LEN) == 0);
	memset(buf, 0x5a, 2 * LEN);
	CHECK(sw_io_extent_alloc(io, LEN, &A) == 0 && sw_io_extent_alloc(io, LEN, &B) == 0);
	put(A);
	put(B);

	static const struct { int opa, ua, opb, ub; char first; const char *what; } cases[] = {
		{ SW_IO_WRITE, 0, SW_IO_READ, 0, 'b', "a read before a write queued ahead of it" },
		{ SW_IO_WRITE, 0, SW_IO_WRITE, 1, 'b', "an urgent write before a queued write" },
		{ SW_IO_READ, 0, SW_IO_WRITE, 1, 'b', "an urgent write before a queued read" },
		{ SW_IO_WRITE, 1, SW_IO_READ, 1, 'a', "urgent requests in submission order, either direction" },
		{ SW_IO_WRITE, 0, SW_IO_WRITE, 0, 'a', "ordinary writes in submission order (the control)" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char got = first_of(cases[i].opa, cases[i].ua, cases[i].opb, cases[i].ub);
		CHECKF(got == cases[i].first, "%s: request %c went first", cases[i].what, got);
	}

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
