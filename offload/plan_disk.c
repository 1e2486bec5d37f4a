/* The disk a run needs besides memory (docs/runs.md "Disk"): the NVMe tier's files, the two
 * commit state files in the run directory, one full save (what the end of a run, a stop
 * without commits and every --save-every write) and one export; printed by `spillway plan`
 * and `spillway train`, checked by train before its first step. */
#include "offload/plan.h"
#include "core/cli.h"
#include "io/io.h"

#include <string.h>

static uint64_t up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* One commit state file (offload/train_commit.c): a 56-byte header, 24 bytes per NVMe
 * allocation, per group a 4-byte tier and either the checksums of its committed P32/m/v (a
 * count, 8 bytes per piece of a stripe unit, one flag byte per piece padded to 8) or its
 * P32, m, v in fp32. */
static uint64_t commit_file_bytes(const sw_plan *p)
{
	const sw_table *tt = p->in.tt;
	uint64_t stripe = sw_plan_nvme_stripe(p), b = 56;
	for (int r = 0; r < p->nbuf; r++)
		if (p->buf[r].tier == SW_TIER_NVME && p->buf[r].kind != SW_BUF_HELD)
			b += 24 * (uint64_t)p->buf[r].count;
	for (int g = 0; g < p->ngroups; g++) {
		b += 4;
		uint64_t numel = (uint64_t)tt->g[g].numel;
		if (p->tier[g][SW_STATE_P32] != SW_TIER_NVME) {
			b += 12 * numel;
			continue;
		}
		uint64_t pieces = up(up(numel * 4, 4096), stripe) / stripe;
		b += 3 * (4 + 8 * pieces + up(pieces, 8));
	}
	return b;
}

/* One safetensors file of every tensor in `bytes` per element: the payload exactly, its header
 * (names, shapes, offsets) bounded by 128 bytes a tensor, and config.json by 8 KiB. */
static uint64_t st_bytes(const sw_table *tt, uint64_t bytes)
{
	uint64_t h = 256;
	for (int i = 0; i < tt->n; i++)
		h += strlen(tt->t[i].name) + 128;
	return 8 + h + bytes * (uint64_t)tt->total + 8192;
}

void sw_plan_disk(const sw_plan *p, sw_plan_disk_need *d)
{
	memset(d, 0, sizeof(*d));
	if (p->total[SW_TIER_NVME] && p->in.n_nvme)
		d->nvme = sw_io_files_bytes(p->total[SW_TIER_NVME], p->in.n_nvme, sw_plan_nvme_stripe(p));
	d->commit_file = commit_file_bytes(p);
	/* commit.json: its fields (4 KiB with the settings and paths) and one checksum per 16 MiB
	 * of the state file */
	d->commits = 2 * d->commit_file + 4096 + 24 * (d->commit_file / (16u << 20) + 1);
	d->save = 3 * st_bytes(p->in.tt, 4);
	d->export_bf16 = st_bytes(p->in.tt, 2);
}

void sw_plan_disk_print(const sw_plan *p, FILE *f)
{
	sw_plan_disk_need d;
	char b[2][32], what[160];
	sw_plan_disk(p, &d);
	fprintf(f, "\ndisk a run needs (train checks it before the first step):\n");
	snprintf(what, sizeof(what), "NVMe tier, %s", p->in.slots == 2 ? "two slots" : "one slot");
	fprintf(f, "  --nvme        %-58s %12s\n", what, sw_fmt_size(d.nvme, b[0], 32));
	snprintf(what, sizeof(what), "commits: two state files of %s + commit.json",
		 sw_fmt_size(d.commit_file, b[1], 32));
	fprintf(f, "  --run         %-58s %12s\n", what, sw_fmt_size(d.commits, b[0], 32));
	fprintf(f, "  --run         %-58s %12s  (two at peak with --save-every)\n",
		"one full save (P32, m, v fp32: end of run, --save-every)", sw_fmt_size(d.save, b[0], 32));
	fprintf(f, "  export --out  %-58s %12s\n", "one export (bf16; tokenizer files besides)",
		sw_fmt_size(d.export_bf16, b[0], 32));
}
