"""All SQL of lead-intake, one function per query. Functions never commit."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class NewLeadRow:
    """A lead as first stored: captured data, spam verdict and qualification at once."""

    lead: LeadCapturedData
    status: str
    form_type: str | None
    score: int | None
    rules_version: str | None


async def insert_leads(connection: asyncpg.Connection, rows: Sequence[NewLeadRow]) -> None:
    # One statement for the whole batch; spam reasons travel as JSON because unnest
    # cannot take an array of arrays.
    await connection.execute(
        """INSERT INTO leads (lead_id, form_id, email, phone, source, campaign, profile,
                              attribution, status, spam_reasons, form_type, score,
                              rules_version)
           SELECT lead_id, form_id, email, phone, source, campaign, profile::jsonb,
                  attribution::jsonb, status,
                  ARRAY(SELECT jsonb_array_elements_text(spam_reasons::jsonb)),
                  form_type, score, rules_version
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                       $11::text[], $12::int[], $13::text[])
                AS row(lead_id, form_id, email, phone, source, campaign, profile,
                       attribution, status, spam_reasons, form_type, score, rules_version)""",
        [row.lead.lead_id for row in rows],
        [row.lead.form_id for row in rows],
        [row.lead.profile.email for row in rows],
        [row.lead.profile.phone for row in rows],
        [row.lead.attribution.source for row in rows],
        [row.lead.attribution.campaign for row in rows],
        [row.lead.profile.model_dump_json() for row in rows],
        [row.lead.attribution.model_dump_json() for row in rows],
        [row.status for row in rows],
        [json.dumps(row.lead.spam_reasons) for row in rows],
        [row.form_type for row in rows],
        [row.score for row in rows],
        [row.rules_version for row in rows],
    )


async def lock_identities(connection: asyncpg.Connection, keys: Iterable[str]) -> None:
    """Serialises submissions for the same email/phone until commit, across replicas, so
    two concurrent posts of one person become one lead and a merge, not two leads.

    Taken in sorted order, so two transactions locking overlapping sets cannot deadlock."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtext('lead:' || key)) FROM unnest($1::text[]) AS key",
        sorted(set(keys)),
    )


async def find_recent_leads(
    connection: asyncpg.Connection,
    identities: Sequence[tuple[str, str | None]],
    *,
    since: datetime,
) -> list[tuple[UUID, str] | None]:
    """Per (email, phone): the most recently touched non-spam lead with this email
    (first) or phone, and what matched. Rows are locked by :func:`lock_leads`."""
    rows = await connection.fetch(
        """SELECT wanted.position, lead.lead_id,
                  CASE WHEN lead.email = wanted.email THEN 'email' ELSE 'phone' END
                      AS matched_on
           FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS wanted(email, phone, position)
           CROSS JOIN LATERAL (
               SELECT lead_id, email FROM leads
               WHERE status <> 'spam' AND last_touch_at >= $3
                 AND (email = wanted.email
                      OR (wanted.phone IS NOT NULL AND phone = wanted.phone))
               ORDER BY (email = wanted.email) DESC, last_touch_at DESC
               LIMIT 1) AS lead""",
        [email for email, _ in identities],
        [phone for _, phone in identities],
        since,
    )
    found: list[tuple[UUID, str] | None] = [None] * len(identities)
    for row in rows:
        found[row["position"] - 1] = (row["lead_id"], row["matched_on"])
    return found


async def lock_leads(
    connection: asyncpg.Connection, lead_ids: Iterable[UUID]
) -> dict[UUID, StoredLead]:
    """Locks the leads a batch merges onto, in id order (two batches cannot deadlock),
    and reads them as they are once locked."""
    rows = await connection.fetch(
        f"""SELECT {_LEAD_COLUMNS} FROM leads WHERE lead_id = ANY($1::uuid[])
            ORDER BY lead_id FOR UPDATE""",
        sorted(set(lead_ids)),
    )
    return {row["lead_id"]: _lead(row) for row in rows}


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


@dataclass(frozen=True)
class Touch:
    """A submission merged onto a known lead, and the lead's state after it."""

    submission_id: UUID
    lead_id: UUID
    form_id: str
    matched_on: str
    attribution: Attribution
    profile: LeadProfile
    form_type: str | None
    status: str
    score: int
    rules_version: str


async def record_touches(connection: asyncpg.Connection, touches: Sequence[Touch]) -> None:
    """Each touch, then the lead's merged profile, form type and qualification.

    Applied in order, so several touches of one lead in a batch end in the last one's
    state, as they would one request after another."""
    await connection.executemany(
        """WITH touch AS (
               INSERT INTO touches (submission_id, lead_id, form_id, matched_on, attribution)
               VALUES ($1, $2, $3, $4, $5::jsonb))
           UPDATE leads SET last_touch_at = now(), profile = $6::jsonb, form_type = $7,
                            status = $8, score = $9, rules_version = $10
           WHERE lead_id = $2""",
        [
            (
                touch.submission_id,
                touch.lead_id,
                touch.form_id,
                touch.matched_on,
                touch.attribution.model_dump_json(),
                touch.profile.model_dump_json(),
                touch.form_type,
                touch.status,
                touch.score,
                touch.rules_version,
            )
            for touch in touches
        ],
    )


async def count_leads(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM leads")
    return count


async def lead_exists(connection: asyncpg.Connection, lead_id: UUID) -> bool:
    return bool(await connection.fetchval("SELECT true FROM leads WHERE lead_id = $1", lead_id))


# --- rate limit ----------------------------------------------------------------------


async def client_hits_in_window(
    connection: asyncpg.Connection,
    client_hashes: Iterable[str],
    window_seconds: int,
    *,
    at_most: int,
) -> dict[str, int]:
    """Each client's hits in the window (committed before this statement), counted up
    to ``at_most``: past the limit the exact number changes nothing, and counting every
    hit of a busy client cost a scan of its whole window on every batch."""
    rows = await connection.fetch(
        """SELECT client, (SELECT count(*) FROM (
                               SELECT FROM client_hits
                               WHERE client_hash = client
                                 AND hit_at > now() - make_interval(secs => $2)
                               LIMIT $3) AS hit) AS hits
           FROM unnest($1::text[]) AS client""",
        sorted(set(client_hashes)),
        float(window_seconds),
        at_most,
    )
    return {row["client"]: row["hits"] for row in rows}


async def record_client_hits(connection: asyncpg.Connection, client_hashes: list[str]) -> None:
    await connection.execute(
        "INSERT INTO client_hits (client_hash) SELECT unnest($1::text[])", client_hashes
    )


async def forget_old_client_hits(connection: asyncpg.Connection, window_seconds: int) -> None:
    await connection.execute(
        "DELETE FROM client_hits WHERE hit_at < now() - make_interval(secs => $1)",
        float(window_seconds),
    )


# --- idempotency ---------------------------------------------------------------------


async def claim_idempotency_keys(
    connection: asyncpg.Connection, scope: str, requests: Sequence[tuple[str, str]]
) -> set[str]:
    """The keys (of (key, request hash) pairs) claimed now, i.e. seen for the first time.

    A key that a concurrent transaction claimed waits for it to end; claimed in sorted
    order, so two batches claiming overlapping keys cannot deadlock."""
    requests = sorted(requests)
    rows = await connection.fetch(
        """INSERT INTO idempotency_keys (scope, key, request_hash)
           SELECT $1, key, request_hash FROM unnest($2::text[], $3::text[])
                AS request(key, request_hash)
           ON CONFLICT DO NOTHING RETURNING key""",
        scope,
        [key for key, _ in requests],
        [request_hash for _, request_hash in requests],
    )
    return {row["key"] for row in rows}


async def release_idempotency_keys(
    connection: asyncpg.Connection, scope: str, keys: list[str]
) -> None:
    """Unclaims keys of requests refused after the claim: a retry is then a first request."""
    await connection.execute(
        """DELETE FROM idempotency_keys
           WHERE scope = $1 AND key = ANY($2::text[]) AND status_code IS NULL""",
        scope,
        keys,
    )


async def forget_old_idempotency_keys(connection: asyncpg.Connection, ttl_hours: int) -> None:
    await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        ttl_hours,
    )


async def stored_answers(
    connection: asyncpg.Connection, scope: str, keys: list[str]
) -> dict[str, asyncpg.Record]:
    rows = await connection.fetch(
        """SELECT key, request_hash, status_code, headers, body FROM idempotency_keys
           WHERE scope = $1 AND key = ANY($2::text[])""",
        scope,
        keys,
    )
    return {row["key"]: row for row in rows}


@dataclass(frozen=True)
class StoredAnswer:
    key: str
    status_code: int
    headers: dict[str, str]
    body: str


async def store_answers(
    connection: asyncpg.Connection, scope: str, answers: Sequence[StoredAnswer]
) -> None:
    await connection.execute(
        """UPDATE idempotency_keys AS stored
           SET status_code = answer.status_code, headers = answer.headers::jsonb,
               body = answer.body
           FROM unnest($2::text[], $3::int[], $4::text[], $5::text[])
                AS answer(key, status_code, headers, body)
           WHERE stored.scope = $1 AND stored.key = answer.key""",
        scope,
        [answer.key for answer in answers],
        [answer.status_code for answer in answers],
        [json.dumps(answer.headers) for answer in answers],
        [answer.body for answer in answers],
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


async def remember_signatures(connection: asyncpg.Connection, digests: list[str]) -> set[str]:
    """The digests seen for the first time now (the others are replays); sorted, so two
    batches cannot deadlock on each other's."""
    rows = await connection.fetch(
        """INSERT INTO webhook_signatures (digest) SELECT unnest($1::text[])
           ON CONFLICT DO NOTHING RETURNING digest""",
        sorted(digests),
    )
    return {row["digest"] for row in rows}


async def forget_signatures(connection: asyncpg.Connection, digests: list[str]) -> None:
    """Unremembers signatures of requests refused after they were recorded."""
    await connection.execute(
        "DELETE FROM webhook_signatures WHERE digest = ANY($1::text[])", digests
    )


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
