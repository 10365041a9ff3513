/* Tests of simulator/simagents.c.
 *
 *   Certificates: a minted certificate verifies against the CA for client
 *   authentication, names its agent by SAN URI and CN, and its key matches
 *   and is private; bad ids and bad CA files are refused.
 *   The fence, pure: stale term, duplicate, expired, accept, in that
 *   order; forgetting; a random sequence against a reference; out of
 *   memory.
 *   The checker: invariants 4, 5 and 6.
 *   The engine against fake nodes (TLS servers on 127.0.0.1:0 on the
 *   test's loop, speaking agentproto/proto.h): a redirect is followed,
 *   hello carries what it should, heartbeats flow, commands are fenced and
 *   answered, reports follow changes, a lost connection is re-made with
 *   the highest term, a command whose deadline passes before it can run
 *   is refused and forgotten, an answer whose connection ended is lost and
 *   the resend is a duplicate, crashing services are reported; the engine
 *   stops cleanly; simagents_open() is swept for out of memory.
 *
 * Certificates come from tests/lib/make-test-ca.sh, made once per run.
 * Waits on the loop are bounded by a deadline (run_until). */
/* cmocka.h needs these four first; the blank line keeps clang-format from
 * sorting it above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agentproto/tls.h"
#include "common/log.h"
#include "common/mpread.h"
#include "simulator/simagents.h"
#include "tests/lib/heap.h"
#include "tests/lib/loop.h"
#include "tests/lib/tmpdir.h"

#define DEADLINE_MS 10000
#define MAX_RECS 1024
#define MAX_CONNS 16
#define NODE_TERM 5

static char certdir[TEST_TMPDIR_SIZE];

static const char *cert(const char *name)
{
    static char paths[8][TEST_TMPDIR_SIZE + 64];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", certdir, name);
    return p;
}

static struct proto_str str_of(const char *s)
{
    struct proto_str p = {s, strlen(s)};
    return p;
}

static void copy_str(char *out, size_t cap, struct proto_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(out, s.p, n);
    out[n] = '\0';
}

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

/* ------------------------------------------------------------------------
 * Certificates
 * ------------------------------------------------------------------------ */

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    X509 *x;
    assert_non_null(fp);
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

/* The URIs of @x's SAN, joined by spaces, into @out. */
static void san_uris(X509 *x, char *out, size_t cap)
{
    GENERAL_NAMES *names =
        X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int i;

    out[0] = '\0';
    assert_non_null(names);
    for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        assert_int_equal(gn->type, GEN_URI);
        if (out[0] != '\0') {
            strncat(out, " ", cap - strlen(out) - 1);
        }
        strncat(out,
                (const char *)ASN1_STRING_get0_data(
                    gn->d.uniformResourceIdentifier),
                cap - strlen(out) - 1);
    }
    GENERAL_NAMES_free(names);
}

static void cert_minted_verifies(void **state)
{
    struct test_heap heap;
    char dir[TEST_TMPDIR_SIZE];
    char cpath[TEST_TMPDIR_SIZE + 32];
    char kpath[TEST_TMPDIR_SIZE + 32];
    char errmsg[REMS_ERRMSG_SIZE];
    char uris[512];
    char cn[128];
    struct simagents_ca *ca;
    X509_STORE *store;
    X509_STORE_CTX *ctx;
    X509 *x;
    X509 *cax;
    EVP_PKEY *key;
    FILE *fp;
    struct stat st;
    time_t later;

    (void)state;
    test_heap_install(&heap);
    test_tmpdir_make(dir);
    snprintf(cpath, sizeof cpath, "%s/a.pem", dir);
    snprintf(kpath, sizeof kpath, "%s/a.key", dir);
    assert_int_equal(simagents_ca_open(cert("site-ca/ca.pem"),
                                       cert("site-ca/ca.key"), &ca, errmsg),
                     0);
    assert_int_equal(
        simagents_cert_mint(ca, "sim-42", 3600, cpath, kpath, errmsg), 0);
    simagents_ca_close(ca);

    /* It chains to the site CA, for client authentication. */
    x = read_cert(cpath);
    cax = read_cert(cert("ca.pem"));
    store = X509_STORE_new();
    assert_non_null(store);
    assert_int_equal(X509_STORE_add_cert(store, cax), 1);
    ctx = X509_STORE_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT),
                     1);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);

    /* Named by SAN URI and CN, valid for about an hour. */
    san_uris(x, uris, sizeof uris);
    assert_string_equal(uris, "rems://agent/sim-42");
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x),
                                          NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "sim-42");
    later = time(NULL) + 3500;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &later) > 0);
    later = time(NULL) + 3700;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &later) < 0);
    assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);

    /* The key is the certificate's, and private. */
    fp = fopen(kpath, "r");
    assert_non_null(fp);
    key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(key);
    assert_int_equal(X509_check_private_key(x, key), 1);
    assert_int_equal(EVP_PKEY_get_bits(key), 256);
    assert_int_equal(stat(kpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    EVP_PKEY_free(key);
    X509_free(x);
    X509_free(cax);
    test_tmpdir_remove(dir);
    assert_int_equal(heap.live, 0);
    test_heap_uninstall(&heap);
}

static void cert_refusals(void **state)
{
    struct simagents_ca *ca = NULL;
    char errmsg[REMS_ERRMSG_SIZE];
    char dir[TEST_TMPDIR_SIZE];
    char path[TEST_TMPDIR_SIZE + 32];

    (void)state;
    assert_int_equal(simagents_ca_open(cert("missing.pem"),
                                       cert("site-ca/ca.key"), &ca, errmsg),
                     REMS_ECONFIG);
    assert_non_null(strstr(errmsg, "missing.pem"));
    assert_int_equal(simagents_ca_open(cert("site-ca/ca.key"),
                                       cert("site-ca/ca.key"), &ca, errmsg),
                     REMS_ECONFIG);
    /* Another CA's key. */
    assert_int_equal(simagents_ca_open(cert("site-ca/ca.pem"),
                                       cert("other-ca/ca.key"), &ca, errmsg),
                     REMS_ECONFIG);
    assert_non_null(strstr(errmsg, "not the key of"));
    assert_null(ca);

    assert_int_equal(simagents_ca_open(cert("site-ca/ca.pem"),
                                       cert("site-ca/ca.key"), &ca, errmsg),
                     0);
    test_tmpdir_make(dir);
    snprintf(path, sizeof path, "%s/x", dir);
    assert_int_equal(
        simagents_cert_mint(ca, "not valid!", 0, path, path, errmsg),
        REMS_EINVAL);
    snprintf(path, sizeof path, "%s/no/such/dir", dir);
    assert_int_equal(simagents_cert_mint(ca, "ok", 0, path, path, errmsg),
                     REMS_EIO);
    simagents_ca_close(ca);
    simagents_ca_close(NULL);
    test_tmpdir_remove(dir);
}

/* ------------------------------------------------------------------------
 * The fence
 * ------------------------------------------------------------------------ */

static void fence_rules(void **state)
{
    struct test_heap heap;
    struct simagents_fence f;
    char msg[REMS_ERRMSG_SIZE];

    (void)state;
    test_heap_install(&heap);
    simagents_fence_init(&f);
    assert_int_equal(simagents_fence_check(&f, "c1", 4, 1000, 0, msg),
                     SIMAGENTS_FENCE_ACCEPT);
    assert_int_equal(simagents_fence_accept(&f, "c1", 4), 0);
    assert_int_equal(f.highest_term, 4);

    /* Duplicate, whatever the ttl. */
    assert_int_equal(simagents_fence_check(&f, "c1", 4, 1000, 0, msg),
                     PROTO_NACK_DUPLICATE);
    assert_string_equal(msg, "command c1 was accepted before");
    assert_int_equal(simagents_fence_check(&f, "c1", 9, 0, 0, msg),
                     PROTO_NACK_DUPLICATE);
    /* Stale term comes first, even for a known id. */
    assert_int_equal(simagents_fence_check(&f, "c1", 3, 1000, 0, msg),
                     PROTO_NACK_STALE_TERM);
    assert_string_equal(msg, "term 3 is below 4, the highest accepted");
    assert_int_equal(simagents_fence_check(&f, "c2", 3, 0, 0, msg),
                     PROTO_NACK_STALE_TERM);
    /* Expired: ttl 0, or spent. */
    assert_int_equal(simagents_fence_check(&f, "c2", 4, 0, 0, msg),
                     PROTO_NACK_EXPIRED);
    assert_string_equal(msg, "ttl_remaining_ms was 0 on receipt");
    assert_int_equal(simagents_fence_check(&f, "c2", 4, 100, 100, msg),
                     PROTO_NACK_EXPIRED);
    assert_string_equal(msg, "ttl of 100 ms spent 0 ms ago");
    assert_int_equal(simagents_fence_check(&f, "c2", 4, 100, 99, msg),
                     SIMAGENTS_FENCE_ACCEPT);
    /* A higher term raises the highest. */
    assert_int_equal(simagents_fence_accept(&f, "c2", 7), 0);
    assert_int_equal(simagents_fence_check(&f, "c3", 6, 100, 0, msg),
                     PROTO_NACK_STALE_TERM);
    /* Forgetting takes the id out, not the term. */
    simagents_fence_forget(&f, "c2");
    simagents_fence_forget(&f, "never");
    assert_false(simagents_fence_has(&f, "c2"));
    assert_true(simagents_fence_has(&f, "c1"));
    assert_int_equal(f.highest_term, 7);
    assert_int_equal(simagents_fence_check(&f, "c2", 7, 100, 0, msg),
                     SIMAGENTS_FENCE_ACCEPT);
    simagents_fence_close(&f);
    simagents_fence_close(NULL);
    assert_int_equal(heap.live, 0);
    test_heap_uninstall(&heap);
}

/* Random accepts and forgets against a reference array. */
static void fence_random(void **state)
{
    struct simagents_fence f;
    static bool ref[600];
    char id[16];
    unsigned seed = (unsigned)time(NULL);
    int i;
    int k;

    (void)state;
    printf("fence_random seed %u\n", seed);
    srand(seed);
    memset(ref, 0, sizeof ref);
    simagents_fence_init(&f);
    for (i = 0; i < 20000; i++) {
        k = rand() % 600;
        snprintf(id, sizeof id, "id-%d", k);
        if (rand() % 3 == 0) {
            simagents_fence_forget(&f, id);
            ref[k] = false;
        } else if (!ref[k]) {
            assert_int_equal(simagents_fence_accept(&f, id, 1), 0);
            ref[k] = true;
        }
        if (i % 97 == 0) {
            for (k = 0; k < 600; k++) {
                snprintf(id, sizeof id, "id-%d", k);
                assert_int_equal(simagents_fence_has(&f, id), ref[k]);
            }
        }
    }
    for (k = 0; k < 600; k++) {
        snprintf(id, sizeof id, "id-%d", k);
        assert_int_equal(simagents_fence_has(&f, id), ref[k]);
    }
    simagents_fence_close(&f);
}

static void fence_out_of_memory(void **state)
{
    struct test_heap heap;
    struct simagents_fence f;
    char id[16];
    int i;

    (void)state;
    test_heap_install(&heap);
    simagents_fence_init(&f);
    test_heap_fail_after(&heap, 0);
    assert_int_equal(simagents_fence_accept(&f, "a", 3), REMS_ENOMEM);
    assert_int_equal(f.highest_term, 0);
    assert_false(simagents_fence_has(&f, "a"));
    test_heap_fail_after(&heap, -1);
    for (i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "c%d", i);
        assert_int_equal(simagents_fence_accept(&f, id, 3), 0);
    }
    /* The fifth needs the table to grow. */
    test_heap_fail_after(&heap, 0);
    assert_int_equal(simagents_fence_accept(&f, "c4", 5), REMS_ENOMEM);
    assert_int_equal(f.highest_term, 3);
    assert_true(simagents_fence_has(&f, "c3"));
    test_heap_fail_after(&heap, -1);
    simagents_fence_close(&f);
    assert_int_equal(heap.live, 0);
    test_heap_uninstall(&heap);
}

/* ------------------------------------------------------------------------
 * The checker
 * ------------------------------------------------------------------------ */

static struct simagents_exec exec_of(uint32_t agent,
                                     const char *id,
                                     uint64_t seq,
                                     uint64_t term,
                                     uint64_t receipt_us,
                                     uint64_t ttl_ms,
                                     uint64_t exec_us)
{
    struct simagents_exec e;
    memset(&e, 0, sizeof e);
    snprintf(e.id, sizeof e.id, "%s", id);
    e.agent = agent;
    e.seq = seq;
    e.term = term;
    e.receipt_mono_us = receipt_us;
    e.ttl_remaining_ms = ttl_ms;
    e.exec_mono_us = exec_us;
    return e;
}

static void exec_check(void **state)
{
    struct simagents_exec e[4];
    char errmsg[REMS_ERRMSG_SIZE];

    (void)state;
    assert_int_equal(simagents_exec_check(NULL, 0, errmsg), 0);
    e[0] = exec_of(0, "a", 1, 2, 1000, 5, 1500);
    e[1] = exec_of(1, "a", 2, 1, 1000, 5, 1500); /* other agent, same id */
    e[2] = exec_of(0, "b", 3, 3, 2000, 5, 6999);
    e[3] = exec_of(0, "c", 4, 3, 9000, 1, 9001);
    assert_int_equal(simagents_exec_check(e, 4, errmsg), 0);

    /* Invariant 5: at the deadline is too late. */
    e[2].exec_mono_us = 7000;
    assert_int_equal(simagents_exec_check(e, 4, errmsg), REMS_ECONFLICT);
    assert_string_equal(errmsg, "invariant 5: command b on agent 0 executed 0 "
                                "us after its deadline");
    e[2].exec_mono_us = 6999;
    /* Invariant 4. */
    snprintf(e[3].id, sizeof e[3].id, "a");
    assert_int_equal(simagents_exec_check(e, 4, errmsg), REMS_ECONFLICT);
    assert_string_equal(errmsg, "invariant 4: command a executed twice on "
                                "agent 0");
    snprintf(e[3].id, sizeof e[3].id, "c");
    /* Invariant 6: accepted later, lower term. */
    e[3].term = 2;
    assert_int_equal(simagents_exec_check(e, 4, errmsg), REMS_ECONFLICT);
    assert_string_equal(errmsg, "invariant 6: command c of term 2 executed on "
                                "agent 0 after b of term 3");
}

/* ------------------------------------------------------------------------
 * Fake nodes
 * ------------------------------------------------------------------------ */

struct fixture;
struct node;

/* What a fake node received. */
struct rec {
    int type;
    char agent[PROTO_ID_MAX + 1]; /* Of the connection. */
    char id[PROTO_ID_MAX + 1];    /* ack/nack: the command */
    uint64_t term;
    int reason;
    char text[PROTO_MESSAGE_MAX + 1];
    size_t n_result;
    char result_gen[16];
    uint64_t highest_term; /* hello */
    size_t n_labels;
    bool has_services;
    size_t n_items;
    int states[8];
    uint64_t gens[8];
    bool ready[8];
    int32_t exit_codes[8];
    char services[8][PROTO_SERVICE_MAX + 1];
    char result_service[PROTO_SERVICE_MAX + 1];
};

enum node_mode {
    NODE_WELCOME,
    NODE_REDIRECT,
};

struct conn {
    struct node *n;
    struct tls_stream *s;
    struct proto_reader reader;
    char agent[PROTO_ID_MAX + 1];
    bool closing;
};

struct node {
    struct fixture *f;
    uint64_t id;
    uv_tcp_t listener;
    char addr[32];
    enum node_mode mode;
    char redirect_to[64];
    struct conn *conns[MAX_CONNS];
    int conns_open;
    struct rec recs[MAX_RECS];
    size_t n_recs;
    int hellos;
    int heartbeats;
};

struct fixture {
    struct test_heap heap;
    uv_loop_t loop;
    struct tls_context *sctx;
    struct node nodes[2];
    struct simagents *sa;
    bool stopped;
    int events[4];
    char errmsg[REMS_ERRMSG_SIZE];
    /* For conditions. */
    const char *want_id;
    size_t want_from;
};

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

static void on_node_written(struct tls_write *req, int status)
{
    (void)status;
    free(req->data);
}

static void node_send(struct conn *c, const struct proto_msg *m)
{
    struct tls_write *w;
    struct rems_buf buf;
    char errmsg[REMS_ERRMSG_SIZE];

    if (c == NULL || c->closing) {
        return;
    }
    rems_buf_init(&buf);
    assert_int_equal(proto_msg_encode(m, 0, &buf, errmsg), 0);
    w = malloc(sizeof *w);
    assert_non_null(w);
    w->data = w;
    assert_int_equal(
        tls_stream_write(c->s, w, buf.data, buf.len, on_node_written), 0);
    rems_buf_close(&buf);
}

static void on_conn_closed(struct tls_stream *s)
{
    struct conn *c = tls_stream_data(s);
    struct node *n = c->n;
    int i;

    for (i = 0; i < MAX_CONNS; i++) {
        if (n->conns[i] == c) {
            n->conns[i] = NULL;
        }
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

/* The open connection of @agent on @n. */
static struct conn *conn_of(struct node *n, const char *agent)
{
    int i;
    for (i = 0; i < MAX_CONNS; i++) {
        if (n->conns[i] != NULL && !n->conns[i]->closing &&
            strcmp(n->conns[i]->agent, agent) == 0) {
            return n->conns[i];
        }
    }
    return NULL;
}

static void send_command(struct node *n,
                         const char *agent,
                         const char *id,
                         uint64_t term,
                         uint64_t ttl,
                         int action,
                         const char *service)
{
    struct proto_msg m = {0};
    struct conn *c = conn_of(n, agent);

    assert_non_null(c);
    m.type = PROTO_COMMAND;
    m.command.id = str_of(id);
    m.command.term = term;
    m.command.ttl_remaining_ms = ttl;
    m.command.action = action;
    m.command.service = str_of(service != NULL ? service : "");
    if (action == PROTO_ACTION_PUSH_MANIFEST) {
        m.command.manifest = str_of("{\"command\":[\"/bin/true\"]}");
    }
    node_send(c, &m);
}

/* Command @id with the action "reboot", which no agent knows (the encoder
 * refuses unknown actions, so the frame is packed here). */
static void
send_unknown_action(struct node *n, const char *agent, const char *id)
{
    struct conn *c = conn_of(n, agent);
    msgpack_packer pk;
    struct rems_buf buf;
    struct tls_write *w;
    uint32_t len;

    assert_non_null(c);
    rems_buf_init(&buf);
    assert_int_equal(rems_buf_append(&buf, "\0\0\0\0", 4), 0);
    msgpack_packer_init(&pk, &buf, rems_buf_write);
#define PACK_STR(s)                                                            \
    (msgpack_pack_str(&pk, strlen(s)),                                         \
     msgpack_pack_str_body(&pk, (s), strlen(s)))
    msgpack_pack_map(&pk, 6);
    PACK_STR("t");
    PACK_STR("command");
    PACK_STR("id");
    PACK_STR(id);
    PACK_STR("term");
    msgpack_pack_uint64(&pk, NODE_TERM);
    PACK_STR("ttl_remaining_ms");
    msgpack_pack_uint64(&pk, 1000);
    PACK_STR("action");
    PACK_STR("reboot");
    PACK_STR("service");
    PACK_STR("svc-0");
#undef PACK_STR
    assert_false(buf.failed);
    len = (uint32_t)(buf.len - 4);
    buf.data[0] = (char)(len >> 24);
    buf.data[1] = (char)(len >> 16);
    buf.data[2] = (char)(len >> 8);
    buf.data[3] = (char)len;
    w = malloc(sizeof *w);
    assert_non_null(w);
    w->data = w;
    assert_int_equal(
        tls_stream_write(c->s, w, buf.data, buf.len, on_node_written), 0);
    rems_buf_close(&buf);
}

static void
node_record(struct node *n, struct conn *c, const struct proto_msg *m)
{
    struct rec *r;
    size_t i;

    assert_true(n->n_recs < MAX_RECS);
    r = &n->recs[n->n_recs++];
    memset(r, 0, sizeof *r);
    r->type = m->type;
    snprintf(r->agent, sizeof r->agent, "%s", c->agent);
    switch (m->type) {
        case PROTO_HELLO:
            copy_str(r->agent, sizeof r->agent, m->hello.agent_id);
            r->highest_term = m->hello.highest_term;
            r->n_labels = m->hello.n_labels;
            r->has_services = m->hello.has_services;
            r->n_items = m->hello.n_services;
            break;
        case PROTO_REPORT:
            r->n_items = m->report.n_items;
            for (i = 0; i < m->report.n_items && i < 8; i++) {
                r->gens[i] = m->report.items[i].generation;
                r->states[i] = m->report.items[i].state;
                r->ready[i] = m->report.items[i].ready;
                r->exit_codes[i] = m->report.items[i].exit_code;
                copy_str(r->services[i], sizeof r->services[i],
                         m->report.items[i].service);
            }
            break;
        case PROTO_ACK:
            copy_str(r->id, sizeof r->id, m->ack.id);
            r->term = m->ack.term;
            r->n_result = m->ack.n_result;
            for (i = 0; i < m->ack.n_result; i++) {
                if (m->ack.result[i].key.len == 10 &&
                    memcmp(m->ack.result[i].key.p, "generation", 10) == 0) {
                    copy_str(r->result_gen, sizeof r->result_gen,
                             m->ack.result[i].value);
                }
                if (m->ack.result[i].key.len == 7 &&
                    memcmp(m->ack.result[i].key.p, "service", 7) == 0) {
                    copy_str(r->result_service, sizeof r->result_service,
                             m->ack.result[i].value);
                }
            }
            break;
        case PROTO_NACK:
            copy_str(r->id, sizeof r->id, m->nack.id);
            r->term = m->nack.term;
            r->reason = m->nack.reason;
            copy_str(r->text, sizeof r->text, m->nack.message);
            break;
        default:
            break;
    }
}

static void node_on_hello(struct conn *c, const struct proto_hello *h)
{
    struct node *n = c->n;
    struct proto_msg m = {0};

    n->hellos++;
    copy_str(c->agent, sizeof c->agent, h->agent_id);
    if (n->mode == NODE_REDIRECT) {
        m.type = PROTO_REDIRECT;
        m.redirect.leader_address = str_of(n->redirect_to);
        m.redirect.leader_id = 2;
        m.redirect.term = NODE_TERM;
        node_send(c, &m);
        conn_close(c);
        return;
    }
    m.type = PROTO_WELCOME;
    m.welcome.version = PROTO_VERSION;
    m.welcome.node_id = n->id;
    m.welcome.term = NODE_TERM;
    m.welcome.lease_ttl_ms = 1000;
    m.welcome.heartbeat_interval_ms = 20;
    node_send(c, &m);
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
        node_record(n, c, &m);
        if (m.type == PROTO_HELLO) {
            node_on_hello(c, &m.hello);
        } else if (m.type == PROTO_HEARTBEAT) {
            n->heartbeats++;
            out.type = PROTO_HEARTBEAT_ACK;
            out.heartbeat_ack.seq = m.heartbeat.seq;
            out.heartbeat_ack.term = NODE_TERM;
            out.heartbeat_ack.lease_remaining_ms = 1000;
            node_send(c, &out);
        }
        proto_msg_close(&m);
        if (c->closing) {
            return;
        }
    }
}

static void node_on_handshake(struct tls_stream *s, int status)
{
    if (status != 0) {
        conn_close(tls_stream_data(s));
    }
}

static void node_on_connection(uv_stream_t *listener, int status)
{
    struct node *n = listener->data;
    struct tls_stream_options o = {0};
    struct conn *c;
    char errmsg[REMS_ERRMSG_SIZE];
    int i;

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
    for (i = 0; i < MAX_CONNS && n->conns[i] != NULL; i++) {
    }
    assert_true(i < MAX_CONNS);
    n->conns[i] = c;
}

static void node_start(struct fixture *f, struct node *n, uint64_t id)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;

    n->f = f;
    n->id = id;
    assert_int_equal(uv_tcp_init(&f->loop, &n->listener), 0);
    n->listener.data = n;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(
        uv_tcp_bind(&n->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&n->listener, 64, node_on_connection), 0);
    assert_int_equal(
        uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &len), 0);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&bound)->sin_port));
}

/* The @k-th record (from 0) of @type from @agent, or NULL. */
static const struct rec *
nth(const struct node *n, const char *agent, int type, int k)
{
    size_t i;
    for (i = 0; i < n->n_recs; i++) {
        if (n->recs[i].type == type && strcmp(n->recs[i].agent, agent) == 0 &&
            k-- == 0) {
            return &n->recs[i];
        }
    }
    return NULL;
}

static int count(const struct node *n, const char *agent, int type)
{
    int k = 0;
    while (nth(n, agent, type, k) != NULL) {
        k++;
    }
    return k;
}

/* The first answer (ack or nack) to command @id among the records from
 * index @from on, or NULL. */
static const struct rec *
answer(const struct node *n, const char *id, size_t from)
{
    size_t i;
    for (i = from; i < n->n_recs; i++) {
        if ((n->recs[i].type == PROTO_ACK || n->recs[i].type == PROTO_NACK) &&
            strcmp(n->recs[i].id, id) == 0) {
            return &n->recs[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Engine fixture
 * ------------------------------------------------------------------------ */

static void on_event(struct simagents *sa,
                     size_t agent,
                     enum simagents_event event,
                     const struct simagents_exec *exec)
{
    struct fixture *f = simagents_data(sa);
    (void)agent;
    assert_true(event >= 1 && event <= 3);
    assert_true((event == SIMAGENTS_EVENT_EXEC) == (exec != NULL));
    f->events[event]++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct tls_context_options so = {0};

    assert_non_null(f);
    test_heap_install(&f->heap);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    so.role = TLS_ROLE_SERVER;
    so.cert_file = cert("node1.pem");
    so.key_file = cert("node1.key");
    so.ca_file = cert("ca.pem");
    so.require_client_cert = true;
    assert_int_equal(tls_context_open(&so, &f->sctx, f->errmsg), 0);
    node_start(f, &f->nodes[0], 1);
    node_start(f, &f->nodes[1], 2);
    f->nodes[0].mode = NODE_REDIRECT;
    snprintf(f->nodes[0].redirect_to, sizeof f->nodes[0].redirect_to, "%s",
             f->nodes[1].addr);
    *state = f;
    return 0;
}

static bool stopped(struct fixture *f)
{
    return f->stopped;
}

static void on_stopped(struct simagents *sa)
{
    struct fixture *f = simagents_data(sa);
    f->stopped = true;
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
    int k;

    if (f->sa != NULL) {
        if (!f->stopped) {
            simagents_stop(f->sa, on_stopped);
            run_until(f, stopped);
        }
        simagents_close(f->sa);
    }
    for (i = 0; i < 2; i++) {
        for (k = 0; k < MAX_CONNS; k++) {
            conn_close(f->nodes[i].conns[k]);
        }
    }
    run_until(f, nodes_closed);
    for (i = 0; i < 2; i++) {
        uv_close((uv_handle_t *)&f->nodes[i].listener, on_handle_closed);
    }
    tls_context_close(f->sctx);
    test_loop_close(&f->loop);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

static void options(struct fixture *f, struct simagents_options *o)
{
    static const char *eps[1];
    static const struct proto_kv labels[] = {
        {PROTO_STR_INIT("site"), PROTO_STR_INIT("lab")},
    };

    memset(o, 0, sizeof *o);
    eps[0] = f->nodes[0].addr; /* The redirecting node. */
    o->n_agents = 3;
    o->endpoints = eps;
    o->n_endpoints = 1;
    o->ca_cert = cert("site-ca/ca.pem");
    o->ca_key = cert("site-ca/ca.key");
    o->server_ca = cert("ca.pem");
    o->server_name = "node1.rems.test";
    o->resume = true;
    o->labels = labels;
    o->n_labels = 1;
    o->zones = 2;
    o->n_services = 2;
    o->reconnect_initial_ms = 20;
    o->reconnect_max_ms = 100;
    o->record_execs = true;
    o->event_cb = on_event;
    o->data = f;
}

static void engine_start(struct fixture *f, const struct simagents_options *o)
{
    assert_int_equal(simagents_open(&f->loop, o, &f->sa, f->errmsg), 0);
    assert_int_equal(simagents_start(f->sa, f->errmsg), 0);
}

static bool all_welcomed(struct fixture *f)
{
    struct simagents_stats st;
    simagents_stats(f->sa, &st);
    return st.connected == simagents_count(f->sa);
}

static bool answered(struct fixture *f)
{
    return answer(&f->nodes[1], f->want_id, f->want_from) != NULL;
}

static const struct rec *command(struct fixture *f,
                                 const char *agent,
                                 const char *id,
                                 uint64_t term,
                                 uint64_t ttl,
                                 int action,
                                 const char *service)
{
    f->want_id = id;
    f->want_from = f->nodes[1].n_recs;
    send_command(&f->nodes[1], agent, id, term, ttl, action, service);
    run_until(f, answered);
    return answer(&f->nodes[1], id, f->want_from);
}

static void assert_nack(const struct rec *r, int reason, const char *text)
{
    assert_int_equal(r->type, PROTO_NACK);
    assert_int_equal(r->reason, reason);
    if (text != NULL) {
        assert_string_equal(r->text, text);
    }
}

static bool heartbeats_flow(struct fixture *f)
{
    return count(&f->nodes[1], "sim-1", PROTO_HEARTBEAT) >= 3 &&
           count(&f->nodes[1], "sim-3", PROTO_HEARTBEAT) >= 3;
}

static bool report_gen2(struct fixture *f)
{
    const struct rec *r;
    int k;
    for (k = 0; (r = nth(&f->nodes[1], "sim-1", PROTO_REPORT, k)) != NULL;
         k++) {
        if (r->n_items >= 1 && r->gens[r->n_items - 1] == 2 &&
            r->states[r->n_items - 1] == PROTO_STATE_RUNNING) {
            return true;
        }
    }
    return false;
}

static bool second_hello(struct fixture *f)
{
    return count(&f->nodes[1], "sim-1", PROTO_HELLO) == 2 && all_welcomed(f);
}

/* Redirect, hello, heartbeats, the fence through the wire, reports,
 * reconnection with the highest term, and a clean stop. */
static void engine_sessions_and_commands(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    struct simagents_stats st;
    struct simagents_agent_info info;
    const struct simagents_exec *e;
    const struct rec *r;
    size_t n;

    options(f, &o);
    engine_start(f, &o);
    run_until(f, all_welcomed);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.redirects, 3);
    assert_int_equal(st.sessions, 3);
    assert_int_equal(st.connect_failures, 0);
    assert_int_equal(f->nodes[0].hellos, 3);
    assert_int_equal(f->nodes[1].hellos, 3);
    assert_int_equal(f->events[SIMAGENTS_EVENT_SESSION_UP], 3);
    r = nth(&f->nodes[1], "sim-2", PROTO_HELLO, 0);
    assert_non_null(r);
    assert_int_equal(r->highest_term, 0);
    assert_int_equal(r->n_labels, 2); /* site and zone */
    assert_true(r->has_services);
    assert_int_equal(r->n_items, 2);
    simagents_agent_info(f->sa, 1, &info);
    assert_string_equal(info.id, "sim-2");
    assert_true(info.connected);
    assert_int_equal(info.node_id, 2);
    assert_int_equal(info.term, NODE_TERM);
    assert_true(info.connect_us > 0);
    assert_int_equal(info.reconnect_us, -1);
    assert_int_equal(info.redirects, 1);

    run_until(f, heartbeats_flow);

    /* The fence, in the order of docs/protocol.md. */
    r = command(f, "sim-1", "c1", 5, 1000, PROTO_ACTION_RESTART, "svc-0");
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(r->term, 5);
    assert_int_equal(r->n_result, 4);
    assert_string_equal(r->result_gen, "2");
    run_until(f, report_gen2);
    r = command(f, "sim-1", "c1", 5, 1000, PROTO_ACTION_RESTART, "svc-0");
    assert_nack(r, PROTO_NACK_DUPLICATE, "command c1 was accepted before");
    r = command(f, "sim-1", "c2", 4, 1000, PROTO_ACTION_STOP, "svc-0");
    assert_nack(r, PROTO_NACK_STALE_TERM,
                "term 4 is below 5, the highest accepted");
    r = command(f, "sim-1", "c3", 5, 0, PROTO_ACTION_STOP, "svc-0");
    assert_nack(r, PROTO_NACK_EXPIRED, "ttl_remaining_ms was 0 on receipt");
    r = command(f, "sim-1", "c4", 6, 1000, PROTO_ACTION_STOP, "svc-9");
    assert_nack(r, PROTO_NACK_UNKNOWN_SERVICE,
                "no service \"svc-9\" on this agent");
    f->want_id = "c5";
    f->want_from = f->nodes[1].n_recs;
    send_unknown_action(&f->nodes[1], "sim-1", "c5");
    run_until(f, answered);
    r = answer(&f->nodes[1], "c5", f->want_from);
    assert_nack(r, PROTO_NACK_UNKNOWN_ACTION,
                "action \"reboot\" is unknown to agent "
                "version " SIMAGENTS_AGENT_VERSION);
    r = command(f, "sim-1", "c6", 6, 1000, PROTO_ACTION_DIAGNOSTICS, NULL);
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(r->n_result, 2);
    r = command(f, "sim-2", "c1", 4, 1000, PROTO_ACTION_START, "svc-1");
    assert_int_equal(r->type, PROTO_ACK); /* Another agent, its own fence. */

    e = simagents_execs(f->sa, &n);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].id, "c1");
    assert_int_equal(e[0].agent, 0);
    assert_int_equal(e[0].term, 5);
    assert_int_equal(e[0].action, PROTO_ACTION_RESTART);
    assert_true(e[0].exec_mono_us >= e[0].receipt_mono_us);
    assert_int_equal(e[0].ttl_remaining_ms, 1000);
    assert_int_equal(e[2].agent, 1);
    assert_int_equal(simagents_exec_check(e, n, f->errmsg), 0);
    assert_int_equal(f->events[SIMAGENTS_EVENT_EXEC], 3);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.commands, 8);
    assert_int_equal(st.executed, 3);
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.nacked, 5);
    assert_int_equal(st.nacked_by_reason[PROTO_NACK_DUPLICATE], 1);
    assert_int_equal(st.nacked_by_reason[PROTO_NACK_STALE_TERM], 1);
    assert_int_equal(st.nacked_by_reason[PROTO_NACK_EXPIRED], 1);
    assert_int_equal(st.nacked_by_reason[PROTO_NACK_UNKNOWN_SERVICE], 1);
    assert_int_equal(st.nacked_by_reason[PROTO_NACK_UNKNOWN_ACTION], 1);

    /* The node drops sim-1: it comes back, to the same node, with the
     * highest term it accepted. */
    conn_close(conn_of(&f->nodes[1], "sim-1"));
    run_until(f, second_hello);
    r = nth(&f->nodes[1], "sim-1", PROTO_HELLO, 1);
    assert_int_equal(r->highest_term, 6);
    simagents_agent_info(f->sa, 0, &info);
    assert_int_equal(info.sessions, 2);
    assert_true(info.reconnect_us > 0);
    assert_int_equal(info.highest_term, 6);
    assert_int_equal(f->events[SIMAGENTS_EVENT_SESSION_DOWN], 1);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.sessions_lost, 1);
    assert_true(st.heartbeat_acks > 0);

    /* And a drill's drop. */
    simagents_agent_drop(f->sa, 2);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.connected, 2);
    run_until(f, all_welcomed);

    simagents_stop(f->sa, on_stopped);
    run_until(f, stopped);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.connected, 0);
    run_until(f, nodes_closed);
}

static bool sim1_welcomed_again(struct fixture *f)
{
    struct simagents_stats st;
    simagents_stats(f->sa, &st);
    return count(&f->nodes[1], "sim-1", PROTO_HELLO) == 2 && all_welcomed(f) &&
           st.answers_lost == 1;
}

/* Run the loop until the engine has executed @n commands. */
static void run_until_executed(struct fixture *f, uint64_t n)
{
    struct simagents_stats st;
    uint64_t start;

    uv_update_time(&f->loop);
    start = uv_now(&f->loop);
    for (;;) {
        simagents_stats(f->sa, &st);
        if (st.executed >= n) {
            return;
        }
        uv_run(&f->loop, UV_RUN_ONCE);
        uv_update_time(&f->loop);
        if (uv_now(&f->loop) - start > DEADLINE_MS) {
            fail_msg("not executed within %d ms", DEADLINE_MS);
        }
    }
}

/* Delays: a deadline that passes before the command can begin is a nack
 * expired and the id is forgotten; an answer whose connection ended is
 * lost, and the resend is a duplicate; a command still waiting when the
 * engine stops goes with it. */
static void engine_delays(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    struct simagents_stats st;
    const struct rec *r;
    size_t n;

    options(f, &o);
    o.n_agents = 1;
    o.exec_delay_ms = 100;
    o.ack_delay_ms = 300;
    o.zones = 0;
    o.server_name = NULL; /* The address dialled: node1.pem has its IP. */
    engine_start(f, &o);
    run_until(f, all_welcomed);

    r = command(f, "sim-1", "late", 5, 50, PROTO_ACTION_STOP, "svc-0");
    assert_int_equal(r->type, PROTO_NACK);
    assert_int_equal(r->reason, PROTO_NACK_EXPIRED);
    assert_non_null(strstr(r->text, "before it could begin"));
    /* Forgotten: sent again in time, it runs. */
    r = command(f, "sim-1", "late", 5, 1000, PROTO_ACTION_STOP, "svc-0");
    assert_int_equal(r->type, PROTO_ACK);
    simagents_execs(f->sa, &n);
    assert_int_equal(n, 1);

    /* Executed, then the connection ends before the ack. */
    send_command(&f->nodes[1], "sim-1", "cut", 5, 1000, PROTO_ACTION_RESTART,
                 "svc-1");
    run_until_executed(f, 2);
    conn_close(conn_of(&f->nodes[1], "sim-1"));
    run_until(f, sim1_welcomed_again);
    assert_null(answer(&f->nodes[1], "cut", 0));
    r = command(f, "sim-1", "cut", 5, 1000, PROTO_ACTION_RESTART, "svc-1");
    assert_nack(r, PROTO_NACK_DUPLICATE, NULL);
    assert_int_equal(
        simagents_exec_check(simagents_execs(f->sa, &n), n, f->errmsg), 0);
    assert_int_equal(n, 2);

    /* Waiting to execute when the engine stops (in the teardown). */
    send_command(&f->nodes[1], "sim-1", "pending", 5, 1000,
                 PROTO_ACTION_RESTART, "svc-1");
    for (;;) {
        simagents_stats(f->sa, &st);
        if (st.commands == 5) {
            break;
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static bool crashed_and_back(struct fixture *f)
{
    const struct rec *r;
    bool failed = false;
    int k;
    size_t i;

    for (k = 0; (r = nth(&f->nodes[1], "sim-1", PROTO_REPORT, k)) != NULL;
         k++) {
        for (i = 0; i < r->n_items && i < 8; i++) {
            if (r->states[i] == PROTO_STATE_FAILED) {
                failed = true;
            } else if (failed && r->states[i] == PROTO_STATE_RUNNING &&
                       r->gens[i] >= 2) {
                return true;
            }
        }
    }
    return false;
}

/* crash_after: failed, then running with the next generation, reported. */
static void engine_crashing_services(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    struct simagents_stats st;

    options(f, &o);
    o.n_agents = 1;
    o.n_services = 3;
    o.behaviour = SIMAGENTS_CRASH_LOOP;
    o.crash_after_ms = 60;
    o.restart_ms = 30;
    engine_start(f, &o);
    run_until(f, crashed_and_back);
    simagents_stats(f->sa, &st);
    assert_true(st.reports >= 2);
    assert_true(st.report_items >= 2);
}

/* The last state sim-1 reported for @service, from its reports (-1: none);
 * with its generation, readiness and exit code. */
static int last_state(struct fixture *f,
                      const char *service,
                      uint64_t *gen,
                      bool *ready,
                      int32_t *exit_code)
{
    const struct rec *r;
    int state = -1;
    int k;
    size_t i;

    for (k = 0; (r = nth(&f->nodes[1], "sim-1", PROTO_REPORT, k)) != NULL;
         k++) {
        for (i = 0; i < r->n_items && i < 8; i++) {
            if (strcmp(r->services[i], service) == 0) {
                state = r->states[i];
                if (gen != NULL) {
                    *gen = r->gens[i];
                }
                if (ready != NULL) {
                    *ready = r->ready[i];
                }
                if (exit_code != NULL) {
                    *exit_code = r->exit_codes[i];
                }
            }
        }
    }
    return state;
}

static bool svc0_failed(struct fixture *f)
{
    return last_state(f, "svc-0", NULL, NULL, NULL) == PROTO_STATE_FAILED;
}

static bool svc0_ready(struct fixture *f)
{
    bool ready = false;
    return last_state(f, "svc-0", NULL, &ready, NULL) ==
               PROTO_STATE_RUNNING &&
           ready;
}

static bool svc1_failed(struct fixture *f)
{
    return last_state(f, "svc-1", NULL, NULL, NULL) == PROTO_STATE_FAILED;
}

static bool svc0_stopping(struct fixture *f)
{
    return last_state(f, "svc-0", NULL, NULL, NULL) == PROTO_STATE_STOPPING;
}

static bool extra_running(struct fixture *f)
{
    return last_state(f, "extra", NULL, NULL, NULL) == PROTO_STATE_RUNNING;
}

static void spin(struct fixture *f, uint64_t ms)
{
    uint64_t end;

    uv_update_time(&f->loop);
    end = uv_now(&f->loop) + ms;
    while (uv_now(&f->loop) < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_sleep(5);
        uv_update_time(&f->loop);
    }
}

/* crash_after: crashes once and stays failed until a start brings it back
 * as the next generation. */
static void engine_crash_once(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    const struct rec *r;
    uint64_t gen = 0;

    options(f, &o);
    o.n_agents = 1;
    o.n_services = 1;
    o.zones = 0;
    o.server_name = NULL;
    o.behaviour = SIMAGENTS_CRASH_ONCE;
    o.crash_after_ms = 60;
    o.restart_ms = 20;
    engine_start(f, &o);
    run_until(f, all_welcomed);
    run_until(f, svc0_failed);
    spin(f, 300); /* 15 restart_ms: a crash loop would be back by now */
    assert_int_equal(last_state(f, "svc-0", &gen, NULL, NULL),
                     PROTO_STATE_FAILED);
    assert_int_equal(gen, 1);
    r = command(f, "sim-1", "up", 5, 1000, PROTO_ACTION_START, "svc-0");
    assert_int_equal(r->type, PROTO_ACK);
    assert_string_equal(r->result_gen, "2");
    assert_int_equal(last_state(f, "svc-0", &gen, NULL, NULL),
                     PROTO_STATE_RUNNING);
    assert_int_equal(gen, 2);
}

/* slow_health: running but not ready until health_delay_ms has passed,
 * after the first start and after a restart. */
static void engine_slow_health(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    const struct rec *r;
    bool ready = true;

    options(f, &o);
    o.n_agents = 1;
    o.n_services = 1;
    o.zones = 0;
    o.server_name = NULL;
    o.behaviour = SIMAGENTS_SLOW_HEALTH;
    o.health_delay_ms = 300;
    engine_start(f, &o);
    run_until(f, all_welcomed);
    run_until(f, svc0_ready);
    r = command(f, "sim-1", "again", 5, 1000, PROTO_ACTION_RESTART, "svc-0");
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(last_state(f, "svc-0", NULL, &ready, NULL),
                     PROTO_STATE_RUNNING);
    assert_false(ready);
    run_until(f, svc0_ready);
}

/* hung_stop, crashes on demand, and pushes of new and known services. */
static void engine_hung_stop_crash_push(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    const struct rec *r;
    char name[PROTO_SERVICE_MAX + 1];
    int32_t code = 0;
    uint64_t t0;
    uint64_t gen = 0;

    options(f, &o);
    o.n_agents = 1;
    o.n_services = 2;
    o.zones = 0;
    o.server_name = NULL;
    o.behaviour = SIMAGENTS_HUNG_STOP;
    o.stop_hang_ms = 400;
    engine_start(f, &o);
    run_until(f, all_welcomed);

    /* The stop hangs: stopping at once, the ack when it ends. */
    uv_update_time(&f->loop);
    t0 = uv_now(&f->loop);
    f->want_id = "stop";
    f->want_from = f->nodes[1].n_recs;
    send_command(&f->nodes[1], "sim-1", "stop", 5, 5000, PROTO_ACTION_STOP,
                 "svc-0");
    run_until(f, svc0_stopping);
    assert_null(answer(&f->nodes[1], "stop", f->want_from));
    run_until(f, answered);
    uv_update_time(&f->loop);
    assert_true(uv_now(&f->loop) - t0 >= 380);
    assert_int_equal(answer(&f->nodes[1], "stop", f->want_from)->type,
                     PROTO_ACK);
    assert_int_equal(last_state(f, "svc-0", NULL, NULL, NULL),
                     PROTO_STATE_STOPPED);

    /* A crash on demand: failed with 137, reported. */
    assert_int_equal(simagents_crash_service(f->sa, 0, 1), 0);
    run_until(f, svc1_failed);
    last_state(f, "svc-1", NULL, NULL, &code);
    assert_int_equal(code, 137);
    assert_int_equal(simagents_crash_service(f->sa, 1, 0), REMS_EINVAL);
    assert_int_equal(simagents_crash_service(f->sa, 0, 2), REMS_ENOTFOUND);

    /* A push of a service the agent does not run adds it, started. */
    assert_int_equal(simagents_service_count(f->sa, 0), 2);
    r = command(f, "sim-1", "push-new", 5, 1000, PROTO_ACTION_PUSH_MANIFEST,
                "extra");
    assert_int_equal(r->type, PROTO_ACK);
    assert_string_equal(r->result_service, "extra");
    run_until(f, extra_running);
    assert_int_equal(simagents_service_count(f->sa, 0), 3);
    simagents_service_name(f->sa, 0, 2, name);
    assert_string_equal(name, "extra");
    simagents_service_name(f->sa, 0, 3, name);
    assert_string_equal(name, "");
    /* Another command for it now finds it; the next hello lists it. */
    r = command(f, "sim-1", "diag", 5, 1000, PROTO_ACTION_DIAGNOSTICS,
                "extra");
    assert_int_equal(r->type, PROTO_ACK);
    simagents_agent_drop(f->sa, 0);
    run_until(f, second_hello);
    r = nth(&f->nodes[1], "sim-1", PROTO_HELLO,
            count(&f->nodes[1], "sim-1", PROTO_HELLO) - 1);
    assert_non_null(r);
    assert_int_equal(r->n_items, 3);
    /* A push of a known service is a new revision: a new generation. */
    last_state(f, "extra", &gen, NULL, NULL);
    r = command(f, "sim-1", "push-again", 5, 5000, PROTO_ACTION_PUSH_MANIFEST,
                "extra");
    assert_int_equal(r->type, PROTO_ACK);
    assert_int_equal(strtoull(r->result_gen, NULL, 10), gen + 1);
    /* Other actions on unknown services are still refused. */
    r = command(f, "sim-1", "nope", 5, 1000, PROTO_ACTION_START, "ghost");
    assert_nack(r, PROTO_NACK_UNKNOWN_SERVICE, NULL);
}

/* Shares: the same seed picks the same agents; about the fraction. */
static void engine_shares(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    struct simagents_share share = {SIMAGENTS_CRASH_LOOP, 0.5, 100, 100, 0,
                                    0};
    struct simagents_share bad = {SIMAGENTS_SLOW_HEALTH, 0.5, 0, 0, 0, 0};
    struct simagents_share two[2] = {
        {SIMAGENTS_HUNG_STOP, 0.6, 0, 0, 0, 10},
        {SIMAGENTS_HUNG_STOP, 0.6, 0, 0, 0, 10}};

    options(f, &o);
    o.shares = &bad;
    o.n_shares = 1;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg, "shares[0].health_delay_ms: required by "
                                   "slow_health");
    o.shares = two;
    o.n_shares = 2;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg, "shares: the fractions add up to 1.200, "
                                   "more than 1");
    o.shares = &share;
    o.n_shares = 1;
    o.behaviour = SIMAGENTS_HEALTHY;
    assert_string_equal(simagents_behaviour_name(SIMAGENTS_CRASH_ONCE),
                        "crash_after");
    assert_string_equal(simagents_behaviour_name(SIMAGENTS_BEHAVIOUR_NR),
                        "unknown");
}

static void engine_bad_options(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    static const char *bad_eps[] = {"localhost:80"};

    options(f, &o);
    o.n_agents = 0;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    options(f, &o);
    o.prefix = "not valid!";
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    options(f, &o);
    o.endpoints = bad_eps;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg, "endpoints[0]: must be host:port with an "
                                   "IPv4 address or an IPv6 address in "
                                   "brackets");
    options(f, &o);
    o.behaviour = SIMAGENTS_CRASH_LOOP;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_EINVAL);
    options(f, &o);
    o.ca_key = cert("other-ca/ca.key");
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg),
                     REMS_ECONFIG);
    options(f, &o);
    o.cert_dir = "/nonexistent/dir";
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, f->errmsg), REMS_EIO);
    assert_null(f->sa);
}

/* Failing the n-th allocation of simagents_open(), for every n, gives
 * REMS_ENOMEM and no leak; its files and directory are gone. */
static void engine_open_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o;
    char dir[TEST_TMPDIR_SIZE];
    char cmd[TEST_TMPDIR_SIZE + 32];
    long live = f->heap.live;
    int rv;
    int n;

    test_tmpdir_make(dir);
    options(f, &o);
    o.n_agents = 2;
    o.cert_dir = dir;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = simagents_open(&f->loop, &o, &f->sa, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_null(f->sa);
        assert_int_equal(f->heap.live, live);
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
        assert_int_equal(system(cmd), 0);
    }
    assert_true(n > 5);
    simagents_close(f->sa);
    f->sa = NULL;
    test_tmpdir_remove(dir);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cert_minted_verifies), cmocka_unit_test(cert_refusals),
        cmocka_unit_test(fence_rules),          cmocka_unit_test(fence_random),
        cmocka_unit_test(fence_out_of_memory),  cmocka_unit_test(exec_check),
        TEST(engine_sessions_and_commands),     TEST(engine_delays),
        TEST(engine_crashing_services),         TEST(engine_bad_options),
        TEST(engine_crash_once),                TEST(engine_slow_health),
        TEST(engine_hung_stop_crash_push),      TEST(engine_shares),
        TEST(engine_open_out_of_memory),
    };
    return cmocka_run_group_tests_name("simagents", tests, group_setup,
                                       group_teardown);
}
