/* Tiny test helpers: a failed CHECK prints file, line and the expression and exits 1.
 * A test exits 0 on pass, 1 on fail, 77 on skip (SKIP prints the reason). */
#ifndef SW_TESTS_CHECK_H
#define SW_TESTS_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)
#define SKIP(...) do { printf("skip: " __VA_ARGS__); putchar('\n'); exit(77); } while (0)

/* ||a - b|| / ||b|| in double; 0 when both are zero. */
static inline double check_rel_err_f32(const float *a, const float *b, long n)
{
	double num = 0, den = 0;
	for (long i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		num += d * d;
		den += (double)b[i] * (double)b[i];
	}
	if (num != num) return INFINITY;
	return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
