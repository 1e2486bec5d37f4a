/* The planner's input built from command-line options: one function for `plan` and `train`. */
#include "offload/train.h"
#include "core/cli.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* An existing scratch file of an earlier run in dir: its blocks count as free, since the run
 * replaces it (train refuses one that another run still owns, offload/train_nvme.c). */
static uint64_t scratch_bytes(const char *dir)
{
	char f[4200];
	struct stat st;
	snprintf(f, sizeof(f), "%s/spillway.data", dir);
	return stat(f, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

/* One "PATH[:SIZE]" item into in->nvme[in->n_nvme]. Returns 0 or an exit status. */
static int nvme_item(sw_plan_input *in, char *item, const char *spec, const char *cmd)
{
	sw_plan_nvme *n = &in->nvme[in->n_nvme];
	char *colon = strrchr(item, ':');
	uint64_t cap = 0;
	int have_cap = colon && sw_parse_size(colon + 1, &cap) == 0;
	if (have_cap)
		*colon = 0;
	if (!item[0] || strlen(item) >= sizeof(n->path)) {
		sw_error("%s: --nvme '%s': expected PATH or PATH:SIZE (e.g. /mnt/a:2TB)", cmd, spec);
		return 2;
	}
	snprintf(n->path, sizeof(n->path), "%s", item);
	struct stat st;
	int exists = stat(item, &st) == 0;
	if (exists && !S_ISDIR(st.st_mode)) {
		sw_error("%s: --nvme %s is not a directory; give a directory on the drive", cmd, item);
		return 2;
	}
	if (!have_cap) {
		struct statvfs vs;
		if (!exists || statvfs(item, &vs)) {
			sw_error("%s: --nvme directory %s does not exist; create it (mkdir -p %s)%s", cmd,
				 item, item, strcmp(cmd, "plan") ? "" : ", or give its capacity as "
				 "PATH:SIZE to plan for a disk not mounted here");
			return 1;
		}
		cap = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize + scratch_bytes(item);
		if (cap == 0) {
			sw_error("%s: --nvme directory %s has no free space; free some, or drop --nvme "
				 "if the model fits in memory", cmd, item);
			return 1;
		}
	} else if (!exists && strcmp(cmd, "plan")) {
		sw_error("%s: --nvme directory %s does not exist; create it (mkdir -p %s)", cmd, item, item);
		return 1;
	}
	if (cap == 0 || cap > (1ull << 60)) {
		sw_error("%s: --nvme '%s': capacity %llu bytes is not usable (1 B to 1 EiB)", cmd, item,
			 (unsigned long long)cap);
		return 2;
	}
	n->capacity = cap;
	in->n_nvme++;
	return 0;
}

/* "/mnt/a:2TB,/mnt/b" -> in->nvme[]. Returns 0 or an exit status after one line. */
static int nvme_parse(sw_plan_input *in, const char *spec, const char *cmd)
{
	char buf[4096];
	if (strlen(spec) >= sizeof(buf)) {
		sw_error("%s: --nvme list is too long", cmd);
		return 2;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (in->n_nvme == SW_PLAN_MAX_NVME) {
			sw_error("%s: --nvme has more than %d paths", cmd, SW_PLAN_MAX_NVME);
			return 2;
		}
		int rc = nvme_item(in, item, spec, cmd);
		if (rc)
			return rc;
	}
	if (in->n_nvme == 0) {
		sw_error("%s: --nvme '%s' names no path; expected PATH[:SIZE],...", cmd, spec);
		return 2;
	}
	return 0;
}

int sw_train_rates_check(const char *cmd, const double rates[8])
{
	for (int i = 0; i < 8; i++)
		if (!(rates[i] >= 0) || !isfinite(rates[i])) {
			sw_error("%s: --gemm-tflops, --h2d-gbs, --d2h-gbs, --nvme-read-gbs, --nvme-write-gbs, "
				 "--nvme-mix-gbs, --adam-gparams and --gpu-bw-gbs must be positive numbers "
				 "(0: the default)", cmd);
			return 2;
		}
	return 0;
}

int sw_train_plan_input(sw_plan_input *in, const sw_table *tt, const sw_train_plan_opts *o,
			const char *cmd)
{
	sw_plan_input_init(in, tt);
	if (o->cpu_mem)
		in->cpu_mem = o->cpu_mem;
	in->gpu_mem = o->gpu_mem ? o->gpu_mem : (1ull << 50);
	if (o->batch_tokens)
		in->batch_tokens = o->batch_tokens;
	if (o->seq_len)
		in->seq_len = o->seq_len;
	if (o->micro_rows)
		in->micro_rows = o->micro_rows;
	in->fp32 = o->fp32;
	if (o->prefetch)
		in->prefetch = o->prefetch;
	in->grad_bufs = o->grad_bufs;     /* 0: the planner chooses 1 or 2 (sw_plan_build) */
	if (o->io_depth)
		in->io_depth = o->io_depth;
	in->keep = o->keep;
	/* exact clipping: one speculative backward pass where every group has a rollback source
	 * (the planner decides); SW_CLIP_PASSES=2 asks for the two-pass scheme instead, a hook
	 * for tests and benchmarks (docs/cli.md) */
	in->passes = o->clip > 0 ? 2 : 1;
	const char *cp = getenv("SW_CLIP_PASSES");
	in->speculate = !(cp && !strcmp(cp, "2"));
	/* SW_OPT_SETS=3|4: the optimizer's NVMe stream through that many staging sets instead of
	 * two (a chunk's read then waits for the write of the chunk three or four before it, not
	 * two), for comparison (docs/cli.md); the same bits */
	const char *os = getenv("SW_OPT_SETS");
	if (os && *os)
		in->opt_sets = atoi(os);
	in->slots = o->slots ? o->slots : 2;
	if (o->chunk > 0)
		in->chunk_params = o->chunk;
	in->nvme_stripe = o->io_stripe;    /* 0: one I/O chunk of P16 */
	if (o->nvme) {
		int rc = nvme_parse(in, o->nvme, cmd);
		if (rc)
			return rc;
	}
	/* the rates only move the predicted bound (and so the placement's tie-breaks), never
	 * what fits; the NVMe defaults are per path */
	const sw_plan_rates *ra = &o->rates;
	int npaths = in->n_nvme ? in->n_nvme : 1;
	sw_plan_rates *r = &in->rates;
	r->gemm_tflops = ra->gemm_tflops > 0 ? ra->gemm_tflops : r->gemm_tflops;
	r->h2d_gbs = ra->h2d_gbs > 0 ? ra->h2d_gbs : r->h2d_gbs;
	r->d2h_gbs = ra->d2h_gbs > 0 ? ra->d2h_gbs : r->d2h_gbs;
	r->nvme_read_gbs = ra->nvme_read_gbs > 0 ? ra->nvme_read_gbs : r->nvme_read_gbs * npaths;
	r->nvme_write_gbs = ra->nvme_write_gbs > 0 ? ra->nvme_write_gbs : r->nvme_write_gbs * npaths;
	r->nvme_mix_gbs = ra->nvme_mix_gbs > 0 ? ra->nvme_mix_gbs : 0;
	r->adam_params_per_s = ra->adam_params_per_s > 0 ? ra->adam_params_per_s : r->adam_params_per_s;
	r->gpu_bw_gbs = ra->gpu_bw_gbs > 0 ? ra->gpu_bw_gbs : 0;
	return 0;
}
