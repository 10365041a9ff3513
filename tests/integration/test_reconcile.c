/* Integration: the reconciler with real remsd nodes and a real rems-agent
 * over mTLS on loopback (certificates from tests/lib/make-test-ca.sh).
 *
 *   auto_restarts_killed_service  a policy in mode auto places a service
 *       the agent does not run: the leader deploys it (push_manifest); its
 *       process is then SIGKILLed (restart policy temporary, so the agent
 *       does not restart it): the leader starts it again, and the cluster
 *       summary is nominal.
 *   recommend_mode_only_recommends  the same in mode recommend: nothing is
 *       issued, the recommendation (redeploy, required) is shown.
 *   crash_loop_blocked_with_incident  a service that exits at once, in
 *       mode auto with max_attempts 2: after two remediations the drift is
 *       blocked and an incident is open; resolving it (who and why in the
 *       incident) gives the service new attempts.
 *   bad_revision_rolled_back  v1 of a policy rolls out to three agents
 *       (canary, then batches of one, each behind the health gate); v2
 *       crashes on its canary, the gate times out and v2 is rolled back:
 *       the policy holds v1 again, the canary runs v1, the others never
 *       saw v2.
 *   leader_killed_mid_rollout  the leader is SIGKILLed while v1 waits in
 *       its canary's gate: the new leader continues the rollout from the
 *       replicated stage and every agent gets v1 exactly once.
 *   rollout_operations  pause, resume, abort and rollback through a
 *       follower, with who and why; refusals name the field and state.
 *
 * The nodes run a pass every 200 ms with a 1.5 s grace. Each service
 * appends a line to <dir>/<name>.count when it starts and writes its pid
 * to <dir>/<name>.pid. */
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
#include <sys/types.h>

#include "tests/lib/proc.h"

#define WAIT_MS 20000

#define N_AGENTS 3

/* Agents edge-1 .. edge-3 (certificates from REMS_TEST_AGENTS), labels
 * site=lab; the tests start the ones they need. */
struct agent {
    char id[16];
    char config[TEST_PATH_SIZE];
    char log[TEST_PATH_SIZE];
    char dir[TEST_PATH_SIZE];
    struct test_proc proc;
};

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    size_t follower;
    char certs[TEST_PATH_SIZE];
    struct agent agents[N_AGENTS];
    bool passed;
};

static const char *const extra_args[] = {
    "--forward-timeout-ms",    "2000", "--lease-ttl-ms",       "1500",
    "--agent-heartbeat-ms",    "250",  "--reconcile-interval-ms", "200",
    "--reconcile-grace-ms",    "1500", "--reconcile-command-ttl-ms", "10000",
    "--reconcile-max-per-agent", "50",
    NULL,
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

/* A cluster of three with agent listeners, and the configurations of
 * agents edge-1 .. edge-3 (labels site=lab, no service). */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char cmd[2 * TEST_PATH_SIZE];
    char cert[TEST_PATH_SIZE];
    char key[TEST_PATH_SIZE];
    char ca[TEST_PATH_SIZE];
    FILE *fp;
    size_t i;
    size_t k;

    assert_non_null(f);
    test_cluster_init(&f->c, 3, extra_args);
    snprintf(f->certs, sizeof f->certs, "%s/certs", f->c.dir);
    snprintf(cmd, sizeof cmd,
             "REMS_TEST_AGENTS='edge-1 edge-2 edge-3' sh '%s' '%s' "
             ">'%s/certs.log' 2>&1",
             REMS_MAKE_TEST_CA, f->certs, f->c.dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof cert, "%s/node1.pem", f->certs);
    snprintf(key, sizeof key, "%s/node1.key", f->certs);
    snprintf(ca, sizeof ca, "%s/ca.pem", f->certs);
    test_cluster_enable_agents(&f->c, cert, key, ca);
    test_cluster_start(&f->c);
    assert_true(test_cluster_wait_leader(&f->c, WAIT_MS, &f->leader));
    f->follower = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    assert_true(f->follower != SIZE_MAX);

    for (i = 0; i < N_AGENTS; i++) {
        struct agent *a = &f->agents[i];
        char id[16];
        /* From a local copy: the compiler cannot tell a's fields apart. */
        snprintf(id, sizeof id, "edge-%zu", i + 1);
        memcpy(a->id, id, sizeof id);
        snprintf(a->dir, sizeof a->dir, "%s/%s", f->c.dir, id);
        snprintf(a->config, sizeof a->config, "%s/%s.yaml", f->c.dir, id);
        snprintf(a->log, sizeof a->log, "%s/%s.log", f->c.dir, id);
        fp = fopen(a->config, "w");
        assert_non_null(fp);
        fprintf(fp, "id: %s\nendpoints:\n", a->id);
        for (k = 0; k < f->c.n; k++) {
            fprintf(fp, "  - %s\n", f->c.nodes[k].agent_address);
        }
        fprintf(fp,
                "tls:\n"
                "  cert: %s/%s.pem\n"
                "  key: %s/%s.key\n"
                "  ca: %s\n"
                "data_dir: %s\n"
                "labels: {site: lab}\n"
                "reconnect: {initial_ms: 100, max_ms: 500, "
                "connect_timeout_ms: 2000}\n",
                f->certs, a->id, f->certs, a->id, ca, a->dir);
        fclose(fp);
    }
    *state = f;
    return 0;
}

static void dump_file(const char *what, const char *path)
{
    char *text = test_read_file(path);
    if (text != NULL) {
        size_t len = strlen(text);
        fprintf(stderr, "---- %s (%s), last 6000 bytes:\n%s\n", what, path,
                text + (len > 6000 ? len - 6000 : 0));
        free(text);
    }
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean;

    size_t i;

    for (i = 0; i < N_AGENTS; i++) {
        struct agent *a = &f->agents[i];
        if (test_proc_running(&a->proc)) {
            test_proc_stop(&a->proc, 10000);
        }
        if (!passed && a->proc.pid != 0) {
            dump_file(a->id, a->log);
        }
    }
    clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers.                                                             */

static void agent_start(struct fixture *f, size_t i)
{
    struct agent *a = &f->agents[i];
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

struct runs_wait {
    struct fixture *f;
    const char *name;
    int want;
    int seen;
};

static bool runs_reached(void *arg)
{
    struct runs_wait *w = arg;
    w->seen = runs(w->f, w->name);
    return w->seen >= w->want;
}

/* Wait until service @name has started @want times; fail on more. */
static void wait_runs(struct fixture *f, const char *name, int want)
{
    struct runs_wait w = {f, name, want, 0};
    if (!test_wait_for(runs_reached, &w, WAIT_MS)) {
        fprintf(stderr, "service %s started %d times, want %d\n", name,
                w.seen, want);
        fail();
    }
    assert_int_equal(w.seen, want);
}

static pid_t service_pid(struct fixture *f, const char *name)
{
    char path[TEST_PATH_SIZE];
    char *text;
    long pid;
    snprintf(path, sizeof path, "%s/%s.pid", f->c.dir, name);
    text = test_read_file(path);
    if (text == NULL) {
        return 0;
    }
    pid = strtol(text, NULL, 10);
    free(text);
    return (pid_t)pid;
}

/* The service object of a policy: records its starts and pid, then sleeps
 * (or, with @crash, exits 1 at once). */
static void service_json(char *out,
                         size_t size,
                         struct fixture *f,
                         const char *name,
                         bool crash)
{
    snprintf(out, size,
             "{\"name\":\"%s\",\"command\":[\"/bin/sh\",\"-c\","
             "\"echo run >> %s/%s.count; echo $$ > %s/%s.pid; %s\"],"
             "\"restart\":\"temporary\",\"stop_timeout_ms\":2000,"
             "\"criticality\":\"critical\"}",
             name, f->c.dir, name, f->c.dir, name,
             crash ? "exit 1" : "exec sleep 1000");
}

/* PUT the document @body as policy @key through a follower. */
static void put_doc(struct fixture *f, const char *key, const char *body)
{
    char path[128];
    long status;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s", key);
    o = test_cluster_call(&f->c, f->follower, "PUT", path, NULL, body,
                          &status, NULL);
    if (status != 200 && status != 201) {
        char *t = o != NULL ? json_dumps(o, 0) : NULL;
        fprintf(stderr, "PUT %s: %ld %s\n", path, status, t != NULL ? t : "");
        free(t);
        fail();
    }
    json_decref(o);
}

/* PUT policy @key placing @services on edge-1 (a failed rollout gate
 * pauses the rollout: the crash loop stays for the incident to show). */
static void put_policy(struct fixture *f,
                       const char *key,
                       const char *mode,
                       const char *services,
                       const char *remediation)
{
    char body[4096];
    snprintf(body, sizeof body,
             "{\"placement\":{\"agents\":[\"edge-1\"]},\"mode\":\"%s\","
             "\"services\":[%s],\"remediation\":%s,"
             "\"rollout\":{\"health_gate_ms\":500,\"auto_rollback\":false}}",
             mode, services, remediation);
    put_doc(f, key, body);
}

/* GET @path from node @node; the body (the caller releases it) or NULL. */
static json_t *get(struct fixture *f, size_t node, const char *path)
{
    long status;
    json_t *o = test_cluster_call(&f->c, node, "GET", path, NULL, NULL,
                                  &status, NULL);
    if (status != 200) {
        json_decref(o);
        return NULL;
    }
    return o;
}

struct cmd_count {
    struct fixture *f;
    const char *agent;
    const char *action;
    const char *service;
    const char *state; /* NULL: any */
    int want;          /* at least */
    int seen;
};

/* Commands of @agent issued by the reconciler with @action on @service. */
static int reconciler_commands(struct fixture *f,
                               const char *agent,
                               const char *action,
                               const char *service,
                               const char *state)
{
    char path[128];
    json_t *o;
    json_t *items;
    json_t *it;
    size_t i;
    int n = 0;
    snprintf(path, sizeof path,
             "/v1/commands?agent=%s&limit=1000&consistency=stale", agent);
    o = get(f, f->follower, path);
    if (o == NULL) {
        return -1;
    }
    items = json_object_get(o, "items");
    json_array_foreach(items, i, it)
    {
        const char *by = json_string_value(json_object_get(it, "requested_by"));
        const char *a = json_string_value(json_object_get(it, "action"));
        const char *s = json_string_value(json_object_get(it, "service"));
        const char *st = json_string_value(json_object_get(it, "state"));
        if (by != NULL && strcmp(by, "reconciler") == 0 && a != NULL &&
            strcmp(a, action) == 0 && s != NULL && strcmp(s, service) == 0 &&
            (state == NULL || (st != NULL && strcmp(st, state) == 0))) {
            n++;
        }
    }
    json_decref(o);
    return n;
}

static bool commands_reached(void *arg)
{
    struct cmd_count *w = arg;
    w->seen =
        reconciler_commands(w->f, w->agent, w->action, w->service, w->state);
    return w->seen >= w->want;
}

static void wait_commands(struct fixture *f,
                          const char *agent,
                          const char *action,
                          const char *service,
                          const char *state,
                          int want)
{
    struct cmd_count w = {f, agent, action, service, state, want, 0};
    if (!test_wait_for(commands_reached, &w, WAIT_MS)) {
        fprintf(stderr, "%d %s command(s) of %s/%s in state %s, want %d\n",
                w.seen, action, agent, service,
                state != NULL ? state : "any", want);
        fail();
    }
}

/* The service @name as @agent last reported it: its state, or "". */
static void reported_state(struct fixture *f,
                           const char *agent,
                           const char *name,
                           char *out,
                           size_t size)
{
    char path[128];
    json_t *o;
    json_t *svc;
    out[0] = '\0';
    snprintf(path, sizeof path, "/v1/agents/%s?consistency=stale", agent);
    o = get(f, f->follower, path);
    if (o == NULL) {
        return;
    }
    svc = json_object_get(json_object_get(o, "services"), name);
    if (json_is_object(svc)) {
        const char *s = json_string_value(json_object_get(svc, "state"));
        bool ready = json_is_true(json_object_get(svc, "ready"));
        snprintf(out, size, "%s%s", s != NULL ? s : "",
                 s != NULL && strcmp(s, "running") == 0 && ready ? "+ready"
                                                                 : "");
    }
    json_decref(o);
}

struct state_wait {
    struct fixture *f;
    const char *agent;
    const char *name;
    const char *want;
    char seen[64];
};

static bool state_is(void *arg)
{
    struct state_wait *w = arg;
    reported_state(w->f, w->agent, w->name, w->seen, sizeof w->seen);
    return strcmp(w->seen, w->want) == 0;
}

static void wait_reported(struct fixture *f,
                          const char *agent,
                          const char *name,
                          const char *want)
{
    struct state_wait w = {f, agent, name, want, ""};
    if (!test_wait_for(state_is, &w, WAIT_MS)) {
        fprintf(stderr, "service %s/%s is \"%s\", want \"%s\"\n", agent, name,
                w.seen, want);
        fail();
    }
}

/* The cluster's summary state from node @node, or "" when unavailable. */
static void summary_state(struct fixture *f, size_t node, char *out, size_t n)
{
    json_t *o = get(f, node, "/v1/summary");
    const char *s;
    out[0] = '\0';
    if (o == NULL) {
        return;
    }
    s = json_string_value(
        json_object_get(json_object_get(o, "cluster"), "state"));
    snprintf(out, n, "%s", s != NULL ? s : "");
    json_decref(o);
}

struct summary_wait {
    struct fixture *f;
    size_t node;
    const char *want;
    char seen[32];
};

static bool summary_is(void *arg)
{
    struct summary_wait *w = arg;
    summary_state(w->f, w->node, w->seen, sizeof w->seen);
    return strcmp(w->seen, w->want) == 0;
}

static void wait_summary(struct fixture *f, size_t node, const char *want)
{
    struct summary_wait w = {f, node, want, ""};
    if (!test_wait_for(summary_is, &w, WAIT_MS)) {
        fprintf(stderr, "summary on node %zu is \"%s\", want \"%s\"\n", node,
                w.seen, want);
        fail();
    }
}

/* ------------------------------------------------------------------ */
/* Tests.                                                               */

static void auto_restarts_killed_service(void **state)
{
    struct fixture *f = *state;
    char svc[1024];
    pid_t pid;

    agent_start(f, 0);

    service_json(svc, sizeof svc, f, "web", false);
    put_policy(f, "lab/web", "auto", svc,
               "{\"max_attempts\":3,\"backoff_ms\":0,"
               "\"reset_after_ms\":60000}");
    /* Deployed: the manifest pushed by the reconciler, then started. */
    wait_commands(f, "edge-1", "push_manifest", "web", "acked", 1);
    wait_reported(f, "edge-1", "web", "running+ready");
    wait_runs(f, "web", 1);
    wait_summary(f, f->follower, "nominal");

    /* Killed behind the agent's back: temporary, so the agent leaves it
     * failed; the leader starts it. */
    pid = service_pid(f, "web");
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    wait_commands(f, "edge-1", "start", "web", "acked", 1);
    wait_reported(f, "edge-1", "web", "running+ready");
    wait_runs(f, "web", 2);
    wait_summary(f, f->follower, "nominal");
    wait_summary(f, f->leader.index, "nominal");
    /* Nothing more was needed. */
    assert_int_equal(reconciler_commands(f, "edge-1", "push_manifest", "web", NULL), 1);
    assert_int_equal(reconciler_commands(f, "edge-1", "start", "web", NULL), 1);
    f->passed = true;
}

static void recommend_mode_only_recommends(void **state)
{
    struct fixture *f = *state;
    char svc[1024];
    json_t *o;
    json_t *items;
    json_t *it;
    size_t i;
    bool found = false;

    agent_start(f, 0);

    service_json(svc, sizeof svc, f, "db", false);
    put_policy(f, "lab/db", "recommend", svc,
               "{\"max_attempts\":3,\"backoff_ms\":0,"
               "\"reset_after_ms\":60000}");
    /* Ten passes or more. */
    test_sleep_ms(2500);
    assert_int_equal(reconciler_commands(f, "edge-1", "push_manifest", "db", NULL), 0);
    assert_int_equal(runs(f, "db"), 0);
    o = get(f, f->follower, "/v1/recommendations");
    assert_non_null(o);
    items = json_object_get(o, "items");
    json_array_foreach(items, i, it)
    {
        const char *agent = json_string_value(json_object_get(it, "agent"));
        const char *service =
            json_string_value(json_object_get(it, "service"));
        if (agent != NULL && strcmp(agent, "edge-1") == 0 && service != NULL &&
            strcmp(service, "db") == 0) {
            assert_string_equal(
                json_string_value(json_object_get(it, "level")),
                "reconcile_required");
            assert_string_equal(
                json_string_value(json_object_get(it, "action")), "redeploy");
            found = true;
        }
    }
    json_decref(o);
    assert_true(found);
    /* Critical and missing: the cluster is unstable. */
    wait_summary(f, f->follower, "unstable");
    f->passed = true;
}

struct incident_wait {
    struct fixture *f;
    const char *service;
    json_int_t id;
    const char *state;
};

static bool incident_found(void *arg)
{
    struct incident_wait *w = arg;
    json_t *o = get(w->f, w->f->follower,
                    "/v1/incidents?consistency=stale");
    json_t *it;
    size_t i;
    if (o == NULL) {
        return false;
    }
    json_array_foreach(json_object_get(o, "items"), i, it)
    {
        const char *s = json_string_value(json_object_get(it, "service"));
        const char *st = json_string_value(json_object_get(it, "state"));
        if (s != NULL && strcmp(s, w->service) == 0 && st != NULL &&
            strcmp(st, w->state) == 0) {
            w->id = json_integer_value(json_object_get(it, "id"));
            json_decref(o);
            return true;
        }
    }
    json_decref(o);
    return false;
}

static void crash_loop_blocked_with_incident(void **state)
{
    struct fixture *f = *state;
    struct incident_wait w = {f, "crashy", 0, "open"};
    char svc[1024];
    char path[128];
    long status;
    json_t *o;
    int starts;

    agent_start(f, 0);

    service_json(svc, sizeof svc, f, "crashy", true);
    put_policy(f, "lab/crashy", "auto", svc,
               "{\"max_attempts\":2,\"backoff_ms\":300,"
               "\"reset_after_ms\":600000}");
    /* Deployed (attempt 1), fails; started again (attempt 2), fails:
     * blocked, and an incident opens. */
    if (!test_wait_for(incident_found, &w, WAIT_MS)) {
        fprintf(stderr, "no open incident for crashy\n");
        fail();
    }
    starts = reconciler_commands(f, "edge-1", "push_manifest", "crashy", NULL) +
             reconciler_commands(f, "edge-1", "start", "crashy", NULL);
    assert_int_equal(starts, 2);
    /* Blocked: no third attempt, however long we wait. */
    test_sleep_ms(1500);
    assert_int_equal(reconciler_commands(f, "edge-1", "push_manifest", "crashy", NULL) +
                         reconciler_commands(f, "edge-1", "start", "crashy", NULL),
                     2);
    wait_summary(f, f->follower, "unstable");

    /* Resolved by an operator: new attempts. */
    snprintf(path, sizeof path, "/v1/incidents/%lld/resolve",
             (long long)w.id);
    {
        const char *hdr[] = {"X-Rems-User: alice",
                             "X-Rems-Reason: fixed the binary", NULL};
        o = test_cluster_call(&f->c, f->follower, "POST", path, hdr,
                              "{}", &status, NULL);
    }
    assert_int_equal(status, 200);
    json_decref(o);
    w.state = "resolved";
    assert_true(test_wait_for(incident_found, &w, WAIT_MS));
    wait_commands(f, "edge-1", "start", "crashy", NULL, 2);
    f->passed = true;
}

/* The document of site=lab's policy lab/app at version @v: service app
 * (crashing when @bad), canary one agent, then batches of one, a short
 * health gate; the gate fails after @gate_timeout_ms. */
static void app_doc(char *out,
                    size_t size,
                    struct fixture *f,
                    int v,
                    bool bad,
                    unsigned health_gate_ms,
                    unsigned gate_timeout_ms)
{
    char svc[1024];
    service_json(svc, sizeof svc, f, "app", bad);
    snprintf(out, size,
             "{\"placement\":{\"selector\":{\"match_labels\":"
             "{\"site\":\"lab\"}}},\"mode\":\"auto\",\"services\":[%s],"
             "\"metadata\":{\"v\":%d},"
             "\"rollout\":{\"canary\":1,\"health_gate_ms\":%u,"
             "\"gate_timeout_ms\":%u,\"batch_size\":1,"
             "\"batch_pause_ms\":0,\"auto_rollback\":true},"
             "\"remediation\":{\"max_attempts\":5,\"backoff_ms\":1000,"
             "\"reset_after_ms\":1000}}",
             svc, v, health_gate_ms, gate_timeout_ms);
}

/* metadata.v of the stored lab/app and its revision. */
static int app_version(struct fixture *f, json_int_t *revision)
{
    json_t *o = get(f, f->follower, "/v1/policies/lab/app");
    json_t *doc;
    int v = -1;
    if (o == NULL) {
        return -1;
    }
    doc = json_object_get(o, "value");
    v = (int)json_integer_value(
        json_object_get(json_object_get(doc, "metadata"), "v"));
    if (revision != NULL) {
        *revision = json_integer_value(json_object_get(o, "revision"));
    }
    json_decref(o);
    return v;
}

struct version_wait {
    struct fixture *f;
    int want;
    int seen;
};

static bool version_is(void *arg)
{
    struct version_wait *w = arg;
    w->seen = app_version(w->f, NULL);
    return w->seen == w->want;
}

struct online_wait {
    struct fixture *f;
    const char *id;
};

static bool agent_online(void *arg)
{
    struct online_wait *w = arg;
    char path[128];
    json_t *o;
    bool ok;
    snprintf(path, sizeof path, "/v1/agents/%s?consistency=stale", w->id);
    o = get(w->f, w->f->follower, path);
    ok = o != NULL && json_is_true(json_object_get(o, "online"));
    json_decref(o);
    return ok;
}

/* Start every agent and wait until each holds a lease. */
static void start_all(struct fixture *f)
{
    size_t i;
    for (i = 0; i < N_AGENTS; i++) {
        agent_start(f, i);
    }
    for (i = 0; i < N_AGENTS; i++) {
        struct online_wait w = {f, f->agents[i].id};
        if (!test_wait_for(agent_online, &w, WAIT_MS)) {
            fprintf(stderr, "agent %s not online\n", w.id);
            fail();
        }
    }
}

static void all_running(struct fixture *f, const char *service)
{
    size_t i;
    for (i = 0; i < N_AGENTS; i++) {
        wait_reported(f, f->agents[i].id, service, "running+ready");
    }
}

/* The rollout of lab/app as node @node has it (NULL when none). */
static json_t *rollout_get(struct fixture *f, size_t node)
{
    return get(f, node, "/v1/rollouts/lab/app?consistency=stale");
}

struct rollout_wait {
    struct fixture *f;
    const char *state;
    const char *stage; /* NULL: any */
    json_int_t n_reached; /* -1: any */
    char seen[128];
};

static bool rollout_is(void *arg)
{
    struct rollout_wait *w = arg;
    json_t *o = rollout_get(w->f, w->f->follower);
    const char *state;
    const char *stage;
    json_int_t n;
    bool ok;
    if (o == NULL) {
        snprintf(w->seen, sizeof w->seen, "none");
        return false;
    }
    state = json_string_value(json_object_get(o, "state"));
    stage = json_string_value(json_object_get(o, "stage"));
    n = json_integer_value(json_object_get(o, "n_reached"));
    snprintf(w->seen, sizeof w->seen, "%s/%s/%lld", state ? state : "?",
             stage ? stage : "?", (long long)n);
    ok = state != NULL && strcmp(state, w->state) == 0 &&
         (w->stage == NULL || (stage != NULL && strcmp(stage, w->stage) == 0)) &&
         (w->n_reached < 0 || n == w->n_reached);
    json_decref(o);
    return ok;
}

static void wait_rollout(struct fixture *f,
                         const char *state,
                         const char *stage,
                         json_int_t n_reached)
{
    struct rollout_wait w = {f, state, stage, n_reached, ""};
    if (!test_wait_for(rollout_is, &w, WAIT_MS)) {
        fprintf(stderr, "rollout of lab/app is %s, want %s/%s/%lld\n", w.seen,
                state, stage != NULL ? stage : "*", (long long)n_reached);
        fail();
    }
}

/* POST an operation on the rollout of @key through a follower as bob;
 * the status, and the body in *@out (released by the caller). */
static long rollout_op(struct fixture *f,
                       const char *key,
                       const char *body,
                       json_t **out)
{
    const char *hdr[] = {"X-Rems-User: bob", "X-Rems-Reason: drill", NULL};
    char path[128];
    long status;
    snprintf(path, sizeof path, "/v1/rollouts/%s", key);
    *out = test_cluster_call(&f->c, f->follower, "POST", path, hdr, body,
                             &status, NULL);
    return status;
}

static const char *error_field(json_t *o)
{
    return json_string_value(
        json_object_get(json_object_get(o, "error"), "field"));
}

/* v1 rolls out to the three agents, one at a time; v2 crashes on its
 * canary, fails the gate (not healthy within gate_timeout_ms) and is
 * rolled back: the policy holds v1 again at a new revision, the canary
 * runs v1 again, and the other agents never saw v2. */
static void bad_revision_rolled_back(void **state)
{
    struct fixture *f = *state;
    struct version_wait vw = {f, 1, 0};
    char doc[4096];
    json_int_t rev2;
    json_int_t rev3;
    size_t i;

    start_all(f);
    app_doc(doc, sizeof doc, f, 1, false, 300, 10000);
    put_doc(f, "lab/app", doc);
    all_running(f, "app");
    for (i = 0; i < N_AGENTS; i++) {
        wait_commands(f, f->agents[i].id, "push_manifest", "app", "acked", 1);
    }
    /* Let the records' counts reset (reset_after_ms). */
    test_sleep_ms(1500);

    app_doc(doc, sizeof doc, f, 2, true, 300, 3000);
    put_doc(f, "lab/app", doc);
    assert_int_equal(app_version(f, &rev2), 2);
    /* The canary (edge-1, first by id) gets v2, which crashes. */
    wait_commands(f, "edge-1", "push_manifest", "app", "acked", 2);
    /* Rolled back once the gate times out. */
    if (!test_wait_for(version_is, &vw, WAIT_MS)) {
        fprintf(stderr, "lab/app holds v%d, want v1 (rolled back)\n",
                vw.seen);
        fail();
    }
    assert_int_equal(app_version(f, &rev3), 1);
    assert_true(rev3 > rev2);
    {
        json_t *o = rollout_get(f, f->follower);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "state")),
                            "rolled_back");
        assert_int_equal(json_integer_value(
                             json_object_get(o, "rollback_revision")),
                         rev3);
        assert_int_equal(
            json_integer_value(json_object_get(o, "target_revision")), rev2);
        assert_non_null(strstr(
            json_string_value(json_object_get(o, "message")), "gate of batch 0"));
        json_decref(o);
    }
    /* The canary runs v1 again. */
    wait_commands(f, "edge-1", "push_manifest", "app", "acked", 3);
    wait_reported(f, "edge-1", "app", "running+ready");
    /* The others never got v2. */
    assert_int_equal(
        reconciler_commands(f, "edge-2", "push_manifest", "app", NULL), 1);
    assert_int_equal(
        reconciler_commands(f, "edge-3", "push_manifest", "app", NULL), 1);
    f->passed = true;
}

/* The leader is SIGKILLed while v1 is in its canary's health gate: the new
 * leader continues the rollout from the replicated stage (the canary is
 * not deployed again) and every agent gets v1 exactly once. */
static void leader_killed_mid_rollout(void **state)
{
    struct fixture *f = *state;
    struct test_leader next;
    char doc[4096];
    size_t i;

    start_all(f);
    app_doc(doc, sizeof doc, f, 1, false, 2500, 20000);
    put_doc(f, "lab/app", doc);
    wait_commands(f, "edge-1", "push_manifest", "app", "acked", 1);
    wait_reported(f, "edge-1", "app", "running+ready");
    /* In the canary's gate: edge-2 and edge-3 not reached yet. */
    assert_int_equal(
        reconciler_commands(f, "edge-2", "push_manifest", "app", NULL), 0);
    assert_int_equal(test_proc_signal(&f->c.nodes[f->leader.index].proc,
                                      SIGKILL),
                     0);
    assert_true(test_proc_wait(&f->c.nodes[f->leader.index].proc, 5000) >= 0);
    assert_true(test_cluster_wait_leader(&f->c, WAIT_MS, &next));
    assert_true(next.index != f->leader.index);
    all_running(f, "app");
    wait_rollout(f, "done", NULL, 3);
    for (i = 0; i < N_AGENTS; i++) {
        wait_commands(f, f->agents[i].id, "push_manifest", "app", "acked", 1);
        assert_int_equal(reconciler_commands(f, f->agents[i].id,
                                             "push_manifest", "app", NULL),
                         1);
    }
    f->passed = true;
}

/* An operator pauses, resumes, aborts and rolls back a rollout through a
 * follower; refused operations name the field and the state. */
static void rollout_operations(void **state)
{
    struct fixture *f = *state;
    char doc[4096];
    json_t *o;
    long status;

    start_all(f);
    /* A long gate: the rollout stays at its canary. */
    app_doc(doc, sizeof doc, f, 1, false, 600000, 900000);
    put_doc(f, "lab/app", doc);
    wait_rollout(f, "running", "gate", 1);

    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"pause\"}", &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "state")),
                        "paused");
    assert_string_equal(json_string_value(json_object_get(o, "requested_by")),
                        "bob");
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "drill");
    json_decref(o);
    /* Paused cannot pause again: 409 naming the state. */
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"pause\"}", &o), 409);
    assert_string_equal(error_field(o), "op");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(o, "error"), "state")),
                        "paused");
    json_decref(o);
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"resume\"}", &o),
                     200);
    assert_string_equal(json_string_value(json_object_get(o, "state")),
                        "running");
    json_decref(o);
    /* Bad input names the field; a stale revision is a conflict. */
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"promote\"}", &o),
                     400);
    assert_string_equal(error_field(o), "op");
    json_decref(o);
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"pause\",\"x\":1}", &o),
                     400);
    assert_string_equal(error_field(o), "x");
    json_decref(o);
    assert_int_equal(
        rollout_op(f, "lab/app", "{\"op\":\"pause\",\"revision\":1}", &o),
        409);
    assert_string_equal(error_field(o), "revision");
    json_decref(o);
    assert_int_equal(rollout_op(f, "lab/none", "{\"op\":\"pause\"}", &o),
                     404);
    assert_string_equal(error_field(o), "key");
    json_decref(o);
    o = test_cluster_call(&f->c, f->follower, "GET", "/v1/rollouts/lab/none",
                          NULL, NULL, &status, NULL);
    assert_int_equal(status, 404);
    json_decref(o);

    /* Abort: the policy stays, the rollout is over. */
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"abort\"}", &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "state")),
                        "aborted");
    json_decref(o);
    assert_int_equal(app_version(f, NULL), 1);
    /* Rollback of a new policy deletes it. */
    assert_int_equal(rollout_op(f, "lab/app", "{\"op\":\"rollback\"}", &o),
                     200);
    assert_string_equal(json_string_value(json_object_get(o, "state")),
                        "rolled_back");
    json_decref(o);
    o = test_cluster_call(&f->c, f->follower, "GET", "/v1/policies/lab/app",
                          NULL, NULL, &status, NULL);
    assert_int_equal(status, 404);
    json_decref(o);
    /* Listed on every node, with its documents on request. */
    o = get(f, f->leader.index, "/v1/rollouts");
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
    json_decref(o);
    o = get(f, f->follower, "/v1/rollouts/lab/app?documents=true");
    assert_non_null(o);
    assert_true(json_is_object(json_object_get(o, "target")));
    assert_true(json_is_null(json_object_get(o, "previous")));
    json_decref(o);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(auto_restarts_killed_service, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(recommend_mode_only_recommends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(crash_loop_blocked_with_incident,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_revision_rolled_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(leader_killed_mid_rollout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rollout_operations, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
