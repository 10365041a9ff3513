/* Unit tests of the reconciler's replicated state in statemachine/:
 * remediation records moving with commands, incidents, overrides and
 * maintenance windows: round trips of every new entry, the decoder's
 * refusals, apply (transitions, refusals, request-id dedup, audit),
 * determinism across two stores and snapshot/restore.
 *
 * Each test gets a store in a fresh temporary directory and the counting
 * test heap; teardown asserts last that no allocation is left. */
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

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char other[TEST_TMPDIR_SIZE + 16];
    struct test_heap heap;
    struct storage *s;
    struct storage *s2;
    char errmsg[REMS_ERRMSG_SIZE];
};

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
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    test_tmpdir_remove(f->dir);
    free(f);
    assert_int_equal(live, 0);
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

#define SET(e, field, v) set_str(&(e).field, &(e).field##_len, (v))

static struct statemachine_entry base(int type, const char *req)
{
    struct statemachine_entry e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.time_ms = T0;
    SET(e, trace_id, "trace-1");
    SET(e, requested_by, "alice");
    SET(e, reason, "because");
    SET(e, request_id, req);
    return e;
}

static struct statemachine_entry reg_e(const char *agent)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_AGENT_REGISTER, NULL);
    SET(e, agent_id, agent);
    SET(e, value, "{}");
    e.node_id = 1;
    return e;
}

/* A remediation: command @cmd of @action on (@agent, @service) with its
 * record (attempts @attempts, digest @digest). */
static struct statemachine_entry issue_rec(const char *cmd,
                                           const char *agent,
                                           const char *service,
                                           const char *action,
                                           uint64_t attempts,
                                           uint64_t digest,
                                           const char *req)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_COMMAND_ISSUE, req);
    SET(e, agent_id, agent);
    SET(e, command_id, cmd);
    SET(e, action, "push_manifest");
    SET(e, service, service);
    SET(e, value, "{}");
    e.ttl_ms = 60000;
    e.term = 2;
    e.has_record = true;
    SET(e, record_action, action);
    e.attempts = attempts;
    e.record_last_attempt_ms = T0;
    e.record_digest = digest;
    return e;
}

static struct statemachine_entry
resolve_e(const char *cmd, const char *agent, const char *outcome)
{
    struct statemachine_entry e =
        base(STATEMACHINE_ENTRY_COMMAND_RESOLVE, NULL);
    SET(e, agent_id, agent);
    SET(e, command_id, cmd);
    SET(e, outcome, outcome);
    return e;
}

static struct statemachine_entry
open_e(const char *agent, const char *service, const char *req)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_INCIDENT_OPEN, req);
    e.requested_by = "reconciler";
    e.requested_by_len = 10;
    SET(e, agent_id, agent);
    SET(e, service, service);
    SET(e, kind, "unhealthy_service");
    SET(e, policy, "prod/web");
    SET(e, detail, "restarted 3 times");
    e.attempts = 3;
    return e;
}

static struct statemachine_entry update_e(uint64_t id, const char *op)
{
    struct statemachine_entry e =
        base(STATEMACHINE_ENTRY_INCIDENT_UPDATE, NULL);
    e.incident_id = id;
    SET(e, op, op);
    return e;
}

static struct statemachine_entry override_e(int type,
                                            const char *scope,
                                            const char *name,
                                            const char *agent,
                                            uint64_t until)
{
    struct statemachine_entry e = base(type, NULL);
    SET(e, scope, scope);
    SET(e, name, name);
    SET(e, agent_id, agent);
    e.until_ms = until;
    return e;
}

static struct statemachine_entry once_e(const char *name,
                                        const char *scope,
                                        const char *target,
                                        uint64_t start,
                                        uint64_t end)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_WINDOW_SET, NULL);
    SET(e, name, name);
    SET(e, scope, scope);
    SET(e, target, target);
    SET(e, mode, "never_inside");
    e.start_ms = start;
    e.end_ms = end;
    return e;
}

static struct statemachine_entry
weekly_e(const char *name, unsigned days, unsigned minute, unsigned duration)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_WINDOW_SET, NULL);
    SET(e, name, name);
    SET(e, scope, "site");
    SET(e, target, "paris");
    SET(e, mode, "auto_inside_only");
    e.weekly = true;
    e.days = days;
    e.start_minute = minute;
    e.duration_minutes = duration;
    return e;
}

static struct statemachine_entry
reset_e(const char *agent, const char *service, const char *op)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_RECORD_RESET, NULL);
    SET(e, agent_id, agent);
    SET(e, service, service);
    SET(e, op, op);
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
    if (len != strlen(expect) || (len > 0 && memcmp(s, expect, len) != 0)) {
        fail_msg("field \"%.*s\" != \"%s\"", (int)len, s != NULL ? s : "",
                 expect);
    }
}

#define SAME_STR(a, b, x)                                                      \
    do {                                                                       \
        assert_int_equal((a)->x##_len, (b)->x##_len);                          \
        if ((a)->x##_len > 0) {                                                \
            assert_memory_equal((a)->x, (b)->x, (a)->x##_len);                 \
        }                                                                      \
    } while (0)

/* Encode @e, decode it, compare every reconciler field. */
static void roundtrip(struct fixture *f, const struct statemachine_entry *e)
{
    struct statemachine_entry d;
    void *buf;
    size_t len;
    int rv;
    encode(f, e, &buf, &len);
    rv = statemachine_entry_decode(buf, len, &d, f->errmsg);
    if (rv != 0) {
        rems_free(buf);
        fail_msg("decode %s: %s (%s)", statemachine_entry_type_name(e->type),
                 rems_errname(rv), f->errmsg);
    }
    assert_int_equal(d.type, e->type);
    assert_true(d.time_ms == e->time_ms);
    SAME_STR(&d, e, requested_by);
    SAME_STR(&d, e, reason);
    SAME_STR(&d, e, request_id);
    SAME_STR(&d, e, agent_id);
    SAME_STR(&d, e, command_id);
    SAME_STR(&d, e, service);
    SAME_STR(&d, e, record_action);
    SAME_STR(&d, e, op);
    SAME_STR(&d, e, kind);
    SAME_STR(&d, e, policy);
    SAME_STR(&d, e, detail);
    SAME_STR(&d, e, scope);
    SAME_STR(&d, e, name);
    SAME_STR(&d, e, target);
    SAME_STR(&d, e, mode);
    assert_int_equal(d.has_record, e->has_record);
    assert_true(d.record_last_attempt_ms == e->record_last_attempt_ms);
    assert_true(d.record_digest == e->record_digest);
    assert_true(d.attempts == e->attempts);
    assert_true(d.incident_id == e->incident_id);
    assert_true(d.until_ms == e->until_ms);
    assert_int_equal(d.weekly, e->weekly);
    assert_true(d.start_ms == e->start_ms);
    assert_true(d.end_ms == e->end_ms);
    assert_true(d.days == e->days);
    assert_true(d.start_minute == e->start_minute);
    assert_true(d.duration_minutes == e->duration_minutes);
    rems_free(buf);
}

static void entry_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;

    e = issue_rec("c1", "a1", "web", "redeploy", 2, 0xfeedface12345678u, "r1");
    roundtrip(f, &e);
    e = issue_rec("c1", "a1", "web", "restart", 1, 0, NULL);
    roundtrip(f, &e);
    e = open_e("a1", "web", "inc-1");
    roundtrip(f, &e);
    e = open_e("a1", NULL, NULL); /* The agent as a whole. */
    e.policy = NULL;
    e.policy_len = 0;
    e.detail = NULL;
    e.detail_len = 0;
    roundtrip(f, &e);
    e = update_e(7, "acknowledge");
    roundtrip(f, &e);
    e = update_e(UINT64_MAX, "resolve");
    roundtrip(f, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", "a1",
                   T0 + 1);
    roundtrip(f, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "site", "paris", NULL, 0);
    roundtrip(f, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, NULL, 0);
    roundtrip(f, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "agent", "a1", NULL, 0);
    roundtrip(f, &e);
    e = once_e("w1", "global", NULL, T0, T0 + 3600000);
    roundtrip(f, &e);
    e = once_e("w2", "agent", "a1", 0, 1);
    roundtrip(f, &e);
    e = weekly_e("w3", 127, 1439, 10080);
    roundtrip(f, &e);
    e = base(STATEMACHINE_ENTRY_WINDOW_DELETE, NULL);
    SET(e, name, "w3");
    roundtrip(f, &e);
    e = reset_e("a1", "web", "reset");
    roundtrip(f, &e);
    e = reset_e("a1", "web", "delete");
    roundtrip(f, &e);

    assert_string_equal(statemachine_entry_type_name(13), "incident_update");
    assert_string_equal(statemachine_entry_type_name(14), "override_set");
    assert_string_equal(statemachine_entry_type_name(15), "override_clear");
    assert_string_equal(statemachine_entry_type_name(16), "window_set");
    assert_string_equal(statemachine_entry_type_name(17), "window_delete");
    assert_string_equal(statemachine_incident_state_name(0), "open");
    assert_string_equal(statemachine_incident_state_name(1), "acknowledged");
    assert_string_equal(statemachine_incident_state_name(2), "resolved");
    assert_string_equal(statemachine_incident_state_name(3), "unknown");
}

/* @e must encode and be refused by the decoder with @msg; applied, it is
 * refused with REMS_EMALFORMED and changes nothing but last_applied. */
static void expect_refused_at(struct fixture *f,
                              int line,
                              const struct statemachine_entry *e,
                              const char *msg)
{
    struct statemachine_entry d;
    struct statemachine_result res;
    void *buf;
    size_t len;
    int rv;
    encode(f, e, &buf, &len);
    rv = statemachine_entry_decode(buf, len, &d, f->errmsg);
    rems_free(buf);
    if (rv != REMS_EMALFORMED || strstr(f->errmsg, msg) == NULL) {
        fail_msg("line %d: decode: %s (%s), expected EMALFORMED with \"%s\"",
                 line, rems_errname(rv), f->errmsg, msg);
    }
    res = apply(f, 1000 + (uint64_t)line, e);
    assert_int_equal(res.code, REMS_EMALFORMED);
}
#define expect_refused(f, e, msg) expect_refused_at((f), __LINE__, (e), (msg))

#define ID_RULE "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define NAME_RULE "must be 1 to 64 printable bytes"
#define WORD_RULE "must be 1 to 64 characters of a-z _"

/* Every rule of the new bodies, broken one at a time. */
static void decode_refusals(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    size_t before;
    struct storage_txn *t;

    /* COMMAND_ISSUE's record. */
    e = issue_rec("c1", "a1", NULL, "restart", 1, 0, NULL);
    expect_refused(f, &e, "entry: body.service: required with a record");
    e = issue_rec("c1", "a1", "web", "restart", 0, 0, NULL);
    expect_refused(f, &e, "entry: body.record.attempts: must be 1..1000000");
    e = issue_rec("c1", "a1", "web", "restart", 1000001, 0, NULL);
    expect_refused(f, &e, "entry: body.record.attempts: must be 1..1000000");
    e = issue_rec("c1", "a1", "web", "Restart", 1, 0, NULL);
    expect_refused(f, &e, "entry: body.record.last_action: " WORD_RULE);
    e = issue_rec("c1", "a1", "web", "", 1, 0, NULL);
    expect_refused(f, &e, "entry: body.record.last_action: " WORD_RULE);
    e = issue_rec("c1", "a1", "we\nb", "restart", 1, 0, NULL);
    expect_refused(f, &e, "entry: body.service: required with a record");

    /* INCIDENT_OPEN. */
    e = open_e(NULL, "web", NULL); /* Encoded as "". */
    expect_refused(f, &e, "entry: body.agent_id: " ID_RULE);
    e = open_e("a b", "web", NULL);
    expect_refused(f, &e, "entry: body.agent_id: " ID_RULE);
    e = open_e("a1", "w\x01", NULL);
    expect_refused(f, &e, "entry: body.service: " NAME_RULE);
    e = open_e("a1", "web", NULL);
    e.kind = NULL;
    e.kind_len = 0;
    expect_refused(f, &e, "entry: body.kind: " WORD_RULE);
    e = open_e("a1", "web", NULL);
    SET(e, kind, "Bad-Kind");
    expect_refused(f, &e, "entry: body.kind: " WORD_RULE);
    e = open_e("a1", "web", NULL);
    e.attempts = 1000001;
    expect_refused(f, &e, "entry: body.attempts: must be 0..1000000");
    e = open_e("a1", "web", NULL);
    SET(e, policy, "/bad");
    expect_refused(f, &e, "entry: body.policy: key:");

    /* INCIDENT_UPDATE. */
    e = update_e(0, "resolve");
    expect_refused(f, &e, "entry: body.incident_id: required (>= 1)");
    e = update_e(1, NULL);
    expect_refused(f, &e, "entry: body.op: must be acknowledge or resolve");
    e = update_e(1, "close");
    expect_refused(f, &e, "entry: body.op: must be acknowledge or resolve");
    e = update_e(1, "resolve");
    e.requested_by = NULL;
    e.requested_by_len = 0;
    expect_refused(f, &e, "entry: requested_by: required for incident_update");

    /* OVERRIDE_*. */
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, NULL, "web", NULL, 0);
    expect_refused(f, &e,
                   "entry: body.scope: must be service, agent, site or pause");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "cluster", "x", NULL, 0);
    expect_refused(f, &e,
                   "entry: body.scope: must be service, agent, site or pause");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", NULL, NULL, 0);
    expect_refused(f, &e, "entry: body.name: required");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "agent", "a/1", NULL, 0);
    expect_refused(f, &e, "entry: body.name: " ID_RULE);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "site", "p\x7f", NULL, 0);
    expect_refused(f, &e, "entry: body.name: " NAME_RULE);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "agent", "a1", "a2", 0);
    expect_refused(f, &e,
                   "entry: body.agent_id: only allowed for a service freeze");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", "a b", 0);
    expect_refused(f, &e, "entry: body.agent_id: " ID_RULE);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", NULL, T0);
    expect_refused(f, &e, "entry: body.until_ms: must be after time_ms");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "service", "web", NULL,
                   T0 + 5);
    expect_refused(f, &e,
                   "entry: body.until_ms: not allowed in "
                   "override_clear");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", "x", NULL, 0);
    expect_refused(f, &e, "entry: body.name: not allowed for pause");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, "a1", 0);
    expect_refused(f, &e, "entry: body.agent_id: not allowed for pause");
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, NULL,
                   T0 + 5);
    expect_refused(f, &e, "entry: body.until_ms: not allowed for pause");

    /* WINDOW_*. */
    e = once_e(NULL, "global", NULL, 1, 2);
    expect_refused(f, &e, "entry: body.name: " ID_RULE);
    e = once_e("w 1", "global", NULL, 1, 2);
    expect_refused(f, &e, "entry: body.name: " ID_RULE);
    e = once_e("w1", NULL, NULL, 1, 2);
    expect_refused(f, &e, "entry: body.scope: must be global, site or agent");
    e = once_e("w1", "region", NULL, 1, 2);
    expect_refused(f, &e, "entry: body.scope: must be global, site or agent");
    e = once_e("w1", "global", "paris", 1, 2);
    expect_refused(f, &e, "entry: body.target: not allowed for global");
    e = once_e("w1", "site", NULL, 1, 2);
    expect_refused(f, &e, "entry: body.target: required for site and agent");
    e = once_e("w1", "agent", "a b", 1, 2);
    expect_refused(f, &e, "entry: body.target: " ID_RULE);
    e = once_e("w1", "site", "p\n", 1, 2);
    expect_refused(f, &e, "entry: body.target: " NAME_RULE);
    e = once_e("w1", "global", NULL, 1, 2);
    e.mode = NULL;
    e.mode_len = 0;
    expect_refused(f, &e, "entry: body.mode: must be auto_inside_only");
    e = once_e("w1", "global", NULL, 1, 2);
    SET(e, mode, "always");
    expect_refused(f, &e,
                   "entry: body.mode: must be auto_inside_only or "
                   "never_inside");
    e = once_e("w1", "global", NULL, 2, 2);
    expect_refused(f, &e, "entry: body.end_ms: must be after start_ms");
    e = weekly_e("w1", 0, 0, 60);
    expect_refused(f, &e, "entry: body.days: must be 1..127 (bit 0 = Monday)");
    e = weekly_e("w1", 128, 0, 60);
    expect_refused(f, &e, "entry: body.days: must be 1..127 (bit 0 = Monday)");
    e = weekly_e("w1", 1, 1440, 60);
    expect_refused(f, &e, "entry: body.start_minute: must be 0..1439");
    e = weekly_e("w1", 1, 0, 0);
    expect_refused(f, &e, "entry: body.duration_minutes: must be 1..10080");
    e = weekly_e("w1", 1, 0, 10081);
    expect_refused(f, &e, "entry: body.duration_minutes: must be 1..10080");
    e = weekly_e("w1", 1, 0, 60);
    e.start_ms = 5;
    expect_refused(f, &e,
                   "entry: body.start_ms: only for windows that are not "
                   "weekly");
    e = once_e("w1", "global", NULL, 1, 2);
    e.duration_minutes = 5;
    expect_refused(f, &e,
                   "entry: body.duration_minutes: only for weekly windows");
    e = base(STATEMACHINE_ENTRY_WINDOW_DELETE, NULL);
    expect_refused(f, &e, "entry: body.name: " ID_RULE);

    /* RECORD_RESET. */
    e = reset_e(NULL, "web", "reset");
    expect_refused(f, &e, "entry: body.agent_id: " ID_RULE);
    e = reset_e("a1", NULL, "reset");
    expect_refused(f, &e, "entry: body.service: " NAME_RULE);
    e = reset_e("a1", "w\x02", "reset");
    expect_refused(f, &e, "entry: body.service: " NAME_RULE);
    e = reset_e("a1", "web", NULL);
    expect_refused(f, &e, "entry: body.op: must be reset or delete");
    e = reset_e("a1", "web", "forget");
    expect_refused(f, &e, "entry: body.op: must be reset or delete");

    /* Nothing was stored by any of them. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(storage_count(t, STORAGE_INCIDENTS, &before, f->errmsg),
                     0);
    assert_int_equal(before, 0);
    assert_int_equal(storage_count(t, STORAGE_OVERRIDES, &before, f->errmsg),
                     0);
    assert_int_equal(before, 0);
    assert_int_equal(storage_count(t, STORAGE_WINDOWS, &before, f->errmsg), 0);
    assert_int_equal(before, 0);
    assert_int_equal(storage_count(t, STORAGE_REMEDIATIONS, &before, f->errmsg),
                     0);
    assert_int_equal(before, 0);
    assert_int_equal(storage_count(t, STORAGE_COMMANDS, &before, f->errmsg), 0);
    assert_int_equal(before, 0);
    storage_txn_abort(t);
}

/* A body field packed by hand: a string, an unsigned, or (record) a map of
 * the record's fields without @drop. */
struct hfield {
    const char *k;
    int kind; /* 0 str, 1 u64, 2 record map */
    const char *s;
    uint64_t u;
};

#define HS(k, v)                                                               \
    {                                                                          \
        (k), 0, (v), 0                                                         \
    }
#define HU(k, v)                                                               \
    {                                                                          \
        (k), 1, NULL, (v)                                                      \
    }
#define HR(drop)                                                               \
    {                                                                          \
        "record", 2, (drop), 0                                                 \
    }

static void pack_hstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Decode an envelope of @type whose body holds @fields; expect refusal
 * with @msg. */
static void expect_hand_refused_at(struct fixture *f,
                                   int line,
                                   int type,
                                   const struct hfield *fields,
                                   size_t n,
                                   const char *msg)
{
    static const char *const rec[] = {"attempts", "last_attempt_ms",
                                      "last_action", "digest"};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct statemachine_entry e;
    size_t i;
    size_t j;
    int rv;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_hstr(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pack_hstr(&pk, "type");
    msgpack_pack_uint64(&pk, (uint64_t)type);
    pack_hstr(&pk, "time_ms");
    msgpack_pack_uint64(&pk, T0);
    pack_hstr(&pk, "requested_by");
    pack_hstr(&pk, "alice");
    pack_hstr(&pk, "body");
    msgpack_pack_map(&pk, (uint32_t)n);
    for (i = 0; i < n; i++) {
        pack_hstr(&pk, fields[i].k);
        if (fields[i].kind == 0) {
            pack_hstr(&pk, fields[i].s);
        } else if (fields[i].kind == 1) {
            msgpack_pack_uint64(&pk, fields[i].u);
        } else {
            msgpack_pack_map(&pk, 3);
            for (j = 0; j < 4; j++) {
                if (strcmp(rec[j], fields[i].s) == 0) {
                    continue;
                }
                pack_hstr(&pk, rec[j]);
                if (j == 2) {
                    pack_hstr(&pk, "restart");
                } else {
                    msgpack_pack_uint64(&pk, 1);
                }
            }
        }
    }
    rv = statemachine_entry_decode(sb.data, sb.size, &e, f->errmsg);
    msgpack_sbuffer_destroy(&sb);
    if (rv != REMS_EMALFORMED || strstr(f->errmsg, msg) == NULL) {
        fail_msg("line %d: decode: %s (%s), expected EMALFORMED with \"%s\"",
                 line, rems_errname(rv), f->errmsg, msg);
    }
}
#define expect_hand_refused(f, type, fields, msg)                              \
    expect_hand_refused_at((f), __LINE__, (type), (fields),                    \
                           sizeof(fields) / sizeof((fields)[0]), (msg))

/* Missing fields and wrong types, which the encoder cannot produce. */
static void decode_required(void **state)
{
    struct fixture *f = *state;
    const struct hfield issue[] = {HS("agent_id", "a1"), HS("command_id", "c1"),
                                   HS("action", "x"),    HS("service", "web"),
                                   HU("ttl_ms", 1000),   HU("term", 1),
                                   HR("attempts")};
    const struct hfield issue2[] = {
        HS("agent_id", "a1"), HS("command_id", "c1"), HS("action", "x"),
        HS("service", "web"), HU("ttl_ms", 1000),     HU("term", 1),
        HR("last_attempt_ms")};
    const struct hfield issue3[] = {
        HS("agent_id", "a1"), HS("command_id", "c1"), HS("action", "x"),
        HS("service", "web"), HU("ttl_ms", 1000),     HU("term", 1),
        HR("last_action")};
    const struct hfield issue4[] = {
        HS("agent_id", "a1"), HS("command_id", "c1"), HS("action", "x"),
        HS("service", "web"), HU("ttl_ms", 1000),     HU("term", 1),
        HU("record", 1)};
    const struct hfield open1[] = {HS("service", "web"),
                                   HS("kind", "missing_service")};
    const struct hfield open2[] = {HS("agent_id", "a1"), HS("service", "w")};
    const struct hfield open3[] = {HS("agent_id", "a1"), HS("kind", "k"),
                                   HS("attempts", "3")};
    const struct hfield upd1[] = {HS("op", "resolve")};
    const struct hfield upd2[] = {HU("incident_id", 3)};
    const struct hfield upd3[] = {HS("incident_id", "3"), HS("op", "resolve")};
    const struct hfield ov1[] = {HS("name", "web")};
    const struct hfield ov2[] = {HS("scope", "service")};
    const struct hfield ov3[] = {HU("scope", 1), HS("name", "web")};
    const struct hfield ov4[] = {HS("scope", "service"), HS("name", "web"),
                                 HS("until_ms", "soon")};
    const struct hfield w1[] = {HS("scope", "global"),
                                HS("mode", "never_inside"), HU("end_ms", 2)};
    const struct hfield w2[] = {HS("name", "w1"), HS("mode", "never_inside"),
                                HU("end_ms", 2)};
    const struct hfield w3[] = {HS("name", "w1"), HS("scope", "global"),
                                HU("end_ms", 2)};
    const struct hfield w4[] = {HS("name", "w1"), HS("scope", "global"),
                                HS("mode", "never_inside"),
                                HS("weekly", "yes")};
    const struct hfield w5[] = {HS("name", "w1"), HS("scope", "global"),
                                HS("mode", "never_inside"), HU("start_ms", 5)};
    const struct hfield w6[] = {HS("name", "w1"), HS("scope", "global"),
                                HS("mode", "never_inside"), HU("end_ms", 9),
                                HU("days", 1)};
    const struct hfield rr1[] = {HS("agent_id", "a1"), HS("op", "reset")};
    const struct hfield rr2[] = {HS("agent_id", "a1"), HS("service", "web")};
    const struct hfield rr3[] = {HS("service", "web"), HS("op", "reset")};

    expect_hand_refused(f, STATEMACHINE_ENTRY_COMMAND_ISSUE, issue,
                        "entry: body.record.attempts: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_COMMAND_ISSUE, issue2,
                        "entry: body.record.last_attempt_ms: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_COMMAND_ISSUE, issue3,
                        "entry: body.record.last_action: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_COMMAND_ISSUE, issue4,
                        "entry: body.record: must be a map");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_OPEN, open1,
                        "entry: body.agent_id: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_OPEN, open2,
                        "entry: body.kind: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_OPEN, open3,
                        "entry: body.attempts: must be an unsigned integer");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_UPDATE, upd1,
                        "entry: body.incident_id: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_UPDATE, upd2,
                        "entry: body.op: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_INCIDENT_UPDATE, upd3,
                        "entry: body.incident_id: must be an unsigned "
                        "integer");
    expect_hand_refused(f, STATEMACHINE_ENTRY_OVERRIDE_SET, ov1,
                        "entry: body.scope: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_OVERRIDE_CLEAR, ov2,
                        "entry: body.name: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_OVERRIDE_SET, ov3,
                        "entry: body.scope: must be a string");
    expect_hand_refused(f, STATEMACHINE_ENTRY_OVERRIDE_SET, ov4,
                        "entry: body.until_ms: must be an unsigned integer");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w1,
                        "entry: body.name: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w2,
                        "entry: body.scope: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w3,
                        "entry: body.mode: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w4,
                        "entry: body.weekly: must be a boolean");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w5,
                        "entry: body.end_ms: must be after start_ms");
    expect_hand_refused(f, STATEMACHINE_ENTRY_WINDOW_SET, w6,
                        "entry: body.days: only for weekly windows");
    expect_hand_refused(f, STATEMACHINE_ENTRY_RECORD_RESET, rr1,
                        "entry: body.service: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_RECORD_RESET, rr2,
                        "entry: body.op: required");
    expect_hand_refused(f, STATEMACHINE_ENTRY_RECORD_RESET, rr3,
                        "entry: body.agent_id: required");
}

/* ------------------------------------------------------------------ */
/* Apply.                                                               */

struct rec_copy {
    int rv;
    uint64_t attempts;
    uint64_t last_attempt_ms;
    char last_action[65];
    char command_id[65];
    int outcome;
    uint64_t pending_digest;
    uint64_t deployed_digest;
    uint64_t updated_index;
};

static void copy_str(char *dst, size_t size, const char *s, size_t len)
{
    assert_true(len < size);
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
}

static struct rec_copy get_rec(struct fixture *f,
                               struct storage *s,
                               const char *agent,
                               const char *service)
{
    struct storage_txn *t;
    struct statemachine_remediation r;
    struct rec_copy c;
    memset(&c, 0, sizeof c);
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    c.rv = statemachine_remediation_get(t, agent, strlen(agent), service,
                                        strlen(service), &r, f->errmsg);
    if (c.rv == 0) {
        assert_field(r.agent_id, r.agent_id_len, agent);
        assert_field(r.service, r.service_len, service);
        c.attempts = r.attempts;
        c.last_attempt_ms = r.last_attempt_ms;
        copy_str(c.last_action, sizeof c.last_action, r.last_action,
                 r.last_action_len);
        copy_str(c.command_id, sizeof c.command_id, r.command_id,
                 r.command_id_len);
        c.outcome = r.outcome;
        c.pending_digest = r.pending_digest;
        c.deployed_digest = r.deployed_digest;
        c.updated_index = r.updated_index;
    }
    storage_txn_abort(t);
    return c;
}

/* A remediation's record is written with its command and updated by the
 * command's resolution, in the same transaction. */
static void records_move_with_commands(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct rec_copy r;
    struct statemachine_command cmd;
    struct storage_txn *t;
    uint64_t i = 1;

    e = reg_e("a1");
    apply(f, i++, &e);
    /* A redeploy, acked: the digest becomes the deployed one. */
    e = issue_rec("c1", "a1", "web", "redeploy", 1, 42, "r1");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.rv, 0);
    assert_true(r.attempts == 1);
    assert_true(r.last_attempt_ms == T0);
    assert_string_equal(r.last_action, "redeploy");
    assert_string_equal(r.command_id, "c1");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_PENDING);
    assert_true(r.pending_digest == 42);
    assert_true(r.deployed_digest == 0);
    assert_true(r.updated_index == 2);
    e = resolve_e("c1", "a1", "acked");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_SUCCEEDED);
    assert_true(r.pending_digest == 0);
    assert_true(r.deployed_digest == 42);
    assert_true(r.updated_index == 3);

    /* A restart, nacked: failed, the deployed digest stays. */
    e = issue_rec("c2", "a1", "web", "restart", 2, 0, NULL);
    apply(f, i++, &e);
    r = get_rec(f, f->s, "a1", "web");
    assert_true(r.attempts == 2);
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_PENDING);
    assert_true(r.deployed_digest == 42);
    e = resolve_e("c2", "a1", "nacked");
    apply(f, i++, &e);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_FAILED);
    assert_true(r.deployed_digest == 42);

    /* Expired and cancelled fail too; a redeploy that fails does not
     * deploy its digest. */
    e = issue_rec("c3", "a1", "web", "redeploy", 3, 77, NULL);
    apply(f, i++, &e);
    e = resolve_e("c3", "a1", "expired");
    apply(f, i++, &e);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_FAILED);
    assert_true(r.deployed_digest == 42);
    assert_true(r.pending_digest == 0);
    e = issue_rec("c4", "a1", "db", "start", 1, 0, NULL);
    apply(f, i++, &e);
    e = resolve_e("c4", "a1", "cancelled");
    apply(f, i++, &e);
    r = get_rec(f, f->s, "a1", "db");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_FAILED);

    /* A command without a record leaves the record alone, and so does
     * the resolution of a command the record no longer points at. */
    e = issue_rec("c5", "a1", "web", "restart", 4, 0, NULL);
    apply(f, i++, &e);
    e = issue_rec("c6", "a1", "web", "restart", 5, 0, NULL);
    e.has_record = false;
    apply(f, i++, &e);
    e = resolve_e("c6", "a1", "acked");
    apply(f, i++, &e);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_PENDING);
    assert_string_equal(r.command_id, "c5");
    assert_true(r.attempts == 4);
    /* A second resolution of c5 is refused and changes nothing more. */
    e = resolve_e("c5", "a1", "acked");
    apply(f, i++, &e);
    e = resolve_e("c5", "a1", "nacked");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    r = get_rec(f, f->s, "a1", "web");
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_SUCCEEDED);

    /* A refused issue (unknown agent, taken id) writes no record. */
    e = issue_rec("c7", "ghost", "web", "restart", 1, 0, NULL);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_int_equal(get_rec(f, f->s, "ghost", "web").rv, REMS_ENOTFOUND);
    e = issue_rec("c1", "a1", "web", "restart", 9, 0, NULL);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_EEXIST);
    assert_true(get_rec(f, f->s, "a1", "web").attempts == 4);

    /* A retried issue (same request id) is a duplicate: nothing moves. */
    e = issue_rec("c1", "a1", "web", "redeploy", 1, 42, "r1");
    res = apply(f, i++, &e);
    assert_true(res.duplicate);
    assert_true(res.index == 2);
    assert_true(get_rec(f, f->s, "a1", "web").attempts == 4);

    /* The command itself is as usual. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_command_get(t, "c1", 2, &cmd, f->errmsg), 0);
    assert_int_equal(cmd.state, STATEMACHINE_COMMAND_ACKED);
    assert_field(cmd.service, cmd.service_len, "web");
    storage_txn_abort(t);

    /* Record resets and deletions. */
    e = reset_e("a1", "web", "reset");
    res = apply(f, i, &e);
    assert_int_equal(res.code, 0);
    r = get_rec(f, f->s, "a1", "web");
    assert_true(r.attempts == 0);
    assert_true(r.updated_index == i);
    assert_int_equal(r.outcome, STATEMACHINE_RECORD_SUCCEEDED);
    assert_true(r.deployed_digest == 42);
    i++;
    e = reset_e("a1", "db", "delete");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(get_rec(f, f->s, "a1", "db").rv, REMS_ENOTFOUND);
    e = reset_e("a1", "db", "delete");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    e = reset_e("a2", "web", "reset");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
}

struct collect {
    char buf[2048];
};

static void collect_add(struct collect *c, const char *fmt, ...)
{
    size_t used = strlen(c->buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->buf + used, sizeof c->buf - used, fmt, ap);
    va_end(ap);
}

static int collect_rec(void *data, const struct statemachine_remediation *r)
{
    collect_add(data, "%.*s/%.*s=%llu,", (int)r->agent_id_len, r->agent_id,
                (int)r->service_len, r->service,
                (unsigned long long)r->attempts);
    return 0;
}

static int collect_incident(void *data, const struct statemachine_incident *i)
{
    collect_add(data, "%llu:%.*s/%.*s:%s,", (unsigned long long)i->id,
                (int)i->agent_id_len, i->agent_id, (int)i->service_len,
                i->service, statemachine_incident_state_name(i->state));
    return 0;
}

static int collect_override(void *data, const struct statemachine_override *o)
{
    collect_add(data, "%d:%.*s@%.*s<%llu,", o->scope, (int)o->name_len, o->name,
                (int)o->agent_id_len, o->agent_id,
                (unsigned long long)o->until_ms);
    return 0;
}

static int collect_window(void *data, const struct statemachine_window *w)
{
    collect_add(data, "%.*s:%d:%.*s:%d:%d,", (int)w->name_len, w->name,
                w->scope, (int)w->target_len, w->target, w->mode, w->weekly);
    return 0;
}

static void remediation_list(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct storage_txn *t;
    struct collect c;
    bool more;
    uint64_t i = 1;

    e = reg_e("a1");
    apply(f, i++, &e);
    e = reg_e("a2");
    apply(f, i++, &e);
    e = reg_e("a10");
    apply(f, i++, &e);
    e = issue_rec("c1", "a1", "web", "restart", 1, 0, NULL);
    apply(f, i++, &e);
    e = issue_rec("c2", "a1", "db", "restart", 2, 0, NULL);
    apply(f, i++, &e);
    e = issue_rec("c3", "a2", "web", "restart", 3, 0, NULL);
    apply(f, i++, &e);
    e = issue_rec("c4", "a10", "web", "restart", 4, 0, NULL);
    apply(f, i++, &e);

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_remediation_list(t, NULL, 0, NULL, 0, NULL, 0,
                                                   10, collect_rec, &c, &more,
                                                   f->errmsg),
                     0);
    assert_string_equal(c.buf, "a1/db=2,a1/web=1,a10/web=4,a2/web=3,");
    assert_false(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_remediation_list(t, NULL, 0, NULL, 0, NULL, 0,
                                                   2, collect_rec, &c, &more,
                                                   f->errmsg),
                     0);
    assert_string_equal(c.buf, "a1/db=2,a1/web=1,");
    assert_true(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_remediation_list(t, NULL, 0, "a1", 2, "web",
                                                   3, 10, collect_rec, &c,
                                                   &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "a10/web=4,a2/web=3,");
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_remediation_list(t, "a1", 2, NULL, 0, NULL, 0,
                                                   10, collect_rec, &c, &more,
                                                   f->errmsg),
                     0);
    assert_string_equal(c.buf, "a1/db=2,a1/web=1,");
    assert_false(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_remediation_list(t, "a1", 2, "a1", 2, "db", 2,
                                                   1, collect_rec, &c, &more,
                                                   f->errmsg),
                     0);
    assert_string_equal(c.buf, "a1/web=1,");
    assert_false(more);
    storage_txn_abort(t);
}

static struct statemachine_incident
get_incident(struct fixture *f, uint64_t id, int *rv)
{
    struct storage_txn *t;
    struct statemachine_incident i;
    memset(&i, 0, sizeof i);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    *rv = statemachine_incident_get(t, id, &i, f->errmsg);
    storage_txn_abort(t); /* Only scalars are read from @i below. */
    return i;
}

static void incidents(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct statemachine_incident inc;
    struct storage_txn *t;
    struct collect c;
    bool more;
    int rv;
    uint64_t i = 1;

    e = reg_e("a1");
    apply(f, i++, &e);
    e = issue_rec("c1", "a1", "web", "restart", 3, 0, NULL);
    apply(f, i++, &e);
    e = resolve_e("c1", "a1", "nacked");
    apply(f, i++, &e);

    /* Opened at index 4: its id. A retry of the same request is a
     * duplicate that opens nothing. */
    e = open_e("a1", "web", "inc-a1-web-3");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 4);
    assert_true(res.created);
    res = apply(f, i++, &e);
    assert_true(res.duplicate);
    assert_true(res.index == 4);
    assert_true(res.revision == 4);
    e = open_e("a1", NULL, NULL);
    apply(f, i++, &e); /* 6: the agent as a whole */
    e = open_e("a2", "db", NULL);
    apply(f, i++, &e); /* 7 */

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_incident_get(t, 4, &inc, f->errmsg), 0);
    assert_true(inc.id == 4);
    assert_field(inc.agent_id, inc.agent_id_len, "a1");
    assert_field(inc.service, inc.service_len, "web");
    assert_field(inc.kind, inc.kind_len, "unhealthy_service");
    assert_field(inc.policy, inc.policy_len, "prod/web");
    assert_field(inc.detail, inc.detail_len, "restarted 3 times");
    assert_true(inc.attempts == 3);
    assert_int_equal(inc.state, STATEMACHINE_INCIDENT_OPEN);
    assert_true(inc.opened_ms == T0);
    assert_field(inc.opened_by, inc.opened_by_len, "reconciler");
    assert_field(inc.opened_reason, inc.opened_reason_len, "because");
    assert_true(inc.acked_index == 0 && inc.resolved_index == 0);
    assert_int_equal(statemachine_incident_get(t, 5, &inc, f->errmsg),
                     REMS_ENOTFOUND);
    storage_txn_abort(t);

    /* Unknown incident. */
    e = update_e(5, "acknowledge");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);

    /* Acknowledge, by whom and why; a second acknowledgement conflicts. */
    e = update_e(4, "acknowledge");
    SET(e, requested_by, "bob");
    SET(e, reason, "looking");
    e.time_ms = T0 + 10;
    res = apply(f, i, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.revision == i);
    i++;
    assert_int_equal(get_rec(f, f->s, "a1", "web").attempts, 3);
    e = update_e(4, "acknowledge");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(
                         t, STATEMACHINE_INCIDENT_ACKNOWLEDGED, NULL, 0, 0, 10,
                         collect_incident, &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "4:a1/web:acknowledged,");
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(t, STATEMACHINE_INCIDENT_OPEN,
                                                NULL, 0, 0, 1, collect_incident,
                                                &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "6:a1/:open,");
    assert_true(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(
                         t, STATEMACHINE_INCIDENT_UNRESOLVED, "a2", 2, 6, 10,
                         collect_incident, &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "7:a2/db:open,");
    assert_false(more);
    storage_txn_abort(t);

    /* Resolve: the record's attempts are reset in the same entry. */
    e = update_e(4, "resolve");
    SET(e, requested_by, "carol");
    SET(e, reason, "fixed the config");
    e.time_ms = T0 + 20;
    res = apply(f, i, &e);
    assert_int_equal(res.code, 0);
    {
        struct rec_copy r = get_rec(f, f->s, "a1", "web");
        assert_true(r.attempts == 0);
        assert_true(r.updated_index == i);
        assert_int_equal(r.outcome, STATEMACHINE_RECORD_FAILED);
    }
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_incident_get(t, 4, &inc, f->errmsg), 0);
    assert_int_equal(inc.state, STATEMACHINE_INCIDENT_RESOLVED);
    assert_true(inc.acked_index == 9);
    assert_true(inc.acked_ms == T0 + 10);
    assert_field(inc.acked_by, inc.acked_by_len, "bob");
    assert_field(inc.acked_reason, inc.acked_reason_len, "looking");
    assert_true(inc.resolved_index == i);
    assert_true(inc.resolved_ms == T0 + 20);
    assert_field(inc.resolved_by, inc.resolved_by_len, "carol");
    assert_field(inc.resolved_reason, inc.resolved_reason_len,
                 "fixed the config");
    assert_field(inc.service, inc.service_len, "web");
    storage_txn_abort(t);
    i++;

    /* Nothing after resolved. */
    e = update_e(4, "resolve");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    e = update_e(4, "acknowledge");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    inc = get_incident(f, 4, &rv);
    assert_int_equal(rv, 0);
    assert_true(inc.resolved_index == 11);

    /* Resolving straight from open; an incident without a record (or of
     * the agent as a whole) resolves too. */
    e = update_e(6, "resolve");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    inc = get_incident(f, 6, &rv);
    assert_int_equal(inc.state, STATEMACHINE_INCIDENT_RESOLVED);
    assert_true(inc.acked_index == 0);

    /* Lists: by state, by agent, paged. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(t, -1, NULL, 0, 0, 10,
                                                collect_incident, &c, &more,
                                                f->errmsg),
                     0);
    assert_string_equal(c.buf,
                        "4:a1/web:resolved,6:a1/:resolved,7:a2/db:open,");
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(
                         t, STATEMACHINE_INCIDENT_UNRESOLVED, NULL, 0, 0, 10,
                         collect_incident, &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "7:a2/db:open,");
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(
                         t, STATEMACHINE_INCIDENT_RESOLVED, "a1", 2, 0, 1,
                         collect_incident, &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "4:a1/web:resolved,");
    assert_true(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(
                         t, STATEMACHINE_INCIDENT_RESOLVED, "a1", 2, 4, 1,
                         collect_incident, &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "6:a1/:resolved,");
    assert_false(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_incident_list(t, -1, NULL, 0, UINT64_MAX, 10,
                                                collect_incident, &c, &more,
                                                f->errmsg),
                     0);
    assert_string_equal(c.buf, "");
    storage_txn_abort(t);
}

static void overrides(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct statemachine_override o;
    struct storage_txn *t;
    struct collect c;
    bool paused = true;
    uint64_t i = 1;

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_paused(t, &paused, f->errmsg), 0);
    assert_false(paused);
    storage_txn_abort(t);

    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", NULL, 0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", "a1",
                   T0 + 1000);
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "agent", "a2", NULL, 0);
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "site", "paris", NULL,
                   T0 + 5);
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, NULL, 0);
    SET(e, requested_by, "ops");
    SET(e, reason, "incident 42");
    apply(f, i++, &e);
    /* Setting again replaces (the end moves). */
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "site", "paris", NULL,
                   T0 + 9);
    res = apply(f, i++, &e);
    assert_false(res.created);

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_paused(t, &paused, f->errmsg), 0);
    assert_true(paused);
    memset(&c, 0, sizeof c);
    assert_int_equal(
        statemachine_override_list(t, collect_override, &c, f->errmsg), 0);
    assert_string_equal(c.buf, "1:web@<0,1:web@a1<1700000001123,2:a2@<0,"
                               "3:paris@<1700000000132,4:@<0,");
    assert_int_equal(statemachine_override_get(t, STATEMACHINE_OVERRIDE_PAUSE,
                                               NULL, 0, NULL, 0, &o, f->errmsg),
                     0);
    assert_field(o.requested_by, o.requested_by_len, "ops");
    assert_field(o.reason, o.reason_len, "incident 42");
    assert_true(o.set_index == 5 && o.set_ms == T0);
    assert_int_equal(statemachine_override_get(t, STATEMACHINE_OVERRIDE_SERVICE,
                                               "web", 3, "a1", 2, &o,
                                               f->errmsg),
                     0);
    assert_true(o.until_ms == T0 + 1000);
    assert_int_equal(statemachine_override_get(t, STATEMACHINE_OVERRIDE_SERVICE,
                                               "web", 3, "a2", 2, &o,
                                               f->errmsg),
                     REMS_ENOTFOUND);
    storage_txn_abort(t);

    /* Clear: the exact override only; absent ones are not found. */
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "service", "web", NULL,
                   0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "pause", NULL, NULL, 0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_paused(t, &paused, f->errmsg), 0);
    assert_false(paused);
    memset(&c, 0, sizeof c);
    assert_int_equal(
        statemachine_override_list(t, collect_override, &c, f->errmsg), 0);
    assert_string_equal(c.buf, "1:web@a1<1700000001123,2:a2@<0,3:paris@<"
                               "1700000000132,");
    storage_txn_abort(t);
}

static void windows(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct statemachine_window w;
    struct storage_txn *t;
    struct collect c;
    bool more;
    uint64_t i = 1;

    e = once_e("w-once", "agent", "a1", T0, T0 + 3600000);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    e = weekly_e("w-weekly", 0x41, 1380, 180); /* Mon, Sun 23:00, 3 h */
    apply(f, i++, &e);
    e = once_e("a-global", "global", NULL, 5, 6);
    apply(f, i++, &e);
    e = weekly_e("w-weekly", 0x1f, 120, 60); /* Replaced. */
    res = apply(f, i++, &e);
    assert_false(res.created);

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_window_get(t, "w-weekly", 8, &w, f->errmsg),
                     0);
    assert_int_equal(w.scope, STATEMACHINE_WINDOW_SITE);
    assert_field(w.target, w.target_len, "paris");
    assert_int_equal(w.mode, STATEMACHINE_WINDOW_AUTO_INSIDE_ONLY);
    assert_true(w.weekly);
    assert_int_equal(w.days, 0x1f);
    assert_int_equal(w.start_minute, 120);
    assert_int_equal(w.duration_minutes, 60);
    assert_true(w.set_index == 4);
    assert_int_equal(statemachine_window_get(t, "w-once", 6, &w, f->errmsg), 0);
    assert_int_equal(w.scope, STATEMACHINE_WINDOW_AGENT);
    assert_int_equal(w.mode, STATEMACHINE_WINDOW_NEVER_INSIDE);
    assert_false(w.weekly);
    assert_true(w.start_ms == T0 && w.end_ms == T0 + 3600000);
    assert_field(w.requested_by, w.requested_by_len, "alice");
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_window_list(t, NULL, 0, 2, collect_window, &c,
                                              &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "a-global:1::2:0,w-once:3:a1:2:0,");
    assert_true(more);
    memset(&c, 0, sizeof c);
    assert_int_equal(statemachine_window_list(t, "w-once", 6, 2, collect_window,
                                              &c, &more, f->errmsg),
                     0);
    assert_string_equal(c.buf, "w-weekly:2:paris:1:1,");
    assert_false(more);
    storage_txn_abort(t);

    e = base(STATEMACHINE_ENTRY_WINDOW_DELETE, NULL);
    SET(e, name, "w-once");
    res = apply(f, i++, &e);
    assert_int_equal(res.code, 0);
    res = apply(f, i++, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_window_get(t, "w-once", 6, &w, f->errmsg),
                     REMS_ENOTFOUND);
    storage_txn_abort(t);
}

struct audit_collect {
    char buf[2048];
};

static int collect_audit(void *data, const struct statemachine_audit *a)
{
    struct audit_collect *c = data;
    size_t used = strlen(c->buf);
    snprintf(c->buf + used, sizeof c->buf - used, "%llu:%d:%d:%.*s:%.*s,",
             (unsigned long long)a->index, a->type, a->code, (int)a->key_len,
             a->key, (int)a->requested_by_len, a->requested_by);
    return 0;
}

/* Incidents, overrides and windows are audited with who did it; record
 * resets are not. */
static void audit_records(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct storage_txn *t;
    struct audit_collect c;
    bool more;
    uint64_t i = 1;

    e = open_e("a1", "web", NULL);
    apply(f, i++, &e);
    e = update_e(1, "acknowledge");
    SET(e, requested_by, "bob");
    apply(f, i++, &e);
    e = update_e(9, "resolve");
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "service", "web", "a1", 0);
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, NULL, 0);
    apply(f, i++, &e);
    e = once_e("w1", "global", NULL, 1, 2);
    apply(f, i++, &e);
    e = reset_e("a1", "web", "reset");
    apply(f, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "site", "paris", NULL, 0);
    apply(f, i++, &e);

    memset(&c, 0, sizeof c);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_audit_list(t, 0, 100, collect_audit, &c, &more, f->errmsg),
        0);
    storage_txn_abort(t);
    assert_string_equal(c.buf, "1:12:0:incident/1:reconciler,"
                               "2:13:0:incident/1:bob,"
                               "3:13:7:incident/9:alice,"
                               "4:14:0:override/service/web@a1:alice,"
                               "5:14:0:override/pause:alice,"
                               "6:16:0:window/w1:alice,"
                               "8:15:7:override/site/paris:alice,");
}

/* ------------------------------------------------------------------ */
/* Determinism and snapshots.                                           */

/* A bit of everything, with refusals and a duplicate; returns the next
 * index. */
static uint64_t populate(struct fixture *f, struct storage *s)
{
    struct statemachine_entry e;
    uint64_t i = 1;
    e = reg_e("a1");
    apply_to(f, s, i++, &e);
    e = reg_e("a2");
    apply_to(f, s, i++, &e);
    e = issue_rec("c1", "a1", "web", "redeploy", 1, 11, "q1");
    apply_to(f, s, i++, &e);
    e = issue_rec("c1", "a1", "web", "redeploy", 1, 11, "q1");
    apply_to(f, s, i++, &e);
    e = resolve_e("c1", "a1", "acked");
    apply_to(f, s, i++, &e);
    e = issue_rec("c2", "a2", "db", "restart", 3, 0, NULL);
    apply_to(f, s, i++, &e);
    e = resolve_e("c2", "a2", "expired");
    apply_to(f, s, i++, &e);
    e = open_e("a2", "db", "inc-1");
    apply_to(f, s, i++, &e);
    e = open_e("a1", "web", NULL);
    apply_to(f, s, i++, &e);
    e = update_e(8, "acknowledge");
    apply_to(f, s, i++, &e);
    e = update_e(8, "resolve");
    apply_to(f, s, i++, &e);
    e = update_e(8, "resolve");
    apply_to(f, s, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "site", "paris", NULL,
                   T0 + 60000);
    apply_to(f, s, i++, &e);
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "pause", NULL, NULL, 0);
    apply_to(f, s, i++, &e);
    e = once_e("w1", "agent", "a1", T0, T0 + 1);
    apply_to(f, s, i++, &e);
    e = weekly_e("w2", 3, 60, 90);
    apply_to(f, s, i++, &e);
    e = reset_e("a1", "web", "reset");
    apply_to(f, s, i++, &e);
    e = reset_e("a1", "nope", "delete");
    apply_to(f, s, i++, &e);
    e = update_e(99, "acknowledge");
    apply_to(f, s, i++, &e);
    return i;
}

/* The four tables and the audit, byte for byte, into @out. */
static void dump(struct fixture *f, struct storage *s, struct collect *out)
{
    static const enum storage_table tables[] = {
        STORAGE_REMEDIATIONS, STORAGE_INCIDENTS,      STORAGE_OVERRIDES,
        STORAGE_WINDOWS,      STORAGE_INCIDENTS_OPEN, STORAGE_AUDIT,
        STORAGE_REQUESTS};
    struct storage_txn *t;
    size_t n;
    memset(out, 0, sizeof *out);
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    for (n = 0; n < sizeof tables / sizeof tables[0]; n++) {
        struct storage_cursor *c;
        const void *k;
        const void *v;
        size_t kl;
        size_t vl;
        unsigned long sum = 5381;
        size_t count = 0;
        int rv;
        assert_int_equal(storage_cursor_open(t, tables[n], &c, f->errmsg), 0);
        rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg);
        while (rv == 0) {
            size_t j;
            for (j = 0; j < kl; j++) {
                sum = sum * 33 + ((const unsigned char *)k)[j];
            }
            sum = sum * 33 + 0x100;
            for (j = 0; j < vl; j++) {
                sum = sum * 33 + ((const unsigned char *)v)[j];
            }
            count++;
            rv = storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg);
        }
        assert_int_equal(rv, REMS_ENOTFOUND);
        storage_cursor_close(c);
        collect_add(out, "%d:%zu:%lx,", (int)tables[n], count, sum);
    }
    storage_txn_abort(t);
}

static void deterministic(void **state)
{
    struct fixture *f = *state;
    struct collect a;
    struct collect b;
    struct collect lists;
    struct storage_txn *t;
    bool more;

    open_other(f);
    assert_true(populate(f, f->s) == populate(f, f->s2));
    dump(f, f->s, &a);
    dump(f, f->s2, &b);
    assert_string_equal(a.buf, b.buf);
    /* And not trivially: every table has records. */
    assert_null(strstr(a.buf, ":0:"));

    assert_int_equal(storage_txn_begin(f->s2, false, &t, f->errmsg), 0);
    memset(&lists, 0, sizeof lists);
    assert_int_equal(statemachine_remediation_list(t, NULL, 0, NULL, 0, NULL, 0,
                                                   10, collect_rec, &lists,
                                                   &more, f->errmsg),
                     0);
    assert_int_equal(statemachine_incident_list(t, -1, NULL, 0, 0, 10,
                                                collect_incident, &lists, &more,
                                                f->errmsg),
                     0);
    storage_txn_abort(t);
    assert_string_equal(lists.buf, "a1/web=0,a2/db=0,8:a2/db:resolved,"
                                   "9:a1/web:open,");
}

static void snapshot_restore(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result ra;
    struct statemachine_result rb;
    struct collect a;
    struct collect b;
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
    dump(f, f->s, &a);
    dump(f, f->s2, &b);
    assert_string_equal(a.buf, b.buf);
    assert_null(strstr(a.buf, ":0:"));

    /* Later entries apply identically on both, retries included. */
    e = update_e(9, "resolve");
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_int_equal(ra.code, 0);
    assert_memory_equal(&ra, &rb, sizeof ra);
    next++;
    e = open_e("a2", "db", "inc-1"); /* A retry: duplicate. */
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_true(ra.duplicate);
    assert_true(ra.index == 8);
    assert_memory_equal(&ra, &rb, sizeof ra);
    next++;
    e = override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "pause", NULL, NULL, 0);
    ra = apply_to(f, f->s, next, &e);
    rb = apply_to(f, f->s2, next, &e);
    assert_int_equal(ra.code, 0);
    assert_memory_equal(&ra, &rb, sizeof ra);
    dump(f, f->s, &a);
    dump(f, f->s2, &b);
    assert_string_equal(a.buf, b.buf);
    assert_true(get_rec(f, f->s2, "a1", "web").attempts == 0);
    assert_true(get_rec(f, f->s2, "a1", "web").deployed_digest == 11);
}

/* Every allocation of applying each new kind of entry fails in turn: the
 * apply reports REMS_ENOMEM and leaves the tables as they were, then
 * succeeds. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry seq[9];
    struct collect before;
    struct collect after;
    size_t n = 0;
    size_t k;
    uint64_t i = 1;

    seq[0] = reg_e("a1");
    apply(f, i++, &seq[0]);
    seq[n++] = issue_rec("c1", "a1", "web", "redeploy", 1, 5, "q1");
    seq[n++] = resolve_e("c1", "a1", "acked");
    seq[n++] = open_e("a1", "web", "q3");
    seq[n++] = update_e(4, "resolve");
    seq[n++] =
        override_e(STATEMACHINE_ENTRY_OVERRIDE_SET, "agent", "a1", NULL, 0);
    seq[n++] =
        override_e(STATEMACHINE_ENTRY_OVERRIDE_CLEAR, "agent", "a1", NULL, 0);
    seq[n++] = weekly_e("w1", 1, 0, 60);
    seq[n++] = reset_e("a1", "web", "delete");
    for (k = 0; k < n; k++) {
        struct statemachine_result res;
        void *buf;
        size_t len;
        long fail;
        long live;
        int rv;
        encode(f, &seq[k], &buf, &len);
        live = f->heap.live;
        dump(f, f->s, &before);
        for (fail = 0;; fail++) {
            test_heap_fail_after(&f->heap, fail);
            rv = statemachine_apply(f->s, i, buf, len, &res, f->errmsg);
            test_heap_fail_after(&f->heap, -1);
            if (rv == 0) {
                break;
            }
            assert_int_equal(rv, REMS_ENOMEM);
            assert_int_equal(f->heap.live, live);
            dump(f, f->s, &after);
            assert_string_equal(before.buf, after.buf);
        }
        assert_true(fail >= 1);
        assert_int_equal(res.code, 0);
        rems_free(buf);
        i++;
    }
    assert_int_equal(get_rec(f, f->s, "a1", "web").rv, REMS_ENOTFOUND);
}

/* Visitors that must not be reached (the records do not decode). */
static int no_rec(void *data, const struct statemachine_remediation *r)
{
    (void)data;
    (void)r;
    fail();
    return 0;
}

static int no_incident(void *data, const struct statemachine_incident *i)
{
    (void)data;
    (void)i;
    fail();
    return 0;
}

static int no_override(void *data, const struct statemachine_override *o)
{
    (void)data;
    (void)o;
    fail();
    return 0;
}

static int no_window(void *data, const struct statemachine_window *w)
{
    (void)data;
    (void)w;
    fail();
    return 0;
}

/* Put @v under @k in @table of f->s, bypassing apply. */
static void put_raw(struct fixture *f,
                    enum storage_table table,
                    const void *k,
                    size_t kl,
                    const char *v)
{
    struct storage_txn *t;
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(storage_put(t, table, k, kl, v, strlen(v), f->errmsg), 0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
}

/* Records that do not decode are reported as REMS_ECORRUPT naming the
 * table, by gets and lists alike. */
static void corrupt_records(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t;
    struct statemachine_remediation r;
    struct statemachine_incident inc;
    struct statemachine_override o;
    struct statemachine_window w;
    unsigned char id[8];
    bool more;
    bool paused;

    put_raw(f, STORAGE_REMEDIATIONS, "a1\0web", 6, "\xc1");
    storage_u64_key(3, id);
    put_raw(f, STORAGE_INCIDENTS, id, sizeof id, "\x80"); /* {} */
    put_raw(f, STORAGE_OVERRIDES, "\x04", 1, "\x90");     /* [] */
    put_raw(f, STORAGE_WINDOWS, "w1", 2, "\x81\xa5scope\x09");
    storage_u64_key(4, id);
    put_raw(f, STORAGE_INCIDENTS_OPEN, id, sizeof id, "x");

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_remediation_get(t, "a1", 2, "web", 3, &r, f->errmsg),
        REMS_ECORRUPT);
    assert_errmsg_has(f, "remediations[");
    assert_int_equal(statemachine_remediation_list(t, NULL, 0, NULL, 0, NULL, 0,
                                                   10, no_rec, NULL, &more,
                                                   f->errmsg),
                     REMS_ECORRUPT);
    assert_int_equal(statemachine_incident_get(t, 3, &inc, f->errmsg),
                     REMS_ECORRUPT);
    assert_errmsg_has(f, "incidents[3]: record is corrupt");
    assert_int_equal(statemachine_incident_list(t, -1, NULL, 0, 0, 10,
                                                no_incident, NULL, &more,
                                                f->errmsg),
                     REMS_ECORRUPT);
    assert_int_equal(
        statemachine_incident_list(t, STATEMACHINE_INCIDENT_UNRESOLVED, NULL, 0,
                                   0, 10, no_incident, NULL, &more, f->errmsg),
        REMS_ECORRUPT);
    assert_errmsg_has(f, "incidents_open[4]: no incident");
    assert_int_equal(statemachine_override_get(t, STATEMACHINE_OVERRIDE_PAUSE,
                                               NULL, 0, NULL, 0, &o, f->errmsg),
                     REMS_ECORRUPT);
    assert_int_equal(statemachine_paused(t, &paused, f->errmsg), REMS_ECORRUPT);
    assert_int_equal(
        statemachine_override_list(t, no_override, NULL, f->errmsg),
        REMS_ECORRUPT);
    assert_int_equal(statemachine_window_get(t, "w1", 2, &w, f->errmsg),
                     REMS_ECORRUPT);
    assert_errmsg_has(f, "windows[w1]: record is corrupt");
    assert_int_equal(statemachine_window_list(t, NULL, 0, 10, no_window, NULL,
                                              &more, f->errmsg),
                     REMS_ECORRUPT);
    storage_txn_abort(t);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(entry_roundtrip),  T(decode_refusals),
        T(decode_required),  T(records_move_with_commands),
        T(remediation_list), T(incidents),
        T(overrides),        T(windows),
        T(audit_records),    T(deterministic),
        T(snapshot_restore), T(out_of_memory),
        T(corrupt_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
