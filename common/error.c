/* Error codes and messages, generated from the REMS_ERRORS table. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rems_strerror(int code)
{
    switch (code) {
        case 0:
            return "success";
#define REMS__ERROR_MSG(name, value, msg)                                      \
    case (value):                                                              \
        return (msg);
            REMS_ERRORS(REMS__ERROR_MSG)
#undef REMS__ERROR_MSG
        default:
            return "unknown error";
    }
}

const char *rems_errname(int code)
{
    switch (code) {
        case 0:
            return "OK";
#define REMS__ERROR_NAME(name, value, msg)                                     \
    case (value):                                                              \
        return #name;
            REMS_ERRORS(REMS__ERROR_NAME)
#undef REMS__ERROR_NAME
        default:
            return "REMS_EUNKNOWN";
    }
}

void rems_errmsgf(char *errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, REMS_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

void rems_errmsg_wrap(char *errmsg, const char *prefix)
{
    char tmp[REMS_ERRMSG_SIZE];
    memcpy(tmp, errmsg, REMS_ERRMSG_SIZE);
    tmp[REMS_ERRMSG_SIZE - 1] = '\0';
    snprintf(errmsg, REMS_ERRMSG_SIZE, "%s: %s", prefix, tmp);
}

void rems_errmsg_oom(char *errmsg)
{
    snprintf(errmsg, REMS_ERRMSG_SIZE, "out of memory");
}
