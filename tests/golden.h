/* Reader for the PyTorch golden files written by tests/ref/make_golden.py (format there). */
#ifndef SW_TESTS_GOLDEN_H
#define SW_TESTS_GOLDEN_H
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct golden {
	json_t *hdr;
	char *data;
	long data_len;
} golden;

static inline int golden_open(golden *g, const char *path)
{
	memset(g, 0, sizeof(*g));
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "golden: cannot open %s\n", path);
		return -1;
	}
	char magic[8];
	uint32_t ver, hlen;
	if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "SWGOLD\0\0", 8) || fread(&ver, 4, 1, f) != 1 ||
	    ver != 1 || fread(&hlen, 4, 1, f) != 1) {
		fprintf(stderr, "golden: %s: bad magic or version\n", path);
		fclose(f);
		return -1;
	}
	char *h = malloc(hlen + 1);
	if (fread(h, 1, hlen, f) != hlen) {
		fclose(f);
		free(h);
		return -1;
	}
	h[hlen] = 0;
	json_error_t err;
	g->hdr = json_loads(h, 0, &err);
	free(h);
	long start = ftell(f);
	fseek(f, 0, SEEK_END);
	g->data_len = ftell(f) - start;
	fseek(f, start, SEEK_SET);
	g->data = malloc((size_t)g->data_len);
	long got = (long)fread(g->data, 1, (size_t)g->data_len, f);
	fclose(f);
	return g->hdr && got == g->data_len ? 0 : -1;
}

/* Pointer to the named array (NULL if absent); *numel receives its element count. */
static inline void *golden_array(const golden *g, const char *name, int64_t *numel)
{
	json_t *arr = json_object_get(g->hdr, "arrays"), *a;
	size_t i;
	json_array_foreach(arr, i, a) {
		if (strcmp(json_string_value(json_object_get(a, "name")), name))
			continue;
		int64_t n = 1;
		json_t *d;
		size_t j;
		json_array_foreach(json_object_get(a, "shape"), j, d) n *= json_integer_value(d);
		if (numel)
			*numel = n;
		return g->data + json_integer_value(json_object_get(a, "offset"));
	}
	return NULL;
}

static inline void golden_close(golden *g)
{
	json_decref(g->hdr);
	free(g->data);
}
#endif
