/*
 * config.c -- configuration table (see config.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"

static int parse_int(const char *name, const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "threadline: %s: not a non-negative integer: \"%s\"\n", name, s);
        return TL_ECONFIG;
    }
    *out = v;
    return TL_OK;
}

static void env_name(const char *flag, char *out, size_t n) {
    size_t j = 0;
    out[j++] = 'T'; out[j++] = 'L'; out[j++] = '_';
    for (const char *p = flag; *p && j + 1 < n; p++)
        out[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = 0;
}

int tl_config_init(tl_config_t *cfg) {
    char env[64];
    const char *v;
#define TL_CONFIG_SET_STR(f, s) cfg->f = s;
#define TL_CONFIG_SET_INT(f, s) if (parse_int(#f, s, &cfg->f)) return TL_ECONFIG;
#define TL_CONFIG_SET_BOOL(f, s) TL_CONFIG_SET_INT(f, s)
#define TL_CONFIG_IS_BOOL 1
#define TL_CONFIG_IS_STR 0
#define TL_CONFIG_IS_INT 0
#define TL_CONFIG_DEFAULT(f, flag, type, def, help)                           \
    TL_CONFIG_SET_##type(f, def)                                              \
    env_name(flag, env, sizeof env);                                          \
    if ((v = getenv(env)) && *v) { TL_CONFIG_SET_##type(f, v) }
    TL_CONFIG_MAP(TL_CONFIG_DEFAULT)
#undef TL_CONFIG_DEFAULT
    /* The short spelling used in the docs: TL_KAFKA=embedded. */
    if ((v = getenv("TL_KAFKA")) && *v) cfg->kafka_brokers = v;
    return TL_OK;
}

int tl_config_flag(tl_config_t *cfg, int argc, char **argv, int *i) {
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0) return 0;
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    if (nlen == 5 && strncmp(name, "kafka", 5) == 0) name = "kafka-brokers", nlen = 13;
#define TL_CONFIG_MATCH(f, flag, type, def, help)                             \
    if (strlen(flag) == nlen && strncmp(name, flag, nlen) == 0) {             \
        const char *val;                                                      \
        if (TL_CONFIG_IS_##type && !eq) val = "1";                            \
        else if (eq) val = eq + 1;                                            \
        else if (*i + 1 < argc) val = argv[++*i];                             \
        else {                                                                \
            fprintf(stderr, "threadline: --%s needs a value\n", flag);        \
            return TL_ECONFIG;                                                \
        }                                                                     \
        TL_CONFIG_SET_##type(f, val)                                          \
        ++*i;                                                                 \
        return 1;                                                             \
    }
    TL_CONFIG_MAP(TL_CONFIG_MATCH)
#undef TL_CONFIG_MATCH
    return 0;
}
#undef TL_CONFIG_SET_STR
#undef TL_CONFIG_SET_INT
#undef TL_CONFIG_SET_BOOL

void tl_config_usage(FILE *out) {
    char env[64];
#define TL_CONFIG_USAGE(f, flag, type, def, help)                             \
    env_name(flag, env, sizeof env);                                          \
    fprintf(out, "  --%-16s %s\n  %-18s [env %s, default %s]\n", flag, help, "", env, def);
    TL_CONFIG_MAP(TL_CONFIG_USAGE)
#undef TL_CONFIG_USAGE
}

int tl_config_kafka_embedded(const tl_config_t *cfg) {
    return strcmp(cfg->kafka_brokers, "embedded") == 0;
}
