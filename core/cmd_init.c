/* spillway init: a randomly initialised Hugging Face model directory.
 *
 * Initialisation follows HF's _init_weights for these models: Linear and Embedding weights
 * normal(0, 0.02), biases 0, RMSNorm weights 1. Element i of table tensor k is value i mod 2^18
 * of sw_rng stream (seed, k * 2^32 + i / 2^18) (Box-Muller pairs, core/rng.h), so the result
 * depends only on the seed and the shapes (not on the thread count), chunks are generated in
 * parallel, and the model is written a batch of chunks at a time (a 70B model never sits in
 * memory). */
#include "core/cli.h"
#include "core/commands.h"
#include "core/hfmodel.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/rng.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define CHUNK (1 << 18)   /* elements per RNG stream and per task (even: Box-Muller pairs align) */

typedef struct gen_piece { int k; int64_t chunk, n; } gen_piece;

typedef struct gen_ctx {
	const sw_table *tt;
	uint64_t seed;
	const gen_piece *pieces;
	float *buf;              /* one CHUNK per piece */
} gen_ctx;

/* Chunk c of table tensor k: values [c*CHUNK, c*CHUNK + n) from RNG stream (seed, k*2^32 + c),
 * so the bytes do not depend on the number of threads. */
static void gen_task(void *arg, int64_t task, int worker)
{
	(void)worker;
	const gen_ctx *g = arg;
	const gen_piece *pc = &g->pieces[task];
	const sw_tensor *t = &g->tt->t[pc->k];
	float *out = g->buf + task * CHUNK;
	if (t->ndim == 2) {      /* weights of Linear and Embedding: normal(0, 0.02) */
		sw_rng r;
		sw_rng_seed(&r, g->seed, ((uint64_t)pc->k << 32) + (uint64_t)pc->chunk);
		sw_rng_fill_normal_f32(&r, out, pc->n, 0.0, 0.02);
		return;
	}
	float fill = (t->kind == SW_T_ATTN_NORM || t->kind == SW_T_MLP_NORM ||
		      t->kind == SW_T_FINAL_NORM) ? 1.0f : 0.0f;   /* norms 1, biases 0 */
	for (int64_t j = 0; j < pc->n; j++)
		out[j] = fill;
}

/* Writes every tensor of the table: generated in parallel batches of fp32 chunks, written in
 * order (the writer converts to the stored dtype). */
static int write_tensors(sw_st_writer *w, const sw_table *tt, uint64_t seed, int threads)
{
	sw_pool *pool = sw_pool_create(threads, NULL);
	if (!pool)
		return -ENOMEM;
	int slots = 4 * sw_pool_threads(pool);
	gen_piece *pieces = malloc(sizeof(gen_piece) * (size_t)slots);
	float *buf = malloc(sizeof(float) * CHUNK * (size_t)slots);
	int rc = 0;
	if (!pieces || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	gen_ctx g = { tt, seed, pieces, buf };
	sw_progress pr;
	int show = tt->total >= (1 << 26);   /* small models finish before a bar would help */
	if (show)
		sw_progress_begin(&pr, "init: writing", (uint64_t)tt->total);
	uint64_t done = 0;
	int k = 0;
	int64_t c = 0;
	while (k < tt->n && !rc) {
		int np = 0;
		for (; np < slots && k < tt->n; np++) {   /* the next pieces, in file order */
			int64_t left = tt->t[k].numel - c * CHUNK;
			pieces[np] = (gen_piece){ k, c, left < CHUNK ? left : CHUNK };
			if (left <= CHUNK) {
				k++;
				c = 0;
			} else {
				c++;
			}
		}
		sw_pool_run(pool, gen_task, &g, np);
		for (int i = 0; i < np && !rc; i++) {
			rc = sw_st_writer_write(w, buf + (int64_t)i * CHUNK, SW_DTYPE_F32, pieces[i].n);
			done += (uint64_t)pieces[i].n;
		}
		if (show)
			sw_progress_update(&pr, done);
	}
	if (show)
		sw_progress_end(&pr);
out:
	free(pieces);
	free(buf);
	sw_pool_destroy(pool);
	return rc;
}

/* The filesystem that will hold --out must have room for the weights (plus 1 MiB of headers
 * and config) before anything is written. Returns 0 or 1 after one line. */
static int check_space(const char *out, uint64_t bytes)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", out);
	const char *parent = dirname(buf);
	struct statvfs st;
	if (statvfs(parent, &st)) {
		sw_error("init: --out %s: the directory %s is not usable (%s); create it first", out,
			 parent, strerror(errno));
		return 1;
	}
	uint64_t avail = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize, need = bytes + (1u << 20);
	if (need > avail) {
		char n[32], f[32];
		sw_error("init: the model needs %s but %s has %s free; free space, pick another "
			 "--out disk, or a smaller shape", sw_fmt_size(need, n, 32), parent,
			 sw_fmt_size(avail, f, 32));
		return 1;
	}
	return 0;
}

static int check_range(const char *opt, int64_t v, int64_t lo, int64_t hi)
{
	if (v >= lo && v <= hi)
		return 0;
	sw_error("init: --%s %lld is outside [%lld, %lld]", opt, (long long)v, (long long)lo,
		 (long long)hi);
	return 2;
}

/* The attention shape and the constants; head_dim 0 becomes dim / heads. 0 or 2. */
static int check_shape(int64_t dim, int64_t heads, int64_t kv, int64_t *hd, double theta, double eps)
{
	int64_t head_dim = *hd;
	if (heads % kv) {
		sw_error("init: --kv-heads %lld must divide --heads %lld", (long long)kv, (long long)heads);
		return 2;
	}
	if (!head_dim && dim % heads) {
		sw_error("init: --dim %lld is not a multiple of --heads %lld; give --head-dim",
			 (long long)dim, (long long)heads);
		return 2;
	}
	if (!head_dim)
		head_dim = dim / heads;
	if (head_dim % 2) {
		sw_error("init: head dimension %lld must be even (RoPE rotates pairs)", (long long)head_dim);
		return 2;
	}
	if (!(theta > 0) || !(eps > 0 && eps < 1)) {
		sw_error("init: --rope-theta must be > 0 and --rms-eps in (0, 1)");
		return 2;
	}
	*hd = head_dim;
	return 0;
}

/* Checks the space, then writes the model of config c to out. Returns the exit status. */
static int init_write(const sw_config *c, const char *out, uint64_t max_shard, uint64_t seed,
		      int threads)
{
	sw_dtype dt = c->dtype;
	sw_table tt;
	int rc;
	if ((rc = sw_table_build(&tt, c))) {
		sw_error("init: out of memory building the tensor table");
		return 1;
	}
	if ((rc = check_space(out, (uint64_t)tt.total * (uint64_t)sw_dtype_size(dt)))) {
		sw_table_free(&tt);
		return rc;
	}
	char b[32];
	sw_info("init: %s, %lld parameters (%s as %s) -> %s", c->model_type, (long long)tt.total,
		sw_fmt_size((uint64_t)tt.total * (uint64_t)sw_dtype_size(dt), b, sizeof(b)),
		sw_dtype_name(dt), out);
	sw_st_writer *w;
	if ((rc = sw_hf_write_begin(&w, out, &tt, dt, max_shard))) {
		sw_table_free(&tt);
		return 1;
	}
	rc = write_tensors(w, &tt, seed, threads);
	if (rc) {
		if (rc == -ENOMEM)
			sw_error("init: out of memory");
		sw_st_writer_abort(w);
	} else {
		rc = sw_st_writer_finish(w, c);
	}
	sw_table_free(&tt);
	return rc ? 1 : 0;
}

int cmd_init(int argc, char **argv)
{
	const char *arch = NULL, *out = NULL, *dtype = "f32";
	int64_t dim = 0, layers = 0, heads = 0, kv = 0, ffn = 0, vocab = 0, seed = 0, max_pos = 2048;
	int64_t head_dim = 0, threads = 0;
	double theta = 10000.0, eps = 1e-5;
	int tie = 0;
	uint64_t max_shard = 5000000000ull;
	const sw_opt opts[] = {
		{ "arch", SW_OPT_STR, &arch, "NAME", "llama, mistral or qwen2", 1 },
		{ "dim", SW_OPT_INT, &dim, "N", "hidden size", 1 },
		{ "layers", SW_OPT_INT, &layers, "N", "decoder layers", 1 },
		{ "heads", SW_OPT_INT, &heads, "N", "attention heads", 1 },
		{ "kv-heads", SW_OPT_INT, &kv, "N", "key/value heads (default: --heads)", 0 },
		{ "head-dim", SW_OPT_INT, &head_dim, "N", "head dimension (default: dim / heads)", 0 },
		{ "ffn", SW_OPT_INT, &ffn, "N", "MLP intermediate size", 1 },
		{ "vocab", SW_OPT_INT, &vocab, "N", "vocabulary size (258 for 'spillway data' files)", 1 },
		{ "seed", SW_OPT_INT, &seed, "N", "random seed (default 0)", 0 },
		{ "tie", SW_OPT_FLAG, &tie, NULL, "tie lm_head to the embedding", 0 },
		{ "dtype", SW_OPT_STR, &dtype, "f32|bf16", "stored dtype (default f32: exact small models)", 0 },
		{ "rope-theta", SW_OPT_FLOAT, &theta, "X", "RoPE base (default 10000)", 0 },
		{ "max-pos", SW_OPT_INT, &max_pos, "N", "max_position_embeddings (default 2048)", 0 },
		{ "rms-eps", SW_OPT_FLOAT, &eps, "X", "RMSNorm epsilon (default 1e-5)", 0 },
		{ "max-shard", SW_OPT_SIZE, &max_shard, "SIZE", "largest safetensors shard (default 5GB)", 0 },
		{ "threads", SW_OPT_INT, &threads, "N", "generator threads (default: all CPUs; same bytes)", 0 },
		{ "out", SW_OPT_STR, &out, "DIR", "output directory (must not exist)", 1 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("init", "write a randomly initialised Hugging Face model directory", opts,
			      argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (strcmp(arch, "llama") && strcmp(arch, "mistral") && strcmp(arch, "qwen2")) {
		sw_error("init: --arch '%s' is not one of llama, mistral, qwen2", arch);
		return 2;
	}
	sw_dtype dt;
	if (!strcmp(dtype, "f32") || !strcmp(dtype, "fp32"))
		dt = SW_DTYPE_F32;
	else if (!strcmp(dtype, "bf16"))
		dt = SW_DTYPE_BF16;
	else {
		sw_error("init: --dtype '%s' is not f32 or bf16", dtype);
		return 2;
	}
	if (!kv)
		kv = heads;
	if ((rc = check_range("dim", dim, 1, 1 << 20)) || (rc = check_range("layers", layers, 1, 1 << 14)) ||
	    (rc = check_range("heads", heads, 1, 1 << 14)) || (rc = check_range("kv-heads", kv, 1, heads)) ||
	    (rc = check_range("ffn", ffn, 1, 1 << 22)) || (rc = check_range("vocab", vocab, 1, 1 << 24)) ||
	    (rc = check_range("max-pos", max_pos, 1, 1ll << 32)) || (rc = sw_cli_threads("init", "threads", &threads)) ||
	    (rc = check_range("head-dim", head_dim ? head_dim : dim / heads, 2, 1 << 16)))
		return rc;
	if ((rc = check_shape(dim, heads, kv, &head_dim, theta, eps)))
		return rc;

	sw_config c;
	memset(&c, 0, sizeof(c));
	snprintf(c.model_type, sizeof(c.model_type), "%s", arch);
	c.dim = dim;
	c.n_layers = layers;
	c.n_heads = heads;
	c.n_kv_heads = kv;
	c.head_dim = head_dim;
	c.ffn_dim = ffn;
	c.vocab = vocab;
	c.max_pos = max_pos;
	c.rope_theta = theta;
	c.rms_eps = eps;
	c.tie_embeddings = tie;
	c.attention_bias = !strcmp(arch, "qwen2");
	c.dtype = dt;
	c.bos_id = vocab == 258 ? 256 : -1;   /* the byte-level ids of 'spillway data' */
	c.eos_id = vocab == 258 ? 257 : -1;
	return init_write(&c, out, max_shard, (uint64_t)seed, (int)threads);
}
