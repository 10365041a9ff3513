/* api: the admin HTTP API of a remsd node.
 *
 * The only api/ header other modules and remsd's main may include. The
 * server binds first (so a taken port fails before the data dir is
 * touched), then serves once a cluster node is attached; until then every
 * call but /healthz answers 503. Loop thread only. */
#ifndef REMS_API_API_H
#define REMS_API_API_H

#include <uv.h>

#include "cluster/cluster.h"
#include "cluster/config.h"
#include "common/error.h"

struct api_server;

/* Bind @cfg->api_address and listen. REMS_EADDRINUSE when taken. */
int api_server_start(uv_loop_t *loop,
                     const struct config *cfg,
                     struct api_server **out,
                     char *errmsg);

/* Serve the cluster through @node (borrowed; NULL detaches). */
void api_server_attach(struct api_server *s, struct cluster_node *node);

typedef void (*api_close_cb)(void *data);

/* Stop listening and close every connection; @cb runs when done. */
void api_server_stop(struct api_server *s, api_close_cb cb, void *data);

#endif /* REMS_API_API_H */
