"""`make bench`: run every measure against one fresh platform; print a table, write JSON.

``--broker`` picks the platform's broker: ``tansu`` (the embedded one, `make run`'s),
``kafka`` (Apache Kafka, `funnel dev --broker kafka`) or ``both`` (the default): every
measure on Tansu, then freshness on Apache Kafka too, side by side.
"""

from __future__ import annotations

import argparse
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
from funnel_tools.dev_broker import REPO_ROOT
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.kafka_jars import KafkaToolsMissing, ensure_jars

RESULTS = Path("bench-results/bench.json")
TABLE = Path("bench-results/bench.md")
KAFKA_RESULTS = Path("bench-results/bench-kafka-freshness.json")
DEPLOYED_FETCH_MAX_WAIT_MS = "100"  # deploy/k8s/base/config.yaml, deploy/compose.yaml


@contextmanager
def running_platform(broker: str = "tansu") -> Iterator[DevPlatform]:
    """A fresh platform as `funnel dev` runs it (on ``broker``), in a temporary directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="funnel-bench-"))
    environment = {"FUNNEL_LOG_LEVEL": "WARNING"}
    if broker == "kafka":
        # As deploy/ runs it: Kafka's default fetch wait (500 ms) holds back a partition
        # whose records arrive while a fetch for the others waits (p99 889 ms against
        # 172 ms at 100 ms, measured 2026-12-05).
        environment["FUNNEL_KAFKA_FETCH_MAX_WAIT_MS"] = DEPLOYED_FETCH_MAX_WAIT_MS
    platform = start_dev(
        data_dir / "funnel", free_ports(), data_dir / "dev.out", environment, broker=broker
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


def _measure_all(console: Console, broker: str) -> list[Figure]:
    started = time.monotonic()
    with running_platform(broker) as platform:
        console.print(f"Platform ({broker}) up in {time.monotonic() - started:.0f}s; measuring…")
        figures = asyncio.run(intake_throughput(platform))
        figures += asyncio.run(freshness(platform))
        figures += memory(platform)
        figures += asyncio.run(breach_delay(platform))
        figures += asyncio.run(replay_rate(platform))
    return figures


def _freshness_on(console: Console, broker: str) -> list[Figure]:
    started = time.monotonic()
    with running_platform(broker) as platform:
        console.print(f"Platform ({broker}) up in {time.monotonic() - started:.0f}s; freshness…")
        return asyncio.run(freshness(platform))


def _side_by_side(console: Console, tansu: list[Figure], kafka: list[Figure]) -> None:
    table = Table(title="freshness on both brokers")
    for column in ("figure", "Tansu (embedded)", "Apache Kafka", "Kafka / Tansu"):
        table.add_column(column)
    on_kafka = {figure.name: figure for figure in kafka}
    for figure in tansu:
        other = on_kafka.get(figure.name)
        if other is None:
            continue
        ratio = f"{other.value / figure.value:.2f}x" if figure.value else ""
        table.add_row(
            figure.name,
            f"{figure.value:,.1f} {figure.unit}",
            f"{other.value:,.1f} {other.unit}",
            ratio,
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--broker",
        choices=("tansu", "kafka", "both"),
        default="both",
        help="the platform's broker; both: every measure on Tansu, freshness on Kafka too",
    )
    args = parser.parse_args(argv)
    console = Console()
    started = time.monotonic()
    figures = _measure_all(console, "kafka" if args.broker == "kafka" else "tansu")
    kafka_freshness: list[Figure] = []
    if args.broker == "both":
        try:
            ensure_jars(REPO_ROOT)
        except KafkaToolsMissing as missing:
            console.print(f"[yellow]Apache Kafka skipped: {missing}[/yellow]")
        else:
            kafka_freshness = _freshness_on(console, "kafka")
    table = Table(title=f"make bench ({'tansu' if args.broker == 'both' else args.broker})")
    for column in ("figure", "value", "baseline", "baseline value", "ratio", "target"):
        table.add_column(column)
    for figure in figures:
        table.add_row(*_row(figure))
    console.print(table)
    if kafka_freshness:
        _side_by_side(console, figures, kafka_freshness)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([f.as_json() for f in figures], indent=2) + "\n")
    TABLE.write_text(markdown(figures, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    if kafka_freshness:
        KAFKA_RESULTS.write_text(
            json.dumps([f.as_json() for f in kafka_freshness], indent=2) + "\n"
        )
    console.print(f"Written to {RESULTS} and {TABLE} in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
