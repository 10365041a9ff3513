/* Temporary directories for tests. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tests/lib/tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void test_tmpdir_make(char *dir)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, TEST_TMPDIR_SIZE, "%s/rems-test-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

static int rm_one(const char *path,
                  const struct stat *sb,
                  int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_tmpdir_remove(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
