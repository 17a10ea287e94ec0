/*
 * profile.c -- platform profiles (see profile.h).
 *
 * The checker walks the document once, key by key, and stops at the first
 * problem with the key's dotted path ("labels.keywords[2].any[0]"), which
 * is what the operator needs to find it.  Every key it accepts is listed in
 * the tables below and in docs/projections.md; anything else is refused.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "profile.h"

/* schemas/platforms/<slug>.json, embedded by schemas/embed.py. */
extern const char tl_schema_web_json[], tl_schema_app_json[], tl_schema_mini_program_json[],
    tl_schema_wechat_json[], tl_schema_douyin_json[], tl_schema_phone_json[], tl_schema_agent_json[];

#define MAX_TEXT_LIMIT (1 << 20)
#define MIN_TEXT_LIMIT 64
#define MAX_RULES 256
#define MAX_LABEL 256

/* Kinds that make a timeline item; the others change fields and links. */
static const uint32_t item_kinds =
    1u << TL_EV_MESSAGE_RECEIVED | 1u << TL_EV_AGENT_REPLIED | 1u << TL_EV_TRANSCRIPT_SEGMENT |
    1u << TL_EV_BEHAVIOR_TRACKED | 1u << TL_EV_CONVERSATION_ASSIGNED |
    1u << TL_EV_CONVERSATION_TAGGED | 1u << TL_EV_CONVERSATION_CLOSED;

static const struct { const char *name; uint32_t bit; } mask_names[] = {
    {"caller_number", TL_MASK_CALLER_NUMBER},
    {"device_id", TL_MASK_DEVICE_ID},
    {"phone_in_text", TL_MASK_PHONE_IN_TEXT},
    {"email_in_text", TL_MASK_EMAIL_IN_TEXT},
};

const char *tl_profile_builtin(tl_platform_t platform) {
    switch (platform) {
    case TL_PLATFORM_WEB: return tl_schema_web_json;
    case TL_PLATFORM_APP: return tl_schema_app_json;
    case TL_PLATFORM_MINI_PROGRAM: return tl_schema_mini_program_json;
    case TL_PLATFORM_WECHAT: return tl_schema_wechat_json;
    case TL_PLATFORM_DOUYIN: return tl_schema_douyin_json;
    case TL_PLATFORM_PHONE: return tl_schema_phone_json;
    case TL_PLATFORM_AGENT: return tl_schema_agent_json;
    default: return NULL;
    }
}

void tl_profile_free(tl_profile_t *pf) {
    if (!pf) return;
    free(pf->link);
    free(pf->thumbnail);
    free(pf->separator);
    for (int i = 0; i < TL_PLATFORM__COUNT; i++) {
        free(pf->platform_labels[i]);
        free(pf->origins[i]);
    }
    for (size_t i = 0; i < pf->nentries; i++) {
        free(pf->entries[i].prefix);
        free(pf->entries[i].label);
    }
    free(pf->entries);
    for (size_t i = 0; i < pf->nkeywords; i++) {
        for (size_t j = 0; j < pf->keywords[i].nany; j++) free(pf->keywords[i].any[j]);
        free(pf->keywords[i].any);
        free(pf->keywords[i].label);
    }
    free(pf->keywords);
    free(pf);
}

/* ---- the checker ---- */

typedef struct chk {
    const char *source;
    char *err;
    size_t errlen;
    int failed, nomem;
} chk_t;

static int fail(chk_t *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(chk_t *c, const char *key, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!c->failed) snprintf(c->err, c->errlen, "%s: %s: %s", c->source, key, what);
    c->failed = 1;
    return -1;
}

static char *dup(chk_t *c, const char *s) {
    char *d = strdup(s);
    if (!d) c->nomem = 1;
    return d;
}

/* Checks that obj has only the keys in allowed (NULL-terminated). */
static int only_keys(chk_t *c, json_t *obj, const char *path, const char *const *allowed) {
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, k) == 0;
        if (!ok) {
            char key[256];
            snprintf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
            return fail(c, key, "unknown key");
        }
    }
    return 0;
}

/* A non-empty string of at most max bytes, or -1. */
static const char *get_string(chk_t *c, json_t *v, const char *key, size_t max) {
    if (!json_is_string(v)) return fail(c, key, "must be a string"), NULL;
    size_t n = json_string_length(v);
    if (n == 0 || n > max) return fail(c, key, "must be 1 to %zu bytes", max), NULL;
    if (memchr(json_string_value(v), 0, n)) return fail(c, key, "must not contain NUL"), NULL;
    return json_string_value(v);
}

static int get_slug_map(chk_t *c, json_t *obj, const char *key, char **out) {
    if (!json_is_object(obj)) return fail(c, key, "must be an object of platform slug to label");
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        char path[256];
        tl_platform_t p;
        snprintf(path, sizeof path, "%s.%s", key, k);
        if (tl_platform_from_slug(k, strlen(k), &p)) return fail(c, path, "not a platform slug");
        const char *s = get_string(c, v, path, MAX_LABEL);
        if (!s) return -1;
        free(out[p]);
        out[p] = dup(c, s);
    }
    return 0;
}

static int parse_text(chk_t *c, json_t *t, tl_profile_t *pf) {
    static const char *const keys[] = {"max_bytes", "overflow", "link", NULL};
    if (!json_is_object(t)) return fail(c, "text", "must be an object");
    if (only_keys(c, t, "text", keys)) return -1;
    json_t *mb = json_object_get(t, "max_bytes"), *ov = json_object_get(t, "overflow"),
           *ln = json_object_get(t, "link");
    if (mb) {
        if (!json_is_integer(mb) || json_integer_value(mb) < MIN_TEXT_LIMIT ||
            json_integer_value(mb) > MAX_TEXT_LIMIT)
            return fail(c, "text.max_bytes", "must be an integer from %d to %d", MIN_TEXT_LIMIT,
                        MAX_TEXT_LIMIT);
        pf->max_bytes = (size_t)json_integer_value(mb);
    }
    if (ov) {
        const char *s = json_is_string(ov) ? json_string_value(ov) : "";
        if (strcmp(s, "split") == 0) pf->overflow = TL_OVERFLOW_SPLIT;
        else if (strcmp(s, "cut") == 0) pf->overflow = TL_OVERFLOW_CUT;
        else return fail(c, "text.overflow", "must be \"split\" or \"cut\"");
    }
    if (ln) {
        const char *s = get_string(c, ln, "text.link", 512);
        if (!s) return -1;
        if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
            return fail(c, "text.link", "must start with http:// or https://");
        pf->link = dup(c, s);
    }
    if (pf->overflow == TL_OVERFLOW_CUT) {
        if (!mb) return fail(c, "text.max_bytes", "required when overflow is \"cut\"");
        if (!pf->link) return fail(c, "text.link", "required when overflow is \"cut\"");
        /* The cut text keeps at least some of the message after "… " and
         * the link (ids expand to at most 128 bytes each). */
        if (strlen(pf->link) + 2 * 128 + 64 > pf->max_bytes)
            return fail(c, "text.link", "too long for text.max_bytes %zu", pf->max_bytes);
    }
    return 0;
}

static int parse_labels(chk_t *c, json_t *l, tl_profile_t *pf) {
    static const char *const keys[] = {"platforms", "separator", "entry_points", "keywords",
                                       "raw_entry_point", NULL};
    if (!json_is_object(l)) return fail(c, "labels", "must be an object");
    if (only_keys(c, l, "labels", keys)) return -1;
    json_t *v;
    if ((v = json_object_get(l, "platforms")) && get_slug_map(c, v, "labels.platforms", pf->platform_labels))
        return -1;
    if ((v = json_object_get(l, "separator"))) {
        const char *s = get_string(c, v, "labels.separator", 16);
        if (!s) return -1;
        free(pf->separator);
        pf->separator = dup(c, s);
    }
    if ((v = json_object_get(l, "raw_entry_point"))) {
        if (!json_is_boolean(v)) return fail(c, "labels.raw_entry_point", "must be true or false");
        pf->raw_entry_point = json_is_true(v);
    }
    if ((v = json_object_get(l, "entry_points"))) {
        if (!json_is_array(v) || json_array_size(v) > MAX_RULES)
            return fail(c, "labels.entry_points", "must be an array of at most %d rules", MAX_RULES);
        pf->entries = calloc(json_array_size(v) + 1, sizeof *pf->entries);
        if (!pf->entries) return c->nomem = 1, -1;
        size_t i;
        json_t *r;
        json_array_foreach(v, i, r) {
            static const char *const rk[] = {"prefix", "label", NULL};
            char path[128], key[160];
            snprintf(path, sizeof path, "labels.entry_points[%zu]", i);
            if (!json_is_object(r)) return fail(c, path, "must be an object {prefix, label}");
            if (only_keys(c, r, path, rk)) return -1;
            snprintf(key, sizeof key, "%s.prefix", path);
            const char *prefix = get_string(c, json_object_get(r, "prefix"), key, MAX_LABEL);
            if (!prefix) return -1;
            snprintf(key, sizeof key, "%s.label", path);
            const char *label = get_string(c, json_object_get(r, "label"), key, MAX_LABEL);
            if (!label) return -1;
            pf->entries[pf->nentries].prefix = dup(c, prefix);
            pf->entries[pf->nentries++].label = dup(c, label);
        }
    }
    if ((v = json_object_get(l, "keywords"))) {
        if (!json_is_array(v) || json_array_size(v) > MAX_RULES)
            return fail(c, "labels.keywords", "must be an array of at most %d rules", MAX_RULES);
        pf->keywords = calloc(json_array_size(v) + 1, sizeof *pf->keywords);
        if (!pf->keywords) return c->nomem = 1, -1;
        size_t i;
        json_t *r;
        json_array_foreach(v, i, r) {
            static const char *const rk[] = {"any", "label", NULL};
            char path[128], key[160];
            snprintf(path, sizeof path, "labels.keywords[%zu]", i);
            if (!json_is_object(r)) return fail(c, path, "must be an object {any, label}");
            if (only_keys(c, r, path, rk)) return -1;
            snprintf(key, sizeof key, "%s.label", path);
            const char *label = get_string(c, json_object_get(r, "label"), key, MAX_LABEL);
            if (!label) return -1;
            json_t *any = json_object_get(r, "any");
            snprintf(key, sizeof key, "%s.any", path);
            if (!json_is_array(any) || json_array_size(any) == 0 || json_array_size(any) > MAX_RULES)
                return fail(c, key, "must be an array of 1 to %d keywords", MAX_RULES);
            tl_profile_keyword_t *kw = &pf->keywords[pf->nkeywords++];
            kw->label = dup(c, label);
            if (!(kw->any = calloc(json_array_size(any), sizeof *kw->any))) return c->nomem = 1, -1;
            size_t j;
            json_t *w;
            json_array_foreach(any, j, w) {
                snprintf(key, sizeof key, "%s.any[%zu]", path, j);
                const char *s = get_string(c, w, key, MAX_LABEL);
                if (!s) return -1;
                kw->any[kw->nany++] = dup(c, s);
            }
        }
    }
    return 0;
}

static int parse_doc(chk_t *c, json_t *doc, tl_platform_t platform, tl_profile_t *pf) {
    static const char *const keys[] = {"platform", "kinds", "text", "media", "thumbnail", "labels",
                                       "origins", "transcript_markers", "mask", "description",
                                       NULL};
    if (!json_is_object(doc)) return fail(c, "", "must be a JSON object");
    if (only_keys(c, doc, "", keys)) return -1;
    json_t *v = json_object_get(doc, "platform");
    if (!json_is_string(v)) return fail(c, "platform", "required: the platform slug");
    if (strcmp(json_string_value(v), tl_platform_slug(platform)) != 0)
        return fail(c, "platform", "is \"%s\" but the file is the profile of \"%s\"",
                    json_string_value(v), tl_platform_slug(platform));
    pf->platform = platform;
    if ((v = json_object_get(doc, "description")) && !json_is_string(v))
        return fail(c, "description", "must be a string");

    v = json_object_get(doc, "kinds");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return fail(c, "kinds", "required: a non-empty array of event kinds");
    size_t i;
    json_t *k;
    json_array_foreach(v, i, k) {
        char key[64];
        snprintf(key, sizeof key, "kinds[%zu]", i);
        if (!json_is_string(k)) return fail(c, key, "must be a string");
        int found = -1;
        for (int e = 0; e < TL_EV__COUNT; e++)
            if (strcmp(tl_event_kind_name((tl_event_kind_t)e), json_string_value(k)) == 0) found = e;
        if (found < 0 || !(item_kinds & 1u << found))
            return fail(c, key, "\"%s\" is not an item kind (MessageReceived, AgentReplied, "
                        "TranscriptSegment, BehaviorTracked, ConversationAssigned, "
                        "ConversationTagged, ConversationClosed)", json_string_value(k));
        pf->kinds |= 1u << found;
    }

    if ((v = json_object_get(doc, "text")) && parse_text(c, v, pf)) return -1;

    if ((v = json_object_get(doc, "media"))) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "inline") == 0) pf->media = TL_MEDIA_INLINE;
        else if (strcmp(s, "thumbnail_link") == 0) pf->media = TL_MEDIA_THUMBNAIL_LINK;
        else if (strcmp(s, "link_only") == 0) pf->media = TL_MEDIA_LINK_ONLY;
        else return fail(c, "media", "must be \"inline\", \"thumbnail_link\" or \"link_only\"");
    }
    if ((v = json_object_get(doc, "thumbnail"))) {
        const char *s = get_string(c, v, "thumbnail", 512);
        if (!s) return -1;
        if (!strstr(s, "{url}")) return fail(c, "thumbnail", "must contain {url}");
        pf->thumbnail = dup(c, s);
    }
    if (pf->media == TL_MEDIA_THUMBNAIL_LINK && !pf->thumbnail)
        return fail(c, "thumbnail", "required when media is \"thumbnail_link\"");

    if ((v = json_object_get(doc, "labels")) && parse_labels(c, v, pf)) return -1;
    if ((v = json_object_get(doc, "origins")) && get_slug_map(c, v, "origins", pf->origins))
        return -1;
    if ((v = json_object_get(doc, "transcript_markers"))) {
        if (!json_is_boolean(v)) return fail(c, "transcript_markers", "must be true or false");
        pf->transcript_markers = json_is_true(v);
    }
    if ((v = json_object_get(doc, "mask"))) {
        if (!json_is_array(v)) return fail(c, "mask", "must be an array");
        json_array_foreach(v, i, k) {
            char key[64];
            uint32_t bit = 0;
            snprintf(key, sizeof key, "mask[%zu]", i);
            for (size_t m = 0; json_is_string(k) && m < sizeof mask_names / sizeof *mask_names; m++)
                if (strcmp(mask_names[m].name, json_string_value(k)) == 0) bit = mask_names[m].bit;
            if (!bit)
                return fail(c, key, "must be one of caller_number, device_id, phone_in_text, "
                            "email_in_text");
            pf->mask |= bit;
        }
    }
    return 0;
}

int tl_profile_parse(const char *json, size_t len, tl_platform_t platform, const char *source,
                     tl_profile_t **out, char *err, size_t errlen) {
    chk_t c = {source, err, errlen, 0, 0};
    json_error_t je;
    if ((unsigned)platform >= TL_PLATFORM__COUNT) {
        fail(&c, "platform", "out of range");
        return TL_ECONFIG;
    }
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        char where[64];
        snprintf(where, sizeof where, "line %d column %d", je.line, je.column);
        fail(&c, where, "not valid JSON: %s", je.text);
        return TL_ECONFIG;
    }
    tl_profile_t *pf = calloc(1, sizeof *pf);
    if (!pf) {
        json_decref(doc);
        return TL_ENOMEM;
    }
    snprintf(pf->source, sizeof pf->source, "%s", source);
    pf->separator = dup(&c, " \xc2\xb7 ");
    pf->raw_entry_point = 1;
    parse_doc(&c, doc, platform, pf);
    json_decref(doc);
    if (c.failed || c.nomem) {
        tl_profile_free(pf);
        if (!c.failed) snprintf(err, errlen, "%s: out of memory", source);
        return c.failed ? TL_ECONFIG : TL_ENOMEM;
    }
    *out = pf;
    return TL_OK;
}

int tl_profile_load(const char *dir, tl_platform_t platform, tl_profile_t **out, char *err,
                    size_t errlen) {
    const char *slug = tl_platform_slug(platform);
    if (dir && *dir) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.json", dir, slug);
        FILE *f = fopen(path, "rb");
        if (f) {
            char *text = NULL;
            size_t n = 0, cap = 0;
            int rc = TL_OK;
            for (;;) {
                if (n == cap) {
                    char *t = cap < (4u << 20) ? realloc(text, cap = cap ? cap * 2 : 8192) : NULL;
                    if (!t) {
                        snprintf(err, errlen, "%s: larger than 4 MiB", path);
                        rc = TL_ECONFIG;
                        break;
                    }
                    text = t;
                }
                size_t r = fread(text + n, 1, cap - n, f);
                n += r;
                if (r == 0) {
                    if (ferror(f)) {
                        snprintf(err, errlen, "%s: %s", path, strerror(errno));
                        rc = TL_EIO;
                    }
                    break;
                }
            }
            fclose(f);
            if (rc == TL_OK) rc = tl_profile_parse(text, n, platform, path, out, err, errlen);
            free(text);
            return rc;
        }
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return TL_EIO;
        }
    }
    const char *text = tl_profile_builtin(platform);
    char source[128];
    snprintf(source, sizeof source, "schemas/platforms/%s.json (built in)", slug);
    if (!text) {
        snprintf(err, errlen, "%s: no such profile", source);
        return TL_ECONFIG;
    }
    return tl_profile_parse(text, strlen(text), platform, source, out, err, errlen);
}
