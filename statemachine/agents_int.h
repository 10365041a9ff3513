/* statemachine/agents_int.h: apply functions of agent, lease and command
 * entries, called by statemachine_apply(). Private to statemachine/. */
#ifndef REMS_STATEMACHINE_AGENTS_INT_H
#define REMS_STATEMACHINE_AGENTS_INT_H

#include "statemachine/statemachine.h"

/* AGENT_REGISTER and AGENT_REPORT. */
int statemachine__apply_agent(struct storage_txn *t,
                              uint64_t index,
                              const struct statemachine_entry *e,
                              struct statemachine_result *res,
                              char *errmsg);

/* LEASE_GRANT and LEASE_REVOKE. */
int statemachine__apply_lease(struct storage_txn *t,
                              uint64_t index,
                              const struct statemachine_entry *e,
                              struct statemachine_result *res,
                              char *errmsg);

/* COMMAND_ISSUE and COMMAND_RESOLVE. */
int statemachine__apply_command(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                struct statemachine_result *res,
                                char *errmsg);

#endif /* REMS_STATEMACHINE_AGENTS_INT_H */
