/* Unit tests of rems-sim's scenario files (simulator/scenario.h).
 *
 *   full_scenario      the ADR's example with every section read back
 *   every_step         each step kind with its parameters and defaults
 *   every_assertion    each assertion kind; false turns one off
 *   defaults           a scenario of a name and one step
 *   node_names         leader, follower, ids; check_nodes on a resize
 *   counts             all, N, N% and scenario_count_of()
 *   inline_policy      YAML converted to JSON with YAML 1.2 scalars
 *   policy_file        resolved against the scenario's directory
 *   errors             one case per class of error, with its message
 *   load_missing_file  the reason of a file that cannot be read
 *   out_of_memory      every allocation failed in turn: ENOMEM, no leak */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/proto.h"
#include "simulator/scenario.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

struct fixture {
    struct test_heap heap;
    struct scenario s;
    char errmsg[REMS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    scenario_close(&f->s);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

static int parse(struct fixture *f, const char *text)
{
    scenario_close(&f->s);
    f->errmsg[0] = '\0';
    return scenario_parse("t.yaml", text, strlen(text), &f->s, f->errmsg);
}

static void parse_ok(struct fixture *f, const char *text)
{
    int rv = parse(f, text);
    if (rv != 0) {
        fail_msg("%s", f->errmsg);
    }
}

#define ADR_EXAMPLE                                                            \
    "name: leader-kill\n"                                                      \
    "description: SIGKILL the leader while commands flow\n"                    \
    "cluster: {nodes: 3, election_timeout_ms: 1000}\n"                         \
    "agents: {count: 200, services: 4, heartbeat_ms: 1000,\n"                  \
    "         behaviours: [{behaviour: crash_loop, fraction: 0.01}]}\n"        \
    "steps:\n"                                                                 \
    "  - wait_agents: {connected: all, timeout_ms: 60000}\n"                   \
    "  - apply_policy: {key: drill/app, inline: {placement: {agents: [a]},\n"  \
    "                   services: []}}\n"                                      \
    "  - issue_commands: {rate: 20, duration_ms: 20000, action: restart,\n"    \
    "                     background: true}\n"                                 \
    "  - wait: {ms: 5000}\n"                                                   \
    "  - kill_leader: {}\n"                                                    \
    "  - wait_leader: {timeout_ms: 10000}\n"                                   \
    "  - wait: {ms: 10000}\n"                                                  \
    "assertions:\n"                                                            \
    "  - leader_within_ms: 5000\n"                                             \
    "  - commands_exactly_once: true\n"                                        \
    "  - no_late_execution: true\n"                                            \
    "  - nominal_within_ms: 60000\n"

static void full_scenario(void **state)
{
    struct fixture *f = *state;
    struct scenario *s = &f->s;

    parse_ok(f, ADR_EXAMPLE);
    assert_string_equal(s->path, "t.yaml");
    assert_string_equal(s->name, "leader-kill");
    assert_string_equal(s->description,
                        "SIGKILL the leader while commands flow");
    assert_int_equal(s->cluster.nodes, 3);
    assert_int_equal(s->cluster.election_timeout_ms, 1000);
    assert_int_equal(s->agents.count, 200);
    assert_int_equal(s->agents.services, 4);
    assert_int_equal(s->agents.heartbeat_ms, 1000);
    assert_int_equal(s->agents.n_behaviours, 1);
    assert_int_equal(s->agents.behaviours[0].kind,
                     SCENARIO_BEHAVIOUR_CRASH_LOOP);
    assert_true(s->agents.behaviours[0].fraction == 0.01);
    assert_int_equal(s->agents.behaviours[0].crash_after_ms,
                     SCENARIO_DEFAULT_CRASH_AFTER_MS);
    assert_int_equal(s->n_steps, 7);
    assert_int_equal(s->steps[0].kind, SCENARIO_STEP_WAIT_AGENTS);
    assert_int_equal(s->steps[0].line, 7);
    assert_true(s->steps[0].u.wait_agents.connected.all);
    assert_int_equal(s->steps[1].kind, SCENARIO_STEP_APPLY_POLICY);
    assert_string_equal(s->steps[1].u.apply_policy.key, "drill/app");
    assert_string_equal(s->steps[1].u.apply_policy.inline_json,
                        "{\"placement\":{\"agents\":[\"a\"]},\"services\":[]}");
    assert_int_equal(s->steps[2].kind, SCENARIO_STEP_ISSUE_COMMANDS);
    assert_true(s->steps[2].u.issue_commands.rate == 20.0);
    assert_true(s->steps[2].u.issue_commands.background);
    assert_int_equal(s->steps[4].kind, SCENARIO_STEP_KILL_LEADER);
    assert_int_equal(s->steps[4].u.kill.node.kind, SCENARIO_NODE_LEADER);
    assert_int_equal(s->n_assertions, 4);
    assert_int_equal(s->assertions[0].kind, SCENARIO_ASSERT_LEADER_WITHIN_MS);
    assert_int_equal(s->assertions[0].ms, 5000);
    assert_int_equal(s->assertions[0].line, 17);
    assert_int_equal(s->assertions[3].kind, SCENARIO_ASSERT_NOMINAL_WITHIN_MS);
}

static void every_step(void **state)
{
    struct fixture *f = *state;
    struct scenario_step *st;
    size_t i;

    parse_ok(f, "name: all\n"
                "cluster: {nodes: 5}\n"
                "steps:\n"
                "  - wait: {ms: 0}\n"
                "  - wait_agents: {connected: 50%}\n"
                "  - wait_leader: {}\n"
                "  - apply_policy: {key: a/b, inline: {services: []}}\n"
                "  - issue_commands: {rate: 2.5, duration_ms: 100,\n"
                "      action: diagnostics, service: web, ttl_ms: 500}\n"
                "  - kill_leader:\n"
                "  - kill_node: {node: follower}\n"
                "  - pause_leader: {ms: 300}\n"
                "  - pause_node: {node: 4, ms: 200}\n"
                "  - isolate: {node: leader, ms: 1000}\n"
                "  - restart_node: {node: 2, graceful: false, down_ms: 50}\n"
                "  - transfer_leadership: {to: 5, timeout_ms: 700}\n"
                "  - rolling_restart: {graceful: no, timeout_ms: 9000}\n"
                "  - crash_services: {agents: 10, service: svc-1}\n"
                "  - reconnect_all: {}\n"
                "  - transfer_leadership: {}\n"
                "  - restart_node: {node: 1}\n"
                "  - rolling_restart: {}\n"
                "  - crash_services: {agents: 1%}\n"
                "  - issue_commands: {rate: 1, duration_ms: 1}\n"
                "  - wait_rollout: {key: drill/app}\n"
                "  - wait_rollout: {key: a/b, timeout_ms: 7}\n");
    assert_int_equal(f->s.n_steps, 22);
    assert_int_equal(f->s.steps[20].kind, SCENARIO_STEP_WAIT_ROLLOUT);
    assert_string_equal(f->s.steps[20].u.wait_rollout.key, "drill/app");
    assert_int_equal(f->s.steps[20].u.wait_rollout.timeout_ms,
                     SCENARIO_DEFAULT_WAIT_ROLLOUT_MS);
    assert_int_equal(f->s.steps[21].u.wait_rollout.timeout_ms, 7);
    assert_string_equal(scenario_step_name(SCENARIO_STEP_WAIT_ROLLOUT),
                        "wait_rollout");
    for (i = 0; i < 15; i++) {
        assert_int_equal(f->s.steps[i].kind, (int)i + 1);
    }
    st = f->s.steps;
    assert_int_equal(st[0].u.wait.ms, 0);
    assert_int_equal(st[1].u.wait_agents.connected.value, 50);
    assert_true(st[1].u.wait_agents.connected.percent);
    assert_int_equal(st[1].u.wait_agents.timeout_ms,
                     SCENARIO_DEFAULT_WAIT_AGENTS_MS);
    assert_int_equal(st[2].u.wait_leader.timeout_ms,
                     SCENARIO_DEFAULT_WAIT_LEADER_MS);
    assert_null(st[3].u.apply_policy.file);
    assert_true(st[4].u.issue_commands.rate == 2.5);
    assert_int_equal(st[4].u.issue_commands.duration_ms, 100);
    assert_int_equal(st[4].u.issue_commands.action, PROTO_ACTION_DIAGNOSTICS);
    assert_string_equal(st[4].u.issue_commands.service, "web");
    assert_int_equal(st[4].u.issue_commands.ttl_ms, 500);
    assert_false(st[4].u.issue_commands.background);
    assert_int_equal(st[5].u.kill.node.kind, SCENARIO_NODE_LEADER);
    assert_int_equal(st[6].u.kill.node.kind, SCENARIO_NODE_FOLLOWER);
    assert_int_equal(st[7].u.pause.node.kind, SCENARIO_NODE_LEADER);
    assert_int_equal(st[7].u.pause.ms, 300);
    assert_int_equal(st[8].u.pause.node.kind, SCENARIO_NODE_ID);
    assert_int_equal(st[8].u.pause.node.id, 4);
    assert_int_equal(st[8].u.pause.ms, 200);
    assert_int_equal(st[9].u.isolate.node.kind, SCENARIO_NODE_LEADER);
    assert_int_equal(st[9].u.isolate.ms, 1000);
    assert_int_equal(st[10].u.restart.node.id, 2);
    assert_false(st[10].u.restart.graceful);
    assert_int_equal(st[10].u.restart.down_ms, 50);
    assert_int_equal(st[11].u.transfer.to.id, 5);
    assert_int_equal(st[11].u.transfer.timeout_ms, 700);
    assert_false(st[12].u.rolling.graceful);
    assert_int_equal(st[12].u.rolling.timeout_ms, 9000);
    assert_int_equal(st[13].u.crash.agents.value, 10);
    assert_string_equal(st[13].u.crash.service, "svc-1");
    assert_int_equal(st[15].u.transfer.to.kind, SCENARIO_NODE_ANY);
    assert_int_equal(st[15].u.transfer.timeout_ms,
                     SCENARIO_DEFAULT_TRANSFER_MS);
    assert_true(st[16].u.restart.graceful);
    assert_int_equal(st[16].u.restart.down_ms, 0);
    assert_true(st[17].u.rolling.graceful);
    assert_int_equal(st[17].u.rolling.timeout_ms, SCENARIO_DEFAULT_ROLLING_MS);
    assert_null(st[18].u.crash.service);
    assert_int_equal(st[19].u.issue_commands.action, PROTO_ACTION_RESTART);
    assert_int_equal(st[19].u.issue_commands.ttl_ms,
                     SCENARIO_DEFAULT_COMMAND_TTL_MS);
    assert_null(st[19].u.issue_commands.service);
    for (i = 1; i < SCENARIO_STEP_NR; i++) {
        assert_string_not_equal(scenario_step_name((enum scenario_step_kind)i),
                                "unknown");
    }
    assert_string_equal(scenario_step_name(SCENARIO_STEP_NR), "unknown");
}

static void every_assertion(void **state)
{
    struct fixture *f = *state;

    parse_ok(f, "name: a\nsteps: [{wait: {ms: 1}}]\n"
                "assertions:\n"
                "  - leader_within_ms: 1\n"
                "  - commands_exactly_once: true\n"
                "  - no_late_execution: yes\n"
                "  - drift_detected_within_ms: 2000\n"
                "  - nominal_within_ms: 86400000\n");
    assert_int_equal(f->s.n_assertions, 5);
    assert_int_equal(f->s.assertions[0].ms, 1);
    assert_int_equal(f->s.assertions[1].kind,
                     SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE);
    assert_int_equal(f->s.assertions[2].kind,
                     SCENARIO_ASSERT_NO_LATE_EXECUTION);
    assert_int_equal(f->s.assertions[3].kind,
                     SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS);
    assert_int_equal(f->s.assertions[3].ms, 2000);
    assert_int_equal(f->s.assertions[4].ms, 86400000);
    assert_string_equal(scenario_assertion_name(SCENARIO_ASSERT_NR), "unknown");
    assert_string_equal(
        scenario_assertion_name(SCENARIO_ASSERT_NOMINAL_WITHIN_MS),
        "nominal_within_ms");

    parse_ok(f, "name: a\nsteps: [{wait: {ms: 1}}]\n"
                "assertions: [{commands_exactly_once: false},\n"
                "             {no_late_execution: false}]\n");
    assert_int_equal(f->s.n_assertions, 0);
}

static void defaults(void **state)
{
    struct fixture *f = *state;

    parse_ok(f, "name: d\nsteps: [{reconnect_all: {}}]\n");
    assert_string_equal(f->s.description, "");
    assert_int_equal(f->s.settle_ms, SCENARIO_DEFAULT_SETTLE_MS);
    assert_int_equal(f->s.cluster.nodes, SCENARIO_DEFAULT_NODES);
    assert_int_equal(f->s.cluster.heartbeat_timeout_ms,
                     SCENARIO_DEFAULT_HEARTBEAT_TIMEOUT_MS);
    assert_int_equal(f->s.cluster.lease_ttl_ms, SCENARIO_DEFAULT_LEASE_TTL_MS);
    assert_int_equal(f->s.cluster.agent_heartbeat_ms,
                     SCENARIO_DEFAULT_AGENT_HEARTBEAT_MS);
    assert_int_equal(f->s.cluster.reconcile_interval_ms,
                     SCENARIO_DEFAULT_RECONCILE_INTERVAL_MS);
    assert_int_equal(f->s.agents.count, SCENARIO_DEFAULT_AGENTS);
    assert_int_equal(f->s.agents.services, SCENARIO_DEFAULT_SERVICES);
    assert_int_equal(f->s.agents.n_behaviours, 0);
    assert_int_equal(f->s.n_assertions, 0);

    parse_ok(f, "name: d\nsettle_ms: 0\n"
                "cluster: {election_timeout_ms: 200, heartbeat_timeout_ms: "
                "100, lease_ttl_ms: 600, agent_heartbeat_ms: 300,\n"
                "          reconcile_interval_ms: 100}\n"
                "agents: {count: 7, services: 0, ramp_per_s: 12.5,\n"
                "         behaviours: [{behaviour: healthy, fraction: 0.5},\n"
                "   {behaviour: crash_loop, fraction: 0.2, crash_after_ms: "
                "100, restart_ms: 2},\n"
                "   {behaviour: crash_after, fraction: 0.1, crash_after_ms: "
                "300},\n"
                "   {behaviour: slow_health, fraction: 0.1, health_delay_ms: "
                "40},\n"
                "   {behaviour: hung_stop, fraction: 0.1}]}\n"
                "steps: [{wait: {ms: 1}}]\n");
    assert_int_equal(f->s.settle_ms, 0);
    assert_int_equal(f->s.cluster.election_timeout_ms, 200);
    assert_int_equal(f->s.cluster.lease_ttl_ms, 600);
    assert_int_equal(f->s.cluster.agent_heartbeat_ms, 300);
    assert_int_equal(f->s.cluster.reconcile_interval_ms, 100);
    assert_int_equal(f->s.agents.count, 7);
    assert_int_equal(f->s.agents.services, 0);
    assert_true(f->s.agents.ramp_per_s == 12.5);
    assert_int_equal(f->s.agents.n_behaviours, 5);
    assert_int_equal(f->s.agents.behaviours[1].crash_after_ms, 100);
    assert_int_equal(f->s.agents.behaviours[1].restart_ms, 2);
    assert_int_equal(f->s.agents.behaviours[2].kind,
                     SCENARIO_BEHAVIOUR_CRASH_AFTER);
    assert_int_equal(f->s.agents.behaviours[2].crash_after_ms, 300);
    assert_int_equal(f->s.agents.behaviours[3].kind,
                     SCENARIO_BEHAVIOUR_SLOW_HEALTH);
    assert_int_equal(f->s.agents.behaviours[3].health_delay_ms, 40);
    assert_int_equal(f->s.agents.behaviours[4].kind,
                     SCENARIO_BEHAVIOUR_HUNG_STOP);
    assert_int_equal(f->s.agents.behaviours[4].stop_hang_ms,
                     SCENARIO_DEFAULT_STOP_HANG_MS);
    assert_string_equal(scenario_behaviour_name(SCENARIO_BEHAVIOUR_HUNG_STOP),
                        "hung_stop");
    assert_string_equal(scenario_behaviour_name(SCENARIO_BEHAVIOUR_HEALTHY),
                        "healthy");
    assert_string_equal(scenario_behaviour_name(SCENARIO_BEHAVIOUR_NR),
                        "unknown");
}

static void node_names(void **state)
{
    struct fixture *f = *state;

    parse_ok(f, "name: n\nsteps:\n"
                "  - kill_node: {node: 3}\n"
                "  - transfer_leadership: {to: follower}\n");
    assert_int_equal(f->s.steps[0].u.kill.node.id, 3);
    assert_int_equal(f->s.steps[1].u.transfer.to.kind, SCENARIO_NODE_FOLLOWER);
    assert_int_equal(scenario_check_nodes(&f->s, 3, f->errmsg), 0);
    assert_int_equal(scenario_check_nodes(&f->s, 5, f->errmsg), 0);
    assert_int_equal(scenario_check_nodes(&f->s, 2, f->errmsg), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "t.yaml:3: steps[0].kill_node.node: must "
                                   "be leader, follower or a node id 1..2");
}

static void counts(void **state)
{
    struct scenario_count all = {.all = true};
    struct scenario_count ten = {.value = 10};
    struct scenario_count pct = {.percent = true, .value = 1};
    struct scenario_count half = {.percent = true, .value = 50};

    (void)state;
    assert_int_equal(scenario_count_of(&all, 200), 200);
    assert_int_equal(scenario_count_of(&ten, 200), 10);
    assert_int_equal(scenario_count_of(&ten, 4), 4);
    assert_int_equal(scenario_count_of(&pct, 200), 2);
    assert_int_equal(scenario_count_of(&pct, 10), 1);
    assert_int_equal(scenario_count_of(&half, 5), 3);
    assert_int_equal(scenario_count_of(&half, 0), 0);
}

static void inline_policy(void **state)
{
    struct fixture *f = *state;

    parse_ok(f, "name: p\nsteps:\n"
                "  - apply_policy:\n"
                "      key: drill/app\n"
                "      inline:\n"
                "        placement: {selector: {}}\n"
                "        mode: auto\n"
                "        metadata: {n: 3, neg: -2, r: 1.5, t: true, z: ~,\n"
                "                   q: \"7\", s: 'yes', l: [1, x]}\n"
                "        services: [{name: web, command: [/bin/web]}]\n");
    assert_string_equal(
        f->s.steps[0].u.apply_policy.inline_json,
        "{\"placement\":{\"selector\":{}},\"mode\":\"auto\",\"metadata\":{"
        "\"n\":3,\"neg\":-2,\"r\":1.5,\"t\":true,\"z\":null,\"q\":\"7\","
        "\"s\":\"yes\",\"l\":[1,\"x\"]},\"services\":[{\"name\":\"web\","
        "\"command\":[\"/bin/web\"]}]}");
}

static void policy_file(void **state)
{
    struct fixture *f = *state;
    char dir[TEST_TMPDIR_SIZE];
    char path[TEST_TMPDIR_SIZE + 32];
    char policy[TEST_TMPDIR_SIZE + 32];
    FILE *fp;
    int rv;

    test_tmpdir_make(dir);
    snprintf(path, sizeof path, "%s/s.yaml", dir);
    snprintf(policy, sizeof policy, "%s/app.yaml", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("name: f\nsteps: [{apply_policy: {key: k, file: app.yaml}}]\n", fp);
    fclose(fp);
    rv = scenario_load(path, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_ECONFIG);
    assert_non_null(strstr(f->errmsg, ":2: steps[0].apply_policy.file: cannot "
                                      "read "));
    assert_non_null(strstr(f->errmsg, "app.yaml: No such file or directory"));
    fp = fopen(policy, "w");
    assert_non_null(fp);
    fputs("services: []\n", fp);
    fclose(fp);
    rv = scenario_load(path, &f->s, f->errmsg);
    if (rv != 0) {
        fail_msg("%s", f->errmsg);
    }
    assert_string_equal(f->s.steps[0].u.apply_policy.file, policy);
    assert_null(f->s.steps[0].u.apply_policy.inline_json);
    test_tmpdir_remove(dir);
}

static void load_missing_file(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(scenario_load("/nonexistent/x.yaml", &f->s, f->errmsg),
                     REMS_ECONFIG);
    assert_string_equal(f->errmsg,
                        "/nonexistent/x.yaml: No such file or directory");
}

/* One case per class of error: the text and the message. The text is
 * taken as it is after a '!'; otherwise it follows "name: e\n" and, when it
 * has no steps, is followed by one step. */
static const struct {
    const char *text;
    const char *msg;
} error_cases[] = {
    /* The file as a whole. */
    {"!", "t.yaml: empty file, expected a scenario"},
    {"!- a\n",
     "t.yaml:1: the file must be a mapping with name, cluster, agents, "
     "steps and assertions"},
    {"!name: [\n", "t.yaml:2: invalid YAML: did not find expected node "
                   "content (while parsing a flow node on line 2)"},
    {"!name: a\nsteps: [{wait: {ms: 1}}]\n---\nname: b\n",
     "t.yaml:4: only one YAML document is allowed per file"},
    {"!name: a\xff\n", "t.yaml: invalid YAML: invalid leading UTF-8 octet at "
                       "byte 7"},
    /* Keys. */
    {"!steps: [{wait: {ms: 1}}]\n", "t.yaml:1: name: required"},
    {"steps: [{wait: {ms: 1}}]\nnam: x\n", "t.yaml:3: nam: unknown key"},
    {"name: f\nsteps: [{wait: {ms: 1}}]\n",
     "t.yaml:2: name: duplicate key (first on line 1)"},
    {"[a]: 1\n", "t.yaml:2: keys must be names"},
    {"!name: e\n", "t.yaml:1: steps: required"},
    {"cluster: {nodes: 3, node: 1}\n", "t.yaml:2: cluster.node: unknown key"},
    {"cluster: [3]\n",
     "t.yaml:2: cluster: must be a mapping of the cluster's settings"},
    /* Top-level values. */
    {"!name: 'a b'\n", "t.yaml:1: name: must be 1 to 64 of A-Z a-z 0-9 . _ - "
                       "(such as leader-kill)"},
    {"description: [x]\n",
     "t.yaml:2: description: must be a string of at most 4096 bytes"},
    {"settle_ms: -1\n",
     "t.yaml:2: settle_ms: must be an integer between 0 and 86400000"},
    /* Cluster. */
    {"cluster: {nodes: 4}\n", "t.yaml:2: cluster.nodes: must be 3 or 5"},
    {"cluster: {nodes: '3'}\n", "t.yaml:2: cluster.nodes: must be 3 or 5"},
    {"cluster: {election_timeout_ms: 10}\n",
     "t.yaml:2: cluster.election_timeout_ms: must be an integer between 50 "
     "and 60000"},
    {"cluster: {election_timeout_ms: \"500\"}\n",
     "t.yaml:2: cluster.election_timeout_ms: must be an integer between 50 "
     "and 60000"},
    {"cluster: {election_timeout_ms: 150}\n",
     "t.yaml:2: cluster.election_timeout_ms: must be at least twice "
     "heartbeat_timeout_ms (150 < 2 * 100)"},
    {"cluster: {lease_ttl_ms: 1000}\n",
     "t.yaml:2: cluster.lease_ttl_ms: must be at least twice "
     "agent_heartbeat_ms (1000 < 2 * 1000)"},
    /* Agents. */
    {"agents: {count: 0}\n",
     "t.yaml:2: agents.count: must be an integer between 1 and 1000000"},
    {"agents: {services: 65}\n",
     "t.yaml:2: agents.services: must be an integer between 0 and 64"},
    {"agents: {ramp_per_s: -3}\n",
     "t.yaml:2: agents.ramp_per_s: must be a number of at least 0 and at "
     "most 1e+06"},
    {"agents: {behaviours: {behaviour: healthy}}\n",
     "t.yaml:2: agents.behaviours: must be a list of mappings with behaviour "
     "and fraction"},
    {"agents: {behaviours: [{fraction: 0.1}]}\n",
     "t.yaml:2: agents.behaviours[0].behaviour: required"},
    {"agents: {behaviours: [{behaviour: sick, fraction: 1}]}\n",
     "t.yaml:2: agents.behaviours[0].behaviour: must be healthy, "
     "crash_after, crash_loop, slow_health or hung_stop"},
    {"agents: {behaviours: [{behaviour: healthy}]}\n",
     "t.yaml:2: agents.behaviours[0].fraction: required"},
    {"agents: {behaviours: [{behaviour: healthy, fraction: 0}]}\n",
     "t.yaml:2: agents.behaviours[0].fraction: must be a number above 0 and "
     "at most 1"},
    {"agents: {behaviours: [{behaviour: healthy, fraction: 0.5, "
     "restart_ms: 5}]}\n",
     "t.yaml:2: agents.behaviours[0].restart_ms: healthy does not take "
     "restart_ms"},
    {"agents: {behaviours: [{behaviour: crash_after, fraction: 0.5, "
     "restart_ms: 5}]}\n",
     "t.yaml:2: agents.behaviours[0].restart_ms: crash_after does not take "
     "restart_ms"},
    {"agents: {behaviours: [{behaviour: slow_health, fraction: 0.5, "
     "stop_hang_ms: 5}]}\n",
     "t.yaml:2: agents.behaviours[0].stop_hang_ms: slow_health does not "
     "take stop_hang_ms"},
    {"agents: {behaviours: [{behaviour: hung_stop, fraction: 0.5, "
     "stop_hang_ms: 0}]}\n",
     "t.yaml:2: agents.behaviours[0].stop_hang_ms: must be an integer "
     "between 1 and 86400000"},
    {"agents: {behaviours: [{behaviour: crash_loop, fraction: 0.5, "
     "crash_after_ms: 5}]}\n",
     "t.yaml:2: agents.behaviours[0].crash_after_ms: must be an integer "
     "between 100 and 86400000"},
    {"agents: {behaviours: [{behaviour: healthy, fraction: 0.7},\n"
     "  {behaviour: crash_loop, fraction: 0.6}]}\n",
     "t.yaml:2: agents.behaviours: the fractions add up to 1.3, more than 1"},
    {"agents: {behaviours: [a]}\n",
     "t.yaml:2: agents.behaviours[0]: must be a mapping with behaviour and "
     "fraction (and the behaviour's own keys)"},
    /* Steps as a list. */
    {"steps: []\n", "t.yaml:2: steps: must be a non-empty list of steps"},
    {"steps: [wait]\n", "t.yaml:2: steps[0]: must be a mapping with one key, "
                        "the step's kind (such as wait: {ms: 1000})"},
    {"steps: [{wait: {ms: 1}, kill_leader: {}}]\n",
     "t.yaml:2: steps[0]: must be a mapping with one key, the step's kind "
     "(such as wait: {ms: 1000})"},
    {"steps:\n  - wait: {ms: 1}\n  - kil_leader: {}\n",
     "t.yaml:4: steps[1].kil_leader: unknown step (the steps are listed in "
     "docs/drills.md)"},
    {"steps: [{wait_rollout: {timeout_ms: 5}}]\n",
     "t.yaml:2: steps[0].wait_rollout.key: required"},
    {"steps: [{wait_rollout: {key: /a}}]\n",
     "t.yaml:2: steps[0].wait_rollout.key: must be a policy key (1 to 256 of "
     "A-Z a-z 0-9 . _ / -, no empty, . or .. segment)"},
    {"steps: [{wait: 5}]\n",
     "t.yaml:2: steps[0].wait: must be a mapping of the step's parameters"},
    {"steps: [{kill_leader: {node: 1}}]\n",
     "t.yaml:2: steps[0].kill_leader.node: unknown key"},
    {"steps: [{kill_leader: 1}]\n",
     "t.yaml:2: steps[0].kill_leader: must be empty ({})"},
    {"steps: [{wait: {ms: 1, ms: 2}}]\n",
     "t.yaml:2: steps[0].wait.ms: duplicate key (first on line 2)"},
    /* Each step's parameters. */
    {"steps: [{wait: {}}]\n", "t.yaml:2: steps[0].wait.ms: required"},
    {"steps: [{wait: {ms: 1.5}}]\n",
     "t.yaml:2: steps[0].wait.ms: must be an integer between 0 and 86400000"},
    {"steps: [{wait_agents: {connected: none}}]\n",
     "t.yaml:2: steps[0].wait_agents.connected: must be all, a count of "
     "agents from 1 or a percent such as \"10%\""},
    {"steps: [{wait_agents: {connected: 101%}}]\n",
     "t.yaml:2: steps[0].wait_agents.connected: must be all, a count of "
     "agents from 1 or a percent such as \"10%\""},
    {"steps: [{wait_agents: {connected: 0}}]\n",
     "t.yaml:2: steps[0].wait_agents.connected: must be all, a count of "
     "agents from 1 or a percent such as \"10%\""},
    {"steps: [{wait_agents: {timeout_ms: 0}}]\n",
     "t.yaml:2: steps[0].wait_agents.timeout_ms: must be an integer between "
     "1 and 86400000"},
    {"steps: [{wait_leader: {timeout_ms: x}}]\n",
     "t.yaml:2: steps[0].wait_leader.timeout_ms: must be an integer between "
     "1 and 86400000"},
    {"steps: [{apply_policy: {file: a}}]\n",
     "t.yaml:2: steps[0].apply_policy.key: required"},
    {"steps: [{apply_policy: {key: /a, inline: {}}}]\n",
     "t.yaml:2: steps[0].apply_policy.key: must be a policy key (1 to 256 of "
     "A-Z a-z 0-9 . _ / -, no empty, . or .. segment)"},
    {"steps: [{apply_policy: {key: a/../b, inline: {}}}]\n",
     "t.yaml:2: steps[0].apply_policy.key: must be a policy key (1 to 256 of "
     "A-Z a-z 0-9 . _ / -, no empty, . or .. segment)"},
    {"steps: [{apply_policy: {key: a}}]\n",
     "t.yaml:2: steps[0].apply_policy: needs exactly one of file and inline"},
    {"steps: [{apply_policy: {key: a, file: x, inline: {}}}]\n",
     "t.yaml:2: steps[0].apply_policy: needs exactly one of file and inline"},
    {"steps: [{apply_policy: {key: a, inline: [1]}}]\n",
     "t.yaml:2: steps[0].apply_policy.inline: must be a mapping (the policy "
     "document)"},
    {"steps: [{apply_policy: {key: a, inline: {[x]: 1}}}]\n",
     "t.yaml:2: steps[0].apply_policy: keys must be names"},
    {"steps: [{issue_commands: {duration_ms: 5}}]\n",
     "t.yaml:2: steps[0].issue_commands.rate: required"},
    {"steps: [{issue_commands: {rate: 5}}]\n",
     "t.yaml:2: steps[0].issue_commands.duration_ms: required"},
    {"steps: [{issue_commands: {rate: 0, duration_ms: 5}}]\n",
     "t.yaml:2: steps[0].issue_commands.rate: must be a number above 0 and at "
     "most 1000"},
    {"steps: [{issue_commands: {rate: 1e3, duration_ms: 5}}]\n",
     "t.yaml:2: steps[0].issue_commands.rate: must be a number above 0 and at "
     "most 1000"},
    {"steps: [{issue_commands: {rate: 1, duration_ms: 5, action: "
     "push_manifest}}]\n",
     "t.yaml:2: steps[0].issue_commands.action: must be start, stop, "
     "restart, pause, resume, quarantine or diagnostics"},
    {"steps: [{issue_commands: {rate: 1, duration_ms: 5, service: 'a b'}}]\n",
     "t.yaml:2: steps[0].issue_commands.service: must be a service name (1 "
     "to 64 of A-Z a-z 0-9 . _ : @ -)"},
    {"steps: [{issue_commands: {rate: 1, duration_ms: 5, ttl_ms: 0}}]\n",
     "t.yaml:2: steps[0].issue_commands.ttl_ms: must be an integer between 1 "
     "and 86400000"},
    {"steps: [{issue_commands: {rate: 1, duration_ms: 5, background: 1}}]\n",
     "t.yaml:2: steps[0].issue_commands.background: must be true or false"},
    {"agents: {services: 0}\n"
     "steps: [{issue_commands: {rate: 1, duration_ms: 5}}]\n",
     "t.yaml:3: steps[0].issue_commands.action: restart needs a service, and "
     "the agents have none (agents.services is 0)"},
    {"steps: [{kill_node: {}}]\n",
     "t.yaml:2: steps[0].kill_node.node: required"},
    {"steps:\n  - wait: {ms: 1}\n  - wait: {ms: 1}\n  - wait: {ms: 1}\n"
     "  - kill_node: {node: lead}\n",
     "t.yaml:6: steps[3].kill_node.node: must be leader, follower or a node "
     "id 1..3"},
    {"steps: [{kill_node: {node: 4}}]\n",
     "t.yaml:2: steps[0].kill_node.node: must be leader, follower or a node "
     "id 1..3"},
    {"steps: [{kill_node: {node: 0}}]\n",
     "t.yaml:2: steps[0].kill_node.node: must be leader, follower or a node "
     "id 1..3"},
    {"steps: [{pause_leader: {}}]\n",
     "t.yaml:2: steps[0].pause_leader.ms: required"},
    {"steps: [{pause_leader: {ms: 0}}]\n",
     "t.yaml:2: steps[0].pause_leader.ms: must be an integer between 1 and "
     "86400000"},
    {"steps: [{pause_node: {ms: 5}}]\n",
     "t.yaml:2: steps[0].pause_node.node: required"},
    {"steps: [{pause_node: {node: 1}}]\n",
     "t.yaml:2: steps[0].pause_node.ms: required"},
    {"steps: [{pause_node: {node: x, ms: 1}}]\n",
     "t.yaml:2: steps[0].pause_node.node: must be leader, follower or a node "
     "id 1..3"},
    {"steps: [{isolate: {node: leader}}]\n",
     "t.yaml:2: steps[0].isolate.ms: required"},
    {"steps: [{isolate: {node: 9, ms: 1}}]\n",
     "t.yaml:2: steps[0].isolate.node: must be leader, follower or a node id "
     "1..3"},
    {"steps: [{isolate: {node: 1, ms: 0}}]\n",
     "t.yaml:2: steps[0].isolate.ms: must be an integer between 1 and "
     "86400000"},
    {"steps: [{restart_node: {graceful: true}}]\n",
     "t.yaml:2: steps[0].restart_node.node: required"},
    {"steps: [{restart_node: {node: 1, graceful: maybe}}]\n",
     "t.yaml:2: steps[0].restart_node.graceful: must be true or false"},
    {"steps: [{restart_node: {node: 1, down_ms: x}}]\n",
     "t.yaml:2: steps[0].restart_node.down_ms: must be an integer between 0 "
     "and 86400000"},
    {"steps: [{transfer_leadership: {to: leader}}]\n",
     "t.yaml:2: steps[0].transfer_leadership.to: must be follower or a node "
     "id 1..3 (not the leader itself)"},
    {"steps: [{transfer_leadership: {timeout_ms: 0}}]\n",
     "t.yaml:2: steps[0].transfer_leadership.timeout_ms: must be an integer "
     "between 1 and 86400000"},
    {"steps: [{rolling_restart: {graceful: 2}}]\n",
     "t.yaml:2: steps[0].rolling_restart.graceful: must be true or false"},
    {"steps: [{rolling_restart: {timeout_ms: 0}}]\n",
     "t.yaml:2: steps[0].rolling_restart.timeout_ms: must be an integer "
     "between 1 and 86400000"},
    {"steps: [{crash_services: {}}]\n",
     "t.yaml:2: steps[0].crash_services.agents: required"},
    {"steps: [{crash_services: {agents: 1, service: ''}}]\n",
     "t.yaml:2: steps[0].crash_services.service: must be a service name (1 "
     "to 64 of A-Z a-z 0-9 . _ : @ -)"},
    {"agents: {services: 0}\nsteps: [{crash_services: {agents: 1}}]\n",
     "t.yaml:3: steps[0].crash_services: the agents have no services to "
     "crash (agents.services is 0)"},
    {"steps: [{reconnect_all: {all: true}}]\n",
     "t.yaml:2: steps[0].reconnect_all.all: unknown key"},
    /* Assertions. */
    {"steps: [{wait: {ms: 1}}]\nassertions: {leader_within_ms: 1}\n",
     "t.yaml:3: assertions: must be a list of assertions"},
    {"steps: [{wait: {ms: 1}}]\nassertions: [leader_within_ms]\n",
     "t.yaml:3: assertions[0]: must be a mapping with one key, the assertion "
     "(such as leader_within_ms: 5000)"},
    {"steps: [{wait: {ms: 1}}]\nassertions: [{leader_within: 1}]\n",
     "t.yaml:3: assertions[0].leader_within: unknown assertion "
     "(leader_within_ms, commands_exactly_once, no_late_execution, "
     "drift_detected_within_ms, nominal_within_ms)"},
    {"steps: [{wait: {ms: 1}}]\nassertions: [{leader_within_ms: 0}]\n",
     "t.yaml:3: assertions[0].leader_within_ms: must be an integer between 1 "
     "and 86400000"},
    {"steps: [{wait: {ms: 1}}]\nassertions:\n  - nominal_within_ms: 5\n"
     "  - nominal_within_ms: 6\n",
     "t.yaml:5: assertions[1].nominal_within_ms: given twice (first on line "
     "4)"},
    {"steps: [{wait: {ms: 1}}]\nassertions: [{no_late_execution: 1}]\n",
     "t.yaml:3: assertions[0].no_late_execution: must be true or false"},
};

static void errors(void **state)
{
    struct fixture *f = *state;
    char text[1024];
    size_t i;

    for (i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const char *t = error_cases[i].text;
        if (t[0] == '!') {
            snprintf(text, sizeof text, "%s", t + 1);
        } else {
            snprintf(text, sizeof text, "name: e\n%s", t);
        }
        if (t[0] != '!' && strstr(text, "steps") == NULL) {
            strncat(text, "steps: [{wait: {ms: 1}}]\n",
                    sizeof text - strlen(text) - 1);
        }
        if (parse(f, text) != REMS_ECONFIG) {
            fail_msg("case %zu (%s): accepted", i, t);
        }
        if (strcmp(f->errmsg, error_cases[i].msg) != 0) {
            fail_msg("case %zu:\n  got  %s\n  want %s", i, f->errmsg,
                     error_cases[i].msg);
        }
        assert_null(f->s.name);
        assert_int_equal(f->heap.live, 0);
    }
}

static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    long n;
    int rv;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = parse(f, ADR_EXAMPLE);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->s.name);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(full_scenario, setup, teardown),
        cmocka_unit_test_setup_teardown(every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(every_assertion, setup, teardown),
        cmocka_unit_test_setup_teardown(defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(node_names, setup, teardown),
        cmocka_unit_test(counts),
        cmocka_unit_test_setup_teardown(inline_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_file, setup, teardown),
        cmocka_unit_test_setup_teardown(load_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(errors, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests_name("sim_scenario", tests, NULL, NULL);
}
