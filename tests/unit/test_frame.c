/* test_frame.c - the line codec: whole lines, split lines, CR LF, limits, recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static void append(char *out, size_t outlen, const char *s, size_t n)
{
    size_t used = strlen(out);
    assert_true(used + n < outlen);
    memcpy(out + used, s, n);
    out[used + n] = '\0';
}

/* Feeds data in chunks of `chunk` bytes and records every event as text. */
static void feed(struct frame_decoder *d, const char *data, size_t n, size_t chunk, char *out,
                 size_t outlen)
{
    out[0] = '\0';
    for (size_t off = 0; off < n;) {
        size_t left = n - off < chunk ? n - off : chunk;
        const char *p = data + off;
        off += left;
        while (left > 0) {
            size_t consumed = 0, len = 0;
            const char *line = NULL;
            enum frame_status st = frame_decode(d, p, left, &consumed, &line, &len);
            assert_true(consumed <= left);
            if (st == FRAME_LINE) {
                append(out, outlen, "[", 1);
                append(out, outlen, line, len);
                append(out, outlen, "]", 1);
            } else if (st == FRAME_TOO_LONG) {
                append(out, outlen, "<too long>", 10);
            } else {
                assert_int_equal(st, FRAME_NEED_MORE);
                assert_int_equal(consumed, left);
            }
            p += consumed;
            left -= consumed;
        }
    }
}

static void test_whole_lines(void **state)
{
    (void)state;
    struct frame_decoder d;
    frame_decoder_init(&d, 64);
    char out[512];
    const char *in = "{\"a\":1}\n{\"b\":2}\r\n\n\n{\"c\":3}\n";
    feed(&d, in, strlen(in), 1000, out, sizeof(out));
    assert_string_equal(out, "[{\"a\":1}][{\"b\":2}][{\"c\":3}]");
    assert_int_equal(frame_decoder_pending(&d), 0);
    frame_decoder_free(&d);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    struct frame_decoder d;
    frame_decoder_init(&d, 64);
    char out[512];
    const char *in = "{\"a\":1}\n{\"b\":22}\n{\"partial\"";
    feed(&d, in, strlen(in), 1, out, sizeof(out));
    assert_string_equal(out, "[{\"a\":1}][{\"b\":22}]");
    assert_int_equal(frame_decoder_pending(&d), strlen("{\"partial\""));
    frame_decoder_free(&d);
}

static void test_limit_exact_and_over(void **state)
{
    (void)state;
    struct frame_decoder d;
    frame_decoder_init(&d, 8);
    char out[512];
    /* exactly 8 bytes passes; 9 does not, and the next line is still read */
    const char *in = "12345678\n123456789\nok\n";
    feed(&d, in, strlen(in), 1000, out, sizeof(out));
    assert_string_equal(out, "[12345678]<too long>[ok]");
    frame_decoder_free(&d);
}

static void test_too_long_across_chunks(void **state)
{
    (void)state;
    struct frame_decoder d;
    frame_decoder_init(&d, 16);
    char big[200];
    memset(big, 'x', sizeof(big));
    char in[256];
    memcpy(in, big, sizeof(big));
    memcpy(in + sizeof(big), "\nafter\n", 7);
    char out[512];
    feed(&d, in, sizeof(big) + 7, 5, out, sizeof(out));
    /* reported once, then skipped up to the LF */
    assert_string_equal(out, "<too long>[after]");
    assert_int_equal(frame_decoder_pending(&d), 0);
    frame_decoder_free(&d);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(frame_status_str(FRAME_LINE), "line");
    assert_string_equal(frame_status_str(FRAME_TOO_LONG), "too_long");
    assert_string_equal(frame_status_str(FRAME_STATUS_MAX), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_lines),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_limit_exact_and_over),
        cmocka_unit_test(test_too_long_across_chunks),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
