#include "core/pool.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sw_pool {
	int n;                         /* workers including the caller */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t generation;           /* bumped per run */
	int active;                    /* helper threads still working on this run */
	int quit;
	int each;                      /* this run: one call per worker (sw_pool_run_each) */
	int rebind;                    /* the caller's affinity was changed: restore on destroy */
	cpu_set_t caller_set;
	sw_pool_fn fn;
	void *ctx;
	int64_t ntasks;
	atomic_int_fast64_t next;
};

struct worker_arg { sw_pool *p; int id; int cpu; };

static void work(sw_pool *p, int id)
{
	if (p->each) {
		p->fn(p->ctx, id, id);
		return;
	}
	for (;;) {
		int64_t t = atomic_fetch_add(&p->next, 1);
		if (t >= p->ntasks)
			return;
		p->fn(p->ctx, t, id);
	}
}

static void *worker_main(void *arg)
{
	struct worker_arg *wa = arg;
	sw_pool *p = wa->p;
	int id = wa->id;
	if (wa->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(wa->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	free(wa);
	uint64_t seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->quit && p->generation == seen)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->quit)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->mu);
		work(p, id);
		pthread_mutex_lock(&p->mu);
		if (--p->active == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int sw_pool_threads_for(int nthreads)
{
	if (nthreads <= 0)
		nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	return nthreads > 0 ? nthreads : 1;
}

sw_pool *sw_pool_create(int nthreads, const int *cpus)
{
	nthreads = sw_pool_threads_for(nthreads);
	sw_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->n = nthreads;
	p->th = calloc((size_t)nthreads, sizeof(pthread_t));
	if (!p->th) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	if (cpus && pthread_getaffinity_np(pthread_self(), sizeof(p->caller_set), &p->caller_set) == 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpus[0], &set);
		p->rebind = pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
	}
	for (int i = 1; i < nthreads; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));
		SW_ASSERT(wa);
		*wa = (struct worker_arg){ p, i, cpus ? cpus[i] : -1 };
		if (pthread_create(&p->th[i], NULL, worker_main, wa)) {
			free(wa);
			p->n = i;
			break;
		}
	}
	return p;
}

void sw_pool_destroy(sw_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	if (p->rebind)
		pthread_setaffinity_np(pthread_self(), sizeof(p->caller_set), &p->caller_set);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p->th);
	free(p);
}

int sw_pool_threads(const sw_pool *p) { return p->n; }

static void pool_dispatch(sw_pool *p, sw_pool_fn fn, void *ctx, int64_t ntasks, int each)
{
	pthread_mutex_lock(&p->mu);
	p->each = each;
	p->fn = fn;
	p->ctx = ctx;
	p->ntasks = ntasks;
	atomic_store(&p->next, 0);
	p->active = p->n - 1;
	p->generation++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	work(p, 0);
	pthread_mutex_lock(&p->mu);
	while (p->active)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void sw_pool_run(sw_pool *p, sw_pool_fn fn, void *ctx, int64_t ntasks)
{
	if (ntasks <= 0)
		return;
	if (p->n == 1 || ntasks == 1) {
		for (int64_t t = 0; t < ntasks; t++)
			fn(ctx, t, 0);
		return;
	}
	pool_dispatch(p, fn, ctx, ntasks, 0);
}

void sw_pool_run_each(sw_pool *p, sw_pool_fn fn, void *ctx)
{
	if (p->n == 1) {
		fn(ctx, 0, 0);
		return;
	}
	pool_dispatch(p, fn, ctx, p->n, 1);
}

/* ---- CPU lists ---- */

/* The PUs of 'set' restricted to this process's affinity (the union over its threads, so a
 * caller that a pool has bound to one CPU still sees the whole set), one per core first. */
static int cpus_from_set(hwloc_topology_t topo, hwloc_const_cpuset_t set, int *cpus, int max)
{
	hwloc_bitmap_t want = hwloc_bitmap_dup(set), inter = hwloc_bitmap_alloc(),
		       bound = hwloc_bitmap_alloc();
	int count = 0;
	if (!want || !inter || !bound)
		goto out_free;
	if (hwloc_get_cpubind(topo, bound, HWLOC_CPUBIND_PROCESS) == 0 && !hwloc_bitmap_iszero(bound))
		hwloc_bitmap_and(want, want, bound);
	int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	if (ncores <= 0) {
		int pu;
		hwloc_bitmap_foreach_begin(pu, want) {
			if (count < max)
				cpus[count++] = pu;
		}
		hwloc_bitmap_foreach_end();
		goto out_free;
	}
	for (int level = 0;; level++) {
		int any = 0;
		for (int c = 0; c < ncores; c++) {
			hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)c);
			if (!core || !core->cpuset)
				continue;
			hwloc_bitmap_and(inter, core->cpuset, want);
			int pu = hwloc_bitmap_first(inter);
			for (int k = 0; k < level && pu >= 0; k++)
				pu = hwloc_bitmap_next(inter, pu);
			if (pu < 0)
				continue;
			any = 1;
			if (count < max)
				cpus[count++] = pu;
		}
		if (!any || count >= max)
			break;
	}
out_free:
	hwloc_bitmap_free(want);
	hwloc_bitmap_free(inter);
	hwloc_bitmap_free(bound);
	return count;
}

static int topology_open(hwloc_topology_t *topo)
{
	if (hwloc_topology_init(topo))
		return -EIO;
	if (hwloc_topology_load(*topo)) {
		hwloc_topology_destroy(*topo);
		return -EIO;
	}
	return 0;
}

int sw_pool_cpus_of_node(int node, int *cpus, int max)
{
	hwloc_topology_t topo;
	int rc = topology_open(&topo);
	if (rc)
		return rc;
	hwloc_obj_t obj = node >= 0 ? hwloc_get_numanode_obj_by_os_index(topo, (unsigned)node) : NULL;
	rc = obj && obj->cpuset ? cpus_from_set(topo, obj->cpuset, cpus, max) : 0;
	hwloc_topology_destroy(topo);
	return rc > 0 ? rc : -ENOENT;
}

int sw_pool_cpus_all(int *cpus, int max)
{
	hwloc_topology_t topo;
	int rc = topology_open(&topo);
	if (rc)
		return rc;
	rc = cpus_from_set(topo, hwloc_topology_get_allowed_cpuset(topo), cpus, max);
	hwloc_topology_destroy(topo);
	if (rc <= 0 && max > 0) {
		cpus[0] = sched_getcpu() >= 0 ? sched_getcpu() : 0;
		rc = 1;
	}
	return rc > 0 ? rc : -EIO;
}

/* "0000:1B:00.0" or "00000000:1b:00.0" -> "0000:1b:00.0"; -EINVAL if it is not a bus id. */
static int bus_id_normalise(const char *in, char out[13])
{
	unsigned dom, bus, dev, fn;
	char extra;
	if (sscanf(in, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &extra) != 4 || dom > 0xffff ||
	    bus > 0xff || dev > 0x1f || fn > 7)
		return -EINVAL;
	snprintf(out, 13, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

static int read_sys_line(const char *dir, const char *name, char *buf, int len)
{
	char path[512];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int ok = fgets(buf, len, f) != NULL;
	fclose(f);
	return ok ? 0 : -EIO;
}

/* The lowest bus id of an NVIDIA (vendor 0x10de) display/3D controller (class 0x03xxxx). */
static int first_nvidia_gpu(char out[13])
{
	DIR *d = opendir("/sys/bus/pci/devices");
	if (!d)
		return -ENOENT;
	struct dirent *e;
	int found = 0;
	while ((e = readdir(d))) {
		char vendor[32], cls[32], id[13];
		if (e->d_name[0] == '.' || bus_id_normalise(e->d_name, id))
			continue;
		if (read_sys_line(e->d_name, "vendor", vendor, sizeof(vendor)) ||
		    read_sys_line(e->d_name, "class", cls, sizeof(cls)))
			continue;
		if (strncmp(vendor, "0x10de", 6) || strncmp(cls, "0x03", 4))
			continue;
		if (!found || strcmp(id, out) < 0)
			memcpy(out, id, 13);
		found = 1;
	}
	closedir(d);
	return found ? 0 : -ENOENT;
}

int sw_pool_pci_node(const char *pci_bus_id, char found_bus_id[13])
{
	char id[13], line[32];
	int rc = pci_bus_id ? bus_id_normalise(pci_bus_id, id) : first_nvidia_gpu(id);
	if (rc)
		return -ENOENT;
	if (found_bus_id)
		memcpy(found_bus_id, id, 13);
	if (read_sys_line(id, "numa_node", line, sizeof(line)))
		return -ENOENT;
	int node = atoi(line);
	return node >= 0 ? node : -ENOENT;
}

sw_pool *sw_pool_create_near_gpu(int nthreads, const char *pci_bus_id, char *where, int len)
{
	int online = (int)sysconf(_SC_NPROCESSORS_CONF);
	int max = online > 0 ? online : 1;
	int *cpus = malloc((size_t)max * sizeof(int));
	if (!cpus)
		return NULL;
	int n = sw_pool_cpus_near_gpu(pci_bus_id, cpus, max, where, len);
	sw_pool *p = NULL;
	if (n > 0) {
		int t = nthreads > 0 ? nthreads : n;
		int *bind = malloc((size_t)t * sizeof(int));
		if (bind) {
			for (int i = 0; i < t; i++)
				bind[i] = cpus[i % n];
			p = sw_pool_create(t, bind);
			free(bind);
		}
	}
	free(cpus);
	return p;
}

int sw_pool_cpus_near_gpu(const char *pci_bus_id, int *cpus, int max, char *where, int len)
{
	char id[13] = "";
	int node = sw_pool_pci_node(pci_bus_id, id);
	if (node >= 0) {
		int n = sw_pool_cpus_of_node(node, cpus, max);
		if (n > 0) {
			if (where)
				snprintf(where, (size_t)len, "NUMA node %d (GPU %s)", node, id);
			return n;
		}
	}
	if (where)
		snprintf(where, (size_t)len, "all CPUs (%s)",
			 id[0] ? "the GPU's NUMA node is not known" : "no GPU found in /sys");
	return sw_pool_cpus_all(cpus, max);
}
