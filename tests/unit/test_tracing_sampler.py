"""Spans are recorded only while something receives them; trace context travels always."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_common.telemetry import new_tracer_provider


def test_without_an_exporter_spans_are_not_recorded_but_their_context_travels() -> None:
    tracer = new_tracer_provider("tests").get_tracer("tests")

    with tracer.start_as_current_span("POST /v1/leads") as span:
        headers: dict[str, str] = {}
        propagate.inject(headers)

    assert not span.is_recording()
    assert span.get_span_context().is_valid
    assert f"{span.get_span_context().trace_id:032x}" in headers["traceparent"]


def test_once_a_processor_is_added_spans_are_recorded_and_continued() -> None:
    provider = new_tracer_provider("tests")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")

    with tracer.start_as_current_span("POST /v1/leads") as request:
        headers: dict[str, str] = {}
        propagate.inject(headers)
    with tracer.start_as_current_span("publish", context=propagate.extract(headers)) as publish:
        pass

    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["POST /v1/leads", "publish"]
    assert finished[1].parent is not None
    assert finished[1].parent.span_id == request.get_span_context().span_id
    assert finished[1].context.trace_id == publish.get_span_context().trace_id
