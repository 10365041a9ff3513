/* Tests of agentproto/tls.h: a real loop, real TCP on 127.0.0.1:0, and
 * certificates made once per run by tests/lib/make-test-ca.sh. A server
 * stream (from the fixture's listener) and a client stream talk to each
 * other on the same loop; callbacks record what they saw in struct peer. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentproto/tls.h"
#include "tests/lib/heap.h"
#include "tests/lib/loop.h"
#include "tests/lib/tmpdir.h"

#define MAX_ITER 100000
#define LARGE_SIZE ((size_t)4 << 20)

/* The certificates, made by group_setup(). */
static char certdir[TEST_TMPDIR_SIZE];

struct fixture;

/* One end of a connection. */
struct peer {
    struct fixture *f;
    const char *name;
    struct tls_stream *s;
    /* Behaviour. */
    bool echo;              /* Write back what is read. */
    bool close_on_end;      /* Close on failure or EOF. */
    bool stop_at_handshake; /* tls_stream_read_stop() in handshake_cb. */
    bool stop_after_read;   /* tls_stream_read_stop() after each read. */
    size_t close_after;     /* Close once this many bytes were read. */
    /* Observations. */
    int hs_calls;
    bool hs_done;
    int hs_status;
    char hs_errmsg[REMS_ERRMSG_SIZE];
    char verify_error[128];
    char peer_id[TLS_PEER_ID_MAX + 1];
    bool has_peer_id;
    bool reused;
    int read_calls;
    bool eof;
    bool read_failed;
    int read_status;
    char read_errmsg[REMS_ERRMSG_SIZE];
    char *rbuf;
    size_t rlen;
    size_t rcap;
    bool echo_failed;
    int writes_done;
    int writes_failed;
    int last_write_status;
    bool closing;
    bool closed;
    int close_calls;
};

struct fixture {
    struct test_heap heap;
    uv_loop_t loop;
    uv_tcp_t listener;
    int port;
    struct tls_context *sctx;
    struct tls_context *cctx;
    struct peer server;
    struct peer client;
    int server_open_rv; /* tls_stream_open() in on_connection. */
    bool server_accepted;
    uv_tcp_t refused; /* Takes a socket no server stream was made for. */
    bool refused_used;
    unsigned client_linger_ms; /* For client_connect(). */
    uv_connect_t connect;
    bool connected;
    int connect_status;
    uv_tcp_t raw; /* A plain TCP client. */
    bool raw_used;
    uv_write_t raw_write;
    char errmsg[REMS_ERRMSG_SIZE];
};

struct echo_write {
    struct tls_write req;
    struct peer *p;
};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static const char *cert_path(const char *name)
{
    static char paths[8][TEST_TMPDIR_SIZE + 64];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", certdir, name);
    return p;
}

static void peer_reset(struct fixture *f, struct peer *p, const char *name)
{
    free(p->rbuf);
    memset(p, 0, sizeof *p);
    p->f = f;
    p->name = name;
    p->close_on_end = true;
}

static void on_close(struct tls_stream *s)
{
    struct peer *p = tls_stream_data(s);
    p->close_calls++;
    p->closed = true;
    p->s = NULL;
}

static void peer_close(struct peer *p)
{
    if (p->s != NULL && !p->closing) {
        p->closing = true;
        tls_stream_close(p->s, on_close);
    }
}

static void on_echo_written(struct tls_write *req, int status)
{
    struct echo_write *w = req->data;
    w->p->last_write_status = status;
    if (status == 0) {
        w->p->writes_done++;
    } else {
        w->p->writes_failed++;
    }
    free(w);
}

/* Write @len bytes of @buf from @p; returns tls_stream_write()'s code. */
static int peer_write(struct peer *p, const void *buf, size_t len)
{
    struct echo_write *w = malloc(sizeof *w);
    int rv;
    assert_non_null(w);
    w->p = p;
    w->req.data = w;
    rv = tls_stream_write(p->s, &w->req, buf, len, on_echo_written);
    if (rv != 0) {
        free(w);
    }
    return rv;
}

static void on_handshake(struct tls_stream *s, int status)
{
    struct peer *p = tls_stream_data(s);
    const char *v = tls_stream_verify_error(s);
    const char *id = tls_stream_peer_id(s);

    p->hs_calls++;
    p->hs_done = true;
    p->hs_status = status;
    snprintf(p->hs_errmsg, sizeof p->hs_errmsg, "%s", tls_stream_errmsg(s));
    snprintf(p->verify_error, sizeof p->verify_error, "%s", v ? v : "");
    p->has_peer_id = id != NULL;
    snprintf(p->peer_id, sizeof p->peer_id, "%s", id ? id : "");
    p->reused = tls_stream_session_reused(s);
    if (status != 0) {
        if (p->close_on_end && status != REMS_ECANCELED) {
            peer_close(p);
        }
        return;
    }
    if (p->stop_at_handshake) {
        tls_stream_read_stop(s);
    }
}

static void
on_read(struct tls_stream *s, int status, const char *data, size_t len)
{
    struct peer *p = tls_stream_data(s);

    assert_false(p->closing); /* No read callback after close. */
    assert_false(p->eof);
    assert_false(p->read_failed);
    p->read_calls++;
    if (status != 0) {
        assert_null(data);
        assert_int_equal(len, 0);
        p->read_failed = true;
        p->read_status = status;
        snprintf(p->read_errmsg, sizeof p->read_errmsg, "%s",
                 tls_stream_errmsg(s));
        if (p->close_on_end) {
            peer_close(p);
        }
        return;
    }
    if (len == 0) {
        assert_null(data);
        p->eof = true;
        if (p->close_on_end) {
            peer_close(p);
        }
        return;
    }
    if (p->rlen + len > p->rcap) {
        p->rcap = (p->rlen + len) * 2;
        p->rbuf = realloc(p->rbuf, p->rcap);
        assert_non_null(p->rbuf);
    }
    memcpy(p->rbuf + p->rlen, data, len);
    p->rlen += len;
    if (p->echo && peer_write(p, data, len) != 0) {
        p->echo_failed = true; /* Only out of memory, in oom_connection. */
        peer_close(p);
        return;
    }
    if (p->stop_after_read) {
        tls_stream_read_stop(s);
    }
    if (p->close_after != 0 && p->rlen >= p->close_after) {
        peer_close(p);
    }
}

static struct tls_stream_options peer_options(struct peer *p,
                                              const char *server_name)
{
    struct tls_stream_options o = {0};
    o.server_name = server_name;
    o.handshake_cb = on_handshake;
    o.read_cb = on_read;
    o.data = p;
    return o;
}

static void on_refused_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct fixture *f = listener->data;
    struct tls_stream_options o = peer_options(&f->server, NULL);
    int rv;

    assert_int_equal(status, 0);
    rv = tls_stream_open(&f->loop, f->sctx, &o, &f->server.s, f->errmsg);
    f->server_open_rv = rv;
    if (rv != 0) {
        /* Take the socket anyway and drop it: the client sees EOF. */
        assert_false(f->refused_used);
        f->refused_used = true;
        assert_int_equal(uv_tcp_init(&f->loop, &f->refused), 0);
        assert_int_equal(uv_accept(listener, (uv_stream_t *)&f->refused), 0);
        uv_close((uv_handle_t *)&f->refused, on_refused_closed);
        f->server.closed = true;
        return;
    }
    assert_int_equal(
        uv_accept(listener, (uv_stream_t *)tls_stream_tcp(f->server.s)), 0);
    assert_int_equal(tls_stream_start(f->server.s, f->errmsg), 0);
    f->server_accepted = true;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct fixture *f = req->data;
    f->connected = true;
    f->connect_status = status;
    if (status != 0) {
        return;
    }
    assert_int_equal(tls_stream_start(f->client.s, f->errmsg), 0);
}

static struct sockaddr_in server_addr(struct fixture *f)
{
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", f->port, &addr), 0);
    return addr;
}

/* Open the client stream to @server_name (resuming @session) and connect. */
static void client_connect(struct fixture *f,
                           const char *server_name,
                           const struct tls_session *session)
{
    struct tls_stream_options o = peer_options(&f->client, server_name);
    struct sockaddr_in addr = server_addr(f);

    o.session = session;
    o.close_linger_ms = f->client_linger_ms;
    assert_int_equal(
        tls_stream_open(&f->loop, f->cctx, &o, &f->client.s, f->errmsg), 0);
    f->connect.data = f;
    assert_int_equal(uv_tcp_connect(&f->connect, tls_stream_tcp(f->client.s),
                                    (const struct sockaddr *)&addr, on_connect),
                     0);
}

static void server_context(struct fixture *f, bool require, const char *crl)
{
    struct tls_context_options o = {0};
    o.role = TLS_ROLE_SERVER;
    o.cert_file = cert_path("node1.pem");
    o.key_file = cert_path("node1.key");
    o.ca_file = cert_path("ca.pem");
    o.crl_file = crl != NULL ? cert_path(crl) : NULL;
    o.require_client_cert = require;
    assert_int_equal(tls_context_open(&o, &f->sctx, f->errmsg), 0);
}

/* A client context presenting @name.pem (NULL: no certificate). */
static void client_context(struct fixture *f, const char *name)
{
    struct tls_context_options o = {0};
    char cert[64];
    char key[64];

    o.role = TLS_ROLE_CLIENT;
    if (name != NULL) {
        snprintf(cert, sizeof cert, "%s.pem", name);
        snprintf(key, sizeof key, "%s.key", name);
        o.cert_file = cert_path(cert);
        o.key_file = cert_path(key);
    }
    o.ca_file = cert_path("ca.pem");
    assert_int_equal(tls_context_open(&o, &f->cctx, f->errmsg), 0);
}

static bool both_handshakes(struct fixture *f)
{
    return f->client.hs_done && f->server.hs_done;
}

/* Run until *@cond(f) holds. */
static void run_until(struct fixture *f, bool (*cond)(struct fixture *))
{
    int i;
    for (i = 0; i < MAX_ITER && !cond(f); i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_true(cond(f));
}

static bool both_closed(struct fixture *f)
{
    return f->client.closed && f->server.closed;
}

/* Close whatever is open and run until both ends are gone. */
static void close_both(struct fixture *f)
{
    peer_close(&f->client);
    peer_close(&f->server);
    if (f->client.s == NULL && !f->client.closing) {
        f->client.closed = true;
    }
    if (f->server.s == NULL && !f->server.closing) {
        f->server.closed = true;
    }
    run_until(f, both_closed);
}

/* Connect a client presenting @name (server requiring client certificates,
 * with @crl) to @server_name and run both handshakes to their end. */
static void handshake(struct fixture *f,
                      const char *name,
                      const char *crl,
                      const char *server_name)
{
    server_context(f, true, crl);
    client_context(f, name);
    client_connect(f, server_name, NULL);
    run_until(f, both_handshakes);
}

/* ------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    char cmd[TEST_TMPDIR_SIZE * 2 + 64];
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* As remsd does: writes to a reset peer. */
    test_tmpdir_make(certdir);
    snprintf(cmd, sizeof cmd, "sh '%s' '%s'", REMS_MAKE_TEST_CA, certdir);
    return system(cmd) == 0 ? 0 : -1;
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
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int len = sizeof name;

    assert_non_null(f);
    test_heap_install(&f->heap);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_tcp_init(&f->loop, &f->listener), 0);
    f->listener.data = f;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(
        uv_tcp_bind(&f->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16, on_connection),
                     0);
    assert_int_equal(
        uv_tcp_getsockname(&f->listener, (struct sockaddr *)&name, &len), 0);
    f->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    peer_reset(f, &f->server, "server");
    peer_reset(f, &f->client, "client");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    /* No connection may come in after the server end is gone. */
    uv_close((uv_handle_t *)&f->listener, NULL);
    close_both(f);
    tls_context_close(f->sctx);
    tls_context_close(f->cctx);
    test_loop_close(&f->loop);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f->client.rbuf);
    free(f->server.rbuf);
    /* Each close callback ran at most once (exactly once when checked by
     * the test). */
    assert_true(f->client.close_calls <= 1 && f->server.close_calls <= 1);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * Handshakes and identities
 * ------------------------------------------------------------------------ */

/* A valid client certificate: both ends succeed; the server sees the CN. */
static void handshake_ok(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(f->server.hs_status, 0);
    assert_int_equal(f->client.hs_status, 0);
    assert_string_equal(f->server.peer_id, "agent-1");
    assert_string_equal(f->client.peer_id, "node1.rems.test");
    assert_string_equal(f->server.verify_error, "");
    assert_false(f->server.reused);
    assert_false(f->client.reused);
    assert_string_equal(tls_stream_peer_id(f->server.s), "agent-1");
    assert_null(tls_stream_verify_error(f->server.s));
    close_both(f);
    assert_int_equal(f->client.hs_calls, 1);
    assert_int_equal(f->server.hs_calls, 1);
}

/* A SAN URI rems://agent/<id> wins over the common name. */
static void handshake_san_uri(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-2", NULL, "node1.rems.test");
    assert_int_equal(f->server.hs_status, 0);
    assert_int_equal(f->client.hs_status, 0);
    assert_string_equal(f->server.peer_id, "agent-2");
}

/* The server's IP address as the server name matches its SAN IP. */
static void handshake_ip_name(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", NULL, "127.0.0.1");
    assert_int_equal(f->client.hs_status, 0);
    assert_int_equal(f->server.hs_status, 0);
}

/* The CRL is only checked when configured: a revoked certificate passes
 * without it. */
static void handshake_revoked_without_crl(void **state)
{
    struct fixture *f = *state;

    handshake(f, "revoked", NULL, "node1.rems.test");
    assert_int_equal(f->server.hs_status, 0);
    assert_string_equal(f->server.peer_id, "agent-4");
}

/* A server that does not ask for client certificates (HTTPS). */
static void handshake_no_client_auth(void **state)
{
    struct fixture *f = *state;

    server_context(f, false, NULL);
    client_context(f, NULL);
    client_connect(f, "node1.rems.test", NULL);
    run_until(f, both_handshakes);
    assert_int_equal(f->server.hs_status, 0);
    assert_int_equal(f->client.hs_status, 0);
    assert_false(f->server.has_peer_id);
    assert_string_equal(f->client.peer_id, "node1.rems.test");
}

/* Names that are no valid agent id give no peer id; the handshake itself
 * succeeds (the owner decides). An invalid SAN URI does not fall back to
 * the common name; nor do several rems://agent/ URIs. */
static void peer_id_invalid(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"bad-id", "bad-uri", "two-uris",
                                        "long-uri"};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        handshake(f, names[i], NULL, "node1.rems.test");
        assert_int_equal(f->server.hs_status, 0);
        assert_false(f->server.has_peer_id);
        assert_null(tls_stream_peer_id(f->server.s));
        close_both(f);
        tls_context_close(f->sctx);
        tls_context_close(f->cctx);
        f->sctx = NULL;
        f->cctx = NULL;
        peer_reset(f, &f->client, "client");
        peer_reset(f, &f->server, "server");
    }
}

/* Check a refusal: both handshakes fail during the handshake, the server
 * with REMS_EINVAL and @server_msg (and @verify as its verify error), the
 * client with REMS_EINVAL and @client_msg. */
static void assert_refused(struct fixture *f,
                           const char *server_msg,
                           const char *verify,
                           const char *client_msg)
{
    assert_int_equal(f->server.hs_status, REMS_EINVAL);
    assert_string_equal(f->server.hs_errmsg, server_msg);
    assert_string_equal(f->server.verify_error, verify);
    assert_false(f->server.has_peer_id);
    assert_int_equal(f->client.hs_status, REMS_EINVAL);
    assert_string_equal(f->client.hs_errmsg, client_msg);
    assert_int_equal(f->client.read_calls, 0);
    assert_int_equal(f->server.read_calls, 0);
    run_until(f, both_closed);
    assert_int_equal(f->client.hs_calls, 1);
    assert_int_equal(f->server.hs_calls, 1);
}

static void refused_other_ca(void **state)
{
    struct fixture *f = *state;

    handshake(f, "other-agent", NULL, "node1.rems.test");
    assert_refused(f,
                   "tls handshake: certificate verify failed: unable to get "
                   "local issuer certificate",
                   "unable to get local issuer certificate",
                   "tls handshake: tlsv1 alert unknown ca");
}

static void refused_expired(void **state)
{
    struct fixture *f = *state;

    handshake(f, "expired", NULL, "node1.rems.test");
    assert_refused(f,
                   "tls handshake: certificate verify failed: certificate "
                   "has expired",
                   "certificate has expired",
                   "tls handshake: sslv3 alert certificate expired");
}

static void refused_revoked(void **state)
{
    struct fixture *f = *state;

    handshake(f, "revoked", "crl.pem", "node1.rems.test");
    assert_refused(f,
                   "tls handshake: certificate verify failed: certificate "
                   "revoked",
                   "certificate revoked",
                   "tls handshake: sslv3 alert certificate revoked");
}

/* With the CRL configured, valid certificates still pass. */
static void crl_valid_cert_passes(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", "crl.pem", "node1.rems.test");
    assert_int_equal(f->server.hs_status, 0);
    assert_int_equal(f->client.hs_status, 0);
}

static void refused_no_client_cert(void **state)
{
    struct fixture *f = *state;

    handshake(f, NULL, NULL, "node1.rems.test");
    assert_refused(f, "tls handshake: peer did not return a certificate", "",
                   "tls handshake: tlsv13 alert certificate required");
}

/* A client expecting another name refuses the server's certificate. */
static void hostname_mismatch(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", NULL, "node2.rems.test");
    assert_int_equal(f->client.hs_status, REMS_EINVAL);
    assert_string_equal(f->client.hs_errmsg,
                        "tls handshake: certificate verify failed: hostname "
                        "mismatch");
    assert_string_equal(f->client.verify_error, "hostname mismatch");
    assert_int_not_equal(f->server.hs_status, 0);
    run_until(f, both_closed);
}

/* ------------------------------------------------------------------------
 * Data
 * ------------------------------------------------------------------------ */

static bool client_has_echo(struct fixture *f)
{
    return f->client.rlen == f->server.rlen && f->server.rlen > 0 &&
           f->client.writes_done > 0 && f->server.writes_done > 0;
}

static void echo_small(void **state)
{
    struct fixture *f = *state;
    const char msg[] = "hello, agent";

    f->server.echo = true;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(peer_write(&f->client, msg, sizeof msg), 0);
    assert_int_equal(tls_stream_write_queue_size(f->client.s), sizeof msg);
    run_until(f, client_has_echo);
    assert_int_equal(f->client.rlen, sizeof msg);
    assert_memory_equal(f->client.rbuf, msg, sizeof msg);
    assert_memory_equal(f->server.rbuf, msg, sizeof msg);
    assert_int_equal(tls_stream_write_queue_size(f->client.s), 0);
    assert_int_equal(f->client.writes_done, 1);
}

static bool large_echoed(struct fixture *f)
{
    return f->client.rlen == LARGE_SIZE && f->client.writes_done == 1;
}

/* 4 MiB from the client, echoed by the server: both directions carry it,
 * intact, and never more than one piece per loop turn is sent. */
static void echo_large(void **state)
{
    struct fixture *f = *state;
    unsigned char *big = malloc(LARGE_SIZE);
    uint32_t x = 12345;
    size_t i;
    int iter;

    assert_non_null(big);
    for (i = 0; i < LARGE_SIZE; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (unsigned char)(x >> 16);
    }
    f->server.echo = true;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(peer_write(&f->client, big, LARGE_SIZE), 0);
    memset(big, 0, LARGE_SIZE); /* The write copied it. */
    for (iter = 1; iter < MAX_ITER && !large_echoed(f); iter++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        assert_true(f->server.rlen <= (size_t)iter * TLS_WRITE_PIECE);
    }
    assert_true(large_echoed(f));
    assert_true(iter > (int)(LARGE_SIZE / TLS_WRITE_PIECE));
    x = 12345;
    for (i = 0; i < LARGE_SIZE; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (unsigned char)(x >> 16);
    }
    assert_int_equal(f->server.rlen, LARGE_SIZE);
    assert_memory_equal(f->server.rbuf, big, LARGE_SIZE);
    assert_memory_equal(f->client.rbuf, big, LARGE_SIZE);
    assert_int_equal(f->client.last_write_status, 0);
    assert_int_equal(tls_stream_write_queue_size(f->client.s), 0);
    free(big);
}

/* Writes queued before the handshake are sent after it, in order. */
static void write_before_handshake(void **state)
{
    struct fixture *f = *state;

    server_context(f, true, NULL);
    client_context(f, "agent-1");
    client_connect(f, "node1.rems.test", NULL);
    assert_int_equal(peer_write(&f->client, "one,", 4), 0);
    assert_int_equal(peer_write(&f->client, "two", 3), 0);
    f->client.close_after = 0;
    run_until(f, both_handshakes);
    while (f->server.rlen < 7) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_memory_equal(f->server.rbuf, "one,two", 7);
    assert_int_equal(f->client.writes_done, 2);
}

static bool server_has_3(struct fixture *f)
{
    return f->server.rlen == 3;
}

static bool client_writes_2(struct fixture *f)
{
    return f->client.writes_done == 2;
}

/* read_stop holds data back until read_start, also records already
 * received, which come from the loop rather than from read_start. */
static void read_backpressure(void **state)
{
    struct fixture *f = *state;
    int i;

    f->server.stop_at_handshake = true;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(peer_write(&f->client, "a", 1), 0);
    assert_int_equal(peer_write(&f->client, "bc", 2), 0);
    run_until(f, client_writes_2);
    for (i = 0; i < 20; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(f->server.read_calls, 0);

    /* Both records may sit in one socket read: stopping after the first
     * keeps the second buffered. */
    f->server.stop_after_read = true;
    assert_int_equal(tls_stream_read_start(f->server.s), 0);
    assert_int_equal(f->server.read_calls, 0);
    while (f->server.read_calls < 1) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    for (i = 0; i < 20; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(f->server.read_calls, 1);
    assert_int_equal(f->server.rlen, 1);
    f->server.stop_after_read = false;
    assert_int_equal(tls_stream_read_start(f->server.s), 0);
    assert_int_equal(tls_stream_read_start(f->server.s), 0);
    run_until(f, server_has_3);
    assert_memory_equal(f->server.rbuf, "abc", 3);
}

/* ------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------ */

static void session_resumption(void **state)
{
    struct fixture *f = *state;
    struct tls_session *session = NULL;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(f->client.hs_status, 0);
    assert_int_equal(tls_stream_session_get(f->client.s, &session, f->errmsg),
                     0);
    close_both(f);
    peer_reset(f, &f->client, "client");
    peer_reset(f, &f->server, "server");

    client_connect(f, "node1.rems.test", session);
    tls_session_free(session);
    run_until(f, both_handshakes);
    assert_int_equal(f->server.hs_status, 0);
    assert_int_equal(f->client.hs_status, 0);
    assert_true(f->server.reused);
    assert_true(f->client.reused);
    assert_string_equal(f->server.peer_id, "agent-1");
    assert_string_equal(f->client.peer_id, "node1.rems.test");

    /* A session is only offered to the server name it was made for. */
    assert_int_equal(tls_stream_session_get(f->client.s, &session, f->errmsg),
                     0);
    close_both(f);
    peer_reset(f, &f->client, "client");
    peer_reset(f, &f->server, "server");
    client_connect(f, "127.0.0.1", session);
    tls_session_free(session);
    run_until(f, both_handshakes);
    assert_int_equal(f->client.hs_status, 0);
    assert_false(f->client.reused);
    assert_false(f->server.reused);
}

/* Before the handshake there is no session to save. */
static void session_not_yet(void **state)
{
    struct fixture *f = *state;
    struct tls_session *session = NULL;

    server_context(f, true, NULL);
    client_context(f, "agent-1");
    client_connect(f, "node1.rems.test", NULL);
    assert_int_equal(tls_stream_session_get(f->client.s, &session, f->errmsg),
                     REMS_ENOTFOUND);
    assert_null(session);
    assert_string_equal(f->errmsg, "tls session: no resumable session yet");
    tls_session_free(NULL);
}

/* ------------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------------ */

/* The client writes and closes at once: the server reads the data, then
 * EOF, and closes; each close callback runs once. */
static void graceful_close(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(peer_write(&f->client, "bye", 3), 0);
    peer_close(&f->client);
    assert_int_equal(tls_stream_write(f->client.s, &(struct tls_write){0}, "x",
                                      1, on_echo_written),
                     REMS_ESHUTDOWN);
    run_until(f, both_closed);
    assert_int_equal(f->server.rlen, 3);
    assert_memory_equal(f->server.rbuf, "bye", 3);
    assert_true(f->server.eof);
    assert_false(f->server.read_failed);
    assert_int_equal(f->client.writes_done, 1);
    assert_int_equal(f->client.close_calls, 1);
    assert_int_equal(f->server.close_calls, 1);
}

/* A 4 MiB write queued just before close is still flushed in full. */
static void close_flushes_large_write(void **state)
{
    struct fixture *f = *state;
    char *big = calloc(1, LARGE_SIZE);

    assert_non_null(big);
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(peer_write(&f->client, big, LARGE_SIZE), 0);
    peer_close(&f->client);
    run_until(f, both_closed);
    assert_int_equal(f->server.rlen, LARGE_SIZE);
    assert_true(f->server.eof);
    assert_int_equal(f->client.writes_done, 1);
    free(big);
}

/* Closing during the handshake cancels it and the queued write. */
static void close_during_handshake(void **state)
{
    struct fixture *f = *state;

    server_context(f, true, NULL);
    client_context(f, "agent-1");
    client_connect(f, "node1.rems.test", NULL);
    while (!f->connected) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(peer_write(&f->client, "x", 1), 0);
    peer_close(&f->client);
    run_until(f, both_closed);
    assert_int_equal(f->client.hs_calls, 1);
    assert_int_equal(f->client.hs_status, REMS_ECANCELED);
    assert_int_equal(f->client.writes_failed, 1);
    assert_int_equal(f->client.last_write_status, REMS_ECANCELED);
    assert_int_equal(f->client.close_calls, 1);
    assert_int_equal(f->server.hs_calls, 1);
    assert_int_not_equal(f->server.hs_status, 0);
}

/* A stream that was never started closes without a handshake callback. */
static void close_unstarted(void **state)
{
    struct fixture *f = *state;
    struct tls_stream_options o = peer_options(&f->client, "node1.rems.test");

    client_context(f, "agent-1");
    assert_int_equal(
        tls_stream_open(&f->loop, f->cctx, &o, &f->client.s, f->errmsg), 0);
    assert_int_equal(peer_write(&f->client, "x", 1), 0);
    peer_close(&f->client);
    f->server.closed = true;
    run_until(f, both_closed);
    assert_int_equal(f->client.hs_calls, 0);
    assert_int_equal(f->client.writes_failed, 1);
    assert_int_equal(f->client.close_calls, 1);
}

/* The peer ends its TCP stream without close_notify: the server's read
 * callback gets REMS_EIO, and both ends close cleanly. */
static void peer_abrupt_eof(void **state)
{
    struct fixture *f = *state;
    uv_os_fd_t fd;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(uv_fileno((uv_handle_t *)tls_stream_tcp(f->client.s), &fd),
                     0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    run_until(f, both_closed);
    assert_true(f->server.read_failed);
    assert_int_equal(f->server.read_status, REMS_EIO);
    assert_string_equal(f->server.read_errmsg,
                        "tls read: connection closed by the peer without "
                        "close_notify");
    assert_int_equal(f->server.read_calls, 1);
    assert_true(f->client.read_failed); /* The server's FIN, no notify. */
}

static void on_raw_connect(uv_connect_t *req, int status)
{
    struct fixture *f = req->data;
    f->connected = true;
    f->connect_status = status;
}

static void on_raw_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

static void on_raw_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char b[4096];
    (void)h;
    (void)size;
    *buf = uv_buf_init(b, sizeof b);
}

static void on_raw_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    if (nread < 0) {
        uv_close((uv_handle_t *)stream, NULL);
    }
}

/* Connect the raw client and send @len bytes of @data. */
static void raw_connect_send(struct fixture *f, const char *data, size_t len)
{
    struct sockaddr_in addr = server_addr(f);
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);

    assert_int_equal(uv_tcp_init(&f->loop, &f->raw), 0);
    f->raw_used = true;
    f->connect.data = f;
    assert_int_equal(uv_tcp_connect(&f->connect, &f->raw,
                                    (const struct sockaddr *)&addr,
                                    on_raw_connect),
                     0);
    while (!f->connected || !f->server_accepted) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(f->connect_status, 0);
    assert_int_equal(uv_write(&f->raw_write, (uv_stream_t *)&f->raw, &buf, 1,
                              on_raw_written),
                     0);
}

static bool server_hs_done(struct fixture *f)
{
    return f->server.hs_done;
}

/* A peer that does not speak TLS: REMS_EMALFORMED. */
static void raw_garbage(void **state)
{
    struct fixture *f = *state;
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    server_context(f, true, NULL);
    raw_connect_send(f, req, sizeof req - 1);
    assert_int_equal(
        uv_read_start((uv_stream_t *)&f->raw, on_raw_alloc, on_raw_read), 0);
    run_until(f, server_hs_done);
    assert_int_equal(f->server.hs_status, REMS_EMALFORMED);
    assert_string_equal(f->server.hs_errmsg, "tls handshake: http request");
    f->client.closed = true;
    run_until(f, both_closed);
}

/* A reset in the middle of a record: REMS_EIO. */
static void raw_reset(void **state)
{
    struct fixture *f = *state;
    static const char partial[] = "\x16\x03\x01\x02\x00\x01";

    server_context(f, true, NULL);
    raw_connect_send(f, partial, sizeof partial - 1);
    assert_int_equal(uv_tcp_close_reset(&f->raw, NULL), 0);
    run_until(f, server_hs_done);
    /* "connection closed by the peer" or "connection reset by peer",
     * depending on what the kernel reports first. */
    assert_int_equal(f->server.hs_status, REMS_EIO);
    f->client.closed = true;
    run_until(f, both_closed);
}

/* A record that does not decrypt fails the reader with REMS_EMALFORMED. */
static void corrupt_record(void **state)
{
    struct fixture *f = *state;
    unsigned char junk[5 + 32] = {0x17, 0x03, 0x03, 0x00, 0x20};
    uv_os_fd_t fd;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(uv_fileno((uv_handle_t *)tls_stream_tcp(f->client.s), &fd),
                     0);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    run_until(f, both_closed);
    assert_true(f->server.read_failed);
    assert_int_equal(f->server.read_status, REMS_EMALFORMED);
    assert_string_equal(f->server.read_errmsg,
                        "tls read: decryption failed or bad record mac");
}

static bool server_write_settled(struct fixture *f)
{
    return f->server.writes_done + f->server.writes_failed > 0;
}

static bool server_read_failed(struct fixture *f)
{
    return f->server.read_failed;
}

/* A failure while the owner does not read (here: out of memory in the
 * pump) fails the writes at once and reaches read_cb after read_start. */
static void failure_while_stopped(void **state)
{
    struct fixture *f = *state;

    f->server.stop_at_handshake = true;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    test_heap_fail_after(&f->heap, 1); /* The copy, not the ciphertext. */
    assert_int_equal(peer_write(&f->server, "x", 1), 0);
    run_until(f, server_write_settled);
    test_heap_fail_after(&f->heap, -1);
    assert_int_equal(f->server.writes_failed, 1);
    assert_int_equal(f->server.last_write_status, REMS_ENOMEM);
    assert_int_equal(f->server.read_calls, 0);
    assert_int_equal(peer_write(&f->server, "y", 1), REMS_ENOMEM);
    assert_int_equal(tls_stream_read_start(f->server.s), 0);
    assert_int_equal(f->server.read_calls, 0); /* From the loop only. */
    run_until(f, server_read_failed);
    assert_int_equal(f->server.read_status, REMS_ENOMEM);
    assert_string_equal(f->server.read_errmsg, "tls write: out of memory");
    assert_int_equal(f->server.read_calls, 1);
}

static bool client_closed(struct fixture *f)
{
    return f->client.closed;
}

/* Out of memory while a close pumps the last writes: the close completes,
 * the write is canceled. */
static void close_pump_oom(void **state)
{
    struct fixture *f = *state;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    test_heap_fail_after(&f->heap, 1);
    assert_int_equal(peer_write(&f->client, "x", 1), 0);
    peer_close(&f->client);
    run_until(f, client_closed);
    test_heap_fail_after(&f->heap, -1);
    assert_int_equal(f->client.writes_failed, 1);
    assert_int_equal(f->client.last_write_status, REMS_ECANCELED);
    assert_int_equal(f->client.close_calls, 1);
    run_until(f, both_closed);
}

/* The server does not read, so the client's close lingers until its
 * timeout; the client resets the connection (SO_LINGER 0) and the server's
 * next write fails with REMS_EIO, reported to read_cb on read_start. */
static void linger_then_write_error(void **state)
{
    struct fixture *f = *state;
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    uv_os_fd_t fd;
    int i;

    f->client_linger_ms = 1;
    f->server.stop_at_handshake = true;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(uv_fileno((uv_handle_t *)tls_stream_tcp(f->client.s), &fd),
                     0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin),
                     0);
    peer_close(&f->client);
    run_until(f, client_closed);
    assert_int_equal(f->server.read_calls, 0);
    for (i = 0; i < 100 && f->server.writes_failed == 0; i++) {
        if (peer_write(&f->server, "x", 1) != 0) {
            break;
        }
        f->server.writes_done = 0;
        run_until(f, server_write_settled);
    }
    assert_int_equal(f->server.writes_failed, 1);
    assert_int_equal(f->server.last_write_status, REMS_EIO);
    assert_int_equal(f->server.read_calls, 0);
    assert_int_equal(tls_stream_read_start(f->server.s), 0);
    run_until(f, server_read_failed);
    assert_int_equal(f->server.read_status, REMS_EIO);
    assert_non_null(strstr(f->server.read_errmsg, "tls write: "));
}

static bool server_eof(struct fixture *f)
{
    return f->server.eof;
}

/* After the peer's close_notify the stream may still write; when that
 * fails (the peer then reset the connection), the writes fail but read_cb,
 * which had the end already, is not called again. */
static void write_after_peer_close(void **state)
{
    struct fixture *f = *state;
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    uv_os_fd_t fd;
    int i;

    f->client_linger_ms = 1;
    f->server.close_on_end = false;
    handshake(f, "agent-1", NULL, "node1.rems.test");
    assert_int_equal(uv_fileno((uv_handle_t *)tls_stream_tcp(f->client.s), &fd),
                     0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin),
                     0);
    peer_close(&f->client);
    run_until(f, server_eof);
    run_until(f, client_closed);
    for (i = 0; i < 100 && f->server.writes_failed == 0; i++) {
        if (peer_write(&f->server, "x", 1) != 0) {
            break;
        }
        f->server.writes_done = 0;
        run_until(f, server_write_settled);
    }
    assert_int_equal(f->server.writes_failed, 1);
    assert_int_equal(f->server.last_write_status, REMS_EIO);
    for (i = 0; i < 20; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(f->server.read_calls, 1); /* The EOF only. */
    assert_false(f->server.read_failed);
}

/* ------------------------------------------------------------------------
 * Configuration errors
 * ------------------------------------------------------------------------ */

static void context_errors(void **state)
{
    struct fixture *f = *state;
    struct tls_context *ctx = NULL;
    struct tls_context_options o = {0};
    char missing[TEST_TMPDIR_SIZE + 64];
    char want[REMS_ERRMSG_SIZE];

    o.role = TLS_ROLE_SERVER;
    snprintf(missing, sizeof missing, "%s", cert_path("missing.pem"));
    o.cert_file = missing;
    o.key_file = cert_path("node1.key");
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    snprintf(want, sizeof want,
             "tls: certificate %s: No such file or "
             "directory",
             missing);
    assert_string_equal(f->errmsg, want);

    o.cert_file = cert_path("node1.pem");
    o.key_file = cert_path("agent-1.key");
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    assert_non_null(strstr(f->errmsg, "key values mismatch"));

    o.key_file = cert_path("node1.pem"); /* Not a key. */
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);

    o.key_file = cert_path("node1.key");
    o.ca_file = cert_path("ca.pem");
    o.crl_file = missing;
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    assert_non_null(strstr(f->errmsg, "tls: CRL file"));

    o.crl_file = NULL;
    o.ca_file = missing;
    o.require_client_cert = true;
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);

    o.ca_file = NULL;
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "tls: no CA file to verify the peer with");

    o.cert_file = NULL;
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "tls: a server needs a certificate");

    memset(&o, 0, sizeof o);
    o.role = TLS_ROLE_CLIENT;
    o.cert_file = cert_path("agent-1.pem");
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    o.key_file = cert_path("agent-1.key");
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    o.ca_file = cert_path("ca.pem");
    o.require_client_cert = true;
    assert_int_equal(tls_context_open(&o, &ctx, f->errmsg), REMS_ECONFIG);
    assert_null(ctx);
    assert_int_equal(f->heap.live, 0);
    tls_context_close(NULL);
}

static void stream_needs_server_name(void **state)
{
    struct fixture *f = *state;
    struct tls_stream_options o = peer_options(&f->client, NULL);
    struct tls_stream *s = NULL;

    client_context(f, "agent-1");
    assert_int_equal(tls_stream_open(&f->loop, f->cctx, &o, &s, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg, "tls: a client stream needs a server name");
    o.server_name = "";
    assert_int_equal(tls_stream_open(&f->loop, f->cctx, &o, &s, f->errmsg),
                     REMS_EINVAL);
    assert_null(s);
}

/* Starting a stream whose socket is not connected fails at once. */
static void start_unconnected(void **state)
{
    struct fixture *f = *state;
    struct tls_stream_options o = peer_options(&f->client, "node1.rems.test");

    client_context(f, "agent-1");
    assert_int_equal(
        tls_stream_open(&f->loop, f->cctx, &o, &f->client.s, f->errmsg), 0);
    assert_int_equal(tls_stream_start(f->client.s, f->errmsg), REMS_EIO);
    assert_non_null(strstr(f->errmsg, "tls: start reading: "));
}

/* ------------------------------------------------------------------------
 * Out of memory
 * ------------------------------------------------------------------------ */

static void oom_context_open(void **state)
{
    struct fixture *f = *state;
    struct tls_context_options o = {0};
    int rv;
    int n;

    o.role = TLS_ROLE_CLIENT;
    o.ca_file = cert_path("ca.pem");
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = tls_context_open(&o, &f->cctx, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->cctx);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 0);
}

static void oom_stream_open(void **state)
{
    struct fixture *f = *state;
    struct tls_stream_options o = peer_options(&f->client, "node1.rems.test");
    int rv;
    int n;

    client_context(f, "agent-1");
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = tls_stream_open(&f->loop, f->cctx, &o, &f->client.s, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->client.s);
        assert_int_equal(f->heap.live, 1); /* The context. */
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n >= 2);
}

static void oom_write_and_session(void **state)
{
    struct fixture *f = *state;
    struct tls_session *session = NULL;
    struct tls_write req = {0};
    long live;
    int rv;
    int n;

    handshake(f, "agent-1", NULL, "node1.rems.test");
    live = f->heap.live;
    test_heap_fail_after(&f->heap, 0);
    assert_int_equal(
        tls_stream_write(f->client.s, &req, "x", 1, on_echo_written),
        REMS_ENOMEM);
    assert_int_equal(tls_stream_write_queue_size(f->client.s), 0);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = tls_stream_session_get(f->client.s, &session, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_null(session);
        assert_int_equal(f->heap.live, live);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n >= 2);
    tls_session_free(session);
}

static bool sweep_done(struct fixture *f)
{
    return f->client.closed && f->server.closed;
}

/* Fail every rems_malloc from the n-th on, for each n, through a whole
 * connection: accept, handshake, echo, close. Each run ends with both
 * streams closed, failures reported as REMS_ENOMEM (or, on the other end,
 * the consequence: REMS_EIO or a refusal) and nothing leaked; the sweep ends
 * at the first n with no failure. */
static void oom_connection(void **state)
{
    struct fixture *f = *state;
    struct tls_stream_options o;
    struct sockaddr_in addr = server_addr(f);
    long base;
    int rv;
    int n;

    server_context(f, true, NULL);
    client_context(f, "agent-1");
    base = f->heap.live;
    for (n = 0;; n++) {
        peer_reset(f, &f->client, "client");
        peer_reset(f, &f->server, "server");
        f->server.echo = true;
        f->client.close_after = 4;
        f->connected = false;
        f->server_open_rv = 0;
        f->refused_used = false;
        test_heap_fail_after(&f->heap, n);
        o = peer_options(&f->client, "node1.rems.test");
        rv = tls_stream_open(&f->loop, f->cctx, &o, &f->client.s, f->errmsg);
        if (rv != 0) {
            assert_int_equal(rv, REMS_ENOMEM);
            assert_int_equal(f->heap.live, base);
            continue;
        }
        f->connect.data = f;
        assert_int_equal(
            uv_tcp_connect(&f->connect, tls_stream_tcp(f->client.s),
                           (const struct sockaddr *)&addr, on_connect),
            0);
        if (peer_write(&f->client, "ping", 4) != 0) {
            peer_close(&f->client);
        }
        run_until(f, sweep_done);
        /* The listener may still hold the socket if the server stream was
         * never made: the next iteration's accept takes it. */
        assert_int_equal(f->heap.live, base);
        if (f->server_open_rv != 0) {
            assert_int_equal(f->server_open_rv, REMS_ENOMEM);
        }
        if (f->client.hs_status != 0) {
            assert_true(f->client.hs_status == REMS_ENOMEM ||
                        f->client.hs_status == REMS_EIO ||
                        f->client.hs_status == REMS_ECANCELED);
        }
        if (f->client.hs_status == 0 && f->server.hs_status == 0 &&
            f->server_open_rv == 0 && f->client.rlen == 4 &&
            !f->client.read_failed && !f->server.read_failed &&
            !f->server.echo_failed && f->client.writes_failed == 0 &&
            f->server.writes_failed == 0) {
            break;
        }
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 3);
    assert_memory_equal(f->client.rbuf, "ping", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(handshake_ok),
        T(handshake_san_uri),
        T(handshake_ip_name),
        T(handshake_revoked_without_crl),
        T(handshake_no_client_auth),
        T(peer_id_invalid),
        T(refused_other_ca),
        T(refused_expired),
        T(refused_revoked),
        T(crl_valid_cert_passes),
        T(refused_no_client_cert),
        T(hostname_mismatch),
        T(echo_small),
        T(echo_large),
        T(write_before_handshake),
        T(read_backpressure),
        T(session_resumption),
        T(session_not_yet),
        T(graceful_close),
        T(close_flushes_large_write),
        T(close_during_handshake),
        T(close_unstarted),
        T(peer_abrupt_eof),
        T(raw_garbage),
        T(raw_reset),
        T(corrupt_record),
        T(failure_while_stopped),
        T(close_pump_oom),
        T(linger_then_write_error),
        T(write_after_peer_close),
        T(context_errors),
        T(stream_needs_server_name),
        T(start_unconnected),
        T(oom_context_open),
        T(oom_stream_open),
        T(oom_write_and_session),
        T(oom_connection),
#undef T
    };
    return cmocka_run_group_tests_name("tls", tests, group_setup,
                                       group_teardown);
}
