/* common/error.h: the error codes of rems and their messages.
 *
 * Functions that can fail return 0 or a positive REMS_E* code. Foreign codes
 * (errno, UV_E*, MDB_*, raft, OpenSSL) are translated at the module that made
 * the call and never cross a module boundary. Messages are lower case with no
 * trailing period; each layer prefixes its own context. */
#ifndef REMS_COMMON_ERROR_H
#define REMS_COMMON_ERROR_H

#include <stddef.h>

/* Size of every caller-provided error message buffer. */
#define REMS_ERRMSG_SIZE 256

/* X(name, value, message) */
#define REMS_ERRORS(X)                                                         \
    X(REMS_ENOMEM, 1, "out of memory")                                         \
    X(REMS_EINVAL, 2, "invalid argument")                                      \
    X(REMS_EMALFORMED, 3, "malformed input")                                   \
    X(REMS_ECORRUPT, 4, "stored data is corrupt")                              \
    X(REMS_EIO, 5, "input/output error")                                       \
    X(REMS_ENOSPACE, 6, "no space left")                                       \
    X(REMS_ENOTFOUND, 7, "not found")                                          \
    X(REMS_ECONFLICT, 8, "revision conflict")                                  \
    X(REMS_ENOTLEADER, 9, "this node is not the leader")                       \
    X(REMS_ENOLEADER, 10, "no leader is known")                                \
    X(REMS_ELEADERSHIPLOST, 11, "leadership lost, outcome unknown")            \
    X(REMS_ETOOBIG, 12, "too large")                                           \
    X(REMS_EUNSUPPORTED, 13, "unsupported")                                    \
    X(REMS_ECANCELED, 14, "canceled")                                          \
    X(REMS_EBUSY, 15, "busy")                                                  \
    X(REMS_ETIMEDOUT, 16, "timed out")                                         \
    X(REMS_EADDRINUSE, 17, "address already in use")                           \
    X(REMS_ECONFIG, 18, "invalid configuration")                               \
    X(REMS_ESHUTDOWN, 19, "shutting down")                                     \
    X(REMS_EEXIST, 20, "already exists")

enum rems_error {
#define REMS__ERROR_ENUM(name, value, msg) name = (value),
    REMS_ERRORS(REMS__ERROR_ENUM)
#undef REMS__ERROR_ENUM
        REMS_E_NR
};

/* The static message of @code; "success" for 0, "unknown error" otherwise. */
const char *rems_strerror(int code);

/* The symbolic name of @code ("REMS_ENOMEM"); "OK" for 0. */
const char *rems_errname(int code);

/* printf into @errmsg (REMS_ERRMSG_SIZE bytes), truncating. */
void rems_errmsgf(char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the message already in @errmsg with "@prefix: ". */
void rems_errmsg_wrap(char *errmsg, const char *prefix);

/* Write "out of memory" into @errmsg. */
void rems_errmsg_oom(char *errmsg);

#endif /* REMS_COMMON_ERROR_H */
