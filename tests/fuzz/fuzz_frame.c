/*
 * fuzz_frame.c - libFuzzer target for the line codec.
 *
 * The input is split into chunks at positions the fuzzer also controls (the first byte sets
 * the chunk size) and fed to frame_decode(); every returned line must lie inside the limit,
 * contain no LF, and the bytes of all complete lines plus what is pending must never exceed
 * what was fed. The same input fed in one piece must give the same lines.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define MAX_LINE 256

struct outcome {
    size_t lines;
    size_t too_long;
    size_t bytes;
    uint64_t hash;
};

static void run(const uint8_t *data, size_t n, size_t chunk, struct outcome *o)
{
    struct frame_decoder d;
    frame_decoder_init(&d, MAX_LINE);
    memset(o, 0, sizeof(*o));
    o->hash = 1469598103934665603ULL;
    for (size_t off = 0; off < n;) {
        size_t take = n - off < chunk ? n - off : chunk;
        const char *p = (const char *)data + off;
        size_t left = take;
        off += take;
        while (left > 0) {
            size_t consumed = 0, len = 0;
            const char *line = NULL;
            enum frame_status st = frame_decode(&d, p, left, &consumed, &line, &len);
            assert(consumed <= left);
            if (st == FRAME_LINE) {
                assert(len > 0 && len <= MAX_LINE);
                assert(memchr(line, '\n', len) == NULL);
                o->lines++;
                o->bytes += len;
                for (size_t i = 0; i < len; i++)
                    o->hash = (o->hash ^ (uint8_t)line[i]) * 1099511628211ULL;
                o->hash = (o->hash ^ 0x100) * 1099511628211ULL;
            } else if (st == FRAME_TOO_LONG) {
                o->too_long++;
            } else {
                assert(st == FRAME_NEED_MORE);
                assert(consumed == left);
            }
            p += consumed;
            left -= consumed;
            if (st == FRAME_NEED_MORE)
                break;
        }
    }
    assert(o->bytes + frame_decoder_pending(&d) <= n);
    frame_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    struct outcome a, b;
    run(data + 1, size - 1, chunk, &a);
    run(data + 1, size - 1, size, &b);
    /* chunking never changes which lines come out (a too-long line may be reported at a
     * different moment, but it is reported once either way) */
    assert(a.lines == b.lines && a.hash == b.hash && a.too_long == b.too_long);
    return 0;
}
