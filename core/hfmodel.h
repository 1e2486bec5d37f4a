/* A Hugging Face model directory: config.json plus model.safetensors or the shards named by
 * model.safetensors.index.json, checked against the tensor table (every parameter present with
 * its shape, nothing unknown), read one tensor or one layer-major group at a time. */
#ifndef SW_CORE_HFMODEL_H
#define SW_CORE_HFMODEL_H
#include <stdint.h>
#include "core/config.h"
#include "core/safetensors.h"
#include "core/tensors.h"

typedef struct sw_hf_loc { int file, idx; } sw_hf_loc;

typedef struct sw_hf_model {
	sw_config cfg;
	sw_table tt;
	sw_st_file *files;
	int nfiles;
	sw_hf_loc *loc;          /* per table tensor: which file and which entry holds it */
	int ignored_lm_head;     /* a tied checkpoint carried lm_head.weight (not used) */
} sw_hf_model;

/* Opens DIR: config, table, safetensors (single or sharded), all checks. Returns 0, or -errno
 * after one error line naming the file and the tensor or field. */
int sw_hf_open(sw_hf_model *m, const char *dir);
void sw_hf_close(sw_hf_model *m);
/* The file entry of table tensor ti (its stored dtype, bytes). */
const sw_st_tensor *sw_hf_entry(const sw_hf_model *m, int ti);
/* Copies table tensor ti into dst (numel elements of dst_dtype), converting. */
void sw_hf_read_tensor(const sw_hf_model *m, int ti, void *dst, sw_dtype dst_dtype);
/* Copies every tensor of group g into dst (group numel elements of dst_dtype) at the table's
 * offsets: one contiguous layer-major block, ready for one transfer. */
void sw_hf_read_group(const sw_hf_model *m, int g, void *dst, sw_dtype dst_dtype);
/* Copies elements [off, off + n) of group g's layer-major block into dst (n elements of
 * dst_dtype), then drops the mapped source pages from this process (sw_st_release), so that
 * streaming a checkpoint larger than memory through a small buffer keeps the resident set small. */
void sw_hf_read_range(const sw_hf_model *m, int g, int64_t off, int64_t n, void *dst,
		      sw_dtype dst_dtype);

/* Starts writing the table's tensors (in table order, all in 'dtype') to DIR: then
 * sw_st_writer_write each group's block in group order, and sw_st_writer_finish(w, &tt->cfg)
 * (set tt->cfg.dtype to match first if it should say so in config.json). */
int sw_hf_write_begin(sw_st_writer **w, const char *dir, const sw_table *tt, sw_dtype dtype,
		      uint64_t max_shard_bytes);
#endif
