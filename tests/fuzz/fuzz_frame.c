/* libFuzzer target for the agent protocol's frame reader and decoder.
 *
 * Each input is used twice:
 * - as one payload for proto_msg_decode();
 * - as a byte stream for a proto_reader with a 4 KiB maximum, fed in chunks
 *   whose size the first byte picks; every frame it yields is decoded.
 * Besides crashes and leaks (ASan), it checks properties, aborting when one
 * fails: a refused payload comes with REMS_EMALFORMED or REMS_EUNSUPPORTED
 * and a message; a decoded message encodes again (except a command whose
 * action this side does not know), that encoding decodes, and encoding it a
 * second time gives the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_payload(const void *payload, size_t len)
{
    char errmsg[REMS_ERRMSG_SIZE] = "";
    struct proto_msg m;
    struct proto_msg again;
    struct rems_buf b1;
    struct rems_buf b2;
    int rv;

    rv = proto_msg_decode(payload, len, &m, errmsg);
    if (rv != 0) {
        if ((rv != REMS_EMALFORMED && rv != REMS_EUNSUPPORTED) ||
            errmsg[0] == '\0' || m.owned[0] != NULL || m.owned[1] != NULL) {
            abort();
        }
        return;
    }
    rems_buf_init(&b1);
    rv = proto_msg_encode(&m, PROTO_FRAME_MAX_LIMIT, &b1, errmsg);
    if (rv != 0) {
        if (rv != REMS_EINVAL || m.type != PROTO_COMMAND ||
            m.command.action != PROTO_ACTION_UNKNOWN) {
            abort();
        }
        rems_buf_close(&b1);
        proto_msg_close(&m);
        return;
    }
    rv = proto_msg_decode(b1.data + PROTO_HEADER_SIZE,
                          b1.len - PROTO_HEADER_SIZE, &again, errmsg);
    if (rv != 0 || again.type != m.type) {
        abort();
    }
    rems_buf_init(&b2);
    if (proto_msg_encode(&again, PROTO_FRAME_MAX_LIMIT, &b2, errmsg) != 0 ||
        b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0) {
        abort();
    }
    rems_buf_close(&b2);
    proto_msg_close(&again);
    rems_buf_close(&b1);
    proto_msg_close(&m);
}

static void check_stream(const uint8_t *data, size_t size)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct proto_reader r;
    const void *frame;
    size_t len;
    size_t step;
    size_t off;
    size_t n;
    int rv = 0;

    if (size == 0) {
        return;
    }
    step = 1 + data[0] % 64;
    data++;
    size--;
    proto_reader_init(&r, 4096);
    for (off = 0; off < size && rv == 0; off += n) {
        n = step < size - off ? step : size - off;
        proto_reader_feed(&r, data + off, n);
        while ((rv = proto_reader_next(&r, &frame, &len, errmsg)) == 0 &&
               frame != NULL) {
            if (len == 0 || len > 4096) {
                abort();
            }
            check_payload(frame, len);
        }
    }
    if (rv != 0 && rv != REMS_ETOOBIG && rv != REMS_EMALFORMED) {
        abort();
    }
    proto_reader_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_payload(size > 0 ? data : NULL, size);
    check_stream(data, size);
    return 0;
}
