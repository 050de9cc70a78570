-- What the inbox shows beyond a handoff's own row: the form a lead came from, its
-- earlier touches, every decision with its note, and every missed deadline.

-- The form of the lead's first submission (funnel.lead.captured.v1 carries it).
ALTER TABLE leads ADD COLUMN form_id text;

-- A returning person's later submissions (funnel.lead.merged.v1): attribution only, no
-- personal data. Keyed by the submission, so a redelivered merge changes nothing.
CREATE TABLE lead_touches (
    submission_id uuid        PRIMARY KEY,
    lead_id       uuid        NOT NULL,
    matched_on    text        NOT NULL,
    form_id       text,
    attribution   jsonb       NOT NULL,
    touched_at    timestamptz NOT NULL
);
CREATE INDEX lead_touches_lead ON lead_touches (lead_id, touched_at);

-- Every accept and reject, with who decided, the reason and the note. A handoff row
-- keeps only its last state (a wrong_territory rejection is routed on and forgotten
-- there); a rep's history needs each decision.
CREATE TABLE decisions (
    id          bigserial   PRIMARY KEY,
    handoff_id  uuid        NOT NULL,
    team_id     text        NOT NULL,
    decided_by  text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    reason      text,
    note        text,
    decided_at  timestamptz NOT NULL
);
CREATE INDEX decisions_by ON decisions (decided_by, decided_at DESC, id DESC);
CREATE INDEX decisions_team ON decisions (team_id, decided_at DESC, id DESC);
CREATE INDEX decisions_handoff ON decisions (handoff_id, id DESC);

-- Decisions made before this table existed (their notes were never kept).
INSERT INTO decisions (handoff_id, team_id, decided_by, outcome, reason, decided_at)
SELECT handoff_id, team_id, decided_by, status, reject_reason, decided_at
FROM handoffs
WHERE status IN ('accepted', 'rejected') AND decided_by IS NOT NULL AND decided_at IS NOT NULL;

-- Each missed deadline: an escalation clears the handoff's due date, and a reassignment
-- replaces it, yet the inbox says how long the lead has been past due.
CREATE TABLE sla_breaches (
    id           bigserial   PRIMARY KEY,
    handoff_id   uuid        NOT NULL,
    rep_id       text,
    due_at       timestamptz NOT NULL,
    breached_at  timestamptz NOT NULL
);
CREATE INDEX sla_breaches_handoff ON sla_breaches (handoff_id, due_at);
