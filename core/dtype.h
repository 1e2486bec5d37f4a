/* Element types and the bf16 conversions every backend shares. */
#ifndef SW_CORE_DTYPE_H
#define SW_CORE_DTYPE_H
#include <stdint.h>
#include <string.h>

typedef enum { SW_DTYPE_F32, SW_DTYPE_BF16, SW_DTYPE_F16, SW_DTYPE_COUNT } sw_dtype;

static inline int sw_dtype_size(sw_dtype t) { return t == SW_DTYPE_F32 ? 4 : 2; }
static inline const char *sw_dtype_name(sw_dtype t)
{
	return t == SW_DTYPE_F32 ? "F32" : t == SW_DTYPE_BF16 ? "BF16" : "F16";
}

typedef uint16_t sw_bf16;

/* fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. Same rule as the GPU's
 * __float2bfloat16_rn and PyTorch's conversion. */
static inline sw_bf16 sw_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (sw_bf16)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (sw_bf16)(u >> 16);
}

static inline float sw_bf16_to_f32(sw_bf16 h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Rounds an fp32 value to the nearest bf16 value, kept in fp32. */
static inline float sw_round_bf16(float f) { return sw_bf16_to_f32(sw_f32_to_bf16(f)); }

/* IEEE half -> fp32 (for reading F16 checkpoints). */
float sw_f16_to_f32(uint16_t h);
uint16_t sw_f32_to_f16(float f);
#endif
