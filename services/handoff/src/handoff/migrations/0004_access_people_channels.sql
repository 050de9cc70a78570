-- 1. Tokens move to the projection every service keeps (common 0003_access_tokens):
--    the token ledger is access_tokens, announced on funnel.access. Tokens issued before
--    are copied over and announced now, so the other services learn of them too.
INSERT INTO access_tokens (token_id, subject, role, team, issued_at, expires_at, revoked_at)
SELECT token_id, subject, role, team_id, issued_at, expires_at, revoked_at FROM api_tokens
ON CONFLICT (token_id) DO NOTHING;

WITH issued AS (SELECT gen_random_uuid() AS event_id, api_tokens.* FROM api_tokens)
INSERT INTO outbox (event_id, event_type, topic, event_key, payload)
SELECT event_id, 'funnel.token.issued.v1', 'funnel.access', convert_to(token_id::text, 'UTF8'),
       convert_to(jsonb_build_object(
           'specversion', '1.0', 'id', event_id, 'type', 'funnel.token.issued.v1',
           'source', 'handoff', 'subject', token_id::text, 'time', issued_at,
           'datacontenttype', 'application/json',
           'data', jsonb_build_object(
               'token_id', token_id, 'subject', subject, 'role', role, 'team', team_id,
               'issued_at', issued_at, 'expires_at', expires_at, 'issued_by', NULL))::text,
           'UTF8')
FROM issued ORDER BY issued_at;

WITH revoked AS (
    SELECT gen_random_uuid() AS event_id, api_tokens.* FROM api_tokens
    WHERE revoked_at IS NOT NULL)
INSERT INTO outbox (event_id, event_type, topic, event_key, payload)
SELECT event_id, 'funnel.token.revoked.v1', 'funnel.access', convert_to(token_id::text, 'UTF8'),
       convert_to(jsonb_build_object(
           'specversion', '1.0', 'id', event_id, 'type', 'funnel.token.revoked.v1',
           'source', 'handoff', 'subject', token_id::text, 'time', revoked_at,
           'datacontenttype', 'application/json',
           'data', jsonb_build_object(
               'token_id', token_id, 'subject', subject, 'role', role, 'team', team_id,
               'issued_at', issued_at, 'expires_at', expires_at,
               'revoked_at', revoked_at, 'revoked_by', NULL))::text,
           'UTF8')
FROM revoked ORDER BY revoked_at;

DROP TABLE api_tokens;

-- 2. How to reach people: a rep's email and Slack member id; the team manager's.
ALTER TABLE reps ADD COLUMN email text, ADD COLUMN slack_member_id text;
ALTER TABLE teams ADD COLUMN manager_email text, ADD COLUMN manager_slack_member_id text;

-- 3. Notifications by channel: a team webhook (JSON or Slack) or an email. `target` is
--    the URL or the address; `failed_at` + `last_error` mark one parked with its reason
--    (a permanent refusal, or attempts used up): never retried again.
ALTER TABLE notifications ADD COLUMN channel text NOT NULL DEFAULT 'webhook'
    CHECK (channel IN ('webhook', 'slack', 'email'));
ALTER TABLE notifications RENAME COLUMN url TO target;
UPDATE notifications SET channel = 'slack' WHERE body ? 'text' AND NOT body ? 'handoff_id';
CREATE INDEX notifications_parked ON notifications (channel) WHERE failed_at IS NOT NULL;
