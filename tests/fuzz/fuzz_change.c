/* fuzz_change.c -- engine/change.c: threadline.Change records, as the
 * projection workers read them from <prefix>.changes, and the event each
 * carries.
 *
 * Each input is decoded as it is and as the datum of a record with a good
 * header.  A Change that decodes has its embedded event decoded too, as a
 * projection would. */
#include <stdlib.h>

#include "change.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tl_codec_t *c, *ec;

static void decode(const uint8_t *data, size_t size) {
    tl_change_t ch;
    tl_event_t ev;
    if (tl_change_decode(c, data, size, &ch) == 0 &&
        tl_codec_decode_event(ec, ch.event.ptr, ch.event.len, &ev) == 0)
        fuzz_check_event(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!c) c = fuzz_keep(tl_change_codec_new(NULL));
    if (!ec) ec = fuzz_keep(tl_codec_new_event(NULL));
    fuzz_raw_and_framed(c, data, size, decode);
    return 0;
}
