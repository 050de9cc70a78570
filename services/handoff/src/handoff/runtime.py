"""handoff's composition root: what its web and worker processes both open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from funnel_common.service import Runtime, open_runtime
from funnel_common.telemetry import PlatformMetrics
from handoff import SERVICE
from handoff.settings import HandoffSettings

SCHEMA = "handoff"
MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def opened(
    settings: HandoffSettings, metrics: PlatformMetrics, *, pool_max_size: int = 10
) -> AsyncIterator[Runtime]:
    """The migrated schema and its pool, closed on exit."""
    async with open_runtime(
        service=SERVICE,
        schema=SCHEMA,
        dsn=settings.database_url,
        migrations=MIGRATIONS,
        settings=settings.common,
        metrics=metrics,
        pool_max_size=pool_max_size,
    ) as runtime:
        yield runtime
