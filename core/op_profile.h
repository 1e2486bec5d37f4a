/* Per-op device time of a whole run, for finding which kernels take the time: with
 * SW_OP_PROFILE=1, sw_backend_create wraps the backend's op table so that every op and copy is
 * bracketed by a pair of events on its own stream, and the backend's destroy prints, on stderr,
 * each op's (and each GEMM and attention shape's) calls, total and mean time, sorted by total.
 * An event pair measures the op from when its stream reaches it to when it ends, so waits
 * queued before it are not counted; launch gaps inside it are, and so are waits an op queues
 * itself (the CUDA GEMMs' and head's shared workspace, last used on another stream) and, for a
 * copy, the copy engine's queue of same-direction copies from other streams. Resolving the
 * pairs syncs on them once every SW_OP_PROFILE_PAIRS ops (16..4194304, default 65536), which
 * the timings of those few ops around it feel. Not for production runs: it adds two event
 * records per op. */
#ifndef SW_CORE_OP_PROFILE_H
#define SW_CORE_OP_PROFILE_H
#include "core/backend.h"

/* Wraps be's ops when SW_OP_PROFILE is set to 1 (one backend per process; a second is left
 * alone). Returns 0, or -ENOMEM (be is then unchanged). */
int sw_op_profile_maybe_wrap(sw_backend *be);

#endif
