/* statemachine/rollout_int.h: decoding, checks and apply of ROLLOUT_UPDATE
 * and the rollout part of POLICY_PUT and POLICY_DELETE, called by entry.c
 * and apply.c. Private to statemachine/. */
#ifndef REMS_STATEMACHINE_ROLLOUT_INT_H
#define REMS_STATEMACHINE_ROLLOUT_INT_H

#include "common/mpread.h"
#include "statemachine/statemachine.h"

/* Read the body field @k of ROLLOUT_UPDATE (target_revision, stage,
 * batch) into @e: 0, REMS_EMALFORMED naming it, or REMS_ENOTFOUND when @k
 * is not one of them (nothing read). */
int statemachine__decode_rollout_field(struct mpread *r,
                                       const char *k,
                                       size_t kl,
                                       struct statemachine_entry *e,
                                       char *errmsg);

/* The rules of a ROLLOUT_UPDATE body (@have_key, @have_value: whether
 * the body had them): 0 or REMS_EMALFORMED naming the field. */
int statemachine__check_rollout_body(const struct statemachine_entry *e,
                                     bool have_key,
                                     bool have_value,
                                     char *errmsg);

/* Apply ROLLOUT_UPDATE at @index. */
int statemachine__apply_rollout(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                struct statemachine_result *res,
                                char *errmsg);

/* A POLICY_PUT at @index whose condition held, before the policy is
 * written: store the key's new rollout. @cur is the key's policy, or NULL
 * for a new key; its strings are not used after this returns (the write
 * may move them). */
int statemachine__rollout_start(struct storage_txn *t,
                                uint64_t index,
                                const struct statemachine_entry *e,
                                const struct statemachine_policy *cur,
                                char *errmsg);

/* A POLICY_DELETE of @key: remove its rollout, if any. */
int statemachine__rollout_remove(struct storage_txn *t,
                                 const char *key,
                                 size_t key_len,
                                 char *errmsg);

#endif /* REMS_STATEMACHINE_ROLLOUT_INT_H */
