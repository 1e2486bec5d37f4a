/* Size parsing (units, case, errors) and the arena sub-allocator. */
#include "core/cli.h"
#include "core/suballoc.h"
#include "tests/check.h"

#include <errno.h>
#include <stdint.h>

static uint64_t size_of(const char *s)
{
	uint64_t v = 0;
	CHECKF(sw_parse_size(s, &v) == 0, "'%s' should parse", s);
	return v;
}

int main(void)
{
	CHECK(size_of("4096") == 4096);
	CHECK(size_of("24GiB") == 24ull << 30);
	CHECK(size_of("24gib") == 24ull << 30);
	CHECK(size_of("512 MiB") == 512ull << 20);
	CHECK(size_of("1.5TB") == 1500000000000ull);
	CHECK(size_of("2KB") == 2000);
	CHECK(size_of("3k") == 3072);
	CHECK(size_of("1TiB") == 1ull << 40);
	uint64_t v;
	CHECK(sw_parse_size("GiB", &v) == -EINVAL);
	CHECK(sw_parse_size("", &v) == -EINVAL);
	CHECK(sw_parse_size("12XB", &v) == -EINVAL);
	CHECK(sw_parse_size("-1GiB", &v) == -EINVAL);
	CHECK(sw_parse_size("1e30TiB", &v) == -ERANGE);

	sw_suballoc a;
	uint64_t o1, o2, o3, o4;
	CHECK(sw_suballoc_init(&a, 4096) == 0);
	CHECK(sw_suballoc_alloc(&a, 1000, &o1) == 0 && o1 == 0);
	CHECK(sw_suballoc_alloc(&a, 1, &o2) == 0 && o2 == 1024);   /* 256-aligned */
	CHECK(sw_suballoc_alloc(&a, 3000, &o3) == -ENOMEM);         /* 2816 left */
	CHECK(sw_suballoc_alloc(&a, 2816, &o3) == 0 && o3 == 1280);
	CHECK(a.used == 4096 && a.peak == 4096);
	CHECK(sw_suballoc_release(&a, o2) == 0);
	CHECK(sw_suballoc_release(&a, o2) == -EINVAL);
	CHECK(sw_suballoc_release(&a, o1) == 0);                    /* coalesces with o2's block */
	CHECK(sw_suballoc_alloc(&a, 1280, &o4) == 0 && o4 == 0);
	CHECK(sw_suballoc_release(&a, o3) == 0 && sw_suballoc_release(&a, o4) == 0);
	CHECK(a.used == 0 && a.n == 1);
	sw_suballoc_free_all(&a);
	return 0;
}
