/* The model configuration: what spillway reads from (and writes to) a Hugging Face
 * config.json, for model types llama, mistral and qwen2. */
#ifndef SW_CORE_CONFIG_H
#define SW_CORE_CONFIG_H
#include <stdint.h>
#include "core/dtype.h"

typedef enum { SW_ROPE_NONE, SW_ROPE_LLAMA3, SW_ROPE_LINEAR } sw_rope_scaling_type;

typedef struct sw_config {
	char model_type[16];        /* "llama", "mistral", "qwen2" */
	int64_t dim;                /* hidden_size */
	int64_t n_layers;           /* num_hidden_layers */
	int64_t n_heads;            /* num_attention_heads */
	int64_t n_kv_heads;         /* num_key_value_heads (defaults to n_heads) */
	int64_t head_dim;           /* head_dim (defaults to dim / n_heads) */
	int64_t ffn_dim;            /* intermediate_size */
	int64_t vocab;              /* vocab_size */
	int64_t max_pos;            /* max_position_embeddings */
	double rope_theta;
	struct {
		sw_rope_scaling_type type;
		double factor, low_freq_factor, high_freq_factor;
		int64_t original_max_pos;   /* original_max_position_embeddings */
	} rope_scaling;
	double rms_eps;             /* rms_norm_eps */
	int tie_embeddings;         /* tie_word_embeddings */
	int attention_bias;         /* q/k/v projections carry a bias (qwen2: always) */
	sw_dtype dtype;             /* torch_dtype of the checkpoint */
	int64_t bos_id, eos_id;     /* -1 when absent */
} sw_config;

/* Reads DIR/config.json. Returns 0, or -errno after printing one error line that names the file
 * and the field (unknown model type, wrong JSON type, missing or out-of-range value). */
int sw_config_load(sw_config *c, const char *dir);
/* Writes DIR/config.json (atomically: temporary file, fsync, rename) so that HF transformers
 * loads it with the matching *ForCausalLM class. Returns 0 or -errno (message printed). */
int sw_config_save(const sw_config *c, const char *dir);
/* Parses config.json text (for tests and the fuzzer). 'what' names the source in messages. */
int sw_config_parse(sw_config *c, const char *json, uint64_t len, const char *what);

/* RoPE inverse frequencies (head_dim/2 values) with the configured scaling, computed exactly
 * as HF transformers does (in fp32 from float64 powers; Llama 3 smoothing included). */
void sw_config_rope_inv_freq(const sw_config *c, float *inv_freq);

/* Parameters: total and per decoder layer. */
int64_t sw_config_layer_params(const sw_config *c);
int64_t sw_config_total_params(const sw_config *c);
#endif
