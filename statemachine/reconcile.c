/* The reconciler's replicated state: remediation records, incidents,
 * overrides and maintenance windows (docs/adr/0005-reconciler.md).
 *
 * Records (MessagePack maps, so fields can be added later):
 *   remediations[agent \0 service]
 *       {attempts, last_attempt_ms, last_action, outcome, pending_digest,
 *        deployed_digest, command_id, updated_index}
 *   incidents[be64 id]
 *       {agent_id, service, kind, policy, detail, attempts, state,
 *        opened_ms, opened_by, opened_reason, acked_index, acked_ms,
 *        acked_by, acked_reason, resolved_index, resolved_ms, resolved_by,
 *        resolved_reason}
 *   overrides[scope byte, name, \0, agent]
 *       {scope, name, agent_id, until_ms, set_index, set_ms, requested_by,
 *        reason}                       (pause: key is the scope byte alone)
 *   incidents_open[be64 id]  one zero byte, for unresolved incidents only
 *   windows[name]
 *       {scope, target, mode, weekly, start_ms, end_ms, days, start_minute,
 *        duration_minutes, set_index, requested_by, reason}
 *
 * apply reads only the entry and the tables: never the clock. */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "common/assert.h"
#include "statemachine/pack_int.h"
#include "statemachine/reconcile_int.h"

#define WEEK_MINUTES 10080u
#define DAY_MINUTES 1440u

/* ------------------------------------------------------------------ */
/* Decoding and checks.                                                 */

static int bad(char *errmsg, const char *field, const char *rule)
{
    rems_errmsgf(errmsg, "entry: %s: %s", field, rule);
    return REMS_EMALFORMED;
}

/* Names of services, sites and drift kinds: 1..64 printable bytes. */
static bool name_ok(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len == 0 || len > STATEMACHINE_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Words such as "redeploy" or "missing_service": 1..64 of [a-z_]. */
static bool word_ok(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len == 0 || len > STATEMACHINE_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static int read_str(struct mpread *r,
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
        rems_errmsgf(errmsg, "entry: %s: %zu bytes, at most %zu allowed", field,
                     *len, max);
        return REMS_EMALFORMED;
    }
    return 0;
}

static int
read_u64(struct mpread *r, const char *field, uint64_t *v, char *errmsg)
{
    if (mpread_u64(r, v) != 0) {
        return bad(errmsg, field, "must be an unsigned integer");
    }
    return 0;
}

static int
decode_record(struct mpread *r, struct statemachine_entry *e, char *errmsg)
{
    uint32_t n;
    uint32_t i;
    bool have_attempts = false;
    bool have_ms = false;
    int rv;

    if (mpread_map(r, &n) != 0) {
        return bad(errmsg, "body.record", "must be a map");
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (mpread_str(r, &k, &kl) != 0) {
            return bad(errmsg, "body.record", "keys must be strings");
        }
        if (mpread_streq(k, kl, "attempts")) {
            rv = read_u64(r, "body.record.attempts", &e->attempts, errmsg);
            have_attempts = true;
        } else if (mpread_streq(k, kl, "last_attempt_ms")) {
            rv = read_u64(r, "body.record.last_attempt_ms",
                          &e->record_last_attempt_ms, errmsg);
            have_ms = true;
        } else if (mpread_streq(k, kl, "last_action")) {
            rv = read_str(r, "body.record.last_action", STATEMACHINE_NAME_MAX,
                          &e->record_action, &e->record_action_len, errmsg);
        } else if (mpread_streq(k, kl, "digest")) {
            rv = read_u64(r, "body.record.digest", &e->record_digest, errmsg);
        } else {
            rv = mpread_skip(r) == 0 ? 0
                                     : bad(errmsg, "body.record", "truncated");
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (!have_attempts) {
        return bad(errmsg, "body.record.attempts", "required");
    }
    if (!have_ms) {
        return bad(errmsg, "body.record.last_attempt_ms", "required");
    }
    if (e->record_action == NULL) {
        return bad(errmsg, "body.record.last_action", "required");
    }
    e->has_record = true;
    return 0;
}

int statemachine__decode_reconcile_field(struct mpread *r,
                                         const char *k,
                                         size_t kl,
                                         struct statemachine_entry *e,
                                         char *errmsg)
{
    if (mpread_streq(k, kl, "record")) {
        return decode_record(r, e, errmsg);
    }
    if (mpread_streq(k, kl, "attempts")) {
        return read_u64(r, "body.attempts", &e->attempts, errmsg);
    }
    if (mpread_streq(k, kl, "incident_id")) {
        return read_u64(r, "body.incident_id", &e->incident_id, errmsg);
    }
    if (mpread_streq(k, kl, "op")) {
        return read_str(r, "body.op", STATEMACHINE_NAME_MAX, &e->op, &e->op_len,
                        errmsg);
    }
    if (mpread_streq(k, kl, "kind")) {
        return read_str(r, "body.kind", STATEMACHINE_NAME_MAX, &e->kind,
                        &e->kind_len, errmsg);
    }
    if (mpread_streq(k, kl, "policy")) {
        return read_str(r, "body.policy", STATEMACHINE_KEY_MAX, &e->policy,
                        &e->policy_len, errmsg);
    }
    if (mpread_streq(k, kl, "detail")) {
        return read_str(r, "body.detail", STATEMACHINE_DETAIL_MAX, &e->detail,
                        &e->detail_len, errmsg);
    }
    if (mpread_streq(k, kl, "scope")) {
        return read_str(r, "body.scope", STATEMACHINE_NAME_MAX, &e->scope,
                        &e->scope_len, errmsg);
    }
    if (mpread_streq(k, kl, "name")) {
        return read_str(r, "body.name", STATEMACHINE_NAME_MAX, &e->name,
                        &e->name_len, errmsg);
    }
    if (mpread_streq(k, kl, "target")) {
        return read_str(r, "body.target", STATEMACHINE_NAME_MAX, &e->target,
                        &e->target_len, errmsg);
    }
    if (mpread_streq(k, kl, "mode")) {
        return read_str(r, "body.mode", STATEMACHINE_NAME_MAX, &e->mode,
                        &e->mode_len, errmsg);
    }
    if (mpread_streq(k, kl, "weekly")) {
        if (mpread_bool(r, &e->weekly) != 0) {
            return bad(errmsg, "body.weekly", "must be a boolean");
        }
        return 0;
    }
    if (mpread_streq(k, kl, "until_ms")) {
        return read_u64(r, "body.until_ms", &e->until_ms, errmsg);
    }
    if (mpread_streq(k, kl, "start_ms")) {
        return read_u64(r, "body.start_ms", &e->start_ms, errmsg);
    }
    if (mpread_streq(k, kl, "end_ms")) {
        return read_u64(r, "body.end_ms", &e->end_ms, errmsg);
    }
    if (mpread_streq(k, kl, "days")) {
        return read_u64(r, "body.days", &e->days, errmsg);
    }
    if (mpread_streq(k, kl, "start_minute")) {
        return read_u64(r, "body.start_minute", &e->start_minute, errmsg);
    }
    if (mpread_streq(k, kl, "duration_minutes")) {
        return read_u64(r, "body.duration_minutes", &e->duration_minutes,
                        errmsg);
    }
    return REMS_ENOTFOUND;
}

static int parse_override_scope(const char *s, size_t len)
{
    if (mpread_streq(s, len, "service")) {
        return STATEMACHINE_OVERRIDE_SERVICE;
    }
    if (mpread_streq(s, len, "agent")) {
        return STATEMACHINE_OVERRIDE_AGENT;
    }
    if (mpread_streq(s, len, "site")) {
        return STATEMACHINE_OVERRIDE_SITE;
    }
    if (mpread_streq(s, len, "pause")) {
        return STATEMACHINE_OVERRIDE_PAUSE;
    }
    return 0;
}

static int parse_window_scope(const char *s, size_t len)
{
    if (mpread_streq(s, len, "global")) {
        return STATEMACHINE_WINDOW_GLOBAL;
    }
    if (mpread_streq(s, len, "site")) {
        return STATEMACHINE_WINDOW_SITE;
    }
    if (mpread_streq(s, len, "agent")) {
        return STATEMACHINE_WINDOW_AGENT;
    }
    return 0;
}

static int parse_window_mode(const char *s, size_t len)
{
    if (mpread_streq(s, len, "auto_inside_only")) {
        return STATEMACHINE_WINDOW_AUTO_INSIDE_ONLY;
    }
    if (mpread_streq(s, len, "never_inside")) {
        return STATEMACHINE_WINDOW_NEVER_INSIDE;
    }
    return 0;
}

#define ID_RULE "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"
#define NAME_RULE "must be 1 to 64 printable bytes"
#define WORD_RULE "must be 1 to 64 characters of a-z _"

static int check_agent(const struct statemachine_entry *e, char *errmsg)
{
    if (e->agent_id == NULL) {
        return bad(errmsg, "body.agent_id", "required");
    }
    if (!statemachine_id_check(e->agent_id, e->agent_id_len)) {
        return bad(errmsg, "body.agent_id", ID_RULE);
    }
    return 0;
}

static int check_override(const struct statemachine_entry *e, char *errmsg)
{
    int scope;
    if (e->scope == NULL) {
        return bad(errmsg, "body.scope", "required");
    }
    scope = parse_override_scope(e->scope, e->scope_len);
    if (scope == 0) {
        return bad(errmsg, "body.scope",
                   "must be service, agent, site or pause");
    }
    if (e->until_ms > 0 && e->type == STATEMACHINE_ENTRY_OVERRIDE_CLEAR) {
        return bad(errmsg, "body.until_ms", "not allowed in override_clear");
    }
    if (scope == STATEMACHINE_OVERRIDE_PAUSE) {
        if (e->name != NULL) {
            return bad(errmsg, "body.name", "not allowed for pause");
        }
        if (e->agent_id != NULL) {
            return bad(errmsg, "body.agent_id", "not allowed for pause");
        }
        if (e->until_ms > 0) {
            return bad(errmsg, "body.until_ms", "not allowed for pause");
        }
        return 0;
    }
    if (e->name == NULL) {
        return bad(errmsg, "body.name", "required");
    }
    if (scope == STATEMACHINE_OVERRIDE_AGENT
            ? !statemachine_id_check(e->name, e->name_len)
            : !name_ok(e->name, e->name_len)) {
        return bad(errmsg, "body.name",
                   scope == STATEMACHINE_OVERRIDE_AGENT ? ID_RULE : NAME_RULE);
    }
    if (e->agent_id != NULL) {
        if (scope != STATEMACHINE_OVERRIDE_SERVICE) {
            return bad(errmsg, "body.agent_id",
                       "only allowed for a service freeze");
        }
        if (!statemachine_id_check(e->agent_id, e->agent_id_len)) {
            return bad(errmsg, "body.agent_id", ID_RULE);
        }
    }
    if (e->until_ms > 0 && e->until_ms <= e->time_ms) {
        return bad(errmsg, "body.until_ms", "must be after time_ms");
    }
    return 0;
}

/* The rules of reconcile_window_check() (cluster/reconcile.h). */
static int check_window(const struct statemachine_entry *e, char *errmsg)
{
    int scope;
    if (e->name == NULL) {
        return bad(errmsg, "body.name", "required");
    }
    if (!statemachine_id_check(e->name, e->name_len)) {
        return bad(errmsg, "body.name", ID_RULE);
    }
    if (e->type == STATEMACHINE_ENTRY_WINDOW_DELETE) {
        return 0;
    }
    if (e->scope == NULL) {
        return bad(errmsg, "body.scope", "required");
    }
    scope = parse_window_scope(e->scope, e->scope_len);
    if (scope == 0) {
        return bad(errmsg, "body.scope", "must be global, site or agent");
    }
    if (scope == STATEMACHINE_WINDOW_GLOBAL) {
        if (e->target != NULL) {
            return bad(errmsg, "body.target", "not allowed for global");
        }
    } else if (e->target == NULL) {
        return bad(errmsg, "body.target", "required for site and agent");
    } else if (scope == STATEMACHINE_WINDOW_AGENT
                   ? !statemachine_id_check(e->target, e->target_len)
                   : !name_ok(e->target, e->target_len)) {
        return bad(errmsg, "body.target",
                   scope == STATEMACHINE_WINDOW_AGENT ? ID_RULE : NAME_RULE);
    }
    if (e->mode == NULL) {
        return bad(errmsg, "body.mode", "required");
    }
    if (parse_window_mode(e->mode, e->mode_len) == 0) {
        return bad(errmsg, "body.mode",
                   "must be auto_inside_only or never_inside");
    }
    if (!e->weekly) {
        if (e->days != 0 || e->start_minute != 0 || e->duration_minutes != 0) {
            return bad(errmsg,
                       e->days != 0           ? "body.days"
                       : e->start_minute != 0 ? "body.start_minute"
                                              : "body.duration_minutes",
                       "only for weekly windows");
        }
        if (e->end_ms <= e->start_ms) {
            return bad(errmsg, "body.end_ms", "must be after start_ms");
        }
        return 0;
    }
    if (e->start_ms != 0 || e->end_ms != 0) {
        return bad(errmsg, e->start_ms != 0 ? "body.start_ms" : "body.end_ms",
                   "only for windows that are not weekly");
    }
    if (e->days < 1 || e->days > 127) {
        return bad(errmsg, "body.days", "must be 1..127 (bit 0 = Monday)");
    }
    if (e->start_minute >= DAY_MINUTES) {
        return bad(errmsg, "body.start_minute", "must be 0..1439");
    }
    if (e->duration_minutes < 1 || e->duration_minutes > WEEK_MINUTES) {
        return bad(errmsg, "body.duration_minutes", "must be 1..10080");
    }
    return 0;
}

int statemachine__check_reconcile_body(const struct statemachine_entry *e,
                                       char *errmsg)
{
    int rv;
    switch (e->type) {
        case STATEMACHINE_ENTRY_COMMAND_ISSUE: /* with a record */
            if (!name_ok(e->service, e->service_len)) {
                return bad(errmsg, "body.service",
                           "required with a record: " NAME_RULE);
            }
            if (e->attempts < 1 || e->attempts > STATEMACHINE_ATTEMPTS_MAX) {
                return bad(errmsg, "body.record.attempts",
                           "must be 1..1000000");
            }
            if (!word_ok(e->record_action, e->record_action_len)) {
                return bad(errmsg, "body.record.last_action", WORD_RULE);
            }
            return 0;
        case STATEMACHINE_ENTRY_INCIDENT_OPEN:
            rv = check_agent(e, errmsg);
            if (rv != 0) {
                return rv;
            }
            if (e->service_len > 0 && !name_ok(e->service, e->service_len)) {
                return bad(errmsg, "body.service", NAME_RULE);
            }
            if (e->kind == NULL) {
                return bad(errmsg, "body.kind", "required");
            }
            if (!word_ok(e->kind, e->kind_len)) {
                return bad(errmsg, "body.kind", WORD_RULE);
            }
            if (e->attempts > STATEMACHINE_ATTEMPTS_MAX) {
                return bad(errmsg, "body.attempts", "must be 0..1000000");
            }
            if (e->policy_len > 0 &&
                statemachine_key_check(e->policy, e->policy_len, errmsg) != 0) {
                char why[REMS_ERRMSG_SIZE];
                rems_errmsgf(why, "%s", errmsg);
                rems_errmsgf(errmsg, "entry: body.policy: %s", why);
                return REMS_EMALFORMED;
            }
            return 0;
        case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
            if (e->incident_id == 0) {
                return bad(errmsg, "body.incident_id", "required (>= 1)");
            }
            if (e->op == NULL) {
                return bad(errmsg, "body.op", "required");
            }
            if (!mpread_streq(e->op, e->op_len, "acknowledge") &&
                !mpread_streq(e->op, e->op_len, "resolve")) {
                return bad(errmsg, "body.op", "must be acknowledge or resolve");
            }
            if (e->requested_by_len == 0) {
                return bad(errmsg, "requested_by",
                           "required for incident_update");
            }
            return 0;
        case STATEMACHINE_ENTRY_OVERRIDE_SET:
        case STATEMACHINE_ENTRY_OVERRIDE_CLEAR:
            return check_override(e, errmsg);
        case STATEMACHINE_ENTRY_WINDOW_SET:
        case STATEMACHINE_ENTRY_WINDOW_DELETE:
            return check_window(e, errmsg);
        default: /* RECORD_RESET */
            rv = check_agent(e, errmsg);
            if (rv != 0) {
                return rv;
            }
            if (e->service == NULL) {
                return bad(errmsg, "body.service", "required");
            }
            if (!name_ok(e->service, e->service_len)) {
                return bad(errmsg, "body.service", NAME_RULE);
            }
            if (e->op == NULL) {
                return bad(errmsg, "body.op", "required");
            }
            if (!mpread_streq(e->op, e->op_len, "reset") &&
                !mpread_streq(e->op, e->op_len, "delete")) {
                return bad(errmsg, "body.op", "must be reset or delete");
            }
            return 0;
    }
}

/* ------------------------------------------------------------------ */
/* Stored maps.                                                         */

enum { F_U64, F_STR, F_BOOL };

struct field {
    const char *name;
    int kind;
    void *p;     /* uint64_t *, const char **, bool * */
    size_t *len; /* F_STR */
};

/* Decode a stored map whose fields are all in @f (others skipped). */
static int
decode_map(const void *v, size_t vl, const struct field *f, size_t nf)
{
    struct mpread r;
    uint32_t n;
    uint32_t i;
    size_t j;
    size_t seen = 0;

    mpread_init(&r, v, vl);
    if (mpread_map(&r, &n) != 0) {
        return REMS_ECORRUPT;
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        int rv = -1;
        if (mpread_str(&r, &k, &kl) != 0) {
            return REMS_ECORRUPT;
        }
        for (j = 0; j < nf; j++) {
            if (mpread_streq(k, kl, f[j].name)) {
                break;
            }
        }
        if (j == nf) {
            rv = mpread_skip(&r);
        } else if (f[j].kind == F_U64) {
            rv = mpread_u64(&r, f[j].p);
            seen++;
        } else if (f[j].kind == F_STR) {
            rv = mpread_str(&r, f[j].p, f[j].len);
            seen++;
        } else {
            rv = mpread_bool(&r, f[j].p);
            seen++;
        }
        if (rv != 0) {
            return REMS_ECORRUPT;
        }
    }
    return seen == nf ? 0 : REMS_ECORRUPT;
}

static void pack_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    statemachine__pack_str(pk, k, strlen(k));
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

/* ------------------------------------------------------------------ */
/* Remediation records.                                                 */

static int record_key(const char *agent,
                      size_t agent_len,
                      const char *service,
                      size_t service_len,
                      char *key,
                      size_t *len)
{
    if (agent_len == 0 || agent_len > STATEMACHINE_ID_MAX || service_len == 0 ||
        service_len > STATEMACHINE_NAME_MAX) {
        return REMS_ENOTFOUND;
    }
    memcpy(key, agent, agent_len);
    key[agent_len] = '\0';
    memcpy(key + agent_len + 1, service, service_len);
    *len = agent_len + 1 + service_len;
    return 0;
}

#define RECORD_KEY_MAX (STATEMACHINE_ID_MAX + 1 + STATEMACHINE_NAME_MAX)

static int decode_remediation(const void *k,
                              size_t kl,
                              const void *v,
                              size_t vl,
                              struct statemachine_remediation *out,
                              char *errmsg)
{
    struct statemachine_remediation r;
    const char *nul = memchr(k, '\0', kl);
    uint64_t outcome = 0;
    struct field f[] = {
        {"attempts", F_U64, &r.attempts, NULL},
        {"last_attempt_ms", F_U64, &r.last_attempt_ms, NULL},
        {"last_action", F_STR, &r.last_action, &r.last_action_len},
        {"outcome", F_U64, &outcome, NULL},
        {"pending_digest", F_U64, &r.pending_digest, NULL},
        {"deployed_digest", F_U64, &r.deployed_digest, NULL},
        {"command_id", F_STR, &r.command_id, &r.command_id_len},
        {"updated_index", F_U64, &r.updated_index, NULL},
    };
    memset(&r, 0, sizeof r);
    if (nul == NULL || decode_map(v, vl, f, sizeof f / sizeof f[0]) != 0 ||
        outcome >= STATEMACHINE_RECORD_OUTCOME_NR) {
        rems_errmsgf(errmsg, "remediations[%.*s]: record is corrupt", (int)kl,
                     (const char *)k);
        return REMS_ECORRUPT;
    }
    r.agent_id = k;
    r.agent_id_len = (size_t)(nul - (const char *)k);
    r.service = nul + 1;
    r.service_len = kl - r.agent_id_len - 1;
    r.outcome = (int)outcome;
    *out = r;
    return 0;
}

int statemachine_remediation_get(struct storage_txn *t,
                                 const char *agent_id,
                                 size_t agent_id_len,
                                 const char *service,
                                 size_t service_len,
                                 struct statemachine_remediation *out,
                                 char *errmsg)
{
    char key[RECORD_KEY_MAX];
    size_t kl;
    const void *k;
    const void *v;
    size_t vl;
    int rv = record_key(agent_id, agent_id_len, service, service_len, key, &kl);
    if (rv != 0) {
        return rv;
    }
    rv = storage_get(t, STORAGE_REMEDIATIONS, key, kl, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    /* @key lives on this stack: the strings named are the caller's. */
    k = key;
    rv = decode_remediation(k, kl, v, vl, out, errmsg);
    if (rv == 0) {
        out->agent_id = agent_id;
        out->service = service;
    }
    return rv;
}

static int put_remediation(struct storage_txn *t,
                           const struct statemachine_remediation *r,
                           char *errmsg)
{
    char key[RECORD_KEY_MAX];
    size_t kl;
    struct rems_buf b;
    msgpack_packer pk;
    int rv = record_key(r->agent_id, r->agent_id_len, r->service,
                        r->service_len, key, &kl);
    REMS_ASSERT(rv == 0); /* Checked by the decoder. */
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 8);
    statemachine__pack_kv_u64(&pk, "attempts", r->attempts);
    statemachine__pack_kv_u64(&pk, "last_attempt_ms", r->last_attempt_ms);
    statemachine__pack_kv_str(&pk, "last_action", r->last_action,
                              r->last_action_len);
    statemachine__pack_kv_u64(&pk, "outcome", (uint64_t)r->outcome);
    statemachine__pack_kv_u64(&pk, "pending_digest", r->pending_digest);
    statemachine__pack_kv_u64(&pk, "deployed_digest", r->deployed_digest);
    statemachine__pack_kv_str(&pk, "command_id", r->command_id,
                              r->command_id_len);
    statemachine__pack_kv_u64(&pk, "updated_index", r->updated_index);
    return statemachine__buf_put(t, STORAGE_REMEDIATIONS, key, kl, &b, errmsg);
}

int statemachine__record_issue(struct storage_txn *t,
                               uint64_t index,
                               const struct statemachine_entry *e,
                               char *errmsg)
{
    struct statemachine_remediation r;
    uint64_t deployed = 0;
    int rv =
        statemachine_remediation_get(t, e->agent_id, e->agent_id_len,
                                     e->service, e->service_len, &r, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    if (rv == 0) {
        deployed = r.deployed_digest;
    }
    memset(&r, 0, sizeof r);
    r.agent_id = e->agent_id;
    r.agent_id_len = e->agent_id_len;
    r.service = e->service;
    r.service_len = e->service_len;
    r.attempts = e->attempts;
    r.last_attempt_ms = e->record_last_attempt_ms;
    r.last_action = e->record_action;
    r.last_action_len = e->record_action_len;
    r.outcome = STATEMACHINE_RECORD_PENDING;
    r.pending_digest = e->record_digest;
    r.deployed_digest = deployed;
    r.command_id = e->command_id;
    r.command_id_len = e->command_id_len;
    r.updated_index = index;
    return put_remediation(t, &r, errmsg);
}

int statemachine__record_resolve(struct storage_txn *t,
                                 uint64_t index,
                                 const char *agent,
                                 size_t agent_len,
                                 const char *service,
                                 size_t service_len,
                                 const char *command_id,
                                 size_t command_id_len,
                                 int state,
                                 char *errmsg)
{
    struct statemachine_remediation r;
    int rv;
    if (service_len == 0) {
        return 0;
    }
    rv = statemachine_remediation_get(t, agent, agent_len, service, service_len,
                                      &r, errmsg);
    if (rv == REMS_ENOTFOUND) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    if (r.outcome != STATEMACHINE_RECORD_PENDING ||
        r.command_id_len != command_id_len ||
        memcmp(r.command_id, command_id, command_id_len) != 0) {
        return 0; /* Not this command's record (any more). */
    }
    /* reconcile_record_resolve() of cluster/reconcile.h. */
    if (state == STATEMACHINE_COMMAND_ACKED) {
        r.outcome = STATEMACHINE_RECORD_SUCCEEDED;
        if (mpread_streq(r.last_action, r.last_action_len,
                         STATEMACHINE_ACTION_REDEPLOY)) {
            r.deployed_digest = r.pending_digest;
        }
    } else {
        r.outcome = STATEMACHINE_RECORD_FAILED;
    }
    r.pending_digest = 0;
    r.updated_index = index;
    return put_remediation(t, &r, errmsg);
}

/* Reset the attempts of (@agent, @service), or delete its record. */
static int record_reset(struct storage_txn *t,
                        uint64_t index,
                        const char *agent,
                        size_t agent_len,
                        const char *service,
                        size_t service_len,
                        bool del,
                        char *errmsg)
{
    struct statemachine_remediation r;
    char key[RECORD_KEY_MAX];
    size_t kl;
    int rv = statemachine_remediation_get(t, agent, agent_len, service,
                                          service_len, &r, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (del) {
        rv = record_key(agent, agent_len, service, service_len, key, &kl);
        REMS_ASSERT(rv == 0);
        return storage_del(t, STORAGE_REMEDIATIONS, key, kl, errmsg);
    }
    r.attempts = 0;
    r.updated_index = index;
    return put_remediation(t, &r, errmsg);
}

int statemachine_remediation_list(struct storage_txn *t,
                                  const char *agent_id,
                                  size_t agent_id_len,
                                  const char *after_agent,
                                  size_t after_agent_len,
                                  const char *after_service,
                                  size_t after_service_len,
                                  size_t limit,
                                  statemachine_remediation_visit visit,
                                  void *data,
                                  bool *more,
                                  char *errmsg)
{
    struct storage_cursor *c;
    char start[RECORD_KEY_MAX + 1];
    size_t start_len = 0;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t n = 0;
    int rv;

    *more = false;
    if (after_agent_len > STATEMACHINE_ID_MAX ||
        after_service_len > STATEMACHINE_NAME_MAX) {
        return 0; /* No stored key sorts after: nothing to list. */
    }
    if (after_agent_len > 0) {
        memcpy(start, after_agent, after_agent_len);
        start[after_agent_len] = '\0';
        memcpy(start + after_agent_len + 1, after_service, after_service_len);
        start_len = after_agent_len + 1 + after_service_len;
        start[start_len++] = '\0'; /* The first key after it. */
    } else if (agent_id != NULL && agent_id_len > 0 &&
               agent_id_len <= STATEMACHINE_ID_MAX) {
        memcpy(start, agent_id, agent_id_len);
        start[agent_id_len] = '\0';
        start_len = agent_id_len + 1;
    }
    rv = storage_cursor_open(t, STORAGE_REMEDIATIONS, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_cursor_seek(c, start, start_len, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_remediation r;
        rv = decode_remediation(k, kl, v, vl, &r, errmsg);
        if (rv != 0) {
            break;
        }
        if (agent_id != NULL) {
            int cmp = memcmp(r.agent_id, agent_id,
                             r.agent_id_len < agent_id_len ? r.agent_id_len
                                                           : agent_id_len);
            if (cmp > 0 || (cmp == 0 && r.agent_id_len > agent_id_len)) {
                break; /* Past the agent's records. */
            }
            if (cmp != 0 || r.agent_id_len != agent_id_len) {
                rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
                continue;
            }
        }
        if (n == limit) {
            *more = true;
            break;
        }
        rv = visit(data, &r);
        if (rv != 0) {
            break;
        }
        n++;
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

/* ------------------------------------------------------------------ */
/* Incidents.                                                           */

static const char *const incident_state_names[STATEMACHINE_INCIDENT_STATE_NR] =
    {"open", "acknowledged", "resolved"};

const char *statemachine_incident_state_name(int state)
{
    if (state < 0 || state >= STATEMACHINE_INCIDENT_STATE_NR) {
        return "unknown";
    }
    return incident_state_names[state];
}

static int decode_incident(uint64_t id,
                           const void *v,
                           size_t vl,
                           struct statemachine_incident *out,
                           char *errmsg)
{
    struct statemachine_incident i;
    uint64_t state = 0;
    struct field f[] = {
        {"agent_id", F_STR, &i.agent_id, &i.agent_id_len},
        {"service", F_STR, &i.service, &i.service_len},
        {"kind", F_STR, &i.kind, &i.kind_len},
        {"policy", F_STR, &i.policy, &i.policy_len},
        {"detail", F_STR, &i.detail, &i.detail_len},
        {"attempts", F_U64, &i.attempts, NULL},
        {"state", F_U64, &state, NULL},
        {"opened_ms", F_U64, &i.opened_ms, NULL},
        {"opened_by", F_STR, &i.opened_by, &i.opened_by_len},
        {"opened_reason", F_STR, &i.opened_reason, &i.opened_reason_len},
        {"acked_index", F_U64, &i.acked_index, NULL},
        {"acked_ms", F_U64, &i.acked_ms, NULL},
        {"acked_by", F_STR, &i.acked_by, &i.acked_by_len},
        {"acked_reason", F_STR, &i.acked_reason, &i.acked_reason_len},
        {"resolved_index", F_U64, &i.resolved_index, NULL},
        {"resolved_ms", F_U64, &i.resolved_ms, NULL},
        {"resolved_by", F_STR, &i.resolved_by, &i.resolved_by_len},
        {"resolved_reason", F_STR, &i.resolved_reason, &i.resolved_reason_len},
    };
    memset(&i, 0, sizeof i);
    if (decode_map(v, vl, f, sizeof f / sizeof f[0]) != 0 ||
        state >= STATEMACHINE_INCIDENT_STATE_NR) {
        rems_errmsgf(errmsg, "incidents[%llu]: record is corrupt",
                     (unsigned long long)id);
        return REMS_ECORRUPT;
    }
    i.id = id;
    i.state = (int)state;
    *out = i;
    return 0;
}

int statemachine_incident_get(struct storage_txn *t,
                              uint64_t id,
                              struct statemachine_incident *out,
                              char *errmsg)
{
    unsigned char k[8];
    const void *v;
    size_t vl;
    int rv;
    storage_u64_key(id, k);
    rv = storage_get(t, STORAGE_INCIDENTS, k, sizeof k, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    return decode_incident(id, v, vl, out, errmsg);
}

static int put_incident(struct storage_txn *t,
                        const struct statemachine_incident *i,
                        char *errmsg)
{
    unsigned char k[8];
    struct rems_buf b;
    msgpack_packer pk;
    storage_u64_key(i->id, k);
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 18);
    statemachine__pack_kv_str(&pk, "agent_id", i->agent_id, i->agent_id_len);
    statemachine__pack_kv_str(&pk, "service", i->service, i->service_len);
    statemachine__pack_kv_str(&pk, "kind", i->kind, i->kind_len);
    statemachine__pack_kv_str(&pk, "policy", i->policy, i->policy_len);
    statemachine__pack_kv_str(&pk, "detail", i->detail, i->detail_len);
    statemachine__pack_kv_u64(&pk, "attempts", i->attempts);
    statemachine__pack_kv_u64(&pk, "state", (uint64_t)i->state);
    statemachine__pack_kv_u64(&pk, "opened_ms", i->opened_ms);
    statemachine__pack_kv_str(&pk, "opened_by", i->opened_by, i->opened_by_len);
    statemachine__pack_kv_str(&pk, "opened_reason", i->opened_reason,
                              i->opened_reason_len);
    statemachine__pack_kv_u64(&pk, "acked_index", i->acked_index);
    statemachine__pack_kv_u64(&pk, "acked_ms", i->acked_ms);
    statemachine__pack_kv_str(&pk, "acked_by", i->acked_by, i->acked_by_len);
    statemachine__pack_kv_str(&pk, "acked_reason", i->acked_reason,
                              i->acked_reason_len);
    statemachine__pack_kv_u64(&pk, "resolved_index", i->resolved_index);
    statemachine__pack_kv_u64(&pk, "resolved_ms", i->resolved_ms);
    statemachine__pack_kv_str(&pk, "resolved_by", i->resolved_by,
                              i->resolved_by_len);
    statemachine__pack_kv_str(&pk, "resolved_reason", i->resolved_reason,
                              i->resolved_reason_len);
    return statemachine__buf_put(t, STORAGE_INCIDENTS, k, sizeof k, &b, errmsg);
}

static int apply_incident_open(struct storage_txn *t,
                               uint64_t index,
                               const struct statemachine_entry *e,
                               struct statemachine_result *res,
                               char *errmsg)
{
    struct statemachine_incident i;
    unsigned char k[8];
    int rv;
    memset(&i, 0, sizeof i);
    i.id = index;
    i.agent_id = e->agent_id;
    i.agent_id_len = e->agent_id_len;
    i.service = e->service;
    i.service_len = e->service_len;
    i.kind = e->kind;
    i.kind_len = e->kind_len;
    i.policy = e->policy;
    i.policy_len = e->policy_len;
    i.detail = e->detail;
    i.detail_len = e->detail_len;
    i.attempts = e->attempts;
    i.state = STATEMACHINE_INCIDENT_OPEN;
    i.opened_ms = e->time_ms;
    i.opened_by = e->requested_by;
    i.opened_by_len = e->requested_by_len;
    i.opened_reason = e->reason;
    i.opened_reason_len = e->reason_len;
    res->created = true;
    res->revision = index;
    rv = put_incident(t, &i, errmsg);
    if (rv != 0) {
        return rv;
    }
    storage_u64_key(index, k);
    return storage_put(t, STORAGE_INCIDENTS_OPEN, k, sizeof k, "", 1, errmsg);
}

static int apply_incident_update(struct storage_txn *t,
                                 uint64_t index,
                                 const struct statemachine_entry *e,
                                 struct statemachine_result *res,
                                 char *errmsg)
{
    struct statemachine_incident i;
    unsigned char k[8];
    bool resolve = mpread_streq(e->op, e->op_len, "resolve");
    int rv = statemachine_incident_get(t, e->incident_id, &i, errmsg);
    if (rv == REMS_ENOTFOUND) {
        res->code = REMS_ENOTFOUND;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    /* open -> acknowledged -> resolved, or open -> resolved. */
    if (i.state == STATEMACHINE_INCIDENT_RESOLVED ||
        (!resolve && i.state != STATEMACHINE_INCIDENT_OPEN)) {
        res->code = REMS_ECONFLICT;
        return 0;
    }
    if (resolve) {
        i.state = STATEMACHINE_INCIDENT_RESOLVED;
        i.resolved_index = index;
        i.resolved_ms = e->time_ms;
        i.resolved_by = e->requested_by;
        i.resolved_by_len = e->requested_by_len;
        i.resolved_reason = e->reason;
        i.resolved_reason_len = e->reason_len;
    } else {
        i.state = STATEMACHINE_INCIDENT_ACKNOWLEDGED;
        i.acked_index = index;
        i.acked_ms = e->time_ms;
        i.acked_by = e->requested_by;
        i.acked_by_len = e->requested_by_len;
        i.acked_reason = e->reason;
        i.acked_reason_len = e->reason_len;
    }
    /* The strings of @i point into the map: copy the record's key parts
     * out before writing over it. */
    {
        char agent[STATEMACHINE_ID_MAX];
        char service[STATEMACHINE_NAME_MAX];
        size_t al = i.agent_id_len;
        size_t sl = i.service_len;
        if (al > sizeof agent || sl > sizeof service) {
            rems_errmsgf(errmsg, "incidents[%llu]: record is corrupt",
                         (unsigned long long)i.id);
            return REMS_ECORRUPT;
        }
        memcpy(agent, i.agent_id, al);
        memcpy(service, i.service, sl);
        rv = put_incident(t, &i, errmsg);
        if (rv != 0) {
            return rv;
        }
        res->revision = index;
        if (!resolve) {
            return 0;
        }
        storage_u64_key(e->incident_id, k);
        rv = storage_del(t, STORAGE_INCIDENTS_OPEN, k, sizeof k, errmsg);
        if (rv != 0 && rv != REMS_ENOTFOUND) {
            return rv;
        }
        if (sl == 0) {
            return 0;
        }
        /* The service gets max_attempts new tries. */
        rv = record_reset(t, index, agent, al, service, sl, false, errmsg);
        return rv == REMS_ENOTFOUND ? 0 : rv;
    }
}

int statemachine_incident_list(struct storage_txn *t,
                               int state,
                               const char *agent_id,
                               size_t agent_id_len,
                               uint64_t after,
                               size_t limit,
                               statemachine_incident_visit visit,
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
    /* Unresolved ones are listed from their index, so the reconciler's
     * passes do not walk the resolved history. */
    bool open = state == STATEMACHINE_INCIDENT_OPEN ||
                state == STATEMACHINE_INCIDENT_ACKNOWLEDGED ||
                state == STATEMACHINE_INCIDENT_UNRESOLVED;
    int rv;

    *more = false;
    if (after == UINT64_MAX) {
        return 0;
    }
    rv = storage_cursor_open(
        t, open ? STORAGE_INCIDENTS_OPEN : STORAGE_INCIDENTS, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    storage_u64_key(after + 1, start);
    rv = storage_cursor_seek(c, start, sizeof start, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_incident i;
        if (kl != 8) {
            rems_errmsgf(errmsg, "incidents: key of %zu bytes", kl);
            rv = REMS_ECORRUPT;
            break;
        }
        if (open) {
            rv = statemachine_incident_get(t, storage_u64_from_key(k), &i,
                                           errmsg);
            if (rv == REMS_ENOTFOUND) {
                rems_errmsgf(errmsg, "incidents_open[%llu]: no incident",
                             (unsigned long long)storage_u64_from_key(k));
                rv = REMS_ECORRUPT;
            }
        } else {
            rv = decode_incident(storage_u64_from_key(k), v, vl, &i, errmsg);
        }
        if (rv != 0) {
            break;
        }
        if ((state == -1 || i.state == state ||
             (state == STATEMACHINE_INCIDENT_UNRESOLVED &&
              i.state != STATEMACHINE_INCIDENT_RESOLVED)) &&
            (agent_id == NULL ||
             (i.agent_id_len == agent_id_len &&
              memcmp(i.agent_id, agent_id, agent_id_len) == 0))) {
            if (n == limit) {
                *more = true;
                break;
            }
            rv = visit(data, &i);
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

/* ------------------------------------------------------------------ */
/* Overrides.                                                           */

#define OVERRIDE_KEY_MAX (1 + STATEMACHINE_NAME_MAX + 1 + STATEMACHINE_ID_MAX)

static size_t override_key(int scope,
                           const char *name,
                           size_t name_len,
                           const char *agent,
                           size_t agent_len,
                           char *key)
{
    key[0] = (char)scope;
    if (scope == STATEMACHINE_OVERRIDE_PAUSE) {
        return 1;
    }
    memcpy(key + 1, name, name_len);
    key[1 + name_len] = '\0';
    if (agent_len > 0) {
        memcpy(key + 2 + name_len, agent, agent_len);
    }
    return 2 + name_len + agent_len;
}

static int decode_override(const void *v,
                           size_t vl,
                           struct statemachine_override *out,
                           char *errmsg)
{
    struct statemachine_override o;
    uint64_t scope = 0;
    struct field f[] = {
        {"scope", F_U64, &scope, NULL},
        {"name", F_STR, &o.name, &o.name_len},
        {"agent_id", F_STR, &o.agent_id, &o.agent_id_len},
        {"until_ms", F_U64, &o.until_ms, NULL},
        {"set_index", F_U64, &o.set_index, NULL},
        {"set_ms", F_U64, &o.set_ms, NULL},
        {"requested_by", F_STR, &o.requested_by, &o.requested_by_len},
        {"reason", F_STR, &o.reason, &o.reason_len},
    };
    memset(&o, 0, sizeof o);
    if (decode_map(v, vl, f, sizeof f / sizeof f[0]) != 0 || scope < 1 ||
        scope >= STATEMACHINE_OVERRIDE_SCOPE_NR) {
        rems_errmsgf(errmsg, "overrides: record is corrupt");
        return REMS_ECORRUPT;
    }
    o.scope = (int)scope;
    *out = o;
    return 0;
}

int statemachine_override_get(struct storage_txn *t,
                              int scope,
                              const char *name,
                              size_t name_len,
                              const char *agent_id,
                              size_t agent_id_len,
                              struct statemachine_override *out,
                              char *errmsg)
{
    char key[OVERRIDE_KEY_MAX];
    size_t kl;
    const void *v;
    size_t vl;
    int rv;
    if (scope < 1 || scope >= STATEMACHINE_OVERRIDE_SCOPE_NR ||
        name_len > STATEMACHINE_NAME_MAX ||
        agent_id_len > STATEMACHINE_ID_MAX) {
        return REMS_ENOTFOUND;
    }
    kl = override_key(scope, name, name_len, agent_id, agent_id_len, key);
    rv = storage_get(t, STORAGE_OVERRIDES, key, kl, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    return decode_override(v, vl, out, errmsg);
}

int statemachine_paused(struct storage_txn *t, bool *out, char *errmsg)
{
    struct statemachine_override o;
    int rv = statemachine_override_get(t, STATEMACHINE_OVERRIDE_PAUSE, NULL, 0,
                                       NULL, 0, &o, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    *out = rv == 0;
    return 0;
}

static int apply_override(struct storage_txn *t,
                          uint64_t index,
                          const struct statemachine_entry *e,
                          struct statemachine_result *res,
                          char *errmsg)
{
    char key[OVERRIDE_KEY_MAX];
    struct rems_buf b;
    msgpack_packer pk;
    int scope = parse_override_scope(e->scope, e->scope_len);
    size_t kl = override_key(scope, e->name, e->name_len, e->agent_id,
                             e->agent_id_len, key);
    const void *v;
    size_t vl;
    int rv;

    if (e->type == STATEMACHINE_ENTRY_OVERRIDE_CLEAR) {
        rv = storage_del(t, STORAGE_OVERRIDES, key, kl, errmsg);
        if (rv == REMS_ENOTFOUND) {
            res->code = REMS_ENOTFOUND;
            return 0;
        }
        res->revision = index;
        return rv;
    }
    rv = storage_get(t, STORAGE_OVERRIDES, key, kl, &v, &vl, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    res->created = rv == REMS_ENOTFOUND;
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 8);
    statemachine__pack_kv_u64(&pk, "scope", (uint64_t)scope);
    statemachine__pack_kv_str(&pk, "name", e->name, e->name_len);
    statemachine__pack_kv_str(&pk, "agent_id", e->agent_id, e->agent_id_len);
    statemachine__pack_kv_u64(&pk, "until_ms", e->until_ms);
    statemachine__pack_kv_u64(&pk, "set_index", index);
    statemachine__pack_kv_u64(&pk, "set_ms", e->time_ms);
    statemachine__pack_kv_str(&pk, "requested_by", e->requested_by,
                              e->requested_by_len);
    statemachine__pack_kv_str(&pk, "reason", e->reason, e->reason_len);
    res->revision = index;
    return statemachine__buf_put(t, STORAGE_OVERRIDES, key, kl, &b, errmsg);
}

int statemachine_override_list(struct storage_txn *t,
                               statemachine_override_visit visit,
                               void *data,
                               char *errmsg)
{
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    int rv = storage_cursor_open(t, STORAGE_OVERRIDES, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, errmsg);
    while (rv == 0) {
        struct statemachine_override o;
        rv = decode_override(v, vl, &o, errmsg);
        if (rv == 0) {
            rv = visit(data, &o);
        }
        if (rv != 0) {
            break;
        }
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    storage_cursor_close(c);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

/* ------------------------------------------------------------------ */
/* Maintenance windows.                                                 */

static int decode_window(const void *k,
                         size_t kl,
                         const void *v,
                         size_t vl,
                         struct statemachine_window *out,
                         char *errmsg)
{
    struct statemachine_window w;
    uint64_t scope = 0;
    uint64_t mode = 0;
    uint64_t days = 0;
    uint64_t minute = 0;
    uint64_t duration = 0;
    struct field f[] = {
        {"scope", F_U64, &scope, NULL},
        {"target", F_STR, &w.target, &w.target_len},
        {"mode", F_U64, &mode, NULL},
        {"weekly", F_BOOL, &w.weekly, NULL},
        {"start_ms", F_U64, &w.start_ms, NULL},
        {"end_ms", F_U64, &w.end_ms, NULL},
        {"days", F_U64, &days, NULL},
        {"start_minute", F_U64, &minute, NULL},
        {"duration_minutes", F_U64, &duration, NULL},
        {"set_index", F_U64, &w.set_index, NULL},
        {"requested_by", F_STR, &w.requested_by, &w.requested_by_len},
        {"reason", F_STR, &w.reason, &w.reason_len},
    };
    memset(&w, 0, sizeof w);
    if (decode_map(v, vl, f, sizeof f / sizeof f[0]) != 0 || scope < 1 ||
        scope > STATEMACHINE_WINDOW_AGENT || mode < 1 ||
        mode > STATEMACHINE_WINDOW_NEVER_INSIDE || days > 127 ||
        minute >= DAY_MINUTES || duration > WEEK_MINUTES) {
        rems_errmsgf(errmsg, "windows[%.*s]: record is corrupt", (int)kl,
                     (const char *)k);
        return REMS_ECORRUPT;
    }
    w.name = k;
    w.name_len = kl;
    w.scope = (int)scope;
    w.mode = (int)mode;
    w.days = (unsigned)days;
    w.start_minute = (unsigned)minute;
    w.duration_minutes = (unsigned)duration;
    *out = w;
    return 0;
}

int statemachine_window_get(struct storage_txn *t,
                            const char *name,
                            size_t name_len,
                            struct statemachine_window *out,
                            char *errmsg)
{
    const void *v;
    size_t vl;
    int rv;
    if (name_len == 0 || name_len > STATEMACHINE_NAME_MAX) {
        return REMS_ENOTFOUND;
    }
    rv = storage_get(t, STORAGE_WINDOWS, name, name_len, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    return decode_window(name, name_len, v, vl, out, errmsg);
}

static int apply_window(struct storage_txn *t,
                        uint64_t index,
                        const struct statemachine_entry *e,
                        struct statemachine_result *res,
                        char *errmsg)
{
    struct rems_buf b;
    msgpack_packer pk;
    const void *v;
    size_t vl;
    int rv;

    if (e->type == STATEMACHINE_ENTRY_WINDOW_DELETE) {
        rv = storage_del(t, STORAGE_WINDOWS, e->name, e->name_len, errmsg);
        if (rv == REMS_ENOTFOUND) {
            res->code = REMS_ENOTFOUND;
            return 0;
        }
        res->revision = index;
        return rv;
    }
    rv = storage_get(t, STORAGE_WINDOWS, e->name, e->name_len, &v, &vl, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    res->created = rv == REMS_ENOTFOUND;
    rems_buf_init(&b);
    msgpack_packer_init(&pk, &b, rems_buf_write);
    msgpack_pack_map(&pk, 12);
    statemachine__pack_kv_u64(
        &pk, "scope", (uint64_t)parse_window_scope(e->scope, e->scope_len));
    statemachine__pack_kv_str(&pk, "target", e->target, e->target_len);
    statemachine__pack_kv_u64(
        &pk, "mode", (uint64_t)parse_window_mode(e->mode, e->mode_len));
    pack_kv_bool(&pk, "weekly", e->weekly);
    statemachine__pack_kv_u64(&pk, "start_ms", e->start_ms);
    statemachine__pack_kv_u64(&pk, "end_ms", e->end_ms);
    statemachine__pack_kv_u64(&pk, "days", e->days);
    statemachine__pack_kv_u64(&pk, "start_minute", e->start_minute);
    statemachine__pack_kv_u64(&pk, "duration_minutes", e->duration_minutes);
    statemachine__pack_kv_u64(&pk, "set_index", index);
    statemachine__pack_kv_str(&pk, "requested_by", e->requested_by,
                              e->requested_by_len);
    statemachine__pack_kv_str(&pk, "reason", e->reason, e->reason_len);
    res->revision = index;
    return statemachine__buf_put(t, STORAGE_WINDOWS, e->name, e->name_len, &b,
                                 errmsg);
}

int statemachine_window_list(struct storage_txn *t,
                             const char *after,
                             size_t after_len,
                             size_t limit,
                             statemachine_window_visit visit,
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
    rv = storage_cursor_open(t, STORAGE_WINDOWS, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = storage_cursor_seek(c, after, after_len, &k, &kl, &v, &vl, errmsg);
    if (rv == 0 && after_len > 0 && kl == after_len &&
        memcmp(k, after, kl) == 0) {
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    while (rv == 0) {
        struct statemachine_window w;
        if (n == limit) {
            *more = true;
            break;
        }
        rv = decode_window(k, kl, v, vl, &w, errmsg);
        if (rv == 0) {
            rv = visit(data, &w);
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

/* ------------------------------------------------------------------ */
/* Apply and audit.                                                     */

int statemachine__apply_reconcile(struct storage_txn *t,
                                  uint64_t index,
                                  const struct statemachine_entry *e,
                                  struct statemachine_result *res,
                                  char *errmsg)
{
    int rv;
    switch (e->type) {
        case STATEMACHINE_ENTRY_INCIDENT_OPEN:
            return apply_incident_open(t, index, e, res, errmsg);
        case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
            return apply_incident_update(t, index, e, res, errmsg);
        case STATEMACHINE_ENTRY_OVERRIDE_SET:
        case STATEMACHINE_ENTRY_OVERRIDE_CLEAR:
            return apply_override(t, index, e, res, errmsg);
        case STATEMACHINE_ENTRY_WINDOW_SET:
        case STATEMACHINE_ENTRY_WINDOW_DELETE:
            return apply_window(t, index, e, res, errmsg);
        case STATEMACHINE_ENTRY_RECORD_RESET:
            rv = record_reset(t, index, e->agent_id, e->agent_id_len,
                              e->service, e->service_len,
                              mpread_streq(e->op, e->op_len, "delete"), errmsg);
            if (rv == REMS_ENOTFOUND) {
                res->code = REMS_ENOTFOUND;
                return 0;
            }
            res->revision = index;
            return rv;
        default:
            REMS_ASSERT(false);
            return 0;
    }
}

size_t statemachine__audit_key(const struct statemachine_entry *e,
                               uint64_t index,
                               char *buf,
                               size_t size)
{
    static const char *const scopes[] = {"", "service", "agent", "site",
                                         "pause"};
    int n;
    switch (e->type) {
        case STATEMACHINE_ENTRY_INCIDENT_OPEN:
            n = snprintf(buf, size, "incident/%llu", (unsigned long long)index);
            break;
        case STATEMACHINE_ENTRY_INCIDENT_UPDATE:
            n = snprintf(buf, size, "incident/%llu",
                         (unsigned long long)e->incident_id);
            break;
        case STATEMACHINE_ENTRY_OVERRIDE_SET:
        case STATEMACHINE_ENTRY_OVERRIDE_CLEAR: {
            int scope = parse_override_scope(e->scope, e->scope_len);
            if (scope == STATEMACHINE_OVERRIDE_PAUSE) {
                n = snprintf(buf, size, "override/pause");
            } else {
                n = snprintf(buf, size, "override/%s/%.*s%s%.*s", scopes[scope],
                             (int)e->name_len, e->name,
                             e->agent_id_len > 0 ? "@" : "",
                             (int)e->agent_id_len,
                             e->agent_id != NULL ? e->agent_id : "");
            }
            break;
        }
        case STATEMACHINE_ENTRY_WINDOW_SET:
        case STATEMACHINE_ENTRY_WINDOW_DELETE:
            n = snprintf(buf, size, "window/%.*s", (int)e->name_len, e->name);
            break;
        default:
            n = snprintf(buf, size, "record/%.*s/%.*s", (int)e->agent_id_len,
                         e->agent_id, (int)e->service_len, e->service);
            break;
    }
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < size ? (size_t)n : size - 1;
}
