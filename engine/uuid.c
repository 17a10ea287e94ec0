/*
 * uuid.c -- UUIDv7 and UUIDv5 (see uuid.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "uuid.h"

/* threadline's UUIDv5 namespace: the UUIDv5 of "threadline" in the URL
 * namespace, fixed forever because every derived id depends on it. */
static const uint8_t tl_ns[16] = {
    0x5b, 0x2a, 0x8e, 0x4f, 0x1d, 0x6c, 0x5a, 0x93,
    0xa1, 0x07, 0x3c, 0xe2, 0x48, 0xd9, 0x6f, 0x10,
};

static void format(const uint8_t b[16], char out[TL_UUID_STRLEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = 0;
}

static void fallback_random(uint8_t *b, size_t n) {
    static _Thread_local uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&s;
    }
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        b[i] = (uint8_t)s;
    }
}

void tl_uuid_v7(int64_t ms, char out[TL_UUID_STRLEN + 1]) {
    uint8_t b[16];
    uint64_t t = (uint64_t)ms;
    for (int i = 0; i < 6; i++) b[i] = (uint8_t)(t >> (40 - 8 * i));
    if (RAND_bytes(b + 6, 10) != 1) fallback_random(b + 6, 10);
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    format(b, out);
}

static EVP_MD *sha1;

static void fetch_sha1(void) { sha1 = EVP_MD_fetch(NULL, "SHA1", NULL); }

void tl_uuid_v5(const char *const *parts, const size_t *lens, size_t n,
                char out[TL_UUID_STRLEN + 1]) {
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    /* Fetching the algorithm and making a context cost more than hashing a
     * few dozen bytes: do both once (per process, per thread). */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    static _Thread_local EVP_MD_CTX *ctx;
    pthread_once(&once, fetch_sha1);
    if (!ctx) ctx = EVP_MD_CTX_new();
    /* EVP calls only fail on allocation failure; an id we cannot derive is
     * not something to limp on with. */
    if (!ctx || !sha1 || !EVP_DigestInit_ex(ctx, sha1, NULL)) abort();
    EVP_DigestUpdate(ctx, tl_ns, sizeof tl_ns);
    for (size_t i = 0; i < n; i++) {
        if (i) EVP_DigestUpdate(ctx, "", 1);
        EVP_DigestUpdate(ctx, parts[i], lens[i]);
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    md[6] = (uint8_t)(0x50 | (md[6] & 0x0f));
    md[8] = (uint8_t)(0x80 | (md[8] & 0x3f));
    format(md, out);
}

int tl_uuid_valid(const char *s, size_t len) {
    if (len != TL_UUID_STRLEN) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}
