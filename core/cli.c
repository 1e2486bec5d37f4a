#include "core/cli.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sw_parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *u; double mul; } units[] = {
		{ "", 1 }, { "b", 1 },
		{ "k", 1024.0 }, { "kib", 1024.0 }, { "kb", 1e3 },
		{ "m", 1048576.0 }, { "mib", 1048576.0 }, { "mb", 1e6 },
		{ "g", 1073741824.0 }, { "gib", 1073741824.0 }, { "gb", 1e9 },
		{ "t", 1099511627776.0 }, { "tib", 1099511627776.0 }, { "tb", 1e12 },
	};
	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || v < 0)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	char u[8];
	size_t n = strlen(end);
	if (n >= sizeof(u))
		return -EINVAL;
	for (size_t i = 0; i <= n; i++)
		u[i] = (char)tolower((unsigned char)end[i]);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(u, units[i].u))
			continue;
		double bytes = v * units[i].mul;
		if (bytes >= 18446744073709551616.0)
			return -ERANGE;
		*out = (uint64_t)llround(bytes);
		return 0;
	}
	return -EINVAL;
}

const char *sw_fmt_size(uint64_t bytes, char *buf, int len)
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int i = 0;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, (size_t)len, i ? "%.2f %s" : "%.0f %s", v, u[i]);
	return buf;
}

void sw_cli_help(const char *cmd, const char *summary, const sw_opt *opts)
{
	printf("usage: spillway %s [options]\n%s\n\noptions:\n", cmd, summary);
	for (const sw_opt *o = opts; o->name; o++) {
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s%s", o->name, o->metavar ? " " : "",
			 o->metavar ? o->metavar : "");
		printf("  %-28s %s%s\n", lhs, o->help, o->required ? " (required)" : "");
	}
	printf("  %-28s %s\n", "--help", "show this help");
}

static const sw_opt *find_opt(const sw_opt *opts, const char *name, size_t len)
{
	for (const sw_opt *o = opts; o->name; o++)
		if (strlen(o->name) == len && !strncmp(o->name, name, len))
			return o;
	return NULL;
}

static int set_value(const char *cmd, const sw_opt *o, const char *val)
{
	char *end;
	switch (o->kind) {
	case SW_OPT_STR:
		*(const char **)o->dst = val;
		return 0;
	case SW_OPT_INT: {
		errno = 0;
		long long v = strtoll(val, &end, 10);
		if (errno || end == val || *end)
			break;
		*(int64_t *)o->dst = v;
		return 0;
	}
	case SW_OPT_FLOAT: {
		errno = 0;
		double v = strtod(val, &end);
		if (errno || end == val || *end || !isfinite(v))
			break;
		*(double *)o->dst = v;
		return 0;
	}
	case SW_OPT_SIZE:
		if (sw_parse_size(val, (uint64_t *)o->dst) == 0)
			return 0;
		sw_error("%s: --%s '%s' is not a size; write a number with a unit, e.g. 24GiB, 512MiB, 1.5TB",
			 cmd, o->name, val);
		return 2;
	case SW_OPT_FLAG:
		break;
	}
	sw_error("%s: --%s '%s' is not a valid %s; see 'spillway %s --help'", cmd, o->name, val,
		 o->kind == SW_OPT_INT ? "integer" : "number", cmd);
	return 2;
}

int sw_cli_parse(const char *cmd, const char *summary, const sw_opt *opts, int argc, char **argv)
{
	int n = 0;
	for (const sw_opt *o = opts; o->name; o++)
		n++;
	char seen[n + 1];
	memset(seen, 0, sizeof(seen));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			sw_cli_help(cmd, summary, opts);
			return -1;
		}
		if (strncmp(a, "--", 2)) {
			sw_error("%s: unexpected argument '%s'; see 'spillway %s --help'", cmd, a, cmd);
			return 2;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const sw_opt *o = find_opt(opts, name, len);
		if (!o) {
			sw_error("%s: unknown option '--%.*s'; see 'spillway %s --help'", cmd, (int)len, name, cmd);
			return 2;
		}
		seen[o - opts] = 1;
		if (o->kind == SW_OPT_FLAG) {
			if (eq) {
				sw_error("%s: --%s takes no value", cmd, o->name);
				return 2;
			}
			*(int *)o->dst = 1;
			continue;
		}
		const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!val) {
			sw_error("%s: --%s needs a value (%s)", cmd, o->name, o->metavar ? o->metavar : "value");
			return 2;
		}
		int rc = set_value(cmd, o, val);
		if (rc)
			return rc;
	}
	for (const sw_opt *o = opts; o->name; o++) {
		if (o->required && !seen[o - opts]) {
			sw_error("%s: --%s %s is required; see 'spillway %s --help'", cmd, o->name,
				 o->metavar ? o->metavar : "", cmd);
			return 2;
		}
	}
	return 0;
}

int sw_cli_threads(const char *cmd, const char *opt, int64_t *n)
{
	if (*n < 0) {
		sw_error("%s: --%s %lld is negative; give a thread count, or 0 for all cores", cmd, opt,
			 (long long)*n);
		return 2;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores > 0 && *n > cores) {
		sw_warn("%s: --%s %lld is more than the %ld cores here; using %ld", cmd, opt,
			(long long)*n, cores, cores);
		*n = cores;
	}
	return 0;
}
