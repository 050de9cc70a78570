"""Logging, tracing and Prometheus helpers shared by the services.

Logs are JSON lines with a fixed set of fields plus whatever ``extra`` a call passes;
a line written inside a traced operation (a request, an event being applied, a claimed
timer) carries its ``trace_id`` and ``span_id``, so an SRE can go from a log line to its
trace and back. Personal data never belongs in a log line; as a second line of defence
the formatter masks anything shaped like an email address or a phone number.

Spans are recorded for work done, never for a poll that found nothing: a database query
outside any operation (the relay's, the scanner's and the notifier's polls, readiness
checks, scrapes) is not recorded (:class:`_SampledWhileExported`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sized
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.semconv._incubating.attributes.db_attributes import DB_SYSTEM
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_KAFKA_OFFSET,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingSystemValues,
)
from opentelemetry.semconv.attributes.db_attributes import DB_SYSTEM_NAME
from opentelemetry.util.types import Attributes
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from funnel_common.settings import CommonSettings

_STANDARD_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# uvicorn passes its message again with ANSI colour codes for its own terminal formatter;
# in a JSON line it is noise (escape sequences) beside the plain message.
_DROPPED_EXTRAS = {"color_message"}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# Digits with spaces, dashes or parentheses, not inside a word, a number or a timestamp.
_PHONE = re.compile(r"(?<![\w.:-])\+?\d[\d ()-]{6,}\d(?![\w:.])")


def mask_personal_data(text: str) -> str:
    """Replace anything shaped like an email address or phone number."""
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The operation this line belongs to. The span may be unrecorded (no exporter):
        # its ids still tie together every line of one request or event, across services.
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = trace.format_trace_id(context.trace_id)
            entry["span_id"] = trace.format_span_id(context.span_id)
        for name, value in record.__dict__.items():
            if (
                name not in _STANDARD_RECORD_FIELDS
                and name not in _DROPPED_EXTRAS
                and not name.startswith("_")
            ):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Masked value by value, not on the encoded line: there a JSON escape before an
        # address ("\\nbob@…") or any long number became invalid JSON.
        return json.dumps(_masked(entry), default=str)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, dict):
        return {str(key): _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_personal_data(str(value))


def configure_logging(settings: CommonSettings, service: str) -> None:
    """Route the root logger to stderr as JSON (or plain text for a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn gives its own loggers plain-text handlers before it builds the app; sent
    # through the root handler instead, every line a service writes is one JSON object.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_logger = logging.getLogger(name)
        if not server_logger.handlers and not server_logger.propagate:
            # Switched off by uvicorn itself (`--no-access-log`): propagating again would
            # switch it back on, a JSON line per request that costs every request.
            continue
        server_logger.handlers.clear()
        server_logger.propagate = True
    # aiokafka logs every failed connection at ERROR while the broker is away; the relay
    # and consumer already report that once, as a warning.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def configure_tracing(settings: CommonSettings, service: str) -> TracerProvider:
    """The process's tracer provider, exporting as configured (nowhere by default).

    OpenTelemetry allows one global provider per process: the first service configured
    in a process sets it (in-process tests run several services together). asyncpg is
    instrumented once, process-wide, with the official instrumentation.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = new_tracer_provider(service)
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint))
        )
    elif settings.otel_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider


def _idle_query(
    parent_context: Context | None, kind: trace.SpanKind | None, attributes: Attributes
) -> bool:
    """A database query that no operation started: a poll, a probe, a scrape."""
    if kind is not trace.SpanKind.CLIENT or not attributes:
        return False
    if DB_SYSTEM not in attributes and DB_SYSTEM_NAME not in attributes:
        return False
    return not trace.get_current_span(parent_context).get_span_context().is_valid


class _SampledWhileExported(Sampler):
    """Records spans only once a span processor is there to receive them, and only for
    work done.

    With no exporter configured (the default), a recorded span is built, filled with
    attributes and thrown away: about a tenth of a request's CPU in lead-intake. A span
    that is not recorded still has a valid context, so trace ids still travel in the
    outbox rows and Kafka headers. Once a processor is added (an exporter, or a test's),
    spans are recorded as usual: a new trace always, a continued one when its parent was.

    Except a query that starts a trace of its own: the asyncpg instrumentation makes a
    root span of every statement run outside an operation, and the workers' polls (the
    relay's, the SLA scanner's, the notifier's) run several a second whether or not they
    find work: an idle handoff worker sent about 1,500 such traces in 20 seconds. Work
    that is found gets a span of its own (a claimed timer, a published event), and the
    queries it runs are recorded inside it.
    """

    def __init__(self) -> None:
        self.exported = False
        self._recorded = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Any = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampler = (
            self._recorded
            if self.exported and not _idle_query(parent_context, kind, attributes)
            else ALWAYS_OFF
        )
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "SampledWhileExported"


class _FunnelTracerProvider(TracerProvider):
    def __init__(self, service: str) -> None:
        self._sampler = _SampledWhileExported()
        super().__init__(sampler=self._sampler, resource=Resource.create({"service.name": service}))

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self._sampler.exported = True


_OPERATION_TYPES = {
    "send": MessagingOperationTypeValues.SEND.value,
    "process": MessagingOperationTypeValues.PROCESS.value,
}


def messaging_attributes(topic: str, message_id: object, *, operation: str) -> dict[str, str]:
    """OpenTelemetry's messaging attributes of a Kafka record: system, destination,
    operation, and the event id as the message id (the same on both sides of the topic)."""
    return {
        MESSAGING_SYSTEM: MessagingSystemValues.KAFKA.value,
        MESSAGING_DESTINATION_NAME: topic,
        MESSAGING_OPERATION_TYPE: _OPERATION_TYPES[operation],
        MESSAGING_MESSAGE_ID: str(message_id),
    }


def delivered_attributes(partition: int, offset: int) -> dict[str, str | int]:
    """Where a record is in its topic: partition and offset."""
    return {MESSAGING_DESTINATION_PARTITION_ID: str(partition), MESSAGING_KAFKA_OFFSET: offset}


def work_span(
    tracer: trace.Tracer, name: str, claimed: Sized
) -> contextlib.AbstractContextManager[object]:
    """A span around the work a poll found (its claimed rows), and none when it found
    nothing: a worker that polls several times a second records only what it did."""
    if not len(claimed):
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, attributes={"funnel.claimed": len(claimed)})


def new_tracer_provider(service: str) -> TracerProvider:
    """A tracer provider that records spans only while something receives them."""
    return _FunnelTracerProvider(service)


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PlatformMetrics:
    """The platform's own Prometheus metrics (HTTP, outbox, consumer), in one registry."""

    def __init__(
        self, service: str, registry: CollectorRegistry | None = None, *, relays: bool = True
    ) -> None:
        """``relays=False`` for a web process: the outbox gauges then stay out of its
        exposition, where they would be a constant 0 beside the worker's real ones."""
        self.service = service
        self.registry = registry or CollectorRegistry()
        outbox_registry = self.registry if relays else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_requests = Counter(
            "funnel_http_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "funnel_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "funnel_outbox_published_total",
            "Outbox rows published to Kafka.",
            registry=outbox_registry,
        )
        self.outbox_backlog = Gauge(
            "funnel_outbox_backlog", "Outbox rows not yet published.", registry=outbox_registry
        )
        self.outbox_oldest_age = Gauge(
            "funnel_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when empty).",
            registry=outbox_registry,
        )
        self.events_consumed = Counter(
            "funnel_events_consumed_total",
            "Events applied by a consumer group, by topic and outcome.",
            ["group", "topic", "outcome"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "funnel_consumer_lag_messages",
            "Records not yet consumed, per consumer group and partition.",
            ["group", "topic", "partition"],
            registry=self.registry,
        )
        self.db_pool_connections = Gauge(
            "funnel_db_pool_connections",
            "Database pool connections by state.",
            ["state"],
            registry=self.registry,
        )
        self.db_pool_max_connections = Gauge(
            "funnel_db_pool_max_connections",
            "Database pool size limit.",
            registry=self.registry,
        )
        self.event_lag = Histogram(
            "funnel_event_lag_seconds",
            "Seconds from an event being recorded to its effect being committed.",
            ["group"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetricsMiddleware:
    """Counts requests and measures latency by route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: PlatformMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if template != "unmatched" else "other"
            self._metrics.http_requests.labels(
                self._metrics.service, method, template, str(status)
            ).inc()
            self._metrics.http_duration.labels(self._metrics.service, method, template).observe(
                time.perf_counter() - started
            )
