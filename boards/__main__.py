"""``python -m boards`` (``make boards-preview``): a picture of each Grafana board.

Starts a fresh ``funnel dev`` on free ports and a real Prometheus scraping it every
second with the shipped config and rules (funnel_tools.prometheus), runs ``funnel seed``,
then evaluates every panel's own query from deploy/grafana/dashboards/ through
Prometheus' HTTP API (``query_range`` for time series, an instant query where the
panel asks for one) over the run, and draws each board to ``<out>/board-<name>.png``:
``build/boards/`` (untracked) unless ``--out docs`` refreshes the pictures in the
manuals (``make boards-preview BOARDS_OUT=docs``). Grafana draws the same queries with
its own styling.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from boards.render import PanelData, panels, render, save, series_from
from funnel_tools.dashboards import DASHBOARD_FILES, load_dashboard, substitute
from funnel_tools.devplatform import free_ports, start_dev
from funnel_tools.embedded import free_port, wait_until
from funnel_tools.prometheus import Prometheus, platform_targets, run_seed, start_prometheus
from funnel_tools.seed import quarter_of

ROOT = Path(__file__).resolve().parents[1]
POINTS = 240  # per time series, like a Grafana panel a few hundred pixels wide
TAIL_SECONDS = 20  # scraped after the seed, so the curves show it settling


def fetch(
    live: Prometheus, board: dict[str, Any], start: float, end: float
) -> dict[int, PanelData]:
    """Every target of every panel, evaluated by Prometheus over ``[start, end]``."""
    variables = {
        "$__rate_interval": "1m",  # what Grafana picks at the shipped 15s scrape interval
        "$__range": f"{round(end - start)}s",
        "$period": quarter_of(datetime.fromtimestamp(end, UTC))[0],
        "$service": ".*",
    }
    step = max(1.0, (end - start) / POINTS)
    data: dict[int, PanelData] = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], variables)
            answer = (
                live.query(expr, at=end)
                if target.get("instant")
                else live.query_range(expr, start, end, step)
            )
            data.setdefault(panel["id"], {})[target["refId"]] = series_from(
                answer, target.get("legendFormat")
            )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boards", description=__doc__)
    parser.add_argument("--seed", default="1", help="funnel seed --seed")
    parser.add_argument("--leads", default="200", help="funnel seed --leads")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "build" / "boards",
        help="where the PNGs go (docs/ to refresh the manuals' pictures)",
    )
    args = parser.parse_args(argv)
    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (apt-get install prometheus)", file=sys.stderr)  # noqa: T201
        return 2
    with tempfile.TemporaryDirectory(prefix="funnel-boards-") as scratch:
        tmp = Path(scratch)
        platform = start_dev(tmp / "funnel", free_ports(), tmp / "dev.out")
        server = None
        try:
            server, live = start_prometheus(binary, tmp, platform_targets(platform), free_port())
            # Counters are scraped before the seed moves them, so increase() sees it all.
            wait_until(
                lambda: live.has_data('up{job=~"lead-intake|handoff|metrics"} == 1', count=3),
                timeout=30,
                what="the first scrape of every service",
            )
            start = time.time()
            print(run_seed(platform, "--seed", args.seed, "--leads", args.leads))  # noqa: T201
            end = time.time() + TAIL_SECONDS
            wait_until(
                lambda: (
                    live.has_data(f"timestamp(up) >= {end}", count=3)
                    and live.has_data("funnel:handoff_sla_attainment_ratio:increase1d < 1")
                ),
                timeout=TAIL_SECONDS + 60,
                what="Prometheus to scrape past the seed and record its breaches",
            )
            args.out.mkdir(parents=True, exist_ok=True)
            missing = []
            for path in DASHBOARD_FILES:
                board = load_dashboard(path)
                note = (
                    f"Rendered from the dashboard's own queries against Prometheus after "
                    f"`funnel seed --seed {args.seed} --leads {args.leads}` "
                    f"({datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} to "
                    f"{datetime.fromtimestamp(end, UTC):%H:%M} UTC); "
                    "Grafana draws them with its own styling."
                )
                figure, drawn = render(board, fetch(live, board, start, end), note)
                target = args.out / f"board-{path.stem}.png"
                save(figure, target)
                print(f"{target}: {len(drawn.panels)} panels")  # noqa: T201
                missing += [f"{board['title']}: {title}" for title in drawn.without_data]
            for title in missing:
                print(f"no data: {title}", file=sys.stderr)  # noqa: T201
            return 1 if missing else 0
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            platform.stop()


if __name__ == "__main__":
    raise SystemExit(main())
