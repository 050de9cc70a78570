-- A lead's first submission id: the receipt an anonymous poster gets (never the lead id).
ALTER TABLE leads ADD COLUMN submission_id uuid;

-- Idempotency-Key: the first request's outcome (the domain's, rendered by the API each
-- time), no longer its HTTP answer. Keys in flight at the upgrade are forgotten: a retry
-- is then a first request again, which dedupe turns into a merge, not a second lead.
ALTER TABLE idempotency_keys
    DROP COLUMN status_code,
    DROP COLUMN headers,
    DROP COLUMN body,
    ADD COLUMN result jsonb;
DELETE FROM idempotency_keys;

-- A signature is remembered for as long as it is valid (its own timestamp plus the
-- tolerance), not for a fixed time after it was first seen.
ALTER TABLE webhook_signatures ADD COLUMN valid_until timestamptz;
UPDATE webhook_signatures SET valid_until = seen_at + interval '1 hour';
ALTER TABLE webhook_signatures ALTER COLUMN valid_until SET NOT NULL;
CREATE INDEX webhook_signatures_valid_until ON webhook_signatures (valid_until);

-- Every delivery about a deal or an account, with what it set: the state is the fold of
-- them all (outcomes.py), whatever order they arrived in.
CREATE TABLE deal_deliveries (
    integration text        NOT NULL,
    webhook_id  text        NOT NULL,
    deal_id     text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('opened', 'updated', 'won', 'lost')),
    occurred_at timestamptz NOT NULL,
    fields      jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration, webhook_id)
);
CREATE INDEX deal_deliveries_by_deal ON deal_deliveries (deal_id);

CREATE TABLE account_deliveries (
    integration text        NOT NULL,
    webhook_id  text        NOT NULL,
    account_id  text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('activated', 'arr_changed', 'churned')),
    occurred_at timestamptz NOT NULL,
    arr_cents   bigint,
    deal_id     text,
    attribution jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration, webhook_id)
);
CREATE INDEX account_deliveries_by_account ON account_deliveries (account_id);

-- Deals and accounts stored before this migration keep their state as one delivery
-- from the earliest time there is, so any real delivery, earlier or later, folds over it.
INSERT INTO deal_deliveries (integration, webhook_id, deal_id, action, occurred_at, fields)
SELECT 'migrated', deal_id, deal_id,
       CASE status WHEN 'open' THEN 'opened' ELSE status END,
       '1970-01-01T00:00:00Z',
       jsonb_strip_nulls(jsonb_build_object(
           'lead_id', state -> 'lead_id', 'attribution', state -> 'attribution',
           'amount_cents', state -> 'amount_cents', 'stage', state -> 'stage',
           'expected_close_date', state -> 'expected_close_date'))
FROM deals;
INSERT INTO account_deliveries (integration, webhook_id, account_id, action, occurred_at,
                                arr_cents)
SELECT 'migrated', '0:' || account_id, account_id, 'activated', '1970-01-01T00:00:00Z', arr_cents
FROM accounts;
INSERT INTO account_deliveries (integration, webhook_id, account_id, action, occurred_at)
SELECT 'migrated', '1:' || account_id, account_id, 'churned', '1970-01-01T00:00:00Z'
FROM accounts WHERE status = 'churned';
