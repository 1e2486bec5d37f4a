/* A persistent thread pool for parallel loops (CPU backend ops, the CPU optimizer).
 *
 * sw_pool_run(p, fn, ctx, ntasks) calls fn(ctx, task, worker) for task in [0, ntasks) on the
 * pool's threads (the caller's thread works too, as worker 0) and returns when all are done.
 * Which worker runs which task varies; results must not depend on it (write per-task outputs
 * and combine them in task order for determinism). One sw_pool_run at a time per pool. */
#ifndef SW_CORE_POOL_H
#define SW_CORE_POOL_H
#include <stdint.h>

typedef struct sw_pool sw_pool;
typedef void (*sw_pool_fn)(void *ctx, int64_t task, int worker);

/* nthreads <= 0: one per online CPU. cpus: optional list of nthreads logical CPU ids to bind
 * the workers to (worker i to cpus[i]); NULL leaves them unbound. The calling thread is worker 0
 * and is bound to cpus[0] until sw_pool_destroy restores its previous affinity (threads it
 * starts meanwhile inherit the binding). Returns NULL on failure. */
sw_pool *sw_pool_create(int nthreads, const int *cpus);
/* The number of threads sw_pool_create(nthreads, ...) starts: nthreads, or one per online core
 * when nthreads <= 0. */
int sw_pool_threads_for(int nthreads);
void sw_pool_destroy(sw_pool *p);
int sw_pool_threads(const sw_pool *p);
void sw_pool_run(sw_pool *p, sw_pool_fn fn, void *ctx, int64_t ntasks);

/* Calls fn(ctx, w, w) exactly once on each worker w in [0, threads): for static partitions
 * (a benchmark's per-thread slices, first-touch placement of memory). */
void sw_pool_run_each(sw_pool *p, sw_pool_fn fn, void *ctx);

/* ---- where to bind: CPU lists from hwloc and /sys ----
 * Each writes at most max logical CPU ids into cpus, ordered one hardware thread per physical
 * core first (cores in hwloc order), then the cores' second hardware threads, and so on, so the
 * first k entries spread k threads over k cores. Only CPUs this process may run on count (the
 * union of its threads' affinities). */

/* The CPUs of NUMA node 'node' (OS index). Returns the count, or -ENOENT (no such node or no
 * allowed CPU in it), -EIO (hwloc failed). */
int sw_pool_cpus_of_node(int node, int *cpus, int max);

/* Every CPU this process may run on. Returns the count (>= 1) or -EIO. */
int sw_pool_cpus_all(int *cpus, int max);

/* The NUMA node of a PCI device ("0000:1b:00.0", as cudaDeviceGetPCIBusId writes it; any
 * case; NULL: the NVIDIA GPU with the lowest bus id in /sys/bus/pci/devices). Returns the node
 * (>= 0), or -ENOENT when there is no such device or the machine does not say (one node). If
 * found_bus_id is not NULL it receives the device's bus id (13 bytes). */
int sw_pool_pci_node(const char *pci_bus_id, char found_bus_id[13]);

/* The CPUs to bind the optimizer pool to: those of the GPU's NUMA node when known, else all
 * (sw_pool_cpus_all). 'where' (len bytes, may be NULL) receives a short description, e.g.
 * "NUMA node 1 (GPU 0000:b1:00.0)" or "all CPUs (GPU's NUMA node unknown)". Returns the count
 * (>= 1) or -EIO. */
int sw_pool_cpus_near_gpu(const char *pci_bus_id, int *cpus, int max, char *where, int len);

/* The optimizer pool: nthreads workers (<= 0: one per CPU of the list) bound one per CPU of
 * sw_pool_cpus_near_gpu's list (cycled if there are more threads than CPUs). where/len as
 * above. Returns NULL on failure. */
sw_pool *sw_pool_create_near_gpu(int nthreads, const char *pci_bus_id, char *where, int len);
#endif
