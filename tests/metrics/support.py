"""Running the metrics service alone against the real servers, and feeding it events."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterable

import httpx
from asgi_lifespan import LifespanManager

from funnel_common.events import Envelope, encode_event
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from metrics.app import create_app
from metrics.settings import MetricsSettings

# Stated here, not taken from the defaults, so the oracle is independent of them.
PROBABILITIES = {"discovery": 10, "proposal": 50, "negotiation": 75}
DEFAULT_PROBABILITY = 5
SOURCES = ["web", "webinar"]


def metrics_settings(database_url: str, common: CommonSettings) -> MetricsSettings:
    return MetricsSettings(
        database_url=database_url,
        common=common,
        stage_probabilities=PROBABILITIES,
        default_stage_probability=DEFAULT_PROBABILITY,
        sources=SOURCES,
        healthy_coverage_ratio=3.0,
    )


@contextlib.asynccontextmanager
async def running_metrics(settings: MetricsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """One metrics app in-process (its consumer and relay included), driven over ASGI."""
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://metrics"
        ) as client,
    ):
        yield client


async def produce(settings: CommonSettings, events: Iterable[Envelope]) -> None:
    """Put events straight on this test's topics, in the given order."""
    producer = new_producer(settings)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                settings.topic(event.topic), value=encode_event(event), key=event.key
            )
        await producer.flush()
    finally:
        await producer.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Series = tuple[str, frozenset[tuple[str, str]]]


def parse_samples(text: str) -> dict[Series, float]:
    """Every sample of a Prometheus text exposition, keyed by name and label set."""
    samples: dict[Series, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        name, labels, value = match.groups()
        samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def series(name: str, **labels: str) -> Series:
    return (name, frozenset(labels.items()))
