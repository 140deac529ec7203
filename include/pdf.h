/*
 * pdf.h - a plain-text document (a folio statement) as a PDF a guest can be handed.
 *
 * The text is set in Courier (one of the PDF base fonts: nothing is embedded) on A4 pages,
 * so the columns of the server's text statement stay aligned; a page footer numbers the
 * pages. Text is UTF-8; characters outside WinAnsi (the base fonts' encoding) print as '?'.
 */
#ifndef FOLIOD_PDF_H
#define FOLIOD_PDF_H

#include <stdbool.h>
#include <stddef.h>

/* The layout of a document of `lines` lines of at most `columns` characters. */
struct pdf_layout {
    double font_size;     /* points: 9, smaller when the longest line would not fit */
    double leading;       /* points from one baseline to the next */
    size_t lines_per_page;
    size_t pages;         /* at least 1 */
};

void pdf_layout_for(size_t lines, size_t columns, struct pdf_layout *out);

/* Convert UTF-8 text to WinAnsi (Windows-1252) into out (always NUL-terminated when outlen >
 * 0). Invalid UTF-8 and characters WinAnsi lacks become '?'; control characters other than
 * tab become a space, a tab one space. Returns the number of characters of the input (what
 * a line's width is measured in), even when out was too short. */
size_t pdf_winansi(const char *in, size_t inlen, char *out, size_t outlen);

/* Write text as a PDF to path (replaced). title goes into the document information. On
 * failure returns false with a message in err. */
bool pdf_write_text(const char *text, const char *title, const char *path, char *err,
                    size_t errlen);

#endif
