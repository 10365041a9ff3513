/* The failure end of PRE/POST/REMS_ASSERT. */
#include "common/assert.h"

#include <stdlib.h>

#include "common/log.h"

void rems__assert_fail(const char *expr,
                       const char *file,
                       int line,
                       const char *func)
{
    struct rems_log_line l;
    rems_log_begin(&l, REMS_LOG_ERROR, "assertion_failed");
    rems_log_str(&l, "expr", expr);
    rems_log_str(&l, "file", file);
    rems_log_i64(&l, "line", line);
    rems_log_str(&l, "func", func);
    rems_log_end(&l);
    abort();
}
