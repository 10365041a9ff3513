/* rems-lincheck: check a harness history for linearizability.
 *
 *   rems-lincheck [--json OUT] [--max-states N] HISTORY
 *
 * Reads HISTORY ("-": stdin; jepsen/HISTORY.md), checks each key with
 * lincheck_check(), prints the result and, with --json, writes it to OUT.
 * Exit codes (enum lincheck_exit): 0 valid, 1 not linearizable, 2 bad input
 * or usage, 3 unknown (a key could not be decided within the budget).
 * docs/lincheck.md is the operator guide.
 *
 * Tests compile this file with LINCHECK_NO_MAIN and call cli_run() with
 * their own streams (tests/unit/lincheck/). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "jepsen/lincheck/lincheck.h"

#ifndef REMS_VERSION
#define REMS_VERSION "unknown" /* CMake defines it from project(VERSION). */
#endif

static const char usage[] =
    "usage: rems-lincheck [--json OUT] [--max-states N] HISTORY\n"
    "\n"
    "Check a JSON-lines register history (\"-\" reads stdin) for\n"
    "linearizability, key by key.\n"
    "\n"
    "  --json OUT        also write the result as JSON to OUT\n"
    "  --max-states N    give up on a search after N distinct states\n"
    "                    (default 10000000); a key no search decides is\n"
    "                    unknown\n"
    "  -h, --help        print this help\n"
    "  --version         print the version\n"
    "\n"
    "Exit status: 0 linearizable, 1 not linearizable, 2 bad input or\n"
    "usage, 3 unknown.\n";

struct cli_args {
    const char *json;
    const char *history;
    uint64_t max_states;
    bool help;
    bool version;
};

/* Take the value of option @name at argv[*i], given as "--name=V" or as
 * "--name V". Returns NULL when argv[*i] is another option or V is
 * missing; sets *@missing in the latter case. */
static const char *
option_value(const char *name, int argc, char **argv, int *i, bool *missing)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, n) != 0) {
        return NULL;
    }
    if (arg[n] == '=') {
        return arg + n + 1;
    }
    if (arg[n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static int cli_parse(int argc, char **argv, struct cli_args *a, char *errmsg)
{
    bool options = true;
    int i;

    memset(a, 0, sizeof *a);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *v;
        bool missing = false;

        if (!options || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (a->history != NULL) {
                rems_errmsgf(errmsg, "more than one history given");
                return REMS_EINVAL;
            }
            a->history = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options = false;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = true;
        } else if (strcmp(arg, "--version") == 0) {
            a->version = true;
        } else if ((v = option_value("--json", argc, argv, &i, &missing)) !=
                   NULL) {
            if (*v == '\0') {
                rems_errmsgf(errmsg, "--json needs a file name");
                return REMS_EINVAL;
            }
            a->json = v;
        } else if ((v = option_value("--max-states", argc, argv, &i,
                                     &missing)) != NULL) {
            if (rems_parse_u64(v, &a->max_states) != 0 || a->max_states == 0) {
                rems_errmsgf(errmsg,
                             "invalid --max-states '%s' (expected a positive "
                             "number)",
                             v);
                return REMS_EINVAL;
            }
        } else if (missing) {
            rems_errmsgf(errmsg, "%s needs a value", arg);
            return REMS_EINVAL;
        } else {
            rems_errmsgf(errmsg, "unknown option '%s'", arg);
            return REMS_EINVAL;
        }
    }
    if (a->history == NULL && !a->help && !a->version) {
        rems_errmsgf(errmsg, "missing history file");
        return REMS_EINVAL;
    }
    return 0;
}

static int
write_json(const struct lincheck_result *r, const char *path, char *errmsg)
{
    json_t *j = lincheck_result_json(r);
    FILE *f;
    int rv = 0;

    if (j == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    f = fopen(path, "w");
    if (f == NULL) {
        rems_errmsgf(errmsg, "%s: %s", path, strerror(errno));
        json_decref(j);
        return REMS_EIO;
    }
    if (json_dumpf(j, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF) {
        rv = REMS_EIO;
    }
    if (fclose(f) != 0) {
        rv = REMS_EIO;
    }
    if (rv != 0) {
        rems_errmsgf(errmsg, "%s: write error", path);
    }
    json_decref(j);
    return rv;
}

/* The whole command; returns its exit code. */
static int cli_run(int argc, char **argv, FILE *out, FILE *err)
{
    struct lincheck_options opts = {0};
    struct lincheck_result result = {0};
    struct lincheck_history *h;
    struct cli_args a;
    char errmsg[REMS_ERRMSG_SIZE];
    int code;

    if (cli_parse(argc, argv, &a, errmsg) != 0) {
        fprintf(err, "rems-lincheck: %s\n%s", errmsg, usage);
        return LINCHECK_EXIT_BAD_INPUT;
    }
    if (a.help) {
        fputs(usage, out);
        return 0;
    }
    if (a.version) {
        fprintf(out, "rems-lincheck %s\n", REMS_VERSION);
        return 0;
    }
    if (lincheck_history_load(a.history, &h, errmsg) != 0) {
        fprintf(err, "rems-lincheck: %s\n", errmsg);
        return LINCHECK_EXIT_BAD_INPUT;
    }
    opts.max_states = a.max_states;
    if (lincheck_check(h, &opts, &result, errmsg) != 0) {
        fprintf(err, "rems-lincheck: %s\n", errmsg);
        code = LINCHECK_EXIT_BAD_INPUT;
        goto out;
    }
    code = lincheck_verdict_exit(result.verdict);
    if (lincheck_result_print(&result, out) != 0) {
        fprintf(err, "rems-lincheck: cannot write the result\n");
        code = LINCHECK_EXIT_BAD_INPUT;
    }
    if (a.json != NULL && write_json(&result, a.json, errmsg) != 0) {
        fprintf(err, "rems-lincheck: %s\n", errmsg);
        code = LINCHECK_EXIT_BAD_INPUT;
    }
    lincheck_result_close(&result);
out:
    lincheck_history_free(h);
    return code;
}

#ifndef LINCHECK_NO_MAIN
int main(int argc, char **argv)
{
    return cli_run(argc, argv, stdout, stderr);
}
#endif
