-- Leads as handoff hears of them (funnel.leads); routing builds on this.
CREATE TABLE leads (
    lead_id     uuid        PRIMARY KEY,
    source      text        NOT NULL,
    campaign    text,
    captured_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
