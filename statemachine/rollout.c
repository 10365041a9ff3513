/* Policies' staged rollouts in the replicated state: the rollout_update
 * entry (decoding, rules, apply), the rollout a policy_put starts and a
 * policy_delete removes, and the queries (statemachine.h, "Rollouts").
 *
 * Record (a MessagePack map, so fields can be added later):
 *   rollouts[policy key]
 *       {target_revision, target (bin), has_previous, previous_revision,
 *        previous (bin), state, stage, batch, reached (bin), n_reached,
 *        started_index, started_ms, stage_started_ms, updated_index,
 *        updated_ms, finished_ms, message, requested_by,
 *        rollback_revision}
 *
 * The documents are copied whole into the record, whatever their size (a
 * policy's value has no bound here; the API bounds it). Every record is
 * built in a buffer before anything is written: values read from LMDB
 * point into the map, and a write in the same transaction may move them.
 *
 * Transitions of a rollout's state, by operation (the table below):
 *
 *   advance   running -> running
 *   done      running -> done
 *   pause     running -> paused
 *   resume    paused -> running
 *   abort     running, paused -> aborted
 *   rollback  running, paused, aborted -> rolled_back
 *
 * done, aborted and rolled_back are final; only a new policy_put starts a
 * new rollout. apply reads only the entry and the tables: never the
 * clock. */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "common/assert.h"
#include "statemachine/pack_int.h"
#include "statemachine/rollout_int.h"

#define BIT(s) (1u << (s))

/* The states each operation may start from. */
static const unsigned allowed_from[STATEMACHINE_ROLLOUT_OP_NR] = {
    [STATEMACHINE_ROLLOUT_ADVANCE] = BIT(STATEMACHINE_ROLLOUT_RUNNING),
    [STATEMACHINE_ROLLOUT_OP_DONE] = BIT(STATEMACHINE_ROLLOUT_RUNNING),
    [STATEMACHINE_ROLLOUT_OP_PAUSE] = BIT(STATEMACHINE_ROLLOUT_RUNNING),
    [STATEMACHINE_ROLLOUT_RESUME] = BIT(STATEMACHINE_ROLLOUT_PAUSED),
    [STATEMACHINE_ROLLOUT_ABORT] =
        BIT(STATEMACHINE_ROLLOUT_RUNNING) | BIT(STATEMACHINE_ROLLOUT_PAUSED),
    [STATEMACHINE_ROLLOUT_ROLLBACK] = BIT(STATEMACHINE_ROLLOUT_RUNNING) |
                                      BIT(STATEMACHINE_ROLLOUT_PAUSED) |
                                      BIT(STATEMACHINE_ROLLOUT_ABORTED),
};

/* The state each operation leads to. */
static const int next_state[STATEMACHINE_ROLLOUT_OP_NR] = {
    [STATEMACHINE_ROLLOUT_ADVANCE] = STATEMACHINE_ROLLOUT_RUNNING,
    [STATEMACHINE_ROLLOUT_OP_DONE] = STATEMACHINE_ROLLOUT_DONE,
    [STATEMACHINE_ROLLOUT_OP_PAUSE] = STATEMACHINE_ROLLOUT_PAUSED,
    [STATEMACHINE_ROLLOUT_RESUME] = STATEMACHINE_ROLLOUT_RUNNING,
    [STATEMACHINE_ROLLOUT_ABORT] = STATEMACHINE_ROLLOUT_ABORTED,
    [STATEMACHINE_ROLLOUT_ROLLBACK] = STATEMACHINE_ROLLOUT_ROLLED_BACK,
};

/* ------------------------------------------------------------------ */
/* Names.                                                               */

static const char *const state_names[STATEMACHINE_ROLLOUT_STATE_NR] = {
    "running", "paused", "aborted", "rolled_back", "done"};
static const char *const stage_names[STATEMACHINE_ROLLOUT_STAGE_NR] = {
    "canary", "gate", "pause"};
static const char *const op_names[STATEMACHINE_ROLLOUT_OP_NR] = {
    "advance", "done", "pause", "resume", "abort", "rollback"};

static const char *name_of(const char *const *names, int n, int v)
{
    return v < 0 || v >= n ? "unknown" : names[v];
}

static int
parse_name(const char *const *names, int n, const char *s, size_t len, int *out)
{
    int i;
    if (s == NULL) {
        return REMS_EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (mpread_streq(s, len, names[i])) {
            *out = i;
            return 0;
        }
    }
    return REMS_EINVAL;
}

const char *statemachine_rollout_state_name(int state)
{
    return name_of(state_names, STATEMACHINE_ROLLOUT_STATE_NR, state);
}

const char *statemachine_rollout_stage_name(int stage)
{
    return name_of(stage_names, STATEMACHINE_ROLLOUT_STAGE_NR, stage);
}

const char *statemachine_rollout_op_name(int op)
{
    return name_of(op_names, STATEMACHINE_ROLLOUT_OP_NR, op);
}

int statemachine_rollout_state_parse(const char *s, size_t len, int *out)
{
    return parse_name(state_names, STATEMACHINE_ROLLOUT_STATE_NR, s, len, out);
}

int statemachine_rollout_stage_parse(const char *s, size_t len, int *out)
{
    return parse_name(stage_names, STATEMACHINE_ROLLOUT_STAGE_NR, s, len, out);
}

int statemachine_rollout_op_parse(const char *s, size_t len, int *out)
{
    return parse_name(op_names, STATEMACHINE_ROLLOUT_OP_NR, s, len, out);
}

/* ------------------------------------------------------------------ */
/* The reached array.                                                   */

#define ID_RULE "1 to 64 characters of A-Z a-z 0-9 _ . : - without escapes"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* memcmp order with the shorter first on a tie, as LMDB sorts keys. */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int reached_bad(char *errmsg, const char *rule)
{
    rems_errmsgf(errmsg, "%s", rule);
    return REMS_EMALFORMED;
}

int statemachine_rollout_reached_next(const char *s,
                                      size_t len,
                                      size_t *pos,
                                      const char **id,
                                      size_t *id_len,
                                      char *errmsg)
{
    const char *prev = NULL;
    size_t prev_len = 0;
    size_t p = *pos;
    size_t start;

    PRE(p <= len);
    if (p == 0) {
        while (p < len && is_space(s[p])) {
            p++;
        }
        if (p == len || s[p] != '[') {
            return reached_bad(errmsg, "must be a JSON array of agent ids");
        }
        p++;
        while (p < len && is_space(s[p])) {
            p++;
        }
        if (p < len && s[p] == ']') {
            goto end;
        }
    } else {
        /* Just after an id checked by the previous call: find it again,
         * to keep the order without any state but the position. */
        size_t q = p - 1;
        if (s[q] != '"' || q == 0) {
            return reached_bad(errmsg, "position is not after an agent id");
        }
        while (q > 0 && s[q - 1] != '"') {
            q--;
        }
        if (q == 0) {
            return reached_bad(errmsg, "position is not after an agent id");
        }
        prev = s + q;
        prev_len = p - 1 - q;
        while (p < len && is_space(s[p])) {
            p++;
        }
        if (p < len && s[p] == ']') {
            goto end;
        }
        if (p == len || s[p] != ',') {
            return reached_bad(errmsg,
                               "elements must be separated by ',' and the "
                               "array closed by ']'");
        }
        p++;
        while (p < len && is_space(s[p])) {
            p++;
        }
    }
    if (p == len || s[p] != '"') {
        return reached_bad(errmsg, "every element must be a string");
    }
    start = ++p;
    while (p < len && s[p] != '"') {
        p++;
    }
    if (p == len) {
        return reached_bad(errmsg, "a string is not terminated");
    }
    if (!statemachine_id_check(s + start, p - start)) {
        rems_errmsgf(errmsg, "\"%.*s\" is not an agent id (" ID_RULE ")",
                     (int)(p - start > 64 ? 64 : p - start), s + start);
        return REMS_EMALFORMED;
    }
    if (prev != NULL && bytes_cmp(prev, prev_len, s + start, p - start) >= 0) {
        rems_errmsgf(errmsg,
                     "\"%.*s\" after \"%.*s\": agent ids must be unique and "
                     "in increasing byte order",
                     (int)(p - start), s + start, (int)prev_len, prev);
        return REMS_EMALFORMED;
    }
    *id = s + start;
    *id_len = p - start;
    *pos = p + 1;
    return 0;

end:
    /* *@pos stays: another call finds the end again. */
    p++;
    while (p < len && is_space(s[p])) {
        p++;
    }
    if (p != len) {
        return reached_bad(errmsg, "bytes follow the array");
    }
    return REMS_ENOTFOUND;
}

/* Check a whole reached array and count its ids. */
static int reached_check(const char *s, size_t len, uint64_t *n, char *errmsg)
{
    size_t pos = 0;
    const char *id;
    size_t id_len;
    uint64_t count = 0;
    int rv;
    while ((rv = statemachine_rollout_reached_next(s, len, &pos, &id, &id_len,
                                                   errmsg)) == 0) {
        count++;
    }
    if (rv != REMS_ENOTFOUND) {
        return rv;
    }
    *n = count;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding and checks.                                                 */

static int bad(char *errmsg, const char *field, const char *rule)
{
    rems_errmsgf(errmsg, "entry: %s: %s", field, rule);
    return REMS_EMALFORMED;
}

int statemachine__decode_rollout_field(struct mpread *r,
                                       const char *k,
                                       size_t kl,
                                       struct statemachine_entry *e,
                                       char *errmsg)
{
    if (mpread_streq(k, kl, "target_revision")) {
        if (mpread_u64(r, &e->rollout_revision) != 0) {
            return bad(errmsg, "body.target_revision",
                       "must be an unsigned integer");
        }
        return 0;
    }
    if (mpread_streq(k, kl, "stage")) {
        if (mpread_str(r, &e->stage, &e->stage_len) != 0) {
            return bad(errmsg, "body.stage", "must be a string");
        }
        return 0;
    }
    if (mpread_streq(k, kl, "batch")) {
        if (mpread_u64(r, &e->batch) != 0) {
            return bad(errmsg, "body.batch", "must be an unsigned integer");
        }
        e->has_batch = true;
        return 0;
    }
    return REMS_ENOTFOUND;
}

int statemachine__check_rollout_body(const struct statemachine_entry *e,
                                     bool have_key,
                                     bool have_value,
                                     char *errmsg)
{
    char why[REMS_ERRMSG_SIZE];
    uint64_t n;
    int stage;
    int op;

    if (!have_key) {
        return bad(errmsg, "body.key", "required");
    }
    if (statemachine_key_check(e->key, e->key_len, why) != 0) {
        rems_errmsgf(errmsg, "entry: body.%s", why);
        return REMS_EMALFORMED;
    }
    if (e->rollout_revision == 0) {
        return bad(errmsg, "body.target_revision", "required (>= 1)");
    }
    if (e->op == NULL) {
        return bad(errmsg, "body.op", "required");
    }
    if (statemachine_rollout_op_parse(e->op, e->op_len, &op) != 0) {
        return bad(errmsg, "body.op",
                   "must be advance, done, pause, resume, abort or rollback");
    }
    if (op != STATEMACHINE_ROLLOUT_ADVANCE) {
        if (e->stage != NULL) {
            return bad(errmsg, "body.stage", "only for advance");
        }
        if (e->has_batch) {
            return bad(errmsg, "body.batch", "only for advance");
        }
        if (have_value) {
            return bad(errmsg, "body.value", "only for advance");
        }
        return 0;
    }
    if (e->stage == NULL) {
        return bad(errmsg, "body.stage", "required for advance");
    }
    if (statemachine_rollout_stage_parse(e->stage, e->stage_len, &stage) != 0 ||
        stage == STATEMACHINE_ROLLOUT_CANARY) {
        return bad(errmsg, "body.stage", "must be gate or pause");
    }
    if (!e->has_batch) {
        return bad(errmsg, "body.batch", "required for advance");
    }
    if (e->batch > STATEMACHINE_BATCH_MAX) {
        return bad(errmsg, "body.batch", "must be 0..1000000");
    }
    if (!have_value) {
        return bad(errmsg, "body.value",
                   "required for advance (the agents reached)");
    }
    if (e->value_len > STATEMACHINE_REACHED_MAX) {
        rems_errmsgf(errmsg, "entry: body.value: %zu bytes, at most %d allowed",
                     e->value_len, STATEMACHINE_REACHED_MAX);
        return REMS_EMALFORMED;
    }
    if (reached_check(e->value, e->value_len, &n, why) != 0) {
        rems_errmsgf(errmsg, "entry: body.value: %s", why);
        return REMS_EMALFORMED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Records.                                                             */

enum { F_U64, F_BIN, F_STR, F_BOOL };

struct field {
    const char *name;
    int kind;
    void *p;     /* uint64_t *, const char **, bool * */
    size_t *len; /* F_BIN, F_STR */
};

static int decode_rollout(const char *key,
                          size_t key_len,
                          const void *v,
                          size_t vl,
                          struct statemachine_rollout *out,
                          char *errmsg)
{
    struct statemachine_rollout r;
    uint64_t state = STATEMACHINE_ROLLOUT_STATE_NR;
    uint64_t stage = STATEMACHINE_ROLLOUT_STAGE_NR;
    const struct field f[] = {
        {"target_revision", F_U64, &r.target_revision, NULL},
        {"target", F_BIN, &r.target, &r.target_len},
        {"has_previous", F_BOOL, &r.has_previous, NULL},
        {"previous_revision", F_U64, &r.previous_revision, NULL},
        {"previous", F_BIN, &r.previous, &r.previous_len},
        {"state", F_U64, &state, NULL},
        {"stage", F_U64, &stage, NULL},
        {"batch", F_U64, &r.batch, NULL},
        {"reached", F_BIN, &r.reached, &r.reached_len},
        {"n_reached", F_U64, &r.n_reached, NULL},
        {"started_index", F_U64, &r.started_index, NULL},
        {"started_ms", F_U64, &r.started_ms, NULL},
        {"stage_started_ms", F_U64, &r.stage_started_ms, NULL},
        {"updated_index", F_U64, &r.updated_index, NULL},
        {"updated_ms", F_U64, &r.updated_ms, NULL},
        {"finished_ms", F_U64, &r.finished_ms, NULL},
        {"message", F_STR, &r.message, &r.message_len},
        {"requested_by", F_STR, &r.requested_by, &r.requested_by_len},
        {"rollback_revision", F_U64, &r.rollback_revision, NULL},
    };
    const size_t nf = sizeof f / sizeof f[0];
    uint32_t seen = 0;
    struct mpread mr;
    uint32_t n;
    uint32_t i;

    memset(&r, 0, sizeof r);
    mpread_init(&mr, v, vl);
    if (mpread_map(&mr, &n) != 0) {
        goto corrupt;
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        size_t j;
        int rv;
        if (mpread_str(&mr, &k, &kl) != 0) {
            goto corrupt;
        }
        for (j = 0; j < nf && !mpread_streq(k, kl, f[j].name); j++) {
        }
        if (j == nf) {
            rv = mpread_skip(&mr);
        } else if ((seen & (1u << j)) != 0) {
            rv = REMS_ECORRUPT; /* twice */
        } else {
            seen |= 1u << j;
            switch (f[j].kind) {
                case F_U64:
                    rv = mpread_u64(&mr, f[j].p);
                    break;
                case F_BIN:
                    rv = mpread_bytes(&mr, f[j].p, f[j].len);
                    break;
                case F_STR:
                    rv = mpread_str(&mr, f[j].p, f[j].len);
                    break;
                default:
                    rv = mpread_bool(&mr, f[j].p);
                    break;
            }
        }
        if (rv != 0) {
            goto corrupt;
        }
    }
    if (seen != (1u << nf) - 1 || state >= STATEMACHINE_ROLLOUT_STATE_NR ||
        stage >= STATEMACHINE_ROLLOUT_STAGE_NR) {
        goto corrupt;
    }
    r.key = key;
    r.key_len = key_len;
    r.state = (int)state;
    r.stage = (int)stage;
    *out = r;
    return 0;

corrupt:
    rems_errmsgf(errmsg, "rollouts[%.*s]: record is corrupt", (int)key_len,
                 key);
    return REMS_ECORRUPT;
}

/* Pack @r into @b (initialised here; the caller closes it). */
static void pack_rollout(struct rems_buf *b,
                         const struct statemachine_rollout *r)
{
    msgpack_packer pk;
    rems_buf_init(b);
    msgpack_packer_init(&pk, b, rems_buf_write);
    msgpack_pack_map(&pk, 19);
    statemachine__pack_kv_u64(&pk, "target_revision", r->target_revision);
    statemachine__pack_kv_bin(&pk, "target", r->target, r->target_len);
    statemachine__pack_str(&pk, "has_previous", 12);
    if (r->has_previous) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    statemachine__pack_kv_u64(&pk, "previous_revision", r->previous_revision);
    statemachine__pack_kv_bin(&pk, "previous", r->previous, r->previous_len);
    statemachine__pack_kv_u64(&pk, "state", (uint64_t)r->state);
    statemachine__pack_kv_u64(&pk, "stage", (uint64_t)r->stage);
    statemachine__pack_kv_u64(&pk, "batch", r->batch);
    statemachine__pack_kv_bin(&pk, "reached", r->reached, r->reached_len);
    statemachine__pack_kv_u64(&pk, "n_reached", r->n_reached);
    statemachine__pack_kv_u64(&pk, "started_index", r->started_index);
    statemachine__pack_kv_u64(&pk, "started_ms", r->started_ms);
    statemachine__pack_kv_u64(&pk, "stage_started_ms", r->stage_started_ms);
    statemachine__pack_kv_u64(&pk, "updated_index", r->updated_index);
    statemachine__pack_kv_u64(&pk, "updated_ms", r->updated_ms);
    statemachine__pack_kv_u64(&pk, "finished_ms", r->finished_ms);
    statemachine__pack_kv_str(&pk, "message", r->message, r->message_len);
    statemachine__pack_kv_str(&pk, "requested_by", r->requested_by,
                              r->requested_by_len);
    statemachine__pack_kv_u64(&pk, "rollback_revision", r->rollback_revision);
}

int statemachine_rollout_get(struct storage_txn *t,
                             const char *key,
                             size_t key_len,
                             struct statemachine_rollout *out,
                             char *errmsg)
{
    const void *v;
    size_t vl;
    int rv;
    if (key_len == 0 || key_len > STATEMACHINE_KEY_MAX) {
        return REMS_ENOTFOUND;
    }
    rv = storage_get(t, STORAGE_ROLLOUTS, key, key_len, &v, &vl, errmsg);
    if (rv != 0) {
        return rv;
    }
    return decode_rollout(key, key_len, v, vl, out, errmsg);
}

int statemachine_rollout_list(struct storage_txn *t,
                              const char *after,
                              size_t after_len,
                              size_t limit,
                              statemachine_rollout_visit visit,
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
    rv = storage_cursor_open(t, STORAGE_ROLLOUTS, &c, errmsg);
    if (rv != 0) {
        return rv;
    }
    /* Seek to a prefix short enough for LMDB, then skip what sorts up to
     * @after itself. */
    rv = storage_cursor_seek(
        c, after,
        after_len < STATEMACHINE_KEY_MAX ? after_len : STATEMACHINE_KEY_MAX, &k,
        &kl, &v, &vl, errmsg);
    while (rv == 0 && after_len > 0 &&
           bytes_cmp(k, kl, after, after_len) <= 0) {
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
    }
    while (rv == 0) {
        struct statemachine_rollout r;
        if (n == limit) {
            *more = true;
            break;
        }
        rv = decode_rollout(k, kl, v, vl, &r, errmsg);
        if (rv == 0) {
            rv = visit(data, &r);
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
/* Apply.                                                               */

int statemachine__rollout_start(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                const struct statemachine_policy *cur,
                                char *errmsg)
{
    struct statemachine_rollout old;
    struct statemachine_rollout r;
    struct rems_buf b;
    int rv = statemachine_rollout_get(t, e->key, e->key_len, &old, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        return rv;
    }
    memset(&r, 0, sizeof r);
    if (rv == 0 && (old.state == STATEMACHINE_ROLLOUT_RUNNING ||
                    old.state == STATEMACHINE_ROLLOUT_PAUSED ||
                    old.state == STATEMACHINE_ROLLOUT_ABORTED)) {
        /* The agents not reached still run the rollout's previous. */
        r.has_previous = old.has_previous;
        r.previous_revision = old.previous_revision;
        r.previous = old.previous;
        r.previous_len = old.previous_len;
    } else if (cur != NULL) {
        r.has_previous = true;
        r.previous_revision = cur->revision;
        r.previous = cur->value;
        r.previous_len = cur->value_len;
    }
    r.target_revision = index;
    r.target = e->value;
    r.target_len = e->value_len;
    r.state = STATEMACHINE_ROLLOUT_RUNNING;
    r.stage = STATEMACHINE_ROLLOUT_CANARY;
    r.reached = "[]";
    r.reached_len = 2;
    r.started_index = index;
    r.started_ms = e->time_ms;
    r.stage_started_ms = e->time_ms;
    r.updated_index = index;
    r.updated_ms = e->time_ms;
    r.message = e->reason;
    r.message_len = e->reason_len;
    pack_rollout(&b, &r);
    return statemachine__buf_put(t, STORAGE_ROLLOUTS, e->key, e->key_len, &b,
                                 errmsg);
}

int statemachine__rollout_remove(struct storage_txn *t,
                                 const char *key,
                                 size_t key_len,
                                 char *errmsg)
{
    int rv = storage_del(t, STORAGE_ROLLOUTS, key, key_len, errmsg);
    return rv == REMS_ENOTFOUND ? 0 : rv;
}

/* The rollback's write of the policy: @r's previous document at revision
 * @index (keeping the key's created_index), or a delete when there is
 * none. @rb holds the rollout's new record, built before anything is
 * written; it is closed here. */
static int rollback_write(struct storage_txn *t,
                          uint64_t index,
                          const struct statemachine_rollout *r,
                          struct rems_buf *rb,
                          char *errmsg)
{
    struct statemachine_policy p;
    struct rems_buf pb;
    msgpack_packer pk;
    uint64_t created = index;
    int rv;

    if (!r->has_previous) {
        rv = storage_del(t, STORAGE_POLICIES, r->key, r->key_len, errmsg);
        if (rv != 0 && rv != REMS_ENOTFOUND) {
            rems_buf_close(rb);
            return rv;
        }
        return statemachine__buf_put(t, STORAGE_ROLLOUTS, r->key, r->key_len,
                                     rb, errmsg);
    }
    rv = statemachine_policy_get(t, r->key, r->key_len, &p, errmsg);
    if (rv != 0 && rv != REMS_ENOTFOUND) {
        rems_buf_close(rb);
        return rv;
    }
    if (rv == 0) {
        created = p.created_index;
    }
    rems_buf_init(&pb);
    msgpack_packer_init(&pk, &pb, rems_buf_write);
    statemachine__pack_policy(&pk, r->previous, r->previous_len, index, created,
                              index);
    rv = statemachine__buf_put(t, STORAGE_POLICIES, r->key, r->key_len, &pb,
                               errmsg);
    if (rv != 0) {
        rems_buf_close(rb);
        return rv;
    }
    return statemachine__buf_put(t, STORAGE_ROLLOUTS, r->key, r->key_len, rb,
                                 errmsg);
}

int statemachine__apply_rollout(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                struct statemachine_result *res,
                                char *errmsg)
{
    struct statemachine_rollout r;
    struct rems_buf b;
    int op = 0;
    int rv = statemachine_rollout_op_parse(e->op, e->op_len, &op);

    REMS_ASSERT(rv == 0); /* Checked by the decoder. */
    rv = statemachine_rollout_get(t, e->key, e->key_len, &r, errmsg);
    if (rv == REMS_ENOTFOUND) {
        rems_errmsgf(errmsg, "rollout_update: policy %.*s has no rollout",
                     (int)e->key_len, e->key);
        res->code = REMS_ENOTFOUND;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    res->rollout_state = r.state;
    if (r.target_revision != e->rollout_revision) {
        rems_errmsgf(errmsg,
                     "rollout_update: policy %.*s: the rollout is of "
                     "revision %llu, not %llu",
                     (int)e->key_len, e->key,
                     (unsigned long long)r.target_revision,
                     (unsigned long long)e->rollout_revision);
        res->code = REMS_ECONFLICT;
        res->current_revision = r.target_revision;
        return 0;
    }
    if ((allowed_from[op] & BIT(r.state)) == 0) {
        rems_errmsgf(errmsg,
                     "rollout_update: policy %.*s: %s is not allowed in "
                     "state %s",
                     (int)e->key_len, e->key, op_names[op],
                     state_names[r.state]);
        res->code = REMS_ECONFLICT;
        res->current_revision = r.target_revision;
        return 0;
    }
    r.state = next_state[op];
    r.updated_index = index;
    r.updated_ms = e->time_ms;
    r.message = e->reason;
    r.message_len = e->reason_len;
    switch (op) {
        case STATEMACHINE_ROLLOUT_ADVANCE:
            rv = statemachine_rollout_stage_parse(e->stage, e->stage_len,
                                                  &r.stage);
            REMS_ASSERT(rv == 0);
            r.batch = e->batch;
            r.reached = e->value;
            r.reached_len = e->value_len;
            rv = reached_check(e->value, e->value_len, &r.n_reached, errmsg);
            REMS_ASSERT(rv == 0);
            r.stage_started_ms = e->time_ms;
            break;
        case STATEMACHINE_ROLLOUT_RESUME:
            r.stage_started_ms = e->time_ms; /* The gate clock restarts. */
            break;
        default:
            break;
    }
    if (op != STATEMACHINE_ROLLOUT_ADVANCE &&
        op != STATEMACHINE_ROLLOUT_OP_DONE) {
        r.requested_by = e->requested_by;
        r.requested_by_len = e->requested_by_len;
    }
    if (r.state != STATEMACHINE_ROLLOUT_RUNNING &&
        r.state != STATEMACHINE_ROLLOUT_PAUSED) {
        r.finished_ms = e->time_ms;
    }
    if (op == STATEMACHINE_ROLLOUT_ROLLBACK) {
        r.rollback_revision = r.has_previous ? index : 0;
    }
    res->rollout_state = r.state;
    res->revision = index;
    pack_rollout(&b, &r);
    if (op == STATEMACHINE_ROLLOUT_ROLLBACK) {
        return rollback_write(t, index, &r, &b, errmsg);
    }
    return statemachine__buf_put(t, STORAGE_ROLLOUTS, e->key, e->key_len, &b,
                                 errmsg);
}
