/* Tests of agentproto/proto.h: round trips of every message, every way a
 * payload is refused, the frame reader, and heap sweeps.
 *
 * Invalid payloads are made from valid encodings with msgpack-c's object
 * API (edit(): remove, replace or repeat one field, at any depth), so each
 * test changes exactly one thing. Random tests print their seed; set
 * PROTO_TEST_SEED to replay one. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/proto.h"
#include "tests/lib/heap.h"

#define MB ((size_t)1 << 20)

struct fixture {
    struct test_heap heap;
    struct rems_buf buf; /* Encoded frames; decoded messages borrow it. */
    struct proto_msg msg;
    struct proto_reader reader;
    char errmsg[REMS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    rems_buf_init(&f->buf);
    proto_reader_init(&f->reader, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    proto_msg_close(&f->msg);
    proto_reader_close(&f->reader);
    rems_buf_close(&f->buf);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * Sample messages
 * --------------------------------------------------------------------- */

static const struct proto_kv labels[] = {
    {PROTO_STR_INIT("zone"), PROTO_STR_INIT("eu-west-1a")},
    {PROTO_STR_INIT("role"), PROTO_STR_INIT("")},
    {PROTO_STR_INIT("owner \xc3\xa9quipe"), PROTO_STR_INIT("\xe2\x82\xac")},
};

static const struct proto_service services[] = {
    {.service = PROTO_STR_INIT("web"),
     .state = PROTO_STATE_RUNNING,
     .generation = 7,
     .health = PROTO_HEALTH_HEALTHY,
     .ready = true,
     .since_ms = 1700000000123ull,
     .message = PROTO_STR_INIT("listening on :8080")},
    {.service = PROTO_STR_INIT("worker@1"),
     .state = PROTO_STATE_BACKOFF,
     .generation = UINT64_MAX,
     .health = PROTO_HEALTH_UNHEALTHY,
     .ready = false,
     .has_exit_code = true,
     .exit_code = -9,
     .since_ms = 0,
     .message = PROTO_STR_INIT("killed by signal 9")},
    {.service = PROTO_STR_INIT("db"),
     .state = PROTO_STATE_STOPPED,
     .generation = 0,
     .health = PROTO_HEALTH_UNKNOWN,
     .ready = false,
     .has_exit_code = true,
     .exit_code = INT32_MAX,
     .since_ms = UINT64_MAX},
};

static const struct proto_kv args[] = {
    {PROTO_STR_INIT("signal"), PROTO_STR_INIT("TERM")},
    {PROTO_STR_INIT("grace_ms"), PROTO_STR_INIT("5000")},
};

static const char manifest_json[] =
    "{\"services\":{\"web\":{\"exec\":[\"/usr/bin/web\"]}}}";

/* Every message with every field: an index into the samples. */
enum {
    S_HELLO,
    S_WELCOME,
    S_REDIRECT,
    S_HEARTBEAT,
    S_HEARTBEAT_ACK,
    S_REPORT,
    S_COMMAND,
    S_COMMAND_MANIFEST,
    S_ACK_MAP,
    S_ACK_TEXT,
    S_NACK,
    S_ERROR,
    S_NR
};

static void make_full(int which, struct proto_msg *m)
{
    memset(m, 0, sizeof *m);
    switch (which) {
        case S_HELLO:
            m->type = PROTO_HELLO;
            m->hello.version = PROTO_VERSION;
            m->hello.agent_id = PROTO_STR("agent-01.eu:x_Y");
            m->hello.labels = labels;
            m->hello.n_labels = 3;
            m->hello.highest_term = 42;
            m->hello.agent_version = PROTO_STR("rems-agent 0.1.0");
            m->hello.has_services = true;
            m->hello.services = services;
            m->hello.n_services = 3;
            break;
        case S_WELCOME:
            m->type = PROTO_WELCOME;
            m->welcome.version = PROTO_VERSION;
            m->welcome.node_id = 3;
            m->welcome.term = 43;
            m->welcome.lease_ttl_ms = 10000;
            m->welcome.heartbeat_interval_ms = 3000;
            break;
        case S_REDIRECT:
            m->type = PROTO_REDIRECT;
            m->redirect.leader_address = PROTO_STR("10.0.0.2:7443");
            m->redirect.leader_id = 2;
            m->redirect.term = 43;
            m->redirect.retry_after_ms = 250;
            break;
        case S_HEARTBEAT:
            m->type = PROTO_HEARTBEAT;
            m->heartbeat.seq = UINT64_MAX;
            break;
        case S_HEARTBEAT_ACK:
            m->type = PROTO_HEARTBEAT_ACK;
            m->heartbeat_ack.seq = 17;
            m->heartbeat_ack.term = 43;
            m->heartbeat_ack.lease_remaining_ms = 9999;
            break;
        case S_REPORT:
            m->type = PROTO_REPORT;
            m->report.seq = 1000;
            m->report.items = services;
            m->report.n_items = 3;
            m->report.dropped = 5;
            break;
        case S_COMMAND:
            m->type = PROTO_COMMAND;
            m->command.id = PROTO_STR("cmd-43-1001");
            m->command.term = 43;
            m->command.ttl_remaining_ms = 30000;
            m->command.action = PROTO_ACTION_STOP;
            m->command.service = PROTO_STR("web");
            m->command.args = args;
            m->command.n_args = 2;
            break;
        case S_COMMAND_MANIFEST:
            m->type = PROTO_COMMAND;
            m->command.id = PROTO_STR("cmd-43-1002");
            m->command.term = 43;
            m->command.ttl_remaining_ms = PROTO_DURATION_MAX_MS;
            m->command.action = PROTO_ACTION_PUSH_MANIFEST;
            m->command.service = PROTO_STR("web");
            m->command.args = args;
            m->command.n_args = 1;
            m->command.manifest = PROTO_STR(manifest_json);
            break;
        case S_ACK_MAP:
            m->type = PROTO_ACK;
            m->ack.id = PROTO_STR("cmd-43-1001");
            m->ack.term = 43;
            m->ack.result_kind = PROTO_RESULT_MAP;
            m->ack.result = args;
            m->ack.n_result = 2;
            break;
        case S_ACK_TEXT:
            m->type = PROTO_ACK;
            m->ack.id = PROTO_STR("cmd-43-1003");
            m->ack.term = 43;
            m->ack.result_kind = PROTO_RESULT_TEXT;
            m->ack.result_text = PROTO_STR("pid 4242\nuptime 3 s\n");
            break;
        case S_NACK:
            m->type = PROTO_NACK;
            m->nack.id = PROTO_STR("cmd-42-7");
            m->nack.term = 42;
            m->nack.reason = PROTO_NACK_STALE_TERM;
            m->nack.message = PROTO_STR("term 42 is below 43, the highest "
                                        "accepted");
            break;
        case S_ERROR:
            m->type = PROTO_ERROR;
            m->error.code = PROTO_ERR_UNKNOWN_TYPE;
            m->error.message = PROTO_STR("t: unknown message type \"x\"");
            break;
        default:
            fail();
    }
}

/* Only the required fields. */
static void make_min(int type, struct proto_msg *m)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    switch (type) {
        case PROTO_HELLO:
            m->hello.version = 1;
            m->hello.agent_id = PROTO_STR("a");
            m->hello.agent_version = PROTO_STR("1");
            break;
        case PROTO_WELCOME:
            m->welcome.version = 1;
            m->welcome.node_id = 1;
            m->welcome.term = 1;
            m->welcome.lease_ttl_ms = 2;
            m->welcome.heartbeat_interval_ms = 1;
            break;
        case PROTO_REDIRECT:
        case PROTO_HEARTBEAT:
        case PROTO_REPORT:
            break;
        case PROTO_HEARTBEAT_ACK:
            m->heartbeat_ack.term = 1;
            break;
        case PROTO_COMMAND:
            m->command.id = PROTO_STR("c");
            m->command.term = 1;
            m->command.action = PROTO_ACTION_DIAGNOSTICS;
            break;
        case PROTO_ACK:
            m->ack.id = PROTO_STR("c");
            m->ack.term = 1;
            break;
        case PROTO_NACK:
            m->nack.id = PROTO_STR("c");
            m->nack.term = 1;
            m->nack.reason = PROTO_NACK_BUSY;
            break;
        case PROTO_ERROR:
            m->error.code = PROTO_ERR_INTERNAL;
            break;
        default:
            fail();
    }
}

/* ------------------------------------------------------------------------
 * Helpers
 * --------------------------------------------------------------------- */

static uint32_t be32(const void *p)
{
    const unsigned char *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

/* Encode @m as one frame at the end of @b; return the payload's offset. */
static size_t encode_ok(const struct proto_msg *m, struct rems_buf *b)
{
    char errmsg[REMS_ERRMSG_SIZE] = "";
    size_t start = b->len;
    int rv = proto_msg_encode(m, 0, b, errmsg);
    if (rv != 0) {
        print_error("encode: %s\n", errmsg);
    }
    assert_int_equal(rv, 0);
    assert_true(b->len > start + PROTO_HEADER_SIZE);
    assert_int_equal(be32(b->data + start), b->len - start - 4);
    return start + PROTO_HEADER_SIZE;
}

static void assert_str(struct proto_str a, struct proto_str b)
{
    assert_non_null(a.p);
    assert_non_null(b.p);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.p, b.p, a.len);
}

static void assert_kvs(const struct proto_kv *a,
                       size_t na,
                       const struct proto_kv *b,
                       size_t nb)
{
    size_t i;
    assert_int_equal(na, nb);
    for (i = 0; i < na; i++) {
        assert_str(a[i].key, b[i].key);
        assert_str(a[i].value, b[i].value);
    }
}

static void assert_services(const struct proto_service *a,
                            size_t na,
                            const struct proto_service *b,
                            size_t nb)
{
    size_t i;
    assert_int_equal(na, nb);
    for (i = 0; i < na; i++) {
        assert_str(a[i].service, b[i].service);
        assert_int_equal(a[i].state, b[i].state);
        assert_int_equal(a[i].generation, b[i].generation);
        assert_int_equal(a[i].health, b[i].health);
        assert_int_equal(a[i].ready, b[i].ready);
        assert_int_equal(a[i].has_exit_code, b[i].has_exit_code);
        if (a[i].has_exit_code) {
            assert_int_equal(a[i].exit_code, b[i].exit_code);
        }
        assert_int_equal(a[i].since_ms, b[i].since_ms);
        if (a[i].message.len > 0 || b[i].message.len > 0) {
            assert_str(a[i].message, b[i].message);
        }
    }
}

/* @got (decoded) holds the same message as @want (built). Optional
 * strings left unset in @want are {NULL, 0}; decoded ones are "". */
static void assert_msg(const struct proto_msg *want,
                       const struct proto_msg *got)
{
    assert_int_equal(want->type, got->type);
    assert_true(mpread_streq(got->type_name.p, got->type_name.len,
                             proto_type_name(want->type)));
    switch (want->type) {
        case PROTO_HELLO:
            assert_int_equal(want->hello.version, got->hello.version);
            assert_str(want->hello.agent_id, got->hello.agent_id);
            assert_kvs(want->hello.labels, want->hello.n_labels,
                       got->hello.labels, got->hello.n_labels);
            assert_int_equal(want->hello.highest_term, got->hello.highest_term);
            assert_str(want->hello.agent_version, got->hello.agent_version);
            assert_int_equal(want->hello.has_services, got->hello.has_services);
            assert_services(want->hello.services, want->hello.n_services,
                            got->hello.services, got->hello.n_services);
            break;
        case PROTO_WELCOME:
            assert_int_equal(want->welcome.version, got->welcome.version);
            assert_int_equal(want->welcome.node_id, got->welcome.node_id);
            assert_int_equal(want->welcome.term, got->welcome.term);
            assert_int_equal(want->welcome.lease_ttl_ms,
                             got->welcome.lease_ttl_ms);
            assert_int_equal(want->welcome.heartbeat_interval_ms,
                             got->welcome.heartbeat_interval_ms);
            break;
        case PROTO_REDIRECT:
            assert_int_equal(want->redirect.leader_address.len,
                             got->redirect.leader_address.len);
            assert_non_null(got->redirect.leader_address.p);
            assert_memory_equal(want->redirect.leader_address.len
                                    ? want->redirect.leader_address.p
                                    : "",
                                got->redirect.leader_address.p,
                                got->redirect.leader_address.len);
            assert_int_equal(want->redirect.leader_id, got->redirect.leader_id);
            assert_int_equal(want->redirect.term, got->redirect.term);
            assert_int_equal(want->redirect.retry_after_ms,
                             got->redirect.retry_after_ms);
            break;
        case PROTO_HEARTBEAT:
            assert_int_equal(want->heartbeat.seq, got->heartbeat.seq);
            break;
        case PROTO_HEARTBEAT_ACK:
            assert_int_equal(want->heartbeat_ack.seq, got->heartbeat_ack.seq);
            assert_int_equal(want->heartbeat_ack.term, got->heartbeat_ack.term);
            assert_int_equal(want->heartbeat_ack.lease_remaining_ms,
                             got->heartbeat_ack.lease_remaining_ms);
            break;
        case PROTO_REPORT:
            assert_int_equal(want->report.seq, got->report.seq);
            assert_services(want->report.items, want->report.n_items,
                            got->report.items, got->report.n_items);
            assert_int_equal(want->report.dropped, got->report.dropped);
            break;
        case PROTO_COMMAND:
            assert_str(want->command.id, got->command.id);
            assert_int_equal(want->command.term, got->command.term);
            assert_int_equal(want->command.ttl_remaining_ms,
                             got->command.ttl_remaining_ms);
            assert_int_equal(want->command.action, got->command.action);
            assert_true(mpread_streq(got->command.action_name.p,
                                     got->command.action_name.len,
                                     proto_action_name(want->command.action)));
            assert_int_equal(want->command.service.len,
                             got->command.service.len);
            assert_non_null(got->command.service.p);
            if (got->command.service.len > 0) {
                assert_str(want->command.service, got->command.service);
            }
            assert_kvs(want->command.args, want->command.n_args,
                       got->command.args, got->command.n_args);
            assert_int_equal(want->command.manifest.len,
                             got->command.manifest.len);
            if (got->command.manifest.len > 0) {
                assert_str(want->command.manifest, got->command.manifest);
            }
            break;
        case PROTO_ACK:
            assert_str(want->ack.id, got->ack.id);
            assert_int_equal(want->ack.term, got->ack.term);
            assert_int_equal(want->ack.result_kind, got->ack.result_kind);
            if (want->ack.result_kind == PROTO_RESULT_TEXT) {
                assert_str(want->ack.result_text, got->ack.result_text);
            }
            assert_kvs(want->ack.result, want->ack.n_result, got->ack.result,
                       got->ack.n_result);
            break;
        case PROTO_NACK:
            assert_str(want->nack.id, got->nack.id);
            assert_int_equal(want->nack.term, got->nack.term);
            assert_int_equal(want->nack.reason, got->nack.reason);
            assert_int_equal(want->nack.message.len, got->nack.message.len);
            assert_non_null(got->nack.message.p);
            if (got->nack.message.len > 0) {
                assert_str(want->nack.message, got->nack.message);
            }
            break;
        case PROTO_ERROR:
            assert_int_equal(want->error.code, got->error.code);
            assert_int_equal(want->error.message.len, got->error.message.len);
            assert_non_null(got->error.message.p);
            if (got->error.message.len > 0) {
                assert_str(want->error.message, got->error.message);
            }
            break;
        default:
            fail();
    }
}

/* Encode @m, decode it into f->msg, check every field, and check that
 * encoding the decoded message gives the same bytes. */
static void round_trip(struct fixture *f, const struct proto_msg *m)
{
    struct rems_buf again;
    size_t off;
    size_t len;
    int rv;

    proto_msg_close(&f->msg);
    rems_buf_close(&f->buf);
    off = encode_ok(m, &f->buf);
    len = f->buf.len - off;
    rv = proto_msg_decode(f->buf.data + off, len, &f->msg, f->errmsg);
    if (rv != 0) {
        print_error("decode: %s\n", f->errmsg);
    }
    assert_int_equal(rv, 0);
    assert_msg(m, &f->msg);

    rems_buf_init(&again);
    encode_ok(&f->msg, &again);
    assert_int_equal(again.len, f->buf.len);
    assert_memory_equal(again.data, f->buf.data, again.len);
    rems_buf_close(&again);
}

/* Decode @len bytes at @buf, expecting @rv and an error message that
 * starts with @prefix (NULL: any). */
static void decode_fails(
    struct fixture *f, const void *buf, size_t len, int rv, const char *prefix)
{
    int got;

    proto_msg_close(&f->msg);
    memset(f->errmsg, 0, sizeof f->errmsg);
    got = proto_msg_decode(buf, len, &f->msg, f->errmsg);
    if (got != rv ||
        (prefix != NULL && strncmp(f->errmsg, prefix, strlen(prefix)) != 0)) {
        print_error("want %s \"%s...\", got %s \"%s\"\n", rems_errname(rv),
                    prefix != NULL ? prefix : "", rems_errname(got), f->errmsg);
        fail();
    }
    assert_true(strlen(f->errmsg) > 0);
    assert_null(f->msg.owned[0]);
    assert_null(f->msg.owned[1]);
}

/* Encoding @m fails with @rv and a message starting with @prefix, and
 * leaves the buffer as it was. */
static void encode_fails(struct fixture *f,
                         const struct proto_msg *m,
                         size_t max_frame,
                         int rv,
                         const char *prefix)
{
    char errmsg[REMS_ERRMSG_SIZE] = "";
    struct rems_buf b;
    int got;

    rems_buf_init(&b);
    assert_int_equal(rems_buf_append(&b, "keep", 4), 0);
    got = proto_msg_encode(m, max_frame, &b, errmsg);
    if (got != rv || strncmp(errmsg, prefix, strlen(prefix)) != 0) {
        print_error("want %s \"%s...\", got %s \"%s\"\n", rems_errname(rv),
                    prefix, rems_errname(got), errmsg);
        fail();
    }
    assert_int_equal(b.len, 4);
    assert_false(b.failed);
    assert_memory_equal(b.data, "keep", 5);
    rems_buf_close(&b);
    (void)f;
}

/* ------------------------------------------------------------------------
 * Editing encoded payloads with msgpack-c's object API
 * --------------------------------------------------------------------- */

enum { V_UINT, V_INT, V_STR, V_BIN, V_BOOL, V_NIL, V_MAP0, V_ARRAY0, V_FLOAT };

struct val {
    int kind;
    uint64_t u;
    int64_t i;
    const char *s;
    size_t len; /* V_STR, V_BIN; SIZE_MAX: strlen(s) */
};

static void pack_val(msgpack_packer *pk, const struct val *v)
{
    size_t len;
    switch (v->kind) {
        case V_UINT:
            msgpack_pack_uint64(pk, v->u);
            break;
        case V_INT:
            msgpack_pack_int64(pk, v->i);
            break;
        case V_STR:
            len = v->len == SIZE_MAX ? strlen(v->s) : v->len;
            msgpack_pack_str(pk, len);
            msgpack_pack_str_body(pk, v->s, len);
            break;
        case V_BIN:
            len = v->len == SIZE_MAX ? strlen(v->s) : v->len;
            msgpack_pack_bin(pk, len);
            msgpack_pack_bin_body(pk, v->s, len);
            break;
        case V_BOOL:
            if (v->u) {
                msgpack_pack_true(pk);
            } else {
                msgpack_pack_false(pk);
            }
            break;
        case V_NIL:
            msgpack_pack_nil(pk);
            break;
        case V_MAP0:
            msgpack_pack_map(pk, 0);
            break;
        case V_ARRAY0:
            msgpack_pack_array(pk, 0);
            break;
        case V_FLOAT:
            msgpack_pack_double(pk, 1.5);
            break;
        default:
            fail();
    }
}

#define UINTV(x) (&(struct val){.kind = V_UINT, .u = (x)})
#define INTV(x) (&(struct val){.kind = V_INT, .i = (x)})
#define STRV(x) (&(struct val){.kind = V_STR, .s = (x), .len = SIZE_MAX})
#define STRNV(x, n) (&(struct val){.kind = V_STR, .s = (x), .len = (n)})
#define BINV(x, n) (&(struct val){.kind = V_BIN, .s = (x), .len = (n)})
#define BOOLV(x) (&(struct val){.kind = V_BOOL, .u = (x)})
#define NILV (&(struct val){.kind = V_NIL})
#define MAP0V (&(struct val){.kind = V_MAP0})
#define ARRAY0V (&(struct val){.kind = V_ARRAY0})
#define FLOATV (&(struct val){.kind = V_FLOAT})

enum { E_REMOVE, E_SET, E_DUP };

/* Re-pack @o, applying @op at @path ("key", "items/0/state"): remove the
 * field, set it to @v (added when absent) or repeat it. */
static void pack_edit(msgpack_packer *pk,
                      const msgpack_object *o,
                      const char *path,
                      int op,
                      const struct val *v)
{
    const char *slash = strchr(path, '/');
    size_t seg = slash != NULL ? (size_t)(slash - path) : strlen(path);
    bool last = slash == NULL;
    uint32_t i;

    if (o->type == MSGPACK_OBJECT_ARRAY) {
        size_t idx = (size_t)strtoul(path, NULL, 10);
        assert_true(idx < o->via.array.size);
        msgpack_pack_array(pk, o->via.array.size);
        for (i = 0; i < o->via.array.size; i++) {
            if (i == idx && last) {
                assert_int_equal(op, E_SET);
                pack_val(pk, v);
            } else if (i == idx) {
                pack_edit(pk, &o->via.array.ptr[i], slash + 1, op, v);
            } else {
                msgpack_pack_object(pk, o->via.array.ptr[i]);
            }
        }
        return;
    }
    assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
    {
        const msgpack_object_kv *kv = o->via.map.ptr;
        uint32_t n = o->via.map.size;
        bool found = false;
        uint32_t size = n;

        for (i = 0; i < n; i++) {
            if (kv[i].key.type == MSGPACK_OBJECT_STR &&
                kv[i].key.via.str.size == seg &&
                memcmp(kv[i].key.via.str.ptr, path, seg) == 0) {
                found = true;
            }
        }
        assert_true(found || (last && op == E_SET));
        if (last) {
            size += op == E_REMOVE ? (uint32_t)-1 : op == E_DUP ? 1 : 0;
            size += op == E_SET && !found ? 1 : 0;
        }
        msgpack_pack_map(pk, size);
        for (i = 0; i < n; i++) {
            bool match = kv[i].key.type == MSGPACK_OBJECT_STR &&
                         kv[i].key.via.str.size == seg &&
                         memcmp(kv[i].key.via.str.ptr, path, seg) == 0;
            if (!match) {
                msgpack_pack_object(pk, kv[i].key);
                msgpack_pack_object(pk, kv[i].val);
            } else if (!last) {
                msgpack_pack_object(pk, kv[i].key);
                pack_edit(pk, &kv[i].val, slash + 1, op, v);
            } else if (op == E_SET) {
                msgpack_pack_object(pk, kv[i].key);
                pack_val(pk, v);
            } else if (op == E_DUP) {
                msgpack_pack_object(pk, kv[i].key);
                msgpack_pack_object(pk, kv[i].val);
                msgpack_pack_object(pk, kv[i].key);
                msgpack_pack_object(pk, kv[i].val);
            }
        }
        if (last && op == E_SET && !found) {
            msgpack_pack_str(pk, seg);
            msgpack_pack_str_body(pk, path, seg);
            pack_val(pk, v);
        }
    }
}

/* An edited copy of the payload of sample @which, in @out (free with
 * msgpack_sbuffer_destroy). */
static void edit(int which,
                 const char *path,
                 int op,
                 const struct val *v,
                 msgpack_sbuffer *out)
{
    struct proto_msg m;
    struct rems_buf b;
    msgpack_unpacked u;
    msgpack_packer pk;
    size_t off;
    size_t pos = 0;

    make_full(which, &m);
    rems_buf_init(&b);
    off = encode_ok(&m, &b);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, b.data + off, b.len - off, &pos),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer_init(out);
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    pack_edit(&pk, &u.data, path, op, v);
    msgpack_unpacked_destroy(&u);
    rems_buf_close(&b);
}

/* Decoding sample @which edited so fails with @rv and @prefix. */
static void edit_fails(struct fixture *f,
                       int which,
                       const char *path,
                       int op,
                       const struct val *v,
                       int rv,
                       const char *prefix)
{
    msgpack_sbuffer sb;

    /* In f->buf, which f->msg.type_name may borrow after the call. */
    edit(which, path, op, v, &sb);
    proto_msg_close(&f->msg);
    rems_buf_close(&f->buf);
    assert_int_equal(rems_buf_append(&f->buf, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    decode_fails(f, f->buf.data, f->buf.len, rv, prefix);
}

/* Decoding sample @which edited so succeeds; the message is in f->msg
 * and borrows f->buf. */
static void edit_decodes(
    struct fixture *f, int which, const char *path, int op, const struct val *v)
{
    msgpack_sbuffer sb;
    int rv;

    edit(which, path, op, v, &sb);
    proto_msg_close(&f->msg);
    rems_buf_close(&f->buf);
    assert_int_equal(rems_buf_append(&f->buf, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    rv = proto_msg_decode(f->buf.data, f->buf.len, &f->msg, f->errmsg);
    if (rv != 0) {
        print_error("decode %s: %s\n", path, f->errmsg);
    }
    assert_int_equal(rv, 0);
}

/* The keys of the top-level map of sample @which, and their msgpack
 * types, for tests that go through every field. */
struct key {
    char name[32];
    msgpack_object_type type;
};

static size_t
sample_keys(int which, const char *sub, struct key *keys, size_t max)
{
    struct proto_msg m;
    struct rems_buf b;
    msgpack_unpacked u;
    const msgpack_object *o;
    size_t off;
    size_t pos = 0;
    size_t n = 0;
    uint32_t i;

    make_full(which, &m);
    rems_buf_init(&b);
    off = encode_ok(&m, &b);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, b.data + off, b.len - off, &pos),
                     MSGPACK_UNPACK_SUCCESS);
    o = &u.data;
    if (sub != NULL) { /* The first item of the array field @sub. */
        for (i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->via.str.size == strlen(sub) &&
                memcmp(k->via.str.ptr, sub, k->via.str.size) == 0) {
                o = &o->via.map.ptr[i].val.via.array.ptr[0];
                break;
            }
        }
        assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
    }
    for (i = 0; i < o->via.map.size && n < max; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        assert_true(kv->key.via.str.size < sizeof keys[n].name);
        memcpy(keys[n].name, kv->key.via.str.ptr, kv->key.via.str.size);
        keys[n].name[kv->key.via.str.size] = '\0';
        keys[n].type = kv->val.type;
        n++;
    }
    msgpack_unpacked_destroy(&u);
    rems_buf_close(&b);
    return n;
}

/* A value of a type the field of msgpack type @t never accepts. */
static const struct val *wrong_type(msgpack_object_type t)
{
    static const struct val str = {.kind = V_STR, .s = "x", .len = 1};
    static const struct val num = {.kind = V_UINT, .u = 1};
    static const struct val neg = {.kind = V_INT, .i = -1};
    switch (t) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return &str;
        case MSGPACK_OBJECT_STR:
        case MSGPACK_OBJECT_BIN:
        case MSGPACK_OBJECT_MAP:
        case MSGPACK_OBJECT_ARRAY:
            return &num;
        case MSGPACK_OBJECT_BOOLEAN:
            return &neg;
        default:
            fail();
            return NULL;
    }
}

/* ------------------------------------------------------------------------
 * Round trips
 * --------------------------------------------------------------------- */

/* Every message with every field survives encoding and decoding. */
static void round_trip_full(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    int which;

    for (which = 0; which < S_NR; which++) {
        make_full(which, &m);
        round_trip(f, &m);
    }
}

/* Every message with only its required fields; absent optional strings
 * decode as "", never NULL. */
static void round_trip_minimal(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    int type;

    for (type = PROTO_HELLO; type < PROTO_TYPE_NR; type++) {
        make_min(type, &m);
        round_trip(f, &m);
    }
    make_min(PROTO_HELLO, &m);
    round_trip(f, &m);
    assert_false(f->msg.hello.has_services);
    assert_null(f->msg.hello.labels);
    assert_int_equal(f->msg.hello.n_labels, 0);

    make_min(PROTO_COMMAND, &m);
    round_trip(f, &m);
    assert_string_equal(f->msg.command.service.p, "");
    assert_string_equal(f->msg.command.manifest.p, "");
    assert_int_equal(f->msg.command.n_args, 0);

    make_min(PROTO_ACK, &m);
    round_trip(f, &m);
    assert_int_equal(f->msg.ack.result_kind, PROTO_RESULT_NONE);
    assert_string_equal(f->msg.ack.result_text.p, "");

    make_min(PROTO_REDIRECT, &m);
    round_trip(f, &m);
    assert_non_null(f->msg.redirect.leader_address.p);
    assert_int_equal(f->msg.redirect.leader_address.len, 0);

    make_min(PROTO_REPORT, &m);
    m.report.n_items = 1;
    m.report.items = &(struct proto_service){.service = PROTO_STR("s"),
                                             .state = PROTO_STATE_QUARANTINED,
                                             .health = PROTO_HEALTH_UNKNOWN};
    round_trip(f, &m);
    assert_false(f->msg.report.items[0].has_exit_code);
    assert_string_equal(f->msg.report.items[0].message.p, "");
}

/* A hello listing no services is not a hello without the list. */
static void round_trip_empty_services(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;

    make_min(PROTO_HELLO, &m);
    m.hello.has_services = true;
    round_trip(f, &m);
    assert_true(f->msg.hello.has_services);
    assert_int_equal(f->msg.hello.n_services, 0);
}

/* Every value of every enum goes through. */
static void round_trip_enums(void **state)
{
    struct fixture *f = *state;
    struct proto_service item = services[0];
    struct proto_msg m;
    int v;
    int w;

    for (v = 1; v < PROTO_STATE_NR; v++) {
        for (w = 1; w < PROTO_HEALTH_NR; w++) {
            make_min(PROTO_REPORT, &m);
            item.state = v;
            item.health = w;
            m.report.items = &item;
            m.report.n_items = 1;
            round_trip(f, &m);
        }
    }
    for (v = 1; v < PROTO_ACTION_NR; v++) {
        make_full(S_COMMAND, &m);
        m.command.action = v;
        if (v == PROTO_ACTION_PUSH_MANIFEST) {
            m.command.manifest = PROTO_STR("{}");
        }
        round_trip(f, &m);
    }
    for (v = 1; v < PROTO_NACK_REASON_NR; v++) {
        make_full(S_NACK, &m);
        m.nack.reason = v;
        round_trip(f, &m);
    }
    for (v = 1; v < PROTO_ERR_NR; v++) {
        make_full(S_ERROR, &m);
        m.error.code = v;
        round_trip(f, &m);
    }
}

/* Names match the protocol reference; out of range gives "unknown". */
static void enum_names(void **state)
{
    (void)state;
    assert_string_equal(proto_type_name(PROTO_HEARTBEAT_ACK), "heartbeat_ack");
    assert_string_equal(proto_type_name(PROTO_TYPE_NONE), "unknown");
    assert_string_equal(proto_type_name(PROTO_TYPE_NR), "unknown");
    assert_string_equal(proto_state_name(PROTO_STATE_QUARANTINED),
                        "quarantined");
    assert_string_equal(proto_state_name(0), "unknown");
    assert_string_equal(proto_health_name(PROTO_HEALTH_UNHEALTHY), "unhealthy");
    assert_string_equal(proto_action_name(PROTO_ACTION_PUSH_MANIFEST),
                        "push_manifest");
    assert_string_equal(proto_action_name(PROTO_ACTION_UNKNOWN), "unknown");
    assert_string_equal(proto_nack_reason_name(PROTO_NACK_STALE_TERM),
                        "stale_term");
    assert_string_equal(proto_error_code_name(PROTO_ERR_UNSUPPORTED_VERSION),
                        "unsupported_version");
    assert_string_equal(proto_error_code_name(-1), "unknown");
}

/* Limits are inclusive: strings and counts of exactly the maximum pass. */
static void limits_inclusive(void **state)
{
    struct fixture *f = *state;
    static char big[PROTO_RESULT_TEXT_MAX];
    static struct proto_kv kv[PROTO_LABELS_MAX];
    static char keys[PROTO_LABELS_MAX][PROTO_LABEL_KEY_MAX];
    struct proto_msg m;
    size_t i;

    memset(big, 'a', sizeof big);
    for (i = 0; i < PROTO_LABELS_MAX; i++) {
        memset(keys[i], 'k', sizeof keys[i]);
        snprintf(keys[i], 8, "%zu", i);
        keys[i][strlen(keys[i])] = 'k';
        kv[i].key = (struct proto_str){keys[i], PROTO_LABEL_KEY_MAX};
        kv[i].value = (struct proto_str){big, PROTO_LABEL_VALUE_MAX};
    }
    make_full(S_HELLO, &m);
    m.hello.agent_id = (struct proto_str){big, PROTO_ID_MAX};
    m.hello.agent_version = (struct proto_str){big, PROTO_AGENT_VERSION_MAX};
    m.hello.labels = kv;
    m.hello.n_labels = PROTO_LABELS_MAX;
    round_trip(f, &m);

    make_full(S_COMMAND, &m);
    m.command.service = (struct proto_str){big, PROTO_SERVICE_MAX};
    m.command.args = kv;
    m.command.n_args = PROTO_ARGS_MAX;
    for (i = 0; i < PROTO_ARGS_MAX; i++) {
        kv[i].value = (struct proto_str){big, PROTO_ARG_VALUE_MAX};
    }
    round_trip(f, &m);

    make_full(S_ACK_TEXT, &m);
    m.ack.result_text = (struct proto_str){big, PROTO_RESULT_TEXT_MAX};
    round_trip(f, &m);

    make_full(S_NACK, &m);
    m.nack.message = (struct proto_str){big, PROTO_MESSAGE_MAX};
    round_trip(f, &m);
}

/* 1024 report items, each with a 1024-byte message, do not fit in the
 * default frame: the encoder says so; 1024 short items do. */
static void report_items_max(void **state)
{
    struct fixture *f = *state;
    static struct proto_service items[PROTO_ITEMS_MAX];
    static char msg[PROTO_MESSAGE_MAX];
    struct proto_msg m;
    size_t i;

    memset(msg, 'm', sizeof msg);
    for (i = 0; i < PROTO_ITEMS_MAX; i++) {
        items[i] = services[i % 3];
        items[i].message = (struct proto_str){msg, sizeof msg};
    }
    make_full(S_REPORT, &m);
    m.report.items = items;
    m.report.n_items = PROTO_ITEMS_MAX;
    encode_fails(f, &m, 0, REMS_ETOOBIG, "report: ");
    for (i = 0; i < PROTO_ITEMS_MAX; i++) {
        items[i].message = PROTO_STR("");
    }
    round_trip(f, &m);
    assert_int_equal(f->msg.report.n_items, PROTO_ITEMS_MAX);
}

/* A newer agent offers a higher version; the node picks its own. */
static void version_negotiation(void **state)
{
    struct fixture *f = *state;
    uint64_t v = 99;

    assert_int_equal(proto_version_negotiate(7, &v, f->errmsg), 0);
    assert_int_equal(v, PROTO_VERSION);
    assert_int_equal(proto_version_negotiate(1, &v, f->errmsg), 0);
    assert_int_equal(v, 1);
    v = 99;
    assert_int_equal(proto_version_negotiate(0, &v, f->errmsg),
                     REMS_EUNSUPPORTED);
    assert_int_equal(v, 99);
    assert_non_null(strstr(f->errmsg, "version 0"));

    /* A hello offering version 7 decodes (its v1 fields are stable). */
    edit_decodes(f, S_HELLO, "v", E_SET, UINTV(7));
    assert_int_equal(f->msg.hello.version, 7);
    /* A welcome for a version this side does not speak is unsupported. */
    edit_fails(f, S_WELCOME, "v", E_SET, UINTV(2), REMS_EUNSUPPORTED,
               "welcome.v: version 2 is not supported");
    assert_int_equal(f->msg.type, PROTO_WELCOME);
    assert_int_equal(proto_error_code_for(REMS_EUNSUPPORTED, f->msg.type),
                     PROTO_ERR_UNSUPPORTED_VERSION);
    edit_fails(f, S_WELCOME, "v", E_SET, UINTV(0), REMS_EUNSUPPORTED,
               "welcome.v: ");
    edit_fails(f, S_HELLO, "v", E_SET, UINTV(0), REMS_EMALFORMED,
               "hello.v: must be at least 1");
}

/* Unknown fields (any type, nested or not) are skipped; nil is absent. */
static void unknown_fields_skipped(void **state)
{
    struct fixture *f = *state;

    edit_decodes(f, S_HELLO, "future", E_SET, MAP0V);
    edit_decodes(f, S_HELLO, "fl", E_SET, FLOATV);
    edit_decodes(f, S_HELLO, "services/1/extra", E_SET, ARRAY0V);
    assert_int_equal(f->msg.hello.n_services, 3);
    edit_decodes(f, S_HEARTBEAT, "v", E_SET, STRV("not a version here"));
    edit_decodes(f, S_REPORT, "items/0/exit_code", E_SET, NILV);
    assert_false(f->msg.report.items[0].has_exit_code);
    edit_decodes(f, S_REPORT, "items/0/message", E_SET, NILV);
    assert_string_equal(f->msg.report.items[0].message.p, "");
    edit_decodes(f, S_HELLO, "services", E_SET, NILV);
    assert_false(f->msg.hello.has_services);
    edit_decodes(f, S_ACK_MAP, "result", E_SET, NILV);
    assert_int_equal(f->msg.ack.result_kind, PROTO_RESULT_NONE);
    /* The manifest may be sent as a str. */
    edit_decodes(f, S_COMMAND_MANIFEST, "manifest", E_SET, STRV("{}"));
    assert_int_equal(f->msg.command.manifest.len, 2);
    /* Several reports of one service in one batch keep their order. */
    edit_decodes(f, S_REPORT, "items/1/service", E_SET, STRV("web"));
    assert_int_equal(f->msg.report.items[1].state, PROTO_STATE_BACKOFF);
}

/* An action this agent does not know decodes, so that it can answer nack
 * unknown_action; it cannot be encoded. */
static void unknown_action(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;

    edit_decodes(f, S_COMMAND, "action", E_SET, STRV("reboot"));
    assert_int_equal(f->msg.command.action, PROTO_ACTION_UNKNOWN);
    assert_true(mpread_streq(f->msg.command.action_name.p,
                             f->msg.command.action_name.len, "reboot"));
    assert_true(mpread_streq(f->msg.command.id.p, f->msg.command.id.len,
                             "cmd-43-1001"));
    /* With an unknown action, service and manifest are not judged. */
    edit_decodes(f, S_COMMAND_MANIFEST, "action", E_SET, STRV("reboot"));

    edit_fails(f, S_COMMAND, "action", E_SET, STRV(""), REMS_EMALFORMED,
               "command.action: unknown action \"\"");
    edit_fails(f, S_COMMAND, "action", E_SET, UINTV(1), REMS_EMALFORMED,
               "command.action: must be a string");

    make_full(S_COMMAND, &m);
    m.command.action = PROTO_ACTION_UNKNOWN;
    encode_fails(f, &m, 0, REMS_EINVAL, "command.action: invalid action");
}

/* ------------------------------------------------------------------------
 * Refusals
 * --------------------------------------------------------------------- */

/* A payload that is not a map. */
static void not_a_map(void **state)
{
    struct fixture *f = *state;
    static const unsigned char array[] = {0x91, 0xa1, 't'};
    static const unsigned char str[] = {0xa5, 'h', 'e', 'l', 'l', 'o'};
    static const unsigned char nil[] = {0xc0};
    static const unsigned char num[] = {0x2a};

    decode_fails(f, array, sizeof array, REMS_EMALFORMED,
                 "frame: must be a map");
    decode_fails(f, str, sizeof str, REMS_EMALFORMED, "frame: must be a map");
    decode_fails(f, nil, sizeof nil, REMS_EMALFORMED, "frame: must be a map");
    decode_fails(f, num, sizeof num, REMS_EMALFORMED, "frame: must be a map");
    decode_fails(f, "", 0, REMS_EMALFORMED, "frame: must be a map");
    decode_fails(f, NULL, 0, REMS_EMALFORMED, "frame: must be a map");
    assert_int_equal(proto_error_code_for(REMS_EMALFORMED, f->msg.type),
                     PROTO_ERR_MALFORMED);
}

/* "t" missing, of the wrong type, twice, or naming no known type. */
static void type_field(void **state)
{
    struct fixture *f = *state;
    static const unsigned char empty_map[] = {0x80};
    static const unsigned char int_key[] = {0x81, 0x01, 0x01};
    static const unsigned char trailing[] = {0x80, 0x80};
    msgpack_sbuffer sb;
    msgpack_packer pk;

    edit_fails(f, S_HEARTBEAT, "t", E_REMOVE, NULL, REMS_EMALFORMED,
               "t: required");
    decode_fails(f, empty_map, sizeof empty_map, REMS_EMALFORMED,
                 "t: required");
    decode_fails(f, int_key, sizeof int_key, REMS_EMALFORMED,
                 "frame: keys must be strings");
    decode_fails(f, trailing, sizeof trailing, REMS_EMALFORMED,
                 "frame: trailing bytes after the map");
    edit_fails(f, S_HEARTBEAT, "t", E_SET, UINTV(4), REMS_EMALFORMED,
               "t: must be a string");
    edit_fails(f, S_HEARTBEAT, "t", E_SET, BINV("heartbeat", 9),
               REMS_EMALFORMED, "t: must be a string");
    edit_fails(f, S_HEARTBEAT, "t", E_DUP, NULL, REMS_EMALFORMED,
               "t: appears twice");
    edit_fails(f, S_HEARTBEAT, "t", E_SET, STRV("Heartbeat"), REMS_EUNSUPPORTED,
               "t: unknown message type \"Heartbeat\"");

    /* A second "t", even naming an unknown type, is a duplicate. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "heartbeat", 9);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "bogus", 5);
    decode_fails(f, sb.data, sb.size, REMS_EMALFORMED, "t: appears twice");
    /* Bytes after a valid message. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "heartbeat", 9);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, 1);
    proto_msg_close(&f->msg);
    assert_int_equal(proto_msg_decode(sb.data, sb.size, &f->msg, f->errmsg), 0);
    msgpack_pack_nil(&pk);
    decode_fails(f, sb.data, sb.size, REMS_EMALFORMED,
                 "heartbeat: trailing bytes after the map");
    msgpack_sbuffer_destroy(&sb);
}

/* An unknown type is its own result, carrying the name, whatever the
 * rest of the map holds. */
static void unknown_type(void **state)
{
    struct fixture *f = *state;
    edit_fails(f, S_HELLO, "t", E_SET, STRV("lease_request"), REMS_EUNSUPPORTED,
               "t: unknown message type \"lease_request\"");
    assert_int_equal(f->msg.type, PROTO_TYPE_NONE);
    assert_true(mpread_streq(f->msg.type_name.p, f->msg.type_name.len,
                             "lease_request"));
    assert_int_equal(proto_error_code_for(REMS_EUNSUPPORTED, f->msg.type),
                     PROTO_ERR_UNKNOWN_TYPE);
    /* Unprintable names are escaped and cut in the message. */
    static const char odd[] = "x\n\"\x01yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy";

    edit_fails(f, S_HELLO, "t", E_SET, STRNV(odd, sizeof odd - 1),
               REMS_EUNSUPPORTED,
               "t: unknown message type \"x\\x0a\\x22\\x01yyyyyyyyyyyyyyyyyyyy"
               "\"...");
    edit_fails(f, S_HELLO, "t", E_SET, STRV(""), REMS_EUNSUPPORTED,
               "t: unknown message type \"\"");
}

/* Every field of every message, given a value of the wrong type, is
 * refused with an error naming it. */
static void wrong_types(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int which;
        const char *sub; /* An array field whose first item is edited. */
    } cases[] = {
        {S_HELLO, NULL},     {S_HELLO, "services"},
        {S_WELCOME, NULL},   {S_REDIRECT, NULL},
        {S_HEARTBEAT, NULL}, {S_HEARTBEAT_ACK, NULL},
        {S_REPORT, NULL},    {S_REPORT, "items"},
        {S_COMMAND, NULL},   {S_COMMAND_MANIFEST, NULL},
        {S_ACK_MAP, NULL},   {S_ACK_TEXT, NULL},
        {S_NACK, NULL},      {S_ERROR, NULL},
    };
    struct key keys[16];
    struct proto_msg m;
    char path[64];
    char prefix[160];
    size_t c;
    size_t n;
    size_t i;
    int tested = 0;

    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        n = sample_keys(cases[c].which, cases[c].sub, keys, 16);
        make_full(cases[c].which, &m);
        for (i = 0; i < n; i++) {
            if (strcmp(keys[i].name, "t") == 0) {
                continue;
            }
            if (cases[c].sub != NULL) {
                snprintf(path, sizeof path, "%s/0/%s", cases[c].sub,
                         keys[i].name);
                snprintf(prefix, sizeof prefix,
                         "%s.%s[0].%s: ", proto_type_name(m.type), cases[c].sub,
                         keys[i].name);
            } else {
                snprintf(path, sizeof path, "%s", keys[i].name);
                snprintf(prefix, sizeof prefix,
                         "%s.%s: ", proto_type_name(m.type), keys[i].name);
            }
            edit_fails(f, cases[c].which, path, E_SET, wrong_type(keys[i].type),
                       REMS_EMALFORMED, prefix);
            tested++;
        }
    }
    /* Every field of the ten types and of service items. */
    assert_true(tested >= 50);
}

/* A field given twice is refused, at any depth. */
static void duplicate_fields(void **state)
{
    struct fixture *f = *state;
    struct key keys[16];
    struct proto_msg m;
    char prefix[160];
    size_t n;
    size_t i;
    int which;

    for (which = 0; which < S_NR; which++) {
        n = sample_keys(which, NULL, keys, 16);
        make_full(which, &m);
        for (i = 0; i < n; i++) {
            if (strcmp(keys[i].name, "t") == 0) {
                continue;
            }
            snprintf(prefix, sizeof prefix, "%s.%s: appears twice",
                     proto_type_name(m.type), keys[i].name);
            edit_fails(f, which, keys[i].name, E_DUP, NULL, REMS_EMALFORMED,
                       prefix);
        }
    }
    edit_fails(f, S_REPORT, "items/2/generation", E_DUP, NULL, REMS_EMALFORMED,
               "report.items[2].generation: appears twice");
    /* Duplicate keys inside string maps, and duplicate services in the
     * full state list of hello. */
    edit_fails(f, S_HELLO, "labels/role", E_DUP, NULL, REMS_EMALFORMED,
               "hello.labels: key \"role\" appears twice");
    edit_fails(f, S_COMMAND, "args/signal", E_DUP, NULL, REMS_EMALFORMED,
               "command.args: key \"signal\" appears twice");
    edit_fails(f, S_HELLO, "services/2/service", E_SET, STRV("web"),
               REMS_EMALFORMED,
               "hello.services[2].service: \"web\" is already listed at "
               "index 0");
}

/* Removing a required field is refused naming it; removing an optional
 * one is not. */
static void required_fields(void **state)
{
    struct fixture *f = *state;
    static const char *const optional[] = {
        "hello.labels", "hello.services", "command.args",
        "ack.result",   "item.exit_code", "item.message",
    };
    struct key keys[16];
    struct proto_msg m;
    char name[64];
    char prefix[160];
    size_t n;
    size_t i;
    size_t j;
    int which;
    bool opt;

    for (which = 0; which < S_NR; which++) {
        n = sample_keys(which, NULL, keys, 16);
        make_full(which, &m);
        for (i = 0; i < n; i++) {
            if (strcmp(keys[i].name, "t") == 0) {
                continue;
            }
            snprintf(name, sizeof name, "%s.%s", proto_type_name(m.type),
                     keys[i].name);
            opt = false;
            for (j = 0; j < sizeof optional / sizeof optional[0]; j++) {
                opt = opt || strcmp(name, optional[j]) == 0;
            }
            if (opt) {
                edit_decodes(f, which, keys[i].name, E_REMOVE, NULL);
                continue;
            }
            if (strcmp(name, "command.service") == 0 &&
                m.command.action == PROTO_ACTION_PUSH_MANIFEST) {
                edit_decodes(f, which, keys[i].name, E_REMOVE, NULL);
                continue;
            }
            if (strcmp(name, "command.service") == 0) {
                snprintf(prefix, sizeof prefix, "%s: required for action %s",
                         name, proto_action_name(m.command.action));
            } else if (strcmp(name, "command.manifest") == 0) {
                snprintf(prefix, sizeof prefix,
                         "%s: required for action push_manifest", name);
            } else {
                snprintf(prefix, sizeof prefix, "%s: required", name);
            }
            edit_fails(f, which, keys[i].name, E_REMOVE, NULL, REMS_EMALFORMED,
                       prefix);
        }
    }
    n = sample_keys(S_REPORT, "items", keys, 16);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "item.%s", keys[i].name);
        snprintf(prefix, sizeof prefix, "items/0/%s", keys[i].name);
        if (strcmp(name, "item.message") == 0) {
            edit_decodes(f, S_REPORT, prefix, E_REMOVE, NULL);
            continue;
        }
        snprintf(name, sizeof name, "report.items[0].%s: required",
                 keys[i].name);
        edit_fails(f, S_REPORT, prefix, E_REMOVE, NULL, REMS_EMALFORMED, name);
    }
    /* The second sample item carries exit_code; it is optional too. */
    edit_decodes(f, S_REPORT, "items/1/exit_code", E_REMOVE, NULL);
    /* A service action needs a service; diagnostics does not. */
    edit_decodes(f, S_COMMAND, "action", E_SET, STRV("diagnostics"));
    assert_int_equal(f->msg.command.action, PROTO_ACTION_DIAGNOSTICS);
}

/* Over-long strings and too many entries, decoded and encoded. */
static void over_limits(void **state)
{
    struct fixture *f = *state;
    static char big[PROTO_MANIFEST_MAX + 1];
    static struct proto_kv kv[PROTO_ARGS_MAX + 1];
    static struct proto_service items[PROTO_ITEMS_MAX + 1];
    char path[8 + PROTO_LABEL_KEY_MAX + 1];
    struct proto_msg m;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t i;

    memset(big, 'a', sizeof big);
    edit_fails(f, S_HELLO, "agent_id", E_SET, STRNV(big, PROTO_ID_MAX + 1),
               REMS_EMALFORMED, "hello.agent_id: 65 bytes, at most 64");
    edit_fails(f, S_HELLO, "agent_version", E_SET, STRNV(big, 65),
               REMS_EMALFORMED, "hello.agent_version: 65 bytes, at most 64");
    edit_fails(f, S_COMMAND, "id", E_SET, STRNV(big, 65), REMS_EMALFORMED,
               "command.id: 65 bytes, at most 64");
    edit_fails(f, S_COMMAND, "service", E_SET, STRNV(big, 129), REMS_EMALFORMED,
               "command.service: 129 bytes, at most 128");
    edit_fails(f, S_REPORT, "items/1/service", E_SET, STRNV(big, 129),
               REMS_EMALFORMED,
               "report.items[1].service: 129 bytes, at most 128");
    edit_fails(f, S_REPORT, "items/0/message", E_SET, STRNV(big, 1025),
               REMS_EMALFORMED,
               "report.items[0].message: 1025 bytes, at most 1024");
    edit_fails(f, S_NACK, "message", E_SET, STRNV(big, 1025), REMS_EMALFORMED,
               "nack.message: 1025 bytes, at most 1024");
    edit_fails(f, S_ERROR, "message", E_SET, STRNV(big, 1025), REMS_EMALFORMED,
               "error.message: 1025 bytes, at most 1024");
    edit_fails(f, S_REDIRECT, "leader_address", E_SET, STRNV(big, 256),
               REMS_EMALFORMED, "redirect.leader_address: 256 bytes");
    edit_fails(f, S_COMMAND_MANIFEST, "manifest", E_SET,
               BINV(big, PROTO_MANIFEST_MAX + 1), REMS_EMALFORMED,
               "command.manifest: 524289 bytes, at most 524288");
    edit_fails(f, S_ACK_TEXT, "result", E_SET,
               STRNV(big, PROTO_RESULT_TEXT_MAX + 1), REMS_EMALFORMED,
               "ack.result: 65537 bytes, at most 65536");
    edit_fails(f, S_HELLO, "labels/zone", E_SET, STRNV(big, 129),
               REMS_EMALFORMED,
               "hello.labels: \"zone\": 129 bytes, at most 128 allowed");
    memcpy(path, "labels/", 7);
    memset(path + 7, 'k', PROTO_LABEL_KEY_MAX + 1);
    path[7 + PROTO_LABEL_KEY_MAX + 1] = '\0';
    edit_fails(f, S_HELLO, path, E_SET, STRV("v"), REMS_EMALFORMED,
               "hello.labels: entry 3: key of 129 bytes, at most 128");
    edit_fails(f, S_COMMAND, "args/signal", E_SET, STRNV(big, 1025),
               REMS_EMALFORMED, "command.args: \"signal\": 1025 bytes");
    edit_fails(f, S_ACK_MAP, "result/signal", E_SET, STRNV(big, 1025),
               REMS_EMALFORMED, "ack.result: \"signal\": 1025 bytes");
    edit_fails(f, S_COMMAND, "ttl_remaining_ms", E_SET,
               UINTV(PROTO_DURATION_MAX_MS + 1), REMS_EMALFORMED,
               "command.ttl_remaining_ms: 86400001 is above the maximum");
    edit_fails(f, S_WELCOME, "lease_ttl_ms", E_SET, UINTV(0), REMS_EMALFORMED,
               "welcome.lease_ttl_ms: must be at least 1");
    edit_fails(f, S_REPORT, "items/0/exit_code", E_SET,
               INTV((int64_t)INT32_MIN - 1), REMS_EMALFORMED,
               "report.items[0].exit_code: -2147483649 does not fit");
    edit_fails(f, S_REPORT, "items/0/exit_code", E_SET,
               UINTV((uint64_t)INT32_MAX + 1), REMS_EMALFORMED,
               "report.items[0].exit_code: 2147483648 does not fit");
    edit_fails(f, S_REPORT, "items/0/generation", E_SET, INTV(-1),
               REMS_EMALFORMED,
               "report.items[0].generation: must be an unsigned integer");

    /* Too many labels, args, result entries and items: refused before
     * anything is allocated for them. */
    for (i = 0; i <= PROTO_ARGS_MAX; i++) {
        char *key = malloc(8);
        assert_non_null(key);
        snprintf(key, 8, "k%zu", i);
        kv[i].key = (struct proto_str){key, strlen(key)};
        kv[i].value = PROTO_STR("v");
    }
    make_full(S_HELLO, &m);
    m.hello.labels = kv;
    m.hello.n_labels = PROTO_LABELS_MAX + 1;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "hello.labels: 65 entries, at most 64 allowed");
    make_full(S_COMMAND, &m);
    m.command.args = kv;
    m.command.n_args = PROTO_ARGS_MAX + 1;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "command.args: 65 entries, at most 64 allowed");
    for (i = 0; i <= PROTO_ITEMS_MAX; i++) {
        items[i] = services[0];
    }
    make_full(S_REPORT, &m);
    m.report.items = items;
    m.report.n_items = PROTO_ITEMS_MAX + 1;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "report.items: 1025 items, at most 1024 allowed");

    /* The same on the wire, written by hand. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "report", 6);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, PROTO_ITEMS_MAX + 1);
    for (i = 0; i <= PROTO_ITEMS_MAX; i++) {
        msgpack_pack_map(&pk, 0);
    }
    f->heap.allocations = 0;
    decode_fails(f, sb.data, sb.size, REMS_EMALFORMED,
                 "report.items: 1025 items, at most 1024 allowed");
    assert_int_equal(f->heap.allocations, 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "ack", 3);
    msgpack_pack_str_with_body(&pk, "result", 6);
    msgpack_pack_map(&pk, PROTO_ARGS_MAX + 1);
    for (i = 0; i <= PROTO_ARGS_MAX; i++) {
        msgpack_pack_str_with_body(&pk, kv[i].key.p, kv[i].key.len);
        msgpack_pack_str_with_body(&pk, "v", 1);
    }
    decode_fails(f, sb.data, sb.size, REMS_EMALFORMED,
                 "ack.result: 65 entries, at most 64 allowed");
    assert_int_equal(f->heap.allocations, 0);
    /* A count larger than the bytes that follow allocates nothing. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "report", 6);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, PROTO_ITEMS_MAX);
    decode_fails(f, sb.data, sb.size, REMS_EMALFORMED,
                 "report.items: truncated");
    assert_int_equal(f->heap.allocations, 0);
    msgpack_sbuffer_destroy(&sb);
    for (i = 0; i <= PROTO_ARGS_MAX; i++) {
        free((void *)kv[i].key.p);
    }
}

/* Encoding checks every rule the decoder checks, naming the field. */
static void encode_refuses(void **state)
{
    struct fixture *f = *state;
    static char big[PROTO_MESSAGE_MAX + 1];
    struct proto_service item = services[0];
    struct proto_kv kv[2] = {{PROTO_STR_INIT("a"), PROTO_STR_INIT("1")},
                             {PROTO_STR_INIT("a"), PROTO_STR_INIT("2")}};
    struct proto_msg m;

    memset(big, 'b', sizeof big);
    memset(&m, 0, sizeof m);
    encode_fails(f, &m, 0, REMS_EINVAL, "t: invalid message type 0");
    m.type = PROTO_TYPE_NR;
    encode_fails(f, &m, 0, REMS_EINVAL, "t: invalid message type");

    make_full(S_COMMAND, &m);
    m.command.id = (struct proto_str){big, 70};
    encode_fails(f, &m, 0, REMS_EINVAL, "command.id: 70 bytes, at most 64");
    make_full(S_COMMAND, &m);
    m.command.id = PROTO_STR("");
    encode_fails(f, &m, 0, REMS_EINVAL, "command.id: must not be empty");
    make_full(S_COMMAND, &m);
    m.command.id = PROTO_STR("a b");
    encode_fails(f, &m, 0, REMS_EINVAL, "command.id: byte 1: only letters");
    make_full(S_COMMAND, &m);
    m.command.term = 0;
    encode_fails(f, &m, 0, REMS_EINVAL, "command.term: must be at least 1");
    make_full(S_COMMAND, &m);
    m.command.action = PROTO_ACTION_NR;
    encode_fails(f, &m, 0, REMS_EINVAL, "command.action: invalid action");
    make_full(S_COMMAND, &m);
    m.command.manifest = PROTO_STR("{}");
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "command.manifest: only allowed with action push_manifest");
    make_full(S_COMMAND_MANIFEST, &m);
    m.command.manifest = PROTO_STR("");
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "command.manifest: required for action push_manifest");
    make_full(S_COMMAND, &m);
    m.command.service = PROTO_STR("");
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "command.service: required for action stop");
    make_full(S_COMMAND, &m);
    m.command.args = kv;
    encode_fails(f, &m, 0, REMS_EINVAL, "command.args: key \"a\" appears");
    make_full(S_COMMAND, &m);
    m.command.args = NULL;
    encode_fails(f, &m, 0, REMS_EINVAL, "command.args: NULL with 2 entries");
    make_full(S_REPORT, &m);
    item.state = 0;
    m.report.items = &item;
    m.report.n_items = 1;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "report.items[0].state: invalid state value 0");
    item = services[0];
    item.health = PROTO_HEALTH_NR;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "report.items[0].health: invalid health value");
    item = services[0];
    item.message = (struct proto_str){NULL, 3};
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "report.items[0].message: NULL with a length of 3");
    make_full(S_WELCOME, &m);
    m.welcome.heartbeat_interval_ms = m.welcome.lease_ttl_ms;
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "welcome.heartbeat_interval_ms: must be below lease_ttl_ms");
    make_full(S_WELCOME, &m);
    m.welcome.version = 2;
    encode_fails(f, &m, 0, REMS_EINVAL, "welcome.v: version 2 is not");
    make_full(S_ACK_MAP, &m);
    m.ack.result_kind = 7;
    encode_fails(f, &m, 0, REMS_EINVAL, "ack.result: invalid result kind 7");
    make_full(S_ERROR, &m);
    m.error.message = (struct proto_str){"a\0b", 3};
    encode_fails(f, &m, 0, REMS_EINVAL,
                 "error.message: must be UTF-8 text without NUL");
    make_full(S_NACK, &m);
    m.nack.reason = 0;
    encode_fails(f, &m, 0, REMS_EINVAL, "nack.reason: invalid reason value 0");
}

/* Identifiers, UTF-8 text and addresses are checked byte by byte. */
static void bad_strings(void **state)
{
    struct fixture *f = *state;
    static const char *const bad_ids[] = {"a b",  "a/b",  "é",
                                          "a\tb", "a\"b", "a@b"};
    static const char *const bad_text[] = {
        "\xc3",             /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xff",             /* never valid */
        "ok\x80",           /* lone continuation byte */
    };
    static const char *const bad_addrs[] = {
        "nohost",      ":7443",    "host:",    "host:0",    "host:65536",
        "host:123456", "host:12a", "::1:7443", "[::1:7443", "[]:7443",
        "ho st:1",     "h\x7f:1",  "a]:1"};
    static const char *const good_addrs[] = {"h:1", "[::1]:7443",
                                             "node-2.example.com:65535"};
    size_t i;

    for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        edit_fails(f, S_HELLO, "agent_id", E_SET, STRV(bad_ids[i]),
                   REMS_EMALFORMED, "hello.agent_id: byte ");
        edit_fails(f, S_COMMAND, "id", E_SET, STRV(bad_ids[i]), REMS_EMALFORMED,
                   "command.id: byte ");
        if (strchr(bad_ids[i], '@') != NULL) {
            /* Allowed in service names (template instances). */
            edit_decodes(f, S_REPORT, "items/0/service", E_SET,
                         STRV(bad_ids[i]));
            continue;
        }
        edit_fails(f, S_REPORT, "items/0/service", E_SET, STRV(bad_ids[i]),
                   REMS_EMALFORMED, "report.items[0].service: byte ");
        edit_fails(f, S_COMMAND, "service", E_SET, STRV(bad_ids[i]),
                   REMS_EMALFORMED, "command.service: byte ");
    }
    edit_fails(f, S_HELLO, "agent_id", E_SET, STRV("a@b"), REMS_EMALFORMED,
               "hello.agent_id: byte 1: only letters, digits and . _ - : "
               "are allowed");
    edit_fails(f, S_COMMAND, "service", E_SET, STRV("a b"), REMS_EMALFORMED,
               "command.service: byte 1: only letters, digits and . _ - : @ "
               "are allowed");
    edit_fails(f, S_HELLO, "agent_id", E_SET, STRV(""), REMS_EMALFORMED,
               "hello.agent_id: must not be empty");
    edit_fails(f, S_HELLO, "agent_version", E_SET, STRV(""), REMS_EMALFORMED,
               "hello.agent_version: must not be empty");
    for (i = 0; i < sizeof bad_text / sizeof bad_text[0]; i++) {
        edit_fails(f, S_NACK, "message", E_SET, STRV(bad_text[i]),
                   REMS_EMALFORMED,
                   "nack.message: must be UTF-8 text without NUL");
        edit_fails(f, S_HELLO, "labels/zone", E_SET, STRV(bad_text[i]),
                   REMS_EMALFORMED, "hello.labels: \"zone\": must be UTF-8");
    }
    edit_fails(f, S_NACK, "message", E_SET, STRNV("a\0b", 3), REMS_EMALFORMED,
               "nack.message: must be UTF-8 text without NUL");
    edit_fails(f, S_HELLO, "labels/\xff", E_SET, STRV("v"), REMS_EMALFORMED,
               "hello.labels: entry 3: the key must be UTF-8");
    edit_fails(f, S_HELLO, "labels/", E_SET, STRV("v"), REMS_EMALFORMED,
               "hello.labels: entry 3: the key must not be empty");
    edit_decodes(f, S_NACK, "message", E_SET,
                 STRV("\xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9 \xef\xbf\xbf"));
    for (i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        edit_fails(f, S_REDIRECT, "leader_address", E_SET, STRV(bad_addrs[i]),
                   REMS_EMALFORMED,
                   "redirect.leader_address: must be \"host:port\" or empty");
    }
    for (i = 0; i < sizeof good_addrs / sizeof good_addrs[0]; i++) {
        edit_decodes(f, S_REDIRECT, "leader_address", E_SET,
                     STRV(good_addrs[i]));
    }
    edit_fails(f, S_COMMAND, "args/signal", E_SET, UINTV(15), REMS_EMALFORMED,
               "command.args: entry 0: the value must be a string");
}

/* Unknown values of closed enums are refused, naming the value. */
static void bad_enums(void **state)
{
    struct fixture *f = *state;

    edit_fails(f, S_REPORT, "items/0/state", E_SET, STRV("runing"),
               REMS_EMALFORMED,
               "report.items[0].state: unknown state \"runing\"");
    edit_fails(f, S_HELLO, "services/1/health", E_SET, STRV("HEALTHY"),
               REMS_EMALFORMED,
               "hello.services[1].health: unknown health \"HEALTHY\"");
    edit_fails(f, S_NACK, "reason", E_SET, STRV("nope"), REMS_EMALFORMED,
               "nack.reason: unknown reason \"nope\"");
    edit_fails(f, S_ERROR, "code", E_SET, STRV("teapot"), REMS_EMALFORMED,
               "error.code: unknown code \"teapot\"");
    edit_fails(f, S_ERROR, "code", E_SET, UINTV(1), REMS_EMALFORMED,
               "error.code: must be a string");
    edit_fails(f, S_REPORT, "items/0/ready", E_SET, UINTV(1), REMS_EMALFORMED,
               "report.items[0].ready: must be a boolean");
    edit_fails(f, S_ACK_MAP, "result", E_SET, ARRAY0V, REMS_EMALFORMED,
               "ack.result: must be a string or a map of strings");
    edit_fails(f, S_HELLO, "labels", E_SET, ARRAY0V, REMS_EMALFORMED,
               "hello.labels: must be a map of strings");
    edit_fails(f, S_HELLO, "services", E_SET, MAP0V, REMS_EMALFORMED,
               "hello.services: must be an array");
    edit_fails(f, S_REPORT, "items/0", E_SET, UINTV(1), REMS_EMALFORMED,
               "report.items[0]: must be a map");
}

/* Every proper prefix of every valid payload is refused; none crashes. */
static void truncated_prefixes(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    struct rems_buf b;
    size_t off;
    size_t len;
    size_t cut;
    char *copy;
    int which;

    for (which = 0; which < S_NR; which++) {
        make_full(which, &m);
        rems_buf_init(&b);
        off = encode_ok(&m, &b);
        len = b.len - off;
        for (cut = 0; cut < len; cut++) {
            /* An exact-size copy, so that ASan sees any over-read. */
            copy = malloc(cut + 1);
            assert_non_null(copy);
            memcpy(copy, b.data + off, cut);
            decode_fails(f, cut > 0 ? copy : NULL, cut, REMS_EMALFORMED, NULL);
            free(copy);
        }
        rems_buf_close(&b);
    }
}

static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64*: deterministic from the printed seed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static void rng_seed(const char *test)
{
    const char *env = getenv("PROTO_TEST_SEED");
    rng_state = env != NULL ? strtoull(env, NULL, 0) : 0x5eed0001ull;
    if (rng_state == 0) {
        rng_state = 1;
    }
    print_message("%s: seed %" PRIu64 " (PROTO_TEST_SEED)\n", test, rng_state);
}

/* Random bytes, and valid payloads with random bytes changed: decoding
 * either succeeds or fails cleanly, never crashes or leaks. */
static void garbage(void **state)
{
    struct fixture *f = *state;
    static const unsigned char specials[][8] = {
        {0xc1},                         /* never used */
        {0x81, 0xa1, 't', 0xd4, 0, 0},  /* ext value */
        {0x81, 0xa1, 't', 0xcb, 0},     /* truncated float */
        {0x8f},                         /* map of 15, nothing after */
        {0xdf, 0xff, 0xff, 0xff, 0xff}, /* map of 4 G entries */
        {0xdb, 0xff, 0xff, 0xff, 0xff}, /* str of 4 GiB */
    };
    struct proto_msg m;
    struct rems_buf b;
    unsigned char *buf;
    size_t off;
    size_t len;
    size_t i;
    int round;
    int which;
    int ok = 0;
    int rv;

    rng_seed("garbage");
    for (i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        decode_fails(f, specials[i], sizeof specials[i], REMS_EMALFORMED, NULL);
    }
    /* 40 levels of nested arrays in an unknown field. */
    buf = malloc(64);
    assert_non_null(buf);
    memcpy(buf, "\x82\xa1t\xa9heartbeat\xa1x", 15);
    memset(buf + 15, 0x91, 40);
    buf[55] = 0xc0;
    decode_fails(f, buf, 56, REMS_EMALFORMED, "heartbeat: value of \"x\"");
    free(buf);

    for (round = 0; round < 20000; round++) {
        len = rng() % 64;
        buf = malloc(len + 1);
        assert_non_null(buf);
        for (i = 0; i < len; i++) {
            buf[i] = (unsigned char)rng();
        }
        if (len > 0 && rng() % 2) {
            buf[0] = (unsigned char)(0x80 | (rng() % 16)); /* a fixmap */
        }
        rv = proto_msg_decode(len ? buf : NULL, len, &f->msg, f->errmsg);
        assert_true(rv == 0 || rv == REMS_EMALFORMED ||
                    rv == REMS_EUNSUPPORTED);
        proto_msg_close(&f->msg);
        free(buf);
    }
    for (round = 0; round < 20000; round++) {
        which = (int)(rng() % S_NR);
        make_full(which, &m);
        rems_buf_init(&b);
        off = encode_ok(&m, &b);
        len = b.len - off;
        buf = malloc(len);
        assert_non_null(buf);
        memcpy(buf, b.data + off, len);
        rems_buf_close(&b);
        for (i = 0; i < 1 + rng() % 4; i++) {
            buf[rng() % len] = (unsigned char)rng();
        }
        rv = proto_msg_decode(buf, len, &f->msg, f->errmsg);
        assert_true(rv == 0 || rv == REMS_EMALFORMED ||
                    rv == REMS_EUNSUPPORTED);
        ok += rv == 0;
        proto_msg_close(&f->msg);
        free(buf);
    }
    /* Some mutations leave a valid message (a changed number, say). */
    assert_true(ok > 0);
}

/* ------------------------------------------------------------------------
 * Encoding into a buffer
 * --------------------------------------------------------------------- */

/* Frames append; a payload of exactly max_frame bytes is allowed, one
 * more is not, and a refused frame leaves the buffer as it was. */
static void encode_append_and_max(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    size_t size;

    make_full(S_HEARTBEAT, &m);
    encode_ok(&m, &f->buf);
    size = f->buf.len - PROTO_HEADER_SIZE;
    encode_ok(&m, &f->buf);
    assert_int_equal(f->buf.len, 2 * (size + 4));
    assert_memory_equal(f->buf.data, f->buf.data + size + 4, size + 4);

    assert_int_equal(proto_msg_encode(&m, size, &f->buf, f->errmsg), 0);
    assert_int_equal(f->buf.len, 3 * (size + 4));
    encode_fails(f, &m, size - 1, REMS_ETOOBIG, "heartbeat: ");
}

/* Fail each allocation of an encoding in turn: REMS_ENOMEM, the buffer
 * as it was, no leak; until the encoding succeeds. */
static void encode_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    struct rems_buf b;
    int failures = 0;
    long n;
    int rv;
    int which;

    for (which = 0; which < S_NR; which++) {
        make_full(which, &m);
        for (n = 0;; n++) {
            rems_buf_init(&b);
            test_heap_fail_after(&f->heap, n);
            rv = proto_msg_encode(&m, 0, &b, f->errmsg);
            test_heap_fail_after(&f->heap, -1);
            if (rv == 0) {
                rems_buf_close(&b);
                break;
            }
            assert_int_equal(rv, REMS_ENOMEM);
            assert_string_equal(f->errmsg, "out of memory");
            assert_int_equal(b.len, 0);
            assert_false(b.failed);
            failures++;
            rems_buf_close(&b);
            assert_int_equal(f->heap.live, 0);
        }
    }
    assert_true(failures >= S_NR);

    /* A failed growth of a buffer that holds frames keeps them, and the
     * buffer can be used again. */
    make_full(S_HELLO, &m);
    rems_buf_init(&b);
    encode_ok(&m, &b);
    {
        size_t len = b.len;
        char *copy = malloc(len + 1);
        assert_non_null(copy);
        memcpy(copy, b.data, len + 1);
        test_heap_fail_after(&f->heap, 0);
        rv = proto_msg_encode(&m, 0, &b, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(b.len, len);
        assert_false(b.failed);
        assert_memory_equal(b.data, copy, len + 1);
        encode_ok(&m, &b);
        assert_int_equal(b.len, 2 * len);
        assert_memory_equal(b.data + len, copy, len);
        free(copy);
    }
    /* A buffer that failed before is refused at once. */
    b.failed = true;
    assert_int_equal(proto_msg_encode(&m, 0, &b, f->errmsg), REMS_ENOMEM);
    rems_buf_close(&b);
}

/* Fail each allocation of a decoding in turn (hello: labels and services
 * arrays): REMS_ENOMEM and no leak. */
static void decode_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct proto_msg m;
    size_t off;
    long n;
    int rv;

    make_full(S_HELLO, &m);
    off = encode_ok(&m, &f->buf);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = proto_msg_decode(f->buf.data + off, f->buf.len - off, &f->msg,
                              f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(proto_error_code_for(rv, f->msg.type),
                         PROTO_ERR_INTERNAL);
        assert_int_equal(f->heap.live, 1); /* f->buf only */
    }
    assert_int_equal(n, 2);
    assert_msg(&m, &f->msg);
}

/* ------------------------------------------------------------------------
 * Frame reader
 * --------------------------------------------------------------------- */

/* A stream of frames of payload sizes @sizes (filled with a pattern that
 * depends on the frame's index), in @b. */
static void make_stream(struct rems_buf *b, const size_t *sizes, size_t n)
{
    size_t i;
    size_t j;
    unsigned char hdr[4];

    rems_buf_init(b);
    for (i = 0; i < n; i++) {
        hdr[0] = (unsigned char)(sizes[i] >> 24);
        hdr[1] = (unsigned char)(sizes[i] >> 16);
        hdr[2] = (unsigned char)(sizes[i] >> 8);
        hdr[3] = (unsigned char)sizes[i];
        assert_int_equal(rems_buf_append(b, hdr, 4), 0);
        for (j = 0; j < sizes[i]; j++) {
            unsigned char c = (unsigned char)(i * 31 + j);
            assert_int_equal(rems_buf_append(b, &c, 1), 0);
        }
    }
}

static void check_frame(const void *frame, size_t len, size_t i, size_t want)
{
    const unsigned char *p = frame;
    size_t j;
    assert_non_null(frame);
    assert_int_equal(len, want);
    for (j = 0; j < len; j++) {
        if (p[j] != (unsigned char)(i * 31 + j)) {
            print_error("frame %zu byte %zu\n", i, j);
            fail();
        }
    }
}

struct got {
    const void *frame;
    size_t len;
};

/* Feed @stream in chunks of sizes @steps[0], @steps[1], ... (cycled; when
 * @nsteps is 0, random sizes), check every frame, and check that all frames
 * of a feed are still intact once the feed is drained. */
static void feed_stream(struct fixture *f,
                        struct proto_reader *r,
                        const struct rems_buf *stream,
                        const size_t *sizes,
                        size_t n,
                        const size_t *steps,
                        size_t nsteps)
{
    size_t k = 0;
    struct got got[64];
    size_t ngot;
    size_t done = 0;
    size_t off = 0;
    size_t chunk;
    size_t i;
    char *copy;
    int rv;

    while (off < stream->len) {
        chunk = nsteps != 0 ? steps[k++ % nsteps] : 1 + rng() % 300;
        if (chunk > stream->len - off) {
            chunk = stream->len - off;
        }
        /* An exact-size copy, freed after the feed is drained. */
        copy = malloc(chunk);
        assert_non_null(copy);
        memcpy(copy, stream->data + off, chunk);
        proto_reader_feed(r, copy, chunk);
        ngot = 0;
        for (;;) {
            const void *frame;
            size_t len;
            rv = proto_reader_next(r, &frame, &len, f->errmsg);
            assert_int_equal(rv, 0);
            if (frame == NULL) {
                assert_int_equal(len, 0);
                break;
            }
            assert_true(ngot < 64);
            got[ngot].frame = frame;
            got[ngot].len = len;
            ngot++;
        }
        for (i = 0; i < ngot; i++) {
            assert_true(done < n);
            check_frame(got[i].frame, got[i].len, done, sizes[done]);
            done++;
        }
        free(copy);
        off += chunk;
    }
    assert_int_equal(done, n);
    assert_int_equal(proto_reader_pending(r), 0);
}

/* A frame split byte by byte, and frames of every small size. */
static void reader_byte_by_byte(void **state)
{
    struct fixture *f = *state;
    size_t sizes[40];
    struct rems_buf s;
    size_t i;

    for (i = 0; i < 40; i++) {
        sizes[i] = 1 + i * 7;
    }
    make_stream(&s, sizes, 40);
    feed_stream(f, &f->reader, &s, sizes, 40, (size_t[]){1}, 1);
    rems_buf_close(&s);

    /* pending() counts the bytes of an unfinished frame. */
    sizes[0] = 10;
    make_stream(&s, sizes, 1);
    for (i = 0; i < 13; i++) {
        const void *frame;
        size_t len;
        proto_reader_feed(&f->reader, s.data + i, 1);
        assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg),
                         0);
        assert_null(frame);
        assert_int_equal(proto_reader_pending(&f->reader), i + 1);
    }
    rems_buf_close(&s);
}

/* Many frames in one chunk come out in place, without a copy or an
 * allocation. */
static void reader_many_in_one_chunk(void **state)
{
    struct fixture *f = *state;
    size_t sizes[100];
    struct rems_buf s;
    const void *frame;
    size_t len;
    size_t off = 0;
    size_t i;

    for (i = 0; i < 100; i++) {
        sizes[i] = 1 + (i * 13) % 200;
    }
    make_stream(&s, sizes, 100);
    f->heap.allocations = 0;
    proto_reader_feed(&f->reader, s.data, s.len);
    for (i = 0; i < 100; i++) {
        assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg),
                         0);
        check_frame(frame, len, i, sizes[i]);
        assert_ptr_equal(frame, s.data + off + 4);
        off += 4 + sizes[i];
    }
    assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg), 0);
    assert_null(frame);
    assert_int_equal(f->heap.allocations, 0);
    rems_buf_close(&s);
}

/* Random chunkings; frames of one feed stay valid until the next feed,
 * including one completed from the buffer while the tail of the same chunk
 * starts another split frame. */
static void reader_random_chunks(void **state)
{
    struct fixture *f = *state;
    size_t sizes[300];
    struct rems_buf s;
    size_t i;
    int round;

    rng_seed("reader_random_chunks");
    for (round = 0; round < 20; round++) {
        for (i = 0; i < 300; i++) {
            sizes[i] = 1 + rng() % (round % 2 ? 100 : 700);
        }
        make_stream(&s, sizes, 300);
        feed_stream(f, &f->reader, &s, sizes, 300, NULL, 0);
        rems_buf_close(&s);
    }
    /* The second chunk holds the end of a split frame, a whole frame and
     * the header and 2 bytes of another split frame. */
    sizes[0] = 6;
    sizes[1] = 2;
    sizes[2] = 10;
    make_stream(&s, sizes, 3);
    feed_stream(f, &f->reader, &s, sizes, 3, (size_t[]){9, 13, 8}, 3);
    rems_buf_close(&s);
}

/* A header announcing more than the maximum is refused as soon as its 4
 * bytes are in, allocating nothing; the error sticks. */
static void reader_too_big(void **state)
{
    struct fixture *f = *state;
    static const unsigned char big[] = {0x00, 0x00, 0x04, 0x01, 'x', 'y'};
    static const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff};
    struct proto_reader r;
    const void *frame = NULL;
    size_t len = 7;
    size_t i;

    /* Whole header in one chunk, with payload bytes after it. */
    proto_reader_init(&r, 1024);
    f->heap.allocations = 0;
    proto_reader_feed(&r, big, sizeof big);
    assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg),
                     REMS_ETOOBIG);
    assert_string_equal(f->errmsg,
                        "frame: 1025 bytes announced, at most 1024 allowed");
    assert_int_equal(f->heap.allocations, 0);
    assert_int_equal(proto_error_code_for(REMS_ETOOBIG, PROTO_TYPE_NONE),
                     PROTO_ERR_TOO_BIG);
    /* Sticky, even after another feed. */
    memset(f->errmsg, 0, sizeof f->errmsg);
    proto_reader_feed(&r, huge, sizeof huge);
    assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg),
                     REMS_ETOOBIG);
    assert_string_equal(f->errmsg,
                        "frame: 1025 bytes announced, at most 1024 allowed");
    proto_reader_close(&r);

    /* Header split byte by byte. */
    proto_reader_init(&r, 1024);
    for (i = 0; i < 3; i++) {
        proto_reader_feed(&r, huge + i, 1);
        assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg), 0);
        assert_null(frame);
    }
    proto_reader_feed(&r, huge + 3, 1);
    assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg),
                     REMS_ETOOBIG);
    assert_string_equal(
        f->errmsg, "frame: 4294967295 bytes announced, at most 1024 allowed");
    assert_int_equal(f->heap.allocations, 0);
    proto_reader_close(&r);

    /* The default maximum is 1 MiB. */
    proto_reader_init(&r, 0);
    {
        const unsigned char over[] = {0x00, 0x10, 0x00, 0x01};
        proto_reader_feed(&r, over, 4);
        assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg),
                         REMS_ETOOBIG);
    }
    assert_int_equal(f->heap.allocations, 0);
    proto_reader_close(&r);
}

/* A header announcing 0 bytes is refused. */
static void reader_zero_length(void **state)
{
    struct fixture *f = *state;
    static const unsigned char zero[] = {0x00, 0x00, 0x00, 0x00, 0x80};
    const void *frame;
    size_t len;

    proto_reader_feed(&f->reader, zero, sizeof zero);
    assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "frame: a length of 0 is not allowed");
    assert_int_equal(proto_error_code_for(REMS_EMALFORMED, PROTO_TYPE_NONE),
                     PROTO_ERR_MALFORMED);
    proto_reader_close(&f->reader);
    proto_reader_init(&f->reader, 0);
    proto_reader_feed(&f->reader, zero, 2);
    assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg), 0);
    proto_reader_feed(&f->reader, zero + 2, 2);
    assert_int_equal(proto_reader_next(&f->reader, &frame, &len, f->errmsg),
                     REMS_EMALFORMED);
}

/* A frame of exactly the maximum is accepted, whole or split; the default
 * maximum is 1 MiB. Its buffer is released after use. */
static void reader_exact_max(void **state)
{
    struct fixture *f = *state;
    struct proto_reader r;
    size_t sizes[2];
    struct rems_buf s;

    proto_reader_init(&r, 1000);
    sizes[0] = 1000;
    sizes[1] = 1000;
    make_stream(&s, sizes, 2);
    feed_stream(f, &r, &s, sizes, 2, (size_t[]){s.len}, 1);
    feed_stream(f, &r, &s, sizes, 2, (size_t[]){1}, 1);
    feed_stream(f, &r, &s, sizes, 2, (size_t[]){999}, 1);
    rems_buf_close(&s);
    proto_reader_close(&r);

    sizes[0] = MB;
    sizes[1] = 1;
    make_stream(&s, sizes, 2);
    feed_stream(f, &f->reader, &s, sizes, 2, (size_t[]){65536}, 1);
    /* The next feed releases the 1 MiB buffer. */
    assert_int_equal(f->heap.live, 2); /* s and the reader's buffer */
    proto_reader_feed(&f->reader, NULL, 0);
    assert_int_equal(f->heap.live, 1);
    rems_buf_close(&s);
}

/* Fail each allocation of the reader in turn: REMS_ENOMEM, sticky, no
 * leak; until the stream goes through. */
static void reader_out_of_memory(void **state)
{
    struct fixture *f = *state;
    size_t sizes[12];
    struct rems_buf s;
    struct proto_reader r;
    const void *frame;
    size_t len;
    size_t off;
    size_t step = 50;
    size_t got;
    long n;
    int rv;
    size_t i;

    for (i = 0; i < 12; i++) {
        sizes[i] = 20 + i * 30;
    }
    make_stream(&s, sizes, 12);
    for (n = 0;; n++) {
        proto_reader_init(&r, 0);
        test_heap_fail_after(&f->heap, n);
        rv = 0;
        got = 0;
        for (off = 0; off < s.len && rv == 0; off += step) {
            proto_reader_feed(&r, s.data + off,
                              step < s.len - off ? step : s.len - off);
            while ((rv = proto_reader_next(&r, &frame, &len, f->errmsg)) == 0 &&
                   frame != NULL) {
                check_frame(frame, len, got, sizes[got]);
                got++;
            }
        }
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            assert_int_equal(got, 12);
            proto_reader_close(&r);
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(proto_reader_next(&r, &frame, &len, f->errmsg),
                         REMS_ENOMEM);
        proto_reader_close(&r);
        assert_int_equal(f->heap.live, 1); /* s */
    }
    assert_true(n >= 2);
    rems_buf_close(&s);
}

/* Encoder and reader together: a mixed stream of every sample message,
 * delivered in random chunks, decodes to the same messages. */
static void reader_decode_stream(void **state)
{
    struct fixture *f = *state;
    struct proto_msg want;
    struct proto_msg got;
    struct rems_buf s;
    const void *frame;
    size_t len;
    size_t off = 0;
    size_t chunk;
    int next = 0;
    int which;
    int rv;

    rng_seed("reader_decode_stream");
    rems_buf_init(&s);
    for (which = 0; which < 3 * S_NR; which++) {
        make_full(which % S_NR, &want);
        encode_ok(&want, &s);
    }
    while (off < s.len) {
        chunk = 1 + rng() % 97;
        chunk = chunk < s.len - off ? chunk : s.len - off;
        proto_reader_feed(&f->reader, s.data + off, chunk);
        while ((rv = proto_reader_next(&f->reader, &frame, &len, f->errmsg)) ==
                   0 &&
               frame != NULL) {
            assert_int_equal(proto_msg_decode(frame, len, &got, f->errmsg), 0);
            make_full(next % S_NR, &want);
            assert_msg(&want, &got);
            proto_msg_close(&got);
            next++;
        }
        assert_int_equal(rv, 0);
        off += chunk;
    }
    assert_int_equal(next, 3 * S_NR);
    rems_buf_close(&s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(round_trip_full),
        T(round_trip_minimal),
        T(round_trip_empty_services),
        T(round_trip_enums),
        T(enum_names),
        T(limits_inclusive),
        T(report_items_max),
        T(version_negotiation),
        T(unknown_fields_skipped),
        T(unknown_action),
        T(not_a_map),
        T(type_field),
        T(unknown_type),
        T(wrong_types),
        T(duplicate_fields),
        T(required_fields),
        T(over_limits),
        T(encode_refuses),
        T(bad_strings),
        T(bad_enums),
        T(truncated_prefixes),
        T(garbage),
        T(encode_append_and_max),
        T(encode_out_of_memory),
        T(decode_out_of_memory),
        T(reader_byte_by_byte),
        T(reader_many_in_one_chunk),
        T(reader_random_chunks),
        T(reader_too_big),
        T(reader_zero_length),
        T(reader_exact_max),
        T(reader_out_of_memory),
        T(reader_decode_stream),
    };
#undef T
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
