/* Unit tests of the agent, lease and command part of statemachine/: the six
 * entry types (encoding and strict decoding), their deterministic apply,
 * the queries, audit records, request-id dedup, snapshots and out-of-memory
 * sweeps.
 *
 * Each test gets a store in a fresh temporary directory and the counting
 * test heap; teardown closes the stores first and asserts last that no
 * allocation is left. Malformed bodies are built by hand with msgpack-c's
 * packer (struct field below), so each decoding rule is broken on its
 * own. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/heap.h"
#include "statemachine/statemachine.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#define T0 1700000000123u /* time_ms of every entry built here. */

#define PENDING STATEMACHINE_COMMAND_PENDING
#define ACKED STATEMACHINE_COMMAND_ACKED
#define NACKED STATEMACHINE_COMMAND_NACKED
#define EXPIRED STATEMACHINE_COMMAND_EXPIRED
#define CANCELLED STATEMACHINE_COMMAND_CANCELLED

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char other[TEST_TMPDIR_SIZE + 16];
    struct test_heap heap;
    struct storage *s;
    struct storage *s2; /* Opened by open_other(). */
    char errmsg[REMS_ERRMSG_SIZE];
};

static void dumps_free(void);

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    snprintf(f->other, sizeof f->other, "%s/other", f->dir);
    test_heap_install(&f->heap);
    assert_int_equal(storage_open(f->dir, NULL, &f->s, f->errmsg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    storage_close(f->s);
    storage_close(f->s2);
    dumps_free();
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    test_tmpdir_remove(f->dir);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

static void open_other(struct fixture *f)
{
    assert_int_equal(mkdir(f->other, 0700), 0);
    assert_int_equal(storage_open(f->other, NULL, &f->s2, f->errmsg), 0);
}

#define assert_errmsg_has(f, sub)                                              \
    do {                                                                       \
        if (strstr((f)->errmsg, (sub)) == NULL) {                              \
            fail_msg("errmsg \"%s\" lacks \"%s\"", (f)->errmsg, (sub));        \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------ */
/* Entries.                                                             */

static void set_str(const char **s, size_t *len, const char *v)
{
    *s = v;
    *len = v != NULL ? strlen(v) : 0;
}

static struct statemachine_entry entry_base(int type, const char *agent)
{
    struct statemachine_entry e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.time_ms = T0;
    set_str(&e.trace_id, &e.trace_id_len, "trace-1");
    set_str(&e.requested_by, &e.requested_by_len, "alice");
    set_str(&e.reason, &e.reason_len, "because");
    set_str(&e.agent_id, &e.agent_id_len, agent);
    return e;
}

static struct statemachine_entry
reg_e(const char *agent, const char *labels, uint64_t node, const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_AGENT_REGISTER, agent);
    set_str(&e.value, &e.value_len, labels);
    e.node_id = node;
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry
report_e(const char *agent, const char *services, const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_AGENT_REPORT, agent);
    set_str(&e.value, &e.value_len, services);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry
grant_e(const char *agent, uint64_t ttl, uint64_t node, const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_LEASE_GRANT, agent);
    e.ttl_ms = ttl;
    e.node_id = node;
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry
revoke_e(const char *agent, const char *outcome, const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_LEASE_REVOKE, agent);
    set_str(&e.outcome, &e.outcome_len, outcome);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry issue_e(const char *cmd,
                                         const char *agent,
                                         const char *action,
                                         const char *service,
                                         const char *args,
                                         uint64_t ttl,
                                         const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_COMMAND_ISSUE, agent);
    set_str(&e.command_id, &e.command_id_len, cmd);
    set_str(&e.action, &e.action_len, action);
    set_str(&e.service, &e.service_len, service);
    set_str(&e.value, &e.value_len, args);
    e.ttl_ms = ttl;
    e.term = 3;
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

/* A command "restart" of service "web" with ttl 30 s. */
static struct statemachine_entry
issue_simple(const char *cmd, const char *agent, const char *req)
{
    return issue_e(cmd, agent, "restart", "web", "{\"grace\":5}", 30000, req);
}

static struct statemachine_entry resolve_e(const char *cmd,
                                           const char *agent,
                                           const char *outcome,
                                           const char *result,
                                           const char *req)
{
    struct statemachine_entry e =
        entry_base(STATEMACHINE_ENTRY_COMMAND_RESOLVE, agent);
    set_str(&e.command_id, &e.command_id_len, cmd);
    set_str(&e.outcome, &e.outcome_len, outcome);
    set_str(&e.value, &e.value_len, result);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static void encode(struct fixture *f,
                   const struct statemachine_entry *e,
                   void **buf,
                   size_t *len)
{
    int rv = statemachine_entry_encode(e, rems_malloc, buf, len, f->errmsg);
    if (rv != 0) {
        fail_msg("encode: %s (%s)", rems_errname(rv), f->errmsg);
    }
}

/* Apply @e at @index to @s; the call itself must succeed. */
static struct statemachine_result apply_to(struct fixture *f,
                                           struct storage *s,
                                           uint64_t index,
                                           const struct statemachine_entry *e)
{
    struct statemachine_result res;
    void *buf;
    size_t len;
    int rv;
    encode(f, e, &buf, &len);
    rv = statemachine_apply(s, index, buf, len, &res, f->errmsg);
    rems_free(buf);
    if (rv != 0) {
        fail_msg("apply at %llu: %s (%s)", (unsigned long long)index,
                 rems_errname(rv), f->errmsg);
    }
    return res;
}

static struct statemachine_result
apply(struct fixture *f, uint64_t index, const struct statemachine_entry *e)
{
    return apply_to(f, f->s, index, e);
}

static void assert_field(const char *s, size_t len, const char *expect)
{
    assert_int_equal(len, strlen(expect));
    if (len > 0) {
        assert_memory_equal(s, expect, len);
    }
}

static void assert_entries_equal(const struct statemachine_entry *a,
                                 const struct statemachine_entry *b)
{
    assert_int_equal(b->version, STATEMACHINE_ENVELOPE_VERSION);
    assert_int_equal(a->type, b->type);
    assert_true(a->time_ms == b->time_ms);
#define SAME(name)                                                             \
    do {                                                                       \
        assert_int_equal(a->name##_len, b->name##_len);                        \
        if (a->name##_len > 0) {                                               \
            assert_memory_equal(a->name, b->name, a->name##_len);              \
        }                                                                      \
    } while (0)
    SAME(trace_id);
    SAME(request_id);
    SAME(requested_by);
    SAME(reason);
    SAME(agent_id);
    SAME(command_id);
    SAME(action);
    SAME(service);
    SAME(outcome);
    SAME(value);
#undef SAME
    /* A present but empty value stays present. */
    assert_int_equal(a->value != NULL, b->value != NULL);
    assert_true(a->ttl_ms == b->ttl_ms);
    assert_true(a->term == b->term);
    assert_true(a->node_id == b->node_id);
    assert_null(b->key);
    assert_int_equal(b->has_if_revision, false);
    assert_true(b->member_id == 0);
}

static void roundtrip(struct fixture *f, const struct statemachine_entry *e)
{
    struct statemachine_entry d;
    void *buf;
    size_t len;
    encode(f, e, &buf, &len);
    assert_int_equal(len % 8, 0);
    if (statemachine_entry_decode(buf, len, &d, f->errmsg) != 0) {
        fail_msg("decode of type %d: %s", e->type, f->errmsg);
    }
    assert_entries_equal(e, &d);
    /* Strings borrow the buffer. */
    assert_true((const char *)d.agent_id > (const char *)buf &&
                (const char *)d.agent_id < (const char *)buf + len);
    rems_free(buf);
}

/* Each of the six types survives encode and decode with all its fields,
 * at their limits too. */
static void entry_roundtrip(void **state)
{
    struct fixture *f = *state;
    static char id[STATEMACHINE_ID_MAX + 1];
    static char name[STATEMACHINE_NAME_MAX + 1];
    static char blob[STATEMACHINE_BLOB_MAX];
    struct statemachine_entry e;

    memset(id, 'i', STATEMACHINE_ID_MAX);
    id[0] = 'A';
    id[1] = '_';
    id[2] = '.';
    id[3] = ':';
    id[4] = '-';
    id[5] = '9';
    memset(name, 'n', STATEMACHINE_NAME_MAX);
    memset(blob, '{', sizeof blob);

    e = reg_e("agent-1", "{\"zone\":\"a\"}", 2, "req-1");
    roundtrip(f, &e);
    e = reg_e("agent-1", "", 0, NULL); /* Empty labels are still present. */
    roundtrip(f, &e);
    e = report_e("agent-1", "{\"web\":\"running\"}", "req-2");
    roundtrip(f, &e);
    e = grant_e("agent-1", 15000, 3, "req-3");
    roundtrip(f, &e);
    e = grant_e("agent-1", 1, 0, NULL);
    roundtrip(f, &e);
    e = grant_e("agent-1", STATEMACHINE_TTL_MAX_MS, UINT64_MAX, NULL);
    roundtrip(f, &e);
    e = revoke_e("agent-1", "expired", "req-4");
    roundtrip(f, &e);
    e = revoke_e("agent-1", NULL, NULL);
    roundtrip(f, &e);
    e = issue_simple("cmd-1", "agent-1", "req-5");
    roundtrip(f, &e);
    e = issue_e("cmd-2", "agent-1", "reboot", NULL, NULL, 1, NULL);
    e.term = UINT64_MAX;
    roundtrip(f, &e);
    e = resolve_e("cmd-1", "agent-1", "acked", "{\"ok\":true}", "req-6");
    roundtrip(f, &e);
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, NULL);
    roundtrip(f, &e);
    e = resolve_e("cmd-1", "agent-1", "expired", "", NULL);
    roundtrip(f, &e);
    e = resolve_e("cmd-1", "agent-1", "cancelled", NULL, NULL);
    roundtrip(f, &e);

    /* Every field at its limit; a value of STATEMACHINE_BLOB_MAX bytes. */
    e = issue_e(NULL, NULL, NULL, NULL, NULL, STATEMACHINE_TTL_MAX_MS, NULL);
    e.agent_id = id;
    e.agent_id_len = STATEMACHINE_ID_MAX;
    e.command_id = id;
    e.command_id_len = STATEMACHINE_ID_MAX;
    e.action = name;
    e.action_len = STATEMACHINE_NAME_MAX;
    e.service = name;
    e.service_len = STATEMACHINE_NAME_MAX;
    e.value = blob;
    e.value_len = sizeof blob;
    e.time_ms = UINT64_MAX;
    roundtrip(f, &e);
    e.type = STATEMACHINE_ENTRY_COMMAND_RESOLVE;
    e.action = e.service = NULL;
    e.action_len = e.service_len = 0;
    e.ttl_ms = e.term = 0;
    set_str(&e.outcome, &e.outcome_len, "cancelled");
    roundtrip(f, &e);
    e.type = STATEMACHINE_ENTRY_LEASE_REVOKE;
    e.command_id = NULL;
    e.command_id_len = 0;
    e.value = NULL;
    e.value_len = 0;
    e.outcome = name;
    e.outcome_len = STATEMACHINE_NAME_MAX;
    roundtrip(f, &e);

    /* Fields another type does not use are carried along all the same. */
    e = reg_e("a", "{}", 7, NULL);
    set_str(&e.command_id, &e.command_id_len, "c");
    set_str(&e.outcome, &e.outcome_len, "x");
    e.ttl_ms = 5;
    e.term = 6;
    roundtrip(f, &e);
}

static void entry_names(void **state)
{
    int out = -1;
    (void)state;
    assert_string_equal(statemachine_entry_type_name(6), "agent_register");
    assert_string_equal(statemachine_entry_type_name(7), "lease_grant");
    assert_string_equal(statemachine_entry_type_name(8), "lease_revoke");
    assert_string_equal(statemachine_entry_type_name(9), "agent_report");
    assert_string_equal(statemachine_entry_type_name(10), "command_issue");
    assert_string_equal(statemachine_entry_type_name(11), "command_resolve");
    assert_string_equal(statemachine_entry_type_name(12), "incident_open");
    assert_string_equal(statemachine_entry_type_name(18), "record_reset");
    assert_string_equal(statemachine_entry_type_name(19), "rollout_update");
    assert_string_equal(statemachine_entry_type_name(20), "unknown");

    assert_string_equal(statemachine_command_state_name(PENDING), "pending");
    assert_string_equal(statemachine_command_state_name(ACKED), "acked");
    assert_string_equal(statemachine_command_state_name(NACKED), "nacked");
    assert_string_equal(statemachine_command_state_name(EXPIRED), "expired");
    assert_string_equal(statemachine_command_state_name(CANCELLED),
                        "cancelled");
    assert_string_equal(statemachine_command_state_name(-1), "unknown");
    assert_string_equal(
        statemachine_command_state_name(STATEMACHINE_COMMAND_STATE_NR),
        "unknown");

    assert_int_equal(statemachine_command_outcome_parse("acked", 5, &out), 0);
    assert_int_equal(out, ACKED);
    assert_int_equal(statemachine_command_outcome_parse("nacked", 6, &out), 0);
    assert_int_equal(out, NACKED);
    assert_int_equal(statemachine_command_outcome_parse("expired", 7, &out), 0);
    assert_int_equal(out, EXPIRED);
    assert_int_equal(statemachine_command_outcome_parse("cancelled", 9, &out),
                     0);
    assert_int_equal(out, CANCELLED);
    out = -1;
    assert_int_equal(statemachine_command_outcome_parse("pending", 7, &out),
                     REMS_EINVAL);
    assert_int_equal(statemachine_command_outcome_parse("done", 4, &out),
                     REMS_EINVAL);
    assert_int_equal(statemachine_command_outcome_parse("acke", 4, &out),
                     REMS_EINVAL);
    assert_int_equal(statemachine_command_outcome_parse("ackedx", 6, &out),
                     REMS_EINVAL);
    assert_int_equal(statemachine_command_outcome_parse("ACKED", 5, &out),
                     REMS_EINVAL);
    assert_int_equal(statemachine_command_outcome_parse("", 0, &out),
                     REMS_EINVAL);
    assert_int_equal(out, -1); /* Untouched on failure. */
}

/* Ids: 1..64 bytes of [A-Za-z0-9_.:-]. */
static void id_check(void **state)
{
    static const char *const good[] = {
        "a", "Z", "0", "_", ".", ":", "-", "agent-1", "web.01:eu_west-2"};
    static const char *const bad_ids[] = {"a b", "a/b", "a\\b", "é",   "a\n",
                                          "a,b", "a@b", "a\"",  "a*b", "{}"};
    char id[STATEMACHINE_ID_MAX + 2];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(statemachine_id_check(good[i], strlen(good[i])));
    }
    for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        assert_false(statemachine_id_check(bad_ids[i], strlen(bad_ids[i])));
    }
    assert_false(statemachine_id_check("", 0));
    assert_false(statemachine_id_check("a\0b", 3));
    memset(id, 'x', sizeof id);
    assert_true(statemachine_id_check(id, STATEMACHINE_ID_MAX));
    assert_false(statemachine_id_check(id, STATEMACHINE_ID_MAX + 1));
}

/* Over-long ids and names are REMS_EINVAL naming the field; nothing is
 * allocated. */
static void entry_encode_limits(void **state)
{
    struct fixture *f = *state;
    static char big[STATEMACHINE_ID_MAX + 2];
    struct statemachine_entry e;
    void *buf = NULL;
    size_t len = 0;
    struct {
        const char **s;
        size_t *len;
        size_t max;
        const char *name;
    } cases[5];
    long live = f->heap.live;
    size_t i;

    memset(big, 'x', sizeof big);
    e = issue_simple("cmd-1", "agent-1", NULL);
    set_str(&e.outcome, &e.outcome_len, "acked");
    cases[0].s = &e.agent_id;
    cases[0].len = &e.agent_id_len;
    cases[0].max = STATEMACHINE_ID_MAX;
    cases[0].name = "agent_id";
    cases[1].s = &e.command_id;
    cases[1].len = &e.command_id_len;
    cases[1].max = STATEMACHINE_ID_MAX;
    cases[1].name = "command_id";
    cases[2].s = &e.action;
    cases[2].len = &e.action_len;
    cases[2].max = STATEMACHINE_NAME_MAX;
    cases[2].name = "action";
    cases[3].s = &e.service;
    cases[3].len = &e.service_len;
    cases[3].max = STATEMACHINE_NAME_MAX;
    cases[3].name = "service";
    cases[4].s = &e.outcome;
    cases[4].len = &e.outcome_len;
    cases[4].max = STATEMACHINE_NAME_MAX;
    cases[4].name = "outcome";

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *old = *cases[i].s;
        size_t old_len = *cases[i].len;
        char expect[128];
        *cases[i].s = big;
        *cases[i].len = cases[i].max;
        assert_int_equal(
            statemachine_entry_encode(&e, rems_malloc, &buf, &len, f->errmsg),
            0);
        rems_free(buf);
        buf = NULL;
        len = 0;
        *cases[i].len = cases[i].max + 1;
        assert_int_equal(
            statemachine_entry_encode(&e, rems_malloc, &buf, &len, f->errmsg),
            REMS_EINVAL);
        snprintf(expect, sizeof expect, "%s: %zu bytes, at most %zu allowed",
                 cases[i].name, cases[i].max + 1, cases[i].max);
        assert_string_equal(f->errmsg, expect);
        assert_null(buf);
        assert_int_equal(len, 0);
        assert_int_equal(f->heap.live, live);
        *cases[i].s = old;
        *cases[i].len = old_len;
    }
}

/* statemachine.h limits labels, reports, args and results to
 * STATEMACHINE_BLOB_MAX bytes, and entry.c says every length is checked
 * against the limits of statemachine.h: a larger value is refused by the
 * encoder (REMS_EINVAL) and by the decoder (REMS_EMALFORMED), naming the
 * value. */
static void entry_value_limit(void **state)
{
    struct fixture *f = *state;
    static char blob[STATEMACHINE_BLOB_MAX + 1];
    static const int types[] = {
        STATEMACHINE_ENTRY_AGENT_REGISTER,
        STATEMACHINE_ENTRY_AGENT_REPORT,
        STATEMACHINE_ENTRY_COMMAND_ISSUE,
        STATEMACHINE_ENTRY_COMMAND_RESOLVE,
    };
    struct statemachine_entry e;
    struct statemachine_entry d;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    void *buf = NULL;
    size_t len = 0;
    size_t i;
    int rv;

    memset(blob, ' ', sizeof blob);
    for (i = 0; i < sizeof types / sizeof types[0]; i++) {
        e = types[i] == STATEMACHINE_ENTRY_COMMAND_RESOLVE
                ? resolve_e("c", "a", "acked", NULL, NULL)
                : issue_simple("c", "a", NULL);
        e.type = types[i];
        e.value = blob;
        e.value_len = STATEMACHINE_BLOB_MAX;
        encode(f, &e, &buf, &len);
        rems_free(buf);
        buf = NULL;

        /* The decoder, on a hand-made entry one byte over. */
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_str_with_body(&pk, "type", 4);
        msgpack_pack_uint64(&pk, (uint64_t)types[i]);
        msgpack_pack_str_with_body(&pk, "time_ms", 7);
        msgpack_pack_uint64(&pk, T0);
        msgpack_pack_str_with_body(&pk, "body", 4);
        msgpack_pack_map(&pk, 7);
        msgpack_pack_str_with_body(&pk, "agent_id", 8);
        msgpack_pack_str_with_body(&pk, "a", 1);
        msgpack_pack_str_with_body(&pk, "command_id", 10);
        msgpack_pack_str_with_body(&pk, "c", 1);
        msgpack_pack_str_with_body(&pk, "action", 6);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_str_with_body(&pk, "outcome", 7);
        msgpack_pack_str_with_body(&pk, "acked", 5);
        msgpack_pack_str_with_body(&pk, "ttl_ms", 6);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_str_with_body(&pk, "term", 4);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_str_with_body(&pk, "value", 5);
        msgpack_pack_bin_with_body(&pk, blob, sizeof blob);
        f->errmsg[0] = '\0';
        rv = statemachine_entry_decode(sb.data, sb.size, &d, f->errmsg);
        msgpack_sbuffer_destroy(&sb);
        if (rv != REMS_EMALFORMED) {
            fail_msg("decode of a %zu-byte value in type %d: %s (%s), "
                     "expected REMS_EMALFORMED",
                     sizeof blob, types[i], rems_errname(rv), f->errmsg);
        }
        assert_errmsg_has(f, "body.value");

        e.value_len = STATEMACHINE_BLOB_MAX + 1;
        rv = statemachine_entry_encode(&e, rems_malloc, &buf, &len, f->errmsg);
        if (rv != REMS_EINVAL) {
            if (rv == 0) {
                rems_free(buf);
            }
            fail_msg("encode of a %zu-byte value in type %d: %s, expected "
                     "REMS_EINVAL",
                     sizeof blob, types[i], rems_errname(rv));
        }
        assert_errmsg_has(f, "value");
    }
}

/* A body field for hand-made entries: a str, a bin or an unsigned. */
struct field {
    const char *k;
    char kind; /* 's', 'b' or 'u' */
    const char *s;
    size_t len; /* 0: strlen(s) */
    uint64_t u;
};

#define S(k, v)                                                                \
    {                                                                          \
        (k), 's', (v), 0, 0                                                    \
    }
#define SN(k, v, n)                                                            \
    {                                                                          \
        (k), 's', (v), (n), 0                                                  \
    }
#define B(k, v)                                                                \
    {                                                                          \
        (k), 'b', (v), 0, 0                                                    \
    }
#define U(k, v)                                                                \
    {                                                                          \
        (k), 'u', NULL, 0, (v)                                                 \
    }
#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* Pack an envelope of @type with the body @fields into @sb
 * (msgpack_sbuffer_destroy() it). */
static void
build(int type, const struct field *fields, size_t n, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    size_t i;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, STATEMACHINE_ENVELOPE_VERSION);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_uint64(&pk, (uint64_t)type);
    msgpack_pack_str_with_body(&pk, "time_ms", 7);
    msgpack_pack_uint64(&pk, T0);
    msgpack_pack_str_with_body(&pk, "request_id", 10);
    msgpack_pack_str_with_body(&pk, "req-x", 5);
    msgpack_pack_str_with_body(&pk, "body", 4);
    msgpack_pack_map(&pk, (uint32_t)n);
    for (i = 0; i < n; i++) {
        const struct field *fl = &fields[i];
        size_t len = fl->len > 0 || fl->s == NULL ? fl->len : strlen(fl->s);
        msgpack_pack_str_with_body(&pk, fl->k, strlen(fl->k));
        switch (fl->kind) {
            case 's':
                msgpack_pack_str_with_body(&pk, fl->s, len);
                break;
            case 'b':
                msgpack_pack_bin_with_body(&pk, fl->s, len);
                break;
            default:
                msgpack_pack_uint64(&pk, fl->u);
                break;
        }
    }
}

static int decode_fields(struct fixture *f,
                         int type,
                         const struct field *fields,
                         size_t n,
                         struct statemachine_entry *e)
{
    msgpack_sbuffer sb;
    int rv;
    build(type, fields, n, &sb);
    f->errmsg[0] = '\0';
    rv = statemachine_entry_decode(sb.data, sb.size, e, f->errmsg);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

/* Decode and expect REMS_EMALFORMED with exactly @msg. */
static void expect_reject_at(struct fixture *f,
                             int line,
                             int type,
                             const struct field *fields,
                             size_t n,
                             const char *msg)
{
    struct statemachine_entry e;
    int rv = decode_fields(f, type, fields, n, &e);
    if (rv != REMS_EMALFORMED || strcmp(f->errmsg, msg) != 0) {
        fail_msg("line %d: decode of type %d: %s (\"%s\"), expected "
                 "REMS_EMALFORMED (\"%s\")",
                 line, type, rems_errname(rv), f->errmsg, msg);
    }
}

#define expect_reject(f, type, fields, msg)                                    \
    expect_reject_at((f), __LINE__, (type), (fields), NF(fields), (msg))

static void expect_accept_at(struct fixture *f,
                             int line,
                             int type,
                             const struct field *fields,
                             size_t n,
                             struct statemachine_entry *e)
{
    int rv = decode_fields(f, type, fields, n, e);
    if (rv != 0) {
        fail_msg("line %d: decode of type %d: %s (\"%s\"), expected 0", line,
                 type, rems_errname(rv), f->errmsg);
    }
}

#define expect_accept(f, type, fields, e)                                      \
    expect_accept_at((f), __LINE__, (type), (fields), NF(fields), (e))

#define ID_RULE "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define CMD_RULE "required: 1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define TTL_RULE "must be between 1 and 86400000"
#define OUTCOME_RULE "must be acked, nacked, expired or cancelled"

/* Every type requires a valid agent_id. */
static void decode_agent_id(void **state)
{
    struct fixture *f = *state;
    static char id65[STATEMACHINE_ID_MAX + 1];
    static char id64[STATEMACHINE_ID_MAX];
    /* Each type's body, complete but for agent_id. */
    const struct field bodies[6][4] = {
        {B("value", "{}")},
        {U("ttl_ms", 1000)},
        {S("outcome", "expired")},
        {B("value", "{}")},
        {S("command_id", "c1"), S("action", "restart"), U("ttl_ms", 1000),
         U("term", 1)},
        {S("command_id", "c1"), S("outcome", "acked")},
    };
    const size_t nbody[6] = {1, 1, 1, 1, 4, 2};
    static const char *const bad_ids[] = {"a b", "a/b", "agent#1", "a\n"};
    struct statemachine_entry e;
    int type;
    size_t i;
    size_t j;

    memset(id65, 'a', sizeof id65);
    memset(id64, 'a', sizeof id64);
    for (type = STATEMACHINE_ENTRY_AGENT_REGISTER;
         type <= STATEMACHINE_ENTRY_COMMAND_RESOLVE; type++) {
        const struct field *body = bodies[type - 6];
        size_t n = nbody[type - 6];
        struct field fields[6];

        /* Missing. */
        memcpy(fields, body, n * sizeof *body);
        expect_reject_at(f, __LINE__, type, fields, n,
                         "entry: body.agent_id: required");

        /* Bad characters, empty, too long, not a string. */
        for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
            struct field id = S("agent_id", bad_ids[i]);
            fields[n] = id;
            expect_reject_at(f, __LINE__, type, fields, n + 1,
                             "entry: body.agent_id: " ID_RULE);
        }
        {
            struct field id = SN("agent_id", "", 0);
            fields[n] = id;
            expect_reject_at(f, __LINE__, type, fields, n + 1,
                             "entry: body.agent_id: " ID_RULE);
        }
        {
            struct field id = SN("agent_id", id65, sizeof id65);
            fields[n] = id;
            expect_reject_at(f, __LINE__, type, fields, n + 1,
                             "entry: body.agent_id: 65 bytes, at most 64 "
                             "allowed");
        }
        {
            struct field id = U("agent_id", 7);
            fields[n] = id;
            expect_reject_at(f, __LINE__, type, fields, n + 1,
                             "entry: body.agent_id: must be a string");
        }

        /* 64 bytes, first or last, is fine. */
        {
            struct field id = SN("agent_id", id64, sizeof id64);
            fields[n] = id;
            expect_accept_at(f, __LINE__, type, fields, n + 1, &e);
            assert_int_equal(e.type, type);
            assert_int_equal(e.agent_id_len, STATEMACHINE_ID_MAX);
            for (j = n; j > 0; j--) {
                fields[j] = fields[j - 1];
            }
            fields[0] = id;
            expect_accept_at(f, __LINE__, type, fields, n + 1, &e);
        }
    }
}

/* Type by type, each required field and each value rule. */
static void decode_rules(void **state)
{
    struct fixture *f = *state;
    static char name65[STATEMACHINE_NAME_MAX + 1];
    struct statemachine_entry e;
    const int reg = STATEMACHINE_ENTRY_AGENT_REGISTER;
    const int report = STATEMACHINE_ENTRY_AGENT_REPORT;
    const int grant = STATEMACHINE_ENTRY_LEASE_GRANT;
    const int revoke = STATEMACHINE_ENTRY_LEASE_REVOKE;
    const int issue = STATEMACHINE_ENTRY_COMMAND_ISSUE;
    const int resolve = STATEMACHINE_ENTRY_COMMAND_RESOLVE;

    memset(name65, 'n', sizeof name65);

    /* Register and report need a value (bytes). */
    {
        const struct field no_value[] = {S("agent_id", "a1"), U("node_id", 1)};
        const struct field str_value[] = {S("agent_id", "a1"),
                                          S("value", "{\"x\":1}")};
        const struct field int_value[] = {S("agent_id", "a1"), U("value", 1)};
        expect_reject(f, reg, no_value, "entry: body.value: required");
        expect_reject(f, report, no_value, "entry: body.value: required");
        expect_reject(f, reg, int_value, "entry: body.value: must be bytes");
        expect_accept(f, reg, str_value, &e); /* A str is bytes too. */
        assert_field(e.value, e.value_len, "{\"x\":1}");
        expect_accept(f, report, str_value, &e);
    }

    /* A lease lives 1 ms to a day. */
    {
        const struct field none[] = {S("agent_id", "a1")};
        const struct field zero[] = {S("agent_id", "a1"), U("ttl_ms", 0)};
        const struct field one[] = {S("agent_id", "a1"), U("ttl_ms", 1)};
        const struct field max[] = {S("agent_id", "a1"),
                                    U("ttl_ms", STATEMACHINE_TTL_MAX_MS)};
        const struct field over[] = {S("agent_id", "a1"),
                                     U("ttl_ms", STATEMACHINE_TTL_MAX_MS + 1)};
        const struct field huge[] = {S("agent_id", "a1"),
                                     U("ttl_ms", UINT64_MAX)};
        const struct field str[] = {S("agent_id", "a1"), S("ttl_ms", "5")};
        const struct field node[] = {S("agent_id", "a1"), U("ttl_ms", 5),
                                     S("node_id", "1")};
        expect_reject(f, grant, none, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, grant, zero, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, grant, over, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, grant, huge, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, grant, str,
                      "entry: body.ttl_ms: must be an unsigned integer");
        expect_reject(f, grant, node,
                      "entry: body.node_id: must be an unsigned integer");
        expect_accept(f, grant, one, &e);
        assert_true(e.ttl_ms == 1);
        expect_accept(f, grant, max, &e);
        assert_true(e.ttl_ms == STATEMACHINE_TTL_MAX_MS);
    }

    /* A revoke needs only the agent; its outcome is free text. */
    {
        const struct field bare[] = {S("agent_id", "a1")};
        const struct field why[] = {S("agent_id", "a1"),
                                    S("outcome", "node lost")};
        const struct field long_why[] = {S("agent_id", "a1"),
                                         SN("outcome", name65, sizeof name65)};
        expect_accept(f, revoke, bare, &e);
        assert_null(e.outcome);
        expect_accept(f, revoke, why, &e);
        assert_field(e.outcome, e.outcome_len, "node lost");
        expect_reject(f, revoke, long_why,
                      "entry: body.outcome: 65 bytes, at most 64 allowed");
    }

    /* Issue: command_id, action, ttl_ms, term. */
    {
        const struct field ok[] = {S("agent_id", "a1"), S("command_id", "c1"),
                                   S("action", "restart"), U("ttl_ms", 1),
                                   U("term", 1)};
        const struct field no_cmd[] = {S("agent_id", "a1"),
                                       S("action", "restart"),
                                       U("ttl_ms", 1000), U("term", 1)};
        const struct field bad_cmd[] = {
            S("agent_id", "a1"), S("command_id", "c 1"), S("action", "restart"),
            U("ttl_ms", 1000), U("term", 1)};
        const struct field empty_cmd[] = {
            S("agent_id", "a1"), SN("command_id", "", 0),
            S("action", "restart"), U("ttl_ms", 1000), U("term", 1)};
        const struct field long_cmd[] = {
            S("agent_id", "a1"), SN("command_id", name65, sizeof name65),
            S("action", "restart"), U("ttl_ms", 1000), U("term", 1)};
        const struct field no_action[] = {S("agent_id", "a1"),
                                          S("command_id", "c1"),
                                          U("ttl_ms", 1000), U("term", 1)};
        const struct field empty_action[] = {
            S("agent_id", "a1"), S("command_id", "c1"), SN("action", "", 0),
            U("ttl_ms", 1000), U("term", 1)};
        const struct field long_action[] = {S("agent_id", "a1"),
                                            S("command_id", "c1"),
                                            SN("action", name65, sizeof name65),
                                            U("ttl_ms", 1000), U("term", 1)};
        const struct field long_service[] = {
            S("agent_id", "a1"), S("command_id", "c1"),
            S("action", "x"),    SN("service", name65, sizeof name65),
            U("ttl_ms", 1000),   U("term", 1)};
        const struct field no_ttl[] = {S("agent_id", "a1"),
                                       S("command_id", "c1"),
                                       S("action", "restart"), U("term", 1)};
        const struct field ttl0[] = {S("agent_id", "a1"), S("command_id", "c1"),
                                     S("action", "restart"), U("ttl_ms", 0),
                                     U("term", 1)};
        const struct field ttl_over[] = {
            S("agent_id", "a1"), S("command_id", "c1"), S("action", "restart"),
            U("ttl_ms", STATEMACHINE_TTL_MAX_MS + 1), U("term", 1)};
        const struct field no_term[] = {
            S("agent_id", "a1"), S("command_id", "c1"), S("action", "restart"),
            U("ttl_ms", 1000)};
        const struct field term0[] = {
            S("agent_id", "a1"), S("command_id", "c1"), S("action", "restart"),
            U("ttl_ms", 1000), U("term", 0)};
        const struct field term_str[] = {
            S("agent_id", "a1"), S("command_id", "c1"), S("action", "restart"),
            U("ttl_ms", 1000), S("term", "1")};
        expect_accept(f, issue, ok, &e);
        assert_null(e.service);
        assert_null(e.value);
        expect_reject(f, issue, no_cmd, "entry: body.command_id: " CMD_RULE);
        expect_reject(f, issue, bad_cmd, "entry: body.command_id: " CMD_RULE);
        expect_reject(f, issue, empty_cmd, "entry: body.command_id: " CMD_RULE);
        expect_reject(f, issue, long_cmd,
                      "entry: body.command_id: 65 bytes, at most 64 allowed");
        expect_reject(f, issue, no_action, "entry: body.action: required");
        expect_reject(f, issue, empty_action, "entry: body.action: required");
        expect_reject(f, issue, long_action,
                      "entry: body.action: 65 bytes, at most 64 allowed");
        expect_reject(f, issue, long_service,
                      "entry: body.service: 65 bytes, at most 64 allowed");
        expect_reject(f, issue, no_ttl, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, issue, ttl0, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, issue, ttl_over, "entry: body.ttl_ms: " TTL_RULE);
        expect_reject(f, issue, no_term, "entry: body.term: required");
        expect_reject(f, issue, term0, "entry: body.term: required");
        expect_reject(f, issue, term_str,
                      "entry: body.term: must be an unsigned integer");
    }

    /* Resolve: command_id and a final outcome. */
    {
        static const char *const outcomes[] = {"acked", "nacked", "expired",
                                               "cancelled"};
        static const char *const refused[] = {"done",   "pending", "ACKED",
                                              "acked ", "ack",     ""};
        const struct field no_cmd[] = {S("agent_id", "a1"),
                                       S("outcome", "acked")};
        const struct field bad_cmd[] = {
            S("agent_id", "a1"), S("command_id", "c/1"), S("outcome", "acked")};
        const struct field no_outcome[] = {S("agent_id", "a1"),
                                           S("command_id", "c1")};
        const struct field long_outcome[] = {
            S("agent_id", "a1"), S("command_id", "c1"),
            SN("outcome", name65, sizeof name65)};
        const struct field int_outcome[] = {
            S("agent_id", "a1"), S("command_id", "c1"), U("outcome", 1)};
        struct field fields[4] = {S("agent_id", "a1"), S("command_id", "c1"),
                                  S("outcome", "acked"),
                                  B("value", "{\"r\":1}")};
        size_t i;

        expect_reject(f, resolve, no_cmd, "entry: body.command_id: " CMD_RULE);
        expect_reject(f, resolve, bad_cmd, "entry: body.command_id: " CMD_RULE);
        expect_reject(f, resolve, no_outcome,
                      "entry: body.outcome: " OUTCOME_RULE);
        expect_reject(f, resolve, long_outcome,
                      "entry: body.outcome: 65 bytes, at most 64 allowed");
        expect_reject(f, resolve, int_outcome,
                      "entry: body.outcome: must be a string");
        for (i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
            fields[2].s = outcomes[i];
            fields[2].len = 0;
            expect_accept_at(f, __LINE__, resolve, fields, 4, &e);
            assert_field(e.outcome, e.outcome_len, outcomes[i]);
            assert_field(e.value, e.value_len, "{\"r\":1}");
            /* The result is optional. */
            expect_accept_at(f, __LINE__, resolve, fields, 3, &e);
            assert_null(e.value);
        }
        for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
            fields[2].s = refused[i];
            fields[2].len = 0;
            expect_reject_at(f, __LINE__, resolve, fields, 4,
                             "entry: body.outcome: " OUTCOME_RULE);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Queries as copies.                                                   */

static uint64_t last_applied(struct storage *s)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    uint64_t v = 0;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    assert_int_equal(statemachine_last_applied(t, &v, errmsg), 0);
    storage_txn_abort(t);
    return v;
}

static void copy_str(char *dst, size_t size, const char *s, size_t len)
{
    assert_true(len < size);
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
}

#define COPY(dst, s, len) copy_str((dst), sizeof(dst), (s), (len))

struct agent_copy {
    char id[STATEMACHINE_ID_MAX + 1];
    char labels[1024];
    char services[1024];
    char offline_reason[STATEMACHINE_NAME_MAX + 1];
    uint64_t registered_index;
    uint64_t updated_index;
    uint64_t node_id;
    bool online;
};

static void agent_copy(struct agent_copy *out,
                       const struct statemachine_agent *a)
{
    memset(out, 0, sizeof *out);
    COPY(out->id, a->id, a->id_len);
    COPY(out->labels, a->labels, a->labels_len);
    COPY(out->services, a->services, a->services_len);
    COPY(out->offline_reason, a->offline_reason, a->offline_reason_len);
    out->registered_index = a->registered_index;
    out->updated_index = a->updated_index;
    out->node_id = a->node_id;
    out->online = a->online;
}

static int get_agent(struct storage *s, const char *id, struct agent_copy *out)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct statemachine_agent a;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = statemachine_agent_get(t, id, strlen(id), &a, errmsg);
    if (rv == 0) {
        agent_copy(out, &a);
        assert_string_equal(out->id, id);
    }
    storage_txn_abort(t);
    return rv;
}

struct lease_copy {
    char agent_id[STATEMACHINE_ID_MAX + 1];
    uint64_t ttl_ms;
    uint64_t granted_index;
    uint64_t granted_ms;
    uint64_t node_id;
};

static int get_lease(struct storage *s, const char *id, struct lease_copy *out)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct statemachine_lease l;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = statemachine_lease_get(t, id, strlen(id), &l, errmsg);
    if (rv == 0) {
        memset(out, 0, sizeof *out);
        COPY(out->agent_id, l.agent_id, l.agent_id_len);
        out->ttl_ms = l.ttl_ms;
        out->granted_index = l.granted_index;
        out->granted_ms = l.granted_ms;
        out->node_id = l.node_id;
        assert_string_equal(out->agent_id, id);
    }
    storage_txn_abort(t);
    return rv;
}

struct command_copy {
    char id[STATEMACHINE_ID_MAX + 1];
    char agent_id[STATEMACHINE_ID_MAX + 1];
    char action[STATEMACHINE_NAME_MAX + 1];
    char service[STATEMACHINE_NAME_MAX + 1];
    char args[1024];
    char result[1024];
    char requested_by[STATEMACHINE_USER_MAX + 1];
    char reason[STATEMACHINE_REASON_MAX + 1];
    char trace_id[STATEMACHINE_ID_MAX + 1];
    int state;
    uint64_t term;
    uint64_t ttl_ms;
    uint64_t issued_index;
    uint64_t issued_ms;
    uint64_t deadline_ms;
    uint64_t resolved_index;
};

static int
get_command(struct storage *s, const char *id, struct command_copy *out)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct statemachine_command c;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = statemachine_command_get(t, id, strlen(id), &c, errmsg);
    if (rv == 0) {
        memset(out, 0, sizeof *out);
        COPY(out->id, c.id, c.id_len);
        COPY(out->agent_id, c.agent_id, c.agent_id_len);
        COPY(out->action, c.action, c.action_len);
        COPY(out->service, c.service, c.service_len);
        COPY(out->args, c.args, c.args_len);
        COPY(out->result, c.result, c.result_len);
        COPY(out->requested_by, c.requested_by, c.requested_by_len);
        COPY(out->reason, c.reason, c.reason_len);
        COPY(out->trace_id, c.trace_id, c.trace_id_len);
        out->state = c.state;
        out->term = c.term;
        out->ttl_ms = c.ttl_ms;
        out->issued_index = c.issued_index;
        out->issued_ms = c.issued_ms;
        out->deadline_ms = c.deadline_ms;
        out->resolved_index = c.resolved_index;
        assert_string_equal(out->id, id);
    }
    storage_txn_abort(t);
    return rv;
}

static void assert_commands_equal(const struct command_copy *a,
                                  const struct command_copy *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->agent_id, b->agent_id);
    assert_string_equal(a->action, b->action);
    assert_string_equal(a->service, b->service);
    assert_string_equal(a->args, b->args);
    assert_string_equal(a->result, b->result);
    assert_string_equal(a->requested_by, b->requested_by);
    assert_string_equal(a->reason, b->reason);
    assert_string_equal(a->trace_id, b->trace_id);
    assert_int_equal(a->state, b->state);
    assert_true(a->term == b->term);
    assert_true(a->ttl_ms == b->ttl_ms);
    assert_true(a->issued_index == b->issued_index);
    assert_true(a->issued_ms == b->issued_ms);
    assert_true(a->deadline_ms == b->deadline_ms);
    assert_true(a->resolved_index == b->resolved_index);
}

/* Collects visited ids as "a,b," (commands as "id=state,"). */
struct collect {
    char out[8192];
    int visits;
    int stop_at; /* Return 99 at this visit (1-based); 0 never. */
};

static void collect_add(struct collect *c, const char *s, size_t len)
{
    size_t n = strlen(c->out);
    assert_true(n + len + 2 < sizeof c->out);
    memcpy(c->out + n, s, len);
    c->out[n + len] = ',';
    c->out[n + len + 1] = '\0';
}

static int collect_agent(void *data, const struct statemachine_agent *a)
{
    struct collect *c = data;
    collect_add(c, a->id, a->id_len);
    c->visits++;
    return c->visits == c->stop_at ? 99 : 0;
}

static int collect_lease(void *data, const struct statemachine_lease *l)
{
    struct collect *c = data;
    collect_add(c, l->agent_id, l->agent_id_len);
    c->visits++;
    return c->visits == c->stop_at ? 99 : 0;
}

static int collect_command(void *data, const struct statemachine_command *cmd)
{
    struct collect *c = data;
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%.*s=%s", (int)cmd->id_len, cmd->id,
                     statemachine_command_state_name(cmd->state));
    assert_true(n > 0 && (size_t)n < sizeof buf);
    collect_add(c, buf, (size_t)n);
    c->visits++;
    return c->visits == c->stop_at ? 99 : 0;
}

static const char *list_agents(struct fixture *f,
                               struct collect *c,
                               const char *after,
                               size_t limit,
                               bool *more)
{
    struct storage_txn *t;
    memset(c, 0, sizeof *c);
    *more = !*more; /* Proves the call sets it. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_agent_list(t, after, after != NULL ? strlen(after) : 0,
                                limit, collect_agent, c, more, f->errmsg),
        0);
    storage_txn_abort(t);
    return c->out;
}

static const char *list_leases(struct fixture *f, struct collect *c)
{
    struct storage_txn *t;
    memset(c, 0, sizeof *c);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_lease_list(t, collect_lease, c, f->errmsg),
                     0);
    storage_txn_abort(t);
    return c->out;
}

static const char *list_commands_of(struct fixture *f,
                                    struct storage *s,
                                    struct collect *c,
                                    const char *agent,
                                    int state,
                                    const char *after,
                                    size_t limit,
                                    bool *more)
{
    struct storage_txn *t;
    int rv;
    memset(c, 0, sizeof *c);
    *more = !*more;
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    rv = statemachine_command_list(t, agent, agent != NULL ? strlen(agent) : 0,
                                   state, after,
                                   after != NULL ? strlen(after) : 0, limit,
                                   collect_command, c, more, f->errmsg);
    storage_txn_abort(t);
    if (rv != 0) {
        fail_msg("command list: %s (%s)", rems_errname(rv), f->errmsg);
    }
    return c->out;
}

static const char *list_commands(struct fixture *f,
                                 struct collect *c,
                                 const char *agent,
                                 int state,
                                 const char *after,
                                 size_t limit,
                                 bool *more)
{
    return list_commands_of(f, f->s, c, agent, state, after, limit, more);
}

/* "all pending" as listed by both the pending index and a full walk. */
static const char *pending_ids(struct fixture *f, struct collect *c)
{
    bool more = false;
    return list_commands(f, c, NULL, PENDING, NULL, SIZE_MAX, &more);
}

/* The pending index entry of @id: its issue index, or 0 when absent. */
static uint64_t pending_entry(struct storage *s, const char *id)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    const void *v;
    size_t vl;
    uint64_t index = 0;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = storage_get(t, STORAGE_PENDING, id, strlen(id), &v, &vl, errmsg);
    if (rv == 0) {
        assert_int_equal(vl, 8);
        index = storage_u64_from_key(v);
        assert_true(index > 0);
    } else {
        assert_int_equal(rv, REMS_ENOTFOUND);
    }
    storage_txn_abort(t);
    return index;
}

static int collect_audit(void *data, const struct statemachine_audit *a)
{
    struct collect *c = data;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%llu:%d:%d:%llu:%.*s",
                     (unsigned long long)a->index, a->type, a->code,
                     (unsigned long long)a->revision, (int)a->key_len, a->key);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    collect_add(c, buf, (size_t)n);
    c->visits++;
    return 0;
}

/* Audit records as "index:type:code:revision:key,". */
static const char *audit(struct fixture *f, struct collect *c, uint64_t after)
{
    struct storage_txn *t;
    bool more = true;
    memset(c, 0, sizeof *c);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_audit_list(t, after, SIZE_MAX, collect_audit,
                                             c, &more, f->errmsg),
                     0);
    storage_txn_abort(t);
    assert_false(more);
    return c->out;
}

/* ------------------------------------------------------------------ */
/* Dumps: byte strings on libc's heap, outside the counted heap.        */

struct dump {
    char *p;
    size_t len;
    size_t cap;
    struct dump *next;
};

/* Every dump of the running test, freed by teardown even when an assertion
 * ends the test early. */
static struct dump *dumps;

static struct dump *dump_new(void)
{
    struct dump *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->next = dumps;
    dumps = d;
    return d;
}

static void dumps_free(void)
{
    while (dumps != NULL) {
        struct dump *next = dumps->next;
        free(dumps->p);
        free(dumps);
        dumps = next;
    }
}

static void dump_add(struct dump *d, const void *data, size_t len)
{
    if (d->len + len + 1 > d->cap) {
        d->cap = (d->len + len + 1) * 2 + 64;
        d->p = realloc(d->p, d->cap);
        assert_non_null(d->p);
    }
    if (len > 0) {
        memcpy(d->p + d->len, data, len);
    }
    d->len += len;
    d->p[d->len] = '\0'; /* Always a C string too. */
}

static void dump_fmt(struct dump *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void dump_fmt(struct dump *d, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    dump_add(d, buf, (size_t)n);
}

/* Every table of @s byte for byte, or all but META when @skip_meta. */
static struct dump *dump_tables_of(struct storage *s, bool skip_meta)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct dump *d = dump_new();
    int table;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    for (table = 0; table < STORAGE_TABLE_NR; table++) {
        struct storage_cursor *c;
        const void *k;
        const void *v;
        size_t kl;
        size_t vl;
        int rv;
        if (skip_meta && table == STORAGE_META) {
            continue;
        }
        dump_fmt(d, "|table %d|", table);
        assert_int_equal(
            storage_cursor_open(t, (enum storage_table)table, &c, errmsg), 0);
        rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, errmsg);
        while (rv == 0) {
            dump_add(d, &kl, sizeof kl);
            dump_add(d, k, kl);
            dump_add(d, &vl, sizeof vl);
            dump_add(d, v, vl);
            rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
        }
        assert_int_equal(rv, REMS_ENOTFOUND);
        storage_cursor_close(c);
    }
    storage_txn_abort(t);
    return d;
}

static struct dump *dump_tables(struct storage *s)
{
    return dump_tables_of(s, false);
}

static void assert_dumps_equal(const struct dump *a, const struct dump *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

static int dump_agent(void *data, const struct statemachine_agent *a)
{
    dump_fmt(data,
             "agent %.*s labels=%.*s services=%.*s offline=%.*s reg=%llu "
             "upd=%llu node=%llu online=%d\n",
             (int)a->id_len, a->id, (int)a->labels_len, a->labels,
             (int)a->services_len, a->services, (int)a->offline_reason_len,
             a->offline_reason, (unsigned long long)a->registered_index,
             (unsigned long long)a->updated_index,
             (unsigned long long)a->node_id, a->online);
    return 0;
}

static int dump_lease(void *data, const struct statemachine_lease *l)
{
    dump_fmt(data, "lease %.*s ttl=%llu idx=%llu ms=%llu node=%llu\n",
             (int)l->agent_id_len, l->agent_id, (unsigned long long)l->ttl_ms,
             (unsigned long long)l->granted_index,
             (unsigned long long)l->granted_ms, (unsigned long long)l->node_id);
    return 0;
}

static int dump_command(void *data, const struct statemachine_command *c)
{
    dump_fmt(data,
             "command %.*s agent=%.*s action=%.*s service=%.*s args=%.*s "
             "result=%.*s by=%.*s reason=%.*s trace=%.*s state=%d term=%llu "
             "ttl=%llu issued=%llu ms=%llu deadline=%llu resolved=%llu\n",
             (int)c->id_len, c->id, (int)c->agent_id_len, c->agent_id,
             (int)c->action_len, c->action, (int)c->service_len, c->service,
             (int)c->args_len, c->args, (int)c->result_len, c->result,
             (int)c->requested_by_len, c->requested_by, (int)c->reason_len,
             c->reason, (int)c->trace_id_len, c->trace_id, c->state,
             (unsigned long long)c->term, (unsigned long long)c->ttl_ms,
             (unsigned long long)c->issued_index,
             (unsigned long long)c->issued_ms,
             (unsigned long long)c->deadline_ms,
             (unsigned long long)c->resolved_index);
    return 0;
}

static int dump_audit(void *data, const struct statemachine_audit *a)
{
    dump_fmt(data,
             "audit %llu time=%llu type=%d code=%d rev=%llu key=%.*s "
             "by=%.*s reason=%.*s trace=%.*s req=%.*s\n",
             (unsigned long long)a->index, (unsigned long long)a->time_ms,
             a->type, a->code, (unsigned long long)a->revision, (int)a->key_len,
             a->key, (int)a->requested_by_len, a->requested_by,
             (int)a->reason_len, a->reason, (int)a->trace_id_len, a->trace_id,
             (int)a->request_id_len, a->request_id);
    return 0;
}

/* What the queries say about @s: last applied index, every agent, lease,
 * command (all, then the pending ones through the pending index) and audit
 * record. */
static struct dump *dump_state(struct storage *s)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct dump *d = dump_new();
    uint64_t last;
    bool more;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    assert_int_equal(statemachine_last_applied(t, &last, errmsg), 0);
    dump_fmt(d, "last_applied %llu\n", (unsigned long long)last);
    assert_int_equal(statemachine_agent_list(t, NULL, 0, SIZE_MAX, dump_agent,
                                             d, &more, errmsg),
                     0);
    assert_false(more);
    assert_int_equal(statemachine_lease_list(t, dump_lease, d, errmsg), 0);
    assert_int_equal(statemachine_command_list(t, NULL, 0, -1, NULL, 0,
                                               SIZE_MAX, dump_command, d, &more,
                                               errmsg),
                     0);
    assert_false(more);
    dump_fmt(d, "pending:\n");
    assert_int_equal(statemachine_command_list(t, NULL, 0, PENDING, NULL, 0,
                                               SIZE_MAX, dump_command, d, &more,
                                               errmsg),
                     0);
    assert_false(more);
    assert_int_equal(
        statemachine_audit_list(t, 0, SIZE_MAX, dump_audit, d, &more, errmsg),
        0);
    assert_false(more);
    storage_txn_abort(t);
    return d;
}

static void assert_state_equal(struct storage *a, struct storage *b)
{
    struct dump *da = dump_state(a);
    struct dump *db = dump_state(b);
    assert_string_equal(da->p, db->p);
}

/* ------------------------------------------------------------------ */
/* Agents and leases.                                                   */

/* Register creates the agent offline; a second register keeps its
 * registered index, services and online state and replaces labels and
 * node. */
static void apply_register(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct agent_copy a;

    assert_int_equal(get_agent(f->s, "agent-1", &a), REMS_ENOTFOUND);
    e = reg_e("agent-1", "{\"zone\":\"a\"}", 2, NULL);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    assert_true(res.index == 5);
    assert_true(res.revision == 5);
    assert_false(res.duplicate);
    assert_false(res.skipped);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.labels, "{\"zone\":\"a\"}");
    assert_string_equal(a.services, "");
    assert_string_equal(a.offline_reason, "");
    assert_true(a.registered_index == 5);
    assert_true(a.updated_index == 5);
    assert_true(a.node_id == 2);
    assert_false(a.online);
    assert_true(last_applied(f->s) == 5);

    /* Again, from another node, with other labels. */
    e = report_e("agent-1", "{\"web\":\"up\"}", NULL);
    apply(f, 6, &e);
    e = reg_e("agent-1", "{\"zone\":\"b\"}", 3, NULL);
    res = apply(f, 8, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 8);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.labels, "{\"zone\":\"b\"}");
    assert_string_equal(a.services, "{\"web\":\"up\"}");
    assert_true(a.registered_index == 5);
    assert_true(a.updated_index == 8);
    assert_true(a.node_id == 3);
    assert_false(a.online);

    /* While it holds a lease, it stays online. */
    e = grant_e("agent-1", 10000, 3, NULL);
    apply(f, 9, &e);
    e = reg_e("agent-1", "", 0, NULL);
    res = apply(f, 10, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.labels, "");
    assert_true(a.registered_index == 5);
    assert_true(a.updated_index == 10);
    assert_true(a.node_id == 0);
    assert_true(a.online);

    /* Others are separate. */
    e = reg_e("agent-2", "{}", 1, NULL);
    res = apply(f, 11, &e);
    assert_true(res.created);
    assert_int_equal(get_agent(f->s, "agent-2", &a), 0);
    assert_true(a.registered_index == 11);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_true(a.registered_index == 5);
    assert_int_equal(get_agent(f->s, "agent-3", &a), REMS_ENOTFOUND);
}

/* A report stores the services of a known agent, and is refused for an
 * unknown one without storing anything. */
static void apply_report(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct agent_copy a;
    struct dump *before;
    struct dump *after;
    struct collect c;
    bool more = false;

    e = report_e("ghost", "{\"web\":\"up\"}", NULL);
    res = apply(f, 1, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_false(res.created);
    assert_true(res.revision == 0);
    assert_int_equal(get_agent(f->s, "ghost", &a), REMS_ENOTFOUND);
    assert_string_equal(list_agents(f, &c, NULL, 100, &more), "");
    assert_true(last_applied(f->s) == 1);

    e = reg_e("agent-1", "{\"l\":1}", 4, NULL);
    apply(f, 2, &e);
    e = grant_e("agent-1", 5000, 4, NULL);
    apply(f, 3, &e);
    before = dump_tables_of(f->s, true);
    e = report_e("ghost", "{}", NULL);
    res = apply(f, 4, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    /* Only last_applied moved: no agent, no audit record. */
    after = dump_tables_of(f->s, true);
    assert_dumps_equal(before, after);
    assert_true(last_applied(f->s) == 4);

    e = report_e("agent-1", "{\"web\":\"running\",\"db\":\"down\"}", NULL);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 5);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.services, "{\"web\":\"running\",\"db\":\"down\"}");
    assert_string_equal(a.labels, "{\"l\":1}");
    assert_true(a.registered_index == 2);
    assert_true(a.updated_index == 5);
    assert_true(a.node_id == 4);
    assert_true(a.online);

    /* The next report replaces the last; an empty one is stored as such. */
    e = report_e("agent-1", "", NULL);
    apply(f, 6, &e);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.services, "");
    assert_true(a.updated_index == 6);
}

/* A grant stores the lease and marks the agent online; a revoke deletes it
 * and marks the agent offline with the reason. */
static void apply_leases(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct agent_copy a;
    struct agent_copy before;
    struct lease_copy l;
    struct collect c;

    e = grant_e("ghost", 1000, 1, NULL);
    res = apply(f, 1, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(res.revision == 0);
    assert_int_equal(get_lease(f->s, "ghost", &l), REMS_ENOTFOUND);
    assert_int_equal(get_agent(f->s, "ghost", &a), REMS_ENOTFOUND);
    e = revoke_e("ghost", "expired", NULL);
    res = apply(f, 2, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);

    e = reg_e("agent-1", "{}", 1, NULL);
    apply(f, 3, &e);

    /* Revoke without a lease: refused, the agent unchanged. */
    e = revoke_e("agent-1", "expired", NULL);
    res = apply(f, 4, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(res.revision == 0);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.offline_reason, "");
    assert_true(a.updated_index == 3);
    assert_false(a.online);

    e = grant_e("agent-1", 15000, 2, NULL);
    e.time_ms = T0 + 777;
    res = apply(f, 5, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 5);
    assert_int_equal(get_lease(f->s, "agent-1", &l), 0);
    assert_true(l.ttl_ms == 15000);
    assert_true(l.granted_index == 5);
    assert_true(l.granted_ms == T0 + 777);
    assert_true(l.node_id == 2);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_true(a.online);
    assert_string_equal(a.offline_reason, "");
    assert_true(a.node_id == 2); /* The node it is connected to now. */
    assert_true(a.updated_index == 5);
    assert_true(a.registered_index == 3);
    assert_string_equal(list_leases(f, &c), "agent-1,");

    /* Expired. */
    e = revoke_e("agent-1", "expired", NULL);
    res = apply(f, 6, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 6);
    assert_int_equal(get_lease(f->s, "agent-1", &l), REMS_ENOTFOUND);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_false(a.online);
    assert_string_equal(a.offline_reason, "expired");
    assert_true(a.updated_index == 6);
    assert_true(a.node_id == 2);
    assert_string_equal(list_leases(f, &c), "");

    /* Twice: the second finds no lease. */
    res = apply(f, 7, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    memcpy(&before, &a, sizeof a);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_memory_equal(&a, &before, sizeof a);

    /* A new grant clears the reason; renewing replaces the lease. */
    e = grant_e("agent-1", 1000, 3, NULL);
    apply(f, 8, &e);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_true(a.online);
    assert_string_equal(a.offline_reason, "");
    e = grant_e("agent-1", 2000, 1, NULL);
    e.time_ms = T0 + 9;
    apply(f, 9, &e);
    assert_int_equal(get_lease(f->s, "agent-1", &l), 0);
    assert_true(l.ttl_ms == 2000);
    assert_true(l.granted_index == 9);
    assert_true(l.granted_ms == T0 + 9);
    assert_true(l.node_id == 1);

    /* Without an outcome the reason is "revoked". */
    e = revoke_e("agent-1", NULL, NULL);
    res = apply(f, 10, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_false(a.online);
    assert_string_equal(a.offline_reason, "revoked");
    assert_int_equal(get_lease(f->s, "agent-1", &l), REMS_ENOTFOUND);
}

/* Lists of agents (paginated) and leases. */
static void list_agents_leases(void **state)
{
    struct fixture *f = *state;
    static const char *const ids[] = {"b", "a2", "a10", "a1", "c:9"};
    struct statemachine_entry e;
    struct storage_txn *t;
    struct collect c;
    bool more = false;
    uint64_t index = 1;
    size_t i;

    assert_string_equal(list_agents(f, &c, NULL, 10, &more), "");
    assert_false(more);
    assert_string_equal(list_leases(f, &c), "");
    for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        e = reg_e(ids[i], "{}", 1, NULL);
        apply(f, index++, &e);
    }
    assert_string_equal(list_agents(f, &c, NULL, 10, &more),
                        "a1,a10,a2,b,c:9,");
    assert_false(more);
    assert_string_equal(list_agents(f, &c, NULL, 5, &more), "a1,a10,a2,b,c:9,");
    assert_false(more);
    assert_string_equal(list_agents(f, &c, NULL, 2, &more), "a1,a10,");
    assert_true(more);
    assert_string_equal(list_agents(f, &c, "a10", 2, &more), "a2,b,");
    assert_true(more);
    assert_string_equal(list_agents(f, &c, "b", 2, &more), "c:9,");
    assert_false(more);
    assert_string_equal(list_agents(f, &c, "c:9", 2, &more), "");
    assert_false(more);
    /* After a missing id: from the next one. */
    assert_string_equal(list_agents(f, &c, "a", 1, &more), "a1,");
    assert_true(more);
    assert_string_equal(list_agents(f, &c, "a3", 10, &more), "b,c:9,");
    assert_false(more);
    assert_string_equal(list_agents(f, &c, "zzz", 10, &more), "");
    assert_false(more);
    assert_string_equal(list_agents(f, &c, NULL, 0, &more), "");
    assert_true(more);

    /* A visitor's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_agent_list(t, NULL, 0, 10, collect_agent, &c,
                                             &more, f->errmsg),
                     99);
    storage_txn_abort(t);
    assert_string_equal(c.out, "a1,a10,");

    e = grant_e("b", 1000, 1, NULL);
    apply(f, index++, &e);
    e = grant_e("a10", 1000, 1, NULL);
    apply(f, index++, &e);
    e = grant_e("c:9", 1000, 1, NULL);
    apply(f, index++, &e);
    assert_string_equal(list_leases(f, &c), "a10,b,c:9,");
    e = revoke_e("b", "expired", NULL);
    apply(f, index++, &e);
    assert_string_equal(list_leases(f, &c), "a10,c:9,");

    memset(&c, 0, sizeof c);
    c.stop_at = 1;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_lease_list(t, collect_lease, &c, f->errmsg),
                     99);
    storage_txn_abort(t);
    assert_string_equal(c.out, "a10,");
}

/* ------------------------------------------------------------------ */
/* Commands.                                                            */

/* Issue creates a pending command with every field; an unknown agent or an
 * existing id is refused. */
static void apply_issue(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct command_copy cmd;
    struct command_copy first;
    struct collect c;
    bool more = false;

    e = issue_simple("cmd-1", "ghost", NULL);
    res = apply(f, 1, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_false(res.created);
    assert_true(res.revision == 0);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), REMS_ENOTFOUND);
    assert_string_equal(pending_ids(f, &c), "");
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more), "");

    e = reg_e("agent-1", "{}", 1, NULL);
    apply(f, 2, &e);
    e = issue_e("cmd-1", "agent-1", "restart", "web", "{\"grace\":5}", 30000,
                NULL);
    e.time_ms = T0 + 5;
    e.term = 7;
    set_str(&e.requested_by, &e.requested_by_len, "bob");
    set_str(&e.reason, &e.reason_len, "deploy 42");
    set_str(&e.trace_id, &e.trace_id_len, "tr-9");
    res = apply(f, 3, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    assert_true(res.index == 3);
    assert_true(res.revision == 3);
    assert_int_equal(res.command_state, PENDING);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_string_equal(cmd.agent_id, "agent-1");
    assert_string_equal(cmd.action, "restart");
    assert_string_equal(cmd.service, "web");
    assert_string_equal(cmd.args, "{\"grace\":5}");
    assert_string_equal(cmd.result, "");
    assert_string_equal(cmd.requested_by, "bob");
    assert_string_equal(cmd.reason, "deploy 42");
    assert_string_equal(cmd.trace_id, "tr-9");
    assert_int_equal(cmd.state, PENDING);
    assert_true(cmd.term == 7);
    assert_true(cmd.ttl_ms == 30000);
    assert_true(cmd.issued_index == 3);
    assert_true(cmd.issued_ms == T0 + 5);
    assert_true(cmd.deadline_ms == T0 + 5 + 30000);
    assert_true(cmd.resolved_index == 0);
    assert_string_equal(pending_ids(f, &c), "cmd-1=pending,");
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more),
                        "cmd-1=pending,");
    assert_false(more);

    /* No service, no args, no envelope strings. */
    e = issue_e("cmd-2", "agent-1", "reboot", NULL, NULL, 1, NULL);
    e.requested_by = e.reason = e.trace_id = NULL;
    e.requested_by_len = e.reason_len = e.trace_id_len = 0;
    res = apply(f, 4, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(get_command(f->s, "cmd-2", &cmd), 0);
    assert_string_equal(cmd.service, "");
    assert_string_equal(cmd.args, "");
    assert_string_equal(cmd.requested_by, "");
    assert_string_equal(cmd.reason, "");
    assert_string_equal(cmd.trace_id, "");
    assert_true(cmd.deadline_ms == T0 + 1);

    /* The same id again: refused with its state, nothing changes. */
    assert_int_equal(get_command(f->s, "cmd-1", &first), 0);
    e = issue_e("cmd-1", "agent-1", "stop", "db", "{}", 500, NULL);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, REMS_EEXIST);
    assert_int_equal(res.command_state, PENDING);
    assert_false(res.created);
    assert_true(res.revision == 0);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_commands_equal(&cmd, &first);
    /* Even for another or an unknown agent. */
    e = issue_simple("cmd-1", "ghost", NULL);
    res = apply(f, 6, &e);
    assert_int_equal(res.code, REMS_EEXIST);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_commands_equal(&cmd, &first);
    assert_string_equal(pending_ids(f, &c), "cmd-1=pending,cmd-2=pending,");

    /* Once resolved, an issue of the id reports the final state. */
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, NULL);
    apply(f, 7, &e);
    e = issue_simple("cmd-1", "agent-1", NULL);
    res = apply(f, 8, &e);
    assert_int_equal(res.code, REMS_EEXIST);
    assert_int_equal(res.command_state, NACKED);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, NACKED);
    assert_true(cmd.issued_index == 3);
    assert_string_equal(pending_ids(f, &c), "cmd-2=pending,");
}

/* Resolve moves a pending command to its final state, once. */
static void apply_resolve(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct command_copy cmd;
    struct command_copy before;
    struct collect c;
    bool more = false;

    e = reg_e("agent-1", "{}", 1, NULL);
    apply(f, 1, &e);
    e = reg_e("agent-2", "{}", 1, NULL);
    apply(f, 2, &e);

    e = resolve_e("nope", "agent-1", "acked", NULL, NULL);
    res = apply(f, 3, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(res.revision == 0);
    assert_int_equal(get_command(f->s, "nope", &cmd), REMS_ENOTFOUND);

    e = issue_simple("cmd-1", "agent-1", NULL);
    apply(f, 4, &e);
    assert_int_equal(get_command(f->s, "cmd-1", &before), 0);
    assert_true(pending_entry(f->s, "cmd-1") == 4);

    /* Another agent may not resolve it. */
    e = resolve_e("cmd-1", "agent-2", "acked", "{}", NULL);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, REMS_EINVAL);
    assert_true(res.revision == 0);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_commands_equal(&cmd, &before);
    assert_string_equal(pending_ids(f, &c), "cmd-1=pending,");
    /* Nor an unknown one, nor a prefix of its id. */
    e = resolve_e("cmd-1", "ghost", "acked", "{}", NULL);
    res = apply(f, 6, &e);
    assert_int_equal(res.code, REMS_EINVAL);
    e = resolve_e("cmd-1", "agent-", "acked", "{}", NULL);
    res = apply(f, 7, &e);
    assert_int_equal(res.code, REMS_EINVAL);
    e = resolve_e("cmd-1", "agent-11", "acked", "{}", NULL);
    res = apply(f, 8, &e);
    assert_int_equal(res.code, REMS_EINVAL);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_commands_equal(&cmd, &before);

    e = resolve_e("cmd-1", "agent-1", "acked", "{\"exit\":0}", NULL);
    res = apply(f, 9, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 9);
    assert_int_equal(res.command_state, ACKED);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, ACKED);
    assert_true(cmd.resolved_index == 9);
    assert_string_equal(cmd.result, "{\"exit\":0}");
    /* The rest is as issued. */
    before.state = ACKED;
    before.resolved_index = 9;
    strcpy(before.result, "{\"exit\":0}");
    assert_commands_equal(&cmd, &before);
    assert_string_equal(pending_ids(f, &c), "");
    assert_true(pending_entry(f->s, "cmd-1") == 0); /* Left the index. */
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more),
                        "cmd-1=acked,");
    assert_string_equal(list_commands(f, &c, NULL, ACKED, NULL, 10, &more),
                        "cmd-1=acked,");

    /* Without a result, the result is empty. */
    e = issue_simple("cmd-2", "agent-2", NULL);
    apply(f, 10, &e);
    e = resolve_e("cmd-2", "agent-2", "expired", NULL, NULL);
    res = apply(f, 11, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(res.command_state, EXPIRED);
    assert_int_equal(get_command(f->s, "cmd-2", &cmd), 0);
    assert_int_equal(cmd.state, EXPIRED);
    assert_string_equal(cmd.result, "");
    assert_true(cmd.resolved_index == 11);
}

/* A command ends in exactly one final state: after the first resolution,
 * every further one (any outcome, any result) is REMS_ECONFLICT with the
 * state it has, and changes nothing. */
static void resolve_exactly_once(void **state)
{
    struct fixture *f = *state;
    static const char *const outcomes[] = {"acked", "nacked", "expired",
                                           "cancelled"};
    static const int states[] = {ACKED, NACKED, EXPIRED, CANCELLED};
    struct statemachine_entry e;
    struct statemachine_result res;
    struct command_copy cmd;
    struct command_copy final;
    struct collect c;
    bool more = false;
    uint64_t index = 1;
    size_t i;
    size_t j;

    e = reg_e("agent-1", "{}", 1, NULL);
    apply(f, index++, &e);
    e = reg_e("agent-2", "{}", 1, NULL);
    apply(f, index++, &e);
    for (i = 0; i < 4; i++) {
        char id[32];
        char result[32];
        uint64_t resolved;
        snprintf(id, sizeof id, "cmd-%s", outcomes[i]);
        snprintf(result, sizeof result, "{\"first\":%zu}", i);
        e = issue_simple(id, "agent-1", NULL);
        apply(f, index++, &e);
        e = resolve_e(id, "agent-1", outcomes[i], result, NULL);
        resolved = index;
        res = apply(f, index++, &e);
        assert_int_equal(res.code, 0);
        assert_int_equal(res.command_state, states[i]);
        assert_int_equal(get_command(f->s, id, &final), 0);
        assert_int_equal(final.state, states[i]);
        assert_true(final.resolved_index == resolved);
        assert_string_equal(final.result, result);
        assert_true(pending_entry(f->s, id) == 0);

        for (j = 0; j < 4; j++) {
            e = resolve_e(id, "agent-1", outcomes[j], "{\"second\":1}", NULL);
            res = apply(f, index++, &e);
            if (res.code != REMS_ECONFLICT || res.command_state != states[i]) {
                fail_msg("%s then %s: %s state %d, expected REMS_ECONFLICT "
                         "state %d",
                         outcomes[i], outcomes[j], rems_errname(res.code),
                         res.command_state, states[i]);
            }
            assert_true(res.revision == 0);
            assert_false(res.created);
            /* Without a result too. */
            e = resolve_e(id, "agent-1", outcomes[j], NULL, NULL);
            res = apply(f, index++, &e);
            assert_int_equal(res.code, REMS_ECONFLICT);
            assert_int_equal(res.command_state, states[i]);
            assert_int_equal(get_command(f->s, id, &cmd), 0);
            assert_commands_equal(&cmd, &final);
        }
        /* Another agent is refused before the state is looked at. */
        e = resolve_e(id, "agent-2", "acked", NULL, NULL);
        res = apply(f, index++, &e);
        assert_int_equal(res.code, REMS_EINVAL);
        assert_int_equal(get_command(f->s, id, &cmd), 0);
        assert_commands_equal(&cmd, &final);
    }
    assert_string_equal(pending_ids(f, &c), "");
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more),
                        "cmd-acked=acked,cmd-cancelled=cancelled,"
                        "cmd-expired=expired,cmd-nacked=nacked,");
}

/* Command lists filter by agent and state and page with after/limit. */
static void list_commands_filters(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct storage_txn *t;
    struct collect c;
    bool more = false;
    uint64_t index = 1;

    e = reg_e("a1", "{}", 1, NULL);
    apply(f, index++, &e);
    e = reg_e("a2", "{}", 1, NULL);
    apply(f, index++, &e);
    /* Ids sort c1 < c2 < ... < c7; issued out of order. */
    e = issue_simple("c3", "a1", NULL);
    apply(f, index++, &e);
    e = issue_simple("c1", "a1", NULL);
    apply(f, index++, &e);
    e = issue_simple("c2", "a2", NULL);
    apply(f, index++, &e);
    e = issue_simple("c5", "a1", NULL);
    apply(f, index++, &e);
    e = issue_simple("c4", "a2", NULL);
    apply(f, index++, &e);
    e = issue_simple("c6", "a1", NULL);
    apply(f, index++, &e);
    e = issue_simple("c7", "a2", NULL);
    apply(f, index++, &e);
    e = resolve_e("c1", "a1", "acked", NULL, NULL);
    apply(f, index++, &e);
    e = resolve_e("c4", "a2", "nacked", NULL, NULL);
    apply(f, index++, &e);
    e = resolve_e("c5", "a1", "acked", NULL, NULL);
    apply(f, index++, &e);
    e = resolve_e("c7", "a2", "cancelled", NULL, NULL);
    apply(f, index++, &e);

    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 100, &more),
                        "c1=acked,c2=pending,c3=pending,c4=nacked,"
                        "c5=acked,c6=pending,c7=cancelled,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, PENDING, NULL, 100, &more),
                        "c2=pending,c3=pending,c6=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, ACKED, NULL, 100, &more),
                        "c1=acked,c5=acked,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, EXPIRED, NULL, 100, &more),
                        "");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a1", -1, NULL, 100, &more),
                        "c1=acked,c3=pending,c5=acked,c6=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a2", -1, NULL, 100, &more),
                        "c2=pending,c4=nacked,c7=cancelled,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a2", PENDING, NULL, 100, &more),
                        "c2=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a1", ACKED, NULL, 100, &more),
                        "c1=acked,c5=acked,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a", -1, NULL, 100, &more), "");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a11", -1, NULL, 100, &more), "");
    assert_false(more);

    /* Pages. */
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 3, &more),
                        "c1=acked,c2=pending,c3=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, NULL, -1, "c3", 3, &more),
                        "c4=nacked,c5=acked,c6=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, NULL, -1, "c6", 3, &more),
                        "c7=cancelled,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, -1, "c7", 3, &more), "");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, -1, "c3x", 2, &more),
                        "c4=nacked,c5=acked,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, NULL, PENDING, NULL, 2, &more),
                        "c2=pending,c3=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, NULL, PENDING, "c3", 2, &more),
                        "c6=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, PENDING, "c2x", 1, &more),
                        "c3=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, NULL, PENDING, "c6", 1, &more),
                        "");
    assert_false(more);
    /* more counts only matching commands. */
    assert_string_equal(list_commands(f, &c, "a1", -1, NULL, 2, &more),
                        "c1=acked,c3=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, "a1", -1, "c3", 2, &more),
                        "c5=acked,c6=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a2", -1, "c4", 1, &more),
                        "c7=cancelled,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a1", PENDING, NULL, 1, &more),
                        "c3=pending,");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, "a1", PENDING, "c3", 1, &more),
                        "c6=pending,");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, "a2", ACKED, NULL, 1, &more), "");
    assert_false(more);
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 0, &more), "");
    assert_true(more);
    assert_string_equal(list_commands(f, &c, "a1", EXPIRED, NULL, 0, &more),
                        "");
    assert_false(more);

    /* A visitor's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_command_list(t, NULL, 0, -1, NULL, 0, 100,
                                               collect_command, &c, &more,
                                               f->errmsg),
                     99);
    memset(&c, 0, sizeof c);
    c.stop_at = 1;
    assert_int_equal(statemachine_command_list(t, NULL, 0, PENDING, NULL, 0,
                                               100, collect_command, &c, &more,
                                               f->errmsg),
                     99);
    storage_txn_abort(t);
    assert_string_equal(c.out, "c2=pending,");
}

/* The pending list walks the pending index, not the commands: a pending
 * command missing from the index is not listed as pending (a full walk
 * still shows it), and an index entry without a command is corrupt. */
static void list_pending_index(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct storage_txn *t;
    struct collect c;
    unsigned char k[8];
    bool more = false;
    int rv;

    e = reg_e("a1", "{}", 1, NULL);
    apply(f, 1, &e);
    e = issue_simple("c1", "a1", NULL);
    apply(f, 2, &e);
    e = issue_simple("c2", "a1", NULL);
    apply(f, 3, &e);
    assert_string_equal(pending_ids(f, &c), "c1=pending,c2=pending,");

    /* The index entry is the issue index, big-endian. */
    {
        const void *v;
        size_t vl;
        assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
        assert_int_equal(
            storage_get(t, STORAGE_PENDING, "c2", 2, &v, &vl, f->errmsg), 0);
        assert_int_equal(vl, 8);
        assert_true(storage_u64_from_key(v) == 3);
        storage_txn_abort(t);
    }

    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(storage_del(t, STORAGE_PENDING, "c1", 2, f->errmsg), 0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
    assert_string_equal(pending_ids(f, &c), "c2=pending,");
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more),
                        "c1=pending,c2=pending,");

    storage_u64_key(9, k);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_PENDING, "c0", 2, k, sizeof k, f->errmsg), 0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    rv = statemachine_command_list(t, NULL, 0, PENDING, NULL, 0, 10,
                                   collect_command, &c, &more, f->errmsg);
    storage_txn_abort(t);
    assert_int_equal(rv, REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "pending[c0]: record is corrupt");
}

/* A resolve refused by the decoder ("pending" is not an outcome) changes
 * nothing but last_applied and leaves no audit record. */
static void apply_malformed_resolve(void **state)
{
    struct fixture *f = *state;
    const struct field body[] = {S("agent_id", "a1"), S("command_id", "c1"),
                                 S("outcome", "pending")};
    struct statemachine_entry e;
    struct statemachine_result res;
    struct command_copy cmd;
    struct collect c;
    msgpack_sbuffer sb;
    int rv;

    e = reg_e("a1", "{}", 1, NULL);
    apply(f, 1, &e);
    e = issue_simple("c1", "a1", NULL);
    apply(f, 2, &e);
    build(STATEMACHINE_ENTRY_COMMAND_RESOLVE, body, NF(body), &sb);
    rv = statemachine_apply(f->s, 3, sb.data, sb.size, &res, f->errmsg);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(rv, 0);
    assert_int_equal(res.code, REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "entry: body.outcome: " OUTCOME_RULE);
    assert_int_equal(get_command(f->s, "c1", &cmd), 0);
    assert_int_equal(cmd.state, PENDING);
    assert_string_equal(pending_ids(f, &c), "c1=pending,");
    assert_true(last_applied(f->s) == 3);
    assert_string_equal(audit(f, &c, 2), "");
}

/* ------------------------------------------------------------------ */
/* Audit and dedup.                                                     */

/* Issue and resolve are audited under the command id; register, grant and
 * revoke under the agent id; reports are not audited. */
static void audit_agents(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct collect c;
    struct dump *d;

    e = reg_e("agent-1", "{}", 1, "req-1");
    set_str(&e.reason, &e.reason_len, "boot");
    apply(f, 1, &e);
    e = report_e("agent-1", "{\"web\":\"up\"}", "req-2");
    apply(f, 2, &e);
    e = grant_e("agent-1", 1000, 1, NULL);
    apply(f, 3, &e);
    e = issue_simple("cmd-1", "agent-1", "req-4");
    set_str(&e.requested_by, &e.requested_by_len, "bob");
    set_str(&e.trace_id, &e.trace_id_len, "tr-4");
    apply(f, 4, &e);
    e = resolve_e("cmd-1", "agent-1", "acked", "{}", NULL);
    apply(f, 5, &e);
    e = revoke_e("agent-1", "expired", NULL);
    apply(f, 6, &e);
    /* Refused ones are audited with their code, reports still not. */
    e = report_e("ghost", "{}", NULL);
    apply(f, 7, &e);
    e = issue_simple("cmd-2", "ghost", NULL);
    apply(f, 8, &e);
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, NULL);
    apply(f, 9, &e);
    e = resolve_e("cmd-1", "agent-2", "nacked", NULL, NULL);
    apply(f, 10, &e);
    e = issue_simple("cmd-1", "agent-1", NULL);
    apply(f, 11, &e);
    e = revoke_e("agent-1", NULL, NULL);
    apply(f, 12, &e);
    e = grant_e("ghost", 1000, 1, NULL);
    apply(f, 13, &e);
    e = report_e("agent-1", "{}", NULL);
    apply(f, 14, &e);

    assert_string_equal(audit(f, &c, 0), "1:6:0:1:agent-1,"
                                         "3:7:0:3:agent-1,"
                                         "4:10:0:4:cmd-1,"
                                         "5:11:0:5:cmd-1,"
                                         "6:8:0:6:agent-1,"
                                         "8:10:7:0:cmd-2,"
                                         "9:11:8:0:cmd-1,"
                                         "10:11:2:0:cmd-1,"
                                         "11:10:20:0:cmd-1,"
                                         "12:8:7:0:agent-1,"
                                         "13:7:7:0:ghost,");

    /* The envelope's strings come along. */
    d = dump_state(f->s);
    assert_non_null(strstr(d->p, "audit 1 time=1700000000123 type=6 code=0 "
                                 "rev=1 key=agent-1 by=alice reason=boot "
                                 "trace=trace-1 req=req-1\n"));
    assert_non_null(strstr(d->p, "audit 4 time=1700000000123 type=10 code=0 "
                                 "rev=4 key=cmd-1 by=bob reason=because "
                                 "trace=tr-4 req=req-4\n"));
    assert_null(strstr(d->p, "audit 2 "));
    assert_null(strstr(d->p, "audit 14 "));
}

/* A retried request (same request id) is answered with the first result and
 * creates no second command. */
static void dedup_commands(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct command_copy cmd;
    struct agent_copy a;
    struct collect c;
    bool more = false;
    struct dump *before;
    struct dump *after;

    e = reg_e("agent-1", "{\"v\":1}", 1, "req-reg");
    res = apply(f, 1, &e);
    assert_true(res.created);
    e = reg_e("agent-1", "{\"v\":2}", 2, "req-reg");
    res = apply(f, 2, &e);
    assert_true(res.duplicate);
    assert_true(res.created);
    assert_true(res.index == 1);
    assert_true(res.revision == 1);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_string_equal(a.labels, "{\"v\":1}");
    assert_true(a.updated_index == 1);

    e = issue_simple("cmd-1", "agent-1", "req-issue");
    res = apply(f, 3, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    before = dump_tables_of(f->s, true);

    /* The retry carries a new command id (a client that retried with a new
     * id but the same request id): still the first result. */
    e = issue_simple("cmd-2", "agent-1", "req-issue");
    res = apply(f, 4, &e);
    assert_true(res.duplicate);
    assert_false(res.skipped);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 3);
    assert_true(res.revision == 3);
    assert_true(res.created);
    assert_int_equal(res.command_state, PENDING);
    assert_int_equal(get_command(f->s, "cmd-2", &cmd), REMS_ENOTFOUND);
    e = issue_simple("cmd-1", "agent-1", "req-issue");
    res = apply(f, 5, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 3);
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more),
                        "cmd-1=pending,");
    /* Only last_applied moved; duplicates leave no audit record. */
    after = dump_tables_of(f->s, true);
    assert_dumps_equal(before, after);

    e = resolve_e("cmd-1", "agent-1", "acked", "{\"a\":1}", "req-res");
    res = apply(f, 6, &e);
    assert_int_equal(res.code, 0);
    e = resolve_e("cmd-1", "agent-1", "nacked", "{\"a\":2}", "req-res");
    res = apply(f, 7, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, 0); /* Not a conflict: it is the retry. */
    assert_true(res.index == 6);
    assert_true(res.revision == 6);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, ACKED);
    assert_string_equal(cmd.result, "{\"a\":1}");
    assert_true(cmd.resolved_index == 6);

    /* A refused first try is remembered as refused. */
    e = issue_simple("cmd-3", "ghost", "req-ghost");
    res = apply(f, 8, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    e = reg_e("ghost", "{}", 1, NULL);
    apply(f, 9, &e);
    e = issue_simple("cmd-3", "ghost", "req-ghost");
    res = apply(f, 10, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(res.index == 8);
    assert_int_equal(get_command(f->s, "cmd-3", &cmd), REMS_ENOTFOUND);

    /* Lease entries too. */
    e = grant_e("agent-1", 1000, 1, "req-grant");
    apply(f, 11, &e);
    e = revoke_e("agent-1", "expired", NULL);
    apply(f, 12, &e);
    e = grant_e("agent-1", 1000, 1, "req-grant");
    res = apply(f, 13, &e);
    assert_true(res.duplicate);
    assert_true(res.index == 11);
    assert_int_equal(get_agent(f->s, "agent-1", &a), 0);
    assert_false(a.online);
    assert_string_equal(list_leases(f, &c), "");
}

/* The first result of a command entry includes command_state: a retried
 * request must get it back like the code and the revision (statemachine.h:
 * "duplicate: a retried request id: result of the first time"). */
static void dedup_keeps_command_state(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result first;
    struct statemachine_result res;

    e = reg_e("agent-1", "{}", 1, NULL);
    apply(f, 1, &e);
    e = issue_simple("cmd-1", "agent-1", NULL);
    apply(f, 2, &e);

    /* A successful resolve reports the state it set. */
    e = resolve_e("cmd-1", "agent-1", "cancelled", NULL, "req-1");
    first = apply(f, 3, &e);
    assert_int_equal(first.code, 0);
    assert_int_equal(first.command_state, CANCELLED);

    /* A refused resolve reports the state the command already ended in. */
    e = resolve_e("cmd-1", "agent-1", "acked", NULL, "req-2");
    first = apply(f, 4, &e);
    assert_int_equal(first.code, REMS_ECONFLICT);
    assert_int_equal(first.command_state, CANCELLED);
    e = resolve_e("cmd-1", "agent-1", "acked", NULL, "req-2");
    res = apply(f, 5, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, REMS_ECONFLICT);
    if (res.command_state != CANCELLED) {
        fail_msg("retried resolve: command_state %s, the first result said "
                 "%s",
                 statemachine_command_state_name(res.command_state),
                 statemachine_command_state_name(first.command_state));
    }

    e = resolve_e("cmd-1", "agent-1", "cancelled", NULL, "req-1");
    res = apply(f, 6, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, 0);
    assert_int_equal(res.command_state, CANCELLED);
}

/* ------------------------------------------------------------------ */
/* Snapshots and determinism.                                           */

/* A little of everything, at indexes 1..@return-1; with refusals and
 * duplicates. */
static uint64_t populate(struct fixture *f, struct storage *s)
{
    struct statemachine_entry e;
    uint64_t i = 1;
    e = reg_e("agent-1", "{\"zone\":\"a\"}", 1, "r-1");
    apply_to(f, s, i++, &e);
    e = reg_e("agent-2", "{\"zone\":\"b\"}", 2, "r-2");
    apply_to(f, s, i++, &e);
    e = reg_e("agent-3", "{}", 3, NULL);
    apply_to(f, s, i++, &e);
    e = grant_e("agent-1", 10000, 1, NULL);
    apply_to(f, s, i++, &e);
    e = grant_e("agent-2", 20000, 2, "r-5");
    apply_to(f, s, i++, &e);
    e = grant_e("agent-3", 5000, 3, NULL);
    apply_to(f, s, i++, &e);
    e = revoke_e("agent-3", "expired", NULL);
    apply_to(f, s, i++, &e);
    e = report_e("agent-1", "{\"web\":\"up\"}", NULL);
    apply_to(f, s, i++, &e);
    e = report_e("ghost", "{}", NULL);
    apply_to(f, s, i++, &e);
    e = issue_simple("cmd-1", "agent-1", "r-10");
    apply_to(f, s, i++, &e);
    e = issue_e("cmd-2", "agent-2", "stop", "db", "{\"force\":true}", 500,
                "r-11");
    apply_to(f, s, i++, &e);
    e = issue_simple("cmd-3", "agent-1", NULL);
    apply_to(f, s, i++, &e);
    e = issue_simple("cmd-4", "agent-3", NULL);
    apply_to(f, s, i++, &e);
    e = issue_simple("cmd-5", "ghost", NULL);
    apply_to(f, s, i++, &e);
    e = resolve_e("cmd-1", "agent-1", "acked", "{\"exit\":0}", "r-15");
    apply_to(f, s, i++, &e);
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, "r-15"); /* Retry. */
    apply_to(f, s, i++, &e);
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, NULL); /* Conflict. */
    apply_to(f, s, i++, &e);
    e = resolve_e("cmd-4", "agent-3", "expired", NULL, NULL);
    apply_to(f, s, i++, &e);
    e = resolve_e("cmd-3", "agent-2", "acked", NULL, NULL); /* Not its. */
    apply_to(f, s, i++, &e);
    e = issue_simple("cmd-2", "agent-2", NULL); /* Exists. */
    apply_to(f, s, i++, &e);
    e = reg_e("agent-2", "{\"zone\":\"c\"}", 1, NULL);
    apply_to(f, s, i++, &e);
    return i;
}

/* A snapshot restored into a fresh store gives the same agents, leases,
 * commands, pending list and audit, and later entries apply identically. */
static void snapshot_restore(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result ra;
    struct statemachine_result rb;
    struct dump *a;
    struct dump *b;
    struct collect c;
    bool more = false;
    void *snap;
    size_t len;
    bool replaced = false;
    uint64_t next;

    next = populate(f, f->s);
    assert_int_equal(statemachine_snapshot(f->s, rems_malloc, rems_free, &snap,
                                           &len, f->errmsg),
                     0);
    open_other(f);
    assert_int_equal(
        statemachine_restore(f->s2, snap, len, &replaced, f->errmsg), 0);
    assert_true(replaced);
    rems_free(snap);

    a = dump_state(f->s);
    b = dump_state(f->s2);
    assert_string_equal(a->p, b->p);
    /* The dump holds what populate() made. */
    assert_non_null(strstr(a->p, "agent agent-2 labels={\"zone\":\"c\"} "
                                 "services= offline= reg=2 upd=21 node=1 "
                                 "online=1\n"));
    assert_non_null(strstr(a->p, "agent agent-3 labels={} services= "
                                 "offline=expired reg=3 upd=7 node=3 "
                                 "online=0\n"));
    assert_non_null(strstr(a->p, "lease agent-2 ttl=20000 idx=5 "
                                 "ms=1700000000123 node=2\n"));
    assert_null(strstr(a->p, "lease agent-3"));
    assert_non_null(strstr(a->p, "command cmd-1 agent=agent-1 action=restart "
                                 "service=web args={\"grace\":5} "
                                 "result={\"exit\":0} by=alice "
                                 "reason=because trace=trace-1 state=1 "
                                 "term=3 ttl=30000 issued=10 "
                                 "ms=1700000000123 deadline=1700000030123 "
                                 "resolved=15\n"));
    assert_string_equal(pending_ids(f, &c), "cmd-2=pending,cmd-3=pending,");
    assert_string_equal(
        list_commands_of(f, f->s2, &c, NULL, PENDING, NULL, 10, &more),
        "cmd-2=pending,cmd-3=pending,");
    a = dump_tables(f->s);
    b = dump_tables(f->s2);
    assert_dumps_equal(a, b);

    /* Later entries, on both. */
    e = resolve_e("cmd-2", "agent-2", "cancelled", NULL, "r-x");
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_int_equal(ra.code, 0);
    assert_memory_equal(&ra, &rb, sizeof ra);
    next++;
    e = issue_simple("cmd-2", "agent-2", "r-11"); /* A retry: duplicate. */
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_true(ra.duplicate);
    assert_true(ra.index == 11);
    assert_memory_equal(&ra, &rb, sizeof ra);
    next++;
    e = resolve_e("cmd-2", "agent-2", "acked", NULL, NULL);
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_int_equal(ra.code, REMS_ECONFLICT);
    assert_int_equal(ra.command_state, CANCELLED);
    assert_memory_equal(&ra, &rb, sizeof ra);
    assert_state_equal(f->s, f->s2);
    a = dump_tables(f->s);
    b = dump_tables(f->s2);
    assert_dumps_equal(a, b);
}

/* The same entries applied to two stores give identical results, lists and
 * tables. */
static void apply_deterministic(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry seq[24];
    struct dump *a;
    struct dump *b;
    size_t n = 0;
    size_t i;

    open_other(f);
    seq[n++] = reg_e("n1", "{\"k\":1}", 1, "q1");
    seq[n++] = reg_e("n2", "{}", 2, NULL);
    seq[n++] = grant_e("n1", 3000, 1, "q3");
    seq[n++] = issue_simple("x1", "n1", "q4");
    seq[n++] = issue_simple("x2", "n2", NULL);
    seq[n++] = issue_simple("x3", "n9", NULL);
    seq[n++] = report_e("n2", "{\"s\":1}", NULL);
    seq[n++] = resolve_e("x1", "n1", "nacked", "{\"why\":\"busy\"}", "q8");
    seq[n++] = resolve_e("x1", "n1", "acked", NULL, NULL);
    seq[n++] = resolve_e("x2", "n1", "acked", NULL, NULL);
    seq[n++] = issue_simple("x1", "n1", NULL);
    seq[n++] = resolve_e("x1", "n1", "acked", NULL, "q8");
    seq[n++] = revoke_e("n1", NULL, NULL);
    seq[n++] = revoke_e("n2", "expired", NULL);
    seq[n++] = grant_e("n2", 1, 2, NULL);
    seq[n++] = reg_e("n1", "{\"k\":2}", 3, "q1");
    seq[n++] = reg_e("n1", "{\"k\":3}", 3, NULL);
    seq[n++] = issue_e("x4", "n2", "a", NULL, NULL, 1, NULL);
    for (i = 0; i < n; i++) {
        struct statemachine_result ra;
        struct statemachine_result rb;
        seq[i].time_ms = T0 + i * 1000;
        ra = apply_to(f, f->s, i + 1, &seq[i]);
        rb = apply_to(f, f->s2, i + 1, &seq[i]);
        assert_memory_equal(&ra, &rb, sizeof ra);
    }
    assert_state_equal(f->s, f->s2);
    a = dump_tables(f->s);
    b = dump_tables(f->s2);
    assert_dumps_equal(a, b);
    a = dump_state(f->s);
    assert_non_null(strstr(a->p, "command x4 "));
    assert_non_null(strstr(a->p, "state=2 term=3 ttl=30000 issued=4 "
                                 "ms=1700000003123 deadline=1700000033123 "
                                 "resolved=8\n"));
}

/* ------------------------------------------------------------------ */
/* Out of memory.                                                       */

/* Fail the n-th allocation of applying @e at @index, for every n until it
 * succeeds: each failure is REMS_ENOMEM with a cleared result, no leak and
 * no change to any table; @check (may be NULL) runs after each failure.
 * Returns the number of failures. */
static int sweep_apply(struct fixture *f,
                       uint64_t index,
                       const struct statemachine_entry *e,
                       void (*check)(struct fixture *f))
{
    struct statemachine_result res;
    struct dump *before;
    void *buf;
    size_t len;
    long live;
    int rv;
    int n;

    encode(f, e, &buf, &len);
    before = dump_tables(f->s);
    live = f->heap.live;
    for (n = 0;; n++) {
        struct dump *after;
        memset(&res, 0xff, sizeof res);
        test_heap_fail_after(&f->heap, n);
        rv = statemachine_apply(f->s, index, buf, len, &res, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(res.code, 0);
        assert_true(res.index == 0);
        assert_false(res.created);
        assert_int_equal(f->heap.live, live);
        after = dump_tables(f->s);
        assert_dumps_equal(before, after);
        if (check != NULL) {
            check(f);
        }
    }
    assert_true(n >= 1); /* The transaction at least. */
    assert_int_equal(f->heap.live, live);
    assert_true(last_applied(f->s) == index);
    rems_free(buf);
    return n;
}

static void check_no_cmd_1(struct fixture *f)
{
    struct command_copy cmd;
    struct collect c;
    bool more = false;
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), REMS_ENOTFOUND);
    assert_string_equal(list_commands(f, &c, NULL, -1, NULL, 10, &more), "");
}

static void check_cmd_1_pending(struct fixture *f)
{
    struct command_copy cmd;
    struct collect c;
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, PENDING);
    assert_true(cmd.resolved_index == 0);
    assert_string_equal(cmd.result, "");
    assert_string_equal(pending_ids(f, &c), "cmd-1=pending,");
    assert_true(pending_entry(f->s, "cmd-1") == 4);
}

static void check_no_cmd_9(struct fixture *f)
{
    struct command_copy cmd;
    assert_int_equal(get_command(f->s, "cmd-9", &cmd), REMS_ENOTFOUND);
}

static void apply_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct command_copy cmd;
    struct collect c;

    e = reg_e("agent-1", "{}", 1, "req-1");
    sweep_apply(f, 1, &e, NULL);
    e = report_e("agent-1", "{\"web\":\"up\"}", NULL);
    sweep_apply(f, 2, &e, NULL);
    e = grant_e("agent-1", 1000, 1, "req-3");
    sweep_apply(f, 3, &e, NULL);

    /* The transaction, the command, the request and the audit record. */
    e = issue_simple("cmd-1", "agent-1", "req-4");
    assert_true(sweep_apply(f, 4, &e, check_no_cmd_1) >= 4);
    check_cmd_1_pending(f);

    e = resolve_e("cmd-1", "agent-1", "acked", "{\"exit\":0}", "req-5");
    assert_true(sweep_apply(f, 5, &e, check_cmd_1_pending) >= 4);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, ACKED);
    assert_string_equal(pending_ids(f, &c), "");
    assert_true(pending_entry(f->s, "cmd-1") == 0);

    /* Refusals and retries. */
    e = resolve_e("cmd-1", "agent-1", "nacked", NULL, "req-6");
    sweep_apply(f, 6, &e, NULL);
    e = issue_simple("cmd-1", "agent-1", "req-7");
    sweep_apply(f, 7, &e, NULL);
    e = issue_simple("cmd-9", "agent-1", "req-4");
    sweep_apply(f, 8, &e, check_no_cmd_9);
    e = revoke_e("agent-1", "expired", "req-9");
    sweep_apply(f, 9, &e, NULL);
}

/* A heap that fails only the n-th allocation and passes every other one to
 * the test heap, so a failure that a caller ignores is not hidden by the
 * failures of the allocations after it. */
struct oneshot_heap {
    struct rems_heap hooks;
    struct test_heap *inner;
    long countdown; /* Fail when it reaches 0; -1 once fired. */
};

static bool oneshot_fail(struct oneshot_heap *h)
{
    if (h->countdown == 0) {
        h->countdown = -1;
        return true;
    }
    if (h->countdown > 0) {
        h->countdown--;
    }
    return false;
}

static void *oneshot_malloc(void *data, size_t size)
{
    struct oneshot_heap *h = data;
    if (oneshot_fail(h)) {
        return NULL;
    }
    return h->inner->hooks.malloc(h->inner->hooks.data, size);
}

static void *oneshot_realloc(void *data, void *ptr, size_t size)
{
    struct oneshot_heap *h = data;
    if (oneshot_fail(h)) {
        return NULL;
    }
    return h->inner->hooks.realloc(h->inner->hooks.data, ptr, size);
}

static void oneshot_free(void *data, void *ptr)
{
    struct oneshot_heap *h = data;
    h->inner->hooks.free(h->inner->hooks.data, ptr);
}

/* Fail only the n-th allocation of applying @e at @index, for every n
 * until no allocation fails: each is REMS_ENOMEM with no leak and no change
 * to any table, never a success that dropped part of the entry. */
static void sweep_apply_once(struct fixture *f,
                             uint64_t index,
                             const struct statemachine_entry *e,
                             void (*check)(struct fixture *f))
{
    struct oneshot_heap h;
    struct statemachine_result res;
    struct dump *before;
    void *buf;
    size_t len;
    long live;
    int rv;
    long n;

    encode(f, e, &buf, &len);
    before = dump_tables(f->s);
    live = f->heap.live;
    h.hooks.data = &h;
    h.hooks.malloc = oneshot_malloc;
    h.hooks.realloc = oneshot_realloc;
    h.hooks.free = oneshot_free;
    h.inner = &f->heap;
    for (n = 0;; n++) {
        h.countdown = n;
        rems_heap_set(&h.hooks);
        rv = statemachine_apply(f->s, index, buf, len, &res, f->errmsg);
        rems_heap_set(&f->heap.hooks);
        if (rv == 0 && h.countdown >= 0) {
            break; /* Fewer than n + 1 allocations: nothing failed. */
        }
        if (rv != REMS_ENOMEM) {
            fail_msg("apply at %llu with allocation %ld failing: %s (%s), "
                     "expected REMS_ENOMEM",
                     (unsigned long long)index, n, rems_errname(rv), f->errmsg);
        }
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(f->heap.live, live);
        assert_dumps_equal(before, dump_tables(f->s));
        if (check != NULL) {
            check(f);
        }
    }
    assert_true(n >= 1);
    assert_int_equal(f->heap.live, live);
    assert_true(last_applied(f->s) == index);
    rems_free(buf);
}

static void apply_out_of_memory_once(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct command_copy cmd;

    e = reg_e("agent-1", "{}", 1, "req-1");
    sweep_apply_once(f, 1, &e, NULL);
    e = report_e("agent-1", "{\"web\":\"up\"}", NULL);
    sweep_apply_once(f, 2, &e, NULL);
    e = grant_e("agent-1", 1000, 1, "req-3");
    sweep_apply_once(f, 3, &e, NULL);
    e = issue_simple("cmd-1", "agent-1", "req-4");
    sweep_apply_once(f, 4, &e, check_no_cmd_1);
    check_cmd_1_pending(f);
    e = resolve_e("cmd-1", "agent-1", "acked", "{\"exit\":0}", "req-5");
    sweep_apply_once(f, 5, &e, check_cmd_1_pending);
    assert_int_equal(get_command(f->s, "cmd-1", &cmd), 0);
    assert_int_equal(cmd.state, ACKED);
    e = revoke_e("agent-1", "expired", "req-6");
    sweep_apply_once(f, 6, &e, NULL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(entry_roundtrip),
        T(entry_names),
        T(id_check),
        T(entry_encode_limits),
        T(entry_value_limit),
        T(decode_agent_id),
        T(decode_rules),
        T(apply_register),
        T(apply_report),
        T(apply_leases),
        T(list_agents_leases),
        T(apply_issue),
        T(apply_resolve),
        T(resolve_exactly_once),
        T(list_commands_filters),
        T(list_pending_index),
        T(apply_malformed_resolve),
        T(audit_agents),
        T(dedup_commands),
        T(dedup_keeps_command_state),
        T(snapshot_restore),
        T(apply_deterministic),
        T(apply_out_of_memory),
        T(apply_out_of_memory_once),
    };
#undef T
    return cmocka_run_group_tests_name("statemachine_agents", tests, NULL,
                                       NULL);
}
