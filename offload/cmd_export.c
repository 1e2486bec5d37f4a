/* spillway export --run DIR --out DIR [--fp32]: the trained weights of a run as a Hugging Face
 * directory (bf16 by default, the fp32 masters with --fp32). Reads the weights the manifest
 * names (RUN/manifest.json, written atomically by `spillway train`), so a run interrupted
 * mid-save still exports its last committed step. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/hfmodel.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char summary[] = "write a run's trained weights as a Hugging Face directory";

int cmd_export(int argc, char **argv)
{
	const char *run = NULL, *out = NULL;
	int fp32 = 0;
	const sw_opt opts[] = {
		{ "run", SW_OPT_STR, &run, "DIR", "run directory of 'spillway train --run'", 1 },
		{ "out", SW_OPT_STR, &out, "DIR", "output directory (must not exist)", 1 },
		{ "fp32", SW_OPT_FLAG, &fp32, NULL, "write the fp32 master weights (default bf16)", 0 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("export", summary, opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	char path[4096];
	snprintf(path, sizeof(path), "%s/manifest.json", run);
	json_error_t jerr;
	json_t *man = json_load_file(path, 0, &jerr);
	if (!man) {
		sw_error("export: %s: %s; give the --run directory of a 'spillway train' run that "
			 "finished at least one save", path, jerr.text);
		return 1;
	}
	const char *wd = json_string_value(json_object_get(man, "weights"));
	if (!wd || strchr(wd, '/')) {
		sw_error("export: %s: no valid \"weights\" entry; the run directory is damaged", path);
		json_decref(man);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s", run, wd);
	json_decref(man);
	sw_hf_model hm;
	if (sw_hf_open(&hm, path))
		return 1;
	sw_table *tt = &hm.tt;
	sw_dtype dt = fp32 ? SW_DTYPE_F32 : SW_DTYPE_BF16;
	sw_st_writer *w;
	rc = sw_hf_write_begin(&w, out, tt, dt, 0);
	float *buf = rc ? NULL : malloc((size_t)tt->max_group_numel * 4);
	if (!rc && !buf) {
		sw_st_writer_abort(w);
		rc = -ENOMEM;
	}
	for (int g = 0; g < tt->ngroups && buf && !rc; g++) {
		sw_hf_read_group(&hm, g, buf, SW_DTYPE_F32);
		rc = sw_st_writer_write(w, buf, SW_DTYPE_F32, tt->g[g].numel);
	}
	if (buf && rc)
		sw_st_writer_abort(w);
	if (buf && !rc) {
		sw_config cfg = tt->cfg;
		cfg.dtype = dt;
		rc = sw_st_writer_finish(w, &cfg);
	}
	free(buf);
	if (!rc)
		printf("export: %s (%lld parameters, %s) -> %s\n", path, (long long)tt->total,
		       fp32 ? "fp32" : "bf16", out);
	sw_hf_close(&hm);
	return rc ? 1 : 0;
}
