/* Token files and the loader: format validation, windows and targets from the definition,
 * each window once per epoch, determinism, bit-identical resume, target counts; the RNG. */
#include "core/data.h"
#include "core/rng.h"
#include "tests/check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 1001        /* tokens: token i has id i */
#define T 10          /* seq_len: W = 100 windows */

static int is_target(uint64_t i) { return i % 7 != 3; }   /* the mask written below */

int main(void)
{
	/* RNG: splitmix64's published first output for state 0; xoshiro below() in range */
	uint64_t x = 0;
	CHECK(sw_splitmix64(&x) == 0xE220A8397B1DCDAFull);
	sw_rng r;
	sw_rng_seed(&r, 42, 0);
	double s1 = 0, s2 = 0;
	for (int i = 0; i < 20000; i++) {
		CHECK(sw_rng_below(&r, 7) < 7);
		double a, b;
		sw_rng_normal2(&r, &a, &b);
		s1 += a + b;
		s2 += a * a + b * b;
	}
	CHECK(fabs(s1 / 40000) < 0.02 && fabs(s2 / 40000 - 1) < 0.03);

	char path[] = "/tmp/sw-test-data-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	unlink(path);   /* the writer creates it */
	uint32_t tok[N];
	uint8_t mask[N];
	for (uint32_t i = 0; i < N; i++) {
		tok[i] = i;
		mask[i] = (uint8_t)is_target(i);
	}
	sw_tok_writer *w;
	CHECK(sw_tok_writer_begin(&w, path, 2, 2000, 1) == 0);
	CHECK(sw_tok_writer_append(w, tok, mask, 500) == 0);
	CHECK(sw_tok_writer_append(w, tok + 500, mask + 500, N - 500) == 0);
	uint32_t big = 2000;
	uint8_t one = 1;
	CHECK(sw_tok_writer_append(w, &big, &one, 1) == -ERANGE);     /* id >= vocab */
	CHECK(sw_tok_writer_finish(w) == 0);

	sw_data a, b;
	CHECK(sw_data_open(&a, path, T, 7) == 0);
	CHECK(a.h.count == N && a.n_windows == 100 && a.h.token_bytes == 2 && a.mask && a.max_token == N - 1);
	int seen[100] = { 0 };
	int32_t in[3 * T], tg[3 * T];
	int64_t counted = sw_data_count_targets(&a, 100);
	int64_t real = 0;
	for (int step = 0; step < 100; step++) {
		CHECK(sw_data_next(&a, 1, in, tg) == 0);
		int64_t start = in[0];
		CHECK(start % T == 0 && start / T < 100);
		seen[start / T]++;
		for (int t = 0; t < T; t++) {
			CHECK(in[t] == start + t);
			uint64_t j = (uint64_t)(start + t + 1);
			CHECK(tg[t] == (is_target(j) ? (int32_t)j : -100));
			real += tg[t] != -100;
		}
	}
	CHECK(counted == real);
	for (int i = 0; i < 100; i++)
		CHECK(seen[i] == 1);                                  /* every window once per epoch */
	CHECK(a.pos.epoch == 0 && a.pos.index == 100);

	/* determinism and resume across the epoch boundary */
	sw_data_close(&a);
	CHECK(sw_data_open(&a, path, T, 7) == 0);
	CHECK(sw_data_open(&b, path, T, 7) == 0);
	for (int i = 0; i < 33; i++) {
		CHECK(sw_data_next(&a, 3, in, tg) == 0);              /* 99 rows */
		int32_t in2[3 * T], tg2[3 * T];
		CHECK(sw_data_next(&b, 3, in2, tg2) == 0);
		CHECK(!memcmp(in, in2, sizeof(in)) && !memcmp(tg, tg2, sizeof(tg)));
	}
	sw_data_pos pos = sw_data_get_pos(&a);
	int32_t ref_in[40 * T], ref_tg[40 * T], got_in[40 * T], got_tg[40 * T];
	int64_t want_count = sw_data_count_targets(&a, 40);
	CHECK(sw_data_next(&a, 40, ref_in, ref_tg) == 0);             /* crosses into epoch 1 */
	CHECK(a.pos.epoch == 1 && a.pos.index == 39);
	int64_t c2 = 0;
	for (int i = 0; i < 40 * T; i++)
		c2 += ref_tg[i] != -100;
	CHECK(want_count == c2);
	sw_data c;
	CHECK(sw_data_open(&c, path, T, 7) == 0);
	sw_data_set_pos(&c, pos);
	CHECK(sw_data_next(&c, 40, got_in, got_tg) == 0);
	CHECK(!memcmp(ref_in, got_in, sizeof(ref_in)) && !memcmp(ref_tg, got_tg, sizeof(ref_tg)));
	sw_data_close(&c);
	/* another seed: another order */
	CHECK(sw_data_open(&c, path, T, 8) == 0);
	int32_t o1[100], o2[100], t1[100];
	sw_data_close(&b);
	CHECK(sw_data_open(&b, path, T, 7) == 0);
	CHECK(sw_data_next(&b, 10, o1, t1) == 0 && sw_data_next(&c, 10, o2, t1) == 0);
	CHECK(memcmp(o1, o2, sizeof(o1)) != 0);
	sw_data_close(&a);
	sw_data_close(&b);
	sw_data_close(&c);

	/* malformed images: bad magic, truncated, bad version, stray bytes, vocab, n_targets */
	FILE *f = fopen(path, "rb");
	static uint8_t buf[8192];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	CHECK(n == 64 + 2 * N + (N + 7) / 8);
	CHECK(sw_data_parse(&a, buf, n, "img") == 0);
	CHECK(sw_data_parse(&a, buf, n - 1, "img") == -EINVAL);
	CHECK(sw_data_parse(&a, buf, 63, "img") == -EINVAL);
	static uint8_t bad[8192];
	memcpy(bad, buf, n);
	bad[9] = 'X';
	bad[0] = 'X';
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	memcpy(bad, buf, n);
	bad[8] = 3;                                                   /* version */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	memcpy(bad, buf, n);
	bad[8] = 1;                                                   /* version 1 still reads */
	CHECK(sw_data_parse(&a, bad, n, "img") == 0 && a.h.tok_fingerprint == 0);
	bad[40] = 1;                                                  /* ... with its reserved bytes 0 */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	memcpy(bad, buf, n);
	bad[12] = 3;                                                  /* token size */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	memcpy(bad, buf, n);
	bad[64] = 0xff;
	bad[65] = 0xff;                                               /* id 65535 >= vocab 2000 */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	memcpy(bad, buf, n);
	bad[n - 1] ^= 0x01;                                           /* mask disagrees with n_targets */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	bad[n - 1] ^= 0x11;                                           /* padding bit set */
	CHECK(sw_data_parse(&a, bad, n, "img") == -EINVAL);
	CHECK(sw_data_parse(&a, buf, n + 1, "img") == -EINVAL);      /* trailing byte */
	CHECK(sw_data_open(&a, path, 1001, 0) == -EINVAL);           /* seq_len + 1 > count */
	CHECK(sw_data_open(&a, "/nonexistent/x.tok", 4, 0) == -ENOENT);
	unlink(path);

	/* the tokenizer fingerprint and the model check */
	CHECK(sw_tok_writer_begin(&w, path, 2, 2000, 0) == 0);
	sw_tok_writer_set_fingerprint(w, 0x1234abcdull);
	CHECK(sw_tok_writer_append(w, tok, NULL, 100) == 0);
	CHECK(sw_tok_writer_finish(w) == 0);
	CHECK(sw_data_open(&a, path, 4, 0) == 0 && a.h.version == 2 && a.h.tok_fingerprint == 0x1234abcdull);
	CHECK(sw_data_check_model(&a, path, 100, 0x1234abcdull, 0) == 0);
	CHECK(sw_data_check_model(&a, path, 99, 0x1234abcdull, 0) == -EINVAL);   /* id 99 >= vocab 99 */
	CHECK(sw_data_check_model(&a, path, 99, 0x1234abcdull, 1) == -EINVAL);   /* --force: ids still checked */
	CHECK(sw_data_check_model(&a, path, 100, 0x1234abceull, 0) == -EINVAL);
	CHECK(sw_data_check_model(&a, path, 100, 0, 0) == -EINVAL);
	CHECK(sw_data_check_model(&a, path, 100, 0x1234abceull, 1) == 0);
	sw_data_close(&a);
	unlink(path);

	/* u32 tokens, no mask: every target counts */
	CHECK(sw_tok_writer_begin(&w, path, 4, 0, 0) == 0);
	uint32_t t32[5] = { 70000, 1, 2, 3, 4 };
	CHECK(sw_tok_writer_append(w, t32, NULL, 5) == 0);
	CHECK(sw_tok_writer_finish(w) == 0);
	CHECK(sw_data_open(&a, path, 2, 0) == 0 && a.n_windows == 2 && !a.mask && a.h.n_targets == 5);
	CHECK(sw_data_count_targets(&a, 3) == 6);
	CHECK(sw_data_next(&a, 1, in, tg) == 0 && (in[0] == 70000 || in[0] == 2));
	sw_data_close(&a);
	unlink(path);
	/* an aborted writer leaves nothing */
	CHECK(sw_tok_writer_begin(&w, path, 2, 0, 0) == 0);
	sw_tok_writer_abort(w);
	CHECK(access(path, F_OK) != 0);
	return 0;
}
