#include "core/suballoc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SW_ALIGN 256u

int sw_suballoc_init(sw_suballoc *a, uint64_t size)
{
	memset(a, 0, sizeof(*a));
	a->cap = 64;
	a->b = malloc(sizeof(*a->b) * (size_t)a->cap);
	if (!a->b)
		return -ENOMEM;
	a->size = size;
	a->n = 1;
	a->b[0] = (sw_suballoc_block){ 0, size, 0 };
	return 0;
}

void sw_suballoc_free_all(sw_suballoc *a)
{
	free(a->b);
	memset(a, 0, sizeof(*a));
}

int sw_suballoc_alloc(sw_suballoc *a, uint64_t bytes, uint64_t *off)
{
	bytes = (bytes + SW_ALIGN - 1) / SW_ALIGN * SW_ALIGN;
	if (!bytes)
		bytes = SW_ALIGN;
	for (int i = 0; i < a->n; i++) {
		sw_suballoc_block *blk = &a->b[i];
		if (blk->used || blk->size < bytes)
			continue;
		if (blk->size > bytes) {
			if (a->n == a->cap) {
				sw_suballoc_block *nb = realloc(a->b, sizeof(*nb) * (size_t)a->cap * 2);
				if (!nb)
					return -ENOMEM;
				a->b = nb;
				a->cap *= 2;
				blk = &a->b[i];
			}
			memmove(&a->b[i + 2], &a->b[i + 1], sizeof(*blk) * (size_t)(a->n - i - 1));
			a->b[i + 1] = (sw_suballoc_block){ blk->off + bytes, blk->size - bytes, 0 };
			blk->size = bytes;
			a->n++;
		}
		blk->used = 1;
		a->used += bytes;
		if (a->used > a->peak)
			a->peak = a->used;
		*off = blk->off;
		return 0;
	}
	return -ENOMEM;
}

static void merge_next(sw_suballoc *a, int i)
{
	if (i < 0 || i + 1 >= a->n || a->b[i].used || a->b[i + 1].used)
		return;
	a->b[i].size += a->b[i + 1].size;
	memmove(&a->b[i + 1], &a->b[i + 2], sizeof(a->b[0]) * (size_t)(a->n - i - 2));
	a->n--;
}

int sw_suballoc_release(sw_suballoc *a, uint64_t off)
{
	int lo = 0, hi = a->n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (a->b[mid].off < off)
			lo = mid + 1;
		else if (a->b[mid].off > off)
			hi = mid - 1;
		else {
			if (!a->b[mid].used)
				return -EINVAL;
			a->b[mid].used = 0;
			a->used -= a->b[mid].size;
			merge_next(a, mid);
			merge_next(a, mid - 1);
			return 0;
		}
	}
	return -EINVAL;
}
