"""funnel replay: rebuilt from the topics, the figures are identical to the live ones."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from funnel_common.events import (
    DEALS_TOPIC,
    TARGETS_TOPIC,
    AccountActivated,
    AccountArrChanged,
    AccountChurned,
    DealLost,
    DealOpened,
    DealUpdated,
    Envelope,
    decode_event,
)
from funnel_common.settings import CommonSettings
from funnel_tools.embedded import free_port
from tests.helpers import eventually
from tests.integration.kafka_helpers import read_topic
from tests.metrics.oracle import Oracle
from tests.metrics.support import (
    DEFAULT_PROBABILITY,
    PROBABILITIES,
    metrics_settings,
    produce,
    running_metrics,
)
from tests.metrics.test_service import CURRENT, NOW, bearer, matches, small_funnel


def accounts_and_late_deals() -> list[Envelope]:
    """Accounts across the quarter boundary, and deal events out of time order."""
    events: list[Envelope] = []
    for churns in (False, True):
        account = f"acct-{uuid4().hex[:8]}"
        events.append(
            AccountActivated.new(
                source="test",
                subject=account,
                time=NOW - timedelta(days=200),
                data={"account_id": account, "arr_cents": 12_000_00, "currency": "USD"},
            )
        )
        later = NOW - timedelta(days=1)
        if churns:
            events.append(
                AccountChurned.new(
                    source="test", subject=account, time=later, data={"account_id": account}
                )
            )
        else:
            events.append(
                AccountArrChanged.new(
                    source="test",
                    subject=account,
                    time=later,
                    data={"account_id": account, "arr_cents": 15_000_00, "currency": "USD"},
                )
            )
    deal = f"opp-{uuid4().hex[:8]}"
    state = {
        "deal_id": deal,
        "attribution": {"source": "webinar"},
        "amount_cents": 7_000_00,
        "currency": "USD",
        "stage": "negotiation",
    }
    # The loss (later in time) is sent before the update it supersedes.
    events.append(
        DealLost.new(
            source="test",
            subject=deal,
            time=NOW - timedelta(hours=1),
            data={**state, "closed_on": NOW.date(), "reason": "price"},
        )
    )
    events.append(
        DealUpdated.new(source="test", subject=deal, time=NOW - timedelta(days=9), data=state)
    )
    return events


def cli_environment(database_url: str, settings: CommonSettings) -> dict[str, str]:
    return {
        **os.environ,
        "FUNNEL_METRICS_DATABASE_URL": database_url,
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "FUNNEL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "FUNNEL_ENVIRONMENT": "test",
        "FUNNEL_METRICS_STAGE_PROBABILITIES": json.dumps(PROBABILITIES),
        "FUNNEL_METRICS_DEFAULT_STAGE_PROBABILITY": str(DEFAULT_PROBABILITY),
    }


@pytest.mark.both_brokers
async def test_funnel_replay_rebuilds_identical_figures_and_switches_under_a_live_service(
    database_url: str, topics: CommonSettings
) -> None:
    settings = metrics_settings(database_url, topics)
    history = [*small_funnel(), *accounts_and_late_deals()]
    async with running_metrics(settings) as client:
        # Duplicates on the topic, as a producer retry would leave them.
        await produce(topics, [*history, *history[:3]])
        target = await client.put(
            f"/v1/targets/{CURRENT}",
            json={"amount_cents": 60_000_00},
            headers=await bearer(database_url, topics, "admin"),
        )
        assert target.status_code == 200
        published = [
            decode_event(r.value) for r in await read_topic(topics, TARGETS_TOPIC, expect=1)
        ]
        oracle = Oracle([*history, *published], PROBABILITIES, DEFAULT_PROBABILITY)
        await eventually(
            lambda: matches(client, oracle, CURRENT), until=lambda f: not f, timeout=15
        )

        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "funnel_cli.main",
            "replay",
            env=cli_environment(database_url, topics),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)

        assert process.returncode == 0, output.decode()
        assert "switched" in output.decode()
        assert await matches(client, oracle, CURRENT) == []
        # The running service now writes to the rebuilt schema: new events still count.
        more = small_funnel(days_ago=1)
        await produce(topics, more)
        oracle = Oracle([*history, *published, *more], PROBABILITIES, DEFAULT_PROBABILITY)
        await eventually(
            lambda: matches(client, oracle, CURRENT), until=lambda f: not f, timeout=15
        )
    connection = await asyncpg.connect(database_url)
    try:
        schemas = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'metrics%' ORDER BY 1"
        )
    finally:
        await connection.close()
    names = [row["nspname"] for row in schemas]
    assert names[0] == "metrics"
    assert [name.split("_")[1] for name in names[1:]] == ["retired"]


async def test_replay_repairs_projections_that_went_wrong_only_when_told_to(
    database_url: str, topics: CommonSettings
) -> None:
    from metrics.replay import replay

    settings = metrics_settings(database_url, topics)
    history = [*small_funnel(), *accounts_and_late_deals()]
    oracle = Oracle(history, PROBABILITIES, DEFAULT_PROBABILITY)
    async with running_metrics(settings) as client:
        await produce(topics, history)
        await eventually(
            lambda: matches(client, oracle, CURRENT), until=lambda f: not f, timeout=15
        )
        connection = await asyncpg.connect(database_url)
        try:
            # A projection bug, simulated: a deal's facts vanish from the live tables.
            await connection.execute("DELETE FROM metrics.deals WHERE status = 'lost'")
        finally:
            await connection.close()
        assert await matches(client, oracle, CURRENT) != []

        cautious = await replay(settings)
        assert not cautious.switched
        assert cautious.missing == 0
        assert cautious.differences != []
        repaired = await replay(settings, accept_differences=True)

        assert repaired.switched
        assert await matches(client, oracle, CURRENT) == []


@pytest.mark.both_brokers
async def test_replay_skips_only_the_event_its_handler_refuses_and_applies_duplicates_once(
    database_url: str, topics: CommonSettings
) -> None:
    from metrics.replay import replay

    settings = metrics_settings(database_url, topics)
    history = [*small_funnel(), *accounts_and_late_deals()]
    foreign = DealOpened.new(
        source="test",
        subject="opp-eur",
        data={
            "deal_id": "opp-eur",
            "attribution": {"source": "web"},
            "amount_cents": 1_000_00,
            "currency": "EUR",
            "stage": "proposal",
        },
    )
    # The refused event sits among good ones and duplicates, as in one fetched batch.
    await produce(topics, [*history[:4], foreign, *history[4:], *history[:3]])

    result = await replay(settings)

    assert (result.applied, result.duplicates, result.skipped) == (len(history), 3, 1)
    assert result.switched
    connection = await asyncpg.connect(database_url)
    try:
        inbox = await connection.fetch("SELECT event_id FROM metrics.inbox")
        deals = await connection.fetch("SELECT deal_id FROM metrics.deals")
    finally:
        await connection.close()
    assert sorted(row["event_id"] for row in inbox) == sorted(event.id for event in history)
    assert "opp-eur" not in {row["deal_id"] for row in deals}
    assert len(deals) == len({e.subject for e in history if e.topic == DEALS_TOPIC})


async def test_replay_batches_do_not_wait_for_the_disk_but_the_switch_does(
    database_url: str, topics: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metrics import batches
    from metrics import replay as replay_module

    settings = metrics_settings(database_url, topics)
    await produce(topics, small_funnel())
    waits: dict[str, set[str]] = {"batches": set(), "switch": set()}
    apply_prepared, switch = batches.apply_prepared, replay_module._switch

    async def observed_apply(connection: asyncpg.Connection, batch: Any) -> Any:
        waits["batches"].add(await connection.fetchval("SHOW synchronous_commit"))
        return await apply_prepared(connection, batch)

    async def observed_switch(connection: asyncpg.Connection, *args: Any) -> None:
        waits["switch"].add(await connection.fetchval("SHOW synchronous_commit"))
        await switch(connection, *args)

    monkeypatch.setattr(replay_module, "apply_prepared", observed_apply)
    monkeypatch.setattr(replay_module, "_switch", observed_switch)

    result = await replay_module.replay(settings)

    assert result.switched
    # The rebuilt schema is private until the switch and can be rebuilt from the
    # topics; the switch's commit is durable, and with it every batch before it.
    assert waits == {"batches": {"off"}, "switch": {"on"}}


async def test_replay_without_postgresql_fails_and_leaves_nothing_running(
    topics: CommonSettings,
) -> None:
    from metrics.replay import replay

    # Reading starts before the fresh schema exists; an unreachable database must still
    # end the replay with its error, the reading stopped.
    await produce(topics, small_funnel())
    settings = metrics_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/funnel", topics)
    before = asyncio.all_tasks()

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(replay(settings), timeout=30)

    assert asyncio.all_tasks() == before
