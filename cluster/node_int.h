/* cluster/node_int.h: the node's private state, shared by the files of
 * cluster/. Never included from outside the module. */
#ifndef REMS_CLUSTER_NODE_INT_H
#define REMS_CLUSTER_NODE_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "cluster/cluster.h"
#include "common/queue.h"

struct cluster_node {
    uv_loop_t *loop;
    struct config cfg;
    int lock_fd;
    struct storage *storage;
    struct raft_uv_transport transport;
    /* The wrapper raft_uv is given instead of @transport when the node runs
     * with fault_injection (faults.c); NULL otherwise. */
    struct cluster_faults *faults;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    bool raft_started;
    bool raft_closed;
    bool stopping;
    cluster_close_cb close_cb;
    void *close_data;
    int handles_open;

    /* Highest index the state store reflects. After a restart raft
     * re-applies from its snapshot (entries the store already holds are
     * skipped), so raft's last_applied starts low while the store is
     * already ahead: answers report this one. */
    uint64_t state_applied;

    uv_timer_t tick;
    uv_check_t check;
    bool check_active;

    /* Observed by the tick. */
    int role;
    uint64_t term;
    uint64_t leader_id;
    bool leader_ready;
    struct raft_barrier leader_barrier;
    bool leader_barrier_inflight;
    uint64_t leader_barrier_term;

    /* Local proposals in index order (struct cluster_write). */
    rems_queue writes;

    /* Read index. */
    rems_queue reads_next;     /* Arrived, wait for the next barrier. */
    rems_queue reads_inflight; /* Answered by the barrier in flight. */
    struct raft_barrier read_barrier;
    bool read_barrier_inflight;

    /* Apply waits. */
    rems_queue waits;

    /* Joining a cluster. */
    bool joining;
    uint64_t join_next_ms;
    bool join_inflight;
    struct cluster_forward join_req;

    /* libcurl multi. */
    void *multi;
    uv_timer_t curl_timer;
    rems_queue forwards;
    int curl_handles_open;
    bool forward_closing;

    struct cluster_metrics metrics;

    /* Agent links (agents.c); NULL without agent_address. */
    struct cluster_agents *agents;

    /* The reconciler's loop and views (reconciler.c). */
    struct cluster_reconciler *reconciler;
};

int cluster__raft_error(int rv);
void cluster__member_api_address(struct cluster_node *n,
                                 uint64_t id,
                                 char *out);
void cluster__stop_continue(struct cluster_node *n);

void cluster__reads_start(struct cluster_node *n);
void cluster__reads_fail(struct cluster_node *n, int status);
void cluster__waits_kick(struct cluster_node *n);
void cluster__waits_expire(struct cluster_node *n);
void cluster__waits_fail(struct cluster_node *n, int status);
void cluster__join_tick(struct cluster_node *n);

int cluster__agents_start(struct cluster_node *n, char *errmsg);
void cluster__agents_activate(struct cluster_node *n);
void cluster__agents_deactivate(struct cluster_node *n);
void cluster__agents_applied(struct cluster_node *n,
                             const void *buf,
                             size_t len,
                             const struct statemachine_result *res);
void cluster__agents_close(struct cluster_node *n);
bool cluster__agents_idle(struct cluster_node *n);
void cluster__agents_free(struct cluster_node *n);

/* init allocates (before any other resource); start starts the loop's
 * timer and cannot fail. */
int cluster__reconciler_init(struct cluster_node *n, char *errmsg);
void cluster__reconciler_start(struct cluster_node *n);
void cluster__reconciler_close(struct cluster_node *n);
bool cluster__reconciler_idle(struct cluster_node *n);
void cluster__reconciler_free(struct cluster_node *n);

/* Fault injection (faults.c). open wraps @inner (raft_uv_tcp, initialised;
 * borrowed, and its data field is taken) in a transport for raft_uv_init(),
 * returned by cluster__faults_transport(). free releases it once raft_uv
 * has closed it (or never started it); NULL is a no-op. */
struct cluster_faults;
int cluster__faults_open(uv_loop_t *loop,
                         struct raft_uv_transport *inner,
                         struct cluster_faults **out,
                         char *errmsg);
struct raft_uv_transport *cluster__faults_transport(struct cluster_faults *f);
void cluster__faults_free(struct cluster_faults *f);

int cluster__forward_init(struct cluster_node *n, char *errmsg);
void cluster__forward_close(struct cluster_node *n);
bool cluster__forward_idle(struct cluster_node *n);

#endif /* REMS_CLUSTER_NODE_INT_H */
