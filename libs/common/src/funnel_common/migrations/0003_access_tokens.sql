-- API tokens as their issuer (handoff) announced them on funnel.access. Every service
-- keeps this projection, so one verifier (funnel_common.auth) checks that a token was
-- issued and is not revoked without reading another service's tables. No token text
-- and no hash of one is kept: a token proves itself by its signature.
CREATE TABLE access_tokens (
    token_id    uuid        PRIMARY KEY,
    subject     text        NOT NULL,
    role        text        NOT NULL,
    team        text,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    issued_by   text,
    revoked_at  timestamptz,
    revoked_by  text
);
