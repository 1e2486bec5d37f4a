/* RUN/metrics.jsonl of a LoRA run: one record per step in full fine-tuning's format (the fields
 * that apply: docs/formats.md), the planner's predicted step as the bound, and RUN/report.html
 * kept current from it (core/report.h). On --resume the records after the resumed step go. */
#include "offload/lora_train.h"
#include "offload/train_int.h"
#include "core/log.h"
#include "core/report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keeps the records of steps up to `step` (a resumed run repeats the later ones). */
static int metrics_trim(const char *path, int64_t step)
{
	FILE *in = fopen(path, "r");
	if (!in)
		return 0;
	char tmp[SW_TRAIN_PATH + 80], line[8192];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *out = fopen(tmp, "w");
	int rc = out ? 0 : -errno;
	while (!rc && fgets(line, sizeof(line), in)) {
		const char *p = strstr(line, "\"step\": ");
		if (p && strtoll(p + 8, NULL, 10) <= step && fputs(line, out) == EOF)
			rc = -EIO;
	}
	fclose(in);
	if (out && fclose(out) && !rc)
		rc = -EIO;
	if (!rc && rename(tmp, path))
		rc = -errno;
	return rc;
}

FILE *sw_lora_metrics_open(const char *run, int64_t resumed)
{
	char path[SW_TRAIN_PATH + 32];
	snprintf(path, sizeof(path), "%s/metrics.jsonl", run);
	if (metrics_trim(path, resumed) && resumed) {
		sw_error("train: cannot rewrite %s (%s)", path, strerror(errno));
		return NULL;
	}
	FILE *f = fopen(path, resumed ? "a" : "w");
	if (!f)
		sw_error("train: cannot write %s (%s)", path, strerror(errno));
	return f;
}

void sw_lora_metrics_step(FILE *f, const char *run, int64_t step, double lr,
			  const sw_step_stats *st, double step_s, double tokens, double bound_s,
			  double eval)
{
	char loss[32] = "null", norm[32] = "null";
	if (isfinite(st->loss))
		snprintf(loss, sizeof(loss), "%.9g", st->loss);
	if (isfinite(st->grad_norm))
		snprintf(norm, sizeof(norm), "%.9g", st->grad_norm);
	fprintf(f, "{\"step\": %lld, \"loss\": %s, \"lr\": %.9g, \"grad_norm\": %s, \"skipped\": %d, "
		"\"redone\": 0, \"passes\": 1, \"tokens_per_s\": %.6g, \"step_s\": %.6g, "
		"\"bound_s\": %.6g, \"bound_over_measured\": %.6g", (long long)step, loss, lr, norm,
		st->skipped, tokens / step_s, step_s, bound_s, bound_s / step_s);
	if (isfinite(eval))
		fprintf(f, ", \"eval_loss\": %.9g", eval);
	fprintf(f, "}\n");
	fflush(f);
	sw_report_update(run, 0);
}
