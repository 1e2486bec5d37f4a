/* Safetensors reader (validating, mmap) and streaming, atomic, sharded writer. */
#include "core/safetensors.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ conversion */

void sw_convert(void *dst, sw_dtype dt, const void *src, sw_dtype st, int64_t n)
{
	if (dt == st) {
		memcpy(dst, src, (size_t)n * (size_t)sw_dtype_size(dt));
		return;
	}
	const uint16_t *s16 = src;
	const float *s32 = src;
	for (int64_t i = 0; i < n; i++) {
		float f = st == SW_DTYPE_F32 ? s32[i] : st == SW_DTYPE_BF16 ? sw_bf16_to_f32(s16[i])
						      : sw_f16_to_f32(s16[i]);
		if (dt == SW_DTYPE_F32)
			((float *)dst)[i] = f;
		else if (dt == SW_DTYPE_BF16)
			((uint16_t *)dst)[i] = sw_f32_to_bf16(f);
		else
			((uint16_t *)dst)[i] = sw_f32_to_f16(f);
	}
}

/* ------------------------------------------------------------------ reader */

static int parse_dtype(const char *s, sw_dtype *out)
{
	if (!strcmp(s, "F32"))
		*out = SW_DTYPE_F32;
	else if (!strcmp(s, "BF16"))
		*out = SW_DTYPE_BF16;
	else if (!strcmp(s, "F16"))
		*out = SW_DTYPE_F16;
	else
		return -EINVAL;
	return 0;
}

#define BAD(...) do { sw_error(__VA_ARGS__); rc = -EINVAL; goto err_free; } while (0)
#define CORRUPT "the file is corrupt: re-download or re-export it"

static int cmp_begin(const void *a, const void *b, void *arg)
{
	const sw_st_tensor *t = arg;
	const sw_st_tensor *x = &t[*(const int *)a], *y = &t[*(const int *)b];
	return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static void free_tensors(sw_st_file *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->t[i].name);
	free(f->t);
	f->t = NULL;
	f->n = 0;
}

/* One header entry: {"dtype": s, "shape": [ints], "data_offsets": [b, e]}. */
static int parse_entry(sw_st_file *f, const char *what, const char *name, json_t *v,
		       uint64_t data_len, sw_st_tensor *t)
{
	int rc = 0;
	if (!json_is_object(v)) {
		sw_error("%s: tensor '%.80s': entry is not an object; " CORRUPT, what, name);
		return -EINVAL;
	}
	const char *key;
	json_t *x;
	json_object_foreach(v, key, x) {
		if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets")) {
			sw_error("%s: tensor '%.80s': unknown field '%.40s'; " CORRUPT, what, name, key);
			return -EINVAL;
		}
	}
	json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape");
	json_t *off = json_object_get(v, "data_offsets");
	if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) || json_array_size(off) != 2) {
		sw_error("%s: tensor '%.80s': needs dtype (string), shape (array) and data_offsets "
			 "(array of 2); " CORRUPT, what, name);
		return -EINVAL;
	}
	if (parse_dtype(json_string_value(dt), &t->dtype)) {
		sw_error("%s: tensor '%.80s': dtype '%.20s' is not supported (spillway reads F32, BF16, "
			 "F16); convert the checkpoint", what, name, json_string_value(dt));
		return -EINVAL;
	}
	size_t nd = json_array_size(sh);
	if (nd > SW_ST_MAX_DIM) {
		sw_error("%s: tensor '%.80s': %zu dimensions, more than %d; " CORRUPT, what, name, nd,
			 SW_ST_MAX_DIM);
		return -EINVAL;
	}
	t->ndim = (int)nd;
	uint64_t numel = 1;
	for (size_t i = 0; i < nd; i++) {
		json_t *d = json_array_get(sh, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0) {
			sw_error("%s: tensor '%.80s': shape[%zu] is not a non-negative integer; " CORRUPT,
				 what, name, i);
			return -EINVAL;
		}
		t->shape[i] = json_integer_value(d);
		if (__builtin_mul_overflow(numel, (uint64_t)t->shape[i], &numel) || numel > (1ull << 60)) {
			sw_error("%s: tensor '%.80s': shape is too large; " CORRUPT, what, name);
			return -EINVAL;
		}
	}
	t->numel = (int64_t)numel;
	json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
	if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
	    json_integer_value(e) < json_integer_value(b)) {
		sw_error("%s: tensor '%.80s': data_offsets must be two integers 0 <= begin <= end; " CORRUPT,
			 what, name);
		return -EINVAL;
	}
	t->begin = (uint64_t)json_integer_value(b);
	t->end = (uint64_t)json_integer_value(e);
	uint64_t bytes = numel * (uint64_t)sw_dtype_size(t->dtype);
	if (t->end - t->begin != bytes) {
		sw_error("%s: tensor '%.80s': %s shape of %llu elements needs %llu bytes, data_offsets "
			 "[%llu, %llu] hold %llu; " CORRUPT, what, name, sw_dtype_name(t->dtype),
			 (unsigned long long)numel, (unsigned long long)bytes,
			 (unsigned long long)t->begin, (unsigned long long)t->end,
			 (unsigned long long)(t->end - t->begin));
		return -EINVAL;
	}
	if (t->end > data_len) {
		sw_error("%s: tensor '%.80s': data_offsets [%llu, %llu] run past the data region (%llu "
			 "bytes); the file is truncated: re-download or re-export it", what, name,
			 (unsigned long long)t->begin, (unsigned long long)t->end,
			 (unsigned long long)data_len);
		return -EINVAL;
	}
	t->name = strdup(name);
	if (!t->name)
		return -ENOMEM;
	(void)f;
	return rc;
}

int sw_st_parse(sw_st_file *f, const uint8_t *buf, uint64_t size, const char *what)
{
	int rc = 0;
	json_t *root = NULL;
	int *order = NULL;
	memset(f, 0, sizeof(*f));
	f->base = buf;
	f->size = size;
	if (size < 8) {
		sw_error("%s: %llu bytes, too short for a safetensors header; the file is truncated: "
			 "re-download or re-export it", what, (unsigned long long)size);
		return -EINVAL;
	}
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	if (hlen > size - 8) {
		sw_error("%s: header length %llu runs past the end of the file (%llu bytes); the file is "
			 "truncated or not safetensors", what, (unsigned long long)hlen,
			 (unsigned long long)size);
		return -EINVAL;
	}
	if (hlen > SW_ST_MAX_HEADER || hlen < 2) {
		sw_error("%s: header length %llu is outside [2, %llu]; not a safetensors file", what,
			 (unsigned long long)hlen, SW_ST_MAX_HEADER);
		return -EINVAL;
	}
	f->data_off = 8 + hlen;
	uint64_t data_len = size - f->data_off;
	json_error_t jerr;
	root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		BAD("%s: header is not valid JSON (%s at byte %d); " CORRUPT, what, jerr.text, jerr.position);
	if (!json_is_object(root))
		BAD("%s: header is not a JSON object; " CORRUPT, what);
	size_t cap = json_object_size(root);
	f->t = calloc(cap ? cap : 1, sizeof(sw_st_tensor));
	if (!f->t) {
		rc = -ENOMEM;
		goto err_free;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (!strcmp(key, "__metadata__")) {
			const char *k2;
			json_t *v2;
			if (!json_is_object(v))
				BAD("%s: __metadata__ is not an object; " CORRUPT, what);
			json_object_foreach(v, k2, v2)
				if (!json_is_string(v2))
					BAD("%s: __metadata__ '%.40s' is not a string; " CORRUPT, what, k2);
			continue;
		}
		if (!key[0])
			BAD("%s: a tensor has an empty name; " CORRUPT, what);
		rc = parse_entry(f, what, key, v, data_len, &f->t[f->n]);
		if (rc)
			goto err_free;
		f->n++;
	}
	/* No two non-empty ranges may overlap: sort by begin, compare neighbours. */
	order = malloc(sizeof(int) * (size_t)(f->n ? f->n : 1));
	if (!order) {
		rc = -ENOMEM;
		goto err_free;
	}
	int m = 0;
	for (int i = 0; i < f->n; i++)
		if (f->t[i].end > f->t[i].begin)
			order[m++] = i;
	qsort_r(order, (size_t)m, sizeof(int), cmp_begin, f->t);
	for (int i = 1; i < m; i++) {
		const sw_st_tensor *a = &f->t[order[i - 1]], *b = &f->t[order[i]];
		if (b->begin < a->end)
			BAD("%s: tensors '%.80s' [%llu, %llu] and '%.80s' [%llu, %llu] overlap; " CORRUPT,
			    what, a->name, (unsigned long long)a->begin, (unsigned long long)a->end,
			    b->name, (unsigned long long)b->begin, (unsigned long long)b->end);
	}
	free(order);
	json_decref(root);
	return 0;
err_free:
	free(order);
	json_decref(root);
	free_tensors(f);
	return rc;
}

int sw_st_open(sw_st_file *f, const char *path)
{
	memset(f, 0, sizeof(*f));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		sw_error("%s: cannot open (%s); check the model directory", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		sw_error("%s: cannot stat (%s)", path, strerror(e));
		return -e;
	}
	uint64_t size = (uint64_t)st.st_size;
	void *p = NULL;
	if (size > 0) {
		p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			int e = errno;
			close(fd);
			sw_error("%s: cannot mmap (%s)", path, strerror(e));
			return -e;
		}
	}
	close(fd);
	static const uint8_t empty[1];
	int rc = sw_st_parse(f, p ? p : empty, size, path);
	if (rc) {
		if (p)
			munmap(p, (size_t)size);
		memset(f, 0, sizeof(*f));
		return rc;
	}
	f->mapped = p != NULL;
	f->path = strdup(path);
	if (!f->path) {
		sw_st_close(f);
		return -ENOMEM;
	}
	return 0;
}

void sw_st_close(sw_st_file *f)
{
	if (f->mapped)
		munmap((void *)f->base, (size_t)f->size);
	free_tensors(f);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

void sw_st_release(const sw_st_file *f, const sw_st_tensor *t, uint64_t begin, uint64_t end)
{
	if (!f->mapped || begin >= end)
		return;
	/* whole pages inside the range only: a page shared with a neighbour stays (it costs at
	 * most two pages per call) */
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)sw_st_data(f, t) + begin, b = (uintptr_t)sw_st_data(f, t) + end;
	a = (a + pg - 1) / pg * pg;
	b = b / pg * pg;
	if (a < b)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

int sw_st_find(const sw_st_file *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (!strcmp(f->t[i].name, name))
			return i;
	return -1;
}

/* ------------------------------------------------------------------ writer */

typedef struct wtensor {
	char *name;
	sw_dtype dtype;
	int ndim;
	int64_t shape[SW_ST_MAX_DIM];
	int64_t numel;
	uint64_t bytes, begin;     /* begin: within its shard's data region */
	int shard;
} wtensor;

struct sw_st_writer {
	char *dir, *tmp;
	uint64_t max_shard;
	wtensor *t;
	int n, cap;
	int nshards, laid_out;
	int cur;                   /* tensor being written */
	int64_t cur_done;          /* elements of it written */
	int fd, fd_shard;          /* open shard file and its number (-1 none) */
	int failed;
	uint8_t *stage;            /* conversion staging buffer */
};

#define STAGE_BYTES (4u << 20)

static int write_all(int fd, const void *p, uint64_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : (size_t)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		n -= (uint64_t)w;
	}
	return 0;
}

static int rm_tree(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *e;
	char p[4200];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		unlink(p);
	}
	closedir(d);
	return rmdir(path) ? -errno : 0;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int sw_st_writer_begin(sw_st_writer **out, const char *dir, uint64_t max_shard_bytes)
{
	*out = NULL;
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (len == 0 || len > 4000) {
		sw_error("'%s': not a usable output directory name", dir);
		return -EINVAL;
	}
	sw_st_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->fd_shard = -1;
	w->max_shard = max_shard_bytes;
	w->dir = strndup(dir, len);
	w->tmp = calloc(1, len + 16);   /* empty until mkdtemp: abort removes nothing */
	w->stage = malloc(STAGE_BYTES);
	if (!w->dir || !w->tmp || !w->stage) {
		sw_st_writer_abort(w);
		return -ENOMEM;
	}
	DIR *d = opendir(w->dir);
	if (d) {
		struct dirent *e;
		int nonempty = 0;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				nonempty = 1;
		closedir(d);
		if (nonempty) {
			sw_error("%s: already exists and is not empty; remove it or choose another output "
				 "directory", w->dir);
			sw_st_writer_abort(w);
			return -EEXIST;
		}
	} else if (errno != ENOENT) {
		int e = errno;
		sw_error("%s: exists but is not a usable directory (%s); choose another output directory",
			 w->dir, strerror(e));
		sw_st_writer_abort(w);
		return -e;
	}
	snprintf(w->tmp, len + 16, "%s.tmp-XXXXXX", w->dir);
	if (!mkdtemp(w->tmp)) {
		int e = errno;
		sw_error("%s: cannot create a directory next to it (%s); check that the parent exists and "
			 "is writable", w->dir, strerror(e));
		w->tmp[0] = 0;
		sw_st_writer_abort(w);
		return -e;
	}
	mode_t um = umask(0);   /* mkdtemp makes 0700; the model directory gets the usual mode */
	umask(um);
	chmod(w->tmp, 0777 & ~um);
	*out = w;
	return 0;
}

int sw_st_writer_declare(sw_st_writer *w, const char *name, sw_dtype dtype, int ndim,
			 const int64_t *shape)
{
	SW_ASSERT(!w->laid_out && ndim >= 0 && ndim <= SW_ST_MAX_DIM);
	if (w->n == w->cap) {
		int cap = w->cap ? 2 * w->cap : 256;
		wtensor *nt = realloc(w->t, sizeof(wtensor) * (size_t)cap);
		if (!nt)
			return -ENOMEM;
		w->t = nt;
		w->cap = cap;
	}
	wtensor *t = &w->t[w->n];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return -ENOMEM;
	t->dtype = dtype;
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++) {
		SW_ASSERT(shape[i] >= 0);
		t->shape[i] = shape[i];
		t->numel *= shape[i];
	}
	t->bytes = (uint64_t)t->numel * (uint64_t)sw_dtype_size(dtype);
	w->n++;
	return 0;
}

static void shard_name(const sw_st_writer *w, int s, char *buf, size_t len)
{
	if (w->nshards == 1)
		snprintf(buf, len, "model.safetensors");
	else
		snprintf(buf, len, "model-%05d-of-%05d.safetensors", s + 1, w->nshards);
}

/* Assigns tensors to shards (greedy: a new shard when the next tensor would pass the limit). */
static void layout(sw_st_writer *w)
{
	uint64_t used = 0;
	int s = 0;
	for (int i = 0; i < w->n; i++) {
		wtensor *t = &w->t[i];
		if (w->max_shard && used > 0 && used + t->bytes > w->max_shard) {
			s++;
			used = 0;
		}
		t->shard = s;
		t->begin = used;
		used += t->bytes;
	}
	w->nshards = s + 1;
	w->laid_out = 1;
}

static int open_shard(sw_st_writer *w, int s)
{
	char name[64], path[4200];
	shard_name(w, s, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", w->tmp, name);
	json_t *h = json_object();
	json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
	for (int i = 0; i < w->n; i++) {
		const wtensor *t = &w->t[i];
		if (t->shard != s)
			continue;
		json_t *shape = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_object_set_new(h, t->name,
				    json_pack("{s:s, s:o, s:[I,I]}", "dtype", sw_dtype_name(t->dtype),
					      "shape", shape, "data_offsets", (json_int_t)t->begin,
					      (json_int_t)(t->begin + t->bytes)));
	}
	char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	if (!text)
		return -ENOMEM;
	uint64_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;
	uint8_t *hdr = malloc(8 + padded);
	if (!hdr) {
		free(text);
		return -ENOMEM;
	}
	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(padded >> (8 * i));
	memcpy(hdr + 8, text, hlen);
	memset(hdr + 8 + hlen, ' ', padded - hlen);   /* padding the reference writer uses too */
	free(text);
	int rc = 0;
	w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0)
		rc = -errno;
	else
		rc = write_all(w->fd, hdr, 8 + padded);
	free(hdr);
	if (rc) {
		sw_error("%s: cannot write (%s); check free space and permissions", path, strerror(-rc));
		return rc;
	}
	w->fd_shard = s;
	return 0;
}

static int close_shard(sw_st_writer *w)
{
	if (w->fd < 0)
		return 0;
	int rc = fsync(w->fd) ? -errno : 0;
	if (close(w->fd) && !rc)
		rc = -errno;
	w->fd = -1;
	if (rc)
		sw_error("%s: cannot write shard %d (%s); check free space", w->tmp, w->fd_shard + 1,
			 strerror(-rc));
	return rc;
}

/* Makes sure the shard of tensor w->cur is open (skipping completed empty tensors). */
static int ensure_shard(sw_st_writer *w)
{
	if (!w->laid_out)
		layout(w);
	if (w->cur >= w->n)
		return 0;
	int s = w->t[w->cur].shard;
	if (w->fd_shard == s && w->fd >= 0)
		return 0;
	int rc = close_shard(w);
	if (rc)
		return rc;
	return open_shard(w, s);
}

int sw_st_writer_write(sw_st_writer *w, const void *src, sw_dtype st, int64_t n)
{
	const uint8_t *p = src;
	int es = sw_dtype_size(st), rc = 0;
	if (w->failed)
		return -EIO;
	if (!w->laid_out)
		layout(w);
	while (n > 0 || (w->cur < w->n && w->t[w->cur].numel == 0)) {
		SW_ASSERT(w->cur < w->n);   /* more data than declared */
		wtensor *t = &w->t[w->cur];
		if ((rc = ensure_shard(w)))
			goto err;
		int64_t take = t->numel - w->cur_done;
		if (take > n)
			take = n;
		if (t->dtype == st) {
			rc = write_all(w->fd, p, (uint64_t)take * (uint64_t)es);
		} else {
			int64_t per = STAGE_BYTES / 4;
			for (int64_t i = 0; i < take && !rc; i += per) {
				int64_t k = take - i < per ? take - i : per;
				sw_convert(w->stage, t->dtype, p + i * es, st, k);
				rc = write_all(w->fd, w->stage, (uint64_t)k * (uint64_t)sw_dtype_size(t->dtype));
			}
		}
		if (rc) {
			sw_error("%s: write failed in tensor '%s' (%s); check free space", w->tmp, t->name,
				 strerror(-rc));
			goto err;
		}
		p += take * es;
		n -= take;
		w->cur_done += take;
		if (w->cur_done == t->numel) {
			w->cur++;
			w->cur_done = 0;
		}
	}
	return 0;
err:
	w->failed = 1;
	return rc;
}

static int write_index(sw_st_writer *w)
{
	json_t *o = json_object(), *map = json_object();
	uint64_t total = 0;
	char name[64], path[4200];
	for (int i = 0; i < w->n; i++) {
		shard_name(w, w->t[i].shard, name, sizeof(name));
		json_object_set_new(map, w->t[i].name, json_string(name));
		total += w->t[i].bytes;
	}
	json_object_set_new(o, "metadata", json_pack("{s:I}", "total_size", (json_int_t)total));
	json_object_set_new(o, "weight_map", map);
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", w->tmp);
	int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		rc = -errno;
	if (!rc)
		rc = write_all(fd, text, strlen(text));
	if (!rc)
		rc = write_all(fd, "\n", 1);
	if (!rc && fsync(fd))
		rc = -errno;
	if (fd >= 0 && close(fd) && !rc)
		rc = -errno;
	free(text);
	if (rc)
		sw_error("%s: cannot write (%s); check free space", path, strerror(-rc));
	return rc;
}

int sw_st_writer_finish(sw_st_writer *w, const sw_config *cfg)
{
	int rc = 0;
	if (w->failed) {
		rc = -EIO;
		goto err;
	}
	if (!w->laid_out)
		layout(w);
	if ((rc = sw_st_writer_write(w, NULL, SW_DTYPE_F32, 0)))   /* trailing empty tensors */
		goto err;
	SW_ASSERT(w->cur == w->n);   /* every declared tensor written */
	/* A shard whose tensors are all empty was never opened: open it now. */
	for (int s = 0; s < w->nshards; s++) {
		char name[64], path[4200];
		shard_name(w, s, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", w->tmp, name);
		if (access(path, F_OK) == 0)
			continue;
		if ((rc = close_shard(w)) || (rc = open_shard(w, s)))
			goto err;
	}
	if ((rc = close_shard(w)))
		goto err;
	if (w->nshards > 1 && (rc = write_index(w)))
		goto err;
	if (cfg && (rc = sw_config_save(cfg, w->tmp)))
		goto err;
	if ((rc = fsync_path(w->tmp)))
		goto err;
	if (rename(w->tmp, w->dir)) {
		rc = -errno;
		sw_error("%s: cannot rename %s into place (%s); remove %s and retry", w->dir, w->tmp,
			 strerror(-rc), w->dir);
		goto err;
	}
	w->tmp[0] = 0;
	char *slash = strrchr(w->dir, '/');
	if (slash) {
		*slash = 0;
		fsync_path(slash == w->dir ? "/" : w->dir);
	} else {
		fsync_path(".");
	}
	sw_st_writer_abort(w);
	return 0;
err:
	sw_st_writer_abort(w);
	return rc;
}

void sw_st_writer_abort(sw_st_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp && w->tmp[0])
		rm_tree(w->tmp);
	for (int i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	free(w->dir);
	free(w->tmp);
	free(w->stage);
	free(w);
}
