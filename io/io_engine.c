/* The io_uring engine: files, striping, extents, checksums, I/O threads, faults.
 * io/io.h documents the contract; docs/io.md the design. */
#include "io/io.h"
#include "io/io_internal.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#define EXT_CHUNK     1024u
#define EXT_MAXCHUNKS 16384u

struct ext_rec {
	uint64_t off, len;
	uint32_t npieces;
	uint64_t *sums;
	uint8_t *written;
};

/* A request's piece: bytes still to move, and for a write its checksum. A write's checksum is
 * computed while the drives move it: the I/O thread that dispatches the piece's first block
 * hashes the whole piece right after submitting its ring (pre_done), so the write
 * completes when its last block does. Without that, the last pieces' hashing came after the
 * transfer: about 5 ms a 32 MiB piece, during which a caller waiting for the write to reuse its
 * buffer left the disk idle (the optimizer's chunk edges, docs/io.md). The buffer may not
 * change from submission to completion, so hashing it early gives the same sum. */
struct sw_io_piece {
	uint64_t sum;
	uint32_t left;
	uint8_t pre_done;
};

/* One transfer in flight (an SQE), or waiting in a thread's retry list. */
struct blk {
	sw_io_req *req;
	char *buf;               /* where the (remaining) transfer starts */
	uint64_t file_off;       /* file offset of buf */
	uint32_t len;            /* bytes still to move */
	uint32_t full_len;       /* bytes of the block when dispatched (piece accounting) */
	uint32_t piece;          /* index in req's pieces */
	int path, buf_index, retries, fault, fault_err, op, res;
	int pre;                 /* the first block of a write's piece: its thread hashes the piece */
	char *buf0;              /* block start (corruption injection) */
	struct blk *next;
	struct blk *pre_next;    /* the thread's list of pieces to hash ahead (preq) */
};

struct io_thread {
	sw_io *io;
	pthread_t tid;
	int started, ring_ok, files_reg, bufs_reg;
	struct io_uring ring;
	struct blk *blks, *free, *retry, *hashq;   /* hashq: pieces complete, checksum due */
	struct blk *preq;        /* dispatched first blocks of write pieces: checksum them ahead */
	int inflight;
};

struct sw_io {
	sw_io_config cfg;
	int npaths, direct;
	char *dirs[SW_IO_MAX_PATHS], *files[SW_IO_MAX_PATHS];
	int fds[SW_IO_MAX_PATHS];
	dev_t dev[SW_IO_MAX_PATHS];
	ino_t ino[SW_IO_MAX_PATHS];
	uint64_t per_path, capacity, next;
	struct ext_rec **ext;    /* EXT_MAXCHUNKS chunks of EXT_CHUNK records */
	uint32_t next_ext;
	char *arena;
	uint64_t arena_size;
	int arena_node, arena_reg;
	pthread_mutex_t mu;
	pthread_cond_t work_cv, done_cv;
	/* the queues of requests with blocks left to dispatch: urgent ones, reads, writes */
	sw_io_req *uhead, *utail, *rhead, *rtail, *whead, *wtail;
	uint64_t outstanding;
	int stop, nthreads, held;
	struct io_thread *th;
	sw_io_fault fault;
	uint64_t fault_seen;
	uint64_t submitted[2];   /* bytes of accepted read and write requests (sw_io_bytes) */
	sw_io_counters cnt;      /* what the drives were given (sw_io_counters_read); under mu,
				  * cnt.t: when the state last changed */
};

static struct ext_rec *ext_get(const sw_io *io, uint32_t id)
{
	if (id >= io->next_ext)
		return NULL;
	return &io->ext[id / EXT_CHUNK][id % EXT_CHUNK];
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

/* Logical offset -> path and file offset. */
static void map_logical(const sw_io *io, uint64_t lo, int *path, uint64_t *file_off)
{
	uint64_t s = io->cfg.stripe, k = lo / s;
	*path = (int)(k % (uint64_t)io->npaths);
	*file_off = (k / (uint64_t)io->npaths) * s + lo % s;
}

/* ---- path list ---------------------------------------------------------------------------- */

int sw_io_paths_parse(const char *paths, char **dirs, uint64_t *caps, int max)
{
	if (!paths || !*paths) {
		sw_error("io: no --nvme path given; pass one or more directories, e.g. --nvme /mnt/a,/mnt/b");
		return -EINVAL;
	}
	char *list = strdup(paths), *save = NULL;
	if (!list)
		return -ENOMEM;
	int n = 0, rc = 0;
	for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (n == max) {
			sw_error("io: --nvme lists more than %d paths; use at most %d", max, max);
			rc = -EINVAL;
			break;
		}
		char *colon = strrchr(p, ':');
		uint64_t cap = 0;
		if (colon) {
			*colon = 0;
			if (sw_parse_size(colon + 1, &cap) || cap == 0) {
				sw_error("io: --nvme %s: capacity '%s' is not a size; write e.g. %s:500GiB",
					 p, colon + 1, p);
				rc = -EINVAL;
				break;
			}
		}
		if (!*p) {
			sw_error("io: --nvme '%s' has an empty path; write directories separated by commas", paths);
			rc = -EINVAL;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (!strcmp(dirs[i], p)) {
				sw_error("io: --nvme lists %s twice; list each directory once", p);
				rc = -EINVAL;
			}
		}
		if (rc)
			break;
		dirs[n] = strdup(p);
		caps[n] = cap;
		if (!dirs[n]) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	if (!rc && n == 0) {
		sw_error("io: --nvme '%s' names no directory", paths);
		rc = -EINVAL;
	}
	free(list);
	if (rc) {
		for (int i = 0; i < n; i++) {
			free(dirs[i]);
			dirs[i] = NULL;
		}
		return rc;
	}
	return n;
}

/* ---- faults ------------------------------------------------------------------------------- */

int sw_io_fault_parse(const char *s, sw_io_fault *f)
{
	static const struct { const char *name; int err; } errs[] = {
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EAGAIN", EAGAIN }, { "ENODEV", ENODEV },
		{ "ENXIO", ENXIO }, { "EROFS", EROFS },
	};
	char kind[16], op[16];
	unsigned long long nth = 0, count = 1;
	int path = -1;
	memset(f, 0, sizeof(*f));
	int n = sscanf(s, "%15[^:]:%15[^:]:%llu:%llu:%d", kind, op, &nth, &count, &path);
	if (n < 3 || nth == 0)
		return -EINVAL;
	if (!strcmp(op, "read"))
		f->op = SW_IO_READ;
	else if (!strcmp(op, "write"))
		f->op = SW_IO_WRITE;
	else if (!strcmp(op, "any"))
		f->op = SW_IO_READ | SW_IO_WRITE;
	else
		return -EINVAL;
	if (!strcmp(kind, "short"))
		f->kind = SW_IO_FAULT_SHORT;
	else if (!strcmp(kind, "partial"))
		f->kind = SW_IO_FAULT_PARTIAL;
	else if (!strcmp(kind, "corrupt"))
		f->kind = SW_IO_FAULT_CORRUPT;
	for (size_t i = 0; !f->kind && i < sizeof(errs) / sizeof(errs[0]); i++) {
		if (!strcmp(kind, errs[i].name)) {
			f->kind = SW_IO_FAULT_ERRNO;
			f->err = errs[i].err;
		}
	}
	if (!f->kind)
		return -EINVAL;
	f->nth = nth;
	f->count = count;
	f->path = path;
	return 0;
}

int sw_io_fault_set(sw_io *io, const sw_io_fault *f)
{
	if (f->kind < SW_IO_FAULT_NONE || f->kind > SW_IO_FAULT_CORRUPT)
		return -EINVAL;
	if (f->kind != SW_IO_FAULT_NONE && (f->nth == 0 || !(f->op & (SW_IO_READ | SW_IO_WRITE))))
		return -EINVAL;
	if (f->kind == SW_IO_FAULT_ERRNO && f->err <= 0)
		return -EINVAL;
	pthread_mutex_lock(&io->mu);
	io->fault = *f;
	if (!io->fault.count)
		io->fault.count = 1;
	io->fault_seen = 0;
	pthread_mutex_unlock(&io->mu);
	return 0;
}

/* ---- request bookkeeping (io->mu held) ---------------------------------------------------- */

/* The queue request r waits in (sw_io_req's urgent and op). */
static sw_io_req **queue_head(sw_io *io, const sw_io_req *r, sw_io_req ***tail)
{
	if (r->urgent) {
		*tail = &io->utail;
		return &io->uhead;
	}
	*tail = r->op == SW_IO_READ ? &io->rtail : &io->wtail;
	return r->op == SW_IO_READ ? &io->rhead : &io->whead;
}

static void queue_remove(sw_io *io, sw_io_req *r)
{
	sw_io_req **tail, **head = queue_head(io, r, &tail);
	sw_io_req *prev = NULL;
	for (sw_io_req *q = *head; q; prev = q, q = q->next) {
		if (q != r)
			continue;
		if (prev)
			prev->next = q->next;
		else
			*head = q->next;
		if (*tail == q)
			*tail = prev;
		q->next = NULL;
		return;
	}
}

/* Records the first error of a request and stops dispatching the rest of it. */
static void req_fail_locked(sw_io *io, sw_io_req *r, int err, const char *msg)
{
	if (r->status)
		return;
	r->status = err;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
	if (r->cursor < r->len) {
		r->cursor = r->len;
		queue_remove(io, r);
	}
}

static void req_finish_locked(sw_io *io, sw_io_req *r)
{
	if (r->status && r->op == SW_IO_WRITE) {
		struct ext_rec *e = ext_get(io, r->ext.id);
		uint32_t j0 = (uint32_t)(r->first_piece - e->off / io->cfg.stripe);
		for (uint32_t p = 0; p < r->npieces; p++)
			e->written[j0 + p] = 0;
	}
	free(r->piece);
	r->piece = NULL;
	io->outstanding--;
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&io->done_cv);
}

/* ---- counters ----------------------------------------------------------------------------- */

/* Which directions have blocks in flight: 0 none, 1 reads, 2 writes, 3 both. */
static int cnt_state(const sw_io_counters *c)
{
	return (c->inflight[0] > 0) | (c->inflight[1] > 0) << 1;
}

/* Charges the time since the last change to the state it was in (under mu). */
static void cnt_tick_locked(sw_io *io)
{
	double now = sw_now();
	io->cnt.state_s[cnt_state(&io->cnt)] += now - io->cnt.t;
	io->cnt.t = now;
}

/* A block of direction d (0 read, 1 write) enters the drives' queues (under mu). */
static void cnt_dispatch_locked(sw_io *io, int d)
{
	cnt_tick_locked(io);
	io->cnt.inflight[d]++;
}

/* It completed, having moved `bytes` (0 when it failed): charged to the state it completed in
 * (under mu). */
static void cnt_complete_locked(sw_io *io, int d, uint64_t bytes)
{
	cnt_tick_locked(io);
	io->cnt.bytes[d] += bytes;
	io->cnt.state_bytes[cnt_state(&io->cnt)][d] += bytes;
	io->cnt.inflight[d]--;
}

void sw_io_counters_read(sw_io *io, sw_io_counters *c)
{
	pthread_mutex_lock(&io->mu);
	cnt_tick_locked(io);
	*c = io->cnt;
	pthread_mutex_unlock(&io->mu);
}

void sw_io_counters_diff(const sw_io_counters *b, const sw_io_counters *a, sw_io_counters *d)
{
	*d = *b;
	d->t = b->t - a->t;
	for (int k = 0; k < 2; k++) {
		d->bytes[k] = b->bytes[k] - a->bytes[k];
		d->sums[k] = b->sums[k] - a->sums[k];
	}
	for (int s = 0; s < 4; s++) {
		d->state_s[s] = b->state_s[s] - a->state_s[s];
		for (int k = 0; k < 2; k++)
			d->state_bytes[s][k] = b->state_bytes[s][k] - a->state_bytes[s][k];
	}
}

/* The logical range [*lo, *hi) of piece p of request r. */
static void piece_span(const sw_io *io, const sw_io_req *r, uint32_t p, uint64_t *lo, uint64_t *hi)
{
	uint64_t s = io->cfg.stripe, start = r->ext.off + r->off, end = start + r->len;
	uint64_t plo = (r->first_piece + p) * s, phi = plo + s;
	*lo = plo > start ? plo : start;
	*hi = phi < end ? phi : end;
}

/* Takes the next block of the oldest urgent request, else of the oldest read, else of the
 * oldest write. 0 when there is none (or the engine is held). */
static int take_block(sw_io *io, struct blk *b)
{
	sw_io_req *r = io->uhead ? io->uhead : io->rhead ? io->rhead : io->whead;
	if (!r || io->held)
		return 0;
	uint64_t s = io->cfg.stripe;
	uint64_t lo = r->ext.off + r->off + r->cursor, end = r->ext.off + r->off + r->len;
	uint64_t n = (lo / s + 1) * s;
	n = (n < end ? n : end) - lo;
	if (n > io->cfg.bs)
		n = io->cfg.bs;
	b->buf = b->buf0 = r->buf + r->cursor;
	b->buf_index = -1;
	if (io->arena && b->buf >= io->arena && b->buf < io->arena + io->arena_size) {
		uint64_t rel = (uint64_t)(b->buf - io->arena), idx = rel / SW_IO_REG_PIECE;
		uint64_t room = (idx + 1) * SW_IO_REG_PIECE - rel;
		if (n > room)
			n = room;
		b->buf_index = (int)idx;
	}
	map_logical(io, lo, &b->path, &b->file_off);
	b->req = r;
	b->op = r->op;
	b->len = b->full_len = (uint32_t)n;
	b->piece = (uint32_t)(lo / s - r->first_piece);
	b->retries = 0;
	b->fault = 0;
	uint64_t plo, phi;
	piece_span(io, r, b->piece, &plo, &phi);
	b->pre = r->op == SW_IO_WRITE && !io->cfg.no_checksum && !io->cfg.sums_after && lo == plo;
	r->cursor += n;
	r->pending++;
	if (r->cursor == r->len)
		queue_remove(io, r);
	cnt_dispatch_locked(io, r->op == SW_IO_WRITE);
	return 1;
}

/* ---- I/O threads -------------------------------------------------------------------------- */

static const char *op_name(int op)
{
	return op == SW_IO_READ ? "read" : "write";
}

/* " (the data file is gone)" when the path vanished, else "". */
static const char *vanished_note(const sw_io *io, int path)
{
	struct stat st;
	if (stat(io->files[path], &st) && errno == ENOENT)
		return " (the data file is gone: the path vanished or was unmounted)";
	return "";
}

static void blk_fail(struct io_thread *th, struct blk *b, int err, const char *cause)
{
	sw_io *io = th->io;
	char msg[320];
	snprintf(msg, sizeof(msg), "io: %s of %s at offset %llu (%u bytes): %s%s", op_name(b->op),
		 io->files[b->path], (unsigned long long)b->file_off, b->len, cause,
		 vanished_note(io, b->path));
	pthread_mutex_lock(&io->mu);
	req_fail_locked(io, b->req, err, msg);
	pthread_mutex_unlock(&io->mu);
}

/* Checksums the write piece whose first block b is in flight on this thread. The piece cannot
 * complete before: its first block is reaped by this thread only after this returns. */
static void blk_prehash(struct io_thread *th, struct blk *b)
{
	sw_io *io = th->io;
	sw_io_req *r = b->req;
	uint64_t lo, hi;
	piece_span(io, r, b->piece, &lo, &hi);
	uint64_t sum = XXH3_64bits(r->buf + (lo - (r->ext.off + r->off)), hi - lo);
	pthread_mutex_lock(&io->mu);
	r->piece[b->piece].sum = sum;
	r->piece[b->piece].pre_done = 1;
	io->cnt.sums[1]++;
	pthread_mutex_unlock(&io->mu);
}

/* A block moved all its bytes (or failed: err set): piece accounting, checksum, completion. */
static void blk_finish(struct io_thread *th, struct blk *b, int last, const uint64_t *ahead);

static void blk_done(struct io_thread *th, struct blk *b, int failed)
{
	sw_io *io = th->io;
	sw_io_req *r = b->req;
	int last = 0;
	pthread_mutex_lock(&io->mu);
	cnt_complete_locked(io, b->op == SW_IO_WRITE, failed ? 0 : b->full_len);
	if (!failed && !r->status) {
		r->piece[b->piece].left -= b->full_len;
		last = r->piece[b->piece].left == 0;
	}
	int ready = last && r->piece[b->piece].pre_done;   /* a write's checksum, computed ahead */
	uint64_t ahead = ready ? r->piece[b->piece].sum : 0;
	pthread_mutex_unlock(&io->mu);
	if (ready) {
		blk_finish(th, b, 1, &ahead);
		return;
	}
	if (last) {
		/* Checksum later, after this thread has refilled its ring. */
		b->next = th->hashq;
		th->hashq = b;
		return;
	}
	blk_finish(th, b, 0, NULL);
}

/* Checksums a completed piece (last; ahead: a write's checksum computed while it was in flight,
 * read under the lock by blk_done, else NULL) and retires the block; may complete the request. */
static void blk_finish(struct io_thread *th, struct blk *b, int last, const uint64_t *ahead)
{
	sw_io *io = th->io;
	sw_io_req *r = b->req;
	uint64_t s = io->cfg.stripe;
	uint64_t sum = 0;
	struct ext_rec *e = ext_get(io, r->ext.id);
	uint32_t j = (uint32_t)(r->first_piece + b->piece - e->off / s);
	if (last) {
		uint64_t plo, phi;
		piece_span(io, r, b->piece, &plo, &phi);
		if (ahead)
			sum = *ahead;
		else if (!io->cfg.no_checksum)
			sum = XXH3_64bits(r->buf + (plo - (r->ext.off + r->off)), phi - plo);
		if (r->op == SW_IO_READ && !io->cfg.no_checksum && sum != e->sums[j]) {
			int path;
			uint64_t foff;
			map_logical(io, plo, &path, &foff);
			char msg[320];
			snprintf(msg, sizeof(msg),
				 "io: read of %s at offset %llu (%llu bytes): checksum mismatch (stored %016llx, read %016llx): the data on disk is corrupt",
				 io->files[path], (unsigned long long)foff, (unsigned long long)(phi - plo),
				 (unsigned long long)e->sums[j], (unsigned long long)sum);
			pthread_mutex_lock(&io->mu);
			req_fail_locked(io, r, -EBADMSG, msg);
			pthread_mutex_unlock(&io->mu);
		}
	}
	pthread_mutex_lock(&io->mu);
	if (last) {
		if (!ahead && !io->cfg.no_checksum)
			io->cnt.sums[0]++;
		if (r->op == SW_IO_WRITE && !r->status) {
			e->sums[j] = sum;
			e->written[j] = 1;
		}
		r->pieces_left--;
	}
	r->pending--;
	if (r->pending == 0 && r->cursor == r->len && (r->status || r->pieces_left == 0))
		req_finish_locked(io, r);
	pthread_mutex_unlock(&io->mu);
	b->next = th->free;
	th->free = b;
}

static void blk_complete(struct io_thread *th, struct blk *b, int res)
{
	int fault = b->fault;
	b->fault = 0;
	if (fault == SW_IO_FAULT_ERRNO)
		res = -b->fault_err;
	else if (fault == SW_IO_FAULT_SHORT)
		res = 0;
	if (res == -EAGAIN || res == -EINTR || (res > 0 && (uint32_t)res < b->len)) {
		if (++b->retries > SW_IO_MAX_RETRIES) {
			char cause[96];
			snprintf(cause, sizeof(cause), "still %s after %d re-queues; giving up",
				 res < 0 ? "EAGAIN" : "short", SW_IO_MAX_RETRIES);
			blk_fail(th, b, res < 0 ? res : -EIO, cause);
			blk_done(th, b, 1);
			return;
		}
		if (res > 0) {
			b->buf += res;
			b->file_off += (uint64_t)res;
			b->len -= (uint32_t)res;
		}
		b->next = th->retry;
		th->retry = b;
		return;
	}
	if (res < 0) {
		blk_fail(th, b, res, strerror(-res));
		blk_done(th, b, 1);
		return;
	}
	if (res == 0 && b->len) {
		char cause[160];
		struct stat st;
		if (fstat(th->io->fds[b->path], &st) == 0)
			snprintf(cause, sizeof(cause), "short %s at end of file (the file is %llu bytes: was it truncated?)",
				 op_name(b->op), (unsigned long long)st.st_size);
		else
			snprintf(cause, sizeof(cause), "short %s at end of file", op_name(b->op));
		blk_fail(th, b, -EIO, cause);
		blk_done(th, b, 1);
		return;
	}
	if (fault == SW_IO_FAULT_CORRUPT && b->op == SW_IO_READ)
		b->buf0[b->full_len / 2] ^= 0x5a;
	blk_done(th, b, 0);
}

/* Decides whether the fault plan hits this transfer (re-queued ones count again). */
static void fault_decide(sw_io *io, struct blk *b)
{
	b->fault = 0;
	if (!__atomic_load_n(&io->fault.kind, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&io->mu);
	const sw_io_fault *f = &io->fault;
	if (f->kind && (b->op & f->op) && (f->path < 0 || f->path == b->path)) {
		io->fault_seen++;
		if (io->fault_seen >= f->nth && io->fault_seen < f->nth + f->count) {
			b->fault = f->kind;
			b->fault_err = f->err;
		}
	}
	pthread_mutex_unlock(&io->mu);
}

static void blk_prep(struct io_thread *th, struct blk *b)
{
	struct io_uring_sqe *sqe;
	fault_decide(th->io, b);
	while (!(sqe = io_uring_get_sqe(&th->ring)))
		io_uring_submit(&th->ring);
	uint32_t len = b->len;
	if (b->fault == SW_IO_FAULT_PARTIAL && len > SW_IO_ALIGN) {
		len = len / 2 / SW_IO_ALIGN * SW_IO_ALIGN;
		b->fault = 0;
	}
	int fd = th->files_reg ? b->path : th->io->fds[b->path];
	if (b->fault == SW_IO_FAULT_ERRNO || b->fault == SW_IO_FAULT_SHORT)
		io_uring_prep_nop(sqe);
	else if (b->op == SW_IO_READ && th->bufs_reg && b->buf_index >= 0)
		io_uring_prep_read_fixed(sqe, fd, b->buf, len, b->file_off, b->buf_index);
	else if (b->op == SW_IO_READ)
		io_uring_prep_read(sqe, fd, b->buf, len, b->file_off);
	else if (th->bufs_reg && b->buf_index >= 0)
		io_uring_prep_write_fixed(sqe, fd, b->buf, len, b->file_off, b->buf_index);
	else
		io_uring_prep_write(sqe, fd, b->buf, len, b->file_off);
	if (th->files_reg)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, b);
	th->inflight++;
}

static void *thread_main(void *arg)
{
	struct io_thread *th = arg;
	sw_io *io = th->io;
	for (;;) {
		struct blk *batch = NULL, **last = &batch;
		pthread_mutex_lock(&io->mu);
		while (th->free) {   /* in the order taken: the ring gets the oldest block first */
			struct blk *b = th->free;
			if (!take_block(io, b))
				break;
			th->free = b->next;
			b->next = NULL;
			*last = b;
			last = &b->next;
			if (b->pre) {
				b->pre_next = th->preq;
				th->preq = b;
			}
		}
		if (!batch && !th->retry && !th->hashq && !th->preq && th->inflight == 0) {
			if (io->stop) {
				pthread_mutex_unlock(&io->mu);
				break;
			}
			pthread_cond_wait(&io->work_cv, &io->mu);
			pthread_mutex_unlock(&io->mu);
			continue;
		}
		pthread_mutex_unlock(&io->mu);
		while (th->retry) {
			struct blk *b = th->retry;
			th->retry = b->next;
			blk_prep(th, b);
		}
		while (batch) {
			struct blk *b = batch;
			batch = b->next;
			blk_prep(th, b);
		}
		int rc;
		if (th->hashq || th->preq) {
			/* The ring is full again: checksum the pieces that completed meanwhile (a
			 * caller may wait for them), then the write pieces just dispatched, then go
			 * round once more to refill the slots they free before waiting. */
			rc = io_uring_submit(&th->ring);
			if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
				sw_die("io: io_uring_submit failed: %s", strerror(-rc));
			while (th->hashq) {
				struct blk *b = th->hashq;
				th->hashq = b->next;
				blk_finish(th, b, 1, NULL);
			}
			while (th->preq) {
				struct blk *b = th->preq;
				th->preq = b->pre_next;
				blk_prehash(th, b);
			}
			continue;
		}
		rc = io_uring_submit_and_wait(&th->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			sw_die("io: io_uring_submit_and_wait failed: %s", strerror(-rc));
		/* Reap every ready CQE in one pass, then handle them (handling may re-queue). */
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		struct blk *done = NULL, **tail = &done;
		io_uring_for_each_cqe(&th->ring, head, cqe) {
			struct blk *b = io_uring_cqe_get_data(cqe);
			b->res = cqe->res;
			b->next = NULL;
			*tail = b;
			tail = &b->next;
			n++;
		}
		io_uring_cq_advance(&th->ring, n);
		th->inflight -= (int)n;
		while (done) {
			struct blk *b = done;
			done = b->next;
			b->next = NULL;
			blk_complete(th, b, b->res);
		}
	}
	return NULL;
}

/* ---- open / close ------------------------------------------------------------------------- */

static int open_path(sw_io *io, int i, uint64_t cap)
{
	char need_s[32], free_s[32], short_s[32];
	struct stat st;
	const char *dir = io->dirs[i];
	if (stat(dir, &st)) {
		int e = errno;
		sw_error("io: --nvme path %s: %s; create the directory or fix the path", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		sw_error("io: --nvme path %s is not a directory; pass a directory on the drive", dir);
		return -ENOTDIR;
	}
	if (cap && cap < io->per_path) {
		sw_error("io: --nvme path %s: capacity %s is below its share of the stripe set (%s); raise the cap or add paths",
			 dir, sw_fmt_size(cap, free_s, sizeof(free_s)),
			 sw_fmt_size(io->per_path, need_s, sizeof(need_s)));
		return -ENOSPC;
	}
	size_t flen = strlen(dir) + strlen(io->cfg.file_name) + 2;
	io->files[i] = malloc(flen);
	if (!io->files[i])
		return -ENOMEM;
	snprintf(io->files[i], flen, "%s/%s", dir, io->cfg.file_name);
	const char *file = io->files[i];

	uint64_t have = 0;
	int existed = stat(file, &st) == 0;
	if (existed)
		have = (uint64_t)st.st_blocks * 512;
	struct statvfs vfs;
	if (statvfs(dir, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		uint64_t need = io->per_path > have ? io->per_path - have : 0;
		if (need > avail) {
			sw_error("io: --nvme path %s: %s needs %s more but only %s is free (short by %s); free space, lower the size, cap it (%s:SIZE) or add paths",
				 dir, io->cfg.file_name, sw_fmt_size(need, need_s, sizeof(need_s)),
				 sw_fmt_size(avail, free_s, sizeof(free_s)),
				 sw_fmt_size(need - avail, short_s, sizeof(short_s)), dir);
			return -ENOSPC;
		}
	}
	int flags = O_RDWR | O_CREAT | O_CLOEXEC;
	int fd = -1;
	if (io->direct) {
		fd = open(file, flags | O_DIRECT, 0644);
		if (fd < 0 && errno == EINVAL) {
			sw_warn("io: %s refuses O_DIRECT; using buffered I/O on this path (page cache: slower, and bench numbers are not drive numbers)",
				dir);
		}
	}
	if (fd < 0)
		fd = open(file, flags, 0644);
	if (fd < 0) {
		int e = errno;
		sw_error("io: cannot open %s: %s; check the directory's permissions", file, strerror(e));
		return -e;
	}
	io->fds[i] = fd;
	if (fallocate(fd, 0, 0, (off_t)io->per_path)) {
		int e = errno;
		if (e == EOPNOTSUPP) {
			if (ftruncate(fd, (off_t)io->per_path) == 0) {
				sw_warn("io: %s cannot preallocate (fallocate unsupported); the file is sparse and a full disk may surface mid-run",
					dir);
				goto ok;
			}
			e = errno;
		}
		uint64_t avail = statvfs(dir, &vfs) == 0 ? (uint64_t)vfs.f_bavail * vfs.f_frsize : 0;
		if (e == ENOSPC)
			sw_error("io: --nvme path %s: cannot preallocate %s for %s (%s free); free space, lower the size or add paths",
				 dir, sw_fmt_size(io->per_path, need_s, sizeof(need_s)), io->cfg.file_name,
				 sw_fmt_size(avail, free_s, sizeof(free_s)));
		else
			sw_error("io: cannot preallocate %s (%s bytes): %s", file,
				 sw_fmt_size(io->per_path, need_s, sizeof(need_s)), strerror(e));
		if (!existed)
			unlink(file);
		return -e;
	}
ok:
	if (fstat(fd, &st))
		return -errno;
	io->dev[i] = st.st_dev;
	io->ino[i] = st.st_ino;
	return 0;
}

static int thread_start(sw_io *io, struct io_thread *th)
{
	th->io = io;
	th->blks = calloc((size_t)io->cfg.qd, sizeof(struct blk));
	if (!th->blks)
		return -ENOMEM;
	for (int i = 0; i < io->cfg.qd; i++) {
		th->blks[i].next = th->free;
		th->free = &th->blks[i];
	}
	int rc = io_uring_queue_init((unsigned)io->cfg.qd, &th->ring, 0);
	if (rc) {
		sw_error("io: cannot create an io_uring with %d entries: %s%s", io->cfg.qd, strerror(-rc),
			 rc == -EPERM ? "; io_uring is disabled here (sysctl kernel.io_uring_disabled)" : "");
		return rc;
	}
	th->ring_ok = 1;
	th->files_reg = io_uring_register_files(&th->ring, io->fds, (unsigned)io->npaths) == 0;
	if (io->arena) {
		int nv = (int)((io->arena_size + SW_IO_REG_PIECE - 1) / SW_IO_REG_PIECE);
		struct iovec iov[nv];
		for (int i = 0; i < nv; i++) {
			uint64_t o = (uint64_t)i * SW_IO_REG_PIECE, n = io->arena_size - o;
			iov[i].iov_base = io->arena + o;
			iov[i].iov_len = n < SW_IO_REG_PIECE ? n : SW_IO_REG_PIECE;
		}
		rc = io_uring_register_buffers(&th->ring, iov, (unsigned)nv);
		th->bufs_reg = rc == 0;
		if (rc && io->arena_reg) {
			char sz[32], lim[32];
			uint64_t l = sw_io_memlock_raise();
			sw_warn("io: registering the %s buffer arena with io_uring failed (%s); the locked-memory limit is %s: raise it (ulimit -l unlimited; LimitMEMLOCK=infinity for a systemd service; memlock in /etc/security/limits.conf). Continuing with unregistered buffers (a little more CPU per transfer)",
				sw_fmt_size(io->arena_size, sz, sizeof(sz)), strerror(-rc),
				l == UINT64_MAX ? "unlimited" : sw_fmt_size(l, lim, sizeof(lim)));
			io->arena_reg = 0;
		}
	}
	rc = pthread_create(&th->tid, NULL, thread_main, th);
	if (rc)
		return -rc;
	th->started = 1;
	return 0;
}

static int check_config(sw_io_config *c)
{
	if (!c->file_name)
		c->file_name = "spillway.data";
	if (!c->stripe)
		c->stripe = 1u << 20;
	if (!c->bs)
		c->bs = 1u << 20;
	if (!c->qd)
		c->qd = 32;
	if (!c->threads)
		c->threads = 2;
	if (!c->size) {
		sw_error("io: the NVMe tier needs a size > 0");
		return -EINVAL;
	}
	if (c->stripe % SW_IO_ALIGN || c->stripe > (1ull << 30)) {
		sw_error("io: stripe unit %llu is not a multiple of 4 KiB up to 1 GiB; use e.g. --io-stripe 1MiB",
			 (unsigned long long)c->stripe);
		return -EINVAL;
	}
	if (c->bs % SW_IO_ALIGN) {
		sw_error("io: block size %llu is not a multiple of 4 KiB; use e.g. --io-bs 1MiB",
			 (unsigned long long)c->bs);
		return -EINVAL;
	}
	if (c->bs > c->stripe)
		c->bs = c->stripe;
	if (c->qd < 1 || c->qd > 4096) {
		sw_error("io: queue depth %d is outside 1..4096; use e.g. --io-qd 32", c->qd);
		return -EINVAL;
	}
	if (c->threads < 1 || c->threads > 64) {
		sw_error("io: %d I/O threads is outside 1..64; use e.g. --io-threads 2", c->threads);
		return -EINVAL;
	}
	if (strchr(c->file_name, '/')) {
		sw_error("io: data file name '%s' must not contain '/'", c->file_name);
		return -EINVAL;
	}
	return 0;
}

int sw_io_open(const sw_io_config *cfg, sw_io **out)
{
	*out = NULL;
	sw_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->cfg = *cfg;
	pthread_mutex_init(&io->mu, NULL);
	io->cnt.t = sw_now();
	pthread_cond_init(&io->work_cv, NULL);
	pthread_cond_init(&io->done_cv, NULL);
	for (int i = 0; i < SW_IO_MAX_PATHS; i++)
		io->fds[i] = -1;
	io->arena_node = -1;
	int rc = check_config(&io->cfg);
	if (rc)
		goto err_close;
	uint64_t caps[SW_IO_MAX_PATHS];
	rc = sw_io_paths_parse(cfg->paths, io->dirs, caps, SW_IO_MAX_PATHS);
	if (rc < 0)
		goto err_close;
	io->npaths = rc;
	io->capacity = sw_io_files_bytes(io->cfg.size, io->npaths, io->cfg.stripe);
	io->per_path = io->capacity / (uint64_t)io->npaths;
	io->direct = !io->cfg.buffered;
	for (int i = 0; i < io->npaths; i++) {
		rc = open_path(io, i, caps[i]);
		if (rc)
			goto err_close;
	}
	io->ext = calloc(EXT_MAXCHUNKS, sizeof(*io->ext));
	if (!io->ext) {
		rc = -ENOMEM;
		goto err_close;
	}
	if (io->cfg.arena_bytes) {
		sw_io_memlock_raise();
		rc = sw_io_arena_map(io->cfg.arena_bytes, io->cfg.numa_bind, io->cfg.numa_node,
				     io->cfg.quiet, &io->arena, &io->arena_size, &io->arena_node);
		if (rc)
			goto err_close;
		io->arena_reg = 1;
	}
	const char *ahead = getenv("SW_IO_SUMS_AHEAD");
	if (ahead && !strcmp(ahead, "0"))
		io->cfg.sums_after = 1;
	const char *env = getenv("SPILLWAY_IO_FAULT");
	if (env && *env) {
		sw_io_fault f;
		if (sw_io_fault_parse(env, &f)) {
			sw_error("io: SPILLWAY_IO_FAULT='%s' is not KIND:OP:NTH[:COUNT[:PATH]] (e.g. EIO:read:3)", env);
			rc = -EINVAL;
			goto err_close;
		}
		sw_io_fault_set(io, &f);
		sw_warn("io: fault injection active (SPILLWAY_IO_FAULT=%s)", env);
	}
	io->th = calloc((size_t)io->cfg.threads, sizeof(*io->th));
	if (!io->th) {
		rc = -ENOMEM;
		goto err_close;
	}
	io->nthreads = io->cfg.threads;
	for (int i = 0; i < io->nthreads; i++) {
		rc = thread_start(io, &io->th[i]);
		if (rc)
			goto err_close;
	}
	if (!io->cfg.quiet) {
		char a[32], b[32], c[32];
		sw_info("io: %d path(s) x %s, stripe %s, bs %s, qd %d, %d thread(s)%s%s",
			io->npaths, sw_fmt_size(io->per_path, a, sizeof(a)),
			sw_fmt_size(io->cfg.stripe, b, sizeof(b)), sw_fmt_size(io->cfg.bs, c, sizeof(c)),
			io->cfg.qd, io->nthreads, io->direct ? ", O_DIRECT" : ", buffered",
			io->arena ? (io->arena_reg ? ", arena registered" : ", arena unregistered") : "");
	}
	*out = io;
	return 0;
err_close:
	sw_io_close(io);
	return rc;
}

void sw_io_close(sw_io *io)
{
	if (!io)
		return;
	pthread_mutex_lock(&io->mu);
	io->held = 0;
	pthread_cond_broadcast(&io->work_cv);
	while (io->outstanding && io->nthreads)
		pthread_cond_wait(&io->done_cv, &io->mu);
	io->stop = 1;
	pthread_cond_broadcast(&io->work_cv);
	pthread_mutex_unlock(&io->mu);
	for (int i = 0; io->th && i < io->nthreads; i++) {
		struct io_thread *th = &io->th[i];
		if (th->started)
			pthread_join(th->tid, NULL);
		if (th->ring_ok)
			io_uring_queue_exit(&th->ring);
		free(th->blks);
	}
	free(io->th);
	sw_io_arena_unmap(io->arena, io->arena_size);
	for (int i = 0; i < SW_IO_MAX_PATHS; i++) {
		if (io->fds[i] >= 0)
			close(io->fds[i]);
		free(io->dirs[i]);
		free(io->files[i]);
	}
	for (uint32_t id = 0; id < io->next_ext; id++) {
		struct ext_rec *e = ext_get(io, id);
		free(e->sums);
		free(e->written);
	}
	for (uint32_t c = 0; io->ext && c < EXT_MAXCHUNKS; c++)
		free(io->ext[c]);
	free(io->ext);
	pthread_mutex_destroy(&io->mu);
	pthread_cond_destroy(&io->work_cv);
	pthread_cond_destroy(&io->done_cv);
	free(io);
}

/* ---- accessors ---------------------------------------------------------------------------- */

const sw_io_config *sw_io_settings(const sw_io *io) { return &io->cfg; }
int sw_io_arena_registered(const sw_io *io) { return io->arena && io->arena_reg; }
int sw_io_arena_node(const sw_io *io) { return io->arena_node; }
int sw_io_npaths(const sw_io *io) { return io->npaths; }
uint64_t sw_io_capacity(const sw_io *io) { return io->capacity; }
uint64_t sw_io_allocated(const sw_io *io) { return io->next; }

void *sw_io_arena(const sw_io *io, uint64_t *size)
{
	if (size)
		*size = io->arena_size;
	return io->arena;
}

const char *sw_io_path_file(const sw_io *io, int i)
{
	return i >= 0 && i < io->npaths ? io->files[i] : NULL;
}

const char *sw_io_req_error(const sw_io_req *req)
{
	return req->status ? req->msg : "";
}

int sw_io_check_paths(sw_io *io)
{
	for (int i = 0; i < io->npaths; i++) {
		struct stat st;
		if (stat(io->files[i], &st)) {
			int e = errno;
			sw_error("io: --nvme path %s: the data file %s is gone (%s): the path vanished or was unmounted; restore it and resume",
				 io->dirs[i], io->files[i], strerror(e));
			return e == ENOENT || e == ENOTDIR ? -ENOENT : -e;
		}
		if (st.st_dev != io->dev[i] || st.st_ino != io->ino[i]) {
			sw_error("io: --nvme path %s: %s was replaced by another file since it was opened; the run's state is not there any more",
				 io->dirs[i], io->files[i]);
			return -ESTALE;
		}
	}
	return 0;
}

/* ---- extents ------------------------------------------------------------------------------ */

uint64_t sw_io_extent_place(uint64_t at, uint64_t len, uint64_t stripe, uint64_t *next)
{
	uint64_t n = round_up(len, SW_IO_ALIGN);
	if (n >= stripe || at / stripe != (at + n - 1) / stripe)
		at = round_up(at, stripe);
	*next = at + n;
	return at;
}

uint64_t sw_io_files_bytes(uint64_t size, int npaths, uint64_t stripe)
{
	uint64_t units = (size + stripe - 1) / stripe;
	return (units + (uint64_t)npaths - 1) / (uint64_t)npaths * stripe * (uint64_t)npaths;
}

int sw_io_extent_alloc(sw_io *io, uint64_t len, sw_io_extent *ext)
{
	if (!len)
		return -EINVAL;
	uint64_t n = round_up(len, SW_IO_ALIGN), end, at = sw_io_extent_place(io->next, len, io->cfg.stripe, &end);
	uint64_t s = io->cfg.stripe;
	if (end > io->capacity || end < at) {
		char a[32], b[32];
		sw_error("io: the NVMe tier is full: an extent of %s does not fit (%s of %s left); give the tier a larger size",
			 sw_fmt_size(n, a, sizeof(a)),
			 sw_fmt_size(io->capacity > at ? io->capacity - at : 0, b, sizeof(b)),
			 sw_fmt_size(io->capacity, b + 16, 16));
		return -ENOSPC;
	}
	uint32_t id = io->next_ext;
	if (id / EXT_CHUNK >= EXT_MAXCHUNKS)
		return -ENOSPC;
	if (!io->ext[id / EXT_CHUNK] && !(io->ext[id / EXT_CHUNK] = calloc(EXT_CHUNK, sizeof(struct ext_rec))))
		return -ENOMEM;
	struct ext_rec *e = &io->ext[id / EXT_CHUNK][id % EXT_CHUNK];
	e->off = at;
	e->len = n;
	e->npieces = (uint32_t)((at + n - 1) / s - at / s + 1);
	e->sums = calloc(e->npieces, sizeof(uint64_t));
	e->written = calloc(e->npieces, 1);
	if (!e->sums || !e->written) {
		free(e->sums);
		free(e->written);
		e->sums = NULL;
		e->written = NULL;
		return -ENOMEM;
	}
	io->next_ext = id + 1;
	io->next = at + n;
	ext->off = at;
	ext->len = n;
	ext->id = id;
	return 0;
}

static struct ext_rec *ext_check(const sw_io *io, sw_io_extent ext)
{
	struct ext_rec *e = ext_get(io, ext.id);
	return e && e->off == ext.off && e->len == ext.len ? e : NULL;
}

uint32_t sw_io_extent_npieces(const sw_io *io, sw_io_extent ext)
{
	struct ext_rec *e = ext_check(io, ext);
	return e ? e->npieces : 0;
}

int sw_io_extent_sums_get(const sw_io *io, sw_io_extent ext, uint64_t *sums, uint8_t *written)
{
	struct ext_rec *e = ext_check(io, ext);
	if (!e)
		return -EINVAL;
	memcpy(sums, e->sums, e->npieces * sizeof(uint64_t));
	memcpy(written, e->written, e->npieces);
	return 0;
}

int sw_io_extent_sums_set(sw_io *io, sw_io_extent ext, const uint64_t *sums, const uint8_t *written)
{
	struct ext_rec *e = ext_check(io, ext);
	if (!e)
		return -EINVAL;
	pthread_mutex_lock(&io->mu);
	memcpy(e->sums, sums, e->npieces * sizeof(uint64_t));
	for (uint32_t i = 0; i < e->npieces; i++)
		e->written[i] = written[i] ? 1 : 0;
	pthread_mutex_unlock(&io->mu);
	return 0;
}

/* ---- submit / wait ------------------------------------------------------------------------ */

static int submit(sw_io *io, sw_io_req *r, int op, int urgent, sw_io_extent ext, uint64_t off,
		  uint64_t len, void *buf)
{
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->urgent = urgent;
	r->ext = ext;
	r->off = off;
	r->len = len;
	r->buf = buf;
	uint64_t s = io->cfg.stripe;
	struct ext_rec *e = ext_check(io, ext);
	const char *why = NULL;
	if (!e)
		why = "unknown extent (not allocated by this engine)";
	else if (!len || off % SW_IO_ALIGN || len % SW_IO_ALIGN || off > ext.len || len > ext.len - off)
		why = "range not 4 KiB aligned or outside the extent";
	else if ((uintptr_t)buf % SW_IO_ALIGN)
		why = "buffer not 4 KiB aligned";
	else if ((off && (ext.off + off) % s) || (off + len != ext.len && (ext.off + off + len) % s))
		why = "range does not start and end on piece (stripe) boundaries";
	if (why) {
		r->status = -EINVAL;
		snprintf(r->msg, sizeof(r->msg), "io: %s of %llu bytes at extent offset %llu: %s",
			 op_name(op), (unsigned long long)len, (unsigned long long)off, why);
		r->done = 1;
		return -EINVAL;
	}
	uint64_t start = ext.off + off, end = start + len;
	__atomic_add_fetch(&io->submitted[op == SW_IO_READ ? 0 : 1], len, __ATOMIC_RELAXED);
	r->first_piece = start / s;
	r->npieces = (uint32_t)((end - 1) / s - start / s + 1);
	r->pieces_left = r->npieces;
	r->piece = calloc(r->npieces, sizeof(*r->piece));
	if (!r->piece) {
		r->status = -ENOMEM;
		r->done = 1;
		snprintf(r->msg, sizeof(r->msg), "io: out of memory queuing a %s", op_name(op));
		return -ENOMEM;
	}
	for (uint32_t p = 0; p < r->npieces; p++) {
		uint64_t lo = (uint64_t)(r->first_piece + p) * s, hi = lo + s;
		lo = lo > start ? lo : start;
		hi = hi < end ? hi : end;
		r->piece[p].left = (uint32_t)(hi - lo);
	}
	uint32_t j0 = (uint32_t)(r->first_piece - e->off / s);
	pthread_mutex_lock(&io->mu);
	int rc = 0;
	if (io->stop) {
		rc = -ESHUTDOWN;
		snprintf(r->msg, sizeof(r->msg), "io: the NVMe tier is shutting down");
	}
	for (uint32_t p = 0; !rc && op == SW_IO_READ && p < r->npieces; p++) {
		if (e->written[j0 + p])
			continue;
		uint64_t lo = (uint64_t)(r->first_piece + p) * s;
		lo = lo > start ? lo : start;
		int path;
		uint64_t foff;
		map_logical(io, lo, &path, &foff);
		rc = -ENODATA;
		snprintf(r->msg, sizeof(r->msg),
			 "io: read of %s at offset %llu: this part of the extent was never written (or its last write failed)",
			 io->files[path], (unsigned long long)foff);
	}
	if (rc) {
		pthread_mutex_unlock(&io->mu);
		free(r->piece);
		r->piece = NULL;
		r->status = rc;
		r->done = 1;
		return rc;
	}
	if (op == SW_IO_WRITE)
		for (uint32_t p = 0; p < r->npieces; p++)
			e->written[j0 + p] = 0;
	sw_io_req **tail, **head = queue_head(io, r, &tail);
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
	io->outstanding++;
	pthread_cond_broadcast(&io->work_cv);
	pthread_mutex_unlock(&io->mu);
	return 0;
}

int sw_io_submit_read(sw_io *io, sw_io_req *req, sw_io_extent ext, uint64_t off, uint64_t len,
		      void *buf)
{
	return submit(io, req, SW_IO_READ, 0, ext, off, len, buf);
}

int sw_io_submit_write(sw_io *io, sw_io_req *req, sw_io_extent ext, uint64_t off, uint64_t len,
		       const void *buf)
{
	return submit(io, req, SW_IO_WRITE, 0, ext, off, len, (void *)buf);
}

int sw_io_submit_urgent(sw_io *io, sw_io_req *req, int op, sw_io_extent ext, uint64_t off,
			uint64_t len, void *buf)
{
	if (op != SW_IO_READ && op != SW_IO_WRITE) {
		memset(req, 0, sizeof(*req));
		req->status = -EINVAL;
		req->done = 1;
		snprintf(req->msg, sizeof(req->msg), "io: urgent request of unknown kind %d", op);
		return -EINVAL;
	}
	return submit(io, req, op, 1, ext, off, len, buf);
}

void sw_io_hold(sw_io *io, int on)
{
	pthread_mutex_lock(&io->mu);
	io->held = on;
	pthread_cond_broadcast(&io->work_cv);
	pthread_mutex_unlock(&io->mu);
}

int sw_io_poll(sw_io_req *req)
{
	if (!__atomic_load_n(&req->done, __ATOMIC_ACQUIRE))
		return 1;
	return req->status;
}

void sw_io_bytes(sw_io *io, uint64_t *read, uint64_t *written)
{
	*read = __atomic_load_n(&io->submitted[0], __ATOMIC_RELAXED);
	*written = __atomic_load_n(&io->submitted[1], __ATOMIC_RELAXED);
}

int sw_io_wait(sw_io *io, sw_io_req *req)
{
	if (__atomic_load_n(&req->done, __ATOMIC_ACQUIRE))
		return req->status;
	pthread_mutex_lock(&io->mu);
	while (!req->done)
		pthread_cond_wait(&io->done_cv, &io->mu);
	pthread_mutex_unlock(&io->mu);
	return req->status;
}
