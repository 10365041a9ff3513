/* Agents, leases and commands in the replicated state: deterministic apply
 * and queries.
 *
 * Records (MessagePack maps, so fields can be added later):
 *   agents[id]    {labels, services, offline_reason (bin), registered_index,
 *                  updated_index, node_id, online}
 *   leases[id]    {ttl_ms, granted_index, granted_ms, node_id}
 *   commands[id]  {agent_id, action, service, args, result, requested_by,
 *                  reason, trace_id (str/bin), state, term, ttl_ms,
 *                  issued_index, issued_ms, deadline_ms, resolved_index}
 *   pending[id]   be64 issued_index, for pending commands only
 *
 * A command moves from pending to exactly one final state (acked, nacked,
 * expired, cancelled); a second resolution is refused with REMS_ECONFLICT
 * and the state it already has, identically on every node. */
#include <msgpack.h>
#include <string.h>

#include "common/assert.h"
#include "common/mpread.h"
#include "statemachine/agents_int.h"
#include "statemachine/pack_int.h"
#include "statemachine/reconcile_int.h"

/* ------------------------------------------------------------------ */
/* Record codecs.                                                       */

static void pack_kv_bin(msgpack_packer *pk,
                        const char *k,
                        const char *v,
                        size_t len)
{
    statemachine__pack_str(pk, k, strlen(k));
    msgpack_pack_bin(pk, v != NULL ? len : 0);
    msgpack_pack_bin_body(pk, v != NULL ? v : "", v != NULL ? len : 0);
}

static int pack_agent(struct storage_txn *t,
                      const struct statemachine_agent *a,
                      char *errmsg)
{
    struct rems_buf b;
    msgpack_packer pk;
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 7);
    pack_kv_bin(&pk, "labels", a->labels, a->labels_len);
    pack_kv_bin(&pk, "services", a->services, a->services_len);
    pack_kv_bin(&pk, "offline_reason", a->offline_reason,
                a->offline_reason_len);
    statemachine__pack_kv_u64(&pk, "registered_index", a->registered_index);
    statemachine__pack_kv_u64(&pk, "updated_index", a->updated_index);
    statemachine__pack_kv_u64(&pk, "node_id", a->node_id);
    statemachine__pack_str(&pk, "online", 6);
    if (a->online) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    return statemachine__buf_put(t, STORAGE_AGENTS, a->id, a->id_len, &b, errmsg);
}

static int corrupt(const char *table,
                   const char *id,
                   size_t id_len,
                   char *errmsg)
{
    rems_errmsgf(errmsg, "%s[%.*s]: record is corrupt", table, (int)id_len,
                 id);
    return REMS_ECORRUPT;
}

/* Read a bin-or-str field. */
static int read_blob(struct mpread *r, const char **s, size_t *len)
{
    const void *v;
    int rv = mpread_bytes(r, &v, len);
    if (rv == 0) {
        *s = v;
    }
    return rv;
}

static int decode_agent(const char *id,
                        size_t id_len,
                        const void *v,
                        size_t vl,
                        struct statemachine_agent *a,
                        char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    memset(a, 0, sizeof *a);
    a->id = id;
    a->id_len = id_len;
    a->labels = a->services = a->offline_reason = "";
    mpread_init(&r, v, vl);
    if (mpread_map(&r, &n) != 0) {
        return corrupt("agents", id, id_len, errmsg);
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        int rv;
        if (mpread_str(&r, &k, &kl) != 0) {
            return corrupt("agents", id, id_len, errmsg);
        }
        if (mpread_streq(k, kl, "labels")) {
            rv = read_blob(&r, &a->labels, &a->labels_len);
        } else if (mpread_streq(k, kl, "services")) {
            rv = read_blob(&r, &a->services, &a->services_len);
        } else if (mpread_streq(k, kl, "offline_reason")) {
            rv = read_blob(&r, &a->offline_reason, &a->offline_reason_len);
        } else if (mpread_streq(k, kl, "registered_index")) {
            rv = mpread_u64(&r, &a->registered_index);
        } else if (mpread_streq(k, kl, "updated_index")) {
            rv = mpread_u64(&r, &a->updated_index);
        } else if (mpread_streq(k, kl, "node_id")) {
            rv = mpread_u64(&r, &a->node_id);
        } else if (mpread_streq(k, kl, "online")) {
            rv = mpread_bool(&r, &a->online);
        } else {
            rv = mpread_skip(&r);
        }
        if (rv != 0) {
            return corrupt("agents", id, id_len, errmsg);
        }
    }
    return 0;
}

int statemachine_agent_get(struct storage_txn *t,
                           const char *id,
                           size_t id_len,
                           struct statemachine_agent *out,
                           char *errmsg)
{
    const void *v;
    size_t vl;
    struct statemachine_agent a;
    int rv = storage_get(t, STORAGE_AGENTS, id, id_len, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = decode_agent(id, id_len, v, vl, &a, errmsg);
    if (rv == 0) {
        *out = a;
    }
    return rv;
}

static int decode_lease(const char *id,
                        size_t id_len,
                        const void *v,
                        size_t vl,
                        struct statemachine_lease *l,
                        char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    memset(l, 0, sizeof *l);
    l->agent_id = id;
    l->agent_id_len = id_len;
    mpread_init(&r, v, vl);
    if (mpread_map(&r, &n) != 0) {
        return corrupt("leases", id, id_len, errmsg);
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        int rv;
        if (mpread_str(&r, &k, &kl) != 0) {
            return corrupt("leases", id, id_len, errmsg);
        }
        if (mpread_streq(k, kl, "ttl_ms")) {
            rv = mpread_u64(&r, &l->ttl_ms);
        } else if (mpread_streq(k, kl, "granted_index")) {
            rv = mpread_u64(&r, &l->granted_index);
        } else if (mpread_streq(k, kl, "granted_ms")) {
            rv = mpread_u64(&r, &l->granted_ms);
        } else if (mpread_streq(k, kl, "node_id")) {
            rv = mpread_u64(&r, &l->node_id);
        } else {
            rv = mpread_skip(&r);
        }
        if (rv != 0) {
            return corrupt("leases", id, id_len, errmsg);
        }
    }
    return 0;
}

int statemachine_lease_get(struct storage_txn *t,
                           const char *agent_id,
                           size_t agent_id_len,
                           struct statemachine_lease *out,
                           char *errmsg)
{
    const void *v;
    size_t vl;
    struct statemachine_lease l;
    int rv = storage_get(t, STORAGE_LEASES, agent_id, agent_id_len, &v, &vl,
                         errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = decode_lease(agent_id, agent_id_len, v, vl, &l, errmsg);
    if (rv == 0) {
        *out = l;
    }
    return rv;
}

static int pack_command(struct storage_txn *t,
                        const struct statemachine_command *c,
                        char *errmsg)
{
    struct rems_buf b;
    msgpack_packer pk;
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 15);
    statemachine__pack_kv_str(&pk, "agent_id", c->agent_id, c->agent_id_len);
    statemachine__pack_kv_str(&pk, "action", c->action, c->action_len);
    statemachine__pack_kv_str(&pk, "service", c->service, c->service_len);
    pack_kv_bin(&pk, "args", c->args, c->args_len);
    pack_kv_bin(&pk, "result", c->result, c->result_len);
    statemachine__pack_kv_str(&pk, "requested_by", c->requested_by,
                              c->requested_by_len);
    statemachine__pack_kv_str(&pk, "reason", c->reason, c->reason_len);
    statemachine__pack_kv_str(&pk, "trace_id", c->trace_id, c->trace_id_len);
    statemachine__pack_kv_u64(&pk, "state", (uint64_t)c->state);
    statemachine__pack_kv_u64(&pk, "term", c->term);
    statemachine__pack_kv_u64(&pk, "ttl_ms", c->ttl_ms);
    statemachine__pack_kv_u64(&pk, "issued_index", c->issued_index);
    statemachine__pack_kv_u64(&pk, "issued_ms", c->issued_ms);
    statemachine__pack_kv_u64(&pk, "deadline_ms", c->deadline_ms);
    statemachine__pack_kv_u64(&pk, "resolved_index", c->resolved_index);
    return statemachine__buf_put(t, STORAGE_COMMANDS, c->id, c->id_len, &b, errmsg);
}

static int decode_command(const char *id,
                          size_t id_len,
                          const void *v,
                          size_t vl,
                          struct statemachine_command *c,
                          char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    uint64_t state = STATEMACHINE_COMMAND_STATE_NR;
    memset(c, 0, sizeof *c);
    c->id = id;
    c->id_len = id_len;
    c->agent_id = c->action = c->service = c->args = c->result = "";
    c->requested_by = c->reason = c->trace_id = "";
    mpread_init(&r, v, vl);
    if (mpread_map(&r, &n) != 0) {
        return corrupt("commands", id, id_len, errmsg);
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        int rv;
        if (mpread_str(&r, &k, &kl) != 0) {
            return corrupt("commands", id, id_len, errmsg);
        }
        if (mpread_streq(k, kl, "agent_id")) {
            rv = mpread_str(&r, &c->agent_id, &c->agent_id_len);
        } else if (mpread_streq(k, kl, "action")) {
            rv = mpread_str(&r, &c->action, &c->action_len);
        } else if (mpread_streq(k, kl, "service")) {
            rv = mpread_str(&r, &c->service, &c->service_len);
        } else if (mpread_streq(k, kl, "args")) {
            rv = read_blob(&r, &c->args, &c->args_len);
        } else if (mpread_streq(k, kl, "result")) {
            rv = read_blob(&r, &c->result, &c->result_len);
        } else if (mpread_streq(k, kl, "requested_by")) {
            rv = mpread_str(&r, &c->requested_by, &c->requested_by_len);
        } else if (mpread_streq(k, kl, "reason")) {
            rv = mpread_str(&r, &c->reason, &c->reason_len);
        } else if (mpread_streq(k, kl, "trace_id")) {
            rv = mpread_str(&r, &c->trace_id, &c->trace_id_len);
        } else if (mpread_streq(k, kl, "state")) {
            rv = mpread_u64(&r, &state);
        } else if (mpread_streq(k, kl, "term")) {
            rv = mpread_u64(&r, &c->term);
        } else if (mpread_streq(k, kl, "ttl_ms")) {
            rv = mpread_u64(&r, &c->ttl_ms);
        } else if (mpread_streq(k, kl, "issued_index")) {
            rv = mpread_u64(&r, &c->issued_index);
        } else if (mpread_streq(k, kl, "issued_ms")) {
            rv = mpread_u64(&r, &c->issued_ms);
        } else if (mpread_streq(k, kl, "deadline_ms")) {
            rv = mpread_u64(&r, &c->deadline_ms);
        } else if (mpread_streq(k, kl, "resolved_index")) {
            rv = mpread_u64(&r, &c->resolved_index);
        } else {
            rv = mpread_skip(&r);
        }
        if (rv != 0) {
            return corrupt("commands", id, id_len, errmsg);
        }
    }
    if (state >= STATEMACHINE_COMMAND_STATE_NR) {
        return corrupt("commands", id, id_len, errmsg);
    }
    c->state = (int)state;
    return 0;
}

int statemachine_command_get(struct storage_txn *t,
                             const char *id,
                             size_t id_len,
                             struct statemachine_command *out,
                             char *errmsg)
{
    const void *v;
    size_t vl;
    struct statemachine_command c;
    int rv = storage_get(t, STORAGE_COMMANDS, id, id_len, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = decode_command(id, id_len, v, vl, &c, errmsg);
    if (rv == 0) {
        *out = c;
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Apply.                                                               */

int statemachine__apply_agent(struct storage_txn *t,
                              uint64_t index,
                              const struct statemachine_entry *e,
                              struct statemachine_result *res,
                              char *errmsg)
{
    struct statemachine_agent a;
    int rv;

    PRE(e->agent_id != NULL);
    rv = statemachine_agent_get(t, e->agent_id, e->agent_id_len, &a, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    if (e->type == STATEMACHINE_ENTRY_AGENT_REGISTER) {
        if (rv == REMS_ENOTFOUND) {
            memset(&a, 0, sizeof a);
            a.id = e->agent_id;
            a.id_len = e->agent_id_len;
            a.services = a.offline_reason = "";
            a.registered_index = index;
            res->created = true;
        }
        a.labels = e->value;
        a.labels_len = e->value_len;
        a.node_id = e->node_id;
        a.updated_index = index;
        res->revision = index;
        return pack_agent(t, &a, errmsg);
    }
    if (rv == REMS_ENOTFOUND) {
        res->code = REMS_ENOTFOUND; /* Reports of unknown agents: refused. */
        return 0;
    }
    a.services = e->value;
    a.services_len = e->value_len;
    a.updated_index = index;
    res->revision = index;
    return pack_agent(t, &a, errmsg);
}

int statemachine__apply_lease(struct storage_txn *t,
                              uint64_t index,
                              const struct statemachine_entry *e,
                              struct statemachine_result *res,
                              char *errmsg)
{
    struct statemachine_agent a;
    struct rems_buf b;
    msgpack_packer pk;
    int rv;

    rv = statemachine_agent_get(t, e->agent_id, e->agent_id_len, &a, errmsg);
    if (rv == REMS_ENOTFOUND) {
        res->code = REMS_ENOTFOUND;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (e->type == STATEMACHINE_ENTRY_LEASE_GRANT) {
        rems_buf_init(&b);
        msgpack_packer_init(&pk, &b, rems_buf_write);
        msgpack_pack_map(&pk, 4);
        statemachine__pack_kv_u64(&pk, "ttl_ms", e->ttl_ms);
        statemachine__pack_kv_u64(&pk, "granted_index", index);
        statemachine__pack_kv_u64(&pk, "granted_ms", e->time_ms);
        statemachine__pack_kv_u64(&pk, "node_id", e->node_id);
        rv = statemachine__buf_put(t, STORAGE_LEASES, e->agent_id, e->agent_id_len, &b,
                     errmsg);
        if (rv != 0) {
            return rv;
        }
        a.online = true;
        a.offline_reason = "";
        a.offline_reason_len = 0;
        a.node_id = e->node_id;
    } else {
        rv = storage_del(t, STORAGE_LEASES, e->agent_id, e->agent_id_len,
                         errmsg);
        if (rv == REMS_ENOTFOUND) {
            res->code = REMS_ENOTFOUND;
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        a.online = false;
        a.offline_reason = e->outcome_len > 0 ? e->outcome : "revoked";
        a.offline_reason_len =
            e->outcome_len > 0 ? e->outcome_len : strlen("revoked");
    }
    a.updated_index = index;
    res->revision = index;
    return pack_agent(t, &a, errmsg);
}

int statemachine__apply_command(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                struct statemachine_result *res,
                                char *errmsg)
{
    struct statemachine_command c;
    struct statemachine_agent a;
    unsigned char k[8];
    char service[STATEMACHINE_NAME_MAX];
    size_t service_len;
    int state;
    int rv;

    rv = statemachine_command_get(t, e->command_id, e->command_id_len, &c,
                                  errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    if (e->type == STATEMACHINE_ENTRY_COMMAND_ISSUE) {
        if (rv == 0) {
            res->code = REMS_EEXIST;
            res->command_state = c.state;
            return 0;
        }
        rv = statemachine_agent_get(t, e->agent_id, e->agent_id_len, &a,
                                    errmsg);
        if (rv == REMS_ENOTFOUND) {
            res->code = REMS_ENOTFOUND;
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        memset(&c, 0, sizeof c);
        c.id = e->command_id;
        c.id_len = e->command_id_len;
        c.agent_id = e->agent_id;
        c.agent_id_len = e->agent_id_len;
        c.action = e->action;
        c.action_len = e->action_len;
        c.service = e->service;
        c.service_len = e->service_len;
        c.args = e->value;
        c.args_len = e->value_len;
        c.requested_by = e->requested_by;
        c.requested_by_len = e->requested_by_len;
        c.reason = e->reason;
        c.reason_len = e->reason_len;
        c.trace_id = e->trace_id;
        c.trace_id_len = e->trace_id_len;
        c.state = STATEMACHINE_COMMAND_PENDING;
        c.term = e->term;
        c.ttl_ms = e->ttl_ms;
        c.issued_index = index;
        c.issued_ms = e->time_ms;
        /* ttl_ms is at most a day (decoder); saturate a wild clock. */
        c.deadline_ms = e->time_ms > UINT64_MAX - e->ttl_ms
                            ? UINT64_MAX
                            : e->time_ms + e->ttl_ms;
        rv = pack_command(t, &c, errmsg);
        if (rv != 0) {
            return rv;
        }
        storage_u64_key(index, k);
        rv = storage_put(t, STORAGE_PENDING, e->command_id, e->command_id_len,
                         k, sizeof k, errmsg);
        if (rv != 0) {
            return rv;
        }
        /* A remediation: its record moves with it (ADR 0005). */
        if (e->has_record) {
            rv = statemachine__record_issue(t, index, e, errmsg);
            if (rv != 0) {
                return rv;
            }
        }
        res->created = true;
        res->revision = index;
        res->command_state = STATEMACHINE_COMMAND_PENDING;
        return 0;
    }
    /* COMMAND_RESOLVE */
    if (rv == REMS_ENOTFOUND) {
        res->code = REMS_ENOTFOUND;
        return 0;
    }
    if (c.agent_id_len != e->agent_id_len ||
        memcmp(c.agent_id, e->agent_id, c.agent_id_len) != 0) {
        /* Only the command's own agent may resolve it (through the
         * leader); anything else is refused without a change. */
        res->code = REMS_EINVAL;
        return 0;
    }
    if (c.state != STATEMACHINE_COMMAND_PENDING) {
        res->code = REMS_ECONFLICT;
        res->command_state = c.state;
        return 0;
    }
    rv = statemachine_command_outcome_parse(e->outcome, e->outcome_len,
                                            &state);
    REMS_ASSERT(rv == 0); /* Checked by the decoder. */
    /* c's strings point into the map, which the write below may move. */
    if (c.service_len > sizeof service) {
        return corrupt("commands", e->command_id, e->command_id_len, errmsg);
    }
    service_len = c.service_len;
    memcpy(service, c.service, service_len);
    c.state = state;
    c.result = e->value != NULL ? e->value : "";
    c.result_len = e->value != NULL ? e->value_len : 0;
    c.resolved_index = index;
    rv = pack_command(t, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_del(t, STORAGE_PENDING, e->command_id, e->command_id_len,
                     errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    rv = statemachine__record_resolve(t, index, e->agent_id, e->agent_id_len,
                                      service, service_len, e->command_id,
                                      e->command_id_len, state, errmsg);
    if (rv != 0) {
        return rv;
    }
    res->revision = index;
    res->command_state = state;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lists.                                                               */

/* Position @c after @after (or at the start) and return the first entry. */
static int seek_after(struct storage_cursor *c,
                      const char *after,
                      size_t after_len,
                      const void **k,
                      size_t *kl,
                      const void **v,
                      size_t *vl,
                      char *errmsg)
{
    int rv;
    if (after_len == 0) {
        return storage_cursor_seek(c, NULL, 0, k, kl, v, vl, errmsg);
    }
    rv = storage_cursor_seek(c, after, after_len, k, kl, v, vl, errmsg);
    if (rv == 0 && *kl == after_len && memcmp(*k, after, after_len) == 0) {
        rv = storage_cursor_next(c, k, kl, v, vl, errmsg);
    }
    return rv;
}

int statemachine_agent_list(struct storage_txn *t,
                            const char *after,
                            size_t after_len,
                            size_t limit,
                            statemachine_agent_visit visit,
                            void *data,
                            bool *more,
                            char *errmsg)
{
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t n = 0;
    int rv;

    *more = false;
    rv = storage_cursor_open(t, STORAGE_AGENTS, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = seek_after(c, after, after_len, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_agent a;
        if (n == limit) {
            *more = true;
            break;
        }
        rv = decode_agent(k, kl, v, vl, &a, errmsg);
        if (rv == 0) {
            rv = visit(data, &a);
        }
        if (rv != 0) {
            storage_cursor_close(c);
            return rv;
        }
        n++;
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

int statemachine_lease_list(struct storage_txn *t,
                            statemachine_lease_visit visit,
                            void *data,
                            char *errmsg)
{
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    int rv;

    rv = storage_cursor_open(t, STORAGE_LEASES, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_lease l;
        rv = decode_lease(k, kl, v, vl, &l, errmsg);
        if (rv == 0) {
            rv = visit(data, &l);
        }
        if (rv != 0) {
            storage_cursor_close(c);
            return rv;
        }
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

int statemachine_command_list(struct storage_txn *t,
                              const char *agent_id,
                              size_t agent_id_len,
                              int state,
                              const char *after,
                              size_t after_len,
                              size_t limit,
                              statemachine_command_visit visit,
                              void *data,
                              bool *more,
                              char *errmsg)
{
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t n = 0;
    bool pending = state == STATEMACHINE_COMMAND_PENDING;
    int rv;

    *more = false;
    rv = storage_cursor_open(t, pending ? STORAGE_PENDING : STORAGE_COMMANDS,
                             &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = seek_after(c, after, after_len, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_command cmd;
        if (pending) {
            rv = statemachine_command_get(t, k, kl, &cmd, errmsg);
            if (rv == REMS_ENOTFOUND) {
                rv = corrupt("pending", k, kl, errmsg);
            }
        } else {
            rv = decode_command(k, kl, v, vl, &cmd, errmsg);
        }
        if (rv != 0) {
            break;
        }
        if ((state < 0 || cmd.state == state) &&
            (agent_id == NULL || (cmd.agent_id_len == agent_id_len &&
                                  memcmp(cmd.agent_id, agent_id,
                                         agent_id_len) == 0))) {
            if (n == limit) {
                *more = true;
                break;
            }
            rv = visit(data, &cmd);
            if (rv != 0) {
                break;
            }
            n++;
        }
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}
