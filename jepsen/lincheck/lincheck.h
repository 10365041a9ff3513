/* lincheck: a linearizability checker for the register histories of the
 * rems partition-testing harness (jepsen/HISTORY.md).
 *
 * Read a history with lincheck_history_parse() or lincheck_history_read(),
 * check it with lincheck_check(), then print the result with
 * lincheck_result_print() or turn it into JSON with lincheck_result_json().
 * The operator guide is docs/lincheck.md.
 *
 * Nothing here keeps global state: any thread may call these functions, on
 * different objects at the same time. */
#ifndef REMS_JEPSEN_LINCHECK_H
#define REMS_JEPSEN_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/error.h" /* REMS_E* codes, REMS_ERRMSG_SIZE */

/* Distinct states one search may visit before it gives up; a key takes up
 * to three searches (docs/lincheck.md). About 45 bytes of memory a state:
 * 10M states take some 450 MB and 10 to 20 s. */
#define LINCHECK_DEFAULT_MAX_STATES ((uint64_t)10000000)

/* Most operations shown around the operation that breaks a key. */
#define LINCHECK_WINDOW_MAX 20

/* Exit codes of rems-lincheck. */
enum lincheck_exit {
    LINCHECK_EXIT_VALID = 0,
    LINCHECK_EXIT_INVALID = 1,
    LINCHECK_EXIT_BAD_INPUT = 2, /* Also usage errors and unreadable files. */
    LINCHECK_EXIT_UNKNOWN = 3,
};

enum lincheck_f {
    LINCHECK_READ,
    LINCHECK_WRITE,
    LINCHECK_CAS,
};

/* How an operation ended. */
enum lincheck_type {
    LINCHECK_OK,      /* Took effect; a read observed its value. */
    LINCHECK_FAIL,    /* Certainly did not take effect: ignored. */
    LINCHECK_INFO,    /* May or may not have taken effect. */
    LINCHECK_PENDING, /* Never completed: checked like LINCHECK_INFO. */
};

/* One register operation: an invoke paired with its completion. */
struct lincheck_op {
    int64_t index;   /* "index" of the invoke, or its position from 0. */
    int64_t process; /* Client id. */
    int64_t start;   /* Time of the invoke, ns. */
    int64_t end;     /* Time of the completion (for info, when the client
                        gave up; the op may take effect later), ns; -1 if
                        it never came. */
    unsigned line;   /* Line of the invoke in the input, from 1. */
    enum lincheck_f f;
    enum lincheck_type type;
    /* read: the value observed (ok only); write: the value in b;
     * cas: [a, b]. A null a means "absent" (the register's initial state). */
    bool a_null;
    int64_t a;
    int64_t b;
};

struct lincheck_history; /* Opaque: the operations of each key. */

/* Parse the JSON-lines history in @buf (@len bytes; borrowed). Events of
 * other workloads and of the nemesis are skipped. On success returns 0 and
 * *@out owns a new history, released with lincheck_history_free(). On
 * failure returns REMS_EMALFORMED, with @errmsg naming the line ("line 7:
 * ..."), or REMS_ENOMEM, and leaves *@out untouched. */
int lincheck_history_parse(const char *buf,
                           size_t len,
                           struct lincheck_history **out,
                           char *errmsg);

/* As lincheck_history_parse(), reading @in (borrowed) to its end. Also
 * returns REMS_EIO if reading fails. */
int lincheck_history_read(FILE *in,
                          struct lincheck_history **out,
                          char *errmsg);

/* As lincheck_history_read(), on the file at @path; "-" reads stdin.
 * Returns REMS_EIO, with the path and the cause in @errmsg, when the file
 * cannot be opened. */
int lincheck_history_load(const char *path,
                          struct lincheck_history **out,
                          char *errmsg);

/* Release @h; NULL is a no-op. */
void lincheck_history_free(struct lincheck_history *h);

/* Number of keys with at least one register operation. */
size_t lincheck_history_nkeys(const struct lincheck_history *h);

/* Name of key @i (< lincheck_history_nkeys()), in order of first
 * appearance; borrowed from @h. */
const char *lincheck_history_key(const struct lincheck_history *h, size_t i);

/* The operations of key @i in invoke order, failed ones included; *@n gets
 * their number. Borrowed from @h. */
const struct lincheck_op *
lincheck_history_ops(const struct lincheck_history *h, size_t i, size_t *n);

enum lincheck_verdict {
    LINCHECK_VALID,
    LINCHECK_INVALID,
    LINCHECK_UNKNOWN,
};

struct lincheck_options {
    /* States per search; 0 selects LINCHECK_DEFAULT_MAX_STATES. */
    uint64_t max_states;
};

struct lincheck_key_result {
    const char *key; /* Borrowed from the history. */
    enum lincheck_verdict verdict;
    size_t ops;      /* Operations checked: ok, plus info write and cas. */
    size_t info;     /* Of them, info or never completed. */
    uint64_t states; /* Distinct states its searches visited. */
    /* LINCHECK_UNKNOWN: why ("state budget exhausted", "out of memory",
     * "too many operations"). */
    const char *reason;
    /* LINCHECK_INVALID: an operation whose completion no linearization
     * explains: the history up to that completion is not linearizable. */
    const struct lincheck_op *breaking;
    /* LINCHECK_INVALID: @breaking is the first such operation: every
     * prefix of the key's history that ends before its completion is
     * linearizable. False when the search for an earlier one ran out of
     * budget. */
    bool first;
    /* LINCHECK_INVALID: operations around @breaking, in invoke order,
     * @breaking among them. Borrowed from the history. */
    const struct lincheck_op *window[LINCHECK_WINDOW_MAX];
    size_t nwindow;
};

struct lincheck_result {
    enum lincheck_verdict verdict;    /* Invalid if a key is, else unknown if
                                         a key is, else valid. */
    struct lincheck_key_result *keys; /* In history order. */
    size_t nkeys;
};

/* Check every key of @h (borrowed, and borrowed by @out: it must outlive
 * @out) for linearizability against an integer register that starts null.
 * @opts may be NULL. A key that no search decides within the budget, or
 * for want of memory, is LINCHECK_UNKNOWN. Returns 0 and fills @out, to be
 * released with lincheck_result_close(), or REMS_ENOMEM with @out untouched. */
int lincheck_check(const struct lincheck_history *h,
                   const struct lincheck_options *opts,
                   struct lincheck_result *out,
                   char *errmsg);

/* Release what lincheck_check() allocated in @r; safe on a zeroed @r. */
void lincheck_result_close(struct lincheck_result *r);

/* "valid", "invalid" or "unknown". */
const char *lincheck_verdict_name(enum lincheck_verdict v);

/* The exit code of rems-lincheck for @v. */
int lincheck_verdict_exit(enum lincheck_verdict v);

/* Print @r for people: one line per key, the window of each invalid key,
 * then "valid: true|false|unknown". Returns 0 or REMS_EIO. */
int lincheck_result_print(const struct lincheck_result *r, FILE *out);

/* @r as {"valid": true|false|"unknown", "keys": {"<key>": {"valid": ...,
 * "ops": n, "info": n, "states": n}}}; an invalid key also has "first",
 * "breaking" (an op) and "window" (a list of ops), an unknown one "reason"
 * (docs/lincheck.md). Returns a new reference, or NULL when out of
 * memory. */
json_t *lincheck_result_json(const struct lincheck_result *r);

#endif /* REMS_JEPSEN_LINCHECK_H */
