/*
 * view.c -- rendering a Change for a platform (see view.h).
 *
 * Everything is built in fresh buffers and JSON values per call; nothing
 * is cached, so the function stays pure and safe on any thread.  jansson
 * keeps object keys in insertion order, so the code's order is the body's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "view.h"

size_t tl_view_utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t cut = max;
    /* Back off continuation bytes (10xxxxxx): the cut then sits before the
     * lead byte of the character it would have split. */
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

/* PostgreSQL's text and jsonb cannot hold U+0000: a NUL byte from a
 * producer becomes U+FFFD, so one odd message cannot stop a view. */
static void append_clean(tl_buf_t *out, const char *p, size_t n) {
    for (const char *z; n && (z = memchr(p, 0, n));) {
        tl_buf_append(out, p, (size_t)(z - p));
        tl_buf_puts(out, "\xef\xbf\xbd");
        n -= (size_t)(z - p) + 1;
        p = z + 1;
    }
    tl_buf_append(out, p, n);
}

static json_t *jstr(tl_str_t s) {
    if (!s.ptr) return json_null();
    if (memchr(s.ptr, 0, s.len)) {
        tl_buf_t b;
        tl_buf_init(&b);
        append_clean(&b, s.ptr, s.len);
        json_t *j = b.data ? json_stringn(b.data, b.len) : NULL;
        tl_buf_close(&b);
        return j ? j : json_null();
    }
    json_t *j = json_stringn(s.ptr, s.len);
    /* Not UTF-8 (a third-party producer's bytes): shown as absent rather
     * than dropping the item. */
    return j ? j : json_null();
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits of s become '*' except the last `keep` digits. */
static void mask_digits(tl_buf_t *out, tl_str_t s, size_t keep) {
    size_t digits = 0;
    for (size_t i = 0; i < s.len; i++) digits += is_digit(s.ptr[i]);
    size_t seen = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (is_digit(c) && seen++ + keep < digits) c = '*';
        tl_buf_append(out, &c, 1);
    }
}

/* Characters of s become '*' except the last `keep` characters. */
static void mask_chars(tl_buf_t *out, tl_str_t s, size_t keep) {
    size_t chars = 0;
    for (size_t i = 0; i < s.len; i++) chars += ((unsigned char)s.ptr[i] & 0xC0) != 0x80;
    size_t seen = 0;
    for (size_t i = 0; i < s.len;) {
        size_t n = 1;
        while (i + n < s.len && ((unsigned char)s.ptr[i + n] & 0xC0) == 0x80) n++;
        if (seen++ + keep < chars) tl_buf_append(out, "*", 1);
        else tl_buf_append(out, s.ptr + i, n);
        i += n;
    }
}

static int email_local(char c) {
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int email_domain(char c) { return isalnum((unsigned char)c) || c == '-' || c == '.'; }

/* The text with the profile's in-text masks applied. */
static void mask_text(tl_buf_t *out, tl_str_t s, uint32_t mask) {
    size_t i = 0;
    while (i < s.len) {
        char c = s.ptr[i];
        if ((mask & TL_MASK_PHONE_IN_TEXT) && is_digit(c)) {
            size_t j = i;
            while (j < s.len && is_digit(s.ptr[j])) j++;
            if (j - i >= 7) mask_digits(out, (tl_str_t){s.ptr + i, j - i}, 4);
            else tl_buf_append(out, s.ptr + i, j - i);
            i = j;
            continue;
        }
        if ((mask & TL_MASK_EMAIL_IN_TEXT) && email_local(c)) {
            size_t j = i;
            while (j < s.len && email_local(s.ptr[j])) j++;
            if (j < s.len && s.ptr[j] == '@') {
                size_t d = j + 1, dot = 0;
                while (d < s.len && email_domain(s.ptr[d])) {
                    if (s.ptr[d] == '.' && d > j + 1) dot = d;
                    d++;
                }
                if (dot && dot + 1 < d) {
                    tl_buf_puts(out, "***");
                    tl_buf_append(out, s.ptr + j, d - j);
                    i = d;
                    continue;
                }
            }
            /* Not an address: copy the run, but leave digits to the phone
             * mask by copying only up to the first digit when it is on. */
            size_t k = i;
            while (k < j && !((mask & TL_MASK_PHONE_IN_TEXT) && is_digit(s.ptr[k]))) k++;
            if (k == i) k = i + 1;
            tl_buf_append(out, s.ptr + i, k - i);
            i = k;
            continue;
        }
        tl_buf_append(out, &c, 1);
        i++;
    }
}

/* "m:ss" or "h:mm:ss" of a non-negative offset in ms. */
static void clock_text(char *out, size_t n, int64_t ms) {
    if (ms < 0) ms = 0;
    long long s = (long long)(ms / 1000);
    if (s >= 3600) snprintf(out, n, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, n, "%lld:%02lld", s / 60, s % 60);
}

/* ASCII-case-insensitive substring search. */
static int contains_ci(tl_str_t hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0 || n > hay.len) return 0;
    for (size_t i = 0; i + n <= hay.len; i++) {
        size_t j = 0;
        while (j < n && tolower((unsigned char)hay.ptr[i + j]) == tolower((unsigned char)needle[j])) j++;
        if (j == n) return 1;
    }
    return 0;
}

/* Rule 6 of view.h. */
static char *source_label(const tl_profile_t *pf, const tl_event_t *ev, tl_str_t text) {
    const char *plat = (unsigned)ev->platform < TL_PLATFORM__COUNT && pf->platform_labels[ev->platform]
                           ? pf->platform_labels[ev->platform]
                           : tl_platform_slug(ev->platform);
    tl_str_t entry = ev->kind == TL_EV_MESSAGE_RECEIVED ? ev->u.message.entry_point : TL_STR_NULL;
    const char *topic = NULL;
    tl_str_t raw = TL_STR_NULL;
    for (size_t i = 0; i < pf->nkeywords && !topic && text.ptr; i++)
        for (size_t j = 0; j < pf->keywords[i].nany && !topic; j++)
            if (contains_ci(text, pf->keywords[i].any[j])) topic = pf->keywords[i].label;
    for (size_t i = 0; i < pf->nentries && !topic && entry.ptr; i++) {
        size_t n = strlen(pf->entries[i].prefix);
        if (entry.len >= n && memcmp(entry.ptr, pf->entries[i].prefix, n) == 0) topic = pf->entries[i].label;
    }
    if (!topic && entry.ptr && entry.len && pf->raw_entry_point) raw = entry;
    tl_buf_t b;
    tl_buf_init(&b);
    tl_buf_puts(&b, plat);
    if (topic || raw.ptr) {
        tl_buf_puts(&b, pf->separator ? pf->separator : " ");
        if (topic) tl_buf_puts(&b, topic);
        else append_clean(&b, raw.ptr, raw.len);
    }
    if (!b.data) tl_buf_append(&b, "", 1);
    return b.data;      /* NULL on allocation failure */
}

/* Replaces every "{name}" of tmpl by its value. */
static void expand(tl_buf_t *out, const char *tmpl, const char *const *names, const tl_str_t *vals,
                   size_t n) {
    for (const char *p = tmpl; *p;) {
        size_t i;
        for (i = 0; i < n; i++) {
            size_t k = strlen(names[i]);
            if (strncmp(p, names[i], k) == 0) {
                tl_buf_append(out, vals[i].ptr ? vals[i].ptr : "", vals[i].len);
                p += k;
                break;
            }
        }
        if (i == n) tl_buf_append(out, p++, 1);
    }
}

static json_t *attachments(const tl_profile_t *pf, const tl_attachments_t *a) {
    json_t *arr = json_array();
    for (size_t i = 0; i < a->n; i++) {
        const tl_attachment_t *at = &a->v[i];
        int image = at->mime.len >= 6 && memcmp(at->mime.ptr, "image/", 6) == 0;
        json_t *j = json_object();
        if (pf->media == TL_MEDIA_INLINE) {
            json_object_set_new(j, "url", jstr(at->url));
            json_object_set_new(j, "mime", jstr(at->mime));
            json_object_set_new(j, "bytes", json_integer(at->bytes));
            if (at->has_width) json_object_set_new(j, "width", json_integer(at->width));
            if (at->has_height) json_object_set_new(j, "height", json_integer(at->height));
        } else if (pf->media == TL_MEDIA_THUMBNAIL_LINK && image) {
            tl_buf_t t;
            tl_buf_init(&t);
            static const char *const names[] = {"{url}"};
            expand(&t, pf->thumbnail, names, &at->url, 1);
            json_object_set_new(j, "thumbnail", t.data ? jstr((tl_str_t){t.data, t.len}) : json_null());
            tl_buf_close(&t);
            json_object_set_new(j, "link", jstr(at->url));
            json_object_set_new(j, "mime", jstr(at->mime));
            if (at->has_width) json_object_set_new(j, "width", json_integer(at->width));
            if (at->has_height) json_object_set_new(j, "height", json_integer(at->height));
        } else {
            json_object_set_new(j, "link", jstr(at->url));
            json_object_set_new(j, "mime", jstr(at->mime));
            if (pf->media == TL_MEDIA_THUMBNAIL_LINK) json_object_set_new(j, "bytes", json_integer(at->bytes));
        }
        json_array_append_new(arr, j);
    }
    return arr;
}

static const char *speaker_name(tl_speaker_t s) {
    return s == TL_SPEAKER_CUSTOMER ? "customer" : s == TL_SPEAKER_AGENT ? "agent" : "unknown";
}

static json_t *masked(tl_str_t s, int on, int digits) {
    if (!s.ptr || !on) return jstr(s);
    tl_buf_t b;
    tl_buf_init(&b);
    if (digits) mask_digits(&b, s, 4);
    else mask_chars(&b, s, 4);
    json_t *j = jstr(b.data ? (tl_str_t){b.data, b.len} : (tl_str_t){"", 0});
    tl_buf_close(&b);
    return j;
}

static json_t *strs(tl_strs_t s) {
    json_t *a = json_array();
    for (size_t i = 0; i < s.n; i++) json_array_append_new(a, jstr(s.v[i]));
    return a;
}

/* The body without text and attachments: what every part carries. */
static json_t *body_base(const tl_profile_t *pf, const tl_event_t *ev, const char *marker) {
    json_t *o = json_object();
    switch (ev->kind) {
    case TL_EV_MESSAGE_RECEIVED:
        json_object_set_new(o, "entry_point", jstr(ev->u.message.entry_point));
        json_object_set_new(o, "device_id", masked(ev->u.message.device_id, pf->mask & TL_MASK_DEVICE_ID, 0));
        break;
    case TL_EV_AGENT_REPLIED:
        json_object_set_new(o, "agent_id", jstr(ev->u.reply.agent_id));
        json_object_set_new(o, "target_platform", json_string(tl_platform_slug(ev->u.reply.target_platform)));
        break;
    case TL_EV_TRANSCRIPT_SEGMENT:
        json_object_set_new(o, "call_id", jstr(ev->u.transcript.call_id));
        json_object_set_new(o, "start_ms", json_integer(ev->u.transcript.start_ms));
        json_object_set_new(o, "end_ms", json_integer(ev->u.transcript.end_ms));
        json_object_set_new(o, "time_marker", json_string(marker));
        json_object_set_new(o, "speaker", json_string(speaker_name(ev->u.transcript.speaker)));
        /* Rounded to 3 decimals: a float's shortest text is not the same
         * in every printf, and views must compare byte for byte. */
        json_object_set_new(o, "confidence",
                            json_real((double)(int64_t)(ev->u.transcript.confidence * 1000.0f + 0.5f) / 1000.0));
        if (ev->u.transcript.caller_number.ptr)
            json_object_set_new(o, "caller_number",
                                masked(ev->u.transcript.caller_number, pf->mask & TL_MASK_CALLER_NUMBER, 1));
        break;
    case TL_EV_BEHAVIOR_TRACKED:
        json_object_set_new(o, "page", jstr(ev->u.behavior.page));
        json_object_set_new(o, "action", jstr(ev->u.behavior.action));
        json_object_set_new(o, "device_id", masked(ev->u.behavior.device_id, pf->mask & TL_MASK_DEVICE_ID, 0));
        break;
    case TL_EV_CONVERSATION_ASSIGNED:
        json_object_set_new(o, "agent_id", jstr(ev->u.assign.agent_id));
        json_object_set_new(o, "team_id", jstr(ev->u.assign.team_id));
        break;
    case TL_EV_CONVERSATION_TAGGED:
        json_object_set_new(o, "added", strs(ev->u.tag.added));
        json_object_set_new(o, "removed", strs(ev->u.tag.removed));
        break;
    case TL_EV_CONVERSATION_CLOSED:
        json_object_set_new(o, "reason", jstr(ev->u.close.reason));
        json_object_set_new(o, "closed_by", jstr(ev->u.close.closed_by));
        break;
    default:
        break;
    }
    if ((unsigned)ev->platform < TL_PLATFORM__COUNT && pf->origins[ev->platform])
        json_object_set_new(o, "origin", json_string(pf->origins[ev->platform]));
    return o;
}

static int add_row(tl_view_rows_t *out, size_t cap, const tl_event_t *ev, int part, const char *label,
                   json_t *body) {
    char *bj = json_dumps(body, JSON_COMPACT);
    char *lb = strdup(label);
    if (!bj || !lb || out->n >= cap) {
        free(bj);
        free(lb);
        return TL_ENOMEM;
    }
    out->v[out->n++] = (tl_view_row_t){part, tl_event_kind_name(ev->kind), tl_platform_slug(ev->platform),
                                       lb, bj};
    return TL_OK;
}

int tl_view_render(const tl_profile_t *pf, const tl_change_t *ch, const tl_event_t *ev,
                   tl_view_rows_t *out) {
    out->v = NULL;
    out->n = 0;
    if (ch->duplicate || ch->ignored.ptr || !ch->conversation_id.ptr || !ch->conversation_id.len ||
        (unsigned)ev->kind >= TL_EV__COUNT || !(pf->kinds & 1u << ev->kind))
        return TL_OK;

    tl_str_t text = TL_STR_NULL;
    const tl_attachments_t *atts = NULL;
    if (ev->kind == TL_EV_MESSAGE_RECEIVED) text = ev->u.message.text, atts = &ev->u.message.attachments;
    else if (ev->kind == TL_EV_AGENT_REPLIED) text = ev->u.reply.text, atts = &ev->u.reply.attachments;
    else if (ev->kind == TL_EV_TRANSCRIPT_SEGMENT) text = ev->u.transcript.text;

    char marker[64] = "";
    if (ev->kind == TL_EV_TRANSCRIPT_SEGMENT) {
        char a[24], b[24];
        clock_text(a, sizeof a, ev->u.transcript.start_ms);
        clock_text(b, sizeof b, ev->u.transcript.end_ms);
        snprintf(marker, sizeof marker, "%s\xe2\x80\x93%s", a, b);
    }

    /* Rules 2 and 3: the text as this platform shows it. */
    tl_buf_t t;
    tl_buf_init(&t);
    if (text.ptr) {
        if (marker[0] && pf->transcript_markers) tl_buf_printf(&t, "[%s] ", marker);
        if (pf->mask & (TL_MASK_PHONE_IN_TEXT | TL_MASK_EMAIL_IN_TEXT)) mask_text(&t, text, pf->mask);
        else append_clean(&t, text.ptr, text.len);
        if (memchr(t.data ? t.data : "", 0, t.len)) {
            tl_buf_t c;
            tl_buf_init(&c);
            append_clean(&c, t.data, t.len);
            tl_buf_close(&t);
            t = c;
        }
        if (!t.data) tl_buf_append(&t, "", 1);
        if (!t.data) return TL_ENOMEM;
    }
    char *label = source_label(pf, ev, text);
    if (!label) {
        tl_buf_close(&t);
        return TL_ENOMEM;
    }

    /* Rule 4: how many rows. */
    size_t nparts = 1, len = t.len;
    int cut = 0;
    if (text.ptr && pf->max_bytes && len > pf->max_bytes) {
        if (pf->overflow == TL_OVERFLOW_CUT) {
            cut = 1;
        } else {
            nparts = 0;
            for (size_t off = 0; off < len; nparts++) {
                size_t n = tl_view_utf8_cut(t.data + off, len - off, pf->max_bytes);
                off += n ? n : 1;
            }
        }
    }
    int rc = TL_ENOMEM;
    if (!(out->v = calloc(nparts, sizeof *out->v))) goto done;

    size_t off = 0;
    for (size_t part = 0; part < nparts; part++) {
        json_t *body = body_base(pf, ev, marker);
        if (text.ptr) {
            if (cut) {
                tl_buf_t link, whole;
                tl_buf_init(&link);
                tl_buf_init(&whole);
                static const char *const names[] = {"{conversation_id}", "{event_id}"};
                const tl_str_t vals[] = {ch->conversation_id, ev->event_id};
                expand(&link, pf->link, names, vals, 2);
                /* "… " is 4 bytes. */
                size_t room = pf->max_bytes - (link.len + 4);
                size_t keep = tl_view_utf8_cut(t.data, len, room);
                tl_buf_append(&whole, t.data, keep);
                tl_buf_puts(&whole, "\xe2\x80\xa6 ");
                tl_buf_append(&whole, link.data ? link.data : "", link.len);
                json_object_set_new(body, "text", whole.data ? json_stringn(whole.data, whole.len) : json_null());
                json_object_set_new(body, "truncated", json_true());
                json_object_set_new(body, "full_text_link",
                                    link.data ? json_stringn(link.data, link.len) : json_null());
                tl_buf_close(&link);
                tl_buf_close(&whole);
            } else {
                size_t n = nparts > 1 ? tl_view_utf8_cut(t.data + off, len - off, pf->max_bytes) : len;
                if (nparts > 1 && n == 0) n = 1;
                json_t *piece = json_stringn(t.data + off, n);
                json_object_set_new(body, "text", piece ? piece : json_null());
                off += n;
                if (nparts > 1) {
                    json_object_set_new(body, "part", json_integer((json_int_t)part));
                    json_object_set_new(body, "parts", json_integer((json_int_t)nparts));
                }
            }
        }
        if (atts && part == 0) json_object_set_new(body, "attachments", attachments(pf, atts));
        int e = add_row(out, nparts, ev, (int)part, label, body);
        json_decref(body);
        if (e) goto done;
    }
    rc = TL_OK;
done:
    free(label);
    tl_buf_close(&t);
    if (rc) tl_view_rows_close(out);
    return rc;
}

void tl_view_rows_close(tl_view_rows_t *out) {
    if (!out) return;
    for (size_t i = 0; i < out->n; i++) {
        free(out->v[i].source_label);
        free(out->v[i].body);
    }
    free(out->v);
    out->v = NULL;
    out->n = 0;
}
