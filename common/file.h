/* common/file.h: reading a whole small file (configuration, scenario,
 * policy documents) with a size limit. */
#ifndef REMS_COMMON_FILE_H
#define REMS_COMMON_FILE_H

#include <stddef.h>

/* Read the file @path into *@out (rems_malloc'd, *@len bytes, followed by
 * one NUL byte that *@len does not count). Returns 0; REMS_EIO when it
 * cannot be opened or read (@errmsg: "<path>: <reason>"); REMS_ETOOBIG
 * when it holds more than @max bytes (@errmsg: "<path>: larger than <max>
 * bytes"), found before more than @max + one read's worth is buffered; or
 * REMS_ENOMEM. Any thread. */
int rems_read_file(const char *path,
                   size_t max,
                   char **out,
                   size_t *len,
                   char *errmsg);

#endif /* REMS_COMMON_FILE_H */
