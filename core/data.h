/* Token data: the .tok file format, its writer and the micro-batch loader (docs/formats.md).
 *
 * File layout (little-endian):
 *   sw_tok_header (64 bytes)
 *   tokens: count x token_bytes (u16 or u32)
 *   loss mask (when flags & SW_TOK_MASK): ceil(count / 8) bytes, bit i % 8 of byte i / 8 (LSB
 *   first) is 1 when token i is a training target (instruction tuning: response tokens only).
 * The file size must be exactly that.
 *
 * Loader. The token stream is cut into W = (count - 1) / T windows of T + 1 tokens, window w
 * starting at w*T (neighbours share one token). Each epoch visits every window once, in the
 * order of a Fisher-Yates permutation drawn from sw_rng stream (seed, epoch). A row is
 *   inputs[t]  = tok[w*T + t]
 *   targets[t] = tok[w*T + t + 1], or -100 (PyTorch's ignore_index) when that token's mask bit
 *                is 0, for t in [0, T).
 * The position (epoch, index into the epoch's permutation) is two plain integers: restore it and
 * the next rows are bit-identical to those an uninterrupted run would have seen. */
#ifndef SW_CORE_DATA_H
#define SW_CORE_DATA_H
#include <stdint.h>

#define SW_TOK_MAGIC "SWTOKENS"
#define SW_TOK_VERSION 2u          /* written; versions 1 and 2 are read */
#define SW_TOK_MASK 1u              /* flags: a loss mask follows the tokens */
#define SW_IGNORE_INDEX (-100)

/* Byte-level tokenizer of `spillway data`: ids 0..255 are bytes, then these. */
#define SW_BYTE_BOS 256
#define SW_BYTE_EOS 257
#define SW_BYTE_VOCAB 258

typedef struct sw_tok_header {
	char magic[8];               /* "SWTOKENS" */
	uint32_t version;            /* 2 (1: files before the tokenizer fingerprint; read as 0) */
	uint32_t token_bytes;        /* 2 (u16) or 4 (u32) */
	uint64_t count;              /* tokens */
	uint32_t flags;              /* SW_TOK_MASK */
	uint32_t vocab;              /* every token id is < vocab (0: not stated) */
	uint64_t n_targets;          /* tokens whose mask bit is 1 (count when there is no mask) */
	uint64_t tok_fingerprint;    /* XXH3-64 of the tokenizer.json that made the ids (0: byte-level
	                                or unknown) */
	uint64_t reserved[2];        /* 0 */
} sw_tok_header;
_Static_assert(sizeof(sw_tok_header) == 64, "sw_tok_header is 64 bytes on disk");

/* ---- writer: streaming and atomic (PATH.tmp-XXXXXX renamed at the end) ---- */
typedef struct sw_tok_writer sw_tok_writer;
int sw_tok_writer_begin(sw_tok_writer **w, const char *path, uint32_t token_bytes, uint32_t vocab,
			int with_mask);
/* Appends n tokens; mask (n bytes, 0 or 1) is required when the file has a mask, else NULL.
 * A token >= vocab is an error (-ERANGE, message printed). */
/* Records the tokenizer's fingerprint (sw_tokenizer_fingerprint) in the header. */
void sw_tok_writer_set_fingerprint(sw_tok_writer *w, uint64_t fingerprint);
int sw_tok_writer_append(sw_tok_writer *w, const uint32_t *tokens, const uint8_t *mask, uint64_t n);
/* Writes the mask and the final header, fsyncs, renames. Frees w (removing the temporary file
 * on error). */
int sw_tok_writer_finish(sw_tok_writer *w);
void sw_tok_writer_abort(sw_tok_writer *w);

/* ---- loader ---- */
typedef struct sw_data_pos {
	uint64_t epoch;              /* epochs completed */
	uint64_t index;              /* windows of this epoch already handed out */
} sw_data_pos;

typedef struct sw_data {
	sw_tok_header h;
	const uint8_t *map;          /* the whole file */
	uint64_t size;
	int mapped;                  /* map is our mmap */
	const uint8_t *tokens, *mask;   /* mask NULL when the file has none */
	int64_t seq_len;             /* T */
	uint64_t n_windows;          /* W */
	uint32_t max_token;          /* largest id in the file (check it against the model's vocab) */
	uint64_t seed;
	sw_data_pos pos;
	uint64_t *perm[2];           /* permutations of two epochs (cache, keyed by epoch parity) */
	uint64_t perm_epoch[2];
	int perm_valid[2];
} sw_data;

/* Validates PATH (magic, version, token size, exact length, ids < vocab) and prepares windows of
 * seq_len + 1 tokens. Returns 0 or -errno after one error line naming the file. */
int sw_data_open(sw_data *d, const char *path, int64_t seq_len, uint64_t seed);
/* Validates a file image in memory (for tests and sw_data_open); does not copy buf. */
int sw_data_parse(sw_data *d, const uint8_t *buf, uint64_t size, const char *what);
void sw_data_close(sw_data *d);
/* Token id at i. */
uint32_t sw_data_token(const sw_data *d, uint64_t i);
int sw_data_is_target(const sw_data *d, uint64_t i);
/* Fills rows x T inputs and targets (int32, row-major) and advances the position (epochs wrap;
 * a new epoch draws a new permutation). Returns 0 or -ENOMEM. */
int sw_data_next(sw_data *d, int64_t rows, int32_t *inputs, int32_t *targets);
/* The number of targets that are not -100 in the next 'rows' rows, without advancing: the loss
 * of an optimizer step is the mean over these (sum over the step's micro-batches). -1 on ENOMEM. */
int64_t sw_data_count_targets(sw_data *d, int64_t rows);
/* An evaluation of one batch: fills *loss_sum with the summed per-token loss of rows x T
 * inputs/targets (targets -100 count nothing). Returns 0 or -errno. */
typedef int (*sw_data_eval_fn)(void *ctx, const int32_t *inputs, const int32_t *targets,
			       double *loss_sum);
/* The mean loss over every window of d (a held-out file), in batches of `rows` rows in the
 * order of its first-epoch permutation (the same every time: the position is reset), the last
 * batch padded with rows without targets. inputs/targets hold rows x T each. *out is NaN when
 * the file has no target. Returns 0 or the first error. */
int sw_data_eval_mean(sw_data *d, int64_t rows, int32_t *inputs, int32_t *targets,
		      sw_data_eval_fn fn, void *ctx, double *out);
/* Checks an opened token file against the model it is about to train: refuses (one error line,
 * -EINVAL) ids >= model_vocab (config.json's vocab_size), and, unless force, a file whose recorded
 * tokenizer fingerprint differs from model_tok_fingerprint (sw_tokenizer_fingerprint of the model
 * directory's tokenizer.json; 0 = the model directory has no tokenizer.json).  A file without a
 * fingerprint (byte-level, version 1) against a model with a tokenizer, and a file with one
 * against a model without one, are mismatches too (--force accepts them).  0 when fine. */
int sw_data_check_model(const sw_data *d, const char *what, uint32_t model_vocab, uint64_t model_tok_fingerprint,
			int force);
static inline sw_data_pos sw_data_get_pos(const sw_data *d) { return d->pos; }
static inline void sw_data_set_pos(sw_data *d, sw_data_pos p) { d->pos = p; }
#endif
