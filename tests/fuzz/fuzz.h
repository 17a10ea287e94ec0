/*
 * fuzz.h -- what the libFuzzer targets in tests/fuzz share.
 *
 * Each fuzz_<parser>.c exports LLVMFuzzerTestOneInput and feeds the bytes
 * to one parser the way its caller would, with a fixed gateway context so
 * that a reproducer replays exactly.  Everything a call allocates is freed
 * before the call returns (LeakSanitizer runs after every input); only the
 * read-only settings built once in fuzz_once() outlive an input.
 *
 * The codecs are the exception: building one parses its schema, which
 * would cost more than the decode under test, so each target builds its
 * codecs once and reuses them, as the workers do.  A codec's reusable
 * value then carries over from one input to the next, which is also how
 * production uses it.
 *
 * An adapter that accepts an input must have produced an event the codec
 * can encode, and that decodes again: otherwise ingest would answer 500 to
 * a request it had accepted.  fuzz_check_event() traps when it does not.
 */
#ifndef TL_FUZZ_H
#define TL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "adapter.h"
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "event.h"

#define FUZZ_NOW_MS 1700000000000LL
#define FUZZ_NOW_S "1700000000"

static const tl_adapter_ctx_t fuzz_ctx = {
    FUZZ_NOW_MS, "018bcfe5-6800-7000-8000-00000000f022", "trace-fuzz", 1 << 20,
};

/* Writes the single-object header of codec c (C3 01, then the reader
 * schema's fingerprint, little-endian) and data after it into out, which
 * has room for TL_CODEC_HEADER_SIZE + size bytes: the framing the fuzzer
 * would otherwise have to find before reaching the datum decoder. */
static inline void fuzz_frame(const tl_codec_t *c, const uint8_t *data, size_t size,
                              uint8_t *out) {
    uint64_t fp = tl_codec_fingerprint(c);
    out[0] = 0xC3;
    out[1] = 0x01;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(fp >> (8 * i));
    if (size) memcpy(out + TL_CODEC_HEADER_SIZE, data, size);
}

/* Runs check on data as it is, then framed with codec c's header (so
 * the datum decoder behind it is reached too): what every differential
 * target does with one input.  Aborts when out of memory. */
static inline void fuzz_raw_and_framed(const tl_codec_t *c, const uint8_t *data, size_t size,
                                       void (*check)(const uint8_t *, size_t)) {
    uint8_t *framed = malloc(TL_CODEC_HEADER_SIZE + size);
    if (!framed) abort();
    check(data, size);
    fuzz_frame(c, data, size, framed);
    check(framed, TL_CODEC_HEADER_SIZE + size);
    free(framed);
}

/* Lower-case hex SHA-1 of the n pieces p[i] (len[i] bytes) one after the
 * other, as the platforms sign; aborts if OpenSSL cannot hash. */
static inline void fuzz_sha1_hex(const void *const *p, const size_t *len, int n, char hex[41]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h && EVP_DigestInit_ex(h, EVP_sha1(), NULL);
    for (int i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(h, p[i], len[i]);
    ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) && mdlen == 20;
    EVP_MD_CTX_free(h);
    if (!ok) abort();
    for (unsigned i = 0; i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Keeps codec c for the life of the process and frees it at exit, before
 * LeakSanitizer's own exit check looks; aborts when c is NULL.  Returns c. */
static tl_codec_t *fuzz_kept[4];
static size_t fuzz_nkept;

static void fuzz_free_kept(void) {
    while (fuzz_nkept) tl_codec_free(fuzz_kept[--fuzz_nkept]);
}

static inline tl_codec_t *fuzz_keep(tl_codec_t *c) {
    if (!c || fuzz_nkept == sizeof fuzz_kept / sizeof *fuzz_kept) abort();
    if (fuzz_nkept == 0) atexit(fuzz_free_kept);
    fuzz_kept[fuzz_nkept++] = c;
    return c;
}

/* Encodes ev with an event codec of its own and decodes the result; traps
 * when either step fails for any reason but memory.  ev is not kept, and
 * may point into another codec. */
static inline void fuzz_check_event(const tl_event_t *ev) {
    static tl_codec_t *c;
    int rc;
    if (!c) c = fuzz_keep(tl_codec_new_event(NULL));
    tl_buf_t buf;
    tl_buf_init(&buf);
    rc = tl_codec_encode_event(c, ev, &buf);
    if (rc && rc != TL_ENOMEM) __builtin_trap();
    if (rc == 0) {
        tl_event_t back;
        rc = tl_codec_decode_event(c, buf.data, buf.len, &back);
        if (rc && rc != TL_ENOMEM) __builtin_trap();
    }
    tl_buf_close(&buf);
}

#endif
