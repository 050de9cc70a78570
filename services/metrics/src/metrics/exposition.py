"""Funnel figures for Prometheus, read from the projections on every scrape.

Each replica exports the global figures (they come from the shared projection
tables), so a dashboard takes ``max()`` across replicas, never ``sum()``: the answer is
the same with one replica or three, and across a rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from funnel_common.service import Runtime
from metrics import store


class _Snapshot(Collector):
    """Serves metric families computed before the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def render(runtime: Runtime) -> bytes:
    async with runtime.pool.acquire() as connection:
        totals = await store.stage_totals(connection)
    captured = CounterMetricFamily(
        "funnel_leads_captured", "Leads captured (new leads, not merged duplicates)."
    )
    captured.add_metric([], totals.get("captured", 0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([captured]))
    return generate_latest(registry)
