/* libFuzzer target: the JSONL line parser (sw_jsonl_parse_line) and, for every accepted
 * conversation, the chat renderer of each family.  Accepted lines must satisfy the reader's
 * contract (a known format, valid roles in order, an assistant turn); rendered spans must lie in
 * the text, in order, one per assistant turn. */
#include "core/chat.h"
#include "core/jsonl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_render(const sw_example *ex, const char *name)
{
	sw_chat_template t;
	if (sw_chat_template_named(&t, name, "<s>", "</s>"))
		abort();
	sw_chat_text out = { 0 };
	int rc = sw_chat_render(&t, ex->msgs, ex->n_msgs, &out, "fuzz", 1);
	if (!rc) {
		size_t assistants = 0, prev = 0;
		for (size_t i = 0; i < ex->n_msgs; i++)
			assistants += ex->msgs[i].role == SW_ROLE_ASSISTANT;
		if (out.nspan != assistants || strlen(out.s) > out.len)
			abort();
		for (size_t i = 0; i < out.nspan; i++) {
			if (out.span[i][0] < prev || out.span[i][1] < out.span[i][0] || out.span[i][1] > out.len)
				abort();
			prev = out.span[i][1];
		}
	} else if (!(t.family == SW_CHAT_MISTRAL && ex->msgs[0].role == SW_ROLE_SYSTEM)) {
		abort();
	}
	sw_chat_text_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sw_example ex;
	if (sw_jsonl_parse_line((const char *)data, size, SW_FMT_AUTO, "fuzz", 1, &ex))
		return 0;
	if (ex.format == SW_FMT_MESSAGES) {
		int assistant = 0;
		if (!ex.n_msgs)
			abort();
		for (size_t i = 0; i < ex.n_msgs; i++) {
			if (ex.msgs[i].role > SW_ROLE_ASSISTANT || (ex.msgs[i].role == SW_ROLE_SYSTEM && i))
				abort();
			assistant |= ex.msgs[i].role == SW_ROLE_ASSISTANT;
		}
		if (!assistant)
			abort();
		static const char *const names[] = { "llama3", "chatml", "qwen2.5", "qwen3", "llama2", "mistral" };
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			check_render(&ex, names[k]);
	} else if (ex.format != SW_FMT_TEXT && ex.format != SW_FMT_PROMPT) {
		abort();
	}
	sw_example_free(&ex);
	return 0;
}
