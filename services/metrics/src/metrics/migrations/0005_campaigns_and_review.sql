-- 1. Campaign figures: SLA attainment per source and campaign needs each handoff's
--    attribution (every funnel.handoff.assigned.v1 carries the lead's, which never
--    changes), and the review pack lists missed deadlines with their team.
CREATE TABLE handoff_leads (
    handoff_id  uuid PRIMARY KEY,
    lead_id     uuid NOT NULL,
    source      text NOT NULL,
    campaign    text NOT NULL DEFAULT ''
);
-- What is known so far: the decided handoffs' attribution (a replay rebuilds it all).
INSERT INTO handoff_leads (handoff_id, lead_id, source, campaign)
SELECT handoff_id, lead_id, source, campaign FROM handoff_decisions WHERE lead_id IS NOT NULL
ON CONFLICT DO NOTHING;

ALTER TABLE handoff_deadlines ADD COLUMN team text NOT NULL DEFAULT '';

-- 2. The review pack's example notes: the rep's note on a rejection. Personal data, so
--    in this ONE table, keyed by the handoff and naming the lead, for erasure to reach;
--    a note belongs to the decision that counts (handoff_decisions.event_id).
CREATE TABLE rejection_notes (
    handoff_id  uuid        NOT NULL,
    event_id    uuid        NOT NULL,
    lead_id     uuid        NOT NULL,
    note        text        NOT NULL,
    PRIMARY KEY (handoff_id, event_id)
);
CREATE INDEX rejection_notes_by_lead ON rejection_notes (lead_id);

-- 3. The Monday review pack: a timer row per ISO week, claimed FOR UPDATE SKIP LOCKED
--    by the worker (exactly once with any number of replicas, across restarts). Its
--    pack is the figures as computed when it fired (no personal data: notes are read
--    from rejection_notes whenever the pack is shown or sent).
CREATE TABLE review_weeks (
    week        text        PRIMARY KEY,
    due_at      timestamptz NOT NULL,
    state       text        NOT NULL DEFAULT 'scheduled'
                            CHECK (state IN ('scheduled', 'sent', 'skipped')),
    prepared_at timestamptz,
    late        boolean     NOT NULL DEFAULT false,
    pack        jsonb
);
CREATE INDEX review_weeks_due ON review_weeks (due_at) WHERE state = 'scheduled';

-- Each channel's delivery of a pack: a durable queue, leased by the worker, retried
-- with backoff, parked with its reason when it will never pass.
CREATE TABLE review_deliveries (
    id              bigserial   PRIMARY KEY,
    week            text        NOT NULL REFERENCES review_weeks (week),
    channel         text        NOT NULL CHECK (channel IN ('email', 'slack')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text,
    UNIQUE (week, channel)
);
CREATE INDEX review_deliveries_pending ON review_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
