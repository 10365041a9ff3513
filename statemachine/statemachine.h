/* statemachine: the replicated state of rems, its log entries and queries.
 *
 * Pure and deterministic: no clocks, no sockets, no raft. Every log entry is
 * one MessagePack envelope
 *
 *   {v, type, time_ms, trace_id, request_id, requested_by, reason, body}
 *
 * padded with zero bytes to a multiple of 8 (raft_uv stores entries so),
 * where time_ms is the leader's wall clock at proposal and body depends on
 * the type. statemachine_apply() applies one committed entry in one LMDB
 * write transaction that also stores the entry's index as "last_applied",
 * so re-applying an index at or below it changes nothing. Entries carry a
 * request id; a retried request (same id) is answered with the result of its
 * first application and changes nothing, because a leadership loss leaves
 * the outcome of a proposal unknown and clients retry.
 *
 * Malformed entries, unknown types and unknown versions are refused: apply
 * stores only the new last_applied index and reports REMS_EMALFORMED or
 * REMS_EUNSUPPORTED in the result, identically on every node.
 *
 * The only statemachine/ header other modules may include. Call on one
 * thread (the loop thread), except the read-only queries, which take a read
 * transaction and may run on any thread. */
#ifndef REMS_STATEMACHINE_STATEMACHINE_H
#define REMS_STATEMACHINE_STATEMACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "storage/storage.h"

#define STATEMACHINE_ENVELOPE_VERSION 1
#define STATEMACHINE_KEY_MAX 256
#define STATEMACHINE_ID_MAX 64
#define STATEMACHINE_USER_MAX 64
#define STATEMACHINE_REASON_MAX 512
#define STATEMACHINE_ADDR_MAX 63
#define STATEMACHINE_NAME_MAX 64      /* Actions, services, outcomes. */
#define STATEMACHINE_BLOB_MAX 262144  /* Labels, reports, args, results. */
#define STATEMACHINE_TTL_MAX_MS 86400000u /* A command lives a day at most. */
/* A request id is remembered for at least this many entries after its
 * first application. Older ids are forgotten as later entries that carry
 * request ids are applied (a bounded number per entry), so a retry that
 * arrives later may be applied as a new request. */
#define STATEMACHINE_REQUEST_WINDOW 100000

enum statemachine_entry_type {
    STATEMACHINE_ENTRY_NOOP = 1,
    STATEMACHINE_ENTRY_POLICY_PUT = 2,
    STATEMACHINE_ENTRY_POLICY_DELETE = 3,
    STATEMACHINE_ENTRY_MEMBER_SET = 4,
    STATEMACHINE_ENTRY_MEMBER_DELETE = 5,
    STATEMACHINE_ENTRY_AGENT_REGISTER = 6,
    STATEMACHINE_ENTRY_LEASE_GRANT = 7,
    STATEMACHINE_ENTRY_LEASE_REVOKE = 8,
    STATEMACHINE_ENTRY_AGENT_REPORT = 9,
    STATEMACHINE_ENTRY_COMMAND_ISSUE = 10,
    STATEMACHINE_ENTRY_COMMAND_RESOLVE = 11,
    /* The reconciler's state (docs/adr/0005-reconciler.md). */
    STATEMACHINE_ENTRY_INCIDENT_OPEN = 12,
    STATEMACHINE_ENTRY_INCIDENT_UPDATE = 13,
    STATEMACHINE_ENTRY_OVERRIDE_SET = 14,
    STATEMACHINE_ENTRY_OVERRIDE_CLEAR = 15,
    STATEMACHINE_ENTRY_WINDOW_SET = 16,
    STATEMACHINE_ENTRY_WINDOW_DELETE = 17,
    STATEMACHINE_ENTRY_RECORD_RESET = 18,
    /* A policy's staged rollout (see "Rollouts" below). */
    STATEMACHINE_ENTRY_ROLLOUT_UPDATE = 19,
    STATEMACHINE_ENTRY_TYPE_NR
};

/* Name of an entry type ("policy_put"), or "unknown". */
const char *statemachine_entry_type_name(int type);

/* A decoded or to-be-encoded log entry. Strings are not NUL-terminated;
 * after decoding they point into the decoded buffer (borrowed). */
struct statemachine_entry {
    unsigned version;
    int type; /* enum statemachine_entry_type */
    uint64_t time_ms;
    const char *trace_id;
    size_t trace_id_len;
    const char *request_id;
    size_t request_id_len;
    const char *requested_by;
    size_t requested_by_len;
    const char *reason;
    size_t reason_len;
    /* POLICY_PUT / POLICY_DELETE / ROLLOUT_UPDATE */
    const char *key;
    size_t key_len;
    const char *value; /* POLICY_PUT: the JSON object text; ROLLOUT_UPDATE
                          (advance): the JSON array of the agents reached */
    size_t value_len;
    bool has_if_revision; /* CAS: the revision the key must have; 0 = absent */
    uint64_t if_revision;
    /* MEMBER_SET / MEMBER_DELETE */
    uint64_t member_id;
    const char *raft_address;
    size_t raft_address_len;
    const char *api_address;
    size_t api_address_len;
    const char *agent_address; /* MEMBER_SET, optional ("" = none) */
    size_t agent_address_len;
    /* Agents, leases and commands. @value carries the JSON of the labels
     * (AGENT_REGISTER), the service states (AGENT_REPORT), the arguments
     * (COMMAND_ISSUE) or the result (COMMAND_RESOLVE). */
    const char *agent_id; /* All agent, lease and command entries. */
    size_t agent_id_len;
    const char *command_id; /* COMMAND_ISSUE / COMMAND_RESOLVE */
    size_t command_id_len;
    const char *action; /* COMMAND_ISSUE */
    size_t action_len;
    const char *service; /* COMMAND_ISSUE, may be empty */
    size_t service_len;
    const char *outcome; /* COMMAND_RESOLVE: acked|nacked|expired|cancelled;
                            LEASE_REVOKE: why (expired, ...) */
    size_t outcome_len;
    uint64_t ttl_ms;  /* LEASE_GRANT, COMMAND_ISSUE: 1..TTL_MAX */
    uint64_t term;    /* COMMAND_ISSUE: the leader's term at proposal */
    uint64_t node_id; /* AGENT_REGISTER, LEASE_GRANT: the node the agent
                         is connected to */

    /* The reconciler's entries (see "Reconciler state" below for the rules
     * the decoder enforces). @agent_id and @service name the (agent,
     * service) of INCIDENT_OPEN (service "" = the agent as a whole),
     * RECORD_RESET and a COMMAND_ISSUE's record; @agent_id is also the
     * optional agent of a service freeze. */
    bool has_record; /* COMMAND_ISSUE: the remediation record travels with
                        the command (record_* below, attempts) */
    const char *record_action; /* its last action ("redeploy", ...) */
    size_t record_action_len;
    uint64_t record_last_attempt_ms;
    uint64_t record_digest; /* the manifest in flight (redeploy); 0: none */
    uint64_t attempts;      /* record, INCIDENT_OPEN: 0..1000000 */
    uint64_t incident_id;   /* INCIDENT_UPDATE */
    const char *op;         /* INCIDENT_UPDATE: acknowledge|resolve;
                               RECORD_RESET: reset|delete */
    size_t op_len;
    const char *kind; /* INCIDENT_OPEN: the drift that escalated */
    size_t kind_len;
    const char *policy; /* INCIDENT_OPEN, optional: the placing policy */
    size_t policy_len;
    const char *detail; /* INCIDENT_OPEN, optional: for people */
    size_t detail_len;
    const char *scope; /* OVERRIDE_*: service|agent|site|pause;
                          WINDOW_SET: global|site|agent */
    size_t scope_len;
    const char *name; /* OVERRIDE_* (not pause): the service, agent or
                         site frozen; WINDOW_*: the window's name */
    size_t name_len;
    uint64_t until_ms;  /* OVERRIDE_SET, optional: 0 = until cleared */
    const char *target; /* WINDOW_SET: site or agent (not global) */
    size_t target_len;
    const char *mode; /* WINDOW_SET: auto_inside_only|never_inside */
    size_t mode_len;
    bool weekly;       /* WINDOW_SET: weekly in UTC, else once */
    uint64_t start_ms; /* once: [start_ms, end_ms) */
    uint64_t end_ms;
    uint64_t days;         /* weekly: bit 0 Monday .. bit 6 Sunday, 1..127 */
    uint64_t start_minute; /* weekly: 0..1439 */
    uint64_t duration_minutes; /* weekly: 1..10080 */

    /* ROLLOUT_UPDATE (see "Rollouts" below for the rules the decoder
     * enforces); @key names the policy, @op the operation and, for
     * advance, @value the agents reached. */
    uint64_t rollout_revision; /* the target revision the proposer saw */
    const char *stage;         /* advance: gate|pause */
    size_t stage_len;
    bool has_batch; /* advance: @batch is present (required) */
    uint64_t batch;
};

/* Encode @e into a buffer from @alloc (e.g. raft_malloc); the caller owns
 * *@buf. Checks lengths (REMS_EINVAL naming the field). */
int statemachine_entry_encode(const struct statemachine_entry *e,
                              void *(*alloc)(size_t),
                              void **buf,
                              size_t *len,
                              char *errmsg);

/* Decode @buf into @e (borrowing @buf). REMS_EMALFORMED or
 * REMS_EUNSUPPORTED (unknown version or type), with @errmsg naming the
 * field. */
int statemachine_entry_decode(const void *buf,
                              size_t len,
                              struct statemachine_entry *e,
                              char *errmsg);

/* Check a policy key: 1..256 bytes of [A-Za-z0-9._/-], no leading or
 * trailing '/', no empty, "." or ".." segment. Returns 0 or REMS_EINVAL with
 * the rule in @errmsg. */
int statemachine_key_check(const char *key, size_t len, char *errmsg);

/* What applying an entry did. */
struct statemachine_result {
    int code;          /* 0, REMS_ECONFLICT, REMS_ENOTFOUND, REMS_EEXIST
                          (command id taken), REMS_EINVAL (resolve by
                          another agent), REMS_EMALFORMED,
                          REMS_EUNSUPPORTED. */
    uint64_t index;    /* Index at which the request was first applied. */
    uint64_t revision; /* The key's new revision (put/delete: the index). */
    uint64_t current_revision; /* On REMS_ECONFLICT: the key's revision
                                  (ROLLOUT_UPDATE: the rollout's target
                                  revision). */
    bool created;              /* Put: the key did not exist. */
    bool duplicate; /* A retried request id: result of the first time. */
    bool skipped;   /* Index already applied: nothing done. */
    int command_state; /* Commands: the state after the entry; on
                          REMS_ECONFLICT or REMS_EEXIST the state the
                          command already has. */
    int type; /* The entry's type when it decoded and was applied (not
                 skipped); 0 otherwise. */
    int rollout_state; /* ROLLOUT_UPDATE with code 0: the rollout's state
                          after the entry; with REMS_ECONFLICT: the state
                          it has (enum statemachine_rollout_state). */
};

/* Apply the entry @buf committed at @index, in one write transaction on
 * @s. Returns 0 (see @res for the outcome) or a storage error (REMS_EIO,
 * REMS_ENOSPACE, REMS_ENOMEM): then nothing was written. */
int statemachine_apply(struct storage *s,
                       uint64_t index,
                       const void *buf,
                       size_t len,
                       struct statemachine_result *res,
                       char *errmsg);

/* The last applied index recorded in @t (0 for a fresh store). */
int statemachine_last_applied(struct storage_txn *t,
                              uint64_t *out,
                              char *errmsg);

/* A stored policy; strings borrowed from the transaction. */
struct statemachine_policy {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    uint64_t revision;
    uint64_t created_index;
    uint64_t modified_index;
};

/* Look @key up. 0, REMS_ENOTFOUND or REMS_ECORRUPT. */
int statemachine_policy_get(struct storage_txn *t,
                            const char *key,
                            size_t key_len,
                            struct statemachine_policy *out,
                            char *errmsg);

typedef int (*statemachine_policy_visit)(void *data,
                                         const struct statemachine_policy *p);

/* Visit up to @limit policies whose key starts with @prefix and sorts
 * strictly after @after (@after_len 0: from the start), in key order.
 * *@more tells whether further keys match. A non-zero return of @visit
 * stops the walk and is returned. */
int statemachine_policy_list(struct storage_txn *t,
                             const char *prefix,
                             size_t prefix_len,
                             const char *after,
                             size_t after_len,
                             size_t limit,
                             statemachine_policy_visit visit,
                             void *data,
                             bool *more,
                             char *errmsg);

/* Number of policies. */
int statemachine_policy_count(struct storage_txn *t,
                              size_t *out,
                              char *errmsg);

/* An audit record (strings borrowed from the transaction). */
struct statemachine_audit {
    uint64_t index;
    uint64_t time_ms;
    int type;
    int code; /* The result code. */
    uint64_t revision;
    const char *key;
    size_t key_len;
    const char *requested_by;
    size_t requested_by_len;
    const char *reason;
    size_t reason_len;
    const char *trace_id;
    size_t trace_id_len;
    const char *request_id;
    size_t request_id_len;
};

typedef int (*statemachine_audit_visit)(void *data,
                                        const struct statemachine_audit *a);

/* Visit up to @limit audit records with index > @after, in index order. */
int statemachine_audit_list(struct storage_txn *t,
                            uint64_t after,
                            size_t limit,
                            statemachine_audit_visit visit,
                            void *data,
                            bool *more,
                            char *errmsg);

/* A member's addresses as replicated by MEMBER_SET entries. */
struct statemachine_member {
    uint64_t id;
    char raft_address[STATEMACHINE_ADDR_MAX + 1];
    char api_address[STATEMACHINE_ADDR_MAX + 1];
    char agent_address[STATEMACHINE_ADDR_MAX + 1]; /* "" = no agent port */
};

/* Look member @id up: 0 or REMS_ENOTFOUND. */
int statemachine_member_get(struct storage_txn *t,
                            uint64_t id,
                            struct statemachine_member *out,
                            char *errmsg);

/* ------------------------------------------------------------------ */
/* Agents, leases and commands.                                         */

enum statemachine_command_state {
    STATEMACHINE_COMMAND_PENDING,
    STATEMACHINE_COMMAND_ACKED,
    STATEMACHINE_COMMAND_NACKED,
    STATEMACHINE_COMMAND_EXPIRED,
    STATEMACHINE_COMMAND_CANCELLED,
    STATEMACHINE_COMMAND_STATE_NR
};

/* "pending", "acked", ...; "unknown" out of range. */
const char *statemachine_command_state_name(int state);

/* Parse a final state name (acked|nacked|expired|cancelled) into @out:
 * 0 or REMS_EINVAL. */
int statemachine_command_outcome_parse(const char *s,
                                       size_t len,
                                       int *out);

/* True when @s is a valid agent or command id: 1..64 bytes of
 * [A-Za-z0-9_.:-]. */
bool statemachine_id_check(const char *s, size_t len);

/* A stored agent (strings borrowed from the transaction). */
struct statemachine_agent {
    const char *id;
    size_t id_len;
    const char *labels; /* JSON object text. */
    size_t labels_len;
    const char *services; /* JSON of the last reported states, or "". */
    size_t services_len;
    const char *offline_reason; /* "" while online. */
    size_t offline_reason_len;
    uint64_t registered_index;
    uint64_t updated_index;
    uint64_t node_id;
    bool online;
};

int statemachine_agent_get(struct storage_txn *t,
                           const char *id,
                           size_t id_len,
                           struct statemachine_agent *out,
                           char *errmsg);

typedef int (*statemachine_agent_visit)(void *data,
                                        const struct statemachine_agent *a);

/* Agents with id > @after (empty: from the start), in id order. */
int statemachine_agent_list(struct storage_txn *t,
                            const char *after,
                            size_t after_len,
                            size_t limit,
                            statemachine_agent_visit visit,
                            void *data,
                            bool *more,
                            char *errmsg);

struct statemachine_lease {
    const char *agent_id;
    size_t agent_id_len;
    uint64_t ttl_ms;
    uint64_t granted_index;
    uint64_t granted_ms; /* Leader wall clock at the grant's proposal. */
    uint64_t node_id;
};

int statemachine_lease_get(struct storage_txn *t,
                           const char *agent_id,
                           size_t agent_id_len,
                           struct statemachine_lease *out,
                           char *errmsg);

typedef int (*statemachine_lease_visit)(void *data,
                                        const struct statemachine_lease *l);

int statemachine_lease_list(struct storage_txn *t,
                            statemachine_lease_visit visit,
                            void *data,
                            char *errmsg);

struct statemachine_command {
    const char *id;
    size_t id_len;
    const char *agent_id;
    size_t agent_id_len;
    const char *action;
    size_t action_len;
    const char *service;
    size_t service_len;
    const char *args; /* JSON */
    size_t args_len;
    const char *result; /* JSON or "" */
    size_t result_len;
    const char *requested_by;
    size_t requested_by_len;
    const char *reason;
    size_t reason_len;
    const char *trace_id;
    size_t trace_id_len;
    int state; /* enum statemachine_command_state */
    uint64_t term;
    uint64_t ttl_ms;
    uint64_t issued_index;
    uint64_t issued_ms;   /* Leader wall clock at proposal. */
    uint64_t deadline_ms; /* issued_ms + ttl_ms */
    uint64_t resolved_index; /* 0 while pending. */
};

int statemachine_command_get(struct storage_txn *t,
                             const char *id,
                             size_t id_len,
                             struct statemachine_command *out,
                             char *errmsg);

typedef int (*statemachine_command_visit)(
    void *data,
    const struct statemachine_command *c);

/* Commands with id > @after in id order, filtered by @agent_id (NULL: any)
 * and @state (-1: any). For STATEMACHINE_COMMAND_PENDING only the pending
 * index is walked, so listing pending commands stays cheap however many
 * commands have ended. */
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
                              char *errmsg);

/* ------------------------------------------------------------------ */
/* Reconciler state (docs/adr/0005-reconciler.md).                     */
/*
 * Entries and what apply does (every instant comes from the entries, never
 * from a clock; codes are in the result, identical on every node):
 *
 *   COMMAND_ISSUE with has_record   the command, and the record of (agent,
 *        service) in the same transaction: attempts and last_attempt_ms
 *        and last action as given, outcome pending, pending digest =
 *        record_digest, deployed digest kept, command_id = the command's.
 *        The decoder requires a service.
 *   COMMAND_RESOLVE   when the record of the command's (agent, service) is
 *        pending on this command: acked -> outcome succeeded and, for a
 *        "redeploy", deployed digest = pending digest; nacked, expired,
 *        cancelled -> failed; pending digest 0.
 *   INCIDENT_OPEN     a new incident, id = the entry's index, state open.
 *   INCIDENT_UPDATE   acknowledge (open -> acknowledged) or resolve (open
 *        or acknowledged -> resolved; the record of its (agent, service)
 *        gets attempts 0 in the same transaction). REMS_ENOTFOUND for an
 *        unknown id, REMS_ECONFLICT for any other transition. requested_by
 *        is required.
 *   OVERRIDE_SET      store (replace) a freeze of a service (on every agent,
 *        or on @agent_id), an agent or a site, with an optional end
 *        (until_ms > time_ms); scope pause sets the global pause (no name,
 *        no end).
 *   OVERRIDE_CLEAR    remove it; REMS_ENOTFOUND when absent.
 *   WINDOW_SET        store (replace) a window by name; the decoder applies
 *        the rules of reconcile_window_check().
 *   WINDOW_DELETE     remove it; REMS_ENOTFOUND when absent.
 *   RECORD_RESET      reset (attempts 0) or delete the record of (agent,
 *        service); REMS_ENOTFOUND when there is none.
 *
 * The record rule of COMMAND_RESOLVE is reconcile_record_resolve() of
 * cluster/reconcile.h, written again here (six lines) because statemachine/
 * sits below cluster/; the action name "redeploy" is
 * reconcile_action_name(RECONCILE_ACTION_REDEPLOY) and the enums below have
 * the numeric values of their cluster/reconcile.h twins, so the wiring
 * converts by assignment. Incidents, overrides and windows are audited;
 * record resets are not (like service reports). */

#define STATEMACHINE_ATTEMPTS_MAX 1000000u
#define STATEMACHINE_DETAIL_MAX 1024
#define STATEMACHINE_ACTION_REDEPLOY "redeploy"

/* Values of enum reconcile_outcome. */
enum statemachine_record_outcome {
    STATEMACHINE_RECORD_NONE = 0,
    STATEMACHINE_RECORD_PENDING,
    STATEMACHINE_RECORD_SUCCEEDED,
    STATEMACHINE_RECORD_FAILED,
    STATEMACHINE_RECORD_OUTCOME_NR
};

/* A remediation record (strings borrowed from the transaction). */
struct statemachine_remediation {
    const char *agent_id;
    size_t agent_id_len;
    const char *service;
    size_t service_len;
    const char *last_action; /* "" when none */
    size_t last_action_len;
    const char *command_id; /* the last remediation's command */
    size_t command_id_len;
    uint64_t attempts;
    uint64_t last_attempt_ms;
    int outcome; /* enum statemachine_record_outcome */
    uint64_t pending_digest;
    uint64_t deployed_digest;
    uint64_t updated_index;
};

/* 0, REMS_ENOTFOUND or REMS_ECORRUPT. */
int statemachine_remediation_get(struct storage_txn *t,
                                 const char *agent_id,
                                 size_t agent_id_len,
                                 const char *service,
                                 size_t service_len,
                                 struct statemachine_remediation *out,
                                 char *errmsg);

typedef int (*statemachine_remediation_visit)(
    void *data, const struct statemachine_remediation *r);

/* Records in (agent, service) order, of @agent_id only when not NULL,
 * after (@after_agent, @after_service) (@after_agent_len 0: from the
 * start), at most @limit; *@more as for policies. */
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
                                  char *errmsg);

enum statemachine_incident_state {
    STATEMACHINE_INCIDENT_OPEN,
    STATEMACHINE_INCIDENT_ACKNOWLEDGED,
    STATEMACHINE_INCIDENT_RESOLVED,
    STATEMACHINE_INCIDENT_STATE_NR
};

/* "open", "acknowledged", "resolved"; "unknown" out of range. */
const char *statemachine_incident_state_name(int state);

/* An incident (strings borrowed from the transaction). Each step keeps
 * its index, time, who and why (0 and "" until it happens). */
struct statemachine_incident {
    uint64_t id; /* the index of the INCIDENT_OPEN entry */
    const char *agent_id;
    size_t agent_id_len;
    const char *service; /* "" for the agent as a whole */
    size_t service_len;
    const char *kind;
    size_t kind_len;
    const char *policy;
    size_t policy_len;
    const char *detail;
    size_t detail_len;
    uint64_t attempts;
    int state; /* enum statemachine_incident_state */
    uint64_t opened_ms;
    const char *opened_by;
    size_t opened_by_len;
    const char *opened_reason;
    size_t opened_reason_len;
    uint64_t acked_index;
    uint64_t acked_ms;
    const char *acked_by;
    size_t acked_by_len;
    const char *acked_reason;
    size_t acked_reason_len;
    uint64_t resolved_index;
    uint64_t resolved_ms;
    const char *resolved_by;
    size_t resolved_by_len;
    const char *resolved_reason;
    size_t resolved_reason_len;
};

int statemachine_incident_get(struct storage_txn *t,
                              uint64_t id,
                              struct statemachine_incident *out,
                              char *errmsg);

typedef int (*statemachine_incident_visit)(
    void *data, const struct statemachine_incident *i);

/* Incidents with id > @after in id order, of @state only (-1: any; -2:
 * open or acknowledged) and of @agent_id only (NULL: any), at most
 * @limit. Listing unresolved ones (open, acknowledged or -2) walks only
 * an index of them, however many have been resolved. */
#define STATEMACHINE_INCIDENT_UNRESOLVED (-2)
int statemachine_incident_list(struct storage_txn *t,
                               int state,
                               const char *agent_id,
                               size_t agent_id_len,
                               uint64_t after,
                               size_t limit,
                               statemachine_incident_visit visit,
                               void *data,
                               bool *more,
                               char *errmsg);

/* Values of enum reconcile_freeze_scope, plus the pause flag. */
enum statemachine_override_scope {
    STATEMACHINE_OVERRIDE_SERVICE = 1,
    STATEMACHINE_OVERRIDE_AGENT,
    STATEMACHINE_OVERRIDE_SITE,
    STATEMACHINE_OVERRIDE_PAUSE,
    STATEMACHINE_OVERRIDE_SCOPE_NR
};

struct statemachine_override {
    int scope;        /* enum statemachine_override_scope */
    const char *name; /* "" for pause */
    size_t name_len;
    const char *agent_id; /* service scope: one agent; "" = all */
    size_t agent_id_len;
    uint64_t until_ms; /* 0 = until cleared */
    uint64_t set_index;
    uint64_t set_ms;
    const char *requested_by;
    size_t requested_by_len;
    const char *reason;
    size_t reason_len;
};

typedef int (*statemachine_override_visit)(
    void *data, const struct statemachine_override *o);

/* Every override, in (scope, name, agent) order. */
int statemachine_override_list(struct storage_txn *t,
                               statemachine_override_visit visit,
                               void *data,
                               char *errmsg);

/* The override of (@scope, @name, @agent_id): 0 or REMS_ENOTFOUND. */
int statemachine_override_get(struct storage_txn *t,
                              int scope,
                              const char *name,
                              size_t name_len,
                              const char *agent_id,
                              size_t agent_id_len,
                              struct statemachine_override *out,
                              char *errmsg);

/* Whether the reconciler is paused (a pause override exists). */
int statemachine_paused(struct storage_txn *t, bool *out, char *errmsg);

/* Values of enum reconcile_window_scope and reconcile_window_policy. */
enum statemachine_window_scope {
    STATEMACHINE_WINDOW_GLOBAL = 1,
    STATEMACHINE_WINDOW_SITE,
    STATEMACHINE_WINDOW_AGENT,
};
enum statemachine_window_mode {
    STATEMACHINE_WINDOW_AUTO_INSIDE_ONLY = 1,
    STATEMACHINE_WINDOW_NEVER_INSIDE,
};

struct statemachine_window {
    const char *name;
    size_t name_len;
    int scope;          /* enum statemachine_window_scope */
    const char *target; /* "" for global */
    size_t target_len;
    int mode; /* enum statemachine_window_mode */
    bool weekly;
    uint64_t start_ms;
    uint64_t end_ms;
    unsigned days;
    unsigned start_minute;
    unsigned duration_minutes;
    uint64_t set_index;
    const char *requested_by;
    size_t requested_by_len;
    const char *reason;
    size_t reason_len;
};

int statemachine_window_get(struct storage_txn *t,
                            const char *name,
                            size_t name_len,
                            struct statemachine_window *out,
                            char *errmsg);

typedef int (*statemachine_window_visit)(void *data,
                                         const struct statemachine_window *w);

/* Windows with name > @after in name order, at most @limit. */
int statemachine_window_list(struct storage_txn *t,
                             const char *after,
                             size_t after_len,
                             size_t limit,
                             statemachine_window_visit visit,
                             void *data,
                             bool *more,
                             char *errmsg);

/* ------------------------------------------------------------------ */
/* Rollouts.                                                            */
/*
 * Each policy key has at most one rollout record, the replicated progress
 * of rolling its last document out in stages; the leader (cluster/) drives
 * it with ROLLOUT_UPDATE entries. What apply does (every instant comes
 * from the entries):
 *
 *   POLICY_PUT that writes the key (same transaction): a new rollout of
 *        the new document (target) at the new revision, state running,
 *        stage canary, batch 0, no agent reached. Its previous document:
 *        when the key has a rollout that is running, paused or aborted,
 *        that rollout's previous (the agents not reached still run it);
 *        otherwise the key's old value and revision, or none for a new
 *        key.
 *   POLICY_DELETE that removes the key: removes its rollout too.
 *   ROLLOUT_UPDATE   REMS_ENOTFOUND when the key has no rollout;
 *        REMS_ECONFLICT when its target revision is not the entry's
 *        rollout_revision (a stale proposal) or the operation is not
 *        allowed in its state; otherwise:
 *          advance   running: stage, batch and agents reached as given,
 *                    stage_started_ms = time_ms
 *          done      running -> done
 *          pause     running -> paused
 *          resume    paused -> running, stage_started_ms = time_ms
 *          abort     running|paused -> aborted (every agent gets the
 *                    previous document again; the policy stays)
 *          rollback  running|paused|aborted -> rolled_back, and the
 *                    policy is written back to the previous document at
 *                    a new revision (this entry's index; created_index
 *                    kept), or deleted when there is none. That write
 *                    starts no new rollout.
 *        Each sets message = the entry's reason, updated_index and
 *        updated_ms; done, abort and rollback set finished_ms; pause,
 *        resume, abort and rollback set requested_by to the entry's.
 *
 * The decoder requires @key (a valid policy key), rollout_revision >= 1
 * and op; advance requires stage (gate|pause), batch (0..1000000) and
 * @value: a JSON array of agent ids (statemachine_id_check(), written
 * without escapes) in strictly increasing byte order, so each appears
 * once, at most STATEMACHINE_REACHED_MAX bytes; the other operations
 * refuse stage, batch and value. Rollout updates are audited under the
 * policy key. */

#define STATEMACHINE_REACHED_MAX (1024 * 1024) /* bytes of reached JSON */
#define STATEMACHINE_BATCH_MAX 1000000u

enum statemachine_rollout_state {
    STATEMACHINE_ROLLOUT_RUNNING,
    STATEMACHINE_ROLLOUT_PAUSED,
    STATEMACHINE_ROLLOUT_ABORTED,
    STATEMACHINE_ROLLOUT_ROLLED_BACK,
    STATEMACHINE_ROLLOUT_DONE,
    STATEMACHINE_ROLLOUT_STATE_NR
};

enum statemachine_rollout_stage {
    STATEMACHINE_ROLLOUT_CANARY, /* no agent reached yet */
    STATEMACHINE_ROLLOUT_GATE,   /* waiting for the reached to be healthy */
    STATEMACHINE_ROLLOUT_PAUSE,  /* between batches */
    STATEMACHINE_ROLLOUT_STAGE_NR
};

enum statemachine_rollout_op {
    STATEMACHINE_ROLLOUT_ADVANCE,
    STATEMACHINE_ROLLOUT_OP_DONE,
    STATEMACHINE_ROLLOUT_OP_PAUSE,
    STATEMACHINE_ROLLOUT_RESUME,
    STATEMACHINE_ROLLOUT_ABORT,
    STATEMACHINE_ROLLOUT_ROLLBACK,
    STATEMACHINE_ROLLOUT_OP_NR
};

/* "running", "paused", "aborted", "rolled_back", "done"; "unknown" out of
 * range. */
const char *statemachine_rollout_state_name(int state);

/* "canary", "gate", "pause"; "unknown" out of range. */
const char *statemachine_rollout_stage_name(int stage);

/* "advance", "done", "pause", "resume", "abort", "rollback"; "unknown" out
 * of range. */
const char *statemachine_rollout_op_name(int op);

/* Parse a name of the functions above into *@out: 0 or REMS_EINVAL
 * (*@out untouched). */
int statemachine_rollout_state_parse(const char *s, size_t len, int *out);
int statemachine_rollout_stage_parse(const char *s, size_t len, int *out);
int statemachine_rollout_op_parse(const char *s, size_t len, int *out);

/* A policy's rollout (strings borrowed from the transaction; the
 * documents and @reached are not NUL-terminated). */
struct statemachine_rollout {
    const char *key;
    size_t key_len;
    uint64_t target_revision; /* the policy revision rolled out */
    const char *target;       /* its document (JSON text) */
    size_t target_len;
    bool has_previous; /* false: the policy was new */
    uint64_t previous_revision;
    const char *previous; /* the document in force before ("" if none) */
    size_t previous_len;
    int state; /* enum statemachine_rollout_state */
    int stage; /* enum statemachine_rollout_stage */
    uint64_t batch; /* 0: the canary, then 1, 2, ... */
    const char *reached; /* JSON array of the agent ids reached */
    size_t reached_len;
    uint64_t n_reached;
    uint64_t started_index; /* the POLICY_PUT's index and time_ms */
    uint64_t started_ms;
    uint64_t stage_started_ms;
    uint64_t updated_index;
    uint64_t updated_ms;
    uint64_t finished_ms; /* 0 until done, aborted or rolled back */
    const char *message;  /* the reason of the last change, may be "" */
    size_t message_len;
    const char *requested_by; /* of the last pause, resume, abort or
                                 rollback; "" when none */
    size_t requested_by_len;
    uint64_t rollback_revision; /* the policy revision a rollback wrote; 0
                                   otherwise (or when it deleted a new
                                   policy) */
};

/* The rollout of policy @key: 0, REMS_ENOTFOUND or REMS_ECORRUPT. */
int statemachine_rollout_get(struct storage_txn *t,
                             const char *key,
                             size_t key_len,
                             struct statemachine_rollout *out,
                             char *errmsg);

typedef int (*statemachine_rollout_visit)(
    void *data, const struct statemachine_rollout *r);

/* Rollouts with key > @after (@after_len 0: from the start) in key
 * order, at most @limit; *@more tells whether more follow. A non-zero
 * return of @visit stops the walk and is returned; REMS_ECORRUPT for a
 * record that does not decode. */
int statemachine_rollout_list(struct storage_txn *t,
                              const char *after,
                              size_t after_len,
                              size_t limit,
                              statemachine_rollout_visit visit,
                              void *data,
                              bool *more,
                              char *errmsg);

/* Walk the agent ids of a reached array: from *@pos (0 at the start),
 * store the next id in *@id (borrowed from @reached) and advance *@pos.
 * Returns 0, REMS_ENOTFOUND after the last one, or REMS_EMALFORMED when
 * @reached does not follow the rule above (with @errmsg). */
int statemachine_rollout_reached_next(const char *reached,
                                      size_t reached_len,
                                      size_t *pos,
                                      const char **id,
                                      size_t *id_len,
                                      char *errmsg);

/* Snapshot format: a MessagePack header {v, format:"lmdb", last_applied,
 * image_len} followed by the LMDB image. */
int statemachine_snapshot(struct storage *s,
                          void *(*alloc)(size_t),
                          void (*release)(void *),
                          void **out,
                          size_t *len,
                          char *errmsg);

/* Restore from a snapshot made by statemachine_snapshot(). When the local
 * store has already applied the snapshot's index or more (a restart that
 * kept its state), the local state is kept: it is the snapshot's state plus
 * later committed entries. Otherwise the store is replaced atomically. On
 * failure the old state stays. *@replaced tells which happened. */
int statemachine_restore(struct storage *s,
                         const void *buf,
                         size_t len,
                         bool *replaced,
                         char *errmsg);

#endif /* REMS_STATEMACHINE_STATEMACHINE_H */
