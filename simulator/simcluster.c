/* simulator/simcluster.c: a local remsd cluster for drills, or an attached
 * one. See simulator/simcluster.h.
 *
 * Layout of a local cluster's directory:
 *
 *     <dir>/ca.pem, ca.key          the temporary CA
 *     <dir>/node.pem, node.key      the nodes' certificate (127.0.0.1)
 *     <dir>/node<id>.yaml           each node's configuration
 *     <dir>/node<id>/               each node's data directory
 *     <dir>/node<id>.log            each node's standard output and error
 *
 * Process safety. A started child is recorded in `live` until it is
 * reaped. An atexit() handler SIGKILLs whatever is still there, and each
 * child sets PR_SET_PDEATHSIG, so the kernel kills it when rems-sim dies
 * without running atexit handlers. Nodes are only ever signalled by the
 * PID this process got from fork().
 *
 * The ports are picked free (bind to 127.0.0.1:0, read the port, all
 * sockets held open until every port is picked) and kept across restarts
 * of a node, as its configuration names them. */
#define _GNU_SOURCE /* prctl(PR_SET_PDEATHSIG), mkdtemp, nftw */
#include "simulator/simcluster.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"
#include "simulator/simagents.h"

#define LIVE_MAX 64
#define POLL_MS 50u
#define STATUS_TIMEOUT_MS 1000u
#define ATTACH_TIMEOUT_MS 5000u

/* ------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------ */

static pid_t live[LIVE_MAX];
static bool atexit_done = false;

static void kill_live_at_exit(void)
{
    size_t i;
    for (i = 0; i < LIVE_MAX; i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            kill(live[i], SIGCONT);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    }
}

static int live_add(pid_t pid)
{
    size_t i;
    if (!atexit_done) {
        if (atexit(kill_live_at_exit) != 0) {
            return -1;
        }
        atexit_done = true;
    }
    for (i = 0; i < LIVE_MAX; i++) {
        if (live[i] == 0) {
            live[i] = pid;
            return 0;
        }
    }
    return -1;
}

static void live_remove(pid_t pid)
{
    size_t i;
    for (i = 0; i < LIVE_MAX; i++) {
        if (live[i] == pid) {
            live[i] = 0;
        }
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Record how node @n ended (@status from waitpid). */
static void node_reaped(struct simcluster_node *n, int status)
{
    live_remove(n->pid);
    n->pid = 0;
    n->state = SIMCLUSTER_DOWN;
    if (WIFEXITED(status)) {
        n->exit_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        n->exit_status = 128 + WTERMSIG(status);
    } else {
        n->exit_status = -1;
    }
}

bool simcluster_reap(struct simcluster *c, size_t i)
{
    struct simcluster_node *n = &c->nodes[i];
    int status;
    pid_t r;

    if (n->pid == 0) {
        return n->state != SIMCLUSTER_REMOTE;
    }
    r = waitpid(n->pid, &status, WNOHANG);
    if (r == n->pid) {
        node_reaped(n, status);
        return true;
    }
    if (r < 0 && errno == ECHILD) {
        live_remove(n->pid);
        n->pid = 0;
        n->state = SIMCLUSTER_DOWN;
        return true;
    }
    return false;
}

int simcluster_start_node(struct simcluster *c, size_t i, char *errmsg)
{
    struct simcluster_node *n = &c->nodes[i];
    pid_t parent = getpid();
    pid_t pid;
    int fd;

    PRE(i < c->n);
    if (!c->local) {
        rems_errmsgf(errmsg, "node %llu: not started by rems-sim (attached)",
                     (unsigned long long)n->id);
        return REMS_EUNSUPPORTED;
    }
    simcluster_reap(c, i);
    if (n->pid != 0) {
        rems_errmsgf(errmsg, "node %llu: already running (pid %ld)",
                     (unsigned long long)n->id, (long)n->pid);
        return REMS_EBUSY;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        rems_errmsgf(errmsg, "node %llu: fork: %s", (unsigned long long)n->id,
                     strerror(errno));
        return REMS_EIO;
    }
    if (pid == 0) {
        /* The child: die with rems-sim; output to the node's log. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 0);
            close(fd);
        }
        fd = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(c->remsd, c->remsd, "--config", n->config_path, (char *)NULL);
        fprintf(stderr, "rems-sim: exec %s: %s\n", c->remsd, strerror(errno));
        _exit(127);
    }
    if (live_add(pid) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        rems_errmsgf(errmsg, "node %llu: too many processes",
                     (unsigned long long)n->id);
        return REMS_EIO;
    }
    n->pid = pid;
    n->state = SIMCLUSTER_RUNNING;
    n->exit_status = -1;
    n->starts++;
    return 0;
}

int simcluster_start(struct simcluster *c, char *errmsg)
{
    size_t i;
    int rv;

    for (i = 0; i < c->n; i++) {
        if (c->nodes[i].pid == 0) {
            rv = simcluster_start_node(c, i, errmsg);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static int node_signal(struct simcluster *c, size_t i, int sig)
{
    struct simcluster_node *n = &c->nodes[i];

    PRE(i < c->n);
    if (!c->local) {
        return REMS_EUNSUPPORTED;
    }
    if (n->pid == 0 || simcluster_reap(c, i)) {
        return REMS_EINVAL;
    }
    kill(n->pid, sig);
    return 0;
}

int simcluster_kill(struct simcluster *c, size_t i)
{
    struct simcluster_node *n = &c->nodes[i];
    int status;
    int rv = node_signal(c, i, SIGKILL);

    if (rv != 0) {
        return rv;
    }
    kill(n->pid, SIGCONT);
    /* SIGKILL cannot be caught: the wait is short. */
    if (waitpid(n->pid, &status, 0) == n->pid) {
        node_reaped(n, status);
    }
    return 0;
}

int simcluster_stop(struct simcluster *c, size_t i)
{
    int rv = node_signal(c, i, SIGTERM);
    if (rv == 0) {
        kill(c->nodes[i].pid, SIGCONT);
        c->nodes[i].state = SIMCLUSTER_STOPPING;
    }
    return rv;
}

int simcluster_pause(struct simcluster *c, size_t i)
{
    int rv = node_signal(c, i, SIGSTOP);
    if (rv == 0) {
        c->nodes[i].state = SIMCLUSTER_PAUSED;
    }
    return rv;
}

int simcluster_resume(struct simcluster *c, size_t i)
{
    int rv = node_signal(c, i, SIGCONT);
    if (rv == 0 && c->nodes[i].state == SIMCLUSTER_PAUSED) {
        c->nodes[i].state = SIMCLUSTER_RUNNING;
    }
    return rv;
}

bool simcluster_up(const struct simcluster *c, size_t i)
{
    return c->nodes[i].state == SIMCLUSTER_RUNNING ||
           c->nodes[i].state == SIMCLUSTER_REMOTE;
}

size_t simcluster_index(const struct simcluster *c, uint64_t id)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        if (c->nodes[i].id == id) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* ------------------------------------------------------------------------
 * Blocking HTTP
 * ------------------------------------------------------------------------ */

size_t simcluster_curl_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct simcluster_buf *b = arg;
    size_t n = size * nmemb;
    char *bigger;

    bigger = rems_realloc(b->p, b->len + n + 1);
    if (bigger == NULL) {
        b->oom = true;
        return 0;
    }
    b->p = bigger;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

int simcluster_http(const char *method,
                    const char *address,
                    const char *path,
                    const char *body,
                    unsigned timeout_ms,
                    long *status,
                    char **resp)
{
    return simcluster_http_ex(method, address, path, body, NULL, timeout_ms,
                              status, resp);
}

int simcluster_http_ex(const char *method,
                       const char *address,
                       const char *path,
                       const char *body,
                       const char *const *extra_headers,
                       unsigned timeout_ms,
                       long *status,
                       char **resp)
{
    struct curl_slist *headers = NULL;
    struct simcluster_buf b = {0};
    char url[SIMCLUSTER_ADDR_SIZE + 1024];
    CURLcode rc;
    CURL *h;

    *status = 0;
    h = curl_easy_init();
    if (h == NULL) {
        return REMS_ENOMEM;
    }
    snprintf(url, sizeof url, "http://%s%s", address, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, simcluster_curl_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    for (; extra_headers != NULL && *extra_headers != NULL; extra_headers++) {
        struct curl_slist *more = curl_slist_append(headers, *extra_headers);
        if (more == NULL) {
            curl_slist_free_all(headers);
            curl_easy_cleanup(h);
            return REMS_ENOMEM;
        }
        headers = more;
    }
    if (body != NULL) {
        static const char *const json_headers[] = {
            "Content-Type: application/json", "Expect:"};
        size_t k;
        for (k = 0; k < 2; k++) {
            struct curl_slist *more =
                curl_slist_append(headers, json_headers[k]);
            if (more == NULL) {
                curl_slist_free_all(headers);
                curl_easy_cleanup(h);
                return REMS_ENOMEM;
            }
            headers = more;
        }
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (headers != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    }
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    }
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK || b.oom) {
        rems_free(b.p);
        return b.oom ? REMS_ENOMEM : REMS_EIO;
    }
    if (resp != NULL) {
        if (b.p == NULL) {
            b.p = rems_strdup("");
            if (b.p == NULL) {
                return REMS_ENOMEM;
            }
        }
        *resp = b.p;
    } else {
        rems_free(b.p);
    }
    return 0;
}

/* GET /status of @address as JSON, or NULL. */
static json_t *get_status(const char *address, unsigned timeout_ms)
{
    long status;
    char *body;
    json_t *o;

    if (simcluster_http("GET", address, "/status", NULL, timeout_ms, &status,
                        &body) != 0) {
        return NULL;
    }
    o = status == 200 ? json_loads(body, 0, NULL) : NULL;
    rems_free(body);
    return o;
}

/* One round of the leader check of simcluster_wait_ready(). */
static bool leader_agreed(struct simcluster *c, size_t *leader)
{
    uint64_t leader_id = 0;
    uint64_t term = 0;
    size_t n_leaders = 0;
    size_t n_up = 0;
    size_t index = 0;
    bool agree = true;
    size_t i;

    for (i = 0; i < c->n; i++) {
        json_t *st;
        json_t *l;
        uint64_t this_leader;
        uint64_t this_term;
        const char *role;

        if (c->local) {
            simcluster_reap(c, i);
        }
        if (!simcluster_up(c, i)) {
            continue;
        }
        n_up++;
        st = get_status(c->nodes[i].api_address, STATUS_TIMEOUT_MS);
        if (st == NULL) {
            return false;
        }
        l = json_object_get(st, "leader");
        this_leader = json_is_object(l) ? (uint64_t)json_integer_value(
                                              json_object_get(l, "id"))
                                        : 0;
        this_term = (uint64_t)json_integer_value(json_object_get(st, "term"));
        role = json_string_value(json_object_get(st, "role"));
        if (role != NULL && strcmp(role, "leader") == 0) {
            n_leaders++;
            index = i;
            if (!json_is_true(json_object_get(st, "leader_ready"))) {
                agree = false;
            }
        }
        if (this_leader == 0) {
            agree = false;
        } else if (leader_id == 0) {
            leader_id = this_leader;
            term = this_term;
        } else if (leader_id != this_leader || term != this_term) {
            agree = false;
        }
        json_decref(st);
    }
    if (n_up == 0 || n_leaders != 1 || !agree ||
        c->nodes[index].id != leader_id) {
        return false;
    }
    *leader = index;
    return true;
}

int simcluster_wait_ready(struct simcluster *c,
                          unsigned timeout_ms,
                          size_t *leader)
{
    uint64_t deadline = rems_mono_ms() + timeout_ms;

    for (;;) {
        if (leader_agreed(c, leader)) {
            return 0;
        }
        if (rems_mono_ms() >= deadline) {
            return REMS_ETIMEDOUT;
        }
        sleep_ms(POLL_MS);
    }
}

/* ------------------------------------------------------------------------
 * Creating and attaching
 * ------------------------------------------------------------------------ */

/* Pick @n distinct free TCP ports on 127.0.0.1. */
static int free_ports(uint16_t *ports, size_t n, char *errmsg)
{
    int fds[3 * SIMCLUSTER_MAX_NODES];
    size_t i;
    size_t k;
    int rv = 0;

    PRE(n <= REMS_ARRAY_SIZE(fds));
    for (i = 0; i < n; i++) {
        struct sockaddr_in a;
        socklen_t len = sizeof a;

        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0) {
            rems_errmsgf(errmsg, "pick a free port on 127.0.0.1: %s",
                         strerror(errno));
            if (fds[i] >= 0) {
                close(fds[i]);
            }
            rv = REMS_EIO;
            break;
        }
        ports[i] = ntohs(a.sin_port);
    }
    for (k = 0; k < i; k++) {
        close(fds[k]);
    }
    return rv;
}

static int rm_entry(const char *path,
                    const struct stat *sb,
                    int type,
                    struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The CA and the nodes' certificate, minted in process. */
/* The temporary CA (which also signs the agents' certificates) and the
 * one certificate every node serves (127.0.0.1 and localhost). */
static int make_certs(struct simcluster *c, char *errmsg)
{
    static const char *const names[] = {"127.0.0.1", "localhost"};
    struct simagents_ca *ca = NULL;
    char cert[SIMCLUSTER_PATH_SIZE + 16];
    char key[SIMCLUSTER_PATH_SIZE + 16];
    int rv;

    rv = simagents_ca_create("rems-sim drill CA", 0, c->ca_cert, c->ca_key,
                             errmsg);
    if (rv == 0) {
        rv = simagents_ca_open(c->ca_cert, c->ca_key, &ca, errmsg);
    }
    if (rv == 0) {
        snprintf(cert, sizeof cert, "%s/node.pem", c->dir);
        snprintf(key, sizeof key, "%s/node.key", c->dir);
        rv = simagents_cert_mint_server(ca, "rems-sim node", names, 2, 0, cert,
                                        key, errmsg);
    }
    simagents_ca_close(ca);
    return rv;
}

static int write_config(const struct simcluster *c,
                        const struct simcluster_options *o,
                        const struct simcluster_node *n,
                        char *errmsg)
{
    FILE *fp;
    size_t j;

    fp = fopen(n->config_path, "w");
    if (fp == NULL) {
        rems_errmsgf(errmsg, "%s: %s", n->config_path, strerror(errno));
        return REMS_EIO;
    }
    fprintf(fp,
            "# remsd node %llu of a rems-sim drill\n"
            "node_id: %llu\n"
            "data_dir: \"%s\"\n"
            "raft_address: %s\n"
            "api_address: %s\n"
            "agent_address: %s\n"
            "tls_cert: \"%s/node.pem\"\n"
            "tls_key: \"%s/node.key\"\n"
            "tls_ca: \"%s\"\n"
            "fault_injection: true\n"
            "log_level: %s\n"
            "election_timeout_ms: %u\n"
            "heartbeat_timeout_ms: %u\n"
            "lease_ttl_ms: %u\n"
            "agent_heartbeat_ms: %u\n"
            "forward_timeout_ms: 2000\n"
            "# Drills want remediation and drift seen in seconds.\n"
            "reconcile_interval_ms: %u\n"
            "reconcile_grace_ms: 2000\n"
            "reconcile_command_ttl_ms: 10000\n"
            "reconcile_rate_window_ms: 10000\n"
            "reconcile_max_per_agent: 100\n"
            "reconcile_max_per_site: 100000\n"
            "reconcile_max_global: 100000\n"
            "reconcile_max_in_flight: 1000\n"
            "peers:\n",
            (unsigned long long)n->id, (unsigned long long)n->id, n->data_dir,
            n->raft_address, n->api_address, n->agent_address, c->dir, c->dir,
            c->ca_cert, o->log_level != NULL ? o->log_level : "info",
            o->election_timeout_ms, o->heartbeat_timeout_ms, o->lease_ttl_ms,
            o->agent_heartbeat_ms, o->reconcile_interval_ms);
    for (j = 0; j < c->n; j++) {
        fprintf(fp, "  - {id: %llu, raft_address: %s, api_address: %s}\n",
                (unsigned long long)c->nodes[j].id, c->nodes[j].raft_address,
                c->nodes[j].api_address);
    }
    if (fclose(fp) != 0) {
        rems_errmsgf(errmsg, "%s: %s", n->config_path, strerror(errno));
        return REMS_EIO;
    }
    return 0;
}

int simcluster_create(struct simcluster *c,
                      const struct simcluster_options *o,
                      char *errmsg)
{
    uint16_t ports[3 * SIMCLUSTER_MAX_NODES];
    const char *tmp = o->parent != NULL ? o->parent : getenv("TMPDIR");
    size_t i;
    int rv;

    PRE(o->n_nodes >= 1 && o->n_nodes <= SIMCLUSTER_MAX_NODES);
    memset(c, 0, sizeof *c);
    c->local = true;
    c->n = o->n_nodes;
    snprintf(c->remsd, sizeof c->remsd, "%s", o->remsd);
    if (access(c->remsd, X_OK) != 0) {
        rems_errmsgf(errmsg, "%s: %s", c->remsd, strerror(errno));
        rv = REMS_EIO;
        goto err;
    }
    snprintf(c->dir, sizeof c->dir, "%s/rems-sim-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(c->dir) == NULL) {
        rems_errmsgf(errmsg, "%s: %s", c->dir, strerror(errno));
        rv = REMS_EIO;
        goto err;
    }
    snprintf(c->ca_cert, sizeof c->ca_cert, "%s/ca.pem", c->dir);
    snprintf(c->ca_key, sizeof c->ca_key, "%s/ca.key", c->dir);
    rv = free_ports(ports, 3 * c->n, errmsg);
    if (rv != 0) {
        goto err_after_dir;
    }
    for (i = 0; i < c->n; i++) {
        struct simcluster_node *n = &c->nodes[i];
        n->id = i + 1;
        snprintf(n->raft_address, sizeof n->raft_address, "127.0.0.1:%u",
                 (unsigned)ports[3 * i]);
        snprintf(n->api_address, sizeof n->api_address, "127.0.0.1:%u",
                 (unsigned)ports[3 * i + 1]);
        snprintf(n->agent_address, sizeof n->agent_address, "127.0.0.1:%u",
                 (unsigned)ports[3 * i + 2]);
        snprintf(n->data_dir, sizeof n->data_dir, "%s/node%zu", c->dir, i + 1);
        snprintf(n->config_path, sizeof n->config_path, "%s/node%zu.yaml",
                 c->dir, i + 1);
        snprintf(n->log_path, sizeof n->log_path, "%s/node%zu.log", c->dir,
                 i + 1);
        n->exit_status = -1;
    }
    rv = make_certs(c, errmsg);
    if (rv != 0) {
        goto err_after_dir;
    }
    for (i = 0; i < c->n; i++) {
        rv = write_config(c, o, &c->nodes[i], errmsg);
        if (rv != 0) {
            goto err_after_dir;
        }
    }
    return 0;

err_after_dir:
    remove_tree(c->dir);
err:
    POST(rv != 0);
    memset(c, 0, sizeof *c);
    return rv;
}

/* "a.b.c.d:port", at most SIMCLUSTER_ADDR_SIZE - 1 bytes. */
static bool address_valid(const char *a)
{
    const char *colon = strrchr(a, ':');
    struct in_addr ip;
    char host[SIMCLUSTER_ADDR_SIZE];
    uint64_t port;

    if (colon == NULL || strlen(a) >= SIMCLUSTER_ADDR_SIZE ||
        (size_t)(colon - a) >= sizeof host) {
        return false;
    }
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = '\0';
    return inet_pton(AF_INET, host, &ip) == 1 &&
           rems_parse_u64(colon + 1, &port) == 0 && port >= 1 &&
           port <= 65535;
}

int simcluster_attach(struct simcluster *c,
                      const char *const *api,
                      const char *const *agent,
                      size_t n,
                      const char *ca_cert,
                      const char *ca_key,
                      char *errmsg)
{
    size_t i;
    json_t *st;

    memset(c, 0, sizeof *c);
    if (n < 1 || n > SIMCLUSTER_MAX_NODES) {
        rems_errmsgf(errmsg, "--endpoints: 1 to %u nodes",
                     SIMCLUSTER_MAX_NODES);
        return REMS_EINVAL;
    }
    snprintf(c->ca_cert, sizeof c->ca_cert, "%s", ca_cert);
    snprintf(c->ca_key, sizeof c->ca_key, "%s", ca_key);
    c->n = n;
    for (i = 0; i < n; i++) {
        struct simcluster_node *node = &c->nodes[i];
        if (!address_valid(api[i]) || !address_valid(agent[i])) {
            rems_errmsgf(errmsg,
                         "node %zu: %s, %s: must be IPv4:port (the admin API "
                         "and the agent listener)",
                         i + 1, api[i], agent[i]);
            memset(c, 0, sizeof *c);
            return REMS_EINVAL;
        }
        snprintf(node->api_address, sizeof node->api_address, "%s", api[i]);
        snprintf(node->agent_address, sizeof node->agent_address, "%s",
                 agent[i]);
        node->state = SIMCLUSTER_REMOTE;
        node->exit_status = -1;
        st = get_status(api[i], ATTACH_TIMEOUT_MS);
        if (st == NULL) {
            rems_errmsgf(errmsg, "%s: GET /status did not answer 200 with "
                                 "JSON",
                         api[i]);
            memset(c, 0, sizeof *c);
            return REMS_EIO;
        }
        node->id = (uint64_t)json_integer_value(json_object_get(st, "node_id"));
        json_decref(st);
    }
    return 0;
}

void simcluster_close(struct simcluster *c, bool keep)
{
    uint64_t deadline;
    size_t i;
    bool left;

    if (!c->local) {
        return;
    }
    for (i = 0; i < c->n; i++) {
        if (c->nodes[i].pid != 0) {
            kill(c->nodes[i].pid, SIGTERM);
            kill(c->nodes[i].pid, SIGCONT);
        }
    }
    deadline = rems_mono_ms() + SIMCLUSTER_STOP_GRACE_MS;
    do {
        left = false;
        for (i = 0; i < c->n; i++) {
            if (!simcluster_reap(c, i)) {
                left = true;
            }
        }
        if (left) {
            sleep_ms(20);
        }
    } while (left && rems_mono_ms() < deadline);
    for (i = 0; i < c->n; i++) {
        if (c->nodes[i].pid != 0) {
            int status;
            kill(c->nodes[i].pid, SIGKILL);
            if (waitpid(c->nodes[i].pid, &status, 0) == c->nodes[i].pid) {
                node_reaped(&c->nodes[i], status);
            }
        }
    }
    if (!keep && c->dir[0] != '\0') {
        remove_tree(c->dir);
    }
    c->local = false;
}
