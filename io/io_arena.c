/* The pinned buffer arena: anonymous mmap, NUMA-bound with hwloc, every page faulted in. The
 * engine registers it with io_uring; the executor may also cudaHostRegister it. */
#include "io/io_internal.h"
#include "io/topology.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <hwloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

uint64_t sw_io_memlock_raise(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return 0;
	struct rlimit inf = { RLIM_INFINITY, RLIM_INFINITY };
	if (setrlimit(RLIMIT_MEMLOCK, &inf) == 0)
		return UINT64_MAX;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			getrlimit(RLIMIT_MEMLOCK, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

static int bind_area(char *base, uint64_t size, int node)
{
	hwloc_topology_t t;
	if (hwloc_topology_init(&t))
		return -ENOMEM;
	int rc = -EINVAL;
	hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");  /* leaks */
	if (hwloc_topology_load(t))
		goto err_destroy;
	hwloc_bitmap_t set = hwloc_bitmap_alloc();
	if (!set) {
		rc = -ENOMEM;
		goto err_destroy;
	}
	hwloc_bitmap_only(set, (unsigned)node);
	rc = hwloc_set_area_membind(t, base, size, set, HWLOC_MEMBIND_BIND,
				    HWLOC_MEMBIND_BYNODESET) ? -errno : 0;
	hwloc_bitmap_free(set);
err_destroy:
	hwloc_topology_destroy(t);
	return rc;
}

int sw_io_arena_map(uint64_t bytes, int bind, int node, int quiet, char **base, uint64_t *size,
		    int *bound)
{
	const uint64_t two_mib = 2ull << 20;
	uint64_t sz = (bytes + two_mib - 1) / two_mib * two_mib;
	char buf[32];
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		sw_error("io: cannot map a %s buffer arena (%s); lower the host memory budget",
			 sw_fmt_size(sz, buf, sizeof(buf)), strerror(errno));
		return -ENOMEM;
	}
	*bound = -1;
	if (bind == 0)
		node = sw_io_gpu_numa_node();
	if (bind >= 0 && node >= 0) {
		int rc = bind_area(p, sz, node);
		if (rc)
			sw_warn("io: could not bind the buffer arena to NUMA node %d (%s); it stays unbound",
				node, strerror(-rc));
		else
			*bound = node;
	}
	/* Fault every page in now (after binding, so pages land on the node). */
	for (uint64_t o = 0; o < sz; o += 4096)
		((volatile char *)p)[o] = 0;
	if (!quiet && *bound >= 0)
		sw_info("io: buffer arena %s, bound to NUMA node %d", sw_fmt_size(sz, buf, sizeof(buf)), *bound);
	else if (!quiet)
		sw_info("io: buffer arena %s, not NUMA-bound", sw_fmt_size(sz, buf, sizeof(buf)));
	*base = p;
	*size = sz;
	return 0;
}

void sw_io_arena_unmap(char *base, uint64_t size)
{
	if (base)
		munmap(base, size);
}
