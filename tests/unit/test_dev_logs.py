"""`funnel dev`'s own messages and the broker's output are JSON log lines too."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from funnel_tools import devlogs
from funnel_tools.dev import Supervisor


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_supervisors_messages_are_json_lines_with_their_facts(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "supervisor.log")

    supervisor.say(
        "handoff-worker exited (-9); restarting in 0.5s",
        level=logging.WARNING,
        program="handoff-worker",
        returncode=-9,
    )
    supervisor.say("ready", terminal=False, state_file="/tmp/x/platform.json")
    supervisor.close()

    [restart, ready] = _lines(tmp_path / "supervisor.log")
    assert restart["level"] == "warning"
    assert restart["service"] == "funnel-dev"
    assert (restart["program"], restart["returncode"]) == ("handoff-worker", -9)
    assert ready["message"] == "ready"


def test_a_childs_output_becomes_json_lines_without_terminal_colours(tmp_path: Path) -> None:
    logger = devlogs.json_file_logger("tests.broker", tmp_path / "broker.log", service="broker")
    output = io.BytesIO(
        b"tansu broker 0.6.0\n"
        b"\x1b[2m2026-01-01T00:00:00Z\x1b[0m \x1b[33m WARN\x1b[0m tansu: slow fetch\n"
        b"\n"
        b"\xff not utf-8 ERROR here\n"
    )

    devlogs.pump_lines(output, logger).join(timeout=5)
    devlogs.close(logger)

    lines = _lines(tmp_path / "broker.log")
    assert [line["level"] for line in lines] == ["info", "warning", "error"]
    assert lines[1]["message"] == "2026-01-01T00:00:00Z  WARN tansu: slow fetch"
    assert all(line["service"] == "broker" for line in lines)
