/* The CUDA backend's memory, streams, events and copies: the budget is one arena that is never
 * exceeded; a budget larger than the free device memory (or too small for the backend's own
 * workspace) fails at create with -ENOMEM; pinned and registered host memory round-trips
 * through async copies; events order streams and time work. */
#include "core/backend.h"
#include "tests/check.h"

#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	if (sw_cuda_device_count() <= 0)
		SKIP("no CUDA device");
	size_t free_b, total_b;
	CHECK(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
	sw_backend *be = NULL;

	/* A budget over the free memory is refused with one line and -ENOMEM. */
	sw_backend_opts big = { .mem_budget = (uint64_t)total_b + (1ull << 30), .act = SW_DTYPE_BF16 };
	CHECK(sw_backend_create("cuda", &big, &be) == -ENOMEM);
	/* So is one too small for the backend's workspace. */
	sw_backend_opts tiny = { .mem_budget = 1ull << 20, .act = SW_DTYPE_BF16 };
	CHECK(sw_backend_create("cuda", &tiny, &be) == -ENOMEM);
	/* A device that does not exist. */
	sw_backend_opts nodev = { .mem_budget = 64ull << 20, .act = SW_DTYPE_BF16, .device = 99 };
	CHECK(sw_backend_create("cuda", &nodev, &be) == -ENODEV);

	/* 64 MiB arena: allocations stop at the budget, frees make room again. */
	sw_backend_opts o = { .mem_budget = 64ull << 20, .act = SW_DTYPE_BF16 };
	CHECK(sw_backend_create("cuda", &o, &be) == 0);
	CHECK(!strcmp(be->name, "cuda") && be->budget == 64ull << 20);
	const uint64_t reserved = be->used;
	CHECK(reserved > 0 && reserved < be->budget);
	void *p[128];
	int n = 0;
	while (n < 128 && be->ops->dev_alloc(be, 1ull << 20, &p[n]) == 0) {
		CHECK(((uintptr_t)p[n] & 255) == 0);
		CHECK(be->used <= be->budget);
		n++;
	}
	CHECKF(n < 128 && (uint64_t)n << 20 <= be->budget - reserved, "allocated %d MiB", n);
	CHECK(n >= 50);
	void *q;
	CHECK(be->ops->dev_alloc(be, 1ull << 20, &q) == -ENOMEM);
	for (int i = 0; i < n; i++)
		be->ops->dev_free(be, p[i]);
	be->ops->dev_free(be, NULL);
	CHECK(be->used == reserved && be->peak <= be->budget);
	int n2 = 0;
	while (n2 < 128 && be->ops->dev_alloc(be, 1ull << 20, &p[n2]) == 0)
		n2++;
	CHECK(n2 == n);
	for (int i = 0; i < n2; i++)
		be->ops->dev_free(be, p[i]);

	/* Pinned memory, two streams ordered by an event, timing. */
	const uint64_t bytes = 8ull << 20;
	sw_stream *s1, *s2;
	sw_event *e0, *e1;
	CHECK(be->ops->stream_create(be, &s1) == 0 && be->ops->stream_create(be, &s2) == 0);
	CHECK(be->ops->event_create(be, &e0) == 0 && be->ops->event_create(be, &e1) == 0);
	uint8_t *h, *back;
	CHECK(be->ops->host_alloc(be, bytes, (void **)&h) == 0);
	CHECK(be->ops->host_alloc(be, bytes, (void **)&back) == 0);
	for (uint64_t i = 0; i < bytes; i++)
		h[i] = (uint8_t)(i * 131 + 7);
	void *d, *d2;
	CHECK(be->ops->dev_alloc(be, bytes, &d) == 0 && be->ops->dev_alloc(be, bytes, &d2) == 0);
	be->ops->event_record(be, e0, s1);
	be->ops->memset0(be, s1, d, bytes);
	be->ops->copy_h2d(be, s1, d, h, bytes);
	be->ops->copy_d2d(be, s1, d2, d, bytes);
	be->ops->event_record(be, e1, s1);
	be->ops->stream_wait(be, s2, e1);
	be->ops->copy_d2h(be, s2, back, d2, bytes);
	be->ops->stream_sync(be, s2);
	CHECK(!memcmp(h, back, bytes));
	be->ops->event_sync(be, e1);
	CHECK(be->ops->event_done(be, e1) == 1);
	float ms = be->ops->event_ms(be, e0, e1);
	CHECKF(ms > 0 && ms < 1000, "event_ms %f", ms);

	/* Registered host memory (like the I/O arena) works for async copies. */
	uint8_t *reg = aligned_alloc(4096, bytes);
	CHECK(reg);
	memset(reg, 0, bytes);
	CHECK(be->ops->host_register(be, reg, bytes) == 0);
	be->ops->copy_d2h(be, s1, reg, d2, bytes);
	be->ops->stream_sync(be, s1);
	CHECK(!memcmp(reg, h, bytes));
	be->ops->host_unregister(be, reg);
	free(reg);

	/* pinned blocks of every size are 4 KiB aligned (NVMe I/O uses them with O_DIRECT; the
	 * runtime's own small blocks need not be), and hold their bytes */
	void *small[64];
	for (int i = 0; i < 64; i++) {
		uint64_t n = 1 + (uint64_t)i * 1531;      /* 1 B to ~94 KiB */
		CHECK(be->ops->host_alloc(be, n, &small[i]) == 0);
		CHECKF(((uintptr_t)small[i] & 4095) == 0, "host_alloc(%llu) at %p", (unsigned long long)n,
		       small[i]);
		memset(small[i], i, n);
	}
	for (int i = 0; i < 64; i++) {
		CHECK(((uint8_t *)small[i])[(uint64_t)i * 1531] == (uint8_t)i);
		be->ops->host_free(be, small[i]);
	}

	be->ops->host_free(be, h);
	be->ops->host_free(be, back);
	be->ops->dev_free(be, d);
	be->ops->dev_free(be, d2);
	be->ops->event_destroy(be, e0);
	be->ops->event_destroy(be, e1);
	be->ops->stream_destroy(be, s1);
	be->ops->stream_destroy(be, s2);
	sw_backend_destroy(be);

	/* "auto" picks cuda when a GPU is present. */
	CHECK(sw_backend_create("auto", &o, &be) == 0 && !strcmp(be->name, "cuda"));
	sw_backend_destroy(be);
	printf("arena, copies, streams and events ok (arena %llu MiB, reserve %llu KiB)\n",
	       (unsigned long long)(o.mem_budget >> 20), (unsigned long long)(reserved >> 10));
	return 0;
}
