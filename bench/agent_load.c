/* bench/agent_load.c: rems-agent-load, many simulated agents against a
 * cluster (simulator/simagents.h), for the agent benchmark
 * (bench/bench_agents.py) and by hand.
 *
 *   rems-agent-load --endpoints 127.0.0.1:7001,127.0.0.1:7002 \
 *       --ca-cert site-ca/ca.pem --ca-key site-ca/ca.key \
 *       --agents 1000 --ramp-per-s 200 --services 4 --duration 30 \
 *       --json out.json
 *
 * Mints one certificate per agent (signed by --ca-cert/--ca-key), starts
 * the agents at --ramp-per-s and runs for --duration seconds once the ramp
 * has started every agent (or until SIGINT/SIGTERM). Every second it prints
 * one progress line on stdout:
 *
 *   t=3.0s started=600/1000 connected=598 sessions=598 redirects=211
 *   hb/s=412 commands=0 acked=0 nacked=0 lost=0 fail=0
 *
 * At the end it checks the execution records against invariants 4, 5 and
 * 6 and writes a JSON summary (--json): the counters, the connect latency
 * (start of an agent to its first welcome) p50/p99/max, the check's
 * verdict, this process's CPU time and peak RSS, and every execution.
 * Exit status: 0, 1 when an invariant is broken, 2 for bad usage or a
 * failure to start. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "simulator/simagents.h"

#define MAX_ENDPOINTS SIMAGENTS_MAX_ENDPOINTS
#define MAX_LABELS 16

struct load {
    uv_loop_t loop;
    struct simagents *sa;
    uv_timer_t tick;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uint64_t t0_ms;
    uint64_t ramp_done_ms; /* 0 until every agent was started */
    double duration_s;
    uint64_t last_heartbeats;
    uint64_t last_ms;
    bool stopping;
    bool interrupted;
    bool quiet;
    const char *json_path;
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: rems-agent-load --endpoints HOST:PORT[,...] --ca-cert F "
            "--ca-key F [options]\n"
            "  --ca-for-server F      trust anchors for the nodes "
            "(default: --ca-cert)\n"
            "  --server-name N        name the nodes' certificates must match "
            "(default\n"
            "                         node1.rems.test; \"\" for the address "
            "dialled)\n"
            "  --agents N             simulated agents (default 100)\n"
            "  --prefix P             agent ids P-1..P-N (default sim)\n"
            "  --ramp-per-s R         agents started per second (default 0: "
            "all at once)\n"
            "  --duration S           seconds to run once all are started "
            "(default 10)\n"
            "  --services K           services per agent (default 4)\n"
            "  --crash-after-ms MS    services crash after MS and restart "
            "(default: healthy)\n"
            "  --restart-ms MS        how long a crashed service stays "
            "failed (default 1000)\n"
            "  --ack-delay-ms D       delay between executing and acking "
            "(default 0)\n"
            "  --exec-delay-ms D      delay between accepting and executing "
            "(default 0)\n"
            "  --heartbeat-ms MS      override the welcome's heartbeat "
            "interval\n"
            "  --label K=V            a label of every agent (repeatable)\n"
            "  --zones Z              label zone=z<n %% Z>\n"
            "  --connect-timeout-ms, --reconnect-initial-ms, "
            "--reconnect-max-ms MS\n"
            "  --nodelay              set TCP_NODELAY (rems-agent does not)\n"
            "  --no-resume            no TLS session resumption\n"
            "  --no-execs             do not list executions in the JSON\n"
            "  --cert-dir D           write the agents' PEM files in D (kept)\n"
            "  --seed N               random seed (default: drawn, printed)\n"
            "  --json OUT             write the summary to OUT\n"
            "  --log-level L          debug, info, warn (default), error\n"
            "  --quiet                no progress lines\n");
}

static int
parse_uint(const char *name, const char *v, uint64_t max, uint64_t *out)
{
    if (rems_parse_u64(v, out) != 0 || *out > max) {
        fprintf(stderr,
                "rems-agent-load: %s: \"%s\" is not an integer "
                "0..%" PRIu64 "\n",
                name, v, max);
        return -1;
    }
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static double pct(const uint64_t *v, size_t n, double p)
{
    size_t k;

    if (n == 0) {
        return 0;
    }
    k = (size_t)ceil(p * (double)n);
    k = k == 0 ? 0 : k - 1;
    return (double)v[k < n ? k : n - 1];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static json_t *stats_json(const struct simagents_stats *s)
{
    json_t *o = json_object();
    json_t *r = json_object();
    int i;

#define U(f) json_object_set_new(o, #f, json_integer((json_int_t)s->f))
    U(agents);
    U(started);
    U(connected);
    U(ever_connected);
    U(attempts);
    U(connect_failures);
    U(timeouts);
    U(tls_failures);
    U(sessions);
    U(sessions_lost);
    U(redirects);
    U(node_errors);
    U(protocol_errors);
    U(heartbeats);
    U(heartbeat_acks);
    U(heartbeat_timeouts);
    U(reports);
    U(report_items);
    U(reports_dropped);
    U(commands);
    U(executed);
    U(acked);
    U(nacked);
    U(answers_lost);
#undef U
    for (i = 1; i < PROTO_NACK_REASON_NR; i++) {
        json_object_set_new(r, proto_nack_reason_name(i),
                            json_integer((json_int_t)s->nacked_by_reason[i]));
    }
    json_object_set_new(o, "nacked_by_reason", r);
    return o;
}

/* The summary; returns 1 when an invariant is broken, else 0. */
static int write_summary(struct load *l, bool list_execs)
{
    struct simagents *sa = l->sa;
    struct simagents_stats st;
    struct simagents_agent_info info;
    const struct simagents_exec *e;
    char errmsg[REMS_ERRMSG_SIZE] = "";
    struct rusage ru;
    uint64_t *lat;
    size_t n_lat = 0;
    size_t n_e;
    size_t n = simagents_count(sa);
    size_t i;
    json_t *o;
    json_t *j;
    json_t *arr;
    int rv;

    simagents_stats(sa, &st);
    e = simagents_execs(sa, &n_e);
    rv = simagents_exec_check(e, n_e, errmsg);
    lat = calloc(n, sizeof *lat);
    if (lat == NULL) {
        fprintf(stderr, "rems-agent-load: out of memory\n");
        return 1;
    }
    for (i = 0; i < n; i++) {
        simagents_agent_info(sa, i, &info);
        if (info.connect_us >= 0) {
            lat[n_lat++] = (uint64_t)info.connect_us;
        }
    }
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
    printf("connected %zu of %zu agents; connect latency p50 %.1f ms, p99 "
           "%.1f ms; executed %" PRIu64 ", invariants %s%s%s\n",
           n_lat, n, pct(lat, n_lat, 0.5) / 1000, pct(lat, n_lat, 0.99) / 1000,
           st.executed, rv == 0 ? "hold" : "BROKEN", rv == 0 ? "" : ": ",
           rv == 0 ? "" : errmsg);
    if (l->json_path == NULL) {
        free(lat);
        return rv == REMS_ECONFLICT ? 1 : 0;
    }
    o = json_object();
    json_object_set_new(o, "seed",
                        json_integer((json_int_t)simagents_seed(sa)));
    json_object_set_new(o, "duration_s", json_real(l->duration_s));
    json_object_set_new(
        o, "ramp_s",
        json_real(l->ramp_done_ms == 0
                      ? -1.0
                      : (double)(l->ramp_done_ms - l->t0_ms) / 1000.0));
    json_object_set_new(o, "interrupted", json_boolean(l->interrupted));
    json_object_set_new(o, "mint_ms", json_real((double)st.mint_us / 1000.0));
    json_object_set_new(o, "contexts_ms",
                        json_real((double)st.contexts_us / 1000.0));
    json_object_set_new(o, "stats", stats_json(&st));
    j = json_object();
    json_object_set_new(j, "n", json_integer((json_int_t)n_lat));
    json_object_set_new(j, "p50", json_real(pct(lat, n_lat, 0.5) / 1000));
    json_object_set_new(j, "p99", json_real(pct(lat, n_lat, 0.99) / 1000));
    json_object_set_new(j, "max", json_real(pct(lat, n_lat, 1.0) / 1000));
    json_object_set_new(o, "connect_latency_ms", j);
    j = json_object();
    json_object_set_new(j, "ok", json_boolean(rv == 0));
    json_object_set_new(j, "error",
                        rv == 0 ? json_null() : json_string(errmsg));
    json_object_set_new(o, "invariants", j);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        j = json_object();
        json_object_set_new(j, "user_s",
                            json_real((double)ru.ru_utime.tv_sec +
                                      (double)ru.ru_utime.tv_usec / 1e6));
        json_object_set_new(j, "sys_s",
                            json_real((double)ru.ru_stime.tv_sec +
                                      (double)ru.ru_stime.tv_usec / 1e6));
        json_object_set_new(j, "maxrss_kb", json_integer(ru.ru_maxrss));
        json_object_set_new(o, "rusage", j);
    }
    json_object_set_new(o, "n_executions", json_integer((json_int_t)n_e));
    if (list_execs) {
        arr = json_array();
        for (i = 0; i < n_e; i++) {
            simagents_agent_info(sa, e[i].agent, &info);
            j = json_object();
            json_object_set_new(j, "id", json_string(e[i].id));
            json_object_set_new(j, "agent", json_string(info.id));
            json_object_set_new(j, "term", json_integer((json_int_t)e[i].term));
            json_object_set_new(j, "action",
                                json_string(proto_action_name(e[i].action)));
            json_object_set_new(
                j, "ttl_remaining_ms",
                json_integer((json_int_t)e[i].ttl_remaining_ms));
            json_object_set_new(j, "receipt_mono_us",
                                json_integer((json_int_t)e[i].receipt_mono_us));
            json_object_set_new(j, "receipt_wall_ms",
                                json_integer((json_int_t)e[i].receipt_wall_ms));
            json_object_set_new(j, "exec_mono_us",
                                json_integer((json_int_t)e[i].exec_mono_us));
            json_object_set_new(j, "exec_wall_ms",
                                json_integer((json_int_t)e[i].exec_wall_ms));
            json_array_append_new(arr, j);
        }
        json_object_set_new(o, "executions", arr);
    }
    if (json_dump_file(o, l->json_path, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "rems-agent-load: cannot write %s\n", l->json_path);
    }
    json_decref(o);
    free(lat);
    return rv == REMS_ECONFLICT ? 1 : 0;
}

static void on_stopped(struct simagents *sa)
{
    struct load *l = simagents_data(sa);

    uv_close((uv_handle_t *)&l->tick, on_closed);
    uv_close((uv_handle_t *)&l->sigint, on_closed);
    uv_close((uv_handle_t *)&l->sigterm, on_closed);
}

static void stop(struct load *l)
{
    if (!l->stopping) {
        l->stopping = true;
        uv_timer_stop(&l->tick);
        simagents_stop(l->sa, on_stopped);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct load *l = s->data;

    (void)signum;
    l->interrupted = true;
    stop(l);
}

static void on_tick(uv_timer_t *t)
{
    struct load *l = t->data;
    struct simagents_stats st;
    uint64_t now = uv_now(&l->loop);
    double hb_rate;

    simagents_stats(l->sa, &st);
    if (l->ramp_done_ms == 0 && st.started == st.agents) {
        l->ramp_done_ms = now;
    }
    hb_rate = now > l->last_ms ? (double)(st.heartbeats - l->last_heartbeats) *
                                     1000.0 / (double)(now - l->last_ms)
                               : 0;
    l->last_heartbeats = st.heartbeats;
    l->last_ms = now;
    if (!l->quiet) {
        printf("t=%.1fs started=%" PRIu64 "/%" PRIu64 " connected=%" PRIu64
               " sessions=%" PRIu64 " redirects=%" PRIu64 " hb/s=%.0f"
               " commands=%" PRIu64 " acked=%" PRIu64 " nacked=%" PRIu64
               " lost=%" PRIu64 " fail=%" PRIu64 "\n",
               (double)(now - l->t0_ms) / 1000.0, st.started, st.agents,
               st.connected, st.sessions, st.redirects, hb_rate, st.commands,
               st.acked, st.nacked, st.sessions_lost, st.connect_failures);
    }
    if (l->ramp_done_ms != 0 &&
        (double)(now - l->ramp_done_ms) >= l->duration_s * 1000.0) {
        stop(l);
    }
}

int main(int argc, char **argv)
{
    static const char *endpoints[MAX_ENDPOINTS];
    static struct proto_kv labels[MAX_LABELS];
    struct simagents_options o = {0};
    struct load l;
    char errmsg[REMS_ERRMSG_SIZE];
    char *ep_list = NULL;
    char *tok;
    char *save;
    uint64_t v;
    bool list_execs = true;
    enum rems_log_level level = REMS_LOG_WARN;
    int rv;
    int i;

    memset(&l, 0, sizeof l);
    l.duration_s = 10;
    o.n_agents = 100;
    o.n_services = 4;
    o.server_name = "node1.rems.test";
    o.resume = true;
    o.record_execs = true;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool flag = true;

#define ARG(name) (strcmp(a, name) == 0)
        if (ARG("--help") || ARG("-h")) {
            usage(stdout);
            return 0;
        } else if (ARG("--nodelay")) {
            o.tcp_nodelay = true;
        } else if (ARG("--no-resume")) {
            o.resume = false;
        } else if (ARG("--no-execs")) {
            list_execs = false;
        } else if (ARG("--quiet")) {
            l.quiet = true;
        } else {
            flag = false;
        }
        if (flag) {
            continue;
        }
        if (val == NULL || strncmp(a, "--", 2) != 0) {
            usage(stderr);
            return 2;
        }
        i++;
        if (ARG("--endpoints")) {
            ep_list = strdup(val);
            if (ep_list == NULL) {
                return 2;
            }
            for (tok = strtok_r(ep_list, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o.n_endpoints == MAX_ENDPOINTS) {
                    fprintf(stderr, "rems-agent-load: at most %u endpoints\n",
                            MAX_ENDPOINTS);
                    return 2;
                }
                endpoints[o.n_endpoints++] = tok;
            }
            o.endpoints = endpoints;
        } else if (ARG("--ca-cert")) {
            o.ca_cert = val;
        } else if (ARG("--ca-key")) {
            o.ca_key = val;
        } else if (ARG("--ca-for-server")) {
            o.server_ca = val;
        } else if (ARG("--server-name")) {
            o.server_name = val;
        } else if (ARG("--prefix")) {
            o.prefix = val;
        } else if (ARG("--cert-dir")) {
            o.cert_dir = val;
        } else if (ARG("--json")) {
            l.json_path = val;
        } else if (ARG("--label")) {
            const char *eq = strchr(val, '=');
            if (eq == NULL || o.n_labels == MAX_LABELS) {
                fprintf(stderr, "rems-agent-load: --label K=V, at most %d\n",
                        MAX_LABELS);
                return 2;
            }
            labels[o.n_labels].key.p = val;
            labels[o.n_labels].key.len = (size_t)(eq - val);
            labels[o.n_labels].value.p = eq + 1;
            labels[o.n_labels].value.len = strlen(eq + 1);
            o.n_labels++;
            o.labels = labels;
        } else if (ARG("--log-level")) {
            if (rems_log_level_parse(val, &level) != 0) {
                fprintf(stderr, "rems-agent-load: --log-level: unknown\n");
                return 2;
            }
        } else if (ARG("--ramp-per-s")) {
            char *end;
            o.ramp_per_s = strtod(val, &end);
            if (*end != '\0' || o.ramp_per_s < 0) {
                fprintf(stderr, "rems-agent-load: --ramp-per-s: a number\n");
                return 2;
            }
        } else if (ARG("--duration")) {
            char *end;
            l.duration_s = strtod(val, &end);
            if (*end != '\0' || l.duration_s < 0) {
                fprintf(stderr, "rems-agent-load: --duration: seconds\n");
                return 2;
            }
        } else {
            const struct {
                const char *name;
                uint64_t max;
            } nums[] = {
                {"--agents", SIMAGENTS_MAX_AGENTS},
                {"--services", SIMAGENTS_MAX_SERVICES},
                {"--crash-after-ms", 86400000},
                {"--restart-ms", 86400000},
                {"--ack-delay-ms", 86400000},
                {"--exec-delay-ms", 86400000},
                {"--heartbeat-ms", 86400000},
                {"--zones", 1000000},
                {"--connect-timeout-ms", 86400000},
                {"--reconnect-initial-ms", 86400000},
                {"--reconnect-max-ms", 86400000},
                {"--seed", UINT64_MAX},
            };
            size_t k;
            for (k = 0; k < sizeof nums / sizeof nums[0]; k++) {
                if (ARG(nums[k].name)) {
                    break;
                }
            }
            if (k == sizeof nums / sizeof nums[0]) {
                fprintf(stderr, "rems-agent-load: unknown option %s\n", a);
                usage(stderr);
                return 2;
            }
            if (parse_uint(a, val, nums[k].max, &v) != 0) {
                return 2;
            }
            switch (k) {
                case 0:
                    o.n_agents = (size_t)v;
                    break;
                case 1:
                    o.n_services = (size_t)v;
                    break;
                case 2:
                    o.crash_after_ms = (unsigned)v;
                    o.behaviour = SIMAGENTS_CRASH_LOOP;
                    break;
                case 3:
                    o.restart_ms = (unsigned)v;
                    break;
                case 4:
                    o.ack_delay_ms = (unsigned)v;
                    break;
                case 5:
                    o.exec_delay_ms = (unsigned)v;
                    break;
                case 6:
                    o.heartbeat_ms = (unsigned)v;
                    break;
                case 7:
                    o.zones = (unsigned)v;
                    break;
                case 8:
                    o.connect_timeout_ms = (unsigned)v;
                    break;
                case 9:
                    o.reconnect_initial_ms = (unsigned)v;
                    break;
                case 10:
                    o.reconnect_max_ms = (unsigned)v;
                    break;
                default:
                    o.seed = v;
                    break;
            }
        }
#undef ARG
    }
    if (o.n_endpoints == 0 || o.ca_cert == NULL || o.ca_key == NULL) {
        usage(stderr);
        return 2;
    }
    rems_log_set_level(level);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (uv_loop_init(&l.loop) != 0) {
        return 2;
    }
    o.data = &l;
    rv = simagents_open(&l.loop, &o, &l.sa, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-agent-load: %s\n", errmsg);
        return 2;
    }
    {
        struct simagents_stats st;
        simagents_stats(l.sa, &st);
        printf("minted %zu certificates in %.0f ms, opened their TLS contexts "
               "in %.0f ms (seed %" PRIu64 ")\n",
               o.n_agents, (double)st.mint_us / 1000.0,
               (double)st.contexts_us / 1000.0, simagents_seed(l.sa));
    }
    uv_timer_init(&l.loop, &l.tick);
    l.tick.data = &l;
    uv_signal_init(&l.loop, &l.sigint);
    uv_signal_init(&l.loop, &l.sigterm);
    l.sigint.data = &l;
    l.sigterm.data = &l;
    uv_signal_start(&l.sigint, on_signal, SIGINT);
    uv_signal_start(&l.sigterm, on_signal, SIGTERM);
    uv_update_time(&l.loop); /* Minting took a while. */
    l.t0_ms = uv_now(&l.loop);
    l.last_ms = l.t0_ms;
    if (simagents_start(l.sa, errmsg) != 0) {
        fprintf(stderr, "rems-agent-load: %s\n", errmsg);
        return 2;
    }
    uv_timer_start(&l.tick, on_tick, 1000, 1000);
    uv_run(&l.loop, UV_RUN_DEFAULT);

    rv = write_summary(&l, list_execs);
    simagents_close(l.sa);
    if (uv_loop_close(&l.loop) != 0) {
        fprintf(stderr, "rems-agent-load: handles left on the loop\n");
    }
    free(ep_list);
    return rv;
}
