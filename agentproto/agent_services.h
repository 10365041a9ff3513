/* agentproto/agent_services.h: the agent link's services, backed by the
 * process supervisor (agentproto/supervisor.h).
 *
 * push_manifest takes the manifest JSON of docs/protocol.md:
 * - with a service: one service object (docs/agent-config.md, "services"),
 *   whose name must be the command's service; it is added or replaces the
 *   service of that name (a running service restarts with it);
 * - without: the agent's whole manifest, an array of service objects or an
 *   object {"services": [...]}. Every service is checked first (each one
 *   parses, names are unique, dependencies are known and acyclic); then
 *   each is put, in dependency order, and the services the manifest leaves
 *   out are removed (stopped and forgotten), dependents first. The ack's
 *   result says what was put and removed.
 * A manifest that breaks a rule changes nothing.
 *
 * Loop thread only. */
#ifndef REMS_AGENTPROTO_AGENT_SERVICES_H
#define REMS_AGENTPROTO_AGENT_SERVICES_H

#include "agentproto/agent_link.h"
#include "agentproto/supervisor.h"

/* Fill @out with the operations on @sup (borrowed; it must outlive every
 * link that uses @out). */
void agent_services_supervisor(struct supervisor *sup,
                               struct agent_services *out);

#endif /* REMS_AGENTPROTO_AGENT_SERVICES_H */
