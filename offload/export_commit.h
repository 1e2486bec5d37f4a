/* Export from a commit (offload/export_commit.c): a run whose newest state is a commit (the end
 * of a run with --end-commit, a stop, a kill) exports from where that state lies: the committed
 * NVMe slot and the commit's state file, every piece checked; nothing is copied first. */
#ifndef SW_OFFLOAD_EXPORT_COMMIT_H
#define SW_OFFLOAD_EXPORT_COMMIT_H
#include <stddef.h>
#include "core/tensors.h"

typedef struct sw_export_commit sw_export_commit;

/* 1 when RUN's newest state is a commit (commit.json, newer than any full save), else 0. */
int sw_export_commit_newer(const char *run);
/* The model directory the commit's run trained (its config and tensor table) into model_dir;
 * the same into tok_dir when it holds tokenizer files (the default --tokenizer), else "";
 * a label for the source ("RUN, commit of step N") into what. 0, or 1 after one line (no
 * model recorded, or it is gone). */
int sw_export_commit_source(const char *run, char *model_dir, size_t mlen, char *tok_dir,
			    size_t tlen, char *what, size_t wlen);
/* Opens the commit of RUN for the model's table tt: takes RUN's lock, checks commit.json and the
 * state file against their checksums, opens the committed NVMe slots. 0 or -errno after one line. */
int sw_export_commit_open(sw_export_commit **out, const char *run, const sw_table *tt);
/* Group g's fp32 weights (its numel floats) into x. 0 or -errno after one line. */
int sw_export_commit_group(sw_export_commit *e, int g, float *x);
void sw_export_commit_close(sw_export_commit *e);
#endif
