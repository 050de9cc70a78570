"""One trace from the form POST, through the outbox and Kafka, to every consumer; spans
for work done, none for an idle poll; OpenTelemetry's messaging attributes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_common.settings import CommonSettings
from funnel_common.telemetry import JsonFormatter, configure_tracing
from funnel_common.types import utc_now
from tests.helpers import eventually
from tests.integration.handoff.support import handoff_settings, running_handoffs
from tests.platform import Platform

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = configure_tracing(CommonSettings(), "tests")
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    if not getattr(provider, "_funnel_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        provider._funnel_test_exporter = True  # type: ignore[attr-defined]
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def _consumer_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]


async def test_one_trace_id_from_the_post_to_both_consumers(
    spans: InMemorySpanExporter, platform: Platform
) -> None:
    answer = await platform.intake.post(
        "/v1/leads", json={"email": "ada@example.com", "source": "webinar"}
    )
    assert answer.status_code == 202

    async def consumer_groups() -> set[str]:
        return {
            str((s.attributes or {}).get("messaging.consumer.group.name", "")).split(".")[-1]
            for s in _consumer_spans(spans)
        }

    await eventually(consumer_groups, until=lambda g: {"handoff", "metrics"} <= g, what="consumers")
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.kind == trace.SpanKind.SERVER and "/v1/leads" in s.name)
    publish = [s for s in finished if s.kind == trace.SpanKind.PRODUCER]
    trace_id = request.context.trace_id

    # The lead's events and its key's announcement (funnel.people) are each a publish.
    assert publish
    assert {s.context.trace_id for s in publish} == {trace_id}
    assert {s.context.trace_id for s in _consumer_spans(spans)} == {trace_id}
    published = {s.context.span_id for s in publish}
    assert all(
        s.parent is not None and s.parent.span_id in published for s in _consumer_spans(spans)
    )
    queries = [
        s for s in finished if s.context.trace_id == trace_id and s.kind == trace.SpanKind.CLIENT
    ]
    assert any(
        "INSERT" in s.name or "INSERT" in str((s.attributes or {}).get("db.statement", ""))
        for s in queries
    ), [s.name for s in queries]


class _JsonLines(logging.Handler):
    """The platform's JSON log lines, formatted as they are written (in the operation)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(JsonFormatter("tests"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines() -> Iterator[_JsonLines]:
    handler = _JsonLines()
    loggers = [logging.getLogger(name) for name in ("lead_intake", "metrics", "handoff")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_leads_trace_id_is_in_a_web_line_and_a_worker_line(
    spans: InMemorySpanExporter, platform: Platform, json_lines: _JsonLines
) -> None:
    # What docs/operations.md promises: `grep <trace_id> .funnel/logs/*.log` follows a
    # lead from the form post (lead-intake's web process) to the funnel count (metrics'
    # worker), on the normal path, where nothing warns.
    answer = await platform.intake.post(
        "/v1/leads", json={"email": "grace@example.com", "source": "webinar"}
    )
    assert answer.status_code == 202
    [posted] = [line for line in json_lines.lines if line["message"] == "lead captured"]
    assert posted["logger"] == "lead_intake.api"
    trace_id = posted["trace_id"]

    async def counted() -> list[dict[str, Any]]:
        return [
            line
            for line in json_lines.lines
            if line["logger"] == "metrics.handlers" and line.get("trace_id") == trace_id
        ]

    # The same post also announces the lead's key (funnel.people): metrics records both
    # under the post's trace_id; the lead's own event is the one the funnel counts.
    recorded = await eventually(
        counted,
        until=lambda lines: any(
            line["event_type"].startswith("funnel.lead.captured") for line in lines
        ),
        what="metrics' line for the lead's event with the lead's trace_id",
    )
    assert {line["event_type"].rsplit(".", 1)[0] for line in recorded} <= {
        "funnel.lead.captured",
        "funnel.lead.qualified",
        "funnel.person.key_issued",
    }
    assert "grace" not in json.dumps(json_lines.lines)


async def test_message_spans_carry_the_messaging_semantic_conventions(
    spans: InMemorySpanExporter, platform: Platform
) -> None:
    answer = await platform.intake.post(
        "/v1/leads", json={"email": "grace@example.com", "source": "webinar"}
    )
    assert answer.status_code == 202
    await eventually(
        lambda: _async(_consumer_spans(spans)), until=lambda found: len(found) >= 2, what="consumed"
    )

    # The lead's event and its key's announcement (funnel.people) are each a publish.
    publishes = {
        s.context.span_id: s
        for s in spans.get_finished_spans()
        if s.kind == trace.SpanKind.PRODUCER
    }
    assert publishes
    for publish in publishes.values():
        sent = dict(publish.attributes or {})
        assert sent["messaging.system"] == "kafka"
        assert sent["messaging.operation.type"] == "send"
        assert int(str(sent["messaging.destination.partition.id"])) >= 0
        assert isinstance(sent["messaging.kafka.offset"], int)
    assert any(
        str((p.attributes or {})["messaging.destination.name"]).endswith("funnel.leads")
        for p in publishes.values()
    )
    for consumed in _consumer_spans(spans):
        received = dict(consumed.attributes or {})
        assert received["messaging.operation.type"] == "process"
        assert consumed.parent is not None
        sent = dict(publishes[consumed.parent.span_id].attributes or {})
        # Both sides name the same record: the event id, its partition and offset.
        for key in (
            "messaging.system",
            "messaging.destination.name",
            "messaging.message.id",
            "messaging.destination.partition.id",
            "messaging.kafka.offset",
        ):
            assert received[key] == sent[key], key


async def _async(value: list[ReadableSpan]) -> list[ReadableSpan]:
    return value


async def _commits(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        commits: int = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return commits
    finally:
        await connection.close()


async def test_an_idle_platform_records_no_spans(
    spans: InMemorySpanExporter, platform: Platform, database_url: str
) -> None:
    async def consumers_assigned() -> set[str]:
        checks = [(await w.get("/readyz")).json()["checks"] for w in platform.workers.values()]
        return {check.get("consumer", "assigned") for check in checks}

    await eventually(consumers_assigned, until=lambda seen: seen == {"assigned"}, timeout=30)
    before = await _commits(database_url)
    spans.clear()

    # The relays, the SLA scanner and the notifier poll PostgreSQL several times a
    # second: wait until they have, many times over, finding nothing.
    await eventually(
        lambda: _commits(database_url),
        until=lambda commits: commits >= before + 60,
        timeout=30,
        what="the workers' polls",
    )

    assert [span.name for span in spans.get_finished_spans()] == []


async def test_a_claimed_sla_timer_is_a_span_and_its_events_continue_that_trace(
    spans: InMemorySpanExporter, database_url: str, topics: CommonSettings
) -> None:
    async with running_handoffs(handoff_settings(database_url, topics)) as handoffs:
        await handoffs.setup_team("emea", {"ada": {}}, countries=["DE"], minutes=1)
        handoff_id = await handoffs.qualify_directly(now=utc_now())
        spans.clear()

        await handoffs.scan(now=utc_now())
        idle = spans.get_finished_spans()
        result = await handoffs.scan(now=utc_now() + timedelta(hours=1))
        [breached] = await handoffs.events("funnel.handoff.sla_breached.v1", handoff_id)
        async with handoffs.pool.acquire() as connection:
            headers = await connection.fetchval(
                "SELECT trace_headers FROM outbox WHERE event_id = $1", breached["id"]
            )

    assert idle == ()
    assert result.breached == 1
    [breach] = [s for s in spans.get_finished_spans() if s.name == "sla breach"]
    queries = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert any(q.parent is not None and q.parent.span_id == breach.context.span_id for q in queries)
    traceparent = json.loads(headers)["traceparent"]
    assert traceparent.split("-")[1] == f"{breach.context.trace_id:032x}"
