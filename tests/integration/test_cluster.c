/* Integration: a healthy three-node remsd cluster, driven over the admin
 * API of real processes. Election, writes through followers, linearizable
 * and stale reads, compare-and-set, request-id idempotency, pagination,
 * refused requests and leadership transfer.
 *
 * Each test starts its own cluster (election 300 ms, heartbeat 30 ms) in a
 * temporary directory; the teardown stops every node (SIGTERM, SIGKILL
 * after 10 s), prints the node logs when the test failed, then asserts
 * that every node stopped cleanly with exit code 0. */
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
#define CATCH_UP_TIMEOUT_MS 5000

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    size_t f1; /* The two followers, by index. */
    size_t f2;
    bool passed; /* Set last by each test; false keeps the logs. */
};

static const char *const extra_args[] = {
    "--max-body-bytes", "2048", "--forward-timeout-ms", "2000", NULL,
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
    assert_true(clean); /* Last: every node exited 0 on SIGTERM. */
    return 0;
}

/* Wait for a leader all three agree on; note the two followers. */
static void up(struct fixture *f)
{
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    f->f1 = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    f->f2 = test_cluster_other(&f->c, f->leader.index, f->f1);
    assert_true(f->f1 < 3 && f->f2 < 3);
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

/* The error object of an error answer, checked for @code and @field
 * (NULL: no field). */
static void assert_error(json_t *body,
                         long status,
                         long want_status,
                         const char *code,
                         const char *field)
{
    json_t *err;
    assert_non_null(body);
    if (status != want_status) {
        char *text = json_dumps(body, JSON_ENCODE_ANY);
        fprintf(stderr, "status %ld, wanted %ld: %s\n", status, want_status,
                text != NULL ? text : "?");
        free(text);
    }
    assert_int_equal(status, want_status);
    err = json_object_get(body, "error");
    assert_true(json_is_object(err));
    assert_string_equal(jstr(err, "code"), code);
    if (field != NULL) {
        assert_string_equal(jstr(err, "field"), field);
    }
}

static json_t *put(struct fixture *f,
                   size_t i,
                   const char *key,
                   const char *body,
                   const char *const headers[],
                   long *status,
                   char **resp_headers)
{
    char path[512];
    char doc[4096];
    snprintf(path, sizeof path, "/v1/policies/%s", key);
    return test_cluster_call(&f->c, i, "PUT", path, headers,
                             test_policy_doc(body, doc, sizeof doc), status,
                             resp_headers);
}

static json_t *get(struct fixture *f,
                   size_t i,
                   const char *key,
                   bool stale,
                   long *status,
                   char **resp_headers)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/policies/%s%s", key,
             stale ? "?consistency=stale" : "");
    return test_cluster_call(&f->c, i, "GET", path, NULL, NULL, status,
                             resp_headers);
}

/* PUT that must succeed; returns the revision. */
static int64_t
put_ok(struct fixture *f, size_t i, const char *key, const char *body)
{
    long status;
    int64_t rev;
    json_t *o = put(f, i, key, body, NULL, &status, NULL);
    assert_non_null(o);
    assert_int_equal(status, 200);
    rev = jint(o, "revision");
    assert_true(rev > 0);
    json_decref(o);
    return rev;
}

/* Assert that a JSON text equals a JSON value. */
static void assert_json_equal(const json_t *value, const char *text)
{
    json_error_t jerr;
    json_t *want = json_loads(text, 0, &jerr);
    assert_non_null(want);
    if (!json_equal(value, want)) {
        char *got = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(stderr, "got %s, wanted %s\n", got != NULL ? got : "?", text);
        free(got);
    }
    assert_true(json_equal(value, want));
    json_decref(want);
}

/* ------------------------------------------------------------------ */

/* Exactly one leader, agreed on (id and term) by all three; every node
 * ready, healthy and listing the three voters with their addresses. */
static void cluster_comes_up(void **state)
{
    struct fixture *f = *state;
    long status;
    size_t i;

    up(f);
    for (i = 0; i < 3; i++) {
        json_t *st = test_cluster_status(&f->c, i);
        json_t *leader;
        json_t *members;
        size_t m;
        assert_non_null(st);
        assert_int_equal(jint(st, "node_id"), (int64_t)f->c.nodes[i].id);
        assert_string_equal(jstr(st, "role"),
                            i == f->leader.index ? "leader" : "follower");
        assert_int_equal(jint(st, "term"), (int64_t)f->leader.term);
        leader = json_object_get(st, "leader");
        assert_true(json_is_object(leader));
        assert_int_equal(jint(leader, "id"), (int64_t)f->leader.id);
        assert_string_equal(jstr(leader, "api_address"),
                            f->c.nodes[f->leader.index].api_address);
        assert_string_equal(jstr(leader, "raft_address"),
                            f->c.nodes[f->leader.index].raft_address);
        members = json_object_get(st, "members");
        assert_int_equal(json_array_size(members), 3);
        for (m = 0; m < 3; m++) {
            json_t *mem = json_array_get(members, m);
            int64_t id = jint(mem, "id");
            assert_true(id >= 1 && id <= 3);
            assert_string_equal(jstr(mem, "role"), "voter");
            assert_string_equal(jstr(mem, "api_address"),
                                f->c.nodes[id - 1].api_address);
            assert_string_equal(jstr(mem, "raft_address"),
                                f->c.nodes[id - 1].raft_address);
        }
        json_decref(st);
    }

    for (i = 0; i < 3; i++) {
        json_t *o = NULL;
        uint64_t deadline = test_now_ms() + CATCH_UP_TIMEOUT_MS;
        /* A follower is ready once it applied what it knows committed. */
        for (;;) {
            o = test_cluster_call(&f->c, i, "GET", "/readyz", NULL, NULL,
                                  &status, NULL);
            if (status == 200 || test_now_ms() > deadline) {
                break;
            }
            json_decref(o);
            test_sleep_ms(50);
        }
        assert_int_equal(status, 200);
        assert_true(json_is_true(json_object_get(o, "ready")));
        json_decref(o);

        o = test_cluster_call(&f->c, i, "GET", "/healthz", NULL, NULL, &status,
                              NULL);
        assert_int_equal(status, 200);
        assert_string_equal(jstr(o, "status"), "ok");
        json_decref(o);
    }

    for (i = 0; i < 3; i++) {
        char url[TEST_URL_SIZE];
        char *text = NULL;
        char want[64];
        assert_int_equal(test_http("GET",
                                   test_cluster_url(&f->c, i, "/metrics", url),
                                   NULL, NULL, &status, &text, NULL),
                         0);
        assert_int_equal(status, 200);
        snprintf(want, sizeof want, "\nrems_raft_is_leader %d\n",
                 i == f->leader.index);
        assert_non_null(strstr(text, want));
        snprintf(want, sizeof want, "\nrems_raft_term %llu\n",
                 (unsigned long long)f->leader.term);
        assert_non_null(strstr(text, want));
        assert_non_null(strstr(text, "\nrems_raft_applied_index "));
        free(text);
    }
    f->passed = true;
}

/* A write through a follower is forwarded to the leader and answered with
 * the leader's address and the revision; the other follower then returns
 * the value on a linearizable read and on a stale read, with the index
 * and last-contact headers. */
static void write_through_follower(void **state)
{
    struct fixture *f = *state;
    const char *key = "site/a/web";
    char *hdrs = NULL;
    char h[128];
    long status;
    int64_t rev;
    json_t *o;

    up(f);
    o = put(f, f->f1, key, "{\"image\": \"web:1.2\", \"replicas\": 3}", NULL,
            &status, &hdrs);
    assert_non_null(o);
    assert_int_equal(status, 200);
    assert_true(test_http_header(hdrs, "X-Rems-Leader", h, sizeof h));
    assert_string_equal(h, f->c.nodes[f->leader.index].api_address);
    assert_string_equal(jstr(o, "key"), key);
    rev = jint(o, "revision");
    assert_true(rev > 0);
    assert_int_equal(jint(o, "index"), rev);
    assert_true(json_is_true(json_object_get(o, "created")));
    assert_true(test_http_header(hdrs, "X-Rems-Revision", h, sizeof h));
    assert_int_equal(strtoll(h, NULL, 10), rev);
    json_decref(o);
    free(hdrs);

    /* Linearizable (the default) on the other follower. */
    o = get(f, f->f2, key, false, &status, &hdrs);
    assert_non_null(o);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(o, "key"), key);
    assert_json_equal(test_policy_meta(o),
                      "{\"image\": \"web:1.2\", \"replicas\": 3}");
    assert_int_equal(jint(o, "revision"), rev);
    assert_int_equal(jint(o, "created_index"), rev);
    assert_int_equal(jint(o, "modified_index"), rev);
    assert_true(test_http_header(hdrs, "X-Rems-Revision", h, sizeof h));
    assert_int_equal(strtoll(h, NULL, 10), rev);
    json_decref(o);
    free(hdrs);

    /* Stale on the other follower: it applied rev for the read above. */
    o = get(f, f->f2, key, true, &status, &hdrs);
    assert_non_null(o);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), rev);
    assert_json_equal(test_policy_meta(o),
                      "{\"image\": \"web:1.2\", \"replicas\": 3}");
    assert_true(test_http_header(hdrs, "X-Rems-Index", h, sizeof h));
    assert_true(strtoll(h, NULL, 10) >= rev);
    if (!test_http_header(hdrs, "X-Rems-Last-Contact", h, sizeof h)) {
        fprintf(stderr, "stale read without X-Rems-Last-Contact:\n%s", hdrs);
        fail_msg("X-Rems-Last-Contact missing on a follower's stale read");
    }
    /* A follower hears the leader every 30 ms. */
    assert_true(h[0] >= '0' && h[0] <= '9');
    assert_true(strtoll(h, NULL, 10) < 2000);
    json_decref(o);
    free(hdrs);

    /* Stale on the leader: last contact is 0 there. */
    o = get(f, f->leader.index, key, true, &status, &hdrs);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), rev);
    assert_true(test_http_header(hdrs, "X-Rems-Last-Contact", h, sizeof h));
    assert_string_equal(h, "0");
    json_decref(o);
    free(hdrs);
    f->passed = true;
}

/* If-Match: the right revision writes, a stale one or 0 on an existing
 * key is a 409 naming the current revision; delete, then 404. */
static void compare_and_set(void **state)
{
    struct fixture *f = *state;
    const char *key = "cas/k";
    const char *hdr_if[2] = {NULL, NULL};
    char if_line[64];
    long status;
    int64_t r1;
    int64_t r2;
    json_t *o;
    json_t *err;

    up(f);
    r1 = put_ok(f, f->f1, key, "{\"v\": 1}");

    snprintf(if_line, sizeof if_line, "If-Match: %lld", (long long)r1);
    hdr_if[0] = if_line;
    o = put(f, f->f2, key, "{\"v\": 2}", hdr_if, &status, NULL);
    assert_int_equal(status, 200);
    r2 = jint(o, "revision");
    assert_true(r2 > r1);
    assert_true(json_is_false(json_object_get(o, "created")));
    json_decref(o);

    /* r1 is stale now. */
    o = put(f, f->leader.index, key, "{\"v\": 3}", hdr_if, &status, NULL);
    assert_error(o, status, 409, "conflict", "If-Match");
    err = json_object_get(o, "error");
    assert_int_equal(jint(err, "current_revision"), r2);
    json_decref(o);

    /* 0: only if the key does not exist. */
    hdr_if[0] = "If-Match: 0";
    o = put(f, f->f1, key, "{\"v\": 4}", hdr_if, &status, NULL);
    assert_error(o, status, 409, "conflict", "If-Match");
    assert_int_equal(jint(json_object_get(o, "error"), "current_revision"), r2);
    json_decref(o);
    o = put(f, f->f1, "cas/new", "{\"v\": 5}", hdr_if, &status, NULL);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "created")));
    json_decref(o);

    /* The refused writes left the value alone. */
    o = get(f, f->f2, key, false, &status, NULL);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), r2);
    assert_json_equal(test_policy_meta(o), "{\"v\": 2}");
    json_decref(o);

    /* Delete with a wrong If-Match, then for real. */
    snprintf(if_line, sizeof if_line, "If-Match: %lld", (long long)r1);
    hdr_if[0] = if_line;
    o = test_cluster_call(&f->c, f->f1, "DELETE", "/v1/policies/cas/k", hdr_if,
                          NULL, &status, NULL);
    assert_error(o, status, 409, "conflict", "If-Match");
    json_decref(o);
    snprintf(if_line, sizeof if_line, "If-Match: \"%lld\"", (long long)r2);
    o = test_cluster_call(&f->c, f->f1, "DELETE", "/v1/policies/cas/k", hdr_if,
                          NULL, &status, NULL);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "deleted")));
    assert_true(jint(o, "revision") > r2);
    json_decref(o);

    o = get(f, f->f2, key, false, &status, NULL);
    assert_error(o, status, 404, "not_found", "key");
    json_decref(o);
    o = test_cluster_call(&f->c, f->leader.index, "DELETE",
                          "/v1/policies/cas/k", NULL, NULL, &status, NULL);
    assert_error(o, status, 404, "not_found", NULL);
    json_decref(o);
    f->passed = true;
}

/* A retried write with the same X-Rems-Request-Id (through another
 * follower, with another body) is answered with the first result and not
 * applied again. */
static void request_id_idempotent(void **state)
{
    struct fixture *f = *state;
    static const char *const hdr[] = {"X-Rems-Request-Id: retry-me.1", NULL};
    long status;
    int64_t rev;
    json_t *o;

    up(f);
    o = put(f, f->f1, "idem/k", "{\"first\": true}", hdr, &status, NULL);
    assert_int_equal(status, 200);
    rev = jint(o, "revision");
    assert_null(json_object_get(o, "duplicate"));
    json_decref(o);

    o = put(f, f->f2, "idem/k", "{\"second\": true}", hdr, &status, NULL);
    assert_non_null(o);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), rev);
    assert_true(json_is_true(json_object_get(o, "duplicate")));
    json_decref(o);

    o = get(f, f->leader.index, "idem/k", false, &status, NULL);
    assert_int_equal(status, 200);
    assert_int_equal(jint(o, "revision"), rev);
    assert_json_equal(test_policy_meta(o), "{\"first\": true}");
    json_decref(o);
    f->passed = true;
}

/* 25 keys under a prefix (and neighbours outside it) come back in three
 * pages of at most 10, in key order, each key once. */
static void list_pagination(void **state)
{
    struct fixture *f = *state;
    char key[64];
    char path[256];
    char after[64] = "";
    long status;
    int seen = 0;
    int pages = 0;
    int i;

    up(f);
    put_ok(f, f->f1, "page", "{\"outside\": 1}");
    put_ok(f, f->f1, "pagez/x", "{\"outside\": 2}");
    put_ok(f, f->f2, "pag/x", "{\"outside\": 3}");
    for (i = 0; i < 25; i++) {
        char body[32];
        snprintf(key, sizeof key, "page/k%02d", i);
        snprintf(body, sizeof body, "{\"n\": %d}", i);
        put_ok(f, (size_t)i % 3, key, body);
    }

    for (;;) {
        json_t *o;
        json_t *items;
        json_t *next;
        size_t k;
        if (after[0] == '\0') {
            snprintf(path, sizeof path, "/v1/policies?prefix=page/&limit=10");
        } else {
            snprintf(path, sizeof path,
                     "/v1/policies?prefix=page/&limit=10&after=%s", after);
        }
        o = test_cluster_call(&f->c, f->f2, "GET", path, NULL, NULL, &status,
                              NULL);
        assert_non_null(o);
        assert_int_equal(status, 200);
        pages++;
        items = json_object_get(o, "items");
        assert_true(json_is_array(items));
        assert_int_equal(json_array_size(items), pages < 3 ? 10 : 5);
        for (k = 0; k < json_array_size(items); k++) {
            json_t *it = json_array_get(items, k);
            snprintf(key, sizeof key, "page/k%02d", seen);
            assert_string_equal(jstr(it, "key"), key);
            assert_int_equal(jint(test_policy_meta(it), "n"), seen);
            assert_true(jint(it, "revision") > 0);
            seen++;
        }
        assert_true(jint(o, "index") > 0);
        next = json_object_get(o, "next_after");
        if (pages < 3) {
            assert_true(json_is_string(next));
            snprintf(key, sizeof key, "page/k%02d", seen - 1);
            assert_string_equal(json_string_value(next), key);
            snprintf(after, sizeof after, "%s", json_string_value(next));
        } else {
            assert_true(json_is_null(next));
        }
        json_decref(o);
        if (pages == 3) {
            break;
        }
    }
    assert_int_equal(seen, 25);
    f->passed = true;
}

/* Malformed and refused requests get the documented status, code and
 * field, and none of them changes the stored data. */
static void bad_requests(void **state)
{
    struct fixture *f = *state;
    static const char *const bad_if[] = {"If-Match: abc", NULL};
    static const char *const bad_id[] = {"X-Rems-Request-Id: has space", NULL};
    char *big;
    char url[TEST_URL_SIZE];
    char *text = NULL;
    long status;
    int64_t rev;
    size_t n;
    json_error_t jerr;
    json_t *o;

    up(f);
    rev = put_ok(f, f->f1, "good/k", "{\"keep\": \"me\"}");

    o = put(f, f->f1, "good/k", "{bad json", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "body");
    json_decref(o);
    o = put(f, f->f2, "good/k", "[1, 2, 3]", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "body");
    json_decref(o);
    o = put(f, f->leader.index, "good/k", "\"a string\"", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "body");
    json_decref(o);
    o = put(f, f->f1, "good/k", NULL, NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "body");
    json_decref(o);
    o = put(f, f->f1, "good/k", "{\"a\": 1, \"a\": 2}", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "body");
    json_decref(o);

    /* Bad keys. */
    o = put(f, f->f1, "a//b", "{}", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "key");
    json_decref(o);
    o = put(f, f->f1, "a%20b", "{}", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "key");
    json_decref(o);
    o = put(f, f->f2, "a/../good/k", "{}", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "key");
    json_decref(o);
    o = put(f, f->f2, "trailing/", "{}", NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "key");
    json_decref(o);
    o = get(f, f->f2, "a%20b", true, &status, NULL);
    assert_error(o, status, 400, "bad_request", "key");
    json_decref(o);

    /* 100 KiB against --max-body-bytes 2048. */
    n = 100 * 1024;
    big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    assert_int_equal(
        test_http("PUT",
                  test_cluster_url(&f->c, f->f1, "/v1/policies/good/k", url),
                  NULL, big, &status, &text, NULL),
        0);
    free(big);
    assert_int_equal(status, 413);
    o = json_loads(text, 0, &jerr);
    free(text);
    assert_error(o, status, 413, "payload_too_large", NULL);
    json_decref(o);

    /* Bad headers. */
    o = put(f, f->f1, "good/k", "{\"x\": 1}", bad_if, &status, NULL);
    assert_error(o, status, 400, "bad_request", "If-Match");
    json_decref(o);
    o = test_cluster_call(&f->c, f->f2, "DELETE", "/v1/policies/good/k", bad_if,
                          NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "If-Match");
    json_decref(o);
    o = put(f, f->f1, "good/k", "{\"x\": 1}", bad_id, &status, NULL);
    assert_error(o, status, 400, "bad_request", "X-Rems-Request-Id");
    json_decref(o);

    /* Paths and methods. */
    o = test_cluster_call(&f->c, f->f1, "GET", "/v1/nope", NULL, NULL, &status,
                          NULL);
    assert_error(o, status, 404, "not_found", NULL);
    json_decref(o);
    o = test_cluster_call(&f->c, f->f1, "POST", "/v1/policies/good/k", NULL,
                          "{}", &status, NULL);
    assert_error(o, status, 405, "method_not_allowed", NULL);
    json_decref(o);
    o = test_cluster_call(&f->c, f->f1, "DELETE", "/v1/policies", NULL, NULL,
                          &status, NULL);
    assert_error(o, status, 405, "method_not_allowed", NULL);
    json_decref(o);
    o = test_cluster_call(&f->c, f->f1, "PUT", "/v1/members", NULL, "{}",
                          &status, NULL);
    assert_error(o, status, 405, "method_not_allowed", NULL);
    json_decref(o);

    /* Query parameters. */
    o = test_cluster_call(&f->c, f->f2, "GET", "/v1/policies?limit=0", NULL,
                          NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "limit");
    json_decref(o);
    o = test_cluster_call(&f->c, f->f2, "GET", "/v1/policies?limit=1001", NULL,
                          NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "limit");
    json_decref(o);
    o = test_cluster_call(&f->c, f->f2, "GET", "/v1/policies?limit=ten", NULL,
                          NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "limit");
    json_decref(o);
    o = test_cluster_call(&f->c, f->f2, "GET",
                          "/v1/policies/good/k?consistency=bogus", NULL, NULL,
                          &status, NULL);
    assert_error(o, status, 400, "bad_request", "consistency");
    json_decref(o);
    o = test_cluster_call(&f->c, f->f2, "GET", "/v1/policies?consistency=bogus",
                          NULL, NULL, &status, NULL);
    assert_error(o, status, 400, "bad_request", "consistency");
    json_decref(o);

    /* Nothing changed: one key, same revision and value, on every node. */
    {
        size_t i;
        for (i = 0; i < 3; i++) {
            json_t *items;
            o = test_cluster_call(&f->c, i, "GET", "/v1/policies", NULL, NULL,
                                  &status, NULL);
            assert_int_equal(status, 200);
            items = json_object_get(o, "items");
            assert_int_equal(json_array_size(items), 1);
            assert_string_equal(jstr(json_array_get(items, 0), "key"),
                                "good/k");
            assert_int_equal(jint(json_array_get(items, 0), "revision"), rev);
            assert_json_equal(
                test_policy_meta(json_array_get(items, 0)),
                "{\"keep\": \"me\"}");
            json_decref(o);
        }
    }
    f->passed = true;
}

struct leader_is {
    struct test_cluster *c;
    uint64_t id;
};

static bool all_see_leader(void *arg)
{
    struct leader_is *w = arg;
    struct test_leader l;
    size_t i;
    bool ok = true;
    for (i = 0; i < w->c->n && ok; i++) {
        json_t *st = test_cluster_status(w->c, i);
        json_t *leader = json_object_get(st, "leader");
        ok = st != NULL && json_is_object(leader) &&
             (uint64_t)json_integer_value(json_object_get(leader, "id")) ==
                 w->id;
        json_decref(st);
    }
    return ok && test_cluster_wait_leader(w->c, 0, &l) && l.id == w->id;
}

/* POST /v1/leadership/transfer {"id": X}, sent to the other follower (so
 * it is forwarded), moves leadership to X. */
static void leadership_transfer(void **state)
{
    struct fixture *f = *state;
    struct test_leader after;
    struct leader_is w;
    char body[64];
    long status;
    uint64_t target;
    json_t *o;

    up(f);
    target = f->c.nodes[f->f1].id;
    snprintf(body, sizeof body, "{\"id\": %llu}", (unsigned long long)target);
    o = test_cluster_call(&f->c, f->f2, "POST", "/v1/leadership/transfer", NULL,
                          body, &status, NULL);
    assert_non_null(o);
    if (status != 200) {
        assert_error(o, status, 200, "", NULL);
    }
    assert_int_equal(jint(o, "leader_id"), (int64_t)target);
    json_decref(o);

    w.c = &f->c;
    w.id = target;
    assert_true(test_wait_for(all_see_leader, &w, 5000));
    assert_true(test_cluster_wait_leader(&f->c, 0, &after));
    assert_int_equal(after.id, target);
    assert_true(after.term > f->leader.term);

    /* The new leader takes writes. */
    put_ok(f, f->f2, "after/transfer", "{\"ok\": true}");
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cluster_comes_up, setup, teardown),
        cmocka_unit_test_setup_teardown(write_through_follower, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(compare_and_set, setup, teardown),
        cmocka_unit_test_setup_teardown(request_id_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(leadership_transfer, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration_cluster", tests, NULL,
                                       NULL);
}
