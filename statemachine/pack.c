/* MessagePack writing helpers; see pack_int.h. */
#include <string.h>

#include "common/mpread.h"
#include "statemachine/pack_int.h"

void statemachine__pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (s == NULL) {
        s = "";
        len = 0;
    }
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void statemachine__pack_kv_str(msgpack_packer *pk,
                               const char *k,
                               const char *s,
                               size_t len)
{
    statemachine__pack_str(pk, k, strlen(k));
    statemachine__pack_str(pk, s, len);
}

void statemachine__pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    statemachine__pack_str(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

void statemachine__pack_kv_bin(msgpack_packer *pk,
                               const char *k,
                               const void *v,
                               size_t len)
{
    statemachine__pack_str(pk, k, strlen(k));
    if (v == NULL) {
        v = "";
        len = 0;
    }
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, v, len);
}

void statemachine__pack_policy(msgpack_packer *pk,
                               const void *value,
                               size_t value_len,
                               uint64_t revision,
                               uint64_t created_index,
                               uint64_t modified_index)
{
    if (value == NULL) {
        value = "";
        value_len = 0;
    }
    msgpack_pack_array(pk, 4);
    msgpack_pack_bin(pk, value_len);
    msgpack_pack_bin_body(pk, value, value_len);
    msgpack_pack_uint64(pk, revision);
    msgpack_pack_uint64(pk, created_index);
    msgpack_pack_uint64(pk, modified_index);
}

int statemachine__buf_put(struct storage_txn *t,
                   enum storage_table table,
                   const void *key,
                   size_t klen,
                   struct rems_buf *b,
                   char *errmsg)
{
    int rv;
    if (b->failed) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
    } else {
        rv = storage_put(t, table, key, klen, b->data, b->len, errmsg);
    }
    rems_buf_close(b);
    return rv;
}
