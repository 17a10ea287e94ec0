/*
 * event.c -- names for the enums of event.h.  The tables come from the same
 * X-macros as the enums, so they cannot drift from each other; the codec's
 * tests check that they match event.avsc.
 */
#include <string.h>

#include "error.h"
#include "event.h"

static const char *const platform_slugs[] = {
#define TL_PLATFORM_SLUG(name, slug) slug,
    TL_PLATFORM_MAP(TL_PLATFORM_SLUG)
#undef TL_PLATFORM_SLUG
};

static const char *const kind_names[] = {
#define TL_EVENT_KIND_STR(name, avro) avro,
    TL_EVENT_KIND_MAP(TL_EVENT_KIND_STR)
#undef TL_EVENT_KIND_STR
};

const char *tl_platform_slug(tl_platform_t p) {
    if ((unsigned)p >= TL_PLATFORM__COUNT) return "unknown";
    return platform_slugs[p];
}

int tl_platform_from_slug(const char *s, size_t len, tl_platform_t *out) {
    for (int i = 0; i < TL_PLATFORM__COUNT; i++) {
        if (strlen(platform_slugs[i]) == len && memcmp(platform_slugs[i], s, len) == 0) {
            *out = (tl_platform_t)i;
            return TL_OK;
        }
    }
    return TL_ENOTFOUND;
}

const char *tl_event_kind_name(tl_event_kind_t k) {
    if ((unsigned)k >= TL_EV__COUNT) return "unknown";
    return kind_names[k];
}
