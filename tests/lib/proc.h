/* tests/lib/proc.h: real remsd processes for integration tests.
 *
 * Processes: test_proc_start() forks and execs a binary with its output in
 * a log file; test_proc_wait() reaps it with a bounded wait. Every started
 * process is also recorded in a process-wide table: an atexit() handler
 * kills whatever is left there, and each child asks the kernel for SIGKILL
 * when the test process dies (PR_SET_PDEATHSIG), so no remsd outlives its
 * test, even when the test crashes or is killed by CTest's timeout.
 *
 * Clusters: struct test_cluster holds up to TEST_CLUSTER_MAX nodes, each
 * with its own loopback ports, data directory and log file in one
 * temporary directory. Nodes 1..n_founders are started with the same
 * --peer list; later nodes join through --join.
 *
 * HTTP: test_http() is one blocking libcurl easy call.
 *
 * Waiting: integration tests poll real processes with test_wait_for(),
 * always under a deadline. Unit tests must not use it.
 *
 * Nothing here is thread-safe: one test thread only. */
#ifndef REMS_TESTS_LIB_PROC_H
#define REMS_TESTS_LIB_PROC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/lib/tmpdir.h"

#define TEST_PATH_SIZE 512
#define TEST_ADDR_SIZE 32
#define TEST_URL_SIZE 1024

/* ------------------------------------------------------------------ */
/* Processes.                                                           */

struct test_proc {
    pid_t pid;   /* 0 when not started or already reaped. */
    int status;  /* Last result of test_proc_wait(): see there. */
    bool exited; /* Reaped at least once since the last start. */
    bool paused; /* Sent SIGSTOP (and no SIGCONT since). */
};

/* Fork and exec @path with @argv (NULL-terminated, argv[0] included) with
 * stdin from /dev/null and stdout and stderr appended to @log_path
 * (created if needed). Aborts the test process if fork fails. Returns 0,
 * or -1 when @p is still running. */
int test_proc_start(struct test_proc *p,
                    const char *path,
                    char *const argv[],
                    const char *log_path);

/* Send @sig to @p if it is running; SIGSTOP and SIGCONT also set and
 * clear @p->paused. Returns 0 or -1 (not running). */
int test_proc_signal(struct test_proc *p, int sig);

/* Wait at most @timeout_ms for @p to exit. Returns its exit code (0-255),
 * 128 + the signal number when a signal ended it, or -1 when it is still
 * running at the deadline (or was never started). The result is also kept
 * in @p->status. */
int test_proc_wait(struct test_proc *p, unsigned timeout_ms);

/* Stop @p: SIGTERM (plus SIGCONT, in case it is stopped), wait up to
 * @grace_ms, then SIGKILL and reap. Returns what test_proc_wait() returned
 * for the SIGTERM (-1 when SIGKILL was needed), or -2 when @p was not
 * running. */
int test_proc_stop(struct test_proc *p, unsigned grace_ms);

/* True when @p was started and has not been reaped. */
bool test_proc_running(const struct test_proc *p);

/* Run @path with @argv to completion (at most @timeout_ms, then SIGKILL),
 * output to @log_path. Returns as test_proc_wait(), -1 on timeout. */
int test_proc_run(const char *path,
                  char *const argv[],
                  const char *log_path,
                  unsigned timeout_ms);

/* Pick @n distinct free TCP ports on 127.0.0.1: bind port 0, read the
 * port, keep the sockets open until all are picked, then close them. */
void test_free_ports(uint16_t *ports, size_t n);

/* Read the whole file @path into a NUL-terminated malloc'd string, or NULL
 * when it cannot be read. */
char *test_read_file(const char *path);

/* True when the file or directory @path exists. */
bool test_path_exists(const char *path);

/* The remsd binary: $REMSD, else the REMSD_PATH compile definition.
 * Fails the test when neither is set. */
const char *test_remsd_path(void);

/* ------------------------------------------------------------------ */
/* Waiting and time.                                                    */

uint64_t test_now_ms(void);
void test_sleep_ms(unsigned ms);

/* Call @pred(@arg) every 50 ms until it returns true (returns true) or
 * @timeout_ms have passed (returns false after one last call). */
bool test_wait_for(bool (*pred)(void *arg), void *arg, unsigned timeout_ms);

/* ------------------------------------------------------------------ */
/* HTTP.                                                                */

/* One blocking request (10 s time limit). @headers is a NULL-terminated
 * array of "Name: value" strings, or NULL. @body (may be NULL) is sent
 * with its strlen(); "Expect:" is suppressed. On success returns 0, sets
 * *@status to the HTTP status and, when the pointers are not NULL, sets
 * *@resp_body and *@resp_headers to malloc'd NUL-terminated copies (the
 * caller frees them). On a transport failure returns the libcurl error
 * code, sets *@status to 0 and the outputs to NULL. */
int test_http(const char *method,
              const char *url,
              const char *const headers[],
              const char *body,
              long *status,
              char **resp_body,
              char **resp_headers);

/* As test_http() with a body of @body_len bytes (may contain NULs). */
int test_http_n(const char *method,
                const char *url,
                const char *const headers[],
                const char *body,
                size_t body_len,
                long *status,
                char **resp_body,
                char **resp_headers);

/* As test_http(), parsing the answer as JSON. Returns the value (the
 * caller owns the reference) or NULL when the call failed or the body is
 * not JSON; *@status is 0 when the call failed. @resp_headers may be
 * NULL. */
json_t *test_http_json(const char *method,
                       const char *url,
                       const char *const headers[],
                       const char *body,
                       long *status,
                       char **resp_headers);

/* Find header @name (case-insensitive) in @resp_headers (as returned by
 * test_http(); the last response's block counts) and copy its value,
 * trimmed, into @out (@cap bytes). Returns true when found. */
bool test_http_header(const char *resp_headers,
                      const char *name,
                      char *out,
                      size_t cap);

/* ------------------------------------------------------------------ */
/* Clusters.                                                            */

#define TEST_CLUSTER_MAX 5
#define TEST_CLUSTER_MAX_EXTRA 16

struct test_node {
    uint64_t id;
    char raft_address[TEST_ADDR_SIZE];
    char api_address[TEST_ADDR_SIZE];
    char data_dir[TEST_PATH_SIZE];
    char log_path[TEST_PATH_SIZE];
    char join[TEST_ADDR_SIZE]; /* "" for founding members. */
    bool omit_peers; /* Start with neither --peer nor --join (a restart). */
    struct test_proc proc;
    char agent_address[TEST_ADDR_SIZE]; /* "" without an agent listener */
    /* Argument strings of the command line. */
    char id_arg[24];
    char peer_arg[2 * TEST_ADDR_SIZE + 24];
};

struct test_cluster {
    char dir[TEST_TMPDIR_SIZE];
    const char *bin;
    size_t n;          /* Nodes defined (founders and joiners). */
    size_t n_founders; /* Nodes of the --peer list. */
    struct test_node nodes[TEST_CLUSTER_MAX];
    /* Options given to every node after the generated ones. */
    const char *extra[TEST_CLUSTER_MAX_EXTRA];
    size_t n_extra;
    /* Agent listeners (test_cluster_enable_agents()). */
    char tls_cert[TEST_PATH_SIZE];
    char tls_key[TEST_PATH_SIZE];
    char tls_ca[TEST_PATH_SIZE];
};

/* Make a temporary directory and define @n founding nodes (ids 1..@n, on
 * free loopback ports, with data dirs <dir>/node<id>), started with
 * --election-timeout-ms 300 --heartbeat-timeout-ms 30 and then @extra
 * (NULL-terminated, copied as pointers: keep them alive; may be NULL).
 * Starts nothing. */
void test_cluster_init(struct test_cluster *c,
                       size_t n,
                       const char *const extra[]);

/* Give every node defined so far (and later) an agent listener on a free
 * loopback port, with the node certificate @cert / @key (which must be
 * valid for 127.0.0.1, as tests/lib/make-test-ca.sh's node1.pem is) and the
 * site CA @ca. Call before starting nodes. */
void test_cluster_enable_agents(struct test_cluster *c,
                                const char *cert,
                                const char *key,
                                const char *ca);

/* Define one more node (id n + 1, fresh ports and data dir) that starts
 * with --join @join_api_address instead of --peer. Returns its index. */
size_t test_cluster_add_joiner(struct test_cluster *c,
                               const char *join_api_address);

/* Fill @argv (at least 64 slots; pointers into @c and static strings)
 * with the command line of node @i. */
void test_cluster_argv(struct test_cluster *c, size_t i, char **argv);

/* Start node @i (index, not id), or every founding node. */
void test_cluster_start_node(struct test_cluster *c, size_t i);
void test_cluster_start(struct test_cluster *c);

/* SIGTERM every running node, wait up to 10 s for each, SIGKILL what is
 * left. Returns true when every node that was running exited with 0. */
bool test_cluster_stop(struct test_cluster *c);

/* Stop the cluster, print the tail of every node's log to stderr when
 * @dump_logs, and remove the temporary directory. Returns as
 * test_cluster_stop(). Call it from the teardown, before any assertion. */
bool test_cluster_close(struct test_cluster *c, bool dump_logs);

/* "http://<api address of node @i><path>" into @buf (TEST_URL_SIZE). */
const char *test_cluster_url(const struct test_cluster *c,
                             size_t i,
                             const char *path,
                             char *buf);

/* test_http_json() on node @i's API: "http://<api address><path>". */
json_t *test_cluster_call(const struct test_cluster *c,
                          size_t i,
                          const char *method,
                          const char *path,
                          const char *const headers[],
                          const char *body,
                          long *status,
                          char **resp_headers);

/* GET /status of node @i; NULL when it does not answer 200 with JSON. */
json_t *test_cluster_status(const struct test_cluster *c, size_t i);

/* Leadership as the running nodes see it. */
struct test_leader {
    size_t index; /* Index of the leader in c->nodes. */
    uint64_t id;
    uint64_t term;
};

/* Wait up to @timeout_ms until, among the running nodes that are not
 * paused, exactly one
 * reports role "leader" with leader_ready, and every running node names
 * it as leader with the same term. Returns true and fills @out. */
bool test_cluster_wait_leader(struct test_cluster *c,
                              unsigned timeout_ms,
                              struct test_leader *out);

/* Index of a running, not paused node other than @not_a and @not_b (pass
 * SIZE_MAX to leave one out); SIZE_MAX when there is none. */
size_t
test_cluster_other(const struct test_cluster *c, size_t not_a, size_t not_b);

/* ------------------------------------------------------------------ */
/* Policies as plain values.                                            */

/* Room test_policy_doc() needs beyond the metadata's text. */
#define TEST_POLICY_DOC_EXTRA 96

/* A valid policy document that places nothing (agent "none") and carries
 * @meta, the text of a JSON object, as its metadata: tests that use
 * policies as plain values put their value there. Text that does not start
 * with '{' comes back as it is (tests of bad bodies). Writes into @out
 * (@cap >= strlen(@meta) + TEST_POLICY_DOC_EXTRA) and returns it, or
 * returns @meta. */
const char *test_policy_doc(const char *meta, char *out, size_t cap);

/* The metadata of a policy as GET /v1/policies/{key} (or an item of a
 * list) shows it: @o.value.metadata (borrowed), or NULL. */
json_t *test_policy_meta(json_t *o);

#endif /* REMS_TESTS_LIB_PROC_H */
