/* agentproto/proto.h: the wire protocol between remsd nodes and rems-agent.
 *
 * Pure: no sockets, no loop, no clocks. This header covers the framing (a
 * 4-byte big-endian payload length, then that many bytes of MessagePack),
 * an incremental frame reader fed with whatever the TLS layer hands over,
 * and the encoding and strict decoding of every message of protocol
 * version 1. docs/protocol.md is the reference for the fields, their limits
 * and the connection life cycle; the limits below are the same numbers.
 *
 * Strings: struct proto_str is a (pointer, length) pair, not NUL-terminated.
 * Strings of a decoded message point into the payload that was decoded
 * (borrowed): they stay valid as long as that payload does, which for a
 * frame from proto_reader_next() is until the next call on that reader.
 * Absent optional strings decode as "" with length 0, never NULL.
 *
 * Arrays (labels, services, report items, args, result maps) of a decoded
 * message are allocated with rems_malloc() and released by
 * proto_msg_close(); a message built by the caller for encoding points to
 * arrays the caller owns, and proto_msg_close() on it does nothing.
 *
 * Every function may be called from any thread on objects that thread owns;
 * nothing here has global state. */
#ifndef REMS_AGENTPROTO_PROTO_H
#define REMS_AGENTPROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"  /* REMS_E* codes, REMS_ERRMSG_SIZE */
#include "common/mpread.h" /* struct rems_buf */

/* Protocol versions this code speaks: PROTO_VERSION_MIN..PROTO_VERSION. */
#define PROTO_VERSION 1
#define PROTO_VERSION_MIN 1

/* Framing. */
#define PROTO_HEADER_SIZE 4
#define PROTO_FRAME_MAX_DEFAULT ((size_t)1 << 20) /* 1 MiB of payload */
#define PROTO_FRAME_MAX_LIMIT ((size_t)1 << 26)   /* 64 MiB: largest setting */

/* Field limits (bytes unless stated). Ids (agent_id, command id) are
 * 1..max bytes of [A-Za-z0-9._:-], as rems_id_valid() and the agent id of a
 * certificate; service names may also hold '@'. Other strings are UTF-8
 * without NUL. */
#define PROTO_ID_MAX 64                   /* agent_id, command id */
#define PROTO_SERVICE_MAX 128             /* service name */
#define PROTO_AGENT_VERSION_MAX 64        /* hello.agent_version */
#define PROTO_ADDR_MAX 255                /* redirect.leader_address */
#define PROTO_MESSAGE_MAX 1024            /* every "message" field */
#define PROTO_LABELS_MAX 64               /* hello.labels entries */
#define PROTO_LABEL_KEY_MAX 128           /* 1..128 */
#define PROTO_LABEL_VALUE_MAX 128         /* 0..128 */
#define PROTO_ITEMS_MAX 1024              /* report.items, hello.services */
#define PROTO_ARGS_MAX 64                 /* command.args, ack.result map */
#define PROTO_ARG_KEY_MAX 128             /* 1..128 */
#define PROTO_ARG_VALUE_MAX 1024          /* 0..1024 */
#define PROTO_MANIFEST_MAX (512 * 1024)   /* command.manifest, 1..max */
#define PROTO_RESULT_TEXT_MAX (64 * 1024) /* ack.result as a string */
#define PROTO_DURATION_MAX_MS 86400000u   /* every *_ms duration: 24 hours */

/* A borrowed string: @len bytes at @p, not NUL-terminated. */
struct proto_str {
    const char *p;
    size_t len;
};

/* A proto_str from a string literal (not from a pointer): PROTO_STR for
 * expressions, PROTO_STR_INIT for initialisers of static objects. */
#define PROTO_STR(s) ((struct proto_str){(s), sizeof(s) - 1})
#define PROTO_STR_INIT(s)                                                      \
    {                                                                          \
        (s), sizeof(s) - 1                                                     \
    }

/* One key/value pair of a string map (labels, args, result). */
struct proto_kv {
    struct proto_str key;
    struct proto_str value;
};

enum proto_type {
    PROTO_TYPE_NONE = 0, /* Decoding failed before the type was known. */
    PROTO_HELLO,
    PROTO_WELCOME,
    PROTO_REDIRECT,
    PROTO_HEARTBEAT,
    PROTO_HEARTBEAT_ACK,
    PROTO_REPORT,
    PROTO_COMMAND,
    PROTO_ACK,
    PROTO_NACK,
    PROTO_ERROR,
    PROTO_TYPE_NR
};

enum proto_state {
    PROTO_STATE_STOPPED = 1,
    PROTO_STATE_STARTING,
    PROTO_STATE_RUNNING,
    PROTO_STATE_STOPPING,
    PROTO_STATE_FAILED,
    PROTO_STATE_BACKOFF,
    PROTO_STATE_FATAL,
    PROTO_STATE_PAUSED,
    PROTO_STATE_QUARANTINED,
    PROTO_STATE_NR
};

enum proto_health {
    PROTO_HEALTH_UNKNOWN = 1,
    PROTO_HEALTH_HEALTHY,
    PROTO_HEALTH_UNHEALTHY,
    PROTO_HEALTH_NR
};

enum proto_action {
    /* Decoded only: an action name this side does not know, kept in
     * command.action_name so that the agent can answer nack unknown_action.
     * Never encoded. */
    PROTO_ACTION_UNKNOWN = 0,
    PROTO_ACTION_START,
    PROTO_ACTION_STOP,
    PROTO_ACTION_RESTART,
    PROTO_ACTION_PAUSE,
    PROTO_ACTION_RESUME,
    PROTO_ACTION_QUARANTINE,
    PROTO_ACTION_PUSH_MANIFEST,
    PROTO_ACTION_DIAGNOSTICS,
    PROTO_ACTION_NR
};

enum proto_nack_reason {
    PROTO_NACK_STALE_TERM = 1,
    PROTO_NACK_EXPIRED,
    PROTO_NACK_DUPLICATE,
    PROTO_NACK_UNKNOWN_ACTION,
    PROTO_NACK_UNKNOWN_SERVICE,
    PROTO_NACK_FAILED,
    PROTO_NACK_BUSY,
    PROTO_NACK_REASON_NR
};

enum proto_error_code {
    PROTO_ERR_MALFORMED = 1,
    PROTO_ERR_UNSUPPORTED_VERSION,
    PROTO_ERR_UNKNOWN_TYPE,
    PROTO_ERR_TOO_BIG,
    PROTO_ERR_UNAUTHORIZED,
    PROTO_ERR_NOT_LEADER,
    PROTO_ERR_INTERNAL,
    PROTO_ERR_NR
};

enum proto_result_kind {
    PROTO_RESULT_NONE = 0, /* ack without a result */
    PROTO_RESULT_TEXT,     /* ack.result is a string */
    PROTO_RESULT_MAP       /* ack.result is a map of strings */
};

/* The wire names ("heartbeat_ack", "running", "stale_term", ...), or
 * "unknown" for a value out of range. */
const char *proto_type_name(int type);
const char *proto_state_name(int state);
const char *proto_health_name(int health);
const char *proto_action_name(int action);
const char *proto_nack_reason_name(int reason);
const char *proto_error_code_name(int code);

/* The state of one service: an item of report.items and of
 * hello.services. */
struct proto_service {
    struct proto_str service; /* 1..PROTO_SERVICE_MAX, [A-Za-z0-9._:@-] */
    int state;                /* enum proto_state */
    uint64_t generation;
    int health; /* enum proto_health */
    bool ready;
    bool has_exit_code; /* exit_code is optional */
    int32_t exit_code;
    uint64_t since_ms;        /* agent's wall clock, ms since the epoch */
    struct proto_str message; /* optional, 0..PROTO_MESSAGE_MAX */
};

/* agent -> node, first message of a connection. */
struct proto_hello {
    uint64_t version; /* Highest version the agent speaks; >= 1. */
    struct proto_str agent_id;
    const struct proto_kv *labels; /* 0..PROTO_LABELS_MAX, unique keys */
    size_t n_labels;
    uint64_t highest_term;          /* Highest term of a command it accepted. */
    struct proto_str agent_version; /* 1..PROTO_AGENT_VERSION_MAX */
    bool has_services; /* services is optional; present may be empty */
    const struct proto_service *services; /* unique service names */
    size_t n_services;
};

/* node -> agent, the answer to hello from the leader. */
struct proto_welcome {
    uint64_t version;      /* Version of this session, PROTO_VERSION_MIN.. */
    uint64_t node_id;      /* >= 1 */
    uint64_t term;         /* >= 1 */
    uint64_t lease_ttl_ms; /* 1..PROTO_DURATION_MAX_MS */
    uint64_t heartbeat_interval_ms; /* 1..lease_ttl_ms - 1 */
};

/* node -> agent, the answer to hello from a node that is not the leader. */
struct proto_redirect {
    struct proto_str leader_address; /* "host:port", or "" when unknown */
    uint64_t leader_id;              /* 0 when unknown */
    uint64_t term;
    uint64_t retry_after_ms; /* 0..PROTO_DURATION_MAX_MS */
};

struct proto_heartbeat {
    uint64_t seq;
};

struct proto_heartbeat_ack {
    uint64_t seq;                /* The seq of the heartbeat answered. */
    uint64_t term;               /* >= 1 */
    uint64_t lease_remaining_ms; /* 0..PROTO_DURATION_MAX_MS */
};

struct proto_report {
    uint64_t seq;
    const struct proto_service *items; /* 0..PROTO_ITEMS_MAX, in order */
    size_t n_items;
    uint64_t dropped; /* Reports dropped while disconnected. */
};

struct proto_command {
    struct proto_str id;          /* identifier, 1..PROTO_ID_MAX */
    uint64_t term;                /* >= 1 */
    uint64_t ttl_remaining_ms;    /* 0..PROTO_DURATION_MAX_MS */
    int action;                   /* enum proto_action */
    struct proto_str action_name; /* Decoded: the wire name of action. */
    /* Required for the six service actions; optional ("" = the whole
     * agent) for push_manifest and diagnostics. */
    struct proto_str service;
    const struct proto_kv *args; /* 0..PROTO_ARGS_MAX, unique keys */
    size_t n_args;
    /* push_manifest only, and required there: the manifest document (JSON
     * text), 1..PROTO_MANIFEST_MAX bytes; sent as bin. */
    struct proto_str manifest;
};

struct proto_ack {
    struct proto_str id; /* The command's id and term. */
    uint64_t term;
    int result_kind;               /* enum proto_result_kind */
    struct proto_str result_text;  /* PROTO_RESULT_TEXT */
    const struct proto_kv *result; /* PROTO_RESULT_MAP, 0..PROTO_ARGS_MAX */
    size_t n_result;
};

struct proto_nack {
    struct proto_str id; /* The command's id and term. */
    uint64_t term;
    int reason;               /* enum proto_nack_reason */
    struct proto_str message; /* 0..PROTO_MESSAGE_MAX: why, for people */
};

struct proto_error {
    int code;                 /* enum proto_error_code */
    struct proto_str message; /* 0..PROTO_MESSAGE_MAX */
};

/* One message. Set type and the member of that name. Zero-initialise it
 * ({0}) before filling it for encoding. */
struct proto_msg {
    int type; /* enum proto_type */
    /* Decoded: the "t" string as received ("" if none was read). */
    struct proto_str type_name;
    union {
        struct proto_hello hello;
        struct proto_welcome welcome;
        struct proto_redirect redirect;
        struct proto_heartbeat heartbeat;
        struct proto_heartbeat_ack heartbeat_ack;
        struct proto_report report;
        struct proto_command command;
        struct proto_ack ack;
        struct proto_nack nack;
        struct proto_error error;
    };
    /* Private: arrays allocated by proto_msg_decode(). */
    void *owned[2];
};

/* Append one frame holding @m (header and payload) to @out, whose payload
 * may be at most @max_frame bytes (0 selects PROTO_FRAME_MAX_DEFAULT).
 * @m is borrowed. Every field is checked against the same rules the
 * decoder applies, so whatever is encoded decodes.
 * Returns 0, REMS_EINVAL (a field breaks a rule; @errmsg names it, e.g.
 * "command.id: 70 bytes, at most 64 allowed"), REMS_ETOOBIG (the payload
 * would exceed @max_frame: split the report or shorten the strings) or
 * REMS_ENOMEM. On failure @out holds what it held before (its capacity may
 * have grown) and can be used again. */
int proto_msg_encode(const struct proto_msg *m,
                     size_t max_frame,
                     struct rems_buf *out,
                     char *errmsg);

/* Decode the payload @buf of @len bytes (without the 4-byte header) into
 * *@m, strictly: the payload must be exactly one map with a known "t",
 * every required field, no field twice, each of the right type and within
 * its limits; unknown fields are skipped. Strings borrow @buf; arrays are
 * allocated, so release a decoded message with proto_msg_close().
 * Returns 0 or:
 * - REMS_EMALFORMED: @errmsg names the field and the rule, e.g.
 *   "command.ttl_remaining_ms: must be an unsigned integer";
 * - REMS_EUNSUPPORTED: an unknown message type (m->type is
 *   PROTO_TYPE_NONE and m->type_name the received name; @errmsg says
 *   `t: unknown message type "..."`), or a welcome whose version this side
 *   does not speak (m->type is PROTO_WELCOME);
 * - REMS_ENOMEM.
 * On failure *@m holds nothing to release and only type and type_name are
 * meaningful: pass them to proto_error_code_for() to answer with an error
 * frame. */
int proto_msg_decode(const void *buf,
                     size_t len,
                     struct proto_msg *m,
                     char *errmsg);

/* Release the arrays of a decoded message and zero it. A message built by
 * the caller owns nothing and is only zeroed. NULL does nothing. */
void proto_msg_close(struct proto_msg *m);

/* The code of the error frame that answers a failure @rv of
 * proto_msg_decode() (given the message type it left in @type) or of
 * proto_reader_next() (pass PROTO_TYPE_NONE): malformed, unknown_type,
 * unsupported_version, too_big, or internal for anything else. */
int proto_error_code_for(int rv, int type);

/* Version negotiation for a node answering a hello that offers
 * @offered (the agent's highest version). On success *@version is the
 * version of the session, min(@offered, PROTO_VERSION). REMS_EUNSUPPORTED
 * (with @errmsg) when @offered is below PROTO_VERSION_MIN: answer with error
 * unsupported_version. */
int proto_version_negotiate(uint64_t offered, uint64_t *version, char *errmsg);

/* Incremental frame reader. Feed it byte chunks as they arrive and take
 * the complete frames out with proto_reader_next():
 *
 *     proto_reader_feed(&r, chunk, n);
 *     while ((rv = proto_reader_next(&r, &frame, &len, errmsg)) == 0 &&
 *            frame != NULL) {
 *         ... decode and handle frame ...
 *     }
 *     if (rv != 0) ... answer with an error frame and close ...
 *
 * A frame that lies whole inside the chunk is returned in place (no copy);
 * only a frame split across chunks is copied into the reader's buffers: at
 * most two payloads (a split frame completed by the chunk, and the start of
 * the next split frame at the chunk's end), so at most 2 * max_frame bytes.
 * Buffers above 64 KiB are released at the next feed once they hold
 * nothing. A header announcing more than max_frame bytes is refused as
 * soon as its 4 bytes are in, before any payload is buffered (nothing is
 * allocated for headers). Lives in caller memory; one thread at a time. */
struct proto_reader {
    /* Private: */
    size_t max_frame;
    const unsigned char *chunk; /* The chunk being consumed (borrowed). */
    size_t chunk_len;
    size_t chunk_off;
    unsigned char hdr[PROTO_HEADER_SIZE]; /* Header of a split frame. */
    size_t hdr_len;
    size_t need; /* Payload size of the split frame, once hdr is whole. */
    size_t have; /* Payload bytes of it gathered so far. */
    /* Two buffers: a split frame completed by this chunk is returned from
     * one while the chunk's unfinished tail is gathered in the other, so
     * every frame stays valid until the next feed. */
    unsigned char *buf[2];
    size_t cap[2];
    int fill;       /* Index of the buffer gathering the split frame. */
    bool locked[2]; /* Returned a frame since the last feed. */
    int error;      /* Sticky REMS_E* after a failure. */
    char errmsg[REMS_ERRMSG_SIZE];
};

/* Prepare @r for frames of at most @max_frame payload bytes (0 selects
 * PROTO_FRAME_MAX_DEFAULT; at most PROTO_FRAME_MAX_LIMIT). Allocates
 * nothing. */
void proto_reader_init(struct proto_reader *r, size_t max_frame);

/* Release the buffers of @r. NULL does nothing. */
void proto_reader_close(struct proto_reader *r);

/* Give @r the next chunk of the stream: @len bytes at @data (borrowed).
 * The previous chunk must have been used up: proto_reader_next() returned
 * no frame, or an error (otherwise the call asserts). Frames returned since
 * the previous feed become invalid. Never fails and never allocates; it
 * may release a large buffer that holds nothing. */
void proto_reader_feed(struct proto_reader *r, const void *data, size_t len);

/* Take the next complete frame of the current chunk: on 0, *@frame and
 * *@len are its payload (without header), or NULL and 0 when the chunk is
 * used up and more bytes are needed. By then the unfinished tail of the
 * chunk has been copied into @r, so the caller may reuse the chunk's memory.
 * A frame is valid until the next proto_reader_feed() or
 * proto_reader_close(); one returned in place (it lay whole in the chunk)
 * points into the chunk, so only while the caller also keeps the chunk.
 * Errors, sticky (every later call returns the same code and message; the
 * stream cannot be resynchronised, so answer with an error frame and
 * close): REMS_ETOOBIG (a header announces more than max_frame bytes),
 * REMS_EMALFORMED (a header announces 0 bytes), REMS_ENOMEM. */
int proto_reader_next(struct proto_reader *r,
                      const void **frame,
                      size_t *len,
                      char *errmsg);

/* The bytes of an unfinished frame (header included) that @r holds: 0 at
 * a frame boundary. A peer that closes while this is not 0 cut a frame. */
size_t proto_reader_pending(const struct proto_reader *r);

#endif /* REMS_AGENTPROTO_PROTO_H */
