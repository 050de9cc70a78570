-- Roster, rules, handoffs with their SLA deadlines, notifications, API tokens.

CREATE TABLE sla_policies (
    name        text        PRIMARY KEY,
    policy      jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    team_id            text        PRIMARY KEY,
    manager_id         text,
    priority           integer     NOT NULL DEFAULT 100,
    segments           text[]      NOT NULL DEFAULT '{}',
    countries          text[]      NOT NULL DEFAULT '{}',
    sla_policy         text        NOT NULL DEFAULT 'default',
    form_type_policies jsonb       NOT NULL DEFAULT '{}',
    webhooks           jsonb       NOT NULL DEFAULT '[]',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reps (
    rep_id          text        PRIMARY KEY,
    team_id         text        NOT NULL,
    segments        text[]      NOT NULL DEFAULT '{}',
    capacity        integer     NOT NULL,
    weight          integer     NOT NULL DEFAULT 1,
    time_zone       text        NOT NULL DEFAULT 'UTC',
    working_hours   jsonb,
    active          boolean     NOT NULL DEFAULT true,
    -- Smooth weighted round robin state, updated under the team row's lock.
    current_weight  integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reps_team ON reps (team_id);

-- One handoff per lead. Its deadlines are columns of its row: the scanner picks due
-- rows FOR UPDATE SKIP LOCKED and changes them in the same transaction as the events,
-- so with any number of replicas a deadline fires once, and a restart loses nothing.
CREATE TABLE handoffs (
    handoff_id        uuid        PRIMARY KEY,
    lead_id           uuid        NOT NULL UNIQUE,
    team_id           text        NOT NULL,
    rep_id            text,
    status            text        NOT NULL CHECK (status IN
                          ('queued', 'assigned', 'escalated', 'accepted', 'rejected')),
    policy_name       text        NOT NULL,
    policy            jsonb       NOT NULL,
    segment           text        NOT NULL,
    country           text,
    form_type         text,
    attribution       jsonb       NOT NULL,
    profile           jsonb       NOT NULL,
    score             integer     NOT NULL,
    created_at        timestamptz NOT NULL,
    assigned_at       timestamptz,
    at_risk_at        timestamptz,
    at_risk_fired     boolean     NOT NULL DEFAULT false,
    due_at            timestamptz,
    breaches          integer     NOT NULL DEFAULT 0,
    previous_rep_ids  text[]      NOT NULL DEFAULT '{}',
    excluded_teams    text[]      NOT NULL DEFAULT '{}',
    decided_at        timestamptz,
    decided_by        text,
    reject_reason     text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX handoffs_due ON handoffs (due_at) WHERE status = 'assigned';
CREATE INDEX handoffs_at_risk ON handoffs (at_risk_at) WHERE status = 'assigned' AND NOT at_risk_fired;
CREATE INDEX handoffs_queued ON handoffs (created_at) WHERE status = 'queued';
CREATE INDEX handoffs_rep ON handoffs (rep_id, status);
CREATE INDEX handoffs_team ON handoffs (team_id, status);

-- Outbound webhooks, a durable queue: rows are written in the transaction of the
-- change they report and delivered later, so a slow receiver never blocks a handoff.
CREATE TABLE notifications (
    id               bigserial   PRIMARY KEY,
    handoff_id       uuid        NOT NULL,
    kind             text        NOT NULL,
    url              text        NOT NULL,
    body             jsonb       NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    failed_at        timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_pending ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- API tokens: only the SHA-256 of a token is kept, so it can be listed and revoked.
CREATE TABLE api_tokens (
    token_id    uuid        PRIMARY KEY,
    token_hash  text        NOT NULL UNIQUE,
    subject     text        NOT NULL,
    role        text        NOT NULL,
    team_id     text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
