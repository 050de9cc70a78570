-- Facts, not counters: events arrive late, duplicated and out of order across topics,
-- so each table keeps what is known about one entity (keyed by its id) and, where the
-- order matters, the event time it came from. Figures are computed from these rows on
-- demand, so the same events in any order give the same figures.
DROP TABLE stage_counts;

-- A lead reached a lead stage (captured, qualified, disqualified). One row per lead
-- and stage; if the same lead reaches a stage twice, the earliest event wins.
CREATE TABLE lead_stages (
    stage       text        NOT NULL,
    lead_id     uuid        NOT NULL,
    source      text        NOT NULL,
    campaign    text        NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL,
    event_id    uuid        NOT NULL,
    PRIMARY KEY (stage, lead_id)
);

-- A rep's decision on a handoff; the latest decision by event time wins.
CREATE TABLE handoff_decisions (
    handoff_id  uuid        PRIMARY KEY,
    outcome     text        NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    reason      text,
    source      text        NOT NULL,
    campaign    text        NOT NULL DEFAULT '',
    within_sla  boolean     NOT NULL,
    business_seconds_to_decision bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_id    uuid        NOT NULL
);

-- One row per missed deadline: a handoff that is reassigned can breach its new one.
CREATE TABLE sla_breaches (
    handoff_id  uuid        NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (handoff_id, due_at)
);

-- Each deal's latest known state by event time: every deal event carries the full
-- state, so a won deal whose "opened" never arrived is still complete.
CREATE TABLE deals (
    deal_id     text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    source      text        NOT NULL,
    campaign    text        NOT NULL DEFAULT '',
    amount_cents bigint     NOT NULL,
    stage       text        NOT NULL,
    expected_close_date date,
    closed_on   date,
    lost_reason text,
    occurred_at timestamptz NOT NULL,
    event_id    uuid        NOT NULL
);
CREATE INDEX deals_closed_on ON deals (closed_on) WHERE status <> 'open';
CREATE INDEX deals_expected_close ON deals (expected_close_date) WHERE status = 'open';

-- Every ARR fact of every account, so the ARR at any instant (a period's start or end)
-- can be read back, whatever order the events arrived in.
CREATE TABLE account_events (
    event_id    uuid        PRIMARY KEY,
    account_id  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    active      boolean     NOT NULL,
    arr_cents   bigint      NOT NULL
);
CREATE INDEX account_events_by_account ON account_events (account_id, occurred_at, event_id);

-- Revenue targets by quarter; the latest setting by time wins.
CREATE TABLE targets (
    period      text        PRIMARY KEY,
    amount_cents bigint     NOT NULL,
    set_at      timestamptz NOT NULL,
    event_id    uuid        NOT NULL
);
