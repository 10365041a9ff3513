/* Real remsd processes, loopback ports, blocking HTTP and bounded polling
 * for the integration tests. See tests/lib/proc.h.
 *
 * Process safety. A started child is recorded in `live` until it is
 * reaped. Three layers make sure none survives its test: the fixtures'
 * teardowns stop their clusters (SIGTERM, then SIGKILL after a grace
 * period); an atexit() handler SIGKILLs whatever is still in `live`; and
 * each child sets PR_SET_PDEATHSIG, so the kernel kills it when the test
 * process dies without running atexit handlers (a crash, CTest's timeout
 * kill). */
#define _GNU_SOURCE /* prctl(PR_SET_PDEATHSIG) */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/lib/proc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIVE_MAX 64
#define POLL_MS 50
#define STOP_GRACE_MS 10000
#define HTTP_TIMEOUT_MS 10000L
#define LOG_TAIL_LINES 60

/* ------------------------------------------------------------------ */
/* Processes.                                                           */

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

static void live_add(pid_t pid)
{
    size_t i;
    if (!atexit_done) {
        atexit(kill_live_at_exit);
        atexit_done = true;
    }
    for (i = 0; i < LIVE_MAX; i++) {
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
    }
    fprintf(stderr, "proc: more than %d live processes\n", LIVE_MAX);
    kill(pid, SIGKILL);
    abort();
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

uint64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void test_sleep_ms(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int test_proc_start(struct test_proc *p,
                    const char *path,
                    char *const argv[],
                    const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid;

    if (p->pid > 0) {
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        abort();
    }
    if (pid == 0) {
        int fd;
        /* Die with the test process, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 0);
            close(fd);
        }
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(path, argv);
        fprintf(stderr, "proc: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    live_add(pid);
    p->pid = pid;
    p->status = -1;
    p->exited = false;
    p->paused = false;
    return 0;
}

bool test_proc_running(const struct test_proc *p)
{
    return p->pid > 0;
}

int test_proc_signal(struct test_proc *p, int sig)
{
    if (p->pid <= 0) {
        return -1;
    }
    if (kill(p->pid, sig) != 0) {
        return -1;
    }
    if (sig == SIGSTOP) {
        p->paused = true;
    } else if (sig == SIGCONT) {
        p->paused = false;
    }
    return 0;
}

int test_proc_wait(struct test_proc *p, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    int st;
    pid_t r;

    if (p->pid <= 0) {
        return p->exited ? p->status : -1;
    }
    for (;;) {
        r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            if (WIFEXITED(st)) {
                p->status = WEXITSTATUS(st);
            } else if (WIFSIGNALED(st)) {
                p->status = 128 + WTERMSIG(st);
            } else {
                continue; /* Stopped or continued: not an exit. */
            }
            live_remove(p->pid);
            p->pid = 0;
            p->exited = true;
            return p->status;
        }
        if (r < 0 && errno != EINTR) {
            /* Not our child any more (reaped elsewhere): treat as gone. */
            live_remove(p->pid);
            p->pid = 0;
            p->exited = true;
            p->status = -1;
            return -1;
        }
        if (test_now_ms() >= deadline) {
            return -1;
        }
        test_sleep_ms(10);
    }
}

/* Wait up to @grace_ms for @p, which was sent SIGTERM, then SIGKILL it.
 * Only one SIGTERM: remsd restores the default action once it has begun
 * to stop, so a second one would kill it. */
static int stop_wait(struct test_proc *p, unsigned grace_ms)
{
    int rv = test_proc_wait(p, grace_ms);
    if (rv == -1 && p->pid > 0) {
        fprintf(stderr, "proc: pid %ld ignored SIGTERM for %u ms: SIGKILL\n",
                (long)p->pid, grace_ms);
        kill(p->pid, SIGKILL);
        kill(p->pid, SIGCONT);
        test_proc_wait(p, 60000);
        return -1;
    }
    return rv;
}

int test_proc_stop(struct test_proc *p, unsigned grace_ms)
{
    if (p->pid <= 0) {
        return -2;
    }
    kill(p->pid, SIGTERM);
    kill(p->pid, SIGCONT); /* A stopped process must see the SIGTERM. */
    p->paused = false;
    return stop_wait(p, grace_ms);
}

int test_proc_run(const char *path,
                  char *const argv[],
                  const char *log_path,
                  unsigned timeout_ms)
{
    struct test_proc p = {0};
    int rv;
    test_proc_start(&p, path, argv, log_path);
    rv = test_proc_wait(&p, timeout_ms);
    if (rv == -1 && p.pid > 0) {
        fprintf(stderr, "proc: %s still runs after %u ms: SIGKILL\n", path,
                timeout_ms);
        kill(p.pid, SIGKILL);
        test_proc_wait(&p, 60000);
        return -1;
    }
    return rv;
}

void test_free_ports(uint16_t *ports, size_t n)
{
    int fds[2 * TEST_CLUSTER_MAX + 8];
    size_t i;

    assert_true(n <= sizeof fds / sizeof fds[0]);
    for (i = 0; i < n; i++) {
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        assert_int_equal(bind(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(getsockname(fds[i], (struct sockaddr *)&a, &len), 0);
        ports[i] = ntohs(a.sin_port);
    }
    /* Held open together, the ports are distinct. */
    for (i = 0; i < n; i++) {
        close(fds[i]);
    }
}

char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    size_t r;

    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        if (cap - len < 4096) {
            char *p;
            cap = cap == 0 ? 8192 : cap * 2;
            p = realloc(buf, cap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

bool test_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

const char *test_remsd_path(void)
{
    const char *p = getenv("REMSD");
    if (p != NULL && p[0] != '\0') {
        return p;
    }
#ifdef REMSD_PATH
    return REMSD_PATH;
#else
    fail_msg("set REMSD to the path of the remsd binary");
    return NULL;
#endif
}

/* ------------------------------------------------------------------ */
/* Waiting.                                                             */

bool test_wait_for(bool (*pred)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        if (pred(arg)) {
            return true;
        }
        if (test_now_ms() >= deadline) {
            return pred(arg);
        }
        test_sleep_ms(POLL_MS);
    }
}

/* ------------------------------------------------------------------ */
/* HTTP.                                                                */

struct grow {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

static size_t grow_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct grow *g = userdata;
    size_t n = size * nmemb;
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap == 0 ? 1024 : g->cap;
        char *p;
        while (cap < g->len + n + 1) {
            cap *= 2;
        }
        p = realloc(g->data, cap);
        if (p == NULL) {
            g->failed = true;
            return 0;
        }
        g->data = p;
        g->cap = cap;
    }
    memcpy(g->data + g->len, ptr, n);
    g->len += n;
    g->data[g->len] = '\0';
    return n;
}

static char *grow_take(struct grow *g)
{
    char *p = g->data;
    if (p == NULL) {
        p = calloc(1, 1);
    }
    g->data = NULL;
    return p;
}

int test_http_n(const char *method,
                const char *url,
                const char *const headers[],
                const char *body,
                size_t body_len,
                long *status,
                char **resp_body,
                char **resp_headers)
{
    static bool global_done = false;
    struct grow b = {0};
    struct grow h = {0};
    struct curl_slist *list = NULL;
    CURLcode rc;
    CURL *easy;
    size_t i;

    if (!global_done) {
        assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        global_done = true;
    }
    *status = 0;
    if (resp_body != NULL) {
        *resp_body = NULL;
    }
    if (resp_headers != NULL) {
        *resp_headers = NULL;
    }
    easy = curl_easy_init();
    assert_non_null(easy);
    for (i = 0; headers != NULL && headers[i] != NULL; i++) {
        list = curl_slist_append(list, headers[i]);
        assert_non_null(list);
    }
    list = curl_slist_append(list, "Expect:");
    assert_non_null(list);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    /* Send "a/../b" as it is: the server must refuse it, not curl fix it. */
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, HTTP_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, grow_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, grow_cb);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &h);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body != NULL || strcmp(method, "PUT") == 0 ||
        strcmp(method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(body != NULL ? body_len : 0));
    }
    rc = curl_easy_perform(easy);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
        if (resp_body != NULL) {
            *resp_body = grow_take(&b);
        }
        if (resp_headers != NULL) {
            *resp_headers = grow_take(&h);
        }
    }
    free(b.data);
    free(h.data);
    curl_slist_free_all(list);
    curl_easy_cleanup(easy);
    return (int)rc;
}

int test_http(const char *method,
              const char *url,
              const char *const headers[],
              const char *body,
              long *status,
              char **resp_body,
              char **resp_headers)
{
    return test_http_n(method, url, headers, body,
                       body != NULL ? strlen(body) : 0, status, resp_body,
                       resp_headers);
}

json_t *test_http_json(const char *method,
                       const char *url,
                       const char *const headers[],
                       const char *body,
                       long *status,
                       char **resp_headers)
{
    char *text = NULL;
    json_error_t jerr;
    json_t *o;

    if (test_http(method, url, headers, body, status, &text, resp_headers) !=
        0) {
        return NULL;
    }
    o = json_loads(text, JSON_DECODE_ANY, &jerr);
    free(text);
    return o;
}

bool test_http_header(const char *resp_headers,
                      const char *name,
                      char *out,
                      size_t cap)
{
    const char *p;
    const char *last = resp_headers;
    size_t nlen = strlen(name);

    if (resp_headers == NULL) {
        return false;
    }
    /* Only the final response's block (after any 1xx). */
    for (p = resp_headers; (p = strstr(p, "HTTP/")) != NULL; p++) {
        if (p == resp_headers || p[-1] == '\n') {
            last = p;
        }
    }
    for (p = last; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t llen = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (llen > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            const char *end = p + llen;
            size_t vlen;
            while (v < end && (*v == ' ' || *v == '\t')) {
                v++;
            }
            while (end > v && isspace((unsigned char)end[-1])) {
                end--;
            }
            vlen = (size_t)(end - v);
            if (vlen >= cap) {
                vlen = cap - 1;
            }
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        if (eol == NULL) {
            break;
        }
        p = eol + 1;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Clusters.                                                            */

static void node_define(struct test_cluster *c,
                        size_t i,
                        uint16_t raft_port,
                        uint16_t api_port)
{
    struct test_node *n = &c->nodes[i];
    char dir[TEST_TMPDIR_SIZE];

    /* Local copies: GCC cannot tell that c->dir and n do not overlap. */
    memcpy(dir, c->dir, sizeof dir);
    n->id = (uint64_t)i + 1;
    snprintf(n->raft_address, sizeof n->raft_address, "127.0.0.1:%u",
             (unsigned)raft_port);
    snprintf(n->api_address, sizeof n->api_address, "127.0.0.1:%u",
             (unsigned)api_port);
    snprintf(n->data_dir, sizeof n->data_dir, "%s/node%zu", dir, i + 1);
    snprintf(n->log_path, sizeof n->log_path, "%s/node%zu.log", dir, i + 1);
    snprintf(n->id_arg, sizeof n->id_arg, "%zu", i + 1);
    snprintf(n->peer_arg, sizeof n->peer_arg, "%zu=127.0.0.1:%u,127.0.0.1:%u",
             i + 1, (unsigned)raft_port, (unsigned)api_port);
    n->join[0] = '\0';
    n->omit_peers = false;
    memset(&n->proc, 0, sizeof n->proc);
}

void test_cluster_init(struct test_cluster *c,
                       size_t n,
                       const char *const extra[])
{
    uint16_t ports[2 * TEST_CLUSTER_MAX];
    size_t i;

    assert_true(n >= 1 && n <= TEST_CLUSTER_MAX);
    memset(c, 0, sizeof *c);
    test_tmpdir_make(c->dir);
    c->bin = test_remsd_path();
    c->n = n;
    c->n_founders = n;
    /* All ports at once, so that they are distinct. */
    test_free_ports(ports, 2 * n);
    for (i = 0; i < n; i++) {
        node_define(c, i, ports[2 * i], ports[2 * i + 1]);
    }
    for (i = 0; extra != NULL && extra[i] != NULL; i++) {
        assert_true(c->n_extra < TEST_CLUSTER_MAX_EXTRA);
        c->extra[c->n_extra++] = extra[i];
    }
}

static bool port_taken(const struct test_cluster *c, uint16_t port)
{
    char addr[TEST_ADDR_SIZE];
    size_t j;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    for (j = 0; j < c->n; j++) {
        if (strcmp(c->nodes[j].raft_address, addr) == 0 ||
            strcmp(c->nodes[j].api_address, addr) == 0 ||
            strcmp(c->nodes[j].agent_address, addr) == 0) {
            return true;
        }
    }
    return false;
}

/* A free port no node of @c uses. */
static uint16_t free_port_for(const struct test_cluster *c)
{
    uint16_t p;
    do {
        test_free_ports(&p, 1);
    } while (port_taken(c, p));
    return p;
}

void test_cluster_enable_agents(struct test_cluster *c,
                                const char *cert,
                                const char *key,
                                const char *ca)
{
    size_t i;
    snprintf(c->tls_cert, sizeof c->tls_cert, "%s", cert);
    snprintf(c->tls_key, sizeof c->tls_key, "%s", key);
    snprintf(c->tls_ca, sizeof c->tls_ca, "%s", ca);
    for (i = 0; i < c->n; i++) {
        if (c->nodes[i].agent_address[0] == '\0') {
            snprintf(c->nodes[i].agent_address, TEST_ADDR_SIZE,
                     "127.0.0.1:%u", (unsigned)free_port_for(c));
        }
    }
}

size_t test_cluster_add_joiner(struct test_cluster *c,
                               const char *join_api_address)
{
    size_t i = c->n;
    uint16_t ports[2];

    assert_true(i < TEST_CLUSTER_MAX);
    /* Free now, but not one of a node that is merely stopped. */
    do {
        test_free_ports(ports, 2);
    } while (port_taken(c, ports[0]) || port_taken(c, ports[1]));
    node_define(c, i, ports[0], ports[1]);
    snprintf(c->nodes[i].join, sizeof c->nodes[i].join, "%s", join_api_address);
    c->n++;
    return i;
}

void test_cluster_argv(struct test_cluster *c, size_t i, char **argv)
{
    struct test_node *n = &c->nodes[i];
    size_t k = 0;
    size_t j;

    argv[k++] = (char *)c->bin;
    argv[k++] = "--node-id";
    argv[k++] = n->id_arg;
    argv[k++] = "--data-dir";
    argv[k++] = n->data_dir;
    argv[k++] = "--raft-address";
    argv[k++] = n->raft_address;
    argv[k++] = "--api-address";
    argv[k++] = n->api_address;
    if (n->join[0] != '\0') {
        argv[k++] = "--join";
        argv[k++] = n->join;
    } else if (!n->omit_peers) {
        for (j = 0; j < c->n_founders; j++) {
            argv[k++] = "--peer";
            argv[k++] = c->nodes[j].peer_arg;
        }
    }
    argv[k++] = "--election-timeout-ms";
    argv[k++] = "300";
    argv[k++] = "--heartbeat-timeout-ms";
    argv[k++] = "30";
    if (c->tls_cert[0] != '\0') {
        if (n->agent_address[0] == '\0') {
            snprintf(n->agent_address, TEST_ADDR_SIZE, "127.0.0.1:%u",
                     (unsigned)free_port_for(c));
        }
        argv[k++] = "--agent-address";
        argv[k++] = n->agent_address;
        argv[k++] = "--tls-cert";
        argv[k++] = c->tls_cert;
        argv[k++] = "--tls-key";
        argv[k++] = c->tls_key;
        argv[k++] = "--tls-ca";
        argv[k++] = c->tls_ca;
    }
    for (j = 0; j < c->n_extra; j++) {
        argv[k++] = (char *)c->extra[j];
    }
    argv[k] = NULL;
}

void test_cluster_start_node(struct test_cluster *c, size_t i)
{
    char *argv[64];
    assert_true(i < c->n);
    test_cluster_argv(c, i, argv);
    assert_int_equal(
        test_proc_start(&c->nodes[i].proc, c->bin, argv, c->nodes[i].log_path),
        0);
}

void test_cluster_start(struct test_cluster *c)
{
    size_t i;
    for (i = 0; i < c->n_founders; i++) {
        test_cluster_start_node(c, i);
    }
}

bool test_cluster_stop(struct test_cluster *c)
{
    bool clean = true;
    size_t i;
    /* Signal all first, so they stop in parallel. */
    for (i = 0; i < c->n; i++) {
        if (test_proc_running(&c->nodes[i].proc)) {
            test_proc_signal(&c->nodes[i].proc, SIGTERM);
            test_proc_signal(&c->nodes[i].proc, SIGCONT);
        }
    }
    for (i = 0; i < c->n; i++) {
        int rv;
        if (!test_proc_running(&c->nodes[i].proc)) {
            continue;
        }
        rv = stop_wait(&c->nodes[i].proc, STOP_GRACE_MS);
        if (rv != 0) {
            fprintf(stderr, "proc: node %zu stopped with status %d\n", i + 1,
                    rv);
            clean = false;
        }
    }
    return clean;
}

static void dump_tail(const char *path)
{
    char *text = test_read_file(path);
    size_t lines = 0;
    size_t len;
    const char *p;

    if (text == NULL) {
        return;
    }
    len = strlen(text);
    p = text + len;
    while (p > text) {
        p--;
        if (*p == '\n' && p + 1 < text + len && ++lines > LOG_TAIL_LINES) {
            p++;
            break;
        }
    }
    fprintf(stderr, "---- %s (last %d lines) ----\n%s", path, LOG_TAIL_LINES,
            p);
    free(text);
}

bool test_cluster_close(struct test_cluster *c, bool dump_logs)
{
    bool clean = test_cluster_stop(c);
    size_t i;
    if (dump_logs) {
        for (i = 0; i < c->n; i++) {
            dump_tail(c->nodes[i].log_path);
        }
    }
    if (getenv("REMS_TEST_KEEP") != NULL) {
        fprintf(stderr, "proc: kept %s\n", c->dir);
    } else {
        test_tmpdir_remove(c->dir);
    }
    return clean;
}

const char *test_cluster_url(const struct test_cluster *c,
                             size_t i,
                             const char *path,
                             char *buf)
{
    snprintf(buf, TEST_URL_SIZE, "http://%s%s", c->nodes[i].api_address, path);
    return buf;
}

json_t *test_cluster_call(const struct test_cluster *c,
                          size_t i,
                          const char *method,
                          const char *path,
                          const char *const headers[],
                          const char *body,
                          long *status,
                          char **resp_headers)
{
    char url[TEST_URL_SIZE];
    return test_http_json(method, test_cluster_url(c, i, path, url), headers,
                          body, status, resp_headers);
}

json_t *test_cluster_status(const struct test_cluster *c, size_t i)
{
    char url[TEST_URL_SIZE];
    long status;
    json_t *o = test_http_json("GET", test_cluster_url(c, i, "/status", url),
                               NULL, NULL, &status, NULL);
    if (o != NULL && status != 200) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static bool leader_agreed(struct test_cluster *c, struct test_leader *out)
{
    size_t n_leaders = 0;
    size_t n_running = 0;
    uint64_t leader_id = 0;
    uint64_t term = 0;
    size_t leader_index = 0;
    bool agree = true;
    size_t i;

    for (i = 0; i < c->n; i++) {
        json_t *st;
        json_t *leader;
        uint64_t this_leader;
        uint64_t this_term;
        if (!test_proc_running(&c->nodes[i].proc) || c->nodes[i].proc.paused) {
            continue;
        }
        n_running++;
        st = test_cluster_status(c, i);
        if (st == NULL) {
            return false;
        }
        leader = json_object_get(st, "leader");
        this_leader =
            json_is_object(leader)
                ? (uint64_t)json_integer_value(json_object_get(leader, "id"))
                : 0;
        this_term = (uint64_t)json_integer_value(json_object_get(st, "term"));
        if (strcmp(json_string_value(json_object_get(st, "role")) != NULL
                       ? json_string_value(json_object_get(st, "role"))
                       : "",
                   "leader") == 0) {
            n_leaders++;
            leader_index = i;
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
    if (n_running == 0 || n_leaders != 1 || !agree ||
        c->nodes[leader_index].id != leader_id) {
        return false;
    }
    out->index = leader_index;
    out->id = leader_id;
    out->term = term;
    return true;
}

bool test_cluster_wait_leader(struct test_cluster *c,
                              unsigned timeout_ms,
                              struct test_leader *out)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        if (leader_agreed(c, out)) {
            return true;
        }
        if (test_now_ms() >= deadline) {
            return false;
        }
        test_sleep_ms(POLL_MS);
    }
}

size_t
test_cluster_other(const struct test_cluster *c, size_t not_a, size_t not_b)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        if (i != not_a && i != not_b && test_proc_running(&c->nodes[i].proc) &&
            !c->nodes[i].proc.paused) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* ------------------------------------------------------------------ */
/* Policies as plain values.                                            */

#define POLICY_DOC_HEAD                                                        \
    "{\"placement\":{\"agents\":[\"none\"]},\"services\":[],\"metadata\":"

const char *test_policy_doc(const char *meta, char *out, size_t cap)
{
    int n;
    if (meta == NULL || meta[0] != '{') {
        return meta;
    }
    n = snprintf(out, cap, POLICY_DOC_HEAD "%s}", meta);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "test_policy_doc: %zu bytes are not enough\n", cap);
        abort();
    }
    return out;
}

json_t *test_policy_meta(json_t *o)
{
    return json_object_get(json_object_get(o, "value"), "metadata");
}
