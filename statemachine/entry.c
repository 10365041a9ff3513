/* Log-entry envelopes: MessagePack encoding and strict decoding.
 *
 * Encoding: a map of the envelope fields with "body" as a nested map.
 * Decoding accepts the fields in any order, refuses duplicates, unknown
 * envelope fields are skipped (forward compatibility inside a version), and
 * every length is checked against the limits of statemachine.h. */
#include <msgpack.h>
#include <string.h>

#include "common/assert.h"
#include "common/mpread.h"
#include "statemachine/pack_int.h"
#include "statemachine/reconcile_int.h"
#include "statemachine/rollout_int.h"
#include "statemachine/statemachine.h"

static const char *const type_names[STATEMACHINE_ENTRY_TYPE_NR] = {
    [STATEMACHINE_ENTRY_NOOP] = "noop",
    [STATEMACHINE_ENTRY_POLICY_PUT] = "policy_put",
    [STATEMACHINE_ENTRY_POLICY_DELETE] = "policy_delete",
    [STATEMACHINE_ENTRY_MEMBER_SET] = "member_set",
    [STATEMACHINE_ENTRY_MEMBER_DELETE] = "member_delete",
    [STATEMACHINE_ENTRY_AGENT_REGISTER] = "agent_register",
    [STATEMACHINE_ENTRY_LEASE_GRANT] = "lease_grant",
    [STATEMACHINE_ENTRY_LEASE_REVOKE] = "lease_revoke",
    [STATEMACHINE_ENTRY_AGENT_REPORT] = "agent_report",
    [STATEMACHINE_ENTRY_COMMAND_ISSUE] = "command_issue",
    [STATEMACHINE_ENTRY_COMMAND_RESOLVE] = "command_resolve",
    [STATEMACHINE_ENTRY_INCIDENT_OPEN] = "incident_open",
    [STATEMACHINE_ENTRY_INCIDENT_UPDATE] = "incident_update",
    [STATEMACHINE_ENTRY_OVERRIDE_SET] = "override_set",
    [STATEMACHINE_ENTRY_OVERRIDE_CLEAR] = "override_clear",
    [STATEMACHINE_ENTRY_WINDOW_SET] = "window_set",
    [STATEMACHINE_ENTRY_WINDOW_DELETE] = "window_delete",
    [STATEMACHINE_ENTRY_RECORD_RESET] = "record_reset",
    [STATEMACHINE_ENTRY_ROLLOUT_UPDATE] = "rollout_update",
};

const char *statemachine_entry_type_name(int type)
{
    if (type <= 0 || type >= STATEMACHINE_ENTRY_TYPE_NR) {
        return "unknown";
    }
    return type_names[type];
}

static int check_len(const char *field, size_t len, size_t max, char *errmsg)
{
    if (len > max) {
        rems_errmsgf(errmsg, "%s: %zu bytes, at most %zu allowed", field, len,
                     max);
        return REMS_EINVAL;
    }
    return 0;
}

/* The body of agent, lease and command entries: every field that is set. */
static void pack_agent_body(msgpack_packer *pk,
                            const struct statemachine_entry *e)
{
    uint32_t n = 1;
    n += e->command_id_len > 0;
    n += e->action_len > 0;
    n += e->service_len > 0;
    n += e->outcome_len > 0;
    n += e->value != NULL;
    n += e->ttl_ms > 0;
    n += e->term > 0;
    n += e->node_id > 0;
    n += e->has_record;
    msgpack_pack_map(pk, n);
    statemachine__pack_kv_str(pk, "agent_id", e->agent_id, e->agent_id_len);
    if (e->command_id_len > 0) {
        statemachine__pack_kv_str(pk, "command_id", e->command_id,
                                  e->command_id_len);
    }
    if (e->action_len > 0) {
        statemachine__pack_kv_str(pk, "action", e->action, e->action_len);
    }
    if (e->service_len > 0) {
        statemachine__pack_kv_str(pk, "service", e->service, e->service_len);
    }
    if (e->outcome_len > 0) {
        statemachine__pack_kv_str(pk, "outcome", e->outcome, e->outcome_len);
    }
    if (e->value != NULL) {
        statemachine__pack_str(pk, "value", 5);
        msgpack_pack_bin(pk, e->value_len);
        msgpack_pack_bin_body(pk, e->value, e->value_len);
    }
    if (e->ttl_ms > 0) {
        statemachine__pack_kv_u64(pk, "ttl_ms", e->ttl_ms);
    }
    if (e->term > 0) {
        statemachine__pack_kv_u64(pk, "term", e->term);
    }
    if (e->node_id > 0) {
        statemachine__pack_kv_u64(pk, "node_id", e->node_id);
    }
    if (e->has_record) {
        statemachine__pack_str(pk, "record", 6);
        msgpack_pack_map(pk, 4);
        statemachine__pack_kv_u64(pk, "attempts", e->attempts);
        statemachine__pack_kv_u64(pk, "last_attempt_ms",
                                  e->record_last_attempt_ms);
        statemachine__pack_kv_str(pk, "last_action", e->record_action,
                                  e->record_action_len);
        statemachine__pack_kv_u64(pk, "digest", e->record_digest);
    }
}

/* The body of the reconciler's entries: the fields of its type. */
static void pack_reconcile_body(msgpack_packer *pk,
                                const struct statemachine_entry *e)
{
    uint32_t n;
    switch (e->type) {
        case STATEMACHINE_ENTRY_INCIDENT_OPEN:
            msgpack_pack_map(pk, 4 + (e->policy_len > 0) + (e->detail_len > 0));
            statemachine__pack_kv_str(pk, "agent_id", e->agent_id,
                                      e->agent_id_len);
            statemachine__pack_kv_str(pk, "service", e->service,
                                      e->service_len);
            statemachine__pack_kv_str(pk, "kind", e->kind, e->kind_len);
            statemachine__pack_kv_u64(pk, "attempts", e->attempts);
            if (e->policy_len > 0) {
                statemachine__pack_kv_str(pk, "policy", e->policy,
                                          e->policy_len);
            }
            if (e->detail_len > 0) {
                statemachine__pack_kv_str(pk, "detail", e->detail,
                                          e->detail_len);
            }
            break;
        case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
            msgpack_pack_map(pk, 2);
            statemachine__pack_kv_u64(pk, "incident_id", e->incident_id);
            statemachine__pack_kv_str(pk, "op", e->op, e->op_len);
            break;
        case STATEMACHINE_ENTRY_OVERRIDE_SET:
        case STATEMACHINE_ENTRY_OVERRIDE_CLEAR:
            n = 1 + (e->name_len > 0) + (e->agent_id_len > 0) +
                (e->until_ms > 0);
            msgpack_pack_map(pk, n);
            statemachine__pack_kv_str(pk, "scope", e->scope, e->scope_len);
            if (e->name_len > 0) {
                statemachine__pack_kv_str(pk, "name", e->name, e->name_len);
            }
            if (e->agent_id_len > 0) {
                statemachine__pack_kv_str(pk, "agent_id", e->agent_id,
                                          e->agent_id_len);
            }
            if (e->until_ms > 0) {
                statemachine__pack_kv_u64(pk, "until_ms", e->until_ms);
            }
            break;
        case STATEMACHINE_ENTRY_WINDOW_SET: {
            /* The fields of its kind, and any other that is set (for the
             * decoder to refuse). */
            bool once = !e->weekly || e->start_ms > 0 || e->end_ms > 0;
            bool weekly = e->weekly || e->days > 0 || e->start_minute > 0 ||
                          e->duration_minutes > 0;
            msgpack_pack_map(pk,
                             4 + (e->target_len > 0) + 2 * once + 3 * weekly);
            statemachine__pack_kv_str(pk, "name", e->name, e->name_len);
            statemachine__pack_kv_str(pk, "scope", e->scope, e->scope_len);
            if (e->target_len > 0) {
                statemachine__pack_kv_str(pk, "target", e->target,
                                          e->target_len);
            }
            statemachine__pack_kv_str(pk, "mode", e->mode, e->mode_len);
            statemachine__pack_str(pk, "weekly", 6);
            if (e->weekly) {
                msgpack_pack_true(pk);
            } else {
                msgpack_pack_false(pk);
            }
            if (weekly) {
                statemachine__pack_kv_u64(pk, "days", e->days);
                statemachine__pack_kv_u64(pk, "start_minute", e->start_minute);
                statemachine__pack_kv_u64(pk, "duration_minutes",
                                          e->duration_minutes);
            }
            if (once) {
                statemachine__pack_kv_u64(pk, "start_ms", e->start_ms);
                statemachine__pack_kv_u64(pk, "end_ms", e->end_ms);
            }
            break;
        }
        case STATEMACHINE_ENTRY_WINDOW_DELETE:
            msgpack_pack_map(pk, 1);
            statemachine__pack_kv_str(pk, "name", e->name, e->name_len);
            break;
        default: /* RECORD_RESET */
            msgpack_pack_map(pk, 3);
            statemachine__pack_kv_str(pk, "agent_id", e->agent_id,
                                      e->agent_id_len);
            statemachine__pack_kv_str(pk, "service", e->service,
                                      e->service_len);
            statemachine__pack_kv_str(pk, "op", e->op, e->op_len);
            break;
    }
}

/* The body of ROLLOUT_UPDATE: target_revision, and key, op, stage, batch
 * and value when set (for the decoder to refuse what is missing, and
 * stage, batch and value in other operations than advance). */
static void pack_rollout_body(msgpack_packer *pk,
                              const struct statemachine_entry *e)
{
    msgpack_pack_map(pk, 1 + (e->key != NULL) + (e->op != NULL) +
                             (e->stage != NULL) + e->has_batch +
                             (e->value != NULL));
    if (e->key != NULL) {
        statemachine__pack_kv_str(pk, "key", e->key, e->key_len);
    }
    statemachine__pack_kv_u64(pk, "target_revision", e->rollout_revision);
    if (e->op != NULL) {
        statemachine__pack_kv_str(pk, "op", e->op, e->op_len);
    }
    if (e->stage != NULL) {
        statemachine__pack_kv_str(pk, "stage", e->stage, e->stage_len);
    }
    if (e->has_batch) {
        statemachine__pack_kv_u64(pk, "batch", e->batch);
    }
    if (e->value != NULL) {
        statemachine__pack_kv_bin(pk, "value", e->value, e->value_len);
    }
}

int statemachine_entry_encode(const struct statemachine_entry *e,
                              void *(*alloc)(size_t),
                              void **buf,
                              size_t *len,
                              char *errmsg)
{
    struct rems_buf b;
    msgpack_packer pk;
    void *out;
    size_t padded;
    int rv;

    PRE(e->type > 0 && e->type < STATEMACHINE_ENTRY_TYPE_NR);
    rv = check_len("trace_id", e->trace_id_len, STATEMACHINE_ID_MAX, errmsg);
    if (rv == 0) {
        rv = check_len("request_id", e->request_id_len, STATEMACHINE_ID_MAX,
                       errmsg);
    }
    if (rv == 0) {
        rv = check_len("requested_by", e->requested_by_len,
                       STATEMACHINE_USER_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("reason", e->reason_len, STATEMACHINE_REASON_MAX,
                       errmsg);
    }
    if (rv == 0) {
        rv = check_len("raft_address", e->raft_address_len,
                       STATEMACHINE_ADDR_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("api_address", e->api_address_len,
                       STATEMACHINE_ADDR_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("agent_address", e->agent_address_len,
                       STATEMACHINE_ADDR_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("agent_id", e->agent_id_len, STATEMACHINE_ID_MAX,
                       errmsg);
    }
    if (rv == 0) {
        rv = check_len("command_id", e->command_id_len, STATEMACHINE_ID_MAX,
                       errmsg);
    }
    if (rv == 0) {
        rv = check_len("action", e->action_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("service", e->service_len, STATEMACHINE_NAME_MAX,
                       errmsg);
    }
    if (rv == 0) {
        rv = check_len("outcome", e->outcome_len, STATEMACHINE_NAME_MAX,
                       errmsg);
    }
    if (rv == 0 && e->type == STATEMACHINE_ENTRY_ROLLOUT_UPDATE) {
        rv = check_len("value", e->value_len, STATEMACHINE_REACHED_MAX,
                       errmsg);
    } else if (rv == 0 && e->type >= STATEMACHINE_ENTRY_AGENT_REGISTER) {
        rv = check_len("value", e->value_len, STATEMACHINE_BLOB_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("record.last_action", e->record_action_len,
                       STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("op", e->op_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("kind", e->kind_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("policy", e->policy_len, STATEMACHINE_KEY_MAX, errmsg);
    }
    if (rv == 0) {
        rv =
            check_len("detail", e->detail_len, STATEMACHINE_DETAIL_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("scope", e->scope_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("name", e->name_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("target", e->target_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("mode", e->mode_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv == 0) {
        rv = check_len("stage", e->stage_len, STATEMACHINE_NAME_MAX, errmsg);
    }
    if (rv != 0) {
        return rv;
    }

    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 8);
    statemachine__pack_kv_u64(&pk, "v", STATEMACHINE_ENVELOPE_VERSION);
    statemachine__pack_kv_u64(&pk, "type", (uint64_t)e->type);
    statemachine__pack_kv_u64(&pk, "time_ms", e->time_ms);
    statemachine__pack_kv_str(&pk, "trace_id", e->trace_id, e->trace_id_len);
    statemachine__pack_kv_str(&pk, "request_id", e->request_id, e->request_id_len);
    statemachine__pack_kv_str(&pk, "requested_by", e->requested_by, e->requested_by_len);
    statemachine__pack_kv_str(&pk, "reason", e->reason, e->reason_len);
    statemachine__pack_str(&pk, "body", 4);
    switch (e->type) {
        case STATEMACHINE_ENTRY_POLICY_PUT:
        case STATEMACHINE_ENTRY_POLICY_DELETE:
            msgpack_pack_map(&pk, e->type == STATEMACHINE_ENTRY_POLICY_PUT
                                      ? (e->has_if_revision ? 3 : 2)
                                      : (e->has_if_revision ? 2 : 1));
            statemachine__pack_kv_str(&pk, "key", e->key, e->key_len);
            if (e->type == STATEMACHINE_ENTRY_POLICY_PUT) {
                statemachine__pack_str(&pk, "value", 5);
                msgpack_pack_bin(&pk, e->value_len);
                msgpack_pack_bin_body(&pk, e->value != NULL ? e->value : "",
                                      e->value_len);
            }
            if (e->has_if_revision) {
                statemachine__pack_kv_u64(&pk, "if_revision", e->if_revision);
            }
            break;
        case STATEMACHINE_ENTRY_MEMBER_SET:
            /* agent_address only when set: entries without it stay
             * byte-identical to those of earlier versions. */
            msgpack_pack_map(&pk, e->agent_address_len > 0 ? 4 : 3);
            statemachine__pack_kv_u64(&pk, "id", e->member_id);
            statemachine__pack_kv_str(&pk, "raft_address", e->raft_address,
                        e->raft_address_len);
            statemachine__pack_kv_str(&pk, "api_address", e->api_address,
                        e->api_address_len);
            if (e->agent_address_len > 0) {
                statemachine__pack_kv_str(&pk, "agent_address",
                                          e->agent_address,
                                          e->agent_address_len);
            }
            break;
        case STATEMACHINE_ENTRY_MEMBER_DELETE:
            msgpack_pack_map(&pk, 1);
            statemachine__pack_kv_u64(&pk, "id", e->member_id);
            break;
        case STATEMACHINE_ENTRY_AGENT_REGISTER:
        case STATEMACHINE_ENTRY_LEASE_GRANT:
        case STATEMACHINE_ENTRY_LEASE_REVOKE:
        case STATEMACHINE_ENTRY_AGENT_REPORT:
        case STATEMACHINE_ENTRY_COMMAND_ISSUE:
        case STATEMACHINE_ENTRY_COMMAND_RESOLVE:
            pack_agent_body(&pk, e);
            break;
        case STATEMACHINE_ENTRY_INCIDENT_OPEN:
        case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
        case STATEMACHINE_ENTRY_OVERRIDE_SET:
        case STATEMACHINE_ENTRY_OVERRIDE_CLEAR:
        case STATEMACHINE_ENTRY_WINDOW_SET:
        case STATEMACHINE_ENTRY_WINDOW_DELETE:
        case STATEMACHINE_ENTRY_RECORD_RESET:
            pack_reconcile_body(&pk, e);
            break;
        case STATEMACHINE_ENTRY_ROLLOUT_UPDATE:
            pack_rollout_body(&pk, e);
            break;
        default:
            msgpack_pack_map(&pk, 0);
            break;
    }
    if (b.failed) {
        rems_buf_close(&b);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    /* raft_uv stores entries whose length is a multiple of 8: pad with
     * zero bytes, which decoding accepts after the envelope. */
    padded = (b.len + 7) & ~(size_t)7;
    out = alloc(padded);
    if (out == NULL) {
        rems_buf_close(&b);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    memcpy(out, b.data, b.len);
    memset((char *)out + b.len, 0, padded - b.len);
    *buf = out;
    *len = padded;
    rems_buf_close(&b);
    return 0;
}

/* Fields seen, to refuse duplicates and to check required ones. */
enum {
    F_V = 1u << 0,
    F_TYPE = 1u << 1,
    F_TIME = 1u << 2,
    F_TRACE = 1u << 3,
    F_REQ = 1u << 4,
    F_USER = 1u << 5,
    F_REASON = 1u << 6,
    F_BODY = 1u << 7,
};

static int bad(char *errmsg, const char *field, const char *rule)
{
    rems_errmsgf(errmsg, "entry: %s: %s", field, rule);
    return REMS_EMALFORMED;
}

static int read_limited_str(struct mpread *r,
                            const char *field,
                            size_t max,
                            const char **s,
                            size_t *len,
                            char *errmsg)
{
    if (mpread_str(r, s, len) != 0) {
        return bad(errmsg, field, "must be a string");
    }
    if (*len > max) {
        rems_errmsgf(errmsg, "entry: %s: %zu bytes, at most %zu allowed",
                     field, *len, max);
        return REMS_EMALFORMED;
    }
    return 0;
}

/* Required fields and value rules of agent, lease and command entries. */
static int check_agent_body(const struct statemachine_entry *e,
                            bool have_value,
                            char *errmsg)
{
    int state;
    if (e->agent_id == NULL) {
        return bad(errmsg, "body.agent_id", "required");
    }
    if (!statemachine_id_check(e->agent_id, e->agent_id_len)) {
        return bad(errmsg, "body.agent_id",
                   "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -");
    }
    switch (e->type) {
        case STATEMACHINE_ENTRY_AGENT_REGISTER:
        case STATEMACHINE_ENTRY_AGENT_REPORT:
            if (!have_value) {
                return bad(errmsg, "body.value", "required");
            }
            return 0;
        case STATEMACHINE_ENTRY_LEASE_GRANT:
            if (e->ttl_ms == 0 || e->ttl_ms > STATEMACHINE_TTL_MAX_MS) {
                return bad(errmsg, "body.ttl_ms",
                           "must be between 1 and 86400000");
            }
            return 0;
        case STATEMACHINE_ENTRY_LEASE_REVOKE:
            return 0;
        case STATEMACHINE_ENTRY_COMMAND_ISSUE:
            if (e->command_id == NULL ||
                !statemachine_id_check(e->command_id, e->command_id_len)) {
                return bad(errmsg, "body.command_id",
                           "required: 1 to 64 characters of A-Z a-z 0-9 _ . "
                           ": -");
            }
            if (e->action_len == 0) {
                return bad(errmsg, "body.action", "required");
            }
            if (e->ttl_ms == 0 || e->ttl_ms > STATEMACHINE_TTL_MAX_MS) {
                return bad(errmsg, "body.ttl_ms",
                           "must be between 1 and 86400000");
            }
            if (e->term == 0) {
                return bad(errmsg, "body.term", "required");
            }
            return e->has_record ? statemachine__check_reconcile_body(e, errmsg)
                                 : 0;
        default: /* COMMAND_RESOLVE */
            if (e->command_id == NULL ||
                !statemachine_id_check(e->command_id, e->command_id_len)) {
                return bad(errmsg, "body.command_id",
                           "required: 1 to 64 characters of A-Z a-z 0-9 _ . "
                           ": -");
            }
            if (e->outcome == NULL ||
                statemachine_command_outcome_parse(e->outcome, e->outcome_len,
                                                   &state) != 0) {
                return bad(errmsg, "body.outcome",
                           "must be acked, nacked, expired or cancelled");
            }
            return 0;
    }
}

static int decode_body(struct mpread *r,
                       struct statemachine_entry *e,
                       char *errmsg)
{
    uint32_t n;
    uint32_t i;
    bool have_key = false;
    bool have_value = false;
    bool have_id = false;
    int rv;

    if (mpread_map(r, &n) != 0) {
        return bad(errmsg, "body", "must be a map");
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (mpread_str(r, &k, &kl) != 0) {
            return bad(errmsg, "body", "keys must be strings");
        }
        if (mpread_streq(k, kl, "key")) {
            rv = read_limited_str(r, "body.key", STATEMACHINE_KEY_MAX, &e->key,
                                  &e->key_len, errmsg);
            if (rv != 0) {
                return rv;
            }
            have_key = true;
        } else if (mpread_streq(k, kl, "value")) {
            const void *v;
            if (mpread_bytes(r, &v, &e->value_len) != 0) {
                return bad(errmsg, "body.value", "must be bytes");
            }
            e->value = v;
            have_value = true;
        } else if (mpread_streq(k, kl, "if_revision")) {
            if (mpread_u64(r, &e->if_revision) != 0) {
                return bad(errmsg, "body.if_revision",
                           "must be an unsigned integer");
            }
            e->has_if_revision = true;
        } else if (mpread_streq(k, kl, "id")) {
            if (mpread_u64(r, &e->member_id) != 0 || e->member_id == 0) {
                return bad(errmsg, "body.id", "must be an integer >= 1");
            }
            have_id = true;
        } else if (mpread_streq(k, kl, "raft_address")) {
            rv = read_limited_str(r, "body.raft_address",
                                  STATEMACHINE_ADDR_MAX, &e->raft_address,
                                  &e->raft_address_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "api_address")) {
            rv = read_limited_str(r, "body.api_address",
                                  STATEMACHINE_ADDR_MAX, &e->api_address,
                                  &e->api_address_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "agent_address")) {
            rv = read_limited_str(r, "body.agent_address",
                                  STATEMACHINE_ADDR_MAX, &e->agent_address,
                                  &e->agent_address_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "agent_id")) {
            rv = read_limited_str(r, "body.agent_id", STATEMACHINE_ID_MAX,
                                  &e->agent_id, &e->agent_id_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "command_id")) {
            rv = read_limited_str(r, "body.command_id", STATEMACHINE_ID_MAX,
                                  &e->command_id, &e->command_id_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "action")) {
            rv = read_limited_str(r, "body.action", STATEMACHINE_NAME_MAX,
                                  &e->action, &e->action_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "service")) {
            rv = read_limited_str(r, "body.service", STATEMACHINE_NAME_MAX,
                                  &e->service, &e->service_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "outcome")) {
            rv = read_limited_str(r, "body.outcome", STATEMACHINE_NAME_MAX,
                                  &e->outcome, &e->outcome_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "ttl_ms")) {
            if (mpread_u64(r, &e->ttl_ms) != 0) {
                return bad(errmsg, "body.ttl_ms",
                           "must be an unsigned integer");
            }
        } else if (mpread_streq(k, kl, "term")) {
            if (mpread_u64(r, &e->term) != 0) {
                return bad(errmsg, "body.term", "must be an unsigned integer");
            }
        } else if (mpread_streq(k, kl, "node_id")) {
            if (mpread_u64(r, &e->node_id) != 0) {
                return bad(errmsg, "body.node_id",
                           "must be an unsigned integer");
            }
        } else if ((rv = statemachine__decode_reconcile_field(
                        r, k, kl, e, errmsg)) != REMS_ENOTFOUND) {
            if (rv != 0) {
                return rv;
            }
        } else if ((rv = statemachine__decode_rollout_field(
                        r, k, kl, e, errmsg)) != REMS_ENOTFOUND) {
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_skip(r) != 0) {
            return bad(errmsg, "body", "truncated");
        }
    }
    if (e->type == STATEMACHINE_ENTRY_ROLLOUT_UPDATE) {
        return statemachine__check_rollout_body(e, have_key, have_value,
                                                errmsg);
    }
    if (e->type >= STATEMACHINE_ENTRY_INCIDENT_OPEN) {
        return statemachine__check_reconcile_body(e, errmsg);
    }
    if (e->type >= STATEMACHINE_ENTRY_AGENT_REGISTER) {
        if (e->value_len > STATEMACHINE_BLOB_MAX) {
            rems_errmsgf(errmsg, "entry: body.value: %zu bytes, at most %d "
                         "allowed", e->value_len, STATEMACHINE_BLOB_MAX);
            return REMS_EMALFORMED;
        }
        return check_agent_body(e, have_value, errmsg);
    }
    if (e->type == STATEMACHINE_ENTRY_POLICY_PUT ||
        e->type == STATEMACHINE_ENTRY_POLICY_DELETE) {
        if (e->type == STATEMACHINE_ENTRY_POLICY_PUT && !have_value) {
            return bad(errmsg, "body.value", "required");
        }
        if (!have_key) {
            return bad(errmsg, "body.key", "required");
        }
        return statemachine_key_check(e->key, e->key_len, errmsg) == 0
                   ? 0
                   : REMS_EMALFORMED;
    }
    if (e->type == STATEMACHINE_ENTRY_MEMBER_SET &&
        (e->raft_address == NULL || e->api_address == NULL)) {
        return bad(errmsg,
                   e->raft_address == NULL ? "body.raft_address"
                                           : "body.api_address",
                   "required");
    }
    if ((e->type == STATEMACHINE_ENTRY_MEMBER_SET ||
         e->type == STATEMACHINE_ENTRY_MEMBER_DELETE) &&
        !have_id) {
        return bad(errmsg, "body.id", "required");
    }
    return 0;
}

int statemachine_entry_decode(const void *buf,
                              size_t len,
                              struct statemachine_entry *e,
                              char *errmsg)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    unsigned seen = 0;
    uint64_t u;
    struct mpread body;
    int rv;

    memset(e, 0, sizeof *e);
    mpread_init(&r, buf, len);
    if (mpread_map(&r, &n) != 0) {
        return bad(errmsg, "envelope", "must be a map");
    }
    memset(&body, 0, sizeof body);
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        unsigned bit = 0;
        if (mpread_str(&r, &k, &kl) != 0) {
            return bad(errmsg, "envelope", "keys must be strings");
        }
        if (mpread_streq(k, kl, "v")) {
            bit = F_V;
            if (mpread_u64(&r, &u) != 0) {
                return bad(errmsg, "v", "must be an unsigned integer");
            }
            if (u != STATEMACHINE_ENVELOPE_VERSION) {
                rems_errmsgf(errmsg,
                             "entry: v: version %llu is not supported "
                             "(this node reads version %d)",
                             (unsigned long long)u,
                             STATEMACHINE_ENVELOPE_VERSION);
                return REMS_EUNSUPPORTED;
            }
            e->version = (unsigned)u;
        } else if (mpread_streq(k, kl, "type")) {
            bit = F_TYPE;
            if (mpread_u64(&r, &u) != 0) {
                return bad(errmsg, "type", "must be an unsigned integer");
            }
            if (u == 0 || u >= STATEMACHINE_ENTRY_TYPE_NR) {
                rems_errmsgf(errmsg, "entry: type: unknown entry type %llu",
                             (unsigned long long)u);
                return REMS_EUNSUPPORTED;
            }
            e->type = (int)u;
        } else if (mpread_streq(k, kl, "time_ms")) {
            bit = F_TIME;
            if (mpread_u64(&r, &e->time_ms) != 0) {
                return bad(errmsg, "time_ms", "must be an unsigned integer");
            }
        } else if (mpread_streq(k, kl, "trace_id")) {
            bit = F_TRACE;
            rv = read_limited_str(&r, "trace_id", STATEMACHINE_ID_MAX,
                                  &e->trace_id, &e->trace_id_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "request_id")) {
            bit = F_REQ;
            rv = read_limited_str(&r, "request_id", STATEMACHINE_ID_MAX,
                                  &e->request_id, &e->request_id_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "requested_by")) {
            bit = F_USER;
            rv = read_limited_str(&r, "requested_by", STATEMACHINE_USER_MAX,
                                  &e->requested_by, &e->requested_by_len,
                                  errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "reason")) {
            bit = F_REASON;
            rv = read_limited_str(&r, "reason", STATEMACHINE_REASON_MAX,
                                  &e->reason, &e->reason_len, errmsg);
            if (rv != 0) {
                return rv;
            }
        } else if (mpread_streq(k, kl, "body")) {
            bit = F_BODY;
            /* Decoded once the type is known, whatever the field order. */
            body = r;
            if (mpread_skip(&r) != 0) {
                return bad(errmsg, "body", "truncated");
            }
        } else if (mpread_skip(&r) != 0) {
            return bad(errmsg, "envelope", "truncated");
        }
        if (bit != 0) {
            if (seen & bit) {
                rems_errmsgf(errmsg, "entry: %.*s: appears twice", (int)kl, k);
                return REMS_EMALFORMED;
            }
            seen |= bit;
        }
    }
    /* Up to 7 zero bytes of padding may follow (see encode). */
    if ((size_t)(r.end - r.p) >= 8) {
        return bad(errmsg, "envelope", "trailing bytes");
    }
    for (; r.p < r.end; r.p++) {
        if (*r.p != 0) {
            return bad(errmsg, "envelope", "trailing bytes");
        }
    }
    if (!(seen & F_V)) {
        return bad(errmsg, "v", "required");
    }
    if (!(seen & F_TYPE)) {
        return bad(errmsg, "type", "required");
    }
    if (!(seen & F_TIME)) {
        return bad(errmsg, "time_ms", "required");
    }
    if (!(seen & F_BODY)) {
        return bad(errmsg, "body", "required");
    }
    return decode_body(&body, e, errmsg);
}

bool statemachine_id_check(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > STATEMACHINE_ID_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static const char *const command_state_names[STATEMACHINE_COMMAND_STATE_NR] =
    {"pending", "acked", "nacked", "expired", "cancelled"};

const char *statemachine_command_state_name(int state)
{
    if (state < 0 || state >= STATEMACHINE_COMMAND_STATE_NR) {
        return "unknown";
    }
    return command_state_names[state];
}

int statemachine_command_outcome_parse(const char *s, size_t len, int *out)
{
    int i;
    for (i = STATEMACHINE_COMMAND_ACKED; i < STATEMACHINE_COMMAND_STATE_NR;
         i++) {
        if (mpread_streq(s, len, command_state_names[i])) {
            *out = i;
            return 0;
        }
    }
    return REMS_EINVAL;
}

int statemachine_key_check(const char *key, size_t len, char *errmsg)
{
    size_t i;
    size_t seg = 0; /* Start of the current segment. */
    if (len == 0 || len > STATEMACHINE_KEY_MAX) {
        rems_errmsgf(errmsg, "key: must be 1 to %d bytes long",
                     STATEMACHINE_KEY_MAX);
        return REMS_EINVAL;
    }
    for (i = 0; i <= len; i++) {
        char c = i < len ? key[i] : '/';
        if (c == '/') {
            size_t sl = i - seg;
            if (sl == 0) {
                rems_errmsgf(errmsg, "key: must not start or end with '/' "
                                     "or contain '//'");
                return REMS_EINVAL;
            }
            if ((sl == 1 && key[seg] == '.') ||
                (sl == 2 && key[seg] == '.' && key[seg + 1] == '.')) {
                rems_errmsgf(errmsg,
                             "key: must not contain a '.' or '..' segment");
                return REMS_EINVAL;
            }
            seg = i + 1;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            rems_errmsgf(errmsg,
                         "key: byte %zu is not one of A-Z a-z 0-9 . _ - /",
                         i);
            return REMS_EINVAL;
        }
    }
    return 0;
}
