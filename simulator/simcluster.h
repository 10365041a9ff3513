/* simulator/simcluster.h: the cluster a drill runs against.
 *
 * Either a local cluster that rems-sim starts and owns: a temporary
 * directory, free loopback ports, a temporary CA with one certificate per
 * node (minted in process by simulator/simagents.h), and N remsd processes,
 * each with a generated YAML configuration (agent listener, fault
 * injection on, fast reconciler settings). Or a running cluster it attaches
 * to (--endpoints): its nodes are only addresses, and the faults that need
 * a process (kill, pause, restart) are refused.
 *
 * Process safety, as tests/lib/proc.c: every remsd started is recorded in
 * a process-wide table until it is reaped; an atexit() handler SIGKILLs
 * whatever is left there, and each child asks the kernel for SIGKILL when
 * rems-sim dies (PR_SET_PDEATHSIG), so no node outlives its drill, even
 * when rems-sim crashes or is killed.
 *
 * Node operations act at once and do not wait (a stop or a kill is reaped
 * later by simcluster_reap(), from the drill's timers), except
 * simcluster_wait_ready() and simcluster_close(), which block. Nothing here
 * is thread-safe: one thread, the drill's loop thread. */
#ifndef REMS_SIMULATOR_SIMCLUSTER_H
#define REMS_SIMULATOR_SIMCLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h" /* REMS_E* codes, REMS_ERRMSG_SIZE */

#define SIMCLUSTER_MAX_NODES 9u
#define SIMCLUSTER_ADDR_SIZE 64u
#define SIMCLUSTER_PATH_SIZE 512u
/* How long a SIGTERM gets before SIGKILL, in simcluster_close(). */
#define SIMCLUSTER_STOP_GRACE_MS 5000u

enum simcluster_state {
    SIMCLUSTER_DOWN = 0, /* not started, exited, killed */
    SIMCLUSTER_RUNNING,
    SIMCLUSTER_PAUSED,   /* SIGSTOP sent, no SIGCONT since */
    SIMCLUSTER_STOPPING, /* signalled, not reaped yet */
    SIMCLUSTER_REMOTE    /* attached: not ours, always "running" */
};

struct simcluster_node {
    uint64_t id;
    char api_address[SIMCLUSTER_ADDR_SIZE];   /* "127.0.0.1:port" */
    char raft_address[SIMCLUSTER_ADDR_SIZE];  /* "" when attached */
    char agent_address[SIMCLUSTER_ADDR_SIZE]; /* agent listener */
    char data_dir[SIMCLUSTER_PATH_SIZE];
    char config_path[SIMCLUSTER_PATH_SIZE];
    char log_path[SIMCLUSTER_PATH_SIZE];
    pid_t pid; /* 0 when not running */
    enum simcluster_state state;
    int exit_status; /* of the last exit: code, 128 + signal; -1 none */
    unsigned starts;  /* times started */
};

/* The settings of a local cluster. */
struct simcluster_options {
    size_t n_nodes;     /* 1..SIMCLUSTER_MAX_NODES */
    const char *remsd;  /* the binary (borrowed, copied) */
    const char *parent; /* where the temporary directory goes; NULL:
                           $TMPDIR or /tmp */
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    unsigned lease_ttl_ms;
    unsigned agent_heartbeat_ms;
    unsigned reconcile_interval_ms;
    const char *log_level; /* NULL: info */
};

struct simcluster {
    bool local;
    char dir[SIMCLUSTER_PATH_SIZE]; /* local: the temporary directory */
    char remsd[SIMCLUSTER_PATH_SIZE];
    /* The CA the agents' certificates are signed with, and the trust
     * anchor of the nodes' certificates (the same file here). */
    char ca_cert[SIMCLUSTER_PATH_SIZE];
    char ca_key[SIMCLUSTER_PATH_SIZE];
    size_t n;
    struct simcluster_node nodes[SIMCLUSTER_MAX_NODES];
};

/* Prepare a local cluster in @c (caller memory): the directory, ports,
 * CA, node certificates and configuration files. Starts nothing. Returns
 * 0, REMS_EIO (a file or directory; @errmsg names it), REMS_EUNSUPPORTED
 * (certificates cannot be minted in this build) or REMS_ENOMEM. On
 * failure, what was made is removed. */
int simcluster_create(struct simcluster *c,
                      const struct simcluster_options *o,
                      char *errmsg);

/* Attach @c to a running cluster: @api (n "host:port", the admin API of
 * each node) and @agent (the agent listener of each node, in the same
 * order), with the CA @ca_cert / @ca_key (copied). Asks each node's
 * GET /status for its id (blocking, up to 5 s each). Returns 0,
 * REMS_EINVAL (a count or an address) or REMS_EIO (a node did not answer;
 * @errmsg names it). */
int simcluster_attach(struct simcluster *c,
                      const char *const *api,
                      const char *const *agent,
                      size_t n,
                      const char *ca_cert,
                      const char *ca_key,
                      char *errmsg);

/* Start node @i (an index) or every node that is down. Returns 0,
 * REMS_EBUSY (it runs), REMS_EUNSUPPORTED (attached) or REMS_EIO (fork
 * failed). */
int simcluster_start_node(struct simcluster *c, size_t i, char *errmsg);
int simcluster_start(struct simcluster *c, char *errmsg);

/* Signal node @i: SIGKILL (kill; state DOWN once reaped, at once here),
 * SIGTERM (stop: STOPPING until reaped), SIGSTOP (pause), SIGCONT
 * (resume). A stop or a kill also sends SIGCONT, in case it is paused.
 * Returns 0, REMS_EINVAL (it does not run) or REMS_EUNSUPPORTED
 * (attached). */
int simcluster_kill(struct simcluster *c, size_t i);
int simcluster_stop(struct simcluster *c, size_t i);
int simcluster_pause(struct simcluster *c, size_t i);
int simcluster_resume(struct simcluster *c, size_t i);

/* Reap node @i when it has exited, without waiting. Returns true when it
 * is down (now or before). */
bool simcluster_reap(struct simcluster *c, size_t i);

/* Whether node @i answers its API now (started, not paused, not
 * stopping); attached nodes always do. */
bool simcluster_up(const struct simcluster *c, size_t i);

/* Index of the node with @id, or SIZE_MAX. */
size_t simcluster_index(const struct simcluster *c, uint64_t id);

/* Block until, among the nodes that are up, exactly one reports role
 * leader with leader_ready and every one names it with the same term, for
 * at most @timeout_ms. Returns 0 with *@leader its index, or
 * REMS_ETIMEDOUT. */
int simcluster_wait_ready(struct simcluster *c,
                          unsigned timeout_ms,
                          size_t *leader);

/* Stop every node that runs (SIGTERM, SIGKILL after
 * SIMCLUSTER_STOP_GRACE_MS), reap them, and remove the directory unless
 * @keep. Zeroed or attached structs are fine. */
void simcluster_close(struct simcluster *c, bool keep);

/* One blocking HTTP call on loopback (libcurl, @timeout_ms): @method,
 * "http://<@address><@path>", @body (NULL for none, JSON). On success
 * returns 0, *@status and, when @resp is not NULL, a rems_malloc'd body
 * (NUL-terminated) in *@resp. REMS_EIO on a transport failure. */
int simcluster_http(const char *method,
                    const char *address,
                    const char *path,
                    const char *body,
                    unsigned timeout_ms,
                    long *status,
                    char **resp);

/* A response body being received: libcurl's write callback
 * simcluster_curl_body() appends to it (rems_malloc'd, kept
 * NUL-terminated) and sets @oom when memory ran out (the transfer then
 * fails). */
struct simcluster_buf {
    char *p;
    size_t len;
    bool oom;
};

size_t simcluster_curl_body(char *data, size_t size, size_t nmemb, void *arg);

/* As simcluster_http(), with @extra_headers ("Name: value" lines, a
 * NULL-terminated array; NULL for none) sent as well. */
int simcluster_http_ex(const char *method,
                       const char *address,
                       const char *path,
                       const char *body,
                       const char *const *extra_headers,
                       unsigned timeout_ms,
                       long *status,
                       char **resp);

#endif /* REMS_SIMULATOR_SIMCLUSTER_H */
