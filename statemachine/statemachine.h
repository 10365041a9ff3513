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
    /* POLICY_PUT / POLICY_DELETE */
    const char *key;
    size_t key_len;
    const char *value; /* POLICY_PUT: the JSON object text. */
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
    uint64_t current_revision; /* On REMS_ECONFLICT: the key's revision. */
    bool created;              /* Put: the key did not exist. */
    bool duplicate; /* A retried request id: result of the first time. */
    bool skipped;   /* Index already applied: nothing done. */
    int command_state; /* Commands: the state after the entry; on
                          REMS_ECONFLICT or REMS_EEXIST the state the
                          command already has. */
    int type; /* The entry's type when it decoded and was applied (not
                 skipped); 0 otherwise. */
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
