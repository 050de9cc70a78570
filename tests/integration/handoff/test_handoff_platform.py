"""handoff's events as the metrics service reads them: the whole platform in-process."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from funnel_common.events import LEADS_TOPIC, encode_event
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from handoff import tokens
from tests.helpers import eventually
from tests.integration.handoff.support import lead_event, policy_body
from tests.platform import Platform


@pytest.mark.both_brokers
async def test_decisions_and_breaches_reach_the_funnel_metrics(
    platform: Platform, database_url: str, topics: CommonSettings
) -> None:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "handoff"})
    try:
        async with connection.transaction():  # a token is announced in its transaction
            _, admin_token = await tokens.create_token(
                connection, topics.auth_secret, subject="root", role="admin"
            )
            _, ada_token = await tokens.create_token(
                connection, topics.auth_secret, subject="ada", role="rep"
            )
    finally:
        await connection.close()
    admin = {"authorization": f"Bearer {admin_token}"}
    ada = {"authorization": f"Bearer {ada_token}"}

    async def put(path: str, body: dict[str, Any]) -> None:
        answer = await platform.handoff.put(path, json=body, headers=admin)
        assert answer.status_code == 200, answer.text

    await put("/v1/sla-policies/slow", policy_body(60))
    await put("/v1/sla-policies/instant", policy_body(1 / 60, reassign_up_to=0))
    await put(
        "/v1/teams/emea",
        {
            "manager_id": "mia",
            "sla_policy": "slow",
            "form_type_policies": {"demo_request": "instant"},
        },
    )
    await put("/v1/reps/ada", {"team_id": "emea", "capacity": 10})
    accepted_lead, breached_lead = lead_event(), lead_event(form_type="demo_request")
    producer = new_producer(topics)
    await producer.start()
    try:
        for event in (accepted_lead, breached_lead):
            await producer.send_and_wait(
                topics.topic(LEADS_TOPIC), encode_event(event), key=event.key
            )
    finally:
        await producer.stop()

    async def queue() -> list[dict[str, Any]]:
        answer = await platform.handoff.get("/v1/handoffs?status=assigned", headers=ada)
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    [mine] = await eventually(
        queue,
        until=lambda items: [i["lead_id"] for i in items] == [str(accepted_lead.data.lead_id)],
        timeout=30,
        what="the slow-SLA lead in ada's queue (the instant one escalated)",
    )
    decided = await platform.handoff.post(f"/v1/handoffs/{mine['handoff_id']}/accept", headers=ada)
    assert decided.status_code == 200

    await eventually(
        lambda: platform.metric("funnel_handoff_sla_breaches_total", 'policy="instant"'),
        until=lambda value: value == 1,
        timeout=20,
        what="the instant policy's breach counted",
    )
    await eventually(
        lambda: platform.metric("funnel_handoffs_total", 'outcome="accepted"'),
        until=lambda value: value == 1,
        timeout=20,
        what="accepted handoff counted",
    )
    assert await platform.metric("funnel_handoff_accept_seconds_count") == 1
