/* rems-agent: runs and supervises the local services of one machine for a
 * rems cluster, and carries out the leader's commands.
 *
 * Order of start: parse and validate the configuration, and check that
 * the certificate names the configured agent id (a wrong one exits 2
 * naming the key, before anything touches the data dir); with
 * --check-config also load the TLS files, then exit. Otherwise create and
 * lock the data dir (<data_dir>/LOCK, flock: a second agent on the same
 * dir exits 1), open the fence (a damaged one exits 1: the agent would
 * not know which commands already ran), open the TLS context and the
 * supervisor, add the configured services, start the link, then start
 * the services marked autostart.
 *
 * SIGTERM or SIGINT stops gracefully: the link refuses new commands
 * (nack busy) while every service is stopped in reverse dependency order
 * (their last states are still reported), then the link closes, the
 * supervisor closes, and the process exits 0.
 *
 * Exit codes: 0 after a clean stop, 1 when the agent cannot start or run,
 * 2 for a wrong command line or configuration. Logs are JSON lines on
 * stderr (common/log.h). */
#define _GNU_SOURCE /* flock */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "agentproto/agent_config.h"
#include "agentproto/agent_fence.h"
#include "agentproto/agent_link.h"
#include "agentproto/agent_services.h"
#include "agentproto/supervisor.h"
#include "agentproto/tls.h"
#include "common/heap.h"
#include "common/log.h"

struct agent {
    uv_loop_t loop;
    struct agent_config cfg;
    char log_dir[AGENT_CONFIG_PATH_SIZE + 8];
    int lock_fd;
    struct agent_fence *fence;
    struct tls_context *tls;
    struct supervisor *sup;
    struct agent_link *link;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    bool signals;
    bool stopping;
    int exit_code;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rems-agent --config FILE [--data-dir DIR] "
            "[--log-level LEVEL]\n"
            "       rems-agent --config FILE --check-config\n"
            "       rems-agent --version | --help\n"
            "\n"
            "  --config FILE       the YAML configuration (required)\n"
            "  --data-dir DIR      overrides data_dir of the file\n"
            "  --log-level LEVEL   overrides log_level: debug|info|warn|error\n"
            "  --check-config      check the configuration and the TLS files,"
            "\n"
            "                      print a summary and exit (0: valid)\n"
            "  --version           print the version and exit\n"
            "  --help              print this help and exit\n"
            "\n"
            "See docs/agent-config.md.\n");
}

/* ------------------------------------------------------------------------
 * Stopping
 * ------------------------------------------------------------------------ */

static void close_signals(struct agent *a)
{
    if (!a->signals) {
        return;
    }
    a->signals = false;
    /* Closing the handles restores the default actions; a repeated signal
     * in the last moments must not turn a clean stop into a kill. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void on_supervisor_closed(struct supervisor *s)
{
    struct agent *a = supervisor_data(s);

    a->sup = NULL;
    close_signals(a);
}

static void on_link_closed(void *data)
{
    struct agent *a = data;

    a->link = NULL;
    if (a->sup != NULL) {
        supervisor_close(a->sup, on_supervisor_closed);
    } else {
        close_signals(a);
    }
}

static void on_all_stopped(struct supervisor *s)
{
    struct agent *a = supervisor_data(s);

    rems_log(REMS_LOG_INFO, "services_stopped", "every service is stopped");
    if (a->link != NULL) {
        agent_link_close(a->link, on_link_closed, a);
    } else {
        supervisor_close(a->sup, on_supervisor_closed);
    }
}

/* Stop everything; the loop ends once all is closed. */
static void agent_stop(struct agent *a)
{
    if (a->stopping) {
        return;
    }
    a->stopping = true;
    if (a->link != NULL) {
        agent_link_drain(a->link);
    }
    if (a->sup != NULL) {
        supervisor_stop_all(a->sup, on_all_stopped);
    } else if (a->link != NULL) {
        agent_link_close(a->link, on_link_closed, a);
    } else {
        close_signals(a);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;
    struct rems_log_line l;

    rems_log_begin(&l, REMS_LOG_INFO,
                   a->stopping ? "already_stopping" : "stopping");
    rems_log_str(&l, "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    rems_log_end(&l);
    agent_stop(a);
}

/* ------------------------------------------------------------------------
 * Services
 * ------------------------------------------------------------------------ */

static void on_sup_event(struct supervisor *s, const struct sup_event *ev)
{
    struct agent *a = supervisor_data(s);
    struct proto_service st;
    struct rems_log_line l;

    if (ev->kind == SUP_EVENT_WARNING) {
        rems_log_begin(&l, REMS_LOG_WARN, "service_warning");
        rems_log_str(&l, "service", ev->service);
        rems_log_str(&l, "msg", ev->message != NULL ? ev->message : "");
        rems_log_end(&l);
        return;
    }
    if (ev->kind != SUP_EVENT_STATE) {
        return;
    }
    st = ev->status;
    if (st.service.len == 0 && ev->service != NULL) {
        st.service.p = ev->service;
        st.service.len = strlen(ev->service);
    }
    if (ev->removed) {
        st.message = PROTO_STR("removed from the manifest");
    }
    /* The supervisor logs every change itself; this says it is queued. */
    rems_log_begin(&l, REMS_LOG_DEBUG, "report_queued");
    rems_log_strn(&l, "service", st.service.p, st.service.len);
    rems_log_str(&l, "state", proto_state_name(st.state));
    rems_log_u64(&l, "generation", st.generation);
    rems_log_end(&l);
    if (a->link != NULL) {
        agent_link_report(a->link, &st);
    }
}

/* Add the configured services, in dependency order. */
static int put_services(struct agent *a, char *errmsg)
{
    const struct agent_config *c = &a->cfg;
    char msg[REMS_ERRMSG_SIZE];
    size_t *order;
    size_t i;
    int rv;

    if (c->n_services == 0) {
        return 0;
    }
    order = rems_calloc(c->n_services, sizeof *order);
    if (order == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    rv = sup_spec_order((const struct sup_service_spec *const *)c->services,
                        c->n_services, order, msg);
    for (i = 0; rv == 0 && i < c->n_services; i++) {
        rv = supervisor_put(a->sup, c->services[order[i]], msg);
        if (rv != 0) {
            rems_errmsgf(errmsg, "services: %s: %s",
                         c->services[order[i]]->name, msg);
        }
    }
    if (rv != 0 && i == 0) {
        rems_errmsgf(errmsg, "services: %s", msg);
    }
    rems_free(order);
    return rv;
}

/* ------------------------------------------------------------------------
 * Starting
 * ------------------------------------------------------------------------ */

/* Make @dir (one level) unless it exists. */
static int make_dir(const char *dir, char *errmsg)
{
    struct stat st;

    if (mkdir(dir, 0700) == 0) {
        return 0;
    }
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        return 0;
    }
    rems_errmsgf(errmsg, "create directory %s: %s", dir,
                 errno == EEXIST ? "exists and is not a directory"
                                 : strerror(errno));
    return REMS_EIO;
}

static int lock_data_dir(struct agent *a, char *errmsg)
{
    char path[AGENT_CONFIG_PATH_SIZE + 8];
    char pid[32];
    int len;

    snprintf(path, sizeof path, "%s/LOCK", a->cfg.data_dir);
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (a->lock_fd < 0) {
        rems_errmsgf(errmsg, "open %s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "?";
        ssize_t r = pread(a->lock_fd, other, sizeof other - 1, 0);
        if (r > 0) {
            other[r] = '\0';
            other[strcspn(other, "\n")] = '\0';
        }
        rems_errmsgf(errmsg,
                     "data_dir %s is in use by another rems-agent (pid %s)",
                     a->cfg.data_dir, other);
        close(a->lock_fd);
        a->lock_fd = -1;
        return REMS_EBUSY;
    }
    len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(a->lock_fd, 0) != 0 ||
        pwrite(a->lock_fd, pid, (size_t)len, 0) != len) {
        /* The pid is only informational. */
    }
    return 0;
}

static int
tls_open(const struct agent_config *c, struct tls_context **out, char *errmsg)
{
    struct tls_context_options o = {0};

    o.role = TLS_ROLE_CLIENT;
    o.cert_file = c->tls_cert;
    o.key_file = c->tls_key;
    o.ca_file = c->tls_ca;
    o.crl_file = c->tls_crl[0] != '\0' ? c->tls_crl : NULL;
    return tls_context_open(&o, out, errmsg);
}

/* The configuration, from the command line and the file. Returns 0, 2
 * (invalid) or -1 (done: --help, --version). */
static int configure(struct agent *a, int argc, char **argv, bool *check)
{
    struct agent_cli cli;
    char errmsg[REMS_ERRMSG_SIZE];
    enum rems_log_level level;
    int rv;

    rv = agent_config_parse_args(argc - 1, argv + 1, &cli, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-agent: %s (see --help)\n", errmsg);
        return 2;
    }
    if (cli.help) {
        usage(stdout);
        return -1;
    }
    if (cli.version) {
        printf("rems-agent %s (protocol %d)\n", REMS_VERSION, PROTO_VERSION);
        return -1;
    }
    rv = agent_config_load_file(&a->cfg, cli.config, errmsg);
    if (rv == 0) {
        rv = agent_config_apply_cli(&a->cfg, &cli, errmsg);
    }
    if (rv == 0) {
        rv = agent_config_validate(&a->cfg, errmsg);
    }
    if (rv == 0) {
        rv = agent_config_check_cert(&a->cfg, errmsg);
    }
    if (rv != 0) {
        fprintf(stderr, "rems-agent: invalid configuration: %s\n", errmsg);
        return 2;
    }
    if (rems_log_level_parse(a->cfg.log_level, &level) == 0) {
        rems_log_set_level(level);
    }
    rems_log_set_node(a->cfg.id);
    *check = cli.check_config;
    return 0;
}

static int check_config(struct agent *a)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct tls_context *tls;
    int rv;

    rv = tls_open(&a->cfg, &tls, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-agent: invalid configuration: %s\n", errmsg);
        return rv == REMS_ENOMEM ? 1 : 2;
    }
    tls_context_close(tls);
    printf("rems-agent: configuration valid: agent %s, %zu endpoint%s, "
           "%zu service%s, data_dir %s\n",
           a->cfg.id, a->cfg.n_endpoints, a->cfg.n_endpoints == 1 ? "" : "s",
           a->cfg.n_services, a->cfg.n_services == 1 ? "" : "s",
           a->cfg.data_dir);
    return 0;
}

/* Everything that needs no loop: data dir, lock, fence, TLS. */
static int open_resources(struct agent *a, char *errmsg)
{
    int rv;

    rv = make_dir(a->cfg.data_dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = lock_data_dir(a, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = agent_fence_open(a->cfg.data_dir, (size_t)a->cfg.executed_ids_kept,
                          &a->fence, errmsg);
    if (rv == REMS_ECORRUPT) {
        /* The message names the file and the damage. */
        return rv;
    }
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, "fence");
        return rv;
    }
    snprintf(a->log_dir, sizeof a->log_dir, "%s/logs", a->cfg.data_dir);
    rv = make_dir(a->log_dir, errmsg);
    if (rv != 0) {
        return rv;
    }
    return tls_open(&a->cfg, &a->tls, errmsg);
}

/* The supervisor, the services and the link, on the loop. */
static int start(struct agent *a, char *errmsg)
{
    struct supervisor_options so = {0};
    struct agent_link_options lo = {0};
    struct rems_log_line l;
    int rv;

    so.log_dir = a->log_dir;
    so.work_dir = a->cfg.data_dir;
    so.event_cb = on_sup_event;
    so.data = a;
    rv = supervisor_open(&a->loop, &so, &a->sup, errmsg);
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, "supervisor");
        return rv;
    }
    rv = put_services(a, errmsg);
    if (rv != 0) {
        return rv;
    }
    lo.config = &a->cfg;
    lo.tls = a->tls;
    lo.fence = a->fence;
    agent_services_supervisor(a->sup, &lo.services);
    lo.agent_version = REMS_VERSION;
    lo.max_frame = (size_t)a->cfg.max_frame_bytes;
    rv = agent_link_open(&a->loop, &lo, &a->link, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = agent_link_start(a->link, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = supervisor_start_all(a->sup, errmsg);
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, "start services");
        return rv;
    }
    rems_log_begin(&l, REMS_LOG_INFO, "agent_started");
    rems_log_str(&l, "version", REMS_VERSION);
    rems_log_str(&l, "data_dir", a->cfg.data_dir);
    rems_log_u64(&l, "highest_term", agent_fence_highest_term(a->fence));
    rems_log_u64(&l, "services", a->cfg.n_services);
    rems_log_u64(&l, "endpoints", a->cfg.n_endpoints);
    rems_log_end(&l);
    return 0;
}

int main(int argc, char **argv)
{
    static struct agent a; /* Large (the configuration); not on the stack. */
    char errmsg[REMS_ERRMSG_SIZE];
    bool check = false;
    int rv;

    /* One allocator for everything (common/heap.h). */
    uv_replace_allocator(rems_malloc, rems_realloc, rems_calloc, rems_free);
    json_set_alloc_funcs(rems_malloc, rems_free);
    signal(SIGPIPE, SIG_IGN); /* A dead peer must not kill us. */

    a.lock_fd = -1;
    agent_config_init(&a.cfg);
    rv = configure(&a, argc, argv, &check);
    if (rv != 0) {
        agent_config_close(&a.cfg);
        return rv < 0 ? 0 : rv;
    }
    if (check) {
        rv = check_config(&a);
        agent_config_close(&a.cfg);
        return rv;
    }
    rv = open_resources(&a, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-agent: %s\n", errmsg);
        if (rv == REMS_ECORRUPT) {
            fprintf(stderr,
                    "rems-agent: the fence records which commands already "
                    "ran; without it a command could run twice. Restore it "
                    "from a backup, or see \"The fence\" in "
                    "docs/agent-config.md before removing it.\n");
        }
        rems_log(REMS_LOG_ERROR, "start_failed", errmsg);
        a.exit_code = rv == REMS_ECONFIG ? 2 : 1;
        goto out;
    }
    if (uv_loop_init(&a.loop) != 0) {
        rems_log(REMS_LOG_ERROR, "start_failed", "cannot make the event loop");
        a.exit_code = 1;
        goto out;
    }
    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    a.sigterm.data = &a;
    a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    a.signals = true;
    rv = start(&a, errmsg);
    if (rv != 0) {
        fprintf(stderr, "rems-agent: %s\n", errmsg);
        rems_log(REMS_LOG_ERROR, "start_failed", errmsg);
        a.exit_code = 1;
        agent_stop(&a);
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&a.loop);
    if (rv != 0) {
        rems_log(REMS_LOG_WARN, "loop_not_empty", uv_strerror(rv));
    }

out:
    agent_fence_close(a.fence);
    tls_context_close(a.tls);
    if (a.lock_fd >= 0) {
        close(a.lock_fd);
    }
    agent_config_close(&a.cfg);
    rems_log(REMS_LOG_INFO, "exited",
             a.exit_code == 0 ? "clean stop" : "stopped after a failure");
    return a.exit_code;
}
