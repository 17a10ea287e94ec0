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

static tl_codec_t *c;

static void decode(const uint8_t *data, size_t size) {
    tl_event_t ev;
    if (tl_codec_decode_event(c, data, size, &ev) == 0) fuzz_check_event(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!c) c = fuzz_keep(tl_codec_new_event(NULL));
    fuzz_raw_and_framed(c, data, size, decode);
    return 0;
}
