/* Integration: the admin API of agents, leases and commands on a healthy
 * three-node remsd cluster, before any agent has connected. Empty lists
 * on every node, 404s for unknown agents and commands, and every refusal
 * of POST /v1/commands with its status, code and field, with nothing
 * stored and nothing proposed.
 *
 * No agent can be registered from outside (only the leader's agent link
 * writes AGENT_REGISTER), so commands for registered agents are tested
 * with a real agent elsewhere.
 *
 * Each test starts its own cluster (election 300 ms, heartbeat 30 ms) in a
 * temporary directory; the teardown stops every node, prints the node logs
 * when the test failed, then asserts that every node exited 0. */
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
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    size_t f1; /* The two followers, by index. */
    size_t f2;
    bool passed; /* Set last by each test; false keeps the logs. */
};

/* Bodies up to 2 MiB, so that the manifest limits are reached before the
 * body limit. */
static const char *const extra_args[] = {
    "--max-body-bytes", "2097152", "--forward-timeout-ms", "2000", NULL,
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

static void up(struct fixture *f)
{
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    f->f1 = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    f->f2 = test_cluster_other(&f->c, f->leader.index, f->f1);
    assert_true(f->f1 < 3 && f->f2 < 3);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    assert_non_null(s);
    return s;
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
    const char *got_field = json_string_value(json_object_get(err, "field"));
    bool ok =
        status == want_status && json_is_object(err) &&
        json_is_string(json_object_get(err, "code")) &&
        strcmp(jstr(err, "code"), code) == 0 &&
        (field == NULL ? got_field == NULL
                       : got_field != NULL && strcmp(got_field, field) == 0);
    if (!ok) {
        char *text = body != NULL ? json_dumps(body, JSON_ENCODE_ANY) : NULL;
        fail_msg("%s: status %ld, wanted %ld %s (field %s): %s", what, status,
                 want_status, code, field != NULL ? field : "none",
                 text != NULL ? text : "(no JSON)");
    }
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

/* GET @path on node @i must answer 200 with an empty "items" list, a null
 * next_after (when @paged) and an index. */
static void
assert_empty_list(struct fixture *f, size_t i, const char *path, bool paged)
{
    long status;
    json_t *o = call(f, i, "GET", path, NULL, NULL, &status);
    if (status != 200 || !json_is_array(json_object_get(o, "items"))) {
        fail_msg("GET %s on node %zu: status %ld", path, i, status);
    }
    assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
    if (paged) {
        assert_true(json_is_null(json_object_get(o, "next_after")));
    }
    assert_true(json_is_integer(json_object_get(o, "index")));
    json_decref(o);
}

/* No command was stored or proposed: the lists are empty on every node
 * and no command entry reached the audit trail. */
static void assert_no_commands(struct fixture *f)
{
    size_t i;
    size_t k;
    for (i = 0; i < 3; i++) {
        long status;
        json_t *o;
        json_t *item;
        assert_empty_list(f, i, "/v1/commands", true);
        assert_empty_list(f, i, "/v1/commands?state=pending", true);
        o = call(f, i, "GET", "/v1/audit?limit=1000", NULL, NULL, &status);
        assert_int_equal(status, 200);
        json_array_foreach(json_object_get(o, "items"), k, item)
        {
            const char *type = jstr(item, "type");
            if (strncmp(type, "command_", 8) == 0) {
                fail_msg("node %zu audits a %s entry", i, type);
            }
        }
        json_decref(o);
    }
}

/* @before, @n bytes of 'x', then @after: a body with a long string. */
static char *with_filler(const char *before, size_t n, const char *after)
{
    size_t lb = strlen(before);
    size_t la = strlen(after);
    char *out = malloc(lb + n + la + 1);
    assert_non_null(out);
    memcpy(out, before, lb);
    memset(out + lb, 'x', n);
    memcpy(out + lb + n, after, la + 1);
    return out;
}

/* ------------------------------------------------------------------ */

/* Before any agent connects, every list is empty on every node, with
 * linearizable and stale reads; unknown ids are 404 naming the id; the
 * metrics count no agents and no pending commands. */
static void lists_empty(void **state)
{
    struct fixture *f = *state;
    static const char *const lists[] = {
        "/v1/agents",
        "/v1/agents?online=true",
        "/v1/agents?online=false&limit=1&after=a",
        "/v1/agents?consistency=stale",
        "/v1/commands",
        "/v1/commands?agent=a1&state=acked",
        "/v1/commands?state=pending&consistency=stale",
        "/v1/commands?limit=1000&after=c",
    };
    size_t i;
    size_t k;

    up(f);
    for (i = 0; i < 3; i++) {
        long status;
        json_t *o;
        char url[TEST_URL_SIZE];
        char *text = NULL;

        for (k = 0; k < ARRAY_SIZE(lists); k++) {
            assert_empty_list(f, i, lists[k], true);
        }
        assert_empty_list(f, i, "/v1/leases", false);
        assert_empty_list(f, i, "/v1/leases?consistency=stale", false);

        o = call(f, i, "GET", "/v1/agents/a1", NULL, NULL, &status);
        assert_error("GET unknown agent", o, status, 404, "not_found", "id");
        json_decref(o);
        o = call(f, i, "GET", "/v1/agents/a1?consistency=stale", NULL, NULL,
                 &status);
        assert_error("GET unknown agent, stale", o, status, 404, "not_found",
                     "id");
        json_decref(o);
        o = call(f, i, "GET", "/v1/commands/c1", NULL, NULL, &status);
        assert_error("GET unknown command", o, status, 404, "not_found", "id");
        json_decref(o);

        assert_int_equal(test_http("GET",
                                   test_cluster_url(&f->c, i, "/metrics", url),
                                   NULL, NULL, &status, &text, NULL),
                         0);
        assert_int_equal(status, 200);
        assert_non_null(strstr(text, "\nrems_agents{state=\"online\"} 0\n"));
        assert_non_null(strstr(text, "\nrems_agents{state=\"offline\"} 0\n"));
        assert_non_null(strstr(text, "\nrems_commands_pending 0\n"));
        free(text);
    }
    f->passed = true;
}

/* A well-formed command for an agent that is not registered: 404 naming
 * "agent", on the leader and through both followers, and nothing was
 * proposed (the leader checks before proposing). A retry with the same
 * request id gets the same answer. */
static void issue_unknown_agent(void **state)
{
    struct fixture *f = *state;
    static const char *const hdrs[] = {"X-Rems-Request-Id: issue-1",
                                       "X-Rems-User: alice",
                                       "X-Rems-Reason: test", NULL};
    static const char *const bodies[] = {
        "{\"agent\": \"a1\", \"action\": \"restart\", \"service\": \"web\"}",
        "{\"agent\": \"a1\", \"action\": \"diagnostics\", \"args\": "
        "{\"level\": \"full\"}, \"ttl_ms\": 5000, \"reason\": \"why\", "
        "\"id\": \"cmd-1\"}",
        "{\"agent\": \"a1\", \"action\": \"push_manifest\", \"manifest\": "
        "{\"services\": {\"web\": {\"cmd\": [\"/bin/web\"]}}}, \"service\": "
        "null, \"args\": null, \"ttl_ms\": null, \"reason\": null}",
    };
    size_t nodes[3];
    size_t i;
    size_t k;

    up(f);
    nodes[0] = f->leader.index;
    nodes[1] = f->f1;
    nodes[2] = f->f2;
    for (i = 0; i < 3; i++) {
        for (k = 0; k < ARRAY_SIZE(bodies); k++) {
            long status;
            json_t *o = call(f, nodes[i], "POST", "/v1/commands",
                             k == 0 ? hdrs : NULL, bodies[k], &status);
            assert_error("POST for an unknown agent", o, status, 404,
                         "not_found", "agent");
            json_decref(o);
        }
    }
    assert_no_commands(f);
    f->passed = true;
}

struct bad_case {
    const char *body; /* NULL: no body. */
    long status;
    const char *code;
    const char *field;
};

/* Every refused issue names its field; none reaches the log. The cases go
 * through a follower (validated before forwarding) and the leader. */
static void issue_validation(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {NULL, 400, "bad_request", "body"},
        {"[1]", 400, "bad_request", "body"},
        {"{\"agent\": ", 400, "bad_request", "body"},
        {"{\"agent\": \"a1\", \"agent\": \"a2\"}", 400, "bad_request", "body"},
        {"{\"action\": \"start\", \"service\": \"web\"}", 400, "bad_request",
         "agent"},
        {"{\"agent\": \"a 1\", \"action\": \"start\", \"service\": \"web\"}",
         400, "bad_request", "agent"},
        {"{\"agent\": 7, \"action\": \"start\", \"service\": \"web\"}", 400,
         "bad_request", "agent"},
        {"{\"agent\": \"a1\", \"service\": \"web\"}", 400, "bad_request",
         "action"},
        {"{\"agent\": \"a1\", \"action\": \"reboot\", \"service\": \"web\"}",
         422, "unprocessable", "action"},
        {"{\"agent\": \"a1\", \"action\": \"stop\"}", 422, "unprocessable",
         "service"},
        {"{\"agent\": \"a1\", \"action\": \"quarantine\", \"service\": null}",
         422, "unprocessable", "service"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"a b\"}",
         400, "bad_request", "service"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"\"}", 400,
         "bad_request", "service"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"args\": [\"x\"]}",
         400, "bad_request", "args"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"args\": {\"n\": 3}}",
         400, "bad_request", "args"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"args\": {\"\": \"x\"}}",
         422, "unprocessable", "args"},
        {"{\"agent\": \"a1\", \"action\": \"push_manifest\", \"manifest\": "
         "{}, \"args\": {\"manifest\": \"x\"}}",
         422, "unprocessable", "args"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"manifest\": {}}",
         422, "unprocessable", "manifest"},
        {"{\"agent\": \"a1\", \"action\": \"push_manifest\"}", 422,
         "unprocessable", "manifest"},
        {"{\"agent\": \"a1\", \"action\": \"push_manifest\", \"manifest\": "
         "\"services: {}\"}",
         400, "bad_request", "manifest"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"ttl_ms\": 0}",
         422, "unprocessable", "ttl_ms"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"ttl_ms\": 86400001}",
         422, "unprocessable", "ttl_ms"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"ttl_ms\": -5}",
         422, "unprocessable", "ttl_ms"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"ttl_ms\": \"30000\"}",
         400, "bad_request", "ttl_ms"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"ttl_ms\": 1.5}",
         400, "bad_request", "ttl_ms"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"reason\": 5}",
         400, "bad_request", "reason"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"id\": \"a/b\"}",
         400, "bad_request", "id"},
        {"{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
         "\"tll_ms\": 5}",
         400, "bad_request", "tll_ms"},
    };
    static const char *const if_match[] = {"If-Match: 3", NULL};
    static const char *const bad_request_id[] = {"X-Rems-Request-Id: has space",
                                                 NULL};
    static const char *const long_user[] = {
        "X-Rems-User: "
        "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu",
        NULL};
    const char *valid =
        "{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\"}";
    size_t nodes[2];
    size_t i;
    size_t k;
    long status;
    json_t *o;
    char *big;

    up(f);
    nodes[0] = f->f1;
    nodes[1] = f->leader.index;
    for (i = 0; i < 2; i++) {
        for (k = 0; k < ARRAY_SIZE(cases); k++) {
            char what[64];
            snprintf(what, sizeof what, "case %zu on node %zu", k, nodes[i]);
            o = call(f, nodes[i], "POST", "/v1/commands", NULL, cases[k].body,
                     &status);
            assert_error(what, o, status, cases[k].status, cases[k].code,
                         cases[k].field);
            json_decref(o);
        }
    }

    /* Size limits of args, service, reason and manifest. */
    big = with_filler("{\"agent\": \"a1\", \"action\": \"start\", "
                      "\"service\": \"",
                      65, "\"}");
    o = call(f, f->f1, "POST", "/v1/commands", NULL, big, &status);
    assert_error("service of 65 bytes", o, status, 400, "bad_request",
                 "service");
    json_decref(o);
    free(big);
    big = with_filler("{\"agent\": \"a1\", \"action\": \"start\", "
                      "\"service\": \"web\", \"args\": {\"",
                      129, "\": \"v\"}}");
    o = call(f, f->f1, "POST", "/v1/commands", NULL, big, &status);
    assert_error("arg key of 129 bytes", o, status, 422, "unprocessable",
                 "args");
    json_decref(o);
    free(big);
    big = with_filler("{\"agent\": \"a1\", \"action\": \"start\", "
                      "\"service\": \"web\", \"args\": {\"k\": \"",
                      1025, "\"}}");
    o = call(f, f->f2, "POST", "/v1/commands", NULL, big, &status);
    assert_error("arg value of 1025 bytes", o, status, 422, "unprocessable",
                 "args");
    json_decref(o);
    free(big);
    big = with_filler("{\"agent\": \"a1\", \"action\": \"start\", "
                      "\"service\": \"web\", \"reason\": \"",
                      513, "\"}");
    o = call(f, f->f2, "POST", "/v1/commands", NULL, big, &status);
    assert_error("reason of 513 bytes", o, status, 422, "unprocessable",
                 "reason");
    json_decref(o);
    free(big);
    {
        /* 65 arguments. */
        char text[2048];
        size_t len = (size_t)snprintf(
            text, sizeof text,
            "{\"agent\": \"a1\", \"action\": \"start\", \"service\": \"web\", "
            "\"args\": {");
        for (k = 0; k < 65; k++) {
            len += (size_t)snprintf(text + len, sizeof text - len,
                                    "%s\"k%zu\": \"v\"", k > 0 ? ", " : "", k);
        }
        snprintf(text + len, sizeof text - len, "}}");
        o = call(f, f->f1, "POST", "/v1/commands", NULL, text, &status);
        assert_error("65 arguments", o, status, 422, "unprocessable", "args");
        json_decref(o);
    }
    /* Over the manifest limit (512 KiB), and over what the log stores with
     * the arguments (256 KiB) though under the manifest limit. */
    big = with_filler("{\"agent\": \"a1\", \"action\": \"push_manifest\", "
                      "\"manifest\": {\"blob\": \"",
                      600 * 1024, "\"}}");
    o = call(f, f->f1, "POST", "/v1/commands", NULL, big, &status);
    assert_error("manifest of 600 KiB", o, status, 422, "unprocessable",
                 "manifest");
    json_decref(o);
    free(big);
    big = with_filler("{\"agent\": \"a1\", \"action\": \"push_manifest\", "
                      "\"manifest\": {\"blob\": \"",
                      300 * 1024, "\"}}");
    o = call(f, f->leader.index, "POST", "/v1/commands", NULL, big, &status);
    assert_error("manifest of 300 KiB", o, status, 422, "unprocessable",
                 "manifest");
    json_decref(o);
    free(big);
    /* Within every limit: refused only because the agent is unknown. */
    big = with_filler("{\"agent\": \"a1\", \"action\": \"push_manifest\", "
                      "\"service\": \"web\", \"manifest\": {\"blob\": \"",
                      200 * 1024, "\"}, \"ttl_ms\": 86400000}");
    o = call(f, f->f2, "POST", "/v1/commands", NULL, big, &status);
    assert_error("manifest of 200 KiB", o, status, 404, "not_found", "agent");
    json_decref(o);
    free(big);

    /* Headers. */
    o = call(f, f->f1, "POST", "/v1/commands", if_match, valid, &status);
    assert_error("If-Match", o, status, 400, "bad_request", "If-Match");
    json_decref(o);
    o = call(f, f->f2, "POST", "/v1/commands", bad_request_id, valid, &status);
    assert_error("bad request id", o, status, 400, "bad_request",
                 "X-Rems-Request-Id");
    json_decref(o);
    o = call(f, f->leader.index, "POST", "/v1/commands", long_user, valid,
             &status);
    assert_error("long user", o, status, 400, "bad_request", "X-Rems-User");
    json_decref(o);

    assert_no_commands(f);
    f->passed = true;
}

/* Cancel of unknown commands, bad ids, parameters and methods. */
static void cancel_and_bad_paths(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *method;
        const char *path;
        long status;
        const char *code;
        const char *field;
    } cases[] = {
        {"DELETE", "/v1/commands/nope", 404, "not_found", "id"},
        {"DELETE", "/v1/commands/nope?force=true", 404, "not_found", "id"},
        {"DELETE", "/v1/commands/a%20b", 400, "bad_request", "id"},
        {"DELETE", "/v1/commands/nope?force=maybe", 400, "bad_request",
         "force"},
        {"DELETE", "/v1/commands", 405, "method_not_allowed", NULL},
        {"PUT", "/v1/commands/nope", 405, "method_not_allowed", NULL},
        {"POST", "/v1/agents", 405, "method_not_allowed", NULL},
        {"DELETE", "/v1/agents/a1", 405, "method_not_allowed", NULL},
        {"POST", "/v1/leases", 405, "method_not_allowed", NULL},
        {"GET", "/v1/agents/a%2Fb", 400, "bad_request", "id"},
        {"GET", "/v1/agents/", 400, "bad_request", "id"},
        {"GET", "/v1/commands/", 400, "bad_request", "id"},
        {"GET", "/v1/agents?online=yes", 400, "bad_request", "online"},
        {"GET", "/v1/agents?limit=0", 400, "bad_request", "limit"},
        {"GET", "/v1/agents?limit=1001", 400, "bad_request", "limit"},
        {"GET",
         "/v1/agents?after="
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         400, "bad_request", "after"},
        {"GET", "/v1/agents?consistency=bogus", 400, "bad_request",
         "consistency"},
        {"GET", "/v1/commands?state=done", 400, "bad_request", "state"},
        {"GET", "/v1/commands?agent=a%20b", 400, "bad_request", "agent"},
        {"GET", "/v1/commands?limit=x", 400, "bad_request", "limit"},
        {"GET", "/v1/commands/c1?consistency=bogus", 400, "bad_request",
         "consistency"},
        {"GET", "/v1/leases?consistency=bogus", 400, "bad_request",
         "consistency"},
    };
    static const char *const if_match[] = {"If-Match: 3", NULL};
    size_t nodes[3];
    size_t i;
    size_t k;
    long status;
    json_t *o;

    up(f);
    nodes[0] = f->leader.index;
    nodes[1] = f->f1;
    nodes[2] = f->f2;
    for (i = 0; i < 3; i++) {
        for (k = 0; k < ARRAY_SIZE(cases); k++) {
            char what[160];
            snprintf(what, sizeof what, "%s %.100s on node %zu",
                     cases[k].method, cases[k].path, nodes[i]);
            o = call(f, nodes[i], cases[k].method, cases[k].path, NULL, NULL,
                     &status);
            assert_error(what, o, status, cases[k].status, cases[k].code,
                         cases[k].field);
            json_decref(o);
        }
    }
    o = call(f, f->f1, "DELETE", "/v1/commands/nope", if_match, NULL, &status);
    assert_error("DELETE with If-Match", o, status, 400, "bad_request",
                 "If-Match");
    json_decref(o);
    assert_no_commands(f);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lists_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(issue_unknown_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(issue_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_and_bad_paths, setup, teardown),
    };
    return cmocka_run_group_tests_name("commands_api", tests, NULL, NULL);
}
