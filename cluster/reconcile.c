/* cluster/reconcile.c: one reconcile pass, a pure function.
 *
 * The pass runs in three phases over sorted views of the input (so that
 * the output does not depend on the order of the input's arrays):
 *
 *   1. Per agent, in id order: resolve the desired services
 *      (reconcile_resolve's core), classify each one's report into a
 *      condition, and walk desired services, reported services, open
 *      incidents and records together in name order. The rule table below
 *      turns a condition into a drift, a level and an action; incidents
 *      and escalation override it; each (agent, service) gets its summary
 *      state. Required drifts of auto-mode policies become candidates.
 *   2. Candidates, critical ones first, then in (agent, service) order,
 *      pass the guardrails one by one; the survivors become commands (and
 *      record updates), the others holds. An issued remediation turns its
 *      (agent, service) to reconciling.
 *   3. Summaries: agents from their services' counts, sites and the
 *      cluster from their agents.
 *
 * Strings of the output are copied into the output's arena; agent ids
 * once per agent, service names once per name (through the per-service
 * summary table), so that a pass over 100,000 services allocates little.
 *
 * The condition -> drift decision is an explicit table (rules[]), in the
 * manner of a state-transition table: every condition has one row, and
 * the table is the reference the header's comment describes. */
#include "cluster/reconcile.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/policy_int.h"
#include "common/assert.h"
#include "common/heap.h"

/* Room for one detail or reason. */
#define TEXT_SIZE 512

#define MS_PER_MINUTE 60000u
#define MS_PER_DAY 86400000u
#define MINUTES_PER_DAY 1440u
#define MINUTES_PER_WEEK 10080u

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

static const char *name_of(const char *const *names, size_t n, int v)
{
    if (v < 1 || (size_t)v >= n) {
        return "?";
    }
    return names[v];
}

const char *reconcile_drift_kind_name(int kind)
{
    static const char *const names[RECONCILE_DRIFT_NR] = {
        NULL,
        "missing_service",
        "unexpected_service",
        "unhealthy_service",
        "failed_deployment",
        "offline_agent",
        "dependency_unavailable",
        "unresolved_incident",
    };
    return name_of(names, RECONCILE_DRIFT_NR, kind);
}

const char *reconcile_level_name(int level)
{
    static const char *const names[RECONCILE_LEVEL_NR] = {
        NULL,
        "reconcile_required",
        "reconcile_recommended",
        "reconcile_blocked",
    };
    return name_of(names, RECONCILE_LEVEL_NR, level);
}

const char *reconcile_action_name(int action)
{
    static const char *const names[RECONCILE_ACTION_NR] = {
        NULL,
        "none",
        "redeploy",
        "restart",
        "start",
        "stop",
        "diagnostics",
        "failover_review",
        "delayed_deployment",
    };
    return name_of(names, RECONCILE_ACTION_NR, action);
}

const char *reconcile_state_name(int state)
{
    static const char *const names[RECONCILE_STATE_NR] = {
        NULL, "nominal", "degraded", "reconciling", "unstable"};
    return name_of(names, RECONCILE_STATE_NR, state);
}

const char *reconcile_guardrail_name(int guardrail)
{
    static const char *const names[RECONCILE_GUARD_NR] = {
        NULL,          "paused",      "frozen_service", "frozen_agent",
        "frozen_site", "not_allowed", "backoff",        "maintenance",
        "concurrency", "rate_agent",  "rate_site",      "rate_global",
    };
    return name_of(names, RECONCILE_GUARD_NR, guardrail);
}

const char *reconcile_outcome_name(int outcome)
{
    static const char *const names[RECONCILE_OUTCOME_NR] = {
        "none", "pending", "succeeded", "failed"};
    if (outcome < 0 || outcome >= RECONCILE_OUTCOME_NR) {
        return "?";
    }
    return names[outcome];
}

int reconcile_action_command(int action)
{
    switch (action) {
        case RECONCILE_ACTION_REDEPLOY:
            return PROTO_ACTION_PUSH_MANIFEST;
        case RECONCILE_ACTION_RESTART:
            return PROTO_ACTION_RESTART;
        case RECONCILE_ACTION_START:
            return PROTO_ACTION_START;
        case RECONCILE_ACTION_STOP:
            return PROTO_ACTION_STOP;
        case RECONCILE_ACTION_DIAGNOSTICS:
            return PROTO_ACTION_DIAGNOSTICS;
        default:
            return 0;
    }
}

/* ------------------------------------------------------------------------
 * Small pure helpers
 * --------------------------------------------------------------------- */

void reconcile_config_init(struct reconcile_config *c)
{
    memset(c, 0, sizeof *c);
    c->site_label = RECONCILE_DEFAULT_SITE_LABEL;
    c->rate_window_ms = RECONCILE_DEFAULT_RATE_WINDOW_MS;
    c->max_per_agent = RECONCILE_DEFAULT_MAX_PER_AGENT;
    c->max_per_site = RECONCILE_DEFAULT_MAX_PER_SITE;
    c->max_global = RECONCILE_DEFAULT_MAX_GLOBAL;
    c->max_in_flight = RECONCILE_DEFAULT_MAX_IN_FLIGHT;
    c->command_ttl_ms = RECONCILE_DEFAULT_COMMAND_TTL_MS;
    c->grace_ms = RECONCILE_DEFAULT_GRACE_MS;
}

void reconcile_record_resolve(struct reconcile_record *r, bool acked)
{
    PRE(r != NULL);
    if (r->outcome != RECONCILE_OUTCOME_PENDING) {
        return; /* A resolution seen twice changes nothing. */
    }
    if (acked) {
        r->outcome = RECONCILE_OUTCOME_SUCCEEDED;
        if (r->last_action == RECONCILE_ACTION_REDEPLOY) {
            r->deployed_digest = r->pending_digest;
        }
    } else {
        r->outcome = RECONCILE_OUTCOME_FAILED;
    }
    r->pending_digest = 0;
}

int reconcile_window_check(const struct reconcile_window *w, char *errmsg)
{
    static const char p[] = "maintenance_window";

    PRE(w != NULL && errmsg != NULL);
    if (w->name == NULL || w->name[0] == '\0') {
        rems_errmsgf(errmsg, "%s.name: required", p);
        return REMS_EINVAL;
    }
    if (w->scope < RECONCILE_WINDOW_GLOBAL ||
        w->scope > RECONCILE_WINDOW_AGENT) {
        rems_errmsgf(errmsg, "%s.scope: must be global, site or agent", p);
        return REMS_EINVAL;
    }
    if ((w->scope == RECONCILE_WINDOW_GLOBAL) != (w->target == NULL) ||
        (w->target != NULL && w->target[0] == '\0')) {
        rems_errmsgf(errmsg,
                     "%s.target: required for site and agent windows, not "
                     "allowed for global ones",
                     p);
        return REMS_EINVAL;
    }
    if (w->policy != RECONCILE_WINDOW_AUTO_INSIDE_ONLY &&
        w->policy != RECONCILE_WINDOW_NEVER_INSIDE) {
        rems_errmsgf(errmsg,
                     "%s.policy: must be auto_inside_only or never_inside", p);
        return REMS_EINVAL;
    }
    if (!w->weekly) {
        if (w->end_ms <= w->start_ms) {
            rems_errmsgf(errmsg, "%s.end_ms: must be after start_ms", p);
            return REMS_EINVAL;
        }
        return 0;
    }
    if (w->days < 1 || w->days > 127) {
        rems_errmsgf(errmsg, "%s.days: must be 1..127 (bit 0 = Monday)", p);
        return REMS_EINVAL;
    }
    if (w->start_minute >= MINUTES_PER_DAY) {
        rems_errmsgf(errmsg, "%s.start_minute: must be 0..1439", p);
        return REMS_EINVAL;
    }
    if (w->duration_minutes < 1 || w->duration_minutes > MINUTES_PER_WEEK) {
        rems_errmsgf(errmsg, "%s.duration_minutes: must be 1..10080", p);
        return REMS_EINVAL;
    }
    return 0;
}

bool reconcile_window_open(const struct reconcile_window *w, uint64_t now_ms)
{
    uint64_t days;
    uint64_t mow; /* Minute of the week, Monday 00:00 UTC = 0. */
    unsigned d;

    if (!w->weekly) {
        return now_ms >= w->start_ms && now_ms < w->end_ms;
    }
    days = now_ms / MS_PER_DAY;
    /* 1970-01-01 was a Thursday: day 3 of a week that starts on Monday. */
    mow = ((days + 3) % 7) * MINUTES_PER_DAY +
          (now_ms % MS_PER_DAY) / MS_PER_MINUTE;
    for (d = 0; d < 7; d++) {
        uint64_t start;
        if ((w->days & (1u << d)) == 0) {
            continue;
        }
        start = (uint64_t)d * MINUTES_PER_DAY + w->start_minute;
        if ((mow + MINUTES_PER_WEEK - start) % MINUTES_PER_WEEK <
            w->duration_minutes) {
            return true;
        }
    }
    return false;
}

/* A growable array of @size-byte elements. */
struct vec {
    void *data;
    size_t n;
    size_t cap;
};

/* A zeroed new last element, or NULL. */
static void *vec_push(struct vec *v, size_t size)
{
    char *slot;
    if (v->n == v->cap) {
        size_t cap = v->cap == 0 ? 16 : v->cap * 2;
        void *data = rems_realloc(v->data, cap * size);
        if (data == NULL) {
            return NULL;
        }
        v->data = data;
        v->cap = cap;
    }
    slot = (char *)v->data + v->n * size;
    v->n++;
    memset(slot, 0, size);
    return slot;
}

/* Room for @n elements (contents undefined), or REMS_ENOMEM. */
static int vec_reserve(struct vec *v, size_t n, size_t size)
{
    void *data;
    if (n <= v->cap) {
        return 0;
    }
    if (n > SIZE_MAX / size) {
        return REMS_ENOMEM;
    }
    data = rems_realloc(v->data, n * size);
    if (data == NULL) {
        return REMS_ENOMEM;
    }
    v->data = data;
    v->cap = n;
    return 0;
}

static void vec_free(struct vec *v)
{
    rems_free(v->data);
    memset(v, 0, sizeof *v);
}

static const char *
label_get(const struct policy_label *labels, size_t n, const char *key)
{
    size_t i;
    if (key == NULL || key[0] == '\0') {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (labels[i].key != NULL && strcmp(labels[i].key, key) == 0) {
            return labels[i].value;
        }
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ------------------------------------------------------------------------
 * Resolving the desired services of an agent
 * --------------------------------------------------------------------- */

/* Keys sorted through (key, index) pairs, ties by index. */
struct key_index {
    const char *key;
    size_t index;
};

static int cmp_key_index(const void *a, const void *b)
{
    const struct key_index *x = a;
    const struct key_index *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0) {
        return c;
    }
    return (x->index > y->index) - (x->index < y->index);
}

/* Policies sorted by key: *@order gets the indexes (rems_malloc).
 * REMS_EINVAL for a missing key or document, or a key given twice. */
static int policy_order(const struct reconcile_policy *policies,
                        size_t n,
                        size_t **order,
                        char *errmsg)
{
    struct key_index *ki;
    size_t *out;
    size_t i;

    ki = rems_malloc((n + 1) * sizeof *ki);
    out = rems_malloc((n + 1) * sizeof *out);
    if (ki == NULL || out == NULL) {
        rems_free(ki);
        rems_free(out);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        if (policies[i].key == NULL || policies[i].policy == NULL) {
            rems_free(ki);
            rems_free(out);
            rems_errmsgf(errmsg, "policies[%zu]: key and policy are required",
                         i);
            return REMS_EINVAL;
        }
        ki[i].key = policies[i].key;
        ki[i].index = i;
    }
    qsort(ki, n, sizeof *ki, cmp_key_index);
    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(ki[i].key, ki[i - 1].key) == 0) {
            rems_errmsgf(errmsg, "policies: key \"%.128s\" given twice",
                         ki[i].key);
            rems_free(ki);
            rems_free(out);
            return REMS_EINVAL;
        }
        out[i] = ki[i].index;
    }
    rems_free(ki);
    *order = out;
    return 0;
}

/* The document of @pol in force on @agent_id and its revision, or NULL.
 * @sorted_rollout is @pol's rollout_agents sorted (NULL: search the given
 * order). */
static const struct policy *policy_in_force(const struct reconcile_policy *pol,
                                            const char *const *sorted_rollout,
                                            const char *agent_id,
                                            uint64_t *revision)
{
    bool reached = false;
    size_t i;

    if (!pol->rollout_active) {
        *revision = pol->revision;
        return pol->policy;
    }
    if (sorted_rollout != NULL) {
        reached = bsearch(&agent_id, sorted_rollout, pol->n_rollout_agents,
                          sizeof *sorted_rollout, cmp_str) != NULL;
    } else {
        for (i = 0; i < pol->n_rollout_agents && !reached; i++) {
            reached = strcmp(pol->rollout_agents[i], agent_id) == 0;
        }
    }
    if (reached) {
        *revision = pol->revision;
        return pol->policy;
    }
    *revision = pol->previous_revision;
    return pol->previous;
}

/* Stable by construction: entries are pushed in key order and sorted by
 * (name, key rank), the rank being the position in @order. */
struct desired_rank {
    struct reconcile_desired d;
    size_t rank;
};

static int cmp_desired_rank(const void *a, const void *b)
{
    const struct desired_rank *x = a;
    const struct desired_rank *y = b;
    int c = strcmp(x->d.service, y->d.service);
    if (c != 0) {
        return c;
    }
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* The core of reconcile_resolve(): the desired services of one agent into
 * @v (struct desired_rank), sorted by name, one per name. @order lists the
 * policies by key; @sorted_rollouts (NULL, or per policy NULL) their
 * rollout agents sorted. 0 or REMS_ENOMEM. */
static int resolve_into(const struct reconcile_policy *policies,
                        const size_t *order,
                        size_t n_policies,
                        const char *const *const *sorted_rollouts,
                        const char *agent_id,
                        const struct policy_label *labels,
                        size_t n_labels,
                        struct vec *v)
{
    size_t r;
    size_t i;
    size_t kept;

    v->n = 0;
    for (r = 0; r < n_policies; r++) {
        const struct reconcile_policy *pol = &policies[order[r]];
        const struct policy *doc;
        uint64_t revision;
        doc = policy_in_force(
            pol, sorted_rollouts != NULL ? sorted_rollouts[order[r]] : NULL,
            agent_id, &revision);
        if (doc == NULL || !policy_selects(doc, agent_id, labels, n_labels)) {
            continue;
        }
        for (i = 0; i < doc->n_services; i++) {
            struct desired_rank *e = vec_push(v, sizeof *e);
            if (e == NULL) {
                return REMS_ENOMEM;
            }
            e->d.service = doc->services[i].name;
            e->d.policy = order[r];
            e->d.doc = doc;
            e->d.revision = revision;
            e->d.index = i;
            e->d.shadowed = SIZE_MAX;
            e->rank = r;
        }
    }
    if (v->n > 1) {
        struct desired_rank *e = v->data;
        qsort(e, v->n, sizeof *e, cmp_desired_rank);
        kept = 1;
        for (i = 1; i < v->n; i++) {
            if (strcmp(e[i].d.service, e[kept - 1].d.service) == 0) {
                if (e[kept - 1].d.shadowed == SIZE_MAX) {
                    e[kept - 1].d.shadowed = e[i].d.policy;
                }
                continue;
            }
            e[kept++] = e[i];
        }
        v->n = kept;
    }
    return 0;
}

int reconcile_resolve(const struct reconcile_policy *policies,
                      size_t n_policies,
                      const char *agent_id,
                      const struct policy_label *labels,
                      size_t n_labels,
                      struct reconcile_desired **out,
                      size_t *n,
                      char *errmsg)
{
    struct vec v = {0};
    struct reconcile_desired *items = NULL;
    size_t *order;
    size_t i;
    int rv;

    PRE(agent_id != NULL && out != NULL && n != NULL && errmsg != NULL);
    rv = policy_order(policies, n_policies, &order, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = resolve_into(policies, order, n_policies, NULL, agent_id, labels,
                      n_labels, &v);
    if (rv != 0) {
        rems_errmsg_oom(errmsg);
        goto err_after_order;
    }
    if (v.n > 0) {
        const struct desired_rank *e = v.data;
        items = rems_malloc(v.n * sizeof *items);
        if (items == NULL) {
            rv = REMS_ENOMEM;
            rems_errmsg_oom(errmsg);
            goto err_after_vec;
        }
        for (i = 0; i < v.n; i++) {
            items[i] = e[i].d;
        }
    }
    *out = items;
    *n = v.n;
    vec_free(&v);
    rems_free(order);
    return 0;

err_after_vec:
    vec_free(&v);
err_after_order:
    rems_free(order);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Loading an agent from its stored record
 * --------------------------------------------------------------------- */

struct agent_box {
    struct policy_arena arena;
};

static int enum_parse(const char *(*name)(int), int nr, const char *s)
{
    int i;
    for (i = 1; i < nr; i++) {
        if (strcmp(name(i), s) == 0) {
            return i;
        }
    }
    return 0;
}

/* An unsigned JSON integer field, 0 when absent. */
static bool u64_field(const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = 0;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int load_services(struct policy_arena *arena,
                         const json_t *map,
                         struct reconcile_service **out,
                         size_t *n_out,
                         char *errmsg)
{
    struct reconcile_service *items;
    const char *name;
    json_t *o;
    size_t n = json_object_size(map);
    size_t i = 0;

    items = policy__arena_alloc(arena, n * sizeof *items);
    if (items == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    json_object_foreach((json_t *)map, name, o)
    {
        struct reconcile_service *s = &items[i++];
        const json_t *v;

        if (!json_is_object(o)) {
            rems_errmsgf(errmsg, "services.%.128s: must be an object", name);
            return REMS_ECORRUPT;
        }
        v = json_object_get(o, "state");
        s->state = json_is_string(v)
                       ? enum_parse(proto_state_name, PROTO_STATE_NR,
                                    json_string_value(v))
                       : 0;
        if (s->state == 0) {
            rems_errmsgf(errmsg, "services.%.128s.state: must be a state name",
                         name);
            return REMS_ECORRUPT;
        }
        v = json_object_get(o, "health");
        s->health = PROTO_HEALTH_UNKNOWN;
        if (v != NULL) {
            s->health = json_is_string(v)
                            ? enum_parse(proto_health_name, PROTO_HEALTH_NR,
                                         json_string_value(v))
                            : 0;
            if (s->health == 0) {
                rems_errmsgf(errmsg,
                             "services.%.128s.health: must be a health name",
                             name);
                return REMS_ECORRUPT;
            }
        }
        v = json_object_get(o, "ready");
        if (v != NULL && !json_is_boolean(v)) {
            rems_errmsgf(errmsg, "services.%.128s.ready: must be a boolean",
                         name);
            return REMS_ECORRUPT;
        }
        s->ready = json_is_true(v);
        if (!u64_field(o, "generation", &s->generation) ||
            !u64_field(o, "since_ms", &s->since_ms)) {
            rems_errmsgf(errmsg,
                         "services.%.128s: generation and since_ms must be "
                         "integers >= 0",
                         name);
            return REMS_ECORRUPT;
        }
        v = json_object_get(o, "exit_code");
        if (v != NULL) {
            if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
                json_integer_value(v) > INT32_MAX) {
                rems_errmsgf(errmsg,
                             "services.%.128s.exit_code: must be an integer",
                             name);
                return REMS_ECORRUPT;
            }
            s->has_exit_code = true;
            s->exit_code = (int32_t)json_integer_value(v);
        }
        v = json_object_get(o, "message");
        s->message = "";
        if (json_is_string(v)) {
            s->message = policy__arena_strndup(arena, json_string_value(v),
                                               json_string_length(v));
        }
        s->name = policy__arena_strdup(arena, name);
        if (s->name == NULL || s->message == NULL) {
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
    }
    *out = items;
    *n_out = n;
    return 0;
}

static int load_labels(struct policy_arena *arena,
                       const json_t *obj,
                       struct policy_label **out,
                       size_t *n_out,
                       char *errmsg)
{
    struct policy_label *items;
    const char *key;
    json_t *v;
    size_t n = json_object_size(obj);
    size_t i = 0;

    items = policy__arena_alloc(arena, n * sizeof *items);
    if (items == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!json_is_string(v)) {
            rems_errmsgf(errmsg, "labels.%.128s: must be a string", key);
            return REMS_ECORRUPT;
        }
        items[i].key = policy__arena_strdup(arena, key);
        items[i].value = policy__arena_strndup(arena, json_string_value(v),
                                               json_string_length(v));
        if (items[i].key == NULL || items[i].value == NULL) {
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
        i++;
    }
    *out = items;
    *n_out = n;
    return 0;
}

/* Parse @len bytes of @text as a JSON object; 0 bytes give NULL. */
static int load_object(
    const char *text, size_t len, const char *what, json_t **out, char *errmsg)
{
    json_error_t jerr;
    json_t *o;

    *out = NULL;
    if (text == NULL || len == 0) {
        return 0;
    }
    o = json_loadb(text, len, 0, &jerr);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        rems_errmsgf(errmsg, "%s: must be a JSON object", what);
        return REMS_ECORRUPT;
    }
    *out = o;
    return 0;
}

int reconcile_agent_load(const char *id,
                         size_t id_len,
                         const char *labels,
                         size_t labels_len,
                         const char *services,
                         size_t services_len,
                         bool online,
                         struct reconcile_agent *a,
                         char *errmsg)
{
    struct agent_box *box;
    struct reconcile_agent tmp = {0};
    struct policy_label *lab = NULL;
    struct reconcile_service *svc = NULL;
    json_t *jl;
    json_t *js;
    int rv;

    PRE(id != NULL && a != NULL && errmsg != NULL);
    rv = load_object(labels, labels_len, "labels", &jl, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = load_object(services, services_len, "services", &js, errmsg);
    if (rv != 0) {
        goto err_after_labels;
    }
    box = rems_malloc(sizeof *box);
    if (box == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_services;
    }
    /* Most agents fit in one small block. */
    policy__arena_init(&box->arena, 2048);
    tmp.id = policy__arena_strndup(&box->arena, id, id_len);
    if (tmp.id == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_box;
    }
    if (jl != NULL) {
        rv = load_labels(&box->arena, jl, &lab, &tmp.n_labels, errmsg);
        if (rv != 0) {
            goto err_after_box;
        }
    }
    if (js != NULL) {
        rv = load_services(&box->arena, js, &svc, &tmp.n_services, errmsg);
        if (rv != 0) {
            goto err_after_box;
        }
    }
    json_decref(js);
    json_decref(jl);
    tmp.labels = lab;
    tmp.services = svc;
    tmp.online = online;
    tmp.priv = box;
    *a = tmp;
    return 0;

err_after_box:
    policy__arena_close(&box->arena);
    rems_free(box);
err_after_services:
    json_decref(js);
err_after_labels:
    json_decref(jl);
err:
    POST(rv != 0);
    return rv;
}

void reconcile_agent_clear(struct reconcile_agent *a)
{
    struct agent_box *box;
    if (a == NULL) {
        return;
    }
    box = a->priv;
    if (box != NULL) {
        policy__arena_close(&box->arena);
        rems_free(box);
    }
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------
 * The rule table: condition of a desired service -> drift
 * --------------------------------------------------------------------- */

/* What the report (and the record) say about one desired service. */
enum cond {
    COND_OK = 0,        /* running and ready, or stopped without autostart */
    COND_TRANSIENT,     /* starting / stopping / not ready, within grace */
    COND_ABSENT,        /* not reported */
    COND_UNDEPLOYED,    /* reported, but this manifest is not acknowledged */
    COND_DEPLOY_FAILED, /* the last redeploy failed; still not deployed */
    COND_DOWN,          /* stopped (autostart), failed, fatal */
    COND_UNHEALTHY,     /* health unhealthy */
    COND_STUCK,         /* starting / stopping / not ready past grace */
    COND_BACKOFF,       /* the agent is restarting it */
    COND_OPERATOR,      /* paused or quarantined */
    COND_NR
};

struct rule {
    int kind; /* 0: no drift */
    int level;
    int action;
    /* When a dependency is unavailable: follow it instead. */
    bool dep_sensitive;
    int dep_action;
};

static const struct rule rules[COND_NR] = {
    [COND_OK] = {0, 0, 0, false, 0},
    [COND_TRANSIENT] = {0, 0, 0, false, 0},
    [COND_ABSENT] = {RECONCILE_DRIFT_MISSING_SERVICE, RECONCILE_REQUIRED,
                     RECONCILE_ACTION_REDEPLOY, true,
                     RECONCILE_ACTION_DELAYED_DEPLOYMENT},
    [COND_UNDEPLOYED] = {RECONCILE_DRIFT_MISSING_SERVICE, RECONCILE_REQUIRED,
                         RECONCILE_ACTION_REDEPLOY, true,
                         RECONCILE_ACTION_DELAYED_DEPLOYMENT},
    [COND_DEPLOY_FAILED] = {RECONCILE_DRIFT_FAILED_DEPLOYMENT,
                            RECONCILE_REQUIRED, RECONCILE_ACTION_REDEPLOY,
                            false, 0},
    [COND_DOWN] = {RECONCILE_DRIFT_UNHEALTHY_SERVICE, RECONCILE_REQUIRED,
                   RECONCILE_ACTION_START, true, RECONCILE_ACTION_NONE},
    [COND_UNHEALTHY] = {RECONCILE_DRIFT_UNHEALTHY_SERVICE, RECONCILE_REQUIRED,
                        RECONCILE_ACTION_RESTART, true, RECONCILE_ACTION_NONE},
    [COND_STUCK] = {RECONCILE_DRIFT_UNHEALTHY_SERVICE, RECONCILE_REQUIRED,
                    RECONCILE_ACTION_RESTART, true, RECONCILE_ACTION_NONE},
    [COND_BACKOFF] = {RECONCILE_DRIFT_UNHEALTHY_SERVICE, RECONCILE_RECOMMENDED,
                      RECONCILE_ACTION_DIAGNOSTICS, false, 0},
    [COND_OPERATOR] = {RECONCILE_DRIFT_UNHEALTHY_SERVICE, RECONCILE_RECOMMENDED,
                       RECONCILE_ACTION_NONE, false, 0},
};

static uint64_t age_ms(uint64_t now, uint64_t since)
{
    return now > since ? now - since : 0;
}

/* The condition of a reported (or absent) service, before the record is
 * considered. */
static int classify(const struct reconcile_service *s,
                    bool autostart,
                    uint64_t now,
                    uint64_t grace)
{
    bool late;

    if (s == NULL) {
        return COND_ABSENT;
    }
    late = age_ms(now, s->since_ms) >= grace;
    switch (s->state) {
        case PROTO_STATE_RUNNING:
            if (s->health == PROTO_HEALTH_UNHEALTHY) {
                return COND_UNHEALTHY;
            }
            if (!s->ready) {
                return late ? COND_STUCK : COND_TRANSIENT;
            }
            return COND_OK;
        case PROTO_STATE_STARTING:
            if (s->health == PROTO_HEALTH_UNHEALTHY) {
                return COND_UNHEALTHY;
            }
            return late ? COND_STUCK : COND_TRANSIENT;
        case PROTO_STATE_STOPPING:
            return late ? COND_STUCK : COND_TRANSIENT;
        case PROTO_STATE_STOPPED:
            return autostart ? COND_DOWN : COND_OK;
        case PROTO_STATE_FAILED:
        case PROTO_STATE_FATAL:
            return COND_DOWN;
        case PROTO_STATE_BACKOFF:
            return COND_BACKOFF;
        case PROTO_STATE_PAUSED:
        case PROTO_STATE_QUARANTINED:
            return COND_OPERATOR;
        default:
            /* A state this side does not know: treat it as broken. */
            return COND_UNHEALTHY;
    }
}

/* ------------------------------------------------------------------------
 * The pass
 * --------------------------------------------------------------------- */

struct site {
    const char *name; /* arena copy */
    unsigned issued;  /* in the rate window, this pass included */
    size_t counts[RECONCILE_STATE_NR];
};

/* Per agent (input index). */
struct agent_info {
    const char *id;  /* arena copy, once set */
    size_t site;     /* index into sites, or SIZE_MAX */
    unsigned issued; /* issued to it in this pass */
    size_t counts[RECONCILE_STATE_NR];
};

/* A required drift that may become a command. */
struct cand {
    size_t drift; /* index into drifts */
    size_t agent; /* input index */
    const struct policy_service *svc;
    const struct policy *doc;
    const struct reconcile_record *rec;
    const char *policy; /* key (arena) */
    uint64_t revision;
};

/* The output while it is built, freed as one. */
struct out_box {
    struct policy_arena arena;
    struct vec drifts;
    struct vec commands;
    struct vec holds;
    struct vec incidents;
    struct vec updates;
    struct vec conflicts;
    struct vec services; /* struct reconcile_summary, by name */
    struct vec agents;
    struct vec sites;
};

struct pass {
    const struct reconcile_input *in;
    uint64_t now;
    char *errmsg;
    struct out_box *box;
    size_t *porder;            /* policies by key */
    const char ***rollouts;    /* per policy: sorted ids or NULL */
    const char **pkeys;        /* per policy: arena copy of key */
    size_t *aorder;            /* agents by id */
    struct agent_info *agents; /* per input index */
    const struct reconcile_incident **incidents; /* by agent, service, id */
    size_t n_incidents;
    const struct reconcile_window **windows; /* by name */
    struct site *sites;                      /* by name */
    size_t n_sites;
    struct vec cands;
    unsigned in_flight; /* records pending, plus issued by this pass */
    unsigned issued;    /* global count in the window, plus this pass */
    /* Scratch of one agent. */
    struct vec desired;  /* struct desired_rank */
    struct vec reported; /* const struct reconcile_service * */
    struct vec records;  /* const struct reconcile_record * */
    struct vec conds;    /* int */
};

static int oom(struct pass *ps)
{
    rems_errmsg_oom(ps->errmsg);
    return REMS_ENOMEM;
}

static const char *text_dup(struct pass *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An arena copy of the formatted text, or NULL. */
static const char *text_dup(struct pass *ps, const char *fmt, ...)
{
    char buf[TEXT_SIZE];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        buf[0] = '\0';
        n = 0;
    }
    if ((size_t)n >= sizeof buf) {
        n = (int)sizeof buf - 1;
    }
    return policy__arena_strndup(&ps->box->arena, buf, (size_t)n);
}

/* Sorting agents by id goes through (id, index) pairs, as policies do. */
static int agent_order(struct pass *ps)
{
    const struct reconcile_input *in = ps->in;
    struct key_index *ki;
    size_t i;

    ki = rems_malloc((in->n_agents + 1) * sizeof *ki);
    ps->aorder = rems_malloc((in->n_agents + 1) * sizeof *ps->aorder);
    if (ki == NULL || ps->aorder == NULL) {
        rems_free(ki);
        return oom(ps);
    }
    for (i = 0; i < in->n_agents; i++) {
        if (in->agents[i].id == NULL) {
            rems_free(ki);
            rems_errmsgf(ps->errmsg, "agents[%zu]: id is required", i);
            return REMS_EINVAL;
        }
        ki[i].key = in->agents[i].id;
        ki[i].index = i;
    }
    qsort(ki, in->n_agents, sizeof *ki, cmp_key_index);
    for (i = 0; i < in->n_agents; i++) {
        if (i > 0 && strcmp(ki[i].key, ki[i - 1].key) == 0) {
            rems_errmsgf(ps->errmsg, "agents: id \"%.64s\" given twice",
                         ki[i].key);
            rems_free(ki);
            return REMS_EINVAL;
        }
        ps->aorder[i] = ki[i].index;
    }
    rems_free(ki);
    return 0;
}

static int cmp_incident(const void *a, const void *b)
{
    const struct reconcile_incident *x =
        *(const struct reconcile_incident *const *)a;
    const struct reconcile_incident *y =
        *(const struct reconcile_incident *const *)b;
    int c = strcmp(x->agent, y->agent);
    if (c == 0) {
        c = strcmp(x->service, y->service);
    }
    if (c == 0) {
        c = (x->id > y->id) - (x->id < y->id);
    }
    return c;
}

static int cmp_window(const void *a, const void *b)
{
    const struct reconcile_window *x =
        *(const struct reconcile_window *const *)a;
    const struct reconcile_window *y =
        *(const struct reconcile_window *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_site_name(const void *a, const void *b)
{
    return strcmp(((const struct site *)a)->name,
                  ((const struct site *)b)->name);
}

static const char *agent_site(const struct pass *ps,
                              const struct reconcile_agent *a)
{
    return label_get(a->labels, a->n_labels, ps->in->config.site_label);
}

/* Sorted views of everything that is not per agent. */
static int prepare(struct pass *ps)
{
    const struct reconcile_input *in = ps->in;
    const struct reconcile_guard *g = &in->guard;
    const char **names;
    size_t n;
    size_t i;
    int rv;

    rv = policy_order(in->policies, in->n_policies, &ps->porder, ps->errmsg);
    if (rv != 0) {
        return rv;
    }
    ps->rollouts = rems_calloc(in->n_policies + 1, sizeof *ps->rollouts);
    ps->pkeys = rems_calloc(in->n_policies + 1, sizeof *ps->pkeys);
    if (ps->rollouts == NULL || ps->pkeys == NULL) {
        return oom(ps);
    }
    for (i = 0; i < in->n_policies; i++) {
        const struct reconcile_policy *pol = &in->policies[i];
        ps->pkeys[i] = policy__arena_strdup(&ps->box->arena, pol->key);
        if (ps->pkeys[i] == NULL) {
            return oom(ps);
        }
        if (!pol->rollout_active) {
            continue;
        }
        ps->rollouts[i] =
            rems_malloc((pol->n_rollout_agents + 1) * sizeof(const char *));
        if (ps->rollouts[i] == NULL) {
            return oom(ps);
        }
        if (pol->n_rollout_agents > 0) {
            memcpy(ps->rollouts[i], pol->rollout_agents,
                   pol->n_rollout_agents * sizeof(const char *));
            qsort(ps->rollouts[i], pol->n_rollout_agents, sizeof(const char *),
                  cmp_str);
        }
    }
    rv = agent_order(ps);
    if (rv != 0) {
        return rv;
    }
    ps->agents = rems_calloc(in->n_agents + 1, sizeof *ps->agents);
    ps->incidents = rems_malloc((g->n_incidents + 1) * sizeof *ps->incidents);
    ps->windows = rems_malloc((g->n_windows + 1) * sizeof *ps->windows);
    names = rems_malloc((in->n_agents + 1) * sizeof *names);
    if (ps->agents == NULL || ps->incidents == NULL || ps->windows == NULL ||
        names == NULL) {
        rems_free(names);
        return oom(ps);
    }
    for (i = 0; i < g->n_incidents; i++) {
        if (g->incidents[i].agent == NULL || g->incidents[i].service == NULL) {
            rems_free(names);
            rems_errmsgf(ps->errmsg,
                         "guard.incidents[%zu]: agent and service are "
                         "required",
                         i);
            return REMS_EINVAL;
        }
        ps->incidents[i] = &g->incidents[i];
    }
    ps->n_incidents = g->n_incidents;
    qsort(ps->incidents, ps->n_incidents, sizeof *ps->incidents, cmp_incident);
    for (i = 0; i < g->n_windows; i++) {
        char msg[REMS_ERRMSG_SIZE];
        if (reconcile_window_check(&g->windows[i], msg) != 0) {
            rems_free(names);
            rems_errmsgf(ps->errmsg, "guard.windows[%zu]: %s", i, msg);
            return REMS_EINVAL;
        }
        ps->windows[i] = &g->windows[i];
    }
    qsort(ps->windows, g->n_windows, sizeof *ps->windows, cmp_window);

    /* Sites: the distinct values of the site label, sorted. */
    n = 0;
    for (i = 0; i < in->n_agents; i++) {
        const char *s = agent_site(ps, &in->agents[i]);
        if (s != NULL) {
            names[n++] = s;
        }
    }
    qsort(names, n, sizeof *names, cmp_str);
    ps->sites = rems_calloc(n + 1, sizeof *ps->sites);
    if (ps->sites == NULL) {
        rems_free(names);
        return oom(ps);
    }
    for (i = 0; i < n; i++) {
        if (ps->n_sites > 0 &&
            strcmp(ps->sites[ps->n_sites - 1].name, names[i]) == 0) {
            continue;
        }
        ps->sites[ps->n_sites].name =
            policy__arena_strdup(&ps->box->arena, names[i]);
        if (ps->sites[ps->n_sites].name == NULL) {
            rems_free(names);
            return oom(ps);
        }
        ps->n_sites++;
    }
    rems_free(names);
    for (i = 0; i < g->n_sites; i++) {
        struct site key = {0};
        struct site *s;
        if (g->sites[i].site == NULL) {
            continue;
        }
        key.name = g->sites[i].site;
        s = bsearch(&key, ps->sites, ps->n_sites, sizeof *ps->sites,
                    cmp_site_name);
        if (s != NULL) {
            s->issued = g->sites[i].issued;
        }
    }
    for (i = 0; i < in->n_agents; i++) {
        const struct reconcile_agent *a = &in->agents[i];
        const char *s = agent_site(ps, a);
        size_t k;
        ps->agents[i].site = SIZE_MAX;
        if (s != NULL) {
            struct site key = {0};
            struct site *hit;
            key.name = s;
            hit = bsearch(&key, ps->sites, ps->n_sites, sizeof *ps->sites,
                          cmp_site_name);
            REMS_ASSERT(hit != NULL);
            ps->agents[i].site = (size_t)(hit - ps->sites);
        }
        for (k = 0; k < a->n_records; k++) {
            if (a->records[k].outcome == RECONCILE_OUTCOME_PENDING) {
                ps->in_flight++;
            }
        }
    }
    ps->issued = g->issued_global;
    return 0;
}

/* ------------------------------------------------------------------------
 * Phase 1: one agent
 * --------------------------------------------------------------------- */

/* The summary of service @name, inserted when new. */
static struct reconcile_summary *service_summary(struct pass *ps,
                                                 const char *name)
{
    struct vec *v = &ps->box->services;
    struct reconcile_summary *s = v->data;
    size_t lo = 0;
    size_t hi = v->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s[mid].name, name);
        if (c == 0) {
            return &s[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (vec_push(v, sizeof *s) == NULL) {
        return NULL;
    }
    s = v->data;
    memmove(&s[lo + 1], &s[lo], (v->n - 1 - lo) * sizeof *s);
    memset(&s[lo], 0, sizeof *s);
    s[lo].name = policy__arena_strdup(&ps->box->arena, name);
    if (s[lo].name == NULL) {
        v->n--;
        memmove(&s[lo], &s[lo + 1], (v->n - lo) * sizeof *s);
        return NULL;
    }
    return &s[lo];
}

/* Count one (agent @ai, service @name) in state @state; *@interned gets
 * the arena copy of @name. */
static int count_state(struct pass *ps,
                       size_t ai,
                       const char *name,
                       int state,
                       const char **interned)
{
    struct reconcile_summary *s = service_summary(ps, name);
    if (s == NULL) {
        return oom(ps);
    }
    s->counts[state]++;
    s->total++;
    ps->agents[ai].counts[state]++;
    if (interned != NULL) {
        *interned = s->name;
    }
    return 0;
}

/* Move one counted (agent, service) from @from to @to. */
static void
recount(struct pass *ps, size_t ai, const char *name, int from, int to)
{
    struct reconcile_summary *s = service_summary(ps, name);
    REMS_ASSERT(s != NULL); /* It was counted in phase 1. */
    s->counts[from]--;
    s->counts[to]++;
    ps->agents[ai].counts[from]--;
    ps->agents[ai].counts[to]++;
}

static const char *agent_id_copy(struct pass *ps, size_t ai)
{
    struct agent_info *info = &ps->agents[ai];
    if (info->id == NULL) {
        info->id = policy__arena_strdup(&ps->box->arena, ps->in->agents[ai].id);
    }
    return info->id;
}

static struct reconcile_drift *
drift_new(struct pass *ps, size_t ai, const char *service, int kind)
{
    struct reconcile_drift *d = vec_push(&ps->box->drifts, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    d->kind = kind;
    d->agent = agent_id_copy(ps, ai);
    d->service = service;
    d->policy = "";
    d->criticality = POLICY_OPTIONAL;
    if (d->agent == NULL) {
        ps->box->drifts.n--;
        return NULL;
    }
    return d;
}

static int update_put(struct pass *ps,
                      size_t ai,
                      const char *service,
                      const struct reconcile_record *r)
{
    struct reconcile_update *u = vec_push(&ps->box->updates, sizeof *u);
    if (u == NULL) {
        return oom(ps);
    }
    u->kind = RECONCILE_RECORD_PUT;
    u->agent = agent_id_copy(ps, ai);
    u->record = *r;
    u->record.service = service;
    if (u->agent == NULL) {
        return oom(ps);
    }
    return 0;
}

static int
update_delete(struct pass *ps, size_t ai, const struct reconcile_record *r)
{
    struct reconcile_update *u = vec_push(&ps->box->updates, sizeof *u);
    if (u == NULL) {
        return oom(ps);
    }
    u->kind = RECONCILE_RECORD_DELETE;
    u->agent = agent_id_copy(ps, ai);
    u->record.service = policy__arena_strdup(&ps->box->arena, r->service);
    if (u->agent == NULL || u->record.service == NULL) {
        return oom(ps);
    }
    return 0;
}

static int cmp_service_ptr(const void *a, const void *b)
{
    const struct reconcile_service *x =
        *(const struct reconcile_service *const *)a;
    const struct reconcile_service *y =
        *(const struct reconcile_service *const *)b;
    int c = strcmp(x->name, y->name);
    /* Names are unique by contract; if not, the newest generation first,
     * so that the choice does not depend on the input's order. */
    if (c == 0) {
        c = (x->generation < y->generation) - (x->generation > y->generation);
    }
    if (c == 0) {
        c = (x->since_ms < y->since_ms) - (x->since_ms > y->since_ms);
    }
    if (c == 0) {
        c = (x->state > y->state) - (x->state < y->state);
    }
    return c;
}

static int cmp_record_ptr(const void *a, const void *b)
{
    const struct reconcile_record *x =
        *(const struct reconcile_record *const *)a;
    const struct reconcile_record *y =
        *(const struct reconcile_record *const *)b;
    int c = strcmp(x->service, y->service);
    if (c == 0) {
        c = (x->last_attempt_ms < y->last_attempt_ms) -
            (x->last_attempt_ms > y->last_attempt_ms);
    }
    return c;
}

static const struct reconcile_service *reported_find(struct pass *ps,
                                                     const char *name)
{
    const struct reconcile_service *const *items = ps->reported.data;
    size_t lo = 0;
    size_t hi = ps->reported.n;
    /* Lower bound, so that the first of equal names is found. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(items[mid]->name, name) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < ps->reported.n && strcmp(items[lo]->name, name) == 0) {
        return items[lo];
    }
    return NULL;
}

/* The desired entry named @name of the current agent, or SIZE_MAX. */
static size_t desired_find(struct pass *ps, const char *name)
{
    const struct desired_rank *e = ps->desired.data;
    size_t lo = 0;
    size_t hi = ps->desired.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(e[mid].d.service, name);
        if (c == 0) {
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return SIZE_MAX;
}

/* The first dependency of desired entry @i that is not available, or
 * NULL. */
static const char *dependency_down(struct pass *ps, size_t i)
{
    const struct desired_rank *e = ps->desired.data;
    const int *conds = ps->conds.data;
    const struct policy_service *svc = &e[i].d.doc->services[e[i].d.index];
    size_t k;

    for (k = 0; k < svc->n_deps; k++) {
        const char *dep = e[i].d.doc->services[svc->deps[k]].name;
        size_t j = desired_find(ps, dep);
        if (j == SIZE_MAX || conds[j] != COND_OK) {
            return dep;
        }
    }
    return NULL;
}

/* What is wrong, for the detail of a drift. */
static const char *describe(struct pass *ps,
                            int cond,
                            const struct reconcile_service *s,
                            const struct reconcile_record *rec,
                            const char *dep)
{
    const char *msg = s != NULL && s->message != NULL ? s->message : "";
    const char *sep = msg[0] != '\0' ? ": " : "";
    char code[32] = "";

    if (s != NULL && s->has_exit_code) {
        snprintf(code, sizeof code, ", exit code %" PRId32, s->exit_code);
    }
    if (dep != NULL) {
        return text_dup(ps, "depends on \"%.128s\", which is not available",
                        dep);
    }
    switch (cond) {
        case COND_ABSENT:
            return text_dup(ps, "not reported by the agent");
        case COND_UNDEPLOYED:
            if (rec == NULL || rec->deployed_digest == 0) {
                return text_dup(ps,
                                "reported (%s), but no deployment of "
                                "this manifest is recorded",
                                proto_state_name(s->state));
            }
            return text_dup(ps,
                            "reported (%s), but the agent runs another "
                            "manifest",
                            proto_state_name(s->state));
        case COND_DEPLOY_FAILED:
            return text_dup(ps, "the last push_manifest failed (attempt %u)",
                            rec->attempts);
        case COND_DOWN:
            return text_dup(ps, "%s%s%s%.256s", proto_state_name(s->state),
                            code, sep, msg);
        case COND_UNHEALTHY:
            return text_dup(ps, "%s and unhealthy%s%.256s",
                            proto_state_name(s->state), sep, msg);
        case COND_STUCK:
            return text_dup(
                ps, "%s%s for %" PRIu64 " ms", proto_state_name(s->state),
                s->state == PROTO_STATE_RUNNING ? " but not ready" : "",
                age_ms(ps->now, s->since_ms));
        case COND_BACKOFF:
            return text_dup(ps, "backoff: the agent is restarting it%s%s%.256s",
                            code, sep, msg);
        case COND_OPERATOR:
            return text_dup(ps, "%s by an operator",
                            proto_state_name(s->state));
        default:
            return text_dup(ps, "%s",
                            proto_state_name(s != NULL ? s->state : 0));
    }
}

/* Why the recommended action, for people. */
static const char *reason_of(struct pass *ps,
                             int action,
                             const char *policy,
                             uint64_t revision,
                             const char *dep)
{
    switch (action) {
        case RECONCILE_ACTION_REDEPLOY:
            return text_dup(ps,
                            "push the manifest of policy \"%.128s\" revision "
                            "%" PRIu64,
                            policy, revision);
        case RECONCILE_ACTION_START:
            return text_dup(ps, "start the service");
        case RECONCILE_ACTION_RESTART:
            return text_dup(ps, "restart the service");
        case RECONCILE_ACTION_DIAGNOSTICS:
            return text_dup(ps, "the agent is already restarting it; collect "
                                "diagnostics if it keeps failing");
        case RECONCILE_ACTION_DELAYED_DEPLOYMENT:
            return text_dup(ps, "deploy once \"%.128s\" is available", dep);
        default:
            if (dep != NULL) {
                return text_dup(ps,
                                "it follows \"%.128s\"; reconcile that "
                                "first",
                                dep);
            }
            return text_dup(ps, "an operator set this state; resume or start "
                                "it when ready");
    }
}

/* The state of a drifting (agent, service). */
static int drift_state(int level, bool pending, int criticality)
{
    if (level == RECONCILE_BLOCKED) {
        return RECONCILE_UNSTABLE;
    }
    if (pending) {
        return RECONCILE_RECONCILING;
    }
    return criticality == POLICY_CRITICAL ? RECONCILE_UNSTABLE
                                          : RECONCILE_DEGRADED;
}

/* One desired service (entry @i of the agent's desired list). */
static int eval_desired(struct pass *ps,
                        size_t ai,
                        size_t i,
                        const struct reconcile_service *obs,
                        const struct reconcile_record *rec,
                        const struct reconcile_incident *inc)
{
    const struct desired_rank *e =
        &((const struct desired_rank *)ps->desired.data)[i];
    const struct policy *doc = e->d.doc;
    const struct policy_service *svc = &doc->services[e->d.index];
    const char *key = ps->pkeys[e->d.policy];
    bool deployed = rec != NULL && rec->deployed_digest == svc->digest;
    bool pending = rec != NULL && rec->outcome == RECONCILE_OUTCOME_PENDING;
    int cond = ((const int *)ps->conds.data)[i];
    const char *dep = NULL;
    const char *interned;
    struct reconcile_drift *d;
    struct rule r;
    size_t di;
    int state;
    int rv;

    if (!deployed && cond != COND_ABSENT) {
        cond = COND_UNDEPLOYED;
    }
    if (!deployed && rec != NULL && rec->outcome == RECONCILE_OUTCOME_FAILED &&
        rec->last_action == RECONCILE_ACTION_REDEPLOY) {
        cond = COND_DEPLOY_FAILED;
    }
    r = rules[cond];
    if (r.kind != 0 && r.dep_sensitive) {
        dep = dependency_down(ps, i);
        if (dep != NULL) {
            r.kind = RECONCILE_DRIFT_DEPENDENCY_UNAVAILABLE;
            r.level = RECONCILE_RECOMMENDED;
            r.action = r.dep_action;
        }
    }

    if (r.kind == 0 && inc == NULL) {
        state = pending ? RECONCILE_RECONCILING : RECONCILE_NOMINAL;
        rv = count_state(ps, ai, svc->name, state, &interned);
        if (rv != 0) {
            return rv;
        }
        /* A quiet service resets its count once the last attempt is old
         * enough: the episode is over. */
        if (rec != NULL && rec->attempts > 0 && !pending &&
            age_ms(ps->now, rec->last_attempt_ms) >=
                doc->remediation.reset_after_ms) {
            struct reconcile_record nr = *rec;
            nr.attempts = 0;
            return update_put(ps, ai, interned, &nr);
        }
        return 0;
    }

    di = ps->box->drifts.n;
    rv = count_state(ps, ai, svc->name, RECONCILE_NOMINAL, &interned);
    if (rv != 0) {
        return rv;
    }
    d = drift_new(ps, ai, interned, r.kind);
    if (d == NULL) {
        return oom(ps);
    }
    d->policy = key;
    d->revision = e->d.revision;
    d->criticality = svc->criticality;
    if (r.kind != 0) {
        d->detail = describe(ps, cond, obs, rec, dep);
        d->level = r.level;
        d->action = r.action;
        d->reason = reason_of(ps, r.action, key, e->d.revision, dep);
        if (d->detail == NULL || d->reason == NULL) {
            return oom(ps);
        }
    }

    if (inc != NULL) {
        const char *under =
            r.kind != 0 ? d->detail : "the service is nominal now";
        d->kind = RECONCILE_DRIFT_UNRESOLVED_INCIDENT;
        d->detail = text_dup(ps, "incident %" PRIu64 " %s; %.300s", inc->id,
                             inc->acknowledged ? "acknowledged" : "open",
                             under);
        if (r.kind != 0) {
            d->level = RECONCILE_BLOCKED;
            d->action = RECONCILE_ACTION_DIAGNOSTICS;
            d->reason = text_dup(ps,
                                 "incident %" PRIu64 " is unresolved: no "
                                 "automatic action until it is resolved",
                                 inc->id);
        } else {
            d->level = RECONCILE_RECOMMENDED;
            d->action = RECONCILE_ACTION_NONE;
            d->reason = text_dup(ps, "resolve incident %" PRIu64, inc->id);
        }
    } else if (r.level == RECONCILE_REQUIRED && rec != NULL &&
               rec->attempts >= doc->remediation.max_attempts && !pending &&
               age_ms(ps->now, rec->last_attempt_ms) >=
                   doc->remediation.backoff_ms) {
        struct reconcile_incident_open *io;
        io = vec_push(&ps->box->incidents, sizeof *io);
        if (io == NULL) {
            return oom(ps);
        }
        io->agent = d->agent;
        io->service = d->service;
        io->kind = d->kind;
        io->policy = key;
        io->attempts = rec->attempts;
        io->detail = d->detail;
        d->level = RECONCILE_BLOCKED;
        d->action = RECONCILE_ACTION_DIAGNOSTICS;
        d->reason = text_dup(ps,
                             "%u remediations did not clear it; an incident "
                             "is opened: investigate",
                             rec->attempts);
    }
    if (d->detail == NULL || d->reason == NULL) {
        return oom(ps);
    }
    state = drift_state(d->level, pending, svc->criticality);
    d->state = state;
    recount(ps, ai, svc->name, RECONCILE_NOMINAL, state);

    if (d->level == RECONCILE_REQUIRED && !pending &&
        doc->mode == POLICY_MODE_AUTO &&
        reconcile_action_command(d->action) != 0) {
        struct cand *c = vec_push(&ps->cands, sizeof *c);
        if (c == NULL) {
            return oom(ps);
        }
        c->drift = di;
        c->agent = ai;
        c->svc = svc;
        c->doc = doc;
        c->rec = rec;
        c->policy = key;
        c->revision = e->d.revision;
    }
    return 0;
}

/* A reported service no policy places here. */
static int eval_unexpected(struct pass *ps,
                           size_t ai,
                           const struct reconcile_service *obs,
                           const struct reconcile_incident *inc)
{
    struct reconcile_drift *d;
    const char *interned;
    int rv;

    rv = count_state(ps, ai, obs->name, RECONCILE_DEGRADED, &interned);
    if (rv != 0) {
        return rv;
    }
    d = drift_new(ps, ai, interned, RECONCILE_DRIFT_UNEXPECTED_SERVICE);
    if (d == NULL) {
        return oom(ps);
    }
    d->state = RECONCILE_DEGRADED;
    d->detail = text_dup(ps, "reported (%s), but no policy places it here",
                         proto_state_name(obs->state));
    d->level = RECONCILE_RECOMMENDED;
    d->action = RECONCILE_ACTION_STOP;
    d->reason = text_dup(ps, "stop it, or place it with a policy");
    if (inc != NULL) {
        d->kind = RECONCILE_DRIFT_UNRESOLVED_INCIDENT;
        d->detail =
            text_dup(ps,
                     "incident %" PRIu64 " %s; reported (%s), but no "
                     "policy places it here",
                     inc->id, inc->acknowledged ? "acknowledged" : "open",
                     proto_state_name(obs->state));
        d->level = RECONCILE_BLOCKED;
        d->action = RECONCILE_ACTION_DIAGNOSTICS;
        d->reason = text_dup(ps,
                             "incident %" PRIu64 " is unresolved: no "
                             "automatic action until it is resolved",
                             inc->id);
        d->state = RECONCILE_UNSTABLE;
        recount(ps, ai, obs->name, RECONCILE_DEGRADED, RECONCILE_UNSTABLE);
    }
    if (d->detail == NULL || d->reason == NULL) {
        return oom(ps);
    }
    return 0;
}

/* An incident of a service neither placed nor reported (or of the agent as
 * a whole): nothing drifts any more, someone should resolve it. */
static int eval_incident_only(struct pass *ps,
                              size_t ai,
                              const struct reconcile_incident *inc)
{
    struct reconcile_drift *d;
    const char *service = policy__arena_strdup(&ps->box->arena, inc->service);

    if (service == NULL) {
        return oom(ps);
    }
    d = drift_new(ps, ai, service, RECONCILE_DRIFT_UNRESOLVED_INCIDENT);
    if (d == NULL) {
        return oom(ps);
    }
    d->state = RECONCILE_DEGRADED;
    d->detail = text_dup(ps, "incident %" PRIu64 " %s; %s", inc->id,
                         inc->acknowledged ? "acknowledged" : "open",
                         inc->service[0] == '\0'
                             ? "it concerns the agent"
                             : "the service is neither placed nor reported");
    d->level = RECONCILE_RECOMMENDED;
    d->action = RECONCILE_ACTION_NONE;
    d->reason = text_dup(ps, "resolve incident %" PRIu64, inc->id);
    if (d->detail == NULL || d->reason == NULL) {
        return oom(ps);
    }
    ps->agents[ai].counts[RECONCILE_DEGRADED]++;
    return 0;
}

static int eval_offline(struct pass *ps, size_t ai)
{
    const struct desired_rank *e = ps->desired.data;
    size_t n = ps->desired.n;
    size_t critical = 0;
    struct reconcile_drift *d;
    int state;
    size_t i;
    int rv;

    if (n == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (e[i].d.doc->services[e[i].d.index].criticality == POLICY_CRITICAL) {
            critical++;
        }
    }
    state = critical > 0 ? RECONCILE_UNSTABLE : RECONCILE_DEGRADED;
    for (i = 0; i < n; i++) {
        rv = count_state(ps, ai, e[i].d.service, state, NULL);
        if (rv != 0) {
            return rv;
        }
    }
    d = drift_new(ps, ai, "", RECONCILE_DRIFT_OFFLINE_AGENT);
    if (d == NULL) {
        return oom(ps);
    }
    d->state = state;
    d->criticality = critical > 0 ? POLICY_CRITICAL : POLICY_OPTIONAL;
    d->level = critical > 0 ? RECONCILE_REQUIRED : RECONCILE_RECOMMENDED;
    d->action = RECONCILE_ACTION_FAILOVER_REVIEW;
    d->detail = text_dup(ps,
                         "the agent is offline (no lease); %zu services are "
                         "placed on it, %zu critical",
                         n, critical);
    d->reason = text_dup(ps, "review the failover of its services: bring the "
                             "agent back or place them elsewhere");
    if (d->detail == NULL || d->reason == NULL) {
        return oom(ps);
    }
    return 0;
}

/* The smallest of up to four names (NULL = exhausted), or NULL. */
static const char *
min_name(const char *a, const char *b, const char *c, const char *d)
{
    const char *m = a;
    if (b != NULL && (m == NULL || strcmp(b, m) < 0)) {
        m = b;
    }
    if (c != NULL && (m == NULL || strcmp(c, m) < 0)) {
        m = c;
    }
    if (d != NULL && (m == NULL || strcmp(d, m) < 0)) {
        m = d;
    }
    return m;
}

static int eval_agent(struct pass *ps, size_t ai)
{
    const struct reconcile_input *in = ps->in;
    const struct reconcile_agent *a = &in->agents[ai];
    const struct desired_rank *e;
    const struct reconcile_service **rep;
    const struct reconcile_record **recs;
    const struct reconcile_incident *const *incs = ps->incidents;
    size_t inc_lo;
    size_t inc_hi;
    size_t i;
    size_t j;
    size_t k;
    size_t r;
    int *conds;
    int rv;

    for (i = 0; i < a->n_services; i++) {
        if (a->services[i].name == NULL) {
            rems_errmsgf(ps->errmsg,
                         "agents[%zu].services[%zu]: name is "
                         "required",
                         ai, i);
            return REMS_EINVAL;
        }
    }
    for (i = 0; i < a->n_records; i++) {
        if (a->records[i].service == NULL) {
            rems_errmsgf(ps->errmsg,
                         "agents[%zu].records[%zu]: service is "
                         "required",
                         ai, i);
            return REMS_EINVAL;
        }
    }
    rv = resolve_into(in->policies, ps->porder, in->n_policies,
                      (const char *const *const *)ps->rollouts, a->id,
                      a->labels, a->n_labels, &ps->desired);
    if (rv != 0) {
        return oom(ps);
    }
    e = ps->desired.data;
    for (i = 0; i < ps->desired.n; i++) {
        struct reconcile_conflict *c;
        if (e[i].d.shadowed == SIZE_MAX) {
            continue;
        }
        c = vec_push(&ps->box->conflicts, sizeof *c);
        if (c == NULL) {
            return oom(ps);
        }
        c->agent = agent_id_copy(ps, ai);
        c->service = policy__arena_strdup(&ps->box->arena, e[i].d.service);
        c->policy = ps->pkeys[e[i].d.policy];
        c->shadowed = ps->pkeys[e[i].d.shadowed];
        if (c->agent == NULL || c->service == NULL) {
            return oom(ps);
        }
    }
    if (!a->online) {
        return eval_offline(ps, ai);
    }

    if (vec_reserve(&ps->reported, a->n_services, sizeof *rep) != 0 ||
        vec_reserve(&ps->records, a->n_records, sizeof *recs) != 0 ||
        vec_reserve(&ps->conds, ps->desired.n, sizeof *conds) != 0) {
        return oom(ps);
    }
    rep = ps->reported.data;
    for (i = 0; i < a->n_services; i++) {
        rep[i] = &a->services[i];
    }
    ps->reported.n = a->n_services;
    if (a->n_services > 1) {
        qsort(rep, a->n_services, sizeof *rep, cmp_service_ptr);
    }
    recs = ps->records.data;
    for (i = 0; i < a->n_records; i++) {
        recs[i] = &a->records[i];
    }
    ps->records.n = a->n_records;
    if (a->n_records > 1) {
        qsort(recs, a->n_records, sizeof *recs, cmp_record_ptr);
    }
    conds = ps->conds.data;
    for (i = 0; i < ps->desired.n; i++) {
        const struct sup_service_spec *spec =
            e[i].d.doc->services[e[i].d.index].spec;
        conds[i] = classify(reported_find(ps, e[i].d.service), spec->autostart,
                            ps->now, in->config.grace_ms);
    }
    ps->conds.n = ps->desired.n;

    /* This agent's incidents: a range of the sorted list. */
    inc_lo = 0;
    inc_hi = ps->n_incidents;
    while (inc_lo < inc_hi) {
        size_t mid = inc_lo + (inc_hi - inc_lo) / 2;
        if (strcmp(incs[mid]->agent, a->id) < 0) {
            inc_lo = mid + 1;
        } else {
            inc_hi = mid;
        }
    }
    inc_hi = inc_lo;
    while (inc_hi < ps->n_incidents &&
           strcmp(incs[inc_hi]->agent, a->id) == 0) {
        inc_hi++;
    }

    /* Walk desired (i), reported (j), incidents (k) and records (r) in name
     * order; duplicates within a list are skipped after their first. */
    i = 0;
    j = 0;
    k = inc_lo;
    r = 0;
    for (;;) {
        const char *dn = i < ps->desired.n ? e[i].d.service : NULL;
        const char *rn = j < ps->reported.n ? rep[j]->name : NULL;
        const char *kn = k < inc_hi ? incs[k]->service : NULL;
        const char *cn = r < ps->records.n ? recs[r]->service : NULL;
        const char *name = min_name(dn, rn, kn, cn);
        const struct reconcile_service *obs = NULL;
        const struct reconcile_incident *inc = NULL;
        const struct reconcile_record *rec = NULL;
        bool desired = false;

        if (name == NULL) {
            break;
        }
        if (dn != NULL && strcmp(dn, name) == 0) {
            desired = true;
        }
        if (rn != NULL && strcmp(rn, name) == 0) {
            obs = rep[j];
        }
        if (kn != NULL && strcmp(kn, name) == 0) {
            inc = incs[k];
        }
        if (cn != NULL && strcmp(cn, name) == 0) {
            rec = recs[r];
        }
        if (desired) {
            rv = eval_desired(ps, ai, i, obs, rec, inc);
        } else if (obs != NULL) {
            rv = eval_unexpected(ps, ai, obs, inc);
        } else if (inc != NULL) {
            rv = eval_incident_only(ps, ai, inc);
        } else if (rec->outcome != RECONCILE_OUTCOME_PENDING) {
            rv = update_delete(ps, ai, rec);
        } else {
            rv = 0;
        }
        if (rv != 0) {
            return rv;
        }
        /* Step past every entry with this name. */
        while (i < ps->desired.n && strcmp(e[i].d.service, name) == 0) {
            i++;
        }
        while (j < ps->reported.n && strcmp(rep[j]->name, name) == 0) {
            j++;
        }
        while (k < inc_hi && strcmp(incs[k]->service, name) == 0) {
            k++;
        }
        while (r < ps->records.n && strcmp(recs[r]->service, name) == 0) {
            r++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Phase 2: guardrails and commands
 * --------------------------------------------------------------------- */

static bool freeze_active(const struct reconcile_freeze *f, uint64_t now)
{
    return f->name != NULL && (f->until_ms == 0 || now < f->until_ms);
}

static bool window_applies(const struct reconcile_window *w,
                           const char *agent,
                           const struct site *site)
{
    switch (w->scope) {
        case RECONCILE_WINDOW_GLOBAL:
            return true;
        case RECONCILE_WINDOW_AGENT:
            return strcmp(w->target, agent) == 0;
        default:
            return site != NULL && strcmp(w->target, site->name) == 0;
    }
}

/* The first guardrail that refuses @c, with its detail in @buf; 0 when
 * none does. */
static int guard_check(
    struct pass *ps, const struct cand *c, int action, char *buf, size_t cap)
{
    const struct reconcile_input *in = ps->in;
    const struct reconcile_guard *g = &in->guard;
    const struct reconcile_config *cfg = &in->config;
    const struct reconcile_agent *a = &in->agents[c->agent];
    const struct agent_info *info = &ps->agents[c->agent];
    const struct site *site =
        info->site != SIZE_MAX ? &ps->sites[info->site] : NULL;
    const struct reconcile_window *never = NULL;  /* open never_inside */
    const struct reconcile_window *inside = NULL; /* an auto_inside_only */
    bool inside_open = false;
    size_t i;

    if (g->paused) {
        snprintf(buf, cap, "the reconciler is paused");
        return RECONCILE_GUARD_PAUSED;
    }
    for (i = 0; i < g->n_freezes; i++) {
        const struct reconcile_freeze *f = &g->freezes[i];
        if (freeze_active(f, ps->now) && f->scope == RECONCILE_FREEZE_SERVICE &&
            strcmp(f->name, c->svc->name) == 0 &&
            (f->agent == NULL || strcmp(f->agent, a->id) == 0)) {
            snprintf(buf, cap, "service \"%.128s\" is frozen", f->name);
            return RECONCILE_GUARD_FROZEN_SERVICE;
        }
    }
    for (i = 0; i < g->n_freezes; i++) {
        const struct reconcile_freeze *f = &g->freezes[i];
        if (freeze_active(f, ps->now) && f->scope == RECONCILE_FREEZE_AGENT &&
            strcmp(f->name, a->id) == 0) {
            snprintf(buf, cap, "agent \"%.64s\" is frozen", f->name);
            return RECONCILE_GUARD_FROZEN_AGENT;
        }
    }
    for (i = 0; site != NULL && i < g->n_freezes; i++) {
        const struct reconcile_freeze *f = &g->freezes[i];
        if (freeze_active(f, ps->now) && f->scope == RECONCILE_FREEZE_SITE &&
            strcmp(f->name, site->name) == 0) {
            snprintf(buf, cap, "site \"%.128s\" is frozen", f->name);
            return RECONCILE_GUARD_FROZEN_SITE;
        }
    }
    if ((c->svc->allowed & (1u << reconcile_action_command(action))) == 0) {
        snprintf(buf, cap, "%s is not in the allowed_commands of \"%.128s\"",
                 proto_action_name(reconcile_action_command(action)),
                 c->svc->name);
        return RECONCILE_GUARD_NOT_ALLOWED;
    }
    if (c->rec != NULL && c->rec->attempts > 0 &&
        age_ms(ps->now, c->rec->last_attempt_ms) <
            c->doc->remediation.backoff_ms) {
        snprintf(buf, cap,
                 "attempt %u was %" PRIu64 " ms ago; the next waits %" PRIu64
                 " ms",
                 c->rec->attempts, age_ms(ps->now, c->rec->last_attempt_ms),
                 c->doc->remediation.backoff_ms);
        return RECONCILE_GUARD_BACKOFF;
    }
    for (i = 0; i < g->n_windows; i++) {
        const struct reconcile_window *w = ps->windows[i];
        bool open;
        if (!window_applies(w, a->id, site)) {
            continue;
        }
        open = reconcile_window_open(w, ps->now);
        if (w->policy == RECONCILE_WINDOW_NEVER_INSIDE && open &&
            never == NULL) {
            never = w;
        }
        if (w->policy == RECONCILE_WINDOW_AUTO_INSIDE_ONLY) {
            inside_open = inside_open || open;
            if (inside == NULL) {
                inside = w;
            }
        }
    }
    if (never != NULL) {
        snprintf(buf, cap,
                 "maintenance window \"%.128s\" is open: no automatic action "
                 "inside it",
                 never->name);
        return RECONCILE_GUARD_MAINTENANCE;
    }
    if (inside != NULL && !inside_open) {
        snprintf(buf, cap,
                 "outside maintenance window \"%.128s\": automatic actions "
                 "only inside it",
                 inside->name);
        return RECONCILE_GUARD_MAINTENANCE;
    }
    if (ps->in_flight >= cfg->max_in_flight) {
        snprintf(buf, cap, "%u remediations in flight (limit %u)",
                 ps->in_flight, cfg->max_in_flight);
        return RECONCILE_GUARD_CONCURRENCY;
    }
    if ((uint64_t)a->issued_in_window + info->issued >= cfg->max_per_agent) {
        snprintf(
            buf, cap,
            "%u remediations issued to agent \"%.64s\" in the last %" PRIu64
            " ms (limit %u)",
            a->issued_in_window + info->issued, a->id, cfg->rate_window_ms,
            cfg->max_per_agent);
        return RECONCILE_GUARD_RATE_AGENT;
    }
    if (site != NULL && site->issued >= cfg->max_per_site) {
        snprintf(
            buf, cap,
            "%u remediations issued to site \"%.128s\" in the last %" PRIu64
            " ms (limit %u)",
            site->issued, site->name, cfg->rate_window_ms, cfg->max_per_site);
        return RECONCILE_GUARD_RATE_SITE;
    }
    if (ps->issued >= cfg->max_global) {
        snprintf(buf, cap,
                 "%u remediations issued in the last %" PRIu64 " ms (limit %u)",
                 ps->issued, cfg->rate_window_ms, cfg->max_global);
        return RECONCILE_GUARD_RATE_GLOBAL;
    }
    return 0;
}

static int issue(struct pass *ps, const struct cand *c)
{
    struct reconcile_drift *d =
        &((struct reconcile_drift *)ps->box->drifts.data)[c->drift];
    struct reconcile_command *cmd;
    struct reconcile_record nr = {0};
    struct agent_info *info = &ps->agents[c->agent];
    int rv;

    cmd = vec_push(&ps->box->commands, sizeof *cmd);
    if (cmd == NULL) {
        return oom(ps);
    }
    cmd->agent = d->agent;
    cmd->service = d->service;
    cmd->action = d->action;
    cmd->command = reconcile_action_command(d->action);
    cmd->ttl_ms = ps->in->config.command_ttl_ms;
    cmd->policy = c->policy;
    cmd->revision = c->revision;
    cmd->reason = text_dup(ps, "reconciler: %s: %.300s",
                           reconcile_drift_kind_name(d->kind), d->detail);
    if (cmd->reason == NULL) {
        return oom(ps);
    }
    if (d->action == RECONCILE_ACTION_REDEPLOY) {
        cmd->manifest = policy__arena_strndup(&ps->box->arena, c->svc->manifest,
                                              c->svc->manifest_len);
        if (cmd->manifest == NULL) {
            return oom(ps);
        }
        cmd->manifest_len = c->svc->manifest_len;
        cmd->digest = c->svc->digest;
    }
    if (c->rec != NULL) {
        nr = *c->rec;
    }
    nr.attempts++;
    nr.last_attempt_ms = ps->now;
    nr.last_action = d->action;
    nr.outcome = RECONCILE_OUTCOME_PENDING;
    nr.pending_digest = cmd->digest;
    rv = update_put(ps, c->agent, d->service, &nr);
    if (rv != 0) {
        return rv;
    }
    info->issued++;
    if (info->site != SIZE_MAX) {
        ps->sites[info->site].issued++;
    }
    ps->issued++;
    ps->in_flight++;
    recount(ps, c->agent, d->service, d->state, RECONCILE_RECONCILING);
    d->state = RECONCILE_RECONCILING;
    return 0;
}

static int commands(struct pass *ps)
{
    const struct cand *cands = ps->cands.data;
    int round;
    size_t i;
    int rv;

    /* Critical candidates first; within a round they are in (agent,
     * service) order already. */
    for (round = 0; round < 2; round++) {
        int want = round == 0 ? POLICY_CRITICAL : POLICY_OPTIONAL;
        for (i = 0; i < ps->cands.n; i++) {
            const struct cand *c = &cands[i];
            const struct reconcile_drift *d = &(
                (const struct reconcile_drift *)ps->box->drifts.data)[c->drift];
            char buf[TEXT_SIZE];
            int guard;

            if (c->svc->criticality != want) {
                continue;
            }
            guard = guard_check(ps, c, d->action, buf, sizeof buf);
            if (guard == 0) {
                rv = issue(ps, c);
            } else {
                struct reconcile_hold *h = vec_push(&ps->box->holds, sizeof *h);
                if (h == NULL) {
                    return oom(ps);
                }
                h->agent = d->agent;
                h->service = d->service;
                h->action = d->action;
                h->guardrail = guard;
                h->detail = policy__arena_strdup(&ps->box->arena, buf);
                rv = h->detail == NULL ? oom(ps) : 0;
            }
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Phase 3: summaries
 * --------------------------------------------------------------------- */

static int worst(const size_t *counts)
{
    int s;
    for (s = RECONCILE_STATE_NR - 1; s > RECONCILE_NOMINAL; s--) {
        if (counts[s] > 0) {
            return s;
        }
    }
    return RECONCILE_NOMINAL;
}

static int summaries(struct pass *ps, struct reconcile_output *out)
{
    const struct reconcile_input *in = ps->in;
    struct reconcile_summary *agents;
    struct reconcile_summary *sites;
    struct reconcile_summary *services = ps->box->services.data;
    size_t i;
    int s;

    for (i = 0; i < ps->box->services.n; i++) {
        services[i].state = worst(services[i].counts);
    }
    if (vec_reserve(&ps->box->agents, in->n_agents + 1, sizeof *agents) != 0 ||
        vec_reserve(&ps->box->sites, ps->n_sites + 1, sizeof *sites) != 0) {
        return oom(ps);
    }
    agents = ps->box->agents.data;
    sites = ps->box->sites.data;
    memset(sites, 0, (ps->n_sites + 1) * sizeof *sites);
    for (i = 0; i < ps->n_sites; i++) {
        sites[i].name = ps->sites[i].name;
    }
    memset(&out->cluster, 0, sizeof out->cluster);
    out->cluster.name = "cluster";
    for (i = 0; i < in->n_agents; i++) {
        size_t ai = ps->aorder[i];
        struct agent_info *info = &ps->agents[ai];
        struct reconcile_summary *sum = &agents[i];

        memset(sum, 0, sizeof *sum);
        sum->name = agent_id_copy(ps, ai);
        if (sum->name == NULL) {
            return oom(ps);
        }
        for (s = RECONCILE_NOMINAL; s < RECONCILE_STATE_NR; s++) {
            sum->counts[s] = info->counts[s];
            sum->total += info->counts[s];
        }
        sum->state = worst(sum->counts);
        if (info->site != SIZE_MAX) {
            sites[info->site].counts[sum->state]++;
            sites[info->site].total++;
        }
        out->cluster.counts[sum->state]++;
        out->cluster.total++;
    }
    ps->box->agents.n = in->n_agents;
    for (i = 0; i < ps->n_sites; i++) {
        sites[i].state = worst(sites[i].counts);
    }
    ps->box->sites.n = ps->n_sites;
    out->cluster.state = worst(out->cluster.counts);
    return 0;
}

static int cmp_update(const void *a, const void *b)
{
    const struct reconcile_update *x = a;
    const struct reconcile_update *y = b;
    int c = strcmp(x->agent, y->agent);
    if (c == 0) {
        c = strcmp(x->record.service, y->record.service);
    }
    return c;
}

static void box_free(struct out_box *box)
{
    if (box == NULL) {
        return;
    }
    vec_free(&box->drifts);
    vec_free(&box->commands);
    vec_free(&box->holds);
    vec_free(&box->incidents);
    vec_free(&box->updates);
    vec_free(&box->conflicts);
    vec_free(&box->services);
    vec_free(&box->agents);
    vec_free(&box->sites);
    policy__arena_close(&box->arena);
    rems_free(box);
}

static void pass_close(struct pass *ps)
{
    size_t i;
    if (ps->rollouts != NULL) {
        for (i = 0; i < ps->in->n_policies; i++) {
            rems_free(ps->rollouts[i]);
        }
    }
    rems_free(ps->rollouts);
    rems_free(ps->pkeys);
    rems_free(ps->porder);
    rems_free(ps->aorder);
    rems_free(ps->agents);
    rems_free(ps->incidents);
    rems_free(ps->windows);
    rems_free(ps->sites);
    vec_free(&ps->cands);
    vec_free(&ps->desired);
    vec_free(&ps->reported);
    vec_free(&ps->records);
    vec_free(&ps->conds);
}

int reconcile_pass(const struct reconcile_input *in,
                   uint64_t now_ms,
                   struct reconcile_output *out,
                   char *errmsg)
{
    struct reconcile_output res = {0};
    struct pass ps = {0};
    size_t i;
    int rv;

    PRE(in != NULL && out != NULL && errmsg != NULL);
    PRE(in->n_policies == 0 || in->policies != NULL);
    PRE(in->n_agents == 0 || in->agents != NULL);

    ps.in = in;
    ps.now = now_ms;
    ps.errmsg = errmsg;
    ps.box = rems_calloc(1, sizeof *ps.box);
    if (ps.box == NULL) {
        rv = oom(&ps);
        goto err;
    }
    /* Output text is plentiful: large blocks. */
    policy__arena_init(&ps.box->arena, (size_t)256 * 1024);
    rv = prepare(&ps);
    if (rv != 0) {
        goto err_after_box;
    }
    for (i = 0; i < in->n_agents; i++) {
        rv = eval_agent(&ps, ps.aorder[i]);
        if (rv != 0) {
            goto err_after_box;
        }
    }
    rv = commands(&ps);
    if (rv != 0) {
        goto err_after_box;
    }
    rv = summaries(&ps, &res);
    if (rv != 0) {
        goto err_after_box;
    }
    if (ps.box->updates.n > 1) {
        qsort(ps.box->updates.data, ps.box->updates.n,
              sizeof(struct reconcile_update), cmp_update);
    }

    res.drifts = ps.box->drifts.data;
    res.n_drifts = ps.box->drifts.n;
    res.commands = ps.box->commands.data;
    res.n_commands = ps.box->commands.n;
    res.holds = ps.box->holds.data;
    res.n_holds = ps.box->holds.n;
    res.incidents = ps.box->incidents.data;
    res.n_incidents = ps.box->incidents.n;
    res.updates = ps.box->updates.data;
    res.n_updates = ps.box->updates.n;
    res.conflicts = ps.box->conflicts.data;
    res.n_conflicts = ps.box->conflicts.n;
    res.services = ps.box->services.data;
    res.n_services = ps.box->services.n;
    res.agents = ps.box->agents.data;
    res.n_agents = ps.box->agents.n;
    res.sites = ps.box->sites.data;
    res.n_sites = ps.box->sites.n;
    res.priv = ps.box;
    pass_close(&ps);
    *out = res;
    return 0;

err_after_box:
    box_free(ps.box);
    pass_close(&ps);
err:
    POST(rv != 0);
    return rv;
}

void reconcile_output_close(struct reconcile_output *out)
{
    if (out == NULL) {
        return;
    }
    box_free(out->priv);
    memset(out, 0, sizeof *out);
}
