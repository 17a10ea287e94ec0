/* fuzz_state.c -- engine/fold.c: customer states, as a fold worker loads
 * them from <prefix>.state when it takes over a partition.
 *
 * Each input is loaded as it is and as the datum of a record with a good
 * header.  A state that loads must encode again, and the encoding must
 * load and encode to the same bytes (tl_fold_state_encode's promise that
 * a state always encodes the same way). */
#include <stdlib.h>
#include <string.h>

#include "fold.h"
#include "fuzz.h"
#include "schemas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const tl_fold_opts_t opts = {5 * 60 * 1000, 30 * 60 * 1000, NULL, 0};

/* Loads data into a fresh fold and appends its encoding to out.  Returns
 * the load's result; traps when a loaded state does not encode. */
static int load_encode(tl_codec_t *c, const uint8_t *data, size_t size, tl_buf_t *out) {
    tl_fold_t *f = tl_fold_new(&opts);
    if (!f) abort();
    tl_str_t tenant, customer;
    int rc = tl_fold_state_load_ids(f, c, data, size, &tenant, &customer);
    if (rc == 0) {
        int erc = tl_fold_state_encode(f, c, tenant, customer, out);
        if (erc && erc != TL_ENOMEM) __builtin_trap();
        if (erc) rc = erc;
    }
    tl_fold_free(f);
    return rc;
}

static void check(tl_codec_t *c, const uint8_t *data, size_t size) {
    tl_buf_t a, b;
    tl_buf_init(&a);
    tl_buf_init(&b);
    if (load_encode(c, data, size, &a) == 0) {
        int rc = load_encode(c, (const uint8_t *)a.data, a.len, &b);
        if (rc == TL_ENOMEM) goto done;
        if (rc || a.len != b.len || memcmp(a.data, b.data, a.len) != 0) __builtin_trap();
    }
done:
    tl_buf_close(&a);
    tl_buf_close(&b);
}

static tl_codec_t *codec;

static void check_one(const uint8_t *data, size_t size) { check(codec, data, size); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!codec) codec = fuzz_keep(tl_codec_new(tl_schema_state, NULL));
    fuzz_raw_and_framed(codec, data, size, check_one);
    return 0;
}
