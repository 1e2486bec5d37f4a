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
	if (!c) {
		sw_error("export: the settings in lora.json are incomplete (model, lora_rank, "
			 "lora_alpha); the run directory is damaged");
		return -EINVAL;
	}
	json_object_set(c, "lora_dropout", json_object_get(set, "lora_dropout"));
	int rc = train_json_write(dir, "adapter_config.json", c);
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

int sw_lora_export(const char *run, const char *out)
{
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

/* ---- --merge: W + (alpha / r) B A for every targeted linear ---- */

struct sw_lora_merge {
	sw_lora_run r;
	sw_st_file f;
	int f_open;
	sw_lora_layout lo;
	float *ad;                   /* one layer's adapters (P32) */
	char run[SW_TRAIN_PATH];
};

int sw_lora_merge_open(const char *run, sw_lora_merge **out, char *model_dir, int len)
{
	sw_lora_merge *m = calloc(1, sizeof(*m));
	*out = m;
	if (!m)
		return -ENOMEM;
	snprintf(m->run, sizeof(m->run), "%s", run);
	int rc = sw_lora_run_read(run, &m->r);
	if (rc)
		return rc;
	const char *md = json_string_value(json_object_get(json_object_get(m->r.man, "settings"), "model"));
	if (!md) {
		sw_error("export: %s/%s names no base model; the run directory is damaged", run,
			 SW_LORA_MANIFEST);
		return -EINVAL;
	}
	snprintf(model_dir, (size_t)len, "%s", md);
	return 0;
}

int sw_lora_merge_bind(sw_lora_merge *m, const sw_config *cfg)
{
	json_t *set = json_object_get(m->r.man, "settings");
	unsigned mask;
	char why[256], file[SW_TRAIN_PATH + 160];
	const char *tg = json_string_value(json_object_get(set, "lora_targets"));
	if (!tg || sw_lora_targets_parse(tg, &mask, why, sizeof(why))) {
		sw_error("export: %s/%s: bad lora_targets; the run directory is damaged", m->run,
			 SW_LORA_MANIFEST);
		return -EINVAL;
	}
	sw_lora_layout_make(&m->lo, cfg, (int)json_integer_value(json_object_get(set, "lora_rank")),
			    mask, json_real_value(json_object_get(set, "lora_alpha")));
	snprintf(file, sizeof(file), "%s/%s/model.safetensors", m->run, m->r.adapters);
	int rc = sw_st_open(&m->f, file);
	m->f_open = !rc;
	if (!rc && !(m->ad = malloc((size_t)m->lo.numel * 4)))
		rc = -ENOMEM;
	for (int l = 0; l < (int)cfg->n_layers && !rc; l++)   /* every tensor is there */
		rc = sw_lora_read_layer(&m->f, &m->lo, l, "", m->ad);
	return rc;
}

/* W (out x in) += scale * B (out x r) A (r x in): B A summed in double, rounded to fp32, times
 * the scale in fp32, added in fp32 (PEFT's merge in fp32) */
static void merge_one(float *W, const float *A, const float *B, int64_t out, int64_t in, int r,
		      float scale)
{
	for (int64_t o = 0; o < out; o++)
		for (int64_t i = 0; i < in; i++) {
			double acc = 0;
			for (int k = 0; k < r; k++)
				acc += (double)B[o * r + k] * (double)A[(int64_t)k * in + i];
			W[o * in + i] += (float)acc * scale;
		}
}

void sw_lora_merge_group(sw_lora_merge *m, const sw_table *tt, int g, float *buf)
{
	int l = g - 1;
	if (g < 1 || l >= (int)tt->cfg.n_layers || sw_lora_read_layer(&m->f, &m->lo, l, "", m->ad))
		return;
	for (int k = 0; k < SW_LORA_NTARGETS; k++) {
		if (!sw_lora_has(&m->lo, k))
			continue;
		int ti = sw_table_find_kind(tt, sw_lora_target_kind(k), l);
		merge_one(buf + tt->t[ti].offset, m->ad + m->lo.off_a[k], m->ad + m->lo.off_b[k],
			  m->lo.out[k], m->lo.in[k], m->lo.rank, m->lo.scale);
	}
}

void sw_lora_merge_close(sw_lora_merge *m)
{
	if (!m)
		return;
	if (m->f_open)
		sw_st_close(&m->f);
	free(m->ad);
	sw_lora_run_free(&m->r);
	free(m);
}
