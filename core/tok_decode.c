/* Decoding ids to text with a loaded Hugging Face tokenizer: ids -> token strings -> the decoder
 * chain (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip), joined, as the Rust
 * `tokenizers` crate's Tokenizer::decode does. */
#include "core/tok_internal.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct tok_str {
	char *s;
	size_t n;
} tok_str;

typedef struct tok_list {
	tok_str *v;
	size_t n, cap;
} tok_list;

typedef struct tok_buf {
	char *s;
	size_t n, cap;
} tok_buf;

static int buf_put(tok_buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 64;
		while (c < b->n + n + 1)
			c *= 2;
		char *t = realloc(b->s, c);
		if (!t)
			return -ENOMEM;
		b->s = t;
		b->cap = c;
	}
	if (n)
		memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
	return 0;
}

/* Moves buffer b (possibly empty) into the list as a new string. */
static int list_take(tok_list *l, tok_buf *b)
{
	if (!b->s && buf_put(b, "", 0))
		return -ENOMEM;
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 64;
		tok_str *v = realloc(l->v, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = c;
	}
	l->v[l->n++] = (tok_str){ b->s, b->n };
	memset(b, 0, sizeof(*b));
	return 0;
}

static void list_free(tok_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].s);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

const char *tok_bytelevel_char(unsigned b, size_t *len);

/* Byte for a ByteLevel character, -1 if the character is not one of the 256. */
static int bytelevel_byte(uint32_t cp)
{
	static int16_t rev[324];
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		int16_t t[324];
		for (int i = 0; i < 324; i++)
			t[i] = -1;
		for (unsigned b = 0; b < 256; b++) {
			size_t l;
			const char *c = tok_bytelevel_char(b, &l);
			utf8proc_int32_t v;
			utf8proc_iterate((const utf8proc_uint8_t *)c, (utf8proc_ssize_t)l, &v);
			t[v] = (int16_t)b;
		}
		memcpy(rev, t, sizeof(t));
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	return cp < 324 ? rev[cp] : -1;
}

/* Appends s as UTF-8 with each maximal invalid subpart replaced by U+FFFD (Rust's from_utf8_lossy). */
static int put_lossy(tok_buf *b, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
		size_t k = 1;
		if (need > 1) {
			for (; k < need && i + k < n; k++) {
				unsigned char d = (unsigned char)s[i + k];
				unsigned char lo = 0x80, hi = 0xBF;
				if (k == 1) {
					if (c == 0xE0)
						lo = 0xA0;
					else if (c == 0xED)
						hi = 0x9F;
					else if (c == 0xF0)
						lo = 0x90;
					else if (c == 0xF4)
						hi = 0x8F;
				}
				if (d < lo || d > hi)
					break;
			}
		}
		int rc;
		if (need && k == need)
			rc = buf_put(b, s + i, need);
		else
			rc = buf_put(b, "\xEF\xBF\xBD", 3);
		if (rc)
			return rc;
		i += need && k == need ? need : k;
	}
	return 0;
}

static int dec_bytelevel(tok_list *in, tok_list *out)
{
	tok_buf raw = { 0 }, res = { 0 };
	int rc = 0;
	for (size_t i = 0; i < in->n && !rc; i++) {
		const char *s = in->v[i].s;
		size_t n = in->v[i].n, start = raw.n;
		for (size_t k = 0; k < n && !rc;) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + k, (utf8proc_ssize_t)(n - k), &cp);
			int byte = l > 0 ? bytelevel_byte((uint32_t)cp) : -1;
			if (byte < 0) {
				raw.n = start;
				rc = buf_put(&raw, s, n);
				break;
			}
			char c = (char)byte;
			rc = buf_put(&raw, &c, 1);
			k += (size_t)l;
		}
	}
	if (!rc)
		rc = put_lossy(&res, raw.s ? raw.s : "", raw.n);
	free(raw.s);
	if (!rc)
		rc = list_take(out, &res);
	free(res.s);
	return rc;
}

/* Replaces every occurrence of the UTF-8 character (rep, rl) in s by `with` (wl bytes). */
static int put_replaced(tok_buf *b, const char *s, size_t n, const char *rep, size_t rl, const char *with, size_t wl)
{
	size_t i = 0;
	int rc = 0;
	while (i < n && !rc) {
		if (i + rl <= n && !memcmp(s + i, rep, rl)) {
			rc = buf_put(b, with, wl);
			i += rl;
		} else {
			size_t k = tok_utf8_len((unsigned char)s[i]);
			rc = buf_put(b, s + i, k <= n - i ? k : n - i);
			i += k;
		}
	}
	return rc;
}

static int dec_one(const tok_dec *d, tok_list *in, tok_list *out)
{
	tok_buf cur = { 0 };
	int rc = 0;
	switch (d->type) {
	case TOK_DEC_BYTELEVEL:
		return dec_bytelevel(in, out);
	case TOK_DEC_FUSE:
		for (size_t i = 0; i < in->n && !rc; i++)
			rc = buf_put(&cur, in->v[i].s, in->v[i].n);
		if (!rc)
			rc = list_take(out, &cur);
		break;
	case TOK_DEC_METASPACE:
		for (size_t i = 0; i < in->n && !rc; i++) {
			int drop = i == 0 && d->prepend != TOK_PREPEND_NEVER;
			rc = put_replaced(&cur, in->v[i].s, in->v[i].n, d->repl, d->repl_len, " ", drop ? 0 : 1);
			if (!rc)
				rc = list_take(out, &cur);
		}
		break;
	case TOK_DEC_REPLACE:
		for (size_t i = 0; i < in->n && !rc; i++) {
			const char *s = in->v[i].s;
			size_t n = in->v[i].n, pos = 0, from = 0, ms, me;
			int r;
			while (!rc && (r = tok_pattern_find(&d->pat, s, n, from, &ms, &me)) == 1) {
				rc = buf_put(&cur, s + pos, ms - pos);
				if (!rc)
					rc = buf_put(&cur, d->str, d->str_len);
				pos = me;
				from = me > ms ? me : me + 1;
				if (me == ms && me < n && !rc) {
					rc = buf_put(&cur, s + me, 1);
					pos = me + 1;
				}
			}
			if (!rc && r < 0)
				rc = r;
			if (!rc && pos < n)
				rc = buf_put(&cur, s + pos, n - pos);
			if (!rc)
				rc = list_take(out, &cur);
		}
		break;
	case TOK_DEC_BYTEFALLBACK: {
		tok_buf bytes = { 0 };
		for (size_t i = 0; i <= in->n && !rc; i++) {
			const char *s = i < in->n ? in->v[i].s : NULL;
			int byte = -1;
			if (s && in->v[i].n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
				char hex[3] = { s[3], s[4], 0 }, *end;
				long v = strtol(hex, &end, 16);
				if (*end == 0 && ((hex[0] >= '0' && hex[0] <= '9') || (hex[0] >= 'A' && hex[0] <= 'F') ||
						  (hex[0] >= 'a' && hex[0] <= 'f')))
					byte = (int)v;
			}
			if (byte >= 0) {
				char c = (char)byte;
				rc = buf_put(&bytes, &c, 1);
				continue;
			}
			if (bytes.n) {
				size_t bad;
				if (tok_utf8_valid(bytes.s, bytes.n, &bad)) {
					rc = buf_put(&cur, bytes.s, bytes.n);
				} else {
					for (size_t k = 0; k < bytes.n && !rc; k++)
						rc = buf_put(&cur, "\xEF\xBF\xBD", 3);
				}
				if (!rc)
					rc = list_take(out, &cur);
				bytes.n = 0;
			}
			if (s && !rc) {
				rc = buf_put(&cur, s, in->v[i].n);
				if (!rc)
					rc = list_take(out, &cur);
			}
		}
		free(bytes.s);
		break;
	}
	case TOK_DEC_STRIP:
		for (size_t i = 0; i < in->n && !rc; i++) {
			const char *s = in->v[i].s;
			size_t a = 0, z = in->v[i].n;
			for (int k = 0; k < d->start && a + d->repl_len <= z && !memcmp(s + a, d->repl, d->repl_len); k++)
				a += d->repl_len;
			for (int k = 0; k < d->stop && z >= a + d->repl_len && !memcmp(s + z - d->repl_len, d->repl, d->repl_len);
			     k++)
				z -= d->repl_len;
			rc = buf_put(&cur, s + a, z - a);
			if (!rc)
				rc = list_take(out, &cur);
		}
		break;
	}
	free(cur.s);
	return rc;
}

int tok_decode(const sw_tokenizer *tk, const uint32_t *ids, size_t n, int skip_special, char **text, size_t *len)
{
	tok_list a = { 0 }, b = { 0 };
	tok_buf res = { 0 };
	int rc = 0;
	*text = NULL;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= tk->n_ids) {
			sw_error("tokenizer: cannot decode id %u: the vocabulary has %u ids", ids[i], tk->n_ids);
			rc = -EINVAL;
			goto cleanup;
		}
		if (!tk->id_str[ids[i]] || (skip_special && tk->is_special[ids[i]]))
			continue;  /* HF skips ids it has no token for */
		tok_buf t = { 0 };
		if ((rc = buf_put(&t, tk->id_str[ids[i]], tk->id_len[ids[i]])) || (rc = list_take(&a, &t))) {
			free(t.s);
			goto cleanup;
		}
	}
	if (tk->has_decoder) {
		for (size_t k = 0; k < tk->n_dec; k++) {
			if ((rc = dec_one(&tk->dec[k], &a, &b)))
				goto cleanup;
			list_free(&a);
			a = b;
			memset(&b, 0, sizeof(b));
		}
	}
	for (size_t i = 0; i < a.n; i++)
		if ((i && !tk->has_decoder && (rc = buf_put(&res, " ", 1))) || (rc = buf_put(&res, a.v[i].s, a.v[i].n)))
			goto cleanup;
	if (!res.s && (rc = buf_put(&res, "", 0)))
		goto cleanup;
	*text = res.s;
	*len = res.n;
	res.s = NULL;
cleanup:
	free(res.s);
	list_free(&a);
	list_free(&b);
	return rc;
}
