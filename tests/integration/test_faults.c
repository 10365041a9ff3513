/* Integration: the fault-injection switch (/v1/faults) on real remsd
 * nodes started with --fault-injection.
 *
 * Isolating a node takes one call on that node: its blocked set cuts both
 * directions (its connections to the blocked peers fail, theirs to it are
 * closed as they arrive), so the peers need no call of their own. The
 * tests isolate the leader that way and check that the two others elect a
 * leader within a few seconds and take writes, that the isolated node
 * steps down and commits nothing, and that after the set is cleared it
 * follows again and catches up (its uncommitted write gone). A second
 * test blocks on both sides and flaps a follower's link many times while
 * writes go on (stream lifetimes: run it under ASan). The last ones check
 * the refusals of the API, and the 404 of a node without fault injection.
 *
 * Each test starts its own cluster (election 300 ms, heartbeat 30 ms,
 * forward timeout 2 s). The teardown stops every node by PID, prints the
 * logs when the test failed, and then asserts that every node exited 0
 * (a sanitizer report makes remsd exit non-zero). */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/proc.h"

#define LEADER_TIMEOUT_MS 10000
/* "Within a few seconds": ten election timeouts of 300 ms. */
#define FAILOVER_MAX_MS 3000
#define CATCH_UP_TIMEOUT_MS 10000

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    bool passed;
};

static const char *const fault_args[] = {
    "--forward-timeout-ms",
    "2000",
    "--fault-injection",
    NULL,
};

static const char *const plain_args[] = {
    "--forward-timeout-ms",
    "2000",
    NULL,
};

static struct fixture *fixture_start(size_t n, const char *const *args)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_cluster_init(&f->c, n, args);
    test_cluster_start(&f->c);
    return f;
}

static int setup(void **state)
{
    *state = fixture_start(3, fault_args);
    return 0;
}

static int setup_plain(void **state)
{
    *state = fixture_start(1, plain_args);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

static void dump_answer(const char *what, long status, json_t *o)
{
    char *text = o != NULL ? json_dumps(o, JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "%s: status %ld: %s\n", what, status,
            text != NULL ? text : "(no JSON)");
    free(text);
}

static bool log_has(const char *path, const char *needle)
{
    char *text = test_read_file(path);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* The number after @key in the first line of the log @path that holds
 * @needle, or -1. */
static long long
log_number_after(const char *path, const char *needle, const char *key)
{
    char *text = test_read_file(path);
    const char *at = text != NULL ? strstr(text, needle) : NULL;
    const char *eol = at != NULL ? strchr(at, '\n') : NULL;
    const char *k = at != NULL ? strstr(at, key) : NULL;
    long long v = -1;
    if (k != NULL && (eol == NULL || k < eol)) {
        v = strtoll(k + strlen(key), NULL, 10);
    }
    free(text);
    return v;
}

/* ------------------------------------------------------------------ */
/* The switch.                                                          */

/* @method /v1/faults on node @i with @body; the answer (caller owns it). */
static json_t *faults_call(struct fixture *f,
                           size_t i,
                           const char *method,
                           const char *body,
                           long *status)
{
    return test_cluster_call(&f->c, i, method, "/v1/faults", NULL, body, status,
                             NULL);
}

/* The blocked set of an answer as "[a,b]". */
static void blocked_text(json_t *o, char *out, size_t cap)
{
    char *text = json_dumps(json_object_get(o, "blocked_peers"),
                            JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(out, cap, "%s", text != NULL ? text : "(none)");
    free(text);
}

/* Set node @i's blocked peers to @ids_json (a JSON array) and check the
 * answer shows @want. */
static void
block(struct fixture *f, size_t i, const char *ids_json, const char *want)
{
    char body[256];
    char got[256];
    long status;
    json_t *o;

    snprintf(body, sizeof body, "{\"blocked_peers\": %s}", ids_json);
    o = faults_call(f, i, "PUT", body, &status);
    if (status != 200) {
        dump_answer("PUT /v1/faults", status, o);
    }
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "enabled")));
    blocked_text(o, got, sizeof got);
    assert_string_equal(got, want);
    json_decref(o);
}

static void unblock(struct fixture *f, size_t i)
{
    char got[64];
    long status;
    json_t *o = faults_call(f, i, "DELETE", NULL, &status);
    assert_int_equal(status, 200);
    blocked_text(o, got, sizeof got);
    assert_string_equal(got, "[]");
    json_decref(o);
}

/* ------------------------------------------------------------------ */
/* Policies and status.                                                 */

static int64_t put_status(struct fixture *f,
                          size_t i,
                          const char *key,
                          const char *meta,
                          long *status)
{
    char path[256];
    char doc[1024];
    int64_t rev = -1;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s", key);
    o = test_cluster_call(&f->c, i, "PUT", path, NULL,
                          test_policy_doc(meta, doc, sizeof doc), status, NULL);
    if (*status == 200 && json_is_integer(json_object_get(o, "revision"))) {
        rev = (int64_t)json_integer_value(json_object_get(o, "revision"));
    }
    json_decref(o);
    return rev;
}

static int64_t
put_ok(struct fixture *f, size_t i, const char *key, const char *meta)
{
    long status;
    int64_t rev = put_status(f, i, key, meta, &status);
    if (status != 200) {
        fprintf(stderr, "PUT %s on node %zu: status %ld\n", key, i + 1, status);
    }
    assert_int_equal(status, 200);
    assert_true(rev > 0);
    return rev;
}

/* Policy @key on node @i: its revision, 0 when absent, -1 without a usable
 * answer. */
static int64_t
read_rev(struct fixture *f, size_t i, const char *key, bool stale)
{
    char path[256];
    long status;
    int64_t rev = -1;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s%s", key,
             stale ? "?consistency=stale" : "");
    o = test_cluster_call(&f->c, i, "GET", path, NULL, NULL, &status, NULL);
    if (status == 200 && json_is_integer(json_object_get(o, "revision"))) {
        rev = (int64_t)json_integer_value(json_object_get(o, "revision"));
    } else if (status == 404) {
        rev = 0;
    }
    json_decref(o);
    return rev;
}

struct has_rev {
    struct fixture *f;
    size_t node;
    const char *key;
    int64_t rev;
};

static bool stale_has_rev(void *arg)
{
    struct has_rev *w = arg;
    return read_rev(w->f, w->node, w->key, true) == w->rev;
}

static void
wait_stale(struct fixture *f, size_t i, const char *key, int64_t rev)
{
    struct has_rev w = {f, i, key, rev};
    assert_true(test_wait_for(stale_has_rev, &w, CATCH_UP_TIMEOUT_MS));
}

/* Node @i's role and the id of the leader it names (0: none). */
static bool node_view(struct fixture *f,
                      size_t i,
                      char *role,
                      size_t cap,
                      uint64_t *leader,
                      uint64_t *term,
                      bool *ready)
{
    json_t *st = test_cluster_status(&f->c, i);
    json_t *l;
    if (st == NULL) {
        return false;
    }
    snprintf(role, cap, "%s",
             json_string_value(json_object_get(st, "role")) != NULL
                 ? json_string_value(json_object_get(st, "role"))
                 : "");
    l = json_object_get(st, "leader");
    *leader = json_is_object(l)
                  ? (uint64_t)json_integer_value(json_object_get(l, "id"))
                  : 0;
    *term = (uint64_t)json_integer_value(json_object_get(st, "term"));
    *ready = json_is_true(json_object_get(st, "leader_ready"));
    json_decref(st);
    return true;
}

/* Nodes @a and @b agree on a ready leader among themselves, other than
 * @not_id, in a term above @above. */
struct pair_leader {
    struct fixture *f;
    size_t a;
    size_t b;
    uint64_t not_id;
    uint64_t above;
    struct test_leader out;
};

static bool pair_has_leader(void *arg)
{
    struct pair_leader *w = arg;
    char role_a[16];
    char role_b[16];
    uint64_t la;
    uint64_t lb;
    uint64_t ta;
    uint64_t tb;
    bool ra;
    bool rb;
    size_t li;

    if (!node_view(w->f, w->a, role_a, sizeof role_a, &la, &ta, &ra) ||
        !node_view(w->f, w->b, role_b, sizeof role_b, &lb, &tb, &rb)) {
        return false;
    }
    if (la == 0 || la != lb || ta != tb || la == w->not_id || ta <= w->above) {
        return false;
    }
    li = w->f->c.nodes[w->a].id == la ? w->a : w->b;
    if (w->f->c.nodes[li].id != la ||
        strcmp(li == w->a ? role_a : role_b, "leader") != 0 ||
        !(li == w->a ? ra : rb)) {
        return false;
    }
    w->out.index = li;
    w->out.id = la;
    w->out.term = ta;
    return true;
}

struct not_leader {
    struct fixture *f;
    size_t node;
};

static bool stepped_down(void *arg)
{
    struct not_leader *w = arg;
    char role[16];
    uint64_t leader;
    uint64_t term;
    bool ready;
    return node_view(w->f, w->node, role, sizeof role, &leader, &term,
                     &ready) &&
           strcmp(role, "leader") != 0 && leader == 0;
}

/* ------------------------------------------------------------------ */
/* Tests.                                                               */

/* The leader blocks both peers (one call, on the leader only): the two
 * others elect a leader within a few seconds and take writes; the old
 * leader steps down and cannot commit a write; cleared, it follows the
 * new leader and catches up, and its write is gone. */
static void isolate_leader(void **state)
{
    struct fixture *f = *state;
    struct pair_leader w;
    struct not_leader nl;
    struct test_leader again;
    char ids[64];
    char want[64];
    char needle[128];
    int64_t before;
    int64_t after;
    int64_t t0;
    int64_t elapsed;
    long status;
    size_t old;
    size_t a;
    size_t b;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    old = f->leader.index;
    a = test_cluster_other(&f->c, old, SIZE_MAX);
    b = test_cluster_other(&f->c, old, a);
    assert_true(a < 3 && b < 3);
    before = put_ok(f, old, "before/isolation", "{\"n\": 1}");
    wait_stale(f, a, "before/isolation", before);
    wait_stale(f, b, "before/isolation", before);

    /* Listed in any order, answered ascending. */
    snprintf(ids, sizeof ids, "[%llu, %llu]",
             (unsigned long long)f->c.nodes[b].id,
             (unsigned long long)f->c.nodes[a].id);
    snprintf(want, sizeof want, "[%llu,%llu]",
             (unsigned long long)(a < b ? f->c.nodes[a].id : f->c.nodes[b].id),
             (unsigned long long)(a < b ? f->c.nodes[b].id : f->c.nodes[a].id));
    t0 = (int64_t)test_now_ms();
    block(f, old, ids, want);

    w = (struct pair_leader){f, a, b, f->leader.id, f->leader.term, {0}};
    assert_true(test_wait_for(pair_has_leader, &w, LEADER_TIMEOUT_MS));
    elapsed = (int64_t)test_now_ms() - t0;
    fprintf(stderr, "new leader %llu (term %llu) %lld ms after the cut\n",
            (unsigned long long)w.out.id, (unsigned long long)w.out.term,
            (long long)elapsed);
    assert_true(elapsed <= FAILOVER_MAX_MS);

    /* The majority takes writes, through its follower too. */
    after =
        put_ok(f, a == w.out.index ? b : a, "after/isolation", "{\"n\": 2}");
    assert_true(after > before);
    assert_int_equal(read_rev(f, w.out.index, "after/isolation", false), after);

    /* The old leader loses leadership (no quorum heard from) and commits
     * nothing: its write fails (no leader, or leadership lost). */
    nl = (struct not_leader){f, old};
    assert_true(test_wait_for(stepped_down, &nl, LEADER_TIMEOUT_MS));
    put_status(f, old, "lost/isolated", "{\"n\": 3}", &status);
    fprintf(stderr, "write on the isolated node: status %ld\n", status);
    assert_true(status != 200);
    assert_int_equal(read_rev(f, old, "after/isolation", true), 0);
    /* The ids of "[2,3]" as the log line has them: "2,3". */
    snprintf(needle, sizeof needle,
             "\"event\":\"faults_set\",\"blocked_peers\":\"%.*s\"",
             (int)strlen(want) - 2, want + 1);
    /* The leader had connections to and from both peers: they were cut
     * (not merely refused when made again). */
    assert_true(log_number_after(f->c.nodes[old].log_path, needle,
                                 "\"connections_cut\":") >= 2);

    /* Cleared: it rejoins as a follower and catches up. */
    unblock(f, old);
    assert_true(log_has(f->c.nodes[old].log_path,
                        "\"event\":\"faults_set\",\"blocked_peers\":\"\""));
    wait_stale(f, old, "after/isolation", after);
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &again));
    assert_true(again.term >= w.out.term);
    assert_int_equal(read_rev(f, old, "after/isolation", false), after);
    assert_int_equal(read_rev(f, old, "lost/isolated", false), 0);
    assert_int_equal(read_rev(f, again.index, "lost/isolated", false), 0);
    /* And it takes writes again (forwarded or its own). */
    put_ok(f, old, "after/rejoin", "{\"n\": 4}");
    f->passed = true;
}

/* Blocking on both sides, and a follower's links flapping: the leader and
 * one follower block each other twenty times in a row, with writes in
 * between, some while cut. The cluster keeps its leader (the other
 * follower is a quorum with it), and the flapped follower holds every
 * write in the end. Under ASan this exercises connections cut while
 * raft_uv reads, writes and reconnects. */
static void flap_follower(void **state)
{
    struct fixture *f = *state;
    struct test_leader again;
    char ids[32];
    char want[32];
    char key[32];
    char meta[32];
    int64_t rev = 0;
    size_t leader;
    size_t flapped;
    size_t other;
    int i;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    leader = f->leader.index;
    flapped = test_cluster_other(&f->c, leader, SIZE_MAX);
    other = test_cluster_other(&f->c, leader, flapped);
    assert_true(flapped < 3 && other < 3);
    for (i = 0; i < 20; i++) {
        snprintf(ids, sizeof ids, "[%llu]",
                 (unsigned long long)f->c.nodes[flapped].id);
        snprintf(want, sizeof want, "%s", ids);
        block(f, leader, ids, want);
        snprintf(ids, sizeof ids, "[%llu]",
                 (unsigned long long)f->c.nodes[leader].id);
        block(f, flapped, ids, ids);
        snprintf(key, sizeof key, "flap/%02d", i);
        snprintf(meta, sizeof meta, "{\"n\": %d}", i);
        rev = put_ok(f, i % 2 == 0 ? leader : other, key, meta);
        test_sleep_ms((unsigned)(i % 4) * 100);
        unblock(f, leader);
        unblock(f, flapped);
        test_sleep_ms((unsigned)(i % 3) * 50);
    }
    wait_stale(f, flapped, key, rev);
    for (i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "flap/%02d", i);
        assert_true(read_rev(f, flapped, key, true) > 0);
    }
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &again));
    put_ok(f, flapped, "flap/end", "{\"n\": 99}");
    f->passed = true;
}

/* A refused body changes nothing and names its field. */
static void
refused(struct fixture *f, const char *body, const char *field, long code)
{
    long status;
    json_t *o = faults_call(f, 0, "PUT", body, &status);
    json_t *err = json_object_get(o, "error");
    if (status != code) {
        dump_answer(body != NULL ? body : "(no body)", status, o);
    }
    assert_int_equal(status, code);
    if (field != NULL) {
        assert_string_equal(json_string_value(json_object_get(err, "field")),
                            field);
    }
    json_decref(o);
}

/* The API's refusals: each names its field, and the set stays as it
 * was. Duplicates merge; POST is not a method of /v1/faults. */
static void api_refusals(void **state)
{
    struct fixture *f = *state;
    char got[64];
    long status;
    json_t *o;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    o = faults_call(f, 0, "GET", NULL, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "enabled")));
    blocked_text(o, got, sizeof got);
    assert_string_equal(got, "[]");
    json_decref(o);

    block(f, 0, "[3, 2, 3]", "[2,3]");

    refused(f, NULL, "body", 400);
    refused(f, "[2]", "body", 400);
    refused(f, "{}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": 2}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [0]}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [-2]}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [2.5]}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [\"2\"]}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [null]}", "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [2, 1]}", "blocked_peers", 400);
    refused(f,
            "{\"blocked_peers\": [2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,"
            "18]}",
            "blocked_peers", 400);
    refused(f, "{\"blocked_peers\": [2], \"peers\": [3]}", "peers", 400);

    o = faults_call(f, 0, "POST", "{\"blocked_peers\": []}", &status);
    assert_int_equal(status, 405);
    json_decref(o);

    o = faults_call(f, 0, "GET", NULL, &status);
    assert_int_equal(status, 200);
    blocked_text(o, got, sizeof got);
    assert_string_equal(got, "[2,3]");
    json_decref(o);

    /* Sixteen ids is the most, unknown ids are allowed. */
    block(f, 0, "[2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]",
          "[2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]");
    block(f, 0, "[]", "[]");
    block(f, 0, "[2]", "[2]");
    unblock(f, 0);
    /* The switch is local: node 2 never saw any of it. */
    o = faults_call(f, 1, "GET", NULL, &status);
    assert_int_equal(status, 200);
    blocked_text(o, got, sizeof got);
    assert_string_equal(got, "[]");
    json_decref(o);
    /* Left on: the teardown stops node 1 while it refuses connects (those
     * waiting for their refusal are canceled; it must still exit 0). */
    block(f, 0, "[2, 3]", "[2,3]");
    test_sleep_ms(500);
    f->passed = true;
}

struct answers {
    struct fixture *f;
};

static bool node_attached(void *arg)
{
    struct answers *w = arg;
    long status;
    json_t *o = faults_call(w->f, 0, "GET", NULL, &status);
    json_decref(o);
    return status != 0 && status != 503;
}

/* Without fault injection every method answers 404 saying so. */
static void off_is_not_found(void **state)
{
    struct fixture *f = *state;
    struct answers w = {f};
    static const char *const methods[] = {"GET", "PUT", "DELETE"};
    size_t i;

    assert_true(test_wait_for(node_attached, &w, LEADER_TIMEOUT_MS));
    for (i = 0; i < 3; i++) {
        long status;
        json_t *o =
            faults_call(f, 0, methods[i], "{\"blocked_peers\": [2]}", &status);
        json_t *err = json_object_get(o, "error");
        assert_int_equal(status, 404);
        assert_string_equal(json_string_value(json_object_get(err, "code")),
                            "not_found");
        assert_non_null(
            strstr(json_string_value(json_object_get(err, "message")),
                   "fault injection is off"));
        json_decref(o);
    }
    assert_false(log_has(f->c.nodes[0].log_path, "faults_enabled"));
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(isolate_leader, setup, teardown),
        cmocka_unit_test_setup_teardown(flap_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(api_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(off_is_not_found, setup_plain,
                                        teardown),
    };
    return cmocka_run_group_tests_name("it_faults", tests, NULL, NULL);
}
