/* Chat templates rendered natively: the conversation becomes one string with the special tokens
 * inline, as the model's Jinja chat_template renders it (add_generation_prompt false), plus the
 * byte spans the loss is taken on (each assistant turn's body: after its role header through its
 * end-of-turn token).  docs/data.md lists the exact renderings.
 *
 * Families: llama3 (Meta Llama 3 Instruct), chatml (plain ChatML; qwen2 and qwen2.5 add their
 * default system prompt, qwen3 its <think> block on the final assistant turn), llama2 (Llama 2
 * chat, <<SYS>>), mistral (Mistral / Mixtral Instruct v0.1, no system role). */
#ifndef SW_CORE_CHAT_H
#define SW_CORE_CHAT_H
#include "core/jsonl.h"

#include <stddef.h>

typedef enum { SW_CHAT_LLAMA3 = 1, SW_CHAT_CHATML, SW_CHAT_LLAMA2, SW_CHAT_MISTRAL } sw_chat_family;

typedef struct sw_chat_template {
	sw_chat_family family;
	const char *name;               /* llama3, chatml, qwen2, qwen2.5, qwen3, llama2, mistral */
	int gen_header_always;          /* llama3: the template appends the assistant header always */
	const char *default_system;     /* chatml: the system prompt used when there is none, or NULL */
	int think;                      /* qwen3: <think> handling of assistant turns */
	char bos[64], eos[64];          /* bos_token / eos_token of tokenizer_config.json */
} sw_chat_template;

#define SW_CHAT_NAMES "llama3, chatml, qwen2, qwen2.5, qwen3, llama2, mistral"

/* By name (SW_CHAT_NAMES): 0, or -EINVAL after one error line. bos/eos may be NULL when the
 * family does not use them (checked here). */
int sw_chat_template_named(sw_chat_template *t, const char *name, const char *bos, const char *eos);
/* From tokenizer_config.json's chat_template text (what: the file, for messages): recognises the
 * family; an unknown or unsupported template is one error line naming the supported families and
 * --chat-template NAME. */
int sw_chat_template_detect(sw_chat_template *t, const char *chat_template, const char *bos, const char *eos,
			    const char *what);

typedef struct sw_chat_text {
	char *s;                        /* NUL-terminated */
	size_t len, cap;
	size_t (*span)[2];              /* [begin, end) byte ranges of the assistant turns */
	size_t nspan, spancap;
} sw_chat_text;

/* Renders msgs (validated by the JSONL reader) into out (reset first).  0, -ENOMEM, or -EINVAL
 * after one error line "path:line: ..." for a conversation the template refuses. */
int sw_chat_render(const sw_chat_template *t, const sw_chat_msg *msgs, size_t n, sw_chat_text *out,
		   const char *path, long line);
void sw_chat_text_free(sw_chat_text *out);
#endif
