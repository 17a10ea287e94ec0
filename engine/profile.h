/*
 * profile.h -- how one target platform shows a conversation: the profile
 * of schemas/platforms/<platform>.json, loaded and checked.
 *
 * A profile is data, not code, so that an operator can change what WeChat
 * or the phone view renders without a release: the seven profiles of
 * schemas/platforms are compiled in (the defaults, built and tested with
 * the binary), and `--profiles DIR` (TL_PROFILES) points at a directory of
 * operator-edited ones that replace them file by file.  Every key is
 * documented in docs/projections.md.
 *
 * A profile is checked completely when it is loaded -- at start, before a
 * worker consumes anything -- and refused with an error that names the file
 * and the key ("/etc/tl/wechat.json: text.max_bytes: must be an integer
 * from 64 to 1048576"), never half-applied: a typo must stop the start, not
 * show up as an odd view an hour later.  Unknown keys are errors for the
 * same reason.
 *
 * A loaded profile is immutable and owns all its strings; any number of
 * threads may read it.  view.h renders with it.
 */
#ifndef TL_PROFILE_H
#define TL_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* How attachments are shown. */
typedef enum tl_profile_media {
    TL_MEDIA_INLINE,            /* url, mime, bytes, size: the client shows it */
    TL_MEDIA_THUMBNAIL_LINK,    /* images as a thumbnail url plus a link, others a link */
    TL_MEDIA_LINK_ONLY          /* a link and its mime type, nothing to embed */
} tl_profile_media_t;

/* What happens to text over text.max_bytes. */
typedef enum tl_profile_overflow {
    TL_OVERFLOW_SPLIT,          /* several rows (part 0, 1, ...), each within the limit */
    TL_OVERFLOW_CUT             /* one row: the text cut, then "… " and a link to the whole */
} tl_profile_overflow_t;

/* Masks (bits of tl_profile_t.mask). */
#define TL_MASK_CALLER_NUMBER  (1u << 0)    /* transcript caller_number: keep the last 4 digits */
#define TL_MASK_DEVICE_ID      (1u << 1)    /* device_id: keep the last 4 characters */
#define TL_MASK_PHONE_IN_TEXT  (1u << 2)    /* runs of 7+ digits in text: keep the last 4 */
#define TL_MASK_EMAIL_IN_TEXT  (1u << 3)    /* e-mail addresses in text: the local part becomes *** */

typedef struct tl_profile_keyword {
    char **any;                 /* matched as substrings, ASCII letters case-insensitively */
    size_t nany;
    char *label;
} tl_profile_keyword_t;

typedef struct tl_profile_entry {
    char *prefix;               /* entry_point starts with it */
    char *label;
} tl_profile_entry_t;

typedef struct tl_profile {
    tl_platform_t platform;
    char source[512];           /* where it came from, for messages */
    uint32_t kinds;             /* bit 1 << tl_event_kind_t per kind rendered */
    size_t max_bytes;           /* text limit in bytes; 0: none */
    tl_profile_overflow_t overflow;
    char *link;                 /* template of the link to the whole text: {conversation_id}, {event_id} */
    tl_profile_media_t media;
    char *thumbnail;            /* template: {url}; set when media is thumbnail_link */
    char *platform_labels[TL_PLATFORM__COUNT];  /* NULL: the slug */
    char *separator;            /* between the platform label and the topic */
    tl_profile_entry_t *entries;
    size_t nentries;
    tl_profile_keyword_t *keywords;
    size_t nkeywords;
    int raw_entry_point;        /* no rule matched: the entry point itself is the topic */
    char *origins[TL_PLATFORM__COUNT];  /* NULL: no "origin" in the body */
    int transcript_markers;     /* "[mm:ss–mm:ss] " before transcript text */
    uint32_t mask;
} tl_profile_t;

/* Parses and checks the profile text json[0..len) for platform, naming it
 * `source` in errors.  On success *out is owned by the caller
 * (tl_profile_free).  On failure returns TL_ECONFIG (or TL_ENOMEM), *out
 * is untouched and err holds "<source>: <key>: <what is wrong>" (key "" for
 * the whole document).  Any thread. */
int tl_profile_parse(const char *json, size_t len, tl_platform_t platform, const char *source,
                     tl_profile_t **out, char *err, size_t errlen);

/* The profile of platform: from dir/<slug>.json when dir is non-empty and
 * that file exists, else the compiled-in default.  Errors as
 * tl_profile_parse, plus TL_EIO when the file exists but cannot be read.
 * Any thread. */
int tl_profile_load(const char *dir, tl_platform_t platform, tl_profile_t **out, char *err,
                    size_t errlen);

/* The compiled-in text of schemas/platforms/<slug>.json, or NULL when
 * there is none for platform.  Static.  Cannot fail. */
const char *tl_profile_builtin(tl_platform_t platform);

/* Frees a profile.  NULL does nothing. */
void tl_profile_free(tl_profile_t *pf);

#endif
