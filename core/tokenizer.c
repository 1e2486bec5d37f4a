/* Loading a Hugging Face tokenizer.json (+ tokenizer_config.json) into a read-only sw_tokenizer,
 * and the public encode/decode/batch API (core/tokenizer.h). */
#include "core/tok_internal.h"
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include <xxhash.h>

/* ---------- hash tables ---------- */

static uint64_t str_hash(const char *s, size_t n)
{
	return XXH3_64bits(s, n);
}

static int strmap_grow(tok_strmap *m)
{
	uint64_t cap = m->cap ? 2 * m->cap : 1024;
	tok_strmap nm = { calloc(cap, sizeof(char *)), calloc(cap, sizeof(uint32_t)), calloc(cap, sizeof(uint32_t)), cap, 0 };
	if (!nm.str || !nm.len || !nm.val) {
		free(nm.str);
		free(nm.len);
		free(nm.val);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < m->cap; i++) {
		if (!m->str[i])
			continue;
		uint64_t j = str_hash(m->str[i], m->len[i]) & (cap - 1);
		while (nm.str[j])
			j = (j + 1) & (cap - 1);
		nm.str[j] = m->str[i];
		nm.len[j] = m->len[i];
		nm.val[j] = m->val[i];
		nm.n++;
	}
	free(m->str);
	free(m->len);
	free(m->val);
	*m = nm;
	return 0;
}

int tok_strmap_put(tok_strmap *m, const char *s, size_t len, uint32_t val)
{
	if ((m->n + 1) * 2 > m->cap && strmap_grow(m))
		return -ENOMEM;
	uint64_t j = str_hash(s, len) & (m->cap - 1);
	while (m->str[j]) {
		if (m->len[j] == len && !memcmp(m->str[j], s, len)) {
			m->val[j] = val;
			return 0;
		}
		j = (j + 1) & (m->cap - 1);
	}
	char *c = malloc(len + 1);
	if (!c)
		return -ENOMEM;
	memcpy(c, s, len);
	c[len] = 0;
	m->str[j] = c;
	m->len[j] = (uint32_t)len;
	m->val[j] = val;
	m->n++;
	return 0;
}

int64_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len)
{
	if (!m->cap)
		return -1;
	uint64_t j = str_hash(s, len) & (m->cap - 1);
	while (m->str[j]) {
		if (m->len[j] == len && !memcmp(m->str[j], s, len))
			return m->val[j];
		j = (j + 1) & (m->cap - 1);
	}
	return -1;
}

void tok_strmap_free(tok_strmap *m)
{
	for (uint64_t i = 0; i < m->cap; i++)
		free(m->str[i]);
	free(m->str);
	free(m->len);
	free(m->val);
	memset(m, 0, sizeof(*m));
}

static uint64_t u64_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k;
}

int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		uint64_t cap = m->cap ? 2 * m->cap : 1024;
		tok_u64map nm = { malloc(cap * sizeof(tok_u64kv)), cap, 0 };
		if (!nm.slot)
			return -ENOMEM;
		memset(nm.slot, 0xff, cap * sizeof(tok_u64kv));
		for (uint64_t i = 0; i < m->cap; i++)
			if (m->slot[i].key != UINT64_MAX)
				tok_u64map_put(&nm, m->slot[i].key, m->slot[i].val);
		free(m->slot);
		*m = nm;
	}
	uint64_t j = u64_hash(key) & (m->cap - 1);
	while (m->slot[j].key != UINT64_MAX && m->slot[j].key != key)
		j = (j + 1) & (m->cap - 1);
	if (m->slot[j].key == UINT64_MAX)
		m->n++;
	m->slot[j] = (tok_u64kv){ key, val };
	return 0;
}

int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val)
{
	if (!m->cap)
		return 0;
	uint64_t j = u64_hash(key) & (m->cap - 1);
	while (m->slot[j].key != UINT64_MAX) {
		if (m->slot[j].key == key) {
			*val = m->slot[j].val;
			return 1;
		}
		j = (j + 1) & (m->cap - 1);
	}
	return 0;
}

void tok_u64map_free(tok_u64map *m)
{
	free(m->slot);
	memset(m, 0, sizeof(*m));
}

/* ---------- loading ---------- */

typedef struct tok_ld {
	const char *path;   /* the file being read, for error lines */
	sw_tokenizer *tk;
} tok_ld;

#define LD_ERR(ld, field, ...)                                                                \
	do {                                                                                  \
		char msg_[512];                                                               \
		snprintf(msg_, sizeof(msg_), __VA_ARGS__);                                    \
		sw_error("%s: %s: %s", (ld)->path, (field), msg_);                            \
	} while (0)

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void onig_setup(void)
{
	OnigEncoding enc[1] = { ONIG_ENCODING_UTF8 };
	onig_initialize(enc, 1);
}

static int compile_regex(tok_ld *ld, const char *field, const char *src, size_t n, regex_t **re)
{
	pthread_once(&onig_once, onig_setup);
	OnigErrorInfo einfo;
	int r = onig_new(re, (const OnigUChar *)src, (const OnigUChar *)src + n, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
			 ONIG_SYNTAX_RUBY, &einfo);
	if (r != ONIG_NORMAL) {
		OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
		onig_error_code_to_str(msg, r, &einfo);
		LD_ERR(ld, field, "regex '%.*s' does not compile: %s", (int)(n > 200 ? 200 : n), src, (const char *)msg);
		*re = NULL;
		return -EINVAL;
	}
	return 0;
}

static char *dup_n(const char *s, size_t n)
{
	char *c = malloc(n + 1);
	if (c) {
		memcpy(c, s, n);
		c[n] = 0;
	}
	return c;
}

/* {"String": s} or {"Regex": r} */
static int load_pattern(tok_ld *ld, const char *field, json_t *j, tok_pattern *p)
{
	json_t *s = json_object_get(j, "String"), *r = json_object_get(j, "Regex");
	if (json_is_string(s)) {
		p->lit_len = json_string_length(s);
		p->lit = dup_n(json_string_value(s), p->lit_len);
		return p->lit ? 0 : -ENOMEM;
	}
	if (json_is_string(r))
		return compile_regex(ld, field, json_string_value(r), json_string_length(r), &p->re);
	LD_ERR(ld, field, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
	return -EINVAL;
}

static void free_pattern(tok_pattern *p)
{
	free(p->lit);
	if (p->re)
		onig_free(p->re);
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *k, int dflt)
{
	json_t *v = json_object_get(o, k);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *jtype(json_t *o)
{
	const char *t = jstr(o, "type");
	return t ? t : "(no type)";
}

/* Appends one element to a dynamic array (elements of size sz). */
static void *grow(void **v, size_t *n, size_t sz)
{
	void *t = realloc(*v, (*n + 1) * sz);
	if (!t)
		return NULL;
	*v = t;
	memset((char *)t + *n * sz, 0, sz);
	return (char *)t + (*n)++ * sz;
}

static int load_normalizer(tok_ld *ld, json_t *j)
{
	sw_tokenizer *tk = ld->tk;
	const char *t = jtype(j);
	int rc;
	if (!strcmp(t, "Sequence")) {
		json_t *a = json_object_get(j, "normalizers"), *e;
		size_t i;
		if (!json_is_array(a)) {
			LD_ERR(ld, "normalizer.normalizers", "missing array");
			return -EINVAL;
		}
		json_array_foreach(a, i, e)
			if ((rc = load_normalizer(ld, e)))
				return rc;
		return 0;
	}
	tok_norm *nm;
	if (!strcmp(t, "NFC")) {
		if (!(nm = grow((void **)&tk->norm, &tk->n_norm, sizeof(*nm))))
			return -ENOMEM;
		nm->type = TOK_NORM_NFC;
		return 0;
	}
	if (!strcmp(t, "Prepend")) {
		json_t *p = json_object_get(j, "prepend");
		if (!json_is_string(p)) {
			LD_ERR(ld, "normalizer.prepend", "missing string");
			return -EINVAL;
		}
		if (!(nm = grow((void **)&tk->norm, &tk->n_norm, sizeof(*nm))))
			return -ENOMEM;
		nm->type = TOK_NORM_PREPEND;
		nm->str_len = json_string_length(p);
		return (nm->str = dup_n(json_string_value(p), nm->str_len)) ? 0 : -ENOMEM;
	}
	if (!strcmp(t, "Replace")) {
		json_t *c = json_object_get(j, "content");
		if (!json_is_string(c)) {
			LD_ERR(ld, "normalizer.content", "missing string");
			return -EINVAL;
		}
		if (!(nm = grow((void **)&tk->norm, &tk->n_norm, sizeof(*nm))))
			return -ENOMEM;
		nm->type = TOK_NORM_REPLACE;
		nm->str_len = json_string_length(c);
		if (!(nm->str = dup_n(json_string_value(c), nm->str_len)))
			return -ENOMEM;
		return load_pattern(ld, "normalizer.pattern", json_object_get(j, "pattern"), &nm->pat);
	}
	LD_ERR(ld, "normalizer.type", "'%s' is not supported (supported: NFC, Prepend, Replace, Sequence)", t);
	return -ENOTSUP;
}

static int load_char(tok_ld *ld, const char *field, const char *s, char *dst, size_t *len)
{
	size_t n = s ? strlen(s) : 0;
	if (!s || !n || n > 4 || tok_utf8_len((unsigned char)s[0]) != n) {
		LD_ERR(ld, field, "must be one character, got '%s'", s ? s : "(missing)");
		return -EINVAL;
	}
	memcpy(dst, s, n);
	*len = n;
	return 0;
}

static int load_prepend_scheme(tok_ld *ld, const char *field, json_t *j, enum tok_prepend_scheme *ps)
{
	const char *s = jstr(j, "prepend_scheme");
	json_t *aps = json_object_get(j, "add_prefix_space");
	*ps = TOK_PREPEND_ALWAYS;
	if (s && !strcmp(s, "first"))
		*ps = TOK_PREPEND_FIRST;
	else if (s && !strcmp(s, "never"))
		*ps = TOK_PREPEND_NEVER;
	else if (s && strcmp(s, "always")) {
		LD_ERR(ld, field, "prepend_scheme '%s' is not one of always, first, never", s);
		return -EINVAL;
	}
	if (json_is_false(aps)) {
		if (s && *ps != TOK_PREPEND_NEVER) {
			LD_ERR(ld, field, "add_prefix_space false does not match prepend_scheme '%s'", s);
			return -EINVAL;
		}
		*ps = TOK_PREPEND_NEVER;
	}
	return 0;
}

static const char GPT2_RE[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pretok(tok_ld *ld, json_t *j)
{
	sw_tokenizer *tk = ld->tk;
	const char *t = jtype(j);
	int rc;
	if (!strcmp(t, "Sequence")) {
		json_t *a = json_object_get(j, "pretokenizers"), *e;
		size_t i;
		if (!json_is_array(a)) {
			LD_ERR(ld, "pre_tokenizer.pretokenizers", "missing array");
			return -EINVAL;
		}
		json_array_foreach(a, i, e)
			if ((rc = load_pretok(ld, e)))
				return rc;
		return 0;
	}
	tok_pre *p;
	if (!strcmp(t, "ByteLevel")) {
		if (!(p = grow((void **)&tk->pre, &tk->n_pre, sizeof(*p))))
			return -ENOMEM;
		p->type = TOK_PRE_BYTELEVEL;
		p->add_prefix_space = jbool(j, "add_prefix_space", 1);
		p->use_regex = jbool(j, "use_regex", 1);
		return p->use_regex ? compile_regex(ld, "pre_tokenizer(ByteLevel)", GPT2_RE, sizeof(GPT2_RE) - 1, &p->pat.re) : 0;
	}
	if (!strcmp(t, "Split")) {
		static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
		const char *b = jstr(j, "behavior");
		if (!(p = grow((void **)&tk->pre, &tk->n_pre, sizeof(*p))))
			return -ENOMEM;
		p->type = TOK_PRE_SPLIT;
		p->invert = jbool(j, "invert", 0);
		int found = 0;
		for (int k = 0; b && k < 5; k++)
			if (!strcmp(b, names[k])) {
				p->behavior = (enum tok_split_behavior)k;
				found = 1;
			}
		if (!found) {
			LD_ERR(ld, "pre_tokenizer(Split).behavior", "'%s' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous",
			       b ? b : "(missing)");
			return -EINVAL;
		}
		return load_pattern(ld, "pre_tokenizer(Split).pattern", json_object_get(j, "pattern"), &p->pat);
	}
	if (!strcmp(t, "Metaspace")) {
		if (!(p = grow((void **)&tk->pre, &tk->n_pre, sizeof(*p))))
			return -ENOMEM;
		p->type = TOK_PRE_METASPACE;
		p->split = jbool(j, "split", 1);
		if ((rc = load_char(ld, "pre_tokenizer(Metaspace).replacement", jstr(j, "replacement"), p->repl, &p->repl_len)))
			return rc;
		return load_prepend_scheme(ld, "pre_tokenizer(Metaspace)", j, &p->prepend);
	}
	LD_ERR(ld, "pre_tokenizer.type", "'%s' is not supported (supported: ByteLevel, Split, Metaspace, Sequence)", t);
	return -ENOTSUP;
}

static int load_decoder(tok_ld *ld, json_t *j)
{
	sw_tokenizer *tk = ld->tk;
	const char *t = jtype(j);
	int rc;
	if (!strcmp(t, "Sequence")) {
		json_t *a = json_object_get(j, "decoders"), *e;
		size_t i;
		if (!json_is_array(a)) {
			LD_ERR(ld, "decoder.decoders", "missing array");
			return -EINVAL;
		}
		json_array_foreach(a, i, e)
			if ((rc = load_decoder(ld, e)))
				return rc;
		return 0;
	}
	static const char *const names[] = { "ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip" };
	int k = -1;
	for (int i = 0; i < 6; i++)
		if (!strcmp(t, names[i]))
			k = i;
	if (k < 0) {
		LD_ERR(ld, "decoder.type", "'%s' is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)", t);
		return -ENOTSUP;
	}
	tok_dec *d = grow((void **)&tk->dec, &tk->n_dec, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->type = (enum tok_dec_type)k;
	switch (d->type) {
	case TOK_DEC_METASPACE:
		if ((rc = load_char(ld, "decoder(Metaspace).replacement", jstr(j, "replacement"), d->repl, &d->repl_len)))
			return rc;
		return load_prepend_scheme(ld, "decoder(Metaspace)", j, &d->prepend);
	case TOK_DEC_REPLACE: {
		json_t *c = json_object_get(j, "content");
		if (!json_is_string(c)) {
			LD_ERR(ld, "decoder(Replace).content", "missing string");
			return -EINVAL;
		}
		d->str_len = json_string_length(c);
		if (!(d->str = dup_n(json_string_value(c), d->str_len)))
			return -ENOMEM;
		return load_pattern(ld, "decoder(Replace).pattern", json_object_get(j, "pattern"), &d->pat);
	}
	case TOK_DEC_STRIP: {
		json_t *s = json_object_get(j, "start"), *e = json_object_get(j, "stop");
		if ((rc = load_char(ld, "decoder(Strip).content", jstr(j, "content"), d->repl, &d->repl_len)))
			return rc;
		if (!json_is_integer(s) || !json_is_integer(e) || json_integer_value(s) < 0 || json_integer_value(e) < 0 ||
		    json_integer_value(s) > 1000000 || json_integer_value(e) > 1000000) {
			LD_ERR(ld, "decoder(Strip)", "start and stop must be non-negative integers");
			return -EINVAL;
		}
		d->start = (int)json_integer_value(s);
		d->stop = (int)json_integer_value(e);
		return 0;
	}
	default:
		return 0;
	}
}

static int tpl_ids(tok_ld *ld, json_t *specials, const char *name, uint32_t **v, size_t *n)
{
	json_t *sp = json_object_get(specials, name), *ids = json_object_get(sp, "ids"), *e;
	size_t i;
	if (!json_is_array(ids)) {
		LD_ERR(ld, "post_processor.special_tokens", "'%s' is used by the template but has no \"ids\"", name);
		return -EINVAL;
	}
	json_array_foreach(ids, i, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > UINT32_MAX - 1) {
			LD_ERR(ld, "post_processor.special_tokens", "'%s' has an id that is not a u32", name);
			return -EINVAL;
		}
		uint32_t *x = grow((void **)v, n, sizeof(**v));
		if (!x)
			return -ENOMEM;
		*x = (uint32_t)json_integer_value(e);
	}
	return 0;
}

static int load_post(tok_ld *ld, json_t *j)
{
	sw_tokenizer *tk = ld->tk;
	const char *t = jtype(j);
	int rc;
	if (!strcmp(t, "Sequence")) {
		json_t *a = json_object_get(j, "processors"), *e;
		size_t i;
		if (!json_is_array(a)) {
			LD_ERR(ld, "post_processor.processors", "missing array");
			return -EINVAL;
		}
		json_array_foreach(a, i, e)
			if ((rc = load_post(ld, e)))
				return rc;
		return 0;
	}
	if (!strcmp(t, "ByteLevel"))
		return 0;  /* changes offsets only */
	if (!strcmp(t, "TemplateProcessing")) {
		json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens"), *e;
		size_t i;
		int seen_seq = 0;
		if (!json_is_array(single)) {
			LD_ERR(ld, "post_processor.single", "missing array");
			return -EINVAL;
		}
		if (tk->n_tpl_before || tk->n_tpl_after || tk->tpl_before || tk->tpl_after) {
			LD_ERR(ld, "post_processor", "more than one TemplateProcessing is not supported");
			return -ENOTSUP;
		}
		json_array_foreach(single, i, e) {
			json_t *st = json_object_get(e, "SpecialToken"), *sq = json_object_get(e, "Sequence");
			if (json_is_object(sq)) {
				const char *id = jstr(sq, "id");
				if (!id || strcmp(id, "A") || seen_seq) {
					LD_ERR(ld, "post_processor.single", "the single template must hold sequence A once");
					return -EINVAL;
				}
				seen_seq = 1;
			} else if (json_is_object(st) && jstr(st, "id")) {
				if ((rc = seen_seq ? tpl_ids(ld, specials, jstr(st, "id"), &tk->tpl_after, &tk->n_tpl_after)
						   : tpl_ids(ld, specials, jstr(st, "id"), &tk->tpl_before, &tk->n_tpl_before)))
					return rc;
			} else {
				LD_ERR(ld, "post_processor.single", "element %zu is neither SpecialToken nor Sequence", i);
				return -EINVAL;
			}
		}
		return 0;
	}
	LD_ERR(ld, "post_processor.type", "'%s' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)", t);
	return -ENOTSUP;
}

static int set_id_str(sw_tokenizer *tk, uint32_t id, const char *s, size_t n)
{
	free(tk->id_str[id]);
	tk->id_str[id] = dup_n(s, n);
	tk->id_len[id] = (uint32_t)n;
	return tk->id_str[id] ? 0 : -ENOMEM;
}

static int load_model(tok_ld *ld, json_t *root)
{
	sw_tokenizer *tk = ld->tk;
	json_t *m = json_object_get(root, "model"), *vocab, *merges, *added, *e;
	const char *key;
	size_t i;
	int rc;
	if (!json_is_object(m)) {
		LD_ERR(ld, "model", "missing object");
		return -EINVAL;
	}
	const char *t = jstr(m, "type");
	vocab = json_object_get(m, "vocab");
	merges = json_object_get(m, "merges");
	if (t ? strcmp(t, "BPE") != 0 : !json_is_array(merges)) {
		LD_ERR(ld, "model.type", "'%s' is not supported (supported: BPE)", t ? t : "(no type, no merges)");
		return -ENOTSUP;
	}
	if (!json_is_object(vocab) || !json_is_array(merges)) {
		LD_ERR(ld, "model", "BPE needs a \"vocab\" object and a \"merges\" array");
		return -EINVAL;
	}
	json_t *dropout = json_object_get(m, "dropout");
	if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0) {
		LD_ERR(ld, "model.dropout", "%g is not supported (null only: dropout makes encoding random)",
		       json_number_value(dropout));
		return -ENOTSUP;
	}
	tk->fuse_unk = jbool(m, "fuse_unk", 0);
	tk->byte_fallback = jbool(m, "byte_fallback", 0);
	tk->ignore_merges = jbool(m, "ignore_merges", 0);
	const char *cp = jstr(m, "continuing_subword_prefix"), *es = jstr(m, "end_of_word_suffix");
	if (cp && *cp && !(tk->cont_prefix = dup_n(cp, tk->cont_prefix_len = strlen(cp))))
		return -ENOMEM;
	if (es && *es && !(tk->end_suffix = dup_n(es, tk->end_suffix_len = strlen(es))))
		return -ENOMEM;
	/* ids */
	uint64_t n_ids = 0;
	json_object_foreach(vocab, key, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= (1ll << 31)) {
			LD_ERR(ld, "model.vocab", "token '%.80s' has an id that is not a non-negative integer below 2^31", key);
			return -EINVAL;
		}
		if ((uint64_t)json_integer_value(e) + 1 > n_ids)
			n_ids = (uint64_t)json_integer_value(e) + 1;
	}
	added = json_object_get(root, "added_tokens");
	if (added && !json_is_array(added) && !json_is_null(added)) {
		LD_ERR(ld, "added_tokens", "must be an array");
		return -EINVAL;
	}
	json_array_foreach(added, i, e) {
		json_t *id = json_object_get(e, "id");
		if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1ll << 31) ||
		    !json_is_string(json_object_get(e, "content")) || !json_string_length(json_object_get(e, "content"))) {
			LD_ERR(ld, "added_tokens", "element %zu needs an \"id\" (non-negative integer) and a non-empty \"content\"", i);
			return -EINVAL;
		}
		if ((uint64_t)json_integer_value(id) + 1 > n_ids)
			n_ids = (uint64_t)json_integer_value(id) + 1;
	}
	tk->n_ids = (uint32_t)n_ids;
	tk->id_str = calloc(n_ids ? n_ids : 1, sizeof(char *));
	tk->id_len = calloc(n_ids ? n_ids : 1, sizeof(uint32_t));
	tk->is_special = calloc(n_ids ? n_ids : 1, 1);
	if (!tk->id_str || !tk->id_len || !tk->is_special)
		return -ENOMEM;
	json_object_foreach(vocab, key, e) {
		size_t kl = strlen(key);  /* jansson keys cannot hold NUL */
		uint32_t id = (uint32_t)json_integer_value(e);
		if ((rc = tok_strmap_put(&tk->vocab, key, kl, id)) || (rc = set_id_str(tk, id, key, kl)))
			return rc;
	}
	/* single characters of the BMP, for the BPE's first step */
	if (!(tk->char_id = malloc(0x10000 * sizeof(uint32_t))))
		return -ENOMEM;
	memset(tk->char_id, 0xff, 0x10000 * sizeof(uint32_t));
	json_object_foreach(vocab, key, e) {
		size_t kl = strlen(key);
		if (kl > 3 || tok_utf8_len((unsigned char)key[0]) != kl)
			continue;
		utf8proc_int32_t cp;
		if (utf8proc_iterate((const utf8proc_uint8_t *)key, (utf8proc_ssize_t)kl, &cp) == (utf8proc_ssize_t)kl &&
		    cp >= 0 && cp < 0x10000)
			tk->char_id[cp] = (uint32_t)tok_strmap_get(&tk->vocab, key, kl);
	}
	const char *unk = jstr(m, "unk_token");
	tk->unk_id = unk ? tok_strmap_get(&tk->vocab, unk, strlen(unk)) : -1;
	for (unsigned b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof(name), "<0x%02X>", b);
		int64_t id = tok_strmap_get(&tk->vocab, name, 6);
		tk->byte_id[b] = id >= 0 ? (uint32_t)id : UINT32_MAX;
	}
	/* merges */
	json_array_foreach(merges, i, e) {
		const char *a, *b;
		size_t al, bl;
		if (json_is_string(e)) {
			a = json_string_value(e);
			const char *sp = strchr(a, ' ');
			if (!sp || strchr(sp + 1, ' ')) {
				LD_ERR(ld, "model.merges", "element %zu '%.80s' is not two tokens separated by one space", i, a);
				return -EINVAL;
			}
			al = (size_t)(sp - a);
			b = sp + 1;
			bl = strlen(b);
		} else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
			   json_is_string(json_array_get(e, 1))) {
			a = json_string_value(json_array_get(e, 0));
			al = json_string_length(json_array_get(e, 0));
			b = json_string_value(json_array_get(e, 1));
			bl = json_string_length(json_array_get(e, 1));
		} else {
			LD_ERR(ld, "model.merges", "element %zu is neither \"a b\" nor [\"a\", \"b\"]", i);
			return -EINVAL;
		}
		int64_t ia = tok_strmap_get(&tk->vocab, a, al), ib = tok_strmap_get(&tk->vocab, b, bl);
		size_t skip = tk->cont_prefix_len && bl >= tk->cont_prefix_len &&
				      !memcmp(b, tk->cont_prefix, tk->cont_prefix_len) ? tk->cont_prefix_len : 0;
		char *ab = malloc(al + bl + 1);
		if (!ab)
			return -ENOMEM;
		memcpy(ab, a, al);
		memcpy(ab + al, b + skip, bl - skip);
		int64_t iab = tok_strmap_get(&tk->vocab, ab, al + bl - skip);
		free(ab);
		if (ia < 0 || ib < 0 || iab < 0) {
			LD_ERR(ld, "model.merges", "element %zu ('%.40s' + '%.40s'): %s is not in the vocab", i, a, b,
			       ia < 0 ? "the left token" : ib < 0 ? "the right token" : "the merged token");
			return -EINVAL;
		}
		if ((rc = tok_u64map_put(&tk->merges, (uint64_t)ia << 32 | (uint64_t)ib, (uint64_t)i << 32 | (uint64_t)iab)))
			return rc;
	}
	/* added tokens (ids as given: HF keeps them when they are consistent) */
	json_array_foreach(added, i, e) {
		tok_added *a = grow((void **)&tk->added, &tk->n_added, sizeof(*a));
		if (!a)
			return -ENOMEM;
		json_t *c = json_object_get(e, "content");
		a->len = json_string_length(c);
		if (!(a->content = dup_n(json_string_value(c), a->len)))
			return -ENOMEM;
		a->id = (uint32_t)json_integer_value(json_object_get(e, "id"));
		a->single_word = jbool(e, "single_word", 0);
		a->lstrip = jbool(e, "lstrip", 0);
		a->rstrip = jbool(e, "rstrip", 0);
		a->special = jbool(e, "special", 0);
		a->normalized = jbool(e, "normalized", !a->special);
		if ((rc = set_id_str(tk, a->id, a->content, a->len)))
			return rc;
		if (a->special)
			tk->is_special[a->id] = 1;
	}
	return 0;
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *b = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if (n + 65536 > cap) {
			cap = cap ? 2 * cap : 1 << 20;
			char *t = realloc(b, cap);
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			b = t;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f))
				rc = -EIO;
			break;
		}
	}
	fclose(f);
	if (rc) {
		free(b);
		return rc;
	}
	*buf = b;
	*len = n;
	return 0;
}

static json_t *load_json(const char *path, const char *buf, size_t len, size_t flags)
{
	json_error_t err;
	json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL | flags, &err);
	if (!j)
		sw_error("%s: not valid JSON at line %d column %d: %s", path, err.line, err.column, err.text);
	else if (!json_is_object(j)) {
		sw_error("%s: the top level must be a JSON object", path);
		json_decref(j);
		j = NULL;
	}
	return j;
}

static __thread const sw_tokenizer *sort_ctx;   /* qsort's context */

static int cmp_added(const void *x, const void *y)
{
	const tok_added *a = &sort_ctx->added[*(const uint32_t *)x], *b = &sort_ctx->added[*(const uint32_t *)y];
	unsigned char fa = a->match_len ? (unsigned char)a->match[0] : 0, fb = b->match_len ? (unsigned char)b->match[0] : 0;
	if (fa != fb)
		return fa < fb ? -1 : 1;
	if (a->match_len != b->match_len)
		return a->match_len > b->match_len ? -1 : 1;
	return *(const uint32_t *)x < *(const uint32_t *)y ? -1 : 1;
}

/* Builds added_by_byte / added_first (see tok_internal.h). */
static int index_added(sw_tokenizer *tk)
{
	for (int f = 0; f < 2; f++) {
		uint32_t n = 0;
		if (!(tk->added_by_byte[f] = malloc((tk->n_added ? tk->n_added : 1) * sizeof(uint32_t))))
			return -ENOMEM;
		for (size_t k = 0; k < tk->n_added; k++)
			if (tk->added[k].normalized == f && tk->added[k].match_len)
				tk->added_by_byte[f][n++] = (uint32_t)k;
		sort_ctx = tk;
		qsort(tk->added_by_byte[f], n, sizeof(uint32_t), cmp_added);
		memset(tk->added_first[f], 0, sizeof(tk->added_first[f]));
		for (uint32_t k = 0; k < n; k++)
			tk->added_first[f][(unsigned char)tk->added[tk->added_by_byte[f][k]].match[0] + 1]++;
		for (int b = 0; b < 256; b++)
			tk->added_first[f][b + 1] += tk->added_first[f][b];
	}
	return 0;
}

int sw_tokenizer_file_fingerprint(const char *dir, uint64_t *fp)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	*fp = 0;
	char *buf;
	size_t len;
	int rc = read_file(path, &buf, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc) {
		sw_error("%s: cannot read (%s); check the model directory", path, strerror(-rc));
		return rc;
	}
	*fp = XXH3_64bits(buf, len);
	free(buf);
	return 0;
}

static atomic_uint_fast64_t tok_generation;

/* Parses tokenizer.json's bytes (named `path` in error lines) into tk. */
static int load_tokenizer_json(sw_tokenizer *tk, const char *path, const char *buf, size_t len)
{
	tok_ld ld = { path, tk };
	json_t *root, *j;
	int rc;
	tk->fingerprint = XXH3_64bits(buf, len);
	if (!(root = load_json(path, buf, len, 0)))
		return -EINVAL;
	json_t *trunc = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
	if ((trunc && !json_is_null(trunc)) || (pad && !json_is_null(pad))) {
		LD_ERR(&ld, trunc && !json_is_null(trunc) ? "truncation" : "padding",
		       "must be null (spillway truncates and packs itself)");
		rc = -ENOTSUP;
		goto out;
	}
	if ((rc = load_model(&ld, root)))
		goto out;
	if ((j = json_object_get(root, "normalizer")) && !json_is_null(j) && (rc = load_normalizer(&ld, j)))
		goto out;
	if ((j = json_object_get(root, "pre_tokenizer")) && !json_is_null(j) && (rc = load_pretok(&ld, j)))
		goto out;
	if ((j = json_object_get(root, "post_processor")) && !json_is_null(j) && (rc = load_post(&ld, j)))
		goto out;
	if ((j = json_object_get(root, "decoder")) && !json_is_null(j)) {
		tk->has_decoder = 1;
		if ((rc = load_decoder(&ld, j)))
			goto out;
	}
	for (size_t k = 0; k < tk->n_tpl_before + tk->n_tpl_after; k++) {
		uint32_t id = k < tk->n_tpl_before ? tk->tpl_before[k] : tk->tpl_after[k - tk->n_tpl_before];
		if (id >= tk->n_ids) {
			LD_ERR(&ld, "post_processor.special_tokens", "id %u is outside the vocabulary (%u ids)", id, tk->n_ids);
			rc = -EINVAL;
			goto out;
		}
	}
	/* what each added token is matched as */
	for (size_t k = 0; k < tk->n_added; k++) {
		tok_added *a = &tk->added[k];
		if (a->normalized && tk->n_norm) {
			if ((rc = tok_normalize_str(tk, a->content, a->len, &a->match, &a->match_len)))
				goto out;
		} else {
			if (!(a->match = dup_n(a->content, a->len))) {
				rc = -ENOMEM;
				goto out;
			}
			a->match_len = a->len;
		}
	}
	rc = index_added(tk);
out:
	json_decref(root);
	return rc;
}

int sw_tokenizer_load_json(sw_tokenizer **out, const char *json, size_t len, const char *name)
{
	*out = NULL;
	sw_tokenizer *tk = calloc(1, sizeof(*tk));
	if (!tk)
		return -ENOMEM;
	int rc = load_tokenizer_json(tk, name, json, len);
	if (rc) {
		sw_tokenizer_free(tk);
		return rc;
	}
	tk->generation = atomic_fetch_add(&tok_generation, 1) + 1;
	*out = tk;
	return 0;
}

int sw_tokenizer_load(sw_tokenizer **out, const char *dir)
{
	char path[4096];
	char *buf = NULL;
	size_t len;
	int rc;
	*out = NULL;
	sw_tokenizer *tk = calloc(1, sizeof(*tk));
	if (!tk)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if ((rc = read_file(path, &buf, &len))) {
		sw_error("%s: cannot read: %s (pass --tokenizer DIR holding a Hugging Face tokenizer.json)", path,
			 strerror(-rc));
		goto fail;
	}
	if ((rc = load_tokenizer_json(tk, path, buf, len)))
		goto fail;
	free(buf);
	buf = NULL;
	/* tokenizer_config.json, optional */
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	if (access(path, F_OK) == 0) {
		if ((rc = read_file(path, &buf, &len))) {
			sw_error("%s: cannot read: %s", path, strerror(-rc));
			goto fail;
		}
		/* integers as reals: model_max_length is often 1e30 written as an integer */
		if (!(tk->config = load_json(path, buf, len, JSON_DECODE_INT_AS_REAL))) {
			rc = -EINVAL;
			goto fail;
		}
	}
	free(buf);
	buf = NULL;
	/* newer transformers save the chat template beside the config, as chat_template.jinja */
	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	if (access(path, F_OK) == 0) {
		if ((rc = read_file(path, &buf, &len)) || !(tk->chat_template_file = dup_n(buf, len))) {
			sw_error("%s: cannot read: %s", path, strerror(rc ? -rc : ENOMEM));
			rc = rc ? rc : -ENOMEM;
			goto fail;
		}
		free(buf);
		buf = NULL;
	}
	tk->generation = atomic_fetch_add(&tok_generation, 1) + 1;
	*out = tk;
	return 0;
fail:
	free(buf);
	sw_tokenizer_free(tk);
	return rc;
}

void sw_tokenizer_free(sw_tokenizer *tk)
{
	if (!tk)
		return;
	if (tk->generation)
		tok_cache_release(tk);
	tok_strmap_free(&tk->vocab);
	for (uint32_t i = 0; tk->id_str && i < tk->n_ids; i++)
		free(tk->id_str[i]);
	free(tk->id_str);
	free(tk->id_len);
	free(tk->is_special);
	free(tk->char_id);
	tok_u64map_free(&tk->merges);
	free(tk->cont_prefix);
	free(tk->end_suffix);
	for (size_t k = 0; k < tk->n_norm; k++) {
		free(tk->norm[k].str);
		free_pattern(&tk->norm[k].pat);
	}
	free(tk->norm);
	for (size_t k = 0; k < tk->n_pre; k++)
		free_pattern(&tk->pre[k].pat);
	free(tk->pre);
	for (size_t k = 0; k < tk->n_dec; k++) {
		free(tk->dec[k].str);
		free_pattern(&tk->dec[k].pat);
	}
	free(tk->dec);
	free(tk->tpl_before);
	free(tk->tpl_after);
	for (size_t k = 0; k < tk->n_added; k++) {
		free(tk->added[k].content);
		free(tk->added[k].match);
	}
	free(tk->added);
	free(tk->added_by_byte[0]);
	free(tk->added_by_byte[1]);
	json_decref(tk->config);
	free(tk->chat_template_file);
	free(tk);
}

/* ---------- public API ---------- */

void sw_ids_free(sw_ids *x)
{
	if (!x)
		return;
	free(x->v);
	free(x->start);
	memset(x, 0, sizeof(*x));
}

int sw_tokenizer_encode(const sw_tokenizer *tk, const char *text, size_t len, int add_special, sw_ids *out)
{
	return tok_encode(tk, text, len, add_special, out);
}

int sw_tokenizer_decode(const sw_tokenizer *tk, const uint32_t *ids, size_t n, int skip_special, char **text,
			size_t *len)
{
	return tok_decode(tk, ids, n, skip_special, text, len);
}

int64_t sw_tokenizer_token_id(const sw_tokenizer *tk, const char *token)
{
	size_t n = strlen(token);
	for (size_t k = 0; k < tk->n_added; k++)
		if (tk->added[k].len == n && !memcmp(tk->added[k].content, token, n))
			return tk->added[k].id;
	return tok_strmap_get(&tk->vocab, token, n);
}

uint32_t sw_tokenizer_vocab_size(const sw_tokenizer *tk)
{
	return tk->n_ids;
}

uint64_t sw_tokenizer_fingerprint(const sw_tokenizer *tk)
{
	return tk->fingerprint;
}

const char *sw_tokenizer_config_str(const sw_tokenizer *tk, const char *key)
{
	json_t *v = tk->config ? json_object_get(tk->config, key) : NULL, *e;
	size_t i;
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
		return json_string_value(json_object_get(v, "content"));
	if (!strcmp(key, "chat_template")) {
		/* a list of named templates: the one named "default" */
		json_array_foreach(v, i, e) {
			const char *name = jstr(e, "name"), *tpl = jstr(e, "template");
			if (name && tpl && !strcmp(name, "default"))
				return tpl;
		}
		return tk->chat_template_file;
	}
	return NULL;
}

typedef struct tok_batch {
	const sw_tokenizer *tk;
	const char *const *texts;
	const size_t *lens;
	size_t n;
	int add_special;
	sw_ids *outs;
	atomic_size_t next;
	atomic_int failed;
	int *rcs;
} tok_batch;

static void *batch_worker(void *arg)
{
	tok_batch *b = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->n || atomic_load(&b->failed))
			break;
		b->rcs[i] = tok_encode(b->tk, b->texts[i], b->lens[i], b->add_special, &b->outs[i]);
		if (b->rcs[i])
			atomic_store(&b->failed, 1);
	}
	tok_cache_release(b->tk);
	return NULL;
}

int sw_tokenizer_encode_batch(const sw_tokenizer *tk, const char *const *texts, const size_t *lens, size_t n,
			      int add_special, int threads, sw_ids *outs)
{
	if (threads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		threads = c > 0 ? (int)c : 1;
	}
	if ((size_t)threads > n)
		threads = n ? (int)n : 1;
	tok_batch b = { .tk = tk, .texts = texts, .lens = lens, .n = n, .add_special = add_special, .outs = outs };
	atomic_init(&b.next, 0);
	atomic_init(&b.failed, 0);
	b.rcs = calloc(n ? n : 1, sizeof(int));
	if (!b.rcs)
		return -ENOMEM;
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	int started = 0, rc = 0;
	if (!th) {
		free(b.rcs);
		return -ENOMEM;
	}
	for (int t = 1; t < threads; t++) {
		if (pthread_create(&th[t], NULL, batch_worker, &b))
			break;
		started = t;
	}
	/* the calling thread works too, keeping its cache */
	for (;;) {
		size_t i = atomic_fetch_add(&b.next, 1);
		if (i >= b.n || atomic_load(&b.failed))
			break;
		b.rcs[i] = tok_encode(tk, texts[i], lens[i], add_special, &outs[i]);
		if (b.rcs[i])
			atomic_store(&b.failed, 1);
	}
	for (int t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
	for (size_t i = 0; i < n && !rc; i++)
		rc = b.rcs[i];
	free(th);
	free(b.rcs);
	return rc;
}
