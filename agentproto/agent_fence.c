/* agentproto/agent_fence.c: the at-most-once record of rems-agent.
 *
 * The file is text, so that an operator can read it, with a checksum, so
 * that damage is found rather than half-read:
 *
 *     rems-agent fence 1
 *     highest_term 43
 *     ids 2
 *     cmd-42-17 42 1716806400123 1716806430123
 *     cmd-43-1 43 1716806500456 1716806530456
 *     crc32 f47dce26
 *
 * Each id line is "<id> <term> <accepted_ms> <expires_ms>" (wall clock,
 * milliseconds since the epoch), oldest first. The last line is the CRC-32
 * (IEEE 802.3, as zlib computes it) of every byte before it, in 8 lower-case
 * hex digits. Every line ends with '\n'; nothing follows the checksum.
 * Decoding is strict: a file that breaks any rule is corrupt, and the agent
 * refuses to start with it (it cannot know which commands already ran).
 *
 * In memory the ids are one array, oldest first; a full array drops its
 * first entry. Lookups are linear: records hold thousands of ids, and a
 * command also costs an fsync, which dwarfs the scan.
 *
 * Every change is made in memory, written, and undone in memory when the
 * write fails, so memory and disk agree whatever happens. */
#include "agentproto/agent_fence.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/mpread.h"
#include "common/util.h"

#define FENCE_MAGIC "rems-agent fence 1"
/* A file is at most this big: ids are at most 64 bytes and numbers 20
 * digits, so a line is below 130 bytes; this allows over a million ids. */
#define FENCE_FILE_MAX ((size_t)256 << 20)

struct fence_entry {
    char id[PROTO_ID_MAX + 1];
    uint64_t term;
    uint64_t accepted_ms;
    uint64_t expires_ms;
};

struct agent_fence {
    char *dir;
    char *path;     /* <dir>/fence */
    char *tmp_path; /* <dir>/fence.tmp */
    uint64_t highest_term;
    struct fence_entry *entries; /* Oldest first. */
    size_t n;
    size_t cap;           /* Allocated entries. */
    size_t kept;          /* At most this many. */
    struct rems_buf text; /* Reused by every write. */
};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static uint32_t crc32_ieee(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t crc = 0xffffffffu;
    size_t i;
    int k;

    for (i = 0; i < len; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static void strerror_into(int errnum, char *buf, size_t size)
{
    if (strerror_r(errnum, buf, size) != 0) {
        snprintf(buf, size, "error %d", errnum);
    }
}

/* "@what <path>: <strerror>" into @errmsg; REMS_ENOSPACE or REMS_EIO. */
static int
io_error(int errnum, const char *what, const char *path, char *errmsg)
{
    char reason[128];

    strerror_into(errnum, reason, sizeof reason);
    rems_errmsgf(errmsg, "%s %s: %s", what, path, reason);
    return errnum == ENOSPC || errnum == EDQUOT ? REMS_ENOSPACE : REMS_EIO;
}

/* @ms as "2024-05-27T12:00:01.250Z" into @out (32 bytes). */
static void format_time(uint64_t ms, char *out)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, 32, "%" PRIu64 " ms", ms);
        return;
    }
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(ms % 1000));
}

static ssize_t find(const struct agent_fence *f, const char *id)
{
    size_t i;

    for (i = 0; i < f->n; i++) {
        if (strcmp(f->entries[i].id, id) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

/* Make room for one more entry (up to f->kept). */
static int reserve(struct agent_fence *f)
{
    struct fence_entry *bigger;
    size_t cap;

    if (f->n < f->cap || f->cap == f->kept) {
        return 0;
    }
    cap = f->cap == 0 ? 64 : f->cap * 2;
    if (cap > f->kept) {
        cap = f->kept;
    }
    bigger = rems_realloc(f->entries, cap * sizeof *bigger);
    if (bigger == NULL) {
        return REMS_ENOMEM;
    }
    f->entries = bigger;
    f->cap = cap;
    return 0;
}

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

static int encode(struct agent_fence *f, char *errmsg)
{
    const struct fence_entry *e;
    size_t i;

    f->text.len = 0;
    f->text.failed = false;
    rems_buf_printf(&f->text, "%s\nhighest_term %" PRIu64 "\nids %zu\n",
                    FENCE_MAGIC, f->highest_term, f->n);
    for (i = 0; i < f->n; i++) {
        e = &f->entries[i];
        rems_buf_printf(&f->text, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                        e->id, e->term, e->accepted_ms, e->expires_ms);
    }
    if (!f->text.failed) {
        rems_buf_printf(&f->text, "crc32 %08" PRIx32 "\n",
                        crc32_ieee(f->text.data, f->text.len));
    }
    if (f->text.failed) {
        f->text.failed = false;
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write the record to the file: temporary file, fsync, rename, fsync of
 * the directory. */
static int save(struct agent_fence *f, char *errmsg)
{
    int fd;
    int e;
    int rv;

    rv = encode(f, errmsg);
    if (rv != 0) {
        goto err;
    }
    fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = io_error(errno, "create", f->tmp_path, errmsg);
        goto err;
    }
    e = write_all(fd, f->text.data, f->text.len);
    if (e != 0) {
        rv = io_error(e, "write", f->tmp_path, errmsg);
        goto err_after_open;
    }
    if (fsync(fd) != 0) {
        rv = io_error(errno, "fsync", f->tmp_path, errmsg);
        goto err_after_open;
    }
    if (close(fd) != 0) {
        rv = io_error(errno, "close", f->tmp_path, errmsg);
        goto err_after_create;
    }
    if (rename(f->tmp_path, f->path) != 0) {
        rv = io_error(errno, "rename to", f->path, errmsg);
        goto err_after_create;
    }
    fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        /* The rename is done; only its durability is in doubt. The caller
         * undoes its change in memory and refuses the command, which is
         * safe whichever record survives a crash. */
        rv = io_error(errno, "open", f->dir, errmsg);
        goto err;
    }
    if (fsync(fd) != 0) {
        rv = io_error(errno, "fsync", f->dir, errmsg);
        close(fd);
        goto err;
    }
    close(fd);
    return 0;

err_after_open:
    close(fd);
err_after_create:
    unlink(f->tmp_path);
err:
    POST(rv != 0);
    return rv;
}

/* A parser of the file text: where it is and the line number. */
struct reader {
    const char *p;
    const char *end;
    size_t line;
    const char *why; /* Set on failure. */
};

/* Take the next line (without '\n') into *@s, *@len. */
static bool next_line(struct reader *r, const char **s, size_t *len)
{
    const char *nl;

    r->line++;
    if (r->p == r->end) {
        r->why = "the file ends early";
        return false;
    }
    nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    if (nl == NULL) {
        r->why = "the last line is cut";
        return false;
    }
    *s = r->p;
    *len = (size_t)(nl - r->p);
    r->p = nl + 1;
    return true;
}

/* Parse the decimal at the start of @s (up to a space or the end, *@used
 * bytes) into *@v. */
static bool parse_u64(const char *s, size_t len, uint64_t *v, size_t *used)
{
    char buf[24];
    size_t n = 0;

    while (n < len && s[n] != ' ') {
        n++;
    }
    if (n == 0 || n >= sizeof buf || (n > 1 && s[0] == '0')) {
        return false;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (rems_parse_u64(buf, v) != 0) {
        return false;
    }
    *used = n;
    return true;
}

/* "<word> <u64>" */
static bool keyed_u64(struct reader *r, const char *word, uint64_t *v)
{
    size_t wlen = strlen(word);
    const char *s;
    size_t len;
    size_t used;

    if (!next_line(r, &s, &len)) {
        return false;
    }
    if (len <= wlen + 1 || memcmp(s, word, wlen) != 0 || s[wlen] != ' ' ||
        !parse_u64(s + wlen + 1, len - wlen - 1, v, &used) ||
        used != len - wlen - 1) {
        r->why = word[0] == 'h' ? "expected highest_term <number>"
                                : "expected ids <number>";
        return false;
    }
    return true;
}

/* "<id> <term> <accepted_ms> <expires_ms>" */
static bool entry_line(struct reader *r, struct fence_entry *e)
{
    uint64_t v[3];
    const char *s;
    size_t len;
    size_t id_len;
    size_t off;
    size_t used;
    int k;

    if (!next_line(r, &s, &len)) {
        return false;
    }
    for (id_len = 0; id_len < len && s[id_len] != ' '; id_len++) {
    }
    if (id_len == 0 || id_len > PROTO_ID_MAX) {
        r->why = "expected <id> <term> <accepted_ms> <expires_ms>";
        return false;
    }
    memcpy(e->id, s, id_len);
    e->id[id_len] = '\0';
    if (!rems_id_valid(e->id)) {
        r->why = "the command id is not valid";
        return false;
    }
    off = id_len;
    for (k = 0; k < 3; k++) {
        if (off >= len || s[off] != ' ' ||
            !parse_u64(s + off + 1, len - off - 1, &v[k], &used)) {
            r->why = "expected <id> <term> <accepted_ms> <expires_ms>";
            return false;
        }
        off += 1 + used;
    }
    if (off != len) {
        r->why = "expected <id> <term> <accepted_ms> <expires_ms>";
        return false;
    }
    e->term = v[0];
    e->accepted_ms = v[1];
    e->expires_ms = v[2];
    if (e->term == 0) {
        r->why = "a term is 0";
        return false;
    }
    if (e->expires_ms < e->accepted_ms) {
        r->why = "expires_ms is before accepted_ms";
        return false;
    }
    return true;
}

/* Decode @len bytes of @text into @f (empty, with f->kept set). */
static int
decode(struct agent_fence *f, const char *text, size_t len, char *errmsg)
{
    struct reader r = {text, text + len, 0, NULL};
    struct fence_entry e;
    const char *crc_start;
    const char *s;
    uint64_t highest;
    uint64_t count;
    uint64_t i;
    size_t skip;
    size_t slen;
    uint32_t crc;
    char want[32];
    int rv;

    if (!next_line(&r, &s, &slen) || slen != strlen(FENCE_MAGIC) ||
        memcmp(s, FENCE_MAGIC, slen) != 0) {
        r.why = r.why != NULL ? r.why : "not a fence file (bad first line)";
        goto corrupt;
    }
    if (!keyed_u64(&r, "highest_term", &highest) ||
        !keyed_u64(&r, "ids", &count)) {
        goto corrupt;
    }
    if (count > (uint64_t)(len / 8)) {
        r.why = "more ids than the file can hold";
        goto corrupt;
    }
    skip = count > f->kept ? (size_t)count - f->kept : 0;
    for (i = 0; i < count; i++) {
        if (!entry_line(&r, &e)) {
            goto corrupt;
        }
        if (e.term > highest) {
            r.why = "a term is above highest_term";
            goto corrupt;
        }
        if (find(f, e.id) >= 0) {
            r.why = "a command id is listed twice";
            goto corrupt;
        }
        if (i < skip) {
            continue;
        }
        if (reserve(f) != 0) {
            rems_errmsg_oom(errmsg);
            rv = REMS_ENOMEM;
            goto err;
        }
        f->entries[f->n++] = e;
    }
    crc_start = r.p;
    if (!next_line(&r, &s, &slen)) {
        goto corrupt;
    }
    crc = crc32_ieee(text, (size_t)(crc_start - text));
    snprintf(want, sizeof want, "crc32 %08" PRIx32, crc);
    if (slen != strlen(want) || memcmp(s, want, slen) != 0) {
        r.why = slen > 6 && memcmp(s, "crc32 ", 6) == 0
                    ? "checksum mismatch"
                    : "expected crc32 <checksum>";
        goto corrupt;
    }
    if (r.p != r.end) {
        r.line++;
        r.why = "bytes after the checksum";
        goto corrupt;
    }
    f->highest_term = highest;
    return 0;

corrupt:
    rems_errmsgf(errmsg, "%s: corrupt at line %zu: %s", f->path, r.line, r.why);
    rv = REMS_ECORRUPT;
err:
    f->n = 0;
    POST(rv != 0);
    return rv;
}

/* Read the file into *@out (*@len bytes); REMS_ENOTFOUND when missing. */
static int read_file(const char *path, char **out, size_t *len, char *errmsg)
{
    struct stat st;
    char *buf;
    size_t used = 0;
    ssize_t n;
    int fd;
    int rv;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        return REMS_ENOTFOUND;
    }
    if (fd < 0) {
        rv = io_error(errno, "open", path, errmsg);
        goto err;
    }
    if (fstat(fd, &st) != 0) {
        rv = io_error(errno, "stat", path, errmsg);
        goto err_after_open;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > FENCE_FILE_MAX) {
        rems_errmsgf(errmsg,
                     "%s: corrupt: not a regular file of at most %zu "
                     "bytes",
                     path, FENCE_FILE_MAX);
        rv = REMS_ECORRUPT;
        goto err_after_open;
    }
    buf = rems_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_open;
    }
    while (used < (size_t)st.st_size) {
        n = read(fd, buf + used, (size_t)st.st_size - used);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rv = io_error(errno, "read", path, errmsg);
            goto err_after_alloc;
        }
        if (n == 0) {
            break;
        }
        used += (size_t)n;
    }
    close(fd);

    *out = buf;
    *len = used;
    return 0;

err_after_alloc:
    rems_free(buf);
err_after_open:
    close(fd);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * The API
 * ------------------------------------------------------------------------ */

static char *path_join(const char *dir, const char *name)
{
    size_t dlen = strlen(dir);
    size_t nlen = strlen(name);
    char *p = rems_malloc(dlen + nlen + 2);

    if (p != NULL) {
        memcpy(p, dir, dlen);
        p[dlen] = '/';
        memcpy(p + dlen + 1, name, nlen + 1);
    }
    return p;
}

int agent_fence_open(const char *dir,
                     size_t kept,
                     struct agent_fence **out,
                     char *errmsg)
{
    struct agent_fence *f;
    char *text;
    size_t len;
    int rv;

    PRE(dir != NULL && kept >= 1 && out != NULL && errmsg != NULL);

    f = rems_calloc(1, sizeof *f);
    if (f == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    f->kept = kept;
    rems_buf_init(&f->text);
    f->dir = rems_strdup(dir);
    f->path = path_join(dir, AGENT_FENCE_FILE);
    f->tmp_path = path_join(dir, AGENT_FENCE_TMP_FILE);
    if (f->dir == NULL || f->path == NULL || f->tmp_path == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    if (unlink(f->tmp_path) != 0 && errno != ENOENT) {
        rv = io_error(errno, "remove", f->tmp_path, errmsg);
        goto err_after_alloc;
    }
    rv = read_file(f->path, &text, &len, errmsg);
    if (rv == REMS_ENOTFOUND) {
        rv = save(f, errmsg);
        if (rv != 0) {
            goto err_after_alloc;
        }
    } else if (rv != 0) {
        goto err_after_alloc;
    } else {
        rv = decode(f, text, len, errmsg);
        rems_free(text);
        if (rv != 0) {
            goto err_after_alloc;
        }
    }

    *out = f;
    return 0;

err_after_alloc:
    agent_fence_close(f);
err:
    POST(rv != 0);
    return rv;
}

void agent_fence_close(struct agent_fence *f)
{
    if (f == NULL) {
        return;
    }
    rems_buf_close(&f->text);
    rems_free(f->entries);
    rems_free(f->tmp_path);
    rems_free(f->path);
    rems_free(f->dir);
    rems_free(f);
}

uint64_t agent_fence_highest_term(const struct agent_fence *f)
{
    PRE(f != NULL);
    return f->highest_term;
}

size_t agent_fence_count(const struct agent_fence *f)
{
    PRE(f != NULL);
    return f->n;
}

const char *agent_fence_path(const struct agent_fence *f)
{
    PRE(f != NULL);
    return f->path;
}

int agent_fence_check(const struct agent_fence *f,
                      const char *id,
                      uint64_t term,
                      uint64_t ttl_ms,
                      uint64_t elapsed_ms,
                      uint64_t now_wall_ms,
                      char *message)
{
    char when[32];
    ssize_t i;

    PRE(f != NULL && id != NULL && message != NULL);

    if (term < f->highest_term) {
        rems_errmsgf(message,
                     "term %" PRIu64 " is below %" PRIu64
                     ", the highest accepted",
                     term, f->highest_term);
        return PROTO_NACK_STALE_TERM;
    }
    i = find(f, id);
    if (i >= 0) {
        format_time(f->entries[i].accepted_ms, when);
        rems_errmsgf(message,
                     "command %s was accepted at %s (term %" PRIu64 ")", id,
                     when, f->entries[i].term);
        return PROTO_NACK_DUPLICATE;
    }
    if (ttl_ms == 0) {
        rems_errmsgf(message, "ttl_remaining_ms was 0 on receipt");
        return PROTO_NACK_EXPIRED;
    }
    if (elapsed_ms >= ttl_ms) {
        rems_errmsgf(message, "ttl of %" PRIu64 " ms spent %" PRIu64 " ms ago",
                     ttl_ms, elapsed_ms - ttl_ms);
        return PROTO_NACK_EXPIRED;
    }
    if (f->n == f->kept && f->entries[0].expires_ms > now_wall_ms) {
        format_time(f->entries[0].expires_ms, when);
        rems_errmsgf(message,
                     "all %zu command ids kept (executed_ids_kept) are "
                     "within their ttl; the oldest, %s, until %s",
                     f->n, f->entries[0].id, when);
        return PROTO_NACK_BUSY;
    }
    return AGENT_FENCE_ACCEPT;
}

int agent_fence_record(struct agent_fence *f,
                       const char *id,
                       uint64_t term,
                       uint64_t now_wall_ms,
                       uint64_t ttl_remaining_ms,
                       char *errmsg)
{
    struct fence_entry dropped;
    uint64_t old_highest;
    bool full;
    int rv;

    PRE(f != NULL && id != NULL && errmsg != NULL);
    PRE(rems_id_valid(id) && term >= 1);
    /* agent_fence_check() accepted it: invariants 4 and 6. */
    REMS_ASSERT(term >= f->highest_term);
    REMS_ASSERT(find(f, id) < 0);

    full = f->n == f->kept;
    if (!full && reserve(f) != 0) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    old_highest = f->highest_term;
    if (full) {
        dropped = f->entries[0];
        memmove(&f->entries[0], &f->entries[1],
                (f->n - 1) * sizeof f->entries[0]);
        f->n--;
    }
    memset(&f->entries[f->n], 0, sizeof f->entries[0]);
    snprintf(f->entries[f->n].id, sizeof f->entries[0].id, "%s", id);
    f->entries[f->n].term = term;
    f->entries[f->n].accepted_ms = now_wall_ms;
    f->entries[f->n].expires_ms = now_wall_ms + ttl_remaining_ms;
    f->n++;
    f->highest_term = term;
    rv = save(f, errmsg);
    if (rv != 0) {
        goto err_after_change;
    }
    return 0;

err_after_change:
    f->n--;
    f->highest_term = old_highest;
    if (full) {
        memmove(&f->entries[1], &f->entries[0], f->n * sizeof f->entries[0]);
        f->entries[0] = dropped;
        f->n++;
    }
err:
    POST(rv != 0);
    return rv;
}

int agent_fence_forget(struct agent_fence *f, const char *id, char *errmsg)
{
    struct fence_entry e;
    ssize_t found;
    size_t i;
    int rv;

    PRE(f != NULL && id != NULL && errmsg != NULL);

    found = find(f, id);
    if (found < 0) {
        return 0;
    }
    i = (size_t)found;
    e = f->entries[i];
    memmove(&f->entries[i], &f->entries[i + 1],
            (f->n - i - 1) * sizeof f->entries[0]);
    f->n--;
    rv = save(f, errmsg);
    if (rv != 0) {
        goto err_after_remove;
    }
    return 0;

err_after_remove:
    memmove(&f->entries[i + 1], &f->entries[i],
            (f->n - i) * sizeof f->entries[0]);
    f->entries[i] = e;
    f->n++;
    POST(rv != 0);
    return rv;
}
