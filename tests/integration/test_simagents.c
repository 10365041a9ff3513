/* Integration: the simulated-agents engine (simulator/simagents.h) against
 * one real remsd with an agent listener on loopback, over mTLS with
 * certificates minted by the engine from the site CA that
 * tests/lib/make-test-ca.sh makes.
 *
 *   twenty_agents_register  20 agents connect and are welcomed; the API
 *       lists them online with their labels and services; a command
 *       issued through the API is executed once by its agent and acked,
 *       and the record holds the invariants; the engine stops cleanly.
 *
 * The engine runs on this test's loop: between API calls the loop is run
 * for short slices (pump()), so the agents keep their heartbeats. */
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

#include "common/log.h"
#include "simulator/simagents.h"
#include "tests/lib/proc.h"

#define WAIT_MS 20000
#define N_AGENTS 20

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    char certs[TEST_PATH_SIZE];
    uv_loop_t loop;
    uv_timer_t slice;
    struct simagents *sa;
    bool stopped;
    bool passed;
};

static const char *const extra_args[] = {
    "--lease-ttl-ms", "2000", "--agent-heartbeat-ms", "250", NULL,
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char cmd[2 * TEST_PATH_SIZE];
    char cert[TEST_PATH_SIZE];
    char key[TEST_PATH_SIZE];
    char ca[TEST_PATH_SIZE];

    assert_non_null(f);
    signal(SIGPIPE, SIG_IGN);
    rems_log_set_level(REMS_LOG_ERROR);
    test_cluster_init(&f->c, 1, extra_args);
    snprintf(f->certs, sizeof f->certs, "%s/certs", f->c.dir);
    snprintf(cmd, sizeof cmd, "sh '%s' '%s' >'%s/certs.log' 2>&1",
             REMS_MAKE_TEST_CA, f->certs, f->c.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof cert, "%s/node1.pem", f->certs);
    snprintf(key, sizeof key, "%s/node1.key", f->certs);
    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    test_cluster_enable_agents(&f->c, cert, key, ca);
    test_cluster_start(&f->c);
    assert_true(test_cluster_wait_leader(&f->c, WAIT_MS, &f->leader));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->slice), 0);
    *state = f;
    return 0;
}

static void on_stopped(struct simagents *sa)
{
    struct fixture *f = simagents_data(sa);
    f->stopped = true;
}

static void on_slice(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop for about @ms. */
static void pump(struct fixture *f, unsigned ms)
{
    uv_timer_start(&f->slice, on_slice, ms, 0);
    while (uv_is_active((uv_handle_t *)&f->slice)) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean;
    uint64_t deadline = test_now_ms() + WAIT_MS;

    if (f->sa != NULL) {
        if (!f->stopped) {
            simagents_stop(f->sa, on_stopped);
        }
        while (!f->stopped && test_now_ms() < deadline) {
            pump(f, 50);
        }
        assert_true(f->stopped);
        simagents_close(f->sa);
    }
    uv_close((uv_handle_t *)&f->slice, on_closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

/* GET /v1/agents?online=true on the leader: the number of items. */
static size_t online_count(struct fixture *f, json_t **out)
{
    long status;
    json_t *o = test_cluster_call(&f->c, f->leader.index, "GET",
                                  "/v1/agents?online=true&limit=1000", NULL,
                                  NULL, &status, NULL);
    size_t n = 0;

    if (status == 200) {
        n = json_array_size(json_object_get(o, "items"));
    }
    if (out != NULL) {
        *out = o;
    } else {
        json_decref(o);
    }
    return n;
}

static void twenty_agents_register(void **state)
{
    struct fixture *f = *state;
    struct simagents_options o = {0};
    struct simagents_stats st;
    const struct simagents_exec *e;
    static const struct proto_kv labels[] = {
        {PROTO_STR_INIT("site"), PROTO_STR_INIT("it")},
    };
    const char *eps[1];
    char ca_cert[TEST_PATH_SIZE];
    char ca_key[TEST_PATH_SIZE];
    char errmsg[REMS_ERRMSG_SIZE];
    char path[128];
    uint64_t deadline;
    json_t *list;
    json_t *item;
    json_t *cmd;
    const char *state_s = NULL;
    char id[80];
    long status;
    size_t n;
    size_t i;

    snprintf(ca_cert, sizeof ca_cert, "%s/site-ca/ca.pem", f->certs);
    snprintf(ca_key, sizeof ca_key, "%s/site-ca/ca.key", f->certs);
    eps[0] = f->c.nodes[0].agent_address;
    o.n_agents = N_AGENTS;
    o.prefix = "it";
    o.endpoints = eps;
    o.n_endpoints = 1;
    o.ca_cert = ca_cert;
    o.ca_key = ca_key;
    o.server_name = "node1.rems.test";
    o.resume = true;
    o.labels = labels;
    o.n_labels = 1;
    o.n_services = 2;
    o.ramp_per_s = 200;
    o.record_execs = true;
    o.data = f;
    assert_int_equal(simagents_open(&f->loop, &o, &f->sa, errmsg), 0);
    assert_int_equal(simagents_start(f->sa, errmsg), 0);

    /* All welcomed by the leader. */
    deadline = test_now_ms() + WAIT_MS;
    do {
        pump(f, 50);
        simagents_stats(f->sa, &st);
    } while (st.connected < N_AGENTS && test_now_ms() < deadline);
    assert_int_equal(st.connected, N_AGENTS);
    assert_int_equal(st.tls_failures, 0);
    assert_int_equal(st.protocol_errors, 0);

    /* Registered and online, as the log has it. */
    deadline = test_now_ms() + WAIT_MS;
    while (online_count(f, NULL) < N_AGENTS && test_now_ms() < deadline) {
        pump(f, 50);
    }
    assert_int_equal(online_count(f, &list), N_AGENTS);
    for (i = 0; i < N_AGENTS; i++) {
        item = json_array_get(json_object_get(list, "items"), i);
        assert_true(json_is_true(json_object_get(item, "online")));
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(item, "labels"), "site")),
                            "it");
        assert_true(strncmp(json_string_value(json_object_get(item, "id")),
                            "it-", 3) == 0);
    }
    json_decref(list);

    /* The hello's services reach the log. */
    deadline = test_now_ms() + WAIT_MS;
    for (;;) {
        item = test_cluster_call(&f->c, 0, "GET", "/v1/agents/it-7", NULL, NULL,
                                 &status, NULL);
        if (status == 200 && json_is_object(json_object_get(
                                 json_object_get(item, "services"), "svc-1"))) {
            break;
        }
        json_decref(item);
        assert_true(test_now_ms() < deadline);
        pump(f, 50);
    }
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(item, "services"), "svc-1"),
            "state")),
        "running");
    json_decref(item);

    /* A command through the API: executed once, acked. */
    cmd = test_cluster_call(&f->c, 0, "POST", "/v1/commands", NULL,
                            "{\"agent\":\"it-7\",\"action\":\"restart\","
                            "\"service\":\"svc-1\",\"ttl_ms\":10000}",
                            &status, NULL);
    assert_int_equal(status, 201);
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(cmd, "id")));
    json_decref(cmd);
    snprintf(path, sizeof path, "/v1/commands/%s", id);
    deadline = test_now_ms() + WAIT_MS;
    for (;;) {
        cmd =
            test_cluster_call(&f->c, 0, "GET", path, NULL, NULL, &status, NULL);
        state_s = json_string_value(json_object_get(cmd, "state"));
        if (status == 200 && state_s != NULL &&
            strcmp(state_s, "pending") != 0) {
            break;
        }
        json_decref(cmd);
        assert_true(test_now_ms() < deadline);
        pump(f, 20);
    }
    assert_string_equal(state_s, "acked");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(cmd, "result"), "generation")),
                        "2");
    json_decref(cmd);
    e = simagents_execs(f->sa, &n);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].id, id);
    assert_int_equal(e[0].agent, 6);
    assert_int_equal(e[0].term, f->leader.term);
    assert_true(e[0].ttl_remaining_ms > 0 && e[0].ttl_remaining_ms <= 10000);
    assert_int_equal(simagents_exec_check(e, n, errmsg), 0);

    simagents_stop(f->sa, on_stopped);
    deadline = test_now_ms() + WAIT_MS;
    while (!f->stopped && test_now_ms() < deadline) {
        pump(f, 50);
    }
    assert_true(f->stopped);
    simagents_stats(f->sa, &st);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.sessions, N_AGENTS);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(twenty_agents_register, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("simagents", tests, NULL, NULL);
}
