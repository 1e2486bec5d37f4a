/* libFuzzer target: tokenizer.json parsing (sw_tokenizer_load_json) and, for every tokenizer it
 * accepts, encoding fixed texts and the input itself, decoding the ids (ids must stay below the
 * vocabulary size) and decoding arbitrary ids. */
#include "core/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void encode_decode(const sw_tokenizer *tk, const char *text, size_t len)
{
	sw_ids x = { 0 };
	if (sw_tokenizer_encode(tk, text, len, 1, &x) == 0) {
		for (size_t i = 0; i < x.n; i++)
			if (x.v[i] >= sw_tokenizer_vocab_size(tk) || x.start[i] > len)
				abort();
		for (int skip = 0; skip < 2; skip++) {
			char *out;
			size_t n;
			if (sw_tokenizer_decode(tk, x.v, x.n, skip, &out, &n) == 0)
				free(out);
		}
	}
	sw_ids_free(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sw_tokenizer *tk;
	if (sw_tokenizer_load_json(&tk, (const char *)data, size, "fuzz/tokenizer.json"))
		return 0;
	static const char *const texts[] = {
		"", " ", "Hello world!  \t\n\n  x", "e\xcc\x81 caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x8e\x89",
		"<s> </s> <|eot_id|> [INST] \xe2\x96\x81\xe2\x96\x81 <0x41>", "a\xff",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		encode_decode(tk, texts[i], strlen(texts[i]));
	encode_decode(tk, (const char *)data, size < 4096 ? size : 4096);
	uint32_t ids[64];
	uint32_t v = sw_tokenizer_vocab_size(tk);
	for (size_t i = 0; i < 64; i++)
		ids[i] = v ? (uint32_t)((i * 2654435761u + size) % v) : 0;
	char *out;
	size_t n;
	if (v && sw_tokenizer_decode(tk, ids, 64, 0, &out, &n) == 0)
		free(out);
	sw_tokenizer_free(tk);
	return 0;
}
