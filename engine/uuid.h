/*
 * uuid.h -- the two kinds of UUID threadline mints.
 *
 * Event ids are UUIDv7 (RFC 9562): time-ordered, so ids sort roughly in the
 * order events were received, and random enough to never collide across
 * gateway processes.  Customer and conversation ids are UUIDv5: derived from
 * names (tenant, platform, user; customer and opening event) so that a retry,
 * a replay or a second worker computes the same id instead of minting a new
 * one.
 */
#ifndef TL_UUID_H
#define TL_UUID_H

#include <stddef.h>
#include <stdint.h>

#define TL_UUID_STRLEN 36   /* without the NUL */

/* Writes a new UUIDv7 for time `ms` (ms since the epoch) as 36 characters
 * plus NUL into out.  Randomness from OpenSSL's RAND_bytes, falling back to
 * a per-thread xorshift seeded from the clock only if RAND_bytes fails.
 * Any thread; cannot fail. */
void tl_uuid_v7(int64_t ms, char out[TL_UUID_STRLEN + 1]);

/* Writes the UUIDv5 (SHA-1) of the name made by joining the n parts with
 * '\0' separators, in threadline's namespace.  Joining with NUL keeps
 * ("ab","c") and ("a","bc") apart.  Any thread; cannot fail. */
void tl_uuid_v5(const char *const *parts, const size_t *lens, size_t n,
                char out[TL_UUID_STRLEN + 1]);

/* 1 if s is a syntactically valid UUID text form (any version), else 0. */
int tl_uuid_valid(const char *s, size_t len);

#endif
