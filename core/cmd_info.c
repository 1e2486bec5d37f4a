/* spillway info: what this machine has (GPUs, topology) and, on request, what a model directory
 * or a token file holds (after validating it completely). */
#include "core/backend.h"
#include "core/cli.h"
#include "core/commands.h"
#include "core/data.h"
#include "core/hfmodel.h"
#include "core/log.h"
#include "io/topology.h"

#include <stdio.h>
#include <string.h>

static const char *rope_name(const sw_config *c)
{
	return c->rope_scaling.type == SW_ROPE_LLAMA3 ? "llama3"
	     : c->rope_scaling.type == SW_ROPE_LINEAR ? "linear" : "none";
}

static int print_model(const char *dir)
{
	sw_hf_model m;
	if (sw_hf_open(&m, dir))
		return 1;
	const sw_config *c = &m.cfg;
	printf("model %s: %s, %d safetensors file%s%s\n", dir, c->model_type, m.nfiles,
	       m.nfiles == 1 ? "" : "s", m.ignored_lm_head ? " (tied: lm_head.weight ignored)" : "");
	printf("  dim %lld, layers %lld, heads %lld, kv heads %lld, head dim %lld, ffn %lld, vocab %lld\n",
	       (long long)c->dim, (long long)c->n_layers, (long long)c->n_heads, (long long)c->n_kv_heads,
	       (long long)c->head_dim, (long long)c->ffn_dim, (long long)c->vocab);
	printf("  rope theta %g, scaling %s", c->rope_theta, rope_name(c));
	if (c->rope_scaling.type == SW_ROPE_LLAMA3)
		printf(" (factor %g, low %g, high %g, original max pos %lld)", c->rope_scaling.factor,
		       c->rope_scaling.low_freq_factor, c->rope_scaling.high_freq_factor,
		       (long long)c->rope_scaling.original_max_pos);
	else if (c->rope_scaling.type == SW_ROPE_LINEAR)
		printf(" (factor %g)", c->rope_scaling.factor);
	printf(", max pos %lld, rms eps %g\n", (long long)c->max_pos, c->rms_eps);
	printf("  tied embeddings %s, attention bias %s, stored as %s, %lld parameters\n",
	       c->tie_embeddings ? "yes" : "no", c->attention_bias ? "yes" : "no",
	       sw_dtype_name(sw_hf_entry(&m, 0)->dtype), (long long)sw_config_total_params(c));
	sw_table_print(&m.tt);
	sw_hf_close(&m);
	return 0;
}

static int print_data(const char *path)
{
	sw_data d;
	if (sw_data_open(&d, path, 0, 0))
		return 1;
	printf("tokens %s: %llu tokens (u%u, largest id %u), vocab %u, %s, %llu targets\n", path,
	       (unsigned long long)d.h.count, d.h.token_bytes * 8, d.max_token, d.h.vocab,
	       d.mask ? "loss mask" : "no loss mask", (unsigned long long)d.h.n_targets);
	sw_data_close(&d);
	return 0;
}

int cmd_info(int argc, char **argv)
{
	const char *model = NULL, *nvme = NULL, *data = NULL;
	const sw_opt opts[] = {
		{ "model", SW_OPT_STR, &model, "DIR", "validate a Hugging Face model and print its tensor table", 0 },
		{ "nvme", SW_OPT_STR, &nvme, "P1,P2", "NVMe paths to describe", 0 },
		{ "data", SW_OPT_STR, &data, "FILE", "validate a token file and print its summary", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("info", "GPU, NUMA nodes, NVMe paths and, with --model, the tensor table",
			      opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
#ifdef SW_HAVE_CUDA
	int n = sw_cuda_device_count();
	printf("build: CUDA backend; GPUs: %d%s\n", n, n ? "" : " (none found: the CPU backend runs)");
#else
	printf("build: CPU only (built without CUDA); GPUs: not used\n");
#endif
	if (sw_io_topology_print(nvme))
		return 1;
	if (model && print_model(model))
		return 1;
	if (data && print_data(data))
		return 1;
	return 0;
}
