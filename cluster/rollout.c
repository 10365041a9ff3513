/* cluster/rollout.c: the next step of a staged rollout (rollout.h). */
#include "cluster/rollout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"

const char *rollout_decision_name(int decision)
{
    switch (decision) {
        case ROLLOUT_WAIT:
            return "wait";
        case ROLLOUT_ADVANCE:
            return "advance";
        case ROLLOUT_DONE:
            return "done";
        case ROLLOUT_ROLLBACK:
            return "rollback";
        case ROLLOUT_HALT:
            return "halt";
        default:
            return "?";
    }
}

void rollout_output_close(struct rollout_output *out)
{
    if (out == NULL) {
        return;
    }
    rems_free(out->reached);
    memset(out, 0, sizeof *out);
}

static bool is_reached(const struct rollout_input *in, const char *id)
{
    size_t lo = 0;
    size_t hi = in->n_reached;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(in->reached[mid], id);
        if (c == 0) {
            return true;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_agent_id(const void *a, const void *b)
{
    const struct rollout_agent *x = *(const struct rollout_agent *const *)a;
    const struct rollout_agent *y = *(const struct rollout_agent *const *)b;
    return strcmp(x->id, y->id);
}

/* Candidates first online, then by id. */
static int cmp_candidate(const void *a, const void *b)
{
    const struct rollout_agent *x = *(const struct rollout_agent *const *)a;
    const struct rollout_agent *y = *(const struct rollout_agent *const *)b;
    if (x->online != y->online) {
        return x->online ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/* The first drift of (@agent, @service) in @pass, or NULL. */
static const struct reconcile_drift *
find_drift(const struct reconcile_output *pass,
           const char *agent,
           const char *service)
{
    size_t lo = 0;
    size_t hi = pass->n_drifts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct reconcile_drift *d = &pass->drifts[mid];
        int c = strcmp(d->agent, agent);
        if (c == 0) {
            c = strcmp(d->service, service);
        }
        if (c == 0) {
            return d;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

enum gate { GATE_HEALTHY, GATE_UNHEALTHY, GATE_FAILED };

static enum gate gate_check(const struct rollout_input *in,
                            const struct rollout_agent *const *sel,
                            size_t n_sel,
                            char *why,
                            size_t why_size)
{
    enum gate g = GATE_HEALTHY;
    size_t i;
    size_t k;
    why[0] = '\0';
    for (i = 0; i < n_sel; i++) {
        const struct rollout_agent *a = sel[i];
        if (!a->online || !is_reached(in, a->id)) {
            continue;
        }
        for (k = 0; k < in->target->n_services; k++) {
            const char *svc = in->target->services[k].name;
            const struct reconcile_drift *d = find_drift(in->pass, a->id, svc);
            if (d == NULL) {
                continue;
            }
            if (d->level == RECONCILE_BLOCKED ||
                d->kind == RECONCILE_DRIFT_FAILED_DEPLOYMENT ||
                d->kind == RECONCILE_DRIFT_UNRESOLVED_INCIDENT) {
                snprintf(why, why_size, "%s on %s: %s (%s): %s", svc, a->id,
                         reconcile_drift_kind_name(d->kind),
                         reconcile_level_name(d->level),
                         d->detail != NULL ? d->detail : "");
                return GATE_FAILED;
            }
            if (g == GATE_HEALTHY) {
                snprintf(why, why_size, "%s on %s: %s: %s", svc, a->id,
                         reconcile_drift_kind_name(d->kind),
                         d->detail != NULL ? d->detail : "");
                g = GATE_UNHEALTHY;
            }
        }
    }
    return g;
}

/* out->reached = the reached agents plus the next @count candidates. */
static int extend(const struct rollout_input *in,
                  const struct rollout_agent *const *cand,
                  size_t n_cand,
                  size_t count,
                  struct rollout_output *out)
{
    size_t take = count < n_cand ? count : n_cand;
    size_t n = in->n_reached + take;
    size_t i;
    out->reached = rems_malloc((n + 1) * sizeof *out->reached);
    if (out->reached == NULL) {
        return REMS_ENOMEM;
    }
    for (i = 0; i < in->n_reached; i++) {
        out->reached[i] = in->reached[i];
    }
    for (i = 0; i < take; i++) {
        out->reached[in->n_reached + i] = cand[i]->id;
    }
    qsort(out->reached, n, sizeof *out->reached, cmp_str_ptr);
    out->n_reached = n;
    return 0;
}

int rollout_step(const struct rollout_input *in,
                 uint64_t now_ms,
                 struct rollout_output *out_,
                 char *errmsg)
{
    const struct policy_rollout *ro;
    const struct rollout_agent **sel = NULL;
    const struct rollout_agent **cand = NULL;
    struct rollout_output o;
    struct rollout_output *out = &o;
    size_t n_sel = 0;
    size_t n_cand = 0;
    size_t i;
    uint64_t age;
    int rv = 0;

    PRE(in != NULL && in->target != NULL && in->pass != NULL &&
        out_ != NULL && errmsg != NULL);
    memset(out, 0, sizeof *out);
    ro = &in->target->rollout;
    age = now_ms > in->stage_started_ms ? now_ms - in->stage_started_ms : 0;

    sel = rems_malloc((in->n_agents + 1) * sizeof *sel);
    cand = rems_malloc((in->n_agents + 1) * sizeof *cand);
    if (sel == NULL || cand == NULL) {
        rv = REMS_ENOMEM;
        goto out;
    }
    for (i = 0; i < in->n_agents; i++) {
        const struct rollout_agent *a = &in->agents[i];
        if (!policy_selects(in->target, a->id, a->labels, a->n_labels)) {
            continue;
        }
        sel[n_sel++] = a;
        if (!is_reached(in, a->id)) {
            cand[n_cand++] = a;
        }
    }
    /* By id, so that nothing depends on the order of the input. */
    qsort(sel, n_sel, sizeof *sel, cmp_agent_id);
    qsort(cand, n_cand, sizeof *cand, cmp_candidate);

    switch (in->stage) {
        case ROLLOUT_STAGE_CANARY: {
            size_t count;
            if (n_sel == 0) {
                out->decision = ROLLOUT_DONE;
                snprintf(out->message, sizeof out->message,
                         "no agent selected: nothing to roll out");
                break;
            }
            if (ro->canary_percent) {
                count = (n_sel * ro->canary + 99) / 100;
            } else {
                count = ro->canary;
            }
            if (count == 0) {
                count = 1;
            }
            rv = extend(in, cand, n_cand, count, out);
            if (rv != 0) {
                break;
            }
            out->decision = ROLLOUT_ADVANCE;
            out->stage = ROLLOUT_STAGE_GATE;
            out->batch = 0;
            snprintf(out->message, sizeof out->message,
                     "canary: %zu of %zu selected agents",
                     n_sel - n_cand + (count < n_cand ? count : n_cand),
                     n_sel);
            break;
        }
        case ROLLOUT_STAGE_GATE: {
            char why[400];
            enum gate g = gate_check(in, sel, n_sel, why, sizeof why);
            uint64_t since = 0;
            bool passed = false;
            if (g == GATE_HEALTHY) {
                out->gate_healthy = true;
                since =
                    in->healthy_since_ms != 0 ? in->healthy_since_ms : now_ms;
                passed = now_ms >= since && now_ms - since >= ro->health_gate_ms;
            }
            /* In mode recommend a person deploys: the gate waits for them
             * and never times out. */
            if (g == GATE_FAILED ||
                (!passed && age > ro->gate_timeout_ms &&
                 in->target->mode == POLICY_MODE_AUTO)) {
                out->gate_healthy = false; /* The gate is over. */
                out->decision =
                    ro->auto_rollback ? ROLLOUT_ROLLBACK : ROLLOUT_HALT;
                if (g == GATE_FAILED) {
                    snprintf(out->message, sizeof out->message,
                             "gate of batch %" PRIu64 " failed: %s",
                             in->batch, why);
                } else if (g == GATE_UNHEALTHY) {
                    snprintf(out->message, sizeof out->message,
                             "gate of batch %" PRIu64 " not passed in %" PRIu64
                             " ms: %s",
                             in->batch, ro->gate_timeout_ms, why);
                } else {
                    snprintf(out->message, sizeof out->message,
                             "gate of batch %" PRIu64 " not passed in %" PRIu64
                             " ms: healthy for %" PRIu64 " of %" PRIu64 " ms",
                             in->batch, ro->gate_timeout_ms,
                             now_ms >= since ? now_ms - since : 0,
                             ro->health_gate_ms);
                }
                break;
            }
            if (g == GATE_UNHEALTHY) {
                snprintf(out->message, sizeof out->message,
                         "gate of batch %" PRIu64 ": waiting: %s", in->batch,
                         why);
                break;
            }
            if (!passed) {
                snprintf(out->message, sizeof out->message,
                         "gate of batch %" PRIu64 ": healthy for %" PRIu64
                         " of %" PRIu64 " ms",
                         in->batch, now_ms >= since ? now_ms - since : 0,
                         ro->health_gate_ms);
                break;
            }
            if (n_cand == 0) {
                out->decision = ROLLOUT_DONE;
                snprintf(out->message, sizeof out->message,
                         "all %zu selected agents reached and healthy",
                         n_sel);
                break;
            }
            if (ro->batch_pause_ms > 0) {
                rv = extend(in, cand, n_cand, 0, out);
                if (rv != 0) {
                    break;
                }
                out->decision = ROLLOUT_ADVANCE;
                out->stage = ROLLOUT_STAGE_PAUSE;
                out->batch = in->batch;
                snprintf(out->message, sizeof out->message,
                         "gate of batch %" PRIu64 " passed; pause of %" PRIu64
                         " ms",
                         in->batch, ro->batch_pause_ms);
                break;
            }
            /* No pause: the next batch now. */
        }
        /* fall through */
        case ROLLOUT_STAGE_PAUSE:
            if (in->stage == ROLLOUT_STAGE_PAUSE && age < ro->batch_pause_ms) {
                snprintf(out->message, sizeof out->message,
                         "pause after batch %" PRIu64 ": %" PRIu64
                         " of %" PRIu64 " ms",
                         in->batch, age, ro->batch_pause_ms);
                break;
            }
            if (n_cand == 0) {
                out->decision = ROLLOUT_DONE;
                snprintf(out->message, sizeof out->message,
                         "all %zu selected agents reached and healthy",
                         n_sel);
                break;
            }
            rv = extend(in, cand, n_cand, ro->batch_size, out);
            if (rv != 0) {
                break;
            }
            out->decision = ROLLOUT_ADVANCE;
            out->stage = ROLLOUT_STAGE_GATE;
            out->batch = in->batch + 1;
            {
                size_t take =
                    ro->batch_size < n_cand ? ro->batch_size : n_cand;
                snprintf(out->message, sizeof out->message,
                         "batch %" PRIu64 ": %zu more agents (%zu of %zu)",
                         out->batch, take, n_sel - n_cand + take, n_sel);
            }
            break;
        default:
            snprintf(out->message, sizeof out->message, "unknown stage %d",
                     in->stage);
            break;
    }

out:
    rems_free(sel);
    rems_free(cand);
    if (rv != 0) {
        rollout_output_close(out);
        rems_errmsgf(errmsg, "rollout %s: out of memory", in->key);
        return rv;
    }
    *out_ = o;
    return 0;
}
