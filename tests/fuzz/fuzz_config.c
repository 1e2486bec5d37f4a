/* libFuzzer target: the config.json parser (sw_config_parse), and, for every config it accepts,
 * the tensor table, the parameter counts and the RoPE frequencies (which must not overflow). */
#include "core/config.h"
#include "core/tensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sw_config c;
	if (sw_config_parse(&c, (const char *)data, size, "fuzz"))
		return 0;
	if (sw_config_total_params(&c) <= 0)
		abort();
	if (c.head_dim <= 4096) {
		float inv[2048];
		sw_config_rope_inv_freq(&c, inv);
	}
	if (sw_config_total_params(&c) < (1ll << 28)) {   /* keep the table small enough to build */
		sw_table tt;
		if (sw_table_build(&tt, &c) == 0) {
			if (tt.total != sw_config_total_params(&c))
				abort();
			sw_table_free(&tt);
		}
	}
	return 0;
}
