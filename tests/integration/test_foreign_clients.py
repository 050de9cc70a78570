"""A client that is not ours (Debian's kcat, on librdkafka) against Apache Kafka: every
record the platform writes follows the CloudEvents Kafka binding, and events written by
hand with kcat, in structured and in binary mode, are applied by the consumers.

Binding checks (CloudEvents 1.0, Kafka protocol binding): structured mode has the header
``content-type: application/cloudevents+json`` and a JSON value carrying the required
attributes (specversion 1.0, id, source, type) with data; binary mode has them as
``ce_*`` headers and the data as the value. Our records also name their JSON Schema
(``dataschema``), and validate against it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from uuid import uuid4

import asyncpg
import httpx
import jsonschema
import pytest

from funnel_common.events import ALL_TOPICS, LEADS_TOPIC, SCHEMA_BASE_URI
from funnel_common.schemas import SCHEMA_DIR
from funnel_common.settings import CommonSettings
from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_common.types import utc_now
from funnel_tools.seed import quarter_of
from handoff.tokens import create_token
from lead_intake.settings import IntakeSettings
from tests.conftest import require_system_tool
from tests.helpers import eventually
from tests.integration.handoff.support import policy_body
from tests.platform import Platform

# Only on Apache Kafka: the test is about what any Kafka client sees there.
pytestmark = pytest.mark.parametrize("broker_kind", ["kafka"])

QUALIFIED = {
    "first_name": "Ada",
    "last_name": "Okafor",
    "company": "Globex",
    "title": "VP Sales",
    "company_size": 500,
    "country": "US",
    "source": "kcat",
}


def kcat(settings: CommonSettings, *args: str, stdin: bytes | None = None) -> str:
    """Run kcat against the test's broker; its output as text."""
    command = [
        require_system_tool("kcat", "a non-Python Kafka client"),
        "-b",
        settings.kafka_bootstrap_servers,
        *args,
    ]
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


def read_with_kcat(settings: CommonSettings, name: str) -> list[dict[str, Any]]:
    """Every record of a topic, as kcat's JSON envelope (headers as [name, value, ...])."""
    output = kcat(settings, "-C", "-t", settings.topic(name), "-o", "beginning", "-e", "-J", "-q")
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def produce_with_kcat(
    settings: CommonSettings, name: str, value: bytes, *, key: str, headers: dict[str, str]
) -> None:
    header_args = [arg for item in headers.items() for arg in ("-H", "=".join(item))]
    kcat(
        settings,
        "-P", "-t", settings.topic(name), "-k", key, *header_args,
        # What the platform's producers do on Apache Kafka.
        "-X", "enable.idempotence=true", "-X", "acks=all",
        stdin=value,
    )  # fmt: skip


def check_binding(record: dict[str, Any]) -> str:
    """Assert that a kcat record is a CloudEvent under the Kafka binding; its mode."""
    raw_headers = record.get("headers") or []
    headers = dict(zip(raw_headers[::2], raw_headers[1::2], strict=True))
    if "ce_specversion" in headers:
        assert headers["ce_specversion"] == "1.0"
        for attribute in ("id", "source", "type"):
            assert headers.get(f"ce_{attribute}"), (attribute, record)
        json.loads(record["payload"])
        return "binary"
    assert headers.get("content-type") == "application/cloudevents+json", record
    event = json.loads(record["payload"])
    assert event["specversion"] == "1.0"
    for attribute in ("id", "source", "type"):
        assert isinstance(event[attribute], str), (attribute, record)
        assert event[attribute], (attribute, record)
    assert "data" in event
    datetime.fromisoformat(event["time"])
    if event["source"] == "kcat":
        return "structured"  # written by hand below: no schema named
    schema_uri = urlparse(event["dataschema"])
    assert schema_uri.scheme == "https"
    assert schema_uri.path.endswith(f"/{event['type']}.json")
    assert event["dataschema"].startswith(SCHEMA_BASE_URI)
    schema = json.loads((SCHEMA_DIR / f"{event['type']}.json").read_text())
    jsonschema.validate(event, schema)
    # Our key is the entity (subject), so one entity's events stay in order.
    assert record["key"] == event["subject"], record
    return "structured"


async def fill_every_topic(platform: Platform, settings: CommonSettings, database_url: str) -> None:
    """The platform writes to each of its topics, as its users make it."""
    lead = await platform.intake.post(
        "/v1/leads", json={**QUALIFIED, "email": f"ada.{uuid4().hex[:6]}@example.com"}
    )
    assert lead.status_code == 202, lead.text
    intake = IntakeSettings(database_url=database_url, common=settings)
    for path, secret, body in (
        ("/v1/deals", intake.crm_webhook_secret,
         {"webhook_id": "k1", "event": "opened", "deal_id": "D-1", "amount_cents": 500}),
        ("/v1/accounts/events", intake.billing_webhook_secret,
         {"webhook_id": "k2", "event": "activated", "account_id": "A-1", "arr_cents": 900}),
    ):  # fmt: skip
        raw = json.dumps(body).encode()
        signature = sign(secret.get_secret_value(), int(time.time()), raw)
        answer = await platform.intake.post(
            path,
            content=raw,
            headers={"content-type": "application/json", SIGNATURE_HEADER: signature},
        )
        assert answer.is_success, answer.text
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "handoff"})
    try:
        # Issued in a transaction: the token is announced through handoff's outbox.
        async with connection.transaction():
            _, token = await create_token(
                connection, settings.auth_secret, subject="kcat-admin", role="admin"
            )
    finally:
        await connection.close()
    period, _ = quarter_of(utc_now())

    async def set_target() -> httpx.Response:
        return await platform.metrics.put(
            f"/v1/targets/{period}",
            json={"amount_cents": 1_000_000},
            headers={"authorization": f"Bearer {token}"},
        )

    # The roster's audit trail (funnel.roster): an SLA policy set by the admin.
    policy = await platform.handoff.put(
        "/v1/sla-policies/kcat",
        json=policy_body(60),
        headers={"authorization": f"Bearer {token}"},
    )
    assert policy.is_success, policy.text
    # metrics takes the new token once its worker has heard of it (funnel.access).
    target = await eventually(
        set_target, until=lambda answer: answer.status_code != 401, what="a target set"
    )
    assert target.is_success, target.text


async def test_every_record_follows_the_binding_and_hand_written_events_are_applied(
    platform: Platform, topics: CommonSettings, database_url: str, tmp_path: Path
) -> None:
    await fill_every_topic(platform, topics, database_url)
    before = await platform.metric("funnel_leads_captured_total") or 0
    poison = f"not an event {uuid4()}"
    produce_with_kcat(topics, LEADS_TOPIC, poison.encode(), key="poison", headers={})
    # Two leads written by hand: one structured, one in binary mode.
    structured_id, binary_id = uuid4(), uuid4()
    attributes = {
        "specversion": "1.0",
        "source": "kcat",
        "time": "2026-01-05T10:00:00Z",
        "type": "funnel.lead.captured.v1",
    }

    def data(lead_id: object) -> dict[str, Any]:
        return {
            "lead_id": str(lead_id),
            "form_id": "default",
            "attribution": {"source": "kcat"},
            "profile": {"email": f"{lead_id}@example.com"},
        }

    structured = {**attributes, "id": str(uuid4()), "subject": str(structured_id)}
    produce_with_kcat(
        topics,
        LEADS_TOPIC,
        json.dumps({**structured, "data": data(structured_id)}).encode(),
        key=str(structured_id),
        headers={"content-type": "application/cloudevents+json"},
    )
    binary_headers = {
        f"ce_{name}": value
        for name, value in {**attributes, "id": str(uuid4()), "subject": str(binary_id)}.items()
    }
    produce_with_kcat(
        topics,
        LEADS_TOPIC,
        json.dumps(data(binary_id)).encode(),
        key=str(binary_id),
        headers={
            **binary_headers,
            "ce_partitionkey": str(binary_id),
            "content-type": "application/json",
        },
    )

    await platform.wait_for_metric("funnel_leads_captured_total", before + 2, timeout=30)

    async def every_topic_written() -> dict[str, list[dict[str, Any]]]:
        return {name: await asyncio.to_thread(read_with_kcat, topics, name) for name in ALL_TOPICS}

    found = await eventually(
        every_topic_written,
        until=lambda records: all(records.values()) and len(records["funnel.dlq"]) == 2,
        timeout=30,
        what="a record on every topic (the poison parked in the DLQ by both groups)",
    )
    modes = [
        check_binding(record)
        for records in found.values()
        for record in records
        if record["payload"] != poison
    ]
    assert modes.count("binary") == 1
    assert len(modes) >= len(ALL_TOPICS)
    # Parked by each group that reads the topic: handoff's and metrics' consumers.
    letters = [json.loads(r["payload"])["data"] for r in found["funnel.dlq"]]
    assert [letter["original"] for letter in letters] == [{"text": poison}] * len(letters)
    assert {letter["group"].removeprefix(topics.kafka_topic_prefix) for letter in letters} == {
        "handoff",
        "metrics",
    }
