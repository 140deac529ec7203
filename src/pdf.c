/*
 * pdf.c - plain text (a folio statement) to PDF with libharu.
 *
 * Courier 9 pt on A4, 2 cm margins, a footer with the title and "page N of M". The text is
 * the server's text statement, whose columns are counted in characters, so a fixed-width
 * font keeps them aligned. libharu reports errors through a handler; the first one is kept
 * and every later call is a no-op returning an error, so the result is checked once at the
 * end.
 */
#include "pdf.h"

#include <hpdf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PDF_PAGE_WIDTH 595.276 /* A4 in points */
#define PDF_PAGE_HEIGHT 841.89
#define PDF_MARGIN 56.7 /* 2 cm */
#define PDF_FOOTER 22.0 /* from the bottom margin up to the last text baseline */
#define PDF_FONT_SIZE 9.0
#define PDF_FONT_MIN 5.0
#define PDF_FOOTER_SIZE 7.5
#define PDF_COURIER_ADVANCE 0.6 /* every Courier glyph is 600/1000 em wide */

void pdf_layout_for(size_t lines, size_t columns, struct pdf_layout *out)
{
    double width = PDF_PAGE_WIDTH - 2 * PDF_MARGIN;
    double height = PDF_PAGE_HEIGHT - 2 * PDF_MARGIN - PDF_FOOTER;
    double size = PDF_FONT_SIZE;

    if (columns > 0 && size * PDF_COURIER_ADVANCE * (double)columns > width)
        size = width / (PDF_COURIER_ADVANCE * (double)columns);
    if (size < PDF_FONT_MIN)
        size = PDF_FONT_MIN; /* longer lines run into the margin rather than become unreadable */
    out->font_size = size;
    out->leading = size * 1.25;
    out->lines_per_page = (size_t)(height / out->leading);
    out->pages = lines == 0 ? 1 : (lines + out->lines_per_page - 1) / out->lines_per_page;
}

/* Windows-1252 bytes 0x80-0x9F and the code points they stand for (0: unused). */
static const uint16_t pdf_cp1252_high[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

static char pdf_winansi_char(uint32_t cp)
{
    if (cp == '\t' || (cp < 0x20) || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
        return ' ';
    if (cp < 0x80 || (cp >= 0xA0 && cp <= 0xFF))
        return (char)(unsigned char)cp;
    for (unsigned i = 0; i < 32; i++)
        if (pdf_cp1252_high[i] == cp)
            return (char)(unsigned char)(0x80 + i);
    return '?';
}

/* One UTF-8 sequence at s (n bytes left): its code point and length, or 0xFFFD and 1 byte
 * for anything invalid (truncated, overlong, surrogate, beyond U+10FFFF). */
static uint32_t pdf_utf8_next(const unsigned char *s, size_t n, size_t *used)
{
    unsigned len;
    uint32_t cp, min;

    *used = 1;
    if (s[0] < 0x80)
        return s[0];
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0xFFFD;
    }
    if (n < len)
        return 0xFFFD;
    for (unsigned i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0xFFFD;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0xFFFD;
    *used = len;
    return cp;
}

size_t pdf_winansi(const char *in, size_t inlen, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t chars = 0, o = 0, used;

    for (size_t i = 0; i < inlen; i += used) {
        uint32_t cp = pdf_utf8_next(s + i, inlen - i, &used);
        if (o + 1 < outlen)
            out[o++] = pdf_winansi_char(cp);
        chars++;
    }
    if (outlen > 0)
        out[o] = '\0';
    return chars;
}

struct pdf_error {
    HPDF_STATUS code;
    HPDF_STATUS detail;
};

static void pdf_on_error(HPDF_STATUS code, HPDF_STATUS detail, void *arg)
{
    struct pdf_error *e = arg;

    if (e->code == 0) {
        e->code = code;
        e->detail = detail;
    }
}

/* The lines of text: the length of line i is measured up to its '\n' (a '\r' before it is
 * dropped). A final line end does not start another line. */
static size_t pdf_count_lines(const char *text, size_t *columns)
{
    size_t lines = 0;

    *columns = 0;
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        size_t chars = pdf_winansi(p, len, NULL, 0);
        if (chars > *columns)
            *columns = chars;
        lines++;
        p += len + (nl != NULL ? 1 : 0);
    }
    return lines;
}

static void pdf_footer(HPDF_Page page, HPDF_Font font, const char *title, size_t n, size_t of)
{
    char right[64];
    double y = PDF_MARGIN - PDF_FOOTER_SIZE;

    snprintf(right, sizeof(right), "page %zu of %zu", n, of);
    HPDF_Page_SetFontAndSize(page, font, PDF_FOOTER_SIZE);
    HPDF_Page_TextOut(page, PDF_MARGIN, y, title);
    HPDF_Page_TextOut(page, PDF_PAGE_WIDTH - PDF_MARGIN - HPDF_Page_TextWidth(page, right), y,
                      right);
}

bool pdf_write_text(const char *text, const char *title, const char *path, char *err,
                    size_t errlen)
{
    struct pdf_error e = {0, 0};
    struct pdf_layout lay;
    size_t columns, lines = pdf_count_lines(text, &columns);
    size_t cap = strlen(text) + 1, tlen = strlen(title);
    char *buf = malloc(cap);
    char *wtitle = malloc(tlen + 1);
    HPDF_Doc pdf = NULL;
    HPDF_Page page = NULL;
    HPDF_Font font;
    const char *p = text;
    bool ok = false;

    if (buf == NULL || wtitle == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    pdf = HPDF_New(pdf_on_error, &e);
    if (pdf == NULL) {
        snprintf(err, errlen, "cannot create a PDF document");
        goto out;
    }
    pdf_layout_for(lines, columns, &lay);
    pdf_winansi(title, tlen, wtitle, tlen + 1);
    HPDF_SetCompressionMode(pdf, HPDF_COMP_ALL);
    HPDF_SetInfoAttr(pdf, HPDF_INFO_TITLE, wtitle);
    HPDF_SetInfoAttr(pdf, HPDF_INFO_CREATOR, "foliod");
    font = HPDF_GetFont(pdf, "Courier", "WinAnsiEncoding");

    for (size_t pg = 0; pg < lay.pages && e.code == 0; pg++) {
        page = HPDF_AddPage(pdf);
        HPDF_Page_SetSize(page, HPDF_PAGE_SIZE_A4, HPDF_PAGE_PORTRAIT);
        HPDF_Page_BeginText(page);
        pdf_footer(page, font, wtitle, pg + 1, lay.pages);
        HPDF_Page_SetFontAndSize(page, font, lay.font_size);
        for (size_t i = 0; i < lay.lines_per_page && *p != '\0'; i++) {
            const char *nl = strchr(p, '\n');
            size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
            size_t keep = len > 0 && p[len - 1] == '\r' ? len - 1 : len;
            double y = PDF_PAGE_HEIGHT - PDF_MARGIN - lay.font_size - (double)i * lay.leading;

            pdf_winansi(p, keep, buf, cap);
            if (buf[0] != '\0')
                HPDF_Page_TextOut(page, PDF_MARGIN, y, buf);
            p += len + (nl != NULL ? 1 : 0);
        }
        HPDF_Page_EndText(page);
    }
    if (e.code == 0 && HPDF_SaveToFile(pdf, path) == HPDF_OK && e.code == 0) {
        ok = true;
    } else if (e.code == HPDF_FILE_OPEN_ERROR || e.code == HPDF_FILE_IO_ERROR) {
        snprintf(err, errlen, "cannot write %s", path);
    } else {
        snprintf(err, errlen, "PDF library error 0x%04X (detail %u)", (unsigned)e.code,
                 (unsigned)e.detail);
    }
out:
    if (pdf != NULL)
        HPDF_Free(pdf);
    free(buf);
    free(wtitle);
    return ok;
}
