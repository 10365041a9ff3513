/* statemachine/reconcile_int.h: decoding, checks and apply of the
 * reconciler's entries and of the remediation record a command carries,
 * called by entry.c, apply.c and agents.c. Private to statemachine/. */
#ifndef REMS_STATEMACHINE_RECONCILE_INT_H
#define REMS_STATEMACHINE_RECONCILE_INT_H

#include "common/mpread.h"
#include "statemachine/statemachine.h"

/* Read the body field @k of the reconciler's entries (or a command's
 * "record") into @e: 0, REMS_EMALFORMED naming it, or REMS_ENOTFOUND when
 * @k is not one of them (nothing read). */
int statemachine__decode_reconcile_field(struct mpread *r,
                                         const char *k,
                                         size_t kl,
                                         struct statemachine_entry *e,
                                         char *errmsg);

/* The rules of the reconciler's entries and of a COMMAND_ISSUE's record:
 * 0 or REMS_EMALFORMED naming the field. */
int statemachine__check_reconcile_body(const struct statemachine_entry *e,
                                       char *errmsg);

/* Apply INCIDENT_*, OVERRIDE_*, WINDOW_* and RECORD_RESET. */
int statemachine__apply_reconcile(struct storage_txn *t,
                                  uint64_t index,
                                  const struct statemachine_entry *e,
                                  struct statemachine_result *res,
                                  char *errmsg);

/* COMMAND_ISSUE with a record, applied at @index: store the record. */
int statemachine__record_issue(struct storage_txn *t,
                               uint64_t index,
                               const struct statemachine_entry *e,
                               char *errmsg);

/* COMMAND_RESOLVE at @index of command @command_id of (@agent, @service)
 * ending in @state: update the record pending on it, if any. */
int statemachine__record_resolve(struct storage_txn *t,
                                 uint64_t index,
                                 const char *agent,
                                 size_t agent_len,
                                 const char *service,
                                 size_t service_len,
                                 const char *command_id,
                                 size_t command_id_len,
                                 int state,
                                 char *errmsg);

/* The audit key of a reconciler entry applied at @index ("incident/7",
 * "override/service/web@a1", "window/nightly") into @buf; returns its
 * length (truncated to @size - 1). */
size_t statemachine__audit_key(const struct statemachine_entry *e,
                               uint64_t index,
                               char *buf,
                               size_t size);

#endif /* REMS_STATEMACHINE_RECONCILE_INT_H */
