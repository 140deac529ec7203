/*
 * fuzz_jtext.c - libFuzzer target for the walk over PostgreSQL's JSON text (jtext.h).
 *
 * Any input: no read outside the bounds given (the sanitizers watch), and a walk that ends.
 * Input without NUL bytes (PostgreSQL's text has none; jansson reads them its own way) that
 * jansson reads as a JSON array: the walk finds exactly its elements, each element's
 * text reads as the same value, and where jtext_ok_member takes an element for {"ok": value},
 * the element is an object whose "ok" member is that value's text.
 */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jtext.h"

static json_t *load(const char *s, size_t n)
{
    return json_loadb(s, n, JSON_DECODE_ANY, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *s = (const char *)data;
    size_t start, end, vs, ve, count = 0;

    for (size_t i = 0; i <= n && i < 64; i++) {
        size_t e = jtext_value_end(s, n, i);
        assert(e == 0 || (e > i && e <= n));
    }
    (void)jtext_ok_member(s, n, &vs, &ve);
    (void)jtext_has_long_number(s, n);

    bool compare = memchr(s, '\0', n) == NULL;
    json_t *whole = compare ? load(s, n) : NULL;
    struct jtext_array a;
    jtext_array_open(&a, s, n);
    while (jtext_array_next(&a, &start, &end)) {
        assert(start < end && end <= n);
        json_t *elem = compare ? load(s + start, end - start) : NULL;
        if (json_is_array(whole)) {
            assert(elem != NULL && json_equal(elem, json_array_get(whole, count)));
        }
        if (jtext_ok_member(s + start, end - start, &vs, &ve)) {
            assert(vs < ve && ve <= end - start);
            if (elem != NULL) {
                json_t *v = load(s + start + vs, ve - vs);
                assert(json_is_object(elem) && v != NULL &&
                       json_equal(v, json_object_get(elem, "ok")));
                json_decref(v);
            }
        }
        json_decref(elem);
        count++;
        assert(count <= n);
    }
    if (json_is_array(whole))
        assert(!a.bad && count == json_array_size(whole));
    json_decref(whole);
    return 0;
}
