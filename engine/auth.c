/*
 * auth.c -- API keys (see auth.h).
 *
 * The cache is a small direct-mapped table indexed by the key id's hash,
 * under one mutex: lookups come from libuv's pool threads, and holding the
 * lock for a slot copy is cheaper than anything finer.  An entry holds the
 * digest of the secret, so a cached hit still checks the presented secret.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "auth.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "pg.h"

#define CACHE_SLOTS 256

typedef struct cache_entry {
    int used;
    int64_t expires_ms;
    unsigned char digest[32];
    tl_auth_key_t key;
} cache_entry_t;

struct tl_auth {
    const tl_config_t *cfg;
    int off;
    pthread_mutex_t mu;
    cache_entry_t cache[CACHE_SLOTS];
};

static const char *const role_names[TL_ROLE__COUNT] = {"connector", "agent", "admin", "auditor"};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_lower_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int tl_auth_parse_token(const char *tok, size_t len, char key_id[TL_AUTH_KEY_ID_LEN + 1],
                        char secret[TL_AUTH_SECRET_LEN + 1]) {
    if (len != TL_AUTH_TOKEN_LEN || memcmp(tok, "tl_", 3) != 0 || tok[3 + TL_AUTH_KEY_ID_LEN] != '_')
        return TL_EINVAL;
    const char *id = tok + 3, *sec = tok + 3 + TL_AUTH_KEY_ID_LEN + 1;
    if (!is_lower_hex(id, TL_AUTH_KEY_ID_LEN) || !is_lower_hex(sec, TL_AUTH_SECRET_LEN))
        return TL_EINVAL;
    memcpy(key_id, id, TL_AUTH_KEY_ID_LEN);
    key_id[TL_AUTH_KEY_ID_LEN] = 0;
    memcpy(secret, sec, TL_AUTH_SECRET_LEN);
    secret[TL_AUTH_SECRET_LEN] = 0;
    return TL_OK;
}

void tl_auth_hash(const char *secret, size_t len, unsigned char out[32]) {
    SHA256((const unsigned char *)secret, len, out);
}

static void hex(const unsigned char *b, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

int tl_auth_generate(char key_id[TL_AUTH_KEY_ID_LEN + 1], char secret[TL_AUTH_SECRET_LEN + 1]) {
    unsigned char id[TL_AUTH_KEY_ID_LEN / 2], sec[TL_AUTH_SECRET_LEN / 2];
    if (RAND_bytes(id, sizeof id) != 1 || RAND_bytes(sec, sizeof sec) != 1) return TL_EIO;
    hex(id, sizeof id, key_id);
    hex(sec, sizeof sec, secret);
    OPENSSL_cleanse(sec, sizeof sec);
    return TL_OK;
}

int tl_auth_role_from_name(const char *s, tl_auth_role_t *out) {
    for (int r = 0; r < TL_ROLE__COUNT; r++)
        if (strcmp(s, role_names[r]) == 0) {
            *out = (tl_auth_role_t)r;
            return TL_OK;
        }
    return TL_ENOTFOUND;
}

const char *tl_auth_role_name(tl_auth_role_t r) {
    return r >= 0 && r < TL_ROLE__COUNT ? role_names[r] : "unknown";
}

/* allowed[role][op]; ingest additionally needs the platform for connectors. */
static const unsigned char allowed[TL_ROLE__COUNT][TL_OP__COUNT] = {
    /*               INGEST READ WRITE STREAM */
    [TL_ROLE_CONNECTOR] = {1, 0, 0, 0},
    [TL_ROLE_AGENT]     = {0, 1, 1, 1},
    [TL_ROLE_ADMIN]     = {1, 1, 1, 1},
    [TL_ROLE_AUDITOR]   = {0, 1, 0, 1},
};

static const char *const op_names[TL_OP__COUNT] = {"ingest", "read", "write", "stream"};

int tl_auth_allow(const tl_auth_key_t *key, tl_auth_op_t op, tl_platform_t platform,
                  tl_problem_t *pb) {
    if (key->role < 0 || key->role >= TL_ROLE__COUNT || op < 0 || op >= TL_OP__COUNT) return 0;
    if (!allowed[key->role][op]) {
        if (pb)
            tl_problem_set(pb, 403, "forbidden", "Forbidden", NULL,
                           "a %s key may not %s here", role_names[key->role], op_names[op]);
        return 0;
    }
    if (op == TL_OP_INGEST && key->role == TL_ROLE_CONNECTOR &&
        !(platform >= 0 && platform < TL_PLATFORM__COUNT && (key->platforms & (1u << platform)))) {
        if (pb)
            tl_problem_set(pb, 403, "forbidden", "Forbidden", "platform",
                           "this connector key may not ingest for platform \"%s\"",
                           tl_platform_slug(platform));
        return 0;
    }
    return 1;
}

int tl_auth_sees(const tl_auth_key_t *key, const char *assignee, const char *team) {
    switch (key->role) {
    case TL_ROLE_ADMIN:
    case TL_ROLE_AUDITOR: return 1;
    case TL_ROLE_AGENT:
        return (assignee && key->agent_id[0] && strcmp(assignee, key->agent_id) == 0) ||
               (team && key->team[0] && strcmp(team, key->team) == 0);
    default: return 0;
    }
}

int tl_auth_new(const tl_config_t *cfg, tl_auth_t **out) {
    const char *mode = cfg->auth ? cfg->auth : "required";
    int off;
    if (strcmp(mode, "required") == 0) off = 0;
    else if (strcmp(mode, "off") == 0) off = 1;
    else {
        tl_error("auth", "--auth must be \"required\" or \"off\", not \"%s\"", mode);
        return TL_ECONFIG;
    }
    tl_auth_t *a = calloc(1, sizeof *a);
    if (!a) return TL_ENOMEM;
    a->cfg = cfg;
    a->off = off;
    pthread_mutex_init(&a->mu, NULL);
    if (off) tl_warn("auth", "--auth off: every caller is an admin; never expose this address");
    *out = a;
    return TL_OK;
}

void tl_auth_free(tl_auth_t *a) {
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    OPENSSL_cleanse(a->cache, sizeof a->cache);
    free(a);
}

int tl_auth_is_off(const tl_auth_t *a) { return a->off; }

static unsigned slot_of(const char *key_id) {
    unsigned h = 2166136261u;
    for (const char *p = key_id; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h % CACHE_SLOTS;
}

static int unauthorized(tl_problem_t *pb, const char *why) {
    return tl_problem_set(pb, 401, "unauthorized", "Unauthorized", "Authorization", "%s", why);
}

static void copy_field(char *dst, size_t n, const PGresult *r, int col) {
    if (PQgetisnull(r, 0, col)) dst[0] = 0;
    else snprintf(dst, n, "%s", PQgetvalue(r, 0, col));
}

/* Parses "{web,api}" (text[] output) into a platform bit set. */
static uint32_t platform_bits(const char *arr) {
    uint32_t bits = 0;
    const char *p = arr;
    if (*p == '{') p++;
    while (*p && *p != '}') {
        const char *e = p;
        while (*e && *e != ',' && *e != '}') e++;
        tl_platform_t pl;
        if (tl_platform_from_slug(p, (size_t)(e - p), &pl) == TL_OK) bits |= 1u << pl;
        p = *e == ',' ? e + 1 : e;
    }
    return bits;
}

int tl_auth_verify(tl_auth_t *a, PGconn *pg, const char *header, size_t len,
                   const char *tenant_param, tl_auth_key_t *key, tl_problem_t *pb) {
    memset(key, 0, sizeof *key);
    if (a->off) {
        key->role = TL_ROLE_ADMIN;
        key->platforms = (1u << TL_PLATFORM__COUNT) - 1;
        snprintf(key->key_id, sizeof key->key_id, "auth-off");
        if (tenant_param) snprintf(key->tenant, sizeof key->tenant, "%s", tenant_param);
        return 0;
    }
    if (!header) return unauthorized(pb, "send Authorization: Bearer <key>");
    if (len < 7 || strncasecmp(header, "Bearer ", 7) != 0)
        return unauthorized(pb, "the Authorization scheme must be Bearer");
    char key_id[TL_AUTH_KEY_ID_LEN + 1], secret[TL_AUTH_SECRET_LEN + 1];
    if (tl_auth_parse_token(header + 7, len - 7, key_id, secret) != TL_OK)
        return unauthorized(pb, "the bearer token is not a threadline key (tl_<id>_<secret>)");
    unsigned char digest[32];
    tl_auth_hash(secret, TL_AUTH_SECRET_LEN, digest);
    OPENSSL_cleanse(secret, sizeof secret);

    unsigned s = slot_of(key_id);
    int64_t now = mono_ms();
    pthread_mutex_lock(&a->mu);
    cache_entry_t *e = &a->cache[s];
    int hit = e->used && e->expires_ms > now && strcmp(e->key.key_id, key_id) == 0;
    int match = hit && CRYPTO_memcmp(e->digest, digest, sizeof digest) == 0;
    if (match) *key = e->key;
    pthread_mutex_unlock(&a->mu);
    if (hit) return match ? 0 : unauthorized(pb, "unknown or revoked key");

    if (!pg) {
        tl_problem_set(pb, 503, "auth-unavailable", "Key store unavailable", NULL,
                       "PostgreSQL is unreachable, so the key cannot be checked");
        pb->retry_after = 2;
        return 503;
    }
    const char *vals[] = {key_id};
    PGresult *r = PQexecParams(pg,
                               "SELECT tenant_id, role, agent_id, team, platforms::text, secret_sha256"
                               " FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL",
                               1, NULL, vals, NULL, NULL, 1 /* binary: the digest as bytes */);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        tl_warn("auth", "key lookup: %s", PQerrorMessage(pg));
        PQclear(r);
        tl_problem_set(pb, 503, "auth-unavailable", "Key store unavailable", NULL,
                       "the key could not be checked; try again");
        pb->retry_after = 1;
        return 503;
    }
    int ok = PQntuples(r) == 1 && PQgetlength(r, 0, 5) == 32 &&
             CRYPTO_memcmp(PQgetvalue(r, 0, 5), digest, sizeof digest) == 0;
    tl_auth_role_t role = TL_ROLE_CONNECTOR;
    if (ok) {
        char rolename[16];
        copy_field(rolename, sizeof rolename, r, 1);
        ok = tl_auth_role_from_name(rolename, &role) == TL_OK;
    }
    if (!ok) {
        PQclear(r);
        return unauthorized(pb, "unknown or revoked key");
    }
    snprintf(key->key_id, sizeof key->key_id, "%s", key_id);
    copy_field(key->tenant, sizeof key->tenant, r, 0);
    key->role = role;
    copy_field(key->agent_id, sizeof key->agent_id, r, 2);
    copy_field(key->team, sizeof key->team, r, 3);
    key->platforms = platform_bits(PQgetvalue(r, 0, 4));
    PQclear(r);

    pthread_mutex_lock(&a->mu);
    e = &a->cache[s];
    e->used = 1;
    e->expires_ms = now + TL_AUTH_CACHE_MS;
    memcpy(e->digest, digest, sizeof digest);
    e->key = *key;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* One connection per pool thread: key lookups on different threads never
 * wait for each other, and no connection is shared between threads. */
static _Thread_local PGconn *tls_auth_pg;

int tl_auth_verify_pooled(tl_auth_t *a, const char *header, size_t len, const char *tenant_param,
                          tl_auth_key_t *key, tl_problem_t *pb) {
    int err;
    if (!a->off && (!tls_auth_pg || PQstatus(tls_auth_pg) != CONNECTION_OK)) {
        PQfinish(tls_auth_pg);
        tls_auth_pg = tl_pg_connect(a->cfg->pg_dsn, &err);
    }
    return tl_auth_verify(a, tls_auth_pg, header, len, tenant_param, key, pb);
}

/* ---------------------------------------------------------------- ingest */

typedef struct connector_job {
    uv_work_t work;
    tl_auth_t *a;
    tl_http_pending_t *pending;
    tl_platform_t platform;
    tl_auth_cb cb;
    void *ud;
    char *header;
    size_t len;
    int status;
    tl_problem_t pb;
    tl_auth_key_t key;
} connector_job_t;

static void connector_work(uv_work_t *w) {
    connector_job_t *j = w->data;
    j->status = tl_auth_verify_pooled(j->a, j->header, j->len, NULL, &j->key, &j->pb);
    if (!j->status && !tl_auth_allow(&j->key, TL_OP_INGEST, j->platform, &j->pb))
        j->status = j->pb.status;
}

static void connector_done(uv_work_t *w, int status) {
    connector_job_t *j = w->data;
    h2o_req_t *req = j->pending->req;
    if (req) {
        if (status == UV_ECANCELED) {
            tl_problem_set(&j->pb, 503, "shutting-down", "Shutting down", NULL, "the server is stopping");
            tl_http_problem(req, &j->pb);
        } else if (j->status) {
            tl_http_problem(req, &j->pb);
        } else {
            j->cb(j->ud, req, &j->key);
        }
    }
    tl_http_pending_free(j->pending);
    free(j->header);
    free(j);
}

void tl_auth_require_connector(tl_auth_t *a, uv_loop_t *loop, h2o_req_t *req,
                               tl_platform_t platform, tl_auth_cb cb, void *ud) {
    if (a->off) {
        tl_auth_key_t key;
        tl_problem_t pb;
        tl_auth_verify(a, NULL, NULL, 0, NULL, &key, &pb);
        cb(ud, req, &key);
        return;
    }
    const h2o_iovec_t *h = tl_http_header(req, "authorization");
    /* A key the cache holds is checked here on the loop (one SHA-256 and a
     * table slot); only a miss, which needs PostgreSQL, goes to the pool.
     * Without a connection tl_auth_verify answers a miss with 503. */
    {
        tl_auth_key_t key;
        tl_problem_t pb;
        int st = tl_auth_verify(a, NULL, h ? h->base : NULL, h ? h->len : 0, NULL, &key, &pb);
        if (st != 503) {
            if (!st && !tl_auth_allow(&key, TL_OP_INGEST, platform, &pb)) st = pb.status;
            if (st) tl_http_problem(req, &pb);
            else cb(ud, req, &key);
            return;
        }
    }
    connector_job_t *j = calloc(1, sizeof *j);
    if (j && h && !(j->header = malloc(h->len + 1))) {
        free(j);
        j = NULL;
    }
    if (!j || !(j->pending = tl_http_pending_new(req))) {
        if (j) free(j->header);
        free(j);
        tl_problem_t pb;
        tl_problem_set(&pb, 503, "overloaded", "Overloaded", NULL, "out of memory");
        tl_http_problem(req, &pb);
        return;
    }
    if (h) {
        memcpy(j->header, h->base, h->len);
        j->header[h->len] = 0;
        j->len = h->len;
    }
    j->a = a;
    j->platform = platform;
    j->cb = cb;
    j->ud = ud;
    j->work.data = j;
    uv_queue_work(loop, &j->work, connector_work, connector_done);
}

/* ------------------------------------------------------------------ keys */

int tl_auth_key_create(PGconn *pg, const tl_auth_new_key_t *nk, char *token, char *msg, size_t n) {
    if (!nk->tenant || !*nk->tenant || strlen(nk->tenant) > 64) {
        snprintf(msg, n, "--tenant is required (at most 64 bytes)");
        return TL_EINVAL;
    }
    if (nk->role == TL_ROLE_AGENT && (!nk->agent_id || !*nk->agent_id)) {
        snprintf(msg, n, "an agent key needs --agent-id");
        return TL_EINVAL;
    }
    if (nk->role != TL_ROLE_AGENT && ((nk->agent_id && *nk->agent_id) || (nk->team && *nk->team))) {
        snprintf(msg, n, "--agent-id and --team are for agent keys only");
        return TL_EINVAL;
    }
    if ((nk->agent_id && strlen(nk->agent_id) > 64) || (nk->team && strlen(nk->team) > 64)) {
        snprintf(msg, n, "--agent-id and --team are at most 64 bytes");
        return TL_EINVAL;
    }
    /* Connector platforms: each must be a known platform slug. */
    char arr[256] = "{";
    size_t al = 1;
    if (nk->platforms && *nk->platforms) {
        if (nk->role != TL_ROLE_CONNECTOR) {
            snprintf(msg, n, "--platforms is for connector keys only");
            return TL_EINVAL;
        }
        const char *p = nk->platforms;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            tl_platform_t pl;
            if (tl_platform_from_slug(p, l, &pl) != TL_OK || pl == TL_PLATFORM_AGENT ||
                pl == TL_PLATFORM_SYSTEM) {
                snprintf(msg, n, "--platforms: \"%.*s\" is not an ingest platform", (int)l, p);
                return TL_EINVAL;
            }
            al += (size_t)snprintf(arr + al, sizeof arr - al, "%s%s", al > 1 ? "," : "",
                                   tl_platform_slug(pl));
            if (al >= sizeof arr - 2) break;
            p = e ? e + 1 : p + l;
        }
    } else if (nk->role == TL_ROLE_CONNECTOR) {
        snprintf(msg, n, "a connector key needs --platforms (e.g. web,api)");
        return TL_EINVAL;
    }
    snprintf(arr + al, sizeof arr - al, "}");

    char key_id[TL_AUTH_KEY_ID_LEN + 1], secret[TL_AUTH_SECRET_LEN + 1];
    if (tl_auth_generate(key_id, secret) != TL_OK) {
        snprintf(msg, n, "no randomness available from OpenSSL");
        return TL_EIO;
    }
    unsigned char digest[32];
    tl_auth_hash(secret, TL_AUTH_SECRET_LEN, digest);
    const char *vals[8] = {key_id, nk->tenant, tl_auth_role_name(nk->role),
                           nk->agent_id && *nk->agent_id ? nk->agent_id : NULL,
                           nk->team && *nk->team ? nk->team : NULL, arr, (const char *)digest,
                           nk->label};
    int lens[8] = {0, 0, 0, 0, 0, 0, 32, 0};
    int fmts[8] = {0, 0, 0, 0, 0, 0, 1, 0};
    PGresult *r = PQexecParams(pg,
                               "INSERT INTO api_keys (key_id, tenant_id, role, agent_id, team,"
                               " platforms, secret_sha256, label)"
                               " VALUES ($1, $2, $3, $4, $5, $6::text[], $7, $8)",
                               8, NULL, vals, lens, fmts, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(pg, r);
    if (rc) snprintf(msg, n, "%s", PQerrorMessage(pg));
    PQclear(r);
    if (rc == TL_OK) snprintf(token, TL_AUTH_TOKEN_LEN + 1, "tl_%s_%s", key_id, secret);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

int tl_auth_key_revoke(PGconn *pg, const char *key_id) {
    const char *vals[] = {key_id};
    PGresult *r = PQexecParams(pg,
                               "UPDATE api_keys SET revoked_at = now()"
                               " WHERE key_id = $1 AND revoked_at IS NULL",
                               1, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? TL_OK : tl_pg_err(pg, r);
    if (rc == TL_OK && strcmp(PQcmdTuples(r), "0") == 0) rc = TL_ENOTFOUND;
    PQclear(r);
    return rc;
}

static int keys_list(PGconn *pg, const char *tenant) {
    const char *vals[] = {tenant};
    PGresult *r = PQexecParams(pg,
                               "SELECT key_id, tenant_id, role, COALESCE(agent_id, ''),"
                               " COALESCE(team, ''), array_to_string(platforms, ','),"
                               " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                               " COALESCE(to_char(revoked_at AT TIME ZONE 'UTC',"
                               "   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), COALESCE(label, '')"
                               " FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1"
                               " ORDER BY tenant_id, created_at, key_id",
                               1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "threadline keys list: %s", PQerrorMessage(pg));
        PQclear(r);
        return 1;
    }
    printf("%-12s  %-16s  %-9s  %-12s  %-12s  %-14s  %-20s  %-20s  %s\n", "KEY_ID", "TENANT", "ROLE",
           "AGENT", "TEAM", "PLATFORMS", "CREATED", "REVOKED", "LABEL");
    for (int i = 0; i < PQntuples(r); i++)
        printf("%-12s  %-16s  %-9s  %-12s  %-12s  %-14s  %-20s  %-20s  %s\n", PQgetvalue(r, i, 0),
               PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
               PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 7), PQgetvalue(r, i, 8));
    PQclear(r);
    return 0;
}

static void keys_usage(FILE *out) {
    fprintf(out,
            "usage: threadline keys create --tenant T --role connector|agent|admin|auditor\n"
            "                              [--agent-id A] [--team T] [--platforms web,api] [--label L]\n"
            "       threadline keys list [--tenant T]\n"
            "       threadline keys revoke KEY_ID\n"
            "plus the configuration flags (--pg-dsn ...).  create prints the key once:\n"
            "only its SHA-256 is stored.\n");
}

int tl_auth_keys_command(tl_config_t *cfg, int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        keys_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    tl_auth_new_key_t nk = {0};
    const char *role = NULL, *target = NULL;
    for (int i = 2; i < argc;) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--tenant") == 0) dst = &nk.tenant;
        else if (strcmp(argv[i], "--role") == 0) dst = &role;
        else if (strcmp(argv[i], "--agent-id") == 0) dst = &nk.agent_id;
        else if (strcmp(argv[i], "--team") == 0) dst = &nk.team;
        else if (strcmp(argv[i], "--platforms") == 0) dst = &nk.platforms;
        else if (strcmp(argv[i], "--label") == 0) dst = &nk.label;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "threadline keys: %s needs a value\n", argv[i]);
                return 2;
            }
            *dst = argv[i + 1];
            i += 2;
            continue;
        }
        int r = tl_config_flag(cfg, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            if (argv[i][0] != '-' && !target) {
                target = argv[i++];
                continue;
            }
            fprintf(stderr, "threadline keys: unknown argument \"%s\"\n", argv[i]);
            keys_usage(stderr);
            return 2;
        }
    }
    int err;
    PGconn *pg = tl_pg_connect(cfg->pg_dsn, &err);
    if (!pg) {
        fprintf(stderr, "threadline keys: cannot reach PostgreSQL (%s)\n", cfg->pg_dsn);
        return 1;
    }
    int status = 0;
    if (strcmp(verb, "create") == 0) {
        char token[TL_AUTH_TOKEN_LEN + 1], msg[256];
        if (!role || tl_auth_role_from_name(role, &nk.role) != TL_OK) {
            fprintf(stderr, "threadline keys create: --role must be connector, agent, admin or auditor\n");
            status = 2;
        } else if ((err = tl_auth_key_create(pg, &nk, token, msg, sizeof msg)) != TL_OK) {
            fprintf(stderr, "threadline keys create: %s\n", msg);
            status = err == TL_EINVAL ? 2 : 1;
        } else {
            printf("%s\n", token);
            fprintf(stderr, "threadline keys create: store this key now; it is not shown again\n");
            OPENSSL_cleanse(token, sizeof token);
        }
    } else if (strcmp(verb, "list") == 0) {
        status = keys_list(pg, nk.tenant);
    } else if (strcmp(verb, "revoke") == 0) {
        if (!target) {
            fprintf(stderr, "threadline keys revoke: which KEY_ID?\n");
            status = 2;
        } else if ((err = tl_auth_key_revoke(pg, target)) != TL_OK) {
            fprintf(stderr, "threadline keys revoke: %s: %s\n", target,
                    err == TL_ENOTFOUND ? "no such live key" : tl_strerror(err));
            status = 1;
        } else {
            printf("revoked %s (in effect within %d s)\n", target, TL_AUTH_CACHE_MS / 1000);
        }
    } else {
        keys_usage(stderr);
        status = 2;
    }
    PQfinish(pg);
    return status;
}
