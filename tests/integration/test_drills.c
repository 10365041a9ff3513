/* tests/integration/test_drills.c: the bundled failover drills of rems-sim
 * (simulator/scenarios/), each run once with few agents against a local
 * cluster rems-sim starts, checked through the exit status and the JSON
 * report; and the other side: a deliberately broken drill (a leader
 * expected within 1 ms) must fail, with exit status 1, the assertion
 * marked failed and the others kept; a scenario error exits 2 naming the
 * line and field.
 *
 * Environment: REMS_SIM (the rems-sim binary), REMSD, REMS_SCENARIOS (the
 * directory of the bundled drills), all set by CTest. REMS_DRILL_AGENTS
 * overrides the agent count (default 40). rems-sim kills the nodes it
 * started; each rems-sim is started here by PID and killed on timeout. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/proc.h"
#include "tests/lib/tmpdir.h"

#define DRILL_TIMEOUT_MS (6u * 60u * 1000u)

struct run {
    char dir[256];
    char log[320];
    char json[320];
    char svg[320];
    int status;
    json_t *report;
    char *output;
};

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : fallback;
}

/* Run rems-sim on @scenario with @extra arguments (NULL-terminated). */
static void run_sim(struct run *r, const char *scenario, ...)
{
    const char *sim = env_or("REMS_SIM", "rems-sim");
    char *argv[32];
    size_t n = 0;
    va_list ap;
    const char *a;

    memset(r, 0, sizeof *r);
    test_tmpdir_make(r->dir);
    snprintf(r->log, sizeof r->log, "%s/rems-sim.log", r->dir);
    snprintf(r->json, sizeof r->json, "%s/report.json", r->dir);
    snprintf(r->svg, sizeof r->svg, "%s/timeline.svg", r->dir);
    argv[n++] = (char *)sim;
    argv[n++] = "--seed";
    argv[n++] = "42";
    argv[n++] = "--agents";
    argv[n++] = (char *)env_or("REMS_DRILL_AGENTS", "40");
    argv[n++] = "--json";
    argv[n++] = r->json;
    argv[n++] = "--svg";
    argv[n++] = r->svg;
    argv[n++] = "--remsd";
    argv[n++] = (char *)test_remsd_path();
    va_start(ap, scenario);
    while ((a = va_arg(ap, const char *)) != NULL && n < 30) {
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n++] = (char *)scenario;
    argv[n] = NULL;
    r->status = test_proc_run(sim, argv, r->log, DRILL_TIMEOUT_MS);
    r->output = test_read_file(r->log);
    r->report = json_load_file(r->json, 0, NULL);
    if (r->output != NULL) {
        /* The report is in the test's log when something goes wrong. */
        fprintf(stderr, "---- rems-sim %s (exit %d)\n%s----\n", scenario,
                r->status, r->output);
    }
}

static void run_free(struct run *r)
{
    json_decref(r->report);
    free(r->output);
    test_tmpdir_remove(r->dir);
}

/* The verdict of assertion @kind in the JSON report; -1 when absent. */
static int verdict(const struct run *r, const char *kind)
{
    json_t *list = json_object_get(r->report, "assertions");
    size_t i;

    for (i = 0; i < json_array_size(list); i++) {
        json_t *a = json_array_get(list, i);
        const char *k = json_string_value(json_object_get(a, "kind"));
        if (k != NULL && strcmp(k, kind) == 0) {
            return json_is_true(json_object_get(a, "passed")) ? 1 : 0;
        }
    }
    return -1;
}

static void bundled(const char *name)
{
    char path[512];
    struct run r;

    snprintf(path, sizeof path, "%s/%s.yaml",
             env_or("REMS_SCENARIOS", "simulator/scenarios"), name);
    run_sim(&r, path, "--quiet", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(r.report);
    assert_true(json_is_true(json_object_get(r.report, "passed")));
    assert_non_null(r.output);
    assert_non_null(strstr(r.output, "result: PASS"));
    assert_true(test_path_exists(r.svg));
    run_free(&r);
}

static void drill_leader_kill(void **state)
{
    (void)state;
    bundled("leader-kill");
}

static void drill_leader_pause(void **state)
{
    (void)state;
    bundled("leader-pause");
}

static void drill_minority_partition(void **state)
{
    (void)state;
    bundled("minority-partition");
}

static void drill_rolling_restart(void **state)
{
    (void)state;
    bundled("rolling-restart");
}

static void drill_agent_storm(void **state)
{
    (void)state;
    bundled("agent-storm");
}

static void drill_crash_loop(void **state)
{
    (void)state;
    bundled("crash-loop");
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* A leader within 1 ms of a SIGKILL cannot be: the assertion fails, the
 * others hold, the exit status is 1 and the report says which failed. */
static void broken_drill_fails(void **state)
{
    char dir[256];
    char path[320];
    struct run r;
    json_t *faults;

    (void)state;
    test_tmpdir_make(dir);
    snprintf(path, sizeof path, "%s/too-fast.yaml", dir);
    write_file(path, "name: too-fast\n"
                     "agents: {count: 20, services: 2}\n"
                     "settle_ms: 5000\n"
                     "steps:\n"
                     "  - wait_agents: {connected: all}\n"
                     "  - issue_commands: {rate: 10, duration_ms: 1000}\n"
                     "  - kill_leader: {}\n"
                     "  - wait_leader: {timeout_ms: 10000}\n"
                     "assertions:\n"
                     "  - leader_within_ms: 1\n"
                     "  - commands_exactly_once: true\n");
    run_sim(&r, path, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(r.report);
    assert_false(json_is_true(json_object_get(r.report, "passed")));
    assert_int_equal(verdict(&r, "leader_within_ms"), 0);
    assert_int_equal(verdict(&r, "commands_exactly_once"), 1);
    faults = json_object_get(r.report, "faults");
    assert_int_equal(json_array_size(faults), 1);
    /* A new leader was elected, just not in 1 ms. */
    assert_true(json_integer_value(json_object_get(
                    json_array_get(faults, 0), "election_ms")) > 1);
    assert_non_null(strstr(r.output, "FAIL"));
    assert_non_null(strstr(r.output, "result: FAIL"));
    run_free(&r);
    test_tmpdir_remove(dir);
}

/* A scenario error is found before anything starts: exit 2, the message
 * names the file, the line and the field. */
static void scenario_error_exits_2(void **state)
{
    char dir[256];
    char path[320];
    struct run r;

    (void)state;
    test_tmpdir_make(dir);
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    write_file(path, "name: bad\n"
                     "steps:\n"
                     "  - kill_node: {node: 7}\n");
    run_sim(&r, path, NULL);
    assert_int_equal(r.status, 2);
    assert_null(r.report);
    assert_non_null(r.output);
    assert_non_null(strstr(r.output, "bad.yaml:3: steps[0].kill_node.node"));
    run_free(&r);
    test_tmpdir_remove(dir);
}

/* The value of "key: value" in the YAML file @path, into @out. */
static void yaml_value(const char *path, const char *key, char *out, size_t n)
{
    char *text = test_read_file(path);
    char *p;
    size_t len = 0;

    assert_non_null(text);
    p = strstr(text, key);
    assert_non_null(p);
    p += strlen(key) + 2; /* ": " */
    while (p[len] != '\0' && p[len] != '\n' && len + 1 < n) {
        len++;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    free(text);
}

/* Attach: a cluster rems-sim did not start (here the nodes of a kept drill
 * directory, started again by this test) is driven through --endpoints
 * with the CA given; a step that needs a process fails there with exit 1
 * and says why. */
static void attach_to_running_cluster(void **state)
{
    char dir[256];
    char path[320];
    char kept[256] = "";
    char endpoints[512] = "";
    char ca_cert[300];
    char ca_key[300];
    struct test_proc nodes[3];
    struct run r;
    const char *p;
    size_t i;

    (void)state;
    memset(nodes, 0, sizeof nodes);
    test_tmpdir_make(dir);
    snprintf(path, sizeof path, "%s/tiny.yaml", dir);
    write_file(path, "name: tiny\n"
                     "agents: {count: 10, services: 1}\n"
                     "settle_ms: 5000\n"
                     "steps:\n"
                     "  - wait_agents: {connected: all}\n"
                     "  - issue_commands: {rate: 10, duration_ms: 1000}\n"
                     "  - isolate: {node: follower, ms: 500}\n"
                     "assertions:\n"
                     "  - commands_exactly_once: true\n");
    /* A local run that keeps its directory: configurations, CA, data. */
    run_sim(&r, path, "--quiet", "--keep", NULL);
    assert_int_equal(r.status, 0);
    p = strstr(r.output, "cluster directory kept: ");
    assert_non_null(p);
    p += strlen("cluster directory kept: ");
    for (i = 0; p[i] != '\0' && p[i] != '\n' && i + 1 < sizeof kept; i++) {
        kept[i] = p[i];
    }
    kept[i] = '\0';
    run_free(&r);

    for (i = 0; i < 3; i++) {
        char config[300];
        char log[300];
        char api[64];
        char agent[64];
        char *argv[4];
        snprintf(config, sizeof config, "%s/node%zu.yaml", kept, i + 1);
        snprintf(log, sizeof log, "%s/node%zu.again.log", kept, i + 1);
        yaml_value(config, "\napi_address", api, sizeof api);
        yaml_value(config, "\nagent_address", agent, sizeof agent);
        snprintf(endpoints + strlen(endpoints),
                 sizeof endpoints - strlen(endpoints), "%s%s=%s",
                 i == 0 ? "" : ",", api, agent);
        argv[0] = (char *)test_remsd_path();
        argv[1] = "--config";
        argv[2] = config;
        argv[3] = NULL;
        assert_int_equal(test_proc_start(&nodes[i], argv[0], argv, log), 0);
    }
    snprintf(ca_cert, sizeof ca_cert, "%s/ca.pem", kept);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", kept);
    test_sleep_ms(3000);

    run_sim(&r, path, "--quiet", "--endpoints", endpoints, "--ca-cert",
            ca_cert, "--ca-key", ca_key, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.output, "result: PASS"));
    run_free(&r);

    snprintf(path, sizeof path, "%s/kill.yaml", dir);
    write_file(path, "name: kill\nagents: {count: 2, services: 1}\n"
                     "steps: [{kill_leader: {}}]\n");
    run_sim(&r, path, "--quiet", "--endpoints", endpoints, "--ca-cert",
            ca_cert, "--ca-key", ca_key, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.output, "kill needs a cluster rems-sim started"));
    run_free(&r);

    for (i = 0; i < 3; i++) {
        test_proc_stop(&nodes[i], 5000);
    }
    test_tmpdir_remove(kept);
    test_tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scenario_error_exits_2),
        cmocka_unit_test(broken_drill_fails),
        cmocka_unit_test(attach_to_running_cluster),
        cmocka_unit_test(drill_leader_kill),
        cmocka_unit_test(drill_leader_pause),
        cmocka_unit_test(drill_minority_partition),
        cmocka_unit_test(drill_rolling_restart),
        cmocka_unit_test(drill_agent_storm),
        cmocka_unit_test(drill_crash_loop),
    };
    const char *only = getenv("REMS_DRILL");

    if (only != NULL && only[0] != '\0') {
        cmocka_set_test_filter(only);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
