/* agentproto/sup_check.c: one attempt of a health check, on the loop.
 *
 * A probe runs one check once and reports pass, fail or error through its
 * callback; the scheduling (intervals, thresholds, the fallback) belongs to
 * supervisor.c. Every probe has a timer, which bounds the attempt
 * (timeout_ms) and also carries results known before any I/O (a target
 * that does not resolve, a program that cannot be spawned, a process
 * check, which reads /proc only), so that the callback never runs inside
 * sup__probe_start().
 *
 * Kinds:
 * - tcp: connect to host:port. A host that is not an IP literal is
 *   resolved with uv_getaddrinfo(); the addresses are tried in turn until
 *   one accepts. Connected = pass; refused or unreachable on every
 *   address = fail; no address = error.
 * - http: the same connection, then "GET <path> HTTP/1.0" with Host and
 *   "Connection: close"; only the status line of the answer is read:
 *   2xx and 3xx pass, anything else fails.
 * - exec: spawn argv in its own process group (detached), with the
 *   service's environment, directory and user, output to /dev/null. Exit 0
 *   passes, another exit fails, a spawn failure (program missing, not
 *   executable) is an error. At the timeout the group gets SIGKILL and the
 *   attempt fails; after any exit whatever is left of the group is killed.
 * - process: kill(pid, 0) and the state letter of /proc/<pid>/stat: alive
 *   and not a zombie passes. No error case.
 *
 * Life: sup__probe_start() allocates the probe. Once the result is
 * delivered, or once the owner cancels (then no callback runs), the probe
 * tears down: it closes its handles, cancels a pending resolution, kills
 * an exec check's group and waits for its exit (a closed process handle
 * would leave a zombie), and frees itself when nothing is left open. The
 * probe holds the supervisor alive (sup__live_hold) from start to free. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "agentproto/supervisor_int.h"
#include "common/assert.h"
#include "common/heap.h"

#define HOST_SIZE 256
#define PATH_SIZE 2100
#define RESP_SIZE 512 /* enough for any sane status line */

struct sup_probe {
    struct supervisor *s;
    uv_loop_t *loop;
    int kind;
    int pid; /* process check: the service's process */
    uint64_t timeout_ms;
    sup_probe_cb cb; /* NULL once delivered or canceled */
    void *data;
    bool finished; /* result delivered or canceled: tearing down */
    bool starting; /* inside sup__probe_start(): results wait for the timer */
    int open;      /* handles open, plus a pending resolution */

    /* A result known before any I/O, delivered from the timer. */
    bool has_early;
    int early_result;
    char early_detail[REMS_ERRMSG_SIZE];

    uv_timer_t timer;

    /* tcp, http */
    char host[HOST_SIZE];
    int port;
    char path[PATH_SIZE];
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai; /* resolved list, or NULL for a literal */
    struct addrinfo *ai_next;
    struct sockaddr_storage literal;
    uv_tcp_t tcp;
    bool tcp_open;
    bool tcp_retry; /* reconnect to ai_next once tcp is closed */
    int last_error; /* UV_E* of the last failed connect */
    uv_connect_t conn;
    uv_write_t wreq;
    char *req;
    size_t req_len;
    char resp[RESP_SIZE];
    size_t resp_len;

    /* exec */
    uv_process_t proc;
    bool proc_open;
    bool proc_exited;
};

static void teardown(struct sup_probe *p);
static void early(struct sup_probe *p, int result, const char *detail);

/* ------------------------------------------------------------------------
 * Delivery and teardown
 * --------------------------------------------------------------------- */

static void maybe_free(struct sup_probe *p)
{
    struct supervisor *s = p->s;
    if (!p->finished || p->open > 0) {
        return;
    }
    if (p->ai != NULL) {
        uv_freeaddrinfo(p->ai);
    }
    rems_free(p->req);
    rems_free(p);
    sup__live_release(s);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct sup_probe *p = h->data;
    p->open--;
    if ((uv_handle_t *)&p->tcp == h) {
        p->tcp_open = false;
    }
    maybe_free(p);
}

static void finish(struct sup_probe *p, int result, const char *detail)
{
    sup_probe_cb cb = p->cb;
    if (p->finished) {
        return;
    }
    if (p->starting) {
        early(p, result, detail);
        return;
    }
    p->finished = true;
    p->cb = NULL;
    if (cb != NULL) {
        cb(p, p->data, result, detail);
    }
    teardown(p);
}

static void finishf(struct sup_probe *p, int result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finishf(struct sup_probe *p, int result, const char *fmt, ...)
{
    char detail[REMS_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    finish(p, result, detail);
}

static void teardown(struct sup_probe *p)
{
    REMS_ASSERT(p->finished);
    if (!uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_close((uv_handle_t *)&p->timer, handle_closed_cb);
    }
    if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp)) {
        uv_close((uv_handle_t *)&p->tcp, handle_closed_cb);
    }
    if (p->gai_pending) {
        uv_cancel((uv_req_t *)&p->gai); /* gai_cb runs either way */
    }
    if (p->proc_open && !p->proc_exited) {
        kill(-p->proc.pid, SIGKILL); /* exit_cb closes the handle */
    }
    maybe_free(p);
}

void sup__probe_cancel(struct sup_probe *p)
{
    if (p == NULL || p->finished) {
        return;
    }
    p->cb = NULL;
    p->finished = true;
    teardown(p);
}

/* ------------------------------------------------------------------------
 * Timer: timeouts and early results
 * --------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
    struct sup_probe *p = t->data;
    if (p->finished) {
        return;
    }
    if (p->has_early) {
        finish(p, p->early_result, p->early_detail);
        return;
    }
    if (p->kind == SUP_CHECK_EXEC && p->proc_open && !p->proc_exited) {
        kill(-p->proc.pid, SIGKILL);
    }
    finishf(p, SUP_PROBE_FAIL, "timed out after %llu ms",
            (unsigned long long)p->timeout_ms);
}

static void early(struct sup_probe *p, int result, const char *detail)
{
    p->has_early = true;
    p->early_result = result;
    snprintf(p->early_detail, sizeof p->early_detail, "%s", detail);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, timer_cb, 0, 0);
}

/* ------------------------------------------------------------------------
 * process
 * --------------------------------------------------------------------- */

/* The state letter of /proc/<pid>/stat, or 0 when it cannot be read. */
static char proc_state(int pid)
{
    char path[64];
    char buf[512];
    FILE *f;
    size_t n;
    char *rp;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    rp = strrchr(buf, ')'); /* comm may hold ')' and spaces */
    if (rp == NULL || rp[1] != ' ' || rp[2] == '\0') {
        return 0;
    }
    return rp[2];
}

static void process_check(struct sup_probe *p)
{
    char st;
    if (p->pid <= 0 || (kill(p->pid, 0) != 0 && errno == ESRCH)) {
        early(p, SUP_PROBE_FAIL, "process is not running");
        return;
    }
    st = proc_state(p->pid);
    if (st == 'Z' || st == 'X') {
        early(p, SUP_PROBE_FAIL, "process is a zombie");
        return;
    }
    if (st == 0) {
        early(p, SUP_PROBE_FAIL, "process is not running");
        return;
    }
    early(p, SUP_PROBE_PASS, "");
}

/* ------------------------------------------------------------------------
 * tcp and http
 * --------------------------------------------------------------------- */

static void try_connect(struct sup_probe *p, const struct sockaddr *addr);

static void connect_next(struct sup_probe *p)
{
    struct addrinfo *ai = p->ai_next;
    if (ai == NULL) {
        finishf(p, SUP_PROBE_FAIL, "connect %s:%d: %s", p->host, p->port,
                uv_strerror(p->last_error));
        return;
    }
    p->ai_next = ai->ai_next;
    try_connect(p, ai->ai_addr);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    struct sup_probe *p = h->data;
    p->tcp_open = false;
    p->open--;
    if (p->tcp_retry && !p->finished) {
        p->tcp_retry = false;
        connect_next(p);
        return;
    }
    maybe_free(p);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sup_probe *p = h->data;
    (void)suggested;
    *buf = uv_buf_init(p->resp + p->resp_len,
                       (unsigned)(sizeof p->resp - 1 - p->resp_len));
}

/* 0 while the status line is incomplete, else 1 and the result. */
static int status_line(struct sup_probe *p)
{
    char *eol;
    const char *sp;
    int code = 0;
    int i;

    p->resp[p->resp_len] = '\0';
    eol = strchr(p->resp, '\n');
    if (eol == NULL) {
        if (p->resp_len >= sizeof p->resp - 1) {
            finishf(p, SUP_PROBE_FAIL, "GET %s: status line too long", p->path);
            return 1;
        }
        return 0;
    }
    *eol = '\0';
    sp = strchr(p->resp, ' ');
    if (strncmp(p->resp, "HTTP/", 5) != 0 || sp == NULL) {
        finishf(p, SUP_PROBE_FAIL, "GET %s: not an HTTP answer", p->path);
        return 1;
    }
    for (i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9') {
            finishf(p, SUP_PROBE_FAIL, "GET %s: bad status line", p->path);
            return 1;
        }
        code = code * 10 + (sp[i] - '0');
    }
    if (code >= 200 && code < 400) {
        finish(p, SUP_PROBE_PASS, "");
    } else {
        finishf(p, SUP_PROBE_FAIL, "GET %s: status %d", p->path, code);
    }
    return 1;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct sup_probe *p = st->data;
    (void)buf;
    if (p->finished) {
        return;
    }
    if (nread == UV_EOF) {
        finishf(p, SUP_PROBE_FAIL, "GET %s: closed before a status line",
                p->path);
        return;
    }
    if (nread < 0) {
        finishf(p, SUP_PROBE_FAIL, "GET %s: %s", p->path,
                uv_strerror((int)nread));
        return;
    }
    p->resp_len += (size_t)nread;
    status_line(p);
}

static void write_cb(uv_write_t *req, int status)
{
    struct sup_probe *p = req->data;
    if (status == UV_ECANCELED || p->finished) {
        return;
    }
    if (status < 0) {
        finishf(p, SUP_PROBE_FAIL, "GET %s: %s", p->path, uv_strerror(status));
    }
}

static void http_send(struct sup_probe *p)
{
    uv_buf_t b;
    int rv;

    b = uv_buf_init(p->req, (unsigned)p->req_len);
    p->wreq.data = p;
    rv = uv_write(&p->wreq, (uv_stream_t *)&p->tcp, &b, 1, write_cb);
    if (rv == 0) {
        rv = uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
    }
    if (rv != 0) {
        finishf(p, SUP_PROBE_FAIL, "GET %s: %s", p->path, uv_strerror(rv));
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct sup_probe *p = req->data;
    if (status == UV_ECANCELED || p->finished) {
        return;
    }
    if (status < 0) {
        p->last_error = status;
        if (p->ai_next != NULL) {
            p->tcp_retry = true;
            uv_close((uv_handle_t *)&p->tcp, tcp_closed_cb);
            return;
        }
        finishf(p, SUP_PROBE_FAIL, "connect %s:%d: %s", p->host, p->port,
                uv_strerror(status));
        return;
    }
    if (p->kind == SUP_CHECK_TCP) {
        finish(p, SUP_PROBE_PASS, "");
        return;
    }
    http_send(p);
}

static void try_connect(struct sup_probe *p, const struct sockaddr *addr)
{
    int rv = uv_tcp_init(p->loop, &p->tcp);
    if (rv != 0) {
        finishf(p, SUP_PROBE_ERROR, "socket: %s", uv_strerror(rv));
        return;
    }
    p->tcp.data = p;
    p->tcp_open = true;
    p->open++;
    p->conn.data = p;
    rv = uv_tcp_connect(&p->conn, &p->tcp, addr, connect_cb);
    if (rv != 0) {
        /* Refused at once (no route, bad family): next address, if any. */
        p->last_error = rv;
        if (p->ai_next != NULL) {
            p->tcp_retry = true;
            uv_close((uv_handle_t *)&p->tcp, tcp_closed_cb);
            return;
        }
        finishf(p, SUP_PROBE_FAIL, "connect %s:%d: %s", p->host, p->port,
                uv_strerror(rv));
    }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct sup_probe *p = req->data;
    p->gai_pending = false;
    p->open--;
    p->ai = res;
    if (p->finished) {
        maybe_free(p);
        return;
    }
    if (status < 0 || res == NULL) {
        finishf(p, SUP_PROBE_ERROR, "resolve %s: %s", p->host,
                status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    p->ai_next = res;
    connect_next(p);
}

static int net_start(struct sup_probe *p, const struct sup_check *chk)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&p->literal;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&p->literal;
    struct addrinfo hints = {0};
    char portbuf[8];
    int rv;

    if (chk->kind == SUP_CHECK_HTTP) {
        bool v6;
        size_t cap;
        int n;
        if (sup__url_parse(chk->target, p->host, sizeof p->host, &p->port,
                           p->path, sizeof p->path) != 0) {
            return REMS_EINVAL;
        }
        cap = strlen(p->path) + strlen(p->host) + 160;
        p->req = rems_malloc(cap);
        if (p->req == NULL) {
            return REMS_ENOMEM;
        }
        v6 = strchr(p->host, ':') != NULL;
        n = snprintf(p->req, cap,
                     "GET %s HTTP/1.0\r\nHost: %s%s%s:%d\r\n"
                     "User-Agent: rems-agent\r\nAccept: */*\r\n"
                     "Connection: close\r\n\r\n",
                     p->path, v6 ? "[" : "", p->host, v6 ? "]" : "", p->port);
        REMS_ASSERT(n > 0 && (size_t)n < cap);
        p->req_len = (size_t)n;
    } else if (sup__hostport_parse(chk->target, p->host, sizeof p->host,
                                   &p->port) != 0) {
        return REMS_EINVAL;
    }

    if (uv_ip4_addr(p->host, p->port, in4) == 0 ||
        uv_ip6_addr(p->host, p->port, in6) == 0) {
        try_connect(p, (const struct sockaddr *)&p->literal);
        return 0;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portbuf, sizeof portbuf, "%d", p->port);
    p->gai.data = p;
    rv = uv_getaddrinfo(p->loop, &p->gai, gai_cb, p->host, portbuf, &hints);
    if (rv != 0) {
        char detail[REMS_ERRMSG_SIZE];
        snprintf(detail, sizeof detail, "resolve %s: %s", p->host,
                 uv_strerror(rv));
        early(p, SUP_PROBE_ERROR, detail);
        return 0;
    }
    p->gai_pending = true;
    p->open++;
    return 0;
}

/* ------------------------------------------------------------------------
 * exec
 * --------------------------------------------------------------------- */

static void exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    struct sup_probe *p = proc->data;
    p->proc_exited = true;
    kill(-proc->pid, SIGKILL); /* what the check left behind */
    uv_close((uv_handle_t *)proc, handle_closed_cb);
    if (p->finished) {
        return;
    }
    if (sig != 0) {
        finishf(p, SUP_PROBE_FAIL, "%s: killed by signal %d", p->path, sig);
    } else if (status != 0) {
        finishf(p, SUP_PROBE_FAIL, "%s: exited with %lld", p->path,
                (long long)status);
    } else {
        finish(p, SUP_PROBE_PASS, "");
    }
}

static void exec_start(struct sup_probe *p,
                       const struct sup_check *chk,
                       const struct sup_spawn_ctx *ctx)
{
    uv_process_options_t o = {0};
    uv_stdio_container_t stdio[3];
    int rv;

    snprintf(p->path, sizeof p->path, "%s", chk->argv[0]);
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_IGNORE;
    o.exit_cb = exit_cb;
    o.file = chk->argv[0];
    o.args = chk->argv;
    o.env = ctx != NULL ? ctx->env : NULL;
    o.cwd = ctx != NULL ? ctx->cwd : NULL;
    o.flags = UV_PROCESS_DETACHED;
    if (ctx != NULL && ctx->set_ids) {
        o.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        o.uid = ctx->uid;
        o.gid = ctx->gid;
    }
    o.stdio_count = 3;
    o.stdio = stdio;
    p->proc.data = p;
    rv = uv_spawn(p->loop, &p->proc, &o);
    /* Initialised even on failure: it must be closed either way. */
    p->proc.data = p;
    p->proc_open = true;
    p->open++;
    if (rv != 0) {
        char detail[REMS_ERRMSG_SIZE];
        p->proc_exited = true;
        uv_close((uv_handle_t *)&p->proc, handle_closed_cb);
        snprintf(detail, sizeof detail, "spawn %s: %s", chk->argv[0],
                 uv_strerror(rv));
        early(p, SUP_PROBE_ERROR, detail);
    }
}

/* ------------------------------------------------------------------------
 * Start
 * --------------------------------------------------------------------- */

int sup__probe_start(struct supervisor *s,
                     const struct sup_check *chk,
                     const struct sup_spawn_ctx *ctx,
                     int pid,
                     sup_probe_cb cb,
                     void *data,
                     struct sup_probe **out,
                     char *errmsg)
{
    struct sup_probe *p;
    int rv;

    PRE(s != NULL && chk != NULL && cb != NULL && out != NULL);
    PRE(chk->kind >= SUP_CHECK_HTTP && chk->kind <= SUP_CHECK_PROCESS);

    p = rems_calloc(1, sizeof *p);
    if (p == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    p->s = s;
    p->loop = sup__loop(s);
    p->kind = chk->kind;
    p->pid = pid;
    p->timeout_ms = chk->timeout_ms;
    p->cb = cb;
    p->data = data;
    rv = uv_timer_init(p->loop, &p->timer);
    REMS_ASSERT(rv == 0); /* cannot fail on Linux */
    p->timer.data = p;
    p->open = 1;
    p->starting = true;
    sup__live_hold(s);
    uv_timer_start(&p->timer, timer_cb, chk->timeout_ms, 0);

    switch (chk->kind) {
        case SUP_CHECK_PROCESS:
            process_check(p);
            break;
        case SUP_CHECK_EXEC:
            exec_start(p, chk, ctx);
            break;
        default:
            rv = net_start(p, chk);
            if (rv != 0) {
                if (rv == REMS_ENOMEM) {
                    rems_errmsg_oom(errmsg);
                } else {
                    rems_errmsgf(errmsg, "bad check target \"%s\"",
                                 chk->target);
                }
                goto err_after_timer;
            }
            break;
    }
    p->starting = false;
    *out = p;
    return 0;

err_after_timer:
    /* Nothing but the timer was opened; it frees the probe once closed. */
    p->starting = false;
    p->cb = NULL;
    p->finished = true;
    teardown(p);
err:
    POST(rv != 0);
    return rv;
}
