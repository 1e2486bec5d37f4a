/* export of a LoRA run (RUN/lora.json): the adapters in PEFT's format, OUT/adapter_model.safetensors
 * (lora_A/lora_B of every targeted linear, fp32, PEFT's names for LlamaForCausalLM) and
 * OUT/adapter_config.json, written into a staging directory and renamed into place. */
#include "offload/lora_train.h"
#include "offload/train_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* adapter_config.json: what PEFT's LoraConfig reads back */
static int write_config(const char *dir, json_t *set)
{
	json_t *tm = json_array();
	const char *tg = json_string_value(json_object_get(set, "lora_targets"));
	for (int k = 0; k < SW_LORA_NTARGETS; k++) {
		char want[16];
		snprintf(want, sizeof(want), ",%s,", sw_lora_target_name(k));
		char have[64];
		snprintf(have, sizeof(have), ",%s,", tg ? tg : "");
		if (strstr(have, want))
			json_array_append_new(tm, json_string(strchr(sw_lora_module_name(k), '.') + 1));
	}
	json_t *c = json_pack("{s:s,s:s,s:O,s:O,s:O,s:o,s:s,s:b,s:b,s:n}", "peft_type", "LORA",
			      "task_type", "CAUSAL_LM", "base_model_name_or_path",
			      json_object_get(set, "model"), "r", json_object_get(set, "lora_rank"),
			      "lora_alpha", json_object_get(set, "lora_alpha"), "target_modules", tm,
			      "bias", "none", "inference_mode", 1, "fan_in_fan_out", 0, "modules_to_save");
	json_object_set(c, "lora_dropout", json_object_get(set, "lora_dropout"));
	int rc = c ? train_json_write(dir, "adapter_config.json", c) : -ENOMEM;
	json_decref(c);
	return rc;
}

/* The P32 tensors of the save, under their PEFT names, without m and v. */
static int write_adapters(const char *dir, const char *file)
{
	sw_st_file f;
	int rc = sw_st_open(&f, file);
	if (rc)
		return rc;
	char wdir[SW_TRAIN_PATH + 64], src[SW_TRAIN_PATH + 96], dst[SW_TRAIN_PATH + 96];
	snprintf(wdir, sizeof(wdir), "%s/w", dir);
	sw_st_writer *w;
	rc = sw_st_writer_begin(&w, wdir, 0);
	int n = 0;
	for (int i = 0; i < f.n && !rc; i++)
		if (!strstr(f.t[i].name, ".adam_")) {
			rc = sw_st_writer_declare(w, f.t[i].name, SW_DTYPE_F32, f.t[i].ndim, f.t[i].shape);
			n++;
		}
	for (int i = 0; i < f.n && !rc; i++)
		if (!strstr(f.t[i].name, ".adam_"))
			rc = sw_st_writer_write(w, sw_st_data(&f, &f.t[i]), SW_DTYPE_F32, f.t[i].numel);
	rc = rc ? (sw_st_writer_abort(w), rc) : sw_st_writer_finish(w, NULL);
	sw_st_close(&f);
	snprintf(src, sizeof(src), "%s/model.safetensors", wdir);
	snprintf(dst, sizeof(dst), "%s/adapter_model.safetensors", dir);
	if (!rc && (rename(src, dst) || rmdir(wdir)))
		rc = -errno;
	if (!rc)
		printf("export: %d adapter tensors\n", n);
	return rc;
}

int sw_lora_export(const char *run, const char *out, int merge)
{
	if (merge) {
		sw_error("export: --merge of a LoRA run is not implemented yet (docs/lora.md \"Not done "
			 "yet\"); export the adapter and merge it with PEFT's merge_and_unload()");
		return 2;
	}
	sw_lora_run r;
	int rc = sw_lora_run_read(run, &r);
	if (rc)
		return 1;
	char stage[SW_TRAIN_PATH + 32], file[SW_TRAIN_PATH + 160];
	snprintf(stage, sizeof(stage), "%s.export-XXXXXX", out);
	if (!mkdtemp(stage)) {
		sw_error("export: cannot create %s (%s); check that the parent directory exists", stage,
			 strerror(errno));
		sw_lora_run_free(&r);
		return 1;
	}
	snprintf(file, sizeof(file), "%s/%s/model.safetensors", run, r.adapters);
	rc = write_adapters(stage, file);
	rc = rc ? rc : write_config(stage, json_object_get(r.man, "settings"));
	if (!rc && rename(stage, out)) {
		rc = -errno;
		sw_error("export: cannot move %s to %s (%s)", stage, out, strerror(-rc));
	}
	if (rc)
		train_rm_rf(stage);
	else
		printf("export: LoRA adapters of %s (step %lld) -> %s (PEFT format)\n", run,
		       (long long)r.step, out);
	sw_lora_run_free(&r);
	return rc ? 1 : 0;
}
