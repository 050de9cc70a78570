"""SLA breach detection delay: from each handoff's ``due_at`` to its breach on the topic.

A team with a 3-second, round-the-clock SLA and reps who never decide; qualified leads
go in through lead-intake at a steady rate, so deadlines fall due spread out as they
would in a working day. Each ``funnel.handoff.sla_breached.v1`` read from
``funnel.handoffs`` gives two delays: to the scanner's decision (the event's ``time``)
and to the event being readable by a consumer (what the metrics service and anyone
downstream wait for).

The rate is 40 qualified leads/s: at 80/s handoff's one process (its consumer routing
each lead, the relay and the scanner share an event loop) saturates a core of a 2-core
machine, and the delay then measures that backlog rather than the scanner.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID, uuid4

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.load import open_loop, percentile, session
from bench.measures import Figure
from funnel_common.events import HANDOFFS_TOPIC, EventDecodeError, HandoffSlaBreached, decode_event
from funnel_common.kafka import partitions_of
from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.devplatform import DevPlatform
from funnel_tools.importer import ImportSettings, Kind
from handoff.settings import HandoffSettings
from handoff.sla import ALWAYS

TEAM = "bench-sla"
POLICY = "bench-3s"
SLA_SECONDS = 3.0
TARGET_P99_SECONDS = 1.0


def admin_token(platform: DevPlatform) -> str:
    """An admin token, as an operator gets one (`funnel token create`)."""
    env = {**os.environ, "FUNNEL_HANDOFF_DATABASE_URL": platform.database_url}
    funnel = Path(sys.executable).with_name("funnel")
    done = subprocess.run(
        [str(funnel), "token", "create", "--role", "admin", "--subject", "bench"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


async def _roster(http: aiohttp.ClientSession, platform: DevPlatform, token: str) -> None:
    """The short policy, a team that takes every lead with it, reps who never decide."""
    headers = {"authorization": f"Bearer {token}"}
    policy = {
        "business_minutes": SLA_SECONDS / 60,
        "calendar": ALWAYS.model_dump(mode="json"),
        # One breach each: it escalates to the manager, with no second deadline.
        "on_breach": {"reassign_up_to": 0, "then": "escalate_to_manager"},
    }
    team = {"manager_id": "bench-manager", "priority": 0, "sla_policy": POLICY}
    puts = [(f"/v1/sla-policies/{POLICY}", policy), (f"/v1/teams/{TEAM}", team)]
    puts += [(f"/v1/reps/bench-rep-{n}", {"team_id": TEAM, "capacity": 10_000}) for n in range(4)]
    for path, body in puts:
        async with http.put(platform.url("handoff", path), json=body, headers=headers) as answer:
            assert answer.status < 300, f"PUT {path}: {answer.status} {await answer.text()}"


def _qualified_lead(run: str, index: int) -> dict[str, object]:
    # Senior title, a mid-sized company: an MQL under config/qualification.yaml.
    return {
        "email": f"sla-{run}-{index}@example.com", "title": "CTO", "company_size": 250,
        "utm_source": "newsletter", "source": "bench",
    }  # fmt: skip


@dataclass
class Breaches:
    """Per breach: seconds from due to the scanner's decision, and to being readable."""

    decided: list[float] = field(default_factory=list)
    readable: list[float] = field(default_factory=list)


def breach_delays(records: list[tuple[float, bytes]], lead_ids: set[UUID]) -> Breaches:
    """Delays of the breaches of these leads' handoffs among ``(time read, record value)``."""
    breaches = Breaches()
    for read_at, value in records:
        try:
            event = decode_event(value)
        except EventDecodeError:
            continue
        if isinstance(event, HandoffSlaBreached) and event.data.lead_id in lead_ids:
            due = event.data.due_at.timestamp()
            breaches.decided.append(event.time.timestamp() - due)
            breaches.readable.append(read_at - due)
    return breaches


async def breach_delay(
    platform: DevPlatform, *, leads: int = 400, rate: float = 40.0
) -> list[Figure]:
    """Qualified leads at ``rate``/s until ``leads``; the delays of their breaches."""
    # The platform's handoff reads the same environment: its configured interval.
    scan_interval = HandoffSettings().scan_interval_seconds
    run = uuid4().hex[:8]
    token = admin_token(platform)
    records: list[tuple[float, bytes]] = []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=platform.bootstrap_servers, enable_auto_commit=False,
        fetch_max_wait_ms=20, request_timeout_ms=40_000,
    )  # fmt: skip
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [HANDOFFS_TOPIC])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        stop = asyncio.Event()

        async def read() -> None:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                records.extend((now, r.value or b"") for batch in batches.values() for r in batch)

        reader = asyncio.create_task(read())
        qualified: set[UUID] = set()
        import_secret = ImportSettings().secret_for(Kind.leads)
        async with session(32) as http:
            await _roster(http, platform, token)

            async def post(index: int) -> None:
                url = platform.url("intake", "/v1/leads")
                # Signed as `funnel import` signs: an anonymous post is answered with a
                # receipt only, and the breaches are matched to the leads' ids.
                raw = json.dumps(_qualified_lead(run, index)).encode()
                signature = sign(import_secret, int(time.time()), raw)
                headers = {"content-type": "application/json", SIGNATURE_HEADER: signature}
                async with http.post(url, data=raw, headers=headers) as answer:
                    body = await answer.json()
                    if answer.status == 202 and body.get("status") == "qualified":
                        qualified.add(UUID(body["lead_id"]))

            await open_loop(post, rate=rate, seconds=leads / rate)
        deadline = time.monotonic() + 60 + SLA_SECONDS
        while time.monotonic() < deadline:
            if len(breach_delays(records, qualified).readable) >= len(qualified):
                break
            await asyncio.sleep(0.5)
        stop.set()
        await reader
    finally:
        await consumer.stop()
    found = breach_delays(records, qualified)
    accepted = len(qualified)
    p99 = percentile(found.readable, 0.99)
    interval_ms = scan_interval * 1000
    load = f"{rate:.0f} leads/s"
    return [
        Figure(f"SLA breach delay p50, due → readable, {load}",
               percentile(found.readable, 0.5) * 1000, "ms", "scan interval", interval_ms),
        Figure(f"SLA breach delay p99, due → readable, {load}", p99 * 1000, "ms", "scan interval",
               interval_ms, f"< {TARGET_P99_SECONDS * 1000:.0f} ms",
               p99 < TARGET_P99_SECONDS and len(found.readable) >= accepted > 0),
        Figure("SLA breach decided p99, due → scanner", percentile(found.decided, 0.99) * 1000,
               "ms", "scan interval", interval_ms),
        Figure("breaches seen of qualified leads", len(found.readable), "breaches",
               "qualified leads", accepted),
    ]  # fmt: skip
