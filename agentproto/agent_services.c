/* agentproto/agent_services.c: struct agent_services on the supervisor.
 *
 * Most operations are one supervisor call. push_manifest of the whole
 * manifest is a small sequence: everything is parsed and checked before
 * the first change (so a bad manifest changes nothing and the link may
 * forget the command), then the puts (synchronous), then the removals,
 * one at a time, each started from the callback of the previous one; the
 * last callback reports to the link. A failure after the first change is
 * reported through the callback, not the return value: something was done.
 *
 * Manifests are JSON (jansson); each service object is dumped back to
 * text for sup_spec_parse_json(), the one parser of a service. */
#include "agentproto/agent_services.h"

#include <jansson.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"

/* The result of a push, for the ack: at most this long. */
#define SUMMARY_MAX 1024

static struct supervisor *sup_of(void *impl)
{
    return impl;
}

static int op_status(void *impl, struct proto_service **items, size_t *n)
{
    return supervisor_status(sup_of(impl), items, n);
}

static int op_action(void *impl,
                     const char *service,
                     int action,
                     uint64_t timeout_ms,
                     agent_services_done_cb cb,
                     void *data,
                     char *errmsg)
{
    int a;

    switch (action) {
        case PROTO_ACTION_START:
            a = SUP_ACTION_START;
            break;
        case PROTO_ACTION_STOP:
            a = SUP_ACTION_STOP;
            break;
        case PROTO_ACTION_RESTART:
            a = SUP_ACTION_RESTART;
            break;
        case PROTO_ACTION_PAUSE:
            a = SUP_ACTION_PAUSE;
            break;
        case PROTO_ACTION_RESUME:
            a = SUP_ACTION_RESUME;
            break;
        case PROTO_ACTION_QUARANTINE:
            a = SUP_ACTION_QUARANTINE;
            break;
        default:
            rems_errmsgf(errmsg, "action %s is not a service action",
                         proto_action_name(action));
            return REMS_EINVAL;
    }
    return supervisor_action(sup_of(impl), service, a, timeout_ms, cb, data,
                             errmsg);
}

static int op_diagnostics(void *impl,
                          const char *service,
                          unsigned lines,
                          struct rems_buf *out,
                          char *errmsg)
{
    return supervisor_diagnostics(sup_of(impl), service, lines, out, errmsg);
}

static void op_safe_state(void *impl)
{
    supervisor_enter_safe_state(sup_of(impl));
}

/* ------------------------------------------------------------------------
 * push_manifest
 * ------------------------------------------------------------------------ */

/* A whole-manifest push in progress: the removals left. */
struct push_op {
    struct supervisor *sup;
    agent_services_done_cb cb;
    void *data;
    char **remove; /* Names, dependents first. */
    size_t n_remove;
    size_t next;
    struct rems_buf summary;
};

static void push_op_free(struct push_op *op)
{
    size_t i;

    for (i = 0; i < op->n_remove; i++) {
        rems_free(op->remove[i]);
    }
    rems_free(op->remove);
    rems_buf_close(&op->summary);
    rems_free(op);
}

/* Finish: report to the link and free @op. */
static void push_op_done(struct push_op *op, int status, const char *msg)
{
    agent_services_done_cb cb = op->cb;
    void *data = op->data;
    char text[SUMMARY_MAX + 1];

    snprintf(text, sizeof text, "%s",
             msg != NULL ? msg
                         : (op->summary.data != NULL ? op->summary.data : ""));
    push_op_free(op);
    cb(data, status, text);
}

static void push_remove_next(struct push_op *op);

static void on_removed(void *data, int status, const char *msg)
{
    struct push_op *op = data;
    char text[SUMMARY_MAX + 1];

    if (status != 0 && status != REMS_ENOTFOUND) {
        snprintf(text, sizeof text, "remove %s: %s (after %s)",
                 op->remove[op->next], msg != NULL ? msg : "failed",
                 op->summary.data != NULL ? op->summary.data : "nothing");
        push_op_done(op, status == REMS_EBUSY ? REMS_EIO : status, text);
        return;
    }
    rems_buf_printf(&op->summary, "%s%s", op->next == 0 ? "; removed " : ", ",
                    op->remove[op->next]);
    op->next++;
    push_remove_next(op);
}

static void push_remove_next(struct push_op *op)
{
    char errmsg[REMS_ERRMSG_SIZE];
    char text[SUMMARY_MAX + 1];
    int rv;

    if (op->next == op->n_remove) {
        if (op->summary.failed) {
            push_op_done(op, 0, "done (summary too long)");
        } else {
            push_op_done(op, 0, NULL);
        }
        return;
    }
    rv = supervisor_remove(op->sup, op->remove[op->next], on_removed, op,
                           errmsg);
    if (rv != 0) {
        snprintf(text, sizeof text, "remove %s: %s", op->remove[op->next],
                 errmsg);
        push_op_done(op, rv, text);
    }
}

/* One service object of a manifest, dumped and parsed. */
static int spec_from_json(const json_t *obj,
                          const char *where,
                          struct sup_service_spec **out,
                          char *errmsg)
{
    char msg[REMS_ERRMSG_SIZE];
    size_t len;
    char *text;
    int rv;

    if (!json_is_object(obj)) {
        rems_errmsgf(errmsg, "manifest: %s: must be an object (a service)",
                     where);
        return REMS_EINVAL;
    }
    len = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    text = rems_malloc(len + 1);
    if (len == 0 || text == NULL) {
        rems_free(text);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    json_dumpb(obj, text, len, JSON_COMPACT);
    text[len] = '\0';
    rv = sup_spec_parse_json(text, len, out, msg);
    rems_free(text);
    if (rv == REMS_ENOMEM) {
        rems_errmsg_oom(errmsg);
    } else if (rv != 0) {
        rems_errmsgf(errmsg, "manifest: %s: %s", where, msg);
        rv = REMS_EINVAL;
    }
    return rv;
}

static int push_one(struct supervisor *sup,
                    const char *service,
                    const char *manifest,
                    size_t len,
                    agent_services_done_cb cb,
                    void *data,
                    char *errmsg)
{
    struct sup_service_spec *spec;
    char msg[REMS_ERRMSG_SIZE];
    char text[SUMMARY_MAX + 1];
    int rv;

    rv = sup_spec_parse_json(manifest, len, &spec, msg);
    if (rv == REMS_ENOMEM) {
        rems_errmsg_oom(errmsg);
        return rv;
    }
    if (rv != 0) {
        rems_errmsgf(errmsg, "manifest: %s", msg);
        return REMS_EINVAL;
    }
    if (strcmp(spec->name, service) != 0) {
        rems_errmsgf(errmsg,
                     "manifest: describes service \"%s\", the command names "
                     "\"%s\"",
                     spec->name, service);
        sup_spec_free(spec);
        return REMS_EINVAL;
    }
    rv = supervisor_put(sup, spec, msg);
    if (rv != 0) {
        rems_errmsgf(errmsg, "put %s: %s", service, msg);
        sup_spec_free(spec);
        return rv;
    }
    /* A new autostart service comes up as it would from the
     * configuration. */
    (void)supervisor_autostart_new(sup, spec->name);
    snprintf(text, sizeof text, "put %s", spec->name);
    sup_spec_free(spec);
    cb(data, 0, text);
    return 0;
}

/* The services of the manifest document @root, checked and ordered. */
static int manifest_specs(const json_t *root,
                          struct sup_service_spec ***out_specs,
                          size_t **out_order,
                          size_t *out_n,
                          char *errmsg)
{
    struct sup_service_spec **specs;
    const json_t *list = root;
    char where[32];
    char msg[REMS_ERRMSG_SIZE];
    size_t *order;
    size_t n;
    size_t i;
    size_t j;
    int rv;

    if (json_is_object(root)) {
        list = json_object_get(root, "services");
        if (json_object_size(root) != 1) {
            list = NULL;
        }
    }
    if (!json_is_array(list)) {
        rems_errmsgf(errmsg, "manifest: must be an array of services or an "
                             "object {\"services\": [...]}");
        return REMS_EINVAL;
    }
    n = json_array_size(list);
    if (n > PROTO_ITEMS_MAX) {
        rems_errmsgf(errmsg, "manifest: %zu services, at most %d allowed", n,
                     PROTO_ITEMS_MAX);
        return REMS_EINVAL;
    }
    specs = rems_calloc(n + 1, sizeof *specs);
    order = rems_calloc(n + 1, sizeof *order);
    if (specs == NULL || order == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    for (i = 0; i < n; i++) {
        snprintf(where, sizeof where, "services[%zu]", i);
        rv = spec_from_json(json_array_get(list, i), where, &specs[i], errmsg);
        if (rv != 0) {
            goto err_after_alloc;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(specs[i]->name, specs[j]->name) == 0) {
                rems_errmsgf(errmsg,
                             "manifest: services[%zu]: service \"%s\" is also "
                             "services[%zu]",
                             i, specs[i]->name, j);
                rv = REMS_EINVAL;
                goto err_after_alloc;
            }
        }
    }
    rv = sup_spec_order((const struct sup_service_spec *const *)specs, n, order,
                        msg);
    if (rv != 0) {
        if (rv == REMS_ENOMEM) {
            rems_errmsg_oom(errmsg);
        } else {
            rems_errmsgf(errmsg, "manifest: %s", msg);
            rv = REMS_EINVAL;
        }
        goto err_after_alloc;
    }

    *out_specs = specs;
    *out_order = order;
    *out_n = n;
    return 0;

err_after_alloc:
    for (i = 0; specs != NULL && i < n; i++) {
        sup_spec_free(specs[i]);
    }
    rems_free(specs);
    rems_free(order);
    POST(rv != 0);
    return rv;
}

/* The services that run now and are not among @specs, dependents first. */
static int removals(struct push_op *op,
                    struct sup_service_spec *const *specs,
                    size_t n,
                    char *errmsg)
{
    struct proto_service *items;
    size_t n_items;
    size_t i;
    size_t j;
    int rv;

    rv = supervisor_status(op->sup, &items, &n_items);
    if (rv != 0) {
        rems_errmsgf(errmsg, "status: %s", rems_strerror(rv));
        return rv;
    }
    op->remove = rems_calloc(n_items + 1, sizeof *op->remove);
    if (op->remove == NULL) {
        rems_free(items);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    /* The status comes in dependency order: walk it backwards. */
    for (i = n_items; i > 0; i--) {
        const struct proto_service *it = &items[i - 1];
        bool keep = false;
        for (j = 0; j < n && !keep; j++) {
            keep = strlen(specs[j]->name) == it->service.len &&
                   memcmp(specs[j]->name, it->service.p, it->service.len) == 0;
        }
        if (keep) {
            continue;
        }
        op->remove[op->n_remove] = rems_strndup(it->service.p, it->service.len);
        if (op->remove[op->n_remove] == NULL) {
            rems_free(items);
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
        op->n_remove++;
    }
    rems_free(items);
    return 0;
}

static int push_all(struct supervisor *sup,
                    const char *manifest,
                    size_t len,
                    agent_services_done_cb cb,
                    void *data,
                    char *errmsg)
{
    struct sup_service_spec **specs = NULL;
    struct push_op *op;
    json_error_t jerr;
    json_t *root;
    char msg[REMS_ERRMSG_SIZE];
    char text[SUMMARY_MAX + 1];
    size_t *order = NULL;
    size_t n = 0;
    size_t i;
    int rv;

    root = json_loadb(manifest, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rems_errmsgf(errmsg, "manifest: invalid JSON at line %d: %s", jerr.line,
                     jerr.text);
        rv = REMS_EINVAL;
        goto err;
    }
    rv = manifest_specs(root, &specs, &order, &n, errmsg);
    json_decref(root);
    if (rv != 0) {
        goto err;
    }
    op = rems_calloc(1, sizeof *op);
    if (op == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_specs;
    }
    op->sup = sup;
    op->cb = cb;
    op->data = data;
    rems_buf_init(&op->summary);
    rv = removals(op, specs, n, errmsg);
    if (rv != 0) {
        goto err_after_op;
    }
    rems_buf_printf(&op->summary, "put");
    for (i = 0; i < n; i++) {
        const struct sup_service_spec *spec = specs[order[i]];
        rv = supervisor_put(sup, spec, msg);
        if (rv != 0 && i == 0) {
            rems_errmsgf(errmsg, "put %s: %s", spec->name, msg);
            goto err_after_op;
        }
        if (rv != 0) {
            /* Some services changed already: the outcome goes to @cb. */
            snprintf(text, sizeof text, "put %s: %s (after %s)", spec->name,
                     msg, op->summary.data != NULL ? op->summary.data : "");
            push_op_done(op, rv == REMS_EBUSY ? REMS_EIO : rv, text);
            goto done;
        }
        rems_buf_printf(&op->summary, "%s %s", i == 0 ? "" : ",", spec->name);
    }
    /* New autostart services come up as they would from the
     * configuration (in dependency order: the supervisor waits). */
    for (i = 0; i < n; i++) {
        (void)supervisor_autostart_new(sup, specs[order[i]]->name);
    }
    if (n == 0) {
        rems_buf_printf(&op->summary, " nothing");
    }
    push_remove_next(op);

done:
    for (i = 0; i < n; i++) {
        sup_spec_free(specs[i]);
    }
    rems_free(specs);
    rems_free(order);
    return 0;

err_after_op:
    push_op_free(op);
err_after_specs:
    for (i = 0; i < n; i++) {
        sup_spec_free(specs[i]);
    }
    rems_free(specs);
    rems_free(order);
err:
    POST(rv != 0);
    return rv;
}

static int op_push_manifest(void *impl,
                            const char *service,
                            const char *manifest,
                            size_t len,
                            agent_services_done_cb cb,
                            void *data,
                            char *errmsg)
{
    if (service[0] != '\0') {
        return push_one(sup_of(impl), service, manifest, len, cb, data, errmsg);
    }
    return push_all(sup_of(impl), manifest, len, cb, data, errmsg);
}

static const struct agent_services_ops supervisor_ops = {
    .status = op_status,
    .action = op_action,
    .push_manifest = op_push_manifest,
    .diagnostics = op_diagnostics,
    .safe_state = op_safe_state,
};

void agent_services_supervisor(struct supervisor *sup,
                               struct agent_services *out)
{
    PRE(sup != NULL && out != NULL);
    out->ops = &supervisor_ops;
    out->impl = sup;
}
