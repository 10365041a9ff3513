/* simulator/rems-sim.c: the failover-drill tool (docs/drills.md).
 *
 *     rems-sim [options] SCENARIO.yaml
 *
 * Loads and checks the scenario, starts a local cluster (or attaches to
 * one), runs the drill (simulator/drill.h), prints the report
 * (simulator/report.h) on stdout, writes it as JSON and the timeline as
 * SVG, and exits 0 when every assertion held, 1 when one failed or a step
 * failed, 2 on a usage or scenario error, 3 when the drill could not run. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "simulator/drill.h"
#include "simulator/report.h"
#include "simulator/scenario.h"
#include "simulator/simcluster.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_ERROR 3

static volatile sig_atomic_t interrupt_flag = 0;

static void on_signal(int sig)
{
    (void)sig;
    interrupt_flag = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rems-sim [options] SCENARIO.yaml\n"
            "\n"
            "Run a failover drill: start a local remsd cluster (or attach to "
            "one),\n"
            "run simulated agents over mTLS, play the scenario's steps, check "
            "its\n"
            "assertions and report the measured figures.\n"
            "\n"
            "options:\n"
            "  --seed N           seed of every random choice (default: from "
            "the clock;\n"
            "                     printed, so a run can be repeated)\n"
            "  --agents N         run N simulated agents instead of the "
            "scenario's count\n"
            "  --nodes N          start N nodes (3 or 5) instead of the "
            "scenario's\n"
            "  --out DIR          write <name>-<seed>.json and .svg there "
            "(default: .)\n"
            "  --json FILE        write the JSON report to FILE ('-': "
            "stdout, and the\n"
            "                     table goes to stderr)\n"
            "  --svg FILE         write the timeline picture to FILE\n"
            "  --remsd PATH       the remsd binary (default: the one built "
            "next to\n"
            "                     rems-sim, else remsd on PATH)\n"
            "  --keep             keep the cluster's directory (configs, data, "
            "logs)\n"
            "  --log-level LEVEL  the nodes' log level (default: info)\n"
            "  --endpoints LIST   attach: API=AGENT,... the admin API and "
            "agent\n"
            "                     listener of each running node "
            "(127.0.0.1:7101=127.0.0.1:7201,...)\n"
            "  --ca-cert FILE, --ca-key FILE\n"
            "                     attach: the CA that signs agent "
            "certificates\n"
            "  --check            check the scenario and exit (0: valid)\n"
            "  --quiet            no progress lines\n"
            "  --help\n"
            "\n"
            "exit status: 0 every assertion held, 1 an assertion or a step "
            "failed,\n"
            "2 usage or scenario error, 3 the drill could not run.\n");
}

static int parse_u64_arg(const char *name,
                         const char *s,
                         uint64_t lo,
                         uint64_t hi,
                         uint64_t *out)
{
    if (rems_parse_u64(s, out) != 0 || *out < lo || *out > hi) {
        fprintf(stderr,
                "rems-sim: %s: must be an integer between %" PRIu64
                " and %" PRIu64 ", not \"%s\"\n",
                name, lo, hi, s);
        return -1;
    }
    return 0;
}

/* The remsd built next to this binary (<build>/simulator/rems-sim ->
 * <build>/api/remsd), else "remsd" from PATH. */
static void default_remsd(char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char candidate[PATH_MAX + 32];
    const char *path = getenv("PATH");

    if (n > 0) {
        self[n] = '\0';
        snprintf(candidate, sizeof candidate, "%s/../api/remsd",
                 dirname(self));
        if (access(candidate, X_OK) == 0) {
            snprintf(out, size, "%s", candidate);
            return;
        }
    }
    while (path != NULL && *path != '\0') {
        const char *colon = strchr(path, ':');
        size_t len = colon != NULL ? (size_t)(colon - path) : strlen(path);
        snprintf(candidate, sizeof candidate, "%.*s/remsd", (int)len, path);
        if (len > 0 && access(candidate, X_OK) == 0) {
            snprintf(out, size, "%s", candidate);
            return;
        }
        path = colon != NULL ? colon + 1 : NULL;
    }
    snprintf(out, size, "remsd");
}

/* "api=agent,api=agent" into two arrays. */
static int parse_endpoints(char *list,
                           const char **api,
                           const char **agent,
                           size_t *n)
{
    char *save = NULL;
    char *item;

    *n = 0;
    for (item = strtok_r(list, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq == NULL || *n == SIMCLUSTER_MAX_NODES) {
            fprintf(stderr,
                    "rems-sim: --endpoints: each node is API=AGENT "
                    "(\"%s\"), at most %u nodes\n",
                    item, SIMCLUSTER_MAX_NODES);
            return -1;
        }
        *eq = '\0';
        api[*n] = item;
        agent[*n] = eq + 1;
        (*n)++;
    }
    return *n == 0 ? -1 : 0;
}

static int write_json(const char *path,
                      const struct drill_result *r,
                      const struct scenario *s)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    int rv;

    if (fp == NULL) {
        fprintf(stderr, "rems-sim: %s: %s\n", path, strerror(errno));
        return REMS_EIO;
    }
    rv = report_json(fp, r, s);
    if (fp != stdout && fclose(fp) != 0 && rv == 0) {
        rv = REMS_EIO;
    }
    if (rv != 0) {
        fprintf(stderr, "rems-sim: %s: the JSON report could not be written\n",
                path);
    }
    return rv;
}

int main(int argc, char **argv)
{
    enum {
        OPT_SEED = 256,
        OPT_AGENTS,
        OPT_NODES,
        OPT_OUT,
        OPT_JSON,
        OPT_SVG,
        OPT_REMSD,
        OPT_KEEP,
        OPT_LOG_LEVEL,
        OPT_ENDPOINTS,
        OPT_CA_CERT,
        OPT_CA_KEY,
        OPT_CHECK,
        OPT_QUIET,
        OPT_HELP
    };
    static const struct option longopts[] = {
        {"seed", required_argument, NULL, OPT_SEED},
        {"agents", required_argument, NULL, OPT_AGENTS},
        {"nodes", required_argument, NULL, OPT_NODES},
        {"out", required_argument, NULL, OPT_OUT},
        {"json", required_argument, NULL, OPT_JSON},
        {"svg", required_argument, NULL, OPT_SVG},
        {"remsd", required_argument, NULL, OPT_REMSD},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"endpoints", required_argument, NULL, OPT_ENDPOINTS},
        {"ca-cert", required_argument, NULL, OPT_CA_CERT},
        {"ca-key", required_argument, NULL, OPT_CA_KEY},
        {"check", no_argument, NULL, OPT_CHECK},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0}};
    struct scenario s = {0};
    struct simcluster cluster;
    struct drill_options o = {0};
    struct drill_result *r = NULL;
    char errmsg[REMS_ERRMSG_SIZE];
    char remsd[PATH_MAX] = "";
    char json_path[PATH_MAX + 128] = "";
    char svg_path[PATH_MAX + 128] = "";
    const char *out_dir = ".";
    const char *log_level = NULL;
    char *endpoints = NULL;
    const char *ca_cert = NULL;
    const char *ca_key = NULL;
    uint64_t seed = 0;
    bool have_seed = false;
    uint64_t agents = 0;
    uint64_t nodes = 0;
    bool keep = false;
    bool check = false;
    bool quiet = false;
    FILE *table_out = stdout;
    struct sigaction sa;
    int rv;
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
            case OPT_SEED:
                if (parse_u64_arg("--seed", optarg, 0, UINT64_MAX, &seed) != 0) {
                    return EXIT_USAGE;
                }
                have_seed = true;
                break;
            case OPT_AGENTS:
                if (parse_u64_arg("--agents", optarg, 1, SCENARIO_MAX_AGENTS,
                                  &agents) != 0) {
                    return EXIT_USAGE;
                }
                break;
            case OPT_NODES:
                if (parse_u64_arg("--nodes", optarg, 3, 5, &nodes) != 0 ||
                    nodes == 4) {
                    if (nodes == 4) {
                        fprintf(stderr, "rems-sim: --nodes: 3 or 5\n");
                    }
                    return EXIT_USAGE;
                }
                break;
            case OPT_OUT:
                out_dir = optarg;
                break;
            case OPT_JSON:
                snprintf(json_path, sizeof json_path, "%s", optarg);
                break;
            case OPT_SVG:
                snprintf(svg_path, sizeof svg_path, "%s", optarg);
                break;
            case OPT_REMSD:
                snprintf(remsd, sizeof remsd, "%s", optarg);
                break;
            case OPT_KEEP:
                keep = true;
                break;
            case OPT_LOG_LEVEL:
                log_level = optarg;
                break;
            case OPT_ENDPOINTS:
                endpoints = optarg;
                break;
            case OPT_CA_CERT:
                ca_cert = optarg;
                break;
            case OPT_CA_KEY:
                ca_key = optarg;
                break;
            case OPT_CHECK:
                check = true;
                break;
            case OPT_QUIET:
                quiet = true;
                break;
            case OPT_HELP:
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "rems-sim: one scenario file is needed\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (endpoints != NULL && (ca_cert == NULL || ca_key == NULL)) {
        fprintf(stderr, "rems-sim: --endpoints needs --ca-cert and "
                        "--ca-key (the CA the cluster trusts for agents)\n");
        return EXIT_USAGE;
    }
    rv = scenario_load(argv[optind], &s, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-sim: %s\n", rv == REMS_ENOMEM ? "out of memory"
                                                            : errmsg);
        return EXIT_USAGE;
    }
    if (nodes != 0) {
        s.cluster.nodes = (unsigned)nodes;
        if (scenario_check_nodes(&s, s.cluster.nodes, errmsg) != 0) {
            fprintf(stderr, "rems-sim: --nodes %" PRIu64 ": %s\n", nodes,
                    errmsg);
            scenario_close(&s);
            return EXIT_USAGE;
        }
    }
    if (check) {
        printf("%s: valid (%zu steps, %zu assertions)\n", argv[optind],
               s.n_steps, s.n_assertions);
        scenario_close(&s);
        return 0;
    }
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)getpid() << 32);
    }
    if (json_path[0] == '\0') {
        snprintf(json_path, sizeof json_path, "%s/%s-%" PRIu64 ".json",
                 out_dir, s.name, seed);
    }
    if (svg_path[0] == '\0') {
        snprintf(svg_path, sizeof svg_path, "%s/%s-%" PRIu64 ".svg", out_dir,
                 s.name, seed);
    }
    if (strcmp(json_path, "-") == 0) {
        table_out = stderr;
    }

    /* The simulated agents' own events (connects, redirects) are the
     * report's business; their log keeps only warnings and errors. */
    rems_log_set_level(REMS_LOG_WARN);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "rems-sim: libcurl could not start\n");
        scenario_close(&s);
        return EXIT_ERROR;
    }

    if (endpoints != NULL) {
        const char *api[SIMCLUSTER_MAX_NODES];
        const char *agent[SIMCLUSTER_MAX_NODES];
        size_t n;
        if (parse_endpoints(endpoints, api, agent, &n) != 0) {
            scenario_close(&s);
            return EXIT_USAGE;
        }
        rv = simcluster_attach(&cluster, api, agent, n, ca_cert, ca_key,
                               errmsg);
        if (rv == 0 && scenario_check_nodes(&s, (unsigned)n, errmsg) != 0) {
            simcluster_close(&cluster, true);
            rv = REMS_EINVAL;
        }
    } else {
        struct simcluster_options co = {0};
        if (remsd[0] == '\0') {
            default_remsd(remsd, sizeof remsd);
        }
        co.n_nodes = s.cluster.nodes;
        co.remsd = remsd;
        co.election_timeout_ms = s.cluster.election_timeout_ms;
        co.heartbeat_timeout_ms = s.cluster.heartbeat_timeout_ms;
        co.lease_ttl_ms = s.cluster.lease_ttl_ms;
        co.agent_heartbeat_ms = s.cluster.agent_heartbeat_ms;
        co.reconcile_interval_ms = s.cluster.reconcile_interval_ms;
        co.log_level = log_level;
        rv = simcluster_create(&cluster, &co, errmsg);
        if (rv == 0) {
            rv = simcluster_start(&cluster, errmsg);
            if (rv == 0) {
                size_t leader;
                if (!quiet) {
                    fprintf(stderr,
                            "rems-sim: %s: %u nodes started in %s, seed "
                            "%" PRIu64 "\n",
                            s.name, s.cluster.nodes, cluster.dir, seed);
                }
                rv = simcluster_wait_ready(&cluster, 30000, &leader);
                if (rv != 0) {
                    rems_errmsgf(errmsg,
                                 "no ready leader within 30 s (node logs in "
                                 "%s)",
                                 cluster.dir);
                    keep = true;
                }
            }
            if (rv != 0) {
                simcluster_close(&cluster, keep);
            }
        }
    }
    if (rv != 0) {
        fprintf(stderr, "rems-sim: %s\n", errmsg);
        scenario_close(&s);
        curl_global_cleanup();
        return rv == REMS_EINVAL ? EXIT_USAGE : EXIT_ERROR;
    }

    o.scenario = &s;
    o.cluster = &cluster;
    o.seed = seed;
    o.agents = (size_t)agents;
    o.progress = !quiet;
    o.interrupt = &interrupt_flag;
    rv = drill_run(&o, &r, errmsg);
    if (rv == 0 && !r->passed) {
        keep = keep || cluster.local;
    }
    simcluster_close(&cluster, keep);
    if (rv != 0) {
        fprintf(stderr, "rems-sim: %s\n", errmsg);
        scenario_close(&s);
        curl_global_cleanup();
        return EXIT_ERROR;
    }
    if (report_table(table_out, r, &s) != 0) {
        fprintf(stderr, "rems-sim: the report could not be written\n");
    }
    if (write_json(json_path, r, &s) == 0 && strcmp(json_path, "-") != 0) {
        fprintf(table_out, "report (JSON): %s\n", json_path);
    }
    if (report_svg(svg_path, r) == 0) {
        fprintf(table_out, "timeline (SVG): %s\n", svg_path);
    } else {
        fprintf(stderr, "rems-sim: %s: the timeline could not be written\n",
                svg_path);
    }
    if (keep && cluster.dir[0] != '\0') {
        fprintf(table_out, "cluster directory kept: %s\n", cluster.dir);
    }
    rv = r->passed ? 0 : EXIT_FAILED;
    drill_result_free(r);
    scenario_close(&s);
    curl_global_cleanup();
    return rv;
}
