"""The board renderer draws every panel of the shipped boards from Prometheus answers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from boards.render import (
    DRAWERS,
    LAYOUT_ONLY,
    PanelData,
    format_value,
    legend,
    panels,
    render,
    save,
    series_from,
    threshold_color,
)
from funnel_tools.dashboards import DASHBOARD_FILES, load_dashboard

NOW = 1_795_000_000.0


def _answer(target: dict[str, Any], number: int) -> dict[str, Any]:
    """A Prometheus answer as the HTTP API gives it: two series, labelled as the legend asks."""
    names = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
    results = []
    for series in range(2):
        labels = {name: f"{name}-{series}" for name in names}
        if target.get("instant"):
            results.append({"metric": labels, "value": [NOW, str(number + series)]})
        else:
            values = [[NOW - 60 + step, str(number * step)] for step in range(0, 61, 15)]
            results.append({"metric": labels, "values": values})
    kind = "vector" if target.get("instant") else "matrix"
    return {"status": "success", "data": {"resultType": kind, "result": results}}


def _fixture(board: dict[str, Any]) -> dict[int, PanelData]:
    return {
        panel["id"]: {
            target["refId"]: series_from(_answer(target, number), target.get("legendFormat"))
            for number, target in enumerate(panel.get("targets", []), start=1)
        }
        for panel in panels(board)
    }


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.stem)
def test_every_panel_of_a_shipped_board_is_drawn(path: Path, tmp_path: Path) -> None:
    board = load_dashboard(path)
    expected = [panel["title"] for panel in panels(board) if panel["type"] not in LAYOUT_ONLY]

    figure, drawn = render(board, _fixture(board), "fixture")
    save(figure, tmp_path / "board.png")

    assert drawn.panels == expected
    assert drawn.without_data == []
    assert (tmp_path / "board.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.stem)
def test_every_panel_type_and_unit_on_the_boards_is_known(path: Path) -> None:
    board = load_dashboard(path)

    for panel in panels(board):
        assert panel["type"] in set(DRAWERS) | LAYOUT_ONLY, panel["title"]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert format_value(1.5, unit)


def test_a_panel_without_data_is_reported_not_dropped() -> None:
    board = load_dashboard(DASHBOARD_FILES[0])
    data = _fixture(board)
    emptied = next(panel for panel in panels(board) if panel.get("targets"))
    data[emptied["id"]] = {}

    _, drawn = render(board, data, "fixture")

    assert drawn.without_data == [emptied["title"]]
    assert emptied["title"] in drawn.panels


def test_an_unknown_panel_type_is_refused() -> None:
    board = {"title": "b", "panels": [{"id": 1, "type": "piechart", "title": "p",
                                        "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}}]}  # fmt: skip

    with pytest.raises(ValueError, match="piechart"):
        render(board, {}, "fixture")


def test_values_read_as_the_unit_says() -> None:
    assert format_value(0.8766, "percentunit") == "87.7%"
    assert format_value(2.5, "suffix:x") == "2.50x"
    assert format_value(1_250_000, "currencyUSD") == "$1.2M"
    assert format_value(90, "s") == "1.5 min"
    assert format_value(0.25, "s") == "250 ms"
    assert format_value(64 * 2**20, "bytes") == "64 MiB"
    assert format_value(math.inf, "suffix:x") == "∞"


def test_thresholds_colour_by_the_highest_step_reached() -> None:
    steps = {"steps": [{"color": "red", "value": None}, {"color": "green", "value": 3}]}

    assert threshold_color(2.9, steps) != threshold_color(3, steps)
    assert threshold_color(3, steps) == threshold_color(math.inf, steps)


def test_legends_fill_in_labels_and_a_refused_query_raises() -> None:
    assert legend("{{service}} {{ route }}", {"service": "handoff", "route": "/x"}) == "handoff /x"

    with pytest.raises(ValueError, match="bad query"):
        series_from({"status": "error", "error": "bad query"}, None)
