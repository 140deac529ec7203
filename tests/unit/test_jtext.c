/* test_jtext.c - walking PostgreSQL's JSON text: value bounds, array elements, {"ok": value}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jtext.h"

static size_t value_end(const char *s, size_t i)
{
    return jtext_value_end(s, strlen(s), i);
}

static void test_value_bounds(void **state)
{
    (void)state;
    assert_int_equal(value_end("42, 1", 0), 2);
    assert_int_equal(value_end("-1.5e3]", 0), 6);
    assert_int_equal(value_end("true}", 0), 4);
    assert_int_equal(value_end("null", 0), 4);
    assert_int_equal(value_end("\"a\\\"b\" x", 0), 6); /* an escaped quote */
    assert_int_equal(value_end("\"a\\\\\" x", 0), 5);  /* an escaped backslash */
    assert_int_equal(value_end("\"]}{[,\" x", 0), 7);  /* brackets inside a string */
    assert_int_equal(value_end("{\"a\": [1, {\"b\": \"}\"}]} 9", 0), 22);
    assert_int_equal(value_end("[] ", 0), 2);
    assert_int_equal(value_end("{}", 0), 2);
    assert_int_equal(value_end("x [1, 2]", 2), 8);
}

static void test_value_not_one(void **state)
{
    (void)state;
    assert_int_equal(value_end("", 0), 0);
    assert_int_equal(value_end("abc", 3), 0); /* at the end */
    assert_int_equal(value_end(", 1", 0), 0);
    assert_int_equal(value_end("] ", 0), 0);
    assert_int_equal(value_end(" 1", 0), 0);
    assert_int_equal(value_end("\"open", 0), 0);
    assert_int_equal(value_end("\"ends in an escape\\", 0), 0);
    assert_int_equal(value_end("{\"a\": [1, 2}", 0), 0); /* counted, not matched: still open */
    assert_int_equal(value_end("[[[", 0), 0);
    assert_int_equal(value_end("{\"a\": \"}", 0), 0);
    /* the bounds given are kept even where the text goes on */
    assert_int_equal(jtext_value_end("[1]", 2, 0), 0);
    assert_int_equal(jtext_value_end("\"ab\"", 3, 0), 0);
}

/* The elements of s as "start-end;" pairs, then "end" or "bad". */
static void walk(const char *s, char *out, size_t outlen)
{
    struct jtext_array a;
    size_t start, end;
    out[0] = '\0';
    jtext_array_open(&a, s, strlen(s));
    while (jtext_array_next(&a, &start, &end)) {
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%zu-%zu;", start, end);
    }
    size_t used = strlen(out);
    snprintf(out + used, outlen - used, "%s", a.bad ? "bad" : "end");
    /* the walk stays ended */
    assert_false(jtext_array_next(&a, &start, &end));
}

static void test_array_walk(void **state)
{
    char out[256];
    (void)state;
    walk("[]", out, sizeof(out));
    assert_string_equal(out, "end");
    walk(" [ ] \n", out, sizeof(out));
    assert_string_equal(out, "end");
    walk("[1]", out, sizeof(out));
    assert_string_equal(out, "1-2;end");
    walk("[{\"ok\": {\"a\": [1, 2]}}, {\"again\": true}, \"x,y\"]", out, sizeof(out));
    assert_string_equal(out, "1-22;24-39;41-46;end");
    walk("[1,2,3]", out, sizeof(out));
    assert_string_equal(out, "1-2;3-4;5-6;end");
}

static void test_array_not_one(void **state)
{
    char out[256];
    (void)state;
    walk("", out, sizeof(out));
    assert_string_equal(out, "bad");
    walk("{\"a\": 1}", out, sizeof(out));
    assert_string_equal(out, "bad");
    walk("[1 2]", out, sizeof(out));
    assert_string_equal(out, "1-2;bad");
    walk("[1,]", out, sizeof(out));
    assert_string_equal(out, "1-2;bad");
    walk("[,1]", out, sizeof(out));
    assert_string_equal(out, "bad");
    walk("[1] x", out, sizeof(out));
    assert_string_equal(out, "1-2;bad");
    walk("[1, \"open]", out, sizeof(out));
    assert_string_equal(out, "1-2;bad");
    walk("[1, 2", out, sizeof(out));
    assert_string_equal(out, "1-2;4-5;bad");
}

static void ok_value(const char *s, const char *want)
{
    size_t vs, ve;
    bool ok = jtext_ok_member(s, strlen(s), &vs, &ve);
    if (want == NULL) {
        assert_false(ok);
        return;
    }
    assert_true(ok);
    assert_int_equal(ve - vs, strlen(want));
    assert_memory_equal(s + vs, want, ve - vs);
}

static void test_ok_member(void **state)
{
    (void)state;
    ok_value("{\"ok\": {\"id\": 1, \"s\": \"}\"}}", "{\"id\": 1, \"s\": \"}\"}");
    ok_value("{\"ok\":null}", "null");
    ok_value("{ \"ok\" : [1, 2] }", "[1, 2]");
    ok_value("{\"ok\": \"text\"}", "\"text\"");
    ok_value("{\"error\": {\"sqlstate\": \"FL000\"}}", NULL);
    ok_value("{\"again\": true}", NULL);
    ok_value("{\"ok\": 1, \"error\": 2}", NULL); /* a second member */
    ok_value("{\"ok\": }", NULL);
    ok_value("{\"ok\": 1", NULL);
    ok_value("{\"ok\" 1}", NULL);
    ok_value("{\"okay\": 1}", NULL);
    ok_value("[\"ok\", 1]", NULL);
    ok_value("{\"ok\": 1} x", NULL);
    ok_value("", NULL);
    ok_value("{\"o", NULL);
}

static bool long_number(const char *s)
{
    return jtext_has_long_number(s, strlen(s));
}

static void test_long_number(void **state)
{
    (void)state;
    assert_false(long_number("{\"id\": 123456789012345678, \"x\": -1.5}")); /* 18 digits */
    assert_true(long_number("{\"id\": 1234567890123456789}"));              /* 19 */
    assert_true(long_number("[-10000000000000000000]"));
    assert_true(long_number("[0.1234567890123456789]")); /* digits in a row, wherever */
    assert_false(long_number("{\"key\": \"12345678901234567890\"}")); /* in a string */
    assert_false(long_number("[\"a\\\"12345678901234567890\"]"));     /* after an escaped quote */
    assert_false(long_number("[123456789, 123456789]"));
    assert_false(long_number(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_bounds), cmocka_unit_test(test_value_not_one),
        cmocka_unit_test(test_array_walk),   cmocka_unit_test(test_array_not_one),
        cmocka_unit_test(test_ok_member),    cmocka_unit_test(test_long_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
