/* Unit tests of statemachine/: log-entry envelopes, deterministic apply,
 * request-id dedup, audit records, queries, snapshots and restore.
 *
 * Each test gets a store in a fresh temporary directory and the counting test
 * heap; teardown closes the stores first and asserts last that no allocation
 * is left. Malformed envelopes are built by hand with msgpack-c's packer
 * (struct spec below), so each decoding rule is broken on its own. */
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
#include "common/mpread.h"
#include "statemachine/statemachine.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#define W STATEMACHINE_REQUEST_WINDOW

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

/* ------------------------------------------------------------------ */
/* Entries.                                                             */

static void set_str(const char **s, size_t *len, const char *v)
{
    *s = v;
    *len = v != NULL ? strlen(v) : 0;
}

static struct statemachine_entry entry_base(int type)
{
    struct statemachine_entry e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.time_ms = 1700000000123u;
    set_str(&e.trace_id, &e.trace_id_len, "trace-1");
    set_str(&e.requested_by, &e.requested_by_len, "alice");
    set_str(&e.reason, &e.reason_len, "because");
    return e;
}

static struct statemachine_entry
put_e(const char *key, const char *value, const char *req)
{
    struct statemachine_entry e = entry_base(STATEMACHINE_ENTRY_POLICY_PUT);
    set_str(&e.key, &e.key_len, key);
    set_str(&e.value, &e.value_len, value);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry del_e(const char *key, const char *req)
{
    struct statemachine_entry e = entry_base(STATEMACHINE_ENTRY_POLICY_DELETE);
    set_str(&e.key, &e.key_len, key);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static struct statemachine_entry cas(struct statemachine_entry e, uint64_t rev)
{
    e.has_if_revision = true;
    e.if_revision = rev;
    return e;
}

static struct statemachine_entry
member_set_e(uint64_t id, const char *raft, const char *api)
{
    struct statemachine_entry e = entry_base(STATEMACHINE_ENTRY_MEMBER_SET);
    e.member_id = id;
    set_str(&e.raft_address, &e.raft_address_len, raft);
    set_str(&e.api_address, &e.api_address_len, api);
    return e;
}

static struct statemachine_entry member_del_e(uint64_t id)
{
    struct statemachine_entry e = entry_base(STATEMACHINE_ENTRY_MEMBER_DELETE);
    e.member_id = id;
    return e;
}

static struct statemachine_entry noop_e(const char *req)
{
    struct statemachine_entry e = entry_base(STATEMACHINE_ENTRY_NOOP);
    set_str(&e.request_id, &e.request_id_len, req);
    return e;
}

static void encode(struct fixture *f,
                   const struct statemachine_entry *e,
                   void **buf,
                   size_t *len)
{
    int rv = statemachine_entry_encode(e, rems_malloc, buf, len, f->errmsg);
    assert_int_equal(rv, 0);
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
    encode(f, e, &buf, &len);
    assert_int_equal(statemachine_apply(s, index, buf, len, &res, f->errmsg),
                     0);
    rems_free(buf);
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
    SAME(key);
    SAME(value);
    SAME(raft_address);
    SAME(api_address);
    SAME(agent_address);
#undef SAME
    assert_int_equal(a->has_if_revision, b->has_if_revision);
    assert_true(a->if_revision == b->if_revision);
    assert_true(a->member_id == b->member_id);
}

static void roundtrip(struct fixture *f, const struct statemachine_entry *e)
{
    struct statemachine_entry d;
    void *buf;
    size_t len;
    encode(f, e, &buf, &len);
    assert_int_equal(statemachine_entry_decode(buf, len, &d, f->errmsg), 0);
    assert_entries_equal(e, &d);
    /* Strings borrow the buffer. */
    if (d.key_len > 0) {
        assert_true((const char *)d.key > (const char *)buf &&
                    (const char *)d.key < (const char *)buf + len);
    }
    rems_free(buf);
}

/* Every type survives encode and decode with all its fields. */
static void entry_roundtrip(void **state)
{
    struct fixture *f = *state;
    static char reason[STATEMACHINE_REASON_MAX];
    static char user[STATEMACHINE_USER_MAX];
    static char id[STATEMACHINE_ID_MAX];
    static char key[STATEMACHINE_KEY_MAX];
    static char addr[STATEMACHINE_ADDR_MAX];
    static char value[70000];
    struct statemachine_entry e;

    memset(reason, 'r', sizeof reason);
    memset(user, 'u', sizeof user);
    memset(id, 'i', sizeof id);
    memset(key, 'k', sizeof key);
    memset(addr, 'a', sizeof addr);
    memset(value, '{', sizeof value);

    e = noop_e(NULL);
    roundtrip(f, &e);
    e = noop_e("req-1");
    roundtrip(f, &e);
    e = put_e("team/a", "{\"x\":1}", "req-2");
    roundtrip(f, &e);
    e = cas(put_e("team/a", "{}", "req-3"), 17);
    roundtrip(f, &e);
    e = cas(put_e("team/a", "{}", NULL), 0);
    roundtrip(f, &e);
    e = cas(put_e("a", "", NULL), UINT64_MAX);
    roundtrip(f, &e);
    e = del_e("team/a", "req-4");
    roundtrip(f, &e);
    e = cas(del_e("team/a", NULL), 9);
    roundtrip(f, &e);
    e = cas(del_e("x", NULL), 0);
    roundtrip(f, &e);
    e = member_set_e(3, "10.0.0.3:7001", "10.0.0.3:8080");
    roundtrip(f, &e);
    e = member_set_e(UINT64_MAX, "", "");
    roundtrip(f, &e);
    e = member_set_e(4, "10.0.0.4:7001", "10.0.0.4:8080");
    set_str(&e.agent_address, &e.agent_address_len, "10.0.0.4:9443");
    roundtrip(f, &e);
    e = member_del_e(42);
    roundtrip(f, &e);

    /* Every field at its limit, a large value and a large time. */
    e = cas(put_e(NULL, NULL, NULL), 5);
    e.key = key;
    e.key_len = sizeof key;
    e.value = value;
    e.value_len = sizeof value;
    e.trace_id = id;
    e.trace_id_len = sizeof id;
    e.request_id = id;
    e.request_id_len = sizeof id;
    e.requested_by = user;
    e.requested_by_len = sizeof user;
    e.reason = reason;
    e.reason_len = sizeof reason;
    e.time_ms = UINT64_MAX;
    roundtrip(f, &e);
    e = member_set_e(1, NULL, NULL);
    e.raft_address = addr;
    e.raft_address_len = sizeof addr;
    e.api_address = addr;
    e.api_address_len = sizeof addr;
    roundtrip(f, &e);

    /* Absent optional strings decode as empty. */
    e = put_e("k", "v", NULL);
    e.trace_id = NULL;
    e.trace_id_len = 0;
    e.requested_by = NULL;
    e.requested_by_len = 0;
    e.reason = NULL;
    e.reason_len = 0;
    roundtrip(f, &e);
}

static void entry_type_name(void **state)
{
    (void)state;
    assert_string_equal(statemachine_entry_type_name(1), "noop");
    assert_string_equal(statemachine_entry_type_name(2), "policy_put");
    assert_string_equal(statemachine_entry_type_name(3), "policy_delete");
    assert_string_equal(statemachine_entry_type_name(4), "member_set");
    assert_string_equal(statemachine_entry_type_name(5), "member_delete");
    assert_string_equal(statemachine_entry_type_name(0), "unknown");
    assert_string_equal(statemachine_entry_type_name(6), "agent_register");
    assert_string_equal(statemachine_entry_type_name(11), "command_resolve");
    assert_string_equal(
        statemachine_entry_type_name(STATEMACHINE_ENTRY_TYPE_NR), "unknown");
    assert_string_equal(statemachine_entry_type_name(-1), "unknown");
}

/* Over-long fields are REMS_EINVAL naming the field; nothing is
 * allocated. */
static void entry_encode_limits(void **state)
{
    struct fixture *f = *state;
    static char big[STATEMACHINE_REASON_MAX + 1];
    struct statemachine_entry e;
    void *buf = NULL;
    size_t len = 0;
    struct {
        const char **s;
        size_t *len;
        size_t max;
        const char *name;
    } cases[6];
    size_t i;

    memset(big, 'x', sizeof big);
    e = member_set_e(1, "r", "a");
    cases[0].s = &e.trace_id;
    cases[0].len = &e.trace_id_len;
    cases[0].max = STATEMACHINE_ID_MAX;
    cases[0].name = "trace_id";
    cases[1].s = &e.request_id;
    cases[1].len = &e.request_id_len;
    cases[1].max = STATEMACHINE_ID_MAX;
    cases[1].name = "request_id";
    cases[2].s = &e.requested_by;
    cases[2].len = &e.requested_by_len;
    cases[2].max = STATEMACHINE_USER_MAX;
    cases[2].name = "requested_by";
    cases[3].s = &e.reason;
    cases[3].len = &e.reason_len;
    cases[3].max = STATEMACHINE_REASON_MAX;
    cases[3].name = "reason";
    cases[4].s = &e.raft_address;
    cases[4].len = &e.raft_address_len;
    cases[4].max = STATEMACHINE_ADDR_MAX;
    cases[4].name = "raft_address";
    cases[5].s = &e.api_address;
    cases[5].len = &e.api_address_len;
    cases[5].max = STATEMACHINE_ADDR_MAX;
    cases[5].name = "api_address";

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
        assert_int_equal(f->heap.live, 2); /* Only the store's. */
        *cases[i].s = old;
        *cases[i].len = old_len;
    }
}

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM, a message and
 * no leak, until encoding succeeds. */
static void entry_encode_out_of_memory(void **state)
{
    struct fixture *f = *state;
    static char reason[STATEMACHINE_REASON_MAX];
    struct statemachine_entry e = put_e("team/a", "{\"k\":true}", "req-1");
    long live = f->heap.live;
    void *buf = NULL;
    size_t len = 0;
    int rv;
    int n;

    memset(reason, 'r', sizeof reason);
    e.reason = reason;
    e.reason_len = sizeof reason;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = statemachine_entry_encode(&e, rems_malloc, &buf, &len, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(buf);
        assert_int_equal(f->heap.live, live);
    }
    assert_true(n >= 2); /* The packing buffer and the result. */
    assert_int_equal(f->heap.live, live + 1);
    rems_free(buf);
}

/* Policy keys: 1..256 bytes of [A-Za-z0-9._/-], segments neither empty nor
 * "." nor "..". */
static void key_check(void **state)
{
    struct fixture *f = *state;
    static const char *const good[] = {
        "a",     "a/b",   "a.b-c_d", "A/Z/09", "..a", "a..",
        ".a/b.", "a/...", "x/y/z/w", "-",      "_",
    };
    static const struct {
        const char *key;
        const char *msg;
    } bad[] = {
        {"", "key: must be 1 to 256 bytes long"},
        {"/a", "key: must not start or end with '/' or contain '//'"},
        {"a/", "key: must not start or end with '/' or contain '//'"},
        {"a//b", "key: must not start or end with '/' or contain '//'"},
        {"/", "key: must not start or end with '/' or contain '//'"},
        {"a/./b", "key: must not contain a '.' or '..' segment"},
        {"a/../b", "key: must not contain a '.' or '..' segment"},
        {".", "key: must not contain a '.' or '..' segment"},
        {"..", "key: must not contain a '.' or '..' segment"},
        {"a/..", "key: must not contain a '.' or '..' segment"},
        {"./a", "key: must not contain a '.' or '..' segment"},
        {"a b", "key: byte 1 is not one of A-Z a-z 0-9 . _ - /"},
        {"a\xc3\xa9", "key: byte 1 is not one of A-Z a-z 0-9 . _ - /"},
        {"ab:c", "key: byte 2 is not one of A-Z a-z 0-9 . _ - /"},
        {"a*", "key: byte 1 is not one of A-Z a-z 0-9 . _ - /"},
    };
    char longkey[STATEMACHINE_KEY_MAX + 2];
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(
            statemachine_key_check(good[i], strlen(good[i]), f->errmsg), 0);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f->errmsg[0] = '\0';
        assert_int_equal(
            statemachine_key_check(bad[i].key, strlen(bad[i].key), f->errmsg),
            REMS_EINVAL);
        assert_string_equal(f->errmsg, bad[i].msg);
    }
    /* An embedded NUL is a bad byte, not the end of the key. */
    assert_int_equal(statemachine_key_check("ab\0c", 4, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg,
                        "key: byte 2 is not one of A-Z a-z 0-9 . _ - /");

    memset(longkey, 'k', sizeof longkey);
    longkey[100] = '/';
    assert_int_equal(
        statemachine_key_check(longkey, STATEMACHINE_KEY_MAX, f->errmsg), 0);
    assert_int_equal(
        statemachine_key_check(longkey, STATEMACHINE_KEY_MAX + 1, f->errmsg),
        REMS_EINVAL);
    assert_string_equal(f->errmsg, "key: must be 1 to 256 bytes long");
}

/* ------------------------------------------------------------------ */
/* Hand-made envelopes for the decoding rules.                          */

enum { FV, FTYPE, FTIME, FTRACE, FREQ, FUSER, FREASON, FBODY, F_NR };
enum { BKEY, BVALUE, BIFREV, BID, BRAFT, BAPI, B_NR };

static const char *const field_names[F_NR] = {
    "v",          "type",         "time_ms", "trace_id",
    "request_id", "requested_by", "reason",  "body",
};
static const char *const body_names[B_NR] = {
    "key", "value", "if_revision", "id", "raft_address", "api_address",
};

struct spec {
    uint64_t v;
    uint64_t type;
    uint64_t time_ms;
    const char *str[F_NR]; /* FTRACE..FREASON */
    unsigned omit;         /* Bit per field: leave it out. */
    unsigned twice;        /* Bit per field: write it twice. */
    int wrong;             /* Field written with a wrong type, or -1. */
    bool body_first;       /* Write body before the other fields. */
    bool extra;            /* An unknown envelope field (skipped). */
    bool trailing;         /* A byte after the envelope. */
    unsigned body_omit;    /* Bit per body field. */
    int body_wrong;        /* Body field with a wrong type, or -1. */
    bool body_extra;       /* An unknown body field (skipped). */
    const char *key;
    const char *value;
    bool has_if_revision;
    uint64_t if_revision;
    uint64_t id;
    const char *raft;
    const char *api;
};

static struct spec spec_of(uint64_t type)
{
    struct spec sp;
    memset(&sp, 0, sizeof sp);
    sp.v = STATEMACHINE_ENVELOPE_VERSION;
    sp.type = type;
    sp.time_ms = 1234;
    sp.str[FTRACE] = "trace-1";
    sp.str[FREQ] = "req-1";
    sp.str[FUSER] = "alice";
    sp.str[FREASON] = "because";
    sp.wrong = -1;
    sp.body_wrong = -1;
    sp.key = "team/a";
    sp.value = "{}";
    sp.id = 2;
    sp.raft = "127.0.0.1:7002";
    sp.api = "127.0.0.1:8002";
    return sp;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static bool body_has(const struct spec *sp, int field)
{
    bool policy = sp->type == STATEMACHINE_ENTRY_POLICY_PUT ||
                  sp->type == STATEMACHINE_ENTRY_POLICY_DELETE;
    bool member = sp->type == STATEMACHINE_ENTRY_MEMBER_SET ||
                  sp->type == STATEMACHINE_ENTRY_MEMBER_DELETE;
    if (sp->body_omit & (1u << field)) {
        return false;
    }
    switch (field) {
        case BKEY:
            return policy;
        case BVALUE:
            return sp->type == STATEMACHINE_ENTRY_POLICY_PUT;
        case BIFREV:
            return policy && sp->has_if_revision;
        case BID:
            return member;
        default:
            return sp->type == STATEMACHINE_ENTRY_MEMBER_SET;
    }
}

static void pack_body(const struct spec *sp, msgpack_packer *pk)
{
    uint32_t n = sp->body_extra ? 1 : 0;
    int i;
    for (i = 0; i < B_NR; i++) {
        n += body_has(sp, i) ? 1 : 0;
    }
    msgpack_pack_map(pk, n);
    if (sp->body_extra) {
        pk_str(pk, "future");
        msgpack_pack_array(pk, 2);
        msgpack_pack_nil(pk);
        msgpack_pack_double(pk, 1.5);
    }
    for (i = 0; i < B_NR; i++) {
        if (!body_has(sp, i)) {
            continue;
        }
        pk_str(pk, body_names[i]);
        if (sp->body_wrong == i) {
            if (i == BIFREV || i == BID) {
                pk_str(pk, "7");
            } else {
                msgpack_pack_uint64(pk, 7);
            }
            continue;
        }
        switch (i) {
            case BKEY:
                pk_str(pk, sp->key);
                break;
            case BVALUE:
                msgpack_pack_bin(pk, strlen(sp->value));
                msgpack_pack_bin_body(pk, sp->value, strlen(sp->value));
                break;
            case BIFREV:
                msgpack_pack_uint64(pk, sp->if_revision);
                break;
            case BID:
                msgpack_pack_uint64(pk, sp->id);
                break;
            case BRAFT:
                pk_str(pk, sp->raft);
                break;
            default:
                pk_str(pk, sp->api);
                break;
        }
    }
}

static void pack_field(const struct spec *sp, msgpack_packer *pk, int i)
{
    pk_str(pk, field_names[i]);
    if (i == FBODY) {
        if (sp->wrong == FBODY) {
            msgpack_pack_array(pk, 0);
        } else {
            pack_body(sp, pk);
        }
        return;
    }
    if (sp->wrong == i) {
        if (i == FV || i == FTYPE || i == FTIME) {
            pk_str(pk, "1");
        } else {
            msgpack_pack_uint64(pk, 7);
        }
        return;
    }
    switch (i) {
        case FV:
            msgpack_pack_uint64(pk, sp->v);
            break;
        case FTYPE:
            msgpack_pack_uint64(pk, sp->type);
            break;
        case FTIME:
            msgpack_pack_uint64(pk, sp->time_ms);
            break;
        default:
            pk_str(pk, sp->str[i]);
            break;
    }
}

/* Pack @sp into @sb (msgpack_sbuffer_destroy() it). */
static void build(const struct spec *sp, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    uint32_t n = sp->extra ? 1 : 0;
    int i;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (i = 0; i < F_NR; i++) {
        if (!(sp->omit & (1u << i))) {
            n += (sp->twice & (1u << i)) ? 2 : 1;
        }
    }
    msgpack_pack_map(&pk, n);
    if (sp->body_first && !(sp->omit & (1u << FBODY))) {
        pack_field(sp, &pk, FBODY);
    }
    if (sp->extra) {
        pk_str(&pk, "x-future");
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, "nested");
        msgpack_pack_true(&pk);
    }
    for (i = 0; i < F_NR; i++) {
        if ((sp->omit & (1u << i)) || (sp->body_first && i == FBODY)) {
            continue;
        }
        pack_field(sp, &pk, i);
        if (sp->twice & (1u << i)) {
            pack_field(sp, &pk, i);
        }
    }
    if (sp->body_first && (sp->twice & (1u << FBODY))) {
        pack_field(sp, &pk, FBODY);
    }
    if (sp->trailing) {
        msgpack_pack_nil(&pk);
    }
}

static int decode_spec(struct fixture *f,
                       const struct spec *sp,
                       struct statemachine_entry *e)
{
    msgpack_sbuffer sb;
    int rv;
    build(sp, &sb);
    f->errmsg[0] = '\0';
    rv = statemachine_entry_decode(sb.data, sb.size, e, f->errmsg);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

#define assert_errmsg_has(f, sub)                                              \
    do {                                                                       \
        if (strstr((f)->errmsg, (sub)) == NULL) {                              \
            fail_msg("errmsg \"%s\" lacks \"%s\"", (f)->errmsg, (sub));        \
        }                                                                      \
    } while (0)

/* Decode @sp and expect @code with @msg in the message. */
static void expect_reject(struct fixture *f,
                          const struct spec *sp,
                          int code,
                          const char *msg)
{
    struct statemachine_entry e;
    int rv = decode_spec(f, sp, &e);
    if (rv != code) {
        fail_msg("decode: %s (%s), expected %s with \"%s\"", rems_errname(rv),
                 f->errmsg, rems_errname(code), msg);
    }
    assert_errmsg_has(f, msg);
}

/* The builder's own output decodes, in any field order, with unknown
 * fields skipped and optional strings absent. */
static void decode_accepts(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct spec sp;
    uint64_t type;

    /* Agent, lease and command entries have their own tests. */
    for (type = 1; type <= STATEMACHINE_ENTRY_MEMBER_DELETE; type++) {
        sp = spec_of(type);
        sp.has_if_revision = true;
        sp.if_revision = 3;
        assert_int_equal(decode_spec(f, &sp, &e), 0);
        assert_int_equal(e.type, (int)type);
        assert_true(e.time_ms == 1234);
        assert_field(e.request_id, e.request_id_len, "req-1");
        sp.body_first = true;
        sp.extra = true;
        sp.body_extra = true;
        assert_int_equal(decode_spec(f, &sp, &e), 0);
        assert_int_equal(e.type, (int)type);
    }
    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.body_first = true;
    assert_int_equal(decode_spec(f, &sp, &e), 0);
    assert_field(e.key, e.key_len, "team/a");
    assert_field(e.value, e.value_len, "{}");
    assert_false(e.has_if_revision);

    sp = spec_of(STATEMACHINE_ENTRY_MEMBER_SET);
    assert_int_equal(decode_spec(f, &sp, &e), 0);
    assert_true(e.member_id == 2);
    assert_field(e.raft_address, e.raft_address_len, "127.0.0.1:7002");
    assert_field(e.api_address, e.api_address_len, "127.0.0.1:8002");

    /* trace_id, request_id, requested_by and reason are optional. */
    sp = spec_of(STATEMACHINE_ENTRY_POLICY_DELETE);
    sp.omit = (1u << FTRACE) | (1u << FREQ) | (1u << FUSER) | (1u << FREASON);
    assert_int_equal(decode_spec(f, &sp, &e), 0);
    assert_int_equal(e.request_id_len, 0);
    assert_int_equal(e.reason_len, 0);

    /* A value sent as str rather than bin is accepted. */
    {
        struct statemachine_entry put = put_e("k", "{}", NULL);
        void *buf;
        size_t len;
        unsigned char *p;
        size_t i;
        encode(f, &put, &buf, &len);
        p = buf;
        for (i = 0; i + 1 < len; i++) {
            if (p[i] == 0xc4 && p[i + 1] == 2) { /* bin8 of length 2 */
                p[i] = 0xd9;                     /* str8 */
                break;
            }
        }
        assert_true(i + 1 < len);
        assert_int_equal(statemachine_entry_decode(buf, len, &e, f->errmsg), 0);
        assert_field(e.value, e.value_len, "{}");
        rems_free(buf);
    }
}

static void decode_not_a_map(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    static const unsigned char array[] = {0x91, 0x01};
    static const unsigned char nil[] = {0xc0};

    assert_int_equal(
        statemachine_entry_decode(array, sizeof array, &e, f->errmsg),
        REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "entry: envelope: must be a map");
    assert_int_equal(statemachine_entry_decode(nil, sizeof nil, &e, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "entry: envelope: must be a map");
    assert_int_equal(statemachine_entry_decode(nil, 0, &e, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "entry: envelope: must be a map");
}

static void decode_missing_fields(void **state)
{
    struct fixture *f = *state;
    struct spec sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);

    sp.omit = 1u << FV;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: v: required");
    sp.omit = 1u << FTYPE;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: type: required");
    sp.omit = 1u << FTIME;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: time_ms: required");
    sp.omit = 1u << FBODY;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body: required");

    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.body_omit = 1u << BKEY;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.key: required");
    sp.body_omit = 1u << BVALUE;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.value: required");
    sp = spec_of(STATEMACHINE_ENTRY_POLICY_DELETE);
    sp.body_omit = 1u << BKEY;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.key: required");
    sp = spec_of(STATEMACHINE_ENTRY_MEMBER_SET);
    sp.body_omit = 1u << BID;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.id: required");
    sp.body_omit = 1u << BRAFT;
    expect_reject(f, &sp, REMS_EMALFORMED,
                  "entry: body.raft_address: required");
    sp.body_omit = 1u << BAPI;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.api_address: required");
    sp = spec_of(STATEMACHINE_ENTRY_MEMBER_DELETE);
    sp.body_omit = 1u << BID;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body.id: required");
}

static void decode_unsupported(void **state)
{
    struct fixture *f = *state;
    struct spec sp = spec_of(STATEMACHINE_ENTRY_NOOP);

    sp.v = 2;
    expect_reject(f, &sp, REMS_EUNSUPPORTED,
                  "entry: v: version 2 is not supported");
    sp.v = 0;
    expect_reject(f, &sp, REMS_EUNSUPPORTED, "entry: v: version 0");
    sp.v = UINT64_MAX;
    expect_reject(f, &sp, REMS_EUNSUPPORTED,
                  "version 18446744073709551615 is not supported");
    sp = spec_of(STATEMACHINE_ENTRY_NOOP);
    sp.type = 0;
    expect_reject(f, &sp, REMS_EUNSUPPORTED,
                  "entry: type: unknown entry type 0");
    sp.type = STATEMACHINE_ENTRY_TYPE_NR;
    expect_reject(f, &sp, REMS_EUNSUPPORTED,
                  "entry: type: unknown entry type 20");
    sp.type = 1000000;
    expect_reject(f, &sp, REMS_EUNSUPPORTED,
                  "entry: type: unknown entry type 1000000");
}

static void decode_duplicates(void **state)
{
    struct fixture *f = *state;
    struct spec sp;
    int i;

    for (i = 0; i < F_NR; i++) {
        char msg[64];
        sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
        sp.twice = 1u << i;
        snprintf(msg, sizeof msg, "entry: %s: appears twice", field_names[i]);
        expect_reject(f, &sp, REMS_EMALFORMED, msg);
    }
    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.body_first = true;
    sp.twice = 1u << FBODY;
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: body: appears twice");
}

static void decode_wrong_types(void **state)
{
    struct fixture *f = *state;
    static const char *const env_msg[F_NR] = {
        "entry: v: must be an unsigned integer",
        "entry: type: must be an unsigned integer",
        "entry: time_ms: must be an unsigned integer",
        "entry: trace_id: must be a string",
        "entry: request_id: must be a string",
        "entry: requested_by: must be a string",
        "entry: reason: must be a string",
        "entry: body: must be a map",
    };
    static const char *const body_msg[B_NR] = {
        "entry: body.key: must be a string",
        "entry: body.value: must be bytes",
        "entry: body.if_revision: must be an unsigned integer",
        "entry: body.id: must be an integer >= 1",
        "entry: body.raft_address: must be a string",
        "entry: body.api_address: must be a string",
    };
    struct spec sp;
    int i;

    for (i = 0; i < F_NR; i++) {
        sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
        sp.wrong = i;
        expect_reject(f, &sp, REMS_EMALFORMED, env_msg[i]);
    }
    for (i = 0; i < B_NR; i++) {
        sp = spec_of(i <= BIFREV ? STATEMACHINE_ENTRY_POLICY_PUT
                                 : STATEMACHINE_ENTRY_MEMBER_SET);
        sp.has_if_revision = true;
        sp.body_wrong = i;
        expect_reject(f, &sp, REMS_EMALFORMED, body_msg[i]);
    }
    /* Member id 0 is no member. */
    sp = spec_of(STATEMACHINE_ENTRY_MEMBER_DELETE);
    sp.id = 0;
    expect_reject(f, &sp, REMS_EMALFORMED,
                  "entry: body.id: must be an integer >= 1");

    /* Keys that are not strings, and a negative version. */
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct statemachine_entry e;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, 1);
        assert_int_equal(
            statemachine_entry_decode(sb.data, sb.size, &e, f->errmsg),
            REMS_EMALFORMED);
        assert_string_equal(f->errmsg, "entry: envelope: keys must be strings");
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, "v");
        msgpack_pack_int64(&pk, -1);
        assert_int_equal(
            statemachine_entry_decode(sb.data, sb.size, &e, f->errmsg),
            REMS_EMALFORMED);
        assert_string_equal(f->errmsg, "entry: v: must be an unsigned integer");
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 4);
        pk_str(&pk, "v");
        msgpack_pack_uint64(&pk, 1);
        pk_str(&pk, "type");
        msgpack_pack_uint64(&pk, 1);
        pk_str(&pk, "time_ms");
        msgpack_pack_uint64(&pk, 1);
        pk_str(&pk, "body");
        msgpack_pack_map(&pk, 1);
        msgpack_pack_true(&pk);
        msgpack_pack_true(&pk);
        assert_int_equal(
            statemachine_entry_decode(sb.data, sb.size, &e, f->errmsg),
            REMS_EMALFORMED);
        assert_string_equal(f->errmsg, "entry: body: keys must be strings");
        msgpack_sbuffer_destroy(&sb);
    }
}

static void decode_too_long(void **state)
{
    struct fixture *f = *state;
    static char big[STATEMACHINE_REASON_MAX + 2];
    struct statemachine_entry e;
    struct spec sp;
    static const struct {
        int field;
        size_t max;
    } env[] = {
        {FTRACE, STATEMACHINE_ID_MAX},
        {FREQ, STATEMACHINE_ID_MAX},
        {FUSER, STATEMACHINE_USER_MAX},
        {FREASON, STATEMACHINE_REASON_MAX},
    };
    size_t i;
    char msg[128];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (i = 0; i < sizeof env / sizeof env[0]; i++) {
        sp = spec_of(STATEMACHINE_ENTRY_NOOP);
        sp.str[env[i].field] = big + sizeof big - 1 - env[i].max;
        assert_int_equal(decode_spec(f, &sp, &e), 0);
        sp.str[env[i].field] = big + sizeof big - 2 - env[i].max;
        snprintf(msg, sizeof msg, "entry: %s: %zu bytes, at most %zu allowed",
                 field_names[env[i].field], env[i].max + 1, env[i].max);
        expect_reject(f, &sp, REMS_EMALFORMED, msg);
    }

    sp = spec_of(STATEMACHINE_ENTRY_POLICY_DELETE);
    sp.key = big + sizeof big - 1 - STATEMACHINE_KEY_MAX;
    assert_int_equal(decode_spec(f, &sp, &e), 0);
    sp.key = big + sizeof big - 2 - STATEMACHINE_KEY_MAX;
    expect_reject(f, &sp, REMS_EMALFORMED,
                  "entry: body.key: 257 bytes, at most 256 allowed");

    sp = spec_of(STATEMACHINE_ENTRY_MEMBER_SET);
    sp.raft = big + sizeof big - 1 - STATEMACHINE_ADDR_MAX;
    sp.api = sp.raft;
    assert_int_equal(decode_spec(f, &sp, &e), 0);
    sp.raft = big + sizeof big - 2 - STATEMACHINE_ADDR_MAX;
    expect_reject(f, &sp, REMS_EMALFORMED,
                  "entry: body.raft_address: 64 bytes, at most 63 allowed");
    sp.raft = "r";
    sp.api = big + sizeof big - 2 - STATEMACHINE_ADDR_MAX;
    expect_reject(f, &sp, REMS_EMALFORMED,
                  "entry: body.api_address: 64 bytes, at most 63 allowed");
}

/* Policy entries carry keys that pass statemachine_key_check(). */
static void decode_bad_key(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {"/a",     "a/",  "a//b", "a/./b",
                                       "a/../b", "a b", ""};
    struct spec sp;
    size_t i;

    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        sp = spec_of(i % 2 == 0 ? STATEMACHINE_ENTRY_POLICY_PUT
                                : STATEMACHINE_ENTRY_POLICY_DELETE);
        sp.key = keys[i];
        expect_reject(f, &sp, REMS_EMALFORMED, "key: ");
    }
}

/* The length of the envelope in @buf, without its zero padding. */
static size_t envelope_len(const void *buf, size_t len)
{
    struct mpread r;
    mpread_init(&r, buf, len);
    assert_int_equal(mpread_skip(&r), 0);
    return (size_t)(r.p - (const unsigned char *)buf);
}

/* Encodings are padded with zero bytes to a multiple of 8 (raft_uv stores
 * entries so); decoding accepts up to 7 zero bytes after the envelope and
 * nothing else. */
static void decode_trailing_bytes(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e = put_e("k", "v", "r");
    struct statemachine_entry d;
    struct spec sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    unsigned char buf[512];
    void *enc;
    size_t len;
    size_t env;
    size_t pad;
    uint64_t type;

    for (type = 1; type < STATEMACHINE_ENTRY_TYPE_NR; type++) {
        struct statemachine_entry t = entry_base((int)type);
        t.key = "k";
        t.key_len = 1;
        t.member_id = 1;
        encode(f, &t, &enc, &len);
        assert_int_equal(len % 8, 0);
        assert_true(len - envelope_len(enc, len) < 8);
        rems_free(enc);
    }

    sp.trailing = true; /* A nil after the envelope. */
    expect_reject(f, &sp, REMS_EMALFORMED, "entry: envelope: trailing bytes");

    encode(f, &e, &enc, &len);
    env = envelope_len(enc, len);
    assert_true(env + 16 < sizeof buf);
    memcpy(buf, enc, env);
    rems_free(enc);
    for (pad = 0; pad <= 8; pad++) {
        int rv;
        memset(buf + env, 0, pad);
        rv = statemachine_entry_decode(buf, env + pad, &d, f->errmsg);
        if (pad < 8) {
            assert_int_equal(rv, 0);
            assert_field(d.key, d.key_len, "k");
        } else {
            assert_int_equal(rv, REMS_EMALFORMED);
            assert_string_equal(f->errmsg, "entry: envelope: trailing bytes");
        }
    }
    /* A non-zero byte in the padding. */
    memset(buf + env, 0, 7);
    buf[env + 3] = 1;
    assert_int_equal(statemachine_entry_decode(buf, env + 7, &d, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "entry: envelope: trailing bytes");
    buf[env + 3] = 0;
    buf[env] = 0xc0;
    assert_int_equal(statemachine_entry_decode(buf, env + 1, &d, f->errmsg),
                     REMS_EMALFORMED);
}

/* Every prefix shorter than the envelope is an error, never a crash; the
 * prefixes that only drop padding decode. */
static void decode_truncated(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry entries[5];
    struct statemachine_entry d;
    size_t i;

    entries[0] = cas(put_e("team/a/b", "{\"allow\":[1,2,3]}", "req-9"), 4);
    entries[1] = cas(del_e("team/a", "r"), 3);
    entries[2] = member_set_e(300, "10.1.2.3:7000", "10.1.2.3:8000");
    entries[3] = member_del_e(70000);
    entries[4] = noop_e("req-5");
    for (i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        void *buf;
        size_t len;
        size_t env;
        size_t cut;
        encode(f, &entries[i], &buf, &len);
        env = envelope_len(buf, len);
        for (cut = 0; cut <= len; cut++) {
            /* A copy of exactly @cut bytes, so ASan sees any overread. */
            void *part = malloc(cut > 0 ? cut : 1);
            int rv;
            assert_non_null(part);
            memcpy(part, buf, cut);
            f->errmsg[0] = '\0';
            rv = statemachine_entry_decode(part, cut, &d, f->errmsg);
            free(part);
            if (cut >= env) {
                if (rv != 0) {
                    fail_msg("entry %zu cut at %zu of %zu: %s (%s)", i, cut,
                             len, rems_errname(rv), f->errmsg);
                }
                assert_int_equal(d.type, entries[i].type);
                continue;
            }
            if (rv != REMS_EMALFORMED) {
                fail_msg("entry %zu cut at %zu of %zu: %s", i, cut, len,
                         rems_errname(rv));
            }
            assert_true(strncmp(f->errmsg, "entry: ", 7) == 0);
        }
        rems_free(buf);
    }
}

/* ------------------------------------------------------------------ */
/* Queries used by the apply tests.                                     */

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

struct policy_copy {
    char value[256];
    uint64_t revision;
    uint64_t created_index;
    uint64_t modified_index;
};

static int
get_policy(struct storage *s, const char *key, struct policy_copy *out)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct statemachine_policy p;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = statemachine_policy_get(t, key, strlen(key), &p, errmsg);
    if (rv == 0) {
        assert_true(p.value_len < sizeof out->value);
        assert_field(p.key, p.key_len, key);
        memcpy(out->value, p.value, p.value_len);
        out->value[p.value_len] = '\0';
        out->revision = p.revision;
        out->created_index = p.created_index;
        out->modified_index = p.modified_index;
    }
    storage_txn_abort(t);
    return rv;
}

static size_t policy_count(struct storage *s)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    size_t n = 0;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    assert_int_equal(statemachine_policy_count(t, &n, errmsg), 0);
    storage_txn_abort(t);
    return n;
}

static int
get_member(struct storage *s, uint64_t id, struct statemachine_member *m)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = statemachine_member_get(t, id, m, errmsg);
    storage_txn_abort(t);
    return rv;
}

/* Collects visited keys (or indexes) as "k1,k2,". */
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

static int collect_policy(void *data, const struct statemachine_policy *p)
{
    struct collect *c = data;
    collect_add(c, p->key, p->key_len);
    c->visits++;
    return c->visits == c->stop_at ? 99 : 0;
}

static int collect_audit(void *data, const struct statemachine_audit *a)
{
    struct collect *c = data;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)a->index);
    collect_add(c, buf, (size_t)n);
    c->visits++;
    return c->visits == c->stop_at ? 99 : 0;
}

/* List policies; returns the keys as "a,b," and sets *@more. */
static const char *list(struct fixture *f,
                        struct collect *c,
                        const char *prefix,
                        const char *after,
                        size_t limit,
                        bool *more)
{
    struct storage_txn *t;
    memset(c, 0, sizeof *c);
    *more = !*more; /* Proves the call sets it. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_policy_list(t, prefix, prefix != NULL ? strlen(prefix) : 0,
                                 after, after != NULL ? strlen(after) : 0,
                                 limit, collect_policy, c, more, f->errmsg),
        0);
    storage_txn_abort(t);
    return c->out;
}

static const char *audit(struct fixture *f,
                         struct collect *c,
                         uint64_t after,
                         size_t limit,
                         bool *more)
{
    struct storage_txn *t;
    memset(c, 0, sizeof *c);
    *more = !*more;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_audit_list(t, after, limit, collect_audit, c,
                                             more, f->errmsg),
                     0);
    storage_txn_abort(t);
    return c->out;
}

/* A byte string on libc's heap, outside the counted heap. */
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
    if (d->len + len > d->cap) {
        d->cap = (d->len + len) * 2 + 64;
        d->p = realloc(d->p, d->cap);
        assert_non_null(d->p);
    }
    if (len > 0) {
        memcpy(d->p + d->len, data, len);
    }
    d->len += len;
}

static void dump_fmt(struct dump *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void dump_fmt(struct dump *d, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    dump_add(d, buf, (size_t)n);
}

/* Every table of @s byte for byte, or all but META when @skip_meta. */
static struct dump *dump_tables(struct storage *s, bool skip_meta)
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

static void assert_dumps_equal(const struct dump *a, const struct dump *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->p, b->p, a->len);
}

static int dump_policy(void *data, const struct statemachine_policy *p)
{
    dump_fmt(data, "policy %.*s=%.*s rev=%llu created=%llu modified=%llu\n",
             (int)p->key_len, p->key, (int)p->value_len, p->value,
             (unsigned long long)p->revision,
             (unsigned long long)p->created_index,
             (unsigned long long)p->modified_index);
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

static int dump_rollout(void *data, const struct statemachine_rollout *r)
{
    dump_fmt(data,
             "rollout %.*s target=%llu:%.*s previous=%d:%llu:%.*s %s %s "
             "batch=%llu reached=%.*s started=%llu updated=%llu\n",
             (int)r->key_len, r->key, (unsigned long long)r->target_revision,
             (int)r->target_len, r->target, r->has_previous,
             (unsigned long long)r->previous_revision, (int)r->previous_len,
             r->previous, statemachine_rollout_state_name(r->state),
             statemachine_rollout_stage_name(r->stage),
             (unsigned long long)r->batch, (int)r->reached_len, r->reached,
             (unsigned long long)r->started_index,
             (unsigned long long)r->updated_index);
    return 0;
}

/* What the queries say about @s: every policy, rollout, audit record,
 * member 1..16 and the last applied index. */
static struct dump *dump_queries(struct storage *s)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct dump *d = dump_new();
    uint64_t last;
    uint64_t id;
    bool more;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    assert_int_equal(statemachine_last_applied(t, &last, errmsg), 0);
    dump_fmt(d, "last_applied %llu\n", (unsigned long long)last);
    assert_int_equal(statemachine_policy_list(t, NULL, 0, NULL, 0, SIZE_MAX,
                                              dump_policy, d, &more, errmsg),
                     0);
    assert_false(more);
    assert_int_equal(statemachine_rollout_list(t, NULL, 0, SIZE_MAX,
                                               dump_rollout, d, &more, errmsg),
                     0);
    assert_false(more);
    assert_int_equal(
        statemachine_audit_list(t, 0, SIZE_MAX, dump_audit, d, &more, errmsg),
        0);
    assert_false(more);
    for (id = 1; id <= 16; id++) {
        struct statemachine_member m;
        int rv = statemachine_member_get(t, id, &m, errmsg);
        if (rv == 0) {
            dump_fmt(d, "member %llu %s %s\n", (unsigned long long)m.id,
                     m.raft_address, m.api_address);
        } else {
            assert_int_equal(rv, REMS_ENOTFOUND);
        }
    }
    storage_txn_abort(t);
    return d;
}

/* ------------------------------------------------------------------ */
/* Apply.                                                               */

/* The first put creates the key at revision = index; the next updates it,
 * keeping created_index. */
static void apply_put_create_update(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e = put_e("team/a", "{\"v\":1}", NULL);
    struct statemachine_result res;
    struct policy_copy p;

    assert_true(last_applied(f->s) == 0);
    assert_int_equal(get_policy(f->s, "team/a", &p), REMS_ENOTFOUND);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    assert_true(res.revision == 5);
    assert_true(res.index == 5);
    assert_false(res.duplicate);
    assert_false(res.skipped);
    assert_int_equal(get_policy(f->s, "team/a", &p), 0);
    assert_string_equal(p.value, "{\"v\":1}");
    assert_true(p.revision == 5 && p.created_index == 5 &&
                p.modified_index == 5);
    assert_true(last_applied(f->s) == 5);

    e = put_e("team/a", "{\"v\":2}", NULL);
    res = apply(f, 9, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 9);
    assert_int_equal(get_policy(f->s, "team/a", &p), 0);
    assert_string_equal(p.value, "{\"v\":2}");
    assert_true(p.revision == 9 && p.created_index == 5 &&
                p.modified_index == 9);
    assert_true(last_applied(f->s) == 9);
    assert_int_equal(policy_count(f->s), 1);
}

/* if_revision: a match writes, a mismatch is REMS_ECONFLICT with the current
 * revision and writes nothing; 0 means "create only". */
static void apply_put_cas(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct policy_copy p;

    e = cas(put_e("k", "v1", NULL), 0); /* Create only: absent, so ok. */
    res = apply(f, 1, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.created);
    assert_true(res.revision == 1);

    e = cas(put_e("k", "v2", NULL), 0); /* Create only: present. */
    res = apply(f, 2, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 1);
    assert_true(res.revision == 0);
    assert_false(res.created);

    e = cas(put_e("k", "v3", NULL), 7); /* Mismatch. */
    res = apply(f, 3, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 1);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v1");
    assert_true(p.revision == 1 && p.modified_index == 1);

    e = cas(put_e("k", "v4", NULL), 1); /* Match. */
    res = apply(f, 4, &e);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == 4);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v4");
    assert_true(p.revision == 4 && p.created_index == 1);

    e = cas(put_e("absent", "v", NULL), 4); /* A revision for no key. */
    res = apply(f, 5, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 0);
    assert_int_equal(get_policy(f->s, "absent", &p), REMS_ENOTFOUND);
    assert_true(last_applied(f->s) == 5);
}

static void apply_delete(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct policy_copy p;

    e = put_e("a", "1", NULL);
    apply(f, 1, &e);
    e = put_e("b", "2", NULL);
    apply(f, 2, &e);

    e = del_e("a", NULL);
    res = apply(f, 3, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 3);
    assert_int_equal(get_policy(f->s, "a", &p), REMS_ENOTFOUND);

    e = del_e("a", NULL); /* Gone. */
    res = apply(f, 4, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(res.revision == 0);

    e = cas(del_e("b", NULL), 1); /* Mismatch. */
    res = apply(f, 5, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 2);
    assert_int_equal(get_policy(f->s, "b", &p), 0);

    e = cas(del_e("missing", NULL), 0); /* Absent and 0: not found. */
    res = apply(f, 6, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);

    e = cas(del_e("missing", NULL), 3); /* Absent and a revision. */
    res = apply(f, 7, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.current_revision == 0);

    e = cas(del_e("b", NULL), 2); /* Match. */
    res = apply(f, 8, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.revision == 8);
    assert_int_equal(policy_count(f->s), 0);

    /* A deleted key comes back as a new key. */
    e = put_e("a", "again", NULL);
    res = apply(f, 9, &e);
    assert_true(res.created);
    assert_int_equal(get_policy(f->s, "a", &p), 0);
    assert_true(p.created_index == 9);
    assert_true(last_applied(f->s) == 9);
}

static void apply_members(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct statemachine_member m;
    static char addr[STATEMACHINE_ADDR_MAX + 1];

    memset(addr, '9', STATEMACHINE_ADDR_MAX);
    assert_int_equal(get_member(f->s, 1, &m), REMS_ENOTFOUND);
    e = member_set_e(1, "10.0.0.1:7001", "10.0.0.1:8001");
    res = apply(f, 1, &e);
    assert_int_equal(res.code, 0);
    e = member_set_e(2, addr, "");
    res = apply(f, 2, &e);
    assert_int_equal(res.code, 0);

    assert_int_equal(get_member(f->s, 1, &m), 0);
    assert_true(m.id == 1);
    assert_string_equal(m.raft_address, "10.0.0.1:7001");
    assert_string_equal(m.api_address, "10.0.0.1:8001");
    assert_string_equal(m.agent_address, "");
    assert_int_equal(get_member(f->s, 2, &m), 0);
    assert_string_equal(m.raft_address, addr);
    assert_string_equal(m.api_address, "");


    /* Set again: the addresses are replaced. */
    e = member_set_e(1, "10.0.0.9:7001", "10.0.0.9:8001");
    apply(f, 3, &e);
    assert_int_equal(get_member(f->s, 1, &m), 0);
    assert_string_equal(m.raft_address, "10.0.0.9:7001");

    e = member_del_e(1);
    res = apply(f, 4, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(get_member(f->s, 1, &m), REMS_ENOTFOUND);
    assert_int_equal(get_member(f->s, 2, &m), 0);

    e = member_del_e(1);
    res = apply(f, 5, &e);
    assert_int_equal(res.code, REMS_ENOTFOUND);
    assert_true(last_applied(f->s) == 5);
    /* The agent address is kept with the others. */
    e = member_set_e(7, "10.0.0.7:7001", "10.0.0.7:8001");
    set_str(&e.agent_address, &e.agent_address_len, "10.0.0.7:9443");
    res = apply(f, 6, &e);
    assert_int_equal(res.code, 0);
    assert_int_equal(get_member(f->s, 7, &m), 0);
    assert_string_equal(m.agent_address, "10.0.0.7:9443");
    assert_string_equal(m.api_address, "10.0.0.7:8001");
    /* Members are not policies. */
    assert_int_equal(policy_count(f->s), 0);
}

/* A noop only advances last_applied: no audit record, no other table. */
static void apply_noop(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e = noop_e(NULL);
    struct statemachine_result res;
    struct collect c;
    bool more = false;
    struct dump *before;
    struct dump *after;

    before = dump_tables(f->s, true);
    res = apply(f, 1, &e);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 1);
    assert_true(last_applied(f->s) == 1);
    after = dump_tables(f->s, true);
    assert_dumps_equal(before, after);
    assert_string_equal(audit(f, &c, 0, 100, &more), "");
}

/* An index at or below last_applied (a replay after a restart) changes
 * nothing; with a remembered request id the result is the first one. */
static void apply_reapply_skipped(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e1 = put_e("k", "v1", "req-1");
    struct statemachine_entry e2 = put_e("k", "v2", NULL);
    struct statemachine_entry e3 = put_e("other", "x", "req-3");
    struct statemachine_result res;
    struct policy_copy p;
    struct dump *before;
    struct dump *after;

    apply(f, 10, &e1);
    apply(f, 11, &e2);
    before = dump_tables(f->s, false);

    res = apply(f, 10, &e1);
    assert_true(res.skipped);
    assert_false(res.duplicate);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 10);
    assert_true(res.revision == 10);
    assert_true(res.created);

    res = apply(f, 11, &e2);
    assert_true(res.skipped);
    assert_true(res.index == 11);
    assert_true(res.revision == 0);

    /* Different bytes at an old index are skipped too. */
    res = apply(f, 3, &e3);
    assert_true(res.skipped);
    assert_int_equal(res.code, 0);
    res = apply(f, 1, &e1);
    assert_true(res.skipped);
    assert_true(res.index == 10); /* The request's first application. */

    after = dump_tables(f->s, false);
    assert_dumps_equal(before, after);
    assert_int_equal(get_policy(f->s, "other", &p), REMS_ENOTFOUND);
    assert_true(last_applied(f->s) == 11);

    /* Garbage at an old index is skipped, not refused. */
    res.skipped = false;
    assert_int_equal(statemachine_apply(f->s, 2, "\xc1", 1, &res, f->errmsg),
                     0);
    assert_true(res.skipped);
    assert_int_equal(res.code, 0);
}

/* The same request id at a new index is answered with the first result and
 * changes nothing but last_applied. */
static void apply_duplicate_request(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct policy_copy p;
    struct collect c;
    bool more = false;
    struct dump *before;
    struct dump *after;

    e = put_e("k", "v1", "req-A");
    apply(f, 1, &e);
    before = dump_tables(f->s, true);

    e = put_e("k", "v2", "req-A"); /* A retry, even with other content. */
    res = apply(f, 2, &e);
    assert_true(res.duplicate);
    assert_false(res.skipped);
    assert_int_equal(res.code, 0);
    assert_true(res.index == 1);
    assert_true(res.revision == 1);
    assert_true(res.created);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v1");
    assert_true(last_applied(f->s) == 2);
    after = dump_tables(f->s, true);
    assert_dumps_equal(before, after);

    /* A failed first try is remembered as failed. */
    e = cas(put_e("k", "v3", "req-B"), 99);
    res = apply(f, 3, &e);
    assert_int_equal(res.code, REMS_ECONFLICT);
    e = cas(put_e("k", "v3", "req-B"), 1);
    res = apply(f, 4, &e);
    assert_true(res.duplicate);
    assert_int_equal(res.code, REMS_ECONFLICT);
    assert_true(res.index == 3);
    assert_true(res.current_revision == 1);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v1");

    /* Request ids are per request, not per type. */
    e = del_e("k", "req-A");
    res = apply(f, 5, &e);
    assert_true(res.duplicate);
    assert_int_equal(get_policy(f->s, "k", &p), 0);

    /* Duplicates leave no audit record. */
    assert_string_equal(audit(f, &c, 0, 100, &more), "1,3,");
}

/* A malformed or unsupported entry is refused in the result; only
 * last_applied advances. */
static void apply_malformed(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e = put_e("k", "v", "req-1");
    struct statemachine_result res;
    struct spec sp;
    msgpack_sbuffer sb;
    struct dump *before;
    struct dump *after;

    apply(f, 1, &e);
    before = dump_tables(f->s, true);

    assert_int_equal(statemachine_apply(f->s, 2, "\xc1", 1, &res, f->errmsg),
                     0);
    assert_int_equal(res.code, REMS_EMALFORMED);
    assert_true(res.index == 2);
    assert_false(res.skipped);
    assert_string_equal(f->errmsg, "entry: envelope: must be a map");
    assert_true(last_applied(f->s) == 2);

    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.key = "a//b";
    sp.str[FREQ] = "req-2";
    build(&sp, &sb);
    assert_int_equal(
        statemachine_apply(f->s, 3, sb.data, sb.size, &res, f->errmsg), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(res.code, REMS_EMALFORMED);
    assert_errmsg_has(f, "key: must not");

    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.v = 2;
    build(&sp, &sb);
    assert_int_equal(
        statemachine_apply(f->s, 4, sb.data, sb.size, &res, f->errmsg), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(res.code, REMS_EUNSUPPORTED);
    assert_errmsg_has(f, "version 2 is not supported");

    sp = spec_of(STATEMACHINE_ENTRY_POLICY_PUT);
    sp.type = 77;
    build(&sp, &sb);
    assert_int_equal(
        statemachine_apply(f->s, 5, sb.data, sb.size, &res, f->errmsg), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(res.code, REMS_EUNSUPPORTED);

    assert_int_equal(statemachine_apply(f->s, 6, "", 0, &res, f->errmsg), 0);
    assert_int_equal(res.code, REMS_EMALFORMED);

    assert_true(last_applied(f->s) == 6);
    after = dump_tables(f->s, true);
    assert_dumps_equal(before, after);

    /* The request id of a refused entry was not remembered. */
    e = put_e("x", "v", "req-2");
    res = apply(f, 7, &e);
    assert_false(res.duplicate);
    assert_true(res.created);
}

/* Corrupt stored records are REMS_ECORRUPT, never a crash, and apply then
 * writes nothing. */
static void apply_corrupt_records(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e = put_e("k", "v", NULL);
    struct statemachine_result res;
    struct storage_txn *t;
    struct statemachine_policy p;
    uint64_t v;

    apply(f, 1, &e);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, "k", 1, "\x93\x01", 2, f->errmsg), 0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_policy_get(t, "k", 1, &p, f->errmsg),
                     REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "policies[k]: record is corrupt");
    storage_txn_abort(t);

    e = put_e("k", "v2", NULL);
    res.code = -1;
    {
        void *buf;
        size_t len;
        encode(f, &e, &buf, &len);
        assert_int_equal(statemachine_apply(f->s, 2, buf, len, &res, f->errmsg),
                         REMS_ECORRUPT);
        rems_free(buf);
    }
    assert_int_equal(res.code, 0); /* Cleared on failure. */
    assert_true(res.index == 0);
    assert_true(last_applied(f->s) == 1);

    /* A last_applied of the wrong size. */
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(storage_put(t, STORAGE_META, "last_applied", 12, "1234567",
                                 7, f->errmsg),
                     0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_last_applied(t, &v, f->errmsg),
                     REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "meta.last_applied: 7 bytes, expected 8");
    storage_txn_abort(t);
    e = noop_e(NULL);
    {
        void *buf;
        size_t len;
        encode(f, &e, &buf, &len);
        assert_int_equal(statemachine_apply(f->s, 3, buf, len, &res, f->errmsg),
                         REMS_ECORRUPT);
        rems_free(buf);
    }
}

/* Audit records: one per applied non-noop entry, refused ones included,
 * with the envelope's fields, in index order, paginated. */
static void audit_records(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct storage_txn *t;
    struct collect c;
    bool more = false;
    struct dump *d;

    e = put_e("a", "1", "req-1");
    e.reason = "first";
    e.reason_len = 5;
    set_str(&e.trace_id, &e.trace_id_len, "t-1");
    apply(f, 1, &e);
    e = noop_e(NULL);
    apply(f, 2, &e);
    e = put_e("b", "2", NULL);
    apply(f, 3, &e);
    e = del_e("a", "req-4");
    apply(f, 4, &e);
    e = member_set_e(7, "r", "a");
    apply(f, 5, &e);
    e = del_e("zz", NULL);
    apply(f, 6, &e);
    e = cas(put_e("b", "3", NULL), 1);
    e.requested_by = NULL;
    e.requested_by_len = 0;
    apply(f, 7, &e);

    assert_string_equal(audit(f, &c, 0, 100, &more), "1,3,4,5,6,7,");
    assert_false(more);

    d = dump_queries(f->s);
    dump_add(d, "", 1);
    assert_non_null(strstr(
        d->p, "audit 1 time=1700000000123 type=2 code=0 rev=1 key=a by=alice "
              "reason=first trace=t-1 req=req-1\n"));
    assert_non_null(strstr(d->p, "audit 3 time=1700000000123 type=2 code=0 "
                                 "rev=3 key=b by=alice reason=because "
                                 "trace=trace-1 req=\n"));
    assert_non_null(strstr(d->p, "audit 4 time=1700000000123 type=3 code=0 "
                                 "rev=4 key=a by=alice"));
    assert_non_null(strstr(d->p, "audit 5 time=1700000000123 type=4 code=0 "
                                 "rev=0 key= by=alice"));
    assert_non_null(strstr(d->p, "audit 6 time=1700000000123 type=3 code=7 "
                                 "rev=0 key=zz"));
    assert_non_null(strstr(d->p, "audit 7 time=1700000000123 type=2 code=8 "
                                 "rev=0 key=b by= reason=because"));

    /* Pages. */
    assert_string_equal(audit(f, &c, 0, 2, &more), "1,3,");
    assert_true(more);
    assert_string_equal(audit(f, &c, 3, 2, &more), "4,5,");
    assert_true(more);
    assert_string_equal(audit(f, &c, 5, 2, &more), "6,7,");
    assert_false(more);
    assert_string_equal(audit(f, &c, 4, 3, &more), "5,6,7,");
    assert_false(more);
    assert_string_equal(audit(f, &c, 1, 1, &more), "3,");
    assert_true(more);
    assert_string_equal(audit(f, &c, 2, 1, &more), "3,");
    assert_true(more);
    assert_string_equal(audit(f, &c, 7, 10, &more), "");
    assert_false(more);
    assert_string_equal(audit(f, &c, 1000, 10, &more), "");
    assert_false(more);
    assert_string_equal(audit(f, &c, UINT64_MAX - 1, 10, &more), "");
    assert_false(more);
    assert_string_equal(audit(f, &c, UINT64_MAX, 10, &more), "");
    assert_false(more);
    assert_string_equal(audit(f, &c, 0, 0, &more), "");
    assert_true(more);

    /* A visitor's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        statemachine_audit_list(t, 0, 100, collect_audit, &c, &more, f->errmsg),
        99);
    storage_txn_abort(t);
    assert_string_equal(c.out, "1,3,");
}

/* Policy listing by prefix, after a key, with a limit. */
static void policy_list(void **state)
{
    struct fixture *f = *state;
    static const char *const keys[] = {"c",   "a/c/d", "ab", "a",
                                       "b/x", "a/b",   "a/c"};
    struct storage_txn *t;
    struct collect c;
    bool more = false;
    size_t i;

    assert_string_equal(list(f, &c, "", NULL, 10, &more), "");
    assert_false(more);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct statemachine_entry e = put_e(keys[i], "{}", NULL);
        apply(f, i + 1, &e);
    }

    /* All, in key order. */
    assert_string_equal(list(f, &c, "", NULL, 100, &more),
                        "a,a/b,a/c,a/c/d,ab,b/x,c,");
    assert_false(more);
    assert_string_equal(list(f, &c, NULL, NULL, 100, &more),
                        "a,a/b,a/c,a/c/d,ab,b/x,c,");
    assert_string_equal(list(f, &c, "", NULL, 7, &more),
                        "a,a/b,a/c,a/c/d,ab,b/x,c,");
    assert_false(more);
    assert_string_equal(list(f, &c, "", NULL, 6, &more),
                        "a,a/b,a/c,a/c/d,ab,b/x,");
    assert_true(more);
    assert_string_equal(list(f, &c, "", "ab", 100, &more), "b/x,c,");
    assert_string_equal(list(f, &c, "", "c", 100, &more), "");
    assert_false(more);
    assert_string_equal(list(f, &c, "", "zzz", 100, &more), "");
    assert_string_equal(list(f, &c, NULL, "0", 100, &more),
                        "a,a/b,a/c,a/c/d,ab,b/x,c,");

    /* A prefix. */
    assert_string_equal(list(f, &c, "a/", NULL, 100, &more), "a/b,a/c,a/c/d,");
    assert_false(more);
    assert_string_equal(list(f, &c, "a", NULL, 100, &more),
                        "a,a/b,a/c,a/c/d,ab,");
    assert_string_equal(list(f, &c, "a/c", NULL, 100, &more), "a/c,a/c/d,");
    assert_string_equal(list(f, &c, "b/x", NULL, 100, &more), "b/x,");
    assert_false(more);

    /* Pages of a prefix. */
    assert_string_equal(list(f, &c, "a/", NULL, 2, &more), "a/b,a/c,");
    assert_true(more);
    assert_string_equal(list(f, &c, "a/", "a/c", 2, &more), "a/c/d,");
    assert_false(more);
    assert_string_equal(list(f, &c, "a/", "a/b", 2, &more), "a/c,a/c/d,");
    assert_false(more);
    assert_string_equal(list(f, &c, "a/", "a/b", 1, &more), "a/c,");
    assert_true(more);

    /* After a key that does not exist, inside the range. */
    assert_string_equal(list(f, &c, "a/", "a/bb", 100, &more), "a/c,a/c/d,");
    /* After a key below the prefix's range: from the start of the range. */
    assert_string_equal(list(f, &c, "a/", "0", 100, &more), "a/b,a/c,a/c/d,");
    assert_string_equal(list(f, &c, "a/", "a", 100, &more), "a/b,a/c,a/c/d,");
    /* After a key above the prefix's range: nothing. */
    assert_string_equal(list(f, &c, "a/", "b", 100, &more), "");
    assert_false(more);
    assert_string_equal(list(f, &c, "a/", "a0", 100, &more), "");
    assert_false(more);
    /* After the prefix itself, when it is also a key: that key is not
     * repeated (pagination would loop forever otherwise). */
    assert_string_equal(list(f, &c, "a", "a", 100, &more), "a/b,a/c,a/c/d,ab,");
    assert_string_equal(list(f, &c, "a", NULL, 1, &more), "a,");
    assert_true(more);
    assert_string_equal(list(f, &c, "a", "a", 1, &more), "a/b,");
    assert_true(more);
    assert_string_equal(list(f, &c, "a/c", "a/c", 100, &more), "a/c/d,");

    /* Prefixes with no match. */
    assert_string_equal(list(f, &c, "zzz", NULL, 100, &more), "");
    assert_false(more);
    assert_string_equal(list(f, &c, "a/c/d/e", NULL, 100, &more), "");
    assert_string_equal(list(f, &c, "0", NULL, 100, &more), "");
    assert_string_equal(list(f, &c, "b/", "b/x", 100, &more), "");
    assert_false(more);

    /* Limit 0 visits nothing and tells whether anything matches. */
    assert_string_equal(list(f, &c, "a/", NULL, 0, &more), "");
    assert_true(more);
    assert_string_equal(list(f, &c, "zzz", NULL, 0, &more), "");
    assert_false(more);

    /* A visitor's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof c);
    c.stop_at = 3;
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(statemachine_policy_list(t, "", 0, NULL, 0, 100,
                                              collect_policy, &c, &more,
                                              f->errmsg),
                     99);
    storage_txn_abort(t);
    assert_string_equal(c.out, "a,a/b,a/c,");
}

/* A request id is forgotten once the window has passed and an entry with a
 * request id pruned it: a retry is then applied as a new request. */
static void apply_request_window(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result res;
    struct storage_txn *t;
    const void *v;
    size_t vl;
    struct policy_copy p;

    e = put_e("k", "v1", "req-old");
    res = apply(f, 1, &e);
    assert_true(res.created);
    e = put_e("other", "x", "req-2");
    apply(f, 2, &e);

    /* Still inside the window: a duplicate. */
    e = put_e("k", "v2", "req-old");
    res = apply(f, W, &e);
    assert_true(res.duplicate);
    assert_true(res.index == 1);

    /* An entry with a request id at index W + 1 forgets index 1 only. */
    e = noop_e("req-new");
    res = apply(f, W + 1, &e);
    assert_false(res.duplicate);
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(
        storage_get(t, STORAGE_REQUESTS, "req-old", 7, &v, &vl, f->errmsg),
        REMS_ENOTFOUND);
    assert_int_equal(
        storage_get(t, STORAGE_REQUESTS, "req-2", 5, &v, &vl, f->errmsg), 0);
    assert_int_equal(
        storage_get(t, STORAGE_REQUESTS, "req-new", 7, &v, &vl, f->errmsg), 0);
    storage_txn_abort(t);

    /* The old id is now a new request. */
    e = put_e("k", "v3", "req-old");
    res = apply(f, W + 2, &e);
    assert_false(res.duplicate);
    assert_int_equal(res.code, 0);
    assert_false(res.created);
    assert_true(res.revision == W + 2);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v3");

    /* And remembered again from there. */
    e = put_e("k", "v4", "req-old");
    res = apply(f, W + 3, &e);
    assert_true(res.duplicate);
    assert_true(res.index == W + 2);

    /* req-2 (index 2) was forgotten by the entry at W + 2. */
    e = put_e("k", "v5", "req-2");
    res = apply(f, W + 4, &e);
    assert_false(res.duplicate);
    assert_true(res.revision == W + 4);

    /* A jump far past the window forgets everything older. */
    e = noop_e("req-far");
    apply(f, 10 * (uint64_t)W, &e);
    e = put_e("k", "v6", "req-new");
    res = apply(f, 10 * (uint64_t)W + 1, &e);
    assert_false(res.duplicate);
    assert_int_equal(get_policy(f->s, "k", &p), 0);
    assert_string_equal(p.value, "v6");
    e = put_e("k", "v7", "req-far");
    res = apply(f, 10 * (uint64_t)W + 2, &e);
    assert_true(res.duplicate);
}

/* The same entries applied to two stores give byte-identical tables. */
static void apply_deterministic(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry seq[20];
    struct dump *a;
    struct dump *b;
    size_t n = 0;
    size_t i;
    char keys[8][16];

    open_other(f);
    for (i = 0; i < 8; i++) {
        snprintf(keys[i], sizeof keys[i], "team/%zu", i % 5);
    }
    seq[n++] = put_e(keys[0], "{\"a\":1}", "r0");
    seq[n++] = put_e(keys[1], "{\"b\":1}", "r1");
    seq[n++] = noop_e("r2");
    seq[n++] = cas(put_e(keys[0], "{\"a\":2}", "r3"), 1);
    seq[n++] = cas(put_e(keys[0], "{\"a\":3}", "r4"), 1);
    seq[n++] = put_e(keys[0], "{\"a\":9}", "r3");
    seq[n++] = del_e(keys[1], NULL);
    seq[n++] = del_e(keys[1], "r7");
    seq[n++] = member_set_e(1, "10.0.0.1:7001", "10.0.0.1:8001");
    seq[n++] = member_set_e(2, "10.0.0.2:7001", "10.0.0.2:8001");
    seq[n++] = member_del_e(1);
    seq[n++] = member_del_e(5);
    seq[n++] = put_e(keys[2], "{}", "r12");
    seq[n++] = cas(put_e(keys[3], "{}", NULL), 0);
    seq[n++] = cas(del_e(keys[2], "r14"), 13);
    seq[n++] = noop_e(NULL);
    for (i = 0; i < n; i++) {
        struct statemachine_result ra = apply_to(f, f->s, i + 1, &seq[i]);
        struct statemachine_result rb = apply_to(f, f->s2, i + 1, &seq[i]);
        assert_memory_equal(&ra, &rb, sizeof ra);
    }
    /* A refused entry, on both. */
    {
        struct statemachine_result ra;
        struct statemachine_result rb;
        assert_int_equal(
            statemachine_apply(f->s, n + 1, "\x80", 1, &ra, f->errmsg), 0);
        assert_int_equal(
            statemachine_apply(f->s2, n + 1, "\x80", 1, &rb, f->errmsg), 0);
        assert_int_equal(ra.code, REMS_EMALFORMED);
        assert_memory_equal(&ra, &rb, sizeof ra);
    }
    a = dump_tables(f->s, false);
    b = dump_tables(f->s2, false);
    assert_dumps_equal(a, b);
    assert_true(a->len > 200);
}

/* Fail the n-th allocation of applying @e at @index, for every n until it
 * succeeds: each failure is REMS_ENOMEM with a cleared result, no leak and
 * no change to any table. */
static void sweep_apply(struct fixture *f,
                        uint64_t index,
                        const struct statemachine_entry *e)
{
    struct statemachine_result res;
    struct dump *before;
    void *buf;
    size_t len;
    long live;
    int rv;
    int n;

    encode(f, e, &buf, &len);
    before = dump_tables(f->s, false);
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
        after = dump_tables(f->s, false);
        assert_dumps_equal(before, after);
    }
    assert_true(n >= 1);
    assert_int_equal(f->heap.live, live);
    assert_true(last_applied(f->s) >= index);
    rems_free(buf);
}

static void apply_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;

    e = put_e("team/a", "{\"x\":1}", "req-1");
    sweep_apply(f, 1, &e);
    e = cas(put_e("team/a", "{\"x\":2}", "req-2"), 1);
    sweep_apply(f, 2, &e);
    e = cas(put_e("team/a", "{\"x\":3}", "req-3"), 1); /* Conflict. */
    sweep_apply(f, 3, &e);
    e = put_e("team/a", "{\"x\":4}", "req-2"); /* Duplicate. */
    sweep_apply(f, 4, &e);
    e = member_set_e(3, "r", "a");
    sweep_apply(f, 5, &e);
    e = member_del_e(3);
    sweep_apply(f, 6, &e);
    e = noop_e("req-7");
    sweep_apply(f, 7, &e);
    e = del_e("team/a", "req-8");
    sweep_apply(f, 8, &e);
    e = put_e("team/b", "{}", "req-9"); /* Prunes the oldest ids. */
    sweep_apply(f, W + 2, &e);
    e = put_e("team/b", "{}", "req-1"); /* Reapplied: skipped. */
    sweep_apply(f, 1, &e);
}

/* ------------------------------------------------------------------ */
/* Snapshots.                                                           */

/* Apply a little of everything to @s, at indexes 1..8. */
static void populate(struct fixture *f, struct storage *s)
{
    struct statemachine_entry e;
    e = put_e("team/a", "{\"a\":1}", "req-1");
    apply_to(f, s, 1, &e);
    e = put_e("team/b", "{\"b\":1}", "req-2");
    apply_to(f, s, 2, &e);
    e = member_set_e(1, "10.0.0.1:7001", "10.0.0.1:8001");
    apply_to(f, s, 3, &e);
    e = member_set_e(2, "10.0.0.2:7001", "10.0.0.2:8001");
    apply_to(f, s, 4, &e);
    e = cas(put_e("team/a", "{\"a\":2}", "req-5"), 1);
    apply_to(f, s, 5, &e);
    e = del_e("team/b", "req-6");
    apply_to(f, s, 6, &e);
    e = noop_e(NULL);
    apply_to(f, s, 7, &e);
    e = put_e("x/y", "{}", NULL);
    apply_to(f, s, 8, &e);
}

static void
snapshot_of(struct fixture *f, struct storage *s, void **buf, size_t *len)
{
    assert_int_equal(
        statemachine_snapshot(s, rems_malloc, rems_free, buf, len, f->errmsg),
        0);
}

/* A snapshot restored into a fresh store gives the same answers to every
 * query, and the same tables; later entries apply identically. */
static void snapshot_restore_fresh(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct statemachine_result ra;
    struct statemachine_result rb;
    struct dump *a;
    struct dump *b;
    void *snap;
    size_t len;
    bool replaced = false;

    populate(f, f->s);
    snapshot_of(f, f->s, &snap, &len);
    open_other(f);
    assert_int_equal(
        statemachine_restore(f->s2, snap, len, &replaced, f->errmsg), 0);
    assert_true(replaced);
    rems_free(snap);

    a = dump_queries(f->s);
    b = dump_queries(f->s2);
    dump_add(a, "", 1);
    assert_non_null(strstr(a->p, "last_applied 8\n"));
    assert_non_null(strstr(a->p, "member 2 10.0.0.2:7001 10.0.0.2:8001\n"));
    assert_non_null(strstr(a->p, "policy team/a={\"a\":2} rev=5 created=1 "
                                 "modified=5\n"));
    /* Rollouts came along (the put at 5 replaced a running rollout with
     * nothing before it). */
    assert_non_null(strstr(a->p, "rollout team/a target=5:{\"a\":2} "
                                 "previous=0:0: running canary batch=0 "
                                 "reached=[] started=5 updated=5\n"));
    assert_non_null(strstr(a->p, "rollout x/y target=8:{}"));
    assert_null(strstr(a->p, "rollout team/b"));
    dump_add(b, "", 1);
    assert_string_equal(a->p, b->p);
    a = dump_tables(f->s, false);
    b = dump_tables(f->s2, false);
    assert_dumps_equal(a, b);

    /* Request ids came along: a retry is a duplicate on both. */
    e = put_e("team/a", "{\"a\":3}", "req-5");
    ra = apply_to(f, f->s, 9, &e);
    rb = apply_to(f, f->s2, 9, &e);
    assert_true(ra.duplicate);
    assert_memory_equal(&ra, &rb, sizeof ra);
    e = put_e("team/c", "{}", "req-10");
    ra = apply_to(f, f->s, 10, &e);
    rb = apply_to(f, f->s2, 10, &e);
    assert_memory_equal(&ra, &rb, sizeof ra);
    a = dump_tables(f->s, false);
    b = dump_tables(f->s2, false);
    assert_dumps_equal(a, b);

    /* The restored state survives a restart. */
    storage_close(f->s2);
    f->s2 = NULL;
    assert_int_equal(storage_open(f->other, NULL, &f->s2, f->errmsg), 0);
    assert_true(last_applied(f->s2) == 10);
}

/* A snapshot of an empty store restores as an empty store. */
static void snapshot_restore_empty(void **state)
{
    struct fixture *f = *state;
    void *snap;
    size_t len;
    bool replaced = false;

    snapshot_of(f, f->s, &snap, &len);
    open_other(f);
    assert_int_equal(
        statemachine_restore(f->s2, snap, len, &replaced, f->errmsg), 0);
    assert_true(replaced);
    rems_free(snap);
    assert_true(last_applied(f->s2) == 0);
    assert_int_equal(policy_count(f->s2), 0);
}

/* A store that applied the snapshot's index or more keeps its own state. */
static void snapshot_restore_keeps_newer(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct dump *before;
    struct dump *after;
    void *snap;
    size_t len;
    bool replaced = true;

    populate(f, f->s);
    snapshot_of(f, f->s, &snap, &len);
    open_other(f);

    /* Ahead of the snapshot. */
    populate(f, f->s2);
    e = put_e("later", "{}", NULL);
    apply_to(f, f->s2, 9, &e);
    before = dump_tables(f->s2, false);
    assert_int_equal(
        statemachine_restore(f->s2, snap, len, &replaced, f->errmsg), 0);
    assert_false(replaced);
    after = dump_tables(f->s2, false);
    assert_dumps_equal(before, after);

    /* At the snapshot's index exactly. */
    replaced = true;
    assert_int_equal(
        statemachine_restore(f->s, snap, len, &replaced, f->errmsg), 0);
    assert_false(replaced);
    rems_free(snap);
}

/* A snapshot header {v, format, last_applied, image_len} followed by
 * @image (freed by teardown). */
static struct dump *build_snapshot(uint64_t v,
                                   const char *format,
                                   uint64_t last,
                                   uint64_t image_len,
                                   const void *image,
                                   size_t len)
{
    struct dump *d = dump_new();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pk_str(&pk, "v");
    msgpack_pack_uint64(&pk, v);
    pk_str(&pk, "format");
    pk_str(&pk, format);
    pk_str(&pk, "last_applied");
    msgpack_pack_uint64(&pk, last);
    pk_str(&pk, "image_len");
    msgpack_pack_uint64(&pk, image_len);
    dump_add(d, sb.data, sb.size);
    dump_add(d, image, len);
    msgpack_sbuffer_destroy(&sb);
    return d;
}

/* The image part of a snapshot made by statemachine_snapshot(). */
static const unsigned char *
image_of(const void *snap, size_t len, size_t *image_len)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    mpread_init(&r, snap, len);
    assert_int_equal(mpread_map(&r, &n), 0);
    assert_int_equal(n, 4);
    for (i = 0; i < 2 * n; i++) {
        assert_int_equal(mpread_skip(&r), 0);
    }
    *image_len = (size_t)(r.end - r.p);
    assert_true(*image_len > 0);
    return r.p;
}

/* Restore @buf into f->s2 (at index 2, behind the snapshot) and expect
 * @code with @msg; the old state stays and takes the next entry. */
static void expect_restore_fails(
    struct fixture *f, const void *buf, size_t len, int code, const char *msg)
{
    struct dump *before;
    struct dump *after;
    bool replaced = false;
    int rv;

    before = dump_tables(f->s2, false);
    f->errmsg[0] = '\0';
    rv = statemachine_restore(f->s2, buf, len, &replaced, f->errmsg);
    if (rv != code) {
        fail_msg("restore: %s (%s), expected %s with \"%s\"", rems_errname(rv),
                 f->errmsg, rems_errname(code), msg);
    }
    assert_errmsg_has(f, msg);
    after = dump_tables(f->s2, false);
    assert_dumps_equal(before, after);
    assert_true(last_applied(f->s2) == 2);
}

static void snapshot_restore_errors(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    msgpack_sbuffer sb;
    struct dump *snapbuf;
    const unsigned char *image;
    size_t image_len;
    void *snap;
    size_t len;
    size_t cut;
    static unsigned char garbage[4 * 4096];
    size_t i;

    populate(f, f->s);
    snapshot_of(f, f->s, &snap, &len);
    image = image_of(snap, len, &image_len);
    open_other(f);
    e = put_e("mine", "{}", "req-mine");
    apply_to(f, f->s2, 1, &e);
    e = put_e("mine2", "{}", NULL);
    apply_to(f, f->s2, 2, &e);

    expect_restore_fails(f, "\x91\x01", 2, REMS_ECORRUPT,
                         "snapshot: header is not a map");
    expect_restore_fails(f, "", 0, REMS_ECORRUPT,
                         "snapshot: header is not a map");
    expect_restore_fails(f, "\x81\x01\x01", 3, REMS_ECORRUPT,
                         "snapshot: header keys must be strings");

    snapbuf = build_snapshot(2, "lmdb", 8, image_len, image, image_len);
    expect_restore_fails(f, snapbuf->p, snapbuf->len, REMS_EUNSUPPORTED,
                         "snapshot: version 2 format lmdb is not supported");
    snapbuf = build_snapshot(1, "json", 8, image_len, image, image_len);
    expect_restore_fails(f, snapbuf->p, snapbuf->len, REMS_EUNSUPPORTED,
                         "snapshot: version 1 format other is not supported");
    /* A header without v. */
    {
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, "format");
        pk_str(&pk, "lmdb");
        expect_restore_fails(f, sb.data, sb.size, REMS_EUNSUPPORTED,
                             "version 0 format lmdb is not supported");
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 1);
        pk_str(&pk, "last_applied");
        pk_str(&pk, "8");
        expect_restore_fails(f, sb.data, sb.size, REMS_ECORRUPT,
                             "snapshot: header field last_applied is "
                             "malformed");
        msgpack_sbuffer_destroy(&sb);
    }

    /* Image length and header disagree. */
    snapbuf = build_snapshot(1, "lmdb", 8, image_len + 1, image, image_len);
    expect_restore_fails(f, snapbuf->p, snapbuf->len, REMS_ECORRUPT,
                         "header says");

    /* Every cut inside the header, and a stride of cuts in the image. */
    for (cut = 0; cut < len; cut += cut < 128 ? 1 : 997) {
        void *part = malloc(cut > 0 ? cut : 1);
        assert_non_null(part);
        memcpy(part, snap, cut);
        expect_restore_fails(f, part, cut, REMS_ECORRUPT, "snapshot: ");
        free(part);
    }
    expect_restore_fails(f, snap, len - 1, REMS_ECORRUPT,
                         "snapshot: image is ");

    /* A consistent header over bytes that are no LMDB image. */
    for (i = 0; i < sizeof garbage; i++) {
        garbage[i] = (unsigned char)(i * 7 + 1);
    }
    snapbuf =
        build_snapshot(1, "lmdb", 8, sizeof garbage, garbage, sizeof garbage);
    expect_restore_fails(f, snapbuf->p, snapbuf->len, REMS_ECORRUPT,
                         "snapshot image");

    rems_free(snap);

    /* After all that, the store still applies. */
    e = put_e("mine3", "{}", NULL);
    apply_to(f, f->s2, 3, &e);
    assert_int_equal(policy_count(f->s2), 3);
}

/* A header that promises an index but carries an empty image is corrupt:
 * it must not replace the state with an empty store. */
static void snapshot_restore_empty_image(void **state)
{
    struct fixture *f = *state;
    struct statemachine_entry e;
    struct dump *snapbuf;

    open_other(f);
    e = put_e("mine", "{}", NULL);
    apply_to(f, f->s2, 1, &e);
    e = put_e("mine2", "{}", NULL);
    apply_to(f, f->s2, 2, &e);
    snapbuf = build_snapshot(1, "lmdb", 8, 0, NULL, 0);
    expect_restore_fails(f, snapbuf->p, snapbuf->len, REMS_ECORRUPT,
                         "snapshot");
}

/* Failing the n-th allocation of a snapshot or a restore, for every n, gives
 * REMS_ENOMEM and no leak. */
static void snapshot_out_of_memory(void **state)
{
    struct fixture *f = *state;
    void *snap = NULL;
    size_t len = 0;
    bool replaced = false;
    long live;
    int rv;
    int n;

    populate(f, f->s);
    live = f->heap.live;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = statemachine_snapshot(f->s, rems_malloc, rems_free, &snap, &len,
                                   f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(snap);
        assert_int_equal(f->heap.live, live);
    }
    assert_true(n >= 3);

    open_other(f);
    live = f->heap.live;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = statemachine_restore(f->s2, snap, len, &replaced, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_false(replaced);
        assert_int_equal(f->heap.live, live);
        assert_true(last_applied(f->s2) == 0);
    }
    assert_true(replaced);
    assert_true(last_applied(f->s2) == 8);
    rems_free(snap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(entry_roundtrip),
        T(entry_type_name),
        T(entry_encode_limits),
        T(entry_encode_out_of_memory),
        T(key_check),
        T(decode_accepts),
        T(decode_not_a_map),
        T(decode_missing_fields),
        T(decode_unsupported),
        T(decode_duplicates),
        T(decode_wrong_types),
        T(decode_too_long),
        T(decode_bad_key),
        T(decode_trailing_bytes),
        T(decode_truncated),
        T(apply_put_create_update),
        T(apply_put_cas),
        T(apply_delete),
        T(apply_members),
        T(apply_noop),
        T(apply_reapply_skipped),
        T(apply_duplicate_request),
        T(apply_malformed),
        T(apply_corrupt_records),
        T(audit_records),
        T(policy_list),
        T(apply_request_window),
        T(apply_deterministic),
        T(apply_out_of_memory),
        T(snapshot_restore_fresh),
        T(snapshot_restore_empty),
        T(snapshot_restore_keeps_newer),
        T(snapshot_restore_errors),
        T(snapshot_restore_empty_image),
        T(snapshot_out_of_memory),
#undef T
    };
    return cmocka_run_group_tests_name("statemachine", tests, NULL, NULL);
}
