/* The JSONL dataset reader: every format parses; every malformed line (bad JSON, not an object,
 * missing or mistyped fields, empty messages, unknown roles, roles out of order, no assistant,
 * invalid UTF-8, duplicate keys, NUL) is rejected with exactly one error line naming the file and
 * the line number; blank lines are skipped and counted; a UTF-8 byte-order mark is skipped. */
#include "core/jsonl.h"
#include "tests/check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char errpath[] = "/tmp/sw-test-jsonl-err-XXXXXX";

/* stderr written since the last call: exactly one line containing want? */
static void expect_one_line(const char *want)
{
	fflush(stderr);
	FILE *f = fopen(errpath, "r");
	CHECK(f);
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	int lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	CHECKF(lines == 1 && strstr(buf, want), "want one line with '%s', got: %s", want, buf);
	CHECK(freopen(errpath, "w", stderr));
}

static void bad(const char *line, sw_jsonl_format forced, const char *want)
{
	sw_example ex;
	int rc = sw_jsonl_parse_line(line, strlen(line), forced, "d.jsonl", 7, &ex);
	CHECKF(rc == -EINVAL, "line %s: rc %d", line, rc);
	CHECK(ex.root == NULL && ex.msgs == NULL);
	char w[512];
	snprintf(w, sizeof(w), "d.jsonl:7: %s", want);
	expect_one_line(w);
}

int main(void)
{
	int fd = mkstemp(errpath);
	CHECK(fd >= 0);
	close(fd);
	CHECK(freopen(errpath, "w", stderr));
	sw_example ex;
	const char *l = "{\"text\": \"héllo\", \"id\": 3}\n";
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_AUTO, "d.jsonl", 1, &ex) == 0);
	CHECK(ex.format == SW_FMT_TEXT && ex.text_len == 6 && !memcmp(ex.text, "héllo", 6));
	sw_example_free(&ex);
	l = "{\"prompt\": \"2+2=\", \"completion\": \" 4\"}";
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_AUTO, "d.jsonl", 1, &ex) == 0);
	CHECK(ex.format == SW_FMT_PROMPT && ex.text_len == 4 && ex.completion_len == 2);
	sw_example_free(&ex);
	l = "{\"prompt\": \"q\", \"response\": \"a\\u0041\"}";
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_AUTO, "d.jsonl", 1, &ex) == 0);
	CHECK(ex.format == SW_FMT_PROMPT && ex.completion_len == 2 && !memcmp(ex.completion, "aA", 2));
	sw_example_free(&ex);
	l = "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"\"},"
	    " {\"role\": \"assistant\", \"content\": \"a\", \"weight\": 1}, {\"role\": \"user\", \"content\": \"u2\"}]}";
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_AUTO, "d.jsonl", 1, &ex) == 0);
	CHECK(ex.format == SW_FMT_MESSAGES && ex.n_msgs == 4 && ex.msgs[0].role == SW_ROLE_SYSTEM &&
	      ex.msgs[1].len == 0 && ex.msgs[2].role == SW_ROLE_ASSISTANT && ex.msgs[3].role == SW_ROLE_USER);
	sw_example_free(&ex);
	/* a forced format reads only its field */
	l = "{\"text\": \"t\", \"prompt\": \"p\", \"completion\": \"c\"}";
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_TEXT, "d.jsonl", 1, &ex) == 0 && ex.format == SW_FMT_TEXT);
	sw_example_free(&ex);
	fflush(stderr);
	FILE *ef = fopen(errpath, "r");
	CHECK(ef && fgetc(ef) == EOF);           /* no message for good lines */
	fclose(ef);

	/* malformed lines: one error each, naming file:line */
	bad("{\"text\": \"a\"", SW_FMT_AUTO, "not valid JSON");
	bad("{\"text\": \"a\"} x", SW_FMT_AUTO, "not valid JSON");
	bad("[1, 2]", SW_FMT_AUTO, "expected a JSON object, got an array");
	bad("\"text\"", SW_FMT_AUTO, "expected a JSON object, got a string");
	bad("{\"foo\": 1}", SW_FMT_AUTO, "none of the fields \"text\", \"prompt\"");
	bad("{\"text\": 5}", SW_FMT_AUTO, "\"text\" must be a string, not a number");
	bad("{\"text\": null}", SW_FMT_AUTO, "\"text\" must be a string, not null");
	bad("{\"text\": \"a\", \"text\": \"b\"}", SW_FMT_AUTO, "not valid JSON");           /* duplicate key */
	bad("{\"text\": \"a\\u0000b\"}", SW_FMT_AUTO, "not valid JSON");                     /* NUL */
	bad("{\"text\": \"\\ud800\"}", SW_FMT_AUTO, "not valid JSON");                       /* lone surrogate */
	bad("{\"prompt\": \"a\"}", SW_FMT_AUTO, "\"prompt\" without \"completion\" or \"response\"");
	bad("{\"prompt\": \"a\", \"completion\": \"b\", \"response\": \"c\"}", SW_FMT_AUTO, "both");
	bad("{\"prompt\": [\"a\"], \"completion\": \"b\"}", SW_FMT_AUTO, "\"prompt\" must be a string, not an array");
	bad("{\"prompt\": \"a\", \"completion\": true}", SW_FMT_AUTO, "\"completion\" must be a string, not a boolean");
	bad("{\"messages\": []}", SW_FMT_AUTO, "\"messages\" is empty");
	bad("{\"messages\": {}}", SW_FMT_AUTO, "\"messages\" must be an array");
	bad("{\"messages\": [\"hi\"]}", SW_FMT_AUTO, "message 1 must be an object");
	bad("{\"messages\": [{\"content\": \"hi\"}]}", SW_FMT_AUTO, "message 1 has no \"role\" field");
	bad("{\"messages\": [{\"role\": \"user\"}]}", SW_FMT_AUTO, "message 1 has no \"content\" field");
	bad("{\"messages\": [{\"role\": \"user\", \"content\": null}]}", SW_FMT_AUTO,
	    "message 1: \"content\" must be a string, not null");
	bad("{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", SW_FMT_AUTO, "message 1: \"role\" must be a string, not a number");
	bad("{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", SW_FMT_AUTO,
	    "message 1 has role \"tool\"; supported roles are system, user, assistant");
	bad("{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}", SW_FMT_AUTO,
	    "message 1 is from the assistant where the user was expected");
	bad("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"y\"}]}",
	    SW_FMT_AUTO, "message 2 is from the user where the assistant was expected");
	bad("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"system\", \"content\": \"y\"}]}",
	    SW_FMT_AUTO, "message 2 is a system message; only the first message may be one");
	bad("{\"messages\": [{\"role\": \"system\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": \"y\"}]}",
	    SW_FMT_AUTO, "no assistant message");
	bad("{\"text\": \"t\"}", SW_FMT_MESSAGES, "no \"messages\" field");
	bad("{\"messages\": []}", SW_FMT_TEXT, "no \"text\" field");
	/* not UTF-8: a stray byte, an overlong encoding, an encoded surrogate, a truncated sequence */
	bad("{\"text\": \"a\xff\"}", SW_FMT_AUTO, "not valid UTF-8 (byte 12 of the line is 0xff)");
	bad("{\"text\": \"\xc0\xaf\"}", SW_FMT_AUTO, "not valid UTF-8 (byte 11 ");
	bad("{\"text\": \"\xed\xa0\x80\"}", SW_FMT_AUTO, "not valid UTF-8 (byte 11 ");
	bad("{\"text\": \"\xe6\x97\"}", SW_FMT_AUTO, "not valid UTF-8 (byte 11 ");
	bad("{\"text\": \"\xf4\x90\x80\x80\"}", SW_FMT_AUTO, "not valid UTF-8 (byte 11 ");   /* > U+10FFFF */
	l = "{\"text\": \"\xf0\x9f\x91\x8b \xe6\x97\xa5\"}";                                      /* valid 4- and 3-byte */
	CHECK(sw_jsonl_parse_line(l, strlen(l), SW_FMT_AUTO, "d.jsonl", 1, &ex) == 0);
	sw_example_free(&ex);

	/* the reader: blank lines skipped but counted; an error names its line; an empty file fails */
	char path[] = "/tmp/sw-test-jsonl-XXXXXX";
	fd = mkstemp(path);
	CHECK(fd >= 0);
	const char *body = "\xef\xbb\xbf{\"text\": \"a\"}\n\n   \n{\"prompt\": \"p\", \"response\": \"r\"}\r\n{\"text\": 1}\n";
	CHECK(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
	close(fd);
	sw_jsonl r;
	CHECK(sw_jsonl_open(&r, path, SW_FMT_AUTO) == 0);
	CHECK(sw_jsonl_next(&r, &ex) == 1 && ex.line == 1 && ex.format == SW_FMT_TEXT);
	sw_example_free(&ex);
	CHECK(sw_jsonl_next(&r, &ex) == 1 && ex.line == 4 && ex.format == SW_FMT_PROMPT);
	sw_example_free(&ex);
	CHECK(sw_jsonl_next(&r, &ex) == -EINVAL);
	char want[256];
	snprintf(want, sizeof(want), "%s:5: \"text\" must be a string", path);
	expect_one_line(want);
	sw_jsonl_close(&r);
	CHECK(truncate(path, 0) == 0);
	CHECK(sw_jsonl_open(&r, path, SW_FMT_AUTO) == 0);
	CHECK(sw_jsonl_next(&r, &ex) == -EINVAL);
	expect_one_line("no examples");
	sw_jsonl_close(&r);
	unlink(path);
	CHECK(sw_jsonl_open(&r, "/nonexistent/d.jsonl", SW_FMT_AUTO) == -ENOENT);
	expect_one_line("/nonexistent/d.jsonl: cannot open");
	unlink(errpath);
	return 0;
}
