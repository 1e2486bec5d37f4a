/* The LoRA run directory (offload/lora_train.h): the adapters' save (P32 under PEFT's names, m
 * and v beside them, one safetensors file), RUN/lora.json naming it with its checksums, the
 * data position and the settings. The manifest is replaced atomically after the save is
 * complete, so an interrupted save leaves the previous one in force. */
#include "offload/lora_train.h"
#include "offload/train_int.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const suffix[3] = { "", ".adam_m", ".adam_v" };

void sw_lora_peft_name(char *buf, int len, int l, int k, int ab)
{
	snprintf(buf, (size_t)len, "base_model.model.model.layers.%d.%s.lora_%s.weight", l,
		 sw_lora_module_name(k), ab ? "B" : "A");
}

static int declare(sw_st_writer *w, const sw_lora_layout *lo, int L)
{
	int rc = 0;
	for (int s = 0; s < 3; s++)
		for (int l = 0; l < L; l++)
			for (int k = 0; k < SW_LORA_NTARGETS && !rc; k++) {
				if (!sw_lora_has(lo, k))
					continue;
				char n[160], name[192];
				int64_t sa[2] = { lo->rank, lo->in[k] }, sb[2] = { lo->out[k], lo->rank };
				sw_lora_peft_name(n, sizeof(n), l, k, 0);
				snprintf(name, sizeof(name), "%s%s", n, suffix[s]);
				rc = sw_st_writer_declare(w, name, SW_DTYPE_F32, 2, sa);
				sw_lora_peft_name(n, sizeof(n), l, k, 1);
				snprintf(name, sizeof(name), "%s%s", n, suffix[s]);
				rc = rc ? rc : sw_st_writer_declare(w, name, SW_DTYPE_F32, 2, sb);
			}
	return rc;
}

static int write_adapters(const char *dir, sw_lexec *ex, const sw_lora_layout *lo, int L)
{
	sw_st_writer *w;
	int rc = sw_st_writer_begin(&w, dir, 0);
	if (rc)
		return rc;
	float *buf = malloc((size_t)lo->numel * 4);
	rc = buf ? declare(w, lo, L) : -ENOMEM;
	const sw_state st[3] = { SW_STATE_P32, SW_STATE_M, SW_STATE_V };
	for (int s = 0; s < 3 && !rc; s++)
		for (int l = 0; l < L && !rc; l++) {
			sw_lexec_get_layer(ex, l, st[s], buf);
			rc = sw_st_writer_write(w, buf, SW_DTYPE_F32, lo->numel);
		}
	free(buf);
	if (rc) {
		sw_st_writer_abort(w);
		return rc;
	}
	return sw_st_writer_finish(w, NULL);
}

int sw_lora_run_save(const char *run, sw_lexec *ex, const sw_lora_layout *lo, int L,
		     int64_t step, int64_t skipped, sw_data_pos pos, json_t *settings,
		     char *prev, int prev_len)
{
	char name[64], dir[SW_TRAIN_PATH + 80], file[SW_TRAIN_PATH + 120];
	snprintf(name, sizeof(name), "adapters-%08lld", (long long)step);
	snprintf(dir, sizeof(dir), "%s/%s", run, name);
	if (!strcmp(prev, name))
		return 0;
	train_rm_rf(dir);   /* a leftover of an interrupted save of the same step */
	int rc = write_adapters(dir, ex, lo, L);
	if (rc)
		return rc;
	snprintf(file, sizeof(file), "%s/model.safetensors", dir);
	json_t *sums = NULL;
	uint64_t size = 0;
	if ((rc = train_xxh3_file(file, &sums, &size))) {
		sw_error("train: cannot read back %s (%s)", file, strerror(-rc));
		json_decref(sums);
		return rc;
	}
	json_t *root = json_pack("{s:s,s:I,s:I,s:{s:I,s:I},s:s,s:{s:I,s:o},s:O}",
				 "format", "spillway-lora/1", "step", (json_int_t)step,
				 "skipped", (json_int_t)skipped, "data", "epoch", (json_int_t)pos.epoch,
				 "index", (json_int_t)pos.index, "adapters", name, "file", "size",
				 (json_int_t)size, "xxh3", sums, "settings", settings);
	rc = root ? train_json_write(run, SW_LORA_MANIFEST, root) : -ENOMEM;
	json_decref(root);
	if (rc)
		return rc;
	if (prev[0]) {
		snprintf(dir, sizeof(dir), "%s/%s", run, prev);
		train_rm_rf(dir);
	}
	snprintf(prev, (size_t)prev_len, "%s", name);
	return 0;
}

static int bad(const char *path, const char *what)
{
	sw_error("%s: %s; the run directory is damaged (start a new run, or restore it)", path, what);
	return -EINVAL;
}

int sw_lora_run_read(const char *run, sw_lora_run *r)
{
	char path[SW_TRAIN_PATH + 80], file[SW_TRAIN_PATH + 160];
	memset(r, 0, sizeof(*r));
	snprintf(path, sizeof(path), "%s/%s", run, SW_LORA_MANIFEST);
	json_error_t je;
	r->man = json_load_file(path, 0, &je);
	if (!r->man) {
		sw_error("%s: %s; give the --run directory of a 'spillway train --lora-rank' run that "
			 "saved at least once", path, je.text);
		return -ENOENT;
	}
	json_t *m = r->man, *d = json_object_get(m, "data"), *f = json_object_get(m, "file");
	const char *ad = json_string_value(json_object_get(m, "adapters"));
	if (!ad || strchr(ad, '/') || strlen(ad) >= sizeof(r->adapters) || !json_is_object(d) ||
	    !json_is_object(f) || !json_is_integer(json_object_get(m, "step")))
		return bad(path, "missing or malformed entries");
	snprintf(r->adapters, sizeof(r->adapters), "%s", ad);
	r->step = json_integer_value(json_object_get(m, "step"));
	r->skipped = json_integer_value(json_object_get(m, "skipped"));
	r->pos.epoch = (uint64_t)json_integer_value(json_object_get(d, "epoch"));
	r->pos.index = (uint64_t)json_integer_value(json_object_get(d, "index"));
	snprintf(file, sizeof(file), "%s/%s/model.safetensors", run, ad);
	json_t *sums = NULL;
	uint64_t size = 0;
	int rc = train_xxh3_file(file, &sums, &size);
	if (!rc && (size != (uint64_t)json_integer_value(json_object_get(f, "size")) ||
		    !json_equal(sums, json_object_get(f, "xxh3"))))
		rc = -EBADMSG;
	json_decref(sums);
	if (rc)
		return bad(file, rc == -EBADMSG ? "its checksum does not match lora.json" :
			   "cannot be read");
	return 0;
}

void sw_lora_run_free(sw_lora_run *r)
{
	json_decref(r->man);
	r->man = NULL;
}

int sw_lora_read_layer(const sw_st_file *f, const sw_lora_layout *lo, int l, const char *sfx,
		       float *dst)
{
	for (int k = 0; k < SW_LORA_NTARGETS; k++)
		for (int ab = 0; ab < 2 && sw_lora_has(lo, k); ab++) {
			char n[160], name[192];
			sw_lora_peft_name(n, sizeof(n), l, k, ab);
			snprintf(name, sizeof(name), "%s%s", n, sfx);
			int i = sw_st_find(f, name);
			int64_t want = lo->rank * (ab ? lo->out[k] : lo->in[k]);
			if (i < 0 || f->t[i].dtype != SW_DTYPE_F32 || f->t[i].numel != want) {
				sw_error("%s: tensor %s is missing or not F32 of %lld elements", f->path,
					 name, (long long)want);
				return -EINVAL;
			}
			memcpy(dst + (ab ? lo->off_b[k] : lo->off_a[k]), sw_st_data(f, &f->t[i]),
			       (size_t)want * 4);
		}
	return 0;
}

int sw_lora_run_load(const char *run, const sw_lora_run *r, sw_lexec *ex,
		     const sw_lora_layout *lo, int L)
{
	char file[SW_TRAIN_PATH + 160];
	snprintf(file, sizeof(file), "%s/%s/model.safetensors", run, r->adapters);
	sw_st_file f;
	int rc = sw_st_open(&f, file);
	if (rc)
		return rc;
	float *buf = malloc((size_t)lo->numel * 12);
	rc = buf ? 0 : -ENOMEM;
	for (int l = 0; l < L && !rc; l++) {
		float *s[3] = { buf, buf + lo->numel, buf + 2 * lo->numel };
		for (int i = 0; i < 3 && !rc; i++)
			rc = sw_lora_read_layer(&f, lo, l, suffix[i], s[i]);
		if (!rc)
			sw_lexec_set_layer(ex, l, s[0], s[1], s[2]);
	}
	free(buf);
	sw_st_close(&f);
	return rc;
}
