-- Deals and accounts are folded from the SET of their events (metrics/state.py): every
-- deal event is kept, and `deals` holds the state folded from them, rewritten whenever
-- one of its events arrives. Until now `deals` kept only the latest event whole.
CREATE TABLE deal_events (
    event_id    uuid        PRIMARY KEY,
    deal_id     text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('opened', 'updated', 'won', 'lost')),
    occurred_at timestamptz NOT NULL,
    delivery_id text,
    fields_set  text[],
    lead_id     uuid,
    source      text        NOT NULL,
    campaign    text        NOT NULL DEFAULT '',
    amount_cents bigint     NOT NULL,
    stage       text        NOT NULL,
    expected_close_date date,
    closed_on   date,
    lost_reason text
);
CREATE INDEX deal_events_by_deal ON deal_events (deal_id);

-- What was known so far becomes one event per deal, so the folded state starts where
-- the old table was; `funnel replay` rebuilds the whole history from the topics.
INSERT INTO deal_events (event_id, deal_id, kind, occurred_at, lead_id, source, campaign,
                         amount_cents, stage, expected_close_date, closed_on, lost_reason)
SELECT event_id, deal_id, CASE status WHEN 'open' THEN 'opened' ELSE status END,
       occurred_at, NULL, source, campaign, amount_cents, stage, expected_close_date,
       closed_on, lost_reason
FROM deals;

ALTER TABLE deals DROP COLUMN event_id;
ALTER TABLE deals RENAME COLUMN occurred_at TO opened_at;
ALTER TABLE deals ADD COLUMN lead_id uuid;
ALTER TABLE deals ADD COLUMN reopens integer NOT NULL DEFAULT 0;
CREATE INDEX deals_by_lead ON deals (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX deals_opened_at ON deals (opened_at);

-- Account events sort by (time, lifecycle, delivery id, ARR): never by the event id.
ALTER TABLE account_events ADD COLUMN lifecycle smallint NOT NULL DEFAULT 1;
ALTER TABLE account_events ADD COLUMN delivery_id text;
UPDATE account_events SET lifecycle = 2 WHERE NOT active;
DROP INDEX account_events_by_account;
CREATE INDEX account_events_by_account ON account_events (account_id, occurred_at);

-- A captured lead flagged as spam is stage 'spam', not 'captured' (its own counter).
-- Handoff decisions name their lead, so a lead captured in a quarter can be followed
-- to acceptance (cohort conversion).
ALTER TABLE handoff_decisions ADD COLUMN lead_id uuid;
CREATE INDEX handoff_decisions_by_lead ON handoff_decisions (lead_id) WHERE outcome = 'accepted';
CREATE INDEX handoff_decisions_occurred_at ON handoff_decisions (occurred_at);
CREATE INDEX lead_stages_occurred_at ON lead_stages (occurred_at);

-- SLA attainment: each handoff's FIRST response deadline (the earliest assignment
-- that set one), against when it was decided.
CREATE TABLE handoff_deadlines (
    handoff_id  uuid        PRIMARY KEY,
    due_at      timestamptz NOT NULL,
    assigned_at timestamptz NOT NULL
);
CREATE INDEX handoff_deadlines_due_at ON handoff_deadlines (due_at);

ALTER TABLE sla_breaches ADD COLUMN policy text NOT NULL DEFAULT '';

CREATE TABLE handoff_escalations (
    event_id    uuid        PRIMARY KEY,
    handoff_id  uuid        NOT NULL,
    occurred_at timestamptz NOT NULL
);
