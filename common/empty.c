/* Placeholder source for a module library that has no file yet. */
typedef int rems__empty_translation_unit;
