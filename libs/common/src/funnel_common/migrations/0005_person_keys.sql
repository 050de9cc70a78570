-- Crypto-shredding (funnel_common.personal): each person's data key, wrapped with the
-- platform's key-encryption key. lead-intake holds the keys of everyone it captured;
-- a service that shows personal data (handoff) keeps the copies it heard of on
-- funnel.people. Erasure deletes a key here and remembers the person as erased (ids
-- only), so a key announced again later is not kept.
CREATE TABLE person_keys (
    person_id    uuid        PRIMARY KEY,
    wrapped_key  bytea       NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE erased_people (
    person_id    uuid        PRIMARY KEY,
    erased_at    timestamptz NOT NULL DEFAULT now()
);
-- A tombstone (a record with no value) tells a compacted topic to drop a key's record:
-- erasure publishes one for the person's key on funnel.people.
ALTER TABLE outbox ALTER COLUMN payload DROP NOT NULL;
