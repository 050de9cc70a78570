"""All SQL of lead-intake, one function per query. Functions never commit."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from funnel_common.events import Attribution, DealState, LeadProfile
from lead_intake.intake import NewLeadRow, StoredLead, Touch
from lead_intake.outcomes import AccountDelivery, DealDelivery, DealFields


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


async def insert_leads(connection: asyncpg.Connection, rows: Sequence[NewLeadRow]) -> None:
    # One statement for the whole batch; spam reasons travel as JSON because unnest
    # cannot take an array of arrays.
    await connection.execute(
        """INSERT INTO leads (lead_id, form_id, email, phone, source, campaign, profile,
                              attribution, status, spam_reasons, form_type, score,
                              rules_version, submission_id, captured_at, extra)
           SELECT lead_id, form_id, email, phone, source, campaign, profile::jsonb,
                  attribution::jsonb, status,
                  ARRAY(SELECT jsonb_array_elements_text(spam_reasons::jsonb)),
                  form_type, score, rules_version, submission_id, captured_at, extra::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                       $11::text[], $12::int[], $13::text[], $14::uuid[],
                       $15::timestamptz[], $16::text[])
                AS row(lead_id, form_id, email, phone, source, campaign, profile,
                       attribution, status, spam_reasons, form_type, score, rules_version,
                       submission_id, captured_at, extra)""",
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
        [row.submission_id for row in rows],
        [row.captured_at for row in rows],
        [json.dumps(row.lead.extra) for row in rows],
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
           WHERE scope = $1 AND key = ANY($2::text[]) AND result IS NULL""",
        scope,
        keys,
    )


async def forget_old_idempotency_keys(connection: asyncpg.Connection, ttl_hours: int) -> None:
    await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        ttl_hours,
    )


async def stored_results(
    connection: asyncpg.Connection, scope: str, keys: list[str]
) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Per key: the request hash it was claimed with, and the first request's result
    (None while that request has not finished)."""
    rows = await connection.fetch(
        """SELECT key, request_hash, result FROM idempotency_keys
           WHERE scope = $1 AND key = ANY($2::text[])""",
        scope,
        keys,
    )
    return {
        row["key"]: (
            row["request_hash"],
            None if row["result"] is None else json.loads(row["result"]),
        )
        for row in rows
    }


async def store_results(
    connection: asyncpg.Connection, scope: str, results: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Records each claimed key's result (key, JSON-able result), replayed to retries."""
    await connection.execute(
        """UPDATE idempotency_keys AS stored SET result = answer.result::jsonb
           FROM unnest($2::text[], $3::text[]) AS answer(key, result)
           WHERE stored.scope = $1 AND stored.key = answer.key""",
        scope,
        [key for key, _ in results],
        [json.dumps(result) for _, result in results],
    )


# --- signatures ----------------------------------------------------------------------

# Kept this long past their validity: PostgreSQL's clock, which forgets them, may run
# ahead of the web process's, which verifies them.
_CLOCK_SKEW_SECONDS = 60.0


async def remember_signatures(
    connection: asyncpg.Connection, signatures: Sequence[tuple[str, datetime]]
) -> set[str]:
    """The digests (of (digest, valid until) pairs) seen for the first time now; the
    others are replays. Sorted, so two batches cannot deadlock on each other's."""
    ordered = sorted(signatures)
    rows = await connection.fetch(
        """INSERT INTO webhook_signatures (digest, valid_until)
           SELECT * FROM unnest($1::text[], $2::timestamptz[])
           ON CONFLICT DO NOTHING RETURNING digest""",
        [digest for digest, _ in ordered],
        [valid_until for _, valid_until in ordered],
    )
    return {row["digest"] for row in rows}


async def forget_signatures(connection: asyncpg.Connection, digests: list[str]) -> None:
    """Unremembers signatures of requests refused after they were recorded."""
    await connection.execute(
        "DELETE FROM webhook_signatures WHERE digest = ANY($1::text[])", digests
    )


async def forget_expired_signatures(connection: asyncpg.Connection) -> None:
    """Forgets signatures no longer valid: a replay of one is refused as stale."""
    await connection.execute(
        "DELETE FROM webhook_signatures WHERE valid_until < now() - make_interval(secs => $1)",
        _CLOCK_SKEW_SECONDS,
    )


# --- deals and accounts ----------------------------------------------------------------


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


async def lock_entity(connection: asyncpg.Connection, kind: str, entity_id: str) -> None:
    """Serialises deliveries of one deal or account until commit (the row may not exist
    yet, so an advisory lock rather than a row lock)."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))", kind, entity_id
    )


async def insert_deal_delivery(connection: asyncpg.Connection, delivery: DealDelivery) -> None:
    await connection.execute(
        """INSERT INTO deal_deliveries (integration, webhook_id, deal_id, action, occurred_at,
                                        fields)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
        delivery.integration,
        delivery.webhook_id,
        delivery.deal_id,
        delivery.action,
        delivery.occurred_at,
        delivery.fields.model_dump_json(exclude_none=True),
    )


async def deal_deliveries(connection: asyncpg.Connection, deal_id: str) -> list[DealDelivery]:
    rows = await connection.fetch(
        """SELECT integration, webhook_id, deal_id, action, occurred_at, fields
           FROM deal_deliveries WHERE deal_id = $1""",
        deal_id,
    )
    return [
        DealDelivery(
            integration=row["integration"],
            webhook_id=row["webhook_id"],
            deal_id=row["deal_id"],
            action=row["action"],
            occurred_at=row["occurred_at"],
            fields=DealFields.model_validate_json(row["fields"]),
        )
        for row in rows
    ]


async def find_deal(connection: asyncpg.Connection, deal_id: str) -> tuple[str, DealState] | None:
    row = await connection.fetchrow("SELECT status, state FROM deals WHERE deal_id = $1", deal_id)
    if row is None:
        return None
    return row["status"], DealState.model_validate_json(row["state"])


async def save_deal(connection: asyncpg.Connection, status: str, state: DealState) -> None:
    """The deal's folded state, kept for readers (the fold itself reads the deliveries)."""
    await connection.execute(
        """INSERT INTO deals (deal_id, status, state) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (deal_id) DO UPDATE
           SET status = EXCLUDED.status, state = EXCLUDED.state, updated_at = now()""",
        state.deal_id,
        status,
        state.model_dump_json(include=set(DealState.model_fields)),
    )


async def insert_account_delivery(
    connection: asyncpg.Connection, delivery: AccountDelivery
) -> None:
    await connection.execute(
        """INSERT INTO account_deliveries (integration, webhook_id, account_id, action,
                                           occurred_at, arr_cents, deal_id, attribution)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)""",
        delivery.integration,
        delivery.webhook_id,
        delivery.account_id,
        delivery.action,
        delivery.occurred_at,
        delivery.arr_cents,
        delivery.deal_id,
        None if delivery.attribution is None else delivery.attribution.model_dump_json(),
    )


async def account_deliveries(
    connection: asyncpg.Connection, account_id: str
) -> list[AccountDelivery]:
    rows = await connection.fetch(
        """SELECT integration, webhook_id, account_id, action, occurred_at, arr_cents,
                  deal_id, attribution
           FROM account_deliveries WHERE account_id = $1""",
        account_id,
    )
    return [
        AccountDelivery(
            integration=row["integration"],
            webhook_id=row["webhook_id"],
            account_id=row["account_id"],
            action=row["action"],
            occurred_at=row["occurred_at"],
            arr_cents=row["arr_cents"],
            deal_id=row["deal_id"],
            attribution=None
            if row["attribution"] is None
            else Attribution.model_validate_json(row["attribution"]),
        )
        for row in rows
    ]


async def find_account(connection: asyncpg.Connection, account_id: str) -> tuple[str, int] | None:
    row = await connection.fetchrow(
        "SELECT status, arr_cents FROM accounts WHERE account_id = $1", account_id
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


# --- a person's data: export and erasure (privacy.py) ---------------------------------

# The profile's personal fields (docs/privacy.md). An erased profile keeps company, size
# and country, and an empty email, so it still reads as a profile (a deal may link to
# the lead long after its person was erased).
_PERSONAL_PROFILE_FIELDS = ["email", "phone", "first_name", "last_name", "title"]


async def person_leads(
    connection: asyncpg.Connection,
    *,
    email: str | None = None,
    lead_id: UUID | None = None,
    lock: bool = False,
) -> list[asyncpg.Record]:
    """The leads of one email (every status, spam too) or the one lead of an id, oldest
    first; locked until commit with ``lock``."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""SELECT lead_id, form_id, status, score, rules_version, form_type, spam_reasons,
                   source, campaign, attribution, profile, extra, submission_id,
                   captured_at, last_touch_at, erased_at
            FROM leads WHERE ($1::text IS NOT NULL AND email = $1) OR lead_id = $2
            ORDER BY captured_at, lead_id {"FOR UPDATE" if lock else ""}""",
        email,
        lead_id,
    )
    return rows


async def touches_of(connection: asyncpg.Connection, lead_ids: list[UUID]) -> list[asyncpg.Record]:
    """The submissions merged onto these leads, oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(
        """SELECT submission_id, lead_id, form_id, matched_on, attribution, received_at
           FROM touches WHERE lead_id = ANY($1::uuid[]) ORDER BY received_at, submission_id""",
        lead_ids,
    )
    return rows


async def erase_leads(connection: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """Blank the personal fields of these leads (and their dedupe keys); everything a
    figure is made of stays."""
    await connection.execute(
        """UPDATE leads SET email = NULL, phone = NULL, extra = '{}'::jsonb,
               profile = (profile - $2::text[]) || '{"email": ""}'::jsonb,
               erased_at = coalesce(erased_at, now())
           WHERE lead_id = ANY($1::uuid[])""",
        lead_ids,
        _PERSONAL_PROFILE_FIELDS,
    )


async def erase_outbox_rows(connection: asyncpg.Connection, lead_ids: list[UUID]) -> None:
    """The outbox's copies of these people's data. Their wrapped keys' announcements are
    deleted (sent or not: the key must not reach anyone now). Their lead events lose the
    sealed part, or, for events written before personal data was sealed (``.v1``), the
    personal fields in clear: a relay publishing them again (after the embedded broker
    lost its records) then publishes nothing of the person."""
    keys = [str(lead_id).encode() for lead_id in lead_ids]
    await connection.execute(
        """DELETE FROM outbox
           WHERE event_type = 'funnel.person.key_issued.v1' AND event_key = ANY($1::bytea[])""",
        keys,
    )
    await connection.execute(
        """UPDATE outbox SET payload = convert_to((
               CASE WHEN event_type LIKE '%.v2'
                        THEN jsonb_set(event, '{data,profile,personal}', 'null'::jsonb)
                    WHEN event_type = 'funnel.lead.captured.v1'
                        THEN jsonb_set(blanked, '{data,extra}', '{}'::jsonb)
                    ELSE blanked END)::text, 'UTF8')
           FROM (SELECT seq, event,
                        jsonb_set(event, '{data,profile}',
                                  ((event #> '{data,profile}') - $2::text[])
                                  || '{"email": ""}'::jsonb) AS blanked
                 FROM (SELECT seq, convert_from(payload, 'UTF8')::jsonb AS event FROM outbox
                       WHERE event_key = ANY($1::bytea[])
                         AND event_type IN ('funnel.lead.captured.v1',
                                            'funnel.lead.qualified.v1',
                                            'funnel.lead.captured.v2',
                                            'funnel.lead.qualified.v2')) AS rows)
                AS found
           WHERE outbox.seq = found.seq""",
        keys,
        _PERSONAL_PROFILE_FIELDS,
    )


async def record_erasure(
    connection: asyncpg.Connection,
    *,
    erasure_id: UUID,
    requested_by: str,
    matched_by: str,
    lead_ids: list[UUID],
) -> None:
    await connection.execute(
        """INSERT INTO erasures (erasure_id, requested_by, matched_by, lead_ids)
           VALUES ($1, $2, $3, $4)""",
        erasure_id,
        requested_by,
        matched_by,
        lead_ids,
    )
