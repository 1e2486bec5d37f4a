/* Helper for tests/ref/hf_roundtrip.py: exercises spillway's safetensors reader and writer on
 * checkpoints that Hugging Face transformers wrote (and the other way round).
 *
 *   st_copy copy SRC DST [MAX_SHARD_BYTES]   read SRC with sw_hf_open, write every tensor (in its
 *                                            stored dtype) with the streaming writer, config too
 *   st_copy f32 SRC OUT.bin                  every group read with sw_hf_read_group as fp32,
 *                                            groups back to back (the table's layer-major order)
 *   st_copy inv-freq SRC                     sw_config_rope_inv_freq, one fp32 bit pattern a line
 * Exit 0 on success, 1 on error (message printed). */
#include "core/hfmodel.h"
#include "core/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int do_copy(const char *src, const char *dst, uint64_t max_shard)
{
	sw_hf_model m;
	if (sw_hf_open(&m, src))
		return 1;
	sw_st_writer *w;
	int rc = sw_st_writer_begin(&w, dst, max_shard);
	for (int i = 0; i < m.tt.n && !rc; i++) {
		const sw_st_tensor *e = sw_hf_entry(&m, i);
		rc = sw_st_writer_declare(w, m.tt.t[i].name, e->dtype, e->ndim, e->shape);
	}
	/* one group at a time, as an exporter streams them */
	for (int g = 0; g < m.tt.ngroups && !rc; g++) {
		const sw_group *gr = &m.tt.g[g];
		for (int i = gr->first; i < gr->first + gr->count && !rc; i++) {
			const sw_st_tensor *e = sw_hf_entry(&m, i);
			rc = sw_st_writer_write(w, sw_st_data(&m.files[m.loc[i].file], e), e->dtype, e->numel);
		}
	}
	if (!rc)
		rc = sw_st_writer_finish(w, &m.cfg);
	else if (w)
		sw_st_writer_abort(w);
	sw_hf_close(&m);
	return rc ? 1 : 0;
}

static int do_f32(const char *src, const char *out)
{
	sw_hf_model m;
	if (sw_hf_open(&m, src))
		return 1;
	float *buf = malloc(sizeof(float) * (size_t)m.tt.max_group_numel);
	FILE *f = fopen(out, "wb");
	int rc = !buf || !f;
	for (int g = 0; g < m.tt.ngroups && !rc; g++) {
		sw_hf_read_group(&m, g, buf, SW_DTYPE_F32);
		rc = fwrite(buf, sizeof(float), (size_t)m.tt.g[g].numel, f) != (size_t)m.tt.g[g].numel;
	}
	if (f && fclose(f))
		rc = 1;
	free(buf);
	sw_hf_close(&m);
	return rc;
}

static int do_inv_freq(const char *src)
{
	sw_config c;
	if (sw_config_load(&c, src))
		return 1;
	float inv[1 << 15];
	sw_config_rope_inv_freq(&c, inv);
	for (int64_t i = 0; i < c.head_dim / 2; i++) {
		uint32_t u;
		memcpy(&u, &inv[i], 4);
		printf("%08" PRIx32 "\n", u);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "copy"))
		return do_copy(argv[2], argv[3], argc > 4 ? strtoull(argv[4], NULL, 10) : 0);
	if (argc == 4 && !strcmp(argv[1], "f32"))
		return do_f32(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "inv-freq"))
		return do_inv_freq(argv[2]);
	fprintf(stderr, "usage: st_copy copy SRC DST [MAX_SHARD] | f32 SRC OUT | inv-freq SRC\n");
	return 2;
}
