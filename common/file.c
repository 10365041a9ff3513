/* common/file.c: see common/file.h. Built without _GNU_SOURCE, so
 * strerror_r is the XSI one (int, fills the buffer). */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/error.h"
#include "common/heap.h"

static void path_error(const char *path, int errnum, char *errmsg)
{
    char reason[128];

    if (strerror_r(errnum, reason, sizeof reason) != 0) {
        snprintf(reason, sizeof reason, "error %d", errnum);
    }
    rems_errmsgf(errmsg, "%s: %s", path, reason);
}

int rems_read_file(const char *path,
                   size_t max,
                   char **out,
                   size_t *len,
                   char *errmsg)
{
    size_t used = 0;
    size_t cap = 4096;
    char *buf;
    char *bigger;
    ssize_t n;
    int fd;
    int rv;

    PRE(path != NULL && out != NULL && len != NULL && errmsg != NULL);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        path_error(path, errno, errmsg);
        rv = REMS_EIO;
        goto err;
    }
    buf = rems_malloc(cap);
    if (buf == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_open;
    }
    for (;;) {
        if (used + 1 >= cap) { /* room for the NUL */
            bigger = rems_realloc(buf, cap * 2);
            if (bigger == NULL) {
                rems_errmsg_oom(errmsg);
                rv = REMS_ENOMEM;
                goto err_after_alloc;
            }
            buf = bigger;
            cap *= 2;
        }
        n = read(fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            path_error(path, errno, errmsg);
            rv = REMS_EIO;
            goto err_after_alloc;
        }
        if (n == 0) {
            break;
        }
        used += (size_t)n;
        if (used > max) {
            rems_errmsgf(errmsg, "%s: larger than %zu bytes", path, max);
            rv = REMS_ETOOBIG;
            goto err_after_alloc;
        }
    }
    close(fd);
    buf[used] = '\0';
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
