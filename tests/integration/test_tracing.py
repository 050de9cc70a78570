"""One trace from the form POST, through the outbox and Kafka, to every consumer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_common.settings import CommonSettings
from funnel_common.telemetry import configure_tracing
from tests.helpers import eventually
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

    assert [s.context.trace_id for s in publish] == [trace_id]
    assert {s.context.trace_id for s in _consumer_spans(spans)} == {trace_id}
    assert all(
        s.parent is not None and s.parent.span_id == publish[0].context.span_id
        for s in _consumer_spans(spans)
    )
    queries = [
        s for s in finished if s.context.trace_id == trace_id and s.kind == trace.SpanKind.CLIENT
    ]
    assert any(
        "INSERT" in s.name or "INSERT" in str((s.attributes or {}).get("db.statement", ""))
        for s in queries
    ), [s.name for s in queries]
