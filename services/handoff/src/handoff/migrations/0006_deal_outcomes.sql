-- What became of the leads handoff handed over, for marketing's feedback page: each
-- deal as the CRM reports it on funnel.deals (deal events name their lead). Every deal
-- event is kept and each deal's state is folded from the SET of them
-- (funnel_common.deals, the rule metrics applies too), rewritten whenever one of its
-- events arrives: late, repeated and out-of-order deliveries give the same outcome.
-- Ids, amounts and dates only: no personal data.
CREATE TABLE deal_events (
    event_id            uuid        PRIMARY KEY,
    deal_id             text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('opened', 'updated', 'won', 'lost')),
    occurred_at         timestamptz NOT NULL,
    delivery_id         text,
    fields_set          text[],
    lead_id             uuid,
    source              text        NOT NULL,
    campaign            text        NOT NULL DEFAULT '',
    amount_cents        bigint      NOT NULL,
    stage               text        NOT NULL,
    expected_close_date date,
    closed_on           date,
    lost_reason         text
);
CREATE INDEX deal_events_by_deal ON deal_events (deal_id);

CREATE TABLE deals (
    deal_id      text   PRIMARY KEY,
    lead_id      uuid,
    status       text   NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    amount_cents bigint NOT NULL,
    closed_on    date,
    lost_reason  text
);
CREATE INDEX deals_by_lead ON deals (lead_id) WHERE lead_id IS NOT NULL;
