/* cluster: one remsd node: raft (raft_uv) over the LMDB state machine,
 * leadership tracking, batched read index, apply waits, membership and
 * write forwarding to the leader.
 *
 * The only cluster/ header other modules may include (besides config.h for
 * remsd's main). Everything runs on the loop thread. */
#ifndef REMS_CLUSTER_CLUSTER_H
#define REMS_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <raft.h>
#include <uv.h>

#include "cluster/config.h"
#include "common/error.h"
#include "statemachine/statemachine.h"

enum cluster_role {
    CLUSTER_ROLE_UNAVAILABLE,
    CLUSTER_ROLE_FOLLOWER,
    CLUSTER_ROLE_CANDIDATE,
    CLUSTER_ROLE_LEADER,
};

const char *cluster_role_name(int role);

struct cluster_member {
    uint64_t id;
    char raft_address[CONFIG_ADDR_SIZE];
    char api_address[CONFIG_ADDR_SIZE]; /* "" when unknown. */
    int role; /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
};

struct cluster_status {
    uint64_t id;
    int role;
    uint64_t term;
    uint64_t leader_id; /* 0 when none is known. */
    char leader_raft_address[CONFIG_ADDR_SIZE];
    char leader_api_address[CONFIG_ADDR_SIZE];
    uint64_t commit_index;
    uint64_t applied_index; /* raft's: every entry kind, restarts low. */
    uint64_t state_index;   /* Last change the state store reflects: never
                               goes back, also across a restart. */
    uint64_t last_index;
    uint64_t last_contact_ms; /* 0 on the leader. */
    bool leader_ready;        /* Leader whose first barrier committed. */
    struct cluster_member members[CONFIG_MAX_PEERS * 2];
    size_t n_members;
};

struct cluster_node;

/* Open the data dir (locking it), the state store and raft; bootstrap from
 * the configured peers when the data dir is new; start raft. @cfg is
 * copied. Errors name their cause in @errmsg (REMS_EADDRINUSE, REMS_EBUSY
 * for a data dir used by another process, REMS_EIO, REMS_ECONFIG ...). */
int cluster_node_start(uv_loop_t *loop,
                       const struct config *cfg,
                       struct cluster_node **out,
                       char *errmsg);

typedef void (*cluster_close_cb)(void *data);

/* Fail pending requests with REMS_ESHUTDOWN, close raft, flush and close
 * the store, then call @cb and free the node. */
void cluster_node_stop(struct cluster_node *n, cluster_close_cb cb, void *data);

/* Everything about this node and the cluster, members included. */
void cluster_node_status(struct cluster_node *n, struct cluster_status *out);

/* The cheap part of the status, for every answer: role, term, indexes,
 * last contact, leader id and API address; members are left empty. */
void cluster_node_brief(struct cluster_node *n, struct cluster_status *out);

/* The state store, for local reads (read transactions). */
struct storage *cluster_node_storage(struct cluster_node *n);

const struct config *cluster_node_config(const struct cluster_node *n);

/* ------------------------------------------------------------------ */
/* Writes (leader only).                                                */

struct cluster_write;
typedef void (*cluster_write_cb)(struct cluster_write *req,
                                 int status,
                                 const struct statemachine_result *res);

struct cluster_write {
    void *data; /* For the caller. */
    /* Private: */
    struct raft_apply apply;
    struct cluster_node *node;
    cluster_write_cb cb;
    struct statemachine_result res;
    bool has_res;
    void *queue[2];
};

/* Propose @e (encoded here; time_ms is set by the caller). Returns
 * REMS_ENOTLEADER when this node is not the leader, else 0 and @cb runs once
 * with 0 (see @res), REMS_ELEADERSHIPLOST (outcome unknown), REMS_ESHUTDOWN
 * or another error. */
int cluster_node_propose(struct cluster_node *n,
                         struct cluster_write *req,
                         const struct statemachine_entry *e,
                         cluster_write_cb cb,
                         char *errmsg);

/* ------------------------------------------------------------------ */
/* Linearizable reads.                                                  */

struct cluster_wait;
typedef void (*cluster_wait_cb)(struct cluster_wait *req,
                                int status,
                                uint64_t index);

struct cluster_wait {
    void *data;
    /* Private: */
    struct cluster_node *node;
    cluster_wait_cb cb;
    uint64_t index;
    uint64_t deadline;
    void *queue[2];
};

/* Leader only: confirm leadership with a quorum round shared by every read
 * that arrived before it started, then call @cb with the read index (all
 * entries up to it are applied here). REMS_ENOTLEADER if not leader. */
int cluster_node_read_index(struct cluster_node *n,
                            struct cluster_wait *req,
                            cluster_wait_cb cb);

/* Call @cb once this node has applied @index, or with REMS_ETIMEDOUT after
 * @timeout_ms. Runs @cb before returning... never: always from the loop. */
void cluster_node_wait_applied(struct cluster_node *n,
                               struct cluster_wait *req,
                               uint64_t index,
                               unsigned timeout_ms,
                               cluster_wait_cb cb);

/* ------------------------------------------------------------------ */
/* Membership (leader only).                                            */

struct cluster_change;
typedef void (*cluster_change_cb)(struct cluster_change *req,
                                  int status,
                                  const char *errmsg);

struct cluster_change {
    void *data;
    /* Private: */
    struct cluster_node *node;
    cluster_change_cb cb;
    int kind;
    uint64_t id;
    int role;
    char raft_address[CONFIG_ADDR_SIZE];
    char api_address[CONFIG_ADDR_SIZE];
    struct cluster_write write;
    struct raft_change change;
    struct raft_transfer transfer;
    char errmsg[REMS_ERRMSG_SIZE];
};

/* Add member @id (records its API address through the log, then adds it
 * as a spare and assigns @role once it caught up). */
int cluster_node_member_add(struct cluster_node *n,
                            struct cluster_change *req,
                            uint64_t id,
                            const char *raft_address,
                            const char *api_address,
                            int role,
                            cluster_change_cb cb,
                            char *errmsg);

int cluster_node_member_remove(struct cluster_node *n,
                               struct cluster_change *req,
                               uint64_t id,
                               cluster_change_cb cb,
                               char *errmsg);

int cluster_node_member_assign(struct cluster_node *n,
                               struct cluster_change *req,
                               uint64_t id,
                               int role,
                               cluster_change_cb cb,
                               char *errmsg);

/* Transfer leadership to @id (0: any voter); @cb runs when it ended. */
int cluster_node_transfer(struct cluster_node *n,
                          struct cluster_change *req,
                          uint64_t id,
                          cluster_change_cb cb,
                          char *errmsg);

/* ------------------------------------------------------------------ */
/* HTTP forwarding to another node's API (libcurl multi on the loop).   */

struct cluster_forward;
typedef void (*cluster_forward_cb)(struct cluster_forward *req,
                                   /* 0 or the transport's REMS_E*:
                                    * REMS_ENOLEADER when no connection
                                    * could be made (nothing was sent),
                                    * REMS_ETIMEDOUT, REMS_EIO (the request
                                    * may have been delivered),
                                    * REMS_ESHUTDOWN, REMS_ENOMEM */
                                   int status,
                                   long http_status,
                                   const char *body,
                                   size_t body_len);

struct cluster_forward {
    void *data;
    /* Private: */
    struct cluster_node *node;
    cluster_forward_cb cb;
    void *easy;
    void *headers;
    char *resp;
    size_t resp_len;
    size_t resp_cap;
    char *req_body;
    char errmsg[REMS_ERRMSG_SIZE];
    void *queue[2];
};

/* Send @method @path_query to http://@api_address with @headers ("Name:
 * value" strings, copied) and @body (copied). @cb runs once. */
int cluster_node_forward(struct cluster_node *n,
                         struct cluster_forward *req,
                         const char *api_address,
                         const char *method,
                         const char *path_query,
                         const char *const *headers,
                         size_t n_headers,
                         const char *body,
                         size_t body_len,
                         unsigned timeout_ms,
                         cluster_forward_cb cb);

/* Counters for /metrics. */
struct cluster_metrics {
    uint64_t writes_ok;
    uint64_t writes_failed;
    uint64_t read_index_rounds;
    uint64_t forwarded;
    uint64_t snapshots_taken;
    uint64_t snapshots_restored;
    uint64_t elections_won;
};

void cluster_node_metrics(const struct cluster_node *n,
                          struct cluster_metrics *out);

/* ------------------------------------------------------------------ */
/* Agents (cluster/agents.c).                                           */

/* What the ready leader knows of an agent beyond the replicated state. */
struct cluster_agent_live {
    bool connected;      /* An active link to this node. */
    char peer[64];       /* Its "ip:port" when connected. */
    bool has_lease;      /* The leader holds a lease for it. */
    uint64_t lease_remaining_ms;
    size_t commands_in_flight; /* Sent, not answered yet. */
};

/* 0 and *@out, or REMS_ENOTLEADER when this node is not the ready leader
 * (or runs no agent listener): only the leader knows. */
int cluster_node_agent_live(struct cluster_node *n,
                            const char *id,
                            struct cluster_agent_live *out);

/* True when this node sent command @id to its agent and no answer has been
 * applied yet: cancelling it then would race with its execution. */
bool cluster_node_command_delivered(struct cluster_node *n, const char *id);

struct cluster_agent_metrics {
    uint64_t connections; /* Open agent connections (any state). */
    uint64_t connected;   /* Welcomed agents. */
    uint64_t leases;      /* Leases held by this leader. */
    uint64_t hellos;
    uint64_t redirects;
    uint64_t refused; /* Handshakes or hellos refused. */
    uint64_t bad_frames;
    uint64_t heartbeats;
    uint64_t commands_sent;
    uint64_t acks;
    uint64_t nacks;
    uint64_t commands_expired;
    uint64_t leases_expired;
};

void cluster_node_agent_metrics(const struct cluster_node *n,
                                struct cluster_agent_metrics *out);

/* ------------------------------------------------------------------ */
/* The reconciler (cluster/reconciler.c, docs/adr/0005-reconciler.md).  */

struct reconcile_output;

/* The reconciler's view from this node: the output of a reconcile pass
 * (cluster/reconcile.h) over this node's own tables. On the ready leader
 * it is the loop's latest pass; elsewhere a pass computed on demand and
 * reused while it is under a second old and nothing new was applied. */
struct cluster_reconcile_view {
    /* Borrowed: valid until control returns to the loop. */
    const struct reconcile_output *out;
    uint64_t index;  /* the applied index of the tables it read */
    uint64_t now_ms; /* the pass's clock (wall, ms since the epoch) */
    bool by_leader;  /* the ready leader's own pass */
    /* Stored policies left out because they do not validate (written
     * before validation existed): how many, and the first one's key and
     * error ("" when none). */
    size_t n_invalid;
    const char *invalid_key;
    const char *invalid_error;
};

/* 0 and *@out, REMS_ENOMEM, or a storage error (REMS_EIO, REMS_ECORRUPT)
 * naming what could not be read. Loop thread only. */
int cluster_node_reconcile_view(struct cluster_node *n,
                                struct cluster_reconcile_view *out,
                                char *errmsg);

struct cluster_reconcile_metrics {
    uint64_t passes;           /* passes run by this node's leader loop */
    uint64_t pass_errors;      /* passes that failed (logged) */
    uint64_t last_pass_us;     /* duration of the last pass, load included */
    uint64_t drifts;           /* drifts in the last pass */
    uint64_t holds;            /* actions held back in the last pass */
    uint64_t commands_issued;  /* remediations proposed */
    uint64_t incidents_opened; /* incidents proposed */
    uint64_t rollout_steps;    /* rollout updates proposed */
};

void cluster_node_reconcile_metrics(const struct cluster_node *n,
                                    struct cluster_reconcile_metrics *out);

#endif /* REMS_CLUSTER_CLUSTER_H */
