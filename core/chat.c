/* Native chat templates (Llama 3, ChatML / Qwen, Llama 2, Mistral): render and mark the spans. */
#include "core/chat.h"
#include "core/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char qwen2_system[] = "You are a helpful assistant.";
static const char qwen25_system[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

static int set_tokens(sw_chat_template *t, const char *bos, const char *eos)
{
	int need_bos = t->family == SW_CHAT_LLAMA3 || t->family == SW_CHAT_LLAMA2 || t->family == SW_CHAT_MISTRAL;
	int need_eos = t->family == SW_CHAT_LLAMA2 || t->family == SW_CHAT_MISTRAL;
	if ((need_bos && (!bos || !*bos)) || (need_eos && (!eos || !*eos))) {
		sw_error("chat template %s needs tokenizer_config.json's %s; add it there", t->name,
			 need_bos && (!bos || !*bos) ? "bos_token" : "eos_token");
		return -EINVAL;
	}
	if ((bos && strlen(bos) >= sizeof(t->bos)) || (eos && strlen(eos) >= sizeof(t->eos))) {
		sw_error("chat template %s: bos_token or eos_token longer than %zu bytes; not supported", t->name,
			 sizeof(t->bos) - 1);
		return -EINVAL;
	}
	snprintf(t->bos, sizeof(t->bos), "%s", bos ? bos : "");
	snprintf(t->eos, sizeof(t->eos), "%s", eos ? eos : "");
	return 0;
}

int sw_chat_template_named(sw_chat_template *t, const char *name, const char *bos, const char *eos)
{
	memset(t, 0, sizeof(*t));
	static const struct {
		const char *name;
		sw_chat_family f;
		const char *sys;
		int think;
	} tab[] = {
		{ "llama3", SW_CHAT_LLAMA3, NULL, 0 },   { "chatml", SW_CHAT_CHATML, NULL, 0 },
		{ "qwen2", SW_CHAT_CHATML, qwen2_system, 0 }, { "qwen2.5", SW_CHAT_CHATML, qwen25_system, 0 },
		{ "qwen3", SW_CHAT_CHATML, NULL, 1 },     { "llama2", SW_CHAT_LLAMA2, NULL, 0 },
		{ "mistral", SW_CHAT_MISTRAL, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (strcmp(name, tab[i].name))
			continue;
		t->family = tab[i].f;
		t->name = tab[i].name;
		t->default_system = tab[i].sys;
		t->think = tab[i].think;
		return set_tokens(t, bos, eos);
	}
	sw_error("--chat-template %s: unknown; supported: %s", name, SW_CHAT_NAMES);
	return -EINVAL;
}

int sw_chat_template_detect(sw_chat_template *t, const char *ct, const char *bos, const char *eos, const char *what)
{
	const char *name = NULL, *why = "";
	if (!ct) {
		sw_error("%s has no chat_template; choose one with --chat-template NAME (%s)", what, SW_CHAT_NAMES);
		return -EINVAL;
	}
	if (strstr(ct, "<|start_header_id|>") && strstr(ct, "<|eot_id|>")) {
		if (strstr(ct, "Cutting Knowledge Date") || strstr(ct, "Today Date"))
			why = " (a Llama 3.1+ template with the dated system header is not rendered natively)";
		else if (!strstr(ct, "['content'] | trim"))
			why = " (a Llama 3 variant that does not trim the content as Meta's template does)";
		else
			name = "llama3";
	} else if (strstr(ct, "<|im_start|>") && strstr(ct, "<|im_end|>")) {
		if (strstr(ct, "<think>"))
			name = "qwen3";
		else if (strstr(ct, qwen25_system))
			name = "qwen2.5";
		else if (strstr(ct, "system\\nYou are a helpful assistant.<|im_end|>") ||
			 strstr(ct, "system\nYou are a helpful assistant.<|im_end|>"))
			name = "qwen2";
		else if (strstr(ct, "You are"))
			why = " (a ChatML template with a default system prompt spillway does not know)";
		else
			name = "chatml";
	} else if (strstr(ct, "[INST]") && strstr(ct, "[/INST]")) {
		/* only the exact forms rendered here: other Mistral versions differ in spaces and system
		 * handling (v0.3: "[/INST]" without a space, the system message in the last user turn) */
		if (strstr(ct, "<<SYS>>") && strstr(ct, "content.strip() + ' [/INST]'") &&
		    strstr(ct, "' '  + content.strip() + ' ' + eos_token"))
			name = "llama2";
		else if (!strstr(ct, "<<SYS>>") && strstr(ct, "'[INST] ' + message['content'] + ' [/INST]'") &&
			 strstr(ct, "message['content'] + eos_token"))
			name = "mistral";
		else
			why = " (an [INST] template other than Llama 2 chat's or Mistral Instruct v0.1's)";
	}
	if (!name) {
		sw_error("%s: chat_template is not one of the supported families%s; choose one with "
			 "--chat-template NAME (%s)", what, why, SW_CHAT_NAMES);
		return -EINVAL;
	}
	int rc = sw_chat_template_named(t, name, bos, eos);
	if (!rc && t->family == SW_CHAT_LLAMA3)
		t->gen_header_always = !strstr(ct, "add_generation_prompt");
	return rc;
}

/* ------------------------------------------------------------------ output */

static int put(sw_chat_text *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		size_t cap = (o->len + n + 1) * 2 + 256;
		char *p = realloc(o->s, cap);
		if (!p)
			return -ENOMEM;
		o->s = p;
		o->cap = cap;
	}
	memcpy(o->s + o->len, s, n);
	o->len += n;
	o->s[o->len] = 0;
	return 0;
}

static int puts_(sw_chat_text *o, const char *s)
{
	return put(o, s, strlen(s));
}

static int add_span(sw_chat_text *o, size_t begin, size_t end)
{
	if (o->nspan == o->spancap) {
		size_t cap = o->spancap * 2 + 8;
		void *p = realloc(o->span, cap * sizeof(*o->span));
		if (!p)
			return -ENOMEM;
		o->span = p;
		o->spancap = cap;
	}
	o->span[o->nspan][0] = begin;
	o->span[o->nspan][1] = end;
	o->nspan++;
	return 0;
}

void sw_chat_text_free(sw_chat_text *o)
{
	free(o->s);
	free(o->span);
	memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------------ string helpers */

/* Python's str.isspace() code points (what Jinja's trim and str.strip() remove). */
static int py_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
	       c == 0x3000;
}

/* Decodes the code point at s[i] (valid UTF-8), returning its length. */
static size_t cp_at(const unsigned char *s, size_t i, uint32_t *cp)
{
	unsigned c = s[i];
	size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	uint32_t v = n == 1 ? c : c & (0x7f >> n);
	for (size_t k = 1; k < n; k++)
		v = v << 6 | (s[i + k] & 0x3f);
	*cp = v;
	return n;
}

/* str.strip(): narrows [*b, *e) of s. */
static void py_strip(const char *s, size_t *b, size_t *e)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t cp;
	while (*b < *e) {
		size_t n = cp_at(u, *b, &cp);
		if (!py_space(cp))
			break;
		*b += n;
	}
	while (*e > *b) {
		size_t st = *e - 1;
		while (st > *b && (u[st] & 0xc0) == 0x80)
			st--;
		cp_at(u, st, &cp);
		if (!py_space(cp))
			break;
		*e = st;
	}
}

static void strip_nl(const char *s, size_t *b, size_t *e, int left, int right)
{
	while (left && *b < *e && s[*b] == '\n')
		(*b)++;
	while (right && *e > *b && s[*e - 1] == '\n')
		(*e)--;
}

/* First / last occurrence of needle in s[b, e), or -1. */
static long find_first(const char *s, size_t b, size_t e, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = b; i + n <= e; i++)
		if (!memcmp(s + i, needle, n))
			return (long)i;
	return -1;
}

static long find_last(const char *s, size_t b, size_t e, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = e - b >= n ? e - n + 1 : b; i-- > b;)
		if (i + n <= e && !memcmp(s + i, needle, n))
			return (long)i;
	return -1;
}

/* ------------------------------------------------------------------ families */

static int render_llama3(const sw_chat_template *t, const sw_chat_msg *m, size_t n, sw_chat_text *o)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t b = 0, e = m[i].len;
		py_strip(m[i].content, &b, &e);             /* message['content'] | trim */
		if (i == 0)
			rc = puts_(o, t->bos);
		if (!rc)
			rc = puts_(o, "<|start_header_id|>");
		if (!rc)
			rc = puts_(o, sw_chat_role_name(m[i].role));
		if (!rc)
			rc = puts_(o, "<|end_header_id|>\n\n");
		size_t at = o->len;
		if (!rc)
			rc = put(o, m[i].content + b, e - b);
		if (!rc)
			rc = puts_(o, "<|eot_id|>");
		if (!rc && m[i].role == SW_ROLE_ASSISTANT)
			rc = add_span(o, at, o->len);
	}
	if (!rc && t->gen_header_always)
		rc = puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	return rc;
}

/* Qwen3: an assistant turn after the last user query gets <think>\n{reasoning}\n</think>\n\n when it
 * is the last message or has reasoning; "</think>" in the content splits reasoning from content. */
static int qwen3_assistant(const sw_chat_msg *msg, int after_query, int last, sw_chat_text *o)
{
	const char *s = msg->content;
	size_t cb = 0, ce = msg->len, rb = 0, re = 0;
	long close_first = find_first(s, 0, msg->len, "</think>");
	if (close_first >= 0) {
		long close_last = find_last(s, 0, msg->len, "</think>");
		cb = (size_t)close_last + 8;                      /* split('</think>')[-1].lstrip('\n') */
		strip_nl(s, &cb, &ce, 1, 0);
		rb = 0;                                           /* split('</think>')[0].rstrip('\n') */
		re = (size_t)close_first;
		strip_nl(s, &rb, &re, 0, 1);
		long open = find_last(s, rb, re, "<think>");      /* .split('<think>')[-1].lstrip('\n') */
		if (open >= 0)
			rb = (size_t)open + 7;
		strip_nl(s, &rb, &re, 1, 0);
	}
	int rc = 0;
	if (after_query && (last || re > rb)) {
		strip_nl(s, &rb, &re, 1, 1);                      /* reasoning_content.strip('\n') */
		strip_nl(s, &cb, &ce, 1, 0);                      /* content.lstrip('\n') */
		rc = puts_(o, "<think>\n");
		if (!rc)
			rc = put(o, s + rb, re - rb);
		if (!rc)
			rc = puts_(o, "\n</think>\n\n");
	}
	return rc ? rc : put(o, s + cb, ce - cb);
}

static int render_chatml(const sw_chat_template *t, const sw_chat_msg *m, size_t n, sw_chat_text *o)
{
	int rc = 0;
	if (t->default_system && m[0].role != SW_ROLE_SYSTEM) {
		rc = puts_(o, "<|im_start|>system\n");
		if (!rc)
			rc = puts_(o, t->default_system);
		if (!rc)
			rc = puts_(o, "<|im_end|>\n");
	}
	size_t last_query = n - 1;
	for (size_t i = n; i-- > 0;) {
		if (m[i].role != SW_ROLE_USER)
			continue;
		const char *c = m[i].content;
		size_t l = m[i].len;
		int tool = l >= 31 && !memcmp(c, "<tool_response>", 15) && !memcmp(c + l - 16, "</tool_response>", 16);
		if (!tool) {
			last_query = i;
			break;
		}
	}
	for (size_t i = 0; i < n && !rc; i++) {
		rc = puts_(o, "<|im_start|>");
		if (!rc)
			rc = puts_(o, sw_chat_role_name(m[i].role));
		if (!rc)
			rc = puts_(o, "\n");
		size_t at = o->len;
		if (!rc && t->think && m[i].role == SW_ROLE_ASSISTANT)
			rc = qwen3_assistant(&m[i], i > last_query, i == n - 1, o);
		else if (!rc)
			rc = put(o, m[i].content, m[i].len);
		if (!rc)
			rc = puts_(o, "<|im_end|>");
		if (!rc && m[i].role == SW_ROLE_ASSISTANT)
			rc = add_span(o, at, o->len);
		if (!rc)
			rc = puts_(o, "\n");
	}
	return rc;
}

static int render_inst(const sw_chat_template *t, const sw_chat_msg *m, size_t n, sw_chat_text *o, const char *path,
		       long line)
{
	int llama2 = t->family == SW_CHAT_LLAMA2;
	size_t first = 0;
	if (m[0].role == SW_ROLE_SYSTEM) {
		if (!llama2) {
			sw_error("%s:%ld: the %s template has no system role (its Jinja template raises); drop the "
				 "system message or merge it into the first user message", path, line, t->name);
			return -EINVAL;
		}
		first = 1;
	}
	int rc = llama2 ? 0 : puts_(o, t->bos);
	for (size_t i = first; i < n && !rc; i++) {
		int user = m[i].role == SW_ROLE_USER;
		if (!llama2) {                       /* mistral: no strip */
			if (user) {
				rc = puts_(o, "[INST] ");
				if (!rc)
					rc = put(o, m[i].content, m[i].len);
				if (!rc)
					rc = puts_(o, " [/INST]");
			} else {
				size_t at = o->len;
				rc = put(o, m[i].content, m[i].len);
				if (!rc)
					rc = puts_(o, t->eos);
				if (!rc)
					rc = add_span(o, at, o->len);
			}
			continue;
		}
		/* llama2: content.strip(); the system block is part of the first message's content */
		sw_chat_text c = { 0 };
		if (i == first && first) {
			rc = puts_(&c, "<<SYS>>\n");
			if (!rc)
				rc = put(&c, m[0].content, m[0].len);
			if (!rc)
				rc = puts_(&c, "\n<</SYS>>\n\n");
		}
		if (!rc)
			rc = put(&c, m[i].content, m[i].len);
		size_t b = 0, e = c.len;
		if (!rc)
			py_strip(c.s, &b, &e);
		size_t at = o->len;
		if (!rc && user) {
			rc = puts_(o, t->bos);
			if (!rc)
				rc = puts_(o, "[INST] ");
			if (!rc)
				rc = put(o, c.s + b, e - b);
			if (!rc)
				rc = puts_(o, " [/INST]");
		} else if (!rc) {
			rc = puts_(o, " ");
			if (!rc)
				rc = put(o, c.s + b, e - b);
			if (!rc)
				rc = puts_(o, " ");
			if (!rc)
				rc = puts_(o, t->eos);
			if (!rc)
				rc = add_span(o, at, o->len);
		}
		sw_chat_text_free(&c);
	}
	return rc;
}

int sw_chat_render(const sw_chat_template *t, const sw_chat_msg *msgs, size_t n, sw_chat_text *out, const char *path,
		   long line)
{
	out->len = 0;
	out->nspan = 0;
	int rc = put(out, "", 0);
	if (rc || !n)
		return rc;
	switch (t->family) {
	case SW_CHAT_LLAMA3: return render_llama3(t, msgs, n, out);
	case SW_CHAT_CHATML: return render_chatml(t, msgs, n, out);
	default: return render_inst(t, msgs, n, out, path, line);
	}
}
