/* Unit tests of policies' rollouts in statemachine/: the rollout_update
 * entry's round trips and decoder rules, the reached-array walker, the
 * rollout a policy_put starts and a policy_delete removes, every
 * operation's allowed and refused transitions, stale proposals,
 * rollbacks, request-id dedup, audit, corrupt records, out-of-memory
 * sweeps and snapshot/restore.
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

#define T0 1700000000123u /* time_ms of the first entry built here. */

enum {
    RUNNING = STATEMACHINE_ROLLOUT_RUNNING,
    PAUSED = STATEMACHINE_ROLLOUT_PAUSED,
    ABORTED = STATEMACHINE_ROLLOUT_ABORTED,
    ROLLED_BACK = STATEMACHINE_ROLLOUT_ROLLED_BACK,
    DONE = STATEMACHINE_ROLLOUT_DONE,
};

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char other[TEST_TMPDIR_SIZE + 16];
    struct test_heap heap;
    struct storage *s;
    struct storage *s2;
    char errmsg[REMS_ERRMSG_SIZE];
    uint64_t next; /* The next index apply() uses. */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    snprintf(f->other, sizeof f->other, "%s/other", f->dir);
    test_heap_install(&f->heap);
    assert_int_equal(storage_open(f->dir, NULL, &f->s, f->errmsg), 0);
    f->next = 1;
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

static struct statemachine_entry put_e(const char *key, const char *value)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_POLICY_PUT, NULL);
    SET(e, key, key);
    SET(e, value, value);
    return e;
}

static struct statemachine_entry del_e(const char *key)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_POLICY_DELETE, NULL);
    SET(e, key, key);
    return e;
}

/* A rollout_update of @key's rollout at @rev, but advance. */
static struct statemachine_entry
op_e(const char *key, uint64_t rev, const char *op)
{
    struct statemachine_entry e = base(STATEMACHINE_ENTRY_ROLLOUT_UPDATE, NULL);
    SET(e, key, key);
    SET(e, op, op);
    e.rollout_revision = rev;
    return e;
}

static struct statemachine_entry advance_e(const char *key,
                                           uint64_t rev,
                                           const char *stage,
                                           uint64_t batch,
                                           const char *reached)
{
    struct statemachine_entry e = op_e(key, rev, "advance");
    e.requested_by = NULL;
    e.requested_by_len = 0;
    SET(e, reason, "batch passed");
    SET(e, stage, stage);
    e.has_batch = true;
    e.batch = batch;
    SET(e, value, reached);
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

/* Apply @e at the next index, @e's time_ms moved on by the index. */
static struct statemachine_result apply(struct fixture *f,
                                        struct statemachine_entry e)
{
    uint64_t index = f->next++;
    e.time_ms = T0 + index;
    return apply_to(f, f->s, index, &e);
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

/* ------------------------------------------------------------------ */
/* Reading the state.                                                   */

/* A rollout as read, copied out of the transaction. */
struct ro {
    int rv;
    struct statemachine_rollout r;
    char target[64];
    char previous[64];
    char reached[256];
    char message[600];
    char requested_by[80];
};

static void copy(char *dst, size_t size, const char *s, size_t len)
{
    if (len >= size) {
        len = size - 1;
    }
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
}

static struct ro get_ro(struct fixture *f, struct storage *s, const char *key)
{
    struct storage_txn *t;
    struct ro o;
    memset(&o, 0, sizeof o);
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    o.rv = statemachine_rollout_get(t, key, strlen(key), &o.r, f->errmsg);
    if (o.rv == 0) {
        copy(o.target, sizeof o.target, o.r.target, o.r.target_len);
        copy(o.previous, sizeof o.previous, o.r.previous, o.r.previous_len);
        copy(o.reached, sizeof o.reached, o.r.reached, o.r.reached_len);
        copy(o.message, sizeof o.message, o.r.message, o.r.message_len);
        copy(o.requested_by, sizeof o.requested_by, o.r.requested_by,
             o.r.requested_by_len);
        assert_int_equal(o.r.key_len, strlen(key));
    }
    /* The borrowed strings die with the transaction. */
    o.r.key = o.r.target = o.r.previous = o.r.reached = NULL;
    o.r.message = o.r.requested_by = NULL;
    storage_txn_abort(t);
    return o;
}

static struct ro get(struct fixture *f, const char *key)
{
    return get_ro(f, f->s, key);
}

/* A policy as read. */
struct po {
    int rv;
    char value[64];
    uint64_t revision;
    uint64_t created_index;
    uint64_t modified_index;
};

static struct po get_policy(struct fixture *f, const char *key)
{
    struct storage_txn *t;
    struct statemachine_policy p;
    struct po o;
    memset(&o, 0, sizeof o);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    o.rv = statemachine_policy_get(t, key, strlen(key), &p, f->errmsg);
    if (o.rv == 0) {
        copy(o.value, sizeof o.value, p.value, p.value_len);
        o.revision = p.revision;
        o.created_index = p.created_index;
        o.modified_index = p.modified_index;
    }
    storage_txn_abort(t);
    return o;
}

/* Every byte of the rollouts and policies tables (not the audit, the
 * requests and meta, which every applied entry may change). */
struct dump {
    char *p;
    size_t len;
};

static void dump_add(struct dump *d, const void *data, size_t len)
{
    d->p = realloc(d->p, d->len + len + 1);
    assert_non_null(d->p);
    memcpy(d->p + d->len, data, len);
    d->len += len;
}

static struct dump dump_tables(struct fixture *f, struct storage *s)
{
    static const enum storage_table tables[] = {STORAGE_POLICIES,
                                                STORAGE_ROLLOUTS};
    struct storage_txn *t;
    struct dump d = {NULL, 0};
    size_t i;
    dump_add(&d, "", 0);
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    for (i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        struct storage_cursor *c;
        const void *k;
        const void *v;
        size_t kl;
        size_t vl;
        int rv;
        dump_add(&d, "|T", 2);
        assert_int_equal(storage_cursor_open(t, tables[i], &c, f->errmsg), 0);
        rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg);
        while (rv == 0) {
            dump_add(&d, &kl, sizeof kl);
            dump_add(&d, k, kl);
            dump_add(&d, &vl, sizeof vl);
            dump_add(&d, v, vl);
            rv = storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg);
        }
        assert_int_equal(rv, REMS_ENOTFOUND);
        storage_cursor_close(c);
    }
    storage_txn_abort(t);
    return d;
}

static void assert_dumps_equal(struct dump *a, struct dump *b)
{
    bool same = a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
    free(a->p);
    free(b->p);
    a->p = b->p = NULL;
    assert_true(same);
}

/* ------------------------------------------------------------------ */
/* Entries: round trips and the decoder's rules.                        */

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
        fail_msg("decode: %s (%s)", rems_errname(rv), f->errmsg);
    }
    assert_int_equal(d.type, STATEMACHINE_ENTRY_ROLLOUT_UPDATE);
    assert_true(d.time_ms == e->time_ms);
    SAME_STR(&d, e, requested_by);
    SAME_STR(&d, e, reason);
    SAME_STR(&d, e, request_id);
    SAME_STR(&d, e, key);
    SAME_STR(&d, e, op);
    SAME_STR(&d, e, stage);
    SAME_STR(&d, e, value);
    assert_int_equal(d.value != NULL, e->value != NULL);
    assert_int_equal(d.stage != NULL, e->stage != NULL);
    assert_true(d.rollout_revision == e->rollout_revision);
    assert_int_equal(d.has_batch, e->has_batch);
    assert_true(d.batch == e->batch);
    rems_free(buf);
}

static void entry_roundtrip(void **state)
{
    static const char *const ops[] = {"done", "pause", "resume", "abort",
                                      "rollback"};
    struct fixture *f = *state;
    struct statemachine_entry e;
    size_t i;
    int v;

    e = advance_e("prod/web", 7, "gate", 0, "[\"a1\"]");
    roundtrip(f, &e);
    e = advance_e("prod/web", UINT64_MAX, "pause", STATEMACHINE_BATCH_MAX,
                  " [ \"a1\" ,\n\"a2\",\t\"b:3\"\r] ");
    SET(e, request_id, "req-9");
    roundtrip(f, &e);
    e = advance_e("p", 1, "gate", 3, "[]");
    roundtrip(f, &e);
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        e = op_e("team/a", 12, ops[i]);
        roundtrip(f, &e);
    }

    assert_string_equal(statemachine_entry_type_name(19), "rollout_update");
    assert_string_equal(statemachine_rollout_state_name(RUNNING), "running");
    assert_string_equal(statemachine_rollout_state_name(PAUSED), "paused");
    assert_string_equal(statemachine_rollout_state_name(ABORTED), "aborted");
    assert_string_equal(statemachine_rollout_state_name(ROLLED_BACK),
                        "rolled_back");
    assert_string_equal(statemachine_rollout_state_name(DONE), "done");
    assert_string_equal(statemachine_rollout_state_name(5), "unknown");
    assert_string_equal(statemachine_rollout_state_name(-1), "unknown");
    assert_string_equal(statemachine_rollout_stage_name(0), "canary");
    assert_string_equal(statemachine_rollout_stage_name(1), "gate");
    assert_string_equal(statemachine_rollout_stage_name(2), "pause");
    assert_string_equal(statemachine_rollout_stage_name(3), "unknown");
    assert_string_equal(statemachine_rollout_op_name(0), "advance");
    assert_string_equal(statemachine_rollout_op_name(5), "rollback");
    assert_string_equal(statemachine_rollout_op_name(6), "unknown");
    for (v = 0; v < STATEMACHINE_ROLLOUT_STATE_NR; v++) {
        const char *n = statemachine_rollout_state_name(v);
        int out = -1;
        assert_int_equal(statemachine_rollout_state_parse(n, strlen(n), &out),
                         0);
        assert_int_equal(out, v);
    }
    for (v = 0; v < STATEMACHINE_ROLLOUT_STAGE_NR; v++) {
        const char *n = statemachine_rollout_stage_name(v);
        int out = -1;
        assert_int_equal(statemachine_rollout_stage_parse(n, strlen(n), &out),
                         0);
        assert_int_equal(out, v);
    }
    for (v = 0; v < STATEMACHINE_ROLLOUT_OP_NR; v++) {
        const char *n = statemachine_rollout_op_name(v);
        int out = -1;
        assert_int_equal(statemachine_rollout_op_parse(n, strlen(n), &out), 0);
        assert_int_equal(out, v);
    }
    v = 42;
    assert_int_equal(statemachine_rollout_state_parse("Running", 7, &v),
                     REMS_EINVAL);
    assert_int_equal(statemachine_rollout_stage_parse("gat", 3, &v),
                     REMS_EINVAL);
    assert_int_equal(statemachine_rollout_op_parse("advances", 8, &v),
                     REMS_EINVAL);
    assert_int_equal(statemachine_rollout_op_parse(NULL, 0, &v), REMS_EINVAL);
    assert_int_equal(v, 42);

    /* The encoder bounds the reached array. */
    {
        size_t n = STATEMACHINE_REACHED_MAX + 1;
        char *big = rems_malloc(n);
        void *buf;
        size_t len;
        assert_non_null(big);
        memset(big, ' ', n);
        e = advance_e("p", 1, "gate", 0, NULL);
        e.value = big;
        e.value_len = n;
        assert_int_equal(
            statemachine_entry_encode(&e, rems_malloc, &buf, &len, f->errmsg),
            REMS_EINVAL);
        assert_string_equal(f->errmsg, "value: 1048577 bytes, at most "
                                       "1048576 allowed");
        rems_free(big);
    }
}

/* @e must encode and be refused by the decoder with @msg; applied, it is
 * refused with REMS_EMALFORMED and changes no table. */
static void expect_refused_at(struct fixture *f,
                              int line,
                              const struct statemachine_entry *e,
                              const char *msg)
{
    struct statemachine_entry d;
    struct statemachine_result res;
    struct dump before;
    struct dump after;
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
    before = dump_tables(f, f->s);
    res = apply(f, *e);
    assert_int_equal(res.code, REMS_EMALFORMED);
    after = dump_tables(f, f->s);
    assert_dumps_equal(&before, &after);
}
#define expect_refused(f, e, msg) expect_refused_at((f), __LINE__, (e), (msg))

#define ID_RULE "1 to 64 characters of A-Z a-z 0-9 _ . : - without escapes"

static void decode_refusals(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    char long_id[80];

    apply(f, put_e("p", "{}")); /* At 1: something not to change. */

    e = op_e("p", 1, "advance");
    expect_refused(f, &e, "entry: body.stage: required for advance");
    e = op_e(NULL, 1, "done");
    expect_refused(f, &e, "entry: body.key: required");
    e = op_e("/p", 1, "done");
    expect_refused(f, &e, "entry: body.key: must not start or end with '/'");
    e = op_e("p", 0, "done");
    expect_refused(f, &e, "entry: body.target_revision: required (>= 1)");
    e = op_e("p", 1, NULL);
    expect_refused(f, &e, "entry: body.op: required");
    e = op_e("p", 1, "finish");
    expect_refused(f, &e,
                   "entry: body.op: must be advance, done, pause, "
                   "resume, abort or rollback");
    e = op_e("p", 1, "");
    expect_refused(f, &e, "entry: body.op: must be advance");

    /* Advance's own fields, and only there. */
    e = advance_e("p", 1, "canary", 0, "[]");
    expect_refused(f, &e, "entry: body.stage: must be gate or pause");
    e = advance_e("p", 1, "Gate", 0, "[]");
    expect_refused(f, &e, "entry: body.stage: must be gate or pause");
    e = advance_e("p", 1, "gate", 0, "[]");
    e.has_batch = false;
    expect_refused(f, &e, "entry: body.batch: required for advance");
    e = advance_e("p", 1, "gate", STATEMACHINE_BATCH_MAX + 1, "[]");
    expect_refused(f, &e, "entry: body.batch: must be 0..1000000");
    e = advance_e("p", 1, "gate", 0, NULL);
    expect_refused(f, &e, "entry: body.value: required for advance");
    e = op_e("p", 1, "pause");
    SET(e, stage, "gate");
    expect_refused(f, &e, "entry: body.stage: only for advance");
    e = op_e("p", 1, "done");
    e.has_batch = true;
    expect_refused(f, &e, "entry: body.batch: only for advance");
    e = op_e("p", 1, "abort");
    SET(e, value, "[]");
    expect_refused(f, &e, "entry: body.value: only for advance");

    /* The reached array. */
    e = advance_e("p", 1, "gate", 0, "");
    expect_refused(f, &e, "entry: body.value: must be a JSON array");
    e = advance_e("p", 1, "gate", 0, "{\"a1\":1}");
    expect_refused(f, &e, "entry: body.value: must be a JSON array");
    e = advance_e("p", 1, "gate", 0, "\"a1\"");
    expect_refused(f, &e, "entry: body.value: must be a JSON array");
    e = advance_e("p", 1, "gate", 0, "[1]");
    expect_refused(f, &e, "entry: body.value: every element must be a string");
    e = advance_e("p", 1, "gate", 0, "[\"a1\",]");
    expect_refused(f, &e, "entry: body.value: every element must be a string");
    e = advance_e("p", 1, "gate", 0, "[\"a1\" \"a2\"]");
    expect_refused(f, &e,
                   "entry: body.value: elements must be separated by "
                   "',' and the array closed by ']'");
    e = advance_e("p", 1, "gate", 0, "[\"a1\"");
    expect_refused(f, &e, "entry: body.value: elements must be separated");
    e = advance_e("p", 1, "gate", 0, "[");
    expect_refused(f, &e, "entry: body.value: every element must be a string");
    e = advance_e("p", 1, "gate", 0, "[\"a1");
    expect_refused(f, &e, "entry: body.value: a string is not terminated");
    e = advance_e("p", 1, "gate", 0, "[\"\"]");
    expect_refused(f, &e,
                   "entry: body.value: \"\" is not an agent id (" ID_RULE ")");
    e = advance_e("p", 1, "gate", 0, "[\"a 1\"]");
    expect_refused(f, &e, "entry: body.value: \"a 1\" is not an agent id");
    e = advance_e("p", 1, "gate", 0, "[\"a\\u0031\"]");
    expect_refused(f, &e, "is not an agent id");
    memset(long_id, 'x', sizeof long_id);
    long_id[0] = '[';
    long_id[1] = '"';
    memcpy(long_id + 67, "\"]", 3); /* 65 x */
    e = advance_e("p", 1, "gate", 0, long_id);
    expect_refused(f, &e, "is not an agent id");
    e = advance_e("p", 1, "gate", 0, "[\"a1\",\"a1\"]");
    expect_refused(f, &e,
                   "entry: body.value: \"a1\" after \"a1\": agent ids "
                   "must be unique and in increasing byte order");
    e = advance_e("p", 1, "gate", 0, "[\"a2\",\"a1\"]");
    expect_refused(f, &e, "\"a1\" after \"a2\"");
    e = advance_e("p", 1, "gate", 0, "[\"a10\",\"a1\"]");
    expect_refused(f, &e, "\"a1\" after \"a10\"");
    e = advance_e("p", 1, "gate", 0, "[\"a1\"] x");
    expect_refused(f, &e, "entry: body.value: bytes follow the array");
    e = advance_e("p", 1, "gate", 0, "[] []");
    expect_refused(f, &e, "entry: body.value: bytes follow the array");

    /* Nothing was written: the rollout of the put is as it was. */
    assert_int_equal(get(f, "p").r.state, RUNNING);
    assert_true(get(f, "p").r.updated_index == 1);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A rollout_update envelope whose body is {key: "p", op: "done"} plus the
 * field @k, packed as an unsigned (@num) or a string. */
static void
expect_hand_refused(struct fixture *f, const char *k, bool num, const char *msg)
{
    struct statemachine_entry d;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pk_str(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pk_str(&pk, "type");
    msgpack_pack_uint64(&pk, STATEMACHINE_ENTRY_ROLLOUT_UPDATE);
    pk_str(&pk, "time_ms");
    msgpack_pack_uint64(&pk, T0);
    pk_str(&pk, "body");
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "key");
    pk_str(&pk, "p");
    pk_str(&pk, "op");
    pk_str(&pk, "done");
    pk_str(&pk, k);
    if (num) {
        msgpack_pack_uint64(&pk, 3);
    } else {
        pk_str(&pk, "3");
    }
    rv = statemachine_entry_decode(sb.data, sb.size, &d, f->errmsg);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(rv, REMS_EMALFORMED);
    assert_errmsg_has(f, msg);
}

/* Fields of the wrong MessagePack type. */
static void decode_types(void **state)
{
    struct fixture *f = *state;
    expect_hand_refused(f, "target_revision", false,
                        "entry: body.target_revision: must be an unsigned "
                        "integer");
    expect_hand_refused(f, "stage", true,
                        "entry: body.stage: must be a string");
    expect_hand_refused(f, "batch", false,
                        "entry: body.batch: must be an unsigned integer");
    expect_hand_refused(f, "op", true, "entry: body.op: must be a string");
    expect_hand_refused(f, "value", true, "entry: body.value: must be bytes");
    /* And a correct one, to show the builder is sound. */
    expect_hand_refused(f, "future", true,
                        "entry: body.target_revision: required (>= 1)");
}

/* The walker gives each id in turn, borrowed from the array. */
static void reached_walk(void **state)
{
    struct fixture *f = *state;
    const char *s = " [\"a1\" , \"a2\",\"b.c:d-e_F\" ] \n";
    size_t pos = 0;
    const char *id;
    size_t id_len;

    assert_int_equal(statemachine_rollout_reached_next(s, strlen(s), &pos, &id,
                                                       &id_len, f->errmsg),
                     0);
    assert_field(id, id_len, "a1");
    assert_ptr_equal(id, s + 3);
    assert_int_equal(statemachine_rollout_reached_next(s, strlen(s), &pos, &id,
                                                       &id_len, f->errmsg),
                     0);
    assert_field(id, id_len, "a2");
    assert_int_equal(statemachine_rollout_reached_next(s, strlen(s), &pos, &id,
                                                       &id_len, f->errmsg),
                     0);
    assert_field(id, id_len, "b.c:d-e_F");
    assert_int_equal(statemachine_rollout_reached_next(s, strlen(s), &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_ENOTFOUND);
    assert_int_equal(statemachine_rollout_reached_next(s, strlen(s), &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_ENOTFOUND);

    pos = 0;
    assert_int_equal(statemachine_rollout_reached_next("[]", 2, &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_ENOTFOUND);
    assert_int_equal(pos, 0);
    assert_int_equal(statemachine_rollout_reached_next("[ ]x", 4, &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "bytes follow the array");
    /* A position that does not follow an id. */
    pos = 1;
    assert_int_equal(statemachine_rollout_reached_next("[\"a\"]", 5, &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "position is not after an agent id");
    pos = 1;
    assert_int_equal(statemachine_rollout_reached_next("\"a\"", 3, &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_EMALFORMED);
    pos = 2;
    assert_int_equal(statemachine_rollout_reached_next("a\"]", 3, &pos, &id,
                                                       &id_len, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "position is not after an agent id");
}

/* ------------------------------------------------------------------ */
/* Apply.                                                               */

/* policy_put starts a rollout: no previous for a new key, the old value
 * for an existing one, and the running rollout's previous when one is
 * under way. */
static void put_starts_rollout(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct ro o;

    res = apply(f, put_e("team/a", "{\"v\":1}")); /* 1 */
    assert_int_equal(res.code, 0);
    o = get(f, "team/a");
    assert_int_equal(o.rv, 0);
    assert_true(o.r.target_revision == 1);
    assert_string_equal(o.target, "{\"v\":1}");
    assert_false(o.r.has_previous);
    assert_true(o.r.previous_revision == 0);
    assert_string_equal(o.previous, "");
    assert_int_equal(o.r.state, RUNNING);
    assert_int_equal(o.r.stage, STATEMACHINE_ROLLOUT_CANARY);
    assert_true(o.r.batch == 0);
    assert_string_equal(o.reached, "[]");
    assert_true(o.r.n_reached == 0);
    assert_true(o.r.started_index == 1);
    assert_true(o.r.started_ms == T0 + 1);
    assert_true(o.r.stage_started_ms == T0 + 1);
    assert_true(o.r.updated_index == 1);
    assert_true(o.r.updated_ms == T0 + 1);
    assert_true(o.r.finished_ms == 0);
    assert_string_equal(o.message, "because");
    assert_string_equal(o.requested_by, "");
    assert_true(o.r.rollback_revision == 0);

    /* Finished, then a new put: previous = the old value. */
    assert_int_equal(apply(f, op_e("team/a", 1, "done")).code, 0); /* 2 */
    apply(f, put_e("team/a", "{\"v\":2}"));                        /* 3 */
    o = get(f, "team/a");
    assert_true(o.r.target_revision == 3);
    assert_string_equal(o.target, "{\"v\":2}");
    assert_true(o.r.has_previous);
    assert_true(o.r.previous_revision == 1);
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_int_equal(o.r.state, RUNNING);
    assert_true(o.r.finished_ms == 0);
    assert_true(o.r.started_index == 3);

    /* Half rolled out, then a new put: the agents not reached still run
     * v1, which stays the previous. */
    e = advance_e("team/a", 3, "gate", 0, "[\"a1\"]");
    assert_int_equal(apply(f, e).code, 0);  /* 4 */
    apply(f, put_e("team/a", "{\"v\":3}")); /* 5 */
    o = get(f, "team/a");
    assert_true(o.r.target_revision == 5);
    assert_string_equal(o.target, "{\"v\":3}");
    assert_true(o.r.previous_revision == 1);
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_int_equal(o.r.stage, STATEMACHINE_ROLLOUT_CANARY);
    assert_string_equal(o.reached, "[]");
    /* Paused, and aborted: the same. */
    assert_int_equal(apply(f, op_e("team/a", 5, "pause")).code, 0); /* 6 */
    apply(f, put_e("team/a", "{\"v\":4}"));                         /* 7 */
    o = get(f, "team/a");
    assert_true(o.r.target_revision == 7);
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_int_equal(apply(f, op_e("team/a", 7, "abort")).code, 0); /* 8 */
    apply(f, put_e("team/a", "{\"v\":5}"));                         /* 9 */
    o = get(f, "team/a");
    assert_true(o.r.previous_revision == 1);
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_int_equal(o.r.state, RUNNING);
    assert_string_equal(o.requested_by, "");

    /* A new key rolled out half way and put again has still nothing to
     * fall back to. */
    apply(f, put_e("team/b", "{}"));        /* 10 */
    apply(f, put_e("team/b", "{\"b\":2}")); /* 11 */
    o = get(f, "team/b");
    assert_false(o.r.has_previous);
    assert_string_equal(o.previous, "");

    /* A put refused by its condition starts nothing. */
    e = put_e("team/a", "{\"v\":6}");
    e.has_if_revision = true;
    e.if_revision = 3;
    res = apply(f, e); /* 12 */
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(get(f, "team/a").r.target_revision == 9);
    e = put_e("team/c", "{}");
    e.has_if_revision = true;
    e.if_revision = 1;
    assert_int_equal(apply(f, e).code, REMS_ECONFLICT); /* 13 */
    assert_int_equal(get(f, "team/c").rv, REMS_ENOTFOUND);
}

/* Drive a fresh rollout of @key to @st; returns its target revision. */
static uint64_t rollout_in(struct fixture *f, const char *key, int st)
{
    uint64_t rev = f->next;
    apply(f, put_e(key, "{\"old\":1}"));
    assert_int_equal(apply(f, op_e(key, rev, "done")).code, 0);
    rev = f->next;
    apply(f, put_e(key, "{\"new\":1}"));
    switch (st) {
        case PAUSED:
            assert_int_equal(apply(f, op_e(key, rev, "pause")).code, 0);
            break;
        case ABORTED:
            assert_int_equal(apply(f, op_e(key, rev, "abort")).code, 0);
            break;
        case ROLLED_BACK:
            assert_int_equal(apply(f, op_e(key, rev, "rollback")).code, 0);
            break;
        case DONE:
            assert_int_equal(apply(f, op_e(key, rev, "done")).code, 0);
            break;
        default:
            break;
    }
    assert_int_equal(get(f, key).r.state, st);
    return rev;
}

/* Every operation from every state: allowed moves reach the table's
 * state, the others are refused with REMS_ECONFLICT and change nothing. */
static void transitions(void **state)
{
    static const char *const ops[] = {"advance", "done",  "pause",
                                      "resume",  "abort", "rollback"};
    /* to[op][from], -1 for refused. */
    static const int to[6][5] = {
        /* running  paused   aborted  rolled_back  done */
        {RUNNING, -1, -1, -1, -1},                       /* advance */
        {DONE, -1, -1, -1, -1},                          /* done */
        {PAUSED, -1, -1, -1, -1},                        /* pause */
        {-1, RUNNING, -1, -1, -1},                       /* resume */
        {ABORTED, ABORTED, -1, -1, -1},                  /* abort */
        {ROLLED_BACK, ROLLED_BACK, ROLLED_BACK, -1, -1}, /* rollback */
    };
    struct fixture *f = *state;
    int op;
    int st;

    for (op = 0; op < 6; op++) {
        for (st = 0; st < STATEMACHINE_ROLLOUT_STATE_NR; st++) {
            char key[64];
            struct statemachine_entry e;
            struct statemachine_result res;
            struct dump before;
            struct dump after;
            uint64_t rev;
            uint64_t at;
            struct ro o;
            snprintf(key, sizeof key, "t/%s/%s", ops[op],
                     statemachine_rollout_state_name(st));
            rev = rollout_in(f, key, st);
            if (op == 0) {
                e = advance_e(key, rev, "gate", 1, "[\"a1\",\"a2\"]");
            } else {
                e = op_e(key, rev, ops[op]);
            }
            before = dump_tables(f, f->s);
            at = f->next;
            res = apply(f, e);
            o = get(f, key);
            if (to[op][st] < 0) {
                after = dump_tables(f, f->s);
                assert_dumps_equal(&before, &after);
                assert_int_equal(res.code, REMS_ECONFLICT);
                assert_int_equal(res.rollout_state, st);
                assert_true(res.current_revision == rev);
                assert_true(res.revision == 0);
                assert_errmsg_has(f, "is not allowed in state");
                continue;
            }
            free(before.p);
            assert_int_equal(res.code, 0);
            assert_int_equal(res.rollout_state, to[op][st]);
            assert_true(res.revision == at);
            assert_int_equal(o.r.state, to[op][st]);
            assert_true(o.r.updated_index == at);
            assert_true(o.r.updated_ms == T0 + at);
            assert_true(o.r.target_revision == rev);
            assert_string_equal(o.target, "{\"new\":1}");
            assert_string_equal(o.previous, "{\"old\":1}");
            assert_string_equal(o.message,
                                op == 0 ? "batch passed" : "because");
            assert_true(
                o.r.finished_ms ==
                (to[op][st] == RUNNING || to[op][st] == PAUSED ? 0 : T0 + at));
            /* Who: the last pause, resume, abort or rollback. */
            assert_string_equal(o.requested_by,
                                op >= 2 || st != RUNNING ? "alice" : "");
        }
    }
}

/* Advance stores what it is given and restarts the stage clock; pause
 * and resume keep them, resume restarts the clock again. */
static void advance_pause_resume(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct ro o;

    apply(f, put_e("p", "{}")); /* 1 */
    e = advance_e("p", 1, "gate", 0, "[\"c1\"]");
    SET(e, request_id, "adv-1");
    res = apply(f, e); /* 2 */
    assert_int_equal(res.code, 0);
    o = get(f, "p");
    assert_int_equal(o.r.stage, STATEMACHINE_ROLLOUT_GATE);
    assert_true(o.r.batch == 0);
    assert_string_equal(o.reached, "[\"c1\"]");
    assert_true(o.r.n_reached == 1);
    assert_true(o.r.stage_started_ms == T0 + 2);
    assert_string_equal(o.message, "batch passed");
    assert_string_equal(o.requested_by, "");

    e = advance_e("p", 1, "pause", 1, " [\"a1\", \"a2\", \"c1\"] ");
    assert_int_equal(apply(f, e).code, 0); /* 3 */
    o = get(f, "p");
    assert_int_equal(o.r.stage, STATEMACHINE_ROLLOUT_PAUSE);
    assert_true(o.r.batch == 1);
    assert_string_equal(o.reached, " [\"a1\", \"a2\", \"c1\"] ");
    assert_true(o.r.n_reached == 3);
    assert_true(o.r.stage_started_ms == T0 + 3);

    e = op_e("p", 1, "pause");
    SET(e, requested_by, "bob");
    SET(e, reason, "looks odd");
    assert_int_equal(apply(f, e).code, 0); /* 4 */
    o = get(f, "p");
    assert_int_equal(o.r.state, PAUSED);
    assert_int_equal(o.r.stage, STATEMACHINE_ROLLOUT_PAUSE);
    assert_true(o.r.stage_started_ms == T0 + 3);
    assert_string_equal(o.message, "looks odd");
    assert_string_equal(o.requested_by, "bob");
    /* No advance while paused. */
    e = advance_e("p", 1, "gate", 2, "[\"a1\"]");
    assert_int_equal(apply(f, e).code, REMS_ECONFLICT); /* 5 */

    e = op_e("p", 1, "resume");
    SET(e, requested_by, "carol");
    SET(e, reason, "");
    assert_int_equal(apply(f, e).code, 0); /* 6 */
    o = get(f, "p");
    assert_int_equal(o.r.state, RUNNING);
    assert_true(o.r.stage_started_ms == T0 + 6);
    assert_string_equal(o.message, "");
    assert_string_equal(o.requested_by, "carol");
    assert_string_equal(o.reached, " [\"a1\", \"a2\", \"c1\"] ");

    /* The leader's next steps keep the last person. */
    e = advance_e("p", 1, "gate", 2, "[\"a1\",\"a2\",\"a3\",\"c1\"]");
    assert_int_equal(apply(f, e).code, 0);                    /* 7 */
    assert_int_equal(apply(f, op_e("p", 1, "done")).code, 0); /* 8 */
    o = get(f, "p");
    assert_int_equal(o.r.state, DONE);
    assert_true(o.r.finished_ms == T0 + 8);
    assert_true(o.r.n_reached == 4);
    assert_string_equal(o.requested_by, "carol");

    /* A retried request gets its first answer and changes nothing. */
    e = advance_e("p", 1, "gate", 0, "[\"c1\"]");
    SET(e, request_id, "adv-1");
    res = apply(f, e); /* 9 */
    assert_true(res.duplicate);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 2);
    assert_true(res.revision == 2);
    assert_int_equal(res.rollout_state, RUNNING);
    assert_int_equal(get(f, "p").r.state, DONE);
}

/* A proposal for another revision than the rollout's is refused and
 * changes nothing; a key without a rollout gives REMS_ENOTFOUND. */
static void stale_and_missing(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct dump before;
    struct dump after;

    apply(f, put_e("p", "{\"a\":1}")); /* 1 */
    apply(f, put_e("p", "{\"a\":2}")); /* 2 */
    before = dump_tables(f, f->s);
    e = advance_e("p", 1, "gate", 0, "[\"a1\"]");
    SET(e, request_id, "stale-1");
    res = apply(f, e); /* 3 */
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 2);
    assert_int_equal(res.rollout_state, RUNNING);
    assert_true(res.revision == 0);
    assert_string_equal(f->errmsg, "rollout_update: policy p: the rollout is "
                                   "of revision 2, not 1");
    res = apply(f, op_e("p", 3, "rollback")); /* 4 */
    assert_int_equal(res.code, REMS_ECONFLICT);
    after = dump_tables(f, f->s);
    assert_dumps_equal(&before, &after);
    /* The retry of the stale one is answered the same. */
    res = apply(f, e); /* 5 */
    assert_true(res.duplicate);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 2);
    assert_int_equal(res.rollout_state, RUNNING);

    res = apply(f, op_e("q", 1, "pause")); /* 6 */
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_string_equal(f->errmsg, "rollout_update: policy q has no rollout");
    assert_int_equal(get(f, "q").rv, REMS_ENOTFOUND);
    assert_int_equal(get_policy(f, "q").rv, REMS_ENOTFOUND);
}

struct collect {
    char buf[4096];
    size_t len;
};

static int collect_audit(void *data, const struct statemachine_audit *a)
{
    struct collect *c = data;
    int n = snprintf(c->buf + c->len, sizeof c->buf - c->len,
                     "%llu:%d:%d:%llu:%.*s,", (unsigned long long)a->index,
                     a->type, a->code, (unsigned long long)a->revision,
                     (int)a->key_len, a->key);
    assert_true(n > 0 && (size_t)n < sizeof c->buf - c->len);
    c->len += (size_t)n;
    return 0;
}

/* Rollback writes the previous document back at a new revision, keeps
 * the rollout (rolled back) and starts no new one; a later put can
 * compare-and-set against that revision. */
static void rollback_restores(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct storage_txn *t;
    struct collect c;
    struct ro o;
    struct po p;
    bool more;

    apply(f, put_e("p", "{\"v\":1}"));                        /* 1 */
    assert_int_equal(apply(f, op_e("p", 1, "done")).code, 0); /* 2 */
    apply(f, put_e("p", "{\"v\":2}"));                        /* 3 */
    e = advance_e("p", 3, "gate", 0, "[\"a1\"]");
    apply(f, e);                                               /* 4 */
    assert_int_equal(apply(f, op_e("p", 3, "abort")).code, 0); /* 5 */
    p = get_policy(f, "p");
    assert_string_equal(p.value, "{\"v\":2}"); /* Abort keeps it. */
    e = op_e("p", 3, "rollback");
    SET(e, requested_by, "dave");
    SET(e, reason, "canary broke");
    res = apply(f, e); /* 6 */
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 6);
    assert_int_equal(res.rollout_state, ROLLED_BACK);
    assert_false(res.created);

    p = get_policy(f, "p");
    assert_int_equal(p.rv, 0);
    assert_string_equal(p.value, "{\"v\":1}");
    assert_true(p.revision == 6);
    assert_true(p.modified_index == 6);
    assert_true(p.created_index == 1);
    o = get(f, "p");
    assert_int_equal(o.r.state, ROLLED_BACK);
    assert_true(o.r.target_revision == 3);
    assert_string_equal(o.target, "{\"v\":2}");
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_true(o.r.previous_revision == 1);
    assert_true(o.r.rollback_revision == 6);
    assert_true(o.r.finished_ms == T0 + 6);
    assert_string_equal(o.requested_by, "dave");
    assert_string_equal(o.message, "canary broke");
    assert_string_equal(o.reached, "[\"a1\"]");

    /* Audited under the policy key, with the new revision. */
    memset(&c, 0, sizeof c);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_audit_list(t, 3, 10, collect_audit, &c, &more, f->errmsg),
        0);
    storage_txn_abort(t);
    assert_string_equal(c.buf, "4:19:0:4:p,5:19:0:5:p,6:19:0:6:p,");

    /* A put that compares against the rollback's revision. */
    e = put_e("p", "{\"v\":3}");
    e.has_if_revision = true;
    e.if_revision = 3;
    res = apply(f, e); /* 7 */
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 6);
    e.if_revision = 6;
    res = apply(f, e); /* 8 */
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 8);
    o = get(f, "p");
    assert_int_equal(o.r.state, RUNNING);
    assert_true(o.r.previous_revision == 6);
    assert_string_equal(o.previous, "{\"v\":1}");
    assert_true(get_policy(f, "p").created_index == 1);
}

/* Rolling a new policy back deletes it; deleting a policy deletes its
 * rollout. */
static void rollback_new_and_delete(void **state)
{
    struct fixture *f = *state;
    struct statemachine_result res;
    struct ro o;

    apply(f, put_e("new", "{}"));               /* 1 */
    res = apply(f, op_e("new", 1, "rollback")); /* 2 */
    assert_int_equal(res.code, 0);
    assert_int_equal(get_policy(f, "new").rv, REMS_ENOTFOUND);
    o = get(f, "new");
    assert_int_equal(o.r.state, ROLLED_BACK);
    assert_true(o.r.rollback_revision == 0);
    assert_false(o.r.has_previous);
    /* Nothing is left to roll back. */
    assert_int_equal(apply(f, op_e("new", 1, "rollback")).code,
                     REMS_ECONFLICT); /* 3 */
    /* Put again: still no previous. */
    apply(f, put_e("new", "{\"x\":1}")); /* 4 */
    o = get(f, "new");
    assert_false(o.r.has_previous);
    assert_true(o.r.target_revision == 4);
    assert_true(get_policy(f, "new").created_index == 4);

    res = apply(f, del_e("new")); /* 5 */
    assert_int_equal(res.code, 0);
    assert_int_equal(get(f, "new").rv, REMS_ENOTFOUND);
    assert_int_equal(apply(f, op_e("new", 4, "pause")).code,
                     REMS_ENOTFOUND); /* 6 */
    /* A refused delete keeps the rollout. */
    apply(f, put_e("k", "{}")); /* 7 */
    {
        struct statemachine_entry e = del_e("k");
        e.has_if_revision = true;
        e.if_revision = 1;
        assert_int_equal(apply(f, e).code, REMS_ECONFLICT); /* 8 */
    }
    assert_int_equal(get(f, "k").rv, 0);
    /* Deleting the key after a rollback deleted it: nothing to remove. */
    apply(f, op_e("k", 7, "rollback"));                          /* 9 */
    assert_int_equal(apply(f, del_e("k")).code, REMS_ENOTFOUND); /* 10 */
    assert_int_equal(get(f, "k").r.state, ROLLED_BACK);
}

/* Documents far over STATEMACHINE_BLOB_MAX go into the rollout whole. */
static void large_documents(void **state)
{
    struct fixture *f = *state;
    size_t n = 3 * 1024 * 1024;
    char *a = rems_malloc(n + 1);
    char *b = rems_malloc(n + 1);
    struct storage_txn *t;
    struct statemachine_rollout r;
    struct statemachine_policy p;

    assert_non_null(a);
    assert_non_null(b);
    memset(a, 'a', n);
    memset(b, 'b', n);
    a[n] = b[n] = '\0';
    apply(f, put_e("big", a));        /* 1 */
    apply(f, op_e("big", 1, "done")); /* 2 */
    apply(f, put_e("big", b));        /* 3 */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_rollout_get(t, "big", 3, &r, f->errmsg), 0);
    assert_int_equal(r.target_len, n);
    assert_memory_equal(r.target, b, n);
    assert_int_equal(r.previous_len, n);
    assert_memory_equal(r.previous, a, n);
    storage_txn_abort(t);
    assert_int_equal(apply(f, op_e("big", 3, "rollback")).code, 0); /* 4 */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_policy_get(t, "big", 3, &p, f->errmsg), 0);
    assert_int_equal(p.value_len, n);
    assert_memory_equal(p.value, a, n);
    storage_txn_abort(t);
    rems_free(a);
    rems_free(b);
}

static int collect_rollout(void *data, const struct statemachine_rollout *r)
{
    struct collect *c = data;
    int n = snprintf(c->buf + c->len, sizeof c->buf - c->len, "%.*s:%llu:%s,",
                     (int)r->key_len, r->key,
                     (unsigned long long)r->target_revision,
                     statemachine_rollout_state_name(r->state));
    assert_true(n > 0 && (size_t)n < sizeof c->buf - c->len);
    c->len += (size_t)n;
    return 0;
}

static int stop_visit(void *data, const struct statemachine_rollout *r)
{
    (void)data;
    (void)r;
    return REMS_ECANCELED;
}

static const char *list_on(struct fixture *f,
                           struct storage *s,
                           struct collect *c,
                           const char *after,
                           size_t after_len,
                           size_t limit,
                           bool *more)
{
    struct storage_txn *t;
    memset(c, 0, sizeof *c);
    assert_int_equal(storage_txn_begin(s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_rollout_list(t, after, after_len, limit,
                                               collect_rollout, c, more,
                                               f->errmsg),
                     0);
    storage_txn_abort(t);
    return c->buf;
}

static const char *list(struct fixture *f,
                        struct collect *c,
                        const char *after,
                        size_t after_len,
                        size_t limit,
                        bool *more)
{
    return list_on(f, f->s, c, after, after_len, limit, more);
}

/* Lists are in key order, paged by the last key seen. */
static void rollout_list(void **state)
{
    struct fixture *f = *state;
    struct collect c;
    struct storage_txn *t;
    char huge[600];
    bool more;

    assert_string_equal(list(f, &c, NULL, 0, 10, &more), "");
    assert_false(more);
    apply(f, put_e("b", "{}"));      /* 1 */
    apply(f, put_e("a/x", "{}"));    /* 2 */
    apply(f, put_e("a", "{}"));      /* 3 */
    apply(f, put_e("c", "{}"));      /* 4 */
    apply(f, op_e("c", 4, "abort")); /* 5 */
    assert_string_equal(list(f, &c, NULL, 0, 10, &more),
                        "a:3:running,a/x:2:running,b:1:running,c:4:aborted,");
    assert_false(more);
    assert_string_equal(list(f, &c, NULL, 0, 2, &more),
                        "a:3:running,a/x:2:running,");
    assert_true(more);
    assert_string_equal(list(f, &c, "a/x", 3, 2, &more),
                        "b:1:running,c:4:aborted,");
    assert_false(more);
    assert_string_equal(list(f, &c, "a", 1, 1, &more), "a/x:2:running,");
    assert_true(more);
    assert_string_equal(list(f, &c, "a0", 2, 10, &more),
                        "b:1:running,c:4:aborted,");
    assert_string_equal(list(f, &c, "c", 1, 10, &more), "");
    assert_false(more);
    assert_string_equal(list(f, &c, NULL, 0, 0, &more), "");
    assert_true(more);
    /* An @after longer than any key. */
    memset(huge, 'b', sizeof huge);
    assert_string_equal(list(f, &c, huge, sizeof huge, 10, &more),
                        "c:4:aborted,");
    huge[0] = 'a';
    assert_string_equal(list(f, &c, huge, sizeof huge, 10, &more),
                        "b:1:running,c:4:aborted,");
    /* A visitor's error stops the walk and is returned. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_rollout_list(t, NULL, 0, 10, stop_visit, NULL,
                                               &more, f->errmsg),
                     REMS_ECANCELED);
    /* Gets of keys that cannot exist. */
    {
        struct statemachine_rollout r;
        assert_int_equal(statemachine_rollout_get(t, "", 0, &r, f->errmsg),
                         REMS_ENOTFOUND);
        assert_int_equal(
            statemachine_rollout_get(t, huge, sizeof huge, &r, f->errmsg),
            REMS_ENOTFOUND);
    }
    storage_txn_abort(t);
}

static int no_visit(void *data, const struct statemachine_rollout *r)
{
    (void)data;
    (void)r;
    fail();
    return 0;
}

static void
put_raw(struct fixture *f, const char *key, const void *v, size_t vl)
{
    struct storage_txn *t;
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_ROLLOUTS, key, strlen(key), v, vl, f->errmsg),
        0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
}

/* A stored record with @k's value replaced by a string (or, with @k
 * NULL, a field twice, or with @drop, without @k). */
static void put_variant(struct fixture *f,
                        const char *key,
                        const char *k,
                        bool drop,
                        uint64_t state)
{
    static const char *const u64s[] = {
        "target_revision",  "previous_revision", "batch",
        "n_reached",        "started_index",     "started_ms",
        "stage_started_ms", "updated_index",     "updated_ms",
        "finished_ms",      "rollback_revision"};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t i;
    uint32_t n = 19 + (k == NULL) - drop;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n);
    for (i = 0; i < sizeof u64s / sizeof u64s[0]; i++) {
        if (k != NULL && strcmp(k, u64s[i]) == 0) {
            if (!drop) {
                pk_str(&pk, u64s[i]);
                pk_str(&pk, "1");
            }
            continue;
        }
        pk_str(&pk, u64s[i]);
        msgpack_pack_uint64(&pk, 1);
    }
    pk_str(&pk, "state");
    msgpack_pack_uint64(&pk, state);
    pk_str(&pk, "stage");
    msgpack_pack_uint64(&pk, 0);
    pk_str(&pk, "has_previous");
    msgpack_pack_false(&pk);
    pk_str(&pk, "target");
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "{}", 2);
    pk_str(&pk, "previous");
    pk_str(&pk, ""); /* A str is read as bytes too. */
    pk_str(&pk, "reached");
    pk_str(&pk, "[]");
    pk_str(&pk, "message");
    pk_str(&pk, "");
    pk_str(&pk, "requested_by");
    pk_str(&pk, "");
    if (k == NULL) {
        pk_str(&pk, "batch");
        msgpack_pack_uint64(&pk, 2);
    }
    put_raw(f, key, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_corrupt(struct fixture *f, const char *key)
{
    struct storage_txn *t;
    struct statemachine_rollout r;
    bool more;
    char expect[128];
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_rollout_get(t, key, strlen(key), &r, f->errmsg),
        REMS_ECORRUPT);
    snprintf(expect, sizeof expect, "rollouts[%s]: record is corrupt", key);
    assert_string_equal(f->errmsg, expect);
    assert_int_equal(statemachine_rollout_list(t, NULL, 0, 10, no_visit, NULL,
                                               &more, f->errmsg),
                     REMS_ECORRUPT);
    storage_txn_abort(t);
}

/* Records that do not decode are REMS_ECORRUPT for gets and lists, and
 * an entry that needs one fails to apply. */
static void corrupt_records(void **state)
{
    struct fixture *f = *state;
    struct statemachine_rollout r;
    struct storage_txn *t;
    struct statemachine_result res;
    void *buf;
    size_t len;
    struct statemachine_entry e;

    /* A sound hand-made record decodes (the builder is right). */
    put_variant(f, "k", "none", false, DONE);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_rollout_get(t, "k", 1, &r, f->errmsg), 0);
    assert_int_equal(r.state, DONE);
    storage_txn_abort(t);

    put_raw(f, "k", "\xc1", 1);
    expect_corrupt(f, "k");
    put_raw(f, "k", "\x80", 1); /* {} */
    expect_corrupt(f, "k");
    put_raw(f, "k", "\x81\x01\x01", 3); /* {1: 1} */
    expect_corrupt(f, "k");
    put_variant(f, "k", "batch", false, RUNNING);
    expect_corrupt(f, "k");
    put_variant(f, "k", "rollback_revision", true, RUNNING);
    expect_corrupt(f, "k");
    put_variant(f, "k", NULL, false, RUNNING); /* batch twice */
    expect_corrupt(f, "k");
    put_variant(f, "k", "none", false, STATEMACHINE_ROLLOUT_STATE_NR);
    expect_corrupt(f, "k");

    /* Entries that read it fail, writing nothing. */
    e = put_e("k", "{}");
    encode(f, &e, &buf, &len);
    assert_int_equal(statemachine_apply(f->s, 1, buf, len, &res, f->errmsg),
                     REMS_ECORRUPT);
    rems_free(buf);
    e = op_e("k", 1, "done");
    encode(f, &e, &buf, &len);
    assert_int_equal(statemachine_apply(f->s, 1, buf, len, &res, f->errmsg),
                     REMS_ECORRUPT);
    rems_free(buf);
    assert_int_equal(get_policy(f, "k").rv, REMS_ENOTFOUND);
}

/* Every allocation of applying each kind of rollout entry (and the puts
 * and deletes that start and remove rollouts) fails in turn: the apply
 * reports REMS_ENOMEM and leaves the tables as they were, then
 * succeeds. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry seq[16];
    size_t n = 0;
    size_t k;
    uint64_t i = 1;

    seq[n++] = put_e("p", "{\"v\":1}");                  /* 1 */
    seq[n++] = put_e("p", "{\"v\":2}");                  /* 2 */
    seq[n++] = advance_e("p", 2, "gate", 0, "[\"a1\"]"); /* 3 */
    seq[n++] = op_e("p", 2, "pause");                    /* 4 */
    seq[n++] = op_e("p", 2, "resume");                   /* 5 */
    seq[n++] = put_e("p", "{\"v\":3}");                  /* 6 */
    seq[n++] = op_e("p", 6, "abort");                    /* 7 */
    seq[n++] = op_e("p", 6, "rollback");                 /* 8 */
    seq[n++] = put_e("p", "{\"v\":4}");                  /* 9 */
    seq[n++] = op_e("p", 9, "done");                     /* 10 */
    seq[n++] = put_e("q", "{}");                         /* 11 */
    seq[n++] = op_e("q", 11, "rollback");                /* 12 */
    seq[n++] = del_e("p");                               /* 13 */
    seq[n++] = op_e("p", 9, "pause"); /* Not found. */   /* 14 */
    seq[n] = op_e("q", 11, "pause"); /* A conflict. */   /* 15 */
    SET(seq[n], request_id, "r-15");
    n++;
    for (k = 0; k < n; k++) {
        struct statemachine_result res;
        struct dump before;
        void *buf;
        size_t len;
        long fail;
        long live;
        int rv;
        seq[k].time_ms = T0 + i;
        encode(f, &seq[k], &buf, &len);
        live = f->heap.live;
        before = dump_tables(f, f->s);
        for (fail = 0;; fail++) {
            struct dump after;
            test_heap_fail_after(&f->heap, fail);
            rv = statemachine_apply(f->s, i, buf, len, &res, f->errmsg);
            test_heap_fail_after(&f->heap, -1);
            if (rv == 0) {
                break;
            }
            assert_int_equal(rv, REMS_ENOMEM);
            assert_string_equal(f->errmsg, "out of memory");
            assert_int_equal(f->heap.live, live);
            after = dump_tables(f, f->s);
            assert_true(after.len == before.len &&
                        memcmp(after.p, before.p, after.len) == 0);
            free(after.p);
        }
        free(before.p);
        assert_true(fail >= 1);
        assert_int_equal(res.code, k == 13   ? REMS_ENOTFOUND
                                   : k == 14 ? REMS_ECONFLICT
                                             : 0);
        rems_free(buf);
        i++;
    }
    f->next = i;
    assert_string_equal(get_policy(f, "p").value, "");
    assert_int_equal(get_policy(f, "p").rv, REMS_ENOTFOUND);
    assert_int_equal(get(f, "q").r.state, ROLLED_BACK);
    assert_int_equal(get_policy(f, "q").rv, REMS_ENOTFOUND);
}

/* A snapshot carries the rollouts: the restored store answers the same
 * and applies later entries the same. */
static void snapshot_restore(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result ra;
    struct statemachine_result rb;
    struct dump a;
    struct dump b;
    struct collect ca;
    struct collect cb;
    void *snap;
    size_t len;
    bool replaced = false;
    bool more;
    uint64_t i;

    apply(f, put_e("a", "{\"v\":1}"));                         /* 1 */
    apply(f, op_e("a", 1, "done"));                            /* 2 */
    apply(f, put_e("a", "{\"v\":2}"));                         /* 3 */
    apply(f, advance_e("a", 3, "gate", 0, "[\"x1\",\"x2\"]")); /* 4 */
    apply(f, put_e("b", "{}"));                                /* 5 */
    apply(f, op_e("b", 5, "pause"));                           /* 6 */
    assert_int_equal(statemachine_snapshot(f->s, rems_malloc, rems_free, &snap,
                                           &len, f->errmsg),
                     0);
    assert_int_equal(mkdir(f->other, 0700), 0);
    assert_int_equal(storage_open(f->other, NULL, &f->s2, f->errmsg), 0);
    assert_int_equal(
        statemachine_restore(f->s2, snap, len, &replaced, f->errmsg), 0);
    assert_true(replaced);
    rems_free(snap);

    a = dump_tables(f, f->s);
    b = dump_tables(f, f->s2);
    assert_dumps_equal(&a, &b);
    assert_string_equal(get_ro(f, f->s2, "a").reached, "[\"x1\",\"x2\"]");
    assert_string_equal(get_ro(f, f->s2, "a").previous, "{\"v\":1}");
    assert_int_equal(get_ro(f, f->s2, "b").r.state, PAUSED);

    i = f->next;
    e = op_e("a", 3, "rollback");
    e.time_ms = T0 + i;
    ra = apply_to(f, f->s, i, &e);
    rb = apply_to(f, f->s2, i, &e);
    assert_int_equal(ra.code, 0);
    assert_memory_equal(&ra, &rb, sizeof ra);
    i++;
    e = op_e("b", 5, "resume");
    e.time_ms = T0 + i;
    ra = apply_to(f, f->s, i, &e);
    rb = apply_to(f, f->s2, i, &e);
    assert_int_equal(ra.code, 0);
    assert_memory_equal(&ra, &rb, sizeof ra);
    a = dump_tables(f, f->s);
    b = dump_tables(f, f->s2);
    assert_dumps_equal(&a, &b);
    list_on(f, f->s, &ca, NULL, 0, 10, &more);
    list_on(f, f->s2, &cb, NULL, 0, 10, &more);
    assert_string_equal(ca.buf, "a:3:rolled_back,b:5:running,");
    assert_string_equal(ca.buf, cb.buf);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(entry_roundtrip),      T(decode_refusals),
        T(decode_types),         T(reached_walk),
        T(put_starts_rollout),   T(transitions),
        T(advance_pause_resume), T(stale_and_missing),
        T(rollback_restores),    T(rollback_new_and_delete),
        T(large_documents),      T(rollout_list),
        T(corrupt_records),      T(out_of_memory),
        T(snapshot_restore),
    };
    return cmocka_run_group_tests_name("statemachine rollouts", tests, NULL,
                                       NULL);
}
