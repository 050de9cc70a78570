-- Leads: spam flag, qualification state and the keys dedupe matches on.
ALTER TABLE leads
    ADD COLUMN phone         text,
    ADD COLUMN status        text    NOT NULL DEFAULT 'captured'
        CHECK (status IN ('captured', 'qualified', 'disqualified', 'spam')),
    ADD COLUMN score         integer,
    ADD COLUMN rules_version text,
    ADD COLUMN spam_reasons  text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN form_type     text,
    ADD COLUMN attribution   jsonb,
    ADD COLUMN last_touch_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX leads_phone ON leads (phone) WHERE phone IS NOT NULL;

-- Every submission that matched an existing lead: a touch for attribution.
CREATE TABLE touches (
    submission_id uuid        PRIMARY KEY,
    lead_id       uuid        NOT NULL REFERENCES leads (lead_id),
    form_id       text        NOT NULL,
    matched_on    text        NOT NULL,
    attribution   jsonb       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

-- Per-client rate limit; the client is a hash, never an address in clear.
CREATE TABLE client_hits (
    client_hash text        NOT NULL,
    hit_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_hits_by_client ON client_hits (client_hash, hit_at);

-- Idempotency-Key: the first answer, replayed to a retry.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status_code  integer,
    headers      jsonb,
    body         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Webhooks: deliveries applied (redelivery changes nothing) and signatures seen
-- (a replayed signature is refused).
CREATE TABLE webhook_deliveries (
    integration text        NOT NULL,
    webhook_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration, webhook_id)
);
CREATE TABLE webhook_signatures (
    digest  text        PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deals (
    deal_id             text        PRIMARY KEY,
    status              text        NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    state               jsonb       NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id  text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('active', 'churned')),
    arr_cents   bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
