/* The NVMe tier: an asynchronous io_uring engine over one preallocated file per path, striped,
 * with XXH3 checksums, a registered pinned buffer arena and a fault-injection hook.
 *
 * Model (docs/io.md has the long version)
 *   * sw_io_open() creates (or reopens) one file per --nvme path, preallocates it with
 *     fallocate, starts `threads` I/O threads (one io_uring each, files registered), and maps a
 *     pinned buffer arena (registered with every ring in pieces of at most 1 GiB).
 *   * The files form one logical address space striped RAID-0 style: stripe unit S, logical
 *     stripe k lives on path k % npaths at file offset (k / npaths) * S.
 *   * sw_io_extent_alloc() hands out extents of that space (4 KiB aligned; extents of S bytes or
 *     more start on a stripe boundary, smaller ones never straddle one). Allocation is a
 *     deterministic bump: the same sequence of calls on the same settings gives the same
 *     offsets (this is how a resumed run finds its state again).
 *   * Checksums: one XXH3-64 per *piece*, where a piece is the part of an extent that lies in
 *     one stripe unit. Written on write completion, verified on read completion. A piece that
 *     was never written (or whose last write failed) cannot be read: -ENODATA.
 *   * Requests (sw_io_req, owned by the caller) read or write a range of one extent that starts
 *     and ends on piece boundaries (the whole extent always qualifies). They are split into
 *     blocks of at most `bs` bytes (never crossing a stripe unit or a 1 GiB arena piece) and
 *     spread over every I/O thread, so one large request keeps every drive busy.
 *   * Dispatch order: a thread that has a free queue slot takes the next block of the oldest
 *     urgent request (sw_io_submit_urgent), else of the oldest read, else of the oldest write.
 *     A read never waits behind ordinary queued writes (it may behind urgent ones), and an
 *     urgent request (a transfer the GPU waits on) behind neither (at most behind the blocks
 *     already in the drive's queue).
 *   * Completion: sw_io_poll() (non-blocking) or sw_io_wait() (blocking) from any thread.
 *
 * Errors: every function returns 0 (or a count) on success and -errno on failure; nothing sets
 * errno for the caller. Failed requests carry a one-line message naming the file, the file
 * offset and the cause (sw_io_req_error()). Nothing is retried forever: short transfers and
 * -EAGAIN are re-queued a bounded number of times (SW_IO_MAX_RETRIES), then fail.
 *
 * Threads: sw_io_open/close and sw_io_extent_* are for the owning thread, at set-up (no I/O of
 * the same extent in flight). sw_io_submit_*, sw_io_poll, sw_io_wait may be called from any
 * thread concurrently. */
#ifndef SW_IO_IO_H
#define SW_IO_IO_H
#include <stdint.h>

#define SW_IO_ALIGN        4096u            /* offsets, lengths, buffer addresses */
#define SW_IO_REG_PIECE    (1ull << 30)     /* arena registered with io_uring in pieces <= 1 GiB */
#define SW_IO_MAX_RETRIES  16               /* short transfers / -EAGAIN per block before failing */
#define SW_IO_MAX_PATHS    64

typedef struct sw_io sw_io;

/* Settings. Zero-initialise, set what you need; zero fields take the defaults shown. */
typedef struct sw_io_config {
	const char *paths;       /* "/mnt/a:500GiB,/mnt/b": directories, comma-separated, each with
	                            an optional capacity cap after ':' (required) */
	const char *file_name;   /* data file created in each directory ("spillway.data") */
	uint64_t size;           /* logical bytes needed over all paths (required, > 0) */
	uint64_t stripe;         /* stripe unit, multiple of 4 KiB (1 MiB) */
	uint64_t bs;             /* largest single transfer, multiple of 4 KiB (1 MiB); clamped
	                            to the stripe unit */
	int qd;                  /* transfers in flight per I/O thread (32) */
	int threads;             /* I/O threads, one ring each (2) */
	uint64_t arena_bytes;    /* pinned buffer arena, rounded up to 2 MiB (0: no arena) */
	int numa_bind;           /* 0: bind the arena to the GPU's NUMA node when hwloc knows it;
	                            1: bind to numa_node; -1: never bind */
	int numa_node;
	int buffered;            /* 1: do not even try O_DIRECT */
	int no_checksum;         /* 1: skip XXH3 (bench only; unwritten reads still fail) */
	int sums_after;          /* 1: a write's checksums after its transfer, as a read's, not
	                            while it is in flight (for comparison: the caller then waits
	                            for the hashing; SW_IO_SUMS_AHEAD=0 sets it) */
	int quiet;               /* 1: no info lines (fallbacks are still logged as warnings) */
} sw_io_config;

/* A range of the logical address space. Plain value: copy it, store it in the manifest. */
typedef struct sw_io_extent {
	uint64_t off;            /* logical offset, 4 KiB aligned */
	uint64_t len;            /* bytes, multiple of 4 KiB */
	uint32_t id;             /* index of the engine's record (checksums) */
} sw_io_extent;

enum sw_io_op { SW_IO_READ = 1, SW_IO_WRITE = 2 };

/* One request. Caller-owned (embed it anywhere); must stay valid and untouched, as must its
 * buffer, from submit until sw_io_poll/sw_io_wait reports it done. Fields below `private` are
 * the engine's. */
typedef struct sw_io_req {
	int status;              /* after completion: 0 or -errno (same as sw_io_wait) */
	/* private */
	int op, done, pending, urgent;
	sw_io_extent ext;
	uint64_t off, len, cursor;       /* range inside the extent; next byte to dispatch */
	char *buf;
	uint64_t first_piece;
	uint32_t npieces, pieces_left;
	struct sw_io_piece *piece;       /* per piece: bytes outstanding, a write's checksum */
	struct sw_io_req *next;
	char msg[320];
} sw_io_req;

/* sw_io_open: validates cfg, parses the path list, checks each directory exists and has room
 * (statvfs), creates/opens <path>/<file_name> with O_DIRECT (falling back to buffered I/O with
 * one warning when the filesystem refuses O_DIRECT), preallocates it with fallocate, raises
 * RLIMIT_MEMLOCK as far as allowed, maps and (optionally) NUMA-binds the arena, and starts the
 * I/O threads with their rings, registered files and registered arena.
 * Each path's file holds ceil(size / npaths / stripe) stripe units; an existing larger file is
 * kept as is (contents preserved), a smaller one grown.
 * Returns 0 and *out, or -errno after printing one line naming the path and the cause:
 *   -EINVAL   bad settings or path list (message says which)
 *   -ENOENT / -ENOTDIR / -EACCES   a path is missing or unusable
 *   -ENOSPC   a path lacks room (the message gives need, free and the shortfall) or its
 *             capacity cap is below its share
 *   -ENOMEM   the arena could not be mapped
 *   other     io_uring_queue_init failures (e.g. -EPERM when io_uring is disabled)
 * Buffer registration failing is not fatal: one warning explains it (memlock limit and how to
 * raise it) and I/O goes through unregistered buffers. */
int sw_io_open(const sw_io_config *cfg, sw_io **out);

/* sw_io_close: waits for every submitted request to finish, stops the threads, unregisters and
 * unmaps the arena, closes the files (they stay on disk). NULL is ignored. */
void sw_io_close(sw_io *io);

/* The effective settings after defaults and clamping (bs <= stripe, etc.). */
const sw_io_config *sw_io_settings(const sw_io *io);

/* The pinned arena: base address and size (0 and NULL when arena_bytes was 0). The executor
 * carves it up itself and may cudaHostRegister [base, base+size) through the backend. Buffers
 * inside it use registered (fixed) transfers; buffers elsewhere work too if 4 KiB aligned. */
void *sw_io_arena(const sw_io *io, uint64_t *size);
/* 1 when the arena is registered with io_uring, 0 when the fallback is in use. */
int sw_io_arena_registered(const sw_io *io);
/* The NUMA node the arena is bound to, or -1 when unbound. */
int sw_io_arena_node(const sw_io *io);

/* Number of paths, path i's directory and data file name ("<dir>/<file_name>"). */
int sw_io_npaths(const sw_io *io);
const char *sw_io_path_file(const sw_io *io, int i);
/* Logical capacity (bytes) and bytes already handed out by sw_io_extent_alloc. */
uint64_t sw_io_capacity(const sw_io *io);
uint64_t sw_io_allocated(const sw_io *io);

/* Where sw_io_extent_alloc puts an extent of len bytes when bytes [0, at) are handed out and
 * the stripe unit is `stripe`: returns its start; *next gets the new end of the handed-out space
 * (start + len rounded up to 4 KiB). An extent of a stripe or more starts on a stripe boundary;
 * a smaller one moves to the next boundary only when it would cross one. The engine and the
 * planner (the NVMe tier's footprint) both use it. */
uint64_t sw_io_extent_place(uint64_t at, uint64_t len, uint64_t stripe, uint64_t *next);
/* Bytes of the data files sw_io_open creates for cfg.size = size over npaths paths: each path
 * holds ceil(size / npaths / stripe) stripe units. */
uint64_t sw_io_files_bytes(uint64_t size, int npaths, uint64_t stripe);

/* sw_io_extent_alloc: reserves len bytes (rounded up to 4 KiB) of the logical space.
 * Returns 0 and *ext, -EINVAL for len == 0, or -ENOSPC (message printed: how much is missing)
 * when the remaining capacity is too small. Extents are never freed individually; they live
 * until sw_io_close. All pieces start "never written". */
int sw_io_extent_alloc(sw_io *io, uint64_t len, sw_io_extent *ext);

/* Number of checksum pieces of an extent (pieces = parts of the extent in one stripe unit). */
uint32_t sw_io_extent_npieces(const sw_io *io, sw_io_extent ext);
/* Copies the extent's checksums out (for the manifest): sums[npieces], written[npieces]
 * (1 = valid checksum). Returns 0 or -EINVAL for an extent this engine did not allocate. */
int sw_io_extent_sums_get(const sw_io *io, sw_io_extent ext, uint64_t *sums, uint8_t *written);
/* Restores them (resume). Same returns. No I/O of the extent may be in flight. */
int sw_io_extent_sums_set(sw_io *io, sw_io_extent ext, const uint64_t *sums, const uint8_t *written);

/* sw_io_submit_read / sw_io_submit_write: queue a transfer of len bytes between buf and
 * [off, off+len) of ext. off and len are multiples of 4 KiB, the range lies inside the extent
 * and starts and ends on a piece boundary (a stripe boundary or the extent's ends); buf is
 * 4 KiB aligned. Returns 0 once queued (the outcome arrives via sw_io_poll/sw_io_wait), or
 * -errno without queuing anything (req->status holds it too, req->msg says why):
 *   -EINVAL   misaligned or out-of-range arguments, unknown extent
 *   -ENODATA  (read) a piece of the range was never written, or its last write failed
 *   -ESHUTDOWN the engine is closing or an I/O thread died
 * Completion errors (req->status): -EIO and any errno the kernel returns (path named), -EIO
 * for a short read at end of file, -EBADMSG for a checksum mismatch (file and offset named),
 * -ENOENT when the data file vanished. A failed write marks its pieces never-written. */
int sw_io_submit_read(sw_io *io, sw_io_req *req, sw_io_extent ext, uint64_t off, uint64_t len,
		      void *buf);
int sw_io_submit_write(sw_io *io, sw_io_req *req, sw_io_extent ext, uint64_t off, uint64_t len,
		       const void *buf);

/* sw_io_submit_urgent: as sw_io_submit_read (op SW_IO_READ) or sw_io_submit_write (SW_IO_WRITE),
 * same arguments and returns, but its blocks are dispatched before those of every request
 * queued the ordinary way, in submission order among urgent requests. For the few transfers the
 * GPU waits on (the forward pass's activation checkpoints), so that they do not queue behind a
 * stream of optimizer state. Ordering between requests of the same range stays the caller's. */
int sw_io_submit_urgent(sw_io *io, sw_io_req *req, int op, sw_io_extent ext, uint64_t off,
			uint64_t len, void *buf);

/* sw_io_poll: 1 while the request is in flight, else its status (0 or -errno). Never blocks. */
int sw_io_poll(sw_io_req *req);
/* sw_io_wait: blocks until the request is done; returns its status (0 or -errno). */
int sw_io_wait(sw_io *io, sw_io_req *req);
/* Bytes of every read and write request accepted since sw_io_open (counted at submission,
 * whether or not it has completed; the executor's traffic per step is a difference of two). */
void sw_io_bytes(sw_io *io, uint64_t *read, uint64_t *written);
/* What the drives were given since sw_io_open, by direction ([0] reads, [1] writes; a block is
 * one transfer of at most `bs` bytes): the bytes of the blocks completed, the blocks in flight
 * now (dispatched to a ring, not yet completed), and how the time split between nothing in
 * flight (state 0), reads alone (1), writes alone (2) and both (3), with the bytes each
 * direction completed in each state. Where a step's traffic runs slower than the disk's rate,
 * this says which direction ran alone and how fast (docs/io.md "Counters"). */
typedef struct sw_io_counters {
	double t;                     /* when they were read (sw_now) */
	uint64_t bytes[2];            /* completed */
	int inflight[2];
	double state_s[4];            /* seconds in each state */
	uint64_t state_bytes[4][2];   /* bytes completed in each state, by direction */
	uint64_t sums[2];             /* pieces checksummed: [0] after their transfer (a read's; a
	                                 write's with sums_after), [1] while in flight (a write's) */
} sw_io_counters;
/* Reads the counters (any thread; takes the engine's lock). */
void sw_io_counters_read(sw_io *io, sw_io_counters *c);
/* b - a: the counters' change between two reads (inflight: b's). */
void sw_io_counters_diff(const sw_io_counters *b, const sw_io_counters *a, sw_io_counters *d);

/* The one-line message of a failed request ("" when it succeeded). */
const char *sw_io_req_error(const sw_io_req *req);

/* sw_io_check_paths: checks that every data file is still where it was opened (same device and
 * inode). Returns 0, or -ENOENT (vanished) / -ESTALE (replaced by another file) after printing
 * one line naming the path. Cheap (one stat per path): call it at step boundaries. */
int sw_io_check_paths(sw_io *io);

/* Fault injection (tests). The nth block (1-based, counted at dispatch over blocks matching op
 * and path) and the count-1 following matching blocks fail as `kind` says. One fault plan at a
 * time; a new call replaces it and restarts the count. */
enum sw_io_fault_kind {
	SW_IO_FAULT_NONE = 0,
	SW_IO_FAULT_ERRNO,      /* the transfer completes with -err (EIO, ENOSPC, EAGAIN, ...) */
	SW_IO_FAULT_SHORT,      /* the transfer completes with 0 bytes (end of file) */
	SW_IO_FAULT_PARTIAL,    /* the transfer moves only half its bytes (re-queued by the engine) */
	SW_IO_FAULT_CORRUPT,    /* (read) one byte of the data flips after the transfer */
};
typedef struct sw_io_fault {
	int kind;               /* enum sw_io_fault_kind */
	int op;                 /* SW_IO_READ, SW_IO_WRITE or both ORed */
	int err;                /* positive errno for SW_IO_FAULT_ERRNO */
	int path;               /* only blocks on this path index; -1: any */
	uint64_t nth, count;    /* count 0 means 1 */
} sw_io_fault;
/* Installs the plan (kind NONE clears it). Returns 0 or -EINVAL. */
int sw_io_fault_set(sw_io *io, const sw_io_fault *f);
/* Tests: while held (on = 1) the I/O threads dispatch no new block; requests queue up, blocks
 * in flight complete. on = 0 lets them go. sw_io_close releases a hold (not to be called while
 * sw_io_close runs). */
void sw_io_hold(sw_io *io, int on);
/* Parses "KIND:OP:NTH[:COUNT[:PATH]]" where KIND is an errno name (EIO, ENOSPC, EAGAIN, ENODEV)
 * or short|partial|corrupt, OP is read|write|any. sw_io_open reads the environment variable
 * SPILLWAY_IO_FAULT with this syntax. Returns 0 or -EINVAL. */
int sw_io_fault_parse(const char *s, sw_io_fault *f);

/* Parses the path list of cfg->paths: up to max entries into dirs[] (malloc'd strings, free
 * them) and caps[] (0 = no cap). Returns the count or -EINVAL (message printed). */
int sw_io_paths_parse(const char *paths, char **dirs, uint64_t *caps, int max);
#endif
