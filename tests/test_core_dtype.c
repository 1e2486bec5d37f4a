/* F16 <-> F32 against the definition of binary16 (exhaustive), round-to-nearest-even at every
 * midpoint, overflow, NaN; BF16 rounding through sw_convert. */
#include "core/dtype.h"
#include "core/safetensors.h"
#include "tests/check.h"

#include <math.h>
#include <string.h>

/* binary16 by definition: (-1)^s 2^(e-15) (1 + m/1024), subnormal 2^-14 m/1024. */
static double f16_value(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
	return s ? -v : v;
}

int main(void)
{
	for (uint32_t h = 0; h < 65536; h++) {
		double ref = f16_value((uint16_t)h);
		float f = sw_f16_to_f32((uint16_t)h);
		if (isnan(ref)) {
			CHECK(isnan(f));
			CHECK((sw_f32_to_f16(f) & 0x7e00) == 0x7e00);   /* stays a (quiet) NaN */
			continue;
		}
		CHECKF((double)f == ref && !!signbit(f) == !!signbit(ref), "h=%04x", h);
		CHECKF(sw_f32_to_f16(f) == h, "round trip h=%04x", h);
		/* midpoint to the next value up in magnitude: ties go to the even one */
		if ((h & 0x7fff) < 0x7bff) {
			double next = f16_value((uint16_t)(h + 1)), mid = (ref + next) / 2;
			uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
			CHECKF(sw_f32_to_f16((float)mid) == even, "midpoint after h=%04x", h);
			CHECK(sw_f32_to_f16(nextafterf((float)mid, 0)) == h);
			CHECK(sw_f32_to_f16(nextafterf((float)mid, (float)(2 * next))) == h + 1);
		}
	}
	CHECK(sw_f32_to_f16(65504.0f) == 0x7bff);
	CHECK(sw_f32_to_f16(65519.99f) == 0x7bff);
	CHECK(sw_f32_to_f16(65520.0f) == 0x7c00);
	CHECK(sw_f32_to_f16(-1e10f) == 0xfc00);
	CHECK(sw_f32_to_f16(ldexpf(1, -25)) == 0);         /* tie between 0 and the smallest: 0 */
	CHECK(sw_f32_to_f16(ldexpf(1.5f, -25)) == 1);

	/* sw_convert: bf16 round-to-nearest-even, f16 -> bf16 via the exact f32 */
	float src[4] = { 1.0f, 1.00390625f, 1.01171875f, -3.0f };   /* 1+2^-8 ties down, 1+3*2^-8 up */
	uint16_t bf[4], h[4];
	sw_convert(bf, SW_DTYPE_BF16, src, SW_DTYPE_F32, 4);
	CHECK(bf[0] == 0x3f80 && bf[1] == 0x3f80 && bf[2] == 0x3f82 && bf[3] == 0xc040);
	sw_convert(h, SW_DTYPE_F16, src, SW_DTYPE_F32, 4);
	float back[4];
	sw_convert(back, SW_DTYPE_F32, h, SW_DTYPE_F16, 4);
	CHECK(!memcmp(back, src, sizeof(src)));                    /* all four are exact in f16 */
	sw_convert(bf, SW_DTYPE_BF16, h, SW_DTYPE_F16, 4);
	CHECK(bf[2] == 0x3f82);
	return 0;
}
