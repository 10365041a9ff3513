/* cluster/faults.h: the fault-injection switch of a node, for drills and
 * tests (docs/api.md, "Fault injection"). A node started with
 * fault_injection cuts its raft traffic to and from the peers in its
 * blocked set: connections to them fail, connections from them are closed
 * when they arrive, and the connections open when a peer becomes blocked
 * are cut. The set is local to the node, never replicated and empty at
 * start. Without fault_injection the node runs the plain transport and
 * these calls refuse. Loop thread only. */
#ifndef REMS_CLUSTER_FAULTS_H
#define REMS_CLUSTER_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "common/error.h"

/* Most peers one node may block at once. */
#define CLUSTER_FAULTS_MAX_BLOCKED 16

/* True when @n runs with fault_injection. */
bool cluster_node_faults_enabled(const struct cluster_node *n);

/* Copy @n's blocked peer ids, ascending, into @out and return how many
 * there are (0 without fault_injection). */
size_t cluster_node_faults_get(const struct cluster_node *n,
                               uint64_t out[CLUSTER_FAULTS_MAX_BLOCKED]);

/* Replace @n's blocked set with the @n_ids ids at @ids (borrowed; copied,
 * duplicates merged; 0 ids clears it), cut the open connections to and
 * from the peers that became blocked, and log the change (event
 * "faults_set"). Returns 0; REMS_EUNSUPPORTED without fault_injection;
 * REMS_EINVAL for an id of 0, the node's own id or more than
 * CLUSTER_FAULTS_MAX_BLOCKED ids, with the set unchanged and the cause in
 * @errmsg. */
int cluster_node_faults_set(struct cluster_node *n,
                            const uint64_t *ids,
                            size_t n_ids,
                            char *errmsg);

#endif /* REMS_CLUSTER_FAULTS_H */
