/*
 * frame.c - LF-delimited framing with a size limit. Pure and allocation-light: a line that
 * arrives whole in one chunk is returned in place; only a line split across chunks is copied,
 * and the copy buffer is released once it grows past a small size, so idle connections hold
 * no buffer at all.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#define FRAME_KEEP_BUFFER 4096

static const char *const status_names[FRAME_STATUS_MAX] = {"need_more", "line", "too_long",
                                                           "no_memory"};

const char *frame_status_str(enum frame_status s)
{
    return s < FRAME_STATUS_MAX ? status_names[s] : "?";
}

void frame_decoder_init(struct frame_decoder *d, size_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
}

void frame_decoder_free(struct frame_decoder *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

size_t frame_decoder_pending(const struct frame_decoder *d)
{
    return d->len;
}

static bool append(struct frame_decoder *d, const char *data, size_t n)
{
    if (d->len + n > d->cap) {
        size_t ncap = d->cap == 0 ? 256 : d->cap;
        while (ncap < d->len + n)
            ncap *= 2;
        char *nb = realloc(d->buf, ncap);
        if (nb == NULL)
            return false;
        d->buf = nb;
        d->cap = ncap;
    }
    memcpy(d->buf + d->len, data, n);
    d->len += n;
    return true;
}

static void reset(struct frame_decoder *d)
{
    d->len = 0;
    if (d->cap > FRAME_KEEP_BUFFER)
        frame_decoder_free(d);
}

enum frame_status frame_decode(struct frame_decoder *d, const char *data, size_t n,
                               size_t *consumed, const char **line, size_t *line_len)
{
    size_t off = 0;
    *line = NULL;
    *line_len = 0;
    if (d->len == 0 && d->cap > FRAME_KEEP_BUFFER)
        frame_decoder_free(d); /* the line returned last time is no longer in use */
    for (;;) {
        const char *p = data + off;
        size_t avail = n - off;
        const char *lf = avail > 0 ? memchr(p, '\n', avail) : NULL;

        if (d->discarding) {
            if (lf == NULL) {
                *consumed = n;
                return FRAME_NEED_MORE;
            }
            off += (size_t)(lf - p) + 1;
            d->discarding = false;
            continue;
        }
        if (lf == NULL) {
            if (d->len + avail > d->max) {
                reset(d);
                d->discarding = true;
                *consumed = n;
                return FRAME_TOO_LONG;
            }
            if (avail > 0 && !append(d, p, avail)) {
                *consumed = off;
                return FRAME_NO_MEMORY;
            }
            *consumed = n;
            return FRAME_NEED_MORE;
        }

        size_t seg = (size_t)(lf - p);
        off += seg + 1;
        if (d->len + seg > d->max) {
            reset(d);
            *consumed = off;
            return FRAME_TOO_LONG;
        }
        const char *text;
        size_t len;
        if (d->len == 0) {
            text = p;
            len = seg;
        } else {
            if (seg > 0 && !append(d, p, seg)) {
                *consumed = off - seg - 1;
                return FRAME_NO_MEMORY;
            }
            text = d->buf;
            len = d->len;
            d->len = 0; /* the buffer stays valid until the next call */
        }
        if (len > 0 && text[len - 1] == '\r')
            len--;
        if (len == 0)
            continue;
        *line = text;
        *line_len = len;
        *consumed = off;
        return FRAME_LINE;
    }
}
