/* Tests of agentproto/supervisor.h: the pure helpers (backoff, spec
 * parsing, dependency order) and the supervisor itself with real child
 * processes (/bin/sh scripts, sleep) on a real loop.
 *
 * Waiting: wait_*() run the loop one iteration at a time until a
 * condition holds, under a deadline kept by a uv timer, so a test never
 * sleeps longer than needed and a hang fails instead of blocking.
 * run_for() runs the loop for a fixed time, only to check that something
 * does NOT happen within it. The few network checks talk to listeners the
 * test owns on 127.0.0.1 (a bound socket that does not listen refuses
 * connections; a tiny HTTP server answers with a chosen status). */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentproto/supervisor.h"
#include "agentproto/supervisor_int.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/lib/heap.h"
#include "tests/lib/loop.h"
#include "tests/lib/tmpdir.h"

#define MAX_EVENTS 1024
#define WAIT_MS 5000 /* generous: a deadline, not a delay */

struct ev {
    int kind;
    char service[64];
    int state;
    uint64_t generation;
    int health;
    bool ready;
    bool has_exit_code;
    int exit_code;
    bool removed;
    char message[256];
};

struct act_res {
    int calls;
    int status;
    char msg[256];
};

struct http_conn {
    uv_tcp_t tcp;
    uv_write_t w;
    char buf[2048];
    size_t len;
    char reply[128];
    struct fixture *f;
};

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char logdir[TEST_TMPDIR_SIZE + 16];
    struct test_heap heap;
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t tick; /* wakes the loop while polling files and /proc */
    bool timed_out;
    struct act_res bg; /* for actions whose outcome a test ignores */
    int http_conns;    /* server-side connections not yet closed */
    struct supervisor *s;
    bool closed;
    bool stopped_all;
    char errmsg[REMS_ERRMSG_SIZE];
    struct ev ev[MAX_EVENTS];
    size_t nev;
    /* A socket bound to 127.0.0.1 that refuses until listening. */
    uv_tcp_t port_sock;
    bool port_open;
    int port;
    /* A tiny HTTP server. */
    uv_tcp_t http;
    bool http_open;
    int http_port;
    int http_status;
    int http_requests;
};

/* ------------------------------------------------------------------------
 * Fixture
 * --------------------------------------------------------------------- */

static void event_cb(struct supervisor *s, const struct sup_event *e)
{
    struct fixture *f = supervisor_data(s);
    struct ev *x;
    assert_true(f->nev < MAX_EVENTS);
    x = &f->ev[f->nev++];
    x->kind = e->kind;
    snprintf(x->service, sizeof x->service, "%s", e->service);
    x->state = e->status.state;
    x->generation = e->status.generation;
    x->health = e->status.health;
    x->ready = e->status.ready;
    x->has_exit_code = e->status.has_exit_code;
    x->exit_code = e->status.exit_code;
    x->removed = e->removed;
    snprintf(x->message, sizeof x->message, "%s", e->message);
    if (e->kind == SUP_EVENT_STATE) {
        /* The status carries the same message and a name. */
        assert_int_equal(e->status.service.len, strlen(e->service));
        assert_true(e->status.since_ms > 0);
    }
}

static void
open_sup(struct fixture *f, uint64_t usage_ms, const char *cgroup_dir)
{
    struct supervisor_options o = {0};
    o.log_dir = f->logdir;
    o.cgroup_dir = cgroup_dir;
    o.event_cb = event_cb;
    o.data = f;
    o.usage_interval_ms = usage_ms;
    assert_int_equal(supervisor_open(&f->loop, &o, &f->s, f->errmsg), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    snprintf(f->logdir, sizeof f->logdir, "%s/log", f->dir);
    assert_int_equal(mkdir(f->logdir, 0755), 0);
    test_heap_install(&f->heap);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->loop.data = f;
    assert_int_equal(uv_timer_init(&f->loop, &f->deadline), 0);
    f->deadline.data = f;
    assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
    f->tick.data = f;
    open_sup(f, 0, NULL);
    *state = f;
    return 0;
}

static void close_cb(struct supervisor *s)
{
    struct fixture *f = supervisor_data(s);
    f->closed = true;
}

static void deadline_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;
    f->timed_out = true;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void start_deadline(struct fixture *f, uint64_t ms)
{
    f->timed_out = false;
    uv_timer_start(&f->deadline, deadline_cb, ms, 0);
    uv_timer_start(&f->tick, tick_cb, 5, 5);
}

static void stop_deadline(struct fixture *f)
{
    uv_timer_stop(&f->deadline);
    uv_timer_stop(&f->tick);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    if (f->s != NULL) {
        supervisor_close(f->s, close_cb);
        start_deadline(f, WAIT_MS);
        while (!f->closed && !f->timed_out) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
        stop_deadline(f);
    }
    /* Let the test's own connections see their peers go. */
    start_deadline(f, WAIT_MS);
    while (f->http_conns > 0 && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    test_loop_close(&f->loop);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    test_tmpdir_remove(f->dir);
    assert_true(f->s == NULL || f->closed);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * Waiting
 * --------------------------------------------------------------------- */

struct cur {
    bool found;
    int state;
    uint64_t generation;
    int health;
    bool ready;
    bool has_exit_code;
    int exit_code;
    char message[256];
};

static struct cur cur(struct fixture *f, const char *name)
{
    struct proto_service *items;
    struct cur c = {0};
    size_t n;
    size_t i;
    assert_int_equal(supervisor_status(f->s, &items, &n), 0);
    for (i = 0; i < n; i++) {
        if (items[i].service.len == strlen(name) &&
            memcmp(items[i].service.p, name, items[i].service.len) == 0) {
            c.found = true;
            c.state = items[i].state;
            c.generation = items[i].generation;
            c.health = items[i].health;
            c.ready = items[i].ready;
            c.has_exit_code = items[i].has_exit_code;
            c.exit_code = items[i].exit_code;
            snprintf(c.message, sizeof c.message, "%.*s",
                     (int)items[i].message.len, items[i].message.p);
        }
    }
    rems_free(items);
    return c;
}

/* Wait until an event reports generation @gen of @name. */
static bool wait_gen(struct fixture *f, const char *name, uint64_t gen)
{
    size_t i = 0;
    bool seen = false;
    start_deadline(f, WAIT_MS);
    while (!seen && !f->timed_out) {
        for (; i < f->nev && !seen; i++) {
            seen = strcmp(f->ev[i].service, name) == 0 &&
                   f->ev[i].generation >= gen;
        }
        if (!seen) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
    }
    stop_deadline(f);
    return seen;
}

/* Wait until @name is in @state with a generation >= @min_gen. */
static bool wait_state(struct fixture *f,
                       const char *name,
                       int state,
                       uint64_t min_gen,
                       uint64_t ms)
{
    struct cur c;
    start_deadline(f, ms);
    for (;;) {
        c = cur(f, name);
        if ((c.state == state && c.generation >= min_gen) || f->timed_out) {
            break;
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    if (!(c.state == state && c.generation >= min_gen)) {
        fprintf(stderr,
                "wait_state %s: want %s gen>=%llu, have %s gen %llu "
                "(%s)\n",
                name, proto_state_name(state), (unsigned long long)min_gen,
                proto_state_name(c.state), (unsigned long long)c.generation,
                c.message);
        return false;
    }
    return true;
}

static bool wait_calls(struct fixture *f, const struct act_res *r, int n)
{
    start_deadline(f, WAIT_MS);
    while (r->calls < n && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    return r->calls >= n;
}

static bool wait_flag(struct fixture *f, const bool *flag, uint64_t ms)
{
    start_deadline(f, ms);
    while (!*flag && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    return *flag;
}

/* Run the loop for @ms: only to see that nothing happens meanwhile. */
static void run_for(struct fixture *f, uint64_t ms)
{
    start_deadline(f, ms);
    while (!f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static size_t count_events(struct fixture *f,
                           const char *name,
                           int kind,
                           int state,
                           const char *msg_part)
{
    size_t i;
    size_t n = 0;
    for (i = 0; i < f->nev; i++) {
        const struct ev *e = &f->ev[i];
        if (strcmp(e->service, name) == 0 && e->kind == kind &&
            (state == 0 || e->state == state) &&
            (msg_part == NULL || strstr(e->message, msg_part) != NULL)) {
            n++;
        }
    }
    return n;
}

static bool wait_event(struct fixture *f,
                       const char *name,
                       int kind,
                       const char *msg_part,
                       uint64_t ms)
{
    start_deadline(f, ms);
    while (count_events(f, name, kind, 0, msg_part) == 0 && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    return count_events(f, name, kind, 0, msg_part) > 0;
}

/* Index of the first event of @name entering @state, or SIZE_MAX. */
static size_t first_event(struct fixture *f, const char *name, int state)
{
    size_t i;
    for (i = 0; i < f->nev; i++) {
        if (strcmp(f->ev[i].service, name) == 0 &&
            f->ev[i].kind == SUP_EVENT_STATE && f->ev[i].state == state) {
            return i;
        }
    }
    return SIZE_MAX;
}

static void act_cb(void *data, int status, const char *msg)
{
    struct act_res *r = data;
    r->calls++;
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static void action(struct fixture *f,
                   const char *name,
                   int act,
                   uint64_t timeout_ms,
                   struct act_res *r)
{
    assert_int_equal(
        supervisor_action(f->s, name, act, timeout_ms, act_cb, r, f->errmsg),
        0);
}

/* Run @act and wait for its callback; returns its status. */
static int
action_wait(struct fixture *f, const char *name, int act, uint64_t timeout_ms)
{
    struct act_res r = {0};
    action(f, name, act, timeout_ms, &r);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.calls, 1);
    return r.status;
}

/* ------------------------------------------------------------------------
 * Specs
 * --------------------------------------------------------------------- */

/* A spec running "/bin/sh -c @script", with the fields of @extra (a JSON
 * object text, may be NULL) added. */
static struct sup_service_spec *
sh_spec(const char *name, const char *script, const char *extra)
{
    struct sup_service_spec *spec = NULL;
    char errmsg[REMS_ERRMSG_SIZE];
    json_t *o = json_pack("{s:s, s:[s,s,s]}", "name", name, "command",
                          "/bin/sh", "-c", script);
    char *text;
    assert_non_null(o);
    if (extra != NULL) {
        json_error_t jerr;
        json_t *x = json_loads(extra, 0, &jerr);
        if (x == NULL) {
            fprintf(stderr, "bad extra: %s\n", jerr.text);
        }
        assert_non_null(x);
        assert_int_equal(json_object_update(o, x), 0);
        json_decref(x);
    }
    text = json_dumps(o, 0);
    assert_non_null(text);
    if (sup_spec_parse_json(text, strlen(text), &spec, errmsg) != 0) {
        fprintf(stderr, "parse %s: %s\n", text, errmsg);
    }
    assert_non_null(spec);
    free(text);
    json_decref(o);
    return spec;
}

static void put_sh(struct fixture *f,
                   const char *name,
                   const char *script,
                   const char *extra)
{
    struct sup_service_spec *spec = sh_spec(name, script, extra);
    int rv = supervisor_put(f->s, spec, f->errmsg);
    if (rv != 0) {
        fprintf(stderr, "put: %s\n", f->errmsg);
    }
    assert_int_equal(rv, 0);
    sup_spec_free(spec);
}

/* A spec for "trap <trap> TERM; <rest>" that becomes ready (readiness
 * exec) only once the trap is set, so that a stop cannot come earlier. */
static void put_trapped(struct fixture *f,
                        const char *name,
                        const char *trap,
                        const char *rest,
                        uint64_t stop_timeout_ms)
{
    char marker[TEST_TMPDIR_SIZE + 64];
    char script[1024];
    char extra[1024];
    static unsigned seq;
    snprintf(marker, sizeof marker, "%s/trap-%s-%u", f->dir, name, ++seq);
    snprintf(script, sizeof script, "trap %s TERM; touch %s; %s", trap, marker,
             rest);
    snprintf(extra, sizeof extra,
             "{\"stop_timeout_ms\":%llu,\"readiness\":{\"type\":\"exec\","
             "\"command\":[\"/bin/sh\",\"-c\",\"test -e %s\"],"
             "\"interval_ms\":5}}",
             (unsigned long long)stop_timeout_ms, marker);
    put_sh(f, name, script, extra);
}

static int parse(const char *json, struct sup_service_spec **spec, char *err)
{
    *spec = NULL;
    return sup_spec_parse_json(json, strlen(json), spec, err);
}

/* ------------------------------------------------------------------------
 * Listeners
 * --------------------------------------------------------------------- */

static int sock_port(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Bind f->port_sock to 127.0.0.1:0 without listening. */
static void port_bind(struct fixture *f)
{
    struct sockaddr_in a;
    assert_int_equal(uv_tcp_init(&f->loop, &f->port_sock), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    assert_int_equal(uv_tcp_bind(&f->port_sock, (struct sockaddr *)&a, 0), 0);
    f->port = sock_port(&f->port_sock);
    f->port_sock.data = f;
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct fixture *f = h->loop->data;
    f->http_conns--;
    free(h->data);
}

static void port_conn_cb(uv_stream_t *server, int status)
{
    uv_tcp_t *c;
    if (status != 0) {
        return;
    }
    c = malloc(sizeof *c);
    assert_non_null(c);
    ((struct fixture *)server->loop->data)->http_conns++;
    assert_int_equal(uv_tcp_init(server->loop, c), 0);
    c->data = c;
    if (uv_accept(server, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, conn_closed_cb);
        return;
    }
    uv_close((uv_handle_t *)c, conn_closed_cb);
}

static void port_listen(struct fixture *f)
{
    assert_int_equal(uv_listen((uv_stream_t *)&f->port_sock, 16, port_conn_cb),
                     0);
}

static void http_conn_closed_cb(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    c->f->http_conns--;
    free(c);
}

static void http_write_cb(uv_write_t *w, int status)
{
    struct http_conn *c = w->data;
    (void)status;
    uv_close((uv_handle_t *)&c->tcp, http_conn_closed_cb);
}

static void http_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    (void)size;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void http_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;
    uv_buf_t b;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)&c->tcp, http_conn_closed_cb);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") == NULL) {
        return;
    }
    assert_true(strncmp(c->buf, "GET /health HTTP/1.0\r\n", 22) == 0);
    assert_non_null(strstr(c->buf, "\r\nHost: "));
    c->f->http_requests++;
    uv_read_stop(st);
    snprintf(c->reply, sizeof c->reply,
             "HTTP/1.0 %d Whatever\r\nContent-Length: 0\r\n\r\n",
             c->f->http_status);
    b = uv_buf_init(c->reply, (unsigned)strlen(c->reply));
    c->w.data = c;
    assert_int_equal(uv_write(&c->w, st, &b, 1, http_write_cb), 0);
}

static void http_conn_cb(uv_stream_t *server, int status)
{
    struct fixture *f = server->data;
    struct http_conn *c;
    if (status != 0) {
        return;
    }
    c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->f = f;
    f->http_conns++;
    assert_int_equal(uv_tcp_init(server->loop, &c->tcp), 0);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, http_conn_closed_cb);
        return;
    }
    assert_int_equal(
        uv_read_start((uv_stream_t *)&c->tcp, http_alloc_cb, http_read_cb), 0);
}

static void http_start(struct fixture *f, int status)
{
    struct sockaddr_in a;
    f->http_status = status;
    assert_int_equal(uv_tcp_init(&f->loop, &f->http), 0);
    f->http.data = f;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    assert_int_equal(uv_tcp_bind(&f->http, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->http, 16, http_conn_cb), 0);
    f->http_port = sock_port(&f->http);
}

/* ------------------------------------------------------------------------
 * Small file helpers
 * --------------------------------------------------------------------- */

/* The whole file (also /proc files, whose size reads as 0), or NULL. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    size_t cap = 4096;
    size_t len = 0;
    char *buf;
    size_t n;
    if (fp == NULL) {
        return NULL;
    }
    buf = malloc(cap);
    assert_non_null(buf);
    while ((n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

static long file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        return -1;
    }
    return (long)st.st_size;
}

/* The state letter of a process, or 0 when it is gone. */
static char proc_state_of(int pid)
{
    char path[64];
    char *text;
    char *rp;
    char st = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    text = slurp(path);
    if (text == NULL) {
        return 0;
    }
    rp = strrchr(text, ')');
    if (rp != NULL && rp[1] == ' ') {
        st = rp[2];
    }
    free(text);
    return st;
}

static bool wait_file(struct fixture *f, const char *path)
{
    start_deadline(f, WAIT_MS);
    while (file_size(path) <= 0 && !f->timed_out) {
        /* The loop's usage timer wakes it up regularly. */
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    return file_size(path) > 0;
}

/* Wait until @name's health is @health. */
static bool wait_health(struct fixture *f, const char *name, int health)
{
    start_deadline(f, WAIT_MS);
    while (cur(f, name).health != health && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    return cur(f, name).health == health;
}

/* Wait until every one of the NULL-terminated @needles is in one of the
 * files <logdir>/<name>.log, .log.1 ... .log.@keep (output is written as
 * the pipes are read, which may be after the exit was seen). */
static bool wait_output(struct fixture *f,
                        const char *name,
                        unsigned keep,
                        const char *const *needles)
{
    char path[TEST_TMPDIR_SIZE + 64];
    bool all = false;
    start_deadline(f, WAIT_MS);
    while (!all && !f->timed_out) {
        size_t i;
        all = true;
        for (i = 0; needles[i] != NULL && all; i++) {
            bool found = false;
            unsigned k;
            for (k = 0; k <= keep && !found; k++) {
                char *text;
                if (k == 0) {
                    snprintf(path, sizeof path, "%s/%s.log", f->logdir, name);
                } else {
                    snprintf(path, sizeof path, "%s/%s.log.%u", f->logdir, name,
                             k);
                }
                text = slurp(path);
                found = text != NULL && strstr(text, needles[i]) != NULL;
                free(text);
            }
            all = found;
        }
        if (!all) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
    }
    stop_deadline(f);
    return all;
}

/* ------------------------------------------------------------------------
 * Pure helpers
 * --------------------------------------------------------------------- */

/* The delay doubles from initial_ms up to max_ms; jitter scales it by
 * 1 - jitter .. 1 + jitter as rand01 goes from 0 to 1. */
static void backoff_sequence(void **state)
{
    struct sup_backoff b = {0};
    static const uint64_t want[] = {100, 200, 400, 800, 1000, 1000};
    unsigned i;
    (void)state;
    b.initial_ms = 100;
    b.multiplier = 2.0;
    b.max_ms = 1000;
    b.jitter = 0;
    for (i = 0; i < 6; i++) {
        assert_int_equal(sup_backoff_delay_ms(&b, i + 1, 0.7), want[i]);
    }
    assert_int_equal(sup_backoff_delay_ms(&b, 0, 0.5), 100);
    assert_int_equal(sup_backoff_delay_ms(&b, 4000000000u, 0.5), 1000);
    b.jitter = 0.1;
    assert_int_equal(sup_backoff_delay_ms(&b, 1, 0.0), 90);
    assert_int_equal(sup_backoff_delay_ms(&b, 1, 0.5), 100);
    assert_int_equal(sup_backoff_delay_ms(&b, 3, 0.75), 420);
    assert_int_equal(sup_backoff_delay_ms(&b, 9, 0.0), 900);
    b.multiplier = 1.5;
    b.jitter = 0;
    b.max_ms = 60000;
    assert_int_equal(sup_backoff_delay_ms(&b, 3, 0.3), 225);
    b.multiplier = 1.0;
    assert_int_equal(sup_backoff_delay_ms(&b, 50, 0.3), 100);
}

/* A minimal spec gets every documented default. */
static void spec_defaults(void **state)
{
    struct sup_service_spec *s;
    char err[REMS_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(
        parse("{\"name\":\"web\",\"command\":[\"/bin/true\"]}", &s, err), 0);
    assert_string_equal(s->name, "web");
    assert_string_equal(s->argv[0], "/bin/true");
    assert_null(s->argv[1]);
    assert_null(s->env);
    assert_null(s->cwd);
    assert_null(s->user);
    assert_int_equal(s->restart, SUP_RESTART_PERMANENT);
    assert_int_equal(s->backoff.initial_ms, 1000);
    assert_true(s->backoff.multiplier == 2.0);
    assert_int_equal(s->backoff.max_ms, 60000);
    assert_true(s->backoff.jitter == 0.1);
    assert_int_equal(s->backoff.max_retries, 5);
    assert_int_equal(s->backoff.reset_after_ms, 60000);
    assert_int_equal(s->stop_signal, SIGTERM);
    assert_int_equal(s->stop_timeout_ms, 10000);
    assert_int_equal(s->liveness.kind, SUP_CHECK_NONE);
    assert_int_equal(s->readiness.kind, SUP_CHECK_NONE);
    assert_int_equal(s->fallback.kind, SUP_CHECK_NONE);
    assert_null(s->depends_on);
    assert_int_equal(s->limits.memory_max_bytes, 0);
    assert_int_equal(s->limits.cpu_max_percent, 0);
    assert_int_equal(s->limits.nofile, 0);
    assert_int_equal(s->log.max_bytes, 10u << 20);
    assert_int_equal(s->log.keep, 3);
    assert_int_equal(s->safe_state, SUP_SAFE_KEEP);
    assert_true(s->autostart);
    sup_spec_free(s);
}

/* Every field, read and copied. */
static void spec_full(void **state)
{
    static const char json[] =
        "{\"name\":\"api@1\",\"command\":[\"/usr/bin/api\",\"--port\",\"\"],"
        "\"env\":{\"A\":\"1\",\"B_2\":\"x=y\"},\"cwd\":\"/srv\","
        "\"user\":\"nobody\",\"restart\":\"transient\","
        "\"backoff\":{\"initial_ms\":50,\"multiplier\":1.5,\"max_ms\":900,"
        "\"jitter\":0,\"max_retries\":0,\"reset_after_ms\":5000},"
        "\"stop_signal\":\"SIGINT\",\"stop_timeout_ms\":0,"
        "\"liveness\":{\"type\":\"http\",\"url\":\"http://localhost:81/h\","
        "\"interval_ms\":100,\"timeout_ms\":50,\"failure_threshold\":2,"
        "\"success_threshold\":3,\"initial_delay_ms\":7},"
        "\"fallback\":{\"type\":\"process\"},"
        "\"readiness\":{\"type\":\"tcp\",\"address\":\"[::1]:99\"},"
        "\"depends_on\":[\"db\",\"cache\"],"
        "\"limits\":{\"memory_max_bytes\":1048576,\"cpu_max_percent\":150,"
        "\"nofile\":256},\"log\":{\"max_bytes\":4096,\"keep\":0},"
        "\"safe_state\":\"stop\",\"autostart\":false}";
    struct sup_service_spec *s;
    struct sup_service_spec *c;
    char err[REMS_ERRMSG_SIZE];
    (void)state;
    assert_int_equal(parse(json, &s, err), 0);
    assert_string_equal(s->argv[2], "");
    assert_string_equal(s->env[0], "A=1");
    assert_string_equal(s->env[1], "B_2=x=y");
    assert_string_equal(s->cwd, "/srv");
    assert_string_equal(s->user, "nobody");
    assert_int_equal(s->restart, SUP_RESTART_TRANSIENT);
    assert_int_equal(s->backoff.initial_ms, 50);
    assert_true(s->backoff.multiplier == 1.5);
    assert_int_equal(s->backoff.max_ms, 900);
    assert_int_equal(s->backoff.max_retries, 0);
    assert_int_equal(s->stop_signal, SIGINT);
    assert_int_equal(s->stop_timeout_ms, 0);
    assert_int_equal(s->liveness.kind, SUP_CHECK_HTTP);
    assert_string_equal(s->liveness.target, "http://localhost:81/h");
    assert_int_equal(s->liveness.failure_threshold, 2);
    assert_int_equal(s->liveness.success_threshold, 3);
    assert_int_equal(s->liveness.initial_delay_ms, 7);
    assert_int_equal(s->fallback.kind, SUP_CHECK_PROCESS);
    assert_int_equal(s->readiness.kind, SUP_CHECK_TCP);
    assert_int_equal(s->readiness.interval_ms, 10000);
    assert_string_equal(s->depends_on[1], "cache");
    assert_int_equal(s->limits.memory_max_bytes, 1048576);
    assert_int_equal(s->limits.cpu_max_percent, 150);
    assert_int_equal(s->limits.nofile, 256);
    assert_int_equal(s->log.max_bytes, 4096);
    assert_int_equal(s->log.keep, 0);
    assert_int_equal(s->safe_state, SUP_SAFE_STOP);
    assert_false(s->autostart);
    assert_int_equal(sup__spec_copy(s, &c), 0);
    assert_true(sup__spec_equal(s, c));
    c->liveness.success_threshold = 2;
    assert_false(sup__spec_equal(s, c));
    c->liveness.success_threshold = 3;
    c->env[1][0] = 'C';
    assert_false(sup__spec_equal(s, c));
    c->env[1][0] = 'B';
    assert_true(sup__spec_equal(s, c));
    sup_spec_free(s);
    assert_string_equal(c->liveness.target, "http://localhost:81/h");
    assert_string_equal(c->env[1], "B_2=x=y");
    assert_string_equal(c->depends_on[0], "db");
    sup_spec_free(c);
    sup_spec_free(NULL);
}

/* Every refusal names the field and the rule. */
static void spec_errors(void **state)
{
    static const struct {
        const char *json;
        int rv;
        const char *msg;
    } cases[] = {
        {"[1]", REMS_EMALFORMED, "service: must be a JSON object"},
        {"{\"name\":", REMS_EMALFORMED, NULL},
        {"{\"command\":[\"x\"]}", REMS_EINVAL, "services.name: required"},
        {"{\"name\":\"a/b\",\"command\":[\"x\"]}", REMS_EINVAL,
         "services.name: must be 1..128 characters of [A-Za-z0-9._:@-]"},
        {"{\"name\":\"w\"}", REMS_EINVAL, "services.w.command: required"},
        {"{\"name\":\"w\",\"command\":[]}", REMS_EINVAL,
         "services.w.command: must have 1..256 entries"},
        {"{\"name\":\"w\",\"command\":[\"\"]}", REMS_EINVAL,
         "services.w.command[0]: must not be empty"},
        {"{\"name\":\"w\",\"command\":[\"x\",3]}", REMS_EINVAL,
         "services.w.command[1]: must be a string"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"colour\":1}", REMS_EINVAL,
         "services.w: unknown field \"colour\""},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"backoff\":{\"multiplier\":0.5}"
         "}",
         REMS_EINVAL, "services.w.backoff.multiplier: must be >= 1"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"backoff\":{\"jitter\":2}}",
         REMS_EINVAL, "services.w.backoff.jitter: must be <= 1"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"backoff\":{\"initial_ms\":500,"
         "\"max_ms\":100}}",
         REMS_EINVAL, "services.w.backoff.max_ms: must be >= initial_ms (500)"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"backoff\":{\"speed\":1}}",
         REMS_EINVAL, "services.w.backoff: unknown field \"speed\""},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"stop_timeout_ms\":86400001}",
         REMS_EINVAL, "services.w.stop_timeout_ms: must be <= 86400000 (24 h)"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"stop_timeout_ms\":-1}",
         REMS_EINVAL, "services.w.stop_timeout_ms: must be >= 0"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"stop_timeout_ms\":1.5}",
         REMS_EINVAL, "services.w.stop_timeout_ms: must be an integer"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"stop_signal\":\"STOP\"}",
         REMS_EINVAL,
         "services.w.stop_signal: must be one of TERM, INT, HUP, QUIT, USR1, "
         "USR2, KILL (with or without SIG)"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"restart\":\"always\"}",
         REMS_EINVAL,
         "services.w.restart: must be one of permanent, transient, temporary"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"env\":{\"1A\":\"x\"}}",
         REMS_EINVAL, NULL},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"env\":{\"A\":1}}", REMS_EINVAL,
         "services.w.env.A: must be a string of at most 32768 bytes"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"cwd\":\"rel\"}", REMS_EINVAL,
         "services.w.cwd: must be an absolute path"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"user\":\"-x\"}", REMS_EINVAL,
         NULL},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"url\":\"x\"}}",
         REMS_EINVAL, "services.w.liveness.type: required"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":\"ping\"}"
         "}",
         REMS_EINVAL,
         "services.w.liveness.type: must be one of http, tcp, exec, process"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":\"http\"}"
         "}",
         REMS_EINVAL, "services.w.liveness.url: required for type http"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":\"http\","
         "\"url\":\"https://x/\"}}",
         REMS_EINVAL,
         "services.w.liveness.url: must be http://host[:port][/path]"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"readiness\":{\"type\":\"tcp\","
         "\"address\":\"x:0\"}}",
         REMS_EINVAL,
         "services.w.readiness.address: must be host:port or [ipv6]:port"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"readiness\":{\"type\":\"tcp\","
         "\"address\":\"x:1\",\"url\":\"http://x/\"}}",
         REMS_EINVAL, "services.w.readiness.url: only for type http"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":\"exec\","
         "\"command\":[]}}",
         REMS_EINVAL, "services.w.liveness.command: must have 1..256 entries"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":"
         "\"process\",\"failure_threshold\":0}}",
         REMS_EINVAL, "services.w.liveness.failure_threshold: must be >= 1"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"liveness\":{\"type\":"
         "\"process\",\"interval_ms\":0}}",
         REMS_EINVAL, "services.w.liveness.interval_ms: must be >= 1"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"fallback\":{\"type\":"
         "\"process\"}}",
         REMS_EINVAL, "services.w.fallback: needs a liveness check"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"depends_on\":[\"w\"]}",
         REMS_EINVAL, "services.w.depends_on[0]: names the service itself"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"depends_on\":[\"a\",\"a\"]}",
         REMS_EINVAL, "services.w.depends_on[1]: \"a\" given twice"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"limits\":{\"nofile\":"
         "99999999}}",
         REMS_EINVAL, "services.w.limits.nofile: must be <= 1048576"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"log\":{\"max_bytes\":10}}",
         REMS_EINVAL, "services.w.log.max_bytes: must be >= 1024"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"safe_state\":\"pause\"}",
         REMS_EINVAL, "services.w.safe_state: must be keep or stop"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"autostart\":1}", REMS_EINVAL,
         "services.w.autostart: must be true or false"},
        {"{\"name\":\"w\",\"command\":[\"x\"],\"name\":\"v\"}", REMS_EMALFORMED,
         NULL},
    };
    char err[REMS_ERRMSG_SIZE];
    size_t i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sup_service_spec *s;
        int rv = parse(cases[i].json, &s, err);
        if (rv != cases[i].rv ||
            (cases[i].msg != NULL && strcmp(err, cases[i].msg) != 0)) {
            fprintf(stderr, "case %zu: %s\n  got %d \"%s\"\n", i, cases[i].json,
                    rv, err);
        }
        assert_int_equal(rv, cases[i].rv);
        assert_null(s);
        if (cases[i].msg != NULL) {
            assert_string_equal(err, cases[i].msg);
        }
    }
}

static struct sup_service_spec *dep_spec(const char *name, const char *deps)
{
    char json[256];
    struct sup_service_spec *s;
    char err[REMS_ERRMSG_SIZE];
    snprintf(json, sizeof json,
             "{\"name\":\"%s\",\"command\":[\"x\"],\"depends_on\":[%s]}", name,
             deps);
    assert_int_equal(parse(json, &s, err), 0);
    return s;
}

/* Dependencies come first; unknown names and cycles are named. */
static void spec_order(void **state)
{
    struct sup_service_spec *sp[4];
    size_t order[4] = {9, 9, 9, 9};
    char err[REMS_ERRMSG_SIZE];
    size_t i;
    (void)state;
    sp[0] = dep_spec("web", "\"api\",\"db\"");
    sp[1] = dep_spec("api", "\"db\"");
    sp[2] = dep_spec("db", "");
    sp[3] = dep_spec("cron", "");
    assert_int_equal(sup_spec_order((const struct sup_service_spec *const *)sp,
                                    4, order, err),
                     0);
    assert_int_equal(order[0], 2); /* db */
    assert_int_equal(order[1], 1); /* api */
    assert_int_equal(order[2], 0); /* web */
    assert_int_equal(order[3], 3); /* cron */
    assert_int_equal(sup_spec_order(NULL, 0, NULL, err), 0);
    for (i = 0; i < 4; i++) {
        sup_spec_free(sp[i]);
    }

    sp[0] = dep_spec("web", "\"db\"");
    sp[1] = dep_spec("api", "");
    assert_int_equal(sup_spec_order((const struct sup_service_spec *const *)sp,
                                    2, order, err),
                     REMS_EINVAL);
    assert_string_equal(err, "services.web.depends_on: unknown service \"db\"");
    sup_spec_free(sp[0]);
    sup_spec_free(sp[1]);

    sp[0] = dep_spec("a", "\"b\"");
    sp[1] = dep_spec("b", "\"c\"");
    sp[2] = dep_spec("c", "\"a\"");
    sp[3] = dep_spec("d", "\"a\"");
    order[0] = 7;
    assert_int_equal(
        sup_spec_order((const struct sup_service_spec *const *)sp + 3, 1, order,
                       err),
        REMS_EINVAL);
    assert_int_equal(sup_spec_order((const struct sup_service_spec *const *)sp,
                                    4, order, err),
                     REMS_EINVAL);
    assert_string_equal(err, "dependency cycle: a -> b -> c -> a");
    assert_int_equal(order[0], 7); /* untouched */
    sp[3]->depends_on[0][0] = 'b';
    sp[3]->name[0] = 'b';
    assert_int_equal(
        sup_spec_order((const struct sup_service_spec *const *)sp + 1, 3, order,
                       err),
        REMS_EINVAL);
    assert_string_equal(err, "services.b: defined twice");
    for (i = 0; i < 4; i++) {
        sup_spec_free(sp[i]);
    }
}

static const char full_json[] =
    "{\"name\":\"api\",\"command\":[\"/bin/true\",\"-x\"],"
    "\"env\":{\"A\":\"1\",\"B\":\"2\"},\"cwd\":\"/\",\"user\":\"root\","
    "\"liveness\":{\"type\":\"exec\",\"command\":[\"/bin/true\"]},"
    "\"fallback\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:1\"},"
    "\"readiness\":{\"type\":\"http\",\"url\":\"http://127.0.0.1:1/\"},"
    "\"depends_on\":[\"db\"]}";

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM, a message
 * and no leak, in parsing, copying, ordering, open and put. */
static void out_of_memory(void **state)
{
    struct test_heap heap;
    struct sup_service_spec *spec;
    struct sup_service_spec *copy;
    struct sup_service_spec *db;
    const struct sup_service_spec *pair[2];
    size_t order[2];
    char err[REMS_ERRMSG_SIZE];
    uv_loop_t loop;
    struct supervisor *s = NULL;
    struct supervisor_options o = {0};
    int rv;
    int n;
    (void)state;

    test_heap_install(&heap);
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        rv = parse(full_json, &spec, err);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(err, "out of memory");
        assert_null(spec);
        assert_int_equal(heap.live, 0);
    }
    test_heap_fail_after(&heap, -1);
    assert_true(n > 10);
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        copy = NULL;
        rv = sup__spec_copy(spec, &copy);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_null(copy);
    }
    sup_spec_free(copy);
    db = sh_spec("db", "true", NULL);
    pair[0] = spec;
    pair[1] = db;
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        rv = sup_spec_order(pair, 2, order, err);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(err, "out of memory");
    }
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 0);

    assert_int_equal(uv_loop_init(&loop), 0);
    o.log_dir = "/nonexistent";
    o.cgroup_dir = "/nonexistent";
    o.work_dir = "/";
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        rv = supervisor_open(&loop, &o, &s, err);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(err, "out of memory");
    }
    for (n = 0;; n++) {
        long before = heap.live;
        struct proto_service *items;
        size_t ni;
        test_heap_fail_after(&heap, n);
        rv = supervisor_put(s, db, err);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(err, "out of memory");
        /* Nothing was added (a grown array may stay). */
        assert_int_equal(supervisor_status(s, &items, &ni), 0);
        assert_int_equal(ni, 0);
        assert_true(heap.live <= before + 1);
    }
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        rv = supervisor_put(s, spec, err);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
    }
    /* Replacing a spec. */
    for (n = 0;; n++) {
        test_heap_fail_after(&heap, n);
        rv = supervisor_put(s, spec, err);
        test_heap_fail_after(&heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
    }
    supervisor_close(s, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sup_spec_free(spec);
    sup_spec_free(db);
    test_heap_uninstall(&heap);
    assert_int_equal(heap.live, 0);
}

/* ------------------------------------------------------------------------
 * Life cycle
 * --------------------------------------------------------------------- */

/* start: stopped -> starting -> running, generation 1, callback once. */
static void start_running(void **state)
{
    struct fixture *f = *state;
    struct cur c;
    put_sh(f, "a", "exec sleep 30", NULL);
    assert_int_equal(
        count_events(f, "a", SUP_EVENT_STATE, PROTO_STATE_STOPPED, "added"), 1);
    assert_int_equal(action_wait(f, "a", SUP_ACTION_START, 2000), 0);
    c = cur(f, "a");
    assert_int_equal(c.state, PROTO_STATE_RUNNING);
    assert_int_equal(c.generation, 1);
    assert_true(c.ready);
    assert_int_equal(c.health, PROTO_HEALTH_UNKNOWN);
    assert_true(first_event(f, "a", PROTO_STATE_STARTING) <
                first_event(f, "a", PROTO_STATE_RUNNING));
    assert_true(sup__test_pid(f->s, "a") > 0);
    /* Start of a running service: done at once. */
    assert_int_equal(action_wait(f, "a", SUP_ACTION_START, 0), 0);
    assert_int_equal(cur(f, "a").generation, 1);
    /* Stop: exit by SIGTERM, stopped with the exit code set. */
    assert_int_equal(action_wait(f, "a", SUP_ACTION_STOP, 0), 0);
    c = cur(f, "a");
    assert_int_equal(c.state, PROTO_STATE_STOPPED);
    assert_true(c.has_exit_code);
    assert_int_equal(c.exit_code, 128 + SIGTERM);
    assert_int_equal(sup__test_pid(f->s, "a"), 0);
}

/* A service added later (a pushed manifest) comes up like one of the
 * configuration when it never ran; once it has run, an operator's stop
 * stays; not autostart, or unknown: nothing. */
static void autostart_new(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "n", "exec sleep 30", NULL);
    put_sh(f, "m", "exec sleep 30", "{\"autostart\":false}");
    assert_int_equal(supervisor_autostart_new(f->s, "n"), 0);
    assert_int_equal(supervisor_autostart_new(f->s, "m"), 0);
    assert_int_equal(supervisor_autostart_new(f->s, "zz"), REMS_ENOTFOUND);
    assert_true(wait_state(f, "n", PROTO_STATE_RUNNING, 1, WAIT_MS));
    run_for(f, 50);
    assert_int_equal(cur(f, "m").state, PROTO_STATE_STOPPED);
    assert_int_equal(cur(f, "m").generation, 0);
    assert_int_equal(action_wait(f, "n", SUP_ACTION_STOP, 0), 0);
    assert_int_equal(supervisor_autostart_new(f->s, "n"), 0);
    run_for(f, 50);
    assert_int_equal(cur(f, "n").state, PROTO_STATE_STOPPED);
    assert_int_equal(cur(f, "n").generation, 1);
}

/* permanent: every exit is followed by backoff and a new generation. */
static void permanent_restarts(void **state)
{
    struct fixture *f = *state;
    size_t i;
    put_sh(f, "p", "exit 3",
           "{\"backoff\":{\"initial_ms\":10,\"max_ms\":40,\"jitter\":0,"
           "\"max_retries\":0}}");
    action(f, "p", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_gen(f, "p", 4));
    /* Each backoff event carries the exit code and the generation that
     * ended; generations go up by one per spawn. */
    for (i = 0; i < f->nev; i++) {
        const struct ev *e = &f->ev[i];
        if (e->kind == SUP_EVENT_STATE && e->state == PROTO_STATE_BACKOFF) {
            assert_true(e->has_exit_code);
            assert_int_equal(e->exit_code, 3);
            assert_non_null(strstr(e->message, "exited with 3"));
        }
    }
    assert_non_null(
        strstr(f->ev[first_event(f, "p", PROTO_STATE_BACKOFF)].message,
               "restart 1 in 10 ms"));
    assert_true(count_events(f, "p", SUP_EVENT_STATE, PROTO_STATE_BACKOFF,
                             "restart 3 in 40 ms") == 1);
}

/* transient: exit 0 stops it, exit 3 restarts it. */
static void transient_policy(void **state)
{
    struct fixture *f = *state;
    struct cur c;
    put_sh(f, "t0", "exit 0",
           "{\"restart\":\"transient\",\"backoff\":{\"initial_ms\":10}}");
    put_sh(f, "t3", "exit 3",
           "{\"restart\":\"transient\",\"backoff\":{\"initial_ms\":10,"
           "\"max_retries\":0}}");
    action(f, "t0", SUP_ACTION_START, 0, &f->bg);
    action(f, "t3", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_gen(f, "t3", 3));
    assert_true(wait_state(f, "t0", PROTO_STATE_STOPPED, 1, WAIT_MS));
    c = cur(f, "t0");
    assert_int_equal(c.generation, 1);
    assert_true(c.has_exit_code);
    assert_int_equal(c.exit_code, 0);
    assert_string_equal(c.message, "exited with 0");
}

/* temporary: never restarted; exit 3 is failed, exit 0 stopped. */
static void temporary_policy(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "x3", "exit 3", "{\"restart\":\"temporary\"}");
    put_sh(f, "x0", "exit 0", "{\"restart\":\"temporary\"}");
    action(f, "x3", SUP_ACTION_START, 0, &f->bg);
    action(f, "x0", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "x3", PROTO_STATE_FAILED, 1, WAIT_MS));
    assert_true(wait_state(f, "x0", PROTO_STATE_STOPPED, 1, WAIT_MS));
    run_for(f, 50);
    assert_int_equal(cur(f, "x3").generation, 1);
    assert_int_equal(cur(f, "x3").exit_code, 3);
    assert_int_equal(
        count_events(f, "x3", SUP_EVENT_STATE, PROTO_STATE_BACKOFF, NULL), 0);
}

/* max_retries failed runs in a row make it fatal; a pending start fails
 * then; an operator start leaves fatal. */
static void fatal_after_retries(void **state)
{
    struct fixture *f = *state;
    struct act_res r = {0};
    char extra[256];
    struct cur c;
    port_bind(f); /* never ready: the start waits through the backoffs */
    snprintf(extra, sizeof extra,
             "{\"backoff\":{\"initial_ms\":5,\"max_retries\":2},"
             "\"readiness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10}}",
             f->port);
    put_sh(f, "f", "exit 7", extra);
    action(f, "f", SUP_ACTION_START, 0, &r);
    assert_true(wait_state(f, "f", PROTO_STATE_FATAL, 1, WAIT_MS));
    c = cur(f, "f");
    assert_int_equal(c.generation, 3); /* the first run and 2 restarts */
    assert_non_null(strstr(c.message, "2 restarts in a row failed"));
    assert_int_equal(
        count_events(f, "f", SUP_EVENT_STATE, PROTO_STATE_BACKOFF, NULL), 2);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, REMS_EIO);
    assert_non_null(strstr(r.msg, "exited with 7"));
    run_for(f, 30);
    assert_int_equal(cur(f, "f").state, PROTO_STATE_FATAL);
    /* An operator start runs it again, with a fresh retry count. */
    action(f, "f", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "f", PROTO_STATE_FATAL, 6, WAIT_MS));
    assert_true(wait_calls(f, &f->bg, 1));
    assert_int_equal(f->bg.status, REMS_EIO);
}

/* A spawn that fails is a failed run and fails the start at once. */
static void spawn_failure(void **state)
{
    struct fixture *f = *state;
    struct sup_service_spec *spec;
    char err[REMS_ERRMSG_SIZE];
    static const char json[] =
        "{\"name\":\"m\",\"command\":[\"/nonexistent/prog\"],"
        "\"backoff\":{\"initial_ms\":5,\"max_retries\":1}}";
    struct act_res r = {0};
    assert_int_equal(parse(json, &spec, err), 0);
    assert_int_equal(supervisor_put(f->s, spec, f->errmsg), 0);
    sup_spec_free(spec);
    action(f, "m", SUP_ACTION_START, 0, &r);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, REMS_EIO);
    assert_non_null(strstr(r.msg, "spawn /nonexistent/prog"));
    assert_true(wait_state(f, "m", PROTO_STATE_FATAL, 2, WAIT_MS));
}

/* Exits, health verdicts and timers of an older generation change
 * nothing. */
static void stale_generation_ignored(void **state)
{
    struct fixture *f = *state;
    size_t nev;
    struct cur c;
    put_sh(f, "g", "exec sleep 30", "{\"stop_timeout_ms\":2000}");
    assert_int_equal(action_wait(f, "g", SUP_ACTION_START, 2000), 0);
    assert_int_equal(action_wait(f, "g", SUP_ACTION_RESTART, 2000), 0);
    c = cur(f, "g");
    assert_int_equal(c.state, PROTO_STATE_RUNNING);
    assert_int_equal(c.generation, 2);
    nev = f->nev;
    sup__test_exit(f->s, "g", 1, 1, 0);
    sup__test_exit(f->s, "g", 1, 0, SIGKILL);
    sup__test_health(f->s, "g", SUP_WATCH_LIVENESS, 1, PROTO_HEALTH_UNHEALTHY);
    sup__test_health(f->s, "g", SUP_WATCH_READINESS, 1, PROTO_HEALTH_UNHEALTHY);
    run_for(f, 30);
    assert_int_equal(f->nev, nev);
    c = cur(f, "g");
    assert_int_equal(c.state, PROTO_STATE_RUNNING);
    assert_int_equal(c.generation, 2);
    assert_int_equal(c.health, PROTO_HEALTH_UNKNOWN);
    /* The same verdict for the current generation does act. */
    sup__test_health(f->s, "g", SUP_WATCH_LIVENESS, 2, PROTO_HEALTH_UNHEALTHY);
    assert_int_equal(cur(f, "g").state, PROTO_STATE_STOPPING);
    assert_true(wait_state(f, "g", PROTO_STATE_RUNNING, 3, WAIT_MS));
}

/* The backoff and stop timers of an older generation do nothing. */
static void stale_timers_ignored(void **state)
{
    struct fixture *f = *state;
    size_t nev;
    put_sh(f, "b", "exit 3",
           "{\"backoff\":{\"initial_ms\":60000,\"jitter\":0}}");
    action(f, "b", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "b", PROTO_STATE_BACKOFF, 1, WAIT_MS));
    action(f, "b", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "b", PROTO_STATE_BACKOFF, 2, WAIT_MS));
    nev = f->nev;
    sup__test_timer(f->s, "b", 1);
    assert_int_equal(f->nev, nev);
    assert_int_equal(cur(f, "b").generation, 2);
    sup__test_timer(f->s, "b", 2); /* the current one restarts it */
    assert_true(wait_gen(f, "b", 3));

    /* Generation 2 ignores SIGTERM (a new spec restarts generation 1). */
    put_sh(f, "k", "exec sleep 30", NULL);
    assert_int_equal(action_wait(f, "k", SUP_ACTION_START, 2000), 0);
    put_trapped(f, "k", "''", "sleep 30 & wait; wait", 60000);
    assert_true(wait_state(f, "k", PROTO_STATE_RUNNING, 2, WAIT_MS));
    action(f, "k", SUP_ACTION_STOP, 0, &f->bg);
    assert_int_equal(cur(f, "k").state, PROTO_STATE_STOPPING);
    sup__test_timer(f->s, "k", 1);
    run_for(f, 100);
    assert_int_equal(cur(f, "k").state, PROTO_STATE_STOPPING);
    sup__test_timer(f->s, "k", 2);
    assert_true(wait_state(f, "k", PROTO_STATE_STOPPED, 2, WAIT_MS));
    assert_int_equal(cur(f, "k").exit_code, 128 + SIGKILL);
}

/* Readiness (tcp) holds the service in starting until the port listens. */
static void readiness_gates_running(void **state)
{
    struct fixture *f = *state;
    char extra[256];
    struct act_res r = {0};
    struct cur c;
    port_bind(f);
    snprintf(extra, sizeof extra,
             "{\"readiness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10,\"timeout_ms\":500,\"success_threshold\":2}}",
             f->port);
    put_sh(f, "r", "exec sleep 30", extra);
    action(f, "r", SUP_ACTION_START, 0, &r);
    assert_true(wait_state(f, "r", PROTO_STATE_STARTING, 1, WAIT_MS));
    run_for(f, 120);
    c = cur(f, "r");
    assert_int_equal(c.state, PROTO_STATE_STARTING);
    assert_false(c.ready);
    assert_int_equal(r.calls, 0);
    port_listen(f);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, 0);
    c = cur(f, "r");
    assert_int_equal(c.state, PROTO_STATE_RUNNING);
    assert_true(c.ready);
    assert_int_equal(c.generation, 1);
    assert_non_null(strstr(
        f->ev[first_event(f, "r", PROTO_STATE_RUNNING)].message, "ready"));
}

/* A start whose readiness never passes times out; the service keeps
 * trying. Superseded actions get REMS_ECANCELED; unknown services
 * REMS_ENOTFOUND. */
static void action_outcomes(void **state)
{
    struct fixture *f = *state;
    struct act_res a = {0};
    struct act_res b = {0};
    struct act_res c = {0};
    char extra[256];
    port_bind(f);
    snprintf(extra, sizeof extra,
             "{\"readiness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10}}",
             f->port);
    put_sh(f, "s", "exec sleep 30", extra);
    assert_int_equal(action_wait(f, "s", SUP_ACTION_START, 60), REMS_ETIMEDOUT);
    assert_int_equal(cur(f, "s").state, PROTO_STATE_STARTING);
    action(f, "s", SUP_ACTION_RESTART, 0, &a);
    action(f, "s", SUP_ACTION_STOP, 0, &b);
    assert_true(wait_calls(f, &b, 1));
    assert_true(wait_calls(f, &a, 1));
    assert_int_equal(a.status, REMS_ECANCELED);
    assert_int_equal(b.status, 0);
    assert_int_equal(cur(f, "s").state, PROTO_STATE_STOPPED);
    action(f, "nope", SUP_ACTION_START, 0, &c);
    assert_true(wait_calls(f, &c, 1));
    assert_int_equal(c.status, REMS_ENOTFOUND);
    assert_int_equal(supervisor_action(f->s, "s", 99, 0, act_cb, &c, f->errmsg),
                     REMS_EINVAL);
    assert_int_equal(action_wait(f, "s", SUP_ACTION_PAUSE, 0), REMS_EBUSY);
    assert_int_equal(action_wait(f, "s", SUP_ACTION_RESUME, 0), REMS_EBUSY);
    assert_int_equal(action_wait(f, "s", SUP_ACTION_STOP, 0), 0);
    run_for(f, 10);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
}

/* Liveness failing failure_threshold times kills and restarts. */
static void liveness_restarts(void **state)
{
    struct fixture *f = *state;
    char extra[256];
    port_bind(f); /* refuses */
    snprintf(extra, sizeof extra,
             "{\"stop_timeout_ms\":2000,\"backoff\":{\"initial_ms\":10},"
             "\"liveness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10,\"failure_threshold\":2}}",
             f->port);
    put_sh(f, "l", "exec sleep 30", extra);
    assert_int_equal(action_wait(f, "l", SUP_ACTION_START, 2000), 0);
    assert_true(wait_state(f, "l", PROTO_STATE_RUNNING, 2, WAIT_MS));
    assert_true(count_events(f, "l", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "liveness check failed: connect 127.0.0.1:") >= 1);
    assert_true(count_events(f, "l", SUP_EVENT_STATE, PROTO_STATE_BACKOFF,
                             "unhealthy, killed by signal 15 (SIGTERM); "
                             "restart 1 in ") == 1);
    /* Once the port listens, the next generation is healthy. */
    port_listen(f);
    start_deadline(f, WAIT_MS);
    while (cur(f, "l").health != PROTO_HEALTH_HEALTHY && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    assert_int_equal(cur(f, "l").health, PROTO_HEALTH_HEALTHY);
}

/* http liveness: 2xx is healthy, 500 is not (and restarts). Host names
 * are resolved. */
static void http_liveness(void **state)
{
    struct fixture *f = *state;
    char extra[300];
    http_start(f, 200);
    snprintf(extra, sizeof extra,
             "{\"restart\":\"temporary\",\"stop_timeout_ms\":2000,"
             "\"liveness\":{\"type\":\"http\","
             "\"url\":\"http://localhost:%d/health\","
             "\"interval_ms\":10,\"failure_threshold\":1}}",
             f->http_port);
    put_sh(f, "h", "exec sleep 30", extra);
    assert_int_equal(action_wait(f, "h", SUP_ACTION_START, 2000), 0);
    assert_true(
        wait_event(f, "h", SUP_EVENT_STATE, "liveness check passed", WAIT_MS));
    assert_int_equal(cur(f, "h").health, PROTO_HEALTH_HEALTHY);
    f->http_status = 500;
    assert_true(wait_state(f, "h", PROTO_STATE_FAILED, 1, WAIT_MS));
    assert_true(count_events(f, "h", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "GET /health: status 500") == 1);
    assert_true(f->http_requests >= 2);
}

/* The fallback check stands in when the liveness check cannot run. */
static void fallback_check(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "fb", "exec sleep 30",
           "{\"liveness\":{\"type\":\"exec\",\"command\":[\"/nonexistent/"
           "probe\"],\"interval_ms\":10,\"failure_threshold\":1},"
           "\"fallback\":{\"type\":\"process\"}}");
    put_sh(f, "nofb", "exec sleep 30",
           "{\"restart\":\"temporary\",\"liveness\":{\"type\":\"exec\","
           "\"command\":[\"/nonexistent/probe\"],\"interval_ms\":10,"
           "\"failure_threshold\":1}}");
    assert_int_equal(action_wait(f, "fb", SUP_ACTION_START, 2000), 0);
    assert_int_equal(action_wait(f, "nofb", SUP_ACTION_START, 2000), 0);
    assert_true(wait_state(f, "nofb", PROTO_STATE_FAILED, 1, WAIT_MS));
    assert_true(count_events(f, "nofb", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "cannot run: spawn /nonexistent/probe") == 1);
    assert_true(wait_health(f, "fb", PROTO_HEALTH_HEALTHY));
    assert_int_equal(cur(f, "fb").state, PROTO_STATE_RUNNING);
    assert_int_equal(cur(f, "fb").generation, 1);
}

/* exec checks: exit 0 passes; a check running past its timeout is killed
 * and fails. */
static void exec_checks(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "ok", "exec sleep 30",
           "{\"liveness\":{\"type\":\"exec\",\"command\":[\"/bin/sh\",\"-c\","
           "\"exit 0\"],\"interval_ms\":10}}");
    put_sh(f, "slow", "exec sleep 30",
           "{\"restart\":\"temporary\",\"liveness\":{\"type\":\"exec\","
           "\"command\":[\"/bin/sleep\",\"10\"],\"interval_ms\":10,"
           "\"timeout_ms\":40,\"failure_threshold\":1}}");
    assert_int_equal(action_wait(f, "ok", SUP_ACTION_START, 2000), 0);
    assert_int_equal(action_wait(f, "slow", SUP_ACTION_START, 2000), 0);
    assert_true(wait_state(f, "slow", PROTO_STATE_FAILED, 1, WAIT_MS));
    assert_true(count_events(f, "slow", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "timed out after 40 ms") == 1);
    assert_true(wait_health(f, "ok", PROTO_HEALTH_HEALTHY));
}

/* A child that exits on SIGTERM stops at once. */
static void stop_graceful(void **state)
{
    struct fixture *f = *state;
    uint64_t t0;
    struct cur c;
    put_trapped(f, "gs", "'exit 0'", "sleep 30 & wait", 5000);
    assert_int_equal(action_wait(f, "gs", SUP_ACTION_START, 2000), 0);
    t0 = rems_mono_ms();
    assert_int_equal(action_wait(f, "gs", SUP_ACTION_STOP, 0), 0);
    assert_true(rems_mono_ms() - t0 < 2000);
    c = cur(f, "gs");
    assert_int_equal(c.state, PROTO_STATE_STOPPED);
    assert_int_equal(c.exit_code, 0);
    assert_string_equal(c.message, "stopped (exited with 0)");
}

/* A child that ignores SIGTERM is killed with its whole group after the
 * stop timeout, grandchild included. */
static void stop_kills_group(void **state)
{
    struct fixture *f = *state;
    char script[512];
    char pidfile[TEST_TMPDIR_SIZE + 16];
    char *text;
    int gpid;
    uint64_t t0;
    uint64_t took;
    struct cur c;
    char st;

    snprintf(pidfile, sizeof pidfile, "%s/grandchild", f->dir);
    snprintf(script, sizeof script,
             "trap '' TERM; sleep 30 & echo $! > %s.tmp; mv %s.tmp %s; "
             "while :; do wait; done",
             pidfile, pidfile, pidfile);
    put_sh(f, "k", script, "{\"stop_timeout_ms\":150}");
    assert_int_equal(action_wait(f, "k", SUP_ACTION_START, 2000), 0);
    assert_true(wait_file(f, pidfile));
    text = slurp(pidfile);
    assert_non_null(text);
    gpid = atoi(text);
    free(text);
    assert_true(gpid > 0);
    assert_true(proc_state_of(gpid) != 0);
    t0 = rems_mono_ms();
    assert_int_equal(action_wait(f, "k", SUP_ACTION_STOP, 0), 0);
    took = rems_mono_ms() - t0;
    assert_true(took >= 140);
    assert_true(took < 3000);
    c = cur(f, "k");
    assert_int_equal(c.state, PROTO_STATE_STOPPED);
    assert_int_equal(c.exit_code, 128 + SIGKILL);
    assert_string_equal(c.message, "stopped (killed by signal 9 (SIGKILL) "
                                   "after the 150 ms stop timeout)");
    /* The grandchild is gone (or a zombie waiting for init). */
    start_deadline(f, WAIT_MS);
    while ((st = proc_state_of(gpid)) != 0 && st != 'Z' && !f->timed_out) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    st = proc_state_of(gpid);
    assert_true(st == 0 || st == 'Z');
}

/* pause stops the group (state T), resume continues it. */
static void pause_resume(void **state)
{
    struct fixture *f = *state;
    int pid;
    put_sh(f, "pz", "exec sleep 30", NULL);
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_START, 2000), 0);
    pid = sup__test_pid(f->s, "pz");
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_PAUSE, 2000), 0);
    assert_int_equal(cur(f, "pz").state, PROTO_STATE_PAUSED);
    assert_int_equal(proc_state_of(pid), 'T');
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_PAUSE, 0), 0);
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_RESUME, 2000), 0);
    assert_int_equal(cur(f, "pz").state, PROTO_STATE_RUNNING);
    assert_int_equal(cur(f, "pz").generation, 1);
    assert_true(proc_state_of(pid) != 'T');
    /* A paused service stops gracefully (SIGTERM, then SIGCONT). */
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_PAUSE, 0), 0);
    assert_int_equal(action_wait(f, "pz", SUP_ACTION_STOP, 2000), 0);
    assert_int_equal(cur(f, "pz").exit_code, 128 + SIGTERM);
}

/* quarantine: stops, refuses autostart, policy restarts and restart;
 * start (or resume) lifts it. */
static void quarantine_refuses(void **state)
{
    struct fixture *f = *state;
    struct cur c;
    put_sh(f, "q", "exec sleep 30", NULL);
    put_sh(f, "q2", "exec sleep 30", NULL);
    assert_int_equal(action_wait(f, "q2", SUP_ACTION_START, 2000), 0);
    assert_int_equal(action_wait(f, "q2", SUP_ACTION_QUARANTINE, 2000), 0);
    c = cur(f, "q2");
    assert_int_equal(c.state, PROTO_STATE_QUARANTINED);
    assert_int_equal(c.exit_code, 128 + SIGTERM);
    assert_int_equal(action_wait(f, "q", SUP_ACTION_QUARANTINE, 0), 0);
    assert_int_equal(supervisor_start_all(f->s, f->errmsg), 0);
    run_for(f, 50);
    assert_int_equal(cur(f, "q").state, PROTO_STATE_QUARANTINED);
    assert_int_equal(cur(f, "q").generation, 0);
    assert_int_equal(cur(f, "q2").state, PROTO_STATE_QUARANTINED);
    assert_int_equal(
        count_events(f, "q", SUP_EVENT_STATE, PROTO_STATE_STARTING, NULL), 0);
    assert_int_equal(action_wait(f, "q", SUP_ACTION_RESTART, 0), REMS_EBUSY);
    assert_int_equal(action_wait(f, "q", SUP_ACTION_PAUSE, 0), REMS_EBUSY);
    assert_int_equal(action_wait(f, "q", SUP_ACTION_STOP, 0), 0);
    assert_int_equal(cur(f, "q").state, PROTO_STATE_QUARANTINED);
    assert_int_equal(action_wait(f, "q", SUP_ACTION_START, 2000), 0);
    assert_int_equal(cur(f, "q").state, PROTO_STATE_RUNNING);
    assert_int_equal(action_wait(f, "q2", SUP_ACTION_RESUME, 2000), 0);
    assert_int_equal(cur(f, "q2").generation, 2);
}

/* Output goes to <log_dir>/<name>.log, rotated above max_bytes with keep
 * old files; diagnostics return the last lines. */
static void log_capture_rotation(void **state)
{
    struct fixture *f = *state;
    char path[TEST_TMPDIR_SIZE + 64];
    struct rems_buf b;
    json_t *d;
    json_t *out;
    json_error_t jerr;
    char *text;
    size_t lines;
    int k;

    put_sh(f, "out",
           "i=0; while [ $i -lt 300 ]; do echo line-$i; echo err-$i >&2; "
           "i=$((i+1)); done",
           "{\"restart\":\"temporary\",\"log\":{\"max_bytes\":1024,"
           "\"keep\":2}}");
    action(f, "out", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "out", PROTO_STATE_STOPPED, 1, WAIT_MS));
    {
        static const char *const last[] = {"line-299\n", "err-299\n", NULL};
        assert_true(wait_output(f, "out", 2, last));
    }
    for (k = 0; k <= 2; k++) {
        if (k == 0) {
            snprintf(path, sizeof path, "%s/out.log", f->logdir);
        } else {
            snprintf(path, sizeof path, "%s/out.log.%d", f->logdir, k);
        }
        assert_true(file_size(path) > 0);
        assert_true(file_size(path) <= 1024);
        text = slurp(path);
        assert_non_null(text);
        /* Cut at line ends. */
        assert_int_equal(text[strlen(text) - 1], '\n');
        free(text);
    }
    snprintf(path, sizeof path, "%s/out.log.3", f->logdir);
    assert_int_equal(file_size(path), -1);
    rems_buf_init(&b);
    assert_int_equal(supervisor_diagnostics(f->s, "out", 5, &b, f->errmsg), 0);
    d = json_loadb(b.data, b.len, 0, &jerr);
    rems_buf_close(&b);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "state")),
                        "stopped");
    assert_int_equal(json_integer_value(json_object_get(d, "generation")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "exit_code")), 0);
    assert_true(json_is_null(json_object_get(d, "pid")));
    out = json_object_get(d, "output");
    assert_int_equal(json_array_size(out), 5);
    assert_non_null(strstr(json_string_value(json_array_get(out, 4)), "-299"));
    json_decref(d);

    /* Many lines reach into name.log.1. */
    rems_buf_init(&b);
    assert_int_equal(supervisor_diagnostics(f->s, "out", 200, &b, f->errmsg),
                     0);
    d = json_loadb(b.data, b.len, 0, &jerr);
    rems_buf_close(&b);
    assert_non_null(d);
    out = json_object_get(d, "output");
    snprintf(path, sizeof path, "%s/out.log", f->logdir);
    text = slurp(path);
    for (k = 0, lines = 0; text[k] != '\0'; k++) {
        lines += text[k] == '\n';
    }
    free(text);
    assert_true(json_array_size(out) > lines);
    assert_true(json_array_size(out) <= 200);
    assert_non_null(
        strstr(json_string_value(json_array_get(out, json_array_size(out) - 1)),
               "-299"));
    json_decref(d);
    assert_int_equal(supervisor_diagnostics(f->s, "none", 5, &b, f->errmsg),
                     REMS_ENOTFOUND);
}

/* Memory above its limit warns once per crossing; the rlimits and the
 * cgroup files are set. */
static void memory_limit_warning(void **state)
{
    struct fixture *f = *state;
    char cg[TEST_TMPDIR_SIZE + 16];
    char path[TEST_TMPDIR_SIZE + 64];
    char want[32];
    struct rems_buf b;
    json_t *d;
    json_error_t jerr;
    char *text;
    int pid;

    supervisor_close(f->s, close_cb);
    assert_true(wait_flag(f, &f->closed, WAIT_MS));
    f->closed = false;
    snprintf(cg, sizeof cg, "%s/cg", f->dir);
    assert_int_equal(mkdir(cg, 0755), 0);
    open_sup(f, 20, cg);
    /* Each process stays below the limit (RLIMIT_AS), the group does
     * not. */
    put_sh(f, "mem", "sleep 30 & sleep 30 & sleep 30 & sleep 30 & wait",
           "{\"limits\":{\"memory_max_bytes\":5242880,\"nofile\":64,"
           "\"cpu_max_percent\":50}}");
    assert_int_equal(action_wait(f, "mem", SUP_ACTION_START, 2000), 0);
    pid = sup__test_pid(f->s, "mem");
    assert_true(wait_event(f, "mem", SUP_EVENT_WARNING,
                           "exceeds limits.memory_max_bytes 5242880", WAIT_MS));
    run_for(f, 120); /* several more samples */
    assert_int_equal(
        count_events(f, "mem", SUP_EVENT_WARNING, 0, "limits.memory_max_bytes"),
        1);
    snprintf(path, sizeof path, "/proc/%d/limits", pid);
    text = slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "Max open files            64"));
    assert_non_null(strstr(text, "Max address space         5242880"));
    free(text);
    snprintf(path, sizeof path, "%s/mem/memory.max", cg);
    text = slurp(path);
    assert_non_null(text);
    assert_string_equal(text, "5242880");
    free(text);
    snprintf(path, sizeof path, "%s/mem/cpu.max", cg);
    text = slurp(path);
    assert_string_equal(text, "50000 100000");
    free(text);
    snprintf(path, sizeof path, "%s/mem/cgroup.procs", cg);
    text = slurp(path);
    snprintf(want, sizeof want, "%d", pid);
    assert_string_equal(text, want);
    free(text);
    /* Diagnostics report the usage. */
    rems_buf_init(&b);
    assert_int_equal(supervisor_diagnostics(f->s, "mem", 0, &b, f->errmsg), 0);
    d = json_loadb(b.data, b.len, 0, &jerr);
    rems_buf_close(&b);
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "pid")), pid);
    assert_true(json_integer_value(json_object_get(json_object_get(d, "usage"),
                                                   "rss_bytes")) > 5242880);
    assert_true(json_integer_value(
                    json_object_get(json_object_get(d, "usage"), "fds")) >= 1);
    json_decref(d);
}

/* start_all starts a service once its dependencies run; stop_all stops
 * dependents first. */
static void dependencies_order(void **state)
{
    struct fixture *f = *state;
    struct sup_service_spec *spec;
    char extra[256];
    port_bind(f);
    snprintf(extra, sizeof extra,
             "{\"readiness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10}}",
             f->port);
    put_sh(f, "db", "exec sleep 30", extra);
    put_sh(f, "web", "exec sleep 30", "{\"depends_on\":[\"db\"]}");
    put_sh(f, "idle", "exec sleep 30", "{\"autostart\":false}");
    /* An unknown dependency or a cycle is refused. */
    spec = sh_spec("x", "true", "{\"depends_on\":[\"nope\"]}");
    assert_int_equal(supervisor_put(f->s, spec, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg,
                        "services.x.depends_on: unknown service \"nope\"");
    sup_spec_free(spec);
    spec = sh_spec("db", "true", "{\"depends_on\":[\"web\"]}");
    assert_int_equal(supervisor_put(f->s, spec, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg, "dependency cycle: db -> web -> db");
    sup_spec_free(spec);

    assert_int_equal(supervisor_start_all(f->s, f->errmsg), 0);
    assert_true(wait_state(f, "db", PROTO_STATE_STARTING, 1, WAIT_MS));
    run_for(f, 60);
    assert_int_equal(cur(f, "web").state, PROTO_STATE_STOPPED);
    port_listen(f);
    assert_true(wait_state(f, "web", PROTO_STATE_RUNNING, 1, WAIT_MS));
    assert_true(first_event(f, "db", PROTO_STATE_RUNNING) <
                first_event(f, "web", PROTO_STATE_STARTING));
    assert_int_equal(cur(f, "idle").state, PROTO_STATE_STOPPED);
    supervisor_stop_all(f->s, NULL);
    assert_true(wait_state(f, "db", PROTO_STATE_STOPPED, 1, WAIT_MS));
    assert_true(first_event(f, "web", PROTO_STATE_STOPPED) <
                first_event(f, "db", PROTO_STATE_STOPPING));
    assert_int_equal(action_wait(f, "web", SUP_ACTION_START, 0),
                     REMS_ECANCELED);
}

static void stop_all_cb(struct supervisor *s)
{
    struct fixture *f = supervisor_data(s);
    f->stopped_all = true;
}

/* stop_all calls back once everything is down. */
static void stop_all_callback(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "a", "exec sleep 30", NULL);
    put_sh(f, "b", "exec sleep 30", "{\"depends_on\":[\"a\"]}");
    assert_int_equal(supervisor_start_all(f->s, f->errmsg), 0);
    assert_true(wait_state(f, "b", PROTO_STATE_RUNNING, 1, WAIT_MS));
    supervisor_stop_all(f->s, stop_all_cb);
    assert_false(f->stopped_all);
    assert_true(wait_flag(f, &f->stopped_all, WAIT_MS));
    assert_int_equal(cur(f, "a").state, PROTO_STATE_STOPPED);
    assert_int_equal(cur(f, "b").state, PROTO_STATE_STOPPED);
    assert_int_equal(supervisor_start_all(f->s, f->errmsg), REMS_ESHUTDOWN);
}

/* put on a running service restarts it with the new spec. */
static void put_restarts_running(void **state)
{
    struct fixture *f = *state;
    char path[TEST_TMPDIR_SIZE + 64];
    char *text;
    put_sh(f, "v", "echo version-1; exec sleep 30", NULL);
    assert_int_equal(action_wait(f, "v", SUP_ACTION_START, 2000), 0);
    /* The same spec again changes nothing. */
    put_sh(f, "v", "echo version-1; exec sleep 30", NULL);
    run_for(f, 20);
    assert_int_equal(cur(f, "v").generation, 1);
    assert_int_equal(cur(f, "v").state, PROTO_STATE_RUNNING);
    put_sh(f, "v", "echo version-2; exec sleep 30", NULL);
    assert_true(wait_state(f, "v", PROTO_STATE_RUNNING, 2, WAIT_MS));
    snprintf(path, sizeof path, "%s/v.log", f->logdir);
    start_deadline(f, WAIT_MS);
    for (;;) {
        text = slurp(path);
        if ((text != NULL && strstr(text, "version-2") != NULL) ||
            f->timed_out) {
            break;
        }
        free(text);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    stop_deadline(f);
    assert_non_null(text);
    assert_non_null(strstr(text, "version-1\n"));
    assert_non_null(strstr(text, "version-2\n"));
    free(text);
    assert_true(count_events(f, "v", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "spec changed") == 1);
}

/* The dead-man's switch stops the services whose safe_state is stop. */
static void safe_state(void **state)
{
    struct fixture *f = *state;
    put_sh(f, "keep", "exec sleep 30", NULL);
    put_sh(f, "halt", "exec sleep 30", "{\"safe_state\":\"stop\"}");
    assert_int_equal(supervisor_start_all(f->s, f->errmsg), 0);
    assert_true(wait_state(f, "halt", PROTO_STATE_RUNNING, 1, WAIT_MS));
    assert_true(wait_state(f, "keep", PROTO_STATE_RUNNING, 1, WAIT_MS));
    supervisor_enter_safe_state(f->s);
    assert_true(wait_state(f, "halt", PROTO_STATE_STOPPED, 1, WAIT_MS));
    assert_non_null(strstr(cur(f, "halt").message, "stopped"));
    assert_true(count_events(f, "halt", SUP_EVENT_STATE, PROTO_STATE_STOPPING,
                             "safe state") == 1);
    run_for(f, 30);
    assert_int_equal(cur(f, "keep").state, PROTO_STATE_RUNNING);
}

/* remove stops and forgets a service; not while another depends on it. */
static void remove_service(void **state)
{
    struct fixture *f = *state;
    struct act_res r = {0};
    struct proto_service *items;
    size_t n;
    put_sh(f, "base", "exec sleep 30", NULL);
    put_sh(f, "top", "exec sleep 30", "{\"depends_on\":[\"base\"]}");
    assert_int_equal(action_wait(f, "base", SUP_ACTION_START, 2000), 0);
    assert_int_equal(supervisor_remove(f->s, "base", act_cb, &r, f->errmsg), 0);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, REMS_EBUSY);
    r.calls = 0;
    assert_int_equal(supervisor_remove(f->s, "top", act_cb, &r, f->errmsg), 0);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, 0);
    r.calls = 0;
    assert_int_equal(supervisor_remove(f->s, "base", act_cb, &r, f->errmsg), 0);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, 0);
    assert_int_equal(count_events(f, "base", SUP_EVENT_STATE, 0, "removed"), 1);
    assert_int_equal(supervisor_status(f->s, &items, &n), 0);
    assert_int_equal(n, 0);
    r.calls = 0;
    assert_int_equal(supervisor_remove(f->s, "base", act_cb, &r, f->errmsg), 0);
    assert_true(wait_calls(f, &r, 1));
    assert_int_equal(r.status, REMS_ENOTFOUND);
    /* The name can be used again. */
    put_sh(f, "base", "exec sleep 30", NULL);
    assert_int_equal(action_wait(f, "base", SUP_ACTION_START, 2000), 0);
}

/* user: the process runs with that user's ids and environment. */
static void runs_as_user(void **state)
{
    struct fixture *f = *state;
    struct passwd *pw = getpwnam("nobody");
    char path[TEST_TMPDIR_SIZE + 64];
    char want[64];
    char *text;
    if (getuid() != 0 || pw == NULL) {
        skip();
    }
    put_sh(f, "u", "echo uid=$(id -u) user=$USER",
           "{\"user\":\"nobody\",\"cwd\":\"/\",\"restart\":\"temporary\"}");
    action(f, "u", SUP_ACTION_START, 0, &f->bg);
    assert_true(wait_state(f, "u", PROTO_STATE_STOPPED, 1, WAIT_MS));
    {
        const char *const uid[] = {"uid=", NULL};
        assert_true(wait_output(f, "u", 0, uid));
    }
    snprintf(path, sizeof path, "%s/u.log", f->logdir);
    text = slurp(path);
    assert_non_null(text);
    snprintf(want, sizeof want, "uid=%d user=nobody\n", (int)pw->pw_uid);
    assert_string_equal(text, want);
    free(text);
    /* An unknown user is a spawn failure. */
    put_sh(f, "u2", "true",
           "{\"user\":\"no-such-user-x\",\"restart\":\"temporary\"}");
    assert_int_equal(action_wait(f, "u2", SUP_ACTION_START, 0), REMS_EIO);
    assert_int_equal(cur(f, "u2").state, PROTO_STATE_FAILED);
}

/* Closing with services running kills them and frees everything. */
static void close_with_running(void **state)
{
    struct fixture *f = *state;
    struct act_res r = {0};
    char extra[256];
    port_bind(f);
    snprintf(extra, sizeof extra,
             "{\"readiness\":{\"type\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"interval_ms\":10},\"liveness\":{\"type\":\"exec\","
             "\"command\":[\"/bin/sleep\",\"5\"]}}",
             f->port);
    put_sh(f, "c1", "trap '' TERM; sleep 30 & wait", NULL);
    put_sh(f, "c2", "exec sleep 30", extra);
    assert_int_equal(action_wait(f, "c1", SUP_ACTION_START, 2000), 0);
    action(f, "c2", SUP_ACTION_START, 0, &r);
    run_for(f, 40);
    supervisor_close(f->s, close_cb);
    assert_true(wait_flag(f, &f->closed, WAIT_MS));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, REMS_ECANCELED);
    f->s = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_sequence),
        cmocka_unit_test(spec_defaults),
        cmocka_unit_test(spec_full),
        cmocka_unit_test(spec_errors),
        cmocka_unit_test(spec_order),
        cmocka_unit_test(out_of_memory),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(autostart_new),
        T(start_running),
        T(permanent_restarts),
        T(transient_policy),
        T(temporary_policy),
        T(fatal_after_retries),
        T(spawn_failure),
        T(stale_generation_ignored),
        T(stale_timers_ignored),
        T(readiness_gates_running),
        T(action_outcomes),
        T(liveness_restarts),
        T(http_liveness),
        T(fallback_check),
        T(exec_checks),
        T(stop_graceful),
        T(stop_kills_group),
        T(pause_resume),
        T(quarantine_refuses),
        T(log_capture_rotation),
        T(memory_limit_warning),
        T(dependencies_order),
        T(stop_all_callback),
        T(put_restarts_running),
        T(safe_state),
        T(remove_service),
        T(runs_as_user),
        T(close_with_running),
#undef T
    };
    signal(SIGPIPE, SIG_IGN);
    rems_log_set_level(REMS_LOG_ERROR);
    return cmocka_run_group_tests_name("supervisor", tests, NULL, NULL);
}
