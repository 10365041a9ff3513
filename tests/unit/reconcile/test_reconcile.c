/* The reconcile pass (cluster/reconcile.h) as a pure function: table tests
 * of every drift kind, level and summary state, every guardrail,
 * escalation, record updates, resolution of placements, determinism under
 * shuffled input, loading stored agents, and allocation failures. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/reconcile.h"
#include "common/heap.h"
#include "tests/lib/heap.h"

/* 2023-11-14T22:13:20Z, a Tuesday. */
#define NOW ((uint64_t)1700000000000)
#define HOUR ((uint64_t)3600000)

#define MAX_POL 8
#define MAX_AG 64
#define MAX_SVC 8
#define MAX_GUARD 8

struct fixture {
    struct test_heap heap;
    struct policy *docs[2 * MAX_POL];
    size_t n_docs;
    struct reconcile_policy pol[MAX_POL];
    struct reconcile_agent ag[MAX_AG];
    char ids[MAX_AG][16];
    struct policy_label labels[MAX_AG][4];
    struct reconcile_service svc[MAX_AG][MAX_SVC];
    struct reconcile_record rec[MAX_AG][MAX_SVC];
    struct reconcile_freeze freezes[MAX_GUARD];
    struct reconcile_window windows[MAX_GUARD];
    struct reconcile_incident incidents[MAX_GUARD];
    struct reconcile_site_count sites[MAX_GUARD];
    struct reconcile_input in;
    struct reconcile_output out;
    char errmsg[REMS_ERRMSG_SIZE];
};

static void reset(struct fixture *f)
{
    size_t i;
    reconcile_output_close(&f->out);
    for (i = 0; i < f->n_docs; i++) {
        policy_free(f->docs[i]);
    }
    f->n_docs = 0;
    memset(f->pol, 0, sizeof f->pol);
    memset(f->ag, 0, sizeof f->ag);
    memset(f->labels, 0, sizeof f->labels);
    memset(f->svc, 0, sizeof f->svc);
    memset(f->rec, 0, sizeof f->rec);
    memset(f->freezes, 0, sizeof f->freezes);
    memset(f->windows, 0, sizeof f->windows);
    memset(f->incidents, 0, sizeof f->incidents);
    memset(f->sites, 0, sizeof f->sites);
    memset(&f->in, 0, sizeof f->in);
    f->in.policies = f->pol;
    f->in.agents = f->ag;
    f->in.guard.freezes = f->freezes;
    f->in.guard.windows = f->windows;
    f->in.guard.incidents = f->incidents;
    f->in.guard.sites = f->sites;
    reconcile_config_init(&f->in.config);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    reset(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;
    reset(f);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * Building inputs
 * --------------------------------------------------------------------- */

static struct policy *doc(struct fixture *f, const char *json)
{
    struct policy *p = NULL;
    int rv = policy_parse_json(json, strlen(json), &p, f->errmsg);
    if (rv != 0) {
        fail_msg("policy: %s", f->errmsg);
    }
    assert_true(f->n_docs < 2 * MAX_POL);
    f->docs[f->n_docs++] = p;
    return p;
}

static struct reconcile_policy *policy_add(struct fixture *f,
                                           const char *key,
                                           uint64_t revision,
                                           const char *json)
{
    struct reconcile_policy *p = &f->pol[f->in.n_policies++];
    assert_true(f->in.n_policies <= MAX_POL);
    p->key = key;
    p->revision = revision;
    p->policy = doc(f, json);
    return p;
}

/* Agent "a<n>" (n = its index), with a site label when @site. */
static size_t agent_add(struct fixture *f, bool online, const char *site)
{
    size_t i = f->in.n_agents++;
    struct reconcile_agent *a = &f->ag[i];
    assert_true(i < MAX_AG);
    snprintf(f->ids[i], sizeof f->ids[i], "a%zu", i);
    a->id = f->ids[i];
    a->online = online;
    a->labels = f->labels[i];
    a->services = f->svc[i];
    a->records = f->rec[i];
    if (site != NULL) {
        f->labels[i][a->n_labels].key = "site";
        f->labels[i][a->n_labels].value = site;
        a->n_labels++;
    }
    return i;
}

static void label_add(struct fixture *f, size_t a, const char *k, const char *v)
{
    f->labels[a][f->ag[a].n_labels].key = k;
    f->labels[a][f->ag[a].n_labels].value = v;
    f->ag[a].n_labels++;
}

static struct reconcile_service *report(struct fixture *f,
                                        size_t a,
                                        const char *name,
                                        int state,
                                        int health,
                                        bool ready,
                                        uint64_t age)
{
    struct reconcile_service *s = &f->svc[a][f->ag[a].n_services++];
    assert_true(f->ag[a].n_services <= MAX_SVC);
    s->name = name;
    s->state = state;
    s->health = health;
    s->ready = ready;
    s->generation = 1;
    s->since_ms = NOW - age;
    s->message = "";
    return s;
}

/* The manifest digest of service @name in the first policy placing it. */
static uint64_t digest_of(struct fixture *f, const char *name)
{
    size_t i;
    for (i = 0; i < f->in.n_policies; i++) {
        size_t k = policy_service_find(f->pol[i].policy, name);
        if (k != SIZE_MAX) {
            return f->pol[i].policy->services[k].digest;
        }
    }
    fail_msg("no policy places %s", name);
    return 0;
}

static struct reconcile_record *
record(struct fixture *f, size_t a, const char *name)
{
    size_t i;
    struct reconcile_record *r;
    for (i = 0; i < f->ag[a].n_records; i++) {
        if (strcmp(f->rec[a][i].service, name) == 0) {
            return &f->rec[a][i];
        }
    }
    r = &f->rec[a][f->ag[a].n_records++];
    assert_true(f->ag[a].n_records <= MAX_SVC);
    r->service = name;
    return r;
}

/* The agent acknowledged the current manifest of @name. */
static void deployed(struct fixture *f, size_t a, const char *name)
{
    record(f, a, name)->deployed_digest = digest_of(f, name);
}

/* @name runs, healthy and ready, with its manifest deployed. */
static void healthy(struct fixture *f, size_t a, const char *name)
{
    report(f, a, name, PROTO_STATE_RUNNING, PROTO_HEALTH_HEALTHY, true, HOUR);
    deployed(f, a, name);
}

static void run_at(struct fixture *f, uint64_t now)
{
    int rv;
    reconcile_output_close(&f->out);
    rv = reconcile_pass(&f->in, now, &f->out, f->errmsg);
    if (rv != 0) {
        fail_msg("reconcile_pass: %d %s", rv, f->errmsg);
    }
}

static void run(struct fixture *f)
{
    run_at(f, NOW);
}

static const struct reconcile_drift *
drift(struct fixture *f, const char *agent, const char *service)
{
    size_t i;
    for (i = 0; i < f->out.n_drifts; i++) {
        if (strcmp(f->out.drifts[i].agent, agent) == 0 &&
            strcmp(f->out.drifts[i].service, service) == 0) {
            return &f->out.drifts[i];
        }
    }
    return NULL;
}

static const struct reconcile_summary *
summary(const struct reconcile_summary *s, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(s[i].name, name) == 0) {
            return &s[i];
        }
    }
    return NULL;
}

#define WEB_SVC "{\"name\":\"web\",\"command\":[\"/bin/web\"]"
#define POLICY(mode, web_extra, extra)                                         \
    "{\"placement\":{\"selector\":{}},\"mode\":\"" mode                        \
    "\",\"services\":[" WEB_SVC web_extra "}]" extra "}"
#define WEB_RECOMMEND POLICY("recommend", "", "")
#define WEB_AUTO POLICY("auto", "", "")
#define WEB_CRITICAL POLICY("recommend", ",\"criticality\":\"critical\"", "")
#define WEB_NO_AUTOSTART POLICY("recommend", ",\"autostart\":false", "")

/* ------------------------------------------------------------------------
 * Drift kinds, levels, actions and service states: one service
 * --------------------------------------------------------------------- */

struct drift_case {
    const char *name;
    const char *policy; /* NULL: WEB_RECOMMEND */
    bool offline;
    int state; /* 0: not reported */
    int health;
    bool ready;
    uint64_t age;
    bool deployed;
    int rec_action; /* a record with this last action when non-zero */
    int rec_outcome;
    unsigned attempts;
    uint64_t rec_age;
    bool incident;
    /* Expected; kind 0: no drift. */
    int kind;
    int level;
    int action;
    int svc_state;
};

#define R PROTO_STATE_RUNNING
#define HH PROTO_HEALTH_HEALTHY
#define HU PROTO_HEALTH_UNHEALTHY
#define HK PROTO_HEALTH_UNKNOWN
#define D_MISSING RECONCILE_DRIFT_MISSING_SERVICE
#define D_UNHEALTHY RECONCILE_DRIFT_UNHEALTHY_SERVICE
#define D_FAILED RECONCILE_DRIFT_FAILED_DEPLOYMENT
#define D_OFFLINE RECONCILE_DRIFT_OFFLINE_AGENT
#define D_INCIDENT RECONCILE_DRIFT_UNRESOLVED_INCIDENT
#define REQ RECONCILE_REQUIRED
#define REC RECONCILE_RECOMMENDED
#define BLK RECONCILE_BLOCKED
#define A_NONE RECONCILE_ACTION_NONE
#define A_REDEPLOY RECONCILE_ACTION_REDEPLOY
#define A_RESTART RECONCILE_ACTION_RESTART
#define A_START RECONCILE_ACTION_START
#define A_DIAG RECONCILE_ACTION_DIAGNOSTICS
#define A_FAILOVER RECONCILE_ACTION_FAILOVER_REVIEW
#define S_NOM RECONCILE_NOMINAL
#define S_DEG RECONCILE_DEGRADED
#define S_REC RECONCILE_RECONCILING
#define S_UNS RECONCILE_UNSTABLE
#define OUT_PENDING RECONCILE_OUTCOME_PENDING
#define OUT_FAILED RECONCILE_OUTCOME_FAILED

static const struct drift_case drift_cases[] = {
    {"nominal", NULL, false, R, HH, true, HOUR, true, 0, 0, 0, 0, false, 0, 0,
     0, S_NOM},
    {"not reported", NULL, false, 0, 0, false, 0, false, 0, 0, 0, 0, false,
     D_MISSING, REQ, A_REDEPLOY, S_DEG},
    {"not reported, critical", WEB_CRITICAL, false, 0, 0, false, 0, false, 0, 0,
     0, 0, false, D_MISSING, REQ, A_REDEPLOY, S_UNS},
    {"not reported though deployed", NULL, false, 0, 0, false, 0, true, 0, 0, 0,
     0, false, D_MISSING, REQ, A_REDEPLOY, S_DEG},
    {"runs, manifest never deployed", NULL, false, R, HH, true, HOUR, false, 0,
     0, 0, 0, false, D_MISSING, REQ, A_REDEPLOY, S_DEG},
    {"last redeploy failed", NULL, false, R, HH, true, HOUR, false, A_REDEPLOY,
     OUT_FAILED, 1, HOUR, false, D_FAILED, REQ, A_REDEPLOY, S_DEG},
    {"last redeploy failed, absent", WEB_CRITICAL, false, 0, 0, false, 0, false,
     A_REDEPLOY, OUT_FAILED, 1, HOUR, false, D_FAILED, REQ, A_REDEPLOY, S_UNS},
    {"unhealthy", NULL, false, R, HU, true, HOUR, true, 0, 0, 0, 0, false,
     D_UNHEALTHY, REQ, A_RESTART, S_DEG},
    {"unhealthy, critical", WEB_CRITICAL, false, R, HU, true, HOUR, true, 0, 0,
     0, 0, false, D_UNHEALTHY, REQ, A_RESTART, S_UNS},
    {"fatal", NULL, false, PROTO_STATE_FATAL, HK, false, HOUR, true, 0, 0, 0, 0,
     false, D_UNHEALTHY, REQ, A_START, S_DEG},
    {"failed", NULL, false, PROTO_STATE_FAILED, HK, false, HOUR, true, 0, 0, 0,
     0, false, D_UNHEALTHY, REQ, A_START, S_DEG},
    {"stopped with autostart", NULL, false, PROTO_STATE_STOPPED, HK, false,
     HOUR, true, 0, 0, 0, 0, false, D_UNHEALTHY, REQ, A_START, S_DEG},
    {"stopped without autostart", WEB_NO_AUTOSTART, false, PROTO_STATE_STOPPED,
     HK, false, HOUR, true, 0, 0, 0, 0, false, 0, 0, 0, S_NOM},
    {"starting within grace", NULL, false, PROTO_STATE_STARTING, HK, false,
     1000, true, 0, 0, 0, 0, false, 0, 0, 0, S_NOM},
    {"starting past grace", NULL, false, PROTO_STATE_STARTING, HK, false,
     120000, true, 0, 0, 0, 0, false, D_UNHEALTHY, REQ, A_RESTART, S_DEG},
    {"starting and unhealthy", NULL, false, PROTO_STATE_STARTING, HU, false,
     1000, true, 0, 0, 0, 0, false, D_UNHEALTHY, REQ, A_RESTART, S_DEG},
    {"not ready within grace", NULL, false, R, HH, false, 1000, true, 0, 0, 0,
     0, false, 0, 0, 0, S_NOM},
    {"not ready past grace", NULL, false, R, HH, false, 120000, true, 0, 0, 0,
     0, false, D_UNHEALTHY, REQ, A_RESTART, S_DEG},
    {"stopping past grace", NULL, false, PROTO_STATE_STOPPING, HK, false,
     120000, true, 0, 0, 0, 0, false, D_UNHEALTHY, REQ, A_RESTART, S_DEG},
    {"backoff", NULL, false, PROTO_STATE_BACKOFF, HK, false, 1000, true, 0, 0,
     0, 0, false, D_UNHEALTHY, REC, A_DIAG, S_DEG},
    {"backoff, critical", WEB_CRITICAL, false, PROTO_STATE_BACKOFF, HK, false,
     1000, true, 0, 0, 0, 0, false, D_UNHEALTHY, REC, A_DIAG, S_UNS},
    {"paused", NULL, false, PROTO_STATE_PAUSED, HK, false, HOUR, true, 0, 0, 0,
     0, false, D_UNHEALTHY, REC, A_NONE, S_DEG},
    {"quarantined", NULL, false, PROTO_STATE_QUARANTINED, HK, false, HOUR, true,
     0, 0, 0, 0, false, D_UNHEALTHY, REC, A_NONE, S_DEG},
    {"remediation in flight", NULL, false, PROTO_STATE_FATAL, HK, false, HOUR,
     true, A_START, OUT_PENDING, 1, 1000, false, D_UNHEALTHY, REQ, A_START,
     S_REC},
    {"remediation in flight, critical", WEB_CRITICAL, false, PROTO_STATE_FATAL,
     HK, false, HOUR, true, A_START, OUT_PENDING, 1, 1000, false, D_UNHEALTHY,
     REQ, A_START, S_REC},
    {"in flight without drift", NULL, false, R, HH, true, HOUR, true, A_RESTART,
     OUT_PENDING, 1, 1000, false, 0, 0, 0, S_REC},
    {"incident, still failing", NULL, false, PROTO_STATE_FATAL, HK, false, HOUR,
     true, 0, 0, 0, 0, true, D_INCIDENT, BLK, A_DIAG, S_UNS},
    {"incident, nominal now", NULL, false, R, HH, true, HOUR, true, 0, 0, 0, 0,
     true, D_INCIDENT, REC, A_NONE, S_DEG},
    {"incident, nominal now, critical", WEB_CRITICAL, false, R, HH, true, HOUR,
     true, 0, 0, 0, 0, true, D_INCIDENT, REC, A_NONE, S_UNS},
    {"escalated after max_attempts", NULL, false, PROTO_STATE_FATAL, HK, false,
     HOUR, true, A_START, OUT_FAILED, 3, HOUR, false, D_UNHEALTHY, BLK, A_DIAG,
     S_UNS},
    {"max_attempts, last one within backoff", NULL, false, PROTO_STATE_FATAL,
     HK, false, HOUR, true, A_START, RECONCILE_OUTCOME_SUCCEEDED, 3, 10000,
     false, D_UNHEALTHY, REQ, A_START, S_DEG},
    {"max_attempts, last one in flight", NULL, false, PROTO_STATE_FATAL, HK,
     false, HOUR, true, A_START, OUT_PENDING, 3, HOUR, false, D_UNHEALTHY, REQ,
     A_START, S_REC},
    {"offline agent", NULL, true, R, HH, true, HOUR, true, 0, 0, 0, 0, false,
     D_OFFLINE, REC, A_FAILOVER, S_DEG},
    {"offline agent, critical", WEB_CRITICAL, true, 0, 0, false, 0, false, 0, 0,
     0, 0, false, D_OFFLINE, REQ, A_FAILOVER, S_UNS},
};

/* Each condition of one service gives its drift, level, action and state,
 * and the service, agent and cluster summaries follow. */
static void drift_table(void **state)
{
    struct fixture *f = *state;
    size_t i;

    for (i = 0; i < sizeof drift_cases / sizeof drift_cases[0]; i++) {
        const struct drift_case *c = &drift_cases[i];
        const struct reconcile_drift *d;
        const struct reconcile_summary *s;
        size_t a;

        reset(f);
        policy_add(f, "p", 7, c->policy != NULL ? c->policy : WEB_RECOMMEND);
        a = agent_add(f, !c->offline, "s1");
        if (c->state != 0) {
            report(f, a, "web", c->state, c->health, c->ready, c->age);
        }
        if (c->deployed) {
            deployed(f, a, "web");
        }
        if (c->rec_action != 0) {
            struct reconcile_record *r = record(f, a, "web");
            r->last_action = c->rec_action;
            r->outcome = c->rec_outcome;
            r->attempts = c->attempts;
            r->last_attempt_ms = NOW - c->rec_age;
        }
        if (c->incident) {
            f->incidents[0].id = 42;
            f->incidents[0].agent = "a0";
            f->incidents[0].service = "web";
            f->in.guard.n_incidents = 1;
        }
        run(f);
        d = drift(f, "a0", c->offline ? "" : "web");
        print_message("case %zu: %s\n", i, c->name);
        if (c->kind == 0) {
            assert_null(d);
            assert_int_equal(f->out.n_drifts, 0);
        } else {
            assert_non_null(d);
            assert_int_equal(f->out.n_drifts, 1);
            assert_string_equal(reconcile_drift_kind_name(d->kind),
                                reconcile_drift_kind_name(c->kind));
            assert_string_equal(reconcile_level_name(d->level),
                                reconcile_level_name(c->level));
            assert_string_equal(reconcile_action_name(d->action),
                                reconcile_action_name(c->action));
            assert_int_equal(d->state, c->svc_state);
            assert_true(d->detail[0] != '\0');
            assert_true(d->reason[0] != '\0');
            if (!c->offline) {
                assert_string_equal(d->policy, "p");
                assert_int_equal(d->revision, 7);
            }
        }
        s = summary(f->out.services, f->out.n_services, "web");
        assert_non_null(s);
        assert_string_equal(reconcile_state_name(s->state),
                            reconcile_state_name(c->svc_state));
        assert_int_equal(s->total, 1);
        assert_int_equal(s->counts[c->svc_state], 1);
        assert_int_equal(f->out.n_agents, 1);
        assert_int_equal(f->out.agents[0].state, c->svc_state);
        assert_int_equal(f->out.n_sites, 1);
        assert_string_equal(f->out.sites[0].name, "s1");
        assert_int_equal(f->out.sites[0].state, c->svc_state);
        assert_int_equal(f->out.cluster.state, c->svc_state);
        /* Recommend mode never issues anything. */
        assert_int_equal(f->out.n_commands, 0);
        assert_int_equal(f->out.n_holds, 0);
        /* Escalation opens an incident, and nothing else does. */
        assert_int_equal(f->out.n_incidents,
                         c->level == BLK && !c->incident ? 1 : 0);
    }
}

/* The details name what is wrong. */
static void drift_details(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_drift *d;
    struct reconcile_service *s;
    size_t a;

    policy_add(f, "p", 7, WEB_RECOMMEND);
    a = agent_add(f, true, NULL);
    s = report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
    s->has_exit_code = true;
    s->exit_code = 3;
    s->message = "exited with 3";
    deployed(f, a, "web");
    run(f);
    d = drift(f, "a0", "web");
    assert_string_equal(d->detail, "fatal, exit code 3: exited with 3");
    assert_string_equal(d->reason, "start the service");

    reset(f);
    policy_add(f, "p", 7, WEB_RECOMMEND);
    a = agent_add(f, true, NULL);
    run(f);
    d = drift(f, "a0", "web");
    assert_string_equal(d->detail, "not reported by the agent");
    assert_string_equal(d->reason,
                        "push the manifest of policy \"p\" revision 7");

    reset(f);
    policy_add(f, "p", 7, WEB_RECOMMEND);
    a = agent_add(f, true, NULL);
    report(f, a, "web", R, HH, false, 120000);
    deployed(f, a, "web");
    run(f);
    assert_string_equal(drift(f, "a0", "web")->detail,
                        "running but not ready for 120000 ms");
}

/* A reported service that no policy places: unexpected, recommended stop,
 * degraded; never a command, even next to an auto policy. */
static void unexpected_service(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_drift *d;
    size_t a;

    policy_add(f, "p", 1, WEB_AUTO);
    a = agent_add(f, true, NULL);
    healthy(f, a, "web");
    report(f, a, "stray", R, HH, true, HOUR);
    run(f);
    assert_int_equal(f->out.n_drifts, 1);
    d = drift(f, "a0", "stray");
    assert_int_equal(d->kind, RECONCILE_DRIFT_UNEXPECTED_SERVICE);
    assert_int_equal(d->level, REC);
    assert_int_equal(d->action, RECONCILE_ACTION_STOP);
    assert_int_equal(d->state, S_DEG);
    assert_string_equal(d->policy, "");
    assert_int_equal(f->out.n_commands, 0);
    assert_int_equal(
        summary(f->out.services, f->out.n_services, "stray")->state, S_DEG);
    assert_int_equal(summary(f->out.services, f->out.n_services, "web")->state,
                     S_NOM);
    assert_int_equal(f->out.agents[0].state, S_DEG);
    assert_int_equal(f->out.agents[0].total, 2);

    /* With an open incident it is blocked. */
    f->incidents[0].id = 5;
    f->incidents[0].agent = "a0";
    f->incidents[0].service = "stray";
    f->in.guard.n_incidents = 1;
    run(f);
    d = drift(f, "a0", "stray");
    assert_int_equal(d->kind, D_INCIDENT);
    assert_int_equal(d->level, BLK);
    assert_int_equal(d->state, S_UNS);
}

/* A dependency that is not available: its dependents follow it
 * (dependency_unavailable) and only the dependency is remediated. */
static void dependency_unavailable(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_drift *d;
    size_t a;

    policy_add(
        f, "p", 1,
        "{\"placement\":{\"selector\":{}},\"mode\":\"auto\",\"services\":["
        "{\"name\":\"db\",\"command\":[\"/bin/db\"]},"
        "{\"name\":\"web\",\"command\":[\"/bin/web\"],"
        "\"depends_on\":[\"db\"]}]}");
    a = agent_add(f, true, NULL);
    run(f); /* Neither is there. */
    d = drift(f, "a0", "db");
    assert_int_equal(d->kind, D_MISSING);
    assert_int_equal(d->action, A_REDEPLOY);
    d = drift(f, "a0", "web");
    assert_int_equal(d->kind, RECONCILE_DRIFT_DEPENDENCY_UNAVAILABLE);
    assert_int_equal(d->level, REC);
    assert_int_equal(d->action, RECONCILE_ACTION_DELAYED_DEPLOYMENT);
    assert_string_equal(d->detail, "depends on \"db\", which is not available");
    assert_string_equal(d->reason, "deploy once \"db\" is available");
    assert_int_equal(f->out.n_commands, 1);
    assert_string_equal(f->out.commands[0].service, "db");

    /* Both deployed, db fatal, web failed: web waits for db. */
    report(f, a, "db", PROTO_STATE_FATAL, HK, false, HOUR);
    report(f, a, "web", PROTO_STATE_FAILED, HK, false, HOUR);
    deployed(f, a, "db");
    deployed(f, a, "web");
    run(f);
    assert_int_equal(drift(f, "a0", "db")->kind, D_UNHEALTHY);
    d = drift(f, "a0", "web");
    assert_int_equal(d->kind, RECONCILE_DRIFT_DEPENDENCY_UNAVAILABLE);
    assert_int_equal(d->action, A_NONE);
    assert_string_equal(d->reason, "it follows \"db\"; reconcile that first");
    assert_int_equal(f->out.n_commands, 1);
    assert_int_equal(f->out.commands[0].action, A_START);

    /* db fine again: web is simply unhealthy now. */
    f->svc[a][0].state = R;
    f->svc[a][0].health = HH;
    f->svc[a][0].ready = true;
    run(f);
    assert_null(drift(f, "a0", "db"));
    assert_int_equal(drift(f, "a0", "web")->kind, D_UNHEALTHY);
}

/* An incident of a service that is gone, and of the agent as a whole. */
static void incident_without_service(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_drift *d;
    size_t a;

    policy_add(f, "p", 1, WEB_RECOMMEND);
    a = agent_add(f, true, NULL);
    healthy(f, a, "web");
    f->incidents[0] = (struct reconcile_incident){9, "a0", "old", true};
    f->incidents[1] = (struct reconcile_incident){8, "a0", "", false};
    f->in.guard.n_incidents = 2;
    run(f);
    assert_int_equal(f->out.n_drifts, 2);
    assert_string_equal(f->out.drifts[0].service, ""); /* sorted */
    d = drift(f, "a0", "old");
    assert_int_equal(d->kind, D_INCIDENT);
    assert_int_equal(d->level, REC);
    assert_string_equal(d->detail, "incident 9 acknowledged; the service is "
                                   "neither placed nor reported");
    assert_string_equal(d->reason, "resolve incident 9");
    assert_int_equal(f->out.agents[0].state, S_DEG);
}

/* ------------------------------------------------------------------------
 * Guardrails: one candidate (web fatal, policy auto) and one change each
 * --------------------------------------------------------------------- */

struct guard_case {
    const char *name;
    const char *policy; /* NULL: WEB_AUTO */
    void (*tweak)(struct fixture *f);
    int guardrail; /* 0: issued; -1: neither issued nor held */
};

static void g_none(struct fixture *f)
{
    (void)f;
}

static void g_paused(struct fixture *f)
{
    f->in.guard.paused = true;
}

static void freeze(struct fixture *f,
                   int scope,
                   const char *name,
                   const char *agent,
                   uint64_t until)
{
    struct reconcile_freeze *z = &f->freezes[f->in.guard.n_freezes++];
    z->scope = scope;
    z->name = name;
    z->agent = agent;
    z->until_ms = until;
}

static void g_freeze_service(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_SERVICE, "web", NULL, 0);
}

static void g_freeze_service_here(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_SERVICE, "web", "a0", 0);
}

static void g_freeze_service_elsewhere(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_SERVICE, "web", "a7", 0);
    freeze(f, RECONCILE_FREEZE_SERVICE, "db", NULL, 0);
}

static void g_freeze_agent(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_AGENT, "a0", NULL, NOW + 1);
}

static void g_freeze_expired(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_AGENT, "a0", NULL, NOW);
    freeze(f, RECONCILE_FREEZE_SERVICE, "web", NULL, NOW - 1);
}

static void g_freeze_site(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_SITE, "s1", NULL, 0);
}

static void g_freeze_other_site(struct fixture *f)
{
    freeze(f, RECONCILE_FREEZE_SITE, "s2", NULL, 0);
}

static void g_backoff(struct fixture *f)
{
    struct reconcile_record *r = record(f, 0, "web");
    r->attempts = 1;
    r->last_action = A_START;
    r->outcome = RECONCILE_OUTCOME_SUCCEEDED;
    r->last_attempt_ms = NOW - 10000;
}

static void g_backoff_passed(struct fixture *f)
{
    g_backoff(f);
    record(f, 0, "web")->last_attempt_ms = NOW - 60000;
}

static void window(struct fixture *f,
                   const char *name,
                   int scope,
                   const char *target,
                   int policy,
                   bool open)
{
    struct reconcile_window *w = &f->windows[f->in.guard.n_windows++];
    w->name = name;
    w->scope = scope;
    w->target = target;
    w->policy = policy;
    w->start_ms = open ? NOW - HOUR : NOW + HOUR;
    w->end_ms = w->start_ms + 2 * HOUR;
}

static void g_never_inside_open(struct fixture *f)
{
    window(f, "freeze", RECONCILE_WINDOW_GLOBAL, NULL,
           RECONCILE_WINDOW_NEVER_INSIDE, true);
}

static void g_never_inside_closed(struct fixture *f)
{
    window(f, "freeze", RECONCILE_WINDOW_GLOBAL, NULL,
           RECONCILE_WINDOW_NEVER_INSIDE, false);
}

static void g_inside_only_open(struct fixture *f)
{
    window(f, "nightly", RECONCILE_WINDOW_SITE, "s1",
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, true);
}

static void g_inside_only_closed(struct fixture *f)
{
    window(f, "nightly", RECONCILE_WINDOW_SITE, "s1",
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, false);
}

static void g_inside_only_other_site(struct fixture *f)
{
    window(f, "nightly", RECONCILE_WINDOW_SITE, "s2",
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, false);
}

static void g_inside_only_one_of_two_open(struct fixture *f)
{
    window(f, "a-closed", RECONCILE_WINDOW_GLOBAL, NULL,
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, false);
    window(f, "b-open", RECONCILE_WINDOW_AGENT, "a0",
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, true);
}

static void g_inside_open_but_never_open(struct fixture *f)
{
    window(f, "b-open", RECONCILE_WINDOW_GLOBAL, NULL,
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, true);
    window(f, "c-freeze", RECONCILE_WINDOW_AGENT, "a0",
           RECONCILE_WINDOW_NEVER_INSIDE, true);
}

static void g_never_inside_other_agent(struct fixture *f)
{
    window(f, "freeze", RECONCILE_WINDOW_AGENT, "a9",
           RECONCILE_WINDOW_NEVER_INSIDE, true);
}

static void g_never_inside_weekly(struct fixture *f)
{
    struct reconcile_window *w = &f->windows[f->in.guard.n_windows++];
    w->name = "tuesday-evening";
    w->scope = RECONCILE_WINDOW_GLOBAL;
    w->policy = RECONCILE_WINDOW_NEVER_INSIDE;
    w->weekly = true;
    w->days = 1u << 1; /* Tuesday */
    w->start_minute = 22 * 60;
    w->duration_minutes = 60;
}

static void g_concurrency(struct fixture *f)
{
    size_t b = agent_add(f, true, "s2");
    struct reconcile_record *r = record(f, b, "web");
    healthy(f, b, "web");
    r->attempts = 1;
    r->last_action = A_RESTART;
    r->outcome = RECONCILE_OUTCOME_PENDING;
    r->last_attempt_ms = NOW - 1000;
    f->in.config.max_in_flight = 1;
}

static void g_concurrency_zero(struct fixture *f)
{
    f->in.config.max_in_flight = 0;
}

static void g_rate_agent(struct fixture *f)
{
    f->ag[0].issued_in_window = 3;
}

static void g_rate_site(struct fixture *f)
{
    f->sites[0].site = "s1";
    f->sites[0].issued = 20;
    f->sites[1].site = "elsewhere";
    f->sites[1].issued = 99;
    f->in.guard.n_sites = 2;
}

static void g_rate_other_site(struct fixture *f)
{
    f->sites[0].site = "s2";
    f->sites[0].issued = 20;
    f->in.guard.n_sites = 1;
}

static void g_rate_global(struct fixture *f)
{
    f->in.guard.issued_global = 100;
}

static void g_offline(struct fixture *f)
{
    f->ag[0].online = false;
}

static const struct guard_case guard_cases[] = {
    {"no guardrail in the way", NULL, g_none, 0},
    {"recommend mode", WEB_RECOMMEND, g_none, -1},
    {"offline agent", NULL, g_offline, -1},
    {"paused", NULL, g_paused, RECONCILE_GUARD_PAUSED},
    {"service frozen everywhere", NULL, g_freeze_service,
     RECONCILE_GUARD_FROZEN_SERVICE},
    {"service frozen on this agent", NULL, g_freeze_service_here,
     RECONCILE_GUARD_FROZEN_SERVICE},
    {"service frozen elsewhere", NULL, g_freeze_service_elsewhere, 0},
    {"agent frozen until later", NULL, g_freeze_agent,
     RECONCILE_GUARD_FROZEN_AGENT},
    {"freezes expired", NULL, g_freeze_expired, 0},
    {"site frozen", NULL, g_freeze_site, RECONCILE_GUARD_FROZEN_SITE},
    {"other site frozen", NULL, g_freeze_other_site, 0},
    {"not in allowed_commands",
     POLICY("auto", ",\"allowed_commands\":[\"restart\"]", ""), g_none,
     RECONCILE_GUARD_NOT_ALLOWED},
    {"in allowed_commands",
     POLICY("auto", ",\"allowed_commands\":[\"start\"]", ""), g_none, 0},
    {"backoff since the last attempt", NULL, g_backoff,
     RECONCILE_GUARD_BACKOFF},
    {"backoff passed", NULL, g_backoff_passed, 0},
    {"never_inside window open", NULL, g_never_inside_open,
     RECONCILE_GUARD_MAINTENANCE},
    {"never_inside window closed", NULL, g_never_inside_closed, 0},
    {"never_inside window of another agent", NULL, g_never_inside_other_agent,
     0},
    {"never_inside weekly window open", NULL, g_never_inside_weekly,
     RECONCILE_GUARD_MAINTENANCE},
    {"auto_inside_only window open", NULL, g_inside_only_open, 0},
    {"auto_inside_only window closed", NULL, g_inside_only_closed,
     RECONCILE_GUARD_MAINTENANCE},
    {"auto_inside_only window of another site", NULL, g_inside_only_other_site,
     0},
    {"one of two auto_inside_only windows open", NULL,
     g_inside_only_one_of_two_open, 0},
    {"inside an auto window, but a never window is open", NULL,
     g_inside_open_but_never_open, RECONCILE_GUARD_MAINTENANCE},
    {"concurrency cap reached", NULL, g_concurrency,
     RECONCILE_GUARD_CONCURRENCY},
    {"concurrency cap 0", NULL, g_concurrency_zero,
     RECONCILE_GUARD_CONCURRENCY},
    {"agent rate limit", NULL, g_rate_agent, RECONCILE_GUARD_RATE_AGENT},
    {"site rate limit", NULL, g_rate_site, RECONCILE_GUARD_RATE_SITE},
    {"other site's rate", NULL, g_rate_other_site, 0},
    {"global rate limit", NULL, g_rate_global, RECONCILE_GUARD_RATE_GLOBAL},
};

static void guard_table(void **state)
{
    struct fixture *f = *state;
    size_t i;

    for (i = 0; i < sizeof guard_cases / sizeof guard_cases[0]; i++) {
        const struct guard_case *c = &guard_cases[i];
        const struct reconcile_drift *d;
        size_t a;

        reset(f);
        policy_add(f, "p", 3, c->policy != NULL ? c->policy : WEB_AUTO);
        a = agent_add(f, true, "s1");
        report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
        deployed(f, a, "web");
        c->tweak(f);
        run(f);
        print_message("case %zu: %s\n", i, c->name);
        d = drift(f, "a0", c->tweak == g_offline ? "" : "web");
        assert_non_null(d);
        if (c->guardrail == 0) {
            assert_int_equal(f->out.n_commands, 1);
            assert_int_equal(f->out.n_holds, 0);
            assert_string_equal(f->out.commands[0].agent, "a0");
            assert_string_equal(f->out.commands[0].service, "web");
            assert_int_equal(f->out.commands[0].action, A_START);
            assert_int_equal(f->out.commands[0].command, PROTO_ACTION_START);
            assert_null(f->out.commands[0].manifest);
            assert_int_equal(f->out.commands[0].ttl_ms,
                             RECONCILE_DEFAULT_COMMAND_TTL_MS);
            assert_string_equal(f->out.commands[0].policy, "p");
            assert_int_equal(f->out.commands[0].revision, 3);
            assert_int_equal(d->state, S_REC);
            assert_int_equal(f->out.cluster.state, S_REC);
        } else if (c->guardrail < 0) {
            assert_int_equal(f->out.n_commands, 0);
            assert_int_equal(f->out.n_holds, 0);
        } else {
            assert_int_equal(f->out.n_commands, 0);
            assert_int_equal(f->out.n_holds, 1);
            assert_string_equal(
                reconcile_guardrail_name(f->out.holds[0].guardrail),
                reconcile_guardrail_name(c->guardrail));
            assert_string_equal(f->out.holds[0].service, "web");
            assert_int_equal(f->out.holds[0].action, A_START);
            assert_true(f->out.holds[0].detail[0] != '\0');
            assert_int_equal(d->state, S_DEG);
            assert_int_equal(d->level, REQ);
        }
    }
}

/* The texts of the holds say which limit and why. */
static void hold_details(void **state)
{
    struct fixture *f = *state;
    size_t a;

    policy_add(f, "p", 3, WEB_AUTO);
    a = agent_add(f, true, "s1");
    report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
    deployed(f, a, "web");
    g_inside_only_closed(f);
    run(f);
    assert_string_equal(f->out.holds[0].detail,
                        "outside maintenance window \"nightly\": automatic "
                        "actions only inside it");
    f->in.guard.n_windows = 0;
    g_rate_agent(f);
    run(f);
    assert_string_equal(f->out.holds[0].detail,
                        "3 remediations issued to agent \"a0\" in the last "
                        "600000 ms (limit 3)");
    f->ag[0].issued_in_window = 0;
    g_backoff(f);
    run(f);
    assert_string_equal(f->out.holds[0].detail,
                        "attempt 1 was 10000 ms ago; the next waits 60000 ms");
}

/* Limits count what this pass issues too: per agent, per site, global and
 * in flight; critical services go first. */
static void limits_within_a_pass(void **state)
{
    struct fixture *f = *state;
    size_t i;

    /* Four agents in one site, each with web fatal; a3's web is critical
     * through a second policy. */
    policy_add(f, "p", 1,
               "{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":"
               "\"tier\",\"operator\":\"does_not_exist\"}]}},\"mode\":\"auto\","
               "\"services\":[" WEB_SVC "}]}");
    policy_add(f, "q", 1,
               "{\"placement\":{\"selector\":{\"match_labels\":{\"tier\":"
               "\"gold\"}}},\"mode\":\"auto\",\"services\":[" WEB_SVC
               ",\"criticality\":\"critical\"}]}");
    for (i = 0; i < 4; i++) {
        size_t a = agent_add(f, true, "s1");
        if (i == 3) {
            label_add(f, a, "tier", "gold");
        }
        report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
        record(f, a, "web")->deployed_digest =
            f->pol[i == 3 ? 1 : 0].policy->services[0].digest;
    }
    f->in.config.max_global = 2;
    run(f);
    assert_int_equal(f->out.n_commands, 2);
    assert_string_equal(f->out.commands[0].agent, "a3"); /* critical first */
    assert_string_equal(f->out.commands[1].agent, "a0");
    assert_int_equal(f->out.n_holds, 2);
    assert_int_equal(f->out.holds[0].guardrail, RECONCILE_GUARD_RATE_GLOBAL);
    assert_string_equal(f->out.holds[0].agent, "a1");

    f->in.config.max_global = 100;
    f->in.config.max_per_site = 3;
    run(f);
    assert_int_equal(f->out.n_commands, 3);
    assert_int_equal(f->out.holds[0].guardrail, RECONCILE_GUARD_RATE_SITE);

    f->in.config.max_per_site = 100;
    f->in.config.max_in_flight = 1;
    run(f);
    assert_int_equal(f->out.n_commands, 1);
    assert_int_equal(f->out.n_holds, 3);
    assert_int_equal(f->out.holds[2].guardrail, RECONCILE_GUARD_CONCURRENCY);

    /* Per agent: two failing services on one agent, one allowed. */
    reset(f);
    policy_add(f, "p", 1,
               "{\"placement\":{\"agents\":[\"a0\"]},\"mode\":\"auto\","
               "\"services\":[{\"name\":\"x\",\"command\":[\"x\"]},"
               "{\"name\":\"y\",\"command\":[\"y\"]}]}");
    agent_add(f, true, NULL);
    report(f, 0, "x", PROTO_STATE_FAILED, HK, false, HOUR);
    report(f, 0, "y", PROTO_STATE_FAILED, HK, false, HOUR);
    deployed(f, 0, "x");
    deployed(f, 0, "y");
    f->in.config.max_per_agent = 1;
    run(f);
    assert_int_equal(f->out.n_commands, 1);
    assert_string_equal(f->out.commands[0].service, "x");
    assert_int_equal(f->out.n_holds, 1);
    assert_int_equal(f->out.holds[0].guardrail, RECONCILE_GUARD_RATE_AGENT);
    /* Agents without the site label have no site limit. */
    f->in.config.max_per_agent = 5;
    f->in.config.max_per_site = 0;
    run(f);
    assert_int_equal(f->out.n_commands, 2);
    assert_int_equal(f->out.n_sites, 0);
}

/* A redeploy carries the manifest and its digest, and the record update
 * says pending with that digest; acked, it becomes the deployed one. */
static void redeploy_and_records(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_command *c;
    const struct reconcile_update *u;
    const struct policy_service *svc;
    struct reconcile_record r;
    size_t a;

    policy_add(f, "p", 4, WEB_AUTO);
    svc = &f->pol[0].policy->services[0];
    a = agent_add(f, true, NULL);
    run(f);
    assert_int_equal(f->out.n_commands, 1);
    c = &f->out.commands[0];
    assert_int_equal(c->action, A_REDEPLOY);
    assert_int_equal(c->command, PROTO_ACTION_PUSH_MANIFEST);
    assert_int_equal(c->manifest_len, svc->manifest_len);
    assert_memory_equal(c->manifest, svc->manifest, svc->manifest_len);
    assert_true(c->manifest != svc->manifest); /* copied */
    assert_true(c->digest == svc->digest);
    assert_string_equal(c->reason,
                        "reconciler: missing_service: not reported by the "
                        "agent");
    assert_int_equal(f->out.n_updates, 1);
    u = &f->out.updates[0];
    assert_int_equal(u->kind, RECONCILE_RECORD_PUT);
    assert_string_equal(u->agent, "a0");
    assert_string_equal(u->record.service, "web");
    assert_int_equal(u->record.attempts, 1);
    assert_int_equal(u->record.last_attempt_ms, NOW);
    assert_int_equal(u->record.last_action, A_REDEPLOY);
    assert_int_equal(u->record.outcome, RECONCILE_OUTCOME_PENDING);
    assert_true(u->record.pending_digest == svc->digest);
    assert_int_equal(u->record.deployed_digest, 0);

    /* Feed the record back: in flight, nothing more is issued. */
    r = u->record;
    r.service = "web";
    f->rec[a][0] = r;
    f->ag[a].n_records = 1;
    run_at(f, NOW + 1000);
    assert_int_equal(f->out.n_commands, 0);
    assert_int_equal(drift(f, "a0", "web")->state, S_REC);

    /* Acked: deployed; the service now shows up stopped -> start. */
    reconcile_record_resolve(&f->rec[a][0], true);
    assert_int_equal(f->rec[a][0].outcome, RECONCILE_OUTCOME_SUCCEEDED);
    assert_true(f->rec[a][0].deployed_digest == svc->digest);
    assert_int_equal(f->rec[a][0].pending_digest, 0);
    reconcile_record_resolve(&f->rec[a][0], false); /* seen twice: no-op */
    assert_int_equal(f->rec[a][0].outcome, RECONCILE_OUTCOME_SUCCEEDED);
    report(f, a, "web", PROTO_STATE_STOPPED, HK, false, 1000);
    run_at(f, NOW + 2 * 60000);
    assert_int_equal(f->out.n_commands, 1);
    assert_int_equal(f->out.commands[0].action, A_START);
    assert_int_equal(f->out.updates[0].record.attempts, 2);
    assert_true(f->out.updates[0].record.deployed_digest == svc->digest);

    /* A failed push keeps the old digest. */
    r = f->rec[a][0];
    r.outcome = RECONCILE_OUTCOME_PENDING;
    r.last_action = A_REDEPLOY;
    r.pending_digest = 77;
    reconcile_record_resolve(&r, false);
    assert_int_equal(r.outcome, RECONCILE_OUTCOME_FAILED);
    assert_true(r.deployed_digest == svc->digest);
}

/* Quiet for reset_after_ms after the last attempt: the count is reset.
 * Records of services neither placed nor reported are deleted unless a
 * command is in flight. */
static void record_reset_and_delete(void **state)
{
    struct fixture *f = *state;
    struct reconcile_record *r;
    size_t a;

    policy_add(f, "p", 1, WEB_AUTO);
    a = agent_add(f, true, NULL);
    healthy(f, a, "web");
    r = record(f, a, "web");
    r->attempts = 2;
    r->last_action = A_RESTART;
    r->outcome = RECONCILE_OUTCOME_SUCCEEDED;
    r->last_attempt_ms = NOW - 5 * 60000;
    run(f);
    assert_int_equal(f->out.n_updates, 0); /* 5 min < 10 min */
    r->last_attempt_ms = NOW - 10 * 60000;
    run(f);
    assert_int_equal(f->out.n_updates, 1);
    assert_int_equal(f->out.updates[0].kind, RECONCILE_RECORD_PUT);
    assert_int_equal(f->out.updates[0].record.attempts, 0);
    assert_true(f->out.updates[0].record.deployed_digest ==
                digest_of(f, "web"));

    r = record(f, a, "gone");
    r->attempts = 1;
    r = record(f, a, "busy");
    r->outcome = RECONCILE_OUTCOME_PENDING;
    run(f);
    assert_int_equal(f->out.n_updates, 2);
    assert_int_equal(f->out.updates[0].kind, RECONCILE_RECORD_DELETE);
    assert_string_equal(f->out.updates[0].record.service, "gone");
    assert_int_equal(f->out.updates[1].kind, RECONCILE_RECORD_PUT);
    assert_string_equal(f->out.updates[1].record.service, "web");
}

/* Escalation: max_attempts remediations that did not help block the drift
 * and open an incident; fed back, the incident keeps it blocked without
 * opening another one. */
static void escalation(void **state)
{
    struct fixture *f = *state;
    struct reconcile_record *r;
    const struct reconcile_incident_open *io;
    const struct reconcile_drift *d;
    size_t a;

    policy_add(f, "p", 1,
               POLICY("auto", "",
                      ",\"remediation\":{"
                      "\"max_attempts\":2,"
                      "\"backoff_ms\":1000}"));
    a = agent_add(f, true, NULL);
    report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
    deployed(f, a, "web");
    r = record(f, a, "web");
    r->attempts = 1;
    r->last_action = A_START;
    r->outcome = RECONCILE_OUTCOME_SUCCEEDED;
    r->last_attempt_ms = NOW - 2000;
    run(f);
    assert_int_equal(f->out.n_commands, 1); /* attempt 2 */
    r->attempts = 2;
    run(f);
    assert_int_equal(f->out.n_commands, 0);
    assert_int_equal(f->out.n_holds, 0);
    d = drift(f, "a0", "web");
    assert_int_equal(d->level, BLK);
    assert_int_equal(d->kind, D_UNHEALTHY);
    assert_string_equal(d->reason, "2 remediations did not clear it; an "
                                   "incident is opened: investigate");
    assert_int_equal(f->out.n_incidents, 1);
    io = &f->out.incidents[0];
    assert_string_equal(io->agent, "a0");
    assert_string_equal(io->service, "web");
    assert_int_equal(io->kind, D_UNHEALTHY);
    assert_string_equal(io->policy, "p");
    assert_int_equal(io->attempts, 2);
    assert_string_equal(io->detail, "fatal");

    f->incidents[0] = (struct reconcile_incident){100, "a0", "web", false};
    f->in.guard.n_incidents = 1;
    run(f);
    assert_int_equal(f->out.n_incidents, 0);
    d = drift(f, "a0", "web");
    assert_int_equal(d->kind, D_INCIDENT);
    assert_int_equal(d->level, BLK);
    assert_string_equal(d->detail, "incident 100 open; fatal");
    assert_int_equal(f->out.n_commands, 0);
}

/* ------------------------------------------------------------------------
 * Summaries at every level
 * --------------------------------------------------------------------- */

/* a0 nominal, a1 degraded (s1); a2 reconciling, a3 unstable (s2); a4
 * nominal and a5 reconciling (s3); a6 has no site. */
static void summary_levels(void **state)
{
    struct fixture *f = *state;
    const struct reconcile_summary *s;
    struct reconcile_record *r;
    size_t a;

    policy_add(f, "p", 1,
               "{\"placement\":{\"selector\":{}},\"services\":["
               "{\"name\":\"web\",\"command\":[\"w\"]},"
               "{\"name\":\"db\",\"command\":[\"d\"],\"criticality\":"
               "\"critical\"}]}");
    a = agent_add(f, true, "s1");
    healthy(f, a, "web");
    healthy(f, a, "db");
    a = agent_add(f, true, "s1");
    report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
    deployed(f, a, "web");
    healthy(f, a, "db");
    a = agent_add(f, true, "s2");
    report(f, a, "web", PROTO_STATE_FATAL, HK, false, HOUR);
    deployed(f, a, "web");
    r = record(f, a, "web");
    r->outcome = RECONCILE_OUTCOME_PENDING;
    healthy(f, a, "db");
    a = agent_add(f, true, "s2");
    healthy(f, a, "web");
    report(f, a, "db", PROTO_STATE_FATAL, HK, false, HOUR);
    deployed(f, a, "db");
    a = agent_add(f, true, "s3");
    healthy(f, a, "web");
    healthy(f, a, "db");
    a = agent_add(f, true, "s3");
    healthy(f, a, "web");
    healthy(f, a, "db");
    record(f, a, "db")->outcome = RECONCILE_OUTCOME_PENDING;
    a = agent_add(f, true, NULL);
    healthy(f, a, "web");
    healthy(f, a, "db");
    run(f);

    assert_int_equal(f->out.n_agents, 7);
    assert_int_equal(f->out.agents[0].state, S_NOM);
    assert_int_equal(f->out.agents[1].state, S_DEG);
    assert_int_equal(f->out.agents[2].state, S_REC);
    assert_int_equal(f->out.agents[3].state, S_UNS);
    assert_int_equal(f->out.agents[4].state, S_NOM);
    assert_int_equal(f->out.agents[5].state, S_REC);
    assert_int_equal(f->out.agents[1].counts[S_DEG], 1);
    assert_int_equal(f->out.agents[1].counts[S_NOM], 1);
    assert_int_equal(f->out.agents[1].total, 2);

    assert_int_equal(f->out.n_sites, 3);
    assert_string_equal(f->out.sites[0].name, "s1");
    assert_int_equal(f->out.sites[0].state, S_DEG);
    assert_int_equal(f->out.sites[0].counts[S_NOM], 1);
    assert_int_equal(f->out.sites[0].counts[S_DEG], 1);
    assert_int_equal(f->out.sites[1].state, S_UNS);
    assert_int_equal(f->out.sites[2].state, S_REC);
    assert_int_equal(f->out.sites[2].total, 2);

    s = summary(f->out.services, f->out.n_services, "web");
    assert_int_equal(s->state, S_REC);
    assert_int_equal(s->total, 7);
    assert_int_equal(s->counts[S_NOM], 5);
    assert_int_equal(s->counts[S_DEG], 1);
    assert_int_equal(s->counts[S_REC], 1);
    s = summary(f->out.services, f->out.n_services, "db");
    assert_int_equal(s->state, S_UNS);
    assert_int_equal(s->counts[S_UNS], 1);
    assert_int_equal(s->counts[S_REC], 1);
    assert_string_equal(f->out.services[0].name, "db"); /* sorted */

    assert_string_equal(f->out.cluster.name, "cluster");
    assert_int_equal(f->out.cluster.state, S_UNS);
    assert_int_equal(f->out.cluster.total, 7);
    assert_int_equal(f->out.cluster.counts[S_NOM], 3);
    assert_int_equal(f->out.cluster.counts[S_DEG], 1);
    assert_int_equal(f->out.cluster.counts[S_REC], 2);
    assert_int_equal(f->out.cluster.counts[S_UNS], 1);

    /* Take the unstable agent away: the cluster is reconciling; then the
     * reconciling ones: degraded; then the degraded one: nominal. */
    f->svc[3][1].state = R;
    f->svc[3][1].health = HH;
    f->svc[3][1].ready = true;
    run(f);
    assert_int_equal(f->out.cluster.state, S_REC);
    assert_int_equal(f->out.sites[1].state, S_REC);
    f->rec[2][0].outcome = RECONCILE_OUTCOME_NONE;
    f->rec[5][1].outcome = RECONCILE_OUTCOME_NONE;
    run(f);
    assert_int_equal(f->out.cluster.state, S_DEG);
    assert_int_equal(f->out.sites[2].state, S_NOM);
    f->svc[1][0].state = R;
    f->svc[1][0].health = HH;
    f->svc[1][0].ready = true;
    f->svc[2][0].state = R;
    f->svc[2][0].health = HH;
    f->svc[2][0].ready = true;
    run(f);
    assert_int_equal(f->out.cluster.state, S_NOM);
    assert_int_equal(f->out.n_drifts, 0);
    assert_int_equal(f->out.cluster.counts[S_NOM], 7);
}

/* ------------------------------------------------------------------------
 * Resolution of placements
 * --------------------------------------------------------------------- */

static void resolve_placements(void **state)
{
    struct fixture *f = *state;
    struct reconcile_desired *d = NULL;
    size_t n = 0;
    const struct policy_label gold[] = {{"site", "s1"}, {"tier", "gold"}};
    const struct policy_label plain[] = {{"site", "s1"}};
    struct reconcile_policy *p;
    const struct policy *base;
    const char *reached[] = {"a1"};

    /* Keys sort "a-base" < "b-gold": for web on a gold agent, a-base wins
     * and b-gold is shadowed. */
    policy_add(f, "b-gold", 5,
               "{\"placement\":{\"selector\":{\"match_labels\":{\"tier\":"
               "\"gold\"}}},\"services\":[" WEB_SVC "},"
               "{\"name\":\"metrics\",\"command\":[\"m\"]}]}");
    policy_add(f, "a-base", 2,
               "{\"placement\":{\"selector\":{\"match_labels\":{\"site\":"
               "\"s1\"}}},\"services\":[" WEB_SVC "}]}");
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "x", gold, 2, &d, &n, f->errmsg), 0);
    assert_int_equal(n, 2);
    assert_string_equal(d[0].service, "metrics");
    assert_int_equal(d[0].policy, 0);
    assert_int_equal(d[0].revision, 5);
    assert_int_equal(d[0].shadowed, SIZE_MAX);
    assert_string_equal(d[1].service, "web");
    assert_int_equal(d[1].policy, 1);
    assert_int_equal(d[1].shadowed, 0);
    assert_true(d[1].doc == f->pol[1].policy);
    rems_free(d);
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "x", plain, 1, &d, &n, f->errmsg), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].service, "web");
    rems_free(d);
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "x", NULL, 0, &d, &n, f->errmsg), 0);
    assert_int_equal(n, 0);
    assert_null(d);

    /* The pass reports the conflict. */
    agent_add(f, true, "s1");
    label_add(f, 0, "tier", "gold");
    run(f);
    assert_int_equal(f->out.n_conflicts, 1);
    assert_string_equal(f->out.conflicts[0].agent, "a0");
    assert_string_equal(f->out.conflicts[0].service, "web");
    assert_string_equal(f->out.conflicts[0].policy, "a-base");
    assert_string_equal(f->out.conflicts[0].shadowed, "b-gold");

    /* A rollout of a-base revision 3: a1 has it, others keep revision 2. */
    p = &f->pol[1];
    base = p->policy;
    p->previous = base;
    p->previous_revision = 2;
    p->policy = doc(f, "{\"placement\":{\"selector\":{\"match_labels\":{"
                       "\"site\":\"s1\"}}},\"services\":[" WEB_SVC
                       ",\"env\":{\"V\":\"3\"}}]}");
    p->revision = 3;
    p->rollout_active = true;
    p->rollout_agents = reached;
    p->n_rollout_agents = 1;
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "a1", plain, 1, &d, &n, f->errmsg), 0);
    assert_int_equal(d[0].revision, 3);
    assert_true(d[0].doc == p->policy);
    rems_free(d);
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "a0", plain, 1, &d, &n, f->errmsg), 0);
    assert_int_equal(d[0].revision, 2);
    assert_true(d[0].doc == p->previous);
    rems_free(d);
    /* A new policy in rollout reaches only the agents it has reached. */
    p->previous = NULL;
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "a0", plain, 1, &d, &n, f->errmsg), 0);
    assert_int_equal(n, 0);
    /* In the pass, agents not reached see the previous revision's
     * manifest; reached ones the new one. */
    p->previous = base;
    agent_add(f, true, "s1"); /* a1 */
    run(f);
    assert_int_equal(drift(f, "a0", "web")->revision, 2);
    assert_int_equal(drift(f, "a1", "web")->revision, 3);

    /* Two policies with one key. */
    f->pol[1].key = "b-gold";
    assert_int_equal(
        reconcile_resolve(f->pol, 2, "x", NULL, 0, &d, &n, f->errmsg),
        REMS_EINVAL);
    assert_string_equal(f->errmsg, "policies: key \"b-gold\" given twice");
    assert_int_equal(reconcile_pass(&f->in, NOW, &f->out, f->errmsg),
                     REMS_EINVAL);
}

/* Bad input is refused, and the output is left alone. */
static void invalid_input(void **state)
{
    struct fixture *f = *state;
    struct reconcile_output out;

    policy_add(f, "p", 1, WEB_RECOMMEND);
    agent_add(f, true, NULL);
    agent_add(f, true, NULL);
    f->ids[1][1] = '0';
    memset(&out, 0x5a, sizeof out);
    assert_int_equal(reconcile_pass(&f->in, NOW, &out, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg, "agents: id \"a0\" given twice");
    assert_int_equal(((unsigned char *)&out)[0], 0x5a);
    f->ids[1][1] = '1';
    window(f, "w", RECONCILE_WINDOW_GLOBAL, NULL, RECONCILE_WINDOW_NEVER_INSIDE,
           true);
    f->windows[0].end_ms = f->windows[0].start_ms;
    assert_int_equal(reconcile_pass(&f->in, NOW, &out, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg, "guard.windows[0]: maintenance_window."
                                   "end_ms: must be after start_ms");
}

/* Windows: once and weekly, across midnight and the end of the week. */
static void windows(void **state)
{
    struct reconcile_window w = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    /* Monday 2023-11-13 00:00 UTC. */
    const uint64_t mon =
        NOW - (uint64_t)(24 * 60 + 22 * 60 + 13) * 60000 - 20000;
    (void)state;

    w.name = "w";
    w.scope = RECONCILE_WINDOW_GLOBAL;
    w.policy = RECONCILE_WINDOW_AUTO_INSIDE_ONLY;
    w.start_ms = 1000;
    w.end_ms = 2000;
    assert_int_equal(reconcile_window_check(&w, errmsg), 0);
    assert_false(reconcile_window_open(&w, 999));
    assert_true(reconcile_window_open(&w, 1000));
    assert_true(reconcile_window_open(&w, 1999));
    assert_false(reconcile_window_open(&w, 2000));

    w.weekly = true;
    w.days = 1u << 0; /* Monday 23:00 for 2 h: into Tuesday */
    w.start_minute = 23 * 60;
    w.duration_minutes = 120;
    assert_int_equal(reconcile_window_check(&w, errmsg), 0);
    assert_false(reconcile_window_open(&w, mon + 22 * HOUR));
    assert_true(reconcile_window_open(&w, mon + 23 * HOUR));
    assert_true(reconcile_window_open(&w, mon + 24 * HOUR + 59 * 60000));
    assert_false(reconcile_window_open(&w, mon + 25 * HOUR));
    w.days = 1u << 6; /* Sunday 23:00 for 2 h: into next Monday */
    assert_true(reconcile_window_open(&w, mon + 30 * 60000));
    assert_false(reconcile_window_open(&w, mon + 2 * HOUR));
    assert_true(reconcile_window_open(&w, mon + 6 * 24 * HOUR + 23 * HOUR));
    w.days = 0x7f; /* every day 22:00-23:00 */
    w.start_minute = 22 * 60;
    w.duration_minutes = 60;
    assert_true(reconcile_window_open(&w, NOW));

    w.days = 0;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.days: must be 1..127 "
                                "(bit 0 = Monday)");
    w.days = 1;
    w.start_minute = 1440;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.start_minute: must be "
                                "0..1439");
    w.start_minute = 0;
    w.duration_minutes = 10081;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.duration_minutes: must "
                                "be 1..10080");
    w.duration_minutes = 1;
    w.scope = RECONCILE_WINDOW_SITE;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.target: required for site "
                                "and agent windows, not allowed for global "
                                "ones");
    w.target = "s1";
    w.policy = 0;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.policy: must be "
                                "auto_inside_only or never_inside");
    w.policy = RECONCILE_WINDOW_NEVER_INSIDE;
    w.scope = 9;
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.scope: must be global, "
                                "site or agent");
    w.scope = RECONCILE_WINDOW_SITE;
    w.name = "";
    assert_int_equal(reconcile_window_check(&w, errmsg), REMS_EINVAL);
    assert_string_equal(errmsg, "maintenance_window.name: required");
}

/* ------------------------------------------------------------------------
 * Determinism
 * --------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return *s >> 33;
}

static const char *const snames[] = {"api", "db", "web", "cache", "etl"};
static const char *const sites[] = {"north", "south", "east"};

/* A random scenario over 40 agents. */
static void scenario(struct fixture *f, uint64_t seed)
{
    uint64_t s = seed;
    size_t i;
    size_t k;

    reset(f);
    policy_add(f, "core", 3,
               "{\"placement\":{\"selector\":{}},\"mode\":\"auto\","
               "\"services\":[{\"name\":\"db\",\"command\":[\"d\"],"
               "\"criticality\":\"critical\"},{\"name\":\"web\",\"command\":"
               "[\"w\"],\"depends_on\":[\"db\"]}],\"remediation\":{"
               "\"max_attempts\":2,\"backoff_ms\":5000}}");
    policy_add(f, "extra", 9,
               "{\"placement\":{\"selector\":{\"match_expressions\":[{\"key\":"
               "\"site\",\"operator\":\"in\",\"values\":[\"north\",\"east\"]}]"
               "}},\"services\":[{\"name\":\"api\",\"command\":[\"a\"]},"
               "{\"name\":\"web\",\"command\":[\"w2\"]}]}");
    policy_add(f, "edge", 1,
               "{\"placement\":{\"agents\":[\"a1\",\"a5\",\"a9\"]},\"mode\":"
               "\"auto\",\"services\":[{\"name\":\"cache\",\"command\":"
               "[\"c\"]}]}");
    f->in.config.max_global = 6;
    f->in.config.max_per_site = 3;
    f->in.config.max_in_flight = 20;
    for (i = 0; i < 40; i++) {
        size_t a =
            agent_add(f, rng_next(&s) % 8 != 0,
                      rng_next(&s) % 5 == 0 ? NULL : sites[rng_next(&s) % 3]);
        f->ag[a].issued_in_window = (unsigned)(rng_next(&s) % 3);
        for (k = 0; k < 5; k++) {
            uint64_t r = rng_next(&s) % 10;
            if (r < 2) {
                continue;
            }
            report(f, a, snames[k], (int)(1 + rng_next(&s) % 9),
                   (int)(1 + rng_next(&s) % 3), rng_next(&s) % 2 == 0,
                   rng_next(&s) % (3 * 60000));
            if (r < 8 && strcmp(snames[k], "etl") != 0) {
                struct reconcile_record *rec = record(f, a, snames[k]);
                rec->deployed_digest = r < 7 ? digest_of(f, snames[k]) : 1;
                rec->attempts = (unsigned)(rng_next(&s) % 3);
                rec->last_action = (int)(1 + rng_next(&s) % 5);
                rec->outcome = (int)(rng_next(&s) % 4);
                rec->last_attempt_ms = NOW - rng_next(&s) % 20000;
            }
        }
    }
    f->incidents[0] = (struct reconcile_incident){1, "a3", "db", false};
    f->incidents[1] = (struct reconcile_incident){2, "a7", "", true};
    f->incidents[2] = (struct reconcile_incident){3, "a11", "web", false};
    f->in.guard.n_incidents = 3;
    freeze(f, RECONCILE_FREEZE_SERVICE, "cache", "a5", 0);
    freeze(f, RECONCILE_FREEZE_SITE, "south", NULL, NOW + HOUR);
    window(f, "east-nightly", RECONCILE_WINDOW_SITE, "east",
           RECONCILE_WINDOW_AUTO_INSIDE_ONLY, false);
    window(f, "a2-freeze", RECONCILE_WINDOW_AGENT, "a2",
           RECONCILE_WINDOW_NEVER_INSIDE, true);
    f->sites[0] = (struct reconcile_site_count){"north", 1};
    f->in.guard.n_sites = 1;
}

/* Every field of @o as text (malloc). */
static char *dump(const struct reconcile_output *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    size_t i;
    int s;

    assert_non_null(fp);
    for (i = 0; i < o->n_drifts; i++) {
        const struct reconcile_drift *d = &o->drifts[i];
        fprintf(fp, "drift %s/%s %s %s@%" PRIu64 " %d %s | %s %s %s | %s\n",
                d->agent, d->service, reconcile_drift_kind_name(d->kind),
                d->policy, d->revision, d->criticality, d->detail,
                reconcile_level_name(d->level),
                reconcile_action_name(d->action), d->reason,
                reconcile_state_name(d->state));
    }
    for (i = 0; i < o->n_commands; i++) {
        const struct reconcile_command *c = &o->commands[i];
        fprintf(fp, "command %s/%s %d %d %.*s %" PRIx64 " %" PRIu64 " %s %s\n",
                c->agent, c->service, c->action, c->command,
                (int)c->manifest_len, c->manifest ? c->manifest : "", c->digest,
                c->ttl_ms, c->policy, c->reason);
    }
    for (i = 0; i < o->n_holds; i++) {
        fprintf(fp, "hold %s/%s %d %s %s\n", o->holds[i].agent,
                o->holds[i].service, o->holds[i].action,
                reconcile_guardrail_name(o->holds[i].guardrail),
                o->holds[i].detail);
    }
    for (i = 0; i < o->n_incidents; i++) {
        fprintf(fp, "incident %s/%s %d %s %u %s\n", o->incidents[i].agent,
                o->incidents[i].service, o->incidents[i].kind,
                o->incidents[i].policy, o->incidents[i].attempts,
                o->incidents[i].detail);
    }
    for (i = 0; i < o->n_updates; i++) {
        const struct reconcile_update *u = &o->updates[i];
        fprintf(
            fp,
            "update %d %s/%s %u %" PRIu64 " %d %d %" PRIx64 " %" PRIx64 "\n",
            u->kind, u->agent, u->record.service, u->record.attempts,
            u->record.last_attempt_ms, u->record.last_action, u->record.outcome,
            u->record.pending_digest, u->record.deployed_digest);
    }
    for (i = 0; i < o->n_conflicts; i++) {
        fprintf(fp, "conflict %s/%s %s %s\n", o->conflicts[i].agent,
                o->conflicts[i].service, o->conflicts[i].policy,
                o->conflicts[i].shadowed);
    }
#define SUMMARY(kind, x)                                                       \
    do {                                                                       \
        fprintf(fp, "%s %s %s %zu:", kind, (x)->name,                          \
                reconcile_state_name((x)->state), (x)->total);                 \
        for (s = 1; s < RECONCILE_STATE_NR; s++) {                             \
            fprintf(fp, " %zu", (x)->counts[s]);                               \
        }                                                                      \
        fprintf(fp, "\n");                                                     \
    } while (0)
    for (i = 0; i < o->n_services; i++) {
        SUMMARY("service", &o->services[i]);
    }
    for (i = 0; i < o->n_agents; i++) {
        SUMMARY("agent", &o->agents[i]);
    }
    for (i = 0; i < o->n_sites; i++) {
        SUMMARY("site", &o->sites[i]);
    }
    SUMMARY("cluster", &o->cluster);
#undef SUMMARY
    fclose(fp);
    return buf;
}

static void shuffle(void *base, size_t n, size_t size, uint64_t *s)
{
    char tmp[sizeof(struct reconcile_agent) > sizeof(struct reconcile_policy)
                 ? sizeof(struct reconcile_agent) + 64
                 : sizeof(struct reconcile_policy) + 64];
    size_t i;
    assert_true(size <= sizeof tmp);
    for (i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(s) % i);
        memcpy(tmp, (char *)base + (i - 1) * size, size);
        memcpy((char *)base + (i - 1) * size, (char *)base + j * size, size);
        memcpy((char *)base + j * size, tmp, size);
    }
}

/* The same input, in any order, gives the same output, byte for byte. */
static void determinism(void **state)
{
    struct fixture *f = *state;
    uint64_t seed;

    for (seed = 1; seed <= 20; seed++) {
        uint64_t s = seed * 7919;
        char *first;
        char *again;
        char *shuffled;
        size_t i;

        print_message("seed %" PRIu64 "\n", seed);
        scenario(f, seed);
        run(f);
        first = dump(&f->out);
        if (seed == 1 && getenv("RECONCILE_DUMP") != NULL) {
            fputs(first, stderr);
        }
        run(f);
        again = dump(&f->out);
        assert_string_equal(first, again);
        assert_true(f->out.n_drifts > 10);
        if (seed == 1) {
            assert_true(f->out.n_commands > 0);
            assert_true(f->out.n_holds > 0);
        }

        /* Shuffle every array; the per-agent arrays move with the agent
         * (their pointers stay valid). */
        for (i = 0; i < f->in.n_agents; i++) {
            shuffle(f->svc[i], f->ag[i].n_services, sizeof f->svc[i][0], &s);
            shuffle(f->rec[i], f->ag[i].n_records, sizeof f->rec[i][0], &s);
            shuffle(f->labels[i], f->ag[i].n_labels, sizeof f->labels[i][0],
                    &s);
        }
        shuffle(f->ag, f->in.n_agents, sizeof f->ag[0], &s);
        shuffle(f->pol, f->in.n_policies, sizeof f->pol[0], &s);
        shuffle(f->incidents, f->in.guard.n_incidents, sizeof f->incidents[0],
                &s);
        shuffle(f->freezes, f->in.guard.n_freezes, sizeof f->freezes[0], &s);
        shuffle(f->windows, f->in.guard.n_windows, sizeof f->windows[0], &s);
        run(f);
        shuffled = dump(&f->out);
        assert_string_equal(first, shuffled);
        free(first);
        free(again);
        free(shuffled);
    }
}

/* ------------------------------------------------------------------------
 * Loading stored agents; allocation failures
 * --------------------------------------------------------------------- */

static void agent_load(void **state)
{
    struct fixture *f = *state;
    static const char labels[] = "{\"site\":\"north\",\"role\":\"gw\"}";
    static const char services[] =
        "{\"db\":{\"generation\":3,\"health\":\"unhealthy\",\"ready\":false,"
        "\"since_ms\":1700000000000,\"state\":\"backoff\",\"exit_code\":3,"
        "\"message\":\"exited with 3\"},"
        "\"web\":{\"generation\":1,\"health\":\"healthy\",\"ready\":true,"
        "\"since_ms\":5,\"state\":\"running\"}}";
    struct reconcile_agent a = {0};
    struct reconcile_agent untouched;

    assert_int_equal(
        reconcile_agent_load("edge-1", 6, labels, sizeof labels - 1, services,
                             sizeof services - 1, true, &a, f->errmsg),
        0);
    assert_string_equal(a.id, "edge-1");
    assert_true(a.online);
    assert_int_equal(a.n_labels, 2);
    assert_string_equal(a.labels[0].key, "site");
    assert_string_equal(a.labels[0].value, "north");
    assert_int_equal(a.n_services, 2);
    assert_string_equal(a.services[0].name, "db");
    assert_int_equal(a.services[0].state, PROTO_STATE_BACKOFF);
    assert_int_equal(a.services[0].health, PROTO_HEALTH_UNHEALTHY);
    assert_false(a.services[0].ready);
    assert_int_equal(a.services[0].generation, 3);
    assert_int_equal(a.services[0].since_ms, NOW);
    assert_true(a.services[0].has_exit_code);
    assert_int_equal(a.services[0].exit_code, 3);
    assert_string_equal(a.services[0].message, "exited with 3");
    assert_int_equal(a.services[1].state, PROTO_STATE_RUNNING);
    assert_false(a.services[1].has_exit_code);
    assert_string_equal(a.services[1].message, "");
    assert_int_equal(a.n_records, 0);
    reconcile_agent_clear(&a);
    assert_null(a.id);

    /* Nothing reported yet. */
    assert_int_equal(
        reconcile_agent_load("edge-2", 6, "{}", 2, "", 0, false, &a, f->errmsg),
        0);
    assert_int_equal(a.n_services, 0);
    assert_int_equal(a.n_labels, 0);
    assert_false(a.online);
    reconcile_agent_clear(&a);

    memset(&untouched, 0x33, sizeof untouched);
    a = untouched;
    assert_int_equal(
        reconcile_agent_load("x", 1, "[]", 2, "", 0, true, &a, f->errmsg),
        REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "labels: must be a JSON object");
    assert_int_equal(reconcile_agent_load("x", 1, "{}", 2,
                                          "{\"w\":{\"state\":\"dancing\"}}", 25,
                                          true, &a, f->errmsg),
                     REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "services.w.state: must be a state name");
    assert_int_equal(reconcile_agent_load("x", 1, "{\"k\":1}", 7, "", 0, true,
                                          &a, f->errmsg),
                     REMS_ECORRUPT);
    assert_string_equal(f->errmsg, "labels.k: must be a string");
    assert_memory_equal(&a, &untouched, sizeof a);
    reconcile_agent_clear(NULL);
}

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM and no leak,
 * and leaves the output untouched. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct reconcile_output out;
    struct reconcile_agent a;
    struct reconcile_desired *d;
    size_t n_d;
    long live;
    long n;
    int rv;

    scenario(f, 1);
    live = f->heap.live;
    for (n = 0;; n++) {
        memset(&out, 0, sizeof out);
        test_heap_fail_after(&f->heap, n);
        rv = reconcile_pass(&f->in, NOW, &out, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(out.priv);
        assert_int_equal(f->heap.live, live);
    }
    assert_true(n > 10);
    reconcile_output_close(&out);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = reconcile_agent_load("edge-1", 6, "{\"a\":\"b\"}", 9,
                                  "{\"w\":{\"state\":\"running\"}}", 25, true,
                                  &a, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(f->heap.live, live);
    }
    reconcile_agent_clear(&a);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = reconcile_resolve(f->pol, f->in.n_policies, "a1", NULL, 0, &d,
                               &n_d, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(f->heap.live, live);
    }
    assert_int_equal(n_d, 3);
    rems_free(d);
}

/* The wire names. */
static void names(void **state)
{
    (void)state;
    assert_string_equal(reconcile_drift_kind_name(D_OFFLINE), "offline_agent");
    assert_string_equal(reconcile_drift_kind_name(0), "?");
    assert_string_equal(reconcile_drift_kind_name(RECONCILE_DRIFT_NR), "?");
    assert_string_equal(reconcile_level_name(BLK), "reconcile_blocked");
    assert_string_equal(
        reconcile_action_name(RECONCILE_ACTION_DELAYED_DEPLOYMENT),
        "delayed_deployment");
    assert_string_equal(reconcile_state_name(S_REC), "reconciling");
    assert_string_equal(reconcile_guardrail_name(RECONCILE_GUARD_RATE_GLOBAL),
                        "rate_global");
    assert_string_equal(reconcile_outcome_name(RECONCILE_OUTCOME_NONE), "none");
    assert_string_equal(reconcile_outcome_name(RECONCILE_OUTCOME_NR), "?");
    assert_int_equal(reconcile_action_command(A_FAILOVER), 0);
    assert_int_equal(reconcile_action_command(RECONCILE_ACTION_STOP),
                     PROTO_ACTION_STOP);
    assert_int_equal(reconcile_action_command(A_DIAG),
                     PROTO_ACTION_DIAGNOSTICS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(drift_table, setup, teardown),
        cmocka_unit_test_setup_teardown(drift_details, setup, teardown),
        cmocka_unit_test_setup_teardown(unexpected_service, setup, teardown),
        cmocka_unit_test_setup_teardown(dependency_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(incident_without_service, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(guard_table, setup, teardown),
        cmocka_unit_test_setup_teardown(hold_details, setup, teardown),
        cmocka_unit_test_setup_teardown(limits_within_a_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(redeploy_and_records, setup, teardown),
        cmocka_unit_test_setup_teardown(record_reset_and_delete, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(escalation, setup, teardown),
        cmocka_unit_test_setup_teardown(summary_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_placements, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_input, setup, teardown),
        cmocka_unit_test(windows),
        cmocka_unit_test_setup_teardown(determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(agent_load, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_memory, setup, teardown),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests_name("reconcile", tests, NULL, NULL);
}
