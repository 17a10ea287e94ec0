-- 002_views: one view per target platform, the customer's fields, and the
-- conflict review queue (DESIGN.md section 5).
--
-- The unified timeline becomes the agent platform's view, and every target
-- platform gets a view of the same shape, so that the projection workers,
-- `threadline rebuild` (shadow table, then swap) and the REST reads treat
-- all of them alike.  A view row is one rendered item; `part` numbers the
-- pieces of an item that a platform's text limit split (0 when whole).

ALTER TABLE timeline RENAME TO view_agent;
ALTER TABLE view_agent RENAME CONSTRAINT timeline_pkey TO view_agent_pkey;
ALTER TABLE view_agent ADD COLUMN part int NOT NULL DEFAULT 0;
ALTER TABLE view_agent DROP CONSTRAINT view_agent_pkey;
ALTER TABLE view_agent ADD CONSTRAINT view_agent_pkey PRIMARY KEY (tenant_id, event_id, part);
DROP INDEX timeline_order;
CREATE INDEX view_agent_order
    ON view_agent (tenant_id, conversation_id, effective_ts, source_partition, source_offset, part);

CREATE TABLE view_web          (LIKE view_agent INCLUDING ALL);
CREATE TABLE view_app          (LIKE view_agent INCLUDING ALL);
CREATE TABLE view_mini_program (LIKE view_agent INCLUDING ALL);
CREATE TABLE view_wechat       (LIKE view_agent INCLUDING ALL);
CREATE TABLE view_douyin       (LIKE view_agent INCLUDING ALL);
CREATE TABLE view_phone        (LIKE view_agent INCLUDING ALL);

ALTER TABLE conversations
    ADD COLUMN closed_at    timestamptz,
    ADD COLUMN close_reason text,
    ADD COLUMN closed_by    text;
CREATE INDEX conversations_assignee ON conversations (tenant_id, assignee, last_activity DESC);
CREATE INDEX conversations_team ON conversations (tenant_id, team, last_activity DESC);

-- The current value of every field of a customer, with where it came from.
-- value NULL: the field has no current value (an unlink withdrew it).
CREATE TABLE customer_fields (
    tenant_id        text        NOT NULL,
    customer_id      text        NOT NULL,
    field            text        NOT NULL,
    value            text,
    is_key           boolean     NOT NULL DEFAULT false,
    version          bigint      NOT NULL,   -- customer version that set the value
    effective_ts     timestamptz NOT NULL,
    platform         text        NOT NULL,
    event_id         text        NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, field)
);

-- The review queue: every conflict on a key field, open until an agent
-- resolves it (or an unlink leaves it with one value: withdrawn).
-- candidates: [{"value", "platform", "event_id", "effective_ts"}, ...] in
-- the order they were asserted.
CREATE TABLE conflicts (
    tenant_id        text        NOT NULL,
    conflict_id      text        NOT NULL,
    customer_id      text        NOT NULL,
    field            text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('open', 'resolved', 'withdrawn')),
    candidates       jsonb       NOT NULL DEFAULT '[]',
    chosen_value     text,
    resolved_by      text,
    opened_at        timestamptz NOT NULL,
    closed_at        timestamptz,
    version          bigint      NOT NULL,   -- customer version of its last change
    PRIMARY KEY (tenant_id, conflict_id)
);
CREATE INDEX conflicts_queue ON conflicts (tenant_id, status, opened_at, conflict_id);
CREATE INDEX conflicts_customer ON conflicts (tenant_id, customer_id);
