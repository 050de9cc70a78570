"""Faults under a steady stream of leads, webhooks and rep decisions (`make test-faults`;
also part of `make test`).

The platform runs as `funnel dev` (real processes), with `funnel seed`'s roster: one of
its SLA policies (seed-hot) breaches within seconds. While three clients keep going
(leads, some of them demo requests nobody answers; reps accepting and rejecting their
handoffs; signed CRM and billing webhooks for the accepted leads' deals and accounts),
the broker is SIGKILLed, PostgreSQL gets a fast shutdown (SIGINT), each service is
SIGKILLed, every event on the topics is delivered a second time, and a poison record
lands on each topic. Afterwards:

- every 2xx lead and webhook is stored exactly once, and each applied webhook published
  exactly one event; the deals and accounts are in the state their webhooks left them;
- every 2xx decision is the handoff's state, with exactly one accepted/rejected event;
- every SLA breach fired exactly once per (handoff, due time), none was lost: each demo
  request breached twice and went to the manager;
- every figure metrics answers (/v1/funnel, /v1/plan) equals the oracle's, recomputed
  from the distinct events on the topics, and the captured counter equals the leads
  stored;
- no request got a 500, every 503 carried Retry-After, and writes during the PostgreSQL
  outage were answered 503;
- the poison sits in the DLQ, and the consumers kept going (what came after it counted).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    DLQ_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
    HandoffAccepted,
    HandoffRejected,
    HandoffRejectedV2,
    HandoffSlaBreached,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import wait_until
from funnel_tools.importer import ImportSettings, Kind
from funnel_tools.seed import BREACHES_PER_UNANSWERED, quarter_of
from metrics.settings import MetricsSettings
from tests.faults.readback import breaches_pending, events, records, roster, stored
from tests.faults.streams import DecisionStream, LeadStream, Stream, WebhookStream
from tests.metrics.oracle import Oracle, differences

pytestmark = pytest.mark.faults

POISON_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC)
METRICS_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC)
PERIOD, _ = quarter_of(utc_now())


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevPlatform]:
    platform = start_dev(tmp_path / "funnel", free_ports(), tmp_path / "dev.out")
    yield platform
    platform.stop()


async def _deliver_everything_again_and_poison(settings: CommonSettings) -> list[bytes]:
    producer = new_producer(settings)
    await producer.start()
    poisons = []
    try:
        for topic in POISON_TOPICS:
            for key, value in await records(settings, topic):
                await producer.send(topic, value=value, key=key)
            poison = f"poison for {topic} {uuid4()}".encode()
            await producer.send_and_wait(topic, value=poison, key=b"poison")
            poisons.append(poison)
    finally:
        await producer.stop()
    return poisons


def _kill(platform: DevPlatform, name: str, how: signal.Signals = signal.SIGKILL) -> None:
    victim = platform.pid_listening_on(name)
    os.kill(victim, how)
    wait_until(
        lambda: (
            platform.listener(name) not in (None, victim)
            and (name not in ("intake", "handoff", "metrics") or platform.ready(name))
        ),
        timeout=60,
        what=f"{name} to be restarted",
    )


def _unavailable(streams: tuple[Stream, ...]) -> int:
    return sum(stream.statuses[503] for stream in streams)


def _oracle_differences(platform: DevPlatform, settings: CommonSettings) -> list[str]:
    """Where metrics' answers differ from the oracle's, fed every distinct event once."""
    published = [e for topic in METRICS_TOPICS for e in asyncio.run(events(settings, topic))]
    configured = MetricsSettings()  # `funnel dev` runs metrics with the same environment
    oracle = Oracle(published, configured.stage_probabilities, configured.default_stage_probability)
    expected = oracle.funnel(PERIOD)
    with httpx.Client(base_url=platform.url("metrics", ""), timeout=10) as client:
        funnel = client.get("/v1/funnel", params={"period": PERIOD}).json()
        plan = client.get("/v1/plan", params={"period": PERIOD}).json()
    return differences(expected, funnel) + differences(
        {"period": PERIOD, "currency": "USD", **expected["plan"]}, plan, ".plan"
    )


def test_every_accepted_request_is_applied_exactly_once_through_faults(
    dev: DevPlatform,
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=dev.bootstrap_servers)
    secrets = ImportSettings()
    tokens = asyncio.run(roster(dev, settings))
    admin = {"authorization": f"Bearer {tokens.pop('faults-admin')}"}
    targets: list[httpx.Response] = []

    def target_set() -> bool:
        # metrics takes the new token once its worker has heard of it (funnel.access).
        targets.append(
            httpx.put(
                dev.url("metrics", f"/v1/targets/{PERIOD}"),
                json={"amount_cents": 5_000_000_00},
                headers=admin,
                timeout=30,
            )
        )
        return targets[-1].status_code != 401

    wait_until(target_set, timeout=30, what="metrics to know the admin token")
    assert targets[-1].is_success, targets[-1].text
    leads = LeadStream(dev.url("intake", ""), secrets.secret_for(Kind.leads))
    decisions = DecisionStream(dev.url("handoff", ""), tokens)
    webhooks = WebhookStream(
        dev.url("intake", ""),
        secrets.secret_for(Kind.deals),
        secrets.secret_for(Kind.accounts),
        decisions.accepted_emails,
    )
    streams: tuple[Stream, ...] = (leads, decisions, webhooks)

    def flowing(what: str) -> None:
        """Leads come in, reps decide and webhooks land: every stream moves again."""
        counts = (len(leads.accepted), len(decisions.decided), len(webhooks.delivered["/v1/deals"]))
        leads.wait_for_more(20)
        wait_until(
            lambda: (
                len(decisions.decided) > counts[1]
                and len(webhooks.delivered["/v1/deals"]) > counts[2]
            ),
            timeout=90,
            what=f"decisions and webhooks {what}",
        )

    with leads, decisions, webhooks:
        flowing("to start")

        _kill(dev, "broker")
        flowing("after the broker's restart")

        # SIGINT is PostgreSQL's fast shutdown; the supervisor starts it again. The 503s
        # counted are those answered before it listens again: the outage lasts the
        # supervisor's check and a start-up (seconds), the lead stream posts many times
        # a second, so some of its writes land in it.
        before_outage = _unavailable(streams)
        _kill(dev, "postgres", signal.SIGINT)
        during_outage = _unavailable(streams) - before_outage
        wait_until(lambda: dev.ready("intake"), timeout=60, what="PostgreSQL to be back")
        flowing("after PostgreSQL's restart")

        for service in ("intake", "handoff", "metrics"):
            _kill(dev, service)
            flowing(f"after {service}'s restart")

        poisons = asyncio.run(_deliver_everything_again_and_poison(settings))
        flowing("after the poison")

    # Every demo request breaches twice (its rep, then the team's other rep), then is
    # escalated to the manager: wait for the last ones to get there.
    wait_until(
        lambda: asyncio.run(breaches_pending(dev)) == 0,
        timeout=90,
        what="every due SLA to have breached",
        interval=0.5,
    )
    wait_until(
        lambda: not _oracle_differences(dev, settings),
        timeout=120,
        what="metrics to catch up with every event",
        interval=1,
    )
    found = asyncio.run(stored(dev))
    handoff_events = asyncio.run(events(settings, HANDOFFS_TOPIC))

    # Leads. A request cut off mid-flight by a kill may have been stored without its
    # answer arriving: that is the only way a lead is stored without a 2xx.
    assert set(leads.accepted) <= found.leads
    assert len(found.leads - set(leads.accepted)) <= leads.connection_errors
    assert len(leads.accepted) == len(set(leads.accepted))
    wait_until(
        lambda: dev.captured() == len(found.leads), timeout=60, what="every stored lead counted"
    )

    # Webhooks: each delivery is retried until answered, so everything stored got its
    # 2xx, but for one cut off when the stream stopped.
    assert webhooks.refused == []
    delivered = webhooks.delivered["/v1/deals"] | webhooks.delivered["/v1/accounts/events"]
    applied = {w for ids in found.webhooks.values() for w in ids if w.startswith("faults-")}
    assert delivered <= applied
    assert len(applied - delivered) <= 1
    deal_events = asyncio.run(events(settings, DEALS_TOPIC))
    account_events = asyncio.run(events(settings, ACCOUNTS_TOPIC))
    assert len({e.id for e in deal_events + account_events}) == len(applied)
    for deal, status in webhooks.expected_deals.items():
        if deal != webhooks.in_progress:
            assert found.deals[deal] == status, deal
    for account, status in webhooks.expected_accounts.items():
        if account != webhooks.in_progress.replace("-D", "-A"):
            assert found.accounts[account][0] == status, account

    # Decisions: each 2xx decision is the handoff's state, with exactly one event.
    decided_events: dict[UUID, set[tuple[UUID, str]]] = defaultdict(set)
    for event in handoff_events:
        if isinstance(event, HandoffAccepted | HandoffRejected | HandoffRejectedV2):
            outcome = "accepted" if isinstance(event, HandoffAccepted) else "rejected"
            decided_events[event.data.handoff_id].add((event.id, outcome))
    for handoff_id, outcome in decisions.decided.items():
        assert found.handoffs[handoff_id]["status"] == outcome
        assert [o for _, o in decided_events[handoff_id]] == [outcome], handoff_id
    assert all(len(ids) == 1 for ids in decided_events.values())
    decided_in_store = {
        h for h, row in found.handoffs.items() if row["status"] in ("accepted", "rejected")
    }
    assert decided_in_store == set(decided_events)
    assert len(decided_in_store - set(decisions.decided)) <= decisions.connection_errors

    # SLA breaches: one event per (handoff, due time), as many as the handoff counted;
    # every demo request breached at each of its two reps, then went to the manager.
    fired: dict[tuple[UUID, datetime], set[UUID]] = defaultdict(set)
    for event in handoff_events:
        if isinstance(event, HandoffSlaBreached):
            fired[(event.data.handoff_id, event.data.due_at)].add(event.id)
    assert all(len(ids) == 1 for ids in fired.values()), "a breach fired twice"
    per_handoff: dict[UUID, int] = defaultdict(int)
    for handoff_id, _ in fired:
        per_handoff[handoff_id] += 1
    hot = {h for h, row in found.handoffs.items() if row["policy_name"] == "seed-hot"}
    assert hot, "no demo request reached handoff"
    for handoff_id, row in found.handoffs.items():
        assert per_handoff[handoff_id] == row["breaches"], handoff_id
        if handoff_id in hot:
            assert (row["status"], row["breaches"]) == ("escalated", BREACHES_PER_UNANSWERED)

    # Metrics equals the oracle (waited for above).
    assert _oracle_differences(dev, settings) == []

    # The answers: never a 500, always Retry-After with a 503, and 503s (not 500s, not
    # hangs) while PostgreSQL was down.
    for stream in streams:
        assert stream.statuses[500] == 0, stream.server_errors
        assert stream.unavailable_without_retry_after == 0, type(stream).__name__
    assert during_outage > 0, "no write was answered while PostgreSQL was down"

    # Poison in the DLQ; the consumers kept going: what came after it is counted above.
    parked = [json.loads(value) for _, value in asyncio.run(records(settings, DLQ_TOPIC))]
    parked_originals = {p["original"].get("text", "").encode() for p in parked}
    assert set(poisons) <= parked_originals
