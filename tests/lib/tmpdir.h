/* tests/lib/tmpdir.h: temporary directories under $TMPDIR (or /tmp). */
#ifndef REMS_TESTS_LIB_TMPDIR_H
#define REMS_TESTS_LIB_TMPDIR_H

#define TEST_TMPDIR_SIZE 256

/* Create a fresh directory and write its path into @dir; aborts on error. */
void test_tmpdir_make(char *dir);

/* Remove @dir and everything below it. */
void test_tmpdir_remove(const char *dir);

#endif
