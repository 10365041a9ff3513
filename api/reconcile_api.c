/* The reconciler's admin API: incidents, overrides (freezes and the
 * pause), maintenance windows, and the reconciler's view (summary, drift,
 * recommendations). docs/api.md is the reference of every call.
 *
 * Writes take the path of every write (server.c): the receiving node
 * checks the call, a follower forwards it to the leader, the leader checks
 * it again and proposes one entry:
 *
 *   POST /v1/incidents/{id}/acknowledge|resolve    INCIDENT_UPDATE
 *   POST /v1/overrides, POST /v1/reconciler/pause  OVERRIDE_SET
 *   DELETE /v1/overrides, .../reconciler/resume    OVERRIDE_CLEAR
 *   PUT /v1/maintenance-windows/{name}             WINDOW_SET
 *   DELETE /v1/maintenance-windows/{name}          WINDOW_DELETE
 *
 * and answers, once the entry is applied, with the record as the store now
 * has it (reconcile_written_cb()), or with the code apply gave: 404 for an
 * unknown incident, override or window, 409 for an incident transition
 * that is not allowed. Who and why are the X-Rems-User and X-Rems-Reason
 * headers of every write, recorded with the record and in the audit trail;
 * incident updates require X-Rems-User. A relative end (duration_ms) is
 * made absolute by the receiving node, which forwards the absolute time,
 * so the end is what the caller's node meant however long the forward
 * takes.
 *
 * Reads of incidents, overrides and windows are linearizable by default,
 * as every read of the store. The views are a reconcile pass over the
 * answering node's own tables (cluster_node_reconcile_view()); they are
 * served at once by default, and after a read index with
 * consistency=linearizable (or leader), so that they reflect every write
 * acknowledged before the call.
 *
 * Every input is checked here, field by field, and refused with 400
 * naming the field and the rule; windows through reconcile_window_check(),
 * so their rules live in one place. */
#include <jansson.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/server_int.h"
#include "cluster/reconcile.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"

#define WINDOW_NAME_RULE "1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define ID_RULE "1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define SERVICE_RULE "1 to 64 characters of A-Z a-z 0-9 . _ : @ -"
#define SITE_RULE "1 to 64 bytes without control characters"
/* Durations of freezes: at most ten years (so that now + it is far from
 * overflowing). */
#define DURATION_MAX_MS 315360000000ull

/* ------------------------------------------------------------------ */
/* JSON building: every set is checked, a failure answers 500.          */

/* Set @o[@k] = @v (stolen); clears *@ok when anything is missing. */
static void jset(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (o == NULL || v == NULL || json_object_set_new(o, k, v) != 0) {
        *ok = false;
        if (o == NULL) {
            json_decref(v);
        }
    }
}

static void jappend(json_t *a, json_t *v, bool *ok)
{
    if (a == NULL || v == NULL || json_array_append_new(a, v) != 0) {
        *ok = false;
        if (a == NULL) {
            json_decref(v);
        }
    }
}

static json_t *ju64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* A stored string, or null when it is empty. */
static json_t *nstr_or_null(const char *s, size_t len)
{
    return len > 0 ? api__nstr(s, len) : json_null();
}

/* Answer @body, or 500 when building it failed. */
static void respond_built(struct call *c, json_t *body, bool ok)
{
    if (!ok || body == NULL) {
        json_decref(body);
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    api__respond_json(c, 200, body, NULL, 0);
}

static bool printable(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > STATEMACHINE_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

static void bad(struct call *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 400 bad_request naming @field, the message "@field: <rule>". */
static void bad(struct call *c, const char *field, const char *fmt, ...)
{
    char rule[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE + 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rule, sizeof rule, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s: %s", field, rule);
    api__respond_error(c, 400, "bad_request", msg, field);
}

/* ------------------------------------------------------------------ */
/* Names.                                                               */

static const char *const override_scopes[] = {
    [STATEMACHINE_OVERRIDE_SERVICE] = "service",
    [STATEMACHINE_OVERRIDE_AGENT] = "agent",
    [STATEMACHINE_OVERRIDE_SITE] = "site",
    [STATEMACHINE_OVERRIDE_PAUSE] = "pause",
};

static const char *const window_scopes[] = {
    [STATEMACHINE_WINDOW_GLOBAL] = "global",
    [STATEMACHINE_WINDOW_SITE] = "site",
    [STATEMACHINE_WINDOW_AGENT] = "agent",
};

static const char *const window_modes[] = {
    [STATEMACHINE_WINDOW_AUTO_INSIDE_ONLY] = "auto_inside_only",
    [STATEMACHINE_WINDOW_NEVER_INSIDE] = "never_inside",
};

/* Monday first, as the bits of a weekly window's days. */
static const char *const day_names[7] = {"mon", "tue", "wed", "thu",
                                         "fri", "sat", "sun"};
static const char *const day_long_names[7] = {
    "monday", "tuesday",  "wednesday", "thursday",
    "friday", "saturday", "sunday"};

/* The index of @s in @names (@n entries, index 0 unused when NULL), or
 * 0 when it is not there. */
static int name_index(const char *const *names, size_t n, const char *s)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (names[i] != NULL && s != NULL && strcmp(names[i], s) == 0) {
            return (int)i;
        }
    }
    return 0;
}

static const char *scope_name(int scope)
{
    return scope > 0 && scope < STATEMACHINE_OVERRIDE_SCOPE_NR
               ? override_scopes[scope]
               : "?";
}

/* ------------------------------------------------------------------ */
/* Records as the API shows them.                                       */

/* One step of an incident: null until it happened. */
static json_t *step_json(uint64_t index,
                         uint64_t ms,
                         const char *by,
                         size_t by_len,
                         const char *why,
                         size_t why_len,
                         bool *ok)
{
    json_t *o;
    if (index == 0) {
        return json_null();
    }
    o = json_object();
    jset(o, "index", ju64(index), ok);
    jset(o, "time_ms", ju64(ms), ok);
    jset(o, "by", api__nstr(by, by_len), ok);
    jset(o, "reason", api__nstr(why, why_len), ok);
    return o;
}

static json_t *incident_json(const struct statemachine_incident *i, bool *ok)
{
    json_t *o = json_object();
    jset(o, "id", ju64(i->id), ok);
    jset(o, "agent", api__nstr(i->agent_id, i->agent_id_len), ok);
    jset(o, "service", nstr_or_null(i->service, i->service_len), ok);
    jset(o, "kind", api__nstr(i->kind, i->kind_len), ok);
    jset(o, "policy", nstr_or_null(i->policy, i->policy_len), ok);
    jset(o, "detail", api__nstr(i->detail, i->detail_len), ok);
    jset(o, "attempts", ju64(i->attempts), ok);
    jset(o, "state", json_string(statemachine_incident_state_name(i->state)),
         ok);
    jset(o, "opened",
         step_json(i->id, i->opened_ms, i->opened_by, i->opened_by_len,
                   i->opened_reason, i->opened_reason_len, ok),
         ok);
    jset(o, "acknowledged",
         step_json(i->acked_index, i->acked_ms, i->acked_by, i->acked_by_len,
                   i->acked_reason, i->acked_reason_len, ok),
         ok);
    jset(o, "resolved",
         step_json(i->resolved_index, i->resolved_ms, i->resolved_by,
                   i->resolved_by_len, i->resolved_reason,
                   i->resolved_reason_len, ok),
         ok);
    return o;
}

/* @now_ms: this node's wall clock, for "active". */
static json_t *
override_json(const struct statemachine_override *v, uint64_t now_ms, bool *ok)
{
    json_t *o = json_object();
    jset(o, "scope", json_string(scope_name(v->scope)), ok);
    jset(o, "name", nstr_or_null(v->name, v->name_len), ok);
    jset(o, "agent", nstr_or_null(v->agent_id, v->agent_id_len), ok);
    jset(o, "until_ms", api__index_or_null(v->until_ms), ok);
    jset(o, "active", json_boolean(v->until_ms == 0 || now_ms < v->until_ms),
         ok);
    jset(o, "set_index", ju64(v->set_index), ok);
    jset(o, "set_ms", ju64(v->set_ms), ok);
    jset(o, "requested_by", api__nstr(v->requested_by, v->requested_by_len),
         ok);
    jset(o, "reason", api__nstr(v->reason, v->reason_len), ok);
    return o;
}

/* The struct reconcile_window of a stored window (strings borrowed; the
 * enums have the same values). */
static void window_of(const struct statemachine_window *w,
                      const char *name,
                      const char *target,
                      struct reconcile_window *out)
{
    memset(out, 0, sizeof *out);
    out->name = name;
    out->scope = w->scope;
    out->target = w->scope == STATEMACHINE_WINDOW_GLOBAL ? NULL : target;
    out->policy = w->mode;
    out->weekly = w->weekly;
    out->start_ms = w->start_ms;
    out->end_ms = w->end_ms;
    out->days = w->days;
    out->start_minute = w->start_minute;
    out->duration_minutes = w->duration_minutes;
}

static json_t *days_json(unsigned days, bool *ok)
{
    json_t *a = json_array();
    unsigned d;
    for (d = 0; d < 7; d++) {
        if ((days & (1u << d)) != 0) {
            jappend(a, json_string(day_names[d]), ok);
        }
    }
    return a;
}

static json_t *
window_json(const struct statemachine_window *w, uint64_t now_ms, bool *ok)
{
    json_t *o = json_object();
    struct reconcile_window rw;
    char hhmm[8];

    window_of(w, "", "", &rw);
    jset(o, "name", api__nstr(w->name, w->name_len), ok);
    jset(o, "scope",
         json_string(w->scope >= STATEMACHINE_WINDOW_GLOBAL &&
                             w->scope <= STATEMACHINE_WINDOW_AGENT
                         ? window_scopes[w->scope]
                         : "?"),
         ok);
    jset(o, "target", nstr_or_null(w->target, w->target_len), ok);
    jset(o, "mode",
         json_string(w->mode >= STATEMACHINE_WINDOW_AUTO_INSIDE_ONLY &&
                             w->mode <= STATEMACHINE_WINDOW_NEVER_INSIDE
                         ? window_modes[w->mode]
                         : "?"),
         ok);
    if (w->weekly) {
        json_t *wk = json_object();
        snprintf(hhmm, sizeof hhmm, "%02u:%02u", (w->start_minute / 60) % 100,
                 w->start_minute % 60);
        jset(wk, "days", days_json(w->days, ok), ok);
        jset(wk, "start", json_string(hhmm), ok);
        jset(wk, "duration_minutes", ju64(w->duration_minutes), ok);
        jset(o, "start_ms", json_null(), ok);
        jset(o, "end_ms", json_null(), ok);
        jset(o, "weekly", wk, ok);
    } else {
        jset(o, "start_ms", ju64(w->start_ms), ok);
        jset(o, "end_ms", ju64(w->end_ms), ok);
        jset(o, "weekly", json_null(), ok);
    }
    jset(o, "open", json_boolean(reconcile_window_open(&rw, now_ms)), ok);
    jset(o, "set_index", ju64(w->set_index), ok);
    jset(o, "requested_by", api__nstr(w->requested_by, w->requested_by_len),
         ok);
    jset(o, "reason", api__nstr(w->reason, w->reason_len), ok);
    return o;
}

/* ------------------------------------------------------------------ */
/* Reads of the tables.                                                 */

struct rlist {
    json_t *items;
    uint64_t now_ms;
    uint64_t last_id;
    char last_name[STATEMACHINE_KEY_MAX + 1]; /* windows, rollouts */
    bool ok;
};

/* A rollout as the API shows it; with @documents, the target and previous
 * documents as JSON. */
static json_t *rollout_json(const struct statemachine_rollout *r,
                            bool documents,
                            bool *ok)
{
    json_t *o = json_object();
    json_t *reached = json_array();
    size_t pos = 0;
    const char *id;
    size_t id_len;
    char err[REMS_ERRMSG_SIZE];
    int rv;

    jset(o, "key", api__nstr(r->key, r->key_len), ok);
    jset(o, "state", json_string(statemachine_rollout_state_name(r->state)),
         ok);
    jset(o, "stage", json_string(statemachine_rollout_stage_name(r->stage)),
         ok);
    jset(o, "batch", ju64(r->batch), ok);
    jset(o, "target_revision", ju64(r->target_revision), ok);
    jset(o, "previous_revision",
         r->has_previous ? ju64(r->previous_revision) : json_null(), ok);
    while ((rv = statemachine_rollout_reached_next(r->reached, r->reached_len,
                                                   &pos, &id, &id_len, err)) ==
           0) {
        jappend(reached, api__nstr(id, id_len), ok);
    }
    if (rv != REMS_ENOTFOUND) {
        *ok = false;
    }
    jset(o, "reached", reached, ok);
    jset(o, "n_reached", ju64(r->n_reached), ok);
    jset(o, "started_index", ju64(r->started_index), ok);
    jset(o, "started_ms", ju64(r->started_ms), ok);
    jset(o, "stage_started_ms", ju64(r->stage_started_ms), ok);
    jset(o, "updated_index", ju64(r->updated_index), ok);
    jset(o, "updated_ms", ju64(r->updated_ms), ok);
    jset(o, "finished_ms", api__index_or_null(r->finished_ms), ok);
    jset(o, "message", api__nstr(r->message, r->message_len), ok);
    jset(o, "requested_by", nstr_or_null(r->requested_by, r->requested_by_len),
         ok);
    jset(o, "rollback_revision", api__index_or_null(r->rollback_revision),
         ok);
    if (documents) {
        json_t *t = json_loadb(r->target, r->target_len, 0, NULL);
        json_t *p = r->has_previous
                        ? json_loadb(r->previous, r->previous_len, 0, NULL)
                        : json_null();
        /* Stored documents are JSON objects; show text that is not as a
         * string rather than fail. */
        jset(o, "target", t != NULL ? t : api__nstr(r->target, r->target_len),
             ok);
        jset(o, "previous",
             p != NULL ? p : api__nstr(r->previous, r->previous_len), ok);
    }
    return o;
}

static int incident_visit(void *data, const struct statemachine_incident *i)
{
    struct rlist *l = data;
    jappend(l->items, incident_json(i, &l->ok), &l->ok);
    l->last_id = i->id;
    return 0;
}

static int override_visit(void *data, const struct statemachine_override *o)
{
    struct rlist *l = data;
    jappend(l->items, override_json(o, l->now_ms, &l->ok), &l->ok);
    return 0;
}

static int window_visit(void *data, const struct statemachine_window *w)
{
    struct rlist *l = data;
    size_t len =
        w->name_len < STATEMACHINE_ID_MAX ? w->name_len : STATEMACHINE_ID_MAX;
    jappend(l->items, window_json(w, l->now_ms, &l->ok), &l->ok);
    memcpy(l->last_name, w->name, len);
    l->last_name[len] = '\0';
    return 0;
}

static int rollout_visit(void *data, const struct statemachine_rollout *r)
{
    struct rlist *l = data;
    jappend(l->items, rollout_json(r, false, &l->ok), &l->ok);
    snprintf(l->last_name, sizeof l->last_name, "%.*s", (int)r->key_len,
             r->key);
    return 0;
}

static void views_read(struct call *c);

void api__reconcile_read(struct call *c)
{
    struct storage_txn *t;
    struct cluster_status st;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    struct rlist l;
    json_t *body = NULL;
    bool more = false;
    int rv;

    if (c->kind == CALL_SUMMARY || c->kind == CALL_DRIFT ||
        c->kind == CALL_RECOMMENDATIONS) {
        views_read(c);
        return;
    }
    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    memset(&l, 0, sizeof l);
    l.ok = true;
    l.now_ms = rems_wall_ms();
    switch (c->kind) {
        case CALL_INCIDENT_GET: {
            struct statemachine_incident i;
            rv = statemachine_incident_get(t, c->rc.incident_id, &i, errmsg);
            if (rv == 0) {
                body = incident_json(&i, &l.ok);
            }
            break;
        }
        case CALL_WINDOW_GET: {
            struct statemachine_window w;
            rv = statemachine_window_get(t, c->rc.name, strlen(c->rc.name), &w,
                                         errmsg);
            if (rv == 0) {
                body = window_json(&w, l.now_ms, &l.ok);
            }
            break;
        }
        case CALL_INCIDENT_LIST:
            l.items = json_array();
            rv = statemachine_incident_list(
                t, c->rc.incident_state, c->has_agent_filter ? c->agent : NULL,
                strlen(c->agent), c->after_index, c->limit, incident_visit, &l,
                &more, errmsg);
            break;
        case CALL_OVERRIDE_LIST:
            l.items = json_array();
            rv = statemachine_override_list(t, override_visit, &l, errmsg);
            break;
        case CALL_ROLLOUT_GET: {
            struct statemachine_rollout r;
            rv = statemachine_rollout_get(t, c->key, c->key_len, &r, errmsg);
            if (rv == 0) {
                body = rollout_json(&r, c->rc.documents, &l.ok);
            }
            break;
        }
        case CALL_ROLLOUT_LIST:
            l.items = json_array();
            rv = statemachine_rollout_list(t, c->after, strlen(c->after),
                                           c->limit, rollout_visit, &l, &more,
                                           errmsg);
            break;
        default:
            REMS_ASSERT(c->kind == CALL_WINDOW_LIST);
            l.items = json_array();
            rv = statemachine_window_list(t, c->after, strlen(c->after),
                                          c->limit, window_visit, &l, &more,
                                          errmsg);
            break;
    }
    storage_txn_abort(t);
    if (rv == REMS_ENOTFOUND) {
        if (c->kind == CALL_INCIDENT_GET) {
            snprintf(msg, sizeof msg, "no incident with id %" PRIu64,
                     c->rc.incident_id);
            api__respond_error(c, 404, "not_found", msg, "id");
        } else if (c->kind == CALL_ROLLOUT_GET) {
            snprintf(msg, sizeof msg, "no rollout of policy %s", c->key);
            api__respond_error(c, 404, "not_found", msg, "key");
        } else {
            snprintf(msg, sizeof msg, "no maintenance window named %s",
                     c->rc.name);
            api__respond_error(c, 404, "not_found", msg, "name");
        }
        return;
    }
    if (rv != 0) {
        json_decref(l.items);
        json_decref(body);
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    if (body == NULL) {
        body = json_object();
        jset(body, "items", l.items, &l.ok);
        if (c->kind == CALL_INCIDENT_LIST) {
            jset(body, "next_after", more ? ju64(l.last_id) : json_null(),
                 &l.ok);
        } else if (c->kind == CALL_WINDOW_LIST ||
                   c->kind == CALL_ROLLOUT_LIST) {
            jset(body, "next_after",
                 more ? json_string(l.last_name) : json_null(), &l.ok);
        }
        cluster_node_brief(c->s->node, &st);
        jset(body, "index", ju64(st.state_index), &l.ok);
    }
    respond_built(c, body, l.ok);
}

/* ------------------------------------------------------------------ */
/* Writes.                                                              */

/* The answer to a write whose entry was applied with code 0: the record
 * as the store has it now, with the entry's index. */
static void respond_record(struct call *c,
                           const struct statemachine_result *res)
{
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    json_t *body = NULL;
    bool ok = true;
    int rv;

    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    switch (c->kind) {
        case CALL_INCIDENT_UPDATE: {
            struct statemachine_incident i;
            rv = statemachine_incident_get(t, c->rc.incident_id, &i, errmsg);
            if (rv == 0) {
                body = incident_json(&i, &ok);
            }
            break;
        }
        case CALL_OVERRIDE_SET: {
            struct statemachine_override o;
            rv = statemachine_override_get(t, c->rc.scope, c->rc.name,
                                           strlen(c->rc.name), c->agent,
                                           strlen(c->agent), &o, errmsg);
            if (rv == 0) {
                body = override_json(&o, rems_wall_ms(), &ok);
            }
            break;
        }
        case CALL_WINDOW_SET: {
            struct statemachine_window w;
            rv = statemachine_window_get(t, c->rc.name, strlen(c->rc.name), &w,
                                         errmsg);
            if (rv == 0) {
                body = window_json(&w, rems_wall_ms(), &ok);
            }
            break;
        }
        case CALL_ROLLOUT_UPDATE: {
            struct statemachine_rollout r;
            rv = statemachine_rollout_get(t, c->key, c->key_len, &r, errmsg);
            if (rv == 0) {
                body = rollout_json(&r, false, &ok);
            }
            break;
        }
        case CALL_OVERRIDE_CLEAR:
            body = json_object();
            jset(body, "scope", json_string(scope_name(c->rc.scope)), &ok);
            jset(body, "name",
                 c->rc.name[0] != '\0' ? json_string(c->rc.name) : json_null(),
                 &ok);
            jset(body, "agent",
                 c->agent[0] != '\0' ? json_string(c->agent) : json_null(),
                 &ok);
            jset(body, "cleared", json_true(), &ok);
            break;
        default:
            REMS_ASSERT(c->kind == CALL_WINDOW_DELETE);
            body = json_object();
            jset(body, "name", json_string(c->rc.name), &ok);
            jset(body, "deleted", json_true(), &ok);
            break;
    }
    storage_txn_abort(t);
    if (rv != 0) {
        /* Applied here before this callback: it must be there, unless a
         * later entry already changed it (a retried request id). */
        api__respond_error(c, rv == REMS_ENOTFOUND ? 409 : 500,
                           rv == REMS_ENOTFOUND ? "conflict" : "internal",
                           rv == REMS_ENOTFOUND
                               ? "applied, then changed again by a later write"
                               : errmsg,
                           NULL);
        return;
    }
    if (c->kind == CALL_OVERRIDE_SET &&
        c->rc.scope == STATEMACHINE_OVERRIDE_PAUSE) {
        jset(body, "paused", json_true(), &ok);
    }
    if (c->kind == CALL_OVERRIDE_CLEAR &&
        c->rc.scope == STATEMACHINE_OVERRIDE_PAUSE) {
        jset(body, "paused", json_false(), &ok);
    }
    jset(body, "index", ju64(res->index), &ok);
    if (res->duplicate) {
        jset(body, "duplicate", json_true(), &ok);
    }
    respond_built(c, body, ok);
}

/* 409 for an incident transition apply refused, with its state now. */
static void respond_incident_conflict(struct call *c)
{
    struct storage_txn *t;
    struct statemachine_incident i;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    const char *state = "unknown";
    json_t *err;
    json_t *body;
    bool ok = true;

    if (storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                          errmsg) == 0) {
        if (statemachine_incident_get(t, c->rc.incident_id, &i, errmsg) == 0) {
            state = statemachine_incident_state_name(i.state);
        }
        storage_txn_abort(t);
    }
    snprintf(msg, sizeof msg, "incident %" PRIu64 " is %s: it cannot be %s",
             c->rc.incident_id, state,
             strcmp(c->rc.op, "resolve") == 0 ? "resolved" : "acknowledged");
    err = json_object();
    jset(err, "code", json_string("conflict"), &ok);
    jset(err, "message", json_string(msg), &ok);
    jset(err, "field", json_string("id"), &ok);
    jset(err, "state", json_string(state), &ok);
    body = json_object();
    jset(body, "error", err, &ok);
    if (!ok) {
        json_decref(body);
        api__respond_error(c, 409, "conflict", msg, "id");
        return;
    }
    api__respond_json(c, 409, body, NULL, 0);
}

/* 409 for a rollout operation apply refused: its state and revision now. */
static void respond_rollout_conflict(struct call *c,
                                     const struct statemachine_result *res)
{
    struct storage_txn *t;
    struct statemachine_rollout r;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    const char *state = "unknown";
    uint64_t revision = 0;
    bool found = false;
    json_t *err;
    json_t *body;
    bool ok = true;

    if (storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                          errmsg) == 0) {
        if (statemachine_rollout_get(t, c->key, c->key_len, &r, errmsg) ==
            0) {
            state = statemachine_rollout_state_name(r.state);
            revision = r.target_revision;
            found = true;
        }
        storage_txn_abort(t);
    }
    (void)res;
    if (found && c->rc.rollout_revision != 0 &&
        c->rc.rollout_revision != revision) {
        snprintf(msg, sizeof msg,
                 "the rollout of %s is of revision %" PRIu64 ", not %" PRIu64,
                 c->key, revision, c->rc.rollout_revision);
    } else {
        snprintf(msg, sizeof msg, "the rollout of %s is %s: it cannot %s",
                 c->key, state, c->rc.rollout_op);
    }
    err = json_object();
    jset(err, "code", json_string("conflict"), &ok);
    jset(err, "message", json_string(msg), &ok);
    jset(err, "field",
         json_string(found && c->rc.rollout_revision != 0 &&
                             c->rc.rollout_revision != revision
                         ? "revision"
                         : "op"),
         &ok);
    jset(err, "state", json_string(state), &ok);
    if (found) {
        jset(err, "target_revision", ju64(revision), &ok);
    }
    body = json_object();
    jset(body, "error", err, &ok);
    if (!ok) {
        json_decref(body);
        api__respond_error(c, 409, "conflict", msg, "op");
        return;
    }
    api__respond_json(c, 409, body, NULL, 0);
}

static void respond_not_found(struct call *c)
{
    char msg[REMS_ERRMSG_SIZE];
    const char *field = "name";

    switch (c->kind) {
        case CALL_INCIDENT_UPDATE:
            snprintf(msg, sizeof msg, "no incident with id %" PRIu64,
                     c->rc.incident_id);
            field = "id";
            break;
        case CALL_ROLLOUT_UPDATE:
            snprintf(msg, sizeof msg, "no rollout of policy %s", c->key);
            field = "key";
            break;
        case CALL_OVERRIDE_CLEAR:
            if (c->rc.scope == STATEMACHINE_OVERRIDE_PAUSE) {
                snprintf(msg, sizeof msg, "the reconciler is not paused");
                field = "scope";
            } else if (c->agent[0] != '\0') {
                snprintf(msg, sizeof msg, "no freeze of service %s on agent %s",
                         c->rc.name, c->agent);
            } else {
                snprintf(msg, sizeof msg, "no freeze of %s %s",
                         scope_name(c->rc.scope), c->rc.name);
            }
            break;
        default:
            snprintf(msg, sizeof msg, "no maintenance window named %s",
                     c->rc.name);
            break;
    }
    api__respond_error(c, 404, "not_found", msg, field);
}

static void written_cb(struct cluster_write *w,
                       int status,
                       const struct statemachine_result *res)
{
    struct call *c = w->data;

    if (status != 0) {
        api__respond_status(c, status, rems_strerror(status));
        return;
    }
    switch (res->code) {
        case 0:
            respond_record(c, res);
            return;
        case REMS_ENOTFOUND:
            if (c->rc.resume) {
                /* Resuming a reconciler that is not paused: done. */
                json_t *body = json_object();
                bool ok = true;
                jset(body, "paused", json_false(), &ok);
                jset(body, "index", ju64(res->index), &ok);
                respond_built(c, body, ok);
                return;
            }
            respond_not_found(c);
            return;
        case REMS_ECONFLICT:
            if (c->kind == CALL_INCIDENT_UPDATE) {
                respond_incident_conflict(c);
                return;
            }
            if (c->kind == CALL_ROLLOUT_UPDATE) {
                respond_rollout_conflict(c, res);
                return;
            }
            break;
        default:
            break;
    }
    api__respond_error(c, 500, "internal", rems_strerror(res->code), NULL);
}

int api__reconcile_propose(struct call *c, char *errmsg)
{
    struct statemachine_entry e;
    const struct api_reconcile_call *rc = &c->rc;

    memset(&e, 0, sizeof e);
    api__fill_entry_meta(c, &e);
    switch (c->kind) {
        case CALL_INCIDENT_UPDATE:
            e.type = STATEMACHINE_ENTRY_INCIDENT_UPDATE;
            e.incident_id = rc->incident_id;
            e.op = rc->op;
            e.op_len = strlen(rc->op);
            break;
        case CALL_OVERRIDE_SET:
        case CALL_OVERRIDE_CLEAR:
            e.type = c->kind == CALL_OVERRIDE_SET
                         ? STATEMACHINE_ENTRY_OVERRIDE_SET
                         : STATEMACHINE_ENTRY_OVERRIDE_CLEAR;
            e.scope = scope_name(rc->scope);
            e.scope_len = strlen(e.scope);
            if (rc->name[0] != '\0') {
                e.name = rc->name;
                e.name_len = strlen(rc->name);
            }
            if (c->agent[0] != '\0') {
                e.agent_id = c->agent;
                e.agent_id_len = strlen(c->agent);
            }
            e.until_ms = c->kind == CALL_OVERRIDE_SET ? rc->until_ms : 0;
            /* The entry's time is this leader's clock: an end that is not
             * after it would be refused by apply. */
            if (e.until_ms != 0 && e.until_ms <= e.time_ms) {
                bad(c, "until_ms",
                    "must be later than now (%" PRIu64
                    " on the leader's clock)",
                    e.time_ms);
                return 0;
            }
            break;
        case CALL_WINDOW_SET:
            e.type = STATEMACHINE_ENTRY_WINDOW_SET;
            e.name = rc->name;
            e.name_len = strlen(rc->name);
            e.scope = window_scopes[rc->scope];
            e.scope_len = strlen(e.scope);
            if (rc->scope != STATEMACHINE_WINDOW_GLOBAL) {
                e.target = rc->target;
                e.target_len = strlen(rc->target);
            }
            e.mode = window_modes[rc->mode];
            e.mode_len = strlen(e.mode);
            e.weekly = rc->weekly;
            e.start_ms = rc->start_ms;
            e.end_ms = rc->end_ms;
            e.days = rc->days;
            e.start_minute = rc->start_minute;
            e.duration_minutes = rc->duration_minutes;
            break;
        case CALL_ROLLOUT_UPDATE: {
            uint64_t revision = rc->rollout_revision;
            if (revision == 0) {
                /* The rollout as this leader has it now. */
                struct storage_txn *t;
                struct statemachine_rollout r;
                int rv = storage_txn_begin(cluster_node_storage(c->s->node),
                                           false, &t, errmsg);
                if (rv != 0) {
                    return rv;
                }
                rv = statemachine_rollout_get(t, c->key, c->key_len, &r,
                                              errmsg);
                if (rv == 0) {
                    revision = r.target_revision;
                }
                storage_txn_abort(t);
                if (rv == REMS_ENOTFOUND) {
                    respond_not_found(c);
                    return 0;
                }
                if (rv != 0) {
                    return rv;
                }
            }
            e.type = STATEMACHINE_ENTRY_ROLLOUT_UPDATE;
            e.key = c->key;
            e.key_len = c->key_len;
            e.rollout_revision = revision;
            e.op = rc->rollout_op;
            e.op_len = strlen(rc->rollout_op);
            break;
        }
        default:
            REMS_ASSERT(c->kind == CALL_WINDOW_DELETE);
            e.type = STATEMACHINE_ENTRY_WINDOW_DELETE;
            e.name = rc->name;
            e.name_len = strlen(rc->name);
            break;
    }
    c->write.data = c;
    return cluster_node_propose(c->s->node, &c->write, &e, written_cb, errmsg);
}

/* ------------------------------------------------------------------ */
/* Parsing.                                                             */

/* Refuse a field of @o that is not in @known (@n); @prefix names the
 * object ("" or "weekly."). */
static bool only_known(struct call *c,
                       json_t *o,
                       const char *const *known,
                       size_t n,
                       const char *prefix)
{
    const char *k;
    json_t *v;
    char field[128];
    size_t i;

    json_object_foreach(o, k, v)
    {
        for (i = 0; i < n; i++) {
            if (strcmp(k, known[i]) == 0) {
                break;
            }
        }
        if (i == n) {
            snprintf(field, sizeof field, "%s%.64s", prefix, k);
            bad(c, field, "unknown field");
            return false;
        }
    }
    return true;
}

/* An optional non-negative integer field: *@present, *@out. */
static bool uint_field(struct call *c,
                       json_t *o,
                       const char *field,
                       const char *rule,
                       uint64_t *out,
                       bool *present)
{
    json_t *v = json_object_get(o, field);
    *present = false;
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        bad(c, field, "%s", rule);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    *present = true;
    return true;
}

/* What an override names, from body fields or query parameters: @scope
 * (a scope name, NULL when absent), @name, @agent (NULL when absent).
 * Fills c->rc.scope, c->rc.name and c->agent. */
static bool override_target(struct call *c,
                            const char *scope,
                            const char *name,
                            const char *agent)
{
    c->rc.scope = scope != NULL
                      ? name_index(override_scopes,
                                   REMS_ARRAY_SIZE(override_scopes), scope)
                      : 0;
    if (c->rc.scope == 0) {
        bad(c, "scope", "%s: service, agent, site or pause",
            scope == NULL ? "required" : "must be one of");
        return false;
    }
    if (c->rc.scope == STATEMACHINE_OVERRIDE_PAUSE) {
        if (name != NULL) {
            bad(c, "name", "not allowed with scope pause");
            return false;
        }
        if (agent != NULL) {
            bad(c, "agent", "not allowed with scope pause");
            return false;
        }
        return true;
    }
    if (name == NULL) {
        bad(c, "name", "required with scope %s: the %s",
            scope_name(c->rc.scope),
            c->rc.scope == STATEMACHINE_OVERRIDE_SERVICE ? "service name"
            : c->rc.scope == STATEMACHINE_OVERRIDE_AGENT ? "agent id"
                                                         : "site");
        return false;
    }
    switch (c->rc.scope) {
        case STATEMACHINE_OVERRIDE_SERVICE:
            if (!api__service_valid(name, strlen(name))) {
                bad(c, "name", "must be a service name, " SERVICE_RULE);
                return false;
            }
            break;
        case STATEMACHINE_OVERRIDE_AGENT:
            if (!statemachine_id_check(name, strlen(name))) {
                bad(c, "name", "must be an agent id, " ID_RULE);
                return false;
            }
            break;
        default:
            if (!printable(name, strlen(name))) {
                bad(c, "name", "must be a site, " SITE_RULE);
                return false;
            }
            break;
    }
    snprintf(c->rc.name, sizeof c->rc.name, "%s", name);
    if (agent != NULL) {
        if (c->rc.scope != STATEMACHINE_OVERRIDE_SERVICE) {
            bad(c, "agent",
                "only with scope service (freeze a service on one agent)");
            return false;
        }
        if (!statemachine_id_check(agent, strlen(agent))) {
            bad(c, "agent", "must be an agent id, " ID_RULE);
            return false;
        }
        snprintf(c->agent, sizeof c->agent, "%s", agent);
    }
    return true;
}

/* A string field that must be a string when present; NULL when absent. */
static bool
str_field(struct call *c, json_t *o, const char *field, const char **out)
{
    json_t *v = json_object_get(o, field);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        bad(c, field, "must be a string");
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* POST /v1/overrides. */
static void route_override_set(struct call *c)
{
    static const char *const known[] = {"scope", "name", "agent", "until_ms",
                                        "duration_ms"};
    json_t *o = api__parse_body_object(c);
    const char *scope;
    const char *name;
    const char *agent;
    uint64_t until = 0;
    uint64_t duration = 0;
    bool has_until;
    bool has_duration;

    if (o == NULL) {
        return;
    }
    if (!only_known(c, o, known, REMS_ARRAY_SIZE(known), "") ||
        !str_field(c, o, "scope", &scope) || !str_field(c, o, "name", &name) ||
        !str_field(c, o, "agent", &agent) ||
        !override_target(c, scope, name, agent) ||
        !uint_field(c, o, "until_ms",
                    "must be an integer: milliseconds since the epoch", &until,
                    &has_until) ||
        !uint_field(c, o, "duration_ms", "must be an integer of milliseconds",
                    &duration, &has_duration)) {
        json_decref(o);
        return;
    }
    if (c->rc.scope == STATEMACHINE_OVERRIDE_PAUSE &&
        (has_until || has_duration)) {
        json_decref(o);
        bad(c, has_until ? "until_ms" : "duration_ms",
            "not allowed with scope pause (a pause lasts until resumed)");
        return;
    }
    if (has_until && has_duration) {
        json_decref(o);
        bad(c, "duration_ms", "give until_ms or duration_ms, not both");
        return;
    }
    if (has_duration && (duration < 1 || duration > DURATION_MAX_MS)) {
        json_decref(o);
        bad(c, "duration_ms", "must be 1..%llu (ten years)",
            (unsigned long long)DURATION_MAX_MS);
        return;
    }
    if (has_until && until < 1) {
        json_decref(o);
        bad(c, "until_ms", "must be >= 1 (milliseconds since the epoch)");
        return;
    }
    if (has_duration) {
        /* Made absolute here, and forwarded so. */
        char *text;
        until = rems_wall_ms() + duration;
        json_object_del(o, "duration_ms");
        if (json_object_set_new(o, "until_ms", ju64(until)) != 0 ||
            (text = json_dumps(o, JSON_COMPACT)) == NULL) {
            json_decref(o);
            api__respond_error(c, 500, "internal", "out of memory", NULL);
            return;
        }
        c->forward_body = rems_strdup(text);
        free(text); /* jansson allocates with malloc. */
        if (c->forward_body == NULL) {
            json_decref(o);
            api__respond_error(c, 500, "internal", "out of memory", NULL);
            return;
        }
    } else if (has_until && until <= rems_wall_ms()) {
        json_decref(o);
        bad(c, "until_ms", "must be later than now (%" PRIu64 ")",
            rems_wall_ms());
        return;
    }
    json_decref(o);
    c->rc.until_ms = until;
    c->kind = CALL_OVERRIDE_SET;
    api__do_write(c);
}

/* A query parameter of at most STATEMACHINE_NAME_MAX bytes into @out;
 * *@present. False when answered. */
static bool
query_name(struct call *c, const char *param, char *out, bool *present)
{
    int rv = http_request_query(c->req, param, out, STATEMACHINE_NAME_MAX + 1);
    *present = rv > 0;
    if (rv < 0) {
        bad(c, param, "must be at most %d bytes, percent-encoded",
            STATEMACHINE_NAME_MAX);
        return false;
    }
    if (rv == 0) {
        out[0] = '\0';
    }
    return true;
}

/* DELETE /v1/overrides?scope=&name=&agent=. */
static void route_override_clear(struct call *c)
{
    char scope[STATEMACHINE_NAME_MAX + 1];
    char name[STATEMACHINE_NAME_MAX + 1];
    char agent[STATEMACHINE_NAME_MAX + 1];
    bool has_scope;
    bool has_name;
    bool has_agent;

    if (!query_name(c, "scope", scope, &has_scope) ||
        !query_name(c, "name", name, &has_name) ||
        !query_name(c, "agent", agent, &has_agent) ||
        !override_target(c, has_scope ? scope : NULL, has_name ? name : NULL,
                         has_agent ? agent : NULL)) {
        return;
    }
    c->kind = CALL_OVERRIDE_CLEAR;
    api__do_write(c);
}

/* The index of the day @s (Monday 0), or -1. */
static int day_index(const char *s, size_t len)
{
    int i;
    for (i = 0; i < 7; i++) {
        if ((strlen(day_names[i]) == len &&
             strncmp(s, day_names[i], len) == 0) ||
            (strlen(day_long_names[i]) == len &&
             strncmp(s, day_long_names[i], len) == 0)) {
            return i;
        }
    }
    return -1;
}

/* "mon", "monday", or a range "mon-fri" (which may wrap: "sat-mon"), into
 * bits of @days. */
static bool day_parse(const char *s, unsigned *days)
{
    const char *dash = strchr(s, '-');
    int a;
    int b;

    a = day_index(s, dash != NULL ? (size_t)(dash - s) : strlen(s));
    b = dash != NULL ? day_index(dash + 1, strlen(dash + 1)) : a;
    if (a < 0 || b < 0) {
        return false;
    }
    for (;; a = (a + 1) % 7) {
        *days |= 1u << a;
        if (a == b) {
            return true;
        }
    }
}

/* "HH:MM", 00:00 to 23:59, into minutes. */
static bool hhmm_parse(const char *s, unsigned *out)
{
    unsigned h;
    unsigned m;
    if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '9' ||
        s[1] < '0' || s[1] > '9' || s[3] < '0' || s[3] > '9' || s[4] < '0' ||
        s[4] > '9') {
        return false;
    }
    h = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
    m = (unsigned)(s[3] - '0') * 10 + (unsigned)(s[4] - '0');
    if (h > 23 || m > 59) {
        return false;
    }
    *out = h * 60 + m;
    return true;
}

#define DAYS_RULE                                                              \
    "must be a non-empty list of days: mon, tue, wed, thu, fri, sat, sun "     \
    "(or their full names), or ranges such as mon-fri"

static bool parse_weekly(struct call *c, json_t *wk)
{
    static const char *const known[] = {"days", "start", "duration_minutes"};
    json_t *days = json_object_get(wk, "days");
    json_t *start = json_object_get(wk, "start");
    json_t *dur = json_object_get(wk, "duration_minutes");
    json_t *d;
    size_t i;

    if (!json_is_object(wk)) {
        bad(c, "weekly",
            "must be an object: {\"days\": [...], \"start\": \"HH:MM\", "
            "\"duration_minutes\": N}");
        return false;
    }
    if (!only_known(c, wk, known, REMS_ARRAY_SIZE(known), "weekly.")) {
        return false;
    }
    c->rc.weekly = true;
    c->rc.days = 0;
    if (!json_is_array(days) || json_array_size(days) == 0) {
        bad(c, "weekly.days", DAYS_RULE);
        return false;
    }
    json_array_foreach(days, i, d)
    {
        if (!json_is_string(d) ||
            !day_parse(json_string_value(d), &c->rc.days)) {
            bad(c, "weekly.days", DAYS_RULE);
            return false;
        }
    }
    if (!json_is_string(start) ||
        !hhmm_parse(json_string_value(start), &c->rc.start_minute)) {
        bad(c, "weekly.start",
            "must be a time of day \"HH:MM\" in UTC, 00:00 to 23:59");
        return false;
    }
    if (!json_is_integer(dur) || json_integer_value(dur) < 1 ||
        json_integer_value(dur) > 10080) {
        bad(c, "weekly.duration_minutes",
            "must be an integer, 1..10080 (a week)");
        return false;
    }
    c->rc.duration_minutes = (unsigned)json_integer_value(dur);
    return true;
}

/* Check the window of the call with reconcile_window_check(), naming the
 * API's field. */
static bool window_check(struct call *c)
{
    static const struct {
        const char *rule_field;
        const char *api_field;
    } fields[] = {
        {"name", "name"},
        {"scope", "scope"},
        {"target", "target"},
        {"policy", "mode"},
        {"start_ms", "start_ms"},
        {"end_ms", "end_ms"},
        {"days", "weekly.days"},
        {"start_minute", "weekly.start"},
        {"duration_minutes", "weekly.duration_minutes"},
    };
    struct reconcile_window w;
    char errmsg[REMS_ERRMSG_SIZE];
    const char *field = "body";
    const char *rule;
    const char *dot;
    const char *colon;
    size_t i;

    memset(&w, 0, sizeof w);
    w.name = c->rc.name;
    w.scope = c->rc.scope;
    w.target = c->rc.scope == STATEMACHINE_WINDOW_GLOBAL ? NULL : c->rc.target;
    w.policy = c->rc.mode;
    w.weekly = c->rc.weekly;
    w.start_ms = c->rc.start_ms;
    w.end_ms = c->rc.end_ms;
    w.days = c->rc.days;
    w.start_minute = c->rc.start_minute;
    w.duration_minutes = c->rc.duration_minutes;
    if (reconcile_window_check(&w, errmsg) == 0) {
        return true;
    }
    /* "maintenance_window.<field>: <rule>" */
    dot = strchr(errmsg, '.');
    colon = strstr(errmsg, ": ");
    rule = colon != NULL ? colon + 2 : errmsg;
    for (i = 0; dot != NULL && colon != NULL && i < REMS_ARRAY_SIZE(fields);
         i++) {
        if ((size_t)(colon - dot - 1) == strlen(fields[i].rule_field) &&
            strncmp(dot + 1, fields[i].rule_field, (size_t)(colon - dot - 1)) ==
                0) {
            field = fields[i].api_field;
        }
    }
    bad(c, field, "%s", rule);
    return false;
}

/* PUT /v1/maintenance-windows/{name} (c->rc.name is set). */
static void route_window_set(struct call *c)
{
    static const char *const known[] = {"scope",    "target", "mode",
                                        "start_ms", "end_ms", "weekly"};
    json_t *o = api__parse_body_object(c);
    json_t *weekly;
    const char *scope;
    const char *target;
    const char *mode;
    bool has_start;
    bool has_end;

    if (o == NULL) {
        return;
    }
    if (!only_known(c, o, known, REMS_ARRAY_SIZE(known), "") ||
        !str_field(c, o, "scope", &scope) ||
        !str_field(c, o, "target", &target) ||
        !str_field(c, o, "mode", &mode)) {
        json_decref(o);
        return;
    }
    c->rc.scope =
        name_index(window_scopes, REMS_ARRAY_SIZE(window_scopes), scope);
    if (c->rc.scope == 0) {
        json_decref(o);
        bad(c, "scope", "%s: global, site or agent",
            scope == NULL ? "required" : "must be one of");
        return;
    }
    if (c->rc.scope == STATEMACHINE_WINDOW_GLOBAL && target != NULL) {
        json_decref(o);
        bad(c, "target", "not allowed with scope global");
        return;
    }
    if (c->rc.scope != STATEMACHINE_WINDOW_GLOBAL) {
        bool agent = c->rc.scope == STATEMACHINE_WINDOW_AGENT;
        if (target == NULL) {
            json_decref(o);
            bad(c, "target", "required with scope %s: the %s",
                window_scopes[c->rc.scope], agent ? "agent id" : "site");
            return;
        }
        if (agent ? !statemachine_id_check(target, strlen(target))
                  : !printable(target, strlen(target))) {
            json_decref(o);
            bad(c, "target", "%s",
                agent ? "must be an agent id, " ID_RULE
                      : "must be a site, " SITE_RULE);
            return;
        }
        snprintf(c->rc.target, sizeof c->rc.target, "%s", target);
    }
    c->rc.mode = name_index(window_modes, REMS_ARRAY_SIZE(window_modes), mode);
    if (c->rc.mode == 0) {
        json_decref(o);
        bad(c, "mode", "%s: auto_inside_only or never_inside",
            mode == NULL ? "required" : "must be one of");
        return;
    }
    if (!uint_field(c, o, "start_ms",
                    "must be an integer: milliseconds since the epoch",
                    &c->rc.start_ms, &has_start) ||
        !uint_field(c, o, "end_ms",
                    "must be an integer: milliseconds since the epoch",
                    &c->rc.end_ms, &has_end)) {
        json_decref(o);
        return;
    }
    weekly = json_object_get(o, "weekly");
    if (weekly != NULL && json_is_null(weekly)) {
        weekly = NULL;
    }
    if (weekly != NULL && (has_start || has_end)) {
        json_decref(o);
        bad(c, has_start ? "start_ms" : "end_ms",
            "not allowed with weekly: a window is once (start_ms and end_ms) "
            "or weekly");
        return;
    }
    if (weekly == NULL && (!has_start || !has_end)) {
        json_decref(o);
        bad(c, has_start ? "end_ms" : "start_ms",
            "required: a window is once (start_ms and end_ms) or weekly");
        return;
    }
    if (weekly != NULL && !parse_weekly(c, weekly)) {
        json_decref(o);
        return;
    }
    json_decref(o);
    if (!window_check(c)) {
        return;
    }
    c->kind = CALL_WINDOW_SET;
    api__do_write(c);
}

/* An incident id in the path: 1 and up. */
static bool parse_incident_id(struct call *c, const char *s, size_t len)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf) {
        bad(c, "id", "must be an incident id, an integer >= 1");
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (rems_parse_u64(buf, &c->rc.incident_id) != 0 ||
        c->rc.incident_id == 0) {
        bad(c, "id", "must be an incident id, an integer >= 1");
        return false;
    }
    return true;
}

/* An incident update takes no body, or an empty object; who does it is
 * required. */
static bool parse_incident_update(struct call *c)
{
    json_t *o;
    const char *user = http_request_header(c->req, "x-rems-user");
    if (!api__parse_write_headers(c)) {
        return false;
    }
    if (c->has_if_match) {
        bad(c, "If-Match", "does not apply to incidents");
        return false;
    }
    if (user == NULL) {
        bad(c, "X-Rems-User",
            "required: who %s the incident (recorded with it)",
            strcmp(c->rc.op, "resolve") == 0 ? "resolves" : "acknowledges");
        return false;
    }
    if (c->req->body_len == 0) {
        return true;
    }
    o = api__parse_body_object(c);
    if (o == NULL) {
        return false;
    }
    if (json_object_size(o) > 0) {
        const char *k = json_object_iter_key(json_object_iter(o));
        char field[80];
        snprintf(field, sizeof field, "%.64s", k);
        json_decref(o);
        bad(c, field,
            "unknown field (the body is empty or {}; the reason is the "
            "X-Rems-Reason header)");
        return false;
    }
    json_decref(o);
    return true;
}

/* Writes other than incidents refuse If-Match. */
static bool parse_plain_write_headers(struct call *c)
{
    if (!api__parse_write_headers(c)) {
        return false;
    }
    if (c->has_if_match) {
        bad(c, "If-Match", "does not apply here");
        return false;
    }
    return true;
}

static bool parse_agent_filter(struct call *c)
{
    int rv = http_request_query(c->req, "agent", c->agent, sizeof c->agent);
    if (rv < 0 ||
        (rv > 0 && !statemachine_id_check(c->agent, strlen(c->agent)))) {
        bad(c, "agent", "must be an agent id, " ID_RULE);
        return false;
    }
    c->has_agent_filter = rv > 0;
    if (rv == 0) {
        c->agent[0] = '\0';
    }
    return true;
}

/* GET /v1/incidents?state=&agent=&after=&limit= */
static bool parse_incident_filters(struct call *c)
{
    char v[32];
    int rv;

    if (!parse_agent_filter(c) || !api__parse_limit(c)) {
        return false;
    }
    rv = http_request_query(c->req, "after", v, sizeof v);
    if (rv < 0 || (rv > 0 && rems_parse_u64(v, &c->after_index) != 0)) {
        bad(c, "after", "must be an incident id (a non-negative integer)");
        return false;
    }
    c->rc.incident_state = -1;
    rv = http_request_query(c->req, "state", v, sizeof v);
    if (rv == 0) {
        return true;
    }
    if (rv > 0 && strcmp(v, "unresolved") == 0) {
        c->rc.incident_state = STATEMACHINE_INCIDENT_UNRESOLVED;
        return true;
    }
    for (c->rc.incident_state = 0;
         rv > 0 && c->rc.incident_state < STATEMACHINE_INCIDENT_STATE_NR;
         c->rc.incident_state++) {
        if (strcmp(v, statemachine_incident_state_name(c->rc.incident_state)) ==
            0) {
            return true;
        }
    }
    bad(c, "state", "must be open, acknowledged, resolved or unresolved");
    return false;
}

/* `after` of the window list: a window name. */
static bool parse_after_name(struct call *c)
{
    int rv =
        http_request_query(c->req, "after", c->after, STATEMACHINE_ID_MAX + 1);
    if (rv < 0) {
        bad(c, "after", "must be a window name, at most 64 bytes");
        return false;
    }
    if (rv == 0) {
        c->after[0] = '\0';
    }
    return true;
}

static bool parse_window_name(struct call *c, const char *s)
{
    if (!statemachine_id_check(s, strlen(s))) {
        bad(c, "name", "must be a window name, " WINDOW_NAME_RULE);
        return false;
    }
    snprintf(c->rc.name, sizeof c->rc.name, "%s", s);
    return true;
}

static void route_incidents(struct call *c, const char *rest)
{
    int m = c->req->method;
    const char *slash;

    if (rest == NULL) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c) && parse_incident_filters(c)) {
            c->kind = CALL_INCIDENT_LIST;
            api__do_read(c);
        }
        return;
    }
    slash = strchr(rest, '/');
    if (!parse_incident_id(
            c, rest, slash != NULL ? (size_t)(slash - rest) : strlen(rest))) {
        return;
    }
    if (slash == NULL) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c)) {
            c->kind = CALL_INCIDENT_GET;
            api__do_read(c);
        }
        return;
    }
    if (strcmp(slash, "/acknowledge") == 0) {
        c->rc.op = "acknowledge";
    } else if (strcmp(slash, "/resolve") == 0) {
        c->rc.op = "resolve";
    } else {
        api__respond_error(c, 404, "not_found", "no such path", NULL);
        return;
    }
    if (m != HTTP_POST) {
        api__method_not_allowed(c);
        return;
    }
    if (parse_incident_update(c)) {
        c->kind = CALL_INCIDENT_UPDATE;
        api__do_write(c);
    }
}

static void route_windows(struct call *c, const char *name)
{
    int m = c->req->method;

    if (name == NULL) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c) && api__parse_limit(c) &&
            parse_after_name(c)) {
            c->kind = CALL_WINDOW_LIST;
            api__do_read(c);
        }
        return;
    }
    if (m != HTTP_GET && m != HTTP_PUT && m != HTTP_DELETE) {
        api__method_not_allowed(c);
        return;
    }
    if (!parse_window_name(c, name)) {
        return;
    }
    if (m == HTTP_GET) {
        if (api__parse_consistency(c)) {
            c->kind = CALL_WINDOW_GET;
            api__do_read(c);
        }
    } else if (parse_plain_write_headers(c)) {
        if (m == HTTP_PUT) {
            route_window_set(c);
        } else {
            c->kind = CALL_WINDOW_DELETE;
            api__do_write(c);
        }
    }
}

/* POST /v1/rollouts/{key}: {"op": pause|resume|abort|rollback,
 * "revision": N (optional: the target revision it applies to)}. */
static void route_rollout_update(struct call *c)
{
    static const char *const known[] = {"op", "revision"};
    static const char *const ops[] = {"pause", "resume", "abort", "rollback"};
    json_t *o;
    json_t *v;
    const char *op;
    size_t i;

    if (!parse_plain_write_headers(c)) {
        return;
    }
    o = api__parse_body_object(c);
    if (o == NULL) {
        return;
    }
    if (!only_known(c, o, known, 2, "")) {
        json_decref(o);
        return;
    }
    v = json_object_get(o, "op");
    op = json_string_value(v);
    c->rc.rollout_op = NULL;
    for (i = 0; op != NULL && i < REMS_ARRAY_SIZE(ops); i++) {
        if (strcmp(op, ops[i]) == 0) {
            c->rc.rollout_op = ops[i];
        }
    }
    if (c->rc.rollout_op == NULL) {
        json_decref(o);
        bad(c, "op", "%s: must be pause, resume, abort or rollback",
            v == NULL ? "required" : "unknown operation");
        return;
    }
    v = json_object_get(o, "revision");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1)) {
        json_decref(o);
        bad(c, "revision", "must be a policy revision, an integer >= 1");
        return;
    }
    c->rc.rollout_revision = v != NULL ? (uint64_t)json_integer_value(v) : 0;
    json_decref(o);
    c->kind = CALL_ROLLOUT_UPDATE;
    api__do_write(c);
}

/* /v1/rollouts and /v1/rollouts/{key} (a policy key, slashes included). */
static void route_rollouts(struct call *c, const char *key)
{
    int m = c->req->method;
    char msg[REMS_ERRMSG_SIZE];
    char v[16];
    int rv;

    if (key == NULL) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c) && api__parse_limit(c)) {
            rv = http_request_query(c->req, "after", c->after,
                                    sizeof c->after);
            if (rv < 0) {
                bad(c, "after", "must be a policy key of at most %d bytes",
                    STATEMACHINE_KEY_MAX);
                return;
            }
            if (rv == 0) {
                c->after[0] = '\0';
            }
            c->kind = CALL_ROLLOUT_LIST;
            api__do_read(c);
        }
        return;
    }
    if (statemachine_key_check(key, strlen(key), msg) != 0) {
        bad(c, "key", "%s", msg);
        return;
    }
    snprintf(c->key, sizeof c->key, "%s", key);
    c->key_len = strlen(c->key);
    if (m == HTTP_GET) {
        rv = http_request_query(c->req, "documents", v, sizeof v);
        if (rv > 0 && strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            bad(c, "documents", "must be true or false");
            return;
        }
        c->rc.documents = rv > 0 && strcmp(v, "true") == 0;
        if (api__parse_consistency(c)) {
            c->kind = CALL_ROLLOUT_GET;
            api__do_read(c);
        }
    } else if (m == HTTP_POST) {
        route_rollout_update(c);
    } else {
        api__method_not_allowed(c);
    }
}

static void route_views(struct call *c, int kind);

bool api__reconcile_route(struct call *c)
{
    const char *p = c->req->path;
    int m = c->req->method;

    if (strcmp(p, "/v1/incidents") == 0) {
        route_incidents(c, NULL);
    } else if (strncmp(p, "/v1/incidents/", 14) == 0) {
        route_incidents(c, p + 14);
    } else if (strcmp(p, "/v1/overrides") == 0) {
        if (m == HTTP_GET) {
            if (api__parse_consistency(c)) {
                c->kind = CALL_OVERRIDE_LIST;
                api__do_read(c);
            }
        } else if (m == HTTP_POST) {
            if (parse_plain_write_headers(c)) {
                route_override_set(c);
            }
        } else if (m == HTTP_DELETE) {
            if (parse_plain_write_headers(c)) {
                route_override_clear(c);
            }
        } else {
            api__method_not_allowed(c);
        }
    } else if (strcmp(p, "/v1/reconciler/pause") == 0 ||
               strcmp(p, "/v1/reconciler/resume") == 0) {
        if (m != HTTP_POST) {
            api__method_not_allowed(c);
            return true;
        }
        if (!parse_plain_write_headers(c)) {
            return true;
        }
        c->rc.scope = STATEMACHINE_OVERRIDE_PAUSE;
        c->rc.resume = strcmp(p, "/v1/reconciler/resume") == 0;
        c->kind = c->rc.resume ? CALL_OVERRIDE_CLEAR : CALL_OVERRIDE_SET;
        api__do_write(c);
    } else if (strcmp(p, "/v1/maintenance-windows") == 0) {
        route_windows(c, NULL);
    } else if (strncmp(p, "/v1/maintenance-windows/", 24) == 0) {
        route_windows(c, p + 24);
    } else if (strcmp(p, "/v1/rollouts") == 0) {
        route_rollouts(c, NULL);
    } else if (strncmp(p, "/v1/rollouts/", 13) == 0) {
        route_rollouts(c, p + 13);
    } else if (strcmp(p, "/v1/summary") == 0) {
        route_views(c, CALL_SUMMARY);
    } else if (strcmp(p, "/v1/drift") == 0) {
        route_views(c, CALL_DRIFT);
    } else if (strcmp(p, "/v1/recommendations") == 0) {
        route_views(c, CALL_RECOMMENDATIONS);
    } else {
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Views.                                                               */

/* consistency of the views: stale (the default: this node's tables as
 * they are), linearizable or leader (after a read index). */
static bool parse_view_consistency(struct call *c)
{
    char v[32];
    int rv = http_request_query(c->req, "consistency", v, sizeof v);
    c->stale = true;
    if (rv == 0 || (rv > 0 && strcmp(v, "stale") == 0)) {
        return true;
    }
    if (rv > 0 &&
        (strcmp(v, "linearizable") == 0 || strcmp(v, "leader") == 0)) {
        c->stale = false;
        return true;
    }
    bad(c, "consistency",
        "must be stale (the default), linearizable or "
        "leader");
    return false;
}

/* A level given as "required" or "reconcile_required". */
static int level_parse(const char *s)
{
    int i;
    for (i = 1; i < RECONCILE_LEVEL_NR; i++) {
        const char *name = reconcile_level_name(i);
        if (strcmp(s, name) == 0 || (strncmp(name, "reconcile_", 10) == 0 &&
                                     strcmp(s, name + 10) == 0)) {
            return i;
        }
    }
    return 0;
}

static bool parse_view_filters(struct call *c, int kind)
{
    char v[STATEMACHINE_NAME_MAX + 1];
    int rv;
    int i;

    if (!parse_agent_filter(c)) {
        return false;
    }
    if (kind == CALL_SUMMARY) {
        rv = http_request_query(c->req, "site", c->rc.site, sizeof c->rc.site);
        if (rv < 0 || (rv > 0 && !printable(c->rc.site, strlen(c->rc.site)))) {
            bad(c, "site", "must be a site, " SITE_RULE);
            return false;
        }
        c->rc.has_site = rv > 0;
        return true;
    }
    rv = http_request_query(c->req, "service", c->service, sizeof c->service);
    if (rv < 0 ||
        (rv > 0 && !api__service_valid(c->service, strlen(c->service)))) {
        bad(c, "service", "must be a service name, " SERVICE_RULE);
        return false;
    }
    c->rc.has_service = rv > 0;
    rv = http_request_query(c->req, "level", v, sizeof v);
    if (rv != 0) {
        c->rc.level = rv > 0 ? level_parse(v) : 0;
        if (c->rc.level == 0) {
            bad(c, "level", "must be required, recommended or blocked");
            return false;
        }
    }
    if (kind != CALL_DRIFT) {
        return true;
    }
    rv = http_request_query(c->req, "kind", v, sizeof v);
    if (rv == 0) {
        return true;
    }
    for (i = 1; rv > 0 && i < RECONCILE_DRIFT_NR; i++) {
        if (strcmp(v, reconcile_drift_kind_name(i)) == 0) {
            c->rc.kind = i;
            return true;
        }
    }
    bad(c, "kind",
        "must be missing_service, unexpected_service, unhealthy_service, "
        "failed_deployment, offline_agent, dependency_unavailable or "
        "unresolved_incident");
    return false;
}

static void route_views(struct call *c, int kind)
{
    if (c->req->method != HTTP_GET) {
        api__method_not_allowed(c);
        return;
    }
    if (parse_view_consistency(c) && parse_view_filters(c, kind)) {
        c->kind = kind;
        api__do_read(c);
    }
}

static json_t *summary_json(const struct reconcile_summary *m, bool *ok)
{
    json_t *o = json_object();
    json_t *counts = json_object();
    int i;

    for (i = 1; i < RECONCILE_STATE_NR; i++) {
        jset(counts, reconcile_state_name(i), ju64(m->counts[i]), ok);
    }
    jset(o, "name", json_string(m->name), ok);
    jset(o, "state", json_string(reconcile_state_name(m->state)), ok);
    jset(o, "counts", counts, ok);
    jset(o, "total", ju64(m->total), ok);
    return o;
}

/* A string of the pass that "" means none of: null then. */
static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

static json_t *drift_json(const struct reconcile_drift *d, bool *ok)
{
    json_t *o = json_object();
    jset(o, "agent", json_string(d->agent), ok);
    jset(o, "service", str_or_null(d->service), ok);
    jset(o, "kind", json_string(reconcile_drift_kind_name(d->kind)), ok);
    jset(o, "level", json_string(reconcile_level_name(d->level)), ok);
    jset(o, "action", json_string(reconcile_action_name(d->action)), ok);
    jset(o, "reason", json_string(d->reason != NULL ? d->reason : ""), ok);
    jset(o, "detail", json_string(d->detail != NULL ? d->detail : ""), ok);
    jset(o, "policy", str_or_null(d->policy), ok);
    jset(o, "revision", api__index_or_null(d->revision), ok);
    jset(o, "criticality", json_string(policy_criticality_name(d->criticality)),
         ok);
    jset(o, "state", json_string(reconcile_state_name(d->state)), ok);
    return o;
}

/* True when the (agent, service) of a drift, hold or command passes the
 * call's filters. */
static bool
view_match(const struct call *c, const char *agent, const char *service)
{
    return (!c->has_agent_filter || strcmp(agent, c->agent) == 0) &&
           (!c->rc.has_service ||
            (service != NULL && strcmp(service, c->service) == 0));
}

static json_t *
view_drifts(const struct call *c, const struct reconcile_output *out, bool *ok)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < out->n_drifts; i++) {
        const struct reconcile_drift *d = &out->drifts[i];
        if (view_match(c, d->agent, d->service) &&
            (c->rc.kind == 0 || d->kind == c->rc.kind) &&
            (c->rc.level == 0 || d->level == c->rc.level)) {
            jappend(a, drift_json(d, ok), ok);
        }
    }
    return a;
}

static json_t *view_summaries(const struct reconcile_summary *m,
                              size_t n,
                              const char *only,
                              bool *ok)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < n; i++) {
        if (only == NULL || strcmp(m[i].name, only) == 0) {
            jappend(a, summary_json(&m[i], ok), ok);
        }
    }
    return a;
}

/* GET /v1/recommendations: what to do (the drifts), what the leader's
 * pass would issue, what the guardrails hold back and why, and the
 * placement conflicts. */
static void view_recommendations(const struct call *c,
                                 const struct reconcile_output *out,
                                 json_t *body,
                                 bool *ok)
{
    json_t *actions = json_array();
    json_t *holds = json_array();
    json_t *conflicts = json_array();
    size_t i;

    jset(body, "items", view_drifts(c, out, ok), ok);
    for (i = 0; i < out->n_commands; i++) {
        const struct reconcile_command *k = &out->commands[i];
        json_t *o;
        if (!view_match(c, k->agent, k->service)) {
            continue;
        }
        o = json_object();
        jset(o, "agent", json_string(k->agent), ok);
        jset(o, "service", str_or_null(k->service), ok);
        jset(o, "action", json_string(reconcile_action_name(k->action)), ok);
        jset(o, "policy", str_or_null(k->policy), ok);
        jset(o, "revision", api__index_or_null(k->revision), ok);
        jset(o, "ttl_ms", ju64(k->ttl_ms), ok);
        jset(o, "reason", json_string(k->reason != NULL ? k->reason : ""), ok);
        jappend(actions, o, ok);
    }
    for (i = 0; i < out->n_holds; i++) {
        const struct reconcile_hold *h = &out->holds[i];
        json_t *o;
        if (!view_match(c, h->agent, h->service)) {
            continue;
        }
        o = json_object();
        jset(o, "agent", json_string(h->agent), ok);
        jset(o, "service", str_or_null(h->service), ok);
        jset(o, "action", json_string(reconcile_action_name(h->action)), ok);
        jset(o, "guardrail",
             json_string(reconcile_guardrail_name(h->guardrail)), ok);
        jset(o, "detail", json_string(h->detail != NULL ? h->detail : ""), ok);
        jappend(holds, o, ok);
    }
    for (i = 0; i < out->n_conflicts; i++) {
        const struct reconcile_conflict *k = &out->conflicts[i];
        json_t *o;
        if (!view_match(c, k->agent, k->service)) {
            continue;
        }
        o = json_object();
        jset(o, "agent", json_string(k->agent), ok);
        jset(o, "service", json_string(k->service), ok);
        jset(o, "policy", json_string(k->policy), ok);
        jset(o, "shadowed", json_string(k->shadowed), ok);
        jappend(conflicts, o, ok);
    }
    jset(body, "actions", actions, ok);
    jset(body, "holds", holds, ok);
    jset(body, "conflicts", conflicts, ok);
}

static void views_read(struct call *c)
{
    struct cluster_reconcile_view v;
    const struct reconcile_output *out;
    char errmsg[REMS_ERRMSG_SIZE];
    json_t *body;
    json_t *invalid;
    bool ok = true;
    int rv;

    rv = cluster_node_reconcile_view(c->s->node, &v, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    out = v.out;
    body = json_object();
    jset(body, "index", ju64(v.index), &ok);
    jset(body, "computed_at_ms", ju64(v.now_ms), &ok);
    jset(body, "by_leader", json_boolean(v.by_leader), &ok);
    invalid = json_object();
    jset(invalid, "count", ju64(v.n_invalid), &ok);
    jset(invalid, "first_key", str_or_null(v.invalid_key), &ok);
    jset(invalid, "first_error", str_or_null(v.invalid_error), &ok);
    jset(body, "invalid_policies", invalid, &ok);
    switch (c->kind) {
        case CALL_SUMMARY: {
            struct storage_txn *t;
            bool paused = false;
            rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                                   errmsg);
            if (rv == 0) {
                rv = statemachine_paused(t, &paused, errmsg);
                storage_txn_abort(t);
            }
            if (rv != 0) {
                json_decref(body);
                api__respond_error(c, 500, "internal", errmsg, NULL);
                return;
            }
            jset(body, "paused", json_boolean(paused), &ok);
            jset(body, "cluster", summary_json(&out->cluster, &ok), &ok);
            jset(body, "sites",
                 view_summaries(out->sites, out->n_sites,
                                c->rc.has_site ? c->rc.site : NULL, &ok),
                 &ok);
            jset(body, "agents",
                 view_summaries(out->agents, out->n_agents,
                                c->has_agent_filter ? c->agent : NULL, &ok),
                 &ok);
            jset(body, "services",
                 view_summaries(out->services, out->n_services, NULL, &ok),
                 &ok);
            break;
        }
        case CALL_DRIFT:
            jset(body, "items", view_drifts(c, out, &ok), &ok);
            break;
        default:
            REMS_ASSERT(c->kind == CALL_RECOMMENDATIONS);
            view_recommendations(c, out, body, &ok);
            break;
    }
    respond_built(c, body, ok);
}

/* ------------------------------------------------------------------ */
/* Metrics.                                                             */

struct counts {
    uint64_t incidents[STATEMACHINE_INCIDENT_STATE_NR];
    uint64_t overrides[STATEMACHINE_OVERRIDE_SCOPE_NR];
    uint64_t windows;
};

static int count_incident(void *data, const struct statemachine_incident *i)
{
    struct counts *n = data;
    if (i->state >= 0 && i->state < STATEMACHINE_INCIDENT_STATE_NR) {
        n->incidents[i->state]++;
    }
    return 0;
}

static int count_override(void *data, const struct statemachine_override *o)
{
    struct counts *n = data;
    if (o->scope > 0 && o->scope < STATEMACHINE_OVERRIDE_SCOPE_NR) {
        n->overrides[o->scope]++;
    }
    return 0;
}

static int count_window(void *data, const struct statemachine_window *w)
{
    struct counts *n = data;
    (void)w;
    n->windows++;
    return 0;
}

void api__reconcile_metrics(struct call *c, struct rems_buf *b)
{
    struct storage_txn *t;
    struct counts n;
    char errmsg[REMS_ERRMSG_SIZE];
    bool more;

    memset(&n, 0, sizeof n);
    if (storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                          errmsg) == 0) {
        /* The unresolved incidents have an index of their own; the
         * overrides and windows are few. */
        statemachine_incident_list(t, STATEMACHINE_INCIDENT_UNRESOLVED, NULL, 0,
                                   0, SIZE_MAX, count_incident, &n, &more,
                                   errmsg);
        statemachine_override_list(t, count_override, &n, errmsg);
        statemachine_window_list(t, NULL, 0, SIZE_MAX, count_window, &n, &more,
                                 errmsg);
        storage_txn_abort(t);
    }
    rems_buf_printf(
        b,
        "# HELP rems_reconciler_paused 1 while the reconciler is paused.\n"
        "# TYPE rems_reconciler_paused gauge\n"
        "rems_reconciler_paused %d\n"
        "# HELP rems_incidents Unresolved incidents, by state.\n"
        "# TYPE rems_incidents gauge\n"
        "rems_incidents{state=\"open\"} %" PRIu64 "\n"
        "rems_incidents{state=\"acknowledged\"} %" PRIu64 "\n"
        "# HELP rems_freezes Freezes (overrides), by scope.\n"
        "# TYPE rems_freezes gauge\n"
        "rems_freezes{scope=\"service\"} %" PRIu64 "\n"
        "rems_freezes{scope=\"agent\"} %" PRIu64 "\n"
        "rems_freezes{scope=\"site\"} %" PRIu64 "\n"
        "# HELP rems_maintenance_windows Maintenance windows.\n"
        "# TYPE rems_maintenance_windows gauge\n"
        "rems_maintenance_windows %" PRIu64 "\n",
        n.overrides[STATEMACHINE_OVERRIDE_PAUSE] > 0 ? 1 : 0,
        n.incidents[STATEMACHINE_INCIDENT_OPEN],
        n.incidents[STATEMACHINE_INCIDENT_ACKNOWLEDGED],
        n.overrides[STATEMACHINE_OVERRIDE_SERVICE],
        n.overrides[STATEMACHINE_OVERRIDE_AGENT],
        n.overrides[STATEMACHINE_OVERRIDE_SITE], n.windows);
    {
        struct cluster_reconcile_metrics m;
        cluster_node_reconcile_metrics(c->s->node, &m);
        rems_buf_printf(
            b,
            "# HELP rems_reconcile_passes_total Reconcile passes of this "
            "node's leader loop, by result.\n"
            "# TYPE rems_reconcile_passes_total counter\n"
            "rems_reconcile_passes_total{result=\"ok\"} %" PRIu64 "\n"
            "rems_reconcile_passes_total{result=\"failed\"} %" PRIu64 "\n"
            "# HELP rems_reconcile_last_pass_seconds Duration of the last "
            "pass, loading the tables included.\n"
            "# TYPE rems_reconcile_last_pass_seconds gauge\n"
            "rems_reconcile_last_pass_seconds %.6f\n"
            "# HELP rems_reconcile_drifts Drifts found by the last pass.\n"
            "# TYPE rems_reconcile_drifts gauge\n"
            "rems_reconcile_drifts %" PRIu64 "\n"
            "# HELP rems_reconcile_holds Actions held back by a guardrail "
            "in the last pass.\n"
            "# TYPE rems_reconcile_holds gauge\n"
            "rems_reconcile_holds %" PRIu64 "\n"
            "# HELP rems_reconcile_proposed_total What the reconciler "
            "proposed while this node led.\n"
            "# TYPE rems_reconcile_proposed_total counter\n"
            "rems_reconcile_proposed_total{kind=\"command\"} %" PRIu64 "\n"
            "rems_reconcile_proposed_total{kind=\"incident\"} %" PRIu64 "\n"
            "rems_reconcile_proposed_total{kind=\"rollout_step\"} %" PRIu64
            "\n",
            m.passes, m.pass_errors, (double)m.last_pass_us / 1e6, m.drifts,
            m.holds, m.commands_issued, m.incidents_opened, m.rollout_steps);
    }
}
