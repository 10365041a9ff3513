/* The next step of a staged rollout (cluster/rollout.h) as a pure
 * function: one table of cases per stage (canary, gate, pause, agents that
 * come and go), each checked field by field; the same table with the agents
 * shuffled (determinism); a whole rollout walked step by step; allocation
 * failures; the gate's timeout while healthy but not long enough, and
 * messages that do not depend on the agents' order. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rollout.h"
#include "common/heap.h"
#include "tests/lib/heap.h"

/* 2023-11-14T22:13:20Z: every time of a row is in ms after it. */
#define T0 ((uint64_t)1700000000000)

#define MAX_AG 32
#define MAX_LABELS 4
#define MAX_DRIFTS 16
#define SPEC_SIZE 512
#define IDS_SIZE 512

#define CANARY ROLLOUT_STAGE_CANARY
#define GATE ROLLOUT_STAGE_GATE
#define PAUSE ROLLOUT_STAGE_PAUSE
#define WAIT ROLLOUT_WAIT
#define ADVANCE ROLLOUT_ADVANCE
#define DONE ROLLOUT_DONE
#define ROLLBACK ROLLOUT_ROLLBACK
#define HALT ROLLOUT_HALT

/* A "rollout" object. @canary is JSON text ("2" or "\"10%\""). */
#define RO(canary, gate, timeout, batch, pause, rollback)                      \
    "{\"canary\":" canary ",\"health_gate_ms\":" #gate                         \
    ",\"gate_timeout_ms\":" #timeout ",\"batch_size\":" #batch                 \
    ",\"batch_pause_ms\":" #pause ",\"auto_rollback\":" #rollback "}"

/* The rollout of most rows: canary 1, a 60 s gate with a 240 s timeout,
 * batches of 2 without a pause, rollback on a failed gate. */
#define STD RO("1", 60000, 240000, 2, 0, true)

#define FIVE "a1 a2 a3 a4 a5"

/* One case. Agents are "a1 ~a2 a3:site=north,zone=a" ("~": offline; labels
 * after ':'); reached agents are ids in any order (the input gets them
 * sorted); drifts are "agent/service=kind/level" with the wire names
 * (level without its "reconcile_" prefix), in any order (sorted for the
 * input). */
struct row {
    const char *name;
    /* Input. */
    const char *placement; /* JSON; NULL: every agent */
    const char *rollout;   /* JSON; NULL: STD */
    bool recommend;        /* mode recommend (default auto) */
    const char *agents;
    int stage;
    uint64_t batch;
    const char *reached;
    uint64_t started; /* stage_started_ms - T0 */
    uint64_t since;   /* healthy_since_ms - T0; 0: healthy_since_ms 0 */
    const char *drifts;
    uint64_t now; /* now_ms - T0 */
    /* Expected. */
    int decision;
    int out_stage;           /* ADVANCE only */
    uint64_t out_batch;      /* ADVANCE only */
    const char *out_reached; /* ADVANCE: sorted ids; else none */
    bool healthy;
    const char *msg[3]; /* substrings of the message */
};

struct fixture {
    struct test_heap heap;
    struct policy *doc;
    char agent_spec[SPEC_SIZE];
    char reached_spec[SPEC_SIZE];
    char drift_spec[SPEC_SIZE];
    struct rollout_agent agents[MAX_AG];
    struct policy_label labels[MAX_AG][MAX_LABELS];
    const char *reached[MAX_AG];
    struct reconcile_drift drifts[MAX_DRIFTS];
    struct reconcile_output pass;
    struct rollout_input in;
    struct rollout_output out;
    char errmsg[REMS_ERRMSG_SIZE];
};

static void reset(struct fixture *f)
{
    rollout_output_close(&f->out);
    policy_free(f->doc);
    f->doc = NULL;
    memset(f->agents, 0, sizeof f->agents);
    memset(f->labels, 0, sizeof f->labels);
    memset(f->reached, 0, sizeof f->reached);
    memset(f->drifts, 0, sizeof f->drifts);
    memset(&f->pass, 0, sizeof f->pass);
    memset(&f->in, 0, sizeof f->in);
    f->pass.drifts = f->drifts;
    f->in.key = "web-pol";
    f->in.target_revision = 7;
    f->in.agents = f->agents;
    f->in.reached = f->reached;
    f->in.pass = &f->pass;
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

/* Split @s in place at @sep: the next token, or NULL at the end. */
static char *token(char **s, char sep)
{
    char *t;
    while (**s == sep) {
        (*s)++;
    }
    if (**s == '\0') {
        return NULL;
    }
    t = *s;
    while (**s != '\0' && **s != sep) {
        (*s)++;
    }
    if (**s == sep) {
        **s = '\0';
        (*s)++;
    }
    return t;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_drift(const void *a, const void *b)
{
    const struct reconcile_drift *x = a;
    const struct reconcile_drift *y = b;
    int c = strcmp(x->agent, y->agent);
    return c != 0 ? c : strcmp(x->service, y->service);
}

static void set_policy(struct fixture *f,
                       const char *placement,
                       const char *rollout,
                       bool recommend)
{
    char json[2048];
    int n = snprintf(json, sizeof json,
                     "{\"placement\":%s,\"mode\":\"%s\",\"services\":["
                     "{\"name\":\"web\",\"command\":[\"/bin/web\"]},"
                     "{\"name\":\"db\",\"command\":[\"/bin/db\"]}],"
                     "\"rollout\":%s}",
                     placement != NULL ? placement : "{\"selector\":{}}",
                     recommend ? "recommend" : "auto",
                     rollout != NULL ? rollout : STD);
    assert_true(n > 0 && (size_t)n < sizeof json);
    policy_free(f->doc);
    f->doc = NULL;
    if (policy_parse_json(json, strlen(json), &f->doc, f->errmsg) != 0) {
        fail_msg("policy: %s", f->errmsg);
    }
    f->in.target = f->doc;
}

static void set_agents(struct fixture *f, const char *spec)
{
    char *s = f->agent_spec;
    char *t;
    f->in.n_agents = 0;
    assert_true(strlen(spec) < sizeof f->agent_spec);
    strcpy(f->agent_spec, spec);
    while ((t = token(&s, ' ')) != NULL) {
        size_t i = f->in.n_agents++;
        struct rollout_agent *a = &f->agents[i];
        char *labels;
        char *l;
        assert_true(i < MAX_AG);
        a->online = *t != '~';
        if (*t == '~') {
            t++;
        }
        labels = strchr(t, ':');
        if (labels != NULL) {
            *labels++ = '\0';
        }
        a->id = t;
        a->labels = f->labels[i];
        a->n_labels = 0;
        while (labels != NULL && (l = token(&labels, ',')) != NULL) {
            char *eq = strchr(l, '=');
            assert_non_null(eq);
            assert_true(a->n_labels < MAX_LABELS);
            *eq = '\0';
            f->labels[i][a->n_labels].key = l;
            f->labels[i][a->n_labels].value = eq + 1;
            a->n_labels++;
        }
    }
}

static void set_reached(struct fixture *f, const char *spec)
{
    char *s = f->reached_spec;
    char *t;
    f->in.n_reached = 0;
    assert_true(strlen(spec) < sizeof f->reached_spec);
    strcpy(f->reached_spec, spec);
    while ((t = token(&s, ' ')) != NULL) {
        assert_true(f->in.n_reached < MAX_AG);
        f->reached[f->in.n_reached++] = t;
    }
    qsort(f->reached, f->in.n_reached, sizeof f->reached[0], cmp_id);
}

static int kind_of(const char *name)
{
    int k;
    for (k = 1; k < RECONCILE_DRIFT_NR; k++) {
        if (strcmp(reconcile_drift_kind_name(k), name) == 0) {
            return k;
        }
    }
    fail_msg("unknown drift kind %s", name);
    return 0;
}

static int level_of(const char *name)
{
    static const char prefix[] = "reconcile_";
    int l;
    for (l = 1; l < RECONCILE_LEVEL_NR; l++) {
        const char *wire = reconcile_level_name(l);
        assert_memory_equal(wire, prefix, sizeof prefix - 1);
        if (strcmp(wire + sizeof prefix - 1, name) == 0) {
            return l;
        }
    }
    fail_msg("unknown level %s", name);
    return 0;
}

static void set_drifts(struct fixture *f, const char *spec)
{
    char *s = f->drift_spec;
    char *t;
    f->pass.n_drifts = 0;
    assert_true(strlen(spec) < sizeof f->drift_spec);
    strcpy(f->drift_spec, spec);
    while ((t = token(&s, ' ')) != NULL) {
        struct reconcile_drift *d = &f->drifts[f->pass.n_drifts++];
        char *service = strchr(t, '/');
        char *kind;
        char *level;
        assert_true(f->pass.n_drifts <= MAX_DRIFTS);
        assert_non_null(service);
        *service++ = '\0';
        kind = strchr(service, '=');
        assert_non_null(kind);
        *kind++ = '\0';
        level = strchr(kind, '/');
        assert_non_null(level);
        *level++ = '\0';
        d->agent = t;
        d->service = service;
        d->kind = kind_of(kind);
        d->level = level_of(level);
        d->policy = "web-pol";
        d->revision = 7;
        d->criticality = POLICY_OPTIONAL;
        d->detail = "the detail";
        d->action = RECONCILE_ACTION_NONE;
        d->reason = "the reason";
        d->state = RECONCILE_DEGRADED;
    }
    qsort(f->drifts, f->pass.n_drifts, sizeof f->drifts[0], cmp_drift);
}

/* The input of @r, without running it. */
static void build(struct fixture *f, const struct row *r)
{
    rollout_output_close(&f->out);
    set_policy(f, r->placement, r->rollout, r->recommend);
    set_agents(f, r->agents != NULL ? r->agents : "");
    set_reached(f, r->reached != NULL ? r->reached : "");
    set_drifts(f, r->drifts != NULL ? r->drifts : "");
    f->in.stage = r->stage;
    f->in.batch = r->batch;
    f->in.stage_started_ms = T0 + r->started;
    f->in.healthy_since_ms = r->since != 0 ? T0 + r->since : 0;
}

/* Shuffle the agents array (xorshift64 from *@seed). */
static void shuffle(struct fixture *f, uint64_t *seed)
{
    size_t i;
    for (i = f->in.n_agents; i > 1; i--) {
        struct rollout_agent tmp;
        size_t j;
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        j = (size_t)(*seed % i);
        tmp = f->agents[i - 1];
        f->agents[i - 1] = f->agents[j];
        f->agents[j] = tmp;
    }
}

/* ------------------------------------------------------------------------
 * Running and checking
 * --------------------------------------------------------------------- */

static void step(struct fixture *f, uint64_t now)
{
    int rv;
    rollout_output_close(&f->out);
    rv = rollout_step(&f->in, now, &f->out, f->errmsg);
    if (rv != 0) {
        fail_msg("rollout_step: %d %s", rv, f->errmsg);
    }
}

static const char *stage_name(int stage)
{
    switch (stage) {
        case CANARY:
            return "canary";
        case GATE:
            return "gate";
        case PAUSE:
            return "pause";
        default:
            return "?";
    }
}

/* @ids joined by spaces into @buf (IDS_SIZE bytes). */
static void join(const char *const *ids, size_t n, char *buf)
{
    size_t used = 0;
    size_t i;
    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        int w =
            snprintf(buf + used, IDS_SIZE - used, "%s%s", i ? " " : "", ids[i]);
        assert_true(w > 0 && (size_t)w < IDS_SIZE - used);
        used += (size_t)w;
    }
}

/* Every field of @out against the expectations of @r, naming @r on a
 * mismatch. */
static void check(const struct row *r, const struct rollout_output *out)
{
    char got[IDS_SIZE];
    size_t i;

    join(out->reached, out->n_reached, got);
    if (out->decision != r->decision) {
        fail_msg("%s: decision %s, want %s (message \"%s\")", r->name,
                 rollout_decision_name(out->decision),
                 rollout_decision_name(r->decision), out->message);
    }
    if (r->decision == ADVANCE) {
        if (out->stage != r->out_stage) {
            fail_msg("%s: stage %s, want %s", r->name, stage_name(out->stage),
                     stage_name(r->out_stage));
        }
        if (out->batch != r->out_batch) {
            fail_msg("%s: batch %" PRIu64 ", want %" PRIu64, r->name,
                     out->batch, r->out_batch);
        }
        if (strcmp(got, r->out_reached) != 0) {
            fail_msg("%s: reached \"%s\", want \"%s\"", r->name, got,
                     r->out_reached);
        }
        for (i = 1; i < out->n_reached; i++) {
            if (strcmp(out->reached[i - 1], out->reached[i]) >= 0) {
                fail_msg("%s: reached not sorted: \"%s\"", r->name, got);
            }
        }
    } else if (out->n_reached != 0) {
        fail_msg("%s: %s with reached \"%s\"", r->name,
                 rollout_decision_name(out->decision), got);
    }
    if (out->gate_healthy != r->healthy) {
        fail_msg("%s: gate_healthy %d, want %d", r->name, out->gate_healthy,
                 r->healthy);
    }
    for (i = 0; i < sizeof r->msg / sizeof r->msg[0]; i++) {
        if (r->msg[i] != NULL && strstr(out->message, r->msg[i]) == NULL) {
            fail_msg("%s: message \"%s\" lacks \"%s\"", r->name, out->message,
                     r->msg[i]);
        }
    }
}

static void run_row(struct fixture *f, const struct row *r)
{
    build(f, r);
    step(f, T0 + r->now);
    check(r, &f->out);
    rollout_output_close(&f->out);
}

static void run_table(struct fixture *f, const struct row *rows, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        run_row(f, &rows[i]);
    }
}

#define RUN_TABLE(f, rows)                                                     \
    run_table((f), (rows), sizeof(rows) / sizeof(rows)[0])

/* ------------------------------------------------------------------------
 * Canary
 * --------------------------------------------------------------------- */

static const struct row canary_rows[] = {
    {.name = "canary: no agent selected: done",
     .placement = "{\"agents\":[\"x9\"]}",
     .agents = "a1 a2",
     .decision = DONE,
     .msg = {"no agent selected"}},
    {.name = "canary: no agent at all: done",
     .agents = "",
     .decision = DONE,
     .msg = {"no agent selected"}},
    {.name = "canary: a count of 2 of 5",
     .rollout = RO("2", 60000, 240000, 2, 0, true),
     .agents = "a3 a5 a1 a4 a2",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 0,
     .out_reached = "a1 a2",
     .msg = {"canary: 2 of 5 selected agents"}},
    {.name = "canary: 10% of 15 rounds up to 2",
     .rollout = RO("\"10%\"", 60000, 240000, 2, 0, true),
     .agents = "a01 a02 a03 a04 a05 a06 a07 a08 a09 a10 a11 a12 a13 a14 a15",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a01 a02",
     .msg = {"canary: 2 of 15 selected agents"}},
    {.name = "canary: 1% of 5 rounds up to 1",
     .rollout = RO("\"1%\"", 60000, 240000, 2, 0, true),
     .agents = FIVE,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1",
     .msg = {"canary: 1 of 5 selected agents"}},
    {.name = "canary: 34% of 3 (1.02) rounds up to 2",
     .rollout = RO("\"34%\"", 60000, 240000, 2, 0, true),
     .agents = "a1 a2 a3",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1 a2",
     .msg = {"canary: 2 of 3 selected agents"}},
    {.name = "canary: 100% of 3 is every agent",
     .rollout = RO("\"100%\"", 60000, 240000, 2, 0, true),
     .agents = "a1 a2 a3",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1 a2 a3",
     .msg = {"canary: 3 of 3 selected agents"}},
    {.name = "canary: online agents first, each by id",
     .rollout = RO("3", 60000, 240000, 2, 0, true),
     .agents = "~a1 a4 ~a0 a3 a2",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a2 a3 a4",
     .msg = {"canary: 3 of 5 selected agents"}},
    {.name = "canary: then offline agents by id",
     .rollout = RO("4", 60000, 240000, 2, 0, true),
     .agents = "~a1 a4 ~a0 a3 a2",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a0 a2 a3 a4",
     .msg = {"canary: 4 of 5 selected agents"}},
    {.name = "canary: offline agents only: by id",
     .agents = "~b1 ~a1",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1",
     .msg = {"canary: 1 of 2 selected agents"}},
    {.name = "canary: labels and explicit agents select",
     .placement = "{\"agents\":[\"z1\"],"
                  "\"selector\":{\"match_labels\":{\"site\":\"north\"}}}",
     .rollout = RO("10", 60000, 240000, 2, 0, true),
     .agents = "a1:site=south a2:zone=a,site=north a3:site=north b1 "
               "z1:site=south",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a2 a3 z1",
     .msg = {"canary: 3 of 3 selected agents"}},
    {.name = "canary: a selector's expressions select",
     .placement =
         "{\"selector\":{\"match_expressions\":["
         "{\"key\":\"zone\",\"operator\":\"in\",\"values\":[\"b\"]}]}}",
     .rollout = RO("1", 60000, 240000, 2, 0, true),
     .agents = "a1:zone=a a2 a3:zone=b a4:zone=b",
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a3",
     .msg = {"canary: 1 of 2 selected agents"}},
    {.name = "canary: explicit agents only",
     .placement = "{\"agents\":[\"a3\",\"a5\"]}",
     .agents = FIVE,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a3",
     .msg = {"canary: 1 of 2 selected agents"}},
    {.name = "canary: a count over the selection takes it all",
     .rollout = RO("10", 60000, 240000, 2, 0, true),
     .placement = "{\"agents\":[\"a1\",\"a2\",\"a3\",\"x1\"]}",
     .agents = FIVE,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1 a2 a3",
     .msg = {"canary: 3 of 3 selected agents"}},
    {.name = "canary: drifts and times do not matter",
     .agents = "a1 a2",
     .drifts = "a1/web=failed_deployment/blocked",
     .started = 500000,
     .now = 0,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_reached = "a1",
     .msg = {"canary: 1 of 2 selected agents"}},
};

static void canary(void **state)
{
    RUN_TABLE(*state, canary_rows);
}

/* ------------------------------------------------------------------------
 * Gate: healthy
 * --------------------------------------------------------------------- */

static const struct row gate_rows[] = {
    {.name = "gate: healthy since this pass only: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .now = 10000,
     .decision = WAIT,
     .healthy = true,
     .msg = {"gate of batch 0: healthy for 0 of 60000 ms"}},
    {.name = "gate: healthy for 40 of 60 s: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .since = 10000,
     .now = 50000,
     .decision = WAIT,
     .healthy = true,
     .msg = {"gate of batch 0: healthy for 40000 of 60000 ms"}},
    {.name = "gate: healthy 1 ms short: wait",
     .agents = FIVE,
     .stage = GATE,
     .batch = 2,
     .reached = "a1 a2",
     .since = 10000,
     .now = 69999,
     .decision = WAIT,
     .healthy = true,
     .msg = {"gate of batch 2: healthy for 59999 of 60000 ms"}},
    {.name = "gate: passed, no pause: the next batch now",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true,
     .msg = {"batch 1: 2 more agents (4 of 5)"}},
    {.name = "gate: passed in batch 3: batch 4, merged and sorted",
     .agents = "a5 a4 a3 a2 a1",
     .stage = GATE,
     .batch = 3,
     .reached = "a3 a1",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 4,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true,
     .msg = {"batch 4: 2 more agents (4 of 5)"}},
    {.name = "gate: the next batch takes online agents first",
     .agents = "a1 a2 ~a3 a4 ~a0 a5",
     .stage = GATE,
     .reached = "a1 a2",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a4 a5",
     .healthy = true,
     .msg = {"batch 1: 2 more agents (4 of 6)"}},
    {.name = "gate: passed, with a pause: pause, same batch and agents",
     .rollout = RO("1", 60000, 240000, 2, 30000, true),
     .agents = FIVE,
     .stage = GATE,
     .batch = 1,
     .reached = "a1 a2",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = PAUSE,
     .out_batch = 1,
     .out_reached = "a1 a2",
     .healthy = true,
     .msg = {"gate of batch 1 passed; pause of 30000 ms"}},
    {.name = "gate: passed with every agent reached: done",
     .agents = FIVE,
     .stage = GATE,
     .batch = 2,
     .reached = FIVE,
     .since = 10000,
     .now = 70000,
     .decision = DONE,
     .healthy = true,
     .msg = {"all 5 selected agents reached and healthy"}},
    {.name = "gate: passed with every agent reached and a pause: done",
     .rollout = RO("1", 60000, 240000, 2, 30000, true),
     .agents = FIVE,
     .stage = GATE,
     .batch = 2,
     .reached = FIVE,
     .since = 10000,
     .now = 70000,
     .decision = DONE,
     .healthy = true,
     .msg = {"all 5 selected agents reached and healthy"}},
    {.name = "gate: passed with every selected agent reached: done",
     .placement = "{\"agents\":[\"a2\",\"a4\"]}",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a2 a4",
     .since = 10000,
     .now = 70000,
     .decision = DONE,
     .healthy = true,
     .msg = {"all 2 selected agents reached and healthy"}},
    {.name = "gate: health_gate_ms 0 passes at once",
     .rollout = RO("1", 0, 60000, 2, 0, true),
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1",
     .started = 1000,
     .now = 1000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3",
     .healthy = true,
     .msg = {"batch 1: 2 more agents (3 of 5)"}},
    {.name = "gate: healthy_since in the future: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .since = 90000,
     .now = 70000,
     .decision = WAIT,
     .healthy = true,
     .msg = {"healthy for 0 of 60000 ms"}},
};

static void gate_healthy(void **state)
{
    RUN_TABLE(*state, gate_rows);
}

/* ------------------------------------------------------------------------
 * Gate: unhealthy and failed
 * --------------------------------------------------------------------- */

static const struct row unhealthy_rows[] = {
    {.name = "gate: unhealthy_service on a reached agent: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/required",
     .now = 10000,
     .decision = WAIT,
     .healthy = false,
     .msg = {"gate of batch 0: waiting: web on a1: unhealthy_service: "
             "the detail"}},
    {.name = "gate: missing_service of the second service: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a2/db=missing_service/required",
     .now = 10000,
     .decision = WAIT,
     .msg = {"waiting: db on a2: missing_service"}},
    {.name = "gate: dependency_unavailable (recommended): wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a2/web=dependency_unavailable/recommended",
     .now = 10000,
     .decision = WAIT,
     .msg = {"waiting: web on a2: dependency_unavailable"}},
    {.name = "gate: unhealthy although healthy before (stale since): wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/recommended",
     .since = 10000,
     .now = 70000,
     .decision = WAIT,
     .healthy = false,
     .msg = {"waiting: web on a1"}},
    {.name = "gate: two drifts on one agent: the first service named",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/db=missing_service/required "
               "a1/web=unhealthy_service/required",
     .now = 10000,
     .decision = WAIT,
     .msg = {"waiting: web on a1: unhealthy_service"}},
    {.name = "gate: drifts on unreached agents are ignored",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts =
         "a3/web=failed_deployment/required "
         "a4/web=unhealthy_service/blocked a5/db=missing_service/required",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true,
     .msg = {"batch 1: 2 more agents (4 of 5)"}},
    {.name = "gate: drifts on a reached offline agent are ignored",
     .agents = "a1 ~a2 a3 a4 a5",
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a2/=offline_agent/required a2/web=failed_deployment/blocked",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true,
     .msg = {"batch 1: 2 more agents (4 of 5)"}},
    {.name = "gate: every reached agent offline: healthy",
     .agents = "~a1 ~a2 a3",
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/=offline_agent/required a2/=offline_agent/required",
     .now = 10000,
     .decision = WAIT,
     .healthy = true,
     .msg = {"healthy for 0 of 60000 ms"}},
    {.name = "gate: drifts of services not in the target are ignored",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/cache=unexpected_service/recommended "
               "a1/other=unresolved_incident/blocked "
               "a2/=unresolved_incident/recommended",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true},
    {.name = "gate: drifts on a reached agent no longer selected are ignored",
     .placement = "{\"selector\":{\"match_labels\":{\"site\":\"north\"}}}",
     .agents = "a1:site=north a2:site=south a3:site=north a4:site=north",
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a2/web=failed_deployment/required",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .healthy = true,
     .msg = {"batch 1: 2 more agents"}},
    {.name = "gate: unhealthy 1 ms before gate_timeout_ms: wait",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/required",
     .started = 1000,
     .now = 1000 + 239999,
     .decision = WAIT,
     .msg = {"waiting: web on a1"}},
    {.name = "gate: unhealthy past gate_timeout_ms: rollback",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/required",
     .started = 1000,
     .now = 1000 + 240001,
     .decision = ROLLBACK,
     .msg = {"gate of batch 0 not passed in 240000 ms",
             "web on a1: unhealthy_service"}},
    {.name = "gate: unhealthy past gate_timeout_ms, no auto_rollback: halt",
     .rollout = RO("1", 60000, 240000, 2, 0, false),
     .agents = FIVE,
     .stage = GATE,
     .batch = 3,
     .reached = "a1 a2",
     .drifts = "a2/db=missing_service/required",
     .started = 1000,
     .now = 1000 + 300000,
     .decision = HALT,
     .msg = {"gate of batch 3 not passed in 240000 ms",
             "db on a2: missing_service"}},
    {.name = "gate: a blocked drift fails at once: rollback",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a2/web=unhealthy_service/blocked",
     .since = 500,
     .now = 1000,
     .decision = ROLLBACK,
     .msg = {"gate of batch 0 failed",
             "web on a2: unhealthy_service (reconcile_blocked): the detail"}},
    {.name = "gate: a failed_deployment fails at once: rollback",
     .agents = FIVE,
     .stage = GATE,
     .batch = 1,
     .reached = "a1 a2 a3",
     .drifts = "a3/db=failed_deployment/required",
     .now = 1000,
     .decision = ROLLBACK,
     .msg = {"gate of batch 1 failed",
             "db on a3: failed_deployment (reconcile_required)"}},
    {.name = "gate: an unresolved_incident fails at once: halt",
     .rollout = RO("1", 60000, 240000, 2, 0, false),
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unresolved_incident/recommended",
     .now = 1000,
     .decision = HALT,
     .msg = {"gate of batch 0 failed",
             "web on a1: unresolved_incident (reconcile_recommended)"}},
    {.name = "gate: a failing drift wins over an unhealthy one",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/required "
               "a2/db=failed_deployment/required",
     .now = 1000,
     .decision = ROLLBACK,
     .msg = {"gate of batch 0 failed", "db on a2: failed_deployment"}},
    {.name = "gate: failing drifts on unreached agents are ignored",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a5/web=unresolved_incident/blocked",
     .now = 1000,
     .decision = WAIT,
     .healthy = true},
    {.name = "gate: mode recommend, unhealthy past gate_timeout_ms: waits "
             "(a person deploys)",
     .recommend = true,
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=missing_service/required",
     .started = 1000,
     .now = 1000 + 900000,
     .decision = WAIT,
     .msg = {"waiting: web on a1: missing_service"}},
    {.name = "gate: mode recommend, a blocked drift still fails at once",
     .recommend = true,
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/blocked",
     .now = 1000,
     .decision = ROLLBACK,
     .msg = {"gate of batch 0 failed", "web on a1"}},
};

static void gate_unhealthy(void **state)
{
    RUN_TABLE(*state, unhealthy_rows);
}

/* ------------------------------------------------------------------------
 * Pause, and agents that come and go
 * --------------------------------------------------------------------- */

#define PAUSE30 RO("1", 60000, 240000, 2, 30000, true)

static const struct row pause_rows[] = {
    {.name = "pause: before batch_pause_ms: wait",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .reached = "a1 a2",
     .started = 1000,
     .now = 1000 + 29999,
     .decision = WAIT},
    {.name = "pause: a stage start after now: wait",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .reached = "a1 a2",
     .started = 50000,
     .now = 40000,
     .decision = WAIT},
    {.name = "pause: after batch_pause_ms: the next batch",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .reached = "a1 a2",
     .started = 1000,
     .now = 1000 + 30000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4",
     .msg = {"batch 1: 2 more agents (4 of 5)"}},
    {.name = "pause: the last batch is partial",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .batch = 1,
     .reached = "a1 a2 a3 a4",
     .started = 1000,
     .now = 1000 + 90000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 2,
     .out_reached = FIVE,
     .msg = {"batch 2: 1 more agents (5 of 5)"}},
    {.name = "pause: the next batch takes online agents first",
     .rollout = PAUSE30,
     .agents = "~a0 a1 a2 ~a3 a4 a5",
     .stage = PAUSE,
     .reached = "a1 a2",
     .now = 30000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a4 a5"},
    {.name = "pause: no candidate left: done",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .batch = 2,
     .reached = FIVE,
     .now = 30000,
     .decision = DONE,
     .msg = {"all 5 selected agents reached and healthy"}},
    {.name = "pause: drifts do not matter",
     .rollout = PAUSE30,
     .agents = FIVE,
     .stage = PAUSE,
     .reached = "a1 a2",
     .drifts = "a1/web=failed_deployment/blocked",
     .now = 30000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4"},
    {.name = "an unknown stage: wait, the message names it",
     .agents = FIVE,
     .stage = 7,
     .reached = "a1",
     .now = 1000000,
     .decision = WAIT,
     .msg = {"unknown stage 7"}},
};

static void pause_stage(void **state)
{
    RUN_TABLE(*state, pause_rows);
}

static const struct row membership_rows[] = {
    {.name = "pause: agents that appeared join the next batch",
     .rollout = PAUSE30,
     .agents = "a0 a1 a2 a3 a4 a5 ~a6",
     .stage = PAUSE,
     .batch = 1,
     .reached = "a1 a2 a3 a4",
     .now = 30000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 2,
     .out_reached = "a0 a1 a2 a3 a4 a5",
     .msg = {"batch 2: 2 more agents (6 of 7)"}},
    {.name = "gate: a new agent keeps the rollout from being done",
     .agents = "a1 a2 a3 a4 a5 a6",
     .stage = GATE,
     .batch = 2,
     .reached = FIVE,
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 3,
     .out_reached = "a1 a2 a3 a4 a5 a6",
     .healthy = true,
     .msg = {"batch 3: 1 more agents (6 of 6)"}},
    {.name = "gate: a newly selected agent joins the next batch",
     .placement = "{\"selector\":{\"match_labels\":{\"site\":\"north\"}}}",
     .agents = "a1:site=north a2:site=north a3 a9:site=north",
     .stage = GATE,
     .reached = "a1 a2",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a9",
     .healthy = true},
    {.name = "gate: reached agents no longer present are kept",
     .agents = "a1 a2 a3 a4",
     .stage = GATE,
     .reached = "a1 gone a2",
     .drifts = "gone/web=failed_deployment/blocked",
     .since = 10000,
     .now = 70000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 a3 a4 gone",
     .healthy = true,
     .msg = {"batch 1: 2 more agents"}},
    {.name = "gate: every present agent reached, one gone: done",
     .agents = "a2 a1",
     .stage = GATE,
     .reached = "a1 a2 gone",
     .since = 10000,
     .now = 70000,
     .decision = DONE,
     .healthy = true,
     .msg = {"all 2 selected agents reached and healthy"}},
    {.name = "pause: every present agent reached, one gone: done",
     .rollout = PAUSE30,
     .agents = "a1 a2",
     .stage = PAUSE,
     .reached = "a1 a2 gone",
     .now = 30000,
     .decision = DONE},
    {.name = "pause: every reached agent gone: the next batch",
     .rollout = PAUSE30,
     .agents = "b1 b2 b3",
     .stage = PAUSE,
     .reached = "a1 a2",
     .now = 30000,
     .decision = ADVANCE,
     .out_stage = GATE,
     .out_batch = 1,
     .out_reached = "a1 a2 b1 b2"},
};

static void membership(void **state)
{
    RUN_TABLE(*state, membership_rows);
}

/* ------------------------------------------------------------------------
 * Determinism
 * --------------------------------------------------------------------- */

struct snapshot {
    int decision;
    int stage;
    uint64_t batch;
    char reached[IDS_SIZE];
    bool healthy;
    char message[512];
};

static void snap(const struct rollout_output *out, struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->decision = out->decision;
    s->stage = out->stage;
    s->batch = out->batch;
    join(out->reached, out->n_reached, s->reached);
    s->healthy = out->gate_healthy;
    snprintf(s->message, sizeof s->message, "%s", out->message);
}

static uint64_t seed_get(void)
{
    const char *env = getenv("ROLLOUT_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : 0x5eed1234abcdULL;
    if (seed == 0) {
        seed = 1; /* xorshift stays at 0 */
    }
    print_message(
        "rollout shuffle seed %" PRIu64 " (replay with ROLLOUT_SEED)\n", seed);
    return seed;
}

/* @r gives the same output, every field, for @rounds shuffles of its
 * agents. */
static void
shuffled_row(struct fixture *f, const struct row *r, uint64_t *seed, int rounds)
{
    struct snapshot want;
    struct snapshot got;
    int k;

    build(f, r);
    step(f, T0 + r->now);
    check(r, &f->out);
    snap(&f->out, &want);
    for (k = 0; k < rounds; k++) {
        shuffle(f, seed);
        step(f, T0 + r->now);
        snap(&f->out, &got);
        if (got.decision != want.decision || got.stage != want.stage ||
            got.batch != want.batch || got.healthy != want.healthy ||
            strcmp(got.reached, want.reached) != 0 ||
            strcmp(got.message, want.message) != 0) {
            fail_msg(
                "%s: shuffled agents give %s/%s/%" PRIu64 " \"%s\" \"%s\", "
                "not %s/%s/%" PRIu64 " \"%s\" \"%s\"",
                r->name, rollout_decision_name(got.decision),
                stage_name(got.stage), got.batch, got.reached, got.message,
                rollout_decision_name(want.decision), stage_name(want.stage),
                want.batch, want.reached, want.message);
        }
    }
    rollout_output_close(&f->out);
}

static void shuffled_table(struct fixture *f,
                           const struct row *rows,
                           size_t n,
                           uint64_t *seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        shuffled_row(f, &rows[i], seed, 8);
    }
}

#define SHUFFLED_TABLE(f, rows, seed)                                          \
    shuffled_table((f), (rows), sizeof(rows) / sizeof(rows)[0], (seed))

/* Every row of every table, with its agents shuffled, gives the same
 * output. */
static void determinism(void **state)
{
    struct fixture *f = *state;
    uint64_t seed = seed_get();
    SHUFFLED_TABLE(f, canary_rows, &seed);
    SHUFFLED_TABLE(f, gate_rows, &seed);
    SHUFFLED_TABLE(f, unhealthy_rows, &seed);
    SHUFFLED_TABLE(f, pause_rows, &seed);
    SHUFFLED_TABLE(f, membership_rows, &seed);
}

/* ------------------------------------------------------------------------
 * A whole rollout, each output fed back as the next input
 * --------------------------------------------------------------------- */

/* Take what an ADVANCE says as the replicated record would. */
static void apply(struct fixture *f, uint64_t now)
{
    size_t i;
    f->in.stage = f->out.stage;
    f->in.batch = f->out.batch;
    f->in.stage_started_ms = now;
    /* The output's strings are borrowed from the input's: copy the
     * pointers before the output is released. */
    for (i = 0; i < f->out.n_reached; i++) {
        f->reached[i] = f->out.reached[i];
    }
    f->in.n_reached = f->out.n_reached;
}

static void expect(struct fixture *f, int decision)
{
    if (f->out.decision != decision) {
        fail_msg("decision %s, want %s (message \"%s\")",
                 rollout_decision_name(f->out.decision),
                 rollout_decision_name(decision), f->out.message);
    }
}

static void
expect_advance(struct fixture *f, int stage, uint64_t batch, const char *ids)
{
    char got[IDS_SIZE];
    expect(f, ADVANCE);
    assert_string_equal(stage_name(f->out.stage), stage_name(stage));
    assert_int_equal(f->out.batch, batch);
    join(f->out.reached, f->out.n_reached, got);
    assert_string_equal(got, ids);
}

/* Canary 1 of 6 (one offline), batches of 2 with a 30 s pause, a 60 s
 * gate: canary, gate, pause, batch 1, gate (a drift delays it), pause,
 * batch 2, gate, pause, batch 3 (the offline agent, a partial batch),
 * gate, done. */
static void walk(void **state)
{
    struct fixture *f = *state;
    uint64_t t = T0;

    set_policy(f, NULL, PAUSE30, false);
    set_agents(f, "a1 ~a6 a5 a4 a3 a2");
    set_reached(f, "");
    set_drifts(f, "");

    step(f, t);
    expect_advance(f, GATE, 0, "a1");
    apply(f, t);

    /* First healthy pass, then healthy for the whole gate. */
    t += 5000;
    step(f, t);
    expect(f, WAIT);
    assert_true(f->out.gate_healthy);
    f->in.healthy_since_ms = t;
    t += 60000;
    step(f, t);
    expect_advance(f, PAUSE, 0, "a1");
    apply(f, t);
    f->in.healthy_since_ms = 0;

    t += 10000;
    step(f, t);
    expect(f, WAIT);
    t += 20000;
    step(f, t);
    expect_advance(f, GATE, 1, "a1 a2 a3");
    apply(f, t);

    /* a3 drifts for a while: the gate waits, then heals. */
    set_drifts(f, "a3/web=missing_service/required");
    t += 5000;
    step(f, t);
    expect(f, WAIT);
    assert_false(f->out.gate_healthy);
    set_drifts(f, "");
    t += 5000;
    step(f, t);
    expect(f, WAIT);
    assert_true(f->out.gate_healthy);
    f->in.healthy_since_ms = t;
    t += 59999;
    step(f, t);
    expect(f, WAIT);
    t += 1;
    step(f, t);
    expect_advance(f, PAUSE, 1, "a1 a2 a3");
    apply(f, t);
    f->in.healthy_since_ms = 0;

    t += 30000;
    step(f, t);
    expect_advance(f, GATE, 2, "a1 a2 a3 a4 a5");
    apply(f, t);

    step(f, t);
    expect(f, WAIT);
    f->in.healthy_since_ms = t;
    t += 60000;
    step(f, t);
    expect_advance(f, PAUSE, 2, "a1 a2 a3 a4 a5");
    apply(f, t);
    f->in.healthy_since_ms = 0;

    /* The offline agent comes last. */
    t += 30000;
    step(f, t);
    expect_advance(f, GATE, 3, "a1 a2 a3 a4 a5 a6");
    apply(f, t);

    f->in.healthy_since_ms = t;
    t += 60000;
    step(f, t);
    expect(f, DONE);
    assert_non_null(strstr(f->out.message, "all 6 selected agents"));
    rollout_output_close(&f->out);
}

/* ------------------------------------------------------------------------
 * Allocation failures
 * --------------------------------------------------------------------- */

/* Failing the n-th allocation of rollout_step(), for every n, gives
 * REMS_ENOMEM, the message, an empty output and no leak; the first n that
 * succeeds gives the row's output. */
static void oom_row(struct fixture *f,
                    const struct row *r,
                    const char *name,
                    long min_allocs)
{
    long live;
    long n;
    int rv;

    /* Rows are picked by index: make sure the index still names them. */
    assert_non_null(strstr(r->name, name));

    build(f, r);
    live = f->heap.live;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = rollout_step(&f->in, T0 + r->now, &f->out, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "rollout web-pol: out of memory");
        assert_null(f->out.reached);
        assert_int_equal(f->out.n_reached, 0);
        assert_int_equal(f->heap.live, live);
    }
    if (n < min_allocs) {
        fail_msg("%s: %ld allocations, want at least %ld", r->name, n,
                 min_allocs);
    }
    check(r, &f->out);
    rollout_output_close(&f->out);
    assert_int_equal(f->heap.live, live);
}

static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    oom_row(f, &canary_rows[2], "a count of 2 of 5", 3);
    oom_row(f, &canary_rows[0], "no agent selected", 2);
    oom_row(f, &gate_rows[0], "healthy since this pass only", 2);
    oom_row(f, &gate_rows[3], "passed, no pause", 3);
    oom_row(f, &gate_rows[6], "passed, with a pause", 3);
    oom_row(f, &gate_rows[7], "passed with every agent reached: done", 2);
    oom_row(f, &unhealthy_rows[11], "past gate_timeout_ms: rollback", 2);
    oom_row(f, &pause_rows[2], "after batch_pause_ms", 3);
    oom_row(f, &pause_rows[0], "before batch_pause_ms", 2);
}

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

static void names(void **state)
{
    (void)state;
    assert_string_equal(rollout_decision_name(ROLLOUT_WAIT), "wait");
    assert_string_equal(rollout_decision_name(ROLLOUT_ADVANCE), "advance");
    assert_string_equal(rollout_decision_name(ROLLOUT_DONE), "done");
    assert_string_equal(rollout_decision_name(ROLLOUT_ROLLBACK), "rollback");
    assert_string_equal(rollout_decision_name(ROLLOUT_HALT), "halt");
    assert_string_equal(rollout_decision_name(-1), "?");
    assert_string_equal(rollout_decision_name(ROLLOUT_HALT + 1), "?");
}

/* ------------------------------------------------------------------------
 * Two rules once broken: the timeout of a gate that is healthy but not for
 * long enough, and messages that depend on the agents' order.
 * --------------------------------------------------------------------- */

/* rollout.h says the gate "fails ... when rollout.gate_timeout_ms has
 * passed since the stage started without the gate passing". rollout.c
 * once checked the timeout only for an unhealthy gate, so a gate healthy
 * but not yet for health_gate_ms never timed out. */
static const struct row timeout_while_healthy_rows[] = {
    {.name = "gate: healthy, not long enough, past gate_timeout_ms: "
             "rollback",
     .rollout = RO("1", 60000, 60000, 2, 0, true),
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .started = 0,
     .since = 30000,
     .now = 70000,
     .decision = ROLLBACK,
     .msg = {"gate of batch 0 not passed in 60000 ms"}},
    {.name = "gate: healthy since this pass, past gate_timeout_ms: halt",
     .rollout = RO("1", 60000, 240000, 2, 0, false),
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .started = 0,
     .since = 0,
     .now = 300000,
     .decision = HALT,
     .msg = {"gate of batch 0 not passed in 240000 ms"}},
};

static void gate_timeout_while_healthy(void **state)
{
    RUN_TABLE(*state, timeout_while_healthy_rows);
}

/* rollout.h takes the agents "in any order", but the gate's message
 * names the first drifting agent in the order of the agents array, so two
 * reached agents that drift must give the same message (the entry's
 * reason) whatever that order. */
static const struct row order_rows[] = {
    {.name = "gate: two unhealthy agents, message independent of order",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=unhealthy_service/required "
               "a2/web=unhealthy_service/required",
     .now = 1000,
     .decision = WAIT,
     .msg = {"waiting: web on a1"}},
    {.name = "gate: two failing agents, message independent of order",
     .agents = FIVE,
     .stage = GATE,
     .reached = "a1 a2",
     .drifts = "a1/web=failed_deployment/required "
               "a2/web=failed_deployment/required",
     .now = 1000,
     .decision = ROLLBACK,
     .msg = {"failed: web on a1"}},
};

static void gate_message_independent_of_order(void **state)
{
    struct fixture *f = *state;
    size_t i;
    for (i = 0; i < sizeof order_rows / sizeof order_rows[0]; i++) {
        struct row r = order_rows[i];
        run_row(f, &r);
        /* The same agents reversed must name the same agent. */
        r.agents = "a5 a4 a3 a2 a1";
        run_row(f, &r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(canary, setup, teardown),
        cmocka_unit_test_setup_teardown(gate_healthy, setup, teardown),
        cmocka_unit_test_setup_teardown(gate_unhealthy, setup, teardown),
        cmocka_unit_test_setup_teardown(pause_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(membership, setup, teardown),
        cmocka_unit_test_setup_teardown(determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(walk, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_memory, setup, teardown),
        cmocka_unit_test(names),
        cmocka_unit_test_setup_teardown(gate_timeout_while_healthy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(gate_message_independent_of_order,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("rollout", tests, NULL, NULL);
}
