/* tests/unit/sim/test_report.c: rems-sim's report (simulator/report.h) from
 * a drill result built by hand: the table, the JSON (parsed back), the SVG
 * (well-formed enough, one marker per fault, text escaped, written through
 * a temporary file), an empty result, a path that cannot be written; and
 * drill_percentile(). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "simulator/drill.h"
#include "simulator/report.h"
#include "simulator/scenario.h"
#include "tests/lib/tmpdir.h"

#define SCENARIO_TEXT                                                          \
    "name: demo\n"                                                             \
    "description: a hand-made result\n"                                        \
    "steps: [{kill_leader: {}}, {wait: {ms: 1}}]\n"                            \
    "assertions:\n"                                                            \
    "  - leader_within_ms: 5000\n"                                             \
    "  - commands_exactly_once: true\n"

struct fixture {
    struct scenario s;
    struct drill_result r;
    struct drill_fault faults[2];
    struct drill_sample samples[3];
    struct drill_step_result steps[2];
    char dir[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[REMS_ERRMSG_SIZE];
    size_t i;

    assert_non_null(f);
    assert_int_equal(scenario_parse("demo.yaml", SCENARIO_TEXT,
                                    strlen(SCENARIO_TEXT), &f->s, err),
                     0);
    test_tmpdir_make(f->dir);
    snprintf(f->r.name, sizeof f->r.name, "demo");
    f->r.seed = 42;
    f->r.n_nodes = 3;
    f->r.node_ids[0] = 1;
    f->r.node_ids[1] = 2;
    f->r.node_ids[2] = 3;
    f->r.n_agents = 200;
    f->r.duration_ms = 30000;
    /* The leader killed: every figure seen. */
    snprintf(f->faults[0].kind, sizeof f->faults[0].kind, "kill");
    f->faults[0].node_id = 2;
    f->faults[0].removed_leader = true;
    f->faults[0].at_ms = 5000;
    f->faults[0].end_ms = 5000;
    f->faults[0].old_leader = 2;
    f->faults[0].old_term = 2;
    f->faults[0].detection_ms = 1500;
    f->faults[0].election_ms = 1900;
    f->faults[0].first_commit_ms = 1950;
    f->faults[0].commands_resumed_ms = 2300;
    f->faults[0].new_leader = 3;
    f->faults[0].new_term = 3;
    f->faults[0].agents_dropped = 200;
    f->faults[0].agents_reconnected = 200;
    f->faults[0].reconnect_p50_ms = 2400;
    f->faults[0].reconnect_p99_ms = 4100;
    f->faults[0].reconnect_max_ms = 4200;
    /* A follower killed: nothing to measure but reconnects, none. */
    snprintf(f->faults[1].kind, sizeof f->faults[1].kind, "kill");
    f->faults[1].node_id = 1;
    f->faults[1].at_ms = 20000;
    f->faults[1].end_ms = 20000;
    f->faults[1].detection_ms = -1;
    f->faults[1].election_ms = -1;
    f->faults[1].first_commit_ms = -1;
    f->faults[1].commands_resumed_ms = -1;
    f->faults[1].reconnect_p50_ms = -1;
    f->faults[1].reconnect_p99_ms = -1;
    f->faults[1].reconnect_max_ms = -1;
    f->r.faults = f->faults;
    f->r.n_faults = 2;
    for (i = 0; i < 3; i++) {
        f->samples[i].t_ms = i * 10000;
        f->samples[i].nodes[0].state = 1;
        f->samples[i].nodes[0].role = 1;
        f->samples[i].nodes[0].term = 2;
        f->samples[i].nodes[1].state = i == 0 ? 1 : 0;
        f->samples[i].nodes[1].role = i == 0 ? 3 : 0;
        f->samples[i].nodes[1].term = 2;
        f->samples[i].nodes[2].state = 1;
        f->samples[i].nodes[2].role = i == 0 ? 1 : 3;
        f->samples[i].nodes[2].term = i == 0 ? 2 : 3;
        f->samples[i].agents_connected = i == 1 ? 20 : 200;
        f->samples[i].commands_sent = i * 100;
        f->samples[i].commands_executed = i * 90;
    }
    f->r.samples = f->samples;
    f->r.n_samples = 3;
    f->steps[0].kind = SCENARIO_STEP_KILL_LEADER;
    f->steps[0].start_ms = 4800;
    f->steps[0].end_ms = 5000;
    f->steps[1].kind = SCENARIO_STEP_WAIT;
    f->steps[1].start_ms = 5000;
    f->steps[1].end_ms = 5001;
    f->r.steps = f->steps;
    f->r.n_steps = 2;
    f->r.commands.sent = 300;
    f->r.commands.issued = 280;
    f->r.commands.refused = 20;
    f->r.commands.acked = 279;
    f->r.commands.expired = 1;
    f->r.commands.executed = 280;
    f->r.commands.executed_expired = 1;
    f->r.drift.crashes = 4;
    f->r.drift.detected = 3;
    f->r.drift.p50_ms = 300;
    f->r.drift.p99_ms = 480;
    f->r.drift.max_ms = 480;
    snprintf(f->r.drift.first_missed, sizeof f->r.drift.first_missed,
             "sim-7 svc-0 at 12000 ms");
    f->r.last_fault_ms = 20000;
    f->r.nominal_ms = 4000;
    f->r.verdicts[0].kind = SCENARIO_ASSERT_LEADER_WITHIN_MS;
    f->r.verdicts[0].ms = 5000;
    f->r.verdicts[0].passed = true;
    snprintf(f->r.verdicts[0].detail, sizeof f->r.verdicts[0].detail,
             "1 failover(s), slowest new leader after 1900 ms");
    f->r.verdicts[1].kind = SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE;
    f->r.verdicts[1].passed = false;
    snprintf(f->r.verdicts[1].detail, sizeof f->r.verdicts[1].detail,
             "1 lost");
    f->r.n_verdicts = 2;
    f->r.passed = false;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    scenario_close(&f->s);
    test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* What report_table() prints, as a malloc'd string. */
static char *table_text(const struct fixture *f, const struct drill_result *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    assert_int_equal(report_table(fp, r, &f->s), 0);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void table(void **state)
{
    struct fixture *f = *state;
    char *t = table_text(f, &f->r);

    assert_non_null(strstr(t, "rems-sim drill demo: a hand-made result"));
    assert_non_null(strstr(t, "rems-sim --seed 42 demo.yaml"));
    assert_non_null(strstr(t, "1500 ms"));
    assert_non_null(strstr(t, "1900 ms"));
    assert_non_null(strstr(t, "3 (term 3)"));
    assert_non_null(strstr(t, "4100 ms"));
    assert_non_null(strstr(t, "(follower)"));
    assert_non_null(strstr(t, "sent 300, issued 280, refused 20"));
    assert_non_null(strstr(t, "executed but its answer lost (expired) 1"));
    assert_non_null(strstr(t, "first crash not seen: sim-7 svc-0 at 12000 ms"));
    assert_non_null(strstr(t, "PASS leader_within_ms"));
    assert_non_null(strstr(t, "FAIL commands_exactly_once"));
    assert_non_null(strstr(t, "result: FAIL (1 of 2 assertions failed)"));
    free(t);

    f->r.verdicts[1].passed = true;
    f->r.passed = true;
    t = table_text(f, &f->r);
    assert_non_null(strstr(t, "result: PASS"));
    free(t);
}

static void json(void **state)
{
    struct fixture *f = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    json_t *j;
    json_t *faults;
    json_t *a;
    json_t *samples;

    assert_non_null(fp);
    assert_int_equal(report_json(fp, &f->r, &f->s), 0);
    assert_int_equal(fclose(fp), 0);
    j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "passed")));
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 42);
    faults = json_object_get(j, "faults");
    assert_int_equal(json_array_size(faults), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(faults, 0), "election_ms")),
                     1900);
    assert_true(json_is_null(
        json_object_get(json_array_get(faults, 1), "election_ms")));
    assert_true(json_is_null(
        json_object_get(json_array_get(faults, 1), "new_leader")));
    a = json_array_get(json_object_get(j, "assertions"), 1);
    assert_string_equal(json_string_value(json_object_get(a, "kind")),
                        "commands_exactly_once");
    assert_true(json_is_false(json_object_get(a, "passed")));
    assert_true(json_is_null(json_object_get(a, "threshold_ms")));
    a = json_array_get(json_object_get(j, "assertions"), 0);
    assert_int_equal(json_integer_value(json_object_get(a, "threshold_ms")),
                     5000);
    samples = json_object_get(j, "samples");
    assert_int_equal(json_array_size(samples), 3);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(samples, 0),
                                           "nodes"),
                           1),
            "role")),
        "leader");
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(samples, 1),
                                           "nodes"),
                           1),
            "state")),
        "down");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(j, "drift"), "first_missed")),
                        "sim-7 svc-0 at 12000 ms");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(j, "commands"), "executed_expired")),
                     1);
    json_decref(j);
    free(buf);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n > 0);
    rewind(fp);
    buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    const char *p = hay;

    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

static void svg(void **state)
{
    struct fixture *f = *state;
    char path[320];
    char tmp[330];
    char *t;

    snprintf(f->r.name, sizeof f->r.name, "a<&>b");
    snprintf(path, sizeof path, "%s/t.svg", f->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(report_svg(path, &f->r), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    t = slurp(path);
    assert_memory_equal(t, "<svg", 4);
    assert_non_null(strstr(t, "</svg>\n"));
    assert_string_equal(t + strlen(t) - 7, "</svg>\n");
    assert_int_equal(count(t, "class=\"fault\""), 2);
    assert_non_null(strstr(t, "a&lt;&amp;&gt;b"));
    assert_null(strstr(t, "a<&>b"));
    free(t);

    /* A directory that does not exist: nothing written, no .tmp left. */
    snprintf(path, sizeof path, "%s/missing/t.svg", f->dir);
    assert_int_equal(report_svg(path, &f->r), REMS_EIO);
    snprintf(tmp, sizeof tmp, "%s/missing", f->dir);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static void empty_result(void **state)
{
    struct fixture *f = *state;
    struct drill_result r;
    char path[320];
    char *t;
    FILE *fp;
    char *buf = NULL;
    size_t len = 0;
    json_t *j;

    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "empty");
    r.nominal_ms = -1;
    r.drift.p50_ms = r.drift.p99_ms = r.drift.max_ms = -1;
    r.passed = true;
    t = table_text(f, &r);
    assert_non_null(strstr(t, "(no fault)"));
    assert_non_null(strstr(t, "(no crash_services step)"));
    assert_non_null(strstr(t, "nominal: not seen"));
    assert_non_null(strstr(t, "result: PASS"));
    free(t);
    fp = open_memstream(&buf, &len);
    assert_non_null(fp);
    assert_int_equal(report_json(fp, &r, &f->s), 0);
    assert_int_equal(fclose(fp), 0);
    j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "samples")), 0);
    assert_true(json_is_null(json_object_get(j, "nominal_ms")));
    json_decref(j);
    free(buf);
    snprintf(path, sizeof path, "%s/empty.svg", f->dir);
    assert_int_equal(report_svg(path, &r), 0);
    t = slurp(path);
    assert_memory_equal(t, "<svg", 4);
    assert_int_equal(count(t, "class=\"fault\""), 0);
    free(t);
}

static void percentile(void **state)
{
    double v[100];
    size_t i;

    (void)state;
    for (i = 0; i < 100; i++) {
        v[i] = (double)(i + 1);
    }
    assert_true(drill_percentile(v, 0, 0.5) == -1);
    assert_true(drill_percentile(v, 100, 0.5) == 50);
    assert_true(drill_percentile(v, 100, 0.99) == 99);
    assert_true(drill_percentile(v, 100, 1.0) == 100);
    assert_true(drill_percentile(v, 100, 0.0) == 1);
    assert_true(drill_percentile(v, 1, 0.99) == 1);
    assert_true(drill_percentile(v, 3, 0.5) == 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(table, setup, teardown),
        cmocka_unit_test_setup_teardown(json, setup, teardown),
        cmocka_unit_test_setup_teardown(svg, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_result, setup, teardown),
        cmocka_unit_test(percentile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
