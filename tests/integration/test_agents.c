/* Integration: real remsd nodes with agent listeners and real rems-agent
 * processes, over mTLS on loopback, with certificates made at test time by
 * tests/lib/make-test-ca.sh (the openssl commands of docs/certificates.md).
 *
 *   command_acked_visible_from_follower  two agents register; a command
 *       issued through one follower is acked and shown on the other; the
 *       service ran once.
 *   other_ca_refused  an agent whose certificate comes from another CA is
 *       refused in the handshake (logged with the reason) and never
 *       registered.
 *   leader_killed_commands_resent_once  commands still running on the agent
 *       when the leader is SIGKILLed: the agent's answers are lost with the
 *       connection, the new leader re-sends them, and each ran exactly once
 *       (acked, marked duplicate).
 *   deadline_passed_while_disconnected  a command issued while its agent is
 *       down expires and never runs, even once the agent is back.
 *   paused_agent_never_runs_late  a command reaches an agent that is
 *       stopped (SIGSTOP) before it can read it; when it resumes after the
 *       deadline it refuses the command.
 *   lease_expiry_and_reconnect  a paused agent loses its lease and is shown
 *       offline; once resumed it reconnects and is online again.
 *
 * Agents run with a short lease (1500 ms, heartbeats every 250 ms). Each
 * service appends a line to a file in the test directory every time it
 * starts: the line count is the number of executions. */
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

#define WAIT_MS 15000
#define MAX_AGENTS 2

struct agent {
    char id[32];
    char dir[TEST_PATH_SIZE];
    char config[TEST_PATH_SIZE];
    char log[TEST_PATH_SIZE];
    struct test_proc proc;
};

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    char certs[TEST_PATH_SIZE];
    struct agent agents[MAX_AGENTS];
    bool passed;
};

static const char *const extra_args[] = {
    "--forward-timeout-ms", "2000", "--lease-ttl-ms", "1500",
    "--agent-heartbeat-ms", "250",  NULL,
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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char cmd[2 * TEST_PATH_SIZE];
    char cert[TEST_PATH_SIZE];
    char key[TEST_PATH_SIZE];
    char ca[TEST_PATH_SIZE];

    assert_non_null(f);
    test_cluster_init(&f->c, 3, extra_args);
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
    *state = f;
    return 0;
}

static void dump_file(const char *what, const char *path)
{
    char *text = test_read_file(path);
    if (text != NULL) {
        size_t len = strlen(text);
        fprintf(stderr, "---- %s (%s), last 4000 bytes:\n%s\n", what, path,
                text + (len > 4000 ? len - 4000 : 0));
        free(text);
    }
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean;
    size_t i;

    for (i = 0; i < MAX_AGENTS; i++) {
        struct agent *a = &f->agents[i];
        if (a->id[0] == '\0') {
            continue;
        }
        if (test_proc_running(&a->proc)) {
            test_proc_stop(&a->proc, 10000);
        }
        if (!passed) {
            dump_file(a->id, a->log);
        }
    }
    clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Agents.                                                              */

/* A service named @name that appends a line to <dir>/<name>.count each
 * time it starts and becomes ready @ready_after_s seconds later. */
static void service_yaml(FILE *fp,
                         const char *dir,
                         const char *name,
                         unsigned ready_after_s,
                         bool autostart)
{
    fprintf(fp,
            "  - name: %s\n"
            "    command: [/bin/sh, -c, \"echo run >> %s/%s.count; "
            "rm -f %s/%s.ready; sleep %u; touch %s/%s.ready; "
            "exec sleep 1000\"]\n"
            "    readiness: {type: exec, command: [/bin/test, -f, "
            "%s/%s.ready], interval_ms: 100, timeout_ms: 1000}\n"
            "    autostart: %s\n"
            "    stop_timeout_ms: 2000\n",
            name, dir, name, dir, name, ready_after_s, dir, name, dir, name,
            autostart ? "true" : "false");
}

/* Define agent @i with id @id and certificate <certs>/<cert_name>.pem,
 * with the services job (no delay) and slow-a, slow-b, slow-c (ready after
 * 2 s), none started at start. */
static struct agent *agent_define(struct fixture *f,
                                  size_t i,
                                  const char *id,
                                  const char *cert_name,
                                  const char *ca_path)
{
    struct agent *a = &f->agents[i];
    char base[TEST_PATH_SIZE];
    FILE *fp;
    size_t k;

    snprintf(a->id, sizeof a->id, "%s", id);
    snprintf(base, sizeof base, "%s/%s", f->c.dir, a->id);
    snprintf(a->dir, sizeof a->dir, "%s", base);
    snprintf(a->config, sizeof a->config, "%s.yaml", base);
    snprintf(a->log, sizeof a->log, "%s.log", base);
    fp = fopen(a->config, "w");
    assert_non_null(fp);
    fprintf(fp, "id: %s\nendpoints:\n", id);
    for (k = 0; k < f->c.n; k++) {
        fprintf(fp, "  - %s\n", f->c.nodes[k].agent_address);
    }
    fprintf(fp,
            "tls:\n"
            "  cert: %s/%s.pem\n"
            "  key: %s/%s.key\n"
            "  ca: %s\n"
            "data_dir: %s\n"
            "labels: {site: lab, rack: \"%zu\"}\n"
            "reconnect: {initial_ms: 100, max_ms: 500, "
            "connect_timeout_ms: 2000}\n"
            "services:\n",
            f->certs, cert_name, f->certs, cert_name,
            ca_path != NULL ? ca_path : "", a->dir, i);
    service_yaml(fp, f->c.dir, "job", 0, false);
    service_yaml(fp, f->c.dir, "slow-a", 2, false);
    service_yaml(fp, f->c.dir, "slow-b", 2, false);
    service_yaml(fp, f->c.dir, "slow-c", 2, false);
    fclose(fp);
    return a;
}

static void agent_start(struct agent *a)
{
    char *argv[] = {(char *)agent_bin(), "--config", a->config, NULL};
    assert_int_equal(test_proc_start(&a->proc, argv[0], argv, a->log), 0);
}

/* Executions of service @name: lines in its count file. */
static int runs(struct fixture *f, const char *name)
{
    char path[TEST_PATH_SIZE];
    char *text;
    int n = 0;
    const char *p;
    snprintf(path, sizeof path, "%s/%s.count", f->c.dir, name);
    text = test_read_file(path);
    if (text == NULL) {
        return 0;
    }
    for (p = text; *p != '\0'; p++) {
        n += *p == '\n';
    }
    free(text);
    return n;
}

/* ------------------------------------------------------------------ */
/* API helpers.                                                         */

struct agent_wait {
    struct fixture *f;
    size_t node;
    const char *id;
    bool online;
};

static bool agent_is(void *arg)
{
    struct agent_wait *w = arg;
    char path[128];
    long status;
    json_t *o;
    bool ok;
    snprintf(path, sizeof path, "/v1/agents/%s?consistency=stale", w->id);
    o = test_cluster_call(&w->f->c, w->node, "GET", path, NULL, NULL, &status,
                          NULL);
    ok = status == 200 &&
         json_is_true(json_object_get(o, "online")) == w->online;
    json_decref(o);
    return ok;
}

static void wait_agent(struct fixture *f,
                       size_t node,
                       const char *id,
                       bool online,
                       unsigned timeout_ms)
{
    struct agent_wait w = {f, node, id, online};
    if (!test_wait_for(agent_is, &w, timeout_ms)) {
        fprintf(stderr, "agent %s not %s on node %zu after %u ms\n", id,
                online ? "online" : "offline", node, timeout_ms);
        fail();
    }
}

/* POST a command through node @node; returns its id (static buffer). */
static const char *issue(struct fixture *f,
                         size_t node,
                         const char *agent,
                         const char *action,
                         const char *service,
                         unsigned ttl_ms)
{
    static char id[80];
    char body[512];
    long status;
    json_t *o;
    snprintf(body, sizeof body,
             "{\"agent\":\"%s\",\"action\":\"%s\",\"service\":\"%s\","
             "\"ttl_ms\":%u,\"reason\":\"test\"}",
             agent, action, service, ttl_ms);
    o = test_cluster_call(&f->c, node, "POST", "/v1/commands", NULL, body,
                          &status, NULL);
    if (status != 201) {
        char *t = o != NULL ? json_dumps(o, 0) : NULL;
        fprintf(stderr, "POST /v1/commands: %ld %s\n", status,
                t != NULL ? t : "");
        free(t);
        fail();
    }
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(o, "id")));
    json_decref(o);
    assert_true(id[0] != '\0');
    return id;
}

struct command_wait {
    struct fixture *f;
    size_t node;
    const char *id;
    char state[16];
    json_t *last;
};

static bool command_final(void *arg)
{
    struct command_wait *w = arg;
    char path[160];
    long status;
    json_t *o;
    const char *s;
    snprintf(path, sizeof path, "/v1/commands/%s", w->id);
    o = test_cluster_call(&w->f->c, w->node, "GET", path, NULL, NULL, &status,
                          NULL);
    s = status == 200 ? json_string_value(json_object_get(o, "state")) : NULL;
    if (s != NULL && strcmp(s, "pending") != 0) {
        snprintf(w->state, sizeof w->state, "%s", s);
        json_decref(w->last);
        w->last = o;
        return true;
    }
    json_decref(o);
    return false;
}

/* Wait until command @id is final on node @node; returns its JSON (the
 * caller releases it) after checking its state is @want. */
static json_t *wait_command(struct fixture *f,
                            size_t node,
                            const char *id,
                            const char *want,
                            unsigned timeout_ms)
{
    struct command_wait w = {f, node, id, "", NULL};
    if (!test_wait_for(command_final, &w, timeout_ms)) {
        fprintf(stderr, "command %s still pending on node %zu\n", id, node);
        fail();
    }
    if (strcmp(w.state, want) != 0) {
        char *t = json_dumps(w.last, 0);
        fprintf(stderr, "command %s: %s, expected %s: %s\n", id, w.state,
                want, t != NULL ? t : "");
        free(t);
        fail();
    }
    return w.last;
}

static size_t follower(struct fixture *f, size_t not_this)
{
    size_t i = test_cluster_other(&f->c, f->leader.index, not_this);
    assert_true(i != SIZE_MAX);
    return i;
}

static bool log_has(const char *path, const char *needle)
{
    char *text = test_read_file(path);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* ------------------------------------------------------------------ */
/* Tests.                                                               */

static void command_acked_visible_from_follower(void **state)
{
    struct fixture *f = *state;
    char ca[TEST_PATH_SIZE];
    size_t f1 = follower(f, SIZE_MAX);
    size_t f2 = follower(f, f1);
    const char *id;
    json_t *o;
    long status;

    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    agent_start(agent_define(f, 0, "agent-1", "agent-1", ca));
    agent_start(agent_define(f, 1, "agent-2", "agent-2", ca));
    wait_agent(f, f1, "agent-1", true, WAIT_MS);
    wait_agent(f, f2, "agent-2", true, WAIT_MS);

    /* Registration and labels are replicated. */
    o = test_cluster_call(&f->c, f2, "GET", "/v1/agents/agent-1", NULL, NULL,
                          &status, NULL);
    assert_int_equal(status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "labels"),
                                          "site")),
        "lab");
    json_decref(o);

    id = issue(f, f1, "agent-1", "start", "job", 10000);
    o = wait_command(f, f2, id, "acked", WAIT_MS);
    json_decref(o);
    assert_int_equal(runs(f, "job"), 1);
    /* The agent's report of the running service reaches the log. */
    f->passed = true;
}

static void other_ca_refused(void **state)
{
    struct fixture *f = *state;
    char ca[TEST_PATH_SIZE];
    long status;
    json_t *o;
    size_t i;
    bool refused = false;
    uint64_t deadline;

    /* other-agent.pem: CN agent-1, signed by an unrelated CA. */
    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    agent_start(agent_define(f, 0, "agent-1", "other-agent", ca));
    deadline = test_now_ms() + WAIT_MS;
    while (!refused && test_now_ms() < deadline) {
        for (i = 0; i < f->c.n; i++) {
            refused = refused ||
                      log_has(f->c.nodes[i].log_path, "\"agent_refused\"");
        }
        test_sleep_ms(100);
    }
    assert_true(refused);
    test_sleep_ms(1000);
    o = test_cluster_call(&f->c, f->leader.index, "GET", "/v1/agents", NULL,
                          NULL, &status, NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
    json_decref(o);
    f->passed = true;
}

static void leader_killed_commands_resent_once(void **state)
{
    struct fixture *f = *state;
    static const char *const services[] = {"slow-a", "slow-b", "slow-c"};
    char ids[3][80];
    char ca[TEST_PATH_SIZE];
    size_t old = f->leader.index;
    size_t other;
    unsigned dup = 0;
    size_t k;

    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    agent_start(agent_define(f, 0, "agent-1", "agent-1", ca));
    wait_agent(f, old, "agent-1", true, WAIT_MS);
    /* Each service becomes ready 2 s after it starts: the commands are
     * executing when the leader dies. */
    for (k = 0; k < 3; k++) {
        snprintf(ids[k], sizeof ids[k], "%s",
                 issue(f, old, "agent-1", "start", services[k], 20000));
    }
    test_sleep_ms(300);
    assert_int_equal(test_proc_signal(&f->c.nodes[old].proc, SIGKILL), 0);
    test_proc_wait(&f->c.nodes[old].proc, 5000);
    assert_true(test_cluster_wait_leader(&f->c, WAIT_MS, &f->leader));
    assert_true(f->leader.index != old);
    other = follower(f, old);
    for (k = 0; k < 3; k++) {
        json_t *o = wait_command(f, other, ids[k], "acked", 20000);
        json_t *res = json_object_get(o, "result");
        dup += json_is_true(json_object_get(res, "duplicate"));
        json_decref(o);
        assert_int_equal(runs(f, services[k]), 1);
    }
    /* The answers went to the dead leader: the new one re-sent them. */
    assert_true(dup >= 1);
    test_sleep_ms(1000);
    for (k = 0; k < 3; k++) {
        assert_int_equal(runs(f, services[k]), 1);
    }
    f->passed = true;
}

static void deadline_passed_while_disconnected(void **state)
{
    struct fixture *f = *state;
    char ca[TEST_PATH_SIZE];
    struct agent *a;
    const char *id;
    json_t *o;

    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    a = agent_define(f, 0, "agent-1", "agent-1", ca);
    agent_start(a);
    wait_agent(f, f->leader.index, "agent-1", true, WAIT_MS);
    assert_int_equal(test_proc_stop(&a->proc, 10000), 0);
    wait_agent(f, f->leader.index, "agent-1", false, WAIT_MS);
    id = issue(f, f->leader.index, "agent-1", "start", "job", 1000);
    o = wait_command(f, f->leader.index, id, "expired", WAIT_MS);
    json_decref(o);
    agent_start(a);
    wait_agent(f, f->leader.index, "agent-1", true, WAIT_MS);
    test_sleep_ms(1500);
    assert_int_equal(runs(f, "job"), 0);
    f->passed = true;
}

static void paused_agent_never_runs_late(void **state)
{
    struct fixture *f = *state;
    char ca[TEST_PATH_SIZE];
    struct agent *a;
    const char *id;
    json_t *o;

    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    a = agent_define(f, 0, "agent-1", "agent-1", ca);
    agent_start(a);
    wait_agent(f, f->leader.index, "agent-1", true, WAIT_MS);
    /* Stopped while connected: the command waits in its socket. */
    assert_int_equal(test_proc_signal(&a->proc, SIGSTOP), 0);
    id = issue(f, f->leader.index, "agent-1", "start", "job", 1200);
    test_sleep_ms(3000);
    assert_int_equal(test_proc_signal(&a->proc, SIGCONT), 0);
    o = wait_command(f, f->leader.index, id, "expired", WAIT_MS);
    json_decref(o);
    wait_agent(f, f->leader.index, "agent-1", true, WAIT_MS);
    test_sleep_ms(1000);
    assert_int_equal(runs(f, "job"), 0);
    f->passed = true;
}

static void lease_expiry_and_reconnect(void **state)
{
    struct fixture *f = *state;
    char ca[TEST_PATH_SIZE];
    struct agent *a;
    size_t other = follower(f, SIZE_MAX);
    char path[64];
    long status;
    json_t *o;

    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    a = agent_define(f, 0, "agent-1", "agent-1", ca);
    agent_start(a);
    wait_agent(f, other, "agent-1", true, WAIT_MS);
    assert_int_equal(test_proc_signal(&a->proc, SIGSTOP), 0);
    wait_agent(f, other, "agent-1", false, WAIT_MS);
    snprintf(path, sizeof path, "/v1/agents/agent-1");
    o = test_cluster_call(&f->c, other, "GET", path, NULL, NULL, &status,
                          NULL);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(o,
                                                          "offline_reason")),
                        "expired");
    json_decref(o);
    assert_int_equal(test_proc_signal(&a->proc, SIGCONT), 0);
    wait_agent(f, other, "agent-1", true, WAIT_MS);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(command_acked_visible_from_follower,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(other_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(leader_killed_commands_resent_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(deadline_passed_while_disconnected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(paused_agent_never_runs_late, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lease_expiry_and_reconnect, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("integration_agents", tests, NULL,
                                       NULL);
}
