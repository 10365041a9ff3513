/* cluster/reconciler.c: the reconciler's loop and views
 * (docs/adr/0005-reconciler.md).
 *
 * Every reconcile_interval_ms the ready leader loads the replicated tables
 * into a struct reconcile_input, runs reconcile_pass() (cluster/
 * reconcile.h) at its wall clock, and turns the output into log entries:
 *
 *   commands         COMMAND_ISSUE with the record update of the pass
 *                    (requested_by "reconciler", id "rec-<issued ms, hex>-
 *                    <hash>", so the commands of the rate window are one
 *                    key range of the command table)
 *   incidents        INCIDENT_OPEN
 *   other updates    RECORD_RESET (reset or delete)
 *
 * Request ids are derived from what the pass decided on (agent, service,
 * the record's attempt count and last attempt before this pass, the policy
 * revision), so a proposal whose outcome was unknown and is decided again
 * is deduplicated by apply. A new pass starts only when every proposal of
 * the previous one has been answered, so one leader never decides twice
 * on the same tables.
 *
 * Any node answers views (/v1/summary, /v1/drift, ...) with a pass over
 * its own tables; the leader's latest pass serves when it is the ready
 * leader.
 *
 * Decoded policies and agents are cached between passes by revision and
 * by updated_index: a pass decodes only what changed. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/proto.h"
#include "cluster/node_int.h"
#include "cluster/policy.h"
#include "cluster/policy_int.h"
#include "cluster/reconcile.h"
#include "cluster/reconciler.h"
#include "cluster/rollout.h"
#include "common/assert.h"
#include "common/mpread.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"

#define VIEW_MAX_AGE_MS 1000
#define REQUESTED_BY "reconciler"
#define CMD_PREFIX "rec-"
#define CMD_PREFIX_LEN 4
#define INVALID_MAX 256

/* A stored policy, parsed (or the reason it did not parse). */
struct pslot {
    char *key;
    uint64_t revision;
    struct policy *doc; /* NULL when invalid */
    char *error;        /* the validation error; NULL when valid */
};

/* A stored agent, decoded. */
struct aslot {
    char *id;
    uint64_t updated_index;
    struct reconcile_agent a;
    bool ok; /* decoded; false: its stored record is corrupt (skipped) */
};

/* A rollout as loaded for one pass (strings in the pass's arena). */
struct rslot {
    const char *key;
    uint64_t target_revision;
    int state; /* enum statemachine_rollout_state */
    int stage; /* enum statemachine_rollout_stage */
    uint64_t batch;
    uint64_t stage_started_ms;
    bool has_previous;
    uint64_t previous_revision;
    const struct policy *previous; /* NULL: none, or invalid (see below) */
    bool previous_invalid;
    const char **reached; /* sorted */
    size_t n_reached;
};

/* The leader's memory of a gate: healthy since when (not replicated: a
 * new leader waits a whole health gate again). */
struct gate_memory {
    char *key;
    uint64_t target_revision;
    uint64_t batch;
    uint64_t healthy_since_ms;
};

struct cluster_reconciler {
    struct cluster_node *node;
    uv_timer_t timer;
    bool timer_open;
    bool closing;

    struct pslot *policies; /* by key */
    size_t n_policies;
    struct aslot *agents; /* by id */
    size_t n_agents;
    struct pslot *previous; /* previous documents of rollouts, by key */
    size_t n_previous;
    struct gate_memory *gates;
    size_t n_gates;

    /* The latest pass. */
    struct reconcile_output out;
    bool has_out;
    uint64_t out_index;
    uint64_t out_now_ms;
    uint64_t out_mono_ms;
    bool out_by_leader;
    size_t n_invalid;
    char invalid_key[INVALID_MAX];
    char invalid_error[REMS_ERRMSG_SIZE];

    /* Proposals of this node not answered yet. */
    unsigned inflight;

    struct cluster_reconcile_metrics metrics;
};

/* One proposal in flight. */
struct rproposal {
    struct cluster_write w;
    struct cluster_reconciler *r;
    int type;
    char what[160]; /* for the log */
};

/* ------------------------------------------------------------------ */
/* Loading the tables.                                                  */

struct load {
    struct cluster_reconciler *r;
    struct policy_arena *arena;
    uint64_t now_ms;
    char *errmsg;
    int rv;

    struct pslot *policies;
    size_t n_policies;
    size_t cap_policies;
    struct aslot *agents;
    size_t n_agents;
    size_t cap_agents;
    struct pslot *previous;
    size_t n_previous;
    size_t cap_previous;
    struct rslot *rollouts;
    size_t n_rollouts;
    size_t cap_rollouts;

    /* Records, in (agent, service) order, with their agent's index. */
    struct reconcile_record *records;
    size_t *record_agent;
    size_t n_records;
    size_t cap_records;
    size_t cap_record_agent;

    struct reconcile_freeze *freezes;
    size_t n_freezes;
    size_t cap_freezes;
    bool paused;
    struct reconcile_window *windows;
    size_t n_windows;
    size_t cap_windows;
    struct reconcile_incident *incidents;
    size_t n_incidents;
    size_t cap_incidents;

    /* Issued in the rate window. */
    unsigned *issued; /* per agent of @agents */
    unsigned issued_global;
    struct reconcile_site_count *sites;
    size_t n_sites;
    size_t cap_sites;
};

/* Grow *@arr (of @size-byte elements, *@cap of them) to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    void *p;
    size_t c;
    if (n < *cap) {
        return 0;
    }
    c = *cap == 0 ? 16 : *cap * 2;
    p = rems_realloc(*arr, c * size);
    if (p == NULL) {
        return REMS_ENOMEM;
    }
    *arr = p;
    *cap = c;
    return 0;
}

#define GROW(l, field, n, cap)                                                 \
    grow((void **)&(l)->field, &(l)->cap, (l)->n, sizeof *(l)->field)

static void pslot_free(struct pslot *s)
{
    rems_free(s->key);
    policy_free(s->doc);
    rems_free(s->error);
    memset(s, 0, sizeof *s);
}

static void aslot_free(struct aslot *s)
{
    rems_free(s->id);
    if (s->ok) {
        reconcile_agent_clear(&s->a);
    }
    memset(s, 0, sizeof *s);
}

static char *strndup_heap(const char *s, size_t len)
{
    char *p = rems_malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static int cmp_n(const char *a, const char *b, size_t blen)
{
    int c = strncmp(a, b, blen);
    if (c == 0 && a[blen] != '\0') {
        c = 1;
    }
    return c;
}

/* Binary search of @n elements of @size bytes at @base, sorted by the
 * string at @key_off in each, for the @len bytes at @key: its index, or
 * SIZE_MAX. */
static size_t find_sorted(const void *base,
                          size_t n,
                          size_t size,
                          size_t key_off,
                          const char *key,
                          size_t len)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *k;
        int c;
        memcpy(&k, (const char *)base + mid * size + key_off, sizeof k);
        c = cmp_n(k, key, len);
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

/* The cached slot of @key in @slots (sorted by key; a slot whose content
 * moved keeps its key), or NULL. */
static struct pslot *
old_slot(struct pslot *slots, size_t n, const char *key, size_t len)
{
    size_t i = find_sorted(slots, n, sizeof *slots,
                           offsetof(struct pslot, key), key, len);
    return i == SIZE_MAX ? NULL : &slots[i];
}

static int policy_visit(void *data, const struct statemachine_policy *p)
{
    struct load *l = data;
    struct pslot *old =
        old_slot(l->r->policies, l->r->n_policies, p->key, p->key_len);
    struct pslot *s;
    int rv = GROW(l, policies, n_policies, cap_policies);
    if (rv != 0) {
        return rv;
    }
    s = &l->policies[l->n_policies];
    memset(s, 0, sizeof *s);
    if (old != NULL && old->revision == p->revision) {
        *s = *old;
        /* Moved: the old slot keeps its key (searches still work) and
         * gives up the document. */
        old->doc = NULL;
        old->error = NULL;
        old->revision = UINT64_MAX;
        l->n_policies++;
        s->key = strndup_heap(p->key, p->key_len);
        if (s->key == NULL) {
            l->n_policies--;
            policy_free(s->doc);
            rems_free(s->error);
            return REMS_ENOMEM;
        }
        return 0;
    }
    s->key = strndup_heap(p->key, p->key_len);
    if (s->key == NULL) {
        return REMS_ENOMEM;
    }
    s->revision = p->revision;
    {
        char err[REMS_ERRMSG_SIZE];
        err[0] = '\0';
        rv = policy_parse_json(p->value, p->value_len, &s->doc, err);
        if (rv == REMS_ENOMEM) {
            rems_free(s->key);
            return rv;
        }
        if (rv != 0) {
            s->doc = NULL;
            s->error = rems_strdup(err);
            if (s->error == NULL) {
                rems_free(s->key);
                return REMS_ENOMEM;
            }
        }
    }
    l->n_policies++;
    return 0;
}

static struct aslot *old_agent(struct cluster_reconciler *r,
                               const char *id,
                               size_t len)
{
    size_t i = find_sorted(r->agents, r->n_agents, sizeof *r->agents,
                           offsetof(struct aslot, id), id, len);
    return i == SIZE_MAX ? NULL : &r->agents[i];
}

/* The previous document of a rollout, parsed (cached by key and
 * revision like the policies). */
static int previous_load(struct load *l,
                         const struct statemachine_rollout *ro,
                         struct rslot *rs)
{
    struct pslot *old = old_slot(l->r->previous, l->r->n_previous, ro->key,
                                 ro->key_len);
    struct pslot *s;
    char err[REMS_ERRMSG_SIZE];
    int rv = GROW(l, previous, n_previous, cap_previous);
    if (rv != 0) {
        return rv;
    }
    s = &l->previous[l->n_previous];
    memset(s, 0, sizeof *s);
    s->key = strndup_heap(ro->key, ro->key_len);
    if (s->key == NULL) {
        return REMS_ENOMEM;
    }
    s->revision = ro->previous_revision;
    if (old != NULL && old->revision == ro->previous_revision) {
        s->doc = old->doc;
        s->error = old->error;
        old->doc = NULL;
        old->error = NULL;
        old->revision = UINT64_MAX;
    } else {
        err[0] = '\0';
        rv = policy_parse_json(ro->previous, ro->previous_len, &s->doc, err);
        if (rv == REMS_ENOMEM) {
            rems_free(s->key);
            return rv;
        }
        if (rv != 0) {
            s->doc = NULL;
            s->error = rems_strdup(err);
            if (s->error == NULL) {
                rems_free(s->key);
                return REMS_ENOMEM;
            }
        }
    }
    l->n_previous++;
    rs->previous = s->doc;
    rs->previous_invalid = s->doc == NULL;
    return 0;
}

static int rollout_visit(void *data, const struct statemachine_rollout *ro)
{
    struct load *l = data;
    struct rslot *rs;
    size_t pos = 0;
    size_t n = 0;
    const char *id;
    size_t id_len;
    char err[REMS_ERRMSG_SIZE];
    int rv = GROW(l, rollouts, n_rollouts, cap_rollouts);
    if (rv != 0) {
        return rv;
    }
    rs = &l->rollouts[l->n_rollouts];
    memset(rs, 0, sizeof *rs);
    rs->key = policy__arena_strndup(l->arena, ro->key, ro->key_len);
    if (rs->key == NULL) {
        return REMS_ENOMEM;
    }
    rs->target_revision = ro->target_revision;
    rs->state = ro->state;
    rs->stage = ro->stage;
    rs->batch = ro->batch;
    rs->stage_started_ms = ro->stage_started_ms;
    rs->has_previous = ro->has_previous;
    rs->previous_revision = ro->previous_revision;
    if (ro->state == STATEMACHINE_ROLLOUT_DONE ||
        ro->state == STATEMACHINE_ROLLOUT_ROLLED_BACK) {
        l->n_rollouts++;
        return 0; /* Over: the policy alone says what is desired. */
    }
    if (ro->has_previous) {
        rv = previous_load(l, ro, rs);
        if (rv != 0) {
            return rv;
        }
    }
    rs->reached = policy__arena_alloc(
        l->arena, (ro->n_reached + 1) * sizeof *rs->reached);
    if (rs->reached == NULL) {
        return REMS_ENOMEM;
    }
    err[0] = '\0';
    while (n < ro->n_reached &&
           (rv = statemachine_rollout_reached_next(ro->reached, ro->reached_len,
                                                   &pos, &id, &id_len, err)) ==
               0) {
        rs->reached[n] = policy__arena_strndup(l->arena, id, id_len);
        if (rs->reached[n] == NULL) {
            return REMS_ENOMEM;
        }
        n++;
    }
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        rems_errmsgf(l->errmsg, "rollouts[%.*s]: %s", (int)ro->key_len,
                     ro->key, err);
        return REMS_ECORRUPT;
    }
    rs->n_reached = n;
    l->n_rollouts++;
    return 0;
}

static int agent_visit(void *data, const struct statemachine_agent *a)
{
    struct load *l = data;
    struct aslot *old = old_agent(l->r, a->id, a->id_len);
    struct aslot *s;
    char err[REMS_ERRMSG_SIZE];
    int rv = GROW(l, agents, n_agents, cap_agents);
    if (rv != 0) {
        return rv;
    }
    s = &l->agents[l->n_agents];
    memset(s, 0, sizeof *s);
    if (old != NULL && old->ok && old->updated_index == a->updated_index) {
        /* Move the decoded agent; the old slot keeps its id (for the
         * search) and gives up the rest. */
        s->id = strndup_heap(a->id, a->id_len);
        if (s->id == NULL) {
            return REMS_ENOMEM;
        }
        s->updated_index = a->updated_index;
        s->a = old->a;
        s->ok = true;
        old->ok = false;
        memset(&old->a, 0, sizeof old->a);
        s->a.online = a->online;
        l->n_agents++;
        return 0;
    }
    s->id = strndup_heap(a->id, a->id_len);
    if (s->id == NULL) {
        return REMS_ENOMEM;
    }
    s->updated_index = a->updated_index;
    err[0] = '\0';
    rv = reconcile_agent_load(a->id, a->id_len, a->labels, a->labels_len,
                              a->services, a->services_len, a->online, &s->a,
                              err);
    if (rv == REMS_ENOMEM) {
        rems_free(s->id);
        return rv;
    }
    if (rv != 0) {
        struct rems_log_line line;
        rems_log_begin(&line, REMS_LOG_WARN, "reconcile_agent_skipped");
        rems_log_strn(&line, "agent", a->id, a->id_len);
        rems_log_str(&line, "error", err);
        rems_log_end(&line);
        s->ok = false;
    } else {
        s->ok = true;
    }
    l->n_agents++;
    return 0;
}

/* Index of agent @id in the loaded agents, or SIZE_MAX. */
static size_t agent_index(const struct load *l, const char *id, size_t len)
{
    return find_sorted(l->agents, l->n_agents, sizeof *l->agents,
                       offsetof(struct aslot, id), id, len);
}

static int action_from_name(const char *s, size_t len)
{
    int a;
    for (a = 1; a < RECONCILE_ACTION_NR; a++) {
        const char *name = reconcile_action_name(a);
        if (strlen(name) == len && memcmp(name, s, len) == 0) {
            return a;
        }
    }
    return 0;
}

static int record_visit(void *data, const struct statemachine_remediation *m)
{
    struct load *l = data;
    size_t ai = agent_index(l, m->agent_id, m->agent_id_len);
    struct reconcile_record *rec;
    int rv;
    if (ai == SIZE_MAX) {
        return 0; /* A record of an agent no longer stored. */
    }
    rv = GROW(l, records, n_records, cap_records);
    if (rv != 0) {
        return rv;
    }
    if (l->cap_record_agent < l->cap_records) {
        /* record_agent follows records' capacity. */
        size_t *p = rems_realloc(l->record_agent,
                                 l->cap_records * sizeof *l->record_agent);
        if (p == NULL) {
            return REMS_ENOMEM;
        }
        l->record_agent = p;
        l->cap_record_agent = l->cap_records;
    }
    rec = &l->records[l->n_records];
    memset(rec, 0, sizeof *rec);
    rec->service =
        policy__arena_strndup(l->arena, m->service, m->service_len);
    if (rec->service == NULL) {
        return REMS_ENOMEM;
    }
    rec->attempts = m->attempts > UINT32_MAX ? UINT32_MAX
                                             : (unsigned)m->attempts;
    rec->last_attempt_ms = m->last_attempt_ms;
    rec->last_action = action_from_name(m->last_action, m->last_action_len);
    rec->outcome = m->outcome;
    rec->pending_digest = m->pending_digest;
    rec->deployed_digest = m->deployed_digest;
    l->record_agent[l->n_records] = ai;
    l->n_records++;
    return 0;
}

static int override_visit(void *data, const struct statemachine_override *o)
{
    struct load *l = data;
    struct reconcile_freeze *f;
    int rv;
    if (o->scope == STATEMACHINE_OVERRIDE_PAUSE) {
        l->paused = true;
        return 0;
    }
    rv = GROW(l, freezes, n_freezes, cap_freezes);
    if (rv != 0) {
        return rv;
    }
    f = &l->freezes[l->n_freezes];
    memset(f, 0, sizeof *f);
    f->scope = o->scope; /* The enums share their values. */
    f->name = policy__arena_strndup(l->arena, o->name, o->name_len);
    f->agent = o->agent_id_len == 0
                   ? NULL
                   : policy__arena_strndup(l->arena, o->agent_id,
                                           o->agent_id_len);
    f->until_ms = o->until_ms;
    if (f->name == NULL || (o->agent_id_len > 0 && f->agent == NULL)) {
        return REMS_ENOMEM;
    }
    l->n_freezes++;
    return 0;
}

static int window_visit(void *data, const struct statemachine_window *w)
{
    struct load *l = data;
    struct reconcile_window *x;
    int rv = GROW(l, windows, n_windows, cap_windows);
    if (rv != 0) {
        return rv;
    }
    x = &l->windows[l->n_windows];
    memset(x, 0, sizeof *x);
    x->name = policy__arena_strndup(l->arena, w->name, w->name_len);
    x->scope = w->scope;
    x->target = w->target_len == 0 ? NULL
                                   : policy__arena_strndup(l->arena, w->target,
                                                           w->target_len);
    x->policy = w->mode;
    x->weekly = w->weekly;
    x->start_ms = w->start_ms;
    x->end_ms = w->end_ms;
    x->days = w->days;
    x->start_minute = w->start_minute;
    x->duration_minutes = w->duration_minutes;
    if (x->name == NULL || (w->target_len > 0 && x->target == NULL)) {
        return REMS_ENOMEM;
    }
    l->n_windows++;
    return 0;
}

static int incident_visit(void *data, const struct statemachine_incident *i)
{
    struct load *l = data;
    struct reconcile_incident *x;
    int rv = GROW(l, incidents, n_incidents, cap_incidents);
    if (rv != 0) {
        return rv;
    }
    x = &l->incidents[l->n_incidents];
    x->id = i->id;
    x->agent = policy__arena_strndup(l->arena, i->agent_id, i->agent_id_len);
    x->service = policy__arena_strndup(l->arena, i->service, i->service_len);
    x->acknowledged = i->state == STATEMACHINE_INCIDENT_ACKNOWLEDGED;
    if (x->agent == NULL || x->service == NULL) {
        return REMS_ENOMEM;
    }
    l->n_incidents++;
    return 0;
}

/* The value of label @key of agent @a, or NULL. */
static const char *agent_label(const struct reconcile_agent *a,
                               const char *key)
{
    size_t i;
    for (i = 0; i < a->n_labels; i++) {
        if (strcmp(a->labels[i].key, key) == 0) {
            return a->labels[i].value;
        }
    }
    return NULL;
}

struct issued_walk {
    struct load *l;
    const char *site_label;
    uint64_t since_ms;
};

static int issued_visit(void *data, const struct statemachine_command *c)
{
    struct issued_walk *w = data;
    struct load *l = w->l;
    size_t ai;
    if (c->id_len < CMD_PREFIX_LEN ||
        memcmp(c->id, CMD_PREFIX, CMD_PREFIX_LEN) != 0) {
        return 1; /* Past the range: stop. */
    }
    if (c->issued_ms < w->since_ms) {
        return 0;
    }
    l->issued_global++;
    ai = agent_index(l, c->agent_id, c->agent_id_len);
    if (ai == SIZE_MAX) {
        return 0;
    }
    l->issued[ai]++;
    if (w->site_label[0] != '\0' && l->agents[ai].ok) {
        const char *site = agent_label(&l->agents[ai].a, w->site_label);
        size_t i;
        if (site == NULL) {
            return 0;
        }
        for (i = 0; i < l->n_sites; i++) {
            if (strcmp(l->sites[i].site, site) == 0) {
                l->sites[i].issued++;
                return 0;
            }
        }
        if (GROW(l, sites, n_sites, cap_sites) != 0) {
            return REMS_ENOMEM;
        }
        l->sites[l->n_sites].site = policy__arena_strdup(l->arena, site);
        if (l->sites[l->n_sites].site == NULL) {
            return REMS_ENOMEM;
        }
        l->sites[l->n_sites].issued = 1;
        l->n_sites++;
    }
    return 0;
}

static void load_free(struct load *l)
{
    size_t i;
    for (i = 0; i < l->n_policies; i++) {
        pslot_free(&l->policies[i]);
    }
    for (i = 0; i < l->n_agents; i++) {
        aslot_free(&l->agents[i]);
    }
    for (i = 0; i < l->n_previous; i++) {
        pslot_free(&l->previous[i]);
    }
    rems_free(l->policies);
    rems_free(l->agents);
    rems_free(l->previous);
    rems_free(l->rollouts);
    rems_free(l->records);
    rems_free(l->record_agent);
    rems_free(l->freezes);
    rems_free(l->windows);
    rems_free(l->incidents);
    rems_free(l->issued);
    rems_free(l->sites);
    memset(l, 0, sizeof *l);
}

/* The per-pass arrays only (the slots moved into the cache). */
static void load_free_pass(struct load *l)
{
    rems_free(l->rollouts);
    rems_free(l->records);
    rems_free(l->record_agent);
    rems_free(l->freezes);
    rems_free(l->windows);
    rems_free(l->incidents);
    rems_free(l->issued);
    rems_free(l->sites);
}

/* The command id prefix of commands issued at or after @ms. */
static void cmd_id_floor(uint64_t ms, char *out, size_t size)
{
    snprintf(out, size, CMD_PREFIX "%012" PRIx64, ms);
}

static int storage_rv(int rv)
{
    return rv == 1 ? 0 : rv;
}

/* Read every table the pass needs into @l (and the cache). */
static int load_tables(struct storage_txn *t,
                       const struct config *cfg,
                       struct load *l,
                       char *errmsg)
{
    struct issued_walk w;
    char floor[32];
    bool more;
    int rv;

    rv = statemachine_policy_list(t, "", 0, "", 0, SIZE_MAX, policy_visit, l,
                                  &more, errmsg);
    if (rv == 0) {
        rv = statemachine_rollout_list(t, "", 0, SIZE_MAX, rollout_visit, l,
                                       &more, errmsg);
    }
    if (rv == 0) {
        rv = statemachine_agent_list(t, "", 0, SIZE_MAX, agent_visit, l, &more,
                                     errmsg);
    }
    if (rv == 0) {
        rv = statemachine_remediation_list(t, NULL, 0, "", 0, "", 0, SIZE_MAX,
                                           record_visit, l, &more, errmsg);
    }
    if (rv == 0) {
        rv = statemachine_override_list(t, override_visit, l, errmsg);
    }
    if (rv == 0) {
        rv = statemachine_window_list(t, "", 0, SIZE_MAX, window_visit, l,
                                      &more, errmsg);
    }
    if (rv == 0) {
        rv = statemachine_incident_list(t, STATEMACHINE_INCIDENT_UNRESOLVED,
                                        NULL, 0, 0, SIZE_MAX, incident_visit,
                                        l, &more, errmsg);
    }
    if (rv == 0 && l->n_agents > 0) {
        l->issued = rems_calloc(l->n_agents, sizeof *l->issued);
        if (l->issued == NULL) {
            rv = REMS_ENOMEM;
        }
    }
    if (rv == 0) {
        uint64_t since = l->now_ms > cfg->reconcile_rate_window_ms
                             ? l->now_ms - cfg->reconcile_rate_window_ms
                             : 0;
        w.l = l;
        w.site_label = cfg->site_label;
        w.since_ms = since;
        cmd_id_floor(since, floor, sizeof floor);
        rv = storage_rv(statemachine_command_list(
            t, NULL, 0, -1, floor, strlen(floor), SIZE_MAX, issued_visit, &w,
            &more, errmsg));
    }
    if (rv == REMS_ENOMEM) {
        rems_errmsgf(errmsg, "out of memory loading the reconciler's tables");
    }
    return rv;
}

/* Replace the cache with what @l loaded. */
static void cache_swap(struct cluster_reconciler *r, struct load *l)
{
    size_t i;
    for (i = 0; i < r->n_policies; i++) {
        pslot_free(&r->policies[i]);
    }
    for (i = 0; i < r->n_agents; i++) {
        aslot_free(&r->agents[i]);
    }
    for (i = 0; i < r->n_previous; i++) {
        pslot_free(&r->previous[i]);
    }
    rems_free(r->policies);
    rems_free(r->agents);
    rems_free(r->previous);
    r->previous = l->previous;
    r->n_previous = l->n_previous;
    l->previous = NULL;
    l->n_previous = 0;
    r->policies = l->policies;
    r->n_policies = l->n_policies;
    r->agents = l->agents;
    r->n_agents = l->n_agents;
    l->policies = NULL;
    l->n_policies = 0;
    l->agents = NULL;
    l->n_agents = 0;
}

/* ------------------------------------------------------------------ */
/* A pass.                                                              */

static void act(struct cluster_reconciler *r,
                const struct reconcile_input *in,
                const struct reconcile_output *out,
                uint64_t now_ms);

static void config_fill(const struct config *cfg, struct reconcile_config *c)
{
    reconcile_config_init(c);
    c->site_label = cfg->site_label;
    c->rate_window_ms = cfg->reconcile_rate_window_ms;
    c->max_per_agent = cfg->reconcile_max_per_agent;
    c->max_per_site = cfg->reconcile_max_per_site;
    c->max_global = cfg->reconcile_max_global;
    c->max_in_flight = cfg->reconcile_max_in_flight;
    c->command_ttl_ms = cfg->reconcile_command_ttl_ms;
    c->grace_ms = cfg->reconcile_grace_ms;
}

static const struct rslot *find_rollout(const struct load *l, const char *key)
{
    size_t i = find_sorted(l->rollouts, l->n_rollouts, sizeof *l->rollouts,
                           offsetof(struct rslot, key), key, strlen(key));
    return i == SIZE_MAX ? NULL : &l->rollouts[i];
}

/* A rollout in progress decides which agents get the policy's document:
 * the reached ones (none once aborted); the others keep the previous. */
static void rollout_apply(const struct load *l,
                          const struct pslot *s,
                          struct reconcile_policy *p)
{
    const struct rslot *rs = find_rollout(l, s->key);
    if (rs == NULL || rs->target_revision != s->revision ||
        (rs->state != STATEMACHINE_ROLLOUT_RUNNING &&
         rs->state != STATEMACHINE_ROLLOUT_PAUSED &&
         rs->state != STATEMACHINE_ROLLOUT_ABORTED)) {
        return;
    }
    if (rs->has_previous && rs->previous_invalid) {
        /* The previous document does not validate (stored before
         * validation existed): nothing can be kept, every agent gets the
         * new one. */
        return;
    }
    p->rollout_active = true;
    p->previous = rs->previous;
    p->previous_revision = rs->has_previous ? rs->previous_revision : 0;
    if (rs->state != STATEMACHINE_ROLLOUT_ABORTED) {
        p->rollout_agents = rs->reached;
        p->n_rollout_agents = rs->n_reached;
    }
}

static void step_rollouts(struct cluster_reconciler *r,
                          const struct load *l,
                          const struct reconcile_input *in,
                          const struct reconcile_output *out,
                          uint64_t now_ms);

/* Run a pass over the tables of @store (applied up to @applied) at
 * @now_ms with @cfg's limits into r->out; the ready leader (@by_leader)
 * acts on it. */
static int run_pass(struct cluster_reconciler *r,
                    struct storage *store,
                    const struct config *cfg,
                    uint64_t applied,
                    uint64_t now_ms,
                    bool by_leader,
                    char *errmsg)
{
    struct policy_arena arena;
    struct reconcile_policy *policies = NULL;
    struct reconcile_agent *agents = NULL;
    struct reconcile_input in;
    struct reconcile_output out;
    struct storage_txn *t;
    struct load l;
    uint64_t start = rems_mono_ms();
    size_t np = 0;
    size_t na = 0;
    size_t i;
    size_t ri;
    int rv;

    memset(&l, 0, sizeof l);
    memset(&out, 0, sizeof out);
    policy__arena_init(&arena, 0);
    l.r = r;
    l.arena = &arena;
    l.now_ms = now_ms;
    l.errmsg = errmsg;

    rv = storage_txn_begin(store, false, &t, errmsg);
    if (rv != 0) {
        goto out;
    }
    rv = load_tables(t, cfg, &l, errmsg);
    storage_txn_abort(t);
    if (rv != 0) {
        load_free(&l);
        goto out;
    }

    /* The input. */
    policies = rems_calloc(l.n_policies + 1, sizeof *policies);
    agents = rems_calloc(l.n_agents + 1, sizeof *agents);
    if (policies == NULL || agents == NULL) {
        rv = REMS_ENOMEM;
        rems_errmsgf(errmsg, "out of memory building the reconciler's input");
        load_free(&l);
        goto out;
    }
    r->n_invalid = 0;
    r->invalid_key[0] = '\0';
    r->invalid_error[0] = '\0';
    for (i = 0; i < l.n_policies; i++) {
        const struct pslot *s = &l.policies[i];
        if (s->doc == NULL) {
            if (r->n_invalid == 0) {
                snprintf(r->invalid_key, sizeof r->invalid_key, "%s", s->key);
                snprintf(r->invalid_error, sizeof r->invalid_error, "%s",
                         s->error != NULL ? s->error : "");
            }
            r->n_invalid++;
            continue;
        }
        policies[np].key = s->key;
        policies[np].revision = s->revision;
        policies[np].policy = s->doc;
        rollout_apply(&l, s, &policies[np]);
        np++;
    }
    ri = 0;
    for (i = 0; i < l.n_agents; i++) {
        const struct aslot *s = &l.agents[i];
        size_t first;
        while (ri < l.n_records && l.record_agent[ri] < i) {
            ri++;
        }
        first = ri;
        while (ri < l.n_records && l.record_agent[ri] == i) {
            ri++;
        }
        if (!s->ok) {
            continue;
        }
        agents[na] = s->a;
        agents[na].records = ri > first ? &l.records[first] : NULL;
        agents[na].n_records = ri - first;
        agents[na].issued_in_window = l.issued != NULL ? l.issued[i] : 0;
        na++;
    }
    memset(&in, 0, sizeof in);
    in.policies = policies;
    in.n_policies = np;
    in.agents = agents;
    in.n_agents = na;
    in.guard.paused = l.paused;
    in.guard.freezes = l.freezes;
    in.guard.n_freezes = l.n_freezes;
    in.guard.windows = l.windows;
    in.guard.n_windows = l.n_windows;
    in.guard.incidents = l.incidents;
    in.guard.n_incidents = l.n_incidents;
    in.guard.issued_global = l.issued_global;
    in.guard.sites = l.sites;
    in.guard.n_sites = l.n_sites;
    config_fill(cfg, &in.config);

    rv = reconcile_pass(&in, now_ms, &out, errmsg);
    if (rv != 0) {
        load_free(&l);
        goto out;
    }
    if (by_leader) {
        act(r, &in, &out, now_ms);
        step_rollouts(r, &l, &in, &out, now_ms);
    }
    /* The output owns copies of what it needs: the cache may change. */
    cache_swap(r, &l);
    load_free_pass(&l);
    reconcile_output_close(&r->out);
    r->out = out;
    r->has_out = true;
    r->out_index = applied;
    r->out_now_ms = now_ms;
    r->out_mono_ms = rems_mono_ms();
    r->out_by_leader = by_leader;
    r->metrics.last_pass_us = (rems_mono_ms() - start) * 1000;
    r->metrics.drifts = out.n_drifts;
    r->metrics.holds = out.n_holds;

out:
    rems_free(policies);
    rems_free(agents);
    policy__arena_close(&arena);
    return rv;
}

/* ------------------------------------------------------------------ */
/* Acting on a pass (the ready leader only).                            */

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    /* With the terminator, so that ("ab","c") and ("a","bc") differ. */
    return fnv(h, s, strlen(s) + 1);
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    return fnv(h, &v, sizeof v);
}

#define FNV_BASIS 14695981039346656037ull

static void written_cb(struct cluster_write *w,
                       int status,
                       const struct statemachine_result *res)
{
    struct rproposal *p = w->data;
    struct cluster_reconciler *r = p->r;
    int code = status != 0 ? status : res->code;
    REMS_ASSERT(r->inflight > 0);
    r->inflight--;
    if (code != 0 && !(status == 0 && res->duplicate)) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_WARN, "reconcile_proposal_failed");
        rems_log_str(&l, "entry", statemachine_entry_type_name(p->type));
        rems_log_str(&l, "what", p->what);
        rems_log_str(&l, "error", rems_errname(code));
        rems_log_end(&l);
    }
    rems_free(p);
    if (r->closing) {
        cluster__stop_continue(r->node);
    }
}

static int propose(struct cluster_reconciler *r,
                   struct statemachine_entry *e,
                   const char *what)
{
    struct rproposal *p = rems_malloc(sizeof *p);
    char errmsg[REMS_ERRMSG_SIZE];
    char trace[REMS_ID_SIZE];
    int rv;
    if (p == NULL) {
        return REMS_ENOMEM;
    }
    memset(p, 0, sizeof *p);
    p->r = r;
    p->type = e->type;
    snprintf(p->what, sizeof p->what, "%s", what);
    rems_id_random(trace);
    e->trace_id = trace;
    e->trace_id_len = strlen(trace);
    e->requested_by = REQUESTED_BY;
    e->requested_by_len = strlen(REQUESTED_BY);
    p->w.data = p;
    errmsg[0] = '\0';
    rv = cluster_node_propose(r->node, &p->w, e, written_cb, errmsg);
    if (rv != 0) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_WARN, "reconcile_proposal_failed");
        rems_log_str(&l, "entry", statemachine_entry_type_name(e->type));
        rems_log_str(&l, "what", what);
        rems_log_str(&l, "error", errmsg[0] != '\0' ? errmsg
                                                    : rems_errname(rv));
        rems_log_end(&l);
        rems_free(p);
        return rv;
    }
    r->inflight++;
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "reconcile_proposed");
        rems_log_str(&l, "entry", statemachine_entry_type_name(e->type));
        rems_log_str(&l, "what", what);
        rems_log_strn(&l, "reason", e->reason, e->reason_len);
        rems_log_str(&l, "trace_id", trace);
        rems_log_end(&l);
    }
    return 0;
}

/* The record of (@agent, @service) before this pass, or NULL. */
static const struct reconcile_update *
find_update(const struct reconcile_output *o,
            const char *agent,
            const char *service)
{
    size_t lo = 0;
    size_t hi = o->n_updates;
    /* Sorted by agent, then service. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(o->updates[mid].agent, agent);
        if (c == 0) {
            c = strcmp(o->updates[mid].record.service, service);
        }
        if (c == 0) {
            return &o->updates[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* The record of (@agent, @service) in @in before the pass, or NULL. */
static const struct reconcile_record *
input_record(const struct reconcile_input *in,
             const char *agent,
             const char *service)
{
    size_t lo = 0;
    size_t hi = in->n_agents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(in->agents[mid].id, agent);
        if (c == 0) {
            const struct reconcile_agent *a = &in->agents[mid];
            size_t i;
            for (i = 0; i < a->n_records; i++) {
                if (strcmp(a->records[i].service, service) == 0) {
                    return &a->records[i];
                }
            }
            return NULL;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int issue_command(struct cluster_reconciler *r,
                         const struct reconcile_input *in,
                         const struct reconcile_command *c,
                         const struct reconcile_update *u,
                         uint64_t now_ms)
{
    const struct reconcile_record *prev =
        input_record(in, c->agent, c->service);
    struct statemachine_entry e;
    char request_id[40];
    char command_id[48];
    char what[160];
    char *args;
    size_t args_len;
    uint64_t h;
    int rv;

    /* The decision: (agent, service), the attempt it is, the policy
     * revision, the action, and the previous attempt's time, which tells
     * two episodes with the same attempt number apart. A pass over the
     * same tables decides the same, so a retry is deduplicated. */
    h = fnv_str(FNV_BASIS, c->agent);
    h = fnv_str(h, c->service);
    h = fnv_u64(h, u->record.attempts);
    h = fnv_u64(h, c->revision);
    h = fnv_str(h, c->policy);
    h = fnv_u64(h, (uint64_t)c->action);
    h = fnv_u64(h, prev != NULL ? prev->last_attempt_ms : 0);
    snprintf(request_id, sizeof request_id, "rec-%016" PRIx64, h);
    snprintf(command_id, sizeof command_id, CMD_PREFIX "%012" PRIx64 "-%08" PRIx64,
             now_ms, h & 0xffffffffu);
    if (c->manifest != NULL) {
        args_len = strlen("{\"manifest\":}") + c->manifest_len;
        args = rems_malloc(args_len + 1);
        if (args == NULL) {
            return REMS_ENOMEM;
        }
        snprintf(args, args_len + 1, "{\"manifest\":%.*s}",
                 (int)c->manifest_len, c->manifest);
    } else {
        args = rems_strdup("{}");
        if (args == NULL) {
            return REMS_ENOMEM;
        }
        args_len = 2;
    }
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_COMMAND_ISSUE;
    e.time_ms = now_ms;
    e.request_id = request_id;
    e.request_id_len = strlen(request_id);
    e.reason = c->reason;
    e.reason_len = strlen(c->reason);
    e.agent_id = c->agent;
    e.agent_id_len = strlen(c->agent);
    e.command_id = command_id;
    e.command_id_len = strlen(command_id);
    e.action = proto_action_name(c->command);
    e.action_len = strlen(e.action);
    e.service = c->service;
    e.service_len = strlen(c->service);
    e.value = args;
    e.value_len = args_len;
    e.ttl_ms = c->ttl_ms;
    e.term = r->node->term;
    e.has_record = true;
    e.record_action = reconcile_action_name(u->record.last_action);
    e.record_action_len = strlen(e.record_action);
    e.record_last_attempt_ms = now_ms;
    e.record_digest = u->record.pending_digest;
    e.attempts = u->record.attempts;
    snprintf(what, sizeof what, "%s %s/%s (%s, attempt %u)",
             reconcile_action_name(c->action), c->agent, c->service,
             command_id, u->record.attempts);
    rv = propose(r, &e, what);
    rems_free(args);
    if (rv == 0) {
        r->metrics.commands_issued++;
    }
    return rv;
}

static int open_incident(struct cluster_reconciler *r,
                         const struct reconcile_input *in,
                         const struct reconcile_incident_open *o,
                         uint64_t now_ms)
{
    const struct reconcile_record *prev =
        input_record(in, o->agent, o->service);
    struct statemachine_entry e;
    char request_id[40];
    char what[160];
    const char *kind = reconcile_drift_kind_name(o->kind);
    uint64_t h;

    h = fnv_str(FNV_BASIS, "incident");
    h = fnv_str(h, o->agent);
    h = fnv_str(h, o->service);
    h = fnv_u64(h, o->attempts);
    h = fnv_u64(h, prev != NULL ? prev->last_attempt_ms : 0);
    snprintf(request_id, sizeof request_id, "rec-%016" PRIx64, h);
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_INCIDENT_OPEN;
    e.time_ms = now_ms;
    e.request_id = request_id;
    e.request_id_len = strlen(request_id);
    e.reason = "escalated after the remediation limit";
    e.reason_len = strlen(e.reason);
    e.agent_id = o->agent;
    e.agent_id_len = strlen(o->agent);
    e.service = o->service;
    e.service_len = strlen(o->service);
    e.kind = kind;
    e.kind_len = strlen(kind);
    e.policy = o->policy != NULL ? o->policy : "";
    e.policy_len = strlen(e.policy);
    e.detail = o->detail != NULL ? o->detail : "";
    e.detail_len = strlen(e.detail);
    if (e.detail_len > STATEMACHINE_DETAIL_MAX) {
        e.detail_len = STATEMACHINE_DETAIL_MAX;
    }
    e.attempts = o->attempts;
    snprintf(what, sizeof what, "incident %s/%s (%s, %u attempts)", o->agent,
             o->service, kind, o->attempts);
    if (propose(r, &e, what) != 0) {
        return -1;
    }
    r->metrics.incidents_opened++;
    return 0;
}

static int reset_record(struct cluster_reconciler *r,
                        const struct reconcile_update *u,
                        uint64_t now_ms)
{
    struct statemachine_entry e;
    char request_id[40];
    char what[160];
    const char *op = u->kind == RECONCILE_RECORD_DELETE ? "delete" : "reset";
    uint64_t h;

    h = fnv_str(FNV_BASIS, op);
    h = fnv_str(h, u->agent);
    h = fnv_str(h, u->record.service);
    h = fnv_u64(h, u->record.last_attempt_ms);
    snprintf(request_id, sizeof request_id, "rec-%016" PRIx64, h);
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_RECORD_RESET;
    e.time_ms = now_ms;
    e.request_id = request_id;
    e.request_id_len = strlen(request_id);
    e.agent_id = u->agent;
    e.agent_id_len = strlen(u->agent);
    e.service = u->record.service;
    e.service_len = strlen(u->record.service);
    e.op = op;
    e.op_len = strlen(op);
    snprintf(what, sizeof what, "record %s %s/%s", op, u->agent,
             u->record.service);
    return propose(r, &e, what);
}

/* Turn the leader's pass into proposals. Stops at the first failure to
 * propose (leadership lost, shutting down): the next pass decides again. */
static void act(struct cluster_reconciler *r,
                const struct reconcile_input *in,
                const struct reconcile_output *out,
                uint64_t now_ms)
{
    size_t i;
    /* Updates that travel with a command are marked here. */
    bool *carried = NULL;
    if (out->n_updates > 0) {
        carried = rems_calloc(out->n_updates, sizeof *carried);
        if (carried == NULL) {
            return;
        }
    }
    for (i = 0; i < out->n_commands; i++) {
        const struct reconcile_command *c = &out->commands[i];
        const struct reconcile_update *u =
            find_update(out, c->agent, c->service);
        if (u == NULL || u->kind != RECONCILE_RECORD_PUT ||
            u->record.outcome != RECONCILE_OUTCOME_PENDING) {
            /* The pass always gives the record with its command. */
            REMS_ASSERT(0 && "a command without its record update");
            continue;
        }
        carried[u - out->updates] = true;
        if (issue_command(r, in, c, u, now_ms) != 0) {
            goto done;
        }
    }
    for (i = 0; i < out->n_incidents; i++) {
        if (open_incident(r, in, &out->incidents[i], now_ms) != 0) {
            goto done;
        }
    }
    for (i = 0; i < out->n_updates; i++) {
        if (carried[i]) {
            continue;
        }
        if (reset_record(r, &out->updates[i], now_ms) != 0) {
            goto done;
        }
    }
done:
    rems_free(carried);
}

/* ------------------------------------------------------------------ */
/* The loop, views, lifecycle.                                          */

static void log_pass_error(const char *errmsg, int rv)
{
    struct rems_log_line l;
    rems_log_begin(&l, REMS_LOG_ERROR, "reconcile_pass_failed");
    rems_log_str(&l, "error", rems_errname(rv));
    rems_log_str(&l, "detail", errmsg);
    rems_log_end(&l);
}

static void timer_cb(uv_timer_t *t)
{
    struct cluster_reconciler *r = t->data;
    struct cluster_node *n = r->node;
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    if (r->closing || n->stopping || !n->leader_ready ||
        n->role != CLUSTER_ROLE_LEADER || r->inflight > 0) {
        return;
    }
    errmsg[0] = '\0';
    rv = run_pass(r, n->storage, &n->cfg, n->state_applied, rems_wall_ms(),
                  true, errmsg);
    if (rv != 0) {
        r->metrics.pass_errors++;
        log_pass_error(errmsg, rv);
        return;
    }
    r->metrics.passes++;
}

int cluster__reconciler_init(struct cluster_node *n, char *errmsg)
{
    struct cluster_reconciler *r = rems_malloc(sizeof *r);
    if (r == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    memset(r, 0, sizeof *r);
    r->node = n;
    n->reconciler = r;
    return 0;
}

void cluster__reconciler_start(struct cluster_node *n)
{
    struct cluster_reconciler *r = n->reconciler;
    uv_timer_init(n->loop, &r->timer);
    r->timer.data = r;
    r->timer_open = true;
    uv_timer_start(&r->timer, timer_cb, n->cfg.reconcile_interval_ms,
                   n->cfg.reconcile_interval_ms);
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct cluster_reconciler *r = h->data;
    r->timer_open = false;
    cluster__stop_continue(r->node);
}

void cluster__reconciler_close(struct cluster_node *n)
{
    struct cluster_reconciler *r = n->reconciler;
    if (r == NULL || r->closing) {
        return;
    }
    r->closing = true;
    if (r->timer_open) {
        uv_close((uv_handle_t *)&r->timer, timer_closed_cb);
    }
}

bool cluster__reconciler_idle(struct cluster_node *n)
{
    struct cluster_reconciler *r = n->reconciler;
    return r == NULL || (!r->timer_open && r->inflight == 0);
}

static void reconciler_free(struct cluster_reconciler *r)
{
    size_t i;
    for (i = 0; i < r->n_policies; i++) {
        pslot_free(&r->policies[i]);
    }
    for (i = 0; i < r->n_agents; i++) {
        aslot_free(&r->agents[i]);
    }
    for (i = 0; i < r->n_previous; i++) {
        pslot_free(&r->previous[i]);
    }
    for (i = 0; i < r->n_gates; i++) {
        rems_free(r->gates[i].key);
    }
    rems_free(r->gates);
    rems_free(r->policies);
    rems_free(r->agents);
    rems_free(r->previous);
    reconcile_output_close(&r->out);
    rems_free(r);
}

void cluster__reconciler_free(struct cluster_node *n)
{
    if (n->reconciler != NULL) {
        reconciler_free(n->reconciler);
        n->reconciler = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* Passes over a store without a node (cluster/reconciler.h).          */

int reconciler_open(struct cluster_reconciler **out, char *errmsg)
{
    struct cluster_reconciler *r = rems_malloc(sizeof *r);
    if (r == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    memset(r, 0, sizeof *r);
    *out = r;
    return 0;
}

void reconciler_close(struct cluster_reconciler *r)
{
    if (r != NULL) {
        REMS_ASSERT(r->node == NULL);
        reconciler_free(r);
    }
}

int reconciler_pass(struct cluster_reconciler *r,
                    struct storage *store,
                    const struct config *cfg,
                    uint64_t now_ms,
                    const struct reconcile_output **out,
                    char *errmsg)
{
    int rv;
    PRE(r != NULL && r->node == NULL && store != NULL && cfg != NULL &&
        out != NULL);
    rv = run_pass(r, store, cfg, 0, now_ms, false, errmsg);
    if (rv == 0) {
        *out = &r->out;
    }
    return rv;
}

int cluster_node_reconcile_view(struct cluster_node *n,
                                struct cluster_reconcile_view *out,
                                char *errmsg)
{
    struct cluster_reconciler *r = n->reconciler;
    bool leader = n->leader_ready && n->role == CLUSTER_ROLE_LEADER;
    bool fresh;
    int rv;

    PRE(r != NULL && out != NULL);
    /* The leader's own pass serves while it leads; any other pass while
     * it is young and nothing was applied since. */
    fresh = r->has_out &&
            ((leader && r->out_by_leader) ||
             (r->out_index == n->state_applied &&
              rems_mono_ms() - r->out_mono_ms < VIEW_MAX_AGE_MS));
    if (!fresh) {
        rv = run_pass(r, n->storage, &n->cfg, n->state_applied,
                      rems_wall_ms(), false, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    memset(out, 0, sizeof *out);
    out->out = &r->out;
    out->index = r->out_index;
    out->now_ms = r->out_now_ms;
    out->by_leader = r->out_by_leader;
    out->n_invalid = r->n_invalid;
    out->invalid_key = r->invalid_key;
    out->invalid_error = r->invalid_error;
    return 0;
}

void cluster_node_reconcile_metrics(const struct cluster_node *n,
                                    struct cluster_reconcile_metrics *out)
{
    if (n->reconciler == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = n->reconciler->metrics;
}

/* ------------------------------------------------------------------ */
/* Rollouts (the ready leader only).                                    */

static struct gate_memory *gate_find(struct cluster_reconciler *r,
                                     const char *key)
{
    size_t i;
    for (i = 0; i < r->n_gates; i++) {
        if (strcmp(r->gates[i].key, key) == 0) {
            return &r->gates[i];
        }
    }
    return NULL;
}

/* Remember (or forget, @since 0) when the gate of @key became healthy. */
static void gate_set(struct cluster_reconciler *r,
                     const char *key,
                     uint64_t target_revision,
                     uint64_t batch,
                     uint64_t since)
{
    struct gate_memory *g = gate_find(r, key);
    if (g == NULL) {
        struct gate_memory *p;
        if (since == 0) {
            return;
        }
        p = rems_realloc(r->gates, (r->n_gates + 1) * sizeof *r->gates);
        if (p == NULL) {
            return; /* Then the gate waits longer: safe. */
        }
        r->gates = p;
        g = &r->gates[r->n_gates];
        g->key = rems_strdup(key);
        if (g->key == NULL) {
            return;
        }
        r->n_gates++;
    }
    g->target_revision = target_revision;
    g->batch = batch;
    g->healthy_since_ms = since;
}

static uint64_t gate_since(struct cluster_reconciler *r,
                           const char *key,
                           uint64_t target_revision,
                           uint64_t batch)
{
    struct gate_memory *g = gate_find(r, key);
    if (g == NULL || g->target_revision != target_revision ||
        g->batch != batch) {
        return 0;
    }
    return g->healthy_since_ms;
}

static int propose_rollout(struct cluster_reconciler *r,
                           const struct rslot *rs,
                           const struct rollout_output *o,
                           uint64_t now_ms)
{
    struct statemachine_entry e;
    struct rems_buf reached;
    char request_id[40];
    char what[160];
    const char *op;
    uint64_t h;
    size_t i;
    int rv;

    switch (o->decision) {
        case ROLLOUT_ADVANCE:
            op = "advance";
            break;
        case ROLLOUT_DONE:
            op = "done";
            break;
        case ROLLOUT_ROLLBACK:
            op = "rollback";
            break;
        case ROLLOUT_HALT:
            op = "pause";
            break;
        default:
            return 0;
    }
    rems_buf_init(&reached);
    memset(&e, 0, sizeof e);
    if (o->decision == ROLLOUT_ADVANCE) {
        rems_buf_printf(&reached, "[");
        for (i = 0; i < o->n_reached; i++) {
            /* Agent ids need no escaping ([A-Za-z0-9_.:-]). */
            rems_buf_printf(&reached, "%s\"%s\"", i == 0 ? "" : ",",
                            o->reached[i]);
        }
        rems_buf_printf(&reached, "]");
        if (reached.failed) {
            rems_buf_close(&reached);
            return REMS_ENOMEM;
        }
        e.value = reached.data;
        e.value_len = reached.len;
        e.stage = o->stage == ROLLOUT_STAGE_PAUSE ? "pause" : "gate";
        e.stage_len = strlen(e.stage);
        e.has_batch = true;
        e.batch = o->batch;
    }
    h = fnv_str(FNV_BASIS, "rollout");
    h = fnv_str(h, rs->key);
    h = fnv_u64(h, rs->target_revision);
    h = fnv_str(h, op);
    h = fnv_u64(h, o->batch);
    h = fnv_u64(h, (uint64_t)o->stage);
    h = fnv_u64(h, rs->stage_started_ms);
    snprintf(request_id, sizeof request_id, "rec-%016" PRIx64, h);
    e.type = STATEMACHINE_ENTRY_ROLLOUT_UPDATE;
    e.time_ms = now_ms;
    e.request_id = request_id;
    e.request_id_len = strlen(request_id);
    e.reason = o->message;
    e.reason_len = strlen(o->message);
    e.key = rs->key;
    e.key_len = strlen(rs->key);
    e.rollout_revision = rs->target_revision;
    e.op = op;
    e.op_len = strlen(op);
    snprintf(what, sizeof what, "rollout %s@%" PRIu64 " %s", rs->key,
             rs->target_revision, op);
    rv = propose(r, &e, what);
    rems_buf_close(&reached);
    if (rv == 0) {
        struct rems_log_line line;
        r->metrics.rollout_steps++;
        rems_log_begin(&line, o->decision == ROLLOUT_ADVANCE ||
                                      o->decision == ROLLOUT_DONE
                                  ? REMS_LOG_INFO
                                  : REMS_LOG_WARN,
                       "rollout_step");
        rems_log_str(&line, "policy", rs->key);
        rems_log_u64(&line, "revision", rs->target_revision);
        rems_log_str(&line, "decision", rollout_decision_name(o->decision));
        if (o->decision == ROLLOUT_ADVANCE) {
            rems_log_str(&line, "stage",
                         o->stage == ROLLOUT_STAGE_PAUSE ? "pause" : "gate");
            rems_log_u64(&line, "batch", o->batch);
            rems_log_u64(&line, "reached", o->n_reached);
        }
        rems_log_str(&line, "message", o->message);
        rems_log_end(&line);
    }
    return rv;
}

static void step_rollouts(struct cluster_reconciler *r,
                          const struct load *l,
                          const struct reconcile_input *in,
                          const struct reconcile_output *out,
                          uint64_t now_ms)
{
    struct rollout_agent *agents = NULL;
    size_t i;

    if (l->n_rollouts == 0) {
        return;
    }
    agents = rems_calloc(in->n_agents + 1, sizeof *agents);
    if (agents == NULL) {
        return;
    }
    for (i = 0; i < in->n_agents; i++) {
        agents[i].id = in->agents[i].id;
        agents[i].online = in->agents[i].online;
        agents[i].labels = in->agents[i].labels;
        agents[i].n_labels = in->agents[i].n_labels;
    }
    for (i = 0; i < l->n_rollouts; i++) {
        const struct rslot *rs = &l->rollouts[i];
        const struct reconcile_policy *p = NULL;
        struct rollout_input ri;
        struct rollout_output ro;
        char errmsg[REMS_ERRMSG_SIZE];
        size_t k;

        if (rs->state != STATEMACHINE_ROLLOUT_RUNNING) {
            continue;
        }
        for (k = 0; k < in->n_policies; k++) {
            if (strcmp(in->policies[k].key, rs->key) == 0) {
                p = &in->policies[k];
                break;
            }
        }
        if (p == NULL || p->revision != rs->target_revision) {
            continue; /* Invalid, or a newer revision is being applied. */
        }
        memset(&ri, 0, sizeof ri);
        ri.key = rs->key;
        ri.target_revision = rs->target_revision;
        ri.target = p->policy;
        ri.stage = rs->stage;
        ri.batch = rs->batch;
        ri.stage_started_ms = rs->stage_started_ms;
        ri.reached = rs->reached;
        ri.n_reached = rs->n_reached;
        ri.healthy_since_ms =
            gate_since(r, rs->key, rs->target_revision, rs->batch);
        ri.agents = agents;
        ri.n_agents = in->n_agents;
        ri.pass = out;
        if (rollout_step(&ri, now_ms, &ro, errmsg) != 0) {
            log_pass_error(errmsg, REMS_ENOMEM);
            continue;
        }
        if (rs->stage == ROLLOUT_STAGE_GATE) {
            gate_set(r, rs->key, rs->target_revision, rs->batch,
                     ro.gate_healthy ? (ri.healthy_since_ms != 0
                                            ? ri.healthy_since_ms
                                            : now_ms)
                                     : 0);
        }
        if (ro.decision != ROLLOUT_WAIT) {
            if (propose_rollout(r, rs, &ro, now_ms) != 0) {
                rollout_output_close(&ro);
                break;
            }
        }
        rollout_output_close(&ro);
    }
    rems_free(agents);
}
