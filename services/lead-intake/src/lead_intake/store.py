"""All SQL of lead-intake, one function per query. Functions never commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from funnel_common.events import Attribution, DealState, LeadCapturedData, LeadProfile


@dataclass(frozen=True)
class StoredLead:
    lead_id: UUID
    status: str
    form_type: str | None
    profile: LeadProfile
    attribution: Attribution


def _lead(row: asyncpg.Record) -> StoredLead:
    attribution = row["attribution"] or json.dumps(
        {"source": row["source"], "campaign": row["campaign"]}
    )
    return StoredLead(
        lead_id=row["lead_id"],
        status=row["status"],
        form_type=row["form_type"],
        profile=LeadProfile.model_validate_json(row["profile"]),
        attribution=Attribution.model_validate_json(attribution),
    )


_LEAD_COLUMNS = "lead_id, status, form_type, profile, attribution, source, campaign"


async def insert_lead(
    connection: asyncpg.Connection,
    lead: LeadCapturedData,
    *,
    status: str = "captured",
    form_type: str | None = None,
) -> None:
    await connection.execute(
        """INSERT INTO leads (lead_id, form_id, email, phone, source, campaign, profile,
                              attribution, status, spam_reasons, form_type)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11)""",
        lead.lead_id,
        lead.form_id,
        lead.profile.email,
        lead.profile.phone,
        lead.attribution.source,
        lead.attribution.campaign,
        lead.profile.model_dump_json(),
        lead.attribution.model_dump_json(),
        status,
        lead.spam_reasons,
        form_type,
    )


async def lock_identity(connection: asyncpg.Connection, *keys: str) -> None:
    """Serialises submissions for the same email/phone until commit, so two concurrent
    posts of one person become one lead and a merge, not two leads."""
    for key in sorted(keys):
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('lead:' || $1))", key)


async def find_recent_lead(
    connection: asyncpg.Connection, *, email: str, phone: str | None, since: datetime
) -> tuple[StoredLead, str] | None:
    """The most recently touched non-spam lead with this email (first) or phone."""
    row = await connection.fetchrow(
        f"""SELECT {_LEAD_COLUMNS},
                   CASE WHEN email = $1 THEN 'email' ELSE 'phone' END AS matched_on
            FROM leads
            WHERE status <> 'spam' AND last_touch_at >= $3
              AND (email = $1 OR ($2::text IS NOT NULL AND phone = $2))
            ORDER BY (email = $1) DESC, last_touch_at DESC
            LIMIT 1
            FOR UPDATE""",
        email,
        phone,
        since,
    )
    return None if row is None else (_lead(row), row["matched_on"])


async def find_lead(connection: asyncpg.Connection, lead_id: UUID) -> StoredLead | None:
    row = await connection.fetchrow(
        f"SELECT {_LEAD_COLUMNS} FROM leads WHERE lead_id = $1", lead_id
    )
    return None if row is None else _lead(row)


async def find_lead_by_email(connection: asyncpg.Connection, email: str) -> StoredLead | None:
    row = await connection.fetchrow(
        f"""SELECT {_LEAD_COLUMNS} FROM leads WHERE email = $1 AND status <> 'spam'
            ORDER BY captured_at DESC LIMIT 1""",
        email,
    )
    return None if row is None else _lead(row)


async def record_touch(
    connection: asyncpg.Connection,
    *,
    submission_id: UUID,
    lead_id: UUID,
    form_id: str,
    matched_on: str,
    attribution: Attribution,
    profile: LeadProfile,
    form_type: str,
) -> None:
    """The touch, and the lead's merged profile and latest form type for rescoring."""
    await connection.execute(
        """WITH touch AS (
               INSERT INTO touches (submission_id, lead_id, form_id, matched_on, attribution)
               VALUES ($1, $2, $3, $4, $5::jsonb))
           UPDATE leads SET last_touch_at = now(), profile = $6::jsonb, form_type = $7
           WHERE lead_id = $2""",
        submission_id,
        lead_id,
        form_id,
        matched_on,
        attribution.model_dump_json(),
        profile.model_dump_json(),
        form_type,
    )


async def set_qualification(
    connection: asyncpg.Connection, lead_id: UUID, *, status: str, score: int, rules_version: str
) -> None:
    await connection.execute(
        "UPDATE leads SET status = $2, score = $3, rules_version = $4 WHERE lead_id = $1",
        lead_id,
        status,
        score,
        rules_version,
    )


async def count_leads(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM leads")
    return count


async def lead_exists(connection: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await connection.fetchval("SELECT true FROM leads WHERE lead_id = $1", lead_id))


# --- rate limit ----------------------------------------------------------------------


async def record_client_hit(
    connection: asyncpg.Connection, client_hash: str, window_seconds: int
) -> int:
    """Records this hit and returns the client's hits in the window before it."""
    count: int = await connection.fetchval(
        """WITH earlier AS (
               SELECT count(*) AS hits FROM client_hits
               WHERE client_hash = $1 AND hit_at > now() - make_interval(secs => $2)),
           hit AS (INSERT INTO client_hits (client_hash) VALUES ($1))
           SELECT hits FROM earlier""",
        client_hash,
        float(window_seconds),
    )
    return count


async def forget_old_client_hits(connection: asyncpg.Connection, window_seconds: int) -> None:
    await connection.execute(
        "DELETE FROM client_hits WHERE hit_at < now() - make_interval(secs => $1)",
        float(window_seconds),
    )


# --- idempotency ---------------------------------------------------------------------


async def claim_idempotency_key(
    connection: asyncpg.Connection, scope: str, key: str, request_hash: str
) -> bool:
    """True if this request is the first with the key; waits for a concurrent first one."""
    claimed = await connection.fetchval(
        """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        scope,
        key,
        request_hash,
    )
    return bool(claimed)


async def forget_old_idempotency_keys(connection: asyncpg.Connection, ttl_hours: int) -> None:
    await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        ttl_hours,
    )


async def stored_answer(
    connection: asyncpg.Connection, scope: str, key: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await connection.fetchrow(
        """SELECT request_hash, status_code, headers, body FROM idempotency_keys
           WHERE scope = $1 AND key = $2""",
        scope,
        key,
    )
    return row


async def store_answer(
    connection: asyncpg.Connection,
    scope: str,
    key: str,
    *,
    status_code: int,
    headers: dict[str, str],
    body: str,
) -> None:
    await connection.execute(
        """UPDATE idempotency_keys SET status_code = $3, headers = $4::jsonb, body = $5
           WHERE scope = $1 AND key = $2""",
        scope,
        key,
        status_code,
        json.dumps(headers),
        body,
    )


# --- webhooks ------------------------------------------------------------------------


async def remember_signature(connection: asyncpg.Connection, digest: str) -> bool:
    """False when this exact signature was seen before (a replay)."""
    fresh = await connection.fetchval(
        """INSERT INTO webhook_signatures (digest) VALUES ($1)
           ON CONFLICT DO NOTHING RETURNING true""",
        digest,
    )
    return bool(fresh)


async def forget_old_signatures(connection: asyncpg.Connection, older_than_seconds: int) -> None:
    # A signature older than twice the tolerance is refused as stale anyway.
    await connection.execute(
        "DELETE FROM webhook_signatures WHERE seen_at < now() - make_interval(secs => $1)",
        float(2 * older_than_seconds),
    )


async def record_delivery(
    connection: asyncpg.Connection, integration: str, webhook_id: str
) -> bool:
    """False when this webhook id was already applied (a redelivery)."""
    fresh = await connection.fetchval(
        """INSERT INTO webhook_deliveries (integration, webhook_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        integration,
        webhook_id,
    )
    return bool(fresh)


async def find_deal(connection: asyncpg.Connection, deal_id: str) -> tuple[str, DealState] | None:
    row = await connection.fetchrow(
        "SELECT status, state FROM deals WHERE deal_id = $1 FOR UPDATE", deal_id
    )
    if row is None:
        return None
    return row["status"], DealState.model_validate_json(row["state"])


async def save_deal(connection: asyncpg.Connection, status: str, state: DealState) -> None:
    await connection.execute(
        """INSERT INTO deals (deal_id, status, state) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (deal_id) DO UPDATE
           SET status = EXCLUDED.status, state = EXCLUDED.state, updated_at = now()""",
        state.deal_id,
        status,
        state.model_dump_json(include=set(DealState.model_fields)),
    )


async def find_account(connection: asyncpg.Connection, account_id: str) -> tuple[str, int] | None:
    row = await connection.fetchrow(
        "SELECT status, arr_cents FROM accounts WHERE account_id = $1 FOR UPDATE", account_id
    )
    return None if row is None else (row["status"], row["arr_cents"])


async def save_account(
    connection: asyncpg.Connection, account_id: str, status: str, arr_cents: int
) -> None:
    await connection.execute(
        """INSERT INTO accounts (account_id, status, arr_cents) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE
           SET status = EXCLUDED.status, arr_cents = EXCLUDED.arr_cents, updated_at = now()""",
        account_id,
        status,
        arr_cents,
    )
