/* fuzz_mini_program.c -- adapters/mini_program.c: a mini-program message,
 * then the unionid link tl_mini_program_resolve adds, as ingest would run
 * them. */
#include "fuzz.h"
#include "mini_program.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char openid_customer[] = "6f1c2a3b-4d5e-5f60-8a7b-9c0d1e2f3a4b";
    tl_mini_program_out_t out;
    tl_problem_t pb;
    memset(&out, 0, sizeof out);
    if (tl_mini_program_parse(&fuzz_ctx, (const char *)data, size, &out, &pb) == 0) {
        char unionid_customer[40];
        memcpy(unionid_customer, out.base.customer_id, sizeof unionid_customer);
        tl_mini_program_resolve(&fuzz_ctx, &out, openid_customer, unionid_customer);
        if (out.first < 0 || out.first > 1) __builtin_trap();
        for (int i = out.first; i < 2; i++) fuzz_check_event(&out.ev[i]);
    }
    tl_mini_program_out_close(&out);
    return 0;
}
