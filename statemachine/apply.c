/* Deterministic apply, queries and snapshots of the replicated state.
 *
 * Stored records (MessagePack):
 *   policies[key]        [value(bin), revision, created_index, modified_index]
 *   audit[be64 index]    {time_ms, type, code, revision, key, requested_by,
 *                         reason, trace_id, request_id}
 *   requests[id]         [index, code, revision, current_revision, created,
 *                         command_state, rollout_state]
 *                        (command_state from commands on, rollout_state
 *                        for rollout updates only)
 *   reqidx[be64 index]   id        (oldest first, for pruning)
 *   members[be64 id]     [raft_address, api_address, agent_address]
 *                        (records of earlier versions have two elements)
 *   meta["last_applied"] be64
 *
 * apply reads only the entry and the tables: never the clock. */
#include <msgpack.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/mpread.h"
#include "statemachine/agents_int.h"
#include "statemachine/pack_int.h"
#include "statemachine/reconcile_int.h"
#include "statemachine/rollout_int.h"
#include "statemachine/statemachine.h"

#define META_LAST_APPLIED "last_applied"
#define PRUNE_PER_APPLY 64

int statemachine_last_applied(struct storage_txn *t,
                              uint64_t *out,
                              char *errmsg)
{
    const void *v;
    size_t vl;
    int rv = storage_get(t, STORAGE_META, META_LAST_APPLIED,
                         strlen(META_LAST_APPLIED), &v, &vl, errmsg);
    if (rv == REMS_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (vl != 8) {
        rems_errmsgf(errmsg, "meta.last_applied: %zu bytes, expected 8", vl);
        return REMS_ECORRUPT;
    }
    *out = storage_u64_from_key(v);
    return 0;
}

static int decode_policy(const char *key,
                         size_t key_len,
                         const void *v,
                         size_t vl,
                         struct statemachine_policy *out,
                         char *errmsg)
{
    struct mpread r;
    uint32_t n;
    const void *val;
    mpread_init(&r, v, vl);
    if (mpread_array(&r, &n) != 0 || n != 4 ||
        mpread_bytes(&r, &val, &out->value_len) != 0 ||
        mpread_u64(&r, &out->revision) != 0 ||
        mpread_u64(&r, &out->created_index) != 0 ||
        mpread_u64(&r, &out->modified_index) != 0) {
        rems_errmsgf(errmsg, "policies[%.*s]: record is corrupt",
                     (int)key_len, key);
        return REMS_ECORRUPT;
    }
    out->value = val;
    out->key = key;
    out->key_len = key_len;
    return 0;
}

int statemachine_policy_get(struct storage_txn *t,
                            const char *key,
                            size_t key_len,
                            struct statemachine_policy *out,
                            char *errmsg)
{
    const void *v;
    size_t vl;
    struct statemachine_policy p;
    int rv = storage_get(t, STORAGE_POLICIES, key, key_len, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = decode_policy(key, key_len, v, vl, &p, errmsg);
    if (rv == 0) {
        *out = p;
    }
    return rv;
}

/* ------------------------------------------------------------------ */
/* Apply.                                                               */

static int apply_policy_put(struct storage_txn *t,
                            uint64_t index,
                            const struct statemachine_entry *e,
                            struct statemachine_result *res,
                            char *errmsg)
{
    struct statemachine_policy cur;
    struct rems_buf b;
    msgpack_packer pk;
    uint64_t created = index;
    int rv;

    rv = statemachine_policy_get(t, e->key, e->key_len, &cur, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    if (e->has_if_revision) {
        uint64_t have = rv == 0 ? cur.revision : 0;
        if (have != e->if_revision) {
            res->code = REMS_ECONFLICT;
            res->current_revision = have;
            return 0;
        }
    }
    res->created = rv == REMS_ENOTFOUND;
    if (rv == 0) {
        created = cur.created_index;
    }
    /* The new document's rollout; @cur's strings are not used after. */
    rv = statemachine__rollout_start(t, index, e, res->created ? NULL : &cur,
                                     errmsg);
    if (rv != 0) {
        return rv;
    }
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    statemachine__pack_policy(&pk, e->value, e->value_len, index, created,
                              index);
    rv = statemachine__buf_put(t, STORAGE_POLICIES, e->key, e->key_len, &b, errmsg);
    if (rv != 0) {
        return rv;
    }
    res->revision = index;
    return 0;
}

static int apply_policy_delete(struct storage_txn *t,
                               uint64_t index,
                               const struct statemachine_entry *e,
                               struct statemachine_result *res,
                               char *errmsg)
{
    struct statemachine_policy cur;
    int rv = statemachine_policy_get(t, e->key, e->key_len, &cur, errmsg);
    if (rv == REMS_ENOTFOUND) {
        if (e->has_if_revision && e->if_revision != 0) {
            res->code = REMS_ECONFLICT;
            res->current_revision = 0;
        } else {
            res->code = REMS_ENOTFOUND;
        }
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (e->has_if_revision && cur.revision != e->if_revision) {
        res->code = REMS_ECONFLICT;
        res->current_revision = cur.revision;
        return 0;
    }
    rv = storage_del(t, STORAGE_POLICIES, e->key, e->key_len, errmsg);
    if (rv == 0) {
        rv = statemachine__rollout_remove(t, e->key, e->key_len, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    res->revision = index;
    return 0;
}

static int apply_member_set(struct storage_txn *t,
                            const struct statemachine_entry *e,
                            char *errmsg)
{
    unsigned char k[8];
    struct rems_buf b;
    msgpack_packer pk;
    storage_u64_key(e->member_id, k);
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_array(&pk, 3);
    statemachine__pack_str(&pk, e->raft_address, e->raft_address_len);
    statemachine__pack_str(&pk, e->api_address, e->api_address_len);
    statemachine__pack_str(&pk, e->agent_address != NULL ? e->agent_address
                                                         : "",
                           e->agent_address_len);
    return statemachine__buf_put(t, STORAGE_MEMBERS, k, sizeof k, &b, errmsg);
}

static int apply_member_delete(struct storage_txn *t,
                               const struct statemachine_entry *e,
                               struct statemachine_result *res,
                               char *errmsg)
{
    unsigned char k[8];
    int rv;
    storage_u64_key(e->member_id, k);
    rv = storage_del(t, STORAGE_MEMBERS, k, sizeof k, errmsg);
    if (rv == REMS_ENOTFOUND) {
        res->code = REMS_ENOTFOUND;
        return 0;
    }
    return rv;
}

static int read_request(const void *v,
                        size_t vl,
                        struct statemachine_result *res)
{
    struct mpread r;
    uint32_t n;
    uint64_t code;
    uint64_t state = 0;
    uint64_t rollout = 0;
    mpread_init(&r, v, vl);
    if (mpread_array(&r, &n) != 0 || n < 5 || n > 7 ||
        mpread_u64(&r, &res->index) != 0 || mpread_u64(&r, &code) != 0 ||
        mpread_u64(&r, &res->revision) != 0 ||
        mpread_u64(&r, &res->current_revision) != 0 ||
        mpread_bool(&r, &res->created) != 0 || code >= REMS_E_NR ||
        (n >= 6 && (mpread_u64(&r, &state) != 0 ||
                    state >= STATEMACHINE_COMMAND_STATE_NR)) ||
        (n == 7 && (mpread_u64(&r, &rollout) != 0 ||
                    rollout >= STATEMACHINE_ROLLOUT_STATE_NR))) {
        return REMS_ECORRUPT;
    }
    res->code = (int)code;
    res->command_state = (int)state;
    res->rollout_state = (int)rollout;
    return 0;
}

/* Remember @e's request id with @res; forget ids older than the window. */
static int remember_request(struct storage_txn *t,
                            uint64_t index,
                            const struct statemachine_entry *e,
                            const struct statemachine_result *res,
                            char *errmsg)
{
    unsigned char k[8];
    struct rems_buf b;
    msgpack_packer pk;
    struct storage_cursor *c;
    const void *ck;
    const void *cv;
    size_t ckl;
    size_t cvl;
    int pruned = 0;
    int rv;

    /* Records of other entries keep the six elements they always had. */
    bool rollout = e->type == STATEMACHINE_ENTRY_ROLLOUT_UPDATE;

    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_array(&pk, rollout ? 7 : 6);
    msgpack_pack_uint64(&pk, res->index);
    msgpack_pack_uint64(&pk, (uint64_t)res->code);
    msgpack_pack_uint64(&pk, res->revision);
    msgpack_pack_uint64(&pk, res->current_revision);
    if (res->created) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    msgpack_pack_uint64(&pk, (uint64_t)res->command_state);
    if (rollout) {
        msgpack_pack_uint64(&pk, (uint64_t)res->rollout_state);
    }
    rv = statemachine__buf_put(t, STORAGE_REQUESTS, e->request_id, e->request_id_len, &b,
                 errmsg);
    if (rv != 0) {
        return rv;
    }
    storage_u64_key(index, k);
    rv = storage_put(t, STORAGE_REQIDX, k, sizeof k, e->request_id,
                     e->request_id_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (index <= STATEMACHINE_REQUEST_WINDOW) {
        return 0;
    }
    rv = storage_cursor_open(t, STORAGE_REQIDX, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_cursor_seek(c, NULL, 0, &ck, &ckl, &cv, &cvl, errmsg);
    while (rv == 0 && pruned < PRUNE_PER_APPLY && ckl == 8 &&
           storage_u64_from_key(ck) <= index - STATEMACHINE_REQUEST_WINDOW) {
        rv = storage_del(t, STORAGE_REQUESTS, cv, cvl, errmsg);
        if (rv != 0 && rv != REMS_ENOTFOUND) {
            break;
        }
        rv = storage_cursor_del(c, errmsg);
        if (rv != 0) {
            break;
        }
        pruned++;
        rv = storage_cursor_seek(c, NULL, 0, &ck, &ckl, &cv, &cvl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

static int write_audit(struct storage_txn *t,
                       uint64_t index,
                       const struct statemachine_entry *e,
                       const struct statemachine_result *res,
                       char *errmsg)
{
    unsigned char k[8];
    struct rems_buf b;
    msgpack_packer pk;
    storage_u64_key(index, k);
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 9);
    statemachine__pack_kv_u64(&pk, "time_ms", e->time_ms);
    statemachine__pack_kv_u64(&pk, "type", (uint64_t)e->type);
    statemachine__pack_kv_u64(&pk, "code", (uint64_t)res->code);
    statemachine__pack_kv_u64(&pk, "revision", res->revision);
    if (e->type == STATEMACHINE_ENTRY_ROLLOUT_UPDATE) {
        statemachine__pack_kv_str(&pk, "key", e->key, e->key_len);
    } else if (e->type >= STATEMACHINE_ENTRY_INCIDENT_OPEN) {
        char key[STATEMACHINE_KEY_MAX];
        size_t kl = statemachine__audit_key(e, index, key, sizeof key);
        statemachine__pack_kv_str(&pk, "key", key, kl);
    } else if (e->type < STATEMACHINE_ENTRY_AGENT_REGISTER) {
        statemachine__pack_kv_str(&pk, "key", e->key, e->key_len);
    } else if (e->command_id != NULL) {
        statemachine__pack_kv_str(&pk, "key", e->command_id,
                                  e->command_id_len);
    } else {
        statemachine__pack_kv_str(&pk, "key", e->agent_id, e->agent_id_len);
    }
    statemachine__pack_kv_str(&pk, "requested_by", e->requested_by, e->requested_by_len);
    statemachine__pack_kv_str(&pk, "reason", e->reason, e->reason_len);
    statemachine__pack_kv_str(&pk, "trace_id", e->trace_id, e->trace_id_len);
    statemachine__pack_kv_str(&pk, "request_id", e->request_id, e->request_id_len);
    return statemachine__buf_put(t, STORAGE_AUDIT, k, sizeof k, &b, errmsg);
}

int statemachine_apply(struct storage *s,
                       uint64_t index,
                       const void *buf,
                       size_t len,
                       struct statemachine_result *res,
                       char *errmsg)
{
    struct storage_txn *t;
    struct statemachine_entry e;
    unsigned char k[8];
    uint64_t last;
    char why[REMS_ERRMSG_SIZE];
    const void *rv_val;
    size_t rv_len;
    int rv;

    PRE(index > 0);
    memset(res, 0, sizeof *res);
    res->index = index;
    rv = storage_txn_begin(s, true, &t, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = statemachine_last_applied(t, &last, errmsg);
    if (rv != 0) {
        goto err_after_txn;
    }
    if (index <= last) {
        /* Already applied before a restart: report the remembered result
         * when the entry still decodes and its request is remembered. */
        res->skipped = true;
        if (statemachine_entry_decode(buf, len, &e, why) == 0 &&
            e.request_id_len > 0 &&
            storage_get(t, STORAGE_REQUESTS, e.request_id, e.request_id_len,
                        &rv_val, &rv_len, why) == 0) {
            read_request(rv_val, rv_len, res);
        }
        storage_txn_abort(t);
        return 0;
    }

    rv = statemachine_entry_decode(buf, len, &e, why);
    if (rv == 0) {
        res->type = e.type;
    }
    if (rv != 0) {
        /* Refused identically on every node: only the index advances. */
        res->code = rv;
        rems_errmsgf(errmsg, "%s", why);
    } else if (e.request_id_len > 0 &&
               storage_get(t, STORAGE_REQUESTS, e.request_id,
                           e.request_id_len, &rv_val, &rv_len, why) == 0) {
        if (read_request(rv_val, rv_len, res) != 0) {
            rems_errmsgf(errmsg, "requests[%.*s]: record is corrupt",
                         (int)e.request_id_len, e.request_id);
            rv = REMS_ECORRUPT;
            goto err_after_txn;
        }
        res->duplicate = true;
    } else {
        switch (e.type) {
            case STATEMACHINE_ENTRY_POLICY_PUT:
                rv = apply_policy_put(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_POLICY_DELETE:
                rv = apply_policy_delete(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_MEMBER_SET:
                rv = apply_member_set(t, &e, errmsg);
                break;
            case STATEMACHINE_ENTRY_MEMBER_DELETE:
                rv = apply_member_delete(t, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_AGENT_REGISTER:
            case STATEMACHINE_ENTRY_AGENT_REPORT:
                rv = statemachine__apply_agent(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_LEASE_GRANT:
            case STATEMACHINE_ENTRY_LEASE_REVOKE:
                rv = statemachine__apply_lease(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_COMMAND_ISSUE:
            case STATEMACHINE_ENTRY_COMMAND_RESOLVE:
                rv = statemachine__apply_command(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_INCIDENT_OPEN:
            case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
            case STATEMACHINE_ENTRY_OVERRIDE_SET:
            case STATEMACHINE_ENTRY_OVERRIDE_CLEAR:
            case STATEMACHINE_ENTRY_WINDOW_SET:
            case STATEMACHINE_ENTRY_WINDOW_DELETE:
            case STATEMACHINE_ENTRY_RECORD_RESET:
                rv = statemachine__apply_reconcile(t, index, &e, res, errmsg);
                break;
            case STATEMACHINE_ENTRY_ROLLOUT_UPDATE:
                rv = statemachine__apply_rollout(t, index, &e, res, errmsg);
                break;
            default:
                rv = 0;
                break;
        }
        if (rv == 0 && e.request_id_len > 0) {
            rv = remember_request(t, index, &e, res, errmsg);
        }
        /* Service-state reports change often and are not audited, nor
         * are a pass's record resets (the reconciler's bookkeeping). */
        if (rv == 0 && e.type != STATEMACHINE_ENTRY_NOOP &&
            e.type != STATEMACHINE_ENTRY_AGENT_REPORT &&
            e.type != STATEMACHINE_ENTRY_RECORD_RESET) {
            rv = write_audit(t, index, &e, res, errmsg);
        }
        if (rv != 0) {
            goto err_after_txn;
        }
    }
    storage_u64_key(index, k);
    rv = storage_put(t, STORAGE_META, META_LAST_APPLIED,
                     strlen(META_LAST_APPLIED), k, sizeof k, errmsg);
    if (rv != 0) {
        goto err_after_txn;
    }
    return storage_txn_commit(t, errmsg);

err_after_txn:
    storage_txn_abort(t);
err:
    POST(rv != 0);
    memset(res, 0, sizeof *res);
    return rv;
}

/* ------------------------------------------------------------------ */
/* Queries.                                                             */

/* memcmp order with the shorter key first on a tie, as LMDB sorts. */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

int statemachine_policy_list(struct storage_txn *t,
                             const char *prefix,
                             size_t prefix_len,
                             const char *after,
                             size_t after_len,
                             size_t limit,
                             statemachine_policy_visit visit,
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
    if (prefix == NULL) {
        prefix = "";
        prefix_len = 0;
    }
    rv = storage_cursor_open(t, STORAGE_POLICIES, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (after_len > 0 && bytes_cmp(after, after_len, prefix, prefix_len) >= 0) {
        rv = storage_cursor_seek(c, after, after_len, &k, &kl, &v, &vl,
                                 errmsg);
        if (rv == 0 && kl == after_len && memcmp(k, after, kl) == 0) {
            rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
        }
    } else {
        rv = storage_cursor_seek(c, prefix, prefix_len, &k, &kl, &v, &vl,
                                 errmsg);
    }
    /* Keys with the prefix form one contiguous run from the prefix on. */
    while (rv == 0 && kl >= prefix_len && memcmp(k, prefix, prefix_len) == 0) {
        struct statemachine_policy p;
        if (n == limit) {
            *more = true;
            break;
        }
        rv = decode_policy(k, kl, v, vl, &p, errmsg);
        if (rv == 0) {
            rv = visit(data, &p);
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

int statemachine_policy_count(struct storage_txn *t,
                              size_t *out,
                              char *errmsg)
{
    return storage_count(t, STORAGE_POLICIES, out, errmsg);
}

static int decode_audit(const void *k,
                        const void *v,
                        size_t vl,
                        struct statemachine_audit *a,
                        char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    memset(a, 0, sizeof *a);
    a->index = storage_u64_from_key(k);
    mpread_init(&r, v, vl);
    if (mpread_map(&r, &n) != 0) {
        goto corrupt;
    }
    for (i = 0; i < n; i++) {
        const char *key;
        size_t kl;
        uint64_t u;
        int rv = 0;
        if (mpread_str(&r, &key, &kl) != 0) {
            goto corrupt;
        }
        if (mpread_streq(key, kl, "time_ms")) {
            rv = mpread_u64(&r, &a->time_ms);
        } else if (mpread_streq(key, kl, "type")) {
            rv = mpread_u64(&r, &u);
            a->type = (int)u;
        } else if (mpread_streq(key, kl, "code")) {
            rv = mpread_u64(&r, &u);
            a->code = (int)u;
        } else if (mpread_streq(key, kl, "revision")) {
            rv = mpread_u64(&r, &a->revision);
        } else if (mpread_streq(key, kl, "key")) {
            rv = mpread_str(&r, &a->key, &a->key_len);
        } else if (mpread_streq(key, kl, "requested_by")) {
            rv = mpread_str(&r, &a->requested_by, &a->requested_by_len);
        } else if (mpread_streq(key, kl, "reason")) {
            rv = mpread_str(&r, &a->reason, &a->reason_len);
        } else if (mpread_streq(key, kl, "trace_id")) {
            rv = mpread_str(&r, &a->trace_id, &a->trace_id_len);
        } else if (mpread_streq(key, kl, "request_id")) {
            rv = mpread_str(&r, &a->request_id, &a->request_id_len);
        } else {
            rv = mpread_skip(&r);
        }
        if (rv != 0) {
            goto corrupt;
        }
    }
    return 0;
corrupt:
    rems_errmsgf(errmsg, "audit[%llu]: record is corrupt",
                 (unsigned long long)a->index);
    return REMS_ECORRUPT;
}

int statemachine_audit_list(struct storage_txn *t,
                            uint64_t after,
                            size_t limit,
                            statemachine_audit_visit visit,
                            void *data,
                            bool *more,
                            char *errmsg)
{
    struct storage_cursor *c;
    unsigned char start[8];
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t n = 0;
    int rv;

    *more = false;
    rv = storage_cursor_open(t, STORAGE_AUDIT, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    storage_u64_key(after + 1, start);
    /* after + 1 would wrap to 0: nothing sorts after UINT64_MAX. */
    rv = after == UINT64_MAX ? REMS_ENOTFOUND
                             : storage_cursor_seek(c, start, sizeof start, &k,
                                                   &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_audit a;
        if (n == limit) {
            *more = true;
            break;
        }
        if (kl != 8) {
            rv = REMS_ECORRUPT;
            rems_errmsgf(errmsg, "audit: key of %zu bytes", kl);
            break;
        }
        rv = decode_audit(k, v, vl, &a, errmsg);
        if (rv == 0) {
            rv = visit(data, &a);
        }
        if (rv != 0) {
            break;
        }
        n++;
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

int statemachine_member_get(struct storage_txn *t,
                            uint64_t id,
                            struct statemachine_member *out,
                            char *errmsg)
{
    unsigned char k[8];
    const void *v;
    size_t vl;
    struct mpread r;
    uint32_t n;
    const char *ra;
    const char *aa;
    const char *ga = "";
    size_t ral;
    size_t aal;
    size_t gal = 0;
    int rv;

    storage_u64_key(id, k);
    rv = storage_get(t, STORAGE_MEMBERS, k, sizeof k, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    mpread_init(&r, v, vl);
    if (mpread_array(&r, &n) != 0 || n < 2 || n > 3 ||
        mpread_str(&r, &ra, &ral) != 0 || mpread_str(&r, &aa, &aal) != 0 ||
        (n == 3 && mpread_str(&r, &ga, &gal) != 0) ||
        ral > STATEMACHINE_ADDR_MAX || aal > STATEMACHINE_ADDR_MAX ||
        gal > STATEMACHINE_ADDR_MAX) {
        rems_errmsgf(errmsg, "members[%llu]: record is corrupt",
                     (unsigned long long)id);
        return REMS_ECORRUPT;
    }
    out->id = id;
    memcpy(out->raft_address, ra, ral);
    out->raft_address[ral] = '\0';
    memcpy(out->api_address, aa, aal);
    out->api_address[aal] = '\0';
    memcpy(out->agent_address, ga, gal);
    out->agent_address[gal] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ */
/* Snapshots.                                                           */

#define SNAPSHOT_VERSION 1

/* last_applied in a read transaction of its own. */
static int read_last_applied(struct storage *s, uint64_t *out, char *errmsg)
{
    struct storage_txn *t;
    int rv = storage_txn_begin(s, false, &t, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = statemachine_last_applied(t, out, errmsg);
    storage_txn_abort(t);
    return rv;
}

int statemachine_snapshot(struct storage *s,
                          void *(*alloc)(size_t),
                          void (*release)(void *),
                          void **out,
                          size_t *len,
                          char *errmsg)
{
    uint64_t last;
    void *image;
    size_t image_len;
    struct rems_buf hdr;
    msgpack_packer pk;
    char *buf;
    int rv;

    rv = read_last_applied(s, &last, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_image(s, rems_malloc, rems_free, &image, &image_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    rems_buf_init(&hdr);
    msgpack_packer_init(&pk, &hdr, rems_buf_write);
    msgpack_pack_map(&pk, 4);
    statemachine__pack_kv_u64(&pk, "v", SNAPSHOT_VERSION);
    statemachine__pack_kv_str(&pk, "format", "lmdb", 4);
    statemachine__pack_kv_u64(&pk, "last_applied", last);
    statemachine__pack_kv_u64(&pk, "image_len", image_len);
    buf = hdr.failed ? NULL : alloc(hdr.len + image_len);
    if (buf == NULL) {
        rems_buf_close(&hdr);
        rems_free(image);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    memcpy(buf, hdr.data, hdr.len);
    memcpy(buf + hdr.len, image, image_len);
    *out = buf;
    *len = hdr.len + image_len;
    rems_buf_close(&hdr);
    rems_free(image);
    (void)release;
    return 0;
}

int statemachine_restore(struct storage *s,
                         const void *buf,
                         size_t len,
                         bool *replaced,
                         char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    uint64_t version = 0;
    uint64_t last = 0;
    uint64_t image_len = UINT64_MAX;
    bool lmdb = false;
    uint64_t local;
    int rv;

    mpread_init(&r, buf, len);
    if (mpread_map(&r, &n) != 0) {
        rems_errmsgf(errmsg, "snapshot: header is not a map");
        return REMS_ECORRUPT;
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        const char *f;
        size_t fl;
        int ok;
        if (mpread_str(&r, &k, &kl) != 0) {
            rems_errmsgf(errmsg, "snapshot: header keys must be strings");
            return REMS_ECORRUPT;
        }
        if (mpread_streq(k, kl, "v")) {
            ok = mpread_u64(&r, &version);
        } else if (mpread_streq(k, kl, "last_applied")) {
            ok = mpread_u64(&r, &last);
        } else if (mpread_streq(k, kl, "image_len")) {
            ok = mpread_u64(&r, &image_len);
        } else if (mpread_streq(k, kl, "format")) {
            ok = mpread_str(&r, &f, &fl);
            lmdb = ok == 0 && mpread_streq(f, fl, "lmdb");
        } else {
            ok = mpread_skip(&r);
        }
        if (ok != 0) {
            rems_errmsgf(errmsg, "snapshot: header field %.*s is malformed",
                         (int)kl, k);
            return REMS_ECORRUPT;
        }
    }
    if (version != SNAPSHOT_VERSION || !lmdb) {
        rems_errmsgf(errmsg,
                     "snapshot: version %llu format %s is not supported",
                     (unsigned long long)version, lmdb ? "lmdb" : "other");
        return REMS_EUNSUPPORTED;
    }
    if (image_len != (uint64_t)(r.end - r.p)) {
        rems_errmsgf(errmsg, "snapshot: image is %zu bytes, header says %llu",
                     (size_t)(r.end - r.p), (unsigned long long)image_len);
        return REMS_ECORRUPT;
    }
    rv = read_last_applied(s, &local, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (local >= last && local > 0) {
        *replaced = false;
        return 0;
    }
    rv = storage_replace(s, r.p, (size_t)image_len, errmsg);
    if (rv != 0) {
        return rv;
    }
    *replaced = true;
    return 0;
}
