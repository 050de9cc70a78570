"""`make bench`: run every measure against one fresh platform; print a table, write JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.breach import breach_delay
from bench.measures import Figure, freshness, intake_throughput, memory
from bench.replay import replay_rate
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev

RESULTS = Path("bench-results/bench.json")
TABLE = Path("bench-results/bench.md")


@contextmanager
def running_platform() -> Iterator[DevPlatform]:
    """A fresh platform as `funnel dev` runs it, in a temporary directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="funnel-bench-"))
    platform = start_dev(
        data_dir / "funnel", free_ports(), data_dir / "dev.out", {"FUNNEL_LOG_LEVEL": "WARNING"}
    )
    try:
        yield platform
    finally:
        platform.stop()


def _row(figure: Figure) -> list[str]:
    ratio = figure.ratio
    verdict = "" if figure.met is None else ("met" if figure.met else "NOT met")
    return [
        figure.name,
        f"{figure.value:,.1f} {figure.unit}",
        figure.baseline or "",
        "" if figure.baseline_value is None else f"{figure.baseline_value:,.1f} {figure.unit}",
        "" if ratio is None else f"{ratio:.2f}x",
        f"{figure.target or ''} {verdict}".strip(),
    ]


def markdown(figures: list[Figure], when: str) -> str:
    """The run as the table docs/performance.md shows (paste it there, dated)."""
    lines = [
        f"Measured {when}.",
        "",
        "| figure | value | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for figure in figures:
        name, value, baseline, baseline_value, ratio, target = _row(figure)
        against = f"{baseline}: {baseline_value}" if baseline else ""
        lines.append(f"| {name} | {value} | {against} | {ratio} | {target} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    console = Console()
    started = time.monotonic()
    figures: list[Figure] = []
    with running_platform() as platform:
        console.print(f"Platform up in {time.monotonic() - started:.0f}s; measuring…")
        figures += asyncio.run(intake_throughput(platform))
        figures += asyncio.run(freshness(platform))
        figures += memory(platform)
        figures += asyncio.run(breach_delay(platform))
        figures += asyncio.run(replay_rate(platform))
    table = Table(title="make bench")
    for column in ("figure", "value", "baseline", "baseline value", "ratio", "target"):
        table.add_column(column)
    for figure in figures:
        table.add_row(*_row(figure))
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([f.as_json() for f in figures], indent=2) + "\n")
    TABLE.write_text(markdown(figures, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    console.print(f"Written to {RESULTS} and {TABLE} in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
