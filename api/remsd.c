/* remsd: one supervisor node of a rems cluster.
 *
 * Order of start: parse and validate the configuration (a wrong one exits
 * 2 naming the key, before anything touches the data dir); bind the admin
 * API (a taken port exits 1 with the address); open the node (data dir
 * lock, state store, raft); serve. SIGTERM or SIGINT stops gracefully:
 * pending calls are answered 503, raft is closed, the store flushed, then
 * the API closes and the process exits 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "api/api.h"
#include "cluster/cluster.h"
#include "cluster/config.h"
#include "common/log.h"

struct remsd {
    uv_loop_t *loop;
    struct api_server *api;
    struct cluster_node *node;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    bool stopping;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: remsd --config FILE [options]\n"
            "       remsd --node-id N --data-dir DIR --raft-address IP:PORT\n"
            "             --api-address IP:PORT [--peer ID=RAFT,API ...]\n"
            "             [--join IP:PORT] [options]\n"
            "\n"
            "options (each overrides the config file key of the same name):\n"
            "  --election-timeout-ms N   --heartbeat-timeout-ms N\n"
            "  --snapshot-threshold N    --snapshot-trailing N\n"
            "  --max-body-bytes N        --forward-timeout-ms N\n"
            "  --log-level debug|info|warn|error\n"
            "  --version                 --help\n"
            "\n"
            "See docs/configuration.md.\n");
}

static void api_closed_cb(void *data)
{
    struct remsd *d = data;
    /* Closing the handles restores the default actions; a repeated signal
     * in the last moments must not turn a clean stop into a kill. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void node_stopped_cb(void *data)
{
    struct remsd *d = data;
    d->node = NULL;
    api_server_attach(d->api, NULL);
    api_server_stop(d->api, api_closed_cb, d);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct remsd *d = h->data;
    struct rems_log_line l;
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    rems_log_begin(&l, REMS_LOG_INFO, "stopping");
    rems_log_str(&l, "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    rems_log_end(&l);
    cluster_node_stop(d->node, node_stopped_cb, d);
}

int main(int argc, char **argv)
{
    struct config cfg;
    char errmsg[REMS_ERRMSG_SIZE];
    struct remsd d;
    enum rems_log_level level;
    int i;
    int rv;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            int v = RAFT_VERSION_NUMBER;
            printf("remsd %s (libraft %d.%d.%d)\n", REMS_VERSION, v / 10000,
                   (v / 100) % 100, v % 100);
            return 0;
        }
    }
    signal(SIGPIPE, SIG_IGN); /* A dead peer must not kill us. */
    config_defaults(&cfg);
    rv = config_parse_args(&cfg, argc - 1, argv + 1, errmsg);
    if (rv == 0) {
        rv = config_validate(&cfg, errmsg);
    }
    if (rv != 0) {
        fprintf(stderr, "remsd: invalid configuration: %s\n", errmsg);
        return 2;
    }
    if (rems_log_level_parse(cfg.log_level, &level) == 0) {
        rems_log_set_level(level);
    }
    {
        char node[32];
        snprintf(node, sizeof node, "%llu", (unsigned long long)cfg.node_id);
        rems_log_set_node(node);
    }

    memset(&d, 0, sizeof d);
    d.loop = uv_default_loop();
    rv = api_server_start(d.loop, &cfg, &d.api, errmsg);
    if (rv != 0) {
        fprintf(stderr, "remsd: admin API on %s: %s\n", cfg.api_address,
                errmsg);
        rems_log(REMS_LOG_ERROR, "start_failed", errmsg);
        return 1;
    }
    rv = cluster_node_start(d.loop, &cfg, &d.node, errmsg);
    if (rv != 0) {
        fprintf(stderr, "remsd: %s\n", errmsg);
        rems_log(REMS_LOG_ERROR, "start_failed", errmsg);
        return rv == REMS_ECONFIG ? 2 : 1;
    }
    api_server_attach(d.api, d.node);
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = &d;
    d.sigint.data = &d;
    uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d.sigint, signal_cb, SIGINT);
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "serving");
        rems_log_str(&l, "api_address", cfg.api_address);
        rems_log_str(&l, "version", REMS_VERSION);
        rems_log_end(&l);
    }
    uv_run(d.loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(d.loop);
    if (rv != 0) {
        rems_log(REMS_LOG_WARN, "loop_not_empty", uv_strerror(rv));
    }
    rems_log(REMS_LOG_INFO, "exited", "clean stop");
    return 0;
}
