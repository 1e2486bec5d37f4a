/* Encoding text to ids with a loaded Hugging Face tokenizer: added tokens, normalizers,
 * pre-tokenizers, the BPE model and the TemplateProcessing post-processor, in that order and with
 * the semantics of the Rust `tokenizers` crate (docs/tokenizer.md).
 *
 * The text moves through "arenas": a byte buffer, per byte the offset in the original text it
 * came from (the alignment), and a list of spans (pieces of the buffer, or an added token's id).
 * Each step reads one arena and writes the next. */
#include "core/tok_internal.h"
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct tok_span {
	uint32_t off, len;
	int64_t id;               /* >= 0: an added token (len bytes of text it stands for) */
} tok_span;

typedef struct tok_arena {
	char *b;
	uint32_t *al;
	size_t n, cap;
	tok_span *sp;
	size_t nsp, capsp;
} tok_arena;

/* ---------- per-thread state: BPE word cache and the Oniguruma match region ---------- */

#define TOK_CACHE_SLOTS (1u << 16)
#define TOK_CACHE_MAXWORD 256

typedef struct tok_cache_ent {
	const char *word;         /* NULL: empty; points into the pool */
	uint32_t wlen, n;
	const uint32_t *ids;      /* n ids then n offsets, in the pool */
} tok_cache_ent;

#define TOK_CACHE_POOL (8u << 20)

struct tok_work;
struct bpe_buf;
typedef struct tok_tls {
	uint64_t gen;             /* tokenizer generation the cache belongs to */
	tok_cache_ent *ent;
	uint32_t used;
	char *pool;               /* the cached words and ids, bump-allocated; emptied with the table */
	size_t pool_used;
	OnigRegion *region;
	struct tok_work *work;    /* scratch buffers, reused by every encode on this thread */
	struct bpe_buf *bpe;
} tok_tls;
static void work_free(struct tok_work *w);
static void bpe_free(struct bpe_buf *b);

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_cache_clear(tok_tls *t)
{
	if (t->ent && t->used)
		memset(t->ent, 0, TOK_CACHE_SLOTS * sizeof(*t->ent));
	t->used = 0;
	t->pool_used = 0;
}

static void tls_destroy(void *p)
{
	tok_tls *t = p;
	if (!t)
		return;
	free(t->ent);
	free(t->pool);
	work_free(t->work);
	bpe_free(t->bpe);
	if (t->region)
		onig_region_free(t->region, 1);
	free(t);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_destroy);
}

static tok_tls *tls_get(void)
{
	pthread_once(&tls_once, tls_init);
	tok_tls *t = pthread_getspecific(tls_key);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->region = onig_region_new();
	if (!t->region || pthread_setspecific(tls_key, t)) {
		if (t->region)
			onig_region_free(t->region, 1);
		free(t);
		return NULL;
	}
	return t;
}

void tok_cache_release(const sw_tokenizer *tk)
{
	pthread_once(&tls_once, tls_init);
	tok_tls *t = pthread_getspecific(tls_key);
	if (t && t->gen == tk->generation) {
		tls_destroy(t);
		pthread_setspecific(tls_key, NULL);
	}
}

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

/* ---------- patterns ---------- */

int tok_pattern_find(const tok_pattern *p, const char *s, size_t len, size_t from, size_t *ms, size_t *me)
{
	if (from > len)
		return 0;
	if (!p->re) {
		if (!p->lit_len)
			return 0;
		const char *f = memmem(s + from, len - from, p->lit, p->lit_len);
		if (!f)
			return 0;
		*ms = (size_t)(f - s);
		*me = *ms + p->lit_len;
		return 1;
	}
	tok_tls *t = tls_get();
	if (!t)
		return -ENOMEM;
	const OnigUChar *u = (const OnigUChar *)s;
	int r = onig_search(p->re, u, u + len, u + from, u + len, t->region, ONIG_OPTION_NONE);
	if (r == ONIG_MISMATCH)
		return 0;
	if (r < 0) {
		sw_error("tokenizer: regex search failed (oniguruma error %d)", r);
		return -EIO;
	}
	*ms = (size_t)t->region->beg[0];
	*me = (size_t)t->region->end[0];
	return 1;
}

/* ---------- UTF-8 ---------- */

size_t tok_utf8_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xF0)
		return 4;
	if (c >= 0xE0)
		return 3;
	if (c >= 0xC0)
		return 2;
	return 1;
}

int tok_utf8_valid(const char *s, size_t len, size_t *bad_at)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
		if (k <= 0) {
			*bad_at = i;
			return 0;
		}
		i += (size_t)k;
	}
	return 1;
}

static uint32_t utf8_decode1(const char *s, size_t n)
{
	utf8proc_int32_t cp = 0xFFFD;
	utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
	return (uint32_t)cp;
}

/* ---------- arenas ---------- */

/* Grows a text buffer and its alignment (one source offset per byte) to hold need bytes. */
static int text_grow(char **b, uint32_t **al, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	char *nb = realloc(*b, c);
	if (!nb)
		return -ENOMEM;
	*b = nb;
	uint32_t *na = realloc(*al, c * sizeof(*na));
	if (!na)
		return -ENOMEM;
	*al = na;
	*cap = c;
	return 0;
}

static int ar_reserve(tok_arena *a, size_t extra)
{
	return text_grow(&a->b, &a->al, &a->cap, a->n + extra);
}

static int ar_put(tok_arena *a, const char *s, const uint32_t *al, size_t n)
{
	if (ar_reserve(a, n))
		return -ENOMEM;
	memcpy(a->b + a->n, s, n);
	memcpy(a->al + a->n, al, n * sizeof(*al));
	a->n += n;
	return 0;
}

static int ar_put1(tok_arena *a, const char *s, size_t n, uint32_t al)
{
	if (ar_reserve(a, n))
		return -ENOMEM;
	memcpy(a->b + a->n, s, n);
	for (size_t i = 0; i < n; i++)
		a->al[a->n + i] = al;
	a->n += n;
	return 0;
}

/* Closes the span that began at byte `from` (dropped when empty, as HF drops empty splits). */
static int ar_span(tok_arena *a, size_t from, int64_t id)
{
	if (a->n == from && id < 0)
		return 0;
	if (a->nsp == a->capsp) {
		size_t c = a->capsp ? 2 * a->capsp : 64;
		tok_span *sp = realloc(a->sp, c * sizeof(*sp));
		if (!sp)
			return -ENOMEM;
		a->sp = sp;
		a->capsp = c;
	}
	a->sp[a->nsp++] = (tok_span){ (uint32_t)from, (uint32_t)(a->n - from), id };
	return 0;
}

static void ar_clear(tok_arena *a)
{
	a->n = 0;
	a->nsp = 0;
}

static void ar_free(tok_arena *a)
{
	free(a->b);
	free(a->al);
	free(a->sp);
	memset(a, 0, sizeof(*a));
}

/* Copies an added-token span of src into dst unchanged. */
static int ar_copy_span(tok_arena *dst, const tok_arena *src, const tok_span *sp)
{
	size_t from = dst->n;
	int rc = ar_put(dst, src->b + sp->off, src->al + sp->off, sp->len);
	return rc ? rc : ar_span(dst, from, sp->id);
}

/* ---------- added tokens ---------- */

static int is_ws(uint32_t c)
{
	return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_word(uint32_t c)
{
	if (c < 0x80)
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
	if (c == 0x200C || c == 0x200D)
		return 1;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
	case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
		return 1;
	default:
		return 0;
	}
}

static size_t utf8_prev(const char *s, size_t i)
{
	do
		i--;
	while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
	return i;
}

/* Leftmost-longest match among the added tokens with normalized == want_norm, at or after `from`. */
static const tok_added *added_find(const sw_tokenizer *tk, int want_norm, const char *s, size_t len, size_t from,
				   size_t *at)
{
	const uint32_t *first = tk->added_first[want_norm], *idx = tk->added_by_byte[want_norm];
	for (size_t i = from; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		for (uint32_t k = first[c]; k < first[c + 1]; k++) {
			const tok_added *a = &tk->added[idx[k]];
			if (a->match_len <= len - i && !memcmp(a->match, s + i, a->match_len)) {
				*at = i;
				return a;   /* candidates are sorted longest first */
			}
		}
	}
	return NULL;
}

/* Splits span sp of src by the added tokens (normalized or not) into dst, as HF's find_matches. */
static int added_split(const sw_tokenizer *tk, int want_norm, tok_arena *dst, const tok_arena *src, const tok_span *sp)
{
	const char *s = src->b + sp->off;
	const uint32_t *al = src->al + sp->off;
	size_t len = sp->len, start_off = 0, pos = 0, at;
	const tok_added *a;
	int rc;
	while ((a = added_find(tk, want_norm, s, len, pos, &at))) {
		size_t start = at, stop = at + a->match_len;
		pos = stop;
		if (a->single_word) {
			int ok_l = start == 0 || !is_word(utf8_decode1(s + utf8_prev(s, start), len - utf8_prev(s, start)));
			int ok_r = stop == len || !is_word(utf8_decode1(s + stop, len - stop));
			if (!ok_l || !ok_r)
				continue;
		}
		if (a->lstrip) {
			size_t ns = start;
			while (ns > 0) {
				size_t p = utf8_prev(s, ns);
				if (!is_ws(utf8_decode1(s + p, len - p)))
					break;
				ns = p;
			}
			start = ns > start_off ? ns : start_off;
		}
		if (a->rstrip)
			while (stop < len) {
				size_t k = tok_utf8_len((unsigned char)s[stop]);
				if (!is_ws(utf8_decode1(s + stop, len - stop)))
					break;
				stop += k;
			}
		if (start_off < start) {
			size_t from = dst->n;
			if ((rc = ar_put(dst, s + start_off, al + start_off, start - start_off)) || (rc = ar_span(dst, from, -1)))
				return rc;
		}
		size_t from = dst->n;
		if ((rc = ar_put(dst, s + start, al + start, stop - start)) || (rc = ar_span(dst, from, a->id)))
			return rc;
		start_off = stop;
	}
	if (start_off < len) {
		size_t from = dst->n;
		if ((rc = ar_put(dst, s + start_off, al + start_off, len - start_off)) || (rc = ar_span(dst, from, -1)))
			return rc;
	}
	return 0;
}

/* ---------- normalizers ---------- */

/* NFC of s[0..n) appended to dst. Text is cut before every ASCII byte (no composition crosses
 * one); a chunk that NFC leaves unchanged keeps its alignment, a changed one maps output
 * character k to the input character holding the start of its decomposition. */
static int norm_nfc(tok_arena *dst, const char *s, const uint32_t *al, size_t n)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		size_t j = i + 1;
		while (j < n && (unsigned char)s[j] >= 0x80)
			j++;
		int ascii = 1;
		for (size_t k = i; k < j && ascii; k++)
			ascii = (unsigned char)s[k] < 0x80;
		if (ascii) {
			if ((rc = ar_put(dst, s + i, al + i, j - i)))
				return rc;
			i = j;
			continue;
		}
		utf8proc_uint8_t *out = NULL;
		utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(j - i), &out,
						  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
		if (m < 0) {
			sw_error("tokenizer: NFC failed: %s", utf8proc_errmsg(m));
			return -EILSEQ;
		}
		if ((size_t)m == j - i && !memcmp(out, s + i, j - i)) {
			rc = ar_put(dst, s + i, al + i, j - i);
		} else {
			/* NFD lengths of the input characters, then walk the output */
			rc = ar_reserve(dst, (size_t)m);
			size_t in = i, in_cum = 0, out_cum = 0, o = 0;
			utf8proc_int32_t dec[32];
			int last;
			size_t in_len = 0;
			if (!rc) {
				in_len = (size_t)utf8proc_decompose_char(utf8_decode1(s + in, j - in), dec, 32,
									 UTF8PROC_DECOMPOSE, &last);
			}
			while (!rc && o < (size_t)m) {
				size_t k = tok_utf8_len(out[o]);
				while (in_cum + in_len <= out_cum && in + tok_utf8_len((unsigned char)s[in]) < j) {
					in_cum += in_len;
					in += tok_utf8_len((unsigned char)s[in]);
					in_len = (size_t)utf8proc_decompose_char(utf8_decode1(s + in, j - in), dec, 32,
										 UTF8PROC_DECOMPOSE, &last);
				}
				rc = ar_put1(dst, (const char *)out + o, k, al[in]);
				utf8proc_ssize_t d = utf8proc_decompose_char(utf8_decode1((const char *)out + o, (size_t)m - o), dec,
									     32, UTF8PROC_DECOMPOSE, &last);
				out_cum += d > 0 ? (size_t)d : 1;
				o += k;
			}
		}
		free(out);
		if (rc)
			return rc;
		i = j;
	}
	return 0;
}

static int norm_replace(tok_arena *dst, const tok_norm *nm, const char *s, const uint32_t *al, size_t n)
{
	size_t pos = 0, from = 0, ms, me;
	int r, rc;
	while ((r = tok_pattern_find(&nm->pat, s, n, from, &ms, &me)) == 1) {
		if ((rc = ar_put(dst, s + pos, al + pos, ms - pos)))
			return rc;
		if (me > ms || ms < n) {
			if (nm->str_len && (rc = ar_put1(dst, nm->str, nm->str_len, al[ms < n ? ms : n - 1])))
				return rc;
		}
		pos = me;
		from = me > ms ? me : me + (me < n ? tok_utf8_len((unsigned char)s[me]) : 1);
		if (me == ms && me < n) {
			/* an empty match: the character after it is kept */
			size_t k = tok_utf8_len((unsigned char)s[me]);
			if ((rc = ar_put(dst, s + me, al + me, k)))
				return rc;
			pos = me + k;
		}
	}
	if (r < 0)
		return r;
	return pos < n ? ar_put(dst, s + pos, al + pos, n - pos) : 0;
}

/* One normalizer over one text span of src, written as one span of dst. */
static int norm_apply(const tok_norm *nm, tok_arena *dst, const tok_arena *src, const tok_span *sp)
{
	const char *s = src->b + sp->off;
	const uint32_t *al = src->al + sp->off;
	size_t from = dst->n;
	int rc = 0;
	switch (nm->type) {
	case TOK_NORM_NFC:
		rc = norm_nfc(dst, s, al, sp->len);
		break;
	case TOK_NORM_PREPEND:
		if (sp->len && !(rc = ar_put1(dst, nm->str, nm->str_len, al[0])))
			rc = ar_put(dst, s, al, sp->len);
		break;
	case TOK_NORM_REPLACE:
		rc = norm_replace(dst, nm, s, al, sp->len);
		break;
	}
	return rc ? rc : ar_span(dst, from, -1);
}

int tok_normalize_str(const sw_tokenizer *tk, const char *s, size_t len, char **out, size_t *out_len)
{
	tok_arena a = { 0 }, b = { 0 };
	int rc = 0;
	if ((rc = ar_put1(&a, s, len, 0)) || (rc = ar_span(&a, 0, -1)))
		goto cleanup;
	for (size_t k = 0; k < tk->n_norm && a.nsp; k++) {
		ar_clear(&b);
		if ((rc = norm_apply(&tk->norm[k], &b, &a, &a.sp[0])))
			goto cleanup;
		tok_arena t = a;
		a = b;
		b = t;
	}
	size_t n = a.nsp ? a.sp[0].len : 0;
	*out = malloc(n + 1);
	if (!*out) {
		rc = -ENOMEM;
		goto cleanup;
	}
	if (n)
		memcpy(*out, a.b + a.sp[0].off, n);
	(*out)[n] = 0;
	*out_len = n;
cleanup:
	ar_free(&a);
	ar_free(&b);
	return rc;
}

/* ---------- pre-tokenizers ---------- */

/* GPT-2's byte -> printable character table, as UTF-8 strings. */
static char bl_chr[256][3];
static uint8_t bl_len[256];
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;

static void bl_init(void)
{
	unsigned extra = 0;
	for (unsigned b = 0; b < 256; b++) {
		unsigned cp;
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
			cp = b;
		else
			cp = 256 + extra++;
		bl_len[b] = (uint8_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)bl_chr[b]);
	}
}

const char *tok_bytelevel_char(unsigned b, size_t *len);
const char *tok_bytelevel_char(unsigned b, size_t *len)
{
	pthread_once(&bl_once, bl_init);
	*len = bl_len[b & 255];
	return bl_chr[b & 255];
}

/* A piece list: (start, end, is_match) over a string, as HF's Pattern::find_matches. */
typedef struct tok_piece {
	size_t s, e;
	int m;
} tok_piece;

typedef struct tok_pieces {
	tok_piece *v;
	size_t n, cap;
} tok_pieces;

static int pieces_push(tok_pieces *p, size_t s, size_t e, int m)
{
	if (p->n == p->cap) {
		size_t c = p->cap ? 2 * p->cap : 64;
		tok_piece *v = realloc(p->v, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = c;
	}
	p->v[p->n++] = (tok_piece){ s, e, m };
	return 0;
}

static int pattern_pieces(const tok_pattern *pat, const char *s, size_t n, tok_pieces *out)
{
	out->n = 0;
	if (!n)
		return pieces_push(out, 0, 0, 0);
	size_t prev = 0, from = 0, ms, me;
	int r, rc;
	while (from <= n && (r = tok_pattern_find(pat, s, n, from, &ms, &me)) == 1) {
		if (me == ms && ms == prev && prev > 0 && out->n && out->v[out->n - 1].e == ms && out->v[out->n - 1].m) {
			/* an empty match right after the previous match: skipped, as the onig crate does */
			from = ms + (ms < n ? tok_utf8_len((unsigned char)s[ms]) : 1);
			continue;
		}
		if (prev != ms && (rc = pieces_push(out, prev, ms, 0)))
			return rc;
		if ((rc = pieces_push(out, ms, me, 1)))
			return rc;
		prev = me;
		from = me > ms ? me : me + (me < n ? tok_utf8_len((unsigned char)s[me]) : 1);
	}
	if (r < 0)
		return r;
	if (prev != n)
		return pieces_push(out, prev, n, 0);
	return 0;
}

/* Applies a SplitDelimiterBehavior to a piece list, in place (removed pieces get m = -1). */
static void pieces_behave(tok_pieces *p, enum tok_split_behavior b)
{
	size_t k = 0;
	int prev = 0;
	switch (b) {
	case TOK_SPLIT_ISOLATED:
		for (size_t i = 0; i < p->n; i++)
			p->v[i].m = 0;
		return;
	case TOK_SPLIT_REMOVED:
		for (size_t i = 0; i < p->n; i++)
			p->v[i].m = p->v[i].m ? -1 : 0;
		return;
	case TOK_SPLIT_CONTIGUOUS:
		for (size_t i = 0; i < p->n; i++) {
			int m = p->v[i].m;
			if (m == prev && k)
				p->v[k - 1].e = p->v[i].e;
			else
				p->v[k++] = (tok_piece){ p->v[i].s, p->v[i].e, 0 };
			prev = m;
		}
		p->n = k;
		return;
	case TOK_SPLIT_MERGED_PREV:
		for (size_t i = 0; i < p->n; i++) {
			int m = p->v[i].m;
			if (m && !prev && k)
				p->v[k - 1].e = p->v[i].e;
			else
				p->v[k++] = (tok_piece){ p->v[i].s, p->v[i].e, 0 };
			prev = m;
		}
		p->n = k;
		return;
	case TOK_SPLIT_MERGED_NEXT: {
		/* walk backwards, then restore the order */
		size_t w = p->n;
		for (size_t i = p->n; i-- > 0;) {
			int m = p->v[i].m;
			tok_piece cur = p->v[i];
			if (m && !prev && w < p->n)
				p->v[w].s = cur.s;
			else
				p->v[--w] = (tok_piece){ cur.s, cur.e, 0 };
			prev = m;
		}
		memmove(p->v, p->v + w, (p->n - w) * sizeof(*p->v));
		p->n -= w;
		return;
	}
	}
}

/* Emits the kept pieces of s (alignment al) as spans of dst; bytelevel maps each byte. */
static int pieces_emit(tok_arena *dst, const tok_pieces *p, const char *s, const uint32_t *al, int bytelevel)
{
	int rc;
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].m < 0)
			continue;
		size_t from = dst->n;
		if (!bytelevel) {
			rc = ar_put(dst, s + p->v[i].s, al + p->v[i].s, p->v[i].e - p->v[i].s);
		} else {
			rc = ar_reserve(dst, 2 * (p->v[i].e - p->v[i].s));
			for (size_t k = p->v[i].s; !rc && k < p->v[i].e; k++) {
				size_t cl;
				const char *c = tok_bytelevel_char((unsigned char)s[k], &cl);
				rc = ar_put1(dst, c, cl, al[k]);
			}
		}
		if (rc || (rc = ar_span(dst, from, -1)))
			return rc;
	}
	return 0;
}

typedef struct tok_work {
	tok_arena a, b;
	tok_pieces pc;
	char *tmp;
	uint32_t *tmp_al;
	size_t tmp_cap;
} tok_work;

static void work_free(tok_work *w)
{
	if (!w)
		return;
	ar_free(&w->a);
	ar_free(&w->b);
	free(w->pc.v);
	free(w->tmp);
	free(w->tmp_al);
	free(w);
}

static int work_tmp(tok_work *w, size_t n)
{
	return text_grow(&w->tmp, &w->tmp_al, &w->tmp_cap, n);
}

static int pre_apply(const tok_pre *pr, tok_work *w, tok_arena *dst, const tok_arena *src, const tok_span *sp)
{
	const char *s = src->b + sp->off;
	const uint32_t *al = src->al + sp->off;
	size_t n = sp->len;
	int rc;
	switch (pr->type) {
	case TOK_PRE_BYTELEVEL:
		if (pr->add_prefix_space && (n == 0 || s[0] != ' ')) {
			if ((rc = work_tmp(w, n + 1)))
				return rc;
			w->tmp[0] = ' ';
			w->tmp_al[0] = n ? al[0] : 0;
			memcpy(w->tmp + 1, s, n);
			memcpy(w->tmp_al + 1, al, n * sizeof(*al));
			s = w->tmp;
			al = w->tmp_al;
			n++;
		}
		if (pr->use_regex) {
			if ((rc = pattern_pieces(&pr->pat, s, n, &w->pc)))
				return rc;
			pieces_behave(&w->pc, TOK_SPLIT_ISOLATED);
		} else {
			w->pc.n = 0;
			if ((rc = pieces_push(&w->pc, 0, n, 0)))
				return rc;
		}
		return pieces_emit(dst, &w->pc, s, al, 1);
	case TOK_PRE_SPLIT:
		if ((rc = pattern_pieces(&pr->pat, s, n, &w->pc)))
			return rc;
		if (pr->invert)
			for (size_t i = 0; i < w->pc.n; i++)
				w->pc.v[i].m = !w->pc.v[i].m;
		pieces_behave(&w->pc, pr->behavior);
		return pieces_emit(dst, &w->pc, s, al, 0);
	case TOK_PRE_METASPACE: {
		/* replace ' ' by the replacement, maybe prepend it, then split before each one */
		if ((rc = work_tmp(w, n * pr->repl_len + pr->repl_len)))
			return rc;
		size_t m = 0;
		int starts = n >= pr->repl_len && !memcmp(s, pr->repl, pr->repl_len);
		if (n && s[0] == ' ')
			starts = 1;
		int prepend = !starts && (pr->prepend == TOK_PREPEND_ALWAYS ||
					  (pr->prepend == TOK_PREPEND_FIRST && n && al[0] == 0));
		if (prepend && n) {
			memcpy(w->tmp, pr->repl, pr->repl_len);
			for (size_t k = 0; k < pr->repl_len; k++)
				w->tmp_al[k] = al[0];
			m = pr->repl_len;
		}
		for (size_t k = 0; k < n; k++) {
			if (s[k] == ' ') {
				memcpy(w->tmp + m, pr->repl, pr->repl_len);
				for (size_t q = 0; q < pr->repl_len; q++)
					w->tmp_al[m + q] = al[k];
				m += pr->repl_len;
			} else {
				w->tmp[m] = s[k];
				w->tmp_al[m++] = al[k];
			}
		}
		w->pc.n = 0;
		if (!pr->split) {
			if (m && (rc = pieces_push(&w->pc, 0, m, 0)))
				return rc;
		} else {
			size_t last = 0;
			for (size_t k = 0; k < m;) {
				size_t cl = tok_utf8_len((unsigned char)w->tmp[k]);
				if (k + pr->repl_len <= m && !memcmp(w->tmp + k, pr->repl, pr->repl_len)) {
					if (last < k && (rc = pieces_push(&w->pc, last, k, 0)))
						return rc;
					if ((rc = pieces_push(&w->pc, k, k + pr->repl_len, 1)))
						return rc;
					k += pr->repl_len;
					last = k;
				} else {
					k += cl;
				}
			}
			if (last < m && (rc = pieces_push(&w->pc, last, m, 0)))
				return rc;
			pieces_behave(&w->pc, TOK_SPLIT_MERGED_NEXT);
		}
		/* the piece list refers to w->tmp, which pieces_emit only reads */
		return pieces_emit(dst, &w->pc, w->tmp, w->tmp_al, 0);
	}
	}
	return 0;
}

/* ---------- BPE ---------- */

typedef struct bpe_sym {
	uint32_t id, start, len;
	int32_t prev, next;
} bpe_sym;

typedef struct bpe_buf {
	bpe_sym *sym;
	uint64_t *heap;
	size_t cap_sym, cap_heap, nheap;
	char *s;
	size_t cap_s;
} bpe_buf;

static void bpe_free(bpe_buf *b)
{
	if (!b)
		return;
	free(b->sym);
	free(b->heap);
	free(b->s);
	free(b);
}

static void heap_push(bpe_buf *b, uint64_t v)
{
	size_t i = b->nheap++;
	while (i) {
		size_t p = (i - 1) / 2;
		if (b->heap[p] <= v)
			break;
		b->heap[i] = b->heap[p];
		i = p;
	}
	b->heap[i] = v;
}

static uint64_t heap_pop(bpe_buf *b)
{
	uint64_t top = b->heap[0], v = b->heap[--b->nheap];
	size_t i = 0, n = b->nheap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && b->heap[c + 1] < b->heap[c])
			c++;
		if (v <= b->heap[c])
			break;
		b->heap[i] = b->heap[c];
		i = c;
	}
	if (n)
		b->heap[i] = v;
	return top;
}

static int bpe_grow(bpe_buf *b, size_t nsym, size_t ns)
{
	if (nsym > b->cap_sym) {
		bpe_sym *s = realloc(b->sym, nsym * sizeof(*s));
		uint64_t *h = s ? realloc(b->heap, 2 * nsym * sizeof(*h)) : NULL;
		if (s)
			b->sym = s;
		if (!s || !h)
			return -ENOMEM;
		b->heap = h;
		b->cap_sym = nsym;
	}
	if (ns > b->cap_s) {
		char *s = realloc(b->s, ns);
		if (!s)
			return -ENOMEM;
		b->s = s;
		b->cap_s = ns;
	}
	return 0;
}

static void bpe_try_pair(const sw_tokenizer *tk, bpe_buf *b, int32_t pos)
{
	int32_t nx = b->sym[pos].next;
	if (nx < 0)
		return;
	uint64_t v;
	if (tok_u64map_get(&tk->merges, (uint64_t)b->sym[pos].id << 32 | b->sym[nx].id, &v))
		heap_push(b, (v >> 32) << 32 | (uint32_t)pos);
}

static int bytes_known(const sw_tokenizer *tk, const char *q, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (tk->byte_id[(unsigned char)q[k]] == UINT32_MAX)
			return 0;
	return 1;
}

/* Tokenizes one pre-token word into b->sym[0 .. *nout) (ids and word-relative byte offsets). */
static int bpe_word(const sw_tokenizer *tk, bpe_buf *b, const char *w, size_t wn, uint32_t *nout)
{
	if (tk->ignore_merges) {
		int64_t id = tok_strmap_get(&tk->vocab, w, wn);
		if (id >= 0) {
			if (bpe_grow(b, 1, 1))
				return -ENOMEM;
			b->sym[0] = (bpe_sym){ (uint32_t)id, 0, (uint32_t)wn, -1, -1 };
			goto out;
		}
	}
	if (bpe_grow(b, wn * (1 + tk->cont_prefix_len + tk->end_suffix_len) + 1,
		     16 + tk->cont_prefix_len + tk->end_suffix_len))
		return -ENOMEM;
	size_t n = 0;
	int64_t unk = -1;
	uint32_t unk_start = 0, unk_len = 0;
	for (size_t i = 0; i < wn;) {
		size_t cl = tok_utf8_len((unsigned char)w[i]);
		if (i + cl > wn)
			cl = wn - i;
		const char *q = w + i;
		size_t ql = cl;
		int first = i == 0, last = i + cl >= wn;
		if ((!first && tk->cont_prefix_len) || (last && tk->end_suffix_len)) {
			size_t m = 0;
			if (!first) {
				memcpy(b->s, tk->cont_prefix, tk->cont_prefix_len);
				m = tk->cont_prefix_len;
			}
			memcpy(b->s + m, q, cl);
			m += cl;
			if (last) {
				memcpy(b->s + m, tk->end_suffix, tk->end_suffix_len);
				m += tk->end_suffix_len;
			}
			q = b->s;
			ql = m;
		}
		int64_t id;
		if (q == w + i && cl <= 3 && tok_utf8_len((unsigned char)q[0]) == cl) {
			/* one character of the BMP: the table, no hashing */
			uint32_t cp = cl == 1 ? (unsigned char)q[0]
				      : cl == 2 ? ((unsigned char)q[0] & 0x1Fu) << 6 | ((unsigned char)q[1] & 0x3Fu)
						: ((unsigned char)q[0] & 0x0Fu) << 12 | ((unsigned char)q[1] & 0x3Fu) << 6 |
							  ((unsigned char)q[2] & 0x3Fu);
			id = tk->char_id[cp] == UINT32_MAX ? -1 : (int64_t)tk->char_id[cp];
		} else {
			id = tok_strmap_get(&tk->vocab, q, ql);
		}
		if (id >= 0) {
			if (unk >= 0) {
				b->sym[n++] = (bpe_sym){ (uint32_t)unk, unk_start, unk_len, -1, -1 };
				unk = -1;
			}
			b->sym[n++] = (bpe_sym){ (uint32_t)id, (uint32_t)i, (uint32_t)cl, -1, -1 };
		} else if (tk->byte_fallback && bytes_known(tk, q, ql)) {
			/* as HF: a pending unk is not flushed here, only before the next vocab hit */
			for (size_t k = 0; k < ql; k++)
				b->sym[n++] = (bpe_sym){ tk->byte_id[(unsigned char)q[k]], (uint32_t)(i + (k < cl ? k : cl - 1)),
							 1, -1, -1 };
		} else if (tk->unk_id >= 0) {
			if (unk >= 0 && tk->fuse_unk) {
				unk_len += (uint32_t)cl;
			} else {
				if (unk >= 0)
					b->sym[n++] = (bpe_sym){ (uint32_t)unk, unk_start, unk_len, -1, -1 };
				unk = tk->unk_id;
				unk_start = (uint32_t)i;
				unk_len = (uint32_t)cl;
			}
		}
		i += cl;
	}
	if (unk >= 0)
		b->sym[n++] = (bpe_sym){ (uint32_t)unk, unk_start, unk_len, -1, -1 };
	for (size_t k = 0; k < n; k++) {
		b->sym[k].prev = (int32_t)k - 1;
		b->sym[k].next = k + 1 < n ? (int32_t)k + 1 : -1;
	}
	b->nheap = 0;
	for (size_t k = 0; k + 1 < n; k++)
		bpe_try_pair(tk, b, (int32_t)k);
	while (b->nheap) {
		uint64_t top = heap_pop(b);
		int32_t pos = (int32_t)(uint32_t)top;
		uint32_t rank = (uint32_t)(top >> 32);
		bpe_sym *l = &b->sym[pos];
		if (!l->len || l->next < 0)
			continue;
		bpe_sym *r = &b->sym[l->next];
		uint64_t v;
		if (!tok_u64map_get(&tk->merges, (uint64_t)l->id << 32 | r->id, &v) || (uint32_t)(v >> 32) != rank)
			continue;
		l->id = (uint32_t)v;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			b->sym[r->next].prev = pos;
		if (l->prev >= 0)
			bpe_try_pair(tk, b, l->prev);
		bpe_try_pair(tk, b, pos);
	}
	/* compact */
	size_t m = 0;
	for (int32_t k = n ? 0 : -1; k >= 0; k = b->sym[k].next)
		b->sym[m++] = b->sym[k];
	*nout = (uint32_t)m;
	return 0;
out:
	*nout = 1;
	return 0;
}

/* Emits the ids of one word, through the per-thread cache. */
static int bpe_emit(const sw_tokenizer *tk, bpe_buf *b, const char *w, size_t wn, const uint32_t *al, sw_ids *out)
{
	tok_tls *t = tls_get();
	if (!t)
		return -ENOMEM;
	if (t->gen != tk->generation) {
		tls_cache_clear(t);
		t->gen = tk->generation;
	}
	if (!t->ent && !(t->ent = calloc(TOK_CACHE_SLOTS, sizeof(*t->ent))))
		return -ENOMEM;
	uint64_t h = hash_bytes(w, wn);
	tok_cache_ent *e = NULL;
	if (wn <= TOK_CACHE_MAXWORD) {
		for (uint32_t i = (uint32_t)h & (TOK_CACHE_SLOTS - 1);; i = (i + 1) & (TOK_CACHE_SLOTS - 1)) {
			e = &t->ent[i];
			if (!e->word)
				break;
			if (e->wlen == wn && !memcmp(e->word, w, wn)) {
				for (uint32_t k = 0; k < e->n; k++)
					if (tok_ids_push(out, e->ids[k], al[e->ids[e->n + k]]))
						return -ENOMEM;
				return 0;
			}
		}
	}
	uint32_t n;
	int rc = bpe_word(tk, b, w, wn, &n);
	if (rc)
		return rc;
	for (uint32_t k = 0; k < n && !rc; k++)
		rc = tok_ids_push(out, b->sym[k].id, al[b->sym[k].start]);
	if (rc || !e)
		return rc;
	size_t need = (wn + 3) / 4 * 4 + 8 * (size_t)n;
	if (need > TOK_CACHE_POOL / 64)
		return 0;
	if (t->used >= TOK_CACHE_SLOTS / 2 || t->pool_used + need > TOK_CACHE_POOL) {
		tls_cache_clear(t);   /* full: start over (the slot found above is gone too) */
		return 0;
	}
	if (!t->pool && !(t->pool = malloc(TOK_CACHE_POOL)))
		return 0;   /* caching is optional */
	char *wd = t->pool + t->pool_used;
	uint32_t *both = (uint32_t *)(wd + (wn + 3) / 4 * 4);
	t->pool_used += need;
	memcpy(wd, w, wn);
	for (uint32_t k = 0; k < n; k++) {
		both[k] = b->sym[k].id;
		both[n + k] = b->sym[k].start;
	}
	e->word = wd;
	e->wlen = (uint32_t)wn;
	e->n = n;
	e->ids = both;
	t->used++;
	return 0;
}

/* ---------- the pipeline ---------- */

int tok_ids_push(sw_ids *x, uint32_t id, uint32_t start)
{
	if (x->n == x->cap) {
		size_t c = x->cap ? 2 * x->cap : 64;
		uint32_t *v = realloc(x->v, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		x->v = v;
		uint32_t *s = realloc(x->start, c * sizeof(*s));
		if (!s)
			return -ENOMEM;
		x->start = s;
		x->cap = c;
	}
	x->v[x->n] = id;
	x->start[x->n++] = start;
	return 0;
}

static int has_added(const sw_tokenizer *tk, int want_norm)
{
	return tk->added_first[want_norm][256] > 0;
}

int tok_encode(const sw_tokenizer *tk, const char *text, size_t len, int add_special, sw_ids *out)
{
	int rc = 0;
	size_t bad;
	if (len > UINT32_MAX / 4) {
		sw_error("tokenizer: a text of %zu bytes is too long to encode at once (split it)", len);
		return -EFBIG;
	}
	if (!tok_utf8_valid(text, len, &bad)) {
		sw_error("tokenizer: the text is not valid UTF-8 at byte %zu", bad);
		return -EILSEQ;
	}
	tok_tls *tl = tls_get();
	if (!tl || (!tl->work && !(tl->work = calloc(1, sizeof(tok_work)))) ||
	    (!tl->bpe && !(tl->bpe = calloc(1, sizeof(bpe_buf)))))
		return -ENOMEM;
	tok_work *w = tl->work;
	bpe_buf *b = tl->bpe;
	ar_clear(&w->a);
	ar_clear(&w->b);
	/* original text as one span */
	if ((rc = ar_reserve(&w->a, len + 1)))
		goto cleanup;
	memcpy(w->a.b, text, len);
	for (size_t i = 0; i < len; i++)
		w->a.al[i] = (uint32_t)i;
	w->a.n = len;
	if ((rc = ar_span(&w->a, 0, -1)))
		goto cleanup;
	tok_arena *src = &w->a, *dst = &w->b, *t;
	if (add_special)
		for (size_t k = 0; k < tk->n_tpl_before; k++)
			if ((rc = tok_ids_push(out, tk->tpl_before[k], 0)))
				goto cleanup;
#define SWAP() (t = src, src = dst, dst = t)
	/* 1. non-normalized added tokens on the original text */
	if (has_added(tk, 0)) {
		ar_clear(dst);
		for (size_t i = 0; i < src->nsp; i++)
			if ((rc = added_split(tk, 0, dst, src, &src->sp[i])))
				goto cleanup;
		SWAP();
	}
	/* 2. normalizers on the other pieces */
	for (size_t k = 0; k < tk->n_norm; k++) {
		ar_clear(dst);
		for (size_t i = 0; i < src->nsp; i++)
			rc = src->sp[i].id >= 0 ? ar_copy_span(dst, src, &src->sp[i])
						: norm_apply(&tk->norm[k], dst, src, &src->sp[i]);
		if (rc)
			goto cleanup;
		SWAP();
	}
	/* 3. normalized added tokens on the normalized pieces */
	if (has_added(tk, 1)) {
		ar_clear(dst);
		for (size_t i = 0; i < src->nsp && !rc; i++)
			rc = src->sp[i].id >= 0 ? ar_copy_span(dst, src, &src->sp[i])
						: added_split(tk, 1, dst, src, &src->sp[i]);
		if (rc)
			goto cleanup;
		SWAP();
	}
	/* 4. pre-tokenizers */
	for (size_t k = 0; k < tk->n_pre; k++) {
		ar_clear(dst);
		for (size_t i = 0; i < src->nsp && !rc; i++)
			rc = src->sp[i].id >= 0 ? ar_copy_span(dst, src, &src->sp[i])
						: pre_apply(&tk->pre[k], w, dst, src, &src->sp[i]);
		if (rc)
			goto cleanup;
		SWAP();
	}
	/* 5. the model */
	for (size_t i = 0; i < src->nsp && !rc; i++) {
		const tok_span *sp = &src->sp[i];
		if (sp->id >= 0)
			rc = tok_ids_push(out, (uint32_t)sp->id, sp->len ? src->al[sp->off] : 0);
		else
			rc = bpe_emit(tk, b, src->b + sp->off, sp->len, src->al + sp->off, out);
	}
#undef SWAP
	if (rc)
		goto cleanup;
	if (add_special)
		for (size_t k = 0; k < tk->n_tpl_after; k++)
			if ((rc = tok_ids_push(out, tk->tpl_after[k], (uint32_t)len)))
				goto cleanup;
cleanup:
	if (len > (64u << 20)) {
		/* do not keep huge scratch buffers alive on this thread */
		work_free(tl->work);
		tl->work = NULL;
	}
	return rc;
}
