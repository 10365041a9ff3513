/* cluster/reconcile.h: the reconciler's pure core.
 *
 * One pass compares the desired state (policies, placed on agents) with
 * the actual state (what agents reported) and says what is wrong (drift),
 * what should be done about it (recommendations), what the leader may do
 * on its own now (commands, for policies in mode auto, within the
 * guardrails), what it holds back and why, what to replicate (remediation
 * records, new incidents), and how things stand (summaries per service,
 * agent, site and for the cluster).
 *
 *   reconcile_pass(input, now_ms, &output, errmsg)
 *
 * is a pure function: it reads no clock, touches no socket, draws no
 * random number and keeps no state between calls. The same input and
 * now_ms give the same output, whatever the order of the input's arrays
 * (every output array is sorted). The leader's loop feeds it from the
 * replicated tables and its wall clock and turns the output into log
 * entries and commands (docs/adr/0005-reconciler.md).
 *
 * Time: now_ms is the leader's wall clock in milliseconds since the epoch,
 * the clock of the log entries' time_ms; every *_ms instant of the input is
 * on that clock, except reconcile_service.since_ms, which is the agent's
 * (it is compared with now_ms only against config.grace_ms, which must
 * cover the clock skew).
 *
 * ------------------------------------------------------------------------
 * Desired state
 *
 * Each policy (key, revision, parsed document) places its services on the
 * agents its placement selects (policy_selects()). While a rollout of a
 * policy is in progress, the agents it has reached get the new document and
 * the others keep the previous one (or nothing, for a new policy). When
 * two policies place a service of the same name on one agent, the policy
 * whose key sorts first wins and the pair is reported as a conflict.
 * reconcile_resolve() gives the desired services of one agent.
 *
 * ------------------------------------------------------------------------
 * Drift, per (agent, service), at most one each; decided in this order:
 *
 *   agent offline (no lease) with services placed on it
 *        -> offline_agent (one drift, service ""): failover_review,
 *           required when a placed service is critical, else recommended
 *   an incident of (agent, service) is open (or acknowledged)
 *        -> unresolved_incident: blocked (diagnostics) while the service
 *           still drifts, recommended (none: resolve it) once it does not
 *   the last redeploy (push_manifest) failed and the manifest is still
 *   not deployed
 *        -> failed_deployment: required, redeploy
 *   not reported, or the agent has not acknowledged this manifest (its
 *   digest differs from the record's deployed_digest)
 *        -> dependency_unavailable when a dependency is unavailable:
 *           recommended, delayed_deployment
 *        -> missing_service otherwise: required, redeploy
 *   reported, but down (stopped although autostart, failed, fatal),
 *   unhealthy, or starting / stopping / not ready for config.grace_ms
 *        -> dependency_unavailable when a dependency is unavailable:
 *           recommended, none (it follows its dependency)
 *        -> unhealthy_service otherwise: required, start (down) or
 *           restart (unhealthy, stuck)
 *   reported in backoff (the agent is restarting it)
 *        -> unhealthy_service: recommended, diagnostics
 *   reported paused or quarantined (an operator's doing)
 *        -> unhealthy_service: recommended, none
 *   reported, placed by no policy (online agent)
 *        -> unexpected_service: recommended, stop
 *   neither placed nor reported, with an incident (or an incident of the
 *   agent as a whole, service "")
 *        -> unresolved_incident: recommended, none (resolve it)
 *
 * A dependency is available when it is reported running, ready and not
 * unhealthy (or stopped with autostart false) on the same agent.
 *
 * Escalation: a required drift of a service whose record counts
 * policy.remediation.max_attempts remediations, none in flight, and whose
 * last attempt is at least remediation.backoff_ms old, becomes blocked
 * (action diagnostics) and an incident is opened for it (output
 * incidents). From then on it is unresolved_incident until an operator
 * resolves the incident (the API's work). The attempt count is reset (a
 * record update) once the service has been without drift for
 * remediation.reset_after_ms after the last attempt, so that a crash loop
 * that looks fine between attempts still escalates.
 *
 * Summary state of one (agent, service), in this order:
 *   blocked drift -> unstable; a remediation in flight (record outcome
 *   pending, or a command issued by this pass) -> reconciling; drift of a
 *   critical service (or offline_agent with a critical service) ->
 *   unstable; other drift -> degraded; else nominal.
 * An agent, a site and the cluster take the worst state of their parts,
 * in the order nominal < degraded < reconciling < unstable; an offline
 * agent with services placed on it is at least degraded.
 *
 * ------------------------------------------------------------------------
 * Commands and guardrails
 *
 * Only a required drift with a command action (redeploy = push_manifest,
 * restart, start, stop, diagnostics) of a service whose policy is in mode
 * auto, on an online agent, with no remediation in flight for it, becomes
 * a command. Candidates are taken critical first, then by agent id and
 * service name, and each passes these guardrails in order; the first that
 * refuses it holds it back (output holds, with the guardrail and why):
 *
 *   paused          the reconciler is paused (guard.paused)
 *   frozen_service  a freeze of the service (on every agent or this one)
 *   frozen_agent    a freeze of the agent
 *   frozen_site     a freeze of the agent's site
 *   not_allowed     the action is not in the service's allowed_commands
 *   backoff         remediation.backoff_ms has not passed since the last
 *                   attempt
 *   maintenance     a window that applies to the agent forbids it now: a
 *                   never_inside window is open, or there are
 *                   auto_inside_only windows and none is open
 *   concurrency     remediations in flight (records pending, all agents)
 *                   plus those issued in this pass reach
 *                   config.max_in_flight
 *   rate_agent      remediations issued to the agent in the current rate
 *                   window (agent.issued_in_window, plus this pass) reach
 *                   config.max_per_agent
 *   rate_site       the same for its site (guard.sites) and
 *                   config.max_per_site
 *   rate_global     the same for all (guard.issued_global) and
 *                   config.max_global
 *
 * An issued command comes with the record update to replicate with it
 * (attempts + 1, last attempt now, outcome pending).
 *
 * ------------------------------------------------------------------------
 * Remediation records (replicated, one per (agent, service))
 *
 * A record counts the remediations of the current episode and remembers
 * what the agent acknowledged:
 *   issued (this pass's update)  attempts+1, last_attempt_ms = now,
 *                                last_action, outcome pending,
 *                                pending_digest = the manifest's digest for
 *                                a redeploy
 *   command acked                reconcile_record_resolve(r, true): outcome
 *                                succeeded; a redeploy's pending_digest
 *                                becomes deployed_digest
 *   nacked, expired, cancelled   reconcile_record_resolve(r, false):
 *                                outcome failed
 *   nominal for reset_after_ms   this pass's update: attempts 0
 *   its incident resolved        attempts 0 (applied with the resolve, so
 *                                the service gets max_attempts new tries)
 *   neither placed nor reported  this pass's delete (not while pending)
 *
 * ------------------------------------------------------------------------
 * Ownership and threads
 *
 * The input and everything it points to are borrowed for the call only.
 * The output owns everything it points to (strings included, manifests of
 * commands copied): reconcile_output_close() frees it all at once. Any
 * thread, on objects it owns; nothing here has global state. */
#ifndef REMS_CLUSTER_RECONCILE_H
#define REMS_CLUSTER_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/policy.h"
#include "common/error.h"

/* ------------------------------------------------------------------------
 * Enumerations (wire names in comments; *_name() returns them, "?" out of
 * range)
 * --------------------------------------------------------------------- */

enum reconcile_drift_kind {
    RECONCILE_DRIFT_MISSING_SERVICE = 1,    /* missing_service */
    RECONCILE_DRIFT_UNEXPECTED_SERVICE,     /* unexpected_service */
    RECONCILE_DRIFT_UNHEALTHY_SERVICE,      /* unhealthy_service */
    RECONCILE_DRIFT_FAILED_DEPLOYMENT,      /* failed_deployment */
    RECONCILE_DRIFT_OFFLINE_AGENT,          /* offline_agent */
    RECONCILE_DRIFT_DEPENDENCY_UNAVAILABLE, /* dependency_unavailable */
    RECONCILE_DRIFT_UNRESOLVED_INCIDENT,    /* unresolved_incident */
    RECONCILE_DRIFT_NR
};

enum reconcile_level {
    RECONCILE_REQUIRED = 1, /* reconcile_required: act now */
    RECONCILE_RECOMMENDED,  /* reconcile_recommended: a person decides */
    RECONCILE_BLOCKED,      /* reconcile_blocked: escalated, no automation */
    RECONCILE_LEVEL_NR
};

enum reconcile_action {
    RECONCILE_ACTION_NONE = 1,           /* none */
    RECONCILE_ACTION_REDEPLOY,           /* redeploy: push_manifest */
    RECONCILE_ACTION_RESTART,            /* restart */
    RECONCILE_ACTION_START,              /* start */
    RECONCILE_ACTION_STOP,               /* stop */
    RECONCILE_ACTION_DIAGNOSTICS,        /* diagnostics */
    RECONCILE_ACTION_FAILOVER_REVIEW,    /* failover_review (a person) */
    RECONCILE_ACTION_DELAYED_DEPLOYMENT, /* delayed_deployment (wait) */
    RECONCILE_ACTION_NR
};

/* Ordered by severity: a group takes the greatest state of its parts. */
enum reconcile_state {
    RECONCILE_NOMINAL = 1, /* nominal */
    RECONCILE_DEGRADED,    /* degraded: non-critical drift */
    RECONCILE_RECONCILING, /* reconciling: a remediation in flight */
    RECONCILE_UNSTABLE,    /* unstable: critical or blocked drift */
    RECONCILE_STATE_NR
};

enum reconcile_guardrail {
    RECONCILE_GUARD_PAUSED = 1,     /* paused */
    RECONCILE_GUARD_FROZEN_SERVICE, /* frozen_service */
    RECONCILE_GUARD_FROZEN_AGENT,   /* frozen_agent */
    RECONCILE_GUARD_FROZEN_SITE,    /* frozen_site */
    RECONCILE_GUARD_NOT_ALLOWED,    /* not_allowed */
    RECONCILE_GUARD_BACKOFF,        /* backoff */
    RECONCILE_GUARD_MAINTENANCE,    /* maintenance */
    RECONCILE_GUARD_CONCURRENCY,    /* concurrency */
    RECONCILE_GUARD_RATE_AGENT,     /* rate_agent */
    RECONCILE_GUARD_RATE_SITE,      /* rate_site */
    RECONCILE_GUARD_RATE_GLOBAL,    /* rate_global */
    RECONCILE_GUARD_NR
};

/* The outcome of a record's last remediation. */
enum reconcile_outcome {
    RECONCILE_OUTCOME_NONE = 0,  /* none: no attempt recorded */
    RECONCILE_OUTCOME_PENDING,   /* pending: the command is in flight */
    RECONCILE_OUTCOME_SUCCEEDED, /* succeeded: acked */
    RECONCILE_OUTCOME_FAILED,    /* failed: nacked, expired or cancelled */
    RECONCILE_OUTCOME_NR
};

const char *reconcile_drift_kind_name(int kind);
const char *reconcile_level_name(int level);
const char *reconcile_action_name(int action);
const char *reconcile_state_name(int state);
const char *reconcile_guardrail_name(int guardrail);
const char *reconcile_outcome_name(int outcome);

/* The agent command (enum proto_action) that carries @action, or 0 for
 * actions that are not commands (none, failover_review,
 * delayed_deployment). */
int reconcile_action_command(int action);

/* ------------------------------------------------------------------------
 * Input
 * --------------------------------------------------------------------- */

/* One policy as stored: key, revision and the parsed document. */
struct reconcile_policy {
    const char *key;
    uint64_t revision;
    const struct policy *policy;
    /* A rollout in progress: @rollout_agents (any order) have reached
     * @revision; every other agent keeps @previous at @previous_revision
     * (NULL: the policy is new, they get nothing from it yet). */
    bool rollout_active;
    const struct policy *previous;
    uint64_t previous_revision;
    const char *const *rollout_agents;
    size_t n_rollout_agents;
};

/* One service as its agent last reported it (agentproto/proto.h). */
struct reconcile_service {
    const char *name;
    int state;  /* enum proto_state */
    int health; /* enum proto_health */
    bool ready;
    uint64_t generation;
    uint64_t since_ms; /* The agent's wall clock at the last change. */
    bool has_exit_code;
    int32_t exit_code;
    const char *message; /* NULL or "" when none */
};

/* The remediation record of one (agent, service); see the header comment.
 * Digests are policy_service.digest values (0: unknown). */
struct reconcile_record {
    const char *service;
    unsigned attempts;        /* remediations in the current episode */
    uint64_t last_attempt_ms; /* 0: never */
    int last_action;          /* enum reconcile_action; 0: none */
    int outcome;              /* enum reconcile_outcome */
    uint64_t pending_digest;  /* a redeploy in flight: its manifest */
    uint64_t deployed_digest; /* the manifest the agent acknowledged */
};

/* One agent: its stored record, lease and remediation records. */
struct reconcile_agent {
    const char *id;
    bool online;                       /* holds a lease */
    const struct policy_label *labels; /* unique keys */
    size_t n_labels;
    const struct reconcile_service *services; /* unique names */
    size_t n_services;
    const struct reconcile_record *records; /* unique services */
    size_t n_records;
    /* Remediations issued to it in the current rate window. */
    unsigned issued_in_window;
    /* Private: set by reconcile_agent_load(). */
    void *priv;
};

enum reconcile_freeze_scope {
    RECONCILE_FREEZE_SERVICE = 1, /* @name is a service name */
    RECONCILE_FREEZE_AGENT,       /* @name is an agent id */
    RECONCILE_FREEZE_SITE,        /* @name is a site (config.site_label) */
};

/* A manual override: no automatic action on what it names. */
struct reconcile_freeze {
    int scope; /* enum reconcile_freeze_scope */
    const char *name;
    const char *agent; /* SERVICE only: this agent only; NULL = all */
    uint64_t until_ms; /* 0 = until removed; else active while now < it */
};

enum reconcile_window_scope {
    RECONCILE_WINDOW_GLOBAL = 1, /* every agent */
    RECONCILE_WINDOW_SITE,       /* agents of @target's site */
    RECONCILE_WINDOW_AGENT,      /* the agent @target */
};

enum reconcile_window_policy {
    /* Automatic actions only while a window of this kind is open. */
    RECONCILE_WINDOW_AUTO_INSIDE_ONLY = 1, /* auto_inside_only */
    /* No automatic action while it is open. */
    RECONCILE_WINDOW_NEVER_INSIDE, /* never_inside */
};

/* A maintenance window. Either once, [start_ms, end_ms) on the leader's
 * wall clock, or weekly in UTC: open on each day of @days (bit 0 Monday ..
 * bit 6 Sunday) from @start_minute (0..1439 after midnight) for
 * @duration_minutes (1..10080; it may run into the next days and across
 * the end of the week). reconcile_window_check() states the rules. */
struct reconcile_window {
    const char *name;   /* unique; for messages */
    int scope;          /* enum reconcile_window_scope */
    const char *target; /* site or agent id; NULL for global */
    int policy;         /* enum reconcile_window_policy */
    bool weekly;
    uint64_t start_ms; /* once */
    uint64_t end_ms;
    unsigned days; /* weekly */
    unsigned start_minute;
    unsigned duration_minutes;
};

/* An incident that is open or acknowledged (resolved ones are not
 * given). */
struct reconcile_incident {
    uint64_t id;
    const char *agent;
    const char *service; /* "" for the agent as a whole */
    bool acknowledged;
};

/* Remediations issued to a site's agents in the current rate window. */
struct reconcile_site_count {
    const char *site;
    unsigned issued;
};

/* The guardrails' state (replicated overrides and windows, counts derived
 * from the command log over config.rate_window_ms). */
struct reconcile_guard {
    bool paused; /* the reconciler is paused: nothing is issued */
    const struct reconcile_freeze *freezes;
    size_t n_freezes;
    const struct reconcile_window *windows;
    size_t n_windows;
    const struct reconcile_incident *incidents;
    size_t n_incidents;
    unsigned issued_global; /* issued in the current rate window */
    const struct reconcile_site_count *sites; /* unique sites */
    size_t n_sites;
};

/* Limits. reconcile_config_init() sets the defaults below; 0 in a max_*
 * means none may be issued. */
struct reconcile_config {
    const char *site_label;  /* the label naming an agent's site; NULL or
                                "": no sites */
    uint64_t rate_window_ms; /* what the issued counts cover (messages) */
    unsigned max_per_agent;  /* per rate window */
    unsigned max_per_site;
    unsigned max_global;
    unsigned max_in_flight;  /* remediations in flight at once */
    uint64_t command_ttl_ms; /* the TTL of the commands issued */
    uint64_t grace_ms; /* starting, stopping or not ready that long: stuck */
};

#define RECONCILE_DEFAULT_SITE_LABEL "site"
#define RECONCILE_DEFAULT_RATE_WINDOW_MS 600000u /* 10 minutes */
#define RECONCILE_DEFAULT_MAX_PER_AGENT 3u
#define RECONCILE_DEFAULT_MAX_PER_SITE 20u
#define RECONCILE_DEFAULT_MAX_GLOBAL 100u
#define RECONCILE_DEFAULT_MAX_IN_FLIGHT 50u
#define RECONCILE_DEFAULT_COMMAND_TTL_MS 60000u
#define RECONCILE_DEFAULT_GRACE_MS 60000u

void reconcile_config_init(struct reconcile_config *c);

struct reconcile_input {
    const struct reconcile_policy *policies; /* unique keys */
    size_t n_policies;
    const struct reconcile_agent *agents; /* unique ids */
    size_t n_agents;
    struct reconcile_guard guard;
    struct reconcile_config config;
};

/* ------------------------------------------------------------------------
 * Output
 * --------------------------------------------------------------------- */

/* A drift and its recommendation. */
struct reconcile_drift {
    int kind; /* enum reconcile_drift_kind */
    const char *agent;
    const char *service; /* "" for offline_agent */
    const char *policy;  /* the placing policy's key; "" when none */
    uint64_t revision;   /* its revision in force on the agent; 0 none */
    int criticality;     /* enum policy_criticality (optional if none) */
    const char *detail;  /* what is wrong, for people */
    int level;           /* enum reconcile_level */
    int action;          /* enum reconcile_action */
    const char *reason;  /* why this action, for people */
    int state;           /* enum reconcile_state of (agent, service) */
};

/* A command to issue (through the command log). */
struct reconcile_command {
    const char *agent;
    const char *service;
    int action;           /* enum reconcile_action */
    int command;          /* enum proto_action: reconcile_action_command() */
    const char *manifest; /* redeploy: the service's manifest; else NULL */
    size_t manifest_len;
    uint64_t digest; /* redeploy: the manifest's digest; else 0 */
    uint64_t ttl_ms;
    const char *policy; /* the placing policy's key */
    uint64_t revision;
    const char *reason; /* for the command's reason (audit) */
};

/* A required action of a policy in mode auto that a guardrail held back. */
struct reconcile_hold {
    const char *agent;
    const char *service;
    int action;    /* enum reconcile_action */
    int guardrail; /* enum reconcile_guardrail */
    const char *detail;
};

/* An incident to open (the log assigns its id). */
struct reconcile_incident_open {
    const char *agent;
    const char *service;
    int kind; /* the drift that escalated */
    const char *policy;
    unsigned attempts;
    const char *detail;
};

enum reconcile_update_kind {
    RECONCILE_RECORD_PUT = 1, /* store @record for (agent, service) */
    RECONCILE_RECORD_DELETE,  /* forget the record of (agent, service) */
};

struct reconcile_update {
    int kind; /* enum reconcile_update_kind */
    const char *agent;
    struct reconcile_record record; /* .service names it; PUT: the value */
};

/* Two policies place the same service on one agent; @policy wins. */
struct reconcile_conflict {
    const char *agent;
    const char *service;
    const char *policy;
    const char *shadowed; /* the policy whose placement is ignored */
};

/* The state of a service name (over the agents it is placed on or
 * reported by), an agent (over its services), a site (over its agents)
 * or the cluster (over all agents). */
struct reconcile_summary {
    const char *name; /* service, agent id, site, or "cluster" */
    int state;        /* enum reconcile_state */
    size_t counts[RECONCILE_STATE_NR]; /* parts per state (index = state) */
    size_t total;
};

struct reconcile_output {
    struct reconcile_drift *drifts; /* by agent, then service */
    size_t n_drifts;
    struct reconcile_command *commands; /* in the order to issue */
    size_t n_commands;
    struct reconcile_hold *holds; /* in the order considered */
    size_t n_holds;
    struct reconcile_incident_open *incidents; /* by agent, service */
    size_t n_incidents;
    struct reconcile_update *updates; /* by agent, service */
    size_t n_updates;
    struct reconcile_conflict *conflicts; /* by agent, service */
    size_t n_conflicts;
    struct reconcile_summary *services; /* by name */
    size_t n_services;
    struct reconcile_summary *agents; /* by id */
    size_t n_agents;
    struct reconcile_summary *sites; /* by name; agents without the site
                                        label belong to none */
    size_t n_sites;
    struct reconcile_summary cluster;
    /* Private. */
    void *priv;
};

/* One reconcile pass over @in at @now_ms. On success returns 0 and fills
 * *@out (release it with reconcile_output_close()). On failure returns
 * REMS_EINVAL (two agents with one id, two policies with one key, a NULL
 * where a string is required; @errmsg says which) or REMS_ENOMEM, and
 * leaves *@out untouched. */
int reconcile_pass(const struct reconcile_input *in,
                   uint64_t now_ms,
                   struct reconcile_output *out,
                   char *errmsg);

/* Free everything @out owns and zero it; a zeroed output is a no-op. */
void reconcile_output_close(struct reconcile_output *out);

/* ------------------------------------------------------------------------
 * Pure helpers for the wiring
 * --------------------------------------------------------------------- */

/* One desired service of an agent. */
struct reconcile_desired {
    const char *service;
    size_t policy;            /* index into the policies given */
    const struct policy *doc; /* the document in force on the agent */
    uint64_t revision;        /* its revision */
    size_t index;             /* into doc->services */
    size_t shadowed;          /* a later policy (by key) placing the same
                                 name here, or SIZE_MAX */
};

/* The services the @n_policies @policies place on the agent @agent_id
 * with @labels, sorted by name, conflicts settled as described above.
 * On success returns 0, *@out (free with rems_free(); NULL when *@n is 0)
 * and *@n. REMS_EINVAL for two policies with one key, REMS_ENOMEM. */
int reconcile_resolve(const struct reconcile_policy *policies,
                      size_t n_policies,
                      const char *agent_id,
                      const struct policy_label *labels,
                      size_t n_labels,
                      struct reconcile_desired **out,
                      size_t *n,
                      char *errmsg);

/* Fill @a from an agent's stored record (statemachine_agent): @labels is
 * the JSON object of its labels, @services the JSON map service ->
 * {state, generation, health, ready, exit_code?, since_ms, message?} that
 * the agent link replicates ("" or 0 bytes: none reported). @a's records
 * and issued_in_window are left 0 for the caller to set. Returns 0 (free
 * with reconcile_agent_clear()), REMS_ECORRUPT naming the bad field, or
 * REMS_ENOMEM; on failure @a is untouched. */
int reconcile_agent_load(const char *id,
                         size_t id_len,
                         const char *labels,
                         size_t labels_len,
                         const char *services,
                         size_t services_len,
                         bool online,
                         struct reconcile_agent *a,
                         char *errmsg);

/* Free what reconcile_agent_load() allocated and zero @a. */
void reconcile_agent_clear(struct reconcile_agent *a);

/* Apply a command's outcome to its record (see the header comment):
 * @acked true for acked, false for nacked, expired or cancelled. */
void reconcile_record_resolve(struct reconcile_record *r, bool acked);

/* Check a window's fields: 0, or REMS_EINVAL with @errmsg naming the field
 * and the rule ("maintenance_window.days: must be 1..127 (bit 0 =
 * Monday)"). */
int reconcile_window_check(const struct reconcile_window *w, char *errmsg);

/* True when @w is open at @now_ms. */
bool reconcile_window_open(const struct reconcile_window *w, uint64_t now_ms);

#endif /* REMS_CLUSTER_RECONCILE_H */
