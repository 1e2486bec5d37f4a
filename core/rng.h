/* The deterministic random number generator used by init, the data loader and the tests.
 *
 * xoshiro256** (Blackman & Vigna, 2018) seeded through splitmix64: a seed s and a stream number
 * k give the state s[i] = splitmix64 outputs starting from x = s ^ (k * 0xD1B54A32D192ED03),
 * so independent streams (one per tensor, one per epoch) come from one user seed and do not
 * depend on the order in which they are used. The state is four plain integers: saving and
 * restoring it resumes the sequence bit-identically.
 *
 *   uniform:  (next() >> 11) * 2^-53, in [0, 1)
 *   below(n): unbiased integer in [0, n) by rejection (Lemire's multiply-shift)
 *   normal:   Box-Muller pairs, z0 = r cos(2 pi u2), z1 = r sin(2 pi u2) with
 *             r = sqrt(-2 ln(1 - u1)); sw_rng_fill_normal_f32 writes z0, z1 in that order.
 * Values are computed in double with the C library's log/sqrt/sin/cos (glibc: identical on
 * every x86-64 machine), then rounded to float. */
#ifndef SW_CORE_RNG_H
#define SW_CORE_RNG_H
#include <math.h>
#include <stdint.h>

typedef struct sw_rng { uint64_t s[4]; } sw_rng;

static inline uint64_t sw_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Seeds stream 'stream' of seed 'seed'. */
static inline void sw_rng_seed(sw_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
	for (int i = 0; i < 4; i++)
		r->s[i] = sw_splitmix64(&x);
}

static inline uint64_t sw_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t sw_rng_next(sw_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = sw_rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = sw_rng_rotl(s[3], 45);
	return result;
}

static inline double sw_rng_uniform(sw_rng *r)
{
	return (double)(sw_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias. */
static inline uint64_t sw_rng_below(sw_rng *r, uint64_t n)
{
	unsigned __int128 m = (unsigned __int128)sw_rng_next(r) * n;
	uint64_t lo = (uint64_t)m;
	if (lo < n) {
		uint64_t threshold = (0 - n) % n;
		while (lo < threshold) {
			m = (unsigned __int128)sw_rng_next(r) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

/* One Box-Muller pair of standard normal values. */
static inline void sw_rng_normal2(sw_rng *r, double *z0, double *z1)
{
	double u1 = sw_rng_uniform(r), u2 = sw_rng_uniform(r);
	double rad = sqrt(-2.0 * log(1.0 - u1)), th = 6.283185307179586 * u2;
	*z0 = rad * cos(th);
	*z1 = rad * sin(th);
}

/* out[i] = (float)(mean + std * z_i) for n values (pairs; the last odd one drops its z1). */
static inline void sw_rng_fill_normal_f32(sw_rng *r, float *out, int64_t n, double mean, double std)
{
	for (int64_t i = 0; i < n; i += 2) {
		double z0, z1;
		sw_rng_normal2(r, &z0, &z1);
		out[i] = (float)(mean + std * z0);
		if (i + 1 < n)
			out[i + 1] = (float)(mean + std * z1);
	}
}
#endif
