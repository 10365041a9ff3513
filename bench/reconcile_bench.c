/* rems-reconcile-bench: the time and memory of one reconcile pass.
 *
 * Builds the stored state of a large fleet (default 10,000 agents with 10
 * services each, from two policies), the way the tables hold it: each
 * agent's labels and merged service map as JSON text, plus its
 * remediation records. Then, --runs times:
 *
 *   load   every agent decoded from its JSON (reconcile_agent_load)
 *   pass   reconcile_pass over all of them
 *
 * and prints the median, minimum and maximum of each, the size of the
 * output, and the peak resident set size (getrusage) after building the
 * stored state, after loading the agents and after the passes.
 *
 * The fleet: 5% of the agents are offline; of the online ones, one in ten
 * has a fatal service, one in ten a missing one, one in five hundred an
 * unhealthy service with a restart in flight, one in twenty-five an unexpected
 * service; the rest are nominal. 50 sites; both policies in mode auto,
 * with the default guardrails (so most required actions are held by the
 * rate limits, as they would be). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cluster/reconcile.h"
#include "common/heap.h"

#define NOW ((uint64_t)1700000000000)

static const char core_policy[] =
    "{\"placement\":{\"selector\":{\"match_labels\":{\"tier\":\"edge\"}}},"
    "\"mode\":\"auto\",\"services\":["
    "{\"name\":\"db\",\"command\":[\"/usr/bin/db\"],\"criticality\":"
    "\"critical\"},"
    "{\"name\":\"broker\",\"command\":[\"/usr/bin/broker\"],\"depends_on\":"
    "[\"db\"],\"criticality\":\"critical\"},"
    "{\"name\":\"api\",\"command\":[\"/usr/bin/api\",\"--port\",\"8080\"],"
    "\"depends_on\":[\"db\",\"broker\"],\"readiness\":{\"type\":\"http\","
    "\"url\":\"http://127.0.0.1:8080/ready\"}},"
    "{\"name\":\"worker\",\"command\":[\"/usr/bin/worker\"],\"depends_on\":"
    "[\"broker\"]},"
    "{\"name\":\"scheduler\",\"command\":[\"/usr/bin/scheduler\"]},"
    "{\"name\":\"gateway\",\"command\":[\"/usr/bin/gateway\"],\"env\":{"
    "\"MODE\":\"edge\"},\"secrets\":[{\"env\":\"TOKEN\",\"ref\":"
    "\"vault://kv/gateway#token\"}]}]}";

static const char ops_policy[] =
    "{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":\"site\","
    "\"operator\":\"exists\"}]}},\"mode\":\"auto\",\"services\":["
    "{\"name\":\"metrics\",\"command\":[\"/usr/bin/metrics\"]},"
    "{\"name\":\"logs\",\"command\":[\"/usr/bin/logs\"]},"
    "{\"name\":\"ntp\",\"command\":[\"/usr/sbin/ntpd\",\"-n\"]},"
    "{\"name\":\"sshd\",\"command\":[\"/usr/sbin/sshd\",\"-D\"]}]}";

struct stored {
    char id[32];
    char *labels;
    char *services;
    bool online;
    struct reconcile_record *records;
    size_t n_records;
};

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* KiB on Linux */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static struct policy *parse(const char *text)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct policy *p;
    if (policy_parse_json(text, strlen(text), &p, errmsg) != 0) {
        fprintf(stderr, "policy: %s\n", errmsg);
        exit(1);
    }
    return p;
}

/* Append one service of the merged map, as the agent link stores it. */
static size_t service_json(char *out,
                           size_t cap,
                           bool first,
                           const char *name,
                           const char *state,
                           const char *health,
                           bool ready,
                           uint64_t since)
{
    int n = snprintf(out, cap,
                     "%s\"%s\":{\"generation\":3,\"health\":\"%s\",\"ready\":"
                     "%s,\"since_ms\":%" PRIu64 ",\"state\":\"%s\"}",
                     first ? "" : ",", name, health, ready ? "true" : "false",
                     since, state);
    return n > 0 ? (size_t)n : 0;
}

static void build(struct stored *agents,
                  size_t n,
                  const struct policy *core,
                  const struct policy *ops)
{
    const struct policy *docs[2] = {core, ops};
    size_t i;

    for (i = 0; i < n; i++) {
        struct stored *a = &agents[i];
        char *buf = xmalloc(4096);
        size_t used = 0;
        size_t d;
        size_t k;
        bool first = true;
        size_t skip_missing = SIZE_MAX;

        snprintf(a->id, sizeof a->id, "edge-%05zu", i);
        a->online = i % 20 != 0;
        a->labels = xmalloc(128);
        snprintf(
            a->labels, 128,
            "{\"rack\":\"r%zu\",\"site\":\"site-%02zu\",\"tier\":\"edge\"}",
            i % 7, i % 50);
        a->records = xmalloc(12 * sizeof *a->records);
        a->n_records = 0;
        if (i % 10 == 2) {
            skip_missing = 4; /* scheduler is not there */
        }
        buf[used++] = '{';
        for (d = 0; d < 2; d++) {
            for (k = 0; k < docs[d]->n_services; k++) {
                const struct policy_service *svc = &docs[d]->services[k];
                struct reconcile_record *r;
                const char *state = "running";
                const char *health = "healthy";
                bool ready = true;

                if (d == 0 && k == skip_missing) {
                    continue;
                }
                if (i % 10 == 1 && d == 1 && k == 0) {
                    state = "fatal";
                    health = "unknown";
                    ready = false;
                }
                if (i % 500 == 3 && d == 0 && k == 3) {
                    health = "unhealthy";
                }
                used += service_json(buf + used, 4096 - used, first, svc->name,
                                     state, health, ready, NOW - 3600000);
                first = false;
                r = &a->records[a->n_records++];
                memset(r, 0, sizeof *r);
                r->service = svc->name;
                r->deployed_digest = svc->digest;
                if (i % 500 == 3 && d == 0 && k == 3) {
                    r->attempts = 1;
                    r->last_action = RECONCILE_ACTION_RESTART;
                    r->outcome = RECONCILE_OUTCOME_PENDING;
                    r->last_attempt_ms = NOW - 5000;
                }
            }
        }
        if (i % 25 == 7) {
            used += service_json(buf + used, 4096 - used, first, "stray",
                                 "running", "healthy", true, NOW - 60000);
        }
        buf[used++] = '}';
        buf[used] = '\0';
        a->services = buf;
    }
}

int main(int argc, char **argv)
{
    size_t n_agents = 10000;
    int runs = 11;
    struct policy *core;
    struct policy *ops;
    struct stored *stored;
    struct reconcile_agent *agents;
    struct reconcile_policy policies[2];
    struct reconcile_input in;
    struct reconcile_output out = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    double *load_ms;
    double *pass_ms;
    long rss_stored;
    long rss_input = 0;
    size_t services = 0;
    size_t i;
    int r;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--agents") == 0 && i + 1 < (size_t)argc) {
            n_agents = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < (size_t)argc) {
            runs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--agents N] [--runs N]\n", argv[0]);
            return 2;
        }
    }
    if (n_agents == 0 || runs < 1) {
        fprintf(stderr, "--agents and --runs must be >= 1\n");
        return 2;
    }

    core = parse(core_policy);
    ops = parse(ops_policy);
    memset(policies, 0, sizeof policies);
    policies[0].key = "fleet/core";
    policies[0].revision = 41;
    policies[0].policy = core;
    policies[1].key = "fleet/ops";
    policies[1].revision = 42;
    policies[1].policy = ops;

    stored = xmalloc(n_agents * sizeof *stored);
    agents = xmalloc(n_agents * sizeof *agents);
    load_ms = xmalloc((size_t)runs * sizeof *load_ms);
    pass_ms = xmalloc((size_t)runs * sizeof *pass_ms);
    build(stored, n_agents, core, ops);
    rss_stored = peak_rss_kib();

    memset(&in, 0, sizeof in);
    reconcile_config_init(&in.config);
    in.policies = policies;
    in.n_policies = 2;
    in.agents = agents;
    in.n_agents = n_agents;

    for (r = 0; r < runs; r++) {
        struct timespec t0;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < n_agents; i++) {
            struct stored *s = &stored[i];
            if (reconcile_agent_load(s->id, strlen(s->id), s->labels,
                                     strlen(s->labels), s->services,
                                     strlen(s->services), s->online, &agents[i],
                                     errmsg) != 0) {
                fprintf(stderr, "load %s: %s\n", s->id, errmsg);
                return 1;
            }
            agents[i].records = s->records;
            agents[i].n_records = s->n_records;
        }
        load_ms[r] = ms_since(&t0);
        if (r == 0) {
            rss_input = peak_rss_kib();
            for (i = 0; i < n_agents; i++) {
                services += agents[i].n_services;
            }
        }

        reconcile_output_close(&out);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (reconcile_pass(&in, NOW, &out, errmsg) != 0) {
            fprintf(stderr, "reconcile_pass: %s\n", errmsg);
            return 1;
        }
        pass_ms[r] = ms_since(&t0);
        for (i = 0; i < n_agents; i++) {
            reconcile_agent_clear(&agents[i]);
        }
    }
    qsort(load_ms, (size_t)runs, sizeof *load_ms, cmp_double);
    qsort(pass_ms, (size_t)runs, sizeof *pass_ms, cmp_double);

    printf("agents: %zu (%zu services reported), policies: 2, runs: %d\n",
           n_agents, services, runs);
    printf("output: %zu drifts, %zu commands, %zu holds, %zu incidents, "
           "%zu updates; cluster %s (%zu nominal, %zu degraded, "
           "%zu reconciling, %zu unstable agents)\n",
           out.n_drifts, out.n_commands, out.n_holds, out.n_incidents,
           out.n_updates, reconcile_state_name(out.cluster.state),
           out.cluster.counts[RECONCILE_NOMINAL],
           out.cluster.counts[RECONCILE_DEGRADED],
           out.cluster.counts[RECONCILE_RECONCILING],
           out.cluster.counts[RECONCILE_UNSTABLE]);
    printf("load from stored JSON: median %.1f ms (min %.1f, max %.1f)\n",
           load_ms[runs / 2], load_ms[0], load_ms[runs - 1]);
    printf("reconcile pass:        median %.1f ms (min %.1f, max %.1f)\n",
           pass_ms[runs / 2], pass_ms[0], pass_ms[runs - 1]);
    printf("peak RSS: %.1f MiB with the stored state built, %.1f MiB with "
           "the agents loaded, %.1f MiB after the passes\n",
           (double)rss_stored / 1024.0, (double)rss_input / 1024.0,
           (double)peak_rss_kib() / 1024.0);

    reconcile_output_close(&out);
    for (i = 0; i < n_agents; i++) {
        free(stored[i].labels);
        free(stored[i].services);
        free(stored[i].records);
    }
    free(stored);
    free(agents);
    free(load_ms);
    free(pass_ms);
    policy_free(core);
    policy_free(ops);
    return 0;
}
