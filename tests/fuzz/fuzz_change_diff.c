/* fuzz_change_diff.c -- engine/change.c: the direct Change decoder against
 * the general path (the codec's walker into its avro value, then the value
 * into tl_change_t), on framed threadline.Change records.
 *
 * tl_change_decode reads records of the current Change schema straight
 * into tl_change_t and the codec's fold and candidate arrays;
 * tl_change_decode_general is the path it replaced for them, and the one
 * version 1 records still take.  For every input, read as it is and as the
 * datum of a record with a good header, both must return the same error
 * with the same message, or the same Change (tests/change_cmp.h: every
 * field, every fold entry and candidate, the same TL_EINVAL one past the
 * end of each).  Anything else traps.  Each
 * path has a codec of its own, kept across inputs as the workers keep
 * theirs, so that reused arrays and arenas are part of what is compared. */
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "change_cmp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Both paths on data[0..size): same error and message, or same Change. */
static void compare(tl_codec_t *direct, tl_codec_t *general, const uint8_t *data, size_t size) {
    tl_change_t d, g;
    int rd = tl_change_decode(direct, data, size, &d);
    int rg = tl_change_decode_general(general, data, size, &g);
    if (rd != rg) __builtin_trap();
    if (strcmp(tl_codec_errmsg(direct), tl_codec_errmsg(general)) != 0) __builtin_trap();
    char where[96];
    if (rd == 0 && tl_change_diff(&d, &g, where, sizeof where)) __builtin_trap();
}

static tl_codec_t *direct, *general;

static void check(const uint8_t *data, size_t size) { compare(direct, general, data, size); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!direct) {
        direct = fuzz_keep(tl_change_codec_new(NULL));
        general = fuzz_keep(tl_change_codec_new(NULL));
    }
    fuzz_raw_and_framed(direct, data, size, check);
    return 0;
}
