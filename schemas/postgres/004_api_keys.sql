-- 004_api_keys: bearer keys for the REST API and the ingest routes
-- (DESIGN.md section 6, docs/api.md).
--
-- A key is shown once, as tl_<key_id>_<secret>.  The secret is 32 bytes
-- from OpenSSL's CSPRNG, so a single SHA-256 is enough to store it: a slow
-- password hash protects low-entropy secrets from guessing, and 256 random
-- bits cannot be guessed; the digest alone does not let anyone call the API.
-- Revoking sets revoked_at; rows are kept for the audit trail.
CREATE TABLE api_keys (
    key_id           text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    role             text        NOT NULL CHECK (role IN ('connector', 'agent', 'admin', 'auditor')),
    agent_id         text,                       -- agents: who they are
    team             text,                       -- agents: their team, if any
    platforms        text[]      NOT NULL DEFAULT '{}',  -- connectors: where they may ingest
    secret_sha256    bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    label            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz,
    CHECK (role <> 'agent' OR agent_id IS NOT NULL)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
