/* The executor's side of a commit: which NVMe slot a step writes, the fdatasync that makes the
 * state durable, the engine's checksums of the committed slot, and a resume reading the
 * committed slot where it lies (offload/exec_commit.h). */
#include "offload/exec_commit.h"
#include "offload/exec_int.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static const char *const opt_name[3] = { "P32 (weights)", "Adam m", "Adam v" };

int exec_write_slot(const sw_exec *ex)
{
	if (ex->p->in.slots != 2)
		return ex->slot;
	return ex->commit_slot ? 2 - ex->commit_slot : 1 - ex->slot;
}

int exec_nvme_in_place(const sw_exec *ex)
{
	if (ex->p->in.slots != 2 || exec_write_slot(ex) != ex->slot)
		return 0;
	for (int g = 0; g < ex->G; g++)
		if (ex->g[g].opt_tier == SW_TIER_NVME)
			return 1;
	return 0;
}

int sw_exec_slot(const sw_exec *ex) { return ex->slot; }

int sw_exec_opt_on_nvme(const sw_exec *ex, int g) { return ex->g[g].opt_tier == SW_TIER_NVME; }

int sw_exec_commit_sync(sw_exec *ex)
{
	for (int i = 0; ex->io && i < sw_io_npaths(ex->io); i++) {
		const char *f = sw_io_path_file(ex->io, i);
		int fd = open(f, O_RDONLY | O_CLOEXEC);
		int rc = fd < 0 || fdatasync(fd) ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (rc) {
			sw_error("commit: cannot make %s durable (fdatasync: %s); the last commit stays",
				 f, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

void sw_exec_commit_keep(sw_exec *ex)
{
	if (ex->p->in.slots == 2)
		ex->commit_slot = ex->slot + 1;
}

int sw_exec_commit_sums(sw_exec *ex, int g, int k, uint64_t *sums, uint8_t *written,
			uint32_t *n)
{
	if (!sw_exec_opt_on_nvme(ex, g) || k < 0 || k > 2)
		return -EINVAL;
	int rc = sw_exec_sync(ex);   /* the last step's write-behind: the checksums are final */
	if (rc)
		return rc;
	sw_io_extent e = ex->g[g].opt_ext[ex->slot][k];
	*n = sw_io_extent_npieces(ex->io, e);
	return sums ? sw_io_extent_sums_get(ex->io, e, sums, written) : 0;
}

int sw_exec_commit_restore(sw_exec *ex, int slot, int g, int k, const uint64_t *sums,
			   const uint8_t *written, uint32_t n)
{
	if (!sw_exec_opt_on_nvme(ex, g) || k < 0 || k > 2 || slot < 0 || slot >= ex->p->in.slots)
		return -EINVAL;
	sw_io_extent e = ex->g[g].opt_ext[slot][k];
	if (sw_io_extent_npieces(ex->io, e) != n)
		return -EINVAL;
	int rc = sw_exec_sync(ex);
	if (rc)
		return rc;
	ex->slot = slot;
	sw_exec_commit_keep(ex);
	return sw_io_extent_sums_set(ex->io, e, sums, written);
}

int sw_exec_commit_read(sw_exec *ex, int g, int k, int64_t off, int64_t n, float *dst)
{
	SW_ASSERT(sw_exec_opt_on_nvme(ex, g) && k >= 0 && k < 3 && off % ex->chunk == 0);
	sw_io_req r;
	void *stage = ex->opt_stage[0];
	int rc = sw_exec_sync(ex);
	if (rc)
		return rc;
	rc = sw_io_submit_read(ex->io, &r, ex->g[g].opt_ext[ex->slot][k], exec_opt_off(off),
				   exec_io_len((uint64_t)n * 4), stage);
	if (!rc)
		rc = sw_io_wait(ex->io, &r);
	if (rc) {
		const sw_tensor *t = &ex->tt->t[ex->tt->g[g].first];
		sw_error("commit: --resume: %s of group %d (from %s), slot %d, elements %lld..%lld: %s; "
			 "nothing was written over the commit: remove the cause (a changed file: "
			 "restore it) and resume again, or start a new run", opt_name[k], g, t->name, ex->slot,
			 (long long)off, (long long)(off + n), sw_io_req_error(&r));
		return rc;
	}
	memcpy(dst, stage, (size_t)n * 4);
	return 0;
}

int sw_exec_commit_p16(sw_exec *ex, int g, int64_t off, int64_t n, const float *src)
{
	int rc = sw_exec_sync(ex);
	return rc ? rc : exec_home_put_p16(ex, g, off, n, src);
}

/* The first non-finite element of x[0..n) or -1: blocks OR-ed branch-free (vectorized), the
 * element searched for only in a block that has one. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
	const uint32_t *u = (const uint32_t *)x;
	for (int64_t b = 0; b < n; b += 4096) {
		int64_t e = n - b < 4096 ? n : b + 4096;
		uint32_t acc = 0;
		for (int64_t i = b; i < e; i++)
			acc |= (u[i] & 0x7f800000u) == 0x7f800000u;
		for (int64_t i = b; acc && i < e; i++)
			if (!isfinite(x[i]))
				return i;
	}
	return -1;
}

void exec_commit_scan(sw_exec *ex, int g, int64_t off, int64_t n, const float *const x[3])
{
	grp *gr = &ex->g[g];
	for (int k = 0; k < 3 && gr->fin_k < 0; k++) {
		int64_t i = first_nonfinite(x[k], n);
		if (i >= 0) {
			gr->fin_k = k;
			gr->fin_el = off + i;
			gr->fin_val = x[k][i];
		}
	}
}

void sw_exec_commit_scan(sw_exec *ex, int on) { ex->fin_scan = on; }

int sw_exec_commit_finite(sw_exec *ex, int g, int *k, int64_t *el, float *val)
{
	int rc = sw_exec_sync(ex);   /* the last step's updates have scanned what they wrote */
	if (rc)
		return rc;
	const grp *gr = &ex->g[g];
	if (!sw_exec_opt_on_nvme(ex, g) || gr->fin_slot != 1 + ex->slot)
		return -ENODATA;
	if (gr->fin_k < 0)
		return 0;
	*k = gr->fin_k;
	*el = gr->fin_el;
	*val = gr->fin_val;
	return 1;
}

void sw_exec_commit_gate_close(sw_exec *ex)
{
	pthread_mutex_lock(&ex->mu);
	ex->commit_gate = 1;
	ex->commit_gate_err = 0;
	pthread_mutex_unlock(&ex->mu);
}

void sw_exec_commit_gate_open(sw_exec *ex, int rc)
{
	pthread_mutex_lock(&ex->mu);
	ex->commit_gate = 0;
	ex->commit_gate_err = rc;
	pthread_cond_broadcast(&ex->cv);
	pthread_mutex_unlock(&ex->mu);
}

int exec_commit_gate_wait(sw_exec *ex)
{
	pthread_mutex_lock(&ex->mu);
	double t0 = ex->commit_gate ? sw_now() : 0;
	while (ex->commit_gate)
		pthread_cond_wait(&ex->cv, &ex->mu);
	if (t0 > 0)
		ex->commit_wait_s += sw_now() - t0;
	int rc = ex->commit_gate_err;
	pthread_mutex_unlock(&ex->mu);
	return rc;
}

double sw_exec_commit_waited(const sw_exec *ex) { return ex->commit_wait_s; }
