/* Pieces of the NVMe tier shared between the io/ sources (not part of the public API). */
#ifndef SW_IO_INTERNAL_H
#define SW_IO_INTERNAL_H
#include <stdint.h>

/* Raises RLIMIT_MEMLOCK as far as this process may (to infinity when privileged, else the
 * soft limit to the hard one). Returns the resulting soft limit in bytes (UINT64_MAX: none). */
uint64_t sw_io_memlock_raise(void);

/* Maps an anonymous arena of at least bytes (rounded up to 2 MiB), binds it to a NUMA node
 * (bind: 0 = the GPU's node when known, 1 = node, -1 = never) and faults every page in.
 * Returns 0, *base, *size and *bound (node or -1), or -ENOMEM. */
int sw_io_arena_map(uint64_t bytes, int bind, int node, int quiet, char **base, uint64_t *size,
		    int *bound);
void sw_io_arena_unmap(char *base, uint64_t size);
#endif
