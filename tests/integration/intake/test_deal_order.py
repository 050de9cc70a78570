"""Order independence, through lead-intake's HTTP API and real PostgreSQL.

For hypothesis-drawn histories of a deal's (or an account's) webhooks, any arrival
order with any duplicates gives the same stored state and the same published state
(the events folded as a consumer folds them: each field from the latest event that set
it, by ``time``, then lifecycle step, then ``delivery_id``; the status from the latest
opened/won/lost).

Hypothesis runs in a worker thread so it can shrink a failure; each example is posted
through the app on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnel_common.events import (
    AccountChurned,
    DealLost,
    DealOpened,
    DealWon,
    Envelope,
    decode_event,
)
from tests.integration.intake.conftest import BILLING_SECRET, CRM_SECRET, signed

T0 = datetime(2026, 10, 1, 9, tzinfo=UTC)
DEAL_DEFAULTS: dict[str, Any] = {
    "lead_id": None,
    "attribution": {"source": "unattributed", "campaign": None, "utm": {}},
    "amount_cents": 0,
    "stage": "open",
    "expected_close_date": None,
}

# Few distinct times, so same-instant deliveries (second or day precision) are common.
times = st.integers(0, 3).map(lambda minutes: (T0 + timedelta(minutes=minutes)).isoformat())
deal_webhooks = st.lists(
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["opened", "updated", "won", "lost"]),
            "occurred_at": times,
        },
        optional={
            "amount_cents": st.integers(0, 10**7),
            "stage": st.sampled_from(["discovery", "proposal", "negotiation"]),
            "expected_close_date": st.dates(date(2026, 10, 1), date(2027, 6, 30)).map(str),
        },
    ),
    min_size=1,
    max_size=7,
)
account_webhooks = st.lists(
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["activated", "arr_changed", "churned"]),
            "occurred_at": times,
            "arr_cents": st.integers(0, 10**7),
        }
    ),
    min_size=1,
    max_size=7,
)
arrivals = st.tuples(st.randoms(use_true_random=False), st.integers(0, 3))
History = list[dict[str, Any]]
Arrival = tuple[random.Random, int]


def _with_ids(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Webhook ids in an order of their own: ties must not follow the list order.
    ids = [(position * 37 + 11) % 97 for position in range(len(history))]
    return [
        {**body, "webhook_id": f"w{number:02d}"}
        | ({"reason": "no_budget"} if body["event"] == "lost" else {})
        | ({"arr_cents": None} if body["event"] == "churned" else {})
        for body, number in zip(history, ids, strict=True)
    ]


def _arrival(history: list[dict[str, Any]], arrival: tuple[random.Random, int]) -> list[int]:
    """Delivery positions in one arrival order, with some delivered more than once."""
    rng, copies = arrival
    order = [*range(len(history)), *(rng.randrange(len(history)) for _ in range(copies))]
    rng.shuffle(order)
    return order


async def _deliver(
    intake: httpx.AsyncClient,
    path: str,
    secret: str,
    entity: dict[str, str],
    history: list[dict[str, Any]],
    order: list[int],
    run: str,
) -> None:
    now = int(time.time())
    for attempt, position in enumerate(order):
        body = {**history[position], **entity}
        # One prefix for the whole run keeps the webhook ids' order; a copy is signed at
        # another second (the same signature again would be refused as a replay).
        body["webhook_id"] = f"{run}-{body['webhook_id']}"
        body = {k: v for k, v in body.items() if v is not None}
        answer = await intake.post(path, **signed(body, secret, at=now - attempt))
        assert answer.status_code == 200, answer.text


# At the same instant, events go in lifecycle order before the sender's id decides.
STEP = {
    "funnel.deal.opened.v1": 0,
    "funnel.deal.updated.v1": 1,
    "funnel.deal.won.v1": 2,
    "funnel.deal.lost.v1": 2,
    "funnel.account.activated.v1": 0,
    "funnel.account.arr_changed.v1": 1,
    "funnel.account.churned.v1": 2,
}


def _place(event: Envelope) -> tuple[datetime, int, str]:
    return (event.time, STEP[event.type], event.data.delivery_id)  # type: ignore[attr-defined]


def _consumer_fold(events: list[Envelope]) -> dict[str, Any]:
    """What a consumer makes of a deal's published events (ARCHITECTURE.md's rule)."""
    status, fields = "open", dict(DEAL_DEFAULTS)
    for event in sorted(events, key=_place):
        if isinstance(event, DealOpened | DealWon | DealLost):
            status = {DealOpened: "open", DealWon: "won", DealLost: "lost"}[type(event)]
        data = event.data.model_dump(mode="json")
        for name in data["fields_set"]:
            fields[name] = data[name]
    return {"status": status, **fields}


async def _deal_seen(reader: asyncpg.Connection, deal_id: str) -> tuple[Any, Any]:
    row = await reader.fetchrow(
        "SELECT status, state FROM intake.deals WHERE deal_id = $1", deal_id
    )
    stored = {"status": row["status"], **json.loads(row["state"])}
    for bookkeeping in ("deal_id", "currency", "delivery_id", "fields_set"):
        stored.pop(bookkeeping, None)
    payloads = await reader.fetch(
        "SELECT payload FROM intake.outbox WHERE event_key = $1 ORDER BY seq", deal_id.encode()
    )
    published = _consumer_fold([decode_event(row["payload"]) for row in payloads])
    return stored, published


def _run_in_thread(
    loop: asyncio.AbstractEventLoop,
    check: Callable[[History, Arrival], Coroutine[Any, Any, None]],
) -> Callable[[History, Arrival], None]:
    def run(history: History, arrival: Arrival) -> None:
        asyncio.run_coroutine_threadsafe(check(history, arrival), loop).result(timeout=120)

    return run


# The app's own tasks use `random` (retry jitter) while hypothesis draws in its thread.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


async def test_any_arrival_order_with_duplicates_gives_one_deal(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    reader = await asyncpg.connect(database_url)
    loop = asyncio.get_running_loop()

    async def check(history: list[dict[str, Any]], arrival: tuple[random.Random, int]) -> None:
        history = _with_ids(history)
        seen = []
        for run, order in (("a", list(range(len(history)))), ("b", _arrival(history, arrival))):
            deal_id = f"D-{uuid4().hex[:12]}"
            await _deliver(intake, "/v1/deals", CRM_SECRET, {"deal_id": deal_id}, history,
                           order, f"{run}{uuid4().hex[:6]}")  # fmt: skip
            seen.append(await _deal_seen(reader, deal_id))
        (in_order, in_order_published), (shuffled, shuffled_published) = seen
        assert shuffled == in_order
        assert in_order_published == in_order
        assert shuffled_published == in_order

    examples = settings(
        max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    try:
        await asyncio.to_thread(
            examples(given(deal_webhooks, arrivals)(_run_in_thread(loop, check)))
        )
    finally:
        await reader.close()


async def test_any_arrival_order_with_duplicates_gives_one_account(
    intake: httpx.AsyncClient, database_url: str
) -> None:
    reader = await asyncpg.connect(database_url)
    loop = asyncio.get_running_loop()

    async def check(history: list[dict[str, Any]], arrival: tuple[random.Random, int]) -> None:
        history = _with_ids(history)
        seen = []
        for run, order in (("a", list(range(len(history)))), ("b", _arrival(history, arrival))):
            account_id = f"A-{uuid4().hex[:12]}"
            await _deliver(intake, "/v1/accounts/events", BILLING_SECRET,
                           {"account_id": account_id}, history, order,
                           f"{run}{uuid4().hex[:6]}")  # fmt: skip
            row = await reader.fetchrow(
                "SELECT status, arr_cents FROM intake.accounts WHERE account_id = $1", account_id
            )
            payloads = await reader.fetch(
                "SELECT payload FROM intake.outbox WHERE event_key = $1", account_id.encode()
            )
            events = sorted((decode_event(r["payload"]) for r in payloads), key=_place)
            published = {"status": "active", "arr_cents": 0}
            for event in events:
                if isinstance(event, AccountChurned):
                    published["status"] = "churned"
                else:
                    published["arr_cents"] = event.data.arr_cents  # type: ignore[attr-defined]
                    if event.type == "funnel.account.activated.v1":
                        published["status"] = "active"
            seen.append(({"status": row["status"], "arr_cents": row["arr_cents"]}, published))
        (in_order, in_order_published), (shuffled, shuffled_published) = seen
        assert shuffled == in_order == in_order_published == shuffled_published

    examples = settings(
        max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    try:
        await asyncio.to_thread(
            examples(given(account_webhooks, arrivals)(_run_in_thread(loop, check)))
        )
    finally:
        await reader.close()
