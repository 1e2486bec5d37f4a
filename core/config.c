/* config.json for llama, mistral and qwen2: parse (strict about the fields spillway uses, silent
 * about the many it does not), save (what HF transformers loads), RoPE frequencies, sizes. */
#include "core/config.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds that keep every product of the table in int64 (and reject nonsense early). */
#define MAX_DIM    (1ll << 20)
#define MAX_LAYERS (1ll << 14)
#define MAX_HEADS  (1ll << 14)
#define MAX_FFN    (1ll << 22)
#define MAX_VOCAB  (1ll << 24)
#define MAX_POS    (1ll << 32)

typedef struct pctx { const char *what; int err; const char *prefix; } pctx;

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE: case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "?";
}

static int fail_type(pctx *p, const char *field, const json_t *v, const char *want)
{
	if (!p->err)
		sw_error("%s: field '%s%s' must be %s, not %s; fix config.json", p->what, p->prefix, field,
			 want, json_kind(v));
	p->err = -EINVAL;
	return -EINVAL;
}

static int fail_value(pctx *p, const char *field, const char *why)
{
	if (!p->err)
		sw_error("%s: field '%s%s' %s; fix config.json", p->what, p->prefix, field, why);
	p->err = -EINVAL;
	return -EINVAL;
}

/* Integer field: absent or null -> *out = def (required: error). Range [lo, hi]. */
static void get_int(pctx *p, json_t *o, const char *field, int64_t *out, int64_t def, int required,
		    int64_t lo, int64_t hi)
{
	json_t *v = json_object_get(o, field);
	if (!v || json_is_null(v)) {
		if (required) {
			fail_value(p, field, "is missing");
			return;
		}
		*out = def;
		return;
	}
	if (!json_is_integer(v)) {
		fail_type(p, field, v, "an integer");
		return;
	}
	json_int_t x = json_integer_value(v);
	if (x < lo || x > hi) {
		char why[96];
		snprintf(why, sizeof(why), "is %lld, outside [%lld, %lld]", (long long)x,
			 (long long)lo, (long long)hi);
		fail_value(p, field, why);
		return;
	}
	*out = x;
}

static void get_num(pctx *p, json_t *o, const char *field, double *out, double def, int required,
		    double lo, double hi)
{
	json_t *v = json_object_get(o, field);
	if (!v || json_is_null(v)) {
		if (required)
			fail_value(p, field, "is missing");
		else
			*out = def;
		return;
	}
	if (!json_is_number(v)) {
		fail_type(p, field, v, "a number");
		return;
	}
	double x = json_number_value(v);
	if (!(x >= lo && x <= hi)) {
		char why[96];
		snprintf(why, sizeof(why), "is %g, outside [%g, %g]", x, lo, hi);
		fail_value(p, field, why);
		return;
	}
	*out = x;
}

static void get_bool(pctx *p, json_t *o, const char *field, int *out, int def)
{
	json_t *v = json_object_get(o, field);
	if (!v || json_is_null(v)) {
		*out = def;
		return;
	}
	if (!json_is_boolean(v)) {
		fail_type(p, field, v, "true or false");
		return;
	}
	*out = json_is_true(v);
}

/* Token ids: integer, null, or (eos in Llama 3 instruct) a list whose first element is used. */
static void get_token_id(pctx *p, json_t *o, const char *field, int64_t *out)
{
	json_t *v = json_object_get(o, field);
	*out = -1;
	if (!v || json_is_null(v))
		return;
	if (json_is_array(v) && json_array_size(v) > 0)
		v = json_array_get(v, 0);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_VOCAB) {
		fail_type(p, field, v, "a token id (integer), a list of ids, or null");
		return;
	}
	*out = json_integer_value(v);
}

static void get_rope_fields(pctx *p, json_t *o, sw_config *c, int is_params);

/* rope_scaling (legacy) or rope_parameters (transformers 5): {rope_type|type, factor, ...}. */
static void get_rope(pctx *p, json_t *root, sw_config *c)
{
	json_t *rp = json_object_get(root, "rope_parameters");
	json_t *rs = json_object_get(root, "rope_scaling");
	const char *field = "rope_scaling";
	json_t *o = rs;
	if (rp && !json_is_null(rp)) {
		field = "rope_parameters";
		o = rp;
	}
	c->rope_scaling.type = SW_ROPE_NONE;
	if (!o || json_is_null(o))
		return;
	if (!json_is_object(o)) {
		fail_type(p, field, o, "an object or null");
		return;
	}
	p->prefix = o == rp ? "rope_parameters." : "rope_scaling.";
	get_rope_fields(p, o, c, o == rp);
	p->prefix = "";
}

static void get_rope_fields(pctx *p, json_t *o, sw_config *c, int is_params)
{
	if (is_params)   /* transformers 5 keeps rope_theta in here */
		get_num(p, o, "rope_theta", &c->rope_theta, c->rope_theta, 0, 1e-300, 1e300);
	json_t *t = json_object_get(o, "rope_type");
	if (!t || json_is_null(t))
		t = json_object_get(o, "type");
	if (!t || json_is_null(t)) {
		if (is_params)
			return;
		fail_value(p, "rope_type", "is missing");
		return;
	}
	if (!json_is_string(t)) {
		fail_type(p, "rope_type", t, "a string");
		return;
	}
	const char *ty = json_string_value(t);
	if (!strcmp(ty, "default"))
		return;
	if (!strcmp(ty, "linear")) {
		c->rope_scaling.type = SW_ROPE_LINEAR;
		get_num(p, o, "factor", &c->rope_scaling.factor, 1, 1, 1e-6, 1e6);
		return;
	}
	if (!strcmp(ty, "llama3")) {
		c->rope_scaling.type = SW_ROPE_LLAMA3;
		get_num(p, o, "factor", &c->rope_scaling.factor, 0, 1, 1e-6, 1e6);
		get_num(p, o, "low_freq_factor", &c->rope_scaling.low_freq_factor, 0, 1, 1e-6, 1e6);
		get_num(p, o, "high_freq_factor", &c->rope_scaling.high_freq_factor, 0, 1, 1e-6, 1e6);
		get_int(p, o, "original_max_position_embeddings", &c->rope_scaling.original_max_pos, 0,
			1, 1, MAX_POS);
		if (!p->err && !(c->rope_scaling.high_freq_factor > c->rope_scaling.low_freq_factor))
			fail_value(p, "high_freq_factor", "must be larger than low_freq_factor");
		return;
	}
	char why[128];
	snprintf(why, sizeof(why), "is '%.40s', which spillway does not support (default, linear, llama3)", ty);
	fail_value(p, "rope_type", why);
}

static int parse_dtype(pctx *p, json_t *root, sw_dtype *out)
{
	const char *field = "torch_dtype";
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v)) {
		field = "dtype";    /* transformers 5 */
		v = json_object_get(root, field);
	}
	*out = SW_DTYPE_F32;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail_type(p, field, v, "a string");
	const char *s = json_string_value(v);
	if (!strcmp(s, "float32"))
		*out = SW_DTYPE_F32;
	else if (!strcmp(s, "bfloat16"))
		*out = SW_DTYPE_BF16;
	else if (!strcmp(s, "float16"))
		*out = SW_DTYPE_F16;
	else
		return fail_value(p, field, "is not float32, bfloat16 or float16");
	return 0;
}

int sw_config_parse(sw_config *c, const char *json, uint64_t len, const char *what)
{
	pctx p = { what, 0, "" };
	json_error_t jerr;
	memset(c, 0, sizeof(*c));
	json_t *root = json_loadb(json, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		sw_error("%s: not valid JSON (line %d: %s); fix or re-download config.json", what,
			 jerr.line, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		sw_error("%s: the top level is %s, not an object; fix config.json", what, json_kind(root));
		json_decref(root);
		return -EINVAL;
	}
	json_t *mt = json_object_get(root, "model_type");
	if (!mt) {
		fail_value(&p, "model_type", "is missing (spillway reads llama, mistral and qwen2)");
		goto out;
	}
	if (!json_is_string(mt)) {
		fail_type(&p, "model_type", mt, "a string");
		goto out;
	}
	const char *type = json_string_value(mt);
	if (strcmp(type, "llama") && strcmp(type, "mistral") && strcmp(type, "qwen2")) {
		sw_error("%s: unknown model type '%.40s'; spillway reads llama, mistral and qwen2", what, type);
		p.err = -EINVAL;
		goto out;
	}
	snprintf(c->model_type, sizeof(c->model_type), "%s", type);
	int is_qwen = !strcmp(type, "qwen2"), is_mistral = !strcmp(type, "mistral");

	get_int(&p, root, "hidden_size", &c->dim, 0, 1, 1, MAX_DIM);
	get_int(&p, root, "num_hidden_layers", &c->n_layers, 0, 1, 1, MAX_LAYERS);
	get_int(&p, root, "num_attention_heads", &c->n_heads, 0, 1, 1, MAX_HEADS);
	get_int(&p, root, "intermediate_size", &c->ffn_dim, 0, 1, 1, MAX_FFN);
	get_int(&p, root, "vocab_size", &c->vocab, 0, 1, 1, MAX_VOCAB);
	if (p.err)
		goto out;
	get_int(&p, root, "num_key_value_heads", &c->n_kv_heads, c->n_heads, 0, 1, MAX_HEADS);
	get_int(&p, root, "head_dim", &c->head_dim, c->dim / c->n_heads, 0, 1, MAX_DIM);
	get_int(&p, root, "max_position_embeddings", &c->max_pos,
		is_qwen ? 32768 : is_mistral ? 131072 : 2048, 0, 1, MAX_POS);
	get_num(&p, root, "rope_theta", &c->rope_theta, 10000.0, 0, 1e-300, 1e300);
	get_rope(&p, root, c);
	get_num(&p, root, "rms_norm_eps", &c->rms_eps, 1e-6, 0, 0, 1);
	get_bool(&p, root, "tie_word_embeddings", &c->tie_embeddings, 0);
	c->attention_bias = is_qwen;
	if (!strcmp(type, "llama")) {
		get_bool(&p, root, "attention_bias", &c->attention_bias, 0);
		int mlp_bias = 0;
		get_bool(&p, root, "mlp_bias", &mlp_bias, 0);
		if (!p.err && mlp_bias)
			fail_value(&p, "mlp_bias", "is true, which spillway does not support");
	}
	json_t *act = json_object_get(root, "hidden_act");
	if (!p.err && act && !json_is_null(act)) {
		if (!json_is_string(act))
			fail_type(&p, "hidden_act", act, "a string");
		else if (strcmp(json_string_value(act), "silu"))
			fail_value(&p, "hidden_act", "is not \"silu\", the only activation spillway has");
	}
	parse_dtype(&p, root, &c->dtype);
	get_token_id(&p, root, "bos_token_id", &c->bos_id);
	get_token_id(&p, root, "eos_token_id", &c->eos_id);
	if (p.err)
		goto out;
	if (c->head_dim < 1)
		fail_value(&p, "head_dim", "is 0 (hidden_size / num_attention_heads); set head_dim");
	else if (c->n_heads % c->n_kv_heads)
		fail_value(&p, "num_key_value_heads", "must divide num_attention_heads");
	else if (c->head_dim % 2)
		fail_value(&p, "head_dim", "must be even (RoPE rotates pairs)");
	else if (c->n_heads * c->head_dim > MAX_DIM * 4)
		fail_value(&p, "head_dim", "times num_attention_heads is too large");
out:
	json_decref(root);
	return p.err;
}

int sw_config_load(sw_config *c, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		sw_error("%s: cannot open (%s); is %s a Hugging Face model directory?", path, strerror(e), dir);
		return -e;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > (64u << 20)) {
				sw_error("%s: larger than 64 MiB; this is not a config.json", path);
				free(buf);
				fclose(f);
				return -EFBIG;
			}
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	int rd_err = ferror(f);
	fclose(f);
	if (rd_err) {
		sw_error("%s: read error; check the disk", path);
		free(buf);
		return -EIO;
	}
	int rc = sw_config_parse(c, buf, len, path);
	free(buf);
	return rc;
}

static const char *arch_name(const char *model_type)
{
	if (!strcmp(model_type, "mistral"))
		return "MistralForCausalLM";
	if (!strcmp(model_type, "qwen2"))
		return "Qwen2ForCausalLM";
	return "LlamaForCausalLM";
}

static const char *torch_dtype_name(sw_dtype t)
{
	return t == SW_DTYPE_BF16 ? "bfloat16" : t == SW_DTYPE_F16 ? "float16" : "float32";
}

/* Writes the whole buffer, retrying short writes. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int sw_config_save(const sw_config *c, const char *dir)
{
	json_t *o = json_object();
	if (!o)
		return -ENOMEM;
	json_object_set_new(o, "architectures", json_pack("[s]", arch_name(c->model_type)));
	json_object_set_new(o, "model_type", json_string(c->model_type));
	json_object_set_new(o, "hidden_size", json_integer(c->dim));
	json_object_set_new(o, "intermediate_size", json_integer(c->ffn_dim));
	json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
	json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
	json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
	json_object_set_new(o, "head_dim", json_integer(c->head_dim));
	json_object_set_new(o, "vocab_size", json_integer(c->vocab));
	json_object_set_new(o, "max_position_embeddings", json_integer(c->max_pos));
	json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
	json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
	if (c->rope_scaling.type == SW_ROPE_LLAMA3)
		json_object_set_new(o, "rope_scaling",
				    json_pack("{s:s, s:f, s:f, s:f, s:I}", "rope_type", "llama3",
					      "factor", c->rope_scaling.factor,
					      "low_freq_factor", c->rope_scaling.low_freq_factor,
					      "high_freq_factor", c->rope_scaling.high_freq_factor,
					      "original_max_position_embeddings",
					      (json_int_t)c->rope_scaling.original_max_pos));
	else if (c->rope_scaling.type == SW_ROPE_LINEAR)
		json_object_set_new(o, "rope_scaling", json_pack("{s:s, s:f}", "rope_type", "linear",
								 "factor", c->rope_scaling.factor));
	else
		json_object_set_new(o, "rope_scaling", json_null());
	json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
	if (!strcmp(c->model_type, "llama")) {
		json_object_set_new(o, "attention_bias", json_boolean(c->attention_bias));
		json_object_set_new(o, "mlp_bias", json_false());
	}
	if (!strcmp(c->model_type, "mistral") || !strcmp(c->model_type, "qwen2"))
		json_object_set_new(o, "sliding_window", json_null());  /* full causal attention */
	if (!strcmp(c->model_type, "qwen2"))
		json_object_set_new(o, "use_sliding_window", json_false());
	json_object_set_new(o, "hidden_act", json_string("silu"));
	json_object_set_new(o, "attention_dropout", json_real(0.0));
	json_object_set_new(o, "initializer_range", json_real(0.02));
	json_object_set_new(o, "torch_dtype", json_string(torch_dtype_name(c->dtype)));
	json_object_set_new(o, "use_cache", json_true());
	json_object_set_new(o, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id) : json_null());
	json_object_set_new(o, "eos_token_id", c->eos_id >= 0 ? json_integer(c->eos_id) : json_null());
	/* The fewest significant digits that give every real back exactly (1e-05, not
	 * 1.0000000000000001e-05). */
	double reals[] = { c->rms_eps, c->rope_theta, c->rope_scaling.factor,
			   c->rope_scaling.low_freq_factor, c->rope_scaling.high_freq_factor, 0.02 };
	int prec = 6;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		char b[400];
		for (;;) {
			snprintf(b, sizeof(b), "%.*g", prec, reals[i]);
			if (prec >= 17 || strtod(b, NULL) == reals[i])
				break;
			prec++;
		}
	}
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(prec));
	json_decref(o);
	if (!text)
		return -ENOMEM;

	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	snprintf(tmp, sizeof(tmp), "%s/.config.json.tmp-XXXXXX", dir);
	int rc = 0, fd = mkstemp(tmp);
	if (fd < 0) {
		rc = -errno;
		sw_error("%s: cannot create (%s); check that the directory exists and is writable",
			 path, strerror(-rc));
		free(text);
		return rc;
	}
	size_t n = strlen(text);
	text[n] = '\n';   /* json_dumps' terminator becomes the trailing newline */
	rc = write_all(fd, text, n + 1);
	free(text);
	if (!rc && fchmod(fd, 0644))
		rc = -errno;
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc) {
		sw_error("%s: write failed (%s); check free space and permissions", path, strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

/* HF's _compute_default_rope_parameters and _compute_llama3_parameters, operation by operation
 * in fp32 (a PyTorch float32 tensor op with a Python scalar computes in float32). The one
 * transcendental step, theta ** (i / hd), is evaluated in double and rounded once to float. */
void sw_config_rope_inv_freq(const sw_config *c, float *inv_freq)
{
	int64_t hd = c->head_dim, n = hd / 2;
	float base = (float)c->rope_theta;
	for (int64_t k = 0; k < n; k++) {
		float e = (float)(2 * k) / (float)hd;
		float pw = (float)pow((double)base, (double)e);
		inv_freq[k] = 1.0f / pw;
	}
	if (c->rope_scaling.type == SW_ROPE_LINEAR) {
		for (int64_t k = 0; k < n; k++)
			inv_freq[k] = inv_freq[k] / (float)c->rope_scaling.factor;
		return;
	}
	if (c->rope_scaling.type != SW_ROPE_LLAMA3)
		return;
	double factor = c->rope_scaling.factor, lo = c->rope_scaling.low_freq_factor;
	double hi = c->rope_scaling.high_freq_factor, old = (double)c->rope_scaling.original_max_pos;
	float low_wavelen = (float)(old / lo), high_wavelen = (float)(old / hi);
	float two_pi = (float)(2 * M_PI), fac = (float)factor, oldf = (float)old;
	float lof = (float)lo, span = (float)(hi - lo);
	for (int64_t k = 0; k < n; k++) {
		float f = inv_freq[k];
		float wavelen = two_pi / f;
		float fl = wavelen > low_wavelen ? f / fac : f;
		float smooth = (oldf / wavelen - lof) / span;
		float smoothed = (1.0f - smooth) * fl / fac + smooth * fl;
		int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
		inv_freq[k] = medium ? smoothed : fl;
	}
}

int64_t sw_config_layer_params(const sw_config *c)
{
	int64_t C = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
	int64_t n = 2 * C + qd * C + 2 * kvd * C + C * qd + 3 * c->ffn_dim * C;
	if (c->attention_bias)
		n += qd + 2 * kvd;
	return n;
}

int64_t sw_config_total_params(const sw_config *c)
{
	int64_t emb = c->vocab * c->dim;
	return emb + c->n_layers * sw_config_layer_params(c) + c->dim + (c->tie_embeddings ? 0 : emb);
}
