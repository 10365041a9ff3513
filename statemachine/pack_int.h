/* statemachine/pack_int.h: MessagePack writing helpers shared by entry.c
 * and apply.c. Private to statemachine/. */
#ifndef REMS_STATEMACHINE_PACK_INT_H
#define REMS_STATEMACHINE_PACK_INT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

/* A str; NULL packs as "". */
void statemachine__pack_str(msgpack_packer *pk, const char *s, size_t len);

/* A str key then a str value (NULL value packs as ""). */
void statemachine__pack_kv_str(msgpack_packer *pk,
                               const char *k,
                               const char *s,
                               size_t len);

/* A str key then an unsigned value. */
void statemachine__pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v);

/* A str key then a bin value (NULL packs as empty). */
void statemachine__pack_kv_bin(msgpack_packer *pk,
                               const char *k,
                               const void *v,
                               size_t len);

/* A policies record: [value (bin), revision, created_index,
 * modified_index]. */
void statemachine__pack_policy(msgpack_packer *pk,
                               const void *value,
                               size_t value_len,
                               uint64_t revision,
                               uint64_t created_index,
                               uint64_t modified_index);

/* Store the bytes of @b (then closed) under @key in @table; REMS_ENOMEM
 * when building @b failed. */
struct rems_buf;
int statemachine__buf_put(struct storage_txn *t,
                          enum storage_table table,
                          const void *key,
                          size_t klen,
                          struct rems_buf *b,
                          char *errmsg);

#endif /* REMS_STATEMACHINE_PACK_INT_H */
