/* spillway data: byte-level token files (ids 0..255 are bytes, 256 BOS, 257 EOS, vocab 258).
 *
 * --text FILE: the whole file is one document: BOS, its bytes, EOS; no loss mask.
 * --jsonl FILE: one JSON object per line, each a document: {"text": s} is trained on entirely,
 * {"prompt": p, "response": r} is BOS p r EOS with only r and EOS as targets (loss mask). */
#include "core/cli.h"
#include "core/commands.h"
#include "core/data.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF (1 << 16)

static int put(sw_tok_writer *w, uint32_t tok, uint8_t m, int with_mask)
{
	return sw_tok_writer_append(w, &tok, with_mask ? &m : NULL, 1);
}

static int put_bytes(sw_tok_writer *w, const char *s, size_t n, uint8_t m, int with_mask)
{
	uint32_t t[1024];
	uint8_t mk[1024];
	memset(mk, m, sizeof(mk));
	for (size_t i = 0; i < n; i += 1024) {
		size_t k = n - i < 1024 ? n - i : 1024;
		for (size_t j = 0; j < k; j++)
			t[j] = (uint8_t)s[i + j];
		int rc = sw_tok_writer_append(w, t, with_mask ? mk : NULL, k);
		if (rc)
			return rc;
	}
	return 0;
}

static int from_text(sw_tok_writer *w, FILE *f, const char *path)
{
	static char buf[BUF];
	int rc = put(w, SW_BYTE_BOS, 1, 0);
	size_t n;
	while (!rc && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		rc = put_bytes(w, buf, n, 1, 0);
	if (!rc && ferror(f)) {
		sw_error("%s: read error; check the file", path);
		return -EIO;
	}
	return rc ? rc : put(w, SW_BYTE_EOS, 1, 0);
}

static const char *str_field(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int from_jsonl(sw_tok_writer *w, FILE *f, const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int rc = 0;
	while (!rc && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len == 0 || strspn(line, " \t\r\n") == (size_t)len)
			continue;
		json_error_t jerr;
		json_t *o = json_loadb(line, (size_t)len, 0, &jerr);
		const char *text = o ? str_field(o, "text") : NULL;
		const char *prompt = o ? str_field(o, "prompt") : NULL;
		const char *resp = o ? str_field(o, "response") : NULL;
		if (!json_is_object(o) || (!text && !(prompt && resp))) {
			sw_error("%s:%ld: expected a JSON object with \"text\" or with \"prompt\" and "
				 "\"response\" (strings); fix that line", path, lineno);
			json_decref(o);
			rc = -EINVAL;
			break;
		}
		json_t *tv = json_object_get(o, text ? "text" : "prompt"), *rv = json_object_get(o, "response");
		rc = put(w, SW_BYTE_BOS, 0, 1);
		if (!rc && text)
			rc = put_bytes(w, text, json_string_length(tv), 1, 1);
		if (!rc && !text) {
			rc = put_bytes(w, prompt, json_string_length(tv), 0, 1);
			if (!rc)
				rc = put_bytes(w, resp, json_string_length(rv), 1, 1);
		}
		if (!rc)
			rc = put(w, SW_BYTE_EOS, 1, 1);
		json_decref(o);
	}
	free(line);
	if (!rc && ferror(f)) {
		sw_error("%s: read error; check the file", path);
		rc = -EIO;
	}
	if (!rc && lineno == 0) {
		sw_error("%s: empty; give at least one JSON line", path);
		rc = -EINVAL;
	}
	return rc;
}

int cmd_data(int argc, char **argv)
{
	const char *text = NULL, *jsonl = NULL, *out = NULL;
	const sw_opt opts[] = {
		{ "text", SW_OPT_STR, &text, "FILE", "plain text, one document ('-' reads stdin)", 0 },
		{ "jsonl", SW_OPT_STR, &jsonl, "FILE", "JSON lines: {\"text\"} or {\"prompt\",\"response\"} (masked)", 0 },
		{ "out", SW_OPT_STR, &out, "FILE", "token file to write (.tok)", 1 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("data", "make a byte-level token file (256 BOS, 257 EOS, vocab 258)", opts,
			      argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!!text == !!jsonl) {
		sw_error("data: give exactly one of --text FILE or --jsonl FILE; see 'spillway data --help'");
		return 2;
	}
	const char *in = text ? text : jsonl;
	FILE *f = !strcmp(in, "-") ? stdin : fopen(in, "rb");
	if (!f) {
		sw_error("%s: cannot open (%s); check the path", in, strerror(errno));
		return 1;
	}
	sw_tok_writer *w;
	rc = sw_tok_writer_begin(&w, out, 2, SW_BYTE_VOCAB, jsonl != NULL);
	if (!rc) {
		rc = text ? from_text(w, f, in) : from_jsonl(w, f, in);
		if (rc)
			sw_tok_writer_abort(w);
		else
			rc = sw_tok_writer_finish(w);
	}
	if (f != stdin)
		fclose(f);
	if (rc)
		return 1;
	sw_info("data: wrote %s", out);
	return 0;
}
