-- A person's data can be exported and erased (docs/privacy.md). Erasure keeps the row
-- (its ids, times, source, campaign, status and score keep every figure the same) and
-- blanks its personal fields: the email and phone (the dedupe keys, so a person who
-- comes back after their erasure is a new lead), the profile's personal part and the
-- form's extra fields, now kept with the lead so that an export shows them.
ALTER TABLE leads
    ALTER COLUMN email DROP NOT NULL,
    ADD COLUMN extra     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN erased_at timestamptz;

-- Who had whom erased, and when: the audit trail, with ids only (the same facts as the
-- funnel.person.erased.v1 events).
CREATE TABLE erasures (
    erasure_id   uuid        PRIMARY KEY,
    requested_by text        NOT NULL,
    matched_by   text        NOT NULL CHECK (matched_by IN ('email', 'lead_id')),
    lead_ids     uuid[]      NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
