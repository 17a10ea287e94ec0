/*
 * event_cmp.h -- which field two decoded events differ in, for the unit
 * suites (Check) and the fuzz targets (which cannot use Check) alike.
 *
 * One comparison, so that the codec's round-trip tests and its
 * differential fuzz target cannot drift apart field by field; each caller
 * turns a difference into its own kind of failure.
 */
#ifndef TL_TEST_EVENT_CMP_H
#define TL_TEST_EVENT_CMP_H

#include <stddef.h>

#include "event.h"

#define TL_EVCMP_BITS 1     /* floats bit for bit (NaN equals NaN; -0 differs from 0) */
#define TL_EVCMP_ALL  2     /* attachment width/height even where has_width/height is 0 */
#define TL_EVCMP_NUL  4     /* every present string of both NUL-terminated */

/* NULL when a and b are the same under flags; otherwise names the first
 * differing field (a static string, or one in out[0..n)).  Pure; any
 * thread. */
const char *tl_event_diff(const tl_event_t *a, const tl_event_t *b, int flags, char *out, size_t n);

#endif
