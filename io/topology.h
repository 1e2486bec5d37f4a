/* What hwloc sees: NUMA nodes, the GPU's node, and the block device (and its node) behind each
 * --nvme path. Used by `spillway info`, `spillway bench-io` and the arena's NUMA binding. */
#ifndef SW_IO_TOPOLOGY_H
#define SW_IO_TOPOLOGY_H
/* Prints the topology; nvme_paths is a comma-separated list (optional ":CAP" suffixes are
 * ignored) or NULL. Returns 0, or -errno when hwloc cannot load the topology (nothing printed
 * beyond one warning). */
int sw_io_topology_print(const char *nvme_paths);

/* The OS index of the NUMA node nearest the first NVIDIA GPU (PCI class 0x03, vendor 0x10de)
 * hwloc finds, or -1 when there is none or its locality is unknown/ambiguous. */
int sw_io_gpu_numa_node(void);

/* The block device behind a path: writes its name ("nvme0n1p1"; "" when the filesystem has no
 * block device, e.g. tmpfs) into name and returns its NUMA node (-1 unknown). Returns -errno
 * when the path cannot be stat'ed. */
int sw_io_path_device(const char *path, char *name, int len, int *node);
#endif
