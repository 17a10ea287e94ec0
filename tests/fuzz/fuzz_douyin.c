/* fuzz_douyin.c -- adapters/douyin.c: webhook bodies.  The harness signs
 * each body with the app secret as Douyin would, so that the JSON parser
 * and the mapping are reached rather than the signature check. */
#include <stdlib.h>

#include "douyin.h"
#include "fuzz.h"

#define SECRET "tl-douyin-fuzz-secret"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tl_douyin_conf_t conf;
    static int ready;
    char err[256];
    if (!ready) {
        if (tl_douyin_conf_init(&conf, "acme", SECRET, err, sizeof err)) abort();
        ready = 1;
    }

    /* X-Douyin-Signature: hex SHA-1 of secret || body. */
    const void *parts[] = {SECRET, data};
    const size_t lens[] = {sizeof SECRET - 1, size};
    char sig[41];
    fuzz_sha1_hex(parts, lens, 2, sig);

    tl_douyin_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    if (tl_douyin_parse(&conf, &fuzz_ctx, (tl_str_t){sig, 40}, (const char *)data, size, &out,
                        &ev, &pb) == 0)
        fuzz_check_event(&ev);
    tl_douyin_out_close(&out);
    return 0;
}
