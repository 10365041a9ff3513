/* Integration: the reconciler's admin API on a healthy three-node remsd
 * cluster: overrides and the pause, maintenance windows, incidents, and
 * the views (summary, drift, recommendations). Every write goes through a
 * follower (forwarded to the leader) and is read back on every node;
 * every refusal is checked for its status, code and field, through a
 * follower and on the leader, and nothing refused reaches the log.
 *
 * Incidents are opened only by the leader's reconciler: one test runs a
 * real rems-agent whose service crashes, so that an incident opens, and
 * takes it through its steps (and the refused ones); the others cover the
 * lists, 404s and refusals without agents. The views are checked for
 * their shape and their filters.
 *
 * Each test starts its own cluster (election 300 ms, heartbeat 30 ms) in a
 * temporary directory; the teardown stops every node, prints the node logs
 * when the test failed, then asserts that every node exited 0. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/lib/proc.h"

#define LEADER_TIMEOUT_MS 10000
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    size_t nodes[3]; /* Leader, follower 1, follower 2, by index. */
    bool passed;     /* Set last by each test; false keeps the logs. */
};

static const char *const extra_args[] = {
    "--forward-timeout-ms",
    "2000",
    NULL,
};

static const char *const who[] = {"X-Rems-User: alice",
                                  "X-Rems-Reason: change 42", NULL};

/* Wall clock, milliseconds since the epoch (the clock of until_ms). */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

static void up(struct fixture *f)
{
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    f->nodes[0] = f->leader.index;
    f->nodes[1] = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    f->nodes[2] = test_cluster_other(&f->c, f->leader.index, f->nodes[1]);
    assert_true(f->nodes[1] < 3 && f->nodes[2] < 3);
}

static json_t *call(struct fixture *f,
                    size_t i,
                    const char *method,
                    const char *path,
                    const char *const headers[],
                    const char *body,
                    long *status)
{
    return test_cluster_call(&f->c, i, method, path, headers, body, status,
                             NULL);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL) {
        char *text = json_dumps(o, JSON_ENCODE_ANY);
        fail_msg("no string %s in %s", key, text != NULL ? text : "?");
    }
    return s;
}

static void fail_body(const char *what, long status, const json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_ENCODE_ANY) : NULL;
    fail_msg("%s: status %ld: %s", what, status,
             text != NULL ? text : "(no JSON)");
}

/* Check an error answer: @want_status, @code and @field (NULL: none). */
static void assert_error(const char *what,
                         json_t *body,
                         long status,
                         long want_status,
                         const char *code,
                         const char *field)
{
    json_t *err = json_object_get(body, "error");
    const char *got_code = json_string_value(json_object_get(err, "code"));
    const char *got_field = json_string_value(json_object_get(err, "field"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    bool ok =
        status == want_status && got_code != NULL &&
        strcmp(got_code, code) == 0 && msg != NULL && msg[0] != '\0' &&
        (field == NULL ? got_field == NULL
                       : got_field != NULL && strcmp(got_field, field) == 0);
    if (!ok) {
        char want[160];
        snprintf(want, sizeof want, "%s (wanted %ld %s, field %s)", what,
                 want_status, code, field != NULL ? field : "none");
        fail_body(want, status, body);
    }
}

/* @method @path on node @i must answer 200; returns the body. */
static json_t *ok_call(struct fixture *f,
                       size_t i,
                       const char *method,
                       const char *path,
                       const char *const headers[],
                       const char *body)
{
    long status;
    json_t *o = call(f, i, method, path, headers, body, &status);
    if (status != 200 || !json_is_object(o)) {
        char what[300];
        snprintf(what, sizeof what, "%s %.200s on node %zu", method, path, i);
        fail_body(what, status, o);
    }
    return o;
}

/* The items of GET @path on node @i (a new reference). */
static json_t *items(struct fixture *f, size_t i, const char *path)
{
    json_t *o = ok_call(f, i, "GET", path, NULL, NULL);
    json_t *a = json_incref(json_object_get(o, "items"));
    assert_true(json_is_array(a));
    assert_true(json_is_integer(json_object_get(o, "index")));
    json_decref(o);
    return a;
}

/* How many audit records of @type the node @i has. */
static size_t audited(struct fixture *f, size_t i, const char *type)
{
    json_t *a = items(f, i, "/v1/audit?limit=1000");
    json_t *item;
    size_t k;
    size_t n = 0;
    json_array_foreach(a, k, item)
    {
        if (strcmp(jstr(item, "type"), type) == 0) {
            n++;
        }
    }
    json_decref(a);
    return n;
}

/* ------------------------------------------------------------------ */

/* Freezes and the pause, written through followers, read on every node;
 * who and why are recorded; a relative end becomes absolute; clearing
 * twice is 404; resuming a reconciler that is not paused is fine. */
static void overrides(void **state)
{
    struct fixture *f = *state;
    json_t *o;
    json_t *a;
    json_t *item;
    long status;
    uint64_t before = wall_ms();
    size_t i;
    size_t k;

    up(f);
    o = ok_call(f, f->nodes[1], "POST", "/v1/overrides", who,
                "{\"scope\": \"service\", \"name\": \"web\", \"agent\": "
                "\"edge-1\", \"duration_ms\": 3600000}");
    assert_string_equal(jstr(o, "scope"), "service");
    assert_string_equal(jstr(o, "name"), "web");
    assert_string_equal(jstr(o, "agent"), "edge-1");
    assert_string_equal(jstr(o, "requested_by"), "alice");
    assert_string_equal(jstr(o, "reason"), "change 42");
    assert_true(json_is_true(json_object_get(o, "active")));
    {
        uint64_t until =
            (uint64_t)json_integer_value(json_object_get(o, "until_ms"));
        assert_true(until >= before + 3600000);
        assert_true(until <= wall_ms() + 3600000);
    }
    assert_true(json_integer_value(json_object_get(o, "index")) > 0);
    json_decref(o);
    o = ok_call(f, f->nodes[2], "POST", "/v1/overrides", who,
                "{\"scope\": \"agent\", \"name\": \"edge-2\", \"until_ms\": "
                "4102444800000}");
    assert_int_equal(json_integer_value(json_object_get(o, "until_ms")),
                     4102444800000LL);
    json_decref(o);
    o = ok_call(f, f->nodes[0], "POST", "/v1/overrides", NULL,
                "{\"scope\": \"site\", \"name\": \"north hall\"}");
    assert_true(json_is_null(json_object_get(o, "until_ms")));
    assert_string_equal(jstr(o, "requested_by"), "anonymous");
    json_decref(o);

    for (i = 0; i < 3; i++) {
        const char *paths[] = {"/v1/overrides",
                               "/v1/overrides?consistency=stale"};
        for (k = 0; k < 2; k++) {
            if (k == 1) {
                /* A stale read may lag: wait until this node has them. */
                size_t tries;
                for (tries = 0; tries < 100; tries++) {
                    a = items(f, f->nodes[i], paths[k]);
                    if (json_array_size(a) == 3) {
                        break;
                    }
                    json_decref(a);
                    test_sleep_ms(50);
                }
            } else {
                a = items(f, f->nodes[i], paths[k]);
            }
            assert_int_equal(json_array_size(a), 3);
            /* In (scope, name, agent) order: service, agent, site. */
            assert_string_equal(jstr(json_array_get(a, 0), "scope"), "service");
            assert_string_equal(jstr(json_array_get(a, 1), "scope"), "agent");
            assert_string_equal(jstr(json_array_get(a, 2), "scope"), "site");
            assert_string_equal(jstr(json_array_get(a, 2), "name"),
                                "north hall");
            json_decref(a);
        }
    }

    /* Clear through a follower; again: 404 naming the name. */
    o = ok_call(f, f->nodes[1], "DELETE",
                "/v1/overrides?scope=service&name=web&agent=edge-1", who, NULL);
    assert_true(json_is_true(json_object_get(o, "cleared")));
    json_decref(o);
    o = call(f, f->nodes[2], "DELETE",
             "/v1/overrides?scope=service&name=web&agent=edge-1", who, NULL,
             &status);
    assert_error("clear twice", o, status, 404, "not_found", "name");
    json_decref(o);
    o = ok_call(f, f->nodes[2], "DELETE",
                "/v1/overrides?scope=site&name=north%20hall", NULL, NULL);
    json_decref(o);

    /* The pause: set, seen in the summary of every node, cleared. */
    o = ok_call(f, f->nodes[1], "POST", "/v1/reconciler/pause", who, NULL);
    assert_true(json_is_true(json_object_get(o, "paused")));
    assert_string_equal(jstr(o, "scope"), "pause");
    json_decref(o);
    for (i = 0; i < 3; i++) {
        o = ok_call(f, f->nodes[i], "GET", "/v1/summary?consistency=leader",
                    NULL, NULL);
        assert_true(json_is_true(json_object_get(o, "paused")));
        json_decref(o);
    }
    {
        char url[TEST_URL_SIZE];
        char *text = NULL;
        assert_int_equal(
            test_http("GET",
                      test_cluster_url(&f->c, f->nodes[0], "/metrics", url),
                      NULL, NULL, &status, &text, NULL),
            0);
        assert_int_equal(status, 200);
        assert_non_null(strstr(text, "\nrems_reconciler_paused 1\n"));
        assert_non_null(strstr(text, "\nrems_freezes{scope=\"agent\"} 1\n"));
        assert_non_null(strstr(text, "\nrems_reconcile_passes_total{"));
        free(text);
    }
    o = ok_call(f, f->nodes[2], "POST", "/v1/reconciler/resume", who, NULL);
    assert_true(json_is_false(json_object_get(o, "paused")));
    json_decref(o);
    o = ok_call(f, f->nodes[1], "POST", "/v1/reconciler/resume", who, NULL);
    assert_true(json_is_false(json_object_get(o, "paused")));
    json_decref(o);
    o = call(f, f->nodes[1], "DELETE", "/v1/overrides?scope=pause", who, NULL,
             &status);
    assert_error("clear pause twice", o, status, 404, "not_found", "scope");
    json_decref(o);
    o = ok_call(f, f->nodes[0], "GET", "/v1/summary?consistency=linearizable",
                NULL, NULL);
    assert_true(json_is_false(json_object_get(o, "paused")));
    json_decref(o);

    /* Only the agent freeze is left; the audit trail says who and why. */
    a = items(f, f->nodes[2], "/v1/overrides");
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    a = items(f, f->nodes[1], "/v1/audit?limit=1000");
    k = 0;
    json_array_foreach(a, i, item)
    {
        if (strcmp(jstr(item, "type"), "override_set") == 0 &&
            strcmp(jstr(item, "requested_by"), "alice") == 0) {
            assert_string_equal(jstr(item, "reason"), "change 42");
            k++;
        }
    }
    assert_int_equal(k, 3); /* service, agent, pause */
    json_decref(a);
    f->passed = true;
}

struct bad_case {
    const char *method;
    const char *path;
    const char *body; /* NULL: none. */
    long status;
    const char *code;
    const char *field;
};

/* Run every case on the leader and through both followers. */
static void run_cases(struct fixture *f,
                      const struct bad_case *cases,
                      size_t n,
                      const char *const headers[])
{
    size_t i;
    size_t k;
    for (i = 0; i < 3; i++) {
        for (k = 0; k < n; k++) {
            char what[300];
            long status;
            json_t *o;
            snprintf(what, sizeof what, "%s %.100s %.100s on node %zu",
                     cases[k].method, cases[k].path,
                     cases[k].body != NULL ? cases[k].body : "", f->nodes[i]);
            o = call(f, f->nodes[i], cases[k].method, cases[k].path, headers,
                     cases[k].body, &status);
            assert_error(what, o, status, cases[k].status, cases[k].code,
                         cases[k].field);
            json_decref(o);
        }
    }
}

/* Every refused override names its field; none reaches the log. */
static void override_validation(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"POST", "/v1/overrides", NULL, 400, "bad_request", "body"},
        {"POST", "/v1/overrides", "[]", 400, "bad_request", "body"},
        {"POST", "/v1/overrides", "{}", 400, "bad_request", "scope"},
        {"POST", "/v1/overrides", "{\"scope\": \"planet\"}", 400, "bad_request",
         "scope"},
        {"POST", "/v1/overrides", "{\"scope\": 3}", 400, "bad_request",
         "scope"},
        {"POST", "/v1/overrides", "{\"scope\": \"service\"}", 400,
         "bad_request", "name"},
        {"POST", "/v1/overrides", "{\"scope\": \"service\", \"name\": \"a b\"}",
         400, "bad_request", "name"},
        {"POST", "/v1/overrides", "{\"scope\": \"agent\", \"name\": \"a/b\"}",
         400, "bad_request", "name"},
        {"POST", "/v1/overrides", "{\"scope\": \"site\", \"name\": \"\"}", 400,
         "bad_request", "name"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"agent\", \"name\": \"e1\", \"agent\": \"e2\"}", 400,
         "bad_request", "agent"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"agent\": \"e 2\"}", 400,
         "bad_request", "agent"},
        {"POST", "/v1/overrides", "{\"scope\": \"pause\", \"name\": \"x\"}",
         400, "bad_request", "name"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"pause\", \"duration_ms\": 1000}", 400, "bad_request",
         "duration_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"until_ms\": 5}", 400,
         "bad_request", "until_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"until_ms\": \"soon\"}",
         400, "bad_request", "until_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"duration_ms\": 0}", 400,
         "bad_request", "duration_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"duration_ms\": -1}",
         400, "bad_request", "duration_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"duration_ms\": 1000, "
         "\"until_ms\": 4102444800000}",
         400, "bad_request", "duration_ms"},
        {"POST", "/v1/overrides",
         "{\"scope\": \"service\", \"name\": \"web\", \"colour\": \"red\"}",
         400, "bad_request", "colour"},
        {"DELETE", "/v1/overrides", NULL, 400, "bad_request", "scope"},
        {"DELETE", "/v1/overrides?scope=site", NULL, 400, "bad_request",
         "name"},
        {"DELETE", "/v1/overrides?scope=pause&name=x", NULL, 400, "bad_request",
         "name"},
        {"DELETE", "/v1/overrides?scope=agent&name=e1&agent=e2", NULL, 400,
         "bad_request", "agent"},
        {"PUT", "/v1/overrides", NULL, 405, "method_not_allowed", NULL},
        {"GET", "/v1/overrides?consistency=bogus", NULL, 400, "bad_request",
         "consistency"},
        {"GET", "/v1/reconciler/pause", NULL, 405, "method_not_allowed", NULL},
        {"GET", "/v1/reconciler", NULL, 404, "not_found", NULL},
    };
    static const char *const if_match[] = {"If-Match: 3", NULL};
    static const char *const bad_user[] = {
        "X-Rems-User: "
        "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu",
        NULL};
    long status;
    json_t *o;
    size_t i;

    up(f);
    run_cases(f, cases, ARRAY_SIZE(cases), NULL);
    for (i = 0; i < 3; i++) {
        o = call(f, f->nodes[i], "POST", "/v1/reconciler/pause", if_match, NULL,
                 &status);
        assert_error("pause with If-Match", o, status, 400, "bad_request",
                     "If-Match");
        json_decref(o);
        o = call(f, f->nodes[i], "POST", "/v1/overrides", bad_user,
                 "{\"scope\": \"pause\"}", &status);
        assert_error("a user of 65 bytes", o, status, 400, "bad_request",
                     "X-Rems-User");
        json_decref(o);
    }
    for (i = 0; i < 3; i++) {
        json_t *a = items(f, f->nodes[i], "/v1/overrides");
        assert_int_equal(json_array_size(a), 0);
        json_decref(a);
        assert_int_equal(audited(f, f->nodes[i], "override_set"), 0);
        assert_int_equal(audited(f, f->nodes[i], "override_clear"), 0);
    }
    f->passed = true;
}

/* Windows: weekly and once, set through followers, replaced, read on
 * every node, deleted; 404s; every refusal names its field. */
static void windows(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"PUT", "/v1/maintenance-windows/w1", NULL, 400, "bad_request", "body"},
        {"PUT", "/v1/maintenance-windows/w1", "{}", 400, "bad_request",
         "scope"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"moon\", \"mode\": \"never_inside\"}", 400,
         "bad_request", "scope"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"target\": \"x\", \"mode\": "
         "\"never_inside\", \"start_ms\": 1, \"end_ms\": 2}",
         400, "bad_request", "target"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"site\", \"mode\": \"never_inside\", \"start_ms\": 1, "
         "\"end_ms\": 2}",
         400, "bad_request", "target"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"agent\", \"target\": \"a b\", \"mode\": "
         "\"never_inside\", \"start_ms\": 1, \"end_ms\": 2}",
         400, "bad_request", "target"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"start_ms\": 1, \"end_ms\": 2}", 400,
         "bad_request", "mode"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"sometimes\", \"start_ms\": 1, "
         "\"end_ms\": 2}",
         400, "bad_request", "mode"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\"}", 400,
         "bad_request", "start_ms"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"start_ms\": "
         "5}",
         400, "bad_request", "end_ms"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"start_ms\": "
         "5, \"end_ms\": 5}",
         400, "bad_request", "end_ms"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"start_ms\": "
         "-5, \"end_ms\": 5}",
         400, "bad_request", "start_ms"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"start_ms\": "
         "1, \"end_ms\": 5, \"weekly\": {\"days\": [\"mon\"], \"start\": "
         "\"01:00\", \"duration_minutes\": 60}}",
         400, "bad_request", "start_ms"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": 7}",
         400, "bad_request", "weekly"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [], \"start\": \"01:00\", \"duration_minutes\": 60}}",
         400, "bad_request", "weekly.days"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"funday\"], \"start\": \"01:00\", "
         "\"duration_minutes\": 60}}",
         400, "bad_request", "weekly.days"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"mon\"], \"start\": \"24:00\", "
         "\"duration_minutes\": 60}}",
         400, "bad_request", "weekly.start"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"mon\"], \"start\": \"1:00\", "
         "\"duration_minutes\": 60}}",
         400, "bad_request", "weekly.start"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"mon\"], \"start\": \"01:00\", "
         "\"duration_minutes\": 10081}}",
         400, "bad_request", "weekly.duration_minutes"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"mon\"], \"start\": \"01:00\"}}",
         400, "bad_request", "weekly.duration_minutes"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"weekly\": "
         "{\"days\": [\"mon\"], \"start\": \"01:00\", "
         "\"duration_minutes\": 60, \"tz\": \"CET\"}}",
         400, "bad_request", "weekly.tz"},
        {"PUT", "/v1/maintenance-windows/w1",
         "{\"scope\": \"global\", \"mode\": \"never_inside\", \"start_ms\": "
         "1, \"end_ms\": 5, \"open\": true}",
         400, "bad_request", "open"},
        {"PUT", "/v1/maintenance-windows/a%20b", "{}", 400, "bad_request",
         "name"},
        {"GET", "/v1/maintenance-windows/a%20b", NULL, 400, "bad_request",
         "name"},
        {"GET", "/v1/maintenance-windows/none", NULL, 404, "not_found", "name"},
        {"DELETE", "/v1/maintenance-windows/none", NULL, 404, "not_found",
         "name"},
        {"POST", "/v1/maintenance-windows/w1", NULL, 405, "method_not_allowed",
         NULL},
        {"POST", "/v1/maintenance-windows", NULL, 405, "method_not_allowed",
         NULL},
        {"GET", "/v1/maintenance-windows?limit=0", NULL, 400, "bad_request",
         "limit"},
    };
    json_t *o;
    json_t *a;
    json_t *wk;
    size_t i;

    up(f);
    run_cases(f, cases, ARRAY_SIZE(cases), NULL);
    assert_int_equal(audited(f, f->nodes[0], "window_set"), 0);

    o = ok_call(f, f->nodes[1], "PUT", "/v1/maintenance-windows/weekend", who,
                "{\"scope\": \"site\", \"target\": \"north\", \"mode\": "
                "\"auto_inside_only\", \"weekly\": {\"days\": [\"sat-sun\", "
                "\"monday\"], \"start\": \"22:30\", \"duration_minutes\": "
                "240}}");
    assert_string_equal(jstr(o, "name"), "weekend");
    assert_string_equal(jstr(o, "scope"), "site");
    assert_string_equal(jstr(o, "target"), "north");
    assert_string_equal(jstr(o, "mode"), "auto_inside_only");
    assert_string_equal(jstr(o, "requested_by"), "alice");
    assert_true(json_is_null(json_object_get(o, "start_ms")));
    wk = json_object_get(o, "weekly");
    assert_string_equal(jstr(wk, "start"), "22:30");
    assert_int_equal(
        json_integer_value(json_object_get(wk, "duration_minutes")), 240);
    assert_int_equal(json_array_size(json_object_get(wk, "days")), 3);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(wk, "days"), 0)),
        "mon");
    assert_true(json_is_boolean(json_object_get(o, "open")));
    json_decref(o);

    o = ok_call(f, f->nodes[2], "PUT", "/v1/maintenance-windows/upgrade", NULL,
                "{\"scope\": \"agent\", \"target\": \"edge-1\", \"mode\": "
                "\"never_inside\", \"start_ms\": 1000, \"end_ms\": "
                "4102444800000}");
    assert_true(json_is_true(json_object_get(o, "open")));
    assert_true(json_is_null(json_object_get(o, "weekly")));
    json_decref(o);
    /* Replace: a global window now. */
    o = ok_call(f, f->nodes[1], "PUT", "/v1/maintenance-windows/upgrade", NULL,
                "{\"scope\": \"global\", \"mode\": \"never_inside\", "
                "\"start_ms\": 1000, \"end_ms\": 2000}");
    assert_true(json_is_false(json_object_get(o, "open")));
    assert_true(json_is_null(json_object_get(o, "target")));
    json_decref(o);

    for (i = 0; i < 3; i++) {
        a = items(f, f->nodes[i], "/v1/maintenance-windows");
        assert_int_equal(json_array_size(a), 2);
        assert_string_equal(jstr(json_array_get(a, 0), "name"), "upgrade");
        assert_string_equal(jstr(json_array_get(a, 1), "name"), "weekend");
        json_decref(a);
        o = ok_call(f, f->nodes[i], "GET", "/v1/maintenance-windows/weekend",
                    NULL, NULL);
        assert_string_equal(jstr(o, "reason"), "change 42");
        json_decref(o);
    }
    o = ok_call(f, f->nodes[0], "GET", "/v1/maintenance-windows?limit=1", NULL,
                NULL);
    assert_string_equal(jstr(o, "next_after"), "upgrade");
    json_decref(o);
    a = items(f, f->nodes[2], "/v1/maintenance-windows?after=upgrade");
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);

    o = ok_call(f, f->nodes[2], "DELETE", "/v1/maintenance-windows/weekend",
                who, NULL);
    assert_true(json_is_true(json_object_get(o, "deleted")));
    json_decref(o);
    {
        long status;
        o = call(f, f->nodes[1], "DELETE", "/v1/maintenance-windows/weekend",
                 who, NULL, &status);
        assert_error("delete twice", o, status, 404, "not_found", "name");
        json_decref(o);
        o = call(f, f->nodes[1], "GET", "/v1/maintenance-windows/weekend", NULL,
                 NULL, &status);
        assert_error("get deleted", o, status, 404, "not_found", "name");
        json_decref(o);
    }
    assert_int_equal(audited(f, f->nodes[0], "window_set"), 3);
    f->passed = true;
}

/* No incident exists without agents: empty lists with every filter, 404
 * for unknown ids (also when acknowledging or resolving, through
 * followers), and every refusal names its field. */
static void incidents(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"GET", "/v1/incidents/7", NULL, 404, "not_found", "id"},
        {"GET", "/v1/incidents/7?consistency=stale", NULL, 404, "not_found",
         "id"},
        {"POST", "/v1/incidents/7/acknowledge", NULL, 404, "not_found", "id"},
        {"POST", "/v1/incidents/7/resolve", "{}", 404, "not_found", "id"},
        {"GET", "/v1/incidents/0", NULL, 400, "bad_request", "id"},
        {"GET", "/v1/incidents/x", NULL, 400, "bad_request", "id"},
        {"POST", "/v1/incidents/-1/resolve", NULL, 400, "bad_request", "id"},
        {"POST", "/v1/incidents/7/close", NULL, 404, "not_found", NULL},
        {"GET", "/v1/incidents/7/resolve", NULL, 405, "method_not_allowed",
         NULL},
        {"DELETE", "/v1/incidents/7", NULL, 405, "method_not_allowed", NULL},
        {"POST", "/v1/incidents", NULL, 405, "method_not_allowed", NULL},
        {"POST", "/v1/incidents/7/resolve", "{\"reason\": \"x\"}", 400,
         "bad_request", "reason"},
        {"POST", "/v1/incidents/7/resolve", "[1]", 400, "bad_request", "body"},
        {"GET", "/v1/incidents?state=closed", NULL, 400, "bad_request",
         "state"},
        {"GET", "/v1/incidents?agent=a%20b", NULL, 400, "bad_request", "agent"},
        {"GET", "/v1/incidents?after=x", NULL, 400, "bad_request", "after"},
        {"GET", "/v1/incidents?limit=1001", NULL, 400, "bad_request", "limit"},
    };
    static const char *const lists[] = {
        "/v1/incidents",
        "/v1/incidents?state=open",
        "/v1/incidents?state=acknowledged&agent=edge-1",
        "/v1/incidents?state=resolved&after=3&limit=1",
        "/v1/incidents?state=unresolved&consistency=stale",
    };
    static const char *const nobody[] = {"X-Rems-Reason: why", NULL};
    long status;
    json_t *o;
    size_t i;
    size_t k;

    up(f);
    run_cases(f, cases, ARRAY_SIZE(cases), who);
    for (i = 0; i < 3; i++) {
        for (k = 0; k < ARRAY_SIZE(lists); k++) {
            o = ok_call(f, f->nodes[i], "GET", lists[k], NULL, NULL);
            assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
            assert_true(json_is_null(json_object_get(o, "next_after")));
            json_decref(o);
        }
        o = call(f, f->nodes[i], "POST", "/v1/incidents/7/resolve", nobody,
                 NULL, &status);
        assert_error("resolve without X-Rems-User", o, status, 400,
                     "bad_request", "X-Rems-User");
        json_decref(o);
    }
    f->passed = true;
}

static void assert_view_meta(const char *what, json_t *o, bool leader)
{
    json_t *inv = json_object_get(o, "invalid_policies");
    if (!json_is_integer(json_object_get(o, "index")) ||
        !json_is_integer(json_object_get(o, "computed_at_ms")) ||
        !json_is_boolean(json_object_get(o, "by_leader")) ||
        !json_is_integer(json_object_get(inv, "count"))) {
        fail_body(what, 200, o);
    }
    /* The leader answers with its loop's pass once it ran one (by_leader
     * true), before that with a pass of its own; a follower never says
     * by_leader. */
    if (!leader && !json_is_false(json_object_get(o, "by_leader"))) {
        fail_body(what, 200, o);
    }
}

/* The views on every node, with every consistency and filter; a policy
 * placing services on an agent that never registered drifts nowhere. */
static void views(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"GET", "/v1/summary?consistency=bogus", NULL, 400, "bad_request",
         "consistency"},
        {"GET", "/v1/summary?agent=a%20b", NULL, 400, "bad_request", "agent"},
        {"GET", "/v1/summary?site=%0A", NULL, 400, "bad_request", "site"},
        {"GET", "/v1/drift?kind=weird", NULL, 400, "bad_request", "kind"},
        {"GET", "/v1/drift?level=urgent", NULL, 400, "bad_request", "level"},
        {"GET", "/v1/drift?service=a%20b", NULL, 400, "bad_request", "service"},
        {"GET", "/v1/recommendations?level=maybe", NULL, 400, "bad_request",
         "level"},
        {"POST", "/v1/summary", NULL, 405, "method_not_allowed", NULL},
        {"DELETE", "/v1/drift", NULL, 405, "method_not_allowed", NULL},
        {"PUT", "/v1/recommendations", NULL, 405, "method_not_allowed", NULL},
    };
    static const char *const paths[] = {
        "/v1/summary",
        "/v1/summary?agent=edge-1&site=north",
        "/v1/drift",
        "/v1/drift?agent=edge-1&service=web&kind=missing_service&level="
        "required",
        "/v1/drift?level=reconcile_blocked",
        "/v1/recommendations",
        "/v1/recommendations?agent=edge-1&level=recommended",
    };
    json_int_t written;
    json_t *o;
    size_t i;
    size_t k;

    up(f);
    run_cases(f, cases, ARRAY_SIZE(cases), NULL);
    o = ok_call(f, f->nodes[1], "PUT", "/v1/policies/site/north", who,
                "{\"placement\": {\"agents\": [\"edge-1\"]}, \"services\": "
                "[{\"name\": \"web\", \"command\": [\"/bin/true\"]}]}");
    written = json_integer_value(json_object_get(o, "index"));
    assert_true(written > 0);
    json_decref(o);
    for (i = 0; i < 3; i++) {
        for (k = 0; k < ARRAY_SIZE(paths); k++) {
            char path[256];
            char what[300];
            bool leader;
            size_t m;
            static const char *const modes[] = {"", "consistency=stale",
                                                "consistency=leader",
                                                "consistency=linearizable"};
            for (m = 0; m < ARRAY_SIZE(modes); m++) {
                snprintf(path, sizeof path, "%s%s%s", paths[k],
                         modes[m][0] == '\0'             ? ""
                         : strchr(paths[k], '?') != NULL ? "&"
                                                         : "?",
                         modes[m]);
                snprintf(what, sizeof what, "GET %s on node %zu", path,
                         f->nodes[i]);
                o = ok_call(f, f->nodes[i], "GET", path, NULL, NULL);
                leader = i == 0;
                assert_view_meta(what, o, leader);
                if (strncmp(path, "/v1/summary", 11) == 0) {
                    json_t *cl = json_object_get(o, "cluster");
                    assert_string_equal(jstr(cl, "state"), "nominal");
                    assert_true(json_is_object(json_object_get(cl, "counts")));
                    assert_true(json_is_array(json_object_get(o, "agents")));
                    assert_true(json_is_array(json_object_get(o, "sites")));
                    assert_true(json_is_array(json_object_get(o, "services")));
                    assert_true(json_is_boolean(json_object_get(o, "paused")));
                } else {
                    assert_int_equal(
                        json_array_size(json_object_get(o, "items")), 0);
                }
                if (strncmp(path, "/v1/recommendations", 19) == 0) {
                    assert_true(json_is_array(json_object_get(o, "actions")));
                    assert_true(json_is_array(json_object_get(o, "holds")));
                    assert_true(json_is_array(json_object_get(o, "conflicts")));
                }
                json_decref(o);
            }
        }
    }
    /* A follower's view with consistency=linearizable reflects the
     * policy write acknowledged before. */
    o = ok_call(f, f->nodes[2], "GET", "/v1/drift?consistency=linearizable",
                NULL, NULL);
    assert_true(json_integer_value(json_object_get(o, "index")) >= written);
    json_decref(o);
    f->passed = true;
}

/* PUT /v1/policies takes valid policy documents only, in JSON or YAML;
 * a refusal names the field by its path, through a follower and on the
 * leader, and nothing refused is stored. */
static void policy_validation(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"PUT", "/v1/policies/p", "{\"image\": \"web:1.2\"}", 400,
         "bad_request", "image"},
        {"PUT", "/v1/policies/p", "{\"services\": []}", 400, "bad_request",
         "placement"},
        {"PUT", "/v1/policies/p", "{\"placement\": {}, \"services\": []}", 400,
         "bad_request", "placement"},
        {"PUT", "/v1/policies/p",
         "{\"placement\": {\"agents\": [\"e1\"]}, \"services\": [{\"name\": "
         "\"web\", \"command\": [\"x\"], \"depends_on\": [\"db\"]}]}",
         400, "bad_request", "services[0].depends_on"},
        {"PUT", "/v1/policies/p",
         "{\"placement\": {\"agents\": [\"e1\"]}, \"services\": [], "
         "\"mode\": \"yolo\"}",
         400, "bad_request", "mode"},
        {"PUT", "/v1/policies/p",
         "{\"placement\": {\"agents\": [\"e1\"]}, \"services\": [], "
         "\"remediation\": {\"max_attempts\": 0}}",
         400, "bad_request", "remediation.max_attempts"},
        {"PUT", "/v1/policies/p",
         "{\"placement\": {\"agents\": [\"e1\"]}, \"services\": [{\"name\": "
         "\"web\", \"command\": [\"x\"], \"colour\": 1}]}",
         400, "bad_request", NULL},
        {"PUT", "/v1/policies/p", "[]", 400, "bad_request", "body"},
    };
    static const char *const yaml[] = {"Content-Type: application/yaml", NULL};
    static const char *const yaml_doc =
        "placement:\n  agents: [edge-1]\nmode: auto\nservices:\n"
        "  - name: web\n    command: [/bin/sleep, 10]\n";
    long status;
    json_t *o;
    size_t i;
    size_t k;

    up(f);
    for (i = 0; i < 3; i++) {
        for (k = 0; k < ARRAY_SIZE(cases); k++) {
            char what[300];
            json_t *err;
            snprintf(what, sizeof what, "PUT %.200s on node %zu", cases[k].body,
                     f->nodes[i]);
            o = call(f, f->nodes[i], "PUT", cases[k].path, NULL, cases[k].body,
                     &status);
            err = json_object_get(o, "error");
            if (cases[k].field == NULL) {
                /* A service's own field: named by its path, whatever the
                 * spec parser calls it. */
                const char *field =
                    json_string_value(json_object_get(err, "field"));
                if (status != 400 || field == NULL ||
                    strncmp(field, "services[0]", 11) != 0) {
                    fail_body(what, status, o);
                }
            } else {
                assert_error(what, o, status, cases[k].status, cases[k].code,
                             cases[k].field);
            }
            json_decref(o);
        }
        o = call(f, f->nodes[i], "PUT", "/v1/policies/p", yaml, "a: [\n",
                 &status);
        assert_error("bad YAML", o, status, 400, "bad_request", "body");
        json_decref(o);
        o = call(f, f->nodes[i], "PUT", "/v1/policies/p", yaml, "- 1\n",
                 &status);
        assert_error("a YAML list", o, status, 400, "bad_request", "body");
        json_decref(o);
    }
    for (i = 0; i < 3; i++) {
        o = call(f, f->nodes[i], "GET", "/v1/policies/p", NULL, NULL, &status);
        assert_error("nothing stored", o, status, 404, "not_found", "key");
        json_decref(o);
    }

    /* YAML through a follower, stored as the JSON it means (command
     * arguments stay strings). */
    o = ok_call(f, f->nodes[2], "PUT", "/v1/policies/p", yaml, yaml_doc);
    json_decref(o);
    o = ok_call(f, f->nodes[1], "GET", "/v1/policies/p", NULL, NULL);
    {
        json_t *svc = json_array_get(
            json_object_get(json_object_get(o, "value"), "services"), 0);
        json_t *cmd = json_object_get(svc, "command");
        assert_string_equal(json_string_value(json_array_get(cmd, 1)), "10");
        assert_string_equal(jstr(json_object_get(o, "value"), "mode"), "auto");
    }
    json_decref(o);
    f->passed = true;
}

/* ------------------------------------------------------------------ */
/* Incidents of a real agent.                                           */

#define AGENT_WAIT_MS 20000

static const char *const agent_args[] = {
    "--forward-timeout-ms",
    "2000",
    "--lease-ttl-ms",
    "1500",
    "--agent-heartbeat-ms",
    "250",
    "--reconcile-interval-ms",
    "200",
    "--reconcile-grace-ms",
    "1500",
    "--reconcile-command-ttl-ms",
    "10000",
    NULL,
};

struct agent_fixture {
    struct fixture f; /* First: the tests' helpers take it. */
    char certs[TEST_PATH_SIZE];
    char config[TEST_PATH_SIZE];
    char log[TEST_PATH_SIZE];
    struct test_proc agent;
};

static const char *agent_bin(void)
{
    const char *p = getenv("REMS_AGENT");
#ifdef REMS_AGENT_PATH
    if (p == NULL) {
        p = REMS_AGENT_PATH;
    }
#endif
    assert_non_null(p);
    return p;
}

/* A cluster with agent listeners and the configuration of agent edge-1
 * (certificates from tests/lib/make-test-ca.sh). */
static int setup_agent(void **state)
{
    struct agent_fixture *af = calloc(1, sizeof *af);
    struct fixture *f = &af->f;
    char cmd[2 * TEST_PATH_SIZE];
    char cert[TEST_PATH_SIZE];
    char key[TEST_PATH_SIZE];
    char ca[TEST_PATH_SIZE];
    FILE *fp;
    size_t k;

    assert_non_null(af);
    test_cluster_init(&f->c, 3, agent_args);
    snprintf(af->certs, sizeof af->certs, "%s/certs", f->c.dir);
    snprintf(cmd, sizeof cmd,
             "REMS_TEST_AGENTS='edge-1' sh '%s' '%s' >'%s/certs.log' 2>&1",
             REMS_MAKE_TEST_CA, af->certs, f->c.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof cert, "%s/node1.pem", af->certs);
    snprintf(key, sizeof key, "%s/node1.key", af->certs);
    snprintf(ca, sizeof ca, "%s/ca.pem", af->certs);
    test_cluster_enable_agents(&f->c, cert, key, ca);
    test_cluster_start(&f->c);
    snprintf(af->config, sizeof af->config, "%s/edge-1.yaml", f->c.dir);
    snprintf(af->log, sizeof af->log, "%s/edge-1.log", f->c.dir);
    fp = fopen(af->config, "w");
    assert_non_null(fp);
    fprintf(fp, "id: edge-1\nendpoints:\n");
    for (k = 0; k < f->c.n; k++) {
        fprintf(fp, "  - %s\n", f->c.nodes[k].agent_address);
    }
    fprintf(fp,
            "tls:\n  cert: %s/edge-1.pem\n  key: %s/edge-1.key\n  ca: %s\n"
            "data_dir: %s/edge-1\nlabels: {site: lab}\n"
            "reconnect: {initial_ms: 100, max_ms: 500, "
            "connect_timeout_ms: 2000}\n",
            af->certs, af->certs, ca, f->c.dir);
    fclose(fp);
    *state = af;
    return 0;
}

static int teardown_agent(void **state)
{
    struct agent_fixture *af = *state;
    bool passed = af->f.passed;
    bool clean;

    if (test_proc_running(&af->agent)) {
        test_proc_stop(&af->agent, 10000);
    }
    if (!passed) {
        char *text = test_read_file(af->log);
        if (text != NULL) {
            size_t len = strlen(text);
            fprintf(stderr, "---- edge-1 (%s):\n%s\n", af->log,
                    text + (len > 6000 ? len - 6000 : 0));
            free(text);
        }
    }
    clean = test_cluster_close(&af->f.c, !passed);
    free(af);
    assert_true(clean);
    return 0;
}

struct incident_wait {
    struct fixture *f;
    const char *state;
    json_int_t id;
};

/* An incident of edge-1/crashy in w->state, seen by follower 1. */
static bool incident_found(void *arg)
{
    struct incident_wait *w = arg;
    char path[128];
    long status;
    json_t *o;
    json_t *it;
    size_t i;

    snprintf(path, sizeof path,
             "/v1/incidents?agent=edge-1&state=%s&consistency=stale", w->state);
    o = call(w->f, w->f->nodes[1], "GET", path, NULL, NULL, &status);
    json_array_foreach(json_object_get(o, "items"), i, it)
    {
        const char *svc = json_string_value(json_object_get(it, "service"));
        if (svc != NULL && strcmp(svc, "crashy") == 0) {
            w->id = json_integer_value(json_object_get(it, "id"));
            json_decref(o);
            return true;
        }
    }
    json_decref(o);
    return false;
}

/* An incident's life through followers: a crash loop in mode auto
 * escalates at once (one attempt); it is acknowledged (who and why in the
 * step), acknowledged again (409 naming its state), resolved, resolved
 * again (409); the views show the agent and its drift. */
static void incident_lifecycle(void **state)
{
    struct agent_fixture *af = *state;
    struct fixture *f = &af->f;
    struct incident_wait w = {f, "open", 0};
    char *argv[] = {(char *)agent_bin(), "--config", af->config, NULL};
    static const char *const bob[] = {"X-Rems-User: bob",
                                      "X-Rems-Reason: looking", NULL};
    char path[128];
    long status;
    json_t *o;
    json_t *step;

    up(f);
    assert_int_equal(test_proc_start(&af->agent, argv[0], argv, af->log), 0);
    o = ok_call(f, f->nodes[1], "PUT", "/v1/policies/lab/crashy", who,
                "{\"placement\": {\"agents\": [\"edge-1\"]}, \"mode\": "
                "\"auto\", \"services\": [{\"name\": \"crashy\", "
                "\"command\": [\"/bin/sh\", \"-c\", \"exit 1\"], "
                "\"restart\": \"temporary\", \"criticality\": "
                "\"critical\"}], \"remediation\": {\"max_attempts\": 1, "
                "\"backoff_ms\": 0}, \"rollout\": {\"health_gate_ms\": 500, "
                "\"auto_rollback\": false}}");
    json_decref(o);
    if (!test_wait_for(incident_found, &w, AGENT_WAIT_MS)) {
        fail_msg("no open incident of edge-1/crashy");
    }

    snprintf(path, sizeof path, "/v1/incidents/%lld/acknowledge",
             (long long)w.id);
    o = ok_call(f, f->nodes[1], "POST", path, bob, NULL);
    assert_string_equal(jstr(o, "state"), "acknowledged");
    assert_string_equal(jstr(o, "agent"), "edge-1");
    assert_string_equal(jstr(o, "kind"), "unhealthy_service");
    step = json_object_get(o, "acknowledged");
    assert_string_equal(jstr(step, "by"), "bob");
    assert_string_equal(jstr(step, "reason"), "looking");
    assert_true(json_integer_value(json_object_get(step, "index")) > w.id);
    assert_true(json_is_object(json_object_get(o, "opened")));
    assert_true(json_is_null(json_object_get(o, "resolved")));
    json_decref(o);
    o = call(f, f->nodes[2], "POST", path, bob, NULL, &status);
    assert_error("acknowledge twice", o, status, 409, "conflict", "id");
    assert_string_equal(jstr(json_object_get(o, "error"), "state"),
                        "acknowledged");
    json_decref(o);

    snprintf(path, sizeof path, "/v1/incidents/%lld/resolve", (long long)w.id);
    o = ok_call(f, f->nodes[2], "POST", path, who, "{}");
    assert_string_equal(jstr(o, "state"), "resolved");
    assert_string_equal(jstr(json_object_get(o, "resolved"), "by"), "alice");
    assert_string_equal(jstr(json_object_get(o, "acknowledged"), "by"), "bob");
    json_decref(o);
    o = call(f, f->nodes[1], "POST", path, who, NULL, &status);
    assert_error("resolve twice", o, status, 409, "conflict", "id");
    assert_string_equal(jstr(json_object_get(o, "error"), "state"), "resolved");
    json_decref(o);
    snprintf(path, sizeof path, "/v1/incidents/%lld/acknowledge",
             (long long)w.id);
    o = call(f, f->nodes[0], "POST", path, who, NULL, &status);
    assert_error("acknowledge resolved", o, status, 409, "conflict", "id");
    json_decref(o);

    /* Read back on every node; the resolved list has it. */
    snprintf(path, sizeof path, "/v1/incidents/%lld", (long long)w.id);
    {
        size_t i;
        for (i = 0; i < 3; i++) {
            o = ok_call(f, f->nodes[i], "GET", path, NULL, NULL);
            assert_string_equal(jstr(o, "state"), "resolved");
            json_decref(o);
        }
    }
    w.state = "resolved";
    assert_true(incident_found(&w));
    /* Every step asked for is in the audit trail, the refused ones with
     * the result conflict. */
    assert_int_equal(audited(f, f->nodes[0], "incident_update"), 5);

    /* The views know the agent. */
    o = ok_call(f, f->nodes[1], "GET",
                "/v1/summary?agent=edge-1&consistency=linearizable", NULL,
                NULL);
    assert_int_equal(json_array_size(json_object_get(o, "agents")), 1);
    assert_string_equal(
        jstr(json_array_get(json_object_get(o, "agents"), 0), "name"),
        "edge-1");
    json_decref(o);
    o = ok_call(f, f->nodes[2], "GET", "/v1/drift?agent=edge-1&service=crashy",
                NULL, NULL);
    assert_true(json_array_size(json_object_get(o, "items")) <= 1);
    json_decref(o);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(override_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(windows, setup, teardown),
        cmocka_unit_test_setup_teardown(incidents, setup, teardown),
        cmocka_unit_test_setup_teardown(views, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(incident_lifecycle, setup_agent,
                                        teardown_agent),
    };
    return cmocka_run_group_tests_name("reconcile_api", tests, NULL, NULL);
}
