/* JSON-lines dataset reader: one validated example per line, errors naming file and line. */
#include "core/jsonl.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = { "system", "user", "assistant" };

const char *sw_chat_role_name(sw_chat_role r)
{
	return role_names[r];
}

int sw_jsonl_format_parse(const char *name)
{
	if (!strcmp(name, "text"))
		return SW_FMT_TEXT;
	if (!strcmp(name, "prompt"))
		return SW_FMT_PROMPT;
	if (!strcmp(name, "messages"))
		return SW_FMT_MESSAGES;
	return -1;
}

size_t sw_utf8_invalid_at(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i];
		size_t n;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		if (i + n >= len)
			return i;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

#define LERR(...) do { sw_error(__VA_ARGS__); rc = -EINVAL; goto fail; } while (0)

/* A string field: 0 with its value and length, or -EINVAL after the error line. */
static int get_str(json_t *o, const char *key, const char *path, long lineno, const char *where, const char **s,
		   size_t *n)
{
	json_t *v = json_object_get(o, key);
	const char *w = where ? where : "", *sep = where ? ": " : "";
	if (!v) {
		sw_error("%s:%ld: %s%sno \"%s\" field; fix that line", path, lineno, w, where ? " has " : "", key);
		return -EINVAL;
	}
	if (!json_is_string(v)) {
		sw_error("%s:%ld: %s%s\"%s\" must be a string, not %s; fix that line", path, lineno, w, sep, key,
			 json_kind(v));
		return -EINVAL;
	}
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

static int parse_messages(json_t *arr, const char *path, long lineno, sw_example *ex)
{
	int rc = 0;
	if (!json_is_array(arr))
		LERR("%s:%ld: \"messages\" must be an array of {\"role\", \"content\"} objects, not %s; fix that "
		     "line", path, lineno, json_kind(arr));
	size_t n = json_array_size(arr);
	if (!n)
		LERR("%s:%ld: \"messages\" is empty; give at least a user and an assistant message", path, lineno);
	ex->msgs = calloc(n, sizeof(*ex->msgs));
	if (!ex->msgs)
		return -ENOMEM;
	ex->n_msgs = n;
	int assistants = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(arr, i);
		char where[64];
		snprintf(where, sizeof(where), "message %zu", i + 1);
		if (!json_is_object(m))
			LERR("%s:%ld: %s must be an object {\"role\", \"content\"}, not %s; fix that line", path,
			     lineno, where, json_kind(m));
		const char *role;
		size_t rl;
		if ((rc = get_str(m, "role", path, lineno, where, &role, &rl)) ||
		    (rc = get_str(m, "content", path, lineno, where, &ex->msgs[i].content, &ex->msgs[i].len)))
			goto fail;
		int r = -1;
		for (int k = 0; k < 3; k++)
			if (!strcmp(role, role_names[k]))
				r = k;
		if (r < 0)
			LERR("%s:%ld: %s has role \"%s\"; supported roles are system, user, assistant", path,
			     lineno, where, role);
		ex->msgs[i].role = (sw_chat_role)r;
		/* optional system first, then user, assistant, user, ... */
		size_t first = ex->msgs[0].role == SW_ROLE_SYSTEM;
		sw_chat_role want = i < first ? SW_ROLE_SYSTEM
					      : ((i - first) % 2 ? SW_ROLE_ASSISTANT : SW_ROLE_USER);
		if (r == SW_ROLE_SYSTEM && i > 0)
			LERR("%s:%ld: %s is a system message; only the first message may be one", path, lineno,
			     where);
		if ((sw_chat_role)r != want)
			LERR("%s:%ld: %s is from the %s where the %s was expected; messages must be an optional "
			     "system message, then user and assistant alternating, starting with the user",
			     path, lineno, where, role, role_names[want]);
		assistants += r == SW_ROLE_ASSISTANT;
	}
	if (!assistants)
		LERR("%s:%ld: no assistant message; a conversation needs at least one to train on", path, lineno);
	return 0;
fail:
	return rc;
}

int sw_jsonl_parse_line(const char *line, size_t len, sw_jsonl_format forced, const char *path, long lineno,
			sw_example *ex)
{
	memset(ex, 0, sizeof(*ex));
	ex->line = lineno;
	int rc = 0;
	size_t bad = sw_utf8_invalid_at(line, len);
	if (bad < len)
		LERR("%s:%ld: not valid UTF-8 (byte %zu of the line is 0x%02x); convert the file to UTF-8", path,
		     lineno, bad + 1, (unsigned char)line[bad]);
	json_error_t jerr;
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	ex->root = o;
	if (!o)
		LERR("%s:%ld: not valid JSON (column %d: %s); fix that line", path, lineno, jerr.column, jerr.text);
	if (!json_is_object(o))
		LERR("%s:%ld: expected a JSON object, got %s; fix that line", path, lineno, json_kind(o));
	sw_jsonl_format f = forced;
	if (f == SW_FMT_AUTO) {
		if (json_object_get(o, "messages"))
			f = SW_FMT_MESSAGES;
		else if (json_object_get(o, "prompt"))
			f = SW_FMT_PROMPT;
		else if (json_object_get(o, "text"))
			f = SW_FMT_TEXT;
		else
			LERR("%s:%ld: none of the fields \"text\", \"prompt\" (with \"completion\" or \"response\") or "
			     "\"messages\"; fix that line", path, lineno);
	}
	ex->format = f;
	if (f == SW_FMT_TEXT) {
		if ((rc = get_str(o, "text", path, lineno, NULL, &ex->text, &ex->text_len)))
			goto fail;
	} else if (f == SW_FMT_PROMPT) {
		const char *ck = json_object_get(o, "completion") ? "completion" : "response";
		if (json_object_get(o, "completion") && json_object_get(o, "response"))
			LERR("%s:%ld: both \"completion\" and \"response\"; keep one", path, lineno);
		if ((rc = get_str(o, "prompt", path, lineno, NULL, &ex->text, &ex->text_len)))
			goto fail;
		if (!json_object_get(o, ck))
			LERR("%s:%ld: \"prompt\" without \"completion\" or \"response\"; fix that line", path, lineno);
		if ((rc = get_str(o, ck, path, lineno, NULL, &ex->completion, &ex->completion_len)))
			goto fail;
	} else {
		json_t *m = json_object_get(o, "messages");
		if (!m)
			LERR("%s:%ld: no \"messages\" field; fix that line", path, lineno);
		if ((rc = parse_messages(m, path, lineno, ex)))
			goto fail;
	}
	return 0;
fail:
	sw_example_free(ex);
	return rc;
}

void sw_example_free(sw_example *ex)
{
	free(ex->msgs);
	json_decref((json_t *)ex->root);
	memset(ex, 0, sizeof(*ex));
}

int sw_jsonl_open(sw_jsonl *r, const char *path, sw_jsonl_format forced)
{
	memset(r, 0, sizeof(*r));
	r->path = path;
	r->forced = forced;
	r->f = !strcmp(path, "-") ? stdin : fopen(path, "rb");
	if (!r->f) {
		int e = errno;
		sw_error("%s: cannot open (%s); check the path", path, strerror(e));
		return -e;
	}
	r->own = r->f != stdin;
	return 0;
}

void sw_jsonl_init(sw_jsonl *r, FILE *f, const char *path, sw_jsonl_format forced)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	r->path = path;
	r->forced = forced;
}

int sw_jsonl_next(sw_jsonl *r, sw_example *ex)
{
	ssize_t len;
	while ((len = getline(&r->buf, &r->cap, r->f)) >= 0) {
		r->line++;
		if (strspn(r->buf, " \t\r\n") == (size_t)len && memchr(r->buf, 0, (size_t)len) == NULL)
			continue;
		size_t skip = r->line == 1 && len >= 3 && !memcmp(r->buf, "\xef\xbb\xbf", 3) ? 3 : 0;   /* UTF-8 BOM */
		int rc = sw_jsonl_parse_line(r->buf + skip, (size_t)len - skip, r->forced, r->path, r->line, ex);
		if (rc)
			return rc;
		r->examples++;
		return 1;
	}
	if (ferror(r->f)) {
		sw_error("%s: read error after line %ld; check the file", r->path, r->line);
		return -EIO;
	}
	if (!r->examples) {
		sw_error("%s: no examples (the file is empty or blank); give one JSON object per line", r->path);
		return -EINVAL;
	}
	return 0;
}

void sw_jsonl_close(sw_jsonl *r)
{
	if (r->f && r->own)
		fclose(r->f);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}
