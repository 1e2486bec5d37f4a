/* `spillway tokenize`: encode or decode with a Hugging Face tokenizer directory, for checks
 * against the reference implementation (tests/test_tokenizer_ref.sh) and for bench/tokenize.sh. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/log.h"
#include "core/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char SUMMARY[] = "encode text (stdin, or --jsonl documents) or decode ids with a Hugging Face tokenizer";

static double clock_s(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int read_all(FILE *f, char **buf, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			char *t = realloc(b, cap *= 2);
			if (!t) {
				free(b);
				return -ENOMEM;
			}
			b = t;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		if (!r)
			break;
		n += r;
	}
	*buf = b;
	*len = n;
	return 0;
}

static void print_ids(const sw_ids *x)
{
	for (size_t k = 0; k < x->n; k++)
		printf(k ? " %u" : "%u", x->v[k]);
}

/* --jsonl FILE: one JSON string per line; prints per line "ids<TAB>decoded-as-JSON-string". */
static int run_jsonl(const sw_tokenizer *tk, const char *path, int add_special, int skip_special, int threads,
		     int timing, int quiet)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len, n = 0, cap = 0;
	const char **texts = NULL;
	size_t *lens = NULL;
	json_t **docs = NULL;
	sw_ids *outs = NULL;
	int rc = 0;
	if (!f) {
		sw_error("%s: cannot open: %s", path, strerror(errno));
		return 1;
	}
	rc = read_all(f, &buf, &len);
	fclose(f);
	if (rc)
		return 1;
	for (size_t i = 0, line = 1; i < len; line++) {
		char *nl = memchr(buf + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - buf) : len;
		if (e > i) {
			json_error_t err;
			json_t *j = json_loadb(buf + i, e - i, JSON_ALLOW_NUL | JSON_DECODE_ANY, &err);
			if (!json_is_string(j)) {
				sw_error("%s: line %zu: not a JSON string (%s)", path, line, j ? "other JSON value" : err.text);
				json_decref(j);
				rc = 1;
				goto cleanup;
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				texts = realloc(texts, cap * sizeof(*texts));
				lens = realloc(lens, cap * sizeof(*lens));
				docs = realloc(docs, cap * sizeof(*docs));
				if (!texts || !lens || !docs) {
					rc = 1;
					goto cleanup;
				}
			}
			docs[n] = j;
			texts[n] = json_string_value(j);
			lens[n++] = json_string_length(j);
		}
		i = e + 1;
	}
	if (!(outs = calloc(n ? n : 1, sizeof(*outs)))) {
		rc = 1;
		goto cleanup;
	}
	double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	if (sw_tokenizer_encode_batch(tk, texts, lens, n, add_special, threads, outs)) {
		rc = 1;
		goto cleanup;
	}
	double t1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	if (timing) {
		size_t bytes = 0, toks = 0;
		for (size_t i = 0; i < n; i++) {
			bytes += lens[i];
			toks += outs[i].n;
		}
		/* CPU time too: on a shared host the wall clock also counts time spent waiting for a core */
		fprintf(stderr, "tokenize: %zu documents, %zu bytes, %zu tokens in %.3f s (%.3f CPU s): %.3f MB/s, %.3f MB per CPU s\n",
			n, bytes, toks, t1 - t0, c1 - c0, (double)bytes / 1e6 / (t1 - t0), (double)bytes / 1e6 / (c1 - c0));
	}
	for (size_t i = 0; i < n && !quiet; i++) {
		char *text;
		size_t tl;
		print_ids(&outs[i]);
		if (sw_tokenizer_decode(tk, outs[i].v, outs[i].n, skip_special, &text, &tl)) {
			rc = 1;
			goto cleanup;
		}
		json_t *s = json_stringn(text, tl);
		char *dump = s ? json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
		printf("\t%s\n", dump ? dump : "null");
		free(dump);
		json_decref(s);
		free(text);
	}
cleanup:
	for (size_t i = 0; i < n; i++) {
		json_decref(docs[i]);
		if (outs)
			sw_ids_free(&outs[i]);
	}
	free(outs);
	free(docs);
	free(texts);
	free(lens);
	free(buf);
	return rc;
}

int cmd_tokenize(int argc, char **argv)
{
	const char *dir = NULL, *jsonl = NULL;
	int decode = 0, add_special = 0, skip_special = 0, timing = 0, quiet = 0;
	int64_t threads = 1;
	const sw_opt opts[] = {
		{ "tokenizer", SW_OPT_STR, &dir, "DIR", "directory holding tokenizer.json (+ tokenizer_config.json)", 1 },
		{ "jsonl", SW_OPT_STR, &jsonl, "FILE", "documents, one JSON string per line; prints ids<TAB>decoded text (JSON) per line", 0 },
		{ "decode", SW_OPT_FLAG, &decode, NULL, "read ids from stdin and print the text", 0 },
		{ "add-special", SW_OPT_FLAG, &add_special, NULL, "apply the post-processor (BOS/EOS)", 0 },
		{ "skip-special", SW_OPT_FLAG, &skip_special, NULL, "decode: leave out special tokens", 0 },
		{ "threads", SW_OPT_INT, &threads, "N", "--jsonl: encode documents on N threads (0: all cores)", 0 },
		{ "time", SW_OPT_FLAG, &timing, NULL, "--jsonl: print the encoding throughput on stderr", 0 },
		{ "quiet", SW_OPT_FLAG, &quiet, NULL, "--jsonl: print no ids", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int r = sw_cli_parse("tokenize", SUMMARY, opts, argc, argv);
	if (r)
		return r < 0 ? 0 : r;
	if (threads < 0 || threads > 4096) {
		sw_error("--threads %lld: must be between 0 (all cores) and 4096", (long long)threads);
		return 2;
	}
	sw_tokenizer *tk;
	if (sw_tokenizer_load(&tk, dir))
		return 1;
	int rc = 0;
	if (jsonl) {
		rc = run_jsonl(tk, jsonl, add_special, skip_special, (int)threads, timing, quiet);
	} else {
		char *buf;
		size_t len;
		if (read_all(stdin, &buf, &len)) {
			rc = 1;
		} else if (decode) {
			uint32_t *ids = NULL;
			size_t n = 0, cap = 0;
			char *p = buf, *text = NULL;
			size_t tl;
			buf = realloc(buf, len + 1);
			p = buf;
			if (buf) {
				buf[len] = 0;
				for (;;) {
					while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
						p++;
					if (!*p)
						break;
					char *e;
					unsigned long v = strtoul(p, &e, 10);
					if (e == p || v > UINT32_MAX) {
						sw_error("stdin: '%.20s' is not a token id", p);
						rc = 1;
						break;
					}
					if (n == cap) {
						uint32_t *t = realloc(ids, (cap = cap ? 2 * cap : 256) * sizeof(*ids));
						if (!t) {
							rc = 1;
							break;
						}
						ids = t;
					}
					ids[n++] = (uint32_t)v;
					p = e;
				}
			}
			if (!rc && buf && !sw_tokenizer_decode(tk, ids, n, skip_special, &text, &tl))
				fwrite(text, 1, tl, stdout);
			else
				rc = 1;
			free(text);
			free(ids);
		} else {
			sw_ids x = { 0 };
			if (sw_tokenizer_encode(tk, buf, len, add_special, &x)) {
				rc = 1;
			} else {
				print_ids(&x);
				printf("\n");
			}
			sw_ids_free(&x);
		}
		free(buf);
	}
	sw_tokenizer_free(tk);
	return rc;
}
