/*
 * frame.h - the pure line codec: bytes in, one JSON text per LF-terminated line out.
 *
 * No I/O: the caller feeds whatever bytes arrived and gets back complete lines one at a time.
 * A line longer than the limit is reported once as FRAME_TOO_LONG and its remaining bytes are
 * discarded up to the next LF, so the connection stays usable. A trailing CR is stripped and
 * empty lines are skipped. Lifecycle: frame_decoder_init() -> frame_decode() repeatedly ->
 * frame_decoder_free(). A returned line points into the caller's data or into the decoder and
 * stays valid until the next call.
 */
#ifndef FOLIOD_FRAME_H
#define FOLIOD_FRAME_H

#include <stdbool.h>
#include <stddef.h>

enum frame_status {
    FRAME_NEED_MORE, /* every byte consumed, no complete line yet */
    FRAME_LINE,      /* *line / *line_len hold one line */
    FRAME_TOO_LONG,  /* a line exceeded the limit; its bytes are being skipped */
    FRAME_NO_MEMORY,
    FRAME_STATUS_MAX
};

struct frame_decoder {
    char *buf;        /* partial line carried between calls */
    size_t len;
    size_t cap;
    size_t max;       /* longest accepted line, without its LF */
    bool discarding;  /* inside an over-long line */
};

const char *frame_status_str(enum frame_status s);

void frame_decoder_init(struct frame_decoder *d, size_t max);
void frame_decoder_free(struct frame_decoder *d);

/* Bytes of a partial line held by the decoder (for memory accounting). */
size_t frame_decoder_pending(const struct frame_decoder *d);

/*
 * Consumes a prefix of data[0..n) and reports what it found. *consumed is always set; call again
 * with the remaining bytes until FRAME_NEED_MORE.
 */
enum frame_status frame_decode(struct frame_decoder *d, const char *data, size_t n,
                               size_t *consumed, const char **line, size_t *line_len);

#endif
