/* Policy documents (cluster/policy.h): valid documents and their
 * defaults, canonical rendering, label selection, and one invalid document
 * per rule with its exact message. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/policy.h"
#include "common/heap.h"
#include "tests/lib/heap.h"

struct fixture {
    struct test_heap heap;
    struct policy *p;
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
    policy_free(f->p);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

static int parse(struct fixture *f, const char *json)
{
    policy_free(f->p);
    f->p = NULL;
    f->errmsg[0] = '\0';
    return policy_parse_json(json, strlen(json), &f->p, f->errmsg);
}

#define MINIMAL                                                                \
    "{\"placement\":{\"agents\":[\"edge-1\"]},"                                \
    "\"services\":[{\"name\":\"web\",\"command\":[\"/bin/web\"]}]}"

/* The smallest document: every optional field gets its default. */
static void minimal_defaults(void **state)
{
    struct fixture *f = *state;
    const struct policy *p;

    assert_int_equal(parse(f, MINIMAL), 0);
    p = f->p;
    assert_string_equal(p->description, "");
    assert_int_equal(p->mode, POLICY_MODE_RECOMMEND);
    assert_int_equal(p->placement.n_agents, 1);
    assert_string_equal(p->placement.agents[0], "edge-1");
    assert_false(p->placement.selector.present);
    assert_int_equal(p->n_services, 1);
    assert_string_equal(p->services[0].name, "web");
    assert_int_equal(p->services[0].criticality, POLICY_OPTIONAL);
    assert_int_equal(p->services[0].allowed, POLICY_ALLOWED_ALL);
    assert_int_equal(p->services[0].n_secrets, 0);
    assert_int_equal(p->services[0].n_deps, 0);
    assert_true(p->services[0].spec->autostart);
    assert_string_equal(p->services[0].manifest,
                        "{\"command\":[\"/bin/web\"],\"name\":\"web\"}");
    assert_true(
        p->services[0].digest ==
        policy_digest(p->services[0].manifest, p->services[0].manifest_len));
    assert_false(p->rollout.canary_percent);
    assert_int_equal(p->rollout.canary, POLICY_DEFAULT_CANARY);
    assert_int_equal(p->rollout.health_gate_ms, POLICY_DEFAULT_HEALTH_GATE_MS);
    assert_int_equal(p->rollout.gate_timeout_ms,
                     4 * POLICY_DEFAULT_HEALTH_GATE_MS);
    assert_string_equal(p->metadata, "{}");
    assert_int_equal(p->rollout.batch_size, POLICY_DEFAULT_BATCH_SIZE);
    assert_int_equal(p->rollout.batch_pause_ms, POLICY_DEFAULT_BATCH_PAUSE_MS);
    assert_true(p->rollout.auto_rollback);
    assert_int_equal(p->remediation.max_attempts, POLICY_DEFAULT_MAX_ATTEMPTS);
    assert_int_equal(p->remediation.backoff_ms, POLICY_DEFAULT_BACKOFF_MS);
    assert_int_equal(p->remediation.reset_after_ms,
                     POLICY_DEFAULT_RESET_AFTER_MS);
    assert_int_equal(p->order[0], 0);
}

#define FULL                                                                   \
    "{\"description\":\"north gateways\","                                     \
    "\"metadata\":{\"ticket\":4711,\"owner\":{\"team\":\"ops\"}},"            \
    "\"placement\":{\"agents\":[\"edge-9\",\"edge-2\"],"                       \
    "\"selector\":{\"match_labels\":{\"site\":\"north\",\"role\":\"gw\"},"     \
    "\"match_expressions\":["                                                  \
    "{\"key\":\"zone\",\"operator\":\"in\",\"values\":[\"b\",\"a\"]},"         \
    "{\"key\":\"legacy\",\"operator\":\"not_in\",\"values\":[\"yes\"]},"       \
    "{\"key\":\"gpu\",\"operator\":\"exists\"},"                               \
    "{\"key\":\"retired\",\"operator\":\"does_not_exist\"}]}},"                \
    "\"mode\":\"auto\","                                                       \
    "\"services\":["                                                           \
    "{\"name\":\"web\",\"command\":[\"/bin/web\",\"--port\",\"80\"],"          \
    "\"env\":{\"MODE\":\"prod\"},\"depends_on\":[\"db\"],"                     \
    "\"backoff\":{\"multiplier\":1.5},"                                        \
    "\"criticality\":\"critical\","                                            \
    "\"allowed_commands\":[\"start\",\"restart\"],"                            \
    "\"secrets\":[{\"env\":\"TOKEN\",\"ref\":\"vault://kv/web#token\"},"       \
    "{\"env\":\"DB_PASSWORD\",\"ref\":\"file:///etc/rems/db\"}]},"             \
    "{\"name\":\"db\",\"command\":[\"/bin/db\"],\"autostart\":false,"          \
    "\"allowed_commands\":[]}],"                                               \
    "\"rollout\":{\"canary\":\"10%\",\"health_gate_ms\":30000,"                \
    "\"batch_size\":5,\"batch_pause_ms\":0,\"auto_rollback\":false,"           \
    "\"gate_timeout_ms\":45000},"                                             \
    "\"remediation\":{\"max_attempts\":5,\"backoff_ms\":1000,"                 \
    "\"reset_after_ms\":2000}}"

/* Every field, read back. */
static void full_document(void **state)
{
    struct fixture *f = *state;
    const struct policy *p;
    const struct policy_selector *sel;

    assert_int_equal(parse(f, FULL), 0);
    p = f->p;
    assert_string_equal(p->description, "north gateways");
    assert_int_equal(p->mode, POLICY_MODE_AUTO);
    assert_int_equal(p->placement.n_agents, 2);
    assert_string_equal(p->placement.agents[0], "edge-2"); /* sorted */
    assert_string_equal(p->placement.agents[1], "edge-9");
    sel = &p->placement.selector;
    assert_true(sel->present);
    assert_int_equal(sel->n_match_labels, 2);
    assert_string_equal(sel->match_labels[0].key, "role");
    assert_string_equal(sel->match_labels[1].value, "north");
    assert_int_equal(sel->n_expressions, 4);
    assert_string_equal(sel->expressions[0].key, "gpu");
    assert_int_equal(sel->expressions[0].op, POLICY_OP_EXISTS);
    assert_string_equal(sel->expressions[3].key, "zone");
    assert_int_equal(sel->expressions[3].n_values, 2);
    assert_string_equal(sel->expressions[3].values[0], "a");
    assert_int_equal(p->n_services, 2);
    assert_int_equal(p->services[0].criticality, POLICY_CRITICAL);
    assert_int_equal(p->services[0].allowed,
                     (1u << PROTO_ACTION_START) | (1u << PROTO_ACTION_RESTART));
    assert_int_equal(p->services[0].n_secrets, 2);
    assert_string_equal(p->services[0].secrets[0].env, "DB_PASSWORD");
    assert_string_equal(p->services[0].secrets[1].ref, "vault://kv/web#token");
    assert_int_equal(p->services[0].n_deps, 1);
    assert_int_equal(p->services[0].deps[0], 1);
    assert_int_equal(p->services[1].allowed, 0);
    assert_false(p->services[1].spec->autostart);
    /* The manifest is the process part only: no rems fields. */
    assert_null(strstr(p->services[0].manifest, "criticality"));
    assert_null(strstr(p->services[0].manifest, "secrets"));
    assert_non_null(strstr(p->services[0].manifest, "\"depends_on\""));
    assert_int_equal(p->order[0], 1); /* db first */
    assert_int_equal(p->order[1], 0);
    assert_true(p->rollout.canary_percent);
    assert_int_equal(p->rollout.canary, 10);
    assert_int_equal(p->rollout.health_gate_ms, 30000);
    assert_int_equal(p->rollout.gate_timeout_ms, 45000);
    assert_string_equal(p->metadata,
                        "{\"owner\":{\"team\":\"ops\"},\"ticket\":4711}");
    assert_int_equal(p->rollout.batch_size, 5);
    assert_int_equal(p->rollout.batch_pause_ms, 0);
    assert_false(p->rollout.auto_rollback);
    assert_int_equal(p->remediation.max_attempts, 5);
    assert_int_equal(p->remediation.backoff_ms, 1000);
    assert_int_equal(p->remediation.reset_after_ms, 2000);
    assert_int_equal(policy_service_find(p, "db"), 1);
    assert_int_equal(policy_service_find(p, "nope"), SIZE_MAX);
}

/* Rendering is canonical: render(parse(render(x))) == render(x), and
 * documents that say the same render the same. */
static void render_canonical(void **state)
{
    struct fixture *f = *state;
    static const char *const docs[] = {MINIMAL, FULL};
    char *a;
    char *b;
    size_t la;
    size_t lb;
    size_t i;

    for (i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        assert_int_equal(parse(f, docs[i]), 0);
        assert_int_equal(policy_render_json(f->p, &a, &la, f->errmsg), 0);
        assert_int_equal(strlen(a), la);
        assert_int_equal(parse(f, a), 0);
        assert_int_equal(policy_render_json(f->p, &b, &lb, f->errmsg), 0);
        assert_string_equal(a, b);
        rems_free(a);
        rems_free(b);
    }
    assert_int_equal(parse(f, MINIMAL), 0);
    assert_int_equal(policy_render_json(f->p, &a, &la, f->errmsg), 0);
    assert_string_equal(
        a, "{\"description\":\"\",\"metadata\":{},\"mode\":\"recommend\","
           "\"placement\":{"
           "\"agents\":[\"edge-1\"]},\"remediation\":{\"backoff_ms\":60000,"
           "\"max_attempts\":3,\"reset_after_ms\":600000},\"rollout\":{"
           "\"auto_rollback\":true,\"batch_pause_ms\":60000,\"batch_size\":"
           "10,\"canary\":1,\"gate_timeout_ms\":240000,\"health_gate_ms\":"
           "60000},\"services\":[{"
           "\"allowed_commands\":[\"start\",\"stop\",\"restart\",\"pause\","
           "\"resume\",\"quarantine\",\"push_manifest\",\"diagnostics\"],"
           "\"command\":[\"/bin/web\"],\"criticality\":\"optional\","
           "\"name\":\"web\",\"secrets\":[]}]}");
    rems_free(a);
    /* Order of keys, agents and expression values does not matter. */
    assert_int_equal(
        parse(f, "{\"services\":[{\"command\":[\"/bin/web\"],\"name\":"
                 "\"web\"}],\"placement\":{\"selector\":{"
                 "\"match_expressions\":[{\"values\":[\"y\",\"x\"],"
                 "\"operator\":\"in\",\"key\":\"k\"}]},"
                 "\"agents\":[\"b\",\"a\"]}}"),
        0);
    assert_int_equal(policy_render_json(f->p, &a, &la, f->errmsg), 0);
    assert_int_equal(
        parse(f, "{\"placement\":{\"agents\":[\"a\",\"b\"],\"selector\":{"
                 "\"match_expressions\":[{\"key\":\"k\",\"operator\":\"in\","
                 "\"values\":[\"x\",\"y\"]}],\"match_labels\":{}}},"
                 "\"services\":[{\"name\":\"web\",\"command\":[\"/bin/web\"],"
                 "\"criticality\":\"optional\"}],\"mode\":\"recommend\"}"),
        0);
    assert_int_equal(policy_render_json(f->p, &b, &lb, f->errmsg), 0);
    assert_string_equal(a, b);
    rems_free(a);
    rems_free(b);
}

/* Label selection: ids, match_labels and each operator. */
static void selection(void **state)
{
    struct fixture *f = *state;
    const struct policy_label north_gw[] = {
        {"site", "north"}, {"role", "gw"}, {"zone", "a"}, {"gpu", "1"}};
    const struct policy_label south[] = {{"site", "south"}, {"role", "gw"}};

    assert_int_equal(parse(f, FULL), 0);
    assert_true(policy_selects(f->p, "edge-2", NULL, 0)); /* by id */
    assert_true(policy_selects(f->p, "x", north_gw, 4));
    assert_false(policy_selects(f->p, "x", south, 2));
    {
        /* zone not in [a, b] */
        struct policy_label l[] = {
            {"site", "north"}, {"role", "gw"}, {"zone", "c"}, {"gpu", "1"}};
        assert_false(policy_selects(f->p, "x", l, 4));
    }
    {
        /* no gpu label: exists fails */
        struct policy_label l[] = {
            {"site", "north"}, {"role", "gw"}, {"zone", "b"}};
        assert_false(policy_selects(f->p, "x", l, 3));
    }
    {
        /* legacy=yes: not_in fails; legacy=no passes */
        struct policy_label l[] = {{"site", "north"},
                                   {"role", "gw"},
                                   {"zone", "b"},
                                   {"gpu", ""},
                                   {"legacy", "yes"}};
        assert_false(policy_selects(f->p, "x", l, 5));
        l[4].value = "no";
        assert_true(policy_selects(f->p, "x", l, 5));
    }
    {
        /* retired set: does_not_exist fails */
        struct policy_label l[] = {{"site", "north"},
                                   {"role", "gw"},
                                   {"zone", "b"},
                                   {"gpu", ""},
                                   {"retired", ""}};
        assert_false(policy_selects(f->p, "x", l, 5));
    }
    /* An empty selector selects every agent; ids alone select only them. */
    assert_int_equal(
        parse(f, "{\"placement\":{\"selector\":{}},\"services\":[{\"name\":"
                 "\"a\",\"command\":[\"a\"]}]}"),
        0);
    assert_true(policy_selects(f->p, "anyone", NULL, 0));
    assert_int_equal(parse(f, MINIMAL), 0);
    assert_false(policy_selects(f->p, "edge-2", north_gw, 4));
}

struct bad_case {
    const char *doc;
    int rv;
    const char *msg;
};

#define SVC "{\"name\":\"web\",\"command\":[\"/bin/web\"]"
#define PLACE "\"placement\":{\"agents\":[\"a\"]}"
#define DOC(services) "{" PLACE ",\"services\":[" services "]}"
#define DOC_WITH(extra) "{" PLACE ",\"services\":[" SVC "}]," extra "}"

static const struct bad_case bad_cases[] = {
    {"{\"placement\":", REMS_EMALFORMED,
     "policy: not JSON: line 1: unexpected token near end of file"},
    {"[1]", REMS_EMALFORMED, "policy: must be a JSON object"},
    {"{\"placement\":{},\"placement\":{}}", REMS_EMALFORMED,
     "policy: not JSON: line 1: duplicate object key near "
     "'\"placement\"'"},
    {DOC_WITH("\"colour\":1"), REMS_EINVAL, "policy: unknown field \"colour\""},
    {"{\"services\":[" SVC "}]}", REMS_EINVAL, "placement: required"},
    {"{\"placement\":[],\"services\":[" SVC "}]}", REMS_EINVAL,
     "placement: must be an object"},
    {"{\"placement\":{},\"services\":[" SVC "}]}", REMS_EINVAL,
     "placement: must name agents or a selector"},
    {"{\"placement\":{\"hosts\":[]},\"services\":[" SVC "}]}", REMS_EINVAL,
     "placement: unknown field \"hosts\""},
    {"{\"placement\":{\"agents\":\"a\"},\"services\":[" SVC "}]}", REMS_EINVAL,
     "placement.agents: must be an array of strings"},
    {"{\"placement\":{\"agents\":[]},\"services\":[" SVC "}]}", REMS_EINVAL,
     "placement.agents: must have 1..1024 entries"},
    {"{\"placement\":{\"agents\":[\"a\",\"b c\"]},\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.agents[1]: must be 1..64 characters of [A-Za-z0-9_.:-]"},
    {"{\"placement\":{\"agents\":[\"a\",\"b\",\"a\"]},\"services\":[" SVC "}]}",
     REMS_EINVAL, "placement.agents[2]: \"a\" given twice"},
    {"{\"placement\":{\"selector\":{\"labels\":{}}},\"services\":[" SVC "}]}",
     REMS_EINVAL, "placement.selector: unknown field \"labels\""},
    {"{\"placement\":{\"selector\":{\"match_labels\":{\"site\":1}}},"
     "\"services\":[" SVC "}]}",
     REMS_EINVAL, "placement.selector.match_labels.site: must be a string"},
    {"{\"placement\":{\"selector\":{\"match_labels\":{\"\":\"x\"}}},"
     "\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.selector.match_labels: key \"\" must be 1..128 bytes"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":{}}},"
     "\"services\":[" SVC "}]}",
     REMS_EINVAL, "placement.selector.match_expressions: must be an array"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":\"z\","
     "\"operator\":\"like\"}]}},\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.selector.match_expressions[0].operator: must be in, not_in, "
     "exists or does_not_exist"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":[{\"operator\":"
     "\"exists\"}]}},\"services\":[" SVC "}]}",
     REMS_EINVAL, "placement.selector.match_expressions[0].key: required"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":\"z\","
     "\"operator\":\"in\"}]}},\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.selector.match_expressions[0].values: required for in"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":\"z\","
     "\"operator\":\"exists\",\"values\":[\"1\"]}]}},\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.selector.match_expressions[0].values: not allowed for "
     "exists"},
    {"{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":\"z\","
     "\"operator\":\"not_in\",\"values\":[\"1\",\"2\",\"1\"]}]}},"
     "\"services\":[" SVC "}]}",
     REMS_EINVAL,
     "placement.selector.match_expressions[0].values[2]: \"1\" given twice"},
    {DOC_WITH("\"mode\":\"manual\""), REMS_EINVAL,
     "mode: must be recommend or auto"},
    {DOC_WITH("\"description\":7"), REMS_EINVAL,
     "description: must be a string of at most 1024 bytes"},
    {"{" PLACE "}", REMS_EINVAL, "services: required"},
    {"{" PLACE ",\"services\":{}}", REMS_EINVAL, "services: must be an array"},
    {DOC_WITH("\"metadata\":[1]"), REMS_EINVAL,
     "metadata: must be an object"},
    {DOC(SVC "},7"), REMS_EINVAL, "services[1]: must be an object"},
    {DOC("{\"command\":[\"/bin/x\"]}"), REMS_EINVAL,
     "services[0].name: required"},
    {DOC(SVC ",\"colour\":\"red\"}"), REMS_EINVAL,
     "services[0]: unknown field \"colour\""},
    {DOC(SVC ",\"backoff\":{\"multiplier\":0.5}}"), REMS_EINVAL,
     "services[0].backoff.multiplier: must be >= 1"},
    {DOC("{\"name\":\"web\"}"), REMS_EINVAL, "services[0].command: required"},
    {DOC(SVC "}," SVC "}"), REMS_EINVAL,
     "services[1].name: \"web\" is also services[0]"},
    {DOC("{\"name\":\"db\",\"command\":[\"d\"]}," SVC
         ",\"depends_on\":[\"db\",\"cache\"]}"),
     REMS_EINVAL, "services[1].depends_on: unknown service \"cache\""},
    {DOC(SVC ",\"depends_on\":[\"db\"]},{\"name\":\"db\",\"command\":[\"d\"],"
             "\"depends_on\":[\"web\"]}"),
     REMS_EINVAL, "services: dependency cycle: web -> db -> web"},
    {DOC(SVC ",\"criticality\":\"high\"}"), REMS_EINVAL,
     "services[0].criticality: must be critical or optional"},
    {DOC(SVC ",\"allowed_commands\":\"start\"}"), REMS_EINVAL,
     "services[0].allowed_commands: must be an array of command names"},
    {DOC(SVC ",\"allowed_commands\":[\"start\",\"reboot\"]}"), REMS_EINVAL,
     "services[0].allowed_commands[1]: unknown command \"reboot\" (start, "
     "stop, restart, pause, resume, quarantine, push_manifest, "
     "diagnostics)"},
    {DOC(SVC ",\"allowed_commands\":[\"stop\",\"stop\"]}"), REMS_EINVAL,
     "services[0].allowed_commands[1]: \"stop\" given twice"},
    {DOC(SVC ",\"secrets\":{}}"), REMS_EINVAL,
     "services[0].secrets: must be an array"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"T\",\"value\":\"hunter2\"}]}"),
     REMS_EINVAL,
     "services[0].secrets[0].value: not allowed: a secret is a reference "
     "(ref), never a value"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"T\",\"ref\":\"vault://x\","
             "\"path\":1}]}"),
     REMS_EINVAL, "services[0].secrets[0]: unknown field \"path\""},
    {DOC(SVC ",\"secrets\":[{\"ref\":\"vault://x\"}]}"), REMS_EINVAL,
     "services[0].secrets[0].env: required"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"1T\",\"ref\":\"vault://x\"}]}"),
     REMS_EINVAL,
     "services[0].secrets[0].env: must match [A-Za-z_][A-Za-z0-9_]*"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"T\",\"ref\":\"vault://x\"},"
             "{\"env\":\"T\",\"ref\":\"vault://y\"}]}"),
     REMS_EINVAL, "services[0].secrets[1].env: \"T\" given twice"},
    {DOC(SVC ",\"env\":{\"T\":\"plain\"},\"secrets\":[{\"env\":\"T\","
             "\"ref\":\"vault://x\"}]}"),
     REMS_EINVAL, "services[0].secrets[0].env: \"T\" is also set in env"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"T\",\"ref\":\"hunter2\"}]}"),
     REMS_EINVAL,
     "services[0].secrets[0].ref: must be a reference scheme://location "
     "(1..1024 bytes, no spaces)"},
    {DOC(SVC ",\"secrets\":[{\"env\":\"T\"}]}"), REMS_EINVAL,
     "services[0].secrets[0].ref: required"},
    {DOC_WITH("\"rollout\":{\"canary\":0}"), REMS_EINVAL,
     "rollout.canary: must be 1..100 percent or a count >= 1"},
    {DOC_WITH("\"rollout\":{\"canary\":\"150%\"}"), REMS_EINVAL,
     "rollout.canary: must be 1..100 percent or a count >= 1"},
    {DOC_WITH("\"rollout\":{\"canary\":\"ten\"}"), REMS_EINVAL,
     "rollout.canary: must be 1..100 percent or a count >= 1"},
    {DOC_WITH("\"rollout\":{\"canary\":20000}"), REMS_EINVAL,
     "rollout.canary: a count must be <= 10000"},
    {DOC_WITH("\"rollout\":{\"batch_size\":0}"), REMS_EINVAL,
     "rollout.batch_size: must be >= 1"},
    {DOC_WITH("\"rollout\":{\"batch_size\":2.0}"), REMS_EINVAL,
     "rollout.batch_size: must be an integer"},
    {DOC_WITH("\"rollout\":{\"health_gate_ms\":86400001}"), REMS_EINVAL,
     "rollout.health_gate_ms: must be <= 86400000 (24 h)"},
    {DOC_WITH("\"rollout\":{\"health_gate_ms\":5000,"
              "\"gate_timeout_ms\":4999}"),
     REMS_EINVAL, "rollout.gate_timeout_ms: must be >= "
                  "rollout.health_gate_ms (5000)"},
    {DOC_WITH("\"rollout\":{\"gate_timeout_ms\":0}"), REMS_EINVAL,
     "rollout.gate_timeout_ms: must be >= 1"},
    {DOC_WITH("\"rollout\":{\"auto_rollback\":\"yes\"}"), REMS_EINVAL,
     "rollout.auto_rollback: must be true or false"},
    {DOC_WITH("\"rollout\":{\"stages\":3}"), REMS_EINVAL,
     "rollout: unknown field \"stages\""},
    {DOC_WITH("\"rollout\":[]"), REMS_EINVAL, "rollout: must be an object"},
    {DOC_WITH("\"remediation\":{\"max_attempts\":0}"), REMS_EINVAL,
     "remediation.max_attempts: must be >= 1"},
    {DOC_WITH("\"remediation\":{\"max_attempts\":101}"), REMS_EINVAL,
     "remediation.max_attempts: must be <= 100"},
    {DOC_WITH("\"remediation\":{\"backoff_ms\":-1}"), REMS_EINVAL,
     "remediation.backoff_ms: must be >= 0"},
    {DOC_WITH("\"remediation\":{\"reset_after_ms\":0}"), REMS_EINVAL,
     "remediation.reset_after_ms: must be >= 1"},
    {DOC_WITH("\"remediation\":{\"retries\":1}"), REMS_EINVAL,
     "remediation: unknown field \"retries\""},
};

/* Each invalid document is refused with its exact message and nothing is
 * allocated. */
static void invalid_documents(void **state)
{
    struct fixture *f = *state;
    size_t i;
    int failed = 0;

    assert_true(sizeof bad_cases / sizeof bad_cases[0] >= 30);
    for (i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        int rv = parse(f, bad_cases[i].doc);
        if (rv != bad_cases[i].rv || strcmp(f->errmsg, bad_cases[i].msg) != 0) {
            print_error("case %zu: %s\n  got %d \"%s\"\n  want %d \"%s\"\n", i,
                        bad_cases[i].doc, rv, f->errmsg, bad_cases[i].rv,
                        bad_cases[i].msg);
            failed++;
        }
        assert_null(f->p);
        assert_int_equal(f->heap.live, 0);
    }
    assert_int_equal(failed, 0);
}

/* A policy may place no service (it then only makes the agents' other
 * services unexpected); metadata is kept as canonical text. */
static void empty_services_and_metadata(void **state)
{
    struct fixture *f = *state;
    char *text;
    size_t len;

    assert_int_equal(parse(f, "{" PLACE ",\"services\":[],\"metadata\":"
                              "{\"z\":[1,2],\"a\":null}}"),
                     0);
    assert_int_equal(f->p->n_services, 0);
    assert_string_equal(f->p->metadata, "{\"a\":null,\"z\":[1,2]}");
    assert_int_equal(policy_render_json(f->p, &text, &len, f->errmsg), 0);
    assert_non_null(strstr(text, "\"metadata\":{\"a\":null,\"z\":[1,2]}"));
    assert_non_null(strstr(text, "\"services\":[]"));
    rems_free(text);
}

/* A document over POLICY_DOC_MAX is refused before it is parsed. */
static void too_big(void **state)
{
    struct fixture *f = *state;
    size_t len = POLICY_DOC_MAX + 1;
    char *doc = malloc(len);
    assert_non_null(doc);
    memset(doc, ' ', len);
    assert_int_equal(policy_parse_json(doc, len, &f->p, f->errmsg),
                     REMS_ETOOBIG);
    assert_string_equal(f->errmsg, "policy: must be at most 1048576 bytes");
    free(doc);
}

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM, "out of
 * memory" and no leak, for parsing and rendering. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    char *text = NULL;
    size_t len;
    long n;
    int rv;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = policy_parse_json(FULL, strlen(FULL), &f->p, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->p);
        assert_int_equal(f->heap.live, 0);
    }
    assert_true(n > 3);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = policy_render_json(f->p, &text, &len, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
    }
    rems_free(text);
}

/* The names of the enumerations. */
static void names(void **state)
{
    (void)state;
    assert_string_equal(policy_mode_name(POLICY_MODE_AUTO), "auto");
    assert_string_equal(policy_mode_name(0), "?");
    assert_string_equal(policy_criticality_name(POLICY_CRITICAL), "critical");
    assert_string_equal(policy_criticality_name(9), "?");
    assert_string_equal(policy_operator_name(POLICY_OP_DOES_NOT_EXIST),
                        "does_not_exist");
    assert_string_equal(policy_operator_name(0), "?");
    /* FNV-1a 64 test vectors. */
    assert_true(policy_digest("", 0) == 0xcbf29ce484222325u);
    assert_true(policy_digest("a", 1) == 0xaf63dc4c8601ec8cu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(minimal_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(full_document, setup, teardown),
        cmocka_unit_test_setup_teardown(render_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(selection, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_services_and_metadata, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(names, setup, teardown),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
