/* agentproto/agent_fence.h: rems-agent's at-most-once record of commands.
 *
 * The fence holds the highest term of any command the agent accepted and
 * the ids of the commands it accepted most recently (at most `kept`, the
 * oldest dropped first), each with its term, when it was accepted and
 * until when its TTL ran. It lives in the file <data_dir>/fence, which is
 * replaced atomically (write a temporary file, fsync it, rename it over the
 * old one, fsync the directory) each time a command is recorded, and
 * always BEFORE the command is carried out: a crash at any point never
 * lets a command run twice, nor one from a lower term than a command that
 * ran (invariants 4 and 6 of the architecture). docs/agent-config.md
 * describes the file.
 *
 * agent_fence_check() is the decision, pure: it reads the record and the
 * times it is given. The other calls do file I/O, synchronously (a fence
 * write is a few hundred kilobytes at most and commands are rare; running
 * a command must wait for it anyway).
 *
 * One thread at a time. */
#ifndef REMS_AGENTPROTO_AGENT_FENCE_H
#define REMS_AGENTPROTO_AGENT_FENCE_H

#include <stddef.h>
#include <stdint.h>

#include "agentproto/proto.h"
#include "common/error.h"

/* The file's name in the data directory, and its temporary twin. */
#define AGENT_FENCE_FILE "fence"
#define AGENT_FENCE_TMP_FILE "fence.tmp"

/* The verdict of agent_fence_check(): accept, or the nack reason
 * (PROTO_NACK_STALE_TERM, PROTO_NACK_DUPLICATE, PROTO_NACK_EXPIRED,
 * PROTO_NACK_BUSY). */
#define AGENT_FENCE_ACCEPT 0

struct agent_fence; /* Opaque. */

/* Open the fence of the existing directory @dir, keeping at most @kept
 * (>= 1) command ids. A missing file is a fresh record (highest term 0, no
 * ids), written at once, so that an unwritable directory shows now and not
 * at the first command; a file with more ids than @kept keeps the newest.
 * A left-over temporary file (a crash during a write) is removed: the file
 * it was to replace still holds the record. On success returns 0 and
 * *@out owns the fence (agent_fence_close()). On failure leaves *@out
 * untouched and returns REMS_ECORRUPT (the file is damaged: @errmsg names
 * the file, the line and the rule; the caller must refuse to start rather
 * than forget which commands ran), REMS_EIO (with the system's message),
 * or REMS_ENOMEM. */
int agent_fence_open(const char *dir,
                     size_t kept,
                     struct agent_fence **out,
                     char *errmsg);

/* Release @f; NULL does nothing. Writes nothing. */
void agent_fence_close(struct agent_fence *f);

/* The highest term of an accepted command; 0 when none. */
uint64_t agent_fence_highest_term(const struct agent_fence *f);

/* The number of ids kept. */
size_t agent_fence_count(const struct agent_fence *f);

/* The path of the fence file. */
const char *agent_fence_path(const struct agent_fence *f);

/* Decide on command @id (a valid id) of term @term (>= 1), received with
 * @ttl_ms to live, @elapsed_ms ago on the agent's monotonic clock, at wall
 * time @now_wall_ms. Checks, in the order of docs/protocol.md, and answers
 * with the first that applies:
 * - PROTO_NACK_STALE_TERM: @term is below the highest accepted term;
 * - PROTO_NACK_DUPLICATE: @id was accepted before (and is still kept);
 * - PROTO_NACK_EXPIRED: @ttl_ms is 0, or @elapsed_ms >= @ttl_ms;
 * - PROTO_NACK_BUSY: every kept id is still within its TTL, so accepting
 *   one more would drop an id whose command may still be resent (raise
 *   executed_ids_kept);
 * else AGENT_FENCE_ACCEPT. For a nack, @message (REMS_ERRMSG_SIZE bytes)
 * gets the details for people, e.g. "term 41 is below 43, the highest
 * accepted". Pure. */
int agent_fence_check(const struct agent_fence *f,
                      const char *id,
                      uint64_t term,
                      uint64_t ttl_ms,
                      uint64_t elapsed_ms,
                      uint64_t now_wall_ms,
                      char *message);

/* Record command @id of term @term, accepted at wall time @now_wall_ms with
 * @ttl_remaining_ms to run, and write the file (see above). The call must
 * follow an agent_fence_check() that accepted the command. When the
 * record is full the oldest id is dropped. Raises the highest term to
 * @term. Returns 0, or REMS_EIO / REMS_ENOSPACE / REMS_ENOMEM with
 * @errmsg; then the record (in memory and on disk) is as it was, and the
 * command must not run. */
int agent_fence_record(struct agent_fence *f,
                       const char *id,
                       uint64_t term,
                       uint64_t now_wall_ms,
                       uint64_t ttl_remaining_ms,
                       char *errmsg);

/* Forget @id, which was recorded but not carried out (the supervisor was
 * busy: the node may resend it with the same id), and write the file. The
 * highest term stays. Returns 0 (also when @id is not kept), or as
 * agent_fence_record(); then @id is still recorded, which is safe: a
 * resend is refused as a duplicate. */
int agent_fence_forget(struct agent_fence *f, const char *id, char *errmsg);

#endif /* REMS_AGENTPROTO_AGENT_FENCE_H */
