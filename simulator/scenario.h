/* simulator/scenario.h: the scenario files of rems-sim (docs/adr/0006).
 *
 * A scenario is one YAML document: a name, the cluster to start, the
 * simulated agents, the steps of the drill in order and the assertions
 * checked on the whole run. scenario_load() reads and checks a file
 * strictly (unknown keys, missing or repeated keys, wrong types, values out
 * of range are refused) and fills a struct scenario; every error names the
 * file, the line, the field by its path and the rule:
 *
 *     leader-kill.yaml:12: steps[3].kill_node.node: must be leader,
 *     follower or a node id 1..3
 *
 * Nothing here touches the clock, the network or a process: a scenario is
 * plain data, used by the step engine (simulator/drill.h). Any thread; one
 * scenario is used by one thread at a time. */
#ifndef REMS_SIMULATOR_SCENARIO_H
#define REMS_SIMULATOR_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h" /* REMS_E* codes, REMS_ERRMSG_SIZE */

/* Limits of a scenario. */
#define SCENARIO_FILE_MAX (1024 * 1024) /* bytes */
#define SCENARIO_MAX_STEPS 256u
#define SCENARIO_MAX_BEHAVIOURS 8u
#define SCENARIO_MAX_ASSERTIONS 16u
#define SCENARIO_MAX_AGENTS 1000000u
#define SCENARIO_MAX_SERVICES 64u
#define SCENARIO_NAME_MAX 64u
#define SCENARIO_MS_MAX 86400000u /* one day, the bound of every *_ms */

/* Defaults (used where a key is absent). */
#define SCENARIO_DEFAULT_NODES 3u
#define SCENARIO_DEFAULT_ELECTION_TIMEOUT_MS 1000u
#define SCENARIO_DEFAULT_HEARTBEAT_TIMEOUT_MS 100u
#define SCENARIO_DEFAULT_LEASE_TTL_MS 10000u
#define SCENARIO_DEFAULT_AGENT_HEARTBEAT_MS 1000u
#define SCENARIO_DEFAULT_RECONCILE_INTERVAL_MS 500u
#define SCENARIO_DEFAULT_AGENTS 100u
#define SCENARIO_DEFAULT_SERVICES 4u
#define SCENARIO_DEFAULT_CRASH_AFTER_MS 30000u
#define SCENARIO_DEFAULT_RESTART_MS 1000u
#define SCENARIO_DEFAULT_HEALTH_DELAY_MS 5000u
#define SCENARIO_DEFAULT_STOP_HANG_MS 5000u
#define SCENARIO_DEFAULT_SETTLE_MS 15000u
#define SCENARIO_DEFAULT_WAIT_AGENTS_MS 60000u
#define SCENARIO_DEFAULT_WAIT_LEADER_MS 10000u
#define SCENARIO_DEFAULT_COMMAND_TTL_MS 10000u
#define SCENARIO_DEFAULT_TRANSFER_MS 10000u
#define SCENARIO_DEFAULT_ROLLING_MS 30000u
#define SCENARIO_DEFAULT_WAIT_ROLLOUT_MS 120000u

/* ------------------------------------------------------------------------
 * The parts of a scenario
 * ------------------------------------------------------------------------ */

/* How a step names a node. */
enum scenario_node_kind {
    SCENARIO_NODE_LEADER = 1, /* the leader when the step runs */
    SCENARIO_NODE_FOLLOWER,   /* a follower, a seeded choice */
    SCENARIO_NODE_ID,         /* by id, 1..nodes */
    SCENARIO_NODE_ANY         /* transfer_leadership without "to" */
};

struct scenario_node {
    enum scenario_node_kind kind;
    uint64_t id;       /* SCENARIO_NODE_ID only. */
    unsigned line;     /* Of the value, for scenario_check_nodes(). */
    const char *field; /* Static: "node", "to". */
};

enum scenario_behaviour_kind {
    SCENARIO_BEHAVIOUR_HEALTHY = 1,
    SCENARIO_BEHAVIOUR_CRASH_LOOP,  /* crash, come back, crash, ... */
    SCENARIO_BEHAVIOUR_CRASH_AFTER, /* crash once, stay failed */
    SCENARIO_BEHAVIOUR_SLOW_HEALTH, /* healthy only a while after a start */
    SCENARIO_BEHAVIOUR_HUNG_STOP,   /* a stop hangs a while */
    SCENARIO_BEHAVIOUR_NR
};

/* A share of the agents whose services behave one way (the simulated
 * agents' behaviours, simulator/simagents.h). */
struct scenario_behaviour {
    enum scenario_behaviour_kind kind;
    double fraction;          /* 0 < f <= 1; the shares add up to <= 1 */
    unsigned crash_after_ms;  /* crash_after, crash_loop (>= 100) */
    unsigned restart_ms;      /* crash_loop */
    unsigned health_delay_ms; /* slow_health */
    unsigned stop_hang_ms;    /* hung_stop */
};

struct scenario_cluster {
    unsigned nodes; /* 3 or 5 */
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    unsigned lease_ttl_ms;
    unsigned agent_heartbeat_ms;
    unsigned reconcile_interval_ms;
};

struct scenario_agents {
    unsigned count;        /* 1..SCENARIO_MAX_AGENTS */
    unsigned services;     /* 0..SCENARIO_MAX_SERVICES, per agent */
    unsigned heartbeat_ms; /* 0: the interval of the welcome */
    double ramp_per_s;     /* agents started per second; 0: all at once */
    /* The rest of the agents (1 - the sum of the fractions) is healthy. */
    struct scenario_behaviour behaviours[SCENARIO_MAX_BEHAVIOURS];
    size_t n_behaviours;
};

enum scenario_step_kind {
    SCENARIO_STEP_WAIT = 1,
    SCENARIO_STEP_WAIT_AGENTS,
    SCENARIO_STEP_WAIT_LEADER,
    SCENARIO_STEP_APPLY_POLICY,
    SCENARIO_STEP_ISSUE_COMMANDS,
    SCENARIO_STEP_KILL_LEADER,
    SCENARIO_STEP_KILL_NODE,
    SCENARIO_STEP_PAUSE_LEADER,
    SCENARIO_STEP_PAUSE_NODE,
    SCENARIO_STEP_ISOLATE,
    SCENARIO_STEP_RESTART_NODE,
    SCENARIO_STEP_TRANSFER_LEADERSHIP,
    SCENARIO_STEP_ROLLING_RESTART,
    SCENARIO_STEP_CRASH_SERVICES,
    SCENARIO_STEP_RECONNECT_ALL,
    SCENARIO_STEP_WAIT_ROLLOUT,
    SCENARIO_STEP_NR
};

/* A count of agents as a scenario gives it: "all", N, or "N%". */
struct scenario_count {
    bool all;
    bool percent; /* value is a percent 1..100 */
    unsigned value;
};

struct scenario_step {
    enum scenario_step_kind kind;
    unsigned line; /* Where the step starts, from 1. */
    union {
        struct {
            uint64_t ms;
        } wait;
        struct {
            struct scenario_count connected;
            uint64_t timeout_ms;
        } wait_agents;
        struct {
            uint64_t timeout_ms;
        } wait_leader;
        struct {
            char *key; /* a policy key */
            uint64_t timeout_ms;
        } wait_rollout;
        struct {
            char *key;
            /* Exactly one of: the file (as written, resolved against the
             * scenario's directory) or the document inline (compact
             * JSON text, converted from the YAML mapping). */
            char *file;
            char *inline_json;
        } apply_policy;
        struct {
            double rate; /* commands per second, 0 < rate <= 1000 */
            uint64_t duration_ms;
            int action;    /* enum proto_action, not push_manifest */
            char *service; /* NULL: a seeded choice per command */
            uint64_t ttl_ms;
            bool background; /* the next step starts at once */
        } issue_commands;
        struct {
            struct scenario_node node; /* kill_leader: the leader */
        } kill;
        struct {
            struct scenario_node node; /* pause_leader: the leader */
            uint64_t ms;               /* SIGSTOP, SIGCONT after ms */
        } pause;
        struct {
            struct scenario_node node;
            uint64_t ms; /* blocked for ms, then cleared */
        } isolate;
        struct {
            struct scenario_node node;
            bool graceful;    /* SIGTERM (true) or SIGKILL first */
            uint64_t down_ms; /* stopped this long before the start */
        } restart;
        struct {
            struct scenario_node to; /* SCENARIO_NODE_ANY: any voter */
            uint64_t timeout_ms;
        } transfer;
        struct {
            bool graceful;
            uint64_t timeout_ms; /* for each node's ready leader */
        } rolling;
        struct {
            struct scenario_count agents; /* how many, a seeded choice */
            char *service;                /* NULL: a seeded choice each */
        } crash;
    } u;
};

enum scenario_assertion_kind {
    SCENARIO_ASSERT_LEADER_WITHIN_MS = 1,
    SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE,
    SCENARIO_ASSERT_NO_LATE_EXECUTION,
    SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS,
    SCENARIO_ASSERT_NOMINAL_WITHIN_MS,
    SCENARIO_ASSERT_NR
};

struct scenario_assertion {
    enum scenario_assertion_kind kind;
    unsigned line;
    uint64_t ms; /* the *_within_ms kinds */
};

/* A whole scenario. Owned strings are released by scenario_close(). */
struct scenario {
    char *path; /* As given to scenario_load(). */
    char *name;
    char *description;  /* "" when absent */
    uint64_t settle_ms; /* after the last step: commands end, nominal */
    struct scenario_cluster cluster;
    struct scenario_agents agents;
    struct scenario_step *steps;
    size_t n_steps;
    struct scenario_assertion assertions[SCENARIO_MAX_ASSERTIONS];
    size_t n_assertions;
};

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* Read and check the scenario file @path (borrowed, copied). On success
 * returns 0 and fills *@out (scenario_close() releases it). On failure
 * returns REMS_ECONFIG (the file breaks a rule, or cannot be read;
 * @errmsg is "<path>:<line>: <field path>: <rule>", or "<path>: <reason>"
 * when there is no line) or REMS_ENOMEM, and leaves *@out untouched. */
int scenario_load(const char *path, struct scenario *out, char *errmsg);

/* As scenario_load(), from @len bytes of @text; @path names it in
 * messages and resolves apply_policy files. */
int scenario_parse(const char *path,
                   const char *text,
                   size_t len,
                   struct scenario *out,
                   char *errmsg);

/* Check every node a step names against a cluster of @n_nodes nodes with
 * ids 1..@n_nodes (scenario_load() does it with cluster.nodes; call again
 * when the cluster's size is overridden). Returns 0 or REMS_ECONFIG with
 * @errmsg as scenario_load()'s. */
int scenario_check_nodes(const struct scenario *s,
                         unsigned n_nodes,
                         char *errmsg);

/* Release what @s owns; a zeroed struct is fine. */
void scenario_close(struct scenario *s);

/* The names in the file: "kill_leader", "leader_within_ms", "crash_loop";
 * "unknown" out of range. */
const char *scenario_step_name(enum scenario_step_kind kind);
const char *scenario_assertion_name(enum scenario_assertion_kind kind);
const char *scenario_behaviour_name(enum scenario_behaviour_kind kind);

/* The number of agents @c means among @total (at least 1 when @c is not
 * 0, at most @total). */
size_t scenario_count_of(const struct scenario_count *c, size_t total);

#endif /* REMS_SIMULATOR_SCENARIO_H */
