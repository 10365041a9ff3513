/* Integration: remsd nodes that die, stop and come back. Leader loss and
 * re-election, catch-up of a restarted node, a full-cluster restart, and
 * loss of quorum (writes refused with 503 and Retry-After, stale reads
 * still served).
 *
 * Each test starts its own three-node cluster (election 300 ms, heartbeat
 * 30 ms, forward timeout 2 s). Killed nodes are reaped by the test; the
 * teardown stops the rest, prints the logs when the test failed, and then
 * asserts that every node it stopped exited 0. */
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

#include "tests/lib/proc.h"

#define LEADER_TIMEOUT_MS 10000
#define CATCH_UP_TIMEOUT_MS 10000
#define FORWARD_TIMEOUT_MS 2000

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    bool passed;
};

static const char *const extra_args[] = {
    "--forward-timeout-ms",
    "2000",
    NULL,
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_cluster_init(&f->c, 3, extra_args);
    test_cluster_start(&f->c);
    *state = f;
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

static int64_t jint(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return (int64_t)json_integer_value(v);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    assert_non_null(s);
    return s;
}

static void dump_answer(const char *what, long status, json_t *o)
{
    char *text = o != NULL ? json_dumps(o, JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "%s: status %ld: %s\n", what, status,
            text != NULL ? text : "(no JSON)");
    free(text);
}

static int64_t
put_ok(struct fixture *f, size_t i, const char *key, const char *body)
{
    char path[256];
    char doc[4096];
    long status;
    int64_t rev;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s", key);
    o = test_cluster_call(&f->c, i, "PUT", path, NULL,
                          test_policy_doc(body, doc, sizeof doc), &status,
                          NULL);
    if (status != 200) {
        dump_answer(path, status, o);
    }
    assert_int_equal(status, 200);
    rev = jint(o, "revision");
    assert_true(rev > 0);
    json_decref(o);
    return rev;
}

/* Policy @key on node @i: its revision, or 0 when absent; -1 when the
 * node gives no usable answer. */
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

/* SIGKILL node @i and reap it. */
static void kill_node(struct fixture *f, size_t i)
{
    assert_int_equal(test_proc_signal(&f->c.nodes[i].proc, SIGKILL), 0);
    assert_int_equal(test_proc_wait(&f->c.nodes[i].proc, 5000), 128 + SIGKILL);
}

/* Every policy of node @i, linearizable or stale, as one JSON array of
 * {key, value, revision, ...} (all pages). */
static json_t *list_all(struct fixture *f, size_t i, bool stale)
{
    json_t *all = json_array();
    char after[300] = "";
    for (;;) {
        char path[512];
        long status;
        json_t *o;
        json_t *next;
        snprintf(path, sizeof path, "/v1/policies?limit=7%s%s%s",
                 stale ? "&consistency=stale" : "",
                 after[0] != '\0' ? "&after=" : "", after);
        o = test_cluster_call(&f->c, i, "GET", path, NULL, NULL, &status, NULL);
        if (status != 200) {
            dump_answer(path, status, o);
        }
        assert_int_equal(status, 200);
        assert_int_equal(json_array_extend(all, json_object_get(o, "items")),
                         0);
        next = json_object_get(o, "next_after");
        if (!json_is_string(next)) {
            json_decref(o);
            break;
        }
        snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(o);
    }
    return all;
}

static bool log_has(const char *path, const char *needle)
{
    char *text = test_read_file(path);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

static size_t log_count(const char *path, const char *needle)
{
    char *text = test_read_file(path);
    size_t n = 0;
    const char *p = text;
    while (p != NULL && (p = strstr(p, needle)) != NULL) {
        n++;
        p++;
    }
    free(text);
    return n;
}

/* ------------------------------------------------------------------ */

/* X-Rems-Index of a stale read of @key on node @i, or -1 without answer. */
static int64_t stale_index(struct fixture *f, size_t i, const char *key)
{
    char path[256];
    char value[32];
    long status;
    char *headers = NULL;
    int64_t index = -1;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s?consistency=stale", key);
    o = test_cluster_call(&f->c, i, "GET", path, NULL, NULL, &status,
                          &headers);
    if (status == 200 && headers != NULL &&
        test_http_header(headers, "X-Rems-Index", value, sizeof value)) {
        index = strtoll(value, NULL, 10);
    }
    free(headers);
    json_decref(o);
    return index;
}

struct stale_wait {
    struct fixture *f;
    size_t node;
    const char *key;
    int64_t index;
};

static bool stale_answers(void *arg)
{
    struct stale_wait *w = arg;
    w->index = stale_index(w->f, w->node, w->key);
    return w->index >= 0;
}

/* SIGKILL of the leader: the two survivors elect another leader in a
 * higher term, take writes, and still hold every acknowledged write. The
 * killed node, restarted on its data dir, catches up. */
static void leader_killed(void **state)
{
    struct fixture *f = *state;
    struct test_leader second;
    struct test_leader third;
    char key[64];
    int64_t revs[6];
    int64_t last;
    size_t old;
    size_t a;
    size_t b;
    int i;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    for (i = 0; i < 6; i++) {
        char body[32];
        snprintf(key, sizeof key, "acked/%d", i);
        snprintf(body, sizeof body, "{\"n\": %d}", i);
        revs[i] = put_ok(f, (size_t)i % 3, key, body);
    }

    old = f->leader.index;
    kill_node(f, old);
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &second));
    assert_int_not_equal(second.id, f->leader.id);
    assert_true(second.term > f->leader.term);

    a = test_cluster_other(&f->c, old, SIZE_MAX);
    b = test_cluster_other(&f->c, old, a);
    assert_true(a < 3 && b < 3);
    /* Through the follower among the survivors. */
    last = put_ok(f, a == second.index ? b : a, "after/failover",
                  "{\"leader\": \"new\"}");
    assert_true(last > revs[5]);

    for (i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "acked/%d", i);
        assert_int_equal(read_rev(f, a, key, false), revs[i]);
        assert_int_equal(read_rev(f, b, key, false), revs[i]);
    }

    /* The same command line and data dir. The restarted node's state
     * survived the kill: its first stale answer already reports an index
     * at or past the writes it had applied (raft itself restarts its
     * applied index lower and replays). */
    {
        struct stale_wait w = {f, old, "acked/5", -1};
        test_cluster_start_node(&f->c, old);
        assert_true(test_wait_for(stale_answers, &w, 10000));
        assert_true(w.index >= revs[5]);
    }
    wait_stale(f, old, "after/failover", last);
    for (i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "acked/%d", i);
        assert_int_equal(read_rev(f, old, key, true), revs[i]);
    }
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &third));
    assert_true(third.term >= second.term);
    /* And it serves linearizable reads again. */
    assert_int_equal(read_rev(f, old, "after/failover", false), last);
    f->passed = true;
}

/* SIGTERM to all three: each exits 0 after logging its stop; started
 * again on the same data dirs, the cluster elects a leader in a higher
 * term and holds exactly the data it had. */
static void full_restart(void **state)
{
    struct fixture *f = *state;
    struct test_leader again;
    json_t *before;
    json_t *after;
    char key[64];
    long status;
    json_t *o;
    size_t i;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    for (i = 0; i < 12; i++) {
        char body[64];
        snprintf(key, sizeof key, "keep/%02zu", i);
        snprintf(body, sizeof body, "{\"n\": %zu, \"s\": \"v%zu\"}", i, i);
        put_ok(f, i % 3, key, body);
    }
    o = test_cluster_call(&f->c, 1, "DELETE", "/v1/policies/keep/05", NULL,
                          NULL, &status, NULL);
    assert_int_equal(status, 200);
    json_decref(o);
    before = list_all(f, 2, false);
    assert_int_equal(json_array_size(before), 11);

    for (i = 0; i < 3; i++) {
        assert_int_equal(test_proc_signal(&f->c.nodes[i].proc, SIGTERM), 0);
    }
    for (i = 0; i < 3; i++) {
        assert_int_equal(test_proc_wait(&f->c.nodes[i].proc, 10000), 0);
        assert_true(log_has(f->c.nodes[i].log_path,
                            "\"event\":\"stopping\",\"signal\":\"SIGTERM\""));
        assert_true(
            log_has(f->c.nodes[i].log_path, "\"event\":\"node_stopped\""));
    }

    test_cluster_start(&f->c);
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &again));
    assert_true(again.term > f->leader.term);
    for (i = 0; i < 3; i++) {
        /* Two starts, and the second did not bootstrap again. */
        assert_int_equal(
            log_count(f->c.nodes[i].log_path, "\"event\":\"node_started\""), 2);
        assert_int_equal(
            log_count(f->c.nodes[i].log_path, "\"bootstrapped\":true"), 1);
    }

    for (i = 0; i < 3; i++) {
        after = list_all(f, i, false);
        if (!json_equal(before, after)) {
            char *x = json_dumps(before, JSON_COMPACT);
            char *y = json_dumps(after, JSON_COMPACT);
            fprintf(stderr, "before: %s\nafter (node %zu): %s\n", x, i + 1, y);
            free(x);
            free(y);
        }
        assert_true(json_equal(before, after));
        json_decref(after);
    }
    json_decref(before);
    f->passed = true;
}

/* A restart with neither --peer nor --join (the data dirs hold the
 * state, docs/configuration.md): the cluster comes back and every node,
 * followers included, takes writes and serves linearizable reads. */
static void restart_without_peers(void **state)
{
    struct fixture *f = *state;
    struct test_leader again;
    int64_t rev;
    size_t i;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    rev = put_ok(f, 0, "before/restart", "{\"v\": 1}");
    assert_true(test_cluster_stop(&f->c));
    for (i = 0; i < 3; i++) {
        f->c.nodes[i].omit_peers = true;
    }
    test_cluster_start(&f->c);
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &again));
    for (i = 0; i < 3; i++) {
        char key[32];
        json_t *st = test_cluster_status(&f->c, i);
        const char *api;
        assert_non_null(st);
        api = json_string_value(
            json_object_get(json_object_get(st, "leader"), "api_address"));
        if (api == NULL) {
            fprintf(stderr,
                    "node %zu, restarted without --peer, does not know the "
                    "API address of the leader (node %llu)\n",
                    i + 1, (unsigned long long)again.id);
        }
        assert_non_null(api);
        assert_string_equal(api, f->c.nodes[again.index].api_address);
        json_decref(st);
        assert_int_equal(read_rev(f, i, "before/restart", false), rev);
        snprintf(key, sizeof key, "after/restart/%zu", i);
        put_ok(f, i, key, "{\"v\": 2}");
    }
    f->passed = true;
}

/* A leader paused (SIGSTOP) long enough for the others to elect a new one
 * and commit a newer value must not, once resumed, answer a linearizable
 * read with the old value, nor acknowledge a write that is then lost. */
static void paused_leader_resumes(void **state)
{
    struct fixture *f = *state;
    struct test_leader second;
    struct test_leader third;
    uint64_t until;
    size_t old;
    int64_t rev1;
    int64_t rev2;
    int64_t acked = 0;
    int reads = 0;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    old = f->leader.index;
    rev1 = put_ok(f, old, "paused/k", "{\"v\": 1}");

    assert_int_equal(test_proc_signal(&f->c.nodes[old].proc, SIGSTOP), 0);
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &second));
    assert_int_not_equal(second.id, f->leader.id);
    rev2 = put_ok(f, second.index, "paused/k", "{\"v\": 2}");
    assert_true(rev2 > rev1);

    assert_int_equal(test_proc_signal(&f->c.nodes[old].proc, SIGCONT), 0);
    /* Right after waking up it may still think it leads. */
    {
        long status;
        char doc[256];
        json_t *o = test_cluster_call(
            &f->c, old, "PUT", "/v1/policies/paused/w", NULL,
            test_policy_doc("{\"w\": 1}", doc, sizeof doc), &status, NULL);
        if (status == 200) {
            acked = (int64_t)json_integer_value(json_object_get(o, "revision"));
        } else {
            assert_true(status == 503 || status == 504);
        }
        json_decref(o);
    }
    until = test_now_ms() + 1500;
    while (test_now_ms() < until) {
        int64_t rev = read_rev(f, old, "paused/k", false);
        /* -1: refused (503/504), which is fine; rev1 never is. */
        if (rev != -1) {
            assert_int_equal(rev, rev2);
            reads++;
        }
        test_sleep_ms(20);
    }
    assert_true(reads > 0);

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &third));
    assert_true(third.term >= second.term);
    wait_stale(f, old, "paused/k", rev2);
    if (acked != 0) {
        assert_int_equal(read_rev(f, third.index, "paused/w", false), acked);
    }
    f->passed = true;
}

/* A write on a node without quorum: 503 with Retry-After within a bound
 * (never a hang), and the error code of the documented set. */
static void assert_write_refused(struct fixture *f, size_t i, const char *key)
{
    char path[256];
    char doc[256];
    char *hdrs = NULL;
    char h[64];
    long status;
    uint64_t t0 = test_now_ms();
    uint64_t took;
    const char *code;
    json_t *o;

    snprintf(path, sizeof path, "/v1/policies/%s", key);
    o = test_cluster_call(&f->c, i, "PUT", path, NULL,
                          test_policy_doc("{\"lost\": true}", doc, sizeof doc),
                          &status, &hdrs);
    took = test_now_ms() - t0;
    if (status != 503) {
        dump_answer(path, status, o);
    }
    assert_int_equal(status, 503);
    assert_true(took < FORWARD_TIMEOUT_MS + 3000);
    assert_true(test_http_header(hdrs, "Retry-After", h, sizeof h));
    assert_true(strtol(h, NULL, 10) >= 1);
    code = jstr(json_object_get(o, "error"), "code");
    assert_true(strcmp(code, "no_leader") == 0 ||
                strcmp(code, "unavailable") == 0);
    json_decref(o);
    free(hdrs);
}

struct not_ready {
    struct fixture *f;
    size_t node;
};

static bool readyz_503(void *arg)
{
    struct not_ready *w = arg;
    long status;
    json_t *o = test_cluster_call(&w->f->c, w->node, "GET", "/readyz", NULL,
                                  NULL, &status, NULL);
    bool ok = status == 503 && json_is_false(json_object_get(o, "ready"));
    json_decref(o);
    return ok;
}

/* After quorum is gone: writes 503, stale reads answer, linearizable reads
 * are refused, /readyz turns 503 and /status shows no leader. */
static void check_no_quorum(struct fixture *f, size_t survivor, int64_t rev)
{
    struct not_ready w = {f, survivor};
    char *hdrs = NULL;
    char h[64];
    long status;
    json_t *o;

    assert_write_refused(f, survivor, "lost/1");

    o = test_cluster_call(&f->c, survivor, "GET",
                          "/v1/policies/kept?consistency=stale", NULL, NULL,
                          &status, &hdrs);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), rev);
    assert_int_equal(jint(test_policy_meta(o), "v"), 1);
    assert_true(test_http_header(hdrs, "X-Rems-Index", h, sizeof h));
    assert_true(strtoll(h, NULL, 10) >= rev);
    json_decref(o);
    free(hdrs);

    assert_true(test_wait_for(readyz_503, &w, 5000));
    o = test_cluster_call(&f->c, survivor, "GET", "/readyz", NULL, NULL,
                          &status, NULL);
    assert_string_equal(jstr(o, "reason"), "no leader known");
    json_decref(o);

    o = test_cluster_status(&f->c, survivor);
    assert_non_null(o);
    assert_true(json_is_null(json_object_get(o, "leader")));
    assert_string_not_equal(jstr(o, "role"), "leader");
    json_decref(o);

    /* Once no leader is known, the answer is immediate. */
    assert_write_refused(f, survivor, "lost/2");
    o = test_cluster_call(&f->c, survivor, "GET", "/v1/policies/kept", NULL,
                          NULL, &status, &hdrs);
    assert_int_equal(status, 503);
    assert_true(test_http_header(hdrs, "Retry-After", h, sizeof h));
    json_decref(o);
    free(hdrs);

    /* Nothing of the refused writes landed. */
    assert_int_equal(read_rev(f, survivor, "lost/1", true), 0);
    assert_int_equal(read_rev(f, survivor, "lost/2", true), 0);
}

/* Kill the leader and one follower: the surviving follower refuses
 * writes and linearizable reads but serves stale reads. */
static void quorum_lost_follower_survives(void **state)
{
    struct fixture *f = *state;
    size_t survivor;
    size_t other;
    int64_t rev;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    survivor = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    other = test_cluster_other(&f->c, f->leader.index, survivor);
    rev = put_ok(f, survivor, "kept", "{\"v\": 1}");
    wait_stale(f, survivor, "kept", rev);

    kill_node(f, f->leader.index);
    kill_node(f, other);
    check_no_quorum(f, survivor, rev);
    f->passed = true;
}

/* Kill both followers: the old leader steps down, and a write sent to it
 * is answered 503 rather than left hanging. */
static void quorum_lost_leader_survives(void **state)
{
    struct fixture *f = *state;
    size_t a;
    size_t b;
    int64_t rev;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    a = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    b = test_cluster_other(&f->c, f->leader.index, a);
    rev = put_ok(f, a, "kept", "{\"v\": 1}");

    kill_node(f, a);
    kill_node(f, b);
    check_no_quorum(f, f->leader.index, rev);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(leader_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(full_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_without_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(paused_leader_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(quorum_lost_follower_survives, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(quorum_lost_leader_survives, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("integration_failover", tests, NULL,
                                       NULL);
}
