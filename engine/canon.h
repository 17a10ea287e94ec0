/*
 * canon.h -- Avro Parsing Canonical Form and the CRC-64-AVRO fingerprint.
 *
 * The single-object encoding names a record's writer schema by the 64-bit
 * Rabin fingerprint of that schema's Parsing Canonical Form (Avro 1.11
 * specification, "Parsing Canonical Form for Schemas" and "Schema
 * Fingerprints").  avro-c has no canonical-form writer, so this module is
 * the one place that computes it: two schema texts that differ only in
 * documentation, defaults, attribute order, whitespace or attributes such as
 * "pii" get the same fingerprint, and any implementation that follows the
 * specification (Java, Python, fastavro, ...) computes the same number.
 */
#ifndef TL_CANON_H
#define TL_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Fingerprint of the empty input; also the CRC's initial value. */
#define TL_CANON_CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

/* Appends the Parsing Canonical Form of the schema in schema_json (a
 * NUL-terminated JSON text: a primitive name, a union array or a schema
 * object) to out.  Names are made fully qualified, attributes other than
 * name/type/fields/symbols/items/values/size are dropped, named types after
 * their first definition appear as their full name.
 *
 * Errors: TL_EJSON when schema_json is not JSON (or not UTF-8); TL_ESCHEMA
 * when it is JSON but not a valid schema (missing or invalid names, unknown
 * type names, redefined named types, bad fixed size, nested unions);
 * TL_ENOMEM.  On failure out is unchanged (its capacity may have grown).
 * Any thread; no shared state. */
int tl_canon_form(const char *schema_json, tl_buf_t *out);

/* CRC-64-AVRO (Rabin) fingerprint of n bytes at p: the specification's
 * table-driven algorithm with EMPTY = TL_CANON_CRC64_EMPTY.  p may be NULL
 * when n == 0.  Any thread; cannot fail. */
uint64_t tl_canon_crc64(const void *p, size_t n);

/* *out = tl_canon_crc64 of the Parsing Canonical Form of schema_json.
 * Errors as tl_canon_form; on failure *out is unchanged.  Any thread. */
int tl_canon_fingerprint(const char *schema_json, uint64_t *out);

#endif
