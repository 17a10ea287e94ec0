/* fuzz_api.c -- adapters/api.c: canonical events as JSON, as POSTed by a
 * connector. */
#include "api.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tl_adapter_out_t out = {0};
    tl_event_t ev;
    tl_problem_t pb;
    if (tl_api_parse(&fuzz_ctx, (const char *)data, size, &out, &ev, &pb) == 0)
        fuzz_check_event(&ev);
    tl_adapter_out_close(&out);
    return 0;
}
