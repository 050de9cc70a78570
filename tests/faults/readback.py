"""Setting the platform up through its APIs, and reading back what it stored and published."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnel_common.auth import Role
from funnel_common.events import Envelope, EventDecodeError, decode_event
from funnel_common.kafka import partitions_of
from funnel_common.settings import CommonSettings
from funnel_tools.devplatform import DevPlatform
from funnel_tools.seed import REPS, SLA_POLICIES, TEAMS
from handoff.tokens import create_token


async def roster(platform: DevPlatform, settings: CommonSettings) -> dict[str, str]:
    """`funnel seed`'s teams, reps and SLA policies (seed-hot breaches within seconds),
    set up through handoff's API with an admin token; the tokens, by subject (the reps
    and ``faults-admin``)."""
    connection = await asyncpg.connect(
        platform.database_url, server_settings={"search_path": "handoff"}
    )
    try:
        tokens = {}
        subjects: list[tuple[str, Role]] = [("faults-admin", "admin"), *((r, "rep") for r in REPS)]
        for subject, role in subjects:
            # Issued in a transaction: the token is announced through handoff's outbox.
            async with connection.transaction():
                _, tokens[subject] = await create_token(
                    connection, settings.auth_secret, subject=subject, role=role
                )
    finally:
        await connection.close()
    admin = {"authorization": f"Bearer {tokens['faults-admin']}"}
    async with httpx.AsyncClient(base_url=platform.url("handoff", ""), timeout=30) as client:
        puts: list[tuple[str, Mapping[str, Any]]] = [
            *((f"/v1/sla-policies/{name}", policy) for name, policy in SLA_POLICIES.items()),
            *((f"/v1/teams/{team}", rules) for team, rules in TEAMS.items()),
            *(
                (f"/v1/reps/{rep}", {"team_id": team, "capacity": 10_000, "weight": weight})
                for rep, (team, weight) in REPS.items()
            ),
        ]
        for path, body in puts:
            answer = await client.put(path, json=body, headers=admin)
            assert answer.is_success, (path, answer.status_code, answer.text)
    return tokens


@dataclass
class Stored:
    leads: set[UUID]
    webhooks: dict[str, set[str]]  # integration -> webhook ids applied
    deals: dict[str, str]
    accounts: dict[str, tuple[str, int]]
    handoffs: dict[UUID, asyncpg.Record]


async def stored(platform: DevPlatform) -> Stored:
    connection = await asyncpg.connect(platform.database_url)
    try:
        webhooks: dict[str, set[str]] = {}
        for row in await connection.fetch(
            "SELECT integration, webhook_id FROM intake.webhook_deliveries"
        ):
            webhooks.setdefault(row["integration"], set()).add(row["webhook_id"])
        return Stored(
            # A lead by the receipt its post was answered with (its first submission).
            leads={
                r["submission_id"]
                for r in await connection.fetch("SELECT submission_id FROM intake.leads")
            },
            webhooks=webhooks,
            deals={
                r["deal_id"]: r["status"]
                for r in await connection.fetch("SELECT deal_id, status FROM intake.deals")
            },
            accounts={
                r["account_id"]: (r["status"], r["arr_cents"])
                for r in await connection.fetch(
                    "SELECT account_id, status, arr_cents FROM intake.accounts"
                )
            },
            handoffs={
                r["handoff_id"]: r
                for r in await connection.fetch(
                    "SELECT handoff_id, status, policy_name, due_at, breaches, profile->>'email'"
                    " AS email FROM handoff.handoffs"
                )
            },
        )
    finally:
        await connection.close()


_PENDING = """
    SELECT (SELECT count(*) FROM intake.outbox o
             WHERE o.event_type LIKE 'funnel.lead.qualified.v%'
               AND NOT EXISTS (SELECT 1 FROM handoff.inbox i
                                WHERE i.event_id = o.event_id)) AS not_taken_in,
           (SELECT count(*) FROM handoff.handoffs
             WHERE status = 'assigned' AND due_at < now() - interval '2 seconds') AS overdue,
           (SELECT count(*) FROM handoff.handoffs
             WHERE policy_name = 'seed-hot' AND status <> 'escalated') AS hot_not_escalated
"""


async def pending_breaches(platform: DevPlatform) -> dict[str, int]:
    """What may still breach, by kind: qualified leads handoff has not taken in yet,
    handoffs past their due time (with a scan's grace) not breached yet, and demo
    requests (seed-hot) not yet through both their reps to the manager."""
    connection = await asyncpg.connect(platform.database_url)
    try:
        row = await connection.fetchrow(_PENDING)
        return dict(row.items())
    finally:
        await connection.close()


async def breaches_pending(platform: DevPlatform) -> int:
    return sum((await pending_breaches(platform)).values())


async def hot_handoffs_by_status(platform: DevPlatform) -> dict[str, int]:
    """The demo requests' handoffs by status: what a stuck escalation looks like."""
    connection = await asyncpg.connect(platform.database_url)
    try:
        rows = await connection.fetch(
            "SELECT status, breaches, count(*) AS n FROM handoff.handoffs"
            " WHERE policy_name = 'seed-hot' GROUP BY status, breaches"
        )
        return {f"{row['status']} ({row['breaches']} breaches)": row["n"] for row in rows}
    finally:
        await connection.close()


async def records(settings: CommonSettings, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record on ``topic`` up to the ends seen first."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [topic])
        assert partitions, f"no partitions for {topic}"
        consumer.assign(partitions)
        # Everything up to the ends seen first: the streams may still add records after that.
        found: list[tuple[bytes | None, bytes]] = []
        ends: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            found += [(r.key, r.value or b"") for batch in batches.values() for r in batch]
            for partition in partitions:
                high_water = consumer.highwater(partition)
                if partition not in ends and high_water is not None:
                    ends[partition] = high_water
            positions = {p: await consumer.position(p) for p in partitions}
            if len(ends) == len(partitions) and all(positions[p] >= ends[p] for p in partitions):
                return found
        raise TimeoutError(f"reading {topic} to its end")
    finally:
        await consumer.stop()


async def events(settings: CommonSettings, topic: str) -> list[Envelope]:
    """Every event on ``topic``, as published: redeliveries included, poison left out."""
    decoded = []
    for _, value in await records(settings, topic):
        try:
            decoded.append(decode_event(value))
        except EventDecodeError:
            continue
    return decoded
