"""metrics' operator commands: ``funnel replay`` (rebuild the projections from the
retained events) and ``funnel migrate metrics``.

Reads the metrics service's settings from the environment (``FUNNEL_METRICS_…`` and
``FUNNEL_…``), rebuilds into a fresh schema with a progress bar, checks it against the
live projections and switches over. See ``metrics.replay`` for how the switch keeps
the running services consistent.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from metrics.replay import ReplayResult
    from metrics.settings import MetricsSettings

console = Console(stderr=True)


def replay(
    switch: bool = typer.Option(
        True, "--switch/--no-switch", help="Switch over after the checks pass (default)."
    ),
    accept_differences: bool = typer.Option(
        False,
        "--accept-differences",
        help="Switch even if the rebuilt figures differ from the live ones "
        "(e.g. after fixing a projection bug). Never if events are missing.",
    ),
    keep: bool = typer.Option(
        False,
        "--keep",
        help="With --no-switch, keep the rebuilt schema to look at (dropped otherwise).",
    ),
) -> None:
    """Rebuild the metrics projections from the events, check, and switch over."""
    # Imported here so that every other `funnel` command starts without the service.
    from metrics.replay import replay as rebuild
    from metrics.settings import MetricsSettings

    settings = MetricsSettings()
    # A replay holds batches of thousands of decoded events, and the default collector
    # thresholds then run a collection every few hundred allocations over everything
    # imported: measured, that tripled the cost of decoding an event. Everything loaded
    # so far stays for the process's life (freeze), and collections come less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    with Progress(
        TextColumn("[bold]replaying events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replay", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(
            rebuild(
                settings,
                progress=progress,
                switch=switch,
                accept_differences=accept_differences,
            )
        )
    if not switch and not keep:
        # A dry run leaves nothing behind.
        asyncio.run(_drop_schema(settings, result.rebuilt_schema))
        result.rebuilt_schema = ""
    report(result)
    if not result.switched and switch:
        raise typer.Exit(code=1)


async def _drop_schema(settings: MetricsSettings, schema: str) -> None:
    import asyncpg

    from metrics import store

    connection = await asyncpg.connect(settings.database_url)
    try:
        await store.drop_schema(connection, schema)
    finally:
        await connection.close()


def _drop_hint(schema: str) -> str:
    return f"drop it when done: DROP SCHEMA {schema} CASCADE (as the metrics database user)"


def report(result: ReplayResult) -> None:
    rate = result.read / result.seconds if result.seconds else 0.0
    console.print(
        f"read {result.read} events in {result.seconds:.2f} s ({rate:,.0f} events/s): "
        f"{result.applied} applied, "
        f"{result.duplicates} duplicates, {result.skipped} skipped"
    )
    if result.missing:
        console.print(
            f"[red]{result.missing} events applied live are no longer on the topics: not switching"
        )
    for difference in result.differences[:20]:
        console.print(f"[yellow]differs {difference}")
    if result.switched:
        retired = (
            f"; the old one is kept as {result.retired_schema}: {_drop_hint(result.retired_schema)}"
            if result.retired_schema
            else ""
        )
        console.print(f"[green]switched: metrics now serves the rebuilt projections{retired}")
    elif result.rebuilt_schema:
        console.print(
            f"not switched; the rebuilt schema is {result.rebuilt_schema}: "
            + _drop_hint(result.rebuilt_schema)
        )
    else:
        console.print("not switched (--no-switch); the rebuilt schema is dropped")


def migrate() -> None:
    """Apply metrics' pending migrations (``FUNNEL_METRICS_DATABASE_URL``)."""
    from funnel_common.db import migrate_dsn
    from metrics.runtime import MIGRATIONS, SCHEMA
    from metrics.settings import MetricsSettings

    database_url = MetricsSettings().database_url
    applied = asyncio.run(migrate_dsn(database_url, schema=SCHEMA, directory=MIGRATIONS))
    typer.echo(f"metrics: {len(applied)} migration(s) applied")
    for version in applied:
        typer.echo(f"  {version}")
