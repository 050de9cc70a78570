CREATE TABLE leads (
    lead_id     uuid        PRIMARY KEY,
    form_id     text        NOT NULL,
    email       text        NOT NULL,
    source      text        NOT NULL,
    campaign    text,
    profile     jsonb       NOT NULL,
    captured_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_email ON leads (email);
