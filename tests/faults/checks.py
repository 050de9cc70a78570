"""What every fault test does around its faults: set the roster and a target up, run the
three streams, and afterwards check that everything accepted was applied exactly once.

The checks, after the streams have stopped:

- every 2xx lead and webhook is stored exactly once, and each applied webhook published
  exactly one event; the deals and accounts are in the state their webhooks left them;
- every 2xx decision is the handoff's state, with exactly one accepted/rejected event;
- every SLA breach fired exactly once per (handoff, due time), none was lost: each demo
  request breached twice and went to the manager;
- every figure metrics answers (/v1/funnel, /v1/plan) equals the oracle's, recomputed
  from the distinct events on the topics, and the captured counter equals the leads
  stored;
- no request got a 500, and every 503 carried Retry-After.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import httpx

from funnel_common.events import (
    ACCOUNTS_TOPIC,
    DEALS_TOPIC,
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    TARGETS_TOPIC,
    HandoffAccepted,
    HandoffRejected,
    HandoffRejectedV2,
    HandoffSlaBreached,
)
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.devplatform import DevPlatform
from funnel_tools.embedded import wait_until
from funnel_tools.importer import ImportSettings, Kind
from funnel_tools.seed import BREACHES_PER_UNANSWERED, quarter_of
from metrics.settings import MetricsSettings
from tests.faults.readback import (
    breaches_pending,
    events,
    hot_handoffs_by_status,
    pending_breaches,
    roster,
    stored,
)
from tests.faults.streams import DecisionStream, LeadStream, Stream, WebhookStream
from tests.metrics.oracle import Oracle, differences

METRICS_TOPICS = (LEADS_TOPIC, HANDOFFS_TOPIC, DEALS_TOPIC, ACCOUNTS_TOPIC, TARGETS_TOPIC)
PERIOD, _ = quarter_of(utc_now())


@dataclass
class Streams:
    """The three clients of a fault test, over one platform."""

    leads: LeadStream
    decisions: DecisionStream
    webhooks: WebhookStream

    @property
    def all(self) -> tuple[Stream, ...]:
        return (self.leads, self.decisions, self.webhooks)

    def __enter__(self) -> Streams:
        for stream in self.all:
            stream.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        for stream in self.all:
            stream.stop()

    def flowing(self, what: str, *, timeout: float = 90) -> None:
        """Leads come in, reps decide and webhooks land: every stream moves again."""
        decided = len(self.decisions.decided)
        deals = len(self.webhooks.delivered["/v1/deals"])
        self.leads.wait_for_more(20)
        wait_until(
            lambda: (
                len(self.decisions.decided) > decided
                and len(self.webhooks.delivered["/v1/deals"]) > deals
            ),
            timeout=timeout,
            what=f"decisions and webhooks {what}",
        )

    def unavailable(self) -> int:
        """503s answered so far, over every stream."""
        return sum(stream.statuses[503] for stream in self.all)


def set_up(dev: DevPlatform, settings: CommonSettings) -> Streams:
    """`funnel seed`'s roster and a target for this quarter; the streams, not started."""
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
    return Streams(leads, decisions, webhooks)


def oracle_differences(platform: DevPlatform, settings: CommonSettings) -> list[str]:
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


def wait_until_settled(dev: DevPlatform, settings: CommonSettings) -> None:
    """Every due SLA breached (each demo request twice, then escalated to the manager),
    and metrics caught up with every event on the topics."""
    try:
        wait_until(
            lambda: asyncio.run(breaches_pending(dev)) == 0,
            timeout=90,
            what="every due SLA to have breached",
            interval=0.5,
        )
    except TimeoutError as error:
        stuck = asyncio.run(pending_breaches(dev)), asyncio.run(hot_handoffs_by_status(dev))
        raise AssertionError(f"{error}: {stuck}") from error
    try:
        wait_until(
            lambda: not oracle_differences(dev, settings),
            timeout=120,
            what="metrics to catch up with every event",
            interval=1,
        )
    except TimeoutError as error:
        raise AssertionError(f"{error}: {oracle_differences(dev, settings)[:20]}") from error


def assert_applied_exactly_once(
    dev: DevPlatform, settings: CommonSettings, streams: Streams
) -> None:
    """The module's checks (above), once the streams have stopped and it all settled."""
    leads, decisions, webhooks = streams.leads, streams.decisions, streams.webhooks
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

    # Metrics equals the oracle (waited for in wait_until_settled).
    assert oracle_differences(dev, settings) == []

    # The answers: never a 500, always Retry-After with a 503.
    for stream in streams.all:
        assert stream.statuses[500] == 0, stream.server_errors
        assert stream.unavailable_without_retry_after == 0, type(stream).__name__
