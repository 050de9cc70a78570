"""Spans are recorded for work done, never for a poll that found nothing."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from funnel_common.telemetry import new_tracer_provider, work_span

QUERY = {"db.system": "postgresql", "db.statement": "SELECT 1"}


def _exported() -> tuple[trace.Tracer, InMemorySpanExporter]:
    provider = new_tracer_provider("handoff")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("tests"), exporter


def test_a_query_outside_any_operation_is_not_recorded() -> None:
    tracer, exporter = _exported()

    with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT, attributes=QUERY):
        pass

    assert exporter.get_finished_spans() == ()


def test_a_query_inside_an_operation_is_recorded_in_its_trace() -> None:
    tracer, exporter = _exported()

    with tracer.start_as_current_span("sla breach") as operation:
        with tracer.start_as_current_span("UPDATE", kind=trace.SpanKind.CLIENT, attributes=QUERY):
            pass

    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["UPDATE", "sla breach"]
    query = exporter.get_finished_spans()[0]
    assert query.context.trace_id == operation.get_span_context().trace_id


def test_requests_and_messages_start_traces_as_before() -> None:
    tracer, exporter = _exported()

    for kind in (trace.SpanKind.SERVER, trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER):
        with tracer.start_as_current_span("work", kind=kind):
            pass

    assert len(exporter.get_finished_spans()) == 3


def test_a_poll_that_claimed_nothing_has_no_span_and_one_that_did_has_one() -> None:
    tracer, exporter = _exported()

    with work_span(tracer, "sla breach", []):
        pass
    with work_span(tracer, "sla breach", ["a handoff", "another"]):
        pass

    [span] = exporter.get_finished_spans()
    assert span.name == "sla breach"
    assert (span.attributes or {})["funnel.claimed"] == 2
