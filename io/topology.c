/* hwloc and sysfs look-ups: NUMA nodes, the GPU's node, which block device backs a path. */
#include "io/topology.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <hwloc.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int topo_load(hwloc_topology_t *t)
{
	if (hwloc_topology_init(t))
		return -ENOMEM;
	hwloc_topology_set_io_types_filter(*t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	/* PCI devices come from Linux sysfs (the "linux" component); the libpciaccess-based "pci"
	 * component adds nothing we use and leaks at every load (LeakSanitizer sees it). */
	hwloc_topology_set_components(*t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
	if (hwloc_topology_load(*t)) {
		hwloc_topology_destroy(*t);
		return -EIO;
	}
	return 0;
}

static hwloc_obj_t gpu_pcidev(hwloc_topology_t t)
{
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_pcidev(t, o));)
		if ((o->attr->pcidev.class_id >> 8) == 0x03 && o->attr->pcidev.vendor_id == 0x10de)
			return o;
	return NULL;
}

/* The single NUMA node whose memory is local to obj, or -1. */
static int obj_node(hwloc_topology_t t, hwloc_obj_t o)
{
	hwloc_obj_t a = hwloc_get_non_io_ancestor_obj(t, o);
	if (!a || !a->nodeset || hwloc_bitmap_weight(a->nodeset) != 1)
		return -1;
	return hwloc_bitmap_first(a->nodeset);
}

int sw_io_gpu_numa_node(void)
{
	hwloc_topology_t t;
	if (topo_load(&t))
		return -1;
	hwloc_obj_t g = gpu_pcidev(t);
	int node = g ? obj_node(t, g) : -1;
	hwloc_topology_destroy(t);
	return node;
}

/* Walks up a sysfs device directory to the first one with a numa_node file. */
static int sysfs_node(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", dir);
	while (strlen(p) > strlen("/sys/devices")) {
		char f[PATH_MAX + 16];
		snprintf(f, sizeof(f), "%s/numa_node", p);
		FILE *fp = fopen(f, "r");
		if (fp) {
			int n = -1;
			if (fscanf(fp, "%d", &n) != 1)
				n = -1;
			fclose(fp);
			return n;
		}
		char *s = strrchr(p, '/');
		if (!s)
			break;
		*s = 0;
	}
	return -1;
}

int sw_io_path_device(const char *path, char *name, int len, int *node)
{
	struct stat st;
	if (stat(path, &st))
		return -errno;
	name[0] = 0;
	*node = -1;
	char link[64], real[PATH_MAX];
	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
	if (!realpath(link, real))
		return 0;         /* no block device: tmpfs, overlay, NFS, ... */
	const char *base = strrchr(real, '/');
	snprintf(name, (size_t)len, "%s", base ? base + 1 : real);
	*node = sysfs_node(real);
	return 0;
}

static void print_nodes(hwloc_topology_t t)
{
	int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
	printf("NUMA nodes: %d\n", n);
	for (int i = 0; i < n; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, i);
		char cpus[256] = "?", sz[32];
		if (o->cpuset)
			hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), o->cpuset);
		printf("  node %u: cpus %s, %s\n", o->os_index, cpus,
		       sw_fmt_size(o->attr ? o->attr->numanode.local_memory : 0, sz, sizeof(sz)));
	}
}

static void print_gpu(hwloc_topology_t t)
{
	hwloc_obj_t g = gpu_pcidev(t);
	if (!g) {
		printf("GPU: no NVIDIA device in hwloc's PCI list\n");
		return;
	}
	int node = obj_node(t, g);
	char where[32] = "unknown";
	if (node >= 0)
		snprintf(where, sizeof(where), "%d", node);
	printf("GPU: NVIDIA %04x:%02x:%02x.%x (device %04x), NUMA node %s\n",
	       g->attr->pcidev.domain, g->attr->pcidev.bus, g->attr->pcidev.dev,
	       g->attr->pcidev.func, g->attr->pcidev.device_id, where);
}

static void print_paths(const char *nvme_paths)
{
	char *list = strdup(nvme_paths), *save = NULL;
	if (!list)
		return;
	for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(p, ':');
		if (colon)
			*colon = 0;
		char dev[64];
		int node, rc = sw_io_path_device(p, dev, sizeof(dev), &node);
		if (rc) {
			printf("path %s: cannot stat (%s)\n", p, strerror(-rc));
			continue;
		}
		if (!dev[0]) {
			printf("path %s: no block device (tmpfs, overlay or network filesystem)\n", p);
			continue;
		}
		if (node >= 0)
			printf("path %s: block device %s, NUMA node %d\n", p, dev, node);
		else
			printf("path %s: block device %s, NUMA node unknown\n", p, dev);
	}
	free(list);
}

int sw_io_topology_print(const char *nvme_paths)
{
	hwloc_topology_t t;
	int rc = topo_load(&t);
	if (rc) {
		sw_warn("topology: hwloc could not load the machine topology (%s)", strerror(-rc));
		return rc;
	}
	print_nodes(t);
	print_gpu(t);
	hwloc_topology_destroy(t);
	if (nvme_paths && *nvme_paths)
		print_paths(nvme_paths);
	return 0;
}
