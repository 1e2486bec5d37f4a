/* IEEE binary16 <-> binary32 conversions (F16 checkpoints). Exact in the f16 -> f32 direction;
 * f32 -> f16 rounds to nearest even, overflows to infinity and keeps NaN a quiet NaN. */
#include "core/dtype.h"

float sw_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
	if (exp == 0x1f) {                      /* inf / NaN */
		u = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {                  /* normal */
		u = sign | ((exp + 112u) << 23) | (man << 13);
	} else if (man == 0) {                  /* +-0 */
		u = sign;
	} else {                                /* subnormal: renormalise */
		int e = -1;
		do {
			man <<= 1;
			e++;
		} while (!(man & 0x400u));
		u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t sw_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)                    /* NaN: keep quiet, keep top payload bits */
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x477ff000u)                   /* >= 65520: rounds to infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) {                  /* below 2^-14: subnormal or zero */
		if (a < 0x33000000u)            /* below 2^-25: rounds to zero (ties-to-even) */
			return sign;
		uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e;       /* 14..24 */
		uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(sign | q);
	}
	/* normal: rebias and round the 13 dropped bits to nearest even (carry into exp is right) */
	uint32_t v = a - 0x38000000u;
	v += 0xfffu + ((v >> 13) & 1);
	return (uint16_t)(sign | (v >> 13));
}
