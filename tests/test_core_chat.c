/* Chat templates without the network: family detection from template texts (the official ones
 * in tests/ref/chat_templates/ and unknown ones), and each family's rendering and spans on small
 * conversations, the expected strings written out by hand from the models' Jinja templates
 * (tests/test_core_chat_ref.sh checks the same against Jinja itself and the reference tokenizers). */
#include "core/chat.h"
#include "tests/check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	CHECKF(f, "cannot open %s", path);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

static void detect(const char *file, const char *want)
{
	char path[256];
	snprintf(path, sizeof(path), "tests/ref/chat_templates/%s", file);
	sw_chat_template t;
	CHECKF(sw_chat_template_detect(&t, slurp(path), "<s>", "</s>", path) == 0 && !strcmp(t.name, want),
	       "%s: detected %s, want %s", file, t.name, want);
}

#define U(c) { SW_ROLE_USER, c, sizeof(c) - 1 }
#define A(c) { SW_ROLE_ASSISTANT, c, sizeof(c) - 1 }
#define S(c) { SW_ROLE_SYSTEM, c, sizeof(c) - 1 }

/* Renders and compares the text; each span is given as "HEADER\001BODY": the body must follow the next
 * occurrence of the header and be exactly the span. */
static void render(const char *name, const char *bos, const char *eos, const sw_chat_msg *m, size_t n,
		   const char *want, const char *const *spans, size_t nspans)
{
	sw_chat_template t;
	CHECK(sw_chat_template_named(&t, name, bos, eos) == 0);
	sw_chat_text o = { 0 };
	CHECK(sw_chat_render(&t, m, n, &o, "t.jsonl", 1) == 0);
	CHECKF(o.len == strlen(want) && !memcmp(o.s, want, o.len), "%s:\n got  [%s]\n want [%s]", name, o.s, want);
	CHECKF(o.nspan == nspans, "%s: %zu spans, want %zu", name, o.nspan, nspans);
	size_t at = 0;
	for (size_t i = 0; i < nspans; i++) {
		const char *sep = strchr(spans[i], 1), *body = sep + 1;
		char head[128];
		snprintf(head, sizeof(head), "%.*s", (int)(sep - spans[i]), spans[i]);
		const char *p = strstr(want + at, head);
		CHECK(p && !strncmp(p + strlen(head), body, strlen(body)));
		size_t b = (size_t)(p - want) + strlen(head);
		CHECKF(o.span[i][0] == b && o.span[i][1] == b + strlen(body), "%s: span %zu is [%zu, %zu), want [%zu, %zu)",
		       name, i, o.span[i][0], o.span[i][1], b, b + strlen(body));
		at = b + strlen(body);
	}
	sw_chat_text_free(&o);
}

int main(void)
{
	detect("llama3.jinja", "llama3");
	detect("qwen2.jinja", "qwen2");
	detect("qwen2.5.jinja", "qwen2.5");
	detect("llama2.jinja", "llama2");
	detect("mistral.jinja", "mistral");
	sw_chat_template t;
	CHECK(sw_chat_template_detect(&t, "{% for m in messages %}{{ m.content }}{% endfor %}", "<s>", "</s>", "x") == -EINVAL);
	CHECK(sw_chat_template_detect(&t, NULL, "<s>", "</s>", "x") == -EINVAL);
	CHECK(sw_chat_template_detect(&t, "<|start_header_id|>system<|end_header_id|>Cutting Knowledge Date: X<|eot_id|>",
				      "<s>", "</s>", "x") == -EINVAL);
	CHECK(sw_chat_template_detect(&t, "<|im_start|>system\nYou are Bob.<|im_end|>", NULL, "<|im_end|>", "x") == -EINVAL);
	CHECK(sw_chat_template_detect(&t, "{{'<|im_start|>' + m + '<|im_end|>'}}<think>", NULL, "<|im_end|>", "x") == 0 &&
	      !strcmp(t.name, "qwen3"));
	/* the lenml Llama 3 template appends the assistant header without add_generation_prompt */
	CHECK(sw_chat_template_detect(&t, "{{ message['content'] | trim + '<|eot_id|>' }}{{ '<|start_header_id|>assistant"
				      "<|end_header_id|>\n\n' }}", "B", "E", "x") == 0 && t.gen_header_always);
	/* other [INST] and Llama 3 variants are refused rather than rendered wrongly */
	CHECK(sw_chat_template_detect(&t, "{{ '[INST] ' + message['content'] + '[/INST]' }}{{ ' ' + message['content']|trim + "
				      "eos_token }}", "<s>", "</s>", "x") == -EINVAL);
	CHECK(sw_chat_template_detect(&t, "<|start_header_id|>{{ message['content'] }}<|eot_id|>", "<s>", "</s>", "x") == -EINVAL);
	CHECK(sw_chat_template_named(&t, "llama2", NULL, "</s>") == -EINVAL);   /* needs bos_token */
	CHECK(sw_chat_template_named(&t, "vicuna", "<s>", "</s>") == -EINVAL);

	sw_chat_msg c1[] = { S(" sys "), U("Hi "), A("  Hello!\n"), U("Bye"), A("") };
	render("llama3", "<|begin_of_text|>", "<|end_of_text|>", c1, 5,
	       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
	       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
	       "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
	       "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
	       "<|start_header_id|>assistant<|end_header_id|>\n\n<|eot_id|>",
	       (const char *const[]){ "assistant<|end_header_id|>\n\n\001Hello!<|eot_id|>", "assistant<|end_header_id|>\n\n\001<|eot_id|>" }, 2);
	render("chatml", NULL, "<|im_end|>", c1, 5,
	       "<|im_start|>system\n sys <|im_end|>\n<|im_start|>user\nHi <|im_end|>\n"
	       "<|im_start|>assistant\n  Hello!\n<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
	       "<|im_start|>assistant\n<|im_end|>\n",
	       (const char *const[]){ "<|im_start|>assistant\n\001  Hello!\n<|im_end|>", "<|im_start|>assistant\n\001<|im_end|>" }, 2);
	render("qwen2.5", NULL, "<|im_end|>", c1 + 1, 2,
	       "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
	       "<|im_start|>user\nHi <|im_end|>\n<|im_start|>assistant\n  Hello!\n<|im_end|>\n",
	       (const char *const[]){ "<|im_start|>assistant\n\001  Hello!\n<|im_end|>" }, 1);
	sw_chat_msg c2[] = { U("q1"), A("<think>\nr1\n</think>\n\na1"), U("q2"), A("\n\na2") };
	render("qwen3", NULL, "<|im_end|>", c2, 4,
	       "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n"
	       "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na2<|im_end|>\n",
	       (const char *const[]){ "<|im_start|>assistant\n\001a1<|im_end|>", "<|im_start|>assistant\n\001<think>\n\n</think>\n\na2<|im_end|>" }, 2);
	sw_chat_msg c3[] = { U("q"), A("x<think>\n\nwhy\n</think>a</think>\n\nb") };
	render("qwen3", NULL, "<|im_end|>", c3, 2,
	       "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nwhy\n</think>\n\nb<|im_end|>\n",
	       (const char *const[]){ "<|im_start|>assistant\n\001<think>\nwhy\n</think>\n\nb<|im_end|>" }, 1);
	render("llama2", "<s>", "</s>", c1, 5,
	       "<s>[INST] <<SYS>>\n sys \n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]  </s>",
	       (const char *const[]){ "[/INST]\001 Hello! </s>", "[/INST]\001  </s>" }, 2);
	render("mistral", "<s>", "</s>", c1 + 1, 4, "<s>[INST] Hi  [/INST]  Hello!\n</s>[INST] Bye [/INST]</s>",
	       (const char *const[]){ "[/INST]\001  Hello!\n</s>", "[/INST]\001</s>" }, 2);
	CHECK(sw_chat_template_named(&t, "mistral", "<s>", "</s>") == 0);
	sw_chat_text o = { 0 };
	CHECK(sw_chat_render(&t, c1, 5, &o, "t.jsonl", 3) == -EINVAL);   /* no system role */
	sw_chat_text_free(&o);
	/* Python's str.strip() whitespace: NBSP, ideographic space, U+2028; not ZWSP (U+200B) */
	sw_chat_msg c4[] = { U("q"), A("\xc2\xa0\xe3\x80\x80x\xe2\x80\xa8\xe2\x80\x8b") };
	render("llama3", "B", "E", c4, 2,
	       "B<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	       "x\xe2\x80\xa8\xe2\x80\x8b<|eot_id|>",
	       (const char *const[]){ "assistant<|end_header_id|>\n\n\001x\xe2\x80\xa8\xe2\x80\x8b<|eot_id|>" }, 1);
	return 0;
}
