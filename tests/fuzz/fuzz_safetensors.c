/* libFuzzer target: the safetensors header parser (sw_st_parse) on arbitrary file images.
 * Anything accepted must be self-consistent: every range inside the data region. */
#include "core/safetensors.h"
#include "core/log.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sw_st_file f;
	if (sw_st_parse(&f, data, size, "fuzz") == 0) {
		for (int i = 0; i < f.n; i++) {
			const sw_st_tensor *t = &f.t[i];
			if (t->end < t->begin || f.data_off + t->end > size ||
			    (uint64_t)t->numel * (uint64_t)sw_dtype_size(t->dtype) != t->end - t->begin)
				abort();
			volatile uint8_t sink = 0;   /* touch the first and last byte of each tensor */
			if (t->end > t->begin)
				sink ^= ((const uint8_t *)sw_st_data(&f, t))[0] ^
					((const uint8_t *)sw_st_data(&f, t))[t->end - t->begin - 1];
			(void)sink;
		}
		sw_st_close(&f);
	}
	return 0;
}
