/* One remsd node: raft_uv + the LMDB state machine.
 *
 * Start: lock <data_dir>/LOCK (flock), check <data_dir>/NODE_ID against the
 * configured id, open the store in <data_dir>/state, init raft_uv on
 * <data_dir>/raft with the TCP transport, bootstrap from the configured
 * peers when the raft directory is new, enable pre-vote, start raft, start
 * the tick timer. A node started with `join` and a new data dir does not
 * bootstrap: it asks a member (POST /v1/members) to add it, retrying every
 * second until that member answers.
 *
 * Tick (every 20 ms): observes raft's state, term and leader; logs each
 * change as one event; on becoming leader commits a barrier (entries of
 * earlier terms are then committed and applied) before leader_ready is set
 * and read-index requests are served; on losing leadership fails the
 * waiting reads with REMS_ENOTLEADER.
 *
 * Read index: reads queue in `reads_next`; when no barrier is in flight, one
 * is proposed and the queued reads move to `reads_inflight`. A barrier
 * proposed before a read arrived never answers that read, so every read is
 * confirmed by a quorum round that started after it arrived.
 *
 * Apply waits: `waits` holds requests for "applied >= index"; a uv_check
 * handle, active only while the queue is non-empty, answers them after each
 * loop iteration (raft applies barriers and configuration entries without
 * calling the FSM, so an FSM hook alone would miss them).
 *
 * Stop: fail reads and waits with REMS_ESHUTDOWN, raft_close (which fails
 * pending applies), then close the transport, the store and the lock. */
#define _GNU_SOURCE /* flock */
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <raft/uv.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cluster/node_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"

#define TICK_MS 20

const char *cluster_role_name(int role)
{
    switch (role) {
        case CLUSTER_ROLE_FOLLOWER:
            return "follower";
        case CLUSTER_ROLE_CANDIDATE:
            return "candidate";
        case CLUSTER_ROLE_LEADER:
            return "leader";
        default:
            return "unavailable";
    }
}

static int raft_role_to_cluster(struct raft *r)
{
    switch (raft_state(r)) {
        case RAFT_FOLLOWER:
            return CLUSTER_ROLE_FOLLOWER;
        case RAFT_CANDIDATE:
            return CLUSTER_ROLE_CANDIDATE;
        case RAFT_LEADER:
            return CLUSTER_ROLE_LEADER;
        default:
            return CLUSTER_ROLE_UNAVAILABLE;
    }
}

int cluster__raft_error(int rv)
{
    switch (rv) {
        case 0:
            return 0;
        case RAFT_NOMEM:
            return REMS_ENOMEM;
        case RAFT_NOTLEADER:
            return REMS_ENOTLEADER;
        case RAFT_LEADERSHIPLOST:
            return REMS_ELEADERSHIPLOST;
        case RAFT_SHUTDOWN:
            return REMS_ESHUTDOWN;
        case RAFT_NOSPACE:
            return REMS_ENOSPACE;
        case RAFT_BADID:
        case RAFT_BADROLE:
        case RAFT_DUPLICATEID:
        case RAFT_DUPLICATEADDRESS:
        case RAFT_NOTFOUND:
            return REMS_EINVAL;
        case RAFT_CANTCHANGE:
            return REMS_EBUSY;
        default:
            return REMS_EIO;
    }
}

/* ------------------------------------------------------------------ */
/* FSM.                                                                 */

static int fsm_apply(struct raft_fsm *fsm,
                     const struct raft_buffer *buf,
                     void **result)
{
    struct cluster_node *n = fsm->data;
    uint64_t index = raft_last_applied(&n->raft) + 1;
    struct statemachine_result res;
    char errmsg[REMS_ERRMSG_SIZE] = "";
    rems_queue *q;
    int rv;

    rv = statemachine_apply(n->storage, index, buf->base, buf->len, &res,
                            errmsg);
    if (rv != 0) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_ERROR, "apply_failed");
        rems_log_u64(&l, "index", index);
        rems_log_str(&l, "error", errmsg);
        rems_log_end(&l);
        return RAFT_IOERR;
    }
    if (res.code == REMS_EMALFORMED || res.code == REMS_EUNSUPPORTED) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_ERROR, "entry_refused");
        rems_log_u64(&l, "index", index);
        rems_log_str(&l, "reason", errmsg);
        rems_log_end(&l);
    }
    if (index > n->state_applied) {
        n->state_applied = index;
    }
    if (n->agents != NULL) {
        cluster__agents_applied(n, buf->base, buf->len, &res);
    }
    *result = NULL;
    /* Local proposals are queued in index order. */
    REMS_QUEUE_FOREACH(q, &n->writes)
    {
        struct cluster_write *w = REMS_QUEUE_DATA(q, struct cluster_write,
                                                  queue);
        if (w->apply.index == index) {
            w->res = res;
            w->has_res = true;
            *result = w;
            break;
        }
        if (w->apply.index > index) {
            break;
        }
    }
    cluster__waits_kick(n);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm,
                        struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct cluster_node *n = fsm->data;
    char errmsg[REMS_ERRMSG_SIZE];
    struct raft_buffer *b;
    void *data;
    size_t len;
    struct rems_log_line l;
    uint64_t t0 = rems_mono_ms();
    int rv;

    b = raft_malloc(sizeof *b);
    if (b == NULL) {
        return RAFT_NOMEM;
    }
    rv = statemachine_snapshot(n->storage, raft_malloc, raft_free, &data, &len,
                               errmsg);
    if (rv != 0) {
        raft_free(b);
        rems_log_begin(&l, REMS_LOG_ERROR, "snapshot_failed");
        rems_log_str(&l, "error", errmsg);
        rems_log_end(&l);
        return rv == REMS_ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    b->base = data;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    n->metrics.snapshots_taken++;
    rems_log_begin(&l, REMS_LOG_INFO, "snapshot_taken");
    rems_log_u64(&l, "index", raft_last_applied(&n->raft));
    rems_log_u64(&l, "bytes", len);
    rems_log_u64(&l, "ms", rems_mono_ms() - t0);
    rems_log_end(&l);
    return 0;
}

/* Refresh state_applied from the store's own record. */
static void read_state_applied(struct cluster_node *n)
{
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    uint64_t last = 0;
    if (storage_txn_begin(n->storage, false, &t, errmsg) == 0) {
        if (statemachine_last_applied(t, &last, errmsg) == 0) {
            n->state_applied = last;
        }
        storage_txn_abort(t);
    }
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct cluster_node *n = fsm->data;
    char errmsg[REMS_ERRMSG_SIZE];
    bool replaced = false;
    struct rems_log_line l;
    int rv;

    rv = statemachine_restore(n->storage, buf->base, buf->len, &replaced,
                              errmsg);
    if (rv != 0) {
        rems_log_begin(&l, REMS_LOG_ERROR, "snapshot_restore_failed");
        rems_log_str(&l, "error", errmsg);
        rems_log_end(&l);
        return RAFT_CORRUPT;
    }
    n->metrics.snapshots_restored++;
    read_state_applied(n);
    rems_log_begin(&l, REMS_LOG_INFO, "snapshot_restored");
    rems_log_u64(&l, "bytes", buf->len);
    rems_log_bool(&l, "replaced", replaced);
    rems_log_end(&l);
    raft_free(buf->base);
    cluster__waits_kick(n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Data directory.                                                      */

static int ensure_dir(const char *path, char *errmsg)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        rems_errmsgf(errmsg, "create %s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    return 0;
}

static bool dir_is_empty(const char *path)
{
    char probe[CONFIG_PATH_SIZE + 32];
    /* raft_uv writes "metadata1"/"metadata2" once it has any state. */
    snprintf(probe, sizeof probe, "%s/metadata1", path);
    if (access(probe, F_OK) == 0) {
        return false;
    }
    snprintf(probe, sizeof probe, "%s/metadata2", path);
    return access(probe, F_OK) != 0;
}

static int lock_data_dir(struct cluster_node *n, char *errmsg)
{
    char path[CONFIG_PATH_SIZE + 32];
    char pid[32];
    int len;
    snprintf(path, sizeof path, "%s/LOCK", n->cfg.data_dir);
    n->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (n->lock_fd < 0) {
        rems_errmsgf(errmsg, "open %s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    if (flock(n->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char other[32] = "?";
        ssize_t r = pread(n->lock_fd, other, sizeof other - 1, 0);
        if (r > 0) {
            other[r] = '\0';
            other[strcspn(other, "\n")] = '\0';
        }
        rems_errmsgf(errmsg,
                     "data_dir %s is in use by another remsd (pid %s)",
                     n->cfg.data_dir, other);
        close(n->lock_fd);
        n->lock_fd = -1;
        return REMS_EBUSY;
    }
    len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(n->lock_fd, 0) != 0 ||
        pwrite(n->lock_fd, pid, (size_t)len, 0) != len) {
        /* Only informational. */
    }
    return 0;
}

/* The data dir remembers which node it belongs to. */
static int check_node_id(struct cluster_node *n, char *errmsg)
{
    char path[CONFIG_PATH_SIZE + 32];
    char buf[32];
    ssize_t r;
    int fd;
    uint64_t id;

    snprintf(path, sizeof path, "%s/NODE_ID", n->cfg.data_dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r > 0) {
            buf[r] = '\0';
            buf[strcspn(buf, "\n")] = '\0';
            if (rems_parse_u64(buf, &id) == 0 && id != n->cfg.node_id) {
                rems_errmsgf(errmsg,
                             "node_id: %llu does not match data_dir %s, "
                             "which belongs to node %llu",
                             (unsigned long long)n->cfg.node_id,
                             n->cfg.data_dir, (unsigned long long)id);
                return REMS_ECONFIG;
            }
            return 0;
        }
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rems_errmsgf(errmsg, "create %s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    r = (ssize_t)snprintf(buf, sizeof buf, "%llu\n",
                          (unsigned long long)n->cfg.node_id);
    if (write(fd, buf, (size_t)r) != r || fsync(fd) != 0) {
        close(fd);
        rems_errmsgf(errmsg, "write %s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Tick: leadership tracking.                                           */

static void member_recorded_cb(struct cluster_write *w,
                               int status,
                               const struct statemachine_result *res)
{
    (void)res;
    if (status != 0) {
        rems_log(REMS_LOG_WARN, "member_address_not_recorded",
                 rems_strerror(status));
    }
    rems_free(w);
}

/* Make sure every member's API address is in the replicated members table,
 * so that nodes started without a peers list (joined ones) can reach the
 * leader's API: the leader records its own address, and those of configured
 * peers that are members, whenever the table lacks or disagrees with them. */
static void record_member_addresses(struct cluster_node *n)
{
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    unsigned i;

    for (i = 0; i < n->raft.configuration.n; i++) {
        const struct raft_server *srv = &n->raft.configuration.servers[i];
        const char *api = NULL;
        const char *agent;
        struct statemachine_member m;
        struct statemachine_entry e;
        struct cluster_write *w;
        bool known = false;
        size_t j;

        if (srv->id == n->cfg.node_id) {
            api = n->cfg.api_address;
        }
        for (j = 0; api == NULL && j < n->cfg.n_peers; j++) {
            if (n->cfg.peers[j].id == srv->id &&
                strcmp(n->cfg.peers[j].raft_address, srv->address) == 0) {
                api = n->cfg.peers[j].api_address;
            }
        }
        if (api == NULL) {
            continue;
        }
        if (storage_txn_begin(n->storage, false, &t, errmsg) != 0) {
            return;
        }
        if (statemachine_member_get(t, srv->id, &m, errmsg) != 0) {
            memset(&m, 0, sizeof m);
        } else {
            known = strcmp(m.api_address, api) == 0 &&
                    strcmp(m.raft_address, srv->address) == 0;
        }
        storage_txn_abort(t);
        /* Only a node knows its own agent address: keep a peer's. */
        agent = srv->id == n->cfg.node_id ? n->cfg.agent_address
                                          : m.agent_address;
        known = known && strcmp(m.agent_address, agent) == 0;
        if (known) {
            continue;
        }
        w = rems_calloc(1, sizeof *w);
        if (w == NULL) {
            return;
        }
        memset(&e, 0, sizeof e);
        e.type = STATEMACHINE_ENTRY_MEMBER_SET;
        e.time_ms = rems_wall_ms();
        e.requested_by = "remsd";
        e.requested_by_len = 5;
        e.reason = "record member address";
        e.reason_len = strlen(e.reason);
        e.member_id = srv->id;
        e.raft_address = srv->address;
        e.raft_address_len = strlen(srv->address);
        e.api_address = api;
        e.api_address_len = strlen(api);
        e.agent_address = agent;
        e.agent_address_len = strlen(agent);
        if (cluster_node_propose(n, w, &e, member_recorded_cb, errmsg) != 0) {
            rems_free(w);
            return;
        }
    }
}

static void leader_barrier_cb(struct raft_barrier *req, int status)
{
    struct cluster_node *n = req->data;
    n->leader_barrier_inflight = false;
    if (n->stopping) {
        return;
    }
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        raft_current_term(&n->raft) == n->leader_barrier_term) {
        struct rems_log_line l;
        n->leader_ready = true;
        rems_log_begin(&l, REMS_LOG_INFO, "leader_ready");
        rems_log_u64(&l, "term", n->leader_barrier_term);
        rems_log_u64(&l, "applied_index", raft_last_applied(&n->raft));
        rems_log_end(&l);
        cluster__reads_start(n);
        record_member_addresses(n);
        cluster__agents_activate(n);
    }
}

static void observe(struct cluster_node *n)
{
    int role = raft_role_to_cluster(&n->raft);
    uint64_t term = raft_current_term(&n->raft);
    raft_id leader_id = 0;
    const char *leader_addr = NULL;

    raft_leader(&n->raft, &leader_id, &leader_addr);
    if (role != CLUSTER_ROLE_FOLLOWER && role != CLUSTER_ROLE_LEADER) {
        leader_id = 0;
    }
    if (role != n->role || term != n->term || leader_id != n->leader_id) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "raft_state");
        rems_log_str(&l, "role", cluster_role_name(role));
        rems_log_u64(&l, "term", term);
        rems_log_u64(&l, "leader", leader_id);
        rems_log_u64(&l, "commit_index", raft_commit_index(&n->raft));
        rems_log_end(&l);
        REMS_ASSERT(term >= n->term);
        if (n->role == CLUSTER_ROLE_LEADER &&
            (role != CLUSTER_ROLE_LEADER || term != n->term)) {
            n->leader_ready = false;
            cluster__reads_fail(n, REMS_ENOTLEADER);
            cluster__agents_deactivate(n);
        }
        if (role == CLUSTER_ROLE_LEADER &&
            (n->role != CLUSTER_ROLE_LEADER || term != n->term)) {
            n->metrics.elections_won++;
            n->leader_ready = false;
            cluster__agents_deactivate(n);
        }
        n->role = role;
        n->term = term;
        n->leader_id = leader_id;
    }
    if (role == CLUSTER_ROLE_LEADER && !n->leader_ready &&
        !n->leader_barrier_inflight) {
        n->leader_barrier.data = n;
        n->leader_barrier_term = term;
        if (raft_barrier(&n->raft, &n->leader_barrier, leader_barrier_cb) ==
            0) {
            n->leader_barrier_inflight = true;
        }
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct cluster_node *n = t->data;
    observe(n);
    cluster__waits_expire(n);
    cluster__join_tick(n);
}

/* ------------------------------------------------------------------ */
/* Start and stop.                                                      */

static void start_failed_close_cb(struct raft *r)
{
    struct cluster_node *n = r->data;
    n->raft_closed = true;
}

/* raft_uv reports a taken port only as a generic I/O error: probe it first
 * so the operator reads which address is in use. */
static int probe_raft_address(const struct config *cfg, char *errmsg)
{
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    struct sockaddr_in sa;
    int fd;
    int one = 1;
    int rv = 0;

    if (config_split_address(cfg->raft_address, host, &port) != 0) {
        rems_errmsgf(errmsg, "raft_address: %s is not IPv4:port",
                     cfg->raft_address);
        return REMS_ECONFIG;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        rems_errmsgf(errmsg, "raft_address: %s is not IPv4:port",
                     cfg->raft_address);
        return REMS_ECONFIG;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0; /* Let raft report it. */
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rems_errmsgf(errmsg, "raft_address %s: %s", cfg->raft_address,
                     strerror(errno));
        rv = errno == EADDRINUSE ? REMS_EADDRINUSE : REMS_EIO;
    }
    close(fd);
    return rv;
}

static int bootstrap(struct cluster_node *n, char *errmsg)
{
    struct raft_configuration conf;
    size_t i;
    int rv;

    raft_configuration_init(&conf);
    for (i = 0; i < n->cfg.n_peers; i++) {
        rv = raft_configuration_add(&conf, n->cfg.peers[i].id,
                                    n->cfg.peers[i].raft_address, RAFT_VOTER);
        if (rv != 0) {
            raft_configuration_close(&conf);
            rems_errmsgf(errmsg, "bootstrap: %s", raft_strerror(rv));
            return cluster__raft_error(rv);
        }
    }
    rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        rems_errmsgf(errmsg, "bootstrap: %s", raft_errmsg(&n->raft));
        return cluster__raft_error(rv);
    }
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "bootstrapped");
        rems_log_u64(&l, "voters", n->cfg.n_peers);
        rems_log_end(&l);
    }
    return 0;
}

int cluster_node_start(uv_loop_t *loop,
                       const struct config *cfg,
                       struct cluster_node **out,
                       char *errmsg)
{
    struct cluster_node *n;
    char path[CONFIG_PATH_SIZE + 32];
    bool fresh;
    int rv;

    n = rems_calloc(1, sizeof *n);
    if (n == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->lock_fd = -1;
    REMS_QUEUE_INIT(&n->writes);
    REMS_QUEUE_INIT(&n->reads_next);
    REMS_QUEUE_INIT(&n->reads_inflight);
    REMS_QUEUE_INIT(&n->waits);
    REMS_QUEUE_INIT(&n->forwards);
    rv = cluster__reconciler_init(n, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }

    rv = probe_raft_address(cfg, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
    if (cfg->n_peers == 0 && cfg->join[0] == '\0' && dir_is_empty(path)) {
        rems_errmsgf(errmsg,
                     "peers: required to bootstrap a new node (data_dir %s "
                     "holds no raft state); or set join to add it to a "
                     "running cluster",
                     cfg->data_dir);
        rv = REMS_ECONFIG;
        goto err_after_alloc;
    }
    rv = ensure_dir(cfg->data_dir, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = lock_data_dir(n, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = check_node_id(n, errmsg);
    if (rv != 0) {
        goto err_after_lock;
    }
    snprintf(path, sizeof path, "%s/state", cfg->data_dir);
    rv = ensure_dir(path, errmsg);
    if (rv != 0) {
        goto err_after_lock;
    }
    rv = storage_open(path, NULL, &n->storage, errmsg);
    if (rv != 0) {
        goto err_after_lock;
    }
    read_state_applied(n);
    if (storage_was_reset(n->storage)) {
        rems_log(REMS_LOG_WARN, "state_reset",
                 "the machine crashed while this node ran; the state is "
                 "rebuilt from the raft snapshot and log");
    }
    snprintf(path, sizeof path, "%s/raft", cfg->data_dir);
    rv = ensure_dir(path, errmsg);
    if (rv != 0) {
        goto err_after_storage;
    }
    fresh = dir_is_empty(path);

    n->transport.version = 1; /* Required by raft >= 0.18 before init. */
    rv = raft_uv_tcp_init(&n->transport, loop);
    if (rv != 0) {
        rems_errmsgf(errmsg, "raft transport: %s", raft_strerror(rv));
        rv = cluster__raft_error(rv);
        goto err_after_storage;
    }
    /* A raft connection with data unacknowledged for two election
     * timeouts is dropped and made again (scripts/raft-patches/0002):
     * after a partition heals, TCP's retransmission back-off would
     * otherwise keep it silent for up to two minutes (docs/jepsen.md,
     * finding 4). */
    raft_uv_tcp_set_user_timeout(
        &n->transport,
        cfg->election_timeout_ms * 2 > 1000 ? cfg->election_timeout_ms * 2
                                            : 1000);
    /* Only a node that runs with fault_injection pays for the wrapper. */
    if (cfg->fault_injection) {
        rv = cluster__faults_open(loop, &n->transport, &n->faults, errmsg);
        if (rv != 0) {
            goto err_after_transport;
        }
    }
    rv = raft_uv_init(&n->io, loop, path,
                      n->faults != NULL ? cluster__faults_transport(n->faults)
                                        : &n->transport);
    if (rv != 0) {
        rems_errmsgf(errmsg, "raft storage %s: %s", path, n->io.errmsg);
        rv = cluster__raft_error(rv);
        goto err_after_faults;
    }
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    rv = raft_init(&n->raft, &n->io, &n->fsm, cfg->node_id,
                   cfg->raft_address);
    if (rv != 0) {
        rems_errmsgf(errmsg, "raft: %s", raft_errmsg(&n->raft));
        rv = cluster__raft_error(rv);
        goto err_after_io;
    }
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, cfg->election_timeout_ms);
    raft_set_heartbeat_timeout(&n->raft, cfg->heartbeat_timeout_ms);
    raft_set_snapshot_threshold(&n->raft, cfg->snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, cfg->snapshot_trailing);
    raft_set_pre_vote(&n->raft, true);
    raft_seed(&n->raft, (unsigned)(rems_wall_ms() ^ (cfg->node_id << 16)));

    if (fresh && cfg->n_peers > 0) {
        rv = bootstrap(n, errmsg);
        if (rv != 0) {
            goto err_after_raft;
        }
    }
    n->joining = fresh && cfg->join[0] != '\0';
    rv = raft_start(&n->raft);
    if (rv != 0) {
        rems_errmsgf(errmsg, "raft start: %s: %s", raft_strerror(rv),
                     raft_errmsg(&n->raft));
        rv = cluster__raft_error(rv);
        goto err_after_raft;
    }
    n->raft_started = true;
    rv = cluster__forward_init(n, errmsg);
    if (rv != 0) {
        goto err_after_raft;
    }
    rv = cluster__agents_start(n, errmsg);
    if (rv != 0) {
        cluster__forward_close(n);
        goto err_after_raft;
    }
    cluster__reconciler_start(n);
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, tick_cb, TICK_MS, TICK_MS);
    uv_check_init(loop, &n->check);
    n->check.data = n;
    n->role = CLUSTER_ROLE_UNAVAILABLE;
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "node_started");
        rems_log_u64(&l, "id", cfg->node_id);
        rems_log_str(&l, "raft_address", cfg->raft_address);
        rems_log_str(&l, "data_dir", cfg->data_dir);
        rems_log_bool(&l, "bootstrapped", fresh && cfg->n_peers > 0);
        rems_log_bool(&l, "joining", n->joining);
        rems_log_u64(&l, "last_index", raft_last_index(&n->raft));
        rems_log_end(&l);
    }
    *out = n;
    return 0;

err_after_raft:
    /* raft_init succeeded: closing it goes through the loop. Other handles
     * (the API listener) may be open, so run until raft says it is closed. */
    n->stopping = true;
    n->raft_closed = false;
    raft_close(&n->raft, start_failed_close_cb);
    while (!n->raft_closed) {
        uv_run(loop, UV_RUN_ONCE);
    }
    /* fall through */
err_after_io:
    raft_uv_close(&n->io);
err_after_faults:
    cluster__faults_free(n->faults);
err_after_transport:
    raft_uv_tcp_close(&n->transport);
err_after_storage:
    storage_close(n->storage);
err_after_lock:
    close(n->lock_fd);
err_after_alloc:
    cluster__reconciler_free(n);
    rems_free(n);
err:
    POST(rv != 0);
    return rv;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct cluster_node *n = h->data;
    n->handles_open--;
    cluster__stop_continue(n);
}

static void raft_closed_cb(struct raft *r)
{
    struct cluster_node *n = r->data;
    raft_uv_close(&n->io);
    cluster__faults_free(n->faults);
    n->faults = NULL;
    raft_uv_tcp_close(&n->transport);
    n->raft_closed = true;
    cluster__stop_continue(n);
}

void cluster__stop_continue(struct cluster_node *n)
{
    if (!n->raft_closed || n->handles_open > 0 || !cluster__forward_idle(n) ||
        !cluster__agents_idle(n) || !cluster__reconciler_idle(n)) {
        return;
    }
    {
        cluster_close_cb cb = n->close_cb;
        void *data = n->close_data;
        cluster__agents_free(n);
        cluster__reconciler_free(n);
        storage_close(n->storage);
        close(n->lock_fd);
        rems_log(REMS_LOG_INFO, "node_stopped", "raft closed, state flushed");
        rems_free(n);
        if (cb != NULL) {
            cb(data);
        }
    }
}

void cluster_node_stop(struct cluster_node *n, cluster_close_cb cb, void *data)
{
    PRE(!n->stopping);
    n->stopping = true;
    n->close_cb = cb;
    n->close_data = data;
    cluster__reads_fail(n, REMS_ESHUTDOWN);
    cluster__waits_fail(n, REMS_ESHUTDOWN);
    cluster__forward_close(n);
    cluster__agents_close(n);
    cluster__reconciler_close(n);
    n->handles_open = 2;
    uv_close((uv_handle_t *)&n->tick, handle_closed_cb);
    uv_close((uv_handle_t *)&n->check, handle_closed_cb);
    raft_close(&n->raft, raft_closed_cb);
}

/* ------------------------------------------------------------------ */
/* Status.                                                              */

struct storage *cluster_node_storage(struct cluster_node *n)
{
    return n->storage;
}

const struct config *cluster_node_config(const struct cluster_node *n)
{
    return &n->cfg;
}

void cluster_node_metrics(const struct cluster_node *n,
                          struct cluster_metrics *out)
{
    *out = n->metrics;
}

/* Fill the API address of member @id: replicated table first, then the
 * configured peers. */
void cluster__member_api_address(struct cluster_node *n,
                                 uint64_t id,
                                 char *out)
{
    struct storage_txn *t;
    struct statemachine_member m;
    char errmsg[REMS_ERRMSG_SIZE];
    size_t i;

    out[0] = '\0';
    if (storage_txn_begin(n->storage, false, &t, errmsg) == 0) {
        if (statemachine_member_get(t, id, &m, errmsg) == 0) {
            snprintf(out, CONFIG_ADDR_SIZE, "%s", m.api_address);
        }
        storage_txn_abort(t);
        if (out[0] != '\0') {
            return;
        }
    }
    for (i = 0; i < n->cfg.n_peers; i++) {
        if (n->cfg.peers[i].id == id) {
            snprintf(out, CONFIG_ADDR_SIZE, "%s", n->cfg.peers[i].api_address);
            return;
        }
    }
    if (id == n->cfg.node_id) {
        snprintf(out, CONFIG_ADDR_SIZE, "%s", n->cfg.api_address);
    }
}

void cluster_node_brief(struct cluster_node *n, struct cluster_status *out)
{
    struct raft *r = &n->raft;
    raft_id leader_id = 0;
    const char *leader_addr = NULL;

    memset(out, 0, sizeof *out);
    /* Read raft directly rather than through observe(): a status query must
     * have no side effects (observe() answers waiting reads, and status is
     * asked while answering). */
    out->id = n->cfg.node_id;
    out->role = n->stopping ? CLUSTER_ROLE_UNAVAILABLE
                            : raft_role_to_cluster(r);
    out->term = raft_current_term(r);
    out->commit_index = raft_commit_index(r);
    out->applied_index = raft_last_applied(r);
    /* Barriers and configuration changes advance raft's applied index but
     * change no state; after a restart raft's index starts low again. The
     * state's own index only moves forward. */
    out->state_index = n->state_applied;
    out->last_index = raft_last_index(r);
    out->leader_ready = n->leader_ready && out->role == CLUSTER_ROLE_LEADER;
    raft_leader(r, &leader_id, &leader_addr);
    if (out->role == CLUSTER_ROLE_LEADER) {
        out->last_contact_ms = 0;
    } else {
        uint64_t now = n->io.time(&n->io);
        out->last_contact_ms = now > r->election_timer_start
                                   ? now - r->election_timer_start
                                   : 0;
    }
    if (leader_id != 0 && (out->role == CLUSTER_ROLE_FOLLOWER ||
                           out->role == CLUSTER_ROLE_LEADER)) {
        out->leader_id = leader_id;
        snprintf(out->leader_raft_address, CONFIG_ADDR_SIZE, "%s",
                 leader_addr != NULL ? leader_addr : "");
        cluster__member_api_address(n, leader_id, out->leader_api_address);
    }
}

void cluster_node_status(struct cluster_node *n, struct cluster_status *out)
{
    struct raft *r = &n->raft;
    unsigned i;

    cluster_node_brief(n, out);
    for (i = 0; i < r->configuration.n &&
                out->n_members < REMS_ARRAY_SIZE(out->members);
         i++) {
        struct cluster_member *m = &out->members[out->n_members++];
        m->id = r->configuration.servers[i].id;
        snprintf(m->raft_address, CONFIG_ADDR_SIZE, "%s",
                 r->configuration.servers[i].address);
        m->role = r->configuration.servers[i].role;
        cluster__member_api_address(n, m->id, m->api_address);
    }
}
