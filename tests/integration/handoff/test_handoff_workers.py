"""The background workers for real: consumer, outbox relay, SLA scanners, notifier.

SLA policies here are a second or two long, on an always-open calendar, so breaches
happen within the test; waiting is always for a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from funnel_common.events import (
    HANDOFFS_TOPIC,
    LEADS_TOPIC,
    HandoffAssigned,
    decode_event,
    encode_event,
)
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from funnel_common.types import utc_now
from funnel_tools.embedded import free_port
from tests.helpers import eventually
from tests.integration.handoff.mailbox import mailbox
from tests.integration.handoff.receiver import Receiver
from tests.integration.handoff.support import (
    Handoffs,
    handoff_settings,
    lead_event,
    policy_body,
    running_handoffs,
)
from tests.integration.kafka_helpers import read_topic

BREACHED = "funnel.handoff.sla_breached.v1"
REASSIGNED = "funnel.handoff.reassigned.v1"
ONE_SECOND = 1 / 60  # in minutes


@pytest.mark.both_brokers
async def test_a_lead_qualified_on_the_topic_is_assigned_and_evented(
    database_url: str, topics: CommonSettings
) -> None:
    settings = handoff_settings(database_url, topics)
    async with running_handoffs(settings, worker=True) as handoffs:
        await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"])
        event = lead_event()
        producer = new_producer(topics)
        await producer.start()
        try:
            await producer.send_and_wait(
                topics.topic(LEADS_TOPIC), encode_event(event), key=event.key
            )
            await producer.send_and_wait(  # a redelivery changes nothing
                topics.topic(LEADS_TOPIC), encode_event(event), key=event.key
            )
        finally:
            await producer.stop()

        records = await read_topic(topics, HANDOFFS_TOPIC, expect=1, timeout=30)

    [assigned] = [decode_event(record.value) for record in records]
    assert isinstance(assigned, HandoffAssigned)
    data = assigned.data
    assert data.lead_id == event.data.lead_id
    assert (data.team, data.assignee_rep_id, data.policy) == ("emea", "ada", "emea-sla")
    assert data.due_at is not None
    assert data.due_at - data.assigned_at == timedelta(minutes=60)


async def test_breaches_fire_once_with_two_replicas_scanning(
    database_url: str, topics: CommonSettings
) -> None:
    settings = handoff_settings(database_url, topics)
    async with (
        running_handoffs(settings, worker=True) as first,
        running_handoffs(settings, worker=True) as second,
    ):
        await first.setup_team(
            "emea",
            {"ada": {}, "bob": {}},
            countries=["DE"],
            # At risk after 0.3 s, due after 3 s: a scan pass late by seconds on a loaded
            # machine still sees each assignment at risk before it breaches.
            minutes=3 * ONE_SECOND,
            reassign_up_to=1,
            at_risk_percent=10,
        )
        ids = [await first.qualify_directly(now=utc_now()) for _ in range(3)]

        # Each handoff breaches twice: once reassigned to the other rep, then escalated.
        for handoff_id in ids:
            await eventually(
                lambda handoff_id=handoff_id: second.handoff(handoff_id),  # type: ignore[misc]
                until=lambda row: row["status"] == "escalated",
                timeout=15,
                what="escalated after two breaches",
            )
        # Per handoff: assigned, then at risk, breached, reassigned for each of its two reps.
        records = await read_topic(topics, HANDOFFS_TOPIC, expect=3 * 7, timeout=20)

    events = [decode_event(record.value) for record in records]
    for handoff_id in ids:
        mine = [e for e in events if e.subject == str(handoff_id)]
        assert [e.type for e in mine if e.type == BREACHED] == [BREACHED, BREACHED]
        reasons = [e.data.model_dump()["reason"] for e in mine if e.type == REASSIGNED]
        assert reasons == ["sla_breach", "escalation"]
        # At risk once per assignment (the first rep's, then the second's).
        assert [e.type for e in mine].count("funnel.handoff.sla_at_risk.v1") == 2


async def test_a_breach_due_while_no_replica_runs_fires_once_after_restart(
    database_url: str, topics: CommonSettings
) -> None:
    # The first replica serves the API only: no scanner of its own can fire the breach
    # before the restart, however slowly a loaded machine stops it.
    async with running_handoffs(handoff_settings(database_url, topics)) as before:
        await before.setup_team(
            "emea", {"ada": {}, "bob": {}}, countries=["DE"], minutes=2 * ONE_SECOND
        )
        handoff_id = await before.qualify_directly(now=utc_now())
        due_at = (await before.handoff(handoff_id))["due_at"]

        async def now() -> datetime:
            return utc_now()

        await eventually(now, until=lambda t: t > due_at, timeout=5, what="deadline passed")
        assert await before.events(BREACHED, handoff_id) == []

    settings = handoff_settings(database_url, topics)
    async with running_handoffs(settings, worker=True) as after:
        await eventually(
            lambda: after.events(BREACHED, handoff_id),
            until=lambda found: len(found) >= 1,
            timeout=10,
            what="breach after restart",
        )
        moved = await eventually(
            lambda: after.events(REASSIGNED, handoff_id), until=bool, what="reassigned"
        )
        # The reassigned handoff has a new due time of its own and may breach again;
        # the missed deadline must have fired exactly once.
        missed = [
            event
            for event in await after.events(BREACHED, handoff_id)
            if datetime.fromisoformat(event["data"]["due_at"]) == due_at
        ]
        assert len(missed) == 1
        assert moved[0]["data"]["reason"] == "sla_breach"


async def test_webhooks_are_signed_retried_and_survive_a_receiver_that_is_down(
    database_url: str, topics: CommonSettings
) -> None:
    receiver = Receiver(port=free_port(), failures_left=2)
    settings = handoff_settings(database_url, topics)
    async with (
        running_handoffs(settings, worker=True) as handoffs,
        contextlib.AsyncExitStack() as stack,
    ):
        await handoffs.setup_team(
            "emea",
            {"ada": {"slack_member_id": "U024BE7LH"}},
            countries=["DE"],
            minutes=ONE_SECOND,
            reassign_up_to=0,
            webhooks=[
                {"url": f"{receiver.url}/hook"},
                {"url": f"{receiver.url}/slack", "format": "slack", "events": ["assigned"]},
            ],
        )
        handoff_id = await handoffs.qualify_directly(now=utc_now())

        # The receiver is down: the handoff goes on (breach, escalation) regardless.
        row = await eventually(
            lambda: handoffs.handoff(handoff_id),
            until=lambda row: row["status"] == "escalated",
            what="escalated while the receiver is down",
        )
        await eventually(
            lambda: _attempts(handoffs),
            until=lambda attempts: attempts >= 2,
            what="failed delivery attempts",
        )
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        await eventually(
            lambda: _pending(handoffs), until=lambda n: n == 0, timeout=15, what="all delivered"
        )

    assert row["rep_id"] == "emea-manager"
    hook = [r for r in receiver.received if r.path == "/hook"]
    slack = [r for r in receiver.received if r.path == "/slack"]
    assert sorted(r.json["type"] for r in hook) == [
        "handoff.assigned",
        "handoff.at_risk",
        "handoff.breached",
        "handoff.escalated",
    ]
    by_type = {r.json["type"]: r.json for r in hook}
    assert by_type["handoff.assigned"]["to"] == ["rep:ada"]
    assert by_type["handoff.breached"]["to"] == ["rep:ada", "manager:emea-manager"]
    assert by_type["handoff.escalated"]["to"] == ["manager:emea-manager"]
    link = f"http://127.0.0.1:8002/inbox/handoffs/{handoff_id}"
    assert {r.json["inbox_url"] for r in hook} == {link}
    # Slack: the rep is mentioned, the lead's company and SLA state named, the inbox linked.
    [message] = [r.json["text"] for r in slack]
    assert message.startswith("New lead assigned: Analytical Engines (team emea) for <@U024BE7LH")
    assert "on time, due" in message
    assert message.endswith(f"<{link}|Open in the inbox>")
    # Standard Webhooks: the receiver verifies with the off-the-shelf library.
    receiver_side = Webhook(settings.webhook_secret.get_secret_value())
    for request in receiver.received:
        assert receiver_side.verify(request.body, request.headers) == request.json
        assert b"example.com" not in request.body  # no personal data leaves in a webhook
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 5
    tampered = {**hook[0].headers, "webhook-id": "ntf_forged"}
    with pytest.raises(WebhookVerificationError):
        receiver_side.verify(hook[0].body, tampered)


async def test_a_hook_that_answers_4xx_is_parked_with_the_reason_not_retried(
    database_url: str, topics: CommonSettings
) -> None:
    receiver = Receiver(port=free_port(), refusing={"/gone": 404})
    await receiver.start()
    settings = handoff_settings(database_url, topics)
    try:
        async with running_handoffs(settings, worker=True) as handoffs:
            await handoffs.setup_team(
                "emea",
                {"ada": {}},
                countries=["DE"],
                webhooks=[{"url": f"{receiver.url}/gone", "events": ["assigned"]}],
            )
            await handoffs.qualify_directly(now=utc_now())

            [parked] = await eventually(
                lambda: _parked(handoffs), until=bool, what="the notification parked"
            )
            attempts_then = await _attempts(handoffs)
            gauge = await eventually(
                lambda: _scrape(handoffs),
                until=lambda text: (
                    'funnel_handoff_notifications_parked{channel="webhook"} 1.0' in text
                ),
                what="the parked gauge",
            )
    finally:
        await receiver.stop()

    assert parked["last_error"] == "HTTP 404"
    assert parked["attempts"] == attempts_then == 1
    assert len(receiver.refused) == 1
    assert "funnel_handoff_notifications_pending 0.0" in gauge


async def test_emails_reach_the_rep_and_the_manager_and_a_bounce_is_parked(
    database_url: str, topics: CommonSettings
) -> None:
    with mailbox() as box:
        box.bouncing.add("left-the-company@sales.example.com")
        settings = handoff_settings(
            database_url,
            topics,
            smtp_host="127.0.0.1",
            smtp_port=box.port,
            smtp_tls="none",
            email_from="Shared Funnel <funnel@sales.example.com>",
            public_url="https://handoff.sales.example.com",
        )
        async with running_handoffs(settings, worker=True) as handoffs:
            await handoffs.setup_team(
                "emea",
                {"ada": {"email": "ada@sales.example.com"}},
                countries=["DE"],
                minutes=ONE_SECOND,
                reassign_up_to=0,
            )
            await handoffs.put(
                "/v1/teams/emea",
                {
                    "manager_id": "emea-manager",
                    "manager_email": "mia@sales.example.com",
                    "countries": ["DE"],
                    "sla_policy": "emea-sla",
                },
            )
            handoff_id = await handoffs.qualify_directly(now=utc_now())
            await eventually(
                lambda: _delivered(handoffs), until=lambda n: n == 4, what="four emails sent"
            )
            # A rep whose address bounces: parked with the reason, not retried.
            await handoffs.put(
                "/v1/reps/ada",
                {"team_id": "emea", "capacity": 5, "email": "left-the-company@sales.example.com"},
            )
            await handoffs.put("/v1/sla-policies/emea-sla", policy_body(60))
            await handoffs.qualify_directly(now=utc_now())
            [parked] = await eventually(
                lambda: _parked(handoffs), until=bool, what="the bounce parked"
            )

    by_subject = {message["Subject"]: message for message in box.messages}
    assert sorted(by_subject) == [
        "Lead SLA at risk: Analytical Engines",
        "Lead SLA breached: Analytical Engines",
        "Lead escalated to the manager: Analytical Engines",
        "New lead assigned: Analytical Engines",
    ]
    assert by_subject["New lead assigned: Analytical Engines"]["To"] == "ada@sales.example.com"
    escalated = by_subject["Lead escalated to the manager: Analytical Engines"]
    assert escalated["To"] == "mia@sales.example.com"
    assert escalated["From"] == "Shared Funnel <funnel@sales.example.com>"
    body = escalated.get_content()
    assert f"https://handoff.sales.example.com/inbox/handoffs/{handoff_id}" in body
    assert "escalated after 1 breach" in body
    assert parked["channel"] == "email"
    assert parked["last_error"] == "SMTP 550 recipient refused"
    assert parked["attempts"] == 1
    assert box.refused == ["left-the-company@sales.example.com"]


async def test_no_notifications_configured_means_none_attempted(
    database_url: str, topics: CommonSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/handoff.md's roster gives people addresses, but `make run` names no SMTP
    # server: no email is queued, so nothing is parked and nothing warns.
    settings = handoff_settings(database_url, topics)
    assert settings.smtp_host is None
    async with running_handoffs(settings, worker=True) as handoffs:
        # Building the apps routed the root logger to their own JSON handler only.
        logging.getLogger().addHandler(caplog.handler)
        try:
            await handoffs.setup_team(
                "emea",
                {
                    "ada": {"email": "ada@sales.example.com"},
                    "bob": {"email": "bob@sales.example.com"},
                },
                countries=["DE"],
                minutes=ONE_SECOND,
                reassign_up_to=0,
            )
            await handoffs.put(
                "/v1/teams/emea",
                {
                    "manager_id": "emea-manager",
                    "manager_email": "mia@sales.example.com",
                    "countries": ["DE"],
                    "sla_policy": "emea-sla",
                },
            )
            # Assigned, at risk, breached and escalated (by the consumer and the scanner),
            # then reassigned by the manager over HTTP (the web process).
            handoff_id = await handoffs.qualify_directly(now=utc_now())
            await eventually(
                lambda: handoffs.handoff(handoff_id),
                until=lambda row: row["status"] == "escalated",
                what="the escalation",
            )
            manager = await handoffs.auth("manager", "emea-manager", "emea")
            moved = await handoffs.client.post(
                f"/v1/handoffs/{handoff_id}/reassign", headers=manager
            )
            assert moved.status_code == 200, moved.text
            await eventually(
                lambda: handoffs.events(BREACHED, handoff_id),
                until=lambda events: len(events) == 2,
                what="the new holder's breach",
            )
            async with handoffs.pool.acquire() as connection:
                queued = await connection.fetchval("SELECT count(*) FROM notifications")
            gauge = await _scrape(handoffs)
        finally:
            logging.getLogger().removeHandler(caplog.handler)

    assert queued == 0
    assert 'funnel_handoff_notifications_parked{channel="email"} 0.0' in gauge
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [message for message in warnings if "notification" in message], warnings


async def _parked(handoffs: Handoffs) -> list[asyncpg.Record]:
    async with handoffs.pool.acquire() as connection:
        rows: list[asyncpg.Record] = await connection.fetch(
            "SELECT * FROM notifications WHERE failed_at IS NOT NULL"
        )
    return rows


async def _delivered(handoffs: Handoffs) -> int:
    async with handoffs.pool.acquire() as connection:
        value: int = await connection.fetchval(
            "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL"
        )
    return value


async def _scrape(handoffs: Handoffs) -> str:
    return (await handoffs.client.get("/metrics")).text


async def _attempts(handoffs: Handoffs) -> int:
    async with handoffs.pool.acquire() as connection:
        value: int = await connection.fetchval(
            "SELECT coalesce(max(attempts), 0) FROM notifications"
        )
    return value


async def _pending(handoffs: Handoffs) -> int:
    async with handoffs.pool.acquire() as connection:
        value: int = await connection.fetchval(
            "SELECT count(*) FROM notifications WHERE delivered_at IS NULL"
        )
    return value
