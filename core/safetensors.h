/* Safetensors: the subset spillway reads and writes (docs/formats.md).
 *
 * A file is: u64 little-endian header length N, N bytes of JSON header, then the data region.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte
 * offsets into the data region) and may carry "__metadata__" (string -> string). spillway
 * reads F32, BF16 and F16 and validates every field: header length inside the file, JSON types,
 * shape x dtype size = end - begin, ranges inside the data region and not overlapping.
 *
 * Reading is zero-copy from an mmap of the file. Writing is streaming and atomic: declare every
 * tensor, then write the data in declaration order (in pieces of any size, e.g. one layer at a
 * time), then finish; everything goes to DIR.tmp-XXXXXX, which is renamed to DIR at the end, so
 * no error leaves a half-written DIR behind. */
#ifndef SW_CORE_SAFETENSORS_H
#define SW_CORE_SAFETENSORS_H
#include <stdint.h>
#include "core/config.h"
#include "core/dtype.h"

#define SW_ST_MAX_DIM 8
#define SW_ST_MAX_HEADER (100ull << 20)   /* as the reference implementation */

typedef struct sw_st_tensor {
	char *name;
	sw_dtype dtype;
	int ndim;
	int64_t shape[SW_ST_MAX_DIM];
	int64_t numel;
	uint64_t begin, end;         /* byte range in the data region */
} sw_st_tensor;

typedef struct sw_st_file {
	char *path;                  /* names the file in messages */
	const uint8_t *base;         /* the whole file */
	uint64_t size;
	uint64_t data_off;           /* 8 + header length: where the data region starts */
	sw_st_tensor *t;             /* in header order */
	int n;
	int mapped;                  /* base is our mmap (sw_st_close unmaps it) */
} sw_st_file;

/* Parses and validates a whole file image held in memory (buf stays owned by the caller and
 * must outlive f). 'what' names it in messages. Returns 0, or -EINVAL after one error line. */
int sw_st_parse(sw_st_file *f, const uint8_t *buf, uint64_t size, const char *what);
/* mmaps and parses PATH. Returns 0 or -errno (one error line printed). */
int sw_st_open(sw_st_file *f, const char *path);
void sw_st_close(sw_st_file *f);
/* Index of a tensor by name, -1 when absent. */
int sw_st_find(const sw_st_file *f, const char *name);
static inline const void *sw_st_data(const sw_st_file *f, const sw_st_tensor *t)
{
	return f->base + f->data_off + t->begin;
}

/* Drops the pages of bytes [begin, end) of t's data from this process's resident set (the file
 * stays in the page cache; a later read faults them back in). For streaming reads. */
void sw_st_release(const sw_st_file *f, const sw_st_tensor *t, uint64_t begin, uint64_t end);

/* Converts n elements (F32/BF16/F16 in any direction; to BF16/F16 rounds to nearest even). */
void sw_convert(void *dst, sw_dtype dst_dtype, const void *src, sw_dtype src_dtype, int64_t n);

/* ---- writer ---- */
typedef struct sw_st_writer sw_st_writer;

/* Starts writing Hugging Face directory DIR (which must not exist, or be empty). Output is
 * split into shards of at most max_shard_bytes of tensor data (a larger tensor gets a shard of
 * its own); 0 means one file. Returns 0 or -errno (message printed). */
int sw_st_writer_begin(sw_st_writer **w, const char *dir, uint64_t max_shard_bytes);
/* Declares the next tensor. All declarations come before the first write. */
int sw_st_writer_declare(sw_st_writer *w, const char *name, sw_dtype dtype, int ndim,
			 const int64_t *shape);
/* Appends n elements of the data stream (the declared tensors back to back, in declaration
 * order), converting from src_dtype to each tensor's declared dtype. Returns 0 or -errno. */
int sw_st_writer_write(sw_st_writer *w, const void *src, sw_dtype src_dtype, int64_t n);
/* Writes config.json from cfg (unless NULL) and model.safetensors.index.json when sharded,
 * fsyncs, renames DIR.tmp-XXXXXX to DIR. Frees w; on error removes the temporary directory. */
int sw_st_writer_finish(sw_st_writer *w, const sw_config *cfg);
/* Gives up: removes the temporary directory and frees w. */
void sw_st_writer_abort(sw_st_writer *w);
#endif
