/*
 * auth.h -- who is calling: bearer API keys, roles, and what each role may do.
 *
 * A key is `tl_<key_id>_<secret>`: key_id is 12 lower-case hex digits (the
 * row to look up, safe to log), secret is 64 hex digits (32 bytes from
 * OpenSSL's CSPRNG).  PostgreSQL keeps only SHA-256(secret) (004_api_keys).
 * A plain digest is the right tool here because the secret has 256 bits of
 * entropy: a slow password hash only helps secrets people choose.  Digests
 * are compared with CRYPTO_memcmp, so timing says nothing about them.
 *
 * Verifying a key needs a database round trip, so verified keys are cached
 * for TL_AUTH_CACHE_MS; a revoke takes effect within that time.  Failures
 * are never cached (a wrong secret costs a query, and is answered 401).
 *
 * Roles (the decision table is tl_auth_allow):
 *   connector  ingest for its platforms; nothing else
 *   agent      reads and writes conversations assigned to them or their team
 *   admin      reads and writes everything of its tenant
 *   auditor    reads everything of its tenant; never writes
 * Every key belongs to one tenant, and every query is restricted to it.
 *
 * `--auth off` (TL_AUTH=off) makes every caller an admin of the tenant named
 * by `?tenant=` (or of all tenants): for local trials and tests only, never
 * on a reachable address.
 */
#ifndef TL_AUTH_H
#define TL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <libpq-fe.h>
#include <uv.h>

#include "config.h"
#include "event.h"
#include "problem.h"

#define TL_AUTH_KEY_ID_LEN 12
#define TL_AUTH_SECRET_LEN 64
#define TL_AUTH_TOKEN_LEN (3 + TL_AUTH_KEY_ID_LEN + 1 + TL_AUTH_SECRET_LEN)
#define TL_AUTH_CACHE_MS 5000

typedef enum tl_auth_role {
    TL_ROLE_CONNECTOR, TL_ROLE_AGENT, TL_ROLE_ADMIN, TL_ROLE_AUDITOR, TL_ROLE__COUNT
} tl_auth_role_t;

/* What a caller asks to do. */
typedef enum tl_auth_op {
    TL_OP_INGEST,       /* POST /v1/ingest/{platform} */
    TL_OP_READ,         /* GET conversations, customers, conflicts */
    TL_OP_WRITE,        /* replies, assign, close, resolve */
    TL_OP_STREAM,       /* GET /v1/stream */
    TL_OP__COUNT
} tl_auth_op_t;

/* A verified caller.  Plain data; copy freely. */
typedef struct tl_auth_key {
    char key_id[TL_AUTH_KEY_ID_LEN + 1];
    char tenant[72];            /* "" with --auth off and no ?tenant: every tenant */
    tl_auth_role_t role;
    char agent_id[72];          /* agents; "" otherwise */
    char team[72];              /* agents with a team; "" otherwise */
    uint32_t platforms;         /* connectors: bit (1 << tl_platform_t) per platform */
} tl_auth_key_t;

typedef struct tl_auth tl_auth_t;

/* Splits a token "tl_<key_id>_<secret>" into its parts (NUL-terminated).
 * 0, or TL_EINVAL when it does not have that exact shape.  Cannot fail
 * otherwise; any thread. */
int tl_auth_parse_token(const char *tok, size_t len, char key_id[TL_AUTH_KEY_ID_LEN + 1],
                        char secret[TL_AUTH_SECRET_LEN + 1]);

/* SHA-256 of the secret's text into out.  Any thread; cannot fail. */
void tl_auth_hash(const char *secret, size_t len, unsigned char out[32]);

/* A new key id and secret from the CSPRNG.  TL_EIO if OpenSSL has no
 * randomness (nothing is written then).  Any thread. */
int tl_auth_generate(char key_id[TL_AUTH_KEY_ID_LEN + 1], char secret[TL_AUTH_SECRET_LEN + 1]);

/* Role names "connector", "agent", "admin", "auditor" <-> enum.  from_name:
 * 0 or TL_ENOTFOUND.  name: static string. */
int tl_auth_role_from_name(const char *s, tl_auth_role_t *out);
const char *tl_auth_role_name(tl_auth_role_t r);

/* The decision table: may key do op (for TL_OP_INGEST: on platform)?
 * 1 or 0; when 0 and pb is not NULL, fills pb with the 403 to send.
 * Pure; any thread. */
int tl_auth_allow(const tl_auth_key_t *key, tl_auth_op_t op, tl_platform_t platform,
                  tl_problem_t *pb);

/* Agent scope: may key see a conversation with this assignee and team
 * (either may be NULL)?  Admins and auditors see all of their tenant;
 * agents what is assigned to them or to their team; connectors nothing.
 * Pure; any thread. */
int tl_auth_sees(const tl_auth_key_t *key, const char *assignee, const char *team);

/* Creates the verifier.  cfg->auth must be "required" or "off"
 * (TL_ECONFIG otherwise, logged).  cfg must outlive it.  TL_ENOMEM.  Any
 * thread. */
int tl_auth_new(const tl_config_t *cfg, tl_auth_t **out);
void tl_auth_free(tl_auth_t *a);

/* 1 when keys are not checked (--auth off). */
int tl_auth_is_off(const tl_auth_t *a);

/* Verifies the Authorization header value (may be NULL: absent) and fills
 * *key.  With --auth off, fills an admin of `tenant_param` (may be NULL or
 * "": every tenant) and returns 0.  Otherwise returns 0, or an HTTP status
 * with pb filled: 401 (missing, malformed, unknown, revoked or wrong key),
 * 503 (the key store is unreachable; retry_after set).  pg: a connection
 * for cache misses, owned by the caller (may be NULL: then a miss is 503).
 * Blocks on PostgreSQL on a miss: call it on a pool thread, never on the
 * loop.  Thread-safe. */
int tl_auth_verify(tl_auth_t *a, PGconn *pg, const char *header, size_t len,
                   const char *tenant_param, tl_auth_key_t *key, tl_problem_t *pb);

/* tl_auth_verify with the calling pool thread's own connection to the key
 * store, opened on first use and reopened when it broke (never with --auth
 * off).  The connection lives as long as the thread.  Same returns.  Pool
 * threads only (uv_queue_work). */
int tl_auth_verify_pooled(tl_auth_t *a, const char *header, size_t len, const char *tenant_param,
                          tl_auth_key_t *key, tl_problem_t *pb);

/* ---------------------------------------------------------------- ingest */

/* Called on the loop thread once a connector key was verified and allowed;
 * req is alive and not yet answered. */
typedef void (*tl_auth_cb)(void *ud, h2o_req_t *req, const tl_auth_key_t *key);

/* For the ingest routes: requires a connector (or admin) key allowed to
 * ingest for platform, verified on loop's thread pool with its own
 * PostgreSQL connections, then calls cb(ud, req, key) on the loop thread.
 * On refusal answers req itself (401, 403 or 503 as problem+json) and
 * never calls cb; if the client goes away meanwhile, cb is not called
 * either.  With --auth off calls cb at once.  The request body stays valid
 * (it lives in req's pool).  Loop thread. */
void tl_auth_require_connector(tl_auth_t *a, uv_loop_t *loop, h2o_req_t *req,
                               tl_platform_t platform, tl_auth_cb cb, void *ud);

/* ------------------------------------------------------------------ keys */

/* What `threadline keys create` stores. */
typedef struct tl_auth_new_key {
    const char *tenant;
    tl_auth_role_t role;
    const char *agent_id;       /* required for agents, else NULL */
    const char *team;           /* NULL: none */
    const char *platforms;      /* connectors: "web,api"; NULL: none */
    const char *label;          /* NULL: none */
} tl_auth_new_key_t;

/* Inserts a new key and writes its token (shown once) into
 * token[TL_AUTH_TOKEN_LEN + 1].  Errors: TL_EINVAL (msg says which field),
 * TL_EPG / TL_EPG_DOWN, TL_EIO (no randomness).  Any thread. */
int tl_auth_key_create(PGconn *pg, const tl_auth_new_key_t *nk, char *token, char *msg, size_t n);

/* Marks key_id revoked.  TL_ENOTFOUND if no such live key; TL_EPG*. */
int tl_auth_key_revoke(PGconn *pg, const char *key_id);

/* `threadline keys create|list|revoke ...`: argv[0] is "keys".  Prints to
 * stdout; returns the process exit status.  Main thread. */
int tl_auth_keys_command(tl_config_t *cfg, int argc, char **argv);

#endif
