/* spillway data: token files for training (docs/data.md).
 *
 * With --tokenizer DIR: the model's own tokenizer (tokenizer.json) and the dataset formats of
 * core/jsonl.h; chats rendered with the model's chat template (core/chat.h); a loss mask from
 * the tokens' byte offsets; documents packed, each followed by EOS; --max-len truncates or drops.
 * Without --tokenizer: byte-level ids (0..255 bytes, 256 BOS, 257 EOS, vocabulary 258).
 * --decode X.tok prints a token file back as text. */
#include "core/chat.h"
#include "core/cli.h"
#include "core/commands.h"
#include "core/data.h"
#include "core/jsonl.h"
#include "core/log.h"
#include "core/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF (1 << 16)
#define BATCH_DOCS 2048
#define BATCH_BYTES (32u << 20)

/* ------------------------------------------------------------------ byte-level */

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

static int bytes_from_text(sw_tok_writer *w, FILE *f, const char *path)
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

/* {"text"}: BOS text EOS, all targets after BOS; {"prompt", "completion"|"response"}: BOS p c EOS,
 * targets c and EOS. */
static int bytes_from_jsonl(sw_tok_writer *w, sw_jsonl *r)
{
	sw_example ex;
	int rc;
	while ((rc = sw_jsonl_next(r, &ex)) == 1) {
		if (ex.format == SW_FMT_MESSAGES) {
			sw_error("%s:%ld: a \"messages\" conversation needs the model's chat template; give "
				 "--tokenizer MODEL_DIR", r->path, ex.line);
			sw_example_free(&ex);
			return -EINVAL;
		}
		int text = ex.format == SW_FMT_TEXT;
		rc = put(w, SW_BYTE_BOS, 0, 1);
		if (!rc)
			rc = put_bytes(w, ex.text, ex.text_len, (uint8_t)text, 1);
		if (!rc && !text)
			rc = put_bytes(w, ex.completion, ex.completion_len, 1, 1);
		if (!rc)
			rc = put(w, SW_BYTE_EOS, 1, 1);
		sw_example_free(&ex);
		if (rc)
			return rc;
	}
	return rc;
}

/* ------------------------------------------------------------------ with a tokenizer */

typedef struct data_job {
	const char *in, *out, *tok_dir, *template_name;
	sw_jsonl_format format;
	int64_t max_len;
	int drop_long, threads;
	int with_mask;                 /* the output has a loss mask (JSONL input; text has none) */
	sw_tokenizer *tk;
	sw_chat_template tmpl;
	int have_tmpl;
	uint32_t eos;
	/* counts */
	uint64_t docs[4], truncated, dropped, tokens, targets;
} data_job;

typedef struct doc {
	char *owned;                 /* text we built (prompt + completion, a rendered chat) */
	const char *s;
	size_t len;
	size_t (*span)[2];           /* byte ranges whose tokens are targets */
	size_t nspan;
	size_t one_span[2];
	int add_special;
	sw_jsonl_format format;
	long line;
} doc;

static void doc_free(doc *d)
{
	free(d->owned);
	if (d->span != &d->one_span)
		free(d->span);
	memset(d, 0, sizeof(*d));
}

static int ensure_template(data_job *j)
{
	if (j->have_tmpl)
		return 0;
	const char *bos = sw_tokenizer_config_str(j->tk, "bos_token");
	const char *eos = sw_tokenizer_config_str(j->tk, "eos_token");
	char what[4200];
	snprintf(what, sizeof(what), "%s/tokenizer_config.json", j->tok_dir);
	int rc = j->template_name ? sw_chat_template_named(&j->tmpl, j->template_name, bos, eos)
				  : sw_chat_template_detect(&j->tmpl, sw_tokenizer_config_str(j->tk, "chat_template"),
							    bos, eos, what);
	if (!rc)
		j->have_tmpl = 1;
	return rc;
}

/* Turns a parsed example into the text to tokenize and its target spans. */
static int doc_make(data_job *j, sw_example *ex, doc *d)
{
	memset(d, 0, sizeof(*d));
	d->format = ex->format;
	d->line = ex->line;
	d->span = &d->one_span;
	d->add_special = 1;
	if (ex->format == SW_FMT_TEXT || ex->format == SW_FMT_PROMPT) {
		size_t n = ex->text_len + ex->completion_len;
		if (!(d->owned = malloc(n + 1)))
			return -ENOMEM;
		memcpy(d->owned, ex->text, ex->text_len);
		if (ex->completion_len)
			memcpy(d->owned + ex->text_len, ex->completion, ex->completion_len);
		d->owned[n] = 0;
		d->s = d->owned;
		d->len = n;
		d->one_span[0] = ex->format == SW_FMT_TEXT ? 0 : ex->text_len;
		d->one_span[1] = n;
		d->nspan = 1;
		return 0;
	}
	int rc = ensure_template(j);
	if (rc)
		return rc;
	sw_chat_text ct = { 0 };
	rc = sw_chat_render(&j->tmpl, ex->msgs, ex->n_msgs, &ct, j->in, ex->line);
	if (rc) {
		sw_chat_text_free(&ct);
		return rc;
	}
	d->owned = ct.s;
	d->s = ct.s;
	d->len = ct.len;
	d->span = ct.span;
	d->nspan = ct.nspan;
	d->add_special = 0;            /* as apply_chat_template(tokenize=True): the template has them */
	return 0;
}

/* Token i is a target when its bytes [start_i, end_i) (at least one byte) overlap a span. */
static void doc_mask(const doc *d, const sw_ids *ids, uint8_t *mask)
{
	size_t s = 0;
	for (size_t i = 0; i < ids->n; i++) {
		size_t b = ids->start[i];
		size_t e = i + 1 < ids->n ? ids->start[i + 1] : d->len;
		if (e <= b)
			e = b + 1;
		while (s < d->nspan && d->span[s][1] <= b)
			s++;
		mask[i] = s < d->nspan && d->span[s][0] < e;
	}
}

static int emit_doc(data_job *j, sw_tok_writer *w, const doc *d, const sw_ids *ids)
{
	uint64_t n = ids->n;
	int cut = j->max_len > 0 && n + 1 > (uint64_t)j->max_len;
	j->docs[d->format]++;
	if (cut && j->drop_long) {
		j->dropped++;
		return 0;
	}
	if (cut) {
		n = (uint64_t)j->max_len - 1;
		j->truncated++;
	}
	uint8_t *mask = malloc(ids->n + 1);
	if (!mask)
		return -ENOMEM;
	doc_mask(d, ids, mask);
	int rc = sw_tok_writer_append(w, ids->v, j->with_mask ? mask : NULL, n);
	/* the separator: a target after text and completions; not after a chat (its end-of-turn token
	 * is) nor after a truncated document */
	uint8_t em = !cut && d->format != SW_FMT_MESSAGES;
	if (!rc)
		rc = sw_tok_writer_append(w, &j->eos, j->with_mask ? &em : NULL, 1);
	for (uint64_t i = 0; i < n; i++)
		j->targets += mask[i];
	j->targets += em;
	j->tokens += n + 1;
	free(mask);
	return rc;
}

/* Tokenizes a batch of documents (in parallel, in order) and appends them. */
static int flush_batch(data_job *j, sw_tok_writer *w, doc *docs, size_t n)
{
	const char **texts = calloc(n, sizeof(*texts));
	size_t *lens = calloc(n, sizeof(*lens)), *idx = calloc(n, sizeof(*idx));
	sw_ids *ids = calloc(n, sizeof(*ids)), *tmp = calloc(n, sizeof(*tmp));
	int rc = texts && lens && idx && ids && tmp ? 0 : -ENOMEM;
	for (int special = 0; special <= 1 && !rc; special++) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (docs[i].add_special != special)
				continue;
			texts[k] = docs[i].s;
			lens[k] = docs[i].len;
			idx[k++] = i;
		}
		if (!k)
			continue;
		memset(tmp, 0, n * sizeof(*tmp));
		rc = sw_tokenizer_encode_batch(j->tk, texts, lens, k, special, j->threads, tmp);
		for (size_t i = 0; i < k; i++)
			ids[idx[i]] = tmp[i];
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = emit_doc(j, w, &docs[i], &ids[i]);
	for (size_t i = 0; ids && i < n; i++)
		sw_ids_free(&ids[i]);
	free(texts);
	free(lens);
	free(idx);
	free(ids);
	free(tmp);
	return rc;
}

static int tok_from_jsonl(data_job *j, sw_tok_writer *w, sw_jsonl *r)
{
	doc *docs = calloc(BATCH_DOCS, sizeof(*docs));
	if (!docs)
		return -ENOMEM;
	size_t n = 0, bytes = 0;
	int rc;
	sw_example ex;
	while ((rc = sw_jsonl_next(r, &ex)) == 1) {
		rc = doc_make(j, &ex, &docs[n]);
		sw_example_free(&ex);
		if (rc)
			break;
		bytes += docs[n++].len;
		if (n == BATCH_DOCS || bytes >= BATCH_BYTES) {
			rc = flush_batch(j, w, docs, n);
			for (size_t i = 0; i < n; i++)
				doc_free(&docs[i]);
			n = bytes = 0;
			if (rc)
				break;
		}
	}
	if (!rc && n)
		rc = flush_batch(j, w, docs, n);
	for (size_t i = 0; i < n; i++)
		doc_free(&docs[i]);
	free(docs);
	return rc;
}

static int tok_from_text(data_job *j, sw_tok_writer *w, FILE *f)
{
	size_t cap = 1 << 20, len = 0, got;
	char *s = malloc(cap);
	int rc = s ? 0 : -ENOMEM;
	while (!rc && (got = fread(s + len, 1, cap - len, f)) > 0) {
		len += got;
		if (len == cap) {
			char *p = realloc(s, cap * 2);
			if (!p)
				rc = -ENOMEM;
			else
				s = p, cap *= 2;
		}
	}
	if (!rc && ferror(f)) {
		sw_error("%s: read error; check the file", j->in);
		rc = -EIO;
	}
	size_t bad = rc ? len : sw_utf8_invalid_at(s, len);
	if (bad < len) {
		long line = 1;
		for (size_t i = 0; i < bad; i++)
			line += s[i] == '\n';
		sw_error("%s:%ld: not valid UTF-8 (byte %zu of the file is 0x%02x); convert the file to UTF-8", j->in,
			 line, bad + 1, (unsigned char)s[bad]);
		rc = -EILSEQ;
	}
	if (!rc) {
		doc d = { .owned = s, .s = s, .len = len, .nspan = 1, .add_special = 1, .format = SW_FMT_TEXT };
		d.span = &d.one_span;
		d.one_span[1] = len;
		rc = flush_batch(j, w, &d, 1);
	}
	free(s);
	return rc;
}

static int run_tokenizer(data_job *j, FILE *f, int jsonl)
{
	int rc = sw_tokenizer_load(&j->tk, j->tok_dir);
	if (rc)
		return rc;
	const char *eos = sw_tokenizer_config_str(j->tk, "eos_token");
	int64_t eos_id = eos ? sw_tokenizer_token_id(j->tk, eos) : -1;
	if (eos_id < 0) {
		sw_error("%s/tokenizer_config.json: %s; documents are separated by EOS, add \"eos_token\" there",
			 j->tok_dir, eos ? "eos_token is not in the vocabulary" : "no eos_token");
		sw_tokenizer_free(j->tk);
		return -EINVAL;
	}
	j->eos = (uint32_t)eos_id;
	if (j->template_name || j->format == SW_FMT_MESSAGES)
		rc = ensure_template(j);   /* a wrong --chat-template fails before any work */
	uint32_t vocab = sw_tokenizer_vocab_size(j->tk);
	sw_tok_writer *w = NULL;
	j->with_mask = jsonl;
	if (!rc)
		rc = sw_tok_writer_begin(&w, j->out, vocab > 65536 ? 4 : 2, vocab, jsonl);
	if (!rc) {
		sw_tok_writer_set_fingerprint(w, sw_tokenizer_fingerprint(j->tk));
		sw_jsonl r;
		if (jsonl) {
			sw_jsonl_init(&r, f, j->in, j->format);
			rc = tok_from_jsonl(j, w, &r);
			sw_jsonl_close(&r);
		} else {
			rc = tok_from_text(j, w, f);
		}
		if (!rc && !j->tokens) {
			sw_error("%s: every example is longer than --max-len %lld and was dropped; nothing to "
				 "write (raise --max-len or drop --drop-long)", j->in, (long long)j->max_len);
			rc = -EINVAL;
		}
		if (rc)
			sw_tok_writer_abort(w);
		else
			rc = sw_tok_writer_finish(w);
	}
	if (!rc)
		printf("data: %llu examples (text %llu, prompt/completion %llu, messages %llu%s%s), %llu tokens, "
		       "%llu targets; truncated %llu, dropped %llu (--max-len %lld) -> %s (%s ids, vocab %u)\n",
		       (unsigned long long)(j->docs[1] + j->docs[2] + j->docs[3]), (unsigned long long)j->docs[1],
		       (unsigned long long)j->docs[2], (unsigned long long)j->docs[3],
		       j->have_tmpl ? ", template " : "", j->have_tmpl ? j->tmpl.name : "",
		       (unsigned long long)j->tokens, (unsigned long long)j->targets,
		       (unsigned long long)j->truncated, (unsigned long long)j->dropped, (long long)j->max_len, j->out,
		       vocab > 65536 ? "u32" : "u16", vocab);
	sw_tokenizer_free(j->tk);
	return rc;
}

/* ------------------------------------------------------------------ decode */

static int decode_file(const char *path, const char *tok_dir)
{
	sw_data d;
	int rc = sw_data_open(&d, path, 0, 0);
	if (rc)
		return rc;
	uint32_t *ids = malloc((d.h.count ? d.h.count : 1) * sizeof(uint32_t));
	if (!ids) {
		sw_data_close(&d);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < d.h.count; i++)
		ids[i] = sw_data_token(&d, i);
	if (!tok_dir) {
		if (d.h.tok_fingerprint || (d.h.vocab && d.h.vocab != SW_BYTE_VOCAB)) {
			sw_error("%s: made with a tokenizer; give it with --tokenizer DIR", path);
			rc = -EINVAL;
		}
		for (uint64_t i = 0; !rc && i < d.h.count; i++)
			if (ids[i] < 256)
				putchar(ids[i]);
			else if (ids[i] == SW_BYTE_EOS)
				putchar('\n');
	} else {
		sw_tokenizer *tk = NULL;
		rc = sw_tokenizer_load(&tk, tok_dir);
		if (!rc && sw_tokenizer_fingerprint(tk) != d.h.tok_fingerprint) {
			sw_error("%s: made with tokenizer %016llx, %s/tokenizer.json is %016llx; give the "
				 "tokenizer the file was made with", path, (unsigned long long)d.h.tok_fingerprint,
				 tok_dir, (unsigned long long)sw_tokenizer_fingerprint(tk));
			rc = -EINVAL;
		}
		char *text = NULL;
		size_t len = 0;
		if (!rc)
			rc = sw_tokenizer_decode(tk, ids, d.h.count, 0, &text, &len);
		if (!rc && fwrite(text, 1, len, stdout) != len)
			rc = -EIO;
		free(text);
		if (!rc)
			putchar('\n');
		if (tk)
			sw_tokenizer_free(tk);
	}
	free(ids);
	sw_data_close(&d);
	return rc;
}

/* ------------------------------------------------------------------ command */

int cmd_data(int argc, char **argv)
{
	const char *text = NULL, *jsonl = NULL, *out = NULL, *tok = NULL, *fmt = NULL, *tmpl = NULL, *decode = NULL;
	int64_t max_len = 0, threads = 0;
	int drop_long = 0;
	const sw_opt opts[] = {
		{ "text", SW_OPT_STR, &text, "FILE", "plain text, one document ('-' reads stdin)", 0 },
		{ "jsonl", SW_OPT_STR, &jsonl, "FILE", "JSON lines: {\"text\"}, {\"prompt\",\"completion\"|\"response\"}, {\"messages\"}", 0 },
		{ "out", SW_OPT_STR, &out, "FILE", "token file to write (.tok)", 0 },
		{ "tokenizer", SW_OPT_STR, &tok, "DIR", "model directory with tokenizer.json (default: byte-level ids)", 0 },
		{ "format", SW_OPT_STR, &fmt, "F", "text|prompt|messages: force the format of every line (default: per line)", 0 },
		{ "chat-template", SW_OPT_STR, &tmpl, "NAME", "llama3|chatml|qwen2|qwen2.5|qwen3|llama2|mistral (default: detected)", 0 },
		{ "max-len", SW_OPT_INT, &max_len, "N", "longest example in tokens (with its EOS); longer ones are truncated", 0 },
		{ "drop-long", SW_OPT_FLAG, &drop_long, NULL, "drop examples longer than --max-len instead", 0 },
		{ "threads", SW_OPT_INT, &threads, "N", "tokenizer threads (default: all cores)", 0 },
		{ "decode", SW_OPT_STR, &decode, "X.tok", "print a token file as text (with its --tokenizer)", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("data", "make a token file from text or JSON lines (docs/data.md)", opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (decode) {
		if (text || jsonl || out) {
			sw_error("data: --decode takes only --tokenizer; see 'spillway data --help'");
			return 2;
		}
		return decode_file(decode, tok) ? 1 : 0;
	}
	if (!!text == !!jsonl || !out) {
		sw_error("data: give exactly one of --text FILE or --jsonl FILE, and --out X.tok; see 'spillway data --help'");
		return 2;
	}
	int f_id = fmt ? sw_jsonl_format_parse(fmt) : 0;
	if (f_id < 0 || max_len < 0 || (max_len > 0 && max_len < 2) || threads < 0 || (drop_long && !max_len)) {
		sw_error("data: %s; see 'spillway data --help'",
			 f_id < 0 ? "--format must be text, prompt or messages"
			 : drop_long && !max_len ? "--drop-long needs --max-len N"
			 : threads < 0 ? "--threads must be >= 0" : "--max-len must be at least 2");
		return 2;
	}
	if (!tok && (fmt || tmpl || max_len || threads)) {
		sw_error("data: --format, --chat-template, --max-len and --threads need --tokenizer DIR");
		return 2;
	}
	const char *in = text ? text : jsonl;
	FILE *f = !strcmp(in, "-") ? stdin : fopen(in, "rb");
	if (!f) {
		sw_error("%s: cannot open (%s); check the path", in, strerror(errno));
		return 1;
	}
	if (tok) {
		data_job j = { .in = in, .out = out, .tok_dir = tok, .template_name = tmpl,
			       .format = (sw_jsonl_format)f_id, .max_len = max_len, .drop_long = drop_long,
			       .threads = (int)threads };
		rc = run_tokenizer(&j, f, jsonl != NULL);
	} else {
		sw_tok_writer *w;
		rc = sw_tok_writer_begin(&w, out, 2, SW_BYTE_VOCAB, jsonl != NULL);
		if (!rc) {
			if (text) {
				rc = bytes_from_text(w, f, in);
			} else {
				sw_jsonl r;
				sw_jsonl_init(&r, f, in, SW_FMT_AUTO);
				rc = bytes_from_jsonl(w, &r);
				sw_jsonl_close(&r);
			}
			if (rc)
				sw_tok_writer_abort(w);
			else
				rc = sw_tok_writer_finish(w);
		}
		if (!rc)
			sw_info("data: wrote %s", out);
	}
	if (f != stdin)
		fclose(f);
	return rc ? 1 : 0;
}
