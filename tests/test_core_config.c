/* config.json parsing (fields, defaults, both RoPE spellings, errors), save/load round trip,
 * parameter counts of published models, RoPE inverse frequencies against fp64 math. */
#include "core/config.h"
#include "core/tensors.h"
#include "tests/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sw_config parse_ok(const char *json)
{
	sw_config c;
	int rc = sw_config_parse(&c, json, strlen(json), "test");
	CHECKF(rc == 0, "should parse: %s", json);
	return c;
}

static void parse_bad(const char *json)
{
	sw_config c;
	CHECKF(sw_config_parse(&c, json, strlen(json), "test") == -EINVAL, "should fail: %s", json);
}

static const char *model(const char *type, int dim, int layers, int heads, int kv, int ffn, int vocab,
			 int tie, char *buf)
{
	sprintf(buf, "{\"model_type\": \"%s\", \"hidden_size\": %d, \"num_hidden_layers\": %d, "
		"\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"intermediate_size\": %d, "
		"\"vocab_size\": %d, \"tie_word_embeddings\": %s}", type, dim, layers, heads, kv, ffn,
		vocab, tie ? "true" : "false");
	return buf;
}

static void check_params(const char *json, int64_t expect)
{
	sw_config c = parse_ok(json);
	sw_table tt;
	CHECK(sw_table_build(&tt, &c) == 0);
	CHECKF(sw_config_total_params(&c) == expect, "%lld != %lld", (long long)sw_config_total_params(&c),
	       (long long)expect);
	CHECK(tt.total == expect);
	sw_table_free(&tt);
}

/* HF's inverse frequencies evaluated in fp64 (the math, without fp32 rounding). */
static double ref_inv_freq(const sw_config *c, int k)
{
	double hd = (double)c->head_dim, f = 1.0 / pow(c->rope_theta, 2.0 * k / hd);
	if (c->rope_scaling.type == SW_ROPE_LINEAR)
		return f / c->rope_scaling.factor;
	if (c->rope_scaling.type != SW_ROPE_LLAMA3)
		return f;
	double old = (double)c->rope_scaling.original_max_pos, fac = c->rope_scaling.factor;
	double lo = c->rope_scaling.low_freq_factor, hi = c->rope_scaling.high_freq_factor;
	double wl = 2 * M_PI / f;
	if (wl < old / hi)
		return f;
	if (wl > old / lo)
		return f / fac;
	double s = (old / wl - lo) / (hi - lo);
	return (1 - s) * f / fac + s * f;
}

int main(void)
{
	char b[1024];
	/* published sizes (from the models' cards / safetensors index totals) */
	check_params(model("llama", 4096, 32, 32, 32, 11008, 32000, 0, b), 6738415616ll);   /* Llama-2-7B */
	check_params(model("llama", 4096, 32, 32, 8, 14336, 128256, 0, b), 8030261248ll);   /* Llama-3-8B */
	check_params(model("mistral", 4096, 32, 32, 8, 14336, 32000, 0, b), 7241732096ll);  /* Mistral-7B */
	check_params(model("qwen2", 896, 24, 14, 2, 4864, 151936, 1, b), 494032768ll);     /* Qwen2-0.5B */
	check_params(model("llama", 8192, 80, 64, 8, 28672, 128256, 0, b), 70553706496ll); /* Llama-3-70B */

	/* defaults and per-type rules */
	sw_config c = parse_ok("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
			       "\"num_attention_heads\":4,\"intermediate_size\":96,\"vocab_size\":50}");
	CHECK(c.n_kv_heads == 4 && c.head_dim == 16 && c.attention_bias == 0 && c.tie_embeddings == 0);
	CHECK(c.rope_theta == 10000.0 && c.rope_scaling.type == SW_ROPE_NONE && c.dtype == SW_DTYPE_F32);
	CHECK(c.bos_id == -1 && c.eos_id == -1 && c.max_pos == 2048);
	c = parse_ok("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_hidden_layers\":2,"
		     "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
		     "\"intermediate_size\":96,\"vocab_size\":50,\"torch_dtype\":\"bfloat16\","
		     "\"eos_token_id\":[7,8],\"sliding_window\":4096,\"use_sliding_window\":false}");
	CHECK(c.attention_bias == 1 && c.head_dim == 32 && c.n_kv_heads == 2 && c.dtype == SW_DTYPE_BF16);
	CHECK(c.eos_id == 7);
	/* transformers 5 spelling: rope_parameters holds theta and the scaling */
	c = parse_ok("{\"model_type\":\"llama\",\"hidden_size\":256,\"num_hidden_layers\":1,"
		     "\"num_attention_heads\":2,\"intermediate_size\":96,\"vocab_size\":50,\"dtype\":\"float16\","
		     "\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":8.0,"
		     "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
	CHECK(c.rope_theta == 500000.0 && c.rope_scaling.type == SW_ROPE_LLAMA3 && c.dtype == SW_DTYPE_F16);
	CHECK(c.rope_scaling.factor == 8 && c.rope_scaling.original_max_pos == 8192 && c.head_dim == 128);

	/* RoPE: fp32 result within 2 ulp-ish of the fp64 math; scaling's anchors exact */
	float inv[64];
	sw_config_rope_inv_freq(&c, inv);
	for (int k = 0; k < 64; k++) {
		double r = ref_inv_freq(&c, k);
		CHECKF(fabs(inv[k] - r) <= 4e-7 * r, "llama3 inv_freq[%d] = %.9g, math %.9g", k, inv[k], r);
	}
	CHECK(inv[0] == 1.0f);                                   /* high frequency: unscaled */
	CHECK(inv[63] == (float)(1.0 / pow(500000.0, 126.0 / 128)) / 8.0f);  /* low: divided by 8 */
	c.rope_scaling.type = SW_ROPE_NONE;
	sw_config_rope_inv_freq(&c, inv);
	for (int k = 0; k < 64; k++)
		CHECK(fabs(inv[k] - ref_inv_freq(&c, k)) <= 2e-7 * ref_inv_freq(&c, k));
	c.rope_scaling.type = SW_ROPE_LINEAR;
	c.rope_scaling.factor = 4;
	sw_config_rope_inv_freq(&c, inv);
	for (int k = 0; k < 64; k++)
		CHECK(fabs(inv[k] - ref_inv_freq(&c, k)) <= 4e-7 * ref_inv_freq(&c, k));

	/* save -> load gives the same configuration */
	char dir[] = "/tmp/sw-test-config-XXXXXX";
	CHECK(mkdtemp(dir));
	c.rope_scaling.type = SW_ROPE_LLAMA3;
	c.rope_scaling.factor = 8;
	c.rms_eps = 1e-5;
	c.bos_id = 1;
	c.tie_embeddings = 1;
	CHECK(sw_config_save(&c, dir) == 0);
	sw_config d;
	CHECK(sw_config_load(&d, dir) == 0);
	CHECK(!strcmp(d.model_type, c.model_type) && d.dim == c.dim && d.n_layers == c.n_layers);
	CHECK(d.n_heads == c.n_heads && d.n_kv_heads == c.n_kv_heads && d.head_dim == c.head_dim);
	CHECK(d.ffn_dim == c.ffn_dim && d.vocab == c.vocab && d.max_pos == c.max_pos);
	CHECK(d.rope_theta == c.rope_theta && d.rms_eps == c.rms_eps && d.dtype == c.dtype);
	CHECK(d.rope_scaling.type == SW_ROPE_LLAMA3 && d.rope_scaling.factor == 8);
	CHECK(d.rope_scaling.low_freq_factor == 1 && d.rope_scaling.high_freq_factor == 4);
	CHECK(d.rope_scaling.original_max_pos == 8192 && d.tie_embeddings == 1 && d.bos_id == 1 && d.eos_id == -1);
	char path[256];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	unlink(path);
	rmdir(dir);
	CHECK(sw_config_load(&d, dir) == -ENOENT);

	/* errors: each names its field (messages checked in test_core_malformed.sh) */
	parse_bad("");
	parse_bad("[1, 2]");
	parse_bad("{\"model_type\":\"gpt2\",\"hidden_size\":64}");
	parse_bad("{\"model_type\":7}");
	parse_bad("{\"hidden_size\":64}");
	/* one field of a valid config replaced (or added) at a time */
	static const char *keys[] = { "model_type", "hidden_size", "num_hidden_layers",
				      "num_attention_heads", "intermediate_size", "vocab_size" };
	static const char *vals[] = { "\"llama\"", "64", "2", "4", "96", "50" };
	const char *bad[][2] = {
		{ "hidden_size", "\"64\"" }, { "num_hidden_layers", "2.0" }, { "tie_word_embeddings", "1" },
		{ "rope_theta", "\"1e4\"" }, { "rope_scaling", "[1]" },
		{ "rope_scaling", "{\"rope_type\":\"yarn\",\"factor\":2}" },
		{ "rope_scaling", "{\"rope_type\":\"llama3\",\"factor\":8}" },
		{ "rope_scaling", "{\"factor\":8}" },
		{ "rope_parameters", "{\"rope_theta\":\"x\"}" },
		{ "num_key_value_heads", "3" }, { "head_dim", "15" }, { "rms_norm_eps", "-1" },
		{ "hidden_act", "\"gelu\"" }, { "mlp_bias", "true" }, { "torch_dtype", "\"int8\"" },
		{ "vocab_size", "0" }, { "bos_token_id", "\"x\"" }, { "num_attention_heads", "-4" },
		{ "hidden_size", "99999999999999" }, { "intermediate_size", "null" },
		{ "model_type", "\"gpt2\"" }, { "model_type", "[]" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char j[1024];
		int o = snprintf(j, sizeof(j), "{");
		for (int k = 0; k < 6; k++)
			if (strcmp(keys[k], bad[i][0]))
				o += snprintf(j + o, sizeof(j) - (size_t)o, "\"%s\":%s,", keys[k], vals[k]);
		snprintf(j + o, sizeof(j) - (size_t)o, "\"%s\":%s}", bad[i][0], bad[i][1]);
		parse_bad(j);
	}
	parse_bad("{\"model_type\":\"llama\",\"model_type\":\"llama\"}");   /* duplicate key */
	return 0;
}
