/* spillway: the command-line entry point. Each command lives with its module. */
#include "core/cli.h"
#include "core/commands.h"
#include "core/log.h"
#include "core/report.h"

#include <stdio.h>
#include <string.h>

static const sw_command commands[] = {
	{ "info", cmd_info, "GPU, NUMA nodes, NVMe paths and, with --model, the tensor table" },
	{ "init", cmd_init, "write a randomly initialised Hugging Face model directory" },
	{ "data", cmd_data, "make a byte-level token file from a text file" },
	{ "train", cmd_train, "fine-tune a model" },
	{ "plan", cmd_plan, "place a model's training state under budgets and predict the step time" },
	{ "report", cmd_report, "write a run directory's report.html (loss curve, throughput, placement)" },
	{ "export", cmd_export, "write a run's trained weights as a Hugging Face directory" },
	{ "bench-io", cmd_bench_io, "storage sweep: block size x queue depth x threads x paths" },
	{ "bench-adam", cmd_bench_adam, "CPU AdamW throughput against memory bandwidth" },
	{ "tokenize", cmd_tokenize, "encode or decode text with a model's Hugging Face tokenizer (checks, benchmarks)" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: spillway <command> [options]   (spillway <command> --help for its options)\n\ncommands:\n");
	for (const sw_command *c = commands; c->name; c++)
		fprintf(f, "  %-12s %s\n", c->name, c->summary);
}

int main(int argc, char **argv)
{
	sw_report_set_cmdline(argc, argv);   /* for run.json */
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (const sw_command *c = commands; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->run(argc - 1, argv + 1);
	sw_error("unknown command '%s'; run 'spillway --help' for the list", argv[1]);
	return 2;
}
