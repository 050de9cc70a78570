"""Draw a Grafana dashboard's panels from Prometheus answers: pure, no I/O but the PNG.

Only what the shipped boards use is drawn, and drawn plainly: the grid (``gridPos``),
titles, units, stat thresholds, the min/max of axes and gauges, a right-hand axis where
an override asks for one. Anything else (panel types, override kinds) is refused, so
a board that grows a new panel type fails the test instead of being silently skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # without pyplot: no global state, no window
from matplotlib.ticker import FuncFormatter

BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"
GRID = "#2c3235"
PALETTE = [
    "#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c",
    "#5794f2", "#b877d9", "#37872d", "#fade2a", "#ca95e5",
]  # fmt: skip
NAMED_COLORS = {
    "green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a",
    "blue": "#5794f2", "purple": "#b877d9",
}  # fmt: skip
COLUMNS = 24  # Grafana's grid
UNIT_WIDTH = 0.82  # inches per grid column
UNIT_HEIGHT = 0.42  # inches per grid row
HEADER = 0.8  # inches above the grid for the board's title


@dataclass(frozen=True)
class Series:
    """One series of one target, named by the target's legend format."""

    name: str
    times: list[float]  # epoch seconds; one entry for an instant query
    values: list[float]
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def last(self) -> float:
        return self.values[-1] if self.values else math.nan


PanelData = dict[str, list[Series]]
"""refId -> series, for one panel."""


@dataclass
class Drawn:
    """What a board's picture shows, for the caller to report."""

    panels: list[str] = field(default_factory=list)
    without_data: list[str] = field(default_factory=list)


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def legend(template: str | None, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format filled in (the series' labels if none)."""
    if not template:
        return ", ".join(f"{key}={value}" for key, value in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match.group(1), ""), template)


def series_from(answer: dict[str, Any], legend_format: str | None) -> list[Series]:
    """A Prometheus HTTP API answer (vector or matrix) as series; an error raises."""
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus refused a query: {answer.get('error', answer)}")
    data = answer["data"]
    found = []
    for result in data["result"]:
        points = result["values"] if data["resultType"] == "matrix" else [result["value"]]
        found.append(
            Series(
                name=legend(legend_format, result["metric"]),
                times=[float(at) for at, _ in points],
                values=[float(value) for _, value in points],
                labels=result["metric"],
            )
        )
    return sorted(found, key=lambda series: series.name)


# --- units -----------------------------------------------------------------------------


def _short(value: float, decimals: int | None) -> str:
    """A number with K/M/B, as Grafana's ``short`` unit does."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.{1 if decimals is None else decimals}f}{suffix}"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _duration(seconds: float) -> str:
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {suffix}"
    return f"{seconds * 1000:.3g} ms" if seconds else "0 s"


def _bytes(value: float) -> str:
    for size, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= size:
            return f"{value / size:.3g} {suffix}"
    return f"{value:.0f} B"


def format_value(value: float, unit: str | None, decimals: int | None = None) -> str:
    """A value as the panel's unit shows it (the units the shipped boards use)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    unit = unit or "none"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit.startswith("suffix:"):
        return f"{value:.{2 if decimals is None else decimals}f}{unit.removeprefix('suffix:')}"
    if unit == "currencyUSD":
        return f"${_short(value, decimals)}"
    if unit == "s":
        return _duration(value)
    if unit == "bytes":
        return _bytes(value)
    if unit == "reqps":
        return f"{_short(value, decimals)} req/s"
    if unit == "ops":
        return f"{_short(value, decimals)} ops/s"
    if unit in ("none", "short"):  # Grafana's "short" is its default number format
        return _short(value, decimals)
    raise ValueError(f"unit {unit!r} is not drawn yet")


def threshold_color(value: float, thresholds: dict[str, Any] | None) -> str:
    """The colour of the highest absolute threshold step at or below ``value``."""
    if not thresholds or math.isnan(value):
        return NAMED_COLORS["blue"]
    color = NAMED_COLORS["blue"]
    for step in thresholds["steps"]:
        if step["value"] is None or value >= step["value"]:
            color = NAMED_COLORS.get(step["color"], step["color"])
    return color


# --- panels ----------------------------------------------------------------------------


def _defaults(panel: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = panel.get("fieldConfig", {}).get("defaults", {})
    return defaults


def _all_series(panel: dict[str, Any], data: PanelData) -> list[Series]:
    return [series for target in panel["targets"] for series in data.get(target["refId"], [])]


def _no_data(axes: Axes) -> None:
    axes.set_axis_off()
    axes.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, fontsize=11,
              transform=axes.transAxes)  # fmt: skip


def _style(axes: Axes) -> None:
    axes.set_facecolor(PANEL)
    axes.tick_params(colors=MUTED, labelsize=7, length=0)
    axes.grid(True, color=GRID, linewidth=0.6)
    for spine in axes.spines.values():
        spine.set_visible(False)


def draw_stat(axes: Axes, panel: dict[str, Any], data: PanelData) -> None:
    defaults = _defaults(panel)
    shown = _all_series(panel, data)
    axes.set_axis_off()
    if not shown:
        _no_data(axes)
        return
    size = 30 if len(shown) == 1 else 20 if len(shown) == 2 else 14
    for index, series in enumerate(shown):
        width = 1 / len(shown)
        centre = width * (index + 0.5)
        text = format_value(series.last, defaults.get("unit"), defaults.get("decimals"))
        color = threshold_color(series.last, defaults.get("thresholds"))
        axes.text(centre, 0.5, text, ha="center", va="center", fontsize=size,
                  fontweight="bold", color=color, transform=axes.transAxes)  # fmt: skip
        axes.text(centre, 0.12, series.name, ha="center", va="center", fontsize=8,
                  color=MUTED, transform=axes.transAxes)  # fmt: skip


def _right_axis_overrides(panel: dict[str, Any]) -> list[tuple[re.Pattern[str], str | None]]:
    """Series moved to a right-hand axis by a ``byRegexp`` override, with their unit."""
    found = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override["matcher"]["id"] != "byRegexp":
            raise ValueError(f"override matcher {override['matcher']['id']!r} is not drawn yet")
        properties = {item["id"]: item["value"] for item in override["properties"]}
        if properties.get("custom.axisPlacement") == "right":
            found.append((re.compile(override["matcher"]["options"]), properties.get("unit")))
    return found


def draw_timeseries(axes: Axes, panel: dict[str, Any], data: PanelData) -> None:
    defaults = _defaults(panel)
    shown = _all_series(panel, data)
    _style(axes)
    if not shown:
        _no_data(axes)
        return
    right_rules = _right_axis_overrides(panel)
    right: Axes | None = None
    right_unit: str | None = None
    lines = []
    for index, series in enumerate(shown):
        target = axes
        for pattern, unit in right_rules:
            if pattern.fullmatch(series.name):
                if right is None:
                    right = axes.twinx()
                    _style(right)
                    right.grid(False)
                right_unit, target = unit, right
        values = [value if math.isfinite(value) else math.nan for value in series.values]
        (line,) = target.plot(series.times, values, color=PALETTE[index % len(PALETTE)],
                              linewidth=1.3, label=series.name)  # fmt: skip
        lines.append(line)
    unit = defaults.get("unit")
    for scale, scale_unit in ((axes, unit), (right, right_unit)):
        if scale is None:
            continue
        scale.yaxis.set_major_formatter(
            FuncFormatter(lambda value, _, u=scale_unit: format_value(value, u))
        )
        bottom, top = defaults.get("min"), defaults.get("max")
        if bottom is not None:
            scale.set_ylim(bottom=bottom)
        if top is not None:
            scale.set_ylim(top=top)
    first = min(series.times[0] for series in shown if series.times)
    last = max(series.times[-1] for series in shown if series.times)
    axes.set_xlim(first, max(last, first + 1))
    axes.set_xticks(clock_ticks(first, last))
    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda at, _: f"{datetime.fromtimestamp(at, UTC):%H:%M:%S}")
    )
    # Below the plot, as Grafana puts it; the rows were left free by the caller.
    figure = axes.get_figure()
    assert isinstance(figure, Figure)
    columns = legend_columns(axes.get_position().width * figure.get_figwidth())
    shown_lines = lines[: LEGEND_ROWS * columns]
    if len(lines) > len(shown_lines):
        shown_lines[-1].set_label(f"… and {len(lines) - len(shown_lines) + 1} more")
    height = axes.get_position().height * figure.get_figheight()
    axes.legend(
        handles=shown_lines, loc="upper left", bbox_to_anchor=(-0.02, -0.2 / height),
        fontsize=6.5, frameon=False, ncol=columns, labelcolor=TEXT, borderaxespad=0,
        handlelength=1.2, columnspacing=1.2, labelspacing=0.3,
    )  # fmt: skip


LEGEND_ROWS = 4
LEGEND_ROW_HEIGHT = 0.135  # inches at 6.5 points


def legend_columns(width: float) -> int:
    """Legend columns that fit a plot ``width`` inches wide."""
    return max(1, int(width // 2.4))


def legend_height(entries: int, width: float) -> float:
    """Inches the legend takes below a plot ``width`` inches wide."""
    rows = min(LEGEND_ROWS, math.ceil(entries / legend_columns(width)))
    return 0.22 + rows * LEGEND_ROW_HEIGHT


def clock_ticks(first: float, last: float, most: int = 5) -> list[float]:
    """Round wall-clock moments (every 10 s, 30 s, 1 min, …) between two epoch seconds."""
    for every in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400):
        if (last - first) / every <= most:
            break
    tick = math.ceil(first / every) * every
    ticks = []
    while tick <= last:
        ticks.append(float(tick))
        tick += every
    return ticks


def draw_bargauge(axes: Axes, panel: dict[str, Any], data: PanelData) -> None:
    defaults = _defaults(panel)
    shown = _all_series(panel, data)
    _style(axes)
    axes.grid(False)
    if not shown:
        _no_data(axes)
        return
    unit, decimals = defaults.get("unit"), defaults.get("decimals")
    values = [series.last if math.isfinite(series.last) else 0.0 for series in shown]
    low = defaults.get("min", 0)
    high = defaults.get("max", max([*values, 1e-9]) * 1.15)
    names = [series.name for series in shown]
    positions = list(range(len(shown)))[::-1]
    axes.barh(positions, [high - low] * len(shown), left=low, color=GRID, height=0.6)
    axes.barh(positions, [value - low for value in values], left=low, height=0.6,
              color=[PALETTE[index % len(PALETTE)] for index in range(len(shown))])  # fmt: skip
    axes.set_xlim(low, high)
    axes.set_yticks(positions, names, fontsize=8, color=TEXT)
    axes.set_xticks([])
    for position, value in zip(positions, values, strict=True):
        axes.text(high, position, format_value(value, unit, decimals) + " ", ha="right",
                  va="center", fontsize=9, fontweight="bold", color=TEXT)  # fmt: skip


def draw_table(axes: Axes, panel: dict[str, Any], data: PanelData) -> None:
    """Grafana's ``merge``: one row per label set, one column per target."""
    axes.set_axis_off()
    columns = [target.get("legendFormat") or target["refId"] for target in panel["targets"]]
    merged_on = _merge_label(panel)
    rows: dict[str, list[str]] = {}
    for column, target in enumerate(panel["targets"]):
        for series in data.get(target["refId"], []):
            key = series.labels.get(merged_on, "")
            rows.setdefault(key, [""] * len(columns))[column] = format_value(
                series.last, "none", None
            )
    if not rows:
        _no_data(axes)
        return
    table = axes.table(
        cellText=[[name, *cells] for name, cells in sorted(rows.items())],
        colLabels=[merged_on, *columns],
        loc="upper center",
        cellLoc="left",
        colLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    for (row, _), cell in table.get_celld().items():
        cell.set_facecolor(PANEL if row else GRID)
        cell.set_edgecolor(GRID)
        cell.get_text().set_color(TEXT if row else MUTED)


def _merge_label(panel: dict[str, Any]) -> str:
    """The label the rows are merged on: the ``by (...)`` of the first target."""
    match = re.search(r"\bby\s*\(([^)]*)\)", panel["targets"][0]["expr"])
    return match.group(1).strip() if match else "series"


Drawer = Callable[[Axes, dict[str, Any], PanelData], None]
DRAWERS: dict[str, Drawer] = {
    "stat": draw_stat,
    "timeseries": draw_timeseries,
    "bargauge": draw_bargauge,
    "table": draw_table,
}
LAYOUT_ONLY = {"row"}


# --- the board -------------------------------------------------------------------------


def _series_rows(panel: dict[str, Any], data: PanelData) -> bool:
    return any(data.get(target["refId"]) for target in panel.get("targets", []))


def render(board: dict[str, Any], data: dict[int, PanelData], note: str) -> tuple[Figure, Drawn]:
    """The board as a figure: every panel at its grid place, drawn from ``data``."""
    every = panels(board)
    unknown = {panel["type"] for panel in every} - set(DRAWERS) - LAYOUT_ONLY
    if unknown:
        raise ValueError(f"panel types not drawn yet: {sorted(unknown)}")
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in every)
    width, height = COLUMNS * UNIT_WIDTH, rows * UNIT_HEIGHT + HEADER
    figure = Figure(figsize=(width, height), facecolor=BACKGROUND, dpi=110)
    figure.text(0.2 / width, 1 - 0.32 / height, board["title"], fontsize=16, color=TEXT,
                fontweight="bold", va="center")  # fmt: skip
    figure.text(0.2 / width, 1 - 0.62 / height, note, fontsize=8.5, color=MUTED, va="center")
    drawn = Drawn()
    gap = 0.06  # inches between panels

    def rect(left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        """Inches from the top-left to figure coordinates."""
        return left / width, 1 - (top + h) / height, w / width, h / height

    for panel in every:
        grid = panel["gridPos"]
        left, top = grid["x"] * UNIT_WIDTH + gap, HEADER + grid["y"] * UNIT_HEIGHT + gap
        w, h = grid["w"] * UNIT_WIDTH - 2 * gap, grid["h"] * UNIT_HEIGHT - 2 * gap
        if panel["type"] == "row":
            figure.text(left / width, 1 - (top + h / 2) / height, panel["title"], fontsize=11,
                        color=TEXT, fontweight="bold", va="center")  # fmt: skip
            continue
        card = figure.add_axes(rect(left, top, w, h))
        card.set_facecolor(PANEL)
        card.set_xticks([])
        card.set_yticks([])
        for spine in card.spines.values():
            spine.set_color(GRID)
        card.text(0.1 / w, 1 - 0.16 / h, panel["title"], fontsize=9, color=TEXT,
                  fontweight="bold", va="center", transform=card.transAxes)  # fmt: skip
        panel_data = data.get(panel["id"], {})
        inner = rect(left + 0.1, top + 0.32, w - 0.2, h - 0.4)
        if panel["type"] == "timeseries":
            right = 0.75 if _right_axis_overrides(panel) else 0.15
            plot_width = w - 0.7 - right
            below = legend_height(len(_all_series(panel, panel_data)), plot_width)
            inner = rect(left + 0.7, top + 0.36, plot_width, h - 0.36 - 0.3 - below)
        if panel["type"] == "bargauge":
            # Room on the left for the longest bar name at 8 points.
            longest = max([len(s.name) for s in _all_series(panel, panel_data)] or [0])
            margin = min(0.25 + 0.068 * longest, w / 2)
            inner = rect(left + margin, top + 0.36, w - margin - 0.1, h - 0.5)
        content = figure.add_axes(inner)
        DRAWERS[panel["type"]](content, panel, panel_data)
        drawn.panels.append(panel["title"])
        if not _series_rows(panel, panel_data):
            drawn.without_data.append(panel["title"])
    return figure, drawn


def save(figure: Figure, path: Path) -> None:
    figure.savefig(path, facecolor=BACKGROUND)
