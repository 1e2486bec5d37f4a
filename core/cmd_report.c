/* spillway report: (re)writes a run directory's report.html from its metrics.jsonl and run.json. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/log.h"
#include "core/report.h"

#include <stdio.h>

static const char summary[] =
	"write RUN/report.html (loss, tokens/s, busy time per resource, placement, budgets) from the "
	"run directory's files; `spillway train --run` keeps it current while it runs";

int cmd_report(int argc, char **argv)
{
	const char *run = NULL;
	const sw_opt opts[] = {
		{ "run", SW_OPT_STR, &run, "DIR", "run directory of `spillway train --run DIR`", 1 },
		{ NULL, 0, NULL, NULL, NULL, 0 },
	};
	int rc = sw_cli_parse("report", summary, opts, argc, argv);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (sw_report_write(run))
		return 1;
	printf("report: wrote %s/report.html\n", run);
	return 0;
}
