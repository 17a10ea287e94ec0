/* fuzz_codec.c -- engine/codec.c: framed threadline.Event records, as read
 * from <prefix>.events.
 *
 * Each input is decoded twice: as it is (the framing checks), and as the
 * datum of a record with a good header (the datum walker, which random
 * bytes would otherwise seldom reach).  An event that decodes must encode
 * again (fuzz_check_event). */
#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tl_codec_t *c;
    if (!c) c = fuzz_keep(tl_codec_new_event(NULL));
    uint8_t *framed = malloc(TL_CODEC_HEADER_SIZE + size);
    if (!framed) abort();
    tl_event_t ev;

    if (tl_codec_decode_event(c, data, size, &ev) == 0) fuzz_check_event(&ev);

    fuzz_frame(c, data, size, framed);
    if (tl_codec_decode_event(c, framed, TL_CODEC_HEADER_SIZE + size, &ev) == 0)
        fuzz_check_event(&ev);

    free(framed);
    return 0;
}
