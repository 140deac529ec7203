/*
 * jtext.h - walking the text of JSON that PostgreSQL wrote (the output of a jsonb value)
 * without building it: the bounds of a value, the elements of an array, and the result in an
 * answer of fl_batch ({"ok": result}). The daemon passes a result's text on to its client as
 * it came, instead of parsing it into a tree and writing the tree out again.
 *
 * Meant for text that is valid JSON (PostgreSQL's jsonb output is): a walk only tracks strings,
 * escapes and nesting, and does not check the tokens in between. Text that is not JSON never
 * makes it read outside the given bounds; the walk then stops with an error, or gives bounds
 * around text that is not JSON either.
 */
#ifndef FOLIOD_JTEXT_H
#define FOLIOD_JTEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The end (one past the last byte) of the JSON value that starts at s[i], or 0 when the text
 * from i is not one value: it starts at the end, at white space or at a separator, or a string
 * or a container is not closed. Brackets are counted, not matched by kind ("[}" ends a value).
 * A scalar other than a string ends at the first separator, bracket, quote, white space or NUL. */
size_t jtext_value_end(const char *s, size_t len, size_t i);

/* Digits in a row, outside strings, from which a number may not fit a 64-bit integer. */
#define JTEXT_LONG_DIGITS 19

/* Whether s[0, len) has a number of JTEXT_LONG_DIGITS digits or more outside its strings (an
 * integer that JSON readers such as jansson may refuse). Also false when a string is not
 * closed. */
bool jtext_has_long_number(const char *s, size_t len);

/* A walk over the elements of a JSON array. */
struct jtext_array {
    const char *s;
    size_t len;
    size_t pos;
    size_t n; /* elements given so far */
    bool done;
    bool bad; /* the text is not an array of values, as far as the walk went */
};

/* Starts a walk over the array that is the whole of s[0, len) (white space around allowed);
 * false (and a->bad) when the text does not start with '['. */
bool jtext_array_open(struct jtext_array *a, const char *s, size_t len);

/* The next element's bounds, s[*start, *end); false at the end of the array, or when the text
 * is not what an array's is (then a->bad), e.g. a missing comma, a trailing one, or text after
 * the closing bracket. */
bool jtext_array_next(struct jtext_array *a, size_t *start, size_t *end);

/* Whether s[0, len) is exactly an object with the single member "ok" (in jsonb's spelling,
 * `{"ok": value}`, or without the spaces); if so the value's bounds, s[*vstart, *vend). */
bool jtext_ok_member(const char *s, size_t len, size_t *vstart, size_t *vend);

#endif
