/* cluster/reconciler.h: reconcile passes over a state store, as the
 * leader's loop runs them (cluster/reconciler.c), without a node: for
 * tools and benchmarks.
 *
 *   reconciler_open(&r, errmsg);
 *   reconciler_pass(r, store, &cfg, now_ms, &out, errmsg);   (repeat)
 *   reconciler_close(r);
 *
 * A pass reads every table the reconciler needs in one read transaction
 * (policies, rollouts, agents, remediation records, overrides, windows,
 * open incidents, the reconciler's commands of the rate window), decodes
 * what changed since the previous pass of @r (policies by revision, agents
 * by updated_index; the rest is cached), and runs reconcile_pass()
 * (cluster/reconcile.h) with @cfg's reconciler keys. It proposes nothing.
 *
 * One thread at a time per reconciler. */
#ifndef REMS_CLUSTER_RECONCILER_H
#define REMS_CLUSTER_RECONCILER_H

#include <stdint.h>

#include "cluster/config.h"
#include "cluster/reconcile.h"
#include "storage/storage.h"

struct cluster_reconciler;

/* 0 and *@out, or REMS_ENOMEM. */
int reconciler_open(struct cluster_reconciler **out, char *errmsg);

/* Release @r and its caches; NULL is a no-op. */
void reconciler_close(struct cluster_reconciler *r);

/* One pass over @store at @now_ms. 0 and *@out (borrowed: valid until the
 * next pass or the close of @r), REMS_ENOMEM, or a storage error
 * (REMS_EIO, REMS_ECORRUPT naming the record). */
int reconciler_pass(struct cluster_reconciler *r,
                    struct storage *store,
                    const struct config *cfg,
                    uint64_t now_ms,
                    const struct reconcile_output **out,
                    char *errmsg);

#endif /* REMS_CLUSTER_RECONCILER_H */
