-- 003_identities: the identity index that ingest resolves against.
--
-- Written only by the identity writer (engine/identity.c, consumer
-- "identity" in projection_offsets).  A row maps one identity to the
-- customer whose events it should be keyed on:
--   * seen rows: every (platform, platform_user_id) of an applied event, to
--     that event's customer (evidence NULL);
--   * link rows: the identity an IdentityLinked named, and its evidence as
--     an identity of its own (kind 'unionid', 'phone' or 'account'), to the
--     surviving customer (evidence set, linked_customer_id = the absorbed).
-- A seen row never overwrites an active link row: an event produced before
-- the link was applied must not undo it.  IdentityUnlinked deactivates the
-- rows its link set and the merge it made; nothing is deleted.
ALTER TABLE identities
    ADD COLUMN evidence           text,
    ADD COLUMN evidence_value     text,
    ADD COLUMN linked_customer_id text,
    ADD COLUMN set_by_event       text,
    ADD COLUMN active             boolean     NOT NULL DEFAULT true,
    ADD COLUMN updated_at         timestamptz NOT NULL DEFAULT now();

CREATE INDEX identities_customer ON identities (tenant_id, customer_id);

-- Customers absorbed by a link: every identity of `absorbed` resolves to
-- `survivor` while the merge is active.  Chains (C absorbed by B, B by A)
-- are followed when resolving.
CREATE TABLE identity_merges (
    tenant_id        text        NOT NULL,
    absorbed         text        NOT NULL,
    survivor         text        NOT NULL,
    evidence         text        NOT NULL,
    set_by_event     text        NOT NULL,
    active           boolean     NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, absorbed)
);
