-- Idempotent inbox: an event id is recorded in the same transaction as its effect,
-- so a redelivered event finds its id here and changes nothing.
CREATE TABLE inbox (
    event_id     uuid        PRIMARY KEY,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    kafka_partition integer  NOT NULL,
    kafka_offset bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
