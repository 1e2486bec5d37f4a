/* A first-fit sub-allocator over one region (the device arena of a backend).
 * Blocks are 256-byte aligned; freeing coalesces neighbours. Not thread-safe: the executor
 * thread owns it. Allocation happens at setup, never inside the step loop. */
#ifndef SW_CORE_SUBALLOC_H
#define SW_CORE_SUBALLOC_H
#include <stdint.h>

typedef struct sw_suballoc_block {
	uint64_t off, size;
	int used;
} sw_suballoc_block;

typedef struct sw_suballoc {
	uint64_t size, used, peak;
	sw_suballoc_block *b;     /* sorted by offset, covering [0, size) */
	int n, cap;
} sw_suballoc;

int sw_suballoc_init(sw_suballoc *a, uint64_t size);
void sw_suballoc_free_all(sw_suballoc *a);
/* Returns 0 and the offset, or -ENOMEM when no free block is large enough. */
int sw_suballoc_alloc(sw_suballoc *a, uint64_t bytes, uint64_t *off);
/* Frees the block at off; returns -EINVAL when no used block starts there. */
int sw_suballoc_release(sw_suballoc *a, uint64_t off);
#endif
