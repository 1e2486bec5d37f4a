/* Hugging Face model directories: open (config + safetensors + checks against the table), read
 * tensors and layer-major groups, start a writer for the table. */
#include "core/hfmodel.h"
#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Shard file names of the index, deduplicated, in first-seen order. A name must be a plain file
 * name in DIR (no '/', no leading '.'). */
static int read_index(const char *path, char ***names, int *n, json_t **map_out)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	*names = NULL;
	*n = 0;
	*map_out = NULL;
	if (!root) {
		sw_error("%s: not valid JSON (line %d: %s); re-download or re-export the model", path,
			 jerr.line, jerr.text);
		return -EINVAL;
	}
	json_t *map = json_object_get(root, "weight_map");
	if (!json_is_object(map) || json_object_size(map) == 0) {
		sw_error("%s: field 'weight_map' must be a non-empty object; re-download or re-export "
			 "the model", path);
		json_decref(root);
		return -EINVAL;
	}
	char **v = calloc(json_object_size(map), sizeof(char *));
	if (!v) {
		json_decref(root);
		return -ENOMEM;
	}
	const char *key;
	json_t *val;
	int rc = 0;
	json_object_foreach(map, key, val) {
		if (!json_is_string(val)) {
			sw_error("%s: weight_map['%.80s'] is not a string; re-download or re-export the model",
				 path, key);
			rc = -EINVAL;
			break;
		}
		const char *f = json_string_value(val);
		if (!f[0] || f[0] == '.' || strchr(f, '/') || strlen(f) > 255) {
			sw_error("%s: weight_map['%.80s'] = '%.80s' is not a file name in the model "
				 "directory; fix the index", path, key, f);
			rc = -EINVAL;
			break;
		}
		int seen = 0;
		for (int i = 0; i < *n && !seen; i++)
			seen = !strcmp(v[i], f);
		if (!seen && !(v[(*n)++] = strdup(f))) {
			rc = -ENOMEM;
			break;
		}
	}
	if (rc) {
		for (int i = 0; i < *n; i++)
			free(v[i]);
		free(v);
		*n = 0;
		json_decref(root);
		return rc;
	}
	*names = v;
	json_incref(map);
	*map_out = map;
	json_decref(root);
	return 0;
}

static void fmt_shape(const int64_t *s, int nd, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < nd && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)s[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

static int is_ignorable(const char *name)
{
	/* non-persistent RoPE buffer that some old conversions stored */
	const char *suf = ".rotary_emb.inv_freq";
	size_t n = strlen(name), k = strlen(suf);
	return n > k && !strcmp(name + n - k, suf);
}

/* Every file entry: a known tensor of the right shape (bound once), or an accepted extra. */
static int match_table(sw_hf_model *m, const char *dir)
{
	sw_table *tt = &m->tt;
	for (int i = 0; i < tt->n; i++)
		m->loc[i].file = -1;
	for (int f = 0; f < m->nfiles; f++) {
		const sw_st_file *sf = &m->files[f];
		for (int k = 0; k < sf->n; k++) {
			const sw_st_tensor *e = &sf->t[k];
			int ti = sw_table_find(tt, e->name);
			if (ti < 0) {
				if (m->cfg.tie_embeddings && !strcmp(e->name, "lm_head.weight") &&
				    e->ndim == 2 && e->shape[0] == m->cfg.vocab && e->shape[1] == m->cfg.dim) {
					m->ignored_lm_head = 1;
					continue;
				}
				if (is_ignorable(e->name))
					continue;
				sw_error("%s: unknown tensor '%.80s' (not part of a %s model with this "
					 "config.json); check that config.json belongs to these weights",
					 sf->path, e->name, m->cfg.model_type);
				return -EINVAL;
			}
			const sw_tensor *t = &tt->t[ti];
			if (m->loc[ti].file >= 0) {
				sw_error("%s: tensor '%s' is also in %s; the checkpoint is inconsistent",
					 sf->path, e->name, m->files[m->loc[ti].file].path);
				return -EINVAL;
			}
			int ok = e->ndim == t->ndim && e->shape[0] == t->shape[0] &&
				 (t->ndim == 1 || e->shape[1] == t->shape[1]);
			if (!ok) {
				char a[96], b[96];
				fmt_shape(e->shape, e->ndim, a, sizeof(a));
				fmt_shape(t->shape, t->ndim, b, sizeof(b));
				sw_error("%s: tensor '%s' has shape %s but config.json implies %s; check that "
					 "config.json belongs to these weights", sf->path, e->name, a, b);
				return -EINVAL;
			}
			m->loc[ti].file = f;
			m->loc[ti].idx = k;
		}
	}
	for (int i = 0; i < tt->n; i++) {
		if (m->loc[i].file < 0) {
			sw_error("%s: tensor '%s' is missing from the checkpoint; the model is incomplete "
				 "or config.json does not match it", dir, tt->t[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

int sw_hf_open(sw_hf_model *m, const char *dir)
{
	int rc;
	char path[4200];
	char **names = NULL;
	int nnames = 0;
	json_t *map = NULL;
	memset(m, 0, sizeof(*m));
	if ((rc = sw_config_load(&m->cfg, dir)))
		return rc;
	if ((rc = sw_table_build(&m->tt, &m->cfg)))
		return rc;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	if (file_exists(path)) {       /* HF prefers the single file too */
		names = calloc(1, sizeof(char *));
		if (!names || !(names[0] = strdup("model.safetensors"))) {
			rc = -ENOMEM;
			goto err_close;
		}
		nnames = 1;
	} else {
		snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
		if (!file_exists(path)) {
			sw_error("%s: neither model.safetensors nor model.safetensors.index.json is there; "
				 "spillway reads safetensors checkpoints (convert .bin files first)", dir);
			rc = -ENOENT;
			goto err_close;
		}
		if ((rc = read_index(path, &names, &nnames, &map)))
			goto err_close;
	}
	m->files = calloc((size_t)nnames, sizeof(sw_st_file));
	m->loc = calloc((size_t)m->tt.n, sizeof(sw_hf_loc));
	if (!m->files || !m->loc) {
		rc = -ENOMEM;
		goto err_close;
	}
	for (int i = 0; i < nnames; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if ((rc = sw_st_open(&m->files[i], path)))
			goto err_close;
		m->nfiles++;
	}
	if (map) {   /* the index and the shards must agree, both ways */
		const char *key;
		json_t *val;
		json_object_foreach(map, key, val) {
			int f = 0;
			while (strcmp(names[f], json_string_value(val)))
				f++;
			if (sw_st_find(&m->files[f], key) < 0) {
				sw_error("%s/model.safetensors.index.json: tensor '%.80s' is listed in %s, "
					 "which does not hold it; the checkpoint is inconsistent", dir, key,
					 names[f]);
				rc = -EINVAL;
				goto err_close;
			}
		}
		for (int f = 0; f < m->nfiles; f++)
			for (int k = 0; k < m->files[f].n; k++)
				if (!json_object_get(map, m->files[f].t[k].name)) {
					sw_error("%s: tensor '%.80s' is not in model.safetensors.index.json; "
						 "the checkpoint is inconsistent", m->files[f].path,
						 m->files[f].t[k].name);
					rc = -EINVAL;
					goto err_close;
				}
	}
	if ((rc = match_table(m, dir)))
		goto err_close;
	for (int i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	json_decref(map);
	return 0;
err_close:
	for (int i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	json_decref(map);
	sw_hf_close(m);
	return rc;
}

void sw_hf_close(sw_hf_model *m)
{
	for (int i = 0; i < m->nfiles; i++)
		sw_st_close(&m->files[i]);
	free(m->files);
	free(m->loc);
	sw_table_free(&m->tt);
	memset(m, 0, sizeof(*m));
}

const sw_st_tensor *sw_hf_entry(const sw_hf_model *m, int ti)
{
	SW_ASSERT(ti >= 0 && ti < m->tt.n);
	return &m->files[m->loc[ti].file].t[m->loc[ti].idx];
}

void sw_hf_read_tensor(const sw_hf_model *m, int ti, void *dst, sw_dtype dst_dtype)
{
	const sw_st_tensor *e = sw_hf_entry(m, ti);
	const sw_st_file *f = &m->files[m->loc[ti].file];
	sw_convert(dst, dst_dtype, sw_st_data(f, e), e->dtype, e->numel);
}

void sw_hf_read_group(const sw_hf_model *m, int g, void *dst, sw_dtype dst_dtype)
{
	SW_ASSERT(g >= 0 && g < m->tt.ngroups);
	const sw_group *gr = &m->tt.g[g];
	for (int i = gr->first; i < gr->first + gr->count; i++)
		sw_hf_read_tensor(m, i, (uint8_t *)dst + m->tt.t[i].offset * sw_dtype_size(dst_dtype),
				  dst_dtype);
}

void sw_hf_read_range(const sw_hf_model *m, int g, int64_t off, int64_t n, void *dst,
		      sw_dtype dst_dtype)
{
	SW_ASSERT(g >= 0 && g < m->tt.ngroups && off >= 0 && n >= 0 && off + n <= m->tt.g[g].numel);
	const sw_group *gr = &m->tt.g[g];
	size_t dsz = sw_dtype_size(dst_dtype);
	for (int i = gr->first; i < gr->first + gr->count; i++) {
		const sw_tensor *t = &m->tt.t[i];
		int64_t a = t->offset, b = a + t->numel;      /* the tensor in group elements */
		int64_t lo = a > off ? a : off, hi = b < off + n ? b : off + n;
		if (lo >= hi)
			continue;
		const sw_st_tensor *e = sw_hf_entry(m, i);
		const sw_st_file *f = &m->files[m->loc[i].file];
		size_t ssz = sw_dtype_size(e->dtype);
		uint64_t sb = (uint64_t)(lo - a) * ssz, se = (uint64_t)(hi - a) * ssz;
		sw_convert((uint8_t *)dst + (size_t)(lo - off) * dsz, dst_dtype,
			   (const uint8_t *)sw_st_data(f, e) + sb, e->dtype, hi - lo);
		sw_st_release(f, e, sb, se);
	}
}

int sw_hf_write_begin(sw_st_writer **w, const char *dir, const sw_table *tt, sw_dtype dtype,
		      uint64_t max_shard_bytes)
{
	int rc = sw_st_writer_begin(w, dir, max_shard_bytes);
	if (rc)
		return rc;
	for (int i = 0; i < tt->n && !rc; i++)
		rc = sw_st_writer_declare(*w, tt->t[i].name, dtype, tt->t[i].ndim, tt->t[i].shape);
	if (rc) {
		sw_st_writer_abort(*w);
		*w = NULL;
	}
	return rc;
}
