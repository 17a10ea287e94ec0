/* fuzz_phone.c -- adapters/phone.c: ASR transcript segments, and the E.164
 * normaliser on their caller_number. */
#include <stdlib.h>

#include "fuzz.h"
#include "phone.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tl_phone_conf_t conf;
    static int ready;
    char err[256];
    if (!ready) {
        if (tl_phone_conf_init(&conf, "86", err, sizeof err)) abort();
        ready = 1;
    }

    tl_phone_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    if (tl_phone_parse(&conf, &fuzz_ctx, (const char *)data, size, &out, &ev, &pb) == 0)
        fuzz_check_event(&ev);
    tl_phone_out_close(&out);

    /* The normaliser on its own, on numbers no JSON string could carry. */
    char e164[TL_PHONE_E164_MAX + 1];
    const char *why;
    tl_phone_e164(&conf, (const char *)data, size, e164, &why);
    return 0;
}
