"""Running the metrics service alone against the real servers, and feeding it events."""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx

from funnel_common.events import Envelope, encode_event
from funnel_common.kafka import new_producer
from funnel_common.settings import CommonSettings
from metrics import worker as metrics_worker
from metrics.settings import MetricsSettings
from metrics.web import create_app
from tests.platform import serving

# Stated here, not taken from the defaults, so the oracle is independent of them.
PROBABILITIES = {"discovery": 10, "proposal": 50, "negotiation": 75}
DEFAULT_PROBABILITY = 5
SOURCES = ["web", "webinar"]


@functools.cache
def sources_file() -> Path:
    """The allow-list these tests state (config/sources.yaml is marketing's)."""
    path = Path(tempfile.mkdtemp(prefix="metrics-sources-")) / "sources.yaml"
    path.write_text("sources: [" + ", ".join(SOURCES) + "]\n")
    return path


def metrics_settings(database_url: str, common: CommonSettings) -> MetricsSettings:
    return MetricsSettings(
        database_url=database_url,
        common=common,
        stage_probabilities=PROBABILITIES,
        default_stage_probability=DEFAULT_PROBABILITY,
        sources_file=sources_file(),
        healthy_coverage_ratio=3.0,
    )


@contextlib.asynccontextmanager
async def running_metrics(
    settings: MetricsSettings, *, worker: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """metrics in-process, driven over ASGI: the web app (the client reaches it) and,
    unless told otherwise, the worker (its consumer and relay)."""
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(
                serving(metrics_worker.create_app(settings), "metrics-worker")
            )
        yield await stack.enter_async_context(serving(create_app(settings), "metrics"))


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
