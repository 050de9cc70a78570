-- Transactional outbox: a state change and its event commit in one transaction.
-- The relay publishes unsent rows in sequence order and marks them sent; it never
-- keeps a "last id seen" mark, because sequence ids become visible out of order.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    event_key    bytea       NOT NULL,
    payload      bytea       NOT NULL,
    -- W3C trace context of the transaction that wrote the row, sent as Kafka headers.
    trace_headers jsonb      NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
