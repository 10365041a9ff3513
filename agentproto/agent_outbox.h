/* agentproto/agent_outbox.h: rems-agent's store-and-forward queue of
 * service-state changes.
 *
 * Every change the supervisor reports goes through the outbox, connected
 * or not, so reports leave in the order the changes happened. While the
 * agent has no session the changes wait here; the queue is bounded, and
 * when it is full the oldest change is dropped and counted. The count
 * travels in the `dropped` field of the next report that is delivered
 * (docs/protocol.md, `report`), then starts again from 0.
 *
 * agent_outbox_encode() packs the oldest changes into one report frame:
 * as many as fit in the frame size and PROTO_ITEMS_MAX, so a long queue
 * leaves as several reports.
 *
 * Pure: no I/O, no clock. The struct lives in caller memory; one thread at
 * a time. */
#ifndef REMS_AGENTPROTO_AGENT_OUTBOX_H
#define REMS_AGENTPROTO_AGENT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "agentproto/proto.h"
#include "common/error.h"
#include "common/mpread.h" /* struct rems_buf */

struct agent_outbox_item; /* Private. */

struct agent_outbox {
    /* Private: */
    struct agent_outbox_item *ring;
    size_t cap;  /* Allocated items; grows up to max. */
    size_t max;  /* At most this many items. */
    size_t head; /* Index of the oldest item. */
    size_t len;
    uint64_t dropped;              /* Since the last consumed report. */
    uint64_t dropped_total;        /* Since init, for logs. */
    struct proto_service *scratch; /* Items of the report being encoded. */
};

/* Prepare @o for at most @max (>= 1) items. Allocates nothing. */
void agent_outbox_init(struct agent_outbox *o, size_t max);

/* Release every item of @o. NULL does nothing. */
void agent_outbox_close(struct agent_outbox *o);

/* Queue a copy of @status (the strings are copied). A message longer than
 * PROTO_MESSAGE_MAX bytes is cut (at a character boundary) and one with a
 * NUL byte is cut there. When the queue is full the oldest item is dropped
 * and counted. Returns 0, REMS_EINVAL (@status breaks a rule of
 * docs/protocol.md, such as an invalid service name or state: nothing is
 * queued; @errmsg says what) or REMS_ENOMEM (the change is lost, and
 * counted as dropped). */
int agent_outbox_push(struct agent_outbox *o,
                      const struct proto_service *status,
                      char *errmsg);

/* The number of items queued. */
size_t agent_outbox_len(const struct agent_outbox *o);

/* The number of items dropped since the last consumed report. */
uint64_t agent_outbox_dropped(const struct agent_outbox *o);

/* Whether there is anything to report: items, or a count of dropped
 * ones. */
int agent_outbox_pending(const struct agent_outbox *o);

/* Append to @out one report frame with sequence number @seq, the current
 * dropped count and the oldest items, as many as fit in a payload of
 * @max_frame bytes (0 selects PROTO_FRAME_MAX_DEFAULT) and in
 * PROTO_ITEMS_MAX; *@n_items says how many. An item that would not fit in
 * a frame even alone is dropped (and counted). Nothing is removed: once the
 * frame is handed over, call agent_outbox_consume(@o, *@n_items). Returns
 * 0 or REMS_ENOMEM; @out is then as before. */
int agent_outbox_encode(struct agent_outbox *o,
                        uint64_t seq,
                        size_t max_frame,
                        struct rems_buf *out,
                        size_t *n_items,
                        char *errmsg);

/* Remove the @n oldest items (@n <= the queue's length) and reset the
 * dropped count: a report carrying them and the count was handed over. */
void agent_outbox_consume(struct agent_outbox *o, size_t n);

#endif /* REMS_AGENTPROTO_AGENT_OUTBOX_H */
