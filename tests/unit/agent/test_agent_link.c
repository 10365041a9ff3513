/* Tests of agentproto/agent_link.c against fake nodes: each fake node is a
 * TLS server (agentproto/tls.h) on 127.0.0.1:0 speaking agentproto/proto.h
 * on the test's loop, and records every message it gets. The agent's
 * services are a fake that records actions, except in the last test,
 * which runs the real supervisor with a real process. Certificates are
 * made once per run by tests/lib/make-test-ca.sh.
 *
 * Waiting is bounded: run_until() runs the loop until a condition holds,
 * and fails the test after a deadline. The link's timers are short
 * (20 ms heartbeats, 20 ms reconnect backoff), so each test takes a few
 * hundred milliseconds at most. */
/* cmocka.h needs these four first; the blank line keeps clang-format from
 * sorting it above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/agent_fence.h"
#include "agentproto/agent_link.h"
#include "agentproto/agent_services.h"
#include "agentproto/supervisor.h"
#include "common/log.h"
#include "tests/lib/heap.h"
#include "tests/lib/loop.h"
#include "tests/lib/tmpdir.h"

/* Only a failure bound: a loaded CI machine (sanitizers, two cores) may be
 * slow, and a passing test stops waiting as soon as its condition holds. */
#define DEADLINE_MS 20000
#define MAX_RECS 4096 /* heartbeats pile up when a loaded machine is slow */
#define NODE_TERM 5

/* The certificates, made by group_setup(). */
static char certdir[TEST_TMPDIR_SIZE];

struct fixture;
struct node;

/* What a fake node received. */
struct rec {
    int type;
    uint64_t seq;              /* heartbeat, report */
    char id[PROTO_ID_MAX + 1]; /* hello: agent id; ack/nack: command id */
    uint64_t term;             /* ack/nack */
    int reason;                /* nack */
    char text[PROTO_MESSAGE_MAX + 1]; /* nack message, ack result, error */
    int result_kind;
    size_t n_result;
    uint64_t highest_term; /* hello */
    size_t n_labels;       /* hello */
    bool has_services;     /* hello */
    size_t n_items;        /* hello services, report items */
    uint64_t gens[32];     /* report items' generations */
    int states[32];        /* report items' states */
    uint64_t dropped;      /* report */
};

enum node_mode {
    NODE_WELCOME,  /* welcome, ack heartbeats */
    NODE_SILENT,   /* welcome, never ack heartbeats */
    NODE_REDIRECT, /* redirect to redirect_to, then close */
    NODE_ERROR,    /* error not_leader, then close */
    NODE_EARLY,    /* a command before welcome */
};

struct conn {
    struct node *n;
    struct tls_stream *s;
    struct proto_reader reader;
    bool closing;
};

struct node {
    struct fixture *f;
    uint64_t id;
    uv_tcp_t listener;
    int port;
    char addr[32];
    struct conn *cur;
    int conns_open;
    enum node_mode mode;
    char redirect_to[64];
    uint64_t retry_after_ms;
    uint64_t hb_interval_ms;
    /* When set, the next heartbeat's ack is followed by this long a stall
     * of the loop (a busy agent: its fence write on a slow disk). */
    uint64_t stall_ms;
    int stalls;
    struct rec recs[MAX_RECS];
    size_t n_recs;
    int hellos;
    int heartbeats;
};

/* Services that record what they are asked. */
struct fake {
    struct proto_service items[2];
    size_t n_items;
    int actions;
    int last_action;
    char last_service[PROTO_SERVICE_MAX + 1];
    int next_status; /* For the next action's callback. */
    int pushes;
    int safe_states;
    uv_timer_t timer; /* Completes the pending action, from the loop. */
    agent_services_done_cb cb;
    void *cb_data;
    int cb_status;
};

struct fixture {
    struct test_heap heap;
    uv_loop_t loop;
    char dir[TEST_TMPDIR_SIZE];
    struct tls_context *sctx;
    struct tls_context *cctx;
    struct node nodes[2];
    struct agent_config cfg;
    struct agent_fence *fence;
    struct fake fake;
    struct agent_services services;
    struct agent_link *link;
    bool link_closed;
    struct supervisor *sup;
    bool sup_done;
    bool sup_closed;
    char errmsg[REMS_ERRMSG_SIZE];
};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static const char *cert(const char *name)
{
    static char paths[8][TEST_TMPDIR_SIZE + 64];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", certdir, name);
    return p;
}

/* Run the loop until @cond(@f) holds; fail after DEADLINE_MS. */
static void run_until(struct fixture *f, bool (*cond)(struct fixture *))
{
    uint64_t start;

    uv_update_time(&f->loop);
    start = uv_now(&f->loop);
    while (!cond(f)) {
        uv_run(&f->loop, UV_RUN_ONCE);
        uv_update_time(&f->loop);
        if (uv_now(&f->loop) - start > DEADLINE_MS) {
            fail_msg("condition not reached within %d ms", DEADLINE_MS);
        }
    }
}

/* Run the loop for about @ms (to see that nothing more happens). */
static void run_for(struct fixture *f, uint64_t ms)
{
    uint64_t start;

    uv_update_time(&f->loop);
    start = uv_now(&f->loop);
    while (uv_now(&f->loop) - start < ms) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_sleep(1);
        uv_update_time(&f->loop);
    }
}

static struct proto_str str_of(const char *s)
{
    struct proto_str p = {s, strlen(s)};
    return p;
}

static void copy_str(char *out, size_t cap, struct proto_str s)
{
    snprintf(out, cap, "%.*s", (int)s.len, s.p);
}

/* The @k-th message of type @type that @n received, or NULL. */
static const struct rec *nth(const struct node *n, int type, int k)
{
    size_t i;

    for (i = 0; i < n->n_recs; i++) {
        if (n->recs[i].type == type && k-- == 0) {
            return &n->recs[i];
        }
    }
    return NULL;
}

static int count(const struct node *n, int type)
{
    int c = 0;
    size_t i;

    for (i = 0; i < n->n_recs; i++) {
        c += n->recs[i].type == type;
    }
    return c;
}

/* The answer (ack or nack) to command @id, or NULL. */
static const struct rec *answer(const struct node *n, const char *id)
{
    size_t i;

    for (i = n->n_recs; i > 0; i--) {
        const struct rec *r = &n->recs[i - 1];
        if ((r->type == PROTO_ACK || r->type == PROTO_NACK) &&
            strcmp(r->id, id) == 0) {
            return r;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * The fake node
 * ------------------------------------------------------------------------ */

struct node_write {
    struct tls_write req;
};

static void on_node_written(struct tls_write *req, int status)
{
    (void)status;
    free(req->data);
}

static void node_send(struct conn *c, const struct proto_msg *m)
{
    struct node_write *w;
    struct rems_buf buf;
    char errmsg[REMS_ERRMSG_SIZE];

    if (c == NULL || c->closing) {
        return;
    }
    rems_buf_init(&buf);
    assert_int_equal(proto_msg_encode(m, 0, &buf, errmsg), 0);
    w = malloc(sizeof *w);
    assert_non_null(w);
    w->req.data = w;
    assert_int_equal(
        tls_stream_write(c->s, &w->req, buf.data, buf.len, on_node_written), 0);
    rems_buf_close(&buf);
}

static void on_conn_closed(struct tls_stream *s)
{
    struct conn *c = tls_stream_data(s);
    struct node *n = c->n;

    if (n->cur == c) {
        n->cur = NULL;
    }
    n->conns_open--;
    proto_reader_close(&c->reader);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c != NULL && !c->closing) {
        c->closing = true;
        tls_stream_close(c->s, on_conn_closed);
    }
}

/* Send command @id to the agent on @n's current connection. */
static void send_command(struct node *n,
                         const char *id,
                         uint64_t term,
                         uint64_t ttl,
                         int action,
                         const char *service,
                         const char *manifest)
{
    struct proto_msg m = {0};

    m.type = PROTO_COMMAND;
    m.command.id = str_of(id);
    m.command.term = term;
    m.command.ttl_remaining_ms = ttl;
    m.command.action = action;
    m.command.service = str_of(service != NULL ? service : "");
    if (manifest != NULL) {
        m.command.manifest = str_of(manifest);
    }
    node_send(n->cur, &m);
}

static void node_record(struct node *n, const struct proto_msg *m)
{
    struct rec *r;
    size_t i;

    assert_true(n->n_recs < MAX_RECS);
    r = &n->recs[n->n_recs++];
    memset(r, 0, sizeof *r);
    r->type = m->type;
    switch (m->type) {
        case PROTO_HELLO:
            copy_str(r->id, sizeof r->id, m->hello.agent_id);
            copy_str(r->text, sizeof r->text, m->hello.agent_version);
            r->highest_term = m->hello.highest_term;
            r->n_labels = m->hello.n_labels;
            r->has_services = m->hello.has_services;
            r->n_items = m->hello.n_services;
            r->seq = m->hello.version;
            break;
        case PROTO_HEARTBEAT:
            r->seq = m->heartbeat.seq;
            break;
        case PROTO_REPORT:
            r->seq = m->report.seq;
            r->dropped = m->report.dropped;
            r->n_items = m->report.n_items;
            for (i = 0; i < m->report.n_items && i < 32; i++) {
                r->gens[i] = m->report.items[i].generation;
                r->states[i] = m->report.items[i].state;
            }
            break;
        case PROTO_ACK:
            copy_str(r->id, sizeof r->id, m->ack.id);
            r->term = m->ack.term;
            r->result_kind = m->ack.result_kind;
            r->n_result = m->ack.n_result;
            if (m->ack.result_kind == PROTO_RESULT_TEXT) {
                copy_str(r->text, sizeof r->text, m->ack.result_text);
            }
            break;
        case PROTO_NACK:
            copy_str(r->id, sizeof r->id, m->nack.id);
            r->term = m->nack.term;
            r->reason = m->nack.reason;
            copy_str(r->text, sizeof r->text, m->nack.message);
            break;
        case PROTO_ERROR:
            r->reason = m->error.code;
            copy_str(r->text, sizeof r->text, m->error.message);
            break;
        default:
            break;
    }
}

static void node_on_hello(struct conn *c)
{
    struct node *n = c->n;
    struct proto_msg m = {0};

    n->hellos++;
    switch (n->mode) {
        case NODE_WELCOME:
        case NODE_SILENT:
            m.type = PROTO_WELCOME;
            m.welcome.version = PROTO_VERSION;
            m.welcome.node_id = n->id;
            m.welcome.term = NODE_TERM;
            m.welcome.lease_ttl_ms = 1000;
            m.welcome.heartbeat_interval_ms = n->hb_interval_ms;
            node_send(c, &m);
            break;
        case NODE_REDIRECT:
            m.type = PROTO_REDIRECT;
            m.redirect.leader_address = str_of(n->redirect_to);
            m.redirect.leader_id = n->redirect_to[0] != '\0' ? 2 : 0;
            m.redirect.term = NODE_TERM;
            m.redirect.retry_after_ms = n->retry_after_ms;
            node_send(c, &m);
            conn_close(c);
            break;
        case NODE_ERROR:
            m.type = PROTO_ERROR;
            m.error.code = PROTO_ERR_NOT_LEADER;
            m.error.message = str_of("no leader here");
            node_send(c, &m);
            conn_close(c);
            break;
        case NODE_EARLY:
            send_command(n, "early", NODE_TERM, 1000, PROTO_ACTION_START, "web",
                         NULL);
            break;
    }
}

static void
node_on_read(struct tls_stream *s, int status, const char *data, size_t len)
{
    struct conn *c = tls_stream_data(s);
    struct node *n = c->n;
    struct proto_msg m;
    struct proto_msg out = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    const void *frame;
    size_t flen;

    if (status != 0 || len == 0) {
        conn_close(c);
        return;
    }
    proto_reader_feed(&c->reader, data, len);
    while (proto_reader_next(&c->reader, &frame, &flen, errmsg) == 0 &&
           frame != NULL) {
        assert_int_equal(proto_msg_decode(frame, flen, &m, errmsg), 0);
        node_record(n, &m);
        if (m.type == PROTO_HELLO) {
            node_on_hello(c);
        } else if (m.type == PROTO_HEARTBEAT) {
            n->heartbeats++;
            if (n->mode == NODE_WELCOME) {
                out.type = PROTO_HEARTBEAT_ACK;
                out.heartbeat_ack.seq = m.heartbeat.seq;
                out.heartbeat_ack.term = NODE_TERM;
                out.heartbeat_ack.lease_remaining_ms = 1000;
                node_send(c, &out);
            }
            if (n->stall_ms > 0) {
                /* The loop is shared: the agent stalls too, its
                 * heartbeat on the way, the ack not yet written. */
                uv_sleep((unsigned)n->stall_ms);
                n->stall_ms = 0;
                n->stalls++;
            }
        } else if (m.type == PROTO_ERROR) {
            conn_close(c);
        }
        proto_msg_close(&m);
        if (c->closing) {
            return;
        }
    }
}

static void node_on_handshake(struct tls_stream *s, int status)
{
    struct conn *c = tls_stream_data(s);

    if (status != 0) {
        conn_close(c);
    }
}

static void node_on_connection(uv_stream_t *listener, int status)
{
    struct node *n = listener->data;
    struct tls_stream_options o = {0};
    struct conn *c;
    char errmsg[REMS_ERRMSG_SIZE];

    assert_int_equal(status, 0);
    c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->n = n;
    proto_reader_init(&c->reader, 0);
    o.handshake_cb = node_on_handshake;
    o.read_cb = node_on_read;
    o.data = c;
    o.close_linger_ms = 200;
    assert_int_equal(
        tls_stream_open(&n->f->loop, n->f->sctx, &o, &c->s, errmsg), 0);
    assert_int_equal(uv_accept(listener, (uv_stream_t *)tls_stream_tcp(c->s)),
                     0);
    assert_int_equal(tls_stream_start(c->s, errmsg), 0);
    n->conns_open++;
    /* An older connection still closing is left to finish. */
    n->cur = c;
}

static void node_start(struct fixture *f, struct node *n, uint64_t id)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;

    n->f = f;
    n->id = id;
    n->hb_interval_ms = 20;
    assert_int_equal(uv_tcp_init(&f->loop, &n->listener), 0);
    n->listener.data = n;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(
        uv_tcp_bind(&n->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&n->listener, 16, node_on_connection), 0);
    assert_int_equal(
        uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &len), 0);
    n->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", n->port);
}

/* ------------------------------------------------------------------------
 * The fake services
 * ------------------------------------------------------------------------ */

static struct fixture *fake_fixture(void *impl)
{
    return impl;
}

static int fake_status(void *impl, struct proto_service **items, size_t *n)
{
    struct fake *k = &fake_fixture(impl)->fake;

    *items = rems_calloc(k->n_items + 1, sizeof **items);
    if (*items == NULL) {
        return REMS_ENOMEM;
    }
    memcpy(*items, k->items, k->n_items * sizeof **items);
    *n = k->n_items;
    return 0;
}

static void fake_complete(uv_timer_t *t)
{
    struct fake *k = t->data;
    agent_services_done_cb cb = k->cb;

    k->cb = NULL;
    cb(k->cb_data, k->cb_status, k->cb_status != 0 ? "fake failure" : NULL);
}

static int fake_action(void *impl,
                       const char *service,
                       int action,
                       uint64_t timeout_ms,
                       agent_services_done_cb cb,
                       void *data,
                       char *errmsg)
{
    struct fake *k = &fake_fixture(impl)->fake;
    (void)errmsg;

    assert_true(timeout_ms > 0);
    assert_null(k->cb);
    k->actions++;
    k->last_action = action;
    snprintf(k->last_service, sizeof k->last_service, "%s", service);
    k->cb = cb;
    k->cb_data = data;
    k->cb_status = k->next_status;
    k->next_status = 0;
    uv_timer_start(&k->timer, fake_complete, 0, 0);
    return 0;
}

static int fake_push(void *impl,
                     const char *service,
                     const char *manifest,
                     size_t len,
                     agent_services_done_cb cb,
                     void *data,
                     char *errmsg)
{
    struct fake *k = &fake_fixture(impl)->fake;

    if (len == 0 || manifest[0] != '{') {
        rems_errmsgf(errmsg, "manifest: not an object");
        return REMS_EINVAL;
    }
    k->pushes++;
    /* The link takes an answer from inside the call, too. */
    cb(data, 0, service[0] != '\0' ? "put web" : "put all");
    return 0;
}

static int fake_diagnostics(void *impl,
                            const char *service,
                            unsigned lines,
                            struct rems_buf *out,
                            char *errmsg)
{
    (void)impl;
    (void)errmsg;
    return rems_buf_printf(out, "{\"service\":\"%s\",\"lines\":%u}", service,
                           lines) == 0
               ? 0
               : REMS_ENOMEM;
}

static void fake_safe_state(void *impl)
{
    fake_fixture(impl)->fake.safe_states++;
}

static const struct agent_services_ops fake_ops = {
    .status = fake_status,
    .action = fake_action,
    .push_manifest = fake_push,
    .diagnostics = fake_diagnostics,
    .safe_state = fake_safe_state,
};

static struct proto_service fake_item(const char *name, uint64_t gen)
{
    struct proto_service s;

    memset(&s, 0, sizeof s);
    s.service = str_of(name);
    s.state = PROTO_STATE_RUNNING;
    s.generation = gen;
    s.health = PROTO_HEALTH_UNKNOWN;
    s.ready = true;
    s.since_ms = 1700000000000ull + gen;
    return s;
}

/* ------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    char cmd[TEST_TMPDIR_SIZE * 2 + 64];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    rems_log_set_level(REMS_LOG_ERROR);
    test_tmpdir_make(certdir);
    snprintf(cmd, sizeof cmd, "sh '%s' '%s' >/dev/null 2>&1", REMS_MAKE_TEST_CA,
             certdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    test_tmpdir_remove(certdir);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct tls_context_options so = {0};
    struct tls_context_options co = {0};

    assert_non_null(f);
    test_heap_install(&f->heap);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    test_tmpdir_make(f->dir);

    so.role = TLS_ROLE_SERVER;
    so.cert_file = cert("node1.pem");
    so.key_file = cert("node1.key");
    so.ca_file = cert("ca.pem");
    so.require_client_cert = true;
    assert_int_equal(tls_context_open(&so, &f->sctx, f->errmsg), 0);
    co.role = TLS_ROLE_CLIENT;
    co.cert_file = cert("agent-1.pem");
    co.key_file = cert("agent-1.key");
    co.ca_file = cert("ca.pem");
    assert_int_equal(tls_context_open(&co, &f->cctx, f->errmsg), 0);

    node_start(f, &f->nodes[0], 1);
    node_start(f, &f->nodes[1], 2);

    agent_config_init(&f->cfg);
    strcpy(f->cfg.id, "agent-1");
    assert_int_equal(agent_endpoint_parse(f->nodes[0].addr,
                                          strlen(f->nodes[0].addr),
                                          &f->cfg.endpoints[0]),
                     0);
    f->cfg.n_endpoints = 1;
    strcpy(f->cfg.data_dir, f->dir);
    strcpy(f->cfg.labels[0].key, "zone");
    strcpy(f->cfg.labels[0].value, "test");
    f->cfg.n_labels = 1;
    f->cfg.reconnect_initial_ms = 20;
    f->cfg.reconnect_max_ms = 100;
    f->cfg.connect_timeout_ms = 2000;
    f->cfg.outbox_max_reports = 100;
    f->cfg.executed_ids_kept = 100;

    assert_int_equal(agent_fence_open(f->dir, 100, &f->fence, f->errmsg), 0);

    f->fake.items[0] = fake_item("web", 1);
    f->fake.items[1] = fake_item("db", 1);
    f->fake.n_items = 2;
    assert_int_equal(uv_timer_init(&f->loop, &f->fake.timer), 0);
    f->fake.timer.data = &f->fake;
    f->services.ops = &fake_ops;
    f->services.impl = f;
    *state = f;
    return 0;
}

static void on_link_closed(void *data)
{
    struct fixture *f = data;
    f->link_closed = true;
}

static bool link_gone(struct fixture *f)
{
    return f->link_closed;
}

static void link_close(struct fixture *f)
{
    if (f->link != NULL) {
        f->link_closed = false;
        agent_link_close(f->link, on_link_closed, f);
        f->link = NULL;
        run_until(f, link_gone);
    }
}

static bool nodes_closed(struct fixture *f)
{
    return f->nodes[0].conns_open == 0 && f->nodes[1].conns_open == 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;
    int i;

    link_close(f);
    for (i = 0; i < 2; i++) {
        conn_close(f->nodes[i].cur);
    }
    run_until(f, nodes_closed);
    for (i = 0; i < 2; i++) {
        uv_close((uv_handle_t *)&f->nodes[i].listener, on_handle_closed);
    }
    uv_close((uv_handle_t *)&f->fake.timer, on_handle_closed);
    agent_fence_close(f->fence);
    agent_config_close(&f->cfg);
    tls_context_close(f->sctx);
    tls_context_close(f->cctx);
    test_loop_close(&f->loop);
    test_tmpdir_remove(f->dir);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

static void link_start(struct fixture *f)
{
    struct agent_link_options o = {0};

    o.config = &f->cfg;
    o.tls = f->cctx;
    o.fence = f->fence;
    o.services = f->services;
    o.agent_version = "9.8.7-test";
    o.close_linger_ms = 200;
    assert_int_equal(agent_link_open(&f->loop, &o, &f->link, f->errmsg), 0);
    assert_int_equal(agent_link_start(f->link, f->errmsg), 0);
}

static bool has_session(struct fixture *f)
{
    return f->link != NULL && agent_link_has_session(f->link);
}

static bool no_session(struct fixture *f)
{
    return !agent_link_has_session(f->link);
}

/* ------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------ */

static bool three_heartbeats_acked(struct fixture *f)
{
    return f->nodes[0].heartbeats >= 3;
}

/* hello says who the agent is; after welcome, heartbeats flow. */
static void hello_welcome_heartbeats(void **state)
{
    struct fixture *f = *state;
    const struct rec *h;
    int i;

    link_start(f);
    run_until(f, has_session);
    h = nth(&f->nodes[0], PROTO_HELLO, 0);
    assert_non_null(h);
    assert_string_equal(h->id, "agent-1");
    assert_int_equal(h->seq, PROTO_VERSION);
    assert_string_equal(h->text, "9.8.7-test");
    assert_int_equal(h->highest_term, 0);
    assert_int_equal(h->n_labels, 1);
    assert_true(h->has_services);
    assert_int_equal(h->n_items, 2);

    run_until(f, three_heartbeats_acked);
    for (i = 0; i < 3; i++) {
        assert_int_equal(nth(&f->nodes[0], PROTO_HEARTBEAT, i)->seq,
                         (uint64_t)i + 1);
    }
    assert_int_equal(f->nodes[0].hellos, 1);
    assert_true(has_session(f));
}

static bool second_node_welcomed(struct fixture *f)
{
    return f->nodes[1].hellos == 1 && has_session(f);
}

/* A redirect is followed to the leader it names. */
static void redirect_followed(void **state)
{
    struct fixture *f = *state;

    f->nodes[0].mode = NODE_REDIRECT;
    snprintf(f->nodes[0].redirect_to, sizeof f->nodes[0].redirect_to, "%s",
             f->nodes[1].addr);
    link_start(f);
    run_until(f, second_node_welcomed);
    assert_int_equal(f->nodes[0].hellos, 1);
    assert_int_equal(count(&f->nodes[1], PROTO_HELLO), 1);
}

static bool hellos_2(struct fixture *f)
{
    return f->nodes[0].hellos >= 2;
}

/* No heartbeat_ack for three intervals: the agent closes and
 * reconnects. */
static void heartbeat_timeout(void **state)
{
    struct fixture *f = *state;

    f->nodes[0].mode = NODE_SILENT;
    link_start(f);
    run_until(f, hellos_2);
    /* Three intervals of 20 ms, then the reconnect delay. */
    assert_true(f->nodes[0].heartbeats >= 2);
}

/* A redirect without a leader, an error frame, a command before welcome:
 * each ends the connection, and the agent tries again. */
static void refusals(void **state)
{
    struct fixture *f = *state;
    const struct rec *e;

    f->nodes[0].mode = NODE_ERROR;
    link_start(f);
    run_until(f, hellos_2);
    f->nodes[0].mode = NODE_EARLY;
    f->nodes[0].hellos = 0;
    run_until(f, hellos_2);
    e = nth(&f->nodes[0], PROTO_ERROR, 0);
    assert_non_null(e);
    assert_int_equal(e->reason, PROTO_ERR_MALFORMED);
    assert_string_equal(e->text, "command: not expected before welcome");
    assert_int_equal(f->fake.actions, 0);
    f->nodes[0].mode = NODE_REDIRECT;
    f->nodes[0].redirect_to[0] = '\0';
    f->nodes[0].hellos = 0;
    run_until(f, hellos_2);
    f->nodes[0].mode = NODE_WELCOME;
    run_until(f, has_session);
}

static bool dead_man_fired(struct fixture *f)
{
    return f->fake.safe_states > 0;
}

/* Without a session for dead_man.timeout_ms, the services go to their
 * safe state, once; a welcome re-arms the switch. */
static void dead_man(void **state)
{
    struct fixture *f = *state;

    f->cfg.dead_man_timeout_ms = 150;
    f->nodes[0].mode = NODE_REDIRECT; /* No leader known. */
    link_start(f);
    run_until(f, dead_man_fired);
    assert_true(agent_link_dead_man_triggered(f->link));
    run_for(f, 200);
    assert_int_equal(f->fake.safe_states, 1);
    f->nodes[0].mode = NODE_WELCOME;
    run_until(f, has_session);
    assert_false(agent_link_dead_man_triggered(f->link));
    /* The session ends: the switch counts again from there. */
    f->fake.safe_states = 0;
    f->nodes[0].mode = NODE_REDIRECT;
    conn_close(f->nodes[0].cur);
    run_until(f, no_session);
    assert_int_equal(f->fake.safe_states, 0);
    run_until(f, dead_man_fired);
    run_for(f, 200);
    assert_int_equal(f->fake.safe_states, 1);
}

static bool stalled(struct fixture *f)
{
    return f->nodes[0].stalls > 0;
}

static int heartbeats_mark;

static bool five_more_heartbeats(struct fixture *f)
{
    return f->nodes[0].heartbeats >= heartbeats_mark + 5;
}

/* The loop is busy for longer than the heartbeat timeout (60 ms) while a
 * heartbeat_ack is on its way, as when the fence write of a command waits
 * for a slow disk. The timers run first after the stall, before the ack
 * is read: that time is not the node's, and the session holds. */
static void busy_loop_keeps_session(void **state)
{
    struct fixture *f = *state;

    link_start(f);
    run_until(f, has_session);
    f->nodes[0].stall_ms = 300;
    run_until(f, stalled);
    heartbeats_mark = f->nodes[0].heartbeats;
    run_until(f, five_more_heartbeats);
    assert_int_equal(f->nodes[0].hellos, 1);
    assert_true(has_session(f));
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

static const char *waiting_for;
static int hellos_before;

/* Answered, or the connection was replaced: the fake node does not resend
 * a command on the next connection as a leader would, so its answer will
 * never come. */
static bool answered(struct fixture *f)
{
    return answer(&f->nodes[0], waiting_for) != NULL ||
           f->nodes[0].hellos != hellos_before;
}

/* Send a command and wait for its answer. */
static const struct rec *command(struct fixture *f,
                                 const char *id,
                                 uint64_t term,
                                 uint64_t ttl,
                                 int action,
                                 const char *service,
                                 const char *manifest)
{
    size_t before = f->nodes[0].n_recs;
    const struct rec *r;

    send_command(&f->nodes[0], id, term, ttl, action, service, manifest);
    waiting_for = id;
    hellos_before = f->nodes[0].hellos;
    for (;;) {
        run_until(f, answered);
        r = answer(&f->nodes[0], id);
        if (r != NULL && (size_t)(r - f->nodes[0].recs) >= before) {
            return r;
        }
        if (f->nodes[0].hellos != hellos_before) {
            fail_msg("command %s: the agent reconnected, the answer is lost",
                     id);
        }
        /* An older answer to the same id: wait for the new one. */
        f->nodes[0].recs[r - f->nodes[0].recs].id[0] = '\0';
    }
}

static void assert_nack(const struct rec *r, int reason, const char *text)
{
    assert_int_equal(r->type, PROTO_NACK);
    assert_int_equal(r->reason, reason);
    if (text != NULL) {
        assert_string_equal(r->text, text);
    }
}

/* At most once, never stale, never late: each rule answers with its
 * reason, and only the accepted command reaches the services. */
static void commands(void **state)
{
    struct fixture *f = *state;
    const struct rec *r;

    link_start(f);
    run_until(f, has_session);

    r = command(f, "c1", 5, 10000, PROTO_ACTION_START, "web", NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(r->term, 5);
    assert_int_equal(f->fake.actions, 1);
    assert_int_equal(f->fake.last_action, PROTO_ACTION_START);
    assert_string_equal(f->fake.last_service, "web");
    assert_int_equal(agent_fence_highest_term(f->fence), 5);

    r = command(f, "c1", 5, 10000, PROTO_ACTION_START, "web", NULL);
    assert_nack(r, PROTO_NACK_DUPLICATE, NULL);
    assert_non_null(strstr(r->text, "command c1 was accepted at "));
    r = command(f, "c2", 4, 10000, PROTO_ACTION_STOP, "web", NULL);
    assert_nack(r, PROTO_NACK_STALE_TERM,
                "term 4 is below 5, the highest accepted");
    r = command(f, "c3", 5, 0, PROTO_ACTION_STOP, "web", NULL);
    assert_nack(r, PROTO_NACK_EXPIRED, "ttl_remaining_ms was 0 on receipt");
    r = command(f, "c4", 5, 10000, PROTO_ACTION_STOP, "nope", NULL);
    assert_nack(r, PROTO_NACK_UNKNOWN_SERVICE,
                "no service \"nope\" on this agent");
    assert_int_equal(f->fake.actions, 1);

    /* Busy: not run, so the same id may come again and run. */
    f->fake.next_status = REMS_EBUSY;
    r = command(f, "c5", 6, 10000, PROTO_ACTION_PAUSE, "db", NULL);
    assert_nack(r, PROTO_NACK_BUSY, "fake failure");
    r = command(f, "c5", 6, 10000, PROTO_ACTION_PAUSE, "db", NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(f->fake.actions, 3);
    /* A failure is a nack failed, and the command counts as run. */
    f->fake.next_status = REMS_EIO;
    r = command(f, "c6", 6, 10000, PROTO_ACTION_RESTART, "db", NULL);
    assert_nack(r, PROTO_NACK_FAILED, "fake failure");
    r = command(f, "c6", 6, 10000, PROTO_ACTION_RESTART, "db", NULL);
    assert_nack(r, PROTO_NACK_DUPLICATE, NULL);

    /* Manifests and diagnostics. */
    r = command(f, "c7", 6, 10000, PROTO_ACTION_PUSH_MANIFEST, "web",
                "{\"name\":\"web\"}");
    assert_int_equal(r->type, PROTO_ACK);
    assert_string_equal(r->text, "put web");
    r = command(f, "c8", 6, 10000, PROTO_ACTION_PUSH_MANIFEST, NULL, "[]");
    assert_nack(r, PROTO_NACK_FAILED, "manifest: not an object");
    r = command(f, "c8", 6, 10000, PROTO_ACTION_PUSH_MANIFEST, NULL, "{}");
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(f->fake.pushes, 2);
    r = command(f, "c9", 6, 10000, PROTO_ACTION_DIAGNOSTICS, "web", NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(r->result_kind, PROTO_RESULT_TEXT);
    assert_string_equal(r->text, "{\"service\":\"web\",\"lines\":200}");
    r = command(f, "c10", 6, 10000, PROTO_ACTION_DIAGNOSTICS, NULL, NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(r->result_kind, PROTO_RESULT_MAP);
    assert_int_equal(r->n_result, 12);

    /* Shutting down: refused as busy, not recorded. */
    agent_link_drain(f->link);
    r = command(f, "c11", 6, 10000, PROTO_ACTION_STOP, "web", NULL);
    assert_nack(r, PROTO_NACK_BUSY, "the agent is shutting down");
    assert_int_equal(agent_fence_count(f->fence), 7);
}

static bool c1_answered(struct fixture *f)
{
    return answer(&f->nodes[0], "c1") != NULL;
}

/* The fence outlives the agent: after a restart hello carries the highest
 * term, and a resent command is a duplicate. */
static void fence_survives_restart(void **state)
{
    struct fixture *f = *state;
    const struct rec *r;

    link_start(f);
    run_until(f, has_session);
    send_command(&f->nodes[0], "c1", 7, 10000, PROTO_ACTION_START, "web", NULL);
    run_until(f, c1_answered);
    assert_int_equal(answer(&f->nodes[0], "c1")->type, PROTO_ACK);

    link_close(f);
    agent_fence_close(f->fence);
    f->fence = NULL;
    assert_int_equal(agent_fence_open(f->dir, 100, &f->fence, f->errmsg), 0);
    f->nodes[0].hellos = 0;
    link_start(f);
    run_until(f, has_session);
    r = nth(&f->nodes[0], PROTO_HELLO, 1);
    assert_non_null(r);
    assert_int_equal(r->highest_term, 7);
    r = command(f, "c1", 7, 10000, PROTO_ACTION_START, "web", NULL);
    assert_nack(r, PROTO_NACK_DUPLICATE, NULL);
    r = command(f, "c2", 6, 10000, PROTO_ACTION_START, "web", NULL);
    assert_nack(r, PROTO_NACK_STALE_TERM, NULL);
    assert_int_equal(f->fake.actions, 1);
}

/* ------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------ */

static bool got_report(struct fixture *f)
{
    return count(&f->nodes[0], PROTO_REPORT) >= 1;
}

static bool got_two_reports(struct fixture *f)
{
    return count(&f->nodes[0], PROTO_REPORT) >= 2;
}

/* Changes made while disconnected wait in the outbox (the oldest dropped
 * when full) and arrive in order after the next welcome, with the count
 * of those dropped. */
static void reports_after_reconnect(void **state)
{
    struct fixture *f = *state;
    struct proto_service s;
    const struct rec *r;
    uint64_t g;

    f->cfg.outbox_max_reports = 3;
    link_start(f);
    run_until(f, has_session);
    s = fake_item("web", 1);
    agent_link_report(f->link, &s);
    run_until(f, got_report);
    r = nth(&f->nodes[0], PROTO_REPORT, 0);
    assert_int_equal(r->seq, 1);
    assert_int_equal(r->n_items, 1);
    assert_int_equal(r->gens[0], 1);
    assert_int_equal(r->dropped, 0);

    conn_close(f->nodes[0].cur);
    run_until(f, no_session);
    for (g = 2; g <= 7; g++) {
        s = fake_item(g % 2 ? "web" : "db", g);
        s.state = g % 3 ? PROTO_STATE_STARTING : PROTO_STATE_RUNNING;
        agent_link_report(f->link, &s);
    }
    run_until(f, got_two_reports);
    assert_int_equal(f->nodes[0].hellos, 2);
    r = nth(&f->nodes[0], PROTO_REPORT, 1);
    assert_int_equal(r->seq, 2);
    assert_int_equal(r->dropped, 3);
    assert_int_equal(r->n_items, 3);
    assert_int_equal(r->gens[0], 5);
    assert_int_equal(r->gens[1], 6);
    assert_int_equal(r->gens[2], 7);
    assert_int_equal(r->states[2], PROTO_STATE_STARTING);
    /* The report came after the welcome of the new connection. */
    assert_true(nth(&f->nodes[0], PROTO_HELLO, 1) < r);
}

/* ------------------------------------------------------------------------
 * With the supervisor
 * ------------------------------------------------------------------------ */

static void on_sup_event(struct supervisor *s, const struct sup_event *ev)
{
    struct fixture *f = supervisor_data(s);

    if (ev->kind == SUP_EVENT_STATE && f->link != NULL) {
        agent_link_report(f->link, &ev->status);
    }
}

static bool running_reported(struct fixture *f)
{
    size_t i;
    size_t k;

    for (i = 0; i < f->nodes[0].n_recs; i++) {
        const struct rec *r = &f->nodes[0].recs[i];
        for (k = 0; r->type == PROTO_REPORT && k < r->n_items && k < 32; k++) {
            if (r->states[k] == PROTO_STATE_RUNNING && r->gens[k] == 1) {
                return true;
            }
        }
    }
    return false;
}

/* The fixture whose supervisor is closing. */
static struct fixture *closed_fixture;

static void on_sup_stopped(struct supervisor *s)
{
    struct fixture *f = supervisor_data(s);
    f->sup_done = true;
}

static void on_sup_closed(struct supervisor *s)
{
    (void)s;
    closed_fixture->sup_closed = true;
}

static bool sup_done(struct fixture *f)
{
    return f->sup_done;
}

static bool sup_closed(struct fixture *f)
{
    return f->sup_closed;
}

/* A start command runs a real process once; its states are reported. */
static void supervisor_start(void **state)
{
    struct fixture *f = *state;
    static const char spec_json[] =
        "{\"name\":\"sleeper\",\"command\":[\"/bin/sleep\",\"30\"],"
        "\"autostart\":false,\"stop_timeout_ms\":2000}";
    struct supervisor_options so = {0};
    struct sup_service_spec *spec;
    struct proto_service *items;
    const struct rec *r;
    size_t n;

    so.event_cb = on_sup_event;
    so.data = f;
    assert_int_equal(supervisor_open(&f->loop, &so, &f->sup, f->errmsg), 0);
    assert_int_equal(
        sup_spec_parse_json(spec_json, strlen(spec_json), &spec, f->errmsg), 0);
    assert_int_equal(supervisor_put(f->sup, spec, f->errmsg), 0);
    sup_spec_free(spec);
    agent_services_supervisor(f->sup, &f->services);
    link_start(f);
    run_until(f, has_session);
    r = nth(&f->nodes[0], PROTO_HELLO, 0);
    assert_int_equal(r->n_items, 1);

    r = command(f, "s1", 3, 10000, PROTO_ACTION_START, "sleeper", NULL);
    assert_int_equal(r->type, PROTO_ACK);
    run_until(f, running_reported);
    r = command(f, "s1", 3, 10000, PROTO_ACTION_START, "sleeper", NULL);
    assert_nack(r, PROTO_NACK_DUPLICATE, NULL);
    assert_int_equal(supervisor_status(f->sup, &items, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(items[0].state, PROTO_STATE_RUNNING);
    assert_int_equal(items[0].generation, 1); /* Started once. */
    rems_free(items);
    r = command(f, "s2", 3, 10000, PROTO_ACTION_STOP, "ghost", NULL);
    assert_nack(r, PROTO_NACK_UNKNOWN_SERVICE, NULL);
    r = command(f, "s3", 3, 10000, PROTO_ACTION_DIAGNOSTICS, "sleeper", NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_non_null(strstr(r->text, "sleeper"));

    /* Manifests: one service, then the whole manifest, which removes what
     * it leaves out. A bad manifest changes nothing and is not kept. */
    r = command(f, "s4", 3, 10000, PROTO_ACTION_PUSH_MANIFEST, "extra",
                "{\"name\":\"extra\",\"command\":[\"/bin/true\"]}");
    assert_int_equal(r->type, PROTO_ACK);
    assert_string_equal(r->text, "put extra");
    r = command(f, "s5", 3, 10000, PROTO_ACTION_PUSH_MANIFEST, "other",
                "{\"name\":\"extra\",\"command\":[\"/bin/true\"]}");
    assert_nack(r, PROTO_NACK_FAILED,
                "manifest: describes service \"extra\", the command names "
                "\"other\"");
    r = command(f, "s6", 3, 10000, PROTO_ACTION_PUSH_MANIFEST, NULL,
                "{\"services\":[{\"name\":\"a\",\"command\":[\"/bin/true\"],"
                "\"depends_on\":[\"zz\"]}]}");
    assert_nack(r, PROTO_NACK_FAILED,
                "manifest: services.a.depends_on: unknown service \"zz\"");
    r = command(f, "s6", 3, 10000, PROTO_ACTION_PUSH_MANIFEST, NULL,
                "[{\"name\":\"sleeper\",\"command\":[\"/bin/sleep\",\"30\"],"
                "\"autostart\":false}]");
    assert_int_equal(r->type, PROTO_ACK);
    assert_string_equal(r->text, "put sleeper; removed extra");
    assert_int_equal(supervisor_status(f->sup, &items, &n), 0);
    assert_int_equal(n, 1);
    rems_free(items);

    link_close(f);
    supervisor_stop_all(f->sup, on_sup_stopped);
    run_until(f, sup_done);
    /* The supervisor is freed before its close callback runs. */
    closed_fixture = f;
    supervisor_close(f->sup, on_sup_closed);
    f->sup = NULL;
    run_until(f, sup_closed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(hello_welcome_heartbeats),
        TEST(redirect_followed),
        TEST(heartbeat_timeout),
        TEST(refusals),
        TEST(dead_man),
        TEST(busy_loop_keeps_session),
        TEST(commands),
        TEST(fence_survives_restart),
        TEST(reports_after_reconnect),
        TEST(supervisor_start),
    };
    return cmocka_run_group_tests_name("agent_link", tests, group_setup,
                                       group_teardown);
}
