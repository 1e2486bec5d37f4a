/* The thread pool's per-worker runs and binding, and the CPU lists the optimizer pool is bound
 * with (hwloc and /sys), including the fall-backs when a node or device does not exist. */
#include "core/pool.h"
#include "tests/check.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

struct each_ctx { atomic_int calls[1024]; int cpu[1024]; };

static void each_fn(void *ctx, int64_t task, int worker)
{
	struct each_ctx *c = ctx;
	CHECK(task == worker && worker >= 0 && worker < 1024);
	atomic_fetch_add(&c->calls[worker], 1);
	c->cpu[worker] = sched_getcpu();
}

static void sum_fn(void *ctx, int64_t task, int worker)
{
	(void)worker;
	atomic_fetch_add((atomic_llong *)ctx, task + 1);
}

int main(void)
{
	int cpus[1024];
	int n = sw_pool_cpus_all(cpus, 1024);
	CHECKF(n >= 1, "sw_pool_cpus_all: %d", n);
	cpu_set_t mine;
	CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
	CHECK(n == CPU_COUNT(&mine));
	for (int i = 0; i < n; i++) {
		CHECKF(CPU_ISSET(cpus[i], &mine), "cpu %d is not in this process's affinity", cpus[i]);
		for (int j = 0; j < i; j++)
			CHECK(cpus[i] != cpus[j]);
	}
	CHECK(sw_pool_cpus_all(cpus, 1) == 1);
	int nn = sw_pool_cpus_of_node(0, cpus, 1024);
	CHECKF(nn >= 1 || nn == -ENOENT, "node 0: %d", nn);
	CHECK(sw_pool_cpus_of_node(9999, cpus, 1024) == -ENOENT);
	CHECK(sw_pool_cpus_of_node(-1, cpus, 1024) == -ENOENT);
	CHECK(sw_pool_pci_node("not-a-bus-id", NULL) == -ENOENT);
	CHECK(sw_pool_pci_node("0000:ff:1f.7", NULL) == -ENOENT);
	char where[128] = "";
	int ng = sw_pool_cpus_near_gpu("0000:ff:1f.7", cpus, 1024, where, sizeof(where));
	CHECK(ng == n && strstr(where, "all CPUs"));
	ng = sw_pool_cpus_near_gpu(NULL, cpus, 1024, where, sizeof(where));
	CHECK(ng >= 1);
	printf("optimizer CPUs: %d, %s\n", ng, where);

	/* per-worker runs, bound to the list (cycled when there are more threads than CPUs) */
	n = sw_pool_cpus_all(cpus, 1024);
	int bind[4];
	for (int i = 0; i < 4; i++)
		bind[i] = cpus[i % n];
	sw_pool *p = sw_pool_create(4, bind);
	CHECK(p && sw_pool_threads(p) == 4);
	/* the caller is now bound to bind[0]: the lists still cover the whole process */
	int again[1024];
	CHECK(sw_pool_cpus_all(again, 1024) == n);
	for (int round = 0; round < 3; round++) {
		struct each_ctx c;
		memset(&c, 0, sizeof(c));
		sw_pool_run_each(p, each_fn, &c);
		for (int w = 0; w < 4; w++) {
			CHECK(atomic_load(&c.calls[w]) == 1);
			CHECKF(c.cpu[w] == bind[w], "worker %d ran on cpu %d, bound to %d", w, c.cpu[w],
			       bind[w]);
		}
		atomic_llong sum = 0;
		sw_pool_run(p, sum_fn, &sum, 1000);
		CHECK(sum == 1000 * 1001 / 2);
	}
	sw_pool_destroy(p);
	cpu_set_t after;
	CHECK(sched_getaffinity(0, sizeof(after), &after) == 0);
	CHECK(CPU_EQUAL(&after, &mine));   /* the caller's affinity is back */

	/* the optimizer pool: one worker per CPU of the list by default */
	p = sw_pool_create_near_gpu(0, NULL, where, sizeof(where));
	CHECK(p && sw_pool_threads(p) == ng);
	struct each_ctx c0;
	memset(&c0, 0, sizeof(c0));
	sw_pool_run_each(p, each_fn, &c0);
	for (int w = 0; w < ng && w < 1024; w++)
		CHECK(atomic_load(&c0.calls[w]) == 1);
	sw_pool_destroy(p);
	p = sw_pool_create_near_gpu(3, "0000:ff:1f.7", where, sizeof(where));
	CHECK(p && sw_pool_threads(p) == 3 && strstr(where, "all CPUs"));
	sw_pool_destroy(p);

	p = sw_pool_create(1, NULL);
	struct each_ctx c;
	memset(&c, 0, sizeof(c));
	sw_pool_run_each(p, each_fn, &c);
	CHECK(atomic_load(&c.calls[0]) == 1);
	sw_pool_destroy(p);
	return 0;
}
