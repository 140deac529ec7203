/*
 * test_pdf.c - the PDF statement writer: WinAnsi conversion, page layout, and whole documents
 * written to a file and read back (header, trailer, page count, title).
 */
#include "pdf.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void expect_winansi(const char *in, const char *want, size_t want_chars)
{
    char out[64];
    size_t chars = pdf_winansi(in, strlen(in), out, sizeof(out));

    assert_int_equal(chars, want_chars);
    assert_memory_equal(out, want, strlen(want) + 1);
}

static void test_winansi(void **state)
{
    (void)state;
    expect_winansi("Hotel Demo 12.34", "Hotel Demo 12.34", 16);
    /* Latin-1 letters keep their code, the euro sign and typographic quotes map to 0x80-0x9F */
    expect_winansi("Jos\xc3\xa9 M\xc3\xbcller", "Jos\xe9 M\xfcller", 11);
    expect_winansi("\xe2\x82\xac 5 \xe2\x80\x9cok\xe2\x80\x9d \xe2\x80\x93", "\x80 5 \x93ok\x94 \x96",
                   10);
    expect_winansi("\xc5\x92uvre \xc5\xa0", "\x8cuvre \x8a", 7);
    /* outside WinAnsi: one '?' per character, whatever its length in bytes */
    expect_winansi("\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x9b\x8e", "?? ?", 4);
    /* invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong '/', a
     * surrogate: each bad byte one '?' */
    expect_winansi("a\x80z", "a?z", 3);
    expect_winansi("a\xc3", "a?", 2);
    expect_winansi("\xc0\xaf!", "?" "?!", 3);
    expect_winansi("\xed\xa0\x80", "???", 3);
    /* control characters become spaces */
    expect_winansi("a\tb\x01" "c\x7f", "a b c ", 6);
    /* C1 controls encoded in UTF-8 are not the CP1252 glyphs of those bytes */
    expect_winansi("\xc2\x80", " ", 1);
}

static void test_winansi_short_output(void **state)
{
    char out[4];
    (void)state;
    assert_int_equal(pdf_winansi("abcdef", 6, out, sizeof(out)), 6);
    assert_string_equal(out, "abc");
    assert_int_equal(pdf_winansi("\xc3\xa9\xc3\xa9", 4, NULL, 0), 2);
}

static void test_layout(void **state)
{
    struct pdf_layout l;
    (void)state;

    pdf_layout_for(0, 0, &l);
    assert_int_equal(l.pages, 1);
    pdf_layout_for(10, 78, &l);
    assert_true(l.font_size == 9.0);
    assert_true(l.lines_per_page >= 50 && l.lines_per_page <= 70);
    assert_int_equal(l.pages, 1);

    size_t per = l.lines_per_page;
    pdf_layout_for(per, 78, &l);
    assert_int_equal(l.pages, 1);
    pdf_layout_for(per + 1, 78, &l);
    assert_int_equal(l.pages, 2);
    pdf_layout_for(3 * per, 78, &l);
    assert_int_equal(l.pages, 3);

    /* wider than the page at 9 pt: smaller type, so more lines per page, never below 5 pt */
    pdf_layout_for(10, 120, &l);
    assert_true(l.font_size < 9.0 && l.font_size > 5.0);
    assert_true(l.font_size * 0.6 * 120 <= 595.276 - 2 * 56.7 + 1e-9);
    assert_true(l.lines_per_page > per);
    pdf_layout_for(10, 1000, &l);
    assert_true(l.font_size == 5.0);
}

/* The whole file in a NUL-terminated buffer (PDF bytes may contain NULs: search with memmem). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static void write_and_check(const char *text, size_t want_pages)
{
    char path[] = "/tmp/foliod-test-pdf-XXXXXX";
    char err[256] = "";
    char count[32];
    int fd = mkstemp(path);
    size_t len;

    assert_true(fd >= 0);
    close(fd);
    if (!pdf_write_text(text, "Folio statement F000042", path, err, sizeof(err)))
        fail_msg("pdf_write_text: %s", err);
    char *pdf = slurp(path, &len);
    unlink(path);
    assert_memory_equal(pdf, "%PDF-1.", 7);
    assert_non_null(memmem(pdf, len, "%%EOF", 5));
    snprintf(count, sizeof(count), "/Count %zu", want_pages);
    if (memmem(pdf, len, count, strlen(count)) == NULL)
        fail_msg("no '%s' in the document", count);
    assert_non_null(memmem(pdf, len, "Folio statement F000042", 23)); /* the title, as info */
    assert_non_null(memmem(pdf, len, "/Courier", 8));
    free(pdf);
}

static void test_write(void **state)
{
    struct pdf_layout l;
    char *big;
    size_t n = 0;
    (void)state;

    write_and_check("Hotel Demo\nFOLIO STATEMENT F000042\n\n2026-11-23  Dinner   20.00\n", 1);
    write_and_check("", 1);

    /* two pages and one line */
    pdf_layout_for(1, 78, &l);
    size_t lines = 2 * l.lines_per_page + 1;
    big = malloc(lines * 80 + 1);
    assert_non_null(big);
    for (size_t i = 0; i < lines; i++)
        n += (size_t)sprintf(big + n, "%-10zu Caf\xc3\xa9 cr\xc3\xa8me  %50s\r\n", i, "1.00");
    write_and_check(big, 3);
    free(big);
}

static void test_write_refused(void **state)
{
    char err[256] = "";
    (void)state;
    assert_false(pdf_write_text("x\n", "t", "/nonexistent-dir/x.pdf", err, sizeof(err)));
    assert_true(strstr(err, "/nonexistent-dir/x.pdf") != NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_winansi),
        cmocka_unit_test(test_winansi_short_output),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_write_refused),
    };
    return cmocka_run_group_tests_name("pdf", tests, NULL, NULL);
}
