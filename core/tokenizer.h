/* Hugging Face tokenizers in C: reads a model's tokenizer.json (+ tokenizer_config.json) and encodes
 * and decodes id-for-id as the `tokenizers` library does (docs/tokenizer.md).
 *
 * Supported: the BPE model (byte-level as in Llama 3 / Qwen / GPT-2, and SentencePiece-style as in
 * Llama 2 / Mistral: byte_fallback, unk, fuse_unk, ignore_merges, merges as "a b" or [a, b]);
 * normalizers NFC, Prepend, Replace, Sequence; pre-tokenizers ByteLevel, Split, Metaspace,
 * Sequence; post-processor TemplateProcessing (and ByteLevel, which changes no ids); decoders
 * ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence; added tokens with their
 * lstrip / rstrip / single_word / normalized / special flags.  Anything else is refused at load
 * with one error line naming the field and its value.
 *
 * A loaded tokenizer is read-only: encode/decode may run on many threads at once on one
 * const sw_tokenizer. */
#ifndef SW_CORE_TOKENIZER_H
#define SW_CORE_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

/* Ids and, per id, the byte offset in the input text where that token starts (for tokens made by
 * a normalizer, e.g. the prepended "▁", the offset of the text they are attached to; for
 * post-processor tokens (BOS/EOS) the offset 0 for a leading one, len for a trailing one). */
typedef struct sw_ids {
	uint32_t *v;
	uint32_t *start;
	size_t n, cap;
} sw_ids;
void sw_ids_free(sw_ids *x);

typedef struct sw_tokenizer sw_tokenizer;

/* Loads DIR/tokenizer.json (+ DIR/tokenizer_config.json if present).  0, or -errno after ONE
 * error line naming the file, the field and the value. */
int sw_tokenizer_load(sw_tokenizer **tk, const char *dir);
void sw_tokenizer_free(sw_tokenizer *tk);
/* The same from tokenizer.json's bytes in memory (no tokenizer_config.json); `name` stands for the
 * file in error lines. */
int sw_tokenizer_load_json(sw_tokenizer **tk, const char *json, size_t len, const char *name);

/* Appends the ids of text[0..len) to out (out->start filled too).  add_special: apply the
 * post-processor (TemplateProcessing BOS/EOS) as HF's encode(add_special_tokens=True) does.
 * Thread-safe on one const tokenizer.  -EILSEQ for invalid UTF-8 (one line), -ENOMEM. */
int sw_tokenizer_encode(const sw_tokenizer *tk, const char *text, size_t len, int add_special, sw_ids *out);

/* Decodes ids to a malloc'd NUL-terminated *text of *len bytes, as HF's decode(ids,
 * skip_special_tokens=skip_special) does.  -EINVAL for an id >= vocab_size (one line). */
int sw_tokenizer_decode(const sw_tokenizer *tk, const uint32_t *ids, size_t n, int skip_special, char **text,
			size_t *len);

int64_t sw_tokenizer_token_id(const sw_tokenizer *tk, const char *token); /* vocab or added token, -1 if absent */
uint32_t sw_tokenizer_vocab_size(const sw_tokenizer *tk);                /* largest id + 1, added tokens included */
uint64_t sw_tokenizer_fingerprint(const sw_tokenizer *tk);               /* XXH3-64 of tokenizer.json's bytes */
/* The same fingerprint of DIR/tokenizer.json without parsing it: *fp = 0 when DIR has none.
 * 0, or -errno after one error line when it exists but cannot be read. */
int sw_tokenizer_file_fingerprint(const char *dir, uint64_t *fp);

/* tokenizer_config.json string field, e.g. "chat_template", "bos_token", "eos_token" (also when
 * given as {"content": ...}); NULL if absent.  "chat_template" also comes from a list of named
 * templates (the one named "default") or, when the config has none, from DIR/chat_template.jinja. */
const char *sw_tokenizer_config_str(const sw_tokenizer *tk, const char *key);

/* Encodes n documents on `threads` threads (0: all cores), outs[i] for texts[i] (appended),
 * deterministic.  The first error (lowest i) is returned after its one line. */
int sw_tokenizer_encode_batch(const sw_tokenizer *tk, const char *const *texts, const size_t *lens, size_t n,
			      int add_special, int threads, sw_ids *outs);

#endif
