/* The executor's side of a commit (docs/runs.md "Commits"): the NVMe-resident optimizer state
 * is committed where it lies. A step reads the slot holding the current state and writes the
 * other one; after a commit the committed slot is kept: no step writes it until the next
 * commit (the steps between two commits read and write the other slot in place). So at any
 * moment the last commit's P32/m/v are intact in their slot, whatever a kill interrupts. */
#ifndef SW_OFFLOAD_EXEC_COMMIT_H
#define SW_OFFLOAD_EXEC_COMMIT_H
#include <stdint.h>
#include "offload/exec.h"

/* The NVMe slot holding the state after the last step (0 or 1). */
int sw_exec_slot(const sw_exec *ex);
/* 1 when group g's P32/m/v live on NVMe. */
int sw_exec_opt_on_nvme(const sw_exec *ex, int g);
/* Makes every NVMe write so far durable (fdatasync of each data file; call between steps).
 * 0 or -errno after one line naming the file. */
int sw_exec_commit_sync(sw_exec *ex);
/* The current slot holds a durable commit: no step writes it until the next call. */
void sw_exec_commit_keep(sw_exec *ex);
/* The I/O engine's checksums of group g's state k (0 P32, 1 m, 2 v) in the current slot:
 * *n pieces (sums and written may be NULL to ask for n only, else room for *n). Drains the
 * optimizer first (sw_exec_sync: the last step's writes landed). 0, -EINVAL, or the error an
 * update met. */
int sw_exec_commit_sums(sw_exec *ex, int g, int k, uint64_t *sums, uint8_t *written,
			uint32_t *n);
/* Resuming in place: state k of group g lies in `slot` with these checksums (as sums gave
 * them); the slot becomes the current and kept one. 0 or -EINVAL. */
int sw_exec_commit_restore(sw_exec *ex, int slot, int g, int k, const uint64_t *sums,
			   const uint8_t *written, uint32_t n);
/* Reads elements [off, off + n) of state k of group g from the current slot into dst, every
 * piece checked against its checksum (chunks as sw_exec_take takes them). A mismatch or an I/O
 * error: one line naming the group, state, slot, file and offset, then -errno. */
int sw_exec_commit_read(sw_exec *ex, int g, int k, int64_t off, int64_t n, float *dst);
/* Writes the P16 of [off, off + n) of group g rounded from fp32 src (as the update does): the
 * P16 home has one slot, so a resume rebuilds it from the committed P32. */
int sw_exec_commit_p16(sw_exec *ex, int g, int64_t off, int64_t n, const float *src);
/* Finiteness of the NVMe-resident state at a commit. scan(on): the optimizer checks what the
 * next steps write to NVMe finite as it writes it (a pass over each chunk in cache; turned on
 * for the step before a commit). finite: group g's state in the current slot was checked as it
 * was written: 0 all finite, 1 not (*k the state, *el the element in the group, *val the
 * value); -ENODATA when it was not checked (a stop between commits, a skipped step: read it
 * back with sw_exec_commit_read); another -errno: the error an update met (finite drains the
 * optimizer first, as sums does). */
void sw_exec_commit_scan(sw_exec *ex, int on);
int sw_exec_commit_finite(sw_exec *ex, int g, int *k, int64_t *el, float *val);
/* Overlapping a commit with the next step. After a commit's state file is written, the new
 * slot is kept (sw_exec_commit_keep) and the gate closed (gate_close, between steps): the next
 * step reads the kept slot and writes the other one -- the slot the previous commit.json names
 * -- so its first NVMe optimizer write waits until gate_open (from the thread making the commit
 * durable: fdatasyncs, commit.json renamed) says the new commit is durable; rc < 0 (the commit
 * failed) fails those writes instead. waited: seconds the optimizer spent at the gate. */
void sw_exec_commit_gate_close(sw_exec *ex);
void sw_exec_commit_gate_open(sw_exec *ex, int rc);
double sw_exec_commit_waited(const sw_exec *ex);
#endif
