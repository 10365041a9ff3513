/* cluster/rollout.h: the next step of a staged rollout, a pure decision.
 *
 * A new policy revision reaches its agents in stages (docs/policies.md,
 * "Rollouts"): a canary (rollout.canary agents, or a percent of the agents
 * the policy selects), then a health gate, then batches of
 * rollout.batch_size agents, each followed by the gate and, between
 * batches, a pause of rollout.batch_pause_ms; then done. The replicated
 * rollout record (statemachine_rollout) says where it stands; the leader
 * calls rollout_step() after each reconcile pass for every running
 * rollout and proposes what it returns as a ROLLOUT_UPDATE entry.
 *
 *   rollout_step(in, now_ms, &out, errmsg)
 *
 * Rules, by stage:
 *
 *   canary  (nothing reached yet) no agent selected -> done; otherwise
 *           advance to gate, batch 0, reaching the canary: the first
 *           rollout.canary agents (a percent rounds up, at least one) of
 *           the selected agents, online ones first, each group by id.
 *   gate    the gate looks at every (agent, service) of the target
 *           document on the reached agents that are online and still
 *           selected, in this pass's output:
 *             fails at once when one of them has a blocked drift, a
 *             failed_deployment or an unresolved_incident drift, or when
 *             more than rollout.gate_timeout_ms has passed since the stage
 *             started without the gate passing (healthy or not) and the
 *             policy is in mode auto (in mode recommend a person deploys,
 *             and the gate waits for them);
 *             is healthy when none of them has any drift;
 *             passes once it has been healthy for rollout.health_gate_ms
 *             (since in.healthy_since_ms, which the caller keeps: 0 when
 *             it was not healthy at the previous pass).
 *           Passed: every selected agent reached -> done; else, with a
 *           batch pause, advance to pause (same batch and agents); else
 *           advance to gate with the next batch. Failed: rollback when
 *           rollout.auto_rollback, else pause (the operator decides).
 *   pause   once rollout.batch_pause_ms has passed since the stage
 *           started: advance to gate, batch + 1, reaching the next
 *           rollout.batch_size agents (same order as the canary).
 *
 * The agents are taken by id wherever an order matters (messages name
 * the first drifting agent by id). The "next" agents are the selected ones
 * not reached yet: agents that
 * appear during a rollout join a later batch. Pure: no clock, no state;
 * inputs borrowed for the call. */
#ifndef REMS_CLUSTER_ROLLOUT_H
#define REMS_CLUSTER_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/policy.h"
#include "cluster/reconcile.h"

/* Values of enum statemachine_rollout_stage. */
enum rollout_stage {
    ROLLOUT_STAGE_CANARY = 0,
    ROLLOUT_STAGE_GATE,
    ROLLOUT_STAGE_PAUSE,
};

enum rollout_decision {
    ROLLOUT_WAIT = 0,  /* nothing to do now */
    ROLLOUT_ADVANCE,   /* out.stage, out.batch, out.reached */
    ROLLOUT_DONE,      /* every selected agent reached and healthy */
    ROLLOUT_ROLLBACK,  /* the gate failed, auto_rollback */
    ROLLOUT_HALT,      /* the gate failed, no auto_rollback: pause */
};

/* "wait", "advance", "done", "rollback", "halt". */
const char *rollout_decision_name(int decision);

/* An agent as the rollout sees it. */
struct rollout_agent {
    const char *id;
    bool online;
    const struct policy_label *labels;
    size_t n_labels;
};

struct rollout_input {
    const char *key;              /* the policy */
    uint64_t target_revision;     /* the revision rolled out */
    const struct policy *target;  /* its document */
    int stage;                    /* enum rollout_stage */
    uint64_t batch;
    uint64_t stage_started_ms;
    const char *const *reached; /* sorted by strcmp, unique */
    size_t n_reached;
    uint64_t healthy_since_ms; /* 0: the gate was not healthy before */
    const struct rollout_agent *agents; /* every agent, any order */
    size_t n_agents;
    const struct reconcile_output *pass; /* this pass's output */
};

struct rollout_output {
    int decision; /* enum rollout_decision */
    int stage;    /* ADVANCE */
    uint64_t batch;
    /* ADVANCE: every agent reached, sorted by strcmp (borrowed from the
     * input's strings; the array is the output's: rollout_output_close()) */
    const char **reached;
    size_t n_reached;
    bool gate_healthy;  /* gate stage, waiting: healthy at this pass */
    char message[512];  /* why, for people and the entry's reason */
};

/* Decide the next step of the running rollout @in at @now_ms. Returns 0
 * and *@out (release with rollout_output_close()), or REMS_ENOMEM (*@out
 * untouched). */
int rollout_step(const struct rollout_input *in,
                 uint64_t now_ms,
                 struct rollout_output *out,
                 char *errmsg);

/* Free what @out owns and zero it; NULL is a no-op. */
void rollout_output_close(struct rollout_output *out);

#endif /* REMS_CLUSTER_ROLLOUT_H */
