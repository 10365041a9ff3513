/* simulator/drill.h: the step engine of rems-sim and what it measures.
 *
 * drill_run() runs one scenario (simulator/scenario.h) against a cluster
 * (simulator/simcluster.h) with simulated agents (simulator/simagents.h),
 * all on one libuv loop that it owns: the agents' engines, the admin API
 * calls (libcurl multi on the same loop), the steps, the polling of every
 * node's /status, and the measurements of docs/adr/0006-drills.md. It
 * returns the figures in a struct drill_result, which simulator/report.h
 * prints, writes as JSON and draws.
 *
 * All times are milliseconds on rems-sim's monotonic clock, counted from
 * the start of the run (after the agents' certificates are minted), and
 * "from the moment it acted": a fault's time is when the signal was sent
 * or the first fault-injection call went out.
 *
 * Every random choice (the follower a step picks, the agents of a crash,
 * command targets and services, the agents' seeds) comes from one PRNG
 * seeded by drill_options.seed.
 *
 * Threads: drill_run() blocks the calling thread, which must not run
 * another libuv loop meanwhile; the process must ignore SIGPIPE. */
#ifndef REMS_SIMULATOR_DRILL_H
#define REMS_SIMULATOR_DRILL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "simulator/scenario.h"
#include "simulator/simcluster.h"

/* Resolution of the polls (ADR 0006, "What is measured"). */
#define DRILL_STATUS_POLL_MS 20u /* while a failover is being measured */
#define DRILL_STATUS_IDLE_MS 200u
#define DRILL_PROBE_MS 20u
#define DRILL_DRIFT_POLL_MS 100u
#define DRILL_SUMMARY_POLL_MS 250u
#define DRILL_SAMPLE_MS 250u /* the timeline */
/* Most samples kept for the timeline (about 2 hours). */
#define DRILL_MAX_SAMPLES 28800u
#define DRILL_MAX_FAULTS 256u

struct drill_options {
    const struct scenario *scenario; /* borrowed */
    struct simcluster *cluster;      /* borrowed; started, leader ready */
    uint64_t seed;
    /* Overrides of the scenario (0: as it says). */
    size_t agents;
    bool progress; /* a line every second on stderr */
    /* When not NULL and it becomes non-zero (a signal handler), the
     * current step ends, no further step runs, the settle phase ends, and
     * the result says interrupted. */
    volatile sig_atomic_t *interrupt;
};

/* A fault, and the failover it caused when it removed the leader. */
struct drill_fault {
    char kind[16]; /* kill, pause, isolate, restart, transfer, reconnect */
    uint64_t node_id; /* 0 for reconnect */
    bool removed_leader;
    uint64_t at_ms;
    uint64_t end_ms; /* pause and isolation: when it was undone; else at */
    uint64_t old_leader;
    uint64_t old_term;
    /* From at_ms; -1 when not seen before the next fault or the end. */
    int64_t detection_ms;
    int64_t election_ms;
    int64_t first_commit_ms;
    int64_t commands_resumed_ms;
    uint64_t new_leader;
    uint64_t new_term;
    /* Agents whose session ended after the fault, and how long each took
     * to its next welcome. */
    uint64_t agents_dropped;
    uint64_t agents_reconnected;
    double reconnect_p50_ms; /* -1 when none reconnected */
    double reconnect_p99_ms;
    double reconnect_max_ms;
};

/* What each node looked like at one moment of the timeline. */
struct drill_node_sample {
    uint8_t state; /* enum simcluster_state */
    uint8_t role;  /* 0 unknown/no answer, 1 follower, 2 candidate,
                      3 leader */
    uint64_t term;
    uint64_t leader_id;
};

struct drill_sample {
    uint64_t t_ms;
    struct drill_node_sample nodes[SIMCLUSTER_MAX_NODES];
    uint64_t agents_connected;
    uint64_t commands_sent; /* cumulative */
    uint64_t commands_executed;
};

struct drill_commands {
    uint64_t sent;     /* POST /v1/commands made by the drill */
    uint64_t issued;   /* answered 201, or unknown and found in the log */
    uint64_t refused;  /* answered 4xx, or 503 no_leader (never proposed) */
    uint64_t unknown;  /* no answer, 503 unavailable, 504: outcome unknown */
    uint64_t acked;
    uint64_t nacked;
    uint64_t expired;
    uint64_t cancelled;
    uint64_t lost;       /* issued, never final after the settle time */
    uint64_t duplicated; /* executed more than once by one agent */
    uint64_t late;       /* executed at or after its deadline */
    uint64_t executed;   /* execution records of the drill's commands */
    uint64_t acked_not_executed; /* acked, but no agent executed it */
    /* Executed in time, but its answer was lost with the agent's
     * connection, so the leader recorded it expired at its deadline (the
     * leader cannot know better; not a violation). */
    uint64_t executed_expired;
    char first_problem[REMS_ERRMSG_SIZE]; /* "" when none */
};

struct drill_drift {
    uint64_t crashes;  /* (agent, service) crashed by crash_services */
    uint64_t detected; /* of them, seen in /v1/drift */
    double p50_ms;     /* -1 when none */
    double p99_ms;
    double max_ms;
    /* The first crash not seen: "sim-7 svc-0 at 10388 ms"; "" when none. */
    char first_missed[REMS_ERRMSG_SIZE];
};

struct drill_verdict {
    enum scenario_assertion_kind kind;
    uint64_t ms;
    bool passed;
    char detail[REMS_ERRMSG_SIZE];
};

struct drill_step_result {
    enum scenario_step_kind kind;
    uint64_t start_ms;
    uint64_t end_ms;
    bool failed;
};

struct drill_result {
    char name[SCENARIO_NAME_MAX + 1];
    uint64_t seed;
    size_t n_nodes;
    uint64_t node_ids[SIMCLUSTER_MAX_NODES];
    size_t n_agents;
    uint64_t duration_ms;
    bool interrupted;
    bool step_failed;
    char error[REMS_ERRMSG_SIZE]; /* the failed step's reason */
    struct drill_step_result *steps;
    size_t n_steps;
    struct drill_fault *faults;
    size_t n_faults;
    struct drill_sample *samples;
    size_t n_samples;
    struct drill_commands commands;
    struct drill_drift drift;
    uint64_t last_fault_ms; /* 0 when there was none */
    int64_t nominal_ms; /* from the last fault to nominal; -1 not seen */
    struct drill_verdict verdicts[SCENARIO_MAX_ASSERTIONS];
    size_t n_verdicts;
    bool passed; /* no step failed and every assertion held */
};

/* Run the drill. On success returns 0 and *@out owns the result
 * (drill_result_free()), also when a step or an assertion failed
 * (result->passed tells). On failure to run at all returns REMS_EINVAL
 * (an option), REMS_ECONFIG (the agents' CA), REMS_EIO or REMS_ENOMEM
 * with @errmsg, and leaves *@out untouched. */
int drill_run(const struct drill_options *o,
              struct drill_result **out,
              char *errmsg);

void drill_result_free(struct drill_result *r);

/* Percentile @p (0..1) of the @n sorted values @v, nearest rank; -1 for
 * none. Pure. */
double drill_percentile(const double *v, size_t n, double p);

#endif /* REMS_SIMULATOR_DRILL_H */
