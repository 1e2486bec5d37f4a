/* Command-line parsing: one option table per command drives both parsing and --help.
 *
 * Usage errors print one line and return 2 (the exit status for usage errors); runtime errors
 * are the command's own business (exit 1). */
#ifndef SW_CORE_CLI_H
#define SW_CORE_CLI_H
#include <stdint.h>

typedef enum {
	SW_OPT_FLAG,   /* dst: int*       set to 1 when present */
	SW_OPT_STR,    /* dst: const char** */
	SW_OPT_INT,    /* dst: int64_t*   */
	SW_OPT_SIZE,   /* dst: uint64_t*  with units: 512MiB, 24GiB, 1.5TB (see sw_parse_size) */
	SW_OPT_FLOAT,  /* dst: double*    */
} sw_opt_kind;

typedef struct sw_opt {
	const char *name;       /* long name without dashes: "gpu-mem" */
	sw_opt_kind kind;
	void *dst;              /* holds the default on entry */
	const char *metavar;    /* "SIZE", "DIR", ... (NULL for flags) */
	const char *help;
	int required;
} sw_opt;

typedef struct sw_command {
	const char *name;
	int (*run)(int argc, char **argv);  /* argv[0] is the command name */
	const char *summary;
} sw_command;

/* Parses argv[1..argc) against opts (terminated by an entry with name == NULL).
 * Returns 0 on success, 2 after printing a one-line usage error, -1 after printing --help
 * (the caller then exits 0). */
int sw_cli_parse(const char *cmd, const char *summary, const sw_opt *opts, int argc, char **argv);
void sw_cli_help(const char *cmd, const char *summary, const sw_opt *opts);

/* A thread-count option: negative is a usage error (one line, returns 2); above the machine's
 * online cores it is capped there with a warning; 0 stays 0 ("all cores"). */
int sw_cli_threads(const char *cmd, const char *opt, int64_t *n);

/* "24GiB", "512 MiB", "1.5TB", "4096" (bytes), case-insensitive; KiB/MiB/GiB/TiB are powers
 * of 1024, KB/MB/GB/TB powers of 1000, K/M/G/T (alone) are 1024-based.
 * Returns 0, or -EINVAL for text that is not a size, -ERANGE past 2^64. */
int sw_parse_size(const char *s, uint64_t *out);
/* Formats bytes as "1.50 GiB" into buf. */
const char *sw_fmt_size(uint64_t bytes, char *buf, int len);
#endif
