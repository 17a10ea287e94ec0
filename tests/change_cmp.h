/*
 * change_cmp.h -- which part two decoded Changes differ in, for the unit
 * suite (Check) and the differential fuzz target (which cannot use Check)
 * alike.
 *
 * One comparison, so that the Change decoder's differential unit test and
 * its fuzz target cannot drift apart field by field (as event_cmp.h does
 * for events); each caller turns a difference into its own kind of
 * failure.
 */
#ifndef TL_TEST_CHANGE_CMP_H
#define TL_TEST_CHANGE_CMP_H

#include <stddef.h>

#include "change.h"

/* NULL when a and b are the same Change: every field (strings as bytes,
 * and NUL-terminated on both sides except the event's bytes), every fold
 * entry and candidate through tl_change_fold_get / tl_change_candidate_get,
 * the same TL_EINVAL one past the end of each, and no borrowed arrays
 * (fold_changes, candidates) exposed.  Otherwise names the first
 * difference (a static string, or one written to out[0..n)).  Pure; any
 * thread. */
const char *tl_change_diff(const tl_change_t *a, const tl_change_t *b, char *out, size_t n);

#endif
