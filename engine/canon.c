/*
 * canon.c -- Avro Parsing Canonical Form and CRC-64-AVRO (see canon.h).
 *
 * The schema text is parsed with jansson and rebuilt as a new JSON tree
 * that holds only what the specification keeps, in the order it requires;
 * jansson then prints that tree compactly.  The transformations of the
 * specification map onto this as follows:
 *
 *   PRIMITIVES  {"type":"int", ...}        -> "int"
 *   FULLNAMES   "name" is qualified with the "namespace" attribute or the
 *               namespace of the innermost enclosing named type; references
 *               are resolved the same way; "namespace" is dropped
 *   STRIP       only name, type, fields, symbols, items, values, size survive
 *               (doc, aliases, default, order, logicalType, "pii", ... go)
 *   ORDER       keys are inserted in the order name, type, fields, symbols,
 *               items, values, size; jansson keeps insertion order
 *   STRINGS     jansson decodes escapes on input and prints UTF-8 as is,
 *               escaping only what JSON requires
 *   INTEGERS    the fixed size is printed from an integer, so no leading
 *               zeros survive
 *   WHITESPACE  JSON_COMPACT without indentation prints none
 *
 * A named type is written out in full at its first occurrence and as its
 * quoted full name afterwards (also for recursive references).  A reference
 * without a dot is looked up in the enclosing namespace first and in the
 * null namespace second, as the Java implementation does.  Names, namespaces
 * and enum symbols are checked against [A-Za-z_][A-Za-z0-9_]*, which is also
 * why the printed strings never need escapes.
 *
 * The CRC table is built once (pthread_once) so that every thread may
 * fingerprint without locking.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "canon.h"
#include "error.h"

/* ---- CRC-64-AVRO ------------------------------------------------------- */

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
    for (unsigned i = 0; i < 256; i++) {
        uint64_t fp = i;
        for (int j = 0; j < 8; j++)
            fp = (fp >> 1) ^ (TL_CANON_CRC64_EMPTY & -(fp & 1));
        crc_table[i] = fp;
    }
}

uint64_t tl_canon_crc64(const void *p, size_t n) {
    pthread_once(&crc_once, crc_table_init);
    const unsigned char *b = p;
    uint64_t fp = TL_CANON_CRC64_EMPTY;
    for (size_t i = 0; i < n; i++)
        fp = (fp >> 8) ^ crc_table[(fp ^ b[i]) & 0xff];
    return fp;
}

/* ---- Parsing Canonical Form ------------------------------------------- */

typedef struct canon {
    json_t *defined;        /* full name -> true, for every named type seen */
    int err;                /* first error: TL_ESCHEMA or TL_ENOMEM */
} canon_t;

static const char *const primitives[] = {
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
};

static int is_primitive(const char *s) {
    for (size_t i = 0; i < sizeof primitives / sizeof primitives[0]; i++)
        if (strcmp(s, primitives[i]) == 0) return 1;
    return 0;
}

/* [A-Za-z_][A-Za-z0-9_]* over n bytes. */
static int is_ident(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
        if (!alpha && !(i > 0 && ch >= '0' && ch <= '9')) return 0;
    }
    return 1;
}

/* Dot-separated identifiers; "" is the null namespace only when allow_empty. */
static int is_dotted(const char *s, int allow_empty) {
    if (*s == 0) return allow_empty;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (!is_ident(s, n)) return 0;
        if (!dot) return 1;
        s = dot + 1;
    }
}

static json_t *fail(canon_t *cx, int err) {
    if (!cx->err) cx->err = err;
    return NULL;
}

/* "ns.name" or "name"; a new jansson string, NULL on ENOMEM. */
static json_t *join_name(const char *ns, const char *name) {
    if (!ns || !*ns) return json_string(name);
    size_t a = strlen(ns), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, ns, a);
    s[a] = '.';
    memcpy(s + a + 1, name, b + 1);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* Namespace part of a full name ("a.b.c" -> "a.b", "c" -> ""), malloc'ed. */
static char *namespace_of(const char *full) {
    const char *dot = strrchr(full, '.');
    size_t n = dot ? (size_t)(dot - full) : 0;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, full, n);
    s[n] = 0;
    return s;
}

static json_t *canon_schema(canon_t *cx, json_t *s, const char *ns);

/* A type name in reference position: a primitive or a named type defined
 * earlier. */
static json_t *canon_reference(canon_t *cx, const char *name, const char *ns) {
    if (is_primitive(name)) return json_string(name);
    if (!is_dotted(name, 0)) return fail(cx, TL_ESCHEMA);
    if (!strchr(name, '.') && ns && *ns) {
        json_t *full = join_name(ns, name);
        if (!full) return fail(cx, TL_ENOMEM);
        if (json_object_get(cx->defined, json_string_value(full))) return full;
        json_decref(full);
    }
    if (json_object_get(cx->defined, name)) return json_string(name);
    return fail(cx, TL_ESCHEMA);
}

static json_t *canon_fields(canon_t *cx, json_t *fields, const char *ns) {
    if (!json_is_array(fields)) return fail(cx, TL_ESCHEMA);
    json_t *out = json_array();
    if (!out) return fail(cx, TL_ENOMEM);
    size_t i;
    json_t *f;
    json_array_foreach(fields, i, f) {
        json_t *name = json_object_get(f, "name");
        json_t *type = json_object_get(f, "type");
        if (!json_is_string(name) || !type ||
            !is_ident(json_string_value(name), json_string_length(name))) {
            json_decref(out);
            return fail(cx, TL_ESCHEMA);
        }
        json_t *ct = canon_schema(cx, type, ns);
        if (!ct) {
            json_decref(out);
            return NULL;
        }
        /* The _new setters take their value even when they fail. */
        json_t *cf = json_object();
        if (!cf || json_array_append_new(out, cf) || json_object_set(cf, "name", name)) {
            json_decref(ct);
            json_decref(out);
            return fail(cx, TL_ENOMEM);
        }
        if (json_object_set_new(cf, "type", ct)) {
            json_decref(out);
            return fail(cx, TL_ENOMEM);
        }
    }
    return out;
}

static json_t *canon_symbols(canon_t *cx, json_t *symbols) {
    if (!json_is_array(symbols)) return fail(cx, TL_ESCHEMA);
    size_t i, j;
    json_t *sym;
    json_array_foreach(symbols, i, sym) {
        if (!json_is_string(sym) ||
            !is_ident(json_string_value(sym), json_string_length(sym)))
            return fail(cx, TL_ESCHEMA);
        for (j = 0; j < i; j++)
            if (json_equal(json_array_get(symbols, j), sym)) return fail(cx, TL_ESCHEMA);
    }
    json_t *out = json_deep_copy(symbols);
    return out ? out : fail(cx, TL_ENOMEM);
}

/* record, error, enum, fixed: a definition. */
static json_t *canon_named(canon_t *cx, json_t *s, const char *type, const char *ns) {
    json_t *jname = json_object_get(s, "name");
    json_t *jspace = json_object_get(s, "namespace");
    if (!json_is_string(jname) || (jspace && !json_is_string(jspace) && !json_is_null(jspace)))
        return fail(cx, TL_ESCHEMA);
    const char *name = json_string_value(jname);
    if (!strchr(name, '.') && json_is_string(jspace)) {
        ns = json_string_value(jspace);
        if (!is_dotted(ns, 1)) return fail(cx, TL_ESCHEMA);
    }
    if (!is_dotted(name, 0)) return fail(cx, TL_ESCHEMA);

    json_t *full = strchr(name, '.') ? json_string(name) : join_name(ns, name);
    if (!full) return fail(cx, TL_ENOMEM);
    const char *fullname = json_string_value(full);
    const char *last = strrchr(fullname, '.');
    if (is_primitive(last ? last + 1 : fullname) || json_object_get(cx->defined, fullname)) {
        json_decref(full);
        return fail(cx, TL_ESCHEMA);
    }
    /* Defined before the fields are walked: a record may refer to itself. */
    json_t *out = json_object();
    if (!out || json_object_set_new(out, "name", full) ||
        json_object_set_new(cx->defined, fullname, json_true())) {
        if (!out) json_decref(full);
        json_decref(out);
        return fail(cx, TL_ENOMEM);
    }
    char *inner = namespace_of(fullname);
    if (!inner) {
        json_decref(out);
        return fail(cx, TL_ENOMEM);
    }

    int is_record = strcmp(type, "record") == 0 || strcmp(type, "error") == 0;
    json_t *body = NULL;
    const char *key;
    if (is_record) {
        key = "fields";
        body = canon_fields(cx, json_object_get(s, "fields"), inner);
    } else if (strcmp(type, "enum") == 0) {
        key = "symbols";
        body = canon_symbols(cx, json_object_get(s, "symbols"));
    } else {
        key = "size";
        json_t *size = json_object_get(s, "size");
        if (json_is_integer(size) && json_integer_value(size) >= 0 &&
            json_integer_value(size) <= INT32_MAX)
            body = json_integer(json_integer_value(size));
        else
            fail(cx, TL_ESCHEMA);
    }
    free(inner);
    if (!body) {
        json_decref(out);
        return NULL;
    }
    if (json_object_set_new(out, "type", json_string(is_record ? "record" : type))) {
        json_decref(body);
        json_decref(out);
        return fail(cx, TL_ENOMEM);
    }
    if (json_object_set_new(out, key, body)) {
        json_decref(out);
        return fail(cx, TL_ENOMEM);
    }
    return out;
}

static json_t *canon_object(canon_t *cx, json_t *s, const char *ns) {
    json_t *jtype = json_object_get(s, "type");
    if (json_is_object(jtype) || json_is_array(jtype))
        return canon_schema(cx, jtype, ns);
    if (!json_is_string(jtype)) return fail(cx, TL_ESCHEMA);
    const char *type = json_string_value(jtype);

    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0 ||
        strcmp(type, "enum") == 0 || strcmp(type, "fixed") == 0)
        return canon_named(cx, s, type, ns);

    if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
        const char *key = type[0] == 'a' ? "items" : "values";
        json_t *inner = json_object_get(s, key);
        if (!inner) return fail(cx, TL_ESCHEMA);
        json_t *ci = canon_schema(cx, inner, ns);
        if (!ci) return NULL;
        json_t *out = json_object();
        if (!out || json_object_set_new(out, "type", json_string(type))) {
            json_decref(ci);
            json_decref(out);
            return fail(cx, TL_ENOMEM);
        }
        if (json_object_set_new(out, key, ci)) {
            json_decref(out);
            return fail(cx, TL_ENOMEM);
        }
        return out;
    }
    return canon_reference(cx, type, ns);
}

static json_t *canon_union(canon_t *cx, json_t *s, const char *ns) {
    json_t *out = json_array();
    if (!out) return fail(cx, TL_ENOMEM);
    size_t i;
    json_t *b;
    json_array_foreach(s, i, b) {
        json_t *cb = canon_schema(cx, b, ns);
        if (!cb || json_is_array(cb)) {         /* unions may not nest */
            json_decref(cb);
            json_decref(out);
            return fail(cx, TL_ESCHEMA);
        }
        if (json_array_append_new(out, cb)) {
            json_decref(out);
            return fail(cx, TL_ENOMEM);
        }
    }
    return out;
}

/* Canonical tree of schema s in namespace ns; NULL with cx->err set. */
static json_t *canon_schema(canon_t *cx, json_t *s, const char *ns) {
    if (json_is_string(s)) return canon_reference(cx, json_string_value(s), ns);
    if (json_is_array(s)) return canon_union(cx, s, ns);
    if (json_is_object(s)) return canon_object(cx, s, ns);
    return fail(cx, TL_ESCHEMA);
}

int tl_canon_form(const char *schema_json, tl_buf_t *out) {
    json_error_t jerr;
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return TL_EJSON;

    canon_t cx = { json_object(), 0 };
    json_t *tree = cx.defined ? canon_schema(&cx, root, "") : fail(&cx, TL_ENOMEM);
    json_decref(root);
    json_decref(cx.defined);
    if (!tree) return cx.err ? cx.err : TL_ENOMEM;

    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(tree, NULL, 0, flags);
    int rc = n ? tl_buf_reserve(out, n) : TL_ENOMEM;
    if (rc == TL_OK) {
        json_dumpb(tree, out->data + out->len, n, flags);
        out->len += n;
        out->data[out->len] = 0;
    }
    json_decref(tree);
    return rc;
}

int tl_canon_fingerprint(const char *schema_json, uint64_t *out) {
    tl_buf_t form;
    tl_buf_init(&form);
    int rc = tl_canon_form(schema_json, &form);
    if (rc == TL_OK) *out = tl_canon_crc64(form.data, form.len);
    tl_buf_close(&form);
    return rc;
}
