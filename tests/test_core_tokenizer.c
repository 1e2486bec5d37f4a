/* The Hugging Face tokenizer on small hand-written tokenizer.json files (tests/data/tokenizers/ and
 * variants of them made here): one check per feature, with the ids worked out by hand from the
 * rules of the Rust `tokenizers` crate, and the malformed-input cases (one error line each). */
#include "core/tokenizer.h"
#include "tests/check.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define BL "tests/data/tokenizers/bytelevel"
#define SP "tests/data/tokenizers/sentencepiece"

static char tmp_root[] = "/tmp/sw-tok-test.XXXXXX";
static int tmp_n;
static char errbuf[4096];

/* Runs sw_tokenizer_load with stderr captured into errbuf. */
static int load_capture(sw_tokenizer **tk, const char *dir)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/stderr", tmp_root);
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	CHECK(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	int rc = sw_tokenizer_load(tk, dir);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, errbuf, sizeof(errbuf) - 1, 0);
	errbuf[n > 0 ? n : 0] = 0;
	close(fd);
	return rc;
}

static sw_tokenizer *load_ok(const char *dir)
{
	sw_tokenizer *tk = NULL;
	int rc = load_capture(&tk, dir);
	CHECKF(rc == 0 && tk, "%s: rc %d: %s", dir, rc, errbuf);
	return tk;
}

/* Writes a directory with the given tokenizer.json (and optional config) text; returns its path. */
static const char *write_dir(const char *json, const char *config)
{
	static char dir[256];
	char path[300];
	snprintf(dir, sizeof(dir), "%s/t%d", tmp_root, tmp_n++);
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
	if (config) {
		snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
		f = fopen(path, "w");
		CHECK(f && fputs(config, f) >= 0 && fclose(f) == 0);
	}
	return dir;
}

/* A variant of a data file: loads DIR/tokenizer.json, lets `edit` change it, writes it out. */
static const char *variant(const char *base, void (*edit)(json_t *root))
{
	char path[256];
	snprintf(path, sizeof(path), "%s/tokenizer.json", base);
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	CHECKF(root, "%s: %s", path, err.text);
	edit(root);
	char *s = json_dumps(root, JSON_ENSURE_ASCII);
	CHECK(s);
	const char *dir = write_dir(s, NULL);
	free(s);
	json_decref(root);
	return dir;
}

/* Encodes text and compares with the n expected ids that follow. */
static void expect_ids(const sw_tokenizer *tk, const char *text, size_t len, int add_special, int n, ...)
{
	sw_ids x = { 0 };
	int rc = sw_tokenizer_encode(tk, text, len, add_special, &x);
	CHECKF(rc == 0, "encode '%s': rc %d", text, rc);
	va_list ap;
	va_start(ap, n);
	int ok = x.n == (size_t)n;
	for (int i = 0; i < n; i++) {
		unsigned v = va_arg(ap, unsigned);
		if (ok && x.v[i] != v)
			ok = 0;
	}
	va_end(ap);
	if (!ok) {
		fprintf(stderr, "encode '%s' (add_special %d) gave [", text, add_special);
		for (size_t i = 0; i < x.n; i++)
			fprintf(stderr, i ? ", %u" : "%u", x.v[i]);
		fprintf(stderr, "], expected %d ids\n", n);
		exit(1);
	}
	sw_ids_free(&x);
}
#define EXPECT(tk, text, add, ...) \
	expect_ids(tk, text, sizeof(text) - 1, add, (int)(sizeof((unsigned[]){ __VA_ARGS__ }) / sizeof(unsigned)), __VA_ARGS__)

static void expect_starts(const sw_tokenizer *tk, const char *text, int n, const unsigned *starts)
{
	sw_ids x = { 0 };
	CHECK(sw_tokenizer_encode(tk, text, strlen(text), 0, &x) == 0);
	CHECKF(x.n == (size_t)n, "'%s': %zu tokens, expected %d", text, x.n, n);
	for (int i = 0; i < n; i++)
		CHECKF(x.start[i] == starts[i], "'%s': token %d starts at %u, expected %u", text, i, x.start[i], starts[i]);
	sw_ids_free(&x);
}

static void expect_decode(const sw_tokenizer *tk, const uint32_t *ids, size_t n, int skip, const char *want)
{
	char *text = NULL;
	size_t len = 0;
	CHECK(sw_tokenizer_decode(tk, ids, n, skip, &text, &len) == 0);
	CHECKF(len == strlen(want) && !memcmp(text, want, len), "decoded '%s', expected '%s'", text, want);
	free(text);
}
#define DECODE(tk, skip, want, ...) \
	expect_decode(tk, (const uint32_t[]){ __VA_ARGS__ }, sizeof((uint32_t[]){ __VA_ARGS__ }) / sizeof(uint32_t), skip, want)

static void test_bytelevel(void)
{
	sw_tokenizer *tk = load_ok(BL);
	/* merges by rank: "the" -> t + he; " the" -> Ġt, he -> Ġthe */
	EXPECT(tk, "the the", 0, 116, 257, 258);
	EXPECT(tk, "the", 1, 116, 257);           /* the ByteLevel post-processor adds nothing */
	EXPECT(tk, "abc", 0, 260, 99);            /* ignore_merges false: a b -> ab, c */
	EXPECT(tk, "  ", 0, 32, 32);
	sw_ids x = { 0 };
	CHECK(sw_tokenizer_encode(tk, "", 0, 1, &x) == 0 && x.n == 0);
	/* NFC: e + U+0301 becomes é (C3 A9) and both bytes point at the 'e' */
	EXPECT(tk, "e\xcc\x81", 0, 0xC3, 0xA9);
	expect_starts(tk, "e\xcc\x81", 2, (const unsigned[]){ 0, 0 });
	expect_starts(tk, "x e\xcc\x81y", 5, (const unsigned[]){ 0, 1, 2, 2, 5 });
	/* invalid UTF-8 */
	CHECK(sw_tokenizer_encode(tk, "a\xff", 2, 0, &x) == -EILSEQ);
	CHECK(sw_tokenizer_encode(tk, "\xc3", 1, 0, &x) == -EILSEQ);
	CHECK(sw_tokenizer_encode(tk, "\xed\xa0\x80", 3, 0, &x) == -EILSEQ);   /* a surrogate */
	CHECK(sw_tokenizer_encode(tk, "\xc0\x80", 2, 1, &x) == -EILSEQ);       /* overlong */
	CHECK(x.n == 0);                          /* nothing appended on error */
	sw_ids_free(&x);
	/* added tokens: special, lstrip, rstrip, single_word, normalized */
	EXPECT(tk, "a<|end|>b", 0, 97, 259, 98);
	EXPECT(tk, "a  <L>b", 0, 97, 262, 98);
	expect_starts(tk, "a  <L>b", 3, (const unsigned[]){ 0, 1, 6 });
	EXPECT(tk, "a<R>  b", 0, 97, 263, 98);
	EXPECT(tk, "foo bar", 0, 264, 32, 98, 97, 114);
	EXPECT(tk, "foobar", 0, 102, 111, 111, 98, 97, 114);
	EXPECT(tk, "xfoo", 0, 120, 102, 111, 111);
	EXPECT(tk, "<Q>", 0, 265);                /* normalized: matched as its normalized form "<q>" */
	EXPECT(tk, "<q>", 0, 265);
	EXPECT(tk, "<Z>", 0, 266);
	EXPECT(tk, "<z>", 0, 60, 122, 62);
	/* decoding */
	DECODE(tk, 0, "the the", 116, 257, 258);
	DECODE(tk, 0, "a<|end|>b", 97, 259, 98);
	DECODE(tk, 1, "ab", 97, 259, 98);         /* skip_special drops special added tokens only */
	DECODE(tk, 1, "a<Z>", 97, 266);
	DECODE(tk, 0, "\xef\xbf\xbd", 0xC3);      /* a lone lead byte: U+FFFD */
	DECODE(tk, 0, "\xc3\xa9", 0xC3, 0xA9);
	char *text;
	size_t len;
	CHECK(sw_tokenizer_decode(tk, (const uint32_t[]){ 267 }, 1, 0, &text, &len) == -EINVAL);
	/* lookups */
	CHECK(sw_tokenizer_vocab_size(tk) == 267);
	CHECK(sw_tokenizer_token_id(tk, "<Z>") == 266);
	CHECK(sw_tokenizer_token_id(tk, "\xc4\xa0the") == 258);
	CHECK(sw_tokenizer_token_id(tk, "nope") == -1);
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "bos_token"), "<|end|>"));
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "eos_token"), "<|end|>"));
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "chat_template"), "{{ messages }}"));
	CHECK(sw_tokenizer_config_str(tk, "pad_token") == NULL);
	/* fingerprint: XXH3-64 of the file's bytes */
	FILE *f = fopen(BL "/tokenizer.json", "rb");
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	CHECK(sw_tokenizer_fingerprint(tk) == XXH3_64bits(buf, n));
	sw_tokenizer_free(tk);
}

static void set_ignore_merges(json_t *root)
{
	json_object_set_new(json_object_get(root, "model"), "ignore_merges", json_true());
}

static void test_ignore_merges(void)
{
	sw_tokenizer *tk = load_ok(variant(BL, set_ignore_merges));
	EXPECT(tk, "abc", 0, 261);                /* the whole word is in the vocab */
	EXPECT(tk, "the", 0, 116, 257);           /* not in the vocab: merges as usual */
	sw_tokenizer_free(tk);
}

static void test_sentencepiece(void)
{
	sw_tokenizer *tk = load_ok(SP);
	EXPECT(tk, "ab", 0, 264);
	EXPECT(tk, "ab", 1, 1, 264, 2);           /* TemplateProcessing: <s> A </s> */
	EXPECT(tk, "a b", 0, 262, 265);
	expect_starts(tk, "a b", 2, (const unsigned[]){ 0, 1 });
	EXPECT(tk, "\xc3\xa9", 0, 259, 198, 172); /* byte fallback: <0xC3> <0xA9> */
	EXPECT(tk, "<s>ab", 0, 1, 264);
	EXPECT(tk, "a<s>b", 0, 262, 1, 265);      /* legacy: ▁ is prepended after a special token too */
	EXPECT(tk, "", 1, 1, 2);
	DECODE(tk, 0, "a b", 262, 265);
	DECODE(tk, 0, "\xc3\xa9", 259, 198, 172);
	DECODE(tk, 0, "\xef\xbf\xbd\xef\xbf\xbd", 198, 198);   /* invalid bytes: one U+FFFD each */
	DECODE(tk, 0, "<s> ab</s>", 1, 264, 2);   /* Strip only cuts a leading space */
	DECODE(tk, 1, "ab", 1, 264, 2);
	sw_tokenizer_free(tk);
}

static void no_byte_fallback(json_t *root)
{
	json_object_set_new(json_object_get(root, "model"), "byte_fallback", json_false());
}

static void no_fallback_no_fuse(json_t *root)
{
	no_byte_fallback(root);
	json_object_set_new(json_object_get(root, "model"), "fuse_unk", json_false());
}

static void test_unk(void)
{
	sw_tokenizer *tk = load_ok(variant(SP, no_byte_fallback));
	EXPECT(tk, "\xc3\xa9", 0, 259, 0);
	EXPECT(tk, "\xc3\xa9\xc3\xa9", 0, 259, 0);   /* fuse_unk */
	EXPECT(tk, "\xc3\xa9" "a", 0, 259, 0, 260);
	sw_tokenizer_free(tk);
	tk = load_ok(variant(SP, no_fallback_no_fuse));
	EXPECT(tk, "\xc3\xa9\xc3\xa9", 0, 259, 0, 0);
	sw_tokenizer_free(tk);
}

static const char *g_scheme;
static void metaspace(json_t *root)
{
	json_object_set_new(root, "normalizer", json_null());
	json_t *m = json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", "\xe2\x96\x81", "prepend_scheme",
			      g_scheme, "split", 1);
	json_object_set_new(root, "pre_tokenizer", m);
	json_object_set_new(root, "decoder", json_pack("{s:s, s:s, s:s}", "type", "Metaspace", "replacement", "\xe2\x96\x81",
						       "prepend_scheme", g_scheme));
}

static void test_metaspace(void)
{
	g_scheme = "first";
	sw_tokenizer *tk = load_ok(variant(SP, metaspace));
	EXPECT(tk, "a b", 0, 262, 265);
	EXPECT(tk, "a<s>b", 0, 262, 1, 261);      /* first: only the piece at offset 0 gets ▁ */
	DECODE(tk, 0, "a b", 262, 265);           /* the Metaspace decoder drops the first ▁ */
	sw_tokenizer_free(tk);
	g_scheme = "always";
	tk = load_ok(variant(SP, metaspace));
	EXPECT(tk, "a<s>b", 0, 262, 1, 265);
	sw_tokenizer_free(tk);
	g_scheme = "never";
	tk = load_ok(variant(SP, metaspace));
	EXPECT(tk, "a b", 0, 260, 265);
	DECODE(tk, 0, "a b", 260, 265);
	sw_tokenizer_free(tk);
}

/* Split on ▁ with a behavior; the vocab gains "b▁" (266) and "▁▁" (267) to tell the behaviors apart. */
static const char *g_behavior, *g_pattern_kind = "String", *g_pattern = "\xe2\x96\x81";
static int g_invert;
static void split(json_t *root)
{
	json_t *model = json_object_get(root, "model");
	json_object_set_new(json_object_get(model, "vocab"), "b\xe2\x96\x81", json_integer(266));
	json_object_set_new(json_object_get(model, "vocab"), "\xe2\x96\x81\xe2\x96\x81", json_integer(267));
	json_array_append_new(json_object_get(model, "merges"), json_string("b \xe2\x96\x81"));
	json_array_append_new(json_object_get(model, "merges"), json_string("\xe2\x96\x81 \xe2\x96\x81"));
	json_object_set_new(root, "normalizer", json_null());
	json_object_set_new(root, "pre_tokenizer",
			    json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", g_pattern_kind, g_pattern,
				      "behavior", g_behavior, "invert", g_invert));
}

static sw_tokenizer *split_tk(const char *behavior, int invert)
{
	g_behavior = behavior;
	g_invert = invert;
	return load_ok(variant(SP, split));
}

static void test_split(void)
{
	sw_tokenizer *tk;
#define B "\xe2\x96\x81"
	tk = split_tk("Removed", 0);
	EXPECT(tk, "b" B "ab", 0, 261, 263);
	sw_tokenizer_free(tk);
	tk = split_tk("Isolated", 0);
	EXPECT(tk, "b" B "ab", 0, 261, 259, 263);
	EXPECT(tk, "b" B B "ab", 0, 261, 259, 259, 263);
	sw_tokenizer_free(tk);
	tk = split_tk("MergedWithPrevious", 0);
	EXPECT(tk, "b" B "ab", 0, 266, 263);
	sw_tokenizer_free(tk);
	tk = split_tk("MergedWithNext", 0);
	EXPECT(tk, "b" B "ab", 0, 261, 264);
	sw_tokenizer_free(tk);
	tk = split_tk("Contiguous", 0);
	EXPECT(tk, "b" B B "ab", 0, 261, 267, 263);
	sw_tokenizer_free(tk);
	tk = split_tk("Removed", 1);              /* invert: the non-matches are removed */
	EXPECT(tk, "b" B "ab", 0, 259);
	sw_tokenizer_free(tk);
	g_pattern_kind = "Regex";
	g_pattern = B "+";
	tk = split_tk("Removed", 0);
	EXPECT(tk, "b" B B "ab", 0, 261, 263);
	sw_tokenizer_free(tk);
	g_pattern = "(?i:AB)|\\p{N}";             /* Oniguruma syntax: inline flags and properties */
	tk = split_tk("Isolated", 0);
	EXPECT(tk, "bab", 0, 261, 263);
	sw_tokenizer_free(tk);
#undef B
}

/* A batch on several threads gives what one encode at a time gives. */
static void test_batch(void)
{
	sw_tokenizer *tk = load_ok(BL);
	enum { N = 200 };
	const char *texts[N];
	size_t lens[N];
	static char store[N][64];
	for (int i = 0; i < N; i++) {
		snprintf(store[i], sizeof(store[i]), "the %d foo<|end|> e\xcc\x81 abc  %*s", i * 7919, i % 9, "");
		texts[i] = store[i];
		lens[i] = strlen(store[i]);
	}
	sw_ids outs[N];
	memset(outs, 0, sizeof(outs));
	CHECK(sw_tokenizer_encode_batch(tk, texts, lens, N, 1, 3, outs) == 0);
	for (int i = 0; i < N; i++) {
		sw_ids one = { 0 };
		CHECK(sw_tokenizer_encode(tk, texts[i], lens[i], 1, &one) == 0);
		CHECK(one.n == outs[i].n && !memcmp(one.v, outs[i].v, one.n * 4) && !memcmp(one.start, outs[i].start, one.n * 4));
		sw_ids_free(&one);
		sw_ids_free(&outs[i]);
	}
	texts[5] = "bad \xff";
	lens[5] = 5;
	memset(outs, 0, sizeof(outs));
	CHECK(sw_tokenizer_encode_batch(tk, texts, lens, N, 0, 2, outs) == -EILSEQ);
	for (int i = 0; i < N; i++)
		sw_ids_free(&outs[i]);
	sw_tokenizer_free(tk);
}

/* Each bad input fails with ONE line that names the file and the field (or the problem). */
static void expect_fail(const char *dir, const char *want1, const char *want2)
{
	sw_tokenizer *tk = (sw_tokenizer *)1;
	int rc = load_capture(&tk, dir);
	CHECKF(rc < 0 && tk == NULL, "%s: loaded (rc %d), expected an error about %s", dir, rc, want1);
	char *nl = strchr(errbuf, '\n');
	CHECKF(nl && nl[1] == 0, "expected one error line, got: %s", errbuf);
	CHECKF(strstr(errbuf, want1) && (!want2 || strstr(errbuf, want2)), "error line lacks '%s'/'%s': %s", want1,
	       want2 ? want2 : "", errbuf);
}

static const char *g_key, *g_json;
static void set_field(json_t *root)
{
	json_error_t err;
	json_t *v = json_loads(g_json, JSON_DECODE_ANY, &err);
	CHECKF(v, "%s: %s", g_json, err.text);
	json_t *obj = root;
	char key[64];
	snprintf(key, sizeof(key), "%s", g_key);
	char *dot = strchr(key, '.');
	if (dot) {
		*dot = 0;
		obj = json_object_get(root, key);
	}
	json_object_set_new(obj, dot ? dot + 1 : key, v);
}

static void fail_variant(const char *base, const char *key, const char *json, const char *want1, const char *want2)
{
	g_key = key;
	g_json = json;
	expect_fail(variant(base, set_field), want1, want2);
}

static void test_malformed(void)
{
	expect_fail("/nonexistent-dir", "/nonexistent-dir/tokenizer.json", "cannot read");
	expect_fail(write_dir("{\"model\": ", NULL), "tokenizer.json", "not valid JSON");
	expect_fail(write_dir("[1, 2]", NULL), "tokenizer.json", "object");
	fail_variant(BL, "model.type", "\"WordPiece\"", "model.type", "WordPiece");
	fail_variant(BL, "model.type", "\"Unigram\"", "model.type", "Unigram");
	fail_variant(BL, "model.dropout", "0.1", "model.dropout", NULL);
	fail_variant(BL, "model.merges", "[\"a zz\"]", "model.merges", "not in the vocab");
	fail_variant(BL, "model.merges", "[\"a b c\"]", "model.merges", NULL);
	fail_variant(BL, "model.merges", "[[\"a\"]]", "model.merges", NULL);
	fail_variant(BL, "model.vocab", "{\"a\": -3}", "model.vocab", NULL);
	fail_variant(BL, "normalizer", "{\"type\": \"Lowercase\"}", "normalizer.type", "Lowercase");
	fail_variant(BL, "normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}]}", "normalizer.type", "NFKC");
	fail_variant(BL, "pre_tokenizer", "{\"type\": \"Whitespace\"}", "pre_tokenizer.type", "Whitespace");
	fail_variant(BL, "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}",
		     "pre_tokenizer(Split).pattern", "does not compile");
	fail_variant(BL, "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"String\": \"x\"}, \"behavior\": \"Bogus\"}",
		     "pre_tokenizer(Split).behavior", "Bogus");
	fail_variant(BL, "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": 3, \"behavior\": \"Isolated\"}",
		     "pre_tokenizer(Split).pattern", NULL);
	fail_variant(BL, "decoder", "{\"type\": \"WordPiece\"}", "decoder.type", "WordPiece");
	fail_variant(BL, "post_processor", "{\"type\": \"BertProcessing\"}", "post_processor.type", "BertProcessing");
	fail_variant(SP, "post_processor", "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\"}}], \"special_tokens\": {}}",
		     "post_processor.special_tokens", "<x>");
	fail_variant(BL, "truncation", "{\"max_length\": 5}", "truncation", NULL);
	fail_variant(BL, "added_tokens", "[{\"content\": \"x\"}]", "added_tokens", NULL);
	fail_variant(SP, "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}", "replacement", NULL);
	/* a malformed tokenizer_config.json next to a good tokenizer.json */
	FILE *f = fopen(BL "/tokenizer.json", "rb");
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	expect_fail(write_dir(buf, "{\"bos_token\": "), "tokenizer_config.json", "not valid JSON");
}

/* chat_template: a string, a list of named templates, or chat_template.jinja beside the config */
static void test_chat_template(void)
{
	FILE *f = fopen(BL "/tokenizer.json", "rb");
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	sw_tokenizer *tk = load_ok(write_dir(buf, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
						  "{\"name\": \"default\", \"template\": \"D\"}]}"));
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "chat_template"), "D"));
	sw_tokenizer_free(tk);
	const char *dir = write_dir(buf, "{\"eos_token\": \"<|end|>\"}");
	char path[300];
	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	f = fopen(path, "w");
	CHECK(f && fputs("{{ jinja }}\n", f) >= 0 && fclose(f) == 0);
	tk = load_ok(dir);
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "chat_template"), "{{ jinja }}\n"));
	CHECK(!strcmp(sw_tokenizer_config_str(tk, "eos_token"), "<|end|>"));
	sw_tokenizer_free(tk);
	tk = load_ok(write_dir(buf, NULL));
	CHECK(sw_tokenizer_config_str(tk, "chat_template") == NULL);
	sw_tokenizer_free(tk);
}

int main(void)
{
	CHECK(mkdtemp(tmp_root));
	test_bytelevel();
	test_ignore_merges();
	test_sentencepiece();
	test_unk();
	test_metaspace();
	test_split();
	test_batch();
	test_malformed();
	test_chat_template();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_root);
	CHECK(system(cmd) == 0);
	printf("tokenizer unit tests: ok\n");
	return 0;
}
