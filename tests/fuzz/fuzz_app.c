/* fuzz_app.c -- adapters/app.c: an SDK upload (message and click stream),
 * then the login link tl_app_resolve adds, as ingest would run them. */
#include "app.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* ~60 KB: static, and cleared each run as ingest's calloc would. */
    static tl_app_out_t out;
    static const char account[] = "2b7e1516-28ae-5d2a-a6ab-f7158809cf4f";
    tl_problem_t pb;
    memset(&out, 0, sizeof out);
    if (tl_app_parse(&fuzz_ctx, (const char *)data, size, &out, &pb) == 0) {
        char device[40];
        memcpy(device, out.base.customer_id, sizeof device);
        tl_app_resolve(&fuzz_ctx, &out, device, account);
        if (out.first < 0 || out.n < 1 || out.first + out.n > TL_APP_MAX_EVENTS + 2) __builtin_trap();
        for (int i = out.first; i < out.first + out.n; i++) fuzz_check_event(&out.ev[i]);
    }
    tl_app_out_close(&out);
    return 0;
}
