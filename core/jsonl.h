/* JSON-lines fine-tuning datasets: reads one example per line and validates it (docs/data.md).
 *
 * Formats, detected per line or forced:
 *   text      {"text": s}                                   every token is a target
 *   prompt    {"prompt": p, "completion"|"response": c}     targets: the completion (and EOS)
 *   messages  {"messages": [{"role", "content"}, ...]}      rendered with a chat template
 * Other keys are ignored.  Every malformed line (not UTF-8, not JSON, not an object, a missing or
 * mistyped field, empty messages, an unknown role, roles out of order, no assistant turn) is one
 * error line "FILE:LINE: what; what to do". */
#ifndef SW_CORE_JSONL_H
#define SW_CORE_JSONL_H
#include <stddef.h>
#include <stdio.h>

typedef enum { SW_FMT_AUTO = 0, SW_FMT_TEXT, SW_FMT_PROMPT, SW_FMT_MESSAGES } sw_jsonl_format;
typedef enum { SW_ROLE_SYSTEM = 0, SW_ROLE_USER, SW_ROLE_ASSISTANT } sw_chat_role;

typedef struct sw_chat_msg {
	sw_chat_role role;
	const char *content;         /* UTF-8, may hold NUL-free text only; len bytes */
	size_t len;
} sw_chat_msg;

typedef struct sw_example {
	sw_jsonl_format format;
	long line;                   /* 1-based line number in the file */
	const char *text;            /* text; or prompt */
	size_t text_len;
	const char *completion;      /* prompt format */
	size_t completion_len;
	sw_chat_msg *msgs;           /* messages format */
	size_t n_msgs;
	void *root;                  /* the parsed JSON (owns the strings) */
} sw_example;

/* Parses and validates one line (without or with its '\n').  0, or -EINVAL / -EILSEQ / -ENOMEM
 * after one error line naming path:lineno. */
int sw_jsonl_parse_line(const char *line, size_t len, sw_jsonl_format forced, const char *path, long lineno,
			sw_example *ex);
void sw_example_free(sw_example *ex);

/* A reader over a file ('-' is stdin).  sw_jsonl_next: 1 = an example, 0 = end of file (an empty
 * file, i.e. no example at all, is an error), -errno after one error line. Blank lines are
 * skipped. */
typedef struct sw_jsonl {
	FILE *f;
	int own;                     /* close f at the end */
	const char *path;
	sw_jsonl_format forced;
	long line, examples;
	char *buf;
	size_t cap;
} sw_jsonl;
int sw_jsonl_open(sw_jsonl *r, const char *path, sw_jsonl_format forced);
/* The same over an open stream (not closed by sw_jsonl_close). */
void sw_jsonl_init(sw_jsonl *r, FILE *f, const char *path, sw_jsonl_format forced);
int sw_jsonl_next(sw_jsonl *r, sw_example *ex);
void sw_jsonl_close(sw_jsonl *r);

/* Offset of the first byte that is not valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF), or len when it all is. */
size_t sw_utf8_invalid_at(const char *s, size_t len);

/* "text", "prompt", "messages" -> format; -1 if unknown. */
int sw_jsonl_format_parse(const char *name);
const char *sw_chat_role_name(sw_chat_role r);
#endif
