/* libFuzzer target: the token file validator (sw_data_parse). Anything accepted must read back
 * within bounds: every token, every mask bit. */
#include "core/data.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sw_data d;
	if (sw_data_parse(&d, data, size, "fuzz"))
		return 0;
	uint64_t targets = 0;
	for (uint64_t i = 0; i < d.h.count; i++) {
		if (d.h.vocab && sw_data_token(&d, i) >= d.h.vocab)
			abort();
		targets += (uint64_t)sw_data_is_target(&d, i);
	}
	if (targets != d.h.n_targets)
		abort();
	return 0;
}
