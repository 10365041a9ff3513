/* api/server_int.h: what the files of the admin API share: the server,
 * one call per request, the answers, the read and write paths and the
 * parsers of common parameters (server.c), and the reconciler's calls
 * (reconcile_api.c). Private to api/. Loop thread only. */
#ifndef REMS_API_SERVER_INT_H
#define REMS_API_SERVER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "api/http.h"
#include "common/mpread.h" /* struct rems_buf */
#include "common/util.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000

struct api_server {
    uv_loop_t *loop;
    struct config cfg;
    struct http_server *http;
    struct cluster_node *node;
    api_close_cb close_cb;
    void *close_data;
    uint64_t requests_by_class[6]; /* 1xx..5xx */
};

enum call_kind {
    CALL_POLICY_PUT = 1,
    CALL_POLICY_DELETE,
    CALL_POLICY_GET,
    CALL_POLICY_LIST,
    CALL_AUDIT_LIST,
    CALL_MEMBER_ADD,
    CALL_MEMBER_REMOVE,
    CALL_MEMBER_ROLE,
    CALL_TRANSFER,
    CALL_READ_INDEX,
    /* Reads of agents, leases and commands: one run, GET to COMMAND_LIST
     * (read_local() tests the range). */
    CALL_AGENT_GET,
    CALL_AGENT_LIST,
    CALL_LEASE_LIST,
    CALL_COMMAND_GET,
    CALL_COMMAND_LIST,
    CALL_COMMAND_ISSUE,
    CALL_COMMAND_CANCEL,
    /* The reconciler's calls (reconcile_api.c): its reads from
     * CALL_INCIDENT_LIST on, its writes from CALL_INCIDENT_UPDATE on. */
    CALL_INCIDENT_LIST,
    CALL_INCIDENT_GET,
    CALL_OVERRIDE_LIST,
    CALL_WINDOW_LIST,
    CALL_WINDOW_GET,
    CALL_SUMMARY,
    CALL_DRIFT,
    CALL_RECOMMENDATIONS,
    CALL_ROLLOUT_LIST,
    CALL_ROLLOUT_GET,
    CALL_INCIDENT_UPDATE,
    CALL_OVERRIDE_SET,
    CALL_OVERRIDE_CLEAR,
    CALL_WINDOW_SET,
    CALL_WINDOW_DELETE,
    CALL_ROLLOUT_UPDATE,
};

/* What the reconciler's calls parse (reconcile_api.c). The agent of a
 * filter or of a service freeze is call.agent (call.has_agent_filter),
 * the service of a filter call.service. */
struct api_reconcile_call {
    /* Incidents. */
    uint64_t incident_id;
    const char *op;     /* Update: "acknowledge" or "resolve". */
    int incident_state; /* List: -1 any, STATEMACHINE_INCIDENT_UNRESOLVED,
                           or one state. */
    /* Overrides (enum statemachine_override_scope) and windows (enum
     * statemachine_window_scope). */
    int scope;
    char name[STATEMACHINE_NAME_MAX + 1]; /* Frozen thing; window name. */
    uint64_t until_ms;                    /* 0: until cleared. */
    bool resume; /* POST /v1/reconciler/resume: no pause is no error. */
    char target[STATEMACHINE_NAME_MAX + 1]; /* "" for global. */
    int mode;                               /* enum statemachine_window_mode */
    bool weekly;
    uint64_t start_ms;
    uint64_t end_ms;
    unsigned days;
    unsigned start_minute;
    unsigned duration_minutes;
    /* View filters; 0 or false: any. */
    bool has_service;
    bool has_site;
    char site[STATEMACHINE_NAME_MAX + 1];
    int kind;  /* enum reconcile_drift_kind */
    int level; /* enum reconcile_level */
    /* Rollouts (the policy key is call.key). */
    const char *rollout_op; /* Update: pause|resume|abort|rollback. */
    uint64_t rollout_revision; /* Update: the target revision; 0: the
                                  rollout's current one. */
    bool documents;            /* Get: with the target and previous. */
};

struct call {
    struct api_server *s;
    struct http_request *req;
    int kind;
    char trace_id[REMS_ID_SIZE + 32];
    char request_id[REMS_ID_SIZE + 32];
    char key[STATEMACHINE_KEY_MAX + 1];
    size_t key_len;
    char *value; /* Compact JSON of a put. */
    bool has_if_match;
    uint64_t if_match;
    bool stale;
    /* Lists. */
    char prefix[STATEMACHINE_KEY_MAX + 1];
    char after[STATEMACHINE_KEY_MAX + 1];
    uint64_t after_index;
    size_t limit;
    /* Members. */
    uint64_t member_id;
    int role;
    char raft_address[CONFIG_ADDR_SIZE];
    char api_address[CONFIG_ADDR_SIZE];
    /* Agents and commands. @value holds the JSON text of an issue's
     * arguments or of a cancel's result. */
    char id[STATEMACHINE_ID_MAX + 1]; /* Agent or command id. */
    char agent[STATEMACHINE_ID_MAX + 1];
    char action[STATEMACHINE_NAME_MAX + 1];
    char service[STATEMACHINE_NAME_MAX + 1];
    char reason[STATEMACHINE_REASON_MAX + 1]; /* The body's, if any. */
    bool has_reason;
    uint64_t ttl_ms;
    bool has_agent_filter;
    int state_filter;  /* -1: any. */
    int online_filter; /* -1: any, 0: offline, 1: online. */
    bool force;        /* Cancel a command its agent may be running. */
    /* In flight. */
    struct cluster_write write;
    struct cluster_wait wait;
    struct cluster_forward forward;
    struct cluster_change change;
    uint64_t started_ms;
    /* A body to forward in place of the request's (NULL: the request's),
     * when the receiving node resolved something (a relative time). */
    char *forward_body;
    struct api_reconcile_call rc;
};

/* ------------------------------------------------------------------ */
/* server.c                                                             */

/* Send @body (a JSON value, stolen) with @status, the usual headers and
 * the @n_extra headers @extra; frees @c. */
void api__respond_json(struct call *c,
                       int status,
                       json_t *body,
                       const struct http_header *extra,
                       size_t n_extra);

/* Answer {"error": {code, message, field}} (@field may be NULL); frees
 * @c. */
void api__respond_error(struct call *c,
                        int status,
                        const char *code,
                        const char *message,
                        const char *field);

/* Answer a REMS_E* code of a write or read (503, 504, 404, ...). */
void api__respond_status(struct call *c, int rv, const char *message);

/* 405 for a method the path does not take. */
void api__method_not_allowed(struct call *c);

/* A JSON string of @len bytes at @s, any bytes shown as valid UTF-8. */
json_t *api__nstr(const char *s, size_t len);

/* @v as a JSON integer, or null when it is 0 (not yet, unknown). */
json_t *api__index_or_null(uint64_t v);

/* Read for @c: at once when c->stale, else after a read index (asked of
 * the leader from a follower); then the local read of its kind. */
void api__do_read(struct call *c);

/* Write for @c: on the leader, propose (the reconciler's kinds through
 * api__reconcile_propose()); on a follower, forward to the leader. */
void api__do_write(struct call *c);

/* Time, trace and request ids, who (X-Rems-User, else "anonymous") and
 * why (X-Rems-Reason) of an entry proposed for @c. */
void api__fill_entry_meta(struct call *c, struct statemachine_entry *e);

/* Parsers of common parameters: false when they answered @c (400 naming
 * the field). */
bool api__parse_write_headers(struct call *c);
bool api__parse_consistency(struct call *c);
bool api__parse_limit(struct call *c);
/* The body as a JSON object (NULL when answered). */
json_t *api__parse_body_object(struct call *c);
/* An optional string field of at most @max bytes into @out. */
bool api__parse_string_field(struct call *c,
                             json_t *o,
                             const char *field,
                             size_t max,
                             char *out,
                             bool *present);
/* A service name: 1 to 64 bytes of [A-Za-z0-9._:@-]. */
bool api__service_valid(const char *s, size_t len);

/* ------------------------------------------------------------------ */
/* reconcile_api.c                                                      */

/* Route @c when its path is one of the reconciler's (incidents,
 * overrides, maintenance windows, the reconciler, summary, drift,
 * recommendations, rollouts): true when it did (@c is then answered or in flight),
 * false when the path is not one of them. */
bool api__reconcile_route(struct call *c);

/* The local read of a reconciler kind (after any read index). */
void api__reconcile_read(struct call *c);

/* On the leader: propose the entry of a reconciler write. 0 (@c is
 * answered, or its answer follows) or a REMS_E* code with @errmsg (the
 * caller answers). */
int api__reconcile_propose(struct call *c, char *errmsg);

/* Append the reconciler's metrics to @b (Prometheus text). */
void api__reconcile_metrics(struct call *c, struct rems_buf *b);

/* ------------------------------------------------------------------ */
/* faults_api.c                                                         */

/* Answer @c, a call on /v1/faults: the node's own fault-injection switch,
 * never forwarded (404 when the node runs without fault_injection). */
void api__faults_serve(struct call *c);

#endif /* REMS_API_SERVER_INT_H */
