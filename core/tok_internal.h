/* Internal structures of the Hugging Face tokenizer (core/tokenizer.c loads them, core/tok_encode.c
 * encodes with them, core/tok_decode.c decodes); not part of the public API. */
#ifndef SW_CORE_TOK_INTERNAL_H
#define SW_CORE_TOK_INTERNAL_H
#include "core/tokenizer.h"

#include <jansson.h>
#include <oniguruma.h>
#include <stdint.h>

/* Open-addressing string -> id table (the vocabulary); strings are owned by the table. */
typedef struct tok_strmap {
	char **str;       /* per slot (NULL: empty) */
	uint32_t *len;
	uint32_t *val;
	uint64_t cap;     /* power of two */
	uint64_t n;
} tok_strmap;
int tok_strmap_put(tok_strmap *m, const char *s, size_t len, uint32_t val);
int64_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len);
void tok_strmap_free(tok_strmap *m);

/* Open-addressing u64 -> u64 table (the merges: (left id << 32 | right id) -> (rank << 32 | new id)). */
typedef struct tok_u64kv {
	uint64_t key;     /* UINT64_MAX: empty */
	uint64_t val;
} tok_u64kv;
typedef struct tok_u64map {
	tok_u64kv *slot;  /* key and value side by side: one cache line per probe */
	uint64_t cap, n;
} tok_u64map;
int tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val);
int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val);
void tok_u64map_free(tok_u64map *m);

/* A literal string or an Oniguruma regex ({"String": ...} or {"Regex": ...} in tokenizer.json). */
typedef struct tok_pattern {
	char *lit;        /* literal (when re == NULL) */
	size_t lit_len;
	regex_t *re;
} tok_pattern;
/* Next match of p in s[0..len) at or after `from`: 1 with [*ms, *me), 0 if none, -errno. */
int tok_pattern_find(const tok_pattern *p, const char *s, size_t len, size_t from, size_t *ms, size_t *me);

enum tok_norm_type { TOK_NORM_NFC, TOK_NORM_PREPEND, TOK_NORM_REPLACE };
typedef struct tok_norm {
	enum tok_norm_type type;
	char *str;        /* PREPEND: the prefix; REPLACE: the content */
	size_t str_len;
	tok_pattern pat;  /* REPLACE */
} tok_norm;

enum tok_pre_type { TOK_PRE_BYTELEVEL, TOK_PRE_SPLIT, TOK_PRE_METASPACE };
enum tok_split_behavior { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT,
			  TOK_SPLIT_CONTIGUOUS };
enum tok_prepend_scheme { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
typedef struct tok_pre {
	enum tok_pre_type type;
	int add_prefix_space, use_regex;        /* BYTELEVEL */
	tok_pattern pat;                        /* SPLIT */
	enum tok_split_behavior behavior;       /* SPLIT */
	int invert;                             /* SPLIT */
	char repl[8];                           /* METASPACE: replacement character (UTF-8) */
	size_t repl_len;
	enum tok_prepend_scheme prepend;        /* METASPACE */
	int split;                              /* METASPACE */
} tok_pre;

enum tok_dec_type { TOK_DEC_BYTELEVEL, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE,
		    TOK_DEC_STRIP };
typedef struct tok_dec {
	enum tok_dec_type type;
	tok_pattern pat;                        /* REPLACE */
	char *str;                              /* REPLACE: content */
	size_t str_len;
	char repl[8];                           /* METASPACE replacement; STRIP content character */
	size_t repl_len;
	enum tok_prepend_scheme prepend;        /* METASPACE */
	int start, stop;                        /* STRIP */
} tok_dec;

typedef struct tok_added {
	char *content;
	size_t len;
	uint32_t id;
	int lstrip, rstrip, single_word, normalized, special;
	char *match;      /* what is searched: content, or its normalized form when normalized */
	size_t match_len;
} tok_added;

struct sw_tokenizer {
	/* model: BPE */
	tok_strmap vocab;
	char **id_str;             /* id -> token string (vocab and added tokens), NULL in gaps */
	uint32_t *id_len;
	uint32_t n_ids;            /* largest id + 1 */
	tok_u64map merges;
	int64_t unk_id;            /* -1: none */
	int fuse_unk, byte_fallback, ignore_merges;
	char *cont_prefix, *end_suffix;         /* continuing_subword_prefix, end_of_word_suffix (or NULL) */
	size_t cont_prefix_len, end_suffix_len;
	uint32_t byte_id[256];     /* byte_fallback: id of <0xNN>, UINT32_MAX if absent */
	uint32_t *char_id;         /* per code point < 0x10000: id of that one character, UINT32_MAX if absent */
	int has_all_bytes;         /* every <0xNN> is in the vocabulary */

	tok_norm *norm;
	size_t n_norm;
	tok_pre *pre;
	size_t n_pre;
	tok_dec *dec;
	size_t n_dec;
	int has_decoder;

	/* post-processor: TemplateProcessing "single" (NULL: adds nothing) */
	uint32_t *tpl_before, *tpl_after;
	size_t n_tpl_before, n_tpl_after;

	tok_added *added;
	size_t n_added;
	uint8_t *is_special;       /* per id: an added token with special = true */
	/* added tokens by their first byte, longest first: for normalized flag f and byte b,
	 * added_by_byte[f][added_first[f][b] .. added_first[f][b + 1]) index tk->added */
	uint32_t *added_by_byte[2];
	uint32_t added_first[2][257];

	uint64_t fingerprint;
	uint64_t generation;       /* unique per load (keys the per-thread BPE caches) */
	json_t *config;            /* tokenizer_config.json or NULL */
	char *chat_template_file;  /* DIR/chat_template.jinja when present, else NULL */
};

int tok_encode(const sw_tokenizer *tk, const char *text, size_t len, int add_special, sw_ids *out);
int tok_ids_push(sw_ids *x, uint32_t id, uint32_t start);
int tok_decode(const sw_tokenizer *tk, const uint32_t *ids, size_t n, int skip_special, char **text, size_t *len);
void tok_cache_release(const sw_tokenizer *tk);
/* Applies the normalizer chain to s (used for added tokens with normalized = true). malloc'd result. */
int tok_normalize_str(const sw_tokenizer *tk, const char *s, size_t len, char **out, size_t *out_len);

/* UTF-8 helpers */
size_t tok_utf8_len(unsigned char c);   /* length of the sequence that starts with c (1 for bad) */
int tok_utf8_valid(const char *s, size_t len, size_t *bad_at);

#endif
