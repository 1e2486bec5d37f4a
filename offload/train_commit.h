/* The commit's files shared by the code that writes them (train_commit.c) and the code that
 * resumes from them (train_commit_load.c): the state file's header and allocation records. */
#ifndef SW_OFFLOAD_TRAIN_COMMIT_H
#define SW_OFFLOAD_TRAIN_COMMIT_H
#include "offload/train_int.h"

#define COMMIT_MAGIC "SWCOMMIT"
#define COMMIT_VERSION 1

/* The state file: a header, the NVMe allocations in the executor's order (so a changed
 * placement can find the committed extents again), then per group its optimizer tier and
 * either the engine's checksums of the committed P32/m/v extents (on NVMe) or P32, m, v. */
typedef struct cm_head {
	char magic[8];
	uint32_t version;
	int32_t ngroups;
	int64_t step;
	int32_t slot, slots;
	uint64_t io_size, stripe, nalloc;
} cm_head;

typedef struct cm_alloc {
	uint64_t len;
	int32_t g, k, slot, pad;       /* g -1: not optimizer state */
} cm_alloc;

/* P32, m, v: the optimizer states k = 0, 1, 2 */
#define COMMIT_OPT_STATE(k) ((k) == 0 ? SW_STATE_P32 : (k) == 1 ? SW_STATE_M : SW_STATE_V)

/* XXH3 of the NVMe layout and the optimizer tiers of plan p, in hex: a commit can be read in
 * place only by a run whose plan gives the same. */
int train_commit_layout_hash(const sw_plan *p, char hex[20]);
/* A commit read for export (train_commit_load.c): open after train_commit_read and the state
 * file's checksums; p32 gives group g's fp32 weights (numel floats into x), every piece read
 * from NVMe checked against its checksum. Each 0 or -errno after one line. */
typedef struct train_commit_src train_commit_src;
int train_commit_src_open(sw_train_ctx *c, train_commit_src **out);
int train_commit_src_p32(train_commit_src *e, int g, float *x);
void train_commit_src_close(train_commit_src *e);
#endif
