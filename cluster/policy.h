/* cluster/policy.h: policy documents (desired state), parsed and validated.
 *
 * A policy is the JSON value stored under a policy key (docs/api.md,
 * "Policies"). It says which services run on which agents, with which
 * manifest, how much the reconciler may do about them on its own, and how
 * a new revision rolls out. docs/policies.md is the reference of the
 * fields; in short:
 *
 *   {
 *     "description": "inverter gateways of the north site",   (optional)
 *     "placement": {
 *       "agents": ["edge-1", "edge-2"],                 (and/or)
 *       "selector": {
 *         "match_labels": {"site": "north"},
 *         "match_expressions": [
 *           {"key": "zone", "operator": "in", "values": ["a", "b"]},
 *           {"key": "legacy", "operator": "not_in", "values": ["yes"]},
 *           {"key": "gpu", "operator": "exists"},
 *           {"key": "retired", "operator": "does_not_exist"}]}},
 *     "mode": "recommend",                                 (or "auto")
 *     "services": [
 *       {"name": "web", "command": ["/usr/bin/web"], ...the process fields
 *        of docs/agent-config.md ("services")...,
 *        "criticality": "critical",                      (or "optional")
 *        "allowed_commands": ["restart", "start"],
 *        "secrets": [{"env": "DB_PASSWORD",
 *                     "ref": "vault://kv/web#db_password"}]}],
 *     "metadata": {"owner": "ops", "ticket": 4711},        (optional)
 *     "rollout": {"canary": "10%", "health_gate_ms": 60000,
 *                 "gate_timeout_ms": 240000,
 *                 "batch_size": 10, "batch_pause_ms": 60000,
 *                 "auto_rollback": true},
 *     "remediation": {"max_attempts": 3, "backoff_ms": 60000,
 *                     "reset_after_ms": 600000}
 *   }
 *
 * Validation is strict: a field that is not known is refused, every value
 * has one JSON type, and each error names the field by its path and the
 * rule it broke ("services[1].depends_on: unknown service \"db\"",
 * "rollout.canary: must be 1..100 percent or a count >= 1"). The process
 * part of a service (every field except criticality, allowed_commands and
 * secrets) is checked by sup_spec_parse_json() of agentproto/supervisor.h,
 * the one parser of a service, whose messages are re-rooted at
 * "services[<index>]". Cross-field rules: service names are unique within
 * the policy, every depends_on names a service of the same policy, there is
 * no dependency cycle, a secret's env is not also in env.
 *
 * Secrets are references ({env, ref}), never values: the policy stores
 * where the value lives, and whoever delivers the manifest resolves it.
 *
 * Pure: no clock, no loop, no raft; jansson and agentproto's spec parser
 * only (remsctl can validate offline). Any thread, on objects it owns. */
#ifndef REMS_CLUSTER_POLICY_H
#define REMS_CLUSTER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentproto/supervisor.h" /* struct sup_service_spec */
#include "common/error.h"

/* Bounds of a document. */
#define POLICY_DOC_MAX (1024 * 1024)     /* bytes of JSON text */
#define POLICY_SERVICES_MAX 256          /* services */
#define POLICY_AGENTS_MAX 1024           /* placement.agents */
#define POLICY_MATCH_LABELS_MAX 64       /* selector.match_labels */
#define POLICY_EXPRESSIONS_MAX 32        /* selector.match_expressions */
#define POLICY_VALUES_MAX 64             /* values of one expression */
#define POLICY_LABEL_KEY_MAX 128         /* bytes, 1..max */
#define POLICY_LABEL_VALUE_MAX 128       /* bytes, 0..max */
#define POLICY_SECRETS_MAX 64            /* secrets of one service */
#define POLICY_SECRET_REF_MAX 1024       /* bytes of a ref */
#define POLICY_DESCRIPTION_MAX 1024      /* bytes */
#define POLICY_CANARY_COUNT_MAX 10000    /* rollout.canary as a count */
#define POLICY_BATCH_SIZE_MAX 10000      /* rollout.batch_size */
#define POLICY_MAX_ATTEMPTS_MAX 100      /* remediation.max_attempts */
#define POLICY_DURATION_MAX_MS 86400000u /* every *_ms: 24 hours */

/* Defaults of the optional fields. */
#define POLICY_DEFAULT_CANARY 1u /* one agent */
#define POLICY_DEFAULT_HEALTH_GATE_MS 60000u
#define POLICY_DEFAULT_GATE_TIMEOUT_MS 60000u /* at least; see below */
#define POLICY_DEFAULT_BATCH_SIZE 10u
#define POLICY_DEFAULT_BATCH_PAUSE_MS 60000u
#define POLICY_DEFAULT_MAX_ATTEMPTS 3u
#define POLICY_DEFAULT_BACKOFF_MS 60000u
#define POLICY_DEFAULT_RESET_AFTER_MS 600000u

enum policy_mode {
    POLICY_MODE_RECOMMEND = 1, /* report only (the default) */
    POLICY_MODE_AUTO,          /* required actions become commands */
};

enum policy_criticality {
    POLICY_OPTIONAL = 1, /* its drift degrades (the default) */
    POLICY_CRITICAL,     /* its drift makes things unstable */
};

enum policy_operator {
    POLICY_OP_IN = 1,         /* the label is set to one of the values */
    POLICY_OP_NOT_IN,         /* the label is unset or set to none of them */
    POLICY_OP_EXISTS,         /* the label is set (any value) */
    POLICY_OP_DOES_NOT_EXIST, /* the label is not set */
};

/* The commands a policy may allow, as bits of policy_service.allowed:
 * bit (1u << a) for a in enum proto_action (PROTO_ACTION_START ..
 * PROTO_ACTION_DIAGNOSTICS). */
#define POLICY_ALLOWED_ALL                                                     \
    ((1u << PROTO_ACTION_START) | (1u << PROTO_ACTION_STOP) |                  \
     (1u << PROTO_ACTION_RESTART) | (1u << PROTO_ACTION_PAUSE) |               \
     (1u << PROTO_ACTION_RESUME) | (1u << PROTO_ACTION_QUARANTINE) |           \
     (1u << PROTO_ACTION_PUSH_MANIFEST) | (1u << PROTO_ACTION_DIAGNOSTICS))

/* One label of an agent, or one requirement of match_labels. */
struct policy_label {
    const char *key;
    const char *value;
};

struct policy_expression {
    const char *key;
    int op;              /* enum policy_operator */
    const char **values; /* in/not_in: sorted, unique, 1..VALUES_MAX */
    size_t n_values;     /* 0 for exists/does_not_exist */
};

struct policy_selector {
    bool present;                      /* placement.selector was given */
    struct policy_label *match_labels; /* sorted by key */
    size_t n_match_labels;
    struct policy_expression *expressions; /* sorted by key, then op */
    size_t n_expressions;
};

/* An agent is selected when its id is in @agents, or when the selector is
 * present and every requirement of it holds (an empty selector selects
 * every agent). At least one of the two is given. */
struct policy_placement {
    const char **agents; /* sorted, unique ids */
    size_t n_agents;
    struct policy_selector selector;
};

struct policy_secret {
    const char *env; /* the variable the value is delivered in */
    const char *ref; /* "scheme://...": where the value lives */
};

struct policy_service {
    const char *name;
    /* The process part, as sup_spec_parse_json() parsed it. */
    struct sup_service_spec *spec;
    /* The process part as canonical JSON text (compact, keys sorted), the
     * manifest a push_manifest command of this one service carries, and
     * its FNV-1a 64 digest (what the reconciler compares with the digest
     * an agent last acknowledged). */
    const char *manifest;
    size_t manifest_len;
    uint64_t digest;
    int criticality;  /* enum policy_criticality */
    unsigned allowed; /* bits of POLICY_ALLOWED_ALL */
    struct policy_secret *secrets;
    size_t n_secrets;
    /* depends_on as indexes into policy.services. */
    const size_t *deps;
    size_t n_deps;
};

struct policy_rollout {
    bool canary_percent;     /* canary is a percent of the selected agents */
    unsigned canary;         /* 1..100 percent, or 1..CANARY_COUNT_MAX agents */
    uint64_t health_gate_ms; /* 0..DURATION_MAX */
    /* A gate not passed within this time of its start fails: 1..
     * DURATION_MAX, >= health_gate_ms; default 4 x health_gate_ms, at
     * least POLICY_DEFAULT_GATE_TIMEOUT_MS, at most DURATION_MAX. */
    uint64_t gate_timeout_ms;
    unsigned batch_size;     /* 1..BATCH_SIZE_MAX agents */
    uint64_t batch_pause_ms; /* 0..DURATION_MAX */
    bool auto_rollback;      /* a failed gate rolls back (default true) */
};

struct policy_remediation {
    unsigned max_attempts;   /* 1..MAX_ATTEMPTS_MAX, then blocked */
    uint64_t backoff_ms;     /* 0..DURATION_MAX between attempts */
    uint64_t reset_after_ms; /* 1..DURATION_MAX nominal to reset counts */
};

/* A validated policy. Everything it points to belongs to it. */
struct policy {
    const char *description; /* "" when absent */
    /* "metadata": any JSON object, kept for people and tools and never
     * read by rems; its canonical text (compact, keys sorted), "{}" when
     * absent. */
    const char *metadata;
    struct policy_placement placement;
    int mode;                        /* enum policy_mode */
    struct policy_service *services; /* in document order */
    size_t n_services;
    const size_t *order; /* n_services indexes, dependencies first */
    struct policy_rollout rollout;
    struct policy_remediation remediation;
    /* Private. */
    void *priv;
};

/* Parse and validate the policy document @json (@len bytes of JSON text;
 * YAML callers convert it first, e.g. with agent_yaml_to_json()).
 * On success returns 0 and *@out (free with policy_free()). On failure
 * returns REMS_EMALFORMED (not JSON, or not an object: "policy: not JSON:
 * line 3: ..."), REMS_ETOOBIG (over POLICY_DOC_MAX), REMS_EINVAL (a rule:
 * @errmsg names the field path and the rule) or REMS_ENOMEM, and leaves
 * *@out untouched. */
int policy_parse_json(const char *json,
                      size_t len,
                      struct policy **out,
                      char *errmsg);

/* Release @p and all it owns; NULL is a no-op. */
void policy_free(struct policy *p);

/* The canonical JSON text of @p: compact, object keys sorted, every
 * optional rems field written with its value (defaults included),
 * placement.agents, expression values and allowed_commands sorted,
 * expressions sorted by key then operator; each service's process fields
 * as given (validated). Parsing the text gives an equal policy, and
 * rendering that gives the same text. On success returns 0 and *@out, a
 * NUL-terminated string of *@len bytes from rems_malloc() (the caller
 * frees it with rems_free()); REMS_ENOMEM otherwise. */
int policy_render_json(const struct policy *p,
                       char **out,
                       size_t *len,
                       char *errmsg);

/* True when @p's placement selects the agent @agent_id with the @n_labels
 * labels @labels (any order; keys unique). Pure; borrowed arguments. */
bool policy_selects(const struct policy *p,
                    const char *agent_id,
                    const struct policy_label *labels,
                    size_t n_labels);

/* The index of the service @name in @p, or SIZE_MAX. */
size_t policy_service_find(const struct policy *p, const char *name);

/* The wire names: "recommend", "auto"; "critical", "optional"; "in",
 * "not_in", "exists", "does_not_exist"; "?" out of range. */
const char *policy_mode_name(int mode);
const char *policy_criticality_name(int criticality);
const char *policy_operator_name(int op);

/* FNV-1a 64 of @len bytes at @p (the manifest digest). */
uint64_t policy_digest(const void *p, size_t len);

#endif /* REMS_CLUSTER_POLICY_H */
