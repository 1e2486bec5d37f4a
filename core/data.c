/* Token files: streaming atomic writer, validating reader, deterministic micro-batch loader. */
#include "core/data.h"
#include "core/log.h"
#include "core/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ writer */

struct sw_tok_writer {
	char *path, *tmp;
	int fd;
	sw_tok_header h;
	uint8_t *mask;               /* bits, grown as tokens arrive */
	uint64_t mask_cap;
	uint8_t stage[1 << 16];
};

static int write_all(int fd, const void *p, uint64_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		n -= (uint64_t)w;
	}
	return 0;
}

int sw_tok_writer_begin(sw_tok_writer **out, const char *path, uint32_t token_bytes, uint32_t vocab,
			int with_mask)
{
	SW_ASSERT(token_bytes == 2 || token_bytes == 4);
	*out = NULL;
	sw_tok_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	size_t n = strlen(path);
	w->path = strdup(path);
	w->tmp = malloc(n + 16);
	if (!w->path || !w->tmp) {
		sw_tok_writer_abort(w);
		return -ENOMEM;
	}
	snprintf(w->tmp, n + 16, "%s.tmp-XXXXXX", path);
	w->fd = mkstemp(w->tmp);
	if (w->fd < 0) {
		int e = errno;
		w->tmp[0] = 0;
		sw_error("%s: cannot create (%s); check that the directory exists and is writable", path,
			 strerror(e));
		sw_tok_writer_abort(w);
		return -e;
	}
	memcpy(w->h.magic, SW_TOK_MAGIC, 8);
	w->h.version = SW_TOK_VERSION;
	w->h.token_bytes = token_bytes;
	w->h.flags = with_mask ? SW_TOK_MASK : 0;
	w->h.vocab = vocab;
	int rc = write_all(w->fd, &w->h, sizeof(w->h));   /* placeholder; rewritten at the end */
	if (rc) {
		sw_error("%s: write failed (%s); check free space", w->tmp, strerror(-rc));
		sw_tok_writer_abort(w);
		return rc;
	}
	*out = w;
	return 0;
}

void sw_tok_writer_set_fingerprint(sw_tok_writer *w, uint64_t fingerprint)
{
	w->h.tok_fingerprint = fingerprint;
}

int sw_tok_writer_append(sw_tok_writer *w, const uint32_t *tokens, const uint8_t *mask, uint64_t n)
{
	int with_mask = !!(w->h.flags & SW_TOK_MASK);
	SW_ASSERT(!with_mask == !mask);
	if (with_mask) {
		uint64_t need = (w->h.count + n + 7) / 8;
		if (need > w->mask_cap) {
			uint64_t cap = need * 2 + 4096;
			uint8_t *m = realloc(w->mask, cap);
			if (!m)
				return -ENOMEM;
			memset(m + w->mask_cap, 0, cap - w->mask_cap);
			w->mask = m;
			w->mask_cap = cap;
		}
	}
	uint32_t tb = w->h.token_bytes;
	uint64_t per = sizeof(w->stage) / tb;
	for (uint64_t i = 0; i < n; i += per) {
		uint64_t k = n - i < per ? n - i : per;
		for (uint64_t j = 0; j < k; j++) {
			uint32_t t = tokens[i + j];
			uint64_t at = w->h.count + i + j;
			if ((w->h.vocab && t >= w->h.vocab) || (tb == 2 && t > 0xffff)) {
				sw_error("%s: token %llu is %u, outside the vocabulary of %u; fix the tokenizer",
					 w->path, (unsigned long long)at, t, w->h.vocab ? w->h.vocab : 65536);
				return -ERANGE;
			}
			if (tb == 2) {
				uint16_t v = (uint16_t)t;
				memcpy(w->stage + 2 * j, &v, 2);
			} else {
				memcpy(w->stage + 4 * j, &t, 4);
			}
			if (with_mask && mask[i + j]) {
				w->mask[at / 8] |= (uint8_t)(1u << (at % 8));
				w->h.n_targets++;
			}
		}
		int rc = write_all(w->fd, w->stage, k * tb);
		if (rc) {
			sw_error("%s: write failed (%s); check free space", w->tmp, strerror(-rc));
			return rc;
		}
	}
	w->h.count += n;
	if (!with_mask)
		w->h.n_targets = w->h.count;
	return 0;
}

int sw_tok_writer_finish(sw_tok_writer *w)
{
	int rc = 0;
	if (w->h.flags & SW_TOK_MASK)
		rc = write_all(w->fd, w->mask ? w->mask : (const uint8_t *)"", (w->h.count + 7) / 8);
	if (!rc && pwrite(w->fd, &w->h, sizeof(w->h), 0) != (ssize_t)sizeof(w->h))
		rc = errno ? -errno : -EIO;
	if (!rc && fchmod(w->fd, 0644))
		rc = -errno;
	if (!rc && fsync(w->fd))
		rc = -errno;
	if (!rc) {
		int fd = w->fd;
		w->fd = -1;
		if (close(fd))
			rc = -errno;
	}
	if (!rc && rename(w->tmp, w->path))
		rc = -errno;
	if (rc) {
		sw_error("%s: cannot finish writing (%s); check free space and permissions", w->path,
			 strerror(-rc));
		sw_tok_writer_abort(w);
		return rc;
	}
	w->tmp[0] = 0;
	sw_tok_writer_abort(w);   /* frees */
	return 0;
}

void sw_tok_writer_abort(sw_tok_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp && w->tmp[0])
		unlink(w->tmp);
	free(w->path);
	free(w->tmp);
	free(w->mask);
	free(w);
}

/* ------------------------------------------------------------------ reader */

uint32_t sw_data_token(const sw_data *d, uint64_t i)
{
	if (d->h.token_bytes == 2) {
		uint16_t v;
		memcpy(&v, d->tokens + 2 * i, 2);
		return v;
	}
	uint32_t v;
	memcpy(&v, d->tokens + 4 * i, 4);
	return v;
}

int sw_data_is_target(const sw_data *d, uint64_t i)
{
	return !d->mask || (d->mask[i / 8] >> (i % 8) & 1);
}

int sw_data_parse(sw_data *d, const uint8_t *buf, uint64_t size, const char *what)
{
	memset(d, 0, sizeof(*d));
	d->map = buf;
	d->size = size;
	const char *fix = "re-create it with 'spillway data'";
	if (size < sizeof(sw_tok_header)) {
		sw_error("%s: %llu bytes, shorter than the 64-byte token file header; the file is "
			 "truncated: %s", what, (unsigned long long)size, fix);
		return -EINVAL;
	}
	memcpy(&d->h, buf, sizeof(d->h));
	const sw_tok_header *h = &d->h;
	if (memcmp(h->magic, SW_TOK_MAGIC, 8)) {
		sw_error("%s: bad magic (not a spillway token file); make one with 'spillway data'", what);
		return -EINVAL;
	}
	if (h->version != 1 && h->version != SW_TOK_VERSION) {
		sw_error("%s: token file version %u, this build reads versions 1 and %u; %s", what,
			 h->version, SW_TOK_VERSION, fix);
		return -EINVAL;
	}
	if (h->version == 1 && h->tok_fingerprint) {
		sw_error("%s: version 1 token file with a non-zero reserved field; the file is corrupt: %s",
			 what, fix);
		return -EINVAL;
	}
	if (h->token_bytes != 2 && h->token_bytes != 4) {
		sw_error("%s: token size %u bytes, must be 2 or 4; the file is corrupt: %s", what,
			 h->token_bytes, fix);
		return -EINVAL;
	}
	if (h->flags & ~SW_TOK_MASK) {
		sw_error("%s: unknown flags 0x%x; the file is corrupt: %s", what, h->flags, fix);
		return -EINVAL;
	}
	uint64_t body = size - sizeof(sw_tok_header);
	if (h->count > body / h->token_bytes) {
		sw_error("%s: header says %llu tokens, the file holds at most %llu; the file is "
			 "truncated: %s", what, (unsigned long long)h->count,
			 (unsigned long long)(body / h->token_bytes), fix);
		return -EINVAL;
	}
	uint64_t need = h->count * h->token_bytes + ((h->flags & SW_TOK_MASK) ? (h->count + 7) / 8 : 0);
	if (need != body) {
		sw_error("%s: %llu bytes after the header, expected %llu for %llu tokens%s; the file is "
			 "%s: %s", what, (unsigned long long)body, (unsigned long long)need,
			 (unsigned long long)h->count, (h->flags & SW_TOK_MASK) ? " and their mask" : "",
			 body < need ? "truncated" : "corrupt", fix);
		return -EINVAL;
	}
	d->tokens = buf + sizeof(sw_tok_header);
	d->mask = (h->flags & SW_TOK_MASK) ? d->tokens + h->count * h->token_bytes : NULL;
	uint64_t targets = 0;
	for (uint64_t i = 0; i < h->count; i++) {
		uint32_t t = sw_data_token(d, i);
		if (h->vocab && t >= h->vocab) {
			sw_error("%s: token %llu is %u, not below the stated vocabulary %u; the file is "
				 "corrupt: %s", what, (unsigned long long)i, t, h->vocab, fix);
			return -EINVAL;
		}
		targets += (uint64_t)sw_data_is_target(d, i);
		if (t > d->max_token)
			d->max_token = t;
	}
	if (d->mask && (h->count % 8) && (d->mask[h->count / 8] >> (h->count % 8))) {
		sw_error("%s: mask bits past the last token are set; the file is corrupt: %s", what, fix);
		return -EINVAL;
	}
	if (targets != h->n_targets) {
		sw_error("%s: header says %llu target tokens, the mask has %llu; the file is corrupt: %s",
			 what, (unsigned long long)h->n_targets, (unsigned long long)targets, fix);
		return -EINVAL;
	}
	return 0;
}

int sw_data_check_model(const sw_data *d, const char *what, uint32_t model_vocab, uint64_t model_tok_fingerprint,
			int force)
{
	if (d->h.count && d->max_token >= model_vocab) {
		sw_error("%s: token id %u is not below the model's vocab_size %u; tokenize with this model's "
			 "tokenizer ('spillway data --tokenizer MODEL_DIR')", what, d->max_token, model_vocab);
		return -EINVAL;
	}
	uint64_t fp = d->h.tok_fingerprint;
	if (force || fp == model_tok_fingerprint)
		return 0;
	if (!fp)
		sw_error("%s: made without a tokenizer (byte-level ids) but the model directory has a "
			 "tokenizer.json (%016llx); re-run 'spillway data --tokenizer MODEL_DIR', or pass "
			 "--force", what, (unsigned long long)model_tok_fingerprint);
	else if (!model_tok_fingerprint)
		sw_error("%s: made with tokenizer %016llx but the model directory has no tokenizer.json; "
			 "copy the tokenizer files beside config.json, or pass --force", what,
			 (unsigned long long)fp);
	else
		sw_error("%s: made with tokenizer %016llx but the model's tokenizer.json is %016llx; "
			 "re-run 'spillway data --tokenizer MODEL_DIR', or pass --force", what,
			 (unsigned long long)fp, (unsigned long long)model_tok_fingerprint);
	return -EINVAL;
}

int sw_data_open(sw_data *d, const char *path, int64_t seq_len, uint64_t seed)
{
	memset(d, 0, sizeof(*d));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		sw_error("%s: cannot open (%s); make a token file with 'spillway data'", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return -e;
	}
	uint64_t size = (uint64_t)st.st_size;
	void *p = NULL;
	if (size) {
		p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			int e = errno;
			close(fd);
			sw_error("%s: cannot mmap (%s)", path, strerror(e));
			return -e;
		}
	}
	close(fd);
	static const uint8_t empty[1];
	int rc = sw_data_parse(d, p ? p : empty, size, path);
	if (!rc && seq_len > 0 && d->h.count < (uint64_t)seq_len + 1) {
		sw_error("%s: %llu tokens, fewer than seq_len + 1 = %lld; use more data or a shorter "
			 "--seq-len", path, (unsigned long long)d->h.count, (long long)seq_len + 1);
		rc = -EINVAL;
	}
	if (rc) {
		if (p)
			munmap(p, size);
		memset(d, 0, sizeof(*d));
		return rc;
	}
	d->map = p;
	d->mapped = p != NULL;
	d->seq_len = seq_len;
	d->n_windows = seq_len > 0 ? (d->h.count - 1) / (uint64_t)seq_len : 0;
	d->seed = seed;
	return 0;
}

void sw_data_close(sw_data *d)
{
	if (d->mapped)
		munmap((void *)d->map, d->size);
	free(d->perm[0]);
	free(d->perm[1]);
	memset(d, 0, sizeof(*d));
}

/* The permutation of windows for an epoch (cached: two slots, by parity). */
static const uint64_t *epoch_perm(sw_data *d, uint64_t epoch)
{
	int s = (int)(epoch & 1);
	if (d->perm_valid[s] && d->perm_epoch[s] == epoch)
		return d->perm[s];
	uint64_t W = d->n_windows;
	if (!d->perm[s] && !(d->perm[s] = malloc(sizeof(uint64_t) * W)))
		return NULL;
	uint64_t *p = d->perm[s];
	for (uint64_t i = 0; i < W; i++)
		p[i] = i;
	sw_rng r;
	sw_rng_seed(&r, d->seed, 0x64617461ull + epoch);   /* "data" + epoch */
	for (uint64_t i = W - 1; i > 0; i--) {
		uint64_t j = sw_rng_below(&r, i + 1);
		uint64_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	d->perm_epoch[s] = epoch;
	d->perm_valid[s] = 1;
	return p;
}

int sw_data_next(sw_data *d, int64_t rows, int32_t *inputs, int32_t *targets)
{
	SW_ASSERT(d->n_windows > 0);
	int64_t T = d->seq_len;
	for (int64_t r = 0; r < rows; r++) {
		if (d->pos.index >= d->n_windows) {
			d->pos.epoch++;
			d->pos.index = 0;
		}
		const uint64_t *p = epoch_perm(d, d->pos.epoch);
		if (!p)
			return -ENOMEM;
		uint64_t start = p[d->pos.index++] * (uint64_t)T;
		for (int64_t t = 0; t < T; t++) {
			inputs[r * T + t] = (int32_t)sw_data_token(d, start + (uint64_t)t);
			uint64_t j = start + (uint64_t)t + 1;
			targets[r * T + t] = sw_data_is_target(d, j) ? (int32_t)sw_data_token(d, j)
								      : SW_IGNORE_INDEX;
		}
	}
	return 0;
}

int64_t sw_data_count_targets(sw_data *d, int64_t rows)
{
	SW_ASSERT(d->n_windows > 0);
	sw_data_pos pos = d->pos;
	int64_t T = d->seq_len, n = 0;
	for (int64_t r = 0; r < rows; r++) {
		if (pos.index >= d->n_windows) {
			pos.epoch++;
			pos.index = 0;
		}
		const uint64_t *p = epoch_perm(d, pos.epoch);
		if (!p)
			return -1;
		uint64_t start = p[pos.index++] * (uint64_t)T;
		if (!d->mask) {
			n += T;
			continue;
		}
		for (int64_t t = 1; t <= T; t++)
			n += sw_data_is_target(d, start + (uint64_t)t);
	}
	return n;
}

int sw_data_eval_mean(sw_data *d, int64_t rows, int32_t *inputs, int32_t *targets,
		      sw_data_eval_fn fn, void *ctx, double *out)
{
	int64_t T = d->seq_len, W = (int64_t)d->n_windows, tokens = 0;
	double sum = 0;
	d->pos = (sw_data_pos){ 0, 0 };
	for (int64_t b = 0; b < W; b += rows) {
		int64_t n = W - b < rows ? W - b : rows;
		int rc = sw_data_next(d, n, inputs, targets);
		if (rc)
			return rc;
		for (int64_t i = n * T; i < rows * T; i++) {
			inputs[i] = 0;
			targets[i] = SW_IGNORE_INDEX;
		}
		for (int64_t i = 0; i < n * T; i++)
			tokens += targets[i] >= 0;
		double s;
		if ((rc = fn(ctx, inputs, targets, &s)))
			return rc;
		sum += s;
	}
	*out = tokens ? sum / (double)tokens : NAN;
	return 0;
}
