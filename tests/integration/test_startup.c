/* Integration: how remsd refuses to start. A wrong configuration exits 2
 * naming the key (or the option) before anything is created; a taken
 * port or a data dir locked by another remsd exits 1; a data dir that
 * belongs to another node id exits 2.
 *
 * The fixture runs one single-node cluster (node 1) whose ports and data
 * dir the refused starts collide with. Each refused start runs to its exit
 * (bounded, SIGKILL after the deadline) with its output in its own log. */
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

#define RUN_TIMEOUT_MS 5000

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    char raft[TEST_ADDR_SIZE]; /* Free addresses for the second remsd. */
    char api[TEST_ADDR_SIZE];
    char peer[2 * TEST_ADDR_SIZE + 24]; /* "2=<raft>,<api>" */
    char log[TEST_PATH_SIZE];
    char dir[TEST_PATH_SIZE]; /* A data dir that must not be created. */
    char *out;                /* Output of the last run. */
    int runs;
    bool passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    uint16_t ports[2];
    assert_non_null(f);
    test_cluster_init(&f->c, 1, NULL);
    test_cluster_start(&f->c);
    test_free_ports(ports, 2);
    snprintf(f->raft, sizeof f->raft, "127.0.0.1:%u", (unsigned)ports[0]);
    snprintf(f->api, sizeof f->api, "127.0.0.1:%u", (unsigned)ports[1]);
    snprintf(f->peer, sizeof f->peer, "2=%s,%s", f->raft, f->api);
    snprintf(f->dir, sizeof f->dir, "%s/never", f->c.dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean;
    if (!passed && f->out != NULL) {
        fprintf(stderr, "---- output of the last run ----\n%s", f->out);
    }
    free(f->out);
    clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

/* Run remsd with @argv (argv[0] is filled in), return its exit status and
 * keep its output in f->out. */
static int run(struct fixture *f, char **argv)
{
    int rv;
    argv[0] = (char *)f->c.bin;
    snprintf(f->log, sizeof f->log, "%s/run%d.log", f->c.dir, ++f->runs);
    rv = test_proc_run(f->c.bin, argv, f->log, RUN_TIMEOUT_MS);
    free(f->out);
    f->out = test_read_file(f->log);
    assert_non_null(f->out);
    return rv;
}

static void assert_output_has(struct fixture *f, const char *needle)
{
    if (strstr(f->out, needle) == NULL) {
        fprintf(stderr, "output lacks \"%s\":\n%s", needle, f->out);
    }
    assert_non_null(strstr(f->out, needle));
}

static void up(struct fixture *f)
{
    assert_true(test_cluster_wait_leader(&f->c, 10000, &f->leader));
}

/* ------------------------------------------------------------------ */

/* Configuration errors: exit 2, one line naming the key or option, and
 * the data dir is never created. */
static void invalid_configuration(void **state)
{
    struct fixture *f = *state;

    up(f);
    {
        char *argv[] = {NULL,    "--node-id",
                        "2",     "--raft-address",
                        f->raft, "--api-address",
                        f->api,  "--peer",
                        f->peer, NULL};
        assert_int_equal(run(f, argv), 2);
        assert_output_has(f,
                          "remsd: invalid configuration: data_dir: required");
    }
    {
        char *argv[] = {NULL,    "--node-id",
                        "2",     "--data-dir",
                        f->dir,  "--raft-address",
                        f->raft, "--api-address",
                        f->api,  "--peer",
                        f->peer, "--election-timeout-ms",
                        "10",    NULL};
        assert_int_equal(run(f, argv), 2);
        /* An option's error names the option (docs/configuration.md). */
        assert_output_has(f, "--election-timeout-ms: must be an integer "
                             "between 50 and 60000");
        assert_false(test_path_exists(f->dir));
    }
    {
        char *argv[] = {NULL,    "--node-id",
                        "2",     "--data-dir",
                        f->dir,  "--raft-address",
                        f->raft, "--api-address",
                        f->api,  "--peer",
                        f->peer, "--election-timeout-ms",
                        "100",   "--heartbeat-timeout-ms",
                        "100",   NULL};
        assert_int_equal(run(f, argv), 2);
        assert_output_has(f, "election_timeout_ms: must be at least twice "
                             "heartbeat_timeout_ms");
        assert_false(test_path_exists(f->dir));
    }
    {
        /* This node is not in its own peer list. */
        char *argv[] = {NULL,   "--node-id",      "3",     "--data-dir",
                        f->dir, "--raft-address", f->raft, "--api-address",
                        f->api, "--peer",         f->peer, NULL};
        assert_int_equal(run(f, argv), 2);
        assert_output_has(f, "peers: must contain this node");
        assert_false(test_path_exists(f->dir));
    }
    {
        char *argv[] = {NULL,   "--node-id",      "2",     "--data-dir",
                        f->dir, "--raft-address", f->raft, "--api-address",
                        f->api, "--peer",         f->peer, "--bogus",
                        NULL};
        assert_int_equal(run(f, argv), 2);
        assert_output_has(f, "--bogus: unknown option");
        assert_false(test_path_exists(f->dir));
    }
    f->passed = true;
}

/* The API port of a running node: exit 1 naming the address, before the
 * data dir is touched. */
static void api_port_in_use(void **state)
{
    struct fixture *f = *state;
    char peer[2 * TEST_ADDR_SIZE + 24];
    char want[128];

    up(f);
    snprintf(peer, sizeof peer, "2=%s,%s", f->raft, f->c.nodes[0].api_address);
    {
        char *argv[] = {NULL,
                        "--node-id",
                        "2",
                        "--data-dir",
                        f->dir,
                        "--raft-address",
                        f->raft,
                        "--api-address",
                        f->c.nodes[0].api_address,
                        "--peer",
                        peer,
                        NULL};
        assert_int_equal(run(f, argv), 1);
    }
    assert_output_has(f, "in use");
    snprintf(want, sizeof want, "admin API on %s", f->c.nodes[0].api_address);
    assert_output_has(f, want);
    assert_false(test_path_exists(f->dir));
    f->passed = true;
}

/* The raft port of a running node: exit 1 with "in use", in bounded time
 * (the admin API is already bound then, and must not keep remsd alive). */
static void raft_port_in_use(void **state)
{
    struct fixture *f = *state;
    char peer[2 * TEST_ADDR_SIZE + 24];
    int rv;

    up(f);
    snprintf(peer, sizeof peer, "2=%s,%s", f->c.nodes[0].raft_address, f->api);
    {
        char *argv[] = {NULL,
                        "--node-id",
                        "2",
                        "--data-dir",
                        f->dir,
                        "--raft-address",
                        f->c.nodes[0].raft_address,
                        "--api-address",
                        f->api,
                        "--peer",
                        peer,
                        NULL};
        rv = run(f, argv);
    }
    if (rv == -1) {
        fprintf(stderr, "remsd was still running after %d ms:\n%s",
                RUN_TIMEOUT_MS, f->out);
    }
    assert_int_equal(rv, 1);
    assert_output_has(f, "in use");
    /* Found before the data dir is touched. */
    assert_false(test_path_exists(f->dir));
    f->passed = true;
}

/* The data dir of a running node: exit 1 naming the holder's pid. */
static void data_dir_in_use(void **state)
{
    struct fixture *f = *state;
    char peer[2 * TEST_ADDR_SIZE + 24];
    char want[TEST_PATH_SIZE + 128];

    up(f);
    snprintf(peer, sizeof peer, "1=%s,%s", f->raft, f->api);
    {
        char *argv[] = {NULL,
                        "--node-id",
                        "1",
                        "--data-dir",
                        f->c.nodes[0].data_dir,
                        "--raft-address",
                        f->raft,
                        "--api-address",
                        f->api,
                        "--peer",
                        peer,
                        NULL};
        assert_int_equal(run(f, argv), 1);
    }
    snprintf(want, sizeof want,
             "data_dir %s is in use by another remsd (pid %ld)",
             f->c.nodes[0].data_dir, (long)f->c.nodes[0].proc.pid);
    assert_output_has(f, want);
    /* The running node did not notice. */
    {
        long status;
        char doc[256];
        json_t *o = test_cluster_call(
            &f->c, 0, "PUT", "/v1/policies/still", NULL,
            test_policy_doc("{\"ok\": 1}", doc, sizeof doc), &status, NULL);
        assert_int_equal(status, 200);
        json_decref(o);
    }
    f->passed = true;
}

/* A stopped node's data dir under another node id: exit 2 naming
 * node_id; under its own id and without --peer it starts again (a
 * restart) with its data. */
static void node_id_mismatch(void **state)
{
    struct fixture *f = *state;
    char peer[2 * TEST_ADDR_SIZE + 24];
    char doc[256];
    long status;
    json_t *o;

    up(f);
    o = test_cluster_call(&f->c, 0, "PUT", "/v1/policies/mine", NULL,
                          test_policy_doc("{\"owner\": 1}", doc, sizeof doc),
                          &status, NULL);
    assert_int_equal(status, 200);
    json_decref(o);
    assert_int_equal(test_proc_stop(&f->c.nodes[0].proc, 10000), 0);

    snprintf(peer, sizeof peer, "7=%s,%s", f->raft, f->api);
    {
        char *argv[] = {NULL,
                        "--node-id",
                        "7",
                        "--data-dir",
                        f->c.nodes[0].data_dir,
                        "--raft-address",
                        f->raft,
                        "--api-address",
                        f->api,
                        "--peer",
                        peer,
                        NULL};
        assert_int_equal(run(f, argv), 2);
    }
    assert_output_has(f, "node_id: 7 does not match data_dir");
    assert_output_has(f, "which belongs to node 1");

    /* Restart of node 1 without --peer: the data dir holds its state. */
    {
        char *argv[] = {(char *)f->c.bin,
                        "--node-id",
                        "1",
                        "--data-dir",
                        f->c.nodes[0].data_dir,
                        "--raft-address",
                        f->c.nodes[0].raft_address,
                        "--api-address",
                        f->c.nodes[0].api_address,
                        "--election-timeout-ms",
                        "300",
                        "--heartbeat-timeout-ms",
                        "30",
                        NULL};
        assert_int_equal(test_proc_start(&f->c.nodes[0].proc, f->c.bin, argv,
                                         f->c.nodes[0].log_path),
                         0);
    }
    up(f);
    o = test_cluster_call(&f->c, 0, "GET", "/v1/policies/mine", NULL, NULL,
                          &status, NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(
                         json_object_get(test_policy_meta(o), "owner")),
                     1);
    json_decref(o);
    f->passed = true;
}

/* A fresh data dir with neither --peer nor --join cannot form or reach a
 * cluster: docs/configuration.md says such a node does not start. */
static void fresh_without_peers_or_join(void **state)
{
    struct fixture *f = *state;
    int rv;

    up(f);
    {
        char *argv[] = {NULL,         "--node-id",     "2",
                        "--data-dir", f->dir,          "--raft-address",
                        f->raft,      "--api-address", f->api,
                        NULL};
        rv = run(f, argv);
    }
    if (rv == -1) {
        fprintf(stderr, "remsd was still running after %d ms:\n%s",
                RUN_TIMEOUT_MS, f->out);
    }
    assert_int_equal(rv, 2);
    assert_output_has(f, "peers: required to bootstrap a new node");
    assert_output_has(f, "join");
    assert_false(test_path_exists(f->dir));
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(invalid_configuration, setup, teardown),
        cmocka_unit_test_setup_teardown(api_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(raft_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(data_dir_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(node_id_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(fresh_without_peers_or_join, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("integration_startup", tests, NULL,
                                       NULL);
}
