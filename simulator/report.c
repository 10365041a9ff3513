/* simulator/report.c: the report of a drill. See simulator/report.h. */
#include "simulator/report.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/heap.h"

/* ------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------ */

/* "1234 ms", or "-" for a negative value, into @out. */
static const char *ms_text(double v, char *out, size_t size)
{
    if (v < 0) {
        snprintf(out, size, "-");
    } else {
        snprintf(out, size, "%.0f ms", v);
    }
    return out;
}

static const char *kind_threshold(const struct drill_verdict *v,
                                  char *out,
                                  size_t size)
{
    switch (v->kind) {
        case SCENARIO_ASSERT_LEADER_WITHIN_MS:
        case SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS:
        case SCENARIO_ASSERT_NOMINAL_WITHIN_MS:
            snprintf(out, size, "%" PRIu64 " ms", v->ms);
            break;
        default:
            snprintf(out, size, "true");
            break;
    }
    return out;
}

int report_table(FILE *out,
                 const struct drill_result *r,
                 const struct scenario *s)
{
    const struct drill_commands *c = &r->commands;
    char a[32], b[32], e[32], f[32], g[32], h[32], p99[32], max[32];
    size_t failed = 0;
    size_t i;

    fprintf(out, "\nrems-sim drill %s: %s\n", r->name,
             s->description != NULL ? s->description : "");
    fprintf(out,
            "seed %" PRIu64 ", %zu nodes, %zu agents, %.1f s%s"
            "  (repeat: rems-sim --seed %" PRIu64 " %s)\n",
            r->seed, r->n_nodes, r->n_agents, (double)r->duration_ms / 1000.0,
            r->interrupted ? ", interrupted" : "", r->seed,
            s->path != NULL ? s->path : "SCENARIO");

    fprintf(out, "\nfailover\n");
    fprintf(out, "  %-9s %4s %9s %9s %9s %9s %9s  %-11s %7s %11s %9s %9s "
                 "%9s\n",
            "fault", "node", "at", "detect", "elect", "commit", "resumed",
            "new leader", "dropped", "reconnected", "p50", "p99", "max");
    if (r->n_faults == 0) {
        fprintf(out, "  (no fault)\n");
    }
    for (i = 0; i < r->n_faults; i++) {
        const struct drill_fault *x = &r->faults[i];
        char node[16];
        char leader[24];
        if (x->node_id == 0) {
            snprintf(node, sizeof node, "all");
        } else {
            snprintf(node, sizeof node, "%" PRIu64, x->node_id);
        }
        if (x->removed_leader && x->new_leader != 0) {
            snprintf(leader, sizeof leader, "%" PRIu64 " (term %" PRIu64 ")",
                     x->new_leader, x->new_term);
        } else {
            snprintf(leader, sizeof leader, "%s",
                     x->removed_leader ? "none seen" : "(follower)");
        }
        fprintf(out,
                "  %-9s %4s %9s %9s %9s %9s %9s  %-11s %7" PRIu64
                " %11" PRIu64 " %9s %9s %9s\n",
                x->kind, node, ms_text((double)x->at_ms, a, sizeof a),
                x->removed_leader ? ms_text((double)x->detection_ms, b,
                                            sizeof b)
                                  : "",
                x->removed_leader
                    ? ms_text((double)x->election_ms, e, sizeof e)
                    : "",
                x->removed_leader
                    ? ms_text((double)x->first_commit_ms, f, sizeof f)
                    : "",
                x->removed_leader
                    ? ms_text((double)x->commands_resumed_ms, g, sizeof g)
                    : "",
                leader, x->agents_dropped, x->agents_reconnected,
                ms_text(x->reconnect_p50_ms, h, sizeof h),
                ms_text(x->reconnect_p99_ms, p99, sizeof p99),
                ms_text(x->reconnect_max_ms, max, sizeof max));
    }
    if (r->n_faults > 0) {
        fprintf(out, "  (times from the fault; detect: no survivor names "
                     "the old leader; elect: a ready new leader; commit: "
                     "first write acknowledged; resumed: first new command "
                     "executed)\n");
    }

    fprintf(out, "\ncommands\n");
    fprintf(out,
            "  sent %" PRIu64 ", issued %" PRIu64 ", refused %" PRIu64
            ", unknown (never proposed) %" PRIu64 "\n",
            c->sent, c->issued, c->refused, c->unknown);
    fprintf(out,
            "  acked %" PRIu64 ", nacked %" PRIu64 ", expired %" PRIu64
            ", cancelled %" PRIu64 ", lost %" PRIu64 "\n",
            c->acked, c->nacked, c->expired, c->cancelled, c->lost);
    fprintf(out,
            "  executed %" PRIu64 ", duplicated %" PRIu64 ", late %" PRIu64
            ", acked but not executed %" PRIu64
            ", executed but its answer lost (expired) %" PRIu64 "\n",
            c->executed, c->duplicated, c->late, c->acked_not_executed,
            c->executed_expired);
    if (c->first_problem[0] != '\0') {
        fprintf(out, "  first problem: %s\n", c->first_problem);
    }

    fprintf(out, "\ndrift\n");
    if (r->drift.crashes == 0) {
        fprintf(out, "  (no crash_services step)\n");
    } else {
        fprintf(out,
                "  crashes %" PRIu64 ", seen in /v1/drift %" PRIu64
                ", latency p50 %s, p99 %s, max %s\n",
                r->drift.crashes, r->drift.detected,
                ms_text(r->drift.p50_ms, a, sizeof a),
                ms_text(r->drift.p99_ms, b, sizeof b),
                ms_text(r->drift.max_ms, e, sizeof e));
        if (r->drift.first_missed[0] != '\0') {
            fprintf(out, "  first crash not seen: %s\n",
                    r->drift.first_missed);
        }
    }
    fprintf(out, "\nnominal: %s after the last fault\n",
            r->nominal_ms < 0 ? "not seen"
                              : ms_text((double)r->nominal_ms, a, sizeof a));

    fprintf(out, "\nsteps\n");
    for (i = 0; i < r->n_steps; i++) {
        const struct drill_step_result *st = &r->steps[i];
        fprintf(out, "  %2zu %-20s %9s .. %9s%s\n", i + 1,
                scenario_step_name(st->kind),
                ms_text((double)st->start_ms, a, sizeof a),
                ms_text((double)st->end_ms, b, sizeof b),
                st->failed ? "  FAILED" : "");
    }
    if (r->error[0] != '\0') {
        fprintf(out, "  error: %s\n", r->error);
    }

    fprintf(out, "\nassertions\n");
    for (i = 0; i < r->n_verdicts; i++) {
        const struct drill_verdict *v = &r->verdicts[i];
        if (!v->passed) {
            failed++;
        }
        fprintf(out, "  %-4s %-26s %-9s %s\n", v->passed ? "PASS" : "FAIL",
                scenario_assertion_name(v->kind),
                kind_threshold(v, a, sizeof a), v->detail);
    }
    if (r->passed) {
        fprintf(out, "\nresult: PASS\n");
    } else {
        fprintf(out, "\nresult: FAIL (%zu of %zu assertions failed%s%s%s)\n",
                failed, r->n_verdicts, r->step_failed ? "; " : "",
                r->step_failed ? r->error : "",
                r->interrupted ? "; interrupted" : "");
    }
    return ferror(out) ? REMS_EIO : 0;
}

/* ------------------------------------------------------------------------
 * JSON
 * ------------------------------------------------------------------------ */

static json_t *ms_or_null(double v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)(v + 0.5));
}

static const char *role_name(uint8_t role)
{
    static const char *const names[] = {"none", "follower", "candidate",
                                        "leader"};
    return role < 4 ? names[role] : "none";
}

static const char *state_name(uint8_t state)
{
    static const char *const names[] = {"down", "running", "paused",
                                        "stopping", "remote"};
    return state < 5 ? names[state] : "unknown";
}

static json_t *build_json(const struct drill_result *r,
                          const struct scenario *s)
{
    const struct drill_commands *c = &r->commands;
    json_t *root = json_object();
    json_t *faults = json_array();
    json_t *steps = json_array();
    json_t *verdicts = json_array();
    json_t *samples = json_array();
    json_t *nodes = json_array();
    json_t *commands;
    json_t *drift;
    size_t i;
    size_t k;
    int bad = root == NULL || faults == NULL || steps == NULL ||
              verdicts == NULL || samples == NULL || nodes == NULL;

    for (i = 0; i < r->n_nodes && !bad; i++) {
        bad |= json_array_append_new(nodes, json_integer((json_int_t)
                                                             r->node_ids[i]));
    }
    for (i = 0; i < r->n_faults && !bad; i++) {
        const struct drill_fault *x = &r->faults[i];
        json_t *o = json_pack(
            "{s:s, s:I, s:b, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
            "s:I, s:I, s:o, s:o, s:o}",
            "kind", x->kind, "node", (json_int_t)x->node_id, "removed_leader",
            x->removed_leader, "at_ms", (json_int_t)x->at_ms, "end_ms",
            (json_int_t)x->end_ms, "old_leader",
            x->old_leader != 0 ? json_integer((json_int_t)x->old_leader)
                               : json_null(),
            "detection_ms", ms_or_null((double)x->detection_ms), "election_ms",
            ms_or_null((double)x->election_ms), "first_commit_ms",
            ms_or_null((double)x->first_commit_ms), "commands_resumed_ms",
            ms_or_null((double)x->commands_resumed_ms), "new_leader",
            x->new_leader != 0 ? json_integer((json_int_t)x->new_leader)
                               : json_null(),
            "new_term",
            x->new_term != 0 ? json_integer((json_int_t)x->new_term)
                             : json_null(),
            "agents_dropped", (json_int_t)x->agents_dropped,
            "agents_reconnected", (json_int_t)x->agents_reconnected,
            "reconnect_p50_ms", ms_or_null(x->reconnect_p50_ms),
            "reconnect_p99_ms", ms_or_null(x->reconnect_p99_ms),
            "reconnect_max_ms", ms_or_null(x->reconnect_max_ms));
        bad |= o == NULL || json_array_append_new(faults, o) != 0;
    }
    for (i = 0; i < r->n_steps && !bad; i++) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:b}", "kind",
                              scenario_step_name(r->steps[i].kind), "start_ms",
                              (json_int_t)r->steps[i].start_ms, "end_ms",
                              (json_int_t)r->steps[i].end_ms, "failed",
                              r->steps[i].failed);
        bad |= o == NULL || json_array_append_new(steps, o) != 0;
    }
    for (i = 0; i < r->n_verdicts && !bad; i++) {
        const struct drill_verdict *v = &r->verdicts[i];
        bool timed = v->kind == SCENARIO_ASSERT_LEADER_WITHIN_MS ||
                     v->kind == SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS ||
                     v->kind == SCENARIO_ASSERT_NOMINAL_WITHIN_MS;
        json_t *o = json_pack(
            "{s:s, s:b, s:o, s:s}", "kind", scenario_assertion_name(v->kind),
            "passed", v->passed, "threshold_ms",
            timed ? json_integer((json_int_t)v->ms) : json_null(), "detail",
            v->detail);
        bad |= o == NULL || json_array_append_new(verdicts, o) != 0;
    }
    for (i = 0; i < r->n_samples && !bad; i++) {
        const struct drill_sample *x = &r->samples[i];
        json_t *ns = json_array();
        json_t *o;
        bad |= ns == NULL;
        for (k = 0; k < r->n_nodes && !bad; k++) {
            const struct drill_node_sample *n = &x->nodes[k];
            json_t *no = json_pack("{s:s, s:s, s:I, s:o}", "state",
                                   state_name(n->state), "role",
                                   role_name(n->role), "term",
                                   (json_int_t)n->term, "leader",
                                   n->leader_id != 0
                                       ? json_integer((json_int_t)n->leader_id)
                                       : json_null());
            bad |= no == NULL || json_array_append_new(ns, no) != 0;
        }
        if (bad) {
            json_decref(ns);
            break;
        }
        o = json_pack("{s:I, s:o, s:I, s:I, s:I}", "t_ms", (json_int_t)x->t_ms,
                      "nodes", ns, "agents_connected",
                      (json_int_t)x->agents_connected, "commands_sent",
                      (json_int_t)x->commands_sent, "commands_executed",
                      (json_int_t)x->commands_executed);
        bad |= o == NULL || json_array_append_new(samples, o) != 0;
    }
    commands = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:o}",
        "sent", (json_int_t)c->sent, "issued", (json_int_t)c->issued,
        "refused", (json_int_t)c->refused, "unknown", (json_int_t)c->unknown,
        "acked", (json_int_t)c->acked, "nacked", (json_int_t)c->nacked,
        "expired", (json_int_t)c->expired, "cancelled",
        (json_int_t)c->cancelled, "lost", (json_int_t)c->lost, "duplicated",
        (json_int_t)c->duplicated, "late", (json_int_t)c->late, "executed",
        (json_int_t)c->executed, "acked_not_executed",
        (json_int_t)c->acked_not_executed, "executed_expired",
        (json_int_t)c->executed_expired, "first_problem",
        c->first_problem[0] != '\0' ? json_string(c->first_problem)
                                    : json_null());
    drift = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "crashes",
                      (json_int_t)r->drift.crashes, "detected",
                      (json_int_t)r->drift.detected, "p50_ms",
                      ms_or_null(r->drift.p50_ms), "p99_ms",
                      ms_or_null(r->drift.p99_ms), "max_ms",
                      ms_or_null(r->drift.max_ms), "first_missed",
                      r->drift.first_missed[0] != '\0'
                          ? json_string(r->drift.first_missed)
                          : json_null());
    if (bad || commands == NULL || drift == NULL) {
        json_decref(root);
        json_decref(faults);
        json_decref(steps);
        json_decref(verdicts);
        json_decref(samples);
        json_decref(nodes);
        json_decref(commands);
        json_decref(drift);
        return NULL;
    }
    bad |= json_object_set_new(root, "name", json_string(r->name));
    bad |= json_object_set_new(root, "scenario",
                               s->path != NULL ? json_string(s->path)
                                               : json_null());
    bad |= json_object_set_new(root, "seed", json_integer((json_int_t)r->seed));
    bad |= json_object_set_new(root, "nodes", nodes);
    bad |= json_object_set_new(root, "agents",
                               json_integer((json_int_t)r->n_agents));
    bad |= json_object_set_new(root, "duration_ms",
                               json_integer((json_int_t)r->duration_ms));
    bad |= json_object_set_new(root, "passed", json_boolean(r->passed));
    bad |= json_object_set_new(root, "interrupted",
                               json_boolean(r->interrupted));
    bad |= json_object_set_new(root, "step_failed",
                               json_boolean(r->step_failed));
    bad |= json_object_set_new(root, "error",
                               r->error[0] != '\0' ? json_string(r->error)
                                                   : json_null());
    bad |= json_object_set_new(root, "faults", faults);
    bad |= json_object_set_new(root, "commands", commands);
    bad |= json_object_set_new(root, "drift", drift);
    bad |= json_object_set_new(root, "nominal_ms",
                               ms_or_null((double)r->nominal_ms));
    bad |= json_object_set_new(root, "steps", steps);
    bad |= json_object_set_new(root, "assertions", verdicts);
    bad |= json_object_set_new(root, "samples", samples);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int report_json(FILE *out,
                const struct drill_result *r,
                const struct scenario *s)
{
    json_t *root = build_json(r, s);
    int rv;

    if (root == NULL) {
        return REMS_ENOMEM;
    }
    rv = json_dumpf(root, out, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rv != 0 || fputc('\n', out) == EOF || ferror(out)) {
        return REMS_EIO;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * SVG
 * ------------------------------------------------------------------------ */

#define SVG_W 1200
#define SVG_LEFT 110
#define SVG_RIGHT 30
#define SVG_LANE_H 26
#define SVG_CHART_H 110

static void svg_text(FILE *fp, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
            case '<':
                fputs("&lt;", fp);
                break;
            case '>':
                fputs("&gt;", fp);
                break;
            case '&':
                fputs("&amp;", fp);
                break;
            case '"':
                fputs("&quot;", fp);
                break;
            default:
                fputc(*s, fp);
                break;
        }
    }
}

static double xpos(uint64_t t, uint64_t t_end)
{
    double w = SVG_W - SVG_LEFT - SVG_RIGHT;
    return SVG_LEFT + (t_end == 0 ? 0 : w * (double)t / (double)t_end);
}

static const char *lane_colour(const struct drill_node_sample *n)
{
    if (n->state == 0) {
        return "#444444"; /* down */
    }
    if (n->state == 2) {
        return "#9e9e9e"; /* paused */
    }
    switch (n->role) {
        case 3:
            return "#2e7d32";
        case 2:
            return "#f9a825";
        case 1:
            return "#90caf9";
        default:
            return "#e0e0e0";
    }
}

/* A polyline of @n values, scaled to @max, in the chart at @y0. */
static void svg_series(FILE *fp,
                       const struct drill_result *r,
                       const double *v,
                       double max,
                       int y0,
                       const char *colour)
{
    size_t i;

    fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                "points=\"",
            colour);
    for (i = 0; i < r->n_samples; i++) {
        double y = y0 + SVG_CHART_H - (max > 0 ? v[i] / max : 0) * SVG_CHART_H;
        fprintf(fp, "%.1f,%.1f ", xpos(r->samples[i].t_ms, r->duration_ms), y);
    }
    fprintf(fp, "\"/>\n");
}

int report_svg(const char *path, const struct drill_result *r)
{
    char tmp[4096];
    FILE *fp;
    double *agents = NULL;
    double *rate = NULL;
    double max_agents = 1;
    double max_rate = 1;
    uint64_t t_end = r->duration_ms > 0 ? r->duration_ms : 1;
    int lanes_y = 60;
    int chart1_y;
    int chart2_y;
    int height;
    size_t i;
    size_t k;
    int rv = 0;

    if (strlen(path) + 5 > sizeof tmp) {
        return REMS_EIO;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (r->n_samples > 0) {
        agents = rems_malloc(r->n_samples * sizeof *agents);
        rate = rems_malloc(r->n_samples * sizeof *rate);
        if (agents == NULL || rate == NULL) {
            rems_free(agents);
            rems_free(rate);
            return REMS_ENOMEM;
        }
    }
    for (i = 0; i < r->n_samples; i++) {
        const struct drill_sample *x = &r->samples[i];
        agents[i] = (double)x->agents_connected;
        rate[i] = 0;
        if (i > 0 && x->t_ms > r->samples[i - 1].t_ms) {
            rate[i] = (double)(x->commands_executed -
                               r->samples[i - 1].commands_executed) *
                      1000.0 / (double)(x->t_ms - r->samples[i - 1].t_ms);
        }
        if (agents[i] > max_agents) {
            max_agents = agents[i];
        }
        if (rate[i] > max_rate) {
            max_rate = rate[i];
        }
    }
    chart1_y = lanes_y + (int)r->n_nodes * SVG_LANE_H + 40;
    chart2_y = chart1_y + SVG_CHART_H + 40;
    height = chart2_y + SVG_CHART_H + 70;

    fp = fopen(tmp, "w");
    if (fp == NULL) {
        rems_free(agents);
        rems_free(rate);
        return REMS_EIO;
    }
    fprintf(fp,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
            "height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"10\" y=\"22\" font-size=\"16\">rems-sim drill ",
            SVG_W, height);
    svg_text(fp, r->name);
    fprintf(fp,
            " (seed %" PRIu64 ", %zu nodes, %zu agents, %s)</text>\n",
            r->seed, r->n_nodes, r->n_agents, r->passed ? "PASS" : "FAIL");
    /* Time axis. */
    for (k = 0; k <= t_end / 1000; k += (t_end / 1000 > 60 ? 10 : 5)) {
        double x = xpos(k * 1000, t_end);
        fprintf(fp,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                "stroke=\"#eeeeee\"/>\n<text x=\"%.1f\" y=\"%d\" "
                "text-anchor=\"middle\" fill=\"#666\">%zu s</text>\n",
                x, lanes_y - 10, x, chart2_y + SVG_CHART_H, x,
                chart2_y + SVG_CHART_H + 16, k);
    }
    /* Node lanes. */
    for (k = 0; k < r->n_nodes; k++) {
        int y = lanes_y + (int)k * SVG_LANE_H;
        uint64_t last_term = 0;
        fprintf(fp, "<text x=\"10\" y=\"%d\">node %" PRIu64 "</text>\n",
                y + 16, r->node_ids[k]);
        for (i = 0; i < r->n_samples; i++) {
            const struct drill_node_sample *n = &r->samples[i].nodes[k];
            double x0 = xpos(r->samples[i].t_ms, t_end);
            double x1 = i + 1 < r->n_samples
                            ? xpos(r->samples[i + 1].t_ms, t_end)
                            : xpos(t_end, t_end);
            fprintf(fp,
                    "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                    "fill=\"%s\"/>\n",
                    x0, y, x1 - x0 + 0.3, SVG_LANE_H - 6, lane_colour(n));
            if (n->term != 0 && n->term != last_term && n->role != 0) {
                fprintf(fp,
                        "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">t%" PRIu64
                        "</text>\n",
                        x0 + 2, y + 14, n->term);
                last_term = n->term;
            }
        }
    }
    /* Charts. */
    fprintf(fp,
            "<text x=\"10\" y=\"%d\">agents connected (max %.0f)</text>\n"
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#cccccc\"/>\n",
            chart1_y - 6, max_agents, SVG_LEFT, chart1_y,
            SVG_W - SVG_LEFT - SVG_RIGHT, SVG_CHART_H);
    if (r->n_samples > 0) {
        svg_series(fp, r, agents, max_agents, chart1_y, "#1565c0");
    }
    fprintf(fp,
            "<text x=\"10\" y=\"%d\">commands executed per second (max "
            "%.0f)</text>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
            "fill=\"none\" stroke=\"#cccccc\"/>\n",
            chart2_y - 6, max_rate, SVG_LEFT, chart2_y,
            SVG_W - SVG_LEFT - SVG_RIGHT, SVG_CHART_H);
    if (r->n_samples > 0) {
        svg_series(fp, r, rate, max_rate, chart2_y, "#6a1b9a");
    }
    /* Steps and faults. */
    for (i = 0; i < r->n_steps; i++) {
        double x = xpos(r->steps[i].start_ms, t_end);
        fprintf(fp,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                "stroke=\"#bbbbbb\" stroke-dasharray=\"2,3\"/>\n",
                x, lanes_y - 8, x, chart2_y + SVG_CHART_H);
    }
    for (i = 0; i < r->n_faults; i++) {
        const struct drill_fault *x = &r->faults[i];
        double px = xpos(x->at_ms, t_end);
        fprintf(fp,
                "<g class=\"fault\"><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                "y2=\"%d\" stroke=\"#c62828\" stroke-width=\"2\"/>"
                "<text x=\"%.1f\" y=\"%d\" fill=\"#c62828\" font-size=\"11\">",
                px, lanes_y - 14, px, chart2_y + SVG_CHART_H, px + 3,
                lanes_y - 16 + (int)(i % 2) * 0);
        svg_text(fp, x->kind);
        if (x->node_id != 0) {
            fprintf(fp, " %" PRIu64, x->node_id);
        }
        fprintf(fp, "</text></g>\n");
    }
    /* Legend. */
    {
        static const struct {
            const char *label;
            const char *colour;
        } legend[] = {{"leader", "#2e7d32"},    {"follower", "#90caf9"},
                      {"candidate", "#f9a825"}, {"no answer", "#e0e0e0"},
                      {"paused", "#9e9e9e"},    {"down", "#444444"},
                      {"fault", "#c62828"}};
        int y = height - 22;
        for (k = 0; k < sizeof legend / sizeof legend[0]; k++) {
            int x = SVG_LEFT + (int)k * 110;
            fprintf(fp,
                    "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" "
                    "fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                    x, y, legend[k].colour, x + 16, y + 11, legend[k].label);
        }
    }
    fprintf(fp, "</svg>\n");
    rems_free(agents);
    rems_free(rate);
    if (ferror(fp)) {
        rv = REMS_EIO;
    }
    if (fclose(fp) != 0) {
        rv = REMS_EIO;
    }
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = REMS_EIO;
    }
    if (rv != 0) {
        remove(tmp);
    }
    return rv;
}
