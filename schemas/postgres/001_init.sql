-- 001_init: the unified projection tables.
-- Every row carries tenant_id.  Everything here is derived from the
-- <prefix>.changes topic and can be rebuilt from the log.

CREATE TABLE customers (
    tenant_id        text        NOT NULL,
    customer_id      text        NOT NULL,
    version          bigint      NOT NULL,
    platforms        text[]      NOT NULL DEFAULT '{}',
    first_seen       timestamptz NOT NULL,
    last_activity    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);

CREATE TABLE identities (
    tenant_id        text NOT NULL,
    platform         text NOT NULL,
    platform_user_id text NOT NULL,
    customer_id      text NOT NULL,
    PRIMARY KEY (tenant_id, platform, platform_user_id)
);

CREATE TABLE conversations (
    tenant_id        text        NOT NULL,
    conversation_id  text        NOT NULL,
    customer_id      text        NOT NULL,
    status           text        NOT NULL DEFAULT 'open',
    assignee         text,
    team             text,
    tags             text[]      NOT NULL DEFAULT '{}',
    platforms        text[]      NOT NULL DEFAULT '{}',
    version          bigint      NOT NULL,
    opened_at        timestamptz NOT NULL,
    last_activity    timestamptz NOT NULL,
    item_count       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX conversations_customer ON conversations (tenant_id, customer_id, last_activity DESC);
CREATE INDEX conversations_activity ON conversations (tenant_id, last_activity DESC, conversation_id);

-- One row per item of the unified (agent) timeline.  event_id is unique per
-- tenant, which makes every projection write idempotent.
CREATE TABLE timeline (
    tenant_id        text        NOT NULL,
    event_id         text        NOT NULL,
    conversation_id  text        NOT NULL,
    customer_id      text        NOT NULL,
    kind             text        NOT NULL,
    platform         text        NOT NULL,
    source_label     text        NOT NULL,
    effective_ts     timestamptz NOT NULL,
    occurred_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    source_partition int         NOT NULL,
    source_offset    bigint      NOT NULL,
    idempotency_key  text        NOT NULL,
    body             jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX timeline_order ON timeline (tenant_id, conversation_id, effective_ts, source_partition, source_offset);

-- Where each projection consumer is in <prefix>.changes, written in the same
-- transaction as the rows: the exactly-once effect of DESIGN.md section 5.
CREATE TABLE projection_offsets (
    consumer         text   NOT NULL,
    topic            text   NOT NULL,
    partition        int    NOT NULL,
    next_offset      bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);

-- How far each projection has got in <prefix>.events (from Change.source_*):
-- what read-your-writes (?after=P:O) waits on.
CREATE TABLE projection_positions (
    consumer         text   NOT NULL,
    partition        int    NOT NULL,
    source_offset    bigint NOT NULL,
    PRIMARY KEY (consumer, partition)
);
