/* fuzz_codec_diff.c -- engine/codec.c: the direct event decoder against the
 * general path (walker into the avro value, then the value into
 * tl_event_t), on framed threadline.Event records.
 *
 * tl_codec_decode_event reads records of the reader schema straight into
 * tl_event_t; tl_codec_decode_event_general is the path it replaced for
 * them.  For every input, read as it is and as the datum of a record with
 * a good header, both must return the same error with the same message,
 * or the same event, field by field; anything else traps.  Each path has
 * a codec of its own, kept across inputs as the workers keep theirs, so
 * that reused arrays and arenas are part of what is compared. */
#include <stdlib.h>
#include <string.h>

#include "event_cmp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Both paths on data[0..size): same error and message, or same event. */
static void compare(tl_codec_t *direct, tl_codec_t *general, const uint8_t *data, size_t size) {
    tl_event_t d, g;
    int rd = tl_codec_decode_event(direct, data, size, &d);
    int rg = tl_codec_decode_event_general(general, data, size, &g);
    if (rd != rg) __builtin_trap();
    if (strcmp(tl_codec_errmsg(direct), tl_codec_errmsg(general)) != 0) __builtin_trap();
    if (rd == 0) {
        /* Everything, bit for bit, strings terminated as both paths write them. */
        char why[256];
        if (tl_event_diff(&d, &g, TL_EVCMP_BITS | TL_EVCMP_ALL | TL_EVCMP_NUL, why, sizeof why))
            __builtin_trap();
        fuzz_check_event(&d);
    }
}

static tl_codec_t *direct, *general;

static void check(const uint8_t *data, size_t size) { compare(direct, general, data, size); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!direct) {
        direct = fuzz_keep(tl_codec_new_event(NULL));
        general = fuzz_keep(tl_codec_new_event(NULL));
    }
    fuzz_raw_and_framed(direct, data, size, check);
    return 0;
}
