/* storage: the replicated state machine's tables on LMDB.
 *
 * The only storage/ header other modules may include. One handle owns one
 * LMDB environment in a generation directory below the node's state
 * directory:
 *
 *   <dir>/CURRENT         names the live generation ("state-3")
 *   <dir>/state-3/        data.mdb, lock.mdb
 *   <dir>/CLEAN           present only between a clean close and the next open
 *
 * storage_replace() installs a snapshot image as a new generation and flips
 * CURRENT with rename(2), so a crash leaves either the old or the new state,
 * never a mix.
 *
 * Durability: the environment runs with MDB_NOSYNC because the raft log is
 * the durable record; storage_close() flushes. A process crash loses
 * nothing (the OS has the pages). No periodic flush runs: an fdatasync of
 * the map while the loop commits stalled commits by up to 100 ms. After an
 * operating-system crash the image may be torn: storage_open() detects that
 * (no CLEAN marker and a different boot id) and starts from an empty
 * generation, which raft then rebuilds from its snapshot and log; the caller
 * sees it through storage_was_reset().
 *
 * Unless a comment says otherwise, call these functions on one thread (the
 * loop thread). Read transactions may be used on other threads. */
#ifndef REMS_STORAGE_STORAGE_H
#define REMS_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define STORAGE_DEFAULT_MAP_SIZE ((size_t)1 << 30) /* 1 GiB */

enum storage_table {
    STORAGE_META,         /* Small named values ("last_applied", ...). */
    STORAGE_POLICIES,     /* Policy key -> record. */
    STORAGE_AUDIT,        /* Big-endian index -> audit record. */
    STORAGE_REQUESTS,     /* Request id -> first result. */
    STORAGE_REQIDX,       /* Big-endian index -> request id (for pruning). */
    STORAGE_MEMBERS,      /* Big-endian node id -> member record. */
    STORAGE_AGENTS,       /* Agent id -> agent record. */
    STORAGE_LEASES,       /* Agent id -> lease record. */
    STORAGE_COMMANDS,     /* Command id -> command record. */
    STORAGE_PENDING,      /* Command id -> big-endian issue index (pending). */
    STORAGE_REMEDIATIONS, /* agent id \0 service -> remediation record. */
    STORAGE_INCIDENTS,    /* Big-endian incident id -> incident record. */
    STORAGE_OVERRIDES,    /* scope byte, name \0 agent -> override. */
    STORAGE_WINDOWS,      /* Window name -> maintenance window. */
    STORAGE_INCIDENTS_OPEN, /* Big-endian incident id -> 0 (unresolved). */
    STORAGE_ROLLOUTS,       /* Policy key -> the policy's rollout. */
    STORAGE_TABLE_NR
};

struct storage_options {
    size_t map_size; /* Bytes; 0 selects STORAGE_DEFAULT_MAP_SIZE. */
};

struct storage;     /* Opaque. */
struct storage_txn; /* Opaque; a read or write transaction. */
struct storage_cursor;

/* Open (creating if needed) the state under the existing directory @dir.
 * @dir is copied. @opts may be NULL. On success *@out owns the handle,
 * released with storage_close(). Errors: REMS_ENOMEM, REMS_EIO (missing or
 * unwritable directory), REMS_ECORRUPT. */
int storage_open(const char *dir,
                 const struct storage_options *opts,
                 struct storage **out,
                 char *errmsg);

/* Flush, mark the state clean and release @s; NULL is a no-op. No
 * transaction may be open. */
void storage_close(struct storage *s);

/* True when storage_open() discarded a possibly torn state (see above). */
bool storage_was_reset(const struct storage *s);

/* fsync the environment. May run on any thread while the loop works. */
int storage_sync(struct storage *s, char *errmsg);

/* Begin a transaction. Only one write transaction may exist at a time. */
int storage_txn_begin(struct storage *s,
                      bool write,
                      struct storage_txn **out,
                      char *errmsg);

/* Commit and release @t (also on failure). */
int storage_txn_commit(struct storage_txn *t, char *errmsg);

/* Abort and release @t; NULL is a no-op. */
void storage_txn_abort(struct storage_txn *t);

/* Look @key up in @table. On success *@val points into the map and stays
 * valid until the transaction ends or the next write to that key. Returns 0
 * or REMS_ENOTFOUND (outputs untouched), REMS_EIO. */
int storage_get(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                const void **val,
                size_t *vlen,
                char *errmsg);

/* Insert or replace. @key and @val are copied. Errors: REMS_ENOSPACE (map
 * full), REMS_EINVAL (key over 511 bytes or empty), REMS_EIO. */
int storage_put(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                const void *val,
                size_t vlen,
                char *errmsg);

/* Delete; REMS_ENOTFOUND when absent. */
int storage_del(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                char *errmsg);

/* Number of entries in @table. */
int storage_count(struct storage_txn *t,
                  enum storage_table table,
                  size_t *out,
                  char *errmsg);

/* Cursors walk a table in key order (memcmp). */
int storage_cursor_open(struct storage_txn *t,
                        enum storage_table table,
                        struct storage_cursor **out,
                        char *errmsg);
void storage_cursor_close(struct storage_cursor *c);

/* Position at the first key >= @key (@klen 0: the first key) and return
 * it; REMS_ENOTFOUND at the end. */
int storage_cursor_seek(struct storage_cursor *c,
                        const void *key,
                        size_t klen,
                        const void **k,
                        size_t *kl,
                        const void **v,
                        size_t *vl,
                        char *errmsg);

/* Advance; REMS_ENOTFOUND at the end. */
int storage_cursor_next(struct storage_cursor *c,
                        const void **k,
                        size_t *kl,
                        const void **v,
                        size_t *vl,
                        char *errmsg);

/* Delete the entry under the cursor. */
int storage_cursor_del(struct storage_cursor *c, char *errmsg);

/* Write a compact, consistent copy of the environment (an LMDB file image)
 * into a buffer allocated with @alloc (e.g. raft_malloc); the caller owns
 * *@out. A read transaction keeps the copy consistent while writes go on. */
int storage_image(struct storage *s,
                  void *(*alloc)(size_t),
                  void (*release)(void *),
                  void **out,
                  size_t *len,
                  char *errmsg);

/* Atomically replace the whole state with the LMDB file image @data
 * (borrowed). On failure the old state stays in place and usable. */
int storage_replace(struct storage *s,
                    const void *data,
                    size_t len,
                    char *errmsg);

/* Big-endian encoding of index keys, so memcmp order is numeric order. */
void storage_u64_key(uint64_t v, unsigned char out[8]);
uint64_t storage_u64_from_key(const void *key);

#endif /* REMS_STORAGE_STORAGE_H */
