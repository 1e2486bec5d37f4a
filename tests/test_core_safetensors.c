/* Safetensors: header validation on crafted images (each malformation alone), writer -> reader
 * round trip (single and sharded, f32 and bf16, group reads at the table's offsets), table
 * checks (missing, unknown, wrong shape, tied lm_head), atomic output. */
#include "core/hfmodel.h"
#include "core/safetensors.h"
#include "tests/check.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t img[1 << 16];

/* u64 header length + header + data_len zero bytes; returns the image size. */
static uint64_t make(const char *header, uint64_t data_len)
{
	uint64_t n = strlen(header);
	for (int i = 0; i < 8; i++)
		img[i] = (uint8_t)(n >> (8 * i));
	memcpy(img + 8, header, n);
	memset(img + 8 + n, 0, data_len);
	return 8 + n + data_len;
}

static int parse(const char *header, uint64_t data_len)
{
	sw_st_file f;
	int rc = sw_st_parse(&f, img, make(header, data_len), "img");
	if (!rc)
		sw_st_close(&f);
	return rc;
}

static char tmpdir[64];

static void path_in(char *buf, const char *name) { sprintf(buf, "%s/%s", tmpdir, name); }

static void rm_dir(const char *d)
{
	DIR *dd = opendir(d);
	if (!dd)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(dd)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
			unlink(p);
		}
	closedir(dd);
	rmdir(d);
}

static int count_entries(const char *d)
{
	DIR *dd = opendir(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dd)))
		n += e->d_name[0] != '.';
	closedir(dd);
	return n;
}

static sw_config tiny(int tie)
{
	sw_config c;
	memset(&c, 0, sizeof(c));
	strcpy(c.model_type, "qwen2");
	c.dim = 8;
	c.n_layers = 3;
	c.n_heads = 2;
	c.n_kv_heads = 1;
	c.head_dim = 4;
	c.ffn_dim = 12;
	c.vocab = 10;
	c.max_pos = 64;
	c.rope_theta = 10000;
	c.rms_eps = 1e-6;
	c.attention_bias = 1;
	c.tie_embeddings = tie;
	c.bos_id = c.eos_id = -1;
	return c;
}

/* value of element i of group g: distinct, exact in bf16 for half of them */
static float val(int g, int64_t i) { return (float)(g * 1000 + i) * 0.125f + (i % 2 ? 0.0009765625f : 0); }

/* Writes the table of c to DIR with a generic writer; 'skip' and 'extra' alter the tensor list. */
static int write_model(const char *dir, const sw_config *c, sw_dtype dt, uint64_t max_shard,
		       const char *skip, const char *extra, int64_t wrong_dim)
{
	sw_table tt;
	CHECK(sw_table_build(&tt, c) == 0);
	sw_st_writer *w;
	int rc = sw_st_writer_begin(&w, dir, max_shard);
	if (rc) {
		sw_table_free(&tt);
		return rc;
	}
	for (int i = 0; i < tt.n; i++) {
		if (skip && !strcmp(tt.t[i].name, skip))
			continue;
		int64_t shape[2] = { tt.t[i].shape[0] + (i == 2 ? wrong_dim : 0), tt.t[i].shape[1] };
		CHECK(sw_st_writer_declare(w, tt.t[i].name, dt, tt.t[i].ndim, shape) == 0);
	}
	int64_t extra_shape[2] = { c->vocab, c->dim };
	if (extra)
		CHECK(sw_st_writer_declare(w, extra, dt, 2, extra_shape) == 0);
	float *buf = malloc(sizeof(float) * (size_t)(tt.max_group_numel + c->vocab * c->dim + 64));
	for (int g = 0; g < tt.ngroups; g++) {
		for (int64_t i = 0; i < tt.g[g].numel; i++)
			buf[i] = val(g, i);
		/* in three uneven pieces, minus skipped / resized tensors */
		const sw_group *gr = &tt.g[g];
		for (int k = gr->first; k < gr->first + gr->count; k++) {
			if (skip && !strcmp(tt.t[k].name, skip))
				continue;
			int64_t n = tt.t[k].numel + (k == 2 ? wrong_dim * tt.t[k].shape[1] : 0);
			int64_t a = n / 3;
			CHECK(sw_st_writer_write(w, buf + tt.t[k].offset, SW_DTYPE_F32, a) == 0);
			CHECK(sw_st_writer_write(w, buf + tt.t[k].offset + a, SW_DTYPE_F32, n - a) == 0);
		}
	}
	if (extra) {
		for (int64_t i = 0; i < c->vocab * c->dim; i++)
			buf[i] = val(0, i);
		CHECK(sw_st_writer_write(w, buf, SW_DTYPE_F32, c->vocab * c->dim) == 0);
	}
	free(buf);
	rc = sw_st_writer_finish(w, c);
	sw_table_free(&tt);
	return rc;
}

static void check_read(const char *dir, sw_dtype stored)
{
	sw_hf_model m;
	CHECK(sw_hf_open(&m, dir) == 0);
	float *f = malloc(sizeof(float) * (size_t)m.tt.max_group_numel);
	uint16_t *b = malloc(2 * (size_t)m.tt.max_group_numel);
	for (int g = 0; g < m.tt.ngroups; g++) {
		sw_hf_read_group(&m, g, f, SW_DTYPE_F32);
		sw_hf_read_group(&m, g, b, SW_DTYPE_BF16);
		for (int64_t i = 0; i < m.tt.g[g].numel; i++) {
			float want = stored == SW_DTYPE_F32 ? val(g, i) : sw_round_bf16(val(g, i));
			CHECKF(f[i] == want, "group %d element %lld: %g != %g", g, (long long)i, f[i], want);
			CHECK(b[i] == sw_f32_to_bf16(val(g, i)));
		}
	}
	free(f);
	free(b);
	sw_hf_close(&m);
}

int main(void)
{
	/* ---- header validation ---- */
	const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},"
			 "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
			 "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
			 "\"c\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[32,32]},"
			 "\"d\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]}}";
	CHECK(parse(ok, 44) == 0);
	CHECK(parse(ok, 43) == -EINVAL);                 /* truncated data region */
	sw_st_file f;
	CHECK(sw_st_parse(&f, img, make(ok, 44), "img") == 0);
	CHECK(f.n == 4 && sw_st_find(&f, "b") == 1 && sw_st_find(&f, "zz") == -1);
	CHECK(f.t[0].numel == 6 && f.t[3].ndim == 0 && f.t[3].numel == 1 && f.data_off == 8 + strlen(ok));
	sw_st_close(&f);
	CHECK(sw_st_parse(&f, img, 7, "img") == -EINVAL);               /* shorter than 8 bytes */
	uint64_t n = make(ok, 44);
	img[5] = 1;                                                     /* header length past EOF */
	CHECK(sw_st_parse(&f, img, n, "img") == -EINVAL);
	const char *bad[] = {
		"[1]", "{", "{\"a\":1}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
		"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
		"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}",
		"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
		"{\"__metadata__\":{\"format\":1}}", "{\"__metadata__\":[]}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		" \"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",          /* duplicate */
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		" \"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",         /* overlap */
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
		" \"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}",         /* inside */
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
		"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECKF(parse(bad[i], 64) == -EINVAL, "should be rejected: %s", bad[i]);
	CHECK(parse("{}", 0) == 0);                                     /* empty, valid */
	CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}  ", 12) == 0);  /* hole, padding */

	/* ---- writer -> reader ---- */
	strcpy(tmpdir, "/tmp/sw-test-st-XXXXXX");
	CHECK(mkdtemp(tmpdir));
	char d1[128], d2[128], d3[128], p[256];
	path_in(d1, "single");
	path_in(d2, "sharded");
	path_in(d3, "bad");
	sw_config c = tiny(0);
	CHECK(write_model(d1, &c, SW_DTYPE_F32, 0, NULL, NULL, 0) == 0);
	check_read(d1, SW_DTYPE_F32);
	sprintf(p, "%s/model.safetensors", d1);
	CHECK(access(p, F_OK) == 0 && count_entries(d1) == 2);
	CHECK(write_model(d2, &c, SW_DTYPE_BF16, 300, NULL, NULL, 0) == 0);
	check_read(d2, SW_DTYPE_BF16);
	CHECKF(count_entries(d2) > 5, "expected several shards, got %d files", count_entries(d2) - 2);
	sprintf(p, "%s/model-00001-of-%05d.safetensors", d2, count_entries(d2) - 2);
	CHECK(access(p, F_OK) == 0);
	sw_hf_model m;
	CHECK(sw_hf_open(&m, d2) == 0 && m.nfiles == count_entries(d2) - 2);
	sw_hf_close(&m);
	/* output exists and is not empty: refused, nothing written */
	CHECK(write_model(d1, &c, SW_DTYPE_F32, 0, NULL, NULL, 0) == -EEXIST);
	CHECK(count_entries(tmpdir) == 2);
	/* abort leaves nothing */
	sw_st_writer *w;
	CHECK(sw_st_writer_begin(&w, d3, 0) == 0);
	CHECK(count_entries(tmpdir) == 3);
	sw_st_writer_abort(w);
	CHECK(count_entries(tmpdir) == 2);

	/* ---- table checks ---- */
	CHECK(write_model(d3, &c, SW_DTYPE_F32, 0, "model.layers.1.mlp.up_proj.weight", NULL, 0) == 0);
	CHECK(sw_hf_open(&m, d3) == -EINVAL);                           /* missing */
	rm_dir(d3);
	CHECK(write_model(d3, &c, SW_DTYPE_F32, 0, NULL, "model.layers.9.mlp.up_proj.weight", 0) == 0);
	CHECK(sw_hf_open(&m, d3) == -EINVAL);                           /* unknown */
	rm_dir(d3);
	CHECK(write_model(d3, &c, SW_DTYPE_F32, 0, NULL, NULL, 1) == 0);
	CHECK(sw_hf_open(&m, d3) == -EINVAL);                           /* wrong shape */
	rm_dir(d3);
	sw_config ct = tiny(1);
	CHECK(write_model(d3, &ct, SW_DTYPE_F32, 0, NULL, "lm_head.weight", 0) == 0);
	CHECK(sw_hf_open(&m, d3) == 0 && m.ignored_lm_head == 1);      /* tied + lm_head: accepted */
	CHECK(m.tt.n == 2 + 3 * 12);
	sw_hf_close(&m);
	rm_dir(d3);
	CHECK(write_model(d3, &ct, SW_DTYPE_F32, 0, NULL, NULL, 0) == 0);
	sprintf(p, "%s/config.json", d3);
	CHECK(unlink(p) == 0);
	CHECK(sw_hf_open(&m, d3) == -ENOENT);                           /* no config.json */
	rm_dir(d3);
	rm_dir(d1);
	rm_dir(d2);
	rmdir(tmpdir);
	return 0;
}
